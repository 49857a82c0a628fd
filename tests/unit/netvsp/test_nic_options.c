/* vmwp --nic [tap=NAME|switch=PATH][,mac=..][,vlan=N][,name=LABEL][,spoofing] parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "worker/options.h"

static bool parse(struct worker_options *o, char *err, const char *nic1, const char *nic2)
{
	static char a[2][128];
	char *argv[8] = {"vmwp", "--kernel", "k"};
	int argc = 3;
	const char *nics[2] = {nic1, nic2};
	for (int i = 0; i < 2; i++) {
		if (!nics[i])
			continue;
		snprintf(a[i], sizeof(a[i]), "%s", nics[i]);
		argv[argc++] = "--nic";
		argv[argc++] = a[i];
	}
	return worker_options_parse(o, argc, argv, err, 256);
}

static void test_nic_ok(void **state)
{
	(void)state;
	struct worker_options o;
	char err[256] = "";
	assert_true(parse(&o, err, "tap=vtap0,mac=00:15:5D:12:34:AB", "tap=vtap1"));
	assert_int_equal(o.nnics, 2);
	/* argv is left as given (a guest reset re-execs the worker with it) */
	struct worker_options o3;
	static char keep[] = "tap=vtap9,mac=00:15:5d:00:00:09";
	char *argv[] = {"vmwp", "--kernel", "k", "--nic", keep};
	assert_true(worker_options_parse(&o3, 5, argv, err, sizeof(err)));
	assert_string_equal(keep, "tap=vtap9,mac=00:15:5d:00:00:09");
	assert_string_equal(o3.nics[0].tap, "vtap9");
	assert_int_equal(o3.nics[0].mac[5], 9);
	assert_string_equal(o.nics[0].tap, "vtap0");
	static const uint8_t want[6] = {0x00, 0x15, 0x5d, 0x12, 0x34, 0xab};
	assert_memory_equal(o.nics[0].mac, want, 6);
	assert_string_equal(o.nics[1].tap, "vtap1");
	/* default: Hyper-V's OUI, the rest derived from the name (stable across runs) */
	assert_int_equal(o.nics[1].mac[0], 0x00);
	assert_int_equal(o.nics[1].mac[1], 0x15);
	assert_int_equal(o.nics[1].mac[2], 0x5d);
	struct worker_options o2;
	assert_true(parse(&o2, err, "tap=vtap1", NULL));
	assert_memory_equal(o2.nics[0].mac, o.nics[1].mac, 3);
	assert_true(parse(&o2, err, NULL, NULL));
	assert_int_equal(o2.nnics, 0);
}

static void test_nic_switch(void **state)
{
	(void)state;
	struct worker_options o;
	char err[256] = "";
	assert_true(parse(&o, err, "switch=/run/viridian/sw/lab.sock,vlan=42,name=vm1/nic0,spoofing,mac=00:15:5d:aa:bb:cc",
			  "mac=00:15:5d:00:00:07"));
	assert_int_equal(o.nnics, 2);
	assert_string_equal(o.nics[0].switch_path, "/run/viridian/sw/lab.sock");
	assert_string_equal(o.nics[0].tap, "");
	assert_int_equal(o.nics[0].vlan, 42);
	assert_string_equal(o.nics[0].name, "vm1/nic0");
	assert_true(o.nics[0].mac_spoofing);
	assert_int_equal(o.nics[0].mac[5], 0xcc);
	/* no backend: an adapter without a cable */
	assert_string_equal(o.nics[1].switch_path, "");
	assert_string_equal(o.nics[1].tap, "");
	assert_false(o.nics[1].mac_spoofing);
	assert_int_equal(o.nics[1].vlan, 0);
	assert_true(parse(&o, err, "", NULL));
	assert_int_equal(o.nics[0].mac[0], 0x00);
	assert_int_equal(o.nics[0].mac[2], 0x5d);
	assert_true(parse(&o, err, "switch=/s,vlan=4094", NULL));
	assert_int_equal(o.nics[0].vlan, 4094);
}

static void test_nic_bad(void **state)
{
	(void)state;
	struct worker_options o;
	char err[256];
	static const char *const bad[] = {
		"tap=", "tap=a-name-longer-than-15", "tap=t,mac=00:15:5d:00:00",
		"tap=t,mac=01:15:5d:00:00:01" /* multicast */, "tap=t,mac=00:15:5d:00:00:01:02", "tap=t,speed=10",
		"tap=t,mac=zz:15:5d:00:00:01", "switch=", "tap=t,switch=/s", "switch=/s,tap=t",
		"switch=/s,vlan=4095", "switch=/s,vlan=-1", "switch=/s,vlan=", "switch=/s,vlan=12345", "switch=/s,vlan=1x", "switch=/s,vlan=+5", "switch=/s,vlan= 5",
		"tap=t,vlan=5" /* VLANs are switch-port settings */, "tap=t,spoofing", "switch=/s,name=a b",
		"switch=/s,name=", "switch=/s,spoofing=yes",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_false(parse(&o, err, bad[i], NULL));
		assert_non_null(strstr(err, "--nic"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nic_ok),
		cmocka_unit_test(test_nic_bad),
		cmocka_unit_test(test_nic_switch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
