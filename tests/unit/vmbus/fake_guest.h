/* An in-test fake guest for the VMBus server: guest RAM is a malloc'd array, SynIC messages and
 * events the host sends are recorded, and the guest side of channels (GPADLs, rings) is written
 * here independently of vmbus/ring.c, the way Linux drivers/hv does it.
 *
 * With FG_GUARD=1 in the environment the RAM is vmwp's guest-write check instead
 * (worker/guest_guard.h): the host side gets its read-only view and ops.grant, so a host write
 * the guest did not grant aborts the test, and fg_free checks that every grant was returned. */
#ifndef FAKE_GUEST_H
#define FAKE_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/protocol.h"
#include "vmbus/server.h"

#define FG_RAM_PAGES 128
#define FG_RAM_BYTES ((uint64_t)FG_RAM_PAGES * VMBUS_PAGE_SIZE)
#define FG_MAX_MSGS  512
#define FG_MAX_EVENTS 4096

struct fg_msg {
	uint32_t vp, sint, type, len;
	uint8_t data[VMBUS_MAX_MESSAGE_SIZE];
};

struct fg_event {
	uint32_t vp, sint, flag;
};

struct fake_guest {
	uint8_t *ram;                 /* FG_RAM_PAGES pages, gpa 0 .. (the guest's side) */
	uint8_t *host;                /* the same pages as the host reaches them (gpa_to_hva) */
	struct fg_msg msgs[FG_MAX_MSGS];
	unsigned nmsgs;
	struct fg_event events[FG_MAX_EVENTS];
	unsigned nevents;
	int refuse_posts;             /* post_message returns -1 while > 0 (counts down) */
	unsigned nlogs;
	struct vmbus_server *srv;
	struct vmbus_host_ops ops;
};

/* Guest view of one channel's rings inside guest RAM */
struct fg_ring {
	struct vmbus_ring_header *hdr;
	uint8_t *data;
	uint32_t size;
};

struct fg_chan {
	uint32_t relid;
	uint32_t conn_id;
	uint32_t gpadl;
	struct fg_ring send;  /* guest -> host */
	struct fg_ring recv;  /* host -> guest */
};

void fg_init(struct fake_guest *g);
void fg_free(struct fake_guest *g);
void *fg_page(struct fake_guest *g, uint32_t pfn);

/* Post a raw VMBus message (payload = a vmbus_channel_* struct) on a connection id. */
uint16_t fg_post(struct fake_guest *g, uint32_t conn_id, const void *msg, uint32_t len);
#define FG_POST(g, msg) fg_post((g), VMBUS_MESSAGE_CONNECTION_ID, &(msg), sizeof(msg))

/* Last recorded message, the i-th, and count of a given msgtype. */
const struct fg_msg *fg_last(const struct fake_guest *g);
uint32_t fg_msgtype(const struct fg_msg *m);
unsigned fg_count(const struct fake_guest *g, uint32_t msgtype);
void fg_clear(struct fake_guest *g);

/* INITIATE_CONTACT with this version (on id 4 for >= 5.0); returns version_supported. */
int fg_connect(struct fake_guest *g, uint32_t version);
/* REQUESTOFFERS; returns the number of offers received. */
unsigned fg_request_offers(struct fake_guest *g);
/* GPADL over npages pages given by pfns[], as Linux does (one range, header + bodies).
 * Returns the GPADL_CREATED status (or 0xdead if no answer came). */
uint32_t fg_gpadl(struct fake_guest *g, uint32_t relid, uint32_t id, const uint32_t *pfns, uint32_t npages);
/* The guest's view of a channel whose rings are pages first_pfn.. (nothing is posted; after a
 * restore, the rings are where they were). */
void fg_chan_init(struct fake_guest *g, struct fg_chan *c, uint32_t relid, uint32_t gpadl, uint32_t first_pfn,
		  uint32_t send_pages, uint32_t recv_pages);
/* Build a channel: GPADL over send_pages + recv_pages starting at first_pfn, OPENCHANNEL.
 * Returns the OPENCHANNEL_RESULT status. */
uint32_t fg_open(struct fake_guest *g, struct fg_chan *c, uint32_t relid, uint32_t gpadl,
		 uint32_t first_pfn, uint32_t send_pages, uint32_t recv_pages);
/* Close + teardown the ring GPADL; returns true when GPADL_TORNDOWN came. */
bool fg_close(struct fake_guest *g, struct fg_chan *c);

/* Guest ring side (as Linux ring_buffer.c). send returns 0, or -1 when full; *signal set when
 * Linux would signal the host (then call fg_signal). recv returns the packet length (descriptor
 * included) copied to buf, 0 when empty. */
int fg_ring_send(struct fg_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
		 const void *data, uint32_t len, bool *signal);
uint32_t fg_ring_recv(struct fg_ring *r, void *buf, uint32_t cap);
uint16_t fg_signal(struct fake_guest *g, const struct fg_chan *c);
/* Number of recorded events for flag (relid). */
unsigned fg_events_for(const struct fake_guest *g, uint32_t flag);

#endif
