/* pv_store: A/B θ store. See pv_store.h for the slot format and the commit rule. */
#include "pv_store.h"

#include <string.h>

#include "pv_arch.h"
#include "pv_crc32.h"
#include "pv_frame.h" /* pv_rd32 / pv_wr32 */
#include "pv_sign.h"

/* Keeps a function out of its caller: the signature check's stack (about 2 KB with Monocypher) and a parsed
 * model (pv_model_t) are never on the stack at once, so checking a θ needs no more stack than running one. */
#if defined(__GNUC__)
#define PV_NOINLINE __attribute__((noinline))
#else
#define PV_NOINLINE
#endif

static uint32_t blob_capacity(const pv_store_t *s) {
    uint32_t cap = s->slot_size - PV_SLOT_HEADER_BYTES;
    return cap < PV_BLOB_MAX_BYTES ? cap : PV_BLOB_MAX_BYTES;
}

static const uint8_t *slot_ptr(const pv_store_t *s, uint8_t slot) {
    return s->flash.base + (uint32_t)slot * s->slot_size;
}

/* The slot's θ blob (inside its envelope) and its size. */
static const uint8_t *slot_blob(const pv_store_t *s, uint8_t slot, uint32_t *size) {
    const uint8_t *env = slot_ptr(s, slot) + PV_SLOT_HEADER_BYTES;
    *size = pv_rd32(env + PV_SIGNED_HDR_BLOB_SIZE);
    return env + PV_SIGNED_HEADER_BYTES;
}

/* 1 when the slot holds a committed, intact θ signed by a trusted key (checked again at every boot: the
 * store never runs a θ it cannot authenticate); fills the counters. */
static PV_NOINLINE int slot_signed(const pv_store_t *s, uint8_t slot, uint32_t *counter, uint32_t *theta_counter) {
    const uint8_t *h = slot_ptr(s, slot);
    pv_envelope_t e;
    uint32_t len;
    if (memcmp(h + PV_SLOT_OFF_MAGIC, PV_SLOT_MAGIC, PV_SLOT_MAGIC_LEN) != 0) return 0;
    if (pv_crc32(0, h, PV_SLOT_HEADER_CRC_SPAN) != pv_rd32(h + PV_SLOT_OFF_HEADER_CRC)) return 0;
    len = pv_rd32(h + PV_SLOT_OFF_BLOB_LEN);
    if (len < PV_SIGNED_OVERHEAD + PV_BLOB_HEADER_BYTES + PV_BLOB_CRC_BYTES || len > blob_capacity(s)) return 0;
    if (pv_crc32(0, h + PV_SLOT_HEADER_BYTES, len) != pv_rd32(h + PV_SLOT_OFF_BLOB_CRC)) return 0;
    if (pv_envelope_verify(&e, h + PV_SLOT_HEADER_BYTES, len) != PV_SIGN_OK || e.total != len) return 0;
    *counter = pv_rd32(h + PV_SLOT_OFF_COUNTER);
    *theta_counter = e.counter;
    return 1;
}

/* Returns 1 and fills counter/theta_counter/model if the slot holds a valid signed θ that parses. */
static int slot_valid(pv_store_t *s, uint8_t slot, uint32_t *counter, uint32_t *theta_counter, pv_model_t *model) {
    uint32_t size;
    const uint8_t *blob;
    if (!slot_signed(s, slot, counter, theta_counter)) return 0;
    blob = slot_blob(s, slot, &size);
    return pv_blob_parse(model, blob, size) == 0;
}

int pv_store_init(pv_store_t *s, const pv_flash_t *flash) {
    uint32_t c[2] = {0, 0}, tc[2] = {0, 0};
    int ok[2];
    if (s == NULL || flash == NULL || flash->base == NULL || flash->erase == NULL || flash->write == NULL ||
        flash->erase_size == 0) {
        return PV_STORE_ERR_ARG;
    }
    memset(s, 0, sizeof(*s));
    s->flash = *flash;
    s->slot_size = (flash->size / 2u) / flash->erase_size * flash->erase_size;
    s->active = PV_SLOT_NONE;
    if (s->slot_size < PV_SLOT_HEADER_BYTES + PV_BLOB_HEADER_BYTES + PV_BLOB_CRC_BYTES) {
        return PV_STORE_ERR_ARG;
    }
    /* each slot is parsed into s->model (no model on the stack); the active one again below */
    ok[0] = slot_valid(s, 0, &c[0], &tc[0], &s->model);
    ok[1] = slot_valid(s, 1, &c[1], &tc[1], &s->model);
    if (ok[0] && (!ok[1] || c[0] >= c[1])) {
        s->active = 0;
    } else if (ok[1]) {
        s->active = 1;
    }
    if (s->active != PV_SLOT_NONE) {
        uint32_t size;
        const uint8_t *blob = slot_blob(s, s->active, &size);
        s->counter = c[s->active];
        s->theta_counter = tc[s->active];
        (void)pv_blob_parse(&s->model, blob, size); /* it parsed above: the same bytes */
    } else {
        memset(&s->model, 0, sizeof(s->model));
    }
    return PV_STORE_OK;
}

const uint8_t *pv_store_active_blob(const pv_store_t *s, uint32_t *len) {
    if (s->active == PV_SLOT_NONE) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = pv_rd32(slot_ptr(s, s->active) + PV_SLOT_HEADER_BYTES + PV_SIGNED_HDR_BLOB_SIZE);
    return slot_ptr(s, s->active) + PV_SLOT_HEADER_BYTES + PV_SIGNED_HEADER_BYTES;
}

int pv_store_active_user(const pv_store_t *s, char user_id[PV_USER_ID_BYTES + 1], float *threshold_logit) {
    uint32_t len;
    const uint8_t *b = pv_store_active_blob(s, &len);
    memset(user_id, 0, PV_USER_ID_BYTES + 1u);
    if (b == NULL) {
        if (threshold_logit) *threshold_logit = 0.0f;
        return PV_STORE_ERR_STATE;
    }
    memcpy(user_id, b + PV_BLOB_HDR_USER_ID, PV_USER_ID_BYTES);
    if (threshold_logit) memcpy(threshold_logit, b + PV_BLOB_HDR_THRESHOLD_LOGIT, sizeof(*threshold_logit));
    return PV_STORE_OK;
}

static int flash_write_checked(pv_store_t *s, uint32_t off, const uint8_t *p, uint32_t n) {
    if (n == 0) return PV_STORE_OK;
    if (off > s->flash.size || n > s->flash.size - off) return PV_STORE_ERR_ARG;
    if (s->flash.write(s->flash.ctx, off, p, n) != 0) return PV_STORE_ERR_FLASH;
    if (memcmp(s->flash.base + off, p, n) != 0) return PV_STORE_ERR_FLASH;
    return PV_STORE_OK;
}

/* Validates a blob header (first 64 bytes). Returns its total size or a negative pv_store_err_t. */
static int32_t check_blob_header(const uint8_t *h) {
    static const uint8_t arch[] = PV_ARCH_HASH_INIT;
    uint32_t total, payload;
    if (memcmp(h + PV_BLOB_HDR_MAGIC, PV_BLOB_MAGIC, PV_BLOB_MAGIC_LEN) != 0 ||
        !pv_blob_version_supported(pv_rd16(h + PV_BLOB_HDR_FORMAT_VERSION)) ||
        pv_rd16(h + PV_BLOB_HDR_HEADER_SIZE) != PV_BLOB_HEADER_BYTES) {
        return PV_STORE_ERR_HEADER;
    }
    total = pv_rd32(h + PV_BLOB_HDR_TOTAL_SIZE);
    payload = pv_rd32(h + PV_BLOB_HDR_PAYLOAD_SIZE);
    if (total < PV_BLOB_HEADER_BYTES + PV_BLOB_CRC_BYTES ||
        payload != total - PV_BLOB_HEADER_BYTES - PV_BLOB_CRC_BYTES) {
        return PV_STORE_ERR_HEADER; /* sizes inconsistent or larger than a slot */
    }
    if (memcmp(h + PV_BLOB_HDR_ARCH_HASH, arch, sizeof(arch)) != 0) return PV_STORE_ERR_ARCH;
    return (int32_t)total;
}

/* Validates the start of a signed θ (envelope header + blob header, n >= PV_SIGNED_HEADER_BYTES +
 * PV_BLOB_HEADER_BYTES bytes): signed at all, by a trusted key, not older than the active θ, fits a slot,
 * and the blob inside is one for this firmware. The signature itself needs the whole envelope (commit).
 * Returns the envelope's total size or a negative pv_store_err_t. */
static int32_t check_envelope_header(pv_store_t *s, const uint8_t *p, uint32_t n, pv_envelope_t *e) {
    int32_t blob_total;
    int rc = pv_envelope_header(e, p, n);
    s->last_sign_err = rc;
    if (rc == PV_SIGN_ERR_UNSIGNED) return PV_STORE_ERR_UNSIGNED;
    if (rc == PV_SIGN_ERR_KEY) return PV_STORE_ERR_KEY;
    if (rc != PV_SIGN_OK || n < PV_SIGNED_HEADER_BYTES + PV_BLOB_HEADER_BYTES) return PV_STORE_ERR_HEADER;
    if (s->active != PV_SLOT_NONE && e->counter < s->theta_counter) return PV_STORE_ERR_REPLAY;
    if (e->total > blob_capacity(s)) return PV_STORE_ERR_HEADER; /* larger than a slot */
    blob_total = check_blob_header(p + PV_SIGNED_HEADER_BYTES);
    if (blob_total < 0) return (int)blob_total;
    if ((uint32_t)blob_total != e->blob_size) return PV_STORE_ERR_HEADER;
    return (int32_t)e->total;
}

void pv_store_abort(pv_store_t *s) {
    s->xfer_open = 0;
    s->xfer_total = 0;
    s->xfer_received = 0;
}

int pv_store_write_chunk(pv_store_t *s, uint32_t offset, const uint8_t *p, uint32_t n) {
    uint32_t data_off, overlap;
    int rc;
    if (p == NULL && n > 0) return PV_STORE_ERR_ARG;
    if (offset == 0 && !(s->xfer_open && n <= s->xfer_received &&
                         memcmp(slot_ptr(s, s->xfer_slot) + PV_SLOT_HEADER_BYTES, p, n) == 0)) {
        /* a new transfer */
        int32_t total;
        pv_envelope_t e;
        pv_store_abort(s);
        if (n < PV_SIGNED_MAGIC_LEN) return PV_STORE_ERR_HEADER;
        total = check_envelope_header(s, p, n, &e);
        if (total < 0) return (int)total;
        if (n > (uint32_t)total) return PV_STORE_ERR_SIZE;
        s->xfer_slot = (s->active == 0) ? 1u : 0u;
        if (s->flash.erase(s->flash.ctx, (uint32_t)s->xfer_slot * s->slot_size, s->slot_size) != 0) {
            return PV_STORE_ERR_FLASH;
        }
        s->xfer_open = 1;
        s->xfer_total = (uint32_t)total;
        s->xfer_received = 0;
    }
    if (!s->xfer_open) return PV_STORE_ERR_STATE;
    if (offset > s->xfer_received) return PV_STORE_ERR_STATE; /* a gap: chunks must come in order */
    if (offset > s->xfer_total || n > s->xfer_total - offset) return PV_STORE_ERR_SIZE;
    data_off = (uint32_t)s->xfer_slot * s->slot_size + PV_SLOT_HEADER_BYTES;
    /* bytes already written must be resent unchanged (a retried chunk) */
    overlap = s->xfer_received - offset;
    if (overlap > n) overlap = n;
    if (overlap > 0 && memcmp(s->flash.base + data_off + offset, p, overlap) != 0) {
        return PV_STORE_ERR_MISMATCH;
    }
    rc = flash_write_checked(s, data_off + offset + overlap, p + overlap, n - overlap);
    if (rc != PV_STORE_OK) {
        pv_store_abort(s);
        return rc;
    }
    if (offset + n > s->xfer_received) s->xfer_received = offset + n;
    return PV_STORE_OK;
}

/* The received signed θ: its envelope header and signature. PV_STORE_OK or a pv_store_err_t. */
static PV_NOINLINE int commit_signed(pv_store_t *s, const uint8_t *env, uint32_t total, pv_envelope_t *e) {
    int rc = (int)check_envelope_header(s, env, total, e);
    if (rc >= 0 && (uint32_t)rc != total) rc = PV_STORE_ERR_HEADER;
    if (rc < 0) return rc;
    s->last_sign_err = pv_envelope_verify(e, env, total);
    return s->last_sign_err == PV_SIGN_OK ? PV_STORE_OK : PV_STORE_ERR_SIGNATURE;
}

/* The signed θ's blob checked and parsed, then the slot header written (the commit point). */
static PV_NOINLINE int commit_blob(pv_store_t *s, const uint8_t *env, uint32_t total, const pv_envelope_t *ep) {
    const uint8_t *blob;
    uint8_t hdr[PV_SLOT_HEADER_BYTES];
    uint32_t counter, blob_total;
    pv_envelope_t e = *ep;
    pv_model_t model;
    int rc;
    blob = env + PV_SIGNED_HEADER_BYTES;
    blob_total = e.blob_size;
    if (pv_crc32(0, blob, blob_total - PV_BLOB_CRC_BYTES) != pv_rd32(blob + blob_total - PV_BLOB_CRC_BYTES)) {
        pv_store_abort(s);
        return PV_STORE_ERR_CRC;
    }
    memset(&model, 0, sizeof(model));
    s->last_blob_err = pv_blob_parse(&model, blob, blob_total);
    if (s->last_blob_err != 0) {
        pv_store_abort(s);
        return PV_STORE_ERR_BLOB;
    }
    counter = s->counter + 1u;
    memset(hdr, 0xFF, sizeof(hdr)); /* the reserved bytes stay erased */
    memcpy(hdr + PV_SLOT_OFF_MAGIC, PV_SLOT_MAGIC, PV_SLOT_MAGIC_LEN);
    pv_wr32(hdr + PV_SLOT_OFF_COUNTER, counter);
    pv_wr32(hdr + PV_SLOT_OFF_BLOB_LEN, total);
    pv_wr32(hdr + PV_SLOT_OFF_BLOB_CRC, pv_crc32(0, env, total));
    pv_wr32(hdr + PV_SLOT_OFF_FLAGS, PV_SLOT_FLAGS);
    pv_wr32(hdr + PV_SLOT_OFF_HEADER_CRC, pv_crc32(0, hdr, PV_SLOT_HEADER_CRC_SPAN));
    /* the commit point: one header write */
    rc = flash_write_checked(s, (uint32_t)s->xfer_slot * s->slot_size, hdr, sizeof(hdr));
    if (rc != PV_STORE_OK) {
        pv_store_abort(s);
        return rc;
    }
    s->active = s->xfer_slot;
    s->counter = counter;
    s->theta_counter = e.counter;
    s->model = model;
    pv_store_abort(s);
    return PV_STORE_OK;
}

int pv_store_commit(pv_store_t *s) {
    const uint8_t *env;
    pv_envelope_t e;
    int rc;
    if (!s->xfer_open) return PV_STORE_ERR_STATE;
    if (s->xfer_received != s->xfer_total) return PV_STORE_ERR_SIZE;
    env = slot_ptr(s, s->xfer_slot) + PV_SLOT_HEADER_BYTES;
    /* before anything reads the blob's content: only what a trusted key signed goes further */
    rc = commit_signed(s, env, s->xfer_total, &e);
    if (rc != PV_STORE_OK) {
        pv_store_abort(s);
        return rc;
    }
    return commit_blob(s, env, s->xfer_total, &e);
}
