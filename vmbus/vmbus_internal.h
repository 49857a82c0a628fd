/* Shared between vmbus/server.c (control protocol) and vmbus/channel.c (device API). */
#ifndef VIRIDIAN_VMBUS_INTERNAL_H
#define VIRIDIAN_VMBUS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/channel.h"
#include "vmbus/ring.h"
#include "vmbus/server.h"

enum vmbus_chan_state {
	CHAN_IDLE,      /* registered, not offered (guest not connected / offers not requested) */
	CHAN_OFFERED,   /* offer sent; the guest may open it */
	CHAN_OPEN,      /* rings mapped, device running */
	CHAN_RESCINDED, /* rescind sent; waiting for RELID_RELEASED */
};

struct vmbus_chan {
	struct vmbus_server *srv;
	const struct vmbus_device_ops *ops;
	void *device_ctx;
	void *priv;                     /* VSP per-channel state */
	uint32_t relid;
	uint16_t subchannel_index;
	struct vmbus_chan *primary;     /* sub-channels: their device's channel; NULL for a primary */
	enum vmbus_chan_state state;
	uint32_t openid;
	uint32_t target_vp;
	uint32_t ring_gpadl;
	uint8_t userdata[VMBUS_MAX_USER_DEFINED_BYTES];
	struct vmbus_ring in;           /* guest -> host */
	struct vmbus_ring out;          /* host -> guest */
	uint8_t *rxbuf;                 /* one packet copied out of `in` (capacity = in.size) */
	uint32_t rxcap;
};

/* Server services the channel layer uses */
void vmbus_srv_log(struct vmbus_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vmbus_srv_signal_chan(struct vmbus_chan *chan);
void *vmbus_srv_gpa(struct vmbus_server *srv, uint64_t gpa, uint64_t len);
uint32_t vmbus_srv_version(const struct vmbus_server *srv);
/* PFNs of a complete GPADL that channel relid's guest created; 0, or -1 if there is none. */
int vmbus_srv_gpadl_pfns(struct vmbus_server *srv, uint32_t relid, uint32_t id, const uint64_t **pfns,
			 uint32_t *count);
/* vmbus_chan_gpadl_writable() of channel relid. */
int vmbus_srv_gpadl_writable(struct vmbus_server *srv, uint32_t relid, uint32_t id, uint64_t bytes);
/* Close for the device, rescind to the guest. */
void vmbus_srv_fail_chan(struct vmbus_chan *chan, const char *why);
/* Tear down an open channel's rings (device close callback first). */
void vmbus_chan_teardown(struct vmbus_chan *chan);
/* Publish the read position of `in` and signal the guest if it waits for space. */
void vmbus_chan_commit(struct vmbus_chan *chan);

#endif
