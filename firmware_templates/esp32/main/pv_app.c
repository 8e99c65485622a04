/* pv_app: see pv_app.h. The built-in θ comes from the emitted <user>_theta.h named in pv_app_config.h. */
#include "pv_app.h"

#include <string.h>

#include "pv_app_config.h"

#if PV_THETA_BUILTIN
#define PV_THETA_IMPLEMENTATION
#include PV_THETA_HEADER
#endif

#if defined(PV_BASE_THETA)
/* codegen.emit --shared-prefix: layers [0, split) live here, once; every θ blob is a personal one */
#define PV_BASE_IMPLEMENTATION
#include PV_BASE_HEADER
#include "pv_blob.h"
#endif

#define PV_APP_CHUNK 1024u

static pv_store_t s_store;
static pv_proto_t s_proto;
static int s_seed_result = PV_APP_SEED_NONE;
static int s_seed_error = 0;

#if PV_THETA_BUILTIN
static int seed_builtin(pv_store_t *s) {
    uint32_t off = 0;
    if (s->active != PV_SLOT_NONE) return PV_APP_SEED_NONE; /* a θ sent over the link later wins */
    while (off < PV_THETA_BLOB_BYTES) {
        uint32_t n = PV_THETA_BLOB_BYTES - off;
        int rc;
        if (n > PV_APP_CHUNK) n = PV_APP_CHUNK;
        rc = pv_store_write_chunk(s, off, pv_theta_blob.bytes + off, n);
        if (rc != PV_STORE_OK) {
            pv_store_abort(s);
            s_seed_error = rc;
            return PV_APP_SEED_FAILED;
        }
        off += n;
    }
    s_seed_error = pv_store_commit(s);
    return s_seed_error == PV_STORE_OK ? PV_APP_SEED_WRITTEN : PV_APP_SEED_FAILED;
}
#endif

int pv_app_init(const pv_board_t *board, const pv_flash_t *flash) {
    int rc;
#if defined(PV_BASE_THETA)
    /* before the store opens: it parses the stored personal blob against the base */
    if (pv_blob_set_base(pv_base_blob.bytes, PV_BASE_BLOB_BYTES) != PV_OK) return -101;
#endif
    rc = pv_store_init(&s_store, flash);
    if (rc != PV_STORE_OK) return rc;
#if PV_THETA_BUILTIN
    s_seed_result = seed_builtin(&s_store);
#endif
    if (pv_proto_init(&s_proto, board, &s_store) != 0) return -100;
    pv_proto_send_ready(&s_proto);
    return 0;
}

void pv_app_rx(const uint8_t *p, uint32_t n) { pv_proto_rx(&s_proto, p, n); }

int pv_app_seed_result(void) { return s_seed_result; }

int pv_app_seed_error(void) { return s_seed_error; }

pv_store_t *pv_app_store(void) { return &s_store; }
