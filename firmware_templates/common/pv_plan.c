/* pv_plan: the memory plans of the int8 and the 16x8 kernels (see pv_plan.h). */
#include "pv_plan.h"

#include <string.h>

#include "pv_blob.h"
#include "pv_nn.h"

#define PV_ALIGN8(n) (((n) + 7u) & ~7u)

static uint32_t pv_out_values(const pv_layer_desc_t *d) { return d->out_h * d->out_w * d->out_c; }
static uint32_t pv_in_row_values(const pv_layer_desc_t *d) { return d->in_w * d->in_c; }

/* A stem whose output row oy reads exactly input rows [oy*k, oy*k + k): what both kernels stream. */
static int pv_stem_ok(void) {
    const pv_layer_desc_t *d0 = &pv_arch_layers[0];
    return d0->kind == PV_KIND_CONV && d0->stride == d0->kernel && d0->pad_top == 0u &&
           d0->out_h * d0->kernel == d0->in_h && d0->kernel <= PV_MAX_KERNEL;
}

/* ---- int8 --------------------------------------------------------------------------------------------- */
/* Bytes the output of a conv must start below its input so that no output row overwrites an input row
 * still to be read into the ring. The pool (channel by channel, out[c] after every read of channel c), the
 * L2 normalization (out[c] after every read of its row but in[c]'s own) and the dense layers (input copied
 * first) run in place. */
static uint32_t pv_lag(const pv_layer_desc_t *d) {
    uint32_t lag = 0, oy;
    const uint32_t r_out = d->out_w * d->out_c, r_in = pv_in_row_values(d);
    if (d->kind != PV_KIND_CONV) return 0;
    for (oy = 0; oy < d->out_h; oy++) {
        const uint32_t need = (oy + 1u) * r_out, dead = pv_rows_ready(d, oy) * r_in;
        if (need > dead && need - dead > lag) lag = need - dead;
    }
    return (lag + 3u) & ~3u;
}

static uint32_t pv_scratch_bytes_s8(const pv_layer_desc_t *d, int first) {
    if (d->kind == PV_KIND_CONV) return pv_conv_s8_scratch_bytes(d, first);
    if (d->kind == PV_KIND_DENSE) return pv_dense_s8_scratch_bytes(d);
    if (PV_ARCH_HAS_AVGPOOL && d->kind == PV_KIND_AVGPOOL) return pv_pool_s8_scratch_bytes(d);
    return 0u; /* the L2 normalization: none, its second pass recomputes from the input */
}

/* A layer of a kind the kernel front runs in this build (pv_arch.h: PV_ARCH_HAS_*). */
static int pv_kind_ok(const pv_layer_desc_t *d) {
    return d->kind == PV_KIND_CONV || d->kind == PV_KIND_DENSE || (PV_ARCH_HAS_AVGPOOL && d->kind == PV_KIND_AVGPOOL) ||
           (PV_ARCH_HAS_L2NORM && d->kind == PV_KIND_L2NORM);
}

/* What the L2 normalization kernels run: rows of in_c channels in place (the output has the input's shape)
 * whose int32 sum of squares cannot overflow (in_c * 255^2 < 2^31; 16x8: 128^2 per value, less). */
static int pv_l2norm_ok(const pv_layer_desc_t *d) {
    return d->kind != PV_KIND_L2NORM || (d->out_h == d->in_h && d->out_w == d->in_w && d->out_c == d->in_c &&
                                         d->in_c >= 1u && d->in_c <= 0x7FFFFFFFu / (255u * 255u));
}

int pv_plan_s8(pv_plan_t *pl) {
    uint32_t i, off = 0, act = 0, scr = 0;
    memset(pl, 0, sizeof(*pl));
    pl->act_bits = 8u;
    pl->n_streamed = 1u;
    for (i = 1; i < PV_N_LAYERS; i++) off += pv_lag(&pv_arch_layers[i]);
    for (i = 0; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const uint32_t s = pv_scratch_bytes_s8(d, i == 0u);
        /* an exact-sum pool writes int16 sums: the plan reserves twice its bytes for any pool */
        const uint32_t out = d->kind == PV_KIND_AVGPOOL ? 2u * pv_out_values(d) : pv_out_values(d);
        if (i > 0u) off -= pv_lag(d);
        pl->out_offset[i] = off;
        if (off + out > act) act = off + out;
        if (s > scr) scr = s;
    }
    pl->scratch = PV_ALIGN8(act);
    pl->total = pl->scratch + scr;
    if (!pv_stem_ok()) return PV_ERR_LAYOUT;
    for (i = 0; i < PV_N_LAYERS; i++)
        if ((pv_arch_layers[i].kind == PV_KIND_CONV && pv_arch_layers[i].kernel > PV_MAX_KERNEL) ||
            !pv_kind_ok(&pv_arch_layers[i]) || !pv_l2norm_ok(&pv_arch_layers[i]))
            return PV_ERR_LAYOUT;
    return PV_OK;
}

uint32_t pv_kernel_arena_size(void) {
    pv_plan_t pl;
    return pv_plan_s8(&pl) == PV_OK ? pl.total : 0xFFFFFFFFu;
}

/* ---- 16x8 --------------------------------------------------------------------------------------------- */
/* The streamed prefix is layers [0, n): up to the first layer i >= 1 with fewer output values than the
 * stem (0 when there is none). */
static uint32_t pv_n_streamed_s16(void) {
    uint32_t i;
    for (i = 1; i < PV_N_LAYERS; i++)
        if (pv_out_values(&pv_arch_layers[i]) < pv_out_values(&pv_arch_layers[0])) return i + 1u;
    return 0u;
}

/* What the 16x8 kernels can run: a streamed prefix of convolutions ('same'-style top padding < kernel,
 * kernel <= PV_MAX_KERNEL) of at most PV_MAX_STREAMED layers, patches that fit pv_conv_s16_row's stack
 * buffer (depth <= PV_MAX_DEPTH), and accumulators that cannot overflow int32 (depth * 2^15 * 2^7 + 2^30
 * < 2^31: depth < 256; an L2 normalization's sum of squares: pv_l2norm_ok). */
static int pv_layout_ok_s16(uint32_t n_streamed) {
    uint32_t i;
    if (!pv_stem_ok() || pv_arch_layers[0].pad_left != 0u || n_streamed == 0u || n_streamed > PV_MAX_STREAMED)
        return 0;
    for (i = 0; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        const uint32_t depth = d->kind == PV_KIND_CONV    ? d->kernel * d->kernel * (d->in_c / d->groups)
                               : d->kind == PV_KIND_DENSE ? d->in_h * d->in_w * d->in_c
                                                          : d->in_h * d->in_w;
        if (depth >= 256u || (d->kind == PV_KIND_CONV && depth > PV_MAX_DEPTH) || !pv_kind_ok(d) || !pv_l2norm_ok(d))
            return 0;
        if (d->kind == PV_KIND_CONV && (d->kernel > PV_MAX_KERNEL || d->pad_top >= d->kernel)) return 0;
        if (i < n_streamed && d->kind != PV_KIND_CONV) return 0;
    }
    return 1;
}

int pv_plan_s16(pv_plan_t *pl) {
    const uint32_t n = pv_n_streamed_s16();
    uint32_t i, buf = 0u, rings, wx;
    memset(pl, 0, sizeof(*pl));
    pl->act_bits = 16u;
    pl->n_streamed = n;
    pl->total = 0xFFFFFFFFu;
    if (!pv_layout_ok_s16(n)) return PV_ERR_LAYOUT;
    for (i = n - 1u; i < PV_N_LAYERS; i++) /* buffers A and B: the largest output from the prefix's last on */
        if (2u * pv_out_values(&pv_arch_layers[i]) > buf) buf = 2u * pv_out_values(&pv_arch_layers[i]);
    for (i = n - 1u; i < PV_N_LAYERS; i++) pl->out_offset[i] = ((i - (n - 1u)) & 1u) * buf;
    pl->band = buf; /* in B */
    rings = pl->band + 2u * pv_arch_layers[0].kernel * pv_in_row_values(&pv_arch_layers[0]);
    for (i = 1; i < n; i++) {
        pl->ring_offset[i] = rings;
        rings += 2u * pv_arch_layers[i].kernel * pv_in_row_values(&pv_arch_layers[i]);
    }
    pl->total = rings > 2u * buf ? rings : 2u * buf;
    /* the streamed layers' expanded weights (DSP build) after the rings, where that fits the arena as it is */
    for (i = 0, wx = rings; i < n; i++) wx += pv_conv_s16_cache_bytes(&pv_arch_layers[i]);
    if (wx <= pl->total)
        for (i = 0, wx = rings; i < n; i++) {
            const uint32_t b = pv_conv_s16_cache_bytes(&pv_arch_layers[i]);
            pl->wx_offset[i] = b != 0u ? wx : 0u;
            wx += b;
        }
    return PV_OK;
}

uint32_t pv_kernel16_arena_size(void) {
    pv_plan_t pl;
    return pv_plan_s16(&pl) == PV_OK ? pl.total : 0xFFFFFFFFu;
}
