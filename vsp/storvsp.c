/* storvsp: storvsc protocol over VMBus on top of the SCSI target (vsp/scsi.c). See
 * include/vsp/storvsp.h and docs/storvsp.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "state/savedstate.h"
#include "vhd/vdisk.h"
#include "vmbus/channel.h"
#include "vsp/io_limit.h"
#include "vsp/scsi.h"
#include "vsp/storvsp.h"

#define PAGE 4096u
#define MAX_IOV (STORVSP_MAX_TRANSFER / PAGE + 1)
#define MAX_INFLIGHT 4096

enum init_state { ST_NONE, ST_BEGUN, ST_READY };

struct storvsp;

struct chan_state {
	struct storvsp *s;
	struct vmbus_chan *chan;
	uint64_t gen;            /* bumped at open and close: stale completions are dropped */
	bool open;
	enum init_state state;
	uint16_t version;
	struct req *pend_head, *pend_tail; /* completions waiting for ring space */
	unsigned npend;
};

struct req {
	struct req *next;
	struct chan_state *cs;
	uint64_t gen;
	uint64_t trans_id;
	uint32_t lun;
	uint32_t xfer;                   /* data transfer length (bytes covered by iov) */
	struct vmscsi_request srb;       /* as received; the completion is built from it */
	struct scsi_result r;
	uint32_t done_bytes;
	bool granted;                    /* iov is granted for host writes (host.grant) */
	uint64_t release_ns;             /* held back by its LUN's limits until then */
	uint32_t niov;
	struct iovec iov[];
};

struct storvsp {
	struct storvsp_host host;
	struct vmbus_device_ops ops;
	struct scsi_target target;
	struct scsi_disk sdisk[SCSI_MAX_LUNS];
	struct scsi_mmc mmc[SCSI_MAX_LUNS];       /* DVD drives' media state */
	struct storvsp_disk disks[SCSI_MAX_LUNS];
	unsigned ndisks;
	struct chan_state cs[1 + STORVSP_MAX_SUBCHANNELS]; /* by sub-channel index; 0 = primary */
	/* I/O pool */
	pthread_mutex_t qlock;
	pthread_cond_t qcond, idle;
	struct req *qhead, *qtail;
	unsigned busy;           /* requests queued or in disk work */
	/* Requests given to the pool whose completion is not yet sent or queued on its channel:
	 * busy drops before the completion is posted (a closing channel waits for busy under the
	 * VMBus lock), so storvsp_drain waits for this instead. */
	unsigned outstanding;
	bool stop;
	pthread_t *threads;
	unsigned nthreads;
	/* Storage QoS (storvsp_set_limits), under qlock: per LUN its limits and the reads and
	 * writes they hold back, oldest first (counted in busy and outstanding: they hold guest
	 * buffers); the QoS thread hands each to the pool at its release time. */
	struct io_limit limits[SCSI_MAX_LUNS];
	struct req *held_head[SCSI_MAX_LUNS], *held_tail[SCSI_MAX_LUNS];
	pthread_cond_t qos_cond;
	pthread_t qos_thread;
	bool qos_started, qos_stop;
	struct storvsp_stats stats;
};

static void stat_add(uint64_t *p)
{
	__atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
}

/* The grant check (host.grant, a debug mode): the guest lets us write a request's buffers
 * until we complete it. */
static void req_grant(struct storvsp *s, struct req *q, bool on)
{
	if (!s->host.grant || q->granted == on)
		return;
	q->granted = on;
	for (uint32_t i = 0; i < q->niov; i++)
		s->host.grant(s->host.opaque, q->iov[i].iov_base, q->iov[i].iov_len, on);
}

/* ---- completions ---- */

static bool try_send(struct chan_state *cs, struct req *q)
{
	struct vstor_packet pkt;
	memset(&pkt, 0, sizeof(pkt));
	pkt.operation = VSTOR_OPERATION_COMPLETE_IO;
	struct vmscsi_request srb = q->srb;
	memset(srb.sense_data, 0, sizeof(srb.sense_data));
	srb.sense_info_length = 0;
	if (q->r.action == SCSI_NO_LUN) {
		srb.srb_status = SRB_STATUS_INVALID_LUN;
		srb.scsi_status = 0;
		srb.data_transfer_length = 0;
	} else if (q->r.status == SCSI_STATUS_GOOD && q->r.action != (enum scsi_action)-1) {
		srb.srb_status = SRB_STATUS_SUCCESS;
		srb.scsi_status = SCSI_STATUS_GOOD;
		srb.data_transfer_length = q->done_bytes;
	} else if (q->r.action == (enum scsi_action)-1) { /* malformed SRB */
		srb.srb_status = SRB_STATUS_INVALID_REQUEST;
		srb.scsi_status = 0;
		srb.data_transfer_length = 0;
	} else {
		srb.srb_status = SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID;
		srb.scsi_status = q->r.status;
		srb.data_transfer_length = 0;
		memcpy(srb.sense_data, q->r.sense, q->r.sense_len);
		srb.sense_info_length = q->r.sense_len;
	}
	memcpy(&pkt.vm_srb, &srb, sizeof(srb));
	int rc = vmbus_chan_complete(cs->chan, q->trans_id, &pkt, sizeof(pkt));
	return rc != VMBUS_CHAN_FULL;
}

static void flush_pending(struct chan_state *cs)
{
	while (cs->pend_head) {
		struct req *q = cs->pend_head;
		if (!try_send(cs, q))
			return;
		cs->pend_head = q->next;
		if (!cs->pend_head)
			cs->pend_tail = NULL;
		cs->npend--;
		free(q);
	}
}

static void drop_pending(struct chan_state *cs)
{
	while (cs->pend_head) {
		struct req *q = cs->pend_head;
		cs->pend_head = q->next;
		free(q);
	}
	cs->pend_tail = NULL;
	cs->npend = 0;
}

/* Under the VMBus lock (device thread or an I/O thread holding it). */
static void complete_locked(struct req *q)
{
	struct chan_state *cs = q->cs;
	req_grant(cs->s, q, false); /* before the guest can see the completion and reuse the pages */
	if (!cs->open || cs->gen != q->gen) {
		free(q);
		return;
	}
	if (cs->pend_head) {
		q->next = NULL;
		cs->pend_tail->next = q;
		cs->pend_tail = q;
		cs->npend++;
		flush_pending(cs);
		return;
	}
	if (try_send(cs, q)) {
		free(q);
		return;
	}
	q->next = NULL;
	cs->pend_head = cs->pend_tail = q;
	cs->npend = 1;
}

/* ---- data movement between guest buffers and host memory ---- */

static void iov_copy_out(const struct req *q, void *dst, uint32_t len) /* guest -> host */
{
	uint8_t *d = dst;
	for (uint32_t i = 0; i < q->niov && len; i++) {
		uint32_t n = q->iov[i].iov_len < len ? (uint32_t)q->iov[i].iov_len : len;
		memcpy(d, q->iov[i].iov_base, n);
		d += n;
		len -= n;
	}
}

static void iov_copy_in(const struct req *q, const void *src, uint32_t len) /* host -> guest */
{
	const uint8_t *s = src;
	for (uint32_t i = 0; i < q->niov && len; i++) {
		uint32_t n = q->iov[i].iov_len < len ? (uint32_t)q->iov[i].iov_len : len;
		memcpy(q->iov[i].iov_base, s, n);
		s += n;
		len -= n;
	}
}

static bool iov_aligned(const struct req *q, uint32_t unit, uint64_t len)
{
	uint64_t covered = 0;
	for (uint32_t i = 0; i < q->niov && covered < len; i++) {
		uint64_t n = q->iov[i].iov_len;
		if (covered + n > len)
			n = len - covered;
		if (n % unit)
			return false;
		covered += n;
	}
	return covered == len;
}

/* ---- disk work (I/O thread, or inline) ---- */

static int do_rw(struct storvsp *s, struct req *q, bool write)
{
	struct vdisk *d = s->disks[q->lun].disk;
	uint32_t unit = write ? s->sdisk[q->lun].logical_sector : 512;
	uint64_t off = q->r.offset, len = q->r.length;
	int rc = 0;
	if (iov_aligned(q, unit, len)) {
		uint64_t done = 0;
		for (uint32_t i = 0; i < q->niov && done < len && rc >= 0; i++) {
			size_t n = q->iov[i].iov_len;
			if (done + n > len)
				n = (size_t)(len - done);
			rc = write ? vdisk_write(d, q->iov[i].iov_base, off + done, n)
				   : vdisk_read(d, q->iov[i].iov_base, off + done, n);
			done += n;
		}
	} else {
		void *bounce = malloc((size_t)len);
		if (!bounce)
			return -ENOMEM;
		if (write) {
			iov_copy_out(q, bounce, (uint32_t)len);
			rc = vdisk_write(d, bounce, off, (size_t)len);
		} else {
			rc = vdisk_read(d, bounce, off, (size_t)len);
			if (rc >= 0)
				iov_copy_in(q, bounce, (uint32_t)len);
		}
		free(bounce);
	}
	if (rc >= 0 && write && q->r.fua)
		rc = vdisk_flush(d);
	return rc < 0 ? rc : 0;
}

static int do_write_same(struct storvsp *s, struct req *q)
{
	struct vdisk *d = s->disks[q->lun].disk;
	uint32_t bs = s->sdisk[q->lun].logical_sector;
	uint8_t *block = calloc(1, bs);
	if (!block)
		return -ENOMEM;
	bool ndob = q->r.fua;
	if (!ndob)
		iov_copy_out(q, block, bs);
	bool zero = true;
	for (uint32_t i = 0; i < bs && zero; i++)
		zero = block[i] == 0;
	int rc = 0;
	if (q->r.unmap && zero) {
		rc = vdisk_discard(d, q->r.offset, q->r.length);
	} else {
		size_t chunk = 1u << 20;
		if (chunk > q->r.length)
			chunk = (size_t)q->r.length;
		uint8_t *buf = malloc(chunk);
		if (!buf) {
			free(block);
			return -ENOMEM;
		}
		for (size_t o = 0; o < chunk; o += bs)
			memcpy(buf + o, block, bs);
		for (uint64_t done = 0; done < q->r.length && rc >= 0;) {
			size_t n = q->r.length - done < chunk ? (size_t)(q->r.length - done) : chunk;
			rc = vdisk_write(d, buf, q->r.offset + done, n);
			done += n;
		}
		free(buf);
	}
	free(block);
	return rc < 0 ? rc : 0;
}

static int do_unmap(struct storvsp *s, struct req *q)
{
	uint32_t plen = (uint32_t)q->r.length;
	uint8_t *param = malloc(plen);
	struct scsi_extent *ext = malloc(sizeof(*ext) * SCSI_MAX_UNMAP_DESCRIPTORS);
	int rc = 0;
	if (!param || !ext) {
		rc = -ENOMEM;
		goto out;
	}
	iov_copy_out(q, param, plen);
	struct scsi_result r;
	int n = scsi_unmap_parse(&s->sdisk[q->lun], param, plen, ext, SCSI_MAX_UNMAP_DESCRIPTORS, &r);
	if (n < 0) {
		q->r = r;
		goto out;
	}
	for (int i = 0; i < n && rc >= 0; i++)
		if (ext[i].length)
			rc = vdisk_discard(s->disks[q->lun].disk, ext[i].offset, ext[i].length);
out:
	free(param);
	free(ext);
	return rc < 0 ? rc : 0;
}

static void do_io(struct storvsp *s, struct req *q)
{
	enum scsi_action op = q->r.action;
	int rc = 0;
	switch (op) {
	case SCSI_READ:
		stat_add(&s->stats.reads);
		rc = do_rw(s, q, false);
		q->done_bytes = (uint32_t)q->r.length;
		break;
	case SCSI_WRITE:
		stat_add(&s->stats.writes);
		rc = do_rw(s, q, true);
		q->done_bytes = (uint32_t)q->r.length;
		break;
	case SCSI_FLUSH:
		stat_add(&s->stats.flushes);
		rc = vdisk_flush(s->disks[q->lun].disk);
		break;
	case SCSI_UNMAP:
		stat_add(&s->stats.unmaps);
		rc = do_unmap(s, q);
		q->done_bytes = q->xfer;
		break;
	case SCSI_WRITE_SAME:
		stat_add(&s->stats.unmaps);
		rc = do_write_same(s, q);
		q->done_bytes = q->xfer;
		break;
	default:
		return;
	}
	if (rc < 0) {
		stat_add(&s->stats.errors);
		scsi_io_error(&q->r, op, rc);
	} else if (q->r.status == SCSI_STATUS_GOOD) {
		if (op == SCSI_READ || op == SCSI_WRITE) {
			__atomic_fetch_add(op == SCSI_READ ? &s->stats.read_bytes : &s->stats.write_bytes, q->r.length,
					   __ATOMIC_RELAXED);
			__atomic_fetch_add(&s->stats.normalized_ops, io_limit_ops(q->r.length), __ATOMIC_RELAXED);
		}
		q->r.action = SCSI_DONE;
	}
}

static void *io_thread(void *arg)
{
	struct storvsp *s = arg;
	if (s->host.thread_start)
		s->host.thread_start();
	pthread_mutex_lock(&s->qlock);
	for (;;) {
		while (!s->qhead && !s->stop)
			pthread_cond_wait(&s->qcond, &s->qlock);
		if (!s->qhead)
			break;
		struct req *q = s->qhead;
		s->qhead = q->next;
		if (!s->qhead)
			s->qtail = NULL;
		pthread_mutex_unlock(&s->qlock);

		do_io(s, q);

		/* Guest memory is no longer touched: let a closing channel go on. */
		req_grant(s, q, false);
		pthread_mutex_lock(&s->qlock);
		s->busy--;
		if (!s->busy)
			pthread_cond_broadcast(&s->idle);
		pthread_mutex_unlock(&s->qlock);

		pthread_mutex_lock(s->host.lock);
		complete_locked(q);
		pthread_mutex_unlock(s->host.lock);
		pthread_mutex_lock(&s->qlock);
		if (!--s->outstanding)
			pthread_cond_broadcast(&s->idle);
	}
	pthread_mutex_unlock(&s->qlock);
	return NULL;
}

static uint64_t monotonic_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Under qlock. */
static void enqueue_locked(struct storvsp *s, struct req *q)
{
	q->next = NULL;
	if (s->qtail)
		s->qtail->next = q;
	else
		s->qhead = q;
	s->qtail = q;
	pthread_cond_signal(&s->qcond);
}

/* Under qlock: hands the held requests due by `now` to the pool; *next (if given) becomes the
 * earliest release time still held, if sooner. */
static void release_held_locked(struct storvsp *s, uint64_t now, uint64_t *next)
{
	for (unsigned lun = 0; lun < s->ndisks; lun++) {
		struct req *q;
		while ((q = s->held_head[lun]) && q->release_ns <= now) {
			s->held_head[lun] = q->next;
			if (!q->next)
				s->held_tail[lun] = NULL;
			enqueue_locked(s, q);
		}
		if (q && next && q->release_ns < *next)
			*next = q->release_ns;
	}
}

/* Holds q back if its LUN's limits say so (under qlock); false: it may run now. A LUN's
 * requests keep their order: one arriving behind held ones waits its turn. */
static bool hold_locked(struct storvsp *s, struct req *q)
{
	if ((q->r.action != SCSI_READ && q->r.action != SCSI_WRITE) || q->lun >= s->ndisks ||
	    !io_limit_active(&s->limits[q->lun]))
		return false;
	uint64_t now = monotonic_ns();
	q->release_ns = io_limit_admit(&s->limits[q->lun], q->r.length, now);
	if (q->release_ns <= now && !s->held_head[q->lun])
		return false;
	stat_add(&s->stats.throttled);
	q->next = NULL;
	if (s->held_tail[q->lun])
		s->held_tail[q->lun]->next = q;
	else
		s->held_head[q->lun] = q;
	s->held_tail[q->lun] = q;
	pthread_cond_signal(&s->qos_cond);
	return true;
}

static void *qos_thread(void *arg)
{
	struct storvsp *s = arg;
	if (s->host.thread_start)
		s->host.thread_start();
	pthread_mutex_lock(&s->qlock);
	while (!s->qos_stop) {
		uint64_t next = UINT64_MAX;
		release_held_locked(s, monotonic_ns(), &next);
		if (next == UINT64_MAX) {
			pthread_cond_wait(&s->qos_cond, &s->qlock);
			continue;
		}
		struct timespec at = { .tv_sec = (time_t)(next / 1000000000u), .tv_nsec = (long)(next % 1000000000u) };
		pthread_cond_timedwait(&s->qos_cond, &s->qlock, &at);
	}
	release_held_locked(s, UINT64_MAX, NULL);
	pthread_mutex_unlock(&s->qlock);
	return NULL;
}

static void submit(struct storvsp *s, struct req *q)
{
	if (!s->nthreads) {
		do_io(s, q);
		complete_locked(q);
		return;
	}
	pthread_mutex_lock(&s->qlock);
	s->busy++;
	s->outstanding++;
	if (!hold_locked(s, q))
		enqueue_locked(s, q);
	pthread_mutex_unlock(&s->qlock);
}

/* Waits until no request is with the pool. Held requests go to it at once: they hold guest
 * buffers, and whoever waits here (a closing channel, a save) cannot wait for their turn. */
static void wait_idle(struct storvsp *s)
{
	if (!s->nthreads)
		return;
	pthread_mutex_lock(&s->qlock);
	release_held_locked(s, UINT64_MAX, NULL);
	while (s->busy)
		pthread_cond_wait(&s->idle, &s->qlock);
	pthread_mutex_unlock(&s->qlock);
}

/* ---- protocol ---- */

static void reply(struct chan_state *cs, uint64_t trans_id, uint32_t status, const struct vstor_packet *body)
{
	struct vstor_packet pkt;
	if (body)
		memcpy(&pkt, body, sizeof(pkt));
	else
		memset(&pkt, 0, sizeof(pkt));
	pkt.operation = VSTOR_OPERATION_COMPLETE_IO;
	pkt.flags = 0;
	pkt.status = status;
	/* Control replies are rare and small; a full ring drops them (the guest times out). */
	if (vmbus_chan_complete(cs->chan, trans_id, &pkt, sizeof(pkt)) == VMBUS_CHAN_FULL)
		stat_add(&cs->s->stats.bad_packets);
}

/* Resolve [0, xfer) of GPA range 0 into host iovecs. */
static bool map_range(struct storvsp *s, const struct vmbus_packet *pkt, uint32_t xfer, struct req *q)
{
	struct vmbus_gpa_range range;
	if (pkt->type != VM_PKT_DATA_USING_GPA_DIRECT || pkt->range_count < 1 ||
	    vmbus_packet_gpa_range(pkt, 0, &range) < 0 || range.byte_count < xfer || range.byte_offset >= PAGE)
		return false;
	uint64_t end = (uint64_t)range.byte_offset + xfer;
	uint32_t pages = (uint32_t)((end + PAGE - 1) / PAGE);
	if (pages > range.pfn_count || pages > MAX_IOV)
		return false;
	uint32_t left = xfer;
	for (uint32_t i = 0; i < pages; i++) {
		uint64_t pfn;
		memcpy(&pfn, range.pfns + 8 * i, 8);
		if (pfn >= (1ull << 40))
			return false;
		uint32_t start = i == 0 ? range.byte_offset : 0;
		uint32_t n = PAGE - start < left ? PAGE - start : left;
		uint8_t *p = s->host.gpa_to_hva(s->host.opaque, pfn * PAGE + start, n);
		if (!p)
			return false;
		if (q->niov && (uint8_t *)q->iov[q->niov - 1].iov_base + q->iov[q->niov - 1].iov_len == p) {
			q->iov[q->niov - 1].iov_len += n;
		} else {
			q->iov[q->niov].iov_base = p;
			q->iov[q->niov].iov_len = n;
			q->niov++;
		}
		left -= n;
	}
	return true;
}

static void execute_srb(struct storvsp *s, struct chan_state *cs, const struct vmbus_packet *pkt,
			const struct vstor_packet *vp)
{
	stat_add(&s->stats.srbs);
	struct req *q = calloc(1, sizeof(*q) + MAX_IOV * sizeof(struct iovec));
	if (!q) {
		reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_DEVICE_STATE, NULL);
		return;
	}
	q->cs = cs;
	q->gen = cs->gen;
	q->trans_id = pkt->trans_id;
	memcpy(&q->srb, &vp->vm_srb, sizeof(q->srb));
	uint32_t xfer = q->srb.data_transfer_length;
	bool ok = q->srb.cdb_length >= 1 && q->srb.cdb_length <= STORVSC_MAX_CMD_LEN &&
		  xfer <= STORVSP_MAX_TRANSFER && (xfer == 0 || map_range(s, pkt, xfer, q));
	if (!ok) {
		stat_add(&s->stats.bad_packets);
		q->r.action = (enum scsi_action)-1;
		complete_locked(q);
		return;
	}
	q->xfer = xfer;
	q->lun = q->srb.lun;
	if (q->srb.data_in != WRITE_TYPE)
		req_grant(s, q, true);
	/* One target (0) on one bus; other targets have no LUNs. */
	static const struct scsi_target empty;
	const struct scsi_target *t = q->srb.path_id == 0 && q->srb.target_id == 0 ? &s->target : &empty;
	uint8_t buf[4096];
	scsi_execute(t, q->lun, q->srb.cdb, q->srb.cdb_length, xfer, buf,
		     xfer < sizeof(buf) ? xfer : (uint32_t)sizeof(buf), &q->r);
	if (q->r.action == SCSI_DONE || q->r.action == SCSI_NO_LUN) {
		if (q->r.action == SCSI_DONE && q->r.status == SCSI_STATUS_GOOD && q->r.data_in_len) {
			iov_copy_in(q, buf, q->r.data_in_len);
			q->done_bytes = q->r.data_in_len;
		}
		if (q->r.status != SCSI_STATUS_GOOD)
			stat_add(&s->stats.errors);
		complete_locked(q);
		return;
	}
	submit(s, q);
}

static bool version_ok(uint16_t v)
{
	return v == VMSTOR_PROTO_VERSION_WIN10 || v == VMSTOR_PROTO_VERSION_WIN8_1 || v == VMSTOR_PROTO_VERSION_WIN8;
}

static void handle_packet(struct storvsp *s, struct chan_state *cs, const struct vmbus_packet *pkt)
{
	if (pkt->type != VM_PKT_DATA_INBAND && pkt->type != VM_PKT_DATA_USING_GPA_DIRECT) {
		stat_add(&s->stats.bad_packets);
		return;
	}
	struct vstor_packet vp;
	memset(&vp, 0, sizeof(vp));
	if (pkt->data_len < VSTOR_PACKET_HEADER_SIZE) {
		stat_add(&s->stats.bad_packets);
		reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_PARAMETER, NULL);
		return;
	}
	memcpy(&vp, pkt->data, pkt->data_len < sizeof(vp) ? pkt->data_len : sizeof(vp));
	struct vstor_packet out;
	memset(&out, 0, sizeof(out));
	switch (vp.operation) {
	case VSTOR_OPERATION_BEGIN_INITIALIZATION:
		cs->state = ST_BEGUN;
		cs->version = 0;
		reply(cs, pkt->trans_id, VSTOR_STATUS_SUCCESS, NULL);
		return;
	case VSTOR_OPERATION_QUERY_PROTOCOL_VERSION: {
		if (pkt->data_len < VSTOR_PACKET_HEADER_SIZE + sizeof(struct vmstorage_protocol_version) ||
		    cs->state != ST_BEGUN) {
			stat_add(&s->stats.bad_packets);
			reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_DEVICE_STATE, NULL);
			return;
		}
		uint16_t v = vp.version.major_minor;
		out.version.major_minor = v;
		if (!version_ok(v)) {
			reply(cs, pkt->trans_id, VSTOR_STATUS_REVISION_MISMATCH, &out);
			return;
		}
		cs->version = v;
		__atomic_store_n(&s->stats.protocol, v, __ATOMIC_RELAXED);
		reply(cs, pkt->trans_id, VSTOR_STATUS_SUCCESS, &out);
		return;
	}
	case VSTOR_OPERATION_QUERY_PROPERTIES:
		if (cs->state != ST_BEGUN || !cs->version) {
			reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_DEVICE_STATE, NULL);
			return;
		}
		/* Sub-channels (every protocol we speak is Win8+): Linux asks for
		 * min(online vCPUs - 1, max_channel_cnt) of them with CREATE_SUB_CHANNELS. */
		out.storage_channel_properties.max_channel_cnt = STORVSP_MAX_SUBCHANNELS;
		out.storage_channel_properties.flags = STORAGE_CHANNEL_SUPPORTS_MULTI_CHANNEL;
		out.storage_channel_properties.max_transfer_bytes = STORVSP_MAX_TRANSFER;
		reply(cs, pkt->trans_id, VSTOR_STATUS_SUCCESS, &out);
		return;
	case VSTOR_OPERATION_END_INITIALIZATION:
		if (cs->state != ST_BEGUN || !cs->version) {
			reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_DEVICE_STATE, NULL);
			return;
		}
		cs->state = ST_READY;
		reply(cs, pkt->trans_id, VSTOR_STATUS_SUCCESS, NULL);
		return;
	case VSTOR_OPERATION_EXECUTE_SRB:
		if (cs->state != ST_READY ||
		    pkt->data_len < VSTOR_PACKET_HEADER_SIZE + VMSCSI_REQUEST_PRE_WIN8_SIZE) {
			stat_add(&s->stats.bad_packets);
			reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_DEVICE_STATE, &vp);
			return;
		}
		execute_srb(s, cs, pkt, &vp);
		return;
	case VSTOR_OPERATION_CREATE_SUB_CHANNELS: {
		/* On the primary, after END_INITIALIZATION; the offers go out before the completion
		 * (Linux opens them from its offer handler, set up before it asked). */
		uint16_t want = vp.sub_channel_count;
		if (cs != &s->cs[0] || cs->state != ST_READY ||
		    pkt->data_len < VSTOR_PACKET_HEADER_SIZE + sizeof(uint16_t) || want == 0 ||
		    want > STORVSP_MAX_SUBCHANNELS) {
			stat_add(&s->stats.bad_packets);
			reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_PARAMETER, NULL);
			return;
		}
		int have = vmbus_chan_offer_subchannels(cs->chan, want);
		reply(cs, pkt->trans_id, have >= want ? VSTOR_STATUS_SUCCESS : VSTOR_STATUS_INVALID_DEVICE_STATE, NULL);
		return;
	}
	case VSTOR_OPERATION_RESET_LUN:
	case VSTOR_OPERATION_RESET_ADAPTER:
	case VSTOR_OPERATION_RESET_BUS:
		/* Nothing is lost on our side: outstanding requests complete on their own. */
		reply(cs, pkt->trans_id, VSTOR_STATUS_SUCCESS, NULL);
		return;
	default: /* FCHBA_DATA (we are not FC), unknown */
		stat_add(&s->stats.bad_packets);
		reply(cs, pkt->trans_id, VSTOR_STATUS_INVALID_PARAMETER, NULL);
		return;
	}
}

/* ---- VMBus device callbacks (device thread, VMBus lock held) ---- */

/* The primary (index 0) and the sub-channels share the device's ops; each has its own state.
 * Requests complete on the channel they came in on. */
static struct chan_state *chan_cs(struct storvsp *s, struct vmbus_chan *chan)
{
	uint16_t idx = vmbus_chan_subchannel_index(chan);
	return idx <= STORVSP_MAX_SUBCHANNELS ? &s->cs[idx] : NULL;
}

/* The channel is open (by the guest, or again by a restore) in this protocol state. */
static void chan_attach(struct chan_state *cs, struct vmbus_chan *chan, enum init_state state, uint16_t version)
{
	cs->chan = chan;
	cs->gen++;
	cs->open = true;
	cs->state = state;
	cs->version = version;
	vmbus_chan_set_priv(chan, cs);
}

static int dev_open(struct vmbus_chan *chan, void *ctx)
{
	struct storvsp *s = ctx;
	struct chan_state *cs = chan_cs(s, chan);
	if (!cs)
		return -1;
	if (cs == &s->cs[0])
		chan_attach(cs, chan, ST_NONE, 0);
	else /* Sub-channels carry I/O only; they inherit the primary's negotiation. */
		chan_attach(cs, chan, s->cs[0].open && s->cs[0].state == ST_READY ? ST_READY : ST_NONE,
			    s->cs[0].version);
	return 0;
}

static void dev_close(struct vmbus_chan *chan, void *ctx)
{
	struct storvsp *s = ctx;
	struct chan_state *cs = chan_cs(s, chan);
	if (!cs)
		return;
	/* Disk work in flight may still write guest buffers: wait for it (I/O threads never hold
	 * the VMBus lock while they do disk work, so this cannot deadlock). */
	wait_idle(s);
	cs->open = false;
	cs->gen++;
	drop_pending(cs);
}

static void dev_on_packets(struct vmbus_chan *chan, void *ctx)
{
	struct storvsp *s = ctx;
	struct chan_state *cs = chan_cs(s, chan);
	if (!cs)
		return;
	flush_pending(cs);
	for (unsigned n = 0; n < 4096; n++) {
		if (cs->npend > MAX_INFLIGHT)
			return; /* the guest reads completions first; it signals when it has */
		struct vmbus_packet pkt;
		int rc = vmbus_chan_recv(chan, &pkt);
		if (rc == VMBUS_CHAN_BADPKT) {
			stat_add(&s->stats.bad_packets);
			continue;
		}
		if (rc <= 0 || !cs->open)
			return;
		handle_packet(s, cs, &pkt);
	}
}

/* ---- saved state ----
 * Payload (version 1, one section per open channel, instance = relid), 8 bytes:
 *   u8 init stage (0 none, 1 BEGIN_INITIALIZATION seen, 2 END_INITIALIZATION done)
 *   u16 protocol version (0 before QUERY_PROTOCOL_VERSION succeeded)
 *   u16 sub-channel index of the channel (0 = primary)
 *   u8 LUNs of the controller
 *   u16 sub-channels the controller has (the VMBus server saves and restores them; a check)
 * Nothing else is per channel: QUERY_PROPERTIES changes no state, and requests are drained
 * before saving (storvsp_drain), so none is in flight. Unread SRBs stay in the guest's ring,
 * which is guest RAM; the new controller reads them after vmbus_server_restore_finish. */
#define STATE_SIZE 8u

static unsigned outstanding(struct storvsp *s)
{
	pthread_mutex_lock(&s->qlock);
	unsigned n = s->outstanding;
	pthread_mutex_unlock(&s->qlock);
	return n;
}

/* Completions waiting for ring space on open channels, after one more try to send them.
 * Under the VMBus lock. */
static unsigned pending_locked(struct storvsp *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i <= STORVSP_MAX_SUBCHANNELS; i++) {
		if (!s->cs[i].open)
			continue;
		flush_pending(&s->cs[i]);
		n += s->cs[i].npend;
	}
	return n;
}

int storvsp_drain(struct storvsp *s, unsigned timeout_ms)
{
	struct timespec end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += timeout_ms / 1000;
	end.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	for (;;) {
		/* The pool first: its completions are posted or queued before outstanding drops. */
		pthread_mutex_lock(&s->qlock);
		release_held_locked(s, UINT64_MAX, NULL);
		int rc = 0;
		while (s->outstanding && rc == 0)
			rc = pthread_cond_timedwait(&s->idle, &s->qlock, &end);
		unsigned busy = s->outstanding;
		pthread_mutex_unlock(&s->qlock);
		if (s->host.lock)
			pthread_mutex_lock(s->host.lock);
		unsigned pend = pending_locked(s);
		if (s->host.lock)
			pthread_mutex_unlock(s->host.lock);
		if (!busy && !pend)
			return 0;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (busy || now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
			return state_fail(-ETIMEDOUT, "storvsp: %u requests with the I/O threads, %u completions waiting "
					  "for ring space after %u ms", busy, pend, timeout_ms);
		/* Only the guest frees ring space; a paused one may have read before it stopped. */
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
}

static int dev_save(struct vmbus_chan *chan, void *ctx, struct state_writer *w)
{
	struct storvsp *s = ctx;
	struct chan_state *cs = chan_cs(s, chan);
	uint32_t relid = vmbus_chan_relid(chan);
	if (!cs || !cs->open)
		return state_fail(-EINVAL, "storvsp: channel %u: not open", relid);
	unsigned busy = outstanding(s);
	if (busy || cs->npend)
		return state_fail(-EBUSY, "storvsp: channel %u: %u requests in flight (storvsp_drain first)", relid,
				  busy + cs->npend);
	state_put_u8(w, (uint8_t)cs->state);
	state_put_u16(w, cs->version);
	state_put_u16(w, vmbus_chan_subchannel_index(chan));
	state_put_u8(w, (uint8_t)s->ndisks);
	state_put_u16(w, vmbus_chan_subchannel_count(chan));
	return 0;
}

static int dev_restore(struct vmbus_chan *chan, void *ctx, uint16_t version, struct state_cursor *c)
{
	struct storvsp *s = ctx;
	uint32_t relid = vmbus_chan_relid(chan);
	uint16_t index = vmbus_chan_subchannel_index(chan);
	struct chan_state *cs = chan_cs(s, chan);
	if (version != STORVSP_STATE_VERSION)
		return state_fail(-EPROTONOSUPPORT, "storvsp: channel %u: state version %u (this build reads %u)", relid,
				  version, STORVSP_STATE_VERSION);
	if (!cs)
		return state_fail(-EINVAL, "storvsp: channel %u: sub-channel %u is beyond the controller's %u", relid,
				  index, STORVSP_MAX_SUBCHANNELS);
	if (cs->open)
		return state_fail(-EINVAL, "storvsp: channel %u: restored twice", relid);
	size_t size = state_cursor_left(c);
	uint8_t stage = state_get_u8(c);
	uint16_t proto = state_get_u16(c);
	uint16_t saved_index = state_get_u16(c);
	uint8_t luns = state_get_u8(c);
	uint16_t subs = state_get_u16(c);
	if (!state_cursor_ok(c) || state_cursor_left(c))
		return state_fail(-EBADMSG, "storvsp: channel %u: state is %zu bytes, version 1 has %u", relid, size,
				  STATE_SIZE);
	if (stage > ST_READY)
		return state_fail(-EINVAL, "storvsp: channel %u: init stage %u is not one we know", relid, stage);
	if (proto && !version_ok(proto))
		return state_fail(-EINVAL, "storvsp: channel %u: protocol version 0x%04x is not one we speak", relid, proto);
	if (stage == ST_READY && !proto)
		return state_fail(-EINVAL, "storvsp: channel %u: initialised without a protocol version", relid);
	if (saved_index != index)
		return state_fail(-EINVAL, "storvsp: channel %u: saved as sub-channel %u, restored as sub-channel %u", relid,
				  saved_index, index);
	if (luns != s->ndisks)
		return state_fail(-EINVAL, "storvsp: channel %u: saved with %u LUNs, this controller has %u", relid, luns,
				  s->ndisks);
	if (subs != vmbus_chan_subchannel_count(chan))
		return state_fail(-EINVAL, "storvsp: channel %u: saved with %u sub-channels, the VMBus state has %u",
				  relid, subs, vmbus_chan_subchannel_count(chan));
	chan_attach(cs, chan, (enum init_state)stage, proto);
	if (index == 0 && proto)
		__atomic_store_n(&s->stats.protocol, proto, __ATOMIC_RELAXED);
	return 0;
}

/* ---- life cycle ---- */

static struct scsi_disk describe(const struct storvsp_disk *d, unsigned lun, uint8_t instance)
{
	struct vdisk_info info;
	struct scsi_disk sd;
	memset(&sd, 0, sizeof(sd));
	memset(&info, 0, sizeof(info));
	if (d->dvd) { /* the media state is in s->mmc (the caller links it) */
		sd.logical_sector = sd.physical_sector = SCSI_MMC_BLOCK;
		sd.read_only = true;
		sd.max_transfer = STORVSP_MAX_TRANSFER;
		memcpy(sd.id, "VIRIDIAN-STORDVD", 16);
		sd.id[14] = instance;
		sd.id[15] = (uint8_t)lun;
		return sd;
	}
	vdisk_info(d->disk, &info);
	sd.logical_sector = info.logical_sector == 4096 ? 4096 : 512;
	sd.physical_sector = info.physical_sector >= sd.logical_sector && info.physical_sector <= 65536 &&
				     !(info.physical_sector & (info.physical_sector - 1))
			     ? info.physical_sector : sd.logical_sector;
	sd.blocks = vdisk_size(d->disk) / sd.logical_sector;
	sd.read_only = d->read_only;
	sd.thin = info.type != VDISK_TYPE_FIXED || info.format == VDISK_FORMAT_RAW;
	/* The library punches holes inside image blocks, so a fine granularity frees host space
	 * for partly free blocks too (fstrim only sends extents >= the granularity). */
	sd.unmap_granularity = sd.physical_sector / sd.logical_sector;
	sd.max_transfer = STORVSP_MAX_TRANSFER;
	/* id: the image's own id when it has one (stable across boots), else derived from the
	 * controller and LUN */
	memcpy(sd.id, info.id, 16);
	bool zero = true;
	for (int i = 0; i < 16; i++)
		zero = zero && !sd.id[i];
	if (zero) {
		memcpy(sd.id, "VIRIDIAN-STORVSP", 16);
		sd.id[14] = instance;
		sd.id[15] = (uint8_t)lun;
	}
	return sd;
}

struct storvsp *storvsp_new(struct vmbus_server *srv, const struct storvsp_host *host,
			    const struct storvsp_disk *disks, unsigned ndisks, uint8_t instance,
			    char *err, size_t errlen)
{
	if (ndisks == 0 || ndisks > SCSI_MAX_LUNS || !host->gpa_to_hva || (host->nthreads && !host->lock)) {
		snprintf(err, errlen, "storvsp: %u disks (1..%u) on one controller", ndisks, SCSI_MAX_LUNS);
		return NULL;
	}
	struct storvsp *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "storvsp: out of memory");
		return NULL;
	}
	s->host = *host;
	s->ndisks = ndisks;
	for (unsigned i = 0; i <= STORVSP_MAX_SUBCHANNELS; i++)
		s->cs[i].s = s;
	s->target.nluns = ndisks;
	for (unsigned i = 0; i < ndisks; i++) {
		s->disks[i] = disks[i];
		s->sdisk[i] = describe(&disks[i], i, instance);
		if (disks[i].dvd) {
			s->disks[i].read_only = true;
			s->mmc[i] = (struct scsi_mmc){ .media = disks[i].disk != NULL,
						       .blocks = disks[i].disk ? disks[i].media_bytes / SCSI_MMC_BLOCK : 0 };
			s->sdisk[i].mmc = &s->mmc[i];
		} else if (!disks[i].disk) {
			snprintf(err, errlen, "storvsp: LUN %u has no disk", i);
			free(s);
			return NULL;
		}
		s->target.luns[i] = &s->sdisk[i];
	}
	pthread_mutex_init(&s->qlock, NULL);
	pthread_cond_init(&s->qcond, NULL);
	pthread_condattr_t ca; /* storvsp_drain's deadline must not move with the wall clock */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->idle, &ca);
	pthread_cond_init(&s->qos_cond, &ca);
	pthread_condattr_destroy(&ca);
	s->ops.name = "storvsp";
	s->ops.class_id = STORVSP_SCSI_CLASS_GUID;
	/* instance: {d34b2567-b9b6-42b9-8778-0a4ec0b9550<instance>} */
	s->ops.instance_id = VMBUS_GUID_INIT(0xd34b2567, 0xb9b6, 0x42b9, 0x87, 0x78, 0x0a, 0x4e, 0xc0, 0xb9, 0x55, instance);
	s->ops.open = dev_open;
	s->ops.close = dev_close;
	s->ops.on_packets = dev_on_packets;
	s->ops.state_section = STATE_SECTION_STORVSP;
	s->ops.state_version = STORVSP_STATE_VERSION;
	s->ops.save = dev_save;
	s->ops.restore = dev_restore;
	if (host->nthreads) {
		s->threads = calloc(host->nthreads, sizeof(pthread_t));
		for (unsigned i = 0; s->threads && i < host->nthreads; i++) {
			if (pthread_create(&s->threads[i], NULL, io_thread, s))
				break;
			s->nthreads++;
		}
		/* Started with the pool, so that limits set later (from a sandboxed thread that may
		 * not create threads) need none. It sleeps until a LUN holds a request. */
		if (s->nthreads == host->nthreads && !pthread_create(&s->qos_thread, NULL, qos_thread, s))
			s->qos_started = true;
		if (s->nthreads != host->nthreads || !s->qos_started) {
			snprintf(err, errlen, "storvsp: cannot start I/O threads");
			storvsp_free(s);
			return NULL;
		}
	}
	if (!vmbus_server_add_device(srv, &s->ops, s)) {
		snprintf(err, errlen, "storvsp: the VMBus server refused the controller (device table full?)");
		storvsp_free(s);
		return NULL;
	}
	return s;
}

void storvsp_free(struct storvsp *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->qlock);
	s->qos_stop = true; /* it hands what it holds to the pool as it goes */
	pthread_cond_signal(&s->qos_cond);
	pthread_mutex_unlock(&s->qlock);
	if (s->qos_started)
		pthread_join(s->qos_thread, NULL);
	pthread_mutex_lock(&s->qlock);
	release_held_locked(s, UINT64_MAX, NULL);
	s->stop = true;
	pthread_cond_broadcast(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
	for (unsigned i = 0; i < s->nthreads; i++)
		pthread_join(s->threads[i], NULL);
	free(s->threads);
	for (unsigned i = 0; i <= STORVSP_MAX_SUBCHANNELS; i++)
		drop_pending(&s->cs[i]);
	pthread_mutex_destroy(&s->qlock);
	pthread_cond_destroy(&s->qcond);
	pthread_cond_destroy(&s->idle);
	pthread_cond_destroy(&s->qos_cond);
	free(s);
}

void storvsp_get_stats(struct storvsp *s, struct storvsp_stats *out)
{
	out->srbs = __atomic_load_n(&s->stats.srbs, __ATOMIC_RELAXED);
	out->reads = __atomic_load_n(&s->stats.reads, __ATOMIC_RELAXED);
	out->writes = __atomic_load_n(&s->stats.writes, __ATOMIC_RELAXED);
	out->flushes = __atomic_load_n(&s->stats.flushes, __ATOMIC_RELAXED);
	out->unmaps = __atomic_load_n(&s->stats.unmaps, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&s->stats.errors, __ATOMIC_RELAXED);
	out->bad_packets = __atomic_load_n(&s->stats.bad_packets, __ATOMIC_RELAXED);
	out->protocol = __atomic_load_n(&s->stats.protocol, __ATOMIC_RELAXED);
	out->throttled = __atomic_load_n(&s->stats.throttled, __ATOMIC_RELAXED);
	out->read_bytes = __atomic_load_n(&s->stats.read_bytes, __ATOMIC_RELAXED);
	out->write_bytes = __atomic_load_n(&s->stats.write_bytes, __ATOMIC_RELAXED);
	out->normalized_ops = __atomic_load_n(&s->stats.normalized_ops, __ATOMIC_RELAXED);
}

/* ---- storage QoS ---- */

int storvsp_set_limits(struct storvsp *s, unsigned lun, uint64_t max_iops, uint64_t max_bytes_per_s)
{
	if (lun >= s->ndisks || s->disks[lun].dvd)
		return -EINVAL;
	if (!s->nthreads)
		return -ENOTSUP;
	struct io_limit l;
	if (!io_limit_set(&l, max_iops, max_bytes_per_s))
		return -ERANGE;
	pthread_mutex_lock(&s->qlock);
	s->limits[lun] = l;
	/* What the old limits held goes now: the new ones count from here. */
	struct req *q;
	while ((q = s->held_head[lun])) {
		s->held_head[lun] = q->next;
		enqueue_locked(s, q);
	}
	s->held_tail[lun] = NULL;
	pthread_mutex_unlock(&s->qlock);
	return 0;
}

/* ---- swapping a LUN's image (disk-switch, the end of a live merge) ---- */

/* Runs fn(ctx) under host->lock once no request is in flight; -ETIMEDOUT after timeout_ms. */
static int with_idle(struct storvsp *s, void (*fn)(struct storvsp *, void *), void *ctx, unsigned timeout_ms)
{
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		/* Under the VMBus lock no SRB is taken from a ring, so once the pool is empty nothing
		 * can reach the LUNs' images until the lock is released. */
		if (s->host.lock)
			pthread_mutex_lock(s->host.lock);
		pthread_mutex_lock(&s->qlock);
		release_held_locked(s, UINT64_MAX, NULL);
		bool idle = !s->outstanding;
		pthread_mutex_unlock(&s->qlock);
		if (idle)
			fn(s, ctx);
		if (s->host.lock)
			pthread_mutex_unlock(s->host.lock);
		if (idle)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((uint64_t)(now.tv_sec - t0.tv_sec) * 1000 + (uint64_t)(now.tv_nsec - t0.tv_nsec) / 1000000 >= timeout_ms)
			return -ETIMEDOUT;
		/* The pool's requests cannot finish while we hold the lock: wait outside it. */
		nanosleep(&(struct timespec){ .tv_nsec = 200000 }, NULL);
	}
}

struct swap_args {
	unsigned lun;
	struct vdisk *(*swap)(void *ctx, struct vdisk *old);
	void *ctx;
};

static void do_swap(struct storvsp *s, void *arg)
{
	struct swap_args *a = arg;
	struct vdisk *d = a->swap(a->ctx, s->disks[a->lun].disk);
	if (d)
		s->disks[a->lun].disk = d;
}

int storvsp_swap_disk(struct storvsp *s, unsigned lun, struct vdisk *(*swap)(void *ctx, struct vdisk *old),
		      void *ctx, unsigned timeout_ms)
{
	if (lun >= s->ndisks || s->disks[lun].dvd)
		return -EINVAL;
	struct swap_args a = { lun, swap, ctx };
	return with_idle(s, do_swap, &a, timeout_ms);
}

/* ---- DVD media ---- */

struct media_args {
	unsigned lun;
	struct vdisk *disk, *old;
	uint64_t bytes;
};

static void do_media(struct storvsp *s, void *arg)
{
	struct media_args *a = arg;
	a->old = s->disks[a->lun].disk;
	s->disks[a->lun].disk = a->disk;
	s->disks[a->lun].media_bytes = a->disk ? a->bytes : 0;
	scsi_mmc_change(&s->mmc[a->lun], a->disk != NULL, a->bytes);
}

int storvsp_dvd_change(struct storvsp *s, unsigned lun, struct vdisk *disk, uint64_t media_bytes, struct vdisk **old,
		       unsigned timeout_ms)
{
	*old = NULL;
	if (lun >= s->ndisks || !s->disks[lun].dvd)
		return -EINVAL;
	struct media_args a = { .lun = lun, .disk = disk, .bytes = media_bytes };
	int rc = with_idle(s, do_media, &a, timeout_ms);
	if (rc == 0)
		*old = a.old;
	return rc;
}

bool storvsp_dvd_loaded(struct storvsp *s, unsigned lun)
{
	if (lun >= s->ndisks || !s->disks[lun].dvd)
		return false;
	if (s->host.lock)
		pthread_mutex_lock(s->host.lock);
	bool media = s->mmc[lun].media;
	if (s->host.lock)
		pthread_mutex_unlock(s->host.lock);
	return media;
}
