/* Integration services against a fake guest that answers like Linux hv_utils
 * (vmbus_prep_negotiate_resp + the heartbeat/shutdown/timesync callbacks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "vsp/ic.h"

/* guest side: versions Linux hv_utils knows, preferred first */
static const uint32_t g_fw[] = {IC_VERSION(3, 0), IC_VERSION(1, 0)};
static const uint32_t g_hb[] = {IC_VERSION(3, 0), IC_VERSION(1, 0)};
static const uint32_t g_sd[] = {IC_VERSION(3, 2), IC_VERSION(3, 1), IC_VERSION(3, 0), IC_VERSION(1, 0)};
static const uint32_t g_ts[] = {IC_VERSION(4, 0), IC_VERSION(3, 0), IC_VERSION(1, 0)};

struct guest_util {
	const uint32_t *srv;
	unsigned nsrv;
	uint32_t fw, sv;            /* negotiated */
	unsigned requests;
	uint32_t last_sd_flags;
	uint64_t last_parenttime;
	uint8_t last_ts_flags;
	bool refuse_shutdown;
	bool answer_nothing;        /* negotiation: guest knows none of the host's versions */
};

static bool pick(const struct ic_version *offered, unsigned n, const uint32_t *mine, unsigned nmine, uint32_t *out)
{
	for (unsigned i = 0; i < nmine; i++)
		for (unsigned j = 0; j < n; j++)
			if (IC_VERSION(offered[j].major, offered[j].minor) == mine[i]) {
				*out = mine[i];
				return true;
			}
	return false;
}

/* Read and answer everything the host sent on this channel. */
static void guest_poll(struct fake_guest *g, struct fg_chan *c, struct guest_util *u)
{
	uint8_t buf[4096];
	uint32_t len;
	while ((len = fg_ring_recv(&c->recv, buf, sizeof(buf))) != 0) {
		const struct vmpacket_descriptor *d = (const void *)buf;
		uint8_t *data = buf + d->offset8 * 8;
		uint32_t dlen = len - d->offset8 * 8u;
		assert_true(dlen >= IC_HDR_SIZE);
		struct icmsg_hdr *h = (void *)(data + sizeof(struct vmbuspipe_hdr));
		assert_true(h->icflags & ICMSGHDRFLAG_REQUEST);
		uint8_t *body = data + IC_HDR_SIZE;
		u->requests++;
		if (h->icmsgtype == ICMSGTYPE_NEGOTIATE) {
			struct icmsg_negotiate *n = (void *)body;
			struct ic_version *v = (void *)(body + sizeof(*n));
			uint32_t fw = 0, sv = 0;
			bool ok = !u->answer_nothing && pick(v, n->icframe_vercnt, g_fw, 2, &fw) &&
				  pick(v + n->icframe_vercnt, n->icmsg_vercnt, u->srv, u->nsrv, &sv);
			n->icframe_vercnt = ok;
			n->icmsg_vercnt = ok;
			v[0] = (struct ic_version){(uint16_t)(fw >> 16), (uint16_t)fw};
			v[1] = (struct ic_version){(uint16_t)(sv >> 16), (uint16_t)sv};
			h->icmsgsize = 0x10;
			u->fw = fw;
			u->sv = sv;
		} else if (h->icmsgtype == ICMSGTYPE_HEARTBEAT) {
			assert_true(dlen >= IC_HDR_SIZE + sizeof(struct heartbeat_msg_data));
			((struct heartbeat_msg_data *)body)->seq_num += 1;
		} else if (h->icmsgtype == ICMSGTYPE_SHUTDOWN) {
			assert_true(dlen >= IC_HDR_SIZE + sizeof(struct shutdown_msg_data));
			u->last_sd_flags = ((struct shutdown_msg_data *)body)->flags;
			h->status = u->refuse_shutdown ? IC_HV_E_FAIL : IC_HV_S_OK;
		} else if (h->icmsgtype == ICMSGTYPE_TIMESYNC) {
			if (u->sv >= IC_VERSION(4, 0)) {
				assert_true(dlen >= IC_HDR_SIZE + sizeof(struct ictimesync_ref_data));
				u->last_parenttime = ((struct ictimesync_ref_data *)body)->parenttime;
				u->last_ts_flags = ((struct ictimesync_ref_data *)body)->flags;
			} else {
				assert_true(dlen >= IC_HDR_SIZE + sizeof(struct ictimesync_data));
				u->last_parenttime = ((struct ictimesync_data *)body)->parenttime;
				u->last_ts_flags = ((struct ictimesync_data *)body)->flags;
			}
		} else {
			h->status = IC_HV_E_FAIL;
		}
		h->icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE;
		bool sig;
		assert_int_equal(fg_ring_send(&c->send, VM_PKT_DATA_INBAND, 0, d->trans_id, data, dlen, &sig), 0);
		if (sig)
			fg_signal(g, c);
	}
}

struct ctx {
	struct fake_guest g;
	struct ic_dev *hb, *sd, *ts;
	struct fg_chan chb, csd, cts;
	struct guest_util uhb, usd, uts;
	uint64_t clock;
};

static uint64_t test_clock(void *ctx)
{
	return ((struct ctx *)ctx)->clock;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	fg_init(&c->g);
	c->clock = IC_WLTIMEDELTA + 1234567;
	c->hb = ic_heartbeat_add(c->g.srv);
	c->sd = ic_shutdown_add(c->g.srv);
	c->ts = ic_timesync_add(c->g.srv, test_clock, NULL, c);
	assert_non_null(c->hb);
	c->uhb = (struct guest_util){.srv = g_hb, .nsrv = 2};
	c->usd = (struct guest_util){.srv = g_sd, .nsrv = 4};
	c->uts = (struct guest_util){.srv = g_ts, .nsrv = 3};
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&c->g), 3);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	fg_free(&c->g);
	ic_free(c->hb);
	ic_free(c->sd);
	ic_free(c->ts);
	free(c);
	return 0;
}

static void test_offers_carry_ic_classes(void **state)
{
	struct ctx *c = *state;
	struct vmbus_guid hb = IC_HEARTBEAT_CLASS;
	const struct vmbus_channel_offer_channel *o = NULL;
	for (unsigned i = 0; i < c->g.nmsgs; i++)
		if (fg_msgtype(&c->g.msgs[i]) == CHANNELMSG_OFFERCHANNEL) {
			o = (const void *)c->g.msgs[i].data;
			break;
		}
	assert_non_null(o);
	assert_memory_equal(&o->offer.if_type, &hb, 16);
	/* 57164f39-9115-4e78-ab55-382f3bd5422d as Linux's HV_HEART_BEAT_GUID bytes */
	const uint8_t want[16] = {0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e,
				  0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d};
	assert_memory_equal(o->offer.if_type.b, want, 16);
}

static void test_heartbeat(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(ic_state(c->hb), IC_CLOSED);
	assert_int_equal(ic_heartbeat_tick(c->hb), -1);
	assert_int_equal(fg_open(&c->g, &c->chb, 1, 10, 10, 4, 4), 0);
	assert_int_equal(ic_state(c->hb), IC_NEGOTIATING);
	guest_poll(&c->g, &c->chb, &c->uhb);
	assert_int_equal(ic_state(c->hb), IC_READY);
	assert_int_equal(ic_framework_version(c->hb), IC_VERSION(3, 0));
	assert_int_equal(ic_service_version(c->hb), IC_VERSION(3, 0));
	for (int i = 0; i < 5; i++) {
		assert_int_equal(ic_heartbeat_tick(c->hb), 0);
		guest_poll(&c->g, &c->chb, &c->uhb);
	}
	assert_int_equal(ic_heartbeat_answers(c->hb), 5);
	/* guest closes: back to closed; reopen renegotiates */
	assert_true(fg_close(&c->g, &c->chb));
	assert_int_equal(ic_state(c->hb), IC_CLOSED);
	assert_int_equal(fg_open(&c->g, &c->chb, 1, 11, 10, 4, 4), 0);
	guest_poll(&c->g, &c->chb, &c->uhb);
	assert_int_equal(ic_state(c->hb), IC_READY);
}

static void test_heartbeat_old_guest(void **state)
{
	struct ctx *c = *state;
	static const uint32_t only_v1[] = {IC_VERSION(1, 0)};
	c->uhb.srv = only_v1;
	c->uhb.nsrv = 1;
	assert_int_equal(fg_open(&c->g, &c->chb, 1, 10, 10, 4, 4), 0);
	guest_poll(&c->g, &c->chb, &c->uhb);
	assert_int_equal(ic_state(c->hb), IC_READY);
	assert_int_equal(ic_service_version(c->hb), IC_VERSION(1, 0));
}

static void test_negotiation_fails(void **state)
{
	struct ctx *c = *state;
	c->uhb.answer_nothing = true;
	assert_int_equal(fg_open(&c->g, &c->chb, 1, 10, 10, 4, 4), 0);
	guest_poll(&c->g, &c->chb, &c->uhb);
	assert_int_equal(ic_state(c->hb), IC_FAILED);
	assert_int_equal(ic_heartbeat_tick(c->hb), -1);
}

static void test_shutdown(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(fg_open(&c->g, &c->csd, 2, 20, 20, 4, 4), 0);
	guest_poll(&c->g, &c->csd, &c->usd);
	assert_int_equal(ic_state(c->sd), IC_READY);
	assert_int_equal(ic_service_version(c->sd), IC_VERSION(3, 2));
	assert_int_equal(ic_shutdown_request(c->sd, false, false, "Viridian: Stop-VM"), 0);
	assert_int_equal(ic_shutdown_request(c->sd, false, false, NULL), -1); /* one at a time */
	guest_poll(&c->g, &c->csd, &c->usd);
	assert_int_equal(ic_shutdown_result(c->sd), 1);
	assert_int_equal(c->usd.last_sd_flags, 0);
	c->usd.refuse_shutdown = true;
	assert_int_equal(ic_shutdown_request(c->sd, true, true, NULL), 0);
	guest_poll(&c->g, &c->csd, &c->usd);
	assert_int_equal(ic_shutdown_result(c->sd), -1);
	assert_int_equal(c->usd.last_sd_flags, IC_SHUTDOWN_FLAG_REBOOT | IC_SHUTDOWN_FLAG_FORCE);
}

static void test_timesync(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(fg_open(&c->g, &c->cts, 3, 30, 30, 4, 4), 0);
	guest_poll(&c->g, &c->cts, &c->uts); /* negotiate -> ready -> SYNC sample sent at once */
	assert_int_equal(ic_state(c->ts), IC_READY);
	assert_int_equal(ic_service_version(c->ts), IC_VERSION(4, 0));
	guest_poll(&c->g, &c->cts, &c->uts);
	assert_int_equal(c->uts.last_ts_flags, ICTIMESYNCFLAG_SYNC);
	assert_int_equal(c->uts.last_parenttime, IC_WLTIMEDELTA + 1234567);
	assert_int_equal(ic_timesync_answers(c->ts), 1);
	c->clock += 10000000;
	assert_int_equal(ic_timesync_send(c->ts, ICTIMESYNCFLAG_SAMPLE), 0);
	guest_poll(&c->g, &c->cts, &c->uts);
	assert_int_equal(c->uts.last_ts_flags, ICTIMESYNCFLAG_SAMPLE);
	assert_int_equal(c->uts.last_parenttime, IC_WLTIMEDELTA + 11234567);
	assert_int_equal(ic_timesync_answers(c->ts), 2);
}

static void test_timesync_v3(void **state)
{
	struct ctx *c = *state;
	static const uint32_t v3[] = {IC_VERSION(3, 0)};
	c->uts.srv = v3;
	c->uts.nsrv = 1;
	assert_int_equal(fg_open(&c->g, &c->cts, 3, 30, 30, 4, 4), 0);
	guest_poll(&c->g, &c->cts, &c->uts);
	guest_poll(&c->g, &c->cts, &c->uts);
	assert_int_equal(ic_service_version(c->ts), IC_VERSION(3, 0));
	assert_int_equal(c->uts.last_parenttime, IC_WLTIMEDELTA + 1234567);
}

/* Responses that answer nothing we asked, or come malformed, are ignored. */
static void test_hostile_responses(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(fg_open(&c->g, &c->chb, 1, 10, 10, 4, 4), 0);
	uint8_t junk[64] = {0};
	bool sig;
	fg_ring_send(&c->chb.send, VM_PKT_DATA_INBAND, 0, 999, junk, 10, &sig);     /* too short */
	struct icmsg_hdr *h = (void *)(junk + 8);
	h->icflags = ICMSGHDRFLAG_RESPONSE;
	h->icmsgtype = ICMSGTYPE_NEGOTIATE;
	fg_ring_send(&c->chb.send, VM_PKT_DATA_INBAND, 0, 999, junk, sizeof(junk), &sig); /* wrong trans id */
	fg_ring_send(&c->chb.send, VM_PKT_COMP, 0, 1, junk, sizeof(junk), &sig);
	fg_signal(&c->g, &c->chb);
	assert_int_equal(ic_state(c->hb), IC_NEGOTIATING);
	/* answer with the right id but a truncated negotiate body */
	fg_ring_send(&c->chb.send, VM_PKT_DATA_INBAND, 0, 1, junk, IC_HDR_SIZE + 4, &sig);
	fg_signal(&c->g, &c->chb);
	assert_int_equal(ic_state(c->hb), IC_FAILED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offers_carry_ic_classes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_old_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiation_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timesync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timesync_v3, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_responses, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
