/* Startup for RV32IMC on QEMU virt, machine mode: QEMU's reset vector (-bios none) jumps to the start
 * of RAM, 0x80000000, where _start sits (.text.start comes first in the linker script). Sets gp (for
 * the linker's gp-relative relaxation) and sp, points mtvec at a handler that ends the emulator with
 * exit code 0xFE (a fault: interrupts are never enabled), copies .data from its load address, zeroes
 * .bss, then runs main(). */
    .section .text.start, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, __stack_top
    la t0, trap_entry
    csrw mtvec, t0
    csrw mie, zero
    la t0, __data_load
    la t1, __data_start
    la t2, __data_end
1:  bgeu t1, t2, 2f
    lw t3, 0(t0)
    sw t3, 0(t1)
    addi t0, t0, 4
    addi t1, t1, 4
    j 1b
2:  la t1, __bss_start
    la t2, __bss_end
3:  bgeu t1, t2, 4f
    sw zero, 0(t1)
    addi t1, t1, 4
    j 3b
4:  call main
    li a0, 0
    call board_exit

    .balign 4
trap_entry:
    li a0, 0xFE
    call board_exit
