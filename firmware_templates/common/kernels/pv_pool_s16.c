/* pv_pool_s16: the global mean of a 16x8 map (pv_nn.h): per channel acc = sum of (x - in_zp), one
 * multiplier. 96 channels x 49 values: plain C. */
#include <stddef.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

void pv_pool_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const uint32_t n = d->in_h * d->in_w;
    uint32_t c, i;
    for (c = 0; c < d->in_c; c++) {
        int32_t acc = 0;
        for (i = 0; i < n; i++) acc += (int32_t)in[(size_t)i * d->in_c + c] - p->in_zp;
        out[c] = pv_requant_s16(acc, p, 0u);
    }
}
