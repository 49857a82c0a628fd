/* diskboot: boot a VM from its first disk (Generation 1, no --kernel; docs/boot.md).
 *
 * The disk is guest-controlled, so everything that reads it runs in a child process forked
 * for the purpose: it opens the image (raw, VHD, VHDX, differencing chains) read-only, then
 * locks itself down with a seccomp filter (little more than read/pread, write to its pipe,
 * memory and exit) before it reads the partition table, the ext2/3/4 file system (libext2fs,
 * never mounted), grub.cfg or BLS entries, the kernel and the initrd. Paths resolve inside the
 * guest file system only (symlinks followed at most DISKBOOT_MAX_LINKS deep, ".." stopping at
 * its root). The results come back over a pipe with checked lengths; a child that takes longer
 * than DISKBOOT_TIMEOUT_MS is killed. */
#ifndef VIRIDIAN_WORKER_DISKBOOT_H
#define VIRIDIAN_WORKER_DISKBOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/bootcfg.h"

#define DISKBOOT_KERNEL_MAX  (256u << 20)
#define DISKBOOT_INITRD_MAX  (1u << 30)
#define DISKBOOT_TIMEOUT_MS  10000
#define DISKBOOT_MAX_LINKS   8
#define DISKBOOT_TEXT_MAX    512   /* an error line or the description of what was found */

/* The pipe's header; then text_len bytes of text, cmdline_len bytes of command line, the
 * kernel and the initrd. */
struct diskboot_msg {
	uint32_t magic;
	uint32_t ok;
	uint64_t kernel_size;
	uint64_t initrd_size;
	uint32_t text_len;
	uint32_t cmdline_len;
};
_Static_assert(sizeof(struct diskboot_msg) == 32, "diskboot_msg layout");
_Static_assert(__builtin_offsetof(struct diskboot_msg, text_len) == 24, "diskboot_msg layout");
#define DISKBOOT_MAGIC 0x544f4244u /* "DBOT" */

struct diskboot_result {
	uint8_t *kernel;
	size_t kernel_size;
	uint8_t *initrd;                   /* NULL when the entry has none */
	size_t initrd_size;
	char cmdline[BOOTCFG_CMDLINE_MAX];
	char what[DISKBOOT_TEXT_MAX];      /* "entry 'Debian' from partition 1 /boot/grub/grub.cfg" */
};

/* Loads what disk_path boots. initrd_max further limits the initrd (the guest's memory).
 * false with a one-line message in err. */
bool diskboot_load(const char *disk_path, uint64_t initrd_max, struct diskboot_result *r, char *err, size_t errlen);
void diskboot_free(struct diskboot_result *r);

/* The worker's side of the pipe: reads one reply from fd within timeout_ms, checking every
 * length against the limits above (and the initrd against initrd_max) before it allocates.
 * OK fills r; ERROR: the loader's own error line in err; BAD, TIMEOUT, CUT: what was wrong. */
enum { DISKBOOT_REPLY_OK, DISKBOOT_REPLY_ERROR, DISKBOOT_REPLY_BAD, DISKBOOT_REPLY_TIMEOUT, DISKBOOT_REPLY_CUT };
int diskboot_read_reply(int fd, int timeout_ms, uint64_t initrd_max, struct diskboot_result *r, char *err, size_t errlen);

#endif
