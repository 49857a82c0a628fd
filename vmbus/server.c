/* The VMBus control protocol, host side: one state machine per VM.
 *
 * Connection: DISCONNECTED --INITIATE_CONTACT(supported version)--> CONNECTED
 *             CONNECTED --UNLOAD / INITIATE_CONTACT / reset--> (everything dropped)
 * Channel:    IDLE --REQUESTOFFERS--> OFFERED --OPENCHANNEL--> OPEN --CLOSECHANNEL--> OFFERED
 *             OFFERED/OPEN --host failure--> RESCINDED --RELID_RELEASED--> IDLE
 * GPADL:      GPADL_HEADER (+ GPADL_BODY...) --all bytes--> created --GPADL_TEARDOWN--> gone
 *
 * Every message field is checked before use; a bad message gets the protocol's error status
 * (GPADL_CREATED / OPENCHANNEL_RESULT with STATUS_UNSUCCESSFUL) or, where the protocol has no
 * reply, is dropped with a log line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmbus_internal.h"

void vmbus_srv_log(struct vmbus_server *srv, const char *fmt, ...)
{
	if (!srv->ops->log || srv->log_lines > VMBUS_LOG_LIMIT)
		return;
	if (++srv->log_lines > VMBUS_LOG_LIMIT) {
		srv->ops->log(srv->opaque, "vmbus: too many messages; further ones suppressed until reset");
		return;
	}
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	srv->ops->log(srv->opaque, "%s", line);
}

void *vmbus_srv_gpa(struct vmbus_server *srv, uint64_t gpa, uint64_t len)
{
	if (len == 0 || gpa + len < gpa)
		return NULL;
	return srv->ops->gpa_to_hva(srv->opaque, gpa, len);
}

/* The grant check (ops->grant, a debug mode); nothing without it. */
static void grant(struct vmbus_server *srv, void *hva, uint64_t len, bool on)
{
	if (srv->ops->grant)
		srv->ops->grant(srv->opaque, hva, len, on);
}

uint32_t vmbus_srv_version(const struct vmbus_server *srv) { return srv->version; }
uint32_t vmbus_server_version(const struct vmbus_server *srv) { return srv->connected ? srv->version : 0; }

struct vmbus_chan *vmbus_server_channel(struct vmbus_server *srv, uint32_t relid)
{
	return relid >= 1 && relid <= VMBUS_MAX_RELIDS ? srv->chans[relid - 1] : NULL;
}

void vmbus_srv_signal_chan(struct vmbus_chan *chan)
{
	struct vmbus_server *srv = chan->srv;
	srv->ops->signal_event(srv->opaque, chan->target_vp, VMBUS_MESSAGE_SINT, chan->relid);
}

bool vmbus_srv_vp_ok(const struct vmbus_server *srv, uint32_t vp)
{
	return srv->vp_count == 0 || vp < srv->vp_count;
}

/* ---- host -> guest messages ---- */

void vmbus_server_flush(struct vmbus_server *srv)
{
	while (srv->outq_len) {
		struct out_msg *m = &srv->outq[srv->outq_head];
		if (srv->ops->post_message(srv->opaque, srv->target_vcpu, srv->msg_sint, VMBUS_MESSAGE_TYPE,
					   m->data, m->len) != 0)
			return;
		srv->outq_head = (srv->outq_head + 1) % VMBUS_OUTQ_MAX;
		srv->outq_len--;
	}
}

static void send_msg(struct vmbus_server *srv, const void *msg, uint32_t len)
{
	vmbus_server_flush(srv);
	if (srv->outq_len == 0 &&
	    srv->ops->post_message(srv->opaque, srv->target_vcpu, srv->msg_sint, VMBUS_MESSAGE_TYPE, msg, len) == 0)
		return;
	if (srv->outq_len == VMBUS_OUTQ_MAX) {
		vmbus_srv_log(srv, "vmbus: guest is not taking messages; message type %u dropped",
			      ((const struct vmbus_channel_message_header *)msg)->msgtype);
		return;
	}
	struct out_msg *m = &srv->outq[(srv->outq_head + srv->outq_len) % VMBUS_OUTQ_MAX];
	m->len = len;
	memcpy(m->data, msg, len);
	srv->outq_len++;
}

#define SEND(srv, msg) send_msg((srv), &(msg), sizeof(msg))

/* ---- GPADLs ---- */

struct gpadl *vmbus_srv_gpadl_find(struct vmbus_server *srv, uint32_t id)
{
	for (struct gpadl *g = srv->gpadls; g; g = g->next)
		if (g->id == id)
			return g;
	return NULL;
}

uint32_t vmbus_srv_gpadl_weight(const struct gpadl *g)
{
	return g->complete ? g->npfns : g->buflen / 8u + 1;
}

/* Pages [0, ceil(bytes / 4096)), as runs of contiguous host memory. */
void vmbus_srv_gpadl_grant(struct vmbus_server *srv, const struct gpadl *g, uint64_t bytes, bool on)
{
	uint8_t *run = NULL;
	uint64_t len = 0;
	for (uint64_t i = 0; i < (bytes + VMBUS_PAGE_SIZE - 1) / VMBUS_PAGE_SIZE; i++) {
		uint8_t *p = vmbus_srv_gpa(srv, g->pfns[i] << VMBUS_PAGE_SHIFT, VMBUS_PAGE_SIZE);
		if (run && p == run + len) {
			len += VMBUS_PAGE_SIZE;
			continue;
		}
		if (run)
			grant(srv, run, len, on);
		run = p;
		len = VMBUS_PAGE_SIZE;
	}
	if (run)
		grant(srv, run, len, on);
}

int vmbus_srv_gpadl_writable(struct vmbus_server *srv, uint32_t relid, uint32_t id, uint64_t bytes)
{
	struct gpadl *g = vmbus_srv_gpadl_find(srv, id);
	if (!g || !g->complete || g->relid != relid || bytes > (uint64_t)g->npfns * VMBUS_PAGE_SIZE)
		return -1;
	if (srv->ops->grant) {
		vmbus_srv_gpadl_grant(srv, g, bytes, true);
		vmbus_srv_gpadl_grant(srv, g, g->writable, false);
		g->writable = bytes;
	}
	return 0;
}

static void gpadl_remove(struct vmbus_server *srv, struct gpadl *g)
{
	if (g->writable)
		vmbus_srv_gpadl_grant(srv, g, g->writable, false);
	for (struct gpadl **pp = &srv->gpadls; *pp; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	srv->ngpadls--;
	srv->gpadl_pfns -= vmbus_srv_gpadl_weight(g);
	free(g->buf);
	free(g->pfns);
	free(g);
}

static void gpadl_drop_all(struct vmbus_server *srv, bool only_relid, uint32_t relid)
{
	struct gpadl *g = srv->gpadls, *next;
	for (; g; g = next) {
		next = g->next;
		if (!only_relid || g->relid == relid)
			gpadl_remove(srv, g);
	}
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

bool vmbus_srv_pfn_ok(struct vmbus_server *srv, uint64_t pfn)
{
	return pfn < PFN_LIMIT && vmbus_srv_gpa(srv, pfn << VMBUS_PAGE_SHIFT, VMBUS_PAGE_SIZE);
}

/* Parse the complete range stream into g->pfns; every PFN must be guest RAM. */
static bool gpadl_parse(struct vmbus_server *srv, struct gpadl *g)
{
	/* First pass: shape and count. */
	uint32_t pos = 0, npfns = 0;
	bool aligned = true;
	for (uint32_t r = 0; r < g->rangecount; r++) {
		if (g->buflen - pos < sizeof(struct gpa_range))
			return false;
		uint32_t bytes = rd32(g->buf + pos), offset = rd32(g->buf + pos + 4);
		pos += (uint32_t)sizeof(struct gpa_range);
		if (bytes == 0 || offset >= VMBUS_PAGE_SIZE)
			return false;
		uint64_t n = ((uint64_t)offset + bytes + VMBUS_PAGE_SIZE - 1) / VMBUS_PAGE_SIZE;
		if (n > (g->buflen - pos) / 8)
			return false;
		if (offset != 0 || bytes % VMBUS_PAGE_SIZE != 0)
			aligned = false;
		pos += (uint32_t)n * 8;
		npfns += (uint32_t)n;
	}
	if (pos != g->buflen)
		return false;
	uint64_t *pfns = malloc(sizeof(*pfns) * npfns);
	if (!pfns)
		return false;
	/* Second pass: collect and check PFNs. */
	pos = 0;
	uint32_t k = 0;
	for (uint32_t r = 0; r < g->rangecount; r++) {
		uint32_t bytes = rd32(g->buf + pos), offset = rd32(g->buf + pos + 4);
		pos += (uint32_t)sizeof(struct gpa_range);
		uint32_t n = (uint32_t)(((uint64_t)offset + bytes + VMBUS_PAGE_SIZE - 1) / VMBUS_PAGE_SIZE);
		for (uint32_t i = 0; i < n; i++, pos += 8) {
			uint64_t pfn = rd64(g->buf + pos);
			if (!vmbus_srv_pfn_ok(srv, pfn)) {
				vmbus_srv_log(srv, "vmbus: GPADL %#x: PFN %#llx is not guest RAM", g->id,
					      (unsigned long long)pfn);
				free(pfns);
				return false;
			}
			pfns[k++] = pfn;
		}
	}
	srv->gpadl_pfns -= vmbus_srv_gpadl_weight(g);
	g->pfns = pfns;
	g->npfns = npfns;
	g->page_aligned = aligned;
	g->complete = true;
	srv->gpadl_pfns += vmbus_srv_gpadl_weight(g);
	free(g->buf);
	g->buf = NULL;
	return true;
}

/* A complete GPADL of channel relid (the device API's vmbus_chan_gpadl_map). */
int vmbus_srv_gpadl_pfns(struct vmbus_server *srv, uint32_t relid, uint32_t id, const uint64_t **pfns,
			 uint32_t *count)
{
	struct gpadl *g = vmbus_srv_gpadl_find(srv, id);
	/* Whole pages only: the PFN list drops each range's byte offset and count, so a partial
	 * page would be written beyond what the guest granted. */
	if (!g || !g->complete || g->relid != relid || !g->page_aligned)
		return -1;
	*pfns = g->pfns;
	*count = g->npfns;
	return 0;
}

static void gpadl_created(struct vmbus_server *srv, uint32_t relid, uint32_t id, uint32_t status)
{
	struct vmbus_channel_gpadl_created m = {
		.header.msgtype = CHANNELMSG_GPADL_CREATED,
		.child_relid = relid,
		.gpadl = id,
		.creation_status = status,
	};
	SEND(srv, m);
}

/* All bytes arrived: validate, answer. */
static void gpadl_finish(struct vmbus_server *srv, struct gpadl *g)
{
	uint32_t relid = g->relid, id = g->id;
	if (!gpadl_parse(srv, g)) {
		vmbus_srv_log(srv, "vmbus: GPADL %#x refused (bad ranges or PFNs)", id);
		gpadl_remove(srv, g);
		gpadl_created(srv, relid, id, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	gpadl_created(srv, relid, id, VMBUS_STATUS_SUCCESS);
}

static struct vmbus_chan *chan_by_relid(struct vmbus_server *srv, uint32_t relid)
{
	if (relid == 0 || relid > VMBUS_MAX_RELIDS)
		return NULL;
	return srv->chans[relid - 1];
}

static void on_gpadl_header(struct vmbus_server *srv, const uint8_t *msg, uint32_t len)
{
	const struct vmbus_channel_gpadl_header *h = (const void *)msg;
	uint32_t relid = h->child_relid, id = h->gpadl;
	uint32_t data = len - (uint32_t)sizeof(*h);
	struct vmbus_chan *chan = chan_by_relid(srv, relid);
	const char *why = NULL;
	if (!chan || (chan->state != CHAN_OFFERED && chan->state != CHAN_OPEN))
		why = "unknown channel";
	else if (vmbus_srv_gpadl_find(srv, id))
		why = "duplicate handle";
	else if (h->rangecount == 0 || h->range_buflen < sizeof(struct gpa_range) + 8 || h->range_buflen % 8)
		why = "bad range count or length";
	else if (data > h->range_buflen)
		why = "more range data than range_buflen";
	else if (srv->ngpadls >= VMBUS_MAX_GPADLS ||
		 srv->gpadl_pfns + h->range_buflen / 8u + 1 > VMBUS_MAX_GPADL_PFNS)
		why = "too many GPADLs";
	if (why) {
		vmbus_srv_log(srv, "vmbus: GPADL_HEADER %#x (relid %u) refused: %s", id, relid, why);
		/* Never disturb an existing GPADL with the same handle. */
		gpadl_created(srv, relid, id, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	struct gpadl *g = calloc(1, sizeof(*g));
	uint8_t *buf = malloc(h->range_buflen);
	if (!g || !buf) {
		free(g);
		free(buf);
		gpadl_created(srv, relid, id, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	g->id = id;
	g->relid = relid;
	g->rangecount = h->rangecount;
	g->buflen = h->range_buflen;
	g->buf = buf;
	memcpy(g->buf, msg + sizeof(*h), data);
	g->received = data;
	g->next = srv->gpadls;
	srv->gpadls = g;
	srv->ngpadls++;
	srv->gpadl_pfns += vmbus_srv_gpadl_weight(g);
	if (g->received == g->buflen)
		gpadl_finish(srv, g);
}

static void on_gpadl_body(struct vmbus_server *srv, const uint8_t *msg, uint32_t len)
{
	const struct vmbus_channel_gpadl_body *b = (const void *)msg;
	uint32_t data = len - (uint32_t)sizeof(*b);
	struct gpadl *g = vmbus_srv_gpadl_find(srv, b->gpadl);
	if (!g || g->complete) {
		vmbus_srv_log(srv, "vmbus: GPADL_BODY for %s GPADL %#x dropped", g ? "complete" : "unknown",
			      b->gpadl);
		return;
	}
	if (data > (uint32_t)g->buflen - g->received) {
		uint32_t relid = g->relid, id = g->id;
		vmbus_srv_log(srv, "vmbus: GPADL %#x: body overruns range_buflen", id);
		gpadl_remove(srv, g);
		gpadl_created(srv, relid, id, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	memcpy(g->buf + g->received, msg + sizeof(*b), data);
	g->received += data;
	if (g->received == g->buflen)
		gpadl_finish(srv, g);
}

static void on_gpadl_teardown(struct vmbus_server *srv, const uint8_t *msg)
{
	const struct vmbus_channel_gpadl_teardown *t = (const void *)msg;
	struct gpadl *g = vmbus_srv_gpadl_find(srv, t->gpadl);
	if (!g) {
		vmbus_srv_log(srv, "vmbus: GPADL_TEARDOWN for unknown GPADL %#x dropped", t->gpadl);
		return;
	}
	/* A guest that tears down the rings of an open channel takes those pages back: close the
	 * channel first, or the host would go on writing into them (Linux closes first). */
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++) {
		struct vmbus_chan *chan = srv->chans[i];
		if (chan && chan->state == CHAN_OPEN && chan->ring_gpadl == t->gpadl) {
			vmbus_srv_log(srv, "vmbus: GPADL_TEARDOWN of relid %u's open rings: channel closed", chan->relid);
			vmbus_chan_teardown(chan);
		}
	}
	gpadl_remove(srv, g);
	struct vmbus_channel_gpadl_torndown m = {
		.header.msgtype = CHANNELMSG_GPADL_TORNDOWN,
		.gpadl = t->gpadl,
	};
	SEND(srv, m);
}

/* ---- channels ---- */

/* What the host writes of an open channel's rings: the guest->host ring's control page
 * (read_index, interrupt_mask) and all of the host->guest ring. */
static void rings_grant(struct vmbus_chan *chan, bool on)
{
	struct vmbus_server *srv = chan->srv;
	if (!srv->ops->grant)
		return;
	grant(srv, chan->in.hdr, VMBUS_PAGE_SIZE, on);
	grant(srv, chan->out.hdr, VMBUS_PAGE_SIZE, on);
	for (uint32_t i = 0; i < chan->out.size / VMBUS_PAGE_SIZE; i++)
		grant(srv, chan->out.pages[i], VMBUS_PAGE_SIZE, on);
}

static void rings_unmap(struct vmbus_chan *chan)
{
	rings_grant(chan, false);
	vmbus_ring_destroy(&chan->in);
	vmbus_ring_destroy(&chan->out);
}

void vmbus_chan_teardown(struct vmbus_chan *chan)
{
	if (chan->state != CHAN_OPEN)
		return;
	chan->state = CHAN_OFFERED;
	if (chan->ops->close)
		chan->ops->close(chan, chan->device_ctx);
	rings_unmap(chan);
	/* rxbuf stays allocated until the next open or free: a VSP may still hold a packet. */
}

static void rescind(struct vmbus_chan *chan)
{
	vmbus_chan_teardown(chan);
	chan->state = CHAN_RESCINDED;
	struct vmbus_channel_rescind_offer m = {
		.header.msgtype = CHANNELMSG_RESCIND_CHANNELOFFER,
		.child_relid = chan->relid,
	};
	SEND(chan->srv, m);
}

/* Rescind every live sub-channel of a device (its primary closed or failed). */
static void rescind_subs(struct vmbus_chan *primary)
{
	struct vmbus_server *srv = primary->srv;
	for (uint32_t i = VMBUS_MAX_DEVICES; i < VMBUS_MAX_RELIDS; i++) {
		struct vmbus_chan *c = srv->chans[i];
		if (c && c->primary == primary && (c->state == CHAN_OPEN || c->state == CHAN_OFFERED))
			rescind(c);
	}
}

/* A sub-channel is gone for good (released by the guest, or the connection dropped). */
static void sub_free(struct vmbus_chan *chan)
{
	struct vmbus_server *srv = chan->srv;
	vmbus_chan_teardown(chan);
	gpadl_drop_all(srv, true, chan->relid);
	srv->chans[chan->relid - 1] = NULL;
	free(chan->rxbuf);
	free(chan);
}

void vmbus_srv_fail_chan(struct vmbus_chan *chan, const char *why)
{
	struct vmbus_server *srv = chan->srv;
	if (chan->state != CHAN_OPEN && chan->state != CHAN_OFFERED)
		return;
	vmbus_srv_log(srv, "vmbus: relid %u (%s): %s; rescinding", chan->relid,
		      chan->ops->name ? chan->ops->name : "?", why);
	if (!chan->primary)
		rescind_subs(chan);
	rescind(chan);
}

static void send_offer(struct vmbus_server *srv, struct vmbus_chan *chan)
{
	struct vmbus_channel_offer_channel m;
	memset(&m, 0, sizeof(m));
	m.header.msgtype = CHANNELMSG_OFFERCHANNEL;
	m.offer.if_type = chan->ops->class_id;
	m.offer.if_instance = chan->ops->instance_id;
	m.offer.chn_flags = chan->ops->chn_flags;
	m.offer.mmio_megabytes = chan->ops->mmio_megabytes;
	memcpy(m.offer.u.user_def, chan->ops->user_def, sizeof(m.offer.u.user_def));
	m.offer.sub_channel_index = chan->subchannel_index;
	m.child_relid = chan->relid;
	m.monitorid = 0;
	m.monitor_allocated = 0;     /* no monitor pages: the guest uses HvSignalEvent */
	m.is_dedicated_interrupt = 1;
	m.connection_id = VMBUS_CHANNEL_CONNECTION_ID_BASE + chan->relid;
	SEND(srv, m);
}

static void on_request_offers(struct vmbus_server *srv)
{
	if (srv->offers_sent) {
		vmbus_srv_log(srv, "vmbus: repeated REQUESTOFFERS ignored");
		return;
	}
	srv->offers_sent = true;
	for (uint32_t i = 0; i < srv->nchans; i++) {
		struct vmbus_chan *chan = srv->chans[i];
		if (chan->state != CHAN_IDLE)
			continue;
		chan->state = CHAN_OFFERED;
		send_offer(srv, chan);
	}
	struct vmbus_channel_message_header m = {.msgtype = CHANNELMSG_ALLOFFERS_DELIVERED};
	SEND(srv, m);
}

static void open_result(struct vmbus_server *srv, uint32_t relid, uint32_t openid, uint32_t status)
{
	struct vmbus_channel_open_result m = {
		.header.msgtype = CHANNELMSG_OPENCHANNEL_RESULT,
		.child_relid = relid,
		.openid = openid,
		.status = status,
	};
	SEND(srv, m);
}

const char *vmbus_srv_map_rings(struct vmbus_server *srv, struct vmbus_chan *chan, const struct gpadl *g,
				  uint32_t split)
{
	if (!g || !g->complete)
		return "unknown ring GPADL";
	if (!g->page_aligned)
		return "ring GPADL not page-aligned";
	if (split < 2 || split > g->npfns || g->npfns - split < 2)
		return "ring page offset outside the GPADL";
	void **pages = malloc(sizeof(*pages) * g->npfns);
	if (!pages)
		return "out of memory";
	for (uint32_t i = 0; i < g->npfns; i++) {
		pages[i] = vmbus_srv_gpa(srv, g->pfns[i] << VMBUS_PAGE_SHIFT, VMBUS_PAGE_SIZE);
		if (!pages[i]) {
			free(pages);
			return "ring page outside guest RAM";
		}
	}
	const char *why = NULL;
	/* Setting a ring up writes its control page (interrupt_mask, pending_send_sz). */
	grant(srv, pages[0], VMBUS_PAGE_SIZE, true);
	grant(srv, pages[split], VMBUS_PAGE_SIZE, true);
	if (vmbus_ring_init(&chan->in, pages, split, false) != 0) {
		why = "bad guest->host ring (read_index)";
	} else if (vmbus_ring_init(&chan->out, pages + split, g->npfns - split, true) != 0) {
		vmbus_ring_destroy(&chan->in);
		why = "bad host->guest ring (write_index)";
	}
	grant(srv, pages[0], VMBUS_PAGE_SIZE, false);
	grant(srv, pages[split], VMBUS_PAGE_SIZE, false);
	free(pages);
	if (why)
		return why;
	if (chan->rxcap < chan->in.size) {
		uint8_t *buf = realloc(chan->rxbuf, chan->in.size);
		if (!buf) {
			vmbus_ring_destroy(&chan->in);
			vmbus_ring_destroy(&chan->out);
			return "out of memory";
		}
		chan->rxbuf = buf;
		chan->rxcap = chan->in.size;
	}
	rings_grant(chan, true);
	return NULL;
}

static void on_open_channel(struct vmbus_server *srv, const uint8_t *msg)
{
	const struct vmbus_channel_open_channel *o = (const void *)msg;
	uint32_t relid = o->child_relid, openid = o->openid;
	struct vmbus_chan *chan = chan_by_relid(srv, relid);
	struct gpadl *ring = NULL;
	const char *why = NULL;
	if (!chan || chan->state != CHAN_OFFERED)
		why = chan && chan->state == CHAN_OPEN ? "already open" : "channel not offered";
	else if (!vmbus_srv_vp_ok(srv, o->target_vp))
		why = "bad target VP";
	else if ((ring = vmbus_srv_gpadl_find(srv, o->ringbuffer_gpadlhandle)) && ring->relid != relid)
		why = "ring GPADL belongs to another channel";
	else
		why = vmbus_srv_map_rings(srv, chan, ring, o->downstream_ringbuffer_pageoffset);
	if (why) {
		vmbus_srv_log(srv, "vmbus: OPENCHANNEL relid %u refused: %s", relid, why);
		open_result(srv, relid, openid, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	chan->state = CHAN_OPEN;
	chan->openid = openid;
	chan->target_vp = o->target_vp;
	chan->ring_gpadl = o->ringbuffer_gpadlhandle;
	memcpy(chan->userdata, o->userdata, sizeof(chan->userdata));
	if (chan->ops->open && chan->ops->open(chan, chan->device_ctx) != 0) {
		vmbus_srv_log(srv, "vmbus: relid %u (%s): device refused open", relid,
			      chan->ops->name ? chan->ops->name : "?");
		chan->state = CHAN_OFFERED;
		rings_unmap(chan);
		open_result(srv, relid, openid, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	open_result(srv, relid, openid, VMBUS_STATUS_SUCCESS);
	if (chan->state == CHAN_OPEN && chan->ops->opened)
		chan->ops->opened(chan, chan->device_ctx);
	vmbus_chan_commit(chan);
}

static void on_close_channel(struct vmbus_server *srv, const uint8_t *msg)
{
	const struct vmbus_channel_close_channel *c = (const void *)msg;
	struct vmbus_chan *chan = chan_by_relid(srv, c->child_relid);
	if (!chan || chan->state != CHAN_OPEN) {
		vmbus_srv_log(srv, "vmbus: CLOSECHANNEL for relid %u that is not open", c->child_relid);
		return;
	}
	/* Sub-channels do not outlive their primary's open (Linux closes them first; a guest that
	 * did not gets them closed here): rescinded, so the next open can ask for new ones. */
	if (!chan->primary)
		rescind_subs(chan);
	vmbus_chan_teardown(chan);
}

static void on_relid_released(struct vmbus_server *srv, const uint8_t *msg)
{
	const struct vmbus_channel_relid_released *r = (const void *)msg;
	struct vmbus_chan *chan = chan_by_relid(srv, r->child_relid);
	if (!chan || chan->state != CHAN_RESCINDED) {
		vmbus_srv_log(srv, "vmbus: RELID_RELEASED for relid %u that was not rescinded", r->child_relid);
		return;
	}
	if (chan->primary) {
		sub_free(chan);
		return;
	}
	chan->state = CHAN_IDLE;
	gpadl_drop_all(srv, true, chan->relid);
}

static void on_modify_channel(struct vmbus_server *srv, const uint8_t *msg)
{
	const struct vmbus_channel_modifychannel *m = (const void *)msg;
	struct vmbus_chan *chan = chan_by_relid(srv, m->child_relid);
	uint32_t status = VMBUS_STATUS_SUCCESS;
	if (!chan || chan->state != CHAN_OPEN || !vmbus_srv_vp_ok(srv, m->target_vp)) {
		vmbus_srv_log(srv, "vmbus: MODIFYCHANNEL relid %u refused", m->child_relid);
		status = VMBUS_STATUS_UNSUCCESSFUL;
	} else {
		chan->target_vp = m->target_vp;
	}
	if (srv->version >= VERSION_WIN10_V5_3) {
		struct vmbus_channel_modifychannel_response r = {
			.header.msgtype = CHANNELMSG_MODIFYCHANNEL_RESPONSE,
			.child_relid = m->child_relid,
			.status = status,
		};
		SEND(srv, r);
	}
}

/* ---- connection ---- */

/* Drop channels, GPADLs and queued messages; devices go back to IDLE. */
static void drop_connection(struct vmbus_server *srv)
{
	/* A restore given up (vmbus/savestate.c): a device sees close() only on the channels whose
	 * state it restored; it never saw the others open. */
	for (uint32_t i = 0; srv->restoring && i < VMBUS_MAX_RELIDS; i++) {
		struct vmbus_chan *c = srv->chans[i];
		if (c && c->state == CHAN_OPEN && !c->restored) {
			c->state = CHAN_OFFERED;
			rings_unmap(c);
		}
	}
	for (uint32_t i = VMBUS_MAX_DEVICES; i < VMBUS_MAX_RELIDS; i++)
		if (srv->chans[i])
			sub_free(srv->chans[i]);
	for (uint32_t i = 0; i < srv->nchans; i++) {
		vmbus_chan_teardown(srv->chans[i]);
		srv->chans[i]->state = CHAN_IDLE;
		srv->chans[i]->restored = false;
	}
	gpadl_drop_all(srv, false, 0);
	srv->outq_head = srv->outq_len = 0;
	srv->connected = false;
	srv->offers_sent = false;
	srv->version = 0;
	srv->log_lines = 0;
	srv->restoring = false;
}

bool vmbus_srv_version_supported(uint32_t v)
{
	switch (v) {
	case VERSION_WIN10:
	case VERSION_WIN10_V4_1:
	case VERSION_WIN10_V5:
	case VERSION_WIN10_V5_1:
	case VERSION_WIN10_V5_2:
	case VERSION_WIN10_V5_3:
		return true;
	default:
		return false;
	}
}

static void on_initiate_contact(struct vmbus_server *srv, uint32_t vp, const uint8_t *msg)
{
	const struct vmbus_channel_initiate_contact *ic = (const void *)msg;
	uint32_t version = ic->vmbus_version_requested;
	uint32_t target = ic->target_vcpu;
	uint32_t sint = version >= VERSION_WIN10_V5 ? ic->msg_sint : VMBUS_MESSAGE_SINT;
	if (srv->connected) {
		/* A new kernel (kexec) connecting without UNLOAD: start over. */
		vmbus_srv_log(srv, "vmbus: INITIATE_CONTACT while connected: resetting");
		drop_connection(srv);
	}
	bool ok = vmbus_srv_version_supported(version) && vmbus_srv_vp_ok(srv, target) && sint < HV_SYNIC_SINT_COUNT;
	struct vmbus_channel_version_response r = {
		.header.msgtype = CHANNELMSG_VERSION_RESPONSE,
		.version_supported = ok,
		.msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID,
	};
	/* An unusable target VP or SINT: answer where the request came from. */
	srv->target_vcpu = vmbus_srv_vp_ok(srv, target) ? target : vp;
	srv->msg_sint = sint < HV_SYNIC_SINT_COUNT ? sint : VMBUS_MESSAGE_SINT;
	if (ok) {
		srv->connected = true;
		srv->version = version;
	} else {
		vmbus_srv_log(srv, "vmbus: version %u.%u refused", version >> 16, version & 0xffff);
	}
	SEND(srv, r);
}

static void on_unload(struct vmbus_server *srv)
{
	drop_connection(srv);
	struct vmbus_channel_message_header m = {.msgtype = CHANNELMSG_UNLOAD_RESPONSE};
	SEND(srv, m);
}

/* Minimum payload of each guest -> host message; 0 = not accepted from the guest. */
static const uint32_t min_len[CHANNELMSG_COUNT] = {
	[CHANNELMSG_REQUESTOFFERS] = sizeof(struct vmbus_channel_message_header),
	[CHANNELMSG_OPENCHANNEL] = sizeof(struct vmbus_channel_open_channel),
	[CHANNELMSG_CLOSECHANNEL] = sizeof(struct vmbus_channel_close_channel),
	[CHANNELMSG_GPADL_HEADER] = sizeof(struct vmbus_channel_gpadl_header),
	[CHANNELMSG_GPADL_BODY] = sizeof(struct vmbus_channel_gpadl_body),
	[CHANNELMSG_GPADL_TEARDOWN] = sizeof(struct vmbus_channel_gpadl_teardown),
	[CHANNELMSG_RELID_RELEASED] = sizeof(struct vmbus_channel_relid_released),
	[CHANNELMSG_INITIATE_CONTACT] = sizeof(struct vmbus_channel_initiate_contact),
	[CHANNELMSG_UNLOAD] = sizeof(struct vmbus_channel_message_header),
	[CHANNELMSG_TL_CONNECT_REQUEST] = sizeof(struct vmbus_channel_tl_connect_request),
	[CHANNELMSG_MODIFYCHANNEL] = sizeof(struct vmbus_channel_modifychannel),
};

static void handle_message(struct vmbus_server *srv, uint32_t vp, const uint8_t *msg, uint32_t len)
{
	if (len < sizeof(struct vmbus_channel_message_header)) {
		vmbus_srv_log(srv, "vmbus: %u-byte message dropped", len);
		return;
	}
	uint32_t type = ((const struct vmbus_channel_message_header *)msg)->msgtype;
	if (type >= CHANNELMSG_COUNT || min_len[type] == 0) {
		vmbus_srv_log(srv, "vmbus: message type %u not accepted from the guest", type);
		return;
	}
	if (len < min_len[type]) {
		vmbus_srv_log(srv, "vmbus: message type %u truncated (%u < %u bytes)", type, len, min_len[type]);
		return;
	}
	if (type == CHANNELMSG_INITIATE_CONTACT) {
		on_initiate_contact(srv, vp, msg);
		return;
	}
	if (!srv->connected) {
		vmbus_srv_log(srv, "vmbus: message type %u before INITIATE_CONTACT dropped", type);
		return;
	}
	switch (type) {
	case CHANNELMSG_REQUESTOFFERS: on_request_offers(srv); break;
	case CHANNELMSG_OPENCHANNEL: on_open_channel(srv, msg); break;
	case CHANNELMSG_CLOSECHANNEL: on_close_channel(srv, msg); break;
	case CHANNELMSG_GPADL_HEADER: on_gpadl_header(srv, msg, len); break;
	case CHANNELMSG_GPADL_BODY: on_gpadl_body(srv, msg, len); break;
	case CHANNELMSG_GPADL_TEARDOWN: on_gpadl_teardown(srv, msg); break;
	case CHANNELMSG_RELID_RELEASED: on_relid_released(srv, msg); break;
	case CHANNELMSG_UNLOAD: on_unload(srv); break;
	case CHANNELMSG_MODIFYCHANNEL: on_modify_channel(srv, msg); break;
	case CHANNELMSG_TL_CONNECT_REQUEST:
		vmbus_srv_log(srv, "vmbus: hv_sock connect request ignored (no hv_sock services)");
		break;
	}
}

/* ---- entry points ---- */

struct vmbus_server *vmbus_server_new(const struct vmbus_host_ops *ops, void *opaque)
{
	struct vmbus_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	srv->outq = calloc(VMBUS_OUTQ_MAX, sizeof(*srv->outq));
	if (!srv->outq) {
		free(srv);
		return NULL;
	}
	srv->ops = ops;
	srv->opaque = opaque;
	srv->msg_sint = VMBUS_MESSAGE_SINT;
	return srv;
}

void vmbus_server_set_vp_count(struct vmbus_server *srv, uint32_t vp_count)
{
	srv->vp_count = vp_count;
}

struct vmbus_chan *vmbus_server_add_device(struct vmbus_server *srv, const struct vmbus_device_ops *ops,
					   void *device_ctx)
{
	if (srv->nchans >= VMBUS_MAX_DEVICES)
		return NULL;
	struct vmbus_chan *chan = calloc(1, sizeof(*chan));
	if (!chan)
		return NULL;
	chan->srv = srv;
	chan->ops = ops;
	chan->device_ctx = device_ctx;
	chan->relid = srv->nchans + 1;
	chan->state = CHAN_IDLE;
	srv->chans[srv->nchans++] = chan;
	/* Added after the offers went out: offer it now. */
	if (srv->connected && srv->offers_sent) {
		chan->state = CHAN_OFFERED;
		send_offer(srv, chan);
	}
	return chan;
}

static uint16_t count_subs(const struct vmbus_server *srv, const struct vmbus_chan *primary, uint16_t index,
			   bool *has_index)
{
	uint16_t n = 0;
	*has_index = false;
	for (uint32_t i = VMBUS_MAX_DEVICES; i < VMBUS_MAX_RELIDS; i++) {
		const struct vmbus_chan *c = srv->chans[i];
		if (c && c->primary == primary) {
			n++;
			if (c->subchannel_index == index)
				*has_index = true;
		}
	}
	return n;
}

uint16_t vmbus_chan_subchannel_count(const struct vmbus_chan *chan)
{
	bool unused;
	return count_subs(chan->srv, chan->primary ? chan->primary : chan, 0, &unused);
}

struct vmbus_chan *vmbus_srv_sub_new(struct vmbus_chan *primary, uint16_t index, uint32_t slot)
{
	struct vmbus_chan *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->srv = primary->srv;
	c->ops = primary->ops;
	c->device_ctx = primary->device_ctx;
	c->primary = primary;
	c->subchannel_index = index;
	c->relid = slot + 1;
	c->state = CHAN_OFFERED;
	primary->srv->chans[slot] = c;
	return c;
}

int vmbus_chan_offer_subchannels(struct vmbus_chan *primary, uint16_t n)
{
	struct vmbus_server *srv = primary->srv;
	if (primary->primary || primary->state != CHAN_OPEN || !srv->connected)
		return -1;
	if (n > VMBUS_MAX_SUBCHANNELS)
		n = VMBUS_MAX_SUBCHANNELS;
	uint32_t slot = VMBUS_MAX_DEVICES;
	for (uint16_t idx = 1; idx <= n; idx++) {
		bool exists;
		count_subs(srv, primary, idx, &exists);
		if (exists)
			continue;
		while (slot < VMBUS_MAX_RELIDS && srv->chans[slot])
			slot++;
		if (slot == VMBUS_MAX_RELIDS) {
			vmbus_srv_log(srv, "vmbus: %s: no relid left for sub-channel %u",
				      primary->ops->name ? primary->ops->name : "?", idx);
			break;
		}
		struct vmbus_chan *c = vmbus_srv_sub_new(primary, idx, slot);
		if (!c)
			break;
		send_offer(srv, c);
	}
	return vmbus_chan_subchannel_count(primary);
}

uint16_t vmbus_server_post_message(struct vmbus_server *srv, uint32_t vp, const struct hv_input_post_message *in)
{
	/* The input may live in guest memory: copy the header once, use only the copy. */
	uint32_t head[4];
	memcpy(head, in, sizeof(head));
	uint32_t conn = head[0], type = head[2], size = head[3];
	if (conn != VMBUS_MESSAGE_CONNECTION_ID && conn != VMBUS_MESSAGE_CONNECTION_ID_4)
		return HV_STATUS_INVALID_CONNECTION_ID;
	if (size > HV_MESSAGE_PAYLOAD_MAX || type == 0 || (type & 0x80000000u))
		return HV_STATUS_INVALID_PARAMETER;
	_Alignas(8) uint8_t msg[HV_MESSAGE_PAYLOAD_MAX];
	memcpy(msg, in->payload, size);
	vmbus_server_flush(srv);
	handle_message(srv, vp, msg, size);
	return HV_STATUS_SUCCESS;
}

uint16_t vmbus_server_signal_event(struct vmbus_server *srv, uint32_t vp, uint32_t connection_id,
				   uint16_t flag_number)
{
	(void)vp;
	(void)flag_number;
	if (connection_id == VMBUS_EVENT_CONNECTION_ID)
		return HV_STATUS_SUCCESS; /* shared interrupt page of old protocols: nothing to do */
	if (connection_id <= VMBUS_CHANNEL_CONNECTION_ID_BASE)
		return HV_STATUS_INVALID_CONNECTION_ID;
	struct vmbus_chan *chan = chan_by_relid(srv, connection_id - VMBUS_CHANNEL_CONNECTION_ID_BASE);
	if (!chan)
		return HV_STATUS_INVALID_CONNECTION_ID;
	vmbus_server_flush(srv);
	if (chan->state != CHAN_OPEN)
		return HV_STATUS_SUCCESS; /* a late signal after close */
	if (chan->ops->on_packets)
		chan->ops->on_packets(chan, chan->device_ctx);
	vmbus_chan_commit(chan);
	return HV_STATUS_SUCCESS;
}

void vmbus_server_reset(struct vmbus_server *srv)
{
	drop_connection(srv);
	srv->target_vcpu = 0;
	srv->msg_sint = VMBUS_MESSAGE_SINT;
}

void vmbus_server_free(struct vmbus_server *srv)
{
	if (!srv)
		return;
	drop_connection(srv);
	for (uint32_t i = 0; i < srv->nchans; i++) {
		free(srv->chans[i]->rxbuf);
		free(srv->chans[i]);
	}
	free(srv->outq);
	free(srv);
}
