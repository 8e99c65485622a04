/* Board support for QEMU mps2-an386 (Cortex-M4, 25 MHz): CMSDK UART0 with an RX interrupt and a ring
 * buffer, a SysTick tick counter, semihosting exit and system reset — the port of the shared main loop
 * (qemu-common/pv_qemu_board.h). */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

#include "pv_qemu_board.h"

#define REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define SYSCLK_HZ 25000000u

#define BOARD_NAME "mps2386"
#define BOARD_TICK_HZ SYSCLK_HZ /* board_ticks(): SysTick down-counter + wraps, free-running */
#define BOARD_BULK_BASE 0x21000000u /* PSRAM, 16 MiB: stands in for external memory */
#define BOARD_BULK_BYTES 0x01000000u

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

uint32_t board_uart_rx_overruns(void);

#endif
