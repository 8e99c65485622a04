/* The port a QEMU board gives the shared firmware main loop (pv_qemu_main.c): each board's board.h
 * includes this header and defines
 *   BOARD_NAME        INFO's board name: a string literal of at most 8 characters;
 *   BOARD_TICK_HZ     the rate of board_ticks();
 *   BOARD_BULK_BASE   external memory where the host preloads INFER_BULK's images, BOARD_BULK_BYTES long
 *                     (the same figures as the target's QemuBoot record in pvcore/targets.py: the host
 *                     loads the images there);
 * and its linker script the symbols pv_qemu_main.c names: __theta_store_start/_end (the θ store, NOLOAD:
 * kept across a reset), __stack_limit/__stack_top, __ram_end (RAM above the stack, unused), __data_start
 * and __bss_end (static RAM). */
#ifndef PV_QEMU_BOARD_H
#define PV_QEMU_BOARD_H

#include <stdint.h>

/* Everything the main loop needs running before it sends READY: clocks, the tick counter, the UART at
 * 115200 8N1 with its receive path (interrupt or polled FIFO) armed. */
void board_init(void);
void board_uart_write(const uint8_t *p, uint32_t n);
/* Copies up to cap received bytes into buf; returns how many (0: none waiting). */
uint32_t board_uart_read(uint8_t *buf, uint32_t cap);
/* Sleeps until a received byte may be waiting; returns at once when one is. A byte that arrives during
 * the call must end the sleep (no lost wake-up). */
void board_wait_for_rx(void);
/* Free-running counter at BOARD_TICK_HZ, wrapping at 2^32. */
uint32_t board_ticks(void);
/* Leaves the emulator with exit status code (QEMU's own exit status). */
__attribute__((noreturn)) void board_exit(uint32_t code);
__attribute__((noreturn)) void board_reset(void);

#endif
