/* RNDIS control and data messages: parsing what the guest sends, building the host's answers. */
#include <string.h>

#include "vsp/net_offload.h"
#include "vsp/rndis.h"

#define RNDIS_MAX_PKT_PER_MSG  8u      /* the guest may batch this many packets in one send */
#define RNDIS_ALIGN_FACTOR     3u      /* packets in a batch start on 8-byte boundaries */
#define RNDIS_MAX_XFER         0x10000u
#define RNDIS_MAX_LIST_SIZE    32u
#define QUERY_C_LEN            16u     /* req_id, status, info_buflen, info_buf_offset */
#define OFFLOAD_CAPS_MAX       256u    /* NDIS_OFFLOAD we echo back (Linux asks for < 256) */

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

static void wr16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

int rndis_msg_header(const uint8_t *buf, size_t len, uint32_t *type, uint32_t *msg_len)
{
	if (len < RNDIS_HEADER_SIZE)
		return -1;
	uint32_t t = rd32(buf), l = rd32(buf + 4);
	if (l < RNDIS_HEADER_SIZE || l > len)
		return -1;
	*type = t;
	*msg_len = l;
	return 0;
}

int rndis_packet_frame(const uint8_t *msg, uint32_t msg_len, uint32_t max_frame, uint32_t *off, uint32_t *flen)
{
	if (msg_len < RNDIS_PACKET_HDR_LEN || rd32(msg) != RNDIS_MSG_PACKET)
		return -1;
	const uint8_t *p = msg + RNDIS_HEADER_SIZE;
	uint64_t data_off = (uint64_t)RNDIS_HEADER_SIZE + rd32(p);
	uint64_t data_len = rd32(p + 4);
	if (data_off < RNDIS_PACKET_HDR_LEN || data_off > msg_len || data_len > msg_len - data_off)
		return -1;
	if (data_len < 14 || data_len > max_frame)
		return -1;
	*off = (uint32_t)data_off;
	*flen = (uint32_t)data_len;
	return 0;
}

int rndis_packet_offload(const uint8_t *msg, uint32_t msg_len, struct rndis_tx_offload *out)
{
	memset(out, 0, sizeof(*out));
	if (msg_len < RNDIS_PACKET_HDR_LEN)
		return -1;
	const uint8_t *p = msg + RNDIS_HEADER_SIZE;
	uint64_t off = (uint64_t)RNDIS_HEADER_SIZE + rd32(p + 20), len = rd32(p + 24);
	if (!len)
		return 0;
	if (off < RNDIS_PACKET_HDR_LEN || off > msg_len || len > msg_len - off)
		return -1;
	/* Entries: size, type (bit 31: internal), offset of the value from the entry's start. */
	for (uint64_t pos = 0; pos < len;) {
		const uint8_t *e = msg + off + pos;
		if (len - pos < 12)
			return -1;
		uint32_t size = rd32(e), type = rd32(e + 4), voff = rd32(e + 8);
		if (size < 12 || size > len - pos || voff > size || size - voff < 4)
			return -1;
		uint32_t v = rd32(e + voff);
		if (type == RNDIS_PPI_CSUM) {
			/* is_ipv4:1 is_ipv6:1 tcp:1 udp:1 ip:1 reserved:11 tcp_header_offset:10 */
			out->csum_tcp = v >> 2 & 1;
			out->csum_udp = v >> 3 & 1;
			if (!out->lso)
				out->l4_offset = v >> 16 & 0x3ff;
		} else if (type == RNDIS_PPI_LSO && (v >> 30 & 1)) {
			/* LSOv2: mss:20 tcp_header_offset:10 type:1 ip_version:1 */
			out->lso = true;
			out->mss = v & 0xfffff;
			out->l4_offset = v >> 20 & 0x3ff;
		}
		pos += size;
	}
	return 0;
}

uint32_t rndis_build_rsc_header(uint8_t *out, uint32_t data_len, uint8_t flags, uint16_t pkt_id, uint32_t csum_ok)
{
	uint32_t n = RNDIS_PACKET_HDR_LEN + RNDIS_RSC_PPI_LEN + data_len;
	memset(out, 0, RNDIS_PACKET_HDR_LEN + RNDIS_RSC_PPI_LEN);
	wr32(out, RNDIS_MSG_PACKET);
	wr32(out + 4, n);
	wr32(out + 8, RNDIS_PACKET_SIZE + RNDIS_RSC_PPI_LEN); /* data_offset */
	wr32(out + 12, data_len);
	wr32(out + 28, RNDIS_PACKET_SIZE);                    /* per_pkt_info_offset */
	wr32(out + 32, RNDIS_RSC_PPI_LEN);
	uint8_t *ppi = out + RNDIS_PACKET_HDR_LEN;
	wr32(ppi, 16);
	wr32(ppi + 4, RNDIS_PPI_PKTINFO_ID | RNDIS_PPI_INTERNAL);
	wr32(ppi + 8, 12);
	ppi[12] = 1; /* version */
	ppi[13] = flags;
	ppi[14] = (uint8_t)pkt_id, ppi[15] = (uint8_t)(pkt_id >> 8);
	wr32(ppi + 16, 16);
	wr32(ppi + 20, RNDIS_PPI_CSUM);
	wr32(ppi + 24, 12);
	wr32(ppi + 28, csum_ok);
	return n;
}

uint32_t rndis_build_packet_header(uint8_t *out, uint32_t frame_len)
{
	memset(out, 0, RNDIS_PACKET_HDR_LEN);
	wr32(out, RNDIS_MSG_PACKET);
	wr32(out + 4, RNDIS_PACKET_HDR_LEN + frame_len);
	wr32(out + 8, RNDIS_PACKET_SIZE);  /* data_offset: right after struct rndis_packet */
	wr32(out + 12, frame_len);         /* data_len; no OOB data, no per-packet info */
	return RNDIS_PACKET_HDR_LEN + frame_len;
}

uint32_t rndis_build_indicate(uint8_t *out, uint32_t status)
{
	wr32(out, RNDIS_MSG_INDICATE);
	wr32(out + 4, 20);
	wr32(out + 8, status);
	wr32(out + 12, 0);   /* status_buflen */
	wr32(out + 16, 0);   /* status_buf_offset */
	return 20;
}

static const uint32_t supported_oids[] = {
	RNDIS_OID_GEN_SUPPORTED_LIST, RNDIS_OID_GEN_HARDWARE_STATUS, RNDIS_OID_GEN_MEDIA_SUPPORTED,
	RNDIS_OID_GEN_MEDIA_IN_USE, RNDIS_OID_GEN_MAXIMUM_LOOKAHEAD, RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE,
	RNDIS_OID_GEN_LINK_SPEED, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, RNDIS_OID_GEN_CURRENT_LOOKAHEAD,
	RNDIS_OID_GEN_MAXIMUM_TOTAL_SIZE, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, RNDIS_OID_GEN_PHYSICAL_MEDIUM,
	RNDIS_OID_802_3_PERMANENT_ADDRESS, RNDIS_OID_802_3_CURRENT_ADDRESS, RNDIS_OID_802_3_MAXIMUM_LIST_SIZE,
	RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
};

/* Fill info (room for RNDIS_MAX_RESPONSE - 24 bytes) for a query; returns its length or -1. */
static int query_info(const struct rndis_config *cfg, const struct rndis_state *st, uint32_t oid,
		      const uint8_t *in, uint32_t in_len, uint8_t *info)
{
	uint32_t v;
	switch (oid) {
	case RNDIS_OID_GEN_SUPPORTED_LIST:
		for (size_t i = 0; i < sizeof(supported_oids) / sizeof(supported_oids[0]); i++)
			wr32(info + 4 * i, supported_oids[i]);
		return (int)sizeof(supported_oids);
	case RNDIS_OID_GEN_HARDWARE_STATUS: v = 0; break; /* NdisHardwareStatusReady */
	case RNDIS_OID_GEN_MEDIA_SUPPORTED:
	case RNDIS_OID_GEN_MEDIA_IN_USE: v = 0; break;    /* NdisMedium802_3 */
	case RNDIS_OID_GEN_MAXIMUM_LOOKAHEAD:
	case RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE: v = cfg->mtu; break;
	case RNDIS_OID_GEN_CURRENT_LOOKAHEAD: v = st->lookahead ? st->lookahead : cfg->mtu; break;
	case RNDIS_OID_GEN_MAXIMUM_TOTAL_SIZE: v = cfg->mtu + 14; break;
	case RNDIS_OID_GEN_LINK_SPEED: {
		uint64_t units = cfg->link_speed_bps / 100;
		v = units > UINT32_MAX ? UINT32_MAX : (uint32_t)units;
		break;
	}
	case RNDIS_OID_GEN_CURRENT_PACKET_FILTER: v = st->packet_filter; break;
	case RNDIS_OID_GEN_MEDIA_CONNECT_STATUS:
		v = st->link_up ? RNDIS_MEDIA_STATE_CONNECTED : RNDIS_MEDIA_STATE_DISCONNECTED;
		break;
	case RNDIS_OID_GEN_PHYSICAL_MEDIUM: v = RNDIS_PHYSICAL_MEDIUM_802_3; break;
	case RNDIS_OID_802_3_MAXIMUM_LIST_SIZE: v = RNDIS_MAX_LIST_SIZE; break;
	case RNDIS_OID_802_3_PERMANENT_ADDRESS:
	case RNDIS_OID_802_3_CURRENT_ADDRESS:
		memcpy(info, cfg->mac, 6);
		return 6;
	case RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES: {
		/* An NDIS_OFFLOAD in the shape the guest asked for (its object header: type, revision,
		 * size). Offered: TCP and UDP checksums and LSOv2 for IPv4 and IPv6 on transmit (the
		 * host fills and segments, vsp/net_offload.c); receive checksums are not claimed. */
		if (in_len < 4)
			return -1;
		uint32_t len = in_len > OFFLOAD_CAPS_MAX ? OFFLOAD_CAPS_MAX : in_len;
		uint16_t size;
		memcpy(&size, in + 2, 2);
		if (size > len)
			size = (uint16_t)len;
		memset(info, 0, len);
		info[0] = NDIS_OBJECT_TYPE_OFFLOAD;
		info[1] = in[1] ? in[1] : 1; /* revision */
		wr16(info + 2, size);
		if (cfg->tx_offloads && len >= NDIS_OFFLOAD_SIZE_6_0) {
			wr32(info + NDIS_OFFLOAD_IP4_TXENC, NDIS_OFFLOAD_ENCAP_8023);
			wr32(info + NDIS_OFFLOAD_IP4_TXCSUM, NDIS_TXCSUM_IP4OPT | NDIS_TXCSUM_TCP4OPT | NDIS_TXCSUM_TCP4 | NDIS_TXCSUM_UDP4);
			wr32(info + NDIS_OFFLOAD_IP6_TXENC, NDIS_OFFLOAD_ENCAP_8023);
			wr32(info + NDIS_OFFLOAD_IP6_TXCSUM, NDIS_TXCSUM_IP6EXT | NDIS_TXCSUM_TCP6OPT | NDIS_TXCSUM_TCP6 | NDIS_TXCSUM_UDP6);
			wr32(info + NDIS_OFFLOAD_LSOV2_IP4_ENCAP, NDIS_OFFLOAD_ENCAP_8023);
			wr32(info + NDIS_OFFLOAD_LSOV2_IP4_MAXSZ, NET_LSO_MAX_SIZE);
			wr32(info + NDIS_OFFLOAD_LSOV2_IP4_MINSG, NET_LSO_MIN_SEGS);
			wr32(info + NDIS_OFFLOAD_LSOV2_IP6_ENCAP, NDIS_OFFLOAD_ENCAP_8023);
			wr32(info + NDIS_OFFLOAD_LSOV2_IP6_MAXSZ, NET_LSO_MAX_SIZE);
			wr32(info + NDIS_OFFLOAD_LSOV2_IP6_MINSG, NET_LSO_MIN_SEGS);
			wr32(info + NDIS_OFFLOAD_LSOV2_IP6_OPTS, NDIS_LSOV2_IP6EXT | NDIS_LSOV2_TCP6OPT);
			if (len > NDIS_OFFLOAD_RSC_IP6)
				info[NDIS_OFFLOAD_RSC_IP4] = info[NDIS_OFFLOAD_RSC_IP6] = 1;
		}
		return (int)len;
	}
	default:
		return -1; /* friendly name, RSS capabilities (no vRSS), anything else */
	}
	wr32(info, v);
	return 4;
}

static uint32_t set_oid(struct rndis_state *st, uint32_t oid, const uint8_t *in, uint32_t in_len)
{
	switch (oid) {
	case RNDIS_OID_GEN_CURRENT_PACKET_FILTER:
		if (in_len < 4)
			return RNDIS_STATUS_INVALID_DATA;
		st->packet_filter = rd32(in);
		return RNDIS_STATUS_SUCCESS;
	case RNDIS_OID_GEN_CURRENT_LOOKAHEAD:
		if (in_len < 4)
			return RNDIS_STATUS_INVALID_DATA;
		st->lookahead = rd32(in);
		return RNDIS_STATUS_SUCCESS;
	/* Accepted and ignored: the guest asks per packet for the offloads it turned on (so the
	 * parameters need no state), the host side has no multicast filter, the adapter's address
	 * is the configured one. */
	case RNDIS_OID_TCP_OFFLOAD_PARAMETERS:
		/* Only the RSC switches matter (to coalesce or not); "no change" keeps the state. */
		if (in_len > NDIS_OFFLOAD_PARAMS_RSC_IP6) {
			uint8_t v4 = in[NDIS_OFFLOAD_PARAMS_RSC_IP4], v6 = in[NDIS_OFFLOAD_PARAMS_RSC_IP6];
			if (v4 == NDIS_OFFLOAD_PARAMS_RSC_ENABLED && v6 == NDIS_OFFLOAD_PARAMS_RSC_ENABLED)
				st->rsc = true;
			else if (v4 == NDIS_OFFLOAD_PARAMS_RSC_DISABLED || v6 == NDIS_OFFLOAD_PARAMS_RSC_DISABLED)
				st->rsc = false;
		}
		return RNDIS_STATUS_SUCCESS;
	case RNDIS_OID_OFFLOAD_ENCAPSULATION:
	case RNDIS_OID_802_3_MULTICAST_LIST:
	case RNDIS_OID_802_3_CURRENT_ADDRESS:
	case RNDIS_OID_GEN_NETWORK_LAYER_ADDRESSES:
		return RNDIS_STATUS_SUCCESS;
	default:
		return RNDIS_STATUS_NOT_SUPPORTED; /* RSS parameters and the rest */
	}
}

/* Bounds of a QUERY/SET request's info buffer: 0 and *in / *in_len, or -1. */
static int info_buffer(const uint8_t *msg, uint32_t msg_len, const uint8_t **in, uint32_t *in_len)
{
	const uint8_t *req = msg + RNDIS_HEADER_SIZE;
	uint32_t len = rd32(req + 8), off = rd32(req + 12);
	uint32_t body = msg_len - RNDIS_HEADER_SIZE;
	if (len == 0) {
		*in = NULL;
		*in_len = 0;
		return 0;
	}
	if (off > body || len > body - off)
		return -1;
	*in = req + off;
	*in_len = len;
	return 0;
}

int rndis_control(const struct rndis_config *cfg, struct rndis_state *st, const uint8_t *msg, uint32_t msg_len,
		  uint8_t *resp, size_t cap)
{
	uint32_t type;
	uint32_t len;
	if (cap < RNDIS_MAX_RESPONSE || rndis_msg_header(msg, msg_len, &type, &len) < 0 || len != msg_len) {
		st->bad_messages++;
		return -1;
	}
	const uint8_t *body = msg + RNDIS_HEADER_SIZE;
	uint32_t body_len = msg_len - RNDIS_HEADER_SIZE;
	memset(resp, 0, 64);
	switch (type) {
	case RNDIS_MSG_INIT: {
		if (body_len < 16)
			break;
		uint32_t major = rd32(body + 4);
		wr32(resp, RNDIS_MSG_INIT_C);
		wr32(resp + 4, 52);
		wr32(resp + 8, rd32(body));       /* req_id */
		wr32(resp + 12, major == 1 ? RNDIS_STATUS_SUCCESS : RNDIS_STATUS_NOT_SUPPORTED);
		wr32(resp + 16, 1);               /* major_ver */
		wr32(resp + 20, 0);               /* minor_ver */
		wr32(resp + 24, 1);               /* dev_flags: connectionless */
		wr32(resp + 28, 0);               /* medium: 802.3 */
		wr32(resp + 32, RNDIS_MAX_PKT_PER_MSG);
		wr32(resp + 36, RNDIS_MAX_XFER);
		wr32(resp + 40, RNDIS_ALIGN_FACTOR);
		if (major == 1)
			st->initialized = true;
		return 52;
	}
	case RNDIS_MSG_QUERY:
	case RNDIS_MSG_SET: {
		if (body_len < 20)
			break;
		uint32_t req_id = rd32(body), oid = rd32(body + 4);
		const uint8_t *in;
		uint32_t in_len;
		uint32_t status;
		int info_len = 0;
		if (info_buffer(msg, msg_len, &in, &in_len) < 0) {
			st->bad_messages++;
			status = RNDIS_STATUS_INVALID_DATA; /* still answered: the guest waits for it */
		} else if (type == RNDIS_MSG_SET) {
			status = set_oid(st, oid, in, in_len);
		} else {
			info_len = query_info(cfg, st, oid, in, in_len, resp + RNDIS_HEADER_SIZE + QUERY_C_LEN);
			status = info_len < 0 ? RNDIS_STATUS_NOT_SUPPORTED : RNDIS_STATUS_SUCCESS;
			if (info_len < 0)
				info_len = 0;
		}
		wr32(resp + 8, req_id);
		wr32(resp + 12, status);
		if (type == RNDIS_MSG_SET) {
			wr32(resp, RNDIS_MSG_SET_C);
			wr32(resp + 4, 16);
			return 16;
		}
		uint32_t total = RNDIS_HEADER_SIZE + QUERY_C_LEN + (uint32_t)info_len;
		wr32(resp, RNDIS_MSG_QUERY_C);
		wr32(resp + 4, total);
		wr32(resp + 16, (uint32_t)info_len);
		wr32(resp + 20, QUERY_C_LEN);     /* info_buf_offset, from req_id */
		return (int)total;
	}
	case RNDIS_MSG_KEEPALIVE:
		if (body_len < 4)
			break;
		wr32(resp, RNDIS_MSG_KEEPALIVE_C);
		wr32(resp + 4, 16);
		wr32(resp + 8, rd32(body));
		wr32(resp + 12, RNDIS_STATUS_SUCCESS);
		return 16;
	case RNDIS_MSG_RESET:
		wr32(resp, RNDIS_MSG_RESET_C);
		wr32(resp + 4, 16);
		wr32(resp + 8, RNDIS_STATUS_SUCCESS);
		wr32(resp + 12, 0);               /* addressing_reset */
		return 16;
	case RNDIS_MSG_HALT:
		st->initialized = false;
		return 0;
	default:
		st->bad_messages++;
		return -1;
	}
	st->bad_messages++; /* too short for its type */
	return -1;
}
