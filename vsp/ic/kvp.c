/* KVP IC: the host's pool-0 table pushed to the guest, and host queries (GET, ENUMERATE,
 * GET_IP_INFO) of the guest's pools, one transaction on the wire at a time.
 *
 * Every answer is hostile input: it is copied out of the ring by the channel layer, then every
 * size is checked against the fixed wire layout before a byte of a string is read, strings are
 * converted with explicit bounds (no terminator is trusted) and unknown value types are rejected. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic_internal.h"
#include "vsp/kvp.h"

#define ENUM_MAX_ITEMS IC_KVP_POOL_CACHE

struct host_entry {
	bool used;
	bool dirty;                 /* SET not yet acknowledged by this guest connection */
	bool deleting;              /* DELETE to send; the entry goes when it is answered */
	uint32_t gen;               /* bumped on every change, so a change in flight is resent */
	char name[IC_KVP_KEY_MAX];  /* UTF-8, for lookups and reports */
	uint8_t key[HV_KVP_MAX_KEY_SIZE];
	uint32_t key_size;
	uint32_t value_type;
	uint8_t value[HV_KVP_MAX_VALUE_SIZE];
	uint32_t value_size;
};

struct query {
	uint32_t id;
	uint8_t op, pool, family;
	uint8_t key[HV_KVP_MAX_KEY_SIZE]; /* GET: key; GET_IP_INFO: adapter id (<= 256 bytes) */
	uint32_t key_size;
};

struct pool_cache {
	struct ic_kvp_pair *items;
	unsigned n;
};

enum cur_kind { CUR_NONE, CUR_PUSH, CUR_QUERY };

struct kvp_priv {
	ic_kvp_done_fn done;
	void *ctx;
	void (*base_close)(struct vmbus_chan *, void *);
	struct host_entry host[IC_KVP_HOST_ENTRIES];
	struct query q[IC_KVP_QUEUE];
	unsigned qhead, qlen;
	uint32_t next_id;
	/* the transaction on the wire */
	enum cur_kind cur;
	unsigned cur_entry;
	uint8_t cur_op;
	uint32_t cur_gen;
	struct query curq;
	uint32_t enum_index;
	struct ic_kvp_pair *staging;
	unsigned nstaging, staging_cap;
	uint64_t tid;
	uint32_t timeout_ms;
	struct pool_cache cache[HV_KVP_POOL_COUNT];
	struct ic_kvp_pair scratch;
	struct ic_kvp_ip_info ip;
	uint8_t tx[IC_HDR_SIZE + sizeof(struct hv_kvp_ip_msg)];
};

static const uint32_t kvp_versions[] = {IC_VERSION(4, 0), IC_VERSION(3, 0), IC_VERSION(1, 0)};

/* struct ic_dev has no service-private pointer; the context slot the time-sync service uses for
 * its clocks is free in every other service and carries ours. */
static struct kvp_priv *priv(const struct ic_dev *dev)
{
	return dev->clock_ctx;
}

/* ---- UTF-8 <-> UTF-16LE ---- */
int ic_kvp_utf8_to_utf16le(const char *s, uint8_t *out, uint32_t cap)
{
	const uint8_t *p = (const uint8_t *)s;
	uint32_t n = 0;
	while (*p) {
		uint32_t c, need;
		if (p[0] < 0x80) {
			c = p[0];
			need = 0;
		} else if ((p[0] & 0xe0) == 0xc0) {
			c = p[0] & 0x1f;
			need = 1;
		} else if ((p[0] & 0xf0) == 0xe0) {
			c = p[0] & 0x0f;
			need = 2;
		} else if ((p[0] & 0xf8) == 0xf0) {
			c = p[0] & 0x07;
			need = 3;
		} else {
			return -1;
		}
		for (uint32_t i = 1; i <= need; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return -1;
			c = (c << 6) | (p[i] & 0x3f);
		}
		static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
		if (c < min[need] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return -1;
		p += need + 1;
		uint16_t u[2];
		uint32_t nu = 1;
		if (c >= 0x10000) {
			c -= 0x10000;
			u[0] = (uint16_t)(0xd800 | (c >> 10));
			u[1] = (uint16_t)(0xdc00 | (c & 0x3ff));
			nu = 2;
		} else {
			u[0] = (uint16_t)c;
		}
		if (n + 2 * nu + 2 > cap)
			return -1;
		for (uint32_t i = 0; i < nu; i++, n += 2) {
			out[n] = (uint8_t)u[i];
			out[n + 1] = (uint8_t)(u[i] >> 8);
		}
	}
	if (n + 2 > cap)
		return -1;
	out[n] = out[n + 1] = 0;
	return (int)(n + 2);
}

static uint32_t put_utf8(char *out, uint32_t o, uint32_t c)
{
	if (c < 0x80) {
		out[o++] = (char)c;
	} else if (c < 0x800) {
		out[o++] = (char)(0xc0 | (c >> 6));
		out[o++] = (char)(0x80 | (c & 0x3f));
	} else if (c < 0x10000) {
		out[o++] = (char)(0xe0 | (c >> 12));
		out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[o++] = (char)(0x80 | (c & 0x3f));
	} else {
		out[o++] = (char)(0xf0 | (c >> 18));
		out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
		out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[o++] = (char)(0x80 | (c & 0x3f));
	}
	return o;
}

uint32_t ic_kvp_utf16le_to_utf8(const uint8_t *in, uint32_t len, char *out)
{
	uint32_t units = len / 2, o = 0;
	for (uint32_t i = 0; i < units; i++) {
		uint32_t c = (uint32_t)in[2 * i] | (uint32_t)in[2 * i + 1] << 8;
		if (c == 0)
			break;
		if (c >= 0xd800 && c <= 0xdbff && i + 1 < units) {
			uint32_t d = (uint32_t)in[2 * i + 2] | (uint32_t)in[2 * i + 3] << 8;
			if (d >= 0xdc00 && d <= 0xdfff) {
				o = put_utf8(out, o, 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00));
				i++;
				continue;
			}
		}
		if (c >= 0xd800 && c <= 0xdfff)
			c = 0xfffd; /* lone surrogate */
		o = put_utf8(out, o, c);
	}
	out[o] = 0;
	return o;
}

/* ---- sending ---- */
static struct ic_version ver(uint32_t v)
{
	return (struct ic_version){.major = (uint16_t)(v >> 16), .minor = (uint16_t)v};
}

/* The framework's ic_send_request() caps bodies at IC_MAX_BODY (6196 bytes, the file copy's
 * fragment); KVP messages are 2580 and 7428, so KVP frames its own with the same header and
 * transaction rules. */
static int kvp_send(struct ic_dev *dev, uint32_t len)
{
	struct kvp_priv *p = priv(dev);
	if (ic_state(dev) != IC_READY || !dev->chan || dev->pending_tid != 0 || len > sizeof(p->tx) - IC_HDR_SIZE)
		return -1;
	struct vmbuspipe_hdr pipe = {.flags = 0, .msgsize = (uint32_t)(sizeof(struct icmsg_hdr) + len)};
	struct icmsg_hdr h = {
		.icverframe = ver(dev->fw_version),
		.icmsgtype = ICMSGTYPE_KVPEXCHANGE,
		.icvermsg = ver(dev->srv_version),
		.icmsgsize = (uint16_t)len,
		.ictransaction_id = (uint8_t)dev->next_tid,
		.icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_REQUEST,
	};
	memcpy(p->tx, &pipe, sizeof(pipe));
	memcpy(p->tx + sizeof(pipe), &h, sizeof(h));
	uint64_t tid = dev->next_tid;
	if (vmbus_chan_send(dev->chan, VM_PKT_DATA_INBAND, 0, tid, p->tx, (uint32_t)IC_HDR_SIZE + len) != 0)
		return -1;
	dev->next_tid++;
	dev->pending_tid = tid;
	p->tid = tid;
	dev->deadline_ms = dev->now_ms + p->timeout_ms;
	return 0;
}

/* body of the next message, zeroed */
static uint8_t *tx_body(struct kvp_priv *p, uint32_t len)
{
	memset(p->tx + IC_HDR_SIZE, 0, len);
	return p->tx + IC_HDR_SIZE;
}

static void put_hdr(uint8_t *body, uint8_t op, uint8_t pool)
{
	struct hv_kvp_hdr h = {.operation = op, .pool = pool};
	memcpy(body, &h, sizeof(h));
}

static int send_push(struct ic_dev *dev, unsigned i)
{
	struct kvp_priv *p = priv(dev);
	struct host_entry *e = &p->host[i];
	uint8_t *b = tx_body(p, HV_KVP_MSG_SIZE);
	uint8_t op;
	if (e->deleting) {
		op = HV_KVP_OP_DELETE;
		put_hdr(b, op, HV_KVP_POOL_EXTERNAL);
		memcpy(b + 4 + offsetof(struct hv_kvp_msg_delete, key_size), &e->key_size, 4);
		memcpy(b + 4 + offsetof(struct hv_kvp_msg_delete, key), e->key, e->key_size);
	} else {
		op = HV_KVP_OP_SET;
		put_hdr(b, op, HV_KVP_POOL_EXTERNAL);
		uint8_t *v = b + 4;
		memcpy(v + offsetof(struct hv_kvp_exchg_msg_value, value_type), &e->value_type, 4);
		memcpy(v + offsetof(struct hv_kvp_exchg_msg_value, key_size), &e->key_size, 4);
		memcpy(v + offsetof(struct hv_kvp_exchg_msg_value, value_size), &e->value_size, 4);
		memcpy(v + offsetof(struct hv_kvp_exchg_msg_value, key), e->key, e->key_size);
		memcpy(v + offsetof(struct hv_kvp_exchg_msg_value, value), e->value, e->value_size);
	}
	if (kvp_send(dev, HV_KVP_MSG_SIZE) != 0)
		return -1;
	p->cur = CUR_PUSH;
	p->cur_entry = i;
	p->cur_op = op;
	p->cur_gen = e->gen;
	return 0;
}

static int send_query(struct ic_dev *dev)
{
	struct kvp_priv *p = priv(dev);
	struct query *q = &p->curq;
	uint32_t len = HV_KVP_MSG_SIZE;
	uint8_t *b;
	switch (q->op) {
	case HV_KVP_OP_GET:
		b = tx_body(p, len);
		put_hdr(b, q->op, q->pool);
		memcpy(b + 4 + offsetof(struct hv_kvp_exchg_msg_value, key_size), &q->key_size, 4);
		memcpy(b + 4 + offsetof(struct hv_kvp_exchg_msg_value, key), q->key, q->key_size);
		break;
	case HV_KVP_OP_ENUMERATE:
		b = tx_body(p, len);
		put_hdr(b, q->op, q->pool);
		memcpy(b + 4 + offsetof(struct hv_kvp_msg_enumerate, index), &p->enum_index, 4);
		break;
	default: /* GET_IP_INFO */
		len = sizeof(struct hv_kvp_ip_msg);
		b = tx_body(p, len);
		b[0] = q->op;
		b[1] = q->pool;
		memcpy(b + 2 + offsetof(struct hv_kvp_ipaddr_value, adapter_id), q->key, q->key_size);
		b[2 + offsetof(struct hv_kvp_ipaddr_value, addr_family)] = q->family;
		break;
	}
	if (kvp_send(dev, len) != 0)
		return -1;
	p->cur = CUR_QUERY;
	return 0;
}

/* Put the next transaction on the wire if none is: host table first, then queued queries. */
static void pump(struct ic_dev *dev)
{
	struct kvp_priv *p = priv(dev);
	if (p->cur != CUR_NONE || ic_state(dev) != IC_READY || dev->pending_tid != 0)
		return;
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++)
		if (p->host[i].used && (p->host[i].deleting || p->host[i].dirty)) {
			send_push(dev, i); /* a full ring: tried again on the next tick/answer */
			return;
		}
	if (p->qlen == 0)
		return;
	p->curq = p->q[p->qhead];
	p->enum_index = 0;
	p->nstaging = 0;
	if (send_query(dev) == 0) {
		p->qhead = (p->qhead + 1) % IC_KVP_QUEUE;
		p->qlen--;
	}
}

/* ---- completion ---- */
static void report(struct ic_dev *dev, struct ic_kvp_result *r)
{
	struct kvp_priv *p = priv(dev);
	if (p->done)
		p->done(p->ctx, dev, r);
}

static void finish_push(struct ic_dev *dev, enum ic_kvp_status st, uint32_t hresult)
{
	struct kvp_priv *p = priv(dev);
	struct host_entry *e = &p->host[p->cur_entry];
	struct ic_kvp_result r = {.op = p->cur_op, .pool = HV_KVP_POOL_EXTERNAL, .status = st, .hresult = hresult,
				  .key = e->name};
	p->cur = CUR_NONE;
	if (e->gen == p->cur_gen) {
		/* done, or given up until the guest reconnects: a stuck or failing guest must not
		 * make us resend forever */
		if (p->cur_op == HV_KVP_OP_DELETE && st != IC_KVP_CLOSED)
			e->used = false;
		else if (st != IC_KVP_CLOSED)
			e->dirty = false;
	}
	report(dev, &r);
	if (!e->used)
		memset(e, 0, sizeof(*e));
}

static void swap_cache(struct kvp_priv *p, uint8_t pool)
{
	struct pool_cache *c = &p->cache[pool];
	free(c->items);
	c->items = p->staging;
	c->n = p->nstaging;
	p->staging = NULL;
	p->nstaging = p->staging_cap = 0;
}

static void finish_query(struct ic_dev *dev, enum ic_kvp_status st, uint32_t hresult, const struct ic_kvp_pair *pair,
			 const struct ic_kvp_ip_info *ip)
{
	struct kvp_priv *p = priv(dev);
	struct ic_kvp_result r = {.id = p->curq.id, .op = p->curq.op, .pool = p->curq.pool, .status = st,
				  .hresult = hresult, .index = p->enum_index, .pair = pair, .ip = ip};
	p->cur = CUR_NONE;
	if (p->curq.op == HV_KVP_OP_ENUMERATE) {
		if (st == IC_KVP_END)
			swap_cache(p, p->curq.pool);
		p->nstaging = 0;
	}
	report(dev, &r);
}

/* A value as the guest wrote it (v: the wire struct's bytes, all of them present). */
static bool parse_pair(const uint8_t *v, struct ic_kvp_pair *out)
{
	uint32_t type, ksize, vsize;
	memcpy(&type, v + offsetof(struct hv_kvp_exchg_msg_value, value_type), 4);
	memcpy(&ksize, v + offsetof(struct hv_kvp_exchg_msg_value, key_size), 4);
	memcpy(&vsize, v + offsetof(struct hv_kvp_exchg_msg_value, value_size), 4);
	if (ksize > HV_KVP_MAX_KEY_SIZE || vsize > HV_KVP_MAX_VALUE_SIZE)
		return false;
	const uint8_t *val = v + offsetof(struct hv_kvp_exchg_msg_value, value);
	ic_kvp_utf16le_to_utf8(v + offsetof(struct hv_kvp_exchg_msg_value, key), ksize, out->key);
	out->value_type = type;
	switch (type) {
	case HV_KVP_REG_SZ:
	case 2: /* REG_EXPAND_SZ */
		ic_kvp_utf16le_to_utf8(val, vsize, out->value);
		return true;
	case HV_KVP_REG_U32: {
		uint32_t x;
		if (vsize != 4)
			return false;
		memcpy(&x, val, 4);
		snprintf(out->value, sizeof(out->value), "%u", x);
		return true;
	}
	case HV_KVP_REG_U64: {
		uint64_t x;
		if (vsize != 8)
			return false;
		memcpy(&x, val, 8);
		snprintf(out->value, sizeof(out->value), "%llu", (unsigned long long)x);
		return true;
	}
	default:
		return false;
	}
}

static void parse_ip(const uint8_t *b, struct ic_kvp_ip_info *ip)
{
	const uint8_t *v = b + 2;
	ic_kvp_utf16le_to_utf8(v + offsetof(struct hv_kvp_ipaddr_value, adapter_id), HV_KVP_MAX_ADAPTER_ID_SIZE * 2,
			       ip->adapter_id);
	ip->addr_family = v[offsetof(struct hv_kvp_ipaddr_value, addr_family)];
	ip->dhcp_enabled = v[offsetof(struct hv_kvp_ipaddr_value, dhcp_enabled)] != 0;
	ic_kvp_utf16le_to_utf8(v + offsetof(struct hv_kvp_ipaddr_value, ip_addr), HV_KVP_MAX_IP_ADDR_SIZE * 2, ip->ip_addr);
	ic_kvp_utf16le_to_utf8(v + offsetof(struct hv_kvp_ipaddr_value, sub_net), HV_KVP_MAX_IP_ADDR_SIZE * 2, ip->sub_net);
	ic_kvp_utf16le_to_utf8(v + offsetof(struct hv_kvp_ipaddr_value, gate_way), HV_KVP_MAX_GATEWAY_SIZE * 2,
			       ip->gate_way);
	ic_kvp_utf16le_to_utf8(v + offsetof(struct hv_kvp_ipaddr_value, dns_addr), HV_KVP_MAX_IP_ADDR_SIZE * 2,
			       ip->dns_addr);
}

static bool stage(struct kvp_priv *p, const struct ic_kvp_pair *pair)
{
	if (p->nstaging == p->staging_cap) {
		unsigned cap = p->staging_cap ? p->staging_cap * 2 : 16;
		struct ic_kvp_pair *n = realloc(p->staging, cap * sizeof(*n));
		if (!n)
			return false;
		p->staging = n;
		p->staging_cap = cap;
	}
	p->staging[p->nstaging++] = *pair;
	return true;
}

static void query_response(struct ic_dev *dev, uint32_t status, const uint8_t *body, uint32_t len)
{
	struct kvp_priv *p = priv(dev);
	uint8_t op = p->curq.op;
	if (status != IC_HV_S_OK) {
		if (op == HV_KVP_OP_ENUMERATE && status == IC_HV_S_CONT)
			finish_query(dev, IC_KVP_END, status, NULL, NULL);
		else
			finish_query(dev, IC_KVP_GUEST_ERROR, status, NULL, NULL);
		return;
	}
	switch (op) {
	case HV_KVP_OP_GET:
		if (len < 4 + sizeof(struct hv_kvp_exchg_msg_value) || !parse_pair(body + 4, &p->scratch))
			finish_query(dev, IC_KVP_MALFORMED, status, NULL, NULL);
		else
			finish_query(dev, IC_KVP_OK, status, &p->scratch, NULL);
		return;
	case HV_KVP_OP_ENUMERATE: {
		if (len < HV_KVP_MSG_SIZE || !parse_pair(body + 8, &p->scratch)) {
			finish_query(dev, IC_KVP_MALFORMED, status, NULL, NULL);
			return;
		}
		struct ic_kvp_result r = {.id = p->curq.id, .op = op, .pool = p->curq.pool, .status = IC_KVP_OK,
					  .index = p->enum_index, .pair = &p->scratch};
		report(dev, &r);
		p->cur = CUR_NONE;
		if (!stage(p, &p->scratch) || p->nstaging >= ENUM_MAX_ITEMS) {
			/* a guest that never says "no more": stop at the cache size */
			finish_query(dev, IC_KVP_END, IC_HV_S_CONT, NULL, NULL);
			return;
		}
		p->enum_index++;
		if (send_query(dev) != 0)
			finish_query(dev, IC_KVP_CLOSED, 0, NULL, NULL); /* cannot go on: report the end */
		return;
	}
	default: /* GET_IP_INFO */
		if (len < sizeof(struct hv_kvp_ip_msg)) {
			finish_query(dev, IC_KVP_MALFORMED, status, NULL, NULL);
			return;
		}
		parse_ip(body, &p->ip);
		finish_query(dev, IC_KVP_OK, status, NULL, &p->ip);
		return;
	}
}

static void kvp_response(struct ic_dev *dev, const struct icmsg_hdr *hdr, const uint8_t *body, uint32_t len)
{
	struct kvp_priv *p = priv(dev);
	uint32_t status = hdr->status;
	if (p->cur == CUR_PUSH)
		finish_push(dev, status == IC_HV_S_OK ? IC_KVP_OK : IC_KVP_GUEST_ERROR, status);
	else if (p->cur == CUR_QUERY)
		query_response(dev, status, body, len);
	pump(dev);
}

/* Negotiated (again): this guest connection has seen none of the host table. */
static void kvp_ready(struct ic_dev *dev)
{
	struct kvp_priv *p = priv(dev);
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++)
		if (p->host[i].used)
			p->host[i].dirty = true;
	pump(dev);
}

static void abort_current(struct ic_dev *dev, enum ic_kvp_status st)
{
	struct kvp_priv *p = priv(dev);
	if (p->cur == CUR_PUSH)
		finish_push(dev, st, 0);
	else if (p->cur == CUR_QUERY)
		finish_query(dev, st, 0, NULL, NULL);
}

static void kvp_close(struct vmbus_chan *chan, void *ctx)
{
	struct ic_dev *dev = ctx;
	priv(dev)->base_close(chan, ctx);
	abort_current(dev, IC_KVP_CLOSED);
}

static int kvp_save(struct ic_dev *dev, struct state_writer *w);
static int kvp_restore(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c);

static const struct ic_service kvp_svc = {
	.name = "kvp",
	.class_id = IC_KVP_CLASS,
	.instance_id = VMBUS_GUID_INIT(0x9d3b0a4e, 0x62c1, 0x4f0b, 0xa7, 0x5e, 0x13, 0x9c, 0x2e, 0x44, 0x8b, 0x71),
	.msgtype = ICMSGTYPE_KVPEXCHANGE,
	.versions = kvp_versions,
	.nversions = 3,
	.on_response = kvp_response,
	.on_ready = kvp_ready,
	.save = kvp_save,
	.restore = kvp_restore,
};

struct ic_dev *ic_kvp_add(struct vmbus_server *srv, ic_kvp_done_fn done, void *ctx)
{
	struct kvp_priv *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	struct ic_dev *dev = ic_add(srv, &kvp_svc);
	if (!dev) {
		free(p);
		return NULL;
	}
	p->done = done;
	p->ctx = ctx;
	p->next_id = 1;
	p->timeout_ms = IC_KVP_TIMEOUT_MS;
	p->base_close = dev->ops.close; /* the server keeps a pointer to dev->ops */
	dev->ops.close = kvp_close;
	dev->clock_ctx = p;
	return dev;
}

static void priv_free(struct kvp_priv *p)
{
	for (unsigned i = 0; i < HV_KVP_POOL_COUNT; i++)
		free(p->cache[i].items);
	free(p->staging);
	free(p);
}

void ic_kvp_free(struct ic_dev *dev)
{
	if (!dev)
		return;
	priv_free(priv(dev));
	ic_free(dev);
}

void ic_kvp_set_timeout(struct ic_dev *dev, uint32_t timeout_ms)
{
	priv(dev)->timeout_ms = timeout_ms;
}

/* ---- host table ---- */
static struct host_entry *find(struct kvp_priv *p, const char *key, bool deleting_too)
{
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++)
		if (p->host[i].used && (deleting_too || !p->host[i].deleting) && strcmp(p->host[i].name, key) == 0)
			return &p->host[i];
	return NULL;
}

static int set_entry(struct ic_dev *dev, const char *key, uint32_t type, const void *val, uint32_t vsize, uint64_t now)
{
	struct kvp_priv *p = priv(dev);
	ic_advance(dev, now);
	uint8_t k[HV_KVP_MAX_KEY_SIZE];
	if (!key || strlen(key) >= IC_KVP_KEY_MAX)
		return -1;
	int ks = ic_kvp_utf8_to_utf16le(key, k, sizeof(k));
	if (ks <= 2)
		return -1; /* invalid, too long or empty */
	/* a key being deleted is revived in place, so its DELETE cannot overtake the new SET */
	struct host_entry *e = find(p, key, true);
	if (!e) {
		for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES && !e; i++)
			if (!p->host[i].used)
				e = &p->host[i];
		if (!e)
			return -1;
		memset(e, 0, sizeof(*e));
		e->used = true;
		strcpy(e->name, key);
		memcpy(e->key, k, (size_t)ks);
		e->key_size = (uint32_t)ks;
	}
	memset(e->value, 0, sizeof(e->value));
	memcpy(e->value, val, vsize);
	e->value_size = vsize;
	e->value_type = type;
	e->deleting = false;
	e->dirty = true;
	e->gen++;
	pump(dev);
	return 0;
}

int ic_kvp_set(struct ic_dev *dev, const char *key, const char *value, uint64_t now_ms)
{
	uint8_t v[HV_KVP_MAX_VALUE_SIZE];
	int vs = value ? ic_kvp_utf8_to_utf16le(value, v, sizeof(v)) : -1;
	if (vs < 0)
		return -1;
	return set_entry(dev, key, HV_KVP_REG_SZ, v, (uint32_t)vs, now_ms);
}

int ic_kvp_set_u32(struct ic_dev *dev, const char *key, uint32_t value, uint64_t now_ms)
{
	return set_entry(dev, key, HV_KVP_REG_U32, &value, 4, now_ms);
}

int ic_kvp_set_u64(struct ic_dev *dev, const char *key, uint64_t value, uint64_t now_ms)
{
	return set_entry(dev, key, HV_KVP_REG_U64, &value, 8, now_ms);
}

int ic_kvp_delete(struct ic_dev *dev, const char *key, uint64_t now_ms)
{
	struct kvp_priv *p = priv(dev);
	ic_advance(dev, now_ms);
	struct host_entry *e = key ? find(p, key, false) : NULL;
	if (!e)
		return -1;
	e->deleting = true;
	e->gen++;
	pump(dev);
	return 0;
}

unsigned ic_kvp_host_count(const struct ic_dev *dev)
{
	const struct kvp_priv *p = priv(dev);
	unsigned n = 0;
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++)
		n += p->host[i].used && !p->host[i].deleting;
	return n;
}

bool ic_kvp_host_synced(const struct ic_dev *dev)
{
	const struct kvp_priv *p = priv(dev);
	if (ic_state(dev) != IC_READY || p->cur == CUR_PUSH)
		return false;
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++)
		if (p->host[i].used && (p->host[i].dirty || p->host[i].deleting))
			return false;
	return true;
}

/* ---- queries ---- */
static uint32_t enqueue(struct ic_dev *dev, const struct query *q, uint64_t now_ms)
{
	struct kvp_priv *p = priv(dev);
	ic_advance(dev, now_ms);
	if (p->qlen == IC_KVP_QUEUE || q->pool >= HV_KVP_POOL_COUNT)
		return 0;
	struct query *slot = &p->q[(p->qhead + p->qlen) % IC_KVP_QUEUE];
	*slot = *q;
	slot->id = p->next_id++;
	if (p->next_id == 0)
		p->next_id = 1;
	p->qlen++;
	uint32_t id = slot->id;
	pump(dev);
	return id;
}

uint32_t ic_kvp_get(struct ic_dev *dev, uint8_t pool, const char *key, uint64_t now_ms)
{
	struct query q = {.op = HV_KVP_OP_GET, .pool = pool};
	int ks = key ? ic_kvp_utf8_to_utf16le(key, q.key, sizeof(q.key)) : -1;
	if (ks <= 2)
		return 0;
	q.key_size = (uint32_t)ks;
	return enqueue(dev, &q, now_ms);
}

uint32_t ic_kvp_enumerate(struct ic_dev *dev, uint8_t pool, uint64_t now_ms)
{
	struct query q = {.op = HV_KVP_OP_ENUMERATE, .pool = pool};
	return enqueue(dev, &q, now_ms);
}

uint32_t ic_kvp_get_ip_info(struct ic_dev *dev, const char *adapter_mac, uint8_t addr_family, uint64_t now_ms)
{
	struct query q = {.op = HV_KVP_OP_GET_IP_INFO, .pool = HV_KVP_POOL_GUEST, .family = addr_family};
	int ks = adapter_mac ? ic_kvp_utf8_to_utf16le(adapter_mac, q.key, HV_KVP_MAX_ADAPTER_ID_SIZE * 2) : -1;
	if (ks <= 2)
		return 0;
	q.key_size = (uint32_t)ks;
	return enqueue(dev, &q, now_ms);
}

void ic_kvp_tick(struct ic_dev *dev, uint64_t now_ms)
{
	struct kvp_priv *p = priv(dev);
	ic_advance(dev, now_ms);
	if (p->cur != CUR_NONE) {
		switch (ic_wait_check(dev, p->tid)) {
		case IC_WAIT_CLOSED: abort_current(dev, IC_KVP_CLOSED); break;
		case IC_WAIT_LOST: abort_current(dev, IC_KVP_MALFORMED); break;
		case IC_WAIT_EXPIRED: abort_current(dev, IC_KVP_TIMEOUT); break;
		case IC_WAIT_PENDING: break;
		}
	}
	pump(dev);
}

/* ---- polled results ---- */
unsigned ic_kvp_pool_count(const struct ic_dev *dev, uint8_t pool)
{
	return pool < HV_KVP_POOL_COUNT ? priv(dev)->cache[pool].n : 0;
}

const struct ic_kvp_pair *ic_kvp_pool_item(const struct ic_dev *dev, uint8_t pool, unsigned i)
{
	if (pool >= HV_KVP_POOL_COUNT || i >= priv(dev)->cache[pool].n)
		return NULL;
	return &priv(dev)->cache[pool].items[i];
}

const char *ic_kvp_pool_lookup(const struct ic_dev *dev, uint8_t pool, const char *key)
{
	for (unsigned i = 0; i < ic_kvp_pool_count(dev, pool); i++)
		if (strcmp(priv(dev)->cache[pool].items[i].key, key) == 0)
			return priv(dev)->cache[pool].items[i].value;
	return NULL;
}

bool ic_kvp_busy(const struct ic_dev *dev)
{
	return priv(dev)->cur != CUR_NONE;
}

/* ---- saved state ----
 * After the framework's fields (ic.c), version 1:
 *   u32 next query id
 *   u8 host entries (<= IC_KVP_HOST_ENTRIES), each: u8 slot, u8 flags (1 not yet acknowledged by
 *     this guest, 2 being deleted), u32 generation, u32 value type, u16 key size + key (UTF-16LE
 *     as sent), u16 value size + value
 *   u8 queued queries (<= IC_KVP_QUEUE), oldest first, each a query: u32 id, u8 operation,
 *     u8 pool, u8 address family, u16 key size + key (UTF-16LE; GET_IP_INFO: the adapter id)
 *   u8 transaction on the wire: 0 none; 1 a host entry: u8 slot, u8 operation, u32 generation;
 *     2 a query; then u64 the transaction id it went out with
 *   u16 items the ENUMERATE on the wire collected so far (so its next index), each an item
 *   HV_KVP_POOL_COUNT times: u16 items cached from the pool's last enumeration
 *     (<= IC_KVP_POOL_CACHE), each an item
 *   an item: u32 value type, u16 key length + key, u16 value length + value (UTF-8, no NUL)
 * In flight: the request on the wire is answered after the restore with the saved transaction id
 * (hv_kvp_daemon may be working on it right now) and completes as it would have, an enumeration
 * going on from the items collected so far. The time left to it is kept, so a daemon that never
 * answers still times out. Host entries keep whether this guest has them (its .kvp_pool_0 is in
 * the restored guest), so nothing is pushed again that was acknowledged; the rest follow, then the
 * queued queries. */
static void put_blob(struct state_writer *w, const void *b, uint32_t len)
{
	state_put_u16(w, (uint16_t)len);
	state_put_bytes(w, b, len);
}

static void put_query(struct state_writer *w, const struct query *q)
{
	state_put_u32(w, q->id);
	state_put_u8(w, q->op);
	state_put_u8(w, q->pool);
	state_put_u8(w, q->family);
	put_blob(w, q->key, q->key_size);
}

static void put_items(struct state_writer *w, const struct ic_kvp_pair *items, unsigned n)
{
	state_put_u16(w, (uint16_t)n);
	for (unsigned i = 0; i < n; i++) {
		state_put_u32(w, items[i].value_type);
		put_blob(w, items[i].key, (uint32_t)strlen(items[i].key));
		put_blob(w, items[i].value, (uint32_t)strlen(items[i].value));
	}
}

static int kvp_save(struct ic_dev *dev, struct state_writer *w)
{
	struct kvp_priv *p = priv(dev);
	state_put_u32(w, p->next_id);
	uint8_t used = 0;
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++)
		used += p->host[i].used;
	state_put_u8(w, used);
	for (unsigned i = 0; i < IC_KVP_HOST_ENTRIES; i++) {
		const struct host_entry *e = &p->host[i];
		if (!e->used)
			continue;
		state_put_u8(w, (uint8_t)i);
		state_put_u8(w, (uint8_t)(e->dirty | e->deleting << 1));
		state_put_u32(w, e->gen);
		state_put_u32(w, e->value_type);
		put_blob(w, e->key, e->key_size);
		put_blob(w, e->value, e->value_size);
	}
	state_put_u8(w, (uint8_t)p->qlen);
	for (unsigned i = 0; i < p->qlen; i++)
		put_query(w, &p->q[(p->qhead + i) % IC_KVP_QUEUE]);
	state_put_u8(w, (uint8_t)p->cur);
	if (p->cur == CUR_PUSH) {
		state_put_u8(w, (uint8_t)p->cur_entry);
		state_put_u8(w, p->cur_op);
		state_put_u32(w, p->cur_gen);
	} else if (p->cur == CUR_QUERY) {
		put_query(w, &p->curq);
	}
	state_put_u64(w, p->tid);
	put_items(w, p->staging, p->nstaging);
	for (unsigned i = 0; i < HV_KVP_POOL_COUNT; i++)
		put_items(w, p->cache[i].items, p->cache[i].n);
	return 0;
}

static int truncated(void)
{
	return state_fail(-EBADMSG, "ic kvp: state truncated");
}

/* A length-prefixed string of at most cap bytes into out; *len its length. */
static int get_blob(struct state_cursor *c, const char *what, void *out, uint32_t cap, uint32_t *len)
{
	uint32_t n = state_get_u16(c);
	if (!state_cursor_ok(c))
		return truncated();
	if (n > cap)
		return state_fail(-EINVAL, "ic kvp: %s of %u bytes saved, at most %u", what, n, cap);
	state_get_bytes(c, out, n);
	*len = n;
	return state_cursor_ok(c) ? 0 : truncated();
}

/* Whether size bytes of UTF-16LE are exactly what ic_kvp_utf8_to_utf16le() makes of a string in
 * cap bytes (terminated, no NUL inside, no lone surrogate): what the host API puts on the wire.
 * out (size / 2 * 3 + 1 bytes) gets the string. */
static bool wire_string(const uint8_t *s, uint32_t size, uint32_t cap, char *out)
{
	uint8_t again[HV_KVP_MAX_VALUE_SIZE];
	if (size > cap || cap > sizeof(again))
		return false;
	ic_kvp_utf16le_to_utf8(s, size, out);
	return ic_kvp_utf8_to_utf16le(out, again, cap) == (int)size && memcmp(again, s, size) == 0;
}

static int get_query(struct state_cursor *c, struct query *q)
{
	memset(q, 0, sizeof(*q));
	q->id = state_get_u32(c);
	q->op = state_get_u8(c);
	q->pool = state_get_u8(c);
	q->family = state_get_u8(c);
	int rc = get_blob(c, "query key", q->key, sizeof(q->key), &q->key_size);
	if (rc)
		return rc;
	char name[IC_KVP_KEY_MAX];
	bool ok = false;
	/* as ic_kvp_get / ic_kvp_enumerate / ic_kvp_get_ip_info make them */
	switch (q->op) {
	case HV_KVP_OP_GET:
		ok = q->pool < HV_KVP_POOL_COUNT && !q->family && q->key_size > 2 &&
		     wire_string(q->key, q->key_size, HV_KVP_MAX_KEY_SIZE, name);
		break;
	case HV_KVP_OP_ENUMERATE:
		ok = q->pool < HV_KVP_POOL_COUNT && !q->family && !q->key_size;
		break;
	case HV_KVP_OP_GET_IP_INFO:
		ok = q->pool == HV_KVP_POOL_GUEST && q->key_size > 2 &&
		     wire_string(q->key, q->key_size, HV_KVP_MAX_ADAPTER_ID_SIZE * 2, name);
		break;
	}
	if (!q->id || !ok)
		return state_fail(-EINVAL, "ic kvp: query %u (operation %u, pool %u, key of %u bytes) is none the host makes",
				  q->id, q->op, q->pool, q->key_size);
	return 0;
}

/* Entries come in ascending slot order, as saved, so that a state has one payload: *min_slot is
 * the lowest this one may take, moved past it. */
static int get_entry(struct state_cursor *c, struct kvp_priv *n, unsigned *min_slot)
{
	uint8_t slot = state_get_u8(c), flags = state_get_u8(c);
	uint32_t gen = state_get_u32(c), type = state_get_u32(c);
	if (!state_cursor_ok(c))
		return truncated();
	if (slot >= IC_KVP_HOST_ENTRIES || slot < *min_slot)
		return state_fail(-EINVAL, "ic kvp: host entry slot %u out of range or out of order", slot);
	if (flags > 3)
		return state_fail(-EINVAL, "ic kvp: host entry %u: flags %#x", slot, flags);
	struct host_entry *e = &n->host[slot];
	int rc = get_blob(c, "host key", e->key, sizeof(e->key), &e->key_size);
	if (!rc)
		rc = get_blob(c, "host value", e->value, sizeof(e->value), &e->value_size);
	if (rc)
		return rc;
	char value[IC_KVP_VALUE_MAX];
	if (e->key_size <= 2 || !wire_string(e->key, e->key_size, HV_KVP_MAX_KEY_SIZE, e->name))
		return state_fail(-EINVAL, "ic kvp: host entry %u: the key is none ic_kvp_set() takes", slot);
	bool value_ok = type == HV_KVP_REG_SZ	 ? wire_string(e->value, e->value_size, HV_KVP_MAX_VALUE_SIZE, value)
			: type == HV_KVP_REG_U32 ? e->value_size == 4
			: type == HV_KVP_REG_U64 ? e->value_size == 8
						 : false;
	if (!value_ok)
		return state_fail(-EINVAL, "ic kvp: host entry %u: a value of type %u and %u bytes is none ic_kvp_set() takes",
				  slot, type, e->value_size);
	if (find(n, e->name, true))
		return state_fail(-EINVAL, "ic kvp: host entry %u: the key is saved twice", slot);
	*min_slot = slot + 1u;
	e->used = true;
	e->dirty = flags & 1;
	e->deleting = flags & 2;
	e->gen = gen;
	e->value_type = type;
	return 0;
}

/* n items into a new array (*out; NULL for none) */
static int get_items(struct state_cursor *c, unsigned n, struct ic_kvp_pair **out)
{
	*out = NULL;
	if (!n)
		return 0;
	/* an item takes at least 8 bytes: a count the payload cannot hold allocates nothing */
	if (state_cursor_left(c) / 8 < n)
		return truncated();
	struct ic_kvp_pair *items = malloc(n * sizeof(*items));
	if (!items)
		return state_fail(-ENOMEM, "ic kvp: no memory for %u items", n);
	uint8_t wire[HV_KVP_MAX_VALUE_SIZE + 2];
	for (unsigned i = 0; i < n; i++) {
		struct ic_kvp_pair *it = &items[i];
		uint32_t klen, vlen;
		it->value_type = state_get_u32(c);
		int rc = get_blob(c, "item key", it->key, IC_KVP_KEY_MAX - 1, &klen);
		if (!rc)
			rc = get_blob(c, "item value", it->value, IC_KVP_VALUE_MAX - 1, &vlen);
		if (!rc) {
			it->key[klen] = it->value[vlen] = 0;
			/* what parse_pair() makes of a guest's answer: a known type, UTF-8 converted from
			 * UTF-16LE of at most the wire's sizes (+ a terminator the guest may leave out) */
			bool type_ok = it->value_type == HV_KVP_REG_SZ || it->value_type == 2 ||
				       it->value_type == HV_KVP_REG_U32 || it->value_type == HV_KVP_REG_U64;
			if (!type_ok || strlen(it->key) != klen || strlen(it->value) != vlen ||
			    ic_kvp_utf8_to_utf16le(it->key, wire, HV_KVP_MAX_KEY_SIZE + 2) < 0 ||
			    ic_kvp_utf8_to_utf16le(it->value, wire, sizeof(wire)) < 0)
				rc = state_fail(-EINVAL, "ic kvp: item %u (type %u) is none a guest's answer makes", i,
						it->value_type);
		}
		if (rc) {
			free(items);
			return rc;
		}
	}
	*out = items;
	return 0;
}

/* Everything after the framework's fields into n, a fresh kvp_priv. */
static int read_state(struct kvp_priv *n, const struct ic_saved *s, struct state_cursor *c)
{
	n->next_id = state_get_u32(c);
	uint8_t nhost = state_get_u8(c);
	if (!state_cursor_ok(c))
		return truncated();
	if (!n->next_id)
		return state_fail(-EINVAL, "ic kvp: next query id 0");
	if (nhost > IC_KVP_HOST_ENTRIES)
		return state_fail(-EINVAL, "ic kvp: %u host entries saved, at most %u", nhost, IC_KVP_HOST_ENTRIES);
	for (unsigned i = 0, min_slot = 0; i < nhost; i++) {
		int rc = get_entry(c, n, &min_slot);
		if (rc)
			return rc;
	}
	uint8_t qlen = state_get_u8(c);
	if (qlen > IC_KVP_QUEUE)
		return state_fail(-EINVAL, "ic kvp: %u queued queries saved, at most %u", qlen, IC_KVP_QUEUE);
	for (n->qlen = 0; n->qlen < qlen; n->qlen++) {
		int rc = get_query(c, &n->q[n->qlen]);
		if (rc)
			return rc;
	}
	uint8_t cur = state_get_u8(c);
	if (!state_cursor_ok(c))
		return truncated();
	if (cur == CUR_PUSH) {
		n->cur_entry = state_get_u8(c);
		n->cur_op = state_get_u8(c);
		n->cur_gen = state_get_u32(c);
		if (n->cur_entry >= IC_KVP_HOST_ENTRIES || !n->host[n->cur_entry].used ||
		    (n->cur_op != HV_KVP_OP_SET && n->cur_op != HV_KVP_OP_DELETE))
			return state_fail(-EINVAL, "ic kvp: push of host entry %u (operation %u) on the wire",
					  n->cur_entry, n->cur_op);
	} else if (cur == CUR_QUERY) {
		int rc = get_query(c, &n->curq);
		if (rc)
			return rc;
	} else if (cur != CUR_NONE) {
		return state_fail(-EINVAL, "ic kvp: transaction kind %u", cur);
	}
	n->cur = cur;
	n->tid = state_get_u64(c);
	unsigned nstaging = state_get_u16(c);
	if (!state_cursor_ok(c))
		return truncated();
	if (n->tid >= s->next_tid || (cur != CUR_NONE && (!n->tid || s->state != IC_READY)))
		return state_fail(-EINVAL, "ic kvp: transaction %llu on the wire (next %llu, %s)",
				  (unsigned long long)n->tid, (unsigned long long)s->next_tid,
				  s->state == IC_READY ? "ready" : "not ready");
	bool enumerating = cur == CUR_QUERY && n->curq.op == HV_KVP_OP_ENUMERATE;
	if (nstaging >= (enumerating ? ENUM_MAX_ITEMS : 1))
		return state_fail(-EINVAL, "ic kvp: %u items of an enumeration saved, at most %u", nstaging,
				  enumerating ? ENUM_MAX_ITEMS - 1 : 0);
	int rc = get_items(c, nstaging, &n->staging);
	if (rc)
		return rc;
	n->nstaging = n->staging_cap = n->enum_index = nstaging;
	for (unsigned i = 0; i < HV_KVP_POOL_COUNT; i++) {
		unsigned items = state_get_u16(c);
		if (!state_cursor_ok(c))
			return truncated();
		if (items > IC_KVP_POOL_CACHE)
			return state_fail(-EINVAL, "ic kvp: pool %u: %u items saved, at most %u", i, items, IC_KVP_POOL_CACHE);
		rc = get_items(c, items, &n->cache[i].items);
		if (rc)
			return rc;
		n->cache[i].n = items;
	}
	return 0;
}

static int kvp_restore(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c)
{
	struct kvp_priv *old = priv(dev), *n = calloc(1, sizeof(*n));
	if (!n)
		return state_fail(-ENOMEM, "ic kvp: no memory");
	/* the host's settings stay */
	n->done = old->done;
	n->ctx = old->ctx;
	n->base_close = old->base_close;
	n->timeout_ms = old->timeout_ms;
	int rc = read_state(n, s, c);
	if (!rc)
		rc = ic_restore_commit(dev, s, c);
	if (rc) {
		priv_free(n);
		return rc;
	}
	priv_free(old);
	dev->clock_ctx = n;
	return 0;
}
