/* Guest Service Interface (file copy IC): a host file streamed into the guest, one request at a
 * time (Linux drivers/hv/hv_fcopy.c + hv_fcopy_daemon on the other side; include/vsp/fcopy.h).
 *
 * START_FILE_COPY, then WRITE_TO_FILE fragments each sent once the last one is acknowledged,
 * then COMPLETE_FCOPY. Any failure but the guest refusing START or breaking the protocol (the
 * guest's answer to a later request, the source's, a time-out, a cancel) sends CANCEL_FCOPY, on
 * which the daemon closes and unlinks the partial file; the copy ends FAILED with the first
 * failure once that CANCEL is answered or times out. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ic_internal.h"
#include "vsp/fcopy.h"

#define FCOPY_NO_OP 0xffffffffu

struct fcopy_priv {
	void (*base_close)(struct vmbus_chan *, void *);
	enum ic_fcopy_state state;
	enum ic_fcopy_error err;        /* the failure a CANCEL in flight follows, then the result */
	uint32_t hresult;
	int source_errno;
	uint32_t op;                    /* HV_FCOPY_* outstanding, FCOPY_NO_OP none */
	uint64_t tid;                   /* its framework transaction id */
	uint32_t sent_len;              /* body bytes of the request outstanding (Linux answers as many) */
	uint64_t size, offset, acked;   /* file size; next byte to send; bytes acknowledged */
	uint32_t frag;                  /* data bytes of the WRITE outstanding */
	ic_fcopy_read_fn read;
	void *ctx;
	union {                         /* the request being built (6 KiB: not on the stack) */
		struct hv_start_fcopy start;
		struct hv_do_fcopy write;
	} buf;
};

static const uint32_t fcopy_versions[] = {IC_VERSION(1, 1)};
_Static_assert(sizeof(struct hv_do_fcopy) <= IC_MAX_BODY, "a fragment fits the framework's send buffer");

/* The service-private pointer: the slot the time-sync service uses for its clocks (see vss.c). */
static struct fcopy_priv *priv(const struct ic_dev *dev)
{
	return dev->clock_ctx;
}

static void settle(struct ic_dev *dev, enum ic_fcopy_state st, enum ic_fcopy_error err)
{
	struct fcopy_priv *p = priv(dev);
	p->state = st;
	p->err = err;
	p->op = FCOPY_NO_OP;
}

static int send_op(struct ic_dev *dev, uint32_t op, const void *body, uint32_t len)
{
	struct fcopy_priv *p = priv(dev);
	if (dev->pending_tid != 0 || ic_send_request(dev, body, len) != 0)
		return -1;
	p->op = op;
	p->tid = dev->pending_tid;
	p->sent_len = len;
	dev->deadline_ms = dev->now_ms + IC_FCOPY_TIMEOUT_MS;
	return 0;
}

static void send_hdr_op(struct ic_dev *dev, uint32_t op)
{
	struct hv_fcopy_hdr h;
	memset(&h, 0, sizeof(h));
	h.operation = op;
	if (send_op(dev, op, &h, sizeof(h)) != 0)
		settle(dev, IC_FCOPY_FAILED, priv(dev)->err != IC_FCOPY_OK ? priv(dev)->err : IC_FCOPY_E_CLOSED);
}

/* Something failed after START: have the guest delete the partial file, then end with why. */
static void cancel(struct ic_dev *dev, enum ic_fcopy_error why)
{
	struct fcopy_priv *p = priv(dev);
	p->op = FCOPY_NO_OP;
	p->err = why;
	p->state = IC_FCOPY_CANCELLING;
	send_hdr_op(dev, HV_FCOPY_CANCEL);
}

/* The next fragment, or COMPLETE after the last. */
static void send_next(struct ic_dev *dev)
{
	struct fcopy_priv *p = priv(dev);
	if (p->offset == p->size) {
		p->state = IC_FCOPY_COMPLETING;
		send_hdr_op(dev, HV_FCOPY_COMPLETE);
		return;
	}
	uint64_t left = p->size - p->offset;
	uint32_t n = left < HV_FCOPY_FRAGMENT ? (uint32_t)left : HV_FCOPY_FRAGMENT;
	struct hv_do_fcopy *w = &p->buf.write;
	memset(w, 0, offsetof(struct hv_do_fcopy, data));
	int got = p->read(p->ctx, p->offset, w->data, n);
	if (got != (int)n) {
		/* a short read (the source shrank) and a return that is no errno count as EIO */
		p->source_errno = got < 0 && got != INT_MIN ? -got : EIO;
		cancel(dev, IC_FCOPY_E_SOURCE);
		return;
	}
	memset(w->data + n, 0, HV_FCOPY_FRAGMENT - n);
	w->hdr.operation = HV_FCOPY_WRITE_TO_FILE;
	w->offset = p->offset;
	w->size = n;
	p->frag = n;
	p->state = IC_FCOPY_WRITING;
	/* the whole struct, as Linux hands sizeof(struct hv_do_fcopy) to its daemon */
	if (send_op(dev, HV_FCOPY_WRITE_TO_FILE, w, sizeof(*w)) != 0)
		settle(dev, IC_FCOPY_FAILED, IC_FCOPY_E_CLOSED);
	else
		p->offset += n;
}

static void fcopy_response(struct ic_dev *dev, const struct icmsg_hdr *hdr, const uint8_t *body, uint32_t len)
{
	(void)body;
	struct fcopy_priv *p = priv(dev);
	uint32_t op = p->op;
	if (op == FCOPY_NO_OP)
		return;
	p->op = FCOPY_NO_OP;
	bool ok = hdr->status == IC_HV_S_OK;
	if (op == HV_FCOPY_CANCEL) {
		settle(dev, IC_FCOPY_FAILED, p->err);
		return;
	}
	if (len < p->sent_len) { /* Linux answers in the request's buffer, whole */
		settle(dev, IC_FCOPY_FAILED, IC_FCOPY_E_PROTOCOL);
		return;
	}
	if (!ok) {
		p->hresult = hdr->status;
		if (op == HV_FCOPY_START_FILE_COPY)
			settle(dev, IC_FCOPY_FAILED, IC_FCOPY_E_GUEST); /* nothing was created */
		else
			cancel(dev, IC_FCOPY_E_GUEST);
		return;
	}
	if (op == HV_FCOPY_COMPLETE) {
		settle(dev, IC_FCOPY_DONE, IC_FCOPY_OK);
		return;
	}
	if (op == HV_FCOPY_WRITE_TO_FILE)
		p->acked += p->frag;
	send_next(dev);
}

static void fcopy_close(struct vmbus_chan *chan, void *ctx)
{
	struct ic_dev *dev = ctx;
	struct fcopy_priv *p = priv(dev);
	p->base_close(chan, ctx);
	/* Linux's daemon, on the channel's rescind or its own exit, drops the open file */
	if (ic_fcopy_busy(dev))
		settle(dev, IC_FCOPY_FAILED, p->state == IC_FCOPY_CANCELLING ? p->err : IC_FCOPY_E_CLOSED);
}

static const struct ic_service fcopy_svc = {
	.name = "fcopy",
	.class_id = IC_FCOPY_CLASS,
	.instance_id = VMBUS_GUID_INIT(0x8f2ab6d1, 0x3c71, 0x4d0e, 0xa5, 0x19, 0x2e, 0x64, 0xc0, 0x7b, 0x91, 0x3d),
	.msgtype = ICMSGTYPE_FCOPY,
	.versions = fcopy_versions,
	.nversions = 1,
	.on_response = fcopy_response,
};

struct ic_dev *ic_fcopy_add(struct vmbus_server *srv)
{
	struct fcopy_priv *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	struct ic_dev *dev = ic_add(srv, &fcopy_svc);
	if (!dev) {
		free(p);
		return NULL;
	}
	p->op = FCOPY_NO_OP;
	p->base_close = dev->ops.close;
	dev->ops.close = fcopy_close;
	dev->clock_ctx = p;
	return dev;
}

void ic_fcopy_free(struct ic_dev *dev)
{
	if (!dev)
		return;
	free(priv(dev));
	ic_free(dev);
}

/* UTF-8 to NUL-terminated UTF-16LE in out[HV_FCOPY_MAX_PATH]: 0, or -1 for invalid UTF-8 or a
 * string over the HV_FCOPY_MAX_PATH - 1 bytes Linux converts back. */
static int to_utf16(const char *s, uint16_t *out)
{
	size_t len = strlen(s), k = 0;
	if (len > HV_FCOPY_MAX_PATH - 1)
		return -1;
	for (size_t i = 0; i < len;) {
		const uint8_t *u = (const uint8_t *)s + i;
		uint32_t cp;
		size_t n;
		if (u[0] < 0x80) {
			cp = u[0], n = 1;
		} else if ((u[0] & 0xe0) == 0xc0) {
			cp = u[0] & 0x1fu, n = 2;
		} else if ((u[0] & 0xf0) == 0xe0) {
			cp = u[0] & 0x0fu, n = 3;
		} else if ((u[0] & 0xf8) == 0xf0) {
			cp = u[0] & 0x07u, n = 4;
		} else {
			return -1;
		}
		if (i + n > len)
			return -1;
		for (size_t j = 1; j < n; j++) {
			if ((u[j] & 0xc0) != 0x80)
				return -1;
			cp = cp << 6 | (u[j] & 0x3fu);
		}
		static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return -1; /* overlong, out of range, or a surrogate */
		/* n UTF-8 bytes never make more than n UTF-16 units, so k stays below len + 1 */
		if (cp >= 0x10000) {
			cp -= 0x10000;
			out[k++] = (uint16_t)(0xd800 | (cp >> 10));
			out[k++] = (uint16_t)(0xdc00 | (cp & 0x3ff));
		} else {
			out[k++] = (uint16_t)cp;
		}
		i += n;
	}
	out[k] = 0;
	return 0;
}

int ic_fcopy_start(struct ic_dev *dev, const char *guest_dir, const char *file_name, uint64_t size, uint32_t flags,
		   ic_fcopy_read_fn read, void *ctx, uint64_t now_ms)
{
	struct fcopy_priv *p = priv(dev);
	ic_advance(dev, now_ms);
	if (ic_fcopy_busy(dev))
		return -EBUSY;
	if (!guest_dir || guest_dir[0] != '/' || !file_name || !file_name[0] || strchr(file_name, '/') ||
	    !strcmp(file_name, ".") || !strcmp(file_name, "..") || !read ||
	    (flags & ~(HV_FCOPY_OVERWRITE | HV_FCOPY_CREATE_PATH)))
		return -EINVAL;
	uint16_t name16[HV_FCOPY_MAX_PATH] = {0}, dir16[HV_FCOPY_MAX_PATH] = {0}; /* nothing of ours after the NUL */
	if (to_utf16(file_name, name16) < 0 || to_utf16(guest_dir, dir16) < 0)
		return -EINVAL;
	if (ic_state(dev) != IC_READY)
		return -ENOTCONN;
	/* No copy of ours is waiting, so a transaction the framework still holds came with a restored
	 * device (its service state starts IDLE): its answer, if one comes, is no longer wanted. */
	dev->pending_tid = 0;
	struct hv_start_fcopy *m = &p->buf.start;
	memset(m, 0, sizeof(*m));
	memcpy(m->file_name, name16, sizeof(name16)); /* packed: no pointers into it */
	memcpy(m->path_name, dir16, sizeof(dir16));
	m->hdr.operation = HV_FCOPY_START_FILE_COPY;
	m->copy_flags = flags;
	m->file_size = size;
	if (send_op(dev, HV_FCOPY_START_FILE_COPY, m, sizeof(*m)) != 0)
		return -ENOTCONN;
	p->state = IC_FCOPY_STARTING;
	p->err = IC_FCOPY_OK;
	p->hresult = 0;
	p->source_errno = 0;
	p->size = size;
	p->offset = p->acked = 0;
	p->read = read;
	p->ctx = ctx;
	return 0;
}

int ic_fcopy_cancel(struct ic_dev *dev, uint64_t now_ms)
{
	struct fcopy_priv *p = priv(dev);
	ic_advance(dev, now_ms);
	/* After COMPLETE the daemon has closed the file and forgotten its name: a CANCEL would
	 * delete nothing, and the copy ends DONE. */
	if (!ic_fcopy_busy(dev) || p->state == IC_FCOPY_COMPLETING || p->state == IC_FCOPY_CANCELLING)
		return -1;
	if (p->op != FCOPY_NO_OP) {
		/* The outstanding request's answer is no longer wanted: it arrives with a stale id. The
		 * CANCEL waits in the ring behind it, as Linux reads one request at a time. */
		dev->pending_tid = 0;
	}
	cancel(dev, IC_FCOPY_E_CANCELLED);
	return 0;
}

void ic_fcopy_tick(struct ic_dev *dev, uint64_t now_ms)
{
	struct fcopy_priv *p = priv(dev);
	ic_advance(dev, now_ms);
	if (p->op == FCOPY_NO_OP)
		return;
	switch (ic_wait_check(dev, p->tid)) {
	case IC_WAIT_PENDING:
		return;
	case IC_WAIT_CLOSED:
		settle(dev, IC_FCOPY_FAILED, IC_FCOPY_E_CLOSED);
		return;
	case IC_WAIT_LOST:
		settle(dev, IC_FCOPY_FAILED, IC_FCOPY_E_PROTOCOL);
		return;
	case IC_WAIT_EXPIRED:
		break;
	}
	uint32_t op = p->op;
	p->op = FCOPY_NO_OP;
	if (op == HV_FCOPY_CANCEL)
		settle(dev, IC_FCOPY_FAILED, p->err);
	else /* START too: the daemon may still create the file, and a START it failed leaves it no
	      * name to delete (hv_start_fcopy clears target_fname) */
		cancel(dev, IC_FCOPY_E_TIMEOUT);
}

enum ic_fcopy_state ic_fcopy_state(const struct ic_dev *dev) { return priv(dev)->state; }
enum ic_fcopy_error ic_fcopy_error(const struct ic_dev *dev) { return priv(dev)->err; }
uint32_t ic_fcopy_hresult(const struct ic_dev *dev) { return priv(dev)->hresult; }
int ic_fcopy_source_errno(const struct ic_dev *dev) { return priv(dev)->source_errno; }
uint64_t ic_fcopy_bytes_done(const struct ic_dev *dev) { return priv(dev)->acked; }
uint64_t ic_fcopy_size(const struct ic_dev *dev) { return priv(dev)->size; }

bool ic_fcopy_busy(const struct ic_dev *dev)
{
	enum ic_fcopy_state s = priv(dev)->state;
	return s == IC_FCOPY_STARTING || s == IC_FCOPY_WRITING || s == IC_FCOPY_COMPLETING || s == IC_FCOPY_CANCELLING;
}

const char *ic_fcopy_state_name(enum ic_fcopy_state s)
{
	switch (s) {
	case IC_FCOPY_IDLE: return "idle";
	case IC_FCOPY_STARTING: return "starting";
	case IC_FCOPY_WRITING: return "writing";
	case IC_FCOPY_COMPLETING: return "completing";
	case IC_FCOPY_CANCELLING: return "cancelling";
	case IC_FCOPY_DONE: return "done";
	case IC_FCOPY_FAILED: return "failed";
	}
	return "?";
}

const char *ic_fcopy_error_name(enum ic_fcopy_error e)
{
	switch (e) {
	case IC_FCOPY_OK: return "ok";
	case IC_FCOPY_E_GUEST: return "the guest refused";
	case IC_FCOPY_E_SOURCE: return "the source could not be read";
	case IC_FCOPY_E_TIMEOUT: return "the guest did not answer in time";
	case IC_FCOPY_E_CLOSED: return "the guest closed the Guest Service Interface channel";
	case IC_FCOPY_E_CANCELLED: return "cancelled";
	case IC_FCOPY_E_PROTOCOL: return "the guest's answer was malformed";
	}
	return "?";
}

const char *ic_fcopy_hresult_text(uint32_t hresult)
{
	switch (hresult) {
	case IC_HV_ERROR_ALREADY_EXISTS: return "the file already exists (-Force replaces it)";
	case IC_HV_ERROR_DISK_FULL: return "the guest's disk is full";
	case IC_HV_ERROR_PATH_NOT_FOUND: return "the guest folder does not exist (-CreateFullPath makes it)";
	case IC_HV_E_FAIL: return "hv_fcopy_daemon could not create or write the file (is it running? does the folder "
				  "exist, or -CreateFullPath?)";
	default: return NULL;
	}
}
