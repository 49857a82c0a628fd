/* The host side of one VMBus ring buffer (see the protocol notes in vmbus/protocol.h).
 *
 * A ring is reached through host pointers to its pages: page 0 is the control page
 * (struct vmbus_ring_header), pages 1..n-1 hold the data. The pages need not be contiguous in
 * host memory (a GPADL may list any guest pages); when they are, copies take a fast path.
 *
 * The guest shares the ring and may change anything in it at any time. The host keeps its own
 * index (read position of a guest->host ring, write position of a host->guest ring) privately
 * and only publishes it; the guest-owned index is loaded once per operation, checked (inside the
 * data area, 8-byte aligned) and used from the local copy. Packets are copied out whole before
 * they are parsed, so a guest rewriting a packet under us cannot change what we validated.
 *
 * Not thread-safe: one thread (the worker's device thread) uses a ring at a time. */
#ifndef VIRIDIAN_VMBUS_RING_H
#define VIRIDIAN_VMBUS_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/protocol.h"

struct vmbus_ring {
	struct vmbus_ring_header *hdr; /* control page (shared with the guest) */
	uint8_t **pages;               /* data pages, size / 4096 entries (owned) */
	uint8_t *flat;                 /* all data pages as one host range, or NULL */
	uint32_t size;                 /* data bytes */
	uint32_t priv_index;           /* host-owned index: next read (in ring) / next write (out ring) */
	uint32_t committed_index;      /* in ring: read index last published to the guest */
};

/* One piece of a packet to write. */
struct vmbus_seg {
	const void *base;
	uint32_t len;
};

/* Return codes besides 0 */
#define VMBUS_RING_EMPTY    (-1) /* nothing to read */
#define VMBUS_RING_FULL     (-2) /* no room now; pending_send_sz was set, wait for a guest signal */
#define VMBUS_RING_NOBUFS   (-3) /* the caller's buffer is too small for the next packet */
#define VMBUS_RING_CORRUPT  (-4) /* guest-owned index or packet header is invalid */
#define VMBUS_RING_TOOBIG   (-5) /* the packet can never fit this ring */

/* Pure index arithmetic (as Linux hv_get_bytes_to_read / hv_get_bytes_to_write). */
static inline uint32_t vmbus_ring_bytes_to_read(uint32_t write, uint32_t read, uint32_t size)
{
	return write >= read ? write - read : size - read + write;
}
static inline uint32_t vmbus_ring_bytes_to_write(uint32_t write, uint32_t read, uint32_t size)
{
	return size - vmbus_ring_bytes_to_read(write, read, size);
}
/* An index the guest controls is usable iff it lies inside the data area and is 8-byte aligned. */
static inline bool vmbus_ring_index_valid(uint32_t index, uint32_t size)
{
	return index < size && (index & 7) == 0;
}
/* Writer side: after a write that started at old_write, signal the reader iff it is not masking
 * interrupts and it had caught up with old_write (the ring went from empty to non-empty). */
static inline bool vmbus_ring_signal_after_write(uint32_t old_write, uint32_t read_now, uint32_t interrupt_mask)
{
	return interrupt_mask == 0 && old_write == read_now;
}
/* Reader side: after moving read from old_read to new_read, signal a writer that asked for
 * pending bytes iff free space crossed from <= pending to > pending. */
static inline bool vmbus_ring_signal_after_read(uint32_t write, uint32_t old_read, uint32_t new_read,
						uint32_t size, uint32_t pending)
{
	if (pending == 0)
		return false;
	return vmbus_ring_bytes_to_write(write, old_read, size) <= pending &&
	       vmbus_ring_bytes_to_write(write, new_read, size) > pending;
}

/* Set up a view of a ring from npages host page pointers (pages[0] = control page; npages >= 2).
 * host_writes: this is the host->guest ring (the host owns write_index), else guest->host.
 * Takes the host-owned index from the control page and checks it. Returns 0 or
 * VMBUS_RING_CORRUPT (bad index) / VMBUS_RING_TOOBIG (bad size) / -ENOMEM. */
int vmbus_ring_init(struct vmbus_ring *r, void *const *pages, uint32_t npages, bool host_writes);
void vmbus_ring_destroy(struct vmbus_ring *r);

/* ---- guest -> host ring (host reads) ---- */
/* Copy the next packet (descriptor through padding: len8 * 8 bytes) into buf and advance the private
 * read position. Returns 0 (*len set), VMBUS_RING_EMPTY, VMBUS_RING_NOBUFS (*len = size needed;
 * nothing consumed), or VMBUS_RING_CORRUPT (write_index invalid; len8 < 2, offset8 < 2,
 * offset8 > len8, or the packet plus trailer is larger than what the guest wrote). The descriptor is
 * checked, the payload is not. */
int vmbus_ring_read(struct vmbus_ring *r, void *buf, uint32_t cap, uint32_t *len);
/* Publish the read position. Returns true when the guest must be signalled because it waits for
 * space (pending_send_sz). */
bool vmbus_ring_read_commit(struct vmbus_ring *r);
/* Bytes the guest has written that the host has not read (0 if write_index is invalid). */
uint32_t vmbus_ring_read_avail(const struct vmbus_ring *r);

/* ---- host -> guest ring (host writes) ---- */
/* Write one packet: the concatenated segments (which start with its descriptor), zero padding to a
 * multiple of 8, and the trailer; then publish write_index. *signal is set when the guest must be
 * signalled. Returns 0, VMBUS_RING_FULL (pending_send_sz now asks the guest to signal when room
 * appears), VMBUS_RING_TOOBIG or VMBUS_RING_CORRUPT (read_index invalid). On full the host's
 * pending_send_sz request stays set until a later write succeeds. */
int vmbus_ring_write(struct vmbus_ring *r, const struct vmbus_seg *segs, unsigned nseg, bool *signal);
/* Free bytes for the host to write (0 if read_index is invalid). */
uint32_t vmbus_ring_write_avail(const struct vmbus_ring *r);

#endif
