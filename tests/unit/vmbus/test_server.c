/* The VMBus server driven by an in-test fake guest: handshake, offers, GPADLs, open/close,
 * packets through both rings, signalling, unload, and hostile input of every kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "vmbus/channel.h"

/* ---- an echo device: answers every request ---- */
struct echo {
	unsigned opens, opened, closes, calls, packets, badpkts;
	unsigned by_index[4];      /* packets per sub-channel index (0 = primary) */
	int refuse_open;
	int last_rc;
	bool blocked;              /* a send hit a full ring; the packet waits in `held` */
	uint8_t held[4096];
	uint32_t held_len;
	uint64_t held_tid;
	uint64_t range_sum;        /* GPA-direct: sum of bytes read from the ranges */
	int range_copy_rc;
};

static int echo_open(struct vmbus_chan *chan, void *ctx)
{
	(void)chan;
	struct echo *e = ctx;
	e->opens++;
	return e->refuse_open;
}

static void echo_opened(struct vmbus_chan *chan, void *ctx)
{
	(void)chan;
	((struct echo *)ctx)->opened++;
}

static void echo_close(struct vmbus_chan *chan, void *ctx)
{
	(void)chan;
	((struct echo *)ctx)->closes++;
}

static void echo_on_packets(struct vmbus_chan *chan, void *ctx)
{
	struct echo *e = ctx;
	e->calls++;
	if (e->blocked) {
		if (vmbus_chan_send(chan, VM_PKT_DATA_INBAND, 0, e->held_tid, e->held, e->held_len) != 0)
			return;
		e->blocked = false;
	}
	struct vmbus_packet pkt;
	for (;;) {
		int rc = vmbus_chan_recv(chan, &pkt);
		e->last_rc = rc;
		if (rc == VMBUS_CHAN_BADPKT) {
			e->badpkts++;
			continue;
		}
		if (rc != 1)
			return;
		e->packets++;
		if (vmbus_chan_subchannel_index(chan) < 4)
			e->by_index[vmbus_chan_subchannel_index(chan)]++;
		if (pkt.type == VM_PKT_DATA_USING_GPA_DIRECT) {
			for (uint32_t i = 0; i < pkt.range_count; i++) {
				struct vmbus_gpa_range r;
				assert_int_equal(vmbus_packet_gpa_range(&pkt, i, &r), 0);
				uint8_t tmp[8192];
				uint32_t n = r.byte_count < sizeof(tmp) ? r.byte_count : sizeof(tmp);
				e->range_copy_rc = vmbus_chan_copy_from_range(chan, &r, 0, tmp, n);
				if (e->range_copy_rc == 0)
					for (uint32_t k = 0; k < n; k++)
						e->range_sum += tmp[k];
			}
			vmbus_chan_complete(chan, pkt.trans_id, pkt.data, pkt.data_len);
			continue;
		}
		int s;
		if (pkt.flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED)
			s = vmbus_chan_complete(chan, pkt.trans_id, pkt.data, pkt.data_len);
		else
			s = vmbus_chan_send(chan, VM_PKT_DATA_INBAND, 0, pkt.trans_id, pkt.data, pkt.data_len);
		if (s == VMBUS_CHAN_FULL) {
			e->blocked = true;
			memcpy(e->held, pkt.data, pkt.data_len);
			e->held_len = pkt.data_len;
			e->held_tid = pkt.trans_id;
			return;
		}
	}
}

static const struct vmbus_device_ops echo_ops = {
	.name = "echo",
	.class_id = VMBUS_GUID_INIT(0x12345678, 0x1234, 0x5678, 1, 2, 3, 4, 5, 6, 7, 8),
	.instance_id = VMBUS_GUID_INIT(0xabcdef01, 0x2345, 0x6789, 8, 7, 6, 5, 4, 3, 2, 1),
	.open = echo_open,
	.opened = echo_opened,
	.close = echo_close,
	.on_packets = echo_on_packets,
};

struct ctx {
	struct fake_guest g;
	struct echo e1, e2;
	struct vmbus_chan *c1, *c2;
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	fg_init(&c->g);
	c->c1 = vmbus_server_add_device(c->g.srv, &echo_ops, &c->e1);
	c->c2 = vmbus_server_add_device(c->g.srv, &echo_ops, &c->e2);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	fg_free(&c->g);
	free(c);
	return 0;
}

/* connected at 5.3, offers received */
static void bring_up(struct ctx *c)
{
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&c->g), 2);
}

/* ---- handshake ---- */

static void test_versions(void **state)
{
	struct ctx *c = *state;
	const uint32_t good[] = {VERSION_WIN10_V5_3, VERSION_WIN10_V5_2, VERSION_WIN10_V5_1,
				 VERSION_WIN10_V5, VERSION_WIN10_V4_1, VERSION_WIN10};
	const uint32_t bad[] = {VERSION_WIN8_1, VERSION_WIN8, VERSION_WIN7, VERSION_WS2008,
				VMBUS_MAKE_VERSION(5, 4), VMBUS_MAKE_VERSION(6, 0), 0};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(fg_connect(&c->g, bad[i]), 0);
		assert_int_equal(vmbus_server_version(c->g.srv), 0);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		fg_clear(&c->g);
		assert_int_equal(fg_connect(&c->g, good[i]), 1);
		assert_int_equal(vmbus_server_version(c->g.srv), good[i]);
		const struct fg_msg *m = fg_last(&c->g);
		const struct vmbus_channel_version_response *r = (const void *)m->data;
		assert_int_equal(r->msg_conn_id, VMBUS_MESSAGE_CONNECTION_ID);
		assert_int_equal(m->sint, VMBUS_MESSAGE_SINT);
		assert_int_equal(m->type, VMBUS_MESSAGE_TYPE);
		assert_int_equal(m->len, sizeof(*r));
		vmbus_server_reset(c->g.srv);
	}
}

static void test_target_vcpu(void **state)
{
	struct ctx *c = *state;
	vmbus_server_set_vp_count(c->g.srv, 4);
	struct vmbus_channel_initiate_contact ic = {.header.msgtype = CHANNELMSG_INITIATE_CONTACT,
						    .vmbus_version_requested = VERSION_WIN10_V5_2,
						    .target_vcpu = 3};
	ic.msg_sint = VMBUS_MESSAGE_SINT;
	assert_int_equal(fg_post(&c->g, VMBUS_MESSAGE_CONNECTION_ID_4, &ic, sizeof(ic)), HV_STATUS_SUCCESS);
	assert_int_equal(fg_last(&c->g)->vp, 3);
	assert_int_equal(fg_request_offers(&c->g), 2);
	assert_int_equal(fg_last(&c->g)->vp, 3);
	/* a VP the partition does not have: refused, answered on the posting VP */
	vmbus_server_reset(c->g.srv);
	ic.target_vcpu = 4;
	fg_post(&c->g, VMBUS_MESSAGE_CONNECTION_ID_4, &ic, sizeof(ic));
	assert_int_equal(((const struct vmbus_channel_version_response *)fg_last(&c->g)->data)->version_supported, 0);
	assert_int_equal(fg_last(&c->g)->vp, 0);
}

static void test_hypercall_status(void **state)
{
	struct ctx *c = *state;
	struct hv_input_post_message in;
	memset(&in, 0, sizeof(in));
	in.connection_id = 7;
	in.message_type = 1;
	in.payload_size = 8;
	assert_int_equal(vmbus_server_post_message(c->g.srv, 0, &in), HV_STATUS_INVALID_CONNECTION_ID);
	in.connection_id = 1;
	in.payload_size = 241;
	assert_int_equal(vmbus_server_post_message(c->g.srv, 0, &in), HV_STATUS_INVALID_PARAMETER);
	in.payload_size = 8;
	in.message_type = 0;
	assert_int_equal(vmbus_server_post_message(c->g.srv, 0, &in), HV_STATUS_INVALID_PARAMETER);
	in.message_type = 0x80000001u;
	assert_int_equal(vmbus_server_post_message(c->g.srv, 0, &in), HV_STATUS_INVALID_PARAMETER);
	assert_int_equal(vmbus_server_signal_event(c->g.srv, 0, 5, 0), HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_server_signal_event(c->g.srv, 0, VMBUS_CHANNEL_CONNECTION_ID_BASE, 0),
			 HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_server_signal_event(c->g.srv, 0, VMBUS_CHANNEL_CONNECTION_ID_BASE + 3, 0),
			 HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_server_signal_event(c->g.srv, 0, VMBUS_CHANNEL_CONNECTION_ID_BASE + 1, 0),
			 HV_STATUS_SUCCESS); /* valid, not open: ignored */
	assert_int_equal(c->e1.calls, 0);
	assert_int_equal(c->g.nmsgs, 0);
}

static void test_offers(void **state)
{
	struct ctx *c = *state;
	/* nothing is answered before INITIATE_CONTACT */
	struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
	FG_POST(&c->g, h);
	assert_int_equal(c->g.nmsgs, 0);
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10), 1);
	fg_clear(&c->g);
	assert_int_equal(fg_request_offers(&c->g), 2);
	assert_int_equal(c->g.nmsgs, 3);
	assert_int_equal(fg_msgtype(&c->g.msgs[2]), CHANNELMSG_ALLOFFERS_DELIVERED);
	for (int i = 0; i < 2; i++) {
		const struct vmbus_channel_offer_channel *o = (const void *)c->g.msgs[i].data;
		assert_int_equal(c->g.msgs[i].len, sizeof(*o));
		assert_int_equal(o->child_relid, (uint32_t)i + 1);
		assert_int_equal(o->connection_id, VMBUS_CHANNEL_CONNECTION_ID_BASE + (uint32_t)i + 1);
		assert_int_equal(o->monitor_allocated, 0);
		assert_int_equal(o->offer.sub_channel_index, 0);
		assert_memory_equal(&o->offer.if_type, &echo_ops.class_id, 16);
		assert_memory_equal(&o->offer.if_instance, &echo_ops.instance_id, 16);
	}
	/* the GUID macro lays fields out little endian */
	assert_int_equal(echo_ops.class_id.b[0], 0x78);
	assert_int_equal(echo_ops.class_id.b[4], 0x34);
	assert_int_equal(echo_ops.class_id.b[8], 1);
	/* a second REQUESTOFFERS is ignored */
	assert_int_equal(fg_request_offers(&c->g), 0);
}

/* ---- GPADLs ---- */

static void test_gpadl_multi_body(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	uint32_t pfns[100];
	for (int i = 0; i < 100; i++)
		pfns[i] = (uint32_t)(20 + i);
	unsigned before = c->g.nmsgs;
	assert_int_equal(fg_gpadl(&c->g, 1, 0xE1E10, pfns, 100), 0); /* header + 3 bodies */
	assert_int_equal(c->g.nmsgs, before + 1);
	/* teardown -> torndown */
	struct vmbus_channel_gpadl_teardown t = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = 1,
						 .gpadl = 0xE1E10};
	FG_POST(&c->g, t);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_GPADL_TORNDOWN);
	/* the handle is free again */
	assert_int_equal(fg_gpadl(&c->g, 1, 0xE1E10, pfns, 3), 0);
}

/* A hand-built multi-range GPADL: range 1 = 2 pages from offset 100, range 2 = 1 whole page. */
static void test_gpadl_multi_range(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	uint8_t buf[240];
	memset(buf, 0, sizeof(buf));
	struct vmbus_channel_gpadl_header *h = (void *)buf;
	h->header.msgtype = CHANNELMSG_GPADL_HEADER;
	h->child_relid = 2;
	h->gpadl = 77;
	h->rangecount = 2;
	h->range_buflen = 8 + 16 + 8 + 8;
	uint32_t w[] = {5000, 100};
	memcpy(buf + 20, w, 8);
	uint64_t p[] = {30, 40};
	memcpy(buf + 28, p, 16);
	/* the second range arrives in a body */
	fg_post(&c->g, 1, buf, 20 + 24);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_GPADL_CREATED), 0);
	struct vmbus_channel_gpadl_body *b = (void *)buf;
	memset(buf, 0, sizeof(buf));
	b->header.msgtype = CHANNELMSG_GPADL_BODY;
	b->gpadl = 77;
	uint32_t w2[] = {4096, 0};
	uint64_t p2 = 50;
	memcpy(buf + 16, w2, 8);
	memcpy(buf + 24, &p2, 8);
	fg_post(&c->g, 1, buf, 32);
	const struct vmbus_channel_gpadl_created *cr = (const void *)fg_last(&c->g)->data;
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_GPADL_CREATED);
	assert_int_equal(cr->gpadl, 77);
	assert_int_equal(cr->child_relid, 2);
	assert_int_equal(cr->creation_status, 0);
	/* not page aligned: cannot carry rings */
	struct vmbus_channel_open_channel o = {.header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = 2, .openid = 2,
					       .ringbuffer_gpadlhandle = 77, .downstream_ringbuffer_pageoffset = 2};
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
}

static uint32_t created_status(struct ctx *c)
{
	if (fg_msgtype(fg_last(&c->g)) != CHANNELMSG_GPADL_CREATED)
		return 0xdead;
	return ((const struct vmbus_channel_gpadl_created *)fg_last(&c->g)->data)->creation_status;
}

static void post_header(struct ctx *c, uint32_t relid, uint32_t id, uint16_t rangecount, uint16_t buflen,
			uint32_t bytes, uint32_t offset, const uint64_t *pfns, uint32_t npfns)
{
	uint8_t buf[240] = {0};
	struct vmbus_channel_gpadl_header *h = (void *)buf;
	h->header.msgtype = CHANNELMSG_GPADL_HEADER;
	h->child_relid = relid;
	h->gpadl = id;
	h->rangecount = rangecount;
	h->range_buflen = buflen;
	memcpy(buf + 20, &bytes, 4);
	memcpy(buf + 24, &offset, 4);
	memcpy(buf + 28, pfns, npfns * 8);
	fg_post(&c->g, 1, buf, 28 + npfns * 8);
}

static void test_gpadl_hostile(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	uint64_t pfns[4] = {10, 11, FG_RAM_PAGES, 12};
	/* PFN outside guest RAM */
	post_header(c, 1, 1, 1, 8 + 32, 4 * 4096, 0, pfns, 4);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	uint64_t huge[1] = {1ull << 60};
	post_header(c, 1, 2, 1, 16, 4096, 0, huge, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* byte_count + offset implying more PFNs than range_buflen holds (and overflowing 32 bits) */
	post_header(c, 1, 3, 1, 16, 0xFFFFFFFFu, 4095, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* rangecount larger than the stream */
	post_header(c, 1, 4, 0xFFFF, 16, 4096, 0, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* rangecount 0, byte_offset beyond the page, byte_count 0, range_buflen not a multiple of 8 */
	post_header(c, 1, 5, 0, 16, 4096, 0, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	post_header(c, 1, 6, 1, 16, 10, 4096, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	post_header(c, 1, 7, 1, 16, 0, 0, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	post_header(c, 1, 8, 1, 20, 4096, 0, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* stream longer than its ranges */
	post_header(c, 1, 9, 1, 24, 4096, 0, pfns, 2);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* more data in the header than range_buflen */
	post_header(c, 1, 10, 1, 16, 4096, 0, pfns, 2);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* unknown channel */
	post_header(c, 9, 11, 1, 16, 4096, 0, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	post_header(c, 0, 11, 1, 16, 4096, 0, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* a good one, then a duplicate handle: refused, the original stays usable */
	post_header(c, 1, 12, 1, 24, 8192, 0, pfns, 2);
	assert_int_equal(created_status(c), 0);
	post_header(c, 1, 12, 1, 16, 4096, 0, pfns, 1);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	struct vmbus_channel_gpadl_teardown t = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .gpadl = 12};
	FG_POST(&c->g, t);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_GPADL_TORNDOWN);
	/* teardown of an unknown handle: no answer */
	unsigned n = c->g.nmsgs;
	FG_POST(&c->g, t);
	assert_int_equal(c->g.nmsgs, n);
	/* body for an unknown GPADL: dropped */
	struct vmbus_channel_gpadl_body b = {.header.msgtype = CHANNELMSG_GPADL_BODY, .gpadl = 0x999};
	FG_POST(&c->g, b);
	assert_int_equal(c->g.nmsgs, n);
	/* body overrunning range_buflen: refused */
	post_header(c, 1, 13, 1, 24, 8192, 0, pfns, 1);
	assert_int_equal(c->g.nmsgs, n);
	uint8_t buf[40] = {0};
	struct vmbus_channel_gpadl_body *bb = (void *)buf;
	bb->header.msgtype = CHANNELMSG_GPADL_BODY;
	bb->gpadl = 13;
	fg_post(&c->g, 1, buf, 32);
	assert_int_equal(created_status(c), VMBUS_STATUS_UNSUCCESSFUL);
	/* pending (incomplete) GPADL can be torn down */
	post_header(c, 1, 14, 1, 24, 8192, 0, pfns, 1);
	t.gpadl = 14;
	FG_POST(&c->g, t);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_GPADL_TORNDOWN);
}

static void test_gpadl_limit(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	uint64_t pfn = 10;
	unsigned ok = 0;
	for (uint32_t id = 1; id <= 1100; id++) {
		post_header(c, 1, id, 1, 16, 4096, 0, &pfn, 1);
		ok += created_status(c) == 0;
		if (c->g.nmsgs > FG_MAX_MSGS - 4)
			fg_clear(&c->g);
	}
	assert_int_equal(ok, 1024);
}

/* ---- channels ---- */

static void test_open_close(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 3, 3), 0);
	assert_int_equal(c->e1.opens, 1);
	assert_int_equal(c->e1.opened, 1);
	assert_true(vmbus_chan_is_open(c->c1));
	assert_int_equal(vmbus_chan_relid(c->c1), 1);
	/* the host advertised pending_send_sz support on its ring */
	assert_int_equal(ch.recv.hdr->feature_bits & 1, 1);
	/* opening again is refused, the channel stays open */
	struct vmbus_channel_open_channel o = {.header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = 1, .openid = 9,
					       .ringbuffer_gpadlhandle = 100, .downstream_ringbuffer_pageoffset = 3};
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
	assert_true(vmbus_chan_is_open(c->c1));
	assert_true(fg_close(&c->g, &ch));
	assert_int_equal(c->e1.closes, 1);
	assert_false(vmbus_chan_is_open(c->c1));
	/* reopen works */
	assert_int_equal(fg_open(&c->g, &ch, 1, 101, 10, 2, 2), 0);
	assert_int_equal(c->e1.opens, 2);
	/* device refusing the open */
	c->e2.refuse_open = -1;
	struct fg_chan ch2;
	assert_int_equal(fg_open(&c->g, &ch2, 2, 102, 20, 2, 2), VMBUS_STATUS_UNSUCCESSFUL);
	assert_false(vmbus_chan_is_open(c->c2));
	assert_int_equal(c->e2.opened, 0);
}

/* A guest that tears down the ring GPADL of an open channel: the channel is closed (the device
 * sees close) before GPADL_TORNDOWN, so nothing is written into the pages it took back; rings
 * on another channel's GPADL are refused. */
static void test_ring_gpadl_teardown_while_open(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	struct vmbus_channel_gpadl_teardown t = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = 1,
						 .gpadl = 100};
	FG_POST(&c->g, t);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_GPADL_TORNDOWN);
	assert_int_equal(c->e1.closes, 1);
	assert_false(vmbus_chan_is_open(c->c1));
	/* channel 2 may not open on channel 1's GPADL */
	uint32_t pfns[4] = {30, 31, 32, 33};
	assert_int_equal(fg_gpadl(&c->g, 1, 7, pfns, 4), 0);
	struct vmbus_channel_open_channel o = {.header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = 2, .openid = 1,
					       .ringbuffer_gpadlhandle = 7, .downstream_ringbuffer_pageoffset = 2};
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
	assert_false(vmbus_chan_is_open(c->c2));
	o.child_relid = 1;
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status, 0);
}

static void test_open_hostile(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	uint32_t pfns[4] = {10, 11, 12, 13};
	assert_int_equal(fg_gpadl(&c->g, 1, 5, pfns, 4), 0);
	struct vmbus_channel_open_channel o = {.header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = 1, .openid = 1,
					       .ringbuffer_gpadlhandle = 5};
	const uint32_t bad_offsets[] = {0, 1, 3, 4, 5, 0xFFFFFFFFu};
	for (size_t i = 0; i < sizeof(bad_offsets) / sizeof(bad_offsets[0]); i++) {
		o.downstream_ringbuffer_pageoffset = bad_offsets[i];
		FG_POST(&c->g, o);
		assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
				 VMBUS_STATUS_UNSUCCESSFUL);
	}
	o.downstream_ringbuffer_pageoffset = 2;
	o.ringbuffer_gpadlhandle = 6; /* unknown GPADL */
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
	o.ringbuffer_gpadlhandle = 5;
	o.child_relid = 7; /* unknown channel */
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
	/* a corrupt index in a control page */
	o.child_relid = 1;
	((struct vmbus_ring_header *)fg_page(&c->g, 10))->read_index = 5;
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
	((struct vmbus_ring_header *)fg_page(&c->g, 10))->read_index = 0;
	((struct vmbus_ring_header *)fg_page(&c->g, 12))->write_index = 4096;
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
	((struct vmbus_ring_header *)fg_page(&c->g, 12))->write_index = 0;
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status, 0);
	assert_int_equal(c->e1.opens, 1);
	/* a VP beyond the partition */
	vmbus_server_set_vp_count(c->g.srv, 2);
	uint32_t pfns2[4] = {20, 21, 22, 23};
	assert_int_equal(fg_gpadl(&c->g, 2, 8, pfns2, 4), 0);
	o.child_relid = 2;
	o.ringbuffer_gpadlhandle = 8;
	o.target_vp = 2;
	FG_POST(&c->g, o);
	assert_int_equal(((const struct vmbus_channel_open_result *)fg_last(&c->g)->data)->status,
			 VMBUS_STATUS_UNSUCCESSFUL);
}

static void test_packet_round_trip(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0); /* 4 KiB data per ring */
	uint8_t data[600], buf[4096];
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < 300; i++) {
		uint32_t len = (i * 53) % sizeof(data);
		for (uint32_t k = 0; k < len; k++)
			data[k] = (uint8_t)(i ^ k);
		bool sig;
		uint16_t flags = (i & 1) ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0;
		assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, flags, 1000 + i, data, len, &sig), 0);
		assert_true(sig); /* the host drained everything before: empty -> non-empty each time */
		unsigned ev = fg_events_for(&c->g, 1);
		assert_int_equal(fg_signal(&c->g, &ch), HV_STATUS_SUCCESS);
		assert_int_equal(fg_events_for(&c->g, 1), ev + 1); /* host -> guest signal, flag = relid */
		assert_int_equal(c->g.events[c->g.nevents - 1].sint, VMBUS_MESSAGE_SINT);
		uint32_t got = fg_ring_recv(&ch.recv, buf, sizeof(buf));
		assert_int_equal(got, (16 + len + 7) & ~7u);
		const struct vmpacket_descriptor *d = (const void *)buf;
		assert_int_equal(d->type, (i & 1) ? VM_PKT_COMP : VM_PKT_DATA_INBAND);
		assert_int_equal(d->trans_id, 1000 + i);
		assert_int_equal(d->offset8, 2);
		assert_memory_equal(buf + 16, data, len);
		assert_int_equal(fg_ring_recv(&ch.recv, buf, sizeof(buf)), 0);
		bytes += got + 8;
	}
	assert_int_equal(c->e1.packets, 300);
	assert_true(bytes > 10 * ch.recv.size); /* wrapped many times */
	/* the host published its read position */
	assert_int_equal(ch.send.hdr->read_index, ch.send.hdr->write_index);
}

static void test_interrupt_mask(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	bool sig;
	ch.recv.hdr->interrupt_mask = 1; /* the guest polls: no events */
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, 1, "ping", 4, &sig), 0);
	fg_signal(&c->g, &ch);
	assert_int_equal(fg_events_for(&c->g, 1), 0);
	uint8_t buf[256];
	assert_true(fg_ring_recv(&ch.recv, buf, sizeof(buf)) > 0);
	ch.recv.hdr->interrupt_mask = 0;
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, 2, "ping", 4, &sig), 0);
	fg_signal(&c->g, &ch);
	assert_int_equal(fg_events_for(&c->g, 1), 1);
	/* the guest has not read yet: the second reply does not signal again */
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, 3, "ping", 4, &sig), 0);
	fg_signal(&c->g, &ch);
	assert_int_equal(fg_events_for(&c->g, 1), 1);
}

/* Host -> guest ring full: the host sets pending_send_sz, the guest signals after reading,
 * the device's held packet goes out. */
static void test_host_ring_full(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 3, 2), 0); /* 8 KiB guest->host, 4 KiB host->guest */
	uint8_t data[1000] = {0}, buf[4096];
	bool sig;
	for (int i = 0; i < 7; i++)
		assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, (uint64_t)i, data, sizeof(data), &sig), 0);
	fg_signal(&c->g, &ch);
	assert_true(c->e1.blocked);
	assert_int_equal(ch.recv.hdr->pending_send_sz, 1024);
	assert_int_equal(c->e1.packets, 4); /* 3 replies fit 4 KiB; the 4th waits */
	/* guest reads one reply; free space crosses pending_send_sz: Linux signals the host */
	assert_true(fg_ring_recv(&ch.recv, buf, sizeof(buf)) > 0);
	fg_signal(&c->g, &ch);
	assert_int_equal(ch.recv.hdr->pending_send_sz, 1024); /* blocked again on the 5th */
	unsigned got = 1;
	for (int round = 0; round < 10 && got < 7; round++) {
		while (fg_ring_recv(&ch.recv, buf, sizeof(buf)) > 0)
			got++;
		fg_signal(&c->g, &ch);
	}
	while (fg_ring_recv(&ch.recv, buf, sizeof(buf)) > 0)
		got++;
	assert_int_equal(got, 7);
	assert_false(c->e1.blocked);
	assert_int_equal(ch.recv.hdr->pending_send_sz, 0);
}

/* Guest -> host ring full: the guest sets pending_send_sz; the host signals when it read enough. */
static void test_guest_ring_pending(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 4), 0);
	uint8_t data[1000] = {0};
	bool sig;
	int n = 0;
	while (fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, (uint64_t)n, data, sizeof(data), &sig) == 0)
		n++;
	assert_int_equal(n, 3);
	ch.send.hdr->pending_send_sz = 1024;
	fg_signal(&c->g, &ch);
	assert_int_equal(c->e1.packets, 3);
	/* replies signalled once (empty -> non-empty), plus the pending_send_sz signal */
	assert_int_equal(fg_events_for(&c->g, 1), 2);
}

static void test_corrupt_rings(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	bool sig;
	/* unaligned write_index */
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	ch.send.hdr->write_index = 4;
	fg_signal(&c->g, &ch);
	assert_int_equal(c->e1.last_rc, VMBUS_CHAN_CLOSED);
	assert_int_equal(c->e1.closes, 1);
	const struct fg_msg *m = fg_last(&c->g);
	assert_int_equal(fg_msgtype(m), CHANNELMSG_RESCIND_CHANNELOFFER);
	assert_int_equal(((const struct vmbus_channel_rescind_offer *)m->data)->child_relid, 1);
	/* the guest lets go; the relid's GPADLs go with it */
	struct vmbus_channel_relid_released rr = {.header.msgtype = CHANNELMSG_RELID_RELEASED, .child_relid = 1};
	FG_POST(&c->g, rr);
	struct vmbus_channel_gpadl_teardown t = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .gpadl = 100};
	unsigned n = c->g.nmsgs;
	FG_POST(&c->g, t);
	assert_int_equal(c->g.nmsgs, n); /* already gone */
	/* signals to it are ignored now */
	assert_int_equal(fg_signal(&c->g, &ch), HV_STATUS_SUCCESS);
	assert_int_equal(c->e1.calls, 1);

	/* relid 2: write_index beyond the ring; then len8 larger than written, offset8 > len8 */
	struct fg_chan ch2;
	assert_int_equal(fg_open(&c->g, &ch2, 2, 200, 20, 2, 2), 0);
	ch2.send.hdr->write_index = 8192;
	fg_signal(&c->g, &ch2);
	assert_int_equal(c->e2.closes, 1);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_RESCIND_CHANNELOFFER);
	rr.child_relid = 2;
	FG_POST(&c->g, rr);

	/* after a reset (reboot) both are offered again and the remaining cases run */
	vmbus_server_reset(c->g.srv);
	bring_up(c);
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, 1, "abcdefgh", 8, &sig), 0);
	((struct vmpacket_descriptor *)ch.send.data)->len8 = 50;
	fg_signal(&c->g, &ch);
	assert_int_equal(c->e1.closes, 2);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_RESCIND_CHANNELOFFER);
	assert_int_equal(fg_open(&c->g, &ch2, 2, 200, 20, 2, 2), 0);
	assert_int_equal(fg_ring_send(&ch2.send, VM_PKT_DATA_INBAND, 0, 1, "abcdefgh", 8, &sig), 0);
	((struct vmpacket_descriptor *)ch2.send.data)->offset8 = 4;
	fg_signal(&c->g, &ch2);
	assert_int_equal(c->e2.closes, 2);
	assert_int_equal(c->e2.packets, 0);

	/* a corrupt read_index in the host->guest ring shuts the channel on the next send */
	vmbus_server_reset(c->g.srv);
	bring_up(c);
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	ch.recv.hdr->read_index = 13;
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, 1, "abcdefgh", 8, &sig), 0);
	fg_signal(&c->g, &ch);
	assert_false(vmbus_chan_is_open(c->c1));
	assert_int_equal(vmbus_chan_send(c->c1, VM_PKT_DATA_INBAND, 0, 0, NULL, 0), VMBUS_CHAN_CLOSED);
}

static void test_gpa_direct(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	/* two ranges: 100 bytes at offset 4000 of pfn 30 (spills into pfn 31), 8 bytes of pfn 40 */
	memset(fg_page(&c->g, 30), 1, 4096);
	memset(fg_page(&c->g, 31), 2, 4096);
	memset(fg_page(&c->g, 40), 3, 4096);
	uint8_t pkt[80] = {0};
	/* body after the 16-byte descriptor fg_ring_send writes: reserved, range_cnt, ranges, payload */
	uint32_t hdr2[2] = {0, 2};
	memcpy(pkt, hdr2, 8);
	uint32_t r1[2] = {100, 4000};
	uint64_t p1[2] = {30, 31};
	uint32_t r2[2] = {8, 0};
	uint64_t p2 = 40;
	memcpy(pkt + 8, r1, 8);
	memcpy(pkt + 16, p1, 16);
	memcpy(pkt + 32, r2, 8);
	memcpy(pkt + 40, &p2, 8);
	memcpy(pkt + 48, "payload!", 8);
	/* fg_ring_send uses offset8 = 2; patch the descriptor to point past the ranges */
	bool sig;
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_USING_GPA_DIRECT, 0, 5, pkt, 56, &sig), 0);
	((struct vmpacket_descriptor *)ch.send.data)->offset8 = (16 + 48) / 8;
	fg_signal(&c->g, &ch);
	assert_int_equal(c->e1.packets, 1);
	assert_int_equal(c->e1.range_copy_rc, 0);
	assert_int_equal(c->e1.range_sum, 96 * 1 + 4 * 2 + 8 * 3);
	uint8_t buf[256];
	assert_int_equal(fg_ring_recv(&ch.recv, buf, sizeof(buf)), 24);
	assert_memory_equal(buf + 16, "payload!", 8);
	/* a range pointing outside guest RAM: the copy fails, nothing else happens */
	p2 = FG_RAM_PAGES + 5;
	memcpy(pkt + 40, &p2, 8);
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_USING_GPA_DIRECT, 0, 6, pkt, 56, &sig), 0);
	((struct vmpacket_descriptor *)(ch.send.data + 80))->offset8 = 8;
	fg_signal(&c->g, &ch);
	assert_int_equal(c->e1.packets, 2);
	assert_int_equal(c->e1.range_copy_rc, -1);
	/* a range count that does not fit before the payload: dropped, channel stays open */
	hdr2[1] = 1000;
	memcpy(pkt, hdr2, 8);
	assert_int_equal(fg_ring_send(&ch.send, VM_PKT_DATA_USING_GPA_DIRECT, 0, 7, pkt, 56, &sig), 0);
	((struct vmpacket_descriptor *)(ch.send.data + 160))->offset8 = 8;
	fg_signal(&c->g, &ch);
	assert_int_equal(c->e1.badpkts, 1);
	assert_int_equal(c->e1.packets, 2);
	assert_true(vmbus_chan_is_open(c->c1));
}

static void test_unload_and_reconnect(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
	FG_POST(&c->g, u);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_UNLOAD_RESPONSE);
	assert_int_equal(c->e1.closes, 1);
	assert_int_equal(vmbus_server_version(c->g.srv), 0);
	/* nothing but INITIATE_CONTACT is heard now */
	unsigned n = c->g.nmsgs;
	struct vmbus_channel_message_header ro = {.msgtype = CHANNELMSG_REQUESTOFFERS};
	FG_POST(&c->g, ro);
	assert_int_equal(c->g.nmsgs, n);
	/* the next kernel connects; GPADL handles from before are free again */
	bring_up(c);
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	/* INITIATE_CONTACT while connected (kexec without unload): everything is dropped */
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5), 1);
	assert_int_equal(c->e1.closes, 2);
	assert_int_equal(fg_request_offers(&c->g), 2);
}

static void test_truncated_messages(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	static const uint32_t sizes[CHANNELMSG_COUNT] = {
		[CHANNELMSG_OPENCHANNEL] = 148, [CHANNELMSG_CLOSECHANNEL] = 12, [CHANNELMSG_GPADL_HEADER] = 20,
		[CHANNELMSG_GPADL_BODY] = 16, [CHANNELMSG_GPADL_TEARDOWN] = 16, [CHANNELMSG_RELID_RELEASED] = 12,
		[CHANNELMSG_INITIATE_CONTACT] = 40, [CHANNELMSG_MODIFYCHANNEL] = 16,
		[CHANNELMSG_TL_CONNECT_REQUEST] = 40};
	uint8_t buf[240];
	unsigned n = c->g.nmsgs;
	for (uint32_t type = 0; type < 40; type++) {
		for (uint32_t len = 0; len < (type < CHANNELMSG_COUNT && sizes[type] ? sizes[type] : 8); len++) {
			memset(buf, 0xff, sizeof(buf));
			memcpy(buf, &type, 4);
			fg_post(&c->g, 1, buf, len);
		}
	}
	assert_int_equal(c->g.nmsgs, n); /* nothing answered, nothing crashed */
	/* host -> guest message types from the guest are ignored */
	struct vmbus_channel_open_result bogus = {.header.msgtype = CHANNELMSG_OPENCHANNEL_RESULT};
	FG_POST(&c->g, bogus);
	assert_int_equal(c->g.nmsgs, n);
	assert_true(c->g.nlogs > 0);
	/* TL_CONNECT_REQUEST is heard but not served */
	struct vmbus_channel_tl_connect_request tl = {.header.msgtype = CHANNELMSG_TL_CONNECT_REQUEST};
	FG_POST(&c->g, tl);
	assert_int_equal(c->g.nmsgs, n);
	/* CLOSECHANNEL / RELID_RELEASED for channels in the wrong state */
	struct vmbus_channel_close_channel cl = {.header.msgtype = CHANNELMSG_CLOSECHANNEL, .child_relid = 1};
	FG_POST(&c->g, cl);
	cl.child_relid = 0xFFFFFFFFu;
	FG_POST(&c->g, cl);
	struct vmbus_channel_relid_released rr = {.header.msgtype = CHANNELMSG_RELID_RELEASED, .child_relid = 1};
	FG_POST(&c->g, rr);
	assert_int_equal(c->g.nmsgs, n);
	assert_int_equal(c->e1.closes, 0);
}

static void test_modify_channel(void **state)
{
	struct ctx *c = *state;
	bring_up(c); /* 5.3: answered */
	struct fg_chan ch;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	struct vmbus_channel_modifychannel mc = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL, .child_relid = 1,
						 .target_vp = 3};
	FG_POST(&c->g, mc);
	const struct vmbus_channel_modifychannel_response *r = (const void *)fg_last(&c->g)->data;
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_MODIFYCHANNEL_RESPONSE);
	assert_int_equal(r->status, 0);
	bool sig;
	fg_ring_send(&ch.send, VM_PKT_DATA_INBAND, 0, 1, "x", 1, &sig);
	fg_signal(&c->g, &ch);
	assert_int_equal(c->g.events[c->g.nevents - 1].vp, 3);
	mc.child_relid = 2; /* not open */
	FG_POST(&c->g, mc);
	r = (const void *)fg_last(&c->g)->data;
	assert_int_equal(r->status, VMBUS_STATUS_UNSUCCESSFUL);
	/* 4.1: no response */
	fg_connect(&c->g, VERSION_WIN10_V4_1);
	fg_request_offers(&c->g);
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	unsigned n = c->g.nmsgs;
	mc.child_relid = 1;
	FG_POST(&c->g, mc);
	assert_int_equal(c->g.nmsgs, n);
}

static void test_message_queue_full(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	c->g.refuse_posts = 1000; /* the SynIC queue is full */
	struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
	unsigned n = c->g.nmsgs;
	FG_POST(&c->g, h);
	assert_int_equal(c->g.nmsgs, n); /* all three wait, in order */
	c->g.refuse_posts = 0;
	vmbus_server_flush(c->g.srv);
	assert_int_equal(c->g.nmsgs, n + 3);
	assert_int_equal(fg_msgtype(&c->g.msgs[n]), CHANNELMSG_OFFERCHANNEL);
	assert_int_equal(((const struct vmbus_channel_offer_channel *)c->g.msgs[n].data)->child_relid, 1);
	assert_int_equal(fg_msgtype(&c->g.msgs[n + 2]), CHANNELMSG_ALLOFFERS_DELIVERED);
}

static void test_late_device(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct echo e3 = {0};
	struct vmbus_chan *c3 = vmbus_server_add_device(c->g.srv, &echo_ops, &e3);
	assert_non_null(c3);
	assert_int_equal(vmbus_chan_relid(c3), 3);
	assert_int_equal(fg_msgtype(fg_last(&c->g)), CHANNELMSG_OFFERCHANNEL);
}

/* ---- sub-channels ---- */

static const struct vmbus_channel_offer_channel *offer_msg(const struct fake_guest *g, unsigned i)
{
	return (const void *)g->msgs[i].data;
}

/* Send one request on c and check its echo comes back on the same channel. */
static void echo_on(struct ctx *c, struct fg_chan *ch, uint64_t tid)
{
	uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8}, buf[256];
	bool sig;
	unsigned ev = fg_events_for(&c->g, ch->relid);
	assert_int_equal(fg_ring_send(&ch->send, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid,
				      data, sizeof(data), &sig), 0);
	assert_int_equal(fg_signal(&c->g, ch), HV_STATUS_SUCCESS);
	assert_int_equal(fg_events_for(&c->g, ch->relid), ev + 1);
	assert_int_equal(fg_ring_recv(&ch->recv, buf, sizeof(buf)), 24);
	assert_int_equal(((const struct vmpacket_descriptor *)buf)->trans_id, tid);
}

static void release(struct ctx *c, uint32_t relid)
{
	struct vmbus_channel_relid_released r = {.header.msgtype = CHANNELMSG_RELID_RELEASED, .child_relid = relid};
	FG_POST(&c->g, r);
}

static void test_subchannels(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	/* only an open primary can have sub-channels */
	assert_int_equal(vmbus_chan_offer_subchannels(c->c1, 2), -1);
	struct fg_chan ch, s1, s2;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	fg_clear(&c->g);
	assert_int_equal(vmbus_chan_offer_subchannels(c->c1, 2), 2);
	assert_int_equal(c->g.nmsgs, 2);
	for (unsigned i = 0; i < 2; i++) {
		const struct vmbus_channel_offer_channel *o = offer_msg(&c->g, i);
		assert_int_equal(o->header.msgtype, CHANNELMSG_OFFERCHANNEL);
		assert_memory_equal(&o->offer.if_type, &echo_ops.class_id, 16);
		assert_memory_equal(&o->offer.if_instance, &echo_ops.instance_id, 16);
		assert_int_equal(o->offer.sub_channel_index, i + 1);
		assert_int_equal(o->child_relid, VMBUS_MAX_DEVICES + 1 + i);
		assert_int_equal(o->connection_id, VMBUS_CHANNEL_CONNECTION_ID_BASE + VMBUS_MAX_DEVICES + 1 + i);
	}
	/* asking again for as many (or fewer) offers nothing new */
	assert_int_equal(vmbus_chan_offer_subchannels(c->c1, 2), 2);
	assert_int_equal(vmbus_chan_offer_subchannels(c->c1, 1), 2);
	assert_int_equal(c->g.nmsgs, 2);
	assert_int_equal(vmbus_chan_subchannel_count(c->c1), 2);
	assert_int_equal(vmbus_chan_subchannel_count(c->c2), 0);
	struct vmbus_chan *sc1 = vmbus_server_channel(c->g.srv, 129), *sc2 = vmbus_server_channel(c->g.srv, 130);
	assert_non_null(sc1);
	assert_non_null(sc2);
	assert_int_equal(vmbus_chan_subchannel_index(sc1), 1);
	assert_int_equal(vmbus_chan_subchannel_index(sc2), 2);
	assert_ptr_equal(vmbus_chan_device_ctx(sc2), &c->e1);
	/* a sub-channel cannot have sub-channels */
	assert_int_equal(vmbus_chan_offer_subchannels(sc1, 1), -1);
	/* each opens on its own rings and target VP */
	assert_int_equal(fg_open(&c->g, &s1, 129, 101, 20, 2, 2), 0);
	assert_int_equal(fg_open(&c->g, &s2, 130, 102, 30, 2, 2), 0);
	assert_int_equal(c->e1.opens, 3);
	assert_true(vmbus_chan_is_open(sc1) && vmbus_chan_is_open(sc2));
	echo_on(c, &s1, 1);
	echo_on(c, &s2, 2);
	echo_on(c, &s2, 3);
	echo_on(c, &ch, 4);
	assert_int_equal(c->e1.by_index[0], 1);
	assert_int_equal(c->e1.by_index[1], 1);
	assert_int_equal(c->e1.by_index[2], 2);
	/* a sub-channel's GPADL belongs to it */
	const uint64_t *pfns;
	uint32_t n;
	assert_int_equal(vmbus_chan_gpadl_map(sc1, 101, &pfns, &n), 0);
	assert_int_equal(vmbus_chan_gpadl_map(c->c1, 101, &pfns, &n), -1);
	/* Linux closes sub-channels first, then the primary: the host then rescinds them */
	assert_true(fg_close(&c->g, &s1));
	assert_int_equal(c->e1.closes, 1);
	fg_clear(&c->g);
	/* the guest closes the primary with sub-channel 2 still open: it is closed too */
	struct vmbus_channel_close_channel cl = {.header.msgtype = CHANNELMSG_CLOSECHANNEL, .child_relid = 1};
	FG_POST(&c->g, cl);
	assert_int_equal(c->e1.closes, 3);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_RESCIND_CHANNELOFFER), 2);
	assert_int_equal(vmbus_chan_subchannel_count(c->c1), 2); /* until released */
	/* a late signal on a rescinded sub-channel is harmless */
	assert_int_equal(fg_signal(&c->g, &s2), HV_STATUS_SUCCESS);
	release(c, 129);
	release(c, 130);
	assert_null(vmbus_server_channel(c->g.srv, 129));
	assert_null(vmbus_server_channel(c->g.srv, 130));
	assert_int_equal(vmbus_chan_subchannel_count(c->c1), 0);
	/* releasing again, or an unknown relid: ignored */
	release(c, 130);
	release(c, 2000);
	/* the primary reopens and asks again: relids are reused */
	assert_int_equal(fg_open(&c->g, &ch, 1, 103, 40, 2, 2), 0);
	assert_int_equal(vmbus_chan_offer_subchannels(c->c1, 1), 1);
	assert_int_equal(offer_msg(&c->g, c->g.nmsgs - 1)->child_relid, 129);
	assert_int_equal(fg_open(&c->g, &s1, 129, 104, 50, 2, 2), 0);
	echo_on(c, &s1, 5);
	/* reset drops sub-channels (closed for the device) and keeps devices */
	unsigned closes = c->e1.closes;
	vmbus_server_reset(c->g.srv);
	assert_int_equal(c->e1.closes, closes + 2);
	assert_null(vmbus_server_channel(c->g.srv, 129));
	assert_non_null(vmbus_server_channel(c->g.srv, 1));
	bring_up(c);
}

static void test_subchannel_limits(void **state)
{
	struct ctx *c = *state;
	bring_up(c);
	struct fg_chan ch, ch2, s;
	assert_int_equal(fg_open(&c->g, &ch, 1, 100, 10, 2, 2), 0);
	assert_int_equal(fg_open(&c->g, &ch2, 2, 101, 14, 2, 2), 0);
	/* a guest asking for thousands gets VMBUS_MAX_SUBCHANNELS */
	fg_clear(&c->g);
	assert_int_equal(vmbus_chan_offer_subchannels(c->c1, 65535), VMBUS_MAX_SUBCHANNELS);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_OFFERCHANNEL), VMBUS_MAX_SUBCHANNELS);
	assert_int_equal(vmbus_chan_offer_subchannels(c->c2, 3), 3);
	assert_int_equal(vmbus_chan_subchannel_index(vmbus_server_channel(c->g.srv, 129 + VMBUS_MAX_SUBCHANNELS)), 1);
	/* a corrupt sub-channel ring rescinds that sub-channel only */
	assert_int_equal(fg_open(&c->g, &s, 130, 102, 20, 2, 2), 0);
	s.send.hdr->write_index = 3; /* not 8-byte aligned */
	fg_clear(&c->g);
	assert_int_equal(fg_signal(&c->g, &s), HV_STATUS_SUCCESS);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_RESCIND_CHANNELOFFER), 1);
	assert_true(vmbus_chan_is_open(c->c1));
	/* a corrupt primary ring rescinds the device and all its sub-channels */
	ch.send.hdr->write_index = 5;
	fg_clear(&c->g);
	assert_int_equal(fg_signal(&c->g, &ch), HV_STATUS_SUCCESS);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_RESCIND_CHANNELOFFER), VMBUS_MAX_SUBCHANNELS);
	assert_true(vmbus_chan_is_open(c->c2));
	assert_int_equal(vmbus_chan_subchannel_count(c->c2), 3);
	/* UNLOAD frees them all */
	struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
	FG_POST(&c->g, u);
	assert_int_equal(vmbus_chan_subchannel_count(c->c1), 0);
	assert_int_equal(vmbus_chan_subchannel_count(c->c2), 0);
	assert_null(vmbus_server_channel(c->g.srv, 129));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_vcpu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hypercall_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_multi_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_multi_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_gpadl_teardown_while_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packet_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_mask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_ring_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_ring_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpa_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unload_and_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modify_channel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_queue_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subchannels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subchannel_limits, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
