/* Move-VMStorage (docs/vmms.md, "Moving storage"): a VM's disk chains (its checkpoints'
 * AVHDXs too), its checkpoints' saved states, its saved state and its folder move to other
 * folders. A job copies everything (vmms/chaincopy.c: parent links rewritten to the copies),
 * then one inventory transaction switches the VM to the copies and marks the journal entry
 * committed, then the sources are deleted. A vmms killed before the commit leaves the VM on its
 * sources (the next start deletes the copies), after it on the copies (the next start deletes
 * what is left of the sources): never a VM without its disks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define STEP_BYTES (32u << 20)

struct move_ctx {
	char vm_id[37];
	int64_t jid;
	char old_folder[PATH_MAX], new_folder[PATH_MAX]; /* equal: the folder stays */
	struct vmms_copyset cs;
	int nimages;                    /* cs.f[0..nimages) are images, then the states */
	int ncp;
	char (*cp_id)[37];              /* the checkpoint whose state cs.f[nimages + k] is */
	bool saved;                     /* cs.f[n - 1] is the VM's saved state */
};

static void move_release(void *p)
{
	struct move_ctx *m = p;
	vmms_copyset_free(&m->cs, false); /* an unfinished move stays for the journal's recovery */
	free(m->cp_id);
	free(m);
}

/* The journal's record: every (source, copy) pair and the folders. */
static char *journal_data(const struct move_ctx *m)
{
	json_t *pairs = json_array();
	for (int i = 0; i < m->cs.n; i++)
		json_array_append_new(pairs, json_pack("[s, s]", m->cs.f[i].src, m->cs.f[i].dst));
	json_t *o = json_pack("{s:o, s:s, s:s}", "pairs", pairs, "old_folder", m->old_folder, "new_folder", m->new_folder);
	char *t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return t;
}

/* After the commit: the sources go (and the old folder, when the folder moved). */
static void delete_sources(json_t *pairs, const char *old_folder, const char *new_folder)
{
	size_t i;
	json_t *p;
	json_array_foreach(pairs, i, p) {
		const char *src = json_string_value(json_array_get(p, 0)), *dst = json_string_value(json_array_get(p, 1));
		struct stat st;
		if (src && dst && strcmp(src, dst) && stat(dst, &st) == 0) /* never a source without its copy */
			unlink(src);
	}
	if (old_folder && new_folder && strcmp(old_folder, new_folder)) {
		static const char *const keep[] = { "console.log", "worker.log" };
		for (int k = 0; k < 2; k++) { /* the logs go with the folder */
			char a[PATH_MAX + 16], b[PATH_MAX + 16];
			snprintf(a, sizeof(a), "%s/%s", old_folder, keep[k]);
			snprintf(b, sizeof(b), "%s/%s", new_folder, keep[k]);
			if (access(b, F_OK) < 0)
				vmms_copy_file(a, b, (char[256]){ 0 }, 256);
		}
		vmms_remove_tree(old_folder);
	}
}

/* The copies: the VM's drives, its checkpoints' disks and states, its folder, in one transaction. */
static int commit(struct vmms *s, struct move_ctx *m, char *err, size_t errlen)
{
	int rc = inv_tx_begin(s->inv);
	for (int i = 0; !rc && i < m->nimages; i++)
		rc = inv_image_move(s->inv, m->vm_id, m->cs.f[i].src, m->cs.f[i].dst);
	for (int k = 0; !rc && k < m->ncp; k++)
		rc = inv_cp_set_state_file(s->inv, m->cp_id[k], m->cs.f[m->nimages + k].dst);
	if (!rc && strcmp(m->old_folder, m->new_folder))
		rc = inv_set_path(s->inv, m->vm_id, m->new_folder);
	if (!rc)
		rc = inv_journal_step(s->inv, m->jid, "committed", NULL);
	if (!rc)
		rc = inv_add_event(s->inv, m->vm_id, "Information", "storage moved");
	if (rc < 0) {
		snprintf(err, errlen, "inventory: %s", inv_error(s->inv));
		inv_tx_rollback(s->inv);
		return -1;
	}
	if (inv_tx_commit(s->inv) < 0) {
		snprintf(err, errlen, "inventory: %s", inv_error(s->inv));
		return -1;
	}
	return 0;
}

static enum vmms_step move_step(void *owner, struct vmms_job *j)
{
	struct vmms *s = owner;
	struct move_ctx *m = j->ctx;
	char err[2 * PATH_MAX + 160];
	int r = vmms_copyset_step(&m->cs, STEP_BYTES, err, sizeof(err));
	if (r > 0) {
		j->percent = vmms_copyset_percent(&m->cs) * 95 / 100;
		return VMMS_STEP_MORE;
	}
	vmms_crash_point("move-copied");
	if (r == 0)
		r = commit(s, m, err, sizeof(err));
	if (r < 0) { /* the VM stays on its sources: the copies go */
		vmms_copyset_free(&m->cs, true);
		if (strcmp(m->old_folder, m->new_folder))
			vmms_remove_tree(m->new_folder);
		inv_journal_drop(s->inv, m->jid);
		vm_set_op(s, m->vm_id, VM_OPS_NONE);
		vm_event(s, m->vm_id, "Error", "Move-VMStorage failed: %s", err);
		snprintf(j->error, sizeof(j->error), "%.500s", err);
		return VMMS_STEP_FAILED;
	}
	vmms_crash_point("move-committed");
	char *data = journal_data(m);
	json_t *d = data ? json_loads(data, 0, NULL) : NULL;
	free(data);
	delete_sources(json_object_get(d, "pairs"), m->old_folder, m->new_folder);
	json_decref(d);
	inv_journal_drop(s->inv, m->jid);
	vm_set_op(s, m->vm_id, VM_OPS_NONE);
	return VMMS_STEP_DONE;
}

static bool abs_dir(const char *p)
{
	struct stat st;
	return p && p[0] == '/' && strlen(p) < PATH_MAX - 200 && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static json_t *op_move(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *all = jstr(req, "destination_storage_path"), *vmp = jstr(req, "virtual_machine_path");
	const char *snap = jstr(req, "snapshot_file_path");
	json_t *reply = NULL;
	struct vm_status next;
	struct inv_checkpoint *cps = NULL;
	int ncp = 0;
	struct vmms_chain *ch = NULL;
	struct move_ctx *m = NULL;
	char err[PATH_MAX + 160];
	const char *given[] = { all, vmp, snap };
	char checked[PATH_MAX];
	for (int i = 0; i < 3 && !reply; i++)
		if (given[i] && !abs_dir(given[i]))
			reply = err_reply(0, "'%s' is not an existing folder (absolute path needed)", given[i]);
		else if (given[i])
			vmms_caller_path(s, given[i], VMMS_CALLER_DIR, "the destination", checked, sizeof(checked), &reply);
	if (!reply && !all && !vmp && !snap)
		reply = err_reply(0, "give -DestinationStoragePath, -VirtualMachinePath or -SnapshotFilePath");
	else if (!reply && vm.status.state != VM_OFF && vm.status.state != VM_SAVED)
		reply = conflict(&vm, "move its storage while it runs (not yet: Save-VM or Stop-VM it first)");
	else if (!reply && vm_transition(vm.status, VM_OP_MOVE_STORAGE, &next))
		reply = conflict(&vm, "move its storage now");
	if (reply)
		goto out;
	if (!(m = calloc(1, sizeof(*m))) || !(ch = malloc(sizeof(*ch)))) {
		reply = err_reply(0, "out of memory");
		goto out;
	}
	snprintf(m->vm_id, sizeof(m->vm_id), "%s", vm.id);
	m->jid = -1;
	snprintf(m->old_folder, sizeof(m->old_folder), "%s", vm.path);
	snprintf(m->new_folder, sizeof(m->new_folder), "%s", vm.path);
	if (vmp || all)
		snprintf(m->new_folder, sizeof(m->new_folder), "%s/Virtual Machines/%s", vmp ? vmp : all, vm.id);
	if (inv_cp_list(s->inv, vm.id, &cps, &ncp) < 0 || vmms_chain_load(s, &vm, cps, ncp, ch, err, sizeof(err)) < 0) {
		reply = err_reply(0, "cannot move the storage of '%s': %s", vm.name, ncp >= 0 && cps ? err : inv_error(s->inv));
		goto out;
	}
	char dst[2 * PATH_MAX + 64], dir[PATH_MAX + 32];
	bool ok = true;
	if (all) { /* the disks: <P>/Virtual Hard Disks/<file name> */
		snprintf(dir, sizeof(dir), "%s/Virtual Hard Disks", all);
		ok = mkdir_p(dir) == 0;
		for (int i = 0; ok && i < ch->n; i++) {
			const char *base = strrchr(ch->img[i].path, '/');
			snprintf(dst, sizeof(dst), "%s/%s", dir, base ? base + 1 : ch->img[i].path);
			for (int k = 0; k < i; k++)
				if (!strcmp(m->cs.f[k].dst, dst))
					snprintf(dst, sizeof(dst), "%s/%d_%s", dir, i, base ? base + 1 : ch->img[i].path);
			if (access(dst, F_OK) == 0) { /* another file, or the image itself: nothing to move there */
				reply = err_reply(0, "cannot move '%s': '%s' already exists", vm.name, dst);
				goto out;
			}
			ok = vmms_copyset_add(&m->cs, ch->img[i].path, dst, ch->img[i].parent) >= 0;
		}
		m->nimages = m->cs.n;
	}
	if (!(m->cp_id = calloc((size_t)(ncp ? ncp : 1), sizeof(*m->cp_id))))
		ok = false;
	const char *state_dir = snap ? snap : all ? all : NULL;
	char sdir[PATH_MAX + 32];
	if (state_dir)
		snprintf(sdir, sizeof(sdir), snap ? "%s" : "%s/Snapshots", state_dir);
	else if (strcmp(m->old_folder, m->new_folder))
		snprintf(sdir, sizeof(sdir), "%s/Snapshots", m->new_folder);
	else
		sdir[0] = '\0';
	for (int k = 0; ok && sdir[0] && k < ncp; k++) {
		if (!cps[k].state_file)
			continue;
		ok = mkdir_p(sdir) == 0;
		snprintf(dst, sizeof(dst), "%s/%s.vmrs", sdir, cps[k].id);
		if (ok && strcmp(dst, cps[k].state_file)) {
			snprintf(m->cp_id[m->ncp++], 37, "%s", cps[k].id);
			ok = vmms_copyset_add(&m->cs, cps[k].state_file, dst, -1) >= 0;
		}
	}
	if (ok && strcmp(m->old_folder, m->new_folder)) {
		ok = mkdir_p(m->new_folder) == 0;
		if (ok && vm.status.state == VM_SAVED) {
			char src[PATH_MAX];
			vmms_saved_state_path(&vm, src, sizeof(src));
			snprintf(dst, sizeof(dst), "%s/%s.vmrs", m->new_folder, vm.id);
			m->saved = true;
			ok = vmms_copyset_add(&m->cs, src, dst, -1) >= 0;
		}
	}
	char *data = ok ? journal_data(m) : NULL;
	m->jid = data ? inv_journal_add(s->inv, vm.id, "storage-move", "copying", data) : -1;
	free(data);
	if (m->jid < 0) {
		reply = err_reply(0, "cannot move the storage of '%s': %s", vm.name, ok ? inv_error(s->inv) : strerror(errno));
		goto out;
	}
	vmms_crash_point("move-intent");
	inv_set_status(s->inv, vm.id, next, vm.worker_pid, vm.worker_start, NULL, NULL);
	char id[37];
	new_guid(id);
	struct vmms_job *j = vmms_job_start(&s->jobs, id, vm.id, "storage-move", move_step, move_release, m, vmms_unix_ms());
	if (!j) {
		inv_journal_drop(s->inv, m->jid);
		vm_set_op(s, vm.id, VM_OPS_NONE);
		reply = err_reply(0, "too many jobs running");
		goto out;
	}
	m = NULL;
	vmms_jobs_run(&s->jobs, s, vmms_unix_ms());
	reply = vmms_job_reply(j);
out:
	if (m)
		move_release(m);
	free(ch);
	inv_cp_free(cps, ncp);
	inv_vm_free(&vm);
	return reply;
}

bool vmms_storage_move_recover(struct vmms *s, const struct inv_journal *e)
{
	if (strcmp(e->kind, "storage-move"))
		return false;
	json_t *d = json_loads(e->data ? e->data : "", 0, NULL);
	json_t *pairs = json_object_get(d, "pairs");
	const char *old_folder = json_string_value(json_object_get(d, "old_folder"));
	const char *new_folder = json_string_value(json_object_get(d, "new_folder"));
	if (!strcmp(e->step, "committed")) { /* the VM uses the copies: finish */
		delete_sources(pairs, old_folder, new_folder);
		vm_event(s, e->vm_id, "Warning", "Move-VMStorage was interrupted by a vmms restart after the switch: finished");
	} else { /* the VM uses the sources: the copies go */
		size_t i;
		json_t *p;
		json_array_foreach(pairs, i, p) {
			const char *src = json_string_value(json_array_get(p, 0)), *dst = json_string_value(json_array_get(p, 1));
			char tmp[PATH_MAX + 16];
			if (!src || !dst || !strcmp(src, dst))
				continue;
			snprintf(tmp, sizeof(tmp), "%s.partial", dst);
			unlink(tmp);
			unlink(dst);
		}
		if (old_folder && new_folder && strcmp(old_folder, new_folder))
			vmms_remove_tree(new_folder);
		vm_event(s, e->vm_id, "Warning", "Move-VMStorage was interrupted by a vmms restart: the VM stays where it was");
	}
	vm_set_op(s, e->vm_id, VM_OPS_NONE);
	inv_journal_drop(s->inv, e->id);
	json_decref(d);
	return true;
}

json_t *vmms_storage_move_request(struct vmms *s, const char *op, json_t *req)
{
	return strcmp(op, "move-vm-storage") ? NULL : op_move(s, req);
}
