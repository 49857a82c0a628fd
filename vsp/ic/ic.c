/* Integration-service framework: version negotiation and request/response plumbing shared by
 * heartbeat, shutdown and time sync. The host opens every exchange; the guest (Linux hv_utils)
 * answers in the same buffer with ICMSGHDRFLAG_RESPONSE and the request's transaction id. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ic_internal.h"

static const uint32_t fw_versions[] = {IC_FW_VERSION_3, IC_FW_VERSION_1};
#define N_FW (sizeof(fw_versions) / sizeof(fw_versions[0]))
#define IC_MAX_SERVICE_VERSIONS 8

static int send_msg(struct ic_dev *dev, uint16_t type, struct ic_version frame, struct ic_version msg,
		    const void *body, uint32_t len)
{
	uint8_t buf[IC_HDR_SIZE + IC_MAX_BODY];
	if (len > sizeof(buf) - IC_HDR_SIZE || !dev->chan)
		return -1;
	struct vmbuspipe_hdr pipe = {.flags = 0, .msgsize = (uint32_t)(sizeof(struct icmsg_hdr) + len)};
	struct icmsg_hdr h = {
		.icverframe = frame,
		.icmsgtype = type,
		.icvermsg = msg,
		.icmsgsize = (uint16_t)len,
		.ictransaction_id = (uint8_t)dev->next_tid,
		.icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_REQUEST,
	};
	memcpy(buf, &pipe, sizeof(pipe));
	memcpy(buf + sizeof(pipe), &h, sizeof(h));
	memcpy(buf + IC_HDR_SIZE, body, len);
	uint64_t tid = dev->next_tid;
	if (vmbus_chan_send(dev->chan, VM_PKT_DATA_INBAND, 0, tid, buf, (uint32_t)(IC_HDR_SIZE + len)) != 0)
		return -1;
	dev->next_tid++;
	dev->pending_tid = tid;
	return 0;
}

static struct ic_version ver(uint32_t v)
{
	return (struct ic_version){.major = (uint16_t)(v >> 16), .minor = (uint16_t)v};
}

int ic_send_request(struct ic_dev *dev, const void *body, uint32_t len)
{
	if (dev->state != IC_READY)
		return -1;
	return send_msg(dev, dev->svc->msgtype, ver(dev->fw_version), ver(dev->srv_version), body, len);
}

static void send_negotiate(struct ic_dev *dev)
{
	uint8_t body[sizeof(struct icmsg_negotiate) + (N_FW + IC_MAX_SERVICE_VERSIONS) * sizeof(struct ic_version)];
	struct icmsg_negotiate n = {.icframe_vercnt = N_FW, .icmsg_vercnt = (uint16_t)dev->svc->nversions};
	memcpy(body, &n, sizeof(n));
	uint32_t off = sizeof(n);
	for (unsigned i = 0; i < N_FW; i++, off += 4) {
		struct ic_version v = ver(fw_versions[i]);
		memcpy(body + off, &v, 4);
	}
	for (unsigned i = 0; i < dev->svc->nversions; i++, off += 4) {
		struct ic_version v = ver(dev->svc->versions[i]);
		memcpy(body + off, &v, 4);
	}
	dev->state = IC_NEGOTIATING;
	if (send_msg(dev, ICMSGTYPE_NEGOTIATE, ver(IC_FW_VERSION_1), ver(IC_FW_VERSION_1), body, off) != 0)
		dev->state = IC_FAILED;
}

static bool listed(uint32_t v, const uint32_t *list, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (list[i] == v)
			return true;
	return false;
}

static void on_negotiate_response(struct ic_dev *dev, const uint8_t *body, uint32_t len)
{
	struct icmsg_negotiate n;
	struct ic_version v[2];
	if (len < sizeof(n) + sizeof(v)) {
		dev->state = IC_FAILED;
		return;
	}
	memcpy(&n, body, sizeof(n));
	memcpy(v, body + sizeof(n), sizeof(v));
	uint32_t fw = IC_VERSION(v[0].major, v[0].minor), sv = IC_VERSION(v[1].major, v[1].minor);
	if (n.icframe_vercnt != 1 || n.icmsg_vercnt != 1 || !listed(fw, fw_versions, N_FW) ||
	    !listed(sv, dev->svc->versions, dev->svc->nversions)) {
		dev->state = IC_FAILED;
		return;
	}
	dev->fw_version = fw;
	dev->srv_version = sv;
	dev->state = IC_READY;
	if (dev->svc->on_ready)
		dev->svc->on_ready(dev);
}

static void ic_on_packets(struct vmbus_chan *chan, void *ctx)
{
	struct ic_dev *dev = ctx;
	struct vmbus_packet pkt;
	int rc;
	while ((rc = vmbus_chan_recv(chan, &pkt)) != 0) {
		if (rc < 0) {
			if (rc == VMBUS_CHAN_BADPKT)
				continue;
			return;
		}
		struct icmsg_hdr h;
		if (pkt.type != VM_PKT_DATA_INBAND || pkt.data_len < IC_HDR_SIZE)
			continue; /* completions and anything else: nothing to do */
		memcpy(&h, pkt.data + sizeof(struct vmbuspipe_hdr), sizeof(h));
		uint32_t body_len = pkt.data_len - (uint32_t)IC_HDR_SIZE;
		if (!(h.icflags & ICMSGHDRFLAG_RESPONSE) || dev->pending_tid == 0 || pkt.trans_id != dev->pending_tid)
			continue; /* not an answer to what we asked: ignore */
		dev->pending_tid = 0;
		if (h.icmsgtype == ICMSGTYPE_NEGOTIATE && dev->state == IC_NEGOTIATING)
			on_negotiate_response(dev, pkt.data + IC_HDR_SIZE, body_len);
		else if (h.icmsgtype == dev->svc->msgtype && dev->state == IC_READY)
			dev->svc->on_response(dev, &h, pkt.data + IC_HDR_SIZE, body_len);
	}
}

static void ic_opened(struct vmbus_chan *chan, void *ctx)
{
	struct ic_dev *dev = ctx;
	dev->chan = chan;
	dev->pending_tid = 0;
	send_negotiate(dev);
}

static void ic_close(struct vmbus_chan *chan, void *ctx)
{
	(void)chan;
	struct ic_dev *dev = ctx;
	dev->state = IC_CLOSED;
	dev->pending_tid = 0;
	dev->chan = NULL;
}

enum ic_wait ic_wait_check(struct ic_dev *dev, uint64_t tid)
{
	if (dev->state != IC_READY)
		return IC_WAIT_CLOSED;
	if (dev->pending_tid != tid)
		return IC_WAIT_LOST;
	if (dev->now_ms < dev->deadline_ms)
		return IC_WAIT_PENDING;
	dev->pending_tid = 0;
	return IC_WAIT_EXPIRED;
}

void ic_advance(struct ic_dev *dev, uint64_t now_ms)
{
	if (dev->rebase_clock) {
		/* A restored device: a new process, maybe another host, so another monotonic clock.
		 * Until now the clock stood at 0 (the restore) and deadlines were kept relative to it;
		 * the time the VM spent saved does not count, as the guest did not run either. */
		dev->rebase_clock = false;
		dev->deadline_ms += now_ms - dev->now_ms;
		dev->now_ms = now_ms;
	} else if (now_ms > dev->now_ms) {
		dev->now_ms = now_ms;
	}
}

/* ---- Saved state ----
 * One STATE_SECTION_IC per open IC channel, version 1:
 *   u16 service (its ICMSGTYPE_*), u8 ic_state, u32 framework version, u32 service version,
 *   u64 next transaction id, u64 pending transaction id (0 none), u32 ms left before the
 *   pending transaction times out (services that time out: KVP, VSS), then the service's fields.
 * The guest's RAM, rings included, is restored as it was, so whatever was in flight is still
 * there: a request not yet read waits in the ring, an answer not yet read waits in the other
 * ring, and a request the guest is working on is answered later with the same transaction id.
 * Keeping the ids makes every such answer land as if nothing had happened: there is nothing to
 * resend and no negotiation to repeat. */
#define IC_STATE_VERSION 1

static uint32_t time_left(const struct ic_dev *dev)
{
	if (dev->deadline_ms <= dev->now_ms)
		return 0;
	uint64_t left = dev->deadline_ms - dev->now_ms;
	return left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

static int ic_save(struct vmbus_chan *chan, void *ctx, struct state_writer *w)
{
	(void)chan;
	struct ic_dev *dev = ctx;
	state_put_u16(w, dev->svc->msgtype);
	state_put_u8(w, (uint8_t)dev->state);
	state_put_u32(w, dev->fw_version);
	state_put_u32(w, dev->srv_version);
	state_put_u64(w, dev->next_tid);
	state_put_u64(w, dev->pending_tid);
	state_put_u32(w, time_left(dev));
	return dev->svc->save ? dev->svc->save(dev, w) : 0;
}

/* 0 (not negotiated) or one of ours */
static bool saved_version_ok(uint32_t v, const uint32_t *list, unsigned n)
{
	return v == 0 || listed(v, list, n);
}

static int ic_restore(struct vmbus_chan *chan, void *ctx, uint16_t version, struct state_cursor *c)
{
	struct ic_dev *dev = ctx;
	const char *name = dev->svc->name;
	if (version != IC_STATE_VERSION)
		return state_fail(-EPROTONOSUPPORT, "ic %s: state version %u, this build reads %u", name, version,
				  IC_STATE_VERSION);
	uint16_t type = state_get_u16(c);
	uint8_t st = state_get_u8(c);
	struct ic_saved s = {.chan = chan};
	s.fw_version = state_get_u32(c);
	s.srv_version = state_get_u32(c);
	s.next_tid = state_get_u64(c);
	s.pending_tid = state_get_u64(c);
	s.time_left_ms = state_get_u32(c);
	if (!state_cursor_ok(c))
		return state_fail(-EBADMSG, "ic %s: state truncated", name);
	if (type != dev->svc->msgtype)
		return state_fail(-EINVAL, "ic %s: state of another service (message type %u, want %u)", name, type,
				  dev->svc->msgtype);
	/* the channel is open, so the device has at least started negotiating */
	if (st != IC_NEGOTIATING && st != IC_READY && st != IC_FAILED)
		return state_fail(-EINVAL, "ic %s: state %u is not one of an open channel", name, st);
	s.state = (enum ic_state)st;
	if (!saved_version_ok(s.fw_version, fw_versions, N_FW))
		return state_fail(-EINVAL, "ic %s: framework version %u.%u was never offered", name, s.fw_version >> 16,
				  s.fw_version & 0xffff);
	if (!saved_version_ok(s.srv_version, dev->svc->versions, dev->svc->nversions))
		return state_fail(-EINVAL, "ic %s: service version %u.%u was never offered", name, s.srv_version >> 16,
				  s.srv_version & 0xffff);
	if (s.state == IC_READY && (!s.fw_version || !s.srv_version))
		return state_fail(-EINVAL, "ic %s: ready without negotiated versions", name);
	if (s.next_tid == 0 || s.pending_tid >= s.next_tid)
		return state_fail(-EINVAL, "ic %s: transaction %llu pending, next %llu", name,
				  (unsigned long long)s.pending_tid, (unsigned long long)s.next_tid);
	/* nothing would ever answer: the device would negotiate forever */
	if (s.state == IC_NEGOTIATING && !s.pending_tid)
		return state_fail(-EINVAL, "ic %s: negotiating with no request outstanding", name);
	if (dev->svc->restore)
		return dev->svc->restore(dev, &s, c);
	return ic_restore_commit(dev, &s, c);
}

int ic_restore_commit(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c)
{
	if (!state_cursor_ok(c))
		return state_fail(-EBADMSG, "ic %s: state truncated", dev->svc->name);
	if (state_cursor_left(c))
		return state_fail(-EBADMSG, "ic %s: %zu bytes after the state", dev->svc->name, state_cursor_left(c));
	dev->chan = s->chan;
	dev->state = s->state;
	dev->fw_version = s->fw_version;
	dev->srv_version = s->srv_version;
	dev->next_tid = s->next_tid;
	dev->pending_tid = s->pending_tid;
	dev->now_ms = 0;
	dev->deadline_ms = s->time_left_ms;
	dev->rebase_clock = true;
	return 0;
}

struct ic_dev *ic_add(struct vmbus_server *srv, const struct ic_service *svc)
{
	if (svc->nversions == 0 || svc->nversions > IC_MAX_SERVICE_VERSIONS)
		return NULL;
	struct ic_dev *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return NULL;
	dev->svc = svc;
	dev->next_tid = 1;
	dev->ops.name = svc->name;
	dev->ops.class_id = svc->class_id;
	dev->ops.instance_id = svc->instance_id;
	dev->ops.opened = ic_opened;
	dev->ops.close = ic_close;
	dev->ops.on_packets = ic_on_packets;
	dev->ops.state_section = STATE_SECTION_IC;
	dev->ops.state_version = IC_STATE_VERSION;
	dev->ops.save = ic_save;
	dev->ops.restore = ic_restore;
	if (!vmbus_server_add_device(srv, &dev->ops, dev)) {
		free(dev);
		return NULL;
	}
	return dev;
}

void ic_free(struct ic_dev *dev)
{
	free(dev);
}

enum ic_state ic_state(const struct ic_dev *dev) { return dev->state; }
uint32_t ic_framework_version(const struct ic_dev *dev) { return dev->fw_version; }
uint32_t ic_service_version(const struct ic_dev *dev) { return dev->srv_version; }
