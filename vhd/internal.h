/* Shared by the format drivers: the vdisk object, byte order, GUIDs, UTF-16, errors. */
#ifndef VIRIDIAN_VHD_INTERNAL_H
#define VIRIDIAN_VHD_INTERNAL_H

#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vhd/vdisk.h"
#include "vio.h"

#define MiB (1ULL << 20)

/* What each format implements. Offsets/lengths arrive validated and aligned. */
struct vdisk_ops {
	int (*read)(struct vdisk *d, void *buf, uint64_t off, size_t len);
	int (*write)(struct vdisk *d, const void *buf, uint64_t off, size_t len);
	int (*flush)(struct vdisk *d);
	int (*discard)(struct vdisk *d, uint64_t off, uint64_t len);
	int (*block_status)(struct vdisk *d, uint64_t off, uint64_t len, bool *alloc,
			    uint64_t *run);
	void (*info)(struct vdisk *d, struct vdisk_info *out);
	int (*close)(struct vdisk *d); /* flush metadata, free format state */
	/* Rewrite the parent reference (differencing only). */
	int (*set_parent)(struct vdisk *d, struct vdisk *parent, const char *parent_path);
	int (*resize)(struct vdisk *d, uint64_t size);
	/* Live merge (mirror.c), NULL where the format's identity does not change on writes (VHD):
	 * begin_write starts the parent's modification session now (VHDX: its new DataWriteGuid);
	 * relink points a child at the identity its parent has now. */
	int (*begin_write)(struct vdisk *d);
	int (*relink)(struct vdisk *d, struct vdisk *parent);
};

struct vdisk {
	const struct vdisk_ops *ops;
	struct vfile f;
	char *path;
	bool writable;
	bool no_parent;          /* opened to repair the parent link: the chain is not opened */
	enum vdisk_format format;
	enum vdisk_type type;
	uint64_t size;           /* virtual size */
	uint32_t logical_sector;
	struct vdisk *parent;    /* differencing: opened read-only */
	char *parent_path;       /* as resolved from the locator */
	pthread_mutex_t lock;    /* format metadata (BAT, bitmaps, log) */
	void *priv;              /* format state */
};

/* vdisk_open plus internal flags. */
#define VDISK_OPEN_NO_PARENT 0x100
#define VDISK_OPEN_NO_LOCK   0x200  /* parents in a chain: merge writes to one while it is open */
int vd_open(const char *path, unsigned flags, struct vdisk **out);
/* Frees a vdisk whose format state is gone (ops->close done), and its parent chain. */
void vd_free(struct vdisk *d);
/* .vhdx/.avhdx -> VHDX, .vhd/.avhd -> VHD, anything else raw. */
enum vdisk_format vd_format_from_name(const char *path);

/* Formats. probe() says whether the first 64 KiB look like theirs. */
int raw_open(struct vdisk *d);
int raw_create(const char *path, const struct vdisk_create_params *p);
bool vhd_probe(struct vfile *f, uint64_t file_size);
int vhd_open(struct vdisk *d);
int vhd_create(const char *path, const struct vdisk_create_params *p, struct vdisk *parent);
bool vhdx_probe(const unsigned char *first, size_t len);
int vhdx_open(struct vdisk *d);
int vhdx_create(const char *path, const struct vdisk_create_params *p, struct vdisk *parent);

/* Error reporting: formats record "path: problem" for vdisk_last_error(). Returns -err. */
int vd_err(int err, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A structural defect in a file: -EINVAL plus the message. */
#define vd_corrupt(d, ...) vd_err(EINVAL, (d)->path, __VA_ARGS__)

/* Open the parent named by a differencing disk, relative to the child's directory first. */
int vd_open_parent(struct vdisk *d, const char *const *candidates, int n);
/* Read from the parent chain, zeros when there is none. */
int vd_read_parent(struct vdisk *d, void *buf, uint64_t off, size_t len);

/* Byte order: VHD is big-endian, VHDX little-endian; all wire access goes via these. */
static inline uint16_t ld_le16(const void *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t ld_le32(const void *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t ld_le64(const void *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static inline uint16_t ld_be16(const void *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static inline uint32_t ld_be32(const void *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static inline uint64_t ld_be64(const void *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static inline void st_le16(void *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void st_le32(void *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void st_le64(void *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static inline void st_be16(void *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static inline void st_be32(void *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static inline void st_be64(void *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }

static inline uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
static inline uint64_t div_up(uint64_t v, uint64_t a) { return (v + a - 1) / a; }
static inline bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

/* GUIDs as stored on disk (Windows mixed-endian layout). */
struct guid { uint8_t b[16]; };
void guid_generate(struct guid *g);
bool guid_is_zero(const struct guid *g);
/* "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" (39 bytes with NUL) and back. */
void guid_format(const struct guid *g, char out[39]);
bool guid_parse(const char *s, struct guid *g);

/* UTF-16 (LE or BE) <-> UTF-8. Returns bytes written or -1 on bad input / no room. */
int utf16_to_utf8(const uint8_t *in, size_t in_bytes, bool big_endian, char *out, size_t out_size);
int utf8_to_utf16(const char *in, bool big_endian, uint8_t *out, size_t out_size);

/* Paths stored in locators use Windows separators. */
void path_to_windows(char *s);
void path_from_windows(char *s);
/* Path of `target` relative to the directory holding `from` (both made absolute). */
int path_relative(const char *from, const char *target, char *out, size_t out_size);

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

bool buf_is_zero(const void *buf, size_t len);

/* File areas a table points at (BAT entries); `index` names the entry in errors. */
struct area {
	uint64_t off, len, index;
};
/* Sorts the areas; true if two overlap (their indices in *a, *b). */
bool areas_overlap(struct area *areas, size_t n, uint64_t *a, uint64_t *b);

#endif
