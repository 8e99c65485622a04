/* Startup for the Cortex-M4 on QEMU mps2-an386: vector table (first in the image), .data copy, .bss
 * zeroing, FPU enable, then main(). Faults end the emulator through semihosting with exit code 0xFE. */
#include <stdint.h>

#include "board.h"

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern int main(void);

void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);
void UART0_RX_IRQHandler(void);

void Reset_Handler(void) {
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
    REG32(SCB_CPACR) |= (0xFu << 20); /* CP10, CP11 full access: the FPU */
    __asm volatile("dsb\n\tisb" ::: "memory");
    main();
    board_exit(0);
}

void Default_Handler(void) { board_exit(0xFE); }

typedef void (*vector_t)(void);

/* 16 system vectors + 32 external interrupts (UART0 RX is IRQ 0 on mps2-an385/an386) */
__attribute__((section(".isr_vector"), used)) const vector_t g_vectors[16 + 32] = {
    (vector_t)(uintptr_t)&__stack_top,
    Reset_Handler,
    Default_Handler, /* NMI */
    Default_Handler, /* HardFault */
    Default_Handler, /* MemManage */
    Default_Handler, /* BusFault */
    Default_Handler, /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVC */
    Default_Handler, /* DebugMon */
    0,
    Default_Handler, /* PendSV */
    SysTick_Handler,
    UART0_RX_IRQHandler, /* IRQ 0: UART0 RX */
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler,
};
