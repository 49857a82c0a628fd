/* The worker's sandbox (include/worker/sandbox.h): namespaces, Landlock, a per-VM identity and
 * per-thread-kind seccomp allow-lists. The lists below are the whole of what a worker may call. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <linux/landlock.h>
#include <linux/prctl.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "worker/log.h"
#include "worker/sandbox.h"

/* ---- seccomp allow-lists ---- */

#define KVMIO 0xAE /* KVM's ioctl type: (cmd >> 8) & 0xff */

/* A rule: a syscall, at most one argument condition, and either allow (err 0) or fail with err. */
struct rule {
	const char *name;
	int err;
	bool has_cmp;
	struct scmp_arg_cmp cmp;
};

/* Argument conditions, every field given (libseccomp's SCMP_An leave datum_b to C). */
#define ARG_EQ(n, v) ((struct scmp_arg_cmp){ .arg = (n), .op = SCMP_CMP_EQ, .datum_a = (v), .datum_b = 0 })
#define ARG_MASKED(n, mask, v) ((struct scmp_arg_cmp){ .arg = (n), .op = SCMP_CMP_MASKED_EQ, .datum_a = (mask), .datum_b = (v) })

#define ALLOW(n) { n, 0, false, { 0, 0, 0, 0 } }
#define ALLOW_IF(n, c) { n, 0, true, c }
#define FAIL(n, e) { n, e, false, { 0, 0, 0, 0 } }

/* Every thread: memory, locks, time, signals' return, moving data on descriptors it has. */
static const struct rule common_rules[] = {
	ALLOW("read"), ALLOW("write"), ALLOW("readv"), ALLOW("writev"), ALLOW("pread64"), ALLOW("pwrite64"),
	ALLOW("preadv"), ALLOW("pwritev"), ALLOW("preadv2"), ALLOW("pwritev2"), ALLOW("lseek"),
	ALLOW("fdatasync"), ALLOW("fsync"), ALLOW("fallocate"), ALLOW("ftruncate"), ALLOW("flock"),
	ALLOW("fstat"), ALLOW("newfstatat"), ALLOW("statx"), ALLOW("fcntl"), ALLOW("close"),
	ALLOW("recvfrom"), ALLOW("sendto"), ALLOW("recvmsg"), ALLOW("sendmsg"),
	ALLOW("poll"), ALLOW("ppoll"), ALLOW("futex"), ALLOW("sched_yield"), ALLOW("sched_getaffinity"),
	ALLOW("munmap"), ALLOW("mremap"), ALLOW("madvise"), ALLOW("brk"),
	/* time, gettimeofday, clock_getres and getcpu are the vDSO's fallbacks (a clocksource
	 * without vDSO support, e.g. after the TSC is marked unstable). */
	ALLOW("clock_gettime"), ALLOW("clock_getres"), ALLOW("time"), ALLOW("gettimeofday"), ALLOW("getcpu"),
	ALLOW("clock_nanosleep"), ALLOW("nanosleep"), ALLOW("gettid"), ALLOW("getpid"),
	ALLOW("getrandom"), ALLOW("rt_sigreturn"), ALLOW("rt_sigprocmask"), ALLOW("sigaltstack"),
	ALLOW("restart_syscall"), ALLOW("set_robust_list"), ALLOW("rseq"), ALLOW("membarrier"),
	ALLOW("exit"), ALLOW("exit_group"),
};

/* vCPU and I/O threads map memory (malloc) but never executable memory. */
static const struct rule data_thread_rules[] = {
	ALLOW_IF("mmap", ARG_MASKED(2, PROT_EXEC, 0)),
	ALLOW_IF("mprotect", ARG_MASKED(2, PROT_EXEC, 0)),
};

/* vCPU threads: KVM's own ioctls on the vCPU (KVM_RUN, registers, interrupts); kicking a sibling
 * vCPU (tgkill, checked against this process below). */
static const struct rule vcpu_rules[] = {
	ALLOW_IF("ioctl", ARG_MASKED(1, 0xff00, KVMIO << 8)),
};

/* I/O threads: interrupting the guest when a request completes or a frame arrives (the VM's
 * MSI and IRQ line, nothing else of KVM's); a network adapter's thread (re)connects to its
 * switch's port socket. */
static const struct rule io_rules[] = {
	ALLOW_IF("ioctl", ARG_EQ(1, KVM_SIGNAL_MSI)), ALLOW_IF("ioctl", ARG_EQ(1, KVM_IRQ_LINE)),
	ALLOW_IF("socket", ARG_EQ(0, AF_UNIX)), ALLOW("connect"), ALLOW("setsockopt"), ALLOW("getsockopt"),
};

/* The control thread, and so the process as a whole (every thread starts from this list): what
 * start-up and a reset's re-exec need (the loader, opening the VM's files, which Landlock limits
 * to its folders), the control socket, threads but no processes, and nothing that reaches
 * beyond the worker: no other socket family, no ptrace, mount, setuid, bpf, keyring, module... */
static const struct rule control_rules[] = {
	ALLOW("mmap"), ALLOW("mprotect"),
	ALLOW("openat"), ALLOW("open"), ALLOW("access"), ALLOW("faccessat"), ALLOW("faccessat2"),
	ALLOW("readlink"), ALLOW("readlinkat"), ALLOW("getdents64"), ALLOW("getcwd"),
	ALLOW("unlink"), ALLOW("unlinkat"), ALLOW("rename"), ALLOW("renameat"), ALLOW("renameat2"),
	ALLOW("mkdir"), ALLOW("mkdirat"), ALLOW("chmod"), ALLOW("fchmod"), ALLOW("fchmodat"),
	ALLOW("dup"), ALLOW("dup2"), ALLOW("dup3"), ALLOW("pipe2"), ALLOW("eventfd2"), ALLOW("memfd_create"),
	ALLOW("close_range"),
	ALLOW_IF("socket", ARG_EQ(0, AF_UNIX)), ALLOW_IF("socketpair", ARG_EQ(0, AF_UNIX)),
	ALLOW("bind"), ALLOW("listen"), ALLOW("accept"), ALLOW("accept4"), ALLOW("connect"), ALLOW("shutdown"),
	ALLOW("getsockopt"), ALLOW("setsockopt"), ALLOW("getsockname"), ALLOW("getpeername"),
	/* KVM, the terminal's mode (not TIOCSTI), the tap at a reset's re-exec. */
	ALLOW_IF("ioctl", ARG_MASKED(1, 0xff00, KVMIO << 8)),
	ALLOW_IF("ioctl", ARG_EQ(1, 0x5401)), /* TCGETS */
	ALLOW_IF("ioctl", ARG_EQ(1, 0x5402)), /* TCSETS */
	ALLOW_IF("ioctl", ARG_EQ(1, 0x5403)), /* TCSETSW */
	ALLOW_IF("ioctl", ARG_EQ(1, 0x5404)), /* TCSETSF */
	ALLOW_IF("ioctl", ARG_EQ(1, 0x400454ca)), /* TUNSETIFF */
	ALLOW_IF("ioctl", ARG_EQ(1, 0x400454d0)), /* TUNSETOFFLOAD */
	/* Threads only: clone3's flags are out of the filter's reach, so glibc falls back to clone. */
	ALLOW_IF("clone", ARG_MASKED(0, CLONE_THREAD, CLONE_THREAD)), FAIL("clone3", ENOSYS),
	ALLOW_IF("execveat", ARG_EQ(0, SANDBOX_SELF_FD)),
	ALLOW("rt_sigaction"), ALLOW("set_tid_address"), ALLOW("arch_prctl"), ALLOW("prlimit64"),
	ALLOW("getuid"), ALLOW("geteuid"), ALLOW("getgid"), ALLOW("getegid"), ALLOW("getppid"), ALLOW("uname"),
	ALLOW("sysinfo"), ALLOW("sched_getparam"), ALLOW("sched_getscheduler"),
	ALLOW_IF("prctl", ARG_EQ(0, PR_SET_NAME)), ALLOW_IF("prctl", ARG_EQ(0, PR_GET_NAME)),
	ALLOW_IF("prctl", ARG_EQ(0, PR_GET_SECCOMP)),
	ALLOW_IF("prctl", ARG_EQ(0, PR_SET_NO_NEW_PRIVS)),
	ALLOW_IF("prctl", ARG_EQ(0, PR_GET_NO_NEW_PRIVS)),
	ALLOW("seccomp"), /* a thread narrowing itself: filters only ever add restrictions */
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int add_rules(scmp_filter_ctx ctx, const struct rule *rules, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(rules[i].name);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		uint32_t action = rules[i].err ? SCMP_ACT_ERRNO((uint32_t)rules[i].err) : SCMP_ACT_ALLOW;
		int rc = rules[i].has_cmp ? seccomp_rule_add_exact(ctx, action, nr, 1, rules[i].cmp)
					  : seccomp_rule_add_exact(ctx, action, nr, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int sandbox_load_filter(enum sandbox_kind kind, enum sandbox_mode mode, bool all_threads)
{
	if (mode == SANDBOX_OFF)
		return 0;
	scmp_filter_ctx ctx = seccomp_init(mode == SANDBOX_LOG ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	int rc = add_rules(ctx, common_rules, N(common_rules));
	/* Signals only to this process's own threads (the vCPU kick). */
	if (rc == 0)
		rc = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, ARG_EQ(0, (scmp_datum_t)getpid()));
	if (rc == 0 && kind == SANDBOX_CONTROL)
		rc = add_rules(ctx, control_rules, N(control_rules));
	if (rc == 0 && kind != SANDBOX_CONTROL)
		rc = add_rules(ctx, data_thread_rules, N(data_thread_rules));
	if (rc == 0 && kind == SANDBOX_VCPU)
		rc = add_rules(ctx, vcpu_rules, N(vcpu_rules));
	if (rc == 0 && kind == SANDBOX_IO)
		rc = add_rules(ctx, io_rules, N(io_rules));
	if (rc == 0 && all_threads)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc;
}

/* ---- Landlock (no glibc wrappers) ---- */

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

#define LL_FILE_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_EXECUTE)
#define LL_DIR_READ (LL_FILE_READ | LANDLOCK_ACCESS_FS_READ_DIR)

/* Adds the file or folder open at fd with access (narrowed to what a file may carry when it is
 * not a folder). */
static int ll_add_fd(int ruleset, int fd, uint64_t access, uint64_t handled)
{
	struct stat st;
	uint64_t file_rights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
			       LANDLOCK_ACCESS_FS_TRUNCATE;
	if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
		access &= file_rights;
	struct landlock_path_beneath_attr pb = { .allowed_access = access & handled, .parent_fd = fd };
	return syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0 ? -errno : 0;
}

static int ll_add(int ruleset, const char *path, uint64_t access, uint64_t handled)
{
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno; /* nothing there to reach */
	int rc = ll_add_fd(ruleset, fd, access, handled);
	close(fd);
	return rc;
}

/* 1 with the file system limited, 0 where the kernel has no Landlock, -errno on failure. */
static int landlock_enter(const struct sandbox_config *c, char *why, size_t whylen)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1)
		return 0;
	uint64_t handled = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0..12 */
	if (abi >= 2)
		handled |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
	struct landlock_ruleset_attr attr = { .handled_access_fs = handled };
	int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (rs < 0)
		return -errno;
	static const char *const system_ro[] = { "/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/proc/meminfo",
						 "/sys/devices/system/cpu" };
	static const char *const devices[] = { "/dev/kvm", "/dev/net/tun", "/dev/null" };
	/* The program itself through the kernel's own link: its path may not resolve from here (a
	 * test host's 9p root names it /newroot/...). */
	int self = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	int rc = self < 0 ? -errno : ll_add_fd(rs, self, LL_FILE_READ, handled);
	if (self >= 0)
		close(self);
	if (rc < 0)
		snprintf(why, whylen, "/proc/self/exe");
	for (size_t i = 0; rc == 0 && i < N(system_ro); i++)
		rc = ll_add(rs, system_ro[i], LL_DIR_READ, handled);
	for (size_t i = 0; rc == 0 && i < N(devices); i++)
		rc = ll_add(rs, devices[i], LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE, handled);
	for (unsigned i = 0; rc == 0 && i < c->nro; i++)
		if ((rc = ll_add(rs, c->ro_paths[i], LL_DIR_READ, handled)) < 0)
			snprintf(why, whylen, "%s", c->ro_paths[i]);
	for (unsigned i = 0; rc == 0 && i < c->nrw; i++)
		if ((rc = ll_add(rs, c->rw_paths[i], handled, handled)) < 0)
			snprintf(why, whylen, "%s", c->rw_paths[i]);
	if (rc == 0 && syscall(SYS_landlock_restrict_self, rs, 0) < 0)
		rc = -errno;
	close(rs);
	return rc < 0 ? rc : 1;
}

/* ---- identity ---- */

uid_t sandbox_uid_for(const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return (uid_t)(SANDBOX_UID_BASE + h % SANDBOX_UID_COUNT);
}

/* Becomes uid/gid with only keep (bit per capability) left, ambient so that execve keeps them. */
static int drop_identity(uid_t uid, gid_t gid, uint64_t keep)
{
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (!(keep & (1ull << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -errno;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(uid, uid, uid) < 0)
		return -errno;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { { 0 } };
	for (int i = 0; i < 2; i++)
		data[i].effective = data[i].permitted = data[i].inheritable = (uint32_t)(keep >> (32 * i));
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if ((keep & (1ull << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
			return -errno;
	return 0;
}

/* ---- the whole ---- */

enum sandbox_mode sandbox_mode(void)
{
	/* Opt-in for now: live migration (TCP/TLS sockets, certificate files) and DVD media changes
	 * outside the VM's folders are not in the lists yet (docs/security.md). */
	const char *v = getenv("VIRIDIAN_SANDBOX");
	if (!v || !strcmp(v, "0"))
		return SANDBOX_OFF;
	if (!strcmp(v, "log"))
		return SANDBOX_LOG;
	return SANDBOX_KILL;
}

static bool entered;

static bool already_sandboxed(void)
{
	return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 2;
}

bool sandbox_hold_self(void)
{
	/* Nothing inherited stays open: the worker keeps only what it opens itself. */
	if (syscall(SYS_close_range, 3, ~0u, 0) < 0)
		return false;
	if (sandbox_mode() == SANDBOX_OFF)
		return true;
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fd != SANDBOX_SELF_FD && (dup3(fd, SANDBOX_SELF_FD, O_CLOEXEC) < 0 || close(fd) < 0))
		return false;
	return true;
}

void sandbox_reexec(char **argv)
{
	extern char **environ;
	if (sandbox_mode() == SANDBOX_OFF)
		execv("/proc/self/exe", argv);
	else
		syscall(SYS_execveat, SANDBOX_SELF_FD, "", argv, environ, AT_EMPTY_PATH);
}

bool sandbox_enter(enum sandbox_mode mode, const struct sandbox_config *c, char *err, size_t errlen)
{
	if (mode == SANDBOX_OFF)
		return true;
	tzset(); /* gmtime_r (the RTC, on a vCPU thread) would open /etc/localtime the first time */
	if (already_sandboxed()) { /* a reset's re-exec: everything below is still in force */
		entered = true;
		return true;
	}
	/* Run by hand by a user in the KVM device's group: no namespaces and no identity to drop to
	 * (it has no privilege to lose); Landlock and seccomp still apply. */
	bool root = geteuid() == 0;
	if (!root)
		vlog("sandbox: not run as root: no namespaces or per-VM identity, Landlock and seccomp only");
	int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (c->has_tap ? 0 : CLONE_NEWNET);
	if (root && unshare(flags) < 0) {
		snprintf(err, errlen, "sandbox: unshare: %s", strerror(errno));
		return false;
	}
	if (root && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		snprintf(err, errlen, "sandbox: private mounts: %s", strerror(errno));
		return false;
	}
	uid_t uid = sandbox_uid_for(c->id);
	gid_t gid = (gid_t)uid;
	const char *user = getenv("VIRIDIAN_SANDBOX_USER");
	if (user && root) {
		struct passwd *pw = getpwnam(user);
		if (!pw || pw->pw_uid == 0) {
			snprintf(err, errlen, "sandbox: VIRIDIAN_SANDBOX_USER=%s: %s", user, pw ? "is root" : "no such user");
			return false;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "sandbox: NO_NEW_PRIVS: %s", strerror(errno));
		return false;
	}
	char why[4096] = "";
	int rc = landlock_enter(c, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "sandbox: Landlock (%s): %s", why, strerror(-rc));
		return false;
	}
	if (rc == 0)
		vlog("sandbox: this kernel has no Landlock: the file system is not limited (docs/security.md)");
	uint64_t keep = (1ull << CAP_DAC_OVERRIDE) | (c->has_tap ? 1ull << CAP_NET_ADMIN : 0);
	if (root && (rc = drop_identity(uid, gid, keep)) < 0) {
		snprintf(err, errlen, "sandbox: cannot become uid %u: %s", (unsigned)uid, strerror(-rc));
		return false;
	}
	if ((rc = sandbox_load_filter(SANDBOX_CONTROL, mode, true)) < 0) {
		snprintf(err, errlen, "sandbox: seccomp: %s", strerror(-rc));
		return false;
	}
	entered = true;
	return true;
}

void sandbox_thread(enum sandbox_kind kind)
{
	if (!entered)
		return;
	if (sandbox_load_filter(kind, sandbox_mode(), false) < 0)
		abort(); /* a thread must not run wider than its kind */
}
