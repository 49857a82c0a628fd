/* Saved state of the VMBus server: a guest with open channels (sub-channels among them), an
 * incomplete GPADL and messages it has not taken is saved into a state file with its RAM and
 * restored into a second server and fake guest; the guest goes on as if nothing happened. Then
 * hostile saved states: each fails with a message and leaves the server reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake_guest.h"
#include "state/savedstate.h"
#include "vmbus/channel.h"

static const uint8_t digest[STATE_DIGEST_SIZE];

/* ---- a device that counts packets per channel and saves the counts ---- */
struct dev {
	unsigned opens, closes, restores, packets;
	uint32_t count[3];        /* packets per sub-channel index */
	uint16_t version_seen;
	int fail_restore;
};

static int dev_open(struct vmbus_chan *chan, void *ctx)
{
	(void)chan;
	((struct dev *)ctx)->opens++;
	return 0;
}

static void dev_close(struct vmbus_chan *chan, void *ctx)
{
	(void)chan;
	((struct dev *)ctx)->closes++;
}

static void dev_on_packets(struct vmbus_chan *chan, void *ctx)
{
	struct dev *d = ctx;
	struct vmbus_packet pkt;
	while (vmbus_chan_recv(chan, &pkt) == 1) {
		d->packets++;
		d->count[vmbus_chan_subchannel_index(chan)]++;
		vmbus_chan_complete(chan, pkt.trans_id, pkt.data, pkt.data_len);
	}
}

static int dev_save(struct vmbus_chan *chan, void *ctx, struct state_writer *w)
{
	struct dev *d = ctx;
	state_put_u16(w, vmbus_chan_subchannel_index(chan));
	state_put_u32(w, d->count[vmbus_chan_subchannel_index(chan)]);
	return 0;
}

static int dev_restore(struct vmbus_chan *chan, void *ctx, uint16_t version, struct state_cursor *c)
{
	struct dev *d = ctx;
	uint16_t index = state_get_u16(c);
	uint32_t count = state_get_u32(c);
	if (!state_cursor_ok(c) || index != vmbus_chan_subchannel_index(chan))
		return state_fail(-EBADMSG, "test device: bad section");
	if (d->fail_restore)
		return state_fail(-EIO, "test device refused");
	d->count[index] = count;
	d->version_seen = version;
	d->restores++;
	return 0;
}

#define DEV_OPS(guid_a)                                                                          \
	.class_id = VMBUS_GUID_INIT(0x11110000 + (guid_a), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),           \
	.instance_id = VMBUS_GUID_INIT(0x22220000 + (guid_a), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),        \
	.open = dev_open, .close = dev_close, .on_packets = dev_on_packets

/* a: has state, offers sub-channels; b: no state; c: only offered */
static const struct vmbus_device_ops ops_a = {.name = "a", DEV_OPS(1), .state_section = STATE_SECTION_STORVSP,
					      .state_version = 3, .save = dev_save, .restore = dev_restore};
static const struct vmbus_device_ops ops_b = {.name = "b", DEV_OPS(2)};
static const struct vmbus_device_ops ops_c = {.name = "c", DEV_OPS(3)};
static const struct vmbus_device_ops ops_nosave = {.name = "nosave", DEV_OPS(1),
						   .state_section = STATE_SECTION_STORVSP};

struct world {
	struct fake_guest g;
	struct dev a, b, c;
	struct vmbus_chan *ca, *cb, *cc;
	struct fg_chan ch[4]; /* as rings[] */
};

/* The open channels' rings in guest RAM. */
static const struct {
	uint32_t relid, gpadl, pfn, send, recv;
} rings[4] = {{1, 100, 10, 2, 2}, {129, 101, 20, 2, 2}, {130, 102, 30, 3, 2}, {2, 103, 40, 2, 3}};
enum { RA, RS1, RS2, RB };

static struct world *world_new(const struct vmbus_device_ops *a, const struct vmbus_device_ops *b,
			       const struct vmbus_device_ops *c)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	fg_init(&w->g);
	w->ca = vmbus_server_add_device(w->g.srv, a, &w->a);
	w->cb = b ? vmbus_server_add_device(w->g.srv, b, &w->b) : NULL;
	w->cc = c ? vmbus_server_add_device(w->g.srv, c, &w->c) : NULL;
	return w;
}

static struct world *world_std(void)
{
	return world_new(&ops_a, &ops_b, &ops_c);
}

static void world_free(struct world *w)
{
	fg_free(&w->g);
	free(w);
}

static void echo_on(struct world *w, struct fg_chan *ch, uint64_t tid)
{
	uint8_t buf[256];
	bool sig;
	assert_int_equal(fg_ring_send(&ch->send, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid,
				      "12345678", 8, &sig), 0);
	assert_int_equal(fg_signal(&w->g, ch), HV_STATUS_SUCCESS);
	assert_int_equal(fg_ring_recv(&ch->recv, buf, sizeof(buf)), 24);
	assert_int_equal(((const struct vmpacket_descriptor *)buf)->trans_id, tid);
}

static void gpadl_header(struct world *w, uint32_t relid, uint32_t id, uint32_t npages, const uint64_t *pfns,
			 uint32_t nsent)
{
	uint8_t buf[240] = {0};
	struct vmbus_channel_gpadl_header *h = (void *)buf;
	h->header.msgtype = CHANNELMSG_GPADL_HEADER;
	h->child_relid = relid;
	h->gpadl = id;
	h->rangecount = 1;
	h->range_buflen = (uint16_t)(8 + npages * 8);
	uint32_t range[2] = {npages * VMBUS_PAGE_SIZE, 0};
	memcpy(buf + 20, range, 8);
	memcpy(buf + 28, pfns, nsent * 8);
	fg_post(&w->g, VMBUS_MESSAGE_CONNECTION_ID, buf, 28 + nsent * 8);
}

/* The guest of the round trip, mid-flight. */
static void build(struct world *w)
{
	assert_int_equal(fg_connect(&w->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&w->g), 3);
	assert_int_equal(fg_open(&w->g, &w->ch[RA], 1, 100, 10, 2, 2), 0);
	assert_int_equal(vmbus_chan_offer_subchannels(w->ca, 2), 2);
	for (int i = RS1; i <= RB; i++)
		assert_int_equal(fg_open(&w->g, &w->ch[i], rings[i].relid, rings[i].gpadl, rings[i].pfn, rings[i].send,
					 rings[i].recv), 0);
	for (int i = 0; i < 4; i++)
		echo_on(w, &w->ch[i], 10 + (uint64_t)i);
	/* a buffer GPADL the VSP writes into */
	uint32_t buf_pfns[4] = {50, 51, 52, 53};
	assert_int_equal(fg_gpadl(&w->g, 2, 104, buf_pfns, 4), 0);
	assert_int_equal(vmbus_chan_gpadl_writable(w->cb, 104, 5000), 0);
	/* half a GPADL: two of four PFNs */
	const uint64_t half[2] = {60, 61};
	gpadl_header(w, 3, 200, 4, half, 2);
	/* a packet whose signal did not make it before the save */
	bool sig;
	assert_int_equal(fg_ring_send(&w->ch[RS1].send, VM_PKT_DATA_INBAND, 0, 99, "inflight", 8, &sig), 0);
	/* the guest stops taking messages: two answers wait in the server */
	w->g.refuse_posts = 1000;
	uint32_t pfns[2] = {70, 71};
	assert_int_equal(fg_gpadl(&w->g, 1, 105, pfns, 2), 0xdead);
	struct vmbus_channel_modifychannel mc = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL, .child_relid = 2,
						 .target_vp = 1};
	FG_POST(&w->g, mc);
	assert_int_equal(w->a.count[0] + w->a.count[1] + w->a.count[2], 3);
}

/* ---- state files ---- */
struct dev_sec {
	uint32_t type, instance;
	uint16_t version;
	uint8_t *data;
	size_t len;
};

struct saved {
	uint8_t *ram;
	uint8_t *vmbus;
	size_t vmbus_len;
	struct dev_sec devs[8];
	unsigned ndevs;
};

static int save_file(struct world *w, int *rc)
{
	int fd = memfd_create("vmbus-state", 0);
	assert_true(fd >= 0);
	struct state_writer *wr;
	assert_int_equal(state_writer_open(&wr, fd, digest), 0);
	assert_int_equal(state_writer_ram(wr, w->g.ram, FG_RAM_BYTES), 0);
	*rc = vmbus_server_save(w->g.srv, wr);
	if (*rc) {
		state_writer_discard(wr);
		close(fd);
		return -1;
	}
	assert_int_equal(state_writer_finish(wr), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static int save_rc(struct world *w)
{
	int rc, fd = save_file(w, &rc);
	if (fd >= 0)
		close(fd);
	return rc;
}

static uint8_t *dup_payload(const struct state_section *sec, size_t *len)
{
	*len = sec->payload.size;
	uint8_t *p = malloc(*len + 1);
	assert_non_null(p);
	memcpy(p, sec->payload.data, *len);
	return p;
}

static void save(struct world *w, struct saved *s)
{
	int rc;
	int fd = save_file(w, &rc);
	assert_int_equal(rc, 0);
	memset(s, 0, sizeof(*s));
	struct state_reader *r;
	struct state_reader_options o = {.expected_digest = digest};
	assert_int_equal(state_reader_open(&r, fd, &o), 0);
	struct state_section sec;
	while ((rc = state_reader_next(r, &sec)) > 0) {
		if (sec.type == STATE_SECTION_RAM) {
			s->ram = malloc(FG_RAM_BYTES);
			assert_int_equal(state_reader_ram(r, s->ram, FG_RAM_BYTES, 0), 0);
		} else if (sec.type == STATE_SECTION_VMBUS) {
			assert_int_equal(sec.instance, 0);
			assert_int_equal(sec.version, 1);
			s->vmbus = dup_payload(&sec, &s->vmbus_len);
		} else {
			assert_true(s->ndevs < 8);
			struct dev_sec *d = &s->devs[s->ndevs++];
			d->type = sec.type;
			d->instance = sec.instance;
			d->version = sec.version;
			d->data = dup_payload(&sec, &d->len);
		}
	}
	assert_int_equal(rc, 0);
	state_reader_close(r);
	close(fd);
}

static void saved_free(struct saved *s)
{
	free(s->ram);
	free(s->vmbus);
	for (unsigned i = 0; i < s->ndevs; i++)
		free(s->devs[i].data);
}

static struct state_section section(uint32_t type, uint32_t instance, uint16_t version, const uint8_t *data,
				    size_t len)
{
	return (struct state_section){
		.type = type, .instance = instance, .version = version, .payload = {.data = data, .size = len}};
}

static int restore_vmbus(struct world *w, const uint8_t *payload, size_t len)
{
	struct state_section sec = section(STATE_SECTION_VMBUS, 0, 1, payload, len);
	return vmbus_server_restore(w->g.srv, &sec);
}

static int restore_dev(struct world *w, const struct dev_sec *d)
{
	struct state_section sec = section(d->type, d->instance, d->version, d->data, d->len);
	return vmbus_server_restore_device(w->g.srv, &sec);
}

/* RAM, the VMBUS section, every device section (not finished). */
static void restore(struct world *w, const struct saved *s)
{
	memcpy(w->g.ram, s->ram, FG_RAM_BYTES);
	assert_int_equal(restore_vmbus(w, s->vmbus, s->vmbus_len), 0);
	for (unsigned i = 0; i < s->ndevs; i++)
		assert_int_equal(restore_dev(w, &s->devs[i]), 0);
}

/* A failed restore: a message, and the server as after a reset. */
static void assert_failed(struct world *w, int rc, int err, const char *msg)
{
	assert_int_equal(rc, err);
	if (!strstr(state_last_error(), msg))
		fail_msg("error \"%s\" does not say \"%s\"", state_last_error(), msg);
	assert_int_equal(strncmp(state_last_error(), "vmbus: ", 7), 0);
	assert_int_equal(vmbus_server_version(w->g.srv), 0);
	for (uint32_t relid = 1; vmbus_server_channel(w->g.srv, relid); relid++)
		assert_false(vmbus_chan_is_open(vmbus_server_channel(w->g.srv, relid)));
	assert_null(vmbus_server_channel(w->g.srv, 129));
	assert_int_equal(w->a.opens + w->b.opens, 0);
}

/* ---- the round trip ---- */

static void test_round_trip(void **state)
{
	(void)state;
	struct world *w1 = world_std();
	build(w1);
	uint32_t count[3];
	memcpy(count, w1->a.count, sizeof(count));
	struct saved s;
	save(w1, &s);
	assert_int_equal(s.ndevs, 3); /* a's three channels; b has no state */
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(s.devs[i].type, STATE_SECTION_STORVSP);
		assert_int_equal(s.devs[i].version, 3);
	}
	assert_int_equal(s.devs[0].instance, 1);
	assert_int_equal(s.devs[1].instance, 129);
	assert_int_equal(s.devs[2].instance, 130);
	world_free(w1);

	struct world *w = world_std();
	for (int i = 0; i < 4; i++)
		fg_chan_init(&w->g, &w->ch[i], rings[i].relid, rings[i].gpadl, rings[i].pfn, rings[i].send,
			     rings[i].recv);
	w->g.refuse_posts = 1000;
	restore(w, &s);
	/* nothing went to the guest, no device was opened */
	assert_int_equal(w->g.refuse_posts, 1000);
	assert_int_equal(w->g.nevents, 0);
	assert_int_equal(w->a.opens + w->b.opens + w->a.packets, 0);
	assert_int_equal(w->a.restores, 3);
	assert_int_equal(w->a.version_seen, 3);
	assert_int_equal(vmbus_server_version(w->g.srv), VERSION_WIN10_V5_3);
	assert_int_equal(vmbus_server_restore_finish(w->g.srv), 0);
	/* every open channel was signalled; the packet in flight reached the device */
	for (int i = 0; i < 4; i++)
		assert_true(fg_events_for(&w->g, rings[i].relid) >= 1);
	assert_int_equal(w->g.events[0].vp, 0);
	assert_int_equal(w->a.count[0], count[0]);
	assert_int_equal(w->a.count[1], count[1] + 1);
	assert_int_equal(w->a.count[2], count[2]);
	uint8_t buf[256];
	assert_int_equal(fg_ring_recv(&w->ch[RS1].recv, buf, sizeof(buf)), 24);
	assert_int_equal(((const struct vmpacket_descriptor *)buf)->trans_id, 99);
	assert_memory_equal(buf + 16, "inflight", 8);
	assert_int_equal(vmbus_chan_target_vp(w->cb), 1); /* MODIFYCHANNEL */
	/* a second save writes the same VMBUS section */
	struct saved s2;
	save(w, &s2);
	assert_int_equal(s2.vmbus_len, s.vmbus_len);
	assert_memory_equal(s2.vmbus, s.vmbus, s.vmbus_len);
	saved_free(&s2);
	/* the guest takes messages again: the two queued answers come, in order */
	w->g.refuse_posts = 0;
	fg_clear(&w->g);
	vmbus_server_flush(w->g.srv);
	assert_int_equal(w->g.nmsgs, 2);
	assert_int_equal(fg_msgtype(&w->g.msgs[0]), CHANNELMSG_GPADL_CREATED);
	assert_int_equal(((const struct vmbus_channel_gpadl_created *)w->g.msgs[0].data)->gpadl, 105);
	assert_int_equal(fg_msgtype(&w->g.msgs[1]), CHANNELMSG_MODIFYCHANNEL_RESPONSE);
	/* packets both ways on every channel */
	for (int i = 0; i < 4; i++)
		echo_on(w, &w->ch[i], 20 + (uint64_t)i);
	assert_int_equal(w->b.count[0], 1); /* b keeps no state */
	assert_int_equal(vmbus_chan_send(w->cb, VM_PKT_DATA_INBAND, 0, 77, "hello", 5), 0);
	assert_int_equal(fg_ring_recv(&w->ch[RB].recv, buf, sizeof(buf)), 24);
	assert_int_equal(((const struct vmpacket_descriptor *)buf)->trans_id, 77);
	/* the buffer GPADL is still there; the half one completes */
	const uint64_t *pfns;
	uint32_t n;
	assert_int_equal(vmbus_chan_gpadl_map(w->cb, 104, &pfns, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(pfns[3], 53);
	assert_int_equal(vmbus_chan_gpadl_copy_to(w->cb, 104, 4000, "x", 1), 0);
	uint8_t body[32] = {0};
	struct vmbus_channel_gpadl_body *b = (void *)body;
	b->header.msgtype = CHANNELMSG_GPADL_BODY;
	b->gpadl = 200;
	uint64_t rest[2] = {62, 63};
	memcpy(body + 16, rest, 16);
	fg_post(&w->g, VMBUS_MESSAGE_CONNECTION_ID, body, 32);
	assert_int_equal(fg_msgtype(fg_last(&w->g)), CHANNELMSG_GPADL_CREATED);
	assert_int_equal(((const struct vmbus_channel_gpadl_created *)fg_last(&w->g)->data)->creation_status, 0);
	assert_int_equal(vmbus_chan_gpadl_map(w->cc, 200, &pfns, &n), 0);
	assert_int_equal(n, 4);
	/* close and teardown: a sub-channel, then the primary (its other sub-channel goes too) */
	assert_true(fg_close(&w->g, &w->ch[RS1]));
	assert_int_equal(w->a.closes, 1);
	assert_true(fg_close(&w->g, &w->ch[RA]));
	assert_int_equal(w->a.closes, 3);
	assert_int_equal(fg_count(&w->g, CHANNELMSG_RESCIND_CHANNELOFFER), 2);
	struct vmbus_channel_relid_released rr = {.header.msgtype = CHANNELMSG_RELID_RELEASED, .child_relid = 129};
	FG_POST(&w->g, rr);
	rr.child_relid = 130;
	FG_POST(&w->g, rr);
	assert_null(vmbus_server_channel(w->g.srv, 130));
	struct vmbus_channel_gpadl_teardown t = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .gpadl = 104};
	FG_POST(&w->g, t);
	assert_int_equal(fg_msgtype(fg_last(&w->g)), CHANNELMSG_GPADL_TORNDOWN);
	/* the primary reopens and gets sub-channels again; then UNLOAD */
	assert_int_equal(fg_open(&w->g, &w->ch[RA], 1, 106, 80, 2, 2), 0);
	assert_int_equal(vmbus_chan_offer_subchannels(w->ca, 1), 1);
	struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
	FG_POST(&w->g, u);
	assert_int_equal(fg_msgtype(fg_last(&w->g)), CHANNELMSG_UNLOAD_RESPONSE);
	assert_int_equal(w->b.closes, 1);
	assert_null(vmbus_server_channel(w->g.srv, 129));
	saved_free(&s);
	world_free(w);
}

/* A server never connected, and one connected without offers: both restore and re-save the same. */
static void test_quiet_states(void **state)
{
	(void)state;
	for (int step = 0; step < 2; step++) {
		struct world *w1 = world_std();
		if (step)
			assert_int_equal(fg_connect(&w1->g, VERSION_WIN10), 1);
		struct saved s, s2;
		save(w1, &s);
		assert_int_equal(s.ndevs, 0);
		world_free(w1);
		struct world *w = world_std();
		restore(w, &s);
		assert_int_equal(vmbus_server_restore_finish(w->g.srv), 0);
		assert_int_equal(w->g.nevents, 0);
		save(w, &s2);
		assert_int_equal(s2.vmbus_len, s.vmbus_len);
		assert_memory_equal(s2.vmbus, s.vmbus, s.vmbus_len);
		assert_int_equal(vmbus_server_version(w->g.srv), step ? VERSION_WIN10 : 0);
		if (step)
			assert_int_equal(fg_request_offers(&w->g), 3);
		saved_free(&s);
		saved_free(&s2);
		world_free(w);
	}
}

/* ---- hostile saved states ---- */

/* Layout offsets (docs/vmbus.md "Saved state"): connection 14 bytes, device count, 3 x 32 GUID
 * bytes, channel count, then 151-byte channel records in relid order 1, 2, 3, 129, 130. */
#define CHANS_AT 118
#define CHAN_REC 151
#define REC_RELID 0
#define REC_RING 19
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

struct hostile {
	struct saved s;
	struct world *w;
};

static int hostile_setup(void **state)
{
	struct hostile *h = calloc(1, sizeof(*h));
	struct world *w1 = world_std();
	build(w1);
	save(w1, &h->s);
	world_free(w1);
	h->w = world_std();
	memcpy(h->w->g.ram, h->s.ram, FG_RAM_BYTES);
	*state = h;
	return 0;
}

static int hostile_teardown(void **state)
{
	struct hostile *h = *state;
	saved_free(&h->s);
	world_free(h->w);
	free(h);
	return 0;
}

/* The VMBUS payload with 4 bytes at off replaced. */
static int restore_patched(struct hostile *h, size_t off, uint32_t v)
{
	uint8_t *p = malloc(h->s.vmbus_len);
	memcpy(p, h->s.vmbus, h->s.vmbus_len);
	put32(p + off, v);
	int rc = restore_vmbus(h->w, p, h->s.vmbus_len);
	free(p);
	return rc;
}

static void test_truncated(void **state)
{
	struct hostile *h = *state;
	for (size_t len = 0; len < h->s.vmbus_len; len++)
		assert_failed(h->w, restore_vmbus(h->w, h->s.vmbus, len), -EBADMSG, "ends inside");
	/* a byte too many */
	h->s.vmbus[h->s.vmbus_len] = 0;
	assert_failed(h->w, restore_vmbus(h->w, h->s.vmbus, h->s.vmbus_len + 1), -EBADMSG, "1 bytes left over");
	/* after all that, the server takes the real one */
	restore(h->w, &h->s);
	assert_int_equal(vmbus_server_restore_finish(h->w->g.srv), 0);
}

static void test_bad_fields(void **state)
{
	struct hostile *h = *state;
	assert_int_equal(restore_patched(h, CHANS_AT + 3 * CHAN_REC + REC_RELID, 129), 0); /* unchanged: fine */
	vmbus_server_reset(h->w->g.srv);
	assert_failed(h->w, restore_patched(h, CHANS_AT + 3 * CHAN_REC + REC_RELID, VMBUS_MAX_RELIDS + 1), -EBADMSG,
		      "channel 641: bad relid");
	assert_failed(h->w, restore_patched(h, CHANS_AT + 4 * CHAN_REC + REC_RELID, 129), -EBADMSG, "bad relid");
	assert_failed(h->w, restore_patched(h, CHANS_AT + 0 * CHAN_REC + REC_RELID, 0), -EBADMSG, "bad relid");
	assert_failed(h->w, restore_patched(h, CHANS_AT + 1 * CHAN_REC + REC_RING, 999), -EBADMSG,
		      "vmbus: channel 2: ring GPADL 999 is not in the saved state");
	assert_failed(h->w, restore_patched(h, CHANS_AT + 1 * CHAN_REC + REC_RING, 100), -EBADMSG,
		      "channel 2: ring GPADL 100 belongs to channel 1");
	assert_failed(h->w, restore_patched(h, CHANS_AT + 1 * CHAN_REC + REC_RING, 104), -EBADMSG,
		      "channel 2: rings of 2 + 3 pages in ring GPADL 104 of 4");
	assert_failed(h->w, restore_patched(h, CHANS_AT + 1 * CHAN_REC + REC_RING, 200), -EBADMSG,
		      "channel 2: ring GPADL 200 belongs to channel 3");
	assert_failed(h->w, restore_patched(h, 2, VERSION_WIN8), -EBADMSG, "version 2.4 is not supported");
	assert_failed(h->w, restore_patched(h, 14, 2), -EBADMSG, "the saved state has 2 devices, this VM 3");
	/* a PFN of buffer GPADL 104 (50, 51, 52, 53) outside guest RAM */
	const uint64_t seq[2] = {51, 52};
	uint8_t *at = memmem(h->s.vmbus, h->s.vmbus_len, seq, sizeof(seq));
	assert_non_null(at);
	assert_failed(h->w, restore_patched(h, (size_t)(at - h->s.vmbus), FG_RAM_PAGES), -EBADMSG,
		      "GPADL 104: PFN 0x80 is outside guest RAM");
	/* another section version */
	struct state_section sec = section(STATE_SECTION_VMBUS, 0, 2, h->s.vmbus, h->s.vmbus_len);
	assert_failed(h->w, vmbus_server_restore(h->w->g.srv, &sec), -EPROTONOSUPPORT, "version 2");
	/* onto a server in use */
	assert_int_equal(fg_connect(&h->w->g, VERSION_WIN10), 1);
	assert_failed(h->w, restore_vmbus(h->w, h->s.vmbus, h->s.vmbus_len), -EBUSY, "in use");
}

static void test_device_mismatch(void **state)
{
	struct hostile *h = *state;
	struct world *w = world_new(&ops_a, &ops_b, NULL);
	memcpy(w->g.ram, h->s.ram, FG_RAM_BYTES);
	assert_failed(w, restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), -EBADMSG, "3 devices, this VM 2");
	world_free(w);
	w = world_new(&ops_a, &ops_c, &ops_b);
	memcpy(w->g.ram, h->s.ram, FG_RAM_BYTES);
	assert_failed(w, restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), -EBADMSG,
		      "channel 2: the saved device is not this VM's c");
	world_free(w);
}

static void test_device_sections(void **state)
{
	struct hostile *h = *state;
	struct world *w = h->w;
	struct dev_sec bad = h->s.devs[0];
	/* a section for a channel that is not open (3: offered; 4: none), after a good one */
	assert_int_equal(restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), 0);
	assert_int_equal(restore_dev(w, &h->s.devs[0]), 0);
	bad.instance = 3;
	assert_failed(w, restore_dev(w, &bad), -EBADMSG, "storvsp section for channel 3, which is not open");
	assert_int_equal(w->a.closes, 1); /* the channel a restored was closed, b never saw one */
	assert_int_equal(w->b.closes, 0);
	bad.instance = 4000;
	assert_failed(w, restore_dev(w, &bad), -EINVAL, "outside a restore");
	assert_int_equal(restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), 0);
	assert_failed(w, restore_dev(w, &bad), -EBADMSG, "channel 4000, which is not open");
	/* a section twice */
	assert_int_equal(restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), 0);
	assert_int_equal(restore_dev(w, &h->s.devs[0]), 0);
	assert_failed(w, restore_dev(w, &h->s.devs[0]), -EBADMSG, "channel 1 (a): its storvsp section appears twice");
	/* another device's section type; a section for the device without state */
	assert_int_equal(restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), 0);
	bad.instance = 1;
	bad.type = STATE_SECTION_NETVSP;
	assert_failed(w, restore_dev(w, &bad), -EBADMSG, "channel 1 (a): a netvsp section is not its device's");
	assert_int_equal(restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), 0);
	bad.instance = 2;
	assert_failed(w, restore_dev(w, &bad), -EBADMSG, "channel 2 (b): a netvsp section is not its device's");
	/* the device refuses its state */
	assert_int_equal(restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), 0);
	w->a.fail_restore = 1;
	assert_failed(w, restore_dev(w, &h->s.devs[0]), -EIO, "channel 1 (a): test device refused");
	w->a.fail_restore = 0;
	/* a missing section: channel 130's */
	unsigned closes = w->a.closes;
	assert_int_equal(restore_vmbus(w, h->s.vmbus, h->s.vmbus_len), 0);
	assert_int_equal(restore_dev(w, &h->s.devs[0]), 0);
	assert_int_equal(restore_dev(w, &h->s.devs[1]), 0);
	assert_failed(w, vmbus_server_restore_finish(w->g.srv), -EBADMSG, "channel 130 (a): its storvsp section is missing");
	assert_int_equal(w->a.closes, closes + 2);
	assert_failed(w, vmbus_server_restore_finish(w->g.srv), -EINVAL, "without a restore");
	assert_int_equal(w->g.nevents, 0);
	/* and the guest can start over on the reset server */
	assert_int_equal(fg_connect(&w->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&w->g), 3);
}

static void test_save_without_save_op(void **state)
{
	(void)state;
	struct world *w = world_new(&ops_nosave, NULL, NULL);
	assert_int_equal(fg_connect(&w->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&w->g), 1);
	assert_int_equal(save_rc(w), 0); /* not open: it has no state yet */
	assert_int_equal(fg_open(&w->g, &w->ch[RA], 1, 100, 10, 2, 2), 0);
	assert_int_equal(save_rc(w), -EBUSY);
	assert_non_null(strstr(state_last_error(), "channel 1 (nosave): the device has state but cannot save it"));
	world_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_quiet_states),
		cmocka_unit_test_setup_teardown(test_truncated, hostile_setup, hostile_teardown),
		cmocka_unit_test_setup_teardown(test_bad_fields, hostile_setup, hostile_teardown),
		cmocka_unit_test_setup_teardown(test_device_mismatch, hostile_setup, hostile_teardown),
		cmocka_unit_test_setup_teardown(test_device_sections, hostile_setup, hostile_teardown),
		cmocka_unit_test(test_save_without_save_op),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
