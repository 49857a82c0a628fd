/* Host writes into guest RAM (include/worker/host_writes.h). */
#include <stdlib.h>

#include "worker/host_writes.h"

#define PAGE_SHIFT 12

bool host_writes_init(struct host_writes *h, uint64_t ram_size)
{
	h->pages = ram_size >> PAGE_SHIFT;
	/* calloc of this size maps fresh zero pages: only the pages a grant touches cost memory. */
	h->grants = calloc(h->pages ? h->pages : 1, sizeof(*h->grants));
	h->since = calloc((h->pages + 63) / 64 ? (h->pages + 63) / 64 : 1, sizeof(*h->since));
	if (!h->grants || !h->since) {
		host_writes_free(h);
		return false;
	}
	return true;
}

void host_writes_free(struct host_writes *h)
{
	free(h->grants);
	free(h->since);
	h->grants = NULL, h->since = NULL, h->pages = 0;
}

void host_writes_grant(struct host_writes *h, uint64_t offset, uint64_t len, bool on)
{
	if (!len || !h->grants)
		return;
	uint64_t first = offset >> PAGE_SHIFT, end = (offset + len - 1) / (1ull << PAGE_SHIFT) + 1;
	if (end > h->pages)
		end = h->pages;
	for (uint64_t p = first; p < end; p++) {
		if (on)
			__atomic_add_fetch(&h->grants[p], 1, __ATOMIC_ACQ_REL);
		else if (__atomic_load_n(&h->grants[p], __ATOMIC_ACQUIRE))
			__atomic_sub_fetch(&h->grants[p], 1, __ATOMIC_ACQ_REL);
		__atomic_or_fetch(&h->since[p / 64], 1ull << (p % 64), __ATOMIC_RELEASE);
	}
}

void host_writes_collect(struct host_writes *h, uint64_t *dirty)
{
	for (uint64_t w = 0; w < (h->pages + 63) / 64; w++)
		dirty[w] |= __atomic_exchange_n(&h->since[w], 0, __ATOMIC_ACQ_REL);
	for (uint64_t p = 0; p < h->pages; p++)
		if (__atomic_load_n(&h->grants[p], __ATOMIC_ACQUIRE))
			dirty[p / 64] |= 1ull << (p % 64);
}
