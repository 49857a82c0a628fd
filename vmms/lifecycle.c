/* The worker lifecycle: Start/Stop/Suspend/Resume/Save-VM and Remove-VMSavedState, worker
 * processes and their exits, the periodic checks, re-attaching after a vmms restart and automatic
 * start after a host restart.
 *
 * A saved state is <VM folder>/<VM id>.vmrs. Save-VM asks the worker to write it ({"op":"save"})
 * and waits for the answer from the main loop (Get-VM shows Saving meanwhile); once written, the
 * worker is turned off and the VM is Saved when it has exited. Start-VM of a Saved VM runs
 * `vmwp --restore`; the file is deleted once the worker answers (the guest runs on from it, its
 * disks move on), and kept when the worker refuses it (the VM is Saved again). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vmms/control_client.h"

struct vmms_worker *worker_of(struct vmms *s, const char *id)
{
	for (int i = 0; i < s->nworkers; i++)
		if (!strcmp(s->workers[i].id, id))
			return &s->workers[i];
	return NULL;
}

static struct vmms_worker *worker_add(struct vmms *s, const char *id, pid_t pid, bool child, uint64_t start)
{
	if (s->nworkers == VMMS_MAX_WORKERS)
		return NULL;
	struct vmms_worker *w = &s->workers[s->nworkers++];
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "%s", id);
	w->pid = pid;
	w->child = child;
	w->start = start;
	w->save_fd = -1;
	w->pidfd = pidfd_open_(pid);
	if (w->pidfd >= 0)
		fcntl(w->pidfd, F_SETFD, FD_CLOEXEC);
	return w;
}

static void worker_drop(struct vmms *s, struct vmms_worker *w)
{
	if (w->pidfd >= 0)
		close(w->pidfd);
	if (w->save_fd >= 0)
		close(w->save_fd);
	*w = s->workers[--s->nworkers];
}

static void set_status(struct vmms *s, const struct inv_vm *vm, struct vm_status st, pid_t pid, uint64_t start,
		       const char *level, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void set_status(struct vmms *s, const struct inv_vm *vm, struct vm_status st, pid_t pid, uint64_t start,
		       const char *level, const char *fmt, ...)
{
	char msg[512] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (inv_set_status(s->inv, vm->id, st, pid, start, level, fmt ? msg : NULL) < 0)
		fprintf(stderr, "vmms: %s: %s\n", vm->name, inv_error(s->inv));
	if (fmt)
		fprintf(stderr, "vmms: %s: %s\n", vm->name, msg);
}

static void last_log_line(const struct inv_vm *vm, char *out, size_t len)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/worker.log", vm->path);
	vmms_log_tail_line(p, out, len);
}

/* Why a worker exited, in one line. */
static void exit_reason(const struct inv_vm *vm, pid_t pid, int wstatus, bool have_status, char *out, size_t len)
{
	char line[300];
	if (!have_status) {
		snprintf(out, len, "the worker (pid %d) exited; vmms was not its parent, so its exit status is unknown", (int)pid);
	} else if (WIFEXITED(wstatus)) {
		last_log_line(vm, line, sizeof(line));
		snprintf(out, len, "the worker (pid %d) failed with status %d: %s", (int)pid, WEXITSTATUS(wstatus), *line ? line : "no message");
	} else {
		snprintf(out, len, "the worker (pid %d) was killed by signal %d (%s)", (int)pid, WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
	}
}

static void worker_gone(struct vmms *s, struct vmms_worker *w, int wstatus, bool have_status)
{
	struct inv_vm vm;
	if (inv_find(s->inv, w->id, &vm) == 1) {
		struct vm_status next = { VM_OFF, VM_OPS_NONE };
		bool stopping = vm.status.state == VM_STOPPING;
		bool clean = have_status && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
		char why[512], state_path[PATH_MAX];
		exit_reason(&vm, w->pid, wstatus, have_status, why, sizeof(why));
		vmms_saved_state_path(&vm, state_path, sizeof(state_path));
		/* The worker renames a saved state into place only once it is complete. */
		if (vm.status.state == VM_SAVING && file_readable(state_path) && !vm_transition(vm.status, VM_OP_SAVE_DONE, &next)) {
			set_status(s, &vm, next, 0, 0, "Information", "saved");
		} else if (vm.status.state == VM_RESTORING && !clean && !vm_transition(vm.status, VM_OP_RESTORE_FAILED, &next)) {
			set_status(s, &vm, next, 0, 0, "Error", "the saved state was not restored (it is kept): %s", why);
		} else {
			vm_transition(vm.status, VM_OP_WORKER_EXITED, &next);
			if (vm.status.state == VM_RESTORING) /* restored, ran and powered off: the state is stale */
				unlink(state_path);
			if (vm.status.state == VM_SAVING)
				set_status(s, &vm, next, 0, 0, "Error", "the worker exited before the state was saved: %s", why);
			else if (clean)
				set_status(s, &vm, next, 0, 0, "Information", stopping ? "the virtual machine stopped" : "the guest powered off");
			else
				set_status(s, &vm, next, 0, 0, !have_status ? (stopping ? "Information" : "Warning") : "Error", "%s", why);
		}
		inv_vm_free(&vm);
	}
	char id[37];
	snprintf(id, sizeof(id), "%s", w->id);
	worker_drop(s, w);
	vmms_processor_release(s, id);
	vmms_checkpoints_vm_off(s, id);
}

void vmms_reap(struct vmms *s)
{
	for (int i = 0; i < s->nworkers;) {
		struct vmms_worker *w = &s->workers[i];
		int st = 0;
		if (w->child) {
			pid_t r = waitpid(w->pid, &st, WNOHANG);
			if (r == w->pid) {
				worker_gone(s, w, st, true);
				continue;
			}
			if (r < 0 && errno == ECHILD) {
				worker_gone(s, w, 0, false);
				continue;
			}
		} else if (kill(w->pid, 0) < 0 || proc_is_zombie(w->pid) || proc_start(w->pid) != w->start) {
			worker_gone(s, w, 0, false);
			continue;
		}
		i++;
	}
	vmms_switches_reap(s);
}

/* vmwp for the VM: booting its kernel (none set: its first disk), or from the saved state at
 * restore (same configuration; the kernel is still given: it is what a reset of the restored
 * guest boots). */
static pid_t spawn_worker(struct vmms *s, const struct inv_vm *vm, const char *restore, uint64_t request_ns,
			  const char *cgroup, bool cgroup_required, char *err, size_t errlen)
{
	char sock[PATH_MAX], serial[PATH_MAX + 8], mem[32], cpus[16], log[PATH_MAX];
	worker_sock_path(vm, sock, sizeof(sock));
	if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "the worker's socket path %s is too long for a Unix socket (use a shorter -Path or --root)", sock);
		return -1;
	}
	unlink(sock);
	snprintf(serial, sizeof(serial), "file:%s/console.log", vm->path);
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)(vm->memory >> 20));
	snprintf(cpus, sizeof(cpus), "%d", vm->cpus);
	snprintf(log, sizeof(log), "%s/worker.log", vm->path);
	char nics[INV_MAX_NICS][VMMS_NIC_ARG_MAX];
	int nnics = vmms_nic_args(s, vm, nics, err, errlen);
	if (nnics < 0)
		return -1;
	const char *argv[32 + 4 * INV_MAX_DISKS + 2 * INV_IC_COUNT + 2 * INV_MAX_NICS];
	int n = 0;
	argv[n++] = s->vmwp;
	if (restore) {
		argv[n++] = "--restore";
		argv[n++] = restore;
	}
	if (vm->kernel) { /* none: the worker boots from the first disk (docs/boot.md) */
		argv[n++] = "--kernel";
		argv[n++] = vm->kernel;
		if (vm->initrd && *vm->initrd) {
			argv[n++] = "--initrd";
			argv[n++] = vm->initrd;
		}
		if (vm->cmdline && *vm->cmdline) {
			argv[n++] = "--cmdline";
			argv[n++] = vm->cmdline;
		}
	}
	argv[n++] = "--memory";
	argv[n++] = mem;
	argv[n++] = "--cpus";
	argv[n++] = cpus;
	argv[n++] = "--control";
	argv[n++] = sock;
	argv[n++] = "--serial";
	argv[n++] = serial;
	/* a disk with storage QoS: PATH,iops=N,bw=N (worker/options.c) */
	char *qos_args[INV_MAX_DISKS] = { 0 };
	for (int i = 0; i < vm->ndisks; i++) {
		const struct inv_disk *d = &vm->disks[i];
		argv[n++] = "--disk";
		argv[n++] = d->path;
		if (!d->max_iops && !d->max_bandwidth)
			continue;
		if (asprintf(&qos_args[i], "%s,iops=%llu,bw=%llu", d->path, (unsigned long long)d->max_iops,
			     (unsigned long long)d->max_bandwidth) < 0) {
			snprintf(err, errlen, "out of memory");
			for (int k = 0; k < i; k++)
				free(qos_args[k]);
			return -1;
		}
		argv[n - 1] = qos_args[i];
	}
	/* DVD drives after the disks: the worker's LUN of disk i stays i (disk-switch, merges) */
	for (int i = 0; i < vm->ndvds; i++) {
		argv[n++] = "--dvd";
		argv[n++] = vm->dvds[i].path;
	}
	for (int i = 0; i < INV_IC_COUNT; i++)
		if (vm->ic_disabled & (1u << i)) {
			argv[n++] = "--disable-ic";
			argv[n++] = vmms_ic_worker_name(i);
		}
	for (int i = 0; i < nnics; i++) {
		argv[n++] = "--nic";
		argv[n++] = nics[i];
	}
	argv[n] = NULL;
	int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t pid = logfd < 0 ? -1 : fork();
	if (pid < 0) {
		snprintf(err, errlen, logfd < 0 ? "%s: %s" : "fork%.0s: %s", log, strerror(errno));
		if (logfd >= 0)
			close(logfd);
		for (int i = 0; i < vm->ndisks; i++)
			free(qos_args[i]);
		return -1;
	}
	if (pid == 0) {
		setsid(); /* its own session: survives vmms and its process group */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (getenv("VIRIDIAN_VMMS_TRACE")) { /* bench/vmms: the worker logs its first guest exit from the request */
			char ns[32];
			snprintf(ns, sizeof(ns), "%llu", (unsigned long long)request_ns);
			setenv("VIRIDIAN_TRACE_START_NS", ns, 1);
		}
		int nul = open("/dev/null", O_RDONLY);
		dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		if (*cgroup) { /* before exec: none of the worker's threads runs outside its limits */
			char procs[PATH_MAX + 96];
			snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
			int fd = open(procs, O_WRONLY | O_CLOEXEC);
			if ((fd < 0 || write(fd, "0", 1) != 1) && cgroup_required) {
				dprintf(2, "vmms: cannot put the worker in %s: %s\n", cgroup, strerror(errno));
				_exit(126);
			}
			if (fd >= 0)
				close(fd);
		}
		execv(argv[0], (char *const *)argv);
		dprintf(2, "vmms: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	for (int i = 0; i < vm->ndisks; i++)
		free(qos_args[i]);
	return pid;
}

/* The i-th file a start opens: the kernel and initrd (none when restoring: the saved state
 * has the guest), the disks, the DVD images; NULL for one that is not there. */
static const char *start_file(const struct inv_vm *vm, bool restore, int i)
{
	if (i < 2)
		return restore ? NULL : i == 0 ? vm->kernel : vm->initrd;
	if ((i -= 2) < vm->ndisks)
		return vm->disks[i].path;
	const char *iso = vm->dvds[i - vm->ndisks].path;
	return iso[0] ? iso : NULL;
}

static json_t *op_start(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t request_ns = (uint64_t)t0.tv_sec * 1000000000ull + (uint64_t)t0.tv_nsec;
	struct vm_status next;
	char err[PATH_MAX + 128];
	json_t *reply = NULL;
	if (vm_transition(vm.status, VM_OP_START, &next)) {
		reply = vm.status.state == VM_RUNNING && vm.status.op == VM_OPS_NONE
				? json_pack("{s:b, s:s}", "ok", 1, "state", "Running")  /* already running: as Hyper-V, no error */
				: conflict(&vm, "start");
		goto out;
	}
	bool restore = next.state == VM_RESTORING;
	char state_path[PATH_MAX];
	vmms_saved_state_path(&vm, state_path, sizeof(state_path));
	if (restore && !file_readable(state_path)) {
		reply = err_reply(0, "'%s' cannot be restored: its saved state %s is missing or unreadable (Remove-VMSavedState "
				  "discards the saved state)", vm.name, state_path);
		goto out;
	}
	if (!restore && !vm.kernel && vm.generation == 2) {
		reply = err_reply(0, "'%s' has nothing to boot: Generation 2 (UEFI) firmware boot is not supported yet; set a "
				  "kernel with Set-VMFirmware -KernelPath (Generation 1 VMs boot from their first disk)", vm.name);
		goto out;
	}
	if (!restore && !vm.kernel && vm.ndisks == 0) {
		reply = err_reply(0, "'%s' has nothing to boot: no hard disk to boot from (Add-VMHardDiskDrive) and no kernel "
				  "(Set-VMFirmware -KernelPath)", vm.name);
		goto out;
	}
	if (!restore && vm.kernel && (!file_readable(vm.kernel) || (vm.initrd && !file_readable(vm.initrd)))) {
		reply = err_reply(0, "'%s' cannot start: the kernel or initrd is missing", vm.name);
		goto out;
	}
	for (int i = 0; i < vm.ndisks; i++)
		if (!file_readable(vm.disks[i].path)) {
			reply = err_reply(0, "'%s' cannot start: the disk '%s' is missing", vm.name, vm.disks[i].path);
			goto out;
		}
	for (int i = 0; i < vm.ndvds; i++)
		if (vm.dvds[i].path[0] && !file_readable(vm.dvds[i].path)) {
			reply = err_reply(0, "'%s' cannot start: the DVD image '%s' is missing", vm.name, vm.dvds[i].path);
			goto out;
		}
	/* A non-root admin starts only what it can read itself, no symlink as the last component (a
	 * file swapped since it was attached stops here; docs/security.md). */
	for (int i = 0; i < 2 + vm.ndisks + vm.ndvds; i++) {
		const char *p = start_file(&vm, restore, i);
		char canon[PATH_MAX];
		int cerr;
		if (p && vmms_caller_resolve(&s->caller, p, VMMS_CALLER_READ, canon, sizeof(canon), &cerr) < 0) {
			reply = err_reply(0, "'%s' cannot start: '%s' cannot be used: %s", vm.name, p, vmms_caller_why(cerr));
			goto out;
		}
	}
	if (mkdir_p(vm.path) < 0) {
		reply = err_reply(0, "%s: %s", vm.path, strerror(errno));
		goto out;
	}
	char cgroup[PATH_MAX + 64];
	bool cgroup_required;
	if ((reply = vmms_processor_prepare(s, &vm, cgroup, sizeof(cgroup), &cgroup_required)))
		goto out;
	pid_t pid = spawn_worker(s, &vm, restore ? state_path : NULL, request_ns, cgroup, cgroup_required, err, sizeof(err));
	if (pid < 0) {
		vmms_processor_release(s, vm.id);
		reply = err_reply(0, "'%s' cannot start: %s", vm.name, err);
		goto out;
	}
	uint64_t start = proc_start(pid);
	struct vmms_worker *w = worker_add(s, vm.id, pid, true, start);
	if (w)
		w->starting = true;
	if (restore)
		set_status(s, &vm, next, pid, start, "Information", "restoring from %s: worker pid %d", state_path, (int)pid);
	else
		set_status(s, &vm, next, pid, start, "Information", "starting: worker pid %d", (int)pid);
	reply = json_pack("{s:b, s:s, s:i}", "ok", 1, "state", vm_state_name(next.state), "worker_pid", (int)pid);
out:
	inv_vm_free(&vm);
	return reply;
}

/* Remove-VMSavedState, and a turn-off of a Saved VM: the file goes, the VM is Off. */
static json_t *discard_saved(struct vmms *s, const struct inv_vm *vm, struct vm_status next)
{
	char path[PATH_MAX];
	vmms_saved_state_path(vm, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		return err_reply(0, "'%s' keeps its saved state: cannot delete %s: %s", vm->name, path, strerror(errno));
	set_status(s, vm, next, 0, 0, "Information", "saved state discarded");
	return json_pack("{s:b, s:s}", "ok", 1, "state", vm_state_name(next.state));
}

static json_t *op_stop(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	bool turn_off = json_is_true(json_object_get(req, "turn_off"));
	bool force = json_is_true(json_object_get(req, "force"));
	struct vm_status next;
	json_t *reply = NULL;
	struct vmms_worker *w = worker_of(s, vm.id);
	if (vm.status.state == VM_OFF && vm.status.op == VM_OPS_NONE) {
		reply = json_pack("{s:b, s:s}", "ok", 1, "state", "Off");
		goto out;
	}
	if (vm_transition(vm.status, turn_off ? VM_OP_TURN_OFF : VM_OP_STOP, &next)) {
		reply = conflict(&vm, turn_off ? "be turned off" : "be shut down (Stop-VM -TurnOff powers it off)");
		goto out;
	}
	if (vm.status.state == VM_SAVED) {
		reply = discard_saved(s, &vm, next);
		goto out;
	}
	if (turn_off) {
		json_t *r = worker_vm_call(&vm, "{\"op\":\"turn-off\"}", 2000);
		if (!json_is_true(json_object_get(r, "ok")) && w)
			kill(w->pid, SIGKILL);
		json_decref(r);
		if (w) {
			w->stop_deadline_ms = mono_ms() + 10000;
			w->turning_off = true;
		}
		bool restoring = vm.status.state == VM_RESTORING;
		if (restoring) { /* the guest may have run from it already: its disks moved on */
			char state_path[PATH_MAX];
			vmms_saved_state_path(&vm, state_path, sizeof(state_path));
			unlink(state_path);
		}
		set_status(s, &vm, next, vm.worker_pid, vm.worker_start, "Information", "turning off%s",
			   restoring ? " (the saved state is discarded)" : "");
	} else {
		json_t *r = worker_vm_call(&vm, force ? "{\"op\":\"shutdown\",\"force\":true}" : "{\"op\":\"shutdown\",\"force\":false}", 3000);
		if (!json_is_true(json_object_get(r, "ok"))) {
			const char *why = r ? json_string_value(json_object_get(r, "error")) : "the worker does not answer";
			reply = err_reply(0, "'%s' cannot shut down: %s (Stop-VM -TurnOff powers it off)", vm.name, why ? why : "refused");
			json_decref(r);
			goto out;
		}
		json_decref(r);
		if (w)
			w->stop_deadline_ms = mono_ms() + VMMS_STOP_TIMEOUT_MS;
		set_status(s, &vm, next, vm.worker_pid, vm.worker_start, "Information", "shutting down the guest%s", force ? " (forced)" : "");
	}
	reply = json_pack("{s:b, s:s}", "ok", 1, "state", vm_state_name(next.state));
out:
	inv_vm_free(&vm);
	return reply;
}

/* Suspend-VM / Resume-VM: the worker stops or restarts its vCPUs ({"op":"pause"/"resume"}). */
static json_t *op_pause(struct vmms *s, json_t *req, bool pause)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	struct vm_status next;
	json_t *reply;
	if (vm_transition(vm.status, pause ? VM_OP_PAUSE : VM_OP_RESUME, &next)) {
		reply = conflict(&vm, pause ? "be paused" : "be resumed");
	} else {
		json_t *r = worker_vm_call(&vm, pause ? "{\"op\":\"pause\"}" : "{\"op\":\"resume\"}", 5000);
		if (!json_is_true(json_object_get(r, "ok"))) {
			const char *why = r ? json_string_value(json_object_get(r, "error")) : "the worker does not answer";
			reply = err_reply(0, "'%s' cannot %s: %s", vm.name, pause ? "pause" : "resume", why ? why : "refused");
		} else {
			set_status(s, &vm, next, vm.worker_pid, vm.worker_start, "Information", pause ? "paused" : "resumed");
			reply = json_pack("{s:b, s:s}", "ok", 1, "state", vm_state_name(next.state));
		}
		json_decref(r);
	}
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_discard_saved(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	struct vm_status next;
	json_t *reply = vm_transition(vm.status, VM_OP_DISCARD_SAVED, &next) ? conflict(&vm, "discard a saved state")
									   : discard_saved(s, &vm, next);
	inv_vm_free(&vm);
	return reply;
}

/* Save-VM: the worker is asked to write the saved state; its answer comes to vmms_tick. */
static json_t *op_save(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	struct vm_status next;
	struct vmms_worker *w = worker_of(s, vm.id);
	json_t *reply = NULL;
	if (vm_transition(vm.status, VM_OP_SAVE, &next)) {
		reply = conflict(&vm, "be saved");
	} else if (!w) {
		reply = err_reply(0, "'%s' cannot be saved: vmms does not manage its worker", vm.name);
	} else {
		char path[PATH_MAX], sock[PATH_MAX];
		vmms_saved_state_path(&vm, path, sizeof(path));
		worker_sock_path(&vm, sock, sizeof(sock));
		unlink(path); /* one left from before must not pass for this save's */
		json_t *wreq = json_pack("{s:s, s:s}", "op", "save", "path", path);
		char *line = json_dumps(wreq, JSON_COMPACT);
		json_decref(wreq);
		enum control_call_error why;
		errno = ENOMEM;
		int fd = line ? control_send(sock, line, 2000, &why) : -1;
		int err = errno;
		free(line);
		if (fd < 0) {
			char msg[600];
			snprintf(msg, sizeof(msg), "'%s' cannot be saved: its worker does not answer (%s)", vm.name, strerror(err));
			inv_add_event(s->inv, vm.id, "Error", msg);
			reply = err_reply(0, "%s", msg);
		} else {
			w->save_fd = fd;
			w->save_deadline_ms = mono_ms() + VMMS_SAVE_TIMEOUT_MS;
			w->save_resume = vm.status.state == VM_RUNNING;
			set_status(s, &vm, next, w->pid, w->start, "Information", "saving to %s", path);
			reply = json_pack("{s:b, s:s}", "ok", 1, "state", vm_state_name(next.state));
		}
	}
	inv_vm_free(&vm);
	return reply;
}

/* The save did not happen: the VM goes on as it was (the worker leaves it running or paused as
 * it found it; one that paused it anyway is resumed when it was Running). */
static void save_failed(struct vmms *s, const struct inv_vm *vm, struct vmms_worker *w, const char *why)
{
	char path[PATH_MAX];
	vmms_saved_state_path(vm, path, sizeof(path));
	unlink(path); /* a save given up on may still finish: it must not pass for a saved state */
	json_t *st = worker_vm_call(vm, "{\"op\":\"status\"}", 2000);
	const char *ws = json_string_value(json_object_get(st, "state"));
	bool paused = ws && !strcmp(ws, "Paused");
	if (paused && w->save_resume) {
		json_t *r = worker_vm_call(vm, "{\"op\":\"resume\"}", 5000);
		paused = !json_is_true(json_object_get(r, "ok"));
		json_decref(r);
	}
	json_decref(st);
	struct vm_status next = vm->status;
	vm_transition(vm->status, VM_OP_SAVE_FAILED, &next);
	if (paused)
		vm_transition(next, VM_OP_PAUSE, &next);
	set_status(s, vm, next, w->pid, w->start, "Error", "the state was not saved: %s", why);
}

/* Is the worker on its way out (its pidfd readable within a moment)? */
static bool worker_exiting(const struct vmms_worker *w)
{
	if (w->pidfd >= 0) {
		struct pollfd p = { w->pidfd, POLLIN, 0 };
		return poll(&p, 1, 500) > 0;
	}
	return kill(w->pid, 0) < 0 || proc_is_zombie(w->pid);
}

/* The worker's answer to Save-VM, once there is one (or the time is up). */
static void save_answer(struct vmms *s, const struct inv_vm *vm, struct vmms_worker *w, int64_t now)
{
	struct pollfd p = { w->save_fd, POLLIN, 0 };
	bool ready = poll(&p, 1, 0) > 0;
	if (!ready && now <= w->save_deadline_ms)
		return;
	enum control_call_error why = CONTROL_CALL_TIMEOUT;
	json_t *r = ready ? control_recv(w->save_fd, 2000, &why) : NULL;
	close(w->save_fd);
	w->save_fd = -1;
	if (json_is_true(json_object_get(r, "ok"))) {
		char msg[PATH_MAX + 128];
		snprintf(msg, sizeof(msg), "saved state written: %lld bytes in %lld ms", (long long)json_integer_value(json_object_get(r, "bytes")),
			 (long long)json_integer_value(json_object_get(r, "save_ms")));
		inv_add_event(s->inv, vm->id, "Information", msg);
		json_t *t = worker_vm_call(vm, "{\"op\":\"turn-off\"}", 2000);
		if (!json_is_true(json_object_get(t, "ok")))
			kill(w->pid, SIGKILL);
		json_decref(t);
		w->stop_deadline_ms = now + 10000;
		w->turning_off = true;
	} else if (!r && why == CONTROL_CALL_LOST && worker_exiting(w)) {
		/* it died while saving: worker_gone sees whether the state was written */
	} else {
		const char *e = json_string_value(json_object_get(r, "error"));
		char msg[600];
		if (r)
			snprintf(msg, sizeof(msg), "%.500s", e ? e : "the worker refused");
		else if (why == CONTROL_CALL_TIMEOUT)
			snprintf(msg, sizeof(msg), "the worker did not finish saving within %d s", ready ? 2 : VMMS_SAVE_TIMEOUT_MS / 1000);
		else
			snprintf(msg, sizeof(msg), "the worker's answer was %s", why == CONTROL_CALL_LOST ? "cut off" : "malformed");
		save_failed(s, vm, w, msg);
	}
	json_decref(r);
}

void vmms_tick(struct vmms *s)
{
	vmms_reap(s);
	vmms_switches_tick(s);
	vmms_checkpoints_tick(s);
	vmms_metering_tick(s);
	int64_t now = mono_ms();
	for (int i = 0; i < s->nworkers; i++) {
		struct vmms_worker *w = &s->workers[i];
		struct inv_vm vm;
		if (inv_find(s->inv, w->id, &vm) != 1)
			continue;
		struct vm_status next;
		if (vm.status.state == VM_STARTING || vm.status.state == VM_RESTORING) {
			json_t *r = worker_vm_call(&vm, "{\"op\":\"status\"}", 1000);
			if (json_is_true(json_object_get(r, "ok")) && !vm_transition(vm.status, VM_OP_WORKER_READY, &next)) {
				w->starting = false;
				if (vm.status.state == VM_RESTORING) { /* the guest runs on from it: consumed */
					char path[PATH_MAX];
					vmms_saved_state_path(&vm, path, sizeof(path));
					unlink(path);
				}
				set_status(s, &vm, next, w->pid, w->start, "Information", "running (worker pid %d)%s", (int)w->pid,
					   vm.status.state == VM_RESTORING ? ", restored from the saved state" : "");
			}
			json_decref(r);
		} else {
			w->starting = false;
		}
		if (w->save_fd >= 0)
			save_answer(s, &vm, w, now);
		if ((vm.status.state == VM_STOPPING || vm.status.state == VM_SAVING) && w->stop_deadline_ms && now > w->stop_deadline_ms) {
			w->stop_deadline_ms = 0;
			if (w->turning_off) { /* a worker that does not power off when told is killed */
				kill(w->pid, SIGKILL);
				inv_add_event(s->inv, vm.id, "Warning", "the worker did not turn off within 10 s; killed");
			} else if (!vm_transition(vm.status, VM_OP_STOP_FAILED, &next))
				set_status(s, &vm, next, w->pid, w->start, "Warning", "the guest did not shut down in time; still running");
		}
		inv_vm_free(&vm);
	}
}

/* The host's boot id ($VIRIDIAN_BOOT_ID for tests): a new one means the host restarted. */
static void boot_id(char *out, size_t len)
{
	const char *env = getenv("VIRIDIAN_BOOT_ID");
	*out = '\0';
	if (env) {
		snprintf(out, len, "%s", env);
		return;
	}
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (f) {
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = '\0';
		fclose(f);
	}
}

/* Re-attaches to the workers that outlived the last vmms; after a host restart, applies each
 * VM's automatic start action (Start; StartIfRunning when it was running or Saved at the time). */
void vmms_reattach(struct vmms *s)
{
	struct inv_vm *vms;
	int n;
	char now_boot[64], last_boot[64] = "";
	boot_id(now_boot, sizeof(now_boot));
	int known = inv_meta_get(s->inv, "boot_id", last_boot, sizeof(last_boot));
	bool host_restarted = known == 1 && *now_boot && strcmp(now_boot, last_boot);
	if (*now_boot)
		inv_meta_set(s->inv, "boot_id", now_boot);
	vmms_switches_attach(s, host_restarted); /* before the VMs: their adapters plug into them */
	if (inv_list(s->inv, &vms, &n) < 0)
		return;
	for (int i = 0; i < n; i++) {
		struct inv_vm *vm = &vms[i];
		enum vm_state was = vm->status.state;
		bool was_running = vm_state_has_worker(was);
		bool saved = was == VM_SAVED;
		char state_path[PATH_MAX];
		vmms_saved_state_path(vm, state_path, sizeof(state_path));
		/* Saving or Restoring when vmms stopped: Saved if the file is complete (the worker renames
		 * it into place only then), unless a restored worker answers (it runs on from it). */
		bool state_kept = (was == VM_SAVING || was == VM_RESTORING) && file_readable(state_path);
		if (was_running) {
			pid_t pid = vm->worker_pid;
			bool alive = !host_restarted && pid > 0 && kill(pid, 0) == 0 && !proc_is_zombie(pid) &&
				     proc_start(pid) == vm->worker_start;
			json_t *r = NULL;
			for (int tries = 0; alive && tries < 3 && !json_is_true(json_object_get(r, "ok")); tries++) {
				json_decref(r); /* a busy worker gets three chances */
				r = worker_vm_call(vm, "{\"op\":\"status\"}", 2000);
			}
			if (alive && json_is_true(json_object_get(r, "ok")) && was == VM_SAVING && state_kept) {
				json_t *t = worker_vm_call(vm, "{\"op\":\"turn-off\"}", 2000); /* it is paused: done with */
				if (!json_is_true(json_object_get(t, "ok")))
					kill(pid, SIGKILL);
				json_decref(t);
				struct vm_status st = { VM_SAVED, VM_OPS_NONE };
				set_status(s, vm, st, 0, 0, "Warning", "a save was cut off by a vmms restart after the state was written: "
					   "Saved (worker pid %d turned off)", (int)pid);
				saved = true;
			} else if (alive && json_is_true(json_object_get(r, "ok"))) {
				worker_add(s, vm->id, pid, false, vm->worker_start);
				const char *ws = json_string_value(json_object_get(r, "state"));
				struct vm_status st = { ws && !strcmp(ws, "Paused") ? VM_PAUSED : VM_RUNNING, vm->status.op };
				if (was == VM_RESTORING)
					unlink(state_path);
				set_status(s, vm, st, pid, vm->worker_start, was == VM_SAVING ? "Warning" : "Information",
					   "re-attached to the running worker (pid %d)%s", (int)pid,
					   was == VM_SAVING ? "; the save was cut off by a vmms restart" :
					   was == VM_RESTORING ? ", restored from the saved state" : "");
			} else {
				/* one that died while being asked (a SIGKILL still in progress) was gone, too */
				alive = alive && kill(pid, 0) == 0 && !proc_is_zombie(pid);
				if (alive) /* a worker that does not answer cannot be managed */
					kill(pid, SIGKILL);
				/* until it has exited (at most 1 s), its cgroup cannot go */
				for (int k = 0; alive && k < 100 && kill(pid, 0) == 0 && !proc_is_zombie(pid); k++)
					usleep(10000);
				/* the cgroup a worker leaves when it exits while vmms is not there to remove it */
				vmms_processor_release(s, vm->id);
				struct vm_status st = { state_kept ? VM_SAVED : VM_OFF, VM_OPS_NONE };
				set_status(s, vm, st, 0, 0, "Warning", alive ? "the worker (pid %d) did not answer when vmms started; %s"
								       : "the worker (pid %d) was gone when vmms started%s", (int)pid,
					   state_kept ? "; Saved: the saved state is complete" : alive ? "turned off" : "");
				saved = state_kept;
			}
			json_decref(r);
		} else if (vm->status.op != VM_OPS_NONE) {
			struct vm_status st = { vm->status.state, VM_OPS_NONE };
			set_status(s, vm, st, 0, 0, "Warning", "%s was interrupted by a vmms restart", vm_opstate_name(vm->status.op));
		}
		/* Hyper-V restores a Saved VM whose action is Start or StartIfRunning. */
		const char *act = vm->auto_start ? vm->auto_start : "";
		/* an operation a dead vmms left unfinished is recovered first (vmms_checkpoints_recover) */
		if (host_restarted && !worker_of(s, vm->id) && !vmms_checkpoints_journaled(s, vm->id) &&
		    (!strcasecmp(act, "Start") || (!strcasecmp(act, "StartIfRunning") && (was_running || saved)))) {
			inv_add_event(s->inv, vm->id, "Information", "automatic start after the host restarted");
			json_t *req = json_pack("{s:s}", "vm", vm->id);
			json_t *r = op_start(s, req);
			const char *e = json_string_value(json_object_get(r, "error"));
			if (e)
				inv_add_event(s->inv, vm->id, "Error", e);
			json_decref(r);
			json_decref(req);
		}
		inv_vm_free(vm);
	}
	free(vms);
}

bool vmms_starting(const struct vmms *s)
{
	for (int i = 0; i < s->nworkers; i++)
		if (s->workers[i].starting)
			return true;
	return vmms_jobs_busy(&s->jobs);
}

json_t *vmms_lifecycle_request(struct vmms *s, const char *op, json_t *req)
{
	if (!strcmp(op, "start"))
		return op_start(s, req);
	if (!strcmp(op, "stop"))
		return op_stop(s, req);
	if (!strcmp(op, "pause") || !strcmp(op, "resume"))
		return op_pause(s, req, !strcmp(op, "pause"));
	if (!strcmp(op, "save"))
		return op_save(s, req);
	if (!strcmp(op, "remove-saved-state"))
		return op_discard_saved(s, req);
	return NULL;
}
