// pv_tflm.cc: the kernel front of pv_kernel.h (pv_stream_*, pv_infer, pv_blob_version_supported) on
// TensorFlow Lite Micro instead of the fixed kernel — the same serial protocol, θ store and decision rule,
// the emitted .tflite as the model. Shared by every TFLM build: the ESP-IDF -tflm projects
// (espressif/esp-tflite-micro) and the Cortex-M4 QEMU one (cortex-m-qemu-tflm/, TFLM from the shared
// folder's third_party, reference or CMSIS-NN kernels).
//
// The .tflite (the <user>_model.h of codegen.emit, named by PV_MODEL_HEADER: a -D of the build, or
// pv_app_config.h in an ESP-IDF project) is compiled in; the θ blob in the store must be the same
// user's, quantized the same way: user id, activation type and the logit's scale and zero point must
// match the model header's, else PV_ERR_MODEL — a θ sent for another user (or another quantization)
// cannot silently run this model. The decision (threshold, dequantized logit) comes from the blob, as
// on the fixed kernel.
// The protocol's arena is not used (pv_kernel.h: PV_KERNEL_TFLM makes it a placeholder): TFLM gets its
// own, PV_MODEL_TFLM_ARENA_BYTES as measured by codegen with the tflite-micro interpreter.
// pv_protocol streams INFER chunks through pv_stream_*: here they are copied into the interpreter's input
// tensor (TFLM needs the whole image there; int16 for a 16x8 model) and pv_stream_end invokes it. One
// view per image (codegen.emit refuses --views 2 for the -tflm targets).
#include <stdint.h>
#include <string.h>

#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#if defined(CMSIS_NN)
#include "tensorflow/lite/kernels/internal/reference/integer_ops/conv.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#endif

#ifndef PV_MODEL_HEADER
#include "pv_app_config.h" /* an ESP-IDF project: PV_MODEL_HEADER is codegen.emit's */
#endif

extern "C" {
#include "pv_blob.h"
#include "pv_kernel.h"
}

#define PV_MODEL_IMPLEMENTATION
#include PV_MODEL_HEADER

#if PV_MODEL_ACTIVATIONS_INT16
typedef int16_t pv_act_t;
#define PV_TFLM_ACT_TYPE kTfLiteInt16
#else
typedef int8_t pv_act_t;
#define PV_TFLM_ACT_TYPE kTfLiteInt8
#endif

namespace {
alignas(16) uint8_t s_arena[PV_MODEL_TFLM_ARENA_BYTES];
tflite::MicroInterpreter *s_interp = nullptr;

#if defined(CMSIS_NN) && !defined(PV_TFLM_UPSTREAM_INT16_CONV)
// CMSIS-NN's int16 convolution (arm_convolve_wrapper_s16) ignores groups, and TFLM's CMSIS-NN CONV_2D hands
// it grouped int16 convolutions all the same: wrong outputs, no error (TFLM 90b983c2, CMSIS-NN 4ab83cc3;
// shared/third_party/README.md). This CONV_2D runs those on TFLM's reference kernel (the arithmetic of
// codegen.golden, bit for bit) and everything else on CMSIS-NN. Each node keeps both kernels' op data;
// Prepare decides once per node. Build with -DPV_TFLM_UPSTREAM_INT16_CONV for TFLM's own routing (the
// test that shows the defect).
struct RoutedConv {
    void *ref;   // OpDataConv of the reference kernel (conv_common.cc)
    void *cmsis; // the CMSIS-NN kernel's op data
    bool use_ref;
};

TFLMRegistration s_cmsis_conv;

void *routed_init(TfLiteContext *context, const char *buffer, size_t length) {
    auto *r = static_cast<RoutedConv *>(context->AllocatePersistentBuffer(context, sizeof(RoutedConv)));
    if (r == nullptr) return nullptr;
    r->ref = tflite::ConvInit(context, buffer, length);
    r->cmsis = s_cmsis_conv.init(context, buffer, length);
    r->use_ref = false;
    return r;
}

TfLiteStatus routed_prepare(TfLiteContext *context, TfLiteNode *node) {
    auto *r = static_cast<RoutedConv *>(node->user_data);
    tflite::MicroContext *mc = tflite::GetMicroContext(context);
    TfLiteTensor *input = mc->AllocateTempInputTensor(node, tflite::kConvInputTensor);
    TfLiteTensor *filter = mc->AllocateTempInputTensor(node, tflite::kConvWeightsTensor);
    TF_LITE_ENSURE(context, input != nullptr && filter != nullptr);
    r->use_ref = input->type == kTfLiteInt16 && input->dims->data[3] != filter->dims->data[3];  // groups > 1
    mc->DeallocateTempTfLiteTensor(input);
    mc->DeallocateTempTfLiteTensor(filter);
    node->user_data = r->use_ref ? r->ref : r->cmsis;
    TfLiteStatus st = r->use_ref ? tflite::ConvPrepare(context, node) : s_cmsis_conv.prepare(context, node);
    node->user_data = r;
    return st;
}

// TFLM's reference int16 convolution (kernels/conv.cc, kTfLiteInt16): int32 or int64 bias.
TfLiteStatus ref_eval_int16(TfLiteContext *context, TfLiteNode *node, const tflite::OpDataConv &data) {
    using tflite::micro::GetEvalInput;
    using tflite::micro::GetTensorShape;
    const TfLiteEvalTensor *input = GetEvalInput(context, node, tflite::kConvInputTensor);
    const TfLiteEvalTensor *filter = GetEvalInput(context, node, tflite::kConvWeightsTensor);
    const TfLiteEvalTensor *bias =
        tflite::NumInputs(node) == 3 ? GetEvalInput(context, node, tflite::kConvBiasTensor) : nullptr;
    TfLiteEvalTensor *output = tflite::micro::GetEvalOutput(context, node, tflite::kConvOutputTensor);
    const auto &params = *static_cast<const TfLiteConvParams *>(node->builtin_data);
    if (bias != nullptr && bias->type == kTfLiteInt64) {
        tflite::reference_integer_ops::ConvPerChannel(
            tflite::ConvParamsQuantized(params, data), data.per_channel_output_multiplier,
            data.per_channel_output_shift, GetTensorShape(input), tflite::micro::GetTensorData<int16_t>(input),
            GetTensorShape(filter), tflite::micro::GetTensorData<int8_t>(filter), GetTensorShape(bias),
            tflite::micro::GetOptionalTensorData<int64_t>(bias), GetTensorShape(output),
            tflite::micro::GetTensorData<int16_t>(output));
    } else {
        TF_LITE_ENSURE(context, bias == nullptr || bias->type == kTfLiteInt32);
        tflite::reference_integer_ops::ConvPerChannel(
            tflite::ConvParamsQuantized(params, data), data.per_channel_output_multiplier,
            data.per_channel_output_shift, GetTensorShape(input), tflite::micro::GetTensorData<int16_t>(input),
            GetTensorShape(filter), tflite::micro::GetTensorData<int8_t>(filter), GetTensorShape(bias),
            tflite::micro::GetOptionalTensorData<int32_t>(bias), GetTensorShape(output),
            tflite::micro::GetTensorData<int16_t>(output));
    }
    return kTfLiteOk;
}

TfLiteStatus routed_eval(TfLiteContext *context, TfLiteNode *node) {
    auto *r = static_cast<RoutedConv *>(node->user_data);
    if (r->use_ref) return ref_eval_int16(context, node, *static_cast<const tflite::OpDataConv *>(r->ref));
    node->user_data = r->cmsis;
    TfLiteStatus st = s_cmsis_conv.invoke(context, node);
    node->user_data = r;
    return st;
}

TFLMRegistration conv_registration() {
    s_cmsis_conv = tflite::Register_CONV_2D();
    return tflite::micro::RegisterOp(routed_init, routed_prepare, routed_eval);
}
#else
TFLMRegistration conv_registration() { return tflite::Register_CONV_2D(); }
#endif

int setup() {
    static tflite::MicroMutableOpResolver<4> resolver;
    static bool ops_added = false;
    if (s_interp != nullptr) return PV_OK;
    const tflite::Model *model = tflite::GetModel(pv_model_tflite);
    if (model->version() != TFLITE_SCHEMA_VERSION) return PV_ERR_MODEL;
    if (!ops_added) {  // the ops codegen/tflite_writer.py emits: the convs (a requantizing pool too) as
        // CONV_2D, the dense layers as FULLY_CONNECTED, an L2 normalization as int8 L2_NORMALIZATION — in a
        // 16x8 model between two QUANTIZE ops (int16 → int8 → int16), TFLite having no int16 one
        resolver.AddConv2D(conv_registration());
        resolver.AddFullyConnected();
        resolver.AddL2Normalization();
        resolver.AddQuantize();
        ops_added = true;
    }
    static tflite::MicroInterpreter interp(model, resolver, s_arena, sizeof(s_arena));
    if (interp.AllocateTensors() != kTfLiteOk) return PV_ERR_MODEL;
    if (interp.input(0)->type != PV_TFLM_ACT_TYPE || interp.input(0)->bytes != PV_INPUT_BYTES * sizeof(pv_act_t))
        return PV_ERR_MODEL;
    s_interp = &interp;
    return PV_OK;
}

// The blob's quantization is the model's: same user, activations, and output scale and zero point.
bool blob_matches_model(const pv_model_t *m) {
    return m != nullptr && m->ready == PV_MODEL_READY && strcmp(m->user_id, PV_MODEL_USER_ID) == 0 &&
           m->act_bits == (PV_MODEL_ACTIVATIONS_INT16 ? 16u : 8u) && m->out_zero_point == PV_MODEL_LOGIT_ZP &&
           m->out_scale == PV_MODEL_LOGIT_SCALE;
}
}  // namespace

// ---- the kernel front on the input tensor: the same contract as the fixed kernel's (pv_kernel.h) ----
// s->fill counts the image bytes received; s->band is unused; s->status is sticky as in pv_kernel.c.

// The blob formats this build reads: those of the .tflite's activation type.
extern "C" int pv_blob_version_supported(uint32_t version) {
#if PV_MODEL_ACTIVATIONS_INT16
    return version == PV_BLOB_FORMAT_VERSION_16X8;
#else
    return version == PV_BLOB_FORMAT_VERSION || version == PV_BLOB_FORMAT_VERSION_REQUANT_POOL;
#endif
}

// What INFO reports as the kernel's arena: TFLM's (the interpreter's own figure once it is set up).
extern "C" uint32_t pv_tflm_arena_bytes(void) {
    return s_interp != nullptr ? (uint32_t)s_interp->arena_used_bytes() : (uint32_t)sizeof(s_arena);
}

extern "C" int pv_stream_begin(pv_stream_t *s, const pv_model_t *m, uint8_t *arena) {
    if (s == nullptr) return PV_ERR_ARG;
    memset(s, 0, sizeof(*s));
    s->m = m;
    s->arena = arena;
    if (!blob_matches_model(m)) return s->status = PV_ERR_MODEL;
    return s->status = setup();
}

extern "C" int pv_stream_feed(pv_stream_t *s, const int8_t *data, uint32_t n) {
    if (s == nullptr || (data == nullptr && n > 0u)) return PV_ERR_ARG;
    if (s->status != PV_OK) return s->status;
    if (n > PV_INPUT_BYTES - s->fill) return s->status = PV_ERR_ARG;  // past the image
    pv_act_t *in = tflite::GetTensorData<pv_act_t>(s_interp->input(0)) + s->fill;
    for (uint32_t i = 0; i < n; i++) in[i] = data[i];  // a 16x8 model's input holds the same values
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
    *logit = tflite::GetTensorData<pv_act_t>(s_interp->output(0))[0];
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
