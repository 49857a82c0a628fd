/* Boot from disk: the sandboxed loader child and the worker's side of its pipe
 * (include/worker/diskboot.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2_io.h>
#include <ext2fs/ext2fs.h>

#include "vhd/vdisk.h"
#include "worker/diskboot.h"

#define CHILD_FD 3        /* the pipe's write end in the child */
#define CHUNK (1u << 20)  /* file data goes through the pipe in pieces this big */
#define MAX_BLS_ENTRIES 256

/* ---- The child ---- */

/* The slice of the disk one file system lives in. The io_manager's open() only gets a name,
 * and the child reads one disk: so this is the child's one piece of state. */
static struct {
	struct vdisk *disk;
	int raw_fd;          /* a raw image is read directly: vdisk's raw reads fstat every time */
	uint64_t base, size;
} part = { .raw_fd = -1 };

static int disk_read(void *buf, uint64_t off, size_t len)
{
	if (part.raw_fd < 0)
		return vdisk_read(part.disk, buf, off, len);
	/* Past the end of the file reads as zeros, as vdisk's raw images do. */
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(part.raw_fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset((uint8_t *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

static errcode_t vio_read64(io_channel ch, unsigned long long block, int count, void *data)
{
	uint64_t len = count < 0 ? (uint64_t)-(int64_t)count : (uint64_t)count * (uint64_t)ch->block_size;
	uint64_t off = block * (uint64_t)ch->block_size;
	if (block > part.size / (uint64_t)ch->block_size || len > part.size - off)
		return EXT2_ET_SHORT_READ;
	off += part.base;
	/* vdisk reads whole 512-byte sectors: go through a bounce buffer at unaligned edges. */
	uint64_t start = off & ~511ull, end = (off + len + 511) & ~511ull;
	if (start == off && end == off + len)
		return disk_read(data, off, len) < 0 ? EXT2_ET_SHORT_READ : 0;
	uint8_t *tmp = malloc(end - start);
	if (!tmp)
		return EXT2_ET_NO_MEMORY;
	errcode_t r = disk_read(tmp, start, end - start) < 0 ? EXT2_ET_SHORT_READ : 0;
	if (!r)
		memcpy(data, tmp + (off - start), len);
	free(tmp);
	return r;
}

static errcode_t vio_read(io_channel ch, unsigned long block, int count, void *data)
{
	return vio_read64(ch, block, count, data);
}

static errcode_t vio_write(io_channel ch, unsigned long block, int count, const void *data)
{
	(void)ch, (void)block, (void)count, (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t vio_write64(io_channel ch, unsigned long long block, int count, const void *data)
{
	(void)ch, (void)block, (void)count, (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t vio_set_blksize(io_channel ch, int blksize)
{
	if (blksize < 512 || blksize > 65536)
		return EXT2_ET_INVALID_ARGUMENT;
	ch->block_size = blksize;
	return 0;
}

static errcode_t vio_flush(io_channel ch)
{
	(void)ch;
	return 0;
}

static errcode_t vio_set_option(io_channel ch, const char *option, const char *arg)
{
	(void)ch, (void)option, (void)arg;
	return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t vio_close(io_channel ch)
{
	if (--ch->refcount > 0)
		return 0;
	free(ch->name);
	free(ch);
	return 0;
}

static errcode_t vio_open(const char *name, int flags, io_channel *out);

static struct struct_io_manager vdisk_io_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "viridian vdisk",
	.open = vio_open,
	.close = vio_close,
	.set_blksize = vio_set_blksize,
	.read_blk = vio_read,
	.write_blk = vio_write,
	.flush = vio_flush,
	.set_option = vio_set_option,
	.read_blk64 = vio_read64,
	.write_blk64 = vio_write64,
};

static errcode_t vio_open(const char *name, int flags, io_channel *out)
{
	if (flags & IO_FLAG_RW)
		return EXT2_ET_RO_FILSYS;
	io_channel ch = calloc(1, sizeof(*ch));
	if (!ch || !(ch->name = strdup(name))) {
		free(ch);
		return EXT2_ET_NO_MEMORY;
	}
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &vdisk_io_manager;
	ch->block_size = 1024;
	ch->refcount = 1;
	*out = ch;
	return 0;
}

struct child {
	char err[DISKBOOT_TEXT_MAX];
	ext2_filsys fs;
	char where[64];        /* "partition 2", "the disk" */
	char base[8];          /* the directory grub/ or loader/ was found in: "/boot" or "" */
};

static bool cfail(struct child *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return false;
}

static bool write_all(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(CHILD_FD, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* The inode a path names inside the file system: symlinks are followed (at most
 * DISKBOOT_MAX_LINKS), ".." is lexical and stops at the root. 0 with c->err set. */
static ext2_ino_t resolve(struct child *c, const char *path, struct ext2_inode *inode, bool quiet)
{
	char cur[BOOTCFG_PATH_MAX];
	if (!bootcfg_path_normalize(path, cur, sizeof(cur)))
		return cfail(c, "path too long: %.200s", path), 0;
	for (unsigned links = 0;;) {
		ext2_ino_t ino = EXT2_ROOT_INO;
		if (ext2fs_read_inode(c->fs, ino, inode))
			return cfail(c, "%s: cannot read the root directory", c->where), 0;
		const char *p = cur + 1;
		bool restarted = false;
		while (*p && !restarted) {
			size_t len = strcspn(p, "/");
			ext2_ino_t child;
			if (!LINUX_S_ISDIR(inode->i_mode))
				return cfail(c, "%.200s: not found (a path component is not a directory)", path), 0;
			errcode_t e = ext2fs_lookup(c->fs, ino, p, (int)len, NULL, &child);
			if (e) {
				if (!quiet)
					cfail(c, "%.200s: %s in the guest file system on %s", path,
					      e == EXT2_ET_FILE_NOT_FOUND ? "not found" : error_message(e), c->where);
				return 0;
			}
			if (ext2fs_read_inode(c->fs, child, inode))
				return cfail(c, "%.200s: cannot read inode %u", path, child), 0;
			if (LINUX_S_ISLNK(inode->i_mode)) {
				if (++links > DISKBOOT_MAX_LINKS)
					return cfail(c, "%.200s: more than %u symbolic links (a loop?)", path, DISKBOOT_MAX_LINKS), 0;
				char target[BOOTCFG_PATH_MAX];
				uint64_t size = EXT2_I_SIZE(inode);
				if (size == 0 || size >= sizeof(target))
					return cfail(c, "%.200s: symbolic link of %llu bytes", path, (unsigned long long)size), 0;
				if (ext2fs_is_fast_symlink(inode)) {
					memcpy(target, (const char *)inode->i_block, size);
				} else {
					ext2_file_t f;
					unsigned got = 0;
					if (ext2fs_file_open2(c->fs, child, inode, 0, &f))
						return cfail(c, "%.200s: cannot read a symbolic link", path), 0;
					e = ext2fs_file_read(f, target, (unsigned)size, &got);
					ext2fs_file_close(f);
					if (e || got != size)
						return cfail(c, "%.200s: cannot read a symbolic link", path), 0;
				}
				target[size] = '\0';
				/* The rest of the path, after the target: relative targets from the link's directory. */
				char next[2 * BOOTCFG_PATH_MAX + 2];
				int n = snprintf(next, sizeof(next), "%.*s/%s/%s", target[0] == '/' ? 0 : (int)(p - cur), cur,
						 target, p + len);
				if (n < 0 || (size_t)n >= sizeof(next) || !bootcfg_path_normalize(next, cur, sizeof(cur)))
					return cfail(c, "%.200s: path too long after symbolic links", path), 0;
				restarted = true;
				break;
			}
			ino = child;
			p += len;
			while (*p == '/')
				p++;
		}
		if (!restarted)
			return ino;
	}
}

/* A whole (small) file into memory; NULL with c->err set. */
static char *slurp(struct child *c, const char *path, size_t *len, bool quiet)
{
	struct ext2_inode inode;
	ext2_ino_t ino = resolve(c, path, &inode, quiet);
	if (!ino)
		return NULL;
	uint64_t size = EXT2_I_SIZE(&inode);
	if (!LINUX_S_ISREG(inode.i_mode))
		return cfail(c, "%s: not a regular file", path), NULL;
	if (size > BOOTCFG_FILE_MAX)
		return cfail(c, "%s is larger than %u bytes", path, BOOTCFG_FILE_MAX), NULL;
	char *buf = malloc(size + 1);
	ext2_file_t f;
	unsigned got = 0;
	if (!buf || ext2fs_file_open2(c->fs, ino, &inode, 0, &f)) {
		free(buf);
		return cfail(c, "%s: cannot open", path), NULL;
	}
	errcode_t e = ext2fs_file_read(f, buf, (unsigned)size, &got);
	ext2fs_file_close(f);
	if (e || got != size) {
		free(buf);
		return cfail(c, "%s: read error: %s", path, e ? error_message(e) : "short read"), NULL;
	}
	buf[size] = '\0';
	*len = size;
	return buf;
}

struct bls_names {
	char *names[MAX_BLS_ENTRIES];
	unsigned n;
};

static int bls_collect(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset, int blocksize, char *buf, void *priv)
{
	(void)dir, (void)entry, (void)offset, (void)blocksize, (void)buf;
	struct bls_names *b = priv;
	size_t len = ext2fs_dirent_name_len(de);
	if (len > 5 && !memcmp(de->name + len - 5, ".conf", 5) && b->n < MAX_BLS_ENTRIES && memchr(de->name, '/', len) == NULL)
		b->names[b->n++] = strndup(de->name, len);
	return 0;
}

/* The boot entry of the file system in c->fs: grub.cfg first, else BLS. 1 found, 0 none here,
 * -1 error (c->err). */
static int find_config(struct child *c, struct boot_entry *e, char *source, size_t srclen)
{
	static const char *const bases[] = { "/boot", "" };
	for (size_t i = 0; i < 2; i++) {
		char path[64];
		size_t len, envlen = 0;
		snprintf(path, sizeof(path), "%s/grub/grub.cfg", bases[i]);
		char *cfg = slurp(c, path, &len, true);
		if (!cfg && c->err[0])
			return -1;
		if (!cfg)
			continue;
		snprintf(c->base, sizeof(c->base), "%s", bases[i]);
		snprintf(path, sizeof(path), "%s/grub/grubenv", bases[i]);
		char *env = slurp(c, path, &envlen, true);
		c->err[0] = '\0'; /* grubenv is optional */
		bool ok = bootcfg_grub_parse(cfg, len, env, envlen, e, c->err, sizeof(c->err));
		free(cfg);
		free(env);
		snprintf(source, srclen, "%s/grub/grub.cfg", bases[i]);
		return ok ? 1 : -1;
	}
	for (size_t i = 0; i < 2; i++) {
		char path[64];
		snprintf(path, sizeof(path), "%s/loader/entries", bases[i]);
		struct ext2_inode inode;
		ext2_ino_t dir = resolve(c, path, &inode, true);
		if (!dir) {
			if (c->err[0])
				return -1;
			continue;
		}
		if (!LINUX_S_ISDIR(inode.i_mode))
			continue;
		snprintf(c->base, sizeof(c->base), "%s", bases[i]);
		struct bls_names b = { .n = 0 };
		errcode_t err = ext2fs_dir_iterate2(c->fs, dir, 0, NULL, bls_collect, &b);
		int r = -1;
		if (err) {
			cfail(c, "%s: cannot list: %s", path, error_message(err));
		} else if (b.n == 0) {
			cfail(c, "%s on %s has no *.conf entries", path, c->where);
		} else {
			size_t conflen = 0;
			snprintf(path, sizeof(path), "%s/loader/loader.conf", bases[i]);
			char *conf = slurp(c, path, &conflen, true);
			c->err[0] = '\0';
			int pick = bootcfg_bls_pick((const char *const *)b.names, b.n, conf, conflen);
			free(conf);
			char entry[64 + 256];
			snprintf(entry, sizeof(entry), "%s/loader/entries/%s", bases[i], b.names[pick]);
			size_t len;
			char *text = slurp(c, entry, &len, false);
			if (text && bootcfg_bls_parse(text, len, e, c->err, sizeof(c->err))) {
				snprintf(source, srclen, "%s", entry);
				r = 1;
			} else if (text) {
				char why[sizeof(c->err)];
				snprintf(why, sizeof(why), "%s", c->err);
				cfail(c, "%s: %s", entry, why);
			}
			free(text);
		}
		for (unsigned k = 0; k < b.n; k++)
			free(b.names[k]);
		return r;
	}
	return 0;
}

struct bootfile {
	char path[BOOTCFG_PATH_MAX];
	ext2_ino_t ino;
	struct ext2_inode inode;
	uint64_t size;
};

/* A kernel or initrd named by the configuration: as written, else relative to the directory
 * the configuration was in (a grub.cfg on a separate /boot naming /boot/...; BLS paths
 * relative to /boot). */
static bool find_file(struct child *c, const char *name, const char *kind, uint64_t max, struct bootfile *f)
{
	char alt[BOOTCFG_PATH_MAX];
	alt[0] = '\0';
	if (c->base[0])
		snprintf(alt, sizeof(alt), "%s/%s", c->base, name);
	else if (!strncmp(name, "/boot/", 6))
		snprintf(alt, sizeof(alt), "%s", name + 5);
	c->err[0] = '\0';
	snprintf(f->path, sizeof(f->path), "%s", name);
	f->ino = resolve(c, name, &f->inode, alt[0] != '\0');
	if (!f->ino && alt[0] && !c->err[0]) {
		snprintf(f->path, sizeof(f->path), "%s", alt);
		f->ino = resolve(c, alt, &f->inode, true);
		if (!f->ino && !c->err[0])
			cfail(c, "the %s %.200s is not in the guest file system on %s", kind, name, c->where);
	}
	if (!f->ino)
		return false;
	if (!LINUX_S_ISREG(f->inode.i_mode))
		return cfail(c, "the %s %.200s is not a regular file", kind, name);
	f->size = EXT2_I_SIZE(&f->inode);
	if (f->size == 0)
		return cfail(c, "the %s %.200s is empty", kind, name);
	if (f->size > max)
		return cfail(c, "the %s %.200s is larger than %llu MiB", kind, name, (unsigned long long)(max >> 20));
	return true;
}

static bool send_file(struct child *c, const struct bootfile *f, uint8_t *buf)
{
	ext2_file_t file;
	if (ext2fs_file_open2(c->fs, f->ino, (struct ext2_inode *)&f->inode, 0, &file))
		return cfail(c, "%s: cannot open", f->path);
	uint64_t done = 0;
	errcode_t e = 0;
	while (done < f->size) {
		unsigned want = f->size - done < CHUNK ? (unsigned)(f->size - done) : CHUNK, got = 0;
		if ((e = ext2fs_file_read(file, buf, want, &got)) || got == 0)
			break;
		if (!write_all(buf, got))
			break;
		done += got;
	}
	ext2fs_file_close(file);
	if (done != f->size)
		return cfail(c, "%s: read error: %s", f->path, e ? error_message(e) : "short read");
	return true;
}

static bool sandbox(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return false;
	static const int allowed[] = {
		SCMP_SYS(read), SCMP_SYS(pread64), SCMP_SYS(preadv), SCMP_SYS(mmap), SCMP_SYS(munmap),
		SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(madvise), SCMP_SYS(exit), SCMP_SYS(exit_group),
		SCMP_SYS(rt_sigreturn), SCMP_SYS(futex), SCMP_SYS(clock_gettime),
		/* libext2fs's secure getenv asks these; AddressSanitizer's noreturn hook sigaltstack */
		SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(sigaltstack),
	};
	int r = 0;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && r == 0; i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(write), 1, SCMP_A0(SCMP_CMP_EQ, CHILD_FD, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_DUMPABLE, 0));
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	return r == 0;
}

/* Finds and loads the boot entry; true once the whole reply was sent. */
static bool child_run(struct child *c, const char *disk_path)
{
	if (vdisk_open(disk_path, 0, &part.disk) < 0)
		return cfail(c, "%s", vdisk_last_error());
	struct vdisk_info info; /* sizes of the host's files: fstat, before the filter */
	if (vdisk_info(part.disk, &info) < 0)
		return cfail(c, "%s", vdisk_last_error());
	if (info.format == VDISK_FORMAT_RAW && (part.raw_fd = open(disk_path, O_RDONLY | O_CLOEXEC)) < 0)
		return cfail(c, "%s: %s", disk_path, strerror(errno));
	if (!sandbox())
		return cfail(c, "cannot set up the loader's seccomp filter");
	/* From here on everything read is the guest's. */
	uint8_t s0[512], lba1[512];
	if (info.size < 4096 || disk_read(s0, 0, 512) < 0)
		return cfail(c, "the disk is too small or unreadable (%llu bytes)", (unsigned long long)info.size);
	struct bootcfg_partition parts[BOOTCFG_MAX_PARTITIONS];
	enum bootcfg_table kind;
	int n = bootcfg_mbr_parse(s0, info.logical_sector, info.size, &kind, parts, BOOTCFG_MAX_PARTITIONS, c->err, sizeof(c->err));
	if (n < 0)
		return false;
	if (kind == BOOTCFG_TABLE_GPT) {
		struct bootcfg_gpt g;
		if (disk_read(lba1, info.logical_sector, 512) < 0)
			return cfail(c, "cannot read the GPT header");
		if (!bootcfg_gpt_header_parse(lba1, info.logical_sector, info.size, &g, c->err, sizeof(c->err)))
			return false;
		size_t len = bootcfg_gpt_entries_size(&g), rlen = (len + 511) & ~(size_t)511;
		uint8_t *ents = malloc(rlen);
		if (!ents || disk_read(ents, g.entries_lba * info.logical_sector, rlen) < 0) {
			free(ents);
			return cfail(c, "cannot read the GPT partition entries");
		}
		n = bootcfg_gpt_entries_parse(ents, len, &g, info.size, parts, BOOTCFG_MAX_PARTITIONS, c->err, sizeof(c->err));
		free(ents);
		if (n < 0)
			return false;
	} else if (kind == BOOTCFG_TABLE_NONE) {
		parts[0] = (struct bootcfg_partition){ .start = 0, .size = info.size };
		n = 1;
	}
	char first_err[DISKBOOT_TEXT_MAX] = "";
	struct boot_entry *e = malloc(sizeof(*e));
	char source[BOOTCFG_PATH_MAX];
	int found = 0;
	for (int i = 0; i < n && !found && e; i++) {
		if (kind != BOOTCFG_TABLE_NONE && !bootcfg_partition_may_hold_linux(&parts[i]))
			continue;
		part.base = parts[i].start;
		part.size = parts[i].size;
		if (kind == BOOTCFG_TABLE_NONE)
			snprintf(c->where, sizeof(c->where), "the disk");
		else
			snprintf(c->where, sizeof(c->where), "partition %d", i + 1);
		c->err[0] = '\0';
		errcode_t err = ext2fs_open2("vdisk", NULL, EXT2_FLAG_64BITS, 0, 0, &vdisk_io_manager, &c->fs);
		if (err) {
			if (!first_err[0])
				snprintf(first_err, sizeof(first_err), "%s: no ext2/3/4 file system (%s)", c->where, error_message(err));
			c->fs = NULL;
			continue;
		}
		found = find_config(c, e, source, sizeof(source));
		if (found < 0)
			return free(e), false;
		if (!found)
			ext2fs_close_free(&c->fs);
	}
	if (!e)
		return cfail(c, "out of memory");
	if (!found) {
		free(e);
		if (n == 0)
			return cfail(c, "the disk's partition table has no partitions");
		return cfail(c, "no /boot/grub/grub.cfg or /boot/loader/entries on any ext2/3/4 file system of the disk%s%s",
			     first_err[0] ? "; " : "", first_err);
	}
	struct bootfile kernel, initrds[BOOTCFG_MAX_INITRDS];
	if (!find_file(c, e->kernel, "kernel", DISKBOOT_KERNEL_MAX, &kernel))
		return free(e), false;
	uint64_t initrd_total = 0;
	for (unsigned i = 0; i < e->ninitrd; i++) {
		if (!find_file(c, e->initrd[i], "initrd", DISKBOOT_INITRD_MAX, &initrds[i]))
			return free(e), false;
		initrd_total = (initrd_total + 3) & ~3ull; /* each initrd starts 4-byte aligned, as GRUB does */
		initrd_total += initrds[i].size;
		if (initrd_total > DISKBOOT_INITRD_MAX)
			return free(e), cfail(c, "the initrds together are larger than %u MiB", DISKBOOT_INITRD_MAX >> 20);
	}
	char text[DISKBOOT_TEXT_MAX];
	snprintf(text, sizeof(text), "entry '%.100s' of %s %.120s: %.150s", e->title[0] ? e->title : "(untitled)", c->where,
		 source, kernel.path);
	struct diskboot_msg m = { .magic = DISKBOOT_MAGIC, .ok = 1, .kernel_size = kernel.size, .initrd_size = initrd_total,
				  .text_len = (uint32_t)strlen(text), .cmdline_len = (uint32_t)strlen(e->cmdline) };
	uint8_t *buf = malloc(CHUNK);
	bool ok = buf && write_all(&m, sizeof(m)) && write_all(text, m.text_len) && write_all(e->cmdline, m.cmdline_len) &&
		  send_file(c, &kernel, buf);
	uint64_t sent = 0;
	for (unsigned i = 0; ok && i < e->ninitrd; i++) {
		static const uint8_t zeros[4];
		uint64_t pad = ((sent + 3) & ~3ull) - sent;
		ok = write_all(zeros, (size_t)pad) && send_file(c, &initrds[i], buf);
		sent += pad + initrds[i].size;
	}
	free(buf);
	free(e);
	/* After the header went out, a failure can only be told by the pipe ending early. */
	if (!ok)
		_exit(2);
	return true;
}

static void child_main(const char *disk_path, int wfd)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		dup2(nul, STDOUT_FILENO);
	}
	if (wfd != CHILD_FD && dup2(wfd, CHILD_FD) < 0)
		_exit(3);
	close_range(CHILD_FD + 1, ~0u, 0); /* nothing of the worker's but the disk it opens next */
	initialize_ext2_error_table(); /* error_message() names libext2fs's codes */
	struct child c = { .err = "" };
	if (!child_run(&c, disk_path)) {
		struct diskboot_msg m = { .magic = DISKBOOT_MAGIC, .ok = 0, .text_len = (uint32_t)strlen(c.err) };
		write_all(&m, sizeof(m));
		write_all(c.err, m.text_len);
	}
	_exit(0);
}

/* ---- The worker's side ---- */

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Reads exactly len bytes before the deadline; 0, -ETIMEDOUT, or -EPIPE at an early end. */
static int read_exact(int fd, void *buf, size_t len, int64_t deadline)
{
	uint8_t *p = buf;
	while (len) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t n = read(fd, p, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reaps the child; true when it exited 0, else err says how it ended. */
static bool child_gone(pid_t pid, char *err, size_t errlen, const char *prefix)
{
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st)) {
		int sig = WTERMSIG(st);
		snprintf(err, errlen, "%s: the boot loader was killed by signal %d (%s)%s", prefix, sig, strsignal(sig),
			 sig == SIGSYS ? ": it made a system call its sandbox forbids" : "");
		return false;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(err, errlen, "%s: the boot loader stopped early (exit status %d)", prefix, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return false;
	}
	return true;
}

bool diskboot_load(const char *disk_path, uint64_t initrd_max, struct diskboot_result *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "cannot boot from disk %.250s", disk_path);
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "%s: pipe: %s", prefix, strerror(errno));
		return false;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "%s: fork: %s", prefix, strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	if (pid == 0)
		child_main(disk_path, fds[1]);
	close(fds[1]);
	int rc = diskboot_read_reply(fds[0], DISKBOOT_TIMEOUT_MS, initrd_max, r, err, errlen);
	close(fds[0]);
	if (rc == DISKBOOT_REPLY_OK && child_gone(pid, err, errlen, prefix))
		return true;
	if (rc == DISKBOOT_REPLY_CUT) { /* how the child ended says more: a signal, an exit status */
		if (child_gone(pid, err, errlen, prefix))
			snprintf(err, errlen, "%s: the boot loader's reply ended early", prefix);
	} else if (rc != DISKBOOT_REPLY_OK) {
		char why[DISKBOOT_TEXT_MAX];
		snprintf(why, sizeof(why), "%s", err);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (rc == DISKBOOT_REPLY_TIMEOUT)
			snprintf(err, errlen, "%s: the boot loader did not finish within %d s (killed)", prefix, DISKBOOT_TIMEOUT_MS / 1000);
		else
			snprintf(err, errlen, "%s: %s%s", prefix, rc == DISKBOOT_REPLY_BAD ? "the boot loader sent " : "", why);
	}
	diskboot_free(r);
	return false;
}

int diskboot_read_reply(int fd, int timeout_ms, uint64_t initrd_max, struct diskboot_result *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	int64_t deadline = now_ms() + timeout_ms;
	struct diskboot_msg m;
	char text[DISKBOOT_TEXT_MAX];
	const char *bad = NULL;
	int rc = read_exact(fd, &m, sizeof(m), deadline);
	if (rc == 0 && (m.magic != DISKBOOT_MAGIC || m.text_len >= sizeof(text) || m.cmdline_len >= sizeof(r->cmdline)))
		bad = "a malformed reply";
	if (rc == 0 && !bad)
		rc = read_exact(fd, text, m.text_len, deadline);
	if (rc == 0 && !bad) {
		text[m.text_len] = '\0';
		if (!m.ok) {
			snprintf(err, errlen, "%s", text);
			return DISKBOOT_REPLY_ERROR;
		}
		if (m.kernel_size == 0 || m.kernel_size > DISKBOOT_KERNEL_MAX || m.initrd_size > DISKBOOT_INITRD_MAX)
			bad = "sizes out of range";
		else if (m.initrd_size > initrd_max)
			bad = "an initrd larger than the guest's memory";
	}
	if (rc == 0 && !bad) {
		snprintf(r->what, sizeof(r->what), "%s", text);
		rc = read_exact(fd, r->cmdline, m.cmdline_len, deadline);
		r->cmdline[rc == 0 ? m.cmdline_len : 0] = '\0';
		if (rc == 0 && strlen(r->cmdline) != m.cmdline_len)
			bad = "a command line with a NUL byte";
	}
	if (rc == 0 && !bad) {
		r->kernel = malloc((size_t)m.kernel_size);
		r->initrd = m.initrd_size ? malloc((size_t)m.initrd_size) : NULL;
		if (!r->kernel || (m.initrd_size && !r->initrd))
			bad = "a kernel and initrd there is no memory for";
	}
	if (rc == 0 && !bad && (rc = read_exact(fd, r->kernel, (size_t)m.kernel_size, deadline)) == 0)
		r->kernel_size = (size_t)m.kernel_size;
	if (rc == 0 && !bad && m.initrd_size && (rc = read_exact(fd, r->initrd, (size_t)m.initrd_size, deadline)) == 0)
		r->initrd_size = (size_t)m.initrd_size;
	if (rc == 0 && !bad)
		return DISKBOOT_REPLY_OK;
	diskboot_free(r);
	if (bad) {
		snprintf(err, errlen, "%s", bad);
		return DISKBOOT_REPLY_BAD;
	}
	snprintf(err, errlen, rc == -ETIMEDOUT ? "no complete reply in time" : "the reply ended early");
	return rc == -ETIMEDOUT ? DISKBOOT_REPLY_TIMEOUT : DISKBOOT_REPLY_CUT;
}

void diskboot_free(struct diskboot_result *r)
{
	free(r->kernel);
	free(r->initrd);
	r->kernel = r->initrd = NULL;
	r->kernel_size = r->initrd_size = 0;
}
