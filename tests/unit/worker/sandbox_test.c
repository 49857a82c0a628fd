/* The worker sandbox's seccomp lists: each thread kind's filter, loaded in a forked child, lets
 * that kind's calls through and kills the process (SIGSYS) on anything outside its list. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/sandbox.h"

/* Forked child: loads kind's filter, runs fn (its exit status: 0 when every allowed call did
 * what it should), then exits. Returns the child's wait status. */
static int in_child(enum sandbox_kind kind, int (*fn)(void))
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit none = { 0, 0 };
		setrlimit(RLIMIT_CORE, &none); /* the SIGSYS it is meant to die of leaves no core file */
		if (sandbox_load_filter(kind, SANDBOX_KILL, false) < 0)
			_exit(100);
		_exit(fn());
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void assert_exit0(int status)
{
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void assert_sigsys(int status)
{
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
}

static const enum sandbox_kind kinds[] = { SANDBOX_CONTROL, SANDBOX_VCPU, SANDBOX_IO };

/* ---- calls some kind may make ---- */

/* Every kind: memory, time, moving data on a descriptor (999 is not open: EBADF, not a kill). */
static int pipe_io(void)
{
	char c = 'x';
	struct timespec ts;
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || munmap(m, 4096) < 0 || clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		return 1;
	if (write(999, &c, 1) != -1 || errno != EBADF)
		return 2;
	if (pread(999, &c, 1, 0) != -1 || errno != EBADF)
		return 3;
	return 0;
}

static int kvm_ioctl(void)
{
	return ioctl(999, KVM_RUN, 0) == -1 && errno == EBADF ? 0 : 1;
}

static int guest_interrupt(void) /* an I/O thread's completion: the VM's MSI */
{
	struct kvm_msi msi = { 0 };
	return ioctl(999, KVM_SIGNAL_MSI, &msi) == -1 && errno == EBADF ? 0 : 1;
}

static int unix_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return fd >= 0 ? 0 : 1;
}

static int open_dev_null(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0 ? 0 : 1;
}

static int clone3_is_enosys(void)
{
	return syscall(SYS_clone3, NULL, 0) == -1 && errno == ENOSYS ? 0 : 1;
}

static int terminal_mode(void)
{
	struct termios t;
	return ioctl(999, TCGETS, &t) == -1 && errno == EBADF ? 0 : 1;
}

/* ---- calls no thread of a worker may make (each kills) ---- */

static int do_execve(void)
{
	char *argv[] = { "true", NULL };
	execve("/bin/true", argv, NULL);
	return 0;
}

static int do_inet_socket(void)
{
	socket(AF_INET, SOCK_STREAM, 0);
	return 0;
}

static int do_ptrace(void)
{
	ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	return 0;
}

static int do_fork(void)
{
	syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); /* a process, not a thread */
	return 0;
}

static int do_open_shadow(void)
{
	open("/etc/shadow", O_RDONLY);
	return 0;
}

static int do_mmap_exec(void)
{
	mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return 0;
}

static int do_tiocsti(void)
{
	char c = 'x';
	ioctl(0, TIOCSTI, &c);
	return 0;
}

static int do_setuid(void)
{
	syscall(SYS_setuid, 0);
	return 0;
}

static int do_kill_other(void)
{
	syscall(SYS_tgkill, 1, 1, 0); /* another process's thread */
	return 0;
}

static int do_tty_ioctl_on_vcpu(void)
{
	struct termios t;
	ioctl(999, TCGETS, &t);
	return 0;
}

static void test_allowed_everywhere(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		assert_exit0(in_child(kinds[i], pipe_io));
}

static void test_allowed_by_kind(void **state)
{
	(void)state;
	assert_exit0(in_child(SANDBOX_VCPU, kvm_ioctl));
	assert_exit0(in_child(SANDBOX_CONTROL, kvm_ioctl));
	assert_exit0(in_child(SANDBOX_CONTROL, unix_socket));
	assert_exit0(in_child(SANDBOX_IO, unix_socket)); /* a switch port's reconnect */
	assert_exit0(in_child(SANDBOX_IO, guest_interrupt));
	assert_exit0(in_child(SANDBOX_VCPU, guest_interrupt));
	assert_exit0(in_child(SANDBOX_CONTROL, open_dev_null));
	assert_exit0(in_child(SANDBOX_CONTROL, clone3_is_enosys));
	assert_exit0(in_child(SANDBOX_CONTROL, terminal_mode));
}

static void test_forbidden_everywhere(void **state)
{
	(void)state;
	int (*const forbidden[])(void) = { do_execve, do_inet_socket, do_ptrace, do_fork, do_setuid, do_kill_other };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		for (size_t j = 0; j < sizeof(forbidden) / sizeof(forbidden[0]); j++)
			assert_sigsys(in_child(kinds[i], forbidden[j]));
}

static void test_forbidden_by_kind(void **state)
{
	(void)state;
	assert_sigsys(in_child(SANDBOX_VCPU, do_open_shadow));
	assert_sigsys(in_child(SANDBOX_IO, do_open_shadow));
	assert_sigsys(in_child(SANDBOX_VCPU, do_mmap_exec));
	assert_sigsys(in_child(SANDBOX_IO, do_mmap_exec));
	assert_sigsys(in_child(SANDBOX_IO, kvm_ioctl)); /* KVM_RUN is the vCPUs' alone */
	assert_sigsys(in_child(SANDBOX_VCPU, unix_socket));
	assert_sigsys(in_child(SANDBOX_VCPU, do_tty_ioctl_on_vcpu));
	assert_sigsys(in_child(SANDBOX_CONTROL, do_tiocsti));
}

static void test_uid_range(void **state)
{
	(void)state;
	uid_t a = sandbox_uid_for("/srv/vms/a/worker.sock"), b = sandbox_uid_for("/srv/vms/b/worker.sock");
	assert_true(a >= SANDBOX_UID_BASE && a < SANDBOX_UID_BASE + SANDBOX_UID_COUNT);
	assert_true(b >= SANDBOX_UID_BASE && b < SANDBOX_UID_BASE + SANDBOX_UID_COUNT);
	assert_int_not_equal(a, b);
	assert_int_equal(a, sandbox_uid_for("/srv/vms/a/worker.sock")); /* the same VM, the same identity */
}

static void test_mode(void **state)
{
	(void)state;
	unsetenv("VIRIDIAN_SANDBOX");
	assert_int_equal(sandbox_mode(), SANDBOX_OFF); /* opt-in for now */
	setenv("VIRIDIAN_SANDBOX", "1", 1);
	assert_int_equal(sandbox_mode(), SANDBOX_KILL);
	setenv("VIRIDIAN_SANDBOX", "0", 1);
	assert_int_equal(sandbox_mode(), SANDBOX_OFF);
	setenv("VIRIDIAN_SANDBOX", "log", 1);
	assert_int_equal(sandbox_mode(), SANDBOX_LOG);
	setenv("VIRIDIAN_SANDBOX", "bogus", 1);
	assert_int_equal(sandbox_mode(), SANDBOX_KILL); /* never off by accident */
	unsetenv("VIRIDIAN_SANDBOX");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allowed_everywhere), cmocka_unit_test(test_allowed_by_kind),
		cmocka_unit_test(test_forbidden_everywhere), cmocka_unit_test(test_forbidden_by_kind),
		cmocka_unit_test(test_uid_range), cmocka_unit_test(test_mode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
