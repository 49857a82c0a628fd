/* Attaching the VM's disks (--disk) to the synthetic SCSI controller (storvsp). */
#ifndef VIRIDIAN_WORKER_STORAGE_H
#define VIRIDIAN_WORKER_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/options.h"
#include "worker/vmbus_host.h"

/* Opens every disk and DVD drive ISO in o (before the VM exists, so a bad disk is refused without KVM).
 * Returns false with a message naming the disk and the problem. They are closed at exit. */
bool worker_open_disks(const struct worker_options *o, char *err, size_t errlen);
/* Offers the controller with the opened disks on h's VMBus before the guest starts. */
bool worker_attach_disks(struct vmbus_host *h, char *err, size_t errlen);
/* Saved state: waits (vCPUs paused, h->lock not held) until the controller has no request in
 * flight, then flushes every writable disk, so that the saved RAM and the disks agree and no
 * acknowledged write is only in a cache. 0, or a negative errno after state_fail(): -EBUSY
 * while a disk merge runs. */
int worker_disks_quiesce(unsigned timeout_ms);
/* Live migration, after worker_disks_quiesce(): drops (on false) or takes back (on true) every
 * disk's lock so that the destination's worker can open them. 0, or a negative errno after
 * state_fail() (taking back: another process still holds one; the others stay locked). */
int worker_disks_lock(bool on);
/* Stops the controller's I/O threads and closes (flushes) the disks: at exit, or after the VM
 * (whose channel close waits for the controller's disk work) is destroyed. A second call does
 * nothing. */
void worker_detach_disks(void);

struct vm;
/* disk-switch (control.h): pauses the VM if it runs, waits until LUN lun has no request in
 * flight, flushes its image, opens path read-write in its place (same size and logical sector
 * size), closes the old one and resumes. 0 with the pause's length in *pause_ms, or a negative
 * errno with one line in err and the LUN on its old image. Main thread only. */
int worker_disk_switch(struct vm *vm, unsigned lun, const char *path, uint64_t *pause_ms, char *err, size_t errlen);

/* disk-merge (control.h): LUN lun's image must be a writable differencing disk. Starts merging
 * it into its parent while the guest runs (vdisk_mirror, after a short pause to put the mirror
 * in place) and returns; worker_disk_status tells progress. 0, or a negative errno with one
 * line in err (not differencing, read-only, a merge already running). Main thread only. */
int worker_disk_merge(struct vm *vm, unsigned lun, char *err, size_t errlen);
/* Main loop: a merge whose copy pass ended is pivoted (VM paused briefly: the LUN goes to the
 * parent, the child is closed) or, after a failure, the LUN goes back to the child. */
void worker_disks_tick(struct vm *vm);

/* disk-limits (control.h): storage QoS of disk LUN lun from now on (storvsp_set_limits: at most
 * iops normalized 8 KiB operations and bytes_per_s per second; 0 lifts one); a guest reset's
 * re-exec keeps them. 0, or a negative errno with one line in err. Main thread only. */
int worker_disk_limits(unsigned lun, uint64_t iops, uint64_t bytes_per_s, char *err, size_t errlen);

/* dvd-change (control.h): puts the ISO at path (NULL: none) in DVD drive lun, even if the guest
 * locked the tray (the host's change wins, as in Hyper-V); the guest sees a media change. 0, or
 * a negative errno with one line in err and the drive as it was. Main thread only. */
int worker_dvd_change(unsigned lun, const char *path, char *err, size_t errlen);

struct worker_disk_status {
	const char *path;        /* the image the LUN uses now (valid until the next switch); NULL:
				  * a DVD drive with no disc (empty, or the guest ejected it) */
	bool read_only;
	bool dvd;
	const char *merge;       /* NULL (none since start), "running", "done" or "failed" */
	unsigned merge_percent;
	const char *merge_error; /* "" unless failed */
	uint64_t pivot_pause_ms; /* done: how long the pivot paused the VM */
	uint64_t max_iops, max_bytes_per_s; /* storage QoS limits; 0: none */
};
unsigned worker_disk_count(void);
struct storvsp_stats;
/* The controller's counters since the worker started (false: it has no disks). */
bool worker_storage_stats(struct storvsp_stats *out);
bool worker_disk_status(unsigned lun, struct worker_disk_status *out);
/* Before the re-exec of a guest reset: points each --disk in argv at the LUN's current image. */
void worker_disks_exec_argv(char **argv);

#endif
