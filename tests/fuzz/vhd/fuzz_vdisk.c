/* libFuzzer: open arbitrary bytes as a disk image and read from it — read-only as Get-VHD and
 * Test-VHD would, or (when the last input byte is odd) read-write, which also replays a dirty
 * log, writes and flushes. The library must reject or handle the file without crashing or
 * touching memory it should not.
 *
 * Input: either the image bytes themselves, or — so that seeds for multi-MiB layouts stay a
 * few KB — "VDSPARSE" + u32 file size in 512-byte sectors + records of
 * (u32 offset in 512-byte units, u16 length, bytes), laid into a zero file. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vhd/vdisk.h"

#define MAX_FILE (64u << 20)

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static int materialize(int fd, const uint8_t *data, size_t size)
{
	if (size < 12 || memcmp(data, "VDSPARSE", 8))
		return write(fd, data, size) == (ssize_t)size ? 0 : -1;
	uint64_t fsize = (uint64_t)le32(data + 8) * 512;
	if (fsize > MAX_FILE || ftruncate(fd, (off_t)fsize) < 0)
		return -1;
	for (size_t i = 12; i + 6 <= size;) {
		uint64_t off = (uint64_t)le32(data + i) * 512;
		size_t len = data[i + 4] | data[i + 5] << 8;
		i += 6;
		if (len > size - i)
			len = size - i;
		if (off + len > fsize)
			return -1;
		if (pwrite(fd, data + i, len, (off_t)off) != (ssize_t)len)
			return -1;
		i += len;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-image", 0);
	if (fd < 0)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct vdisk *d;
	bool rw = size && (data[size - 1] & 1);
	if (materialize(fd, data, size) == 0 && vdisk_open(path, rw ? VDISK_OPEN_RDWR : 0, &d) == 0) {
		struct vdisk_info info;
		vdisk_info(d, &info);
		uint64_t sz = vdisk_size(d);
		static uint8_t buf[1 << 20];
		/* the start, the end, and a spot chosen by the input */
		uint64_t spots[3] = { 0, sz > sizeof(buf) ? sz - sizeof(buf) : 0,
				      size >= 8 ? (le32(data + size - 4) * 512ULL) % (sz ? sz : 1) / 512 * 512 : 0 };
		for (int i = 0; i < 3; i++) {
			uint64_t n = sz - spots[i] < sizeof(buf) ? sz - spots[i] : sizeof(buf);
			vdisk_read(d, buf, spots[i], n / 512 * 512);
			bool alloc;
			uint64_t run;
			if (n)
				vdisk_block_status(d, spots[i], n, &alloc, &run);
		}
		if (rw && sz >= 4096) {
			memset(buf, 0x5a, 4096);
			vdisk_write(d, buf, spots[2] / 4096 * 4096, 4096);
			vdisk_flush(d);
		}
		vdisk_close(d);
	}
	close(fd);
	return 0;
}
