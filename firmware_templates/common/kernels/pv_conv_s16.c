/* pv_conv_s16: CONV_2D of the 16x8 scheme (pv_nn.h): int16 activations with zero point 0, int8 per-channel
 * weights, int32 biases — TFLM's reference kernel with AccumScalar = int32_t, as the golden model
 * (codegen/golden.py with activations "int16") computes it. Per output value an int32 sum of int16 x int8
 * products (|acc| <= depth * 32768 * 128 + 2^30 < 2^31 for depths < 256, checked by the planner), plus
 * bias, then MultiplyByQuantizedMultiplier, clamp to [act_min, act_max]. Plain C, and under PV_USE_DSP a
 * 4-channel SMLAD dot over each gathered patch.
 */
#include <stddef.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

/* The same for 4 output channels at once (weights w, w + n, w + 2n, w + 3n): each input word is loaded once
 * for all four. */
static inline void pv_dot4_s16x8(const int16_t *x, const int8_t *w, uint32_t n, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    uint32_t i = 0;
#if defined(PV_USE_DSP)
    for (; i + 4u <= n; i += 4u) {
        int32_t x02, x13, w0, w1, w2, w3;
        PV_LOAD32(x02, x + i);
        PV_LOAD32(x13, x + i + 2u);
        PV_LOAD32(w0, w + i);
        PV_LOAD32(w1, w + n + i);
        PV_LOAD32(w2, w + 2u * n + i);
        PV_LOAD32(w3, w + 3u * n + i);
        a0 = pv_smlad(x13, pv_sxtb16(pv_ror8(w0)), pv_smlad(x02, pv_sxtb16(w0), a0));
        a1 = pv_smlad(x13, pv_sxtb16(pv_ror8(w1)), pv_smlad(x02, pv_sxtb16(w1), a1));
        a2 = pv_smlad(x13, pv_sxtb16(pv_ror8(w2)), pv_smlad(x02, pv_sxtb16(w2), a2));
        a3 = pv_smlad(x13, pv_sxtb16(pv_ror8(w3)), pv_smlad(x02, pv_sxtb16(w3), a3));
    }
#endif
    for (; i < n; i++) {
        const int32_t v = x[i];
        a0 += v * w[i];
        a1 += v * w[n + i];
        a2 += v * w[2u * n + i];
        a3 += v * w[3u * n + i];
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One output row of a conv layer. rows[ky] is the input row that tap row ky reads (in_w x in_c values), or
 * NULL for a padding row; out receives out_w x out_c values. Per output pixel and group, the k x k x cin_g
 * input patch is gathered once into a contiguous buffer (zeros where the taps fall outside the image: the
 * input zero point is 0 in 16x8, the blob parser refuses any other, so a padded tap adds exactly 0, as
 * TFLM skips it); each of the group's output channels is then one dot product with its weights, which are
 * stored in the same (ky, kx, ci) order. */
static void pv_conv_s16_row_generic(const pv_layer_desc_t *d, const pv_layer_params_t *p,
                                    const int16_t *const *rows, int16_t *out) {
    const uint32_t k = d->kernel, cin_g = d->in_c / d->groups, cout_g = d->out_c / d->groups;
    const uint32_t depth = k * k * cin_g;
    const int per_channel = p->n_quant > 1u;
    int16_t patch[PV_MAX_DEPTH];
    uint32_t ox, g, oc, ky, kx;
    for (ox = 0; ox < d->out_w; ox++) {
        int16_t *o = out + (size_t)ox * d->out_c;
        const int32_t ix0 = (int32_t)(ox * d->stride) - (int32_t)d->pad_left;
        for (g = 0; g < d->groups; g++) {
            uint32_t i = 0u; /* value index in the patch, (ky, kx, ci) order */
            for (ky = 0; ky < k; ky++) {
                for (kx = 0; kx < k; kx++) {
                    const int32_t ix = ix0 + (int32_t)kx;
                    const int inside = rows[ky] != NULL && ix >= 0 && ix < (int32_t)d->in_w;
                    const int16_t *src = inside ? rows[ky] + (size_t)ix * d->in_c + (size_t)g * cin_g : NULL;
                    uint32_t ci = 0;
                    if ((cin_g & 3u) == 0u) { /* whole blocks: no per-value slot arithmetic */
                        for (; ci < cin_g; ci += 4u, i += 4u) {
                            int16_t *b = patch + i;
                            if (!inside) {
                                b[0] = b[1] = b[2] = b[3] = 0;
                            } else {
                                b[0] = src[ci];
                                b[pv_slot(1u, 4u)] = src[ci + 1u];
                                b[pv_slot(2u, 4u)] = src[ci + 2u];
                                b[3] = src[ci + 3u];
                            }
                        }
                    }
                    for (; ci < cin_g; ci++, i++) patch[pv_slot(i, depth)] = inside ? src[ci] : 0;
                }
            }
            oc = g * cout_g;
            for (; oc + 4u <= (g + 1u) * cout_g; oc += 4u) {
                int32_t acc[4];
                uint32_t j;
                for (j = 0; j < 4u; j++) acc[j] = p->bias[oc + j];
                pv_dot4_s16x8(patch, p->weights + (size_t)oc * depth, depth, acc);
                for (j = 0; j < 4u; j++) o[oc + j] = pv_requant_s16(acc[j], p, per_channel ? oc + j : 0u);
            }
            for (; oc < (g + 1u) * cout_g; oc++) {
                const int32_t acc = p->bias[oc] + pv_dot_s16x8(patch, p->weights + (size_t)oc * depth, depth);
                o[oc] = pv_requant_s16(acc, p, per_channel ? oc : 0u);
            }
        }
    }
}


#if defined(PV_USE_DSP)
/* ---- DSP path: blocks of 4 output channels, weights expanded to int16 pairs -------------------------------
 * The activations are int16 already, so a word load of an input gives the pair (x0, x1) in natural order;
 * the weights of a block of 4 output channels are expanded once to int16 in the same order (per 4 values
 * of depth: channel j's pairs (w0, w1), (w2, w3) at words 2j, 2j + 1), so that one SMLAD multiplies two
 * pairs and every input word serves all 4 channels (13 instructions per 16 MACs: 1 + 4 LDRD, 8 SMLAD).
 * Groups of 1 or 2 channels (as many outputs as inputs): a block spans 4 / cin_g groups, which read 4
 * consecutive input channels, the block's own; per tap channel j's weights are one word (cin_g 2: its
 * group's pair, against input word j / 2; 7 instructions per 8 MACs) or a half word (cin_g 1: words
 * (w0, w1), (w2, w3) against (x0, x1), (x2, x3), bottom and top halves by SMLABB, SMLATT; 6 per 4 MACs).
 * The 'same' pads are not gathered: a tap outside the image adds exactly 0 (input zero point 0), so it is
 * skipped. Accumulation order differs from TFLM's, the int32 sum does not (no overflow: pv_plan.c).
 * Fast requantization for layers whose clamp and bounds allow it (pv_c16_fast; else the whole layer runs
 * the transcription, pv_conv_s16_row_generic): the weights and the bias are scaled by 2^(left + 1) at
 * expansion, so that the accumulator arrives as acc << (left + 1), and pv_c16_rq_relu finishes
 * MultiplyByQuantizedMultiplier as pv_rq_fast does (pv_nn_support.h, derivation there).
 * Where the expanded weights live: a streamed layer's in the arena (pv_conv_s16_prepare, at the start of
 * a probe; pv_plan.c), the others' one block at a time on the stack. */

#if defined(PV_HAVE_SMMULR) /* the real DSP build */
/* Two consecutive words in one LDRD (GCC splits 64-bit loads into two LDR on this core). The asm does not
 * tell the compiler which memory it reads (an "m" operand makes GCC spill address registers): it is used
 * only inside pv_c16_block_row (noinline), which reads inputs and expanded weights that do not change
 * while it runs and writes only the output row, which overlaps neither. Word-aligned addresses. */
#define PV_C16_LD2(base, off, a, b) __asm__ volatile("ldrd %0, %1, [%2, %3]" : "=r"(a), "=r"(b) : "r"(base), "I"(4 * (off)))
static inline int32_t pv_c16_pack(int32_t lo, int32_t hi) { /* (lo & 0xFFFF) | hi << 16 */
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}
static inline int32_t pv_c16_packt(int32_t lo, int32_t hi) { /* (lo >> 16) | (hi & 0xFFFF0000) */
    int32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}
#define pv_c16_usat15(x) __usat((x), 15)
#else
#define PV_C16_LD2(base, off, a, b)                 \
    do {                                            \
        PV_LOAD32((a), (base) + (off));             \
        PV_LOAD32((b), (base) + (off) + 1);         \
    } while (0)
static inline int32_t pv_c16_pack(int32_t lo, int32_t hi) {
    return pv_wrap_i32(((uint32_t)hi << 16) | ((uint32_t)lo & 0xFFFFu));
}
static inline int32_t pv_c16_packt(int32_t lo, int32_t hi) {
    return pv_wrap_i32((int32_t)(((uint32_t)hi & 0xFFFF0000u) | ((uint32_t)lo >> 16)));
}
static inline int32_t pv_c16_usat15(int32_t x) { return x < 0 ? 0 : (x > 32767 ? 32767 : x); }
#endif

/* one block of 4 values for 4 output channels: x = 2 words at xp + xo, w = 8 words at wp + wo */
#define PV_C16_BLK(xp, xo, wp, wo)            \
    do {                                      \
        int32_t x0, x1, w0, w1;               \
        PV_C16_LD2((xp), (xo), x0, x1);       \
        PV_C16_LD2((wp), (wo), w0, w1);       \
        a0 = pv_smlad(x0, w0, a0);            \
        a0 = pv_smlad(x1, w1, a0);            \
        PV_C16_LD2((wp), (wo) + 2, w0, w1);   \
        a1 = pv_smlad(x0, w0, a1);            \
        a1 = pv_smlad(x1, w1, a1);            \
        PV_C16_LD2((wp), (wo) + 4, w0, w1);   \
        a2 = pv_smlad(x0, w0, a2);            \
        a2 = pv_smlad(x1, w1, a2);            \
        PV_C16_LD2((wp), (wo) + 6, w0, w1);   \
        a3 = pv_smlad(x0, w0, a3);            \
        a3 = pv_smlad(x1, w1, a3);            \
    } while (0)

/* Row-run layers: each kernel row of a pixel's taps is one contiguous run of the input row (no left pad; one
 * group: kernel * in_c values, the patchify stem and a dense 1x1 conv; a grouped 1x1 conv: the group's
 * in_c / groups values) of whole blocks of 4 word-aligned values. The DSP path runs these, groups of 4k input
 * channels (both with blocks of 4 output channels per group), and the narrow groups of pv_c16_narrow. */
static inline int pv_c16_rowrun(const pv_layer_desc_t *d) {
    const uint32_t runlen = d->groups == 1u ? d->kernel * d->in_c : d->in_c / d->groups;
    return (d->groups == 1u || d->kernel == 1u) && d->pad_left == 0u && runlen % 4u == 0u &&
           (d->stride * d->in_c) % 2u == 0u && (d->out_w - 1u) * d->stride + d->kernel <= d->in_w;
}

/* groups of 1 or 2 channels, as many outputs (not a row-run layer: its runs would not be whole blocks) */
static uint32_t pv_c16_narrow(const pv_layer_desc_t *d) {
    const uint32_t cin_g = d->in_c / d->groups;
    return (cin_g == 1u || cin_g == 2u) && d->out_c == d->in_c && d->in_c % 4u == 0u && !pv_c16_rowrun(d) ? cin_g : 0u;
}

static int pv_c16_shape_ok(const pv_layer_desc_t *d) {
    const uint32_t cin_g = d->in_c / d->groups, cout_g = d->out_c / d->groups;
    return d->kind == PV_KIND_CONV && (d->in_w * d->in_c) % 2u == 0u &&
           (pv_c16_narrow(d) || (cout_g % 4u == 0u && (pv_c16_rowrun(d) || (cin_g % 4u == 0u && d->in_c % 2u == 0u)))) &&
           d->kernel * d->kernel * cin_g <= PV_MAX_DEPTH;
}

/* What the fast requantization needs, else the layer runs the transcription (pv_conv_s16_row_generic): zero
 * point 0 and the ReLU clamp (one clamp keeps the blocked loops small), except with 1 channel per group, whose
 * store rounds exactly and clamps to any [act_min, act_max] (pv_c16_rq_clamp); and for every
 * channel pv_conv_s8.c's bounds with int16 inputs: no left shift beyond 7, a right shift up to 21,
 * |acc| << (left + 1) < 2^30 (|bias| <= 2^30 by the parser, depth < 2^7: the sum fits 32 bits). */
static int pv_c16_fast(const pv_layer_desc_t *d, const pv_layer_params_t *p) {
    const uint32_t depth = d->kernel * d->kernel * (d->in_c / d->groups), qstep = p->n_quant > 1u ? 1u : 0u;
    uint32_t oc;
    if (p->out_zp != 0) return 0;
    if (pv_c16_narrow(d) != 1u && (p->act_min != 0 || p->act_max != 32767)) return 0; /* the ReLU clamp */
    for (oc = 0; oc < d->out_c; oc++) {
        const int32_t sh = p->shift[oc * qstep], b = p->bias[oc];
        const uint32_t bound = (uint32_t)(b < 0 ? -(int64_t)b : b) + depth * 32768u * 128u;
        if (sh > 7 || sh < -21 || bound >= (1u << (29 - (sh > 0 ? sh : 0)))) return 0;
    }
    return 1;
}

static uint32_t pv_c16_block_words(const pv_layer_desc_t *d) { return 2u * d->kernel * d->kernel * (d->in_c / d->groups); }

/* Requantization words of a block of 4 channels oc..oc+3 (fast path): the bias scaled as the weights, the
 * multiplier, the rounding constant 2^e + zp * 2^(e+1) and e + 1 for the right shift e; the layer's clamp. */
typedef struct pv_c16_rq {
    int32_t bias[4], mult[4], rnd[4], e1[4];
    int32_t lo, hi;
} pv_c16_rq_t;

static inline uint32_t pv_c16_lsh(int32_t sh) { return (uint32_t)(sh > 0 ? sh : 0) + 1u; }

static void pv_c16_block_rq(const pv_layer_params_t *p, uint32_t oc, pv_c16_rq_t *r) {
    const uint32_t qstep = p->n_quant > 1u ? 1u : 0u;
    uint32_t j;
    for (j = 0; j < 4u; j++) {
        const int32_t sh = p->shift[(oc + j) * qstep];
        const uint32_t e = sh > 0 ? 0u : (uint32_t)-sh;
        r->bias[j] = pv_wrap_i32((uint32_t)p->bias[oc + j] << pv_c16_lsh(sh));
        r->mult[j] = p->mult[(oc + j) * qstep];
        r->e1[j] = (int32_t)e + 1;
        r->rnd[j] = pv_wrap_i32(((uint32_t)1u << e) + ((uint32_t)p->out_zp << (e + 1u)));
    }
    r->lo = p->act_min;
    r->hi = p->act_max;
}

/* The block's weights as int16 pairs (layouts above), scaled by 2^(left + 1): 2 * depth words. */
static void pv_c16_block_w(const pv_layer_desc_t *d, const pv_layer_params_t *p, uint32_t oc, int32_t *w) {
    const uint32_t cin_g = d->in_c / d->groups, depth = d->kernel * d->kernel * cin_g;
    const uint32_t qstep = p->n_quant > 1u ? 1u : 0u;
    uint32_t j, i;
    if (pv_c16_narrow(d) != 0u) { /* per tap: 4 words (cin_g 2: channel j's pair at word j) or 2 (cin_g 1: (w0, w1), (w2, w3)) */
        const int8_t *const s0 = p->weights + (size_t)oc * depth, *const s1 = s0 + depth, *const s2 = s1 + depth,
                            *const s3 = s2 + depth;
        const uint32_t l0 = pv_c16_lsh(p->shift[oc * qstep]), l1 = pv_c16_lsh(p->shift[(oc + 1u) * qstep]),
                       l2 = pv_c16_lsh(p->shift[(oc + 2u) * qstep]), l3 = pv_c16_lsh(p->shift[(oc + 3u) * qstep]);
#define PV_C16_W(src, i, lsh) pv_wrap_i32((uint32_t)(int32_t)(src)[i] << (lsh))
        if (cin_g == 1u) {
            for (i = 0; i < depth; i++, w += 2) {
                w[0] = pv_c16_pack(PV_C16_W(s0, i, l0), PV_C16_W(s1, i, l1));
                w[1] = pv_c16_pack(PV_C16_W(s2, i, l2), PV_C16_W(s3, i, l3));
            }
        } else {
            for (i = 0; i < depth; i += 2u, w += 4) {
                w[0] = pv_c16_pack(PV_C16_W(s0, i, l0), PV_C16_W(s0, i + 1u, l0));
                w[1] = pv_c16_pack(PV_C16_W(s1, i, l1), PV_C16_W(s1, i + 1u, l1));
                w[2] = pv_c16_pack(PV_C16_W(s2, i, l2), PV_C16_W(s2, i + 1u, l2));
                w[3] = pv_c16_pack(PV_C16_W(s3, i, l3), PV_C16_W(s3, i + 1u, l3));
            }
        }
#undef PV_C16_W
        return;
    }
    for (j = 0; j < 4u; j++) {
        const int8_t *src = p->weights + (size_t)(oc + j) * depth;
        const uint32_t lsh = pv_c16_lsh(p->shift[(oc + j) * qstep]);
        int32_t *dst = w + 2u * j;
        for (i = 0; i < depth; i += 4u, dst += 8) {
            dst[0] = pv_c16_pack(pv_wrap_i32((uint32_t)(int32_t)src[i] << lsh), pv_wrap_i32((uint32_t)(int32_t)src[i + 1u] << lsh));
            dst[1] = pv_c16_pack(pv_wrap_i32((uint32_t)(int32_t)src[i + 2u] << lsh), pv_wrap_i32((uint32_t)(int32_t)src[i + 3u] << lsh));
        }
    }
}

/* MultiplyByQuantizedMultiplier of an accumulator scaled by 2^(left + 1), then the ReLU clamp [0, 32767]:
 * pv_rq_fast (pv_nn_support.h, derivation there) with zero point 0, less its "- [h < 0]": that term changes
 * the result only where h < 0, and there both results are <= 0 (floor((2h + 2^e) / 2^(e+1)) with 2h < 0),
 * which the clamp makes 0. */
static inline int32_t pv_c16_rq_relu(int32_t acc, int32_t mult, int32_t rnd, int32_t e1) {
    const int32_t h = pv_smmulr(acc, mult);
    return pv_c16_usat15(pv_asr(pv_wrap_i32((uint32_t)rnd + ((uint32_t)h << 1)), e1));
}

/* pv_rq_fast (pv_nn_support.h: MultiplyByQuantizedMultiplier of an accumulator scaled by 2^(left + 1)), then
 * any clamp [lo, hi] (within int16). */
static inline int32_t pv_c16_rq_clamp(int32_t acc, int32_t mult, int32_t rnd, int32_t e1, int32_t lo, int32_t hi) {
    const int32_t v = pv_rq_fast(acc, mult, rnd, e1);
    return v < lo ? lo : (v > hi ? hi : v);
}

/* requantize a0..a3 and store them as 4 int16 at o (word-aligned): with the ReLU clamp, or (relu 0) with
 * the layer's clamp */
#define PV_C16_RQ(relu, a, r, j)                                                 \
    ((relu) ? pv_c16_rq_relu((a), (r)->mult[j], (r)->rnd[j], (r)->e1[j])          \
            : pv_c16_rq_clamp((a), (r)->mult[j], (r)->rnd[j], (r)->e1[j], (r)->lo, (r)->hi))
#define PV_C16_STORE_AS(relu, o, r)                                                               \
    do {                                                                                          \
        const int32_t v0_ = PV_C16_RQ(relu, a0, r, 0), v1_ = PV_C16_RQ(relu, a1, r, 1);           \
        const int32_t v2_ = PV_C16_RQ(relu, a2, r, 2), v3_ = PV_C16_RQ(relu, a3, r, 3);           \
        const int32_t p01_ = pv_c16_pack(v0_, v1_), p23_ = pv_c16_pack(v2_, v3_);                 \
        PV_LOAD32((o)[0], &p01_);                                                                 \
        PV_LOAD32((o)[2], &p23_);                                                                 \
    } while (0)
#define PV_C16_STORE(o, r) PV_C16_STORE_AS(1, o, r)

/* one tap of a block of 4 channels with cin_g 2: x = 2 words at xp (the block's 4 input channels), w = 4
 * words at wp + wo (channel j at j) */
#define PV_C16_PAIR(xp, wp, wo)               \
    do {                                      \
        int32_t x0, x1, w0, w1;               \
        PV_C16_LD2((xp), 0, x0, x1);          \
        PV_C16_LD2((wp), (wo), w0, w1);       \
        a0 = pv_smlad(x0, w0, a0);            \
        a1 = pv_smlad(x0, w1, a1);            \
        PV_C16_LD2((wp), (wo) + 2, w0, w1);   \
        a2 = pv_smlad(x1, w0, a2);            \
        a3 = pv_smlad(x1, w1, a3);            \
    } while (0)

/* one tap of a block of 4 channels with cin_g 1: x = 2 words at xp, w = 2 words at wp + wo, channel j in
 * half j % 2 of word j / 2 of both */
#define PV_C16_ONE(xp, wp, wo)                \
    do {                                      \
        int32_t x0, x1, w0, w1;               \
        PV_C16_LD2((xp), 0, x0, x1);          \
        PV_C16_LD2((wp), (wo), w0, w1);       \
        a0 = pv_smlabb(x0, w0, a0);           \
        a1 = pv_smlatt(x0, w0, a1);           \
        a2 = pv_smlabb(x1, w1, a2);           \
        a3 = pv_smlatt(x1, w1, a3);           \
    } while (0)

/* tap i (a constant) of the weights at wp, one input pixel at xp, for cg input channels per group: 1, 2, or 4
 * (exactly 4: one block of values) */
#define PV_C16_TAP(cg, xp, wp, i)                        \
    do {                                                 \
        if ((cg) == 1u) {                                \
            PV_C16_ONE((xp), (wp), 2 * (i));             \
        } else if ((cg) == 2u) {                         \
            PV_C16_PAIR((xp), (wp), 4 * (i));            \
        } else {                                         \
            PV_C16_BLK((xp), 0, (wp), 8 * (i));          \
        }                                                \
    } while (0)

/* Output channels oc..oc+3 of one output row, row-run layers: every pixel reads one run per kernel row. */
static inline __attribute__((always_inline)) void pv_c16_rowrun_row(const pv_layer_desc_t *d,
                                                                     const int16_t *const *rows, int16_t *o,
                                                                     uint32_t g, const int32_t *w,
                                                                     const pv_c16_rq_t *r) {
    const uint32_t k = d->kernel, runlen = d->groups == 1u ? k * d->in_c : d->in_c / d->groups;
    const uint32_t nblk = runlen / 4u, xstep = d->stride * d->in_c / 2u, ostep = d->out_c;
    const int32_t *xr[PV_MAX_KERNEL], *wr[PV_MAX_KERNEL];
    uint32_t nr = 0, ky, ox;
    for (ky = 0; ky < k; ky++) {
        if (rows[ky] == NULL) continue; /* padding rows add 0 */
        xr[nr] = (const int32_t *)(const void *)(rows[ky] + (size_t)g * runlen);
        wr[nr++] = w + ky * nblk * 8u;
    }
    for (ox = 0; ox < d->out_w; ox++, o += ostep) {
        int32_t a0 = r->bias[0], a1 = r->bias[1], a2 = r->bias[2], a3 = r->bias[3];
        const size_t xo = (size_t)ox * xstep;
        uint32_t t;
        if (nblk == 3u) { /* the patchify stem: 4 x 3 values per kernel row */
            for (t = 0; t < nr; t++) {
                const int32_t *x = xr[t] + xo, *wk = wr[t];
                PV_C16_BLK(x, 0, wk, 0);
                PV_C16_BLK(x, 2, wk, 8);
                PV_C16_BLK(x, 4, wk, 16);
            }
        } else {
            for (t = 0; t < nr; t++) {
                const int32_t *x = xr[t] + xo, *wk = wr[t];
                const int32_t *const xe = x + 2u * nblk;
                if (nblk & 1u) {
                    PV_C16_BLK(x, 0, wk, 0);
                    x += 2;
                    wk += 8;
                }
                for (; x < xe; x += 4, wk += 16) {
                    PV_C16_BLK(x, 0, wk, 0);
                    PV_C16_BLK(x, 2, wk, 8);
                }
            }
        }
        PV_C16_STORE(o, r);
    }
}

/* Output channels oc..oc+3 of one output row of a grouped layer, cg input channels per group (a constant: 1,
 * 2, or 4 for any multiple of 4, cin_g / 4 blocks of values per tap); relu (a constant): the store's clamp.
 * Taps outside the image are skipped; the 3x3 taps of one input pixel each (cin_g 1, 2 or 4) are unrolled. */
static inline __attribute__((always_inline)) void pv_c16_group_row(const pv_layer_desc_t *d,
                                                                    const int16_t *const *rows, int16_t *out,
                                                                    uint32_t g, const int32_t *w,
                                                                    const pv_c16_rq_t *r, const uint32_t cg,
                                                                    const int relu) {
    const uint32_t k = d->kernel, s = d->stride, in_c = d->in_c, out_c = d->out_c, out_w = d->out_w;
    const uint32_t cin_g = in_c / d->groups, kb = cin_g / 4u, xs = in_c / 2u, wt = 2u * cin_g; /* wt: words per tap */
    const int one = cg < 4u || kb == 1u; /* a tap is one PV_C16_TAP */
    const int32_t *xr[PV_MAX_KERNEL], *wr[PV_MAX_KERNEL];
    uint32_t nr = 0, ky, ox, ox_a, ox_b;
    for (ky = 0; ky < k; ky++) {
        if (rows[ky] == NULL) continue; /* padding rows add 0 */
        xr[nr] = (const int32_t *)(const void *)(rows[ky] + (size_t)g * cin_g);
        wr[nr++] = w + ky * k * wt;
    }
    /* pixels [ox_a, ox_b) have every tap column inside [0, in_w) */
    ox_a = (d->pad_left + s - 1u) / s;
    ox_b = d->in_w + d->pad_left >= k ? (d->in_w + d->pad_left - k) / s + 1u : 0u;
    if (ox_b > out_w) ox_b = out_w;
    if (ox_a > ox_b) ox_a = ox_b;
    for (ox = 0; ox < out_w; ox++) {
        int32_t a0 = r->bias[0], a1 = r->bias[1], a2 = r->bias[2], a3 = r->bias[3];
        const int32_t ix0 = (int32_t)(ox * s) - (int32_t)d->pad_left;
        int16_t *o = out + (size_t)ox * out_c;
        uint32_t t, kx;
        if (ox == ox_a && ox_a < ox_b && k == 3u && one && nr == 3u) { /* the interior span, all three rows */
            const int32_t *x0 = xr[0] + (size_t)ix0 * xs, *x1 = xr[1] + (size_t)ix0 * xs, *x2 = xr[2] + (size_t)ix0 * xs;
            const uint32_t xstep = s * xs;
            for (; ox < ox_b; ox++, o += out_c, x0 += xstep, x1 += xstep, x2 += xstep) {
                const int32_t *x = x0;
                a0 = r->bias[0];
                a1 = r->bias[1];
                a2 = r->bias[2];
                a3 = r->bias[3];
                PV_C16_TAP(cg, x, w, 0);
                x += xs;
                PV_C16_TAP(cg, x, w, 1);
                x += xs;
                PV_C16_TAP(cg, x, w, 2);
                x = x1;
                PV_C16_TAP(cg, x, w, 3);
                x += xs;
                PV_C16_TAP(cg, x, w, 4);
                x += xs;
                PV_C16_TAP(cg, x, w, 5);
                x = x2;
                PV_C16_TAP(cg, x, w, 6);
                x += xs;
                PV_C16_TAP(cg, x, w, 7);
                x += xs;
                PV_C16_TAP(cg, x, w, 8);
                PV_C16_STORE_AS(relu, o, r);
            }
            ox--; /* the loop's increment steps to ox_b */
            continue;
        }
        {
            const uint32_t kx_lo = ix0 < 0 ? (uint32_t)-ix0 : 0u;
            const uint32_t kx_hi = (int32_t)d->in_w - ix0 < (int32_t)k ? (uint32_t)((int32_t)d->in_w - ix0) : k;
            for (t = 0; t < nr; t++) {
                if (one && kx_hi - kx_lo <= 3u) { /* up to 3 taps of the row, unrolled */
                    const uint32_t nt = kx_hi - kx_lo;
                    const int32_t *x = xr[t] + (size_t)(ix0 + (int32_t)kx_lo) * xs, *wk = wr[t] + kx_lo * wt;
                    if (nt == 0u) continue;
                    PV_C16_TAP(cg, x, wk, 0);
                    if (nt == 1u) continue;
                    x += xs;
                    PV_C16_TAP(cg, x, wk, 1);
                    if (nt == 2u) continue;
                    x += xs;
                    PV_C16_TAP(cg, x, wk, 2);
                    continue;
                }
                for (kx = kx_lo; kx < kx_hi; kx++) {
                    const int32_t *x = xr[t] + (size_t)(ix0 + (int32_t)kx) * xs, *wk = wr[t] + kx * wt;
                    if (cg < 4u) {
                        PV_C16_TAP(cg, x, wk, 0);
                    } else {
                        const int32_t *const xe = x + 2u * kb;
                        for (; x < xe; x += 2, wk += 8) PV_C16_BLK(x, 0, wk, 0);
                    }
                }
            }
        }
        PV_C16_STORE_AS(relu, o, r);
    }
}

/* Output channels oc..oc+3 (group g) of one output row; rows[ky]: the input row of tap row ky, or NULL. */
__attribute__((noinline)) static void pv_c16_block_row(const pv_layer_desc_t *d, const int16_t *const *rows,
                                                        int16_t *out, uint32_t oc, const int32_t *w,
                                                        const pv_c16_rq_t *r) {
    const uint32_t cin_g = d->in_c / d->groups, g = oc / (d->out_c / d->groups);
    if (pv_c16_rowrun(d)) {
        pv_c16_rowrun_row(d, rows, out + oc, g, w, r);
    } else if (cin_g == 1u) { /* any clamp (pv_c16_fast) */
        pv_c16_group_row(d, rows, out + oc, g, w, r, 1u, 0);
    } else if (cin_g == 2u) {
        pv_c16_group_row(d, rows, out + oc, g, w, r, 2u, 1);
    } else {
        pv_c16_group_row(d, rows, out + oc, g, w, r, 4u, 1);
    }
}

/* A row without prepared weights: each block's expanded on the stack. */
__attribute__((noinline)) static void pv_c16_row_expanding(const pv_layer_desc_t *d, const pv_layer_params_t *p,
                                                            const int16_t *const *rows, int16_t *out) {
    int32_t wb[2u * PV_MAX_DEPTH];
    uint32_t oc;
    for (oc = 0; oc < d->out_c; oc += 4u) {
        pv_c16_rq_t r;
        pv_c16_block_rq(p, oc, &r);
        pv_c16_block_w(d, p, oc, wb);
        pv_c16_block_row(d, rows, out, oc, wb, &r);
    }
}
#endif /* PV_USE_DSP */

/* The prepared weights: one word (1: the DSP path runs the layer), then the blocks of 4 channels. */
uint32_t pv_conv_s16_cache_bytes(const pv_layer_desc_t *d) {
#if defined(PV_USE_DSP)
    if (pv_c16_shape_ok(d)) return 4u + d->out_c / 4u * pv_c16_block_words(d) * 4u;
#endif
    (void)d;
    return 0u;
}

void pv_conv_s16_prepare(const pv_layer_desc_t *d, const pv_layer_params_t *p, int32_t *wx) {
#if defined(PV_USE_DSP)
    uint32_t oc;
    if (!pv_c16_shape_ok(d)) return;
    wx[0] = pv_c16_fast(d, p);
    if (wx[0] == 0) return;
    for (oc = 0; oc < d->out_c; oc += 4u) pv_c16_block_w(d, p, oc, wx + 1u + (oc / 4u) * pv_c16_block_words(d));
#else
    (void)d;
    (void)p;
    (void)wx;
#endif
}

void pv_conv_s16_row(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *const *rows, int16_t *out,
                     const int32_t *wx) {
#if defined(PV_USE_DSP)
    if (wx != NULL && wx[0] != 0) {
        uint32_t oc;
        for (oc = 0; oc < d->out_c; oc += 4u) {
            pv_c16_rq_t r;
            pv_c16_block_rq(p, oc, &r);
            pv_c16_block_row(d, rows, out, oc, wx + 1u + (oc / 4u) * pv_c16_block_words(d), &r);
        }
        return;
    }
    if (wx == NULL && pv_c16_shape_ok(d) && pv_c16_fast(d, p)) {
        pv_c16_row_expanding(d, p, rows, out);
        return;
    }
#endif
    (void)wx;
    pv_conv_s16_row_generic(d, p, rows, out);
}

/* A whole conv layer from a whole input tensor (the layers after the streamed prefix); the DSP path runs
 * block by block of output channels over all rows, so that each block's weights are expanded once. */
void pv_conv_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const int16_t *rows[PV_MAX_KERNEL];
    const size_t r_in = (size_t)d->in_w * d->in_c, r_out = (size_t)d->out_w * d->out_c;
    uint32_t oy, ky;
#if defined(PV_USE_DSP)
    if (pv_c16_shape_ok(d) && pv_c16_fast(d, p)) {
        int32_t wb[2u * PV_MAX_DEPTH];
        uint32_t oc;
        for (oc = 0; oc < d->out_c; oc += 4u) {
            pv_c16_rq_t r;
            pv_c16_block_rq(p, oc, &r);
            pv_c16_block_w(d, p, oc, wb);
            for (oy = 0; oy < d->out_h; oy++) {
                for (ky = 0; ky < d->kernel; ky++) {
                    const int32_t iy = pv_tap_row(d, oy, ky);
                    rows[ky] = iy < 0 ? NULL : in + (size_t)iy * r_in;
                }
                pv_c16_block_row(d, rows, out + (size_t)oy * r_out, oc, wb, &r);
            }
        }
        return;
    }
#endif
    for (oy = 0; oy < d->out_h; oy++) {
        for (ky = 0; ky < d->kernel; ky++) {
            const int32_t iy = pv_tap_row(d, oy, ky);
            rows[ky] = iy < 0 ? NULL : in + (size_t)iy * r_in;
        }
        pv_conv_s16_row_generic(d, p, rows, out + (size_t)oy * r_out);
    }
}

/* dst[i] = src[i] (int8 to int16), the image into the stem's band; dst word-aligned. */
void pv_widen_s8(int16_t *dst, const int8_t *src, uint32_t n) {
    uint32_t i = 0;
#if defined(PV_USE_DSP)
    for (; i + 8u <= n; i += 8u) { /* SXTB16 gives (x0, x2), (x1, x3); PKHBT, PKHTB put them in order */
        int32_t w0, w1, lo0, hi0, lo1, hi1, o0, o1, o2, o3;
        PV_LOAD32(w0, src + i);
        PV_LOAD32(w1, src + i + 4u);
        lo0 = pv_sxtb16(w0);
        hi0 = pv_sxtb16_ror8(w0);
        lo1 = pv_sxtb16(w1);
        hi1 = pv_sxtb16_ror8(w1);
        o0 = pv_c16_pack(lo0, hi0);
        o1 = pv_c16_packt(lo0, hi0);
        o2 = pv_c16_pack(lo1, hi1);
        o3 = pv_c16_packt(lo1, hi1);
        PV_LOAD32(dst[i], &o0);
        PV_LOAD32(dst[i + 2u], &o1);
        PV_LOAD32(dst[i + 4u], &o2);
        PV_LOAD32(dst[i + 6u], &o3);
    }
#endif
    for (; i < n; i++) dst[i] = (int16_t)src[i];
}
