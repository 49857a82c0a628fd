/* Guest Service Interface (file copy IC) against a fake guest that behaves like Linux
 * hv_fcopy.c + hv_fcopy_daemon: negotiates framework 3.0 / fcopy 1.1; START creates the file
 * (refused when it exists without OVERWRITE), WRITE_TO_FILE pwrite()s a fragment, COMPLETE
 * closes, CANCEL closes and unlinks; it reads no new request until the current one is answered. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "state/savedstate.h"
#include "vsp/fcopy.h"

struct guest_fc {
	uint8_t file[32768];
	uint64_t file_len;
	bool exists, open;
	unsigned disk_full_at;     /* the WRITE (1-based) that fails with ERROR_DISK_FULL; 0 none */
	uint32_t complete_status;  /* COMPLETE's answer (HV_E_FAIL: the kernel gave up on the daemon) */
	unsigned hold;             /* the daemon takes its time: HOLD(op) holds the next op request */
	uint8_t held[8192];
	uint32_t held_len;
	uint64_t held_tid;
	unsigned ops[4], writes;
	uint32_t flags;
	uint64_t size;
	uint16_t name[HV_FCOPY_MAX_PATH], path[HV_FCOPY_MAX_PATH];
	uint64_t frag_off[8];      /* offset and size of each WRITE */
	uint32_t frag_size[8];
};
#define HOLD(op) ((op) + 1u)

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
		if (u->writes < 8) {
			u->frag_off[u->writes] = m.offset;
			u->frag_size[u->writes] = m.size;
		}
		if (++u->writes == u->disk_full_at)
			return IC_HV_ERROR_DISK_FULL;
		memcpy(u->file + m.offset, m.data, m.size);
		if (m.offset + m.size > u->file_len)
			u->file_len = m.offset + m.size;
		return IC_HV_S_OK;
	}
	case HV_FCOPY_COMPLETE:
		if (u->complete_status)
			return u->complete_status; /* the kernel's answer: the daemon never saw it */
		u->open = false;
		return IC_HV_S_OK;
	default: /* CANCEL */
		if (u->open)
			u->exists = false; /* unlinked */
		u->open = false;
		return IC_HV_S_OK;
	}
}

static unsigned nops(const struct guest_fc *u)
{
	return u->ops[0] + u->ops[1] + u->ops[2] + u->ops[3];
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
		if (u->hold == HOLD(fh.operation)) {
			u->hold = 0;
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
	int fail_read_at;          /* the read (1-based) that returns fail_read_rc (0: -EIO); 0 none */
	int fail_read_rc;
	int reads;
};

static int read_src(void *vctx, uint64_t offset, void *buf, uint32_t len)
{
	struct ctx *c = vctx;
	if (++c->reads == c->fail_read_at)
		return c->fail_read_rc ? c->fail_read_rc : -EIO;
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
	assert_int_equal(ic_framework_version(c->fc), IC_VERSION(3, 0));
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
	assert_int_equal(c->u.writes, 4); /* 6144 * 3 + 1568, in order */
	const uint64_t offs[] = {0, 6144, 12288, 18432};
	const uint32_t sizes[] = {6144, 6144, 6144, 1568};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(c->u.frag_off[i], offs[i]);
		assert_int_equal(c->u.frag_size[i], sizes[i]);
	}
	assert_int_equal(c->reads, 4);
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
	assert_int_equal(c->u.flags, HV_FCOPY_OVERWRITE);
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
	c->u.hold = HOLD(HV_FCOPY_WRITE_TO_FILE);
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
	c->u.hold = HOLD(HV_FCOPY_WRITE_TO_FILE);
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	ic_fcopy_tick(c->fc, c->now + IC_FCOPY_TIMEOUT_MS - 1);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_WRITING);
	ic_fcopy_tick(c->fc, c->now + IC_FCOPY_TIMEOUT_MS);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	guest_release(&c->g, &c->ch, &c->u); /* the WRITE's late answer: a stale id, ignored */
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	assert_int_equal(ic_fcopy_bytes_done(c->fc), 0);
	assert_int_equal(c->reads, 1); /* and no next fragment */
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_TIMEOUT);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 1);
	assert_int_equal(c->u.writes, 1);
	assert_false(c->u.exists);
	/* a CANCEL nobody answers times out too */
	c->u.hold = HOLD(HV_FCOPY_WRITE_TO_FILE);
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
	c->u.hold = HOLD(HV_FCOPY_WRITE_TO_FILE);
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
	assert_int_equal(start(c, "/tmp/", ".", 0, 0), -EINVAL);
	assert_int_equal(start(c, "/tmp/", "..", 0, 0), -EINVAL);
	/* the directory has the same limit */
	char dir[300];
	memset(dir, 'd', sizeof(dir));
	dir[0] = '/';
	dir[HV_FCOPY_MAX_PATH] = 0;
	assert_int_equal(start(c, dir, "a", 0, 0), -EINVAL);
	dir[HV_FCOPY_MAX_PATH - 1] = 0;
	assert_int_equal(start(c, dir, "a", 0, HV_FCOPY_OVERWRITE), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
	assert_int_equal(c->u.path[258], 'd');
	assert_int_equal(c->u.path[259], 0);
}

static void test_hostile_answers(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = HOLD(HV_FCOPY_WRITE_TO_FILE);
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	/* the WRITE answered with a cut-off body: not what Linux sends */
	answer(&c->g, &c->ch, c->u.held, IC_HDR_SIZE + 8, c->u.held_tid);
	c->u.held_len = 0;
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_PROTOCOL);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(nops(&c->u), 1); /* the START: nothing more was sent */
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
	/* a START answered with its body cut short: E_PROTOCOL too, and no CANCEL */
	c->u.hold = HOLD(HV_FCOPY_START_FILE_COPY);
	assert_int_equal(start(c, "/tmp/", "i", 10, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	answer(&c->g, &c->ch, c->u.held, IC_HDR_SIZE + sizeof(struct hv_start_fcopy) - 8, c->u.held_tid);
	c->u.held_len = 0;
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_PROTOCOL);
	unsigned n = nops(&c->u);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(nops(&c->u), n);
	/* an answer with the right id but another message type: dropped by the framework, which the
	 * copy sees on its next tick */
	assert_int_equal(start(c, "/tmp/", "j", 10, HV_FCOPY_OVERWRITE), 0);
	c->u.hold = HOLD(HV_FCOPY_START_FILE_COPY);
	guest_poll(&c->g, &c->ch, &c->u);
	struct icmsg_hdr *h = (void *)(c->u.held + sizeof(struct vmbuspipe_hdr));
	h->icmsgtype = ICMSGTYPE_HEARTBEAT;
	answer(&c->g, &c->ch, c->u.held, c->u.held_len, c->u.held_tid);
	c->u.held_len = 0;
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_STARTING);
	ic_fcopy_tick(c->fc, c->now);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_PROTOCOL);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(nops(&c->u), n);
}

static void test_negotiating(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 10, 10, 3, 3), 0);
	assert_int_equal(ic_state(c->fc), IC_NEGOTIATING);
	assert_int_equal(start(c, "/tmp/", "f", 1, 0), -ENOTCONN);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_IDLE);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(start(c, "/tmp/", "f", 1, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
}

static void test_short_read(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->fail_read_at = 3;
	c->fail_read_rc = 100; /* the source shrank */
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_SOURCE);
	assert_int_equal(ic_fcopy_source_errno(c->fc), EIO);
	assert_int_equal(ic_fcopy_bytes_done(c->fc), 2 * HV_FCOPY_FRAGMENT);
	assert_int_equal(c->u.writes, 2);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 1);
	assert_false(c->u.exists);
	/* a return that is no errno */
	c->reads = 0;
	c->fail_read_at = 1;
	c->fail_read_rc = INT_MIN;
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_SOURCE);
	assert_int_equal(ic_fcopy_source_errno(c->fc), EIO);
	/* an errno is kept */
	c->reads = 0;
	c->fail_read_rc = -ENOENT;
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_source_errno(c->fc), ENOENT);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 3);
}

static void test_complete_fails(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.complete_status = IC_HV_E_FAIL;
	assert_int_equal(start(c, "/tmp/", "f", 7000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_GUEST);
	assert_int_equal(ic_fcopy_hresult(c->fc), IC_HV_E_FAIL);
	assert_int_equal(ic_fcopy_bytes_done(c->fc), 7000);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 1);
	assert_false(c->u.exists);
	assert_non_null(ic_fcopy_hresult_text(IC_HV_E_FAIL));
}

/* Cancelled while the daemon creates the file: the CANCEL behind the START deletes it. */
static void test_cancel_starting(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = HOLD(HV_FCOPY_START_FILE_COPY);
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_cancel(c->fc, c->now), 0);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	guest_release(&c->g, &c->ch, &c->u); /* START succeeds, late */
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	assert_true(c->u.exists);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_CANCELLED);
	assert_false(c->u.exists);
	assert_int_equal(c->reads, 0);
	assert_int_equal(c->u.writes, 0);
}

/* Once COMPLETE is out there is nothing left to cancel: the daemon is closing the whole file. */
static void test_cancel_completing(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = HOLD(HV_FCOPY_COMPLETE);
	assert_int_equal(start(c, "/tmp/", "f", 100, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_COMPLETING);
	assert_true(ic_fcopy_busy(c->fc));
	assert_int_equal(ic_fcopy_cancel(c->fc, c->now), -1);
	guest_release(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 0);
	assert_true(c->u.exists);
}

/* START unanswered: a CANCEL follows it, for the file the daemon may still create. */
static void test_timeout_start(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = HOLD(HV_FCOPY_START_FILE_COPY);
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	ic_fcopy_tick(c->fc, c->now + IC_FCOPY_TIMEOUT_MS);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	guest_release(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_CANCELLING);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_FAILED);
	assert_int_equal(ic_fcopy_error(c->fc), IC_FCOPY_E_TIMEOUT);
	assert_int_equal(c->u.ops[HV_FCOPY_CANCEL], 1);
	assert_false(c->u.exists);
	assert_int_equal(c->reads, 0);
}

/* vmbus_server_save(), then a new host with a fresh device restores it over the same guest RAM
 * (the framework's part comes back, the copy's state starts IDLE). */
static void save_restore(struct ctx *c)
{
	static const uint8_t digest[STATE_DIGEST_SIZE];
	int fd = memfd_create("fcopy-state", 0);
	assert_true(fd >= 0);
	struct state_writer *w;
	assert_int_equal(state_writer_open(&w, fd, digest), 0);
	assert_int_equal(vmbus_server_save(c->g.srv, w), 0);
	assert_int_equal(state_writer_finish(w), 0);
	uint8_t *ram = malloc(FG_RAM_BYTES);
	assert_non_null(ram);
	memcpy(ram, c->g.ram, FG_RAM_BYTES);
	fg_free(&c->g);
	ic_fcopy_free(c->fc);
	fg_init(&c->g);
	c->fc = ic_fcopy_add(c->g.srv);
	assert_non_null(c->fc);
	memcpy(c->g.ram, ram, FG_RAM_BYTES);
	free(ram);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	struct state_reader *r;
	struct state_reader_options o = {0};
	assert_int_equal(state_reader_open(&r, fd, &o), 0);
	struct state_section sec;
	int rc;
	while ((rc = state_reader_next(r, &sec)) > 0) {
		rc = sec.type == STATE_SECTION_VMBUS ? vmbus_server_restore(c->g.srv, &sec)
						     : vmbus_server_restore_device(c->g.srv, &sec);
		if (rc)
			break;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(vmbus_server_restore_finish(c->g.srv), 0);
	state_reader_close(r);
	close(fd);
	fg_chan_init(&c->g, &c->ch, 1, 10, 10, 3, 3);
}

/* The worker does not save during a copy, but a state file saved mid-copy (by hand, by another
 * build) must still leave a usable device: the WRITE in flight is no copy's any more. */
static void test_restored(void **state)
{
	struct ctx *c = *state;
	open_ready(c);
	c->u.hold = HOLD(HV_FCOPY_WRITE_TO_FILE);
	assert_int_equal(start(c, "/tmp/", "f", 20000, 0), 0);
	guest_poll(&c->g, &c->ch, &c->u);
	save_restore(c);
	assert_int_equal(ic_state(c->fc), IC_READY);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_IDLE);
	assert_false(ic_fcopy_busy(c->fc));
	assert_int_equal(ic_fcopy_cancel(c->fc, c->now), -1);
	ic_fcopy_tick(c->fc, c->now + 2 * IC_FCOPY_TIMEOUT_MS);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_IDLE);
	/* a new copy before the old WRITE's answer, which then comes and is ignored */
	c->now += 2 * IC_FCOPY_TIMEOUT_MS;
	assert_int_equal(start(c, "/tmp/", "f", 100, HV_FCOPY_OVERWRITE), 0);
	guest_release(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_STARTING);
	guest_poll(&c->g, &c->ch, &c->u);
	assert_int_equal(ic_fcopy_state(c->fc), IC_FCOPY_DONE);
	assert_int_equal(ic_fcopy_bytes_done(c->fc), 100);
	assert_int_equal(c->u.file_len, 100);
	assert_memory_equal(c->u.file, c->src, 100);
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
		cmocka_unit_test_setup_teardown(test_negotiating, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_complete_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_starting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_completing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restored, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
