/* libFuzzer target: arbitrary bytes become a sequence of guest actions against the VMBus server:
 * control messages, writes into guest RAM (ring control pages, ring data, GPA-direct targets),
 * channel signals, host sends, resets. Each run starts from a connected guest with channel 1
 * open over pages 8..11, so ring parsing is reached at once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmbus/server.h"

#define RAM_PAGES 64
#define RING_PFN  8

static uint8_t *ram;

static void *gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	(void)opaque;
	uint64_t size = (uint64_t)RAM_PAGES * 4096;
	return gpa < size && len <= size - gpa ? ram + gpa : NULL;
}

static int post_message(void *opaque, uint32_t vp, uint32_t sint, uint32_t type, const void *p, uint32_t len)
{
	(void)opaque, (void)vp, (void)sint, (void)type, (void)p;
	return len <= 240 ? 0 : -1;
}

static void signal_event(void *opaque, uint32_t vp, uint32_t sint, uint32_t flag)
{
	(void)opaque, (void)vp, (void)sint, (void)flag;
}

static void on_packets(struct vmbus_chan *chan, void *ctx)
{
	(void)ctx;
	struct vmbus_packet pkt;
	int rc, budget = 64;
	while (budget-- && (rc = vmbus_chan_recv(chan, &pkt)) != 0) {
		if (rc < 0) {
			if (rc == VMBUS_CHAN_BADPKT)
				continue;
			return;
		}
		uint8_t tmp[512];
		for (uint32_t i = 0; i < pkt.range_count && i < 4; i++) {
			struct vmbus_gpa_range r;
			if (vmbus_packet_gpa_range(&pkt, i, &r) == 0) {
				size_t n = r.byte_count < sizeof(tmp) ? r.byte_count : sizeof(tmp);
				if (vmbus_chan_copy_from_range(chan, &r, 0, tmp, n) == 0)
					vmbus_chan_copy_to_range(chan, &r, 0, tmp, n);
			}
		}
		if (vmbus_chan_complete(chan, pkt.trans_id, pkt.data, pkt.data_len > 256 ? 256 : pkt.data_len) < 0)
			return;
	}
}

static const struct vmbus_device_ops dev_ops = {
	.name = "fuzz",
	.on_packets = on_packets,
};

static const struct vmbus_host_ops host_ops = {
	.gpa_to_hva = gpa_to_hva,
	.post_message = post_message,
	.signal_event = signal_event,
};

static void post(struct vmbus_server *srv, uint32_t conn, const void *msg, uint32_t len)
{
	struct hv_input_post_message in;
	memset(&in, 0, sizeof(in));
	in.connection_id = conn;
	in.message_type = 1;
	in.payload_size = len;
	memcpy(in.payload, msg, len);
	vmbus_server_post_message(srv, 0, &in);
}

static void bring_up(struct vmbus_server *srv)
{
	uint8_t m[240];
	memset(m, 0, sizeof(m));
	uint32_t w[4] = {CHANNELMSG_INITIATE_CONTACT, 0, VERSION_WIN10_V5_3, 0};
	memcpy(m, w, sizeof(w));
	m[16] = VMBUS_MESSAGE_SINT;
	post(srv, 4, m, 40);
	uint32_t ro[2] = {CHANNELMSG_REQUESTOFFERS, 0};
	post(srv, 1, ro, 8);
	/* GPADL 1 over pages 8..11 for relid 1, then open with 2 + 2 pages */
	memset(m, 0, sizeof(m));
	uint32_t h[4] = {CHANNELMSG_GPADL_HEADER, 0, 1, 1};
	memcpy(m, h, sizeof(h));
	uint16_t bl[2] = {8 + 4 * 8, 1};
	memcpy(m + 16, bl, 4);
	uint32_t range[2] = {4 * 4096, 0};
	memcpy(m + 20, range, 8);
	for (uint64_t i = 0; i < 4; i++) {
		uint64_t pfn = RING_PFN + i;
		memcpy(m + 28 + i * 8, &pfn, 8);
	}
	post(srv, 1, m, 60);
	memset(m, 0, sizeof(m));
	uint32_t o[7] = {CHANNELMSG_OPENCHANNEL, 0, 1, 1, 1, 0, 2};
	memcpy(m, o, sizeof(o));
	post(srv, 1, m, 148);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ram)
		ram = malloc((size_t)RAM_PAGES * 4096);
	memset(ram, 0, (size_t)RAM_PAGES * 4096);
	struct vmbus_server *srv = vmbus_server_new(&host_ops, NULL);
	vmbus_server_set_vp_count(srv, 4);
	struct vmbus_chan *chans[3];
	for (int i = 0; i < 3; i++)
		chans[i] = vmbus_server_add_device(srv, &dev_ops, NULL);
	bring_up(srv);

	size_t pos = 0;
#define TAKE(n) (pos + (n) <= size ? (pos += (n), data + pos - (n)) : NULL)
	const uint8_t *op;
	while ((op = TAKE(1))) {
		const uint8_t *p;
		switch (*op % 7) {
		case 0: { /* control message */
			if (!(p = TAKE(1)))
				break;
			uint32_t len = *p % 241u;
			uint8_t msg[240] = {0};
			size_t have = size - pos < len ? size - pos : len;
			memcpy(msg, data + pos, have);
			pos += have;
			post(srv, (*op & 0x80) ? 4 : 1, msg, len);
			break;
		}
		case 1: { /* write anywhere in guest RAM */
			if (!(p = TAKE(4)))
				break;
			size_t off = ((size_t)p[0] % RAM_PAGES) * 4096 + (((size_t)p[1] << 8 | p[2]) % 4096);
			size_t len = p[3];
			if (len > size - pos)
				len = size - pos;
			if (off + len > (size_t)RAM_PAGES * 4096)
				len = (size_t)RAM_PAGES * 4096 - off;
			memcpy(ram + off, data + pos, len);
			pos += len;
			break;
		}
		case 2: { /* write into channel 1's rings */
			if (!(p = TAKE(3)))
				break;
			size_t off = (((size_t)p[0] << 8) | p[1]) % (4 * 4096);
			size_t len = p[2] % 64;
			if (len > size - pos)
				len = size - pos;
			if (off + len > 4 * 4096)
				len = 4 * 4096 - off;
			memcpy(ram + RING_PFN * 4096 + off, data + pos, len);
			pos += len;
			break;
		}
		case 3: /* a well-formed packet header at the guest's write index, then publish */
		{
			if (!(p = TAKE(6)))
				break;
			uint32_t *w = (uint32_t *)(ram + RING_PFN * 4096);
			uint32_t wi = *w % 4096 & ~7u;
			uint16_t d[4] = {p[0], (uint16_t)(p[1] % 8), (uint16_t)(p[2] % 64), p[3]};
			size_t n = 4096 - wi < 8 ? 4096 - wi : 8;
			memcpy(ram + (RING_PFN + 1) * 4096 + wi, d, n);
			*w = (wi + (uint32_t)(p[4] % 64) * 8) % 4096;
			break;
		}
		case 4: /* signal a channel (or something else) */
			if (!(p = TAKE(1)))
				break;
			vmbus_server_signal_event(srv, 0, *p < 4 ? VMBUS_CHANNEL_CONNECTION_ID_BASE + *p : *p, 0);
			break;
		case 5: /* the host sends */
			if (!(p = TAKE(2)))
				break;
		{
			static const uint8_t zeros[4096];
			vmbus_chan_send(chans[p[0] % 3], VM_PKT_DATA_INBAND, 0, p[1], zeros, (uint32_t)(p[1] * 13u));
		}
			break;
		case 6:
			if (*op & 0x80)
				vmbus_server_reset(srv);
			else
				vmbus_server_flush(srv);
			break;
		}
	}
	vmbus_server_free(srv);
	return 0;
}
