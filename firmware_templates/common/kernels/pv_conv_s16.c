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
void pv_conv_s16_row(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *const *rows,
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

/* A whole conv layer from a whole input tensor (the layers after the streamed prefix). */
void pv_conv_s16(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int16_t *in, int16_t *out) {
    const int16_t *rows[PV_MAX_KERNEL];
    uint32_t oy, ky;
    for (oy = 0; oy < d->out_h; oy++) {
        for (ky = 0; ky < d->kernel; ky++) {
            const int32_t iy = pv_tap_row(d, oy, ky);
            rows[ky] = iy < 0 ? NULL : in + (size_t)iy * d->in_w * d->in_c;
        }
        pv_conv_s16_row(d, p, rows, out + (size_t)oy * d->out_w * d->out_c);
    }
}
