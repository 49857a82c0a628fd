/* Saved-state helpers for the component tests (hv and devices): a file in a memfd written with
 * a component's save and read back section by section, and hand-made sections over bytes for
 * the hostile-input cases. Include after cmocka.h. */
#ifndef VIRIDIAN_TESTS_STATE_FILE_H
#define VIRIDIAN_TESTS_STATE_FILE_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "state/savedstate.h"

static const uint8_t sf_digest[STATE_DIGEST_SIZE] = { 0x5a };

struct sf {
	int fd;
	struct state_reader *r;
};

/* A new file with its header written; the component's save goes to the writer. */
static inline struct state_writer *sf_begin(struct sf *f)
{
	struct state_writer *w = NULL;
	f->fd = memfd_create("state", 0);
	f->r = NULL;
	assert_true(f->fd >= 0);
	assert_int_equal(state_writer_open(&w, f->fd, sf_digest), 0);
	return w;
}

/* Writes END and opens the file for reading from its start. */
static inline void sf_end(struct sf *f, struct state_writer *w)
{
	assert_int_equal(state_writer_finish(w), 0);
	assert_int_equal(lseek(f->fd, 0, SEEK_SET), 0);
	struct state_reader_options o = { .expected_digest = sf_digest };
	assert_int_equal(state_reader_open(&f->r, f->fd, &o), 0);
}

/* The next section (1), or 0 at END. */
static inline int sf_next(struct sf *f, struct state_section *sec)
{
	int rc = state_reader_next(f->r, sec);
	assert_true(rc >= 0);
	return rc;
}

/* Byte-for-byte comparison of two whole files. */
static inline void sf_assert_same(const struct sf *a, const struct sf *b)
{
	off_t na = lseek(a->fd, 0, SEEK_END), nb = lseek(b->fd, 0, SEEK_END);
	assert_int_equal(na, nb);
	const void *ma = mmap(NULL, (size_t)na, PROT_READ, MAP_SHARED, a->fd, 0);
	const void *mb = mmap(NULL, (size_t)nb, PROT_READ, MAP_SHARED, b->fd, 0);
	assert_true(ma != MAP_FAILED && mb != MAP_FAILED);
	assert_memory_equal(ma, mb, (size_t)na);
	munmap((void *)ma, (size_t)na);
	munmap((void *)mb, (size_t)nb);
}

static inline void sf_close(struct sf *f)
{
	if (f->r)
		state_reader_close(f->r);
	close(f->fd);
}

/* The payload of the first section of the file, copied to *out (malloc'd; *len bytes). */
static inline void sf_first_payload(struct sf *f, uint8_t **out, size_t *len)
{
	struct state_section sec;
	assert_int_equal(sf_next(f, &sec), 1);
	*len = sec.payload.size;
	*out = malloc(*len + 1);
	assert_non_null(*out);
	memcpy(*out, sec.payload.data, *len);
	(*out)[*len] = 0;
}

/* A section as the reader hands it, over len bytes at p. */
static inline struct state_section sf_section(uint32_t type, uint32_t instance, uint16_t version,
					      const void *p, size_t len)
{
	return (struct state_section){ .type = type, .instance = instance, .version = version,
				       .payload = { .data = p, .size = len } };
}

/* Little-endian field of width bytes at off. */
static inline void sf_poke(uint8_t *buf, size_t off, uint64_t v, unsigned width)
{
	for (unsigned i = 0; i < width; i++)
		buf[off + i] = (uint8_t)(v >> (8 * i));
}

/* restore(obj, sec) fails cleanly for every truncation of the payload and one byte too many;
 * buf has room for len + 1 bytes. */
static inline void sf_assert_exact_length(int (*restore)(void *obj, const struct state_section *),
					  void *obj, uint32_t type, uint32_t instance, uint8_t *buf,
					  size_t len)
{
	for (size_t n = 0; n <= len + 1; n++) {
		if (n == len)
			continue;
		struct state_section sec = sf_section(type, instance, 1, buf, n);
		assert_int_equal(restore(obj, &sec), -EBADMSG);
		assert_non_null(state_last_error());
	}
}

#define sf_assert_error(call, err, text)                                                   \
	do {                                                                               \
		assert_int_equal((call), (err));                                           \
		if (!strstr(state_last_error(), (text)))                                   \
			fail_msg("error \"%s\" does not say \"%s\"", state_last_error(), (text)); \
	} while (0)

#endif
