/* The saved-state format: round trips of sections and guest RAM (zero, random and sparse
 * pages, a size that is not whole chunks), streaming through a pipe, the compatibility rules
 * (newer minor, other major, other VM), and hostile files: every truncation and every
 * single-bit flip of a valid file must fail with a message, never crash or over-read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "state/savedstate.h"

#define PAGE STATE_PAGE_SIZE
#define CHUNK STATE_CHUNK_SIZE

static uint8_t digest[STATE_DIGEST_SIZE];
static const char config[] = "memory=16M;cpus=2;disk=scsi0:root.vhdx";

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s;
}

static void fill_random(uint64_t *seed, void *buf, size_t len)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rng_next(seed);
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

/* A region with every kind of chunk: dense random, absent (all zero), sparse with pages that
 * differ from zero only in their last byte, and a partial last chunk. */
static uint8_t *make_ram(uint64_t size)
{
	uint8_t *ram = calloc(1, size);
	assert_non_null(ram);
	uint64_t seed = 0x5eed;
	fill_random(&seed, ram, CHUNK);                                  /* chunk 0: dense */
	for (uint64_t p = CHUNK * 2; p < CHUNK * 3; p += 3 * PAGE)        /* chunk 2: sparse */
		fill_random(&seed, ram + p, PAGE);
	ram[CHUNK * 2 + PAGE + PAGE - 1] = 1;
	if (size > CHUNK * 4)
		fill_random(&seed, ram + CHUNK * 4, size - CHUNK * 4 - PAGE); /* tail, last page 0 */
	return ram;
}

static int memfd_with(const void *data, size_t len)
{
	int fd = memfd_create("state", 0);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static uint8_t *slurp(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	assert_true(end > 0);
	uint8_t *buf = malloc((size_t)end);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)end, 0), end);
	*len = (size_t)end;
	return buf;
}

static const uint8_t blob[5] = { 'x', 's', 'a', 'v', 'e' };

/* Sections before and after the RAM, as components will write them. */
static void write_file(int fd, const uint8_t *ram, uint64_t ram_size)
{
	struct state_writer *w;
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	for (uint32_t cpu = 0; cpu < 2; cpu++) {
		assert_int_equal(state_section_begin(w, STATE_SECTION_VCPU, cpu, 3, 0), 0);
		state_put_u8(w, 0xa0 + (uint8_t)cpu);
		state_put_u16(w, 0xbeef);
		state_put_u32(w, 0xdeadbeef);
		state_put_u64(w, 0x0123456789abcdefull + cpu);
		state_put_bytes(w, blob, sizeof(blob));
		assert_int_equal(state_section_end(w), 0);
	}
	assert_int_equal(state_section_begin(w, STATE_SECTION_UART, 0, 1, 0), 0);
	assert_int_equal(state_section_end(w), 0); /* an empty payload */
	assert_int_equal(state_writer_ram(w, ram, ram_size), 0);
	assert_int_equal(state_section_begin(w, STATE_SECTION_IC, 7, 2, STATE_SECTION_OPTIONAL), 0);
	state_put_u32(w, 42);
	assert_int_equal(state_section_end(w), 0);
	assert_int_equal(state_writer_finish(w), 0);
}

/* Reads a write_file() file back and checks everything in it. */
static void check_file(int fd, const uint8_t *ram, uint64_t ram_size)
{
	struct state_reader *r;
	struct state_reader_options o = { .expected_digest = digest };
	assert_int_equal(state_reader_open(&r, fd, &o), 0);
	assert_int_equal(state_reader_minor(r), STATE_FORMAT_MINOR);
	struct state_section s;
	for (uint32_t cpu = 0; cpu < 2; cpu++) {
		assert_int_equal(state_reader_next(r, &s), 1);
		assert_int_equal(s.type, STATE_SECTION_VCPU);
		assert_int_equal(s.instance, cpu);
		assert_int_equal(s.version, 3);
		assert_int_equal(state_get_u8(&s.payload), 0xa0 + cpu);
		assert_int_equal(state_get_u16(&s.payload), 0xbeef);
		assert_int_equal(state_get_u32(&s.payload), 0xdeadbeef);
		assert_int_equal(state_get_u64(&s.payload), 0x0123456789abcdefull + cpu);
		uint8_t got[sizeof(blob)];
		state_get_bytes(&s.payload, got, sizeof(got));
		assert_memory_equal(got, blob, sizeof(blob));
		assert_true(state_cursor_ok(&s.payload));
		assert_int_equal(state_cursor_left(&s.payload), 0);
	}
	assert_int_equal(state_reader_next(r, &s), 1);
	assert_int_equal(s.type, STATE_SECTION_UART);
	assert_int_equal(s.payload.size, 0);
	assert_int_equal(state_reader_next(r, &s), 1);
	assert_int_equal(s.type, STATE_SECTION_RAM);
	/* Written over garbage: the zero pages must come back as zeros too. */
	uint8_t *back = malloc(ram_size);
	assert_non_null(back);
	memset(back, 0xaa, ram_size);
	assert_int_equal(state_reader_ram(r, back, ram_size, 0), 0);
	assert_memory_equal(back, ram, ram_size);
	free(back);
	assert_int_equal(state_reader_next(r, &s), 1);
	assert_int_equal(s.type, STATE_SECTION_IC);
	assert_int_equal(s.instance, 7);
	assert_int_equal(s.flags, STATE_SECTION_OPTIONAL);
	assert_int_equal(state_get_u32(&s.payload), 42);
	assert_int_equal(state_reader_next(r, &s), 0);
	assert_int_equal(state_reader_next(r, &s), 0); /* END stays the end */
	state_reader_close(r);
}

/* Reads every section and the RAM of any file, as a restore would; 0 or the failure. */
static int consume(const uint8_t *file, size_t len, uint64_t ram_size, const uint8_t *want)
{
	int fd = memfd_with(file, len);
	struct state_reader *r;
	struct state_reader_options o = { .expected_digest = want };
	int rc = state_reader_open(&r, fd, &o);
	if (!rc) {
		uint8_t *ram = calloc(1, ram_size);
		assert_non_null(ram);
		struct state_section s;
		while ((rc = state_reader_next(r, &s)) > 0)
			if (s.type == STATE_SECTION_RAM && (rc = state_reader_ram(r, ram, ram_size,
										  STATE_RAM_ZEROED)))
				break;
		free(ram);
		state_reader_close(r);
	}
	close(fd);
	return rc;
}

static int setup(void **state)
{
	(void)state;
	return state_config_digest(config, strlen(config), digest);
}

static void test_crc32c(void **state)
{
	(void)state;
	assert_int_equal(state_crc32c(0, "123456789", 9), 0xE3069283); /* the check value */
	assert_int_equal(state_crc32c_sw(0, "123456789", 9), 0xE3069283);
	uint8_t buf[1000];
	uint64_t seed = 1;
	fill_random(&seed, buf, sizeof(buf));
	for (size_t n = 0; n < sizeof(buf); n += 37)
		assert_int_equal(state_crc32c(0, buf, n), state_crc32c_sw(0, buf, n));
	assert_int_equal(state_crc32c(state_crc32c(0, buf, 333), buf + 333, 667),
			 state_crc32c(0, buf, 1000));
}

static void test_digest(void **state)
{
	(void)state;
	static const uint8_t abc[STATE_DIGEST_SIZE] = { /* FIPS 180-2's "abc" */
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
		0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
	};
	uint8_t out[STATE_DIGEST_SIZE];
	assert_int_equal(state_config_digest("abc", 3, out), 0);
	assert_memory_equal(out, abc, sizeof(abc));
}

static void test_round_trip(void **state)
{
	(void)state;
	uint64_t size = 5 * CHUNK + 3 * PAGE; /* not whole chunks */
	uint8_t *ram = make_ram(size);
	int fd = memfd_create("state", 0);
	write_file(fd, ram, size);
	off_t file_size = lseek(fd, 0, SEEK_END);
	/* Zero chunks and pages skipped: about the random pages' worth, not all of RAM. */
	assert_true(file_size < (off_t)(3 * CHUNK));
	lseek(fd, 0, SEEK_SET);
	check_file(fd, ram, size);

	/* Into a region known to be zero, leaving its zero pages untouched. */
	lseek(fd, 0, SEEK_SET);
	struct state_reader *r;
	assert_int_equal(state_reader_open(&r, fd, NULL), 0);
	struct state_section s;
	do
		assert_int_equal(state_reader_next(r, &s), 1);
	while (s.type != STATE_SECTION_RAM);
	uint8_t *back = calloc(1, size);
	assert_int_equal(state_reader_ram(r, back, size, STATE_RAM_ZEROED), 0);
	assert_memory_equal(back, ram, size);
	assert_int_equal(state_reader_next(r, &s), 1);
	assert_int_equal(s.type, STATE_SECTION_IC);
	state_reader_close(r);
	free(back);
	free(ram);
	close(fd);
}

/* A reader that does not want the RAM still gets the sections after it. */
static void test_ram_skipped(void **state)
{
	(void)state;
	uint64_t size = 3 * CHUNK;
	uint8_t *ram = make_ram(size);
	int fd = memfd_create("state", 0);
	write_file(fd, ram, size);
	lseek(fd, 0, SEEK_SET);
	struct state_reader *r;
	assert_int_equal(state_reader_open(&r, fd, NULL), 0);
	struct state_section s;
	uint32_t types[8];
	int n = 0, rc;
	while ((rc = state_reader_next(r, &s)) > 0 && n < 8)
		types[n++] = s.type;
	assert_int_equal(rc, 0);
	assert_int_equal(n, 5);
	assert_int_equal(types[3], STATE_SECTION_RAM);
	assert_int_equal(types[4], STATE_SECTION_IC);
	state_reader_close(r);
	free(ram);
	close(fd);
}

struct pipe_writer {
	int fd;
	const uint8_t *ram;
	uint64_t size;
};

static void *write_to_pipe(void *arg)
{
	struct pipe_writer *p = arg;
	write_file(p->fd, p->ram, p->size);
	close(p->fd);
	return NULL;
}

/* Far more than a pipe holds, so writer and reader must both stream. */
static void test_pipe(void **state)
{
	(void)state;
	uint64_t size = 6 * CHUNK;
	uint8_t *ram = make_ram(size);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	struct pipe_writer p = { fds[1], ram, size };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, write_to_pipe, &p), 0);
	check_file(fds[0], ram, size);
	pthread_join(t, NULL);
	close(fds[0]);
	free(ram);
}

/* A small valid file (sparse RAM keeps it small) for the hostile-input loops. */
static uint8_t *small_file(size_t *len, uint64_t *ram_size)
{
	*ram_size = CHUNK + 2 * PAGE;
	uint8_t *ram = calloc(1, *ram_size);
	uint64_t seed = 7;
	fill_random(&seed, ram + 5 * PAGE, PAGE);
	memset(ram + 9 * PAGE, 0x5a, PAGE);
	ram[CHUNK + 17] = 3; /* the last chunk dense, the first sparse */
	ram[CHUNK + PAGE + 17] = 3;
	int fd = memfd_create("state", 0);
	write_file(fd, ram, *ram_size);
	uint8_t *file = slurp(fd, len);
	close(fd);
	free(ram);
	return file;
}

static void test_truncated(void **state)
{
	(void)state;
	size_t len;
	uint64_t ram_size;
	uint8_t *file = small_file(&len, &ram_size);
	assert_int_equal(consume(file, len, ram_size, digest), 0);
	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(consume(file, cut, ram_size, digest), -EBADMSG);
		assert_non_null(strstr(state_last_error(), "truncated"));
	}
	free(file);
}

/* The offsets of the file header's and every section header's bytes. */
static size_t header_bytes(const uint8_t *file, size_t len, size_t *at, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < sizeof(struct state_file_header); i++)
		at[n++] = i;
	for (size_t off = sizeof(struct state_file_header); off < len;) {
		struct state_section_header h;
		memcpy(&h, file + off, sizeof(h));
		for (size_t i = 0; i < sizeof(h) && n < max; i++)
			at[n++] = off + i;
		off += sizeof(h) + le64toh(h.length);
	}
	return n;
}

static void test_bit_flips(void **state)
{
	(void)state;
	size_t len;
	uint64_t ram_size;
	uint8_t *file = small_file(&len, &ram_size);
	size_t at[1024];
	size_t n = header_bytes(file, len, at, 1024);
	assert_true(n > sizeof(struct state_file_header) + 6 * sizeof(struct state_section_header));
	/* Every bit of every header: lengths, types, versions, flags, checksums. */
	for (size_t i = 0; i < n; i++)
		for (int bit = 0; bit < 8; bit++) {
			file[at[i]] ^= (uint8_t)(1u << bit);
			assert_true(consume(file, len, ram_size, NULL) < 0);
			assert_true(strlen(state_last_error()) > 0);
			file[at[i]] ^= (uint8_t)(1u << bit);
		}
	/* One bit of every byte, payloads included: a CRC-32C catches each. */
	for (size_t i = 0; i < len; i++) {
		file[i] ^= (uint8_t)(1u << (i % 8));
		assert_true(consume(file, len, ram_size, NULL) < 0);
		file[i] ^= (uint8_t)(1u << (i % 8));
	}
	assert_int_equal(consume(file, len, ram_size, digest), 0);
	free(file);
}

/* The file's header rewritten with another version, checksum recomputed. */
static void set_version(uint8_t *file, uint16_t major, uint16_t minor)
{
	struct state_file_header h;
	uint8_t kept[STATE_DIGEST_SIZE];
	memcpy(kept, file + offsetof(struct state_file_header, config_digest), sizeof(kept));
	state_encode_file_header(&h, major, minor, kept);
	memcpy(file, &h, sizeof(h));
}

static void test_other_major(void **state)
{
	(void)state;
	size_t len;
	uint64_t ram_size;
	uint8_t *file = small_file(&len, &ram_size);
	set_version(file, STATE_FORMAT_MAJOR + 1, 0);
	assert_int_equal(consume(file, len, ram_size, digest), -EPROTONOSUPPORT);
	assert_non_null(strstr(state_last_error(), "format version 2.0 is not supported"));
	free(file);
}

static void test_other_vm(void **state)
{
	(void)state;
	size_t len;
	uint64_t ram_size;
	uint8_t *file = small_file(&len, &ram_size);
	uint8_t other[STATE_DIGEST_SIZE];
	assert_int_equal(state_config_digest("memory=32M;cpus=2", 17, other), 0);
	assert_int_equal(consume(file, len, ram_size, other), -ESTALE);
	assert_non_null(strstr(state_last_error(), "different configuration"));
	free(file);
}

static void warned(void *ctx, const char *message)
{
	char *seen = ctx;
	snprintf(seen, 256, "%s", message);
}

/* A file from a newer minor: a section this build does not know, spliced after the header. */
static uint8_t *newer_file(uint16_t flags, uint16_t minor, size_t *len)
{
	size_t base_len;
	uint64_t ram_size;
	uint8_t *base = small_file(&base_len, &ram_size);
	set_version(base, STATE_FORMAT_MAJOR, minor);
	static const uint8_t payload[] = "future state";
	struct state_section_header h;
	state_encode_section_header(&h, 0x7777, 0, 1, flags, payload, sizeof(payload));
	size_t head = sizeof(struct state_file_header);
	*len = base_len + sizeof(h) + sizeof(payload);
	uint8_t *file = malloc(*len);
	memcpy(file, base, head);
	memcpy(file + head, &h, sizeof(h));
	memcpy(file + head + sizeof(h), payload, sizeof(payload));
	memcpy(file + head + sizeof(h) + sizeof(payload), base + head, base_len - head);
	free(base);
	return file;
}

static void test_newer_minor(void **state)
{
	(void)state;
	size_t len;
	uint8_t *file = newer_file(STATE_SECTION_OPTIONAL, STATE_FORMAT_MINOR + 1, &len);
	int fd = memfd_with(file, len);
	char seen[256] = "";
	struct state_reader_options o = { .expected_digest = digest, .warn = warned, .warn_ctx = seen };
	struct state_reader *r;
	assert_int_equal(state_reader_open(&r, fd, &o), 0);
	assert_int_equal(state_reader_minor(r), STATE_FORMAT_MINOR + 1);
	struct state_section s;
	assert_int_equal(state_reader_next(r, &s), 1);
	assert_int_equal(s.type, STATE_SECTION_VCPU); /* the unknown one was skipped */
	assert_non_null(strstr(seen, "skipped optional section type 0x7777"));
	state_reader_close(r);
	close(fd);
	free(file);

	/* Unknown and required: this build cannot restore it. */
	uint64_t ram_size = CHUNK + 2 * PAGE;
	file = newer_file(0, STATE_FORMAT_MINOR + 1, &len);
	assert_int_equal(consume(file, len, ram_size, digest), -EPROTONOSUPPORT);
	assert_non_null(strstr(state_last_error(), "cannot restore"));
	free(file);
	/* Unknown in a file of this minor: no writer of it makes one, so it is corrupt. */
	file = newer_file(STATE_SECTION_OPTIONAL, STATE_FORMAT_MINOR, &len);
	assert_int_equal(consume(file, len, ram_size, digest), -EBADMSG);
	free(file);
}

static void test_wrong_ram_size(void **state)
{
	(void)state;
	size_t len;
	uint64_t ram_size;
	uint8_t *file = small_file(&len, &ram_size);
	assert_int_equal(consume(file, len, ram_size - PAGE, digest), -EINVAL);
	assert_non_null(strstr(state_last_error(), "this VM has"));
	assert_int_equal(consume(file, len, ram_size + CHUNK, digest), -EINVAL);
	free(file);
}

/* Forged lengths with valid header checksums: refused before anything large is allocated. */
static void test_forged_lengths(void **state)
{
	(void)state;
	struct state_file_header fh;
	state_encode_file_header(&fh, STATE_FORMAT_MAJOR, STATE_FORMAT_MINOR, digest);
	uint8_t file[sizeof(fh) + sizeof(struct state_section_header) + 16];
	memcpy(file, &fh, sizeof(fh));
	struct state_section_header h;
	state_encode_section_header(&h, STATE_SECTION_VCPU, 0, 1, 0, NULL, 0);
	uint64_t lengths[] = { STATE_SECTION_MAX, (uint64_t)STATE_SECTION_MAX + 1, UINT64_MAX };
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		h.length = htole64(lengths[i]);
		h.header_crc = htole32(state_crc32c(0, &h, offsetof(struct state_section_header,
								     header_crc)));
		memcpy(file + sizeof(fh), &h, sizeof(h));
		assert_int_equal(consume(file, sizeof(file), PAGE, digest), -EBADMSG);
	}
}

static void test_cursor(void **state)
{
	(void)state;
	const uint8_t data[3] = { 1, 2, 3 };
	struct state_cursor c = { data, sizeof(data), 0, false };
	assert_int_equal(state_get_u16(&c), 0x0201);
	assert_int_equal(state_get_u16(&c), 0); /* one byte left: overrun */
	assert_false(state_cursor_ok(&c));
	assert_int_equal(state_get_u8(&c), 0);  /* and it stays so */
	assert_int_equal(state_cursor_left(&c), 0);
	uint8_t out[4] = { 9, 9, 9, 9 };
	state_get_bytes(&c, out, sizeof(out));
	assert_memory_equal(out, "\0\0\0\0", 4);
}

static void test_writer_misuse(void **state)
{
	(void)state;
	int fd = memfd_create("state", 0);
	struct state_writer *w;
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	assert_int_equal(state_section_begin(w, STATE_SECTION_RAM, 0, 1, 0), -EINVAL);
	state_writer_discard(w);

	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	state_put_u32(w, 1); /* no section open: reported once, at the end */
	assert_int_equal(state_writer_finish(w), -EINVAL);

	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	uint8_t ram[PAGE + 1] = { 0 };
	assert_int_equal(state_writer_ram(w, ram, sizeof(ram)), -EINVAL);
	state_writer_discard(w);

	int fds[2];
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	assert_int_equal(state_writer_open(&w, fds[1], digest), -EPIPE); /* SIGPIPE ignored */
	assert_non_null(strstr(state_last_error(), "write failed"));
	close(fds[1]);
	close(fd);
}

/* `state_savedstate --seed FILE MODE` writes small_file() as a fuzz seed (tests/fuzz/state):
 * the fuzz target's leading mode byte, then the file. */
static int write_seed(const char *path, uint8_t mode)
{
	size_t len;
	uint64_t ram_size;
	uint8_t *file = small_file(&len, &ram_size);
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(&mode, 1, 1, f) == 1 && fwrite(file, 1, len, f) == len;
	ok = f && !fclose(f) && ok;
	free(file);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (setup(NULL))
		return 1;
	if (argc == 4 && !strcmp(argv[1], "--seed"))
		return write_seed(argv[2], (uint8_t)atoi(argv[3]));
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_ram_skipped),
		cmocka_unit_test(test_pipe),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_other_major),
		cmocka_unit_test(test_other_vm),
		cmocka_unit_test(test_newer_minor),
		cmocka_unit_test(test_wrong_ram_size),
		cmocka_unit_test(test_forged_lengths),
		cmocka_unit_test(test_cursor),
		cmocka_unit_test(test_writer_misuse),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
