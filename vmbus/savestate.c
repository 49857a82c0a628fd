/* Saved state of the VMBus server (include/vmbus/server.h "Saved state", docs/vmbus.md):
 * the VMBUS section holds what the server keeps in host memory; ring contents and indices are
 * in guest RAM, saved separately. A restored file is hostile input: every field is checked
 * against the limits the protocol path enforces before the server uses it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/savedstate.h"
#include "vmbus_internal.h"

#define VMBUS_STATE_VERSION 1

static const char *dev_name(const struct vmbus_chan *chan)
{
	return chan->ops->name ? chan->ops->name : "?";
}

/* ---- save ---- */

static void save_chan(struct state_writer *w, const struct vmbus_chan *c)
{
	bool open = c->state == CHAN_OPEN;
	state_put_u32(w, c->relid);
	state_put_u32(w, c->primary ? c->primary->relid : 0);
	state_put_u16(w, c->subchannel_index);
	state_put_u8(w, (uint8_t)c->state);
	state_put_u32(w, c->openid);
	state_put_u32(w, c->target_vp);
	state_put_u32(w, c->ring_gpadl);
	/* Ring pages, control page included: what OPENCHANNEL split the ring GPADL into. */
	state_put_u32(w, open ? c->in.size / VMBUS_PAGE_SIZE + 1 : 0);
	state_put_u32(w, open ? c->out.size / VMBUS_PAGE_SIZE + 1 : 0);
	state_put_bytes(w, c->userdata, sizeof(c->userdata));
}

static void save_gpadl(struct state_writer *w, const struct gpadl *g)
{
	state_put_u32(w, g->id);
	state_put_u32(w, g->relid);
	state_put_u16(w, g->rangecount);
	state_put_u16(w, g->buflen);
	state_put_u8(w, g->complete);
	if (g->complete) {
		state_put_u8(w, g->page_aligned);
		state_put_u32(w, g->npfns);
		for (uint32_t i = 0; i < g->npfns; i++)
			state_put_u64(w, g->pfns[i]);
		state_put_u64(w, g->writable);
	} else {
		state_put_u32(w, g->received);
		state_put_bytes(w, g->buf, g->received);
	}
}

int vmbus_server_save(struct vmbus_server *srv, struct state_writer *w)
{
	if (srv->restoring)
		return state_fail(-EBUSY, "vmbus: save while a restore is not finished");
	uint32_t nchans = 0;
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++) {
		const struct vmbus_chan *c = srv->chans[i];
		if (!c)
			continue;
		nchans++;
		if (c->state == CHAN_OPEN && c->ops->state_section && !c->ops->save)
			return state_fail(-EBUSY, "vmbus: channel %u (%s): the device has state but cannot save it",
					  c->relid, dev_name(c));
	}
	int rc = state_section_begin(w, STATE_SECTION_VMBUS, 0, VMBUS_STATE_VERSION, 0);
	if (rc)
		return rc;
	state_put_u8(w, srv->connected);
	state_put_u8(w, srv->offers_sent);
	state_put_u32(w, srv->version);
	state_put_u32(w, srv->target_vcpu);
	state_put_u32(w, srv->msg_sint);
	state_put_u32(w, srv->nchans);
	for (uint32_t i = 0; i < srv->nchans; i++) {
		state_put_bytes(w, &srv->chans[i]->ops->class_id, sizeof(struct vmbus_guid));
		state_put_bytes(w, &srv->chans[i]->ops->instance_id, sizeof(struct vmbus_guid));
	}
	state_put_u32(w, nchans);
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++)
		if (srv->chans[i])
			save_chan(w, srv->chans[i]);
	state_put_u32(w, srv->ngpadls);
	for (const struct gpadl *g = srv->gpadls; g; g = g->next)
		save_gpadl(w, g);
	state_put_u32(w, srv->outq_len);
	for (uint32_t k = 0; k < srv->outq_len; k++) {
		const struct out_msg *m = &srv->outq[(srv->outq_head + k) % VMBUS_OUTQ_MAX];
		state_put_u32(w, m->len);
		state_put_bytes(w, m->data, m->len);
	}
	if ((rc = state_section_end(w)))
		return rc;
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++) {
		struct vmbus_chan *c = srv->chans[i];
		if (!c || c->state != CHAN_OPEN || !c->ops->state_section)
			continue;
		if ((rc = state_section_begin(w, c->ops->state_section, c->relid, c->ops->state_version, 0)))
			return rc;
		if ((rc = c->ops->save(c, c->device_ctx, w)))
			return rc < 0 ? rc : -EIO;
		if ((rc = state_section_end(w)))
			return rc;
	}
	return 0;
}

/* ---- restore ---- */

/* Any failure: the server is reset (vmbus_server_reset() knows a restore was under way). */
static int restore_fail(struct vmbus_server *srv, int err)
{
	vmbus_server_reset(srv);
	return err;
}

/* what, and its number n unless n < 0. */
static int truncated(const char *what, int64_t n)
{
	if (n < 0)
		return state_fail(-EBADMSG, "vmbus: the saved state ends inside %s", what);
	return state_fail(-EBADMSG, "vmbus: the saved state ends inside %s %lld", what, (long long)n);
}

/* Ring page counts of the channels that were open, by relid - 1 (0: not open). */
struct open_rings {
	uint32_t in_pages[VMBUS_MAX_RELIDS];
	uint32_t out_pages[VMBUS_MAX_RELIDS];
};

static bool is_fresh(const struct vmbus_server *srv)
{
	if (srv->connected || srv->gpadls || srv->outq_len || srv->restoring)
		return false;
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++)
		if (srv->chans[i] && (i >= srv->nchans || srv->chans[i]->state != CHAN_IDLE))
			return false;
	return true;
}

static int restore_connection(struct vmbus_server *srv, struct state_cursor *c)
{
	uint8_t connected = state_get_u8(c), offers_sent = state_get_u8(c);
	uint32_t version = state_get_u32(c), target = state_get_u32(c), sint = state_get_u32(c);
	uint32_t ndev = state_get_u32(c);
	if (!state_cursor_ok(c))
		return truncated("the connection", -1);
	if (connected > 1 || offers_sent > 1 || (offers_sent && !connected))
		return state_fail(-EBADMSG, "vmbus: bad connection state (%u, %u)", connected, offers_sent);
	if (connected ? !vmbus_srv_version_supported(version) : version != 0)
		return state_fail(-EBADMSG, "vmbus: version %u.%u is not supported", version >> 16, version & 0xffff);
	if (!vmbus_srv_vp_ok(srv, target) || sint >= HV_SYNIC_SINT_COUNT)
		return state_fail(-EBADMSG, "vmbus: messages go to VP %u SINT %u, which do not exist", target, sint);
	if (ndev != srv->nchans)
		return state_fail(-EBADMSG, "vmbus: the saved state has %u devices, this VM %u", ndev, srv->nchans);
	for (uint32_t i = 0; i < ndev; i++) {
		const struct vmbus_device_ops *ops = srv->chans[i]->ops;
		struct vmbus_guid class_id, instance_id;
		state_get_bytes(c, &class_id, sizeof(class_id));
		state_get_bytes(c, &instance_id, sizeof(instance_id));
		if (!state_cursor_ok(c))
			return truncated("device", i + 1);
		if (memcmp(&class_id, &ops->class_id, sizeof(class_id)) ||
		    memcmp(&instance_id, &ops->instance_id, sizeof(instance_id)))
			return state_fail(-EBADMSG, "vmbus: channel %u: the saved device is not this VM's %s", i + 1,
					  dev_name(srv->chans[i]));
	}
	srv->connected = connected;
	srv->offers_sent = offers_sent;
	srv->version = version;
	srv->target_vcpu = target;
	srv->msg_sint = sint;
	return 0;
}

/* Channels come in relid order: every device's, then the sub-channels. Open ones stay OFFERED
 * until their rings are mapped (restore_rings). */
static int restore_channels(struct vmbus_server *srv, struct state_cursor *c, struct open_rings *rings)
{
	uint32_t n = state_get_u32(c);
	if (!state_cursor_ok(c))
		return truncated("the channel count", -1);
	if (n < srv->nchans || n > srv->nchans + (VMBUS_MAX_RELIDS - VMBUS_MAX_DEVICES))
		return state_fail(-EBADMSG, "vmbus: %u channels for %u devices", n, srv->nchans);
	uint64_t sub_indices[VMBUS_MAX_DEVICES] = {0}; /* bit i - 1: the device has sub-channel i */
	uint32_t last = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t relid = state_get_u32(c), primary = state_get_u32(c);
		uint16_t index = state_get_u16(c);
		uint8_t st = state_get_u8(c);
		uint32_t openid = state_get_u32(c), vp = state_get_u32(c), ring = state_get_u32(c);
		uint32_t in_pages = state_get_u32(c), out_pages = state_get_u32(c);
		uint8_t userdata[VMBUS_MAX_USER_DEFINED_BYTES];
		state_get_bytes(c, userdata, sizeof(userdata));
		if (!state_cursor_ok(c))
			return truncated("channel", relid);
		bool is_sub = i >= srv->nchans;
		if (is_sub ? relid <= last || relid <= VMBUS_MAX_DEVICES || relid > VMBUS_MAX_RELIDS ||
				     primary == 0 || primary > srv->nchans || index == 0 || index > VMBUS_MAX_SUBCHANNELS ||
				     (sub_indices[primary - 1] >> (index - 1) & 1)
			   : relid != i + 1 || primary != 0 || index != 0)
			return state_fail(-EBADMSG, "vmbus: channel %u: bad relid, device or sub-channel index", relid);
		last = relid;
		if (st > CHAN_RESCINDED || (is_sub && st == CHAN_IDLE) || (!srv->offers_sent && st != CHAN_IDLE))
			return state_fail(-EBADMSG, "vmbus: channel %u: bad state %u", relid, st);
		if (!vmbus_srv_vp_ok(srv, vp))
			return state_fail(-EBADMSG, "vmbus: channel %u: target VP %u does not exist", relid, vp);
		if (st == CHAN_OPEN ? in_pages < 2 || out_pages < 2 : in_pages || out_pages)
			return state_fail(-EBADMSG, "vmbus: channel %u: bad ring sizes (%u + %u pages)", relid, in_pages,
					  out_pages);
		struct vmbus_chan *chan = srv->chans[relid - 1];
		if (is_sub) {
			sub_indices[primary - 1] |= 1ull << (index - 1);
			if (!(chan = vmbus_srv_sub_new(srv->chans[primary - 1], index, relid - 1)))
				return state_fail(-ENOMEM, "vmbus: channel %u: out of memory", relid);
		}
		chan->state = st == CHAN_OPEN ? CHAN_OFFERED : (enum vmbus_chan_state)st;
		chan->openid = openid;
		chan->target_vp = vp;
		chan->ring_gpadl = ring;
		memcpy(chan->userdata, userdata, sizeof(userdata));
		rings->in_pages[relid - 1] = in_pages;
		rings->out_pages[relid - 1] = out_pages;
	}
	return 0;
}

/* One GPADL, checked as GPADL_HEADER / _BODY and gpadl_parse check it; *out owns it. */
static int restore_gpadl(struct vmbus_server *srv, struct state_cursor *c, struct gpadl **out)
{
	uint32_t id = state_get_u32(c), relid = state_get_u32(c);
	uint16_t rangecount = state_get_u16(c), buflen = state_get_u16(c);
	uint8_t complete = state_get_u8(c);
	if (!state_cursor_ok(c))
		return truncated("GPADL", id);
	struct vmbus_chan *chan = vmbus_server_channel(srv, relid);
	if (!chan || chan->state == CHAN_IDLE)
		return state_fail(-EBADMSG, "vmbus: GPADL %u: channel %u is not offered", id, relid);
	if (vmbus_srv_gpadl_find(srv, id))
		return state_fail(-EBADMSG, "vmbus: GPADL %u is in the saved state twice", id);
	if (rangecount == 0 || buflen < sizeof(struct gpa_range) + 8 || buflen % 8 || complete > 1)
		return state_fail(-EBADMSG, "vmbus: GPADL %u: bad range count or length", id);
	struct gpadl *g = calloc(1, sizeof(*g));
	if (!g)
		return state_fail(-ENOMEM, "vmbus: GPADL %u: out of memory", id);
	*out = g;
	g->id = id;
	g->relid = relid;
	g->rangecount = rangecount;
	g->buflen = buflen;
	g->complete = complete;
	if (!complete) {
		g->received = state_get_u32(c);
		if (!state_cursor_ok(c) || g->received > state_cursor_left(c))
			return truncated("GPADL", id);
		if (g->received >= buflen)
			return state_fail(-EBADMSG, "vmbus: GPADL %u: %u of %u bytes received", id, g->received, buflen);
		if (!(g->buf = malloc(buflen)))
			return state_fail(-ENOMEM, "vmbus: GPADL %u: out of memory", id);
		state_get_bytes(c, g->buf, g->received);
		return 0;
	}
	uint8_t aligned = state_get_u8(c);
	g->npfns = state_get_u32(c);
	if (!state_cursor_ok(c) || g->npfns > state_cursor_left(c) / 8)
		return truncated("GPADL", id);
	/* A parsed stream is exactly its ranges (8 bytes each) and their PFNs, at least one each. */
	if (aligned > 1 || g->npfns != buflen / 8u - rangecount || g->npfns < rangecount)
		return state_fail(-EBADMSG, "vmbus: GPADL %u: %u PFNs do not fit its ranges", id, g->npfns);
	g->page_aligned = aligned;
	if (!(g->pfns = malloc(sizeof(*g->pfns) * g->npfns)))
		return state_fail(-ENOMEM, "vmbus: GPADL %u: out of memory", id);
	for (uint32_t i = 0; i < g->npfns; i++) {
		g->pfns[i] = state_get_u64(c);
		if (!vmbus_srv_pfn_ok(srv, g->pfns[i]))
			return state_fail(-EBADMSG, "vmbus: GPADL %u: PFN %#llx is outside guest RAM", id,
					  (unsigned long long)g->pfns[i]);
	}
	g->writable = state_get_u64(c);
	if (!state_cursor_ok(c))
		return truncated("GPADL", id);
	if (g->writable > (uint64_t)g->npfns * VMBUS_PAGE_SIZE)
		return state_fail(-EBADMSG, "vmbus: GPADL %u: %llu writable bytes", id, (unsigned long long)g->writable);
	return 0;
}

/* GPADLs keep their saved order (a second save writes the same bytes). */
static int restore_gpadls(struct vmbus_server *srv, struct state_cursor *c)
{
	uint32_t n = state_get_u32(c);
	if (!state_cursor_ok(c))
		return truncated("the GPADL count", -1);
	if (n > VMBUS_MAX_GPADLS)
		return state_fail(-EBADMSG, "vmbus: %u GPADLs (at most %u)", n, VMBUS_MAX_GPADLS);
	struct gpadl **tail = &srv->gpadls;
	for (uint32_t i = 0; i < n; i++) {
		struct gpadl *g = NULL;
		int rc = restore_gpadl(srv, c, &g);
		if (!rc && srv->gpadl_pfns + vmbus_srv_gpadl_weight(g) > VMBUS_MAX_GPADL_PFNS)
			rc = state_fail(-EBADMSG, "vmbus: GPADL %u: more than %u PFNs in all", g->id, VMBUS_MAX_GPADL_PFNS);
		if (rc) {
			if (g) {
				free(g->buf);
				free(g->pfns);
				free(g);
			}
			return rc;
		}
		*tail = g;
		tail = &g->next;
		srv->ngpadls++;
		srv->gpadl_pfns += vmbus_srv_gpadl_weight(g);
		if (g->writable)
			vmbus_srv_gpadl_grant(srv, g, g->writable, true);
	}
	return 0;
}

static int restore_outq(struct vmbus_server *srv, struct state_cursor *c)
{
	uint32_t n = state_get_u32(c);
	if (!state_cursor_ok(c))
		return truncated("the message count", -1);
	if (n > VMBUS_OUTQ_MAX)
		return state_fail(-EBADMSG, "vmbus: %u queued messages (at most %u)", n, VMBUS_OUTQ_MAX);
	for (uint32_t i = 0; i < n; i++) {
		struct out_msg *m = &srv->outq[i];
		m->len = state_get_u32(c);
		if (!state_cursor_ok(c))
			return truncated("message", i);
		if (m->len < sizeof(struct vmbus_channel_message_header) || m->len > VMBUS_MAX_MESSAGE_SIZE)
			return state_fail(-EBADMSG, "vmbus: queued message %u: %u bytes", i, m->len);
		state_get_bytes(c, m->data, m->len);
		if (!state_cursor_ok(c))
			return truncated("message", i);
		srv->outq_len = i + 1;
	}
	return 0;
}

/* Map the rings of the channels that were open, as OPENCHANNEL does. */
static int restore_rings(struct vmbus_server *srv, const struct open_rings *rings)
{
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++) {
		struct vmbus_chan *chan = srv->chans[i];
		if (!rings->in_pages[i])
			continue;
		const struct gpadl *g = vmbus_srv_gpadl_find(srv, chan->ring_gpadl);
		if (!g)
			return state_fail(-EBADMSG, "vmbus: channel %u: ring GPADL %u is not in the saved state",
					  chan->relid, chan->ring_gpadl);
		if (g->relid != chan->relid)
			return state_fail(-EBADMSG, "vmbus: channel %u: ring GPADL %u belongs to channel %u", chan->relid,
					  g->id, g->relid);
		if (g->complete && (uint64_t)rings->in_pages[i] + rings->out_pages[i] != g->npfns)
			return state_fail(-EBADMSG, "vmbus: channel %u: rings of %u + %u pages in ring GPADL %u of %u",
					  chan->relid, rings->in_pages[i], rings->out_pages[i], g->id, g->npfns);
		const char *why = vmbus_srv_map_rings(srv, chan, g, rings->in_pages[i]);
		if (why)
			return state_fail(-EBADMSG, "vmbus: channel %u: %s", chan->relid, why);
		chan->state = CHAN_OPEN;
	}
	return 0;
}

int vmbus_server_restore(struct vmbus_server *srv, const struct state_section *sec)
{
	if (sec->type != STATE_SECTION_VMBUS || sec->instance != 0)
		return restore_fail(srv, state_fail(-EINVAL, "vmbus: section type %#x instance %u is not the VMBUS section",
						    sec->type, sec->instance));
	if (sec->version != VMBUS_STATE_VERSION)
		return restore_fail(srv, state_fail(-EPROTONOSUPPORT, "vmbus: state version %u is not supported (this build reads %u)",
						    sec->version, VMBUS_STATE_VERSION));
	if (!is_fresh(srv))
		return restore_fail(srv, state_fail(-EBUSY, "vmbus: restore onto a server in use"));
	srv->restoring = true;
	struct state_cursor c = sec->payload;
	struct open_rings *rings = calloc(1, sizeof(*rings));
	if (!rings)
		return restore_fail(srv, state_fail(-ENOMEM, "vmbus: out of memory"));
	int rc = restore_connection(srv, &c);
	if (!rc)
		rc = restore_channels(srv, &c, rings);
	if (!rc)
		rc = restore_gpadls(srv, &c);
	if (!rc)
		rc = restore_outq(srv, &c);
	if (!rc && state_cursor_left(&c))
		rc = state_fail(-EBADMSG, "vmbus: %zu bytes left over after the saved state", state_cursor_left(&c));
	if (!rc)
		rc = restore_rings(srv, rings);
	free(rings);
	return rc ? restore_fail(srv, rc) : 0;
}

static const char *section_name(uint32_t type)
{
	const char *name = state_section_name(type);
	return name ? name : "unknown";
}

int vmbus_server_restore_device(struct vmbus_server *srv, const struct state_section *sec)
{
	if (!srv->restoring)
		return restore_fail(srv, state_fail(-EINVAL, "vmbus: device section (%s) outside a restore",
						    section_name(sec->type)));
	struct vmbus_chan *chan = vmbus_server_channel(srv, sec->instance);
	if (!chan || chan->state != CHAN_OPEN)
		return restore_fail(srv, state_fail(-EBADMSG, "vmbus: %s section for channel %u, which is not open",
						    section_name(sec->type), sec->instance));
	if (!chan->ops->state_section || sec->type != chan->ops->state_section)
		return restore_fail(srv, state_fail(-EBADMSG, "vmbus: channel %u (%s): a %s section is not its device's",
						    chan->relid, dev_name(chan), section_name(sec->type)));
	if (chan->restored)
		return restore_fail(srv, state_fail(-EBADMSG, "vmbus: channel %u (%s): its %s section appears twice",
						    chan->relid, dev_name(chan), section_name(sec->type)));
	if (!chan->ops->restore)
		return restore_fail(srv, state_fail(-ENOTSUP, "vmbus: channel %u (%s): the device cannot restore",
						    chan->relid, dev_name(chan)));
	struct state_cursor c = sec->payload;
	int rc = chan->ops->restore(chan, chan->device_ctx, sec->version, &c);
	if (rc) {
		char why[256];
		snprintf(why, sizeof(why), "%s", state_last_error());
		return restore_fail(srv, state_fail(rc < 0 ? rc : -EIO, "vmbus: channel %u (%s): %s", chan->relid,
						    dev_name(chan), why));
	}
	chan->restored = true;
	return 0;
}

int vmbus_server_restore_finish(struct vmbus_server *srv)
{
	if (!srv->restoring)
		return restore_fail(srv, state_fail(-EINVAL, "vmbus: restore finished without a restore"));
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++) {
		const struct vmbus_chan *c = srv->chans[i];
		if (c && c->state == CHAN_OPEN && c->ops->state_section && !c->restored)
			return restore_fail(srv, state_fail(-EBADMSG, "vmbus: channel %u (%s): its %s section is missing",
							    c->relid, dev_name(c), section_name(c->ops->state_section)));
	}
	srv->restoring = false;
	vmbus_server_flush(srv);
	/* A signal in flight either way at the save is not lost: both sides look at their rings. */
	for (uint32_t i = 0; i < VMBUS_MAX_RELIDS; i++) {
		struct vmbus_chan *c = srv->chans[i];
		if (!c)
			continue;
		c->restored = false;
		if (c->state != CHAN_OPEN)
			continue;
		vmbus_srv_signal_chan(c);
		if (c->ops->on_packets)
			c->ops->on_packets(c, c->device_ctx);
		vmbus_chan_commit(c);
	}
	return 0;
}
