/* The format-independent layer: detection, argument checks, parent chains. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/file.h>

#define MAX_CHAIN_DEPTH 64

static _Thread_local int open_depth; /* guards against parent loops */

const char *vdisk_format_name(enum vdisk_format f)
{
	switch (f) {
	case VDISK_FORMAT_RAW: return "RAW";
	case VDISK_FORMAT_VHD: return "VHD";
	case VDISK_FORMAT_VHDX: return "VHDX";
	default: return "Unknown";
	}
}

const char *vdisk_type_name(enum vdisk_type t)
{
	switch (t) {
	case VDISK_TYPE_FIXED: return "Fixed";
	case VDISK_TYPE_DYNAMIC: return "Dynamic";
	case VDISK_TYPE_DIFFERENCING: return "Differencing";
	default: return "Unknown";
	}
}

enum vdisk_format vd_format_from_name(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && (!strcasecmp(dot, ".vhdx") || !strcasecmp(dot, ".avhdx")))
		return VDISK_FORMAT_VHDX;
	if (dot && (!strcasecmp(dot, ".vhd") || !strcasecmp(dot, ".avhd")))
		return VDISK_FORMAT_VHD;
	return VDISK_FORMAT_RAW;
}

int vdisk_create(const char *path, const struct vdisk_create_params *in)
{
	struct vdisk_create_params p = *in;
	struct vdisk *parent = NULL;
	if (!p.format)
		p.format = vd_format_from_name(path);
	if (!p.type)
		p.type = p.parent_path ? VDISK_TYPE_DIFFERENCING : VDISK_TYPE_DYNAMIC;
	if ((p.type == VDISK_TYPE_DIFFERENCING) != (p.parent_path != NULL))
		return vd_err(EINVAL, path, "a differencing disk needs a parent path, and only it");
	if (p.parent_path) {
		if (p.format == VDISK_FORMAT_RAW)
			return vd_err(EINVAL, path, "a raw image cannot be a differencing disk");
		int r = vd_open(p.parent_path, p.parent_in_use ? VDISK_OPEN_NO_LOCK : 0, &parent);
		if (r < 0)
			return r;
		if (p.size && p.size != parent->size) {
			vdisk_close(parent);
			return vd_err(EINVAL, path, "a differencing disk has its parent's size");
		}
	} else if (!p.size) {
		return vd_err(EINVAL, path, "a size is needed");
	}
	int r;
	switch (p.format) {
	case VDISK_FORMAT_VHD: r = vhd_create(path, &p, parent); break;
	case VDISK_FORMAT_VHDX: r = vhdx_create(path, &p, parent); break;
	default: r = raw_create(path, &p); break;
	}
	if (parent)
		vdisk_close(parent);
	return r;
}

void vd_free(struct vdisk *d)
{
	if (d->parent)
		vdisk_close(d->parent);
	vf_close(&d->f);
	pthread_mutex_destroy(&d->lock);
	free(d->parent_path);
	free(d->path);
	free(d);
}

int vdisk_open(const char *path, unsigned flags, struct vdisk **out)
{
	return vd_open(path, flags & (VDISK_OPEN_RDWR | VDISK_OPEN_RAW), out);
}

int vd_open(const char *path, unsigned flags, struct vdisk **out)
{
	*out = NULL;
	if (open_depth >= MAX_CHAIN_DEPTH)
		return vd_err(ELOOP, path, "differencing chain deeper than %d (a parent loop?)", MAX_CHAIN_DEPTH);
	struct vdisk *d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(path))) {
		free(d);
		return vd_err(ENOMEM, path, "out of memory");
	}
	pthread_mutex_init(&d->lock, NULL);
	d->writable = flags & VDISK_OPEN_RDWR;
	d->no_parent = flags & VDISK_OPEN_NO_PARENT;
	int r = vf_open(&d->f, path, d->writable, false);
	if (r < 0) {
		d->f.fd = -1;
		vd_free(d);
		return vd_err(-r, path, "cannot open: %s", strerror(-r));
	}
	/* One writer, or readers: a running VM's disk cannot be merged, resized or opened by a
	 * second VM underneath it. */
	if (!(flags & VDISK_OPEN_NO_LOCK) && flock(d->f.fd, (d->writable ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		r = errno;
		vd_free(d);
		return vd_err(r == EWOULDBLOCK ? EBUSY : r, path, r == EWOULDBLOCK ? "in use by another process or handle" : "cannot lock: %s",
			      strerror(r));
	}
	uint64_t size = 0;
	vf_size(&d->f, &size);
	unsigned char first[8] = { 0 };
	if (size >= 8)
		vf_pread(&d->f, first, 8, 0);
	open_depth++;
	if (flags & VDISK_OPEN_RAW)
		r = raw_open(d);
	else if (vhdx_probe(first, size >= 8 ? 8 : 0))
		r = vhdx_open(d);
	else if (vhd_probe(&d->f, size))
		r = vhd_open(d);
	else if (vd_format_from_name(path) != VDISK_FORMAT_RAW)
		/* never hand a damaged .vhd/.vhdx to a guest as a raw disk */
		r = vd_corrupt(d, "not a %s file: no '%s' signature", vdisk_format_name(vd_format_from_name(path)),
			       vd_format_from_name(path) == VDISK_FORMAT_VHDX ? "vhdxfile" : "conectix");
	else
		r = raw_open(d);
	open_depth--;
	if (r < 0) {
		if (d->ops && d->priv)
			d->ops->close(d);
		vd_free(d);
		return r;
	}
	*out = d;
	return 0;
}

int vdisk_close(struct vdisk *d)
{
	if (!d)
		return 0;
	int r = d->ops->close(d);
	vd_free(d);
	return r;
}

static int check_io(struct vdisk *d, uint64_t off, uint64_t len, uint32_t align, bool write)
{
	if (write && !d->writable)
		return vd_err(EROFS, d->path, "opened read-only");
	if (off % align || len % align)
		return vd_err(EINVAL, d->path, "I/O at %llu+%llu is not aligned to %u bytes",
			      (unsigned long long)off, (unsigned long long)len, align);
	if (off > d->size || len > d->size - off)
		return vd_err(EINVAL, d->path, "I/O at %llu+%llu is past the end of the %llu-byte disk",
			      (unsigned long long)off, (unsigned long long)len, (unsigned long long)d->size);
	return 0;
}

int vdisk_read(struct vdisk *d, void *buf, uint64_t off, size_t len)
{
	int r = check_io(d, off, len, 512, false);
	return r < 0 ? r : len ? d->ops->read(d, buf, off, len) : 0;
}

int vdisk_write(struct vdisk *d, const void *buf, uint64_t off, size_t len)
{
	int r = check_io(d, off, len, d->logical_sector, true);
	return r < 0 ? r : len ? d->ops->write(d, buf, off, len) : 0;
}

int vdisk_flush(struct vdisk *d)
{
	return d->writable ? d->ops->flush(d) : 0;
}

int vdisk_lock(struct vdisk *d, bool on)
{
	int op = on ? (d->writable ? LOCK_EX : LOCK_SH) | LOCK_NB : LOCK_UN;
	if (flock(d->f.fd, op) == 0)
		return 0;
	int r = errno;
	return vd_err(r == EWOULDBLOCK ? EBUSY : r, d->path, r == EWOULDBLOCK ? "in use by another process or handle" : "cannot lock: %s",
		      strerror(r));
}

int vdisk_discard(struct vdisk *d, uint64_t off, uint64_t len)
{
	if (!d->writable)
		return vd_err(EROFS, d->path, "opened read-only");
	if (off > d->size || len > d->size - off)
		return vd_err(EINVAL, d->path, "discard past the end of the disk");
	uint64_t a = round_up(off, d->logical_sector), b = (off + len) / d->logical_sector * d->logical_sector;
	return b > a ? d->ops->discard(d, a, b - a) : 0;
}

int vdisk_block_status(struct vdisk *d, uint64_t off, uint64_t len, bool *allocated, uint64_t *run)
{
	if (off > d->size || len > d->size - off || len == 0)
		return vd_err(EINVAL, d->path, "block status past the end of the disk");
	return d->ops->block_status(d, off, len, allocated, run);
}

int vdisk_info(struct vdisk *d, struct vdisk_info *out)
{
	memset(out, 0, sizeof(*out));
	out->format = d->format;
	out->type = d->type;
	out->size = d->size;
	vf_size(&d->f, &out->file_size);
	if (d->parent_path)
		snprintf(out->parent_path, sizeof(out->parent_path), "%s", d->parent_path);
	d->ops->info(d, out);
	return 0;
}

uint64_t vdisk_size(const struct vdisk *d)
{
	return d->size;
}

const char *vdisk_path(const struct vdisk *d)
{
	return d->path;
}

int vd_open_parent(struct vdisk *d, const char *const *candidates, int n)
{
	char tried[2048] = "";
	size_t used = 0;
	for (int i = 0; i < n; i++) {
		if (!candidates[i] || !candidates[i][0])
			continue;
		char full[PATH_MAX];
		const char *c = candidates[i];
		if (c[0] != '/') { /* relative to the child's directory */
			const char *slash = strrchr(d->path, '/');
			int dl = slash ? (int)(slash - d->path) : 1;
			snprintf(full, sizeof(full), "%.*s/%s", dl, slash ? d->path : ".", c);
		} else {
			snprintf(full, sizeof(full), "%s", c);
		}
		used += (size_t)snprintf(tried + used, used < sizeof(tried) ? sizeof(tried) - used : 0,
					 "%s%s", used ? ", " : "", full);
		if (used >= sizeof(tried))
			used = sizeof(tried) - 1;
		struct vdisk *p;
		int r = vd_open(full, VDISK_OPEN_NO_LOCK, &p);
		if (r == 0) {
			char real[PATH_MAX];
			d->parent = p;
			d->parent_path = strdup(realpath(full, real) ? real : full);
			return d->parent_path ? 0 : vd_err(ENOMEM, d->path, "out of memory");
		}
		if (r != -ENOENT)
			return r; /* the parent exists but is broken: keep its message */
	}
	return vd_err(ENOENT, d->path, "parent disk not found (tried: %s)", used ? tried : "no path in locator");
}

int vd_read_parent(struct vdisk *d, void *buf, uint64_t off, size_t len)
{
	struct vdisk *p = d->parent;
	size_t n = !p || off >= p->size ? 0 : p->size - off < len ? (size_t)(p->size - off) : len;
	if (n) {
		int r = p->ops->read(p, buf, off, n);
		if (r < 0)
			return r;
	}
	memset((uint8_t *)buf + n, 0, len - n);
	return 0;
}
