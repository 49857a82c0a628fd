/* Set-VMProcessor's -Maximum and -RelativeWeight through the host's cgroups: each worker runs
 * in a cgroup of its own, <base>/<VM id>, where base is "viridian" in a cgroup v2 hierarchy
 * with the cpu controller (cpu.max, cpu.weight) or, on a host whose cpu controller is on
 * cgroup v1, in that hierarchy (cpu.cfs_quota_us, cpu.shares). -Reserve is not a cgroup
 * setting: vmms checks it against the host's processors at start (vmms/lifecycle.c). */
#ifndef VIRIDIAN_VMMS_CPU_LIMITS_H
#define VIRIDIAN_VMMS_CPU_LIMITS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CPU_PERIOD_US 100000 /* the quota's period: cpu.max and cpu.cfs_period_us */

enum cpu_cgroup_kind { CPU_CGROUP_NONE, CPU_CGROUP_V1, CPU_CGROUP_V2 };

struct cpu_cgroups {
	enum cpu_cgroup_kind kind;
	char base[PATH_MAX + 16]; /* the folder the VMs' cgroups go in */
	char why[PATH_MAX + 512]; /* NONE: why there is none */
};

/* From a /proc/self/mountinfo text: the mount point of the cgroup2 hierarchy into v2 and that
 * of the cgroup v1 hierarchy with the cpu controller into v1 ("" for none; len bytes each).
 * Whether the cgroup2 hierarchy offers the cpu controller is for cpu_cgroups_init to see. */
void cpu_cgroups_find(const char *mountinfo, char *v2, char *v1, size_t len);
/* Finds the host's hierarchy (root: a cgroup folder to use instead, e.g. vmms --cgroup) and
 * prepares base (created; on v2 with the cpu controller enabled below it). Never fails: kind
 * NONE with the reason in why. */
void cpu_cgroups_init(struct cpu_cgroups *c, const char *root);
/* The value for cpu.max (v2), for a VM of cpus processors at maximum percent of them:
 * "max 100000" at 100, else "<quota> 100000". v1's cpu.cfs_quota_us is the quota, or -1. */
void cpu_max_value(int cpus, int maximum, char *out, size_t len);
long long cpu_quota_us(int cpus, int maximum); /* -1: none */
/* v1's cpu.shares for a RelativeWeight (v2's cpu.weight is the weight itself): 1024 at 100. */
unsigned long cpu_shares(int weight);
/* Creates (if need be) the VM's cgroup and sets its limits (maximum 1..100 percent of cpus
 * processors, weight 1..10000). 0, or -1 with one line in err. */
int cpu_cgroups_apply(const struct cpu_cgroups *c, const char *vm_id, int cpus, int maximum, int weight, char *err,
		      size_t errlen);
/* Moves process pid, all its threads, into the VM's cgroup. 0, or -1 with err. */
int cpu_cgroups_attach(const struct cpu_cgroups *c, const char *vm_id, pid_t pid, char *err, size_t errlen);
/* Removes the VM's cgroup once its worker is gone (nothing if it has none or is still busy). */
void cpu_cgroups_remove(const struct cpu_cgroups *c, const char *vm_id);

#endif
