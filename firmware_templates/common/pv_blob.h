/* pv_blob: parse and check a θ blob (one user's int8 verifier) in place.
 *
 * Format: see pvcore/blob.py (64-byte header, payload of per-layer quantization records and 4-byte
 * aligned arrays, CRC-32). pv_blob_parse() checks everything the kernel relies on — magic, version,
 * sizes, CRC, arch hash against PV_ARCH_HASH, and every layer record against the layer table of
 * pv_arch.h (kinds, counts, offsets inside the payload, zero points, clamp ranges, shift range, bias
 * bound, chained scales) — and then fills pv_model_t with pointers INTO the blob: the blob must stay
 * valid and unchanged while the model is used. It must be 4-byte aligned (int32 arrays are read in
 * place) and the host little-endian (ARM Cortex-M, ESP32, x86 are).
 */
#ifndef PV_BLOB_H
#define PV_BLOB_H

#include <stdint.h>

#include "pv_arch.h"
#include "pv_blob_format.h"

typedef enum pv_status {
    PV_OK = 0,
    PV_ERR_ARG = -1,         /* NULL pointer */
    PV_ERR_TRUNCATED = -2,   /* shorter than a header, or than the header's total_size */
    PV_ERR_MAGIC = -3,       /* not "PVTB" */
    PV_ERR_VERSION = -4,     /* format_version this firmware does not read */
    PV_ERR_HEADER_SIZE = -5, /* header_size != 64 */
    PV_ERR_SIZE = -6,        /* total/payload sizes inconsistent, or not this architecture's */
    PV_ERR_CRC = -7,         /* CRC-32 mismatch: corrupted */
    PV_ERR_ARCH = -8,        /* arch hash != PV_ARCH_HASH: θ made for another architecture */
    PV_ERR_ALIGN = -9,       /* blob not 4-byte aligned */
    PV_ERR_ENDIAN = -10,     /* big-endian host: the in-place arrays are little-endian */
    PV_ERR_LAYOUT = -11,     /* payload's layer table does not match pv_arch.h */
    PV_ERR_PARAM = -12,      /* a quantization parameter out of range (zp, clamp, shift, scale, bias) */
    PV_ERR_MODEL = -13,      /* pv_infer on a model that pv_blob_parse did not accept */
    PV_ERR_BASE = -14        /* personal blob: no base set, or not this base's shared prefix; a base blob
                                given as a model, or anything else given as the base */
} pv_status_t;

/* Name of a pv_status_t value ("PV_ERR_CRC"), "PV_ERR_UNKNOWN" for anything else. */
const char *pv_status_name(int status);

/* The format's numbers (magic, versions, record sizes, flags, field offsets): pv_blob_format.h, generated
 * from pvcore/blob.py. Versions: PV_BLOB_FORMAT_VERSION (4), full int8 whose pool may carry
 * PV_FLAG_EXACT_SUM: it outputs its sums of (x - in_zp), unrounded, as int16 (output scale = input scale,
 * zp 0), and the dense layer after it reads them (codegen/quantize.py, "The exact pool");
 * PV_BLOB_FORMAT_VERSION_REQUANT_POOL (2), the same before the exact pool (every layer requantizes);
 * PV_BLOB_FORMAT_VERSION_16X8 (3), the same layout holding a 16x8 model (TFLM's int16 activations, int8
 * weights, int32 biases; every activation zero point 0). */

/* 1 when this build reads blobs of that format version: the int8 versions always, and
 * PV_BLOB_FORMAT_VERSION_16X8 in builds with the 16x8 kernels. Defined by the kernel front that runs the
 * models (pv_kernel.c; main/pv_tflm.cc in a TFLite Micro build): a build reads what its kernels run. */
int pv_blob_version_supported(uint32_t version);
#define PV_MODEL_READY 0x59444552u /* "REDY" */

typedef struct pv_layer_params {
    const int8_t *weights;  /* conv OHWI, dense [out][in]; NULL for the pool and the L2 normalization */
    const int32_t *bias;    /* [n_out] */
    const int32_t *mult;    /* [n_quant] Q31 multipliers */
    const int32_t *shift;   /* [n_quant] > 0: left shift */
    const float *w_scales;  /* [n_quant] (not used by the integer kernel) */
    uint32_t n_quant;       /* out_c (conv, dense; 1 for a one-output dense) or 1 (the global mean; the L2
                               normalization: the 16x8 int16 -> int8 requantization, int8 the identity) */
    uint32_t flags;         /* bit 0 ReLU, bit 1 per channel, bit 2 PV_FLAG_EXACT_SUM (the pool) */
    float in_scale;
    float out_scale_layer;
    int32_t in_zp;
    int32_t out_zp;
    int32_t act_min;
    int32_t act_max;
} pv_layer_params_t;

typedef struct pv_model {
    uint32_t ready;           /* PV_MODEL_READY after a successful parse, else 0 */
    const uint8_t *blob;      /* the blob (pointers below point into it) */
    uint32_t len;             /* its total_size */
    const uint8_t *payload;
    uint32_t payload_size;
    char user_id[PV_USER_ID_BYTES + 1u]; /* NUL-terminated */
    float threshold_logit;    /* accept when dequantized logit >= threshold_logit */
    uint32_t act_bits;        /* 8: full int8; 16: 16x8 (int16 activations): the kernel pv_infer runs */
    int32_t threshold_q;      /* the same rule on the integer logit: accept when q >= threshold_q
                                 (int8: 128 never; 16x8: 32768 never) */
    int32_t threshold_q2;     /* two views (pv_decide_mean2): accept when q1 + q2 >= threshold_q2
                                 (int8: 255 never; 16x8: 65535 never) */
    float out_scale;          /* output logit: real = out_scale * (q - out_zero_point) */
    int32_t out_zero_point;
    float input_scale;        /* 1/128 */
    int32_t input_zero_point; /* 0: the input is q = u - 128 */
    pv_layer_params_t layer[PV_N_LAYERS];
} pv_model_t;

/* The layer table of pv_arch.h (defined in pv_blob.c). */
extern const pv_layer_desc_t pv_arch_layers[PV_N_LAYERS];

/* Checks the blob (len may exceed the blob's total_size, e.g. a flash slot; the rest is ignored) and
 * fills *m. Returns PV_OK or a negative pv_status_t; on error *m is marked not ready.
 * A personal blob (pvcore/blob.py, "Shared prefix": the records of layers [split, n) only) takes
 * layers [0, split) from the base set by pv_blob_set_base, after checking its prefix id. A base blob
 * (layers [0, split) only) is no model: PV_ERR_BASE. */
int pv_blob_parse(pv_model_t *m, const uint8_t *blob, uint32_t len);

/* The firmware's base blob (first layer 0, split > 0, prefix id != 0: the records and arrays of the
 * shared layers [0, split) only; usually a const array in flash, which must outlive every model parsed
 * against it), checked as pv_blob_parse checks a blob, the scale chain over those layers. A full or
 * personal blob gives PV_ERR_BASE, a base in the old all-layers layout PV_ERR_SIZE. NULL clears it.
 * Returns PV_OK or a pv_status_t (the base is then cleared). */
int pv_blob_set_base(const uint8_t *blob, uint32_t len);

/* TFLM's QuantizeMultiplier of (double)num / (double)den for two float32 scales > 0 (finite, maybe
 * subnormal): the (multiplier, shift) that TFLM's QUANTIZE kernel derives for a requantization from scale
 * num to scale den (pvcore/qtheta.py l2norm_multiplier), computed in integers — the quotient rounded to
 * double's 53 bits (to nearest, ties to even), then std::round of its frexp fraction times 2^31 — so that
 * no build needs double-precision floating point. (0, 0) when the shift would be below -31. The parser
 * holds an L2 normalization's multiplier to it. */
void pv_quantize_scale_ratio(float num, float den, int32_t *mult, int32_t *shift);

/* The base's split (first personal layer) and prefix id; 0 and 0 when no base is set. */
uint32_t pv_blob_base_split(void);
uint32_t pv_blob_base_prefix_id(void);

/* The device's decision on the kernel's logit q (int8, or int16 for a 16x8 model): 1 accept (dequantized
 * logit >= threshold), 0 reject; the dequantized logit, computed in float exactly as the host's
 * QuantizedF.dequantize_logit. */
int pv_decide(const pv_model_t *m, int32_t q);
float pv_dequantize_logit(const pv_model_t *m, int32_t q);

/* Two views of one probe (the image and its mirror image, the same θ; pv_protocol with PV_VIEWS 2, an
 * int8 model): the mean of the two dequantized logits, computed as (float)(q1 + q2 - 2 zp) * out_scale *
 * 0.5f (exactly the host's QuantizedF.dequantize_mean2), and the decision mean >= threshold_logit, which
 * is q1 + q2 >= threshold_q2. */
float pv_dequantize_mean2(const pv_model_t *m, int32_t q1, int32_t q2);
int pv_decide_mean2(const pv_model_t *m, int32_t q1, int32_t q2);

#endif /* PV_BLOB_H */
