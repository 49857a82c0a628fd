/* The guest-write check (worker/guest_guard.c): granted pages of the devices' view take writes,
 * a write anywhere else aborts naming its GPA, grants are refcounted per page. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/guest_guard.h"
#include "worker/linux_boot.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define PAGE 4096ull
#define RAM_SIZE (3 * GiB + 64 * MiB) /* 64 MiB above 4 GiB: both sides of the MMIO hole */

static uint8_t *ram; /* the read-write mapping (KVM's and the loader's) */
static struct sigaction guard_segv; /* the handler guest_guard_map installed */

static int map_once(void **state)
{
	(void)state;
	char err[160];
	ram = guest_guard_map(RAM_SIZE, err, sizeof(err));
	if (!ram)
		fprintf(stderr, "%s\n", err);
	sigaction(SIGSEGV, NULL, &guard_segv);
	return ram ? 0 : -1;
}

static uint8_t *view(uint64_t gpa)
{
	uint8_t *p = guest_guard_hva(gpa, 1);
	assert_non_null(p);
	return p;
}

/* Whether the view takes a write at gpa, asked of the kernel (a read into a read-only page
 * fails with EFAULT instead of faulting). */
static bool writable(uint64_t gpa)
{
	int fd = open("/dev/zero", O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, view(gpa), 1);
	int e = errno;
	close(fd);
	assert_true(n == 1 || e == EFAULT);
	return n == 1;
}

/* Exported (and linked -rdynamic) so that the backtrace can name it. */
void culprit_write(void *p);
void culprit_write(void *p)
{
	*(volatile uint8_t *)p = 0x5A;
}

static void revoke_ungranted(void *p)
{
	guest_guard_grant(p, 1, false);
}

/* fn(arg) in a child must abort with `needle` on its stderr. */
static void expect_abort(void (*fn)(void *), void *arg, const char *needle)
{
	int out[2];
	assert_int_equal(pipe(out), 0);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sigaction(SIGSEGV, &guard_segv, NULL); /* cmocka puts its own around every test */
		dup2(out[1], STDERR_FILENO);
		fn(arg);
		_exit(0); /* not caught: the parent sees exit status 0 */
	}
	close(out[1]);
	char text[8192];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(text) - 1 && (n = read(out[0], text + len, sizeof(text) - 1 - len)) > 0)
		len += (size_t)n;
	text[len] = 0;
	close(out[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT || !strstr(text, needle))
		fail_msg("expected an abort naming \"%s\"; status %#x, stderr:\n%s", needle, status, text);
}

static void test_view_aliases_ram(void **state)
{
	(void)state;
	ram[0x1000] = 0x11;                      /* the guest's (KVM's) side writes ... */
	assert_int_equal(*view(0x1000), 0x11);   /* ... the devices see it */
	assert_ptr_equal(guest_guard_hva(3 * GiB, 1), NULL); /* the hole is no RAM */
	assert_false(writable(0x1000));          /* nothing granted: read-only */
}

static void test_write_inside_grant(void **state)
{
	(void)state;
	guest_guard_grant(view(0x200000), 2 * PAGE, true);
	culprit_write(view(0x201FFF));
	assert_int_equal(ram[0x201FFF], 0x5A);
	guest_guard_grant(view(0x200000), 2 * PAGE, false);
}

static void test_write_outside_grant_aborts(void **state)
{
	(void)state;
	guest_guard_grant(view(0x200000), 2 * PAGE, true);
	expect_abort(culprit_write, view(0x202000), "did not grant: gpa 0x202000 (host address");
	expect_abort(culprit_write, view(0x1FFFFF), "gpa 0x1fffff");
	expect_abort(culprit_write, view(4 * GiB + 0x1234), "gpa 0x100001234"); /* above the hole */
	guest_guard_grant(view(0x200000), 2 * PAGE, false);
	expect_abort(culprit_write, view(0x200000), "gpa 0x200000"); /* revoked */
	assert_int_equal(ram[0x202000], 0);      /* nothing got through */
}

static void test_backtrace_names_culprit(void **state)
{
	(void)state;
	expect_abort(culprit_write, view(0x300000), "(culprit_write+");
}

static void test_overlapping_grants_are_refcounted(void **state)
{
	(void)state;
	const uint64_t base = 4 * GiB + 16 * MiB;
	guest_guard_grant(view(base), 3 * PAGE, true);              /* pages 0-2 */
	guest_guard_grant(view(base + 2 * PAGE), 3 * PAGE, true);   /* pages 2-4 */
	guest_guard_grant(view(base + 2 * PAGE + 100), 10, true);   /* page 2 once more: 3 grants */
	for (int p = 0; p < 5; p++)
		assert_true(writable(base + p * PAGE));
	assert_false(writable(base + 5 * PAGE));
	guest_guard_grant(view(base), 3 * PAGE, false);
	assert_false(writable(base));
	assert_false(writable(base + PAGE));
	for (int p = 2; p < 5; p++)
		assert_true(writable(base + p * PAGE));
	guest_guard_grant(view(base + 2 * PAGE), 3 * PAGE, false);
	assert_true(writable(base + 2 * PAGE));  /* the 10-byte grant holds the whole page */
	assert_false(writable(base + 3 * PAGE));
	guest_guard_grant(view(base + 2 * PAGE + 100), 10, false);
	for (int p = 0; p < 6; p++)
		assert_false(writable(base + p * PAGE));
}

static void test_unbalanced_revoke_aborts(void **state)
{
	(void)state;
	expect_abort(revoke_ungranted, view(0x400000), "write grant ended that was never given");
	expect_abort(revoke_ungranted, ram, "grant outside guest RAM"); /* not the view */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_view_aliases_ram),
		cmocka_unit_test(test_write_inside_grant),
		cmocka_unit_test(test_write_outside_grant_aborts),
		cmocka_unit_test(test_backtrace_names_culprit),
		cmocka_unit_test(test_overlapping_grants_are_refcounted),
		cmocka_unit_test(test_unbalanced_revoke_aborts),
	};
	return cmocka_run_group_tests(tests, map_once, NULL);
}
