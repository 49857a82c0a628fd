/* KVP IC against a fake guest that behaves like Linux hv_kvp.c + hv_kvp_daemon: no answer at all
 * (not even to the negotiation) until the daemon registers, answers in the request's buffer with
 * the request's length, HV_S_CONT past the last AUTO-pool index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "vsp/kvp.h"

#define GMAX 32

struct gkv {
	char key[256], value[1024];
};

struct guest_kvp {
	bool daemon;               /* hv_kvp_daemon registered */
	bool stall;                /* read requests but do not answer (daemon hung) */
	uint32_t fw, sv;
	struct gkv pool0[GMAX];    /* what the daemon wrote to .kvp_pool_0 */
	unsigned n0;
	unsigned requests, max_in_ring;
	uint8_t held[8192];        /* a stalled request */
	uint32_t held_len;
	uint64_t held_tid;
};

static const char *const auto_keys[] = {"FullyQualifiedDomainName", "IntegrationServicesVersion", "NetworkAddressIPv4",
					"NetworkAddressIPv6", "OSBuildNumber", "OSName", "OSMajorVersion",
					"OSMinorVersion", "OSVersion", "ProcessorArchitecture"};
static const char *const auto_values[] = {"guest.example", "3.1", "10.0.0.2", "fe80::1", "6.1.0-13-amd64", "Debian GNU/Linux",
					  "6", "1", "6.1.0-13-amd64", "x86_64"};

/* ASCII <-> UTF-16LE, written independently of the code under test */
static uint32_t a2u(const char *s, uint8_t *out)
{
	uint32_t n = 0;
	for (; *s; s++) {
		out[n++] = (uint8_t)*s;
		out[n++] = 0;
	}
	out[n++] = 0;
	out[n++] = 0;
	return n;
}

static void u2a(const uint8_t *in, uint32_t size, char *out, size_t cap)
{
	size_t o = 0;
	for (uint32_t i = 0; i + 1 < size && o + 1 < cap; i += 2) {
		if (!in[i] && !in[i + 1])
			break;
		out[o++] = (char)in[i];
	}
	out[o] = 0;
}

static struct gkv *g_find(struct guest_kvp *u, const char *key)
{
	for (unsigned i = 0; i < u->n0; i++)
		if (strcmp(u->pool0[i].key, key) == 0)
			return &u->pool0[i];
	return NULL;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* The daemon's work on one KVP request: body is hv_kvp_msg (or hv_kvp_ip_msg); returns status. */
static uint32_t daemon_op(struct guest_kvp *u, uint8_t *body, uint32_t blen)
{
	uint8_t op = body[0], pool = body[1];
	char key[300];
	switch (op) {
	case HV_KVP_OP_SET: {
		assert_int_equal(blen, HV_KVP_MSG_SIZE);
		uint8_t *v = body + 4;
		uint32_t type = rd32(v), ks = rd32(v + 4), vs = rd32(v + 8);
		assert_int_equal(pool, HV_KVP_POOL_EXTERNAL);
		u2a(v + 12, ks, key, sizeof(key));
		struct gkv *e = g_find(u, key);
		if (!e) {
			assert_true(u->n0 < GMAX);
			e = &u->pool0[u->n0++];
			strcpy(e->key, key);
		}
		if (type == HV_KVP_REG_SZ)
			u2a(v + 524, vs, e->value, sizeof(e->value));
		else if (type == HV_KVP_REG_U32)
			snprintf(e->value, sizeof(e->value), "%u", rd32(v + 524));
		else {
			uint64_t x;
			memcpy(&x, v + 524, 8);
			snprintf(e->value, sizeof(e->value), "%llu", (unsigned long long)x);
		}
		return IC_HV_S_OK;
	}
	case HV_KVP_OP_DELETE: {
		u2a(body + 8, rd32(body + 4), key, sizeof(key));
		struct gkv *e = g_find(u, key);
		if (!e)
			return IC_HV_S_CONT;
		*e = u->pool0[--u->n0];
		return IC_HV_S_OK;
	}
	case HV_KVP_OP_GET: {
		uint8_t *v = body + 4;
		u2a(v + 12, rd32(v + 4), key, sizeof(key));
		struct gkv *e = pool == 0 ? g_find(u, key) : NULL;
		if (!e)
			return IC_HV_S_CONT;
		wr32(v, HV_KVP_REG_SZ);
		wr32(v + 8, a2u(e->value, v + 524));
		return IC_HV_S_OK;
	}
	case HV_KVP_OP_ENUMERATE: {
		uint32_t idx = rd32(body + 4);
		uint8_t *v = body + 8;
		if (pool != HV_KVP_POOL_AUTO || idx >= 10)
			return IC_HV_S_CONT;
		wr32(v, HV_KVP_REG_SZ);
		wr32(v + 4, a2u(auto_keys[idx], v + 12));
		wr32(v + 8, a2u(auto_values[idx], v + 524));
		return IC_HV_S_OK;
	}
	case HV_KVP_OP_GET_IP_INFO: {
		assert_int_equal(blen, sizeof(struct hv_kvp_ip_msg));
		uint8_t *v = body + 2;
		u2a(v, 256, key, sizeof(key));
		if (strcmp(key, "00:15:5D:00:00:01") != 0)
			return IC_HV_E_FAIL;
		a2u("10.0.0.2;10.0.0.3", v + offsetof(struct hv_kvp_ipaddr_value, ip_addr));
		a2u("255.255.255.0;255.255.255.0", v + offsetof(struct hv_kvp_ipaddr_value, sub_net));
		a2u("10.0.0.1", v + offsetof(struct hv_kvp_ipaddr_value, gate_way));
		a2u("10.0.0.1", v + offsetof(struct hv_kvp_ipaddr_value, dns_addr));
		v[offsetof(struct hv_kvp_ipaddr_value, dhcp_enabled)] = 1;
		v[offsetof(struct hv_kvp_ipaddr_value, addr_family)] = HV_KVP_ADDR_FAMILY_IPV4;
		return IC_HV_S_OK;
	}
	default:
		return IC_HV_E_FAIL;
	}
}

static void answer(struct fake_guest *g, struct fg_chan *c, uint8_t *data, uint32_t dlen, uint64_t tid)
{
	struct icmsg_hdr *h = (void *)(data + sizeof(struct vmbuspipe_hdr));
	h->icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE;
	bool sig;
	assert_int_equal(fg_ring_send(&c->send, VM_PKT_DATA_INBAND, 0, tid, data, dlen, &sig), 0);
	if (sig)
		fg_signal(g, c);
}

static void negotiate(struct guest_kvp *u, uint8_t *body)
{
	static const uint32_t g_fw[] = {IC_VERSION(3, 0), IC_VERSION(1, 0)};
	static const uint32_t g_kvp[] = {IC_VERSION(4, 0), IC_VERSION(3, 0), IC_VERSION(1, 0)};
	struct icmsg_negotiate *n = (void *)body;
	struct ic_version *v = (void *)(body + sizeof(*n));
	uint32_t fw = 0, sv = 0;
	for (unsigned i = 0; i < 2 && !fw; i++)
		for (unsigned j = 0; j < n->icframe_vercnt; j++)
			if (IC_VERSION(v[j].major, v[j].minor) == g_fw[i])
				fw = g_fw[i];
	for (unsigned i = 0; i < 3 && !sv; i++)
		for (unsigned j = 0; j < n->icmsg_vercnt; j++)
			if (IC_VERSION(v[n->icframe_vercnt + j].major, v[n->icframe_vercnt + j].minor) == g_kvp[i])
				sv = g_kvp[i];
	n->icframe_vercnt = 1;
	n->icmsg_vercnt = 1;
	v[0] = (struct ic_version){(uint16_t)(fw >> 16), (uint16_t)fw};
	v[1] = (struct ic_version){(uint16_t)(sv >> 16), (uint16_t)sv};
	u->fw = fw;
	u->sv = sv;
}

/* Read everything the host sent (counting how many requests were in the ring at once), answer. */
static void guest_poll(struct fake_guest *g, struct fg_chan *c, struct guest_kvp *u)
{
	if (!u->daemon)
		return; /* Linux leaves the ring alone until the daemon registers */
	static uint8_t buf[4][8192];
	uint32_t lens[4];
	unsigned n = 0;
	uint32_t len;
	while (n < 4 && (len = fg_ring_recv(&c->recv, buf[n], sizeof(buf[n]))) != 0)
		lens[n++] = len;
	if (n > u->max_in_ring)
		u->max_in_ring = n;
	for (unsigned i = 0; i < n; i++) {
		const struct vmpacket_descriptor *d = (const void *)buf[i];
		uint8_t *data = buf[i] + d->offset8 * 8;
		uint32_t dlen = lens[i] - d->offset8 * 8u;
		assert_true(dlen >= IC_HDR_SIZE);
		struct icmsg_hdr *h = (void *)(data + sizeof(struct vmbuspipe_hdr));
		assert_true(h->icflags & ICMSGHDRFLAG_REQUEST);
		assert_int_equal(h->icmsgsize, dlen - IC_HDR_SIZE);
		u->requests++;
		if (h->icmsgtype == ICMSGTYPE_NEGOTIATE) {
			negotiate(u, data + IC_HDR_SIZE);
		} else {
			assert_int_equal(h->icmsgtype, ICMSGTYPE_KVPEXCHANGE);
			assert_int_equal(IC_VERSION(h->icvermsg.major, h->icvermsg.minor), u->sv);
			if (u->stall) {
				memcpy(u->held, data, dlen);
				u->held_len = dlen;
				u->held_tid = d->trans_id;
				continue;
			}
			h->status = daemon_op(u, data + IC_HDR_SIZE, dlen - IC_HDR_SIZE);
		}
		answer(g, c, data, dlen, d->trans_id);
	}
}

/* ---- host side ---- */
#define MAXR 64
struct ctx {
	struct fake_guest g;
	struct ic_dev *kvp;
	struct fg_chan ch;
	struct guest_kvp u;
	struct ic_kvp_result r[MAXR];
	char keys[MAXR][64], values[MAXR][64];
	struct ic_kvp_ip_info ip;
	unsigned nr;
	uint64_t now;
};

static void on_done(void *vctx, struct ic_dev *dev, const struct ic_kvp_result *r)
{
	struct ctx *c = vctx;
	assert_ptr_equal(dev, c->kvp);
	assert_true(c->nr < MAXR);
	c->r[c->nr] = *r;
	c->keys[c->nr][0] = c->values[c->nr][0] = 0;
	if (r->pair) {
		snprintf(c->keys[c->nr], 64, "%.63s", r->pair->key);
		snprintf(c->values[c->nr], 64, "%.63s", r->pair->value);
	} else if (r->key) {
		snprintf(c->keys[c->nr], 64, "%.63s", r->key);
	}
	if (r->ip)
		c->ip = *r->ip;
	c->nr++;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	fg_init(&c->g);
	c->kvp = ic_kvp_add(c->g.srv, on_done, c);
	assert_non_null(c->kvp);
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&c->g), 1);
	c->u.daemon = true;
	c->now = 1000;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	fg_free(&c->g);
	ic_kvp_free(c->kvp);
	free(c);
	return 0;
}

static void open_ready(struct ctx *c)
{
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 10, 10, 4, 4), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_state(c->kvp), IC_READY);
}

/* Let the guest answer until the host has nothing more to say. */
static void run(struct ctx *c)
{
	for (int i = 0; i < 100; i++) {
		unsigned before = c->u.requests;
		guest_poll(&c->g, &c->ch, &c->u);
		if (c->u.requests == before)
			return;
	}
	fail_msg("host never stopped sending");
}

static void test_offer_class(void **state)
{
	struct ctx *c = *state;
	const struct vmbus_channel_offer_channel *o = NULL;
	for (unsigned i = 0; i < c->g.nmsgs; i++)
		if (fg_msgtype(&c->g.msgs[i]) == CHANNELMSG_OFFERCHANNEL)
			o = (const void *)c->g.msgs[i].data;
	assert_non_null(o);
	/* a9a0f4e7-5a45-4d96-b827-8a841e8c03e6 as Linux HV_KVP_GUID bytes */
	const uint8_t want[16] = {0xe7, 0xf4, 0xa0, 0xa9, 0x45, 0x5a, 0x96, 0x4d,
				  0xb8, 0x27, 0x8a, 0x84, 0x1e, 0x8c, 0x03, 0xe6};
	assert_memory_equal(o->offer.if_type.b, want, 16);
}

static void test_no_daemon_then_daemon(void **state)
{
	struct ctx *c = *state;
	c->u.daemon = false;
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 10, 10, 4, 4), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_state(c->kvp), IC_NEGOTIATING);
	/* host entries and queries wait */
	assert_int_equal(ic_kvp_set(c->kvp, "VirtualMachineName", "vm1", c->now), 0);
	assert_int_not_equal(ic_kvp_enumerate(c->kvp, HV_KVP_POOL_AUTO, c->now), 0);
	assert_false(ic_kvp_host_synced(c->kvp));
	assert_false(ic_kvp_busy(c->kvp));
	ic_kvp_tick(c->kvp, c->now + 10 * IC_KVP_TIMEOUT_MS);
	assert_int_equal(c->nr, 0);
	/* the daemon starts: negotiation, then the pushed table, then the enumeration */
	c->u.daemon = true;
	run(c);
	assert_int_equal(ic_state(c->kvp), IC_READY);
	assert_int_equal(ic_service_version(c->kvp), IC_VERSION(4, 0));
	assert_int_equal(ic_framework_version(c->kvp), IC_VERSION(3, 0));
	assert_int_equal(c->u.n0, 1);
	assert_string_equal(c->u.pool0[0].value, "vm1");
	assert_true(ic_kvp_host_synced(c->kvp));
	assert_int_equal(c->r[0].op, HV_KVP_OP_SET);
	assert_int_equal(c->r[0].id, 0);
	assert_string_equal(c->keys[0], "VirtualMachineName");
	assert_int_equal(ic_kvp_pool_count(c->kvp, HV_KVP_POOL_AUTO), 10);
	assert_int_equal(c->u.max_in_ring, 1); /* exactly one transaction at a time */
}

static void test_set_delete_reconnect(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	assert_int_equal(ic_kvp_set(c->kvp, "VirtualMachineName", "vm1", c->now), 0);
	assert_int_equal(ic_kvp_set_u32(c->kvp, "Generation", 2, c->now), 0);
	assert_int_equal(ic_kvp_set_u64(c->kvp, "Big", 1ull << 40, c->now), 0);
	assert_int_equal(ic_kvp_set(c->kvp, "VirtualMachineName", "vm2", c->now), 0); /* while the first is in flight */
	run(c);
	assert_int_equal(c->u.n0, 3);
	assert_string_equal(g_find(&c->u, "VirtualMachineName")->value, "vm2");
	assert_string_equal(g_find(&c->u, "Generation")->value, "2");
	assert_string_equal(g_find(&c->u, "Big")->value, "1099511627776");
	assert_true(ic_kvp_host_synced(c->kvp));
	assert_int_equal(ic_kvp_host_count(c->kvp), 3);
	assert_int_equal(c->u.max_in_ring, 1);

	assert_int_equal(ic_kvp_delete(c->kvp, "Generation", c->now), 0);
	assert_int_equal(ic_kvp_delete(c->kvp, "NoSuchKey", c->now), -1);
	run(c);
	assert_int_equal(c->u.n0, 2);
	assert_null(g_find(&c->u, "Generation"));
	assert_int_equal(ic_kvp_host_count(c->kvp), 2);
	assert_int_equal(c->r[c->nr - 1].op, HV_KVP_OP_DELETE);
	assert_int_equal(c->r[c->nr - 1].status, IC_KVP_OK);

	/* guest reboots with an empty pool file: the table comes back on the new connection */
	assert_true(fg_close(&c->g, &c->ch));
	assert_int_equal(ic_state(c->kvp), IC_CLOSED);
	c->u.n0 = 0;
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 11, 10, 4, 4), 0);
	run(c);
	assert_int_equal(c->u.n0, 2);
	assert_string_equal(g_find(&c->u, "VirtualMachineName")->value, "vm2");

	/* bad arguments */
	char longkey[400];
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = 0;
	assert_int_equal(ic_kvp_set(c->kvp, longkey, "v", c->now), -1);
	assert_int_equal(ic_kvp_set(c->kvp, "", "v", c->now), -1);
	assert_int_equal(ic_kvp_set(c->kvp, "k", "\xff\xfe", c->now), -1);
	assert_int_equal(ic_kvp_set(c->kvp, "k", NULL, c->now), -1);
}

static void test_enumerate_get_ip(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	uint32_t id = ic_kvp_enumerate(c->kvp, HV_KVP_POOL_AUTO, c->now);
	assert_int_not_equal(id, 0);
	run(c);
	assert_int_equal(c->nr, 11);
	for (unsigned i = 0; i < 10; i++) {
		assert_int_equal(c->r[i].id, id);
		assert_int_equal(c->r[i].status, IC_KVP_OK);
		assert_int_equal(c->r[i].index, i);
		assert_string_equal(c->keys[i], auto_keys[i]);
	}
	assert_int_equal(c->r[10].status, IC_KVP_END);
	assert_int_equal(c->r[10].hresult, IC_HV_S_CONT);
	assert_string_equal(ic_kvp_pool_lookup(c->kvp, HV_KVP_POOL_AUTO, "OSName"), "Debian GNU/Linux");
	assert_string_equal(ic_kvp_pool_item(c->kvp, HV_KVP_POOL_AUTO, 0)->value, "guest.example");
	assert_null(ic_kvp_pool_item(c->kvp, HV_KVP_POOL_AUTO, 10));
	assert_null(ic_kvp_pool_lookup(c->kvp, HV_KVP_POOL_GUEST, "OSName"));

	/* an empty pool: END at once, empty cache */
	c->nr = 0;
	ic_kvp_enumerate(c->kvp, HV_KVP_POOL_GUEST, c->now);
	run(c);
	assert_int_equal(c->nr, 1);
	assert_int_equal(c->r[0].status, IC_KVP_END);

	/* GET of a pool-0 key the host set, and of a missing one */
	ic_kvp_set(c->kvp, "Role", "web", c->now);
	run(c);
	c->nr = 0;
	uint32_t g1 = ic_kvp_get(c->kvp, HV_KVP_POOL_EXTERNAL, "Role", c->now);
	uint32_t g2 = ic_kvp_get(c->kvp, HV_KVP_POOL_EXTERNAL, "Missing", c->now);
	assert_true(g1 && g2 && g1 != g2);
	run(c);
	assert_int_equal(c->nr, 2);
	assert_int_equal(c->r[0].id, g1);
	assert_int_equal(c->r[0].status, IC_KVP_OK);
	assert_string_equal(c->values[0], "web");
	assert_int_equal(c->r[1].status, IC_KVP_GUEST_ERROR);
	assert_int_equal(c->r[1].hresult, IC_HV_S_CONT);

	/* IP info for the adapter the guest knows, and one it does not */
	c->nr = 0;
	ic_kvp_get_ip_info(c->kvp, "00:15:5D:00:00:01", HV_KVP_ADDR_FAMILY_IPV4, c->now);
	ic_kvp_get_ip_info(c->kvp, "00:15:5D:00:00:99", HV_KVP_ADDR_FAMILY_IPV4, c->now);
	run(c);
	assert_int_equal(c->nr, 2);
	assert_int_equal(c->r[0].status, IC_KVP_OK);
	assert_string_equal(c->ip.ip_addr, "10.0.0.2;10.0.0.3");
	assert_string_equal(c->ip.sub_net, "255.255.255.0;255.255.255.0");
	assert_string_equal(c->ip.gate_way, "10.0.0.1");
	assert_string_equal(c->ip.dns_addr, "10.0.0.1");
	assert_true(c->ip.dhcp_enabled);
	assert_int_equal(c->ip.addr_family, HV_KVP_ADDR_FAMILY_IPV4);
	assert_int_equal(c->r[1].status, IC_KVP_GUEST_ERROR);
	assert_int_equal(c->r[1].hresult, IC_HV_E_FAIL);
	assert_int_equal(c->u.max_in_ring, 1);
}

static void test_queue_limit(void **state)
{
	struct ctx *c = *state;
	/* not open: everything queues, up to the queue size */
	for (unsigned i = 0; i < IC_KVP_QUEUE; i++)
		assert_int_not_equal(ic_kvp_get(c->kvp, 1, "k", c->now), 0);
	assert_int_equal(ic_kvp_get(c->kvp, 1, "k", c->now), 0);
	assert_int_equal(ic_kvp_enumerate(c->kvp, HV_KVP_POOL_COUNT, c->now), 0);
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%u", i);
		assert_int_equal(ic_kvp_set(c->kvp, k, "v", c->now), 0);
	}
	assert_int_equal(ic_kvp_set(c->kvp, "onemore", "v", c->now), -1);
	assert_int_equal(ic_kvp_set(c->kvp, "k3", "replaced", c->now), 0); /* existing key: fine */
}

static void test_timeout(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	ic_kvp_set_timeout(c->kvp, 5000);
	c->u.stall = true;
	uint32_t id = ic_kvp_get(c->kvp, 0, "x", c->now);
	ic_kvp_enumerate(c->kvp, HV_KVP_POOL_AUTO, c->now);
	guest_poll(&c->g, &c->ch, &c->u); /* guest holds the GET */
	assert_true(ic_kvp_busy(c->kvp));
	ic_kvp_tick(c->kvp, c->now + 4999);
	assert_int_equal(c->nr, 0);
	ic_kvp_tick(c->kvp, c->now + 5000);
	assert_int_equal(c->nr, 1);
	assert_int_equal(c->r[0].id, id);
	assert_int_equal(c->r[0].status, IC_KVP_TIMEOUT);
	/* the next request went out at once; the guest's late answer to the old one is ignored */
	assert_true(ic_kvp_busy(c->kvp));
	struct icmsg_hdr *h = (void *)(c->u.held + sizeof(struct vmbuspipe_hdr));
	h->status = IC_HV_S_OK;
	answer(&c->g, &c->ch, c->u.held, c->u.held_len, c->u.held_tid);
	assert_int_equal(c->nr, 1);
	c->u.stall = false;
	c->now += 5000;
	run(c);
	assert_int_equal(c->nr, 12); /* 10 items + END */
	assert_int_equal(c->r[11].status, IC_KVP_END);
}

static void test_close_in_flight(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.stall = true;
	ic_kvp_enumerate(c->kvp, HV_KVP_POOL_AUTO, c->now);
	guest_poll(&c->g, &c->ch, &c->u);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_true(fg_close(&c->g, &c->ch));
	assert_int_equal(c->nr, 1);
	assert_int_equal(c->r[0].status, IC_KVP_CLOSED);
	assert_false(ic_kvp_busy(c->kvp));
}

/* Send a crafted answer to the request the guest holds. */
static void hostile_answer(struct ctx *c, uint32_t status, void (*mangle)(uint8_t *body), uint32_t len)
{
	uint8_t *data = c->u.held;
	struct icmsg_hdr *h = (void *)(data + sizeof(struct vmbuspipe_hdr));
	h->status = status;
	if (mangle)
		mangle(data + IC_HDR_SIZE);
	answer(&c->g, &c->ch, data, len, c->u.held_tid);
}

static void huge_key(uint8_t *b) { wr32(b + 8 + 4, 0xffffffffu); }
static void huge_value(uint8_t *b) { wr32(b + 8 + 8, 2050); }
static void bad_type(uint8_t *b) { wr32(b + 8, 77); }
static void bad_u32(uint8_t *b) { wr32(b + 8, HV_KVP_REG_U32); wr32(b + 8 + 8, 8); }
static void unterminated(uint8_t *b)
{
	uint8_t *v = b + 8;
	wr32(v, HV_KVP_REG_SZ);
	wr32(v + 4, HV_KVP_MAX_KEY_SIZE);
	wr32(v + 8, HV_KVP_MAX_VALUE_SIZE);
	for (unsigned i = 0; i < HV_KVP_MAX_KEY_SIZE; i += 2) {
		v[12 + i] = 0x3d; /* U+D83D lone high surrogates */
		v[13 + i] = 0xd8;
	}
	for (unsigned i = 0; i < HV_KVP_MAX_VALUE_SIZE; i += 2) {
		v[524 + i] = 0xac; /* U+20AC, 3 UTF-8 bytes each */
		v[525 + i] = 0x20;
	}
}

static void test_hostile_answers(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.stall = true;
	void (*mangles[])(uint8_t *) = {huge_key, huge_value, bad_type, bad_u32};
	for (unsigned i = 0; i < 4; i++) {
		c->nr = 0;
		ic_kvp_enumerate(c->kvp, HV_KVP_POOL_AUTO, c->now);
		guest_poll(&c->g, &c->ch, &c->u);
		hostile_answer(c, IC_HV_S_OK, mangles[i], c->u.held_len);
		assert_int_equal(c->nr, 1);
		assert_int_equal(c->r[0].status, IC_KVP_MALFORMED);
	}
	/* truncated answers (shorter than the message), for each kind */
	c->nr = 0;
	ic_kvp_enumerate(c->kvp, HV_KVP_POOL_AUTO, c->now);
	guest_poll(&c->g, &c->ch, &c->u);
	hostile_answer(c, IC_HV_S_OK, NULL, IC_HDR_SIZE + 10);
	ic_kvp_get(c->kvp, 0, "k", c->now);
	guest_poll(&c->g, &c->ch, &c->u);
	hostile_answer(c, IC_HV_S_OK, NULL, IC_HDR_SIZE + 100);
	ic_kvp_get_ip_info(c->kvp, "00:15:5D:00:00:01", 1, c->now);
	guest_poll(&c->g, &c->ch, &c->u);
	hostile_answer(c, IC_HV_S_OK, NULL, IC_HDR_SIZE + 3000);
	ic_kvp_get(c->kvp, 0, "k", c->now);
	guest_poll(&c->g, &c->ch, &c->u);
	hostile_answer(c, IC_HV_S_OK, NULL, IC_HDR_SIZE);
	assert_int_equal(c->nr, 4);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(c->r[i].status, IC_KVP_MALFORMED);

	/* full-size strings without terminators, lone surrogates: bounded, replaced */
	c->nr = 0;
	ic_kvp_enumerate(c->kvp, HV_KVP_POOL_AUTO, c->now);
	guest_poll(&c->g, &c->ch, &c->u);
	hostile_answer(c, IC_HV_S_OK, unterminated, c->u.held_len);
	assert_int_equal(c->nr, 1);
	assert_int_equal(c->r[0].status, IC_KVP_OK);
	assert_int_equal(strlen(c->keys[0]), 63); /* truncated copy in the test; */
	guest_poll(&c->g, &c->ch, &c->u);         /* the next index went out */
	hostile_answer(c, IC_HV_S_CONT, NULL, c->u.held_len);
	const struct ic_kvp_pair *p = ic_kvp_pool_item(c->kvp, HV_KVP_POOL_AUTO, 0);
	assert_non_null(p);
	assert_int_equal(strlen(p->key), 256 * 3);
	assert_int_equal(strlen(p->value), 1024 * 3);

	/* answers with wrong flags / unknown transaction ids / wrong type: ignored, then timeout */
	c->nr = 0;
	ic_kvp_get(c->kvp, 0, "k", c->now);
	guest_poll(&c->g, &c->ch, &c->u);
	struct icmsg_hdr *h = (void *)(c->u.held + sizeof(struct vmbuspipe_hdr));
	bool sig;
	h->icflags = ICMSGHDRFLAG_REQUEST;
	fg_ring_send(&c->ch.send, VM_PKT_DATA_INBAND, 0, c->u.held_tid, c->u.held, c->u.held_len, &sig);
	h->icflags = ICMSGHDRFLAG_RESPONSE;
	fg_ring_send(&c->ch.send, VM_PKT_DATA_INBAND, 0, c->u.held_tid + 7, c->u.held, c->u.held_len, &sig);
	fg_signal(&c->g, &c->ch);
	assert_int_equal(c->nr, 0);
	h->icmsgtype = ICMSGTYPE_HEARTBEAT; /* consumed by the framework, not ours */
	fg_ring_send(&c->ch.send, VM_PKT_DATA_INBAND, 0, c->u.held_tid, c->u.held, c->u.held_len, &sig);
	fg_signal(&c->g, &c->ch);
	ic_kvp_tick(c->kvp, c->now);
	assert_int_equal(c->nr, 1);
	assert_int_equal(c->r[0].status, IC_KVP_MALFORMED);
	assert_int_equal(ic_state(c->kvp), IC_READY);
}

static void test_utf(void **state)
{
	(void)state;
	uint8_t u[64];
	char s[64];
	/* é (2 bytes), € (3), 😀 (4: a surrogate pair) */
	int n = ic_kvp_utf8_to_utf16le("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", u, sizeof(u));
	const uint8_t want[] = {'a', 0, 0xe9, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde, 0, 0};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(u, want, sizeof(want));
	assert_int_equal(ic_kvp_utf16le_to_utf8(u, (uint32_t)n, s), 10);
	assert_string_equal(s, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	assert_int_equal(ic_kvp_utf8_to_utf16le("\xc0\x80", u, sizeof(u)), -1);     /* overlong */
	assert_int_equal(ic_kvp_utf8_to_utf16le("\xed\xa0\x80", u, sizeof(u)), -1); /* surrogate */
	assert_int_equal(ic_kvp_utf8_to_utf16le("\xe2\x82", u, sizeof(u)), -1);     /* truncated */
	assert_int_equal(ic_kvp_utf8_to_utf16le("abc", u, 8), 8);
	assert_int_equal(ic_kvp_utf8_to_utf16le("abcd", u, 8), -1);                 /* no room for NUL */
	/* odd byte count: the half unit is dropped */
	const uint8_t odd[] = {'h', 0, 'i'};
	assert_int_equal(ic_kvp_utf16le_to_utf8(odd, 3, s), 1);
	assert_string_equal(s, "h");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offer_class, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_daemon_then_daemon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_delete_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enumerate_get_ip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_answers, setup, teardown),
		cmocka_unit_test(test_utf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
