/* pv_kernel16: the 16x8 verifier f — TFLM's int16-activation scheme (int16 activations with zero point 0,
 * int8 per-channel weights, int32 biases) — bit-exact with the golden model (codegen/golden.py with
 * qf.activations == "int16"), i.e. with the TFLM interpreter running the 16x8 .tflite that
 * `codegen.emit --activations int16` writes. It runs the blobs of format version
 * PV_BLOB_FORMAT_VERSION_16X8 (pv_blob.h); pv_infer16 refuses an int8 model with PV_ERR_MODEL.
 *
 * Why a second kernel: full int8 rounds every activation to 8 bits, and on LFW that flips 0.7-1 % of the
 * decisions against float f; 16x8 flips 0.25 % (README, "int8 accuracy"). It costs RAM: the int16
 * activations are twice the bytes, and this kernel keeps two whole activation buffers (ping-pong, no
 * in-place plan): PV_KERNEL16_ARENA_BYTES (about 76 KB for pv-gconv-s), which fits the ESP32 family and
 * the host, not the 48 KB budget of the Cortex-M board (firmware_templates/README.md).
 *
 * The arithmetic is plain C99 (no DSP path): per output value an int32 sum of int16 x int8 products
 * (|acc| <= depth * 32768 * 128 + 2^30 < 2^31 for depths <= 96, checked at begin), plus bias, then
 * MultiplyByQuantizedMultiplier (pv_fixedpoint.h), clamp to [act_min, act_max].
 *
 * The input is the same int8 q = u - 128 image as pv_infer's (the 16x8 model's int16 input holds the same
 * values), and it streams through the stem band by band like pv_stream_*: the image is never in RAM.
 */
#ifndef PV_KERNEL16_H
#define PV_KERNEL16_H

#include <stdint.h>

#include "pv_arch.h"
#include "pv_blob.h"

/* Two int16 activation buffers of the largest layer output and one int16 stem band. For pv-gconv-s the
 * int8 ping-pong arena PV_ARENA_BYTES (largest in + out bytes) is exactly 2 x the largest output, i.e. one
 * int16 buffer; pv_stream16_begin refuses with PV_ERR_LAYOUT when pv_kernel16_arena_need() is larger. */
#define PV_KERNEL16_ARENA_BYTES (2u * PV_ARENA_BYTES + 2u * PV_STREAM_BAND_BYTES)

/* Called after every layer with its int16 output (n values, HWC) — layer-by-layer debugging. */
typedef void (*pv_layer16_hook_t)(void *ctx, uint32_t layer, const int16_t *out, uint32_t n);

/* Arena bytes this kernel needs for the layer table of pv_arch.h (<= PV_KERNEL16_ARENA_BYTES). */
uint32_t pv_kernel16_arena_need(void);

typedef struct pv_stream16 {
    const pv_model_t *m;
    uint8_t *arena;
    uint32_t band; /* next output row of the stem */
    uint32_t fill; /* input values of the next band received */
    int status;
} pv_stream16_t;

/* The streaming API of pv_kernel.h for a 16x8 model: begin, feed PV_INPUT_BYTES int8 bytes in any chunks,
 * end. arena: PV_KERNEL16_ARENA_BYTES, 4-byte aligned. */
int pv_stream16_begin(pv_stream16_t *s, const pv_model_t *m, uint8_t *arena);
int pv_stream16_feed(pv_stream16_t *s, const int8_t *data, uint32_t n);
uint32_t pv_stream16_received(const pv_stream16_t *s);
int pv_stream16_end(pv_stream16_t *s, int16_t *logit);
int pv_stream16_end_ex(pv_stream16_t *s, int16_t *logit, pv_layer16_hook_t hook, void *hook_ctx);

/* One whole image: image PV_INPUT_BYTES int8 q = u - 128 (HWC); logit receives the int16 logit
 * (pv_dequantize_logit16, pv_decide16). Returns PV_OK or a negative pv_status_t. */
int pv_infer16(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena);
int pv_infer16_ex(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena,
                  pv_layer16_hook_t hook, void *hook_ctx);

#endif /* PV_KERNEL16_H */
