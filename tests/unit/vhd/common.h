/* Helpers shared by the vhd unit tests: scratch directories and deterministic data. */
#ifndef VIRIDIAN_TEST_VHD_COMMON_H
#define VIRIDIAN_TEST_VHD_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s;
}

static inline void fill_random(uint64_t *seed, void *buf, size_t len)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rng_next(seed);
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

/* A fresh directory under /tmp; removed by scratch_remove. */
static inline void scratch_dir(char *out, size_t n)
{
	snprintf(out, n, "/tmp/vhdtest.XXXXXX");
	if (!mkdtemp(out))
		abort();
}

static inline void scratch_remove(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		abort();
}

#endif
