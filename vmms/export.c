/* Export-VM, Import-VM and Compare-VM (docs/vmms.md, "Export and import").
 *
 * An export is a folder in Hyper-V's shape: <P>/<Name>/Virtual Machines/<id>.json (the
 * configuration, include/vmms/vmconfig.h), Virtual Hard Disks/ (every image of the VM's chains,
 * the checkpoints' too, parents relinked to the copies), Snapshots/ (the checkpoints' saved
 * states) and Virtual Machines/<id>.vmrs for a Saved VM. It is written as <Name>.partial and
 * renamed when complete, so a folder without ".partial" is always a whole export; a vmms killed
 * meanwhile leaves a journal entry and the next start deletes the partial folder.
 *
 * Import reads the configuration (hostile input: vmcfg_parse), compares it with this host (the
 * Compare-VM report) and registers the VM where the files are, or copies them first (a job; the
 * journal lists the copies so a crash leaves none behind). The inventory sees the VM in one
 * transaction at the end. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vhd/vdisk.h"
#include "vmms/vmconfig.h"

#define STEP_BYTES (32u << 20) /* copied per main-loop turn */
#define ERR_IMPORT 32784       /* Hyper-V: the import failed */
#define MSG_SWITCH_MISSING 33012
#define MSG_VHD_MISSING 40010

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int vmms_remove_tree(const char *path)
{
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT ? -1 : 0;
}

/* Import-VM's failure: error 32784 with the cause. */
__attribute__((format(printf, 1, 2))) static json_t *import_err(const char *fmt, ...)
{
	char msg[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_reply(ERR_IMPORT, "%s (error 32784: the import failed)", msg);
}

static char *dump(json_t *o)
{
	char *t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return t;
}

/* Writes text to path through a temporary file, fsynced, renamed. */
static int write_file(const char *path, const char *text, char *err, size_t errlen)
{
	char tmp[PATH_MAX + 128];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "path too long");
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t len = strlen(text), off = 0;
	while (fd >= 0 && off < len) {
		ssize_t k = write(fd, text + off, len - off);
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	bool ok = fd >= 0 && off == len && fsync(fd) == 0;
	if (fd >= 0 && close(fd) < 0)
		ok = false;
	if (ok && rename(tmp, path) == 0)
		return 0;
	snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno ? errno : EIO));
	unlink(tmp);
	return -1;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* ---- the configuration of an inventory VM ---- */

/* "Virtual Hard Disks/<file name>", with a number in front when two images share a name. */
static void image_rel(const struct vmcfg *c, const char *host_path, char *out, size_t len)
{
	snprintf(out, len, "Virtual Hard Disks/%s", base_name(host_path));
	for (int n = 2; vmcfg_image_index(c, out) >= 0; n++)
		snprintf(out, len, "Virtual Hard Disks/%d_%s", n, base_name(host_path));
}

static int chain_rel(const struct vmms_chain *ch, const struct vmcfg *c, const char *path)
{
	for (int i = 0; i < ch->n; i++)
		if (!strcmp(ch->img[i].path, path))
			return i < c->nimages ? i : -1;
	return -1;
}

/* The VM's configuration for an export (ch: its images, index for index with c->images). */
static int build_config(struct vmms *s, const struct inv_vm *vm, const struct inv_checkpoint *cps, int ncp,
			const struct vmms_chain *ch, struct vmcfg *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->exported_ms = vmms_unix_ms();
	snprintf(c->id, sizeof(c->id), "%s", vm->id);
	snprintf(c->name, sizeof(c->name), "%s", vm->name);
	c->generation = vm->generation;
	c->cpus = vm->cpus;
	c->memory = vm->memory;
	snprintf(c->kernel, sizeof(c->kernel), "%s", vm->kernel ? vm->kernel : "");
	snprintf(c->initrd, sizeof(c->initrd), "%s", vm->initrd ? vm->initrd : "");
	c->has_cmdline = vm->cmdline != NULL;
	snprintf(c->cmdline, sizeof(c->cmdline), "%s", vm->cmdline ? vm->cmdline : "");
	snprintf(c->notes, sizeof(c->notes), "%s", vm->notes ? vm->notes : "");
	snprintf(c->auto_start, sizeof(c->auto_start), "%s", vm->auto_start ? vm->auto_start : "StartIfRunning");
	snprintf(c->auto_stop, sizeof(c->auto_stop), "%s", vm->auto_stop ? vm->auto_stop : "Save");
	snprintf(c->checkpoint_type, sizeof(c->checkpoint_type), "%s", vm->checkpoint_type[0] ? vm->checkpoint_type : "Production");
	snprintf(c->parent_checkpoint, sizeof(c->parent_checkpoint), "%s", vm->parent_checkpoint);
	c->ic_disabled = vm->ic_disabled;
	c->saved = vm->status.state == VM_SAVED;
	if (c->saved)
		snprintf(c->saved_state, sizeof(c->saved_state), "Virtual Machines/%s.vmrs", vm->id);
	for (int i = 0; i < ch->n; i++) {
		image_rel(c, ch->img[i].path, c->images[i].path, sizeof(c->images[i].path));
		c->images[i].owned = ch->img[i].owned;
		c->nimages = i + 1;
	}
	for (int i = 0; i < ch->n; i++)
		c->images[i].parent = ch->img[i].parent;
	c->ndisks = vm->ndisks;
	for (int i = 0; i < vm->ndisks; i++)
		c->disks[i] = (struct vmcfg_disk){ vm->disks[i].controller, vm->disks[i].lun, chain_rel(ch, c, vm->disks[i].path),
						   vm->disks[i].max_iops, vm->disks[i].max_bandwidth };
	c->cpu_maximum = vmms_cpu_maximum(vm);
	c->cpu_reserve = vm->cpu_reserve;
	c->cpu_weight = vmms_cpu_weight(vm);
	if (ncp > VMCFG_MAX_CHECKPOINTS) {
		snprintf(err, errlen, "more than %d checkpoints", VMCFG_MAX_CHECKPOINTS);
		return -1;
	}
	c->ncheckpoints = ncp;
	for (int k = 0; k < ncp; k++) {
		struct vmcfg_checkpoint *cp = &c->checkpoints[k];
		snprintf(cp->id, sizeof(cp->id), "%s", cps[k].id);
		snprintf(cp->parent_id, sizeof(cp->parent_id), "%s", cps[k].parent_id);
		snprintf(cp->name, sizeof(cp->name), "%s", cps[k].name);
		snprintf(cp->type, sizeof(cp->type), "%s", cps[k].type);
		cp->created_ms = cps[k].created_ms;
		cp->cpus = cps[k].cpus;
		cp->memory = cps[k].memory;
		if (cps[k].state_file)
			snprintf(cp->state_file, sizeof(cp->state_file), "Snapshots/%s.vmrs", cps[k].id);
		cp->ndisks = cps[k].ndisks;
		for (int i = 0; i < cps[k].ndisks; i++)
			cp->disks[i] = (struct vmcfg_disk){ .controller = cps[k].disks[i].controller, .lun = cps[k].disks[i].lun,
							    .image = chain_rel(ch, c, cps[k].disks[i].path) };
	}
	struct inv_nic *nics;
	int nn;
	if (inv_nic_list(s->inv, vm->id, &nics, &nn) < 0) {
		snprintf(err, errlen, "inventory: %s", inv_error(s->inv));
		return -1;
	}
	for (int i = 0; i < nn && i < VMCFG_MAX_NICS; i++) {
		struct vmcfg_nic *n = &c->nics[c->nnics++];
		n->slot = nics[i].slot;
		snprintf(n->name, sizeof(n->name), "%s", nics[i].name);
		snprintf(n->mac, sizeof(n->mac), "%s", nics[i].mac);
		n->static_mac = nics[i].static_mac;
		n->vlan = nics[i].vlan;
		n->mac_spoofing = nics[i].mac_spoofing;
		struct inv_switch sw;
		if (nics[i].switch_id[0] && inv_switch_find(s->inv, nics[i].switch_id, &sw) == 1)
			snprintf(n->switch_name, sizeof(n->switch_name), "%s", sw.name);
	}
	free(nics);
	return 0;
}

/* ---- Export-VM ---- */

struct export_ctx {
	char vm_id[37];
	int64_t jid;
	char dir[PATH_MAX], partial[PATH_MAX + 16];
	struct vmcfg *cfg;
	struct vmms_copyset cs;
};

static void export_release(void *p)
{
	struct export_ctx *x = p;
	vmms_copyset_free(&x->cs, false); /* a partial export stays for the journal's recovery */
	free(x->cfg);
	free(x);
}

static enum vmms_step export_fail(struct vmms *s, struct export_ctx *x, struct vmms_job *j, const char *why)
{
	vmms_copyset_free(&x->cs, false);
	vmms_remove_tree(x->partial);
	inv_journal_drop(s->inv, x->jid);
	vm_set_op(s, x->vm_id, VM_OPS_NONE);
	vm_event(s, x->vm_id, "Error", "export to %s failed: %s", x->dir, why);
	snprintf(j->error, sizeof(j->error), "%s", why);
	return VMMS_STEP_FAILED;
}

static enum vmms_step export_step(void *owner, struct vmms_job *j)
{
	struct vmms *s = owner;
	struct export_ctx *x = j->ctx;
	char err[2 * PATH_MAX + 160];
	int r = vmms_copyset_step(&x->cs, STEP_BYTES, err, sizeof(err));
	if (r < 0)
		return export_fail(s, x, j, err);
	j->percent = vmms_copyset_percent(&x->cs) * 95 / 100;
	if (r > 0)
		return VMMS_STEP_MORE;
	vmms_crash_point("export-copied");
	char path[PATH_MAX + 96], dir[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/Virtual Machines/%s.json", x->partial, x->cfg->id);
	char *text = dump(vmcfg_to_json(x->cfg));
	if (!text)
		return export_fail(s, x, j, "out of memory");
	r = write_file(path, text, err, sizeof(err));
	free(text);
	if (r < 0)
		return export_fail(s, x, j, err);
	static const char *const subs[] = { "Virtual Machines", "Virtual Hard Disks", "Snapshots", "" };
	for (int i = 0; i < 4; i++) {
		snprintf(dir, sizeof(dir), "%s%s%s", x->partial, *subs[i] ? "/" : "", subs[i]);
		vmms_fsync_dir(dir);
	}
	vmms_crash_point("export-written");
	if (rename(x->partial, x->dir) < 0) {
		snprintf(err, sizeof(err), "cannot rename %s to %s: %s", x->partial, x->dir, strerror(errno));
		return export_fail(s, x, j, err);
	}
	snprintf(dir, sizeof(dir), "%s", x->dir);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	vmms_fsync_dir(dir);
	vmms_crash_point("export-renamed");
	inv_journal_drop(s->inv, x->jid);
	vm_set_op(s, x->vm_id, VM_OPS_NONE);
	vm_event(s, x->vm_id, "Information", "exported to %s (%d images, %d checkpoints)", x->dir, x->cfg->nimages,
		 x->cfg->ncheckpoints);
	return VMMS_STEP_DONE;
}

static json_t *op_export(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *path = jstr(req, "path");
	json_t *reply = NULL;
	struct stat st;
	struct inv_checkpoint *cps = NULL;
	int ncp = 0;
	struct vmms_chain *ch = NULL;
	struct export_ctx *x = NULL;
	char err[PATH_MAX + 160];
	struct vm_status next;
	char checked[PATH_MAX];
	if (!path || path[0] != '/' || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		reply = err_reply(0, "-Path '%s' is not an existing folder (absolute path needed)", path ? path : "");
	} else if (!vmms_caller_path(s, path, VMMS_CALLER_DIR, "-Path", checked, sizeof(checked), &reply)) {
	} else if (vm.status.state != VM_OFF && vm.status.state != VM_SAVED) {
		/* the worker holds the disks open read-write and a live checkpoint needs it to let go */
		reply = conflict(&vm, "be exported while it runs (Save-VM or Stop-VM it first)");
	} else if (vm_transition(vm.status, VM_OP_EXPORT, &next)) {
		reply = conflict(&vm, "be exported now");
	}
	if (reply)
		goto out;
	if (!(x = calloc(1, sizeof(*x))) || !(x->cfg = malloc(sizeof(*x->cfg))) || !(ch = malloc(sizeof(*ch)))) {
		reply = err_reply(0, "out of memory");
		goto out;
	}
	snprintf(x->vm_id, sizeof(x->vm_id), "%s", vm.id);
	x->jid = -1;
	if (snprintf(x->dir, sizeof(x->dir), "%s/%s", path, vm.name) >= (int)sizeof(x->dir) - 80) {
		reply = err_reply(0, "-Path is too long");
		goto out;
	}
	snprintf(x->partial, sizeof(x->partial), "%s.partial", x->dir);
	if (access(x->dir, F_OK) == 0 || access(x->partial, F_OK) == 0) {
		reply = err_reply(0, "cannot export '%s': '%s' (or its .partial) already exists", vm.name, x->dir);
		goto out;
	}
	if (inv_cp_list(s->inv, vm.id, &cps, &ncp) < 0) {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		goto out;
	}
	if (vmms_chain_load(s, &vm, cps, ncp, ch, err, sizeof(err)) < 0 ||
	    build_config(s, &vm, cps, ncp, ch, x->cfg, err, sizeof(err)) < 0) {
		reply = err_reply(0, "cannot export '%s': %s", vm.name, err);
		goto out;
	}
	char dst[PATH_MAX + 16 + VMCFG_PATH_MAX], src[PATH_MAX];
	bool ok = true;
	for (int i = 0; ok && i < ch->n; i++) {
		snprintf(dst, sizeof(dst), "%s/%s", x->partial, x->cfg->images[i].path);
		ok = vmms_copyset_add(&x->cs, ch->img[i].path, dst, ch->img[i].parent) >= 0;
	}
	for (int k = 0; ok && k < ncp; k++)
		if (cps[k].state_file) {
			snprintf(dst, sizeof(dst), "%s/%s", x->partial, x->cfg->checkpoints[k].state_file);
			ok = vmms_copyset_add(&x->cs, cps[k].state_file, dst, -1) >= 0;
		}
	if (ok && x->cfg->saved) {
		vmms_saved_state_path(&vm, src, sizeof(src));
		snprintf(dst, sizeof(dst), "%s/%s", x->partial, x->cfg->saved_state);
		ok = vmms_copyset_add(&x->cs, src, dst, -1) >= 0;
	}
	if (!ok) {
		reply = err_reply(0, "cannot export '%s': a path is too long", vm.name);
		goto out;
	}
	char *data = dump(json_pack("{s:s, s:s}", "partial", x->partial, "dir", x->dir));
	x->jid = data ? inv_journal_add(s->inv, vm.id, "export", "copying", data) : -1;
	free(data);
	if (x->jid < 0) {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		goto out;
	}
	vmms_crash_point("export-intent");
	static const char *const subs[] = { "Virtual Machines", "Virtual Hard Disks", "Snapshots" };
	for (int i = 0; i < 3 && ok; i++) {
		snprintf(dst, sizeof(dst), "%s/%s", x->partial, subs[i]);
		ok = mkdir_p(dst) == 0;
	}
	if (!ok) {
		reply = err_reply(0, "cannot create %s: %s", dst, strerror(errno));
		vmms_remove_tree(x->partial);
		inv_journal_drop(s->inv, x->jid);
		goto out;
	}
	inv_set_status(s->inv, vm.id, next, vm.worker_pid, vm.worker_start, NULL, NULL);
	char id[37];
	new_guid(id);
	struct vmms_job *j = vmms_job_start(&s->jobs, id, vm.id, "export", export_step, export_release, x, vmms_unix_ms());
	if (!j) {
		vmms_remove_tree(x->partial);
		inv_journal_drop(s->inv, x->jid);
		vm_set_op(s, vm.id, VM_OPS_NONE);
		reply = err_reply(0, "too many jobs running");
		goto out;
	}
	char where[PATH_MAX];
	snprintf(where, sizeof(where), "%s", x->dir);
	x = NULL; /* the job's now */
	vmms_jobs_run(&s->jobs, s, vmms_unix_ms());
	reply = vmms_job_reply(j);
	if (j->state != VMMS_JOB_FAILED)
		json_object_set_new(reply, "path", json_string(where));
out:
	if (x)
		export_release(x);
	free(ch);
	inv_cp_free(cps, ncp);
	inv_vm_free(&vm);
	return reply;
}

/* ---- Import-VM and Compare-VM ---- */

struct import_plan {
	struct vmcfg cfg;
	char file[PATH_MAX];            /* the configuration */
	char dir[PATH_MAX];             /* the export folder */
	bool copy;
	char id[37];                    /* the VM's id here */
	char cp_id[VMCFG_MAX_CHECKPOINTS][37];
	char vm_folder[PATH_MAX];
	char img[VMCFG_MAX_IMAGES][PATH_MAX];      /* each image's path here */
	char cp_state[VMCFG_MAX_CHECKPOINTS][PATH_MAX];
	char saved[PATH_MAX];           /* the saved state here: <VM folder>/<id>.vmrs */
	char nic_switch[VMCFG_MAX_NICS][37];
	char nic_mac[VMCFG_MAX_NICS][13];
	bool keep_kernel, keep_initrd;
	json_t *report;                 /* the Compare-VM report */
	bool blocked;
	int64_t jid;
	struct vmms_copyset cs;
};

static void plan_free(struct import_plan *p)
{
	if (!p)
		return;
	vmms_copyset_free(&p->cs, false);
	json_decref(p->report);
	free(p);
}

static void incompat(struct import_plan *p, int msg_id, const char *source, bool blocking, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void incompat(struct import_plan *p, int msg_id, const char *source, bool blocking, const char *fmt, ...)
{
	char msg[PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_array_append_new(p->report, json_pack("{s:s, s:i, s:s, s:b}", "message", msg, "message_id", msg_id, "source",
						   source, "blocking", blocking));
	p->blocked |= blocking;
}

/* The configuration a -Path names: the .json itself, or the one in <P>/Virtual Machines/. */
static json_t *find_config(const char *path, struct import_plan *p)
{
	struct stat st;
	if (!path || path[0] != '/' || stat(path, &st) < 0)
		return import_err("Import failed: '%s' does not exist (absolute path needed)", path ? path : "");
	if (S_ISREG(st.st_mode)) {
		snprintf(p->file, sizeof(p->file), "%s", path);
		snprintf(p->dir, sizeof(p->dir), "%s", path);
		for (int up = 0; up < 2; up++) { /* <dir>/Virtual Machines/<id>.json */
			char *slash = strrchr(p->dir, '/');
			if (!slash || slash == p->dir)
				return import_err("Import failed: '%s' is not in an export's 'Virtual Machines' folder", path);
			*slash = '\0';
		}
		return NULL;
	}
	char vms[PATH_MAX + 32];
	snprintf(p->dir, sizeof(p->dir), "%s", path);
	snprintf(vms, sizeof(vms), "%s/Virtual Machines", path);
	DIR *d = opendir(vms);
	if (!d)
		return import_err("Import failed: '%s' has no 'Virtual Machines' folder", path);
	int found = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n > 5 && !strcmp(de->d_name + n - 5, ".json")) {
			found++;
			if (snprintf(p->file, sizeof(p->file), "%s/%s", vms, de->d_name) >= (int)sizeof(p->file))
				found = -1000; /* cannot be named */
		}
	}
	closedir(d);
	if (found != 1)
		return import_err("Import failed: '%s' holds %d configuration files, not one: name the .json", vms, found);
	return NULL;
}

static json_t *read_config(struct import_plan *p)
{
	int fd = open(p->file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	char err[512];
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return import_err("Import failed: cannot read '%s': %s", p->file, fd < 0 ? strerror(errno) : "not a regular file");
	}
	if ((uint64_t)st.st_size > VMCFG_FILE_MAX) {
		close(fd);
		return import_err("Import failed: the configuration '%s' is damaged: larger than %u bytes", p->file, VMCFG_FILE_MAX);
	}
	char *text = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (text && got < (size_t)st.st_size) {
		ssize_t k = read(fd, text + got, (size_t)st.st_size - got);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	int r = text ? vmcfg_parse(text, got, &p->cfg, err, sizeof(err)) : (snprintf(err, sizeof(err), "out of memory"), -1);
	free(text);
	if (r < 0)
		return import_err("Import failed: the configuration '%s' is damaged: %s", p->file, err);
	return NULL;
}

/* "Virtual Hard Disks/a/b.vhdx" -> "a_b.vhdx": the file's name in the destination folder. */
static void flat_name(const char *rel, char *out, size_t len)
{
	const char *r = strchr(rel, '/') + 1;
	snprintf(out, len, "%s", r);
	for (char *c = out; *c; c++)
		if (*c == '/')
			*c = '_';
}

static bool exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

/* Does a VM of the inventory use the image (its chains, as vmms tracks them)? */
static bool image_in_use(struct vmms *s, const char *path)
{
	struct inv_vm *vms;
	int n;
	bool used = false;
	if (inv_list(s->inv, &vms, &n) < 0)
		return false;
	for (int i = 0; i < n; i++) {
		struct inv_image *imgs;
		int m;
		for (int d = 0; d < vms[i].ndisks; d++)
			used |= !strcmp(vms[i].disks[d].path, path);
		if (inv_images(s->inv, vms[i].id, &imgs, &m) == 0) {
			for (int k = 0; k < m; k++)
				used |= !strcmp(imgs[k].path, path);
			inv_images_free(imgs, m);
		}
		inv_vm_free(&vms[i]);
	}
	free(vms);
	return used;
}

/* Decides where everything goes and what does not fit this host; an error reply, or NULL with
 * *out (report in (*out)->report). */
static json_t *plan_import(struct vmms *s, json_t *req, struct import_plan **out)
{
	struct import_plan *p = calloc(1, sizeof(*p));
	if (!p)
		return err_reply(0, "out of memory");
	p->report = json_array();
	p->jid = -1;
	p->copy = json_is_true(json_object_get(req, "copy"));
	bool new_id = json_is_true(json_object_get(req, "generate_new_id"));
	const char *vhd_dest = jstr(req, "vhd_destination_path"), *vm_path = jstr(req, "virtual_machine_path");
	const char *snap_path = jstr(req, "snapshot_file_path");
	json_t *e = NULL;
	const char *opts[] = { vhd_dest, vm_path, snap_path };
	char checked[PATH_MAX];
	for (int i = 0; i < 3 && !e; i++)
		if (opts[i] && (!p->copy || opts[i][0] != '/'))
			e = err_reply(0, "-VhdDestinationPath, -VirtualMachinePath and -SnapshotFilePath need -Copy and an absolute path");
		else if (opts[i])
			vmms_caller_path(s, opts[i], VMMS_CALLER_DIR, "the destination", checked, sizeof(checked), &e);
	if (!e)
		e = find_config(jstr(req, "path"), p);
	if (!e)
		e = read_config(p);
	if (e) {
		plan_free(p);
		return e;
	}
	struct vmcfg *c = &p->cfg;
	/* the id and the name */
	struct inv_vm other;
	if (new_id) {
		new_guid(p->id);
	} else {
		snprintf(p->id, sizeof(p->id), "%s", c->id);
		if (inv_find(s->inv, c->id, &other) == 1) {
			incompat(p, 0, "VirtualMachine", true,
				 "The operation failed because a virtual machine with the same identifier (%s, '%s') already exists. "
				 "Select a new identifier (-GenerateNewId) and try the operation again.", c->id, other.name);
			inv_vm_free(&other);
		}
	}
	if (inv_find(s->inv, c->name, &other) == 1) {
		if (strcmp(other.id, c->id) || new_id) /* the same id is said above */
			incompat(p, 0, "VirtualMachine", true,
				 "a virtual machine named '%s' already exists on this host (names are unique here: rename one first)", c->name);
		inv_vm_free(&other);
	}
	for (int k = 0; k < c->ncheckpoints; k++) {
		if (new_id)
			new_guid(p->cp_id[k]);
		else
			snprintf(p->cp_id[k], sizeof(p->cp_id[k]), "%s", c->checkpoints[k].id);
	}
	/* where the files are or go */
	char host_vm[PATH_MAX], host_vhd[PATH_MAX + 32], name[PATH_MAX];
	if (inv_meta_get(s->inv, "VirtualMachinePath", host_vm, sizeof(host_vm)) != 1 || !*host_vm)
		snprintf(host_vm, sizeof(host_vm), "%s", s->root);
	if (inv_meta_get(s->inv, "VirtualHardDiskPath", host_vhd, sizeof(host_vhd)) != 1 || !*host_vhd)
		snprintf(host_vhd, sizeof(host_vhd), "%s/Virtual Hard Disks", s->root);
	bool toolong = false;
	if (p->copy)
		toolong |= snprintf(p->vm_folder, sizeof(p->vm_folder), "%s/Virtual Machines/%s", vm_path ? vm_path : host_vm, p->id) >= (int)sizeof(p->vm_folder) - 64;
	else
		toolong |= snprintf(p->vm_folder, sizeof(p->vm_folder), "%s/Virtual Machines/%s", p->dir, p->id) >= (int)sizeof(p->vm_folder) - 64;
	toolong |= snprintf(p->saved, sizeof(p->saved), "%s/%s.vmrs", p->vm_folder, p->id) >= (int)sizeof(p->saved);
	for (int i = 0; i < c->nimages; i++) {
		char src[2 * PATH_MAX];
		snprintf(src, sizeof(src), "%s/%s", p->dir, c->images[i].path);
		flat_name(c->images[i].path, name, sizeof(name));
		toolong |= snprintf(p->img[i], sizeof(p->img[i]), "%s/%s", p->copy ? (vhd_dest ? vhd_dest : host_vhd) : p->dir,
				    p->copy ? name : c->images[i].path) >= (int)sizeof(p->img[i]);
		if (!file_readable(src))
			incompat(p, MSG_VHD_MISSING, c->images[i].path, true, "Could not find the virtual hard disk '%s'%s.", src,
				 c->images[i].parent < 0 ? "" : " (a parent in a checkpoint's chain)");
		else if (p->copy && exists(p->img[i]))
			incompat(p, 0, c->images[i].path, true, "'%s' already exists: choose another -VhdDestinationPath", p->img[i]);
		if (!p->copy && image_in_use(s, p->img[i]))
			incompat(p, 0, c->images[i].path, true, "'%s' is already used by a virtual machine on this host", p->img[i]);
	}
	for (int k = 0; k < c->ncheckpoints; k++) {
		const char *rel = c->checkpoints[k].state_file;
		if (!rel[0])
			continue;
		char src[2 * PATH_MAX];
		snprintf(src, sizeof(src), "%s/%s", p->dir, rel);
		if (p->copy) /* by default the VM folder's Snapshots/, as vmms's own checkpoints */
			toolong |= snprintf(p->cp_state[k], sizeof(p->cp_state[k]), "%s%s/%s.vmrs", snap_path ? snap_path : p->vm_folder,
					    snap_path ? "" : "/Snapshots", p->cp_id[k]) >= (int)sizeof(p->cp_state[k]);
		else
			toolong |= snprintf(p->cp_state[k], sizeof(p->cp_state[k]), "%s", src) >= (int)sizeof(p->cp_state[k]);
		if (!file_readable(src))
			incompat(p, 0, rel, true, "Could not find the saved state '%s' of the checkpoint '%s'.", src, c->checkpoints[k].name);
	}
	if (c->saved) {
		char src[2 * PATH_MAX];
		snprintf(src, sizeof(src), "%s/%s", p->dir, c->saved_state);
		if (!file_readable(src))
			incompat(p, 0, c->saved_state, true, "Could not find the saved state '%s' of the virtual machine.", src);
	}
	if (toolong)
		incompat(p, 0, "VirtualMachine", true, "a destination path is too long");
	/* chains open (only once every file is there: a broken parent link shows here) */
	for (int i = 0; !p->blocked && !p->copy && i < c->nimages; i++) {
		struct vdisk *d;
		if (vdisk_open(p->img[i], 0, &d) < 0)
			incompat(p, MSG_VHD_MISSING, c->images[i].path, true, "The virtual hard disk chain of '%s' cannot be opened: %s",
				 p->img[i], vdisk_last_error());
		else
			vdisk_close(d);
	}
	/* network adapters */
	struct inv_nic *all = NULL;
	int nall = 0;
	inv_nic_list(s->inv, NULL, &all, &nall);
	for (int i = 0; i < c->nnics; i++) {
		struct vmcfg_nic *n = &c->nics[i];
		struct inv_switch sw;
		char src[VMCFG_NAME_MAX + 32];
		snprintf(src, sizeof(src), "Network Adapter '%s'", n->name);
		if (n->switch_name[0] && inv_switch_find(s->inv, n->switch_name, &sw) == 1)
			snprintf(p->nic_switch[i], sizeof(p->nic_switch[i]), "%s", sw.id);
		else if (n->switch_name[0])
			incompat(p, MSG_SWITCH_MISSING, src, false, "Could not find Ethernet switch '%s': the adapter is imported not connected.",
				 n->switch_name);
		snprintf(p->nic_mac[i], sizeof(p->nic_mac[i]), "%s", n->mac);
		bool clash = false;
		for (int k = 0; k < nall; k++)
			clash |= !strcmp(all[k].mac, n->mac);
		if (clash && !n->static_mac) {
			if (!vmms_new_mac(s, p->nic_mac[i]))
				incompat(p, 0, src, true, "no free dynamic MAC address");
			else
				incompat(p, 0, src, false, "the dynamic MAC address %s is in use here: the adapter gets %s", n->mac, p->nic_mac[i]);
		} else if (clash) {
			incompat(p, 0, src, false, "the static MAC address %s is in use by another adapter on this host", n->mac);
		}
	}
	free(all);
	/* direct boot files are the host's */
	p->keep_kernel = !c->kernel[0] || file_readable(c->kernel);
	p->keep_initrd = !c->initrd[0] || file_readable(c->initrd);
	if (!p->keep_kernel)
		incompat(p, 0, "Firmware", false, "the kernel '%s' does not exist here: Set-VMFirmware -KernelPath before Start-VM", c->kernel);
	if (!p->keep_initrd)
		incompat(p, 0, "Firmware", false, "the initrd '%s' does not exist here: it is dropped", c->initrd);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	if (cpus > 0 && c->cpus > cpus)
		incompat(p, 0, "Processor", false, "the VM has %d virtual processors, this host %ld logical processors", c->cpus, cpus);
	if (pages > 0 && psz > 0 && c->memory > (uint64_t)pages * (uint64_t)psz)
		incompat(p, 0, "Memory", false, "the VM's startup memory (%llu MB) is more than this host has",
			 (unsigned long long)(c->memory >> 20));
	*out = p;
	return NULL;
}

static json_t *report_reply(struct import_plan *p)
{
	return json_pack("{s:b, s:s, s:s, s:s, s:O, s:b, s:b}", "ok", 1, "vm_id", p->id, "name", p->cfg.name, "path", p->file,
			 "incompatibilities", p->report, "importable", !p->blocked, "copy", p->copy);
}

static json_t *op_compare(struct vmms *s, json_t *req)
{
	struct import_plan *p;
	json_t *e = plan_import(s, req, &p);
	if (e)
		return e;
	json_t *r = report_reply(p);
	plan_free(p);
	return r;
}

/* The VM into the inventory, in one transaction (the journal entry of a copy goes with it). */
static int import_register(struct vmms *s, struct import_plan *p, char *err, size_t errlen)
{
	struct vmcfg *c = &p->cfg;
	struct inv_vm vm = { 0 };
	snprintf(vm.id, sizeof(vm.id), "%s", p->id);
	vm.name = c->name;
	vm.generation = c->generation;
	vm.cpus = c->cpus;
	vm.memory = c->memory;
	vm.kernel = c->kernel[0] && p->keep_kernel ? c->kernel : NULL;
	vm.initrd = c->initrd[0] && p->keep_initrd ? c->initrd : NULL;
	vm.cmdline = c->has_cmdline ? c->cmdline : NULL;
	vm.notes = c->notes;
	vm.auto_start = c->auto_start;
	vm.auto_stop = c->auto_stop;
	vm.path = p->vm_folder;
	vm.ic_disabled = c->ic_disabled;
	snprintf(vm.checkpoint_type, sizeof(vm.checkpoint_type), "%s", c->checkpoint_type);
	for (int k = 0; k < c->ncheckpoints; k++)
		if (!strcmp(c->checkpoints[k].id, c->parent_checkpoint))
			snprintf(vm.parent_checkpoint, sizeof(vm.parent_checkpoint), "%s", p->cp_id[k]);
	vm.ndisks = c->ndisks;
	for (int i = 0; i < c->ndisks; i++)
		vm.disks[i] = (struct inv_disk){ .controller = c->disks[i].controller, .lun = c->disks[i].lun, .path = p->img[c->disks[i].image],
						 .max_iops = c->disks[i].max_iops, .max_bandwidth = c->disks[i].max_bandwidth };
	vm.cpu_maximum = c->cpu_maximum;
	vm.cpu_reserve = c->cpu_reserve;
	vm.cpu_weight = c->cpu_weight;
	struct inv_nic nics[VMCFG_MAX_NICS];
	memset(nics, 0, sizeof(nics));
	for (int i = 0; i < c->nnics; i++) {
		snprintf(nics[i].vm_id, sizeof(nics[i].vm_id), "%s", p->id);
		nics[i].slot = c->nics[i].slot;
		snprintf(nics[i].name, sizeof(nics[i].name), "%s", c->nics[i].name);
		snprintf(nics[i].mac, sizeof(nics[i].mac), "%s", p->nic_mac[i]);
		nics[i].static_mac = c->nics[i].static_mac;
		snprintf(nics[i].switch_id, sizeof(nics[i].switch_id), "%s", p->nic_switch[i]);
		nics[i].vlan = c->nics[i].vlan;
		nics[i].mac_spoofing = c->nics[i].mac_spoofing;
	}
	int rc = inv_tx_begin(s->inv);
	if (!rc)
		rc = inv_create(s->inv, &vm);
	for (int k = 0; !rc && k < c->ncheckpoints; k++) {
		const struct vmcfg_checkpoint *x = &c->checkpoints[k];
		struct inv_checkpoint cp = { 0 };
		snprintf(cp.id, sizeof(cp.id), "%s", p->cp_id[k]);
		snprintf(cp.vm_id, sizeof(cp.vm_id), "%s", p->id);
		for (int q = 0; q < c->ncheckpoints; q++)
			if (!strcmp(c->checkpoints[q].id, x->parent_id))
				snprintf(cp.parent_id, sizeof(cp.parent_id), "%s", p->cp_id[q]);
		snprintf(cp.name, sizeof(cp.name), "%s", x->name);
		snprintf(cp.type, sizeof(cp.type), "%s", x->type);
		cp.created_ms = x->created_ms;
		cp.state_file = x->state_file[0] ? p->cp_state[k] : NULL;
		cp.cpus = x->cpus;
		cp.memory = x->memory;
		cp.ndisks = x->ndisks;
		for (int i = 0; i < x->ndisks; i++)
			cp.disks[i] = (struct inv_disk){ .controller = x->disks[i].controller, .lun = x->disks[i].lun, .path = p->img[x->disks[i].image] };
		rc = inv_cp_insert(s->inv, &cp);
	}
	for (int i = 0; !rc && i < c->nimages; i++)
		rc = inv_image_put(s->inv, p->id, p->img[i], c->images[i].parent >= 0 ? p->img[c->images[i].parent] : NULL,
				   c->images[i].owned);
	if (!rc)
		rc = inv_nics_put(s->inv, p->id, nics, c->nnics, NULL);
	char msg[PATH_MAX + 64];
	snprintf(msg, sizeof(msg), "imported from %s%s", p->file, p->copy ? " (copied)" : " (registered in place)");
	if (!rc)
		rc = inv_set_status(s->inv, p->id, (struct vm_status){ c->saved ? VM_SAVED : VM_OFF, VM_OPS_NONE }, 0, 0,
				    "Information", msg);
	if (!rc && p->jid >= 0)
		rc = inv_journal_drop(s->inv, p->jid);
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

static json_t *vm_reply(struct import_plan *p)
{
	return json_pack("{s:b, s:s, s:s, s:O}", "ok", 1, "vm_id", p->id, "name", p->cfg.name, "incompatibilities", p->report);
}

/* Undoes a copy: the files made so far (and their partial copies) and the VM folder. */
static void import_cleanup(struct vmms *s, struct import_plan *p)
{
	vmms_copyset_free(&p->cs, true);
	vmms_remove_tree(p->vm_folder);
	if (p->jid >= 0)
		inv_journal_drop(s->inv, p->jid);
	p->jid = -1;
}

static void import_release(void *x)
{
	plan_free(x);
}

static enum vmms_step import_step(void *owner, struct vmms_job *j)
{
	struct vmms *s = owner;
	struct import_plan *p = j->ctx;
	char err[2 * PATH_MAX + 160];
	int r = vmms_copyset_step(&p->cs, STEP_BYTES, err, sizeof(err));
	if (r == 0) {
		vmms_crash_point("import-copied");
		r = import_register(s, p, err, sizeof(err)) < 0 ? -1 : 0;
	}
	if (r < 0) {
		import_cleanup(s, p);
		snprintf(j->error, sizeof(j->error), "Import failed: %.480s", err);
		return VMMS_STEP_FAILED;
	}
	j->percent = vmms_copyset_percent(&p->cs) * 99 / 100;
	return r ? VMMS_STEP_MORE : VMMS_STEP_DONE;
}

static json_t *op_import(struct vmms *s, json_t *req)
{
	struct import_plan *p;
	json_t *e = plan_import(s, req, &p);
	if (e)
		return e;
	char err[2 * PATH_MAX + 160];
	if (p->blocked) {
		char first[1024] = "";
		size_t i;
		json_t *it;
		json_array_foreach(p->report, i, it)
			if (json_is_true(json_object_get(it, "blocking")) && !first[0])
				snprintf(first, sizeof(first), "%s", json_string_value(json_object_get(it, "message")));
		json_t *r = import_err("Unable to import virtual machine due to configuration errors (Compare-VM lists them): %s", first);
		json_object_set(r, "incompatibilities", p->report);
		plan_free(p);
		return r;
	}
	if (mkdir_p(p->vm_folder) < 0) {
		json_t *r = import_err("Import failed: cannot create %s: %s", p->vm_folder, strerror(errno));
		plan_free(p);
		return r;
	}
	struct vmcfg *c = &p->cfg;
	if (!p->copy) { /* in place: the saved state moves into the VM folder, the rest stays */
		char src[2 * PATH_MAX];
		snprintf(src, sizeof(src), "%s/%s", p->dir, c->saved_state);
		if (c->saved && rename(src, p->saved) < 0) {
			json_t *r = import_err("Import failed: cannot move %s to %s: %s", src, p->saved, strerror(errno));
			rmdir(p->vm_folder);
			plan_free(p);
			return r;
		}
		if (import_register(s, p, err, sizeof(err)) < 0) {
			if (c->saved)
				rename(p->saved, src);
			rmdir(p->vm_folder);
			plan_free(p);
			return import_err("Import failed: %s", err);
		}
		json_t *r = vm_reply(p);
		plan_free(p);
		return r;
	}
	/* -Copy: a job; the journal knows every file it makes */
	json_t *files = json_array();
	char src[2 * PATH_MAX];
	bool ok = true;
	for (int i = 0; ok && i < c->nimages; i++) {
		snprintf(src, sizeof(src), "%s/%s", p->dir, c->images[i].path);
		ok = vmms_copyset_add(&p->cs, src, p->img[i], c->images[i].parent) >= 0;
		json_array_append_new(files, json_string(p->img[i]));
	}
	for (int k = 0; ok && k < c->ncheckpoints; k++)
		if (c->checkpoints[k].state_file[0]) {
			snprintf(src, sizeof(src), "%s/%s", p->dir, c->checkpoints[k].state_file);
			ok = vmms_copyset_add(&p->cs, src, p->cp_state[k], -1) >= 0;
			json_array_append_new(files, json_string(p->cp_state[k]));
		}
	if (ok && c->saved) {
		snprintf(src, sizeof(src), "%s/%s", p->dir, c->saved_state);
		ok = vmms_copyset_add(&p->cs, src, p->saved, -1) >= 0;
	}
	for (int k = 0; ok && k < c->ncheckpoints; k++) /* the folders the copies go into */
		if (c->checkpoints[k].state_file[0]) {
			char d[PATH_MAX];
			snprintf(d, sizeof(d), "%s", p->cp_state[k]);
			*strrchr(d, '/') = '\0';
			ok = mkdir_p(d) == 0;
		}
	for (int i = 0; ok && i < c->nimages; i++) {
		char d[PATH_MAX];
		snprintf(d, sizeof(d), "%s", p->img[i]);
		*strrchr(d, '/') = '\0';
		ok = mkdir_p(d) == 0;
	}
	char *data = ok ? dump(json_pack("{s:o, s:s}", "files", files, "vm_folder", p->vm_folder)) : (json_decref(files), NULL);
	p->jid = data ? inv_journal_add(s->inv, p->id, "import", "copying", data) : -1;
	free(data);
	if (p->jid < 0) {
		import_cleanup(s, p);
		plan_free(p);
		return import_err("Import failed: cannot prepare the copy (%s)", ok ? inv_error(s->inv) : strerror(errno));
	}
	vmms_crash_point("import-intent");
	char id[37];
	new_guid(id);
	struct vmms_job *j = vmms_job_start(&s->jobs, id, p->id, "import", import_step, import_release, p, vmms_unix_ms());
	if (!j) {
		import_cleanup(s, p);
		plan_free(p);
		return err_reply(0, "too many jobs running");
	}
	json_t *report = json_incref(p->report);
	char vm_id[37], name[VMCFG_NAME_MAX];
	snprintf(vm_id, sizeof(vm_id), "%s", p->id);
	snprintf(name, sizeof(name), "%s", p->cfg.name);
	vmms_jobs_run(&s->jobs, s, vmms_unix_ms());
	json_t *r = vmms_job_reply(j);
	if (j->state != VMMS_JOB_FAILED) {
		json_object_set_new(r, "vm_id", json_string(vm_id));
		json_object_set_new(r, "name", json_string(name));
		json_object_set(r, "incompatibilities", report);
	}
	json_decref(report);
	return r;
}

/* ---- recovery ---- */

bool vmms_export_recover(struct vmms *s, const struct inv_journal *e)
{
	bool exp = !strcmp(e->kind, "export"), imp = !strcmp(e->kind, "import");
	if (!exp && !imp)
		return false;
	json_t *d = json_loads(e->data ? e->data : "", 0, NULL);
	if (exp) {
		const char *partial = json_string_value(json_object_get(d, "partial"));
		size_t n = partial ? strlen(partial) : 0;
		bool whole = n > 8 && access(partial, F_OK) < 0; /* renamed: the export was complete */
		if (n > 8 && !strcmp(partial + n - 8, ".partial")) /* only ever the folder it made */
			vmms_remove_tree(partial);
		vm_set_op(s, e->vm_id, VM_OPS_NONE);
		vm_event(s, e->vm_id, "Warning", "the export to %s was interrupted by a vmms restart: %s",
			 json_string_value(json_object_get(d, "dir")) ?: "?", whole ? "it had finished" : "the partial copy is deleted");
	} else {
		size_t i;
		json_t *f;
		json_array_foreach(json_object_get(d, "files"), i, f) {
			char tmp[PATH_MAX + 16];
			const char *p = json_string_value(f);
			if (!p)
				continue;
			snprintf(tmp, sizeof(tmp), "%s.partial", p);
			unlink(tmp);
			unlink(p);
		}
		const char *folder = json_string_value(json_object_get(d, "vm_folder"));
		if (folder)
			vmms_remove_tree(folder);
		fprintf(stderr, "vmms: an import interrupted by a restart was undone (%s)\n", folder ? folder : "?");
	}
	inv_journal_drop(s->inv, e->id);
	json_decref(d);
	return true;
}

json_t *vmms_export_request(struct vmms *s, const char *op, json_t *req)
{
	if (!strcmp(op, "export-vm"))
		return op_export(s, req);
	if (!strcmp(op, "import-vm"))
		return op_import(s, req);
	if (!strcmp(op, "compare-vm"))
		return op_compare(s, req);
	return NULL;
}
