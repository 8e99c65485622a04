/* pv_fixedpoint: gemmlowp / TFLM fixed-point primitives, shared by the int8 and the 16x8 kernels
 * (kernels/pv_*_s8.c, pv_*_s16.c). Transcribed from codegen/golden.py, which checks them against TFLM;
 * tests/codegen/test_fixedpoint.py checks the C against the golden model. */
#ifndef PV_FIXEDPOINT_H
#define PV_FIXEDPOINT_H

#include <stdint.h>
#include <string.h>

/* under -ffreestanding GCC no longer inlines memcpy: ask for the builtin (one move) */
#if defined(__GNUC__)
#define PV_FP_COPY4(dst, src) __builtin_memcpy(&(dst), (src), 4)
#else
#define PV_FP_COPY4(dst, src) memcpy(&(dst), (src), 4)
#endif

/* Arithmetic shift right without implementation-defined behaviour (compiles to ASR). */
static inline int32_t pv_asr(int32_t x, int32_t n) { return x < 0 ? ~(~x >> n) : x >> n; }

/* gemmlowp SaturatingRoundingDoublingHighMul. gemmlowp writes it as (ab + nudge) / 2^31 with C's
 * truncating division and nudge = 2^30 (ab >= 0) or 1 - 2^30 (ab < 0); for integers both cases equal
 * floor((ab + 2^30) / 2^31) (for ab < 0: trunc(v / 2^31) = ceil(v / 2^31) = floor((v + 2^31 - 1) / 2^31)
 * with v = ab + 1 - 2^30), which is one add and one arithmetic shift: what this computes. The only
 * saturating case, INT32_MIN * INT32_MIN, is kept. tests/codegen/test_fixedpoint.py checks the identity. */
static inline int32_t pv_srdhm(int32_t a, int32_t b) {
    const int64_t v = (int64_t)a * (int64_t)b + ((int64_t)1 << 30);
    if (a == b && a == INT32_MIN) return INT32_MAX;
    /* floor(v / 2^31) without implementation-defined shifts of negative values */
    return (int32_t)(v >= 0 ? v / ((int64_t)1 << 31) : -((-v + (((int64_t)1 << 31) - 1)) / ((int64_t)1 << 31)));
}

static inline int32_t pv_rdbpot(int32_t x, int32_t exponent) {
    const int32_t mask = (int32_t)(((uint32_t)1u << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return pv_asr(x, exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t pv_wrap_i32(uint32_t u) {
    int32_t v;
    PV_FP_COPY4(v, &u); /* two's complement reinterpretation */
    return v;
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for 1 <= exponent <= 30: x * 2^exponent, saturated to
 * int32 (|x| above the threshold gives INT32_MAX / INT32_MIN, as gemmlowp's masks do); the shift is of the
 * unsigned bits, so a negative x is no undefined behaviour. Exponents <= 0 are pv_rdbpot(x, -exponent). */
static inline int32_t pv_srmpot_left(int32_t x, int32_t exponent) {
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return pv_wrap_i32((uint32_t)x << exponent);
}

static inline int32_t pv_mbqm(int32_t x, int32_t mult, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return pv_rdbpot(pv_srdhm(pv_wrap_i32((uint32_t)x << left), mult), right);
}

#endif /* PV_FIXEDPOINT_H */
