/* What the files of vmms share among themselves (util.c: shared helpers, service.c: VM
 * configuration and the request dispatch, lifecycle.c: workers and power states, network.c:
 * virtual switches and network adapters). Not a public interface. */
#ifndef VIRIDIAN_VMMS_INTERNAL_H
#define VIRIDIAN_VMMS_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmms/service.h"
#include "vmms/vmconfig.h"

int64_t mono_ms(void);
int64_t vmms_unix_ms(void); /* wall clock, Unix ms (jobs, checkpoints' times) */
/* A request that started a job: {"ok":true,"job":ID,"job_state":S}, or the failed job's error. */
json_t *vmms_job_reply(const struct vmms_job *j);
/* {"ok":false,"error":...} with Hyper-V's error id when id is not 0. */
json_t *err_reply(int id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The VM's state refuses the operation: error 32788. */
json_t *conflict(const struct inv_vm *vm, const char *what);
void new_guid(char out[37]);
int mkdir_p(const char *path);
uint64_t proc_field(pid_t pid, int field); /* 1-based field of /proc/PID/stat; 0 when gone */
uint64_t proc_start(pid_t pid);        /* /proc/PID/stat field 22; 0 when gone */
bool proc_is_zombie(pid_t pid);
int pidfd_open_(pid_t pid);
/* One JSON line to a control socket (a worker's or a switch's); NULL when it does not answer. */
json_t *worker_call(const char *path, const char *line, int timeout_ms);
json_t *worker_vm_call(const struct inv_vm *vm, const char *line, int timeout_ms);
void worker_sock_path(const struct inv_vm *vm, char *out, size_t len); /* <VM folder>/worker.sock */
bool file_readable(const char *p);     /* a regular file we may read */
/* A Saved VM's state: <VM folder>/<VM id>.vmrs (what vmwp --restore reads). */
void vmms_saved_state_path(const struct inv_vm *vm, char *out, size_t len);
/* The VM a request names ("vm"); NULL and *vm filled, or an error reply. */
json_t *find_vm(struct vmms *s, json_t *req, struct inv_vm *vm);
/* A path the caller named, resolved with the caller's rights (vmms/caller.c) into buf: a file
 * (VMMS_CALLER_READ/WRITE) or, for VMMS_CALLER_DIR, the nearest folder of path that exists (what
 * vmms would create things in; path itself is returned). NULL with the reason in *reply. */
const char *vmms_caller_path(struct vmms *s, const char *path, int mode, const char *what, char *buf, size_t len,
			     json_t **reply);
const char *jstr(json_t *req, const char *key);
/* A cmdlet's -Name against an object: NULL matches everything; else the name (any case), a
 * wildcard pattern (* ? [...], any case) or, when id is not NULL, the object's GUID. */
bool vmms_name_matches(const char *pattern, const char *name, const char *id);
/* A -Name that matched nothing is an error unless it was a wildcard pattern (as in Hyper-V). */
bool vmms_name_is_pattern(const char *pattern);
/* The last non-empty line of a log file, "" if none. */
void vmms_log_tail_line(const char *path, char *out, size_t len);
bool jint(json_t *req, const char *key, json_int_t *out);
/* VIRIDIAN_VMMS_CRASH_AT=STEP: vmms exits at once at that step (tests of the journal). */
void vmms_crash_point(const char *step);
/* An event in the VM's log (and vmms's stderr). */
void vm_event(struct vmms *s, const char *vm_id, const char *level, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Sets the VM's operation state, its power state and worker kept. */
int vm_set_op(struct vmms *s, const char *vm_id, enum vm_opstate op);
/* A request object to the VM's worker (req is consumed); NULL when it does not answer. */
json_t *worker_vm_request(const struct inv_vm *vm, json_t *req, int timeout_ms);
const char *worker_error(json_t *r); /* a failed worker reply's reason, in words */

/* chaincopy.c: copying a VM's files. A file in bounded steps, holes kept, to "<dst>.partial"
 * renamed at the end: */
struct vmms_fcopy {
	int in, out;
	uint64_t off, size, done;   /* done: data bytes copied so far */
	char *buf;
	char src[PATH_MAX], dst[PATH_MAX], tmp[PATH_MAX + 16];
};
/* The source must be a regular file (not a link); the destination must not exist unless replace. */
int vmms_fcopy_open(struct vmms_fcopy *c, const char *src, const char *dst, bool replace, char *err, size_t errlen);
/* Copies up to max bytes: 1 more to do, 0 done (fsynced, renamed), -1 failed (cleaned up). */
int vmms_fcopy_step(struct vmms_fcopy *c, uint64_t max, char *err, size_t errlen);
void vmms_fcopy_abort(struct vmms_fcopy *c); /* the partial copy is deleted */
int vmms_copy_file(const char *from, const char *to, char *err, size_t errlen); /* whole, at once; replaces to */
int vmms_fsync_dir(const char *path);
/* A set of files; an image's parent (another item's index, -1: none) is relinked to its copy
 * once every file is copied. */
struct vmms_copy_item {
	char src[PATH_MAX], dst[PATH_MAX];
	int parent;
	uint64_t size;
	bool copied;
};
struct vmms_copyset {
	struct vmms_copy_item *f;
	int n, cur;
	bool open;
	struct vmms_fcopy fc;
	uint64_t total, done;
};
int vmms_copyset_add(struct vmms_copyset *cs, const char *src, const char *dst, int parent); /* index or -1 */
/* Up to max bytes: 1 more to do, 0 all copied and relinked, -1 failed (err). */
int vmms_copyset_step(struct vmms_copyset *cs, uint64_t max, char *err, size_t errlen);
int vmms_copyset_percent(const struct vmms_copyset *cs);
void vmms_copyset_free(struct vmms_copyset *cs, bool remove_copies);
/* Every image of a VM's chains: its drives, its checkpoints' frozen disks and their ancestors
 * (parents before their use is not promised: follow parent). */
struct vmms_chain_image {
	char path[PATH_MAX];
	int parent;             /* index, -1 for a base disk */
	bool owned;             /* the inventory's images: vmms created it */
};
struct vmms_chain {
	int n;
	struct vmms_chain_image img[VMCFG_MAX_IMAGES];
};
int vmms_chain_load(struct vmms *s, const struct inv_vm *vm, const struct inv_checkpoint *cps, int ncp,
		    struct vmms_chain *c, char *err, size_t errlen);

/* service.c */
const char *vmms_ic_worker_name(int i); /* vmwp's --disable-ic name of INV_IC_* i */

/* lifecycle.c */
struct vmms_worker *worker_of(struct vmms *s, const char *id);
/* Start/Stop/Suspend/Resume/Save-VM, Remove-VMSavedState; NULL when op is not one of them. */
json_t *vmms_lifecycle_request(struct vmms *s, const char *op, json_t *req);
/* At start: re-attaches to the workers that outlived the last vmms; after a host restart,
 * applies the automatic start actions. */
void vmms_reattach(struct vmms *s);

/* checkpoints.c: Checkpoint-VM, Get-/Rename-/Restore-/Remove-VMCheckpoint and the journal */
/* A checkpoint request; NULL when op is not one of them. */
json_t *vmms_checkpoint_request(struct vmms *s, const char *op, json_t *req);
/* At start, after re-attaching: finishes or rolls back what a dead vmms left in the journal. */
void vmms_checkpoints_recover(struct vmms *s);
/* Does the journal hold an unfinished operation of the VM (no automatic start then)? */
bool vmms_checkpoints_journaled(struct vmms *s, const char *vm_id);
/* The main loop's turn: jobs advance, merges left pending start once their VM allows. */
void vmms_checkpoints_tick(struct vmms *s);
/* The VM's worker is gone: an apply waiting for it goes on, pending merges may run. */
void vmms_checkpoints_vm_off(struct vmms *s, const char *vm_id);

/* tokens.c: New-/Get-/Remove-VMManagementToken and vmmsweb's check-token; NULL when op is
 * not one of them. */
json_t *vmms_token_request(struct vmms *s, const char *op, json_t *req);
/* export.c: Export-VM, Import-VM, Compare-VM */
json_t *vmms_export_request(struct vmms *s, const char *op, json_t *req); /* NULL: not one of them */
/* A journal entry of an export or import a dead vmms left: cleaned up. false: not one of them. */
bool vmms_export_recover(struct vmms *s, const struct inv_journal *e);
/* Deletes a folder vmms made and what is in it (no links followed). */
int vmms_remove_tree(const char *path);

/* storage_move.c: Move-VMStorage */
json_t *vmms_storage_move_request(struct vmms *s, const char *op, json_t *req); /* NULL: not it */
/* A journal entry of a storage move a dead vmms left: finished or undone. false: not one. */
bool vmms_storage_move_recover(struct vmms *s, const struct inv_journal *e);

/* guest_files.c: Copy-VMFile */
json_t *vmms_guest_files_request(struct vmms *s, const char *op, json_t *req); /* NULL: not it */

/* merge.c: folding images no one needs out of a VM's chains (include/vmms/cptree.h) */
/* Starts the VM's merge job when there is something to do now; the job, or NULL. announce:
 * images that must wait (merge pending) are said in the event log. */
struct vmms_job *vmms_merge_start(struct vmms *s, const char *vm_id, bool announce);
/* A journal entry of a fold or live merge a dead vmms left: finished, undone or resumed. */
void vmms_merge_recover(struct vmms *s, const struct inv_journal *j);

/* dvd.c */
/* Add-/Get-/Set-/Remove-VMDvdDrive; NULL when op is not one of them. */
json_t *vmms_dvd_request(struct vmms *s, const char *op, json_t *req);
/* Resource metering (metering.c): "enable-metering", "disable-metering", "reset-metering",
 * "measure"; NULL for other ops. vmms_metering_tick samples the metered running VMs. */
json_t *vmms_metering_request(struct vmms *s, const char *op, json_t *req);
void vmms_metering_tick(struct vmms *s);
/* Set-VMProcessor (processor.c): "set-processor"; NULL for other ops. */
json_t *vmms_processor_request(struct vmms *s, const char *op, json_t *req);
/* Get-VM's "processor": count, maximum, reserve, relative_weight (Hyper-V's defaults filled in). */
json_t *vmms_processor_json(const struct inv_vm *vm);
/* -Maximum and -RelativeWeight with Hyper-V's defaults (100, 100) for the inventory's 0. */
int vmms_cpu_maximum(const struct inv_vm *vm);
int vmms_cpu_weight(const struct inv_vm *vm);
/* Before a start: NULL if the VM's processor reserve fits the host beside the running VMs,
 * its cgroup (limits set) in cgroup ("" when none could be made), *required when the worker
 * must run in it (limits other than the defaults); else the refusal. */
json_t *vmms_processor_prepare(struct vmms *s, const struct inv_vm *vm, char *cgroup, size_t len, bool *required);
/* The VM's worker is gone: its cgroup goes. */
void vmms_processor_release(struct vmms *s, const char *vm_id);
/* Set-VMHardDiskDrive (disk_qos.c): "set-disk"; NULL for other ops. */
json_t *vmms_disk_qos_request(struct vmms *s, const char *op, json_t *req);
/* A hard disk drive as the disk requests answer it (Add/Set/Remove-VMHardDiskDrive). */
json_t *vmms_disk_json(const struct inv_vm *vm, const struct inv_disk *d);
/* The hard disk drive a request names ("lun" with "controller", or "path"): its index in
 * vm->disks, or -1 with the refusal in *reply. */
int vmms_find_disk(const struct inv_vm *vm, json_t *req, json_t **reply);
/* Is SCSI controller:lun of the VM taken by a disk or a DVD drive? */
bool vmms_location_used(const struct inv_vm *vm, int controller, int lun);

/* network.c */
/* A dynamic MAC: Hyper-V's OUI 00:15:5D and three random bytes no adapter in the inventory has. */
bool vmms_new_mac(struct vmms *s, char out[13]);
#define VMMS_NIC_ARG_MAX 300
/* A request about switches or network adapters; NULL when op is not one of them. */
json_t *vmms_net_request(struct vmms *s, const char *op, json_t *req);
/* vmwp's --nic values for the VM's adapters, in slot order; the count, or -1 with err. */
int vmms_nic_args(struct vmms *s, const struct inv_vm *vm, char out[][VMMS_NIC_ARG_MAX], char *err, size_t errlen);
/* At start: re-attaches to the switch processes that outlived the last vmms and starts the
 * others (all of them after a host restart). */
void vmms_switches_attach(struct vmms *s, bool host_restarted);
void vmms_switches_reap(struct vmms *s);   /* switch processes that exited: restart later */
void vmms_switches_tick(struct vmms *s);   /* restarts due, readiness */
void vmms_switches_fini(struct vmms *s);   /* forgets them; the processes keep running */

#endif
