/* The worker lifecycle: Start/Stop/Suspend/Resume-VM, worker processes and their exits, the
 * periodic checks, re-attaching after a vmms restart and automatic start after a host restart. */
#include <errno.h>
#include <fcntl.h>
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
	w->pidfd = pidfd_open_(pid);
	if (w->pidfd >= 0)
		fcntl(w->pidfd, F_SETFD, FD_CLOEXEC);
	return w;
}

static void worker_drop(struct vmms *s, struct vmms_worker *w)
{
	if (w->pidfd >= 0)
		close(w->pidfd);
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

static void worker_gone(struct vmms *s, struct vmms_worker *w, int wstatus, bool have_status)
{
	struct inv_vm vm;
	if (inv_find(s->inv, w->id, &vm) == 1) {
		struct vm_status next = { VM_OFF, VM_OPS_NONE };
		bool stopping = vm.status.state == VM_STOPPING;
		vm_transition(vm.status, VM_OP_WORKER_EXITED, &next);
		char line[300];
		if (!have_status) {
			set_status(s, &vm, next, 0, 0, stopping ? "Information" : "Warning",
				   "the worker (pid %d) exited; vmms was not its parent, so its exit status is unknown", (int)w->pid);
		} else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
			set_status(s, &vm, next, 0, 0, "Information", stopping ? "the virtual machine stopped" : "the guest powered off");
		} else if (WIFEXITED(wstatus)) {
			last_log_line(&vm, line, sizeof(line));
			set_status(s, &vm, next, 0, 0, "Error", "the worker (pid %d) failed with status %d: %s", (int)w->pid,
				   WEXITSTATUS(wstatus), *line ? line : "no message");
		} else {
			set_status(s, &vm, next, 0, 0, "Error", "the worker (pid %d) was killed by signal %d (%s)", (int)w->pid,
				   WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
		}
		inv_vm_free(&vm);
	}
	worker_drop(s, w);
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

static pid_t spawn_worker(struct vmms *s, const struct inv_vm *vm, uint64_t request_ns, char *err, size_t errlen)
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
	const char *argv[32 + 2 * INV_MAX_DISKS + 2 * INV_IC_COUNT + 2 * INV_MAX_NICS];
	int n = 0;
	argv[n++] = s->vmwp;
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
	argv[n++] = "--memory";
	argv[n++] = mem;
	argv[n++] = "--cpus";
	argv[n++] = cpus;
	argv[n++] = "--control";
	argv[n++] = sock;
	argv[n++] = "--serial";
	argv[n++] = serial;
	for (int i = 0; i < vm->ndisks; i++) {
		argv[n++] = "--disk";
		argv[n++] = vm->disks[i].path;
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
	if (logfd < 0) {
		snprintf(err, errlen, "%s: %s", log, strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(logfd);
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
		execv(argv[0], (char *const *)argv);
		dprintf(2, "vmms: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	return pid;
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
	if (!vm.kernel) {
		reply = err_reply(0, "'%s' has nothing to boot: firmware boot is not supported yet; set a kernel with Set-VMFirmware -KernelPath", vm.name);
		goto out;
	}
	if (!file_readable(vm.kernel) || (vm.initrd && !file_readable(vm.initrd))) {
		reply = err_reply(0, "'%s' cannot start: the kernel or initrd is missing", vm.name);
		goto out;
	}
	for (int i = 0; i < vm.ndisks; i++)
		if (!file_readable(vm.disks[i].path)) {
			reply = err_reply(0, "'%s' cannot start: the disk '%s' is missing", vm.name, vm.disks[i].path);
			goto out;
		}
	if (mkdir_p(vm.path) < 0) {
		reply = err_reply(0, "%s: %s", vm.path, strerror(errno));
		goto out;
	}
	pid_t pid = spawn_worker(s, &vm, request_ns, err, sizeof(err));
	if (pid < 0) {
		reply = err_reply(0, "'%s' cannot start: %s", vm.name, err);
		goto out;
	}
	uint64_t start = proc_start(pid);
	struct vmms_worker *w = worker_add(s, vm.id, pid, true, start);
	if (w)
		w->starting = true;
	set_status(s, &vm, next, pid, start, "Information", "starting: worker pid %d", (int)pid);
	reply = json_pack("{s:b, s:s, s:i}", "ok", 1, "state", vm_state_name(next.state), "worker_pid", (int)pid);
out:
	inv_vm_free(&vm);
	return reply;
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
	if (vm.status.state == VM_SAVED) { /* discard the saved state */
		set_status(s, &vm, next, 0, 0, "Information", "saved state discarded");
		reply = json_pack("{s:b, s:s}", "ok", 1, "state", "Off");
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
		set_status(s, &vm, next, vm.worker_pid, vm.worker_start, "Information", "turning off");
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

void vmms_tick(struct vmms *s)
{
	vmms_reap(s);
	vmms_switches_tick(s);
	int64_t now = mono_ms();
	for (int i = 0; i < s->nworkers; i++) {
		struct vmms_worker *w = &s->workers[i];
		struct inv_vm vm;
		if (inv_find(s->inv, w->id, &vm) != 1)
			continue;
		struct vm_status next;
		if (vm.status.state == VM_STARTING) {
			json_t *r = worker_vm_call(&vm, "{\"op\":\"status\"}", 1000);
			if (json_is_true(json_object_get(r, "ok")) && !vm_transition(vm.status, VM_OP_WORKER_READY, &next)) {
				w->starting = false;
				set_status(s, &vm, next, w->pid, w->start, "Information", "running (worker pid %d)", (int)w->pid);
			}
			json_decref(r);
		} else {
			w->starting = false;
		}
		if (vm.status.state == VM_STOPPING && w->stop_deadline_ms && now > w->stop_deadline_ms) {
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
 * VM's automatic start action (Start; StartIfRunning when it was running at the time). */
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
		bool was_running = vm_state_has_worker(vm->status.state);
		if (vm_state_has_worker(vm->status.state)) {
			pid_t pid = vm->worker_pid;
			bool alive = !host_restarted && pid > 0 && kill(pid, 0) == 0 && !proc_is_zombie(pid) &&
				     proc_start(pid) == vm->worker_start;
			json_t *r = NULL;
			for (int tries = 0; alive && tries < 3 && !json_is_true(json_object_get(r, "ok")); tries++) {
				json_decref(r); /* a busy worker gets three chances */
				r = worker_vm_call(vm, "{\"op\":\"status\"}", 2000);
			}
			if (alive && json_is_true(json_object_get(r, "ok"))) {
				worker_add(s, vm->id, pid, false, vm->worker_start);
				const char *ws = json_string_value(json_object_get(r, "state"));
				struct vm_status st = { ws && !strcmp(ws, "Paused") ? VM_PAUSED : VM_RUNNING, vm->status.op };
				set_status(s, vm, st, pid, vm->worker_start, "Information", "re-attached to the running worker (pid %d)", (int)pid);
			} else {
				/* one that died while being asked (a SIGKILL still in progress) was gone, too */
				alive = alive && kill(pid, 0) == 0 && !proc_is_zombie(pid);
				if (alive) /* a worker that does not answer cannot be managed */
					kill(pid, SIGKILL);
				struct vm_status st = { VM_OFF, VM_OPS_NONE };
				set_status(s, vm, st, 0, 0, "Warning", alive ? "the worker (pid %d) did not answer when vmms started; turned off"
								       : "the worker (pid %d) was gone when vmms started", (int)pid);
			}
			json_decref(r);
		} else if (vm->status.op != VM_OPS_NONE) {
			struct vm_status st = { vm->status.state, VM_OPS_NONE };
			set_status(s, vm, st, 0, 0, "Warning", "%s was interrupted by a vmms restart", vm_opstate_name(vm->status.op));
		}
		const char *act = vm->auto_start ? vm->auto_start : "";
		if (host_restarted && !worker_of(s, vm->id) &&
		    (!strcasecmp(act, "Start") || (!strcasecmp(act, "StartIfRunning") && was_running))) {
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
	return false;
}

json_t *vmms_lifecycle_request(struct vmms *s, const char *op, json_t *req)
{
	if (!strcmp(op, "start"))
		return op_start(s, req);
	if (!strcmp(op, "stop"))
		return op_stop(s, req);
	if (!strcmp(op, "pause") || !strcmp(op, "resume"))
		return op_pause(s, req, !strcmp(op, "pause"));
	return NULL;
}
