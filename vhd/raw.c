/* Raw images: the file is the disk. The virtual size is the file size rounded up to a
 * sector; the unaligned tail reads as zeros. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static int raw_read(struct vdisk *d, void *buf, uint64_t off, size_t len)
{
	uint64_t fsize;
	int r = vf_size(&d->f, &fsize);
	if (r < 0)
		return vd_err(-r, d->path, "stat: %s", strerror(-r));
	size_t n = off >= fsize ? 0 : fsize - off < len ? (size_t)(fsize - off) : len;
	if (n && (r = vf_pread(&d->f, buf, n, off)) < 0)
		return vd_err(r == -ENODATA ? EIO : -r, d->path, "read failed: %s", strerror(-r));
	memset((uint8_t *)buf + n, 0, len - n);
	return 0;
}

static int raw_write(struct vdisk *d, const void *buf, uint64_t off, size_t len)
{
	int r = vf_pwrite(&d->f, buf, len, off);
	return r < 0 ? vd_err(-r, d->path, "write failed: %s", strerror(-r)) : 0;
}

static int raw_flush(struct vdisk *d)
{
	int r = vf_sync(&d->f);
	return r < 0 ? vd_err(-r, d->path, "flush failed: %s", strerror(-r)) : 0;
}

static int raw_discard(struct vdisk *d, uint64_t off, uint64_t len)
{
	vf_punch(&d->f, off, len);
	return 0;
}

/* Holes in the host file are unallocated. */
static int raw_block_status(struct vdisk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run)
{
	off_t data = lseek(d->f.fd, (off_t)off, SEEK_DATA);
	if (data < 0 || (uint64_t)data > off) {
		*alloc = false;
		*run = data < 0 || (uint64_t)data >= off + len ? len : (uint64_t)data - off;
	} else {
		off_t hole = lseek(d->f.fd, (off_t)off, SEEK_HOLE);
		*alloc = true;
		*run = hole < 0 || (uint64_t)hole >= off + len ? len : (uint64_t)hole - off;
	}
	if (*run == 0)
		*run = len;
	*run = *run < 512 ? (len < 512 ? len : 512) : *run / 512 * 512;
	return 0;
}

static void raw_info(struct vdisk *d, struct vdisk_info *out)
{
	out->logical_sector = 512;
	out->physical_sector = 512;
	out->min_size = d->size;
}

static int raw_close(struct vdisk *d)
{
	return d->writable ? raw_flush(d) : 0;
}

static int raw_resize(struct vdisk *d, uint64_t size)
{
	int r = vf_truncate(&d->f, size);
	if (r < 0)
		return vd_err(-r, d->path, "resize failed: %s", strerror(-r));
	d->size = size;
	return 0;
}

static const struct vdisk_ops raw_ops = {
	.read = raw_read,
	.write = raw_write,
	.flush = raw_flush,
	.discard = raw_discard,
	.block_status = raw_block_status,
	.info = raw_info,
	.close = raw_close,
	.resize = raw_resize,
};

int raw_open(struct vdisk *d)
{
	uint64_t size;
	int r = vf_size(&d->f, &size);
	if (r < 0)
		return vd_err(-r, d->path, "stat: %s", strerror(-r));
	d->ops = &raw_ops;
	d->format = VDISK_FORMAT_RAW;
	d->type = VDISK_TYPE_FIXED;
	d->size = round_up(size, 512);
	d->logical_sector = 512;
	return 0;
}

int raw_create(const char *path, const struct vdisk_create_params *p)
{
	struct vfile f;
	int r = vf_open(&f, path, true, true);
	if (r < 0)
		return vd_err(-r, path, "cannot create: %s", strerror(-r));
	if (p->size % 512)
		r = -EINVAL;
	if (r == 0)
		r = vf_truncate(&f, p->size);
	/* "Fixed" raw means allocated on the host; dynamic raw is a sparse file. */
	if (r == 0 && p->type == VDISK_TYPE_FIXED && fallocate(f.fd, 0, 0, (off_t)p->size) < 0 &&
	    errno != EOPNOTSUPP)
		r = -errno;
	if (r == 0)
		r = vf_sync(&f);
	vf_close(&f);
	if (r < 0) {
		unlink(path);
		return vd_err(-r, path, "cannot create: %s", r == -EINVAL ? "size must be a multiple of 512" : strerror(-r));
	}
	return 0;
}
