/* Time sync IC: the host sends its UTC time (and, from 4.0, the partition reference time it was
 * taken at); the guest steps (SYNC) or slews toward (SAMPLE) it. */
#include <time.h>

#include "ic_internal.h"

static const uint32_t ts_versions[] = {IC_VERSION(4, 0), IC_VERSION(3, 0), IC_VERSION(1, 0)};

static void ts_response(struct ic_dev *dev, const struct icmsg_hdr *hdr, const uint8_t *body, uint32_t len)
{
	(void)body;
	(void)len;
	if (hdr->status == IC_HV_S_OK)
		dev->ts_answers++;
}

static void ts_ready(struct ic_dev *dev)
{
	ic_timesync_send(dev, ICTIMESYNCFLAG_SYNC); /* set the clock as soon as the guest listens */
}

/* Saved: u64 answers. A sample in flight is answered after the restore like any other; its time
 * is from before the save, so the worker sends a SYNC after restoring (as it does on resume). */
static int ts_save(struct ic_dev *dev, struct state_writer *w)
{
	state_put_u64(w, dev->ts_answers);
	return 0;
}

static int ts_restore(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c)
{
	uint64_t answers = state_get_u64(c);
	int rc = ic_restore_commit(dev, s, c);
	if (rc == 0)
		dev->ts_answers = answers;
	return rc;
}

static const struct ic_service timesync = {
	.name = "timesync",
	.class_id = IC_TIMESYNC_CLASS,
	.instance_id = VMBUS_GUID_INIT(0x2497f4de, 0xe9fa, 0x4204, 0x80, 0xe4, 0x4b, 0x75, 0xc4, 0x6a, 0x2c, 0x07),
	.msgtype = ICMSGTYPE_TIMESYNC,
	.versions = ts_versions,
	.nversions = 3,
	.on_response = ts_response,
	.on_ready = ts_ready,
	.save = ts_save,
	.restore = ts_restore,
};

static uint64_t host_now(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 10000000u + (uint64_t)ts.tv_nsec / 100u + IC_WLTIMEDELTA;
}

static uint64_t no_ref(void *ctx)
{
	(void)ctx;
	return 0;
}

struct ic_dev *ic_timesync_add(struct vmbus_server *srv, uint64_t (*now_100ns)(void *), uint64_t (*ref_100ns)(void *),
			       void *clock_ctx)
{
	struct ic_dev *dev = ic_add(srv, &timesync);
	if (!dev)
		return NULL;
	dev->now_100ns = now_100ns ? now_100ns : host_now;
	dev->ref_100ns = ref_100ns ? ref_100ns : no_ref;
	dev->clock_ctx = clock_ctx;
	return dev;
}

int ic_timesync_send(struct ic_dev *dev, uint8_t flags)
{
	if (dev->state != IC_READY)
		return -1;
	if (dev->srv_version >= IC_VERSION(4, 0)) {
		struct ictimesync_ref_data m = {
			.parenttime = dev->now_100ns(dev->clock_ctx),
			.vmreferencetime = dev->ref_100ns(dev->clock_ctx),
			.flags = flags,
		};
		return ic_send_request(dev, &m, sizeof(m));
	}
	struct ictimesync_data m = {.parenttime = dev->now_100ns(dev->clock_ctx), .flags = flags};
	return ic_send_request(dev, &m, sizeof(m));
}

uint64_t ic_timesync_answers(const struct ic_dev *dev)
{
	return dev->ts_answers;
}
