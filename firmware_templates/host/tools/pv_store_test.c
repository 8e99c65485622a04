/* pv_store_test: unit tests of the A/B θ store on a simulated NOR flash, including a power cut at
 * every byte written during an update (and at many points of the erase). Prints "N passed, M failed".
 *
 *   pv_store_test [--stride N] A.bin B.bin C.bin
 * A, B, C: valid θ blobs of three users (pvcore.blob.pack_blob), bare: the tool signs them itself with
 * the TEST key (pvcore/test_key.py; Monocypher's crypto_ed25519_sign), which the template build
 * trusts. --stride N reboots after every Nth written byte instead of every byte (the slot header, the
 * commit point, is always cut at every byte).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pv_arch.h"
#include "pv_crc32.h"
#include "monocypher-ed25519.h"
#include "pv_frame.h"
#include "pv_sign.h"
#include "pv_store.h"

#define ERASE 4096u
#define SLOT (PV_BLOB_MAX_BYTES + ERASE)
#define REGION (2u * SLOT)
#define ENV PV_SIGNED_HEADER_BYTES /* the blob's offset in its envelope */
/* signed θ of the three users, and a scratch one */
static uint8_t s_a[PV_BLOB_MAX_BYTES], s_b[PV_BLOB_MAX_BYTES], s_c[PV_BLOB_MAX_BYTES];
static uint8_t s_bad[PV_BLOB_MAX_BYTES];
/* the TEST key's seed (pvcore/test_key.py) and another key's, trusted by no build */
static const uint8_t s_test_seed[32] = "pvtest-key-do-not-use-in-product";
static const uint8_t s_other_seed[32] = "another-key-that-nobody-trusts!!";

static uint8_t s_flash[REGION];
static long s_budget = -1; /* bytes the flash may still change before the "power cut" (-1: unlimited) */

/* journal of every byte an update changes, in order: replaying its first k entries on the old flash
 * image gives exactly the flash after a power cut at byte k */
typedef struct {
    uint32_t off;
    uint8_t val;
} jent_t;
static jent_t s_journal[REGION + 4096];
static uint32_t s_jn;
static int s_journaling;
static uint32_t s_stride = 1;

static void journal(uint32_t off, uint8_t val) {
    if (s_journaling && s_jn < sizeof(s_journal) / sizeof(s_journal[0])) {
        s_journal[s_jn].off = off;
        s_journal[s_jn].val = val;
        s_jn++;
    }
}

static int sim_erase(void *ctx, uint32_t off, uint32_t len) {
    (void)ctx;
    if (off > REGION || len > REGION - off) return -1;
    for (uint32_t i = 0; i < len; i++) {
        if (s_budget == 0) return -1;
        if (s_budget > 0) s_budget--;
        s_flash[off + i] = 0xFF;
        journal(off + i, 0xFF);
    }
    return 0;
}

static int sim_write(void *ctx, uint32_t off, const uint8_t *p, uint32_t len) {
    (void)ctx;
    if (off > REGION || len > REGION - off) return -1;
    for (uint32_t i = 0; i < len; i++) {
        if (s_budget == 0) return -1;
        if (s_budget > 0) s_budget--;
        s_flash[off + i] &= p[i];
        journal(off + i, s_flash[off + i]);
    }
    return 0;
}

static pv_flash_t flash(void) {
    pv_flash_t f;
    memset(&f, 0, sizeof(f));
    f.base = s_flash;
    f.size = REGION;
    f.erase_size = ERASE;
    f.erase = sim_erase;
    f.write = sim_write;
    return f;
}

/* Signs the envelope e whose blob (at e + ENV) has `blob_n` bytes: header with counter and key id, then
 * the signature by `seed`. Returns the envelope's size. */
static uint32_t sign_env(uint8_t *e, uint32_t blob_n, uint32_t counter, const uint8_t *seed, const uint8_t *kid) {
    memcpy(e + PV_SIGNED_HDR_MAGIC, PV_SIGNED_MAGIC, PV_SIGNED_MAGIC_LEN);
    pv_wr16(e + PV_SIGNED_HDR_VERSION, PV_SIGNED_VERSION);
    pv_wr16(e + PV_SIGNED_HDR_HEADER_SIZE, PV_SIGNED_HEADER_BYTES);
    pv_wr32(e + PV_SIGNED_HDR_TOTAL_SIZE, blob_n + PV_SIGNED_OVERHEAD);
    pv_wr32(e + PV_SIGNED_HDR_COUNTER, counter);
    memcpy(e + PV_SIGNED_HDR_KEY_ID, kid, PV_KEY_ID_BYTES);
    pv_wr32(e + PV_SIGNED_HDR_BLOB_SIZE, blob_n);
    pv_wr32(e + PV_SIGNED_HDR_RESERVED, 0);
    crypto_ed25519_sign(e + ENV + blob_n, seed, NULL, e, ENV + blob_n);
    return blob_n + PV_SIGNED_OVERHEAD;
}

static uint32_t blob_size(const uint8_t *e) { return pv_rd32(e + PV_SIGNED_HDR_BLOB_SIZE); }
static uint32_t counter_of(const uint8_t *e) { return pv_rd32(e + PV_SIGNED_HDR_COUNTER); }

/* Signed by the test key (with counter). */
static uint32_t sign_test(uint8_t *e, uint32_t blob_n, uint32_t counter) {
    return sign_env(e, blob_n, counter, s_test_seed, pv_trusted_keys[0].key_id);
}

/* Reads a bare blob into e + ENV and signs it with the test key. Returns the envelope's size. */
static uint32_t read_blob(const char *path, uint8_t *e, uint32_t cap, uint32_t counter) {
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) {
        fprintf(stderr, "pv_store_test: cannot open %s\n", path);
        exit(2);
    }
    n = fread(e + ENV, 1, cap - PV_SIGNED_OVERHEAD, f);
    fclose(f);
    return sign_test(e, (uint32_t)n, counter);
}

/* After changing bytes of the blob in envelope e: its CRC again, and a fresh test-key signature. */
static void reseal(uint8_t *e, uint32_t counter) {
    uint8_t *b = e + ENV;
    uint32_t n = blob_size(e);
    pv_wr32(b + n - 4u, pv_crc32(0, b, n - 4u));
    sign_test(e, n, counter);
}

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            s_pass++;                                                      \
        } else {                                                           \
            s_fail++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                  \
    } while (0)

static const char *active_user(pv_store_t *s) {
    static char u[33];
    if (pv_store_active_user(s, u, NULL) != 0) return "";
    return u;
}

/* Sends blob in chunks of `chunk` bytes and commits. Returns the first error or 0. */
static int transfer(pv_store_t *s, const uint8_t *b, uint32_t n, uint32_t chunk) {
    for (uint32_t off = 0; off < n; off += chunk) {
        uint32_t k = n - off < chunk ? n - off : chunk;
        int rc = pv_store_write_chunk(s, off, b + off, k);
        if (rc != 0) return rc;
    }
    return pv_store_commit(s);
}

static int s_pass, s_fail;
static const char *active_user(pv_store_t *s);
static int transfer(pv_store_t *s, const uint8_t *b, uint32_t n, uint32_t chunk);

/* Records the update old -> new, then reboots after every prefix of its flash changes. Returns cuts. */
static uint32_t cut_test(pv_store_t *s, const pv_flash_t *f, const uint8_t *before, const uint8_t *blob,
                         uint32_t n, uint32_t chunk, const char *old_user, const char *new_user,
                         uint32_t new_counter) {
    uint32_t cuts = 0, bad = 0;
    int rc;
    memcpy(s_flash, before, REGION);
    pv_store_init(s, f);
    s_jn = 0;
    s_journaling = 1;
    rc = transfer(s, blob, n, chunk);
    s_journaling = 0;
    if (rc != 0) {
        fprintf(stderr, "FAIL: update to %s: %d\n", new_user, rc);
        s_fail++;
        return 0;
    }
    memcpy(s_flash, before, REGION); /* pv_store_init only reads: replay in place */
    for (uint32_t k = 0; k <= s_jn; k++) {
        int in_erase = k < SLOT && s_journal[k].val == 0xFF;
        int in_header = k + PV_SLOT_HEADER_BYTES >= s_jn; /* the commit write: every byte, always */
        if (in_header || (in_erase ? k % 97u == 0 : k % s_stride == 0)) {
            const char *want = k == s_jn ? new_user : old_user;
            pv_store_init(s, f);
            cuts++;
            if (strcmp(active_user(s), want) != 0 || s->counter != (k == s_jn ? new_counter : new_counter - 1u)) {
                if (bad++ < 5) fprintf(stderr, "cut after %u of %u changes: active '%s'\n", k, s_jn, active_user(s));
            }
        }
        if (k < s_jn) s_flash[s_journal[k].off] = s_journal[k].val;
    }
    if (bad == 0) {
        s_pass++;
    } else {
        s_fail++;
    }
    return cuts;
}


int main(int argc, char **argv) {
    pv_store_t s;
    pv_flash_t f = flash();
    uint32_t na, nb, nc;
    static uint8_t after_a[REGION], after_ab[REGION];
    uint32_t cuts = 0;
    char ua[33], ub[33], uc[33];
    if (argc == 6 && strcmp(argv[1], "--stride") == 0) {
        s_stride = (uint32_t)atoi(argv[2]);
        if (s_stride == 0) s_stride = 1;
        argv += 2;
        argc -= 2;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: pv_store_test [--stride N] A.bin B.bin C.bin (valid θ blobs of three users)\n");
        return 2;
    }
    na = read_blob(argv[1], s_a, sizeof(s_a), 10);
    nb = read_blob(argv[2], s_b, sizeof(s_b), 20);
    nc = read_blob(argv[3], s_c, sizeof(s_c), 30);
    memcpy(ua, s_a + ENV + 20, 32);
    memcpy(ub, s_b + ENV + 20, 32);
    memcpy(uc, s_c + ENV + 20, 32);
    ua[32] = ub[32] = uc[32] = 0;

    /* blank flash: no θ */
    memset(s_flash, 0xFF, sizeof(s_flash));
    CHECK(pv_store_init(&s, &f) == 0);
    CHECK(s.active == PV_SLOT_NONE);
    CHECK(pv_store_commit(&s) == PV_STORE_ERR_STATE);
    /* zeroed RAM (QEMU's first boot) is no θ either */
    memset(s_flash, 0x00, sizeof(s_flash));
    CHECK(pv_store_init(&s, &f) == 0 && s.active == PV_SLOT_NONE);
    memset(s_flash, 0xFF, sizeof(s_flash));
    CHECK(pv_store_init(&s, &f) == 0);

    /* first θ */
    CHECK(transfer(&s, s_a, na, 100) == 0);
    CHECK(s.active == 0 && s.counter == 1 && strcmp(active_user(&s), ua) == 0);
    CHECK(pv_store_init(&s, &f) == 0 && s.active == 0 && strcmp(active_user(&s), ua) == 0);
    memcpy(after_a, s_flash, REGION);

    /* refusals leave alice active */
    {
        uint8_t *bad = s_bad;
        uint32_t n = nb;
        memcpy(bad, s_b, n);
        bad[ENV + 12] ^= 0xFF; /* another architecture */
        reseal(bad, 20);
        CHECK(pv_store_write_chunk(&s, 0, bad, n) == PV_STORE_ERR_ARCH);
        memcpy(bad, s_b, n);
        bad[ENV + 70] ^= 1; /* payload corrupted after the CRC was computed, then signed */
        sign_test(bad, blob_size(bad), 20);
        CHECK(transfer(&s, bad, n, 128) == PV_STORE_ERR_CRC);
        memcpy(bad, s_b, n);
        bad[ENV + 64 + 32] ^= 1; /* a layer record broken, CRC fine, signed: pv_blob_parse refuses it */
        reseal(bad, 20);
        CHECK(transfer(&s, bad, n, 1000) == PV_STORE_ERR_BLOB);
        CHECK(s.last_blob_err != 0);
        CHECK(pv_store_write_chunk(&s, 0, bad, 10) == PV_STORE_ERR_HEADER);
        /* the signature: a bare blob, a key nobody trusts, a forged signature under the trusted key's id,
         * the threshold changed after signing (CRC fixed), an older counter than alice's */
        CHECK(pv_store_write_chunk(&s, 0, s_b + ENV, 1000) == PV_STORE_ERR_UNSIGNED);
        memcpy(bad, s_b, n);
        sign_env(bad, blob_size(bad), 20, s_other_seed, (const uint8_t *)"untrust!");
        CHECK(pv_store_write_chunk(&s, 0, bad, n) == PV_STORE_ERR_KEY);
        CHECK(s.last_sign_err == PV_SIGN_ERR_KEY);
        memcpy(bad, s_b, n);
        sign_env(bad, blob_size(bad), 20, s_other_seed, pv_trusted_keys[0].key_id);
        CHECK(transfer(&s, bad, n, 512) == PV_STORE_ERR_SIGNATURE);
        CHECK(s.last_sign_err == PV_SIGN_ERR_SIGNATURE);
        memcpy(bad, s_b, n);
        bad[ENV + PV_BLOB_HDR_THRESHOLD_LOGIT + 3] ^= 0x80; /* the threshold's sign */
        pv_wr32(bad + ENV + blob_size(bad) - 4u, pv_crc32(0, bad + ENV, blob_size(bad) - 4u));
        CHECK(transfer(&s, bad, n, 512) == PV_STORE_ERR_SIGNATURE);
        memcpy(bad, s_b, n);
        sign_test(bad, blob_size(bad), counter_of(s_a) - 1u);
        CHECK(pv_store_write_chunk(&s, 0, bad, n) == PV_STORE_ERR_REPLAY);
        CHECK(s.theta_counter == counter_of(s_a));
        memcpy(bad, s_b, n);
        memcpy(bad, "XXXX", 4);
        CHECK(pv_store_write_chunk(&s, 0, bad, 64) == PV_STORE_ERR_UNSIGNED);
        memcpy(bad, s_b, n);
        pv_wr32(bad + PV_SIGNED_HDR_TOTAL_SIZE, 0x20000u); /* total inconsistent (and bigger than a slot) */
        CHECK(pv_store_write_chunk(&s, 0, bad, 128) == PV_STORE_ERR_HEADER);
        memcpy(bad, s_b, n);
        pv_wr32(bad + PV_SIGNED_HDR_TOTAL_SIZE, 0x20000u + PV_SIGNED_OVERHEAD);
        pv_wr32(bad + PV_SIGNED_HDR_BLOB_SIZE, 0x20000u); /* consistent, but bigger than a slot */
        CHECK(pv_store_write_chunk(&s, 0, bad, 128) == PV_STORE_ERR_HEADER);
        memcpy(bad, s_b, n);
        CHECK(pv_store_write_chunk(&s, 0, bad, 64) == PV_STORE_ERR_HEADER); /* the blob header not in it */
        CHECK(pv_store_write_chunk(&s, 0, bad, 64 + ENV) == 0);
        CHECK(pv_store_write_chunk(&s, 100, bad + 100, 10) == PV_STORE_ERR_STATE); /* gap */
        CHECK(pv_store_commit(&s) == PV_STORE_ERR_SIZE);                           /* incomplete */
        CHECK(pv_store_write_chunk(&s, 64, bad + 64, 100) == 0);
        CHECK(pv_store_write_chunk(&s, 64, bad + 64, 100) == 0); /* resent chunk */
        bad[65] ^= 0x10;
        CHECK(pv_store_write_chunk(&s, 64, bad + 64, 100) == PV_STORE_ERR_MISMATCH);
        bad[65] ^= 0x10;
        CHECK(pv_store_write_chunk(&s, 164, bad + 164, n) == PV_STORE_ERR_SIZE); /* past the end */
        CHECK(pv_store_commit(&s) == PV_STORE_ERR_SIZE);
        CHECK(strcmp(active_user(&s), ua) == 0);
        CHECK(pv_store_init(&s, &f) == 0 && strcmp(active_user(&s), ua) == 0 && s.counter == 1);
    }

    /* second θ into the other slot; boot picks the higher counter */
    memcpy(s_flash, after_a, REGION);
    CHECK(pv_store_init(&s, &f) == 0);
    CHECK(transfer(&s, s_b, nb, 256) == 0);
    CHECK(s.active == 1 && s.counter == 2 && strcmp(active_user(&s), ub) == 0);
    CHECK(pv_store_init(&s, &f) == 0 && s.active == 1 && strcmp(active_user(&s), ub) == 0);
    memcpy(after_ab, s_flash, REGION);
    /* a damaged newer slot falls back to the older one */
    s_flash[SLOT + PV_SLOT_HEADER_BYTES + 100] ^= 0x01;
    CHECK(pv_store_init(&s, &f) == 0 && s.active == 0 && strcmp(active_user(&s), ua) == 0);
    memcpy(s_flash, after_ab, REGION);

    /* power cut at every byte the update alice -> bob writes (every 97th byte of the erase) */
    cuts += cut_test(&s, &f, after_a, s_b, nb, 128, ua, ub, 2);
    /* and while bob -> carol overwrites alice's old slot */
    cuts += cut_test(&s, &f, after_ab, s_c, nc, 200, ub, uc, 3);
    /* the journal is the real thing: a budgeted run stops exactly where the replay says */
    {
        int ok = 1;
        for (long cut = (long)SLOT + 5000; cut < (long)SLOT + 5100; cut++) {
            memcpy(s_flash, after_a, REGION);
            pv_store_init(&s, &f);
            s_budget = cut;
            (void)transfer(&s, s_b, nb, 128);
            s_budget = -1;
            pv_store_init(&s, &f);
            if (strcmp(active_user(&s), ua) != 0) ok = 0;
        }
        CHECK(ok);
    }
    printf("power cuts simulated: %u\n", (unsigned)cuts);
    printf("%d passed, %d failed\n", s_pass, s_fail);
    return s_fail == 0 ? 0 : 1;
}
