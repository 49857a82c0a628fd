/* VSS IC against a fake guest that behaves like Linux hv_snapshot.c + hv_vss_daemon: negotiates
 * framework 3.0 / VSS 5.0 with or without the daemon; FREEZE, THAW and HOT_BACKUP go to the daemon
 * (HV_E_FAIL at once without one); it reads no new request until the current one is answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "vsp/vss.h"

struct guest_vss {
	bool daemon;
	bool fail_freeze;          /* FIFREEZE fails (the daemon thaws what it froze) */
	bool stall;                /* the daemon takes its time: hold the request */
	bool frozen;               /* file systems frozen */
	uint32_t fw, sv;
	unsigned ops[HV_VSS_OP_COUNT];
	uint8_t held[512];
	uint32_t held_len;
	uint64_t held_tid;
};

static void answer(struct fake_guest *g, struct fg_chan *c, uint8_t *data, uint32_t dlen, uint64_t tid)
{
	struct icmsg_hdr *h = (void *)(data + sizeof(struct vmbuspipe_hdr));
	h->icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE;
	bool sig;
	assert_int_equal(fg_ring_send(&c->send, VM_PKT_DATA_INBAND, 0, tid, data, dlen, &sig), 0);
	if (sig)
		fg_signal(g, c);
}

static uint32_t daemon_op(struct guest_vss *u, uint8_t *body)
{
	uint8_t op = body[0];
	if (op < HV_VSS_OP_COUNT)
		u->ops[op]++;
	switch (op) {
	case HV_VSS_OP_FREEZE:
	case HV_VSS_OP_THAW:
	case HV_VSS_OP_HOT_BACKUP:
		if (!u->daemon)
			return IC_HV_E_FAIL;
		if (op == HV_VSS_OP_HOT_BACKUP) {
			uint32_t f = HV_VSS_HBU_NO_AUTO_RECOVERY;
			memcpy(body + 8, &f, 4);
			return IC_HV_S_OK;
		}
		if (op == HV_VSS_OP_FREEZE && u->fail_freeze)
			return IC_HV_E_FAIL;
		u->frozen = op == HV_VSS_OP_FREEZE;
		return IC_HV_S_OK;
	default:
		return IC_HV_S_OK;
	}
}

static void process(struct fake_guest *g, struct fg_chan *c, struct guest_vss *u, uint8_t *data, uint32_t dlen,
		    uint64_t tid)
{
	struct icmsg_hdr *h = (void *)(data + sizeof(struct vmbuspipe_hdr));
	uint8_t *body = data + IC_HDR_SIZE;
	if (h->icmsgtype == ICMSGTYPE_NEGOTIATE) {
		struct icmsg_negotiate *n = (void *)body;
		struct ic_version *v = (void *)(body + sizeof(*n));
		bool fw = false, sv = false;
		for (unsigned j = 0; j < n->icframe_vercnt; j++)
			fw |= IC_VERSION(v[j].major, v[j].minor) == IC_VERSION(3, 0);
		for (unsigned j = 0; j < n->icmsg_vercnt; j++)
			sv |= IC_VERSION(v[n->icframe_vercnt + j].major, v[n->icframe_vercnt + j].minor) == IC_VERSION(5, 0);
		n->icframe_vercnt = n->icmsg_vercnt = fw && sv;
		v[0] = (struct ic_version){3, 0};
		v[1] = (struct ic_version){5, 0};
		u->fw = IC_VERSION(3, 0);
		u->sv = IC_VERSION(5, 0);
	} else {
		assert_int_equal(h->icmsgtype, ICMSGTYPE_VSS);
		assert_true(dlen >= IC_HDR_SIZE + sizeof(struct hv_vss_msg)); /* Linux drops shorter ones */
		assert_int_equal(IC_VERSION(h->icvermsg.major, h->icvermsg.minor), IC_VERSION(5, 0));
		if (u->stall && u->daemon && (body[0] == HV_VSS_OP_FREEZE || body[0] == HV_VSS_OP_THAW)) {
			memcpy(u->held, data, dlen);
			u->held_len = dlen;
			u->held_tid = tid;
			return;
		}
		h->status = daemon_op(u, body);
	}
	answer(g, c, data, dlen, tid);
}

static void guest_poll(struct fake_guest *g, struct fg_chan *c, struct guest_vss *u)
{
	uint8_t buf[512];
	uint32_t len;
	while (!u->held_len && (len = fg_ring_recv(&c->recv, buf, sizeof(buf))) != 0) {
		const struct vmpacket_descriptor *d = (const void *)buf;
		process(g, c, u, buf + d->offset8 * 8, len - d->offset8 * 8u, d->trans_id);
	}
}

/* The daemon finishes the held request (late or not); Linux then reads the next one. */
static void guest_release(struct fake_guest *g, struct fg_chan *c, struct guest_vss *u)
{
	assert_true(u->held_len != 0);
	struct icmsg_hdr *h = (void *)(u->held + sizeof(struct vmbuspipe_hdr));
	h->status = daemon_op(u, u->held + IC_HDR_SIZE);
	uint32_t len = u->held_len;
	u->held_len = 0;
	answer(g, c, u->held, len, u->held_tid);
}

struct ctx {
	struct fake_guest g;
	struct ic_dev *vss;
	struct fg_chan ch;
	struct guest_vss u;
	enum ic_vss_state states[16];
	enum ic_vss_error errs[16];
	unsigned n;
	uint64_t now;
};

static void on_done(void *vctx, struct ic_dev *dev, enum ic_vss_state st, enum ic_vss_error err)
{
	struct ctx *c = vctx;
	assert_ptr_equal(dev, c->vss);
	assert_true(c->n < 16);
	c->states[c->n] = st;
	c->errs[c->n++] = err;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	fg_init(&c->g);
	c->vss = ic_vss_add(c->g.srv, on_done, c);
	assert_non_null(c->vss);
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&c->g), 1);
	c->u.daemon = true;
	c->now = 5000;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	fg_free(&c->g);
	ic_vss_free(c->vss);
	free(c);
	return 0;
}

static void open_ready(struct ctx *c)
{
	assert_int_equal(ic_vss_freeze(c->vss, c->now), -1); /* not open yet */
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 10, 10, 4, 4), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_state(c->vss), IC_READY);
	assert_int_equal(ic_framework_version(c->vss), IC_VERSION(3, 0));
	assert_int_equal(ic_service_version(c->vss), IC_VERSION(5, 0));
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_IDLE);
}

static void test_offer_class(void **state)
{
	struct ctx *c = *state;
	const struct vmbus_channel_offer_channel *o = NULL;
	for (unsigned i = 0; i < c->g.nmsgs; i++)
		if (fg_msgtype(&c->g.msgs[i]) == CHANNELMSG_OFFERCHANNEL)
			o = (const void *)c->g.msgs[i].data;
	assert_non_null(o);
	/* 35fa2e29-ea23-4236-96ae-3a6ebacba440 as Linux HV_VSS_GUID bytes */
	const uint8_t want[16] = {0x29, 0x2e, 0xfa, 0x35, 0x23, 0xea, 0x36, 0x42,
				  0x96, 0xae, 0x3a, 0x6e, 0xba, 0xcb, 0xa4, 0x40};
	assert_memory_equal(o->offer.if_type.b, want, 16);
}

static void test_freeze_thaw(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	assert_int_equal(ic_vss_thaw(c->vss, c->now), -1); /* nothing frozen */
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FREEZING);
	assert_int_equal(ic_vss_freeze(c->vss, c->now), -1); /* one at a time */
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(c->u.ops[HV_VSS_OP_HOT_BACKUP], 1);
	assert_int_equal(c->u.ops[HV_VSS_OP_FREEZE], 1);
	assert_true(c->u.frozen);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FROZEN);
	assert_int_equal(ic_vss_backup_flags(c->vss), HV_VSS_HBU_NO_AUTO_RECOVERY);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->states[0], IC_VSS_FROZEN);
	assert_int_equal(ic_vss_thaw(c->vss, c->now), 0);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_THAWING);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_false(c->u.frozen);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_IDLE);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_OK);
	assert_int_equal(c->n, 2);
	assert_int_equal(c->states[1], IC_VSS_IDLE);
	/* again */
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FROZEN);
}

static void test_no_daemon(void **state)
{
	struct ctx *c = *state;
	c->u.daemon = false;
	open_ready(c); /* hv_utils negotiates without the daemon */
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_E_GUEST);
	assert_int_equal(ic_vss_hresult(c->vss), IC_HV_E_FAIL);
	assert_int_equal(c->u.ops[HV_VSS_OP_FREEZE], 0); /* stopped at the check */
	assert_string_equal(ic_vss_state_name(ic_vss_state(c->vss)), "failed");
	assert_string_equal(ic_vss_error_name(ic_vss_error(c->vss)), "guest refused");
	/* the daemon starts later: a retry from FAILED works */
	c->u.daemon = true;
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FROZEN);
	assert_int_equal(ic_vss_hresult(c->vss), 0);
}

static void test_freeze_refused(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.fail_freeze = true;
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_E_GUEST);
	assert_false(c->u.frozen);
	/* thaw from FAILED is allowed (making sure) */
	assert_int_equal(ic_vss_thaw(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_IDLE);
}

static void test_freeze_timeout_thaws(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	ic_vss_set_timeouts(c->vss, 10000, 3000);
	c->u.stall = true;
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u); /* HOT_BACKUP answered, FREEZE held by the daemon */
	assert_int_equal(c->u.held_len != 0, 1);
	ic_vss_tick(c->vss, c->now + 9999);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FREEZING);
	ic_vss_tick(c->vss, c->now + 10000);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_THAWING); /* THAW queued behind the FREEZE */
	assert_int_equal(c->n, 0);
	/* the daemon finally freezes; its late answer is ignored; then Linux reads the THAW */
	c->u.stall = false;
	guest_release(&c->g, &c->ch, &c->u);
	assert_true(c->u.frozen);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_THAWING);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_false(c->u.frozen);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_E_TIMEOUT);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->errs[0], IC_VSS_E_TIMEOUT);
}

static void test_thaw_timeout(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	ic_vss_set_timeouts(c->vss, 10000, 3000);
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	c->u.stall = true;
	c->now += 100000;
	assert_int_equal(ic_vss_thaw(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	ic_vss_tick(c->vss, c->now + 2999);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_THAWING);
	ic_vss_tick(c->vss, c->now + 3000);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_E_TIMEOUT);
	/* retry the thaw; Linux answers the old one first (ignored), then the new one */
	c->u.stall = false;
	assert_int_equal(ic_vss_thaw(c->vss, c->now + 3000), 0);
	guest_release(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_THAWING);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_IDLE);
}

static void test_close_while_frozen(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FROZEN);
	assert_true(fg_close(&c->g, &c->ch));
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_E_CLOSED);
	assert_int_equal(ic_vss_thaw(c->vss, c->now), -1); /* no channel */
	ic_vss_tick(c->vss, c->now + 1000000);
	assert_int_equal(c->n, 2);
	/* reopen: a new backup works */
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 11, 10, 4, 4), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FROZEN);
}

static void test_hostile_answers(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.stall = true;
	/* a short answer to FREEZE */
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	struct icmsg_hdr *h = (void *)(c->u.held + sizeof(struct vmbuspipe_hdr));
	h->status = IC_HV_S_OK;
	answer(&c->g, &c->ch, c->u.held, IC_HDR_SIZE + 3, c->u.held_tid);
	c->u.held_len = 0;
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_E_PROTOCOL);
	/* wrong message type with our transaction id: detected at the next tick */
	assert_int_equal(ic_vss_freeze(c->vss, c->now), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	h->icmsgtype = ICMSGTYPE_SHUTDOWN;
	answer(&c->g, &c->ch, c->u.held, c->u.held_len, c->u.held_tid);
	c->u.held_len = 0;
	ic_vss_tick(c->vss, c->now);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(c->vss), IC_VSS_E_PROTOCOL);
	/* random garbage and unsolicited answers: ignored */
	uint8_t junk[64];
	memset(junk, 0xa5, sizeof(junk));
	bool sig;
	fg_ring_send(&c->ch.send, VM_PKT_DATA_INBAND, 0, 12345, junk, sizeof(junk), &sig);
	fg_ring_send(&c->ch.send, VM_PKT_DATA_INBAND, 0, 0, junk, 5, &sig);
	fg_signal(&c->g, &c->ch);
	assert_int_equal(ic_vss_state(c->vss), IC_VSS_FAILED);
	assert_int_equal(ic_state(c->vss), IC_READY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offer_class, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freeze_thaw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_daemon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freeze_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freeze_timeout_thaws, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thaw_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_while_frozen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_answers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
