/* Live merge (vdisk_mirror_*): writer threads hammer the mirror while the copy pass runs; the
 * parent it pivots to must equal an in-memory model of everything written (the same data
 * without a merge), for 3-level VHD and VHDX chains (the child merges into the middle layer,
 * which reads through to the base). A failure injected mid-copy must leave the child open,
 * correct, and (relinked) openable again with its parent from the files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "common.h"
#include "vhd/vdisk.h"

#define MiB (1ULL << 20)
#define SIZE (48 * MiB)
#define WRITERS 4
#define STRIPE (256 * 1024) /* writer w owns stripes w, w + WRITERS, ...: no overlap between them */

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

static void write_pattern(const char *p, uint8_t *model, uint64_t off, uint64_t len, uint64_t seed)
{
	struct vdisk *d;
	assert_int_equal(vdisk_open(p, VDISK_OPEN_RDWR, &d), 0);
	uint8_t *buf = malloc(len);
	fill_random(&seed, buf, len);
	assert_int_equal(vdisk_write(d, buf, off, len), 0);
	memcpy(model + off, buf, len);
	free(buf);
	assert_int_equal(vdisk_close(d), 0);
}

static void expect_model(struct vdisk *d, const uint8_t *model)
{
	uint8_t *buf = malloc(MiB);
	for (uint64_t off = 0; off < SIZE; off += MiB) {
		assert_int_equal(vdisk_read(d, buf, off, MiB), 0);
		if (memcmp(buf, model + off, MiB)) {
			uint64_t i = 0;
			while (buf[i] == model[off + i])
				i++;
			fail_msg("%s differs from the model at byte %llu", vdisk_path(d), (unsigned long long)(off + i));
		}
	}
	free(buf);
}

/* base <- mid <- top, each with data; returns the model of top's view. */
static uint8_t *make_chain(const char *ext, uint32_t block)
{
	char base[32], mid[32], top[32];
	snprintf(base, sizeof(base), "base.%s", ext);
	snprintf(mid, sizeof(mid), "mid.%s", ext);
	snprintf(top, sizeof(top), "top.%s", ext);
	uint8_t *model = calloc(1, SIZE);
	struct vdisk_create_params p = { .size = SIZE, .block_size = block };
	assert_int_equal(vdisk_create(path(base), &p), 0);
	write_pattern(path(base), model, 0, 20 * MiB, 1);
	struct vdisk_create_params c = { .parent_path = path(base), .block_size = block };
	assert_int_equal(vdisk_create(path(mid), &c), 0);
	write_pattern(path(mid), model, 10 * MiB + 4096, 12 * MiB, 2);
	c.parent_path = path(mid);
	assert_int_equal(vdisk_create(path(top), &c), 0);
	write_pattern(path(top), model, 3 * MiB + 512, 5 * MiB, 3);
	write_pattern(path(top), model, 30 * MiB, 9 * MiB + 1024, 4);
	return model;
}

struct writer {
	pthread_t t;
	struct vdisk *d;
	uint8_t *model;
	unsigned index;
	bool *stop;
	int writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (w->index + 1);
	uint8_t *buf = malloc(STRIPE);
	/* At least 200 writes each, then on until the copy pass has ended. */
	while (w->writes < 200 || !__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
		uint64_t stripe = (rng_next(&seed) % (SIZE / STRIPE / WRITERS)) * WRITERS + w->index;
		uint64_t len = (rng_next(&seed) % (STRIPE / 512) + 1) * 512;
		uint64_t off = stripe * STRIPE + rng_next(&seed) % ((STRIPE - len) / 512 + 1) * 512;
		fill_random(&seed, buf, len);
		assert_int_equal(vdisk_write(w->d, buf, off, len), 0);
		memcpy(w->model + off, buf, len);
		w->writes++;
	}
	free(buf);
	return NULL;
}

struct copy_ctx {
	uint64_t fail_at;  /* inject -EIO once done passes this (0: never) */
	unsigned calls;
};

static int slow_progress(uint64_t done, uint64_t total, void *arg)
{
	struct copy_ctx *c = arg;
	(void)total;
	if (c->fail_at && done >= c->fail_at)
		return -EIO;
	if (++c->calls % 4 == 0) /* stretch the pass so the writers overlap all of it */
		nanosleep(&(struct timespec){ .tv_nsec = 2000000 }, NULL);
	return 0;
}

static void run_merge(const char *ext, uint32_t block, bool inject)
{
	uint8_t *model = make_chain(ext, block);
	char top[32], mid[32];
	snprintf(top, sizeof(top), "top.%s", ext);
	snprintf(mid, sizeof(mid), "mid.%s", ext);
	char top_path[512], mid_path[512];
	snprintf(top_path, sizeof(top_path), "%s", path(top));
	snprintf(mid_path, sizeof(mid_path), "%s", path(mid));
	struct vdisk *child, *m;
	assert_int_equal(vdisk_open(top_path, VDISK_OPEN_RDWR, &child), 0);
	assert_int_equal(vdisk_mirror_start(child, &m), 0);
	struct vdisk *again;
	assert_int_equal(vdisk_mirror_start(m, &again), -EINVAL); /* the mirror is no child */

	bool stop = false;
	struct writer w[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .d = m, .model = model, .index = i, .stop = &stop };
		assert_int_equal(pthread_create(&w[i].t, NULL, writer_main, &w[i]), 0);
	}
	struct copy_ctx cc = { .fail_at = inject ? SIZE / 2 : 0 };
	int rc = vdisk_mirror_copy(m, slow_progress, &cc);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(w[i].t, NULL);
	expect_model(m, model);
	if (!inject) {
		assert_int_equal(rc, 0);
		struct vdisk *parent;
		assert_int_equal(vdisk_mirror_finish(m, &parent), 0);
		assert_string_equal(vdisk_path(parent), mid_path);
		expect_model(parent, model);
		/* New writes after the pivot land in the parent. */
		uint8_t sector[512];
		memset(sector, 0x5a, sizeof(sector));
		assert_int_equal(vdisk_write(parent, sector, 7 * 512, 512), 0);
		memcpy(model + 7 * 512, sector, 512);
		assert_int_equal(vdisk_close(parent), 0);
		assert_int_equal(vdisk_check(mid_path), 0);
		assert_int_equal(vdisk_open(mid_path, 0, &parent), 0);
		expect_model(parent, model);
		vdisk_close(parent);
	} else {
		assert_int_equal(rc, -EIO);
		assert_int_equal(vdisk_mirror_finish(m, &again), -EINVAL);
		assert_int_equal(vdisk_mirror_abort(m, &child), 0);
		expect_model(child, model);
		assert_int_equal(vdisk_close(child), 0);
		/* From the files: the child opens on its (partly merged) parent and reads the same. */
		assert_int_equal(vdisk_check(top_path), 0);
		assert_int_equal(vdisk_open(top_path, 0, &child), 0);
		expect_model(child, model);
		vdisk_close(child);
	}
	free(model);
}

static void test_merge_vhdx(void **state)
{
	(void)state;
	run_merge("vhdx", 1 * MiB, false);
}

static void test_merge_vhd(void **state)
{
	(void)state;
	run_merge("vhd", 0, false);
}

static void test_failure_vhdx(void **state)
{
	(void)state;
	run_merge("vhdx", 2 * MiB, true);
}

static void test_failure_vhd(void **state)
{
	(void)state;
	run_merge("vhd", 0, true);
}

static void test_refusals(void **state)
{
	(void)state;
	struct vdisk_create_params p = { .size = 8 * MiB };
	assert_int_equal(vdisk_create(path("plain.vhdx"), &p), 0);
	struct vdisk *d, *m;
	assert_int_equal(vdisk_open(path("plain.vhdx"), VDISK_OPEN_RDWR, &d), 0);
	assert_int_equal(vdisk_mirror_start(d, &m), -EINVAL);
	assert_non_null(strstr(vdisk_last_error(), "not a differencing disk"));
	vdisk_close(d);
	struct vdisk_create_params c = { .parent_path = path("plain.vhdx") };
	assert_int_equal(vdisk_create(path("kid.avhdx"), &c), 0);
	assert_int_equal(vdisk_open(path("kid.avhdx"), 0, &d), 0);
	assert_int_equal(vdisk_mirror_start(d, &m), -EINVAL); /* read-only */
	vdisk_close(d);
	/* The parent in use elsewhere (a shared read-only open): it cannot be written. */
	struct vdisk *other;
	assert_int_equal(vdisk_open(path("plain.vhdx"), 0, &other), 0);
	assert_int_equal(vdisk_open(path("kid.avhdx"), VDISK_OPEN_RDWR, &d), 0);
	assert_int_equal(vdisk_mirror_start(d, &m), -EBUSY);
	vdisk_close(other);
	/* vdisk_close of a mirror closes both; the child reopens fine. */
	assert_int_equal(vdisk_mirror_start(d, &m), 0);
	assert_int_equal(vdisk_close(m), 0);
	assert_int_equal(vdisk_open(path("kid.avhdx"), VDISK_OPEN_RDWR, &d), 0);
	vdisk_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_merge_vhdx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merge_vhd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_vhdx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_vhd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
