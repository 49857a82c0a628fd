/* The management service's VM inventory: one SQLite database (<root>/vmms.db). Every change is
 * one transaction, so a crash mid-change leaves either the old or the new configuration. */
#ifndef VIRIDIAN_VMMS_INVENTORY_H
#define VIRIDIAN_VMMS_INVENTORY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmms/state.h"

#define INV_MAX_DISKS 64
#define INV_NAME_MAX 256

struct inv_disk {
	int controller;
	int lun;
	char *path;
};

struct inv_vm {
	char id[37];            /* GUID, lower case */
	char *name;
	int generation;         /* 1 or 2 */
	int cpus;
	uint64_t memory;        /* startup bytes */
	char *kernel, *initrd, *cmdline; /* direct boot (Set-VMFirmware); NULL when unset */
	char *notes;
	char *auto_start;       /* Nothing, StartIfRunning, Start */
	char *auto_stop;        /* TurnOff, Save, ShutDown */
	char *path;             /* the VM's folder: <root>/Virtual Machines/<id> */
	struct vm_status status;
	pid_t worker_pid;       /* 0: none */
	uint64_t worker_start;  /* the worker's start time (/proc/PID/stat field 22) */
	int64_t created;        /* unix time */
	int ndisks;
	struct inv_disk disks[INV_MAX_DISKS];
	unsigned ic_disabled;   /* integration services turned off: bits INV_IC_* */
};

/* Integration services (Enable/Disable-VMIntegrationService); the worker's --disable-ic names. */
enum { INV_IC_HEARTBEAT, INV_IC_SHUTDOWN, INV_IC_TIMESYNC, INV_IC_KVP, INV_IC_VSS, INV_IC_COUNT };

struct inv_event {
	int64_t id;
	int64_t time_ms;
	char level[16];
	char message[512];
};

struct inventory;

/* Opens (creating) the database; NULL with a message in err. */
struct inventory *inv_open(const char *db_path, char *err, size_t errlen);
void inv_close(struct inventory *inv);
const char *inv_error(struct inventory *inv); /* the last failure */

/* Inserts a new VM (id must be set) with its disks and a "created" event. -1 on failure
 * (duplicate name: inv_error says so and inv_last_dup() is true). */
int inv_create(struct inventory *inv, const struct inv_vm *vm);
bool inv_last_dup(struct inventory *inv);
/* Finds a VM by GUID or by name (case-insensitive). 1 found, 0 not, -1 error. */
int inv_find(struct inventory *inv, const char *name_or_id, struct inv_vm *out);
/* Replaces the configuration (not runtime fields), the disks and the disabled integration
 * services, in one transaction. */
int inv_update(struct inventory *inv, const struct inv_vm *vm);
/* The same with its own event message (inv_update says "configuration changed"). */
int inv_update_event(struct inventory *inv, const struct inv_vm *vm, const char *event);
/* Runtime: status and worker; with an event message (NULL: none) in the same transaction. */
int inv_set_status(struct inventory *inv, const char *id, struct vm_status st, pid_t pid,
		   uint64_t start, const char *level, const char *event);
int inv_remove(struct inventory *inv, const char *id);
int inv_add_event(struct inventory *inv, const char *id, const char *level, const char *msg);
/* All VMs ordered by name; *out is malloc'd (free each with inv_vm_free, then the array). */
int inv_list(struct inventory *inv, struct inv_vm **out, int *count);
/* Events of one VM, oldest first; at most max (the newest ones). */
int inv_events(struct inventory *inv, const char *id, struct inv_event *out, int max);
void inv_vm_free(struct inv_vm *vm);   /* frees the strings, not the struct */
/* Service-wide values (the host's boot id at the last start). 1 found, 0 not, -1 error. */
int inv_meta_get(struct inventory *inv, const char *key, char *out, size_t len);
int inv_meta_set(struct inventory *inv, const char *key, const char *value);

/* Test hook: called inside inv_update between its statements (a test crashes there). */
extern void (*inv_test_hook)(const char *where);

#endif
