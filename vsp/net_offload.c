/* Transmit offloads done on the host (see include/vsp/net_offload.h). */
#include <string.h>

#include "vsp/net_offload.h"

#define ETH_HLEN 14
#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6 0x86DD
#define PROTO_TCP 6
#define PROTO_UDP 17
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static uint16_t rd16be(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32be(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void wr16be(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void wr32be(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v; }

static uint32_t sum_words(const uint8_t *p, size_t len, uint32_t sum)
{
	for (; len > 1; p += 2, len -= 2) {
		sum += rd16be(p);
		sum = (sum & 0xffff) + (sum >> 16);
	}
	if (len)
		sum += (uint32_t)(p[0] << 8);
	return (sum & 0xffff) + (sum >> 16);
}

uint16_t net_checksum(const uint8_t *p, size_t len, uint32_t sum)
{
	sum = sum_words(p, len, sum);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

bool net_complete_csum(uint8_t *f, size_t len, size_t start, size_t offset)
{
	if (start > len || offset > len - start || len - start - offset < 2)
		return false;
	wr16be(f + start + offset, net_checksum(f + start, len - start, 0));
	return true;
}

/* The network layer of a frame: version (4 or 6), header start, protocol, the bytes the IP
 * header says the packet has (from its start). False for anything else. */
struct l3 {
	int version;
	size_t ip_off, ip_len;
	uint8_t proto;
};

static bool parse_l3(const uint8_t *f, size_t len, size_t l4_off, struct l3 *o)
{
	if (len < ETH_HLEN)
		return false;
	uint16_t type = rd16be(f + 12);
	o->ip_off = ETH_HLEN;
	const uint8_t *ip = f + ETH_HLEN;
	if (type == ETH_P_IPV4) {
		if (len < ETH_HLEN + 20 || ip[0] >> 4 != 4)
			return false;
		size_t ihl = (size_t)(ip[0] & 0xf) * 4;
		if (ihl < 20 || l4_off != ETH_HLEN + ihl)
			return false;
		o->version = 4;
		o->proto = ip[9];
		o->ip_len = rd16be(ip + 2);
	} else if (type == ETH_P_IPV6) {
		/* Extension headers may sit between; the guest said where the transport starts. */
		if (len < ETH_HLEN + 40 || ip[0] >> 4 != 6 || l4_off < ETH_HLEN + 40)
			return false;
		o->version = 6;
		o->proto = 0; /* the caller knows TCP vs UDP from the offload request or the segment */
		o->ip_len = 40 + (size_t)rd16be(ip + 4);
	} else {
		return false;
	}
	return l4_off < len;
}

/* Pseudo-header sum for an L4 segment of l4_len bytes. */
static uint32_t pseudo_sum(const uint8_t *f, const struct l3 *l3, uint8_t proto, size_t l4_len)
{
	const uint8_t *ip = f + l3->ip_off;
	uint32_t sum = l3->version == 4 ? sum_words(ip + 12, 8, 0) : sum_words(ip + 8, 32, 0);
	sum += proto;
	sum += (uint32_t)(l4_len >> 16) + (uint32_t)(l4_len & 0xffff);
	return (sum & 0xffff) + (sum >> 16);
}

bool net_fill_l4_checksum(uint8_t *f, size_t len, size_t l4_off, bool tcp)
{
	struct l3 l3;
	if (!parse_l3(f, len, l4_off, &l3))
		return false;
	uint8_t proto = tcp ? PROTO_TCP : PROTO_UDP;
	if (l3.version == 4 && l3.proto != proto)
		return false;
	size_t end = l3.ip_off + l3.ip_len; /* the IP packet may be shorter than the frame (padding) */
	if (end > len || end <= l4_off)
		return false;
	size_t l4_len = end - l4_off;
	uint8_t *l4 = f + l4_off;
	size_t csum_at;
	if (proto == PROTO_TCP && l4_len >= 20)
		csum_at = 16;
	else if (proto == PROTO_UDP && l4_len >= 8)
		csum_at = 6;
	else
		return false;
	l4[csum_at] = l4[csum_at + 1] = 0;
	uint16_t c = net_checksum(l4, l4_len, pseudo_sum(f, &l3, proto, l4_len));
	if (proto == PROTO_UDP && c == 0)
		c = 0xffff; /* 0 means "no checksum" in UDP */
	wr16be(l4 + csum_at, c);
	return true;
}

/* The checks a large send must pass: TCP after IPv4/IPv6, within the sizes; its header length. */
static bool lso_valid(const uint8_t *f, size_t len, size_t l4_off, uint32_t mss, size_t max_frame, struct l3 *l3,
		      size_t *hdr)
{
	if (!parse_l3(f, len, l4_off, l3) || (l3->version == 4 && l3->proto != PROTO_TCP) || len > NET_LSO_MAX_SIZE ||
	    mss < NET_LSO_MIN_MSS || l4_off + 20 > len)
		return false;
	*hdr = l4_off + (size_t)(f[l4_off + 12] >> 4) * 4;
	return *hdr >= l4_off + 20 && *hdr < len && *hdr + mss <= max_frame;
}

bool net_lso_to_gso(uint8_t *f, size_t len, size_t l4_off, uint32_t mss, size_t max_frame, struct net_gso *out)
{
	struct l3 l3;
	size_t hdr;
	if (!lso_valid(f, len, l4_off, mss, max_frame, &l3, &hdr))
		return false;
	uint8_t *ip = f + ETH_HLEN, *tcp = f + l4_off;
	if (l3.version == 4) {
		wr16be(ip + 2, (uint16_t)(len - ETH_HLEN));
		ip[10] = ip[11] = 0;
		wr16be(ip + 10, net_checksum(ip, l4_off - ETH_HLEN, 0));
	} else {
		wr16be(ip + 4, (uint16_t)(len - ETH_HLEN - 40));
	}
	/* The partial sum a checksum-offloading device completes: not complemented. */
	wr16be(tcp + 16, (uint16_t)~net_checksum(NULL, 0, pseudo_sum(f, &l3, PROTO_TCP, len - l4_off)));
	*out = (struct net_gso){ .gso_type = l3.version == 4 ? NET_GSO_TCPV4 : NET_GSO_TCPV6, .hdr_len = (uint16_t)hdr,
				 .gso_size = (uint16_t)mss, .csum_start = (uint16_t)l4_off, .csum_offset = 16 };
	return true;
}

unsigned net_segment_tcp(const uint8_t *f, size_t len, size_t l4_off, uint32_t mss, size_t max_frame,
			 uint8_t *seg, void (*emit)(void *ctx, const uint8_t *frame, uint32_t len), void *ctx)
{
	struct l3 l3;
	size_t hdr;
	if (!lso_valid(f, len, l4_off, mss, max_frame, &l3, &hdr))
		return 0;
	size_t payload = len - hdr;
	unsigned nsegs = (unsigned)((payload + mss - 1) / mss);
	uint32_t seq = rd32be(f + l4_off + 4);
	uint16_t id = l3.version == 4 ? rd16be(f + ETH_HLEN + 4) : 0;
	uint8_t flags = f[l4_off + 13];
	for (unsigned i = 0; i < nsegs; i++) {
		size_t chunk = i + 1 < nsegs ? mss : payload - (size_t)i * mss;
		size_t n = hdr + chunk;
		memcpy(seg, f, hdr);
		memcpy(seg + hdr, f + hdr + (size_t)i * mss, chunk);
		uint8_t *ip = seg + ETH_HLEN, *tcp = seg + l4_off;
		if (l3.version == 4) {
			wr16be(ip + 2, (uint16_t)(n - ETH_HLEN));
			wr16be(ip + 4, (uint16_t)(id + i));
			ip[10] = ip[11] = 0;
			wr16be(ip + 10, net_checksum(ip, l4_off - ETH_HLEN, 0));
		} else {
			wr16be(ip + 4, (uint16_t)(n - ETH_HLEN - 40));
		}
		wr32be(tcp + 4, seq + (uint32_t)(i * mss));
		uint8_t fl = flags;
		if (i + 1 < nsegs)
			fl &= (uint8_t)~(TCP_FIN | TCP_PSH);
		if (i > 0)
			fl &= (uint8_t)~TCP_CWR;
		tcp[13] = fl;
		tcp[16] = tcp[17] = 0;
		size_t l4_len = n - l4_off;
		wr16be(tcp + 16, net_checksum(tcp, l4_len, pseudo_sum(seg, &l3, PROTO_TCP, l4_len)));
		emit(ctx, seg, (uint32_t)n);
	}
	return nsegs;
}
