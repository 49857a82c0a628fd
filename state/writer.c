/* The saved-state writer: appends only, so it works on a pipe or socket. A section is built in
 * memory (its length and checksum precede it on disk), then written whole; guest RAM goes out
 * one 2 MiB chunk at a time, compressed on a few threads, so memory use stays at a few chunks
 * per thread whatever the VM's size. */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "internal.h"

/* zstd's fastest regular level: saving must keep up with >= 1 GB/s of guest RAM. */
#define RAM_ZSTD_LEVEL 1

struct compressor;

struct state_writer {
	int fd;
	int error;              /* sticky: the first failure, reported by every later call */
	bool in_section;
	uint32_t type, instance;
	uint16_t version, flags;
	uint8_t *buf;           /* the open section's payload */
	size_t len, cap;
	struct compressor *pages; /* state_writer_pages(): made on first use */
};

static int write_all(struct state_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len) {
		ssize_t n = write(w->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;
			return w->error = state_fail(err, "saved state: write failed: %s",
						     strerror(-err));
		}
		p += n, len -= (size_t)n;
	}
	return 0;
}

static int write_section(struct state_writer *w, uint32_t type, uint32_t instance,
			 uint16_t version, uint16_t flags, const void *payload, size_t len)
{
	struct state_section_header h;
	state_encode_section_header(&h, type, instance, version, flags, payload, len);
	int err = write_all(w, &h, sizeof(h));
	return err ? err : write_all(w, payload, len);
}

int state_writer_open(struct state_writer **out, int fd, const uint8_t digest[STATE_DIGEST_SIZE])
{
	struct state_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return state_fail(-ENOMEM, "saved state: out of memory");
	w->fd = fd;
	struct state_file_header h;
	state_encode_file_header(&h, STATE_FORMAT_MAJOR, STATE_FORMAT_MINOR, digest);
	int err = write_all(w, &h, sizeof(h));
	if (err) {
		free(w);
		return err;
	}
	*out = w;
	return 0;
}

int state_section_begin(struct state_writer *w, uint32_t type, uint32_t instance,
			uint16_t version, uint16_t flags)
{
	if (w->error)
		return w->error;
	/* END and RAM belong to the library: finish() and state_writer_ram() write them. */
	if (w->in_section || !state_section_name(type) || type == STATE_SECTION_END ||
	    type == STATE_SECTION_RAM || type == STATE_SECTION_RAM_CHUNK)
		return w->error = state_fail(-EINVAL, "saved state: cannot begin section 0x%x here",
					     type);
	w->in_section = true;
	w->type = type, w->instance = instance, w->version = version, w->flags = flags;
	w->len = 0;
	return 0;
}

void state_put_bytes(struct state_writer *w, const void *data, size_t len)
{
	if (w->error || (w->in_section && !len))
		return;
	if (!w->in_section || len > STATE_SECTION_MAX - w->len) {
		w->error = state_fail(-EINVAL, "saved state: %s section 0x%x",
				      w->in_section ? "too large" : "no open", w->type);
		return;
	}
	if (w->len + len > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->len + len)
			cap *= 2;
		uint8_t *buf = realloc(w->buf, cap);
		if (!buf) {
			w->error = state_fail(-ENOMEM, "saved state: out of memory");
			return;
		}
		w->buf = buf, w->cap = cap;
	}
	memcpy(w->buf + w->len, data, len);
	w->len += len;
}

void state_put_u8(struct state_writer *w, uint8_t v)
{
	state_put_bytes(w, &v, sizeof(v));
}

void state_put_u16(struct state_writer *w, uint16_t v)
{
	v = htole16(v);
	state_put_bytes(w, &v, sizeof(v));
}

void state_put_u32(struct state_writer *w, uint32_t v)
{
	v = htole32(v);
	state_put_bytes(w, &v, sizeof(v));
}

void state_put_u64(struct state_writer *w, uint64_t v)
{
	v = htole64(v);
	state_put_bytes(w, &v, sizeof(v));
}

int state_section_end(struct state_writer *w)
{
	if (w->error)
		return w->error;
	if (!w->in_section)
		return w->error = state_fail(-EINVAL, "saved state: no open section to end");
	w->in_section = false;
	return write_section(w, w->type, w->instance, w->version, w->flags, w->buf, w->len);
}

static bool page_is_zero(const uint8_t *page)
{
	uint64_t any = 0;
	for (size_t i = 0; i < STATE_PAGE_SIZE; i += 8) {
		uint64_t v;
		memcpy(&v, page + i, 8);
		any |= v;
	}
	return !any;
}

/* A compressor's buffers: one RAM_CHUNK payload and a sparse chunk's pages gathered. */
struct compressor {
	ZSTD_CCtx *cctx;
	uint8_t *payload;
	uint8_t *gather;
};

static int compressor_init(struct compressor *c)
{
	c->cctx = ZSTD_createCCtx();
	c->payload = malloc(state_chunk_payload_max());
	c->gather = malloc(STATE_CHUNK_SIZE);
	if (!c->cctx || !c->payload || !c->gather)
		return state_fail(-ENOMEM, "saved state: out of memory");
	ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, RAM_ZSTD_LEVEL);
	/* The section's CRC-32C already covers the frame. */
	ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0);
	return 0;
}

static void compressor_free(struct compressor *c)
{
	ZSTD_freeCCtx(c->cctx);
	free(c->payload);
	free(c->gather);
}

/* One chunk of pages into c->payload: its length, 0 when every page is zero (no section), or a
 * negative errno. Pure, so chunks compress on several threads with the same bytes out. */
static ssize_t compress_chunk(struct compressor *c, const uint8_t *ram, uint64_t offset, size_t pages)
{
	struct state_ram_chunk *h = (struct state_ram_chunk *)c->payload;
	memset(h, 0, sizeof(*h));
	h->offset = htole64(offset);
	size_t present = 0;
	for (size_t i = 0; i < pages; i++)
		if (!page_is_zero(ram + i * STATE_PAGE_SIZE)) {
			h->present[i / 8] |= (uint8_t)(1u << (i % 8));
			present++;
		}
	if (!present)
		return 0;

	/* One frame of the present pages, which records its content size; a dense chunk is
	 * compressed in place, a sparse one gathered first. */
	const uint8_t *src = ram;
	if (present < pages) {
		uint8_t *dst = c->gather;
		for (size_t i = 0; i < pages; i++)
			if (h->present[i / 8] & (1u << (i % 8))) {
				memcpy(dst, ram + i * STATE_PAGE_SIZE, STATE_PAGE_SIZE);
				dst += STATE_PAGE_SIZE;
			}
		src = c->gather;
	}
	size_t n = ZSTD_compress2(c->cctx, c->payload + sizeof(*h), state_chunk_payload_max() - sizeof(*h), src,
				  present * STATE_PAGE_SIZE);
	if (ZSTD_isError(n))
		return state_fail(-EIO, "saved state: zstd: %s", ZSTD_getErrorName(n));
	return (ssize_t)(sizeof(*h) + n);
}

/* Guest RAM is compressed by up to RAM_THREADS threads while this one writes the chunks out in
 * order: chunk i goes to slot i % nslots, which its compressor may fill only once the writer
 * has written chunk i - nslots from it. Two slots per thread keep every thread busy while one
 * slot waits to be written. */
#define RAM_THREADS 4

struct ram_slot {
	struct compressor c;
	uint64_t chunk;          /* the chunk it holds or is for */
	bool ready;              /* compressed, not yet written */
	ssize_t len;             /* negative: failed, error says why */
	char error[160];
};

struct ram_job {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const uint8_t *ram;
	uint64_t size, nchunks;
	unsigned nthreads, nslots;
	bool stop;               /* the writer failed: compressors quit */
	struct ram_slot slots[2 * RAM_THREADS];
};

struct ram_thread {
	struct ram_job *job;
	unsigned index;
};

static void *compress_thread(void *arg)
{
	struct ram_thread *t = arg;
	struct ram_job *j = t->job;
	for (uint64_t i = t->index; i < j->nchunks; i += j->nthreads) {
		struct ram_slot *slot = &j->slots[i % j->nslots];
		pthread_mutex_lock(&j->lock);
		while (!j->stop && (slot->ready || slot->chunk != i))
			pthread_cond_wait(&j->cond, &j->lock);
		bool stop = j->stop;
		pthread_mutex_unlock(&j->lock);
		if (stop)
			break;
		uint64_t off = i * STATE_CHUNK_SIZE;
		uint64_t span = j->size - off < STATE_CHUNK_SIZE ? j->size - off : STATE_CHUNK_SIZE;
		ssize_t len = compress_chunk(&slot->c, j->ram + off, off, span / STATE_PAGE_SIZE);
		if (len < 0) /* the message is this thread's: the writer's thread reports it */
			snprintf(slot->error, sizeof(slot->error), "%s", state_last_error());
		pthread_mutex_lock(&j->lock);
		slot->len = len;
		slot->ready = true;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
	}
	return NULL;
}

static unsigned ram_threads(uint64_t nchunks)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = cpus > 1 ? (unsigned)cpus : 1;
	if (n > RAM_THREADS)
		n = RAM_THREADS;
	return nchunks < n ? (unsigned)(nchunks ? nchunks : 1) : n;
}

static int write_ram_chunks(struct state_writer *w, const uint8_t *ram, uint64_t size)
{
	struct ram_job *j = calloc(1, sizeof(*j));
	if (!j)
		return state_fail(-ENOMEM, "saved state: out of memory");
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	j->ram = ram, j->size = size;
	j->nchunks = (size + STATE_CHUNK_SIZE - 1) / STATE_CHUNK_SIZE;
	j->nthreads = ram_threads(j->nchunks);
	j->nslots = 2 * j->nthreads;
	int err = 0;
	for (unsigned i = 0; i < j->nslots && !err; i++) {
		j->slots[i].chunk = i;
		err = compressor_init(&j->slots[i].c);
	}
	struct ram_thread threads[RAM_THREADS];
	pthread_t tids[RAM_THREADS];
	unsigned started = 0;
	for (; !err && started < j->nthreads; started++) {
		threads[started] = (struct ram_thread){ j, started };
		if (pthread_create(&tids[started], NULL, compress_thread, &threads[started])) {
			err = state_fail(-EAGAIN, "saved state: cannot start a compression thread");
			break;
		}
	}
	for (uint64_t i = 0; !err && i < j->nchunks; i++) {
		struct ram_slot *slot = &j->slots[i % j->nslots];
		pthread_mutex_lock(&j->lock);
		while (!slot->ready)
			pthread_cond_wait(&j->cond, &j->lock);
		pthread_mutex_unlock(&j->lock);
		if (slot->len < 0)
			err = state_fail((int)slot->len, "%s", slot->error);
		else if (slot->len > 0)
			err = write_section(w, STATE_SECTION_RAM_CHUNK, 0, STATE_RAM_CHUNK_VERSION, 0, slot->c.payload,
					    (size_t)slot->len);
		pthread_mutex_lock(&j->lock);
		slot->ready = false;
		slot->chunk = i + j->nslots;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
	}
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	for (unsigned i = 0; i < j->nslots; i++)
		compressor_free(&j->slots[i].c);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j);
	return err;
}

int state_writer_ram_begin(struct state_writer *w, uint64_t size)
{
	if (w->error)
		return w->error;
	if (w->in_section || size % STATE_PAGE_SIZE)
		return w->error = state_fail(-EINVAL, "saved state: RAM of %llu bytes is not whole "
					     "pages, or a section is open", (unsigned long long)size);
	struct state_ram_header h = {
		.size = htole64(size),
		.page_size = htole32(STATE_PAGE_SIZE),
		.chunk_size = htole32(STATE_CHUNK_SIZE),
		.compression = htole32(STATE_RAM_ZSTD),
	};
	return write_section(w, STATE_SECTION_RAM, 0, STATE_RAM_VERSION, 0, &h, sizeof(h));
}

int state_writer_ram(struct state_writer *w, const void *ram, uint64_t size)
{
	int err = state_writer_ram_begin(w, size);
	if (!err && size)
		err = write_ram_chunks(w, ram, size);
	return err ? (w->error = err) : 0;
}

uint64_t state_page_hash(const void *page)
{
	/* Four independent lanes keep the multiplies in flight: ~GB/s, and 64 bits make a
	 * collision between two versions of one page as good as impossible. */
	uint64_t h[4] = { 1, 2, 3, 4 };
	const uint8_t *p = page;
	for (size_t i = 0; i < STATE_PAGE_SIZE; i += 32)
		for (unsigned l = 0; l < 4; l++) {
			uint64_t v;
			memcpy(&v, p + i + l * 8, 8);
			h[l] = (h[l] ^ v) * 0x9E3779B97F4A7C15ull;
			h[l] ^= h[l] >> 29;
		}
	return h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7);
}

int state_writer_pages(struct state_writer *w, const void *ram, uint64_t size, uint64_t offset,
		       const uint8_t mask[STATE_CHUNK_PAGES / 8], uint64_t *hashes, uint64_t *sent)
{
	if (w->error)
		return w->error;
	if (w->in_section || offset % STATE_CHUNK_SIZE || offset >= size || size % STATE_PAGE_SIZE)
		return w->error = state_fail(-EINVAL, "saved state: pages at %llu of %llu bytes of RAM",
					     (unsigned long long)offset, (unsigned long long)size);
	if (!w->pages) {
		struct compressor *c = calloc(1, sizeof(*c));
		if (!c)
			return w->error = state_fail(-ENOMEM, "saved state: out of memory");
		w->pages = c;
		if (compressor_init(c) < 0)
			return w->error = -ENOMEM;
	}
	uint64_t span = size - offset < STATE_CHUNK_SIZE ? size - offset : STATE_CHUNK_SIZE;
	size_t pages = (size_t)(span / STATE_PAGE_SIZE), nsent = 0, ndata = 0;
	struct state_ram_pages *h = (struct state_ram_pages *)w->pages->payload;
	memset(h->sent, 0, sizeof(h->sent));
	memset(h->data, 0, sizeof(h->data));
	/* The selected pages are copied first: the guest may write them meanwhile, and the copy
	 * is what the zero check, the hash and the frame all see. */
	uint8_t *copy = w->pages->gather;
	for (size_t i = 0; i < pages; i++) {
		if (!(mask[i / 8] & (1u << (i % 8))))
			continue;
		h->sent[i / 8] |= (uint8_t)(1u << (i % 8));
		nsent++;
		memcpy(copy + ndata * STATE_PAGE_SIZE, (const uint8_t *)ram + offset + i * STATE_PAGE_SIZE, STATE_PAGE_SIZE);
		if (hashes)
			hashes[i] = state_page_hash(copy + ndata * STATE_PAGE_SIZE);
		if (!page_is_zero(copy + ndata * STATE_PAGE_SIZE)) {
			h->data[i / 8] |= (uint8_t)(1u << (i % 8));
			ndata++;
		}
	}
	if (!nsent)
		return 0;
	h->offset = htole64(offset);
	size_t len = sizeof(*h);
	if (ndata) {
		size_t n = ZSTD_compress2(w->pages->cctx, w->pages->payload + len, state_chunk_payload_max() - len, copy,
					  ndata * STATE_PAGE_SIZE);
		if (ZSTD_isError(n))
			return w->error = state_fail(-EIO, "saved state: zstd: %s", ZSTD_getErrorName(n));
		len += n;
	}
	int err = write_section(w, STATE_SECTION_RAM_PAGES, 0, STATE_RAM_PAGES_VERSION, 0, w->pages->payload, len);
	if (err)
		return w->error = err;
	if (sent)
		*sent += sizeof(struct state_section_header) + len;
	return (int)nsent;
}

void state_writer_discard(struct state_writer *w)
{
	if (!w)
		return;
	if (w->pages) {
		compressor_free(w->pages);
		free(w->pages);
	}
	free(w->buf);
	free(w);
}

int state_writer_finish(struct state_writer *w)
{
	int err = w->error;
	if (!err && w->in_section)
		err = state_fail(-EINVAL, "saved state: section 0x%x was not ended", w->type);
	if (!err)
		err = write_section(w, STATE_SECTION_END, 0, 0, 0, NULL, 0);
	state_writer_discard(w);
	return err;
}
