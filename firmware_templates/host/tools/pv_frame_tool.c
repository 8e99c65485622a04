/* pv_frame_tool: the C frame codec as a command line filter, for tests that compare it with Python.
 *   pv_frame_tool decode < bytes      one line per event: "OK cmd seq len payloadhex" or "ERR status cmd seq"
 *   pv_frame_tool encode CMD SEQ HEX  the encoded frame (with trailing 0x00) on stdout
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pv_frame.h"

static uint8_t s_buf[PV_FRAME_BUF_BYTES(PV_FRAME_MAX_PAYLOAD)];

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "decode") == 0) {
        pv_frame_decoder_t d;
        pv_frame_t f;
        int c;
        if (pv_frame_decoder_init(&d, s_buf, sizeof(s_buf), PV_FRAME_MAX_PAYLOAD) != 0) return 1;
        while ((c = getchar()) != EOF) {
            int st = pv_frame_decoder_push(&d, (uint8_t)c, &f);
            if (st == PV_FRAME_OK) {
                printf("OK %u %u %u ", f.cmd, f.seq, f.len);
                for (uint32_t i = 0; i < f.len; i++) printf("%02x", f.payload[i]);
                printf("\n");
            } else if (st < 0) {
                printf("ERR %d %u %u\n", st, f.cmd, f.seq);
            }
        }
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "encode") == 0) {
        static uint8_t payload[PV_FRAME_MAX_PAYLOAD];
        static uint8_t out[PV_FRAME_WIRE_MAX(PV_FRAME_MAX_PAYLOAD)];
        size_t hl = strlen(argv[4]);
        uint32_t n;
        if (hl % 2 != 0 || hl / 2 > sizeof(payload)) {
            fprintf(stderr, "pv_frame_tool: payload hex must have an even length <= %u bytes\n",
                    (unsigned)sizeof(payload));
            return 2;
        }
        for (size_t i = 0; i < hl / 2; i++) {
            int hi = hexval(argv[4][2 * i]), lo = hexval(argv[4][2 * i + 1]);
            if (hi < 0 || lo < 0) return 2;
            payload[i] = (uint8_t)(hi * 16 + lo);
        }
        n = pv_frame_encode((uint8_t)atoi(argv[2]), (uint8_t)atoi(argv[3]), payload, (uint16_t)(hl / 2), out,
                            sizeof(out));
        if (n == 0) return 1;
        fwrite(out, 1, n, stdout);
        return 0;
    }
    fprintf(stderr, "usage: pv_frame_tool decode < bytes | pv_frame_tool encode CMD SEQ HEX\n");
    return 2;
}
