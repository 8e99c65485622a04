/* Host harness for an emitted ESP-IDF project's portable part (main/pv_app.c + main/pv/ + <user>_theta.h):
 * a RAM "flash", a board whose link discards output, then
 *   1. pv_app_init: the empty store must get the built-in θ (seed result 1), a second init must keep it (0);
 *   2. the const arrays of <user>_theta.h must equal what pv_blob_parse finds in the blob, layer by layer;
 *   3. for each int8 image (37,632 bytes) on stdin, print the logit of pv_infer on the stored θ (int8; a
 *      16x8 θ, in a project built with PV_WITH_16X8=1: int16).
 * Exit code != 0 with a message on the first failure. */
#include <stdio.h>
#include <string.h>

#include "pv_app.h"
#include "pv_app_config.h"
#include "pv_kernel.h"
#include PV_THETA_HEADER

#define SLOT (PV_BLOB_MAX_BYTES + 4096u)
static uint8_t s_flash[2u * SLOT];
static union {
    uint32_t align_;
    uint8_t b[PV_STREAM_ARENA_BYTES];
} s_arena;
static int8_t s_img[PV_INPUT_BYTES];

static int f_erase(void *c, uint32_t off, uint32_t len) {
    (void)c;
    if (off > sizeof(s_flash) || len > sizeof(s_flash) - off) return -1;
    memset(s_flash + off, 0xFF, len);
    return 0;
}

static int f_write(void *c, uint32_t off, const uint8_t *p, uint32_t len) {
    (void)c;
    if (off > sizeof(s_flash) || len > sizeof(s_flash) - off) return -1;
    for (uint32_t i = 0; i < len; i++) s_flash[off + i] &= p[i];
    return 0;
}

static void l_send(void *c, const uint8_t *p, uint32_t n) {
    (void)c;
    (void)p;
    (void)n;
}

static uint32_t l_ticks(void *c) {
    (void)c;
    return 0;
}

static int fail(const char *what, int a, int b) {
    fprintf(stderr, "FAIL %s (%d vs %d)\n", what, a, b);
    return 1;
}

int main(void) {
    pv_flash_t flash;
    pv_board_t board;
    memset(s_flash, 0xFF, sizeof(s_flash));
    memset(&flash, 0, sizeof(flash));
    flash.base = s_flash;
    flash.size = sizeof(s_flash);
    flash.erase_size = 4096u;
    flash.erase = f_erase;
    flash.write = f_write;
    memset(&board, 0, sizeof(board));
    board.send = l_send;
    board.ticks = l_ticks;
    board.tick_hz = 1000u;
    memcpy(board.name, "apptest", 7);

    if (pv_app_init(&board, &flash) != 0) return fail("first init", pv_app_seed_error(), 0);
    if (pv_app_seed_result() != PV_APP_SEED_WRITTEN) return fail("built-in θ not written (store error)", pv_app_seed_error(), 0);
    if (pv_app_init(&board, &flash) != 0) return fail("second init", pv_app_seed_error(), 0);
    if (pv_app_seed_result() != PV_APP_SEED_NONE) return fail("built-in θ written twice", pv_app_seed_result(), 0);

    const pv_model_t *m = &pv_app_store()->model;
    if (pv_app_store()->active == PV_SLOT_NONE || m->ready != PV_MODEL_READY) return fail("no active θ", 0, 1);
    if (strcmp(m->user_id, PV_THETA_USER_ID) != 0) return fail("user id", 0, 1);
    if (m->threshold_q != PV_THETA_THRESHOLD_Q) return fail("threshold_q", m->threshold_q, PV_THETA_THRESHOLD_Q);
    if (m->out_zero_point != PV_THETA_LOGIT_ZERO_POINT) return fail("logit zp", m->out_zero_point, 0);
    for (uint32_t i = 0; i < PV_THETA_N_LAYERS; i++) {
        const pv_theta_layer_t *t = &pv_theta_layers[i];
        const pv_layer_params_t *p = &m->layer[i];
        if (t->in_zero_point != p->in_zp || t->out_zero_point != p->out_zp) return fail("zero points", (int)i, 0);
        if (t->act_min != p->act_min || t->act_max != p->act_max) return fail("clamp", (int)i, 0);
        if (t->n_quant != p->n_quant) return fail("n_quant", (int)t->n_quant, (int)p->n_quant);
        if (t->n_weights == 0) continue;
        if (memcmp(t->weights, p->weights, t->n_weights) != 0) return fail("weights", (int)i, 0);
        if (memcmp(t->bias, p->bias, 4u * t->n_out) != 0) return fail("bias", (int)i, 0);
        if (memcmp(t->multiplier, p->mult, 4u * t->n_quant) != 0) return fail("multiplier", (int)i, 0);
        if (memcmp(t->shift, p->shift, 4u * t->n_quant) != 0) return fail("shift", (int)i, 0);
    }
    while (fread(s_img, 1, sizeof(s_img), stdin) == sizeof(s_img)) {
        int16_t q = 0;
        int rc = pv_infer(m, s_img, &q, s_arena.b);
        if (rc != PV_OK) return fail("pv_infer", rc, 0);
        printf("%d\n", (int)q);
    }
    return 0;
}
