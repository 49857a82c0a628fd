/* The Internet checksum written the plain way, to check the product's against. */
#ifndef VIRIDIAN_TESTS_REF_CHECKSUM_H
#define VIRIDIAN_TESTS_REF_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* The folded one's-complement sum of p[0..n) plus start (not complemented). */
static inline uint16_t ref_sum(const uint8_t *p, size_t n, uint32_t start)
{
	uint64_t s = start;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* The checksum field's value: 0 when checking data that includes a right checksum. */
static inline uint16_t ref_csum(const uint8_t *p, size_t n, uint32_t start)
{
	return (uint16_t)~ref_sum(p, n, start);
}

#endif
