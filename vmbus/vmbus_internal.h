/* Shared between vmbus/server.c (control protocol), vmbus/channel.c (device API) and
 * vmbus/savestate.c (saved state). */
#ifndef VIRIDIAN_VMBUS_INTERNAL_H
#define VIRIDIAN_VMBUS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/channel.h"
#include "vmbus/ring.h"
#include "vmbus/server.h"

/* The values are in saved states (vmbus/savestate.c): never renumber. */
enum vmbus_chan_state {
	CHAN_IDLE,      /* registered, not offered (guest not connected / offers not requested) */
	CHAN_OFFERED,   /* offer sent; the guest may open it */
	CHAN_OPEN,      /* rings mapped, device running */
	CHAN_RESCINDED, /* rescind sent; waiting for RELID_RELEASED */
};

#define VMBUS_MAX_GPADLS     1024
#define VMBUS_MAX_GPADL_PFNS (1u << 20)  /* all GPADLs together: 4 GiB of guest pages */
#define VMBUS_OUTQ_MAX       1024        /* host -> guest messages waiting for a SynIC slot */
#define VMBUS_LOG_LIMIT      256         /* log lines per connection (a guest can make many) */
#define PFN_LIMIT            (1ull << 52) /* pfn << 12 must not overflow */

struct gpadl {
	struct gpadl *next;
	uint32_t id;
	uint32_t relid;
	uint16_t rangecount;
	uint16_t buflen;        /* range byte stream length (GPADL_HEADER range_buflen) */
	uint32_t received;      /* bytes of it received so far */
	uint8_t *buf;           /* the stream while incomplete */
	bool complete;
	bool page_aligned;      /* every range starts and ends on a page boundary (usable as a ring) */
	uint64_t *pfns;         /* all ranges' PFNs, in order (complete GPADLs) */
	uint32_t npfns;
	uint64_t writable;      /* leading bytes granted for host writes (ops->grant) */
};

struct out_msg {
	uint32_t len;
	uint8_t data[VMBUS_MAX_MESSAGE_SIZE];
};

struct vmbus_server {
	const struct vmbus_host_ops *ops;
	void *opaque;
	uint32_t vp_count;              /* 0: unchecked */
	bool connected;
	uint32_t version;
	uint32_t target_vcpu;           /* where control messages go */
	uint32_t msg_sint;
	bool offers_sent;
	struct vmbus_chan *chans[VMBUS_MAX_RELIDS]; /* index relid - 1; devices first, then sub-channels */
	uint32_t nchans;                /* devices (primaries): relids 1..nchans */
	struct gpadl *gpadls;
	uint32_t ngpadls;
	uint32_t gpadl_pfns;            /* sum of npfns and pending stream sizes / 8 */
	struct out_msg *outq;           /* ring of VMBUS_OUTQ_MAX */
	uint32_t outq_head, outq_len;
	uint32_t log_lines;
	bool restoring;                 /* from vmbus_server_restore() to _restore_finish() or a reset */
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
	bool restored;                  /* restore_device() gave the device its state (until finish) */
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
bool vmbus_srv_vp_ok(const struct vmbus_server *srv, uint32_t vp);
bool vmbus_srv_version_supported(uint32_t version);
/* A PFN the guest may name: inside guest RAM. */
bool vmbus_srv_pfn_ok(struct vmbus_server *srv, uint64_t pfn);
struct gpadl *vmbus_srv_gpadl_find(struct vmbus_server *srv, uint32_t id);
/* What a GPADL counts against VMBUS_MAX_GPADL_PFNS. */
uint32_t vmbus_srv_gpadl_weight(const struct gpadl *g);
/* Grant (on) or end the grant of the first `bytes` bytes of a complete GPADL (ops->grant). */
void vmbus_srv_gpadl_grant(struct vmbus_server *srv, const struct gpadl *g, uint64_t bytes, bool on);
/* Map an opening channel's rings from GPADL g, pages [0, split) guest->host, the rest host->guest,
 * and grant what the host writes; NULL on success or why not. */
const char *vmbus_srv_map_rings(struct vmbus_server *srv, struct vmbus_chan *chan, const struct gpadl *g,
				uint32_t split);
/* A new sub-channel `index` of primary at relid slot + 1 (state OFFERED, nothing sent); NULL if out of memory. */
struct vmbus_chan *vmbus_srv_sub_new(struct vmbus_chan *primary, uint16_t index, uint32_t slot);
/* Close for the device, rescind to the guest. */
void vmbus_srv_fail_chan(struct vmbus_chan *chan, const char *why);
/* Tear down an open channel's rings (device close callback first). */
void vmbus_chan_teardown(struct vmbus_chan *chan);
/* Publish the read position of `in` and signal the guest if it waits for space. */
void vmbus_chan_commit(struct vmbus_chan *chan);

#endif
