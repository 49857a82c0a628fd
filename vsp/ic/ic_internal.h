/* Shared by the integration-service framework (ic.c) and the services. */
#ifndef VIRIDIAN_VSP_IC_INTERNAL_H
#define VIRIDIAN_VSP_IC_INTERNAL_H

#include "state/savedstate.h"
#include "vsp/ic.h"

struct ic_dev;

/* The largest request body a service sends (the file copy's WRITE_TO_FILE fragment). */
#define IC_MAX_BODY 6196

/* The framework's part of a saved IC section (STATE_SECTION_IC), read and checked by ic.c but
 * not yet applied: a service's restore hook sees it to check its own fields against it. */
struct ic_saved {
	struct vmbus_chan *chan;
	enum ic_state state;
	uint32_t fw_version, srv_version;
	uint64_t next_tid, pending_tid;
	uint32_t time_left_ms;          /* until the pending transaction times out */
};

struct ic_service {
	const char *name;
	struct vmbus_guid class_id;
	struct vmbus_guid instance_id;
	uint16_t msgtype;               /* ICMSGTYPE_* of its requests */
	const uint32_t *versions;       /* service versions offered, preferred first */
	unsigned nversions;
	/* A response to the current request (header checked: type, flags, transaction). */
	void (*on_response)(struct ic_dev *dev, const struct icmsg_hdr *hdr, const uint8_t *body, uint32_t len);
	void (*on_ready)(struct ic_dev *dev); /* optional: versions agreed */
	/* Saved state: the service's fields, after the framework's. save writes them (0, or a
	 * negative errno after state_fail()). restore reads and checks them, then calls
	 * ic_restore_commit() and applies them only if that returned 0, so that a failed restore
	 * changes nothing. Both optional: a service without restore keeps nothing of its own. */
	int (*save)(struct ic_dev *dev, struct state_writer *w);
	int (*restore)(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c);
};

struct ic_dev {
	const struct ic_service *svc;
	struct vmbus_device_ops ops;
	struct vmbus_chan *chan;
	enum ic_state state;
	uint32_t fw_version, srv_version;
	uint64_t next_tid;
	uint64_t pending_tid;           /* transaction id of the request awaiting an answer; 0 none */
	/* Time, for services that time their transactions out (KVP, VSS): the caller's monotonic
	 * ms (ic_advance) and when the pending transaction expires. */
	uint64_t now_ms, deadline_ms;
	bool rebase_clock;              /* restored: the next ic_advance() sets the clock's origin */
	/* service state */
	uint64_t hb_seq, hb_answers;
	int sd_result;
	uint64_t ts_answers;
	uint64_t (*now_100ns)(void *);
	uint64_t (*ref_100ns)(void *);
	void *clock_ctx;
};

struct ic_dev *ic_add(struct vmbus_server *srv, const struct ic_service *svc);
/* Send a request of the service's type with the negotiated versions. 0 or -1. */
int ic_send_request(struct ic_dev *dev, const void *body, uint32_t len);
/* Move the clock to the caller's now_ms (it never goes back). */
void ic_advance(struct ic_dev *dev, uint64_t now_ms);
/* A service's outstanding request (its transaction id tid), looked at from its tick:
 * IC_WAIT_PENDING still waiting; IC_WAIT_CLOSED the channel is no longer ready; IC_WAIT_LOST the
 * framework consumed an answer with tid but another message type; IC_WAIT_EXPIRED its deadline
 * passed, and the framework forgets it, so a late answer carries a stale id and is ignored. */
enum ic_wait { IC_WAIT_PENDING, IC_WAIT_CLOSED, IC_WAIT_LOST, IC_WAIT_EXPIRED };
enum ic_wait ic_wait_check(struct ic_dev *dev, uint64_t tid);
/* The end of a service's restore hook: fails unless the payload was read exactly to its end,
 * else applies the framework's part. */
int ic_restore_commit(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c);

#endif
