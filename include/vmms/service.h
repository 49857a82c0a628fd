/* The management service: inventory + workers + the JSON API (docs/vmms.md). */
#ifndef VIRIDIAN_VMMS_SERVICE_H
#define VIRIDIAN_VMMS_SERVICE_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmms/inventory.h"

#define VMMS_MAX_WORKERS 256
#define VMMS_MIN_MEMORY (32ull << 20)
#define VMMS_MAX_MEMORY (1ull << 40)
#define VMMS_MAX_CPUS 64
#define VMMS_STOP_TIMEOUT_MS 180000

struct vmms_worker {
	char id[37];
	pid_t pid;
	int pidfd;            /* -1: watched by polling */
	bool starting;        /* spawned, its control socket not answering yet */
	bool child;           /* ours (waitpid gives its status) or adopted after a restart */
	uint64_t start;       /* /proc start time */
	int64_t stop_deadline_ms;
	bool turning_off;     /* Stop-VM -TurnOff: SIGKILL at the deadline */
	uint64_t cpu_ticks;   /* last CPU sample */
	int64_t cpu_at_ms;
	double cpu_pct;
};

struct vmms {
	char root[PATH_MAX];
	char vmwp[PATH_MAX];
	struct inventory *inv;
	int lock_fd;          /* flock on <root>/vmms.lock: one vmms per root */
	struct vmms_worker workers[VMMS_MAX_WORKERS];
	int nworkers;
};

/* Opens <root>/vmms.db, creates the Hyper-V-like folders and re-attaches running workers. */
int vmms_init(struct vmms *s, const char *root, const char *vmwp, char *err, size_t errlen);
void vmms_fini(struct vmms *s);
/* One API request (a JSON object) -> a reply object (caller frees). */
json_t *vmms_request(struct vmms *s, json_t *req);
/* Periodic work: Starting -> Running, stop time-outs, workers that died. */
void vmms_tick(struct vmms *s);
/* A worker's pidfd became readable (or any child exited): reap and mark VMs Off. */
void vmms_reap(struct vmms *s);
/* A VM is Starting: the caller ticks every 20 ms rather than every 500 ms. */
bool vmms_starting(const struct vmms *s);

/* Validation helpers shared with tests. */
bool vmms_valid_name(const char *name);
bool vmms_valid_memory(uint64_t bytes);
bool vmms_valid_auto_start(const char *v);
bool vmms_valid_auto_stop(const char *v);
bool vmms_is_guid(const char *s);
/* An integration service's index (INV_IC_*) from its Hyper-V display name, status key or the
 * worker's name, case-insensitive; -1 when unknown. */
int vmms_ic_index(const char *name);

#endif
