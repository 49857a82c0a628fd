/* VSS IC: host-driven freeze/thaw of the guest's file systems around a backup (Linux
 * drivers/hv/hv_snapshot.c + hv_vss_daemon on the other side).
 *
 * One transaction at a time (the framework's pending transaction id); Linux reads no further
 * request until it has answered the current one, so after a host-side timeout the next request
 * (THAW) simply waits in the ring until the guest answers the old one, whose late answer the
 * framework ignores (stale transaction id). */
#include <stdlib.h>
#include <string.h>

#include "ic_internal.h"
#include "vsp/vss.h"

#define VSS_NO_OP 0xff

struct vss_priv {
	ic_vss_done_fn done;
	void *ctx;
	void (*base_close)(struct vmbus_chan *, void *);
	enum ic_vss_state state;
	enum ic_vss_error err;
	uint32_t hresult;
	uint32_t bu_flags;
	uint8_t op;                 /* HV_VSS_OP_* outstanding, VSS_NO_OP none */
	uint64_t tid;               /* framework transaction id of op */
	uint64_t now;               /* latest time the caller gave us */
	uint64_t deadline;
	uint32_t freeze_ms, other_ms;
	enum ic_vss_error recovering; /* != OK: the THAW in flight follows this FREEZE failure */
};

static const uint32_t vss_versions[] = {IC_VERSION(5, 0)};

/* struct ic_dev has no service-private pointer; the context slot the time-sync service uses for
 * its clocks is free in every other service and carries ours. */
static struct vss_priv *priv(const struct ic_dev *dev)
{
	return dev->clock_ctx;
}

static void settle(struct ic_dev *dev, enum ic_vss_state st, enum ic_vss_error err)
{
	struct vss_priv *p = priv(dev);
	p->state = st;
	p->err = err;
	p->op = VSS_NO_OP;
	p->recovering = IC_VSS_OK;
	if (p->done)
		p->done(p->ctx, dev, st, err);
}

static int send_op(struct ic_dev *dev, uint8_t op)
{
	struct vss_priv *p = priv(dev);
	struct hv_vss_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr.operation = op;
	if (dev->pending_tid != 0 || ic_send_request(dev, &m, sizeof(m)) != 0)
		return -1;
	p->op = op;
	p->tid = dev->pending_tid;
	p->deadline = p->now + (op == HV_VSS_OP_FREEZE ? p->freeze_ms : p->other_ms);
	return 0;
}

/* A FREEZE failed or timed out: thaw in case the daemon froze anything (it may still finish
 * freezing after we gave up), then report the original failure. */
static void recover(struct ic_dev *dev, enum ic_vss_error why)
{
	struct vss_priv *p = priv(dev);
	p->op = VSS_NO_OP;
	if (why == IC_VSS_E_TIMEOUT && send_op(dev, HV_VSS_OP_THAW) == 0) {
		p->state = IC_VSS_THAWING;
		p->recovering = why;
		return;
	}
	settle(dev, IC_VSS_FAILED, why);
}

static void vss_response(struct ic_dev *dev, const struct icmsg_hdr *hdr, const uint8_t *body, uint32_t len)
{
	struct vss_priv *p = priv(dev);
	uint8_t op = p->op;
	if (op == VSS_NO_OP)
		return;
	p->op = VSS_NO_OP;
	struct hv_vss_msg m;
	bool ok = hdr->status == IC_HV_S_OK;
	if (len < sizeof(m)) {
		/* Linux answers in the request's buffer, so a shorter body is not Linux */
		if (op == HV_VSS_OP_THAW && p->recovering != IC_VSS_OK)
			settle(dev, IC_VSS_FAILED, p->recovering);
		else
			settle(dev, IC_VSS_FAILED, IC_VSS_E_PROTOCOL);
		return;
	}
	memcpy(&m, body, sizeof(m));
	if (!ok)
		p->hresult = hdr->status;
	switch (op) {
	case HV_VSS_OP_HOT_BACKUP:
		if (!ok) {
			settle(dev, IC_VSS_FAILED, IC_VSS_E_GUEST);
			return;
		}
		p->bu_flags = m.flags;
		if (send_op(dev, HV_VSS_OP_FREEZE) != 0)
			settle(dev, IC_VSS_FAILED, IC_VSS_E_NOT_READY);
		return;
	case HV_VSS_OP_FREEZE:
		/* hv_vss_daemon thaws whatever it froze when a freeze fails */
		settle(dev, ok ? IC_VSS_FROZEN : IC_VSS_FAILED, ok ? IC_VSS_OK : IC_VSS_E_GUEST);
		return;
	case HV_VSS_OP_THAW:
		if (p->recovering != IC_VSS_OK)
			settle(dev, IC_VSS_FAILED, p->recovering);
		else
			settle(dev, ok ? IC_VSS_IDLE : IC_VSS_FAILED, ok ? IC_VSS_OK : IC_VSS_E_GUEST);
		return;
	default:
		return;
	}
}

static void vss_close(struct vmbus_chan *chan, void *ctx)
{
	struct ic_dev *dev = ctx;
	struct vss_priv *p = priv(dev);
	p->base_close(chan, ctx);
	/* A guest that goes away (reboot, driver unload) thaws on its own: Linux's
	 * hv_vss_pre_suspend / daemon exit leave nothing frozen. Report what we were doing. */
	if (p->state == IC_VSS_FREEZING || p->state == IC_VSS_THAWING || p->state == IC_VSS_FROZEN)
		settle(dev, IC_VSS_FAILED, IC_VSS_E_CLOSED);
	p->op = VSS_NO_OP;
}

static const struct ic_service vss_svc = {
	.name = "vss",
	.class_id = IC_VSS_CLASS,
	.instance_id = VMBUS_GUID_INIT(0x6d0bb4c2, 0x1f5a, 0x4a4e, 0x9b, 0x0e, 0x5d, 0x2c, 0x71, 0x3a, 0x88, 0x14),
	.msgtype = ICMSGTYPE_VSS,
	.versions = vss_versions,
	.nversions = 1,
	.on_response = vss_response,
};

struct ic_dev *ic_vss_add(struct vmbus_server *srv, ic_vss_done_fn done, void *ctx)
{
	struct vss_priv *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	struct ic_dev *dev = ic_add(srv, &vss_svc);
	if (!dev) {
		free(p);
		return NULL;
	}
	p->done = done;
	p->ctx = ctx;
	p->op = VSS_NO_OP;
	p->freeze_ms = IC_VSS_FREEZE_TIMEOUT_MS;
	p->other_ms = IC_VSS_OTHER_TIMEOUT_MS;
	/* the server keeps a pointer to dev->ops: chain our close behind the framework's */
	p->base_close = dev->ops.close;
	dev->ops.close = vss_close;
	dev->clock_ctx = p;
	return dev;
}

void ic_vss_free(struct ic_dev *dev)
{
	if (!dev)
		return;
	free(priv(dev));
	ic_free(dev);
}

void ic_vss_set_timeouts(struct ic_dev *dev, uint32_t freeze_ms, uint32_t other_ms)
{
	priv(dev)->freeze_ms = freeze_ms;
	priv(dev)->other_ms = other_ms;
}

static void advance(struct vss_priv *p, uint64_t now_ms)
{
	if (now_ms > p->now)
		p->now = now_ms;
}

int ic_vss_freeze(struct ic_dev *dev, uint64_t now_ms)
{
	struct vss_priv *p = priv(dev);
	advance(p, now_ms);
	if (p->state != IC_VSS_IDLE && p->state != IC_VSS_FAILED)
		return -1;
	if (ic_state(dev) != IC_READY || send_op(dev, HV_VSS_OP_HOT_BACKUP) != 0)
		return -1;
	p->state = IC_VSS_FREEZING;
	p->err = IC_VSS_OK;
	p->hresult = 0;
	return 0;
}

int ic_vss_thaw(struct ic_dev *dev, uint64_t now_ms)
{
	struct vss_priv *p = priv(dev);
	advance(p, now_ms);
	if (p->state != IC_VSS_FROZEN && p->state != IC_VSS_FAILED)
		return -1;
	if (ic_state(dev) != IC_READY || send_op(dev, HV_VSS_OP_THAW) != 0)
		return -1;
	p->state = IC_VSS_THAWING;
	p->err = IC_VSS_OK;
	p->hresult = 0;
	return 0;
}

void ic_vss_tick(struct ic_dev *dev, uint64_t now_ms)
{
	struct vss_priv *p = priv(dev);
	advance(p, now_ms);
	if (p->op == VSS_NO_OP)
		return;
	if (ic_state(dev) != IC_READY) {
		settle(dev, IC_VSS_FAILED, IC_VSS_E_CLOSED);
		return;
	}
	if (dev->pending_tid != p->tid) {
		/* the framework consumed an answer with our id but another message type */
		settle(dev, IC_VSS_FAILED, IC_VSS_E_PROTOCOL);
		return;
	}
	if (p->now < p->deadline)
		return;
	uint8_t op = p->op;
	dev->pending_tid = 0; /* a late answer now carries a stale id and is ignored */
	p->op = VSS_NO_OP;
	if (op == HV_VSS_OP_FREEZE)
		recover(dev, IC_VSS_E_TIMEOUT);
	else if (op == HV_VSS_OP_THAW && p->recovering != IC_VSS_OK)
		settle(dev, IC_VSS_FAILED, p->recovering);
	else
		settle(dev, IC_VSS_FAILED, IC_VSS_E_TIMEOUT);
}

enum ic_vss_state ic_vss_state(const struct ic_dev *dev) { return priv(dev)->state; }
enum ic_vss_error ic_vss_error(const struct ic_dev *dev) { return priv(dev)->err; }
uint32_t ic_vss_hresult(const struct ic_dev *dev) { return priv(dev)->hresult; }
uint32_t ic_vss_backup_flags(const struct ic_dev *dev) { return priv(dev)->bu_flags; }

const char *ic_vss_state_name(enum ic_vss_state s)
{
	switch (s) {
	case IC_VSS_IDLE: return "idle";
	case IC_VSS_FREEZING: return "freezing";
	case IC_VSS_FROZEN: return "frozen";
	case IC_VSS_THAWING: return "thawing";
	case IC_VSS_FAILED: return "failed";
	}
	return "?";
}

const char *ic_vss_error_name(enum ic_vss_error e)
{
	switch (e) {
	case IC_VSS_OK: return "ok";
	case IC_VSS_E_NOT_READY: return "not ready";
	case IC_VSS_E_GUEST: return "guest refused";
	case IC_VSS_E_TIMEOUT: return "timeout";
	case IC_VSS_E_CLOSED: return "channel closed";
	case IC_VSS_E_PROTOCOL: return "protocol error";
	}
	return "?";
}
