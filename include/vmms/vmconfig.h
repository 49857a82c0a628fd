/* A VM's whole configuration as a file: Export-VM writes it to
 * <export>/Virtual Machines/<id>.json, Import-VM and Compare-VM read it (vmms/vmconfig.c).
 * Pure: JSON text <-> struct, no inventory, no files, so a migration stream can carry the same
 * document.
 *
 *   {"format":"viridian-vm","version":1,"exported_ms":T,
 *    "vm":{"id","name","generation","cpus","memory","kernel","initrd","cmdline","notes",
 *          "automatic_start_action","automatic_stop_action","checkpoint_type",
 *          "parent_checkpoint","disabled_integration_services":[..],"state":"Off"|"Saved",
 *          "saved_state":REL?,"processor":{"maximum","reserve","relative_weight"}?},
 *    "disks":[{"controller","lun","path":REL,"max_iops"?,"max_bandwidth"?}],
 *    "network_adapters":[{"slot","name","mac","static_mac","switch":NAME?,"vlan","mac_spoofing"}],
 *    "images":[{"path":REL,"parent":REL?,"owned"}],
 *    "checkpoints":[{"id","parent_id","name","created_ms","type","state_file":REL?,"cpus",
 *                    "memory","disks":[..]}]}
 *
 * REL paths are relative to the export folder, without "." or ".." components: images under
 * "Virtual Hard Disks/", checkpoint states under "Snapshots/", the saved state under
 * "Virtual Machines/". Every image a disk or a checkpoint uses is in "images", with its parent
 * there too, and the images form a forest. The file is hostile input: vmcfg_parse checks all of
 * this and says what is wrong in one line. "processor" (Set-VMProcessor) and a disk's storage QoS
 * (Set-VMHardDiskDrive) came later in version 1: absent, they are Hyper-V's defaults (100 %,
 * 0 %, weight 100, no limit); checkpoints' disks have no QoS (it is the drive's, not an image's). */
#ifndef VIRIDIAN_VMMS_VMCONFIG_H
#define VIRIDIAN_VMMS_VMCONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMCFG_FORMAT "viridian-vm"
#define VMCFG_VERSION 1
#define VMCFG_MAX_DISKS 64
#define VMCFG_MAX_NICS 8
#define VMCFG_MAX_IMAGES 256
#define VMCFG_MAX_CHECKPOINTS 64
#define VMCFG_PATH_MAX 1024       /* a REL path */
#define VMCFG_NAME_MAX 256
#define VMCFG_HOST_PATH_MAX 4096  /* kernel, initrd */
#define VMCFG_CMDLINE_MAX 4096
#define VMCFG_NOTES_MAX 4096
#define VMCFG_FILE_MAX (16u << 20) /* a configuration file larger than this is refused */

struct vmcfg_disk {
	int controller;
	int lun;
	int image;                /* index into images */
	uint64_t max_iops, max_bandwidth; /* 0: no limit; always 0 in a checkpoint's disks */
};

struct vmcfg_nic {
	int slot;
	char name[VMCFG_NAME_MAX];
	char mac[13];             /* 12 upper-case hex digits */
	bool static_mac;
	char switch_name[VMCFG_NAME_MAX]; /* "" when not connected */
	int vlan;
	bool mac_spoofing;
};

struct vmcfg_image {
	char path[VMCFG_PATH_MAX];
	int parent;               /* index into images, -1 for a base disk */
	bool owned;               /* a checkpoint's child vmms made (deleted when no one needs it) */
};

struct vmcfg_checkpoint {
	char id[37];
	char parent_id[37];       /* "" for a root */
	char name[VMCFG_NAME_MAX];
	int64_t created_ms;
	char type[16];            /* Standard, Production */
	char state_file[VMCFG_PATH_MAX]; /* "" when disks only */
	int cpus;
	uint64_t memory;
	int ndisks;
	struct vmcfg_disk disks[VMCFG_MAX_DISKS];
};

struct vmcfg {
	int64_t exported_ms;
	char id[37];
	char name[VMCFG_NAME_MAX];
	int generation;
	int cpus;
	uint64_t memory;
	char kernel[VMCFG_HOST_PATH_MAX], initrd[VMCFG_HOST_PATH_MAX]; /* host paths, "" when unset */
	char cmdline[VMCFG_CMDLINE_MAX];
	bool has_cmdline;
	char notes[VMCFG_NOTES_MAX];
	char auto_start[16], auto_stop[16], checkpoint_type[16];
	char parent_checkpoint[37];
	unsigned ic_disabled;     /* bits INV_IC_* */
	bool saved;               /* state Saved: saved_state is its file */
	char saved_state[VMCFG_PATH_MAX];
	int cpu_maximum, cpu_reserve, cpu_weight; /* percent 1..100, percent 0..100, 1..10000 */
	int ndisks, nnics, nimages, ncheckpoints;
	struct vmcfg_disk disks[VMCFG_MAX_DISKS];
	struct vmcfg_nic nics[VMCFG_MAX_NICS];
	struct vmcfg_image images[VMCFG_MAX_IMAGES];
	struct vmcfg_checkpoint checkpoints[VMCFG_MAX_CHECKPOINTS];
};

/* Parses and checks a configuration file's text; 0, or -1 with the cause in err (one line). */
int vmcfg_parse(const char *text, size_t len, struct vmcfg *out, char *err, size_t errlen);
/* The document for a configuration (vmcfg_parse reads it back equal); NULL when out of memory. */
json_t *vmcfg_to_json(const struct vmcfg *c);
/* Is p a REL path under folder ("Virtual Hard Disks" ...): no "", ".", ".." components, no
 * leading '/', no control characters, shorter than VMCFG_PATH_MAX? */
bool vmcfg_rel_path_ok(const char *p, const char *folder);
/* The image index of a REL path, -1 when not listed. */
int vmcfg_image_index(const struct vmcfg *c, const char *path);

#endif
