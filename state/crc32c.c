/* CRC-32C, the checksum of every saved-state header and payload. The payloads include all of
 * guest RAM (compressed), so this uses the SSE4.2 crc32 instruction (several GB/s); the
 * bitwise path is for CPUs without it. vhd/ has a table-driven CRC-32C of its own for VHDX
 * metadata, private to that library. */
#include <nmmintrin.h>
#include <string.h>

#include "internal.h"

#define CASTAGNOLI_REFLECTED 0x82F63B78u

uint32_t state_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ CASTAGNOLI_REFLECTED : crc >> 1;
	}
	return ~crc;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *buf,
							       size_t len)
{
	const uint8_t *p = buf;
	uint64_t c = ~crc;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = _mm_crc32_u8(c32, *p++);
	return ~c32;
}

uint32_t state_crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (__builtin_cpu_supports("sse4.2"))
		return crc32c_sse42(crc, buf, len);
	return state_crc32c_sw(crc, buf, len);
}
