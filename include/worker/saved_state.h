/* The whole VM into a saved-state file and back (docs/savedstate.md): vmwp's control request
 * "save" and its --restore option. The worker writes KVM's view of the machine itself (vCPUs,
 * in-kernel irqchip and PIT) and has every other component write its own sections.
 *
 * File order (a restore refuses any other): RAM, IRQCHIP, VCPU x n, PARTITION, SYNIC x n,
 * UART, RTC, I8042, ACPI_PM, VMBUS, then the VSPs' sections, END. RAM comes first so that the
 * VMBus restore finds the guest's rings and GPADL pages in place; the irqchip and the local APICs
 * before anything that raises an interrupt. */
#ifndef VIRIDIAN_WORKER_SAVED_STATE_H
#define VIRIDIAN_WORKER_SAVED_STATE_H

#include <stdint.h>

#include "state/savedstate.h"
#include "worker/options.h"
#include "worker/vm.h"

/* The configuration digest a saved state must match: memory, vCPUs, disks (count, read-only),
 * network adapters (count, MAC), integration services left out. Paths are not part of it: a
 * moved disk is still the VM's disk. */
int worker_state_digest(const struct worker_options *o, uint8_t out[STATE_DIGEST_SIZE]);

struct vm_save_stats {
	uint64_t bytes;     /* file size */
	uint64_t ram_ms;    /* writing guest RAM */
	uint64_t total_ms;  /* drain + every section */
};

/* Saves the paused VM (vm_pause) to path: a temporary file beside it, fsynced, then renamed,
 * so that path is either absent or complete. The disks are drained and flushed first. 0, or a
 * negative errno with state_last_error() set; then no file is left at path. */
int vm_save_file(struct vm *vm, const char *path, const uint8_t digest[STATE_DIGEST_SIZE],
		 struct vm_save_stats *stats);

/* The parts of a save after guest RAM, in file order (IRQCHIP .. the VSPs' sections): the VM
 * paused, its disks quiesced, vm->vmbus.lock held. Live migration sends them after the pages. */
int vm_save_devices(struct vm *vm, struct state_writer *w);
/* Pauses nothing: with the VM paused, waits until the disks have no request in flight and
 * flushes them (letting the guest run a moment when a completion needs ring space). */
int vm_quiesce_disks(struct vm *vm);

/* Restores the created, not yet started VM from r, opened with the VM's digest. The disks and
 * adapters must be attached before the VMBus sections: already, or by before_devices(ctx)
 * (may be NULL), which runs once guest RAM is in (live migration opens the disks then, when
 * the source has let go of them). A stream may follow its RAM section with RAM_PAGES sections
 * (live migration). 0, or a negative errno with state_last_error() set (the VM is then
 * unusable: destroy it). */
int vm_restore(struct vm *vm, struct state_reader *r, int (*before_devices)(void *ctx), void *ctx);

#endif
