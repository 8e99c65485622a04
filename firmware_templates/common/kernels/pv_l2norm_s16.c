/* pv_l2norm_s16: L2_NORMALIZATION in a 16x8 model (pv_nn.h), as TFLM runs it there: wrapped in two QUANTIZE
 * ops, int16 -> int8 to the layer's intermediate scale (its one multiplier and shift, zero point 0), the
 * int8 op (pv_l2norm_s8.c), then int8 -> int16 at the same scale 1/128 (exact: the int8 values themselves).
 * Bit-exact with codegen/golden.py l2norm_int8. 96 values per image for pv-gconv-s: plain C. */
#include <stddef.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

/* TFLM's QUANTIZE int16 -> int8 (reference_ops::Requantize): MultiplyByQuantizedMultiplier, zero points 0 */
static int32_t pv_l2norm_mid(int16_t x, const pv_layer_params_t *p) {
    return pv_requantize((int32_t)x - p->in_zp, p->mult[0], p->shift[0], 0, -128, 127);
}

/* out may be in: out[c] is written after every read of its row but in[c]'s own (the intermediate is
 * recomputed in the second pass rather than kept). */
void pv_l2norm_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const uint32_t rows = d->in_h * d->in_w, depth = d->in_c;
    uint32_t r, c;
    for (r = 0; r < rows; r++) {
        const int16_t *x = in + (size_t)r * depth;
        int16_t *y = out + (size_t)r * depth;
        int32_t acc = 0, m, s;
        for (c = 0; c < depth; c++) {
            const int32_t v = pv_l2norm_mid(x[c], p);
            acc += v * v; /* depth * 128^2 < 2^31: checked by the planner */
        }
        pv_inv_sqrt_mult_exp(acc, &m, &s);
        for (c = 0; c < depth; c++)
            y[c] = (int16_t)pv_requantize(pv_l2norm_mid(x[c], p), m, s + PV_L2NORM_OUT_SHIFT, 0, -128, 127);
    }
}
