/* Firmware main loop of the QEMU boards (cortex-m-qemu, riscv32-qemu): UART bytes -> frame decoder ->
 * protocol, on the board's port (pv_qemu_board.h, defined by its board.h and board.c). The θ store is
 * the linker script's NOLOAD region, erased and written as NOR flash is (erase sets bits, a write only
 * clears them); bulk images are preloaded in external memory, whose last image slot keeps a copy of
 * the last INFER image for BENCH. The stack is painted at boot, so INFO reports its high-water mark.
 * Built with PV_BASE_THETA (pv_base_theta.h from codegen.emit --shared-prefix on the include path): the
 * model's shared prefix is compiled in as the base blob, and the A/B slots are sized for personal blobs
 * (a few KB each instead of 68 KB) — the build that fits 64 KB of flash with both slots. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "pv_protocol.h"
#include "pv_store.h"

#define THETA_ERASE 4096u
#if defined(PV_BASE_THETA)
#define PV_BASE_IMPLEMENTATION
#include "pv_base_theta.h"
/* one slot: header + a signed personal blob, rounded up to the erase size */
#define THETA_SLOT_BYTES \
    (((PV_SLOT_HEADER_BYTES + PV_SIGNED_OVERHEAD + PV_BASE_PERSONAL_BLOB_BYTES + THETA_ERASE - 1u) / THETA_ERASE) * THETA_ERASE)
#else
#define THETA_SLOT_BYTES (PV_BLOB_MAX_BYTES + THETA_ERASE)
#endif

#define KEEP_BYTES ((PV_IMAGE_BYTES + 7u) & ~7u)
#define STACK_PAINT 0xA5u

/* the linker script's (pv_qemu_board.h) */
extern uint8_t __theta_store_start[], __theta_store_end[], __stack_top[], __stack_limit[], __ram_end[];
extern uint8_t __data_start[], __bss_end[];

/* a board name longer than pv_board_t.name fails to compile (negative array size) */
typedef char board_name_fits[(sizeof(BOARD_NAME) - 1u <= sizeof(((pv_board_t *)0)->name)) ? 1 : -1];

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
    return board_ticks();
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
    board_init();

    memset(&flash, 0, sizeof(flash));
    flash.base = __theta_store_start;
    flash.size = 2u * THETA_SLOT_BYTES;
    flash.erase_size = THETA_ERASE;
    flash.erase = theta_erase;
    flash.write = theta_write;
    if ((uint32_t)(__theta_store_end - __theta_store_start) < flash.size) board_exit(0xFD);
#if defined(PV_BASE_THETA)
    if (pv_blob_set_base(pv_base_blob.bytes, PV_BASE_BLOB_BYTES) != PV_OK) board_exit(0xFB);
#endif
    pv_store_init(&s_store, &flash);

    memset(&board, 0, sizeof(board));
    board.send = link_send;
    board.ticks = ticks;
    board.tick_hz = BOARD_TICK_HZ;
    board.reset = reset;
    board.bulk = (const int8_t *)BOARD_BULK_BASE;
    board.bulk_bytes = BOARD_BULK_BYTES - KEEP_BYTES;
    board.keep_image = (int8_t *)(BOARD_BULK_BASE + BOARD_BULK_BYTES - KEEP_BYTES);
    board.stack_used = stack_used;
    board.static_ram = (uint32_t)(__bss_end - __data_start);
    board.free_ram = (uint32_t)(__ram_end - __stack_top); /* above the stack: nobody uses it */
    memcpy(board.name, BOARD_NAME, sizeof(BOARD_NAME) - 1u);
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
