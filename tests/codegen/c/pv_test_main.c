/* Host test driver of the C kernel (built by tests/codegen/conftest.py from firmware_templates/common/sources.mk):
 *   pv_test parse BLOB               print "<status name> <threshold_q> <user_id>"
 *   pv_test parse-misaligned BLOB    parse a copy of BLOB at an odd address (expects PV_ERR_ALIGN)
 *   pv_test infer BLOB IMAGES OUT [LAYERS]
 *   pv_test stream BLOB IMAGES OUT [LAYERS]  the same through pv_stream_feed, in chunks of 1000 bytes
 *                                    (bands split across chunks)
 *   pv_test rows BLOB IMAGES OUT     the same through pv_stream_rows, one whole band at a time
 *   pv_test crc FILE                 print pv_crc32 of FILE (computed in two chunks) as 8 hex digits
 *   pv_test arena                    print pv_kernel_arena_size(), PV_KERNEL_ARENA_BYTES,
 *                                    pv_kernel16_arena_size() and PV_KERNEL16_ARENA_BYTES
 *   pv_test invsqrt IN OUT           IN int32 accs -> OUT (mult, shift) int32 pairs of pv_inv_sqrt_mult_exp
 *   pv_test qratio IN OUT            IN float32 (num, den) pairs -> OUT (mult, shift) of pv_quantize_scale_ratio
 *   pv_test l2norm8 IN OUT DEPTH ZP  IN int8 rows of DEPTH values -> OUT int8, pv_l2norm_s8 in place
 *   pv_test l2norm16 IN OUT DEPTH MULT SHIFT
 *                                    IN int16 rows -> OUT int16, pv_l2norm_s16 (zero point 0) in place
 * IMAGES: raw uint8 RGB, N * PV_INPUT_BYTES; OUT: N logits, int8 for an int8 blob, int16 (little-endian) for
 * a 16x8 blob (format version 3); LAYERS: every layer's output bytes (int8 values; int16 for a 16x8 blob
 * and for an exact-sum pool's sums), image after image, layer after layer. Exit 0 on success, 1 on
 * usage/IO errors, 2 on kernel errors. Environment PV_TEST_BASE=FILE: a base blob set with
 * pv_blob_set_base first (personal blobs). */
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pv_arch.h"
#include "pv_blob.h"
#include "pv_crc32.h"
#include "pv_kernel.h"

#define BLOB_CAP (PV_BLOB_BYTES + 4096u)

static union {
    uint32_t align_;
    uint8_t b[BLOB_CAP + 8u];
} s_blob;
static union {
    uint32_t align_;
    uint8_t b[PV_STREAM_ARENA_BYTES];
} s_arena;
static union {
    uint32_t align_;
    uint8_t b[BLOB_CAP + 8u];
} s_base;
static uint8_t s_u8[PV_INPUT_BYTES];
static int8_t s_img[PV_INPUT_BYTES];
static pv_model_t s_model;

static long read_file(const char *path, uint8_t *buf, uint32_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) return -1;
    n = fread(buf, 1, cap, f);
    if (fgetc(f) != EOF) n = (size_t)cap + 1u; /* too big */
    fclose(f);
    return (long)n;
}

/* The hook gives a streamed layer's output row by row, interleaved with the other streamed layers' rows:
 * collect every layer's bytes in place (s_lay, layer after layer) and write the image's record once done. */
#define LAYERS_BYTES 262144u
static union {
    uint32_t align_;
    uint8_t b[LAYERS_BYTES];
} s_lay_u; /* word-aligned: the operator tests read int32 and float arrays from it */
#define s_lay s_lay_u.b
static uint32_t s_lay_fill[PV_N_LAYERS];

static uint32_t layer_bytes(uint32_t layer) {
    const pv_layer_desc_t *d = &pv_arch_layers[layer];
    const uint32_t wide = s_model.act_bits == 16u || (s_model.layer[layer].flags & PV_FLAG_EXACT_SUM) != 0u;
    return d->out_h * d->out_w * d->out_c * (wide ? 2u : 1u);
}

static uint32_t layer_offset(uint32_t layer) {
    uint32_t i, off = 0u;
    for (i = 0; i < layer; i++) off += layer_bytes(i);
    return off;
}

static void layer_hook(void *ctx, uint32_t layer, const void *out, uint32_t n) {
    const uint32_t off = layer_offset(layer) + s_lay_fill[layer];
    (void)ctx;
    if (s_lay_fill[layer] + n > layer_bytes(layer) || off + n > LAYERS_BYTES) {
        fprintf(stderr, "layer %u: more bytes than its output\n", (unsigned)layer);
        return;
    }
    memcpy(s_lay + off, out, n);
    s_lay_fill[layer] += n;
}

static int write_layers(FILE *fl) {
    const uint32_t n = layer_offset(PV_N_LAYERS);
    uint32_t i;
    for (i = 0; i < PV_N_LAYERS; i++) {
        if (s_lay_fill[i] != layer_bytes(i)) {
            fprintf(stderr, "layer %u: %u of its bytes reached the hook\n", (unsigned)i, (unsigned)s_lay_fill[i]);
            return PV_ERR_ARG;
        }
        s_lay_fill[i] = 0u;
    }
    return fwrite(s_lay, 1, n, fl) == n ? PV_OK : PV_ERR_ARG;
}

/* One image (s_img) through the kernel front: whole, fed in 1000-byte chunks, or band by band. */
static int run_one(const char *mode, FILE *fl, int16_t *logit) {
    pv_layer_hook_t hook = fl != NULL ? layer_hook : NULL;
    pv_stream_t st;
    uint32_t at = 0u;
    int rc;
    if (strcmp(mode, "infer") == 0) return pv_infer_ex(&s_model, s_img, logit, s_arena.b, hook, NULL);
    rc = pv_stream_begin_ex(&st, &s_model, s_arena.b, hook, NULL);
    while (rc == PV_OK && at < PV_INPUT_BYTES) {
        const uint32_t chunk = strcmp(mode, "rows") == 0 ? PV_STREAM_BAND_BYTES : 1000u;
        const uint32_t k = PV_INPUT_BYTES - at < chunk ? PV_INPUT_BYTES - at : chunk;
        rc = strcmp(mode, "rows") == 0 ? pv_stream_rows(&st, s_img + at, k) : pv_stream_feed(&st, s_img + at, k);
        at += k;
    }
    if (rc == PV_OK && pv_stream_received(&st) != PV_INPUT_BYTES) rc = PV_ERR_ARG;
    if (rc == PV_OK) rc = pv_stream_end(&st, logit);
    return rc;
}

static int run(const char *mode, const char *images, const char *out_path, const char *layers_path) {
    FILE *fi = fopen(images, "rb"), *fo = fopen(out_path, "wb"), *fl = NULL;
    int rc = 0;
    uint32_t i;
    if (fi == NULL || fo == NULL) {
        fprintf(stderr, "cannot open %s or %s\n", images, out_path);
        if (fi) fclose(fi);
        if (fo) fclose(fo);
        return 1;
    }
    if (layers_path != NULL && (fl = fopen(layers_path, "wb")) == NULL) {
        fclose(fi);
        fclose(fo);
        return 1;
    }
    while (fread(s_u8, 1, PV_INPUT_BYTES, fi) == PV_INPUT_BYTES) {
        int16_t logit = 0;
        for (i = 0; i < PV_INPUT_BYTES; i++) s_img[i] = (int8_t)((int32_t)s_u8[i] - 128);
        rc = run_one(mode, fl, &logit);
        if (rc == PV_OK && fl != NULL) rc = write_layers(fl);
        if (rc != PV_OK) {
            fprintf(stderr, "inference failed: %s\n", pv_status_name(rc));
            break;
        }
        if (s_model.act_bits == 16u) {
            if (fwrite(&logit, 2, 1, fo) != 1) rc = PV_ERR_ARG;
        } else {
            fputc((uint8_t)logit, fo);
        }
    }
    fclose(fi);
    fclose(fo);
    if (fl) fclose(fl);
    return rc == PV_OK ? 0 : 2;
}

/* The operator tests: an input file through one function of the kernels, in s_lay, to an output file. */
static int run_op(int argc, char **argv) {
    const long n = read_file(argv[2], s_lay, LAYERS_BYTES / 2u);
    uint8_t *out = s_lay + LAYERS_BYTES / 2u;
    long n_out = n;
    FILE *fo;
    int32_t *o32 = (int32_t *)(void *)out;
    long i;
    if (n < 0 || n > (long)(LAYERS_BYTES / 4u)) return 1;
    if (strcmp(argv[1], "invsqrt") == 0) {
        const int32_t *acc = (const int32_t *)(const void *)s_lay;
        for (i = 0; i < n / 4; i++) pv_inv_sqrt_mult_exp(acc[i], &o32[2 * i], &o32[2 * i + 1]);
        n_out = 2 * (n / 4) * 4;
    } else if (strcmp(argv[1], "qratio") == 0) {
        const float *r = (const float *)(const void *)s_lay;
        for (i = 0; i < n / 8; i++) pv_quantize_scale_ratio(r[2 * i], r[2 * i + 1], &o32[2 * i], &o32[2 * i + 1]);
        n_out = (n / 8) * 8;
    } else if ((strcmp(argv[1], "l2norm8") == 0 && argc == 6) ||
               (strcmp(argv[1], "l2norm16") == 0 && argc == 7)) {
        const int wide = argv[1][6] == '1';
        const uint32_t depth = (uint32_t)strtoul(argv[4], NULL, 10);
        pv_layer_desc_t d;
        pv_layer_params_t p;
        int32_t mult = 0, shift = 0;
        memset(&d, 0, sizeof(d));
        memset(&p, 0, sizeof(p));
        if (depth == 0u || n % (long)(depth * (wide ? 2u : 1u)) != 0) return 1;
        d.kind = PV_KIND_L2NORM;
        d.in_h = d.out_h = (uint32_t)(n / (long)(depth * (wide ? 2u : 1u)));
        d.in_w = d.out_w = 1u;
        d.in_c = d.out_c = depth;
        p.n_quant = 1u;
        if (wide) {
            mult = (int32_t)strtol(argv[5], NULL, 10);
            shift = (int32_t)strtol(argv[6], NULL, 10);
        } else {
            p.in_zp = (int32_t)strtol(argv[5], NULL, 10);
        }
        p.mult = &mult;
        p.shift = &shift;
        memcpy(out, s_lay, (size_t)n); /* in place, as the kernel front runs it */
        if (wide)
            pv_l2norm_s16(&d, &p, (const int16_t *)(const void *)out, (int16_t *)(void *)out);
        else
            pv_l2norm_s8(&d, &p, (const int8_t *)out, (int8_t *)out);
    } else {
        return 1;
    }
    fo = fopen(argv[3], "wb");
    if (fo == NULL) return 1;
    if (fwrite(out, 1, (size_t)n_out, fo) != (size_t)n_out) n_out = -1;
    fclose(fo);
    return n_out < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    long n;
    int rc;
    if (argc >= 4 && (strcmp(argv[1], "invsqrt") == 0 || strcmp(argv[1], "qratio") == 0 ||
                      strncmp(argv[1], "l2norm", 6) == 0))
        return run_op(argc, argv);
    if (argc == 2 && strcmp(argv[1], "arena") == 0) {
        printf("%lu %lu %lu %lu\n", (unsigned long)pv_kernel_arena_size(), (unsigned long)PV_KERNEL_ARENA_BYTES,
               (unsigned long)pv_kernel16_arena_size(), (unsigned long)PV_KERNEL16_ARENA_BYTES);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: %s arena | crc|parse|parse-misaligned|infer|stream|rows BLOB [IMAGES OUT [LAYERS]]\n", argv[0]);
        return 1;
    }
    n = read_file(argv[2], s_blob.b, BLOB_CAP);
    if (n < 0 || n > (long)BLOB_CAP) {
        fprintf(stderr, "cannot read %s (or larger than %u bytes)\n", argv[2], (unsigned)BLOB_CAP);
        return 1;
    }
    if (getenv("PV_TEST_BASE") != NULL) {
        const long nb = read_file(getenv("PV_TEST_BASE"), s_base.b, BLOB_CAP);
        if (nb < 0 || nb > (long)BLOB_CAP) return 1;
        rc = pv_blob_set_base(s_base.b, (uint32_t)nb);
        if (rc != PV_OK) {
            printf("base %s\n", pv_status_name(rc));
            return 2;
        }
    }
    if (strcmp(argv[1], "crc") == 0) {
        const uint32_t half = (uint32_t)n / 2u;
        printf("%08lx\n", (unsigned long)pv_crc32(pv_crc32(0u, s_blob.b, half), s_blob.b + half, (uint32_t)n - half));
        return 0;
    }
    if (strcmp(argv[1], "parse-misaligned") == 0) {
        memmove(s_blob.b + 1, s_blob.b, (size_t)n);
        rc = pv_blob_parse(&s_model, s_blob.b + 1, (uint32_t)n);
    } else {
        rc = pv_blob_parse(&s_model, s_blob.b, (uint32_t)n);
    }
    if (strncmp(argv[1], "parse", 5) == 0) {
        printf("%s %d %s\n", pv_status_name(rc), (int)s_model.threshold_q, s_model.user_id);
        return 0;
    }
    if (rc != PV_OK) {
        fprintf(stderr, "blob refused: %s\n", pv_status_name(rc));
        return 2;
    }
    if (argc < 5) return 1;
    return run(argv[1], argv[3], argv[4], argc > 5 ? argv[5] : NULL);
}
