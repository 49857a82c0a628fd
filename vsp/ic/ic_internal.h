/* Shared by the integration-service framework (ic.c) and the services. */
#ifndef VIRIDIAN_VSP_IC_INTERNAL_H
#define VIRIDIAN_VSP_IC_INTERNAL_H

#include "vsp/ic.h"

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
};

struct ic_dev {
	const struct ic_service *svc;
	struct vmbus_device_ops ops;
	struct vmbus_chan *chan;
	enum ic_state state;
	uint32_t fw_version, srv_version;
	uint64_t next_tid;
	uint64_t pending_tid;           /* transaction id of the request awaiting an answer; 0 none */
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

#endif
