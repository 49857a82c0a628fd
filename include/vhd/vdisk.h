/* vdisk: one API for the disk images a VM uses — raw, VHD and VHDX.
 *
 * The contract storvsp and vmms build on:
 *  - Every call returns 0 (or a count) on success and a negative errno on failure; after a
 *    failure vdisk_last_error() describes it for a user, naming the file and the problem.
 *  - I/O is by byte offset and length; both must be multiples of 512 (reads) or of the
 *    disk's logical sector size (writes, discards). Reads past the virtual size fail.
 *  - A vdisk is safe for concurrent read/write/discard/flush from several threads
 *    (several storage queues). Overlapping concurrent writes have no defined order.
 *  - vdisk_flush() returning 0 means every write that completed before the flush began
 *    survives a crash of this process or the host (VHDX metadata goes through its log).
 *  - A differencing disk opens its parent chain read-only; reads fall through to parents.
 *  - Opening takes a host file lock: one read-write open, or any number of read-only ones;
 *    a conflicting open fails with -EBUSY ("in use"). Parents in a chain are not locked.
 */
#ifndef VIRIDIAN_VHD_VDISK_H
#define VIRIDIAN_VHD_VDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vdisk_format {
	VDISK_FORMAT_AUTO = 0, /* open: detect; create: from the file extension */
	VDISK_FORMAT_RAW,
	VDISK_FORMAT_VHD,
	VDISK_FORMAT_VHDX,
};

enum vdisk_type {
	VDISK_TYPE_FIXED = 1,
	VDISK_TYPE_DYNAMIC,
	VDISK_TYPE_DIFFERENCING,
};

/* Limits of the formats. */
#define VDISK_VHD_MAX_SIZE (2040ULL << 30)   /* VHD: 2040 GiB */
#define VDISK_VHDX_MAX_SIZE (64ULL << 40)    /* VHDX: 64 TiB */

struct vdisk;

struct vdisk_create_params {
	enum vdisk_format format;    /* AUTO: .vhd -> VHD, .vhdx/.avhdx -> VHDX, else raw */
	enum vdisk_type type;        /* 0: dynamic (differencing when parent_path is set) */
	uint64_t size;               /* virtual size in bytes; 0 with a parent: the parent's */
	uint32_t block_size;         /* 0: format default (VHDX 32 MiB, VHD 2 MiB) */
	uint32_t logical_sector;     /* 0: 512; VHDX also 4096 */
	uint32_t physical_sector;    /* 0: 4096 for VHDX, 512 for VHD */
	const char *parent_path;     /* differencing: the parent image */
	/* The parent is open read-write elsewhere (a paused VM's disk getting a checkpoint: the
	 * caller then switches the VM to the new child): read it without taking its lock. */
	bool parent_in_use;
};

struct vdisk_info {
	enum vdisk_format format;
	enum vdisk_type type;
	uint64_t size;               /* virtual size */
	uint64_t file_size;          /* bytes the file occupies on the host (allocated) */
	uint64_t min_size;           /* smallest size Resize-VHD accepts without losing data */
	uint32_t logical_sector;
	uint32_t physical_sector;
	uint32_t block_size;         /* 0 for raw and fixed VHD */
	uint32_t fragmentation_pct;  /* out-of-order allocated blocks, percent */
	char parent_path[4096];      /* resolved parent path, "" when none */
	uint8_t id[16];              /* what a child links to: VHDX DataWriteGuid / VHD unique id */
	uint8_t disk_identifier[16]; /* Get-VHD's DiskIdentifier: VHDX page 83 id / VHD unique id */
};

/* Open flags. */
#define VDISK_OPEN_RDWR  0x1         /* default is read-only */
#define VDISK_OPEN_RAW   0x2         /* the file is raw data whatever it holds (a DVD's ISO): no probing */

/* A human-readable description of the last failure on this thread. */
const char *vdisk_last_error(void);

int vdisk_create(const char *path, const struct vdisk_create_params *p);
int vdisk_open(const char *path, unsigned flags, struct vdisk **out);
int vdisk_close(struct vdisk *d); /* flushes a writable disk; always frees it */

int vdisk_read(struct vdisk *d, void *buf, uint64_t off, size_t len);
int vdisk_write(struct vdisk *d, const void *buf, uint64_t off, size_t len);
int vdisk_flush(struct vdisk *d);
/* Drops (on false) or takes again (on true) the image's lock that vdisk_open took: live
 * migration hands a flushed disk to another process and takes it back if that fails. The
 * parents' shared locks stay. -EBUSY while another process holds it. */
int vdisk_lock(struct vdisk *d, bool on);
/* Trim: the range may read back as zeros afterwards (and in a differencing disk, no longer
 * as the parent's data). Unaligned edges are ignored. */
int vdisk_discard(struct vdisk *d, uint64_t off, uint64_t len);
int vdisk_info(struct vdisk *d, struct vdisk_info *out);
uint64_t vdisk_size(const struct vdisk *d);
const char *vdisk_path(const struct vdisk *d);

/* Whether [off, off+len) is allocated in this image itself (not the parents and not
 * known-zero); *run gets the length of the run with the same answer (at most len).
 * Lets copy, convert and merge skip holes. */
int vdisk_block_status(struct vdisk *d, uint64_t off, uint64_t len, bool *allocated,
		       uint64_t *run);

/* Long operations. progress(done, total, ctx) is called now and then; may be NULL. */
typedef void (*vdisk_progress_fn)(uint64_t done, uint64_t total, void *ctx);

/* Check a file's structure; 0 when sound, else an error naming what is wrong. */
int vdisk_check(const char *path);
/* Copy src's contents (its whole chain, flattened) into a new image at dst. */
int vdisk_convert(const char *src, const char *dst, const struct vdisk_create_params *p,
		  vdisk_progress_fn progress, void *ctx);
/* Merge a differencing child into its parent or, with ancestor != NULL, into that ancestor
 * of its chain; the child (and any skipped intermediates) can be deleted afterwards. */
int vdisk_merge(const char *child, const char *ancestor, vdisk_progress_fn progress,
		void *ctx);
/* Point a differencing child at a (moved) parent; the parent's identity must match. */
int vdisk_set_parent(const char *child, const char *parent);
/* Change the virtual size; shrinking below min_size is refused. */
int vdisk_resize(const char *path, uint64_t size);
/* Reclaim all-zero and discarded blocks of a dynamic or differencing image. */
int vdisk_optimize(const char *path, vdisk_progress_fn progress, void *ctx);

/* Live merge of a differencing disk into its parent while it is in use (docs/vhd.md).
 * vdisk_mirror_start takes a writable open child (no I/O on it in flight: it relinks the child
 * to the identity its parent gets, so the pair opens after any stop) and returns a vdisk that
 * stands for it: reads come from the child, writes and discards go to child and parent under a
 * byte-range lock. vdisk_mirror_copy (one thread; other threads may do I/O on the mirror
 * meanwhile) copies the child's allocated ranges into the parent; progress may return a
 * negative errno to stop it. After it returned 0 and with no I/O in flight,
 * vdisk_mirror_finish closes the child (the caller deletes the file) and returns the parent,
 * open read-write, with the child's contents. vdisk_mirror_abort (any time, no I/O in flight)
 * closes the parent and returns the child, which reads as before; so does vdisk_close. */
int vdisk_mirror_start(struct vdisk *child, struct vdisk **mirror);
int vdisk_mirror_copy(struct vdisk *mirror, int (*progress)(uint64_t done, uint64_t total, void *ctx), void *ctx);
int vdisk_mirror_finish(struct vdisk *mirror, struct vdisk **parent);
int vdisk_mirror_abort(struct vdisk *mirror, struct vdisk **child);

const char *vdisk_format_name(enum vdisk_format f); /* "RAW", "VHD", "VHDX" */
const char *vdisk_type_name(enum vdisk_type t);     /* "Fixed", "Dynamic", "Differencing" */

#endif
