/* The API token store (vmms/tokens.c): a secret is made once and only its hash kept, checked
 * by the secret, expired tokens told apart, names validated and unique (any case), removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmms/tokens.h"

static char dir[64], db[96];

static int setup(void **st)
{
	(void)st;
	snprintf(dir, sizeof(dir), "/tmp/tokens-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/tokens.db", dir);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void lifecycle(void **st)
{
	(void)st;
	char err[256], secret[TOKEN_SECRET_LEN + 1], secret2[TOKEN_SECRET_LEN + 1];
	struct token_store *ts = token_store_open(db, err, sizeof(err));
	assert_non_null(ts);
	struct stat sb;
	assert_int_equal(stat(db, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	struct token_info t;
	assert_int_equal(token_new(ts, "ops", ROLE_OPERATOR, 0, 1000, secret, &t, err, sizeof(err)), 0);
	assert_int_equal(strlen(secret), TOKEN_SECRET_LEN);
	assert_memory_equal(secret, "vrd_", 4);
	assert_int_equal(t.expires, 0);
	assert_int_equal(token_new(ts, "soon", ROLE_READER, 2, 1000, secret2, &t, err, sizeof(err)), 0);
	assert_int_equal(t.expires, 1000 + 2 * 86400);
	assert_string_not_equal(secret, secret2);
	/* Refusals: duplicate (any case), bad names, no role, bad days. */
	char s3[TOKEN_SECRET_LEN + 1];
	assert_int_equal(token_new(ts, "OPS", ROLE_READER, 0, 1000, s3, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "exists"));
	assert_int_equal(token_new(ts, "a b", ROLE_READER, 0, 1000, s3, &t, err, sizeof(err)), -1);
	assert_int_equal(token_new(ts, "", ROLE_READER, 0, 1000, s3, &t, err, sizeof(err)), -1);
	assert_int_equal(token_new(ts, NULL, ROLE_READER, 0, 1000, s3, &t, err, sizeof(err)), -1);
	assert_int_equal(token_new(ts, "x", ROLE_NONE, 0, 1000, s3, &t, err, sizeof(err)), -1);
	assert_int_equal(token_new(ts, "x", ROLE_READER, -1, 1000, s3, &t, err, sizeof(err)), -1);
	/* Checks. */
	assert_int_equal(token_check(ts, secret, 5000, &t), 1);
	assert_string_equal(t.name, "ops");
	assert_int_equal(t.role, ROLE_OPERATOR);
	assert_int_equal(t.last_used, 5000);
	assert_int_equal(token_check(ts, secret2, 1000 + 2 * 86400 - 1, &t), 1);
	assert_int_equal(token_check(ts, secret2, 1000 + 2 * 86400, &t), 2);
	char wrong[TOKEN_SECRET_LEN + 1];
	memcpy(wrong, secret, sizeof(wrong));
	wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
	assert_int_equal(token_check(ts, wrong, 5000, &t), 0);
	assert_int_equal(token_check(ts, "vrd_short", 5000, &t), 0);
	assert_int_equal(token_check(ts, NULL, 5000, &t), 0);
	/* The file holds no secret. */
	token_store_close(ts);
	FILE *f = fopen(db, "rb");
	assert_non_null(f);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_null(memmem(buf, n, secret, TOKEN_SECRET_LEN));
	/* Reopened: listed, removed. */
	ts = token_store_open(db, err, sizeof(err));
	struct token_info *all;
	int count;
	assert_int_equal(token_list(ts, &all, &count), 0);
	assert_int_equal(count, 2);
	assert_string_equal(all[0].name, "ops");
	assert_int_equal(all[0].last_used, 5000);
	free(all);
	assert_int_equal(token_remove(ts, "OPS"), 1);
	assert_int_equal(token_remove(ts, "ops"), 0);
	assert_int_equal(token_check(ts, secret, 5000, &t), 0);
	token_store_close(ts);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test_setup_teardown(lifecycle, setup, teardown) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
