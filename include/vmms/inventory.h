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
	/* Hard disks' storage QoS (Set-VMHardDiskDrive -MaximumIOPS, -MaximumBandwidth; 0: none).
	 * They belong to the drive's location, not to its image: read with the drives, written by
	 * inv_create and inv_set_disk_qos only (inv_update leaves them, so applying a checkpoint or moving
	 * storage keeps them), gone with the drive. */
	uint64_t max_iops, max_bandwidth;
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
	int ndvds;              /* DVD drives (Add-VMDvdDrive), SCSI 0 like the disks */
	struct inv_disk dvds[INV_MAX_DISKS]; /* path "": no disc */
	unsigned ic_disabled;   /* integration services turned off: bits INV_IC_* */
	char checkpoint_type[16]; /* Standard, Production (default), ProductionOnly, Disabled */
	char parent_checkpoint[37]; /* the checkpoint the VM's current state derives from ("": none) */
	/* Set-VMProcessor (vmms/cpu_limits.c): -Maximum, percent of its processors' time, 1..100;
	 * -Reserve, percent held for it, 0..100 (checked against the host at start);
	 * -RelativeWeight, 1..10000. 0 in maximum and weight: Hyper-V's defaults (100, 100). */
	int cpu_maximum, cpu_reserve, cpu_weight;
};

/* Integration services (Enable/Disable-VMIntegrationService); the worker's --disable-ic names. */
enum { INV_IC_HEARTBEAT, INV_IC_SHUTDOWN, INV_IC_TIMESYNC, INV_IC_KVP, INV_IC_VSS, INV_IC_GSI, INV_IC_COUNT };

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

/* Inserts a new VM (id must be set) with its disks (their QoS too) and a "created" event. -1 on failure
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
/* Resource metering (Enable-VMResourceMetering, Measure-VM: vmms/metering.c): what was used
 * since since_ms, and the worker's counters at the last sample (base, of the worker whose
 * /proc start time is base_worker) that the next sample counts from. A VM has a row while
 * metering is on. */
struct inv_meter_counters { /* a worker's cumulative counters at at_ms */
	int64_t at_ms, cpu_ticks, read, written, ops, in, out;
};
struct inv_metering {
	int64_t since_ms;       /* wall clock, Unix ms */
	int64_t running_ms;     /* of that time, sampled with a worker running */
	int64_t cpu_ms;         /* processor time its worker used */
	int64_t ram_mb_ms;      /* assigned memory (MiB) x running time: the average's sum */
	int64_t ram_min_mb, ram_max_mb; /* 0 before the first sample */
	int64_t disk_read, disk_written, disk_ops; /* bytes; normalized (8 KiB) operations */
	int64_t net_in, net_out; /* bytes, all adapters */
	int64_t base_worker;
	struct inv_meter_counters base;
};
/* 1 and *out, 0 (metering off), -1 error. */
int inv_metering_get(struct inventory *inv, const char *id, struct inv_metering *out);
int inv_metering_put(struct inventory *inv, const char *id, const struct inv_metering *m);
int inv_metering_delete(struct inventory *inv, const char *id);

/* The storage QoS of the VM's hard disk drive at controller:lun, with an event message. */
int inv_set_disk_qos(struct inventory *inv, const char *id, int controller, int lun, uint64_t max_iops,
		     uint64_t max_bandwidth, const char *event);
int inv_add_event(struct inventory *inv, const char *id, const char *level, const char *msg);
/* All VMs ordered by name; *out is malloc'd (free each with inv_vm_free, then the array). */
int inv_list(struct inventory *inv, struct inv_vm **out, int *count);
/* Events of one VM, oldest first; at most max (the newest ones). */
int inv_events(struct inventory *inv, const char *id, struct inv_event *out, int max);
void inv_vm_free(struct inv_vm *vm);   /* frees the strings, not the struct */
/* Service-wide values (the host's boot id at the last start). 1 found, 0 not, -1 error. */
int inv_meta_get(struct inventory *inv, const char *key, char *out, size_t len);
int inv_meta_set(struct inventory *inv, const char *key, const char *value);

/* Virtual switches (New-VMSwitch): one vmswitch process each, run by vmms. */
#define INV_SWITCH_TYPE_MAX 16
struct inv_switch {
	char id[37];            /* GUID, lower case */
	char name[INV_NAME_MAX];
	char type[INV_SWITCH_TYPE_MAX]; /* Private, Internal, External */
	char net_adapter[16];   /* External: the host interface it is bound to ("" otherwise) */
	char host_adapter[16];  /* Internal: the host's adapter, a tap ("" otherwise) */
	char notes[1024];
	pid_t pid;              /* runtime: the vmswitch process (0: none) */
	uint64_t pid_start;     /* its start time (/proc/PID/stat field 22) */
	int64_t created;        /* unix time */
};

/* A VM's network adapters (Add-VMNetworkAdapter), in slot order: the worker's --nic order. */
#define INV_MAX_NICS 8
struct inv_nic {
	char vm_id[37];
	int slot;               /* 0..INV_MAX_NICS-1, unique per VM */
	char name[INV_NAME_MAX];
	char mac[13];           /* 12 upper-case hex digits, Hyper-V's form: 00155D0A0B0C */
	bool static_mac;        /* -StaticMacAddress (else generated at creation: dynamic) */
	char switch_id[37];     /* "" when not connected */
	int vlan;               /* access VLAN id, 0 = untagged */
	bool mac_spoofing;
};

/* Inserts a switch (id set). -1 on failure (duplicate name: inv_last_dup()). */
int inv_switch_create(struct inventory *inv, const struct inv_switch *sw);
/* By GUID or name (case-insensitive). 1 found, 0 not, -1 error. */
int inv_switch_find(struct inventory *inv, const char *name_or_id, struct inv_switch *out);
/* All switches by name; *out is malloc'd (free it). */
int inv_switch_list(struct inventory *inv, struct inv_switch **out, int *count);
int inv_switch_set_runtime(struct inventory *inv, const char *id, pid_t pid, uint64_t start);
/* Deletes the switch; the adapters on it are left unconnected, each of their VMs gets the
 * event (NULL: none). One transaction. */
int inv_switch_remove(struct inventory *inv, const char *id, const char *event);
/* Adapters of one VM (vm_id) or of every VM (NULL), by VM then slot; *out is malloc'd. */
int inv_nic_list(struct inventory *inv, const char *vm_id, struct inv_nic **out, int *count);
/* Replaces all of a VM's adapters with nics[0..n) and adds the event (NULL: none), in one
 * transaction. A switch_id that names no switch fails (nothing changes). */
int inv_nics_put(struct inventory *inv, const char *vm_id, const struct inv_nic *nics, int n, const char *event);

/* Several changes in one transaction: the inv_* calls between begin and commit join it (a
 * failing one dooms it: commit then rolls back and fails). */
int inv_tx_begin(struct inventory *inv);
int inv_tx_commit(struct inventory *inv);
void inv_tx_rollback(struct inventory *inv);

/* Checkpoints (Checkpoint-VM): a tree per VM, each with the configuration of its time. */
struct inv_checkpoint {
	char id[37];
	char vm_id[37];
	char parent_id[37];     /* "" for a root */
	char name[INV_NAME_MAX];
	int64_t created_ms;     /* Unix ms */
	char type[16];          /* Standard (a saved state with it) or Production (disks only) */
	char *state_file;       /* <VM folder>/Snapshots/<id>.vmrs, NULL when disks only */
	int cpus;
	uint64_t memory;
	int ndisks;
	struct inv_disk disks[INV_MAX_DISKS]; /* the frozen images, by controller and LUN */
};
int inv_cp_insert(struct inventory *inv, const struct inv_checkpoint *c);
/* A VM's checkpoints, oldest first; *out is malloc'd (inv_cp_free). */
int inv_cp_list(struct inventory *inv, const char *vm_id, struct inv_checkpoint **out, int *count);
void inv_cp_free(struct inv_checkpoint *cps, int count);
int inv_cp_delete(struct inventory *inv, const char *id);
int inv_cp_set_parent(struct inventory *inv, const char *id, const char *parent_id); /* "" or NULL: a root */
int inv_cp_rename(struct inventory *inv, const char *id, const char *name);

/* The images of a VM's disk chains that vmms tracks (base disks, frozen disks, the children
 * it created), each with its parent image (NULL for a base). */
struct inv_image {
	char *path;
	char *parent;
	bool owned;             /* created by vmms: deleted when no one needs it */
};
int inv_images(struct inventory *inv, const char *vm_id, struct inv_image **out, int *count);
void inv_images_free(struct inv_image *imgs, int count);
int inv_image_put(struct inventory *inv, const char *vm_id, const char *path, const char *parent, bool owned);
int inv_image_drop(struct inventory *inv, const char *path);
/* What used image `from` (the VM's drives, its checkpoints' frozen disks, children's parent
 * links) uses `to`. */
int inv_image_repath(struct inventory *inv, const char *vm_id, const char *from, const char *to);
/* The image itself moved (Move-VMStorage): inv_image_repath and its own row. */
int inv_image_move(struct inventory *inv, const char *vm_id, const char *from, const char *to);
int inv_set_path(struct inventory *inv, const char *id, const char *path); /* the VM's folder */
int inv_cp_set_state_file(struct inventory *inv, const char *id, const char *state_file);

/* The journal of multi-step operations: the intent is written before acting, the step as each
 * completes; vmms finishes or rolls back what a dead vmms left (vmms/checkpoints.c). */
struct inv_journal {
	int64_t id;
	char vm_id[37];
	char kind[32];
	char step[32];
	char *data;             /* JSON: what the operation needs to finish or undo */
};
int64_t inv_journal_add(struct inventory *inv, const char *vm_id, const char *kind, const char *step, const char *data);
int inv_journal_step(struct inventory *inv, int64_t id, const char *step, const char *data); /* data NULL: kept */
int inv_journal_drop(struct inventory *inv, int64_t id);
int inv_journal_list(struct inventory *inv, struct inv_journal **out, int *count); /* oldest first */
void inv_journal_free(struct inv_journal *js, int count);

/* Test hook: called inside inv_update between its statements (a test crashes there). */
extern void (*inv_test_hook)(const char *where);

#endif
