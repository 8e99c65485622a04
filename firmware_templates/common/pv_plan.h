/* pv_plan: where the activations of f live in the kernel arena — one planner for the int8 and the 16x8
 * kernels, computed at run time from the layer table of pv_arch.h. codegen.c_arch computes the same two
 * plans in Python for PV_KERNEL_ARENA_BYTES / PV_KERNEL16_ARENA_BYTES (pv_arch.h), and
 * tests/codegen/test_c_kernel.py holds the size queries below equal to those figures.
 *
 * int8 (pv_plan_s8): every layer overwrites its own input in place. A conv reads its input rows into a
 * ring as it goes (kernels/pv_conv_s8.c), so its output may start the "lag" below its input that keeps
 * every output row off input rows not yet read (0 for every layer of pv-gconv-s: the activations take
 * the largest one's bytes); after the activations comes one scratch region, the largest any layer needs.
 * Only the stem streams (its rows are computed while the image comes in, n_streamed = 1).
 *
 * 16x8 (pv_plan_s16; int16 activations are twice int8's bytes, and the stem's and b1_dw's 28x28x24 outputs
 * alone would be 37,632 B each): the layers up to and including the first one whose output is smaller
 * than the stem's (b2_down for pv-gconv-s) stream row by row while the image arrives: a band of input rows
 * makes one stem row, which goes into a ring of `kernel` rows of the next layer's input; as soon as a
 * layer's ring holds the rows its next output row needs, that row is computed. Only the streamed prefix's
 * last output is a whole tensor, in buffer A. The layers after it ping-pong between A and B (A, B: the
 * largest output from the prefix's last layer on); the band and the rings live in B's space, which is
 * free until the prefix is done. Arena = A + max(B, band + rings). Where B's space has room after the
 * band and rings (7,500 of 8,064 B for pv-gconv-s), the streamed layers' weights, expanded for the SMLAD
 * path (pv_conv_s16_prepare), sit there too; the arena does not grow for them.
 */
#ifndef PV_PLAN_H
#define PV_PLAN_H

#include <stdint.h>

#include "pv_arch.h"

#define PV_MAX_STREAMED 4u /* layers a plan may stream row by row (pv-gconv-s, 16x8: 3) */

typedef struct pv_plan {
    uint32_t act_bits;   /* 8: the int8 kernels, 16: the 16x8 kernels */
    uint32_t n_streamed; /* layers [0, n_streamed) run row by row while the image streams in */
    uint32_t out_offset[PV_N_LAYERS]; /* byte offset of each layer's whole output (16x8: not for the streamed
                                         layers before the last, whose rows go to the next layer's ring) */
    uint32_t ring_offset[PV_MAX_STREAMED]; /* 16x8: the ring of layer i's input rows (1 <= i < n_streamed) */
    uint32_t wx_offset[PV_MAX_STREAMED]; /* 16x8: streamed layer i's expanded weights (pv_conv_s16_prepare)
                                            where the arena has room for them beside the rings, else 0 */
    uint32_t band;    /* 16x8: the stem's band of input rows as int16 (int8: in the stem's scratch) */
    uint32_t scratch; /* int8: the scratch region the layers share (16x8: none, 0) */
    uint32_t total;   /* arena bytes */
} pv_plan_t;

/* Fill *pl for the layer table of pv_arch.h. Returns PV_OK, or PV_ERR_LAYOUT for a table these kernels
 * cannot run (the stem must be a patchify conv: output row oy reads input rows [oy*k, oy*k + k)). */
int pv_plan_s8(pv_plan_t *pl);
int pv_plan_s16(pv_plan_t *pl);

/* Arena bytes of the int8 / the 16x8 plan (CMSIS-NN style size queries); 0xFFFFFFFF for a layer table the
 * kernels cannot run. */
uint32_t pv_kernel_arena_size(void);
uint32_t pv_kernel16_arena_size(void);

#endif /* PV_PLAN_H */
