/* The management service: requests, worker processes, re-attaching after a restart. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vmms/control_client.h"
#include "vhd/vdisk.h"
#include "vmms/service.h"

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *err_reply(int id, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *r = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
	if (id)
		json_object_set_new(r, "id", json_integer(id));
	return r;
}

json_t *conflict(const struct inv_vm *vm, const char *what)
{
	const char *ops = vm_opstate_name(vm->status.op);
	return err_reply(VMMS_ERR_CONFLICT, "'%s' cannot %s: the virtual machine is %s%s%s (error 32788: configuration conflict)",
			 vm->name, what, vm_state_name(vm->status.state), *ops ? ", " : "", ops);
}

/* ---- validation ---- */

bool vmms_valid_name(const char *name)
{
	if (!name || !*name || strlen(name) > 100)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f || strchr("/\\*?[]\"", *p))
			return false;
	return !isspace((unsigned char)name[0]) && !isspace((unsigned char)name[strlen(name) - 1]);
}

bool vmms_valid_memory(uint64_t b)
{
	return b >= VMMS_MIN_MEMORY && b <= VMMS_MAX_MEMORY && !(b & ((2u << 20) - 1));
}

bool vmms_valid_auto_start(const char *v)
{
	return v && (!strcasecmp(v, "Nothing") || !strcasecmp(v, "StartIfRunning") || !strcasecmp(v, "Start"));
}

bool vmms_valid_auto_stop(const char *v)
{
	return v && (!strcasecmp(v, "TurnOff") || !strcasecmp(v, "Save") || !strcasecmp(v, "ShutDown"));
}

bool vmms_is_guid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

static const char *canonical(const char *v, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (!strcasecmp(v, names[i]))
			return names[i];
	return v;
}

static const char *const auto_start_names[] = { "Nothing", "StartIfRunning", "Start", NULL };
static const char *const auto_stop_names[] = { "TurnOff", "Save", "ShutDown", NULL };

/* Integration services: the worker's status key, Hyper-V's display name, the worker's
 * --disable-ic name; indexed by INV_IC_*. */
static const struct { const char *key, *display, *worker, *alias; } ic_names[INV_IC_COUNT] = {
	[INV_IC_HEARTBEAT] = { "Heartbeat", "Heartbeat", "heartbeat", NULL },
	[INV_IC_SHUTDOWN] = { "Shutdown", "Shutdown", "shutdown", NULL },
	[INV_IC_TIMESYNC] = { "TimeSynchronization", "Time Synchronization", "timesync", NULL },
	[INV_IC_KVP] = { "KeyValuePairExchange", "Key-Value Pair Exchange", "kvp", NULL },
	[INV_IC_VSS] = { "VSS", "VSS", "vss", "Guest Service Interface (VSS)" },
};

int vmms_ic_index(const char *name)
{
	for (int i = 0; name && i < INV_IC_COUNT; i++)
		if (!strcasecmp(name, ic_names[i].key) || !strcasecmp(name, ic_names[i].display) ||
		    !strcasecmp(name, ic_names[i].worker) || (ic_names[i].alias && !strcasecmp(name, ic_names[i].alias)))
			return i;
	return -1;
}

void new_guid(char out[37])
{
	unsigned char b[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
		srand((unsigned)time(NULL) ^ (unsigned)getpid());
		for (int i = 0; i < 16; i++)
			b[i] = (unsigned char)rand();
	}
	if (fd >= 0)
		close(fd);
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* ---- worker processes ---- */

static uint64_t proc_field(pid_t pid, int field) /* 1-based field of /proc/PID/stat */
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p)
		return 0;
	p++;
	for (int f = 3; f < field && p; f++) { /* p is at the space before field f */
		p = strchr(p + 1, ' ');
	}
	return p ? strtoull(p, NULL, 10) : 0;
}

uint64_t proc_start(pid_t pid)
{
	return proc_field(pid, 22);
}

bool proc_is_zombie(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

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

static void sock_path(const struct inv_vm *vm, char *out, size_t len)
{
	snprintf(out, len, "%s/worker.sock", vm->path);
}

/* One request to a worker's control socket; NULL when it does not answer. */
json_t *worker_call(const char *path, const char *line, int timeout_ms)
{
	enum control_call_error why;
	return control_call(path, line, timeout_ms, &why);
}

json_t *worker_vm_call(const struct inv_vm *vm, const char *line, int timeout_ms)
{
	char p[PATH_MAX];
	sock_path(vm, p, sizeof(p));
	return worker_call(p, line, timeout_ms);
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

/* The last non-empty line of a log file (a worker's or a switch's one-line reason on failure). */
void vmms_log_tail_line(const char *path, char *out, size_t len)
{
	char buf[4096];
	*out = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	char *l = strrchr(buf, '\n');
	const char *src = l ? l + 1 : buf;
	size_t k = strlen(src);
	if (k >= len)
		k = len - 1;
	memcpy(out, src, k);
	out[k] = '\0';
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
	sock_path(vm, sock, sizeof(sock));
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
			argv[n++] = ic_names[i].worker;
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

/* ---- VM objects ---- */

static json_t *vm_json(struct vmms *s, const struct inv_vm *vm, bool ask_worker, json_t **ics)
{
	json_t *disks = json_array();
	for (int i = 0; i < vm->ndisks; i++)
		json_array_append_new(disks, json_pack("{s:i, s:i, s:s}", "controller", vm->disks[i].controller,
						       "lun", vm->disks[i].lun, "path", vm->disks[i].path));
	const char *ops = vm_opstate_name(vm->status.op);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:s, s:s, s:s, s:s, s:o, s:s}",
			      "id", vm->id, "name", vm->name, "state", vm_state_name(vm->status.state),
			      "operation", ops, "generation", vm->generation, "cpus", vm->cpus,
			      "memory_startup", (json_int_t)vm->memory, "notes", vm->notes ? vm->notes : "",
			      "automatic_start_action", vm->auto_start ? vm->auto_start : "",
			      "automatic_stop_action", vm->auto_stop ? vm->auto_stop : "", "path", vm->path,
			      "disks", disks, "version", "9.0");
	json_object_set_new(o, "kernel", vm->kernel ? json_string(vm->kernel) : json_null());
	json_object_set_new(o, "initrd", vm->initrd ? json_string(vm->initrd) : json_null());
	json_object_set_new(o, "cmdline", vm->cmdline ? json_string(vm->cmdline) : json_null());
	json_t *ice = json_object();
	for (int i = 0; i < INV_IC_COUNT; i++)
		json_object_set_new(ice, ic_names[i].key, json_boolean(!(vm->ic_disabled & (1u << i))));
	json_object_set_new(o, "integration_services_enabled", ice);
	json_int_t uptime = 0, assigned = 0;
	const char *hb = "", *status = *ops ? ops : "Operating normally";
	double cpu = 0;
	json_t *st = NULL;
	struct vmms_worker *w = worker_of(s, vm->id);
	if (w && vm_state_has_worker(vm->status.state)) {
		json_object_set_new(o, "worker_pid", json_integer(w->pid));
		assigned = (json_int_t)vm->memory;
		if (ask_worker && (st = worker_vm_call(vm, "{\"op\":\"status\"}", 2000))) {
			uptime = json_integer_value(json_object_get(st, "uptime_ms"));
			hb = json_string_value(json_object_get(st, "heartbeat")) ?: "";
			json_int_t m = json_integer_value(json_object_get(st, "memory_bytes"));
			if (m)
				assigned = m;
		} else if (ask_worker && vm->status.state == VM_RUNNING) {
			status = "The worker does not answer";
		}
		uint64_t ticks = proc_field(w->pid, 14) + proc_field(w->pid, 15);
		int64_t now = mono_ms();
		long hz = sysconf(_SC_CLK_TCK);
		if (w->cpu_at_ms && now - w->cpu_at_ms >= 200 && hz > 0 && ticks >= w->cpu_ticks) {
			double used_ms = (double)(ticks - w->cpu_ticks) * 1000.0 / (double)hz;
			w->cpu_pct = used_ms * 100.0 / ((double)(now - w->cpu_at_ms) * (vm->cpus > 0 ? vm->cpus : 1));
		}
		if (!w->cpu_at_ms || now - w->cpu_at_ms >= 200) {
			w->cpu_ticks = ticks;
			w->cpu_at_ms = now;
		}
		cpu = w->cpu_pct > 100 ? 100 : w->cpu_pct;
	}
	json_object_set_new(o, "uptime_ms", json_integer(uptime));
	json_object_set_new(o, "memory_assigned", json_integer(assigned));
	json_object_set_new(o, "cpu_usage", json_integer((json_int_t)(cpu + 0.5)));
	json_object_set_new(o, "heartbeat", json_string(hb));
	json_object_set_new(o, "status", json_string(status));
	if (st && ics) {
		json_t *i = json_object_get(st, "integration_services");
		*ics = i ? json_incref(i) : NULL;
	}
	json_decref(st);
	return o;
}

/* The VM a request names ("vm": GUID or name). */
json_t *find_vm(struct vmms *s, json_t *req, struct inv_vm *vm)
{
	const char *name = json_string_value(json_object_get(req, "vm"));
	if (!name || !*name)
		return err_reply(0, "the request names no virtual machine (\"vm\")");
	int r = inv_find(s->inv, name, vm);
	if (r < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	if (r == 0)
		return err_reply(0, "Hyper-V was unable to find a virtual machine with name or id '%s'", name);
	return NULL;
}

static bool file_readable(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, R_OK) == 0;
}

const char *jstr(json_t *req, const char *key)
{
	return json_string_value(json_object_get(req, key));
}

bool jint(json_t *req, const char *key, json_int_t *out)
{
	json_t *v = json_object_get(req, key);
	if (!v)
		return false;
	*out = json_is_integer(v) ? json_integer_value(v) : -1;
	return true;
}

/* ---- requests ---- */

/* Set-VMHost's folders (the inventory's meta table); vmms's root and its "Virtual Hard Disks"
 * by default. */
static void host_path(struct vmms *s, const char *key, char *out, size_t len)
{
	if (inv_meta_get(s->inv, key, out, len) == 1 && *out)
		return;
	int n = snprintf(out, len, "%s", s->root);
	if (!strcmp(key, "VirtualHardDiskPath") && n >= 0 && (size_t)n < len)
		snprintf(out + n, len - (size_t)n, "/Virtual Hard Disks");
}

static json_t *op_host(struct vmms *s)
{
	char vmp[PATH_MAX], vhdp[PATH_MAX], host[256] = "";
	host_path(s, "VirtualMachinePath", vmp, sizeof(vmp));
	host_path(s, "VirtualHardDiskPath", vhdp, sizeof(vhdp));
	gethostname(host, sizeof(host) - 1);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	return json_pack("{s:b, s:{s:s, s:s, s:s, s:i, s:I}}", "ok", 1, "host", "name", host,
			 "virtual_machine_path", vmp, "virtual_hard_disk_path", vhdp, "logical_processor_count", (int)cpus,
			 "memory_capacity", (json_int_t)pages * (json_int_t)psz);
}

static bool is_dir(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static json_t *op_set_host(struct vmms *s, json_t *req)
{
	static const char *const keys[][2] = { { "virtual_machine_path", "VirtualMachinePath" },
					       { "virtual_hard_disk_path", "VirtualHardDiskPath" } };
	int given = 0;
	for (int i = 0; i < 2; i++) {
		const char *p = json_string_value(json_object_get(req, keys[i][0]));
		if (!p)
			continue;
		given++;
		if (p[0] != '/' || !is_dir(p) || strlen(p) >= PATH_MAX - 100)
			return err_reply(0, "-%s '%s' is not an existing folder (absolute path needed)", keys[i][1], p);
	}
	if (!given)
		return err_reply(0, "nothing to change: give -VirtualMachinePath or -VirtualHardDiskPath");
	for (int i = 0; i < 2; i++) {
		const char *p = json_string_value(json_object_get(req, keys[i][0]));
		if (p && inv_meta_set(s->inv, keys[i][1], p) < 0)
			return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	return op_host(s);
}

bool vmms_name_matches(const char *pattern, const char *name, const char *id)
{
	return !pattern || !strcasecmp(pattern, name) || fnmatch(pattern, name, FNM_CASEFOLD) == 0 ||
	       (id && !strcasecmp(pattern, id));
}

bool vmms_name_is_pattern(const char *pattern)
{
	return strpbrk(pattern, "*?[") != NULL;
}

static json_t *op_list(struct vmms *s, json_t *req)
{
	const char *pattern = jstr(req, "name");
	struct inv_vm *vms;
	int n;
	if (inv_list(s->inv, &vms, &n) < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	json_t *arr = json_array();
	int matched = 0;
	for (int i = 0; i < n; i++) {
		if (vmms_name_matches(pattern, vms[i].name, vms[i].id)) {
			json_array_append_new(arr, vm_json(s, &vms[i], true, NULL));
			matched++;
		}
		inv_vm_free(&vms[i]);
	}
	free(vms);
	if (pattern && !matched && !vmms_name_is_pattern(pattern)) {
		json_decref(arr);
		return err_reply(0, "Hyper-V was unable to find a virtual machine with name '%s'", pattern);
	}
	return json_pack("{s:b, s:o}", "ok", 1, "vms", arr);
}

static json_t *op_new(struct vmms *s, json_t *req)
{
	const char *name = jstr(req, "name"), *vhd = jstr(req, "vhd_path"), *new_vhd = jstr(req, "new_vhd_path");
	const char *base = jstr(req, "path");
	json_int_t gen = 1, cpus = 1, mem = 512 << 20, new_size = 0;
	jint(req, "generation", &gen);
	jint(req, "cpus", &cpus);
	jint(req, "memory", &mem);
	jint(req, "new_vhd_size", &new_size);
	if (!vmms_valid_name(name))
		return err_reply(0, "invalid virtual machine name '%s' (1-100 characters, none of / \\ * ? [ ] \")", name ? name : "");
	if (gen != 1 && gen != 2)
		return err_reply(0, "-Generation must be 1 or 2");
	if (cpus < 1 || cpus > VMMS_MAX_CPUS)
		return err_reply(0, "-ProcessorCount must be 1 to %d", VMMS_MAX_CPUS);
	if (mem < 0 || !vmms_valid_memory((uint64_t)mem))
		return err_reply(0, "-MemoryStartupBytes must be 32MB to 1TB in whole 2 MB units");
	if (vhd && new_vhd)
		return err_reply(0, "give -VHDPath or -NewVHDPath, not both");
	if (new_vhd && new_size <= 0)
		return err_reply(0, "-NewVHDPath needs -NewVHDSizeBytes");
	if (!new_vhd && new_size)
		return err_reply(0, "-NewVHDSizeBytes needs -NewVHDPath");
	if (vhd && !file_readable(vhd))
		return err_reply(0, "the virtual hard disk '%s' does not exist or cannot be read", vhd);
	if (vhd && vhd[0] != '/')
		return err_reply(0, "-VHDPath must be an absolute path");
	struct inv_vm existing;
	int r = inv_find(s->inv, name, &existing);
	if (r == 1) {
		inv_vm_free(&existing);
		return err_reply(0, "a virtual machine named '%s' already exists", name);
	}
	struct inv_vm vm = { 0 };
	new_guid(vm.id);
	char vmdir[PATH_MAX], vhdpath[PATH_MAX] = "", home[PATH_MAX];
	if (base) {
		if (base[0] != '/')
			return err_reply(0, "-Path must be an absolute path");
		if (snprintf(home, sizeof(home), "%s/%s", base, name) >= (int)sizeof(home))
			return err_reply(0, "path too long");
	} else {
		host_path(s, "VirtualMachinePath", home, sizeof(home));
	}
	if (snprintf(vmdir, sizeof(vmdir), "%s/Virtual Machines/%s", home, vm.id) >= (int)sizeof(vmdir))
		return err_reply(0, "path too long");
	if (new_vhd) {
		char vhddir[PATH_MAX + 32];
		if (base)
			snprintf(vhddir, sizeof(vhddir), "%s/Virtual Hard Disks", home);
		else
			host_path(s, "VirtualHardDiskPath", vhddir, sizeof(vhddir));
		int len = new_vhd[0] == '/' ? snprintf(vhdpath, sizeof(vhdpath), "%s", new_vhd)
					    : snprintf(vhdpath, sizeof(vhdpath), "%s/%s", vhddir, new_vhd);
		if (len >= (int)sizeof(vhdpath))
			return err_reply(0, "path too long");
		if (access(vhdpath, F_OK) == 0)
			return err_reply(0, "'%s' already exists", vhdpath);
	}
	if (mkdir_p(vmdir) < 0)
		return err_reply(0, "cannot create %s: %s", vmdir, strerror(errno));
	if (new_vhd) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", vhdpath);
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir)
			*slash = '\0';
		struct vdisk_create_params p = { .size = (uint64_t)new_size };
		if (mkdir_p(dir) < 0 || vdisk_create(vhdpath, &p) < 0) {
			rmdir(vmdir);
			return err_reply(0, "cannot create '%s': %s", vhdpath, vdisk_last_error());
		}
	}
	vm.name = (char *)name;
	vm.generation = (int)gen;
	vm.cpus = (int)cpus;
	vm.memory = (uint64_t)mem;
	vm.path = vmdir;
	vm.auto_start = "StartIfRunning";
	vm.auto_stop = "Save";
	vm.notes = "";
	if (vhd || new_vhd) {
		vm.ndisks = 1;
		vm.disks[0] = (struct inv_disk){ 0, 0, (char *)(vhd ? vhd : vhdpath) };
	}
	if (inv_create(s->inv, &vm) < 0) {
		json_t *e = err_reply(0, "%s", inv_error(s->inv));
		if (new_vhd)
			unlink(vhdpath);
		rmdir(vmdir);
		return e;
	}
	struct inv_vm created;
	if (inv_find(s->inv, vm.id, &created) != 1)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	json_t *o = vm_json(s, &created, false, NULL);
	inv_vm_free(&created);
	return json_pack("{s:b, s:o}", "ok", 1, "vm", o);
}

static json_t *op_set(struct vmms *s, json_t *req, bool firmware)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	json_t *reply = NULL;
	json_int_t v;
	const char *str;
	char *keep[5] = { vm.kernel, vm.initrd, vm.cmdline, vm.notes, vm.auto_start };
	char *keep2[2] = { vm.auto_stop, vm.name };
	if (!vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "be changed while it is not Off");
		goto out;
	}
	if (firmware) {
		if ((str = jstr(req, "kernel"))) {
			if (str[0] != '/' || !file_readable(str)) {
				reply = err_reply(0, "the kernel '%s' does not exist or cannot be read (absolute path needed)", str);
				goto out;
			}
			vm.kernel = (char *)str;
		}
		if ((str = jstr(req, "initrd"))) {
			if (*str && (str[0] != '/' || !file_readable(str))) {
				reply = err_reply(0, "the initrd '%s' does not exist or cannot be read (absolute path needed)", str);
				goto out;
			}
			vm.initrd = *str ? (char *)str : NULL;
		}
		if ((str = jstr(req, "cmdline")))
			vm.cmdline = (char *)str;
	} else {
		if (jint(req, "cpus", &v)) {
			if (v < 1 || v > VMMS_MAX_CPUS) {
				reply = err_reply(0, "-ProcessorCount must be 1 to %d", VMMS_MAX_CPUS);
				goto out;
			}
			vm.cpus = (int)v;
		}
		if (jint(req, "memory", &v)) {
			if (v < 0 || !vmms_valid_memory((uint64_t)v)) {
				reply = err_reply(0, "-MemoryStartupBytes must be 32MB to 1TB in whole 2 MB units");
				goto out;
			}
			vm.memory = (uint64_t)v;
		}
		if ((str = jstr(req, "automatic_start_action"))) {
			if (!vmms_valid_auto_start(str)) {
				reply = err_reply(0, "-AutomaticStartAction must be Nothing, StartIfRunning or Start");
				goto out;
			}
			vm.auto_start = (char *)canonical(str, auto_start_names);
		}
		if ((str = jstr(req, "automatic_stop_action"))) {
			if (!vmms_valid_auto_stop(str)) {
				reply = err_reply(0, "-AutomaticStopAction must be TurnOff, Save or ShutDown");
				goto out;
			}
			vm.auto_stop = (char *)canonical(str, auto_stop_names);
		}
		if ((str = jstr(req, "notes")))
			vm.notes = (char *)str;
		if ((str = jstr(req, "new_name"))) {
			if (!vmms_valid_name(str)) {
				reply = err_reply(0, "invalid virtual machine name '%s'", str);
				goto out;
			}
			vm.name = (char *)str;
		}
	}
	if (inv_update(s->inv, &vm) < 0) {
		reply = err_reply(0, "%s", inv_last_dup(s->inv) ? "a virtual machine with that name already exists" : inv_error(s->inv));
		goto out;
	}
	struct inv_vm now;
	if (inv_find(s->inv, vm.id, &now) == 1) {
		reply = json_pack("{s:b, s:o}", "ok", 1, "vm", vm_json(s, &now, false, NULL));
		inv_vm_free(&now);
	} else {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	}
out:
	vm.kernel = keep[0];
	vm.initrd = keep[1];
	vm.cmdline = keep[2];
	vm.notes = keep[3];
	vm.auto_start = keep[4];
	vm.auto_stop = keep2[0];
	vm.name = keep2[1];
	inv_vm_free(&vm);
	return reply;
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

static json_t *op_remove(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	json_t *reply;
	if (!vm_op_allowed(vm.status, VM_OP_REMOVE)) {
		reply = conflict(&vm, "be removed (stop it first)");
	} else if (inv_remove(s->inv, vm.id) < 0) {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	} else {
		/* The VM's own files go; its disks stay, as in Hyper-V. */
		const char *files[] = { "worker.sock", "console.log", "worker.log" };
		char p[PATH_MAX];
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", vm.path, files[i]);
			unlink(p);
		}
		rmdir(vm.path);
		reply = json_pack("{s:b, s:s}", "ok", 1, "id", vm.id);
	}
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_events(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	enum { MAX = 200 };
	struct inv_event *ev = calloc(MAX, sizeof(*ev));
	int n = ev ? inv_events(s->inv, vm.id, ev, MAX) : -1;
	json_t *arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:s}", "id", (json_int_t)ev[i].id, "time_ms",
						     (json_int_t)ev[i].time_ms, "level", ev[i].level, "message", ev[i].message));
	free(ev);
	json_t *r = json_pack("{s:b, s:s, s:s, s:o}", "ok", 1, "vm", vm.name, "id", vm.id, "events", arr);
	inv_vm_free(&vm);
	return r;
}

/* Add-VMHardDiskDrive: SCSI controller 0 (the worker's one synthetic controller), the next free
 * LUN unless given. Off (or Saved) only: the worker cannot hot-add a disk. */
static json_t *op_add_disk(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *path = jstr(req, "path"), *type = jstr(req, "controller_type");
	json_int_t ctrl = 0, lun = -1;
	bool have_lun = jint(req, "lun", &lun);
	jint(req, "controller", &ctrl);
	json_t *reply = NULL;
	int n = vm.ndisks;
	if (type && strcasecmp(type, "SCSI")) {
		reply = err_reply(0, "-ControllerType %s: only SCSI controllers are supported", type);
	} else if (ctrl != 0) {
		reply = err_reply(0, "-ControllerNumber %lld: the virtual machine has one SCSI controller (0)", (long long)ctrl);
	} else if (have_lun && (lun < 0 || lun >= INV_MAX_DISKS)) {
		reply = err_reply(0, "-ControllerLocation must be 0 to %d", INV_MAX_DISKS - 1);
	} else if (!path || path[0] != '/' || !file_readable(path)) {
		reply = err_reply(0, "the virtual hard disk '%s' does not exist or cannot be read (absolute path needed)", path ? path : "");
	} else if (!vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "get a disk while it is not Off (hot-add is not supported yet)");
	} else if (n >= INV_MAX_DISKS) {
		reply = err_reply(VMMS_ERR_CONFLICT, "'%s' has no free location on SCSI controller 0 (error 32788: configuration conflict)", vm.name);
	}
	for (int i = 0; !reply && i < n; i++) {
		if (!strcmp(vm.disks[i].path, path))
			reply = err_reply(VMMS_ERR_CONFLICT, "'%s' is already attached to '%s' at SCSI 0:%d (error 32788: configuration conflict)",
					  path, vm.name, vm.disks[i].lun);
		else if (have_lun && vm.disks[i].controller == ctrl && vm.disks[i].lun == lun)
			reply = err_reply(VMMS_ERR_CONFLICT, "SCSI 0:%lld of '%s' is in use by '%s' (error 32788: configuration conflict)",
					  (long long)lun, vm.name, vm.disks[i].path);
	}
	if (!reply && !have_lun) { /* the lowest free LUN */
		for (lun = 0; lun < INV_MAX_DISKS; lun++) {
			bool used = false;
			for (int i = 0; i < n; i++)
				used |= vm.disks[i].controller == ctrl && vm.disks[i].lun == lun;
			if (!used)
				break;
		}
	}
	if (!reply) {
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "hard disk drive added at SCSI 0:%lld: %s", (long long)lun, path);
		vm.disks[n] = (struct inv_disk){ (int)ctrl, (int)lun, (char *)path };
		vm.ndisks = n + 1;
		int rc = inv_update_event(s->inv, &vm, msg);
		vm.ndisks = n; /* path is the request's, not ours to free */
		reply = rc < 0 ? err_reply(0, "inventory: %s", inv_error(s->inv))
			       : json_pack("{s:b, s:{s:s, s:s, s:i, s:i, s:s}}", "ok", 1, "disk", "vm", vm.name, "controller_type", "SCSI",
					   "controller", (int)ctrl, "lun", (int)lun, "path", path);
	}
	inv_vm_free(&vm);
	return reply;
}

/* Remove-VMHardDiskDrive: by location ("lun", controller 0) or by "path"; the file stays. */
static json_t *op_remove_disk(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *path = jstr(req, "path");
	json_int_t ctrl = 0, lun = -1;
	bool have_lun = jint(req, "lun", &lun);
	jint(req, "controller", &ctrl);
	json_t *reply = NULL;
	int k = -1;
	for (int i = 0; i < vm.ndisks; i++)
		if (have_lun ? vm.disks[i].controller == ctrl && vm.disks[i].lun == lun : path && !strcmp(vm.disks[i].path, path))
			k = i;
	if (!have_lun && !path) {
		reply = err_reply(0, "name the drive: -ControllerLocation or -Path");
	} else if (k < 0) {
		char where[64];
		snprintf(where, sizeof(where), "SCSI %lld:%lld", (long long)ctrl, (long long)lun);
		reply = err_reply(0, "'%s' has no hard disk drive %s %s", vm.name, have_lun ? "at" : "with the path", have_lun ? where : path);
	} else if (!vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "lose a disk while it is not Off (hot-remove is not supported yet)");
	} else {
		char msg[PATH_MAX + 64];
		struct inv_disk gone = vm.disks[k];
		snprintf(msg, sizeof(msg), "hard disk drive removed from SCSI %d:%d: %s", gone.controller, gone.lun, gone.path);
		memmove(&vm.disks[k], &vm.disks[k + 1], (size_t)(vm.ndisks - k - 1) * sizeof(vm.disks[0]));
		vm.disks[--vm.ndisks] = gone; /* kept in the array so inv_vm_free frees it */
		int rc = inv_update_event(s->inv, &vm, msg);
		vm.ndisks++;
		reply = rc < 0 ? err_reply(0, "inventory: %s", inv_error(s->inv))
			       : json_pack("{s:b, s:{s:s, s:s, s:i, s:i, s:s}}", "ok", 1, "disk", "vm", vm.name, "controller_type", "SCSI",
					   "controller", gone.controller, "lun", gone.lun, "path", gone.path);
	}
	inv_vm_free(&vm);
	return reply;
}

/* Enable-/Disable-VMIntegrationService: stored; the worker gets --disable-ic at its next start. */
static json_t *op_set_ic(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *name = jstr(req, "name");
	json_t *en = json_object_get(req, "enabled");
	int i = vmms_ic_index(name);
	json_t *reply;
	if (i < 0) {
		reply = err_reply(0, "'%s' has no integration service named '%s' (Heartbeat, Shutdown, Time Synchronization, "
				  "Key-Value Pair Exchange, VSS)", vm.name, name ? name : "");
	} else if (!json_is_boolean(en)) {
		reply = err_reply(0, "the request needs \"enabled\": true or false");
	} else {
		unsigned was = vm.ic_disabled;
		if (json_is_true(en))
			vm.ic_disabled &= ~(1u << i);
		else
			vm.ic_disabled |= 1u << i;
		bool live = vm_state_has_worker(vm.status.state);
		char msg[160];
		snprintf(msg, sizeof(msg), "integration service %s %s%s", ic_names[i].display, json_is_true(en) ? "enabled" : "disabled",
			 live && was != vm.ic_disabled ? " (takes effect at the next start)" : "");
		if (was != vm.ic_disabled && inv_update_event(s->inv, &vm, msg) < 0)
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		else
			reply = json_pack("{s:b, s:s, s:b, s:b}", "ok", 1, "name", ic_names[i].display, "enabled", json_is_true(en),
					  "pending_restart", live && was != vm.ic_disabled);
	}
	inv_vm_free(&vm);
	return reply;
}

/* Connect-VM's keyboard: base64 bytes to the worker's COM1 ({"op":"console-input"}). */
static json_t *op_console_input(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *data = jstr(req, "data");
	json_t *reply;
	if (!data) {
		reply = err_reply(0, "console-input needs \"data\" (base64)");
	} else if (!worker_of(s, vm.id) || !vm_state_has_worker(vm.status.state)) {
		reply = conflict(&vm, "take console input");
	} else {
		json_t *wreq = json_pack("{s:s, s:s}", "op", "console-input", "data", data);
		char *line = json_dumps(wreq, JSON_COMPACT);
		json_decref(wreq);
		json_t *r = line ? worker_vm_call(&vm, line, 2000) : NULL;
		free(line);
		if (json_is_true(json_object_get(r, "ok"))) {
			reply = json_pack("{s:b, s:O}", "ok", 1, "accepted", json_object_get(r, "accepted"));
		} else {
			const char *why = r ? json_string_value(json_object_get(r, "error")) : "the worker does not answer";
			reply = err_reply(0, "'%s' takes no console input: %s", vm.name, why ? why : "refused");
		}
		json_decref(r);
	}
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_get(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	json_t *ics = NULL;
	json_t *o = vm_json(s, &vm, true, &ics);
	json_object_set_new(o, "integration_services", ics ? ics : json_object());
	inv_vm_free(&vm);
	return json_pack("{s:b, s:o}", "ok", 1, "vm", o);
}

json_t *vmms_request(struct vmms *s, json_t *req)
{
	const char *op = jstr(req, "op");
	if (!op)
		return err_reply(0, "request has no \"op\"");
	vmms_reap(s);
	if (!strcmp(op, "list"))
		return op_list(s, req);
	if (!strcmp(op, "get"))
		return op_get(s, req);
	if (!strcmp(op, "new"))
		return op_new(s, req);
	if (!strcmp(op, "set"))
		return op_set(s, req, false);
	if (!strcmp(op, "set-firmware"))
		return op_set(s, req, true);
	if (!strcmp(op, "start"))
		return op_start(s, req);
	if (!strcmp(op, "stop"))
		return op_stop(s, req);
	if (!strcmp(op, "remove"))
		return op_remove(s, req);
	if (!strcmp(op, "pause") || !strcmp(op, "resume"))
		return op_pause(s, req, !strcmp(op, "pause"));
	if (!strcmp(op, "events"))
		return op_events(s, req);
	if (!strcmp(op, "add-disk"))
		return op_add_disk(s, req);
	if (!strcmp(op, "remove-disk"))
		return op_remove_disk(s, req);
	if (!strcmp(op, "set-ic"))
		return op_set_ic(s, req);
	if (!strcmp(op, "console-input"))
		return op_console_input(s, req);
	if (!strcmp(op, "host"))
		return op_host(s);
	if (!strcmp(op, "set-host"))
		return op_set_host(s, req);
	if (!strcmp(op, "ping"))
		return json_pack("{s:b, s:i}", "ok", 1, "pid", (int)getpid());
	json_t *net = vmms_net_request(s, op, req);
	if (net)
		return net;
	return err_reply(0, "unknown op '%s'", op);
}

/* ---- periodic work and re-attaching ---- */

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
static void reattach(struct vmms *s)
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

int vmms_init(struct vmms *s, const char *root, const char *vmwp, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	if (!realpath(root, s->root) && (mkdir_p(root) < 0 || !realpath(root, s->root))) {
		snprintf(err, errlen, "--root %s: %s", root, strerror(errno));
		return -1;
	}
	snprintf(s->vmwp, sizeof(s->vmwp), "%s", vmwp);
	/* vmswitch lives beside vmwp. */
	const char *slash = strrchr(s->vmwp, '/');
	snprintf(s->vmswitch, sizeof(s->vmswitch), "%.*s%svmswitch", slash ? (int)(slash - s->vmwp) : 0, s->vmwp, slash ? "/" : "");
	if (getenv("VIRIDIAN_VMSWITCH"))
		snprintf(s->vmswitch, sizeof(s->vmswitch), "%s", getenv("VIRIDIAN_VMSWITCH"));
	const char *dirs[] = { "Virtual Machines", "Virtual Hard Disks", "Snapshots" };
	char p[PATH_MAX + 32];
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", s->root, dirs[i]);
		if (mkdir_p(p) < 0) {
			snprintf(err, errlen, "%s: %s", p, strerror(errno));
			return -1;
		}
	}
	/* One vmms per root: a second one would manage the same workers. */
	snprintf(p, sizeof(p), "%s/vmms.lock", s->root);
	s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "%s: %s", p, errno == EWOULDBLOCK ? "another vmms manages this root" : strerror(errno));
		if (s->lock_fd >= 0)
			close(s->lock_fd);
		s->lock_fd = -1;
		return -1;
	}
	snprintf(p, sizeof(p), "%s/vmms.db", s->root);
	if (!(s->inv = inv_open(p, err, errlen))) {
		close(s->lock_fd);
		s->lock_fd = -1;
		return -1;
	}
	reattach(s);
	return 0;
}

bool vmms_starting(const struct vmms *s)
{
	for (int i = 0; i < s->nworkers; i++)
		if (s->workers[i].starting)
			return true;
	return false;
}

void vmms_fini(struct vmms *s)
{
	for (int i = 0; i < s->nworkers; i++)
		if (s->workers[i].pidfd >= 0)
			close(s->workers[i].pidfd);
	s->nworkers = 0;
	vmms_switches_fini(s);
	inv_close(s->inv);
	s->inv = NULL;
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->lock_fd = -1;
}
