/* Disk attachment. The synthetic SCSI controller is not in this build yet, so a VM with
 * disks is refused rather than started without them. */
#include <stdio.h>

#include "worker/storage.h"

bool worker_attach_disks(struct vmbus_host *h, const struct worker_options *o, char *err, size_t errlen)
{
	(void)h;
	if (o->ndisks) {
		snprintf(err, errlen, "--disk %s: the synthetic SCSI controller (storvsp) is not available yet",
			 o->disks[0].path);
		return false;
	}
	return true;
}
