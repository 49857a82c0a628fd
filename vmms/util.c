/* What the files of vmms share: replies, paths, /proc, control-socket calls, request fields. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vmms/control_client.h"

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t vmms_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *vmms_job_reply(const struct vmms_job *j)
{
	if (j->state == VMMS_JOB_FAILED)
		return err_reply(0, "%s", j->error);
	return json_pack("{s:b, s:s, s:s}", "ok", 1, "job", j->id, "job_state", vmms_job_state_name(j->state));
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

uint64_t proc_field(pid_t pid, int field)
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

void worker_sock_path(const struct inv_vm *vm, char *out, size_t len)
{
	snprintf(out, len, "%s/worker.sock", vm->path);
}

/* Hyper-V's name for a saved state, kept with the VM's files. */
void vmms_saved_state_path(const struct inv_vm *vm, char *out, size_t len)
{
	snprintf(out, len, "%s/%s.vmrs", vm->path, vm->id);
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
	worker_sock_path(vm, p, sizeof(p));
	return worker_call(p, line, timeout_ms);
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

bool file_readable(const char *p)
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

bool vmms_name_matches(const char *pattern, const char *name, const char *id)
{
	return !pattern || !strcasecmp(pattern, name) || fnmatch(pattern, name, FNM_CASEFOLD) == 0 ||
	       (id && !strcasecmp(pattern, id));
}

bool vmms_name_is_pattern(const char *pattern)
{
	return strpbrk(pattern, "*?[") != NULL;
}

void vmms_crash_point(const char *step)
{
	const char *at = getenv("VIRIDIAN_VMMS_CRASH_AT");
	if (at && !strcmp(at, step)) {
		fprintf(stderr, "vmms: exiting at %s (VIRIDIAN_VMMS_CRASH_AT)\n", step);
		_exit(86);
	}
}

void vm_event(struct vmms *s, const char *vm_id, const char *level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	inv_add_event(s->inv, vm_id, level, msg);
	fprintf(stderr, "vmms: %s: %s\n", vm_id, msg);
}

int vm_set_op(struct vmms *s, const char *vm_id, enum vm_opstate op)
{
	struct inv_vm vm;
	if (inv_find(s->inv, vm_id, &vm) != 1)
		return -1;
	struct vm_status st = { vm.status.state, op };
	int r = inv_set_status(s->inv, vm.id, st, vm.worker_pid, vm.worker_start, NULL, NULL);
	inv_vm_free(&vm);
	return r;
}

json_t *worker_vm_request(const struct inv_vm *vm, json_t *req, int timeout_ms)
{
	char *line = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	json_t *r = line ? worker_vm_call(vm, line, timeout_ms) : NULL;
	free(line);
	return r;
}

const char *worker_error(json_t *r)
{
	const char *e = r ? json_string_value(json_object_get(r, "error")) : "the worker does not answer";
	return e ? e : "refused";
}

/* internal.h; for a folder, the nearest one of path that exists is checked. */
const char *vmms_caller_path(struct vmms *s, const char *path, int mode, const char *what, char *buf, size_t len,
			     json_t **reply)
{
	char at[PATH_MAX];
	if ((size_t)snprintf(at, sizeof(at), "%s", path) >= sizeof(at)) {
		*reply = err_reply(0, "path too long");
		return NULL;
	}
	for (char *slash; mode == VMMS_CALLER_DIR && access(at, F_OK) < 0 && (slash = strrchr(at, '/')) && slash != at;)
		*slash = 0;
	int err;
	if (vmms_caller_resolve(&s->caller, at, mode, buf, len, &err) == 0)
		return mode == VMMS_CALLER_DIR ? path : buf;
	*reply = err_reply(0, "%s '%s' cannot be used: %s", what, path, vmms_caller_why(err));
	return NULL;
}

json_t *vmms_disk_json(const struct inv_vm *vm, const struct inv_disk *d)
{
	return json_pack("{s:s, s:s, s:i, s:i, s:s, s:I, s:I}", "vm", vm->name, "controller_type", "SCSI", "controller",
			 d->controller, "lun", d->lun, "path", d->path, "max_iops", (json_int_t)d->max_iops, "max_bandwidth",
			 (json_int_t)d->max_bandwidth);
}

int vmms_find_disk(const struct inv_vm *vm, json_t *req, json_t **reply)
{
	const char *path = jstr(req, "path");
	json_int_t ctrl = 0, lun = -1;
	bool have_lun = jint(req, "lun", &lun);
	jint(req, "controller", &ctrl);
	for (int i = 0; i < vm->ndisks; i++)
		if (have_lun ? vm->disks[i].controller == ctrl && vm->disks[i].lun == lun : path && !strcmp(vm->disks[i].path, path))
			return i;
	if (!have_lun && !path) {
		*reply = err_reply(0, "name the drive: -ControllerLocation or -Path");
	} else {
		char where[64];
		snprintf(where, sizeof(where), "SCSI %lld:%lld", (long long)ctrl, (long long)lun);
		*reply = err_reply(0, "'%s' has no hard disk drive %s %s", vm->name, have_lun ? "at" : "with the path",
				   have_lun ? where : path);
	}
	return -1;
}
