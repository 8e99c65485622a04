/* pv_kernel: the kernel front — f on a parsed θ blob, bit-exact with the golden model (codegen/golden.py),
 * i.e. with TFLite Micro's reference kernels: the int8 kernels for blobs of format version 4 and 2, the
 * 16x8 kernels (int16 activations, int8 weights) for format version 3. The front picks them by the
 * model's format (pv_model_t.act_bits); the operators are in kernels/ (pv_nn.h), the memory plan in
 * pv_plan.c.
 *
 * Static memory only: one caller-owned arena (PV_KERNEL_ARENA_BYTES for an int8 model,
 * PV_KERNEL16_ARENA_BYTES for a 16x8 one, pv_arch.h; PV_STREAM_ARENA_BYTES runs either) holds every
 * activation and the scratch; the input image is never needed whole: it streams through the first layers
 * band by band (pv_stream_*). Build with -DPV_USE_DSP on Cortex-M4/M7/M33 for the SMLAD inner loops (same
 * results, bit for bit; checked on QEMU mps2-an386 by tests/codegen/test_m4_qemu.py). -DPV_USE_DSP
 * -DPV_DSP_EMULATE runs the same code path on any host with the SIMD instructions emulated in C (tests).
 *
 * PV_WITH_16X8=1 links the 16x8 kernels in: the build then reads 16x8 blobs (pv_blob_version_supported)
 * and sizes PV_STREAM_ARENA_BYTES for either kernel. Default 0: int8 only, an int8 firmware's flash and
 * RAM without them, and a 16x8 blob refused at parse (PV_ERR_VERSION). This header and pv_kernel.c are
 * the only places that read the flag.
 */
#ifndef PV_KERNEL_H
#define PV_KERNEL_H

#include <stdint.h>

#include "pv_arch.h"
#include "pv_blob.h"
#include "pv_nn.h"
#include "pv_plan.h"

#ifndef PV_WITH_16X8
#define PV_WITH_16X8 0
#endif
#if defined(PV_KERNEL_TFLM)
/* A TFLite Micro build (firmware_templates/tflm-common/pv_tflm.cc implements this header on the emitted
 * .tflite): TFLM owns its arena, the caller's is not used (a placeholder), and INFO reports TFLM's. */
#define PV_STREAM_ARENA_BYTES 8u
uint32_t pv_tflm_arena_bytes(void);
#define PV_KERNEL_ARENA_IN_USE(views) pv_tflm_arena_bytes()
#elif PV_WITH_16X8
#define PV_STREAM_ARENA_BYTES \
    (PV_KERNEL16_ARENA_BYTES > PV_KERNEL_ARENA_BYTES ? PV_KERNEL16_ARENA_BYTES : PV_KERNEL_ARENA_BYTES)
#else
#define PV_STREAM_ARENA_BYTES PV_KERNEL_ARENA_BYTES
#endif
#ifndef PV_KERNEL_ARENA_IN_USE
/* The arena bytes a build holds for `views` views per probe (INFO's arena_bytes). */
#define PV_KERNEL_ARENA_IN_USE(views) ((uint32_t)PV_STREAM_ARENA_BYTES + (uint32_t)PV_KERNEL_ARENA_BYTES * ((views) - 1u))
#endif

/* Called with each layer's output (n bytes, HWC; int8 values, or int16 for a 16x8 model and for an exact-sum
 * pool's sums) as it is computed: a layer that streams (the stem; for a 16x8 model also the layers up to
 * b2_down) one row per call, in row order, interleaved with the other streamed layers' rows; every other
 * layer once, whole. For layer-by-layer debugging. */
typedef void (*pv_layer_hook_t)(void *ctx, uint32_t layer, const void *out, uint32_t n);

/* Input-row streaming (the image never has to be in RAM whole):
 *   pv_stream_begin(&s, m, arena);
 *   pv_stream_feed(&s, bytes, n)  any number of times, any chunk sizes, PV_INPUT_BYTES in all
 *     (or pv_stream_rows(&s, rows, PV_STREAM_BAND_BYTES) once per band, with whole bands)
 *   pv_stream_end(&s, &logit);
 * The input is int8 q = u - 128 for the uint8 RGB pixel u, HWC (a 16x8 model's int16 input holds the same
 * values). Bit-exact with pv_infer. pv_stream_feed keeps a partial band inside the arena, so the caller
 * needs no image or band buffer at all. arena: 4-byte aligned. */
typedef struct pv_stream {
    const pv_model_t *m;
    uint8_t *arena;
    uint32_t band; /* next output row of the stem */
    uint32_t fill; /* image bytes of the next band received (pv_stream_feed) */
    int status;
    pv_layer_hook_t hook;
    void *hook_ctx;
    pv_plan_t plan;
    union {
        pv_conv_s8_t stem; /* int8: the stem set up in the scratch */
        struct {
            uint16_t rows_in[PV_MAX_STREAMED];  /* streamed layer i: input rows received in its ring */
            uint16_t next_row[PV_MAX_STREAMED]; /* streamed layer i: next output row to compute */
        } s16;
    } k;
} pv_stream_t;

int pv_stream_begin(pv_stream_t *s, const pv_model_t *m, uint8_t *arena);
/* pv_stream_begin with a layer hook (or NULL). */
int pv_stream_begin_ex(pv_stream_t *s, const pv_model_t *m, uint8_t *arena, pv_layer_hook_t hook, void *hook_ctx);
int pv_stream_rows(pv_stream_t *s, const int8_t *rows, uint32_t n_bytes);
int pv_stream_feed(pv_stream_t *s, const int8_t *data, uint32_t n);
uint32_t pv_stream_received(const pv_stream_t *s); /* image bytes taken so far */
/* logit: the output logit, int8 for an int8 model, int16 for a 16x8 one (dequantize with
 * pv_dequantize_logit, decide with pv_decide). Returns PV_OK or a negative pv_status_t. */
int pv_stream_end(pv_stream_t *s, int16_t *logit);

/* One whole image: image PV_INPUT_BYTES int8 (HWC); the same contract as the streaming calls. */
int pv_infer(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena);
/* pv_infer with a layer hook (or NULL). */
int pv_infer_ex(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena, pv_layer_hook_t hook,
                void *hook_ctx);

#endif /* PV_KERNEL_H */
