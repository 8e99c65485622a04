/* pv_nn: the operators of f, one file per operator and data type (as CMSIS-NN's arm_nnfunctions.h):
 *
 *   kernels/pv_conv_s8.c    CONV_2D, int8 activations            (plain C, and SMLAD under PV_USE_DSP)
 *   kernels/pv_pool_s8.c    the global mean, int8 (or its exact int16 sums, PV_FLAG_EXACT_SUM)
 *   kernels/pv_l2norm_s8.c  L2_NORMALIZATION over the channels, int8 (and the 1/sqrt both variants use)
 *   kernels/pv_dense_s8.c   FULLY_CONNECTED, int8
 *   kernels/pv_conv_s16.c   CONV_2D, 16x8: int16 activations, int8 weights (plain C, and SMLAD)
 *   kernels/pv_pool_s16.c   the global mean, 16x8
 *   kernels/pv_l2norm_s16.c L2_NORMALIZATION, 16x8 (TFLM's int8 op between two QUANTIZE ops)
 *   kernels/pv_dense_s16.c  FULLY_CONNECTED, 16x8
 *
 * Each is TFLite Micro's reference kernel transcribed, bit-exact with the golden model (codegen/golden.py):
 *   acc = bias + sum over taps inside the image of (x - in_zp) * w    (int32; 'same' pads contribute 0)
 *   out = clamp(MultiplyByQuantizedMultiplier(acc, mult, shift) + out_zp, act_min, act_max)
 * with groups as TFLM (group = c / (out_c / groups)) and the global mean as a CONV_2D of weights 1 and
 * bias 0 with one multiplier (codegen/quantize.py says why it is not AVERAGE_POOL_2D). L2_NORMALIZATION is
 * TFLM's int8 reference kernel: per row acc = sum of (x - in_zp)^2, (M, s) = GetInvSqrtQuantizedMultiplierExp
 * (acc), out = clamp(MultiplyByQuantizedMultiplier(x - in_zp, M, s + 7), -128, 127) at scale 1/128. No undefined
 * behaviour: the int32 accumulators cannot overflow (bias bounds checked at parse, depths by the planner),
 * shifts of negative numbers go through pv_asr.
 *
 * The kernel front (pv_kernel.c) runs them over the layer table with the offsets of the planner
 * (pv_plan.c); scratch is caller-owned (part of the arena), sized by the *_scratch_bytes queries.
 */
#ifndef PV_NN_H
#define PV_NN_H

#include <stdint.h>

#include "pv_arch.h"
#include "pv_blob.h"

#define PV_MAX_KERNEL 8u /* conv kernels up to 8x8 (pv-gconv-s: 4): row pointers per output row */

/* A pool with PV_FLAG_EXACT_SUM (format version 4) outputs its sums as int16 for the dense layer after it. */
static inline int pv_exact_sum(const pv_layer_params_t *p) { return (p->flags & PV_FLAG_EXACT_SUM) != 0u; }

/* Input rows of a conv that output rows [0, oy] read: [0, pv_rows_ready(d, oy)) (clamped to the image). */
static inline uint32_t pv_rows_ready(const pv_layer_desc_t *d, uint32_t oy) {
    int32_t e = (int32_t)(oy * d->stride) - (int32_t)d->pad_top + (int32_t)d->kernel;
    if (e < 0) e = 0;
    if ((uint32_t)e > d->in_h) e = (int32_t)d->in_h;
    return (uint32_t)e;
}

/* The input row that tap row ky of output row oy reads, as an index into [0, in_h), or -1 for padding. */
static inline int32_t pv_tap_row(const pv_layer_desc_t *d, uint32_t oy, uint32_t ky) {
    const int32_t iy = (int32_t)(oy * d->stride + ky) - (int32_t)d->pad_top;
    return iy < 0 || iy >= (int32_t)d->in_h ? -1 : iy;
}

/* ---- int8 ---------------------------------------------------------------------------------------- */
/* A conv layer set up in its scratch (pv_conv_s8_setup): a ring of `kernel` input rows expanded to int16
 * (x - in_zp), the weights as int16, the requantization words, and for the stem the int8 input band. */
typedef struct pv_conv_s8 {
    const pv_layer_desc_t *d;
    const pv_layer_params_t *p;
    int16_t *ring, *w16;
    int32_t *rq; /* requantization parameters, blocks of 4 channels */
    int8_t *band;
    uint32_t cin_g, cout_g, depth, row_elems, runlen, wp;
    /* rowrun: the ring's layout, 0 group-major, 1 row-run, 2 (DSP build) patches (pv_conv_s8.c) */
    int rowrun, packed, fast, full;
    int32_t lo, hi;
} pv_conv_s8_t;

/* Scratch bytes of a conv layer (with_band: plus the stem's int8 band of `kernel` input rows). */
uint32_t pv_conv_s8_scratch_bytes(const pv_layer_desc_t *d, int with_band);
/* Sets the conv up in scratch (8-byte aligned, pv_conv_s8_scratch_bytes). */
void pv_conv_s8_setup(pv_conv_s8_t *c, const pv_layer_desc_t *d, const pv_layer_params_t *p, uint8_t *scratch);
/* Input row iy (in_w * in_c int8) into the ring; rows come in order. */
void pv_conv_s8_push_row(const pv_conv_s8_t *c, const int8_t *src, uint32_t iy);
/* Output row oy (out_w * out_c int8) from the ring, which holds input rows [.., pv_rows_ready(d, oy)). */
void pv_conv_s8_row(const pv_conv_s8_t *c, int8_t *out, uint32_t oy);
/* A whole conv layer; out may overlap in as the planner allows (every output row lands on input rows
 * that are already in the ring). */
void pv_conv_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out,
                uint8_t *scratch);

uint32_t pv_pool_s8_scratch_bytes(const pv_layer_desc_t *d);
/* The global mean in place (out may be in): out[c] is written after every read of channel c; with
 * PV_FLAG_EXACT_SUM out holds int16 sums (4-byte aligned), written after every read. */
void pv_pool_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out,
                uint8_t *scratch);

/* TFLM GetInvSqrtQuantizedMultiplierExp(acc, kReverseShift -1), acc >= 0: (mult, shift) with
 * mult * 2^shift / 2^31 ~ 1/sqrt(acc), shift <= 0 (a right shift); acc <= 1 gives (2^31 - 1, 0). */
void pv_inv_sqrt_mult_exp(int32_t acc, int32_t *mult, int32_t *shift);
#define PV_L2NORM_OUT_SHIFT 7 /* L2_NORMALIZATION's fixed output scale 1/128 = 2^-7 */
/* L2_NORMALIZATION over the channels of each of the in_h * in_w positions (pv-gconv-s: one), int8 out at
 * scale 1/128, zero point 0; in place (out may be in). The record's multiplier is not used (the identity). */
void pv_l2norm_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out);

uint32_t pv_dense_s8_scratch_bytes(const pv_layer_desc_t *d);
/* FULLY_CONNECTED; the input is copied to the scratch first, so out may be in. sums_in: the input is an
 * exact-sum pool's int16 sums (zero point 0). */
void pv_dense_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out,
                 uint8_t *scratch, int sums_in);

/* ---- 16x8: int16 activations (zero point 0), int8 weights, int32 biases -------------------------------- */
/* One output row of a conv: rows[ky] is the input row tap row ky reads (in_w * in_c values, word-aligned),
 * or NULL for a padding row; out (word-aligned) receives out_w * out_c values. wx: the layer's weights as
 * pv_conv_s16_prepare left them, or NULL (the DSP path then expands them on the stack, block by block). */
void pv_conv_s16_row(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *const *rows,
                     int16_t *out, const int32_t *wx);
/* Bytes of a conv layer's weights expanded for the DSP path (pv_conv_s16_prepare), 0 where that path does
 * not run it (and on builds without it): a streamed layer keeps them across its rows. */
uint32_t pv_conv_s16_cache_bytes(const pv_layer_desc_t *d);
void pv_conv_s16_prepare(const pv_layer_desc_t *d, const pv_layer_params_t *p, int32_t *wx);
/* A whole conv layer from a whole input tensor (out must not overlap in). */
void pv_conv_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out);
/* dst[i] = src[i] for i < n (int8 to int16; dst 4-byte aligned). */
void pv_widen_s8(int16_t *dst, const int8_t *src, uint32_t n);
void pv_pool_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out);
/* L2_NORMALIZATION of a 16x8 map: int16 -> int8 with the record's one multiplier and shift (zero point 0),
 * the int8 op, and its int8 values stored as int16 (scale 1/128); out may be in. */
void pv_l2norm_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out);
void pv_dense_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out);

#endif /* PV_NN_H */
