/* Host-side transmit offloads: checksums filled in and large sends segmented exactly as a NIC
 * would (every header field of every segment checked against an independent computation), and
 * malformed requests refused without output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ref_checksum.h"
#include "vsp/net_offload.h"

static uint32_t pseudo(const uint8_t *f, bool v6, uint8_t proto, size_t l4len)
{
	uint32_t s = 0;
	const uint8_t *a = v6 ? f + 22 : f + 26;
	for (int i = 0; i < (v6 ? 32 : 8); i += 2)
		s += (uint32_t)(a[i] << 8 | a[i + 1]);
	return s + proto + (uint32_t)l4len;
}

/* A frame: Ethernet, IPv4 (20 bytes) or IPv6 (40), TCP (20 + opt) or UDP, payload i*7. */
static size_t build(uint8_t *f, bool v6, bool tcp, size_t opt, size_t payload)
{
	memset(f, 0, 14);
	f[12] = v6 ? 0x86 : 0x08, f[13] = v6 ? 0xdd : 0x00;
	size_t l4 = v6 ? 54 : 34;
	uint8_t *ip = f + 14;
	memset(ip, 0, l4 - 14);
	size_t l4len = (tcp ? 20 + opt : 8) + payload;
	if (v6) {
		ip[0] = 0x60, ip[4] = (uint8_t)(l4len >> 8), ip[5] = (uint8_t)l4len, ip[6] = tcp ? 6 : 17, ip[7] = 64;
		for (int i = 0; i < 32; i++)
			ip[8 + i] = (uint8_t)(i * 5 + 1);
	} else {
		size_t tot = 20 + l4len;
		ip[0] = 0x45, ip[2] = (uint8_t)(tot >> 8), ip[3] = (uint8_t)tot, ip[4] = 0x12, ip[5] = 0x34;
		ip[8] = 64, ip[9] = tcp ? 6 : 17;
		ip[12] = 10, ip[13] = 0, ip[14] = 0, ip[15] = 1, ip[16] = 10, ip[17] = 0, ip[18] = 0, ip[19] = 2;
	}
	uint8_t *t = f + l4;
	memset(t, 0, tcp ? 20 + opt : 8);
	t[0] = 0x9c, t[1] = 0x40, t[2] = 0x00, t[3] = 0x50;
	if (tcp) {
		t[4] = 0xff, t[5] = 0xff, t[6] = 0xf0, t[7] = 0x00; /* seq wraps during the segments */
		t[12] = (uint8_t)((5 + opt / 4) << 4);
		t[13] = 0x80 | 0x18 | 0x01; /* CWR PSH ACK FIN */
		for (size_t i = 0; i < opt; i++)
			t[20 + i] = 1; /* NOPs */
	} else {
		t[4] = (uint8_t)(l4len >> 8), t[5] = (uint8_t)l4len;
	}
	uint8_t *p = t + (tcp ? 20 + opt : 8);
	for (size_t i = 0; i < payload; i++)
		p[i] = (uint8_t)(i * 7 + 3);
	return l4 + l4len;
}

static void test_checksums(void **state)
{
	(void)state;
	static uint8_t f[2000];
	for (int v6 = 0; v6 < 2; v6++)
		for (int tcp = 0; tcp < 2; tcp++)
			for (size_t payload = 0; payload < 5; payload++) {
				size_t n = build(f, v6, tcp, tcp ? 12 : 0, payload * 333 + 1);
				size_t l4 = v6 ? 54 : 34;
				f[l4 + (tcp ? 16 : 6)] = 0xaa; /* garbage where the checksum goes */
				assert_true(net_fill_l4_checksum(f, n, l4, tcp));
				/* the whole segment with the pseudo header sums to zero */
				assert_int_equal(ref_csum(f + l4, n - l4, pseudo(f, v6, tcp ? 6 : 17, n - l4)), 0);
			}
	/* padding after the IP packet is not summed */
	size_t n = build(f, false, false, 0, 5);
	memset(f + n, 0xee, 20);
	assert_true(net_fill_l4_checksum(f, n + 20, 34, false));
	assert_int_equal(ref_csum(f + 34, n - 34, pseudo(f, false, 17, n - 34)), 0);
	/* refused: protocol mismatch, wrong transport offset, IP length past the frame, not IP */
	assert_false(net_fill_l4_checksum(f, n, 34, true));
	assert_false(net_fill_l4_checksum(f, n, 38, false));
	assert_false(net_fill_l4_checksum(f, n - 1, 34, false));
	f[12] = 0x88, f[13] = 0x06;
	assert_false(net_fill_l4_checksum(f, n, 34, false));
	assert_false(net_fill_l4_checksum(f, 10, 34, false));
	n = build(f, true, true, 0, 0);
	assert_false(net_fill_l4_checksum(f, n, 50, true)); /* inside the IPv6 header */
}

struct segs {
	unsigned n;
	size_t len[64];
	uint8_t data[64][1600];
};

static void collect(void *ctx, const uint8_t *frame, uint32_t len)
{
	struct segs *s = ctx;
	assert_true(s->n < 64 && len <= sizeof(s->data[0]));
	memcpy(s->data[s->n], frame, len);
	s->len[s->n++] = len;
}

static void check_segments(bool v6, size_t opt, size_t payload, uint32_t mss)
{
	static uint8_t f[NET_LSO_MAX_SIZE], seg[1514];
	static struct segs s;
	s.n = 0;
	size_t n = build(f, v6, true, opt, payload);
	size_t l4 = v6 ? 54 : 34, hdr = l4 + 20 + opt;
	/* as Linux hands a large send over: IP lengths 0, IPv4 checksum 0, TCP checksum = pseudo */
	if (v6) {
		f[18] = f[19] = 0;
	} else {
		f[16] = f[17] = 0;
	}
	unsigned want = (unsigned)((payload + mss - 1) / mss);
	assert_int_equal(net_segment_tcp(f, n, l4, mss, 1514, seg, collect, &s), want);
	assert_int_equal(s.n, want);
	size_t at = 0;
	for (unsigned i = 0; i < s.n; i++) {
		const uint8_t *g = s.data[i];
		size_t chunk = s.len[i] - hdr;
		assert_true(chunk <= mss && chunk > 0);
		assert_memory_equal(g + hdr, f + hdr + at, chunk);
		assert_memory_equal(g, f, 14);
		if (v6) {
			assert_int_equal(g[18] << 8 | g[19], s.len[i] - 54);
		} else {
			assert_int_equal(g[16] << 8 | g[17], s.len[i] - 14);
			assert_int_equal(g[18] << 8 | g[19], 0x1234 + i);
			assert_int_equal(ref_csum(g + 14, 20, 0), 0);
		}
		uint32_t seq = (uint32_t)g[l4 + 4] << 24 | (uint32_t)g[l4 + 5] << 16 | (uint32_t)g[l4 + 6] << 8 | g[l4 + 7];
		assert_int_equal(seq, (uint32_t)(0xfffff000u + at));
		uint8_t fl = g[l4 + 13];
		assert_int_equal(fl & 0x10, 0x10);                            /* ACK always */
		assert_int_equal(!!(fl & 0x80), i == 0);                      /* CWR first only */
		assert_int_equal(!!(fl & 0x09), i + 1 == s.n);                /* FIN, PSH last only */
		assert_int_equal(ref_csum(g + l4, s.len[i] - l4, pseudo(g, v6, 6, s.len[i] - l4)), 0);
		at += chunk;
	}
	assert_int_equal(at, payload);
}

static void test_segmentation(void **state)
{
	(void)state;
	check_segments(false, 12, 60000, 1448);
	check_segments(false, 0, 1, 1460);
	check_segments(false, 0, 1460 * 3, 1460);
	check_segments(true, 12, 20000, 1428);
	check_segments(true, 0, 62000, 1440);
}

/* Handed on whole (a tap with IFF_VNET_HDR): lengths set, the checksum field holds the partial
 * sum that, completed as a NIC does from csum_start, gives a valid TCP checksum. */
static void test_lso_to_gso(void **state)
{
	(void)state;
	static uint8_t f[NET_LSO_MAX_SIZE];
	for (int v6 = 0; v6 < 2; v6++) {
		size_t n = build(f, v6, true, 12, 30000), l4 = v6 ? 54 : 34;
		if (v6)
			f[18] = f[19] = 0;
		else
			f[16] = f[17] = 0;
		struct net_gso g;
		uint32_t mss = v6 ? 1428 : 1448;
		assert_true(net_lso_to_gso(f, n, l4, mss, 1514, &g));
		assert_int_equal(g.gso_type, v6 ? NET_GSO_TCPV6 : NET_GSO_TCPV4);
		assert_int_equal(g.hdr_len, l4 + 32);
		assert_int_equal(g.gso_size, mss);
		assert_int_equal(g.csum_start, l4);
		assert_int_equal(g.csum_offset, 16);
		if (v6) {
			assert_int_equal(f[18] << 8 | f[19], n - 54);
		} else {
			assert_int_equal(f[16] << 8 | f[17], n - 14);
			assert_int_equal(ref_csum(f + 14, 20, 0), 0);
		}
		uint16_t c = ref_csum(f + l4, n - l4, 0); /* what the device stores */
		f[l4 + 16] = (uint8_t)(c >> 8), f[l4 + 17] = (uint8_t)c;
		assert_int_equal(ref_csum(f + l4, n - l4, pseudo(f, v6, 6, n - l4)), 0);
	}
	size_t n = build(f, false, false, 0, 3000);
	struct net_gso g;
	assert_false(net_lso_to_gso(f, n, 34, 1448, 1514, &g)); /* UDP */
}

static void test_segmentation_refused(void **state)
{
	(void)state;
	static uint8_t f[NET_LSO_MAX_SIZE + 100], seg[1514];
	static struct segs s;
	size_t n = build(f, false, true, 0, 5000);
	s.n = 0;
	assert_int_equal(net_segment_tcp(f, n, 34, 63, 1514, seg, collect, &s), 0);      /* tiny MSS */
	assert_int_equal(net_segment_tcp(f, n, 34, 1500, 1514, seg, collect, &s), 0);    /* past the MTU */
	assert_int_equal(net_segment_tcp(f, n, 30, 1400, 1514, seg, collect, &s), 0);    /* not after IPv4 */
	assert_int_equal(net_segment_tcp(f, 54, 34, 1400, 1514, seg, collect, &s), 0);   /* no payload */
	f[34 + 12] = 0x40;                                                                /* doff 4 */
	assert_int_equal(net_segment_tcp(f, n, 34, 1400, 1514, seg, collect, &s), 0);
	f[34 + 12] = 0xf0;                                                                /* doff 15 */
	assert_int_equal(net_segment_tcp(f, 90, 34, 1400, 1514, seg, collect, &s), 0);
	n = build(f, false, false, 0, 5000);                                              /* UDP */
	assert_int_equal(net_segment_tcp(f, n, 34, 1400, 1514, seg, collect, &s), 0);
	n = build(f, false, true, 0, NET_LSO_MAX_SIZE);                                   /* too large */
	assert_int_equal(net_segment_tcp(f, n, 34, 1400, 1514, seg, collect, &s), 0);
	assert_int_equal(s.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksums),
		cmocka_unit_test(test_segmentation),
		cmocka_unit_test(test_lso_to_gso),
		cmocka_unit_test(test_segmentation_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
