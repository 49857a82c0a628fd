/* Storage QoS rate limits (include/vsp/io_limit.h). */
#include "vsp/io_limit.h"

bool io_limit_set(struct io_limit *l, uint64_t max_iops, uint64_t max_bytes_per_s)
{
	if (max_iops > IO_LIMIT_MAX_IOPS || max_bytes_per_s > IO_LIMIT_MAX_BYTES_PER_S)
		return false;
	*l = (struct io_limit){ .max_iops = max_iops, .max_bytes_per_s = max_bytes_per_s };
	return true;
}

bool io_limit_active(const struct io_limit *l)
{
	return l->max_iops || l->max_bytes_per_s;
}

uint64_t io_limit_ops(uint64_t bytes)
{
	return bytes ? (bytes + IO_LIMIT_NORMALIZED_BYTES - 1) / IO_LIMIT_NORMALIZED_BYTES : 1;
}

/* One rate: the work admitted is done at *tat; a request costing `units` at `rate` per second
 * may start once *tat is within the burst of now. */
static uint64_t admit_one(uint64_t *tat, uint64_t units, uint64_t rate, uint64_t now)
{
	if (!rate)
		return now;
	uint64_t t = *tat > now ? *tat : now;
	uint64_t start = t - now > IO_LIMIT_BURST_NS ? t - IO_LIMIT_BURST_NS : now;
	*tat = t + (uint64_t)((unsigned __int128)units * 1000000000u / rate);
	return start;
}

uint64_t io_limit_admit(struct io_limit *l, uint64_t bytes, uint64_t now_ns)
{
	uint64_t a = admit_one(&l->iops_tat_ns, io_limit_ops(bytes), l->max_iops, now_ns);
	uint64_t b = admit_one(&l->bytes_tat_ns, bytes, l->max_bytes_per_s, now_ns);
	return a > b ? a : b;
}
