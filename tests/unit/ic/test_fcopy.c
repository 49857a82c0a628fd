/* Guest Service Interface (file copy IC) against a fake guest that behaves like Linux
 * hv_fcopy.c + hv_fcopy_daemon: negotiates framework 3.0 / fcopy 1.1; START creates the file
 * (refused when it exists without OVERWRITE), WRITE_TO_FILE pwrite()s a fragment, COMPLETE
 * closes, CANCEL closes and unlinks; it reads no new request until the current one is answered. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "vsp/fcopy.h"

struct guest_fc {
	uint8_t file[32768];
	uint64_t file_len;
	bool exists, open;
	unsigned disk_full_at;     /* the WRITE (1-based) that fails with ERROR_DISK_FULL; 0 none */
	bool hold;                 /* the daemon takes its time: hold the next WRITE */
	uint8_t held[8192];
	uint32_t held_len;
	uint64_t held_tid;
	unsigned ops[4], writes;
	uint32_t flags;
	uint64_t size;
	uint16_t name[HV_FCOPY_MAX_PATH], path[HV_FCOPY_MAX_PATH];
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

static uint32_t daemon_op(struct guest_fc *u, const uint8_t *body, uint32_t len)
{
	struct hv_fcopy_hdr h;
	memcpy(&h, body, sizeof(h));
	assert_true(h.operation < 4);
	u->ops[h.operation]++;
	switch (h.operation) {
	case HV_FCOPY_START_FILE_COPY: {
		struct hv_start_fcopy m;
		assert_true(len >= sizeof(m) && len < sizeof(m) + 8); /* packets are padded to 8 bytes */
		memcpy(&m, body, sizeof(m));
		memcpy(u->name, m.file_name, sizeof(u->name));
		memcpy(u->path, m.path_name, sizeof(u->path));
		u->flags = m.copy_flags;
		u->size = m.file_size;
		if (u->exists && !(m.copy_flags & HV_FCOPY_OVERWRITE))
			return IC_HV_ERROR_ALREADY_EXISTS;
		u->exists = u->open = true;
		u->file_len = 0;
		return IC_HV_S_OK;
	}
	case HV_FCOPY_WRITE_TO_FILE: {
		struct hv_do_fcopy m;
		assert_true(len >= sizeof(m) && len < sizeof(m) + 8); /* the whole struct, as Linux passes on */
		memcpy(&m, body, sizeof(m));
		assert_true(u->open);
		assert_true(m.size <= HV_FCOPY_FRAGMENT);
		assert_true(m.offset + m.size <= sizeof(u->file));
		if (++u->writes == u->disk_full_at)
			return IC_HV_ERROR_DISK_FULL;
		memcpy(u->file + m.offset, m.data, m.size);
		if (m.offset + m.size > u->file_len)
			u->file_len = m.offset + m.size;
		return IC_HV_S_OK;
	}
	case HV_FCOPY_COMPLETE:
		u->open = false;
		return IC_HV_S_OK;
	default: /* CANCEL */
		if (u->open)
			u->exists = false; /* unlinked */
		u->open = false;
		return IC_HV_S_OK;
	}
}

static void process(struct fake_guest *g, struct fg_chan *c, struct guest_fc *u, uint8_t *data, uint32_t dlen,
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
			sv |= IC_VERSION(v[n->icframe_vercnt + j].major, v[n->icframe_vercnt + j].minor) == IC_VERSION(1, 1);
		n->icframe_vercnt = n->icmsg_vercnt = fw && sv;
		v[0] = (struct ic_version){3, 0};
		v[1] = (struct ic_version){1, 1};
	} else {
		assert_int_equal(h->icmsgtype, ICMSGTYPE_FCOPY);
		assert_int_equal(IC_VERSION(h->icvermsg.major, h->icvermsg.minor), IC_VERSION(1, 1));
		struct hv_fcopy_hdr fh;
		memcpy(&fh, body, sizeof(fh));
		if (u->hold && fh.operation == HV_FCOPY_WRITE_TO_FILE) {
			u->hold = false;
			memcpy(u->held, data, dlen);
			u->held_len = dlen;
			u->held_tid = tid;
			return;
		}
		h->status = daemon_op(u, body, dlen - (uint32_t)IC_HDR_SIZE);
	}
	answer(g, c, data, dlen, tid);
}

static uint8_t pkt[16384];

static void guest_poll(struct fake_guest *g, struct fg_chan *c, struct guest_fc *u)
{
	uint32_t len;
	while (!u->held_len && (len = fg_ring_recv(&c->recv, pkt, sizeof(pkt))) != 0) {
		const struct vmpacket_descriptor *d = (const void *)pkt;
		process(g, c, u, pkt + d->offset8 * 8, len - d->offset8 * 8u, d->trans_id);
	}
}

/* The daemon finishes the held request (late or not); Linux then reads the next one. */
static void guest_release(struct fake_guest *g, struct fg_chan *c, struct guest_fc *u)
{
	assert_true(u->held_len != 0);
	struct icmsg_hdr *h = (void *)(u->held + sizeof(struct vmbuspipe_hdr));
	h->status = daemon_op(u, u->held + IC_HDR_SIZE, u->held_len - (uint32_t)IC_HDR_SIZE);
	uint32_t len = u->held_len;
	u->held_len = 0;
	answer(g, c, u->held, len, u->held_tid);
}

struct ctx {
	struct fake_guest g;
	struct ic_dev *fc;
	struct fg_chan ch;
	struct guest_fc u;
	uint8_t src[32768];
	uint64_t now;
	int fail_read_at;          /* the read (1-based) that fails with EIO; 0 none */
	int reads;
};

static int read_src(void *vctx, uint64_t offset, void *buf, uint32_t len)
{
	struct ctx *c = vctx;
	if (++c->reads == c->fail_read_at)
		return -EIO;
	assert_true(offset + len <= sizeof(c->src));
	memcpy(buf, c->src + offset, len);
	return (int)len;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	fg_init(&c->g);
	c->fc = ic_fcopy_add(c->g.srv);
	assert_non_null(c->fc);
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&c->g), 1);
	for (size_t i = 0; i < sizeof(c->src); i++)
		c->src[i] = (uint8_t)(i * 7 + (i >> 8));
	c->now = 5000;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	fg_free(&c->g);
	ic_fcopy_free(c->fc);
	free(c);
	return 0;
}

static int start(struct ctx *c, const char *dir, const char *name, uint64_t size, uint32_t flags)
{
	return ic_fcopy_start(c->fc, dir, name, size, flags, read_src, c, c->now);
}

static void open_ready(struct ctx *c)
{
	assert_int_equal(start(c, "/tmp/", "f", 1, 0), -ENOTCONN); /* not open yet */
	/* 3 pages each way: what Linux hv_utils gives its util channels */
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 10, 10, 3, 3), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_state(c->fc), IC_READY);
	assert_int_equal(ic_service_version(c->fc), IC_VERSION(1, 1));
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_IDLE);
}

static void test_offer_class(void **state)
{
	struct ctx *c = *state;
	const struct vmbus_channel_offer_channel *o = NULL;
	for (unsigned i = 0; i < c->g.nmsgs; i++)
		if (fg_msgtype(&c->g.msgs[i]) == CHANNELMSG_OFFERCHANNEL)
			o = (const void *)c->g.msgs[i].data;
	assert_non_null(o);
	/* 34d14be3-dee4-41c8-9ae7-6b174977c192 as Linux HV_FCOPY_GUID bytes */
	const uint8_t want[16] = {0xe3, 0x4b, 0xd1, 0x34, 0xe4, 0xde, 0xc8, 0x41,
				  0x9a, 0xe7, 0x6b, 0x17, 0x49, 0x77, 0xc1, 0x92};
	assert_memory_equal(o->offer.if_type.b, want, 16);
}

static void test_copy(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	assert_int_equal(start(c, "/var/tmp/", "data.bin", 20000, HV_FCOPY_CREATE_PATH), 0);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_STARTING);
	assert_true(ic_fcopy_busy(c->fc));
	assert_int_equal(start(c, "/var/tmp/", "other", 1, 0), -EBUSY);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_OK);
	assert_false(ic_fcopy_busy(c->fc));
	assert_int_equal(c->u.ops[HV_FCOPY_START_FILE_COPY], 1);
	assert_int_equal(c->u.writes, 4); /* 6144 * 3 + 1568 */
	assert_int_equal(c->u.ops[HV_FCOPY_COMPLETE], 1);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 0);
	assert_int_equal(c->u.file_len, 20000);
	assert_memory_equal(c->u.file, c->src, 20000);
	assert_int_equal(c->u.size, 20000);
	assert_int_equal(c->u.flags, HV_FCOPY_CREATE_PATH);
	const uint16_t name[] = {'d', 'a', 't', 'a', '.', 'b', 'i', 'n', 0};
	assert_memory_equal(c->u.name, name, sizeof(name));
	const uint16_t path[] = {'/', 'v', 'a', 'r', '/', 't', 'm', 'p', '/', 0};
	assert_memory_equal(c->u.path, path, sizeof(path));
	for (size_t i = 10; i < HV_FCOPY_MAX_PATH; i++)
		assert_int_equal(c->u.path[i], 0); /* nothing after the NUL */
	assert_int_equal(ic_fcopy_bytes_done(c->fc), 20000);
	assert_int_equal(ic_fcopy_size(c->fc), 20000);
	assert_string_equal(ic_fcopy_state_name(ic_fcopy_state(c->fc)), "done");
	/* again, replacing it */
	assert_int_equal(start(c, "/var/tmp/", "data.bin", 100, HV_FCOPY_OVERWRITE), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
	assert_int_equal(c->u.file_len, 100);
	assert_int_equal(ic_fcopy_bytes_done(c->fc), 100);
}

static void test_empty_file(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	assert_int_equal(start(c, "/", "empty", 0, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
	assert_int_equal(c->u.writes, 0);
	assert_int_equal(c->u.ops[HV_FCOPY_COMPLETE], 1);
	assert_true(c->u.exists);
	assert_int_equal(c->reads, 0);
}

static void test_exists(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.exists = true;
	assert_int_equal(start(c, "/tmp/", "f", 10, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_GUEST);
	assert_int_equal(ic_fcopy_hresult(c->fc), IC_HV_ERROR_ALREADY_EXISTS);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 0); /* nothing was created: nothing to delete */
	assert_true(c->u.exists);
	assert_non_null(strstr(ic_fcopy_hresult_text(ic_fcopy_hresult(c->fc)), "already exists"));
	assert_null(ic_fcopy_hresult_text(0x80071234u));
}

static void test_disk_full(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.disk_full_at = 2;
	assert_int_equal(start(c, "/small/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_GUEST);
	assert_int_equal(ic_fcopy_hresult(c->fc), IC_HV_ERROR_DISK_FULL);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 1);
	assert_false(c->u.exists); /* the partial file was deleted */
	assert_int_equal(ic_fcopy_bytes_done(c->fc), HV_FCOPY_FRAGMENT);
	assert_int_equal(c->u.ops[HV_FCOPY_COMPLETE], 0);
}

static void test_read_error(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->fail_read_at = 2;
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_SOURCE);
	assert_int_equal(ic_fcopy_source_errno(c->fc), EIO);
	assert_int_equal(c->u.writes, 1);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 1);
	assert_false(c->u.exists);
}

static void test_cancel(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	assert_int_equal(ic_fcopy_cancel(c->fc, c->now), -1); /* nothing to cancel */
	c->u.hold = true;
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u); /* START answered, the first WRITE held by the daemon */
	assert_true(c->u.held_len != 0);
	assert_int_equal(ic_fcopy_cancel(c->fc, c->now), 0);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	assert_int_equal(ic_fcopy_cancel(c->fc, c->now), -1);
	guest_release(&c->g, &c->ch, &c->u); /* its late answer is ignored */
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	guest_poll(&c->g, &c->ch, &c->u); /* then the CANCEL */
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_CANCELLED);
	assert_false(c->u.exists);
	assert_int_equal(c->u.writes, 1);
	assert_int_equal(ic_fcopy_bytes_done(c->fc), 0);
}

static void test_timeout(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = true;
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	ic_fcopy_tick(c->fc, c->now + IC_FCOPY_TIMEOUT_MS - 1);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_WRITING);
	ic_fcopy_tick(c->fc, c->now + IC_FCOPY_TIMEOUT_MS);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	guest_release(&c->g, &c->ch, &c->u);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_TIMEOUT);
	assert_false(c->u.exists);
	/* a CANCEL nobody answers times out too */
	c->u.hold = true;
	c->now += 2 * IC_FCOPY_TIMEOUT_MS;
	assert_int_equal(start(c, "/tmp/", "g", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_cancel(c->fc, c->now), 0);
	ic_fcopy_tick(c->fc, c->now + IC_FCOPY_TIMEOUT_MS);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_CANCELLED);
}

static void test_close_mid_copy(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = true;
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_true(fg_close(&c->g, &c->ch));
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_CLOSED);
	assert_int_equal(start(c, "/tmp/", "f", 1, 0), -ENOTCONN);
}

static void test_names(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	assert_int_equal(start(c, "/tmp/", "", 1, 0), -EINVAL);
	assert_int_equal(start(c, "/tmp/", "a/b", 1, 0), -EINVAL);
	assert_int_equal(start(c, "tmp/", "a", 1, 0), -EINVAL);
	assert_int_equal(start(c, "/tmp/", "a", 1, 0x4), -EINVAL);
	assert_int_equal(ic_fcopy_start(c->fc, "/tmp/", "a", 1, 0, NULL, NULL, c->now), -EINVAL);
	char name[300];
	memset(name, 'n', sizeof(name));
	name[HV_FCOPY_MAX_PATH] = 0; /* 260 bytes: more than Linux converts back */
	assert_int_equal(start(c, "/tmp/", name, 1, 0), -EINVAL);
	name[HV_FCOPY_MAX_PATH - 1] = 0; /* 259 */
	assert_int_equal(start(c, "/tmp/", name, 0, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
	assert_int_equal(c->u.name[258], 'n');
	assert_int_equal(c->u.name[259], 0);
	/* UTF-8 to UTF-16: é (2 bytes), € (3), 😀 (4: a surrogate pair) */
	assert_int_equal(start(c, "/tmp/", "d\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 0, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	const uint16_t want[] = {'d', 0x00e9, 0x20ac, 0xd83d, 0xde00, 0};
	assert_memory_equal(c->u.name, want, sizeof(want));
	/* invalid UTF-8: a stray continuation byte, a truncated sequence, an overlong '/', a surrogate */
	const char *bad[] = {"a\x80", "a\xe2\x82", "a\xc0\xaf", "a\xed\xa0\x80", "\xff"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(start(c, "/tmp/", bad[i], 0, 0), -EINVAL);
	assert_int_equal(start(c, "/t\xc3", "a", 0, 0), -EINVAL);
}

static void test_hostile_answers(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = true;
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	/* the WRITE answered with a cut-off body: not what Linux sends */
	answer(&c->g, &c->ch, c->u.held, IC_HDR_SIZE + 8, c->u.held_tid);
	c->u.held_len = 0;
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_PROTOCOL);
	/* garbage and unsolicited answers: ignored */
	uint8_t junk[64];
	memset(junk, 0xa5, sizeof(junk));
	bool sig;
	fg_ring_send(&c->ch.send, VM_PKT_DATA_INBAND, 0, 12345, junk, sizeof(junk), &sig);
	fg_ring_send(&c->ch.send, VM_PKT_DATA_INBAND, 0, 0, junk, 5, &sig);
	fg_signal(&c->g, &c->ch);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_state(c->fc), IC_READY);
	/* and the service works on */
	assert_int_equal(start(c, "/tmp/", "h", 10, HV_FCOPY_OVERWRITE), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offer_class, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_mid_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_answers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
