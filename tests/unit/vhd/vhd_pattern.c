/* Test helper for the integration scripts: writes SEED-derived bytes into a disk image
 * through the library (the cmdlets have no raw-write verb, as in Hyper-V).
 *   vhd-pattern FILE OFFSET LENGTH SEED
 * With VHD_PATTERN_CRASH=1 it flushes and exits without closing, as a process killed after
 * a flush would: a VHDX is left with a log that must be replayed.
 *   vhd-pattern --child PARENT FILE
 * creates FILE as a differencing child of PARENT while a paused VM has PARENT open read-write
 * (what vmms does for a checkpoint before its disk-switch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "vhd/vdisk.h"

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--child")) {
		struct vdisk_create_params p = { .parent_path = argv[2], .parent_in_use = true };
		if (vdisk_create(argv[3], &p) < 0) {
			fprintf(stderr, "%s\n", vdisk_last_error());
			return 1;
		}
		return 0;
	}
	if (argc != 5) {
		fprintf(stderr, "usage: vhd-pattern FILE OFFSET LENGTH SEED\n");
		return 2;
	}
	uint64_t off = strtoull(argv[2], NULL, 0), len = strtoull(argv[3], NULL, 0);
	uint64_t seed = strtoull(argv[4], NULL, 0) | 1;
	struct vdisk *d;
	if (vdisk_open(argv[1], VDISK_OPEN_RDWR, &d) < 0) {
		fprintf(stderr, "%s\n", vdisk_last_error());
		return 1;
	}
	uint8_t *buf = malloc(len);
	fill_random(&seed, buf, len);
	int r = vdisk_write(d, buf, off, len);
	if (r == 0 && getenv("VHD_PATTERN_CRASH")) {
		r = vdisk_flush(d);
		_exit(r < 0);
	}
	if (r == 0)
		r = vdisk_close(d);
	else
		vdisk_close(d);
	free(buf);
	if (r < 0)
		fprintf(stderr, "%s\n", vdisk_last_error());
	return r < 0;
}
