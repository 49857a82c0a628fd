/* VMBus server + integration services inside the worker. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "worker/clock.h"
#include "vsp/fcopy.h"
#include "vsp/ic.h"
#include "vsp/kvp.h"
#include "vsp/vss.h"
#include "worker/log.h"
#include "worker/options.h"
#include "worker/vmbus_host.h"

#define HEARTBEAT_INTERVAL_NS      2000000000ull
#define HEARTBEAT_LOST_AFTER_NS    (3 * HEARTBEAT_INTERVAL_NS + 1000000000ull)
#define KVP_REFRESH_NS             10000000000ull /* the guest's IPs, names and versions */
#define CHANNELMSG_INITIATE_CONTACT 14

void *vmbus_host_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	struct vmbus_host *h = opaque;
	return h->hv->platform.gpa_to_hva(h->hv->platform.opaque, gpa, len);
}

void vmbus_host_grant(void *opaque, void *hva, uint64_t len, bool on)
{
	struct vmbus_host *h = opaque;
	h->hv->platform.grant(h->hv->platform.opaque, hva, len, on);
}

static int host_post_message(void *opaque, uint32_t vp, uint32_t sint, uint32_t message_type,
			     const void *payload, uint32_t len)
{
	struct vmbus_host *h = opaque;
	if (vp >= h->hv->nr_vps)
		return -1;
	return hv_synic_post(&h->hv->vps[vp].synic, sint, message_type, payload, len) == 0 ? 0 : -1;
}

static void host_signal_event(void *opaque, uint32_t vp, uint32_t sint, uint32_t flag)
{
	struct vmbus_host *h = opaque;
	if (vp < h->hv->nr_vps)
		hv_synic_signal_event(&h->hv->vps[vp].synic, sint, flag);
}

static void host_log(void *opaque, const char *fmt, ...)
{
	(void)opaque;
	char line[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	vlog("%s", line);
}

/* The partition's reference time as 100 ns since start_ns: the guest TSC starts at zero with
 * the partition, so the two agree to within the start-up skew (a restore moves start_ns). Read
 * here rather than from a vCPU's TSC: that would wait for the vCPU to leave the guest. */
static uint64_t reference_100ns(void *ctx)
{
	struct vmbus_host *h = ctx;
	return (monotonic_ns() - h->start_ns) / 100;
}

static void log_contact(struct vmbus_host *h, uint32_t vp, const struct hv_input_post_message *msg)
{
	uint32_t msgtype, version;
	if (msg->payload_size < 12)
		return;
	memcpy(&msgtype, msg->payload, 4);
	memcpy(&version, msg->payload + 8, 4);
	if (msgtype == CHANNELMSG_INITIATE_CONTACT)
		vlog("vmbus: vp %u: INITIATE_CONTACT on connection %u, version %u.%u", vp,
		     msg->connection_id, version >> 16, version & 0xFFFF);
	(void)h;
}

static uint16_t sink_post_message(void *opaque, uint32_t vp, const struct hv_input_post_message *msg)
{
	struct vmbus_host *h = opaque;
	pthread_mutex_lock(&h->lock);
	log_contact(h, vp, msg);
	uint16_t status = vmbus_server_post_message(h->server, vp, msg);
	uint32_t version = vmbus_server_version(h->server);
	if (version != h->logged_version) {
		h->logged_version = version;
		if (version)
			vlog("vmbus: connected, protocol version %u.%u", version >> 16, version & 0xFFFF);
	}
	pthread_mutex_unlock(&h->lock);
	return status;
}

static uint16_t sink_signal_event(void *opaque, uint32_t vp, uint32_t connection_id, uint16_t flag)
{
	struct vmbus_host *h = opaque;
	pthread_mutex_lock(&h->lock);
	uint16_t status = vmbus_server_signal_event(h->server, vp, connection_id, flag);
	/* A heartbeat answer is processed inside that call: time the round trip here. */
	uint64_t answers = h->heartbeat ? ic_heartbeat_answers(h->heartbeat) : 0;
	if (answers != h->last_heartbeat_answers) {
		if (!h->last_heartbeat_answers)
			vlog("heartbeat: guest integration services are running");
		uint64_t now = monotonic_ns();
		h->last_heartbeat_answers = answers;
		h->last_heartbeat_ns = now;
		h->heartbeat_rtt_ns = now - h->last_heartbeat_sent_ns;
		if (!h->heartbeat_rtt_min_ns || h->heartbeat_rtt_ns < h->heartbeat_rtt_min_ns)
			h->heartbeat_rtt_min_ns = h->heartbeat_rtt_ns;
	}
	pthread_mutex_unlock(&h->lock);
	return status;
}

bool vmbus_host_init(struct vmbus_host *h, struct hv_partition *hv, unsigned disabled_ics)
{
	static struct vmbus_host_ops ops = {
		.gpa_to_hva = vmbus_host_gpa_to_hva, .post_message = host_post_message,
		.signal_event = host_signal_event, .log = host_log,
	};
	ops.grant = hv->platform.grant ? vmbus_host_grant : NULL; /* the guest-write check */
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	h->hv = hv;
	h->start_ns = monotonic_ns();
	h->server = vmbus_server_new(&ops, h);
	if (!h->server)
		return false;
	vmbus_server_set_vp_count(h->server, hv->nr_vps);
#define OFFERED(ic) (!(disabled_ics & (1u << (ic))))
	if (OFFERED(WORKER_IC_HEARTBEAT) && !(h->heartbeat = ic_heartbeat_add(h->server)))
		return false;
	if (OFFERED(WORKER_IC_SHUTDOWN) && !(h->shutdown = ic_shutdown_add(h->server)))
		return false;
	if (OFFERED(WORKER_IC_TIMESYNC) && !(h->timesync = ic_timesync_add(h->server, NULL, reference_100ns, h)))
		return false;
	if (OFFERED(WORKER_IC_KVP) && !(h->kvp = ic_kvp_add(h->server, NULL, h)))
		return false;
	if (OFFERED(WORKER_IC_VSS) && !(h->vss = ic_vss_add(h->server, NULL, h)))
		return false;
	if (OFFERED(WORKER_IC_FCOPY) && !(h->fcopy = ic_fcopy_add(h->server)))
		return false;
#undef OFFERED
	for (unsigned i = 0; i < WORKER_IC_COUNT; i++)
		if (disabled_ics & (1u << i))
			vlog("vmbus: integration service %s disabled (not offered to the guest)", worker_ic_name(i));
	struct hv_message_sink sink = { sink_post_message, sink_signal_event, h };
	hv_partition_set_sink(hv, &sink);
	return true;
}

void vmbus_host_destroy(struct vmbus_host *h)
{
	if (h->server)
		vmbus_server_free(h->server);
	if (h->heartbeat)
		ic_free(h->heartbeat);
	if (h->shutdown)
		ic_free(h->shutdown);
	if (h->timesync)
		ic_free(h->timesync);
	if (h->kvp)
		ic_kvp_free(h->kvp);
	if (h->vss)
		ic_vss_free(h->vss);
	if (h->fcopy)
		ic_fcopy_free(h->fcopy);
	pthread_mutex_destroy(&h->lock);
}

void vmbus_host_eom(struct vmbus_host *h)
{
	pthread_mutex_lock(&h->lock);
	vmbus_server_flush(h->server);
	pthread_mutex_unlock(&h->lock);
}

void vmbus_host_tick(struct vmbus_host *h, uint64_t now_ns)
{
	pthread_mutex_lock(&h->lock);
	vmbus_server_flush(h->server);
	if (h->heartbeat && now_ns - h->last_heartbeat_sent_ns >= HEARTBEAT_INTERVAL_NS) {
		uint64_t sent = monotonic_ns();
		if (ic_heartbeat_tick(h->heartbeat) == 0) /* refused while one is outstanding or before negotiation */
			h->last_heartbeat_sent_ns = sent;
	}
	uint64_t now_ms = now_ns / 1000000;
	if (h->kvp)
		ic_kvp_tick(h->kvp, now_ms);
	if (h->vss)
		ic_vss_tick(h->vss, now_ms);
	if (h->fcopy)
		ic_fcopy_tick(h->fcopy, now_ms);
	if (h->kvp && ic_state(h->kvp) == IC_READY && !ic_kvp_busy(h->kvp) &&
	    (!h->last_enumerate_ns || now_ns - h->last_enumerate_ns >= KVP_REFRESH_NS)) {
		ic_kvp_enumerate(h->kvp, HV_KVP_POOL_AUTO, now_ms);
		h->last_enumerate_ns = now_ns;
	}
	pthread_mutex_unlock(&h->lock);
}

int vmbus_host_request_shutdown(struct vmbus_host *h, bool reboot, bool force)
{
	pthread_mutex_lock(&h->lock);
	int rc = h->shutdown ? ic_shutdown_request(h->shutdown, reboot, force, "Viridian: shutdown requested by the host") : -1;
	pthread_mutex_unlock(&h->lock);
	return rc;
}

enum heartbeat_status vmbus_host_heartbeat(struct vmbus_host *h, uint64_t now_ns, uint64_t *last_seen_ns)
{
	pthread_mutex_lock(&h->lock);
	enum heartbeat_status s = !h->last_heartbeat_answers ? HEARTBEAT_NO_CONTACT
				  : now_ns - h->last_heartbeat_ns > HEARTBEAT_LOST_AFTER_NS ? HEARTBEAT_LOST
				  : HEARTBEAT_OK;
	if (last_seen_ns)
		*last_seen_ns = h->last_heartbeat_ns;
	pthread_mutex_unlock(&h->lock);
	return s;
}

void vmbus_host_restored(struct vmbus_host *h, uint64_t reference_100ns)
{
	pthread_mutex_lock(&h->lock);
	uint64_t now = monotonic_ns();
	h->start_ns = now - reference_100ns * 100;
	h->logged_version = vmbus_server_version(h->server);
	h->last_heartbeat_answers = h->heartbeat ? ic_heartbeat_answers(h->heartbeat) : 0;
	h->last_heartbeat_ns = h->last_heartbeat_sent_ns = now;
	pthread_mutex_unlock(&h->lock);
}
