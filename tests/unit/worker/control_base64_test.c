/* The worker's control op "console-input" decodes base64 (Connect-VM's keyboard bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "worker/control.h"

static void test_base64(void **state)
{
	(void)state;
	unsigned char out[16];
	assert_int_equal(control_base64_decode("", out, sizeof(out)), 0);
	assert_int_equal(control_base64_decode("bHM=", out, sizeof(out)), 2);
	assert_memory_equal(out, "ls", 2);
	assert_int_equal(control_base64_decode("bHM", out, sizeof(out)), 2); /* padding optional */
	assert_int_equal(control_base64_decode("bHMgLWwK", out, sizeof(out)), 6);
	assert_memory_equal(out, "ls -l\n", 6);
	assert_int_equal(control_base64_decode("AAEC/w==", out, sizeof(out)), 4);
	assert_memory_equal(out, "\x00\x01\x02\xff", 4);
	assert_int_equal(control_base64_decode("A", out, sizeof(out)), -1);       /* 6 bits: not a byte */
	assert_int_equal(control_base64_decode("bH M", out, sizeof(out)), -1);    /* bad character */
	assert_int_equal(control_base64_decode("bHM===", out, sizeof(out)), -1);  /* too much padding */
	assert_int_equal(control_base64_decode("b=HM", out, sizeof(out)), -1);    /* padding inside */
	assert_int_equal(control_base64_decode("bHMgLWwK", out, 5), -1);          /* does not fit */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
