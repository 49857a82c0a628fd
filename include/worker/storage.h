/* Attaching the VM's disks (--disk) to the synthetic SCSI controller (storvsp). */
#ifndef VIRIDIAN_WORKER_STORAGE_H
#define VIRIDIAN_WORKER_STORAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "worker/options.h"
#include "worker/vmbus_host.h"

/* Opens every disk in o (before the VM exists, so a bad disk is refused without KVM).
 * Returns false with a message naming the disk and the problem. They are closed at exit. */
bool worker_open_disks(const struct worker_options *o, char *err, size_t errlen);
/* Offers the controller with the opened disks on h's VMBus before the guest starts. */
bool worker_attach_disks(struct vmbus_host *h, char *err, size_t errlen);
/* Saved state: waits (vCPUs paused, h->lock not held) until the controller has no request in
 * flight, then flushes every writable disk, so that the saved RAM and the disks agree and no
 * acknowledged write is only in a cache. 0, or a negative errno after state_fail(). */
int worker_disks_quiesce(unsigned timeout_ms);
/* Stops the controller's I/O threads and closes (flushes) the disks: at exit, or after the VM
 * (whose channel close waits for the controller's disk work) is destroyed. A second call does
 * nothing. */
void worker_detach_disks(void);

#endif
