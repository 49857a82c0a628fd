/* libFuzzer target: arbitrary bytes as the netvsp section of a saved state. A valid state is
 * built once (NVSP 6.1, RNDIS up, both buffers, frames the guest holds, an RNDIS answer waiting
 * for a piece); each input restores it into a fresh adapter with the netvsp payload replaced,
 * then drives the restored adapter.
 *
 * Input: [mode u8] then, mode bit 0 clear: [len u16 big-endian][len payload bytes]; set: [n u8]
 * n × [offset u16 big-endian][xor u8] applied to the valid payload. Then actions, one byte each
 * (+ arguments): frames from the backend, guest completions of any id, link changes, reading
 * the guest's ring. Oracle: whatever the restored adapter saves restores again. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fuzz_input.h"
#include "fake_guest.h"
#include "state/savedstate.h"
#include "state_rt.h"
#include "vsp/netvsp.h"
#include "vsp/rndis.h"

#define RBUF_PFN   16
#define RBUF_PAGES 32
#define SBUF_PFN   64
#define SBUF_PAGES 8
#define PAYLOAD_MAX 65536

static int base_fd = -1;       /* the valid state file */
static uint8_t *base;          /* its netvsp payload */
static size_t base_len;

static void sink(void *ctx, const uint8_t *frame, uint32_t len)
{
	(void)ctx, (void)frame, (void)len;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void drain(struct fg_chan *c)
{
	static uint8_t buf[8192];
	while (fg_ring_recv(&c->recv, buf, sizeof(buf)))
		;
}

static void send(struct fake_guest *g, struct fg_chan *c, uint16_t type, uint64_t tid, const void *m, uint32_t len)
{
	bool sig;
	fg_ring_send(&c->send, type, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid, m, len, &sig);
	fg_signal(g, c);
}

static void nvsp(struct fake_guest *g, struct fg_chan *c, uint32_t type, uint32_t a, uint32_t b, uint64_t tid)
{
	uint8_t m[40] = { 0 };
	wr32(m, type);
	wr32(m + 4, a);
	wr32(m + 8, b);
	send(g, c, VM_PKT_DATA_INBAND, tid, m, 40);
}

/* One RNDIS message through send section 0. */
static void rndis(struct fake_guest *g, struct fg_chan *c, const uint8_t *msg, uint32_t len, uint64_t tid)
{
	memcpy(fg_page(g, SBUF_PFN), msg, len);
	uint8_t m[40] = { 0 };
	wr32(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
	wr32(m + 4, 1);
	wr32(m + 12, len);
	send(g, c, VM_PKT_DATA_INBAND, tid, m, 40);
}

static struct netvsp *adapter(struct fake_guest *g)
{
	fg_init(g);
	struct netvsp_config cfg = { .mac = { 0x00, 0x15, 0x5d, 1, 2, 3 } };
	struct netvsp_backend be = { .tx = sink };
	struct netvsp *nv = netvsp_new(g->srv, &cfg, &be);
	if (!nv)
		abort();
	return nv;
}

static void build_base(void)
{
	static struct fake_guest g;
	struct fg_chan c;
	struct netvsp *nv = adapter(&g);
	fg_connect(&g, VERSION_WIN10_V5_2);
	fg_request_offers(&g);
	fg_open(&g, &c, 1, 1, 0, 8, 8);
	nvsp(&g, &c, NVSP_MSG_TYPE_INIT, NVSP_PROTOCOL_VERSION_61, NVSP_PROTOCOL_VERSION_61, 1);
	uint32_t pfns[RBUF_PAGES];
	for (uint32_t i = 0; i < RBUF_PAGES; i++)
		pfns[i] = RBUF_PFN + i;
	fg_gpadl(&g, 1, 0x100, pfns, RBUF_PAGES);
	for (uint32_t i = 0; i < SBUF_PAGES; i++)
		pfns[i] = SBUF_PFN + i;
	fg_gpadl(&g, 1, 0x101, pfns, SBUF_PAGES);
	nvsp(&g, &c, NVSP_MSG1_TYPE_SEND_RECV_BUF, 0x100, NETVSC_RECEIVE_BUFFER_ID, 2);
	nvsp(&g, &c, NVSP_MSG1_TYPE_SEND_SEND_BUF, 0x101, 0, 3);
	uint8_t init[24] = { 0 }, set[32] = { 0 };
	wr32(init, RNDIS_MSG_INIT);
	wr32(init + 4, 24);
	wr32(init + 8, 1);
	wr32(init + 12, 1);
	wr32(init + 20, 0x4000);
	rndis(&g, &c, init, 24, 4);
	wr32(set, RNDIS_MSG_SET);
	wr32(set + 4, 32);
	wr32(set + 8, 2);
	wr32(set + 12, RNDIS_OID_GEN_CURRENT_PACKET_FILTER);
	wr32(set + 16, 4);
	wr32(set + 20, 20);
	wr32(set + 28, 0xB);
	rndis(&g, &c, set, 32, 5);
	/* The answers hold two pieces; frames take the rest; one more answer waits. */
	uint8_t f[60] = { 0 };
	while (netvsp_rx(nv, f, sizeof(f)) == NETVSP_RX_OK)
		;
	uint8_t ka[12];
	wr32(ka, RNDIS_MSG_KEEPALIVE);
	wr32(ka + 4, 12);
	wr32(ka + 8, 3);
	rndis(&g, &c, ka, 12, 6);
	drain(&c);
	int rc;
	base_fd = rt_save(&g, &rc);
	base = rt_payload(base_fd, STATE_SECTION_NETVSP, 1, &base_len);
	if (!base)
		abort();
	fg_free(&g);
	netvsp_free(nv);
}

/* The restored adapter saves, and that restores into another. */
static void resave(struct fake_guest *g)
{
	int rc, fd = rt_save(g, &rc);
	if (fd < 0)
		abort();
	static struct fake_guest g2;
	struct netvsp *nv2 = adapter(&g2);
	if (rt_restore(&g2, fd, NULL) != 0)
		abort();
	fg_free(&g2);
	netvsp_free(nv2);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (base_fd < 0)
		build_base();
	struct in in = { data, size };
	static uint8_t payload[PAYLOAD_MAX];
	size_t len;
	if (take(&in) & 1) {
		memcpy(payload, base, base_len);
		len = base_len;
		for (unsigned n = take(&in); n; n--) {
			size_t off = (size_t)(take(&in) << 8 | take(&in)) % len;
			payload[off] ^= take(&in);
		}
	} else {
		len = take_bytes(&in, payload, (size_t)(take(&in) << 8 | take(&in)));
	}
	static struct fake_guest g;
	struct netvsp *nv = adapter(&g);
	struct rt_patch p = { STATE_SECTION_NETVSP, 1, -1, payload, len };
	if (rt_restore(&g, base_fd, &p) == 0) {
		struct fg_chan c;
		fg_chan_init(&g, &c, 1, 1, 0, 8, 8);
		static uint8_t frame[2048];
		for (int steps = 0; in.n && steps < 64; steps++) {
			switch (take(&in) % 5) {
			case 0: {
				uint32_t flen = take(&in) * 8u;
				memset(frame, take(&in), flen);
				netvsp_rx(nv, frame, flen);
				break;
			}
			case 1: { /* the guest completes a receive packet, by any id */
				uint8_t m[40] = { 0 };
				wr32(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
				wr32(m + 4, NVSP_STAT_SUCCESS);
				bool sig;
				fg_ring_send(&c.send, VM_PKT_COMP, 0, take(&in), m, 40, &sig);
				fg_signal(&g, &c);
				break;
			}
			case 2:
				netvsp_set_link(nv, take(&in) & 1);
				break;
			case 3:
				drain(&c);
				break;
			case 4: /* a send from section 0 (whatever it holds) */
				nvsp(&g, &c, NVSP_MSG1_TYPE_SEND_RNDIS_PKT, 0, 0, 100 + steps);
				break;
			}
		}
		drain(&c);
		resave(&g);
	}
	fg_free(&g);
	netvsp_free(nv);
	return 0;
}
