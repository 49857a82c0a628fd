/* The management service: inventory + workers + the JSON API (docs/vmms.md). */
#ifndef VIRIDIAN_VMMS_SERVICE_H
#define VIRIDIAN_VMMS_SERVICE_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmms/cpu_limits.h"
#include "vmms/inventory.h"
#include "vmms/jobs.h"
#include "vmms/tokens.h"

#define VMMS_MAX_WORKERS 256
#define VMMS_MIN_MEMORY (32ull << 20)
#define VMMS_MAX_MEMORY (1ull << 40)
#define VMMS_MAX_CPUS 64
#define VMMS_STOP_TIMEOUT_MS 180000
#define VMMS_SAVE_TIMEOUT_MS 600000 /* Save-VM: the worker writes all of guest RAM */

struct vmms_worker {
	char id[37];
	pid_t pid;
	int pidfd;            /* -1: watched by polling */
	bool starting;        /* spawned, its control socket not answering yet */
	bool child;           /* ours (waitpid gives its status) or adopted after a restart */
	uint64_t start;       /* /proc start time */
	int64_t stop_deadline_ms;
	bool turning_off;     /* Stop-VM -TurnOff, or after a save: SIGKILL at the deadline */
	int save_fd;          /* Save-VM: the save request's socket until the worker answers (-1: none) */
	int64_t save_deadline_ms;
	bool save_resume;     /* the VM was Running before the save: running again if the save fails */
	uint64_t cpu_ticks;   /* last CPU sample */
	int64_t cpu_at_ms;
	double cpu_pct;
};

/* A virtual switch's process (vmswitch), one per switch in the inventory. */
#define VMMS_MAX_SWITCHES 64
struct vmms_switch {
	char id[37];
	pid_t pid;            /* 0: not running */
	int pidfd;            /* -1: watched by polling */
	bool child;           /* ours (waitpid gives its status) or adopted after a restart */
	bool ready;           /* its control socket has answered */
	uint64_t start;       /* /proc start time */
	int64_t started_ms;
	unsigned failures;    /* exits without a minute of running in between */
	int64_t restart_at_ms; /* a restart is due then (0: none) */
	char last_error[256]; /* why it last exited */
};

/* Who asks: a management-socket peer (vmms/caller.c). Root and members of group viridian
 * manage; paths they name are resolved with their own rights. */
#define VMMS_CALLER_MAX_GROUPS 256
struct vmms_caller {
	uid_t uid;
	gid_t gid;
	gid_t groups[VMMS_CALLER_MAX_GROUPS]; /* supplementary */
	int ngroups;
};

/* The peer of a connected socket (SO_PEERCRED, SO_PEERGROUPS). */
bool vmms_caller_from_socket(int fd, struct vmms_caller *c);
/* root, vmms's own user, or a member of admins (its primary group, its process's groups, or
 * the group database's list for its user); admins (gid_t)-1: no such group. */
bool vmms_caller_may_manage(const struct vmms_caller *c, gid_t admins);

enum { VMMS_CALLER_READ, VMMS_CALLER_WRITE, VMMS_CALLER_DIR };
/* Resolves path as the caller would: a child with the caller's uid, gid and groups opens it
 * (VMMS_CALLER_READ/WRITE: a regular file, read-only or read-write; VMMS_CALLER_DIR: a folder
 * it may create in), never following a symlink as the last component; vmms then opens the
 * canonical path the child found and checks it is the same file (a swap in between fails with
 * ESTALE). canon gets that path (root: path as given). 0, or -1 with an errno in *err. */
int vmms_caller_resolve(const struct vmms_caller *c, const char *path, int mode, char *canon, size_t canonlen, int *err);
/* The reason for *err from vmms_caller_resolve, in words. */
const char *vmms_caller_why(int err);

struct vmms {
	char root[PATH_MAX];
	char vmwp[PATH_MAX];
	struct inventory *inv;
	int lock_fd;          /* flock on <root>/vmms.lock: one vmms per root */
	struct vmms_worker workers[VMMS_MAX_WORKERS];
	int nworkers;
	char vmswitch[PATH_MAX]; /* beside vmwp, or $VIRIDIAN_VMSWITCH */
	struct vmms_switch switches[VMMS_MAX_SWITCHES];
	int nswitches;
	struct vmms_jobs jobs;   /* long operations (checkpoint merges ...) */
	bool merge_recheck;      /* a VM turned off or vmms started: pending merges may go on */
	struct token_store *tokens; /* <root>/tokens.db: the web API's tokens */
	struct vmms_caller caller; /* the peer of the request being served (root for vmms's own) */
	struct cpu_cgroups cg;   /* where the workers' processor limits go ($VIRIDIAN_CGROUP, or found) */
	int64_t metering_at_ms;  /* the last resource-metering sample (mono_ms) */
};

/* Opens <root>/vmms.db, creates the Hyper-V-like folders and re-attaches running workers. */
int vmms_init(struct vmms *s, const char *root, const char *vmwp, char *err, size_t errlen);
void vmms_fini(struct vmms *s);
/* One API request (a JSON object) -> a reply object (caller frees). */
json_t *vmms_request(struct vmms *s, json_t *req);
/* Periodic work: Starting/Restoring -> Running, a save's answer, stop time-outs, workers that died. */
void vmms_tick(struct vmms *s);
/* A worker's pidfd became readable (or any child exited): reap and mark VMs Off. */
void vmms_reap(struct vmms *s);
/* A VM is Starting or a job runs: the caller ticks every 20 ms rather than every 500 ms. */
bool vmms_starting(const struct vmms *s);

/* Validation helpers shared with tests. */
bool vmms_valid_name(const char *name);
bool vmms_valid_memory(uint64_t bytes);
bool vmms_valid_auto_start(const char *v);
bool vmms_valid_auto_stop(const char *v);
bool vmms_is_guid(const char *s);
/* The addresses of a KVP NetworkAddressIPv4/IPv6 value (hv_kvp_daemon joins them with ';'),
 * appended to arr as strings; family AF_INET or AF_INET6. The value is the guest's: tokens that
 * are not an address of that family are skipped, at most max are taken. */
void vmms_kvp_addresses(const char *value, int family, json_t *arr, size_t max);
/* An integration service's index (INV_IC_*) from its Hyper-V display name, status key or the
 * worker's name, case-insensitive; -1 when unknown. */
int vmms_ic_index(const char *name);
/* A MAC address as Hyper-V writes it ("00155D0A0B0C", also with ':' or '-' between the bytes)
 * -> 12 upper-case hex digits; false for junk, a multicast or an all-zero address. */
bool vmms_parse_mac(const char *in, char out[13]);
/* The Linux interface name of an Internal switch's host adapter: "vs-" and the switch's name,
 * characters an interface name cannot hold replaced, at most 15 characters; n > 1 makes the
 * n-th alternative ("vs-Name-2"). */
void vmms_host_adapter_name(const char *switch_name, int n, char out[16]);

#endif
