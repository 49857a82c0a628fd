/* Host side of the VMBus ring protocol: index arithmetic, packet copy in/out with wrap-around,
 * and the interrupt_mask / pending_send_sz signalling rules. */
#include "vmbus/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Ordering the guest can observe: data before the index that publishes it, and (full barrier)
 * our index store before we look at the other side's mask / index / pending size. */
#define load_acquire(p)   __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define load_relaxed(p)   __atomic_load_n((p), __ATOMIC_RELAXED)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define full_barrier()    __atomic_thread_fence(__ATOMIC_SEQ_CST)

#define VMBUS_RING_MAX_DATA (1u << 30) /* far above any real ring; keeps index math in 32 bits */

int vmbus_ring_init(struct vmbus_ring *r, void *const *pages, uint32_t npages, bool host_writes)
{
	memset(r, 0, sizeof(*r));
	if (npages < 2 || npages - 1 > VMBUS_RING_MAX_DATA / VMBUS_PAGE_SIZE)
		return VMBUS_RING_TOOBIG;
	uint32_t ndata = npages - 1;
	r->pages = malloc(sizeof(*r->pages) * ndata);
	if (!r->pages)
		return -ENOMEM;
	bool contiguous = true;
	for (uint32_t i = 0; i < ndata; i++) {
		r->pages[i] = pages[i + 1];
		if (i && r->pages[i] != r->pages[i - 1] + VMBUS_PAGE_SIZE)
			contiguous = false;
	}
	r->hdr = pages[0];
	r->size = ndata * VMBUS_PAGE_SIZE;
	r->flat = contiguous ? r->pages[0] : NULL;

	uint32_t idx = host_writes ? load_relaxed(&r->hdr->write_index) : load_relaxed(&r->hdr->read_index);
	if (!vmbus_ring_index_valid(idx, r->size)) {
		vmbus_ring_destroy(r);
		return VMBUS_RING_CORRUPT;
	}
	r->priv_index = idx;
	r->committed_index = idx;
	if (host_writes) {
		/* We promise to set pending_send_sz when the ring is full (and do). */
		__atomic_or_fetch(&r->hdr->feature_bits, VMBUS_RING_FEAT_PENDING_SEND_SZ, __ATOMIC_RELAXED);
		store_relaxed(&r->hdr->pending_send_sz, 0);
	} else {
		/* The host polls nothing: the guest signals whenever the ring becomes non-empty. */
		store_relaxed(&r->hdr->interrupt_mask, 0);
	}
	return 0;
}

void vmbus_ring_destroy(struct vmbus_ring *r)
{
	free(r->pages);
	memset(r, 0, sizeof(*r));
}

/* Copy len bytes from data offset off (off < size, len <= size), wrapping at the end. */
static void ring_copy_out(const struct vmbus_ring *r, uint32_t off, void *dst, uint32_t len)
{
	uint8_t *d = dst;
	while (len) {
		uint32_t chunk;
		const uint8_t *src;
		if (r->flat) {
			chunk = r->size - off;
			src = r->flat + off;
		} else {
			chunk = VMBUS_PAGE_SIZE - (off & (VMBUS_PAGE_SIZE - 1));
			src = r->pages[off >> VMBUS_PAGE_SHIFT] + (off & (VMBUS_PAGE_SIZE - 1));
		}
		if (chunk > len)
			chunk = len;
		memcpy(d, src, chunk);
		d += chunk;
		len -= chunk;
		off += chunk;
		if (off == r->size)
			off = 0;
	}
}

/* Copy len bytes to data offset off; returns the offset after them. */
static uint32_t ring_copy_in(struct vmbus_ring *r, uint32_t off, const void *src, uint32_t len)
{
	const uint8_t *s = src;
	while (len) {
		uint32_t chunk;
		uint8_t *dst;
		if (r->flat) {
			chunk = r->size - off;
			dst = r->flat + off;
		} else {
			chunk = VMBUS_PAGE_SIZE - (off & (VMBUS_PAGE_SIZE - 1));
			dst = r->pages[off >> VMBUS_PAGE_SHIFT] + (off & (VMBUS_PAGE_SIZE - 1));
		}
		if (chunk > len)
			chunk = len;
		if (s) {
			memcpy(dst, s, chunk);
			s += chunk;
		} else {
			memset(dst, 0, chunk);
		}
		len -= chunk;
		off += chunk;
		if (off == r->size)
			off = 0;
	}
	return off;
}

uint32_t vmbus_ring_read_avail(const struct vmbus_ring *r)
{
	uint32_t w = load_acquire(&r->hdr->write_index);
	if (!vmbus_ring_index_valid(w, r->size))
		return 0;
	return vmbus_ring_bytes_to_read(w, r->priv_index, r->size);
}

int vmbus_ring_read(struct vmbus_ring *r, void *buf, uint32_t cap, uint32_t *len)
{
	uint32_t w = load_acquire(&r->hdr->write_index);
	if (!vmbus_ring_index_valid(w, r->size))
		return VMBUS_RING_CORRUPT;
	uint32_t avail = vmbus_ring_bytes_to_read(w, r->priv_index, r->size);
	if (avail == 0)
		return VMBUS_RING_EMPTY;
	/* The guest publishes whole packets only, so anything shorter than a descriptor plus
	 * trailer is corruption, not a packet in progress. */
	if (avail < sizeof(struct vmpacket_descriptor) + VMBUS_PKT_TRAILER)
		return VMBUS_RING_CORRUPT;
	struct vmpacket_descriptor desc;
	ring_copy_out(r, r->priv_index, &desc, sizeof(desc));
	uint32_t pkt_len = (uint32_t)desc.len8 * 8;
	uint32_t data_off = (uint32_t)desc.offset8 * 8;
	if (pkt_len < sizeof(desc) || data_off < sizeof(desc) || data_off > pkt_len ||
	    pkt_len > avail - VMBUS_PKT_TRAILER)
		return VMBUS_RING_CORRUPT;
	if (pkt_len > cap) {
		*len = pkt_len;
		return VMBUS_RING_NOBUFS;
	}
	memcpy(buf, &desc, sizeof(desc));
	uint32_t off = r->priv_index + (uint32_t)sizeof(desc);
	if (off >= r->size)
		off -= r->size;
	ring_copy_out(r, off, (uint8_t *)buf + sizeof(desc), pkt_len - (uint32_t)sizeof(desc));
	r->priv_index = (uint32_t)(((uint64_t)r->priv_index + pkt_len + VMBUS_PKT_TRAILER) % r->size);
	*len = pkt_len;
	return 0;
}

bool vmbus_ring_read_commit(struct vmbus_ring *r)
{
	uint32_t old_read = r->committed_index;
	uint32_t new_read = r->priv_index;
	if (old_read == new_read)
		return false;
	/* Our copies of the packets are done before the guest may reuse the space. */
	store_release(&r->hdr->read_index, new_read);
	r->committed_index = new_read;
	full_barrier();
	uint32_t pending = load_relaxed(&r->hdr->pending_send_sz);
	if (pending == 0)
		return false;
	uint32_t w = load_relaxed(&r->hdr->write_index);
	if (!vmbus_ring_index_valid(w, r->size))
		return false;
	/* A guest that raced ahead of what we read could make old_read look beyond w; the rule
	 * below then just errs on the side of one extra signal or none, both harmless. */
	return vmbus_ring_signal_after_read(w, old_read, new_read, r->size, pending);
}

uint32_t vmbus_ring_write_avail(const struct vmbus_ring *r)
{
	uint32_t rd = load_acquire(&r->hdr->read_index);
	if (!vmbus_ring_index_valid(rd, r->size))
		return 0;
	return vmbus_ring_bytes_to_write(r->priv_index, rd, r->size);
}

int vmbus_ring_write(struct vmbus_ring *r, const struct vmbus_seg *segs, unsigned nseg, bool *signal)
{
	*signal = false;
	uint64_t total = 0;
	for (unsigned i = 0; i < nseg; i++)
		total += segs[i].len;
	uint64_t padded = (total + 7) & ~7ull;
	uint64_t need = padded + VMBUS_PKT_TRAILER;
	/* Strictly less than the ring: a full ring must never look empty (indices equal). */
	if (padded < sizeof(struct vmpacket_descriptor) || need >= r->size)
		return VMBUS_RING_TOOBIG;

	uint32_t rd = load_acquire(&r->hdr->read_index);
	if (!vmbus_ring_index_valid(rd, r->size))
		return VMBUS_RING_CORRUPT;
	if (vmbus_ring_bytes_to_write(r->priv_index, rd, r->size) <= need) {
		/* Ask the guest to signal once it frees enough, then look again in case it already
		 * did so before it could see our request. */
		store_relaxed(&r->hdr->pending_send_sz, (uint32_t)need);
		full_barrier();
		rd = load_acquire(&r->hdr->read_index);
		if (!vmbus_ring_index_valid(rd, r->size))
			return VMBUS_RING_CORRUPT;
		if (vmbus_ring_bytes_to_write(r->priv_index, rd, r->size) <= need)
			return VMBUS_RING_FULL;
	}
	if (load_relaxed(&r->hdr->pending_send_sz))
		store_relaxed(&r->hdr->pending_send_sz, 0);

	uint32_t old_write = r->priv_index;
	uint32_t off = old_write;
	for (unsigned i = 0; i < nseg; i++)
		off = ring_copy_in(r, off, segs[i].base, segs[i].len);
	off = ring_copy_in(r, off, NULL, (uint32_t)(padded - total));
	uint64_t trailer = (uint64_t)old_write << 32;
	off = ring_copy_in(r, off, &trailer, sizeof(trailer));
	r->priv_index = off;

	store_release(&r->hdr->write_index, off);
	full_barrier();
	uint32_t mask = load_relaxed(&r->hdr->interrupt_mask);
	uint32_t rd_now = load_relaxed(&r->hdr->read_index);
	*signal = vmbus_ring_signal_after_write(old_write, rd_now, mask);
	return 0;
}
