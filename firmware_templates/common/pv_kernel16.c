/* pv_kernel16: 16x8 inference of f (see pv_kernel16.h), TFLM's reference kernels transcribed:
 *   CONV_2D per channel   acc = bias[c] + sum over taps inside the image of (x - in_zp) * w
 *                         ('same' pads contribute 0), groups as TFLM: group = c / (out_c / groups)
 *   the global pool       a CONV_2D of weights 1 and bias 0: acc = sum of (x - in_zp), one multiplier
 *   FULLY_CONNECTED       acc = bias[o] + sum of (x - in_zp) * w[o][i], one multiplier per output
 *   then out = clamp(MultiplyByQuantizedMultiplier(acc, mult, shift) + out_zp, act_min, act_max).
 * These are the AccumScalar = int32_t instantiations TFLM uses for 16x8 with int32 biases; the golden
 * model (codegen/golden.py) computes the same, and tests/codegen/test_c_kernel16.py compares them.
 *
 * Memory plan (why: int16 activations are twice int8's bytes, and the stem's and b1_dw's 28x28x24 outputs
 * alone would be 37,632 B each). The first layers, up to and including the first one whose output is
 * smaller than the stem's (b2_down for pv-gconv-s: the "streamed prefix"), run row by row while the image
 * arrives: a band of input rows makes one stem row, which goes into a ring of `kernel` rows of the next
 * layer's input; as soon as a layer's ring holds the rows its next output row needs, that row is computed
 * (eagerly, so a ring of `kernel` rows is never overwritten while still needed). Only the streamed
 * prefix's last output is a whole tensor, in buffer A. The layers after it ping-pong between A and B
 * (A, B: the largest output from the prefix's last layer on); the band and the rings live in B's space,
 * which is free until the prefix is done. Arena = A + max(B, band + rings): 37,632 B for pv-gconv-s,
 * (pv_kernel16_arena_size; the Python mirror is codegen.c_arch.kernel16_arena_bytes).
 */
#include "pv_kernel16.h"

#include <stddef.h>
#include <string.h>

#include "pv_dsp.h"
#include "pv_fixedpoint.h"

#define PV_K16_MAX_KERNEL 8u /* row pointers per output row */

static uint32_t out_values(const pv_layer_desc_t *d) { return d->out_h * d->out_w * d->out_c; }
static uint32_t in_row_values(const pv_layer_desc_t *d) { return d->in_w * d->in_c; }

static uint32_t band_values(void) { return pv_arch_layers[0].kernel * in_row_values(&pv_arch_layers[0]); }

/* The streamed prefix is layers [0, n_streamed()): up to the first layer i >= 1 with fewer output values
 * than the stem (0 when there is none, which layout_ok refuses). */
static uint32_t n_streamed(void) {
    uint32_t i;
    for (i = 1; i < PV_N_LAYERS; i++)
        if (out_values(&pv_arch_layers[i]) < out_values(&pv_arch_layers[0])) return i + 1u;
    return 0u;
}

/* int16 values of buffer A (and of B): the largest output from the prefix's last layer on */
static uint32_t buffer_values(void) {
    uint32_t i, n = 0u;
    for (i = n_streamed() - 1u; i < PV_N_LAYERS; i++)
        if (out_values(&pv_arch_layers[i]) > n) n = out_values(&pv_arch_layers[i]);
    return n;
}

/* int16 values of the stem band plus the rings of layers 1 .. n_streamed() - 1 */
static uint32_t scratch_values(void) {
    uint32_t i, n = band_values();
    for (i = 1; i < n_streamed(); i++) n += pv_arch_layers[i].kernel * in_row_values(&pv_arch_layers[i]);
    return n;
}

uint32_t pv_kernel16_arena_size(void) {
    const uint32_t b = buffer_values(), sc = scratch_values();
    return n_streamed() == 0u ? 0xFFFFFFFFu : 2u * (b + (sc > b ? sc : b));
}

static int16_t *buffer(uint8_t *arena, uint32_t which) {
    return (int16_t *)(void *)(arena + (size_t)which * 2u * buffer_values());
}

static int16_t *band_buffer(uint8_t *arena) { return buffer(arena, 1u); }

/* The ring holding layer i's input rows (1 <= i < n_streamed()), after the band in B's space. */
static int16_t *ring(uint8_t *arena, uint32_t i) {
    int16_t *r = band_buffer(arena) + band_values();
    uint32_t j;
    for (j = 1; j < i; j++) r += pv_arch_layers[j].kernel * in_row_values(&pv_arch_layers[j]);
    return r;
}

static inline int16_t requant16(int32_t acc, const pv_layer_params_t *p, uint32_t q) {
    int32_t v = pv_mbqm(acc, p->mult[q], p->shift[q]) + p->out_zp;
    if (v < p->act_min) v = p->act_min;
    if (v > p->act_max) v = p->act_max;
    return (int16_t)v;
}

/* Where value i of a gathered patch is stored. DSP builds keep every whole block of 4 values in the order
 * x0, x2, x1, x3, so that two word loads give the pairs (x0, x2), (x1, x3) that match the weights' SXTB16
 * pairs (w0, w2), (w1, w3); the tail after the last whole block stays in order. Plain C: in order. */
static inline uint32_t patch_slot(uint32_t i, uint32_t n) {
#if defined(PV_USE_DSP)
    static const uint8_t perm[4] = {0u, 2u, 1u, 3u};
    return i < (n & ~3u) ? (i & ~3u) | perm[i & 3u] : i;
#else
    (void)n;
    return i;
#endif
}

/* sum over i < n of x[i] * w[i], x in patch_slot order. DSP path: SMLAD multiplies two int16 pairs at once.
 * Exact (an int32 sum that cannot overflow, layout_ok), so the order of the terms does not matter. */
static inline int32_t dot16x8(const int16_t *x, const int8_t *w, uint32_t n) {
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
#endif
    for (; i < n; i++) acc += (int32_t)x[i] * w[i];
    return acc;
}

/* The same for 4 output channels at once (weights w, w + n, w + 2n, w + 3n): each input word is loaded once
 * for all four. */
static inline void dot16x8_4(const int16_t *x, const int8_t *w, uint32_t n, int32_t *acc) {
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
static void conv16_row(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *const *rows,
                       int16_t *out) {
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
                                b[patch_slot(1u, 4u)] = src[ci + 1u];
                                b[patch_slot(2u, 4u)] = src[ci + 2u];
                                b[3] = src[ci + 3u];
                            }
                        }
                    }
                    for (; ci < cin_g; ci++, i++) patch[patch_slot(i, depth)] = inside ? src[ci] : 0;
                }
            }
            oc = g * cout_g;
            for (; oc + 4u <= (g + 1u) * cout_g; oc += 4u) {
                int32_t acc[4];
                uint32_t j;
                for (j = 0; j < 4u; j++) acc[j] = p->bias[oc + j];
                dot16x8_4(patch, p->weights + (size_t)oc * depth, depth, acc);
                for (j = 0; j < 4u; j++) o[oc + j] = requant16(acc[j], p, per_channel ? oc + j : 0u);
            }
            for (; oc < (g + 1u) * cout_g; oc++) {
                const int32_t acc = p->bias[oc] + dot16x8(patch, p->weights + (size_t)oc * depth, depth);
                o[oc] = requant16(acc, p, per_channel ? oc : 0u);
            }
        }
    }
}

/* The input row of tap row ky for output row oy, as an index into [0, in_h), or -1 for padding. */
static int32_t tap_row(const pv_layer_desc_t *d, uint32_t oy, uint32_t ky) {
    const int32_t iy = (int32_t)(oy * d->stride + ky) - (int32_t)d->pad_top;
    return iy < 0 || iy >= (int32_t)d->in_h ? -1 : iy;
}

/* A whole conv layer from a whole input tensor (the layers after the streamed prefix). */
static void conv16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const int16_t *rows[PV_K16_MAX_KERNEL];
    uint32_t oy, ky;
    for (oy = 0; oy < d->out_h; oy++) {
        for (ky = 0; ky < d->kernel; ky++) {
            const int32_t iy = tap_row(d, oy, ky);
            rows[ky] = iy < 0 ? NULL : in + (size_t)iy * in_row_values(d);
        }
        conv16_row(d, p, rows, out + (size_t)oy * d->out_w * d->out_c);
    }
}

/* Layer i of the streamed prefix (i >= 1) has just received input row rows_in[i] - 1 in its ring:
 * compute every output row whose taps are now all there, pass each one on, recursively. */
static void stream_advance(pv_stream16_t *s, uint32_t i) {
    const pv_layer_desc_t *d = &pv_arch_layers[i];
    const int16_t *rows[PV_K16_MAX_KERNEL];
    const int16_t *rg = ring(s->arena, i);
    uint32_t ky;
    while (s->next_row[i] < d->out_h) {
        const uint32_t oy = s->next_row[i];
        int32_t last = (int32_t)(oy * d->stride + d->kernel - 1u) - (int32_t)d->pad_top;
        int16_t *out;
        if (last >= (int32_t)d->in_h) last = (int32_t)d->in_h - 1;
        if (last >= (int32_t)s->rows_in[i]) return; /* wait for more input rows */
        for (ky = 0; ky < d->kernel; ky++) {
            const int32_t iy = tap_row(d, oy, ky);
            rows[ky] = iy < 0 ? NULL : rg + (size_t)((uint32_t)iy % d->kernel) * in_row_values(d);
        }
        if (i + 1u < n_streamed()) { /* into the next layer's ring */
            const pv_layer_desc_t *dn = &pv_arch_layers[i + 1u];
            out = ring(s->arena, i + 1u) + (size_t)(oy % dn->kernel) * in_row_values(dn);
        } else { /* the prefix's last layer: the whole output, in A */
            out = buffer(s->arena, 0u) + (size_t)oy * d->out_w * d->out_c;
        }
        conv16_row(d, &s->m->layer[i], rows, out);
        s->next_row[i]++;
        if (s->hook != NULL) s->hook(s->hook_ctx, i, out, d->out_w * d->out_c);
        if (i + 1u < n_streamed()) {
            s->rows_in[i + 1u]++;
            stream_advance(s, i + 1u);
        }
    }
}

static void avgpool16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const uint32_t n = d->in_h * d->in_w;
    uint32_t c, i;
    for (c = 0; c < d->in_c; c++) {
        int32_t acc = 0;
        for (i = 0; i < n; i++) acc += (int32_t)in[(size_t)i * d->in_c + c] - p->in_zp;
        out[c] = requant16(acc, p, 0u);
    }
}

static void dense16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const uint32_t n_in = d->in_h * d->in_w * d->in_c;
    const int per_channel = p->n_quant > 1u;
    uint32_t o;
    for (o = 0; o < d->out_c; o++) {
        const int8_t *w = p->weights + (size_t)o * n_in;
        int32_t acc = p->bias[o];
        uint32_t i;
        for (i = 0; i < n_in; i++) acc += (int32_t)in[i] * w[i]; /* 2,328 MACs in all: no DSP path */
        out[o] = requant16(acc, p, per_channel ? o : 0u);
    }
}

/* The layer table this kernel can run: a patchify stem (output row oy reads input rows [oy*k, oy*k+k)), a
 * streamed prefix of convolutions (kernel <= PV_K16_MAX_KERNEL, 'same'-style top padding < kernel),
 * accumulators that cannot overflow int32 (depth * 2^15 * 2^7 + 2^30 < 2^31: depth < 256), and an arena
 * constant that is not stale. */
static int layout_ok(void) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    uint32_t i;
    if (d0->kind != PV_KIND_CONV || d0->stride != d0->kernel || d0->pad_top != 0u || d0->pad_left != 0u ||
        d0->out_h * d0->kernel != d0->in_h || n_streamed() == 0u)
        return 0;
    for (i = 0; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const uint32_t depth = d->kind == PV_KIND_CONV    ? d->kernel * d->kernel * (d->in_c / d->groups)
                               : d->kind == PV_KIND_DENSE ? d->in_h * d->in_w * d->in_c
                                                          : d->in_h * d->in_w;
        if (depth >= 256u || (d->kind == PV_KIND_CONV && depth > PV_MAX_DEPTH)) return 0; /* patch */
        if (d->kind == PV_KIND_CONV && (d->kernel > PV_K16_MAX_KERNEL || d->pad_top >= d->kernel)) return 0;
        if (i < n_streamed() && d->kind != PV_KIND_CONV) return 0;
    }
    return pv_kernel16_arena_size() <= PV_KERNEL16_ARENA_BYTES;
}

int pv_stream16_begin_ex(pv_stream16_t *s, const pv_model_t *m, uint8_t *arena, pv_layer16_hook_t hook,
                         void *hook_ctx) {
    if (s == NULL) return PV_ERR_ARG;
    memset(s, 0, sizeof(*s));
    s->status = PV_ERR_ARG;
    if (m == NULL || arena == NULL || ((uintptr_t)(void *)arena & 3u) != 0u) return PV_ERR_ARG;
    if (m->ready != PV_MODEL_READY || m->act_bits != 16u) return s->status = PV_ERR_MODEL; /* int8: pv_infer */
    if (!layout_ok() || n_streamed() > PV_KERNEL16_MAX_STREAMED) return s->status = PV_ERR_LAYOUT;
    s->m = m;
    s->arena = arena;
    s->hook = hook;
    s->hook_ctx = hook_ctx;
    return s->status = PV_OK;
}

int pv_stream16_begin(pv_stream16_t *s, const pv_model_t *m, uint8_t *arena) {
    return pv_stream16_begin_ex(s, m, arena, NULL, NULL);
}

int pv_stream16_feed(pv_stream16_t *s, const int8_t *data, uint32_t n) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0], *d1 = &pv_arch_layers[1];
    const uint32_t bv = band_values();
    const int16_t *rows[PV_K16_MAX_KERNEL];
    int16_t *band;
    uint32_t ky;
    if (s == NULL || (data == NULL && n > 0u)) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (n > (d0->out_h - s->band) * bv - s->fill) return s->status = PV_ERR_ARG; /* past the image */
    band = band_buffer(s->arena);
    while (n > 0u) {
        band[s->fill++] = (int16_t)*data++;
        n--;
        if (s->fill == bv) { /* one stem row, into layer 1's ring, and on through the prefix */
            int16_t *out = ring(s->arena, 1u) + (size_t)(s->band % d1->kernel) * in_row_values(d1);
            for (ky = 0; ky < d0->kernel; ky++) rows[ky] = band + (size_t)ky * in_row_values(d0);
            conv16_row(d0, &s->m->layer[0], rows, out);
            if (s->hook != NULL) s->hook(s->hook_ctx, 0u, out, d0->out_w * d0->out_c);
            s->fill = 0u;
            s->band++;
            s->rows_in[1]++;
            stream_advance(s, 1u);
        }
    }
    return PV_OK;
}

uint32_t pv_stream16_received(const pv_stream16_t *s) { return s->band * band_values() + s->fill; }

int pv_stream16_end(pv_stream16_t *s, int16_t *logit) {
    uint32_t i, cur = 0u; /* the buffer holding the current activation: A (0) or B (1) */
    if (s == NULL || logit == NULL) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (s->band != pv_arch_layers[0].out_h || s->fill != 0u) return PV_ERR_ARG;
    s->status = PV_ERR_ARG; /* one result per begin */
    for (i = n_streamed(); i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const int16_t *in = buffer(s->arena, cur);
        int16_t *out = buffer(s->arena, cur ^ 1u);
        if (d->kind == PV_KIND_CONV) {
            conv16(d, &s->m->layer[i], in, out);
        } else if (d->kind == PV_KIND_AVGPOOL) {
            avgpool16(d, &s->m->layer[i], in, out);
        } else {
            dense16(d, &s->m->layer[i], in, out);
        }
        cur ^= 1u;
        if (s->hook != NULL) s->hook(s->hook_ctx, i, out, out_values(d));
    }
    *logit = buffer(s->arena, cur)[0];
    return PV_OK;
}

int pv_infer16_ex(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena,
                  pv_layer16_hook_t hook, void *hook_ctx) {
    pv_stream16_t s;
    int rc;
    if (image == NULL || logit == NULL) return PV_ERR_ARG;
    rc = pv_stream16_begin_ex(&s, m, arena, hook, hook_ctx);
    if (rc == PV_OK) rc = pv_stream16_feed(&s, image, PV_INPUT_BYTES);
    if (rc == PV_OK) rc = pv_stream16_end(&s, logit);
    return rc;
}

int pv_infer16(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena) {
    return pv_infer16_ex(m, image, logit, arena, NULL, NULL);
}
