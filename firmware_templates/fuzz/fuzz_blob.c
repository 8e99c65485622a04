/* libFuzzer target: the θ blob parser (pv_blob_parse) and, for every blob it accepts, one inference on a
 * fixed image through the kernels the blob selects (int8 or 16x8): the parser must refuse whatever the
 * kernels' arithmetic is not free of undefined behaviour for (pvcore/qtheta.py, the parameter bounds).
 *
 * Input byte 0 picks the mode (the seeds, made by make_blob_seeds.py, are real blobs from the quantizer):
 *   0: the rest is a blob; its CRC is recomputed here when its total_size fits, so mutations reach the
 *      checks behind the CRC (sizes, layout, every parameter);
 *   1: the rest is a blob, as is (the CRC check itself);
 *   2: the rest is a list of patches [u32 offset LE][u32 value LE] written into the built-in real blob
 *      (PV_FUZZ_BLOB, offset modulo its size), CRC recomputed: reaches one extreme parameter at a time
 *      in an otherwise valid blob.
 * Every accepted blob also gets the decision rule (threshold_q, pv_decide) on its logit.
 * In front of that, every input (after byte 0) also goes to the signed envelope's parser (pv_sign.h:
 * pv_envelope_header), and where it is a well-formed envelope, to the Ed25519 check itself with its key id
 * set to the trusted key's: the check must refuse it (a success would be a forged signature). The blob
 * parser is fuzzed directly, so the signature in front of it on a board does not shield it from the fuzzer.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all (Makefile; run_fuzz.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pv_blob.h"
#include "pv_crc32.h"
#include "pv_kernel.h"
#include "pv_sign.h"

#define BLOB_CAP (PV_BLOB_BYTES + 64u)

static uint8_t s_blob[BLOB_CAP] __attribute__((aligned(8)));
static uint8_t s_base[BLOB_CAP] __attribute__((aligned(8))); /* PV_FUZZ_BLOB, mode 2's starting point */
static uint32_t s_base_len;
static uint8_t s_arena[PV_STREAM_ARENA_BYTES] __attribute__((aligned(8)));
static int8_t s_image[PV_INPUT_BYTES];
static uint8_t s_env[BLOB_CAP + PV_SIGNED_OVERHEAD] __attribute__((aligned(8)));

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* a valid CRC where the header's total_size lies inside the n bytes */
static void fix_crc(uint8_t *b, uint32_t n) {
    uint32_t total;
    if (n < PV_BLOB_HEADER_BYTES + PV_BLOB_CRC_BYTES) return;
    total = rd32(b + PV_BLOB_HDR_TOTAL_SIZE);
    if (total < PV_BLOB_CRC_BYTES || total > n) return;
    wr32(b + total - PV_BLOB_CRC_BYTES, pv_crc32(0u, b, total - PV_BLOB_CRC_BYTES));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("PV_FUZZ_BLOB");
    uint32_t i;
    (void)argc;
    (void)argv;
    for (i = 0; i < PV_INPUT_BYTES; i++) s_image[i] = (int8_t)(uint8_t)(i * 97u + (i >> 7)); /* all 256 values */
    if (path != NULL) {
        FILE *f = fopen(path, "rb");
        pv_model_t m;
        s_base_len = f ? (uint32_t)fread(s_base, 1, sizeof(s_base), f) : 0u;
        if (f) fclose(f);
        if (pv_blob_parse(&m, s_base, s_base_len) != PV_OK) {
            fprintf(stderr, "PV_FUZZ_BLOB %s: not a θ blob this build accepts\n", path);
            exit(2);
        }
    }
    return 0;
}

/* The envelope parser on p, then the signature check under the trusted key's id: never accepted. */
static void check_envelope(const uint8_t *p, size_t size) {
    pv_envelope_t e;
    const uint32_t n = size > sizeof(s_env) ? (uint32_t)sizeof(s_env) : (uint32_t)size;
    int rc;
    memcpy(s_env, p, n);
    rc = pv_envelope_header(&e, s_env, n);
    if (rc != PV_SIGN_OK && rc != PV_SIGN_ERR_KEY) return;
    if (e.total > n) return;
    memcpy(s_env + PV_SIGNED_HDR_KEY_ID, pv_trusted_keys[0].key_id, PV_KEY_ID_BYTES);
    rc = pv_envelope_verify(&e, s_env, n);
    if (rc == PV_SIGN_OK) abort(); /* the fuzzer forged a signature of the trusted key */
    if (rc != PV_SIGN_ERR_SIGNATURE) abort(); /* the header checked out above: only the signature can fail */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pv_model_t m;
    uint32_t n;
    int16_t logit = 0;
    int rc;
    if (size < 1u) return 0;
    check_envelope(data + 1, size - 1u);
    if (data[0] % 3u == 2u) {
        size_t i;
        if (s_base_len == 0u) return 0;
        memcpy(s_blob, s_base, s_base_len);
        n = s_base_len;
        for (i = 1; i + 8u <= size; i += 8u) {
            const uint32_t off = (rd32(data + i) % (n / 4u)) * 4u; /* word-aligned, as every field is */
            memcpy(s_blob + off, data + i + 4u, 4u);
        }
        fix_crc(s_blob, n);
    } else {
        n = size - 1u > BLOB_CAP ? BLOB_CAP : (uint32_t)(size - 1u);
        memcpy(s_blob, data + 1, n);
        if (data[0] % 3u == 0u) fix_crc(s_blob, n);
    }
    rc = pv_blob_parse(&m, s_blob, n);
    if (rc != PV_OK) {
        if (m.ready == PV_MODEL_READY) abort(); /* a refused blob must leave the model unusable */
        return 0;
    }
    rc = pv_infer(&m, s_image, &logit, s_arena);
    if (rc != PV_OK) abort(); /* every blob the parser accepts must run */
    if (logit < (m.act_bits == 16u ? -32768 : -128) || logit > (m.act_bits == 16u ? 32767 : 127)) abort();
    (void)pv_decide(&m, logit);
    (void)pv_dequantize_logit(&m, logit);
    return 0;
}
