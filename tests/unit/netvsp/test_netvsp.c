/* netvsp against a fake guest that speaks NVSP + RNDIS the way Linux hv_netvsc does
 * (netvsc.c negotiate_nvsp_ver / netvsc_init_buf, rndis_filter.c requests), plus the VMBus
 * whole-GPADL accessor netvsp uses for the receive and send buffers, and saved state (an
 * adapter in use saved and restored into a new one over the same guest). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "ref_checksum.h"
#include "state/savedstate.h"
#include "state_rt.h"
#include "vsp/net_offload.h"
#include "vsp/netvsp.h"
#include "vsp/rndis.h"

#define RING_PFN   0
#define RBUF_PFN   16
#define RBUF_PAGES 64
#define SBUF_PFN   80
#define SBUF_PAGES 16
#define RBUF_ID    0x100
#define SBUF_ID    0x101
static const uint8_t MAC[6] = {0x00, 0x15, 0x5d, 0x01, 0x02, 0x03};

struct frames {
	unsigned n;
	uint32_t len[16];
	uint8_t data[16][2048];
	unsigned rx_ready;       /* rx_ready callbacks seen */
	bool full;               /* tx_room says no */
};

struct t {
	struct fake_guest g;
	struct fg_chan c;
	struct netvsp *nv;
	struct frames out;
	uint64_t next_tid;
	uint32_t next_req;
};

static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void backend_tx(void *ctx, const uint8_t *frame, uint32_t len)
{
	struct frames *f = ctx;
	if (f->n < 16 && len <= sizeof(f->data[0])) {
		memcpy(f->data[f->n], frame, len);
		f->len[f->n++] = len;
	}
}

static void backend_rx_ready(void *ctx)
{
	((struct frames *)ctx)->rx_ready++;
}

static bool backend_tx_room(void *ctx)
{
	return !((struct frames *)ctx)->full;
}

/* guest -> host: one in-band NVSP message */
static void g_send(struct t *t, const uint8_t *msg, uint32_t len, uint64_t tid)
{
	bool sig = false;
	assert_int_equal(fg_ring_send(&t->c.send, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid,
				      msg, len, &sig), 0);
	fg_signal(&t->g, &t->c);
}

/* host -> guest: next packet; returns its length (0 if none) */
static uint32_t g_recv(struct t *t, uint8_t *buf)
{
	return fg_ring_recv(&t->c.recv, buf, 8192);
}

static void nvsp2(uint8_t *m, uint32_t type, uint32_t a, uint32_t b)
{
	memset(m, 0, 40);
	wr32(m, type);
	wr32(m + 4, a);
	wr32(m + 8, b);
}

/* Expect a completion for tid; returns its NVSP payload. */
static const uint8_t *expect_comp(struct t *t, uint8_t *buf, uint64_t tid, uint32_t type)
{
	uint32_t len = g_recv(t, buf);
	assert_true(len >= 16 + 8);
	const struct vmpacket_descriptor *d = (const void *)buf;
	assert_int_equal(d->type, VM_PKT_COMP);
	assert_int_equal(d->trans_id, tid);
	const uint8_t *m = buf + d->offset8 * 8;
	assert_int_equal(rd32(m), type);
	return m;
}

static void gpadl_pages(struct t *t, uint32_t id, uint32_t first, uint32_t n)
{
	uint32_t pfns[FG_RAM_PAGES];
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = first + i;
	assert_int_equal(fg_gpadl(&t->g, 1, id, pfns, n), 0);
}

/* A fresh fake guest, server and adapter. */
static void attach(struct t *t)
{
	fg_init(&t->g);
	struct netvsp_config cfg = {0};
	memcpy(cfg.mac, MAC, 6);
	struct netvsp_backend be = { .tx = backend_tx, .rx_ready = backend_rx_ready, .tx_room = backend_tx_room, .ctx = &t->out };
	t->nv = netvsp_new(t->g.srv, &cfg, &be);
	assert_non_null(t->nv);
}

static struct t *setup_open(void)
{
	struct t *t = calloc(1, sizeof(*t));
	attach(t);
	assert_int_equal(fg_connect(&t->g, VERSION_WIN10_V5_2), 1);
	assert_int_equal(fg_request_offers(&t->g), 1);
	assert_int_equal(fg_open(&t->g, &t->c, 1, 1, RING_PFN, 8, 8), 0);
	t->next_tid = 1000;
	t->next_req = 1;
	return t;
}

static void teardown(struct t *t)
{
	fg_free(&t->g);
	netvsp_free(t->nv);
	free(t);
}

/* INIT (6.1) + NDIS config/version + receive and send buffers, as netvsc_connect_vsp does. */
static void connect_vsp(struct t *t)
{
	uint8_t m[40], buf[8192];
	nvsp2(m, NVSP_MSG_TYPE_INIT, NVSP_PROTOCOL_VERSION_61, NVSP_PROTOCOL_VERSION_61);
	g_send(t, m, 40, 1);
	const uint8_t *r = expect_comp(t, buf, 1, NVSP_MSG_TYPE_INIT_COMPLETE);
	assert_int_equal(rd32(r + 4), NVSP_PROTOCOL_VERSION_61);
	assert_int_equal(rd32(r + 12), NVSP_STAT_SUCCESS);
	nvsp2(m, NVSP_MSG2_TYPE_SEND_NDIS_CONFIG, 1514, 0);
	g_send(t, m, 40, 2);
	nvsp2(m, NVSP_MSG1_TYPE_SEND_NDIS_VER, 6, 30);
	g_send(t, m, 40, 3);
	assert_int_equal(g_recv(t, buf), 0); /* neither is answered */
	gpadl_pages(t, RBUF_ID, RBUF_PFN, RBUF_PAGES);
	nvsp2(m, NVSP_MSG1_TYPE_SEND_RECV_BUF, RBUF_ID, NETVSC_RECEIVE_BUFFER_ID);
	g_send(t, m, 40, 4);
	r = expect_comp(t, buf, 4, NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE);
	assert_int_equal(rd32(r + 4), NVSP_STAT_SUCCESS);
	assert_int_equal(rd32(r + 8), 1);                      /* one section */
	assert_int_equal(rd32(r + 12), 0);                     /* at offset 0 */
	assert_int_equal(rd32(r + 16), NETVSP_RECV_SECTION_SIZE);
	uint32_t count = rd32(r + 20);
	assert_int_equal(count, RBUF_PAGES * 4096 / NETVSP_RECV_SECTION_SIZE);
	assert_true((uint64_t)count * rd32(r + 16) <= RBUF_PAGES * 4096);
	gpadl_pages(t, SBUF_ID, SBUF_PFN, SBUF_PAGES);
	nvsp2(m, NVSP_MSG1_TYPE_SEND_SEND_BUF, SBUF_ID, 0);
	g_send(t, m, 40, 5);
	r = expect_comp(t, buf, 5, NVSP_MSG1_TYPE_SEND_SEND_BUF_COMPLETE);
	assert_int_equal(rd32(r + 4), NVSP_STAT_SUCCESS);
	assert_int_equal(rd32(r + 8), NETVSP_SEND_SECTION_SIZE);
}

/* RNDIS bytes into send section idx and SEND_RNDIS_PKT; expects the RNDIS_PKT_COMPLETE. */
static uint32_t send_rndis(struct t *t, uint32_t section, const uint8_t *rndis, uint32_t len, uint32_t chan_type)
{
	uint8_t m[40], buf[8192];
	if (section != NETVSP_NO_SECTION && section < SBUF_PAGES * 4096 / NETVSP_SEND_SECTION_SIZE)
		memcpy((uint8_t *)fg_page(&t->g, SBUF_PFN) + (size_t)section * NETVSP_SEND_SECTION_SIZE, rndis, len);
	memset(m, 0, sizeof(m));
	wr32(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
	wr32(m + 4, chan_type);
	wr32(m + 8, section);
	wr32(m + 12, len);
	uint64_t tid = t->next_tid++;
	g_send(t, m, 40, tid);
	const uint8_t *r = expect_comp(t, buf, tid, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	return rd32(r + 4);
}

/* Next transfer-page packet: copies its RNDIS message out of the receive buffer, completes it
 * unless keep; returns the message length (0 if none). */
static uint32_t recv_rndis(struct t *t, uint8_t *msg, bool complete, uint64_t *tid_out)
{
	uint8_t buf[8192];
	uint32_t len = g_recv(t, buf);
	if (!len)
		return 0;
	const struct vmpacket_descriptor *d = (const void *)buf;
	assert_int_equal(d->type, VM_PKT_DATA_USING_XFER_PAGES);
	const struct vmtransfer_page_packet_header *x = (const void *)buf;
	assert_int_equal(x->xfer_pageset_id, NETVSC_RECEIVE_BUFFER_ID);
	assert_int_equal(x->range_cnt, 1);
	assert_true(d->offset8 * 8 >= 24 + 8);
	const uint8_t *nv = buf + d->offset8 * 8;
	assert_int_equal(rd32(nv), NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
	uint32_t off = x->ranges[0].byte_offset, n = x->ranges[0].byte_count;
	assert_true(n <= NETVSP_RECV_SECTION_SIZE);
	assert_true(off + n <= RBUF_PAGES * 4096);
	memcpy(msg, (uint8_t *)fg_page(&t->g, RBUF_PFN) + off, n);
	assert_int_equal(rd32(msg + 4), n);
	if (tid_out)
		*tid_out = d->trans_id;
	if (complete) {
		uint8_t m[40];
		nvsp2(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE, NVSP_STAT_SUCCESS, 0);
		bool sig;
		assert_int_equal(fg_ring_send(&t->c.send, VM_PKT_COMP, 0, d->trans_id, m, 40, &sig), 0);
		fg_signal(&t->g, &t->c);
	}
	return n;
}

/* An RNDIS control request; returns the answer's length in resp. */
static uint32_t rndis_request(struct t *t, uint32_t type, uint32_t oid, const void *info, uint32_t info_len,
			      uint8_t *resp)
{
	uint8_t m[1024] = {0};
	uint32_t req = t->next_req++;
	uint32_t len;
	wr32(m, type);
	wr32(m + 8, req);
	if (type == RNDIS_MSG_INIT) {
		wr32(m + 12, 1);
		wr32(m + 16, 0);
		wr32(m + 20, 0x4000);
		len = 24;
	} else if (type == RNDIS_MSG_KEEPALIVE) {
		len = 12;
	} else {
		wr32(m + 12, oid);
		wr32(m + 16, info_len);
		wr32(m + 20, 20);
		if (info_len)
			memcpy(m + 28, info, info_len);
		len = 28 + info_len;
	}
	wr32(m + 4, len);
	assert_int_equal(send_rndis(t, 0, m, len, 1), NVSP_STAT_SUCCESS);
	uint32_t n = recv_rndis(t, resp, true, NULL);
	assert_true(n >= 16);
	assert_int_equal(rd32(resp), type | RNDIS_MSG_COMPLETION);
	assert_int_equal(rd32(resp + 8), req);
	return n;
}

static void rndis_up(struct t *t)
{
	uint8_t resp[1024];
	rndis_request(t, RNDIS_MSG_INIT, 0, NULL, 0, resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	uint32_t filter = 0xB; /* directed | multicast | broadcast */
	rndis_request(t, RNDIS_MSG_SET, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4, resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
}

static void test_nvsp_negotiation(void **state)
{
	(void)state;
	struct t *t = setup_open();
	uint8_t m[40], buf[8192];
	/* Linux tries newest first; an unknown version is refused and it tries the next. */
	nvsp2(m, NVSP_MSG_TYPE_INIT, 0x70000, 0x70000);
	g_send(t, m, 40, 7);
	const uint8_t *r = expect_comp(t, buf, 7, NVSP_MSG_TYPE_INIT_COMPLETE);
	assert_int_equal(rd32(r + 12), NVSP_STAT_FAIL);
	/* Receive buffer before INIT or with an unknown GPADL: refused. */
	nvsp2(m, NVSP_MSG1_TYPE_SEND_RECV_BUF, 0x999, NETVSC_RECEIVE_BUFFER_ID);
	g_send(t, m, 40, 8);
	r = expect_comp(t, buf, 8, NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE);
	assert_int_equal(rd32(r + 4), NVSP_STAT_FAIL);
	for (uint32_t v = 0; v < 5; v++) {
		static const uint32_t vers[] = {NVSP_PROTOCOL_VERSION_6, NVSP_PROTOCOL_VERSION_5, NVSP_PROTOCOL_VERSION_4,
						NVSP_PROTOCOL_VERSION_2, NVSP_PROTOCOL_VERSION_1};
		nvsp2(m, NVSP_MSG_TYPE_INIT, vers[v], vers[v]);
		g_send(t, m, 40, 20 + v);
		r = expect_comp(t, buf, 20 + v, NVSP_MSG_TYPE_INIT_COMPLETE);
		assert_int_equal(rd32(r + 12), NVSP_STAT_SUCCESS);
		assert_int_equal(rd32(r + 4), vers[v]);
	}
	connect_vsp(t);
	/* A second receive buffer is refused; sub-channels are refused. */
	nvsp2(m, NVSP_MSG1_TYPE_SEND_RECV_BUF, RBUF_ID, NETVSC_RECEIVE_BUFFER_ID);
	g_send(t, m, 40, 30);
	r = expect_comp(t, buf, 30, NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE);
	assert_int_equal(rd32(r + 4), NVSP_STAT_FAIL);
	nvsp2(m, NVSP_MSG5_TYPE_SUBCHANNEL, 1, 4);
	g_send(t, m, 40, 31);
	r = expect_comp(t, buf, 31, NVSP_MSG5_TYPE_SUBCHANNEL);
	assert_int_equal(rd32(r + 4), NVSP_STAT_FAIL);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_int_equal(st.nvsp_version, NVSP_PROTOCOL_VERSION_61);
	teardown(t);
}

static void test_rndis_answers(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	uint8_t resp[1024];
	uint32_t n = rndis_request(t, RNDIS_MSG_INIT, 0, NULL, 0, resp);
	assert_int_equal(n, 52);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	assert_int_equal(rd32(resp + 16), 1);  /* major */
	assert_true(rd32(resp + 32) >= 1);     /* max_pkt_per_msg */
	/* MAC (permanent and current) */
	n = rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_802_3_PERMANENT_ADDRESS, NULL, 0, resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	assert_int_equal(rd32(resp + 16), 6);
	assert_memory_equal(resp + 8 + rd32(resp + 20), MAC, 6);
	n = rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_802_3_CURRENT_ADDRESS, NULL, 0, resp);
	assert_memory_equal(resp + 8 + rd32(resp + 20), MAC, 6);
	/* frame size, link speed, media state, physical medium */
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE, NULL, 0, resp);
	assert_int_equal(rd32(resp + 8 + rd32(resp + 20)), 1500);
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_LINK_SPEED, NULL, 0, resp);
	assert_int_equal(rd32(resp + 8 + rd32(resp + 20)), 100000000); /* 10 Gbit/s in 100 bps */
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, resp);
	assert_int_equal(rd32(resp + 8 + rd32(resp + 20)), RNDIS_MEDIA_STATE_CONNECTED);
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_PHYSICAL_MEDIUM, NULL, 0, resp);
	assert_int_equal(rd32(resp + 8 + rd32(resp + 20)), RNDIS_PHYSICAL_MEDIUM_802_3);
	/* Offload capabilities: Linux sends an NDIS_OFFLOAD header (type, revision 3, size) and
	 * needs an answer of that type and size >= the 6.0 size: TCP/UDP transmit checksums and
	 * LSOv2 for IPv4 and IPv6 (as Linux's rndis_netdev_set_hwcaps tests them), nothing else. */
	uint8_t caps[0xA8] = {NDIS_OBJECT_TYPE_OFFLOAD, 3, 0xA8, 0};
	n = rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES, caps, sizeof(caps), resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	assert_int_equal(rd32(resp + 16), sizeof(caps));
	const uint8_t *info = resp + 8 + rd32(resp + 20);
	assert_int_equal(info[0], NDIS_OBJECT_TYPE_OFFLOAD);
	assert_int_equal(info[2] | info[3] << 8, 0xA8);
	assert_int_equal(rd32(info + NDIS_OFFLOAD_IP4_TXCSUM) & (NDIS_TXCSUM_TCP4 | NDIS_TXCSUM_TCP4OPT),
			 NDIS_TXCSUM_TCP4 | NDIS_TXCSUM_TCP4OPT);
	assert_true(rd32(info + NDIS_OFFLOAD_IP4_TXCSUM) & NDIS_TXCSUM_UDP4);
	assert_int_equal(rd32(info + NDIS_OFFLOAD_IP6_TXCSUM) & (NDIS_TXCSUM_TCP6 | NDIS_TXCSUM_TCP6OPT | NDIS_TXCSUM_IP6EXT),
			 NDIS_TXCSUM_TCP6 | NDIS_TXCSUM_TCP6OPT | NDIS_TXCSUM_IP6EXT);
	assert_true(rd32(info + NDIS_OFFLOAD_LSOV2_IP4_ENCAP) & NDIS_OFFLOAD_ENCAP_8023);
	assert_int_equal(rd32(info + NDIS_OFFLOAD_LSOV2_IP4_MAXSZ), NET_LSO_MAX_SIZE);
	assert_int_equal(rd32(info + NDIS_OFFLOAD_LSOV2_IP6_OPTS), NDIS_LSOV2_IP6EXT | NDIS_LSOV2_TCP6OPT);
	assert_int_equal(info[NDIS_OFFLOAD_RSC_IP4], 1); /* coalesced receives */
	assert_int_equal(info[NDIS_OFFLOAD_RSC_IP6], 1);
	for (size_t i = 4; i < sizeof(caps); i++) /* receive checksums, LSOv1, IPsec: none */
		if (i < NDIS_OFFLOAD_IP4_TXENC + 8 || (i >= 20 && i < 28) || (i >= 80 && i < 108) ||
		    i == NDIS_OFFLOAD_RSC_IP4 || i == NDIS_OFFLOAD_RSC_IP6)
			continue;
		else
			assert_int_equal(info[i], 0);
	/* RSS capabilities and friendly name: not supported (no vRSS) */
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_RECEIVE_SCALE_CAPABILITIES, NULL, 0, resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_NOT_SUPPORTED);
	assert_int_equal(rd32(resp + 16), 0);
	/* SETs: packet filter, lookahead, offload parameters accepted; RSS parameters refused */
	uint32_t v = 0xB;
	rndis_request(t, RNDIS_MSG_SET, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &v, 4, resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	v = 1500;
	rndis_request(t, RNDIS_MSG_SET, RNDIS_OID_GEN_CURRENT_LOOKAHEAD, &v, 4, resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	uint8_t params[40] = {0xA8, 3, 40, 0};
	rndis_request(t, RNDIS_MSG_SET, RNDIS_OID_TCP_OFFLOAD_PARAMETERS, params, sizeof(params), resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	rndis_request(t, RNDIS_MSG_SET, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, params, sizeof(params), resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_NOT_SUPPORTED);
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, NULL, 0, resp);
	assert_int_equal(rd32(resp + 8 + rd32(resp + 20)), 0xB);
	/* KEEPALIVE */
	rndis_request(t, RNDIS_MSG_KEEPALIVE, 0, NULL, 0, resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	/* HALT: no answer, and the adapter is no longer initialised */
	uint8_t halt[12] = {0};
	wr32(halt, RNDIS_MSG_HALT);
	wr32(halt + 4, 12);
	assert_int_equal(send_rndis(t, 1, halt, 12, 1), NVSP_STAT_SUCCESS);
	assert_int_equal(recv_rndis(t, resp, true, NULL), 0);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_false(st.rndis_initialized);
	assert_int_equal(st.bad_packets, 0);
	teardown(t);
}

static uint32_t packet_msg(uint8_t *m, const uint8_t *frame, uint32_t flen, uint32_t pad)
{
	uint32_t n = rndis_build_packet_header(m, flen);
	memcpy(m + RNDIS_PACKET_HDR_LEN, frame, flen);
	wr32(m + 4, n + pad);
	memset(m + n, 0, pad);
	return n + pad;
}

static void test_data_path(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	/* guest -> host: one frame, then a batch of two in one section */
	uint8_t f1[60], f2[1514], m[8192];
	for (size_t i = 0; i < sizeof(f1); i++)
		f1[i] = (uint8_t)i;
	for (size_t i = 0; i < sizeof(f2); i++)
		f2[i] = (uint8_t)(i * 7);
	uint32_t n = packet_msg(m, f1, sizeof(f1), 0);
	assert_int_equal(send_rndis(t, 2, m, n, 0), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 1);
	assert_int_equal(t->out.len[0], sizeof(f1));
	assert_memory_equal(t->out.data[0], f1, sizeof(f1));
	n = packet_msg(m, f1, sizeof(f1), 4); /* 104 + 4 padding: 8-byte aligned batch */
	n += packet_msg(m + n, f2, sizeof(f2), 0);
	assert_int_equal(send_rndis(t, 3, m, n, 0), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 3);
	assert_memory_equal(t->out.data[2], f2, sizeof(f2));
	/* host -> guest */
	assert_int_equal(netvsp_rx(t->nv, f2, sizeof(f2)), 0);
	uint8_t got[2048];
	uint64_t tid;
	n = recv_rndis(t, got, true, &tid);
	assert_int_equal(n, RNDIS_PACKET_HDR_LEN + sizeof(f2));
	assert_int_equal(rd32(got), RNDIS_MSG_PACKET);
	assert_int_equal(rd32(got + 12), sizeof(f2));
	assert_memory_equal(got + 8 + rd32(got + 8), f2, sizeof(f2));
	/* The guest holds every piece: the backend is told to wait (nothing is lost); completing one
	 * frees it and says so through rx_ready. */
	uint32_t pieces = RBUF_PAGES * 4096 / NETVSP_RECV_SECTION_SIZE, sent = 0;
	int r;
	while ((r = netvsp_rx(t->nv, f1, sizeof(f1))) == NETVSP_RX_OK)
		sent++;
	assert_int_equal(r, NETVSP_RX_BUSY);
	assert_int_equal(netvsp_rx(t->nv, f1, sizeof(f1)), NETVSP_RX_BUSY);
	assert_true(sent >= 1);
	assert_int_equal(t->out.rx_ready, 0);
	uint64_t first_tid = 0;
	uint32_t seen = 0;
	while (recv_rndis(t, got, false, seen ? NULL : &first_tid))
		seen++;
	assert_int_equal(seen, sent);
	assert_true(sent <= pieces);
	uint8_t c[40];
	nvsp2(c, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE, NVSP_STAT_SUCCESS, 0);
	bool sig;
	assert_int_equal(fg_ring_send(&t->c.send, VM_PKT_COMP, 0, first_tid, c, 40, &sig), 0);
	fg_signal(&t->g, &t->c);
	assert_int_equal(t->out.rx_ready, 1);
	assert_int_equal(netvsp_rx(t->nv, f1, sizeof(f1)), NETVSP_RX_OK);
	/* A frame too big for a piece is dropped. */
	uint8_t big[1800] = {0};
	assert_int_equal(netvsp_rx(t->nv, big, sizeof(big)), NETVSP_RX_DROPPED);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_int_equal(st.tx_packets, 3);
	assert_int_equal(st.tx_bytes, 2 * sizeof(f1) + sizeof(f2));
	assert_int_equal(st.rx_packets, 1 + sent + 1);
	assert_int_equal(st.rx_drops, 1);
	assert_int_equal(st.rx_busy, 2);
	teardown(t);
}

static void test_link_indications(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	uint8_t msg[1024], f[60] = {0};
	netvsp_set_link(t->nv, false);
	assert_int_equal(recv_rndis(t, msg, true, NULL), 20);
	assert_int_equal(rd32(msg), RNDIS_MSG_INDICATE);
	assert_int_equal(rd32(msg + 8), RNDIS_STATUS_MEDIA_DISCONNECT);
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, msg);
	assert_int_equal(rd32(msg + 8 + rd32(msg + 20)), RNDIS_MEDIA_STATE_DISCONNECTED);
	assert_int_equal(netvsp_rx(t->nv, f, sizeof(f)), -1); /* link down: nothing flows */
	netvsp_set_link(t->nv, true);
	assert_int_equal(recv_rndis(t, msg, true, NULL), 20);
	assert_int_equal(rd32(msg + 8), RNDIS_STATUS_MEDIA_CONNECT);
	assert_int_equal(netvsp_rx(t->nv, f, sizeof(f)), 0);
	teardown(t);
}

static void test_hostile(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	uint8_t m[8192], buf[8192];
	memset(m, 0, sizeof(m));
	/* section out of range, size over the section, no section and not GPA-direct */
	assert_int_equal(send_rndis(t, 1000, m, 64, 0), NVSP_STAT_FAIL);
	assert_int_equal(send_rndis(t, 0, m, NETVSP_SEND_SECTION_SIZE + 1, 0), NVSP_STAT_FAIL);
	assert_int_equal(send_rndis(t, NETVSP_NO_SECTION, m, 64, 0), NVSP_STAT_FAIL);
	/* RNDIS: msg_len past the data, msg_len < 8, packet offsets outside, tiny frame */
	wr32(m, RNDIS_MSG_PACKET);
	wr32(m + 4, 5000);
	assert_int_equal(send_rndis(t, 0, m, 100, 0), NVSP_STAT_FAIL);
	wr32(m + 4, 4);
	assert_int_equal(send_rndis(t, 0, m, 100, 0), NVSP_STAT_FAIL);
	rndis_build_packet_header(m, 60);
	wr32(m + 8, 0xFFFFFFF0u); /* data_offset wraps */
	assert_int_equal(send_rndis(t, 0, m, 104, 0), NVSP_STAT_FAIL);
	rndis_build_packet_header(m, 60);
	wr32(m + 12, 0xFFFFFFFFu); /* data_len */
	assert_int_equal(send_rndis(t, 0, m, 104, 0), NVSP_STAT_FAIL);
	rndis_build_packet_header(m, 4);
	assert_int_equal(send_rndis(t, 0, m, 48, 0), NVSP_STAT_FAIL);
	/* QUERY whose info buffer lies outside the message: answered INVALID_DATA */
	wr32(m, RNDIS_MSG_QUERY);
	wr32(m + 4, 28);
	wr32(m + 8, 77);
	wr32(m + 12, RNDIS_OID_GEN_LINK_SPEED);
	wr32(m + 16, 0x1000);
	wr32(m + 20, 0xFFFFFF00u);
	assert_int_equal(send_rndis(t, 0, m, 28, 1), NVSP_STAT_SUCCESS);
	uint8_t resp[1024];
	assert_true(recv_rndis(t, resp, true, NULL) >= 16);
	assert_int_equal(rd32(resp + 8), 77);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_INVALID_DATA);
	/* truncated NVSP messages, unknown types, a completion for a piece never announced */
	uint8_t s[4] = {NVSP_MSG1_TYPE_SEND_RECV_BUF, 0, 0, 0};
	g_send(t, s, 4, 50);
	wr32(s, 0x7777);
	g_send(t, s, 4, 51);
	uint8_t c[40];
	nvsp2(c, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE, NVSP_STAT_SUCCESS, 0);
	bool sig;
	assert_int_equal(fg_ring_send(&t->c.send, VM_PKT_COMP, 0, 123456789, c, 40, &sig), 0);
	fg_signal(&t->g, &t->c);
	assert_int_equal(g_recv(t, buf), 0);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_true(st.bad_packets >= 10);
	assert_int_equal(st.tx_packets, 0);
	/* still working */
	uint8_t f[60] = {1};
	uint32_t n = packet_msg(m, f, sizeof(f), 0);
	assert_int_equal(send_rndis(t, 0, m, n, 0), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 1);
	/* revoke the receive buffer: frames for the guest are dropped from then on */
	uint8_t r[40];
	nvsp2(r, NVSP_MSG1_TYPE_REVOKE_RECV_BUF, NETVSC_RECEIVE_BUFFER_ID, 0);
	g_send(t, r, 40, 60);
	assert_int_equal(netvsp_rx(t->nv, f, sizeof(f)), -1);
	/* close: state is dropped; a fresh open starts over */
	assert_true(fg_close(&t->g, &t->c));
	assert_int_equal(netvsp_rx(t->nv, f, sizeof(f)), -1);
	teardown(t);
}

/* SEND_RNDIS_PKT without a section: the RNDIS message lies in GPA-direct ranges (Linux
 * vmbus_sendpacket_pagebuffer: one range per page buffer, a frame may span pages). */
static void send_gpa_direct_section(struct t *t, const uint8_t *ranges, uint32_t rlen, uint32_t nranges, uint64_t tid,
				    uint32_t section, uint32_t section_size)
{
	uint8_t body[512] = {0};
	wr32(body + 4, nranges);                     /* reserved, range_cnt */
	memcpy(body + 8, ranges, rlen);
	uint8_t *m = body + 8 + rlen;
	wr32(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
	wr32(m + 8, section);
	wr32(m + 12, section_size);
	uint32_t w = t->c.send.hdr->write_index;
	bool sig;
	assert_int_equal(fg_ring_send(&t->c.send, VM_PKT_DATA_USING_GPA_DIRECT,
				      VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid, body, 8 + rlen + 16, &sig), 0);
	/* the payload starts after the ranges: patch offset8 as Linux would write it */
	t->c.send.data[(w + 2) % t->c.send.size] = (uint8_t)((16 + 8 + rlen) / 8);
	t->c.send.data[(w + 3) % t->c.send.size] = 0;
	fg_signal(&t->g, &t->c);
}

static void send_gpa_direct(struct t *t, const uint8_t *ranges, uint32_t rlen, uint32_t nranges, uint64_t tid)
{
	send_gpa_direct_section(t, ranges, rlen, nranges, tid, NETVSP_NO_SECTION, 0);
}

/* Linux's "partial copy" (netvsc_send, cp_partial): a batch whose last message's RNDIS header is
 * in the send section while that message's frame stays in guest pages, sent as GPA-direct
 * ranges in the same packet. Both frames arrive whole. */
static void test_partial_copy_send(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	uint8_t f1[100], f2[1514], m[8192];
	for (size_t i = 0; i < sizeof(f1); i++)
		f1[i] = (uint8_t)(i + 3);
	for (size_t i = 0; i < sizeof(f2); i++)
		f2[i] = (uint8_t)(i * 11);
	uint32_t n1 = packet_msg(m, f1, sizeof(f1), 4);
	rndis_build_packet_header(m + n1, sizeof(f2));
	uint32_t hlen = RNDIS_PACKET_HDR_LEN; /* only the header is in the section */
	memcpy((uint8_t *)fg_page(&t->g, SBUF_PFN) + 3 * NETVSP_SEND_SECTION_SIZE, m, n1 + hlen);
	memcpy((uint8_t *)fg_page(&t->g, 101) + 3000, f2, 1096);
	memcpy(fg_page(&t->g, 102), f2 + 1096, sizeof(f2) - 1096);
	uint8_t r[64];
	uint64_t pfn = 101;
	wr32(r, sizeof(f2));
	wr32(r + 4, 3000);
	memcpy(r + 8, &pfn, 8);
	pfn = 102;
	memcpy(r + 16, &pfn, 8);
	send_gpa_direct_section(t, r, 24, 1, 90, 3, n1 + hlen);
	uint8_t buf[8192];
	const uint8_t *c = expect_comp(t, buf, 90, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	assert_int_equal(rd32(c + 4), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 2);
	assert_int_equal(t->out.len[0], sizeof(f1));
	assert_memory_equal(t->out.data[0], f1, sizeof(f1));
	assert_int_equal(t->out.len[1], sizeof(f2));
	assert_memory_equal(t->out.data[1], f2, sizeof(f2));
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_int_equal(st.bad_packets, 0);
	teardown(t);
}

/* RNDIS_MSG_PACKET with one per-packet info entry (type, 4-byte value) in front of the frame. */
static uint32_t packet_msg_ppi(uint8_t *m, const uint8_t *frame, uint32_t flen, uint32_t ppi_type, uint32_t ppi_value)
{
	uint32_t n = RNDIS_PACKET_HDR_LEN + 16 + flen;
	memset(m, 0, RNDIS_PACKET_HDR_LEN + 16);
	wr32(m, RNDIS_MSG_PACKET);
	wr32(m + 4, n);
	wr32(m + 8, RNDIS_PACKET_SIZE + 16);  /* data_offset */
	wr32(m + 12, flen);
	wr32(m + 28, RNDIS_PACKET_SIZE);      /* per_pkt_info_offset */
	wr32(m + 32, 16);                     /* per_pkt_info_len */
	wr32(m + 44, 16);                     /* entry size */
	wr32(m + 48, ppi_type);
	wr32(m + 52, 12);                     /* value offset */
	wr32(m + 56, ppi_value);
	memcpy(m + RNDIS_PACKET_HDR_LEN + 16, frame, flen);
	return n;
}

/* Ethernet + IPv4 + TCP (or UDP) with payload bytes i*3, checksums left as Linux leaves them. */
static uint32_t ip_frame(uint8_t *f, bool tcp, uint32_t payload)
{
	uint32_t l4len = (tcp ? 20 : 8) + payload, n = 34 + l4len;
	memset(f, 0, 54);
	memcpy(f, "\xff\xff\xff\xff\xff\xff", 6);
	memcpy(f + 6, MAC, 6);
	f[12] = 0x08;
	f[14] = 0x45, f[16] = (uint8_t)((n - 14) >> 8), f[17] = (uint8_t)(n - 14), f[22] = 64, f[23] = tcp ? 6 : 17;
	f[26] = 10, f[29] = 1, f[30] = 10, f[33] = 2;
	f[34] = 0x12, f[36] = 0x00, f[37] = 0x50;
	if (tcp) {
		f[46] = 0x50, f[47] = 0x18;
	} else {
		f[38] = (uint8_t)(l4len >> 8), f[39] = (uint8_t)l4len;
	}
	for (uint32_t i = 0; i < payload; i++)
		f[34 + (tcp ? 20 : 8) + i] = (uint8_t)(i * 3);
	return n;
}

/* Transmit offloads as Linux asks for them: an LSOv2 large send comes out as MSS-sized frames,
 * a checksum request comes out with the checksum filled in; a bad request is refused. */
static void test_tx_offloads(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	static uint8_t f[6000], m[6200];
	uint32_t fl = ip_frame(f, true, 4000);
	f[16] = f[17] = 0; /* Linux zeroes the IPv4 total length of a large send */
	uint32_t lso = 1u << 30 | 34u << 20 | 1448; /* LSOv2, IPv4, TCP header at 34, MSS 1448 */
	uint32_t n = packet_msg_ppi(m, f, fl, RNDIS_PPI_LSO, lso);
	assert_int_equal(send_rndis(t, 1, m, n, 0), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 3);
	assert_int_equal(t->out.len[0], 54 + 1448);
	assert_int_equal(t->out.len[2], 54 + 4000 - 2 * 1448);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(t->out.data[i][16] << 8 | t->out.data[i][17], t->out.len[i] - 14);
		assert_memory_equal(t->out.data[i] + 54, f + 54 + i * 1448, t->out.len[i] - 54);
	}
	/* UDP checksum: is_ipv4 | udp_checksum, transport header at 34 */
	fl = ip_frame(f, false, 100);
	n = packet_msg_ppi(m, f, fl, RNDIS_PPI_CSUM, 1u | 1u << 3 | 34u << 16);
	assert_int_equal(send_rndis(t, 2, m, n, 0), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 4);
	assert_true(t->out.data[3][40] | t->out.data[3][41]);
	/* hostile: an MSS of 1, a transport offset inside the IP header, a PPI entry past its area */
	fl = ip_frame(f, true, 4000);
	n = packet_msg_ppi(m, f, fl, RNDIS_PPI_LSO, 1u << 30 | 34u << 20 | 1);
	assert_int_equal(send_rndis(t, 1, m, n, 0), NVSP_STAT_FAIL);
	n = packet_msg_ppi(m, f, fl, RNDIS_PPI_LSO, 1u << 30 | 20u << 20 | 1448);
	assert_int_equal(send_rndis(t, 1, m, n, 0), NVSP_STAT_FAIL);
	n = packet_msg_ppi(m, f, fl, RNDIS_PPI_LSO, lso);
	wr32(m + 44, 17); /* entry size larger than the info area */
	assert_int_equal(send_rndis(t, 1, m, n, 0), NVSP_STAT_FAIL);
	/* without offload info a frame over the MTU is still refused */
	n = packet_msg(m, f, fl, 0);
	assert_int_equal(send_rndis(t, 1, m, n, 0), NVSP_STAT_FAIL);
	assert_int_equal(t->out.n, 4);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_int_equal(st.tx_packets, 4);
	assert_int_equal(st.bad_packets, 4);
	teardown(t);
}

/* The TCP pseudo-header sum of an IPv4 frame (not complemented), as a sender leaves it. */
static uint16_t pseudo4(const uint8_t *f, uint32_t l4len)
{
	return ref_sum(f + 26, 8, 6 + l4len);
}

/* The next transfer-page packet with all its ranges: each range's RNDIS packet data appended to
 * out (returns its length), the first fragment's flags in *flags0, the range count in *ranges. */
static uint32_t recv_coalesced(struct t *t, uint8_t *out, uint32_t *ranges, uint64_t *tid)
{
	static uint8_t buf[8192];
	uint32_t len = g_recv(t, buf);
	if (!len)
		return 0;
	const struct vmpacket_descriptor *d = (const void *)buf;
	assert_int_equal(d->type, VM_PKT_DATA_USING_XFER_PAGES);
	const struct vmtransfer_page_packet_header *x = (const void *)buf;
	*ranges = x->range_cnt;
	*tid = d->trans_id;
	uint32_t total = 0;
	for (uint32_t i = 0; i < x->range_cnt; i++) {
		const uint8_t *m = (uint8_t *)fg_page(&t->g, RBUF_PFN) + x->ranges[i].byte_offset;
		assert_int_equal(rd32(m), RNDIS_MSG_PACKET);
		assert_int_equal(rd32(m + 4), x->ranges[i].byte_count);
		if (x->range_cnt > 1) {
			/* per-packet info: the fragment id entry, then the checksum entry */
			const uint8_t *ppi = m + 8 + rd32(m + 28);
			assert_int_equal(rd32(m + 32), RNDIS_RSC_PPI_LEN);
			assert_int_equal(rd32(ppi + 4), RNDIS_PPI_PKTINFO_ID | RNDIS_PPI_INTERNAL);
			uint8_t fl = ppi[13];
			assert_true(fl & RNDIS_PKTINFO_SUBALLOC);
			assert_int_equal(!!(fl & RNDIS_PKTINFO_1ST_FRAG), i == 0);
			assert_int_equal(!!(fl & RNDIS_PKTINFO_LAST_FRAG), i + 1 == x->range_cnt);
			assert_int_equal(rd32(ppi + 20), RNDIS_PPI_CSUM);
			assert_int_equal(rd32(ppi + 28), NDIS_RXCSUM_TCP_OK | NDIS_RXCSUM_IP_OK);
		}
		memcpy(out + total, m + 8 + rd32(m + 8), rd32(m + 12));
		total += rd32(m + 12);
	}
	return total;
}

static void guest_completes(struct t *t, uint64_t tid)
{
	uint8_t m[40];
	bool sig;
	nvsp2(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE, NVSP_STAT_SUCCESS, 0);
	assert_int_equal(fg_ring_send(&t->c.send, VM_PKT_COMP, 0, tid, m, 40, &sig), 0);
	fg_signal(&t->g, &t->c);
}

/* A TCP segment above the MTU from the backend (a tap's GSO packet, checksum partial): cut into
 * MSS-sized frames while the guest has not turned RSC on; whole, as one coalesced receive of
 * several fragments, once it has -- with the checksum completed either way. */
static void test_rx_coalescing(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	static uint8_t f[20100], got[70000];
	const uint32_t payload = 20000;
	uint32_t n = ip_frame(f, true, payload);
	struct netvsp_rx_meta meta = { .needs_csum = true, .csum_start = 34, .csum_offset = 16,
				       .gso_type = NET_GSO_TCPV4, .gso_size = 1448 };
	f[50] = (uint8_t)(pseudo4(f, n - 34) >> 8), f[51] = (uint8_t)pseudo4(f, n - 34);
	static uint8_t copy[20100];
	memcpy(copy, f, n);
	assert_int_equal(netvsp_rx_meta(t->nv, copy, n, &meta), NETVSP_RX_OK);
	uint32_t ranges, segs = 0, at = 0;
	uint64_t tid;
	uint32_t len;
	while ((len = recv_coalesced(t, got, &ranges, &tid)) != 0) {
		assert_int_equal(ranges, 1);
		assert_true(len <= 1514);
		assert_memory_equal(got + 54, f + 54 + at, len - 54);
		assert_int_equal(ref_sum(got + 34, len - 34, pseudo4(got, len - 34)), 0xffff);
		at += len - 54;
		segs++;
		guest_completes(t, tid);
	}
	assert_int_equal(at, payload);
	assert_int_equal(segs, (payload + 1447) / 1448);
	/* the guest turns RSC on (NDIS_OFFLOAD_PARAMETERS, both RSC switches enabled) */
	uint8_t params[28] = {0x80, 3, 28, 0};
	params[NDIS_OFFLOAD_PARAMS_RSC_IP4] = params[NDIS_OFFLOAD_PARAMS_RSC_IP6] = NDIS_OFFLOAD_PARAMS_RSC_ENABLED;
	uint8_t resp[1024];
	rndis_request(t, RNDIS_MSG_SET, RNDIS_OID_TCP_OFFLOAD_PARAMETERS, params, sizeof(params), resp);
	assert_int_equal(rd32(resp + 12), RNDIS_STATUS_SUCCESS);
	memcpy(copy, f, n);
	assert_int_equal(netvsp_rx_meta(t->nv, copy, n, &meta), NETVSP_RX_OK);
	len = recv_coalesced(t, got, &ranges, &tid);
	assert_int_equal(len, n);
	assert_int_equal(ranges, (n + 1651) / 1652);
	assert_memory_equal(got + 54, f + 54, payload);
	assert_int_equal(ref_sum(got + 34, n - 34, pseudo4(got, n - 34)), 0xffff);
	/* one completion frees every piece: the whole buffer is usable again */
	guest_completes(t, tid);
	uint32_t pieces = RBUF_PAGES * 4096 / NETVSP_RECV_SECTION_SIZE;
	for (uint32_t i = 0; i < pieces; i++)
		assert_int_equal(netvsp_rx(t->nv, f, 60), NETVSP_RX_OK);
	assert_int_equal(netvsp_rx(t->nv, f, 60), NETVSP_RX_BUSY);
	/* no room for the whole segment: nothing is sent, the backend keeps it */
	memcpy(copy, f, n);
	assert_int_equal(netvsp_rx_meta(t->nv, copy, n, &meta), NETVSP_RX_BUSY);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_int_equal(st.rx_coalesced, 1);
	assert_int_equal(st.bad_packets, 0);
	teardown(t);
}

/* A full backend leaves the guest's sends in its ring; netvsp_tx_resume processes them. */
static void test_tx_backpressure(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	uint8_t f[60] = {1}, m[200], c[40];
	uint32_t n = packet_msg(m, f, sizeof(f), 0);
	memcpy((uint8_t *)fg_page(&t->g, SBUF_PFN), m, n);
	t->out.full = true;
	memset(c, 0, sizeof(c));
	wr32(c, NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
	wr32(c + 8, 0);
	wr32(c + 12, n);
	g_send(t, c, 40, 500);
	uint8_t buf[8192];
	assert_int_equal(g_recv(t, buf), 0); /* no completion: not processed */
	assert_int_equal(t->out.n, 0);
	t->out.full = false;
	netvsp_tx_resume(t->nv);
	const uint8_t *r = expect_comp(t, buf, 500, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	assert_int_equal(rd32(r + 4), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 1);
	teardown(t);
}

static void test_gpa_direct_send(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	uint8_t frame[300];
	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i * 13 + 1);
	uint8_t hdr[RNDIS_PACKET_HDR_LEN];
	rndis_build_packet_header(hdr, sizeof(frame));
	/* range 0: the RNDIS header at page 100 + 100; range 1: the frame from page 101 + 3900
	 * into page 102 */
	memcpy((uint8_t *)fg_page(&t->g, 100) + 100, hdr, sizeof(hdr));
	memcpy((uint8_t *)fg_page(&t->g, 101) + 3900, frame, 196);
	memcpy(fg_page(&t->g, 102), frame + 196, sizeof(frame) - 196);
	uint8_t r[64];
	uint64_t pfn;
	wr32(r, sizeof(hdr));
	wr32(r + 4, 100);
	pfn = 100;
	memcpy(r + 8, &pfn, 8);
	wr32(r + 16, sizeof(frame));
	wr32(r + 20, 3900);
	pfn = 101;
	memcpy(r + 24, &pfn, 8);
	pfn = 102;
	memcpy(r + 32, &pfn, 8);
	send_gpa_direct(t, r, 40, 2, 77);
	uint8_t buf[8192];
	const uint8_t *c = expect_comp(t, buf, 77, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	assert_int_equal(rd32(c + 4), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 1);
	assert_int_equal(t->out.len[0], sizeof(frame));
	assert_memory_equal(t->out.data[0], frame, sizeof(frame));
	/* a range whose page is outside guest RAM: failed and counted, nothing sent */
	pfn = 1u << 30;
	memcpy(r + 32, &pfn, 8);
	send_gpa_direct(t, r, 40, 2, 78);
	c = expect_comp(t, buf, 78, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	assert_int_equal(rd32(c + 4), NVSP_STAT_FAIL);
	assert_int_equal(t->out.n, 1);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_int_equal(st.bad_packets, 1);
	teardown(t);
}

/* ---- the VMBus whole-GPADL accessor ---- */
static const struct vmbus_device_ops dummy_ops = {.name = "dummy"};

static void test_gpadl_accessor(void **state)
{
	(void)state;
	struct t *t = setup_open();
	struct vmbus_chan *other = vmbus_server_add_device(t->g.srv, &dummy_ops, NULL);
	assert_non_null(other);
	gpadl_pages(t, RBUF_ID, RBUF_PFN, 3); /* channel 1's GPADL */
	const uint64_t *pfns;
	uint32_t count;
	/* Not this channel's: refused. */
	assert_int_equal(vmbus_chan_gpadl_map(other, RBUF_ID, &pfns, &count), -1);
	assert_int_equal(vmbus_chan_gpadl_map(other, 0x4242, &pfns, &count), -1);
	uint32_t p[2] = {100, 102}; /* two scattered pages on channel 2 */
	assert_int_equal(fg_gpadl(&t->g, 2, 0x500, p, 2), 0);
	assert_int_equal(vmbus_chan_gpadl_map(other, 0x500, &pfns, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(pfns[0], 100);
	assert_int_equal(pfns[1], 102);
	/* The host declares what it writes (the guest-write check); the GPADL's teardown ends it. */
	assert_int_equal(vmbus_chan_gpadl_writable(other, RBUF_ID, 4096), -1);
	assert_int_equal(vmbus_chan_gpadl_writable(other, 0x500, 8193), -1);
	assert_int_equal(vmbus_chan_gpadl_writable(other, 0x500, 8192), 0);
	/* A copy across the page boundary lands on both pages. */
	uint8_t data[100];
	for (int i = 0; i < 100; i++)
		data[i] = (uint8_t)(i + 1);
	assert_int_equal(vmbus_chan_gpadl_copy_to(other, 0x500, 4096 - 50, data, 100), 0);
	assert_memory_equal((uint8_t *)fg_page(&t->g, 100) + 4046, data, 50);
	assert_memory_equal(fg_page(&t->g, 102), data + 50, 50);
	uint8_t back[100];
	assert_int_equal(vmbus_chan_gpadl_copy_from(other, 0x500, 4096 - 50, back, 100), 0);
	assert_memory_equal(back, data, 100);
	/* Bounds: the end, past it, offset overflow, unknown id. */
	assert_int_equal(vmbus_chan_gpadl_copy_to(other, 0x500, 8192 - 100, data, 100), 0);
	assert_int_equal(vmbus_chan_gpadl_copy_to(other, 0x500, 8192 - 99, data, 100), -1);
	assert_int_equal(vmbus_chan_gpadl_copy_from(other, 0x500, UINT64_MAX - 10, back, 100), -1);
	assert_int_equal(vmbus_chan_gpadl_copy_from(other, 0x501, 0, back, 1), -1);
	/* Torn down: gone. */
	struct vmbus_channel_gpadl_teardown td = {
		.header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = 2, .gpadl = 0x500};
	FG_POST(&t->g, td);
	assert_int_equal(vmbus_chan_gpadl_map(other, 0x500, &pfns, &count), -1);
	teardown(t);
}

/* ---- saved state ---- */

/* The worker is gone with its guest, adapter and backend; a new one starts (nothing restored yet). */
static void new_vm(struct t *t)
{
	fg_free(&t->g);
	netvsp_free(t->nv);
	memset(&t->out, 0, sizeof(t->out));
	attach(t);
}

/* new_vm, the file restored (one section patched unless p is NULL); the guest's rings as before. */
static int restore_vm(struct t *t, int fd, const struct rt_patch *p)
{
	new_vm(t);
	int rc = rt_restore(&t->g, fd, p);
	fg_chan_init(&t->g, &t->c, 1, 1, RING_PFN, 8, 8);
	return rc;
}

static uint8_t *frame_of(uint8_t *f, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		f[i] = (uint8_t)(i * 13 + seed);
	return f;
}

/* Where a piece's frame is in the guest's receive buffer. */
static const uint8_t *piece_frame(struct t *t, uint64_t piece)
{
	const uint8_t *msg = (const uint8_t *)fg_page(&t->g, RBUF_PFN) + piece * NETVSP_RECV_SECTION_SIZE;
	return msg + 8 + rd32(msg + 8);
}

struct busy_guest {
	uint64_t ta, tb, tc;     /* frames A (completed), B, C (held) */
	uint64_t fill[200];      /* frames holding every other piece */
	uint32_t nfill;
	uint32_t keepalive_req;
	uint8_t fb[100], fc[100];
};

/* An adapter in use: RNDIS up with a lookahead set, frames B and C and every other piece held by
 * the guest, a KEEPALIVE answer waiting for a piece, a send the full backend left in the ring. */
static void busy(struct t *t, struct busy_guest *b)
{
	uint8_t msg[2048], fa[100];
	connect_vsp(t);
	rndis_up(t);
	uint32_t look = 1000;
	rndis_request(t, RNDIS_MSG_SET, RNDIS_OID_GEN_CURRENT_LOOKAHEAD, &look, 4, msg);
	assert_int_equal(netvsp_rx(t->nv, frame_of(fa, 100, 1), 100), NETVSP_RX_OK);
	assert_int_equal(netvsp_rx(t->nv, frame_of(b->fb, 100, 2), 100), NETVSP_RX_OK);
	assert_int_equal(netvsp_rx(t->nv, frame_of(b->fc, 100, 3), 100), NETVSP_RX_OK);
	assert_true(recv_rndis(t, msg, true, &b->ta));
	assert_true(recv_rndis(t, msg, false, &b->tb));
	assert_true(recv_rndis(t, msg, false, &b->tc));
	uint8_t f[60] = {0};
	while (netvsp_rx(t->nv, f, sizeof(f)) == NETVSP_RX_OK)
		assert_true(recv_rndis(t, msg, false, &b->fill[b->nfill++]));
	assert_int_equal(b->nfill, RBUF_PAGES * 4096 / NETVSP_RECV_SECTION_SIZE - 2);
	uint8_t ka[12];
	b->keepalive_req = t->next_req++;
	wr32(ka, RNDIS_MSG_KEEPALIVE);
	wr32(ka + 4, 12);
	wr32(ka + 8, b->keepalive_req);
	assert_int_equal(send_rndis(t, 0, ka, 12, 1), NVSP_STAT_SUCCESS);
	assert_int_equal(recv_rndis(t, msg, false, NULL), 0); /* no piece for the answer */
	uint32_t n = packet_msg(msg, frame_of(fa, 60, 9), 60, 0);
	memcpy((uint8_t *)fg_page(&t->g, SBUF_PFN) + 2 * NETVSP_SEND_SECTION_SIZE, msg, n);
	uint8_t m[40] = {0};
	wr32(m, NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
	wr32(m + 8, 2);
	wr32(m + 12, n);
	t->out.full = true;
	g_send(t, m, 40, 500);
	assert_int_equal(g_recv(t, msg), 0);
}

static int save_vm(struct t *t)
{
	int rc, fd = rt_save(&t->g, &rc);
	assert_int_equal(rc, 0);
	return fd;
}

/* Saved busy, restored into a new adapter: the held send goes out, the waiting answer comes,
 * the guest's completions of pieces from before free exactly those, new frames never land in a
 * piece the guest still holds, and the state saves the same again. */
static void test_save_restore(void **state)
{
	(void)state;
	struct t *t = setup_open();
	struct busy_guest b = {0};
	busy(t, &b);
	int fd = save_vm(t);
	size_t len;
	uint8_t *saved = rt_payload(fd, STATE_SECTION_NETVSP, 1, &len);
	assert_non_null(saved);

	assert_int_equal(restore_vm(t, fd, NULL), 0);
	int fd2 = save_vm(t);
	size_t len2;
	uint8_t *again = rt_payload(fd2, STATE_SECTION_NETVSP, 1, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(again, saved, len);
	free(again);
	free(saved);
	close(fd2);
	/* restore_finish read the send the old backend had no room for */
	uint8_t buf[8192], msg[2048];
	const uint8_t *r = expect_comp(t, buf, 500, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	assert_int_equal(rd32(r + 4), NVSP_STAT_SUCCESS);
	assert_int_equal(t->out.n, 1);
	assert_int_equal(t->out.len[0], 60);
	/* completing B frees its piece; the KEEPALIVE answer takes it */
	guest_completes(t, b.tb);
	uint64_t tid;
	assert_int_equal(recv_rndis(t, msg, true, &tid), 16);
	assert_int_equal(tid, b.tb);
	assert_int_equal(rd32(msg), RNDIS_MSG_KEEPALIVE_C);
	assert_int_equal(rd32(msg + 8), b.keepalive_req);
	/* one piece is free: a new frame goes there, not into C's */
	uint8_t fx[100];
	assert_int_equal(netvsp_rx(t->nv, frame_of(fx, 100, 7), 100), NETVSP_RX_OK);
	assert_int_equal(netvsp_rx(t->nv, fx, 100), NETVSP_RX_BUSY);
	assert_true(recv_rndis(t, msg, false, &tid));
	assert_int_equal(tid, b.tb);
	assert_memory_equal(piece_frame(t, b.tc), b.fc, 100);
	/* every piece held from before comes back */
	guest_completes(t, b.tc);
	for (uint32_t i = 0; i < b.nfill; i++)
		guest_completes(t, b.fill[i]);
	assert_int_equal(t->out.rx_ready, 1);
	uint32_t n = 0;
	while (netvsp_rx(t->nv, fx, 100) == NETVSP_RX_OK)
		n++;
	assert_int_equal(n, b.nfill + 1);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_int_equal(st.bad_packets, 0);
	assert_int_equal(st.nvsp_version, NVSP_PROTOCOL_VERSION_61);
	assert_true(st.rndis_initialized);
	assert_true(st.link_up);
	assert_int_equal(st.rx_packets, 1 + n);
	/* the RNDIS settings survived: lookahead and packet filter */
	while (recv_rndis(t, msg, true, NULL))
		;
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_CURRENT_LOOKAHEAD, NULL, 0, msg);
	assert_int_equal(rd32(msg + 8 + rd32(msg + 20)), 1000);
	rndis_request(t, RNDIS_MSG_QUERY, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, NULL, 0, msg);
	assert_int_equal(rd32(msg + 8 + rd32(msg + 20)), 0xB);
	close(fd);
	teardown(t);
}

/* The new backend has no link: the guest is told once the restore is finished. */
static void test_restore_link(void **state)
{
	(void)state;
	struct t *t = setup_open();
	connect_vsp(t);
	rndis_up(t);
	int fd = save_vm(t);
	new_vm(t);
	netvsp_set_link(t->nv, false);
	assert_int_equal(rt_restore(&t->g, fd, NULL), 0);
	fg_chan_init(&t->g, &t->c, 1, 1, RING_PFN, 8, 8);
	uint8_t msg[1024], f[60] = {0};
	assert_int_equal(recv_rndis(t, msg, true, NULL), 20);
	assert_int_equal(rd32(msg), RNDIS_MSG_INDICATE);
	assert_int_equal(rd32(msg + 8), RNDIS_STATUS_MEDIA_DISCONNECT);
	assert_int_equal(netvsp_rx(t->nv, f, sizeof(f)), NETVSP_RX_DROPPED);
	close(fd);
	teardown(t);
}

struct hostile_case {
	size_t off;          /* the field: width bytes (0: none) set to v */
	uint32_t v;
	unsigned width;
	int version, err;    /* the section version (-1: as saved); the error */
	const char *msg;
};

/* Each case restored from good with its change: that error, the channel not open. */
static void hostile_cases(struct t *t, int fd, const uint8_t *good, size_t len, const struct hostile_case *cases,
			  unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *bad = malloc(len);
		memcpy(bad, good, len);
		if (cases[i].width == 4)
			wr32(bad + cases[i].off, cases[i].v);
		else if (cases[i].width == 1)
			bad[cases[i].off] = (uint8_t)cases[i].v;
		struct rt_patch p = { STATE_SECTION_NETVSP, 1, cases[i].version, bad, len };
		int rc = restore_vm(t, fd, &p);
		if (rc != cases[i].err || !strstr(state_last_error(), cases[i].msg))
			fail_msg("case %u: %d \"%s\", not %d \"%s\"", i, rc, state_last_error(), cases[i].err,
				 cases[i].msg);
		assert_false(vmbus_chan_is_open(vmbus_server_channel(t->g.srv, 1)));
		free(bad);
	}
	/* cut anywhere, or a byte too many */
	for (size_t cut = 0; cut <= len; cut++) {
		uint8_t *bad = malloc(len + 1);
		memcpy(bad, good, len);
		bad[len] = 0;
		struct rt_patch p = { STATE_SECTION_NETVSP, 1, -1, bad, cut == len ? len + 1 : cut };
		int rc = restore_vm(t, fd, &p);
		if (rc != -EBADMSG)
			fail_msg("cut at %zu of %zu: %d \"%s\"", cut, len, rc, state_last_error());
		free(bad);
	}
}

/* Each field of the saved adapter out of range, and the payload cut at every length: a clean
 * error naming the field. First every piece held and an answer waiting, then pieces free. */
static void test_restore_hostile(void **state)
{
	(void)state;
	struct t *t = setup_open();
	struct busy_guest b = {0};
	busy(t, &b);
	int fd = save_vm(t);
	size_t len;
	uint8_t *good = rt_payload(fd, STATE_SECTION_NETVSP, 1, &len);
	assert_non_null(good);
	/* offsets of the variable part (docs/netvsp.md) */
	uint32_t pieces = rd32(good + 28), nfree = rd32(good + 32);
	assert_int_equal(pieces, 151);
	assert_int_equal(nfree, 0);
	size_t used_at = 40, sbuf_at = used_at + 8 * (size_t)pieces, nctl_at = sbuf_at + 12;
	size_t ncomp_at = nctl_at + 4 + 4 + 16;
	assert_int_equal(rd32(good + 36), pieces);
	assert_int_equal(rd32(good + nctl_at), 1);
	assert_int_equal(ncomp_at + 4, len);
	const struct hostile_case held[] = {
		{ 0, 0, 0, 2, -EPROTONOSUPPORT, "netvsp: channel 1: state version 2 (this build reads 1)" },
		{ 0, 0x12345, 4, -1, -EINVAL, "NVSP version 0x12345 is not one we speak" },
		{ 0, 0, 4, -1, -EINVAL, "RNDIS or buffers without an NVSP version" },
		{ 8, 0x80, 1, -1, -EINVAL, "unknown RNDIS flags 0x80" },
		{ 19, 0x7, 1, -1, -EINVAL, "unknown buffer flags 0x7" },
		{ 19, 0x2, 1, -1, -EINVAL, "receive-buffer fields without a receive buffer" },
		{ 20, 0x999, 4, -1, -EINVAL, "receive buffer GPADL 2457 holds 0 pieces" },
		{ 24, 1500, 4, -1, -EINVAL, "receive pieces of 1500 bytes" },
		{ 28, pieces + 1, 4, -1, -EINVAL, "holds 151 pieces, 152 saved" },
		{ 32, pieces + 1, 4, -1, -EINVAL, "152 free receive pieces of 151" },
		{ 36, pieces - 1, 4, -1, -EINVAL, "150 receive pieces in use and 0 free, of 151" },
		{ used_at, pieces, 4, -1, -EINVAL, "receive piece 151 in use is out of range" },
		{ used_at + 8, rd32(good + used_at), 4, -1, -EINVAL, "out of order" },
		{ used_at + 4, pieces + 5, 4, -1, -EINVAL, "is followed by piece 156 of 151" },
		{ sbuf_at, RBUF_ID, 4, -1, -EINVAL, "send buffer GPADL 256 holds 42 sections, 10 saved" },
		{ sbuf_at + 4, 4096, 4, -1, -EINVAL, "send sections of 4096 bytes" },
		{ sbuf_at + 8, 11, 4, -1, -EINVAL, "holds 10 sections, 11 saved" },
		{ nctl_at, 33, 4, -1, -EINVAL, "33 waiting RNDIS messages (at most 32)" },
		{ nctl_at + 4, 7, 4, -1, -EINVAL, "a waiting RNDIS message of 7 bytes" },
		{ ncomp_at, 17, 4, -1, -EINVAL, "17 waiting completions (at most 16)" },
	};
	hostile_cases(t, fd, good, len, held, sizeof(held) / sizeof(held[0]));
	free(good);

	/* the guest gives three pieces back (the waiting answer takes one) */
	assert_int_equal(restore_vm(t, fd, NULL), 0);
	close(fd);
	uint8_t msg[2048], buf[8192];
	expect_comp(t, buf, 500, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE);
	guest_completes(t, b.tc);
	guest_completes(t, b.fill[0]);
	guest_completes(t, b.fill[1]);
	assert_true(recv_rndis(t, msg, false, NULL));
	fd = save_vm(t);
	good = rt_payload(fd, STATE_SECTION_NETVSP, 1, &len);
	assert_int_equal(rd32(good + 32), 2);
	used_at = 36 + 8 + 4;
	const struct hostile_case some_free[] = {
		{ 36, pieces, 4, -1, -EINVAL, "free receive piece 151 is out of range or listed twice" },
		{ 40, rd32(good + 36), 4, -1, -EINVAL, "listed twice" },
		{ used_at, rd32(good + 36), 4, -1, -EINVAL, "or also free" },
		{ 44, pieces, 4, -1, -EINVAL, "151 receive pieces in use and 2 free, of 151" },
	};
	hostile_cases(t, fd, good, len, some_free, sizeof(some_free) / sizeof(some_free[0]));
	assert_int_equal(restore_vm(t, fd, NULL), 0);
	free(good);
	close(fd);
	teardown(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nvsp_negotiation),
		cmocka_unit_test(test_rndis_answers),
		cmocka_unit_test(test_data_path),
		cmocka_unit_test(test_link_indications),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_gpa_direct_send),
		cmocka_unit_test(test_partial_copy_send),
		cmocka_unit_test(test_tx_offloads),
		cmocka_unit_test(test_tx_backpressure),
		cmocka_unit_test(test_rx_coalescing),
		cmocka_unit_test(test_gpadl_accessor),
		cmocka_unit_test(test_save_restore),
		cmocka_unit_test(test_restore_link),
		cmocka_unit_test(test_restore_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
