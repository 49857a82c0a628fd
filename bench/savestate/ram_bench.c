/* Guest RAM through the saved-state library alone: state_writer_ram into a file and
 * state_reader_ram back, for RAM that is a quarter zero pages, a quarter random bytes and half
 * text-like pages (repeating words: what page cache and heaps compress to). Prints GB/s of guest
 * RAM each way and the file size.
 * Usage: bench_state_ram [MiB of RAM, default 1024] [file, default /tmp/bench_state_ram.vmrs] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "state/savedstate.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(uint8_t *ram, uint64_t size)
{
	static const char *const words[] = { "viridian ", "partition ", "vmbus ", "channel ", "ring ", "guest " };
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (uint64_t page = 0; page < size / 4096; page++) {
		uint8_t *p = ram + page * 4096;
		switch (page % 4) {
		case 0: /* zero */
			break;
		case 1: /* random */
			for (size_t i = 0; i < 4096; i += 8) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				memcpy(p + i, &x, 8);
			}
			break;
		default: /* text */
			for (size_t i = 0; i < 4096;) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				const char *w = words[x % 6];
				size_t n = strlen(w) < 4096 - i ? strlen(w) : 4096 - i;
				memcpy(p + i, w, n);
				i += n;
			}
		}
	}
}

int main(int argc, char **argv)
{
	uint64_t size = (argc > 1 ? strtoull(argv[1], NULL, 10) : 1024) << 20;
	const char *path = argc > 2 ? argv[2] : "/tmp/bench_state_ram.vmrs";
	uint8_t *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *back = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED || back == MAP_FAILED || !size)
		return perror("mmap"), 1;
	fill(ram, size);
	uint8_t digest[STATE_DIGEST_SIZE] = { 0 };
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	struct state_writer *w;
	if (fd < 0 || state_writer_open(&w, fd, digest) < 0)
		return fprintf(stderr, "%s: %s\n", path, state_last_error()), 1;
	double t0 = now_s();
	if (state_writer_ram(w, ram, size) < 0 || state_writer_finish(w) < 0)
		return fprintf(stderr, "save: %s\n", state_last_error()), 1;
	double t1 = now_s();
	struct stat st;
	fstat(fd, &st);
	lseek(fd, 0, SEEK_SET);
	struct state_reader *r;
	struct state_section sec;
	struct state_reader_options o = { 0 };
	double t2 = now_s();
	if (state_reader_open(&r, fd, &o) < 0 || state_reader_next(r, &sec) != 1 ||
	    state_reader_ram(r, back, size, STATE_RAM_ZEROED) < 0 || state_reader_next(r, &sec) != 0)
		return fprintf(stderr, "restore: %s\n", state_last_error()), 1;
	double t3 = now_s();
	state_reader_close(r);
	close(fd);
	unlink(path);
	if (memcmp(ram, back, size))
		return fprintf(stderr, "restored RAM differs\n"), 1;
	double gb = (double)size / 1e9;
	printf("RAM %llu MiB: save %.2f GB/s (%.0f ms), restore %.2f GB/s (%.0f ms), file %llu MiB (%.0f%%)\n",
	       (unsigned long long)(size >> 20), gb / (t1 - t0), (t1 - t0) * 1e3, gb / (t3 - t2), (t3 - t2) * 1e3,
	       (unsigned long long)(st.st_size >> 20), 100.0 * (double)st.st_size / (double)size);
	return 0;
}
