/* The partition's Hyper-V interface: CPUID leaves, synthetic MSRs, hypercalls. */
#include <errno.h>
#include <string.h>

#include "hv/partition.h"
#include "state/savedstate.h"

/* What we say we are: Windows Server 2019 (10.0.17763), the version the seed describes. */
#define HV_BUILD_NUMBER   17763u
#define HV_VERSION_MAJOR  10u
#define HV_VERSION_MINOR  0u
#define APIC_BUS_HZ       1000000000ull /* KVM's local APIC timer runs at 1 GHz */

#define HYPERCALL_MSR_VALID_BITS (~0xFFCull)   /* GPA, lock (bit 1), enable */
#define PAGE_MSR_VALID_BITS      (~0xFFEull)   /* GPA, enable */
#define HV_STATE_VERSION 1                     /* of the PARTITION and SYNIC sections */
#define PARTITION_STATE_SIZE (4 + 8 + 1 + 9 * 8) /* the PARTITION payload, below */

struct hv_input_signal_event {
	uint32_t connection_id;
	uint16_t flag_number;
	uint16_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct hv_input_signal_event) == 8, "hv_input_signal_event");

bool hv_partition_init(struct hv_partition *p, uint32_t nr_vps, uint64_t tsc_khz,
		       uint8_t hypercall_port, const struct hv_platform *platform)
{
	if (nr_vps == 0 || nr_vps > HV_MAX_VPS || tsc_khz <= 10000)
		return false; /* below 10 MHz the reference TSC scale would not fit in 64 bits */
	memset(p, 0, sizeof(*p));
	p->platform = *platform;
	p->nr_vps = nr_vps;
	p->tsc_khz = tsc_khz;
	p->hypercall_port = hypercall_port;
	for (uint32_t i = 0; i < nr_vps; i++) {
		p->vps[i].index = i;
		hv_synic_init(&p->vps[i].synic, i, &p->platform);
	}
	return true;
}

void hv_partition_destroy(struct hv_partition *p)
{
	for (uint32_t i = 0; i < p->nr_vps; i++)
		hv_synic_destroy(&p->vps[i].synic);
	p->nr_vps = 0;
}

void hv_partition_set_sink(struct hv_partition *p, const struct hv_message_sink *sink)
{
	p->sink = *sink;
}

static uint32_t ascii4(const char *s)
{
	return (uint32_t)(uint8_t)s[0] | (uint32_t)(uint8_t)s[1] << 8 |
	       (uint32_t)(uint8_t)s[2] << 16 | (uint32_t)(uint8_t)s[3] << 24;
}

bool hv_cpuid(const struct hv_partition *p, uint32_t leaf, struct hv_cpuid_regs *out)
{
	if (leaf < HV_CPUID_VENDOR_AND_MAX || leaf > HV_CPUID_MAX_LEAF)
		return false;
	memset(out, 0, sizeof(*out));
	switch (leaf) {
	case HV_CPUID_VENDOR_AND_MAX:
		out->eax = HV_CPUID_MAX_LEAF;
		out->ebx = ascii4("Micr");
		out->ecx = ascii4("osof");
		out->edx = ascii4("t Hv");
		break;
	case HV_CPUID_INTERFACE:
		out->eax = HV_INTERFACE_SIGNATURE;
		break;
	case HV_CPUID_VERSION:
		out->eax = HV_BUILD_NUMBER;
		out->ebx = HV_VERSION_MAJOR << 16 | HV_VERSION_MINOR;
		break;
	case HV_CPUID_FEATURES:
		out->eax = HV_ACCESS_PARTITION_REF_COUNTER | HV_ACCESS_SYNIC_REGS |
			   HV_ACCESS_HYPERCALL_MSRS | HV_ACCESS_VP_INDEX |
			   HV_ACCESS_PARTITION_REF_TSC | HV_ACCESS_FREQUENCY_MSRS;
		out->ebx = HV_POST_MESSAGES | HV_SIGNAL_EVENTS;
		out->edx = HV_FEATURE_FREQUENCY_MSRS_AVAILABLE;
		break;
	case HV_CPUID_ENLIGHTENMENT_INFO:
		/* Guests EOI through the APIC as usual; relaxed timing because a
		 * virtual CPU can be descheduled for long stretches. */
		out->eax = HV_HINT_DEPRECATE_AUTO_EOI | HV_HINT_RELAXED_TIMING;
		out->ebx = 0xFFFFFFFFu; /* never notify on spinlock retries */
		break;
	case HV_CPUID_IMPLEMENT_LIMITS:
		out->eax = HV_MAX_VPS;
		out->ebx = HV_MAX_VPS;
		break;
	default:
		break; /* hardware features, nested and CPU management leaves: nothing offered */
	}
	(void)p;
	return true;
}

uint64_t hv_tsc_scale(uint64_t tsc_khz)
{
	/* 100 ns units per tick in 64.64: (10^7 << 64) / tsc_hz = (10^4 << 64) / tsc_khz. */
	return (uint64_t)(((unsigned __int128)10000 << 64) / tsc_khz);
}

uint64_t hv_reference_time(const struct hv_partition *p, uint32_t vp)
{
	uint64_t tsc = p->platform.guest_tsc(p->platform.opaque, vp);
	return (uint64_t)(((unsigned __int128)tsc * hv_tsc_scale(p->tsc_khz)) >> 64);
}

size_t hv_hypercall_page_code(uint8_t port, uint8_t *buf, size_t len)
{
	/* out imm8, al ; ret — the port write exits to the worker, which reads RCX/RDX/R8
	 * and sets RAX before the guest continues. */
	const uint8_t code[] = { 0xE6, port, 0xC3 };
	if (len < sizeof(code))
		return 0;
	memcpy(buf, code, sizeof(code));
	return sizeof(code);
}

static void grant(struct hv_partition *p, void *page, bool on)
{
	if (p->platform.grant)
		p->platform.grant(p->platform.opaque, page, 4096, on);
}

static void write_hypercall_page(struct hv_partition *p)
{
	if (!(p->hypercall_msr & HV_MSR_ENABLE) || !p->guest_os_id)
		return;
	uint8_t *page = p->platform.gpa_to_hva(p->platform.opaque, p->hypercall_msr & ~0xFFFull, 4096);
	if (!page)
		return;
	grant(p, page, true);
	memset(page, 0xCC, 4096); /* int3 beyond the stub */
	hv_hypercall_page_code(p->hypercall_port, page, 4096);
	grant(p, page, false);
}

/* The page's sequence changes every time it is rewritten; 0 means "invalid, use the MSR". */
static void write_reference_tsc_page(struct hv_partition *p)
{
	if (!(p->reference_tsc_msr & HV_MSR_ENABLE))
		return;
	struct hv_reference_tsc_page *page =
		p->platform.gpa_to_hva(p->platform.opaque, p->reference_tsc_msr & ~0xFFFull, 4096);
	if (!page)
		return;
	grant(p, page, true);
	uint32_t seq = page->tsc_sequence + 1;
	if (seq == 0 || seq == 0xFFFFFFFFu)
		seq = 1;
	__atomic_store_n(&page->tsc_sequence, 0, __ATOMIC_SEQ_CST);
	page->tsc_scale = hv_tsc_scale(p->tsc_khz);
	page->tsc_offset = 0; /* the guest TSC starts at 0 with the partition */
	__atomic_store_n(&page->tsc_sequence, seq, __ATOMIC_SEQ_CST);
	grant(p, page, false);
}

bool hv_msr_is_synthetic(uint32_t msr)
{
	return msr >= HV_SYNTHETIC_MSR_FIRST && msr <= HV_SYNTHETIC_MSR_LAST;
}

bool hv_msr_read(struct hv_partition *p, uint32_t vp, uint32_t msr, uint64_t *value)
{
	if (vp >= p->nr_vps)
		return false;
	switch (msr) {
	case HV_X64_MSR_GUEST_OS_ID: *value = p->guest_os_id; return true;
	case HV_X64_MSR_HYPERCALL: *value = p->hypercall_msr; return true;
	case HV_X64_MSR_VP_INDEX: *value = p->vps[vp].index; return true;
	case HV_X64_MSR_TIME_REF_COUNT: *value = hv_reference_time(p, vp); return true;
	case HV_X64_MSR_REFERENCE_TSC: *value = p->reference_tsc_msr; return true;
	case HV_X64_MSR_TSC_FREQUENCY: *value = p->tsc_khz * 1000; return true;
	case HV_X64_MSR_APIC_FREQUENCY: *value = APIC_BUS_HZ; return true;
	case HV_X64_MSR_VP_ASSIST_PAGE: *value = p->vps[vp].vp_assist_msr; return true;
	case HV_X64_MSR_CRASH_CTL: *value = p->crash_ctl; return true;
	default:
		if (msr >= HV_X64_MSR_CRASH_P0 && msr <= HV_X64_MSR_CRASH_P4) {
			*value = p->crash_params[msr - HV_X64_MSR_CRASH_P0];
			return true;
		}
		return hv_synic_msr_read(&p->vps[vp].synic, msr, value);
	}
}

bool hv_msr_write(struct hv_partition *p, uint32_t vp, uint32_t msr, uint64_t value)
{
	if (vp >= p->nr_vps)
		return false;
	switch (msr) {
	case HV_X64_MSR_GUEST_OS_ID:
		p->guest_os_id = value;
		if (!value)
			p->hypercall_msr &= ~HV_MSR_ENABLE; /* TLFS: clearing the id disables hypercalls */
		write_hypercall_page(p);
		return true;
	case HV_X64_MSR_HYPERCALL:
		if (p->hypercall_msr & 2) /* locked until reset */
			return true;
		p->hypercall_msr = value & HYPERCALL_MSR_VALID_BITS;
		write_hypercall_page(p);
		return true;
	case HV_X64_MSR_REFERENCE_TSC:
		p->reference_tsc_msr = value & PAGE_MSR_VALID_BITS;
		write_reference_tsc_page(p);
		return true;
	case HV_X64_MSR_VP_ASSIST_PAGE:
		/* Linux writes it even when no assist features are offered; keep it. */
		p->vps[vp].vp_assist_msr = value & PAGE_MSR_VALID_BITS;
		return true;
	case HV_X64_MSR_CRASH_CTL:
		p->crash_ctl = value;
		return true;
	case HV_X64_MSR_VP_INDEX:
	case HV_X64_MSR_TIME_REF_COUNT:
	case HV_X64_MSR_TSC_FREQUENCY:
	case HV_X64_MSR_APIC_FREQUENCY:
		return false; /* read-only */
	default:
		if (msr >= HV_X64_MSR_CRASH_P0 && msr <= HV_X64_MSR_CRASH_P4) {
			p->crash_params[msr - HV_X64_MSR_CRASH_P0] = value;
			return true;
		}
		return hv_synic_msr_write(&p->vps[vp].synic, msr, value);
	}
}

static uint16_t post_message(struct hv_partition *p, uint32_t vp, uint64_t input_gpa)
{
	if ((input_gpa & 7) || (input_gpa & 0xFFF) + sizeof(struct hv_input_post_message) > 4096)
		return HV_STATUS_INVALID_ALIGNMENT; /* input must be aligned and within one page */
	const struct hv_input_post_message *in =
		p->platform.gpa_to_hva(p->platform.opaque, input_gpa, sizeof(*in));
	if (!in)
		return HV_STATUS_INVALID_PARAMETER;
	struct hv_input_post_message msg;
	memcpy(&msg, in, sizeof(msg)); /* the guest may change its copy while we look */
	if (msg.payload_size > HV_MESSAGE_PAYLOAD_MAX || msg.message_type == HVMSG_NONE ||
	    (msg.message_type & 0x80000000u))
		return HV_STATUS_INVALID_PARAMETER; /* hypervisor message types are not the guest's to send */
	if (!p->sink.post_message)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return p->sink.post_message(p->sink.opaque, vp, &msg);
}

static uint16_t signal_event(struct hv_partition *p, uint32_t vp, bool fast, uint64_t rdx)
{
	struct hv_input_signal_event ev;
	if (fast) {
		ev.connection_id = (uint32_t)rdx;
		ev.flag_number = (uint16_t)(rdx >> 32);
	} else {
		if (rdx & 7)
			return HV_STATUS_INVALID_ALIGNMENT;
		const void *in = p->platform.gpa_to_hva(p->platform.opaque, rdx, sizeof(ev));
		if (!in)
			return HV_STATUS_INVALID_PARAMETER;
		memcpy(&ev, in, sizeof(ev));
	}
	if (ev.flag_number >= HV_EVENT_FLAGS_BYTES * 8)
		return HV_STATUS_INVALID_PARAMETER;
	if (!p->sink.signal_event)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return p->sink.signal_event(p->sink.opaque, vp, ev.connection_id, ev.flag_number);
}

uint64_t hv_hypercall(struct hv_partition *p, uint32_t vp, uint64_t rcx, uint64_t rdx, uint64_t r8)
{
	(void)r8; /* neither supported call has output */
	uint16_t code = rcx & HV_HYPERCALL_CODE_MASK;
	bool fast = rcx & HV_HYPERCALL_FAST;
	uint64_t rep_count = (rcx >> HV_HYPERCALL_REP_COUNT_SHIFT) & 0xFFF;
	uint64_t rep_start = (rcx >> HV_HYPERCALL_REP_START_SHIFT) & 0xFFF;
	if (vp >= p->nr_vps)
		return HV_STATUS_INVALID_PARAMETER;
	if ((rcx & HV_HYPERCALL_RESERVED_BITS) || rep_start)
		return HV_STATUS_INVALID_HYPERCALL_INPUT; /* neither call is a rep call */
	switch (code) {
	case HVCALL_POST_MESSAGE:
		if (fast || rep_count)
			return HV_STATUS_INVALID_HYPERCALL_INPUT;
		return post_message(p, vp, rdx);
	case HVCALL_SIGNAL_EVENT:
		if (rep_count)
			return HV_STATUS_INVALID_HYPERCALL_INPUT;
		return signal_event(p, vp, fast, rdx);
	default:
		return HV_STATUS_INVALID_HYPERCALL_CODE;
	}
}

/* PARTITION, version 1: nr_vps u32, tsc_khz u64, hypercall_port u8 (configuration, checked to
 * match), guest OS id, hypercall MSR, reference TSC MSR, crash P0-P4, crash control (u64).
 * SYNIC, version 1, one per VP (instance: VP index): VP assist MSR u64, then hv_synic_save().
 *
 * The hypercall and reference TSC pages are guest RAM, saved with it, and are never rewritten
 * on restore: the code in the first depends only on hypercall_port, the second's scale only on
 * tsc_khz and its offset is 0, and both are checked equal. Reference time (TIME_REF_COUNT and
 * the page) is a function of the guest TSC alone, which the worker restores through KVM, so
 * the guest's reference time goes on from where it was saved and the page's sequence, scale
 * and offset stay valid; a later REFERENCE_TSC write bumps the restored sequence as usual. */
int hv_partition_save(struct hv_partition *p, struct state_writer *w)
{
	int rc = state_section_begin(w, STATE_SECTION_PARTITION, 0, HV_STATE_VERSION, 0);
	if (rc)
		return rc;
	state_put_u32(w, p->nr_vps);
	state_put_u64(w, p->tsc_khz);
	state_put_u8(w, p->hypercall_port);
	state_put_u64(w, p->guest_os_id);
	state_put_u64(w, p->hypercall_msr);
	state_put_u64(w, p->reference_tsc_msr);
	for (int i = 0; i < 5; i++)
		state_put_u64(w, p->crash_params[i]);
	state_put_u64(w, p->crash_ctl);
	if ((rc = state_section_end(w)))
		return rc;
	for (uint32_t i = 0; i < p->nr_vps; i++) {
		if ((rc = state_section_begin(w, STATE_SECTION_SYNIC, i, HV_STATE_VERSION, 0)))
			return rc;
		state_put_u64(w, p->vps[i].vp_assist_msr);
		hv_synic_save(&p->vps[i].synic, w);
		if ((rc = state_section_end(w)))
			return rc;
	}
	return 0;
}

static int restore_partition(struct hv_partition *p, struct state_cursor *c)
{
	uint32_t nr_vps = state_get_u32(c);
	uint64_t tsc_khz = state_get_u64(c);
	uint8_t port = state_get_u8(c);
	uint64_t guest_os_id = state_get_u64(c), hypercall = state_get_u64(c);
	uint64_t reference_tsc = state_get_u64(c), crash[5];
	for (int i = 0; i < 5; i++)
		crash[i] = state_get_u64(c);
	uint64_t crash_ctl = state_get_u64(c);
	if (!state_cursor_ok(c) || state_cursor_left(c))
		return state_fail(-EBADMSG, "partition: payload of %zu bytes, expected %d",
				  c->size, PARTITION_STATE_SIZE);
	if (nr_vps != p->nr_vps)
		return state_fail(-EBADMSG, "partition: saved with %u VPs, this one has %u",
				  nr_vps, p->nr_vps);
	if (tsc_khz != p->tsc_khz)
		return state_fail(-EBADMSG, "partition: saved with the guest TSC at %llu kHz, this "
				  "one runs at %llu kHz", (unsigned long long)tsc_khz,
				  (unsigned long long)p->tsc_khz);
	if (port != p->hypercall_port)
		return state_fail(-EBADMSG, "partition: saved with hypercall port 0x%x, this one "
				  "uses 0x%x", port, p->hypercall_port);
	if (hypercall & ~HYPERCALL_MSR_VALID_BITS)
		return state_fail(-EBADMSG, "partition: hypercall MSR 0x%llx has reserved bits set",
				  (unsigned long long)hypercall);
	if (reference_tsc & ~PAGE_MSR_VALID_BITS)
		return state_fail(-EBADMSG, "partition: reference TSC MSR 0x%llx has reserved bits "
				  "set", (unsigned long long)reference_tsc);
	p->guest_os_id = guest_os_id;
	p->hypercall_msr = hypercall;
	p->reference_tsc_msr = reference_tsc;
	memcpy(p->crash_params, crash, sizeof(crash));
	p->crash_ctl = crash_ctl;
	return 0;
}

static int restore_vp(struct hv_partition *p, uint32_t index, struct state_cursor *c)
{
	uint64_t vp_assist = state_get_u64(c);
	if (!state_cursor_ok(c))
		return state_fail(-EBADMSG, "synic vp %u: payload truncated", index);
	if (vp_assist & ~PAGE_MSR_VALID_BITS)
		return state_fail(-EBADMSG, "synic vp %u: VP assist MSR 0x%llx has reserved bits "
				  "set", index, (unsigned long long)vp_assist);
	int rc = hv_synic_restore(&p->vps[index].synic, c);
	if (!rc)
		p->vps[index].vp_assist_msr = vp_assist;
	return rc;
}

int hv_partition_restore(struct hv_partition *p, const struct state_section *sec)
{
	struct state_cursor c = sec->payload;
	if (sec->type != STATE_SECTION_PARTITION && sec->type != STATE_SECTION_SYNIC)
		return state_fail(-EINVAL, "partition: section type 0x%x is not the partition's",
				  sec->type);
	const char *name = sec->type == STATE_SECTION_PARTITION ? "partition" : "synic";
	if (sec->version != HV_STATE_VERSION)
		return state_fail(-EPROTONOSUPPORT, "%s: section version %u is not supported (this "
				  "build reads %d)", name, sec->version, HV_STATE_VERSION);
	if (sec->type == STATE_SECTION_PARTITION) {
		if (sec->instance)
			return state_fail(-EBADMSG, "partition: instance %u, there is only 0",
					  sec->instance);
		return restore_partition(p, &c);
	}
	if (sec->instance >= p->nr_vps)
		return state_fail(-EBADMSG, "synic: VP %u, the partition has %u", sec->instance,
				  p->nr_vps);
	return restore_vp(p, sec->instance, &c);
}
