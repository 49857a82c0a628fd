/* File I/O for the image formats: every byte the library reads or writes goes through here.
 *
 * Production code pays one predictable branch per call. A test can install a power-cut
 * simulator (vio_sim_install) that holds writes in memory until the next sync and, at a
 * chosen write/sync event, "loses power": each unsynced write is dropped, kept or torn, and
 * every later call fails with EIO. The simulator is for single-threaded tests. */
#ifndef VIRIDIAN_VHD_VIO_H
#define VIRIDIAN_VHD_VIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vio_sim;

struct vfile {
	int fd;
	bool writable;
	struct vio_sim *sim;  /* NULL outside the crash tests */
	struct vio_pending *pending; /* sim: writes not yet synced, oldest first */
	struct vio_pending **pending_tail;
};

int vf_open(struct vfile *f, const char *path, bool writable, bool create);
void vf_close(struct vfile *f);
/* Whole-buffer I/O: a short read (past end of file) is -ENODATA. */
int vf_pread(struct vfile *f, void *buf, size_t len, uint64_t off);
/* Like vf_pread, but bytes past the end of the file read as zeros. */
int vf_pread_pad(struct vfile *f, void *buf, size_t len, uint64_t off);
int vf_pwrite(struct vfile *f, const void *buf, size_t len, uint64_t off);
int vf_sync(struct vfile *f);
int vf_size(struct vfile *f, uint64_t *size);
int vf_truncate(struct vfile *f, uint64_t size);
/* Give the range back to the host filesystem (reads as zeros); best effort. */
int vf_punch(struct vfile *f, uint64_t off, uint64_t len);
/* Bytes the file occupies on the host. */
uint64_t vf_allocated(struct vfile *f);

/* Crash simulation (tests only). After `events` more writes/syncs on files opened while the
 * simulator is installed, power is cut; `seed` drives which unsynced writes survive. */
struct vio_sim *vio_sim_install(uint64_t events, uint64_t seed);
/* Uninstall; returns the number of write/sync events seen and whether power was cut. */
uint64_t vio_sim_remove(struct vio_sim *s, bool *was_cut);

#endif
