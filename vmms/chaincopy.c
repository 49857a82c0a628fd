/* Copying a VM's files: one file in bounded steps, so a job copies a few MB per main-loop turn
 * (export, import, storage moves, checkpoints' saved states), holes kept (SEEK_DATA), written to
 * "<dst>.partial" and renamed into place only complete and fsynced; a set of files with the
 * parent links of the disk chains among them rewritten once all are copied; and the discovery
 * of every image of a VM's chains. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "vhd/vdisk.h"

#define BUF_SIZE (1u << 20)

static int fail(struct vmms_fcopy *c, int e, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "cannot copy %s to %s: %s: %s", c->src, c->dst, what, strerror(e ? e : EIO));
	vmms_fcopy_abort(c);
	return -1;
}

int vmms_fcopy_open(struct vmms_fcopy *c, const char *src, const char *dst, bool replace, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->in = c->out = -1;
	snprintf(c->src, sizeof(c->src), "%s", src);
	snprintf(c->dst, sizeof(c->dst), "%s", dst);
	if (snprintf(c->tmp, sizeof(c->tmp), "%s.partial", dst) >= (int)sizeof(c->tmp))
		return fail(c, ENAMETOOLONG, "path", err, errlen);
	struct stat st;
	/* the source may come from an export someone else wrote: a plain file, no link */
	c->in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (c->in < 0 || fstat(c->in, &st) < 0)
		return fail(c, errno, "open", err, errlen);
	if (!S_ISREG(st.st_mode))
		return fail(c, EINVAL, "not a regular file", err, errlen);
	if (!replace && access(dst, F_OK) == 0)
		return fail(c, EEXIST, "the destination exists", err, errlen);
	c->size = (uint64_t)st.st_size;
	unlink(c->tmp); /* a copy a crash left */
	c->out = open(c->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (c->out < 0)
		return fail(c, errno, "create", err, errlen);
	if (!(c->buf = malloc(BUF_SIZE)))
		return fail(c, ENOMEM, "buffer", err, errlen);
	return 0;
}

int vmms_fcopy_step(struct vmms_fcopy *c, uint64_t max, char *err, size_t errlen)
{
	uint64_t moved = 0;
	while (c->off < c->size && moved < max) {
		off_t data = lseek(c->in, (off_t)c->off, SEEK_DATA);
		if (data < 0 && errno == ENXIO) { /* only a hole is left */
			c->off = c->size;
			break;
		}
		if (data < 0)
			data = (off_t)c->off; /* no SEEK_DATA here: copy everything */
		off_t hole = lseek(c->in, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > c->size)
			hole = (off_t)c->size;
		c->off = (uint64_t)data;
		size_t n = (size_t)((uint64_t)(hole - data) < BUF_SIZE ? (uint64_t)(hole - data) : BUF_SIZE);
		if (!n) {
			c->off = (uint64_t)hole;
			continue;
		}
		ssize_t r = pread(c->in, c->buf, n, (off_t)c->off);
		if (r <= 0)
			return fail(c, r < 0 ? errno : EIO, "read", err, errlen);
		for (ssize_t w = 0; w < r;) {
			ssize_t k = pwrite(c->out, c->buf + w, (size_t)(r - w), (off_t)c->off + w);
			if (k <= 0)
				return fail(c, k < 0 ? errno : EIO, "write", err, errlen);
			w += k;
		}
		c->off += (uint64_t)r;
		c->done += (uint64_t)r;
		moved += (uint64_t)r;
	}
	if (c->off < c->size)
		return 1;
	if (ftruncate(c->out, (off_t)c->size) < 0 || fsync(c->out) < 0)
		return fail(c, errno, "flush", err, errlen);
	int e = close(c->out) < 0 ? errno : 0;
	c->out = -1;
	if (e || rename(c->tmp, c->dst) < 0)
		return fail(c, e ? e : errno, "rename", err, errlen);
	close(c->in);
	c->in = -1;
	free(c->buf);
	c->buf = NULL;
	return 0;
}

void vmms_fcopy_abort(struct vmms_fcopy *c)
{
	if (c->out >= 0) {
		close(c->out);
		unlink(c->tmp);
	}
	if (c->in >= 0)
		close(c->in);
	free(c->buf);
	c->buf = NULL;
	c->in = c->out = -1;
}

int vmms_copy_file(const char *from, const char *to, char *err, size_t errlen)
{
	struct vmms_fcopy c;
	if (vmms_fcopy_open(&c, from, to, true, err, errlen) < 0)
		return -1;
	int r;
	while ((r = vmms_fcopy_step(&c, UINT64_MAX, err, errlen)) > 0)
		;
	return r;
}

int vmms_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

/* ---- sets of files ---- */

int vmms_copyset_add(struct vmms_copyset *cs, const char *src, const char *dst, int parent)
{
	if (cs->n % 16 == 0) {
		void *p = realloc(cs->f, (size_t)(cs->n + 16) * sizeof(*cs->f));
		if (!p)
			return -1;
		cs->f = p;
	}
	struct vmms_copy_item *it = &cs->f[cs->n];
	memset(it, 0, sizeof(*it));
	if (snprintf(it->src, sizeof(it->src), "%s", src) >= (int)sizeof(it->src) ||
	    snprintf(it->dst, sizeof(it->dst), "%s", dst) >= (int)sizeof(it->dst))
		return -1;
	struct stat st;
	it->size = stat(src, &st) == 0 ? (uint64_t)st.st_size : 0;
	it->parent = parent;
	cs->total += it->size;
	return cs->n++;
}

int vmms_copyset_step(struct vmms_copyset *cs, uint64_t max, char *err, size_t errlen)
{
	while (cs->cur < cs->n && max) {
		struct vmms_copy_item *it = &cs->f[cs->cur];
		if (!cs->open) {
			if (vmms_fcopy_open(&cs->fc, it->src, it->dst, false, err, errlen) < 0)
				return -1;
			cs->open = true;
		}
		uint64_t before = cs->fc.off;
		int r = vmms_fcopy_step(&cs->fc, max, err, errlen);
		if (r < 0) {
			cs->open = false;
			return -1;
		}
		uint64_t moved = (r ? cs->fc.off : it->size) - before;
		cs->done += moved;
		max = moved >= max ? 0 : max - moved;
		if (r == 0) {
			cs->open = false;
			it->copied = true;
			cs->cur++;
		}
	}
	if (cs->cur < cs->n)
		return 1;
	/* every file is there: each child learns where its parent is now */
	for (int i = 0; i < cs->n; i++)
		if (cs->f[i].parent >= 0 && vdisk_set_parent(cs->f[i].dst, cs->f[cs->f[i].parent].dst) < 0) {
			snprintf(err, errlen, "cannot link %s to its parent: %s", cs->f[i].dst, vdisk_last_error());
			return -1;
		}
	return 0;
}

int vmms_copyset_percent(const struct vmms_copyset *cs)
{
	return cs->total ? (int)(cs->done * 100 / cs->total) : 100;
}

void vmms_copyset_free(struct vmms_copyset *cs, bool remove_copies)
{
	if (cs->open)
		vmms_fcopy_abort(&cs->fc);
	for (int i = 0; remove_copies && i < cs->n; i++)
		if (cs->f[i].copied)
			unlink(cs->f[i].dst);
	free(cs->f);
	memset(cs, 0, sizeof(*cs));
}

/* ---- a VM's chains ---- */

static int chain_index(const struct vmms_chain *c, const char *path)
{
	for (int i = 0; i < c->n; i++)
		if (!strcmp(c->img[i].path, path))
			return i;
	return -1;
}

/* Adds path and its ancestors (vdisk's resolved parent links); its index or -1. */
static int chain_add(struct vmms_chain *c, const char *path, char *err, size_t errlen)
{
	int at = chain_index(c, path);
	if (at >= 0)
		return at;
	if (c->n >= VMCFG_MAX_IMAGES) {
		snprintf(err, errlen, "more than %d images in the VM's chains", VMCFG_MAX_IMAGES);
		return -1;
	}
	struct vdisk *d;
	struct vdisk_info info;
	if (vdisk_open(path, 0, &d) < 0) {
		snprintf(err, errlen, "%s", vdisk_last_error());
		return -1;
	}
	int r = vdisk_info(d, &info);
	vdisk_close(d);
	if (r < 0) {
		snprintf(err, errlen, "%s", vdisk_last_error());
		return -1;
	}
	at = c->n++;
	snprintf(c->img[at].path, sizeof(c->img[at].path), "%s", path);
	c->img[at].parent = -1;
	c->img[at].owned = false;
	if (info.parent_path[0]) {
		int p = chain_add(c, info.parent_path, err, errlen);
		if (p < 0)
			return -1;
		c->img[at].parent = p;
	}
	return at;
}

int vmms_chain_load(struct vmms *s, const struct inv_vm *vm, const struct inv_checkpoint *cps, int ncp,
		    struct vmms_chain *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	for (int i = 0; i < vm->ndisks; i++)
		if (chain_add(c, vm->disks[i].path, err, errlen) < 0)
			return -1;
	for (int k = 0; k < ncp; k++)
		for (int i = 0; i < cps[k].ndisks; i++)
			if (chain_add(c, cps[k].disks[i].path, err, errlen) < 0)
				return -1;
	struct inv_image *imgs;
	int n;
	if (inv_images(s->inv, vm->id, &imgs, &n) == 0) {
		for (int i = 0; i < n; i++) {
			int at = chain_index(c, imgs[i].path);
			if (at >= 0)
				c->img[at].owned = imgs[i].owned;
		}
		inv_images_free(imgs, n);
	}
	return 0;
}
