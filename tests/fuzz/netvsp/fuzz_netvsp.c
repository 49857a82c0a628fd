/* libFuzzer target: hostile RNDIS and NVSP into netvsp. Each run opens the channel and sets the
 * adapter up as hv_netvsc does (INIT, receive and send buffers); then the input is a sequence of
 * steps: RNDIS bytes through a send section (fuzzed section index, size, channel type), raw NVSP
 * messages, RNDIS bytes straight into the pure parser (rndis_control / rndis_packet_frame),
 * frames from the backend, guest completions with right or fuzzed ids, link flips, close/reopen.
 * The host->guest ring is drained after every step; every announced piece must lie inside the
 * receive buffer and hold a well-formed RNDIS message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_guest.h"
#include "vsp/net_offload.h"
#include "vsp/netvsp.h"
#include "vsp/rndis.h"
#include "../fuzz_input.h"

#define RBUF_PFN   16
#define RBUF_PAGES 16
#define SBUF_PFN   40
#define SBUF_PAGES 8

static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void sink(void *ctx, const uint8_t *frame, uint32_t len)
{
	(void)ctx;
	if (len < 14 || len > 1518)
		abort(); /* netvsp must never pass on a frame it did not check */
	volatile uint8_t x = frame[0] ^ frame[len - 1];
	(void)x;
}

static void nvsp_send(struct fake_guest *g, struct fg_chan *c, uint16_t type, const uint8_t *m, uint32_t len,
		      uint64_t tid)
{
	bool sig = false;
	if (fg_ring_send(&c->send, type, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid, m, len, &sig) == 0)
		fg_signal(g, c);
}

static uint64_t pending[64];
static unsigned npending;

/* Read everything the host sent; remember transfer-page ids; check pieces. */
static void drain(struct fake_guest *g, struct fg_chan *c)
{
	static uint8_t buf[16384];
	uint32_t len;
	while ((len = fg_ring_recv(&c->recv, buf, sizeof(buf))) != 0) {
		const struct vmpacket_descriptor *d = (const void *)buf;
		if (d->type != VM_PKT_DATA_USING_XFER_PAGES)
			continue;
		const struct vmtransfer_page_packet_header *x = (const void *)buf;
		uint32_t off = x->ranges[0].byte_offset, n = x->ranges[0].byte_count;
		if (x->range_cnt != 1 || n > NETVSP_RECV_SECTION_SIZE || off + (uint64_t)n > RBUF_PAGES * 4096u)
			abort();
		const uint8_t *m = (const uint8_t *)fg_page(g, RBUF_PFN) + off;
		if (n < 8 || rd32(m + 4) != n)
			abort();
		if (npending < 64)
			pending[npending++] = d->trans_id;
	}
}

static void complete(struct fake_guest *g, struct fg_chan *c, uint64_t tid)
{
	uint8_t m[40] = {0};
	wr32(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	wr32(m + 4, NVSP_STAT_SUCCESS);
	bool sig;
	if (fg_ring_send(&c->send, VM_PKT_COMP, 0, tid, m, 40, &sig) == 0)
		fg_signal(g, c);
}

static void gpadl_pages(struct fake_guest *g, uint32_t id, uint32_t first, uint32_t n)
{
	uint32_t pfns[64];
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = first + i;
	fg_gpadl(g, 1, id, pfns, n);
}

static void setup(struct fake_guest *g, struct fg_chan *c)
{
	fg_open(g, c, 1, 1, 0, 8, 8);
	uint8_t m[40] = {0};
	wr32(m, NVSP_MSG_TYPE_INIT);
	wr32(m + 4, NVSP_PROTOCOL_VERSION_61);
	wr32(m + 8, NVSP_PROTOCOL_VERSION_61);
	nvsp_send(g, c, VM_PKT_DATA_INBAND, m, 40, 1);
	gpadl_pages(g, 0x100, RBUF_PFN, RBUF_PAGES);
	gpadl_pages(g, 0x101, SBUF_PFN, SBUF_PAGES);
	memset(m, 0, sizeof(m));
	wr32(m, NVSP_MSG1_TYPE_SEND_RECV_BUF);
	wr32(m + 4, 0x100);
	nvsp_send(g, c, VM_PKT_DATA_INBAND, m, 40, 2);
	wr32(m, NVSP_MSG1_TYPE_SEND_SEND_BUF);
	wr32(m + 4, 0x101);
	nvsp_send(g, c, VM_PKT_DATA_INBAND, m, 40, 3);
	drain(g, c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fake_guest g;
	struct fg_chan c;
	struct in in = {data, size};
	fg_init(&g);
	struct netvsp_config cfg = {.mac = {0x00, 0x15, 0x5d, 1, 2, 3}};
	struct netvsp_backend be = { .tx = sink };
	struct netvsp *nv = netvsp_new(g.srv, &cfg, &be);
	fg_connect(&g, VERSION_WIN10_V5_2);
	fg_request_offers(&g);
	npending = 0;
	setup(&g, &c);
	static uint8_t buf[8192], resp[RNDIS_MAX_RESPONSE];
	static struct rndis_state st;
	struct rndis_config rc = {.mac = {2, 0, 0, 0, 0, 1}, .mtu = 1500, .link_speed_bps = 1000000000};
	for (int steps = 0; in.n && steps < 64; steps++) {
		uint8_t op = take(&in) % 8;
		switch (op) {
		case 0: { /* RNDIS through a send section */
			uint32_t section = take(&in) % (SBUF_PAGES * 4096 / NETVSP_SEND_SECTION_SIZE + 2);
			uint32_t len = take32(&in) % (NETVSP_SEND_SECTION_SIZE + 64);
			uint32_t have = (uint32_t)take_bytes(&in, buf, len > sizeof(buf) ? sizeof(buf) : len);
			if (section < SBUF_PAGES * 4096 / NETVSP_SEND_SECTION_SIZE) {
				size_t room = (size_t)SBUF_PAGES * 4096 - (size_t)section * NETVSP_SEND_SECTION_SIZE;
				memcpy((uint8_t *)fg_page(&g, SBUF_PFN) + (size_t)section * NETVSP_SEND_SECTION_SIZE, buf,
				       have < room ? have : room);
			}
			uint8_t m[40] = {0};
			wr32(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
			wr32(m + 4, take(&in) & 1);
			wr32(m + 8, section == SBUF_PAGES * 4096 / NETVSP_SEND_SECTION_SIZE + 1 ? NETVSP_NO_SECTION : section);
			wr32(m + 12, len);
			nvsp_send(&g, &c, VM_PKT_DATA_INBAND, m, 40, 100 + steps);
			break;
		}
		case 1: { /* raw NVSP message */
			uint32_t len = take(&in) % 48;
			uint8_t m[48] = {0};
			take_bytes(&in, m, len);
			nvsp_send(&g, &c, take(&in) & 1 ? VM_PKT_DATA_USING_GPA_DIRECT : VM_PKT_DATA_INBAND, m, len,
				  take32(&in));
			break;
		}
		case 2: { /* pure parser */
			uint32_t len = take32(&in) % 600;
			uint32_t have = (uint32_t)take_bytes(&in, buf, len);
			rndis_control(&rc, &st, buf, have, resp, sizeof(resp));
			uint32_t off, flen;
			if (rndis_packet_frame(buf, have, 1514, &off, &flen) == 0 && (uint64_t)off + flen > have)
				abort();
			uint32_t type, mlen;
			if (rndis_msg_header(buf, have, &type, &mlen) == 0 && mlen > have)
				abort();
			/* the offload request, then the host's half of it on the same bytes as a frame */
			struct rndis_tx_offload ofl;
			if (rndis_packet_offload(buf, have, &ofl) == 0 && ofl.l4_offset > 0x3ff)
				abort();
			static uint8_t seg[1514];
			size_t l4 = take(&in) % 80;
			net_segment_tcp(buf, have, l4, 64 + take(&in) * 8u, sizeof(seg), seg, sink, NULL);
			net_fill_l4_checksum(buf, have, l4, take(&in) & 1);
			break;
		}
		case 3: { /* a frame from the backend */
			uint32_t len = take32(&in) % 2000;
			memset(buf, take(&in), len);
			netvsp_rx(nv, buf, len);
			break;
		}
		case 4: /* guest completes pieces (right ids) */
			while (npending)
				complete(&g, &c, pending[--npending]);
			break;
		case 5: /* a completion with a made-up id */
			complete(&g, &c, (uint64_t)take32(&in) << 8 | take(&in));
			break;
		case 6:
			netvsp_set_link(nv, take(&in) & 1);
			break;
		case 7: /* close and reopen */
			fg_close(&g, &c);
			setup(&g, &c);
			npending = 0;
			break;
		}
		drain(&g, &c);
	}
	fg_free(&g);
	netvsp_free(nv);
	return 0;
}
