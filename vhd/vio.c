#include "vio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vio_sim {
	uint64_t events_left;
	uint64_t events_seen;
	uint64_t rng;
	bool cut;
};

struct vio_pending {
	struct vio_pending *next;
	uint64_t off;
	size_t len;
	unsigned char data[];
};

static struct vio_sim *installed_sim;

int vf_open(struct vfile *f, const char *path, bool writable, bool create)
{
	int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	if (create)
		flags |= O_CREAT | O_EXCL;
	memset(f, 0, sizeof(*f));
	f->fd = open(path, flags, 0644);
	if (f->fd < 0)
		return -errno;
	f->writable = writable;
	f->sim = installed_sim;
	f->pending_tail = &f->pending;
	return 0;
}

static void drop_pending(struct vfile *f)
{
	while (f->pending) {
		struct vio_pending *p = f->pending;
		f->pending = p->next;
		free(p);
	}
	f->pending_tail = &f->pending;
}

void vf_close(struct vfile *f)
{
	if (f->fd < 0)
		return;
	drop_pending(f);
	close(f->fd);
	f->fd = -1;
}

static int raw_pread(int fd, void *buf, size_t len, uint64_t off)
{
	unsigned char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n, len -= (size_t)n, off += (uint64_t)n;
	}
	return 0;
}

static int raw_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const unsigned char *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n, len -= (size_t)n, off += (uint64_t)n;
	}
	return 0;
}

static uint64_t sim_rand(struct vio_sim *s)
{
	s->rng ^= s->rng << 13, s->rng ^= s->rng >> 7, s->rng ^= s->rng << 17;
	return s->rng;
}

/* Counts one write/sync event; at the chosen one, power fails: each unsynced write is
 * lost, kept, or torn at a 512-byte boundary, in the order they were issued. */
static bool sim_event_cuts(struct vfile *f)
{
	struct vio_sim *s = f->sim;
	if (s->cut)
		return true;
	s->events_seen++;
	if (s->events_left == 0 || --s->events_left)
		return false;
	s->cut = true;
	for (struct vio_pending *p = f->pending; p; p = p->next) {
		uint64_t r = sim_rand(s) % 3;
		size_t keep = r == 0 ? 0 : r == 1 ? p->len : (size_t)(sim_rand(s) % (p->len / 512 + 1)) * 512;
		if (keep > p->len)
			keep = p->len;
		if (keep)
			raw_pwrite(f->fd, p->data, keep, p->off);
	}
	drop_pending(f);
	return true;
}

int vf_pread(struct vfile *f, void *buf, size_t len, uint64_t off)
{
	if (!f->sim)
		return raw_pread(f->fd, buf, len, off);
	if (f->sim->cut)
		return -EIO;
	/* The simulated page cache: the file plus unsynced writes, applied in order. */
	uint64_t size = 0; /* vf_size sets it unless it fails; -O3 cannot see that errno != 0 */
	int r = vf_size(f, &size);
	if (r < 0)
		return r;
	if (off + len > size)
		return -ENODATA;
	memset(buf, 0, len);
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	if (off < (uint64_t)st.st_size) {
		size_t n = (size_t)((uint64_t)st.st_size - off < len ? (uint64_t)st.st_size - off : len);
		if ((r = raw_pread(f->fd, buf, n, off)) < 0)
			return r;
	}
	for (struct vio_pending *p = f->pending; p; p = p->next) {
		uint64_t a = p->off > off ? p->off : off;
		uint64_t b = p->off + p->len < off + len ? p->off + p->len : off + len;
		if (a < b)
			memcpy((unsigned char *)buf + (a - off), p->data + (a - p->off), b - a);
	}
	return 0;
}

int vf_pread_pad(struct vfile *f, void *buf, size_t len, uint64_t off)
{
	int r = vf_pread(f, buf, len, off);
	if (r != -ENODATA)
		return r;
	uint64_t size;
	if ((r = vf_size(f, &size)) < 0)
		return r;
	size_t n = off >= size ? 0 : (size_t)(size - off);
	memset((unsigned char *)buf + n, 0, len - n);
	return n ? vf_pread(f, buf, n, off) : 0;
}

int vf_pwrite(struct vfile *f, const void *buf, size_t len, uint64_t off)
{
	if (!f->sim)
		return raw_pwrite(f->fd, buf, len, off);
	if (sim_event_cuts(f))
		return -EIO;
	struct vio_pending *p = malloc(sizeof(*p) + len);
	if (!p)
		return -ENOMEM;
	p->next = NULL, p->off = off, p->len = len;
	memcpy(p->data, buf, len);
	*f->pending_tail = p;
	f->pending_tail = &p->next;
	return 0;
}

int vf_sync(struct vfile *f)
{
	if (f->sim) {
		if (sim_event_cuts(f))
			return -EIO;
		for (struct vio_pending *p = f->pending; p; p = p->next) {
			int r = raw_pwrite(f->fd, p->data, p->len, p->off);
			if (r < 0)
				return r;
		}
		drop_pending(f);
		return 0;
	}
	return fdatasync(f->fd) < 0 ? -errno : 0;
}

int vf_size(struct vfile *f, uint64_t *size)
{
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	for (struct vio_pending *p = f->pending; p; p = p->next)
		if (p->off + p->len > *size)
			*size = p->off + p->len;
	return 0;
}

/* Size changes act at once in the simulator too: a grown file reads as zeros either way. */
int vf_truncate(struct vfile *f, uint64_t size)
{
	if (f->sim && f->sim->cut)
		return -EIO;
	return ftruncate(f->fd, (off_t)size) < 0 ? -errno : 0;
}

int vf_punch(struct vfile *f, uint64_t off, uint64_t len)
{
	if (f->sim)
		return 0;
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

uint64_t vf_allocated(struct vfile *f)
{
	struct stat st;
	return fstat(f->fd, &st) < 0 ? 0 : (uint64_t)st.st_blocks * 512;
}

struct vio_sim *vio_sim_install(uint64_t events, uint64_t seed)
{
	struct vio_sim *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->events_left = events;
	s->rng = seed * 2654435761u + 0x9E3779B97F4A7C15ull;
	installed_sim = s;
	return s;
}

uint64_t vio_sim_remove(struct vio_sim *s, bool *was_cut)
{
	uint64_t n = s->events_seen;
	if (was_cut)
		*was_cut = s->cut;
	if (installed_sim == s)
		installed_sim = NULL;
	free(s);
	return n;
}
