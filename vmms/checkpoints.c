/* Checkpoints: Checkpoint-VM, Get-/Rename-/Restore-/Remove-VMCheckpoint (docs/vmms.md,
 * "Checkpoints"), and the journal that makes them survive a vmms crash at any step.
 *
 * Taking one freezes each of the VM's disks: the current image becomes the checkpoint's and a
 * new differencing child beside it (<base>_<GUID>.avhdx) becomes the VM's disk. A Standard
 * checkpoint of a running VM holds its saved state (the worker's {"op":"save"}, which leaves the
 * VM paused while the children are created and switched in: no guest write can fall between);
 * a Production one asks the guest to freeze through VSS instead and holds disks only. Applying
 * one gives the VM new children of the checkpoint's frozen disks (and a copy of its saved
 * state); removing one folds its frozen disks out of the chain (vmms/merge.c).
 *
 * Each multi-step operation is written to the inventory's journal before it acts and at each
 * step; the step that changes what the VM uses is one transaction with the journal's
 * "committed". vmms_checkpoints_recover() finishes what was committed and rolls back the rest. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vhd/vdisk.h"
#include "vmms/control_client.h"
#include "vmms/cptree.h"

#define VSS_TIMEOUT_MS 10000
#define OFF_TIMEOUT_MS 15000 /* Restore of a running VM: its worker turned off first */

/* A checkpoint's saved state: <VM folder>/Snapshots/<checkpoint id>.vmrs. */
static void cp_state_path(const struct inv_vm *vm, const char *cp_id, char *out, size_t len)
{
	snprintf(out, len, "%s/Snapshots/%s.vmrs", vm->path, cp_id);
}

static bool is_vhd_path(const char *p)
{
	const char *dot = strrchr(p, '.');
	return dot && (!strcasecmp(dot, ".vhd") || !strcasecmp(dot, ".vhdx") || !strcasecmp(dot, ".avhd") || !strcasecmp(dot, ".avhdx"));
}

/* Does an image hold data of its own (a child the guest wrote to)? */
static bool image_has_data(const char *path)
{
	struct vdisk *d;
	if (vdisk_open(path, 0, &d) < 0)
		return true; /* cannot tell: keep it */
	bool any = false;
	uint64_t size = vdisk_size(d);
	for (uint64_t off = 0, run; off < size && !any; off += run)
		if (vdisk_block_status(d, off, size - off, &any, &run) < 0 || !run)
			any = true;
	vdisk_close(d);
	return any;
}

static char *dump(json_t *o)
{
	char *t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return t;
}

/* The VM's checkpoints with their tree as indexes. */
struct cp_set {
	struct inv_checkpoint *cps;
	int n;
	int *parent;
};

static int cp_load(struct vmms *s, const char *vm_id, struct cp_set *set)
{
	memset(set, 0, sizeof(*set));
	if (inv_cp_list(s->inv, vm_id, &set->cps, &set->n) < 0)
		return -1;
	set->parent = calloc((size_t)(set->n ? set->n : 1), sizeof(int));
	if (!set->parent)
		return -1;
	for (int i = 0; i < set->n; i++) {
		set->parent[i] = -1;
		for (int k = 0; k < set->n; k++)
			if (!strcmp(set->cps[i].parent_id, set->cps[k].id))
				set->parent[i] = k;
	}
	return 0;
}

static void cp_unload(struct cp_set *set)
{
	inv_cp_free(set->cps, set->n);
	free(set->parent);
}

/* The one checkpoint named so (name or GUID); -1 with an error reply in *e. */
static int cp_by_name(const struct cp_set *set, const struct inv_vm *vm, const char *name, json_t **e)
{
	int found = -1, count = 0;
	for (int i = 0; name && i < set->n; i++)
		if (vmms_name_matches(name, set->cps[i].name, set->cps[i].id)) {
			found = i;
			count++;
		}
	if (!name)
		*e = err_reply(0, "name a checkpoint (-Name)");
	else if (!count)
		*e = err_reply(0, "'%s' has no checkpoint named '%s'", vm->name, name);
	else if (count > 1)
		*e = err_reply(0, "'%s' has %d checkpoints named '%s': name one by its id", vm->name, count, name);
	return count == 1 ? found : -1;
}

/* ---- Checkpoint-VM ---- */

struct take_ctx {
	char vm_id[37];
	int64_t jid;
	struct inv_checkpoint cp;       /* disks: the frozen images */
	char child[INV_MAX_DISKS][PATH_MAX];
	char state[PATH_MAX];           /* where a saved state goes */
	enum { T_VSS, T_VSS_WAIT, T_SAVE, T_SAVE_WAIT, T_DISKS } phase;
	bool live;                      /* a worker runs the VM */
	bool resume;                    /* it was Running: resumed once the disks are switched */
	bool production_only;
	bool frozen;                    /* the guest's file systems are frozen (VSS) */
	bool saved;                     /* copy the Saved VM's state */
	int save_fd;
	int64_t deadline_ms, paused_at_ms;
};

static void take_release(void *p)
{
	struct take_ctx *t = p;
	if (t->save_fd >= 0)
		close(t->save_fd);
	free(t->cp.state_file);
	for (int i = 0; i < t->cp.ndisks; i++)
		free(t->cp.disks[i].path);
	free(t);
}

static json_t *take_journal(const struct take_ctx *t)
{
	json_t *disks = json_array();
	for (int i = 0; i < t->cp.ndisks; i++)
		json_array_append_new(disks, json_pack("{s:i, s:s, s:s}", "index", i, "frozen", t->cp.disks[i].path, "child", t->child[i]));
	return json_pack("{s:s, s:s, s:s, s:I, s:i, s:I, s:s, s:b, s:b, s:b, s:o}", "cp", t->cp.id, "name", t->cp.name, "type",
			 t->cp.type, "created_ms", (json_int_t)t->cp.created_ms, "cpus", t->cp.cpus, "memory", (json_int_t)t->cp.memory,
			 "state", t->state, "live", t->live, "resume", t->resume, "vss", t->cp.type[0] == 'P' && t->live, "disks", disks);
}

static void worker_resume_thaw(const struct inv_vm *vm, bool resume, bool thaw)
{
	if (thaw)
		json_decref(worker_vm_call(vm, "{\"op\":\"vss-thaw\"}", 5000));
	if (resume)
		json_decref(worker_vm_call(vm, "{\"op\":\"resume\"}", 5000));
}

/* After a restart: the worker the save paused runs again, and the inventory says so (the
 * re-attach found it Paused). */
static void recover_resume(struct vmms *s, const struct inv_vm *vm, bool resume, bool thaw)
{
	worker_resume_thaw(vm, resume, thaw);
	struct vm_status st = { resume ? VM_RUNNING : vm->status.state, vm->status.op };
	if (resume && vm->status.state == VM_PAUSED)
		inv_set_status(s->inv, vm->id, st, vm->worker_pid, vm->worker_start, NULL, NULL);
}

static json_t *switch_disk(const struct inv_vm *vm, int index, const char *path)
{
	return worker_vm_request(vm, json_pack("{s:s, s:i, s:s}", "op", "disk-switch", "lun", index, "path", path), 30000);
}

/* Nothing of the checkpoint stays: the worker back on the frozen disks, the children and the
 * state deleted, the guest thawed and resumed as it was. */
static void take_undo(struct vmms *s, struct take_ctx *t, const struct inv_vm *vm, int switched)
{
	for (int i = 0; i < switched; i++)
		json_decref(switch_disk(vm, i, t->cp.disks[i].path));
	for (int i = 0; i < t->cp.ndisks; i++)
		unlink(t->child[i]);
	unlink(t->state);
	if (t->live)
		worker_resume_thaw(vm, t->resume, t->frozen);
	if (t->jid >= 0)
		inv_journal_drop(s->inv, t->jid);
	t->jid = -1;
}

/* The checkpoint and the VM's new disks, in one transaction with the journal's "committed". */
static int take_commit(struct vmms *s, struct take_ctx *t, struct inv_vm *vm, bool with_state)
{
	char msg[INV_NAME_MAX + 64];
	snprintf(msg, sizeof(msg), "checkpoint '%s' taken (%s)", t->cp.name, t->cp.type);
	char *keep[INV_MAX_DISKS];
	for (int i = 0; i < vm->ndisks; i++) {
		keep[i] = vm->disks[i].path;
		vm->disks[i].path = t->child[i];
	}
	snprintf(t->cp.parent_id, sizeof(t->cp.parent_id), "%s", vm->parent_checkpoint);
	snprintf(vm->parent_checkpoint, sizeof(vm->parent_checkpoint), "%s", t->cp.id);
	free(t->cp.state_file);
	t->cp.state_file = with_state ? strdup(t->state) : NULL;
	int r = inv_tx_begin(s->inv);
	for (int i = 0; r == 0 && i < t->cp.ndisks; i++)
		if (inv_image_put(s->inv, vm->id, t->cp.disks[i].path, NULL, false) < 0 ||
		    inv_image_put(s->inv, vm->id, t->child[i], t->cp.disks[i].path, true) < 0)
			r = -1;
	if (r == 0 && (inv_cp_insert(s->inv, &t->cp) < 0 || inv_update_event(s->inv, vm, msg) < 0 ||
		       inv_journal_step(s->inv, t->jid, "committed", NULL) < 0))
		r = -1;
	if (r == 0)
		r = inv_tx_commit(s->inv);
	else
		inv_tx_rollback(s->inv);
	for (int i = 0; i < vm->ndisks; i++)
		vm->disks[i].path = keep[i];
	return r;
}

static enum vmms_step take_fail(struct vmms *s, struct take_ctx *t, struct vmms_job *j, const struct inv_vm *vm, int switched,
				const char *why)
{
	take_undo(s, t, vm, switched);
	snprintf(j->error, sizeof(j->error), "'%.100s' was not checkpointed: %.380s", vm->name, why);
	vm_set_op(s, t->vm_id, VM_OPS_NONE);
	vm_event(s, t->vm_id, "Error", "%s", j->error);
	return VMMS_STEP_FAILED;
}

/* The children created, switched in (live), the checkpoint committed, the VM going on. */
static enum vmms_step take_disks(struct vmms *s, struct take_ctx *t, struct vmms_job *j, struct inv_vm *vm)
{
	char err[2 * PATH_MAX + 160], from[PATH_MAX];
	vmms_saved_state_path(vm, from, sizeof(from));
	if (t->saved && vmms_copy_file(from, t->state, err, sizeof(err)) < 0)
		return take_fail(s, t, j, vm, 0, err);
	for (int i = 0; i < t->cp.ndisks; i++) {
		/* a live VM's worker holds the image open (paused, flushed): read it without its lock */
		struct vdisk_create_params p = { .parent_path = t->cp.disks[i].path, .parent_in_use = t->live };
		if (vdisk_create(t->child[i], &p) < 0) {
			snprintf(err, sizeof(err), "%s", vdisk_last_error());
			return take_fail(s, t, j, vm, 0, err);
		}
	}
	inv_journal_step(s->inv, t->jid, "children", NULL);
	vmms_crash_point("checkpoint-children");
	int64_t pause_ms = 0;
	for (int i = 0; t->live && i < t->cp.ndisks; i++) {
		json_t *r = switch_disk(vm, i, t->child[i]);
		if (!json_is_true(json_object_get(r, "ok"))) {
			snprintf(err, sizeof(err), "the worker did not switch LUN %d to %s: %s", i, t->child[i], worker_error(r));
			json_decref(r);
			return take_fail(s, t, j, vm, i, err);
		}
		pause_ms += json_integer_value(json_object_get(r, "pause_ms"));
		json_decref(r);
		vmms_crash_point("checkpoint-switch");
	}
	vmms_crash_point("checkpoint-switched");
	bool with_state = t->cp.type[0] == 'S' && (t->live || t->saved);
	if (take_commit(s, t, vm, with_state) < 0) {
		snprintf(err, sizeof(err), "inventory: %s", inv_error(s->inv));
		return take_fail(s, t, j, vm, t->live ? t->cp.ndisks : 0, err);
	}
	vmms_crash_point("checkpoint-committed");
	if (t->live) {
		worker_resume_thaw(vm, t->resume, t->frozen);
		if (t->paused_at_ms)
			vm_event(s, vm->id, "Information", "the virtual machine was paused %lld ms for the checkpoint",
				 (long long)(mono_ms() - t->paused_at_ms));
		else
			vm_event(s, vm->id, "Information", "disk I/O was held %lld ms for the checkpoint", (long long)pause_ms);
	}
	inv_journal_drop(s->inv, t->jid);
	t->jid = -1;
	vm_set_op(s, t->vm_id, VM_OPS_NONE);
	return VMMS_STEP_DONE;
}

/* Production could not freeze the guest: Standard instead, or the end for ProductionOnly. */
static enum vmms_step vss_fallback(struct vmms *s, struct take_ctx *t, struct vmms_job *j, const struct inv_vm *vm, const char *why)
{
	json_decref(worker_vm_call(vm, "{\"op\":\"vss-thaw\"}", 5000));
	if (t->production_only)
		return take_fail(s, t, j, vm, 0, why);
	vm_event(s, vm->id, "Warning", "the guest could not freeze its file systems (%s): a standard checkpoint instead", why);
	snprintf(t->cp.type, sizeof(t->cp.type), "Standard");
	t->phase = T_SAVE;
	return VMMS_STEP_MORE;
}

static enum vmms_step take_step(void *owner, struct vmms_job *j)
{
	struct vmms *s = owner;
	struct take_ctx *t = j->ctx;
	struct inv_vm vm;
	if (inv_find(s->inv, t->vm_id, &vm) != 1) {
		snprintf(j->error, sizeof(j->error), "the virtual machine is gone");
		return VMMS_STEP_FAILED;
	}
	enum vmms_step r = VMMS_STEP_MORE;
	if (t->live && !vm_state_has_worker(vm.status.state)) {
		r = take_fail(s, t, j, &vm, 0, "the worker exited");
		goto out;
	}
	switch (t->phase) {
	case T_VSS: {
		json_t *w = worker_vm_call(&vm, "{\"op\":\"vss-freeze\"}", 5000);
		if (!json_is_true(json_object_get(w, "ok"))) {
			r = vss_fallback(s, t, j, &vm, worker_error(w));
		} else {
			t->deadline_ms = mono_ms() + VSS_TIMEOUT_MS;
			t->phase = T_VSS_WAIT;
		}
		json_decref(w);
		break;
	}
	case T_VSS_WAIT: {
		json_t *w = worker_vm_call(&vm, "{\"op\":\"vss-status\"}", 2000);
		const char *st = json_string_value(json_object_get(w, "state"));
		if (st && !strcmp(st, "frozen")) {
			t->frozen = true;
			t->phase = T_DISKS;
			j->percent = 50;
			r = take_disks(s, t, j, &vm);
		} else if (!st || !strcmp(st, "failed") || !strcmp(st, "idle") || mono_ms() > t->deadline_ms) {
			const char *e = json_string_value(json_object_get(w, "error"));
			r = vss_fallback(s, t, j, &vm, e ? e : st ? (mono_ms() > t->deadline_ms ? "timed out" : st) : worker_error(w));
		}
		json_decref(w);
		break;
	}
	case T_SAVE: {
		char sock[PATH_MAX];
		enum control_call_error why;
		worker_sock_path(&vm, sock, sizeof(sock));
		char *line = dump(json_pack("{s:s, s:s}", "op", "save", "path", t->state));
		errno = ENOMEM;
		t->save_fd = line ? control_send(sock, line, 2000, &why) : -1;
		free(line);
		if (t->save_fd < 0) {
			char e[128];
			snprintf(e, sizeof(e), "the worker does not answer (%s)", strerror(errno));
			r = take_fail(s, t, j, &vm, 0, e);
			break;
		}
		t->paused_at_ms = mono_ms();
		t->deadline_ms = mono_ms() + VMMS_SAVE_TIMEOUT_MS;
		t->phase = T_SAVE_WAIT;
		break;
	}
	case T_SAVE_WAIT: {
		struct pollfd p = { t->save_fd, POLLIN, 0 };
		bool ready = poll(&p, 1, 0) > 0;
		if (!ready && mono_ms() <= t->deadline_ms)
			break;
		enum control_call_error why = CONTROL_CALL_TIMEOUT;
		json_t *w = ready ? control_recv(t->save_fd, 2000, &why) : NULL;
		close(t->save_fd);
		t->save_fd = -1;
		if (!json_is_true(json_object_get(w, "ok"))) {
			r = take_fail(s, t, j, &vm, 0, w ? worker_error(w) : "the worker did not save its state");
		} else {
			inv_journal_step(s->inv, t->jid, "saved", NULL);
			vmms_crash_point("checkpoint-saved");
			j->percent = 50;
			r = take_disks(s, t, j, &vm);
		}
		json_decref(w);
		break;
	}
	case T_DISKS:
		r = take_disks(s, t, j, &vm);
		break;
	}
out:
	inv_vm_free(&vm);
	return r;
}

static json_t *op_checkpoint(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *name = jstr(req, "name");
	const char *type = vm.checkpoint_type;
	json_t *reply = NULL;
	struct vm_status next;
	enum vm_state st = vm.status.state;
	bool production = !strcasecmp(type, "Production") || !strcasecmp(type, "ProductionOnly");
	bool only = !strcasecmp(type, "ProductionOnly");
	if (name && !vmms_valid_name(name)) {
		reply = err_reply(0, "invalid checkpoint name '%s' (1-100 characters, none of / \\ * ? [ ] \")", name);
	} else if (!strcasecmp(type, "Disabled")) {
		reply = err_reply(0, "checkpoints are disabled for '%s' (Set-VM -CheckpointType)", vm.name);
	} else if (vm_transition(vm.status, VM_OP_CHECKPOINT, &next)) {
		reply = conflict(&vm, "take a checkpoint");
	} else if (only && (st == VM_SAVED || st == VM_PAUSED)) { /* no running guest to freeze */
		reply = conflict(&vm, "take a production-only checkpoint");
	} else if (vm_state_has_worker(st) && !worker_of(s, vm.id)) {
		reply = err_reply(0, "'%s' cannot be checkpointed: vmms does not manage its worker", vm.name);
	}
	for (int i = 0; !reply && i < vm.ndisks; i++)
		if (!is_vhd_path(vm.disks[i].path))
			reply = err_reply(0, "'%s' cannot be checkpointed: %s is not a VHD or VHDX file", vm.name, vm.disks[i].path);
	struct take_ctx *t = NULL;
	if (!reply && !(t = calloc(1, sizeof(*t))))
		reply = err_reply(0, "out of memory");
	if (reply || !t)
		goto out;
	snprintf(t->vm_id, sizeof(t->vm_id), "%s", vm.id);
	t->save_fd = -1;
	t->jid = -1;
	t->live = vm_state_has_worker(st);
	t->resume = st == VM_RUNNING;
	t->saved = st == VM_SAVED;
	t->production_only = only;
	new_guid(t->cp.id);
	snprintf(t->cp.vm_id, sizeof(t->cp.vm_id), "%s", vm.id);
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	if (name)
		snprintf(t->cp.name, sizeof(t->cp.name), "%s", name);
	else
		cp_default_name(vm.name, &tm, t->cp.name, sizeof(t->cp.name));
	t->cp.created_ms = vmms_unix_ms();
	t->cp.cpus = vm.cpus;
	t->cp.memory = vm.memory;
	/* Off: disks only, of the type asked for; a Saved or Paused VM has no guest to freeze */
	bool vss = production && st == VM_RUNNING;
	snprintf(t->cp.type, sizeof(t->cp.type), "%s", (production && (st == VM_OFF || vss)) ? "Production" : "Standard");
	if (production && !vss && st != VM_OFF)
		vm_event(s, vm.id, "Information", "'%s' is %s: a standard checkpoint instead of a production one", vm.name,
			 vm_state_name(st));
	cp_state_path(&vm, t->cp.id, t->state, sizeof(t->state));
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/Snapshots", vm.path);
	t->cp.ndisks = vm.ndisks;
	for (int i = 0; i < vm.ndisks; i++) {
		char g[37];
		new_guid(g);
		t->cp.disks[i] = (struct inv_disk){ .controller = vm.disks[i].controller, .lun = vm.disks[i].lun, .path = strdup(vm.disks[i].path) };
		if (!t->cp.disks[i].path || !cp_child_path(vm.disks[i].path, g, t->child[i], sizeof(t->child[i])))
			reply = err_reply(0, "'%s' cannot be checkpointed: the path of %s is too long", vm.name, vm.disks[i].path);
	}
	if (!reply && mkdir_p(dir) < 0)
		reply = err_reply(0, "cannot create %s: %s", dir, strerror(errno));
	char *data = reply ? NULL : dump(take_journal(t));
	if (!reply && (!data || (t->jid = inv_journal_add(s->inv, vm.id, "checkpoint", "intent", data)) < 0))
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	free(data);
	if (reply) {
		take_release(t);
		goto out;
	}
	vmms_crash_point("checkpoint-intent");
	t->phase = vss ? T_VSS : t->live ? T_SAVE : T_DISKS;
	inv_set_status(s->inv, vm.id, next, vm.worker_pid, vm.worker_start, NULL, NULL);
	char id[37];
	new_guid(id);
	struct vmms_job *j = vmms_job_start(&s->jobs, id, vm.id, "checkpoint", take_step, take_release, t, vmms_unix_ms());
	if (!j) {
		take_undo(s, t, &vm, 0);
		take_release(t);
		vm_set_op(s, vm.id, VM_OPS_NONE);
		reply = err_reply(0, "too many jobs running");
		goto out;
	}
	char cp_id[37];
	snprintf(cp_id, sizeof(cp_id), "%s", t->cp.id);
	vmms_jobs_run(&s->jobs, s, vmms_unix_ms()); /* an Off or Saved VM's checkpoint is done here */
	reply = vmms_job_reply(j);
	if (j->state != VMMS_JOB_FAILED)
		json_object_set_new(reply, "checkpoint", json_string(cp_id));
out:
	inv_vm_free(&vm);
	return reply;
}

/* ---- Get-VMCheckpoint, Rename-VMCheckpoint ---- */

static json_t *op_list(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	struct cp_set set;
	json_t *reply;
	if (cp_load(s, vm.id, &set) < 0) {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	} else {
		json_t *arr = json_array();
		for (int i = 0; i < set.n; i++) {
			const struct inv_checkpoint *c = &set.cps[i];
			json_t *disks = json_array();
			for (int k = 0; k < c->ndisks; k++)
				json_array_append_new(disks, json_pack("{s:i, s:i, s:s}", "controller", c->disks[k].controller, "lun",
								       c->disks[k].lun, "path", c->disks[k].path));
			int p = set.parent[i];
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:i, s:I, s:s*, s:o, s:b}", "id", c->id,
							     "name", c->name, "vm", vm.name, "parent_id", p >= 0 ? set.cps[p].id : "",
							     "parent_name", p >= 0 ? set.cps[p].name : "", "created_ms",
							     (json_int_t)c->created_ms, "type", c->type, "cpus", c->cpus, "memory",
							     (json_int_t)c->memory, "state_file", c->state_file, "disks", disks, "current",
							     !strcmp(vm.parent_checkpoint, c->id)));
		}
		reply = json_pack("{s:b, s:s, s:o}", "ok", 1, "vm", vm.name, "checkpoints", arr);
	}
	cp_unload(&set);
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_rename(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *to = jstr(req, "new_name");
	struct cp_set set = { 0 };
	json_t *reply = NULL;
	int i = -1;
	if (!vmms_valid_name(to))
		reply = err_reply(0, "invalid checkpoint name '%s' (1-100 characters, none of / \\ * ? [ ] \")", to ? to : "");
	else if (cp_load(s, vm.id, &set) < 0)
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	else if ((i = cp_by_name(&set, &vm, jstr(req, "name"), &reply)) >= 0) {
		char msg[2 * INV_NAME_MAX + 48];
		snprintf(msg, sizeof(msg), "checkpoint '%s' renamed to '%s'", set.cps[i].name, to);
		if (inv_cp_rename(s->inv, set.cps[i].id, to) < 0 || inv_add_event(s->inv, vm.id, "Information", msg) < 0)
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		else
			reply = json_pack("{s:b, s:s, s:s}", "ok", 1, "id", set.cps[i].id, "name", to);
	}
	cp_unload(&set);
	inv_vm_free(&vm);
	return reply;
}

/* ---- Restore-VMCheckpoint ---- */

struct apply_ctx {
	char vm_id[37], cp_id[37];
	int64_t deadline_ms;      /* a running VM is turned off first */
};

static json_t *apply_journal(const struct inv_checkpoint *c, char child[][PATH_MAX], const char *tmp)
{
	json_t *disks = json_array();
	for (int i = 0; i < c->ndisks; i++)
		json_array_append_new(disks, json_pack("{s:s}", "child", child[i]));
	return json_pack("{s:s, s:s, s:b, s:o}", "cp", c->id, "tmp", tmp, "standard", c->state_file != NULL, "disks", disks);
}

/* The committed half of an apply: the checkpoint's saved state (or none) is the VM's. */
static void apply_finish(struct vmms *s, const struct inv_vm *vm, const char *tmp, bool standard, int64_t jid)
{
	char vmrs[PATH_MAX];
	vmms_saved_state_path(vm, vmrs, sizeof(vmrs));
	if (standard)
		rename(tmp, vmrs); /* gone already when a recovery repeats it */
	else
		unlink(vmrs);
	vmms_crash_point("apply-renamed");
	inv_journal_drop(s->inv, jid);
	vm_set_op(s, vm->id, VM_OPS_NONE);
}

static enum vmms_step apply_fail(struct vmms *s, struct vmms_job *j, const char *vm_id, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static enum vmms_step apply_fail(struct vmms *s, struct vmms_job *j, const char *vm_id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->error, sizeof(j->error), fmt, ap);
	va_end(ap);
	vm_set_op(s, vm_id, VM_OPS_NONE);
	vm_event(s, vm_id, "Error", "%s", j->error);
	return VMMS_STEP_FAILED;
}

static enum vmms_step apply_step(void *owner, struct vmms_job *j)
{
	struct vmms *s = owner;
	struct apply_ctx *a = j->ctx;
	struct inv_vm vm;
	if (inv_find(s->inv, a->vm_id, &vm) != 1) {
		snprintf(j->error, sizeof(j->error), "the virtual machine is gone");
		return VMMS_STEP_FAILED;
	}
	enum vmms_step r = VMMS_STEP_MORE;
	struct cp_set set = { 0 };
	char (*child)[PATH_MAX] = NULL;
	struct vm_status next = vm.status;
	if (vm_state_has_worker(vm.status.state)) { /* still turning off */
		if (mono_ms() > a->deadline_ms)
			r = apply_fail(s, j, vm.id, "'%s' did not turn off; the checkpoint was not applied", vm.name);
		goto out;
	}
	if (vm.status.op != VM_OPS_APPLYING_CHECKPOINT && vm_transition(vm.status, VM_OP_APPLY_CHECKPOINT, &next)) {
		snprintf(j->error, sizeof(j->error), "'%s' cannot apply a checkpoint: it is %s %s", vm.name, vm_state_name(vm.status.state),
			 vm_opstate_name(vm.status.op));
		r = VMMS_STEP_FAILED;
		goto out;
	}
	next.op = VM_OPS_APPLYING_CHECKPOINT;
	inv_set_status(s->inv, vm.id, next, 0, 0, NULL, NULL);
	int i = -1;
	if (cp_load(s, vm.id, &set) == 0)
		for (int k = 0; k < set.n; k++)
			if (!strcmp(set.cps[k].id, a->cp_id))
				i = k;
	if (i < 0) {
		r = apply_fail(s, j, vm.id, "the checkpoint to apply is gone");
		goto out;
	}
	struct inv_checkpoint *c = &set.cps[i];
	child = malloc(INV_MAX_DISKS * sizeof(*child));
	if (!child) {
		r = apply_fail(s, j, vm.id, "out of memory");
		goto out;
	}
	char tmp[PATH_MAX + 16], vmrs[PATH_MAX], err[2 * PATH_MAX + 64];
	vmms_saved_state_path(&vm, vmrs, sizeof(vmrs));
	snprintf(tmp, sizeof(tmp), "%s.apply-tmp", vmrs);
	for (int k = 0; k < c->ndisks; k++) {
		char g[37];
		new_guid(g);
		if (!cp_child_path(c->disks[k].path, g, child[k], sizeof(child[k]))) {
			r = apply_fail(s, j, vm.id, "the path of %s is too long", c->disks[k].path);
			goto out;
		}
	}
	char *data = dump(apply_journal(c, child, tmp));
	int64_t jid = data ? inv_journal_add(s->inv, vm.id, "apply", "intent", data) : -1;
	free(data);
	if (jid < 0) {
		r = apply_fail(s, j, vm.id, "inventory: %s", inv_error(s->inv));
		goto out;
	}
	vmms_crash_point("apply-intent");
	int made = 0;
	for (; made < c->ndisks; made++) {
		struct vdisk_create_params p = { .parent_path = c->disks[made].path };
		if (vdisk_create(child[made], &p) < 0)
			break;
	}
	bool ok = made == c->ndisks;
	if (!ok)
		snprintf(err, sizeof(err), "%s", vdisk_last_error());
	vmms_crash_point("apply-children");
	if (ok && c->state_file && vmms_copy_file(c->state_file, tmp, err, sizeof(err)) < 0)
		ok = false;
	vmms_crash_point("apply-state");
	/* the VM as the checkpoint was: its drives (new children), processors and memory */
	struct inv_vm nv = vm;
	nv.ndisks = c->ndisks;
	for (int k = 0; k < c->ndisks; k++)
		nv.disks[k] = (struct inv_disk){ .controller = c->disks[k].controller, .lun = c->disks[k].lun, .path = child[k] };
	nv.cpus = c->cpus;
	nv.memory = c->memory;
	snprintf(nv.parent_checkpoint, sizeof(nv.parent_checkpoint), "%s", c->id);
	char msg[INV_NAME_MAX + 64];
	snprintf(msg, sizeof(msg), "checkpoint '%s' applied", c->name);
	struct vm_status st = { c->state_file ? VM_SAVED : VM_OFF, VM_OPS_APPLYING_CHECKPOINT };
	if (ok && inv_tx_begin(s->inv) == 0) {
		for (int k = 0; k < c->ndisks; k++)
			inv_image_put(s->inv, vm.id, child[k], c->disks[k].path, true);
		inv_update_event(s->inv, &nv, msg);
		inv_set_status(s->inv, vm.id, st, 0, 0, NULL, NULL);
		inv_journal_step(s->inv, jid, "committed", NULL);
		if (inv_tx_commit(s->inv) < 0) {
			snprintf(err, sizeof(err), "inventory: %s", inv_error(s->inv));
			ok = false;
		}
	} else if (ok) {
		snprintf(err, sizeof(err), "inventory: %s", inv_error(s->inv));
		ok = false;
	}
	if (!ok) {
		for (int k = 0; k < made; k++)
			unlink(child[k]);
		unlink(tmp);
		inv_journal_drop(s->inv, jid);
		r = apply_fail(s, j, vm.id, "checkpoint '%s' was not applied: %s", c->name, err);
		goto out;
	}
	vmms_crash_point("apply-committed");
	apply_finish(s, &vm, tmp, c->state_file != NULL, jid);
	/* the disks the VM left behind go, unless a checkpoint needs them (once this job is over) */
	s->merge_recheck = true;
	r = VMMS_STEP_DONE;
out:
	free(child);
	cp_unload(&set);
	inv_vm_free(&vm);
	return r;
}

static json_t *op_restore(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	struct cp_set set;
	json_t *reply = NULL;
	bool running = (vm.status.state == VM_RUNNING || vm.status.state == VM_PAUSED) && vm.status.op == VM_OPS_NONE;
	if (cp_load(s, vm.id, &set) < 0) {
		inv_vm_free(&vm);
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	int i = cp_by_name(&set, &vm, jstr(req, "name"), &reply);
	struct apply_ctx *a = NULL;
	if (i < 0)
		goto out;
	if (!running && !vm_op_allowed(vm.status, VM_OP_APPLY_CHECKPOINT)) {
		reply = conflict(&vm, "apply a checkpoint");
		goto out;
	}
	if (running) { /* Hyper-V turns it off first (the cmdlet's confirmation taken as given) */
		json_t *stop = json_pack("{s:s, s:s, s:b}", "op", "stop", "vm", vm.id, "turn_off", 1);
		json_t *r = vmms_lifecycle_request(s, "stop", stop);
		json_decref(stop);
		if (!json_is_true(json_object_get(r, "ok"))) {
			reply = r;
			goto out;
		}
		json_decref(r);
	}
	a = calloc(1, sizeof(*a));
	char id[37];
	new_guid(id);
	struct vmms_job *j = a ? vmms_job_start(&s->jobs, id, vm.id, "apply-checkpoint", apply_step, free, a, vmms_unix_ms()) : NULL;
	if (!j) {
		free(a);
		reply = err_reply(0, "too many jobs running");
		goto out;
	}
	snprintf(a->vm_id, sizeof(a->vm_id), "%s", vm.id);
	snprintf(a->cp_id, sizeof(a->cp_id), "%s", set.cps[i].id);
	a->deadline_ms = mono_ms() + OFF_TIMEOUT_MS;
	if (!running)
		vmms_jobs_run(&s->jobs, s, vmms_unix_ms());
	reply = vmms_job_reply(j);
out:
	cp_unload(&set);
	inv_vm_free(&vm);
	return reply;
}

/* ---- Remove-VMCheckpoint ---- */

static json_t *op_remove(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *name = jstr(req, "name");
	bool with_children = json_is_true(json_object_get(req, "include_children"));
	struct cp_set set;
	json_t *reply = NULL;
	if (!name) {
		inv_vm_free(&vm);
		return err_reply(0, "name a checkpoint (-Name)");
	}
	if (cp_load(s, vm.id, &set) < 0) {
		inv_vm_free(&vm);
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	bool *gone = calloc((size_t)set.n + 1, sizeof(bool)), *sub = calloc((size_t)set.n + 1, sizeof(bool));
	int n = 0;
	for (int i = 0; gone && sub && i < set.n; i++)
		if (vmms_name_matches(name, set.cps[i].name, set.cps[i].id) && cp_subtree(set.parent, set.n, i, with_children, sub))
			for (int k = 0; k < set.n; k++)
				gone[k] |= sub[k];
	for (int i = 0; gone && i < set.n; i++)
		n += gone[i];
	if (!gone || !sub) {
		reply = err_reply(0, "out of memory");
	} else if (!n && !vmms_name_is_pattern(name)) {
		reply = err_reply(0, "'%s' has no checkpoint named '%s'", vm.name, name);
	} else if (!vm_op_allowed(vm.status, VM_OP_DELETE_CHECKPOINT)) {
		reply = conflict(&vm, "delete a checkpoint");
	}
	if (reply || !n) {
		if (!reply)
			reply = json_pack("{s:b, s:[]}", "ok", 1, "removed");
		goto out;
	}
	vm_set_op(s, vm.id, VM_OPS_DELETING_CHECKPOINT);
	/* the tree closes over the gap: children (and the VM) attach to the nearest survivor */
	json_t *states = json_array(), *names = json_array();
	int vm_cp = -1;
	for (int i = 0; i < set.n; i++) {
		if (!strcmp(set.cps[i].id, vm.parent_checkpoint))
			vm_cp = i;
		if (gone[i]) {
			json_array_append_new(names, json_string(set.cps[i].name));
			if (set.cps[i].state_file)
				json_array_append_new(states, json_string(set.cps[i].state_file));
		}
	}
	char *data = dump(json_pack("{s:O}", "states", states));
	int rc = data ? inv_tx_begin(s->inv) : -1;
	int64_t jid = rc == 0 ? inv_journal_add(s->inv, vm.id, "remove", "committed", data) : -1;
	free(data);
	for (int i = 0; jid >= 0 && i < set.n; i++) {
		int p = cp_surviving_parent(set.parent, set.n, gone, i);
		if (gone[i])
			rc |= inv_cp_delete(s->inv, set.cps[i].id);
		else if (set.parent[i] >= 0 && gone[set.parent[i]])
			rc |= inv_cp_set_parent(s->inv, set.cps[i].id, p >= 0 ? set.cps[p].id : NULL);
	}
	if (jid >= 0 && vm_cp >= 0 && gone[vm_cp]) {
		int p = cp_surviving_parent(set.parent, set.n, gone, vm_cp);
		snprintf(vm.parent_checkpoint, sizeof(vm.parent_checkpoint), "%s", p >= 0 ? set.cps[p].id : "");
	}
	char msg[160];
	snprintf(msg, sizeof(msg), "%d checkpoint(s) removed", n);
	if (jid < 0 || rc || inv_update_event(s->inv, &vm, msg) < 0 || inv_tx_commit(s->inv) < 0) {
		inv_tx_rollback(s->inv);
		vm_set_op(s, vm.id, VM_OPS_NONE);
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		json_decref(states);
		json_decref(names);
		goto out;
	}
	vmms_crash_point("remove-committed");
	size_t k;
	json_t *v;
	json_array_foreach(states, k, v)
		unlink(json_string_value(v));
	json_decref(states);
	inv_journal_drop(s->inv, jid);
	vm_set_op(s, vm.id, VM_OPS_NONE);
	/* the frozen disks fold into the chain: a merge job (Merging Disk) */
	struct vmms_job *j = vmms_merge_start(s, vm.id, true);
	reply = json_pack("{s:b, s:o}", "ok", 1, "removed", names);
	if (j) {
		json_object_set_new(reply, "job", json_string(j->id));
		json_object_set_new(reply, "job_state", json_string(vmms_job_state_name(j->state)));
	}
out:
	free(gone);
	free(sub);
	cp_unload(&set);
	inv_vm_free(&vm);
	return reply;
}

/* ---- recovery ---- */

/* A checkpoint in progress when vmms died. Committed: the VM goes on (resumed, thawed).
 * Otherwise, if the worker already writes to some child, forward: the rest are switched and the
 * checkpoint recorded (the VM was paused, or its guest frozen, since the frozen disks were
 * made). Else back: the children and the state go. A worker that died meanwhile leaves the VM
 * Off; a child it wrote guest data to stays the VM's disk (no acknowledged write is lost). */
static void recover_take(struct vmms *s, const struct inv_journal *e, json_t *d, struct inv_vm *vm)
{
	bool alive = vm_state_has_worker(vm->status.state) && worker_of(s, vm->id);
	bool resume = json_is_true(json_object_get(d, "resume")), vss = json_is_true(json_object_get(d, "vss"));
	const char *state = jstr(d, "state"), *cp = jstr(d, "cp"), *name = jstr(d, "name"), *type = jstr(d, "type");
	json_t *disks = json_object_get(d, "disks");
	if (!strcmp(e->step, "committed")) {
		if (alive)
			recover_resume(s, vm, resume, vss);
		vm_event(s, vm->id, "Warning", "a checkpoint was cut off by a vmms restart after it was recorded: finished");
		goto done;
	}
	struct take_ctx *t = calloc(1, sizeof(*t));
	size_t n = json_array_size(disks);
	if (!t || !cp || !name || !type || !state || n != (size_t)vm->ndisks || strlen(state) >= sizeof(t->state)) {
		free(t);
		vm_event(s, vm->id, "Error", "an unreadable checkpoint journal entry was dropped");
		goto done;
	}
	snprintf(t->vm_id, sizeof(t->vm_id), "%s", vm->id);
	snprintf(t->cp.id, sizeof(t->cp.id), "%s", cp);
	snprintf(t->cp.vm_id, sizeof(t->cp.vm_id), "%s", vm->id);
	snprintf(t->cp.name, sizeof(t->cp.name), "%s", name);
	snprintf(t->cp.type, sizeof(t->cp.type), "%s", type);
	snprintf(t->state, sizeof(t->state), "%s", state);
	t->cp.created_ms = json_integer_value(json_object_get(d, "created_ms"));
	t->cp.cpus = (int)json_integer_value(json_object_get(d, "cpus"));
	t->cp.memory = (uint64_t)json_integer_value(json_object_get(d, "memory"));
	t->jid = e->id;
	t->save_fd = -1;
	t->live = alive;
	t->resume = resume;
	t->frozen = vss;
	t->cp.ndisks = (int)n;
	bool switched[INV_MAX_DISKS] = { false }, any = false;
	json_t *st = alive ? worker_vm_call(vm, "{\"op\":\"status\"}", 3000) : NULL;
	for (size_t i = 0; i < n; i++) {
		const char *child = jstr(json_array_get(disks, i), "child");
		snprintf(t->child[i], sizeof(t->child[i]), "%s", child ? child : "");
		t->cp.disks[i] = (struct inv_disk){ .controller = vm->disks[i].controller, .lun = vm->disks[i].lun, .path = strdup(vm->disks[i].path) };
		json_t *wd = json_array_get(json_object_get(st, "disks"), i);
		const char *wp = json_string_value(json_object_get(wd, "path"));
		switched[i] = wp && child && !strcmp(wp, child);
		any |= switched[i];
	}
	json_decref(st);
	int i = 0;
	for (; any && i < (int)n; i++) {
		json_t *r = switched[i] ? json_pack("{s:b}", "ok", 1) : switch_disk(vm, i, t->child[i]);
		bool ok = json_is_true(json_object_get(r, "ok"));
		json_decref(r);
		if (!ok)
			break;
	}
	if (any && i == (int)n && take_commit(s, t, vm, t->cp.type[0] == 'S' && file_readable(t->state)) == 0) {
		recover_resume(s, vm, resume, vss);
		vm_event(s, vm->id, "Warning", "checkpoint '%s' was cut off by a vmms restart after the worker took its disks: completed", name);
	} else {
		bool keep_written = !alive && json_is_true(json_object_get(d, "live")) && t->cp.type[0] == 'P';
		struct inv_vm nv = *vm;
		int kept = 0;
		for (size_t k = 0; k < n; k++) {
			if (alive && switched[k]) /* back to the frozen disk: the VM was paused since it was made */
				json_decref(switch_disk(vm, (int)k, t->cp.disks[k].path));
			if (keep_written && file_readable(t->child[k]) && image_has_data(t->child[k])) {
				nv.disks[k].path = t->child[k];
				inv_image_put(s->inv, vm->id, t->cp.disks[k].path, NULL, false);
				inv_image_put(s->inv, vm->id, t->child[k], t->cp.disks[k].path, true);
				kept++;
			} else {
				unlink(t->child[k]);
			}
		}
		if (kept)
			inv_update_event(s->inv, &nv, "a cut-off checkpoint's disks kept: the guest wrote to them");
		unlink(t->state);
		if (alive)
			recover_resume(s, vm, resume, vss);
		vm_event(s, vm->id, "Warning", "checkpoint '%s' was cut off by a vmms restart: rolled back", name);
	}
	t->jid = -1;
	take_release(t);
done:
	inv_journal_drop(s->inv, e->id);
	vm_set_op(s, vm->id, VM_OPS_NONE);
}

static void recover_apply(struct vmms *s, const struct inv_journal *e, json_t *d, struct inv_vm *vm)
{
	const char *tmp = jstr(d, "tmp");
	if (!strcmp(e->step, "committed") && tmp) {
		apply_finish(s, vm, tmp, json_is_true(json_object_get(d, "standard")), e->id);
		vm_event(s, vm->id, "Warning", "applying a checkpoint was cut off by a vmms restart after it was recorded: finished");
		s->merge_recheck = true;
		return;
	}
	size_t k;
	json_t *v;
	json_array_foreach(json_object_get(d, "disks"), k, v)
		if (jstr(v, "child"))
			unlink(jstr(v, "child"));
	if (tmp)
		unlink(tmp);
	inv_journal_drop(s->inv, e->id);
	vm_set_op(s, vm->id, VM_OPS_NONE);
	vm_event(s, vm->id, "Warning", "applying a checkpoint was cut off by a vmms restart: rolled back (the virtual machine is as it was)");
}

void vmms_checkpoints_recover(struct vmms *s)
{
	struct inv_journal *js;
	int n;
	if (inv_journal_list(s->inv, &js, &n) < 0)
		return;
	for (int i = 0; i < n; i++) {
		/* an import's VM is not in the inventory yet */
		if (vmms_export_recover(s, &js[i]) || vmms_storage_move_recover(s, &js[i]))
			continue;
		struct inv_vm vm;
		json_t *d = json_loads(js[i].data ? js[i].data : "", 0, NULL);
		if (inv_find(s->inv, js[i].vm_id, &vm) != 1 || !json_is_object(d)) {
			inv_journal_drop(s->inv, js[i].id);
			json_decref(d);
			continue;
		}
		if (!strcmp(js[i].kind, "checkpoint")) {
			recover_take(s, &js[i], d, &vm);
		} else if (!strcmp(js[i].kind, "apply")) {
			recover_apply(s, &js[i], d, &vm);
		} else if (!strcmp(js[i].kind, "remove")) { /* the rows went; their state files go */
			size_t k;
			json_t *v;
			json_array_foreach(json_object_get(d, "states"), k, v)
				if (json_string_value(v))
					unlink(json_string_value(v));
			inv_journal_drop(s->inv, js[i].id);
			vm_set_op(s, vm.id, VM_OPS_NONE);
		} else if (!strcmp(js[i].kind, "fold") || !strcmp(js[i].kind, "live-merge")) {
			vmms_merge_recover(s, &js[i]);
		} else {
			inv_journal_drop(s->inv, js[i].id);
		}
		json_decref(d);
		inv_vm_free(&vm);
	}
	inv_journal_free(js, n);
	/* an operation state no job carries on was the dead vmms's (a re-attached worker keeps it) */
	struct inv_vm *vms;
	if (inv_list(s->inv, &vms, &n) == 0) {
		for (int i = 0; i < n; i++) {
			if (vms[i].status.op != VM_OPS_NONE && !vmms_job_running_for(&s->jobs, vms[i].id)) {
				vm_event(s, vms[i].id, "Warning", "%s was interrupted by a vmms restart", vm_opstate_name(vms[i].status.op));
				vm_set_op(s, vms[i].id, VM_OPS_NONE);
			}
			inv_vm_free(&vms[i]);
		}
		free(vms);
	}
	s->merge_recheck = true;
}

bool vmms_checkpoints_journaled(struct vmms *s, const char *vm_id)
{
	struct inv_journal *js;
	int n;
	bool found = false;
	if (inv_journal_list(s->inv, &js, &n) < 0)
		return false;
	for (int i = 0; i < n; i++)
		found |= !strcmp(js[i].vm_id, vm_id);
	inv_journal_free(js, n);
	return found;
}

void vmms_checkpoints_vm_off(struct vmms *s, const char *vm_id)
{
	s->merge_recheck = true;
	struct vmms_job *j = vmms_job_running_for(&s->jobs, vm_id);
	if (j && !strcmp(j->kind, "apply-checkpoint")) /* nothing may start it before the apply */
		vm_set_op(s, vm_id, VM_OPS_APPLYING_CHECKPOINT);
}

void vmms_checkpoints_tick(struct vmms *s)
{
	vmms_jobs_run(&s->jobs, s, vmms_unix_ms());
	if (!s->merge_recheck)
		return;
	s->merge_recheck = false;
	struct inv_vm *vms;
	int n;
	if (inv_list(s->inv, &vms, &n) < 0)
		return;
	for (int i = 0; i < n; i++) {
		if (vms[i].status.op == VM_OPS_NONE)
			vmms_merge_start(s, vms[i].id, false);
		inv_vm_free(&vms[i]);
	}
	free(vms);
}

json_t *vmms_checkpoint_request(struct vmms *s, const char *op, json_t *req)
{
	if (!strcmp(op, "checkpoint"))
		return op_checkpoint(s, req);
	if (!strcmp(op, "list-checkpoints"))
		return op_list(s, req);
	if (!strcmp(op, "rename-checkpoint"))
		return op_rename(s, req);
	if (!strcmp(op, "restore-checkpoint"))
		return op_restore(s, req);
	if (!strcmp(op, "remove-checkpoint"))
		return op_remove(s, req);
	return NULL;
}
