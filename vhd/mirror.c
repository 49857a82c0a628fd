/* Live merge: a mirror vdisk over a differencing child and its parent (include/vhd/vdisk.h,
 * vdisk_mirror_*). Reads come from the child, which always holds the truth; writes and discards
 * go to the child, then the parent. The copy pass writes the child's allocated ranges into the
 * parent. Both hold a byte-range lock over what they touch, so the copy's read-then-write of a
 * range cannot interleave with a guest write there: it can never put stale data over newer. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define COPY_CHUNK MiB

struct range {
	uint64_t off, end;
	struct range *next;
};

struct mirror {
	struct vdisk *child, *parent;
	pthread_mutex_t lock;     /* held, failed, error */
	pthread_cond_t released;
	struct range *held;
	int failed;               /* first error on the parent: it is no longer kept equal */
	char error[512];
	bool copied;              /* the copy pass ended with the parent equal to the child */
};

#define M(d) ((struct mirror *)(d)->priv)

static void range_lock(struct mirror *m, struct range *r, uint64_t off, uint64_t len)
{
	r->off = off;
	r->end = off + len;
	pthread_mutex_lock(&m->lock);
	for (bool busy = true; busy;) {
		busy = false;
		for (struct range *h = m->held; h && !busy; h = h->next)
			busy = h->off < r->end && r->off < h->end;
		if (busy)
			pthread_cond_wait(&m->released, &m->lock);
	}
	r->next = m->held;
	m->held = r;
	pthread_mutex_unlock(&m->lock);
}

static void range_unlock(struct mirror *m, struct range *r)
{
	pthread_mutex_lock(&m->lock);
	struct range **p = &m->held;
	while (*p != r)
		p = &(*p)->next;
	*p = r->next;
	pthread_cond_broadcast(&m->released);
	pthread_mutex_unlock(&m->lock);
}

static bool parent_live(struct mirror *m)
{
	pthread_mutex_lock(&m->lock);
	bool live = !m->failed;
	pthread_mutex_unlock(&m->lock);
	return live;
}

/* A parent write failed (r < 0, this thread's vdisk_last_error says why): stop mirroring. The
 * child, which got the data first, stays right; the merge cannot finish. */
static void parent_failed(struct mirror *m, int r)
{
	pthread_mutex_lock(&m->lock);
	if (!m->failed) {
		m->failed = r;
		snprintf(m->error, sizeof(m->error), "%s", vdisk_last_error());
	}
	pthread_mutex_unlock(&m->lock);
}

static int mirror_read(struct vdisk *d, void *buf, uint64_t off, size_t len)
{
	return vdisk_read(M(d)->child, buf, off, len);
}

static int mirror_write(struct vdisk *d, const void *buf, uint64_t off, size_t len)
{
	struct mirror *m = M(d);
	struct range r;
	range_lock(m, &r, off, len);
	int rc = vdisk_write(m->child, buf, off, len);
	if (rc == 0 && parent_live(m)) {
		int p = vdisk_write(m->parent, buf, off, len);
		if (p < 0)
			parent_failed(m, p);
	}
	range_unlock(m, &r);
	return rc;
}

static int mirror_discard(struct vdisk *d, uint64_t off, uint64_t len)
{
	struct mirror *m = M(d);
	struct range r;
	range_lock(m, &r, off, len);
	int rc = vdisk_discard(m->child, off, len);
	if (rc == 0 && parent_live(m)) {
		int p = vdisk_discard(m->parent, off, len);
		if (p < 0)
			parent_failed(m, p);
	}
	range_unlock(m, &r);
	return rc;
}

static int mirror_flush(struct vdisk *d)
{
	struct mirror *m = M(d);
	int rc = vdisk_flush(m->child);
	if (rc == 0 && parent_live(m)) {
		int p = vdisk_flush(m->parent);
		if (p < 0)
			parent_failed(m, p);
	}
	return rc;
}

static int mirror_block_status(struct vdisk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run)
{
	return vdisk_block_status(M(d)->child, off, len, alloc, run);
}

static void mirror_info(struct vdisk *d, struct vdisk_info *out)
{
	vdisk_info(M(d)->child, out);
}

static void state_free(struct vdisk *d)
{
	struct mirror *m = M(d);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->released);
	free(m);
	d->priv = NULL;
}

static void mirror_free(struct vdisk *d)
{
	state_free(d);
	vd_free(d);
}

/* vdisk_close on a mirror: as vdisk_mirror_abort, then the child is closed too. */
static int mirror_close(struct vdisk *d)
{
	struct mirror *m = M(d);
	int p = vdisk_close(m->parent);
	int c = vdisk_close(m->child);
	state_free(d);
	return p < 0 ? p : c;
}

static const struct vdisk_ops mirror_ops = {
	.read = mirror_read,
	.write = mirror_write,
	.flush = mirror_flush,
	.discard = mirror_discard,
	.block_status = mirror_block_status,
	.info = mirror_info,
	.close = mirror_close,
};

int vdisk_mirror_start(struct vdisk *child, struct vdisk **out)
{
	*out = NULL;
	if (child->type != VDISK_TYPE_DIFFERENCING || !child->parent)
		return vd_err(EINVAL, child->path, "is not a differencing disk; nothing to merge");
	if (!child->writable || child->ops == &mirror_ops)
		return vd_err(EINVAL, child->path, child->writable ? "is already being merged" : "opened read-only");
	struct vdisk *p;
	int r = vdisk_open(child->parent_path, VDISK_OPEN_RDWR, &p);
	if (r < 0)
		return r;
	if (p->size != child->size || p->logical_sector != child->logical_sector) {
		vdisk_close(p);
		return vd_err(EINVAL, child->path, "its parent %s has another size or sector size", child->parent_path);
	}
	/* Relink now, before the first merged byte lands: whenever it stops, failed or killed,
	 * the child still opens on the parent and shows the same data. */
	if (p->ops->begin_write && (r = p->ops->begin_write(p)) == 0 && child->ops->relink)
		r = child->ops->relink(child, p);
	struct vdisk *d = r == 0 ? calloc(1, sizeof(*d)) : NULL;
	struct mirror *m = d ? calloc(1, sizeof(*m)) : NULL;
	if (r == 0 && (!m || !(d->path = strdup(child->path)))) {
		free(m);
		m = NULL;
		r = vd_err(ENOMEM, child->path, "out of memory");
	}
	if (r < 0) {
		if (d)
			free(d->path);
		free(d);
		vdisk_close(p);
		return r;
	}
	m->child = child;
	m->parent = p;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->released, NULL);
	pthread_mutex_init(&d->lock, NULL);
	d->ops = &mirror_ops;
	d->f.fd = -1;
	d->writable = true;
	d->format = child->format;
	d->type = child->type;
	d->size = child->size;
	d->logical_sector = child->logical_sector;
	d->priv = m;
	*out = d;
	return 0;
}

int vdisk_mirror_copy(struct vdisk *d, int (*progress)(uint64_t done, uint64_t total, void *ctx), void *ctx)
{
	if (d->ops != &mirror_ops)
		return vd_err(EINVAL, d->path, "is not a mirror");
	struct mirror *m = M(d);
	uint8_t *buf = malloc(COPY_CHUNK);
	int r = buf ? 0 : vd_err(ENOMEM, d->path, "out of memory");
	for (uint64_t off = 0; r == 0 && off < d->size;) {
		uint64_t n = d->size - off < COPY_CHUNK ? d->size - off : COPY_CHUNK, run;
		bool alloc;
		r = vdisk_block_status(m->child, off, n, &alloc, &run);
		if (r == 0 && alloc) {
			struct range lk;
			range_lock(m, &lk, off, run);
			if (parent_live(m) && (r = vdisk_read(m->child, buf, off, run)) == 0 &&
			    (r = vdisk_write(m->parent, buf, off, run)) < 0)
				parent_failed(m, r);
			range_unlock(m, &lk);
		}
		off += run;
		if (r == 0 && !parent_live(m))
			r = -EIO;
		if (r == 0 && progress)
			r = progress(off, d->size, ctx);
	}
	free(buf);
	if (r == 0 && (r = vdisk_flush(m->parent)) < 0)
		parent_failed(m, r);
	pthread_mutex_lock(&m->lock);
	if (m->failed) /* the message may come from another thread's write */
		r = vd_err(-m->failed, d->path, "merge into the parent failed: %s", m->error);
	m->copied = r == 0;
	pthread_mutex_unlock(&m->lock);
	return r;
}

int vdisk_mirror_finish(struct vdisk *d, struct vdisk **parent)
{
	*parent = NULL;
	if (d->ops != &mirror_ops)
		return vd_err(EINVAL, d->path, "is not a mirror");
	struct mirror *m = M(d);
	if (!m->copied || m->failed)
		return vd_err(EINVAL, d->path, "the merge's copy pass has not completed");
	int r = vdisk_flush(m->parent);
	if (r < 0)
		return r;
	/* The child is left for the caller to delete; its data is all in the parent now. */
	vdisk_close(m->child);
	*parent = m->parent;
	mirror_free(d);
	return 0;
}

int vdisk_mirror_abort(struct vdisk *d, struct vdisk **child)
{
	*child = NULL;
	if (d->ops != &mirror_ops)
		return vd_err(EINVAL, d->path, "is not a mirror");
	struct mirror *m = M(d);
	/* The parent holds its own data plus some of the child's, where the child has it too:
	 * child over parent reads as before. */
	int r = vdisk_close(m->parent);
	*child = m->child;
	mirror_free(d);
	return r;
}
