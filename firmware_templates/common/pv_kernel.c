/* pv_kernel: int8 inference of f over the layer table of pv_arch.h and the parameters of a parsed θ
 * blob. Arithmetic: TFLite Micro's reference kernels, transcribed (see codegen/golden.py):
 *   acc = sum over taps inside the image of (x - in_zp) * w   (int32; 'same' pads contribute 0)
 *   acc += bias; acc = MultiplyByQuantizedMultiplier(acc, mult, shift); acc += out_zp; clamp.
 * No undefined behaviour: the int32 accumulator cannot overflow (|bias| <= 2^30 is checked at parse,
 * and depth * 255 * 128 < 2^30), shifts of negative numbers go through pv_asr, and the left shift of
 * MultiplyByQuantizedMultiplier wraps through uint32_t as TFLM's int32 multiply does in practice.
 */
#include "pv_kernel.h"

#include <stddef.h>
#include <string.h>

/* Word loads in hot loops: memcpy is the strict-aliasing-safe idiom, but under -ffreestanding GCC no
 * longer inlines memcpy, so ask for the builtin (one LDR on Cortex-M4, which allows unaligned LDR). */
#if defined(__GNUC__)
#define PV_LOAD32(dst, src) __builtin_memcpy(&(dst), (src), 4)
#else
#define PV_LOAD32(dst, src) memcpy(&(dst), (src), 4)
#endif

#if defined(PV_USE_DSP) && defined(PV_DSP_EMULATE)
/* Host test of the DSP code path: the three ARM SIMD instructions in portable C (ARM semantics). */
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
static inline int32_t pv_smlad(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(pv_lane(a, 0) * pv_lane(b, 0)) + (uint32_t)(pv_lane(a, 1) * pv_lane(b, 1)));
}
#elif defined(PV_USE_DSP)
#if !defined(__ARM_FEATURE_DSP)
#error "PV_USE_DSP needs a core with the DSP extension (Cortex-M4/M7/M33+DSP): add -mcpu=cortex-m4"
#endif
/* ACLE intrinsics (arm_acle.h): what CMSIS's __SXTB16, __SSUB16 and __SMLAD map to. */
#include <arm_acle.h>
#define pv_sxtb16(x) __sxtb16(x)
#define pv_ssub16(a, b) __ssub16((a), (b))
#define pv_smlad(a, b, acc) __smlad((a), (b), (acc))
#endif
#if defined(PV_USE_DSP)
static inline int32_t pv_ror8(int32_t x) {
    const uint32_t u = (uint32_t)x;
    return (int32_t)((u >> 8) | (u << 24));
}
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Fixed-point primitives (gemmlowp / TFLM)                                                        */
/* ---------------------------------------------------------------------------------------------- */

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
    PV_LOAD32(v, &u);
    return v;
}

static inline int32_t pv_mbqm(int32_t x, int32_t mult, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return pv_rdbpot(pv_srdhm(pv_wrap_i32((uint32_t)x << left), mult), right);
}

typedef struct pv_requant_params {
    const int32_t *mult, *shift;
    int32_t out_zp, act_min, act_max;
} pv_requant_params_t;

/* Local copies of the output parameters: int8 stores may alias anything, so without them the compiler
 * reloads every field after each output byte. */
static inline pv_requant_params_t pv_rq(const pv_layer_params_t *p) {
    pv_requant_params_t r;
    r.mult = p->mult;
    r.shift = p->shift;
    r.out_zp = p->out_zp;
    r.act_min = p->act_min;
    r.act_max = p->act_max;
    return r;
}

static inline int8_t pv_requant(int32_t acc, uint32_t q, const pv_requant_params_t *r) {
    int32_t v = pv_mbqm(acc, r->mult[q], r->shift[q]) + r->out_zp;
    if (v < r->act_min) v = r->act_min;
    if (v > r->act_max) v = r->act_max;
    return (int8_t)v;
}

/* The column of one output pixel and one group: the k*k*cin_g input values minus the input zero point,
 * as int16, in the weights' (ky, kx, c) order; taps outside the image ('same' padding) are 0 — the
 * padding value is the zero point. Every block of 4 is stored as (x0, x2, x1, x3) so that one 32-bit
 * word holds the pair that SXTB16 extracts from a word of 4 weights (the CMSIS-NN "reordered" trick);
 * a tail of n % 4 values stays in order. Built once per pixel and group, used by cout_g channels. */
static inline void pv_col_put(int16_t *col, uint32_t i, uint32_t n4, int32_t v) {
    const uint32_t r = i & 3u;
    col[i < n4 ? (i & ~3u) + (r == 1u ? 2u : (r == 2u ? 1u : r)) : i] = (int16_t)v;
}

/* col[i .. i+n) = src[0 .. n) - zp, in the column's order. Word path when the span is whole blocks of 4. */
static inline void pv_col_fill(int16_t *col, uint32_t i, uint32_t n4, const int8_t *src, uint32_t n, int32_t zp) {
    uint32_t b;
    if ((i & 3u) == 0u && (n & 3u) == 0u && i + n <= n4) {
#if defined(PV_USE_DSP)
        const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)(int16_t)zp << 16) | (uint32_t)(uint16_t)(int16_t)zp);
        for (b = 0; b < n; b += 4u) {
            int32_t w, x02, x13;
            PV_LOAD32(w, src + b);
            x02 = pv_ssub16(pv_sxtb16(w), zp2);
            x13 = pv_ssub16(pv_sxtb16(pv_ror8(w)), zp2);
            PV_LOAD32(col[i + b], &x02);
            PV_LOAD32(col[i + b + 2u], &x13);
        }
#else
        for (b = 0; b < n; b += 4u) {
            col[i + b] = (int16_t)((int32_t)src[b] - zp);
            col[i + b + 1u] = (int16_t)((int32_t)src[b + 2u] - zp);
            col[i + b + 2u] = (int16_t)((int32_t)src[b + 1u] - zp);
            col[i + b + 3u] = (int16_t)((int32_t)src[b + 3u] - zp);
        }
#endif
        return;
    }
    for (b = 0; b < n; b++) pv_col_put(col, i + b, n4, (int32_t)src[b] - zp);
}

/* col[i .. i+n) = 0 (a padding tap: the zero point minus itself) */
static inline void pv_col_zero(int16_t *col, uint32_t i, uint32_t n4, uint32_t n) {
    uint32_t b;
    for (b = 0; b < n; b++) pv_col_put(col, i + b, n4, 0);
}

/* sum over i < n of col[i] * w[i] (col in the block order above, n_blocks4 = n & ~3) */
static inline int32_t pv_dot_col(const int16_t *col, const int8_t *w, uint32_t n) {
    int32_t acc = 0;
    uint32_t i = 0;
    const uint32_t n4 = n & ~3u;
#if defined(PV_USE_DSP)
    for (; i < n4; i += 4u) {
        int32_t ww, x02, x13;
        PV_LOAD32(ww, w + i);
        PV_LOAD32(x02, col + i);
        PV_LOAD32(x13, col + i + 2u);
        acc = pv_smlad(x02, pv_sxtb16(ww), acc);
        acc = pv_smlad(x13, pv_sxtb16(pv_ror8(ww)), acc);
    }
#else
    for (; i < n4; i += 4u) {
        acc += (int32_t)col[i] * w[i] + (int32_t)col[i + 2u] * w[i + 1u] + (int32_t)col[i + 1u] * w[i + 2u] +
               (int32_t)col[i + 3u] * w[i + 3u];
    }
#endif
    for (; i < n; i++) acc += (int32_t)col[i] * w[i];
    return acc;
}

/* Two output channels over one column: every column word is loaded once for both. */
static inline void pv_dot_col2(const int16_t *col, const int8_t *w0, const int8_t *w1, uint32_t n, int32_t *acc0,
                               int32_t *acc1) {
    int32_t a0 = 0, a1 = 0;
    uint32_t i = 0;
    const uint32_t n4 = n & ~3u;
#if defined(PV_USE_DSP)
    for (; i < n4; i += 4u) {
        int32_t u0, u1, x02, x13;
        PV_LOAD32(u0, w0 + i);
        PV_LOAD32(u1, w1 + i);
        PV_LOAD32(x02, col + i);
        PV_LOAD32(x13, col + i + 2u);
        a0 = pv_smlad(x02, pv_sxtb16(u0), a0);
        a1 = pv_smlad(x02, pv_sxtb16(u1), a1);
        a0 = pv_smlad(x13, pv_sxtb16(pv_ror8(u0)), a0);
        a1 = pv_smlad(x13, pv_sxtb16(pv_ror8(u1)), a1);
    }
#else
    for (; i < n4; i += 4u) {
        const int32_t x0 = col[i], x2 = col[i + 1u], x1 = col[i + 2u], x3 = col[i + 3u];
        a0 += x0 * w0[i] + x1 * w0[i + 1u] + x2 * w0[i + 2u] + x3 * w0[i + 3u];
        a1 += x0 * w1[i] + x1 * w1[i + 1u] + x2 * w1[i + 2u] + x3 * w1[i + 3u];
    }
#endif
    for (; i < n; i++) {
        a0 += (int32_t)col[i] * w0[i];
        a1 += (int32_t)col[i] * w1[i];
    }
    *acc0 = a0;
    *acc1 = a1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Ops                                                                                             */
/* ---------------------------------------------------------------------------------------------- */

/* CONV_2D (per channel, groups, TF 'same' pads as pad_top/pad_left, fused clamp) for output rows
 * [oy0, oy1). `in` holds input rows [in_row0, ...): only the rows these outputs need are read. */
static int pv_conv_rows(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in,
                        uint32_t in_row0, int8_t *out, uint32_t oy0, uint32_t oy1) {
    int16_t col[PV_MAX_DEPTH];
    const int32_t k = (int32_t)d->kernel, in_h = (int32_t)d->in_h, in_w = (int32_t)d->in_w;
    const uint32_t in_c = d->in_c, out_c = d->out_c;
    const uint32_t cin_g = d->in_c / d->groups, cout_g = d->out_c / d->groups;
    const uint32_t depth = (uint32_t)k * (uint32_t)k * cin_g, n4 = depth & ~3u;
    const int32_t zp = p->in_zp;
    const uint32_t qstep = p->n_quant > 1u ? 1u : 0u; /* per channel or per tensor */
    const pv_requant_params_t rq = pv_rq(p);
    const int8_t *const weights = p->weights;
    const int32_t *const bias = p->bias;
    uint32_t oy, ox, g, j, i;
    int32_t ky, kx;

    if (depth > PV_MAX_DEPTH) return PV_ERR_LAYOUT; /* cannot happen: PV_MAX_DEPTH is the table's maximum */
    for (oy = oy0; oy < oy1; oy++) {
        const int32_t iy0 = (int32_t)(oy * d->stride) - (int32_t)d->pad_top;
        for (ox = 0; ox < d->out_w; ox++) {
            const int32_t ix0 = (int32_t)(ox * d->stride) - (int32_t)d->pad_left;
            int8_t *o = out + ((size_t)(oy - oy0) * d->out_w + ox) * out_c;
            const int row_inside = ix0 >= 0 && ix0 + k <= in_w;
            for (g = 0; g < d->groups; g++) {
                i = 0;
                for (ky = 0; ky < k; ky++) {
                    const int32_t iy = iy0 + ky;
                    const int8_t *row = in + (size_t)(uint32_t)(iy - (int32_t)in_row0) * (uint32_t)in_w * in_c +
                                        (size_t)g * cin_g;
                    if (iy < 0 || iy >= in_h) {
                        pv_col_zero(col, i, n4, (uint32_t)k * cin_g);
                        i += (uint32_t)k * cin_g;
                    } else if (d->groups == 1u && row_inside) { /* one contiguous run of k*in_c bytes */
                        pv_col_fill(col, i, n4, row + (size_t)(uint32_t)ix0 * in_c, (uint32_t)k * in_c, zp);
                        i += (uint32_t)k * in_c;
                    } else {
                        for (kx = 0; kx < k; kx++) {
                            const int32_t ix = ix0 + kx;
                            if (ix < 0 || ix >= in_w) {
                                pv_col_zero(col, i, n4, cin_g);
                            } else {
                                pv_col_fill(col, i, n4, row + (size_t)(uint32_t)ix * in_c, cin_g, zp);
                            }
                            i += cin_g;
                        }
                    }
                }
                for (j = 0; j + 2u <= cout_g; j += 2u) {
                    const uint32_t oc = g * cout_g + j;
                    int32_t acc0, acc1;
                    pv_dot_col2(col, weights + (size_t)oc * depth, weights + (size_t)(oc + 1u) * depth, depth, &acc0,
                                &acc1);
                    o[oc] = pv_requant(acc0 + bias[oc], oc * qstep, &rq);
                    o[oc + 1u] = pv_requant(acc1 + bias[oc + 1u], (oc + 1u) * qstep, &rq);
                }
                if (j < cout_g) {
                    const uint32_t oc = g * cout_g + j;
                    const int32_t acc = pv_dot_col(col, weights + (size_t)oc * depth, depth) + bias[oc];
                    o[oc] = pv_requant(acc, oc * qstep, &rq);
                }
            }
        }
    }
    return PV_OK;
}

/* AVERAGE_POOL_2D, global (kernel = in_h = in_w, checked at parse): TFLM int8 reference rounding. */
static void pv_avgpool(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out) {
    const uint32_t n = d->in_h * d->in_w, c_n = d->in_c;
    const int32_t count = (int32_t)n;
    uint32_t c, i;
    for (c = 0; c < c_n; c++) {
        int32_t acc = 0;
        for (i = 0; i < n; i++) acc += in[(size_t)i * c_n + c];
        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        if (acc < p->act_min) acc = p->act_min;
        if (acc > p->act_max) acc = p->act_max;
        out[c] = (int8_t)acc;
    }
}

/* FULLY_CONNECTED int8 (per tensor when n_quant == 1). */
static int pv_dense(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out) {
    int16_t col[PV_MAX_DEPTH];
    const uint32_t n_in = d->in_h * d->in_w * d->in_c;
    const uint32_t qstep = p->n_quant > 1u ? 1u : 0u;
    const pv_requant_params_t rq = pv_rq(p);
    uint32_t o;
    if (n_in > PV_MAX_DEPTH) return PV_ERR_LAYOUT; /* cannot happen: PV_MAX_DEPTH is the table's maximum */
    pv_col_fill(col, 0u, n_in & ~3u, in, n_in, p->in_zp);
    for (o = 0; o < d->out_c; o++) {
        const int32_t acc = pv_dot_col(col, p->weights + (size_t)o * n_in, n_in) + p->bias[o];
        out[o] = pv_requant(acc, o * qstep, &rq);
    }
    return PV_OK;
}

static uint32_t pv_out_bytes(const pv_layer_desc_t *d) { return d->out_h * d->out_w * d->out_c; }

static int pv_check(const pv_model_t *m, const void *a, const void *b) {
    if (m == NULL || a == NULL || b == NULL) return PV_ERR_ARG;
    if (m->ready != PV_MODEL_READY) return PV_ERR_MODEL;
    return PV_OK;
}

/* Layers [first, PV_N_LAYERS) with activations in the arena; layer first-1's output already there. */
static int pv_run_from(const pv_model_t *m, uint32_t first, int8_t *logit, uint8_t *arena, pv_layer_hook_t hook,
                       void *hook_ctx) {
    uint32_t i;
    for (i = first; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const int8_t *in = (const int8_t *)(arena + pv_arch_layers[i - 1u].out_offset);
        int8_t *out = (int8_t *)(arena + d->out_offset);
        int rc = PV_OK;
        if (d->kind == PV_KIND_CONV) {
            rc = pv_conv_rows(d, &m->layer[i], in, 0u, out, 0u, d->out_h);
        } else if (d->kind == PV_KIND_AVGPOOL) {
            pv_avgpool(d, &m->layer[i], in, out);
        } else {
            rc = pv_dense(d, &m->layer[i], in, out);
        }
        if (rc != PV_OK) return rc;
        if (hook != NULL) hook(hook_ctx, i, out, pv_out_bytes(d));
    }
    *logit = *(const int8_t *)(arena + pv_arch_layers[PV_N_LAYERS - 1u].out_offset);
    return PV_OK;
}

int pv_infer_ex(const pv_model_t *m, const int8_t *image, int8_t *logit, uint8_t *arena, pv_layer_hook_t hook,
                void *hook_ctx) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    int8_t *out0 = (int8_t *)(arena + d0->out_offset);
    int rc = pv_check(m, image, arena);
    if (rc != PV_OK) return rc;
    if (logit == NULL) return PV_ERR_ARG;
    if (d0->kind != PV_KIND_CONV) return PV_ERR_LAYOUT;
    rc = pv_conv_rows(d0, &m->layer[0], image, 0u, out0, 0u, d0->out_h);
    if (rc != PV_OK) return rc;
    if (hook != NULL) hook(hook_ctx, 0u, out0, pv_out_bytes(d0));
    return pv_run_from(m, 1u, logit, arena, hook, hook_ctx);
}

int pv_infer(const pv_model_t *m, const int8_t *image, int8_t *logit, uint8_t *arena) {
    return pv_infer_ex(m, image, logit, arena, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* Input-row streaming of the stem                                                                 */
/* ---------------------------------------------------------------------------------------------- */
int pv_stream_begin(pv_stream_t *s, const pv_model_t *m, uint8_t *arena) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    int rc;
    if (s == NULL) return PV_ERR_ARG;
    s->m = m;
    s->arena = arena;
    s->band = 0u;
    s->status = PV_ERR_ARG;
    rc = pv_check(m, arena, arena);
    if (rc != PV_OK) return s->status = rc;
    /* streaming needs a stem whose output row oy reads exactly input rows [oy*k, oy*k + k) */
    if (d0->kind != PV_KIND_CONV || d0->stride != d0->kernel || d0->pad_top != 0u || d0->out_h * d0->kernel != d0->in_h)
        return s->status = PV_ERR_LAYOUT;
    return s->status = PV_OK;
}

int pv_stream_rows(pv_stream_t *s, const int8_t *rows, uint32_t n_bytes) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    if (s == NULL || rows == NULL) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (s->band >= d0->out_h || n_bytes != d0->kernel * d0->in_w * d0->in_c) return s->status = PV_ERR_ARG;
    s->status = pv_conv_rows(d0, &s->m->layer[0], rows, s->band * d0->kernel,
                             (int8_t *)(s->arena + d0->out_offset) + (size_t)s->band * d0->out_w * d0->out_c, s->band,
                             s->band + 1u);
    s->band++;
    return s->status;
}

int pv_stream_end(pv_stream_t *s, int8_t *logit) {
    if (s == NULL || logit == NULL) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (s->band != pv_arch_layers[0].out_h) return PV_ERR_ARG;
    s->status = PV_ERR_ARG; /* one result per begin */
    return pv_run_from(s->m, 1u, logit, s->arena, NULL, NULL);
}
