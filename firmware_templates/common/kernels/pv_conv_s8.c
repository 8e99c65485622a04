/* pv_conv_s8: CONV_2D with int8 activations (pv_nn.h), per channel, groups, TF 'same' pads, fused clamp;
 * row by row, so that the kernel front can stream the stem while the image comes in and run every other
 * layer in place. Arithmetic: TFLite Micro's reference kernel, transcribed (see codegen/golden.py):
 *   acc = sum over taps inside the image of (x - in_zp) * w   (int32; 'same' pads contribute 0)
 *   acc += bias; acc = MultiplyByQuantizedMultiplier(acc, mult, shift); acc += out_zp; clamp.
 * No undefined behaviour: the int32 accumulator cannot overflow (|bias| <= 2^30 is checked at parse,
 * and depth * 255 * 128 < 2^30), shifts of negative numbers go through pv_asr, and the left shift of
 * MultiplyByQuantizedMultiplier wraps through uint32_t as TFLM's int32 multiply does in practice.
 *
 * Scratch (pv_conv_s8_scratch_bytes, inside the arena after the activations, see pv_plan.c):
 *   ring   the `kernel` input rows the current output row reads, as int16 (x - in_zp), expanded once per
 *          row (the stem on the DSP build: the same values as its output row's patches, pv_patch). An
 *          int8 input row is dead once expanded, so an output row may overwrite it (the planner places
 *          each layer's output so that this holds: in place for every layer of pv-gconv-s).
 *   w16    the layer's weights as int16, scaled by 2^(left shift + 1) when the fast requantization
 *          applies (below), in the order the inner loops read them;
 *   rq     per output channel: bias (scaled the same), multiplier, rounding constant, shift;
 *   band   the stem only: the int8 input band a partial INFER chunk is gathered in.
 * Fast requantization (when the layer's bounds allow it, checked per layer, else the transcription):
 *   SRDHM(acc << left, M) = SMMULR(acc << (left + 1), M)       (exact while |acc << (left+1)| < 2^31)
 *   RDBPOT(v, e) + zp = (2v + 2^e - [v < 0] + zp * 2^(e+1)) >> (e + 1)   (exact, derived in the docs of
 *   pv_rq_fast, pv_nn_support.h); acc << (left + 1) comes for free from weights and bias scaled at layer setup.
 * DSP path (PV_USE_DSP): inputs and weights are int16 pairs in the SXTB16 order (x0, x2), (x1, x3) of
 * every 4 values, so SMLAD multiplies two pairs per instruction; blocks of 4 output channels share each
 * input word, weights of a block interleaved so that one pointer with immediate offsets reaches all. Where
 * every output pixel reads one run of depth values (1x1 convs; the stem in its patch layout) a block steps
 * through that run 16 values a turn, 8 first where the depth is 16k + 8 (pv_conv_row_run1). Groups whose
 * channel count is not a multiple of 4 keep the natural order and run one SMLAD per 2 values (pv_conv_row_dw).
 */
#include <stddef.h>
#include <string.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

#define PV_ALIGN8(n) (((n) + 7u) & ~7u)

#if !defined(PV_HAVE_SMMULR)
static inline int32_t pv_ssat8(int32_t x) { return x < -128 ? -128 : (x > 127 ? 127 : x); }
#endif

static uint32_t pv_depth(const pv_layer_desc_t *d) { return d->kernel * d->kernel * (d->in_c / d->groups); }

/* Requantization parameters, per block of 4 output channels: bias[4], mult[4], rnd[4], e1[4] (words), so
 * that a block's values load in pairs. bias: bias << (left + 1) on the fast path, else bias;
 * rnd = 2^e + out_zp * 2^(e+1) and e1 = e + 1 for the right shift e. */
#define PV_RQ_WORDS(out_c) ((((out_c) + 3u) / 4u) * 16u)
#define PV_RQ(rq, oc, field) ((rq)[((oc) >> 2) * 16u + (field) * 4u + ((oc) & 3u)])
enum { PV_RQ_BIAS = 0, PV_RQ_MULT = 1, PV_RQ_RND = 2, PV_RQ_E1 = 3 };

/* Ring geometry of a conv: row-run layout (one group, no left/right pad, every kernel row a contiguous
 * word-aligned run of the input row) keeps rows as they are; otherwise rows are group-major with
 * pad_left zero columns before and the right padding after each group's columns, so that every tap of
 * every output pixel reads inside the ring row (padding reads zeros: x - zp = 0 for a pad). */
static int pv_rowrun(const pv_layer_desc_t *d) {
    const uint32_t k = d->kernel, in_c = d->in_c;
    return d->groups == 1u && d->pad_left == 0u && (k * in_c) % 4u == 0u && (d->stride * in_c) % 4u == 0u &&
           (d->in_w * in_c) % 4u == 0u && (d->out_w - 1u) * d->stride + k <= d->in_w;
}

/* Patch layout (DSP build only): a row-run conv whose stride equals its kernel, without pads (the patchify
 * stem), keeps in the ring each output pixel's patch as one run of depth values, [ox][ky][kx][c] (the weights'
 * order); input row iy fills kernel row iy % kernel of every patch. The packed path then reads a pixel as one
 * run, as in a 1x1 conv. The patches of a row take out_w * depth <= kernel * in_w * in_c values: the ring's size
 * is that of the row-run layout. The kernel rows are whole words (pv_rowrun), so inputs and weights share the
 * SXTB16 order. */
#define PV_RING_PATCH 2 /* pv_conv_s8_t.rowrun of the patch layout, a row-run layout as far as sizes go */
static int pv_patch(const pv_layer_desc_t *d) {
#if defined(PV_USE_DSP)
    return pv_rowrun(d) && d->stride == d->kernel && d->pad_top == 0u && d->out_w * d->kernel <= d->in_w &&
           d->out_h * d->kernel <= d->in_h;
#else
    (void)d;
    return 0;
#endif
}

static uint32_t pv_padded_w(const pv_layer_desc_t *d) {
    const uint32_t span = (d->out_w - 1u) * d->stride + d->kernel; /* columns the taps reach, from -pad_left */
    const uint32_t w = d->in_w + d->pad_left;
    return span > w ? span : w;
}

static uint32_t pv_ring_row_elems(const pv_layer_desc_t *d) {
    return pv_rowrun(d) ? d->in_w * d->in_c : pv_padded_w(d) * d->in_c;
}

/* ring + w16 + rq (+ the stem's int8 band for the kernel front's partial chunks). */
uint32_t pv_conv_s8_scratch_bytes(const pv_layer_desc_t *d, int with_band) {
    uint32_t n = PV_ALIGN8(d->kernel * pv_ring_row_elems(d) * 2u) + PV_ALIGN8(d->out_c * pv_depth(d) * 2u) +
                 PV_RQ_WORDS(d->out_c) * 4u;
    if (with_band) n += PV_ALIGN8(d->kernel * d->in_w * d->in_c);
    return n;
}

#if defined(PV_USE_DSP)
/* 4 int8 values minus zp as the int16 pairs (x0, x2), (x1, x3). zp = 0: sign extension only; zp = -128
 * (every ReLU output here): x + 128 is the byte x ^ 0x80 read unsigned; else a 16-bit subtraction. */
static inline void pv_expand_word(int32_t w, int32_t zp, int32_t zp2, int32_t *lo, int32_t *hi) {
    if (zp == 0) {
        *lo = pv_sxtb16(w);
        *hi = pv_sxtb16_ror8(w);
    } else if (zp == -128) {
        const int32_t u = pv_wrap_i32((uint32_t)w ^ 0x80808080u);
        *lo = pv_uxtb16(u);
        *hi = pv_uxtb16_ror8(u);
    } else {
        *lo = pv_ssub16(pv_sxtb16(w), zp2);
        *hi = pv_ssub16(pv_sxtb16_ror8(w), zp2);
    }
}
#endif

/* dst[0..n) = (src - zp) << lsh as int16. DSP path with n % 4 == 0: every 4 values as (x0, x2, x1, x3),
 * which is what SXTB16 gives; else natural order. Weights and inputs go through the same function with
 * the same run lengths, so both sides of a dot product always share one order. */
#if defined(PV_USE_DSP)
static inline void pv_expand_words(int16_t *dst, const int8_t *src, uint32_t n, int32_t zp, int32_t zp2, uint32_t lsh) {
    uint32_t i = 0;
    if (lsh == 0u && (n & 7u) == 0u) { /* inputs: two words a turn */
        for (; i < n; i += 8u) {
            int32_t w0, w1, lo, hi;
            PV_LOAD32(w0, src + i);
            PV_LOAD32(w1, src + i + 4u);
            pv_expand_word(w0, zp, zp2, &lo, &hi);
            pv_st2(dst + i, lo, hi);
            pv_expand_word(w1, zp, zp2, &lo, &hi);
            pv_st2(dst + i + 4u, lo, hi);
        }
        return;
    }
    for (; i < n; i += 4u) {
        int32_t w, lo, hi;
        uint32_t k;
        PV_LOAD32(w, src + i);
        pv_expand_word(w, zp, zp2, &lo, &hi);
        for (k = 0; k < lsh; k++) {
            lo = pv_sadd16(lo, lo);
            hi = pv_sadd16(hi, hi);
        }
        pv_st2(dst + i, lo, hi);
    }
}
#endif

static inline void pv_expand(int16_t *dst, const int8_t *src, uint32_t n, int32_t zp, uint32_t lsh) {
    uint32_t i;
#if defined(PV_USE_DSP)
    if ((n & 3u) == 0u) {
        const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)(int16_t)zp << 16) | (uint32_t)(uint16_t)(int16_t)zp);
        if (zp == 0) { /* the constant zero points let the compiler drop the other cases */
            pv_expand_words(dst, src, n, 0, 0, lsh);
        } else if (zp == -128) {
            pv_expand_words(dst, src, n, -128, zp2, lsh);
        } else {
            pv_expand_words(dst, src, n, zp, zp2, lsh);
        }
        return;
    }
#endif
    for (i = 0; i < n; i++) dst[i] = (int16_t)pv_wrap_i32((uint32_t)((int32_t)src[i] - zp) << lsh);
}

/* ---------------------------------------------------------------------------------------------- */
/* Convolution (per channel, groups, TF 'same' pads, fused clamp), row by row from the ring         */
/* ---------------------------------------------------------------------------------------------- */
static int16_t *pv_at16(uint8_t *base, uint32_t off) { return (int16_t *)(void *)(base + off); }

/* n int16 zeros (newlib-nano's memset stores byte by byte) */
static void pv_zero16(int16_t *p, uint32_t n) {
#if defined(PV_USE_DSP)
    if ((n & 3u) == 0u) { /* the ring rows are 8-byte aligned */
        int16_t *const e = p + n;
        for (; p < e; p += 4) pv_st2(p, 0, 0);
        return;
    }
#endif
    memset(p, 0, (size_t)n * 2u);
}

/* The run lengths pv_conv_row_run1 steps through: 16, 24, 32, ... values (16 a turn, 8 first where needed). */
static int pv_run1_depth(uint32_t depth) {
    return depth % 8u == 0u && depth >= 16u;
}

/* Whether pv_conv_row_run1 can compute the layer's rows (given that each pixel reads one run of depth values):
 * packed weights (so fast requantization and the ReLU from the zero point -128) of a run length it steps. */
static int pv_run1(const pv_conv_s8_t *c) {
    return c->packed && pv_run1_depth(c->depth);
}

#if defined(PV_USE_DSP)
/* Whether pv_conv_row_dw can compute the layer's rows: fast requantization, not a row-run layer, input
 * channels per group not a multiple of 4 (so values stay in natural order in the ring and in w16, each kernel
 * row of a pixel one run of kernel * cin_g values), and every such run and its start (group, pixel) in whole
 * words. */
static int pv_dw(const pv_conv_s8_t *c) {
    const pv_layer_desc_t *d = c->d;
    return c->fast && !c->rowrun && (c->cin_g & 3u) != 0u && (d->kernel * c->cin_g) % 2u == 0u &&
           (c->wp * c->cin_g) % 2u == 0u && (d->out_w == 1u || (d->stride * c->cin_g) % 2u == 0u);
}
#endif

/* Sets up a conv layer in the scratch: picks the layouts, checks the fast requantization bounds, fills
 * rq and w16, zeroes the ring (its padding columns stay zero). */
void pv_conv_s8_setup(pv_conv_s8_t *c, const pv_layer_desc_t *d, const pv_layer_params_t *p, uint8_t *scratch) {
    const uint32_t in_c = d->in_c, k = d->kernel;
    const uint32_t qstep = p->n_quant > 1u ? 1u : 0u;
    uint32_t oc, r, runs, ring_bytes;
    c->d = d;
    c->p = p;
    c->cin_g = in_c / d->groups;
    c->cout_g = d->out_c / d->groups;
    c->depth = k * k * c->cin_g;
    c->rowrun = pv_rowrun(d);
    c->wp = c->rowrun ? d->in_w : pv_padded_w(d);
    c->row_elems = pv_ring_row_elems(d);
    c->runlen = c->rowrun ? k * in_c : c->cin_g;
    c->lo = p->act_min;
    c->hi = p->act_max;
    c->full = p->act_min == -128 && p->act_max == 127;
    ring_bytes = PV_ALIGN8(k * c->row_elems * 2u);
    c->ring = pv_at16(scratch, 0u);
    c->w16 = pv_at16(scratch, ring_bytes);
    c->rq = (int32_t *)(void *)(scratch + ring_bytes + PV_ALIGN8(d->out_c * c->depth * 2u));
    c->band = (int8_t *)(void *)(c->rq + PV_RQ_WORDS(d->out_c));
    if (!c->rowrun) pv_zero16(c->ring, ring_bytes / 2u);

    c->fast = 1;
    for (oc = 0; oc < d->out_c; oc++) {
        const int32_t sh = p->shift[oc * qstep], b = p->bias[oc];
        const uint32_t left = sh > 0 ? (uint32_t)sh : 0u, right = sh > 0 ? 0u : (uint32_t)-sh;
        const uint64_t bound = (uint64_t)(uint32_t)(b < 0 ? -b : b) + (uint64_t)c->depth * 255u * 128u;
        if (left > 7u || right > 21u || (bound << (left + 1u)) >= ((uint64_t)1 << 30)) c->fast = 0;
    }
#if defined(PV_USE_DSP)
    /* Packed weights only for the layers a packed path computes (pv_conv_s8_row): 3x3 with 4 input channels per
     * group (pv_conv_row_packed) and one run per output pixel, a 1x1 conv or the stem's patches
     * (pv_conv_row_run1). Both need fast requantization and clamp to the full int8 range from the zero point
     * -128 as a constant (what the quantizer gives every ReLU layer); anything else takes the any-shape path:
     * one copy of each packed loop in flash. */
    c->packed = c->fast && c->full && p->out_zp == -128 && (c->cout_g % 4u) == 0u && (c->runlen % 4u) == 0u &&
                ((k == 3u && c->cin_g == 4u && !c->rowrun) ||
                 (pv_run1_depth(c->depth) && (k == 1u || pv_patch(d))));
#else
    c->packed = 0;
#endif
    /* the patch layout only where the output rows read it: pv_conv_row_run1 (pv_conv_s8_row) */
    if (pv_patch(d) && pv_run1(c)) c->rowrun = PV_RING_PATCH;
    runs = c->depth / c->runlen;
    for (oc = 0; oc < d->out_c; oc++) {
        const uint32_t q = oc * qstep;
        const int32_t sh = p->shift[q];
        const uint32_t lsh = c->fast ? (uint32_t)(sh > 0 ? sh : 0) + 1u : 0u, e = sh > 0 ? 0u : (uint32_t)-sh;
        const int8_t *w8 = p->weights + (size_t)oc * c->depth;
        PV_RQ(c->rq, oc, PV_RQ_BIAS) = pv_wrap_i32((uint32_t)p->bias[oc] << lsh);
        PV_RQ(c->rq, oc, PV_RQ_MULT) = p->mult[q];
        PV_RQ(c->rq, oc, PV_RQ_E1) = (int32_t)e + 1;
        /* the fast path's rounding constant (there e <= 21; the transcription does not read it) */
        PV_RQ(c->rq, oc, PV_RQ_RND) =
            c->fast ? pv_wrap_i32(((uint32_t)1u << e) + ((uint32_t)p->out_zp << (e + 1u))) : 0;
#if defined(PV_USE_DSP)
        if (c->packed) {
            /* blocks of 4 channels; inside, per 4 values of depth: channel j's 2 words at 2j, 2j+1 */
            const uint32_t depth = c->depth;
            int16_t *dst = c->w16 + (size_t)(oc & ~3u) * depth + (oc & 3u) * 4u;
            const int8_t *src = w8, *const end = w8 + depth;
            if (lsh == 1u) { /* no left shift in the multiplier: the usual case */
                for (; src < end; src += 4, dst += 16) {
                    int32_t w;
                    PV_LOAD32(w, src);
                    pv_st2(dst, pv_sadd16(pv_sxtb16(w), pv_sxtb16(w)),
                           pv_sadd16(pv_sxtb16_ror8(w), pv_sxtb16_ror8(w)));
                }
            } else {
                for (; src < end; src += 4, dst += 16) {
                    int32_t w, lo, hi;
                    uint32_t j;
                    PV_LOAD32(w, src);
                    lo = pv_sxtb16(w);
                    hi = pv_sxtb16_ror8(w);
                    for (j = 0; j < lsh; j++) {
                        lo = pv_sadd16(lo, lo);
                        hi = pv_sadd16(hi, hi);
                    }
                    pv_st2(dst, lo, hi);
                }
            }
            continue;
        }
#endif
        {
            for (r = 0; r < runs; r++)
                pv_expand(c->w16 + (size_t)oc * c->depth + r * c->runlen, w8 + r * c->runlen, c->runlen, 0, lsh);
        }
    }
}

#if defined(PV_USE_DSP)
/* Input row iy into the patch layout (pv_patch): kernel row iy % kernel of every patch, run values each. */
static inline void pv_push_patch(const pv_conv_s8_t *c, const int8_t *src, uint32_t iy) {
    const pv_layer_desc_t *d = c->d;
    const int32_t zp = c->p->in_zp;
    const uint32_t run = d->kernel * d->in_c, depth = c->depth;
    int16_t *p = c->ring + (size_t)(iy % d->kernel) * run, *const pe = p + (size_t)d->out_w * depth;
    if (zp == 0 && run == 12u) { /* the stem: 3 words per run, the image's zero point 0 */
        for (; p < pe; p += depth, src += 12) {
            int32_t w0, w1, w2;
            PV_LOAD32(w0, src);
            PV_LOAD32(w1, src + 4);
            PV_LOAD32(w2, src + 8);
            pv_st2(p, pv_sxtb16(w0), pv_sxtb16_ror8(w0));
            pv_st2(p + 4, pv_sxtb16(w1), pv_sxtb16_ror8(w1));
            pv_st2(p + 8, pv_sxtb16(w2), pv_sxtb16_ror8(w2));
        }
    } else { /* any run of whole words, any zero point: x - zp fits int16 */
        const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)(int16_t)zp << 16) | (uint32_t)(uint16_t)(int16_t)zp);
        for (; p < pe; p += depth) {
            uint32_t i;
            for (i = 0; i < run; i += 4u, src += 4) {
                int32_t w;
                PV_LOAD32(w, src);
                pv_st2(p + i, pv_ssub16(pv_sxtb16(w), zp2), pv_ssub16(pv_sxtb16_ror8(w), zp2));
            }
        }
    }
}
#endif

/* Input row iy (int8, in_w * in_c) into its ring slot: row-run layout [ix][c], else group-major
 * [g][pad_left + ix][c of the group]. */
void pv_conv_s8_push_row(const pv_conv_s8_t *c, const int8_t *src, uint32_t iy) {
    const pv_layer_desc_t *d = c->d;
    int16_t *dst = c->ring + (size_t)(iy % d->kernel) * c->row_elems;
    const int32_t zp = c->p->in_zp;
    const uint32_t cin_g = c->cin_g, in_c = d->in_c, in_w = d->in_w, groups = d->groups, gstride = c->wp * cin_g;
    uint32_t ix, g;
#if defined(PV_USE_DSP)
    if (c->rowrun == PV_RING_PATCH) {
        pv_push_patch(c, src, iy);
        return;
    }
#endif
    if (c->rowrun) {
        pv_expand(dst, src, c->row_elems, zp, 0u);
        return;
    }
    dst += (size_t)d->pad_left * cin_g;
#if defined(PV_USE_DSP)
    if ((cin_g & 3u) == 0u) { /* word by word, straight to the group's column */
        const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)(int16_t)zp << 16) | (uint32_t)(uint16_t)(int16_t)zp);
        for (g = 0; g < groups; g++) {
            const int8_t *sg = src + g * cin_g;
            int16_t *dg = dst + (size_t)g * gstride;
            (void)ix;
            const int8_t *const se = sg + (size_t)in_w * in_c;
            if (cin_g == 4u && zp == -128) { /* the 3x3 grouped layers: one word per pixel and group */
                if (in_w & 1u) {
                    int32_t w, lo, hi;
                    PV_LOAD32(w, sg);
                    pv_expand_word(w, -128, zp2, &lo, &hi);
                    pv_st2(dg, lo, hi);
                    sg += in_c;
                    dg += 4;
                }
                for (; sg < se; sg += 2u * in_c, dg += 8) { /* two pixels a turn */
                    int32_t w0, w1, lo, hi;
                    PV_LOAD32(w0, sg);
                    PV_LOAD32(w1, sg + in_c);
                    pv_expand_word(w0, -128, zp2, &lo, &hi);
                    pv_st2(dg, lo, hi);
                    pv_expand_word(w1, -128, zp2, &lo, &hi);
                    pv_st2(dg + 4, lo, hi);
                }
                continue;
            }
            for (; sg < se; sg += in_c, dg += cin_g) pv_expand_words(dg, sg, cin_g, zp, zp2, 0u);
        }
        return;
    }
#endif
    for (ix = 0; ix < in_w; ix++, src += in_c, dst += cin_g)
        for (g = 0; g < groups; g++) pv_expand(dst + (size_t)g * gstride, src + g * cin_g, cin_g, zp, 0u);
}

/* Transcribed requantization of one accumulator (bias included) of output channel oc: pv_requantize
 * written out, because with that helper inlined here GCC allocates the registers of pv_conv_s8_row's hot
 * loop worse (+1.3 % instructions per inference on the plain Cortex-M4 build, fw_bench). */
static int8_t pv_out_slow(const pv_layer_params_t *p, int32_t acc, uint32_t oc) {
    const uint32_t q = p->n_quant > 1u ? oc : 0u;
    const int32_t v = pv_mbqm(acc, p->mult[q], p->shift[q]); /* clamped before + zp: see pv_requantize */
    if (v < p->act_min - p->out_zp) return (int8_t)p->act_min;
    if (v > p->act_max - p->out_zp) return (int8_t)p->act_max;
    return (int8_t)(v + p->out_zp);
}

/* pv_rq_fast (pv_nn_support.h) for a layer whose clamp starts at its output zero point (ReLU): without the
 * "- [h < 0]", which changes the result only where h < 0, and there both results are <= zp
 * (floor((2h + 2^e) / 2^(e+1)) <= 0 before zp is added), which the clamp makes act_min = zp. One instruction
 * less per output. */
#if defined(PV_USE_DSP) /* only the SMLAD path takes it */
static inline int32_t pv_rq_fast_relu(int32_t acc, int32_t mult, int32_t rnd, int32_t e1) {
    const int32_t h = pv_smmulr(acc, mult);
    return pv_asr(pv_wrap_i32((uint32_t)rnd + ((uint32_t)h << 1)), e1);
}
#endif

static inline int8_t pv_clamp(int32_t v, int full, int32_t lo, int32_t hi) {
    v = pv_ssat8(v);
    if (!full) {
        if (v < lo) v = lo;
        if (v > hi) v = hi;
    }
    return (int8_t)v;
}

#if defined(PV_USE_DSP)
/* Two consecutive words in one load: LDRD on Cortex-M4 (GCC splits 64-bit loads into two LDR for this
 * core, hence the asm). The asm does not tell the compiler which memory it reads: it is only used in
 * pv_conv_row_packed and pv_conv_row_run1 (not inlined), during which that memory does not change. It is
 * volatile to keep the loads in program order: otherwise GCC hoists the input loads of later taps and spills
 * registers. The
 * int16 buffers are 8-byte aligned and every pair read here starts at a multiple of 8 bytes (LDRD itself
 * needs 4). */
#if defined(__GNUC__)
typedef uint64_t pv_u64a __attribute__((may_alias, aligned(4)));
#endif
#if defined(PV_HAVE_SMMULR) /* the real DSP build */
#define PV_LD2(base, off, a, b)                                                               \
    __asm__ volatile("ldrd %0, %1, [%2, %3]"                                                         \
            : "=r"(a), "=r"(b)                                                                \
            : "r"(base), "I"(4 * (off)))
#elif defined(__GNUC__)
#define PV_LD2(base, off, a, b)                                                     \
    do {                                                                            \
        const uint64_t t_ = *(const pv_u64a *)(const void *)((base) + (off));       \
        (a) = pv_wrap_i32((uint32_t)t_);                                            \
        (b) = pv_wrap_i32((uint32_t)(t_ >> 32));                                    \
    } while (0)
#else
#define PV_LD2(base, off, a, b)                \
    do {                                       \
        PV_LOAD32((a), (base) + (off));        \
        PV_LOAD32((b), (base) + (off) + 1);    \
    } while (0)
#endif

/* one block of 4 values for 4 output channels: x = 2 words at xp + xo, w = 8 words at wp + wo
 * (channel j at 2j, 2j+1) */
#define PV_BLK(xp, xo, wp, wo)                \
    do {                                      \
        int32_t x0, x1, w0, w1;               \
        PV_LD2((xp), (xo), x0, x1);           \
        PV_LD2((wp), (wo), w0, w1);           \
        a0 = pv_smlad(x0, w0, a0);            \
        a0 = pv_smlad(x1, w1, a0);            \
        PV_LD2((wp), (wo) + 2, w0, w1);       \
        a1 = pv_smlad(x0, w0, a1);            \
        a1 = pv_smlad(x1, w1, a1);            \
        PV_LD2((wp), (wo) + 4, w0, w1);       \
        a2 = pv_smlad(x0, w0, a2);            \
        a2 = pv_smlad(x1, w1, a2);            \
        PV_LD2((wp), (wo) + 6, w0, w1);       \
        a3 = pv_smlad(x0, w0, a3);            \
        a3 = pv_smlad(x1, w1, a3);            \
    } while (0)


/* a0..a3 += the packed dot of nblk blocks of 4 values: x = 2 words per block, w = 8 words per block */
#define PV_RUN(x_, w_, nblk_)                                   \
    do {                                                        \
        const int32_t *xr_ = (x_), *wr_ = (w_);                 \
        const int32_t *const xe_ = xr_ + 2u * (nblk_);          \
        if ((nblk_) & 1u) {                                     \
            PV_BLK(xr_, 0, wr_, 0);                             \
            xr_ += 2;                                           \
            wr_ += 8;                                           \
        }                                                       \
        for (; xr_ < xe_; xr_ += 4, wr_ += 16) {                \
            PV_BLK(xr_, 0, wr_, 0);                             \
            PV_BLK(xr_, 2, wr_, 8);                             \
        }                                                       \
    } while (0)

/* One tap of two neighbouring pixels (xA: pixel A's input pair, xB: pixel B's) for two channels of a block:
 * the channels' weight words at wk + wo and wk + wo + 2; accumulators a0, a1 (A) and b0, b1 (B). */
#define PV_TAP2(xA0, xA1, xB0, xB1, wk, wo)      \
    do {                                        \
        int32_t w0, w1;                         \
        PV_LD2((wk), (wo), w0, w1);             \
        a0 = pv_smlad(xA0, w0, a0);             \
        a0 = pv_smlad(xA1, w1, a0);             \
        b0 = pv_smlad(xB0, w0, b0);             \
        b0 = pv_smlad(xB1, w1, b0);             \
        PV_LD2((wk), (wo) + 2, w0, w1);         \
        a1 = pv_smlad(xA0, w0, a1);             \
        a1 = pv_smlad(xA1, w1, a1);             \
        b1 = pv_smlad(xB0, w0, b1);             \
        b1 = pv_smlad(xB1, w1, b1);             \
    } while (0)

/* One kernel row (3 taps, stride 1) of two neighbouring pixels: 4 input columns at p (2 words each), the
 * middle two shared; weights of the row at wk + wo (8 words per tap). */
#define PV_ROW2(p, wk, wo)                                   \
    do {                                                     \
        int32_t c0, c1, d0, d1;                              \
        PV_LD2((p), 0, c0, c1);                              \
        PV_LD2((p), 2, d0, d1);                              \
        PV_TAP2(c0, c1, d0, d1, (wk), (wo));                 \
        PV_LD2((p), 4, c0, c1);                              \
        PV_TAP2(d0, d1, c0, c1, (wk), (wo) + 8);             \
        PV_LD2((p), 6, d0, d1);                              \
        PV_TAP2(c0, c1, d0, d1, (wk), (wo) + 16);            \
    } while (0)

/* The packed paths' stores: requantize (a ReLU layer's fast path) and clamp to the full int8 range from the
 * zero point -128 — every packed layer's (c->packed says so), so the clamp is SSAT's alone. */
/* two channels of a block; qh = the block's rq words from the pair's first */
static inline void pv_store2_fast(int8_t *o, const int32_t *qh, int32_t a0, int32_t a1) {
    int32_t m0, m1, r0, r1, e0, e1;
    PV_LD2(qh, 4, m0, m1);
    PV_LD2(qh, 8, r0, r1);
    PV_LD2(qh, 12, e0, e1);
    o[0] = (int8_t)pv_ssat8(pv_rq_fast_relu(a0, m0, r0, e0));
    o[1] = (int8_t)pv_ssat8(pv_rq_fast_relu(a1, m1, r1, e1));
}

/* a block of 4 output channels; q = the block's 16 rq words */
static inline void pv_store4_fast(int8_t *o, const int32_t *q, const int32_t *acc) {
    int32_t m0, m1, m2, m3, r0, r1, r2, r3, e0, e1, e2, e3;
    PV_LD2(q, 4, m0, m1);
    PV_LD2(q, 8, r0, r1);
    PV_LD2(q, 12, e0, e1);
    o[0] = (int8_t)pv_ssat8(pv_rq_fast_relu(acc[0], m0, r0, e0));
    o[1] = (int8_t)pv_ssat8(pv_rq_fast_relu(acc[1], m1, r1, e1));
    PV_LD2(q, 6, m2, m3);
    PV_LD2(q, 10, r2, r3);
    PV_LD2(q, 14, e2, e3);
    o[2] = (int8_t)pv_ssat8(pv_rq_fast_relu(acc[2], m2, r2, e2));
    o[3] = (int8_t)pv_ssat8(pv_rq_fast_relu(acc[3], m3, r3, e3));
}

/* DSP output row of a 3x3 conv with 4 input channels per group (every 3x3 layer of pv-gconv-s), packed
 * weights, fast requantization and the clamp to the full int8 range from the zero point -128 as a constant (no
 * per-output branch, no rounding correction below zp: c->packed says so). Other packed shapes than this and the
 * runs of pv_conv_row_run1 take the any-shape path of pv_conv_s8_row: one packed loop in flash. Not inlined: the
 * LDRD asm reads memory the compiler does not see, which is fixed while this function runs (it writes only
 * the output row). */
__attribute__((noinline)) static void pv_conv_row_packed(const pv_conv_s8_t *c, int8_t *out,
                                                          const int16_t *const *rows) {
    const pv_layer_desc_t *d = c->d;
    const uint32_t s = d->stride, groups = d->groups, out_w = d->out_w, out_c = d->out_c;
    const uint32_t cin_g = c->cin_g, cout_g = c->cout_g, depth = c->depth;
    const uint32_t gstride = c->wp * cin_g;
    const int32_t *const rq = c->rq;
    const int32_t *const w32 = (const int32_t *)(const void *)c->w16;
    uint32_t ox, g, oc;
    const int32_t *const rr0 = (const int32_t *)(const void *)rows[0];
    const int32_t *const rr1 = (const int32_t *)(const void *)rows[1];
    const int32_t *const rr2 = (const int32_t *)(const void *)rows[2];
    const uint32_t xstep = 2u * s; /* words from one output pixel's taps to the next one's */
    for (g = 0; g < groups; g++) {
        const size_t col = (size_t)g * gstride / 2u; /* words */
        for (oc = g * cout_g; oc < (g + 1u) * cout_g; oc += 4u) {
            /* one block of 4 channels along the row: weights and requantization words stay put */
            const int32_t *const w = w32 + (size_t)oc * depth / 2u;
            const int32_t *const q = rq + (oc >> 2) * 16u;
            uint32_t ox0 = 0u;
            if (s == 1u) { /* two pixels at a time, per pair of channels: each weight word serves both */
                uint32_t h;
                ox0 = out_w & ~1u;
                for (h = 0; h < 2u; h++) {
                    const int32_t *const wh = w + 4u * h, *const qh = q + 2u * h;
                    const int32_t *p0 = rr0 + col, *p1 = rr1 + col, *p2 = rr2 + col;
                    int8_t *o = out + oc + 2u * h;
                    for (ox = 0; ox < ox0; ox += 2u, p0 += 4, p1 += 4, p2 += 4, o += 2u * out_c) {
                        int32_t a0, a1, b0, b1;
                        PV_LD2(qh, 0, a0, a1);
                        b0 = a0;
                        b1 = a1;
                        PV_ROW2(p0, wh, 0);
                        PV_ROW2(p1, wh, 24);
                        PV_ROW2(p2, wh, 48);
                        pv_store2_fast(o, qh, a0, a1);
                        pv_store2_fast(o + out_c, qh, b0, b1);
                    }
                }
            }
            const int32_t *p0 = rr0 + col + (size_t)ox0 * xstep, *p1 = rr1 + col + (size_t)ox0 * xstep,
                          *p2 = rr2 + col + (size_t)ox0 * xstep;
            int8_t *o = out + oc + (size_t)ox0 * out_c;
            for (ox = ox0; ox < out_w; ox++, p0 += xstep, p1 += xstep, p2 += xstep, o += out_c) {
                int32_t a0, a1, a2, a3, acc[4];
                PV_LD2(q, 0, a0, a1);
                PV_LD2(q, 2, a2, a3);
                PV_BLK(p0, 0, w, 0);
                PV_BLK(p0, 2, w, 8);
                PV_BLK(p0, 4, w, 16);
                PV_BLK(p1, 0, w, 24);
                PV_BLK(p1, 2, w, 32);
                PV_BLK(p1, 4, w, 40);
                PV_BLK(p2, 0, w, 48);
                PV_BLK(p2, 2, w, 56);
                PV_BLK(p2, 4, w, 64);
                acc[0] = a0;
                acc[1] = a1;
                acc[2] = a2;
                acc[3] = a3;
                pv_store4_fast(o, q, acc);
            }
        }
    }
}

/* DSP output row of a conv whose output pixels each read one run of depth values (a 1x1 conv; the stem in its
 * patch layout), for the layers pv_run1 admits: x = the run of output pixel 0 in group 0, xstep words from one
 * pixel's run to the next one's, gx words from one group's runs to the next one's. Blocks of 4 output channels
 * along the row (weights and requantization words stay put), 4 blocks of 4 values a turn (after 2 blocks when
 * depth % 16 == 8). */
__attribute__((noinline)) static void pv_conv_row_run1(const pv_conv_s8_t *c, int8_t *out, const int32_t *x,
                                                        uint32_t xstep, uint32_t gx) {
    const pv_layer_desc_t *d = c->d;
    const uint32_t out_c = d->out_c, cout_g = c->cout_g, depth = c->depth, turns = depth / 16u, half = depth & 8u;
    const size_t row = (size_t)d->out_w * out_c;
    const int32_t *const w32 = (const int32_t *)(const void *)c->w16;
    uint32_t g, oc;
    for (g = 0; g < d->groups; g++) {
        for (oc = g * cout_g; oc < (g + 1u) * cout_g; oc += 4u) {
            const int32_t *const w = w32 + (size_t)oc * depth / 2u;
            const int32_t *const q = c->rq + (oc >> 2) * 16u;
            const int32_t *xp = x + (size_t)g * gx;
            int8_t *o = out + oc;
            int8_t *const oe = o + row;
            for (; o < oe; o += out_c, xp += xstep) {
                const int32_t *xr = xp, *wr = w;
                int32_t a0, a1, a2, a3, acc[4];
                uint32_t n = turns;
                PV_LD2(q, 0, a0, a1);
                PV_LD2(q, 2, a2, a3);
                if (half != 0u) { /* depth % 16 == 8: 8 values first */
                    PV_BLK(xr, 0, wr, 0);
                    PV_BLK(xr, 2, wr, 8);
                    xr += 4;
                    wr += 16;
                }
                do {
                    PV_BLK(xr, 0, wr, 0);
                    PV_BLK(xr, 2, wr, 8);
                    PV_BLK(xr, 4, wr, 16);
                    PV_BLK(xr, 6, wr, 24);
                    xr += 8;
                    wr += 32;
                } while (--n != 0u);
                acc[0] = a0;
                acc[1] = a1;
                acc[2] = a2;
                acc[3] = a3;
                pv_store4_fast(o, q, acc);
            }
        }
    }
}

/* DSP output row of a conv pv_dw admits (groups of 1 or 2 channels: a depthwise conv, a 2-channel grouped one):
 * each output channel, pixel by pixel, one SMLAD per 2 values of its group's kernel rows, which are runs in the
 * ring (group-major, natural order, zero pads) as its weights are in w16; exact fast requantization and the
 * layer's own clamp (ReLU or not). One channel at a time: such layers have few MACs per output, so what counts
 * is leaving the any-shape path's per-tap bookkeeping, not blocking channels. */
__attribute__((noinline)) static void pv_conv_row_dw(const pv_conv_s8_t *c, int8_t *out, const int16_t *const *rows) {
    const pv_layer_desc_t *d = c->d;
    const uint32_t k = d->kernel, out_c = d->out_c, out_w = d->out_w, cout_g = c->cout_g;
    const uint32_t nw = k * c->cin_g / 2u, xstep = d->stride * c->cin_g / 2u, gw = c->wp * c->cin_g / 2u; /* words */
    uint32_t oc, ox, ky;
    for (oc = 0; oc < out_c; oc++) {
        const int32_t *const w = (const int32_t *)(const void *)(c->w16 + (size_t)oc * c->depth);
        const size_t x0 = (size_t)(oc / cout_g) * gw;
        const int32_t mult = PV_RQ(c->rq, oc, PV_RQ_MULT), rnd = PV_RQ(c->rq, oc, PV_RQ_RND);
        const int32_t e1 = PV_RQ(c->rq, oc, PV_RQ_E1);
        for (ox = 0; ox < out_w; ox++) {
            int32_t acc = PV_RQ(c->rq, oc, PV_RQ_BIAS);
            for (ky = 0; ky < k; ky++) {
                const int32_t *x = (const int32_t *)(const void *)rows[ky] + x0 + ox * xstep, *wk = w + ky * nw;
                const int32_t *const xe = x + nw;
                for (; x < xe; x++, wk++) {
                    int32_t xv, wv;
                    PV_LOAD32(xv, x);
                    PV_LOAD32(wv, wk);
                    acc = pv_smlad(xv, wv, acc);
                }
            }
            out[(size_t)ox * out_c + oc] = pv_clamp(pv_rq_fast(acc, mult, rnd, e1), c->full, c->lo, c->hi);
        }
    }
}

#endif

/* Output row oy (out_w * out_c int8 at out) from the ring, which holds input rows pv_rows_ready before. */
void pv_conv_s8_row(const pv_conv_s8_t *c, int8_t *out, uint32_t oy) {
    const pv_layer_desc_t *d = c->d;
    const uint32_t k = d->kernel, s = d->stride, cin_g = c->cin_g, cout_g = c->cout_g, in_c = d->in_c;
    const uint32_t depth = c->depth, runlen = c->runlen, gstride = c->wp * cin_g;
    const int32_t iy0 = (int32_t)(oy * s) - (int32_t)d->pad_top;
    const int16_t *rows[PV_MAX_KERNEL];
    uint32_t ky, ox, g, oc, kx, i;
    for (ky = 0; ky < k; ky++) {
        const int32_t iy = iy0 + (int32_t)ky;
        int32_t slot = iy % (int32_t)k;
        int16_t *r;
        if (slot < 0) slot += (int32_t)k;
        r = c->ring + (size_t)(uint32_t)slot * c->row_elems;
        /* A padding row reads zeros from its ring slot, which holds nothing this output row needs: above
         * the image, slots of rows -p..-1 are not yet written (rows 0..iy0+k-1 went to the others);
         * below, the slot of row iy held row iy - k < iy0. */
        if (iy < 0 || iy >= (int32_t)d->in_h) pv_zero16(r, c->row_elems);
        rows[ky] = r;
    }
#if defined(PV_USE_DSP)
    if (c->rowrun == PV_RING_PATCH) { /* one run per output pixel (pv_conv_s8_setup checked the rest) */
        pv_conv_row_run1(c, out, (const int32_t *)(const void *)c->ring, depth / 2u, 0u);
        return;
    }
    if (k == 1u && pv_run1(c)) { /* one run per output pixel */
        const uint32_t xstep = s * (c->rowrun ? in_c : cin_g) / 2u;
        const int16_t *const x0 = rows[0];
        pv_conv_row_run1(c, out, (const int32_t *)(const void *)x0, xstep, gstride / 2u);
        return;
    }
    if (c->packed && k == 3u && cin_g == 4u && !c->rowrun) {
        pv_conv_row_packed(c, out, rows);
        return;
    }
    if (pv_dw(c)) {
        pv_conv_row_dw(c, out, rows);
        return;
    }
#endif
    /* any shape: natural order (or the SXTB16 order on both sides on the DSP build), two output channels
     * at a time over the pixel's taps (listed once per pixel and group) */
    for (ox = 0; ox < d->out_w; ox++) {
        int8_t *o = out + (size_t)ox * d->out_c;
        for (g = 0; g < d->groups; g++) {
            const int16_t *tx[PV_MAX_KERNEL * PV_MAX_KERNEL];
            uint32_t tk[PV_MAX_KERNEL * PV_MAX_KERNEL], nt = 0, t;
            for (ky = 0; ky < k; ky++) {
                for (kx = 0; kx < (c->rowrun ? 1u : k); kx++) {
                    tx[nt] = c->rowrun ? rows[ky] + (size_t)ox * s * in_c
                                       : rows[ky] + (size_t)g * gstride + ((size_t)ox * s + kx) * cin_g;
                    tk[nt++] = c->rowrun ? ky * runlen : (ky * k + kx) * cin_g;
                }
            }
            for (oc = g * cout_g; oc < (g + 1u) * cout_g; oc += 2u) {
                const uint32_t two = oc + 1u < (g + 1u) * cout_g;
                const int16_t *w0 = c->w16 + (size_t)oc * depth, *w1 = two ? w0 + depth : w0;
                int32_t acc0 = PV_RQ(c->rq, oc, PV_RQ_BIAS), acc1 = two ? PV_RQ(c->rq, oc + 1u, PV_RQ_BIAS) : 0;
                uint32_t j;
                for (t = 0; t < nt; t++) {
                    const int16_t *x = tx[t], *a = w0 + tk[t], *b = w1 + tk[t];
                    for (i = 0; i + 2u <= runlen; i += 2u) {
                        const int32_t x0 = x[i], x1 = x[i + 1u];
                        acc0 += x0 * a[i] + x1 * a[i + 1u];
                        acc1 += x0 * b[i] + x1 * b[i + 1u];
                    }
                    if (i < runlen) {
                        acc0 += (int32_t)x[i] * a[i];
                        acc1 += (int32_t)x[i] * b[i];
                    }
                }
                for (j = 0; j <= two; j++) {
                    const uint32_t q = oc + j;
                    const int32_t acc = j ? acc1 : acc0;
                    if (c->fast) {
                        const int32_t v = pv_rq_fast(acc, PV_RQ(c->rq, q, PV_RQ_MULT), PV_RQ(c->rq, q, PV_RQ_RND),
                                                     PV_RQ(c->rq, q, PV_RQ_E1));
                        o[q] = pv_clamp(v, c->full, c->lo, c->hi);
                    } else {
                        o[q] = pv_out_slow(c->p, acc, q);
                    }
                }
            }
        }
    }
}

/* A whole conv layer (not the first) in place: rows are expanded as the output rows need them. */
void pv_conv_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out, uint8_t *scratch) {
    pv_conv_s8_t c;
    uint32_t oy, next = 0;
    const uint32_t r_in = d->in_w * d->in_c, r_out = d->out_w * d->out_c;
    pv_conv_s8_setup(&c, d, p, scratch);
    for (oy = 0; oy < d->out_h; oy++) {
        const uint32_t ready = pv_rows_ready(d, oy);
        for (; next < ready; next++) pv_conv_s8_push_row(&c, in + (size_t)next * r_in, next);
        pv_conv_s8_row(&c, out + (size_t)oy * r_out, oy);
    }
}
