/* See ic_state_harness.h. */
#include "ic_state_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "state/savedstate.h"

#define CHECK(x)                                                                        \
	do {                                                                            \
		if (!(x)) {                                                             \
			fprintf(stderr, "%s:%d: harness: %s failed\n", __FILE__, __LINE__, #x); \
			abort();                                                        \
		}                                                                       \
	} while (0)

/* ---- the guest ---- */
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

/* ASCII <-> UTF-16LE, independent of the code under test */
static uint32_t to_wire(const char *s, uint8_t *out)
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

static void from_wire(const uint8_t *in, uint32_t size, char *out, size_t cap)
{
	size_t o = 0;
	for (uint32_t i = 0; i + 1 < size && o + 1 < cap && (in[i] || in[i + 1]); i += 2)
		out[o++] = (char)in[i];
	out[o] = 0;
}

static char (*pool0_find(struct guest *u, const char *key))[64]
{
	for (unsigned i = 0; i < u->n0; i++)
		if (!strcmp(u->pool0[i][0], key))
			return u->pool0[i];
	return NULL;
}

/* hv_kvp_daemon: the AUTO pool has 4 items K0..K3 = V0..V3 */
static uint32_t kvp_op(struct guest *u, uint8_t *body)
{
	uint8_t op = body[0], pool = body[1];
	char key[64];
	uint8_t *v = body + 4;
	switch (op) {
	case HV_KVP_OP_SET: {
		from_wire(v + 12, rd32(v + 4), key, sizeof(key));
		char(*e)[64] = pool0_find(u, key);
		if (!e) {
			if (u->n0 == G_POOL0)
				return IC_HV_E_FAIL;
			e = u->pool0[u->n0++];
			snprintf(e[0], 64, "%s", key);
		}
		if (rd32(v) == HV_KVP_REG_SZ)
			from_wire(v + 524, rd32(v + 8), e[1], 64);
		else
			snprintf(e[1], 64, "%u", rd32(v + 524));
		return IC_HV_S_OK;
	}
	case HV_KVP_OP_DELETE: {
		from_wire(body + 8, rd32(body + 4), key, sizeof(key));
		char(*e)[64] = pool0_find(u, key);
		if (!e)
			return IC_HV_S_CONT;
		memcpy(e, u->pool0[--u->n0], sizeof(u->pool0[0]));
		return IC_HV_S_OK;
	}
	case HV_KVP_OP_GET: {
		from_wire(v + 12, rd32(v + 4), key, sizeof(key));
		char(*e)[64] = pool == HV_KVP_POOL_EXTERNAL ? pool0_find(u, key) : NULL;
		if (!e)
			return IC_HV_S_CONT;
		wr32(v, HV_KVP_REG_SZ);
		wr32(v + 8, to_wire(e[1], v + 524));
		return IC_HV_S_OK;
	}
	case HV_KVP_OP_ENUMERATE: {
		uint32_t idx = rd32(body + 4);
		if (pool != HV_KVP_POOL_AUTO || idx >= 4)
			return IC_HV_S_CONT;
		char k[8], val[8];
		snprintf(k, sizeof(k), "K%u", idx);
		snprintf(val, sizeof(val), "V%u", idx);
		v = body + 8;
		wr32(v, HV_KVP_REG_SZ);
		wr32(v + 4, to_wire(k, v + 12));
		wr32(v + 8, to_wire(val, v + 524));
		return IC_HV_S_OK;
	}
	default:
		return IC_HV_E_FAIL;
	}
}

static void answer(struct host *h, struct guest *u, int i, uint8_t *data, uint32_t dlen, uint64_t tid)
{
	struct gsvc *s = &u->s[i];
	struct icmsg_hdr hdr;
	CHECK(dlen >= IC_HDR_SIZE);
	memcpy(&hdr, data + sizeof(struct vmbuspipe_hdr), sizeof(hdr));
	CHECK(hdr.icflags & ICMSGHDRFLAG_REQUEST);
	uint8_t *body = data + IC_HDR_SIZE;
	uint32_t blen = dlen - (uint32_t)IC_HDR_SIZE;
	hdr.status = IC_HV_S_OK;
	if (hdr.icmsgtype == ICMSGTYPE_NEGOTIATE) {
		/* the host lists its versions newest first: take the first of each */
		struct icmsg_negotiate n;
		CHECK(blen >= sizeof(n));
		memcpy(&n, body, sizeof(n));
		CHECK(n.icframe_vercnt >= 1 && n.icmsg_vercnt >= 1 && blen >= sizeof(n) + 4u * (n.icframe_vercnt + n.icmsg_vercnt));
		memmove(body + sizeof(n) + 4, body + sizeof(n) + 4u * n.icframe_vercnt, 4);
		n.icframe_vercnt = n.icmsg_vercnt = 1;
		memcpy(body, &n, sizeof(n));
		s->negotiations++;
	} else {
		s->requests++;
		switch (hdr.icmsgtype) {
		case ICMSGTYPE_HEARTBEAT: {
			struct heartbeat_msg_data m;
			CHECK(blen >= sizeof(m));
			memcpy(&m, body, sizeof(m));
			m.seq_num++;
			memcpy(body, &m, sizeof(m));
			break;
		}
		case ICMSGTYPE_SHUTDOWN:
			CHECK(blen >= sizeof(struct shutdown_msg_data));
			u->sd_flags = rd32(body + offsetof(struct shutdown_msg_data, flags));
			break;
		case ICMSGTYPE_TIMESYNC:
			CHECK(blen >= sizeof(struct ictimesync_ref_data));
			u->ts_flags = body[offsetof(struct ictimesync_ref_data, flags)];
			break;
		case ICMSGTYPE_KVPEXCHANGE:
			CHECK(blen >= HV_KVP_MSG_SIZE);
			hdr.status = kvp_op(u, body);
			break;
		case ICMSGTYPE_VSS:
			CHECK(blen >= sizeof(struct hv_vss_msg));
			if (body[0] == HV_VSS_OP_HOT_BACKUP)
				wr32(body + offsetof(struct hv_vss_msg, flags), HV_VSS_HBU_NO_AUTO_RECOVERY);
			else if (body[0] == HV_VSS_OP_FREEZE)
				u->frozen = true;
			else if (body[0] == HV_VSS_OP_THAW)
				u->frozen = false;
			else
				hdr.status = IC_HV_E_FAIL;
			break;
		default:
			hdr.status = IC_HV_E_FAIL;
		}
	}
	hdr.icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE;
	memcpy(data + sizeof(struct vmbuspipe_hdr), &hdr, sizeof(hdr));
	bool sig;
	CHECK(fg_ring_send(&s->ch.send, VM_PKT_DATA_INBAND, 0, tid, data, dlen, &sig) == 0);
	if (sig && !s->quiet)
		fg_signal(&h->g, &s->ch);
}

void guest_poll(struct host *h, struct guest *u, int i)
{
	struct gsvc *s = &u->s[i];
	static uint8_t buf[8192];
	uint32_t len;
	/* like hv_utils, nothing more is read while a request is with the daemon */
	while (!s->deaf && !s->held_len && (len = fg_ring_recv(&s->ch.recv, buf, sizeof(buf))) != 0) {
		const struct vmpacket_descriptor *d = (const void *)buf;
		uint8_t *data = buf + d->offset8 * 8u;
		uint32_t dlen = len - d->offset8 * 8u;
		struct icmsg_hdr hdr;
		CHECK(dlen >= IC_HDR_SIZE && dlen <= sizeof(s->held));
		memcpy(&hdr, data + sizeof(struct vmbuspipe_hdr), sizeof(hdr));
		if (s->hold && hdr.icmsgtype != ICMSGTYPE_NEGOTIATE && --s->hold == 0) {
			memcpy(s->held, data, dlen);
			s->held_len = dlen;
			s->held_tid = d->trans_id;
			return;
		}
		answer(h, u, i, data, dlen, d->trans_id);
	}
}

void guest_release(struct host *h, struct guest *u, int i)
{
	struct gsvc *s = &u->s[i];
	CHECK(s->held_len);
	uint32_t len = s->held_len;
	s->held_len = 0;
	answer(h, u, i, s->held, len, s->held_tid);
	guest_poll(h, u, i);
}

/* ---- the host ---- */
static void on_kvp(void *ctx, struct ic_dev *dev, const struct ic_kvp_result *r)
{
	struct host *h = ctx;
	CHECK(dev == h->ic[KVP]);
	if (h->nkvp < H_RESULTS) {
		h->kvp[h->nkvp] = *r;
		h->kvp[h->nkvp].pair = NULL;
		h->kvp[h->nkvp].key = NULL;
		h->kvp[h->nkvp].ip = NULL;
		h->nkvp++;
	}
}

static void on_vss(void *ctx, struct ic_dev *dev, enum ic_vss_state st, enum ic_vss_error err)
{
	struct host *h = ctx;
	CHECK(dev == h->ic[VSS]);
	if (h->nvss < H_RESULTS) {
		h->vss[h->nvss] = st;
		h->vss_err[h->nvss++] = err;
	}
}

static uint64_t fixed_clock(void *ctx)
{
	(void)ctx;
	return IC_WLTIMEDELTA + 1234567;
}

struct host *host_new(void)
{
	struct host *h = calloc(1, sizeof(*h));
	CHECK(h);
	fg_init(&h->g);
	h->ic[HB] = ic_heartbeat_add(h->g.srv);
	h->ic[SD] = ic_shutdown_add(h->g.srv);
	h->ic[TS] = ic_timesync_add(h->g.srv, fixed_clock, NULL, NULL);
	h->ic[KVP] = ic_kvp_add(h->g.srv, on_kvp, h);
	h->ic[VSS] = ic_vss_add(h->g.srv, on_vss, h);
	for (int i = 0; i < NIC; i++)
		CHECK(h->ic[i]);
	return h;
}

void host_free(struct host *h)
{
	fg_free(&h->g);
	ic_free(h->ic[HB]);
	ic_free(h->ic[SD]);
	ic_free(h->ic[TS]);
	ic_kvp_free(h->ic[KVP]);
	ic_vss_free(h->ic[VSS]);
	free(h);
}

/* channel i: relid i + 1, ring GPADL 10 + i over 4 + 4 pages from pfn 10 + 8 i */
#define LAYOUT(i) (uint32_t)(i) + 1, 10u + (uint32_t)(i), 10u + 8u * (uint32_t)(i), 4, 4

void host_connect(struct host *h, struct guest *u)
{
	CHECK(fg_connect(&h->g, VERSION_WIN10_V5_3) == 1);
	CHECK(fg_request_offers(&h->g) == NIC);
	for (int i = 0; i < NIC; i++) {
		CHECK(fg_open(&h->g, &u->s[i].ch, LAYOUT(i)) == 0);
		guest_poll(h, u, i);
	}
}

void guest_attach(struct guest *u, struct host *h)
{
	for (int i = 0; i < NIC; i++)
		fg_chan_init(&h->g, &u->s[i].ch, LAYOUT(i));
}

int host_save(struct host *h)
{
	static const uint8_t digest[STATE_DIGEST_SIZE];
	int fd = memfd_create("ic-state", 0);
	CHECK(fd >= 0);
	struct state_writer *w;
	CHECK(state_writer_open(&w, fd, digest) == 0);
	if (vmbus_server_save(h->g.srv, w) != 0) {
		state_writer_discard(w);
		close(fd);
		return -1;
	}
	CHECK(state_writer_finish(w) == 0);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	return fd;
}

#define RAM_BYTES ((size_t)FG_RAM_PAGES * VMBUS_PAGE_SIZE)

uint8_t *host_ram(const struct host *h)
{
	uint8_t *ram = malloc(RAM_BYTES);
	CHECK(ram);
	memcpy(ram, h->g.ram, RAM_BYTES);
	return ram;
}

struct host *host_with_ram(const uint8_t *ram)
{
	struct host *h = host_new();
	memcpy(h->g.ram, ram, RAM_BYTES);
	return h;
}

struct host *host_move(struct host *old, struct guest *u)
{
	uint8_t *snap = host_ram(old);
	host_free(old);
	struct host *h = host_with_ram(snap);
	free(snap);
	guest_attach(u, h);
	return h;
}

int host_restore(struct host *h, int fd)
{
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	struct state_reader *r;
	struct state_reader_options o = {0};
	int rc = state_reader_open(&r, fd, &o);
	if (rc)
		return rc;
	struct state_section sec;
	while ((rc = state_reader_next(r, &sec)) > 0) {
		rc = sec.type == STATE_SECTION_VMBUS ? vmbus_server_restore(h->g.srv, &sec)
						     : vmbus_server_restore_device(h->g.srv, &sec);
		if (rc)
			break;
	}
	if (rc == 0)
		rc = vmbus_server_restore_finish(h->g.srv);
	state_reader_close(r);
	return rc;
}

/* Calls fn for each section of the file at fd. */
static void each_section(int fd, void (*fn)(void *ctx, const struct state_section *sec), void *ctx)
{
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	struct state_reader *r;
	struct state_reader_options o = {0};
	CHECK(state_reader_open(&r, fd, &o) == 0);
	struct state_section sec;
	int rc;
	while ((rc = state_reader_next(r, &sec)) > 0)
		fn(ctx, &sec);
	CHECK(rc == 0);
	state_reader_close(r);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
}

struct collect {
	uint8_t *out;
	size_t cap, used;
	uint32_t relid;
};

static void collect_ic(void *ctx, const struct state_section *sec)
{
	struct collect *c = ctx;
	if (sec->type != STATE_SECTION_IC || (c->relid && sec->instance != c->relid))
		return;
	uint32_t len = (uint32_t)sec->payload.size;
	if (!c->relid) {
		CHECK(c->used + 8 <= c->cap);
		memcpy(c->out + c->used, &sec->instance, 4);
		memcpy(c->out + c->used + 4, &len, 4);
		c->used += 8;
	}
	CHECK(c->used + len <= c->cap);
	memcpy(c->out + c->used, sec->payload.data, len);
	c->used += len;
}

size_t file_ic_sections(int fd, uint8_t *out, size_t cap)
{
	struct collect c = {.out = out, .cap = cap};
	each_section(fd, collect_ic, &c);
	return c.used;
}

size_t file_ic_payload(int fd, uint32_t relid, uint8_t *out, size_t cap)
{
	struct collect c = {.out = out, .cap = cap, .relid = relid};
	each_section(fd, collect_ic, &c);
	return c.used;
}

struct rewrite {
	struct state_writer *w;
	uint32_t relid;
	uint16_t version;
	const void *payload;
	size_t len;
};

static void copy_section(void *ctx, const struct state_section *sec)
{
	struct rewrite *rw = ctx;
	bool mine = sec->type == STATE_SECTION_IC && sec->instance == rw->relid;
	uint16_t version = mine && rw->version ? rw->version : sec->version;
	CHECK(state_section_begin(rw->w, sec->type, sec->instance, version, sec->flags) == 0);
	if (mine)
		state_put_bytes(rw->w, rw->payload, rw->len);
	else
		state_put_bytes(rw->w, sec->payload.data, sec->payload.size);
	CHECK(state_section_end(rw->w) == 0);
}

int file_replace_ic(int fd, uint32_t relid, uint16_t version, const void *payload, size_t len)
{
	static const uint8_t digest[STATE_DIGEST_SIZE];
	int out = memfd_create("ic-state", 0);
	CHECK(out >= 0);
	struct rewrite rw = {.relid = relid, .version = version, .payload = payload, .len = len};
	CHECK(state_writer_open(&rw.w, out, digest) == 0);
	each_section(fd, copy_section, &rw);
	CHECK(state_writer_finish(rw.w) == 0);
	CHECK(lseek(out, 0, SEEK_SET) == 0);
	return out;
}

struct host *host_busy(struct guest *u, uint64_t now)
{
	struct host *h = host_new();
	host_connect(h, u);
	for (int i = 0; i < NIC; i++)
		CHECK(ic_state(h->ic[i]) == IC_READY);
	/* heartbeat: three answered, the fourth still unread in the guest's ring */
	for (int i = 0; i < 3; i++) {
		CHECK(ic_heartbeat_tick(h->ic[HB]) == 0);
		guest_poll(h, u, HB);
	}
	u->s[HB].deaf = true;
	CHECK(ic_heartbeat_tick(h->ic[HB]) == 0);
	/* shutdown: a request unread */
	u->s[SD].deaf = true;
	CHECK(ic_shutdown_request(h->ic[SD], false, false, "Viridian: Stop-VM") == 0);
	/* time sync: the SYNC of the negotiation and a sample, both answered */
	CHECK(ic_timesync_send(h->ic[TS], ICTIMESYNCFLAG_SAMPLE) == 0);
	guest_poll(h, u, TS);
	CHECK(ic_timesync_answers(h->ic[TS]) == 2);
	/* KVP: A acknowledged, the AUTO pool cached; a second enumeration with its third item at the
	 * daemon; B set meanwhile (to push) and a GET of A queued behind it */
	CHECK(ic_kvp_set(h->ic[KVP], "A", "alpha", now) == 0);
	guest_poll(h, u, KVP);
	CHECK(ic_kvp_enumerate(h->ic[KVP], HV_KVP_POOL_AUTO, now) != 0);
	guest_poll(h, u, KVP);
	CHECK(ic_kvp_pool_count(h->ic[KVP], HV_KVP_POOL_AUTO) == 4);
	u->s[KVP].hold = 3;
	CHECK(ic_kvp_enumerate(h->ic[KVP], HV_KVP_POOL_AUTO, now) != 0);
	guest_poll(h, u, KVP);
	CHECK(ic_kvp_set_u32(h->ic[KVP], "B", 7, now) == 0);
	CHECK(ic_kvp_get(h->ic[KVP], HV_KVP_POOL_EXTERNAL, "A", now) != 0);
	CHECK(ic_kvp_busy(h->ic[KVP]));
	/* VSS: HOT_BACKUP answered, the FREEZE at the daemon */
	u->s[VSS].hold = 2;
	CHECK(ic_vss_freeze(h->ic[VSS], now) == 0);
	guest_poll(h, u, VSS);
	CHECK(ic_vss_state(h->ic[VSS]) == IC_VSS_FREEZING);
	CHECK(u->s[VSS].requests == 1);
	h->nkvp = h->nvss = 0;
	return h;
}
