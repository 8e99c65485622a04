/* pv_kernel: the int8 verifier f, bit-exact with the golden model (codegen/golden.py), i.e. with
 * TFLite Micro's reference kernels (CONV_2D per channel + fused ReLU, AVERAGE_POOL_2D,
 * FULLY_CONNECTED; requantization by SaturatingRoundingDoublingHighMul + RoundingDivideByPOT).
 *
 * Static memory only: activations ping-pong inside the caller's arena of PV_ARENA_BYTES (offsets
 * planned by codegen.c_arch.arena_plan and stored in pv_arch.h). Stack: one int16 column of
 * PV_MAX_DEPTH values (192 B for pv-gconv-s) plus locals, about 300 B in all.
 * Build with -DPV_USE_DSP on Cortex-M4/M7/M33 for the SMLAD inner loops (same results, bit for bit;
 * checked on QEMU mps2-an386 by tests/codegen/test_m4_qemu.py). -DPV_USE_DSP -DPV_DSP_EMULATE runs the
 * same code path on any host with the SIMD instructions emulated in C (for tests).
 */
#ifndef PV_KERNEL_H
#define PV_KERNEL_H

#include <stdint.h>

#include "pv_arch.h"
#include "pv_blob.h"

/* Called after every layer with its int8 output (n bytes, HWC) — for layer-by-layer debugging. */
typedef void (*pv_layer_hook_t)(void *ctx, uint32_t layer, const int8_t *out, uint32_t n);

/* image: PV_INPUT_H*PV_INPUT_W*PV_INPUT_C int8 in HWC order, q = u - 128 for the uint8 RGB pixel u.
 * logit: receives the int8 output logit (dequantize with pv_dequantize_logit, decide with pv_decide).
 * arena: PV_ARENA_BYTES bytes of scratch. Returns PV_OK or a negative pv_status_t. */
int pv_infer(const pv_model_t *m, const int8_t *image, int8_t *logit, uint8_t *arena);

/* pv_infer with a hook called after each layer (hook may be NULL). */
int pv_infer_ex(const pv_model_t *m, const int8_t *image, int8_t *logit, uint8_t *arena,
                pv_layer_hook_t hook, void *hook_ctx);

/* Input-row streaming (the image never has to be in RAM whole): the stem is a 4x4/stride-4 patchify
 * convolution, so each band of PV_STEM_ROWS input rows yields one row of its output.
 *   pv_stream_begin(&s, m, arena);
 *   for each of the PV_STREAM_BANDS bands: pv_stream_rows(&s, rows, PV_STREAM_BAND_BYTES)
 *   pv_stream_end(&s, &logit);
 * rows: the next PV_STREAM_ROWS input rows (int8, HWC). Bit-exact with pv_infer; needs only the arena
 * and the caller's band buffer of PV_STREAM_BAND_BYTES (PV_STREAM_ROWS and PV_STREAM_BANDS are 0 when the
 * first layer cannot be streamed). */
typedef struct pv_stream {
    const pv_model_t *m;
    uint8_t *arena;
    uint32_t band; /* next output row of the stem */
    int status;
} pv_stream_t;

int pv_stream_begin(pv_stream_t *s, const pv_model_t *m, uint8_t *arena);
int pv_stream_rows(pv_stream_t *s, const int8_t *rows, uint32_t n_bytes);
int pv_stream_end(pv_stream_t *s, int8_t *logit);

#endif /* PV_KERNEL_H */
