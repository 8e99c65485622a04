/* pv_frame: the serial link's framing, shared by every board and by host_tools/serial_link.py.
 *
 * On the wire a frame is COBS-encoded and ends with one 0x00 byte (senders may also put a 0x00 before
 * it, so a receiver drops any half-received garbage first). Decoded, a frame is
 *
 *     [u8 cmd][u8 seq][u16 len, LE][len payload bytes][u32 CRC-32, LE]
 *
 * where the CRC-32 (zlib's) covers cmd..payload. Empty frames (two 0x00 in a row) are ignored.
 *
 * The decoder is fed one byte at a time and never reads past its buffer: it resynchronises on every
 * 0x00, and a frame that is too long for the buffer, shorter or longer than its len field, badly
 * COBS-encoded or with a wrong CRC is reported as such once its delimiter arrives.
 */
#ifndef PV_FRAME_H
#define PV_FRAME_H

#include <stdint.h>

#include "pv_protocol_ids.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PV_FRAME_HEADER_BYTES, PV_FRAME_CRC_BYTES, PV_FRAME_MAX_PAYLOAD (a board may define its own) and the
 * decoder's pv_frame_status_t come from pvcore/protocol.py, as the host's decoder does. */
#define PV_FRAME_OVERHEAD (PV_FRAME_HEADER_BYTES + PV_FRAME_CRC_BYTES)
/* Bytes a decoder buffer needs for frames of up to max_payload bytes. */
#define PV_FRAME_BUF_BYTES(max_payload) ((uint32_t)(max_payload) + PV_FRAME_OVERHEAD)
/* Worst-case encoded size on the wire (COBS adds 1 byte per 254, plus code byte and delimiter). */
#define PV_FRAME_WIRE_MAX(payload) \
    (PV_FRAME_BUF_BYTES(payload) + PV_FRAME_BUF_BYTES(payload) / 254u + 2u)

typedef struct {
    uint8_t cmd;
    uint8_t seq;
    uint16_t len;
    const uint8_t *payload; /* points into the decoder's buffer; valid until the next push */
} pv_frame_t;

typedef struct {
    uint8_t *buf;
    uint32_t cap;       /* bytes in buf */
    uint32_t max_payload;
    uint32_t len;       /* decoded bytes so far */
    uint32_t raw;       /* encoded bytes of the current frame (for statistics) */
    uint8_t remaining;  /* data bytes left in the current COBS block */
    uint8_t code;       /* the current block's code byte (0 = no block yet) */
    uint8_t overflow;   /* the current frame did not fit */
    uint8_t pad_;
    /* statistics */
    uint32_t frames_ok;
    uint32_t frames_bad;
} pv_frame_decoder_t;

/* buf must hold PV_FRAME_BUF_BYTES(max_payload) bytes; returns 0, or -1 if it does not. */
int pv_frame_decoder_init(pv_frame_decoder_t *d, uint8_t *buf, uint32_t cap, uint32_t max_payload);
/* Drops whatever was half-received. */
void pv_frame_decoder_reset(pv_frame_decoder_t *d);
/* Feeds one received byte. Returns a pv_frame_status_t; on PV_FRAME_OK fills *out. On an error, the
 * first two decoded bytes (cmd, seq), when they were received, are in out->cmd / out->seq and out->len
 * is the number of bytes decoded (so a reply can name the request it refuses). */
int pv_frame_decoder_push(pv_frame_decoder_t *d, uint8_t byte, pv_frame_t *out);

/* ---- encoder: streams COBS output through a sink, holding at most one 254-byte block -------------- */
typedef void (*pv_frame_sink_t)(void *ctx, const uint8_t *p, uint32_t n);

typedef struct {
    pv_frame_sink_t sink;
    void *ctx;
    uint32_t crc;
    uint32_t total; /* wire bytes emitted for this frame */
    uint8_t n;      /* bytes in blk[1..] */
    uint8_t blk[255];
} pv_frame_encoder_t;

void pv_frame_encoder_begin(pv_frame_encoder_t *e, pv_frame_sink_t sink, void *ctx, uint8_t cmd, uint8_t seq,
                            uint16_t len);
void pv_frame_encoder_put(pv_frame_encoder_t *e, const uint8_t *p, uint32_t n);
/* Appends the CRC and the delimiter; returns the wire bytes of the frame. */
uint32_t pv_frame_encoder_end(pv_frame_encoder_t *e);

/* One-shot helper: encodes a whole frame into out (cap bytes). Returns the encoded length including
 * the trailing 0x00, or 0 if it does not fit or len > PV_FRAME_MAX_PAYLOAD. */
uint32_t pv_frame_encode(uint8_t cmd, uint8_t seq, const uint8_t *payload, uint16_t len, uint8_t *out,
                         uint32_t cap);

/* Little-endian helpers (portable, alignment-free). */
static inline uint16_t pv_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t pv_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void pv_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void pv_wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#ifdef __cplusplus
}
#endif
#endif /* PV_FRAME_H */
