/* pv_app: the board-independent part of an emitted firmware — θ store, built-in θ, serial protocol.
 * A board port (ESP-IDF app_main.c, a test harness) gives it a flash region and a link, then feeds it
 * received bytes. Portable C99, no malloc: compiles with gcc, arm-none-eabi-gcc and the ESP-IDF toolchains.
 */
#ifndef PV_APP_H
#define PV_APP_H

#include <stdint.h>

#include "pv_protocol.h"
#include "pv_store.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PV_APP_SEED_NONE = 0,     /* no built-in θ compiled in, or the store already had an active θ */
    PV_APP_SEED_WRITTEN = 1,  /* the store was empty: the built-in θ was written and committed */
    PV_APP_SEED_FAILED = -1   /* writing the built-in θ failed (see pv_app_seed_error) */
};

/* Opens the θ store on *flash, writes the built-in θ (if compiled in) when no slot is valid, starts the
 * protocol and sends READY. Returns 0, or a negative pv_store_err_t / -100 when the protocol failed /
 * -101 when the compiled-in base blob (PV_BASE_THETA) is rejected. */
int pv_app_init(const pv_board_t *board, const pv_flash_t *flash);
/* Feed received bytes: complete frames are handled and answered through board->send. */
void pv_app_rx(const uint8_t *p, uint32_t n);
/* What pv_app_init did with the built-in θ (PV_APP_SEED_*) and the store's error code if it failed. */
int pv_app_seed_result(void);
int pv_app_seed_error(void);
pv_store_t *pv_app_store(void);

#ifdef __cplusplus
}
#endif
#endif /* PV_APP_H */
