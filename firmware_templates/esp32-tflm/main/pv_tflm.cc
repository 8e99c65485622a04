// pv_tflm.cc: pv_infer() on TensorFlow Lite Micro (espressif/esp-tflite-micro) instead of the fixed
// kernel — the same serial protocol, θ store and decision rule, the emitted .tflite as the model.
//
// The .tflite (pv_model.h) is compiled in; the θ blob in the store must be the same user's (arch hash,
// user id and threshold come from it): pv_infer refuses a model whose user differs (PV_ERR_MODEL), so a
// θ sent over the link for another user cannot silently run this user's network.
// The protocol's own arena (PV_STREAM_ARENA_BYTES, sized for the fixed kernel) is not used: TFLM gets its own,
// PV_MODEL_TFLM_ARENA_BYTES as measured by codegen with the tflite-micro interpreter.
// pv_protocol streams INFER chunks through pv_stream_*: here they are copied into the interpreter's
// input tensor (TFLM needs the whole image there anyway) and pv_stream_end invokes it. One view per
// image (codegen.emit refuses --views 2 for the -tflm targets).
#include <stdint.h>
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" {
#include "pv_app_config.h"
#include "pv_blob.h"
#include "pv_kernel.h"
}

#define PV_MODEL_IMPLEMENTATION
#include PV_MODEL_HEADER

namespace {
alignas(16) uint8_t s_arena[PV_MODEL_TFLM_ARENA_BYTES];
tflite::MicroInterpreter *s_interp = nullptr;

int setup() {
    static tflite::MicroMutableOpResolver<3> resolver;
    static bool ops_added = false;
    if (s_interp != nullptr) return PV_OK;
    const tflite::Model *model = tflite::GetModel(pv_model_tflite);
    if (model->version() != TFLITE_SCHEMA_VERSION) return PV_ERR_MODEL;
    if (!ops_added) {
        resolver.AddConv2D();
        resolver.AddAveragePool2D();
        resolver.AddFullyConnected();
        ops_added = true;
    }
    static tflite::MicroInterpreter interp(model, resolver, s_arena, sizeof(s_arena));
    if (interp.AllocateTensors() != kTfLiteOk) return PV_ERR_MODEL;
    if (interp.input(0)->type != kTfLiteInt8 || interp.input(0)->bytes != PV_INPUT_BYTES) return PV_ERR_MODEL;
    s_interp = &interp;
    return PV_OK;
}
}  // namespace

// ---- the kernel front on the input tensor: the same contract as the fixed kernel's (pv_kernel.h) ----
// s->fill counts the image bytes received; s->band is unused; s->status is sticky as in pv_kernel.c.

// The blob formats this build reads: the int8 ones (the .tflite is int8; a 16x8 θ blob is refused).
extern "C" int pv_blob_version_supported(uint32_t version) {
    return version == PV_BLOB_FORMAT_VERSION || version == PV_BLOB_FORMAT_VERSION_REQUANT_POOL;
}

extern "C" int pv_stream_begin(pv_stream_t *s, const pv_model_t *m, uint8_t *arena) {
    if (s == nullptr) return PV_ERR_ARG;
    memset(s, 0, sizeof(*s));
    s->m = m;
    s->arena = arena;
    if (m == nullptr || m->ready != PV_MODEL_READY || strcmp(m->user_id, PV_MODEL_USER_ID) != 0)
        return s->status = PV_ERR_MODEL;
    return s->status = setup();
}

extern "C" int pv_stream_feed(pv_stream_t *s, const int8_t *data, uint32_t n) {
    if (s == nullptr || (data == nullptr && n > 0u)) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (n > PV_INPUT_BYTES - s->fill) return s->status = PV_ERR_ARG;  // past the image
    memcpy(s_interp->input(0)->data.int8 + s->fill, data, n);
    s->fill += n;
    return PV_OK;
}

extern "C" int pv_stream_rows(pv_stream_t *s, const int8_t *rows, uint32_t n_bytes) {
    return pv_stream_feed(s, rows, n_bytes);
}

extern "C" uint32_t pv_stream_received(const pv_stream_t *s) { return s->fill; }

extern "C" int pv_stream_end(pv_stream_t *s, int16_t *logit) {
    if (s == nullptr || logit == nullptr) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (s->fill != PV_INPUT_BYTES) return PV_ERR_ARG;
    s->status = PV_ERR_ARG;  // one result per begin
    if (s_interp->Invoke() != kTfLiteOk) return PV_ERR_MODEL;
    *logit = s_interp->output(0)->data.int8[0];
    return PV_OK;
}

// The whole image at once: the streaming calls above in one go (one copy into the input tensor either way).
extern "C" int pv_infer(const pv_model_t *m, const int8_t *image, int16_t *logit, uint8_t *arena) {
    pv_stream_t s;
    if (m == nullptr || image == nullptr || logit == nullptr) return PV_ERR_ARG;
    int rc = pv_stream_begin(&s, m, arena);
    if (rc == PV_OK) rc = pv_stream_feed(&s, image, PV_INPUT_BYTES);
    if (rc == PV_OK) rc = pv_stream_end(&s, logit);
    return rc;
}
