/* The worker's side of the disk boot loader's pipe (diskboot_read_reply): every length is
 * checked before anything is allocated, and a short, slow or lying reply is an error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "worker/diskboot.h"

static struct diskboot_result r;
static char err[DISKBOOT_TEXT_MAX];

/* Writes a reply into a pipe (small enough for its buffer) and reads it back. close_writer:
 * the loader is gone after it (else it is still there, silent). */
static int reply(const struct diskboot_msg *m, const void *body, size_t len, bool close_writer)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	if (m)
		assert_int_equal(write(fds[1], m, sizeof(*m)), sizeof(*m));
	if (len)
		assert_int_equal(write(fds[1], body, len), (ssize_t)len);
	if (close_writer)
		close(fds[1]);
	err[0] = '\0';
	int rc = diskboot_read_reply(fds[0], 200, 1u << 20, &r, err, sizeof(err));
	close(fds[0]);
	if (!close_writer)
		close(fds[1]);
	return rc;
}

static struct diskboot_msg msg(uint64_t kernel, uint64_t initrd, uint32_t text, uint32_t cmdline)
{
	return (struct diskboot_msg){ .magic = DISKBOOT_MAGIC, .ok = 1, .kernel_size = kernel, .initrd_size = initrd,
				      .text_len = text, .cmdline_len = cmdline };
}

static void test_good_reply(void **state)
{
	(void)state;
	struct diskboot_msg m = msg(6, 3, 5, 3);
	assert_int_equal(reply(&m, "entryc dKERNELINI", 17, true), DISKBOOT_REPLY_OK);
	assert_string_equal(r.what, "entry");
	assert_string_equal(r.cmdline, "c d");
	assert_int_equal(r.kernel_size, 6);
	assert_memory_equal(r.kernel, "KERNEL", 6);
	assert_int_equal(r.initrd_size, 3);
	assert_memory_equal(r.initrd, "INI", 3);
	diskboot_free(&r);
	assert_null(r.kernel);
	m = msg(1, 0, 0, 0); /* no initrd, no text, an empty command line */
	assert_int_equal(reply(&m, "K", 1, true), DISKBOOT_REPLY_OK);
	assert_null(r.initrd);
	assert_string_equal(r.cmdline, "");
	diskboot_free(&r);
}

static void test_error_reply(void **state)
{
	(void)state;
	struct diskboot_msg m = { .magic = DISKBOOT_MAGIC, .ok = 0, .text_len = 4 };
	assert_int_equal(reply(&m, "boom", 4, true), DISKBOOT_REPLY_ERROR);
	assert_string_equal(err, "boom");
	assert_null(r.kernel);
}

static void expect_bad(struct diskboot_msg m, const char *body, size_t len, const char *want)
{
	assert_int_equal(reply(&m, body, len, true), DISKBOOT_REPLY_BAD);
	if (!strstr(err, want))
		fail_msg("\"%s\", wanted \"%s\"", err, want);
	assert_null(r.kernel);
	assert_null(r.initrd);
}

static void test_lengths_checked(void **state)
{
	(void)state;
	struct diskboot_msg m = msg(1, 0, 0, 0);
	m.magic ^= 1;
	expect_bad(m, "K", 1, "malformed");
	expect_bad(msg(1, 0, DISKBOOT_TEXT_MAX, 0), "", 0, "malformed");
	expect_bad(msg(1, 0, 0, BOOTCFG_CMDLINE_MAX), "", 0, "malformed");
	expect_bad(msg(0, 0, 0, 0), "", 0, "sizes out of range");
	expect_bad(msg((uint64_t)DISKBOOT_KERNEL_MAX + 1, 0, 0, 0), "", 0, "sizes out of range");
	expect_bad(msg(UINT64_MAX, 0, 0, 0), "", 0, "sizes out of range");
	expect_bad(msg(1, (uint64_t)DISKBOOT_INITRD_MAX + 1, 0, 0), "", 0, "sizes out of range");
	expect_bad(msg(1, (1u << 20) + 1, 0, 0), "", 0, "larger than the guest's memory");
	expect_bad(msg(1, 0, 0, 3), "a\0b", 3, "NUL byte");
}

static void test_short_and_slow(void **state)
{
	(void)state;
	struct diskboot_msg m = msg(8, 0, 0, 0);
	assert_int_equal(reply(&m, "KERN", 4, true), DISKBOOT_REPLY_CUT); /* kernel cut short */
	assert_null(r.kernel);
	assert_int_equal(reply(NULL, "", 0, true), DISKBOOT_REPLY_CUT);   /* nothing at all */
	assert_int_equal(reply(&m, "KERN", 4, false), DISKBOOT_REPLY_TIMEOUT); /* still there, silent */
	assert_null(r.kernel);
	assert_int_equal(reply(NULL, "", 0, false), DISKBOOT_REPLY_TIMEOUT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_reply),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_lengths_checked),
		cmocka_unit_test(test_short_and_slow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
