/* Disk attachment: every --disk is opened with the vhd library (read-only with ,ro), every --dvd
 * ISO as a raw read-only file, and each becomes the next LUN of one synthetic SCSI controller
 * (storvsp), offered on the VMBus before the guest starts. At exit the I/O threads are stopped
 * and the images closed (which flushes them). */
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/savedstate.h"
#include "vhd/vdisk.h"
#include "vsp/io_limit.h"
#include "vsp/storvsp.h"
#include "worker/clock.h"
#include "worker/log.h"
#include "worker/sandbox.h"
#include "worker/storage.h"
#include "worker/vm.h"

#define STORVSP_IO_THREADS 8
#define SWAP_TIMEOUT_MS 10000 /* the vCPUs are paused: requests in flight finish in far less */

static struct storvsp *controller;
static struct storvsp_disk attached[WORKER_MAX_DISKS];
/* Per LUN: the image's path as status shows it and a re-exec opens it (the --disk value, or
 * what a disk-switch or merge put there), and the --disk value in argv. */
static char *paths[WORKER_MAX_DISKS];
static const char *args[WORKER_MAX_DISKS];
/* Per LUN: its storage QoS limits now (--disk ,iops= ,bw=, or disk-limits since). */
static uint64_t max_iops[WORKER_MAX_DISKS], max_bytes_per_s[WORKER_MAX_DISKS];
static unsigned nattached;

/* A live merge of a LUN's differencing disk into its parent: a thread runs the mirror's copy
 * pass (the mirror serves the LUN meanwhile); the main thread pivots once it has ended. */
enum merge_state { MERGE_RUNNING, MERGE_COPIED, MERGE_DONE, MERGE_FAILED };
struct merge {
	pthread_t thread;
	struct vdisk *mirror;
	enum merge_state state;  /* atomic: the thread moves RUNNING -> COPIED, the main thread on */
	unsigned percent;        /* atomic */
	bool stop;               /* atomic: the worker is going away */
	int rc;                  /* the copy pass's result, with error; read after COPIED */
	char error[256];
	uint64_t pivot_pause_ms;
	bool joined;             /* main thread: the thread is joined */
};
static struct merge *merges[WORKER_MAX_DISKS];

static enum merge_state merge_state(const struct merge *m)
{
	return __atomic_load_n(&m->state, __ATOMIC_ACQUIRE);
}

static bool merge_busy(unsigned lun)
{
	return merges[lun] && merge_state(merges[lun]) <= MERGE_COPIED;
}

/* A merge still running stops; closing its mirror leaves the child, which reads as before. */
static void stop_merges(void)
{
	for (unsigned i = 0; i < nattached; i++) {
		if (!merges[i])
			continue;
		if (merge_state(merges[i]) <= MERGE_COPIED) {
			__atomic_store_n(&merges[i]->stop, true, __ATOMIC_RELEASE);
			if (!merges[i]->joined)
				pthread_join(merges[i]->thread, NULL);
			vlog("storvsp: LUN %u: merge of %s stopped (the worker is going away)", i, paths[i]);
		}
		free(merges[i]);
		merges[i] = NULL;
	}
}

void worker_detach_disks(void)
{
	stop_merges();
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

/* A DVD's disc: the ISO opened raw and read-only, with its size. Returns 0 or a negative errno
 * with one line in err. */
static int open_iso(const char *path, struct vdisk **out, uint64_t *bytes, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file (an ISO image is needed)", path);
		return -EINVAL;
	}
	int rc = vdisk_open(path, VDISK_OPEN_RAW, out);
	if (rc < 0) {
		snprintf(err, errlen, "%s", vdisk_last_error());
		return rc;
	}
	*bytes = (uint64_t)st.st_size;
	return 0;
}

bool worker_open_disks(const struct worker_options *o, char *err, size_t errlen)
{
	for (unsigned i = 0; i < o->ndisks; i++) {
		struct vdisk *d = NULL;
		uint64_t bytes = 0;
		if (o->disks[i].dvd) {
			char e[300];
			if (o->disks[i].path[0] && open_iso(o->disks[i].path, &d, &bytes, e, sizeof(e)) < 0) {
				snprintf(err, errlen, "--dvd %s", e);
				worker_detach_disks();
				return false;
			}
		} else if (vdisk_open(o->disks[i].path, o->disks[i].read_only ? 0 : VDISK_OPEN_RDWR, &d) < 0) {
			snprintf(err, errlen, "--disk %s: %s", o->disks[i].path, vdisk_last_error());
			worker_detach_disks();
			return false;
		}
		attached[nattached].disk = d;
		attached[nattached].read_only = o->disks[i].read_only;
		attached[nattached].dvd = o->disks[i].dvd;
		attached[nattached].media_bytes = bytes;
		paths[nattached] = strdup(o->disks[i].path);
		args[nattached] = o->disks[i].arg;
		max_iops[nattached] = o->disks[i].max_iops;
		max_bytes_per_s[nattached] = o->disks[i].max_bytes_per_s;
		if (!paths[nattached]) {
			if (d)
				vdisk_close(d);
			snprintf(err, errlen, "out of memory");
			worker_detach_disks();
			return false;
		}
		nattached++;
	}
	if (nattached)
		atexit(worker_detach_disks);
	return true;
}

static void storage_io_thread_start(void)
{
	sandbox_thread(SANDBOX_IO);
}

bool worker_attach_disks(struct vmbus_host *h, char *err, size_t errlen)
{
	for (unsigned i = 0; i < nattached; i++) {
		struct vdisk_info info;
		if (attached[i].dvd)
			vlog("storvsp: LUN %u: DVD drive, %s%s (%llu bytes)", i, paths[i][0] ? "disc " : "empty", paths[i],
			     (unsigned long long)attached[i].media_bytes);
		else if (vdisk_info(attached[i].disk, &info) == 0)
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
		.nthreads = STORVSP_IO_THREADS, .thread_start = storage_io_thread_start,
	};
	pthread_mutex_lock(&h->lock);
	controller = storvsp_new(h->server, &host, attached, nattached, 0, err, errlen);
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; controller && i < nattached; i++) {
		if (!max_iops[i] && !max_bytes_per_s[i])
			continue; /* (a --dvd takes no flags: DVD drives have none) */
		storvsp_set_limits(controller, i, max_iops[i], max_bytes_per_s[i]); /* options.c checked the range */
		vlog("storvsp: LUN %u: at most %llu IOPS (8 KiB normalized), %llu bytes/s (0: no limit)", i,
		     (unsigned long long)max_iops[i], (unsigned long long)max_bytes_per_s[i]);
	}
	return controller != NULL;
}

int worker_disk_limits(unsigned lun, uint64_t iops, uint64_t bytes_per_s, char *err, size_t errlen)
{
	if (lun >= nattached || attached[lun].dvd) {
		snprintf(err, errlen, lun >= nattached ? "no LUN %u (the VM has %u disks)" : "LUN %u is a DVD drive", lun, nattached);
		return -EINVAL;
	}
	int rc = storvsp_set_limits(controller, lun, iops, bytes_per_s);
	if (rc < 0) {
		snprintf(err, errlen, rc == -ERANGE ? "at most %llu IOPS and %llu bytes/s" : "the controller refused the limits",
			 IO_LIMIT_MAX_IOPS, IO_LIMIT_MAX_BYTES_PER_S);
		return rc;
	}
	max_iops[lun] = iops;
	max_bytes_per_s[lun] = bytes_per_s;
	vlog("storvsp: LUN %u: at most %llu IOPS (8 KiB normalized), %llu bytes/s (0: no limit)", lun,
	     (unsigned long long)iops, (unsigned long long)bytes_per_s);
	return 0;
}

int worker_disks_quiesce(unsigned timeout_ms)
{
	for (unsigned i = 0; i < nattached; i++)
		if (merge_busy(i)) /* the saved disks would be neither the child nor the parent */
			return state_fail(-EBUSY, "a disk merge is running (LUN %u)", i);
	if (controller && storvsp_drain(controller, timeout_ms) < 0)
		return -ETIMEDOUT; /* storvsp_drain said why */
	for (unsigned i = 0; i < nattached; i++) {
		if (!attached[i].read_only && vdisk_flush(attached[i].disk) < 0)
			return state_fail(-EIO, "cannot flush disk %s: %s", paths[i], vdisk_last_error());
	}
	return 0;
}

int worker_disks_lock(bool on)
{
	for (unsigned i = 0; i < nattached; i++) {
		if (vdisk_lock(attached[i].disk, on) < 0)
			return state_fail(-EBUSY, "disk %s: %s", paths[i], vdisk_last_error());
	}
	return 0;
}

/* ---- disk-switch ---- */

struct switch_ctx {
	const char *path;
	struct vdisk *old, *new;
	char *err;
	size_t errlen;
};

static bool same_geometry(struct vdisk *a, struct vdisk *b)
{
	struct vdisk_info ia, ib;
	return vdisk_info(a, &ia) == 0 && vdisk_info(b, &ib) == 0 && ia.size == ib.size &&
	       ia.logical_sector == ib.logical_sector;
}

/* Under the VMBus lock with nothing in flight (storvsp_swap_disk). */
static struct vdisk *switch_to(void *arg, struct vdisk *old)
{
	struct switch_ctx *c = arg;
	/* The new image is usually old's child: its chain reads old's metadata from the file. */
	if (vdisk_flush(old) < 0) {
		snprintf(c->err, c->errlen, "cannot flush the current disk: %s", vdisk_last_error());
		return NULL;
	}
	struct vdisk *d;
	if (vdisk_open(c->path, VDISK_OPEN_RDWR, &d) < 0) {
		snprintf(c->err, c->errlen, "%s", vdisk_last_error());
		return NULL;
	}
	if (!same_geometry(old, d)) {
		vdisk_close(d);
		snprintf(c->err, c->errlen, "%s: its size or logical sector size differs from the current disk's", c->path);
		return NULL;
	}
	c->old = old;
	c->new = d;
	return d;
}

/* Runs swap on LUN lun with the VM paused; the pause's length in *pause_ms. */
static int swap_paused(struct vm *vm, unsigned lun, struct vdisk *(*swap)(void *, struct vdisk *), void *ctx,
		       uint64_t *pause_ms, char *err, size_t errlen)
{
	uint64_t t0 = monotonic_ns();
	bool was_paused = vm_is_paused(vm);
	if (!vm_pause(vm)) {
		snprintf(err, errlen, "the VM is stopping");
		return -ESHUTDOWN;
	}
	int rc = storvsp_swap_disk(controller, lun, swap, ctx, SWAP_TIMEOUT_MS);
	if (rc < 0)
		snprintf(err, errlen, "LUN %u: disk requests still in flight after %u ms", lun, SWAP_TIMEOUT_MS);
	if (!was_paused)
		vm_resume(vm);
	*pause_ms = (monotonic_ns() - t0) / 1000000;
	return rc;
}

static bool lun_writable(unsigned lun, char *err, size_t errlen)
{
	if (!controller || lun >= nattached) {
		snprintf(err, errlen, "no LUN %u (the VM has %u disks)", lun, nattached);
		return false;
	}
	if (attached[lun].dvd || attached[lun].read_only) {
		snprintf(err, errlen, "LUN %u is %s", lun, attached[lun].dvd ? "a DVD drive" : "read-only");
		return false;
	}
	return true;
}

int worker_disk_switch(struct vm *vm, unsigned lun, const char *path, uint64_t *pause_ms, char *err, size_t errlen)
{
	size_t len = strlen(path);
	if (!len || len >= sizeof(((struct worker_disk *)0)->path) || worker_disk_flag_suffix(path)) {
		/* the re-exec's --disk would read the end as a flag (",ro" as read-only) */
		snprintf(err, errlen, "\"path\" must be an image path (not ending in \",ro\", \",iops=N\" or \",bw=N\") "
			 "shorter than 4096 bytes");
		return -EINVAL;
	}
	if (!lun_writable(lun, err, errlen))
		return -EINVAL;
	if (merge_busy(lun)) {
		snprintf(err, errlen, "a disk merge is running on LUN %u", lun);
		return -EBUSY;
	}
	char *copy = strdup(path);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	err[0] = '\0';
	struct switch_ctx c = { .path = path, .err = err, .errlen = errlen };
	int rc = swap_paused(vm, lun, switch_to, &c, pause_ms, err, errlen);
	if (rc == 0 && !c.old)
		rc = -EIO; /* switch_to said why */
	if (rc < 0) {
		free(copy);
		return rc;
	}
	attached[lun].disk = c.new;
	if (vdisk_close(c.old) < 0)
		vlog("storvsp: LUN %u: closing %s: %s", lun, paths[lun], vdisk_last_error());
	vlog("storvsp: LUN %u: %s -> %s (paused %llu ms)", lun, paths[lun], copy, (unsigned long long)*pause_ms);
	free(paths[lun]);
	paths[lun] = copy;
	return 0;
}

unsigned worker_disk_count(void)
{
	return nattached;
}

bool worker_storage_stats(struct storvsp_stats *out)
{
	if (!controller)
		return false;
	storvsp_get_stats(controller, out);
	return true;
}

bool worker_disk_status(unsigned lun, struct worker_disk_status *out)
{
	if (lun >= nattached)
		return false;
	*out = (struct worker_disk_status){ .path = paths[lun], .read_only = attached[lun].read_only,
					    .dvd = attached[lun].dvd, .max_iops = max_iops[lun],
					    .max_bytes_per_s = max_bytes_per_s[lun] };
	if (attached[lun].dvd && (!controller || !storvsp_dvd_loaded(controller, lun)))
		out->path = NULL; /* empty, or the guest ejected the disc */
	struct merge *m = merges[lun];
	if (m) {
		enum merge_state st = merge_state(m);
		out->merge = st == MERGE_DONE ? "done" : st == MERGE_FAILED ? "failed" : "running";
		out->merge_percent = __atomic_load_n(&m->percent, __ATOMIC_RELAXED);
		out->merge_error = st == MERGE_FAILED ? m->error : "";
		out->pivot_pause_ms = m->pivot_pause_ms;
	}
	return true;
}

void worker_disks_exec_argv(char **argv)
{
	for (unsigned i = 0; i < nattached; i++) {
		if (!args[i])
			continue;
		/* The argv element holding the --disk value: the value itself, or "--disk=VALUE". */
		for (int k = 0; argv[k]; k++) {
			uintptr_t a = (uintptr_t)args[i], b = (uintptr_t)argv[k];
			if (a < b || a > b + strlen(argv[k]))
				continue;
			char *v;
			struct worker_disk_status st;
			char qos[64] = "";
			if (max_iops[i] || max_bytes_per_s[i])
				snprintf(qos, sizeof(qos), ",iops=%llu,bw=%llu", (unsigned long long)max_iops[i],
					 (unsigned long long)max_bytes_per_s[i]);
			int rc = !attached[i].dvd ? asprintf(&v, "%s%s%s%s", a == b ? "" : "--disk=", paths[i],
							     attached[i].read_only ? ",ro" : "", qos)
			       : worker_disk_status(i, &st) ? asprintf(&v, "%s%s", a == b ? "" : "--dvd=", st.path ? st.path : "")
			       : -1;
			if (rc >= 0)
				argv[k] = v; /* exec'd right away: never freed */
			break;
		}
	}
}

/* ---- dvd-change ---- */

int worker_dvd_change(unsigned lun, const char *path, char *err, size_t errlen)
{
	if (!controller || lun >= nattached || !attached[lun].dvd) {
		snprintf(err, errlen, "LUN %u is not a DVD drive", lun);
		return -EINVAL;
	}
	if (path && (!path[0] || strlen(path) >= sizeof(((struct worker_disk *)0)->path))) {
		snprintf(err, errlen, "\"path\" must be an ISO file's path shorter than 4096 bytes, or null to eject");
		return -EINVAL;
	}
	struct vdisk *d = NULL, *old;
	uint64_t bytes = 0;
	int rc = path ? open_iso(path, &d, &bytes, err, errlen) : 0;
	char *copy = strdup(path ? path : "");
	if (rc == 0 && !copy) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	}
	if (rc == 0 && (rc = storvsp_dvd_change(controller, lun, d, bytes, &old, SWAP_TIMEOUT_MS)) < 0)
		snprintf(err, errlen, "LUN %u: requests still in flight after %u ms", lun, SWAP_TIMEOUT_MS);
	if (rc < 0) {
		if (d)
			vdisk_close(d);
		free(copy);
		return rc;
	}
	if (old)
		vdisk_close(old);
	vlog("storvsp: LUN %u: DVD %s -> %s", lun, paths[lun][0] ? paths[lun] : "(empty)", path ? path : "(empty)");
	attached[lun].disk = d;
	attached[lun].media_bytes = bytes;
	free(paths[lun]);
	paths[lun] = copy;
	return 0;
}

/* ---- disk-merge ---- */

static int merge_progress(uint64_t done, uint64_t total, void *arg)
{
	struct merge *m = arg;
	__atomic_store_n(&m->percent, (unsigned)(done * 100 / total), __ATOMIC_RELAXED);
	return __atomic_load_n(&m->stop, __ATOMIC_ACQUIRE) ? -ECANCELED : 0;
}

static void *merge_main(void *arg)
{
	struct merge *m = arg;
	m->rc = vdisk_mirror_copy(m->mirror, merge_progress, m);
	if (m->rc < 0)
		snprintf(m->error, sizeof(m->error), "%s", vdisk_last_error());
	__atomic_store_n(&m->state, MERGE_COPIED, __ATOMIC_RELEASE);
	return NULL;
}

struct mirror_ctx {
	struct vdisk *parent, *child; /* what the LUN has after the swap */
	char *err;
	size_t errlen;
};

/* Swap callbacks (under the VMBus lock, nothing in flight). */
static struct vdisk *start_mirror(void *arg, struct vdisk *child)
{
	struct mirror_ctx *c = arg;
	if (vdisk_mirror_start(child, &c->child) < 0)
		snprintf(c->err, c->errlen, "%s", vdisk_last_error());
	return c->child; /* the mirror */
}

static struct vdisk *back_to_child(void *arg, struct vdisk *mirror)
{
	struct mirror_ctx *c = arg;
	if (vdisk_mirror_abort(mirror, &c->child) < 0) /* the child is back either way */
		vlog("storvsp: %s", vdisk_last_error());
	return c->child;
}

static struct vdisk *pivot(void *arg, struct vdisk *mirror)
{
	struct mirror_ctx *c = arg;
	if (vdisk_mirror_finish(mirror, &c->parent) == 0)
		return c->parent;
	snprintf(c->err, c->errlen, "%s", vdisk_last_error());
	return back_to_child(arg, mirror);
}

int worker_disk_merge(struct vm *vm, unsigned lun, char *err, size_t errlen)
{
	if (!lun_writable(lun, err, errlen))
		return -EINVAL;
	if (merge_busy(lun)) {
		snprintf(err, errlen, "a disk merge is already running on LUN %u", lun);
		return -EBUSY;
	}
	struct vdisk_info info;
	if (vdisk_info(attached[lun].disk, &info) < 0 || info.type != VDISK_TYPE_DIFFERENCING) {
		snprintf(err, errlen, "LUN %u's disk %s is not a differencing disk", lun, paths[lun]);
		return -EINVAL;
	}
	struct merge *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	err[0] = '\0';
	struct mirror_ctx c = { .err = err, .errlen = errlen };
	uint64_t pause_ms;
	int rc = swap_paused(vm, lun, start_mirror, &c, &pause_ms, err, errlen);
	if (rc == 0 && !c.child)
		rc = -EIO; /* start_mirror said why */
	if (rc < 0) {
		free(m);
		return rc;
	}
	attached[lun].disk = m->mirror = c.child;
	if (pthread_create(&m->thread, NULL, merge_main, m)) {
		if (swap_paused(vm, lun, back_to_child, &c, &pause_ms, err, errlen) == 0)
			attached[lun].disk = c.child;
		free(m);
		snprintf(err, errlen, "cannot start the merge thread");
		return -EAGAIN;
	}
	free(merges[lun]);
	merges[lun] = m;
	vlog("storvsp: LUN %u: merging %s into %s (paused %llu ms)", lun, paths[lun], info.parent_path,
	     (unsigned long long)pause_ms);
	return 0;
}

void worker_disks_tick(struct vm *vm)
{
	for (unsigned i = 0; i < nattached; i++) {
		struct merge *m = merges[i];
		if (!m || merge_state(m) != MERGE_COPIED)
			continue;
		if (!m->joined) {
			pthread_join(m->thread, NULL);
			m->joined = true;
		}
		char err[256] = "";
		struct mirror_ctx c = { .err = err, .errlen = sizeof(err) };
		if (swap_paused(vm, i, m->rc == 0 ? pivot : back_to_child, &c, &m->pivot_pause_ms, err, sizeof(err)) < 0) {
			/* Requests stayed in flight (a wedged disk?): the mirror keeps serving; next tick. */
			vlog("storvsp: LUN %u: merge pivot: %s", i, err);
			continue;
		}
		if (c.parent) {
			char *parent = strdup(vdisk_path(c.parent));
			attached[i].disk = c.parent;
			vlog("storvsp: LUN %u: merged %s into %s (pivot paused %llu ms)", i, paths[i], vdisk_path(c.parent),
			     (unsigned long long)m->pivot_pause_ms);
			if (parent) {
				free(paths[i]);
				paths[i] = parent;
			}
			__atomic_store_n(&m->percent, 100, __ATOMIC_RELAXED);
			__atomic_store_n(&m->state, MERGE_DONE, __ATOMIC_RELEASE);
			continue;
		}
		attached[i].disk = c.child;
		if (m->rc == 0) /* the copy ended but finishing failed */
			snprintf(m->error, sizeof(m->error), "%s", err);
		vlog("storvsp: LUN %u: merge of %s failed: %s", i, paths[i], m->error);
		__atomic_store_n(&m->state, MERGE_FAILED, __ATOMIC_RELEASE);
	}
}
