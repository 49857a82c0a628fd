/* The Hyper-V partition interface a child partition sees, implemented in user space:
 * the CPUID leaves 0x40000000-0x4000000A, the synthetic MSRs and hypercall dispatch.
 * Pure logic: the worker supplies guest memory, time and interrupt injection through
 * struct hv_platform, so unit tests drive it without KVM. */
#ifndef VIRIDIAN_HV_PARTITION_H
#define VIRIDIAN_HV_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/hvdef.h"
#include "hv/synic.h"

#define HV_MAX_VPS 64

/* What the partition needs from the VMM. */
struct hv_platform {
	/* Host address of guest-physical [gpa, gpa+len), NULL if not all of it is guest RAM. */
	void *(*gpa_to_hva)(void *opaque, uint64_t gpa, uint64_t len);
	/* The guest TSC as vp reads it now. */
	uint64_t (*guest_tsc)(void *opaque, uint32_t vp);
	/* Deliver a fixed, edge-triggered interrupt with `vector` to vp's local APIC. */
	void (*inject)(void *opaque, uint32_t vp, uint8_t vector);
	/* Optional debug check (NULL normally): the partition starts (on) or stops writing the guest
	 * RAM at [hva, hva + len) (from gpa_to_hva) that the guest handed it: SIMP and SIEF pages
	 * while enabled, the hypercall and reference TSC pages while they are written. */
	void (*grant)(void *opaque, void *hva, uint64_t len, bool on);
	void *opaque;
};

/* Where HvPostMessage and HvSignalEvent go (the VMBus server). Return HV_STATUS_*. */
struct hv_message_sink {
	uint16_t (*post_message)(void *opaque, uint32_t vp, const struct hv_input_post_message *msg);
	uint16_t (*signal_event)(void *opaque, uint32_t vp, uint32_t connection_id, uint16_t flag);
	void *opaque;
};

struct hv_vp {
	uint32_t index;              /* VP_INDEX: equals the vCPU id and its APIC id */
	uint64_t vp_assist_msr;      /* accepted and kept; no assist-page features offered */
	struct hv_synic synic;
};

struct hv_partition {
	struct hv_platform platform;
	struct hv_message_sink sink; /* no sink: messages get HV_STATUS_INVALID_CONNECTION_ID */
	uint32_t nr_vps;
	uint64_t tsc_khz;
	uint64_t guest_os_id;
	uint64_t hypercall_msr;
	uint64_t reference_tsc_msr;
	uint64_t crash_params[5], crash_ctl;
	uint8_t hypercall_port;      /* the I/O port the hypercall page's code writes */
	struct hv_vp vps[HV_MAX_VPS];
};

struct hv_cpuid_regs {
	uint32_t eax, ebx, ecx, edx;
};

/* Set up a partition with nr_vps virtual processors (1..HV_MAX_VPS). Returns false on bad input. */
bool hv_partition_init(struct hv_partition *p, uint32_t nr_vps, uint64_t tsc_khz,
		       uint8_t hypercall_port, const struct hv_platform *platform);
void hv_partition_destroy(struct hv_partition *p);
void hv_partition_set_sink(struct hv_partition *p, const struct hv_message_sink *sink);

/* Saved state (include/state/savedstate.h): a PARTITION section (guest OS id, hypercall and
 * reference TSC MSRs, crash MSRs) and one SYNIC section per VP (instance: VP index; SCONTROL,
 * SIMP, SIEFP, SINTx, VP assist MSR, messages waiting for their slot). The guest pages they
 * point at are in guest RAM, saved with it, and restore never rewrites them. Restore takes one
 * section at a time onto a partition initialised with the same VP count, TSC frequency and
 * hypercall port (all three checked); hostile input. 0 or a negative errno after state_fail().
 * Layouts: docs/worker.md, "Saved state". */
struct state_writer;
struct state_section;
int hv_partition_save(struct hv_partition *p, struct state_writer *w);
int hv_partition_restore(struct hv_partition *p, const struct state_section *sec);

/* CPUID leaves 0x40000000..HV_CPUID_MAX_LEAF; false for leaves outside that range. */
bool hv_cpuid(const struct hv_partition *p, uint32_t leaf, struct hv_cpuid_regs *out);

/* Synthetic MSR access from vp. false means the access faults (#GP to the guest). */
bool hv_msr_is_synthetic(uint32_t msr);
bool hv_msr_read(struct hv_partition *p, uint32_t vp, uint32_t msr, uint64_t *value);
bool hv_msr_write(struct hv_partition *p, uint32_t vp, uint32_t msr, uint64_t value);

/* A hypercall from vp (64-bit convention: RCX = input value, RDX = input GPA or fast
 * data, R8 = output GPA or fast data). Returns the value for RAX. */
uint64_t hv_hypercall(struct hv_partition *p, uint32_t vp, uint64_t rcx, uint64_t rdx, uint64_t r8);

/* The partition reference time (100 ns units) as vp sees it. */
uint64_t hv_reference_time(const struct hv_partition *p, uint32_t vp);

/* 64.64 fixed-point scale turning TSC ticks into 100 ns units. */
uint64_t hv_tsc_scale(uint64_t tsc_khz);

/* Code placed in the hypercall page: writes hypercall_port and returns. */
size_t hv_hypercall_page_code(uint8_t port, uint8_t *buf, size_t len);

#endif
