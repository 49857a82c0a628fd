/* Saving the whole VM and restoring it (include/worker/saved_state.h). KVM's part of the
 * machine is written here as KVM's own x86 structures (struct kvm_regs, kvm_sregs, ...: the
 * kernel's fixed ABI), so a state restores on a host whose KVM has the same layouts. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker/clock.h"
#include "worker/guest_guard.h"
#include "worker/saved_state.h"
#include "worker/storage.h"

#define VCPU_STATE_VERSION    1
#define IRQCHIP_STATE_VERSION 1
#define IRQCHIP_COUNT         3     /* PIC master, PIC slave, IOAPIC */
#define DRAIN_STEP_MS         1000  /* one wait for the disks; then the guest runs a moment */
#define DRAIN_TRIES           15
#define MSR_IA32_TSC_DEADLINE 0x6E0u
#define MAX_SAVED_MSRS        4096
#define XSAVE_MAX             (1u << 20)

_Static_assert(sizeof(((struct vm *)0)->config_digest) == STATE_DIGEST_SIZE, "config digest size");

int worker_state_digest(const struct worker_options *o, uint8_t out[STATE_DIGEST_SIZE])
{
	char canon[256 + WORKER_MAX_DISKS * 2 + WORKER_MAX_NICS * 20];
	size_t n = (size_t)snprintf(canon, sizeof(canon), "viridian-vm/1 memory=%llu cpus=%u ics-off=%#x disks=",
				    (unsigned long long)o->memory, o->cpus, o->disabled_ics);
	for (unsigned i = 0; i < o->ndisks; i++)
		canon[n++] = o->disks[i].dvd ? 'd' : o->disks[i].read_only ? 'r' : 'w';
	n += (size_t)snprintf(canon + n, sizeof(canon) - n, " nics=");
	for (unsigned i = 0; i < o->nnics; i++) {
		const uint8_t *m = o->nics[i].mac;
		n += (size_t)snprintf(canon + n, sizeof(canon) - n, "%02x%02x%02x%02x%02x%02x;", m[0], m[1], m[2], m[3],
				      m[4], m[5]);
	}
	return state_config_digest(canon, n, out);
}

/* ---- KVM state ---- */

/* MSRs KVM saves and restores for a vCPU, less those that are not the guest's to keep: the
 * Hyper-V range is emulated in user space (the PARTITION/SYNIC sections), KVM's paravirtual
 * clock is hidden from the guest (no KVM CPUID leaves). */
static bool msr_saved(uint32_t index)
{
	if (index >= HV_SYNTHETIC_MSR_FIRST && index <= HV_SYNTHETIC_MSR_LAST)
		return false;
	if ((index >= 0x4B564D00u && index <= 0x4B564DFFu) || index == 0x11 || index == 0x12)
		return false;
	return true;
}

static struct kvm_msr_list *msr_index_list(struct vm *vm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return NULL;
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	if (!list)
		return NULL;
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		free(list);
		return NULL;
	}
	return list;
}

struct one_msr {
	uint32_t nmsrs, pad;
	struct kvm_msr_entry entry;
};
_Static_assert(offsetof(struct one_msr, entry) == offsetof(struct kvm_msrs, entries), "kvm_msrs layout");

static bool msr_get(struct vcpu *v, uint32_t index, uint64_t *value)
{
	struct one_msr m = { .nmsrs = 1, .entry.index = index };
	if (ioctl(v->fd, KVM_GET_MSRS, &m) != 1)
		return false;
	*value = m.entry.data;
	return true;
}

static bool msr_set(struct vcpu *v, uint32_t index, uint64_t value)
{
	struct one_msr m = { .nmsrs = 1, .entry = { .index = index, .data = value } };
	return ioctl(v->fd, KVM_SET_MSRS, &m) == 1;
}

/* Bytes of the vCPU's XSAVE area: KVM_GET_XSAVE2's where KVM has it (AMX makes it larger). */
static uint32_t xsave_size(struct vm *vm)
{
	int n = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return n > (int)sizeof(struct kvm_xsave) ? (uint32_t)n : (uint32_t)sizeof(struct kvm_xsave);
}

/* A vCPU's state that KVM keeps, less XSAVE (its size depends on the host) and MSRs. */
struct vcpu_kvm_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs debug;
};

static int save_vcpu(struct vm *vm, struct vcpu *v, const struct kvm_msr_list *list, struct state_writer *w)
{
	struct vcpu_kvm_state k;
	uint32_t xsize = xsave_size(vm);
	void *xsave = calloc(1, xsize);
	if (!xsave)
		return state_fail(-ENOMEM, "vCPU %u: out of memory", v->id);
	unsigned long xsave_op = xsize > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	if (ioctl(v->fd, KVM_GET_REGS, &k.regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &k.sregs) < 0 ||
	    ioctl(v->fd, xsave_op, xsave) < 0 || ioctl(v->fd, KVM_GET_XCRS, &k.xcrs) < 0 ||
	    ioctl(v->fd, KVM_GET_LAPIC, &k.lapic) < 0 || ioctl(v->fd, KVM_GET_VCPU_EVENTS, &k.events) < 0 ||
	    ioctl(v->fd, KVM_GET_MP_STATE, &k.mp) < 0 || ioctl(v->fd, KVM_GET_DEBUGREGS, &k.debug) < 0) {
		int e = errno;
		free(xsave);
		return state_fail(-e, "vCPU %u: cannot read its state from KVM: %s", v->id, strerror(e));
	}
	state_section_begin(w, STATE_SECTION_VCPU, v->id, VCPU_STATE_VERSION, 0);
	state_put_bytes(w, &k.regs, sizeof(k.regs));
	state_put_bytes(w, &k.sregs, sizeof(k.sregs));
	state_put_u32(w, xsize);
	state_put_bytes(w, xsave, xsize);
	state_put_bytes(w, &k.xcrs, sizeof(k.xcrs));
	state_put_bytes(w, &k.lapic, sizeof(k.lapic));
	state_put_bytes(w, &k.events, sizeof(k.events));
	state_put_u32(w, k.mp.mp_state);
	state_put_bytes(w, &k.debug, sizeof(k.debug));
	free(xsave);
	/* The list names MSRs of every CPU model KVM knows; those this vCPU lacks are left out. */
	uint64_t *values = calloc(list->nmsrs ? list->nmsrs : 1, sizeof(*values));
	bool *have = calloc(list->nmsrs ? list->nmsrs : 1, sizeof(*have));
	uint32_t count = 0;
	for (uint32_t i = 0; values && have && i < list->nmsrs; i++)
		count += have[i] = msr_saved(list->indices[i]) && msr_get(v, list->indices[i], &values[i]);
	state_put_u32(w, count);
	for (uint32_t i = 0; values && have && i < list->nmsrs; i++) {
		if (have[i]) {
			state_put_u32(w, list->indices[i]);
			state_put_u64(w, values[i]);
		}
	}
	int oom = !values || !have;
	free(values);
	free(have);
	int rc = state_section_end(w);
	return oom ? state_fail(-ENOMEM, "vCPU %u: out of memory", v->id) : rc;
}

/* KVM's order (as other VMMs use it): general registers, FPU/XSAVE, control registers (which
 * set the APIC base), MSRs, the local APIC, then the TSC deadline (setting the APIC stops its
 * timer), the run state and pending events last. */
static int restore_vcpu(struct vm *vm, struct vcpu *v, struct state_cursor *c)
{
	struct vcpu_kvm_state k;
	state_get_bytes(c, &k.regs, sizeof(k.regs));
	state_get_bytes(c, &k.sregs, sizeof(k.sregs));
	uint32_t xsize = state_get_u32(c);
	if (!state_cursor_ok(c) || xsize != xsave_size(vm))
		return state_fail(-EINVAL, "vCPU %u: saved XSAVE area of %u bytes, this host's KVM uses %u", v->id, xsize,
				  xsave_size(vm));
	void *xsave = calloc(1, xsize);
	if (!xsave)
		return state_fail(-ENOMEM, "vCPU %u: out of memory", v->id);
	state_get_bytes(c, xsave, xsize);
	state_get_bytes(c, &k.xcrs, sizeof(k.xcrs));
	state_get_bytes(c, &k.lapic, sizeof(k.lapic));
	state_get_bytes(c, &k.events, sizeof(k.events));
	k.mp.mp_state = state_get_u32(c);
	state_get_bytes(c, &k.debug, sizeof(k.debug));
	uint32_t nmsrs = state_get_u32(c);
	int rc = 0;
	if (!state_cursor_ok(c) || nmsrs > MAX_SAVED_MSRS || state_cursor_left(c) != (size_t)nmsrs * 12) {
		rc = state_fail(-EINVAL, "vCPU %u: the section is cut short or has %u MSRs for %zu bytes", v->id, nmsrs,
				state_cursor_left(c));
		goto out;
	}
	unsigned long xsave_op = KVM_SET_XSAVE; /* takes the larger XSAVE2 buffer as well */
	if (ioctl(v->fd, KVM_SET_REGS, &k.regs) < 0 || ioctl(v->fd, xsave_op, xsave) < 0 ||
	    ioctl(v->fd, KVM_SET_XCRS, &k.xcrs) < 0 || ioctl(v->fd, KVM_SET_SREGS, &k.sregs) < 0) {
		rc = state_fail(-errno, "vCPU %u: KVM refused the saved registers: %s", v->id, strerror(errno));
		goto out;
	}
	bool deadline = false;
	uint64_t deadline_value = 0;
	for (uint32_t i = 0; i < nmsrs; i++) {
		uint32_t index = state_get_u32(c);
		uint64_t value = state_get_u64(c);
		if (index == MSR_IA32_TSC_DEADLINE) {
			deadline = true, deadline_value = value;
			continue;
		}
		if (!msr_saved(index) || !msr_set(v, index, value)) {
			rc = state_fail(-EINVAL, "vCPU %u: KVM refused MSR %#x = %#llx", v->id, index, (unsigned long long)value);
			goto out;
		}
	}
	k.events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (ioctl(v->fd, KVM_SET_LAPIC, &k.lapic) < 0 || (deadline && !msr_set(v, MSR_IA32_TSC_DEADLINE, deadline_value)) ||
	    ioctl(v->fd, KVM_SET_MP_STATE, &k.mp) < 0 || ioctl(v->fd, KVM_SET_VCPU_EVENTS, &k.events) < 0 ||
	    ioctl(v->fd, KVM_SET_DEBUGREGS, &k.debug) < 0)
		rc = state_fail(-EINVAL, "vCPU %u: KVM refused the saved APIC, run state or events: %s", v->id,
				strerror(errno));
out:
	free(xsave);
	return rc;
}

static int save_irqchip(struct vm *vm, struct state_writer *w)
{
	struct kvm_irqchip chips[IRQCHIP_COUNT];
	struct kvm_pit_state2 pit;
	for (uint32_t i = 0; i < IRQCHIP_COUNT; i++) {
		chips[i] = (struct kvm_irqchip){ .chip_id = i };
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
			return state_fail(-errno, "cannot read interrupt controller %u from KVM: %s", i, strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return state_fail(-errno, "cannot read the PIT from KVM: %s", strerror(errno));
	state_section_begin(w, STATE_SECTION_IRQCHIP, 0, IRQCHIP_STATE_VERSION, 0);
	for (uint32_t i = 0; i < IRQCHIP_COUNT; i++)
		state_put_bytes(w, &chips[i].chip, sizeof(chips[i].chip));
	state_put_bytes(w, &pit, sizeof(pit));
	return state_section_end(w);
}

static int restore_irqchip(struct vm *vm, struct state_cursor *c)
{
	struct kvm_irqchip chips[IRQCHIP_COUNT];
	struct kvm_pit_state2 pit;
	for (uint32_t i = 0; i < IRQCHIP_COUNT; i++) {
		chips[i] = (struct kvm_irqchip){ .chip_id = i };
		state_get_bytes(c, &chips[i].chip, sizeof(chips[i].chip));
	}
	state_get_bytes(c, &pit, sizeof(pit));
	if (!state_cursor_ok(c) || state_cursor_left(c))
		return state_fail(-EINVAL, "irqchip: the section is not %zu bytes",
				  IRQCHIP_COUNT * sizeof(chips[0].chip) + sizeof(pit));
	for (uint32_t i = 0; i < IRQCHIP_COUNT; i++) {
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
			return state_fail(-EINVAL, "KVM refused the saved interrupt controller %u: %s", i, strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return state_fail(-EINVAL, "KVM refused the saved PIT: %s", strerror(errno));
	return 0;
}

/* ---- the file ---- */

int vm_save_devices(struct vm *vm, struct state_writer *w)
{
	int rc = save_irqchip(vm, w);
	if (rc < 0)
		return rc;
	struct kvm_msr_list *msrs = msr_index_list(vm);
	if (!msrs)
		return state_fail(-errno, "cannot list the vCPUs' MSRs: %s", strerror(errno));
	for (uint32_t i = 0; i < vm->ncpus && rc == 0; i++)
		rc = save_vcpu(vm, &vm->vcpus[i], msrs, w);
	free(msrs);
	if (rc < 0 || (rc = hv_partition_save(&vm->hv, w)) < 0 || (rc = uart_save(&vm->com1, w, 0)) < 0 ||
	    (rc = rtc_save(&vm->rtc, w)) < 0 || (rc = i8042_save(&vm->i8042, w)) < 0)
		return rc;
	pthread_mutex_lock(&vm->pm_lock);
	rc = acpi_pm_save(&vm->pm, w);
	pthread_mutex_unlock(&vm->pm_lock);
	return rc < 0 ? rc : vmbus_server_save(vm->vmbus.server, w);
}

static int save_sections(struct vm *vm, struct state_writer *w, struct vm_save_stats *stats)
{
	uint64_t t0 = monotonic_ns();
	int rc = state_writer_ram(w, vm->mem.ram, vm->mem.ram_size);
	stats->ram_ms = (monotonic_ns() - t0) / 1000000;
	return rc < 0 ? rc : vm_save_devices(vm, w);
}

int vm_quiesce_disks(struct vm *vm)
{
	int rc;
	for (int tries = 1;; tries++) {
		rc = worker_disks_quiesce(DRAIN_STEP_MS);
		if (rc != -ETIMEDOUT || tries == DRAIN_TRIES)
			break;
		/* Completions may wait for ring space that only the guest frees: let it run a moment
		 * (it may start new requests; the next drain waits for those too). */
		vm_resume(vm);
		usleep(20000);
		if (!vm_pause(vm))
			return state_fail(-ESHUTDOWN, "the VM stopped while its disks were drained");
	}
	return rc;
}

static int fsync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int vm_save_file(struct vm *vm, const char *path, const uint8_t digest[STATE_DIGEST_SIZE],
		 struct vm_save_stats *stats)
{
	uint64_t t0 = monotonic_ns();
	*stats = (struct vm_save_stats){ 0 };
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.partial", path) >= sizeof(tmp))
		return state_fail(-ENAMETOOLONG, "saved state path too long");
	int rc = vm_quiesce_disks(vm);
	if (rc < 0)
		return rc;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return state_fail(-errno, "cannot create %s: %s", tmp, strerror(errno));
	struct state_writer *w;
	rc = state_writer_open(&w, fd, digest);
	if (rc == 0) {
		/* Nothing else touches the VM meanwhile: the adapters' threads and the disks'
		 * completions take this lock, and the vCPUs are parked. */
		pthread_mutex_lock(&vm->vmbus.lock);
		rc = save_sections(vm, w, stats);
		pthread_mutex_unlock(&vm->vmbus.lock);
		if (rc == 0)
			rc = state_writer_finish(w);
		else
			state_writer_discard(w);
	}
	struct stat st;
	if (rc == 0 && (fsync(fd) < 0 || fstat(fd, &st) < 0))
		rc = state_fail(-errno, "cannot write %s: %s", tmp, strerror(errno));
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = state_fail(-errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	int dir = fsync_dir_of(path);
	if (dir < 0)
		return state_fail(dir, "cannot sync the folder of %s: %s", path, strerror(-dir));
	stats->bytes = (uint64_t)st.st_size;
	stats->total_ms = (monotonic_ns() - t0) / 1000000;
	return 0;
}

/* Where each section type comes in the file; a restore takes them in this order only. */
enum restore_stage { AT_RAM, AT_IRQCHIP, AT_VCPUS, AT_PARTITION, AT_DEVICES, AT_VMBUS, AT_VSPS };

static int stage_of(uint32_t type)
{
	switch (type) {
	case STATE_SECTION_RAM:
	case STATE_SECTION_RAM_PAGES: return AT_RAM;
	case STATE_SECTION_IRQCHIP: return AT_IRQCHIP;
	case STATE_SECTION_VCPU: return AT_VCPUS;
	case STATE_SECTION_PARTITION:
	case STATE_SECTION_SYNIC: return AT_PARTITION;
	case STATE_SECTION_UART:
	case STATE_SECTION_RTC:
	case STATE_SECTION_I8042:
	case STATE_SECTION_ACPI_PM: return AT_DEVICES;
	case STATE_SECTION_VMBUS: return AT_VMBUS;
	case STATE_SECTION_STORVSP:
	case STATE_SECTION_NETVSP:
	case STATE_SECTION_IC: return AT_VSPS;
	default: return -1;
	}
}

static int restore_ram(struct vm *vm, struct state_reader *r)
{
	unsigned flags = 0;
	/* A private anonymous mapping reads zero after MADV_DONTNEED, so zero pages need no write
	 * (and no memory); the guest-write check's shared mapping does not. */
	if (!guest_guard_active() && madvise(vm->mem.ram, vm->mem.ram_size, MADV_DONTNEED) == 0)
		flags = STATE_RAM_ZEROED;
	return state_reader_ram(r, vm->mem.ram, vm->mem.ram_size, flags);
}

static int restore_section(struct vm *vm, struct state_reader *r, struct state_section *sec, bool *vcpu_done)
{
	switch (sec->type) {
	case STATE_SECTION_RAM:
		return restore_ram(vm, r);
	case STATE_SECTION_RAM_PAGES:
		return state_reader_pages(r, sec, vm->mem.ram, vm->mem.ram_size);
	case STATE_SECTION_IRQCHIP:
		return restore_irqchip(vm, &sec->payload);
	case STATE_SECTION_VCPU:
		if (sec->instance >= vm->ncpus || vcpu_done[sec->instance])
			return state_fail(-EINVAL, "vCPU %u: not one of this VM's %u, or saved twice", sec->instance, vm->ncpus);
		vcpu_done[sec->instance] = true;
		return restore_vcpu(vm, &vm->vcpus[sec->instance], &sec->payload);
	case STATE_SECTION_PARTITION:
	case STATE_SECTION_SYNIC:
		return hv_partition_restore(&vm->hv, sec);
	case STATE_SECTION_UART:
		return uart_restore(&vm->com1, sec);
	case STATE_SECTION_RTC:
		return rtc_restore(&vm->rtc, sec);
	case STATE_SECTION_I8042:
		return i8042_restore(&vm->i8042, sec);
	case STATE_SECTION_ACPI_PM: {
		pthread_mutex_lock(&vm->pm_lock);
		int rc = acpi_pm_restore(&vm->pm, sec);
		if (rc == 0)
			vm_update_sci(vm);
		pthread_mutex_unlock(&vm->pm_lock);
		return rc;
	}
	case STATE_SECTION_VMBUS:
		return vmbus_server_restore(vm->vmbus.server, sec);
	default:
		return vmbus_server_restore_device(vm->vmbus.server, sec);
	}
}

int vm_restore(struct vm *vm, struct state_reader *r, int (*before_devices)(void *ctx), void *ctx)
{
	bool vcpu_done[VM_MAX_VCPUS] = { false };
	uint32_t seen = 0; /* bit per stage */
	int stage = AT_RAM, rc;
	struct state_section sec;
	pthread_mutex_lock(&vm->vmbus.lock);
	while ((rc = state_reader_next(r, &sec)) == 1) {
		int at = stage_of(sec.type);
		const char *name = state_section_name(sec.type);
		if (at < 0) {
			rc = state_fail(-EINVAL, "a %s section does not belong in a VM's saved state", name ? name : "unknown");
			break;
		}
		if (at < stage) {
			rc = state_fail(-EINVAL, "the %s section comes too late: the file is not in the order vmwp writes",
					name);
			break;
		}
		if (at > AT_RAM && stage == AT_RAM && before_devices && (seen & 1u << AT_RAM)) {
			pthread_mutex_unlock(&vm->vmbus.lock); /* attaching devices takes it */
			rc = before_devices(ctx);
			pthread_mutex_lock(&vm->vmbus.lock);
			if (rc < 0)
				break;
		}
		if (sec.type == STATE_SECTION_RAM && (seen & 1u << AT_RAM)) {
			rc = state_fail(-EINVAL, "the saved state has two RAM sections");
			break;
		}
		stage = at;
		seen |= 1u << at;
		if ((rc = restore_section(vm, r, &sec, vcpu_done)) < 0)
			break;
	}
	const uint32_t required = 1u << AT_RAM | 1u << AT_IRQCHIP | 1u << AT_VCPUS | 1u << AT_PARTITION |
				  1u << AT_DEVICES | 1u << AT_VMBUS;
	if (rc == 0 && (seen & required) != required)
		rc = state_fail(-EINVAL, "the saved state lacks guest RAM, a vCPU, the interrupt controllers, the "
					 "partition, a device or VMBus");
	for (uint32_t i = 0; rc == 0 && i < vm->ncpus; i++) {
		if (!vcpu_done[i])
			rc = state_fail(-EINVAL, "vCPU %u is not in the saved state", i);
	}
	if (rc == 0)
		rc = vmbus_server_restore_finish(vm->vmbus.server);
	pthread_mutex_unlock(&vm->vmbus.lock);
	return rc;
}
