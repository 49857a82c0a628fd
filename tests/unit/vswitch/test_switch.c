/* The switch core: learning, flooding, aging, pinned adapter MACs, spoofing, VLAN tagging and
 * isolation, hostile frames, table limits; and the adapter hello. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "vswitch/port.h"
#include "vswitch/switch.h"

static const uint8_t BCAST[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static void mac_n(uint8_t *m, unsigned n)
{
	m[0] = 0x00, m[1] = 0x15, m[2] = 0x5d, m[3] = (uint8_t)(n >> 16), m[4] = (uint8_t)(n >> 8), m[5] = (uint8_t)n;
}

static size_t frame(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type, size_t payload)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = (uint8_t)(type >> 8), f[13] = (uint8_t)type;
	for (size_t i = 0; i < payload; i++)
		f[14 + i] = (uint8_t)i;
	return 14 + payload;
}

static size_t tagged_frame(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t vid, size_t payload)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x81, f[13] = 0x00, f[14] = (uint8_t)(vid >> 8), f[15] = (uint8_t)vid;
	f[16] = 0x08, f[17] = 0x00;
	for (size_t i = 0; i < payload; i++)
		f[18 + i] = (uint8_t)i;
	return 18 + payload;
}

static int adapter(struct vswitch *sw, unsigned n, uint16_t vlan)
{
	struct vswitch_port_config c = { .kind = VSWITCH_PORT_ADAPTER, .vlan = vlan };
	mac_n(c.mac, n);
	snprintf(c.name, sizeof(c.name), "vm%u/0", n);
	return vswitch_port_add(sw, &c);
}

static int uplink(struct vswitch *sw)
{
	struct vswitch_port_config c = { .kind = VSWITCH_PORT_UPLINK };
	snprintf(c.name, sizeof(c.name), "eth0");
	return vswitch_port_add(sw, &c);
}

static bool goes_to(const struct vswitch_delivery *d, int port, bool tagged)
{
	for (unsigned i = 0; i < d->nports; i++)
		if (d->to[i].port == port)
			return d->to[i].tagged == tagged;
	return false;
}

static struct vswitch_delivery d;

static void test_pinned_unicast_and_flooding(void **state)
{
	(void)state;
	struct vswitch *sw = vswitch_new(0);
	int a = adapter(sw, 1, 0), b = adapter(sw, 2, 0), c = adapter(sw, 3, 0);
	assert_true(a >= 0 && b >= 0 && c >= 0);
	uint8_t f[64], ma[6], mb[6], mx[6];
	mac_n(ma, 1), mac_n(mb, 2), mac_n(mx, 99);
	/* known unicast: only the owner, even before it ever sent anything (pinned) */
	size_t n = frame(f, mb, ma, 0x0800, 40);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 1);
	assert_true(goes_to(&d, b, false));
	assert_ptr_equal(d.untagged, f);
	/* broadcast and unknown unicast: everyone else */
	n = frame(f, BCAST, ma, 0x0806, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 2);
	assert_true(goes_to(&d, b, false) && goes_to(&d, c, false));
	n = frame(f, mx, ma, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 2);
	/* to itself: filtered */
	n = frame(f, ma, ma, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 0);
	struct vswitch_port_stats st;
	assert_true(vswitch_port_stats(sw, (unsigned)b, &st));
	assert_int_equal(st.out_packets, 3);
	assert_true(vswitch_port_stats(sw, (unsigned)a, &st));
	assert_int_equal(st.in_packets, 4);
	/* a second adapter with the same MAC in the same VLAN is refused; in another VLAN it is not */
	assert_int_equal(adapter(sw, 1, 0), -1);
	assert_true(adapter(sw, 1, 7) >= 0);
	vswitch_free(sw);
}

static void test_spoofing(void **state)
{
	(void)state;
	struct vswitch *sw = vswitch_new(0);
	int a = adapter(sw, 1, 0), b = adapter(sw, 2, 0);
	uint8_t f[64], mb[6], mx[6];
	mac_n(mb, 2), mac_n(mx, 50);
	size_t n = frame(f, BCAST, mx, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 0);
	/* claiming another adapter's MAC does not steal its traffic */
	n = frame(f, BCAST, mb, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 0);
	struct vswitch_port_stats st;
	vswitch_port_stats(sw, (unsigned)a, &st);
	assert_int_equal(st.in_spoofed, 2);
	/* with spoofing allowed the port learns the foreign MAC */
	struct vswitch_port_config c = { .kind = VSWITCH_PORT_ADAPTER, .mac_spoofing = true };
	mac_n(c.mac, 3);
	int s = vswitch_port_add(sw, &c);
	n = frame(f, BCAST, mx, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)s, f, n, false, 0, &d), 2);
	n = frame(f, mx, mb, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)b, f, n, false, 0, &d), 1);
	assert_true(goes_to(&d, s, false));
	/* but never a pinned MAC */
	n = frame(f, BCAST, mb, 0x0800, 28);
	vswitch_forward(sw, (unsigned)s, f, n, false, 0, &d);
	n = frame(f, mb, mx, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)s, f, n, false, 0, &d), 1);
	assert_true(goes_to(&d, b, false));
	vswitch_free(sw);
}

static void test_learning_and_aging(void **state)
{
	(void)state;
	struct vswitch *sw = vswitch_new(1000);
	int a = adapter(sw, 1, 0), up = uplink(sw), b = adapter(sw, 2, 0);
	uint8_t f[64], ma[6], mh[6];
	mac_n(ma, 1), mac_n(mh, 500);
	/* the host's MAC is learned on the uplink */
	size_t n = frame(f, BCAST, mh, 0x0806, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)up, f, n, false, 0, &d), 2);
	n = frame(f, mh, ma, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 500, &d), 1);
	assert_true(goes_to(&d, up, false));
	struct vswitch_mac_entry e[8];
	assert_int_equal(vswitch_mac_table(sw, 500, e, 8), 3);
	/* aged: flooded again, and vswitch_age forgets it (pinned ones stay) */
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 1000, &d), 2);
	vswitch_age(sw, 1000);
	assert_int_equal(vswitch_mac_table(sw, 1000, e, 8), 2);
	for (int i = 0; i < 2; i++)
		assert_true(e[i].pinned);
	struct vswitch_port_stats st;
	vswitch_port_stats(sw, (unsigned)up, &st);
	assert_int_equal(st.learned, 0);
	/* removing a port forgets what it learned */
	n = frame(f, BCAST, mh, 0x0806, 28);
	vswitch_forward(sw, (unsigned)up, f, n, false, 2000, &d);
	vswitch_port_remove(sw, (unsigned)up);
	assert_int_equal(vswitch_mac_table(sw, 2000, e, 8), 2);
	n = frame(f, mh, ma, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 2000, &d), 1);
	assert_true(goes_to(&d, b, false));
	vswitch_free(sw);
}

static void test_vlans(void **state)
{
	(void)state;
	struct vswitch *sw = vswitch_new(0);
	int a = adapter(sw, 1, 0), v5 = adapter(sw, 2, 5), w5 = adapter(sw, 3, 5), up = uplink(sw);
	uint8_t f[128], g[128], ma[6], m2[6], m3[6], mh[6];
	mac_n(ma, 1), mac_n(m2, 2), mac_n(m3, 3), mac_n(mh, 77);
	/* VLAN 0 broadcast: the untagged adapter's peers in VLAN 0 and the uplink, untagged */
	size_t n = frame(f, BCAST, ma, 0x0806, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 1);
	assert_true(goes_to(&d, up, false));
	/* VLAN 5: its other member untagged, the uplink tagged with VID 5 */
	n = frame(f, BCAST, m2, 0x0806, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)v5, f, n, false, 0, &d), 2);
	assert_true(goes_to(&d, w5, false) && goes_to(&d, up, true));
	assert_int_equal(d.tagged_len, n + 4);
	assert_memory_equal(d.tagged, f, 12);
	assert_int_equal(d.tagged[12], 0x81);
	assert_int_equal(d.tagged[13], 0x00);
	assert_int_equal(d.tagged[15], 5);
	assert_memory_equal(d.tagged + 16, f + 12, n - 12);
	/* unicast across VLANs does not happen even with the right MAC */
	n = frame(f, m2, ma, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 1);
	assert_true(goes_to(&d, up, false));
	/* tagged from the uplink: only VLAN 5's adapters, untagged */
	size_t tn = tagged_frame(g, BCAST, mh, 5, 40);
	assert_int_equal(vswitch_forward(sw, (unsigned)up, g, tn, false, 0, &d), 2);
	assert_true(goes_to(&d, v5, false) && goes_to(&d, w5, false));
	assert_int_equal(d.untagged_len, tn - 4);
	assert_int_equal(d.untagged[12], 0x08);
	tn = tagged_frame(g, m3, mh, 5, 40);
	assert_int_equal(vswitch_forward(sw, (unsigned)up, g, tn, false, 0, &d), 1);
	assert_true(goes_to(&d, w5, false));
	/* priority tag (VID 0) is VLAN 0 */
	tn = tagged_frame(g, ma, mh, 0, 40);
	assert_int_equal(vswitch_forward(sw, (unsigned)up, g, tn, false, 0, &d), 1);
	assert_true(goes_to(&d, a, false));
	/* an adapter may not send tagged frames; VID 4095 is reserved */
	tn = tagged_frame(g, BCAST, ma, 5, 40);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, g, tn, false, 0, &d), 0);
	tn = tagged_frame(g, BCAST, mh, 4095, 40);
	assert_int_equal(vswitch_forward(sw, (unsigned)up, g, tn, false, 0, &d), 0);
	struct vswitch_port_stats st;
	vswitch_port_stats(sw, (unsigned)a, &st);
	assert_int_equal(st.in_vlan_drops, 1);
	vswitch_port_stats(sw, (unsigned)up, &st);
	assert_int_equal(st.in_vlan_drops, 1);
	/* moving an adapter to another VLAN moves its pinned MAC */
	assert_true(vswitch_port_set_vlan(sw, (unsigned)a, 5));
	n = frame(f, ma, m2, 0x0800, 28);
	assert_int_equal(vswitch_forward(sw, (unsigned)v5, f, n, false, 0, &d), 1);
	assert_true(goes_to(&d, a, false));
	assert_false(vswitch_port_set_vlan(sw, (unsigned)a, 4095));
	assert_false(vswitch_port_set_vlan(sw, (unsigned)up, 3));
	/* a clash with a MAC pinned in the target VLAN is refused and leaves the port as it was */
	struct vswitch_port_config c = { .kind = VSWITCH_PORT_ADAPTER, .vlan = 9 };
	mac_n(c.mac, 1);
	assert_true(vswitch_port_add(sw, &c) >= 0);
	assert_false(vswitch_port_set_vlan(sw, (unsigned)a, 9));
	struct vswitch_port_config now;
	vswitch_port_config(sw, (unsigned)a, &now);
	assert_int_equal(now.vlan, 5);
	assert_int_equal(vswitch_forward(sw, (unsigned)v5, f, n, false, 0, &d), 1);
	assert_true(goes_to(&d, a, false));
	vswitch_free(sw);
}

static void test_hostile_frames(void **state)
{
	(void)state;
	struct vswitch *sw = vswitch_new(0);
	int a = adapter(sw, 1, 0), up = uplink(sw);
	static uint8_t f[VSWITCH_LARGE_MAX + 10];
	uint8_t ma[6], mh[6], zero[6] = { 0 };
	mac_n(ma, 1), mac_n(mh, 9);
	frame(f, BCAST, ma, 0x0800, 0);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, 13, false, 0, &d), 0);           /* short */
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, VSWITCH_FRAME_MAX + 1, false, 0, &d), 0); /* long */
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, VSWITCH_FRAME_MAX, false, 0, &d), 1);
	/* a large TCP segment passes only when it comes with segmentation metadata */
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, VSWITCH_FRAME_MAX + 1, true, 0, &d), 1);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, VSWITCH_LARGE_MAX, true, 0, &d), 1);
	assert_int_equal(vswitch_forward(sw, (unsigned)a, f, VSWITCH_LARGE_MAX + 1, true, 0, &d), 0);
	frame(f, BCAST, BCAST, 0x0800, 20);                                             /* group source */
	assert_int_equal(vswitch_forward(sw, (unsigned)up, f, 34, false, 0, &d), 0);
	frame(f, BCAST, zero, 0x0800, 20);
	assert_int_equal(vswitch_forward(sw, (unsigned)up, f, 34, false, 0, &d), 0);
	tagged_frame(f, BCAST, mh, 5, 0);                                              /* tag, no type */
	assert_int_equal(vswitch_forward(sw, (unsigned)up, f, 16, false, 0, &d), 0);
	assert_int_equal(vswitch_forward(sw, 300, f, 60, false, 0, &d), 0);                    /* no such port */
	struct vswitch_port_stats st;
	vswitch_port_stats(sw, (unsigned)a, &st);
	assert_int_equal(st.in_malformed, 3);
	vswitch_port_stats(sw, (unsigned)up, &st);
	assert_int_equal(st.in_malformed, 3);
	/* bad port configurations */
	struct vswitch_port_config c = { .kind = VSWITCH_PORT_ADAPTER };
	assert_int_equal(vswitch_port_add(sw, &c), -1);                                 /* zero MAC */
	memcpy(c.mac, BCAST, 6);
	assert_int_equal(vswitch_port_add(sw, &c), -1);
	mac_n(c.mac, 2);
	c.vlan = 4095;
	assert_int_equal(vswitch_port_add(sw, &c), -1);
	c.kind = (enum vswitch_port_kind)7;
	assert_int_equal(vswitch_port_add(sw, &c), -1);
	vswitch_free(sw);
}

static void test_table_limits(void **state)
{
	(void)state;
	struct vswitch *sw = vswitch_new(0);
	int a = adapter(sw, 1, 0), up[4];
	for (int i = 0; i < 4; i++)
		up[i] = uplink(sw);
	uint8_t f[64], m[6], ma[6];
	mac_n(ma, 1);
	/* each port floods source MACs: it keeps at most VSWITCH_PORT_LEARN_MAX, the table at most
	 * VSWITCH_TABLE_MAX in all */
	for (int p = 0; p < 4; p++)
		for (unsigned i = 0; i < 1100; i++) {
			mac_n(m, 100000 * (unsigned)(p + 1) + i);
			size_t n = frame(f, BCAST, m, 0x0800, 28);
			vswitch_forward(sw, (unsigned)up[p], f, n, false, 0, &d);
		}
	struct vswitch_port_stats st;
	vswitch_port_stats(sw, (unsigned)up[0], &st);
	assert_int_equal(st.learned, VSWITCH_PORT_LEARN_MAX);
	struct vswitch_mac_entry e;
	assert_int_equal(vswitch_mac_table(sw, 0, &e, 0), VSWITCH_TABLE_MAX);
	/* every MAC of up[0] is still found after the others' entries are removed (probe chains
	 * survive the backward shifts) */
	for (int p = 1; p < 4; p++)
		vswitch_port_remove(sw, (unsigned)up[p]);
	assert_int_equal(vswitch_mac_table(sw, 0, &e, 0), VSWITCH_PORT_LEARN_MAX + 1);
	for (unsigned i = 0; i < VSWITCH_PORT_LEARN_MAX; i++) {
		mac_n(m, 100000 + i);
		size_t n = frame(f, m, ma, 0x0800, 28);
		assert_int_equal(vswitch_forward(sw, (unsigned)a, f, n, false, 0, &d), 1);
		assert_true(goes_to(&d, up[0], false));
	}
	/* all ports in use */
	for (unsigned i = 2; i < VSWITCH_MAX_PORTS; i++)
		assert_true(uplink(sw) >= 0);
	assert_int_equal(uplink(sw), -1);
	vswitch_free(sw);
}

static void test_hello(void **state)
{
	(void)state;
	struct vswitch_hello h = { .vlan = 42, .mac_spoofing = true }, back;
	mac_n(h.mac, 0xabcdef);
	snprintf(h.name, sizeof(h.name), "vm1/0");
	char buf[VSWITCH_HELLO_MAX], err[160];
	size_t n = vswitch_hello_encode(&h, buf, sizeof(buf));
	assert_true(n > 0);
	assert_true(vswitch_hello_parse(buf, n, &back, err, sizeof(err)));
	assert_memory_equal(&back, &h, sizeof(h));
	static const char *const bad[] = {
		"", "[]", "{\"op\":\"connect\"}", "{\"op\":\"conn\",\"mac\":\"00:15:5d:00:00:01\"}",
		"{\"op\":\"connect\",\"mac\":\"01:15:5d:00:00:01\"}", "{\"op\":\"connect\",\"mac\":\"00:15:5d:00:00\"}",
		"{\"op\":\"connect\",\"mac\":\"00:15:5d:00:00:01\",\"vlan\":4095}",
		"{\"op\":\"connect\",\"mac\":\"00:15:5d:00:00:01\",\"vlan\":-1}",
		"{\"op\":\"connect\",\"mac\":\"00:15:5d:00:00:01\",\"vlan\":\"5\"}",
		"{\"op\":\"connect\",\"mac\":\"00:15:5d:00:00:01\",\"name\":\"a b\"}",
		"{\"op\":\"connect\",\"mac\":\"00:15:5d:00:00:01\",\"mac_spoofing\":1}",
		"{\"op\":\"connect\",\"mac\":\"00:15:5d:00:00:01\",\"op\":\"connect\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_false(vswitch_hello_parse(bad[i], strlen(bad[i]), &back, err, sizeof(err)));
		assert_true(err[0] != '\0');
	}
	/* not NUL-terminated input is fine */
	memcpy(buf, "{\"op\":\"connect\",\"mac\":\"00:15:5D:00:00:01\"}XXXX", 46);
	assert_true(vswitch_hello_parse(buf, 42, &back, err, sizeof(err)));
	assert_int_equal(back.mac[2], 0x5d);
	assert_int_equal(back.vlan, 0);
	/* a name that would not survive is left out when encoding */
	snprintf(h.name, sizeof(h.name), "bad name\"");
	n = vswitch_hello_encode(&h, buf, sizeof(buf));
	assert_true(vswitch_hello_parse(buf, n, &back, err, sizeof(err)));
	assert_string_equal(back.name, "");
	assert_int_equal(vswitch_hello_encode(&h, buf, 10), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pinned_unicast_and_flooding),
		cmocka_unit_test(test_spoofing),
		cmocka_unit_test(test_learning_and_aging),
		cmocka_unit_test(test_vlans),
		cmocka_unit_test(test_hostile_frames),
		cmocka_unit_test(test_table_limits),
		cmocka_unit_test(test_hello),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
