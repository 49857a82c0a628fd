/* Attaching the VM's disks (--disk) to the synthetic SCSI controller (storvsp). */
#ifndef VIRIDIAN_WORKER_STORAGE_H
#define VIRIDIAN_WORKER_STORAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "worker/options.h"
#include "worker/vmbus_host.h"

/* Opens every disk in o and offers the controller on h's VMBus before the guest starts.
 * Returns false with a message naming the disk and the problem. */
bool worker_attach_disks(struct vmbus_host *h, const struct worker_options *o, char *err, size_t errlen);

#endif
