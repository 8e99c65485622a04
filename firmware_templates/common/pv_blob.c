/* pv_blob: θ blob parser (format: pvcore/blob.py). Reads header fields byte by byte; the arrays are
 * used in place. */
#include "pv_blob.h"

#include <float.h>
#include <stddef.h>
#include <string.h>

#include "pv_crc32.h"

const pv_layer_desc_t pv_arch_layers[PV_N_LAYERS] = PV_ARCH_LAYER_TABLE;

const char *pv_status_name(int status) {
    switch (status) {
    case PV_OK: return "PV_OK";
    case PV_ERR_ARG: return "PV_ERR_ARG";
    case PV_ERR_TRUNCATED: return "PV_ERR_TRUNCATED";
    case PV_ERR_MAGIC: return "PV_ERR_MAGIC";
    case PV_ERR_VERSION: return "PV_ERR_VERSION";
    case PV_ERR_HEADER_SIZE: return "PV_ERR_HEADER_SIZE";
    case PV_ERR_SIZE: return "PV_ERR_SIZE";
    case PV_ERR_CRC: return "PV_ERR_CRC";
    case PV_ERR_ARCH: return "PV_ERR_ARCH";
    case PV_ERR_ALIGN: return "PV_ERR_ALIGN";
    case PV_ERR_ENDIAN: return "PV_ERR_ENDIAN";
    case PV_ERR_LAYOUT: return "PV_ERR_LAYOUT";
    case PV_ERR_PARAM: return "PV_ERR_PARAM";
    case PV_ERR_MODEL: return "PV_ERR_MODEL";
    case PV_ERR_BASE: return "PV_ERR_BASE";
    default: return "PV_ERR_UNKNOWN";
    }
}

static uint32_t rd_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int32_t rd_i32(const uint8_t *p) {
    const uint32_t u = rd_u32(p);
    int32_t v;
    memcpy(&v, &u, 4); /* two's complement reinterpretation, no implementation-defined conversion */
    return v;
}

static float rd_f32(const uint8_t *p) {
    const uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int is_little_endian(void) {
    const uint32_t one = 1u;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1u;
}

/* finite and > 0 (NaN fails every comparison) */
static int scale_ok(float s) { return s > 0.0f && s <= FLT_MAX; }

/* int8 zero points in [-128, 127]; 16x8: 0 (TFLM's int16 kernels are symmetric) */
static int zp_ok(int32_t zp, uint32_t bits) {
    return bits == 16u ? zp == 0 : zp >= PV_BLOB_ZP8_MIN && zp <= PV_BLOB_ZP8_MAX;
}

/* A (multiplier, shift) pair that TFLM's QuantizeMultiplier gives for a multiplier below 1 (pvcore/qtheta.py,
 * requant_params_ok; no left shift of the accumulator):
 * the kernels' requantization is free of undefined behaviour for these (kernels/pv_fixedpoint.h). */
static int requant_ok(int32_t mult, int32_t shift) {
    if (mult == 0) return shift == 0;
    return mult >= PV_BLOB_MULT_MIN && mult <= PV_BLOB_MULT_MAX && shift >= PV_BLOB_SHIFT_MIN &&
           shift <= PV_BLOB_SHIFT_MAX;
}

/* value = m * 2^e for a float32 > 0 (normal or subnormal). */
static void float_parts(float f, uint64_t *m, int32_t *e) {
    uint32_t u, ex;
    memcpy(&u, &f, 4);
    ex = (u >> 23) & 0xFFu;
    *m = ex == 0u ? (uint64_t)(u & 0x7FFFFFu) : (uint64_t)((u & 0x7FFFFFu) | 0x800000u);
    *e = ex == 0u ? -149 : (int32_t)ex - 150;
}

void pv_quantize_scale_ratio(float num, float den, int32_t *mult, int32_t *shift) {
    uint64_t a, b, q = 0u, guard;
    int32_t ea, eb, x, i;
    float_parts(num, &a, &ea);
    float_parts(den, &b, &eb);
    x = ea - eb; /* num / den = (a / b) * 2^x */
    while (a < b) {
        a <<= 1;
        x--;
    }
    while (a >= 2u * b) {
        b <<= 1;
        x++;
    }
    /* a / b in [1, 2): its first 54 bits (double's 53 and a guard bit); what is left of a, the sticky bit */
    for (i = 0; i < 54; i++) {
        q <<= 1;
        if (a >= b) {
            a -= b;
            q |= 1u;
        }
        a <<= 1;
    }
    guard = q & 1u;
    q >>= 1; /* the quotient is q * 2^(x - 52), q in [2^52, 2^53), before rounding to nearest even: */
    if (guard != 0u && (a != 0u || (q & 1u) != 0u)) q++;
    if (q == ((uint64_t)1 << 53)) {
        q >>= 1;
        x++;
    }
    /* frexp: fraction q / 2^53 in [0.5, 1), exponent x + 1; std::round(fraction * 2^31), ties away from 0 */
    q = (q + ((uint64_t)1 << 21)) >> 22;
    x++;
    if (q == ((uint64_t)1 << 31)) {
        q >>= 1;
        x++;
    }
    if (x < -31) { /* every bit shifted out: TFLM flushes to 0 */
        q = 0u;
        x = 0;
    }
    *mult = (int32_t)q;
    *shift = x;
}

static int32_t act_lo(uint32_t bits) { return bits == 16u ? -32768 : -128; }
static int32_t act_hi(uint32_t bits) { return bits == 16u ? 32767 : 127; }

/* An array of count elements of elem bytes at payload offset off: aligned, after the records, inside. */
static int array_ok(uint32_t off, uint32_t count, uint32_t elem, uint32_t data_start, uint32_t psize) {
    if (count == 0u) return off == 0u;
    if ((off & 3u) != 0u || off < data_start || off > psize) return 0;
    if (count > (psize - off) / elem) return 0;
    return 1;
}

/* Output channels a layer's record holds biases for (n_out): none for the pool and the L2 normalization. */
static uint32_t record_n_out(const pv_layer_desc_t *d) {
    return d->kind == PV_KIND_AVGPOOL || d->kind == PV_KIND_L2NORM ? 0u : d->out_c;
}

/* Payload bytes of a blob holding layers [first, end) (pvcore/blob.py payload_size). */
static uint32_t payload_bytes(uint32_t first, uint32_t end) {
    uint32_t n = PV_BLOB_PAYLOAD_HEAD_BYTES + (end - first) * PV_BLOB_RECORD_BYTES, i;
    for (i = first; i < end; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        n += ((d->n_weights + 3u) & ~3u) + 4u * record_n_out(d) + 12u * d->n_quant;
    }
    return n;
}

/* Layer index's record in a payload whose records (and then arrays) start at layer first; data_start:
 * the payload offset after its last record. */
static int parse_layer(pv_layer_params_t *lp, const pv_layer_desc_t *d, const uint8_t *payload,
                       uint32_t psize, uint32_t index, uint32_t first, uint32_t data_start, uint32_t bits,
                       uint32_t version) {
    const uint8_t *r = payload + PV_BLOB_PAYLOAD_HEAD_BYTES + (index - first) * PV_BLOB_RECORD_BYTES;
    const uint32_t kind = r[PV_BLOB_REC_KIND], flags = r[PV_BLOB_REC_FLAGS], n_out = rd_u16(r + PV_BLOB_REC_N_OUT);
    const uint32_t n_weights = rd_u32(r + PV_BLOB_REC_N_WEIGHTS), n_quant = rd_u32(r + PV_BLOB_REC_N_QUANT);
    const uint32_t off_w = rd_u32(r + PV_BLOB_REC_OFF_WEIGHTS), off_b = rd_u32(r + PV_BLOB_REC_OFF_BIAS);
    const uint32_t off_m = rd_u32(r + PV_BLOB_REC_OFF_MULT);
    const uint32_t off_s = rd_u32(r + PV_BLOB_REC_OFF_SHIFT), off_ws = rd_u32(r + PV_BLOB_REC_OFF_WSCALE);
    const uint32_t want_out = record_n_out(d);
    const uint32_t want_flags = (d->relu ? PV_FLAG_RELU : 0u) | (d->n_quant > 1u ? PV_FLAG_PER_CHANNEL : 0u);
    /* an exact-sum pool: only in version 4, and only before a dense layer (which then reads int16 sums) */
    const int exact_ok = version == PV_BLOB_FORMAT_VERSION && d->kind == PV_KIND_AVGPOOL &&
                         index + 1u < PV_N_LAYERS && pv_arch_layers[index + 1u].kind == PV_KIND_DENSE;
    const int exact = flags == (want_flags | PV_FLAG_EXACT_SUM) && exact_ok;
    uint32_t i;

    if (kind != d->kind || (flags != want_flags && !exact) || n_out != want_out || n_weights != d->n_weights ||
        n_quant != d->n_quant)
        return PV_ERR_LAYOUT;
    if (!array_ok(off_w, n_weights, 1u, data_start, psize) || !array_ok(off_b, n_out, 4u, data_start, psize) ||
        !array_ok(off_m, n_quant, 4u, data_start, psize) || !array_ok(off_s, n_quant, 4u, data_start, psize) ||
        !array_ok(off_ws, n_quant, 4u, data_start, psize))
        return PV_ERR_LAYOUT;

    lp->in_scale = rd_f32(r + PV_BLOB_REC_IN_SCALE);
    lp->in_zp = rd_i32(r + PV_BLOB_REC_IN_ZP);
    lp->out_scale_layer = rd_f32(r + PV_BLOB_REC_OUT_SCALE);
    lp->out_zp = rd_i32(r + PV_BLOB_REC_OUT_ZP);
    lp->act_min = rd_i32(r + PV_BLOB_REC_ACT_MIN);
    lp->act_max = rd_i32(r + PV_BLOB_REC_ACT_MAX);
    lp->n_quant = n_quant;
    lp->flags = flags;
    if (!scale_ok(lp->in_scale) || !scale_ok(lp->out_scale_layer) || !zp_ok(lp->in_zp, bits) ||
        !zp_ok(lp->out_zp, bits) || lp->act_min > lp->act_max)
        return PV_ERR_PARAM;
    if (exact) { /* the sum's own bounds, output params = input scale and zp 0 (codegen/quantize.py) */
        const int32_t n = (int32_t)(d->in_h * d->in_w);
        if (lp->out_zp != 0 || lp->out_scale_layer != lp->in_scale || lp->act_min != n * (-128 - lp->in_zp) ||
            lp->act_max != n * (127 - lp->in_zp) || n * 255 > 32767)
            return PV_ERR_PARAM;
    } else if (lp->act_min != ((d->relu && lp->out_zp > act_lo(bits)) ? lp->out_zp : act_lo(bits)) ||
               lp->act_max != act_hi(bits)) {
        return PV_ERR_PARAM; /* TFLM's range of the fused activation, as the quantizer sets it */
    }

    /* In-place views (alignment checked: payload and offsets are multiples of 4). */
    lp->weights = n_weights ? (const int8_t *)(const void *)(payload + off_w) : NULL;
    lp->bias = n_out ? (const int32_t *)(const void *)(payload + off_b) : NULL;
    lp->mult = n_quant ? (const int32_t *)(const void *)(payload + off_m) : NULL;
    lp->shift = n_quant ? (const int32_t *)(const void *)(payload + off_s) : NULL;
    lp->w_scales = n_quant ? (const float *)(const void *)(payload + off_ws) : NULL;

    for (i = 0; i < n_quant; i++) {
        /* the exact-sum pool's fixed (2^30, 1) is checked below */
        if ((!exact && !requant_ok(lp->mult[i], lp->shift[i])) || !scale_ok(lp->w_scales[i])) return PV_ERR_PARAM;
    }
    for (i = 0; i < n_out; i++) {
        if (lp->bias[i] < -PV_BLOB_BIAS_LIMIT || lp->bias[i] > PV_BLOB_BIAS_LIMIT) return PV_ERR_PARAM;
    }
    for (i = 0; i < n_weights; i++) {
        if (lp->weights[i] < PV_BLOB_WEIGHT_MIN) return PV_ERR_PARAM; /* int8: <= PV_BLOB_WEIGHT_MAX */
    }
    if (d->kind == PV_KIND_AVGPOOL) {
        /* weights all 1 at scale 1/k^2 (an exact-sum pool: scale 1, multiplier 1 = (2^30, shift 1)) */
        if (exact ? lp->w_scales[0] != 1.0f || lp->mult[0] != PV_BLOB_MULT_MIN || lp->shift[0] != 1
                  : lp->w_scales[0] != 1.0f / (float)(d->kernel * d->kernel))
            return PV_ERR_PARAM;
        /* the global mean requantizes with one multiplier (weights 1 and bias 0 implicit) */
        if (d->kernel != d->in_h || d->kernel != d->in_w || d->out_h != 1u || d->out_w != 1u)
            return PV_ERR_LAYOUT;
    }
    if (d->kind == PV_KIND_L2NORM) { /* pvcore/qtheta.py check_l2norm */
        int32_t m, s;
        /* TFLM's fixed output: the unit vector at scale 1/128, zero point 0 */
        if (lp->out_scale_layer != 0.0078125f || lp->out_zp != 0) return PV_ERR_PARAM;
        /* the one multiplier: 16x8, the int16 -> int8 QUANTIZE to the intermediate scale w_scales[0] (zero
         * point 0) as TFLM derives it from the two scales; int8, the identity (the input's own scale) */
        if (bits == 8u && lp->w_scales[0] != lp->in_scale) return PV_ERR_PARAM;
        pv_quantize_scale_ratio(lp->in_scale, lp->w_scales[0], &m, &s);
        if (lp->mult[0] != m || lp->shift[0] != s) return PV_ERR_PARAM;
    }
    return PV_OK;
}

/* The firmware's base (shared prefix), set once at boot. */
static pv_model_t s_base; /* its act_bits: a personal blob must have the same */
static uint32_t s_base_split, s_base_prefix_id;

/* The two views' mean logit from q1 + q2: one expression for pv_dequantize_mean2 and threshold_q2. */
static float mean2_of_sum(const pv_model_t *m, int32_t sum) {
    return (float)(sum - 2 * m->out_zero_point) * m->out_scale * 0.5f;
}

/* pv_blob_parse (as_base 0: a full or personal blob, the model) and pv_blob_set_base's check (as_base 1:
 * a base blob, the layers [0, split) only, whose parameters fill m->layer[0..split)). */
static int parse_blob(pv_model_t *m, const uint8_t *blob, uint32_t len, int as_base) {
    static const uint8_t arch[8] = PV_ARCH_HASH;
    uint32_t total, psize, first, split, end, i, version, bits;
    const uint8_t *payload;
    float prev_scale;
    int32_t prev_zp, q;
    int rc;

    if (m == NULL) return PV_ERR_ARG;
    memset(m, 0, sizeof(*m));
    if (blob == NULL) return PV_ERR_ARG;
    if (len < PV_BLOB_HEADER_BYTES + PV_BLOB_CRC_BYTES) return PV_ERR_TRUNCATED;
    if (memcmp(blob + PV_BLOB_HDR_MAGIC, PV_BLOB_MAGIC, PV_BLOB_MAGIC_LEN) != 0) return PV_ERR_MAGIC;
    version = rd_u16(blob + PV_BLOB_HDR_FORMAT_VERSION);
    if (!pv_blob_version_supported(version)) return PV_ERR_VERSION;
    bits = version == PV_BLOB_FORMAT_VERSION_16X8 ? 16u : 8u;
    if (rd_u16(blob + PV_BLOB_HDR_HEADER_SIZE) != PV_BLOB_HEADER_BYTES) return PV_ERR_HEADER_SIZE;
    total = rd_u32(blob + PV_BLOB_HDR_TOTAL_SIZE);
    psize = rd_u32(blob + PV_BLOB_HDR_PAYLOAD_SIZE);
    if (total > len) return PV_ERR_TRUNCATED;
    if (total < PV_BLOB_HEADER_BYTES + PV_BLOB_CRC_BYTES || psize != total - PV_BLOB_HEADER_BYTES - PV_BLOB_CRC_BYTES) return PV_ERR_SIZE;
    if (pv_crc32(0u, blob, total - PV_BLOB_CRC_BYTES) != rd_u32(blob + total - PV_BLOB_CRC_BYTES)) return PV_ERR_CRC;
    if (memcmp(blob + PV_BLOB_HDR_ARCH_HASH, arch, 8) != 0) return PV_ERR_ARCH;
    if (psize < PV_BLOB_PAYLOAD_HEAD_BYTES) return PV_ERR_SIZE;
    payload = blob + PV_BLOB_HEADER_BYTES;
    first = rd_u32(payload + PV_BLOB_HEAD_FIRST_LAYER);
    split = rd_u32(payload + PV_BLOB_HEAD_SPLIT);
    if (first >= PV_N_LAYERS || split >= PV_N_LAYERS || (first != 0u && split != 0u)) return PV_ERR_LAYOUT;
    if (as_base) { /* a base: (first 0, split > 0) and its prefix id; a full or personal blob is none */
        if (first != 0u || split == 0u || rd_u32(blob + PV_BLOB_HDR_PREFIX_ID) == 0u) return PV_ERR_BASE;
        end = split;
    } else { /* a base blob is no model; a personal one needs this base */
        if (split != 0u) return PV_ERR_BASE;
        if (first != 0u && (s_base.ready != PV_MODEL_READY || first != s_base_split ||
                            rd_u32(blob + PV_BLOB_HDR_PREFIX_ID) != s_base_prefix_id || bits != s_base.act_bits))
            return PV_ERR_BASE;
        end = PV_N_LAYERS;
    }
    if (psize != payload_bytes(first, end)) return PV_ERR_SIZE; /* a base in the old all-layers layout too */
    if (((uintptr_t)(const void *)blob & 3u) != 0u) return PV_ERR_ALIGN;
    if (!is_little_endian()) return PV_ERR_ENDIAN;

    if (rd_u32(payload + PV_BLOB_HEAD_N_LAYERS) != PV_N_LAYERS || rd_u32(payload + PV_BLOB_HEAD_RECORD_SIZE) != PV_BLOB_RECORD_BYTES) return PV_ERR_LAYOUT;
    m->input_scale = rd_f32(payload + PV_BLOB_HEAD_INPUT_SCALE);
    m->input_zero_point = rd_i32(payload + PV_BLOB_HEAD_INPUT_ZP);
    m->out_scale = rd_f32(payload + PV_BLOB_HEAD_LOGIT_SCALE);
    m->out_zero_point = rd_i32(payload + PV_BLOB_HEAD_LOGIT_ZP);
    /* the kernel's input contract: q = u - 128, scale 1/128, zero point 0 */
    if (m->input_scale != 0.0078125f || m->input_zero_point != 0) return PV_ERR_PARAM;
    if (!scale_ok(m->out_scale) || !zp_ok(m->out_zero_point, bits)) return PV_ERR_PARAM;

    prev_scale = m->input_scale;
    prev_zp = m->input_zero_point;
    for (i = 0; i < end; i++) {
        if (i < first) {
            m->layer[i] = s_base.layer[i]; /* the shared prefix: arrays in the base blob */
        } else {
            rc = parse_layer(&m->layer[i], &pv_arch_layers[i], payload, psize, i, first,
                             PV_BLOB_PAYLOAD_HEAD_BYTES + (end - first) * PV_BLOB_RECORD_BYTES, bits, version);
            if (rc != PV_OK) return rc;
        }
        if (m->layer[i].in_scale != prev_scale || m->layer[i].in_zp != prev_zp) return PV_ERR_PARAM;
        prev_scale = m->layer[i].out_scale_layer;
        prev_zp = m->layer[i].out_zp;
    }
    /* the logit is the last layer's output (a base's layers end before it) */
    if (!as_base && (m->out_scale != prev_scale || m->out_zero_point != prev_zp)) return PV_ERR_PARAM;

    memcpy(m->user_id, blob + PV_BLOB_HDR_USER_ID, PV_USER_ID_BYTES);
    m->user_id[PV_USER_ID_BYTES] = '\0';
    m->threshold_logit = rd_f32(blob + PV_BLOB_HDR_THRESHOLD_LOGIT);
    if (!(m->threshold_logit >= -FLT_MAX && m->threshold_logit <= FLT_MAX)) return PV_ERR_PARAM; /* finite */
    /* the smallest integer logit (and sum of two) that the float rule accepts; monotone in q */
    m->threshold_q = act_hi(bits) + 1;
    for (q = act_lo(bits); q <= act_hi(bits); q++) {
        if ((float)(q - m->out_zero_point) * m->out_scale >= m->threshold_logit) {
            m->threshold_q = q;
            break;
        }
    }
    m->threshold_q2 = 2 * act_hi(bits) + 1;
    for (q = 2 * act_lo(bits); q <= 2 * act_hi(bits); q++) {
        if (mean2_of_sum(m, q) >= m->threshold_logit) {
            m->threshold_q2 = q;
            break;
        }
    }
    m->act_bits = bits;
    m->blob = blob;
    m->len = total;
    m->payload = payload;
    m->payload_size = psize;
    m->ready = PV_MODEL_READY;
    return PV_OK;
}

int pv_blob_parse(pv_model_t *m, const uint8_t *blob, uint32_t len) { return parse_blob(m, blob, len, 0); }

int pv_blob_set_base(const uint8_t *blob, uint32_t len) {
    pv_model_t b;
    int rc;
    memset(&s_base, 0, sizeof(s_base));
    s_base_split = s_base_prefix_id = 0u;
    if (blob == NULL) return PV_OK;
    rc = parse_blob(&b, blob, len, 1); /* PV_ERR_BASE for a full or personal blob */
    if (rc != PV_OK) return rc;
    s_base = b;
    s_base_split = rd_u32(blob + PV_BLOB_HEADER_BYTES + PV_BLOB_HEAD_SPLIT);
    s_base_prefix_id = rd_u32(blob + PV_BLOB_HDR_PREFIX_ID);
    return PV_OK;
}

uint32_t pv_blob_base_split(void) { return s_base_split; }

uint32_t pv_blob_base_prefix_id(void) { return s_base_prefix_id; }

float pv_dequantize_logit(const pv_model_t *m, int32_t q) {
    if (m == NULL) return 0.0f;
    return (float)(q - m->out_zero_point) * m->out_scale;
}

int pv_decide(const pv_model_t *m, int32_t q) {
    if (m == NULL || m->ready != PV_MODEL_READY) return 0;
    return q >= m->threshold_q ? 1 : 0;
}

float pv_dequantize_mean2(const pv_model_t *m, int32_t q1, int32_t q2) {
    if (m == NULL) return 0.0f;
    return mean2_of_sum(m, q1 + q2);
}

int pv_decide_mean2(const pv_model_t *m, int32_t q1, int32_t q2) {
    if (m == NULL || m->ready != PV_MODEL_READY) return 0;
    return q1 + q2 >= m->threshold_q2 ? 1 : 0;
}
