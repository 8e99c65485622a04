/* pv_dense_s8: FULLY_CONNECTED with int8 activations (pv_nn.h), per channel (n_quant == 1 for one output);
 * plain C, and SMLAD under PV_USE_DSP. */
#include <stddef.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

uint32_t pv_dense_s8_scratch_bytes(const pv_layer_desc_t *d) {
    return (d->in_h * d->in_w * d->in_c * 2u + 7u) & ~7u; /* the input as int16 */
}

/* col[0 .. n) = src - zp as int16, in pv_slot order (what pv_dot_s16x8 reads); DSP: 4 values a word. */
static void pv_col_fill(int16_t *col, const int8_t *src, uint32_t n, int32_t zp) {
    uint32_t i = 0;
#if defined(PV_USE_DSP)
    const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)(int16_t)zp << 16) | (uint32_t)(uint16_t)(int16_t)zp);
    for (; i + 4u <= n; i += 4u) {
        int32_t w, x02, x13;
        PV_LOAD32(w, src + i);
        x02 = pv_ssub16(pv_sxtb16(w), zp2);
        x13 = pv_ssub16(pv_sxtb16(pv_ror8(w)), zp2);
        PV_LOAD32(col[i], &x02);
        PV_LOAD32(col[i + 2u], &x13);
    }
#endif
    for (; i < n; i++) col[pv_slot(i, n)] = (int16_t)((int32_t)src[i] - zp);
}

/* The input is copied to the scratch first, so the output may overwrite it. After an exact-sum pool
 * (sums_in) the input is that pool's int16 sums, zp 0: the .tflite's CONV_2D k x k over the map with these
 * weights at every tap, exactly. */
void pv_dense_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out,
                 uint8_t *scratch, int sums_in) {
    int16_t *col = (int16_t *)(void *)scratch;
    const uint32_t n_in = d->in_h * d->in_w * d->in_c;
    const uint32_t qstep = p->n_quant > 1u ? 1u : 0u;
    const pv_requant_s8_t rq = pv_requant_s8_params(p);
    uint32_t o;
    if (sums_in) {
        const int16_t *s = (const int16_t *)(const void *)in;
        for (o = 0; o < n_in; o++) col[pv_slot(o, n_in)] = s[o];
    } else {
        pv_col_fill(col, in, n_in, p->in_zp);
    }
    for (o = 0; o < d->out_c; o++) {
        const int32_t acc = pv_dot_s16x8(col, p->weights + (size_t)o * n_in, n_in) + p->bias[o];
        out[o] = pv_requant_s8(acc, o * qstep, &rq);
    }
}
