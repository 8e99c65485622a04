/* pv_store: A/B θ store over an abstract flash.
 *
 * The region is split into two equal slots. Each slot starts with a PV_SLOT_HEADER_BYTES slot header,
 * then the signed θ as received (pv_sign.h: envelope header, θ blob, signature): magic "PVSL", commit
 * counter (1 for the first θ), length and CRC-32 of the signed θ, flags (0), reserved (0xFF), CRC-32 of
 * the header before it. The layout (offsets, sizes) is pv_store_format.h, generated from
 * pvcore/store_format.py (the host packs the same header there).
 * A transfer writes the signed θ into the inactive slot (after erasing it); its first chunk must start
 * with an envelope by a trusted key whose counter is not lower than the active θ's. COMMIT checks the
 * whole of it (signature first, then the blob's CRC, arch hash, pv_blob_parse) and only then writes the
 * slot header: that single write is the commit point, so a transfer cut at any byte, or refused, leaves
 * the old slot the active one. At boot the valid slot (header CRC, CRC, signature, pv_blob_parse all
 * good) with the highest commit counter is active.
 *
 * The flash must be readable in place (memory-mapped, `base`): the kernel reads θ from it.
 */
#ifndef PV_STORE_H
#define PV_STORE_H

#include <stdint.h>

#include "pv_blob.h"
#include "pv_store_format.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The arch hash as a brace initializer, whichever name pv_arch.h gives it. */
#if defined(PV_ARCH_HASH_BYTES)
#define PV_ARCH_HASH_INIT PV_ARCH_HASH_BYTES
#else
#define PV_ARCH_HASH_INIT PV_ARCH_HASH
#endif

#define PV_SLOT_NONE 0xFFu

typedef struct {
    void *ctx;
    const uint8_t *base;  /* memory-mapped view of the region (read in place) */
    uint32_t size;        /* region bytes: two slots */
    uint32_t erase_size;  /* erase granularity; slot size must be a multiple */
    int (*erase)(void *ctx, uint32_t off, uint32_t len);                 /* sets bytes to 0xFF */
    int (*write)(void *ctx, uint32_t off, const uint8_t *p, uint32_t len); /* may only clear bits */
} pv_flash_t;

typedef enum {
    PV_STORE_OK = 0,
    PV_STORE_ERR_ARG = -1,     /* bad argument (region too small, offsets) */
    PV_STORE_ERR_STATE = -2,   /* no transfer open, or chunk out of order */
    PV_STORE_ERR_SIZE = -3,    /* blob larger than a slot / PV_BLOB_MAX_BYTES, or not complete */
    PV_STORE_ERR_HEADER = -4,  /* first chunk is not a θ blob header */
    PV_STORE_ERR_ARCH = -5,    /* arch hash differs from this firmware's */
    PV_STORE_ERR_CRC = -6,     /* blob CRC wrong */
    PV_STORE_ERR_BLOB = -7,    /* pv_blob_parse refused the blob (detail in last_blob_err) */
    PV_STORE_ERR_FLASH = -8,   /* erase/write failed or read-back differs */
    PV_STORE_ERR_MISMATCH = -9, /* a resent chunk differs from what was written */
    PV_STORE_ERR_UNSIGNED = -10,  /* the transfer is not a signed θ (a bare blob): pv_sign.h */
    PV_STORE_ERR_KEY = -11,       /* signed by a key this firmware does not trust */
    PV_STORE_ERR_SIGNATURE = -12, /* the signature does not verify (changed after signing, or forged) */
    PV_STORE_ERR_REPLAY = -13     /* its counter is lower than the active θ's (theta_counter) */
} pv_store_err_t;

typedef struct {
    pv_flash_t flash;
    uint32_t slot_size;
    uint8_t active;           /* 0, 1 or PV_SLOT_NONE */
    uint32_t counter;         /* active slot's commit counter (0: none) */
    uint32_t theta_counter;   /* the active θ's signed counter (a new θ must not be lower) */
    pv_model_t model;         /* parsed active θ (valid when active != PV_SLOT_NONE) */
    /* open transfer */
    uint8_t xfer_open;
    uint8_t xfer_slot;
    uint32_t xfer_total;
    uint32_t xfer_received;
    int32_t last_blob_err;    /* pv_blob_parse's code of the last refusal */
    int32_t last_sign_err;    /* pv_envelope_*'s code of the last check (pv_sign_status_t) */
} pv_store_t;

/* Opens the store and picks the active slot. Returns PV_STORE_OK (also when no slot is valid). */
int pv_store_init(pv_store_t *s, const pv_flash_t *flash);
/* Pointer to the active θ blob (inside its signed envelope) and its length (NULL/0 when none). */
const uint8_t *pv_store_active_blob(const pv_store_t *s, uint32_t *len);
/* The θ header fields of the active blob. user_id gets PV_USER_ID_BYTES + 1 bytes (NUL-terminated). */
int pv_store_active_user(const pv_store_t *s, char user_id[PV_USER_ID_BYTES + 1], float *threshold_logit);

/* Transfer. offset 0 starts a new one: the chunk must begin with the envelope header and the 64-byte blob
 * header (signed at all, trusted key, counter, total size, arch hash checked here already), and the
 * inactive slot is erased. Then chunks must follow in order;
 * resending an already written chunk (same bytes) is accepted. */
int pv_store_write_chunk(pv_store_t *s, uint32_t offset, const uint8_t *p, uint32_t n);
/* Checks the complete blob and switches slots. */
int pv_store_commit(pv_store_t *s);
/* Drops an open transfer (the inactive slot stays erased/invalid). */
void pv_store_abort(pv_store_t *s);

#ifdef __cplusplus
}
#endif
#endif /* PV_STORE_H */
