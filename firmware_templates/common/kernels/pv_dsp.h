/* pv_dsp: the ARM DSP-extension instructions the kernels use (SXTB16, SMLAD, SMLABB, SMMULR, ...), as ACLE
 * intrinsics on a core that has them (PV_USE_DSP, Cortex-M4/M7/M33+DSP), or in portable C with ARM's
 * semantics for the host tests of the DSP code paths (PV_USE_DSP with PV_DSP_EMULATE). Also PV_LOAD32, the
 * word load of the hot loops. Included by the kernels (kernels/pv_*_s8.c, pv_*_s16.c) only. */
#ifndef PV_DSP_H
#define PV_DSP_H

#include <stdint.h>
#include <string.h>

/* Word loads in hot loops: memcpy is the strict-aliasing-safe idiom, but under -ffreestanding GCC no
 * longer inlines memcpy, so ask for the builtin (one LDR on Cortex-M4, which allows unaligned LDR). */
#if defined(__GNUC__)
#define PV_LOAD32(dst, src) __builtin_memcpy(&(dst), (src), 4)
#else
#define PV_LOAD32(dst, src) memcpy(&(dst), (src), 4)
#endif

#if defined(PV_USE_DSP) && defined(PV_DSP_EMULATE)
/* Host test of the DSP code path: the ARM SIMD instructions in portable C (ARM semantics). */
static inline int32_t pv_lane(int32_t v, int hi) { return (int32_t)(int16_t)(uint16_t)((uint32_t)v >> (hi ? 16 : 0)); }
static inline int32_t pv_pack(int32_t lo, int32_t hi) {
    return (int32_t)(((uint32_t)(uint16_t)hi << 16) | (uint32_t)(uint16_t)lo);
}
static inline int32_t pv_sxtb16(int32_t x) {
    const uint32_t u = (uint32_t)x;
    return pv_pack((int32_t)(int8_t)(uint8_t)(u & 0xFFu), (int32_t)(int8_t)(uint8_t)((u >> 16) & 0xFFu));
}
static inline int32_t pv_ssub16(int32_t a, int32_t b) {
    return pv_pack(pv_lane(a, 0) - pv_lane(b, 0), pv_lane(a, 1) - pv_lane(b, 1));
}
static inline int32_t pv_sadd16(int32_t a, int32_t b) {
    return pv_pack(pv_lane(a, 0) + pv_lane(b, 0), pv_lane(a, 1) + pv_lane(b, 1));
}
static inline int32_t pv_uxtb16(int32_t x) { return (int32_t)((uint32_t)x & 0x00FF00FFu); }
static inline int32_t pv_smlad(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(pv_lane(a, 0) * pv_lane(b, 0)) + (uint32_t)(pv_lane(a, 1) * pv_lane(b, 1)));
}
static inline int32_t pv_smlabb(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(pv_lane(a, 0) * pv_lane(b, 0)));
}
static inline int32_t pv_smlatt(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(pv_lane(a, 1) * pv_lane(b, 1)));
}
#elif defined(PV_USE_DSP)
#if !defined(__ARM_FEATURE_DSP)
#error "PV_USE_DSP needs a core with the DSP extension (Cortex-M4/M7/M33+DSP): add -mcpu=cortex-m4"
#endif
/* ACLE intrinsics (arm_acle.h): what CMSIS's __SXTB16, __SSUB16, __SADD16, __SMLAD (...) map to. */
#include <arm_acle.h>
#define pv_sxtb16(x) __sxtb16(x)
#define pv_ssub16(a, b) __ssub16((a), (b))
#define pv_sadd16(a, b) __sadd16((a), (b))
#define pv_uxtb16(x) __uxtb16(x)
#define pv_smlad(a, b, acc) __smlad((a), (b), (acc))
#define pv_smlabb(a, b, acc) __smlabb((a), (b), (acc)) /* acc + bottom halves' product */
#define pv_smlatt(a, b, acc) __smlatt((a), (b), (acc)) /* acc + top halves' product */
#define PV_HAVE_SMMULR 1
/* SMMULR: (a * b + 2^31) >> 32, the rounded high word (no ACLE intrinsic) */
static inline int32_t pv_smmulr(int32_t a, int32_t b) {
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#define pv_ssat8(x) __ssat((x), 8)
#endif
#if defined(PV_USE_DSP)
static inline int32_t pv_ror8(int32_t x) {
    const uint32_t u = (uint32_t)x;
    return (int32_t)((u >> 8) | (u << 24));
}
#endif

/* SXTB16 / UXTB16 of x rotated by 8 bits, and a store of two words (int16 pairs) at once. */
#if defined(PV_HAVE_SMMULR) /* the real DSP build: the rotation folded into the extraction, STRD */
static inline int32_t pv_sxtb16_ror8(int32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int32_t pv_uxtb16_ror8(int32_t x) {
    int32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline void pv_st2(int16_t *p, int32_t lo, int32_t hi) {
    __asm__ volatile("strd %1, %2, [%0]" : : "r"(p), "r"(lo), "r"(hi) : "memory");
}
#elif defined(PV_USE_DSP)
static inline int32_t pv_sxtb16_ror8(int32_t x) { return pv_sxtb16(pv_ror8(x)); }
static inline int32_t pv_uxtb16_ror8(int32_t x) { return pv_uxtb16(pv_ror8(x)); }
static inline void pv_st2(int16_t *p, int32_t lo, int32_t hi) {
    PV_LOAD32(p[0], &lo);
    PV_LOAD32(p[2], &hi);
}
#endif

#endif /* PV_DSP_H */
