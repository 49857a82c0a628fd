/* Power-failure harness for VHDX: run a random workload, cut power at every write/sync
 * point it makes (the vio simulator drops, keeps or tears each unsynced write), reopen
 * (replaying the log) and check that every write acknowledged by a flush is there, every
 * other sector holds a value that was written to it, and — for a sample — that
 * `qemu-img check` finds the file clean.
 *
 * Sectors carry tags (write id, sector) so any surviving content can be attributed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "vhd/vdisk.h"
#include "vio.h"

#define MiB (1ULL << 20)
#define SIZE (8 * MiB)
#define SECTORS (SIZE / 512)
#define OPS 165

static char dir[256], base_path[512], work_path[512];
static int total_cuts, qemu_checks;

struct model {
	uint64_t durable[SECTORS];  /* tag guaranteed by the last completed flush */
	uint64_t *pending[SECTORS]; /* tags written since */
	uint32_t npending[SECTORS];
};

static void model_reset(struct model *m)
{
	for (uint64_t s = 0; s < SECTORS; s++) {
		free(m->pending[s]);
		m->pending[s] = NULL;
		m->npending[s] = 0;
		m->durable[s] = 0;
	}
}

static void model_write(struct model *m, uint64_t s, uint64_t tag)
{
	m->pending[s] = realloc(m->pending[s], (m->npending[s] + 1) * sizeof(uint64_t));
	m->pending[s][m->npending[s]++] = tag;
}

static void model_flushed(struct model *m)
{
	for (uint64_t s = 0; s < SECTORS; s++)
		if (m->npending[s]) {
			m->durable[s] = m->pending[s][m->npending[s] - 1];
			m->npending[s] = 0;
		}
}

static void tag_fill(uint8_t *sec, uint64_t tag)
{
	for (int i = 0; i < 512; i += 8)
		memcpy(sec + i, &tag, 8);
}

/* Runs the workload; stops at the first failure (power cut). Returns ops completed. */
static int workload(struct vdisk *d, struct model *m, uint64_t seed)
{
	uint8_t *buf = malloc(128 * 1024);
	int i;
	for (i = 0; i < OPS; i++) {
		uint64_t r = rng_next(&seed);
		if (r % 5 == 0) {
			if (vdisk_flush(d) < 0)
				break;
			model_flushed(m);
			continue;
		}
		/* Mostly small writes, clustered so blocks get both allocated and rewritten. */
		uint64_t nsec = r % 7 == 0 ? 64 + rng_next(&seed) % 192 : 1 + rng_next(&seed) % 8;
		uint64_t first = rng_next(&seed) % (SECTORS - nsec);
		if (r % 3 == 0)
			first = first % (SECTORS / 4);
		for (uint64_t k = 0; k < nsec; k++) {
			uint64_t tag = ((uint64_t)(i + 1) << 32) | (first + k);
			tag_fill(buf + k * 512, tag);
			model_write(m, first + k, tag);
		}
		if (vdisk_write(d, buf, first * 512, nsec * 512) < 0)
			break;
	}
	free(buf);
	return i;
}

static void verify(struct model *m, const char *p, int cut)
{
	struct vdisk *d;
	if (vdisk_open(p, VDISK_OPEN_RDWR, &d) < 0) {
		fprintf(stderr, "cut %d: reopen failed: %s\n", cut, vdisk_last_error());
		fail();
	}
	uint8_t *buf = malloc(SIZE);
	assert_int_equal(vdisk_read(d, buf, 0, SIZE), 0);
	for (uint64_t s = 0; s < SECTORS; s++) {
		uint64_t tag;
		memcpy(&tag, buf + s * 512, 8);
		uint8_t want[512];
		tag_fill(want, tag);
		bool ok = !memcmp(want, buf + s * 512, 512) && tag == m->durable[s];
		for (uint32_t k = 0; !ok && k < m->npending[s]; k++)
			ok = tag == m->pending[s][k] && !memcmp(want, buf + s * 512, 512);
		if (!ok) {
			fprintf(stderr, "cut %d: sector %llu holds %016llx, flushed value %016llx (%u unflushed)\n",
				cut, (unsigned long long)s, (unsigned long long)tag,
				(unsigned long long)m->durable[s], m->npending[s]);
			fail();
		}
	}
	free(buf);
	assert_int_equal(vdisk_close(d), 0);
}

/* QEMU, independently: our replayed file checks clean, and QEMU replaying the crashed copy
 * itself (check -r all) sees the same disk. */
static int qemu_cross_check(const char *ours, const char *crashed_copy)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
		 "qemu-img check -q '%s' && qemu-img check -q -r all '%s' && qemu-img compare -q '%s' '%s'",
		 ours, crashed_copy, ours, crashed_copy);
	return system(cmd);
}

static bool have_qemu;

/* A read-only open replays the log in memory: it must see what the read-write replay wrote. */
static void compare_ro_replay(const char *replayed, const char *crashed)
{
	struct vdisk *a, *b;
	assert_int_equal(vdisk_open(replayed, 0, &a), 0);
	assert_int_equal(vdisk_open(crashed, 0, &b), 0);
	uint8_t *x = malloc(SIZE), *y = malloc(SIZE);
	assert_int_equal(vdisk_read(a, x, 0, SIZE), 0);
	assert_int_equal(vdisk_read(b, y, 0, SIZE), 0);
	assert_memory_equal(x, y, SIZE);
	free(x);
	free(y);
	vdisk_close(a);
	vdisk_close(b);
}

/* The pristine image, copied before each run (in-process: this loop runs 1000+ times). */
static void copy_base(void)
{
	/* a new file, not O_TRUNC: ext4 flushes files truncated and rewritten (auto_da_alloc) */
	unlink(work_path);
	int in = open(base_path, O_RDONLY), out = open(work_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(in >= 0 && out >= 0);
	struct stat st;
	assert_int_equal(fstat(in, &st), 0);
	off_t left = st.st_size;
	while (left > 0) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		assert_true(n > 0);
		left -= n;
	}
	close(in);
	close(out);
}

/* One workload: all its cut points. The base image is a child when `diff` is set. */
static void run_series(uint64_t seed, bool diff)
{
	static struct model m;
	char parent[600];
	snprintf(parent, sizeof(parent), "%s/parent.vhdx", dir);
	unlink(parent);
	unlink(base_path);
	struct vdisk_create_params p = { .size = SIZE, .block_size = MiB };
	if (diff) {
		assert_int_equal(vdisk_create(parent, &p), 0);
		struct vdisk_create_params c = { .parent_path = parent, .block_size = MiB };
		assert_int_equal(vdisk_create(base_path, &c), 0);
	} else {
		assert_int_equal(vdisk_create(base_path, &p), 0);
	}
	/* Count the events of an uninterrupted run. */
	copy_base();
	struct vio_sim *sim = vio_sim_install(0, seed);
	struct vdisk *d;
	assert_int_equal(vdisk_open(work_path, VDISK_OPEN_RDWR, &d), 0);
	model_reset(&m);
	assert_int_equal(workload(d, &m, seed), OPS);
	assert_int_equal(vdisk_close(d), 0);
	uint64_t events = vio_sim_remove(sim, NULL);
	model_flushed(&m); /* close flushes */
	verify(&m, work_path, -1);

	for (uint64_t cut = 1; cut <= events; cut++) {
		copy_base();
		model_reset(&m);
		sim = vio_sim_install(cut, seed * 1000003 + cut);
		assert_int_equal(vdisk_open(work_path, VDISK_OPEN_RDWR, &d), 0);
		workload(d, &m, seed);
		vdisk_close(d); /* fails after the cut: nothing more reaches the file */
		bool was_cut;
		vio_sim_remove(sim, &was_cut);
		if (!was_cut) /* the cut fell into close(): its final flush */
			continue;
		bool sample = have_qemu && !diff && (cut % 24 == 0 || cut == events);
		/* (QEMU cannot open differencing VHDX, so the cross-checks sample plain disks.) */
		char copy[1200];
		snprintf(copy, sizeof(copy), "cp '%s' '%s.crashed'", work_path, work_path);
		if (sample)
			assert_int_equal(system(copy), 0);
		verify(&m, work_path, (int)cut);
		total_cuts++;
		if (sample) {
			snprintf(copy, sizeof(copy), "%s.crashed", work_path);
			compare_ro_replay(work_path, copy);
			if (qemu_cross_check(work_path, copy) != 0) {
				fprintf(stderr, "cut %llu: qemu-img disagrees\n", (unsigned long long)cut);
				fail();
			}
			qemu_checks++;
		}
	}
	model_reset(&m);
}

static void test_power_cuts(void **state)
{
	(void)state;
	have_qemu = system("qemu-img --version >/dev/null 2>&1") == 0;
	for (uint64_t seed = 1; seed <= 4; seed++)
		run_series(seed * 7919, false);
	run_series(424242, true); /* sector bitmaps go through the log too */
	printf("power cuts verified: %d (qemu-img check + its own log replay on %d)\n", total_cuts, qemu_checks);
	assert_true(total_cuts >= 1000);
}

static int setup(void **state)
{
	(void)state;
	/* The simulator decides what survives; the host filesystem only needs to be quick. */
	snprintf(dir, sizeof(dir), "/dev/shm/vhdcrash.XXXXXX");
	if (access("/dev/shm", W_OK) != 0 || !mkdtemp(dir))
		scratch_dir(dir, sizeof(dir));
	snprintf(base_path, sizeof(base_path), "%s/base.vhdx", dir);
	snprintf(work_path, sizeof(work_path), "%s/work.vhdx", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	scratch_remove(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_power_cuts) };
	return cmocka_run_group_tests(tests, setup, teardown);
}
