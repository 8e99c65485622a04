/* pv_pool_s8: the global mean of an int8 map (pv_nn.h), in place; plain C, and SXTB16 lane sums under
 * PV_USE_DSP. */
#include <stddef.h>
#include <string.h>

#include "pv_nn.h"
#include "pv_nn_support.h"

uint32_t pv_pool_s8_scratch_bytes(const pv_layer_desc_t *d) { return (d->in_c * 2u + 7u) & ~7u; /* lane sums */ }

/* The global mean (kernel = in_h = in_w, checked at parse), as deployed in the .tflite: CONV_2D k x k
 * with one group per channel, weights 1, bias 0, so acc = sum(x - in_zp), requantized with the layer's
 * one multiplier to its own output params (codegen/quantize.py says why it is not AVERAGE_POOL_2D). In
 * place: out[c] is written after the last read of channel c, and no later channel reads byte c.
 * PV_FLAG_EXACT_SUM (format version 4): no requantization — out holds the sums as int16 (|sum| <= k*k*255,
 * checked at parse) for the dense layer after it; written after every read. */
void pv_pool_s8(const pv_layer_desc_t *d, const pv_layer_params_t *p, const int8_t *in, int8_t *out, uint8_t *scratch) {
    const uint32_t n = d->in_h * d->in_w, c_n = d->in_c;
    const int32_t zp_sum = (int32_t)n * p->in_zp;
    const pv_requant_s8_t rq = pv_requant_s8_params(p);
    const int exact = pv_exact_sum(p);
    int16_t *sums = (int16_t *)(void *)out; /* exact: int16 out (the arena offsets are 4-aligned) */
    uint32_t c, i;
#if defined(PV_USE_DSP)
    if ((c_n & 3u) == 0u && n <= 255u) { /* 16-bit lane sums (|sum| <= 255 * 128), 4 channels a word */
        int32_t *acc = (int32_t *)(void *)scratch; /* per 4 channels: (c0, c2), (c1, c3) */
        const int8_t *x = in;
        for (c = 0; c < c_n / 2u; c++) acc[c] = 0;
        for (i = 0; i < n; i++) {
            for (c = 0; c < c_n; c += 4u, x += 4) {
                int32_t w;
                PV_LOAD32(w, x);
                acc[c / 2u] = pv_sadd16(acc[c / 2u], pv_sxtb16(w));
                acc[c / 2u + 1u] = pv_sadd16(acc[c / 2u + 1u], pv_sxtb16_ror8(w));
            }
        }
        for (c = 0; c < c_n; c++) { /* all reads done: the output may overwrite the input */
            const int32_t word = acc[(c & ~3u) / 2u + (c & 1u)];
            const int32_t a = (int32_t)(int16_t)(uint16_t)((uint32_t)word >> ((c & 2u) ? 16 : 0));
            if (exact)
                sums[c] = (int16_t)(a - zp_sum);
            else
                out[c] = pv_requant_s8(a - zp_sum, 0u, &rq);
        }
        return;
    }
#endif
    if (exact) { /* all sums first (in the scratch): an int16 store would overwrite channels not yet read */
        int16_t *tmp = (int16_t *)(void *)scratch;
        for (c = 0; c < c_n; c++) {
            int32_t acc = 0;
            for (i = 0; i < n; i++) acc += in[(size_t)i * c_n + c];
            tmp[c] = (int16_t)(acc - zp_sum);
        }
        memcpy(sums, tmp, (size_t)c_n * 2u);
        return;
    }
    for (c = 0; c < c_n; c++) {
        int32_t acc = 0;
        for (i = 0; i < n; i++) acc += in[(size_t)i * c_n + c];
        out[c] = pv_requant_s8(acc - zp_sum, 0u, &rq);
    }
}
