/* Disk attachment: every --disk is opened with the vhd library (read-only with ,ro) and becomes
 * LUN i of one synthetic SCSI controller (storvsp), offered on the VMBus before the guest starts.
 * At exit the I/O threads are stopped and the images closed (which flushes them). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/savedstate.h"
#include "vhd/vdisk.h"
#include "vsp/storvsp.h"
#include "worker/log.h"
#include "worker/storage.h"

#define STORVSP_IO_THREADS 8

static struct storvsp *controller;
static struct storvsp_disk attached[WORKER_MAX_DISKS];
static const char *paths[WORKER_MAX_DISKS];
static unsigned nattached;

void worker_detach_disks(void)
{
	if (controller) {
		struct storvsp_stats st;
		storvsp_get_stats(controller, &st);
		vlog("storvsp: %llu SRBs (%llu reads, %llu writes, %llu flushes, %llu unmaps), %llu errors, %llu bad packets",
		     (unsigned long long)st.srbs, (unsigned long long)st.reads, (unsigned long long)st.writes,
		     (unsigned long long)st.flushes, (unsigned long long)st.unmaps, (unsigned long long)st.errors,
		     (unsigned long long)st.bad_packets);
		storvsp_free(controller);
		controller = NULL;
	}
	for (unsigned i = 0; i < nattached; i++) {
		if (attached[i].disk && vdisk_close(attached[i].disk) < 0)
			vlog("storvsp: closing disk %u: %s", i, vdisk_last_error());
		attached[i].disk = NULL;
	}
	nattached = 0;
}

bool worker_open_disks(const struct worker_options *o, char *err, size_t errlen)
{
	for (unsigned i = 0; i < o->ndisks; i++) {
		struct vdisk *d = NULL;
		int rc = vdisk_open(o->disks[i].path, o->disks[i].read_only ? 0 : VDISK_OPEN_RDWR, &d);
		if (rc < 0) {
			snprintf(err, errlen, "--disk %s: %s", o->disks[i].path, vdisk_last_error());
			worker_detach_disks();
			return false;
		}
		attached[nattached].disk = d;
		attached[nattached].read_only = o->disks[i].read_only;
		paths[nattached] = o->disks[i].path;
		nattached++;
	}
	if (nattached)
		atexit(worker_detach_disks);
	return true;
}

bool worker_attach_disks(struct vmbus_host *h, char *err, size_t errlen)
{
	for (unsigned i = 0; i < nattached; i++) {
		struct vdisk_info info;
		if (vdisk_info(attached[i].disk, &info) == 0)
			vlog("storvsp: LUN %u: %s (%s %s, %llu bytes, sectors %u/%u%s)", i, paths[i],
			     vdisk_format_name(info.format), vdisk_type_name(info.type),
			     (unsigned long long)info.size, info.logical_sector, info.physical_sector,
			     attached[i].read_only ? ", read-only" : "");
	}
	if (!nattached)
		return true;
	struct storvsp_host host = {
		.gpa_to_hva = vmbus_host_gpa_to_hva, .grant = h->hv->platform.grant ? vmbus_host_grant : NULL,
		.opaque = h, .lock = &h->lock,
		.nthreads = STORVSP_IO_THREADS,
	};
	pthread_mutex_lock(&h->lock);
	controller = storvsp_new(h->server, &host, attached, nattached, 0, err, errlen);
	pthread_mutex_unlock(&h->lock);
	return controller != NULL;
}

int worker_disks_quiesce(unsigned timeout_ms)
{
	if (controller && storvsp_drain(controller, timeout_ms) < 0)
		return -ETIMEDOUT; /* storvsp_drain said why */
	for (unsigned i = 0; i < nattached; i++) {
		if (!attached[i].read_only && vdisk_flush(attached[i].disk) < 0)
			return state_fail(-EIO, "cannot flush disk %s: %s", paths[i], vdisk_last_error());
	}
	return 0;
}
