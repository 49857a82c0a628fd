/* Network adapters (--nic tap=NAME[,mac=...]): one netvsp per --nic, its frames to and from a
 * host tap interface (/dev/net/tun, IFF_TAP | IFF_NO_PI; created if it does not exist). A thread
 * per adapter reads the tap and hands frames to the guest under the VMBus lock; guest frames are
 * written to the tap on the device thread (non-blocking: a full tap queue drops the frame). */
#ifndef VIRIDIAN_WORKER_NET_H
#define VIRIDIAN_WORKER_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "vsp/netvsp.h"
#include "worker/options.h"
#include "worker/vmbus_host.h"

struct worker_nic_status {
	char tap[32];
	char mac[18];            /* 00:15:5d:xx:xx:xx */
	struct netvsp_stats stats;
	unsigned long long tap_write_errors;
};

/* Opens every tap and offers the adapters on h's VMBus before the guest starts. False with a
 * message naming the adapter and the problem. */
bool worker_attach_nics(struct vmbus_host *h, const struct worker_options *o, char *err, size_t errlen);
unsigned worker_nic_count(void);
/* Counters of adapter i (takes h->lock). False if there is no such adapter. */
bool worker_nic_status(unsigned i, struct worker_nic_status *out);
/* Link up/down as the guest sees it (takes h->lock). False if there is no such adapter. */
bool worker_nic_set_link(unsigned i, bool up);

#endif
