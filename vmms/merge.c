/* Folding images no one needs out of a VM's disk chains: the merge job. cp_plan
 * (vmms/cptree.c) decides each step; this file does it.
 *
 * An offline fold of a leaf K into its parent F is made crash-safe by a redo file beside F
 * (<F>.merge-redo): K's own data is copied there and fsynced, the journal says "redo", and only
 * then is it written into F. The first write gives F a new identity (a VHDX's DataWriteGuid), so
 * K no longer opens on it: from then on the redo file, not K, is what a recovery replays. Then,
 * in one transaction, what used K uses F and the journal says "committed"; K and the redo file
 * go. A live merge (K is the running VM's disk) is the worker's {"op":"disk-merge"}; vmms
 * follows the worker's status and records F as the disk once the worker reports it done. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vhd/vdisk.h"
#include "vmms/cptree.h"

#define MERGE_BUDGET (64u << 20) /* bytes moved per step: the service keeps answering */
#define REDO_CHUNK (1u << 20)    /* the largest record of a redo file */
#define REDO_MAGIC "VMMSRDO1"
#define REDO_END UINT64_MAX
#define LIVE_POLL_MS 200

struct merge_ctx {
	char vm_id[37];
	enum { M_PLAN, M_REDO, M_APPLY, M_LIVE } phase;
	bool announce;           /* say in the event log what stays pending */
	int64_t jid;             /* the journal entry of the fold in progress */
	char parent[PATH_MAX], child[PATH_MAX], redo[PATH_MAX + 16];
	int index;               /* live: the worker's LUN (the VM's disk order) */
	struct vdisk *d;         /* REDO: the child (read); APPLY: the parent (written) */
	int fd;                  /* the redo file */
	uint64_t pos, size;      /* REDO: offset in the child; APPLY: in the redo file */
	bool applied_one;
	int64_t next_poll_ms;
	uint8_t *buf;
};

static void close_files(struct merge_ctx *c)
{
	if (c->d)
		vdisk_close(c->d);
	c->d = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void merge_release(void *p)
{
	struct merge_ctx *c = p;
	close_files(c);
	free(c->buf);
	free(c);
}

static struct merge_ctx *ctx_new(const char *vm_id)
{
	struct merge_ctx *c = calloc(1, sizeof(*c));
	if (!c || !(c->buf = malloc(REDO_CHUNK))) {
		free(c);
		return NULL;
	}
	snprintf(c->vm_id, sizeof(c->vm_id), "%s", vm_id);
	c->fd = -1;
	c->jid = -1;
	return c;
}

/* The VM's images as cp_plan sees them; imgs and g are malloc'd. */
static int load_graph(struct vmms *s, const struct inv_vm *vm, struct inv_image **imgs, struct cp_image **g, int *n)
{
	struct inv_checkpoint *cps = NULL;
	int ncp = 0;
	*g = NULL;
	if (inv_images(s->inv, vm->id, imgs, n) < 0 || inv_cp_list(s->inv, vm->id, &cps, &ncp) < 0)
		return -1;
	*g = calloc((size_t)(*n ? *n : 1), sizeof(**g));
	if (!*g) {
		inv_cp_free(cps, ncp);
		return -1;
	}
	for (int i = 0; i < *n; i++) {
		struct cp_image *x = &(*g)[i];
		const struct inv_image *im = &(*imgs)[i];
		x->parent = -1;
		x->active_lun = -1;
		x->owned = im->owned;
		for (int k = 0; im->parent && k < *n; k++)
			if (!strcmp((*imgs)[k].path, im->parent))
				x->parent = k;
		for (int k = 0; k < vm->ndisks; k++)
			if (!strcmp(vm->disks[k].path, im->path))
				x->active_lun = k;
		x->needed = x->active_lun >= 0;
		for (int c = 0; c < ncp && !x->needed; c++)
			for (int k = 0; k < cps[c].ndisks; k++)
				x->needed |= !strcmp(cps[c].disks[k].path, im->path);
	}
	inv_cp_free(cps, ncp);
	return 0;
}

/* Everything that used the child uses the parent; the journal says so in the same transaction. */
static int commit_fold(struct vmms *s, struct merge_ctx *c)
{
	if (inv_tx_begin(s->inv) < 0)
		return -1;
	if (inv_image_repath(s->inv, c->vm_id, c->child, c->parent) < 0 || inv_image_drop(s->inv, c->child) < 0 ||
	    inv_journal_step(s->inv, c->jid, "committed", NULL) < 0) {
		inv_tx_rollback(s->inv);
		return -1;
	}
	return inv_tx_commit(s->inv);
}

static void finish_fold(struct vmms *s, struct merge_ctx *c, const char *how)
{
	unlink(c->child);
	unlink(c->redo);
	inv_journal_drop(s->inv, c->jid);
	c->jid = -1;
	vm_event(s, c->vm_id, "Information", "%s merged into %s%s", c->child, c->parent, how);
	c->phase = M_PLAN;
}

static enum vmms_step fail_job(struct vmms *s, struct merge_ctx *c, struct vmms_job *j, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static enum vmms_step fail_job(struct vmms *s, struct merge_ctx *c, struct vmms_job *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->error, sizeof(j->error), fmt, ap);
	va_end(ap);
	close_files(c);
	vm_set_op(s, c->vm_id, VM_OPS_NONE);
	vm_event(s, c->vm_id, "Error", "merge failed: %s", j->error);
	return VMMS_STEP_FAILED;
}

static json_t *journal_data(const struct merge_ctx *c)
{
	return json_pack("{s:s, s:s, s:s, s:i}", "parent", c->parent, "child", c->child, "redo", c->redo, "index", c->index);
}

static int journal_add(struct vmms *s, struct merge_ctx *c, const char *kind)
{
	json_t *d = journal_data(c);
	char *txt = json_dumps(d, JSON_COMPACT);
	json_decref(d);
	c->jid = txt ? inv_journal_add(s->inv, c->vm_id, kind, "intent", txt) : -1;
	free(txt);
	return c->jid < 0 ? -1 : 0;
}

static bool write_all(int fd, const void *p, size_t n)
{
	for (const char *b = p; n;) {
		ssize_t k = write(fd, b, n);
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

static bool read_all(int fd, void *p, size_t n)
{
	for (char *b = p; n;) {
		ssize_t k = read(fd, b, n);
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

/* Opens the redo file and the parent for the second half of a fold. */
static int apply_open(struct merge_ctx *c, char *err, size_t errlen)
{
	char magic[8];
	uint64_t size;
	struct stat st;
	c->fd = open(c->redo, O_RDONLY | O_CLOEXEC);
	if (c->fd < 0 || fstat(c->fd, &st) < 0 || !read_all(c->fd, magic, 8) || memcmp(magic, REDO_MAGIC, 8) ||
	    !read_all(c->fd, &size, 8)) {
		snprintf(err, errlen, "the redo file %s is missing or not one", c->redo);
		return -1;
	}
	c->size = (uint64_t)st.st_size;
	c->pos = 16;
	if (vdisk_open(c->parent, VDISK_OPEN_RDWR, &c->d) < 0) {
		snprintf(err, errlen, "%s", vdisk_last_error());
		return -1;
	}
	if (vdisk_size(c->d) != size) {
		snprintf(err, errlen, "the redo file %s is for a disk of another size", c->redo);
		return -1;
	}
	return 0;
}

/* The next action of the plan, started. */
static enum vmms_step plan_step(struct vmms *s, struct merge_ctx *c, struct vmms_job *j)
{
	struct inv_vm vm;
	if (inv_find(s->inv, c->vm_id, &vm) != 1)
		return fail_job(s, c, j, "the virtual machine is gone");
	struct inv_image *imgs = NULL;
	struct cp_image *g = NULL;
	int n = 0, pending = 0;
	bool live = vm_state_has_worker(vm.status.state);
	enum vmms_step r = VMMS_STEP_MORE;
	if (load_graph(s, &vm, &imgs, &g, &n) < 0) {
		r = fail_job(s, c, j, "inventory: %s", inv_error(s->inv));
		goto out;
	}
	struct cp_action a = cp_plan(g, n, live, &pending);
	char err[PATH_MAX + 128];
	switch (a.kind) {
	case CP_NOTHING:
		if (c->announce && pending)
			vm_event(s, vm.id, "Information", "%d frozen disk(s) stay in the chain, merge pending: %s", pending,
				 live ? "merged automatically when the virtual machine is next Off"
				      : "other checkpoints' disks still depend on them");
		vm_set_op(s, vm.id, VM_OPS_NONE);
		r = VMMS_STEP_DONE;
		break;
	case CP_DELETE:
	case CP_FORGET:
		/* the file first: a crash between leaves a row whose file is gone, deleted again */
		if (a.kind == CP_DELETE && unlink(imgs[a.node].path) < 0 && errno != ENOENT) {
			r = fail_job(s, c, j, "cannot delete %s: %s", imgs[a.node].path, strerror(errno));
			break;
		}
		vmms_crash_point("merge-delete");
		if (inv_image_drop(s->inv, imgs[a.node].path) < 0)
			r = fail_job(s, c, j, "inventory: %s", inv_error(s->inv));
		else if (a.kind == CP_DELETE)
			vm_event(s, vm.id, "Information", "%s deleted: no checkpoint needs it", imgs[a.node].path);
		break;
	case CP_FOLD:
	case CP_LIVE_MERGE:
		snprintf(c->parent, sizeof(c->parent), "%s", imgs[a.node].path);
		snprintf(c->child, sizeof(c->child), "%s", imgs[a.child].path);
		snprintf(c->redo, sizeof(c->redo), "%s.merge-redo", c->parent);
		c->index = a.lun;
		if (journal_add(s, c, a.kind == CP_FOLD ? "fold" : "live-merge") < 0) {
			r = fail_job(s, c, j, "inventory: %s", inv_error(s->inv));
			break;
		}
		j->percent = 0;
		if (a.kind == CP_LIVE_MERGE) {
			vmms_crash_point("live-merge-intent");
			json_t *w = worker_vm_request(&vm, json_pack("{s:s, s:i}", "op", "disk-merge", "lun", a.lun), 5000);
			if (!json_is_true(json_object_get(w, "ok"))) {
				inv_journal_drop(s->inv, c->jid);
				r = fail_job(s, c, j, "the worker does not merge %s into %s: %s", c->child, c->parent, worker_error(w));
			} else {
				vm_event(s, vm.id, "Information", "merging %s into %s (live)", c->child, c->parent);
				c->phase = M_LIVE;
			}
			json_decref(w);
			break;
		}
		vmms_crash_point("fold-intent");
		uint64_t size;
		if (vdisk_open(c->child, 0, &c->d) < 0) {
			snprintf(err, sizeof(err), "%s", vdisk_last_error());
			inv_journal_drop(s->inv, c->jid);
			r = fail_job(s, c, j, "%s", err);
			break;
		}
		size = vdisk_size(c->d);
		c->fd = open(c->redo, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (c->fd < 0 || !write_all(c->fd, REDO_MAGIC, 8) || !write_all(c->fd, &size, 8)) {
			inv_journal_drop(s->inv, c->jid);
			r = fail_job(s, c, j, "cannot write %s: %s", c->redo, strerror(errno));
			break;
		}
		c->size = size;
		c->pos = 0;
		c->phase = M_REDO;
		break;
	}
out:
	inv_images_free(imgs, n);
	free(g);
	inv_vm_free(&vm);
	return r;
}

/* The child's own data into the redo file, a budget at a time. */
static enum vmms_step redo_step(struct vmms *s, struct merge_ctx *c, struct vmms_job *j)
{
	for (uint64_t moved = 0; c->pos < c->size && moved < MERGE_BUDGET;) {
		bool alloc;
		uint64_t run, want = c->size - c->pos < REDO_CHUNK ? c->size - c->pos : REDO_CHUNK;
		if (vdisk_block_status(c->d, c->pos, want, &alloc, &run) < 0 || !run)
			return fail_job(s, c, j, "%s", vdisk_last_error());
		if (alloc) {
			uint64_t hdr[2] = { c->pos, run };
			if (vdisk_read(c->d, c->buf, c->pos, run) < 0)
				return fail_job(s, c, j, "%s", vdisk_last_error());
			if (!write_all(c->fd, hdr, sizeof(hdr)) || !write_all(c->fd, c->buf, run))
				return fail_job(s, c, j, "cannot write %s: %s", c->redo, strerror(errno));
			moved += run;
		}
		c->pos += run;
	}
	j->percent = c->size ? (int)(c->pos * 50 / c->size) : 50;
	if (c->pos < c->size)
		return VMMS_STEP_MORE;
	uint64_t end[2] = { REDO_END, 0 };
	if (!write_all(c->fd, end, sizeof(end)) || fsync(c->fd) < 0)
		return fail_job(s, c, j, "cannot write %s: %s", c->redo, strerror(errno));
	close_files(c);
	if (inv_journal_step(s->inv, c->jid, "redo", NULL) < 0)
		return fail_job(s, c, j, "inventory: %s", inv_error(s->inv));
	vmms_crash_point("fold-redo");
	char err[PATH_MAX + 128];
	if (apply_open(c, err, sizeof(err)) < 0)
		return fail_job(s, c, j, "%s", err);
	c->phase = M_APPLY;
	return VMMS_STEP_MORE;
}

/* The redo file into the parent; then the chain is recorded without the child. */
static enum vmms_step apply_step(struct vmms *s, struct merge_ctx *c, struct vmms_job *j)
{
	uint64_t size = vdisk_size(c->d);
	for (uint64_t moved = 0;;) {
		uint64_t hdr[2];
		if (!read_all(c->fd, hdr, sizeof(hdr)))
			return fail_job(s, c, j, "the redo file %s is cut short", c->redo);
		if (hdr[0] == REDO_END)
			break;
		if (hdr[0] % 512 || hdr[1] % 512 || !hdr[1] || hdr[1] > REDO_CHUNK || hdr[0] > size || hdr[1] > size - hdr[0])
			return fail_job(s, c, j, "the redo file %s is damaged", c->redo);
		if (!read_all(c->fd, c->buf, hdr[1]))
			return fail_job(s, c, j, "the redo file %s is cut short", c->redo);
		if (vdisk_write(c->d, c->buf, hdr[0], hdr[1]) < 0)
			return fail_job(s, c, j, "%s", vdisk_last_error());
		if (!c->applied_one) {
			c->applied_one = true;
			vmms_crash_point("fold-apply"); /* the parent half written: only the redo file holds the child now */
		}
		c->pos += sizeof(hdr) + hdr[1];
		moved += hdr[1];
		j->percent = 50 + (int)(c->pos * 50 / (c->size ? c->size : 1));
		if (moved >= MERGE_BUDGET)
			return VMMS_STEP_MORE;
	}
	int fr = vdisk_flush(c->d);
	vdisk_close(c->d);
	c->d = NULL;
	close_files(c);
	if (fr < 0)
		return fail_job(s, c, j, "%s", vdisk_last_error());
	if (commit_fold(s, c) < 0)
		return fail_job(s, c, j, "inventory: %s", inv_error(s->inv));
	vmms_crash_point("fold-committed");
	finish_fold(s, c, "");
	j->percent = 0;
	return VMMS_STEP_MORE;
}

/* The worker's merge: its status says how far; done: the LUN uses the parent. */
static enum vmms_step live_step(struct vmms *s, struct merge_ctx *c, struct vmms_job *j)
{
	if (mono_ms() < c->next_poll_ms)
		return VMMS_STEP_MORE;
	c->next_poll_ms = mono_ms() + LIVE_POLL_MS;
	struct inv_vm vm;
	if (inv_find(s->inv, c->vm_id, &vm) != 1)
		return fail_job(s, c, j, "the virtual machine is gone");
	enum vmms_step r = VMMS_STEP_MORE;
	if (!vm_state_has_worker(vm.status.state)) {
		inv_journal_drop(s->inv, c->jid);
		r = fail_job(s, c, j, "the virtual machine turned off during the live merge of %s; merged offline instead", c->child);
		s->merge_recheck = true;
		goto out;
	}
	json_t *st = worker_vm_call(&vm, "{\"op\":\"status\"}", 2000), *disk = NULL, *d;
	size_t i;
	json_array_foreach(json_object_get(st, "disks"), i, d)
		if (json_integer_value(json_object_get(d, "lun")) == c->index)
			disk = d;
	json_t *m = json_object_get(disk, "merge");
	const char *state = json_string_value(json_object_get(m, "state"));
	const char *path = json_string_value(json_object_get(disk, "path"));
	if (!disk) {
		/* no answer (busy) or no such LUN yet: look again */
	} else if (path && !strcmp(path, c->parent)) { /* done: the LUN is on the parent */
		if (commit_fold(s, c) < 0) {
			r = fail_job(s, c, j, "inventory: %s", inv_error(s->inv));
		} else {
			vmms_crash_point("live-merge-committed");
			finish_fold(s, c, " (live)");
		}
	} else if (state && !strcmp(state, "failed")) {
		const char *e = json_string_value(json_object_get(m, "error"));
		inv_journal_drop(s->inv, c->jid);
		r = fail_job(s, c, j, "the worker's merge of %s failed: %s", c->child, e ? e : "no reason given");
	} else if (state && !strcmp(state, "running")) {
		j->percent = (int)json_integer_value(json_object_get(m, "percent"));
	} else if (!state || strcmp(state, "done")) { /* "done" with the child still in use: a moment's lag */
		inv_journal_drop(s->inv, c->jid);
		r = fail_job(s, c, j, "the worker is not merging %s", c->child);
	}
	json_decref(st);
out:
	inv_vm_free(&vm);
	return r;
}

static enum vmms_step merge_step(void *owner, struct vmms_job *j)
{
	struct vmms *s = owner;
	struct merge_ctx *c = j->ctx;
	switch (c->phase) {
	case M_REDO: return redo_step(s, c, j);
	case M_APPLY: return apply_step(s, c, j);
	case M_LIVE: return live_step(s, c, j);
	default: return plan_step(s, c, j);
	}
}

static struct vmms_job *start_job(struct vmms *s, struct merge_ctx *c)
{
	char id[37];
	new_guid(id);
	struct vmms_job *j = vmms_job_start(&s->jobs, id, c->vm_id, "merge", merge_step, merge_release, c, vmms_unix_ms());
	if (!j) {
		merge_release(c);
		return NULL;
	}
	vm_set_op(s, c->vm_id, VM_OPS_MERGING_DISK);
	return j;
}

struct vmms_job *vmms_merge_start(struct vmms *s, const char *vm_id, bool announce)
{
	struct inv_vm vm;
	if (vmms_job_running_for(&s->jobs, vm_id) || inv_find(s->inv, vm_id, &vm) != 1)
		return NULL;
	struct inv_image *imgs = NULL;
	struct cp_image *g = NULL;
	int n = 0, pending = 0;
	struct vmms_job *j = NULL;
	bool live = vm_state_has_worker(vm.status.state);
	if (vm_op_allowed(vm.status, VM_OP_MERGE_DISK) && load_graph(s, &vm, &imgs, &g, &n) == 0) {
		struct cp_action a = cp_plan(g, n, live, &pending);
		struct merge_ctx *c = a.kind != CP_NOTHING ? ctx_new(vm.id) : NULL;
		if (c) {
			c->announce = announce;
			j = start_job(s, c);
		} else if (announce && pending) {
			vm_event(s, vm.id, "Information", "%d frozen disk(s) stay in the chain, merge pending: %s", pending,
				 live ? "merged automatically when the virtual machine is next Off"
				      : "other checkpoints' disks still depend on them");
		}
	}
	inv_images_free(imgs, n);
	free(g);
	inv_vm_free(&vm);
	return j;
}

void vmms_merge_recover(struct vmms *s, const struct inv_journal *e)
{
	json_t *d = json_loads(e->data ? e->data : "", 0, NULL);
	const char *parent = jstr(d, "parent"), *child = jstr(d, "child"), *redo = jstr(d, "redo");
	struct merge_ctx *c = parent && child && redo ? ctx_new(e->vm_id) : NULL;
	struct inv_vm vm;
	bool have_vm = inv_find(s->inv, e->vm_id, &vm) == 1;
	if (!c || !have_vm || strlen(parent) >= sizeof(c->parent) || strlen(child) >= sizeof(c->child) ||
	    strlen(redo) >= sizeof(c->redo)) {
		inv_journal_drop(s->inv, e->id); /* nothing left to act on */
		goto out;
	}
	snprintf(c->parent, sizeof(c->parent), "%s", parent);
	snprintf(c->child, sizeof(c->child), "%s", child);
	snprintf(c->redo, sizeof(c->redo), "%s", redo);
	c->index = (int)json_integer_value(json_object_get(d, "index"));
	c->jid = e->id;
	bool fold = !strcmp(e->kind, "fold");
	if (!strcmp(e->step, "committed")) {
		finish_fold(s, c, " (finished after a vmms restart)");
	} else if (fold && !strcmp(e->step, "redo")) {
		char err[PATH_MAX + 128];
		c->phase = M_APPLY;
		if (apply_open(c, err, sizeof(err)) < 0) {
			vm_event(s, vm.id, "Error", "an interrupted merge of %s into %s cannot go on: %s", child, parent, err);
		} else if (start_job(s, c)) {
			vm_event(s, vm.id, "Warning", "the merge of %s into %s was cut off by a vmms restart; it goes on", child, parent);
			c = NULL;
		}
	} else if (fold) { /* the parent was not touched: the redo file goes, the plan runs again */
		unlink(c->redo);
		inv_journal_drop(s->inv, e->id);
		vm_event(s, vm.id, "Warning", "the merge of %s into %s was cut off by a vmms restart before it began; it starts over",
			 child, parent);
		s->merge_recheck = true;
	} else { /* live: the worker goes on with it, or has finished, or never got the request */
		c->phase = M_LIVE;
		json_t *st = vm_state_has_worker(vm.status.state) ? worker_vm_call(&vm, "{\"op\":\"status\"}", 2000) : NULL;
		json_t *wd = json_array_get(json_object_get(st, "disks"), (size_t)c->index);
		const char *wp = json_string_value(json_object_get(wd, "path"));
		const char *ms = json_string_value(json_object_get(json_object_get(wd, "merge"), "state"));
		bool begun = (ms && !strcmp(ms, "running")) || (wp && !strcmp(wp, c->parent));
		json_decref(st);
		if (begun && start_job(s, c)) {
			vm_event(s, vm.id, "Warning", "a live merge of %s was cut off by a vmms restart; following the worker's again", child);
			c = NULL;
		} else {
			inv_journal_drop(s->inv, e->id);
			s->merge_recheck = true;
		}
	}
out:
	if (c)
		merge_release(c);
	if (have_vm)
		inv_vm_free(&vm);
	json_decref(d);
}
