/* vmbus/ring.c alone: index math, packet round trips with wrap-around over discontiguous pages,
 * signalling rules, and corrupt indices / descriptors. Two views share one ring's memory: one
 * as the host writer, one as the host reader, so each side checks the other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmbus/ring.h"

#define DATA_PAGES 2

struct shared_ring {
	uint8_t *mem;                    /* (DATA_PAGES + 1) pages */
	void *pages[DATA_PAGES + 1];     /* control page, then data pages in reverse order */
	struct vmbus_ring w, r;
};

static void ring_setup(struct shared_ring *s, bool reversed)
{
	s->mem = aligned_alloc(4096, (DATA_PAGES + 1) * 4096);
	memset(s->mem, 0, (DATA_PAGES + 1) * 4096);
	s->pages[0] = s->mem;
	for (int i = 0; i < DATA_PAGES; i++)
		s->pages[1 + i] = s->mem + 4096 * (size_t)(reversed ? DATA_PAGES - i : 1 + i);
	assert_int_equal(vmbus_ring_init(&s->w, s->pages, DATA_PAGES + 1, true), 0);
	assert_int_equal(vmbus_ring_init(&s->r, s->pages, DATA_PAGES + 1, false), 0);
	assert_int_equal(s->w.size, DATA_PAGES * 4096);
	assert_true(reversed ? s->w.flat == NULL : s->w.flat != NULL);
}

static void ring_teardown(struct shared_ring *s)
{
	vmbus_ring_destroy(&s->w);
	vmbus_ring_destroy(&s->r);
	free(s->mem);
}

static struct vmbus_ring_header *hdr(struct shared_ring *s)
{
	return (struct vmbus_ring_header *)s->mem;
}

static int put(struct shared_ring *s, uint16_t type, uint64_t tid, const void *data, uint32_t len, bool *signal)
{
	uint32_t total = (uint32_t)((16 + len + 7) & ~7u);
	struct vmpacket_descriptor d = {.type = type, .offset8 = 2, .len8 = (uint16_t)(total / 8), .trans_id = tid};
	struct vmbus_seg segs[2] = {{&d, sizeof(d)}, {data, len}};
	return vmbus_ring_write(&s->w, segs, 2, signal);
}

static void test_index_math(void **state)
{
	(void)state;
	assert_int_equal(vmbus_ring_bytes_to_read(0, 0, 4096), 0);
	assert_int_equal(vmbus_ring_bytes_to_write(0, 0, 4096), 4096);
	assert_int_equal(vmbus_ring_bytes_to_read(64, 8, 4096), 56);
	assert_int_equal(vmbus_ring_bytes_to_read(8, 64, 4096), 4096 - 56);
	assert_int_equal(vmbus_ring_bytes_to_write(8, 64, 4096), 56);
	assert_true(vmbus_ring_index_valid(0, 4096));
	assert_false(vmbus_ring_index_valid(4096, 4096));
	assert_false(vmbus_ring_index_valid(12, 4096));
	assert_true(vmbus_ring_signal_after_write(16, 16, 0));
	assert_false(vmbus_ring_signal_after_write(16, 8, 0));
	assert_false(vmbus_ring_signal_after_write(16, 16, 1));
	/* free space 100 -> 300 crosses pending 200; 300 -> 400 does not */
	assert_true(vmbus_ring_signal_after_read(1000, 100, 300, 4096, 200) ==
		    (vmbus_ring_bytes_to_write(1000, 100, 4096) <= 200 && vmbus_ring_bytes_to_write(1000, 300, 4096) > 200));
	assert_false(vmbus_ring_signal_after_read(0, 0, 0, 4096, 0));
	assert_true(vmbus_ring_signal_after_read(4000, 0, 96, 4096, 100));   /* 96 free -> 192 free */
	assert_false(vmbus_ring_signal_after_read(4000, 96, 200, 4096, 100)); /* already above */
}

static void test_init_rejects(void **state)
{
	(void)state;
	uint8_t *mem = aligned_alloc(4096, 3 * 4096);
	memset(mem, 0, 3 * 4096);
	void *pages[3] = {mem, mem + 4096, mem + 8192};
	struct vmbus_ring r;
	assert_int_equal(vmbus_ring_init(&r, pages, 1, true), VMBUS_RING_TOOBIG);
	((struct vmbus_ring_header *)mem)->write_index = 12;
	assert_int_equal(vmbus_ring_init(&r, pages, 3, true), VMBUS_RING_CORRUPT);
	((struct vmbus_ring_header *)mem)->write_index = 8192;
	assert_int_equal(vmbus_ring_init(&r, pages, 3, true), VMBUS_RING_CORRUPT);
	((struct vmbus_ring_header *)mem)->write_index = 8184;
	assert_int_equal(vmbus_ring_init(&r, pages, 3, true), 0);
	assert_int_equal(r.priv_index, 8184);
	assert_int_equal(((struct vmbus_ring_header *)mem)->feature_bits & 1, 1);
	vmbus_ring_destroy(&r);
	((struct vmbus_ring_header *)mem)->read_index = 4;
	assert_int_equal(vmbus_ring_init(&r, pages, 3, false), VMBUS_RING_CORRUPT);
	free(mem);
}

static void round_trip(bool reversed)
{
	struct shared_ring s;
	ring_setup(&s, reversed);
	uint8_t data[700], buf[8192];
	uint64_t total = 0;
	for (uint32_t i = 0; i < 400; i++) {
		uint32_t len = (i * 37) % sizeof(data);
		for (uint32_t k = 0; k < len; k++)
			data[k] = (uint8_t)(i + k);
		bool sig;
		assert_int_equal(put(&s, VM_PKT_DATA_INBAND, i, data, len, &sig), 0);
		uint32_t got;
		assert_int_equal(vmbus_ring_read(&s.r, buf, sizeof(buf), &got), 0);
		assert_int_equal(got, (16 + len + 7) & ~7u);
		const struct vmpacket_descriptor *d = (const void *)buf;
		assert_int_equal(d->trans_id, i);
		assert_memory_equal(buf + 16, data, len);
		/* trailer: previous write index in the upper half */
		assert_int_equal(vmbus_ring_read(&s.r, buf, sizeof(buf), &got), VMBUS_RING_EMPTY);
		vmbus_ring_read_commit(&s.r);
		total += got + 8;
	}
	assert_true(total > 4 * s.w.size); /* wrapped several times */
	ring_teardown(&s);
}

static void test_round_trip_contiguous(void **state)
{
	(void)state;
	round_trip(false);
}

static void test_round_trip_discontiguous(void **state)
{
	(void)state;
	round_trip(true);
}

static void test_trailer(void **state)
{
	(void)state;
	struct shared_ring s;
	ring_setup(&s, false);
	bool sig;
	assert_int_equal(put(&s, 6, 1, "abcdefgh", 8, &sig), 0);
	uint64_t trailer;
	memcpy(&trailer, s.mem + 4096 + 24, 8);
	assert_int_equal(trailer, 0);
	assert_int_equal(put(&s, 6, 2, "abcdefgh", 8, &sig), 0);
	memcpy(&trailer, s.mem + 4096 + 32 + 24, 8);
	assert_int_equal(trailer >> 32, 32);
	assert_int_equal(hdr(&s)->write_index, 64);
	ring_teardown(&s);
}

static void test_signal_on_write(void **state)
{
	(void)state;
	struct shared_ring s;
	ring_setup(&s, false);
	bool sig;
	assert_int_equal(put(&s, 6, 1, NULL, 0, &sig), 0);
	assert_true(sig);  /* empty -> non-empty */
	assert_int_equal(put(&s, 6, 2, NULL, 0, &sig), 0);
	assert_false(sig); /* reader has not caught up: it will see this one */
	hdr(&s)->read_index = hdr(&s)->write_index; /* reader drained */
	hdr(&s)->interrupt_mask = 1;
	assert_int_equal(put(&s, 6, 3, NULL, 0, &sig), 0);
	assert_false(sig); /* reader is polling */
	ring_teardown(&s);
}

static void test_full_and_pending_send_sz(void **state)
{
	(void)state;
	struct shared_ring s;
	ring_setup(&s, false);
	uint8_t data[1000] = {0}, buf[8192];
	bool sig;
	int n = 0;
	while (put(&s, 6, (uint64_t)n, data, sizeof(data), &sig) == 0)
		n++;
	assert_int_equal(n, 7); /* 8 * 1024 would fill the ring exactly: never allowed */
	assert_int_equal(put(&s, 6, 99, data, sizeof(data), &sig), VMBUS_RING_FULL);
	assert_int_equal(hdr(&s)->pending_send_sz, 1016 + 8);
	assert_true(hdr(&s)->write_index != hdr(&s)->read_index); /* full never looks empty */
	/* The reader frees one packet: free space crosses pending_send_sz -> signal the writer. */
	uint32_t got;
	assert_int_equal(vmbus_ring_read(&s.r, buf, sizeof(buf), &got), 0);
	assert_true(vmbus_ring_read_commit(&s.r));
	assert_int_equal(put(&s, 6, 100, data, sizeof(data), &sig), 0);
	assert_int_equal(hdr(&s)->pending_send_sz, 0);
	ring_teardown(&s);
}

static void test_too_big_and_nobufs(void **state)
{
	(void)state;
	struct shared_ring s;
	ring_setup(&s, false);
	static uint8_t data[8192];
	bool sig;
	assert_int_equal(put(&s, 6, 0, data, 8192 - 16 - 8, &sig), VMBUS_RING_TOOBIG);
	assert_int_equal(put(&s, 6, 0, data, 100, &sig), 0);
	uint8_t small[32];
	uint32_t got = 0;
	assert_int_equal(vmbus_ring_read(&s.r, small, sizeof(small), &got), VMBUS_RING_NOBUFS);
	assert_int_equal(got, 120);
	uint8_t buf[256];
	assert_int_equal(vmbus_ring_read(&s.r, buf, sizeof(buf), &got), 0);
	ring_teardown(&s);
}

static void corrupt_case(void (*mutate)(struct shared_ring *))
{
	struct shared_ring s;
	ring_setup(&s, false);
	bool sig;
	assert_int_equal(put(&s, 6, 0, "12345678", 8, &sig), 0);
	mutate(&s);
	uint8_t buf[8192];
	uint32_t got;
	assert_int_equal(vmbus_ring_read(&s.r, buf, sizeof(buf), &got), VMBUS_RING_CORRUPT);
	ring_teardown(&s);
}

static void mut_write_unaligned(struct shared_ring *s) { hdr(s)->write_index = 12; }
static void mut_write_out_of_range(struct shared_ring *s) { hdr(s)->write_index = 0x10000; }
static void mut_len8_too_big(struct shared_ring *s) { ((struct vmpacket_descriptor *)(s->mem + 4096))->len8 = 100; }
static void mut_offset_beyond_len(struct shared_ring *s) { ((struct vmpacket_descriptor *)(s->mem + 4096))->offset8 = 4; }
static void mut_len8_zero(struct shared_ring *s) { ((struct vmpacket_descriptor *)(s->mem + 4096))->len8 = 0; }
static void mut_offset8_zero(struct shared_ring *s) { ((struct vmpacket_descriptor *)(s->mem + 4096))->offset8 = 0; }
static void mut_short(struct shared_ring *s) { hdr(s)->write_index = 16; }

static void test_corrupt(void **state)
{
	(void)state;
	corrupt_case(mut_write_unaligned);
	corrupt_case(mut_write_out_of_range);
	corrupt_case(mut_len8_too_big);
	corrupt_case(mut_offset_beyond_len);
	corrupt_case(mut_len8_zero);
	corrupt_case(mut_offset8_zero);
	corrupt_case(mut_short);
}

static void test_corrupt_read_index(void **state)
{
	(void)state;
	struct shared_ring s;
	ring_setup(&s, false);
	bool sig;
	hdr(&s)->read_index = 4;
	assert_int_equal(put(&s, 6, 0, NULL, 0, &sig), VMBUS_RING_CORRUPT);
	hdr(&s)->read_index = 1u << 31;
	assert_int_equal(put(&s, 6, 0, NULL, 0, &sig), VMBUS_RING_CORRUPT);
	assert_int_equal(vmbus_ring_write_avail(&s.w), 0);
	ring_teardown(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_math),
		cmocka_unit_test(test_init_rejects),
		cmocka_unit_test(test_round_trip_contiguous),
		cmocka_unit_test(test_round_trip_discontiguous),
		cmocka_unit_test(test_trailer),
		cmocka_unit_test(test_signal_on_write),
		cmocka_unit_test(test_full_and_pending_send_sz),
		cmocka_unit_test(test_too_big_and_nobufs),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_corrupt_read_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
