/* The partition on KVM: VM and vCPU setup, the run loop and exit dispatch. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "worker/clock.h"
#include "devices/acpi.h"
#include "worker/guest_guard.h"
#include "worker/log.h"
#include "worker/sandbox.h"
#include "worker/vm.h"

#define KVM_TSS_ADDR          0xFFFBD000ull
#define KVM_IDENTITY_MAP_ADDR 0xFFFBC000ull
#define MSR_IA32_TSC          0x00000010u
#define MSR_IA32_MISC_ENABLE  0x000001A0u
#define MSR_MTRR_DEF_TYPE     0x000002FFu
#define MISC_ENABLE_FAST_STRING 0x1ull
#define MTRR_ENABLE_WB        0x806ull   /* MTRRs on, default type write-back */
#define CPUID_HYPERVISOR_BIT  (1u << 31) /* leaf 1 ECX */
#define CPUID_TSC_DEADLINE    (1u << 24) /* leaf 1 ECX */
#define CPUID_HTT             (1u << 28) /* leaf 1 EDX */
#define APIC_LVT0             0x350
#define APIC_LVT1             0x360
#define APIC_MODE_MASK        0x700u
#define APIC_MODE_NMI         0x400u
#define APIC_MODE_EXTINT      0x700u
#define MSI_ADDRESS_BASE      0xFEE00000u
#define IOAPIC_PINS           24

static void set_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* struct kvm_msrs with room for a few entries (its flexible array cannot be embedded). */
struct msr_list {
	uint32_t nmsrs, pad;
	struct kvm_msr_entry entries[2];
};
_Static_assert(offsetof(struct msr_list, entries) == offsetof(struct kvm_msrs, entries), "kvm_msrs layout");

/* ---- Platform callbacks for the Hyper-V partition and the devices ---- */

static void *vm_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	return guest_layout_hva(&((struct vm *)opaque)->mem, gpa, len);
}

/* With the guest-write check on, the devices get these two instead. */
static void *vm_guarded_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	(void)opaque;
	return guest_guard_hva(gpa, len);
}

/* Every host write into guest RAM comes with a grant: live migration resends those pages, and
 * the guest-write check (when on) opens the view for them. */
static void vm_grant(void *opaque, void *hva, uint64_t len, bool on)
{
	struct vm *vm = opaque;
	const uint8_t *base = guest_guard_active() ? guest_guard_hva(0, 1) : vm->mem.ram;
	host_writes_grant(&vm->host_writes, (uint64_t)((const uint8_t *)hva - base), len, on);
	if (guest_guard_active())
		guest_guard_grant(hva, len, on);
}

/* Called on the vCPU's own thread (MSR exits), where reading its TSC is cheap and safe. */
static uint64_t vm_guest_tsc(void *opaque, uint32_t vp)
{
	struct vm *vm = opaque;
	struct msr_list msrs = { .nmsrs = 1, .entries[0].index = MSR_IA32_TSC };
	if (ioctl(vm->vcpus[vp].fd, KVM_GET_MSRS, &msrs) != 1)
		return 0;
	return msrs.entries[0].data;
}

static void vm_inject(void *opaque, uint32_t vp, uint8_t vector)
{
	struct vm *vm = opaque;
	struct kvm_msi msi = { .address_lo = MSI_ADDRESS_BASE | vp << 12, .data = vector };
	if (ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		vlog("synic: interrupt %u to vp %u failed: %s", vector, vp, strerror(errno));
}

static void vm_set_irq(void *opaque, uint32_t irq, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level line = { .irq = irq, .level = (uint32_t)level };
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &line);
}

static void vm_reset_line(void *opaque)
{
	vm_request_exit(opaque, VM_RESET, "i8042 reset line");
}

/* ---- VM creation ---- */

static bool check_caps(struct vm *vm, char *err, size_t errlen)
{
	static const struct { int cap; const char *name; } needed[] = {
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
		{ KVM_CAP_USER_MEMORY, "user memory" },
		{ KVM_CAP_SIGNAL_MSI, "MSI injection" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
		{ KVM_CAP_X86_USER_SPACE_MSR, "user-space MSR exits" },
		{ KVM_CAP_PIT2, "in-kernel PIT" },
		{ KVM_CAP_EXT_CPUID, "CPUID2" },
	};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0) {
			set_error(err, errlen, "KVM lacks %s (capability %d)", needed[i].name, needed[i].cap);
			return false;
		}
	}
	return true;
}

static uint64_t host_memory_bytes(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return 0;
	char line[128];
	uint64_t total = 0, kb;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %lu kB", &kb) == 1 || sscanf(line, "SwapTotal: %lu kB", &kb) == 1)
			total += kb * 1024;
	}
	fclose(f);
	return total;
}

bool vm_config_check(const struct vm_config *cfg, char *err, size_t errlen)
{
	if (cfg->cpus < 1 || cfg->cpus > VM_MAX_VCPUS) {
		set_error(err, errlen, "--cpus must be 1..%d", VM_MAX_VCPUS);
		return false;
	}
	uint64_t host = host_memory_bytes();
	if (host && cfg->memory > host) {
		set_error(err, errlen, "--memory %lu MiB is more than this host has (%lu MiB)",
			  cfg->memory >> 20, host >> 20);
		return false;
	}
	return true;
}

const char *vm_kvm_device(void)
{
	const char *path = getenv("VIRIDIAN_KVM_DEVICE");
	return path && *path ? path : "/dev/kvm";
}

/* Opens the KVM device or says, in one line, what to do about it. */
static bool open_kvm(struct vm *vm, char *err, size_t errlen)
{
	const char *path = vm_kvm_device();
	vm->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int e = errno;
		set_error(err, errlen, "cannot open %s: %s: %s", path, strerror(e),
			  e == EACCES || e == EPERM ? "run vmwp as root or as a member of the device's group"
						    : "load kvm_intel or kvm_amd, or run vmwp through tools/vmhost");
		return false;
	}
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version < 0) {
		set_error(err, errlen, "%s is not a KVM device: load kvm_intel or kvm_amd, or run vmwp through tools/vmhost", path);
		return false;
	}
	if (version != KVM_API_VERSION) {
		set_error(err, errlen, "%s speaks KVM API version %d, vmwp needs %d", path, version, KVM_API_VERSION);
		return false;
	}
	return true;
}

/* Guest RAM on a 2 MiB boundary, as guest-physical RAM is: only then can a huge page of the
 * host back a huge page of the guest (KVM maps 2 MiB in the nested page tables only where host
 * and guest addresses agree modulo 2 MiB). NULL with errno. */
static void *map_aligned_ram(uint64_t bytes)
{
	const uint64_t huge = 2ull << 20;
	uint8_t *raw = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uint8_t *ram = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
	if (ram > raw)
		munmap(raw, (size_t)(ram - raw));
	munmap(ram + bytes, (size_t)(raw + huge - ram));
	return ram;
}

static bool setup_memory(struct vm *vm, uint64_t bytes, char *err, size_t errlen)
{
	/* The guest-write check (worker/guest_guard.h) gives the devices a view of their own. */
	void *ram;
	if (guest_guard_requested()) {
		if (!(ram = guest_guard_map(bytes, err, errlen)))
			return false;
	} else {
		if (!(ram = map_aligned_ram(bytes))) {
			set_error(err, errlen, "cannot allocate %lu MiB of guest memory: %s", bytes >> 20, strerror(errno));
			return false;
		}
		/* VIRIDIAN_VMWP_NOHUGEPAGE=1: small pages only, so a soak can tell THP from other causes. */
		madvise(ram, bytes, getenv("VIRIDIAN_VMWP_NOHUGEPAGE") ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
	}
	guest_layout_init(&vm->mem, ram, bytes);
	if (!host_writes_init(&vm->host_writes, bytes)) {
		set_error(err, errlen, "out of memory");
		return false;
	}
	struct kvm_userspace_memory_region low = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = vm->mem.low_size,
		.userspace_addr = (uint64_t)ram,
	};
	struct kvm_userspace_memory_region high = {
		.slot = 1, .guest_phys_addr = HIGH_RAM_START, .memory_size = bytes - vm->mem.low_size,
		.userspace_addr = (uint64_t)ram + vm->mem.low_size,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &low) < 0 ||
	    (high.memory_size && ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &high) < 0)) {
		set_error(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
		return false;
	}
	return true;
}

/* The two memslots setup_memory made: RAM below the hole, then above 4 GiB. */
static struct kvm_userspace_memory_region ram_slot(const struct vm *vm, unsigned slot, bool log)
{
	struct kvm_userspace_memory_region r = { .slot = slot, .flags = log ? KVM_MEM_LOG_DIRTY_PAGES : 0 };
	if (slot == 0) {
		r.memory_size = vm->mem.low_size;
		r.userspace_addr = (uint64_t)vm->mem.ram;
	} else {
		r.guest_phys_addr = HIGH_RAM_START;
		r.memory_size = vm->mem.ram_size - vm->mem.low_size;
		r.userspace_addr = (uint64_t)vm->mem.ram + vm->mem.low_size;
	}
	return r;
}

bool vm_dirty_log(struct vm *vm, bool on)
{
	for (unsigned slot = 0; slot < 2; slot++) {
		struct kvm_userspace_memory_region r = ram_slot(vm, slot, on);
		if (r.memory_size && ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return false;
	}
	return true;
}

bool vm_dirty_collect(struct vm *vm, uint64_t *dirty)
{
	uint64_t *bits = NULL;
	for (unsigned slot = 0; slot < 2; slot++) {
		struct kvm_userspace_memory_region r = ram_slot(vm, slot, true);
		if (!r.memory_size)
			continue;
		uint64_t pages = r.memory_size / 4096, words = (pages + 63) / 64;
		free(bits);
		if (!(bits = calloc(words, sizeof(*bits))))
			return false;
		struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bits };
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			int e = errno;
			free(bits);
			errno = e;
			return false;
		}
		/* Slot 1's pages follow slot 0's in the packed RAM; low_size is whole 2 MiB. */
		uint64_t first = (r.userspace_addr - (uint64_t)vm->mem.ram) / 4096;
		for (uint64_t w = 0; w < words; w++)
			dirty[first / 64 + w] |= bits[w];
	}
	free(bits);
	host_writes_collect(&vm->host_writes, dirty);
	return true;
}

/* ISA IRQ 0 goes to IOAPIC pin 2 (the MADT says so); other ISA IRQs are identity-mapped
 * on both the PIC pair and the IOAPIC. */
static bool setup_irq_routing(struct vm *vm)
{
	size_t n = 0, max = 16 * 2 + IOAPIC_PINS;
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + max * sizeof(r->entries[0]));
	if (!r)
		return false;
	for (uint32_t gsi = 0; gsi < IOAPIC_PINS; gsi++) {
		if (gsi < 16 && gsi != 2) {
			r->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { .irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
					       .pin = gsi % 8 } };
		}
		if (gsi != 2)
			r->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi ? gsi : 2 } };
	}
	r->nr = (uint32_t)n;
	int rc = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r);
	free(r);
	return rc == 0;
}

/* Hyper-V's synthetic MSRs must exit to user space. A KVM without Hyper-V support does
 * not know them, so "unknown MSR" exits are enough (and cheap: no filter). A KVM with it
 * would handle them itself, so there a filter denies the range. The filter is set before
 * any vCPU exists: it waits for an SRCU grace period (milliseconds) but leaves no window in
 * which a vCPU could see the in-kernel Hyper-V MSRs. */
static bool setup_msr_routing(struct vm *vm, char *err, size_t errlen)
{
	static uint8_t deny_all[(HV_SYNTHETIC_MSR_LAST - HV_SYNTHETIC_MSR_FIRST + 1) / 8];
	bool in_kernel_hyperv = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_HYPERV) > 0;
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_USER_SPACE_MSR,
		.args = { in_kernel_hyperv ? KVM_MSR_EXIT_REASON_FILTER : KVM_MSR_EXIT_REASON_UNKNOWN },
	};
	struct kvm_msr_filter filter = {
		.flags = KVM_MSR_FILTER_DEFAULT_ALLOW,
		.ranges[0] = { .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
			       .nmsrs = HV_SYNTHETIC_MSR_LAST - HV_SYNTHETIC_MSR_FIRST + 1,
			       .base = HV_SYNTHETIC_MSR_FIRST, .bitmap = deny_all },
	};
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0 ||
	    (in_kernel_hyperv && ioctl(vm->vm_fd, KVM_X86_SET_MSR_FILTER, &filter) < 0)) {
		set_error(err, errlen, "cannot route Hyper-V MSRs to user space: %s", strerror(errno));
		return false;
	}
	return true;
}

static struct kvm_cpuid2 *supported_cpuid(struct vm *vm)
{
	for (uint32_t n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (n + 16) * sizeof(c->entries[0]));
		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG)
			return NULL;
	}
	return NULL;
}

/* The host's CPUID as KVM can virtualise it, with KVM's own paravirt leaves replaced by
 * Hyper-V's and the topology fields naming this vCPU. */
static bool setup_cpuid(struct vm *vm, struct vcpu *v, const struct kvm_cpuid2 *supported)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (supported->nent + 16) * sizeof(c->entries[0]));
	if (!c)
		return false;
	bool tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	uint32_t n = 0;
	for (uint32_t i = 0; i < supported->nent; i++) {
		struct kvm_cpuid_entry2 e = supported->entries[i];
		if (e.function >= 0x40000000u && e.function < 0x50000000u)
			continue; /* KVM's signature leaves */
		switch (e.function) {
		case 1:
			e.ecx |= CPUID_HYPERVISOR_BIT | (tsc_deadline ? CPUID_TSC_DEADLINE : 0);
			e.ebx = (e.ebx & 0xFFFF) | (v->id << 24) | ((vm->ncpus & 0xFF) << 16);
			e.edx = vm->ncpus > 1 ? e.edx | CPUID_HTT : e.edx & ~CPUID_HTT;
			break;
		case 0xB:
		case 0x1F:
			e.edx = v->id; /* x2APIC id */
			break;
		}
		c->entries[n++] = e;
	}
	for (uint32_t leaf = HV_CPUID_VENDOR_AND_MAX; leaf <= HV_CPUID_MAX_LEAF; leaf++) {
		struct hv_cpuid_regs r;
		hv_cpuid(&vm->hv, leaf, &r);
		c->entries[n++] = (struct kvm_cpuid_entry2){ .function = leaf, .eax = r.eax, .ebx = r.ebx, .ecx = r.ecx, .edx = r.edx };
	}
	c->nent = n;
	int rc = ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	return rc == 0;
}

/* LINT0 as ExtINT (the PIC's virtual wire) and LINT1 as NMI, as firmware leaves them. */
static bool setup_lapic(struct vcpu *v)
{
	struct kvm_lapic_state lapic;
	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return false;
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, lapic.regs + APIC_LVT0, 4);
	memcpy(&lvt1, lapic.regs + APIC_LVT1, 4);
	lvt0 = (lvt0 & ~APIC_MODE_MASK) | APIC_MODE_EXTINT;
	lvt1 = (lvt1 & ~APIC_MODE_MASK) | APIC_MODE_NMI;
	memcpy(lapic.regs + APIC_LVT0, &lvt0, 4);
	memcpy(lapic.regs + APIC_LVT1, &lvt1, 4);
	return ioctl(v->fd, KVM_SET_LAPIC, &lapic) == 0;
}

static bool create_vcpus(struct vm *vm, char *err, size_t errlen)
{
	struct kvm_cpuid2 *supported = supported_cpuid(vm);
	if (!supported) {
		set_error(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		return false;
	}
	bool ok = true;
	for (uint32_t i = 0; i < vm->ncpus && ok; i++) {
		struct vcpu *v = &vm->vcpus[i];
		v->vm = vm;
		v->id = i;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			set_error(err, errlen, "cannot create vCPU %u: %s", i, strerror(errno));
			ok = false;
			break;
		}
		v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			set_error(err, errlen, "cannot map vCPU %u state: %s", i, strerror(errno));
			ok = false;
			break;
		}
		if (i == 0) {
			long khz = ioctl(v->fd, KVM_GET_TSC_KHZ);
			if (khz <= 0) {
				set_error(err, errlen, "KVM_GET_TSC_KHZ: %s", strerror(errno));
				ok = false;
				break;
			}
			vm->tsc_khz = (uint64_t)khz;
			bool guarded = guest_guard_active();
			struct hv_platform platform = {
				.gpa_to_hva = guarded ? vm_guarded_gpa_to_hva : vm_gpa_to_hva, .guest_tsc = vm_guest_tsc,
				.inject = vm_inject, .grant = vm_grant, .opaque = vm,
			};
			hv_partition_init(&vm->hv, vm->ncpus, vm->tsc_khz, VM_HYPERCALL_PORT, &platform);
			if (!vmbus_host_init(&vm->vmbus, &vm->hv, vm->disabled_ics)) {
				set_error(err, errlen, "cannot set up VMBus");
				ok = false;
				break;
			}
		}
		if (!setup_cpuid(vm, v, supported) || !setup_lapic(v)) {
			set_error(err, errlen, "cannot configure vCPU %u: %s", i, strerror(errno));
			ok = false;
		}
	}
	free(supported);
	return ok;
}

static bool setup_devices(struct vm *vm, int console_fd, char *err, size_t errlen)
{
	struct irq_line com1_irq = { vm_set_irq, vm, UART_COM1_IRQ };
	struct irq_line kbd_irq = { vm_set_irq, vm, I8042_KBD_IRQ };
	struct irq_line aux_irq = { vm_set_irq, vm, I8042_AUX_IRQ };
	uart_init(&vm->com1, console_fd, &com1_irq);
	rtc_init(&vm->rtc, NULL);
	i8042_init(&vm->i8042, &kbd_irq, &aux_irq, vm_reset_line, vm);

	struct acpi_config acpi;
	acpi_config_default(&acpi, vm->ncpus);
	pthread_mutex_init(&vm->pm_lock, NULL);
	acpi_pm_init(&vm->pm, &acpi);
	void *tables = guest_layout_hva(&vm->mem, ACPI_TABLES_GPA, ACPI_TABLES_MAX);
	vm->rsdp = tables ? acpi_build_tables(tables, ACPI_TABLES_MAX, ACPI_TABLES_GPA, &acpi, NULL) : 0;
	if (!vm->rsdp) {
		set_error(err, errlen, "cannot build ACPI tables for %u vCPUs", vm->ncpus);
		return false;
	}
	return true;
}

struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen)
{
	if (!vm_config_check(cfg, err, errlen))
		return NULL;
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		set_error(err, errlen, "out of memory");
		return NULL;
	}
	vm->ncpus = cfg->cpus;
	vm->disabled_ics = cfg->disabled_ics;
	vm->vm_fd = vm->event_fd = -1;
	const char *recorder = getenv("VIRIDIAN_FLIGHT_RECORDER");
	vm->recorder_fd = recorder && *recorder ? open(recorder, O_WRONLY | O_CLOEXEC) : -1;
	pthread_mutex_init(&vm->exit_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	if (!open_kvm(vm, err, errlen) || !check_caps(vm, err, errlen))
		goto fail;
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->vm_fd < 0 || vm->run_size <= 0 || vm->event_fd < 0) {
		set_error(err, errlen, "cannot create the VM: %s", strerror(errno));
		goto fail;
	}
	uint64_t identity = KVM_IDENTITY_MAP_ADDR;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0 || !setup_irq_routing(vm)) {
		set_error(err, errlen, "cannot set up the interrupt controllers: %s", strerror(errno));
		goto fail;
	}
	if (!setup_msr_routing(vm, err, errlen) || !setup_memory(vm, cfg->memory, err, errlen) ||
	    !create_vcpus(vm, err, errlen) || !setup_devices(vm, cfg->console_fd, err, errlen))
		goto fail;
	return vm;
fail:
	vm_destroy(vm);
	return NULL;
}

bool vm_setup_linux_entry(struct vm *vm, const struct boot_info *boot, char *err, size_t errlen)
{
	struct vcpu *bsp = &vm->vcpus[0];
	struct kvm_sregs sregs;
	if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) < 0)
		goto fail;
	struct kvm_segment code = {
		.base = 0, .limit = 0xFFFFFFFF, .selector = BOOT_CS, .type = 11, .present = 1,
		.s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = code;
	data.selector = BOOT_DS;
	data.type = 3;
	data.l = 0;
	data.db = 1;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = BOOT_TSS, .type = 11, .present = 1 };
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = 0x80050033ull; /* PG | AM | WP | NE | ET | MP | PE */
	sregs.cr3 = BOOT_PML4_ADDR;
	sregs.cr4 = 0x20;          /* PAE */
	sregs.efer = 0x500;        /* LME | LMA */
	if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) < 0)
		goto fail;
	struct kvm_regs regs = { .rflags = 2, .rip = boot->entry, .rsi = boot->boot_params, .rsp = BOOT_STACK_TOP };
	if (ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0)
		goto fail;
	struct kvm_fpu fpu = { .fcw = 0x37F, .mxcsr = 0x1F80 };
	if (ioctl(bsp->fd, KVM_SET_FPU, &fpu) < 0)
		goto fail;
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct msr_list msrs = {
			.nmsrs = 2,
			.entries = { { .index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING },
				     { .index = MSR_MTRR_DEF_TYPE, .data = MTRR_ENABLE_WB } },
		};
		if (ioctl(vm->vcpus[i].fd, KVM_SET_MSRS, &msrs) != 2)
			goto fail;
	}
	return true;
fail:
	set_error(err, errlen, "cannot set the boot CPU state: %s", strerror(errno));
	return false;
}

/* ---- Exit handling ---- */

void vm_update_sci(struct vm *vm)
{
	int level = acpi_pm_sci_level(&vm->pm);
	if (level != vm->sci_level) {
		vm->sci_level = level;
		vm_set_irq(vm, ACPI_SCI_IRQ, level);
	}
}

static uint32_t pio_in(struct vm *vm, uint16_t port, unsigned size)
{
	if (port >= UART_COM1_BASE && port < UART_COM1_BASE + UART_PORTS)
		return uart_read(&vm->com1, port - UART_COM1_BASE);
	if (port == RTC_PORT_INDEX || port == RTC_PORT_DATA)
		return rtc_read(&vm->rtc, port);
	if (port == I8042_DATA_PORT || port == I8042_COMMAND_PORT)
		return i8042_read(&vm->i8042, port);
	if (acpi_pm_handles(&vm->pm, port)) {
		pthread_mutex_lock(&vm->pm_lock);
		uint32_t v = acpi_pm_read(&vm->pm, port, size, monotonic_ns());
		vm_update_sci(vm);
		pthread_mutex_unlock(&vm->pm_lock);
		return v;
	}
	return 0xFFFFFFFFu; /* nothing decodes this port */
}

static void pio_out(struct vm *vm, uint16_t port, unsigned size, uint32_t value)
{
	if (port >= UART_COM1_BASE && port < UART_COM1_BASE + UART_PORTS) {
		uart_write(&vm->com1, port - UART_COM1_BASE, (uint8_t)value);
	} else if (port == RTC_PORT_INDEX || port == RTC_PORT_DATA) {
		rtc_write(&vm->rtc, port, (uint8_t)value);
	} else if (port == I8042_DATA_PORT || port == I8042_COMMAND_PORT) {
		i8042_write(&vm->i8042, port, (uint8_t)value);
	} else if (acpi_pm_handles(&vm->pm, port)) {
		pthread_mutex_lock(&vm->pm_lock);
		enum acpi_pm_action action = acpi_pm_write(&vm->pm, port, value, size);
		vm_update_sci(vm);
		pthread_mutex_unlock(&vm->pm_lock);
		if (action == ACPI_PM_POWER_OFF)
			vm_request_exit(vm, VM_POWER_OFF, NULL);
		else if (action == ACPI_PM_RESET)
			vm_request_exit(vm, VM_RESET, "ACPI reset register");
	}
}

static void handle_hypercall(struct vcpu *v)
{
	struct kvm_regs regs;
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0) {
		vm_request_exit(v->vm, VM_FAILED, "cannot read registers for a hypercall");
		return;
	}
	regs.rax = hv_hypercall(&v->vm->hv, v->id, regs.rcx, regs.rdx, regs.r8);
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		vm_request_exit(v->vm, VM_FAILED, "cannot complete a hypercall");
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned size = run->io.size;
	if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == VM_HYPERCALL_PORT && size == 1) {
		handle_hypercall(v);
		return;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint32_t value = 0;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&value, data, size);
			pio_out(v->vm, run->io.port, size, value);
		} else {
			value = pio_in(v->vm, run->io.port, size);
			memcpy(data, &value, size);
		}
	}
}

static void handle_msr(struct vcpu *v, bool write)
{
	struct kvm_run *run = v->run;
	uint64_t value = run->msr.data;
	bool ok = write ? hv_msr_write(&v->vm->hv, v->id, run->msr.index, value)
			: hv_msr_read(&v->vm->hv, v->id, run->msr.index, &value);
	run->msr.data = value;
	run->msr.error = ok ? 0 : 1; /* 1: KVM injects #GP */
	if (write && ok && run->msr.index == HV_X64_MSR_EOM)
		vmbus_host_eom(&v->vm->vmbus);
}

/* Where a vCPU was when it triple-faulted: the one clue a guest reset leaves. */
static void describe_triple_fault(struct vcpu *v, char *out, size_t len)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
		snprintf(out, len, "triple fault on vCPU %u", v->id);
		return;
	}
	/* KVM on AMD (SVM) INITs the vCPU before it reports the shutdown: the registers are then
	 * the reset state (rip 0xfff0, real mode), not where the guest faulted. Say so rather
	 * than send the reader looking for a vCPU that ran from the reset vector. */
	if (regs.rip == 0xFFF0 && sregs.cs.base == 0xFFFF0000ull && !(sregs.cr0 & 1)) {
		snprintf(out, len, "triple fault on vCPU %u (where is unknown: KVM re-initialised the vCPU, as it does on AMD)",
			 v->id);
		return;
	}
	snprintf(out, len, "triple fault on vCPU %u at rip %#llx rsp %#llx cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx",
		 v->id, (unsigned long long)regs.rip, (unsigned long long)regs.rsp, (unsigned long long)sregs.cr0,
		 (unsigned long long)sregs.cr3, (unsigned long long)sregs.cr4, (unsigned long long)sregs.efer);
}

/* tools/crashtrace records this VM's KVM events in a ring; stop it at the triple fault so that
 * the rebooted guest does not overwrite where the old one died. The file was opened with the VM:
 * a vCPU thread may not open files. */
static void stop_flight_recorder(struct vm *vm)
{
	const char *path = getenv("VIRIDIAN_FLIGHT_RECORDER");
	if (!path || !*path)
		return;
	if (vm->recorder_fd < 0 || write(vm->recorder_fd, "0", 1) != 1)
		vlog("cannot stop the flight recorder %s: %s", path, vm->recorder_fd < 0 ? "not open" : strerror(errno));
	else
		vlog("flight recorder %s stopped at the triple fault", path);
}

/* Parks the calling vCPU while a pause is requested; either way it leaves immediate_exit clear
 * unless the VM is stopping. */
static void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	/* An exit handled in user space (port I/O, MSR, hypercall) completes inside KVM only at the
	 * next KVM_RUN: enter once with immediate_exit set, so that a paused vCPU's registers are
	 * consistent for a saved state. KVM returns EINTR at once. */
	v->run->immediate_exit = 1;
	if (ioctl(v->fd, KVM_RUN, 0) == 0 || (errno != EINTR && errno != EAGAIN))
		vlog("vCPU %u: completing its last exit before the pause: %s", v->id, strerror(errno));
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_requested) {
		vm->paused_vcpus++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->pause_requested && __atomic_load_n(&vm->exit, __ATOMIC_ACQUIRE) == VM_RUNNING)
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->paused_vcpus--;
	}
	/* Also when the pause was over before this vCPU got here: left set, KVM_RUN would return
	 * EINTR at once for ever. A stop keeps it set. */
	if (__atomic_load_n(&vm->exit, __ATOMIC_ACQUIRE) == VM_RUNNING)
		v->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->pause_lock);
}

static void kick_vcpus(struct vm *vm)
{
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->started)
			continue;
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, SIGUSR1);
	}
}

bool vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_requested = true;
	kick_vcpus(vm);
	while (vm->paused_vcpus < vm->ncpus && __atomic_load_n(&vm->exit, __ATOMIC_ACQUIRE) == VM_RUNNING)
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	bool paused = vm->paused_vcpus == vm->ncpus;
	pthread_mutex_unlock(&vm->pause_lock);
	return paused;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_requested = false;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

bool vm_is_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	bool paused = vm->pause_requested;
	pthread_mutex_unlock(&vm->pause_lock);
	return paused;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	char msg[160];
	bool trace_first_exit = v->id == 0 && vm->trace_start_ns;
	sandbox_thread(SANDBOX_VCPU);
	while (__atomic_load_n(&vm->exit, __ATOMIC_ACQUIRE) == VM_RUNNING) {
		if (__atomic_load_n(&vm->pause_requested, __ATOMIC_ACQUIRE))
			vcpu_park(v);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu_park(v); /* a kick: park, or clear immediate_exit if the pause is over */
				continue;
			}
			snprintf(msg, sizeof(msg), "vCPU %u: KVM_RUN: %s", v->id, strerror(errno));
			vm_request_exit(vm, VM_FAILED, msg);
			break;
		}
		if (trace_first_exit) {
			vlog("first guest exit %.3f ms after exec", (double)(monotonic_ns() - vm->trace_start_ns) / 1e6);
			trace_first_exit = false;
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(v);
			break;
		case KVM_EXIT_MMIO:
			if (!v->run->mmio.is_write)
				memset(v->run->mmio.data, 0xFF, sizeof(v->run->mmio.data));
			break;
		case KVM_EXIT_X86_RDMSR:
			handle_msr(v, false);
			break;
		case KVM_EXIT_X86_WRMSR:
			handle_msr(v, true);
			break;
		case KVM_EXIT_HLT:
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_SHUTDOWN: /* triple fault: a PC resets */
			stop_flight_recorder(vm);
			describe_triple_fault(v, msg, sizeof(msg));
			vm_request_exit(vm, VM_RESET, msg);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			vm_request_exit(vm, v->run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? VM_POWER_OFF : VM_RESET,
					"KVM system event");
			break;
		case KVM_EXIT_FAIL_ENTRY:
			snprintf(msg, sizeof(msg), "vCPU %u: entry failed, hardware reason 0x%llx", v->id,
				 (unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
			vm_request_exit(vm, VM_FAILED, msg);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			snprintf(msg, sizeof(msg), "vCPU %u: KVM internal error %u", v->id, v->run->internal.suberror);
			vm_request_exit(vm, VM_FAILED, msg);
			break;
		default:
			snprintf(msg, sizeof(msg), "vCPU %u: unhandled exit reason %u", v->id, v->run->exit_reason);
			vm_request_exit(vm, VM_FAILED, msg);
		}
	}
	return NULL;
}

static void kick(int sig)
{
	(void)sig; /* only there to interrupt KVM_RUN */
}

bool vm_start(struct vm *vm, char *err, size_t errlen)
{
	/* Benchmarks pass the CLOCK_MONOTONIC time of exec to time start-up (bench/boot). */
	const char *start = getenv("VIRIDIAN_TRACE_START_NS");
	vm->trace_start_ns = start ? strtoull(start, NULL, 10) : 0;
	struct sigaction sa = { .sa_handler = kick };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		int rc = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (rc) {
			set_error(err, errlen, "cannot start vCPU %u: %s", i, strerror(rc));
			vm_request_exit(vm, VM_FAILED, err);
			vm_stop(vm);
			return false;
		}
		vm->vcpus[i].started = true;
	}
	return true;
}

void vm_request_exit(struct vm *vm, enum vm_exit why, const char *error)
{
	pthread_mutex_lock(&vm->exit_lock);
	if (vm->exit == VM_RUNNING) {
		if (error)
			snprintf(vm->error, sizeof(vm->error), "%s", error);
		__atomic_store_n(&vm->exit, why, __ATOMIC_RELEASE);
		uint64_t one = 1;
		/* No event fd yet: vm_create failed before it, and nobody waits for it. */
		if (vm->event_fd >= 0 && write(vm->event_fd, &one, sizeof(one)) < 0)
			vlog("cannot signal the VM's exit: %s", strerror(errno));
	}
	pthread_mutex_unlock(&vm->exit_lock);
}

enum vm_exit vm_stop(struct vm *vm)
{
	vm_request_exit(vm, VM_STOPPED, NULL);
	pthread_mutex_lock(&vm->pause_lock);
	kick_vcpus(vm);
	pthread_cond_broadcast(&vm->pause_cond); /* parked vCPUs see the exit */
	pthread_mutex_unlock(&vm->pause_lock);
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
	return vm->exit;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_stop(vm);
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, (size_t)vm->run_size);
		if (vm->vcpus[i].fd > 0)
			close(vm->vcpus[i].fd);
	}
	if (vm->vmbus.server)
		vmbus_host_destroy(&vm->vmbus);
	hv_partition_destroy(&vm->hv);
	if (vm->mem.ram)
		munmap(vm->mem.ram, vm->mem.ram_size);
	host_writes_free(&vm->host_writes);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	if (vm->recorder_fd >= 0)
		close(vm->recorder_fd);
	free(vm);
}
