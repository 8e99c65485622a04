/* pv_kernel: the int8 verifier f, bit-exact with the golden model (codegen/golden.py), i.e. with
 * TFLite Micro's reference kernels (CONV_2D per channel + fused ReLU, the global mean as a CONV_2D
 * of weights 1, FULLY_CONNECTED per channel; requantization by SaturatingRoundingDoublingHighMul +
 * RoundingDivideByPOT).
 *
 * Static memory only: one caller-owned arena of PV_KERNEL_ARENA_BYTES holds every activation (each
 * layer overwrites its input in place, see pv_kernel.c) and the per-layer scratch; the input image is
 * never needed whole: it streams through the stem band by band (pv_stream_*). Stack: under 400 B.
 * Build with -DPV_USE_DSP on Cortex-M4/M7/M33 for the SMLAD inner loops (same results, bit for bit;
 * checked on QEMU mps2-an386 by tests/codegen/test_m4_qemu.py). -DPV_USE_DSP -DPV_DSP_EMULATE runs the
 * same code path on any host with the SIMD instructions emulated in C (for tests).
 */
#ifndef PV_KERNEL_H
#define PV_KERNEL_H

#include <stdint.h>

#include "pv_arch.h"
#include "pv_blob.h"

/* Called after every layer with its int8 output (n bytes, HWC) — for layer-by-layer debugging. */
typedef void (*pv_layer_hook_t)(void *ctx, uint32_t layer, const int8_t *out, uint32_t n);

/* image: PV_INPUT_H*PV_INPUT_W*PV_INPUT_C int8 in HWC order, q = u - 128 for the uint8 RGB pixel u.
 * logit: receives the int8 output logit (dequantize with pv_dequantize_logit, decide with pv_decide).
 * arena: PV_KERNEL_ARENA_BYTES bytes of scratch. Returns PV_OK or a negative pv_status_t. */
int pv_infer(const pv_model_t *m, const int8_t *image, int8_t *logit, uint8_t *arena);

/* pv_infer with a hook called after each layer (hook may be NULL). */
int pv_infer_ex(const pv_model_t *m, const int8_t *image, int8_t *logit, uint8_t *arena,
                pv_layer_hook_t hook, void *hook_ctx);

/* Where each layer's output lives in the arena, and where the scratch starts. */
typedef struct pv_plan {
    uint32_t out_offset[PV_N_LAYERS];
    uint32_t scratch;
    uint32_t total; /* bytes of arena the plan needs */
} pv_plan_t;

void pv_plan(pv_plan_t *pl);
/* Arena bytes of this kernel's plan for the layer table of pv_arch.h (CMSIS-NN style size query); equal to
 * PV_KERNEL_ARENA_BYTES, which codegen.c_arch computes from the same plan (tests/codegen/test_c_kernel.py). */
uint32_t pv_kernel_arena_size(void);

/* A conv layer set up in the scratch (internal to pv_kernel.c; here because pv_stream_t holds one). */
typedef struct pv_conv {
    const pv_layer_desc_t *d;
    const pv_layer_params_t *p;
    int16_t *ring, *w16;
    int32_t *rq; /* requantization parameters, blocks of 4 channels */
    int8_t *band;
    uint32_t cin_g, cout_g, depth, row_elems, runlen, wp;
    int rowrun, packed, fast, full;
    int32_t lo, hi;
} pv_conv_t;

/* Input-row streaming (the image never has to be in RAM whole): the stem is a 4x4/stride-4 patchify
 * convolution, so each band of PV_STREAM_ROWS input rows yields one row of its output.
 *   pv_stream_begin(&s, m, arena);
 *   pv_stream_feed(&s, bytes, n)  any number of times, any chunk sizes, PV_INPUT_BYTES in all
 *     (or pv_stream_rows(&s, rows, PV_STREAM_BAND_BYTES) once per band, with whole bands)
 *   pv_stream_end(&s, &logit);
 * Bit-exact with pv_infer. pv_stream_feed keeps a partial band inside the arena, so the caller needs no
 * image or band buffer at all. */
typedef struct pv_stream {
    const pv_model_t *m;
    uint8_t *arena;
    uint32_t band; /* next output row of the stem */
    uint32_t fill; /* bytes of the next band buffered (pv_stream_feed) */
    int status;
    pv_plan_t plan;
    pv_conv_t stem;
} pv_stream_t;

int pv_stream_begin(pv_stream_t *s, const pv_model_t *m, uint8_t *arena);
int pv_stream_rows(pv_stream_t *s, const int8_t *rows, uint32_t n_bytes);
int pv_stream_feed(pv_stream_t *s, const int8_t *data, uint32_t n);
uint32_t pv_stream_received(const pv_stream_t *s); /* image bytes taken so far */
int pv_stream_end(pv_stream_t *s, int8_t *logit);

#endif /* PV_KERNEL_H */
