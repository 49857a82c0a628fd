/* netvsp: NVSP over one VMBus channel, RNDIS on top (vsp/rndis.c), frames to a backend. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state/savedstate.h"
#include "vmbus/channel.h"
#include "vsp/net_offload.h"
#include "vsp/netvsp.h"
#include "vsp/rndis.h"

#define MAX_RECV_SECTIONS  65536u
#define NO_PIECE           UINT32_MAX
#define TX_SCRATCH         (96u * 1024)   /* one guest send: a section batch and/or GPA-direct pages (a large send) */
#define PENDING_CONTROL    32u            /* RNDIS answers waiting for a free receive piece */
#define PENDING_COMPLETES  16u            /* completions waiting for ring space */
#define NVSP_MAX_MDL_CHAIN 34u

struct pending_ctl {
	uint32_t len;
	uint8_t data[RNDIS_MAX_RESPONSE];
};

struct pending_comp {
	uint64_t trans_id;
	uint8_t msg[NETVSP_MSG_SIZE];
};

struct netvsp {
	struct vmbus_device_ops ops;
	struct vmbus_chan *chan;
	struct netvsp_backend be;
	struct rndis_config rcfg;
	struct rndis_state rst;
	bool link_up;                    /* the host's wish; rst.link_up mirrors it */
	uint32_t nvsp_version;
	uint32_t ndis_version;
	/* receive buffer: pieces of NETVSP_RECV_SECTION_SIZE */
	bool have_rbuf;
	uint32_t rbuf_gpadl;
	uint32_t nsections;
	uint32_t *free_sections;         /* stack */
	uint32_t nfree;
	uint8_t *in_use;                 /* per section: announced, not yet completed */
	uint32_t *next_piece;            /* per section: the next piece of the same VMBus packet */
	uint16_t rsc_id;
	/* send buffer */
	bool have_sbuf;
	uint32_t sbuf_gpadl;
	uint32_t sbuf_sections;
	uint8_t *scratch;
	uint8_t *segment;                /* one frame of a large send or receive being cut to MSS (under the lock) */
	struct pending_ctl ctl[PENDING_CONTROL];
	uint32_t ctl_head, ctl_count;
	struct pending_comp comp[PENDING_COMPLETES];
	uint32_t comp_head, comp_count;
	bool in_send;                    /* inside SEND_RNDIS_PKT: answers go out after its completion */
	bool rx_waiting;                 /* netvsp_rx said NETVSP_RX_BUSY: call be.rx_ready on room */
	struct netvsp_stats st;
};

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

/* ---- receive buffer pieces ---- */

static void rbuf_forget(struct netvsp *n)
{
	if (n->have_rbuf)
		vmbus_chan_gpadl_writable(n->chan, n->rbuf_gpadl, 0);
	free(n->free_sections);
	free(n->in_use);
	free(n->next_piece);
	n->free_sections = NULL;
	n->in_use = NULL;
	n->next_piece = NULL;
	n->nsections = n->nfree = 0;
	n->have_rbuf = false;
}

/* The piece tables for a receive buffer of count pieces (1..MAX_RECV_SECTIONS), all free. */
static bool rbuf_alloc(struct netvsp *n, uint32_t count)
{
	n->free_sections = malloc(sizeof(uint32_t) * count);
	n->in_use = calloc(count, 1);
	n->next_piece = malloc(sizeof(uint32_t) * count);
	if (!n->free_sections || !n->in_use || !n->next_piece)
		return false;
	for (uint32_t i = 0; i < count; i++)
		n->free_sections[i] = count - 1 - i; /* piece 0 first */
	n->nsections = n->nfree = count;
	return true;
}

/* Pieces a receive buffer GPADL of this channel holds (0: no such complete GPADL, or too small). */
static uint32_t rbuf_pieces(struct netvsp *n, uint32_t gpadl)
{
	const uint64_t *pfns;
	uint32_t npfns;
	if (vmbus_chan_gpadl_map(n->chan, gpadl, &pfns, &npfns) < 0)
		return 0;
	uint64_t count = (uint64_t)npfns * 4096 / NETVSP_RECV_SECTION_SIZE;
	return count > MAX_RECV_SECTIONS ? MAX_RECV_SECTIONS : (uint32_t)count;
}

/* Send-buffer sections a GPADL of this channel holds (0: no such complete GPADL, or too small). */
static uint32_t sbuf_sections(struct netvsp *n, uint32_t gpadl)
{
	const uint64_t *pfns;
	uint32_t npfns;
	if (vmbus_chan_gpadl_map(n->chan, gpadl, &pfns, &npfns) < 0)
		return 0;
	return (uint32_t)((uint64_t)npfns * 4096 / NETVSP_SEND_SECTION_SIZE);
}

static void reset_state(struct netvsp *n)
{
	rbuf_forget(n);
	n->have_sbuf = false;
	n->sbuf_sections = 0;
	n->nvsp_version = 0;
	n->ndis_version = 0;
	n->ctl_head = n->ctl_count = 0;
	n->comp_head = n->comp_count = 0;
	n->rst = (struct rndis_state){ .link_up = n->link_up };
}

#define RSC_FRAG_DATA (NETVSP_RECV_SECTION_SIZE - RNDIS_PACKET_HDR_LEN - RNDIS_RSC_PPI_LEN)
#define RSC_MAX_FRAGS 64

/* The i-th free receive piece from the top of the stack (the next ones announce takes). */
static uint32_t free_piece(const struct netvsp *n, uint32_t i)
{
	return n->free_sections[n->nfree - 1 - i];
}

/* Copies hdr + payload into free piece i. False when the GPADL is gone. */
static bool fill_piece(struct netvsp *n, uint32_t i, const uint8_t *hdr, uint32_t hlen, const uint8_t *payload,
		       uint32_t plen)
{
	uint64_t off = (uint64_t)free_piece(n, i) * NETVSP_RECV_SECTION_SIZE;
	return vmbus_chan_gpadl_copy_to(n->chan, n->rbuf_gpadl, off, hdr, hlen) == 0 &&
	       (!plen || vmbus_chan_gpadl_copy_to(n->chan, n->rbuf_gpadl, off + hlen, payload, plen) == 0);
}

/* Announces the top count free pieces (filled, lens[i] bytes each) in one transfer-page packet
 * whose trans_id is the first piece; its completion frees them all. 0, or -1 (ring full:
 * nothing taken). */
static int announce(struct netvsp *n, uint32_t count, const uint32_t *lens, bool control)
{
	uint8_t ext[8 + 8 * RSC_MAX_FRAGS];
	uint16_t pageset = NETVSC_RECEIVE_BUFFER_ID;
	memcpy(ext, &pageset, 2);
	ext[2] = 0; /* sender_owns_set */
	ext[3] = 0;
	wr32(ext + 4, count);                 /* range_cnt */
	for (uint32_t i = 0; i < count; i++) {
		wr32(ext + 8 + 8 * i, lens[i]);   /* byte_count */
		wr32(ext + 12 + 8 * i, free_piece(n, i) * NETVSP_RECV_SECTION_SIZE); /* byte_offset */
	}
	uint8_t msg[16];
	wr32(msg, NVSP_MSG1_TYPE_SEND_RNDIS_PKT);
	wr32(msg + 4, control ? 1 : 0);       /* channel_type */
	wr32(msg + 8, NETVSP_NO_SECTION);
	wr32(msg + 12, 0);
	if (vmbus_chan_send_ext(n->chan, VM_PKT_DATA_USING_XFER_PAGES, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
				free_piece(n, 0), ext, 8 + 8 * count, msg, sizeof(msg)) != 0)
		return -1;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t sec = free_piece(n, i);
		n->in_use[sec] = 1;
		n->next_piece[sec] = i + 1 < count ? free_piece(n, i + 1) : NO_PIECE;
	}
	n->nfree -= count;
	return 0;
}

/* Copy hdr + payload into a free piece and announce it. 0, or -1 (nothing sent). */
static int deliver(struct netvsp *n, const uint8_t *hdr, uint32_t hlen, const uint8_t *payload, uint32_t plen,
		   bool control)
{
	if (!n->chan || !vmbus_chan_is_open(n->chan) || !n->have_rbuf || !n->nfree ||
	    hlen + plen > NETVSP_RECV_SECTION_SIZE || !fill_piece(n, 0, hdr, hlen, payload, plen))
		return -1;
	uint32_t len = hlen + plen;
	return announce(n, 1, &len, control);
}

/* A large TCP segment as one coalesced receive: fragments of at most RSC_FRAG_DATA bytes, each
 * in its own piece, all in one transfer-page packet. NETVSP_RX_OK, _BUSY (no room: nothing
 * sent) or _DROPPED. */
static int deliver_rsc(struct netvsp *n, const uint8_t *frame, uint32_t len, uint32_t csum_ok)
{
	uint32_t count = (len + RSC_FRAG_DATA - 1) / RSC_FRAG_DATA, lens[RSC_MAX_FRAGS];
	if (count > n->nfree || count > RSC_MAX_FRAGS)
		return NETVSP_RX_BUSY;
	uint16_t id = n->rsc_id++;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t chunk = i + 1 < count ? RSC_FRAG_DATA : len - i * RSC_FRAG_DATA;
		uint8_t hdr[RNDIS_PACKET_HDR_LEN + RNDIS_RSC_PPI_LEN];
		uint8_t flags = RNDIS_PKTINFO_SUBALLOC | (i == 0 ? RNDIS_PKTINFO_1ST_FRAG : 0) |
				(i + 1 == count ? RNDIS_PKTINFO_LAST_FRAG : 0);
		lens[i] = rndis_build_rsc_header(hdr, chunk, flags, id, csum_ok);
		if (!fill_piece(n, i, hdr, sizeof(hdr), frame + i * RSC_FRAG_DATA, chunk))
			return NETVSP_RX_DROPPED;
	}
	return announce(n, count, lens, false) == 0 ? NETVSP_RX_OK : NETVSP_RX_BUSY;
}

static void flush_control(struct netvsp *n)
{
	while (n->ctl_count) {
		struct pending_ctl *c = &n->ctl[n->ctl_head];
		if (deliver(n, c->data, c->len, NULL, 0, true) < 0)
			return;
		n->ctl_head = (n->ctl_head + 1) % PENDING_CONTROL;
		n->ctl_count--;
	}
}

/* An RNDIS message for the guest (answer or indication) behind any waiting ones; false when
 * the queue is full (dropped). */
static bool queue_control(struct netvsp *n, const uint8_t *msg, uint32_t len)
{
	if (n->ctl_count == PENDING_CONTROL || len > RNDIS_MAX_RESPONSE) {
		n->st.rx_drops++;
		return false;
	}
	struct pending_ctl *c = &n->ctl[(n->ctl_head + n->ctl_count) % PENDING_CONTROL];
	memcpy(c->data, msg, len);
	c->len = len;
	n->ctl_count++;
	return true;
}

static void send_control(struct netvsp *n, const uint8_t *msg, uint32_t len)
{
	if (queue_control(n, msg, len) && !n->in_send)
		flush_control(n);
}

/* The indication of the link as rst.link_up has it (20 bytes). */
static uint32_t link_indication(const struct netvsp *n, uint8_t *msg)
{
	return rndis_build_indicate(msg, n->rst.link_up ? RNDIS_STATUS_MEDIA_CONNECT : RNDIS_STATUS_MEDIA_DISCONNECT);
}

static void flush_completions(struct netvsp *n)
{
	while (n->comp_count) {
		struct pending_comp *c = &n->comp[n->comp_head];
		if (vmbus_chan_complete(n->chan, c->trans_id, c->msg, NETVSP_MSG_SIZE) != 0)
			return;
		n->comp_head = (n->comp_head + 1) % PENDING_COMPLETES;
		n->comp_count--;
	}
}

/* Complete a guest request with an NVSP message (type + up to 3 words, padded). */
static void complete(struct netvsp *n, uint64_t trans_id, uint32_t type, const uint32_t *words, unsigned nwords)
{
	if (n->comp_count == PENDING_COMPLETES)
		return; /* cannot happen: on_packets stops reading while any wait */
	struct pending_comp *c = &n->comp[(n->comp_head + n->comp_count) % PENDING_COMPLETES];
	memset(c->msg, 0, sizeof(c->msg));
	c->trans_id = trans_id;
	wr32(c->msg, type);
	for (unsigned i = 0; i < nwords && 4 + 4 * i + 4 <= NETVSP_MSG_SIZE; i++)
		wr32(c->msg + 4 + 4 * i, words[i]);
	n->comp_count++;
	flush_completions(n);
}

/* ---- guest -> host ---- */

static void guest_frame(struct netvsp *n, const uint8_t *frame, uint32_t len)
{
	if (!n->rst.initialized || !n->link_up) {
		n->st.tx_drops++;
		return;
	}
	n->st.tx_packets++;
	n->st.tx_bytes += len;
	if (n->be.tx)
		n->be.tx(n->be.ctx, frame, len);
}

static void guest_frame_gso(struct netvsp *n, const uint8_t *frame, uint32_t len, const struct net_gso *gso)
{
	if (!n->rst.initialized || !n->link_up) {
		n->st.tx_drops++;
		return;
	}
	n->st.tx_packets++;
	n->st.tx_bytes += len;
	n->be.tx_gso(n->be.ctx, frame, len, gso);
}

static void emit_segment(void *ctx, const uint8_t *frame, uint32_t len)
{
	guest_frame(ctx, frame, len);
}

/* A frame with the offloads its RNDIS message asked for done here, as a NIC would: the
 * checksum filled in, a large send cut into MSS-sized frames. frame is ours (the scratch copy). */
static bool guest_send(struct netvsp *n, uint8_t *frame, uint32_t len, const struct rndis_tx_offload *ofl)
{
	if (ofl->lso && n->be.tx_gso) {
		struct net_gso gso;
		if (!net_lso_to_gso(frame, len, ofl->l4_offset, ofl->mss, n->rcfg.mtu + 14, &gso))
			return false;
		guest_frame_gso(n, frame, len, &gso);
		return true;
	}
	if (ofl->lso)
		return net_segment_tcp(frame, len, ofl->l4_offset, ofl->mss, n->rcfg.mtu + 14, n->segment, emit_segment, n) > 0;
	if ((ofl->csum_tcp || ofl->csum_udp) && !net_fill_l4_checksum(frame, len, ofl->l4_offset, ofl->csum_tcp))
		return false;
	guest_frame(n, frame, len);
	return true;
}

/* Every RNDIS message in buf (a section or a GPA-direct packet may hold a batch). */
static bool rndis_messages(struct netvsp *n, uint8_t *buf, uint32_t len)
{
	uint32_t pos = 0;
	bool ok = true;
	while (pos < len) {
		uint32_t type, mlen;
		if (rndis_msg_header(buf + pos, len - pos, &type, &mlen) < 0) {
			n->st.bad_packets++;
			return false;
		}
		uint8_t *m = buf + pos;
		if (type == RNDIS_MSG_PACKET) {
			uint32_t off, flen;
			struct rndis_tx_offload ofl;
			if (rndis_packet_offload(m, mlen, &ofl) < 0 ||
			    rndis_packet_frame(m, mlen, ofl.lso ? NET_LSO_MAX_SIZE : n->rcfg.mtu + 18, &off, &flen) < 0 ||
			    !guest_send(n, m + off, flen, &ofl)) {
				n->st.bad_packets++;
				n->st.tx_drops++;
				ok = false;
			}
		} else {
			uint8_t resp[RNDIS_MAX_RESPONSE];
			uint64_t bad = n->rst.bad_messages;
			int r = rndis_control(&n->rcfg, &n->rst, m, mlen, resp, sizeof(resp));
			n->st.bad_packets += n->rst.bad_messages - bad;
			if (r > 0)
				send_control(n, resp, (uint32_t)r);
			else if (r < 0)
				ok = false;
		}
		pos += mlen;
	}
	return ok;
}

/* SEND_RNDIS_PKT: gather the RNDIS bytes from the send buffer or the packet's pages. */
static uint32_t on_rndis_pkt(struct netvsp *n, const struct vmbus_packet *pkt, const uint8_t *msg, uint32_t len)
{
	if (len < 16 || !n->nvsp_version)
		goto bad;
	uint32_t index = rd32(msg + 8), size = rd32(msg + 12);
	uint32_t total = 0;
	if (index != NETVSP_NO_SECTION) {
		if (!n->have_sbuf || index >= n->sbuf_sections || size > NETVSP_SEND_SECTION_SIZE ||
		    vmbus_chan_gpadl_copy_from(n->chan, n->sbuf_gpadl, (uint64_t)index * NETVSP_SEND_SECTION_SIZE,
					       n->scratch, size) < 0)
			goto bad;
		total = size;
	} else if (pkt->type != VM_PKT_DATA_USING_GPA_DIRECT) {
		goto bad;
	}
	/* Page buffers follow the section's bytes: with a section, Linux's "partial copy" puts the
	 * last batched message's RNDIS header in the section and leaves its frame in guest pages. */
	if (pkt->type == VM_PKT_DATA_USING_GPA_DIRECT) {
		for (uint32_t i = 0; i < pkt->range_count; i++) {
			struct vmbus_gpa_range r;
			if (vmbus_packet_gpa_range(pkt, i, &r) < 0 || r.byte_count > TX_SCRATCH - total ||
			    vmbus_chan_copy_from_range(n->chan, &r, 0, n->scratch + total, r.byte_count) < 0)
				goto bad;
			total += r.byte_count;
		}
	}
	return rndis_messages(n, n->scratch, total) ? NVSP_STAT_SUCCESS : NVSP_STAT_FAIL;
bad:
	n->st.bad_packets++;
	n->st.tx_drops++;
	return NVSP_STAT_FAIL;
}

static void on_init(struct netvsp *n, const struct vmbus_packet *pkt, const uint8_t *msg, uint32_t len)
{
	static const uint32_t ours[] = { NVSP_PROTOCOL_VERSION_61, NVSP_PROTOCOL_VERSION_6, NVSP_PROTOCOL_VERSION_5,
					 NVSP_PROTOCOL_VERSION_4, NVSP_PROTOCOL_VERSION_2, NVSP_PROTOCOL_VERSION_1 };
	uint32_t lo = rd32(msg + 4), hi = rd32(msg + 8), chosen = 0;
	(void)len;
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]) && !chosen; i++)
		if (ours[i] >= lo && ours[i] <= hi)
			chosen = ours[i];
	if (chosen) {
		/* A new INIT starts the adapter over (the guest reloaded its driver). */
		reset_state(n);
		n->nvsp_version = chosen;
	}
	uint32_t w[3] = { chosen, NVSP_MAX_MDL_CHAIN, chosen ? NVSP_STAT_SUCCESS : NVSP_STAT_FAIL };
	complete(n, pkt->trans_id, NVSP_MSG_TYPE_INIT_COMPLETE, w, 3);
}

static void on_recv_buf(struct netvsp *n, const struct vmbus_packet *pkt, const uint8_t *msg)
{
	uint32_t gpadl = rd32(msg + 4);
	uint32_t status = NVSP_STAT_FAIL, count = 0;
	if (n->nvsp_version && !n->have_rbuf && (count = rbuf_pieces(n, gpadl)) != 0) {
		if (rbuf_alloc(n, count)) {
			n->rbuf_gpadl = gpadl;
			n->have_rbuf = true;
			vmbus_chan_gpadl_writable(n->chan, gpadl, (uint64_t)count * NETVSP_RECV_SECTION_SIZE);
			status = NVSP_STAT_SUCCESS;
		} else {
			rbuf_forget(n);
			count = 0;
		}
	} else {
		n->st.bad_packets++;
	}
	/* status, num_sections, then the one section: offset, sub_alloc_size, num_sub_allocs, end_offset */
	uint32_t ok = status == NVSP_STAT_SUCCESS;
	uint32_t w[6] = { status, ok, 0, NETVSP_RECV_SECTION_SIZE, count, count * NETVSP_RECV_SECTION_SIZE };
	complete(n, pkt->trans_id, NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE, w, 6);
	if (status == NVSP_STAT_SUCCESS)
		flush_control(n);
}

static void on_send_buf(struct netvsp *n, const struct vmbus_packet *pkt, const uint8_t *msg)
{
	uint32_t gpadl = rd32(msg + 4);
	uint32_t status = NVSP_STAT_FAIL, sections;
	if (n->nvsp_version && !n->have_sbuf && (sections = sbuf_sections(n, gpadl)) != 0) {
		n->sbuf_gpadl = gpadl;
		n->sbuf_sections = sections;
		n->have_sbuf = true;
		status = NVSP_STAT_SUCCESS;
	} else {
		n->st.bad_packets++;
	}
	uint32_t w[2] = { status, status == NVSP_STAT_SUCCESS ? NETVSP_SEND_SECTION_SIZE : 0 };
	complete(n, pkt->trans_id, NVSP_MSG1_TYPE_SEND_SEND_BUF_COMPLETE, w, 2);
}

static void on_guest_completion(struct netvsp *n, const struct vmbus_packet *pkt)
{
	uint64_t sec = pkt->trans_id;
	if (!n->have_rbuf || sec >= n->nsections || !n->in_use[sec]) {
		n->st.bad_packets++; /* not a piece we announced */
		return;
	}
	/* One completion frees every piece of its packet (a coalesced receive has several). */
	for (uint32_t p = (uint32_t)sec, k = 0; p != NO_PIECE && k < n->nsections && n->in_use[p]; k++) {
		n->in_use[p] = 0;
		n->free_sections[n->nfree++] = p;
		p = n->next_piece[p];
	}
}

static void on_packet(struct netvsp *n, const struct vmbus_packet *pkt)
{
	if (pkt->type == VM_PKT_COMP) {
		on_guest_completion(n, pkt);
		return;
	}
	if ((pkt->type != VM_PKT_DATA_INBAND && pkt->type != VM_PKT_DATA_USING_GPA_DIRECT) || pkt->data_len < 4) {
		n->st.bad_packets++;
		return;
	}
	const uint8_t *msg = pkt->data;
	uint32_t len = pkt->data_len;
	uint32_t type = rd32(msg);
	bool wants = pkt->flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED;
	switch (type) {
	case NVSP_MSG_TYPE_INIT:
		if (len < 12)
			break;
		on_init(n, pkt, msg, len);
		return;
	case NVSP_MSG2_TYPE_SEND_NDIS_CONFIG:
		if (len < 16)
			break;
		return; /* MTU and capabilities: nothing to change (no SR-IOV, no RSC, no teaming) */
	case NVSP_MSG1_TYPE_SEND_NDIS_VER:
		if (len < 12)
			break;
		n->ndis_version = rd32(msg + 4) << 16 | (rd32(msg + 8) & 0xFFFF);
		return;
	case NVSP_MSG1_TYPE_SEND_RECV_BUF:
		if (len < 10)
			break;
		on_recv_buf(n, pkt, msg);
		return;
	case NVSP_MSG1_TYPE_SEND_SEND_BUF:
		if (len < 10)
			break;
		on_send_buf(n, pkt, msg);
		return;
	case NVSP_MSG1_TYPE_REVOKE_RECV_BUF:
		rbuf_forget(n);
		n->ctl_head = n->ctl_count = 0;
		return;
	case NVSP_MSG1_TYPE_REVOKE_SEND_BUF:
		n->have_sbuf = false;
		n->sbuf_sections = 0;
		return;
	case NVSP_MSG1_TYPE_SEND_RNDIS_PKT: {
		n->in_send = true;
		uint32_t status = on_rndis_pkt(n, pkt, msg, len);
		n->in_send = false;
		if (wants) {
			uint32_t w[1] = { status };
			complete(n, pkt->trans_id, NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE, w, 1);
		}
		flush_control(n);
		return;
	}
	case NVSP_MSG5_TYPE_SUBCHANNEL: {
		/* No sub-channels (vRSS is never advertised). */
		uint32_t w[2] = { NVSP_STAT_FAIL, 0 };
		if (wants)
			complete(n, pkt->trans_id, NVSP_MSG5_TYPE_SUBCHANNEL, w, 2);
		return;
	}
	case NVSP_MSG4_TYPE_SWITCH_DATA_PATH:
		return; /* no VF: the synthetic path is the only one */
	default:
		break;
	}
	n->st.bad_packets++;
}

/* ---- channel callbacks ---- */

static int nv_open(struct vmbus_chan *chan, void *ctx)
{
	struct netvsp *n = ctx;
	n->chan = chan;
	reset_state(n);
	return 0;
}

static void nv_close(struct vmbus_chan *chan, void *ctx)
{
	struct netvsp *n = ctx;
	(void)chan;
	reset_state(n);
}

static void nv_packets(struct vmbus_chan *chan, void *ctx)
{
	struct netvsp *n = ctx;
	n->chan = chan;
	flush_completions(n);
	for (;;) {
		if (n->comp_count)
			break; /* the ring is full: the guest signals when it has read */
		if (n->be.tx_room && !n->be.tx_room(n->be.ctx))
			break; /* the backend is full: the guest's sends wait in its ring (netvsp_tx_resume) */
		struct vmbus_packet pkt;
		int rc = vmbus_chan_recv(chan, &pkt);
		if (rc == 0 || rc == VMBUS_CHAN_CLOSED)
			break;
		if (rc < 0) {
			n->st.bad_packets++;
			continue;
		}
		on_packet(n, &pkt);
	}
	flush_control(n);
	/* The guest freed pieces or ring space (its signal brought us here): a waiting backend may
	 * go on. It retries by itself too, so a guest that frees nothing only stalls its own rx. */
	if (n->rx_waiting && n->nfree && !n->ctl_count) {
		n->rx_waiting = false;
		if (n->be.rx_ready)
			n->be.rx_ready(n->be.ctx);
	}
}

/* ---- saved state ----
 * Payload version 1 (the adapter's one channel; layout in docs/netvsp.md): NVSP and NDIS
 * versions, the RNDIS state, the buffers and every receive piece's state, RNDIS answers waiting
 * for a piece and NVSP completions waiting for ring space. Not saved: a frame the old backend
 * held after NETVSP_RX_BUSY (lost, like a frame on the wire) and the guest's sends a full backend
 * left unread (tx_room): those are still in the guest's ring, which is guest RAM with its
 * indices, and vmbus_server_restore_finish runs on_packets, which reads them when the new
 * backend has room. */
#define SAVED_RNDIS_INITIALIZED 0x1u
#define SAVED_RNDIS_LINK_UP     0x2u  /* as the guest last saw it */
#define SAVED_RNDIS_RSC         0x4u
#define SAVED_RECV_BUF          0x1u
#define SAVED_SEND_BUF          0x2u

static int nv_save(struct vmbus_chan *chan, void *ctx, struct state_writer *w)
{
	struct netvsp *n = ctx;
	(void)chan;
	state_put_u32(w, n->nvsp_version);
	state_put_u32(w, n->ndis_version);
	state_put_u8(w, (uint8_t)((n->rst.initialized ? SAVED_RNDIS_INITIALIZED : 0) |
				  (n->rst.link_up ? SAVED_RNDIS_LINK_UP : 0) | (n->rst.rsc ? SAVED_RNDIS_RSC : 0)));
	state_put_u32(w, n->rst.packet_filter);
	state_put_u32(w, n->rst.lookahead);
	state_put_u16(w, n->rsc_id);
	state_put_u8(w, (uint8_t)((n->have_rbuf ? SAVED_RECV_BUF : 0) | (n->have_sbuf ? SAVED_SEND_BUF : 0)));
	state_put_u32(w, n->have_rbuf ? n->rbuf_gpadl : 0);
	state_put_u32(w, n->have_rbuf ? NETVSP_RECV_SECTION_SIZE : 0);
	state_put_u32(w, n->nsections);
	state_put_u32(w, n->nfree);
	for (uint32_t i = 0; i < n->nfree; i++)
		state_put_u32(w, n->free_sections[i]);
	state_put_u32(w, n->nsections - n->nfree);
	for (uint32_t p = 0; p < n->nsections; p++) {
		if (!n->in_use[p])
			continue;
		state_put_u32(w, p);
		state_put_u32(w, n->next_piece[p]);
	}
	state_put_u32(w, n->have_sbuf ? n->sbuf_gpadl : 0);
	state_put_u32(w, n->have_sbuf ? NETVSP_SEND_SECTION_SIZE : 0);
	state_put_u32(w, n->sbuf_sections);
	state_put_u32(w, n->ctl_count);
	for (uint32_t i = 0; i < n->ctl_count; i++) {
		const struct pending_ctl *c = &n->ctl[(n->ctl_head + i) % PENDING_CONTROL];
		state_put_u32(w, c->len);
		state_put_bytes(w, c->data, c->len);
	}
	state_put_u32(w, n->comp_count);
	for (uint32_t i = 0; i < n->comp_count; i++) {
		const struct pending_comp *c = &n->comp[(n->comp_head + i) % PENDING_COMPLETES];
		state_put_u64(w, c->trans_id);
		state_put_bytes(w, c->msg, NETVSP_MSG_SIZE);
	}
	return 0;
}

static bool nvsp_version_ours(uint32_t v)
{
	return v == NVSP_PROTOCOL_VERSION_61 || v == NVSP_PROTOCOL_VERSION_6 || v == NVSP_PROTOCOL_VERSION_5 ||
	       v == NVSP_PROTOCOL_VERSION_4 || v == NVSP_PROTOCOL_VERSION_2 || v == NVSP_PROTOCOL_VERSION_1;
}

#define TRUNCATED(what) state_fail(-EBADMSG, "netvsp: channel %u: the state ends inside %s", relid, what)

/* The receive buffer and its pieces: a free stack that with the in-use pieces (ascending, each
 * with the next piece of its packet) covers every piece exactly once. */
static int restore_rbuf(struct netvsp *n, uint32_t relid, bool present, struct state_cursor *c)
{
	uint32_t gpadl = state_get_u32(c), piece = state_get_u32(c), pieces = state_get_u32(c);
	uint32_t nfree = state_get_u32(c);
	if (!state_cursor_ok(c))
		return TRUNCATED("the receive buffer");
	if (!present) {
		uint32_t nused = state_get_u32(c);
		if (!state_cursor_ok(c))
			return TRUNCATED("the receive buffer");
		if (gpadl || piece || pieces || nfree || nused)
			return state_fail(-EINVAL, "netvsp: channel %u: receive-buffer fields without a receive buffer",
					  relid);
		return 0;
	}
	if (piece != NETVSP_RECV_SECTION_SIZE)
		return state_fail(-EINVAL, "netvsp: channel %u: receive pieces of %u bytes (this build cuts %u)", relid,
				  piece, NETVSP_RECV_SECTION_SIZE);
	uint32_t have = rbuf_pieces(n, gpadl);
	if (!have || pieces != have)
		return state_fail(-EINVAL, "netvsp: channel %u: receive buffer GPADL %u holds %u pieces, %u saved", relid,
				  gpadl, have, pieces);
	if (nfree > pieces)
		return state_fail(-EINVAL, "netvsp: channel %u: %u free receive pieces of %u", relid, nfree, pieces);
	if (!rbuf_alloc(n, pieces))
		return state_fail(-ENOMEM, "netvsp: channel %u: out of memory", relid);
	/* in_use: 2 marks a free piece while the lists are read. */
	for (uint32_t i = 0; i < nfree; i++) {
		uint32_t p = state_get_u32(c);
		if (!state_cursor_ok(c))
			return TRUNCATED("the free receive pieces");
		if (p >= pieces || n->in_use[p])
			return state_fail(-EINVAL, "netvsp: channel %u: free receive piece %u is out of range or listed twice",
					  relid, p);
		n->in_use[p] = 2;
		n->free_sections[i] = p;
		n->next_piece[p] = NO_PIECE;
	}
	n->nfree = nfree;
	uint32_t nused = state_get_u32(c);
	if (!state_cursor_ok(c))
		return TRUNCATED("the receive pieces in use");
	if (nused != pieces - nfree)
		return state_fail(-EINVAL, "netvsp: channel %u: %u receive pieces in use and %u free, of %u", relid, nused,
				  nfree, pieces);
	for (uint32_t i = 0, prev = 0; i < nused; i++) {
		uint32_t p = state_get_u32(c), next = state_get_u32(c);
		if (!state_cursor_ok(c))
			return TRUNCATED("the receive pieces in use");
		if (p >= pieces || n->in_use[p] || (i && p <= prev))
			return state_fail(-EINVAL, "netvsp: channel %u: receive piece %u in use is out of range, out of order "
					  "or also free", relid, p);
		if (next != NO_PIECE && next >= pieces)
			return state_fail(-EINVAL, "netvsp: channel %u: receive piece %u is followed by piece %u of %u", relid,
					  p, next, pieces);
		n->in_use[p] = 1;
		n->next_piece[p] = next;
		prev = p;
	}
	for (uint32_t i = 0; i < nfree; i++)
		n->in_use[n->free_sections[i]] = 0;
	n->rbuf_gpadl = gpadl;
	return 0;
}

static int restore_sbuf(struct netvsp *n, uint32_t relid, bool present, struct state_cursor *c)
{
	uint32_t gpadl = state_get_u32(c), size = state_get_u32(c), sections = state_get_u32(c);
	if (!state_cursor_ok(c))
		return TRUNCATED("the send buffer");
	if (!present) {
		if (gpadl || size || sections)
			return state_fail(-EINVAL, "netvsp: channel %u: send-buffer fields without a send buffer", relid);
		return 0;
	}
	if (size != NETVSP_SEND_SECTION_SIZE)
		return state_fail(-EINVAL, "netvsp: channel %u: send sections of %u bytes (this build uses %u)", relid, size,
				  NETVSP_SEND_SECTION_SIZE);
	uint32_t have = sbuf_sections(n, gpadl);
	if (!have || sections != have)
		return state_fail(-EINVAL, "netvsp: channel %u: send buffer GPADL %u holds %u sections, %u saved", relid,
				  gpadl, have, sections);
	n->sbuf_gpadl = gpadl;
	n->sbuf_sections = sections;
	n->have_sbuf = true;
	return 0;
}

static int restore_queues(struct netvsp *n, uint32_t relid, struct state_cursor *c)
{
	uint32_t nctl = state_get_u32(c);
	if (!state_cursor_ok(c))
		return TRUNCATED("the waiting RNDIS messages");
	if (nctl > PENDING_CONTROL)
		return state_fail(-EINVAL, "netvsp: channel %u: %u waiting RNDIS messages (at most %u)", relid, nctl,
				  PENDING_CONTROL);
	for (uint32_t i = 0; i < nctl; i++) {
		uint32_t len = state_get_u32(c);
		if (!state_cursor_ok(c))
			return TRUNCATED("the waiting RNDIS messages");
		if (len < RNDIS_HEADER_SIZE || len > RNDIS_MAX_RESPONSE)
			return state_fail(-EINVAL, "netvsp: channel %u: a waiting RNDIS message of %u bytes (%u..%u)", relid,
					  len, RNDIS_HEADER_SIZE, RNDIS_MAX_RESPONSE);
		struct pending_ctl *p = &n->ctl[i];
		state_get_bytes(c, p->data, len);
		p->len = len;
		if (!state_cursor_ok(c))
			return TRUNCATED("the waiting RNDIS messages");
	}
	n->ctl_count = nctl;
	uint32_t ncomp = state_get_u32(c);
	if (!state_cursor_ok(c))
		return TRUNCATED("the waiting completions");
	if (ncomp > PENDING_COMPLETES)
		return state_fail(-EINVAL, "netvsp: channel %u: %u waiting completions (at most %u)", relid, ncomp,
				  PENDING_COMPLETES);
	for (uint32_t i = 0; i < ncomp; i++) {
		n->comp[i].trans_id = state_get_u64(c);
		state_get_bytes(c, n->comp[i].msg, NETVSP_MSG_SIZE);
	}
	if (!state_cursor_ok(c))
		return TRUNCATED("the waiting completions");
	n->comp_count = ncomp;
	return 0;
}

static int restore_state(struct netvsp *n, uint32_t relid, struct state_cursor *c)
{
	uint32_t nvsp = state_get_u32(c), ndis = state_get_u32(c);
	uint8_t rndis = state_get_u8(c);
	uint32_t filter = state_get_u32(c), lookahead = state_get_u32(c);
	uint16_t rsc_id = state_get_u16(c);
	uint8_t bufs = state_get_u8(c);
	if (!state_cursor_ok(c))
		return TRUNCATED("the NVSP and RNDIS state");
	if (nvsp && !nvsp_version_ours(nvsp))
		return state_fail(-EINVAL, "netvsp: channel %u: NVSP version 0x%x is not one we speak", relid, nvsp);
	if (rndis & ~(SAVED_RNDIS_INITIALIZED | SAVED_RNDIS_LINK_UP | SAVED_RNDIS_RSC))
		return state_fail(-EINVAL, "netvsp: channel %u: unknown RNDIS flags 0x%x", relid, rndis);
	if (bufs & ~(SAVED_RECV_BUF | SAVED_SEND_BUF))
		return state_fail(-EINVAL, "netvsp: channel %u: unknown buffer flags 0x%x", relid, bufs);
	/* Buffers and RNDIS messages come only after INIT, and INIT starts the adapter over. */
	if (!nvsp && ((rndis & SAVED_RNDIS_INITIALIZED) || bufs))
		return state_fail(-EINVAL, "netvsp: channel %u: RNDIS or buffers without an NVSP version", relid);
	n->nvsp_version = nvsp;
	n->ndis_version = ndis;
	n->rst.initialized = rndis & SAVED_RNDIS_INITIALIZED;
	n->rst.link_up = rndis & SAVED_RNDIS_LINK_UP;
	n->rst.rsc = rndis & SAVED_RNDIS_RSC;
	n->rst.packet_filter = filter;
	n->rst.lookahead = lookahead;
	n->rsc_id = rsc_id;
	int rc = restore_rbuf(n, relid, bufs & SAVED_RECV_BUF, c);
	if (!rc)
		rc = restore_sbuf(n, relid, bufs & SAVED_SEND_BUF, c);
	if (!rc)
		rc = restore_queues(n, relid, c);
	if (!rc && state_cursor_left(c))
		rc = state_fail(-EBADMSG, "netvsp: channel %u: %zu bytes after the state", relid, state_cursor_left(c));
	return rc;
}

static int nv_restore(struct vmbus_chan *chan, void *ctx, uint16_t version, struct state_cursor *c)
{
	struct netvsp *n = ctx;
	uint32_t relid = vmbus_chan_relid(chan);
	if (version != NETVSP_STATE_VERSION)
		return state_fail(-EPROTONOSUPPORT, "netvsp: channel %u: state version %u (this build reads %u)", relid,
				  version, NETVSP_STATE_VERSION);
	if (vmbus_chan_subchannel_index(chan))
		return state_fail(-EINVAL, "netvsp: channel %u: the adapter has no sub-channels", relid);
	n->chan = chan;
	reset_state(n);
	int rc = restore_state(n, relid, c);
	if (rc) {
		reset_state(n); /* close() does not run for a channel whose restore failed */
		return rc;
	}
	if (n->nsections) {
		n->have_rbuf = true;
		/* As SEND_RECV_BUF declares it (the VMBus state holds the same range already). */
		vmbus_chan_gpadl_writable(chan, n->rbuf_gpadl, (uint64_t)n->nsections * NETVSP_RECV_SECTION_SIZE);
	}
	/* The new backend's link (netvsp_set_link before the restore) differs from what the guest
	 * saw: it is told after vmbus_server_restore_finish, like any link change. */
	if (n->rst.link_up != n->link_up) {
		n->rst.link_up = n->link_up;
		uint8_t msg[20];
		if (n->rst.initialized)
			queue_control(n, msg, link_indication(n, msg));
	}
	return 0;
}

/* ---- public ---- */

void netvsp_tx_resume(struct netvsp *n)
{
	if (n->chan && vmbus_chan_is_open(n->chan))
		nv_packets(n->chan, n);
}

struct netvsp *netvsp_new(struct vmbus_server *srv, const struct netvsp_config *cfg,
			  const struct netvsp_backend *backend)
{
	struct netvsp *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	memcpy(n->rcfg.mac, cfg->mac, 6);
	n->rcfg.mtu = cfg->mtu ? cfg->mtu : 1500;
	n->rcfg.tx_offloads = true;
	n->scratch = malloc(TX_SCRATCH);
	n->segment = malloc(n->rcfg.mtu + 14);
	if (!n->scratch || !n->segment) {
		free(n->scratch);
		free(n->segment);
		free(n);
		return NULL;
	}
	n->rcfg.link_speed_bps = cfg->link_speed_bps ? cfg->link_speed_bps : 10000000000ull;
	if (backend)
		n->be = *backend;
	n->link_up = true;
	reset_state(n);
	n->ops.name = "netvsp";
	n->ops.class_id = NETVSP_CLASS_GUID;
	n->ops.instance_id = VMBUS_GUID_INIT(0x5f3c9a10, 0x7e21, 0x4b8d, 0xa1, 0x6e, 0x3d, 0x52, 0x90, 0xc4, 0x4e,
					     cfg->instance);
	n->ops.open = nv_open;
	n->ops.close = nv_close;
	n->ops.on_packets = nv_packets;
	n->ops.state_section = STATE_SECTION_NETVSP;
	n->ops.state_version = NETVSP_STATE_VERSION;
	n->ops.save = nv_save;
	n->ops.restore = nv_restore;
	n->chan = vmbus_server_add_device(srv, &n->ops, n);
	if (!n->chan) {
		netvsp_free(n);
		return NULL;
	}
	return n;
}

void netvsp_free(struct netvsp *n)
{
	if (!n)
		return;
	rbuf_forget(n);
	free(n->scratch);
	free(n->segment);
	free(n);
}

/* The guest takes frames: RNDIS up, link up, a packet filter set, its receive buffer there. */
static bool rx_path_ready(const struct netvsp *n)
{
	return n->rst.initialized && n->link_up && n->rst.packet_filter && n->chan && vmbus_chan_is_open(n->chan) &&
	       n->have_rbuf;
}

/* No room now: the backend keeps the frame until rx_ready. */
static int rx_busy(struct netvsp *n)
{
	n->st.rx_busy++;
	n->rx_waiting = true;
	return NETVSP_RX_BUSY;
}

static int rx_dropped(struct netvsp *n)
{
	n->st.rx_drops++;
	return NETVSP_RX_DROPPED;
}

int netvsp_rx(struct netvsp *n, const uint8_t *frame, uint32_t len)
{
	if (!rx_path_ready(n) || len < 14 || len > NETVSP_RECV_SECTION_SIZE - RNDIS_PACKET_HDR_LEN)
		return rx_dropped(n);
	uint8_t hdr[RNDIS_PACKET_HDR_LEN];
	rndis_build_packet_header(hdr, len);
	/* Control answers first; a frame never overtakes them or takes their room. */
	if (n->ctl_count || deliver(n, hdr, sizeof(hdr), frame, len, false) < 0)
		return rx_busy(n);
	n->st.rx_packets++;
	n->st.rx_bytes += len;
	return NETVSP_RX_OK;
}

static void emit_rx_segment(void *ctx, const uint8_t *frame, uint32_t len)
{
	struct netvsp *n = ctx;
	if (netvsp_rx(n, frame, len) == NETVSP_RX_BUSY)
		n->st.rx_drops++; /* room was checked for all of them: only a full ring gets here */
}

int netvsp_rx_meta(struct netvsp *n, uint8_t *frame, uint32_t len, const struct netvsp_rx_meta *meta)
{
	if (!meta || (!meta->needs_csum && !meta->gso_type))
		return netvsp_rx(n, frame, len);
	if (meta->needs_csum && !net_complete_csum(frame, len, meta->csum_start, meta->csum_offset))
		return rx_dropped(n);
	if (!meta->gso_type || len <= n->rcfg.mtu + 14)
		return netvsp_rx(n, frame, len);
	if (!rx_path_ready(n) || len > NETVSP_RX_GSO_MAX)
		return rx_dropped(n);
	if (n->ctl_count)
		return rx_busy(n);
	if (n->rst.rsc) {
		int r = deliver_rsc(n, frame, len, NDIS_RXCSUM_TCP_OK | NDIS_RXCSUM_IP_OK);
		if (r == NETVSP_RX_BUSY)
			return rx_busy(n);
		if (r == NETVSP_RX_DROPPED)
			return rx_dropped(n);
		n->st.rx_packets++;
		n->st.rx_bytes += len;
		n->st.rx_coalesced++;
		return NETVSP_RX_OK;
	}
	/* The guest takes no coalesced segments: cut it into MTU-sized ones, if they all fit now. */
	uint32_t segs = meta->gso_size ? (len + meta->gso_size - 1) / meta->gso_size : 0;
	if (segs > n->nfree)
		return rx_busy(n);
	if (!net_segment_tcp(frame, len, meta->csum_start, meta->gso_size, n->rcfg.mtu + 14, n->segment, emit_rx_segment, n))
		return rx_dropped(n);
	return NETVSP_RX_OK;
}

void netvsp_set_link(struct netvsp *n, bool up)
{
	if (n->link_up == up)
		return;
	n->link_up = up;
	n->rst.link_up = up;
	if (n->rst.initialized) {
		uint8_t msg[20];
		send_control(n, msg, link_indication(n, msg));
	}
}

void netvsp_get_stats(const struct netvsp *n, struct netvsp_stats *out)
{
	*out = n->st;
	out->nvsp_version = n->nvsp_version;
	out->rndis_initialized = n->rst.initialized;
	out->link_up = n->link_up;
}
