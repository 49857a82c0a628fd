/* Network adapters (--nic): one netvsp per --nic, its frames to and from a host tap interface
 * (/dev/net/tun, IFF_TAP | IFF_NO_PI; created if it does not exist) or a virtual switch port
 * (include/vswitch/port.h). A thread per adapter reads its backend and hands frames to the guest
 * under the VMBus lock; guest frames are sent on the device thread (non-blocking: a full queue
 * drops the frame). A switch adapter without a cable shows the guest its link down; while it
 * should be on a switch that is not there, its thread tries again every second. */
#ifndef VIRIDIAN_WORKER_NET_H
#define VIRIDIAN_WORKER_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "vsp/netvsp.h"
#include "worker/options.h"
#include "worker/vmbus_host.h"

struct worker_nic_status {
	char tap[32];            /* "" unless a tap adapter */
	char switch_path[108];   /* the switch it should be on, "" none */
	uint16_t vlan;
	bool connected;          /* a cable: the tap, or a live switch port */
	char error[160];         /* why the last plug-in failed, "" */
	char mac[18];            /* 00:15:5d:xx:xx:xx */
	struct netvsp_stats stats;
	unsigned long long write_errors; /* guest frames the backend did not take */
};

/* Opens every adapter's tap (before the VM exists, so a bad one is refused without KVM).
 * False with a message naming the adapter and the problem. */
bool worker_open_nics(const struct worker_options *o, char *err, size_t errlen);
/* Offers the opened adapters on h's VMBus before the guest starts. */
bool worker_attach_nics(struct vmbus_host *h, char *err, size_t errlen);
/* Stops every adapter's thread (which touches the VMBus and guest RAM) and closes its tap;
 * before the VM is destroyed. Runs at exit too; a second call does nothing. */
void worker_detach_nics(void);
unsigned worker_nic_count(void);
/* Counters of adapter i (takes h->lock). False if there is no such adapter. */
bool worker_nic_status(unsigned i, struct worker_nic_status *out);
/* Link up/down as the guest sees it (takes h->lock). False if there is no such adapter. */
bool worker_nic_set_link(unsigned i, bool up);
/* Re-plugs a switch adapter: into the switch at switch_path (NULL: none, unplugged), with access
 * VLAN vlan (-1: unchanged). Returns at once; the adapter's thread connects (status "connected",
 * "error"). False for a tap adapter or no such adapter. */
bool worker_nic_connect(unsigned i, const char *switch_path, int vlan, char *err, size_t errlen);

#endif
