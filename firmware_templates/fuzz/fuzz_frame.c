/* libFuzzer target: the frame decoder and the protocol dispatcher (with the real θ store and kernel).
 *
 * Input byte 0 picks the mode:
 *   even: the rest is a raw byte stream fed to pv_proto_rx (decoder, resync, error frames);
 *   odd:  the rest is a list of records [u8 cmd][u8 seq][u16 len LE][len bytes], each sent as a frame
 *         with a correct CRC, so the fuzzer reaches every command handler.
 * Every reply the board sends must itself decode as a good frame (checked here).
 * With PV_FUZZ_BLOB=path, that signed θ (the test key's: the fuzz build trusts it) is committed before the
 * run, so INFER/BENCH reach the kernel.
 * PV_FUZZ_BULK=n (0..2, default 2): images in the board's bulk memory. Every INFER_BULK runs whole
 * inferences (milliseconds each under ASan); n = 0 refuses it, for fast runs over the decoder,
 * dispatcher, store and the streamed stem (INFER chunks still go through the kernel's first layer).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined (see Makefile / run_fuzz.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pv_frame.h"
#include "pv_protocol.h"
#include "pv_store.h"

#define ERASE 4096u
#define REGION (2u * (PV_BLOB_MAX_BYTES + ERASE))
#define BULK_IMAGES 2u

static uint8_t s_flash[REGION];
static uint8_t s_flash_pristine[REGION];
static int s_dirty;
static int8_t s_bulk[BULK_IMAGES * PV_IMAGE_BYTES];
static int8_t s_keep[PV_IMAGE_BYTES];
static pv_store_t s_store;
static pv_store_t s_store_pristine; /* the store right after init on the pristine flash */
static pv_proto_t s_proto;
static pv_board_t s_board;
static pv_flash_t s_fl;
static uint32_t s_ticks;

/* replies are decoded again: a board must never send a broken frame */
static uint8_t s_out_buf[PV_FRAME_BUF_BYTES(PV_FRAME_MAX_PAYLOAD)];
static pv_frame_decoder_t s_out_dec;

static int fl_erase(void *ctx, uint32_t off, uint32_t len) {
    (void)ctx;
    if (off > REGION || len > REGION - off) return -1;
    memset(s_flash + off, 0xFF, len);
    s_dirty = 1;
    return 0;
}

static int fl_write(void *ctx, uint32_t off, const uint8_t *p, uint32_t len) {
    (void)ctx;
    if (off > REGION || len > REGION - off) return -1;
    for (uint32_t i = 0; i < len; i++) s_flash[off + i] &= p[i];
    s_dirty = 1;
    return 0;
}

static void sink(void *ctx, const uint8_t *p, uint32_t n) {
    pv_frame_t f;
    (void)ctx;
    for (uint32_t i = 0; i < n; i++) {
        int st = pv_frame_decoder_push(&s_out_dec, p[i], &f);
        if (st < 0) {
            fprintf(stderr, "board sent a bad frame (status %d)\n", st);
            abort();
        }
    }
}

static uint32_t ticks(void *ctx) {
    (void)ctx;
    return ++s_ticks;
}

static void reset(void *ctx, uint8_t mode, uint8_t code) {
    (void)ctx;
    (void)mode;
    (void)code;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *blob_path = getenv("PV_FUZZ_BLOB");
    (void)argc;
    (void)argv;
    memset(s_flash, 0xFF, sizeof(s_flash));
    memset(&s_fl, 0, sizeof(s_fl));
    s_fl.base = s_flash;
    s_fl.size = REGION;
    s_fl.erase_size = ERASE;
    s_fl.erase = fl_erase;
    s_fl.write = fl_write;
    for (uint32_t i = 0; i < sizeof(s_bulk); i++) s_bulk[i] = (int8_t)(i * 37u);
    if (blob_path != NULL) {
        static uint8_t blob[PV_BLOB_MAX_BYTES];
        FILE *f = fopen(blob_path, "rb");
        size_t n = f ? fread(blob, 1, sizeof(blob), f) : 0;
        if (f) fclose(f);
        pv_store_init(&s_store, &s_fl);
        if (n == 0 || pv_store_write_chunk(&s_store, 0, blob, (uint32_t)n) != 0 || pv_store_commit(&s_store) != 0) {
            fprintf(stderr, "PV_FUZZ_BLOB %s: not a valid θ blob for this firmware\n", blob_path);
            exit(2);
        }
        fprintf(stderr, "fuzz: θ of %u bytes committed\n", (unsigned)n);
    }
    memcpy(s_flash_pristine, s_flash, sizeof(s_flash));
    s_dirty = 0;
    pv_store_init(&s_store_pristine, &s_fl); /* its pointers point into s_flash, restored before use */
    memset(&s_board, 0, sizeof(s_board));
    s_board.send = sink;
    s_board.ticks = ticks;
    s_board.tick_hz = 1000000u;
    s_board.reset = reset;
    s_board.bulk = s_bulk;
    s_board.bulk_bytes = sizeof(s_bulk);
    if (getenv("PV_FUZZ_BULK") != NULL) {
        const long nb = strtol(getenv("PV_FUZZ_BULK"), NULL, 10);
        s_board.bulk_bytes = (uint32_t)(nb < 0 ? 0 : (nb > (long)BULK_IMAGES ? (long)BULK_IMAGES : nb)) * PV_IMAGE_BYTES;
        if (s_board.bulk_bytes == 0u) s_board.bulk = NULL;
        fprintf(stderr, "fuzz: %u bulk images\n", (unsigned)(s_board.bulk_bytes / PV_IMAGE_BYTES));
    }
    s_board.keep_image = s_keep;
    memcpy(s_board.name, "fuzz", 4);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t wire[PV_FRAME_WIRE_MAX(PV_FRAME_MAX_PAYLOAD)];
    if (size == 0) return 0;
    if (s_dirty) {
        memcpy(s_flash, s_flash_pristine, sizeof(s_flash));
        s_dirty = 0;
    }
    s_store = s_store_pristine; /* same as pv_store_init on the pristine flash, without its CRC pass */
    if (pv_proto_init(&s_proto, &s_board, &s_store) != 0) abort();
    pv_frame_decoder_init(&s_out_dec, s_out_buf, sizeof(s_out_buf), PV_FRAME_MAX_PAYLOAD);
    if ((data[0] & 1u) == 0) {
        pv_proto_rx(&s_proto, data + 1, (uint32_t)(size - 1));
        return 0;
    }
    for (size_t i = 1; i + 4 <= size;) {
        uint8_t cmd = data[i], seq = data[i + 1];
        uint32_t len = (uint32_t)data[i + 2] | ((uint32_t)data[i + 3] << 8);
        uint32_t n;
        i += 4;
        if (len > size - i) len = (uint32_t)(size - i);
        if (len > PV_FRAME_MAX_PAYLOAD) len = PV_FRAME_MAX_PAYLOAD;
        n = pv_frame_encode(cmd, seq, data + i, (uint16_t)len, wire, sizeof(wire));
        if (n == 0) abort(); /* a payload within limits must always encode */
        pv_proto_rx(&s_proto, wire, n);
        i += len;
    }
    return 0;
}
