/* The worker's VMBus side: the VMBus server and its VSPs wired to the partition's SynIC
 * and hypercalls. The server is single-threaded by contract; every entry (hypercalls from
 * vCPU threads, EOM, the worker loop's ticks) goes through one lock. */
#ifndef VIRIDIAN_WORKER_VMBUS_HOST_H
#define VIRIDIAN_WORKER_VMBUS_HOST_H

#include <pthread.h>
#include <stdint.h>

#include "hv/partition.h"
#include "vmbus/server.h"

struct ic_dev;

struct vmbus_host {
	pthread_mutex_t lock;
	struct hv_partition *hv;
	struct vmbus_server *server;
	struct ic_dev *heartbeat, *shutdown, *timesync, *kvp, *vss, *fcopy; /* fcopy: Guest Service Interface */
	uint32_t logged_version;
	uint64_t last_heartbeat_answers;
	uint64_t last_heartbeat_ns;     /* when the guest last answered a heartbeat */
	uint64_t start_ns;
	uint64_t last_heartbeat_sent_ns;
	uint64_t heartbeat_rtt_ns, heartbeat_rtt_min_ns; /* host send -> guest answer processed */
	uint64_t last_enumerate_ns;     /* when the guest's intrinsic KVP pool was last asked for */
};

/* Creates the server with the integration services and makes it the partition's message
 * sink; a service whose bit (1 << WORKER_IC_*, worker/options.h) is in disabled_ics is not
 * offered to the guest and its pointer stays NULL. Returns false if memory runs out. */
bool vmbus_host_init(struct vmbus_host *h, struct hv_partition *hv, unsigned disabled_ics);
void vmbus_host_destroy(struct vmbus_host *h);
/* Guest RAM through the partition (opaque: the vmbus_host), for the VSPs' host ops. */
void *vmbus_host_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len);
/* The guest-write check's grant through the partition; only when platform.grant is set. */
void vmbus_host_grant(void *opaque, void *hva, uint64_t len, bool on);

/* After a saved VM was restored into h (before its vCPUs run): the guest's reference time is
 * now reference_100ns, not the time since this process started, and the integration services
 * are in contact already. */
void vmbus_host_restored(struct vmbus_host *h, uint64_t reference_100ns);

/* The guest wrote EOM: queued server messages may fit now. */
void vmbus_host_eom(struct vmbus_host *h);
/* Periodic work from the worker loop, at least once a second: heartbeats, integration-service
 * time-outs, refreshing the guest's KVP data; now_ns is CLOCK_MONOTONIC. */
void vmbus_host_tick(struct vmbus_host *h, uint64_t now_ns);

/* Host requests through the integration services. Return 0 or -1 (service not ready). */
int vmbus_host_request_shutdown(struct vmbus_host *h, bool reboot, bool force);

enum heartbeat_status { HEARTBEAT_NO_CONTACT, HEARTBEAT_OK, HEARTBEAT_LOST };
enum heartbeat_status vmbus_host_heartbeat(struct vmbus_host *h, uint64_t now_ns, uint64_t *last_seen_ns);

#endif
