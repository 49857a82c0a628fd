/* A running partition: the KVM VM, its guest RAM, virtual processors (one thread each),
 * emulated devices and the Hyper-V interface. vm_run() returns when the guest powers
 * off or resets, or on a fatal error. */
#ifndef VIRIDIAN_WORKER_VM_H
#define VIRIDIAN_WORKER_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "hv/partition.h"
#include "worker/host_writes.h"
#include "worker/linux_boot.h"
#include "worker/vmbus_host.h"

#define VM_MAX_VCPUS HV_MAX_VPS
#define VM_HYPERCALL_PORT 0xEB  /* the hypercall page's `out imm8, al` writes here */

enum vm_exit {
	VM_RUNNING = 0,
	VM_POWER_OFF,     /* ACPI S5 */
	VM_RESET,         /* reset line, reset register or triple fault */
	VM_FAILED,        /* an error the guest cannot recover from; see vm->error */
	VM_STOPPED,       /* stopped by the host (user, signal) */
	VM_MIGRATED,      /* live-migrated: another worker runs it now */
};

struct vm;

struct vcpu {
	struct vm *vm;
	uint32_t id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

struct vm_config {
	uint64_t memory;
	uint32_t cpus;
	int console_fd;          /* guest serial output */
	unsigned disabled_ics;   /* integration services not offered (worker/options.h WORKER_IC_*) */
};

struct vm {
	int kvm_fd, vm_fd;
	int run_size;
	struct guest_layout mem;
	struct host_writes host_writes; /* pages the worker's own threads write (live migration) */
	uint32_t ncpus;
	unsigned disabled_ics;   /* from vm_config */
	uint64_t tsc_khz;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct hv_partition hv;
	struct vmbus_host vmbus;
	struct uart com1;
	struct rtc rtc;
	struct i8042 i8042;
	pthread_mutex_t pm_lock;
	struct acpi_pm pm;
	int sci_level;
	uint64_t rsdp;
	uint64_t trace_start_ns; /* nonzero: log the first guest exit relative to it */
	int event_fd;            /* becomes readable when the VM leaves VM_RUNNING */
	int recorder_fd;         /* $VIRIDIAN_FLIGHT_RECORDER (tools/crashtrace), opened before the sandbox; -1 none */
	uint8_t config_digest[32]; /* worker_state_digest(): what a saved state of it must match */
	pthread_mutex_t pause_lock;  /* guards the three below; pause_cond signals changes */
	pthread_cond_t pause_cond;
	bool pause_requested;
	uint32_t paused_vcpus;
	pthread_mutex_t exit_lock;
	enum vm_exit exit;
	char error[256];         /* VM_FAILED: what went wrong; VM_RESET: what reset the guest */
};

/* What can be checked without KVM: the vCPU count and the memory against this host's.
 * False with a message in err. */
bool vm_config_check(const struct vm_config *cfg, char *err, size_t errlen);
/* The KVM device vmwp opens: $VIRIDIAN_KVM_DEVICE (for tests), else /dev/kvm. */
const char *vm_kvm_device(void);
/* Create the VM (KVM, RAM, irqchip, vCPUs, devices, ACPI). Returns NULL and a message
 * in err on failure; vm_config_check's checks come first. A missing or unusable KVM device
 * gives one line that says what to do. */
struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen);
/* Prepare the BSP for the 64-bit Linux entry described by boot. */
bool vm_setup_linux_entry(struct vm *vm, const struct boot_info *boot, char *err, size_t errlen);
/* Raises or lowers the ACPI SCI to what the PM1 registers say; pm_lock held. */
void vm_update_sci(struct vm *vm);
/* Start the vCPU threads. */
bool vm_start(struct vm *vm, char *err, size_t errlen);
/* Pause: every vCPU leaves the guest and waits (true once all have); resume lets them go on.
 * Safe from any thread but a vCPU's own. */
bool vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* Live migration: KVM logs the guest's writes to its RAM (on) or stops (off). False with errno. */
bool vm_dirty_log(struct vm *vm, bool on);
/* ORs into dirty (one bit per 4 KiB page of vm->mem.ram, ram_size / 4096 bits) the pages the
 * guest wrote since logging began or the last call, and those the host wrote (host_writes).
 * False with errno. */
bool vm_dirty_collect(struct vm *vm, uint64_t *dirty);
/* Ask the VM to stop with reason `why` (first reason wins); safe from any thread. */
void vm_request_exit(struct vm *vm, enum vm_exit why, const char *error);
/* Stop and join the vCPU threads; returns why the VM stopped. */
enum vm_exit vm_stop(struct vm *vm);
void vm_destroy(struct vm *vm);

#endif
