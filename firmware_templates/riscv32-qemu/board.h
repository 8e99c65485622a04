/* Board support for QEMU virt (RV32IMC, machine mode only): the NS16550A UART, polled, whose RX line
 * goes through the PLIC only to wake WFI (interrupts stay globally off: no trap handler runs), the
 * minstret instruction counter, and the sifive_test device to leave or reset the emulator — the port of
 * the shared main loop (qemu-common/pv_qemu_board.h). */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

#include "pv_qemu_board.h"

#define BOARD_NAME "rv32virt"
/* board_ticks() is minstret, instructions retired since reset (the low 32 bits). Under QEMU -icount
 * shift=0 it advances with the virtual clock, 1 instruction = 1 ns, so at a nominal 1 GHz BENCH's ticks
 * are instructions; time spent in WFI counts too: only differences over busy code are instruction counts. */
#define BOARD_TICK_HZ 1000000000u
#define BOARD_BULK_BASE 0x81000000u /* the top 16 MiB of virt's default 128 MiB of RAM (riscv32_virt.ld) */
#define BOARD_BULK_BYTES 0x01000000u

#define REG8(addr) (*(volatile uint8_t *)(uintptr_t)(addr))
#define REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* NS16550A UART0 (byte registers, QEMU virt) */
#define UART0_BASE 0x10000000u
#define UART_RBR (UART0_BASE + 0u) /* read: receive buffer; write: THR */
#define UART_THR (UART0_BASE + 0u)
#define UART_IER (UART0_BASE + 1u)
#define UART_FCR (UART0_BASE + 2u)
#define UART_LCR (UART0_BASE + 3u)
#define UART_LSR (UART0_BASE + 5u)
#define UART_DLL (UART0_BASE + 0u) /* with LCR.DLAB */
#define UART_DLM (UART0_BASE + 1u)
#define UART_LSR_DR 0x01u   /* a received byte is waiting */
#define UART_LSR_THRE 0x20u /* the transmit holding register takes a byte */
#define UART_CLK_HZ 3686400u /* QEMU virt's UART reference clock */
#define UART0_IRQ 10u

/* PLIC: context 0 is hart 0 in machine mode */
#define PLIC_BASE 0x0C000000u
#define PLIC_PRIORITY(irq) (PLIC_BASE + 4u * (irq))
#define PLIC_ENABLE0 (PLIC_BASE + 0x2000u)
#define PLIC_THRESHOLD0 (PLIC_BASE + 0x200000u)
#define PLIC_CLAIM0 (PLIC_BASE + 0x200004u)

/* sifive_test: a write of 0x5555 ends QEMU with status 0, (code << 16) | 0x3333 with status code,
 * 0x7777 resets the machine */
#define TEST_BASE 0x00100000u

#endif
