/* Board support for QEMU virt (RV32IMC). See board.h. */
#include "board.h"

#define MIE_MEIE (1u << 11)

static void board_uart_init(uint32_t baud) {
    uint32_t div = UART_CLK_HZ / (16u * baud);
    REG8(UART_IER) = 0;
    REG8(UART_LCR) = 0x80u; /* DLAB */
    REG8(UART_DLL) = (uint8_t)div;
    REG8(UART_DLM) = (uint8_t)(div >> 8);
    REG8(UART_LCR) = 0x03u; /* 8N1 */
    /* FIFOs on and cleared, RX trigger level 14: QEMU's 16550 takes from the host at most (trigger level -
     * bytes held) bytes at a time, so level 1 moves the link one byte per hand-over (5x slower INFERs).
     * Polling reads whatever the FIFO holds; the interrupt, which only wakes WFI, comes at 14 bytes or
     * after the FIFO's character timeout for a shorter tail. */
    REG8(UART_FCR) = 0xC7u;
    REG8(UART_IER) = 0x01u; /* "received data available" drives IRQ 10 */
    REG32(PLIC_PRIORITY(UART0_IRQ)) = 1u;
    REG32(PLIC_ENABLE0) = 1u << UART0_IRQ;
    REG32(PLIC_THRESHOLD0) = 0u;
    /* mstatus.MIE stays 0: a pending external interrupt ends WFI but is never taken as a trap */
    __asm volatile("csrs mie, %0" ::"r"(MIE_MEIE));
}

void board_uart_write(const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        while (!(REG8(UART_LSR) & UART_LSR_THRE)) {
        }
        REG8(UART_THR) = p[i];
    }
}

uint32_t board_uart_read(uint8_t *buf, uint32_t cap) {
    uint32_t n = 0;
    while (n < cap && (REG8(UART_LSR) & UART_LSR_DR)) buf[n++] = REG8(UART_RBR);
    return n;
}

void board_wait_for_rx(void) {
    if (REG8(UART_LSR) & UART_LSR_DR) return;
    /* WFI returns at once while the PLIC holds a pending UART interrupt (level seen before the bytes were
     * read): claim and complete it after waking, so the next WFI sleeps until a new byte comes. A byte
     * that arrives between the check above and WFI pends the interrupt: WFI does not sleep through it. */
    __asm volatile("wfi" ::: "memory");
    uint32_t irq = REG32(PLIC_CLAIM0);
    if (irq != 0u) REG32(PLIC_CLAIM0) = irq;
}

uint32_t board_ticks(void) {
    uint32_t v;
    __asm volatile("csrr %0, minstret" : "=r"(v));
    return v;
}

void board_exit(uint32_t code) {
    REG32(TEST_BASE) = code == 0u ? 0x5555u : ((code & 0xFFFFu) << 16) | 0x3333u;
    for (;;) {
    }
}

void board_reset(void) {
    REG32(TEST_BASE) = 0x7777u;
    for (;;) {
    }
}

void board_init(void) { board_uart_init(115200u); }
