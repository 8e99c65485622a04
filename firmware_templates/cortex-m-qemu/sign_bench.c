/* sign_bench: the cost of checking a signed θ on the Cortex-M4 (QEMU mps2-an386, -icount shift=0), for
 * host_tools.fw_bench. Built with the firmware's own flags, startup and board port (make sign-bench).
 * QEMU preloads into PSRAM (-device loader): 0x21000000 u32 length, 0x21000010 the signed θ.
 * It checks the signature (pv_envelope_verify) once as given and once with one byte of the blob flipped,
 * measuring each with SysTick, the stack the check used (stack painted first), and prints
 * "verify <rc> <ticks> <stack bytes>\ntampered <rc> <ticks> <stack bytes>\n" on the UART, then exits 0.
 * One SysTick tick is 40 instructions under -icount shift=0. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "pv_sign.h"

#define INPUT_LEN (*(const volatile uint32_t *)0x21000000u)
#define INPUT ((uint8_t *)0x21000010u)
#define PAINT 0x5A5A5A5Au

extern uint32_t __stack_limit[];

static void print(const char *s) { board_uart_write((const uint8_t *)s, (uint32_t)strlen(s)); }

/* Paints the free stack below this frame (what the check below will use). */
static __attribute__((noinline)) void paint(void) {
    volatile uint32_t here = 0;
    uintptr_t end = (uintptr_t)&here - 256u;
    for (uint32_t *p = __stack_limit; (uintptr_t)p < end; p++) *p = PAINT;
}

/* Bytes of stack ever used below the painted region's top (the deepest word that changed). */
static uint32_t stack_used(uint32_t top) {
    uint32_t *p = __stack_limit;
    while ((uint32_t)(uintptr_t)p < top && *p == PAINT) p++;
    return top - (uint32_t)(uintptr_t)p;
}

static void run(const char *name, uint32_t len) {
    char line[80];
    pv_envelope_t e;
    volatile uint32_t here = 0;
    uint32_t top = (uint32_t)(uintptr_t)&here, t0, t1;
    int rc;
    paint();
    t0 = board_ticks();
    rc = pv_envelope_verify(&e, INPUT, len);
    t1 = board_ticks();
    snprintf(line, sizeof(line), "%s %d %lu %lu\n", name, rc, (unsigned long)(t1 - t0),
             (unsigned long)stack_used(top));
    print(line);
}

int main(void) {
    uint32_t len = INPUT_LEN;
    board_init();
    run("verify", len);
    INPUT[PV_SIGNED_HEADER_BYTES + 100u] ^= 1u;
    run("tampered", len);
    board_exit(0);
}
