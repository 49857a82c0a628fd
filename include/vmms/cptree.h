/* Checkpoint trees and the disk chains under them: pure decisions, no I/O (vmms/cptree.c).
 *
 * A VM's images form a forest: each image has at most one parent (a differencing disk's). An
 * image is needed while the VM uses it (its current disk on some LUN) or a checkpoint holds it
 * as a frozen disk. Removing a checkpoint or applying another leaves images no one needs; they
 * are folded out of the chain one step at a time (cp_plan) so every needed image keeps its
 * content byte for byte. */
#ifndef VIRIDIAN_VMMS_CPTREE_H
#define VIRIDIAN_VMMS_CPTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct cp_image {
	int parent;        /* index of the parent image, -1 for a base disk */
	bool owned;        /* vmms created it (a checkpoint's .avhdx): it may be deleted */
	bool needed;       /* the VM's disk or a checkpoint's frozen disk */
	int active_lun;    /* the VM's disk on this LUN, -1 when not */
};

enum cp_action_kind {
	CP_NOTHING,        /* nothing can be done now (pending says how many wait) */
	CP_DELETE,         /* an unneeded image with no children, ours: delete it */
	CP_FORGET,         /* an unneeded base disk with no children (the user's file): stop tracking it */
	CP_FOLD,           /* merge child (a leaf) into node offline; what used child uses node */
	CP_LIVE_MERGE,     /* the same with child the running VM's disk on lun: the worker merges */
};

struct cp_action {
	enum cp_action_kind kind;
	int node;          /* the image deleted/forgotten, or the merge target */
	int child;         /* CP_FOLD, CP_LIVE_MERGE: the leaf merged into node */
	int lun;           /* CP_LIVE_MERGE */
};

/* The next step for imgs[0..n). live: a worker runs the VM, so images its disks read (the
 * chains under its active disks) are not touched offline; the fold of its active disk into a
 * parent is a live merge. *pending (may be NULL): unneeded images that stay for now (a
 * frozen disk with several children, or whose only child has children, or in a running
 * chain). A corrupt forest (a parent out of range, a cycle) gives CP_NOTHING. */
struct cp_action cp_plan(const struct cp_image *imgs, int n, bool live, int *pending);

/* Checkpoint tree: parent[i] is the index of checkpoint i's parent, -1 for a root. */
/* Marks root (and with children every descendant) in out[0..n); false on a cycle. */
bool cp_subtree(const int *parent, int n, int root, bool children, bool *out);
/* The nearest ancestor of i not marked removed (-1: none): where i's children (and the VM, if
 * it derives from i) attach once i goes. */
int cp_surviving_parent(const int *parent, int n, const bool *removed, int i);

/* Hyper-V's default checkpoint name: "NAME - (M/D/YYYY - h:mm:ss AM)". */
void cp_default_name(const char *vm_name, const struct tm *tm, char *out, size_t len);
/* A checkpoint's differencing disk beside its parent: "<dir>/<base name>_<GUID>.avhdx" (.avhd
 * for a VHD parent), the base name being the parent's without its extension and without the
 * _<GUID> of an earlier checkpoint (Hyper-V's form). false when it does not fit. */
bool cp_child_path(const char *parent_path, const char *guid, char *out, size_t len);

#endif
