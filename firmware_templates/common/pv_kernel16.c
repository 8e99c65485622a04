/* pv_kernel16: 16x8 inference of f (see pv_kernel16.h), TFLM's reference kernels transcribed:
 *   CONV_2D per channel   acc = bias[c] + sum over taps inside the image of (x - in_zp) * w
 *                         ('same' pads contribute 0), groups as TFLM: group = c / (out_c / groups)
 *   the global pool       a CONV_2D of weights 1 and bias 0: acc = sum of (x - in_zp), one multiplier
 *   FULLY_CONNECTED       acc = bias[o] + sum of (x - in_zp) * w[o][i], one multiplier per output
 *   then out = clamp(MultiplyByQuantizedMultiplier(acc, mult, shift) + out_zp, act_min, act_max).
 * These are the AccumScalar = int32_t instantiations TFLM uses for 16x8 with int32 biases; the golden
 * model (codegen/golden.py) computes the same, and tests/codegen/test_c_kernel16.py compares them.
 *
 * Arena: [buffer 0 | buffer 1 | stem band]. The stem writes buffer 0, layer i writes buffer i % 2 and
 * reads buffer (i - 1) % 2. The stem band holds PV_STREAM_ROWS input rows as int16, widened as bytes
 * arrive, so a partial band needs no other buffer.
 */
#include "pv_kernel16.h"

#include <stddef.h>
#include <string.h>

#include "pv_fixedpoint.h"

static uint32_t out_values(const pv_layer_desc_t *d) { return d->out_h * d->out_w * d->out_c; }

static uint32_t band_values(void) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    return d0->kernel * d0->in_w * d0->in_c;
}

/* int16 values of the largest layer output: the size of each of the two buffers */
static uint32_t max_out_values(void) {
    uint32_t i, n = 0u;
    for (i = 0; i < PV_N_LAYERS; i++)
        if (out_values(&pv_arch_layers[i]) > n) n = out_values(&pv_arch_layers[i]);
    return n;
}

uint32_t pv_kernel16_arena_need(void) { return 2u * 2u * max_out_values() + 2u * band_values(); }

static int16_t *buffer(uint8_t *arena, uint32_t which) {
    return (int16_t *)(void *)(arena + (size_t)which * 2u * max_out_values());
}

static int16_t *band_buffer(uint8_t *arena) { return buffer(arena, 2u); }

static inline int16_t requant16(int32_t acc, const pv_layer_params_t *p, uint32_t q) {
    int32_t v = pv_mbqm(acc, p->mult[q], p->shift[q]) + p->out_zp;
    if (v < p->act_min) v = p->act_min;
    if (v > p->act_max) v = p->act_max;
    return (int16_t)v;
}

/* Output rows [oy0, oy1) of a conv layer. in holds input rows from in_row0 on (the whole input, or the
 * stem's band); out is the whole output tensor. */
static void conv16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, uint32_t in_row0,
                   int16_t *out, uint32_t oy0, uint32_t oy1) {
    const uint32_t k = d->kernel, cin_g = d->in_c / d->groups, cout_g = d->out_c / d->groups;
    const int32_t in_zp = p->in_zp;
    const int per_channel = p->n_quant > 1u;
    uint32_t oy, ox, oc, ky, kx, ci;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = 0; ox < d->out_w; ox++) {
            int16_t *o = out + ((size_t)oy * d->out_w + ox) * d->out_c;
            for (oc = 0; oc < d->out_c; oc++) {
                const uint32_t g = oc / cout_g;
                int32_t acc = p->bias[oc];
                for (ky = 0; ky < k; ky++) {
                    const int32_t iy = (int32_t)(oy * d->stride + ky) - (int32_t)d->pad_top;
                    if (iy < 0 || iy >= (int32_t)d->in_h) continue;
                    for (kx = 0; kx < k; kx++) {
                        const int32_t ix = (int32_t)(ox * d->stride + kx) - (int32_t)d->pad_left;
                        const int16_t *x;
                        const int8_t *w;
                        if (ix < 0 || ix >= (int32_t)d->in_w) continue;
                        x = in + (((size_t)iy - in_row0) * d->in_w + (size_t)ix) * d->in_c + (size_t)g * cin_g;
                        w = p->weights + (((size_t)oc * k + ky) * k + kx) * cin_g;
                        for (ci = 0; ci < cin_g; ci++) acc += ((int32_t)x[ci] - in_zp) * (int32_t)w[ci];
                    }
                }
                o[oc] = requant16(acc, p, per_channel ? oc : 0u);
            }
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
    uint32_t o, i;
    for (o = 0; o < d->out_c; o++) {
        const int8_t *w = p->weights + (size_t)o * n_in;
        int32_t acc = p->bias[o];
        for (i = 0; i < n_in; i++) acc += ((int32_t)in[i] - p->in_zp) * (int32_t)w[i];
        out[o] = requant16(acc, p, per_channel ? o : 0u);
    }
}

/* The layer table this kernel can run: a patchify stem (output row oy reads input rows [oy*k, oy*k+k)),
 * accumulators that cannot overflow int32 (depth * 2^15 * 2^7 + 2^30 < 2^31: depth < 256), and an arena
 * constant that is not stale. */
static int layout_ok(void) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    uint32_t i;
    if (d0->kind != PV_KIND_CONV || d0->stride != d0->kernel || d0->pad_top != 0u || d0->pad_left != 0u ||
        d0->out_h * d0->kernel != d0->in_h)
        return 0;
    for (i = 0; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const uint32_t depth = d->kind == PV_KIND_CONV    ? d->kernel * d->kernel * (d->in_c / d->groups)
                               : d->kind == PV_KIND_DENSE ? d->in_h * d->in_w * d->in_c
                                                          : d->in_h * d->in_w;
        if (depth >= 256u) return 0;
    }
    return pv_kernel16_arena_need() <= PV_KERNEL16_ARENA_BYTES;
}

int pv_stream16_begin(pv_stream16_t *s, const pv_model_t *m, uint8_t *arena) {
    if (s == NULL) return PV_ERR_ARG;
    memset(s, 0, sizeof(*s));
    s->status = PV_ERR_ARG;
    if (m == NULL || arena == NULL || ((uintptr_t)(void *)arena & 3u) != 0u) return PV_ERR_ARG;
    if (m->ready != PV_MODEL_READY || m->act_bits != 16u) return s->status = PV_ERR_MODEL; /* int8: pv_infer */
    if (!layout_ok()) return s->status = PV_ERR_LAYOUT;
    s->m = m;
    s->arena = arena;
    return s->status = PV_OK;
}

int pv_stream16_feed(pv_stream16_t *s, const int8_t *data, uint32_t n) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    const uint32_t bv = band_values();
    int16_t *band;
    if (s == NULL || (data == NULL && n > 0u)) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (n > (d0->out_h - s->band) * bv - s->fill) return s->status = PV_ERR_ARG; /* past the image */
    band = band_buffer(s->arena);
    while (n > 0u) {
        band[s->fill++] = (int16_t)*data++;
        n--;
        if (s->fill == bv) {
            conv16(d0, &s->m->layer[0], band, s->band * d0->kernel, buffer(s->arena, 0u), s->band, s->band + 1u);
            s->fill = 0u;
            s->band++;
        }
    }
    return PV_OK;
}

uint32_t pv_stream16_received(const pv_stream16_t *s) { return s->band * band_values() + s->fill; }

int pv_stream16_end_ex(pv_stream16_t *s, int16_t *logit, pv_layer16_hook_t hook, void *hook_ctx) {
    uint32_t i;
    if (s == NULL || logit == NULL) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (s->band != pv_arch_layers[0].out_h || s->fill != 0u) return PV_ERR_ARG;
    s->status = PV_ERR_ARG; /* one result per begin */
    if (hook != NULL) hook(hook_ctx, 0u, buffer(s->arena, 0u), out_values(&pv_arch_layers[0]));
    for (i = 1; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const int16_t *in = buffer(s->arena, (i - 1u) & 1u);
        int16_t *out = buffer(s->arena, i & 1u);
        if (d->kind == PV_KIND_CONV) {
            conv16(d, &s->m->layer[i], in, 0u, out, 0u, d->out_h);
        } else if (d->kind == PV_KIND_AVGPOOL) {
            avgpool16(d, &s->m->layer[i], in, out);
        } else {
            dense16(d, &s->m->layer[i], in, out);
        }
        if (hook != NULL) hook(hook_ctx, i, out, out_values(d));
    }
    *logit = buffer(s->arena, (PV_N_LAYERS - 1u) & 1u)[0];
    return PV_OK;
}

int pv_stream16_end(pv_stream16_t *s, int16_t *logit) { return pv_stream16_end_ex(s, logit, NULL, NULL); }

int pv_infer16_ex(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena,
                  pv_layer16_hook_t hook, void *hook_ctx) {
    pv_stream16_t s;
    int rc;
    if (image == NULL || logit == NULL) return PV_ERR_ARG;
    rc = pv_stream16_begin(&s, m, arena);
    if (rc == PV_OK) rc = pv_stream16_feed(&s, image, PV_INPUT_BYTES);
    if (rc == PV_OK) rc = pv_stream16_end_ex(&s, logit, hook, hook_ctx);
    return rc;
}

int pv_infer16(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena) {
    return pv_infer16_ex(m, image, logit, arena, NULL, NULL);
}
