/* Firmware for QEMU virt (RV32IMC): UART bytes -> frame decoder -> protocol, the same portable core as
 * the Cortex-M4 build (cortex-m-qemu/main.c). θ store in the NOLOAD THETA region (erased as NOR flash:
 * bits only clear); bulk images preloaded at 0x81000000 (external memory: its last image slot keeps a copy
 * of the last INFER image for BENCH). Ticks are minstret at a nominal 1 GHz: under QEMU -icount shift=0
 * one instruction is one nanosecond, so BENCH's ticks are instructions. The stack is painted at boot, so
 * INFO reports its high-water mark. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "pv_protocol.h"
#include "pv_store.h"

#define BULK_BASE 0x81000000u
#define BULK_BYTES 0x01000000u
#define TICK_HZ 1000000000u
#define THETA_ERASE 4096u
#define THETA_SLOT_BYTES (PV_BLOB_MAX_BYTES + THETA_ERASE)
#define KEEP_BYTES ((PV_IMAGE_BYTES + 7u) & ~7u)
#define STACK_PAINT 0xA5u

extern uint8_t __theta_store_start[], __theta_store_end[], __stack_top[], __stack_limit[], __ram_end[];
extern uint8_t __data_start[], __bss_end[];

static pv_store_t s_store;
static pv_proto_t s_proto;

static int theta_erase(void *ctx, uint32_t off, uint32_t len) {
    uint32_t size = (uint32_t)(__theta_store_end - __theta_store_start);
    (void)ctx;
    if (off > size || len > size - off) return -1;
    memset(__theta_store_start + off, 0xFF, len);
    return 0;
}

static int theta_write(void *ctx, uint32_t off, const uint8_t *p, uint32_t len) {
    uint32_t size = (uint32_t)(__theta_store_end - __theta_store_start);
    (void)ctx;
    if (off > size || len > size - off) return -1;
    for (uint32_t i = 0; i < len; i++) __theta_store_start[off + i] &= p[i]; /* NOR: bits only clear */
    return 0;
}

static void link_send(void *ctx, const uint8_t *p, uint32_t n) {
    (void)ctx;
    board_uart_write(p, n);
}

static uint32_t ticks(void *ctx) {
    (void)ctx;
    return board_instret();
}

/* Paints the unused stack below the current frame (called first thing in main). */
__attribute__((noinline)) static void stack_paint(void) {
    volatile uint8_t *p = __stack_limit;
    uint8_t *const sp = (uint8_t *)__builtin_frame_address(0) - 64; /* leave this frame's neighbourhood */
    while (p < sp) *p++ = STACK_PAINT;
}

static uint32_t stack_used(void *ctx) {
    const uint8_t *p = __stack_limit;
    (void)ctx;
    while (p < __stack_top && *p == STACK_PAINT) p++;
    return (uint32_t)(__stack_top - p);
}

static void reset(void *ctx, uint8_t mode, uint8_t code) {
    (void)ctx;
    if (mode == PV_RESET_EXIT) board_exit(code);
    board_reset();
}

int main(void) {
    static uint8_t rx[256];
    pv_flash_t flash;
    pv_board_t board;

    stack_paint();
    board_uart_init(115200u);

    memset(&flash, 0, sizeof(flash));
    flash.base = __theta_store_start;
    flash.size = 2u * THETA_SLOT_BYTES;
    flash.erase_size = THETA_ERASE;
    flash.erase = theta_erase;
    flash.write = theta_write;
    if ((uint32_t)(__theta_store_end - __theta_store_start) < flash.size) board_exit(0xFD);
    pv_store_init(&s_store, &flash);

    memset(&board, 0, sizeof(board));
    board.send = link_send;
    board.ticks = ticks;
    board.tick_hz = TICK_HZ;
    board.reset = reset;
    board.bulk = (const int8_t *)BULK_BASE;
    board.bulk_bytes = BULK_BYTES - KEEP_BYTES;
    board.keep_image = (int8_t *)(BULK_BASE + BULK_BYTES - KEEP_BYTES);
    board.stack_used = stack_used;
    board.static_ram = (uint32_t)(__bss_end - __data_start);
    board.free_ram = (uint32_t)(__ram_end - __stack_top); /* above the stack: nobody uses it */
    memcpy(board.name, "rv32virt", 8);
    if (pv_proto_init(&s_proto, &board, &s_store) != 0) board_exit(0xFC);
    pv_proto_send_ready(&s_proto);

    for (;;) {
        uint32_t n = board_uart_read(rx, sizeof(rx));
        if (n > 0) {
            pv_proto_rx(&s_proto, rx, n);
        } else {
            board_wait_for_rx();
        }
    }
}
