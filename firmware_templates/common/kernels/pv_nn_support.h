/* pv_nn_support: the inline helpers the int8 and the 16x8 kernels share (as CMSIS-NN's
 * arm_nnsupportfunctions.h): requantization with the fused clamp, the fast requantization of the DSP paths
 * (SMMULR), the int16 x int8 dot product of a gathered patch and its value order. Included by kernels/pv_*.c
 * only. */
#ifndef PV_NN_SUPPORT_H
#define PV_NN_SUPPORT_H

#include <stdint.h>

#include "pv_blob.h"
#include "pv_dsp.h"
#include "pv_fixedpoint.h"

/* TFLM's output stage: MultiplyByQuantizedMultiplier(acc, mult, shift) + zp, clamped to [lo, hi] (lo <= hi
 * within int16, zp within int8: checked at parse). With a left shift, pv_mbqm may return any int32 (its
 * shift wraps), so v + zp could overflow: clamping v to [lo - zp, hi - zp] first gives clip(v + zp, lo, hi)
 * as codegen.golden computes it in int64, without the overflow. */
static inline int32_t pv_requantize(int32_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo, int32_t hi) {
    const int32_t v = pv_mbqm(acc, mult, shift);
    if (v < lo - zp) return lo;
    if (v > hi - zp) return hi;
    return v + zp;
}

/* The int8 output stage with local copies of a layer's output parameters: int8 stores may alias anything,
 * so without the copies the compiler reloads every field after each output byte. */
typedef struct pv_requant_s8 {
    const int32_t *mult, *shift;
    int32_t out_zp, act_min, act_max;
} pv_requant_s8_t;

static inline pv_requant_s8_t pv_requant_s8_params(const pv_layer_params_t *p) {
    pv_requant_s8_t r;
    r.mult = p->mult;
    r.shift = p->shift;
    r.out_zp = p->out_zp;
    r.act_min = p->act_min;
    r.act_max = p->act_max;
    return r;
}

static inline int8_t pv_requant_s8(int32_t acc, uint32_t q, const pv_requant_s8_t *r) {
    return (int8_t)pv_requantize(acc, r->mult[q], r->shift[q], r->out_zp, r->act_min, r->act_max);
}

/* The 16x8 output stage: int16 activations. */
static inline int16_t pv_requant_s16(int32_t acc, const pv_layer_params_t *p, uint32_t q) {
    return (int16_t)pv_requantize(acc, p->mult[q], p->shift[q], p->out_zp, p->act_min, p->act_max);
}

/* Where value i of a gathered patch (or column) of n values is stored. DSP builds keep every whole block of
 * 4 values in the order x0, x2, x1, x3, so that two word loads give the int16 pairs (x0, x2), (x1, x3)
 * that match the pairs SXTB16 extracts from a word of 4 int8 weights (the CMSIS-NN "reordered" trick);
 * the tail after the last whole block stays in order. Plain C: in order. */
static inline uint32_t pv_slot(uint32_t i, uint32_t n) {
#if defined(PV_USE_DSP)
    static const uint8_t perm[4] = {0u, 2u, 1u, 3u};
    return i < (n & ~3u) ? (i & ~3u) | perm[i & 3u] : i;
#else
    (void)n;
    return i;
#endif
}

/* sum over i < n of x[i] * w[i], x in pv_slot order. DSP path: SMLAD multiplies two int16 pairs at once.
 * Exact (an int32 sum the callers keep from overflowing), so the order of the terms does not matter. */
static inline int32_t pv_dot_s16x8(const int16_t *x, const int8_t *w, uint32_t n) {
    int32_t acc = 0;
    uint32_t i = 0;
#if defined(PV_USE_DSP)
    for (; i + 4u <= n; i += 4u) {
        int32_t ww, x02, x13;
        PV_LOAD32(ww, w + i);
        PV_LOAD32(x02, x + i);
        PV_LOAD32(x13, x + i + 2u);
        acc = pv_smlad(x02, pv_sxtb16(ww), acc);
        acc = pv_smlad(x13, pv_sxtb16(pv_ror8(ww)), acc);
    }
#else
    for (; i + 4u <= n; i += 4u) {
        acc += (int32_t)x[i] * w[i] + (int32_t)x[i + 1u] * w[i + 1u] + (int32_t)x[i + 2u] * w[i + 2u] +
               (int32_t)x[i + 3u] * w[i + 3u];
    }
#endif
    for (; i < n; i++) acc += (int32_t)x[i] * w[i];
    return acc;
}

#if !defined(PV_HAVE_SMMULR)
/* SMMULR in C: floor((a * b + 2^31) / 2^32) without implementation-defined shifts of negative values */
static inline int32_t pv_smmulr(int32_t a, int32_t b) {
    const int64_t v = (int64_t)a * (int64_t)b + ((int64_t)1 << 31);
    return (int32_t)(v >= 0 ? v / ((int64_t)1 << 32) : -((-v + (((int64_t)1 << 32) - 1)) / ((int64_t)1 << 32)));
}
#endif

/* Fast requantization (bias included, accumulator scaled by 2^(left+1) through the weights):
 * h = SRDHM(acc_true << left, M) = SMMULR(acc, M). Then RDBPOT(h, e) + zp as one floor shift by e + 1:
 * RDBPOT(x, e) = floor((x + 2^(e-1) - [x<0]) / 2^e) (round half away from zero; e >= 1), and
 * floor((2x + 2^e - [x<0]) / 2^(e+1)) is the same number — with y = x + 2^(e-1) it reads
 * floor((2y - [x<0]) / 2^(e+1)), and for x < 0 no multiple of 2^(e+1) lies between 2y - 2 and the odd
 * 2y - 1 — and for e = 0 it gives x. Adding zp * 2^(e+1) before the shift adds zp after it. No overflow:
 * |acc| < 2^30 (checked at setup), so |2h| <= 2^30, 2^e <= 2^21 and |zp * 2^(e+1)| <= 2^29. */
static inline int32_t pv_rq_fast(int32_t acc, int32_t mult, int32_t rnd, int32_t e1) {
    const int32_t h = pv_smmulr(acc, mult);
    int32_t t;
#if defined(PV_HAVE_SMMULR)
    /* rnd + 2h - (h >>> 31) in two instructions (GCC makes three of the C below) */
    __asm__("add %0, %1, %2, lsl #1\n\tsub %0, %0, %2, lsr #31" : "=&r"(t) : "r"(rnd), "r"(h));
#else
    t = pv_wrap_i32((uint32_t)rnd + ((uint32_t)h << 1) - ((uint32_t)h >> 31));
#endif
    return pv_asr(t, e1);
}

#endif /* PV_NN_SUPPORT_H */
