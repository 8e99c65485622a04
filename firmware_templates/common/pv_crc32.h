/* pv_crc32: zlib-compatible CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), incremental. */
#ifndef PV_CRC32_H
#define PV_CRC32_H

#include <stdint.h>

/* crc = pv_crc32(0, p, n) equals Python's zlib.crc32(p); continue with pv_crc32(crc, next, m). */
uint32_t pv_crc32(uint32_t crc, const uint8_t *p, uint32_t n);

#endif /* PV_CRC32_H */
