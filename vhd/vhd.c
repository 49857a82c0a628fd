/* VHD: fixed, dynamic and differencing images.
 *
 * VHD has no log. Allocation writes the new block's bitmap, moves the footer to the new end
 * of file and then writes the BAT entry, so a crash leaves at worst an unreferenced block.
 * Differencing disks write data before the bitmap bits that expose it. */
#include "internal.h"
#include "vhd_format.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct vhd {
	struct vhd_footer footer;     /* as on disk (big-endian) */
	struct vhd_dyn_header dyn;
	uint32_t block_size, bitmap_size, max_entries;
	uint64_t table_off;
	uint32_t *bat;                /* host order */
	uint8_t **bitmaps;            /* differencing: per block, loaded on demand */
	uint64_t footer_off;          /* where the trailing footer lives: new blocks go here */
};

static inline struct vhd *H(struct vdisk *d) { return d->priv; }

static uint32_t vhd_checksum(const void *p, size_t len, size_t csum_off)
{
	const uint8_t *b = p;
	uint32_t sum = 0;
	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += b[i];
	return ~sum;
}

static bool footer_ok(const struct vhd_footer *f)
{
	return !memcmp(f->cookie, VHD_COOKIE, 8) &&
	       vhd_checksum(f, sizeof(*f), offsetof(struct vhd_footer, checksum)) == ld_be32(&f->checksum);
}

bool vhd_probe(struct vfile *f, uint64_t file_size)
{
	char c[8];
	if (file_size >= 512 && vf_pread(f, c, 8, file_size - 512) == 0 && !memcmp(c, VHD_COOKIE, 8))
		return true;
	return file_size >= 1536 && vf_pread(f, c, 8, 0) == 0 && !memcmp(c, VHD_COOKIE, 8);
}

/* CHS geometry per the VHD specification appendix; sizes round down to it for old readers. */
static void chs(uint64_t size, uint16_t *cyl, uint8_t *heads, uint8_t *spt)
{
	uint64_t total = size / 512, cth;
	unsigned h, s;
	if (total > 65535ULL * 16 * 255)
		total = 65535ULL * 16 * 255;
	if (total >= 65535ULL * 16 * 63) {
		s = 255, h = 16, cth = total / s;
	} else {
		s = 17, cth = total / s;
		h = (unsigned)((cth + 1023) / 1024);
		if (h < 4)
			h = 4;
		if (cth >= h * 1024ULL || h > 16)
			s = 31, h = 16, cth = total / s;
		if (cth >= h * 1024ULL)
			s = 63, h = 16, cth = total / s;
	}
	*cyl = (uint16_t)(cth / h);
	*heads = (uint8_t)h;
	*spt = (uint8_t)s;
}

static void footer_seal(struct vhd_footer *f)
{
	st_be32(&f->checksum, 0);
	st_be32(&f->checksum, vhd_checksum(f, sizeof(*f), offsetof(struct vhd_footer, checksum)));
}

static void dyn_seal(struct vhd_dyn_header *h)
{
	st_be32(&h->checksum, 0);
	st_be32(&h->checksum, vhd_checksum(h, sizeof(*h), offsetof(struct vhd_dyn_header, checksum)));
}

static int io_err(struct vdisk *d, int r, const char *what)
{
	if (r == -ENODATA)
		return vd_corrupt(d, "file is truncated (reading %s)", what);
	return vd_err(-r, d->path, "%s: %s", what, strerror(-r));
}

/* ---- I/O ---- */

static int load_bitmap(struct vdisk *d, uint32_t blk, uint8_t **out)
{
	struct vhd *h = H(d);
	if (!h->bitmaps[blk]) {
		uint8_t *b = malloc(h->bitmap_size);
		if (!b)
			return vd_err(ENOMEM, d->path, "out of memory");
		int r = vf_pread(&d->f, b, h->bitmap_size, (uint64_t)h->bat[blk] * 512);
		if (r < 0) {
			free(b);
			return io_err(d, r, "sector bitmap");
		}
		h->bitmaps[blk] = b;
	}
	*out = h->bitmaps[blk];
	return 0;
}

/* Bit set: the sector is in this file. Most significant bit first. */
static inline bool bit_get(const uint8_t *bm, uint64_t s) { return bm[s / 8] & (0x80u >> (s % 8)); }

static int vhd_read(struct vdisk *d, void *vbuf, uint64_t off, size_t len)
{
	struct vhd *h = H(d);
	uint8_t *buf = vbuf;
	int r = 0;
	if (d->type == VDISK_TYPE_FIXED) {
		r = vf_pread(&d->f, buf, len, off);
		return r < 0 ? io_err(d, r, "data") : 0;
	}
	while (r == 0 && len) {
		uint32_t blk = (uint32_t)(off / h->block_size), in = (uint32_t)(off % h->block_size);
		size_t n = h->block_size - in < len ? h->block_size - in : len;
		pthread_mutex_lock(&d->lock);
		uint32_t e = h->bat[blk];
		uint64_t data = (uint64_t)e * 512 + h->bitmap_size;
		if (e == VHD_BAT_UNUSED) {
			pthread_mutex_unlock(&d->lock);
			r = vd_read_parent(d, buf, off, n);
		} else if (d->type == VDISK_TYPE_DYNAMIC) {
			pthread_mutex_unlock(&d->lock);
			r = vf_pread(&d->f, buf, n, data + in);
			if (r < 0)
				r = io_err(d, r, "data block");
		} else { /* differencing: runs of sectors from here or from the parent */
			uint8_t *bm;
			r = load_bitmap(d, blk, &bm);
			for (uint64_t s = in / 512; r == 0 && s < (in + n) / 512;) {
				bool here = bit_get(bm, s);
				uint64_t t = s + 1;
				while (t < (in + n) / 512 && bit_get(bm, t) == here)
					t++;
				uint8_t *dst = buf + (s * 512 - in);
				if (here && (r = vf_pread(&d->f, dst, (t - s) * 512, data + s * 512)) < 0)
					r = io_err(d, r, "data block");
				else if (!here)
					r = vd_read_parent(d, dst, (uint64_t)blk * h->block_size + s * 512, (t - s) * 512);
				s = t;
			}
			pthread_mutex_unlock(&d->lock);
		}
		buf += n, off += n, len -= n;
	}
	return r;
}

/* New block at the footer's place; the footer moves behind it. Lock held. */
static int alloc_block(struct vdisk *d, uint32_t blk)
{
	struct vhd *h = H(d);
	uint64_t at = h->footer_off, end = at + h->bitmap_size + h->block_size;
	uint8_t *bm = malloc(h->bitmap_size);
	if (!bm)
		return vd_err(ENOMEM, d->path, "out of memory");
	/* Dynamic disks mark every sector present, as Hyper-V does; a child starts empty. */
	memset(bm, d->type == VDISK_TYPE_DIFFERENCING ? 0 : 0xff, h->bitmap_size);
	int r = vf_truncate(&d->f, end + 512);
	if (r == 0)
		r = vf_pwrite(&d->f, bm, h->bitmap_size, at);
	if (r == 0)
		r = vf_pwrite(&d->f, &h->footer, 512, end);
	uint8_t entry[4];
	st_be32(entry, (uint32_t)(at / 512));
	if (r == 0)
		r = vf_pwrite(&d->f, entry, 4, h->table_off + (uint64_t)blk * 4);
	if (r == 0)
		h->bat[blk] = (uint32_t)(at / 512);
	if (r < 0) {
		h->bat[blk] = VHD_BAT_UNUSED;
		free(bm);
		return io_err(d, r, "allocating a block");
	}
	h->footer_off = end;
	if (h->bitmaps)
		h->bitmaps[blk] = bm;
	else
		free(bm);
	return 0;
}

static int vhd_write(struct vdisk *d, const void *vbuf, uint64_t off, size_t len)
{
	struct vhd *h = H(d);
	const uint8_t *buf = vbuf;
	int r = 0;
	if (d->type == VDISK_TYPE_FIXED) {
		r = vf_pwrite(&d->f, buf, len, off);
		return r < 0 ? io_err(d, r, "write") : 0;
	}
	while (r == 0 && len) {
		uint32_t blk = (uint32_t)(off / h->block_size), in = (uint32_t)(off % h->block_size);
		size_t n = h->block_size - in < len ? h->block_size - in : len;
		pthread_mutex_lock(&d->lock);
		if (h->bat[blk] == VHD_BAT_UNUSED)
			r = alloc_block(d, blk);
		uint64_t data = (uint64_t)h->bat[blk] * 512 + h->bitmap_size;
		pthread_mutex_unlock(&d->lock);
		if (r == 0 && (r = vf_pwrite(&d->f, buf, n, data + in)) < 0)
			r = io_err(d, r, "write");
		if (r == 0 && d->type == VDISK_TYPE_DIFFERENCING) {
			pthread_mutex_lock(&d->lock);
			uint8_t *bm;
			r = load_bitmap(d, blk, &bm);
			uint64_t lo = in / 512, hi = (in + n) / 512;
			bool changed = false;
			for (uint64_t s = lo; r == 0 && s < hi; s++)
				if (!bit_get(bm, s))
					bm[s / 8] |= (uint8_t)(0x80u >> (s % 8)), changed = true;
			if (r == 0 && changed) {
				/* rewrite the bitmap's 512-byte sectors that changed */
				uint64_t a = lo / 8 / 512 * 512, b = round_up(div_up(hi, 8), 512);
				r = vf_pwrite(&d->f, bm + a, b - a, data - h->bitmap_size + a);
				if (r < 0)
					r = io_err(d, r, "bitmap write");
			}
			pthread_mutex_unlock(&d->lock);
		}
		buf += n, off += n, len -= n;
	}
	return r;
}

static int vhd_flush(struct vdisk *d)
{
	int r = vf_sync(&d->f);
	return r < 0 ? io_err(d, r, "flush") : 0;
}

static int vhd_discard(struct vdisk *d, uint64_t off, uint64_t len)
{
	struct vhd *h = H(d);
	if (d->type == VDISK_TYPE_FIXED)
		return vf_punch(&d->f, off, len), 0;
	while (len) {
		uint32_t blk = (uint32_t)(off / h->block_size), in = (uint32_t)(off % h->block_size);
		uint64_t n = h->block_size - in < len ? h->block_size - in : len;
		pthread_mutex_lock(&d->lock);
		uint32_t e = h->bat[blk];
		pthread_mutex_unlock(&d->lock);
		if (e != VHD_BAT_UNUSED)
			vf_punch(&d->f, (uint64_t)e * 512 + h->bitmap_size + in, n);
		off += n, len -= n;
	}
	return 0;
}

static int vhd_block_status(struct vdisk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run)
{
	struct vhd *h = H(d);
	if (d->type == VDISK_TYPE_FIXED) {
		*alloc = true, *run = len;
		return 0;
	}
	*run = 0;
	pthread_mutex_lock(&d->lock);
	for (uint64_t o = off; o < off + len;) {
		bool a = h->bat[o / h->block_size] != VHD_BAT_UNUSED;
		if (o == off)
			*alloc = a;
		else if (a != *alloc)
			break;
		uint64_t next = (o / h->block_size + 1) * h->block_size;
		o = next < off + len ? next : off + len;
		*run = o - off;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void vhd_info(struct vdisk *d, struct vdisk_info *out)
{
	struct vhd *h = H(d);
	out->logical_sector = 512;
	out->physical_sector = 512;
	memcpy(out->id, h->footer.unique_id, 16);
	memcpy(out->disk_identifier, h->footer.unique_id, 16);
	out->min_size = d->size;
	if (d->type == VDISK_TYPE_FIXED)
		return;
	out->block_size = h->block_size;
	uint64_t allocated = 0, out_of_order = 0, prev = 0, last_end = 0;
	pthread_mutex_lock(&d->lock);
	for (uint32_t b = 0; b < h->max_entries && (uint64_t)b * h->block_size < d->size; b++) {
		if (h->bat[b] == VHD_BAT_UNUSED)
			continue;
		if (allocated++ && h->bat[b] < prev)
			out_of_order++;
		prev = h->bat[b];
		last_end = (uint64_t)(b + 1) * h->block_size;
	}
	pthread_mutex_unlock(&d->lock);
	out->fragmentation_pct = allocated > 1 ? (uint32_t)(out_of_order * 100 / (allocated - 1)) : 0;
	if (d->type == VDISK_TYPE_DYNAMIC)
		out->min_size = last_end < d->size ? last_end : d->size;
}

static void vhd_free(struct vdisk *d)
{
	struct vhd *h = H(d);
	if (!h)
		return;
	if (h->bitmaps)
		for (uint32_t b = 0; b < h->max_entries; b++)
			free(h->bitmaps[b]);
	free(h->bitmaps);
	free(h->bat);
	free(h);
	d->priv = NULL;
}

static int vhd_close(struct vdisk *d)
{
	int r = d->writable ? vhd_flush(d) : 0;
	vhd_free(d);
	return r;
}

/* ---- parent locators ---- */

/* Writes the parent's name, id and locators (W2ru relative, W2ku absolute) into the header;
 * the locator strings go at `at`, which advances. */
static int fill_parent(struct vhd_dyn_header *dh, const char *child, const char *parent_path,
		       const struct vdisk_info *pi, uint8_t *area, size_t cap, uint64_t at, size_t *used)
{
	char rel[PATH_MAX], abs_path[PATH_MAX];
	int r = path_relative(child, parent_path, rel, sizeof(rel));
	if (r < 0)
		return r;
	if (!realpath(parent_path, abs_path))
		return -errno;
	memcpy(dh->parent_unique_id, pi->id, 16);
	st_be32(&dh->parent_timestamp, (uint32_t)(time(NULL) - VHD_EPOCH));
	memset(dh->parent_name, 0, sizeof(dh->parent_name));
	const char *base = strrchr(abs_path, '/');
	if (utf8_to_utf16(base ? base + 1 : abs_path, true, dh->parent_name, sizeof(dh->parent_name) - 2) < 0)
		return -ENAMETOOLONG;
	memset(dh->locators, 0, sizeof(dh->locators));
	const char *paths[2] = { rel, abs_path };
	const uint32_t codes[2] = { VHD_PLAT_W2RU, VHD_PLAT_W2KU };
	*used = 0;
	for (int i = 0; i < 2; i++) {
		char tmp[PATH_MAX];
		snprintf(tmp, sizeof(tmp), "%s", paths[i]);
		path_to_windows(tmp);
		int n = utf8_to_utf16(tmp, false, area + *used, cap - *used);
		if (n <= 0)
			return -ENAMETOOLONG;
		uint32_t space = (uint32_t)round_up((uint64_t)n, 512);
		memset(area + *used + n, 0, space - (uint32_t)n);
		struct vhd_locator *l = &dh->locators[i];
		st_be32(&l->platform_code, codes[i]);
		st_be32(&l->data_space, space / 512);
		st_be32(&l->data_length, (uint32_t)n);
		st_be64(&l->data_offset, at + *used);
		*used += space;
	}
	dyn_seal(dh);
	return 0;
}

static int open_parent(struct vdisk *d, uint64_t file_size)
{
	struct vhd *h = H(d);
	char paths[9][PATH_MAX];
	const char *cand[9];
	int n = 0;
	/* W2ru first (survives moving the pair together), then W2ku, then the bare name. */
	const uint32_t order[2] = { VHD_PLAT_W2RU, VHD_PLAT_W2KU };
	for (int o = 0; o < 2; o++)
		for (int i = 0; i < 8; i++) {
			const struct vhd_locator *l = &h->dyn.locators[i];
			uint32_t len = ld_be32(&l->data_length);
			uint64_t off = ld_be64(&l->data_offset);
			if (ld_be32(&l->platform_code) != order[o] || !len)
				continue;
			if (len > 2 * PATH_MAX || off > file_size || len > file_size - off)
				return vd_corrupt(d, "parent locator %d points outside the file", i);
			uint8_t raw[2 * PATH_MAX];
			int r = vf_pread(&d->f, raw, len, off);
			if (r < 0)
				return io_err(d, r, "parent locator");
			if (utf16_to_utf8(raw, len, false, paths[n], PATH_MAX) < 0)
				return vd_corrupt(d, "parent locator %d is not valid UTF-16", i);
			path_from_windows(paths[n]);
			cand[n] = paths[n];
			n++;
		}
	if (utf16_to_utf8(h->dyn.parent_name, sizeof(h->dyn.parent_name), true, paths[n], PATH_MAX) >= 0 &&
	    paths[n][0] && !strchr(paths[n], '/')) {
		cand[n] = paths[n];
		n++;
	}
	int r = vd_open_parent(d, cand, n);
	if (r < 0)
		return r;
	struct vdisk_info pi;
	vdisk_info(d->parent, &pi);
	if (pi.format != VDISK_FORMAT_VHD)
		return vd_corrupt(d, "parent %s is not a VHD file", d->parent_path);
	if (memcmp(pi.id, h->dyn.parent_unique_id, 16))
		return vd_err(EINVAL, d->path,
			      "parent %s is not the disk this child was made from (unique id differs; use Set-VHD to reconnect)",
			      d->parent_path);
	return 0;
}

/* ---- open ---- */

static const struct vdisk_ops vhd_ops;

int vhd_open(struct vdisk *d)
{
	struct vhd *h = calloc(1, sizeof(*h));
	if (!h)
		return vd_err(ENOMEM, d->path, "out of memory");
	d->priv = h;
	d->ops = &vhd_ops;
	d->format = VDISK_FORMAT_VHD;
	d->logical_sector = 512;
	uint64_t file_size;
	int r = vf_size(&d->f, &file_size);
	if (r < 0)
		return io_err(d, r, "size");
	bool tail_ok = file_size >= 512 && vf_pread(&d->f, &h->footer, 512, file_size - 512) == 0 &&
		       footer_ok(&h->footer);
	if (!tail_ok && (vf_pread(&d->f, &h->footer, 512, 0) < 0 || !footer_ok(&h->footer) ||
			 ld_be32(&h->footer.disk_type) == VHD_TYPE_FIXED))
		return vd_corrupt(d, "VHD footer is damaged (bad cookie or checksum) and has no usable copy");
	uint32_t type = ld_be32(&h->footer.disk_type);
	uint64_t size = ld_be64(&h->footer.current_size);
	if (type != VHD_TYPE_FIXED && type != VHD_TYPE_DYNAMIC && type != VHD_TYPE_DIFF)
		return vd_corrupt(d, "VHD disk type %u is not fixed (2), dynamic (3) or differencing (4)", type);
	if (size == 0 || size % 512 || size > VDISK_VHD_MAX_SIZE)
		return vd_corrupt(d, "VHD size %llu is zero, not a multiple of 512 or over 2040 GiB",
				  (unsigned long long)size);
	d->size = size;
	h->footer_off = tail_ok ? file_size - 512 : round_up(file_size, 512);
	if (type == VHD_TYPE_FIXED) {
		d->type = VDISK_TYPE_FIXED;
		if (size + 512 > file_size)
			return vd_corrupt(d, "fixed VHD of %llu bytes is truncated to %llu",
					  (unsigned long long)size, (unsigned long long)file_size);
		return 0;
	}
	d->type = type == VHD_TYPE_DIFF ? VDISK_TYPE_DIFFERENCING : VDISK_TYPE_DYNAMIC;
	uint64_t doff = ld_be64(&h->footer.data_offset);
	if (doff < 512 || doff > file_size || file_size - doff < 1024)
		return vd_corrupt(d, "dynamic header offset %llu is outside the file", (unsigned long long)doff);
	if ((r = vf_pread(&d->f, &h->dyn, sizeof(h->dyn), doff)) < 0)
		return io_err(d, r, "dynamic header");
	if (memcmp(h->dyn.cookie, VHD_SPARSE_COOKIE, 8) ||
	    vhd_checksum(&h->dyn, sizeof(h->dyn), offsetof(struct vhd_dyn_header, checksum)) != ld_be32(&h->dyn.checksum))
		return vd_corrupt(d, "dynamic header is damaged (bad cookie or checksum)");
	h->block_size = ld_be32(&h->dyn.block_size);
	h->max_entries = ld_be32(&h->dyn.max_table_entries);
	h->table_off = ld_be64(&h->dyn.table_offset);
	if (!is_pow2(h->block_size) || h->block_size < 4096 || h->block_size > 256 * MiB)
		return vd_corrupt(d, "block size %u is not a power of two from 4 KiB to 256 MiB", h->block_size);
	if ((uint64_t)h->max_entries * h->block_size < size)
		return vd_corrupt(d, "BAT has %u entries, too few for %llu bytes", h->max_entries, (unsigned long long)size);
	if (h->table_off > file_size || (uint64_t)h->max_entries * 4 > file_size - h->table_off)
		return vd_corrupt(d, "BAT at %llu with %u entries lies past the end of the file",
				  (unsigned long long)h->table_off, h->max_entries);
	h->bitmap_size = (uint32_t)round_up(h->block_size / 512 / 8, 512);
	h->bat = malloc((size_t)h->max_entries * 4 + 4);
	if (!h->bat)
		return vd_err(ENOMEM, d->path, "out of memory");
	if ((r = vf_pread(&d->f, h->bat, (size_t)h->max_entries * 4, h->table_off)) < 0)
		return io_err(d, r, "BAT");
	uint64_t meta_end = h->table_off + (uint64_t)h->max_entries * 4, n_areas = 0;
	struct area *areas = malloc((size_t)h->max_entries * sizeof(*areas) + sizeof(*areas));
	if (!areas)
		return vd_err(ENOMEM, d->path, "out of memory");
	for (uint32_t b = 0; b < h->max_entries; b++) {
		uint32_t e = h->bat[b] = be32toh(h->bat[b]);
		if (e == VHD_BAT_UNUSED)
			continue;
		uint64_t at = (uint64_t)e * 512, end = at + h->bitmap_size + h->block_size;
		if (end > file_size || (at < meta_end && end > doff)) {
			free(areas);
			return vd_corrupt(d, "BAT entry %u points at sector %u, outside the file or into its headers", b, e);
		}
		areas[n_areas++] = (struct area){ at, end - at, b };
		if (!tail_ok && end > h->footer_off)
			h->footer_off = end;
	}
	uint64_t a1, a2;
	bool overlap = areas_overlap(areas, n_areas, &a1, &a2);
	free(areas);
	if (overlap)
		return vd_corrupt(d, "BAT entries %llu and %llu point at overlapping blocks",
				  (unsigned long long)a1, (unsigned long long)a2);
	if (d->type == VDISK_TYPE_DIFFERENCING) {
		h->bitmaps = calloc(h->max_entries + 1, sizeof(*h->bitmaps));
		if (!h->bitmaps)
			return vd_err(ENOMEM, d->path, "out of memory");
		if (!d->no_parent)
			return open_parent(d, file_size);
	}
	return 0;
}

/* Rewrites both footer copies (dynamic) or the one footer (fixed). */
static int write_footers(struct vdisk *d)
{
	struct vhd *h = H(d);
	footer_seal(&h->footer);
	int r = vf_pwrite(&d->f, &h->footer, 512, h->footer_off);
	if (r == 0 && d->type != VDISK_TYPE_FIXED)
		r = vf_pwrite(&d->f, &h->footer, 512, 0);
	if (r == 0)
		r = vf_sync(&d->f);
	return r < 0 ? io_err(d, r, "footer") : 0;
}

static int vhd_set_parent(struct vdisk *d, struct vdisk *parent, const char *parent_path)
{
	struct vhd *h = H(d);
	struct vdisk_info pi;
	vdisk_info(parent, &pi);
	if (pi.format != VDISK_FORMAT_VHD)
		return vd_err(EINVAL, parent_path, "the parent of a VHD must be a VHD file");
	if (memcmp(pi.id, h->dyn.parent_unique_id, 16))
		return vd_err(EINVAL, parent_path, "is not the parent %s was made from (unique id differs)", d->path);
	uint8_t area[4 * PATH_MAX + 1024];
	size_t used;
	/* New locator strings go where the footer is; the footer moves behind them. */
	int r = fill_parent(&h->dyn, d->path, parent_path, &pi, area, sizeof(area), h->footer_off, &used);
	if (r < 0)
		return vd_err(-r, parent_path, "cannot record parent path: %s", strerror(-r));
	pthread_mutex_lock(&d->lock);
	r = vf_pwrite(&d->f, area, used, h->footer_off);
	if (r == 0) {
		h->footer_off += used;
		r = write_footers(d);
	}
	if (r == 0 && (r = vf_pwrite(&d->f, &h->dyn, sizeof(h->dyn), ld_be64(&h->footer.data_offset))) == 0)
		r = vf_sync(&d->f);
	pthread_mutex_unlock(&d->lock);
	return r < 0 ? io_err(d, r, "updating the parent locator") : 0;
}

/* Growing past the BAT's capacity: blocks that sit where the larger BAT must go move to the
 * end of the file first. */
static int grow_bat(struct vdisk *d, uint32_t entries)
{
	struct vhd *h = H(d);
	uint64_t table_end = h->table_off + round_up((uint64_t)entries * 4, 512);
	uint64_t blen = h->bitmap_size + (uint64_t)h->block_size;
	uint8_t *buf = malloc(blen);
	uint32_t *bat = realloc(h->bat, (size_t)entries * 4 + 4);
	if (!buf || !bat) {
		free(buf);
		return vd_err(ENOMEM, d->path, "out of memory");
	}
	h->bat = bat;
	int r = 0;
	for (uint32_t b = 0; r == 0 && b < h->max_entries; b++) {
		if (bat[b] == VHD_BAT_UNUSED || (uint64_t)bat[b] * 512 >= table_end)
			continue;
		uint64_t at = h->footer_off;
		r = vf_pread(&d->f, buf, blen, (uint64_t)bat[b] * 512);
		if (r == 0)
			r = vf_pwrite(&d->f, buf, blen, at);
		if (r == 0) {
			bat[b] = (uint32_t)(at / 512);
			h->footer_off = at + blen;
		}
	}
	for (uint32_t b = h->max_entries; b < entries; b++)
		bat[b] = VHD_BAT_UNUSED;
	free(buf);
	uint64_t tlen = table_end - h->table_off;
	uint8_t *table = r == 0 ? malloc(tlen) : NULL;
	if (r == 0 && !table)
		return vd_err(ENOMEM, d->path, "out of memory");
	if (r == 0) {
		memset(table, 0xff, tlen);
		for (uint32_t b = 0; b < entries; b++)
			st_be32(table + 4 * (uint64_t)b, bat[b]);
		r = vf_sync(&d->f); /* moved blocks are durable before the BAT points at them */
		if (r == 0)
			r = vf_pwrite(&d->f, table, tlen, h->table_off);
		free(table);
	}
	if (r == 0) {
		h->max_entries = entries;
		st_be32(&h->dyn.max_table_entries, entries);
		dyn_seal(&h->dyn);
		r = vf_pwrite(&d->f, &h->dyn, sizeof(h->dyn), ld_be64(&h->footer.data_offset));
	}
	return r < 0 ? io_err(d, r, "growing the BAT") : 0;
}

static int vhd_resize(struct vdisk *d, uint64_t size)
{
	struct vhd *h = H(d);
	if (size % 512 || size > VDISK_VHD_MAX_SIZE)
		return vd_err(EINVAL, d->path, "new size must be a multiple of 512 and at most 2040 GiB");
	pthread_mutex_lock(&d->lock);
	int r = 0;
	if (d->type == VDISK_TYPE_FIXED) {
		h->footer_off = size;
		r = vf_truncate(&d->f, size + 512);
	} else if (div_up(size, h->block_size) > h->max_entries) {
		r = grow_bat(d, (uint32_t)div_up(size, h->block_size));
	}
	uint16_t cyl;
	chs(size, &cyl, &h->footer.heads, &h->footer.sectors_per_track);
	st_be16(&h->footer.cylinders, cyl);
	st_be64(&h->footer.current_size, size);
	if (r == 0)
		r = write_footers(d);
	pthread_mutex_unlock(&d->lock);
	if (r < 0)
		return r;
	d->size = size;
	return 0;
}

static const struct vdisk_ops vhd_ops = {
	.read = vhd_read,
	.write = vhd_write,
	.flush = vhd_flush,
	.discard = vhd_discard,
	.block_status = vhd_block_status,
	.info = vhd_info,
	.close = vhd_close,
	.set_parent = vhd_set_parent,
	.resize = vhd_resize,
};

/* ---- create ---- */

int vhd_create(const char *path, const struct vdisk_create_params *p, struct vdisk *parent)
{
	uint32_t bs = p->block_size ? p->block_size : (uint32_t)(2 * MiB);
	uint64_t size = p->size;
	struct vdisk_info pi = { 0 };
	if (parent) {
		vdisk_info(parent, &pi);
		if (pi.format != VDISK_FORMAT_VHD)
			return vd_err(EINVAL, path, "the parent of a VHD must be a VHD file");
		size = pi.size;
	}
	if (size == 0 || size % 512 || size > VDISK_VHD_MAX_SIZE)
		return vd_err(EINVAL, path, "size %llu must be a multiple of 512 bytes and at most 2040 GiB",
			      (unsigned long long)size);
	if ((p->logical_sector && p->logical_sector != 512) || (p->physical_sector && p->physical_sector != 512 && p->physical_sector != 4096))
		return vd_err(EINVAL, path, "VHD has 512-byte logical sectors");
	if (!is_pow2(bs) || bs < 512 * 1024 || bs > 256 * MiB)
		return vd_err(EINVAL, path, "VHD block size %u is not a power of two from 512 KiB to 256 MiB", bs);
	struct vhd_footer f;
	memset(&f, 0, sizeof(f));
	memcpy(f.cookie, VHD_COOKIE, 8);
	st_be32(&f.features, 2);
	st_be32(&f.version, VHD_VERSION);
	st_be32(&f.timestamp, (uint32_t)(time(NULL) - VHD_EPOCH));
	/* Readers decide from the creator whether the size is current_size (Hyper-V) or the CHS
	 * geometry (Virtual PC); QEMU honours current_size only for known creators. Ours follows
	 * Hyper-V's rule, so say so. */
	memcpy(f.creator_app, "win ", 4);
	st_be32(&f.creator_version, 0x00010000);
	st_be32(&f.creator_os, 0x5769326B); /* "Wi2k", what Hyper-V writes */
	st_be64(&f.original_size, size);
	st_be64(&f.current_size, size);
	uint16_t cyl;
	chs(size, &cyl, &f.heads, &f.sectors_per_track);
	st_be16(&f.cylinders, cyl);
	st_be32(&f.disk_type, parent ? VHD_TYPE_DIFF : p->type == VDISK_TYPE_FIXED ? VHD_TYPE_FIXED : VHD_TYPE_DYNAMIC);
	struct guid id;
	guid_generate(&id);
	memcpy(f.unique_id, id.b, 16);

	struct vfile file;
	int r = vf_open(&file, path, true, true);
	if (r < 0)
		return vd_err(-r, path, "cannot create: %s", strerror(-r));
	if (p->type == VDISK_TYPE_FIXED && !parent) {
		st_be64(&f.data_offset, ~0ULL);
		footer_seal(&f);
		r = vf_truncate(&file, size);
		if (r == 0 && fallocate(file.fd, 0, 0, (off_t)size) < 0 && errno != EOPNOTSUPP)
			r = -errno;
		if (r == 0)
			r = vf_pwrite(&file, &f, 512, size);
	} else {
		uint32_t entries = (uint32_t)div_up(size, bs);
		uint64_t table_len = round_up((uint64_t)entries * 4, 512), at = 1536 + table_len;
		st_be64(&f.data_offset, 512);
		footer_seal(&f);
		struct vhd_dyn_header dh;
		memset(&dh, 0, sizeof(dh));
		memcpy(dh.cookie, VHD_SPARSE_COOKIE, 8);
		st_be64(&dh.data_offset, ~0ULL);
		st_be64(&dh.table_offset, 1536);
		st_be32(&dh.header_version, VHD_VERSION);
		st_be32(&dh.max_table_entries, entries);
		st_be32(&dh.block_size, bs);
		dyn_seal(&dh);
		uint8_t area[4 * PATH_MAX + 1024];
		size_t used = 0;
		if (parent)
			r = fill_parent(&dh, path, p->parent_path, &pi, area, sizeof(area), at, &used);
		uint8_t *bat = r == 0 ? malloc(table_len) : NULL;
		if (r == 0 && !bat)
			r = -ENOMEM;
		if (r == 0) {
			memset(bat, 0xff, table_len);
			r = vf_pwrite(&file, &f, 512, 0);
		}
		if (r == 0)
			r = vf_pwrite(&file, &dh, sizeof(dh), 512);
		if (r == 0)
			r = vf_pwrite(&file, bat, table_len, 1536);
		if (r == 0 && used)
			r = vf_pwrite(&file, area, used, at);
		if (r == 0)
			r = vf_pwrite(&file, &f, 512, at + used);
		free(bat);
	}
	if (r == 0)
		r = vf_sync(&file);
	vf_close(&file);
	if (r < 0) {
		unlink(path);
		return vd_err(-r, path, "cannot create: %s", strerror(-r));
	}
	return 0;
}
