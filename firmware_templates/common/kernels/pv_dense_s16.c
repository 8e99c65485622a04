/* pv_dense_s16: FULLY_CONNECTED of the 16x8 scheme (pv_nn.h), one multiplier per output when per channel.
 * 2,328 MACs in all for pv-gconv-s: plain C. */
#include <stddef.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

void pv_dense_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const uint32_t n_in = d->in_h * d->in_w * d->in_c;
    const int per_channel = p->n_quant > 1u;
    uint32_t o;
    for (o = 0; o < d->out_c; o++) {
        const int8_t *w = p->weights + (size_t)o * n_in;
        int32_t acc = p->bias[o];
        uint32_t i;
        for (i = 0; i < n_in; i++) acc += (int32_t)in[i] * w[i];
        out[o] = pv_requant_s16(acc, p, per_channel ? o : 0u);
    }
}
