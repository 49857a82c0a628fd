/* Storage QoS limits (vsp/io_limit.c): normalized operations, the long-run rate of each limit,
 * the burst after idle time and no more, both limits at once, out-of-range settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "vsp/io_limit.h"

#define MS 1000000ull
#define S 1000000000ull

static void test_ops(void **state)
{
	(void)state;
	assert_int_equal(io_limit_ops(0), 1); /* a request with no data still counts */
	assert_int_equal(io_limit_ops(512), 1);
	assert_int_equal(io_limit_ops(8192), 1);
	assert_int_equal(io_limit_ops(8193), 2);
	assert_int_equal(io_limit_ops(65536), 8);
	assert_int_equal(io_limit_ops(1 << 20), 128);
}

static void test_none(void **state)
{
	(void)state;
	struct io_limit l;
	assert_true(io_limit_set(&l, 0, 0));
	assert_false(io_limit_active(&l));
	for (uint64_t t = 5; t < 1000; t += 7)
		assert_int_equal(io_limit_admit(&l, 1 << 20, t), t);
}

/* 100 IOPS, 4 KiB requests all arriving at t0: the first ones run at once (50 ms of burst),
 * then one every 10 ms; request k starts at t0 + k*10 ms - 50 ms. */
static void test_iops_rate(void **state)
{
	(void)state;
	struct io_limit l;
	assert_true(io_limit_set(&l, 100, 0));
	assert_true(io_limit_active(&l));
	uint64_t t0 = 7 * S, prev = 0;
	for (uint64_t k = 0; k < 1000; k++) {
		uint64_t start = io_limit_admit(&l, 4096, t0);
		uint64_t want = k * 10 * MS > 50 * MS ? t0 + k * 10 * MS - 50 * MS : t0;
		assert_int_equal(start, want);
		assert_true(start >= prev); /* in order */
		prev = start;
	}
	/* the 1000th starts 9.94 s in: 10 s at the rate, less the burst */
	assert_int_equal(prev - t0, 9940 * MS);
}

/* Requests that arrive as fast as they are let through run at the rate exactly. */
static void test_closed_loop(void **state)
{
	(void)state;
	struct io_limit l;
	assert_true(io_limit_set(&l, 500, 0));
	uint64_t now = 0;
	unsigned n = 0;
	while (now < 10 * S) {
		now = io_limit_admit(&l, 8192, now) + 100000; /* 0.1 ms of service */
		n++;
	}
	/* 10 s at 500/s, plus the 50 ms burst: 5025 */
	assert_in_range(n, 5000, 5030);
}

/* Idle time earns 50 ms of burst, not more. */
static void test_burst_bounded(void **state)
{
	(void)state;
	struct io_limit l;
	assert_true(io_limit_set(&l, 1000, 0));
	assert_int_equal(io_limit_admit(&l, 4096, 0), 0);
	uint64_t t = 60 * S; /* a minute idle */
	unsigned at_once = 0;
	while (io_limit_admit(&l, 4096, t) == t)
		at_once++;
	assert_int_equal(at_once, 51); /* 50 ms at 1000/s, and the one that fits exactly */
}

/* Bandwidth: 1 MiB/s of 64 KiB writes, one every 62.5 ms once the burst is spent. */
static void test_bandwidth(void **state)
{
	(void)state;
	struct io_limit l;
	assert_true(io_limit_set(&l, 0, 1 << 20));
	uint64_t last = 0;
	for (unsigned k = 0; k < 160; k++)
		last = io_limit_admit(&l, 65536, 0);
	/* 160 x 64 KiB = 10 MiB: the last starts at 159 * 62.5 ms - 50 ms */
	assert_int_equal(last, 159 * 62500000ull - 50 * MS);
}

/* Both limits: the stricter one for the request's size decides. */
static void test_both(void **state)
{
	(void)state;
	struct io_limit l;
	assert_true(io_limit_set(&l, 100, 1 << 20));
	uint64_t last = 0;
	for (unsigned k = 0; k < 100; k++)
		last = io_limit_admit(&l, 4096, 0); /* 400 KiB: IOPS binds (1 s), bytes would allow 0.39 s */
	assert_int_equal(last, 99 * 10 * MS - 50 * MS);
	assert_true(io_limit_set(&l, 1000, 1 << 20));
	for (unsigned k = 0; k < 100; k++)
		last = io_limit_admit(&l, 1 << 20, 0); /* 128 ops each: 12.8 s at 1000/s; 100 MiB: 100 s */
	assert_int_equal(last, 99 * S - 50 * MS);
}

static void test_set(void **state)
{
	(void)state;
	struct io_limit l;
	assert_true(io_limit_set(&l, 10, 0));
	for (unsigned k = 0; k < 100; k++)
		io_limit_admit(&l, 4096, 0);
	assert_false(io_limit_set(&l, IO_LIMIT_MAX_IOPS + 1, 0));
	assert_false(io_limit_set(&l, 0, IO_LIMIT_MAX_BYTES_PER_S + 1));
	assert_int_equal(l.max_iops, 10); /* unchanged by a refused setting */
	assert_true(io_limit_set(&l, IO_LIMIT_MAX_IOPS, IO_LIMIT_MAX_BYTES_PER_S));
	assert_int_equal(io_limit_admit(&l, 1 << 20, 5), 5); /* the backlog was forgotten */
	assert_true(io_limit_set(&l, 1, 1)); /* the slowest settings do not overflow */
	io_limit_admit(&l, 1 << 20, 0);
	assert_int_equal(io_limit_admit(&l, 1 << 20, 0), (1ull << 20) * S - 50 * MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_iops_rate),
		cmocka_unit_test(test_closed_loop),
		cmocka_unit_test(test_burst_bounded),
		cmocka_unit_test(test_bandwidth),
		cmocka_unit_test(test_both),
		cmocka_unit_test(test_set),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
