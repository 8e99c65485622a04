/* pv_sign: see pv_sign.h. */
#include "pv_sign.h"

#include <string.h>

#include "monocypher-ed25519.h"
#include "pv_frame.h" /* pv_rd16 / pv_rd32 */
#include "pv_trusted_keys.h"

const pv_trusted_key_t pv_trusted_keys[] = PV_TRUSTED_KEYS_INIT;
const uint32_t pv_trusted_key_count = (uint32_t)(sizeof(pv_trusted_keys) / sizeof(pv_trusted_keys[0]));

int pv_envelope_header(pv_envelope_t *e, const uint8_t *p, uint32_t len) {
    memset(e, 0, sizeof(*e));
    e->key_index = -1;
    if (len < PV_SIGNED_MAGIC_LEN || memcmp(p + PV_SIGNED_HDR_MAGIC, PV_SIGNED_MAGIC, PV_SIGNED_MAGIC_LEN) != 0) {
        return PV_SIGN_ERR_UNSIGNED;
    }
    if (len < PV_SIGNED_HEADER_BYTES || pv_rd16(p + PV_SIGNED_HDR_VERSION) != PV_SIGNED_VERSION ||
        pv_rd16(p + PV_SIGNED_HDR_HEADER_SIZE) != PV_SIGNED_HEADER_BYTES) {
        return PV_SIGN_ERR_FORMAT;
    }
    e->total = pv_rd32(p + PV_SIGNED_HDR_TOTAL_SIZE);
    e->counter = pv_rd32(p + PV_SIGNED_HDR_COUNTER);
    e->blob_size = pv_rd32(p + PV_SIGNED_HDR_BLOB_SIZE);
    if (e->blob_size % 4u != 0 || e->blob_size > 0xFFFFFFFFu - PV_SIGNED_OVERHEAD ||
        e->total != e->blob_size + PV_SIGNED_OVERHEAD || pv_rd32(p + PV_SIGNED_HDR_RESERVED) != 0) {
        return PV_SIGN_ERR_FORMAT;
    }
    for (uint32_t i = 0; i < pv_trusted_key_count; i++) {
        if (memcmp(pv_trusted_keys[i].key_id, p + PV_SIGNED_HDR_KEY_ID, PV_KEY_ID_BYTES) == 0) {
            e->key_index = (int32_t)i;
            return PV_SIGN_OK;
        }
    }
    return PV_SIGN_ERR_KEY;
}

int pv_envelope_verify(pv_envelope_t *e, const uint8_t *p, uint32_t len) {
    int rc = pv_envelope_header(e, p, len);
    uint32_t signed_len;
    if (rc != PV_SIGN_OK) return rc;
    if (len < e->total) return PV_SIGN_ERR_FORMAT;
    signed_len = PV_SIGNED_HEADER_BYTES + e->blob_size;
    if (crypto_ed25519_check(p + signed_len, pv_trusted_keys[e->key_index].public_key, p, signed_len) != 0) {
        return PV_SIGN_ERR_SIGNATURE;
    }
    return PV_SIGN_OK;
}
