/* iobench: a tiny fio stand-in for the test guest (static, no libraries): O_DIRECT reads or
 * writes of BS bytes on DEV, QD threads each keeping one request in flight, for SECONDS.
 *   iobench DEV randread|randwrite|read|write BS QD SECONDS [SPAN_MB]
 * Prints: "<mode> bs=<BS> qd=<QD>: <IOPS> IOPS <MB/s> MB/s". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int fd, rnd, wr;
static size_t bs;
static uint64_t span, deadline_ns;
static uint64_t total_ios;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1, off = ((uintptr_t)arg * bs * 64) % span, n = 0;
	void *buf;
	if (posix_memalign(&buf, 4096, bs))
		return NULL;
	memset(buf, 0x5A, bs);
	while (now_ns() < deadline_ns) {
		for (int k = 0; k < 16; k++) {
			if (rnd) {
				seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
				off = (seed % (span / bs)) * bs;
			} else {
				off = (off + bs) % (span - span % bs);
			}
			ssize_t r = wr ? pwrite(fd, buf, bs, (off_t)off) : pread(fd, buf, bs, (off_t)off);
			if (r != (ssize_t)bs) {
				perror("io");
				exit(1);
			}
			n++;
		}
	}
	__atomic_fetch_add(&total_ios, n, __ATOMIC_RELAXED);
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: iobench DEV randread|randwrite|read|write BS QD SECONDS [SPAN_MB]\n");
		return 2;
	}
	rnd = !strncmp(argv[2], "rand", 4);
	wr = strstr(argv[2], "write") != NULL;
	bs = strtoull(argv[3], NULL, 0);
	int qd = atoi(argv[4]);
	double secs = atof(argv[5]);
	fd = open(argv[1], (wr ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &span) < 0) {
		perror(argv[1]);
		return 1;
	}
	if (argc > 6 && strtoull(argv[6], NULL, 0) << 20 < span)
		span = strtoull(argv[6], NULL, 0) << 20;
	pthread_t t[256];
	if (qd < 1 || qd > 256)
		return 2;
	uint64_t start = now_ns();
	deadline_ns = start + (uint64_t)(secs * 1e9);
	for (int i = 0; i < qd; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
	for (int i = 0; i < qd; i++)
		pthread_join(t[i], NULL);
	double el = (now_ns() - start) / 1e9;
	printf("RESULT %s bs=%zu qd=%d: %.0f IOPS %.1f MB/s\n", argv[2], bs, qd, total_ios / el,
	       total_ios * (double)bs / el / 1e6);
	return 0;
}
