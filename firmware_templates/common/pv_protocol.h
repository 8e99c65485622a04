/* pv_protocol: the command handler behind the serial link (table in firmware_templates/README.md).
 *
 * A board feeds received bytes to pv_proto_rx(); complete frames are dispatched and answered through
 * the board's send() with the request's seq. Replies have cmd = request cmd | 0x80; refusals are ERROR
 * frames (0xFF). The handler owns static buffers only: the frame buffer and the kernel arena
 * (PV_STREAM_ARENA_BYTES, pv_kernel.h). INFER chunks stream through the kernel as they arrive: no image
 * buffer. Each INFER runs the kernel of the committed model's format (pv_kernel.h: int8, or 16x8 in a
 * build with PV_WITH_16X8=1); a 16x8 model always runs one view (its int16 rounding leaves nothing for a
 * mirror view to average out).
 */
#ifndef PV_PROTOCOL_H
#define PV_PROTOCOL_H

#include <stdint.h>

#include "pv_frame.h"
#include "pv_protocol_ids.h"
#include "pv_kernel.h"
#include "pv_store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PV_FW_VERSION_MAJOR 0u
#define PV_FW_VERSION_MINOR 1u
#define PV_FW_VERSION_PATCH 0u

#define PV_IMAGE_BYTES PV_INPUT_BYTES /* an INFER image: the input of f, HWC, q = u - 128 */

/* Views per probe: 1 (the default) one pass of f; 2 (-DPV_VIEWS=2) scores the mean of f on the image and
 * on its mirror image (each row reversed pixel by pixel), two passes of the kernel with the same θ: the int8 rounding errors of the two
 * views are only partly correlated, so their mean follows the float f more closely (held-out LFW pairs:
 * decisions int8 = float 99.33 % with one view, 99.50 % with two; README "Two views per probe"), at twice
 * the time and a second arena (32,448 B). The INFER reply says which (result flags byte, bit 1). */
#ifndef PV_VIEWS
#define PV_VIEWS 1u
#endif
#define PV_ROW_BYTES (PV_INPUT_W * PV_INPUT_C)

/* Command ids, error codes, the INFO and result records' layouts and flags, reset modes and
 * PV_PROTO_VERSION: pv_protocol_ids.h, generated from pvcore/protocol.py (the host's copy). */

typedef struct {
    void *ctx;
    void (*send)(void *ctx, const uint8_t *p, uint32_t n); /* blocking write to the link */
    uint32_t (*ticks)(void *ctx);                          /* free-running counter at tick_hz */
    uint32_t tick_hz;
    void (*reset)(void *ctx, uint8_t mode, uint8_t code);  /* after the RESET reply went out */
    const int8_t *bulk;                                    /* preloaded images (NULL: none) */
    uint32_t bulk_bytes;
    uint32_t free_ram;                                     /* bytes of RAM nobody uses */
    char name[8];                                          /* board name, NUL-padded */
    /* Optional copy of the last INFER image outside the RAM budget (external PSRAM/flash; NULL: none).
     * INFER streams the image through the kernel and never holds it; BENCH reruns this copy. */
    int8_t *keep_image;
    uint32_t (*stack_used)(void *ctx); /* stack high-water mark in bytes (NULL: not measured) */
    uint32_t static_ram;               /* .data + .bss bytes of the firmware (0: not reported) */
} pv_board_t;

#define PV_CACHE_BYTES 128u

typedef struct {
    pv_board_t board;
    pv_store_t *store;
    pv_frame_decoder_t dec;
    pv_stream_t stream;    /* the INFER image streaming through the kernel */
#if PV_VIEWS == 2
    pv_stream_t stream_m;  /* the same image mirrored, through a second arena */
    uint32_t row_fill;     /* bytes of the current image row in row[] */
    int8_t row[PV_ROW_BYTES]; /* the row being received, reversed in place before it goes to stream_m */
#endif
    uint32_t img_received; /* contiguous image bytes from offset 0 (fed to the kernel) */
    uint32_t img_ticks;    /* kernel ticks spent on the image so far */
    uint8_t img_complete;  /* the keep_image copy holds a whole image (BENCH runs on it) */
    uint8_t reset_pending; /* 1 + mode */
    uint8_t reset_code;
    /* the last reply, resent as is when the same request (seq, cmd, CRC) comes again */
    uint8_t cache_valid;
    uint8_t cache_seq;
    uint8_t cache_cmd;
    uint8_t cache_reply_cmd;
    uint16_t cache_len;
    uint32_t cache_req_crc;
    uint8_t cache[PV_CACHE_BYTES];
    /* the request being handled */
    uint8_t cur_cacheable;
    uint32_t cur_req_crc;
    /* statistics */
    uint32_t tx_bytes;
    uint32_t rx_bytes;
} pv_proto_t;

int pv_proto_init(pv_proto_t *p, const pv_board_t *board, pv_store_t *store);
void pv_proto_send_ready(pv_proto_t *p);
void pv_proto_rx(pv_proto_t *p, const uint8_t *buf, uint32_t n);
/* Handles one decoded frame (what pv_proto_rx does for every good frame). */
void pv_proto_handle(pv_proto_t *p, const pv_frame_t *f);

#ifdef __cplusplus
}
#endif
#endif /* PV_PROTOCOL_H */
