/* The live-migration reply record (worker/migrate.h): what the peer sends back is hostile, so
 * only the three kinds, this version and a bounded message for ERROR alone pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <endian.h>
#include <string.h>

#include "worker/migrate.h"

static struct migrate_reply reply(uint16_t kind, uint32_t len)
{
	struct migrate_reply r = { .version = htole16(MIGRATE_REPLY_VERSION), .kind = htole16(kind), .length = htole32(len) };
	memcpy(r.magic, MIGRATE_REPLY_MAGIC, 4);
	return r;
}

static void test_reply_check(void **state)
{
	(void)state;
	struct migrate_reply r = reply(MIGRATE_READY, 0);
	assert_int_equal(migrate_reply_check(&r), MIGRATE_READY);
	r = reply(MIGRATE_GO, 0);
	assert_int_equal(migrate_reply_check(&r), MIGRATE_GO);
	r = reply(MIGRATE_ERROR, MIGRATE_MESSAGE_MAX);
	assert_int_equal(migrate_reply_check(&r), MIGRATE_ERROR);
	r = reply(MIGRATE_ERROR, MIGRATE_MESSAGE_MAX + 1); /* a huge length */
	assert_int_equal(migrate_reply_check(&r), -1);
	r = reply(MIGRATE_ERROR, 0xffffffffu);
	assert_int_equal(migrate_reply_check(&r), -1);
	r = reply(MIGRATE_READY, 5); /* only ERROR carries text */
	assert_int_equal(migrate_reply_check(&r), -1);
	r = reply(0, 0);
	assert_int_equal(migrate_reply_check(&r), -1);
	r = reply(4, 0);
	assert_int_equal(migrate_reply_check(&r), -1);
	r = reply(MIGRATE_READY, 0);
	r.version = htole16(2);
	assert_int_equal(migrate_reply_check(&r), -1);
	r = reply(MIGRATE_READY, 0);
	r.magic[0] = 'X';
	assert_int_equal(migrate_reply_check(&r), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_reply_check) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
