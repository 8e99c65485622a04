/* pv_frame: COBS framing with CRC-32. See pv_frame.h for the format. */
#include "pv_frame.h"

#include <string.h>

#include "pv_crc32.h"

int pv_frame_decoder_init(pv_frame_decoder_t *d, uint8_t *buf, uint32_t cap, uint32_t max_payload) {
    if (d == NULL || buf == NULL || max_payload > 0xFFFFu || cap < PV_FRAME_BUF_BYTES(max_payload)) {
        return -1;
    }
    memset(d, 0, sizeof(*d));
    d->buf = buf;
    d->cap = cap;
    d->max_payload = max_payload;
    return 0;
}

void pv_frame_decoder_reset(pv_frame_decoder_t *d) {
    d->len = 0;
    d->raw = 0;
    d->remaining = 0;
    d->code = 0;
    d->overflow = 0;
}

static void dec_append(pv_frame_decoder_t *d, uint8_t b) {
    if (d->len < d->cap) {
        d->buf[d->len] = b;
    } else {
        d->overflow = 1;
    }
    /* len keeps counting past cap (saturating) so a frame's true size is known; only cap bytes stored */
    if (d->len < 0xFFFFFFFFu) {
        d->len++;
    }
    /* early oversize detection: the len field alone already says the frame cannot fit */
    if (d->len == PV_FRAME_HEADER_BYTES && pv_rd16(d->buf + 2) > d->max_payload) {
        d->overflow = 1;
    }
}

static int dec_finish(pv_frame_decoder_t *d, pv_frame_t *out) {
    uint32_t n = d->len;
    uint32_t stored = n < d->cap ? n : d->cap;
    int st;
    out->cmd = stored > 0 ? d->buf[0] : 0;
    out->seq = stored > 1 ? d->buf[1] : 0;
    out->len = (uint16_t)(n > 0xFFFFu ? 0xFFFFu : n);
    out->payload = NULL;
    if (d->remaining != 0) {
        st = PV_FRAME_ERR_COBS;
    } else if (d->overflow) {
        st = PV_FRAME_ERR_OVERSIZE;
    } else if (n < PV_FRAME_OVERHEAD) {
        st = PV_FRAME_ERR_TRUNCATED;
    } else {
        uint32_t declared = pv_rd16(d->buf + 2);
        if (declared > d->max_payload) {
            st = PV_FRAME_ERR_OVERSIZE;
        } else if (n < declared + PV_FRAME_OVERHEAD) {
            st = PV_FRAME_ERR_TRUNCATED;
        } else if (n > declared + PV_FRAME_OVERHEAD) {
            st = PV_FRAME_ERR_TOO_LONG;
        } else {
            uint32_t body = declared + PV_FRAME_HEADER_BYTES;
            uint32_t want = pv_rd32(d->buf + body);
            if (pv_crc32(0, d->buf, body) != want) {
                st = PV_FRAME_ERR_CRC;
            } else {
                out->len = (uint16_t)declared;
                out->payload = d->buf + PV_FRAME_HEADER_BYTES;
                st = PV_FRAME_OK;
            }
        }
    }
    if (st == PV_FRAME_OK) {
        d->frames_ok++;
    } else {
        d->frames_bad++;
    }
    pv_frame_decoder_reset(d);
    return st;
}

int pv_frame_decoder_push(pv_frame_decoder_t *d, uint8_t byte, pv_frame_t *out) {
    if (byte == 0x00) {
        if (d->raw == 0) {
            return PV_FRAME_NONE; /* empty frame: a leading delimiter or line noise of zeros */
        }
        return dec_finish(d, out);
    }
    if (d->raw < 0xFFFFFFFFu) {
        d->raw++;
    }
    if (d->remaining == 0) { /* a code byte */
        if (d->code != 0 && d->code != 0xFF) {
            dec_append(d, 0x00); /* the zero the previous block stood for */
        }
        d->code = byte;
        d->remaining = (uint8_t)(byte - 1u);
    } else {
        dec_append(d, byte);
        d->remaining--;
    }
    return PV_FRAME_NONE;
}

/* ---- encoder ---------------------------------------------------------------------------------------- */
static void enc_flush(pv_frame_encoder_t *e, uint8_t code) {
    e->blk[0] = code;
    e->sink(e->ctx, e->blk, (uint32_t)e->n + 1u);
    e->total += (uint32_t)e->n + 1u;
    e->n = 0;
}

static void enc_byte(pv_frame_encoder_t *e, uint8_t b) {
    if (b == 0x00) {
        enc_flush(e, (uint8_t)(e->n + 1u));
        return;
    }
    e->blk[1u + e->n] = b;
    e->n++;
    if (e->n == 254u) {
        enc_flush(e, 0xFF);
    }
}

void pv_frame_encoder_put(pv_frame_encoder_t *e, const uint8_t *p, uint32_t n) {
    e->crc = pv_crc32(e->crc, p, n);
    for (uint32_t i = 0; i < n; i++) {
        enc_byte(e, p[i]);
    }
}

void pv_frame_encoder_begin(pv_frame_encoder_t *e, pv_frame_sink_t sink, void *ctx, uint8_t cmd, uint8_t seq,
                            uint16_t len) {
    uint8_t hdr[PV_FRAME_HEADER_BYTES];
    e->sink = sink;
    e->ctx = ctx;
    e->crc = 0;
    e->total = 0;
    e->n = 0;
    hdr[0] = cmd;
    hdr[1] = seq;
    pv_wr16(hdr + 2, len);
    pv_frame_encoder_put(e, hdr, sizeof(hdr));
}

uint32_t pv_frame_encoder_end(pv_frame_encoder_t *e) {
    uint8_t tail[PV_FRAME_CRC_BYTES];
    static const uint8_t delim = 0x00;
    pv_wr32(tail, e->crc);
    for (uint32_t i = 0; i < sizeof(tail); i++) {
        enc_byte(e, tail[i]);
    }
    enc_flush(e, (uint8_t)(e->n + 1u));
    e->sink(e->ctx, &delim, 1);
    e->total += 1;
    return e->total;
}

typedef struct {
    uint8_t *out;
    uint32_t cap;
    uint32_t used;
    int overflow;
} buf_sink_t;

static void buf_sink(void *ctx, const uint8_t *p, uint32_t n) {
    buf_sink_t *s = (buf_sink_t *)ctx;
    if (s->overflow || n > s->cap - s->used) {
        s->overflow = 1;
        return;
    }
    memcpy(s->out + s->used, p, n);
    s->used += n;
}

uint32_t pv_frame_encode(uint8_t cmd, uint8_t seq, const uint8_t *payload, uint16_t len, uint8_t *out,
                         uint32_t cap) {
    pv_frame_encoder_t e;
    buf_sink_t s = {out, cap, 0, 0};
    if (len > PV_FRAME_MAX_PAYLOAD || (len > 0 && payload == NULL) || out == NULL) {
        return 0;
    }
    pv_frame_encoder_begin(&e, buf_sink, &s, cmd, seq, len);
    if (len > 0) {
        pv_frame_encoder_put(&e, payload, len);
    }
    pv_frame_encoder_end(&e);
    return s.overflow ? 0 : s.used;
}
