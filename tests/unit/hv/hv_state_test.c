/* Saved state of the partition (hv_partition_save/restore): a partition driven through its
 * MSRs and SynIC into a busy state is saved to a memfd, restored into a fresh partition over
 * a copy of its guest RAM (as a new worker would), and must behave the same: MSRs read back,
 * queued messages come out after EOM or unmask, the guest pages are neither rewritten nor
 * left ungranted, nothing is injected by the restore itself, and a re-save is identical.
 * Hostile payloads fail with a message and change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fake_platform.h"
#include "hv/partition.h"
#include "state_file.h"

#define TSC_KHZ   2500000ull
#define HC_PORT   0xEB
#define NR_VPS    4
#define HC_GPA    0x1000ull
#define TSC_GPA   0x2000ull
#define SIMP_GPA  0x10000ull
#define SIEFP_GPA 0x20000ull
#define SIMP3_GPA 0x30000ull
#define PAGES     (FAKE_RAM_SIZE / 4096)

/* A fake VMM plus a count of outstanding grants per guest page (the guest-write check). */
struct vm {
	struct fake f;
	int grants[PAGES];
	struct hv_partition p;
};

static void vm_grant(void *opaque, void *hva, uint64_t len, bool on)
{
	struct vm *v = (struct vm *)((char *)opaque - offsetof(struct vm, f));
	uint64_t off = (uint64_t)((uint8_t *)hva - v->f.ram);
	assert_int_equal(len, 4096);
	assert_true(off < FAKE_RAM_SIZE && off % 4096 == 0);
	v->grants[off / 4096] += on ? 1 : -1;
	assert_true(v->grants[off / 4096] >= 0);
}

/* A fresh partition; with ram, over a copy of it (the restored guest RAM). */
static struct vm *vm_new(const struct vm *from)
{
	struct vm *v = calloc(1, sizeof(*v));
	assert_non_null(v);
	fake_init(&v->f);
	assert_non_null(v->f.ram);
	if (from) {
		memcpy(v->f.ram, from->f.ram, FAKE_RAM_SIZE);
		memcpy(v->f.tsc, from->f.tsc, sizeof(v->f.tsc)); /* the worker restores the TSCs */
	}
	struct hv_platform plat = fake_platform(&v->f);
	plat.grant = vm_grant;
	assert_true(hv_partition_init(&v->p, NR_VPS, TSC_KHZ, HC_PORT, &plat));
	return v;
}

static void vm_free(struct vm *v)
{
	hv_partition_destroy(&v->p);
	for (unsigned i = 0; i < PAGES; i++)
		assert_int_equal(v->grants[i], 0);
	fake_free(&v->f);
	free(v);
}

static uint64_t rdmsr(struct vm *v, uint32_t vp, uint32_t msr)
{
	uint64_t x = 0xDEADBEEFull;
	assert_true(hv_msr_read(&v->p, vp, msr, &x));
	return x;
}

static void wrmsr(struct vm *v, uint32_t vp, uint32_t msr, uint64_t x)
{
	assert_true(hv_msr_write(&v->p, vp, msr, x));
}

static void post(struct vm *v, uint32_t vp, uint32_t sint, uint32_t type, uint8_t fill, uint32_t len)
{
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
	memset(payload, fill, sizeof(payload));
	assert_int_equal(hv_synic_post(&v->p.vps[vp].synic, sint, type, payload, len), 0);
}

static struct hv_message *slot(struct vm *v, uint64_t simp_gpa, uint32_t sint)
{
	return (struct hv_message *)(v->f.ram + simp_gpa + sint * HV_MESSAGE_SIZE);
}

/* The guest's handler: take the slot's message, EOM if more is pending. */
static void consume(struct vm *v, uint32_t vp, uint64_t simp_gpa, uint32_t sint)
{
	struct hv_message *m = slot(v, simp_gpa, sint);
	bool pending = m->header.message_flags & HV_MESSAGE_FLAG_PENDING;
	m->header.message_type = HVMSG_NONE;
	if (pending)
		wrmsr(v, vp, HV_X64_MSR_EOM, 0);
}

static void assert_message(struct vm *v, uint64_t simp_gpa, uint32_t sint, uint32_t type,
			   uint8_t fill, uint32_t len)
{
	struct hv_message *m = slot(v, simp_gpa, sint);
	assert_int_equal(m->header.message_type, type);
	assert_int_equal(m->header.payload_size, len);
	for (uint32_t i = 0; i < len; i++)
		assert_int_equal(m->payload[i], fill);
}

/* Every state the partition keeps, set through the guest's interface:
 *  - partition MSRs, the hypercall and reference TSC pages written, crash MSRs;
 *  - VP 1: SynIC on, SINT2 with its slot busy and two more messages queued behind it, SINT5
 *    masked with two queued, an event flag set;
 *  - VP 3: message page on but SCONTROL off, one message queued; VP assist on VPs 1 and 2. */
static struct vm *busy_vm(void)
{
	struct vm *v = vm_new(NULL);
	v->f.tsc[0] = v->f.tsc[1] = 987654321000ull;
	wrmsr(v, 0, HV_X64_MSR_GUEST_OS_ID, 0x8100000000000000ull);
	wrmsr(v, 0, HV_X64_MSR_HYPERCALL, HC_GPA | HV_MSR_ENABLE);
	wrmsr(v, 0, HV_X64_MSR_REFERENCE_TSC, TSC_GPA | HV_MSR_ENABLE);
	for (uint32_t i = 0; i < 5; i++)
		wrmsr(v, 2, HV_X64_MSR_CRASH_P0 + i, 0x1111111111111111ull * (i + 1));
	wrmsr(v, 2, HV_X64_MSR_CRASH_CTL, 1ull << 63);
	wrmsr(v, 1, HV_X64_MSR_VP_ASSIST_PAGE, 0x40000 | HV_MSR_ENABLE);
	wrmsr(v, 2, HV_X64_MSR_VP_ASSIST_PAGE, 0x41000);

	wrmsr(v, 1, HV_X64_MSR_SIMP, SIMP_GPA | HV_MSR_ENABLE);
	wrmsr(v, 1, HV_X64_MSR_SIEFP, SIEFP_GPA | HV_MSR_ENABLE);
	wrmsr(v, 1, HV_X64_MSR_SINT0 + 2, 0x52);
	wrmsr(v, 1, HV_X64_MSR_SINT0 + 5, HV_SINT_MASKED | 0x60);
	wrmsr(v, 1, HV_X64_MSR_SINT0 + 7, HV_SINT_AUTO_EOI | 0x70);
	wrmsr(v, 1, HV_X64_MSR_SCONTROL, HV_MSR_ENABLE);
	post(v, 1, 2, 0x100, 0xA1, 16);
	post(v, 1, 2, 0x101, 0xA2, HV_MESSAGE_PAYLOAD_MAX);
	post(v, 1, 2, 0x102, 0xA3, 0);
	post(v, 1, 5, 0x500, 0xB1, 8);
	post(v, 1, 5, 0x501, 0xB2, 9);
	assert_true(hv_synic_signal_event(&v->p.vps[1].synic, 7, 100));

	wrmsr(v, 3, HV_X64_MSR_SIMP, SIMP3_GPA | HV_MSR_ENABLE);
	wrmsr(v, 3, HV_X64_MSR_SINT0, 0x30);
	post(v, 3, 0, 0x300, 0xC1, 32);
	return v;
}

static void save(struct vm *v, struct sf *f)
{
	struct state_writer *w = sf_begin(f);
	assert_int_equal(hv_partition_save(&v->p, w), 0);
	sf_end(f, w);
}

/* Every section of the file into a fresh partition over from's RAM; how many there were. */
static unsigned restore(struct vm *v, struct sf *f)
{
	struct state_section sec;
	unsigned n = 0;
	while (sf_next(f, &sec)) {
		assert_int_equal(hv_partition_restore(&v->p, &sec), 0);
		n++;
	}
	return n;
}

static const uint32_t per_vp_msrs[] = {
	HV_X64_MSR_GUEST_OS_ID, HV_X64_MSR_HYPERCALL, HV_X64_MSR_VP_INDEX,
	HV_X64_MSR_TIME_REF_COUNT, HV_X64_MSR_REFERENCE_TSC, HV_X64_MSR_TSC_FREQUENCY,
	HV_X64_MSR_VP_ASSIST_PAGE, HV_X64_MSR_CRASH_P0, HV_X64_MSR_CRASH_P0 + 1,
	HV_X64_MSR_CRASH_P0 + 2, HV_X64_MSR_CRASH_P0 + 3, HV_X64_MSR_CRASH_P4,
	HV_X64_MSR_CRASH_CTL, HV_X64_MSR_SCONTROL, HV_X64_MSR_SIMP, HV_X64_MSR_SIEFP,
};

static void assert_same_msrs(struct vm *a, struct vm *b)
{
	for (uint32_t vp = 0; vp < NR_VPS; vp++) {
		for (size_t i = 0; i < sizeof(per_vp_msrs) / sizeof(per_vp_msrs[0]); i++)
			assert_int_equal(rdmsr(a, vp, per_vp_msrs[i]), rdmsr(b, vp, per_vp_msrs[i]));
		for (uint32_t s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			assert_int_equal(rdmsr(a, vp, HV_X64_MSR_SINT0 + s),
					 rdmsr(b, vp, HV_X64_MSR_SINT0 + s));
	}
}

static void test_round_trip(void **state)
{
	(void)state;
	struct vm *a = busy_vm();
	struct sf fa, fb;
	save(a, &fa);
	struct vm *b = vm_new(a);
	assert_int_equal(restore(b, &fa), 1 + NR_VPS);

	assert_same_msrs(a, b);
	/* Restoring wrote no guest page (hypercall code, TSC page, slots) and raised nothing. */
	assert_memory_equal(a->f.ram, b->f.ram, FAKE_RAM_SIZE);
	assert_int_equal(b->f.n_injects, 0);
	/* The SIMP and SIEF pages are granted as after the MSR writes, nothing else. */
	assert_memory_equal(a->grants, b->grants, sizeof(a->grants));
	assert_int_equal(b->grants[SIMP_GPA / 4096], 1);
	assert_int_equal(b->grants[SIEFP_GPA / 4096], 1);
	assert_int_equal(b->grants[SIMP3_GPA / 4096], 1);
	assert_int_equal(b->grants[HC_GPA / 4096], 0);

	save(b, &fb);
	sf_assert_same(&fa, &fb);
	sf_close(&fa);
	sf_close(&fb);

	/* SINT2's queue comes out in order, one per EOM, with its vector. */
	assert_message(b, SIMP_GPA, 2, 0x100, 0xA1, 16);
	assert_true(slot(b, SIMP_GPA, 2)->header.message_flags & HV_MESSAGE_FLAG_PENDING);
	consume(b, 1, SIMP_GPA, 2);
	assert_message(b, SIMP_GPA, 2, 0x101, 0xA2, HV_MESSAGE_PAYLOAD_MAX);
	assert_true(slot(b, SIMP_GPA, 2)->header.message_flags & HV_MESSAGE_FLAG_PENDING);
	assert_int_equal(b->f.n_injects, 1);
	assert_int_equal(b->f.injects[0].vp, 1);
	assert_int_equal(b->f.injects[0].vector, 0x52);
	consume(b, 1, SIMP_GPA, 2);
	assert_message(b, SIMP_GPA, 2, 0x102, 0xA3, 0);
	assert_int_equal(slot(b, SIMP_GPA, 2)->header.message_flags, 0);
	consume(b, 1, SIMP_GPA, 2);
	assert_int_equal(slot(b, SIMP_GPA, 2)->header.message_type, HVMSG_NONE);
	assert_int_equal(b->f.n_injects, 2);

	/* Unmasking SINT5 delivers its first queued message (and the SIEF flag of SINT7 stays
	 * where the guest left it). */
	wrmsr(b, 1, HV_X64_MSR_SINT0 + 5, 0x60);
	assert_message(b, SIMP_GPA, 5, 0x500, 0xB1, 8);
	consume(b, 1, SIMP_GPA, 5);
	assert_message(b, SIMP_GPA, 5, 0x501, 0xB2, 9);
	const uint8_t *flags = b->f.ram + SIEFP_GPA + 7 * HV_EVENT_FLAGS_BYTES;
	assert_int_equal(flags[100 / 8], 1u << (100 % 8));

	/* VP 3's message waits for SCONTROL. */
	assert_int_equal(slot(b, SIMP3_GPA, 0)->header.message_type, HVMSG_NONE);
	wrmsr(b, 3, HV_X64_MSR_SCONTROL, HV_MSR_ENABLE);
	assert_message(b, SIMP3_GPA, 0, 0x300, 0xC1, 32);
	assert_int_equal(b->f.injects[b->f.n_injects - 1].vp, 3);
	assert_int_equal(b->f.injects[b->f.n_injects - 1].vector, 0x30);

	/* The source, driven the same way, ends in the same guest RAM. */
	for (int i = 0; i < 3; i++)
		consume(a, 1, SIMP_GPA, 2);
	wrmsr(a, 1, HV_X64_MSR_SINT0 + 5, 0x60);
	consume(a, 1, SIMP_GPA, 5);
	wrmsr(a, 3, HV_X64_MSR_SCONTROL, HV_MSR_ENABLE);
	assert_memory_equal(a->f.ram, b->f.ram, FAKE_RAM_SIZE);
	vm_free(a);
	vm_free(b);
}

/* Reference time goes on from the restored guest TSC; the page stays valid, and the next
 * REFERENCE_TSC write moves its sequence on from the restored one. */
static void test_reference_time_continues(void **state)
{
	(void)state;
	struct vm *a = busy_vm();
	struct hv_reference_tsc_page *pa = (void *)(a->f.ram + TSC_GPA);
	uint32_t seq = pa->tsc_sequence;
	struct sf f;
	save(a, &f);
	struct vm *b = vm_new(a);
	restore(b, &f);
	sf_close(&f);
	struct hv_reference_tsc_page *pb = (void *)(b->f.ram + TSC_GPA);
	assert_int_equal(pb->tsc_sequence, seq);
	assert_int_equal(rdmsr(a, 0, HV_X64_MSR_TIME_REF_COUNT), rdmsr(b, 0, HV_X64_MSR_TIME_REF_COUNT));
	b->f.tsc[0] += TSC_KHZ * 1000; /* one second later */
	uint64_t page_time = (uint64_t)(((unsigned __int128)b->f.tsc[0] * pb->tsc_scale) >> 64) +
			     (uint64_t)pb->tsc_offset;
	assert_int_equal(page_time, rdmsr(b, 0, HV_X64_MSR_TIME_REF_COUNT));
	uint64_t elapsed = page_time - rdmsr(a, 0, HV_X64_MSR_TIME_REF_COUNT);
	assert_in_range(elapsed, 10000000 - 1, 10000000); /* 100 ns units, the scale rounds down */
	wrmsr(b, 0, HV_X64_MSR_REFERENCE_TSC, TSC_GPA | HV_MSR_ENABLE);
	assert_int_equal(pb->tsc_sequence, seq + 1);
	vm_free(a);
	vm_free(b);
}

/* A VP restored twice (a hostile file) keeps its grants balanced. */
static void test_restore_twice(void **state)
{
	(void)state;
	struct vm *a = busy_vm();
	struct sf f1, f2;
	save(a, &f1);
	save(a, &f2);
	struct vm *b = vm_new(a);
	restore(b, &f1);
	restore(b, &f2);
	sf_close(&f1);
	sf_close(&f2);
	assert_memory_equal(a->grants, b->grants, sizeof(a->grants));
	assert_same_msrs(a, b);
	vm_free(a);
	vm_free(b);
}

/* ---- hostile input ---- */

static int restore_hv(void *obj, const struct state_section *sec)
{
	return hv_partition_restore(obj, sec);
}

static void payload_of(struct vm *v, uint32_t type, uint32_t instance, uint8_t **buf, size_t *len)
{
	struct sf f;
	save(v, &f);
	struct state_section sec;
	while (sf_next(&f, &sec) && !(sec.type == type && sec.instance == instance))
		;
	assert_int_equal(sec.type, type);
	*len = sec.payload.size;
	*buf = malloc(*len + 1);
	assert_non_null(*buf);
	memcpy(*buf, sec.payload.data, *len);
	(*buf)[*len] = 0;
	sf_close(&f);
}

/* Restoring buf with one field replaced fails with err and a message saying text. */
static void assert_field_fails(struct vm *v, uint32_t type, uint32_t instance, const uint8_t *good,
			       size_t len, size_t off, uint64_t value, unsigned width, const char *text)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, good, len);
	sf_poke(buf, off, value, width);
	struct state_section sec = sf_section(type, instance, 1, buf, len);
	sf_assert_error(hv_partition_restore(&v->p, &sec), -EBADMSG, text);
	free(buf);
}

static void assert_untouched(struct vm *v)
{
	for (uint32_t vp = 0; vp < NR_VPS; vp++) {
		assert_int_equal(rdmsr(v, vp, HV_X64_MSR_SIMP), 0);
		assert_int_equal(rdmsr(v, vp, HV_X64_MSR_VP_ASSIST_PAGE), 0);
		assert_int_equal(v->p.vps[vp].synic.queue[2].count, 0);
	}
	assert_int_equal(rdmsr(v, 0, HV_X64_MSR_GUEST_OS_ID), 0);
	assert_int_equal(v->f.n_injects, 0);
	for (unsigned i = 0; i < PAGES; i++)
		assert_int_equal(v->grants[i], 0);
}

static void test_partition_hostile(void **state)
{
	(void)state;
	struct vm *a = busy_vm(), *b = vm_new(NULL);
	uint8_t *p;
	size_t len;
	payload_of(a, STATE_SECTION_PARTITION, 0, &p, &len);
	assert_int_equal(len, 85);
	const uint32_t T = STATE_SECTION_PARTITION;
	assert_field_fails(b, T, 0, p, len, 0, NR_VPS + 1, 4, "saved with 5 VPs, this one has 4");
	assert_field_fails(b, T, 0, p, len, 4, TSC_KHZ + 1, 8, "2500001 kHz");
	assert_field_fails(b, T, 0, p, len, 12, HC_PORT + 1, 1, "hypercall port 0xec");
	assert_field_fails(b, T, 0, p, len, 21, HC_GPA | 4, 8, "hypercall MSR 0x1004");
	assert_field_fails(b, T, 0, p, len, 29, TSC_GPA | 0x801, 8, "reference TSC MSR 0x2801");
	sf_assert_exact_length(restore_hv, &b->p, T, 0, p, len);

	struct state_section sec = sf_section(T, 1, 1, p, len);
	sf_assert_error(hv_partition_restore(&b->p, &sec), -EBADMSG, "instance 1");
	sec = sf_section(T, 0, 2, p, len);
	sf_assert_error(hv_partition_restore(&b->p, &sec), -EPROTONOSUPPORT, "version 2");
	sec = sf_section(STATE_SECTION_UART, 0, 1, p, len);
	sf_assert_error(hv_partition_restore(&b->p, &sec), -EINVAL, "type 0x300");
	assert_untouched(b);
	free(p);
	vm_free(a);
	vm_free(b);
}

/* SYNIC payload offsets: VP assist 0, SCONTROL 8, SIMP 16, SIEFP 24, SINTn 32 + 8n, then the
 * queues from 160: VP 1 has SINT0-1 empty, SINT2 with two messages. */
#define Q_SINT2   168
#define Q_MSG0    172

static void test_synic_hostile(void **state)
{
	(void)state;
	struct vm *a = busy_vm(), *b = vm_new(NULL);
	uint8_t *p;
	size_t len;
	payload_of(a, STATE_SECTION_SYNIC, 1, &p, &len);
	const uint32_t T = STATE_SECTION_SYNIC;
	assert_field_fails(b, T, 1, p, len, 0, 0x40002, 8, "synic vp 1: VP assist MSR 0x40002");
	assert_field_fails(b, T, 1, p, len, 8, 3, 8, "SCONTROL 0x3");
	assert_field_fails(b, T, 1, p, len, 16, SIMP_GPA | 0x10, 8, "SIMP 0x10010");
	assert_field_fails(b, T, 1, p, len, 24, SIEFP_GPA | 0x801, 8, "SIEFP 0x20801");
	assert_field_fails(b, T, 1, p, len, 32 + 8 * 4, 0x05, 8, "SINT4 0x5");
	assert_field_fails(b, T, 1, p, len, 32 + 8 * 15, 0x40 | 1ull << 8, 8, "SINT15 0x140");
	assert_field_fails(b, T, 1, p, len, 32 + 8 * 15, 0x40 | 1ull << 19, 8, "SINT15");
	assert_field_fails(b, T, 1, p, len, Q_SINT2, 65, 4,
			   "synic vp 1: 65 queued messages on SINT 2, at most 64");
	assert_field_fails(b, T, 1, p, len, Q_SINT2, 0xFFFFFFFF, 4, "4294967295 queued messages");
	assert_field_fails(b, T, 1, p, len, Q_MSG0, HVMSG_NONE, 4, "message 0 on SINT 2 has no type");
	assert_field_fails(b, T, 1, p, len, Q_MSG0 + 4, 241, 1, "241 payload bytes, at most 240");
	assert_field_fails(b, T, 1, p, len, Q_MSG0 + 4, 255, 1, "255 payload bytes");
	/* a message longer than saved eats into what follows: the queues end early or late */
	assert_field_fails(b, T, 1, p, len, Q_MSG0 + 4, 17, 1, "synic vp 1");
	sf_assert_exact_length(restore_hv, &b->p, T, 1, p, len);

	struct state_section sec = sf_section(T, NR_VPS, 1, p, len);
	sf_assert_error(hv_partition_restore(&b->p, &sec), -EBADMSG, "VP 4, the partition has 4");
	sec = sf_section(T, 1, 0, p, len);
	sf_assert_error(hv_partition_restore(&b->p, &sec), -EPROTONOSUPPORT, "synic: section version 0");
	assert_untouched(b);
	free(p);
	vm_free(a);
	vm_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_reference_time_continues),
		cmocka_unit_test(test_restore_twice),
		cmocka_unit_test(test_partition_hostile),
		cmocka_unit_test(test_synic_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
