/* SynIC of one virtual processor: message slots with queueing and redelivery on EOM,
 * event flags with interrupt injection. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hv/partition.h"
#include "hv/synic.h"
#include "state/savedstate.h"

#define SINT_VALID_BITS (HV_SINT_VECTOR_MASK | HV_SINT_MASKED | HV_SINT_AUTO_EOI | HV_SINT_POLLING)
#define PAGE_GPA(msr) ((msr) & ~0xFFFull)
#define PAGE_MSR_VALID_BITS (~0xFFEull) /* GPA + enable; bits 1-11 are reserved */

void hv_synic_init(struct hv_synic *s, uint32_t vp, const struct hv_platform *platform)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->vp = vp;
	s->platform = platform;
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		s->sint[i] = HV_SINT_MASKED;
}

/* With the platform's grant (a debug check): the SIMP and SIEF pages are written while enabled. */
static void page_grant(struct hv_synic *s, uint64_t msr, bool on)
{
	if (!s->platform->grant || !(msr & HV_MSR_ENABLE))
		return;
	void *page = s->platform->gpa_to_hva(s->platform->opaque, PAGE_GPA(msr), 4096);
	if (page)
		s->platform->grant(s->platform->opaque, page, 4096, on);
}

void hv_synic_destroy(struct hv_synic *s)
{
	page_grant(s, s->simp, false);
	page_grant(s, s->siefp, false);
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		free(s->queue[i].msgs);
	pthread_mutex_destroy(&s->lock);
}

static bool sint_deliverable(const struct hv_synic *s, uint32_t sint)
{
	return (s->scontrol & HV_MSR_ENABLE) && !(s->sint[sint] & HV_SINT_MASKED);
}

static void raise_sint(struct hv_synic *s, uint32_t sint)
{
	if (sint_deliverable(s, sint) && !(s->sint[sint] & HV_SINT_POLLING))
		s->platform->inject(s->platform->opaque, s->vp, s->sint[sint] & HV_SINT_VECTOR_MASK);
}

static struct hv_message *message_slot(struct hv_synic *s, uint32_t sint)
{
	if (!(s->simp & HV_MSR_ENABLE))
		return NULL;
	uint8_t *page = s->platform->gpa_to_hva(s->platform->opaque, PAGE_GPA(s->simp), 4096);
	return page ? (struct hv_message *)(page + sint * HV_MESSAGE_SIZE) : NULL;
}

/* Move queued messages into the slot while it is free. The guest owns the slot while
 * message_type != NONE; it clears the type, then checks MessagePending and writes EOM.
 * Setting MessagePending before re-checking the type closes the race with that. */
static void deliver_locked(struct hv_synic *s, uint32_t sint)
{
	struct hv_synic_queue *q = &s->queue[sint];
	while (q->count) {
		if (!sint_deliverable(s, sint))
			return;
		struct hv_message *slot = message_slot(s, sint);
		if (!slot)
			return;
		if (__atomic_load_n(&slot->header.message_type, __ATOMIC_ACQUIRE) != HVMSG_NONE) {
			__atomic_or_fetch(&slot->header.message_flags, HV_MESSAGE_FLAG_PENDING, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&slot->header.message_type, __ATOMIC_SEQ_CST) != HVMSG_NONE)
				return;
		}
		const struct hv_message *m = &q->msgs[q->head];
		q->head = (q->head + 1) % HV_SYNIC_QUEUE_DEPTH;
		q->count--;
		memcpy(slot->payload, m->payload, m->header.payload_size);
		slot->header.payload_size = m->header.payload_size;
		slot->header.sender = m->header.sender;
		slot->header.message_flags = q->count ? HV_MESSAGE_FLAG_PENDING : 0;
		__atomic_store_n(&slot->header.message_type, m->header.message_type, __ATOMIC_RELEASE);
		raise_sint(s, sint);
	}
}

static void deliver_all_locked(struct hv_synic *s)
{
	for (uint32_t i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		deliver_locked(s, i);
}

/* Event flags raise a SINT only on a 0 -> 1 edge, so flags set while it could not be raised
 * (masked, SCONTROL or SIEFP off) would swallow every later signal of theirs: raise each
 * deliverable SINT in [first, last] whose flags are not all clear. */
static void raise_pending_events_locked(struct hv_synic *s, uint32_t first, uint32_t last)
{
	if (!(s->siefp & HV_MSR_ENABLE))
		return;
	const uint8_t *page = s->platform->gpa_to_hva(s->platform->opaque, PAGE_GPA(s->siefp), 4096);
	if (!page)
		return;
	for (uint32_t sint = first; sint <= last; sint++) {
		const uint64_t *words = (const uint64_t *)(page + sint * HV_EVENT_FLAGS_BYTES);
		for (unsigned i = 0; i < HV_EVENT_FLAGS_BYTES / 8; i++) {
			if (__atomic_load_n(&words[i], __ATOMIC_RELAXED)) {
				raise_sint(s, sint);
				break;
			}
		}
	}
}

int hv_synic_post(struct hv_synic *s, uint32_t sint, uint32_t message_type,
		  const void *payload, uint32_t len)
{
	if (sint >= HV_SYNIC_SINT_COUNT || len > HV_MESSAGE_PAYLOAD_MAX || message_type == HVMSG_NONE)
		return -1;
	pthread_mutex_lock(&s->lock);
	struct hv_synic_queue *q = &s->queue[sint];
	if (!q->msgs && !(q->msgs = calloc(HV_SYNIC_QUEUE_DEPTH, sizeof(*q->msgs)))) {
		pthread_mutex_unlock(&s->lock);
		return -1;
	}
	if (q->count == HV_SYNIC_QUEUE_DEPTH) {
		pthread_mutex_unlock(&s->lock);
		return -2;
	}
	struct hv_message *m = &q->msgs[(q->head + q->count) % HV_SYNIC_QUEUE_DEPTH];
	memset(&m->header, 0, sizeof(m->header));
	m->header.message_type = message_type;
	m->header.payload_size = (uint8_t)len;
	memcpy(m->payload, payload, len);
	q->count++;
	deliver_locked(s, sint);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

bool hv_synic_signal_event(struct hv_synic *s, uint32_t sint, uint32_t flag)
{
	if (sint >= HV_SYNIC_SINT_COUNT || flag >= HV_EVENT_FLAGS_BYTES * 8)
		return false;
	pthread_mutex_lock(&s->lock);
	bool ok = false;
	if (s->siefp & HV_MSR_ENABLE) {
		uint8_t *page = s->platform->gpa_to_hva(s->platform->opaque, PAGE_GPA(s->siefp), 4096);
		if (page) {
			uint64_t *word = (uint64_t *)(page + sint * HV_EVENT_FLAGS_BYTES) + flag / 64;
			uint64_t bit = 1ull << (flag % 64);
			if (!(__atomic_fetch_or(word, bit, __ATOMIC_SEQ_CST) & bit))
				raise_sint(s, sint);
			ok = true;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

bool hv_synic_msr_read(struct hv_synic *s, uint32_t msr, uint64_t *value)
{
	pthread_mutex_lock(&s->lock);
	bool ok = true;
	switch (msr) {
	case HV_X64_MSR_SCONTROL: *value = s->scontrol; break;
	case HV_X64_MSR_SVERSION: *value = HV_SYNIC_VERSION; break;
	case HV_X64_MSR_SIEFP: *value = s->siefp; break;
	case HV_X64_MSR_SIMP: *value = s->simp; break;
	case HV_X64_MSR_EOM: *value = 0; break;
	default:
		if (msr >= HV_X64_MSR_SINT0 && msr <= HV_X64_MSR_SINT15)
			*value = s->sint[msr - HV_X64_MSR_SINT0];
		else
			ok = false;
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static bool sint_valid(uint64_t value)
{
	return !(value & ~SINT_VALID_BITS) &&
	       ((value & HV_SINT_MASKED) || (value & HV_SINT_VECTOR_MASK) >= 16);
}

bool hv_synic_msr_write(struct hv_synic *s, uint32_t msr, uint64_t value)
{
	pthread_mutex_lock(&s->lock);
	bool ok = true;
	switch (msr) {
	case HV_X64_MSR_SCONTROL: s->scontrol = value & HV_MSR_ENABLE; break;
	case HV_X64_MSR_SIEFP:
		page_grant(s, s->siefp, false);
		s->siefp = value & PAGE_MSR_VALID_BITS;
		page_grant(s, s->siefp, true);
		break;
	case HV_X64_MSR_SIMP:
		page_grant(s, s->simp, false);
		s->simp = value & PAGE_MSR_VALID_BITS;
		page_grant(s, s->simp, true);
		break;
	case HV_X64_MSR_EOM: break;
	default:
		if (msr >= HV_X64_MSR_SINT0 && msr <= HV_X64_MSR_SINT15 && sint_valid(value))
			s->sint[msr - HV_X64_MSR_SINT0] = value;
		else
			ok = false; /* read-only, reserved bits, or an unmasked vector below 16 */
	}
	if (ok) {
		deliver_all_locked(s); /* EOM, or an enable/unmask that lets queued messages through */
		if (msr >= HV_X64_MSR_SINT0 && msr <= HV_X64_MSR_SINT15)
			raise_pending_events_locked(s, msr - HV_X64_MSR_SINT0, msr - HV_X64_MSR_SINT0);
		else if (msr == HV_X64_MSR_SCONTROL || msr == HV_X64_MSR_SIEFP)
			raise_pending_events_locked(s, 0, HV_SYNIC_SINT_COUNT - 1);
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* Per SINT: the queue's count (u32), then each message oldest first: type (u32), payload
 * size (u8), payload. The sender is not saved: posted messages always have 0. */
void hv_synic_save(struct hv_synic *s, struct state_writer *w)
{
	pthread_mutex_lock(&s->lock);
	state_put_u64(w, s->scontrol);
	state_put_u64(w, s->simp);
	state_put_u64(w, s->siefp);
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		state_put_u64(w, s->sint[i]);
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++) {
		const struct hv_synic_queue *q = &s->queue[i];
		state_put_u32(w, q->count);
		for (unsigned n = 0; n < q->count; n++) {
			const struct hv_message *m = &q->msgs[(q->head + n) % HV_SYNIC_QUEUE_DEPTH];
			state_put_u32(w, m->header.message_type);
			state_put_u8(w, m->header.payload_size);
			state_put_bytes(w, m->payload, m->header.payload_size);
		}
	}
	pthread_mutex_unlock(&s->lock);
}

/* One SINT's saved queue into a fresh buffer (*out, NULL when empty). */
static int restore_queue(struct hv_synic *s, struct state_cursor *c, uint32_t sint,
			 struct hv_message **out, unsigned *count)
{
	uint32_t n = state_get_u32(c);
	*out = NULL;
	*count = 0;
	if (!state_cursor_ok(c))
		return state_fail(-EBADMSG, "synic vp %u: payload truncated", s->vp);
	if (n > HV_SYNIC_QUEUE_DEPTH)
		return state_fail(-EBADMSG, "synic vp %u: %u queued messages on SINT %u, at most %d",
				  s->vp, n, sint, HV_SYNIC_QUEUE_DEPTH);
	if (!n)
		return 0;
	struct hv_message *msgs = calloc(HV_SYNIC_QUEUE_DEPTH, sizeof(*msgs));
	if (!msgs)
		return state_fail(-ENOMEM, "synic vp %u: no memory for SINT %u's queue", s->vp, sint);
	int rc = 0;
	for (uint32_t i = 0; i < n && !rc; i++) {
		struct hv_message *m = &msgs[i];
		m->header.message_type = state_get_u32(c);
		m->header.payload_size = state_get_u8(c);
		if (m->header.payload_size <= HV_MESSAGE_PAYLOAD_MAX)
			state_get_bytes(c, m->payload, m->header.payload_size);
		if (!state_cursor_ok(c))
			rc = state_fail(-EBADMSG, "synic vp %u: payload truncated", s->vp);
		else if (m->header.payload_size > HV_MESSAGE_PAYLOAD_MAX)
			rc = state_fail(-EBADMSG, "synic vp %u: queued message %u on SINT %u has %u "
					"payload bytes, at most %d", s->vp, i, sint,
					m->header.payload_size, HV_MESSAGE_PAYLOAD_MAX);
		else if (m->header.message_type == HVMSG_NONE)
			rc = state_fail(-EBADMSG, "synic vp %u: queued message %u on SINT %u has no "
					"type", s->vp, i, sint);
	}
	if (rc) {
		free(msgs);
		return rc;
	}
	*out = msgs;
	*count = n;
	return 0;
}

static void free_queues(struct hv_message *msgs[HV_SYNIC_SINT_COUNT])
{
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		free(msgs[i]);
}

int hv_synic_restore(struct hv_synic *s, struct state_cursor *c)
{
	uint64_t scontrol = state_get_u64(c), simp = state_get_u64(c), siefp = state_get_u64(c);
	uint64_t sint[HV_SYNIC_SINT_COUNT];
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		sint[i] = state_get_u64(c);
	if (!state_cursor_ok(c))
		return state_fail(-EBADMSG, "synic vp %u: payload truncated", s->vp);
	if (scontrol & ~HV_MSR_ENABLE)
		return state_fail(-EBADMSG, "synic vp %u: SCONTROL 0x%llx has reserved bits set",
				  s->vp, (unsigned long long)scontrol);
	if (simp & ~PAGE_MSR_VALID_BITS)
		return state_fail(-EBADMSG, "synic vp %u: SIMP 0x%llx has reserved bits set",
				  s->vp, (unsigned long long)simp);
	if (siefp & ~PAGE_MSR_VALID_BITS)
		return state_fail(-EBADMSG, "synic vp %u: SIEFP 0x%llx has reserved bits set",
				  s->vp, (unsigned long long)siefp);
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		if (!sint_valid(sint[i]))
			return state_fail(-EBADMSG, "synic vp %u: SINT%d 0x%llx is not a value the "
					  "guest can write", s->vp, i, (unsigned long long)sint[i]);

	struct hv_message *msgs[HV_SYNIC_SINT_COUNT] = { 0 };
	unsigned count[HV_SYNIC_SINT_COUNT];
	for (uint32_t i = 0; i < HV_SYNIC_SINT_COUNT; i++) {
		int rc = restore_queue(s, c, i, &msgs[i], &count[i]);
		if (rc) {
			free_queues(msgs);
			return rc;
		}
	}
	if (state_cursor_left(c)) {
		free_queues(msgs);
		return state_fail(-EBADMSG, "synic vp %u: %zu bytes after the queues", s->vp,
				  state_cursor_left(c));
	}

	pthread_mutex_lock(&s->lock);
	/* The grants follow the pages as an MSR write moves them (the old ones matter when a
	 * file restores a VP twice). */
	page_grant(s, s->simp, false);
	page_grant(s, s->siefp, false);
	s->scontrol = scontrol;
	s->simp = simp;
	s->siefp = siefp;
	memcpy(s->sint, sint, sizeof(sint));
	page_grant(s, s->siefp, true);
	page_grant(s, s->simp, true);
	for (int i = 0; i < HV_SYNIC_SINT_COUNT; i++) {
		struct hv_synic_queue *q = &s->queue[i];
		if (msgs[i]) {
			free(q->msgs);
			q->msgs = msgs[i];
		}
		q->head = 0;
		q->count = count[i];
	}
	/* Nothing is delivered or raised here: a message waits in its queue only while its slot
	 * is busy (the slot's MessagePending, in the restored RAM, brings the guest's EOM) or
	 * while the SynIC, its page or its SINT is off (the MSR write that turns it on delivers);
	 * interrupts already raised are in the local APIC state the worker restores. */
	pthread_mutex_unlock(&s->lock);
	return 0;
}
