#include "fake_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/guest_guard.h"

static void *fg_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	struct fake_guest *g = opaque;
	if (gpa >= FG_RAM_BYTES || len > FG_RAM_BYTES - gpa)
		return NULL;
	return g->host + gpa;
}

/* ---- FG_GUARD=1: the RAM under vmwp's guest-write check ---- */

static void fg_grant(void *opaque, void *hva, uint64_t len, bool on)
{
	(void)opaque;
	guest_guard_grant(hva, len, on);
}

/* One guarded RAM per process, reused by every fake guest. */
static uint8_t *guarded_ram(void)
{
	static uint8_t *ram;
	static struct sigaction handler;
	if (!ram) {
		char err[160];
		if (!(ram = guest_guard_map(FG_RAM_BYTES, err, sizeof(err)))) {
			fprintf(stderr, "fake guest: %s\n", err);
			abort();
		}
		sigaction(SIGSEGV, NULL, &handler);
	}
	sigaction(SIGSEGV, &handler, NULL); /* the guard's, over cmocka's per-test one */
	memset(ram, 0, FG_RAM_BYTES);
	return ram;
}

/* Every grant returned: no page of the view takes a write (the kernel says EFAULT). */
static void check_no_grants(struct fake_guest *g)
{
	int fd = open("/dev/zero", O_RDONLY);
	for (uint32_t p = 0; p < FG_RAM_PAGES; p++) {
		if (read(fd, g->host + (size_t)p * VMBUS_PAGE_SIZE, 1) != -1 || errno != EFAULT) {
			fprintf(stderr, "fake guest: page %u is still granted for host writes\n", p);
			abort();
		}
	}
	close(fd);
}

static int fg_post_message(void *opaque, uint32_t vp, uint32_t sint, uint32_t type, const void *payload,
			   uint32_t len)
{
	struct fake_guest *g = opaque;
	if (g->refuse_posts > 0) {
		g->refuse_posts--;
		return -1;
	}
	if (g->nmsgs == FG_MAX_MSGS || len > VMBUS_MAX_MESSAGE_SIZE)
		return -1;
	struct fg_msg *m = &g->msgs[g->nmsgs++];
	m->vp = vp;
	m->sint = sint;
	m->type = type;
	m->len = len;
	memset(m->data, 0, sizeof(m->data));
	memcpy(m->data, payload, len);
	return 0;
}

static void fg_signal_event(void *opaque, uint32_t vp, uint32_t sint, uint32_t flag)
{
	struct fake_guest *g = opaque;
	if (g->nevents < FG_MAX_EVENTS)
		g->events[g->nevents++] = (struct fg_event){vp, sint, flag};
}

static void fg_log(void *opaque, const char *fmt, ...)
{
	struct fake_guest *g = opaque;
	g->nlogs++;
	if (getenv("FG_VERBOSE")) {
		va_list ap;
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
}

void fg_init(struct fake_guest *g)
{
	memset(g, 0, sizeof(*g));
	const char *guard = getenv("FG_GUARD");
	if (guard && strcmp(guard, "1") == 0) {
		g->ram = guarded_ram();
		g->host = guest_guard_hva(0, FG_RAM_BYTES);
		g->ops.grant = fg_grant;
	} else {
		g->ram = g->host = calloc(FG_RAM_PAGES, VMBUS_PAGE_SIZE);
	}
	g->ops.gpa_to_hva = fg_gpa_to_hva;
	g->ops.post_message = fg_post_message;
	g->ops.signal_event = fg_signal_event;
	g->ops.log = fg_log;
	g->srv = vmbus_server_new(&g->ops, g);
}

void fg_free(struct fake_guest *g)
{
	vmbus_server_free(g->srv);
	if (g->ops.grant)
		check_no_grants(g);
	else
		free(g->ram);
}

void *fg_page(struct fake_guest *g, uint32_t pfn)
{
	return g->ram + (size_t)pfn * VMBUS_PAGE_SIZE;
}

uint16_t fg_post(struct fake_guest *g, uint32_t conn_id, const void *msg, uint32_t len)
{
	struct hv_input_post_message in;
	memset(&in, 0, sizeof(in));
	in.connection_id = conn_id;
	in.message_type = VMBUS_MESSAGE_TYPE;
	in.payload_size = len;
	memcpy(in.payload, msg, len > sizeof(in.payload) ? sizeof(in.payload) : len);
	return vmbus_server_post_message(g->srv, 0, &in);
}

const struct fg_msg *fg_last(const struct fake_guest *g)
{
	return g->nmsgs ? &g->msgs[g->nmsgs - 1] : NULL;
}

uint32_t fg_msgtype(const struct fg_msg *m)
{
	return m ? ((const struct vmbus_channel_message_header *)m->data)->msgtype : 0xffffffffu;
}

unsigned fg_count(const struct fake_guest *g, uint32_t msgtype)
{
	unsigned n = 0;
	for (unsigned i = 0; i < g->nmsgs; i++)
		n += fg_msgtype(&g->msgs[i]) == msgtype;
	return n;
}

void fg_clear(struct fake_guest *g)
{
	g->nmsgs = 0;
	g->nevents = 0;
}

int fg_connect(struct fake_guest *g, uint32_t version)
{
	struct vmbus_channel_initiate_contact ic;
	memset(&ic, 0, sizeof(ic));
	ic.header.msgtype = CHANNELMSG_INITIATE_CONTACT;
	ic.vmbus_version_requested = version;
	ic.target_vcpu = 0;
	uint32_t conn = VMBUS_MESSAGE_CONNECTION_ID;
	if (version >= VERSION_WIN10_V5) {
		ic.msg_sint = VMBUS_MESSAGE_SINT;
		conn = VMBUS_MESSAGE_CONNECTION_ID_4;
	} else {
		ic.interrupt_page = 0x1000;
	}
	unsigned before = g->nmsgs;
	if (fg_post(g, conn, &ic, sizeof(ic)) != HV_STATUS_SUCCESS || g->nmsgs != before + 1)
		return -1;
	const struct fg_msg *m = fg_last(g);
	if (fg_msgtype(m) != CHANNELMSG_VERSION_RESPONSE)
		return -1;
	return ((const struct vmbus_channel_version_response *)m->data)->version_supported;
}

unsigned fg_request_offers(struct fake_guest *g)
{
	struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
	unsigned before = fg_count(g, CHANNELMSG_OFFERCHANNEL);
	FG_POST(g, h);
	return fg_count(g, CHANNELMSG_OFFERCHANNEL) - before;
}

/* Linux create_gpadl_header: the header carries 26 PFNs, each body 28. */
uint32_t fg_gpadl(struct fake_guest *g, uint32_t relid, uint32_t id, const uint32_t *pfns, uint32_t npages)
{
	uint8_t buf[VMBUS_MAX_MESSAGE_SIZE];
	const uint32_t in_header = (VMBUS_MAX_MESSAGE_SIZE - sizeof(struct vmbus_channel_gpadl_header) -
				    sizeof(struct gpa_range)) / 8;
	const uint32_t in_body = (VMBUS_MAX_MESSAGE_SIZE - sizeof(struct vmbus_channel_gpadl_body)) / 8;
	struct vmbus_channel_gpadl_header *h = (void *)buf;
	memset(buf, 0, sizeof(buf));
	h->header.msgtype = CHANNELMSG_GPADL_HEADER;
	h->child_relid = relid;
	h->gpadl = id;
	h->rangecount = 1;
	h->range_buflen = (uint16_t)(sizeof(struct gpa_range) + npages * 8);
	struct gpa_range *r = (void *)(buf + sizeof(*h));
	r->byte_count = npages * VMBUS_PAGE_SIZE;
	r->byte_offset = 0;
	uint32_t n = npages < in_header ? npages : in_header;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pfn = pfns[i];
		memcpy(buf + sizeof(*h) + sizeof(*r) + i * 8, &pfn, 8);
	}
	unsigned before = g->nmsgs;
	fg_post(g, VMBUS_MESSAGE_CONNECTION_ID, buf, (uint32_t)(sizeof(*h) + sizeof(*r) + n * 8));
	uint32_t done = n;
	while (done < npages) {
		struct vmbus_channel_gpadl_body *b = (void *)buf;
		memset(buf, 0, sizeof(buf));
		b->header.msgtype = CHANNELMSG_GPADL_BODY;
		b->gpadl = id;
		uint32_t k = npages - done < in_body ? npages - done : in_body;
		for (uint32_t i = 0; i < k; i++) {
			uint64_t pfn = pfns[done + i];
			memcpy(buf + sizeof(*b) + i * 8, &pfn, 8);
		}
		fg_post(g, VMBUS_MESSAGE_CONNECTION_ID, buf, (uint32_t)(sizeof(*b) + k * 8));
		done += k;
	}
	if (g->nmsgs == before || fg_msgtype(fg_last(g)) != CHANNELMSG_GPADL_CREATED)
		return 0xdead;
	const struct vmbus_channel_gpadl_created *c = (const void *)fg_last(g)->data;
	if (c->gpadl != id)
		return 0xdead;
	return c->creation_status;
}

void fg_chan_init(struct fake_guest *g, struct fg_chan *c, uint32_t relid, uint32_t gpadl, uint32_t first_pfn,
		  uint32_t send_pages, uint32_t recv_pages)
{
	c->relid = relid;
	c->conn_id = VMBUS_CHANNEL_CONNECTION_ID_BASE + relid;
	c->gpadl = gpadl;
	c->send.hdr = fg_page(g, first_pfn);
	c->send.data = fg_page(g, first_pfn + 1);
	c->send.size = (send_pages - 1) * VMBUS_PAGE_SIZE;
	c->recv.hdr = fg_page(g, first_pfn + send_pages);
	c->recv.data = fg_page(g, first_pfn + send_pages + 1);
	c->recv.size = (recv_pages - 1) * VMBUS_PAGE_SIZE;
}

uint32_t fg_open(struct fake_guest *g, struct fg_chan *c, uint32_t relid, uint32_t gpadl,
		 uint32_t first_pfn, uint32_t send_pages, uint32_t recv_pages)
{
	uint32_t total = send_pages + recv_pages;
	uint32_t pfns[FG_RAM_PAGES];
	for (uint32_t i = 0; i < total; i++)
		pfns[i] = first_pfn + i;
	memset(fg_page(g, first_pfn), 0, (size_t)total * VMBUS_PAGE_SIZE);
	/* Linux hv_ringbuffer_init: both control pages zeroed, feature bit set. */
	fg_chan_init(g, c, relid, gpadl, first_pfn, send_pages, recv_pages);
	c->send.hdr->feature_bits = 1;
	c->recv.hdr->feature_bits = 1;
	uint32_t st = fg_gpadl(g, relid, gpadl, pfns, total);
	if (st != 0)
		return st;
	struct vmbus_channel_open_channel o;
	memset(&o, 0, sizeof(o));
	o.header.msgtype = CHANNELMSG_OPENCHANNEL;
	o.child_relid = relid;
	o.openid = relid;
	o.ringbuffer_gpadlhandle = gpadl;
	o.target_vp = 0;
	o.downstream_ringbuffer_pageoffset = send_pages;
	unsigned before = g->nmsgs;
	FG_POST(g, o);
	for (unsigned i = before; i < g->nmsgs; i++) {
		if (fg_msgtype(&g->msgs[i]) == CHANNELMSG_OPENCHANNEL_RESULT) {
			const struct vmbus_channel_open_result *r = (const void *)g->msgs[i].data;
			if (r->child_relid == relid && r->openid == relid)
				return r->status;
		}
	}
	return 0xdead;
}

bool fg_close(struct fake_guest *g, struct fg_chan *c)
{
	struct vmbus_channel_close_channel cl = {.header.msgtype = CHANNELMSG_CLOSECHANNEL, .child_relid = c->relid};
	FG_POST(g, cl);
	struct vmbus_channel_gpadl_teardown t = {
		.header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = c->relid, .gpadl = c->gpadl};
	unsigned before = g->nmsgs;
	FG_POST(g, t);
	if (g->nmsgs != before + 1 || fg_msgtype(fg_last(g)) != CHANNELMSG_GPADL_TORNDOWN)
		return false;
	return ((const struct vmbus_channel_gpadl_torndown *)fg_last(g)->data)->gpadl == c->gpadl;
}

static uint32_t avail_read(uint32_t w, uint32_t r, uint32_t size)
{
	return w >= r ? w - r : size - r + w;
}

static void copy_to(struct fg_ring *r, uint32_t *off, const void *src, uint32_t len)
{
	const uint8_t *s = src;
	for (uint32_t i = 0; i < len; i++) {
		r->data[*off] = s ? s[i] : 0;
		*off = (*off + 1) % r->size;
	}
}

int fg_ring_send(struct fg_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
		 const void *data, uint32_t len, bool *signal)
{
	uint32_t pkt = (uint32_t)((sizeof(struct vmpacket_descriptor) + len + 7) & ~7u);
	uint32_t w = r->hdr->write_index, rd = __atomic_load_n(&r->hdr->read_index, __ATOMIC_ACQUIRE);
	uint32_t space = r->size - avail_read(w, rd, r->size);
	*signal = false;
	if (space <= pkt + 8)
		return -1;
	struct vmpacket_descriptor d = {
		.type = type, .offset8 = 2, .len8 = (uint16_t)(pkt / 8), .flags = flags, .trans_id = trans_id};
	uint32_t off = w;
	copy_to(r, &off, &d, sizeof(d));
	copy_to(r, &off, data, len);
	copy_to(r, &off, NULL, pkt - (uint32_t)sizeof(d) - len);
	uint64_t trailer = (uint64_t)w << 32;
	copy_to(r, &off, &trailer, 8);
	__atomic_store_n(&r->hdr->write_index, off, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	*signal = !r->hdr->interrupt_mask && w == r->hdr->read_index;
	return 0;
}

uint32_t fg_ring_recv(struct fg_ring *r, void *buf, uint32_t cap)
{
	uint32_t w = __atomic_load_n(&r->hdr->write_index, __ATOMIC_ACQUIRE), rd = r->hdr->read_index;
	if (w == rd)
		return 0;
	struct vmpacket_descriptor d;
	uint8_t *b = (uint8_t *)&d;
	for (uint32_t i = 0; i < sizeof(d); i++)
		b[i] = r->data[(rd + i) % r->size];
	uint32_t len = d.len8 * 8u;
	if (len > cap || len + 8 > avail_read(w, rd, r->size))
		return 0;
	for (uint32_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = r->data[(rd + i) % r->size];
	__atomic_store_n(&r->hdr->read_index, (rd + len + 8) % r->size, __ATOMIC_RELEASE);
	return len;
}

uint16_t fg_signal(struct fake_guest *g, const struct fg_chan *c)
{
	return vmbus_server_signal_event(g->srv, 0, c->conn_id, 0);
}

unsigned fg_events_for(const struct fake_guest *g, uint32_t flag)
{
	unsigned n = 0;
	for (unsigned i = 0; i < g->nevents; i++)
		n += g->events[i].flag == flag;
	return n;
}
