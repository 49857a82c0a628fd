/* Processor limits' pure parts (vmms/cpu_limits.c): finding the hierarchies in mountinfo (a
 * hybrid cgroup v1 host, a cgroup2-only host, none, damaged lines) and the values written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "vmms/cpu_limits.h"

static void find_hierarchies(void **state)
{
	(void)state;
	char v2[64], v1[64];
	/* a hybrid host: an empty cgroup2 at unified/, the cpu controller on v1 (with cpuacct) */
	cpu_cgroups_find("22 1 0:20 / /sys rw - sysfs sysfs rw\n"
			 "31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
			 "32 31 0:29 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
			 "33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
			 "34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct\n",
			 v2, v1, sizeof(v2));
	assert_string_equal(v2, "/sys/fs/cgroup/unified");
	assert_string_equal(v1, "/sys/fs/cgroup/cpu,cpuacct");
	/* cgroup2 only */
	cpu_cgroups_find("30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot", v2, v1,
			 sizeof(v2));
	assert_string_equal(v2, "/sys/fs/cgroup");
	assert_string_equal(v1, "");
	/* cpuacct alone is not cpu; a name=systemd hierarchy neither */
	cpu_cgroups_find("33 31 0:30 / /a rw - cgroup cgroup rw,cpuacct\n34 31 0:31 / /b rw - cgroup cgroup rw,name=systemd\n",
			 v2, v1, sizeof(v2));
	assert_string_equal(v1, "");
	/* nothing, or lines that are not mountinfo */
	cpu_cgroups_find("", v2, v1, sizeof(v2));
	assert_string_equal(v2, "");
	cpu_cgroups_find("garbage\n - \n1 2 3 - cgroup2\n\n - cgroup x cpu", v2, v1, sizeof(v2));
	assert_string_equal(v2, "");
	assert_string_equal(v1, "");
	/* a mount point longer than the buffer is cut, not overrun */
	char tiny[8];
	cpu_cgroups_find("30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", tiny, v1, sizeof(tiny));
	assert_string_equal(tiny, "/sys/fs");
}

static void values(void **state)
{
	(void)state;
	char m[32];
	cpu_max_value(2, 25, m, sizeof(m));
	assert_string_equal(m, "50000 100000"); /* 25 % of two processors: half of one */
	cpu_max_value(4, 100, m, sizeof(m));
	assert_string_equal(m, "max 100000");
	cpu_max_value(1, 0, m, sizeof(m)); /* unset: Hyper-V's 100 */
	assert_string_equal(m, "max 100000");
	assert_int_equal(cpu_quota_us(1, 1), 1000); /* 1 % of one processor: the kernel's 1 ms floor */
	assert_int_equal(cpu_quota_us(64, 50), 3200000);
	assert_int_equal(cpu_quota_us(2, 100), -1);
	assert_int_equal(cpu_shares(100), 1024);
	assert_int_equal(cpu_shares(0), 1024);
	assert_int_equal(cpu_shares(1), 10);
	assert_int_equal(cpu_shares(10000), 102400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(find_hierarchies),
		cmocka_unit_test(values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
