/* Host test driver of the C kernel (built by tests/codegen/test_c_kernel.py):
 *   pv_test parse BLOB               print "<status name> <threshold_q> <user_id>"
 *   pv_test parse-misaligned BLOB    parse a copy of BLOB at an odd address (expects PV_ERR_ALIGN)
 *   pv_test infer BLOB IMAGES OUT [LAYERS]
 *   pv_test stream BLOB IMAGES OUT   the same through the input-row streaming API
 *   pv_test crc FILE                 print pv_crc32 of FILE (computed in two chunks) as 8 hex digits
 *   pv_test arena                    print pv_kernel_arena_size(), PV_KERNEL_ARENA_BYTES,
 *                                    pv_kernel16_arena_size() and PV_KERNEL16_ARENA_BYTES
 * IMAGES: raw uint8 RGB, N * PV_INPUT_BYTES; OUT: N int8 logits; LAYERS: every layer's int8 output,
 * image after image, layer after layer. A 16x8 blob (format version 3) runs pv_kernel16 instead: OUT and
 * LAYERS then hold int16 values (little-endian), and "stream" feeds the image in chunks of 1000 bytes
 * (bands split across chunks). Exit 0 on success, 1 on usage/IO errors, 2 on kernel errors.
 * Environment PV_TEST_BASE=FILE: a base blob set with pv_blob_set_base first (personal blobs);
 * PV_TEST_KERNEL=8 or 16: run that kernel whatever the model (to test that each refuses the other's). */
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pv_arch.h"
#include "pv_blob.h"
#include "pv_crc32.h"
#include "pv_kernel.h"
#include "pv_kernel16.h"

#define BLOB_CAP (PV_BLOB_BYTES + 4096u)

static union {
    uint32_t align_;
    uint8_t b[BLOB_CAP + 8u];
} s_blob;
static union {
    uint32_t align_;
    uint8_t b[PV_KERNEL_ARENA_BYTES];
} s_arena;
static union {
    uint32_t align_;
    uint8_t b[BLOB_CAP + 8u];
} s_base;
static union {
    uint32_t align_;
    uint8_t b[PV_KERNEL16_ARENA_BYTES];
} s_arena16;
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

static void layer_hook(void *ctx, uint32_t layer, const int8_t *out, uint32_t n) {
    (void)layer;
    if (fwrite(out, 1, n, (FILE *)ctx) != n) fprintf(stderr, "short write of layer %u\n", (unsigned)layer);
}

/* The 16x8 kernel's hook gives the streamed layers' outputs row by row, interleaved: collect every layer's
 * values in place (s_lay16, layer after layer) and write the image's whole record once it is done. */
#define LAYERS16_VALUES 131072u
static int16_t s_lay16[LAYERS16_VALUES];
static uint32_t s_lay16_fill[PV_N_LAYERS];

static uint32_t layer16_offset(uint32_t layer) {
    uint32_t i, off = 0u;
    for (i = 0; i < layer; i++) off += pv_arch_layers[i].out_h * pv_arch_layers[i].out_w * pv_arch_layers[i].out_c;
    return off;
}

static void layer16_hook(void *ctx, uint32_t layer, const int16_t *out, uint32_t n) {
    const pv_layer_desc_t *d = &pv_arch_layers[layer];
    const uint32_t off = layer16_offset(layer) + s_lay16_fill[layer];
    (void)ctx;
    if (s_lay16_fill[layer] + n > d->out_h * d->out_w * d->out_c || off + n > LAYERS16_VALUES) {
        fprintf(stderr, "layer %u: more values than its output\n", (unsigned)layer);
        return;
    }
    memcpy(s_lay16 + off, out, 2u * n);
    s_lay16_fill[layer] += n;
}

static int write_layers16(FILE *fl) {
    const uint32_t n = layer16_offset(PV_N_LAYERS);
    uint32_t i;
    for (i = 0; i < PV_N_LAYERS; i++) {
        const pv_layer_desc_t *d = &pv_arch_layers[i];
        if (s_lay16_fill[i] != d->out_h * d->out_w * d->out_c) {
            fprintf(stderr, "layer %u: %u of its values reached the hook\n", (unsigned)i, (unsigned)s_lay16_fill[i]);
            return PV_ERR_ARG;
        }
        s_lay16_fill[i] = 0u;
    }
    return fwrite(s_lay16, 2, n, fl) == n ? PV_OK : PV_ERR_ARG;
}

/* One image through the 16x8 kernel, whole or streamed in 1000-byte chunks. */
static int run16(const char *mode, FILE *fo, FILE *fl) {
    int16_t logit = 0;
    int rc;
    if (strcmp(mode, "stream") == 0) {
        pv_stream16_t st;
        uint32_t at = 0u;
        rc = pv_stream16_begin_ex(&st, &s_model, s_arena16.b, fl ? layer16_hook : NULL, NULL);
        while (rc == PV_OK && at < PV_INPUT_BYTES) {
            const uint32_t k = PV_INPUT_BYTES - at < 1000u ? PV_INPUT_BYTES - at : 1000u;
            rc = pv_stream16_feed(&st, s_img + at, k);
            at += k;
        }
        if (rc == PV_OK && pv_stream16_received(&st) != PV_INPUT_BYTES) rc = PV_ERR_ARG;
        if (rc == PV_OK) rc = pv_stream16_end(&st, &logit);
    } else {
        rc = pv_infer16_ex(&s_model, s_img, &logit, s_arena16.b, fl ? layer16_hook : NULL, NULL);
    }
    if (rc == PV_OK && fl != NULL) rc = write_layers16(fl);
    if (rc == PV_OK && fwrite(&logit, 2, 1, fo) != 1) rc = PV_ERR_ARG;
    return rc;
}

static int run(const char *mode, const char *images, const char *out_path, const char *layers_path) {
    FILE *fi = fopen(images, "rb"), *fo = fopen(out_path, "wb"), *fl = NULL;
    int rc = 0;
    uint32_t i, b;
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
        int8_t logit = 0;
        for (i = 0; i < PV_INPUT_BYTES; i++) s_img[i] = (int8_t)((int32_t)s_u8[i] - 128);
        if (getenv("PV_TEST_KERNEL") != NULL ? strcmp(getenv("PV_TEST_KERNEL"), "16") == 0 : s_model.act_bits == 16u) {
            rc = run16(mode, fo, fl);
            if (rc != PV_OK) {
                fprintf(stderr, "inference failed: %s\n", pv_status_name(rc));
                break;
            }
            continue;
        }
        if (strcmp(mode, "stream") == 0) {
            pv_stream_t st;
            rc = pv_stream_begin(&st, &s_model, s_arena.b);
            for (b = 0; rc == PV_OK && b < PV_STREAM_BANDS; b++)
                rc = pv_stream_rows(&st, s_img + (size_t)b * PV_STREAM_BAND_BYTES, PV_STREAM_BAND_BYTES);
            if (rc == PV_OK) rc = pv_stream_end(&st, &logit);
        } else {
            rc = pv_infer_ex(&s_model, s_img, &logit, s_arena.b, fl ? layer_hook : NULL, fl);
        }
        if (rc != PV_OK) {
            fprintf(stderr, "inference failed: %s\n", pv_status_name(rc));
            break;
        }
        fputc((uint8_t)logit, fo);
    }
    fclose(fi);
    fclose(fo);
    if (fl) fclose(fl);
    return rc == PV_OK ? 0 : 2;
}

int main(int argc, char **argv) {
    long n;
    int rc;
    if (argc == 2 && strcmp(argv[1], "arena") == 0) {
        printf("%lu %lu %lu %lu\n", (unsigned long)pv_kernel_arena_size(), (unsigned long)PV_KERNEL_ARENA_BYTES,
               (unsigned long)pv_kernel16_arena_size(), (unsigned long)PV_KERNEL16_ARENA_BYTES);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: %s arena | crc|parse|parse-misaligned|infer|stream BLOB [IMAGES OUT [LAYERS]]\n", argv[0]);
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
