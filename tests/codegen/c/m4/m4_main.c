/* Bare-metal test of the C kernel on the emulated Cortex-M4 (QEMU mps2-an386), for
 * tests/codegen/test_m4_qemu.py. QEMU preloads into PSRAM (-device loader):
 *   0x21000000  u32 n_images, u32 blob_len
 *   0x21001000  the θ blob
 *   0x21100000  n_images * PV_INPUT_BYTES uint8 RGB images
 * For each image it prints "<logit as 4 hex digits, int16> <SysTick ticks>\n" over semihosting, then a line
 * "L" and the same for each layer of one more run of image 0 (ticks per layer: the SysTick deltas between
 * hook calls, summed per layer, as the streamed layers call the hook once per output row), then exits
 * with 0 (or 2 when the blob is refused / an inference fails). With -icount shift=0 one SysTick tick
 * (25 MHz) is 40 guest instructions. */
#include <stdint.h>
#include <string.h>

#include "pv_blob.h"
#include "pv_kernel.h"

#define PARAMS ((const volatile uint32_t *)0x21000000u)
#define BLOB ((const uint8_t *)0x21001000u)
#define IMAGES ((const uint8_t *)0x21100000u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CPACR (*(volatile uint32_t *)0xE000ED88u)

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void pv_reset_handler(void);
void pv_fault_handler(void);

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void sh_exit(int code) {
    const uint32_t block[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit, code */
    (void)semihost(0x20, block);                          /* SYS_EXIT_EXTENDED */
    for (;;) {
    }
}

void pv_fault_handler(void) { sh_exit(3); }

void pv_reset_handler(void) {
    uint32_t *src = &_sidata, *dst;
    for (dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0u;
    CPACR |= 0xFu << 20; /* FPU on (CP10, CP11) */
    __asm__ volatile("dsb\n isb" ::: "memory");
    sh_exit(main());
}

__attribute__((section(".isr_vector"), used)) static void (*const k_vectors[4])(void) = {
    (void (*)(void))(uintptr_t)&_estack, pv_reset_handler, pv_fault_handler, pv_fault_handler};

static union {
    uint32_t align_;
    uint8_t b[PV_KERNEL16_ARENA_BYTES > PV_KERNEL_ARENA_BYTES ? PV_KERNEL16_ARENA_BYTES : PV_KERNEL_ARENA_BYTES];
} s_arena; /* a build with -DPV_WITH_16X8=1 runs 16x8 blobs too */
static int8_t s_img[PV_INPUT_BYTES];
static pv_model_t s_model;
static char s_line[32];
static uint32_t s_layer_ticks[PV_N_LAYERS], s_last;

static void layer_hook(void *ctx, uint32_t layer, const void *out, uint32_t n) {
    const uint32_t t = SYST_CVR;
    (void)ctx;
    (void)out;
    (void)n;
    s_layer_ticks[layer] += (s_last - t) & 0x00FFFFFFu; /* down-counter */
    s_last = t;
}

static void put_line(int16_t logit, uint32_t ticks) {
    static const char hex[] = "0123456789abcdef";
    if (logit == 0 && ticks == 0u) { /* separator line */
        (void)semihost(0x04, "L\n");
        return;
    }
    char dec[12];
    int n = 0, i = 0;
    s_line[i++] = hex[((uint16_t)logit) >> 12];
    s_line[i++] = hex[(((uint16_t)logit) >> 8) & 15u];
    s_line[i++] = hex[(((uint16_t)logit) >> 4) & 15u];
    s_line[i++] = hex[((uint16_t)logit) & 15u];
    s_line[i++] = ' ';
    do {
        dec[n++] = (char)('0' + ticks % 10u);
        ticks /= 10u;
    } while (ticks != 0u);
    while (n > 0) s_line[i++] = dec[--n];
    s_line[i++] = '\n';
    s_line[i] = '\0';
    (void)semihost(0x04, s_line); /* SYS_WRITE0 */
}

int main(void) {
    const uint32_t n_images = PARAMS[0], blob_len = PARAMS[1];
    uint32_t k, i;
    if (pv_blob_parse(&s_model, BLOB, blob_len) != PV_OK) return 2;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* enable, processor clock, no interrupt */
    for (k = 0; k < n_images; k++) {
        const uint8_t *u = IMAGES + (size_t)k * PV_INPUT_BYTES;
        int16_t logit = 0;
        uint32_t t0, t1;
        for (i = 0; i < PV_INPUT_BYTES; i++) s_img[i] = (int8_t)((int32_t)u[i] - 128);
        t0 = SYST_CVR;
        if (pv_infer(&s_model, s_img, &logit, s_arena.b) != PV_OK) return 2;
        t1 = SYST_CVR;
        put_line(logit, (t0 - t1) & 0x00FFFFFFu); /* down-counter */
    }
    /* per-layer ticks of one more inference of image 0, after a line "L" */
    if (n_images > 0u) {
        int16_t logit = 0;
        put_line(0, 0u);
        for (i = 0; i < PV_INPUT_BYTES; i++) s_img[i] = (int8_t)((int32_t)IMAGES[i] - 128);
        s_last = SYST_CVR;
        if (pv_infer_ex(&s_model, s_img, &logit, s_arena.b, layer_hook, NULL) != PV_OK) return 2;
        for (i = 0; i < PV_N_LAYERS; i++) put_line(logit, s_layer_ticks[i]);
    }
    return 0;
}
