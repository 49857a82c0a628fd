/* Whole-image operations built on the vdisk API: check, convert, merge, reconnect, resize,
 * optimize. Format-independent; they move data in CHUNK-sized pieces. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK (2 * MiB)

static void report(vdisk_progress_fn fn, void *ctx, uint64_t done, uint64_t total)
{
	if (fn)
		fn(done, total, ctx);
}

int vdisk_check(const char *path)
{
	struct vdisk *d;
	int r = vdisk_open(path, 0, &d);
	if (r < 0)
		return r;
	/* Every allocated range must be readable: catches blocks past a truncated end. */
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		r = vd_err(ENOMEM, path, "out of memory");
	for (uint64_t off = 0; r == 0 && off < d->size;) {
		bool alloc;
		uint64_t n = d->size - off < CHUNK ? d->size - off : CHUNK, run;
		r = vdisk_block_status(d, off, n, &alloc, &run);
		if (r == 0 && alloc)
			r = vdisk_read(d, buf, off, run);
		off += run;
	}
	free(buf);
	vdisk_close(d);
	return r;
}

/* Writes buf to a disk that reads as zeros there, skipping all-zero 64 KiB pieces so a
 * sparse target allocates only blocks that hold data. */
static int write_nonzero(struct vdisk *dst, const uint8_t *buf, uint64_t off, size_t n)
{
	const size_t piece = 64 * 1024;
	size_t i = 0;
	while (i < n) {
		size_t l = n - i < piece ? n - i : piece;
		if (buf_is_zero(buf + i, l)) {
			i += l;
			continue;
		}
		size_t j = i + l;
		while (j < n) {
			size_t m = n - j < piece ? n - j : piece;
			if (buf_is_zero(buf + j, m))
				break;
			j += m;
		}
		int r = vdisk_write(dst, buf + i, off + i, j - i);
		if (r < 0)
			return r;
		i = j;
	}
	return 0;
}

/* Whether any layer from `top` down to (not including) `stop` holds data in the range. */
static int chain_allocated(struct vdisk *top, struct vdisk *stop, uint64_t off, uint64_t n, bool *any)
{
	*any = false;
	for (struct vdisk *d = top; d != stop && !*any; d = d->parent)
		for (uint64_t o = off, run; o < off + n && o < d->size && !*any; o += run) {
			uint64_t len = (off + n < d->size ? off + n : d->size) - o;
			int r = vdisk_block_status(d, o, len, any, &run);
			if (r < 0)
				return r;
		}
	return 0;
}

/* Copies [0, size) of src into a new dst (zero pieces are skipped: dst reads as zeros). */
static int copy_data(struct vdisk *src, struct vdisk *dst, uint64_t size, vdisk_progress_fn progress,
		     void *ctx)
{
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		return vd_err(ENOMEM, dst->path, "out of memory");
	int r = 0;
	for (uint64_t off = 0; r == 0 && off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		size_t rn = off + n <= src->size ? n : src->size > off ? (size_t)(src->size - off) : 0;
		bool any = false;
		if (rn)
			r = chain_allocated(src, NULL, off, rn, &any);
		if (r == 0 && any) { /* holes everywhere in the chain read as zeros: skip them */
			memset(buf + rn, 0, n - rn);
			r = vdisk_read(src, buf, off, round_up(rn, 512));
			if (r == 0)
				r = write_nonzero(dst, buf, off, n);
		}
		report(progress, ctx, off + n, size);
	}
	free(buf);
	if (r == 0)
		r = vdisk_flush(dst);
	return r;
}

int vdisk_convert(const char *src_path, const char *dst_path, const struct vdisk_create_params *in,
		  vdisk_progress_fn progress, void *ctx)
{
	struct vdisk *src, *dst;
	int r = vdisk_open(src_path, 0, &src);
	if (r < 0)
		return r;
	struct vdisk_info si;
	vdisk_info(src, &si);
	struct vdisk_create_params p = *in;
	if (p.type == VDISK_TYPE_DIFFERENCING || p.parent_path) {
		vdisk_close(src);
		return vd_err(EINVAL, dst_path, "conversion makes a fixed or dynamic disk, not a differencing one");
	}
	if (!p.type)
		p.type = si.type == VDISK_TYPE_FIXED ? VDISK_TYPE_FIXED : VDISK_TYPE_DYNAMIC;
	if (!p.format)
		p.format = vd_format_from_name(dst_path);
	/* Sector sizes carry over between VHDX files; VHD and raw have 512-byte sectors. */
	bool both_vhdx = si.format == VDISK_FORMAT_VHDX && p.format == VDISK_FORMAT_VHDX;
	if (!p.logical_sector && both_vhdx)
		p.logical_sector = si.logical_sector;
	if (!p.physical_sector && both_vhdx)
		p.physical_sector = si.physical_sector;
	uint64_t align = p.logical_sector ? p.logical_sector : 512;
	if (!p.size)
		p.size = round_up(si.size, align);
	if ((r = vdisk_create(dst_path, &p)) < 0) {
		vdisk_close(src);
		return r;
	}
	if ((r = vdisk_open(dst_path, VDISK_OPEN_RDWR, &dst)) == 0) {
		r = copy_data(src, dst, dst->size, progress, ctx);
		int c = vdisk_close(dst);
		r = r < 0 ? r : c;
	}
	vdisk_close(src);
	if (r < 0)
		unlink(dst_path);
	return r;
}

int vdisk_merge(const char *child_path, const char *ancestor, vdisk_progress_fn progress, void *ctx)
{
	struct vdisk *child, *target = NULL;
	int r = vdisk_open(child_path, 0, &child);
	if (r < 0)
		return r;
	if (!child->parent) {
		vdisk_close(child);
		return vd_err(EINVAL, child_path, "is not a differencing disk; nothing to merge");
	}
	/* The target: the parent, or the named ancestor somewhere up the chain. */
	char want[PATH_MAX];
	if (ancestor && !realpath(ancestor, want)) {
		vdisk_close(child);
		return vd_err(errno, ancestor, "cannot resolve: %s", strerror(errno));
	}
	struct vdisk *t = child->parent;
	const char *tpath = child->parent_path;
	for (struct vdisk *d = child; ancestor && d->parent; d = d->parent)
		if (!strcmp(d->parent_path, want)) {
			t = d->parent, tpath = d->parent_path;
			break;
		} else if (!d->parent->parent) {
			vdisk_close(child);
			return vd_err(EINVAL, ancestor, "is not an ancestor of %s", child_path);
		}
	char target_path[PATH_MAX];
	snprintf(target_path, sizeof(target_path), "%s", tpath);
	/* Every layer above the target: what they hold gets copied down, then they go. */
	struct vdisk *layers[64];
	int nl = 0;
	for (struct vdisk *d = child; d != t && nl < 64; d = d->parent)
		layers[nl++] = d;
	r = vdisk_open(target_path, VDISK_OPEN_RDWR, &target);
	uint8_t *buf = r == 0 ? malloc(CHUNK) : NULL;
	if (r == 0 && !buf)
		r = vd_err(ENOMEM, child_path, "out of memory");
	uint64_t size = child->size < t->size ? child->size : t->size;
	for (uint64_t off = 0; r == 0 && off < size; off += CHUNK) {
		uint64_t n = size - off < CHUNK ? size - off : CHUNK;
		bool any = false;
		r = chain_allocated(child, t, off, n, &any);
		if (r == 0 && any && (r = vdisk_read(child, buf, off, n)) == 0)
			r = vdisk_write(target, buf, off, n);
		report(progress, ctx, off + n, size);
	}
	free(buf);
	if (target) {
		int c = vdisk_close(target);
		r = r < 0 ? r : c;
	}
	/* The merged layers are now redundant: Hyper-V's Merge-VHD deletes them. */
	char paths[64][PATH_MAX];
	for (int i = 0; i < nl; i++)
		snprintf(paths[i], PATH_MAX, "%s", layers[i]->path);
	vdisk_close(child);
	for (int i = 0; r == 0 && i < nl; i++)
		if (unlink(paths[i]) < 0)
			r = vd_err(errno, paths[i], "merged, but cannot delete: %s", strerror(errno));
	return r;
}

int vdisk_set_parent(const char *child_path, const char *parent_path)
{
	struct vdisk *child, *parent;
	int r = vd_open(child_path, VDISK_OPEN_RDWR | VDISK_OPEN_NO_PARENT, &child);
	if (r < 0)
		return r;
	if (child->type != VDISK_TYPE_DIFFERENCING) {
		vdisk_close(child);
		return vd_err(EINVAL, child_path, "is not a differencing disk");
	}
	if ((r = vdisk_open(parent_path, 0, &parent)) == 0) {
		r = child->ops->set_parent(child, parent, parent_path);
		vdisk_close(parent);
	}
	int c = vdisk_close(child);
	if (r == 0 && c == 0 && (r = vdisk_open(child_path, 0, &child)) == 0) /* the chain opens now */
		vdisk_close(child);
	return r < 0 ? r : c;
}

int vdisk_resize(const char *path, uint64_t size)
{
	struct vdisk *d;
	int r = vdisk_open(path, VDISK_OPEN_RDWR, &d);
	if (r < 0)
		return r;
	struct vdisk_info info;
	vdisk_info(d, &info);
	if (size < info.min_size && size < d->size)
		r = vd_err(EINVAL, path, "cannot shrink below the minimum size %llu without losing data",
			   (unsigned long long)info.min_size);
	else if (d->type == VDISK_TYPE_DIFFERENCING && size != d->size)
		r = vd_err(EINVAL, path, "a differencing disk keeps its parent's size; merge it first");
	else if (size != d->size)
		r = d->ops->resize(d, size);
	int c = vdisk_close(d);
	return r < 0 ? r : c;
}

int vdisk_optimize(const char *path, vdisk_progress_fn progress, void *ctx)
{
	struct vdisk *d;
	int r = vdisk_open(path, VDISK_OPEN_RDWR, &d);
	if (r < 0)
		return r;
	struct vdisk_info info;
	vdisk_info(d, &info);
	if (d->format == VDISK_FORMAT_RAW) { /* a raw file gets holes where it is zero */
		uint8_t *buf = malloc(CHUNK);
		r = buf ? 0 : vd_err(ENOMEM, path, "out of memory");
		for (uint64_t off = 0; r == 0 && off < d->size; off += CHUNK) {
			size_t n = d->size - off < CHUNK ? (size_t)(d->size - off) : CHUNK;
			if ((r = vdisk_read(d, buf, off, n)) == 0 && buf_is_zero(buf, n))
				vf_punch(&d->f, off, n);
			report(progress, ctx, off + n, d->size);
		}
		free(buf);
		vdisk_close(d);
		return r;
	}
	if (d->type == VDISK_TYPE_FIXED) {
		vdisk_close(d);
		return vd_err(EINVAL, path, "a fixed disk has nothing to reclaim; convert it to dynamic");
	}
	/* Rewrite into a fresh file beside it, keeping only non-zero data, then swap. */
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.optimize-tmp", path);
	struct vdisk_create_params p = {
		.format = d->format,
		.type = d->type,
		.size = d->size,
		.block_size = info.block_size,
		.logical_sector = info.logical_sector,
		.physical_sector = info.physical_sector,
		.parent_path = d->parent_path,
	};
	unlink(tmp);
	struct vdisk *out = NULL;
	r = vdisk_create(tmp, &p);
	if (r == 0)
		r = vdisk_open(tmp, VDISK_OPEN_RDWR, &out);
	uint8_t *buf = r == 0 ? malloc(CHUNK) : NULL;
	if (r == 0 && !buf)
		r = vd_err(ENOMEM, path, "out of memory");
	for (uint64_t off = 0; r == 0 && off < d->size; off += CHUNK) {
		size_t n = d->size - off < CHUNK ? (size_t)(d->size - off) : CHUNK;
		bool any = false;
		r = chain_allocated(d, d->parent, off, n, &any);
		/* in a child, zeros may hide parent data: keep them */
		if (r == 0 && any && (r = vdisk_read(d, buf, off, n)) == 0)
			r = d->type == VDISK_TYPE_DIFFERENCING ? vdisk_write(out, buf, off, n)
							       : write_nonzero(out, buf, off, n);
		report(progress, ctx, off + n, d->size);
	}
	free(buf);
	if (out) {
		int c = vdisk_close(out);
		r = r < 0 ? r : c;
	}
	vdisk_close(d);
	if (r == 0 && rename(tmp, path) < 0)
		r = vd_err(errno, path, "cannot replace with the optimized copy: %s", strerror(errno));
	if (r < 0)
		unlink(tmp);
	return r;
}
