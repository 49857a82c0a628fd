/* Per-VM processor limits in cgroups (include/vmms/cpu_limits.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmms/cpu_limits.h"

void cpu_max_value(int cpus, int maximum, char *out, size_t len)
{
	long long q = cpu_quota_us(cpus, maximum);
	if (q < 0)
		snprintf(out, len, "max %d", CPU_PERIOD_US);
	else
		snprintf(out, len, "%lld %d", q, CPU_PERIOD_US);
}

long long cpu_quota_us(int cpus, int maximum)
{
	if (maximum <= 0 || maximum >= 100)
		return -1;
	long long q = (long long)CPU_PERIOD_US * (cpus > 0 ? cpus : 1) * maximum / 100;
	return q < 1000 ? 1000 : q; /* the kernel's smallest quota is 1 ms */
}

unsigned long cpu_shares(int weight)
{
	unsigned long s = (unsigned long)(weight > 0 ? weight : 100) * 1024 / 100;
	return s < 2 ? 2 : s;
}

void cpu_cgroups_find(const char *mountinfo, char *v2, char *v1, size_t len)
{
	*v2 = *v1 = '\0';
	const char *line = mountinfo;
	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		char buf[4096];
		char *sep = NULL;
		if (n < sizeof(buf)) {
			memcpy(buf, line, n);
			buf[n] = '\0';
			sep = strstr(buf, " - ");
		}
		/* id parent major:minor root mount-point options [optional...] - fstype source super-options */
		if (sep) {
			*sep = '\0';
			char *f[5] = { 0 }, *save = NULL, *p = strtok_r(buf, " ", &save);
			for (int i = 0; p && i < 5; i++, p = strtok_r(NULL, " ", &save))
				f[i] = p;
			char *fstype = strtok_r(sep + 3, " ", &save);
			strtok_r(NULL, " ", &save); /* source */
			char *super = strtok_r(NULL, " ", &save);
			bool cpu = false;
			for (char *o = super ? strtok_r(super, ",", &save) : NULL; o; o = strtok_r(NULL, ",", &save))
				cpu |= !strcmp(o, "cpu");
			if (f[4] && fstype && !strcmp(fstype, "cgroup2") && !*v2)
				snprintf(v2, len, "%s", f[4]);
			else if (f[4] && fstype && !strcmp(fstype, "cgroup") && cpu && !*v1)
				snprintf(v1, len, "%s", f[4]);
		}
		line = end ? end + 1 : NULL;
	}
}

static int write_file(const char *dir, const char *name, const char *value, char *err, size_t errlen)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : write(fd, value, strlen(value));
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -1;
	}
	return 0;
}

static bool has_word(const char *path, const char *word)
{
	char buf[512];
	FILE *f = fopen(path, "re");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
		if (!strcmp(w, word))
			return true;
	return false;
}

void cpu_cgroups_init(struct cpu_cgroups *c, const char *root)
{
	*c = (struct cpu_cgroups){ .kind = CPU_CGROUP_NONE };
	char v2[PATH_MAX] = "", v1[PATH_MAX] = "", mnt[PATH_MAX], probe[PATH_MAX + 32], err[PATH_MAX + 200];
	if (root && *root) {
		snprintf(probe, sizeof(probe), "%s/cgroup.controllers", root);
		snprintf(access(probe, F_OK) == 0 ? v2 : v1, PATH_MAX, "%s", root);
	} else {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		char *text = NULL;
		size_t cap = 0;
		if (f && getdelim(&text, &cap, '\0', f) > 0)
			cpu_cgroups_find(text, v2, v1, PATH_MAX);
		if (f)
			fclose(f);
		free(text);
	}
	/* cgroup v2 if it has the cpu controller (on a hybrid host v1 has it) */
	snprintf(probe, sizeof(probe), "%s/cgroup.controllers", v2);
	enum cpu_cgroup_kind kind = *v2 && has_word(probe, "cpu") ? CPU_CGROUP_V2 : CPU_CGROUP_NONE;
	snprintf(probe, sizeof(probe), "%s/cpu.cfs_quota_us", v1);
	if (kind == CPU_CGROUP_NONE && *v1 && access(probe, F_OK) == 0)
		kind = CPU_CGROUP_V1;
	if (kind == CPU_CGROUP_NONE) {
		snprintf(c->why, sizeof(c->why), "%s%s%s%s", *v2 || *v1 ? "" : "this host mounts no cgroup hierarchy with the cpu controller",
			 *v2 ? "the cgroup v2 hierarchy has no cpu controller" : "", *v2 && *v1 ? ", and " : "",
			 *v1 ? "no cpu controller on cgroup v1 either" : "");
		if (root && *root)
			snprintf(c->why, sizeof(c->why), "%s is not a cgroup with the cpu controller", root);
		return;
	}
	snprintf(mnt, sizeof(mnt), "%s", kind == CPU_CGROUP_V2 ? v2 : v1);
	snprintf(c->base, sizeof(c->base), "%s/viridian", mnt);
	if (mkdir(c->base, 0755) < 0 && errno != EEXIST) {
		snprintf(c->why, sizeof(c->why), "cannot make %s: %s", c->base, strerror(errno));
		return;
	}
	/* v2: a child gets the controller only if its parent enables it for its children */
	if (kind == CPU_CGROUP_V2 && (write_file(mnt, "cgroup.subtree_control", "+cpu", err, sizeof(err)) < 0 ||
				      write_file(c->base, "cgroup.subtree_control", "+cpu", err, sizeof(err)) < 0)) {
		snprintf(c->why, sizeof(c->why), "cannot enable the cpu controller: %s", err);
		return;
	}
	c->kind = kind;
}

static void vm_dir(const struct cpu_cgroups *c, const char *vm_id, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", c->base, vm_id);
}

int cpu_cgroups_apply(const struct cpu_cgroups *c, const char *vm_id, int cpus, int maximum, int weight, char *err,
		      size_t errlen)
{
	if (c->kind == CPU_CGROUP_NONE) {
		snprintf(err, errlen, "no processor limits on this host: %s", c->why);
		return -1;
	}
	char dir[PATH_MAX + 40], v[64];
	vm_dir(c, vm_id, dir, sizeof(dir));
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (c->kind == CPU_CGROUP_V2) {
		cpu_max_value(cpus, maximum, v, sizeof(v));
		if (write_file(dir, "cpu.max", v, err, errlen) < 0)
			return -1;
		snprintf(v, sizeof(v), "%d", weight > 0 ? weight : 100);
		return write_file(dir, "cpu.weight", v, err, errlen);
	}
	snprintf(v, sizeof(v), "%d", CPU_PERIOD_US);
	if (write_file(dir, "cpu.cfs_period_us", v, err, errlen) < 0)
		return -1;
	snprintf(v, sizeof(v), "%lld", cpu_quota_us(cpus, maximum));
	if (write_file(dir, "cpu.cfs_quota_us", v, err, errlen) < 0)
		return -1;
	snprintf(v, sizeof(v), "%lu", cpu_shares(weight));
	return write_file(dir, "cpu.shares", v, err, errlen);
}

int cpu_cgroups_attach(const struct cpu_cgroups *c, const char *vm_id, pid_t pid, char *err, size_t errlen)
{
	char dir[PATH_MAX + 40], v[32];
	vm_dir(c, vm_id, dir, sizeof(dir));
	snprintf(v, sizeof(v), "%d", (int)pid);
	return write_file(dir, "cgroup.procs", v, err, errlen);
}

void cpu_cgroups_remove(const struct cpu_cgroups *c, const char *vm_id)
{
	if (c->kind == CPU_CGROUP_NONE)
		return;
	char dir[PATH_MAX + 40];
	vm_dir(c, vm_id, dir, sizeof(dir));
	rmdir(dir); /* EBUSY while a process is still in it, ENOENT if none was made */
}
