/* Board support for QEMU mps2-an386. See board.h. */
#include "board.h"

static volatile uint8_t s_rx_ring[RX_RING_BYTES];
static volatile uint32_t s_rx_head; /* written by the ISR */
static volatile uint32_t s_rx_tail; /* written by the main loop */
static volatile uint32_t s_rx_overruns;
static volatile uint32_t s_tick_wraps;

void UART0_RX_IRQHandler(void);
void SysTick_Handler(void);

static void uart_drain_rx(void) {
    while (REG32(UART_STATE) & UART_STATE_RXFULL) {
        uint8_t b = (uint8_t)REG32(UART_DATA);
        uint32_t h = s_rx_head;
        if (h - s_rx_tail < RX_RING_BYTES) {
            s_rx_ring[h & (RX_RING_BYTES - 1u)] = b;
            s_rx_head = h + 1u;
        } else {
            s_rx_overruns++; /* the frame CRC catches the loss; the host resends */
        }
    }
}

void UART0_RX_IRQHandler(void) {
    /* clear first, then read: a byte that lands after the last read raises the interrupt again
     * (clearing after the reads could swallow that byte's interrupt and stall the link) */
    REG32(UART_INTSTATUS) = UART_INT_RX;
    uart_drain_rx();
}

static void board_uart_init(uint32_t baud) {
    REG32(UART_BAUDDIV) = SYSCLK_HZ / baud;
    REG32(UART_CTRL) = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXIRQ;
    REG32(NVIC_ISER0) = 1u << UART0_RX_IRQN;
}

void board_uart_write(const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        while (REG32(UART_STATE) & UART_STATE_TXFULL) {
        }
        REG32(UART_DATA) = p[i];
    }
}

uint32_t board_uart_read(uint8_t *buf, uint32_t cap) {
    uint32_t t = s_rx_tail, h = s_rx_head, n = 0;
    while (t != h && n < cap) {
        buf[n++] = s_rx_ring[t & (RX_RING_BYTES - 1u)];
        t++;
    }
    s_rx_tail = t;
    return n;
}

uint32_t board_uart_rx_overruns(void) { return s_rx_overruns; }

void board_wait_for_rx(void) {
    /* with interrupts masked, WFI still wakes on a pending one: no lost-wakeup race */
    __asm volatile("cpsid i" ::: "memory");
    uart_drain_rx(); /* belt and braces: never sleep on a byte waiting in the data register */
    if (s_rx_head == s_rx_tail) {
        __asm volatile("wfi" ::: "memory");
    }
    __asm volatile("cpsie i" ::: "memory");
}

void SysTick_Handler(void) { s_tick_wraps++; }

static void board_systick_init(void) {
    REG32(SYST_RVR) = 0x00FFFFFFu;
    REG32(SYST_CVR) = 0;
    REG32(SYST_CSR) = 0x7u; /* processor clock, interrupt, enable */
}

uint32_t board_ticks(void) {
    uint32_t w1, w2, v;
    do {
        w1 = s_tick_wraps;
        v = REG32(SYST_CVR);
        w2 = s_tick_wraps;
    } while (w1 != w2);
    return (w1 << 24) + (0x00FFFFFFu - v);
}

void board_exit(uint32_t code) {
    /* semihosting SYS_EXIT_EXTENDED: QEMU exits with code % 256 */
    volatile uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, code};
    register uint32_t r0 __asm("r0") = 0x20u;
    register volatile uint32_t *r1 __asm("r1") = block;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    for (;;) {
    }
}

void board_reset(void) {
    __asm volatile("dsb" ::: "memory");
    REG32(SCB_AIRCR) = 0x05FA0004u; /* VECTKEY | SYSRESETREQ */
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}

void board_init(void) {
    board_systick_init();
    board_uart_init(115200u);
}
