/* bootcfg: what a guest disk says to boot, parsed without any I/O (docs/boot.md).
 *
 * The disk is guest-controlled: every function here takes bytes the guest wrote, bounds-checks
 * them and fails with a one-line message in err (never longer than errlen) instead of crashing.
 * worker/diskboot.c does the reading (in a sandboxed child) and hands the bytes in.
 *  - Partition tables: MBR primary partitions and GPT (header and entry array CRCs checked).
 *  - GRUB's grub.cfg: a subset of its script (menuentry/submenu, linux/initrd, set, plain
 *    assignments, if/elif/else/fi on `[ ... ]` tests, load_env from grubenv); the default entry
 *    by index, title, id, "a>b" submenu paths and saved_entry/next_entry.
 *  - BLS (Boot Loader Specification) entries: title, version, linux, initrd, options; the
 *    default from loader.conf's `default` glob, else the newest version.
 */
#ifndef VIRIDIAN_WORKER_BOOTCFG_H
#define VIRIDIAN_WORKER_BOOTCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BOOTCFG_PATH_MAX     1024         /* a path in a config file, with its NUL */
#define BOOTCFG_CMDLINE_MAX  4096         /* the kernel command line, with its NUL */
#define BOOTCFG_TITLE_MAX    256
#define BOOTCFG_MAX_INITRDS  4            /* initrds of one entry, concatenated in order */
#define BOOTCFG_LINE_MAX     16384        /* a longer (logical) line is an error */
#define BOOTCFG_FILE_MAX     (4u << 20)   /* grub.cfg, grubenv, loader.conf, a BLS entry */
#define BOOTCFG_MAX_ITEMS    256          /* menu entries and submenus of a grub.cfg */
#define BOOTCFG_MAX_PARTITIONS 128

struct boot_entry {
	char title[BOOTCFG_TITLE_MAX];
	char kernel[BOOTCFG_PATH_MAX];    /* as written, any "(device)" prefix removed */
	char initrd[BOOTCFG_MAX_INITRDS][BOOTCFG_PATH_MAX];
	unsigned ninitrd;
	char cmdline[BOOTCFG_CMDLINE_MAX];
};

/* grub.cfg's default entry. grubenv (may be NULL) is the text of /boot/grub/grubenv, applied
 * where the script runs load_env. A default that names no entry falls back to the first one,
 * as GRUB does. */
bool bootcfg_grub_parse(const char *text, size_t len, const char *grubenv, size_t envlen,
			struct boot_entry *out, char *err, size_t errlen);

/* One BLS entry file (/boot/loader/entries/NAME.conf). */
bool bootcfg_bls_parse(const char *text, size_t len, struct boot_entry *out, char *err, size_t errlen);

/* Which of n BLS entry file names is the default: loader.conf's `default PATTERN` (a glob on
 * the file name with or without ".conf"; loader_conf may be NULL), else the one whose name
 * sorts last by version. -1 when n is 0. */
int bootcfg_bls_pick(const char *const *names, unsigned n, const char *loader_conf, size_t len);

/* A path made absolute and lexical: "." and empty parts dropped, ".." removed with the part
 * before it and never above "/". false when the result would not fit in outlen. */
bool bootcfg_path_normalize(const char *in, char *out, size_t outlen);

/* Partition tables. Offsets and sizes in bytes, each checked to lie inside the disk. */
struct bootcfg_partition {
	uint64_t start, size;
	uint8_t mbr_type;                  /* 0 on GPT */
	uint8_t gpt_type[16];              /* on-disk (mixed-endian) GUID bytes; zeros on MBR */
};

enum bootcfg_table { BOOTCFG_TABLE_NONE, BOOTCFG_TABLE_MBR, BOOTCFG_TABLE_GPT };

/* Sector 0: with no MBR signature *kind is NONE (a whole-disk file system); a protective MBR
 * (type 0xEE) gives GPT (then read LBA 1); else MBR and its primary partitions in out. LBAs are
 * in sector_size units (the disk's logical sector). Returns the number of partitions, or -1
 * with err. */
int bootcfg_mbr_parse(const uint8_t sector0[512], uint32_t sector_size, uint64_t disk_size,
		      enum bootcfg_table *kind, struct bootcfg_partition *out, unsigned max, char *err,
		      size_t errlen);

struct bootcfg_gpt {
	uint64_t entries_lba;
	uint32_t nentries, entry_size, entries_crc, sector_size;
};

/* The GPT header: the first 512 bytes of LBA 1. */
bool bootcfg_gpt_header_parse(const uint8_t hdr[512], uint32_t sector_size, uint64_t disk_size,
			      struct bootcfg_gpt *g, char *err, size_t errlen);
/* Bytes of the entry array to read after the header: nentries * entry_size. */
size_t bootcfg_gpt_entries_size(const struct bootcfg_gpt *g);
/* The used entries of the array (len bytes, bootcfg_gpt_entries_size of them), in order. */
int bootcfg_gpt_entries_parse(const uint8_t *buf, size_t len, const struct bootcfg_gpt *g, uint64_t disk_size,
			      struct bootcfg_partition *out, unsigned max, char *err, size_t errlen);

/* Whether a partition could hold a Linux file system (not an ESP, BIOS boot, swap, LVM, RAID
 * or extended partition). */
bool bootcfg_partition_may_hold_linux(const struct bootcfg_partition *p);

#endif
