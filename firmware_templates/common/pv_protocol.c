/* pv_protocol: command handler. See pv_protocol.h and firmware_templates/README.md. */
#include "pv_protocol.h"

#include <math.h>
#include <string.h>

#include "pv_arch.h"
#include "pv_blob.h"
#include "pv_crc32.h"
#include "pv_kernel.h"

typedef char pv_views_is_1_or_2[(PV_VIEWS == 1u || PV_VIEWS == 2u) ? 1 : -1];

#define BENCH_MAX 100000u

/* Static buffers: the frame being received and the kernel's arena (activations in place + scratch; the
 * image streams through it); with two views a second arena, through which the mirrored image streams
 * at the same time. */
static uint8_t s_rx_buf[PV_FRAME_BUF_BYTES(PV_FRAME_MAX_PAYLOAD)];
static union {
    uint8_t b[PV_STREAM_ARENA_BYTES];
    uint64_t align_;
} s_arena;
#if PV_VIEWS == 2
static union {
    uint8_t b[PV_KERNEL_ARENA_BYTES]; /* int8 only: a 16x8 model runs one view */
    uint64_t align_;
} s_arena_m;
#endif

/* The committed model is a 16x8 one, which runs with one view. */
static int model16(const pv_proto_t *p) { return p->store->model.act_bits == 16u; }

/* ---- replies ---------------------------------------------------------------------------------------- */
static void tx_sink(void *ctx, const uint8_t *b, uint32_t n) {
    pv_proto_t *p = (pv_proto_t *)ctx;
    p->board.send(p->board.ctx, b, n);
    p->tx_bytes += n;
}

static void send_frame(pv_proto_t *p, uint8_t cmd, uint8_t seq, const uint8_t *payload, uint16_t len) {
    pv_frame_encoder_t e;
    pv_frame_encoder_begin(&e, tx_sink, p, cmd, seq, len);
    if (len > 0) pv_frame_encoder_put(&e, payload, len);
    pv_frame_encoder_end(&e);
}

static void reply(pv_proto_t *p, const pv_frame_t *req, uint8_t cmd, const uint8_t *payload, uint16_t len) {
    send_frame(p, cmd, req->seq, payload, len);
    if (p->cur_cacheable && len <= PV_CACHE_BYTES) {
        p->cache_valid = 1;
        p->cache_seq = req->seq;
        p->cache_cmd = req->cmd;
        p->cache_req_crc = p->cur_req_crc;
        p->cache_reply_cmd = cmd;
        p->cache_len = len;
        if (len > 0) memcpy(p->cache, payload, len);
    } else {
        p->cache_valid = 0;
    }
}

static void reply_ok(pv_proto_t *p, const pv_frame_t *req, const uint8_t *payload, uint16_t len) {
    reply(p, req, (uint8_t)(req->cmd | PV_REPLY), payload, len);
}

static void reply_err(pv_proto_t *p, const pv_frame_t *req, uint8_t code, int32_t detail) {
    uint8_t b[8];
    b[0] = code;
    b[1] = req->cmd;
    b[2] = 0;
    b[3] = 0;
    pv_wr32(b + 4, (uint32_t)detail);
    reply(p, req, PV_CMD_ERROR, b, sizeof(b));
}

static void frame_error(pv_proto_t *p, int status, const pv_frame_t *f) {
    uint8_t b[8];
    b[0] = (status == PV_FRAME_ERR_CRC || status == PV_FRAME_ERR_COBS) ? PV_E_BAD_CRC : PV_E_BAD_LENGTH;
    b[1] = f->cmd;
    b[2] = PV_ERRF_FRAME;
    b[3] = 0;
    pv_wr32(b + 4, (uint32_t)(int32_t)status);
    send_frame(p, PV_CMD_ERROR, f->seq, b, sizeof(b)); /* not cached: a bad frame changes nothing */
}

/* ---- INFO ------------------------------------------------------------------------------------------- */
static void build_info(pv_proto_t *p, uint8_t out[PV_INFO_BYTES]) {
    static const uint8_t arch[] = PV_ARCH_HASH_INIT;
    char user[33];
    float thr = 0.0f;
    uint32_t blob_len = 0;
    uint8_t flags = 0;
    pv_store_t *s = p->store;
    memset(out, 0, PV_INFO_BYTES);
    out[PV_INFO_OFF_PROTO_VERSION] = PV_PROTO_VERSION;
    out[PV_INFO_OFF_FW_MAJOR] = PV_FW_VERSION_MAJOR;
    out[PV_INFO_OFF_FW_MINOR] = PV_FW_VERSION_MINOR;
    out[PV_INFO_OFF_FW_PATCH] = PV_FW_VERSION_PATCH;
    memcpy(out + PV_INFO_OFF_ARCH_HASH, arch, PV_INFO_LEN_ARCH_HASH);
    out[PV_INFO_OFF_ACTIVE_SLOT] = s->active;
    if (p->board.bulk != NULL && p->board.bulk_bytes >= PV_IMAGE_BYTES) flags |= PV_INFO_FLAG_BULK;
    if (s->xfer_open) flags |= PV_INFO_FLAG_XFER_OPEN;
    if (PV_VIEWS == 2u) flags |= PV_INFO_FLAG_MIRROR;
    if (pv_blob_version_supported(PV_BLOB_FORMAT_VERSION_16X8)) flags |= PV_INFO_FLAG_RUNS_16X8;
    out[PV_INFO_OFF_FLAGS] = flags;
    pv_wr16(out + PV_INFO_OFF_MAX_PAYLOAD, (uint16_t)p->dec.max_payload);
    pv_wr32(out + PV_INFO_OFF_COMMIT_COUNTER, s->counter);
    pv_store_active_user(s, user, &thr);
    memcpy(out + PV_INFO_OFF_USER_ID, user, PV_INFO_LEN_USER_ID);
    memcpy(out + PV_INFO_OFF_THRESHOLD_LOGIT, &thr, 4);
    (void)pv_store_active_blob(s, &blob_len);
    pv_wr32(out + PV_INFO_OFF_THETA_BYTES, blob_len);
    pv_wr32(out + PV_INFO_OFF_FREE_RAM, p->board.free_ram);
    pv_wr32(out + PV_INFO_OFF_ARENA_BYTES, PV_KERNEL_ARENA_IN_USE(PV_VIEWS));
    pv_wr32(out + PV_INFO_OFF_IMAGE_BYTES, PV_IMAGE_BYTES);
    pv_wr32(out + PV_INFO_OFF_TICK_HZ, p->board.tick_hz);
    pv_wr32(out + PV_INFO_OFF_BULK_IMAGES, p->board.bulk != NULL ? p->board.bulk_bytes / PV_IMAGE_BYTES : 0u);
    pv_wr32(out + PV_INFO_OFF_TRANSFER_RECEIVED, s->xfer_received);
    pv_wr32(out + PV_INFO_OFF_FRAMES_OK, p->dec.frames_ok);
    pv_wr32(out + PV_INFO_OFF_FRAMES_BAD, p->dec.frames_bad);
    memcpy(out + PV_INFO_OFF_BOARD, p->board.name, PV_INFO_LEN_BOARD);
    pv_wr32(out + PV_INFO_OFF_STACK_USED, p->board.stack_used != NULL ? p->board.stack_used(p->board.ctx) : 0u);
    pv_wr32(out + PV_INFO_OFF_STATIC_RAM, p->board.static_ram);
}

/* ---- inference -------------------------------------------------------------------------------------- */
typedef struct {
    int16_t q;        /* the logit: int8, or int16 for a 16x8 model (is16, one view) */
    int16_t q_mirror; /* PV_VIEWS 2, an int8 model: the mirror view's logit */
    uint8_t is16;
    uint8_t decision;
    float real;
    float score;
    uint32_t ticks;
} infer_result_t;

static uint32_t tick_edge(pv_proto_t *p) {
    uint32_t t0 = p->board.ticks(p->board.ctx), t;
    for (uint32_t i = 0; i < 100000u; i++) { /* bounded: a stopped timer must not hang the board */
        t = p->board.ticks(p->board.ctx);
        if (t != t0) return t;
    }
    return t0;
}

static void fill_result(const pv_model_t *m, infer_result_t *r) {
    if (PV_VIEWS == 2u && !r->is16) {
        r->real = pv_dequantize_mean2(m, r->q, r->q_mirror);
        r->decision = pv_decide_mean2(m, r->q, r->q_mirror) ? 1u : 0u;
    } else {
        r->real = pv_dequantize_logit(m, r->q);
        r->decision = pv_decide(m, r->q) ? 1u : 0u;
    }
    r->score = 1.0f / (1.0f + expf(-r->real));
}

#if PV_VIEWS == 2
/* Reverses the pixel order of one image row in place (the channels of a pixel keep their order). */
static void mirror_row(int8_t *row) {
    for (uint32_t a = 0, b = PV_ROW_BYTES - PV_INPUT_C; a < b; a += PV_INPUT_C, b -= PV_INPUT_C) {
        for (uint32_t c = 0; c < PV_INPUT_C; c++) {
            int8_t t = row[a + c];
            row[a + c] = row[b + c];
            row[b + c] = t;
        }
    }
}

/* Feeds n more image bytes to the mirror stream: row by row, each reversed once it is complete. */
static int feed_mirror(pv_proto_t *p, const int8_t *d, uint32_t n) {
    while (n > 0) {
        uint32_t k = PV_ROW_BYTES - p->row_fill;
        if (k > n) k = n;
        memcpy(p->row + p->row_fill, d, k);
        p->row_fill += k;
        d += k;
        n -= k;
        if (p->row_fill == PV_ROW_BYTES) {
            int rc;
            p->row_fill = 0;
            mirror_row(p->row);
            rc = pv_stream_feed(&p->stream_m, p->row, PV_ROW_BYTES);
            if (rc != PV_OK) return rc;
        }
    }
    return PV_OK;
}

/* The mirror view of a whole image in memory. */
static int infer_mirror(pv_proto_t *p, const int8_t *img, int16_t *q) {
    int rc = pv_stream_begin(&p->stream_m, &p->store->model, s_arena_m.b);
    p->row_fill = 0;
    if (rc == PV_OK) rc = feed_mirror(p, img, PV_IMAGE_BYTES);
    if (rc == PV_OK) rc = pv_stream_end(&p->stream_m, q);
    return rc;
}
#endif

/* A whole image in memory (BENCH, INFER_BULK); ends any INFER being streamed (the arena is shared). */
static int run_infer(pv_proto_t *p, const int8_t *img, infer_result_t *r) {
    const pv_model_t *m = &p->store->model;
    uint32_t t0, t1;
    int rc;
    p->img_received = 0;
    r->is16 = (uint8_t)model16(p);
    t0 = tick_edge(p);
    rc = pv_infer(m, img, &r->q, s_arena.b);
#if PV_VIEWS == 2
    if (rc == PV_OK && !r->is16) rc = infer_mirror(p, img, &r->q_mirror);
#endif
    t1 = p->board.ticks(p->board.ctx);
    r->ticks = t1 - t0;
    if (rc != 0) return rc;
    fill_result(m, r);
    return 0;
}

static void put_result(uint8_t *b, const infer_result_t *r) { /* PV_RESULT_BYTES */
    b[PV_RESULT_OFF_DECISION] = r->decision;
    b[PV_RESULT_OFF_LOGIT] = (uint8_t)((uint16_t)r->q & 0xFFu);
    if (r->is16) {
        b[PV_RESULT_OFF_FLAGS] = PV_RESULT_LOGIT16;
        b[PV_RESULT_OFF_LOGIT_B] = (uint8_t)((uint16_t)r->q >> 8);
    } else {
        b[PV_RESULT_OFF_FLAGS] = PV_VIEWS == 2u ? PV_RESULT_MIRROR : 0u;
        b[PV_RESULT_OFF_LOGIT_B] = PV_VIEWS == 2u ? (uint8_t)r->q_mirror : 0u;
    }
    memcpy(b + PV_RESULT_OFF_LOGIT_REAL, &r->real, 4);
    memcpy(b + PV_RESULT_OFF_SCORE, &r->score, 4);
    pv_wr32(b + PV_RESULT_OFF_TICKS, r->ticks);
}

/* ---- commands --------------------------------------------------------------------------------------- */
static uint8_t store_err_code(int rc) {
    switch (rc) {
        case PV_STORE_ERR_ARCH: return PV_E_ARCH_MISMATCH;
        case PV_STORE_ERR_STATE: return PV_E_BAD_STATE;
        case PV_STORE_ERR_SIZE: return PV_E_BAD_LENGTH;
        case PV_STORE_ERR_FLASH: return PV_E_STORE;
        case PV_STORE_ERR_MISMATCH: return PV_E_BAD_STATE;
        case PV_STORE_ERR_UNSIGNED: return PV_E_UNSIGNED;
        case PV_STORE_ERR_KEY: return PV_E_UNTRUSTED_KEY;
        case PV_STORE_ERR_SIGNATURE: return PV_E_BAD_SIGNATURE;
        case PV_STORE_ERR_REPLAY: return PV_E_REPLAY;
        default: return PV_E_BLOB_INVALID; /* HEADER, CRC, BLOB, ARG */
    }
}

static void cmd_info(pv_proto_t *p, const pv_frame_t *f) {
    uint8_t b[PV_INFO_BYTES];
    if (f->len != 0) {
        reply_err(p, f, PV_E_BAD_LENGTH, f->len);
        return;
    }
    build_info(p, b);
    reply_ok(p, f, b, sizeof(b));
}

static void cmd_load_theta(pv_proto_t *p, const pv_frame_t *f) {
    uint8_t b[8];
    uint32_t off;
    int rc;
    if (f->len < 4) {
        reply_err(p, f, PV_E_BAD_LENGTH, f->len);
        return;
    }
    off = pv_rd32(f->payload);
    rc = pv_store_write_chunk(p->store, off, f->payload + 4, (uint32_t)f->len - 4u);
    if (rc != PV_STORE_OK) {
        reply_err(p, f, store_err_code(rc), rc == PV_STORE_ERR_REPLAY ? (int32_t)p->store->theta_counter : rc);
        return;
    }
    pv_wr32(b, p->store->xfer_received);
    pv_wr32(b + 4, p->store->xfer_total);
    reply_ok(p, f, b, sizeof(b));
}

static void cmd_commit(pv_proto_t *p, const pv_frame_t *f) {
    uint8_t b[8];
    int rc;
    if (f->len != 0) {
        reply_err(p, f, PV_E_BAD_LENGTH, f->len);
        return;
    }
    if (!p->store->xfer_open) {
        reply_err(p, f, PV_E_BAD_STATE, PV_STORE_ERR_STATE);
        return;
    }
    if (p->store->xfer_received != p->store->xfer_total) {
        reply_err(p, f, PV_E_BAD_STATE, (int32_t)p->store->xfer_received);
        return;
    }
    p->img_received = 0; /* an image being streamed was set up with the old θ */
    rc = pv_store_commit(p->store);
    if (rc != PV_STORE_OK) {
        reply_err(p, f, store_err_code(rc), rc == PV_STORE_ERR_BLOB     ? p->store->last_blob_err
                                            : rc == PV_STORE_ERR_REPLAY ? (int32_t)p->store->theta_counter
                                                                        : rc);
        return;
    }
    memset(b, 0, sizeof(b));
    b[0] = p->store->active;
    pv_wr32(b + 4, p->store->counter);
    reply_ok(p, f, b, sizeof(b));
}

/* INFER chunks go straight into the kernel (pv_stream_feed): the stem consumes every 4-row band as soon as
 * it is complete. A chunk may repeat bytes already taken (a resend): only the new part is fed. */
static void cmd_infer(pv_proto_t *p, const pv_frame_t *f) {
    uint8_t b[20];
    uint32_t size, off, n, skip, t0;
    infer_result_t r;
    int rc;
    if (f->len < 8) {
        reply_err(p, f, PV_E_BAD_LENGTH, f->len);
        return;
    }
    size = pv_rd32(f->payload);
    off = pv_rd32(f->payload + 4);
    n = (uint32_t)f->len - 8u;
    if (size != PV_IMAGE_BYTES) {
        reply_err(p, f, PV_E_BAD_IMAGE_SIZE, (int32_t)size);
        return;
    }
    if (p->store->active == PV_SLOT_NONE) {
        reply_err(p, f, PV_E_NO_THETA, 0);
        return;
    }
    if (off > PV_IMAGE_BYTES || n > PV_IMAGE_BYTES - off) {
        reply_err(p, f, PV_E_BAD_IMAGE_SIZE, (int32_t)(off + n));
        return;
    }
    if (off == 0) {
        p->img_received = 0;
        p->img_ticks = 0;
        p->img_complete = 0;
        rc = pv_stream_begin(&p->stream, &p->store->model, s_arena.b);
#if PV_VIEWS == 2
        p->row_fill = 0;
        if (rc == PV_OK && !model16(p)) rc = pv_stream_begin(&p->stream_m, &p->store->model, s_arena_m.b);
#endif
        if (rc != PV_OK) {
            reply_err(p, f, PV_E_INFER_FAILED, rc);
            return;
        }
    }
    if (off > p->img_received) {
        reply_err(p, f, PV_E_BAD_STATE, (int32_t)p->img_received);
        return;
    }
    skip = p->img_received - off; /* bytes of this chunk the kernel already has */
    if (n > skip) {
        if (p->board.keep_image != NULL) memcpy(p->board.keep_image + p->img_received, f->payload + 8 + skip, n - skip);
        t0 = p->board.ticks(p->board.ctx);
        rc = pv_stream_feed(&p->stream, (const int8_t *)(f->payload + 8 + skip), n - skip);
#if PV_VIEWS == 2
        if (rc == PV_OK && !model16(p)) rc = feed_mirror(p, (const int8_t *)(f->payload + 8 + skip), n - skip);
#endif
        p->img_ticks += p->board.ticks(p->board.ctx) - t0;
        if (rc != PV_OK) {
            p->img_received = 0;
            reply_err(p, f, PV_E_INFER_FAILED, rc);
            return;
        }
        p->img_received = off + n;
    }
    memset(b, 0, sizeof(b));
    pv_wr32(b + 16, p->img_received);
    if (p->img_received < PV_IMAGE_BYTES || n <= skip) {
        reply_ok(p, f, b, sizeof(b)); /* b[2] = 0: more to come (or a resend of bytes already taken) */
        return;
    }
    t0 = p->board.ticks(p->board.ctx);
    memset(&r, 0, sizeof(r));
    r.is16 = (uint8_t)model16(p);
    rc = pv_stream_end(&p->stream, &r.q);
#if PV_VIEWS == 2
    if (rc == PV_OK && !r.is16) rc = pv_stream_end(&p->stream_m, &r.q_mirror);
#endif
    p->img_ticks += p->board.ticks(p->board.ctx) - t0;
    p->img_received = 0; /* the next image starts at offset 0 */
    if (rc != PV_OK) {
        reply_err(p, f, PV_E_INFER_FAILED, rc);
        return;
    }
    p->img_complete = p->board.keep_image != NULL;
    r.ticks = p->img_ticks;
    fill_result(&p->store->model, &r);
    put_result(b, &r);
    b[2] |= PV_RESULT_DONE;
    pv_wr32(b + 16, PV_IMAGE_BYTES);
    reply_ok(p, f, b, sizeof(b));
}

static void cmd_bench(pv_proto_t *p, const pv_frame_t *f) {
    uint8_t b[24];
    uint32_t n, mn = 0xFFFFFFFFu, mx = 0;
    uint64_t total = 0;
    infer_result_t r;
    if (f->len != 4) {
        reply_err(p, f, PV_E_BAD_LENGTH, f->len);
        return;
    }
    n = pv_rd32(f->payload);
    if (n == 0 || n > BENCH_MAX) {
        reply_err(p, f, PV_E_BAD_ARG, (int32_t)n);
        return;
    }
    if (p->store->active == PV_SLOT_NONE) {
        reply_err(p, f, PV_E_NO_THETA, 0);
        return;
    }
    if (!p->img_complete) {
        reply_err(p, f, PV_E_BAD_STATE, (int32_t)p->img_received);
        return;
    }
    memset(&r, 0, sizeof(r));
    for (uint32_t i = 0; i < n; i++) {
        int rc = run_infer(p, p->board.keep_image, &r);
        if (rc != 0) {
            reply_err(p, f, PV_E_INFER_FAILED, rc);
            return;
        }
        total += r.ticks;
        if (r.ticks < mn) mn = r.ticks;
        if (r.ticks > mx) mx = r.ticks;
    }
    memset(b, 0, sizeof(b));
    pv_wr32(b, n);
    pv_wr32(b + 4, mn);
    pv_wr32(b + 8, mx);
    pv_wr32(b + 12, (uint32_t)total);
    pv_wr32(b + 16, (uint32_t)(total >> 32));
    if (r.is16) { /* the int16 logit, little-endian */
        b[20] = (uint8_t)((uint16_t)r.q & 0xFFu);
        b[21] = (uint8_t)((uint16_t)r.q >> 8);
    } else {
        b[20] = (uint8_t)r.q;
        b[21] = (uint8_t)r.q_mirror; /* 0 with one view (r is cleared) */
    }
    reply_ok(p, f, b, sizeof(b));
}

static void cmd_infer_bulk(pv_proto_t *p, const pv_frame_t *f) {
    uint8_t b[20];
    uint32_t start, count, cap;
    infer_result_t r;
    if (f->len != 8) {
        reply_err(p, f, PV_E_BAD_LENGTH, f->len);
        return;
    }
    start = pv_rd32(f->payload);
    count = pv_rd32(f->payload + 4);
    cap = p->board.bulk != NULL ? p->board.bulk_bytes / PV_IMAGE_BYTES : 0u;
    if (cap == 0) {
        reply_err(p, f, PV_E_BAD_STATE, 0);
        return;
    }
    if (count == 0 || start >= cap || count > cap - start) {
        reply_err(p, f, PV_E_BAD_ARG, (int32_t)cap);
        return;
    }
    if (p->store->active == PV_SLOT_NONE) {
        reply_err(p, f, PV_E_NO_THETA, 0);
        return;
    }
    p->cur_cacheable = 0; /* a stream of replies: a retry re-runs it */
    for (uint32_t i = 0; i < count; i++) {
        int rc = run_infer(p, p->board.bulk + (start + i) * PV_IMAGE_BYTES, &r);
        if (rc != 0) {
            reply_err(p, f, PV_E_INFER_FAILED, rc);
            return;
        }
        pv_wr32(b, start + i);
        put_result(b + 4, &r);
        reply_ok(p, f, b, sizeof(b));
    }
}

static void cmd_ping(pv_proto_t *p, const pv_frame_t *f) {
    pv_frame_encoder_t e;
    uint8_t b[4];
    uint32_t want;
    if (f->len < 2) {
        reply_err(p, f, PV_E_BAD_LENGTH, f->len);
        return;
    }
    want = pv_rd16(f->payload);
    if (want < 4) want = 4;
    if (want > p->dec.max_payload) {
        reply_err(p, f, PV_E_BAD_ARG, (int32_t)want);
        return;
    }
    /* streamed straight to the link (no buffer for the pattern) and never cached */
    p->cur_cacheable = 0;
    p->cache_valid = 0;
    pv_frame_encoder_begin(&e, tx_sink, p, (uint8_t)(f->cmd | PV_REPLY), f->seq, (uint16_t)want);
    pv_wr32(b, f->len);
    pv_frame_encoder_put(&e, b, 4);
    for (uint32_t i = 4; i < want; i++) {
        uint8_t v = (uint8_t)(i * 7u + f->seq);
        pv_frame_encoder_put(&e, &v, 1);
    }
    pv_frame_encoder_end(&e);
}

static void cmd_reset(pv_proto_t *p, const pv_frame_t *f) {
    uint8_t mode = f->len >= 1 ? f->payload[0] : PV_RESET_REBOOT;
    uint8_t code = f->len >= 2 ? f->payload[1] : 0;
    if (f->len > 2 || mode > PV_RESET_EXIT) {
        reply_err(p, f, f->len > 2 ? PV_E_BAD_LENGTH : PV_E_BAD_ARG, f->len > 2 ? f->len : mode);
        return;
    }
    p->cur_cacheable = 0;
    reply_ok(p, f, NULL, 0);
    p->reset_pending = (uint8_t)(1u + mode);
    p->reset_code = code;
}

void pv_proto_handle(pv_proto_t *p, const pv_frame_t *f) {
    p->cur_req_crc = pv_rd32(f->payload + f->len);
    if (p->cache_valid && p->cache_seq == f->seq && p->cache_cmd == f->cmd &&
        p->cache_req_crc == p->cur_req_crc) {
        send_frame(p, p->cache_reply_cmd, f->seq, p->cache, p->cache_len); /* a retry: same answer */
        return;
    }
    p->cur_cacheable = 1;
    switch (f->cmd) {
        case PV_CMD_INFO: cmd_info(p, f); break;
        case PV_CMD_LOAD_THETA: cmd_load_theta(p, f); break;
        case PV_CMD_COMMIT: cmd_commit(p, f); break;
        case PV_CMD_INFER: cmd_infer(p, f); break;
        case PV_CMD_BENCH: cmd_bench(p, f); break;
        case PV_CMD_RESET: cmd_reset(p, f); break;
        case PV_CMD_INFER_BULK: cmd_infer_bulk(p, f); break;
        case PV_CMD_PING: cmd_ping(p, f); break;
        default: reply_err(p, f, PV_E_UNKNOWN_CMD, f->cmd); break;
    }
}

void pv_proto_rx(pv_proto_t *p, const uint8_t *buf, uint32_t n) {
    pv_frame_t f;
    for (uint32_t i = 0; i < n; i++) {
        int st = pv_frame_decoder_push(&p->dec, buf[i], &f);
        p->rx_bytes++;
        if (st == PV_FRAME_OK) {
            pv_proto_handle(p, &f);
        } else if (st < 0) {
            frame_error(p, st, &f);
        }
        if (p->reset_pending) {
            uint8_t mode = (uint8_t)(p->reset_pending - 1u);
            p->reset_pending = 0;
            if (p->board.reset != NULL) p->board.reset(p->board.ctx, mode, p->reset_code);
            return; /* the board starts over; the rest of buf belongs to the next life */
        }
    }
}

int pv_proto_init(pv_proto_t *p, const pv_board_t *board, pv_store_t *store) {
    if (p == NULL || board == NULL || board->send == NULL || board->ticks == NULL || store == NULL) return -1;
    memset(p, 0, sizeof(*p));
    p->board = *board;
    p->store = store;
    return pv_frame_decoder_init(&p->dec, s_rx_buf, sizeof(s_rx_buf), PV_FRAME_MAX_PAYLOAD);
}

void pv_proto_send_ready(pv_proto_t *p) {
    static const uint8_t delim = 0x00;
    uint8_t b[PV_INFO_BYTES];
    build_info(p, b);
    p->board.send(p->board.ctx, &delim, 1); /* flush whatever half frame the host's decoder holds */
    send_frame(p, PV_CMD_READY, 0, b, sizeof(b));
}
