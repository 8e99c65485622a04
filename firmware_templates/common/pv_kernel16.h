/* pv_kernel16: the 16x8 verifier f — TFLM's int16-activation scheme (int16 activations with zero point 0,
 * int8 per-channel weights, int32 biases) — bit-exact with the golden model (codegen/golden.py with
 * qf.activations == "int16"), i.e. with the TFLM interpreter running the 16x8 .tflite that
 * `codegen.emit --activations int16` writes. It runs the blobs of format version
 * PV_BLOB_FORMAT_VERSION_16X8 (pv_blob.h); pv_infer16 refuses an int8 model with PV_ERR_MODEL.
 *
 * Why a second kernel: full int8 rounds every activation to 8 bits, and on LFW that flips 0.7-1 % of the
 * decisions against float f; 16x8 flips 0.25 % (README, "int8 accuracy"). int16 activations are twice
 * the bytes; the memory plan of pv_kernel16.c keeps it in PV_KERNEL16_ARENA_BYTES = 37,632 B for
 * pv-gconv-s (the int8 kernel: 32,448 B): the first layers run row by row while the image streams in, so
 * their 28x28 outputs never exist whole.
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

/* Layers the plan may stream row by row (pv-gconv-s: 3, the stem, b1_dw and b2_down). */
#define PV_KERNEL16_MAX_STREAMED 4u

/* Called with each layer's int16 output, HWC: once per layer, except that a streamed layer's output comes
 * one row (n = out_w * out_c values) per call, in row order, interleaved with the other streamed layers'
 * rows. For layer-by-layer debugging. */
typedef void (*pv_layer16_hook_t)(void *ctx, uint32_t layer, const int16_t *out, uint32_t n);

/* Arena bytes this kernel's plan needs for the layer table of pv_arch.h: PV_KERNEL16_ARENA_BYTES (pv_arch.h),
 * which codegen.c_arch computes from the same plan; pv_stream16_begin refuses a build whose constant is smaller. */
uint32_t pv_kernel16_arena_size(void);

typedef struct pv_stream16 {
    const pv_model_t *m;
    uint8_t *arena;
    uint32_t band; /* next output row of the stem */
    uint32_t fill; /* input values of the next band received */
    uint16_t rows_in[PV_KERNEL16_MAX_STREAMED];  /* streamed layer i: input rows received in its ring */
    uint16_t next_row[PV_KERNEL16_MAX_STREAMED]; /* streamed layer i: next output row to compute */
    pv_layer16_hook_t hook;
    void *hook_ctx;
    int status;
} pv_stream16_t;

/* The streaming API of pv_kernel.h for a 16x8 model: begin, feed PV_INPUT_BYTES int8 bytes in any chunks,
 * end. arena: PV_KERNEL16_ARENA_BYTES, 4-byte aligned. begin_ex also takes a layer hook (or NULL). */
int pv_stream16_begin(pv_stream16_t *s, const pv_model_t *m, uint8_t *arena);
int pv_stream16_begin_ex(pv_stream16_t *s, const pv_model_t *m, uint8_t *arena, pv_layer16_hook_t hook,
                         void *hook_ctx);
int pv_stream16_feed(pv_stream16_t *s, const int8_t *data, uint32_t n);
uint32_t pv_stream16_received(const pv_stream16_t *s);
int pv_stream16_end(pv_stream16_t *s, int16_t *logit);

/* One whole image: image PV_INPUT_BYTES int8 q = u - 128 (HWC); logit receives the int16 logit
 * (pv_dequantize_logit16, pv_decide16). Returns PV_OK or a negative pv_status_t. */
int pv_infer16(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena);
int pv_infer16_ex(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena,
                  pv_layer16_hook_t hook, void *hook_ctx);

#endif /* PV_KERNEL16_H */
