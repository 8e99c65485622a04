/* Board support for QEMU mps2-an386 (Cortex-M4, 25 MHz): CMSDK UART0 with an RX interrupt and a ring
 * buffer, a SysTick tick counter, semihosting exit and system reset. */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define SYSCLK_HZ 25000000u

/* CMSDK APB UART0 */
#define UART0_BASE 0x40004000u
#define UART_DATA (UART0_BASE + 0x00u)
#define UART_STATE (UART0_BASE + 0x04u)
#define UART_CTRL (UART0_BASE + 0x08u)
#define UART_INTSTATUS (UART0_BASE + 0x0Cu) /* write 1s to clear */
#define UART_BAUDDIV (UART0_BASE + 0x10u)
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TXEN 0x1u
#define UART_CTRL_RXEN 0x2u
#define UART_CTRL_RXIRQ 0x8u
#define UART_INT_RX 0x2u
#define UART0_RX_IRQN 0u

/* System control space */
#define SYST_CSR 0xE000E010u
#define SYST_RVR 0xE000E014u
#define SYST_CVR 0xE000E018u
#define NVIC_ISER0 0xE000E100u
#define SCB_AIRCR 0xE000ED0Cu
#define SCB_CPACR 0xE000ED88u

#define RX_RING_BYTES 2048u /* power of two */

void board_uart_init(uint32_t baud);
void board_uart_write(const uint8_t *p, uint32_t n);
/* Copies up to cap received bytes into buf; returns how many. */
uint32_t board_uart_read(uint8_t *buf, uint32_t cap);
uint32_t board_uart_rx_overruns(void);
void board_systick_init(void);
uint32_t board_ticks(void); /* 25 MHz free-running (SysTick down-counter + wraps) */
void board_wait_for_interrupt_if_idle(void);
__attribute__((noreturn)) void board_exit(uint32_t code);
__attribute__((noreturn)) void board_reset(void);

#endif
