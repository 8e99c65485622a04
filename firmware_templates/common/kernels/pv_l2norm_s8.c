/* pv_l2norm_s8: TFLite's L2_NORMALIZATION of an int8 map over its channels (pv_nn.h), in place; and the
 * 1/sqrt that it and the 16x8 one (pv_l2norm_s16.c) share. Bit-exact with codegen/golden.py
 * (l2norm_rows_int8, inv_sqrt_quantized_multiplier_exp), i.e. with TFLM's
 * reference_integer_ops::L2Normalization and GetInvSqrtQuantizedMultiplierExp
 * (tensorflow/lite/kernels/internal/common.h). 96 values per image for pv-gconv-s: plain C. */
#include <stddef.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

#define PV_F3_ONE (1 << 28)                 /* 1.0 in gemmlowp's F3 (3 integer bits) */
#define PV_F3_HALF_THREE (3 << 27)          /* 1.5 in F3 */
#define PV_F0_HALF_SQRT_2 1518500250        /* sqrt(2)/2 in F0 */

void pv_inv_sqrt_mult_exp(int32_t acc, int32_t *mult, int32_t *shift) {
    uint32_t a;
    int32_t s = 11, half_in, x, i;
    if (acc <= 1) { /* TFLM: 0 (no norm) is taken as 1, which the general path would overflow on */
        *mult = INT32_MAX;
        *shift = 0;
        return;
    }
    a = (uint32_t)acc;
    while (a >= (1u << 29)) {
        a /= 4u;
        s++;
    }
    /* TFLM shifts by (CountLeadingZeros(a) - 1) / 2 - 1 bit pairs, which puts a in [2^27, 2^29) (its
     * DCHECKs): one shift count does, as the interval spans exactly one factor of 4 */
    while (a < (1u << 27)) {
        a <<= 2;
        s--;
    }
    half_in = pv_rdbpot((int32_t)(a >> 1), 1); /* F3 input a/2, halved (SaturatingRoundingMultiplyByPOT<-1>) */
    x = PV_F3_ONE;
    for (i = 0; i < 5; i++) { /* Newton-Raphson on 1/sqrt, from x = 1 */
        /* x^3: F3 * F3 * F3 = F9, Rescale<3> = SaturatingRoundingMultiplyByPOT<6> */
        const int32_t x3 = pv_srmpot_left(pv_srdhm(pv_srdhm(x, x), x), 6);
        /* 1.5 x - (a/2) x^3 in F6; gemmlowp's raw int32 subtraction wraps */
        const int32_t t = pv_wrap_i32((uint32_t)pv_srdhm(PV_F3_HALF_THREE, x) - (uint32_t)pv_srdhm(half_in, x3));
        x = pv_srmpot_left(t, 3); /* F6 -> F3 */
    }
    x = pv_srdhm(x, PV_F0_HALF_SQRT_2);
    if (s < 0) { /* only for acc < 32, where x stays below 2^31 after the shift (tests/codegen/test_fixedpoint.py) */
        x = pv_wrap_i32((uint32_t)x << (uint32_t)(-s));
        s = 0;
    }
    *mult = x;
    *shift = -s; /* kReverseShift -1: TFLM's right shift as a left shift */
}

/* One row of depth int8 values x[c] - zp -> y[c] at scale 1/128, zero point 0; y[c] is written after every
 * read of the row but x[c]'s own, so y may be x. */
static void pv_l2norm_row(const int8_t *x, int32_t zp, uint32_t depth, int8_t *y) {
    int32_t acc = 0, m, s;
    uint32_t c;
    for (c = 0; c < depth; c++) {
        const int32_t v = (int32_t)x[c] - zp;
        acc += v * v; /* depth * 255^2 < 2^31: checked by the planner */
    }
    pv_inv_sqrt_mult_exp(acc, &m, &s);
    for (c = 0; c < depth; c++)
        y[c] = (int8_t)pv_requantize((int32_t)x[c] - zp, m, s + PV_L2NORM_OUT_SHIFT, 0, -128, 127);
}

void pv_l2norm_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out) {
    const uint32_t rows = d->in_h * d->in_w, depth = d->in_c;
    uint32_t r;
    for (r = 0; r < rows; r++) pv_l2norm_row(in + (size_t)r * depth, p->in_zp, depth, out + (size_t)r * depth);
}
