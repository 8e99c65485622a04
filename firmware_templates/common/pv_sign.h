/* pv_sign: the signed θ envelope (pvcore/signed.py) and its Ed25519 check against the trusted keys.
 *
 * A board installs only θ in an envelope: [32-byte header: magic "PVSG", version, sizes, counter, key id]
 * [the θ blob] [64-byte Ed25519 signature over header + blob]. The keys a firmware trusts are compiled in:
 * pv_trusted_keys.h (generated from the host's keyring by codegen.emit / python -m host_tools.keys
 * header), found on the include path. The signature check is Monocypher's crypto_ed25519_check
 * (RFC 8032, SHA-512; codegen/third_party.py fetches its sources): no cryptography is written here.
 */
#ifndef PV_SIGN_H
#define PV_SIGN_H

#include <stdint.h>

#include "pv_blob_format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint8_t key_id[PV_KEY_ID_BYTES];        /* first bytes of SHA-256(public_key), computed by the host */
    uint8_t public_key[PV_PUBLIC_KEY_BYTES]; /* raw Ed25519 public key */
} pv_trusted_key_t;

typedef enum {
    PV_SIGN_OK = 0,
    PV_SIGN_ERR_UNSIGNED = -1,  /* no envelope magic (a bare θ blob, or anything else) */
    PV_SIGN_ERR_FORMAT = -2,    /* envelope header malformed: version, header size, sizes */
    PV_SIGN_ERR_KEY = -3,       /* key id not among the trusted keys */
    PV_SIGN_ERR_SIGNATURE = -4  /* the signature does not verify */
} pv_sign_status_t;

typedef struct {
    uint32_t total;      /* envelope bytes: header + blob + signature */
    uint32_t counter;    /* the signer's anti-replay counter */
    uint32_t blob_size;  /* the θ blob's bytes (from PV_SIGNED_HEADER_BYTES on) */
    int32_t key_index;   /* index into pv_trusted_keys, -1 when not trusted */
} pv_envelope_t;

/* The compiled-in trusted keys (pv_trusted_keys.h). */
extern const pv_trusted_key_t pv_trusted_keys[];
extern const uint32_t pv_trusted_key_count;

/* Reads and checks the envelope header (the first PV_SIGNED_HEADER_BYTES of p; len: the bytes available,
 * which may be just the header) and looks its key up. Returns PV_SIGN_OK, _UNSIGNED, _FORMAT or _KEY
 * (e is filled as far as it was read). Does not check the signature. */
int pv_envelope_header(pv_envelope_t *e, const uint8_t *p, uint32_t len);

/* pv_envelope_header on the whole envelope (len >= its total), then the signature. PV_SIGN_OK only when
 * a trusted key signed exactly these bytes. */
int pv_envelope_verify(pv_envelope_t *e, const uint8_t *p, uint32_t len);

#ifdef __cplusplus
}
#endif
#endif /* PV_SIGN_H */
