/* The vdisk library against an in-memory model: every format and type, random I/O,
 * reopen, differencing chains (3 levels), merge, reconnect, resize, optimize, and hostile
 * files that must fail with a message instead of crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "common.h"
#include "vhd/vdisk.h"

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#define MiB (1ULL << 20)

static char dir[256];

static int setup(void **state)
{
	(void)state;
	scratch_dir(dir, sizeof(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	scratch_remove(dir);
	return 0;
}

static const char *path(const char *name)
{
	static char buf[4][512];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

/* Random writes into d and model; every write is sector-aligned to `align`. */
static void random_writes(struct vdisk *d, uint8_t *model, uint64_t size, uint32_t align, int n, uint64_t seed)
{
	uint8_t *buf = malloc(256 * 1024);
	for (int i = 0; i < n; i++) {
		uint64_t len = (rng_next(&seed) % (256 * 1024 / align) + 1) * align;
		if (len > size)
			len = size;
		uint64_t off = rng_next(&seed) % ((size - len) / align + 1) * align;
		fill_random(&seed, buf, len);
		assert_int_equal(vdisk_write(d, buf, off, len), 0);
		memcpy(model + off, buf, len);
	}
	free(buf);
}

static void check_model(struct vdisk *d, const uint8_t *model, uint64_t size)
{
	uint8_t *buf = malloc(size);
	assert_int_equal(vdisk_read(d, buf, 0, size), 0);
	for (uint64_t o = 0; o < size; o += 512)
		if (memcmp(buf + o, model + o, 512)) {
			fprintf(stderr, "mismatch at %llu\n", (unsigned long long)o);
			fail();
		}
	free(buf);
}

static void roundtrip(const char *name, enum vdisk_type type, uint64_t size, uint32_t bs, uint32_t lss)
{
	struct vdisk_create_params p = { .type = type, .size = size, .block_size = bs, .logical_sector = lss };
	unlink(path(name));
	assert_int_equal(vdisk_create(path(name), &p), 0);
	struct vdisk *d;
	assert_int_equal(vdisk_open(path(name), VDISK_OPEN_RDWR, &d), 0);
	assert_int_equal(vdisk_size(d), size);
	uint8_t *model = calloc(1, size);
	random_writes(d, model, size, lss ? lss : 512, 60, size ^ bs);
	check_model(d, model, size);
	assert_int_equal(vdisk_flush(d), 0);
	assert_int_equal(vdisk_close(d), 0);
	assert_int_equal(vdisk_open(path(name), 0, &d), 0);
	check_model(d, model, size);
	assert_int_equal(vdisk_write(d, model, 0, 512), -EROFS);
	vdisk_close(d);
	assert_int_equal(vdisk_check(path(name)), 0);
	free(model);
}

static void test_crc32c(void **state)
{
	(void)state;
	assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283);
	assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283);
}

static void test_vhdx_roundtrip(void **state)
{
	(void)state;
	roundtrip("d1.vhdx", VDISK_TYPE_DYNAMIC, 13 * MiB + 1536, 1 * MiB, 0);
	roundtrip("d2.vhdx", VDISK_TYPE_DYNAMIC, 40 * MiB, 32 * MiB, 4096);
	roundtrip("f1.vhdx", VDISK_TYPE_FIXED, 9 * MiB, 2 * MiB, 0);
}

static void test_vhd_roundtrip(void **state)
{
	(void)state;
	roundtrip("d.vhd", VDISK_TYPE_DYNAMIC, 13 * MiB + 1536, 512 * 1024, 0);
	roundtrip("f.vhd", VDISK_TYPE_FIXED, 7 * MiB, 0, 0);
	roundtrip("r.img", VDISK_TYPE_DYNAMIC, 5 * MiB, 0, 0);
}

static void test_bad_params(void **state)
{
	(void)state;
	struct vdisk_create_params p = { .size = 10 * MiB, .block_size = 3 * MiB };
	assert_true(vdisk_create(path("bad.vhdx"), &p) < 0);
	assert_non_null(strstr(vdisk_last_error(), "block size"));
	p.block_size = 0;
	p.size = VDISK_VHD_MAX_SIZE + 512;
	assert_true(vdisk_create(path("big.vhd"), &p) < 0);
	p.size = 64ULL << 40; /* 64 TiB: sparse on the host */
	assert_int_equal(vdisk_create(path("huge.vhdx"), &p), 0);
	struct vdisk *d;
	assert_int_equal(vdisk_open(path("huge.vhdx"), VDISK_OPEN_RDWR, &d), 0);
	uint8_t buf[4096] = { 1, 2, 3 };
	assert_int_equal(vdisk_write(d, buf, (64ULL << 40) - 4096, 4096), 0);
	assert_int_equal(vdisk_read(d, buf, 0, 4096), 0);
	assert_int_equal(buf[0], 0);
	assert_true(vdisk_read(d, buf, 64ULL << 40, 512) < 0);
	assert_true(vdisk_write(d, buf, 100, 512) < 0);
	vdisk_close(d);
	unlink(path("huge.vhdx"));
}

static uint32_t bs_for(const char *ext)
{
	return !strcmp(ext, "vhdx") ? (uint32_t)MiB : 512 * 1024;
}

/* 3-level chains: base <- mid <- top, each layer writing its own data. */
static void chain(const char *ext)
{
	uint64_t size = 12 * MiB;
	char base[64], mid[64], top[64];
	snprintf(base, sizeof(base), "base.%s", ext);
	snprintf(mid, sizeof(mid), "mid.%s", ext);
	snprintf(top, sizeof(top), "top.%s", ext);
	struct vdisk_create_params p = { .size = size, .block_size = bs_for(ext) };
	uint8_t *model = calloc(1, size);
	struct vdisk *d;
	assert_int_equal(vdisk_create(path(base), &p), 0);
	assert_int_equal(vdisk_open(path(base), VDISK_OPEN_RDWR, &d), 0);
	random_writes(d, model, size, 512, 30, 1);
	vdisk_close(d);
	const char *layers[2] = { mid, top };
	const char *parents[2] = { base, mid };
	for (int i = 0; i < 2; i++) {
		struct vdisk_create_params c = { .parent_path = path(parents[i]), .block_size = bs_for(ext) };
		assert_int_equal(vdisk_create(path(layers[i]), &c), 0);
		assert_int_equal(vdisk_open(path(layers[i]), VDISK_OPEN_RDWR, &d), 0);
		check_model(d, model, size); /* falls through to the parents */
		random_writes(d, model, size, 512, 25, 10 + (uint64_t)i);
		check_model(d, model, size);
		vdisk_close(d);
	}
	assert_int_equal(vdisk_open(path(top), 0, &d), 0);
	check_model(d, model, size);
	struct vdisk_info info;
	vdisk_info(d, &info);
	assert_int_equal(info.type, VDISK_TYPE_DIFFERENCING);
	assert_non_null(strstr(info.parent_path, mid));
	vdisk_close(d);
	assert_int_equal(vdisk_check(path(top)), 0);

	/* A modified parent breaks the chain with a clear message. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s.save'", path(mid), path(mid));
	assert_int_equal(system(cmd), 0);
	assert_int_equal(vdisk_open(path(mid), VDISK_OPEN_RDWR, &d), 0);
	assert_int_equal(vdisk_write(d, model, 0, 512), 0); /* same bytes, but a write is a write */
	vdisk_close(d);
	if (!strcmp(ext, "vhdx")) {
		assert_true(vdisk_open(path(top), 0, &d) < 0);
		assert_non_null(strstr(vdisk_last_error(), "DataWriteGuid"));
	}
	snprintf(cmd, sizeof(cmd), "mv '%s.save' '%s'", path(mid), path(mid));
	assert_int_equal(system(cmd), 0);

	/* Move the middle disk away: the child no longer opens; Set-VHD reconnects it. */
	char moved[64];
	snprintf(moved, sizeof(moved), "moved-mid.%s", ext);
	assert_int_equal(rename(path(mid), path(moved)), 0);
	assert_true(vdisk_open(path(top), 0, &d) < 0);
	assert_non_null(strstr(vdisk_last_error(), "not found"));
	assert_true(vdisk_set_parent(path(top), path(base)) < 0); /* wrong identity */
	assert_int_equal(vdisk_set_parent(path(top), path(moved)), 0);
	assert_int_equal(vdisk_open(path(top), 0, &d), 0);
	check_model(d, model, size);
	vdisk_close(d);

	/* Merge the top into its grandparent: base then holds the flattened disk. */
	assert_int_equal(vdisk_merge(path(top), path(base), NULL, NULL), 0);
	assert_int_equal(access(path(top), F_OK), -1);
	assert_int_equal(vdisk_open(path(base), 0, &d), 0);
	check_model(d, model, size);
	vdisk_close(d);
	free(model);
}

/* VDISK_OPEN_RAW (a DVD's ISO): the file is raw data even when it starts like a VHDX, and the
 * probe that refuses a damaged .vhdx does not apply. */
static void test_open_raw(void **state)
{
	(void)state;
	const char *p = path("disc.vhdx");
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fwrite("vhdxfile", 1, 8, f), 8);
	assert_int_equal(fputc('!', f), '!');
	fclose(f);
	struct vdisk *d;
	assert_true(vdisk_open(p, 0, &d) < 0); /* probed: a damaged VHDX */
	assert_int_equal(vdisk_open(p, VDISK_OPEN_RAW, &d), 0);
	struct vdisk_info info;
	assert_int_equal(vdisk_info(d, &info), 0);
	assert_int_equal(info.format, VDISK_FORMAT_RAW);
	uint8_t buf[512];
	assert_int_equal(vdisk_read(d, buf, 0, sizeof(buf)), 0);
	assert_memory_equal(buf, "vhdxfile!", 9);
	assert_int_equal(buf[9], 0); /* the tail past the file reads as zeros */
	assert_true(vdisk_write(d, buf, 0, sizeof(buf)) < 0); /* read-only */
	vdisk_close(d);
	unlink(p);
}

static void test_chain_vhdx(void **state)
{
	(void)state;
	chain("vhdx");
}

static void test_chain_vhd(void **state)
{
	(void)state;
	chain("vhd");
}

static void test_merge_into_parent(void **state)
{
	(void)state;
	uint64_t size = 6 * MiB;
	struct vdisk_create_params p = { .size = size, .block_size = MiB };
	uint8_t *model = calloc(1, size);
	struct vdisk *d;
	assert_int_equal(vdisk_create(path("p.vhdx"), &p), 0);
	assert_int_equal(vdisk_open(path("p.vhdx"), VDISK_OPEN_RDWR, &d), 0);
	random_writes(d, model, size, 512, 10, 3);
	vdisk_close(d);
	struct vdisk_create_params c = { .parent_path = path("p.vhdx") };
	assert_int_equal(vdisk_create(path("c.avhdx"), &c), 0);
	assert_int_equal(vdisk_open(path("c.avhdx"), VDISK_OPEN_RDWR, &d), 0);
	random_writes(d, model, size, 512, 10, 4);
	vdisk_close(d);
	assert_int_equal(vdisk_merge(path("c.avhdx"), NULL, NULL, NULL), 0);
	assert_int_equal(vdisk_open(path("p.vhdx"), 0, &d), 0);
	check_model(d, model, size);
	vdisk_close(d);
	free(model);
}

static void test_resize_optimize(void **state)
{
	(void)state;
	const char *exts[2] = { "rs.vhdx", "rs.vhd" };
	for (int i = 0; i < 2; i++) {
		struct vdisk_create_params p = { .size = 8 * MiB, .block_size = i ? 512 * 1024 : MiB };
		struct vdisk *d;
		assert_int_equal(vdisk_create(path(exts[i]), &p), 0);
		uint8_t *buf = calloc(1, 2 * MiB);
		memset(buf, 0x5a, MiB);
		assert_int_equal(vdisk_open(path(exts[i]), VDISK_OPEN_RDWR, &d), 0);
		assert_int_equal(vdisk_write(d, buf, 0, MiB), 0);
		memset(buf, 0, MiB);
		assert_int_equal(vdisk_write(d, buf, 4 * MiB, MiB), 0); /* allocated but zero */
		vdisk_close(d);
		assert_int_equal(vdisk_resize(path(exts[i]), 12 * MiB), 0);
		assert_true(vdisk_resize(path(exts[i]), 512 * 1024) < 0); /* data there */
		assert_int_equal(vdisk_optimize(path(exts[i]), NULL, NULL), 0);
		assert_int_equal(vdisk_open(path(exts[i]), 0, &d), 0);
		assert_int_equal(vdisk_size(d), 12 * MiB);
		bool alloc;
		uint64_t run;
		assert_int_equal(vdisk_block_status(d, 4 * MiB, MiB, &alloc, &run), 0);
		assert_false(alloc); /* the zero block was reclaimed */
		assert_int_equal(vdisk_read(d, buf, 0, 2 * MiB), 0);
		assert_int_equal(buf[MiB - 1], 0x5a);
		assert_int_equal(buf[MiB], 0);
		vdisk_close(d);
		free(buf);
	}
}

/* One writer at a time: a second VM (or Merge-VHD) must not open a disk being written. */
static void test_locking(void **state)
{
	(void)state;
	struct vdisk_create_params p = { .size = 4 * MiB, .block_size = MiB };
	assert_int_equal(vdisk_create(path("lock.vhdx"), &p), 0);
	struct vdisk *w, *r1, *r2;
	assert_int_equal(vdisk_open(path("lock.vhdx"), VDISK_OPEN_RDWR, &w), 0);
	assert_int_equal(vdisk_open(path("lock.vhdx"), VDISK_OPEN_RDWR, &r1), -EBUSY);
	assert_non_null(strstr(vdisk_last_error(), "in use"));
	assert_int_equal(vdisk_open(path("lock.vhdx"), 0, &r1), -EBUSY);
	vdisk_close(w);
	assert_int_equal(vdisk_open(path("lock.vhdx"), 0, &r1), 0);
	assert_int_equal(vdisk_open(path("lock.vhdx"), 0, &r2), 0); /* readers share */
	assert_int_equal(vdisk_open(path("lock.vhdx"), VDISK_OPEN_RDWR, &w), -EBUSY);
	vdisk_close(r1);
	vdisk_close(r2);
}

/* Several queues at once: threads write interleaved 4 KiB stripes (so they race to allocate
 * the same blocks and set bits in the same bitmaps) while another flushes. */
#define THREADS 4
struct stripe_job {
	struct vdisk *d;
	uint8_t *model;
	uint64_t size;
	int t;
};

static void *stripe_writer(void *arg)
{
	struct stripe_job *j = arg;
	uint64_t seed = 99 + (uint64_t)j->t;
	for (uint64_t off = (uint64_t)j->t * 4096; off < j->size; off += THREADS * 4096) {
		uint8_t buf[4096];
		fill_random(&seed, buf, sizeof(buf));
		memcpy(j->model + off, buf, sizeof(buf));
		if (vdisk_write(j->d, buf, off, sizeof(buf)) < 0)
			return (void *)1;
		if (vdisk_read(j->d, buf, off, sizeof(buf)) < 0 || memcmp(buf, j->model + off, sizeof(buf)))
			return (void *)1;
	}
	return NULL;
}

static void *flusher(void *arg)
{
	struct stripe_job *j = arg;
	for (int i = 0; i < 50; i++)
		if (vdisk_flush(j->d) < 0)
			return (void *)1;
	return NULL;
}

static void test_concurrent(void **state)
{
	(void)state;
	const char *names[3] = { "cc.vhdx", "cc.vhd", "cc-child.vhdx" };
	uint64_t size = 8 * MiB;
	for (int k = 0; k < 3; k++) {
		struct vdisk_create_params p = { .size = size, .block_size = k == 1 ? 512 * 1024 : MiB };
		if (k == 2) {
			p = (struct vdisk_create_params){ .parent_path = path("cc.vhdx") };
		}
		assert_int_equal(vdisk_create(path(names[k]), &p), 0);
		struct vdisk *d;
		assert_int_equal(vdisk_open(path(names[k]), VDISK_OPEN_RDWR, &d), 0);
		uint8_t *model = calloc(1, size);
		if (k == 2) /* the child starts as its parent */
			assert_int_equal(vdisk_read(d, model, 0, size), 0);
		pthread_t th[THREADS + 1];
		struct stripe_job jobs[THREADS + 1];
		for (int t = 0; t <= THREADS; t++) {
			jobs[t] = (struct stripe_job){ d, model, size, t };
			pthread_create(&th[t], NULL, t < THREADS ? stripe_writer : flusher, &jobs[t]);
		}
		for (int t = 0; t <= THREADS; t++) {
			void *ret;
			pthread_join(th[t], &ret);
			assert_null(ret);
		}
		check_model(d, model, size);
		assert_int_equal(vdisk_close(d), 0);
		assert_int_equal(vdisk_open(path(names[k]), 0, &d), 0);
		check_model(d, model, size);
		vdisk_close(d);
		free(model);
	}
}

/* Damaged files: each must fail to open with a message, never crash. */
static void test_hostile(void **state)
{
	(void)state;
	struct vdisk_create_params p = { .size = 4 * MiB, .block_size = MiB };
	assert_int_equal(vdisk_create(path("h.vhdx"), &p), 0);
	struct vdisk *d;
	assert_int_equal(vdisk_open(path("h.vhdx"), VDISK_OPEN_RDWR, &d), 0);
	uint8_t buf[4096];
	memset(buf, 7, sizeof(buf));
	assert_int_equal(vdisk_write(d, buf, 0, 4096), 0);
	vdisk_close(d);
	static const struct {
		uint64_t off;
		const char *msg;
		bool both;
	} cases[] = {
		{ 64 * 1024 + 100, "header", true },     /* both headers' CRC */
		{ 192 * 1024 + 20, "region table", true },
		{ 2 * MiB, "metadata table", false },    /* metadata signature */
		{ 3 * MiB + 7, "BAT entry", false },     /* BAT entry 0: state bits / offset */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path("h.vhdx"), path("bad.vhdx"));
		assert_int_equal(system(cmd), 0);
		int fd = open(path("bad.vhdx"), O_RDWR);
		uint8_t junk = 0xee;
		assert_int_equal(pwrite(fd, &junk, 1, (off_t)cases[i].off), 1);
		if (cases[i].both)
			assert_int_equal(pwrite(fd, &junk, 1, (off_t)cases[i].off + 64 * 1024), 1);
		close(fd);
		assert_true(vdisk_open(path("bad.vhdx"), 0, &d) < 0);
		if (!strstr(vdisk_last_error(), cases[i].msg))
			fprintf(stderr, "case %zu: %s\n", i, vdisk_last_error());
		assert_non_null(strstr(vdisk_last_error(), cases[i].msg));
	}
	/* Two BAT entries sharing one block. */
	assert_int_equal(vdisk_open(path("h.vhdx"), VDISK_OPEN_RDWR, &d), 0);
	assert_int_equal(vdisk_write(d, buf, MiB, 4096), 0);
	vdisk_close(d);
	int fd = open(path("h.vhdx"), O_RDWR);
	uint8_t e0[8];
	assert_int_equal(pread(fd, e0, 8, 3 * MiB), 8);
	assert_int_equal(pwrite(fd, e0, 8, 3 * MiB + 8), 8);
	close(fd);
	assert_true(vdisk_open(path("h.vhdx"), 0, &d) < 0);
	assert_non_null(strstr(vdisk_last_error(), "overlapping"));
	/* A truncated file. */
	assert_int_equal(truncate(path("bad.vhdx"), 300 * 1024), 0);
	assert_true(vdisk_open(path("bad.vhdx"), 0, &d) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_vhdx_roundtrip),
		cmocka_unit_test(test_vhd_roundtrip),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_open_raw),
		cmocka_unit_test(test_chain_vhdx),
		cmocka_unit_test(test_chain_vhd),
		cmocka_unit_test(test_merge_into_parent),
		cmocka_unit_test(test_resize_optimize),
		cmocka_unit_test(test_locking),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
