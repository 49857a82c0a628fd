/* Storage QoS for one virtual disk: Hyper-V's Set-VMHardDiskDrive -MaximumIOPS and
 * -MaximumBandwidth. IOPS are normalized as Hyper-V counts them: a request costs one operation
 * per started 8 KiB (a 4 KiB read is 1, a 64 KiB write 8). Each limit is a generic cell rate
 * algorithm: a request may start once the disk has not run more than IO_LIMIT_BURST_NS ahead
 * of its rate, so a disk idle for a while gets that much work at once and none beyond it, and
 * over any longer span the rate holds exactly. Not thread-safe: the caller serialises. */
#ifndef VIRIDIAN_VSP_IO_LIMIT_H
#define VIRIDIAN_VSP_IO_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define IO_LIMIT_NORMALIZED_BYTES 8192u
#define IO_LIMIT_BURST_NS 50000000ull /* 50 ms of each rate */
/* Upper bounds of the settings (Hyper-V takes up to 1,000,000,000 IOPS; bytes/s fit 2^40). */
#define IO_LIMIT_MAX_IOPS 1000000000ull
#define IO_LIMIT_MAX_BYTES_PER_S (1ull << 40)

struct io_limit {
	uint64_t max_iops;        /* normalized operations per second; 0: no limit */
	uint64_t max_bytes_per_s; /* 0: no limit */
	uint64_t iops_tat_ns, bytes_tat_ns; /* when the work admitted so far is done at each rate */
};

/* Sets both limits (0 = none); forgets the work admitted so far. False (nothing changed) if a
 * value is above its IO_LIMIT_MAX_*. */
bool io_limit_set(struct io_limit *l, uint64_t max_iops, uint64_t max_bytes_per_s);
/* Whether any limit is set. */
bool io_limit_active(const struct io_limit *l);
/* Normalized operations a request of `bytes` counts as (at least 1). */
uint64_t io_limit_ops(uint64_t bytes);
/* Admits a request of `bytes` arriving at now_ns (a monotonic clock) and returns when it may
 * start: now_ns if within both limits, else the later time at which it is. */
uint64_t io_limit_admit(struct io_limit *l, uint64_t bytes, uint64_t now_ns);

#endif
