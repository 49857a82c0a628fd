/* The live-migration stream (docs/savedstate.md "Live migration"): a RAM section without chunks,
 * then RAM_PAGES passes (a full one, then only changed pages, zero pages as bits), read back into
 * the exact final RAM; and hostile RAM_PAGES sections (before the RAM section, outside RAM,
 * a data bit without its sent bit, a frame of the wrong size or not zstd), each refused with a
 * message and leaving RAM as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "state/savedstate.h"

#define PAGE STATE_PAGE_SIZE
#define CHUNK STATE_CHUNK_SIZE
#define RAM_SIZE (2 * CHUNK + 3 * PAGE) /* the last chunk is partial */

static uint8_t digest[STATE_DIGEST_SIZE];

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static int memfd(void)
{
	int fd = memfd_create("mig", 0);
	assert_true(fd >= 0);
	return fd;
}

static void set_bit(uint8_t *mask, size_t i)
{
	mask[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* A source RAM, a stream with two passes over it, and the RAM the reader must end with. */
static void write_stream(int fd, uint8_t *ram)
{
	memset(ram, 0, RAM_SIZE);
	fill(ram, CHUNK, 1);                              /* chunk 0 dense */
	for (size_t p = 0; p < STATE_CHUNK_PAGES; p += 5) /* chunk 1 sparse */
		fill(ram + CHUNK + p * PAGE, PAGE, (uint32_t)p);
	fill(ram + 2 * CHUNK, 2 * PAGE, 9);               /* partial chunk: pages 0, 1; 2 zero */
	struct state_writer *w;
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	assert_int_equal(state_writer_ram_begin(w, RAM_SIZE), 0);
	uint8_t all[STATE_CHUNK_PAGES / 8];
	memset(all, 0xff, sizeof(all));
	uint64_t bytes = 0;
	static uint64_t hashes[STATE_CHUNK_PAGES];
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, 0, all, hashes, &bytes), STATE_CHUNK_PAGES);
	for (size_t i = 0; i < STATE_CHUNK_PAGES; i++) /* what each page was sent as */
		assert_true(hashes[i] == state_page_hash(ram + i * PAGE));
	assert_true(hashes[0] != hashes[1]);
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, CHUNK, all, NULL, &bytes), STATE_CHUNK_PAGES);
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, 2 * CHUNK, all, NULL, &bytes), 3); /* clipped */
	assert_true(bytes > 0 && bytes < CHUNK + CHUNK / 5 + 3 * PAGE); /* zero pages cost bits only */
	/* The guest writes on: a page changes, one becomes zero, a zero one gets data. */
	uint8_t dirty[STATE_CHUNK_PAGES / 8] = { 0 };
	fill(ram + 7 * PAGE, PAGE, 77), set_bit(dirty, 7);
	memset(ram + 8 * PAGE, 0, PAGE), set_bit(dirty, 8);
	uint8_t none[STATE_CHUNK_PAGES / 8] = { 0 };
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, CHUNK, none, NULL, &bytes), 0); /* nothing */
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, 0, dirty, NULL, &bytes), 2);
	memset(dirty, 0, sizeof(dirty));
	fill(ram + CHUNK + PAGE, PAGE, 5), set_bit(dirty, 1);
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, CHUNK, dirty, NULL, &bytes), 1);
	assert_int_equal(state_section_begin(w, STATE_SECTION_UART, 0, 1, 0), 0);
	state_put_u32(w, 0x1234);
	assert_int_equal(state_section_end(w), 0);
	assert_int_equal(state_writer_finish(w), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
}

/* Reads the stream as vm_restore does; returns the first failure or 0. */
static int read_stream(int fd, uint8_t *ram)
{
	struct state_reader *r;
	struct state_reader_options o = { .expected_digest = digest };
	int rc = state_reader_open(&r, fd, &o);
	if (rc)
		return rc;
	struct state_section s;
	bool uart = false;
	while ((rc = state_reader_next(r, &s)) == 1) {
		int err = 0;
		if (s.type == STATE_SECTION_RAM)
			err = state_reader_ram(r, ram, RAM_SIZE, 0);
		else if (s.type == STATE_SECTION_RAM_PAGES)
			err = state_reader_pages(r, &s, ram, RAM_SIZE);
		else if (s.type == STATE_SECTION_UART)
			uart = state_get_u32(&s.payload) == 0x1234;
		if (err) {
			rc = err;
			break;
		}
	}
	state_reader_close(r);
	return rc ? rc : uart ? 0 : -ENOENT;
}

static void test_round_trip(void **state)
{
	(void)state;
	uint8_t *src = malloc(RAM_SIZE), *dst = malloc(RAM_SIZE);
	int fd = memfd();
	write_stream(fd, src);
	memset(dst, 0xcc, RAM_SIZE); /* whatever was there: zero pages must be written */
	assert_int_equal(read_stream(fd, dst), 0);
	assert_memory_equal(src, dst, RAM_SIZE);
	close(fd);
	free(src);
	free(dst);
}

/* A stream of a RAM section then one crafted RAM_PAGES payload (checksums valid). */
static int crafted(bool ram_first, const void *payload, size_t len)
{
	int fd = memfd();
	struct state_file_header fh;
	state_encode_file_header(&fh, STATE_FORMAT_MAJOR, STATE_FORMAT_MINOR, digest);
	assert_int_equal(write(fd, &fh, sizeof(fh)), (ssize_t)sizeof(fh));
	struct state_section_header h;
	if (ram_first) {
		struct state_ram_header rh = { htole64(RAM_SIZE), htole32(PAGE), htole32(CHUNK), htole32(STATE_RAM_ZSTD) };
		state_encode_section_header(&h, STATE_SECTION_RAM, 0, STATE_RAM_VERSION, 0, &rh, sizeof(rh));
		assert_int_equal(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
		assert_int_equal(write(fd, &rh, sizeof(rh)), (ssize_t)sizeof(rh));
	}
	state_encode_section_header(&h, STATE_SECTION_RAM_PAGES, 0, STATE_RAM_PAGES_VERSION, 0, payload, len);
	assert_int_equal(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	assert_int_equal(write(fd, payload, len), (ssize_t)len);
	state_encode_section_header(&h, STATE_SECTION_END, 0, 0, 0, NULL, 0);
	assert_int_equal(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	uint8_t *ram = malloc(RAM_SIZE);
	memset(ram, 0xab, RAM_SIZE);
	int rc = read_stream(fd, ram);
	if (rc == -ENOENT) /* read to the end (it has no UART section): the pages went in */
		rc = 0;
	else
		for (size_t i = 0; ram_first && i < RAM_SIZE; i++) /* refused: RAM as the RAM section left it */
			if (ram[i]) {
				rc = 1;
				break;
			}
	free(ram);
	close(fd);
	if (rc < 0)
		assert_non_null(strstr(state_last_error(), "saved state"));
	return rc;
}

/* A RAM_PAGES payload: offset, sent, data, then frame (NULL: the zstd frame of npages pages of
 * 0x5a). */
static size_t pages_payload(uint8_t *out, uint64_t offset, const uint8_t *sent, const uint8_t *data, size_t npages)
{
	struct state_ram_pages h = { .offset = htole64(offset) };
	memcpy(h.sent, sent, sizeof(h.sent));
	memcpy(h.data, data, sizeof(h.data));
	memcpy(out, &h, sizeof(h));
	if (!npages)
		return sizeof(h);
	uint8_t *plain = malloc(npages * PAGE);
	memset(plain, 0x5a, npages * PAGE);
	/* Any valid frame: an uncompressed zstd "raw block" frame would do; use the writer. */
	int fd = memfd();
	struct state_writer *w;
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	uint8_t *ram = calloc(1, CHUNK);
	memcpy(ram, plain, npages * PAGE);
	uint8_t mask[STATE_CHUNK_PAGES / 8] = { 0 };
	for (size_t i = 0; i < npages; i++)
		set_bit(mask, i);
	assert_int_equal(state_writer_pages(w, ram, CHUNK, 0, mask, NULL, NULL), (int)npages);
	state_writer_discard(w);
	off_t end = lseek(fd, 0, SEEK_END);
	size_t frame = (size_t)end - sizeof(struct state_file_header) - sizeof(struct state_section_header) - sizeof(h);
	assert_int_equal(pread(fd, out + sizeof(h), frame, (off_t)(end - (off_t)frame)), (ssize_t)frame);
	close(fd);
	free(ram);
	free(plain);
	return sizeof(h) + frame;
}

static void test_hostile(void **state)
{
	(void)state;
	static uint8_t buf[CHUNK + 4096];
	uint8_t sent[STATE_CHUNK_PAGES / 8] = { 0 }, data[STATE_CHUNK_PAGES / 8] = { 0 };
	set_bit(sent, 0), set_bit(sent, 1), set_bit(data, 0), set_bit(data, 1);
	size_t len = pages_payload(buf, 0, sent, data, 2);
	assert_int_equal(crafted(true, buf, len), 0); /* the well-formed one goes in */
	assert_true(crafted(false, buf, len) < 0);    /* before the RAM section */
	assert_true(crafted(true, buf, 100) < 0);     /* shorter than its header */
	assert_true(crafted(true, buf, len - 1) < 0); /* cut frame */
	size_t bad = pages_payload(buf, PAGE, sent, data, 2);
	assert_true(crafted(true, buf, bad) < 0);     /* offset not a chunk's */
	bad = pages_payload(buf, 2 * CHUNK + CHUNK, sent, data, 2);
	assert_true(crafted(true, buf, bad) < 0);     /* past the end of RAM */
	uint8_t far[STATE_CHUNK_PAGES / 8] = { 0 };
	set_bit(far, 3); /* the partial chunk has pages 0..2 */
	bad = pages_payload(buf, 2 * CHUNK, far, (uint8_t[STATE_CHUNK_PAGES / 8]){ 0 }, 0);
	assert_true(crafted(true, buf, bad) < 0);     /* a page past the end of RAM */
	uint8_t one[STATE_CHUNK_PAGES / 8] = { 0 };
	set_bit(one, 0);
	bad = pages_payload(buf, 0, one, data, 2);
	assert_true(crafted(true, buf, bad) < 0);     /* data for a page not sent */
	bad = pages_payload(buf, 0, sent, one, 2);
	assert_true(crafted(true, buf, bad) < 0);     /* two pages of frame for one data bit */
	len = pages_payload(buf, 0, sent, data, 2);
	memset(buf + sizeof(struct state_ram_pages) + 12, 0xee, len - sizeof(struct state_ram_pages) - 12);
	assert_true(crafted(true, buf, len) < 0);     /* a frame that does not decompress */
	bad = pages_payload(buf, 0, sent, (uint8_t[STATE_CHUNK_PAGES / 8]){ 0 }, 0);
	assert_int_equal(crafted(true, buf, bad), 0); /* zero pages only, no frame */
	buf[bad] = 1;
	assert_true(crafted(true, buf, bad + 1) < 0); /* zero pages only, but a frame byte */
}

static void test_writer_misuse(void **state)
{
	(void)state;
	uint8_t *ram = calloc(1, RAM_SIZE), mask[STATE_CHUNK_PAGES / 8];
	memset(mask, 0xff, sizeof(mask));
	int fd = memfd();
	struct state_writer *w;
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, PAGE, mask, NULL, NULL), -EINVAL);
	state_writer_discard(w);
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	assert_int_equal(state_writer_pages(w, ram, RAM_SIZE, 3 * CHUNK, mask, NULL, NULL), -EINVAL);
	state_writer_discard(w);
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	assert_int_equal(state_writer_ram_begin(w, RAM_SIZE + 1), -EINVAL);
	state_writer_discard(w);
	close(fd);
	free(ram);
}

/* `state_migration_stream --seed FILE` writes a small stream as a fuzz seed
 * (tests/fuzz/state/corpus/migration): mode byte 1 (the target fixes checksums), then a RAM
 * section and two passes of RAM_PAGES over a few patterned pages (compressible, so small). */
static int write_seed(const char *path)
{
	uint8_t *ram = calloc(1, RAM_SIZE);
	for (size_t p = 0; p < 6; p++)
		memset(ram + p * 97 * PAGE % RAM_SIZE, 0x11 * (int)(p + 1), PAGE);
	int fd = memfd_create("seed", 0);
	struct state_writer *w;
	uint8_t mask[STATE_CHUNK_PAGES / 8];
	memset(mask, 0xff, sizeof(mask));
	int ok = state_writer_open(&w, fd, digest) == 0 && state_writer_ram_begin(w, RAM_SIZE) == 0;
	for (uint64_t off = 0; ok && off < RAM_SIZE; off += CHUNK)
		ok = state_writer_pages(w, ram, RAM_SIZE, off, mask, NULL, NULL) > 0;
	memset(mask, 0, sizeof(mask));
	set_bit(mask, 97), set_bit(mask, 5);
	ok = ok && state_writer_pages(w, ram, RAM_SIZE, 0, mask, NULL, NULL) == 2 && state_writer_finish(w) == 0;
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc((size_t)end);
	ok = ok && pread(fd, buf, (size_t)end, 0) == end;
	FILE *f = fopen(path, "wb");
	ok = ok && f && fputc(1, f) == 1 && fwrite(buf, 1, (size_t)end, f) == (size_t)end;
	ok = f && !fclose(f) && ok;
	free(buf);
	free(ram);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	state_config_digest("mig", 3, digest);
	if (argc == 3 && !strcmp(argv[1], "--seed"))
		return write_seed(argv[2]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_writer_misuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
