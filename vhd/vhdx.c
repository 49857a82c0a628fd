/* VHDX (MS-VHDX 1.0): fixed, dynamic and differencing images.
 *
 * The whole BAT lives in memory; sector bitmaps load per chunk on first use. Data writes to
 * allocated blocks go straight to the file. Allocation only changes the in-memory BAT and
 * marks its 4 KiB pages dirty; vdisk_flush() makes data durable, then commits the dirty BAT
 * and sector-bitmap pages through the log (entry, sync, in-place writes, sync), so a crash
 * at any point leaves either the old or the new metadata after replay. Each log entry is its
 * own tail, and a new entry never overwrites the previous one, so the newest valid entry is
 * always replayable and never stale. */
#include "internal.h"
#include "vhdx_format.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define GUID_INIT(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                                       \
	{ { (a) & 0xff, ((a) >> 8) & 0xff, ((a) >> 16) & 0xff, ((a) >> 24) & 0xff, (b) & 0xff,  \
	    ((b) >> 8) & 0xff, (c) & 0xff, ((c) >> 8) & 0xff, d0, d1, d2, d3, d4, d5, d6, d7 } }

static const struct guid REGION_BAT = GUID_INIT(0x2DC27766, 0xF623, 0x4200, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08);
static const struct guid REGION_META = GUID_INIT(0x8B7CA206, 0x4790, 0x4B9A, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E);
static const struct guid META_FILE_PARAMS = GUID_INIT(0xCAA16737, 0xFA36, 0x4D43, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B);
static const struct guid META_VDISK_SIZE = GUID_INIT(0x2FA54224, 0xCD1B, 0x4876, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8);
static const struct guid META_PAGE83 = GUID_INIT(0xBECA12AB, 0xB2E6, 0x4523, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46);
static const struct guid META_LOGICAL_SECTOR = GUID_INIT(0x8141BF1D, 0xA96F, 0x4709, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F);
static const struct guid META_PHYSICAL_SECTOR = GUID_INIT(0xCDA348C7, 0x445D, 0x4471, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56);
static const struct guid META_PARENT_LOCATOR = GUID_INIT(0xA8D35F2B, 0xB30B, 0x454D, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C);
static const struct guid LOCATOR_TYPE_VHDX = GUID_INIT(0xB04AEFB7, 0xD19E, 0x4A81, 0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13);

#define LOG_SIZE_DEFAULT MiB
#define LOG_MAX_SIZE (256 * MiB)   /* refuse to load larger logs from hostile files */
#define PAGE 4096u
#define BAT_PER_PAGE (PAGE / 8)

/* A range the log writes: 4 KiB of data, or zeros when data is NULL. */
struct log_page {
	uint64_t off;
	uint64_t len;
	uint8_t *data;
};

struct vhdx {
	struct guid file_write, data_write, log_guid, page83;
	uint64_t hdr_seq;
	int hdr_slot;                /* 0: header 1 is current, 1: header 2 */
	uint64_t log_off;
	uint32_t log_len;
	uint64_t bat_off, bat_len, meta_off, meta_len;
	uint32_t block_size, logical_sector, physical_sector, param_flags;
	uint64_t chunk_ratio, data_blocks, sb_blocks, bat_entries;
	uint64_t *bat;               /* host byte order */
	uint64_t *bat_dirty;         /* one bit per 4 KiB BAT page */
	uint8_t **sb;                /* per chunk: its sector bitmap, loaded on demand */
	uint64_t (*sb_dirty)[4];     /* per chunk: one bit per 4 KiB page of its bitmap */
	uint64_t file_end;           /* next block goes here */
	bool session;                /* this open has rewritten the header (new GUIDs) */
	bool data_session;           /* ... with a new DataWriteGuid: data was written */
	bool meta_dirty;
	uint64_t log_seq;
	uint32_t log_prev_pos, log_prev_len;
	struct log_page *overlay;    /* read-only open of a dirty log: replayed in memory */
	size_t n_overlay;
	/* parent locator */
	struct guid linkage;
	char *loc_relative, *loc_absolute, *loc_volume;
};

static inline struct vhdx *V(struct vdisk *d) { return d->priv; }
static inline bool has_parent(const struct vhdx *v) { return v->param_flags & VHDX_PARAM_HAS_PARENT; }
static inline uint64_t payload_index(const struct vhdx *v, uint64_t blk) { return blk + blk / v->chunk_ratio; }
static inline uint64_t sb_index(const struct vhdx *v, uint64_t chunk) { return chunk * (v->chunk_ratio + 1) + v->chunk_ratio; }
static inline unsigned bat_state(uint64_t e) { return (unsigned)(e & VHDX_BAT_STATE_MASK); }
static inline uint64_t bat_offset(uint64_t e) { return (e >> VHDX_BAT_OFF_SHIFT) * MiB; }

bool vhdx_probe(const unsigned char *first, size_t len)
{
	return len >= 8 && ld_le64(first) == VHDX_SIG_FILE;
}

static void compute_geometry(struct vhdx *v, uint64_t size)
{
	v->chunk_ratio = (VHDX_CHUNK_SECTORS * v->logical_sector) / v->block_size;
	v->data_blocks = div_up(size, v->block_size);
	v->sb_blocks = div_up(v->data_blocks, v->chunk_ratio);
	if (has_parent(v))
		v->bat_entries = v->sb_blocks * (v->chunk_ratio + 1);
	else
		v->bat_entries = v->data_blocks + (v->data_blocks ? (v->data_blocks - 1) / v->chunk_ratio : 0);
}

/* Metadata reads see the in-memory replay of a dirty log when the file is read-only. */
static int meta_read(struct vdisk *d, void *buf, size_t len, uint64_t off)
{
	struct vhdx *v = V(d);
	int r = vf_pread(&d->f, buf, len, off);
	if (r < 0)
		return r;
	for (size_t i = 0; i < v->n_overlay; i++) {
		struct log_page *p = &v->overlay[i];
		uint64_t a = p->off > off ? p->off : off;
		uint64_t b = p->off + p->len < off + len ? p->off + p->len : off + len;
		if (a >= b)
			continue;
		if (p->data)
			memcpy((uint8_t *)buf + (a - off), p->data + (a - p->off), b - a);
		else
			memset((uint8_t *)buf + (a - off), 0, b - a);
	}
	return 0;
}

static int io_err(struct vdisk *d, int r, const char *what)
{
	if (r == -ENODATA)
		return vd_corrupt(d, "file is truncated (reading %s)", what);
	return vd_err(-r, d->path, "%s: %s", what, strerror(-r));
}

/* ---- headers ---- */

static int header_write(struct vdisk *d)
{
	struct vhdx *v = V(d);
	struct vhdx_header h;
	memset(&h, 0, sizeof(h));
	st_le32(&h.signature, VHDX_SIG_HEAD);
	st_le64(&h.sequence, v->hdr_seq + 1);
	memcpy(h.file_write_guid, v->file_write.b, 16);
	memcpy(h.data_write_guid, v->data_write.b, 16);
	memcpy(h.log_guid, v->log_guid.b, 16);
	st_le16(&h.version, 1);
	st_le32(&h.log_length, v->log_len);
	st_le64(&h.log_offset, v->log_off);
	st_le32(&h.checksum, crc32c(0, &h, sizeof(h)));
	int slot = !v->hdr_slot;
	int r = vf_pwrite(&d->f, &h, sizeof(h), slot ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
	if (r == 0)
		r = vf_sync(&d->f);
	if (r < 0)
		return io_err(d, r, "header update");
	v->hdr_seq++;
	v->hdr_slot = slot;
	return 0;
}

/* First modification in this open: new file/data GUIDs and a fresh log (spec 2.2.2.1). */
/* The first change of this open rewrites the header: a new FileWriteGuid, and a new
 * DataWriteGuid once user-visible data changes (data). Metadata alone (a parent locator) keeps
 * the DataWriteGuid, so the children of a relinked disk still link to it (VHDX 2.2.2). */
static int session_begin(struct vdisk *d, bool data)
{
	struct vhdx *v = V(d);
	if (v->session && (!data || v->data_session))
		return 0;
	bool first = !v->session;
	if (first) {
		guid_generate(&v->file_write);
		guid_generate(&v->log_guid);
	}
	if (data)
		guid_generate(&v->data_write);
	int r = header_write(d);
	if (r < 0)
		return r;
	if (first) {
		v->log_seq = 1;
		v->log_prev_pos = 0;
		v->log_prev_len = 0;
	}
	if (data)
		__atomic_store_n(&v->data_session, true, __ATOMIC_RELEASE);
	__atomic_store_n(&v->session, true, __ATOMIC_RELEASE);
	return 0;
}

/* ---- the log ---- */

/* Copies the entry at log position pos (wrapping) into out (entry_len bytes). */
static void log_gather(const uint8_t *log, uint32_t log_len, uint32_t pos, uint8_t *out, uint32_t len)
{
	uint32_t first = log_len - pos < len ? log_len - pos : len;
	memcpy(out, log + pos, first);
	memcpy(out + first, log, len - first);
}

struct log_entry_info {
	uint64_t seq;
	uint32_t len, tail;
	uint64_t flushed, last;
};

/* Validates the entry at pos. Returns a malloc'd copy of it, or NULL if it is not valid. */
static uint8_t *log_entry_check(const struct vhdx *v, const uint8_t *log, uint32_t pos,
				struct log_entry_info *info)
{
	const struct vhdx_log_header *h = (const void *)(log + pos);
	if (ld_le32(&h->signature) != VHDX_SIG_LOGE)
		return NULL;
	uint32_t len = ld_le32(&h->entry_length), tail = ld_le32(&h->tail);
	uint32_t count = ld_le32(&h->descriptor_count);
	if (len < PAGE || len % PAGE || len > v->log_len || tail % PAGE || tail >= v->log_len ||
	    memcmp(h->log_guid, v->log_guid.b, 16) || count > (v->log_len / 32))
		return NULL;
	uint64_t desc_bytes = 64 + 32ULL * count;
	uint64_t desc_sectors = div_up(desc_bytes, PAGE);
	if (desc_sectors * PAGE > len)
		return NULL;
	uint8_t *e = malloc(len);
	if (!e)
		return NULL;
	log_gather(log, v->log_len, pos, e, len);
	uint32_t want = ld_le32(e + 4);
	st_le32(e + 4, 0);
	bool ok = crc32c(0, e, len) == want;
	st_le32(e + 4, want);
	uint64_t seq = ld_le64(&h->sequence), data_sectors = 0;
	for (uint32_t i = 0; ok && i < count; i++) {
		const struct vhdx_log_desc *ds = (const void *)(e + 64 + 32ULL * i);
		uint32_t sig = ld_le32(&ds->signature);
		uint64_t foff = ld_le64(&ds->file_offset);
		ok = ld_le64(&ds->sequence) == seq && foff % PAGE == 0 && foff < (1ULL << 62);
		if (sig == VHDX_SIG_DESC) {
			uint64_t at = (desc_sectors + data_sectors++) * PAGE;
			if (at + PAGE > len) {
				ok = false;
				break;
			}
			const struct vhdx_log_data *dd = (const void *)(e + at);
			ok = ok && ld_le32(&dd->signature) == VHDX_SIG_DATA &&
			     ld_le32(&dd->sequence_high) == (uint32_t)(seq >> 32) &&
			     ld_le32(&dd->sequence_low) == (uint32_t)seq;
		} else if (sig == VHDX_SIG_ZERO) {
			uint64_t zl = ld_le64(&ds->leading_bytes);
			ok = ok && zl % PAGE == 0 && zl < (1ULL << 40);
		} else {
			ok = false;
		}
	}
	if (!ok || (desc_sectors + data_sectors) * PAGE != len) {
		free(e);
		return NULL;
	}
	info->seq = seq, info->len = len, info->tail = tail;
	info->flushed = ld_le64(&h->flushed_file_offset);
	info->last = ld_le64(&h->last_file_offset);
	return e;
}

/* Appends the writes of one valid entry to the replay list. */
static int log_entry_pages(struct vdisk *d, const uint8_t *e, struct log_page **pages, size_t *n)
{
	uint32_t count = ld_le32(e + offsetof(struct vhdx_log_header, descriptor_count));
	uint64_t desc_sectors = div_up(64 + 32ULL * count, PAGE), data_i = 0;
	struct log_page *p = realloc(*pages, (*n + count) * sizeof(*p));
	if (!p && count)
		return vd_err(ENOMEM, d->path, "out of memory replaying the log");
	*pages = p;
	for (uint32_t i = 0; i < count; i++) {
		const struct vhdx_log_desc *ds = (const void *)(e + 64 + 32ULL * i);
		struct log_page *lp = &p[(*n)++];
		lp->off = ld_le64(&ds->file_offset);
		if (ld_le32(&ds->signature) == VHDX_SIG_ZERO) {
			lp->len = ld_le64(&ds->leading_bytes);
			lp->data = NULL;
		} else {
			const uint8_t *sec = e + (desc_sectors + data_i++) * PAGE;
			lp->len = PAGE;
			lp->data = malloc(PAGE);
			if (!lp->data)
				return vd_err(ENOMEM, d->path, "out of memory replaying the log");
			memcpy(lp->data, &ds->leading_bytes, 8);
			memcpy(lp->data + 8, sec + 8, PAGE - 12);
			memcpy(lp->data + PAGE - 4, &ds->trailing_bytes, 4);
		}
		bool in_log = lp->off < V(d)->log_off + V(d)->log_len && lp->off + lp->len > V(d)->log_off;
		if (lp->off < MiB || in_log)
			return vd_corrupt(d, "log entry writes to offset %llu, inside the file's own headers or log",
					  (unsigned long long)lp->off);
	}
	return 0;
}

static void pages_free(struct log_page *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(p[i].data);
	free(p);
}

/* Finds the active sequence (the valid entry with the highest sequence number, back to its
 * tail) and returns the writes it holds, in order. */
static int log_load(struct vdisk *d, uint64_t file_size, struct log_page **pages, size_t *n,
		    uint64_t *last_file_offset)
{
	struct vhdx *v = V(d);
	*pages = NULL, *n = 0, *last_file_offset = 0;
	uint8_t *log = malloc(v->log_len);
	if (!log)
		return vd_err(ENOMEM, d->path, "out of memory reading the log");
	int r = vf_pread(&d->f, log, v->log_len, v->log_off);
	if (r < 0) {
		free(log);
		return io_err(d, r, "log");
	}
	struct log_entry_info head = { 0 }, info;
	uint32_t head_pos = 0;
	bool found = false;
	for (uint32_t pos = 0; pos < v->log_len; pos += PAGE) {
		uint8_t *e = log_entry_check(v, log, pos, &info);
		if (e && (!found || info.seq > head.seq))
			head = info, head_pos = pos, found = true;
		free(e);
	}
	if (!found) { /* LogGuid set but nothing written under it: nothing to replay */
		free(log);
		return 0;
	}
	if (file_size < head.flushed)
		r = vd_corrupt(d, "log says the file was flushed at %llu bytes but it has %llu: the file was truncated",
			       (unsigned long long)head.flushed, (unsigned long long)file_size);
	/* Walk tail -> head; each entry must be valid and numbered one past the previous. */
	uint32_t pos = head.tail;
	uint64_t expect = 0;
	for (uint32_t steps = 0; r == 0; steps++) {
		uint8_t *e = steps <= v->log_len / PAGE ? log_entry_check(v, log, pos, &info) : NULL;
		if (!e || (steps && info.seq != expect) || info.seq > head.seq) {
			free(e);
			r = vd_corrupt(d, "log sequence from tail %u to head %u is broken", head.tail, head_pos);
			break;
		}
		r = log_entry_pages(d, e, pages, n);
		free(e);
		if (pos == head_pos)
			break;
		expect = info.seq + 1;
		pos = (uint32_t)((pos + info.len) % v->log_len);
	}
	free(log);
	if (r < 0) {
		pages_free(*pages, *n);
		*pages = NULL, *n = 0;
		return r;
	}
	*last_file_offset = head.last;
	return 0;
}

/* Writes replayed pages in place (read-write open of a file with a dirty log). */
static int log_apply_pages(struct vdisk *d, struct log_page *p, size_t n, uint64_t last_off)
{
	static const uint8_t zeros[PAGE];
	uint64_t size;
	int r = vf_size(&d->f, &size);
	if (r == 0 && last_off > size)
		r = vf_truncate(&d->f, last_off);
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (p[i].data) {
			r = vf_pwrite(&d->f, p[i].data, PAGE, p[i].off);
			continue;
		}
		for (uint64_t o = 0; r == 0 && o < p[i].len; o += PAGE)
			r = vf_pwrite(&d->f, zeros, PAGE, p[i].off + o);
	}
	if (r == 0)
		r = vf_sync(&d->f);
	return r < 0 ? io_err(d, r, "log replay") : 0;
}

/* Commits 4 KiB metadata pages: log entry, sync, in-place writes, sync. */
static int log_commit(struct vdisk *d, struct log_page *pages, size_t n)
{
	struct vhdx *v = V(d);
	uint32_t max_len = (v->log_len / 3) / PAGE * PAGE;
	while (n) {
		/* as many pages as fit in a third of the log, with their descriptor sectors */
		size_t k = 0;
		uint64_t len = 0;
		while (k < n) {
			uint64_t l = (div_up(64 + 32 * (k + 1), PAGE) + k + 1) * PAGE;
			if (l > max_len)
				break;
			k++, len = l;
		}
		if (k == 0)
			return vd_err(EINVAL, d->path, "log too small to commit metadata");
		uint64_t desc_sectors = len / PAGE - k;
		uint8_t *e = calloc(1, len);
		if (!e)
			return vd_err(ENOMEM, d->path, "out of memory writing the log");
		uint32_t pos = v->log_prev_pos + v->log_prev_len;
		if (pos + len > v->log_len)
			pos = 0;
		uint64_t fsize;
		int r = vf_size(&d->f, &fsize);
		struct vhdx_log_header *h = (void *)e;
		st_le32(&h->signature, VHDX_SIG_LOGE);
		st_le32(&h->entry_length, (uint32_t)len);
		st_le32(&h->tail, pos);
		st_le64(&h->sequence, v->log_seq);
		st_le32(&h->descriptor_count, (uint32_t)k);
		memcpy(h->log_guid, v->log_guid.b, 16);
		st_le64(&h->flushed_file_offset, fsize);
		st_le64(&h->last_file_offset, fsize);
		for (size_t i = 0; i < k; i++) {
			struct vhdx_log_desc *ds = (void *)(e + 64 + 32 * i);
			struct vhdx_log_data *dd = (void *)(e + (desc_sectors + i) * PAGE);
			const uint8_t *src = pages[i].data;
			st_le32(&ds->signature, VHDX_SIG_DESC);
			memcpy(&ds->trailing_bytes, src + PAGE - 4, 4);
			memcpy(&ds->leading_bytes, src, 8);
			st_le64(&ds->file_offset, pages[i].off);
			st_le64(&ds->sequence, v->log_seq);
			st_le32(&dd->signature, VHDX_SIG_DATA);
			st_le32(&dd->sequence_high, (uint32_t)(v->log_seq >> 32));
			memcpy(dd->data, src + 8, sizeof(dd->data));
			st_le32(&dd->sequence_low, (uint32_t)v->log_seq);
		}
		st_le32(&h->checksum, crc32c(0, e, len));
		if (r == 0)
			r = vf_pwrite(&d->f, e, len, v->log_off + pos);
		free(e);
		if (r == 0)
			r = vf_sync(&d->f);
		for (size_t i = 0; r == 0 && i < k; i++)
			r = vf_pwrite(&d->f, pages[i].data, PAGE, pages[i].off);
		if (r == 0)
			r = vf_sync(&d->f);
		if (r < 0)
			return io_err(d, r, "log commit");
		v->log_prev_pos = pos;
		v->log_prev_len = (uint32_t)len;
		v->log_seq++;
		pages += k, n -= k;
	}
	return 0;
}

/* ---- metadata region ---- */

static int build_locator(const struct vhdx *v, uint8_t *out, size_t cap)
{
	char linkage[39];
	guid_format(&v->linkage, linkage);
	const char *keys[3] = { "parent_linkage", "relative_path", "absolute_win32_path" };
	const char *vals[3] = { linkage, v->loc_relative, v->loc_absolute };
	int count = 0;
	for (int i = 0; i < 3; i++)
		count += vals[i] && vals[i][0];
	size_t o = sizeof(struct vhdx_locator_header) + 12 * (size_t)count;
	if (o > cap)
		return -1;
	memset(out, 0, o);
	memcpy(out, LOCATOR_TYPE_VHDX.b, 16);
	st_le16(out + 18, (uint16_t)count);
	int idx = 0;
	for (int i = 0; i < 3; i++) {
		if (!vals[i] || !vals[i][0])
			continue;
		uint8_t *ent = out + sizeof(struct vhdx_locator_header) + 12 * idx++;
		int kl = utf8_to_utf16(keys[i], false, out + o, cap - o);
		if (kl < 0)
			return -1;
		st_le32(ent, (uint32_t)o);
		st_le16(ent + 8, (uint16_t)kl);
		o += (size_t)kl;
		char tmp[PATH_MAX];
		snprintf(tmp, sizeof(tmp), "%s", vals[i]);
		if (i)
			path_to_windows(tmp);
		int vl = utf8_to_utf16(tmp, false, out + o, cap - o);
		if (vl <= 0 || vl > 0xffff)
			return -1;
		st_le32(ent + 4, (uint32_t)o);
		st_le16(ent + 10, (uint16_t)vl);
		o += (size_t)vl;
	}
	return (int)o;
}

/* Builds the metadata region's first part (table + items) into buf (meta_len bytes). */
static int build_metadata(const struct vhdx *v, uint64_t size, uint8_t *buf, size_t cap)
{
	memset(buf, 0, cap);
	struct vhdx_meta_header *mh = (void *)buf;
	st_le64(&mh->signature, VHDX_SIG_META);
	uint32_t at = VHDX_META_TABLE_SIZE;
	int n = 0;
	uint8_t item[8];
#define ADD_ITEM(guid, data, len, fl)                                                         \
	do {                                                                                     \
		struct vhdx_meta_entry *me = (void *)(buf + 32 + 32 * n++);                      \
		memcpy(me->item_id, (guid).b, 16);                                               \
		st_le32(&me->offset, at);                                                        \
		st_le32(&me->length, (uint32_t)(len));                                           \
		st_le32(&me->flags, (fl));                                                    \
		memmove(buf + at, (data), (len));                                                \
		at += (uint32_t)round_up((len), 8);                                              \
	} while (0)
	st_le32(item, v->block_size);
	st_le32(item + 4, v->param_flags);
	ADD_ITEM(META_FILE_PARAMS, item, 8, VHDX_META_IS_REQUIRED);
	st_le64(item, size);
	ADD_ITEM(META_VDISK_SIZE, item, 8, VHDX_META_IS_REQUIRED | VHDX_META_IS_VDISK);
	ADD_ITEM(META_PAGE83, v->page83.b, 16, VHDX_META_IS_REQUIRED | VHDX_META_IS_VDISK);
	st_le32(item, v->logical_sector);
	ADD_ITEM(META_LOGICAL_SECTOR, item, 4, VHDX_META_IS_REQUIRED | VHDX_META_IS_VDISK);
	st_le32(item, v->physical_sector);
	ADD_ITEM(META_PHYSICAL_SECTOR, item, 4, VHDX_META_IS_REQUIRED | VHDX_META_IS_VDISK);
	if (has_parent(v)) {
		int l = build_locator(v, buf + at, cap - at);
		if (l < 0)
			return -1;
		ADD_ITEM(META_PARENT_LOCATOR, buf + at, (uint32_t)l, VHDX_META_IS_REQUIRED);
	}
#undef ADD_ITEM
	st_le16(&mh->entry_count, (uint16_t)n);
	return (int)at;
}

static int parse_locator(struct vdisk *d, const uint8_t *it, uint32_t len)
{
	struct vhdx *v = V(d);
	if (len < sizeof(struct vhdx_locator_header))
		return vd_corrupt(d, "parent locator is %u bytes, too short", len);
	if (memcmp(it, LOCATOR_TYPE_VHDX.b, 16))
		return vd_corrupt(d, "parent locator has an unknown locator type");
	uint16_t count = ld_le16(it + 18);
	if (sizeof(struct vhdx_locator_header) + 12ULL * count > len)
		return vd_corrupt(d, "parent locator claims %u entries, more than fit in %u bytes", count, len);
	bool linkage = false;
	for (uint16_t i = 0; i < count; i++) {
		const uint8_t *ent = it + sizeof(struct vhdx_locator_header) + 12 * i;
		uint32_t ko = ld_le32(ent), vo = ld_le32(ent + 4);
		uint16_t kl = ld_le16(ent + 8), vl = ld_le16(ent + 10);
		if ((uint64_t)ko + kl > len || (uint64_t)vo + vl > len || kl % 2 || vl % 2 || !kl)
			return vd_corrupt(d, "parent locator entry %u points outside the locator", i);
		char key[64], val[PATH_MAX];
		if (utf16_to_utf8(it + ko, kl, false, key, sizeof(key)) < 0 ||
		    utf16_to_utf8(it + vo, vl, false, val, sizeof(val)) < 0)
			continue; /* a key we could not decode is not one we use */
		char **dst = NULL;
		if (!strcmp(key, "parent_linkage")) {
			if (!guid_parse(val, &v->linkage))
				return vd_corrupt(d, "parent_linkage '%s' is not a GUID", val);
			linkage = true;
		} else if (!strcmp(key, "relative_path")) {
			dst = &v->loc_relative;
		} else if (!strcmp(key, "absolute_win32_path")) {
			dst = &v->loc_absolute;
		} else if (!strcmp(key, "volume_path")) {
			dst = &v->loc_volume;
		}
		if (dst) {
			path_from_windows(val);
			free(*dst);
			*dst = strdup(val);
		}
	}
	if (!linkage)
		return vd_corrupt(d, "parent locator has no parent_linkage");
	if (!v->loc_relative && !v->loc_absolute && !v->loc_volume)
		return vd_corrupt(d, "parent locator names no parent path");
	return 0;
}

static int parse_metadata(struct vdisk *d, uint64_t *size_out)
{
	struct vhdx *v = V(d);
	uint8_t *t = malloc(VHDX_META_TABLE_SIZE);
	if (!t)
		return vd_err(ENOMEM, d->path, "out of memory");
	int r = meta_read(d, t, VHDX_META_TABLE_SIZE, v->meta_off);
	if (r < 0) {
		free(t);
		return io_err(d, r, "metadata table");
	}
	const struct vhdx_meta_header *mh = (const void *)t;
	uint16_t count = ld_le16(&mh->entry_count);
	if (ld_le64(&mh->signature) != VHDX_SIG_META)
		r = vd_corrupt(d, "metadata table signature is wrong");
	else if (count > VHDX_MAX_META)
		r = vd_corrupt(d, "metadata table has %u entries (at most %u)", count, VHDX_MAX_META);
	bool seen[6] = { false };
	const struct guid *known[6] = { &META_FILE_PARAMS, &META_VDISK_SIZE, &META_PAGE83,
					&META_LOGICAL_SECTOR, &META_PHYSICAL_SECTOR, &META_PARENT_LOCATOR };
	const uint32_t want_len[5] = { 8, 8, 16, 4, 4 };
	uint64_t size = 0;
	for (uint16_t i = 0; r == 0 && i < count; i++) {
		const struct vhdx_meta_entry *me = (const void *)(t + 32 + 32 * i);
		uint32_t off = ld_le32(&me->offset), len = ld_le32(&me->length);
		uint32_t flags = ld_le32(&me->flags);
		int k = 0;
		while (k < 6 && memcmp(me->item_id, known[k]->b, 16))
			k++;
		if (k == 6) {
			if (flags & VHDX_META_IS_REQUIRED)
				r = vd_corrupt(d, "metadata item %u is required but unknown to this reader", i);
			continue;
		}
		if (seen[k]) {
			r = vd_corrupt(d, "metadata item %u is a duplicate", i);
			break;
		}
		seen[k] = true;
		if (len && (off < VHDX_META_TABLE_SIZE || (uint64_t)off + len > v->meta_len)) {
			r = vd_corrupt(d, "metadata item %u lies outside the metadata region", i);
			break;
		}
		if (k < 5 && len != want_len[k]) {
			r = vd_corrupt(d, "metadata item %u has length %u, expected %u", i, len, want_len[k]);
			break;
		}
		if (k == 5 && (len == 0 || len > 65536)) {
			r = vd_corrupt(d, "parent locator length %u is invalid", len);
			break;
		}
		uint8_t *item = malloc(len ? len : 1);
		if (!item) {
			r = vd_err(ENOMEM, d->path, "out of memory");
			break;
		}
		r = meta_read(d, item, len, v->meta_off + off);
		if (r < 0) {
			free(item);
			r = io_err(d, r, "metadata item");
			break;
		}
		switch (k) {
		case 0:
			v->block_size = ld_le32(item);
			v->param_flags = ld_le32(item + 4);
			break;
		case 1: size = ld_le64(item); break;
		case 2: memcpy(v->page83.b, item, 16); break;
		case 3: v->logical_sector = ld_le32(item); break;
		case 4: v->physical_sector = ld_le32(item); break;
		case 5: r = parse_locator(d, item, len); break;
		}
		free(item);
	}
	free(t);
	if (r < 0)
		return r;
	static const char *const names[5] = { "file parameters", "virtual disk size", "page 83 data",
					      "logical sector size", "physical sector size" };
	for (int k = 0; k < 5; k++)
		if (!seen[k])
			return vd_corrupt(d, "metadata item '%s' is missing", names[k]);
	if (!is_pow2(v->block_size) || v->block_size < MiB || v->block_size > 256 * MiB)
		return vd_corrupt(d, "block size %u is not a power of two from 1 MiB to 256 MiB", v->block_size);
	if (v->logical_sector != 512 && v->logical_sector != 4096)
		return vd_corrupt(d, "logical sector size %u is not 512 or 4096", v->logical_sector);
	if (v->physical_sector != 512 && v->physical_sector != 4096)
		return vd_corrupt(d, "physical sector size %u is not 512 or 4096", v->physical_sector);
	if (size == 0 || size > VDISK_VHDX_MAX_SIZE || size % v->logical_sector)
		return vd_corrupt(d, "virtual size %llu is zero, over 64 TiB or not a multiple of the sector size",
				  (unsigned long long)size);
	if (has_parent(v) != seen[5])
		return vd_corrupt(d, has_parent(v) ? "differencing disk has no parent locator"
						   : "parent locator present but HasParent is not set");
	*size_out = size;
	return 0;
}

/* ---- open ---- */

static int read_headers(struct vdisk *d, uint64_t file_size)
{
	struct vhdx *v = V(d);
	struct vhdx_header h[2];
	bool ok[2];
	for (int i = 0; i < 2; i++) {
		int r = vf_pread(&d->f, &h[i], sizeof(h[i]), i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
		uint32_t want = ld_le32(&h[i].checksum);
		st_le32(&h[i].checksum, 0);
		ok[i] = r == 0 && ld_le32(&h[i].signature) == VHDX_SIG_HEAD &&
			crc32c(0, &h[i], sizeof(h[i])) == want;
	}
	if (!ok[0] && !ok[1])
		return vd_corrupt(d, "neither VHDX header is valid (bad signature or CRC-32C)");
	int cur = !ok[0] ? 1 : !ok[1] ? 0 : ld_le64(&h[1].sequence) > ld_le64(&h[0].sequence);
	struct vhdx_header *c = &h[cur];
	if (ld_le16(&c->version) != 1 || ld_le16(&c->log_version) != 0)
		return vd_corrupt(d, "VHDX version %u / log version %u is not supported",
				  ld_le16(&c->version), ld_le16(&c->log_version));
	v->hdr_slot = cur;
	v->hdr_seq = ld_le64(&c->sequence);
	memcpy(v->file_write.b, c->file_write_guid, 16);
	memcpy(v->data_write.b, c->data_write_guid, 16);
	memcpy(v->log_guid.b, c->log_guid, 16);
	v->log_len = ld_le32(&c->log_length);
	v->log_off = ld_le64(&c->log_offset);
	if (v->log_len == 0 || v->log_len % MiB || v->log_off % MiB || v->log_off < MiB ||
	    v->log_len > LOG_MAX_SIZE || v->log_off + v->log_len > file_size)
		return vd_corrupt(d, "log at %llu length %u is misaligned, too large or past the end of the file",
				  (unsigned long long)v->log_off, v->log_len);
	return 0;
}

static int read_regions(struct vdisk *d, uint64_t file_size)
{
	struct vhdx *v = V(d);
	uint8_t *t = malloc(VHDX_REGION_SIZE);
	if (!t)
		return vd_err(ENOMEM, d->path, "out of memory");
	int r = -EINVAL;
	for (int copy = 0; copy < 2 && r < 0; copy++) {
		if (vf_pread(&d->f, t, VHDX_REGION_SIZE, copy ? VHDX_REGION2_OFF : VHDX_REGION1_OFF) < 0)
			continue;
		uint32_t want = ld_le32(t + 4);
		st_le32(t + 4, 0);
		if (ld_le32(t) == VHDX_SIG_REGI && crc32c(0, t, VHDX_REGION_SIZE) == want)
			r = 0;
	}
	if (r < 0) {
		free(t);
		return vd_corrupt(d, "neither region table is valid (bad signature or CRC-32C)");
	}
	uint32_t count = ld_le32(t + 8);
	if (count > VHDX_MAX_REGIONS)
		r = vd_corrupt(d, "region table has %u entries (at most %u)", count, VHDX_MAX_REGIONS);
	bool bat = false, meta = false;
	for (uint32_t i = 0; r == 0 && i < count; i++) {
		const struct vhdx_region_entry *re = (const void *)(t + 16 + 32 * i);
		uint64_t off = ld_le64(&re->file_offset), len = ld_le32(&re->length);
		bool is_bat = !memcmp(re->guid, REGION_BAT.b, 16), is_meta = !memcmp(re->guid, REGION_META.b, 16);
		if (!is_bat && !is_meta) {
			if (ld_le32(&re->required) & 1)
				r = vd_corrupt(d, "region %u is required but unknown to this reader", i);
			continue;
		}
		if (off % MiB || len % MiB || off < MiB || len == 0 || off + len > file_size ||
		    (off < v->log_off + v->log_len && off + len > v->log_off) || (is_bat ? bat : meta)) {
			r = vd_corrupt(d, "%s region at %llu length %llu is misaligned, duplicated, overlaps the log or lies past the end of the file",
				       is_bat ? "BAT" : "metadata", (unsigned long long)off, (unsigned long long)len);
			break;
		}
		if (is_bat)
			v->bat_off = off, v->bat_len = len, bat = true;
		else
			v->meta_off = off, v->meta_len = len, meta = true;
	}
	free(t);
	if (r == 0 && (!bat || !meta))
		r = vd_corrupt(d, "region table lacks the %s region", bat ? "metadata" : "BAT");
	if (r == 0 && v->bat_off < v->meta_off + v->meta_len && v->bat_off + v->bat_len > v->meta_off)
		r = vd_corrupt(d, "BAT and metadata regions overlap");
	if (r == 0 && v->meta_len < VHDX_META_TABLE_SIZE)
		r = vd_corrupt(d, "metadata region is smaller than its table");
	return r;
}

/* Does [off, off+len) collide with the headers, log, metadata or BAT? */
static bool overlaps_structures(const struct vhdx *v, uint64_t off, uint64_t len)
{
	const uint64_t s[4][2] = { { 0, MiB }, { v->log_off, v->log_len }, { v->meta_off, v->meta_len },
				   { v->bat_off, v->bat_len } };
	for (int i = 0; i < 4; i++)
		if (off < s[i][0] + s[i][1] && off + len > s[i][0])
			return true;
	return false;
}

static int alloc_tables(struct vhdx *v, uint64_t old_entries, uint64_t old_chunks)
{
	uint64_t pages = div_up(v->bat_entries, BAT_PER_PAGE), chunks = v->sb_blocks;
	uint64_t *bat = realloc(v->bat, v->bat_entries * sizeof(uint64_t) + 8);
	if (!bat)
		return -ENOMEM;
	v->bat = bat;
	if (v->bat_entries > old_entries)
		memset(bat + old_entries, 0, (v->bat_entries - old_entries) * sizeof(uint64_t));
	uint64_t *dirty = realloc(v->bat_dirty, div_up(pages, 64) * 8 + 8);
	if (!dirty)
		return -ENOMEM;
	v->bat_dirty = dirty;
	uint64_t old_pages = div_up(old_entries, BAT_PER_PAGE);
	if (div_up(pages, 64) > div_up(old_pages, 64) || !old_entries)
		memset(dirty + div_up(old_pages, 64), 0, (div_up(pages, 64) - div_up(old_pages, 64)) * 8 + 8);
	for (uint64_t c = chunks; c < old_chunks; c++)
		free(v->sb[c]);
	uint8_t **sb = realloc(v->sb, (chunks + 1) * sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	v->sb = sb;
	uint64_t (*sbd)[4] = realloc(v->sb_dirty, (chunks + 1) * sizeof(*sbd));
	if (!sbd)
		return -ENOMEM;
	v->sb_dirty = sbd;
	for (uint64_t c = old_chunks; c < chunks; c++) {
		sb[c] = NULL;
		memset(sbd[c], 0, sizeof(sbd[c]));
	}
	return 0;
}

/* One BAT entry: a valid state for its kind, and a present block inside the file and clear
 * of the headers, log, metadata and BAT. Sets *len to the area it occupies (0: none). */
static int check_bat_entry(struct vdisk *d, uint64_t i, uint64_t file_size, uint64_t *len)
{
	struct vhdx *v = V(d);
	uint64_t e = v->bat[i], off = bat_offset(e);
	unsigned st = bat_state(e);
	*len = 0;
	if (i % (v->chunk_ratio + 1) == v->chunk_ratio) {
		if (st != SB_NOT_PRESENT && st != SB_PRESENT)
			return vd_corrupt(d, "BAT entry %llu: sector bitmap state %u is invalid", (unsigned long long)i, st);
		if (st == SB_PRESENT && !has_parent(v))
			return vd_corrupt(d, "BAT entry %llu: sector bitmap present in a disk without a parent", (unsigned long long)i);
		*len = st == SB_PRESENT ? VHDX_SB_SIZE : 0;
	} else {
		if (st == 4 || st == 5 || (st == PAYLOAD_PARTIALLY_PRESENT && !has_parent(v)))
			return vd_corrupt(d, "BAT entry %llu: payload block state %u is invalid", (unsigned long long)i, st);
		*len = st == PAYLOAD_FULLY_PRESENT || st == PAYLOAD_PARTIALLY_PRESENT ? v->block_size : 0;
	}
	if (*len && (off + *len > (1ULL << 62) || overlaps_structures(v, off, *len) || off >= file_size))
		return vd_corrupt(d, "BAT entry %llu points at offset %llu, outside the file or into its metadata",
				  (unsigned long long)i, (unsigned long long)off);
	return 0;
}

static int load_bat(struct vdisk *d, uint64_t file_size)
{
	struct vhdx *v = V(d);
	if (v->bat_entries * 8 > v->bat_len)
		return vd_corrupt(d, "BAT region holds %llu bytes but %llu entries are needed",
				  (unsigned long long)v->bat_len, (unsigned long long)v->bat_entries);
	if (alloc_tables(v, 0, 0) < 0)
		return vd_err(ENOMEM, d->path, "out of memory for a %llu-entry BAT",
			      (unsigned long long)v->bat_entries);
	int r = meta_read(d, v->bat, v->bat_entries * 8, v->bat_off);
	if (r < 0)
		return io_err(d, r, "BAT");
	uint64_t end = round_up(file_size, MiB), n_areas = 0, a, b;
	struct area *areas = malloc(v->bat_entries * sizeof(*areas) + sizeof(*areas));
	if (!areas)
		return vd_err(ENOMEM, d->path, "out of memory");
	for (uint64_t i = 0; r == 0 && i < v->bat_entries; i++) {
		uint64_t len;
		v->bat[i] = le64toh(v->bat[i]);
		r = check_bat_entry(d, i, file_size, &len);
		if (r == 0 && len) {
			areas[n_areas++] = (struct area){ bat_offset(v->bat[i]), len, i };
			if (bat_offset(v->bat[i]) + len > end)
				end = bat_offset(v->bat[i]) + len;
		}
	}
	/* two blocks sharing space: a write through one corrupts the other */
	if (r == 0 && areas_overlap(areas, n_areas, &a, &b))
		r = vd_corrupt(d, "BAT entries %llu and %llu point at overlapping file areas",
			       (unsigned long long)a, (unsigned long long)b);
	free(areas);
	v->file_end = round_up(end, MiB);
	return r;
}

static void vhdx_free(struct vhdx *v)
{
	if (!v)
		return;
	free(v->bat);
	free(v->bat_dirty);
	if (v->sb)
		for (uint64_t c = 0; c < v->sb_blocks; c++)
			free(v->sb[c]);
	free(v->sb);
	free(v->sb_dirty);
	pages_free(v->overlay, v->n_overlay);
	free(v->loc_relative);
	free(v->loc_absolute);
	free(v->loc_volume);
	free(v);
}

static const struct vdisk_ops vhdx_ops;

static int open_parent(struct vdisk *d)
{
	struct vhdx *v = V(d);
	const char *cand[3] = { v->loc_relative, v->loc_volume, v->loc_absolute };
	int r = vd_open_parent(d, cand, 3);
	if (r < 0)
		return r;
	struct vdisk_info pi;
	vdisk_info(d->parent, &pi);
	if (pi.format != VDISK_FORMAT_VHDX)
		return vd_corrupt(d, "parent %s is not a VHDX file", d->parent_path);
	if (memcmp(pi.id, v->linkage.b, 16)) {
		struct guid got;
		char want[39], have[39];
		memcpy(got.b, pi.id, 16);
		guid_format(&v->linkage, want);
		guid_format(&got, have);
		return vd_err(EINVAL, d->path,
			      "parent %s was modified or replaced: its DataWriteGuid is %s, the child expects %s (use Set-VHD to reconnect)",
			      d->parent_path, have, want);
	}
	if (pi.logical_sector != v->logical_sector)
		return vd_corrupt(d, "parent %s has %u-byte sectors, the child %u", d->parent_path,
				  pi.logical_sector, v->logical_sector);
	return 0;
}

int vhdx_open(struct vdisk *d)
{
	struct vhdx *v = calloc(1, sizeof(*v));
	if (!v)
		return vd_err(ENOMEM, d->path, "out of memory");
	d->priv = v;
	d->ops = &vhdx_ops;
	d->format = VDISK_FORMAT_VHDX;
	uint64_t file_size, size = 0, last_off = 0;
	struct log_page *pages = NULL;
	size_t n = 0;
	int r = vf_size(&d->f, &file_size);
	if (r < 0)
		r = io_err(d, r, "size");
	if (r == 0)
		r = read_headers(d, file_size);
	if (r == 0)
		r = read_regions(d, file_size);
	if (r == 0 && !guid_is_zero(&v->log_guid))
		r = log_load(d, file_size, &pages, &n, &last_off);
	if (r == 0 && n) {
		if (d->writable) {
			r = log_apply_pages(d, pages, n, last_off);
			pages_free(pages, n);
			if (r == 0 && (r = vf_size(&d->f, &file_size)) < 0)
				r = io_err(d, r, "size");
		} else {
			v->overlay = pages, v->n_overlay = n;
		}
	}
	if (r == 0 && d->writable && !guid_is_zero(&v->log_guid)) {
		/* Replayed (or empty): the log is clean again. */
		memset(&v->log_guid, 0, sizeof(v->log_guid));
		guid_generate(&v->file_write);
		r = header_write(d);
	}
	if (r == 0)
		r = parse_metadata(d, &size);
	if (r == 0) {
		d->size = size;
		d->logical_sector = v->logical_sector;
		d->type = has_parent(v) ? VDISK_TYPE_DIFFERENCING : VDISK_TYPE_DYNAMIC;
		compute_geometry(v, size);
		r = load_bat(d, file_size);
	}
	if (r == 0 && (v->param_flags & VHDX_PARAM_LEAVE_ALLOCATED) && !has_parent(v))
		d->type = VDISK_TYPE_FIXED;
	if (r == 0 && has_parent(v) && !d->no_parent)
		r = open_parent(d);
	return r;
}

/* ---- I/O ---- */

/* Sector bitmap of a chunk, loaded on first use. Called with the lock held. */
static int sb_get(struct vdisk *d, uint64_t chunk, uint8_t **out)
{
	struct vhdx *v = V(d);
	if (!v->sb[chunk]) {
		uint8_t *b = calloc(1, VHDX_SB_SIZE);
		if (!b)
			return vd_err(ENOMEM, d->path, "out of memory for a sector bitmap");
		uint64_t e = v->bat[sb_index(v, chunk)];
		if (bat_state(e) == SB_PRESENT) {
			int r = meta_read(d, b, VHDX_SB_SIZE, bat_offset(e));
			if (r == -ENODATA) /* allocated in this session, not yet written out */
				r = vf_pread_pad(&d->f, b, VHDX_SB_SIZE, bat_offset(e));
			if (r < 0) {
				free(b);
				return io_err(d, r, "sector bitmap");
			}
		}
		v->sb[chunk] = b;
	}
	*out = v->sb[chunk];
	return 0;
}

static inline uint64_t sector_bit(const struct vhdx *v, uint64_t blk, uint64_t sector_in_block)
{
	return (blk % v->chunk_ratio) * (v->block_size / v->logical_sector) + sector_in_block;
}

/* Partially present block: each run of sectors comes from this file or the parent. Holds
 * the lock throughout; only differencing disks get here. */
static int read_partial(struct vdisk *d, uint8_t *buf, uint64_t blk, uint64_t foff, uint32_t in, size_t n)
{
	struct vhdx *v = V(d);
	uint8_t *bm;
	int r = sb_get(d, blk / v->chunk_ratio, &bm);
	uint32_t ss = v->logical_sector;
	uint64_t s = in / ss, end = div_up(in + n, ss);
	while (r == 0 && s < end) {
		uint64_t bit = sector_bit(v, blk, s);
		bool here = bm[bit / 8] & (1u << (bit % 8));
		uint64_t t = s + 1;
		while (t < end) {
			uint64_t b2 = sector_bit(v, blk, t);
			if (!!(bm[b2 / 8] & (1u << (b2 % 8))) != here)
				break;
			t++;
		}
		uint64_t a = s * ss > in ? s * ss : in, z = t * ss < in + n ? t * ss : in + n;
		uint8_t *dst = buf + (a - in);
		if (here) {
			r = vf_pread_pad(&d->f, dst, z - a, foff + a);
			if (r < 0)
				r = io_err(d, r, "payload block");
		} else {
			r = vd_read_parent(d, dst, blk * v->block_size + a, z - a);
		}
		s = t;
	}
	return r;
}

/* BAT entries only ever go from absent to present while a disk is open, so the I/O fast
 * path reads them without the lock (acquire) and this publishes them (release). */
static inline uint64_t bat_get(const struct vhdx *v, uint64_t idx)
{
	return __atomic_load_n(&v->bat[idx], __ATOMIC_ACQUIRE);
}

static void bat_set(struct vhdx *v, uint64_t idx, uint64_t e)
{
	__atomic_store_n(&v->bat[idx], e, __ATOMIC_RELEASE);
	v->bat_dirty[idx / BAT_PER_PAGE / 64] |= 1ULL << (idx / BAT_PER_PAGE % 64);
	v->meta_dirty = true;
}

static int vhdx_read(struct vdisk *d, void *vbuf, uint64_t off, size_t len)
{
	struct vhdx *v = V(d);
	uint8_t *buf = vbuf;
	while (len) {
		uint64_t blk = off / v->block_size;
		uint32_t in = (uint32_t)(off % v->block_size);
		size_t n = v->block_size - in < len ? v->block_size - in : len;
		int r;
		uint64_t e = bat_get(v, payload_index(v, blk));
		if (bat_state(e) == PAYLOAD_FULLY_PRESENT) { /* the common case: no lock */
			if ((r = vf_pread_pad(&d->f, buf, n, bat_offset(e) + in)) < 0)
				return io_err(d, r, "payload block");
			buf += n, off += n, len -= n;
			continue;
		}
		pthread_mutex_lock(&d->lock);
		e = v->bat[payload_index(v, blk)];
		switch (bat_state(e)) {
		case PAYLOAD_FULLY_PRESENT:
			pthread_mutex_unlock(&d->lock);
			r = vf_pread_pad(&d->f, buf, n, bat_offset(e) + in);
			if (r < 0)
				r = io_err(d, r, "payload block");
			break;
		case PAYLOAD_PARTIALLY_PRESENT:
			r = read_partial(d, buf, blk, bat_offset(e), in, n);
			pthread_mutex_unlock(&d->lock);
			break;
		case PAYLOAD_NOT_PRESENT:
			pthread_mutex_unlock(&d->lock);
			r = vd_read_parent(d, buf, off, n);
			break;
		default: /* zero, unmapped, undefined: zeros */
			pthread_mutex_unlock(&d->lock);
			memset(buf, 0, n);
			r = 0;
		}
		if (r < 0)
			return r;
		buf += n, off += n, len -= n;
	}
	return 0;
}

/* A new 1 MiB-aligned area at the end of the file. Lock held. The file is not grown here:
 * writes extend it, reads past its end see zeros, and flush sets the final length before
 * the BAT that points into the new area is committed. */
static uint64_t alloc_area(struct vhdx *v, uint64_t len)
{
	uint64_t off = v->file_end;
	v->file_end += len;
	return off;
}

static int mark_present(struct vdisk *d, uint64_t blk, uint32_t in, size_t n)
{
	struct vhdx *v = V(d);
	uint8_t *bm;
	uint64_t chunk = blk / v->chunk_ratio;
	int r = sb_get(d, chunk, &bm);
	if (r < 0)
		return r;
	for (uint64_t s = in / v->logical_sector; s < (in + n) / v->logical_sector; s++) {
		uint64_t bit = sector_bit(v, blk, s);
		bm[bit / 8] |= (uint8_t)(1u << (bit % 8));
		v->sb_dirty[chunk][bit / 8 / PAGE / 64] |= 1ULL << (bit / 8 / PAGE % 64);
	}
	v->meta_dirty = true;
	return 0;
}

static int vhdx_write(struct vdisk *d, const void *vbuf, uint64_t off, size_t len)
{
	struct vhdx *v = V(d);
	const uint8_t *buf = vbuf;
	int r = 0;
	if (!__atomic_load_n(&v->data_session, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&d->lock);
		r = session_begin(d, true);
		pthread_mutex_unlock(&d->lock);
	}
	while (r == 0 && len) {
		uint64_t blk = off / v->block_size;
		uint32_t in = (uint32_t)(off % v->block_size);
		size_t n = v->block_size - in < len ? v->block_size - in : len;
		uint64_t idx = payload_index(v, blk);
		uint64_t e = bat_get(v, idx);
		if (bat_state(e) == PAYLOAD_FULLY_PRESENT) { /* allocated: straight to the file */
			if ((r = vf_pwrite(&d->f, buf, n, bat_offset(e) + in)) < 0)
				return io_err(d, r, "payload write");
			buf += n, off += n, len -= n;
			continue;
		}
		pthread_mutex_lock(&d->lock);
		e = v->bat[idx];
		unsigned st = bat_state(e);
		bool partial = st == PAYLOAD_PARTIALLY_PRESENT, publish = false;
		if (st != PAYLOAD_FULLY_PRESENT && !partial) {
			uint64_t block_len = d->size - blk * v->block_size < v->block_size ? d->size - blk * v->block_size : v->block_size;
			bool diff_hole = has_parent(v) && st == PAYLOAD_NOT_PRESENT;
			/* Only a differencing disk keeps the parent's data around a partial write. */
			partial = diff_hole && !(in == 0 && n == block_len);
			/* A whole block replacing parent data is published only once written, so a
			 * crash or a reader never sees zeros where the parent's data was. */
			publish = diff_hole && !partial;
			uint64_t sbi = sb_index(v, blk / v->chunk_ratio);
			if (partial && bat_state(v->bat[sbi]) != SB_PRESENT) {
				uint8_t *bm;
				r = sb_get(d, blk / v->chunk_ratio, &bm); /* zeros: nothing present yet */
				if (r == 0)
					bat_set(v, sbi, alloc_area(v, VHDX_SB_SIZE) | SB_PRESENT);
			}
			e = alloc_area(v, v->block_size) | (partial ? PAYLOAD_PARTIALLY_PRESENT : PAYLOAD_FULLY_PRESENT);
			if (r == 0 && !publish)
				bat_set(v, idx, e);
		}
		pthread_mutex_unlock(&d->lock);
		if (r < 0)
			break;
		r = vf_pwrite(&d->f, buf, n, bat_offset(e) + in);
		if (r < 0) {
			r = io_err(d, r, "payload write");
			break;
		}
		if (partial || publish) {
			pthread_mutex_lock(&d->lock);
			bool lost_race = publish && bat_state(v->bat[idx]) != PAYLOAD_NOT_PRESENT;
			if (publish && !lost_race)
				bat_set(v, idx, e);
			else if (partial)
				r = mark_present(d, blk, in, n);
			pthread_mutex_unlock(&d->lock);
			if (lost_race) /* another writer allocated the block meanwhile: write there */
				continue;
		}
		buf += n, off += n, len -= n;
	}
	return r;
}

static int vhdx_flush(struct vdisk *d)
{
	struct vhdx *v = V(d);
	pthread_mutex_lock(&d->lock);
	uint64_t fsize;
	int r = vf_size(&d->f, &fsize);
	if (r == 0 && fsize < v->file_end) /* new blocks lie wholly inside the file */
		r = vf_truncate(&d->f, v->file_end);
	if (r == 0)
		r = vf_sync(&d->f); /* data before the metadata that points at it */
	if (r < 0)
		r = io_err(d, r, "flush");
	if (r < 0 || !v->meta_dirty) {
		pthread_mutex_unlock(&d->lock);
		return r;
	}
	size_t n = 0, cap = 16;
	struct log_page *pages = malloc(cap * sizeof(*pages));
	uint8_t *bufs = NULL;
	uint64_t bat_pages = div_up(v->bat_entries, BAT_PER_PAGE);
	/* count first, so one allocation holds every page image */
	for (uint64_t p = 0; p < bat_pages; p++)
		n += !!(v->bat_dirty[p / 64] & (1ULL << (p % 64)));
	for (uint64_t c = 0; c < v->sb_blocks; c++)
		for (int w = 0; w < 4; w++)
			n += (size_t)__builtin_popcountll(v->sb_dirty[c][w]);
	if (n > cap)
		pages = realloc(pages, n * sizeof(*pages));
	bufs = malloc(n * (size_t)PAGE + 1);
	if (!pages || !bufs) {
		free(pages);
		free(bufs);
		pthread_mutex_unlock(&d->lock);
		return vd_err(ENOMEM, d->path, "out of memory flushing metadata");
	}
	size_t i = 0;
	for (uint64_t p = 0; p < bat_pages; p++) {
		if (!(v->bat_dirty[p / 64] & (1ULL << (p % 64))))
			continue;
		uint8_t *img = bufs + i * PAGE;
		memset(img, 0, PAGE);
		for (uint64_t k = 0; k < BAT_PER_PAGE && p * BAT_PER_PAGE + k < v->bat_entries; k++)
			st_le64(img + 8 * k, v->bat[p * BAT_PER_PAGE + k]);
		pages[i++] = (struct log_page){ v->bat_off + p * PAGE, PAGE, img };
	}
	for (uint64_t c = 0; c < v->sb_blocks; c++)
		for (unsigned p = 0; p < VHDX_SB_SIZE / PAGE; p++) {
			if (!(v->sb_dirty[c][p / 64] & (1ULL << (p % 64))))
				continue;
			uint8_t *img = bufs + i * PAGE;
			memcpy(img, v->sb[c] + (size_t)p * PAGE, PAGE);
			pages[i++] = (struct log_page){ bat_offset(v->bat[sb_index(v, c)]) + (uint64_t)p * PAGE, PAGE, img };
		}
	r = log_commit(d, pages, n);
	if (r == 0) {
		memset(v->bat_dirty, 0, div_up(bat_pages, 64) * 8);
		for (uint64_t c = 0; c < v->sb_blocks; c++)
			memset(v->sb_dirty[c], 0, sizeof(v->sb_dirty[c]));
		v->meta_dirty = false;
	}
	pthread_mutex_unlock(&d->lock);
	free(pages);
	free(bufs);
	return r;
}

/* Trim: punch the host file under allocated blocks; the BAT stays, so later writes reuse the
 * space and no metadata changes (trimmed sectors read as zeros). */
static int vhdx_discard(struct vdisk *d, uint64_t off, uint64_t len)
{
	struct vhdx *v = V(d);
	while (len) {
		uint64_t blk = off / v->block_size, in = off % v->block_size;
		uint64_t n = v->block_size - in < len ? v->block_size - in : len;
		pthread_mutex_lock(&d->lock);
		uint64_t e = v->bat[payload_index(v, blk)];
		pthread_mutex_unlock(&d->lock);
		if (bat_state(e) == PAYLOAD_FULLY_PRESENT || bat_state(e) == PAYLOAD_PARTIALLY_PRESENT)
			vf_punch(&d->f, bat_offset(e) + in, n);
		off += n, len -= n;
	}
	return 0;
}

static int vhdx_block_status(struct vdisk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run)
{
	struct vhdx *v = V(d);
	*run = 0;
	pthread_mutex_lock(&d->lock);
	for (uint64_t o = off; o < off + len;) {
		unsigned st = bat_state(v->bat[payload_index(v, o / v->block_size)]);
		bool a = st == PAYLOAD_FULLY_PRESENT || st == PAYLOAD_PARTIALLY_PRESENT;
		if (o == off)
			*alloc = a;
		else if (a != *alloc)
			break;
		uint64_t next = (o / v->block_size + 1) * v->block_size;
		o = next < off + len ? next : off + len;
		*run = o - off;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void vhdx_info(struct vdisk *d, struct vdisk_info *out)
{
	struct vhdx *v = V(d);
	out->logical_sector = v->logical_sector;
	out->physical_sector = v->physical_sector;
	out->block_size = v->block_size;
	memcpy(out->id, v->data_write.b, 16);
	memcpy(out->disk_identifier, v->page83.b, 16);
	uint64_t allocated = 0, out_of_order = 0, prev = 0, last_end = 0;
	pthread_mutex_lock(&d->lock);
	for (uint64_t b = 0; b < v->data_blocks; b++) {
		uint64_t e = v->bat[payload_index(v, b)];
		unsigned st = bat_state(e);
		if (st != PAYLOAD_FULLY_PRESENT && st != PAYLOAD_PARTIALLY_PRESENT)
			continue;
		if (allocated++ && bat_offset(e) != prev + v->block_size)
			out_of_order++;
		prev = bat_offset(e);
		last_end = (b + 1) * v->block_size;
	}
	pthread_mutex_unlock(&d->lock);
	out->fragmentation_pct = allocated > 1 ? (uint32_t)(out_of_order * 100 / (allocated - 1)) : 0;
	out->min_size = last_end < d->size ? last_end : d->size;
	if (d->type == VDISK_TYPE_FIXED || d->type == VDISK_TYPE_DIFFERENCING)
		out->min_size = d->size;
}

static int vhdx_close(struct vdisk *d)
{
	struct vhdx *v = V(d);
	int r = 0;
	if (d->writable && v->session) {
		r = vhdx_flush(d);
		if (r == 0) { /* everything is in place: mark the log empty */
			memset(&v->log_guid, 0, sizeof(v->log_guid));
			r = header_write(d);
		}
	}
	vhdx_free(v);
	d->priv = NULL;
	return r;
}

/* Rewrites the metadata region's table and items through the log. */
static int commit_metadata(struct vdisk *d, uint64_t size)
{
	struct vhdx *v = V(d);
	size_t cap = v->meta_len < 2 * MiB ? v->meta_len : 2 * MiB;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return vd_err(ENOMEM, d->path, "out of memory");
	int used = build_metadata(v, size, buf, cap);
	if (used < 0) {
		free(buf);
		return vd_err(ENAMETOOLONG, d->path, "parent paths do not fit in the metadata region");
	}
	size_t np = div_up((uint64_t)used, PAGE);
	struct log_page *pages = malloc(np * sizeof(*pages));
	int r = pages ? 0 : vd_err(ENOMEM, d->path, "out of memory");
	for (size_t i = 0; r == 0 && i < np; i++)
		pages[i] = (struct log_page){ v->meta_off + i * PAGE, PAGE, buf + i * PAGE };
	if (r == 0)
		r = session_begin(d, false);
	if (r == 0)
		r = vhdx_flush(d);
	if (r == 0)
		r = log_commit(d, pages, np);
	free(pages);
	free(buf);
	return r;
}

static int set_locator_paths(struct vhdx *v, const char *child_path, const char *parent_path)
{
	char rel[PATH_MAX], abs_path[PATH_MAX];
	int r = path_relative(child_path, parent_path, rel, sizeof(rel));
	if (r < 0)
		return r;
	if (!realpath(parent_path, abs_path))
		return -errno;
	free(v->loc_relative);
	free(v->loc_absolute);
	free(v->loc_volume);
	v->loc_volume = NULL;
	v->loc_relative = strdup(rel);
	v->loc_absolute = strdup(abs_path);
	return v->loc_relative && v->loc_absolute ? 0 : -ENOMEM;
}

static int vhdx_set_parent(struct vdisk *d, struct vdisk *parent, const char *parent_path)
{
	struct vhdx *v = V(d);
	struct vdisk_info pi;
	vdisk_info(parent, &pi);
	if (pi.format != VDISK_FORMAT_VHDX)
		return vd_err(EINVAL, parent_path, "the parent of a VHDX must be a VHDX file");
	if (memcmp(v->linkage.b, pi.id, 16))
		return vd_err(EINVAL, parent_path, "is not the parent %s was made from (its DataWriteGuid differs)", d->path);
	int r = set_locator_paths(v, d->path, parent_path);
	if (r < 0)
		return vd_err(-r, parent_path, "cannot resolve parent path: %s", strerror(-r));
	return commit_metadata(d, d->size);
}

/* A live merge writes the parent: its session starts now, so the child can be relinked to the
 * DataWriteGuid it ends with before any merged data lands (mirror.c). */
static int vhdx_begin_write(struct vdisk *d)
{
	return session_begin(d, true);
}

static int vhdx_relink(struct vdisk *d, struct vdisk *parent)
{
	struct vdisk_info pi;
	vdisk_info(parent, &pi);
	memcpy(V(d)->linkage.b, pi.id, 16);
	return commit_metadata(d, d->size);
}

static int vhdx_resize(struct vdisk *d, uint64_t size)
{
	struct vhdx *v = V(d);
	if (size % v->logical_sector || size > VDISK_VHDX_MAX_SIZE)
		return vd_err(EINVAL, d->path, "new size must be a multiple of %u bytes and at most 64 TiB",
			      v->logical_sector);
	uint64_t old_entries = v->bat_entries, old_chunks = v->sb_blocks, old_blocks = v->data_blocks;
	compute_geometry(v, size);
	if (v->bat_entries * 8 > v->bat_len || d->type == VDISK_TYPE_FIXED) {
		compute_geometry(v, d->size);
		return vd_err(ENOSPC, d->path, d->type == VDISK_TYPE_FIXED
			      ? "resizing a fixed VHDX in place is not supported; convert it to dynamic first"
			      : "the BAT region has no room for that size; convert to a new file instead");
	}
	if (alloc_tables(v, old_entries, old_chunks) < 0)
		return vd_err(ENOMEM, d->path, "out of memory");
	pthread_mutex_lock(&d->lock);
	int r = session_begin(d, true);
	/* Shrinking: blocks past the end go away (min_size guarantees none hold data). */
	for (uint64_t b = v->data_blocks; r == 0 && b < old_blocks; b++)
		if (payload_index(v, b) < v->bat_entries)
			bat_set(v, payload_index(v, b), PAYLOAD_NOT_PRESENT);
	for (uint64_t i = old_entries; i < v->bat_entries; i++)
		bat_set(v, i, 0);
	pthread_mutex_unlock(&d->lock);
	if (r == 0)
		r = commit_metadata(d, size);
	if (r == 0)
		d->size = size;
	return r;
}

static const struct vdisk_ops vhdx_ops = {
	.read = vhdx_read,
	.write = vhdx_write,
	.flush = vhdx_flush,
	.discard = vhdx_discard,
	.block_status = vhdx_block_status,
	.info = vhdx_info,
	.close = vhdx_close,
	.set_parent = vhdx_set_parent,
	.resize = vhdx_resize,
	.begin_write = vhdx_begin_write,
	.relink = vhdx_relink,
};

/* ---- create ---- */

int vhdx_create(const char *path, const struct vdisk_create_params *p, struct vdisk *parent)
{
	struct vdisk d = { .path = (char *)path, .writable = true };
	struct vhdx *v = calloc(1, sizeof(*v));
	if (!v)
		return vd_err(ENOMEM, path, "out of memory");
	d.priv = v;
	v->block_size = p->block_size ? p->block_size : (uint32_t)(32 * MiB);
	v->logical_sector = p->logical_sector ? p->logical_sector : 512;
	v->physical_sector = p->physical_sector ? p->physical_sector : 4096;
	uint64_t size = p->size;
	int r = 0;
	if (parent) {
		struct vdisk_info pi;
		vdisk_info(parent, &pi);
		if (pi.format != VDISK_FORMAT_VHDX)
			r = vd_err(EINVAL, path, "the parent of a VHDX must be a VHDX file");
		v->param_flags |= VHDX_PARAM_HAS_PARENT;
		memcpy(v->linkage.b, pi.id, 16);
		if (!p->logical_sector)
			v->logical_sector = pi.logical_sector;
		if (!p->physical_sector)
			v->physical_sector = pi.physical_sector;
		if (!size)
			size = pi.size;
		if (r == 0 && (r = set_locator_paths(v, path, p->parent_path)) < 0)
			r = vd_err(-r, p->parent_path, "cannot resolve parent path: %s", strerror(-r));
	} else if (p->type == VDISK_TYPE_FIXED) {
		v->param_flags |= VHDX_PARAM_LEAVE_ALLOCATED;
	}
	if (r == 0 && (!is_pow2(v->block_size) || v->block_size < MiB || v->block_size > 256 * MiB))
		r = vd_err(EINVAL, path, "block size %u is not a power of two from 1 MiB to 256 MiB", v->block_size);
	if (r == 0 && ((v->logical_sector != 512 && v->logical_sector != 4096) ||
		       (v->physical_sector != 512 && v->physical_sector != 4096)))
		r = vd_err(EINVAL, path, "sector sizes must be 512 or 4096");
	if (r == 0 && (size == 0 || size > VDISK_VHDX_MAX_SIZE || size % v->logical_sector))
		r = vd_err(EINVAL, path, "size %llu must be 1 sector to 64 TiB and a multiple of %u bytes",
			   (unsigned long long)size, v->logical_sector);
	if (r == 0 && parent && parent->logical_sector != v->logical_sector)
		r = vd_err(EINVAL, path, "the parent has %u-byte sectors; a child must match", parent->logical_sector);
	if (r < 0) {
		vhdx_free(v);
		return r;
	}
	guid_generate(&v->page83);
	guid_generate(&v->file_write);
	guid_generate(&v->data_write);
	compute_geometry(v, size);
	v->log_off = MiB;
	v->log_len = (uint32_t)LOG_SIZE_DEFAULT;
	v->meta_off = 2 * MiB;
	v->meta_len = MiB;
	v->bat_off = 3 * MiB;
	v->bat_len = round_up(v->bat_entries * 8, MiB);
	uint64_t data_off = v->bat_off + v->bat_len;

	r = vf_open(&d.f, path, true, true);
	if (r < 0) {
		vhdx_free(v);
		return vd_err(-r, path, "cannot create: %s", strerror(-r));
	}
	uint8_t *buf = calloc(1, MiB);
	r = buf ? 0 : -ENOMEM;
	/* file type identifier */
	if (r == 0) {
		st_le64(buf, VHDX_SIG_FILE);
		utf8_to_utf16("Viridian", false, buf + 8, 512);
		r = vf_pwrite(&d.f, buf, 64 * 1024, 0);
	}
	/* region tables */
	if (r == 0) {
		memset(buf, 0, VHDX_REGION_SIZE);
		st_le32(buf, VHDX_SIG_REGI);
		st_le32(buf + 8, 2);
		struct vhdx_region_entry *re = (void *)(buf + 16);
		memcpy(re[0].guid, REGION_BAT.b, 16);
		st_le64(&re[0].file_offset, v->bat_off);
		st_le32(&re[0].length, (uint32_t)v->bat_len);
		st_le32(&re[0].required, 1);
		memcpy(re[1].guid, REGION_META.b, 16);
		st_le64(&re[1].file_offset, v->meta_off);
		st_le32(&re[1].length, (uint32_t)v->meta_len);
		st_le32(&re[1].required, 1);
		st_le32(buf + 4, crc32c(0, buf, VHDX_REGION_SIZE));
		r = vf_pwrite(&d.f, buf, VHDX_REGION_SIZE, VHDX_REGION1_OFF);
		if (r == 0)
			r = vf_pwrite(&d.f, buf, VHDX_REGION_SIZE, VHDX_REGION2_OFF);
	}
	if (r == 0 && build_metadata(v, size, buf, MiB) < 0)
		r = -ENAMETOOLONG;
	if (r == 0)
		r = vf_pwrite(&d.f, buf, MiB, v->meta_off);
	/* BAT: a fixed disk's blocks follow it contiguously; the rest start empty */
	uint64_t end = data_off;
	if (r == 0 && p->type == VDISK_TYPE_FIXED && !parent) {
		if (alloc_tables(v, 0, 0) < 0)
			r = -ENOMEM;
		for (uint64_t b = 0; r == 0 && b < v->data_blocks; b++, end += v->block_size)
			v->bat[payload_index(v, b)] = end | PAYLOAD_FULLY_PRESENT;
		for (uint64_t off = 0; r == 0 && off < v->bat_entries * 8; off += MiB) {
			uint64_t n = v->bat_entries * 8 - off < MiB ? v->bat_entries * 8 - off : MiB;
			for (uint64_t k = 0; k < n / 8; k++)
				st_le64(buf + 8 * k, v->bat[off / 8 + k]);
			r = vf_pwrite(&d.f, buf, n, v->bat_off + off);
		}
	}
	if (r == 0)
		r = vf_truncate(&d.f, end);
	if (r == 0 && end > data_off && fallocate(d.f.fd, 0, (off_t)data_off, (off_t)(end - data_off)) < 0 &&
	    errno != EOPNOTSUPP)
		r = -errno;
	/* headers last: until both are valid the file does not open */
	v->hdr_slot = 1;
	if (r == 0)
		r = header_write(&d) == 0 ? header_write(&d) : -EIO;
	if (r == 0)
		r = vf_sync(&d.f);
	free(buf);
	vf_close(&d.f);
	vhdx_free(v);
	if (r < 0) {
		unlink(path);
		if (r == -ENAMETOOLONG)
			return vd_err(ENAMETOOLONG, path, "parent paths do not fit in the metadata region");
		return r == -EIO ? r : vd_err(-r, path, "cannot create: %s", strerror(-r));
	}
	return 0;
}
