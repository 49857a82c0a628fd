/* Unit tests for hv/synic.c: the SynIC MSRs (SCONTROL, SVERSION, SIEFP, SIMP, EOM,
 * SINT0-15 and their reserved-bit and vector rules), message delivery into the 16
 * message slots with queueing, MessagePending and EOM redelivery, holding messages while
 * the SynIC, the page or the SINT is off, and event flags in the SIEF page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "fake_platform.h"
#include "hv/synic.h"

#define SIMP_GPA  0x10000ull
#define SIEFP_GPA 0x20000ull
#define VP        3

struct ctx {
	struct fake f;
	struct hv_platform plat;
	struct hv_synic s;
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	fake_init(&c->f);
	if (!c->f.ram)
		return -1;
	c->plat = fake_platform(&c->f);
	hv_synic_init(&c->s, VP, &c->plat);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	hv_synic_destroy(&c->s);
	fake_free(&c->f);
	free(c);
	return 0;
}

static uint64_t rd(struct ctx *c, uint32_t msr)
{
	uint64_t v = 0xDEADBEEFull;
	assert_true(hv_synic_msr_read(&c->s, msr, &v));
	return v;
}

static void wr(struct ctx *c, uint32_t msr, uint64_t v)
{
	assert_true(hv_synic_msr_write(&c->s, msr, v));
}

static struct hv_message *slot(struct ctx *c, uint32_t sint)
{
	return (struct hv_message *)(c->f.ram + SIMP_GPA + sint * HV_MESSAGE_SIZE);
}

/* SynIC on, message and event pages enabled, sint unmasked with vector */
static void enable(struct ctx *c, uint32_t sint, uint8_t vector)
{
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA | HV_MSR_ENABLE);
	wr(c, HV_X64_MSR_SIEFP, SIEFP_GPA | HV_MSR_ENABLE);
	wr(c, HV_X64_MSR_SINT0 + sint, vector);
	wr(c, HV_X64_MSR_SCONTROL, HV_MSR_ENABLE);
}

static int post(struct ctx *c, uint32_t sint, uint32_t type, uint8_t fill, uint32_t len)
{
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
	memset(payload, fill, sizeof(payload));
	return hv_synic_post(&c->s, sint, type, payload, len);
}

/* The guest's message handler: consume the slot, then EOM if more is pending. */
static void guest_consume(struct ctx *c, uint32_t sint)
{
	struct hv_message *m = slot(c, sint);
	bool pending = m->header.message_flags & HV_MESSAGE_FLAG_PENDING;
	m->header.message_type = HVMSG_NONE;
	if (pending)
		wr(c, HV_X64_MSR_EOM, 0);
}

/* ---- MSRs ---- */

static void test_initial_state(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(rd(c, HV_X64_MSR_SCONTROL), 0);
	assert_int_equal(rd(c, HV_X64_MSR_SVERSION), HV_SYNIC_VERSION);
	assert_int_equal(rd(c, HV_X64_MSR_SIEFP), 0);
	assert_int_equal(rd(c, HV_X64_MSR_SIMP), 0);
	assert_int_equal(rd(c, HV_X64_MSR_EOM), 0);
	for (uint32_t i = 0; i < 16; i++)
		assert_int_equal(rd(c, HV_X64_MSR_SINT0 + i), HV_SINT_MASKED);
}

static void test_scontrol_svesion_eom(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SCONTROL, 1);
	assert_int_equal(rd(c, HV_X64_MSR_SCONTROL), 1);
	wr(c, HV_X64_MSR_SCONTROL, 0);
	assert_int_equal(rd(c, HV_X64_MSR_SCONTROL), 0);
	/* SVERSION is read-only */
	assert_false(hv_synic_msr_write(&c->s, HV_X64_MSR_SVERSION, 2));
	assert_int_equal(rd(c, HV_X64_MSR_SVERSION), 1);
	/* EOM is write-only; writing it with nothing queued is harmless */
	wr(c, HV_X64_MSR_EOM, 0);
	assert_int_equal(c->f.n_injects, 0);
}

static void test_page_msrs(void **state)
{
	struct ctx *c = *state;
	/* bits 1-11 reserved: dropped; GPA and enable kept */
	wr(c, HV_X64_MSR_SIMP, 0x123456000ull | 0xFFE | 1);
	assert_int_equal(rd(c, HV_X64_MSR_SIMP), 0x123456001ull);
	wr(c, HV_X64_MSR_SIEFP, 0x654321000ull | 0x002);
	assert_int_equal(rd(c, HV_X64_MSR_SIEFP), 0x654321000ull);
	wr(c, HV_X64_MSR_SIMP, 0);
	assert_int_equal(rd(c, HV_X64_MSR_SIMP), 0);
}

static void test_sint_rules(void **state)
{
	struct ctx *c = *state;
	/* valid: vector >= 16 unmasked; masked with any vector; AutoEOI and Polling bits */
	wr(c, HV_X64_MSR_SINT0, 0x10);
	assert_int_equal(rd(c, HV_X64_MSR_SINT0), 0x10);
	wr(c, HV_X64_MSR_SINT0 + 1, 0xFF | HV_SINT_AUTO_EOI);
	assert_int_equal(rd(c, HV_X64_MSR_SINT0 + 1), 0xFF | HV_SINT_AUTO_EOI);
	wr(c, HV_X64_MSR_SINT0 + 2, 0x05 | HV_SINT_MASKED);
	assert_int_equal(rd(c, HV_X64_MSR_SINT0 + 2), 0x05 | HV_SINT_MASKED);
	wr(c, HV_X64_MSR_SINT15, 0x40 | HV_SINT_POLLING);
	assert_int_equal(rd(c, HV_X64_MSR_SINT15), 0x40 | HV_SINT_POLLING);

	/* invalid: unmasked vector below 16 */
	for (uint64_t v = 0; v < 16; v++)
		assert_false(hv_synic_msr_write(&c->s, HV_X64_MSR_SINT0 + 3, v));
	assert_int_equal(rd(c, HV_X64_MSR_SINT0 + 3), HV_SINT_MASKED);
	/* invalid: reserved bits 8-15 and 19-63 */
	const uint64_t reserved[] = { 1ull << 8, 1ull << 15, 1ull << 19, 1ull << 32, 1ull << 63 };
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		assert_false(hv_synic_msr_write(&c->s, HV_X64_MSR_SINT0 + 4, 0x40 | reserved[i]));
		assert_false(hv_synic_msr_write(&c->s, HV_X64_MSR_SINT0 + 4, 0x40 | HV_SINT_MASKED | reserved[i]));
	}
	assert_int_equal(rd(c, HV_X64_MSR_SINT0 + 4), HV_SINT_MASKED);
}

static void test_unknown_msrs(void **state)
{
	struct ctx *c = *state;
	uint64_t v;
	const uint32_t msrs[] = { 0x40000085, 0x4000008F, 0x400000A0, HV_X64_MSR_GUEST_OS_ID,
				  HV_X64_MSR_STIMER0_CONFIG };
	for (size_t i = 0; i < sizeof(msrs) / sizeof(msrs[0]); i++) {
		assert_false(hv_synic_msr_read(&c->s, msrs[i], &v));
		assert_false(hv_synic_msr_write(&c->s, msrs[i], 0x40));
	}
}

/* ---- messages ---- */

static void test_post_bad_arguments(void **state)
{
	struct ctx *c = *state;
	enable(c, 0, 0x40);
	assert_int_equal(post(c, 16, 1, 0, 8), -1);
	assert_int_equal(post(c, UINT32_MAX, 1, 0, 8), -1);
	assert_int_equal(post(c, 0, 1, 0, 241), -1);
	assert_int_equal(post(c, 0, HVMSG_NONE, 0, 8), -1);
	assert_int_equal(slot(c, 0)->header.message_type, HVMSG_NONE);
	assert_int_equal(c->f.n_injects, 0);
}

static void test_post_delivers_into_slot(void **state)
{
	struct ctx *c = *state;
	enable(c, 2, 0x51);
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i ^ 0x5A);
	assert_int_equal(hv_synic_post(&c->s, 2, 0x1234, payload, HV_MESSAGE_PAYLOAD_MAX), 0);
	struct hv_message *m = slot(c, 2);
	assert_int_equal(m->header.message_type, 0x1234);
	assert_int_equal(m->header.payload_size, HV_MESSAGE_PAYLOAD_MAX);
	assert_int_equal(m->header.message_flags, 0);
	assert_memory_equal(m->payload, payload, HV_MESSAGE_PAYLOAD_MAX);
	assert_int_equal(c->f.n_injects, 1);
	assert_int_equal(c->f.injects[0].vp, VP);
	assert_int_equal(c->f.injects[0].vector, 0x51);
	/* other slots untouched */
	for (uint32_t i = 0; i < 16; i++)
		if (i != 2)
			assert_int_equal(slot(c, i)->header.message_type, HVMSG_NONE);
	assert_int_equal(c->f.ram[SIMP_GPA + 3 * HV_MESSAGE_SIZE], 0);
}

static void test_each_sint_has_its_slot_and_vector(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA | 1);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	for (uint32_t i = 0; i < 16; i++)
		wr(c, HV_X64_MSR_SINT0 + i, 0x30 + i);
	for (uint32_t i = 0; i < 16; i++)
		assert_int_equal(post(c, i, 0x100 + i, (uint8_t)i, 4), 0);
	assert_int_equal(c->f.n_injects, 16);
	for (uint32_t i = 0; i < 16; i++) {
		assert_int_equal(slot(c, i)->header.message_type, 0x100 + i);
		assert_int_equal(slot(c, i)->payload[0], i);
		assert_int_equal(c->f.injects[i].vector, 0x30 + i);
	}
}

static void test_busy_slot_queues_and_sets_pending(void **state)
{
	struct ctx *c = *state;
	enable(c, 1, 0x60);
	assert_int_equal(post(c, 1, 1, 0xA1, 10), 0);
	assert_int_equal(post(c, 1, 2, 0xA2, 20), 0);
	struct hv_message *m = slot(c, 1);
	/* the first message stays; the slot says more is pending; no second interrupt yet */
	assert_int_equal(m->header.message_type, 1);
	assert_int_equal(m->payload[0], 0xA1);
	assert_int_equal(m->header.message_flags & HV_MESSAGE_FLAG_PENDING, HV_MESSAGE_FLAG_PENDING);
	assert_int_equal(c->f.n_injects, 1);

	/* the guest consumes it and EOMs: the queued message arrives, with an interrupt */
	guest_consume(c, 1);
	assert_int_equal(m->header.message_type, 2);
	assert_int_equal(m->header.payload_size, 20);
	assert_int_equal(m->payload[0], 0xA2);
	assert_int_equal(m->payload[19], 0xA2);
	assert_int_equal(m->header.message_flags & HV_MESSAGE_FLAG_PENDING, 0);
	assert_int_equal(c->f.n_injects, 2);
	assert_int_equal(c->f.injects[1].vector, 0x60);
}

static void test_eom_with_slot_still_busy_redelivers_nothing(void **state)
{
	struct ctx *c = *state;
	enable(c, 1, 0x60);
	assert_int_equal(post(c, 1, 1, 0xA1, 10), 0);
	assert_int_equal(post(c, 1, 2, 0xA2, 10), 0);
	/* EOM without clearing the slot: nothing is overwritten */
	wr(c, HV_X64_MSR_EOM, 0);
	assert_int_equal(slot(c, 1)->header.message_type, 1);
	assert_int_equal(slot(c, 1)->payload[0], 0xA1);
	assert_true(slot(c, 1)->header.message_flags & HV_MESSAGE_FLAG_PENDING);
	assert_int_equal(c->f.n_injects, 1);
}

static void test_queue_drains_in_order(void **state)
{
	struct ctx *c = *state;
	enable(c, 5, 0x70);
	for (uint32_t i = 1; i <= 5; i++)
		assert_int_equal(post(c, 5, i, (uint8_t)i, i), 0);
	for (uint32_t i = 1; i <= 5; i++) {
		struct hv_message *m = slot(c, 5);
		assert_int_equal(m->header.message_type, i);
		assert_int_equal(m->header.payload_size, i);
		assert_int_equal(m->payload[0], i);
		/* MessagePending while more are queued */
		assert_int_equal(m->header.message_flags & HV_MESSAGE_FLAG_PENDING,
				 i < 5 ? HV_MESSAGE_FLAG_PENDING : 0);
		assert_int_equal(c->f.n_injects, i);
		guest_consume(c, 5);
	}
	assert_int_equal(slot(c, 5)->header.message_type, HVMSG_NONE);
	assert_int_equal(c->f.n_injects, 5);
}

static void test_queue_depth_limit(void **state)
{
	struct ctx *c = *state;
	enable(c, 0, 0x40);
	assert_int_equal(post(c, 0, 1, 0, 1), 0); /* into the slot */
	for (unsigned i = 0; i < HV_SYNIC_QUEUE_DEPTH; i++)
		assert_int_equal(post(c, 0, 2 + i, 0, 1), 0);
	assert_int_equal(post(c, 0, 999, 0, 1), -2);
	/* another SINT has its own queue */
	wr(c, HV_X64_MSR_SINT0 + 1, 0x41);
	assert_int_equal(post(c, 1, 1, 0, 1), 0);
	/* consuming one makes room for one */
	guest_consume(c, 0);
	assert_int_equal(slot(c, 0)->header.message_type, 2);
	assert_int_equal(post(c, 0, 999, 0, 1), 0);
	assert_int_equal(post(c, 0, 1000, 0, 1), -2);
	/* all of them come out in order */
	for (unsigned i = 0; i < HV_SYNIC_QUEUE_DEPTH; i++) {
		assert_int_equal(slot(c, 0)->header.message_type, 2 + i);
		guest_consume(c, 0);
	}
	assert_int_equal(slot(c, 0)->header.message_type, 999);
}

static void test_messages_held_until_simp_enabled(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SINT0 + 3, 0x44);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	assert_int_equal(post(c, 3, 7, 0x77, 8), 0);
	assert_int_equal(c->f.n_injects, 0);
	/* the page is written only once it is enabled */
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA);
	assert_int_equal(slot(c, 3)->header.message_type, HVMSG_NONE);
	assert_int_equal(c->f.n_injects, 0);
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA | 1);
	assert_int_equal(slot(c, 3)->header.message_type, 7);
	assert_int_equal(slot(c, 3)->payload[7], 0x77);
	assert_int_equal(c->f.n_injects, 1);
	assert_int_equal(c->f.injects[0].vector, 0x44);
}

static void test_messages_held_until_scontrol_enabled(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA | 1);
	wr(c, HV_X64_MSR_SINT0 + 3, 0x44);
	assert_int_equal(post(c, 3, 7, 0x77, 8), 0);
	assert_int_equal(slot(c, 3)->header.message_type, HVMSG_NONE);
	assert_int_equal(c->f.n_injects, 0);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	assert_int_equal(slot(c, 3)->header.message_type, 7);
	assert_int_equal(c->f.n_injects, 1);
}

static void test_messages_held_while_sint_masked(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA | 1);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	/* SINT 4 stays masked (its initial state) */
	assert_int_equal(post(c, 4, 9, 0x99, 8), 0);
	assert_int_equal(post(c, 4, 10, 0x9A, 8), 0);
	assert_int_equal(slot(c, 4)->header.message_type, HVMSG_NONE);
	assert_int_equal(c->f.n_injects, 0);
	/* masked with a vector set: still held */
	wr(c, HV_X64_MSR_SINT0 + 4, 0x48 | HV_SINT_MASKED);
	assert_int_equal(slot(c, 4)->header.message_type, HVMSG_NONE);
	assert_int_equal(c->f.n_injects, 0);
	/* unmasking delivers the first, marks the second pending */
	wr(c, HV_X64_MSR_SINT0 + 4, 0x48);
	assert_int_equal(slot(c, 4)->header.message_type, 9);
	assert_true(slot(c, 4)->header.message_flags & HV_MESSAGE_FLAG_PENDING);
	assert_int_equal(c->f.n_injects, 1);
	assert_int_equal(c->f.injects[0].vector, 0x48);
	guest_consume(c, 4);
	assert_int_equal(slot(c, 4)->header.message_type, 10);
	assert_int_equal(c->f.n_injects, 2);
}

static void test_polling_sint_gets_message_without_interrupt(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA | 1);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	wr(c, HV_X64_MSR_SINT0 + 6, 0x50 | HV_SINT_POLLING);
	assert_int_equal(post(c, 6, 3, 0x33, 4), 0);
	assert_int_equal(slot(c, 6)->header.message_type, 3);
	assert_int_equal(c->f.n_injects, 0);
}

static void test_simp_outside_ram_holds_messages(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SINT0, 0x40);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	wr(c, HV_X64_MSR_SIMP, 0x40000000ull | 1); /* not RAM */
	assert_int_equal(post(c, 0, 1, 0x11, 4), 0);
	assert_int_equal(c->f.n_injects, 0);
	wr(c, HV_X64_MSR_SIMP, SIMP_GPA | 1);
	assert_int_equal(slot(c, 0)->header.message_type, 1);
	assert_int_equal(c->f.n_injects, 1);
}

static void test_stale_pending_flag_cleared_on_delivery(void **state)
{
	struct ctx *c = *state;
	enable(c, 7, 0x57);
	/* a slot left with MessagePending from before: a delivery with nothing queued clears it */
	slot(c, 7)->header.message_flags = HV_MESSAGE_FLAG_PENDING;
	assert_int_equal(post(c, 7, 1, 0, 0), 0);
	assert_int_equal(slot(c, 7)->header.message_type, 1);
	assert_int_equal(slot(c, 7)->header.payload_size, 0);
	assert_int_equal(slot(c, 7)->header.message_flags, 0);
}

/* ---- event flags ---- */

static bool flag_set(struct ctx *c, uint32_t sint, uint32_t flag)
{
	return c->f.ram[SIEFP_GPA + sint * HV_EVENT_FLAGS_BYTES + flag / 8] & (1u << (flag % 8));
}

static void test_signal_event_sets_bit_and_interrupts_once(void **state)
{
	struct ctx *c = *state;
	enable(c, 3, 0x53);
	assert_true(hv_synic_signal_event(&c->s, 3, 70));
	assert_true(flag_set(c, 3, 70));
	assert_int_equal(c->f.ram[SIEFP_GPA + 3 * 256 + 8], 1u << 6);
	assert_int_equal(c->f.n_injects, 1);
	assert_int_equal(c->f.injects[0].vp, VP);
	assert_int_equal(c->f.injects[0].vector, 0x53);
	/* already set: no second interrupt */
	assert_true(hv_synic_signal_event(&c->s, 3, 70));
	assert_int_equal(c->f.n_injects, 1);
	/* a different flag on the same SINT is a new edge */
	assert_true(hv_synic_signal_event(&c->s, 3, 0));
	assert_int_equal(c->f.n_injects, 2);
	/* the guest clears the bit: the next signal interrupts again */
	c->f.ram[SIEFP_GPA + 3 * 256 + 8] = 0;
	assert_true(hv_synic_signal_event(&c->s, 3, 70));
	assert_int_equal(c->f.n_injects, 3);
	/* nothing else in the page changed */
	for (unsigned i = 0; i < 4096; i++) {
		uint8_t want = 0;
		if (i == 3 * 256 + 8) want = 1u << 6;
		if (i == 3 * 256) want = 1;
		assert_int_equal(c->f.ram[SIEFP_GPA + i], want);
	}
}

/* A flag set while its SINT could not interrupt is raised once it can: otherwise its edge is
 * gone and every later signal of that channel is swallowed. */
static void test_signal_event_raised_once_deliverable(void **state)
{
	struct ctx *c = *state;
	enable(c, 0, 0x40);
	assert_true(hv_synic_signal_event(&c->s, 1, 5)); /* SINT 1 masked */
	assert_int_equal(c->f.n_injects, 0);
	wr(c, HV_X64_MSR_SINT0 + 1, 0x41);
	assert_int_equal(c->f.n_injects, 1);
	assert_int_equal(c->f.injects[0].vector, 0x41);
	/* SCONTROL off then on, flag still set: raised again */
	wr(c, HV_X64_MSR_SCONTROL, 0);
	assert_true(hv_synic_signal_event(&c->s, 1, 6));
	assert_int_equal(c->f.n_injects, 1);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	assert_int_equal(c->f.n_injects, 2);
	/* nothing set on a SINT: unmasking it raises nothing; an EOM raises nothing either */
	wr(c, HV_X64_MSR_SINT0 + 2, 0x42);
	wr(c, HV_X64_MSR_EOM, 0);
	assert_int_equal(c->f.n_injects, 2);
	for (unsigned i = 0; i < c->f.n_injects; i++)
		assert_int_equal(c->f.injects[i].vector, 0x41);
}

static void test_signal_event_flag_range(void **state)
{
	struct ctx *c = *state;
	enable(c, 15, 0x5F);
	assert_true(hv_synic_signal_event(&c->s, 15, 2047));
	assert_int_equal(c->f.ram[SIEFP_GPA + 4095], 0x80); /* last bit of the page */
	assert_false(hv_synic_signal_event(&c->s, 15, 2048));
	assert_false(hv_synic_signal_event(&c->s, 16, 0));
	assert_false(hv_synic_signal_event(&c->s, 0, UINT32_MAX));
	assert_int_equal(c->f.ram[SIEFP_GPA + 4096], 0);
	assert_int_equal(c->f.n_injects, 1);
}

static void test_signal_event_masked_or_polling(void **state)
{
	struct ctx *c = *state;
	enable(c, 0, 0x40);
	/* SINT 1 masked: the flag is set, no interrupt */
	assert_true(hv_synic_signal_event(&c->s, 1, 5));
	assert_true(flag_set(c, 1, 5));
	assert_int_equal(c->f.n_injects, 0);
	wr(c, HV_X64_MSR_SINT0 + 2, 0x42 | HV_SINT_POLLING);
	assert_true(hv_synic_signal_event(&c->s, 2, 5));
	assert_true(flag_set(c, 2, 5));
	assert_int_equal(c->f.n_injects, 0);
	/* SCONTROL off: flag set, no interrupt */
	wr(c, HV_X64_MSR_SCONTROL, 0);
	assert_true(hv_synic_signal_event(&c->s, 0, 9));
	assert_true(flag_set(c, 0, 9));
	assert_int_equal(c->f.n_injects, 0);
}

static void test_signal_event_needs_siefp(void **state)
{
	struct ctx *c = *state;
	wr(c, HV_X64_MSR_SINT0, 0x40);
	wr(c, HV_X64_MSR_SCONTROL, 1);
	wr(c, HV_X64_MSR_SIEFP, SIEFP_GPA); /* GPA set, not enabled */
	assert_false(hv_synic_signal_event(&c->s, 0, 1));
	assert_int_equal(c->f.ram[SIEFP_GPA], 0);
	wr(c, HV_X64_MSR_SIEFP, 0x40000000ull | 1); /* enabled, not RAM */
	assert_false(hv_synic_signal_event(&c->s, 0, 1));
	assert_int_equal(c->f.n_injects, 0);
	wr(c, HV_X64_MSR_SIEFP, SIEFP_GPA | 1);
	assert_true(hv_synic_signal_event(&c->s, 0, 1));
	assert_int_equal(c->f.ram[SIEFP_GPA], 2);
	assert_int_equal(c->f.n_injects, 1);
}

/* ---- concurrency: a poster thread against a guest consuming on this thread ---- */

#define RACE_MESSAGES 2000

static void *poster(void *arg)
{
	struct ctx *c = arg;
	for (uint32_t i = 1; i <= RACE_MESSAGES; i++) {
		int rc;
		while ((rc = hv_synic_post(&c->s, 9, i, &i, sizeof(i))) == -2)
			sched_yield();
		if (rc != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_concurrent_post_and_consume(void **state)
{
	struct ctx *c = *state;
	enable(c, 9, 0x59);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, poster, c), 0);
	struct hv_message *m = slot(c, 9);
	uint32_t next = 1;
	for (unsigned long spins = 0; next <= RACE_MESSAGES; spins++) {
		if (spins > 200000000ul)
			fail_msg("stuck waiting for message %u", next);
		uint32_t type = __atomic_load_n(&m->header.message_type, __ATOMIC_ACQUIRE);
		if (type == HVMSG_NONE) {
			sched_yield();
			continue;
		}
		uint32_t seq;
		memcpy(&seq, m->payload, sizeof(seq));
		assert_int_equal(type, next);
		assert_int_equal(seq, next);
		next++;
		/* TLFS order: clear the type, then look at MessagePending, then EOM */
		__atomic_store_n(&m->header.message_type, HVMSG_NONE, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&m->header.message_flags, __ATOMIC_SEQ_CST) & HV_MESSAGE_FLAG_PENDING)
			wr(c, HV_X64_MSR_EOM, 0);
	}
	void *ret;
	assert_int_equal(pthread_join(t, &ret), 0);
	assert_null(ret);
	/* every delivery was announced, and nothing was delivered twice */
	assert_int_equal(c->f.n_injects, RACE_MESSAGES);
	assert_int_equal(__atomic_load_n(&m->header.message_type, __ATOMIC_ACQUIRE), HVMSG_NONE);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_initial_state),
		T(test_scontrol_svesion_eom),
		T(test_page_msrs),
		T(test_sint_rules),
		T(test_unknown_msrs),
		T(test_post_bad_arguments),
		T(test_post_delivers_into_slot),
		T(test_each_sint_has_its_slot_and_vector),
		T(test_busy_slot_queues_and_sets_pending),
		T(test_eom_with_slot_still_busy_redelivers_nothing),
		T(test_queue_drains_in_order),
		T(test_queue_depth_limit),
		T(test_messages_held_until_simp_enabled),
		T(test_messages_held_until_scontrol_enabled),
		T(test_messages_held_while_sint_masked),
		T(test_polling_sint_gets_message_without_interrupt),
		T(test_simp_outside_ram_holds_messages),
		T(test_stale_pending_flag_cleared_on_delivery),
		T(test_signal_event_sets_bit_and_interrupts_once),
		T(test_signal_event_raised_once_deliverable),
		T(test_signal_event_flag_range),
		T(test_signal_event_masked_or_polling),
		T(test_signal_event_needs_siefp),
		T(test_concurrent_post_and_consume),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
