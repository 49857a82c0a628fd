/* VSS IC: host-driven freeze/thaw of the guest's file systems around a backup (Linux
 * drivers/hv/hv_snapshot.c + hv_vss_daemon on the other side).
 *
 * One transaction at a time (the framework's pending transaction id); Linux reads no further
 * request until it has answered the current one, so after a host-side timeout the next request
 * (THAW) simply waits in the ring until the guest answers the old one, whose late answer the
 * framework ignores (stale transaction id). */
#include <errno.h>
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
	dev->deadline_ms = dev->now_ms + (op == HV_VSS_OP_FREEZE ? p->freeze_ms : p->other_ms);
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

/* Saved: u8 state (enum ic_vss_state), u8 error (enum ic_vss_error), u8 operation outstanding
 * (HV_VSS_OP_*, 0xff none), u8 failure a recovery THAW follows (enum ic_vss_error), u32 hresult,
 * u32 HOT_BACKUP flags, u64 transaction id of the operation.
 * An operation in flight is resumed, not failed: the guest answers it after the restore with the
 * saved transaction id (hv_vss_daemon may be inside FIFREEZE right now), the time left to it is
 * kept, and a FREEZE that never comes back still times out into the recovery THAW. FROZEN stays
 * FROZEN: the guest's file systems are frozen in the saved RAM, and ic_vss_thaw() after the
 * restore thaws them as it would have before. */
static int vss_save(struct ic_dev *dev, struct state_writer *w)
{
	struct vss_priv *p = priv(dev);
	state_put_u8(w, (uint8_t)p->state);
	state_put_u8(w, (uint8_t)p->err);
	state_put_u8(w, p->op);
	state_put_u8(w, (uint8_t)p->recovering);
	state_put_u32(w, p->hresult);
	state_put_u32(w, p->bu_flags);
	state_put_u64(w, p->tid);
	return 0;
}

static int vss_restore(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c)
{
	struct vss_priv *p = priv(dev);
	uint8_t st = state_get_u8(c), err = state_get_u8(c), op = state_get_u8(c), rec = state_get_u8(c);
	uint32_t hresult = state_get_u32(c), bu_flags = state_get_u32(c);
	uint64_t tid = state_get_u64(c);
	if (!state_cursor_ok(c))
		return ic_restore_commit(dev, s, c); /* reports the truncation */
	if (st > IC_VSS_FAILED || err > IC_VSS_E_PROTOCOL || rec > IC_VSS_E_PROTOCOL)
		return state_fail(-EINVAL, "ic vss: state %u, error %u, recovering %u out of range", st, err, rec);
	bool busy = st == IC_VSS_FREEZING || st == IC_VSS_THAWING;
	if (op != VSS_NO_OP && op != HV_VSS_OP_HOT_BACKUP && op != HV_VSS_OP_FREEZE && op != HV_VSS_OP_THAW)
		return state_fail(-EINVAL, "ic vss: operation %u is never sent", op);
	/* in progress exactly while an operation is outstanding, else nothing would end it */
	if (busy != (op != VSS_NO_OP) || (op == HV_VSS_OP_THAW) != (st == IC_VSS_THAWING))
		return state_fail(-EINVAL, "ic vss: state %s with operation %u outstanding", ic_vss_state_name(st), op);
	if ((st == IC_VSS_FAILED) != (err != IC_VSS_OK))
		return state_fail(-EINVAL, "ic vss: state %s with error %s", ic_vss_state_name(st), ic_vss_error_name(err));
	if (rec != IC_VSS_OK && op != HV_VSS_OP_THAW)
		return state_fail(-EINVAL, "ic vss: recovering from %s without a THAW outstanding", ic_vss_error_name(rec));
	if (op != VSS_NO_OP && (s->state != IC_READY || tid == 0 || tid >= s->next_tid))
		return state_fail(-EINVAL, "ic vss: operation %u outstanding as transaction %llu (next %llu)", op,
				  (unsigned long long)tid, (unsigned long long)s->next_tid);
	int rc = ic_restore_commit(dev, s, c);
	if (rc)
		return rc;
	p->state = st;
	p->err = err;
	p->op = op;
	p->recovering = rec;
	p->hresult = hresult;
	p->bu_flags = bu_flags;
	p->tid = tid;
	return 0;
}

static const struct ic_service vss_svc = {
	.name = "vss",
	.class_id = IC_VSS_CLASS,
	.instance_id = VMBUS_GUID_INIT(0x6d0bb4c2, 0x1f5a, 0x4a4e, 0x9b, 0x0e, 0x5d, 0x2c, 0x71, 0x3a, 0x88, 0x14),
	.msgtype = ICMSGTYPE_VSS,
	.versions = vss_versions,
	.nversions = 1,
	.on_response = vss_response,
	.save = vss_save,
	.restore = vss_restore,
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

int ic_vss_freeze(struct ic_dev *dev, uint64_t now_ms)
{
	struct vss_priv *p = priv(dev);
	ic_advance(dev, now_ms);
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
	ic_advance(dev, now_ms);
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
	ic_advance(dev, now_ms);
	if (p->op == VSS_NO_OP)
		return;
	switch (ic_wait_check(dev, p->tid)) {
	case IC_WAIT_PENDING:
		return;
	case IC_WAIT_CLOSED:
		settle(dev, IC_VSS_FAILED, IC_VSS_E_CLOSED);
		return;
	case IC_WAIT_LOST:
		settle(dev, IC_VSS_FAILED, IC_VSS_E_PROTOCOL);
		return;
	case IC_WAIT_EXPIRED:
		break;
	}
	uint8_t op = p->op;
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
