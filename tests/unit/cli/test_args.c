/* hv parameter parsing: case-insensitive names, sizes, switches, positional, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cmdlet.h"

static const struct param_spec params[] = {
	{ "Path", PARAM_STRING, true, true, "" },
	{ "SizeBytes", PARAM_SIZE, false, false, "" },
	{ "Fixed", PARAM_SWITCH, false, false, "" },
	{ 0 },
};

static int run(const struct args *a)
{
	(void)a;
	return 0;
}

static const struct cmdlet test_cmdlet = { "New-Thing", "", params, run };

static int parse(struct args *a, int argc, const char **argv)
{
	return args_parse(&test_cmdlet, argc, (char **)argv, a);
}

static void test_sizes(void **state)
{
	(void)state;
	uint64_t v;
	assert_true(parse_size("512MB", &v));
	assert_int_equal(v, 512ULL << 20);
	assert_true(parse_size("10gb", &v));
	assert_int_equal(v, 10ULL << 30);
	assert_true(parse_size("1TB", &v));
	assert_int_equal(v, 1ULL << 40);
	assert_true(parse_size("4096", &v));
	assert_int_equal(v, 4096);
	assert_false(parse_size("12XB", &v));
	assert_false(parse_size("", &v));
	assert_false(parse_size("-5GB", &v));
	assert_false(parse_size("99999999999999TB", &v));
}

static void test_params(void **state)
{
	(void)state;
	struct args a;
	const char *ok[] = { "-path", "x.vhdx", "-SIZEBYTES", "1GB", "-fixed" };
	assert_int_equal(parse(&a, 5, ok), 0);
	assert_string_equal(arg_str(&a, "Path"), "x.vhdx");
	assert_int_equal(arg_size(&a, "SizeBytes"), 1ULL << 30);
	assert_true(arg_has(&a, "Fixed"));
	const char *positional[] = { "y.vhd", "-SizeBytes:2MB" };
	assert_int_equal(parse(&a, 2, positional), 0);
	assert_string_equal(arg_str(&a, "path"), "y.vhd");
	assert_int_equal(arg_size(&a, "SizeBytes"), 2ULL << 20);
	assert_false(arg_has(&a, "Fixed"));
}

static void test_errors(void **state)
{
	(void)state;
	struct args a;
	const char *missing[] = { "-SizeBytes", "1GB" };
	assert_int_not_equal(parse(&a, 2, missing), 0);
	const char *unknown[] = { "-Path", "x", "-Bogus", "1" };
	assert_int_not_equal(parse(&a, 4, unknown), 0);
	const char *badsize[] = { "-Path", "x", "-SizeBytes", "lots" };
	assert_int_not_equal(parse(&a, 4, badsize), 0);
	const char *novalue[] = { "-Path" };
	assert_int_not_equal(parse(&a, 1, novalue), 0);
	const char *twice[] = { "-Path", "x", "-path", "y" };
	assert_int_not_equal(parse(&a, 4, twice), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
