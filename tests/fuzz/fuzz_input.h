/* The fuzz targets' input reader: bytes taken from the front of libFuzzer's input; past its end
 * every take is 0, so a target never needs to check the length between steps. */
#ifndef VIRIDIAN_TESTS_FUZZ_INPUT_H
#define VIRIDIAN_TESTS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct in {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t take(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static inline uint32_t take32(struct in *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | take(in);
	return v;
}

/* Up to want bytes into dst; how many there were. */
static inline size_t take_bytes(struct in *in, uint8_t *dst, size_t want)
{
	size_t n = want < in->n ? want : in->n;
	memcpy(dst, in->p, n);
	in->p += n;
	in->n -= n;
	return n;
}

#endif
