/* Which guest pages the host itself writes (live migration, docs/worker.md): KVM's dirty log
 * sees only the guest's writes, while the VMBus rings, netvsp's receive buffer, SynIC pages and
 * storvsp's data-in buffers are written by the worker's threads. Each of those writers grants
 * the range first (hv_platform.grant, the same calls the guest-write check uses), so a page is
 * host-dirty while it is granted, and once more after its grant ends. Thread-safe. */
#ifndef VIRIDIAN_WORKER_HOST_WRITES_H
#define VIRIDIAN_WORKER_HOST_WRITES_H

#include <stdbool.h>
#include <stdint.h>

struct host_writes {
	uint32_t *grants;        /* per page: grants open now */
	uint64_t *since;         /* per page: granted since the last collect */
	uint64_t pages;
};

/* For ram_size bytes of guest RAM (offsets as struct guest_layout packs them). */
bool host_writes_init(struct host_writes *h, uint64_t ram_size);
void host_writes_free(struct host_writes *h);
/* The host starts (on) or stops writing RAM [offset, offset + len); ranges outside RAM are
 * clipped. */
void host_writes_grant(struct host_writes *h, uint64_t offset, uint64_t len, bool on);
/* ORs into dirty (one bit per page) every page granted now or since the last collect, and
 * starts the next interval. */
void host_writes_collect(struct host_writes *h, uint64_t *dirty);

#endif
