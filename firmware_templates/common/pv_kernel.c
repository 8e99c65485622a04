/* pv_kernel: the kernel front (see pv_kernel.h). It streams the image through the first layers as it comes
 * in — int8: the stem, each band of input rows making one output row into the stem's whole output; 16x8:
 * the streamed prefix of the plan, row by row through the layers' rings (pv_plan.h) — and at the end
 * runs the remaining layers over the plan's offsets, each with the kernel of the model's data type. */
#include "pv_kernel.h"

#include <stddef.h>
#include <string.h>

/* The one place the build decides whether the 16x8 kernels are linked in: with PV_WITH_16X8 = 0 this is a
 * constant 0, and every call into them is compiled out. */
static inline int pv_is16(uint32_t act_bits) { return PV_WITH_16X8 && act_bits == 16u; }

int pv_blob_version_supported(uint32_t version) {
    return version == PV_BLOB_FORMAT_VERSION || version == PV_BLOB_FORMAT_VERSION_REQUANT_POOL ||
           (pv_is16(16u) && version == PV_BLOB_FORMAT_VERSION_16X8);
}

static uint32_t pv_band_bytes(void) { return pv_arch_layers[0].kernel * pv_arch_layers[0].in_w * pv_arch_layers[0].in_c; }

static uint32_t pv_row_values(const pv_layer_desc_t *d) { return d->out_w * d->out_c; }

int pv_stream_begin_ex(pv_stream_t *s, const pv_model_t *m, uint8_t *arena, pv_layer_hook_t hook, void *hook_ctx) {
    int rc;
    if (s == NULL) return PV_ERR_ARG;
    memset(s, 0, sizeof(*s));
    s->status = PV_ERR_ARG;
    if (m == NULL || arena == NULL || ((uintptr_t)(void *)arena & 3u) != 0u) return PV_ERR_ARG;
    if (m->ready != PV_MODEL_READY || (m->act_bits != 8u && !pv_is16(m->act_bits))) return s->status = PV_ERR_MODEL;
    rc = pv_is16(m->act_bits) ? pv_plan_s16(&s->plan) : pv_plan_s8(&s->plan);
    if (rc != PV_OK) return s->status = rc;
    /* a stale arena constant: the arena the caller allocated is smaller than the plan */
    if (s->plan.total > (pv_is16(m->act_bits) ? PV_KERNEL16_ARENA_BYTES : PV_KERNEL_ARENA_BYTES))
        return s->status = PV_ERR_LAYOUT;
    s->m = m;
    s->arena = arena;
    s->hook = hook;
    s->hook_ctx = hook_ctx;
    if (!pv_is16(m->act_bits)) {
        pv_conv_s8_setup(&s->k.stem, &pv_arch_layers[0], &m->layer[0], arena + s->plan.scratch);
    } else {
        uint32_t i;
        for (i = 0; i < s->plan.n_streamed; i++)
            if (s->plan.wx_offset[i] != 0u)
                pv_conv_s16_prepare(&pv_arch_layers[i], &m->layer[i], (int32_t *)(void *)(arena + s->plan.wx_offset[i]));
    }
    return s->status = PV_OK;
}

int pv_stream_begin(pv_stream_t *s, const pv_model_t *m, uint8_t *arena) {
    return pv_stream_begin_ex(s, m, arena, NULL, NULL);
}

/* ---- int8: the stem streams into its whole output ---------------------------------------------------- */
/* One whole band of input rows (int8, the caller's or the stem's band buffer) -> one stem output row. */
static void pv_stem_band_s8(pv_stream_t *s, const int8_t *rows) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    const uint32_t r_in = d0->in_w * d0->in_c;
    int8_t *out = (int8_t *)(s->arena + s->plan.out_offset[0]) + (size_t)s->band * pv_row_values(d0);
    uint32_t ky;
    for (ky = 0; ky < d0->kernel; ky++) pv_conv_s8_push_row(&s->k.stem, rows + (size_t)ky * r_in, s->band * d0->kernel + ky);
    pv_conv_s8_row(&s->k.stem, out, s->band);
    if (s->hook != NULL) s->hook(s->hook_ctx, 0u, out, pv_row_values(d0));
    s->band++;
}

/* Whole bands straight from the caller's buffer; a partial one is gathered in the stem's band buffer. */
static void pv_feed_s8(pv_stream_t *s, const int8_t *data, uint32_t n) {
    const uint32_t bb = pv_band_bytes();
    while (n > 0u) {
        if (s->fill == 0u && n >= bb) {
            pv_stem_band_s8(s, data);
            data += bb;
            n -= bb;
        } else {
            const uint32_t k = bb - s->fill < n ? bb - s->fill : n;
            memcpy(s->k.stem.band + s->fill, data, k);
            s->fill += k;
            data += k;
            n -= k;
            if (s->fill == bb) {
                s->fill = 0u;
                pv_stem_band_s8(s, s->k.stem.band);
            }
        }
    }
}

/* ---- 16x8: the streamed prefix, row by row through the rings ------------------------------------------ */
static int16_t *pv_at16(const pv_stream_t *s, uint32_t off) { return (int16_t *)(void *)(s->arena + off); }

/* Streamed layer i's weights as pv_conv_s16_prepare expanded them at begin, or NULL (none in the plan). */
static const int32_t *pv_wx16(const pv_stream_t *s, uint32_t i) {
    return s->plan.wx_offset[i] != 0u ? (const int32_t *)(const void *)(s->arena + s->plan.wx_offset[i]) : NULL;
}

/* Where streamed layer i writes output row oy: the next layer's ring, or (the prefix's last) its whole output. */
static int16_t *pv_row_out_s16(const pv_stream_t *s, uint32_t i, uint32_t oy) {
    const pv_layer_desc_t *d = &pv_arch_layers[i];
    if (i + 1u < s->plan.n_streamed) {
        const pv_layer_desc_t *dn = &pv_arch_layers[i + 1u];
        return pv_at16(s, s->plan.ring_offset[i + 1u]) + (size_t)(oy % dn->kernel) * dn->in_w * dn->in_c;
    }
    return pv_at16(s, s->plan.out_offset[i]) + (size_t)oy * pv_row_values(d);
}

/* Streamed layer i (i >= 1) has just received an input row in its ring: compute every output row whose
 * taps are now all there (eagerly, so a ring of `kernel` rows is never overwritten while still needed) and
 * pass each one on. */
static void pv_advance_s16(pv_stream_t *s, uint32_t i) {
    const pv_layer_desc_t *d = &pv_arch_layers[i];
    const int16_t *rows[PV_MAX_KERNEL];
    const int16_t *rg = pv_at16(s, s->plan.ring_offset[i]);
    uint32_t ky;
    while (s->k.s16.next_row[i] < d->out_h) {
        const uint32_t oy = s->k.s16.next_row[i];
        int32_t last = (int32_t)(oy * d->stride + d->kernel - 1u) - (int32_t)d->pad_top;
        int16_t *out;
        if (last >= (int32_t)d->in_h) last = (int32_t)d->in_h - 1;
        if (last >= (int32_t)s->k.s16.rows_in[i]) return; /* wait for more input rows */
        for (ky = 0; ky < d->kernel; ky++) {
            const int32_t iy = pv_tap_row(d, oy, ky);
            rows[ky] = iy < 0 ? NULL : rg + (size_t)((uint32_t)iy % d->kernel) * d->in_w * d->in_c;
        }
        out = pv_row_out_s16(s, i, oy);
        pv_conv_s16_row(d, &s->m->layer[i], rows, out, pv_wx16(s, i));
        s->k.s16.next_row[i]++;
        if (s->hook != NULL) s->hook(s->hook_ctx, i, out, 2u * pv_row_values(d));
        if (i + 1u < s->plan.n_streamed) {
            s->k.s16.rows_in[i + 1u]++;
            pv_advance_s16(s, i + 1u);
        }
    }
}

/* The image as int16 values into the band; each full band makes one stem row, passed on through the prefix. */
static void pv_feed_s16(pv_stream_t *s, const int8_t *data, uint32_t n) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    const uint32_t bv = pv_band_bytes(), r_in = d0->in_w * d0->in_c;
    int16_t *band = pv_at16(s, s->plan.band);
    const int16_t *rows[PV_MAX_KERNEL];
    uint32_t ky;
    while (n > 0u) {
        const uint32_t m = bv - s->fill < n ? bv - s->fill : n;
        if ((s->fill & 1u) == 0u) { /* word-aligned in the band: the bulk of a feed */
            pv_widen_s8(band + s->fill, data, m);
        } else {
            uint32_t j;
            for (j = 0; j < m; j++) band[s->fill + j] = (int16_t)data[j];
        }
        s->fill += m;
        data += m;
        n -= m;
        if (s->fill == bv) {
            int16_t *out = pv_row_out_s16(s, 0u, s->band);
            for (ky = 0; ky < d0->kernel; ky++) rows[ky] = band + (size_t)ky * r_in;
            pv_conv_s16_row(d0, &s->m->layer[0], rows, out, pv_wx16(s, 0u));
            if (s->hook != NULL) s->hook(s->hook_ctx, 0u, out, 2u * pv_row_values(d0));
            s->fill = 0u;
            s->band++;
            s->k.s16.rows_in[1]++;
            pv_advance_s16(s, 1u);
        }
    }
}

/* ---- the front -------------------------------------------------------------------------------------- */
int pv_stream_feed(pv_stream_t *s, const int8_t *data, uint32_t n) {
    if (s == NULL || (data == NULL && n > 0u)) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (n > (pv_arch_layers[0].out_h - s->band) * pv_band_bytes() - s->fill) return s->status = PV_ERR_ARG; /* past the image */
    if (pv_is16(s->plan.act_bits)) {
        pv_feed_s16(s, data, n);
    } else {
        pv_feed_s8(s, data, n);
    }
    return PV_OK;
}

int pv_stream_rows(pv_stream_t *s, const int8_t *rows, uint32_t n_bytes) {
    if (s == NULL || rows == NULL) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (s->band >= pv_arch_layers[0].out_h || n_bytes != pv_band_bytes() || s->fill != 0u) return s->status = PV_ERR_ARG;
    return pv_stream_feed(s, rows, n_bytes);
}

uint32_t pv_stream_received(const pv_stream_t *s) { return s->band * pv_band_bytes() + s->fill; }

/* Output bytes of layer i as the hook sees them (an exact-sum pool: int16 sums). */
static uint32_t pv_out_bytes(const pv_stream_t *s, uint32_t i) {
    const pv_layer_desc_t *d = &pv_arch_layers[i];
    const uint32_t n = d->out_h * pv_row_values(d);
    return pv_is16(s->plan.act_bits) || pv_exact_sum(&s->m->layer[i]) ? 2u * n : n;
}

/* The layers after the streamed ones, over the plan's offsets. */
static void pv_run_rest(pv_stream_t *s) {
    const pv_plan_t *pl = &s->plan;
    uint8_t *const scratch = s->arena + pl->scratch;
    uint32_t i;
    for (i = pl->n_streamed; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const pv_layer_params_t *p = &s->m->layer[i];
        uint8_t *in = s->arena + pl->out_offset[i - 1u], *out = s->arena + pl->out_offset[i];
        if (pv_is16(pl->act_bits)) {
            const int16_t *in16 = (const int16_t *)(const void *)in;
            int16_t *out16 = (int16_t *)(void *)out;
            if (d->kind == PV_KIND_CONV) {
                pv_conv_s16(d, p, in16, out16);
            } else if (PV_ARCH_HAS_AVGPOOL && d->kind == PV_KIND_AVGPOOL) {
                pv_pool_s16(d, p, in16, out16);
            } else if (PV_ARCH_HAS_L2NORM && d->kind == PV_KIND_L2NORM) {
                pv_l2norm_s16(d, p, in16, out16);
            } else {
                pv_dense_s16(d, p, in16, out16);
            }
        } else if (d->kind == PV_KIND_CONV) {
            pv_conv_s8(d, p, (const int8_t *)in, (int8_t *)out, scratch);
        } else if (PV_ARCH_HAS_AVGPOOL && d->kind == PV_KIND_AVGPOOL) {
            pv_pool_s8(d, p, (const int8_t *)in, (int8_t *)out, scratch);
        } else if (PV_ARCH_HAS_L2NORM && d->kind == PV_KIND_L2NORM) {
            pv_l2norm_s8(d, p, (const int8_t *)in, (int8_t *)out);
        } else {
            pv_dense_s8(d, p, (const int8_t *)in, (int8_t *)out, scratch, pv_exact_sum(&s->m->layer[i - 1u]));
        }
        if (s->hook != NULL) s->hook(s->hook_ctx, i, out, pv_out_bytes(s, i));
    }
}

int pv_stream_end(pv_stream_t *s, int16_t *logit) {
    const uint8_t *out;
    if (s == NULL || logit == NULL) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (s->band != pv_arch_layers[0].out_h || s->fill != 0u) return PV_ERR_ARG;
    s->status = PV_ERR_ARG; /* one result per begin */
    pv_run_rest(s);
    out = s->arena + s->plan.out_offset[PV_N_LAYERS - 1u];
    *logit = pv_is16(s->plan.act_bits) ? *(const int16_t *)(const void *)out : (int16_t)*(const int8_t *)out;
    return PV_OK;
}

int pv_infer_ex(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena, pv_layer_hook_t hook,
                void *hook_ctx) {
    pv_stream_t s;
    int rc;
    if (image == NULL || logit == NULL) return PV_ERR_ARG;
    rc = pv_stream_begin_ex(&s, m, arena, hook, hook_ctx);
    if (rc == PV_OK) rc = pv_stream_feed(&s, image, PV_INPUT_BYTES);
    if (rc == PV_OK) rc = pv_stream_end(&s, logit);
    return rc;
}

int pv_infer(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena) {
    return pv_infer_ex(m, image, logit, arena, NULL, NULL);
}
