/* The saved-state reader: reads forward only (a pipe or socket works) and treats the file as
 * hostile. Every header is checksummed before its fields are trusted, every length is capped
 * (STATE_SECTION_MAX, or a chunk's bound), and payload memory grows only as bytes actually
 * arrive, so a forged length cannot make it allocate more than about twice what was sent. */
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

#define READ_STEP (1u << 20)  /* payload bytes read (and allocated) at a time */
#define RAM_WINDOW_LOG 21     /* a chunk's frame needs no window beyond its 2 MiB */

/* A section header as the host sees it, and where it was. */
struct header {
	uint32_t type, instance;
	uint16_t version, flags;
	uint64_t length;
	uint32_t payload_crc;
	uint64_t at;            /* file offset of the header */
};

struct state_reader {
	int fd;
	int error;              /* sticky: a stream that failed once is not read further */
	uint64_t offset;        /* bytes consumed */
	uint16_t minor;
	void (*warn)(void *ctx, const char *message);
	void *warn_ctx;
	uint8_t *buf;           /* the last section's payload */
	size_t cap;
	struct header ahead;    /* read past the RAM chunks; next() returns it */
	bool has_ahead;
	bool ended;
	bool ram_next;          /* the last section returned was RAM: state_reader_ram() may run */
	bool in_ram;            /* RAM chunks may follow */
	bool ram_seen;          /* RAM_PAGES may follow */
	uint64_t ram_size;
	ZSTD_DCtx *pages_dctx;  /* state_reader_pages(): made on first use */
	uint8_t *pages_scratch;
};

static const uint8_t no_payload[1];

static int fail(struct state_reader *r, int err, const char *what, uint64_t at)
{
	return r->error = state_fail(err, "saved state: %s (at byte %llu)", what,
				     (unsigned long long)at);
}

/* len bytes or a failure; running out is truncation, whatever the descriptor is. */
static int read_exact(struct state_reader *r, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(r->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return r->error = state_fail(-errno, "saved state: read failed: %s",
						     strerror(errno));
		if (!n)
			return fail(r, -EBADMSG, "the file is truncated", r->offset);
		p += n, len -= (size_t)n, r->offset += (uint64_t)n;
	}
	return 0;
}

static int read_header(struct state_reader *r, struct header *h)
{
	if (r->has_ahead) {
		r->has_ahead = false;
		*h = r->ahead;
		return 0;
	}
	struct state_section_header raw;
	h->at = r->offset;
	int err = read_exact(r, &raw, sizeof(raw));
	if (err)
		return err;
	if (le32toh(raw.header_crc) !=
	    state_crc32c(0, &raw, offsetof(struct state_section_header, header_crc)))
		return fail(r, -EBADMSG, "corrupt: a section header fails its checksum", h->at);
	h->type = le32toh(raw.type);
	h->instance = le32toh(raw.instance);
	h->version = le16toh(raw.version);
	h->flags = le16toh(raw.flags);
	h->length = le64toh(raw.length);
	h->payload_crc = le32toh(raw.payload_crc);
	if (h->length > STATE_SECTION_MAX)
		return fail(r, -EBADMSG, "corrupt: a section is longer than any valid one", h->at);
	return 0;
}

/* The payload into r->buf, checked against its CRC; max caps its length. */
static int read_payload(struct state_reader *r, const struct header *h, size_t max)
{
	if (h->length > max)
		return fail(r, -EBADMSG, "corrupt: a section is longer than its type allows", h->at);
	for (size_t got = 0; got < h->length;) {
		size_t want = h->length - got < READ_STEP ? h->length - got : READ_STEP;
		if (got + want > r->cap) {
			size_t cap = r->cap * 2 > got + want ? r->cap * 2 : got + want;
			cap = cap < h->length ? cap : h->length;
			uint8_t *buf = realloc(r->buf, cap);
			if (!buf)
				return r->error = state_fail(-ENOMEM, "saved state: out of memory");
			r->buf = buf, r->cap = cap;
		}
		int err = read_exact(r, r->buf + got, want);
		if (err)
			return err;
		got += want;
	}
	const uint8_t *payload = h->length ? r->buf : no_payload;
	if (state_crc32c(0, payload, h->length) != h->payload_crc)
		return fail(r, -EBADMSG, "corrupt: a section's payload fails its checksum", h->at);
	return 0;
}

int state_reader_open(struct state_reader **out, int fd, const struct state_reader_options *o)
{
	struct state_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return state_fail(-ENOMEM, "saved state: out of memory");
	r->fd = fd;
	r->warn = o ? o->warn : NULL;
	r->warn_ctx = o ? o->warn_ctx : NULL;

	struct state_file_header h;
	int err = read_exact(r, &h, sizeof(h));
	if (!err && memcmp(h.magic, STATE_MAGIC, sizeof(h.magic)))
		err = state_fail(-EBADMSG, "saved state: not a Viridian saved-state file");
	/* The version before the checksum: another major may lay out its header differently. */
	if (!err && le16toh(h.major) != STATE_FORMAT_MAJOR)
		err = state_fail(-EPROTONOSUPPORT, "saved state: format version %u.%u is not "
				 "supported (this build reads %u.x)", le16toh(h.major),
				 le16toh(h.minor), STATE_FORMAT_MAJOR);
	if (!err && le32toh(h.header_crc) !=
			    state_crc32c(0, &h, offsetof(struct state_file_header, header_crc)))
		err = state_fail(-EBADMSG, "saved state: corrupt: the file header fails its checksum");
	if (!err && o && o->expected_digest &&
	    memcmp(h.config_digest, o->expected_digest, STATE_DIGEST_SIZE))
		err = state_fail(-ESTALE, "saved state: it was saved from a VM with a different "
				 "configuration (digest mismatch)");
	if (err) {
		free(r);
		return err;
	}
	r->minor = le16toh(h.minor);
	*out = r;
	return 0;
}

uint16_t state_reader_minor(const struct state_reader *r)
{
	return r->minor;
}

/* Decides about a type this build does not know: skip it (1), or fail. */
static int unknown_section(struct state_reader *r, const struct header *h)
{
	if (r->minor <= STATE_FORMAT_MINOR)
		return fail(r, -EBADMSG, "corrupt: a section of unknown type", h->at);
	if (!(h->flags & STATE_SECTION_OPTIONAL)) {
		r->error = state_fail(-EPROTONOSUPPORT, "saved state: it needs section type 0x%x "
				      "of format %u.%u, which this build (%u.%u) cannot restore",
				      h->type, STATE_FORMAT_MAJOR, r->minor, STATE_FORMAT_MAJOR,
				      STATE_FORMAT_MINOR);
		return r->error;
	}
	int err = read_payload(r, h, STATE_SECTION_MAX);
	if (err)
		return err;
	if (r->warn) {
		char msg[160];
		snprintf(msg, sizeof(msg), "saved state: skipped optional section type 0x%x "
			 "(%llu bytes) of format %u.%u", h->type, (unsigned long long)h->length,
			 STATE_FORMAT_MAJOR, r->minor);
		r->warn(r->warn_ctx, msg);
	}
	return 1;
}

static int check_ram_header(struct state_reader *r, const struct header *h)
{
	if (h->version != STATE_RAM_VERSION)
		return r->error = state_fail(-EPROTONOSUPPORT, "saved state: RAM section version %u "
					     "is not supported", h->version);
	struct state_ram_header ram;
	if (h->length != sizeof(ram))
		return fail(r, -EBADMSG, "corrupt: the RAM section has the wrong length", h->at);
	memcpy(&ram, r->buf, sizeof(ram));
	r->ram_size = le64toh(ram.size);
	if (le32toh(ram.page_size) != STATE_PAGE_SIZE ||
	    le32toh(ram.chunk_size) != STATE_CHUNK_SIZE ||
	    le32toh(ram.compression) != STATE_RAM_ZSTD || r->ram_size % STATE_PAGE_SIZE)
		return fail(r, -EBADMSG, "corrupt: the RAM section's layout is not one this "
			    "format defines", h->at);
	return 0;
}

int state_reader_next(struct state_reader *r, struct state_section *sec)
{
	r->ram_next = false;
	for (;;) {
		if (r->error)
			return r->error;
		if (r->ended)
			return 0;
		struct header h;
		int err = read_header(r, &h);
		if (err)
			return err;
		bool chunk = h.type == STATE_SECTION_RAM_CHUNK;
		if (chunk && !r->in_ram)
			return fail(r, -EBADMSG, "corrupt: RAM data outside the RAM section", h.at);
		r->in_ram = chunk;
		if (chunk) {
			/* The caller did not want the RAM: checked and dropped. */
			if ((err = read_payload(r, &h, state_chunk_payload_max())))
				return err;
			continue;
		}
		if (!state_section_name(h.type)) {
			if ((err = unknown_section(r, &h)) < 0)
				return err;
			continue;
		}
		bool pages = h.type == STATE_SECTION_RAM_PAGES;
		if (pages && !r->ram_seen)
			return fail(r, -EBADMSG, "corrupt: RAM pages before the RAM section", h.at);
		if ((err = read_payload(r, &h, pages ? state_chunk_payload_max() : STATE_SECTION_MAX)))
			return err;
		if (h.type == STATE_SECTION_END) {
			if (h.length)
				return fail(r, -EBADMSG, "corrupt: the end section is not empty", h.at);
			r->ended = true;
			return 0;
		}
		if (h.type == STATE_SECTION_RAM) {
			if ((err = check_ram_header(r, &h)))
				return err;
			r->in_ram = r->ram_next = r->ram_seen = true;
		}
		*sec = (struct state_section){
			.type = h.type,
			.instance = h.instance,
			.version = h.version,
			.flags = h.flags,
			.payload = { h.length ? r->buf : no_payload, h.length, 0, false },
		};
		return 1;
	}
}

/* Guest RAM is decompressed on up to RAM_THREADS threads: this thread reads and checks each
 * RAM_CHUNK (header, CRC, offset, bitmap, frame size) and hands its payload over in a slot (a
 * buffer swap, no copy); a decompressor writes the chunk's pages, which no other chunk
 * touches. A failure stops the hand-over; the first one in file order is reported. */
#define RAM_THREADS 4

struct ram_slot {
	uint8_t *buf;            /* the chunk's payload (swapped with r->buf) */
	size_t cap;
	struct state_ram_chunk c;
	uint64_t offset, at;     /* into RAM; of its header in the file */
	size_t pages, present, frame_len;
	bool busy;               /* handed over, not yet decompressed */
};

struct ram_worker {
	struct ram_pool *pool;
	ZSTD_DCtx *dctx;
	uint8_t *scratch;        /* a sparse chunk's pages before they are scattered */
	pthread_t tid;
};

struct ram_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *ram;
	unsigned flags, nslots;
	uint64_t handed, taken;  /* chunks handed over / taken by decompressors, in file order */
	bool stop;
	uint64_t bad_seq, bad_at; /* the first chunk whose frame is corrupt (UINT64_MAX: none) */
	struct ram_slot slots[2 * RAM_THREADS];
	struct ram_worker workers[RAM_THREADS];
	unsigned nworkers, started; /* started with the first chunk: a RAM of zeros needs none */
};

/* Zeros into ram[from, to) unless the caller's region is zero already. */
static void zero(uint8_t *ram, uint64_t from, uint64_t to, unsigned flags)
{
	if (from < to && !(flags & STATE_RAM_ZEROED))
		memset(ram + from, 0, to - from);
}

static bool page_present(const struct state_ram_chunk *c, size_t i)
{
	return c->present[i / 8] & (1u << (i % 8));
}

/* Slot s into guest RAM; false if its frame is corrupt. */
static bool decompress_chunk(struct ram_pool *p, struct ram_slot *s, ZSTD_DCtx *dctx, uint8_t *scratch)
{
	size_t expect = s->present * STATE_PAGE_SIZE;
	uint8_t *dst = s->present == s->pages ? p->ram + s->offset : scratch;
	size_t n = ZSTD_decompressDCtx(dctx, dst, expect, s->buf + sizeof(s->c), s->frame_len);
	if (ZSTD_isError(n) || n != expect)
		return false;
	if (dst == scratch)
		for (size_t i = 0; i < s->pages; i++) {
			uint64_t page = s->offset + i * STATE_PAGE_SIZE;
			if (!page_present(&s->c, i))
				zero(p->ram, page, page + STATE_PAGE_SIZE, p->flags);
			else
				memcpy(p->ram + page, dst, STATE_PAGE_SIZE), dst += STATE_PAGE_SIZE;
		}
	return true;
}

static void *decompress_thread(void *arg)
{
	struct ram_worker *w = arg;
	struct ram_pool *p = w->pool;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->taken == p->handed)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->taken == p->handed)
			break; /* stopped, nothing left */
		uint64_t seq = p->taken++;
		struct ram_slot *s = &p->slots[seq % p->nslots];
		pthread_mutex_unlock(&p->lock);
		bool ok = decompress_chunk(p, s, w->dctx, w->scratch);
		pthread_mutex_lock(&p->lock);
		if (!ok && seq < p->bad_seq)
			p->bad_seq = seq, p->bad_at = s->at;
		s->busy = false;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Checks a RAM_CHUNK's header (its payload in r->buf) into slot s. */
static int check_chunk(struct state_reader *r, const struct header *h, uint64_t *filled, struct ram_slot *s)
{
	if (h->version != STATE_RAM_CHUNK_VERSION)
		return r->error = state_fail(-EPROTONOSUPPORT, "saved state: RAM chunk version %u "
					     "is not supported", h->version);
	int err = read_payload(r, h, state_chunk_payload_max());
	if (err)
		return err;
	if (h->length < sizeof(s->c))
		return fail(r, -EBADMSG, "corrupt: a RAM chunk is too short", h->at);
	memcpy(&s->c, r->buf, sizeof(s->c));
	uint64_t offset = le64toh(s->c.offset);
	if (offset % STATE_CHUNK_SIZE || offset >= r->ram_size || offset < *filled)
		return fail(r, -EBADMSG, "corrupt: a RAM chunk is out of order or outside RAM",
			    h->at);
	uint64_t span = r->ram_size - offset;
	size_t pages = span < STATE_CHUNK_SIZE ? span / STATE_PAGE_SIZE : STATE_CHUNK_PAGES;
	size_t present = 0;
	for (size_t i = 0; i < STATE_CHUNK_PAGES; i++)
		if (page_present(&s->c, i)) {
			if (i >= pages)
				return fail(r, -EBADMSG, "corrupt: a RAM chunk has pages past the end "
					    "of RAM", h->at);
			present++;
		}
	const uint8_t *frame = r->buf + sizeof(s->c);
	size_t frame_len = h->length - sizeof(s->c);
	if (!present || ZSTD_getFrameContentSize(frame, frame_len) != present * STATE_PAGE_SIZE)
		return fail(r, -EBADMSG, "corrupt: a RAM chunk's size does not match its pages",
			    h->at);
	s->offset = offset, s->at = h->at, s->pages = pages, s->present = present, s->frame_len = frame_len;
	*filled = offset + pages * STATE_PAGE_SIZE;
	return 0;
}

static unsigned ram_threads(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus <= 1 ? 1 : cpus >= RAM_THREADS ? RAM_THREADS : (unsigned)cpus;
}

static int start_workers(struct ram_pool *p)
{
	for (; p->started < p->nworkers; p->started++) {
		struct ram_worker *w = &p->workers[p->started];
		*w = (struct ram_worker){ .pool = p, .dctx = ZSTD_createDCtx(), .scratch = malloc(STATE_CHUNK_SIZE) };
		if (w->dctx)
			ZSTD_DCtx_setParameter(w->dctx, ZSTD_d_windowLogMax, RAM_WINDOW_LOG);
		if (!w->dctx || !w->scratch || pthread_create(&w->tid, NULL, decompress_thread, w)) {
			ZSTD_freeDCtx(w->dctx);
			free(w->scratch);
			return state_fail(-ENOMEM, "saved state: cannot start a decompression thread");
		}
	}
	return 0;
}

/* Reads the RAM chunks until the next other section (left in r->ahead). */
static int read_ram_chunks(struct state_reader *r, struct ram_pool *p)
{
	uint64_t filled = 0;
	for (;;) {
		struct header h;
		int err = read_header(r, &h);
		if (err)
			return err;
		if (h.type != STATE_SECTION_RAM_CHUNK) {
			r->ahead = h, r->has_ahead = true;
			break;
		}
		struct ram_slot *s = &p->slots[p->handed % p->nslots];
		pthread_mutex_lock(&p->lock);
		while (s->busy)
			pthread_cond_wait(&p->cond, &p->lock);
		bool bad = p->bad_seq != UINT64_MAX;
		pthread_mutex_unlock(&p->lock);
		if (bad)
			return 0; /* reported by the caller */
		uint64_t gap_from = filled;
		if ((err = check_chunk(r, &h, &filled, s)) || (!p->started && (err = start_workers(p))))
			return err;
		zero(p->ram, gap_from, s->offset, p->flags);
		uint8_t *buf = r->buf;
		size_t cap = r->cap;
		r->buf = s->buf, r->cap = s->cap;
		s->buf = buf, s->cap = cap;
		pthread_mutex_lock(&p->lock);
		s->busy = true;
		p->handed++;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	zero(p->ram, filled, r->ram_size, p->flags);
	return 0;
}

int state_reader_ram(struct state_reader *r, void *ram, uint64_t size, unsigned flags)
{
	if (r->error)
		return r->error;
	if (!r->ram_next)
		return state_fail(-EINVAL, "saved state: no RAM section to read here");
	r->ram_next = false;
	if (size != r->ram_size)
		return r->error = state_fail(-EINVAL, "saved state: it holds %llu bytes of RAM, "
					     "this VM has %llu", (unsigned long long)r->ram_size,
					     (unsigned long long)size);
	struct ram_pool *p = calloc(1, sizeof(*p));
	int err = p ? 0 : state_fail(-ENOMEM, "saved state: out of memory");
	if (p) {
		pthread_mutex_init(&p->lock, NULL);
		pthread_cond_init(&p->cond, NULL);
		p->ram = ram, p->flags = flags, p->nworkers = ram_threads(), p->bad_seq = UINT64_MAX;
		p->nslots = 2 * p->nworkers;
	}
	if (!err)
		err = read_ram_chunks(r, p);
	if (p) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	for (unsigned i = 0; p && i < p->started; i++) {
		pthread_join(p->workers[i].tid, NULL);
		ZSTD_freeDCtx(p->workers[i].dctx);
		free(p->workers[i].scratch);
	}
	if (!err && p->bad_seq != UINT64_MAX)
		err = fail(r, -EBADMSG, "corrupt: a RAM chunk does not decompress", p->bad_at);
	if (p) {
		for (unsigned i = 0; i < p->nslots; i++)
			free(p->slots[i].buf);
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p);
	}
	if (err)
		return r->error = err;
	r->in_ram = false;
	return 0;
}

int state_reader_pages(struct state_reader *r, const struct state_section *sec, void *ram, uint64_t size)
{
	if (r->error)
		return r->error;
	if (sec->type != STATE_SECTION_RAM_PAGES || size != r->ram_size)
		return r->error = state_fail(-EINVAL, "saved state: not a RAM pages section, or RAM of "
					     "%llu bytes for a saved %llu", (unsigned long long)size,
					     (unsigned long long)r->ram_size);
	if (sec->version != STATE_RAM_PAGES_VERSION)
		return r->error = state_fail(-EPROTONOSUPPORT, "saved state: RAM pages version %u is not "
					     "supported", sec->version);
	struct state_ram_pages h;
	if (sec->payload.size < sizeof(h))
		return fail(r, -EBADMSG, "corrupt: a RAM pages section is too short", r->offset);
	memcpy(&h, sec->payload.data, sizeof(h));
	uint64_t offset = le64toh(h.offset);
	if (offset % STATE_CHUNK_SIZE || offset >= size)
		return fail(r, -EBADMSG, "corrupt: RAM pages outside RAM", r->offset);
	uint64_t span = size - offset;
	size_t pages = span < STATE_CHUNK_SIZE ? span / STATE_PAGE_SIZE : STATE_CHUNK_PAGES, ndata = 0;
	for (size_t i = 0; i < STATE_CHUNK_PAGES; i++) {
		bool sent = h.sent[i / 8] & (1u << (i % 8)), data = h.data[i / 8] & (1u << (i % 8));
		if ((sent && i >= pages) || (data && !sent))
			return fail(r, -EBADMSG, "corrupt: RAM pages past the end of RAM, or data for a page "
				    "not sent", r->offset);
		ndata += data;
	}
	const uint8_t *frame = sec->payload.data + sizeof(h);
	size_t frame_len = sec->payload.size - sizeof(h);
	if (ndata ? ZSTD_getFrameContentSize(frame, frame_len) != ndata * STATE_PAGE_SIZE : frame_len != 0)
		return fail(r, -EBADMSG, "corrupt: a RAM pages frame's size does not match its pages", r->offset);
	if (ndata && !r->pages_dctx) {
		r->pages_dctx = ZSTD_createDCtx();
		r->pages_scratch = malloc(STATE_CHUNK_SIZE);
		if (!r->pages_dctx || !r->pages_scratch)
			return r->error = state_fail(-ENOMEM, "saved state: out of memory");
		ZSTD_DCtx_setParameter(r->pages_dctx, ZSTD_d_windowLogMax, RAM_WINDOW_LOG);
	}
	if (ndata) {
		size_t n = ZSTD_decompressDCtx(r->pages_dctx, r->pages_scratch, ndata * STATE_PAGE_SIZE, frame, frame_len);
		if (ZSTD_isError(n) || n != ndata * STATE_PAGE_SIZE)
			return fail(r, -EBADMSG, "corrupt: a RAM pages frame does not decompress", r->offset);
	}
	/* Only once the whole frame is good does RAM change. */
	uint8_t *dst = (uint8_t *)ram + offset;
	const uint8_t *src = r->pages_scratch;
	for (size_t i = 0; i < pages; i++, dst += STATE_PAGE_SIZE) {
		if (!(h.sent[i / 8] & (1u << (i % 8))))
			continue;
		if (h.data[i / 8] & (1u << (i % 8)))
			memcpy(dst, src, STATE_PAGE_SIZE), src += STATE_PAGE_SIZE;
		else
			memset(dst, 0, STATE_PAGE_SIZE);
	}
	return 0;
}

void state_reader_close(struct state_reader *r)
{
	if (!r)
		return;
	ZSTD_freeDCtx(r->pages_dctx);
	free(r->pages_scratch);
	free(r->buf);
	free(r);
}
