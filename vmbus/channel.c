/* The device API: packets in and out of an open channel's rings, GPA-direct ranges. */
#include <string.h>

#include "vmbus_internal.h"

#define GPA_DIRECT_HDR ((uint32_t)sizeof(struct vmdata_gpa_direct)) /* 24 */

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

void vmbus_chan_commit(struct vmbus_chan *chan)
{
	if (chan->state == CHAN_OPEN && vmbus_ring_read_commit(&chan->in))
		vmbus_srv_signal_chan(chan);
}

/* Walk the GPA ranges between the GPA-direct header and the payload; returns the range count or -1. */
static int64_t gpa_direct_check(const uint8_t *raw, uint32_t data_off)
{
	if (data_off < GPA_DIRECT_HDR)
		return -1;
	uint32_t count = rd32(raw + 20);
	uint32_t pos = GPA_DIRECT_HDR;
	for (uint32_t i = 0; i < count; i++) {
		if (data_off - pos < sizeof(struct gpa_range))
			return -1;
		uint32_t bytes = rd32(raw + pos), offset = rd32(raw + pos + 4);
		if (offset >= VMBUS_PAGE_SIZE)
			return -1;
		uint64_t npfn = ((uint64_t)offset + bytes + VMBUS_PAGE_SIZE - 1) / VMBUS_PAGE_SIZE;
		pos += (uint32_t)sizeof(struct gpa_range);
		if (npfn > (data_off - pos) / 8)
			return -1;
		pos += (uint32_t)npfn * 8;
	}
	return count;
}

int vmbus_chan_recv(struct vmbus_chan *chan, struct vmbus_packet *pkt)
{
	for (int attempt = 0;; attempt++) {
		if (chan->state != CHAN_OPEN)
			return VMBUS_CHAN_CLOSED;
		uint32_t len = 0;
		int rc = vmbus_ring_read(&chan->in, chan->rxbuf, chan->rxcap, &len);
		if (rc == VMBUS_RING_EMPTY) {
			if (attempt)
				return 0;
			/* Publish what we consumed, then look once more: a packet the guest wrote
			 * before it could see our read index came without a signal. */
			vmbus_chan_commit(chan);
			continue;
		}
		if (rc != 0) {
			vmbus_srv_fail_chan(chan, "corrupt guest->host ring");
			return VMBUS_CHAN_CLOSED;
		}
		const struct vmpacket_descriptor *d = (const void *)chan->rxbuf;
		uint32_t data_off = (uint32_t)d->offset8 * 8;
		memset(pkt, 0, sizeof(*pkt));
		pkt->type = d->type;
		pkt->flags = d->flags;
		pkt->trans_id = d->trans_id;
		pkt->raw = chan->rxbuf;
		pkt->raw_len = len;
		pkt->data = chan->rxbuf + data_off;
		pkt->data_len = len - data_off;
		if (pkt->type == VM_PKT_DATA_USING_GPA_DIRECT) {
			int64_t n = gpa_direct_check(chan->rxbuf, data_off);
			if (n < 0) {
				vmbus_srv_log(chan->srv, "vmbus: relid %u: malformed GPA-direct packet dropped",
					      chan->relid);
				return VMBUS_CHAN_BADPKT;
			}
			pkt->range_count = (uint32_t)n;
		}
		return 1;
	}
}

int vmbus_packet_gpa_range(const struct vmbus_packet *pkt, uint32_t i, struct vmbus_gpa_range *out)
{
	if (pkt->type != VM_PKT_DATA_USING_GPA_DIRECT || i >= pkt->range_count)
		return -1;
	/* The ranges were checked by vmbus_chan_recv(); walk to the i-th. */
	uint32_t pos = GPA_DIRECT_HDR;
	for (uint32_t k = 0;; k++) {
		uint32_t bytes = rd32(pkt->raw + pos), offset = rd32(pkt->raw + pos + 4);
		uint32_t npfn = (uint32_t)(((uint64_t)offset + bytes + VMBUS_PAGE_SIZE - 1) / VMBUS_PAGE_SIZE);
		if (k == i) {
			out->byte_count = bytes;
			out->byte_offset = offset;
			out->pfn_count = npfn;
			out->pfns = pkt->raw + pos + sizeof(struct gpa_range);
			return 0;
		}
		pos += (uint32_t)sizeof(struct gpa_range) + npfn * 8;
	}
}

static int range_copy(struct vmbus_chan *chan, const struct vmbus_gpa_range *range, uint64_t off,
		      void *host, size_t len, bool to_guest)
{
	if (off > range->byte_count || len > range->byte_count - off)
		return -1;
	uint8_t *h = host;
	uint64_t pos = range->byte_offset + off;
	while (len) {
		uint64_t idx = pos / VMBUS_PAGE_SIZE;
		uint32_t in_page = (uint32_t)(pos % VMBUS_PAGE_SIZE);
		if (idx >= range->pfn_count)
			return -1;
		uint64_t pfn = rd64(range->pfns + idx * 8);
		if (pfn >= PFN_LIMIT)
			return -1;
		size_t chunk = VMBUS_PAGE_SIZE - in_page;
		if (chunk > len)
			chunk = len;
		uint8_t *g = vmbus_srv_gpa(chan->srv, (pfn << VMBUS_PAGE_SHIFT) + in_page, chunk);
		if (!g)
			return -1;
		if (to_guest)
			memcpy(g, h, chunk);
		else
			memcpy(h, g, chunk);
		h += chunk;
		len -= chunk;
		pos += chunk;
	}
	return 0;
}

int vmbus_chan_copy_from_range(struct vmbus_chan *chan, const struct vmbus_gpa_range *range,
			       uint64_t off, void *dst, size_t len)
{
	return range_copy(chan, range, off, dst, len, false);
}

int vmbus_chan_copy_to_range(struct vmbus_chan *chan, const struct vmbus_gpa_range *range,
			     uint64_t off, const void *src, size_t len)
{
	return range_copy(chan, range, off, (void *)src, len, true);
}

int vmbus_chan_gpadl_map(struct vmbus_chan *chan, uint32_t gpadl_id, const uint64_t **pfns, uint32_t *count)
{
	return vmbus_srv_gpadl_pfns(chan->srv, chan->relid, gpadl_id, pfns, count);
}

int vmbus_chan_gpadl_writable(struct vmbus_chan *chan, uint32_t gpadl_id, uint64_t bytes)
{
	return vmbus_srv_gpadl_writable(chan->srv, chan->relid, gpadl_id, bytes);
}

static int gpadl_copy(struct vmbus_chan *chan, uint32_t gpadl_id, uint64_t off, uint8_t *host, size_t len,
		      bool to_guest)
{
	const uint64_t *pfns;
	uint32_t n;
	if (vmbus_srv_gpadl_pfns(chan->srv, chan->relid, gpadl_id, &pfns, &n) < 0)
		return -1;
	uint64_t size = (uint64_t)n * VMBUS_PAGE_SIZE;
	if (off > size || len > size - off)
		return -1;
	while (len) {
		uint64_t idx = off / VMBUS_PAGE_SIZE;
		uint32_t in_page = (uint32_t)(off % VMBUS_PAGE_SIZE);
		size_t chunk = VMBUS_PAGE_SIZE - in_page;
		if (chunk > len)
			chunk = len;
		uint8_t *g = vmbus_srv_gpa(chan->srv, (pfns[idx] << VMBUS_PAGE_SHIFT) + in_page, chunk);
		if (!g)
			return -1;
		if (to_guest)
			memcpy(g, host, chunk);
		else
			memcpy(host, g, chunk);
		host += chunk;
		len -= chunk;
		off += chunk;
	}
	return 0;
}

int vmbus_chan_gpadl_copy_to(struct vmbus_chan *chan, uint32_t gpadl_id, uint64_t off, const void *src,
			     size_t len)
{
	return gpadl_copy(chan, gpadl_id, off, (uint8_t *)(uintptr_t)src, len, true);
}

int vmbus_chan_gpadl_copy_from(struct vmbus_chan *chan, uint32_t gpadl_id, uint64_t off, void *dst,
			       size_t len)
{
	return gpadl_copy(chan, gpadl_id, off, dst, len, false);
}

int vmbus_chan_send_ext(struct vmbus_chan *chan, uint16_t type, uint16_t flags, uint64_t trans_id,
			const void *ext, uint32_t ext_len, const void *data, uint32_t len)
{
	if (chan->state != CHAN_OPEN)
		return VMBUS_CHAN_CLOSED;
	uint64_t hdr = sizeof(struct vmpacket_descriptor) + (uint64_t)ext_len;
	uint64_t total = (hdr + len + 7) & ~7ull;
	if ((ext_len & 7) || total / 8 > UINT16_MAX)
		return VMBUS_CHAN_TOOBIG;
	struct vmpacket_descriptor desc = {
		.type = type,
		.offset8 = (uint16_t)(hdr / 8),
		.len8 = (uint16_t)(total / 8),
		.flags = flags,
		.trans_id = trans_id,
	};
	struct vmbus_seg segs[3] = {
		{&desc, sizeof(desc)},
		{ext, ext_len},
		{data, len},
	};
	bool signal = false;
	int rc = vmbus_ring_write(&chan->out, segs, 3, &signal);
	switch (rc) {
	case 0:
		if (signal)
			vmbus_srv_signal_chan(chan);
		return 0;
	case VMBUS_RING_FULL:
		return VMBUS_CHAN_FULL;
	case VMBUS_RING_TOOBIG:
		return VMBUS_CHAN_TOOBIG;
	default:
		vmbus_srv_fail_chan(chan, "corrupt host->guest ring");
		return VMBUS_CHAN_CLOSED;
	}
}

int vmbus_chan_send(struct vmbus_chan *chan, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const void *data, uint32_t len)
{
	return vmbus_chan_send_ext(chan, type, flags, trans_id, NULL, 0, data, len);
}

int vmbus_chan_complete(struct vmbus_chan *chan, uint64_t trans_id, const void *data, uint32_t len)
{
	return vmbus_chan_send(chan, VM_PKT_COMP, 0, trans_id, data, len);
}

uint32_t vmbus_chan_send_space(const struct vmbus_chan *chan)
{
	return chan->state == CHAN_OPEN ? vmbus_ring_write_avail(&chan->out) : 0;
}

void vmbus_chan_fail(struct vmbus_chan *chan, const char *why)
{
	vmbus_srv_fail_chan(chan, why);
}

uint32_t vmbus_chan_relid(const struct vmbus_chan *chan) { return chan->relid; }
const char *vmbus_chan_device_name(const struct vmbus_chan *chan) { return chan->ops->name; }
struct vmbus_guid vmbus_chan_class_id(const struct vmbus_chan *chan) { return chan->ops->class_id; }
uint32_t vmbus_chan_target_vp(const struct vmbus_chan *chan) { return chan->target_vp; }
uint16_t vmbus_chan_subchannel_index(const struct vmbus_chan *chan) { return chan->subchannel_index; }
bool vmbus_chan_is_open(const struct vmbus_chan *chan) { return chan->state == CHAN_OPEN; }
void *vmbus_chan_device_ctx(const struct vmbus_chan *chan) { return chan->device_ctx; }
void vmbus_chan_set_priv(struct vmbus_chan *chan, void *priv) { chan->priv = priv; }
void *vmbus_chan_priv(const struct vmbus_chan *chan) { return chan->priv; }
const uint8_t *vmbus_chan_open_userdata(const struct vmbus_chan *chan) { return chan->userdata; }
uint32_t vmbus_chan_protocol_version(const struct vmbus_chan *chan) { return vmbus_srv_version(chan->srv); }
