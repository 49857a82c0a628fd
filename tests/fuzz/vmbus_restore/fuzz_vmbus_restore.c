/* libFuzzer target: arbitrary saved states restored into a fresh VMBus server with three
 * devices (one keeps state per channel). The input is either a raw VMBUS payload or byte flips
 * of a valid one (a guest with open channels, a sub-channel, a half GPADL and a queued message,
 * built once at start), then device sections, then guest actions on the restored server.
 * Oracle: a restore that succeeds re-saves to exactly the payload it was given. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../fuzz_input.h"
#include "state/savedstate.h"
#include "vmbus/server.h"

#define RAM_PAGES 64
#define RAM_BYTES ((size_t)RAM_PAGES * 4096)
#define PAYLOAD_MAX 8192
#define DEV_SECTIONS 4

static uint8_t *ram, *base_ram;
static bool refuse_posts; /* the guest takes no messages: queued ones stay in the server */
static bool live;         /* devices read their rings (not during restore_finish: see the oracle) */
static const uint8_t digest[STATE_DIGEST_SIZE];

static void *gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	(void)opaque;
	return gpa < RAM_BYTES && len <= RAM_BYTES - gpa ? ram + gpa : NULL;
}

static int post_message(void *opaque, uint32_t vp, uint32_t sint, uint32_t type, const void *p, uint32_t len)
{
	(void)opaque, (void)vp, (void)sint, (void)type, (void)p, (void)len;
	return refuse_posts ? -1 : 0;
}

static void signal_event(void *opaque, uint32_t vp, uint32_t sint, uint32_t flag)
{
	(void)opaque, (void)vp, (void)sint, (void)flag;
}

static const struct vmbus_host_ops host_ops = {
	.gpa_to_hva = gpa_to_hva,
	.post_message = post_message,
	.signal_event = signal_event,
};

/* Per-channel state in priv: a leak if the server ever skips a close() it owes. */
static int dev_open(struct vmbus_chan *chan, void *ctx)
{
	(void)ctx;
	vmbus_chan_set_priv(chan, calloc(1, sizeof(uint32_t)));
	return 0;
}

static void dev_close(struct vmbus_chan *chan, void *ctx)
{
	(void)ctx;
	free(vmbus_chan_priv(chan));
	vmbus_chan_set_priv(chan, NULL);
}

static void on_packets(struct vmbus_chan *chan, void *ctx)
{
	(void)ctx;
	struct vmbus_packet pkt;
	int budget = 16;
	while (live && budget-- && vmbus_chan_recv(chan, &pkt) == 1) {
		uint32_t *count = vmbus_chan_priv(chan);
		if (count)
			++*count;
		if (vmbus_chan_complete(chan, pkt.trans_id, pkt.data, pkt.data_len > 64 ? 64 : pkt.data_len) < 0)
			return;
	}
}

static int dev_save(struct vmbus_chan *chan, void *ctx, struct state_writer *w)
{
	(void)ctx;
	const uint32_t *count = vmbus_chan_priv(chan);
	state_put_u32(w, count ? *count : 0);
	return 0;
}

static int dev_restore(struct vmbus_chan *chan, void *ctx, uint16_t version, struct state_cursor *c)
{
	(void)ctx;
	uint32_t v = state_get_u32(c);
	if (version != 1 || !state_cursor_ok(c))
		return state_fail(-EBADMSG, "fuzz device: bad section");
	uint32_t *count = malloc(sizeof(*count));
	if (!count)
		return state_fail(-ENOMEM, "fuzz device: out of memory");
	*count = v;
	vmbus_chan_set_priv(chan, count);
	return 0;
}

#define DEV(n)                                                                              \
	.name = "dev" #n, .class_id = VMBUS_GUID_INIT(0x1000 + n, 0, 0, 0, 0, 0, 0, 0, 0, 0, n),  \
	.instance_id = VMBUS_GUID_INIT(0x2000 + n, 0, 0, 0, 0, 0, 0, 0, 0, 0, n), .open = dev_open, \
	.close = dev_close, .on_packets = on_packets
static const struct vmbus_device_ops devs[3] = {
	{DEV(0), .state_section = STATE_SECTION_STORVSP, .state_version = 1, .save = dev_save, .restore = dev_restore},
	{DEV(1)},
	{DEV(2)},
};

static struct vmbus_server *server_new(void)
{
	struct vmbus_server *srv = vmbus_server_new(&host_ops, NULL);
	vmbus_server_set_vp_count(srv, 4);
	for (int i = 0; i < 3; i++)
		vmbus_server_add_device(srv, &devs[i], NULL);
	return srv;
}

static void post(struct vmbus_server *srv, uint32_t conn, const void *msg, uint32_t len)
{
	struct hv_input_post_message in;
	memset(&in, 0, sizeof(in));
	in.connection_id = conn;
	in.message_type = 1;
	in.payload_size = len;
	memcpy(in.payload, msg, len);
	vmbus_server_post_message(srv, 0, &in);
}

/* GPADL id over npages pages from pfn (only `sent` of them in the header), for relid. */
static void gpadl(struct vmbus_server *srv, uint32_t relid, uint32_t id, uint64_t pfn, uint32_t npages,
		  uint32_t sent)
{
	uint8_t m[240] = {0};
	uint32_t h[5] = {CHANNELMSG_GPADL_HEADER, 0, relid, id, (8 + npages * 8) | 1u << 16};
	memcpy(m, h, sizeof(h));
	uint32_t range[2] = {npages * 4096, 0};
	memcpy(m + 20, range, 8);
	for (uint64_t i = 0; i < sent; i++) {
		uint64_t p = pfn + i;
		memcpy(m + 28 + i * 8, &p, 8);
	}
	post(srv, 1, m, 28 + sent * 8);
}

static void open_chan(struct vmbus_server *srv, uint32_t relid, uint32_t id, uint32_t vp)
{
	uint8_t m[148] = {0};
	uint32_t o[7] = {CHANNELMSG_OPENCHANNEL, 0, relid, relid, id, vp, 2};
	memcpy(m, o, sizeof(o));
	post(srv, 1, m, sizeof(m));
}

/* The valid saved state the flips start from. */
static uint8_t base[PAYLOAD_MAX];
static size_t base_len;
static struct {
	uint32_t type, instance;
	uint16_t version;
	uint8_t data[64];
	size_t len;
} base_dev[DEV_SECTIONS];
static unsigned base_ndev;

static void build_base(void)
{
	struct vmbus_server *srv = server_new();
	uint8_t ic[40] = {0};
	uint32_t w[4] = {CHANNELMSG_INITIATE_CONTACT, 0, VERSION_WIN10_V5_3, 1};
	memcpy(ic, w, sizeof(w));
	ic[16] = VMBUS_MESSAGE_SINT;
	post(srv, 4, ic, sizeof(ic));
	uint32_t ro[2] = {CHANNELMSG_REQUESTOFFERS, 0};
	post(srv, 1, ro, sizeof(ro));
	gpadl(srv, 1, 1, 8, 4, 4);
	open_chan(srv, 1, 1, 0);
	gpadl(srv, 2, 2, 12, 4, 4);
	open_chan(srv, 2, 2, 3);
	vmbus_chan_offer_subchannels(vmbus_server_channel(srv, 1), 2);
	gpadl(srv, VMBUS_MAX_DEVICES + 1, 3, 16, 4, 4);
	open_chan(srv, VMBUS_MAX_DEVICES + 1, 3, 1);
	gpadl(srv, 3, 4, 20, 6, 2);
	refuse_posts = true;
	gpadl(srv, 2, 5, 30, 2, 2);
	refuse_posts = false;

	int fd = memfd_create("base", 0);
	struct state_writer *wr;
	struct state_reader *r;
	struct state_section sec;
	struct state_reader_options o = {.expected_digest = digest};
	if (fd < 0 || state_writer_open(&wr, fd, digest) || vmbus_server_save(srv, wr) || state_writer_finish(wr) ||
	    lseek(fd, 0, SEEK_SET) != 0 || state_reader_open(&r, fd, &o))
		abort();
	while (state_reader_next(r, &sec) > 0) {
		if (sec.type == STATE_SECTION_VMBUS) {
			if (sec.payload.size > sizeof(base))
				abort();
			base_len = sec.payload.size;
			memcpy(base, sec.payload.data, base_len);
		} else if (base_ndev < DEV_SECTIONS && sec.payload.size <= sizeof(base_dev[0].data)) {
			base_dev[base_ndev].type = sec.type;
			base_dev[base_ndev].instance = sec.instance;
			base_dev[base_ndev].version = sec.version;
			base_dev[base_ndev].len = sec.payload.size;
			memcpy(base_dev[base_ndev++].data, sec.payload.data, sec.payload.size);
		}
	}
	state_reader_close(r);
	close(fd);
	memcpy(base_ram, ram, RAM_BYTES);
	vmbus_server_free(srv);
}

/* The VMBUS section a save of srv writes, into out; its length, or 0 if the save failed. */
static size_t resave(struct vmbus_server *srv, int fd, uint8_t *out)
{
	struct state_writer *wr;
	struct state_reader *r;
	struct state_section sec;
	struct state_reader_options o = {.expected_digest = digest};
	size_t len = 0;
	if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) || state_writer_open(&wr, fd, digest))
		abort();
	if (vmbus_server_save(srv, wr)) {
		state_writer_discard(wr);
		return 0;
	}
	if (state_writer_finish(wr) || lseek(fd, 0, SEEK_SET) || state_reader_open(&r, fd, &o) ||
	    state_reader_next(r, &sec) != 1 || sec.type != STATE_SECTION_VMBUS || sec.payload.size > PAYLOAD_MAX)
		abort();
	len = sec.payload.size;
	memcpy(out, sec.payload.data, len);
	state_reader_close(r);
	return len;
}

static int fd_out = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ram) {
		ram = calloc(1, RAM_BYTES);
		base_ram = malloc(RAM_BYTES);
		build_base();
		fd_out = memfd_create("resave", 0);
	}
	struct in in = {data, size};
	memcpy(ram, base_ram, RAM_BYTES);
	static uint8_t payload[PAYLOAD_MAX], again[PAYLOAD_MAX];
	size_t len, again_len;
	uint8_t mode = take(&in);
	if (mode & 1) { /* flips of the valid payload, maybe cut short */
		memcpy(payload, base, base_len);
		len = base_len;
		for (unsigned n = take(&in) % 8; n; n--) {
			uint32_t at = (uint32_t)take(&in) << 8 | take(&in);
			payload[at % base_len] ^= take(&in);
		}
		if (mode & 4)
			len = (((size_t)take(&in) << 8) | take(&in)) % (base_len + 1);
	} else {
		len = (((size_t)take(&in) << 8) | take(&in)) % PAYLOAD_MAX;
		len = take_bytes(&in, payload, len);
	}
	refuse_posts = true;
	live = false;
	struct vmbus_server *srv = server_new();
	struct state_section sec = {
		.type = STATE_SECTION_VMBUS, .version = 1, .payload = {.data = payload, .size = len}};
	int rc = vmbus_server_restore(srv, &sec);
	/* device sections: the valid ones (some flipped) or made up */
	unsigned ndev = mode & 2 ? base_ndev : take(&in) % (DEV_SECTIONS + 1);
	for (unsigned i = 0; i < ndev && rc == 0; i++) {
		uint8_t dev[64];
		if (mode & 2) {
			memcpy(dev, base_dev[i].data, base_dev[i].len);
			sec.type = base_dev[i].type;
			sec.instance = base_dev[i].instance;
			sec.version = base_dev[i].version;
			sec.payload.size = base_dev[i].len;
			if (mode & 8)
				dev[take(&in) % base_dev[i].len] ^= take(&in);
		} else {
			static const uint32_t types[] = {STATE_SECTION_STORVSP, STATE_SECTION_NETVSP, STATE_SECTION_VMBUS};
			sec.type = types[take(&in) % 3];
			sec.instance = ((uint32_t)take(&in) << 8 | take(&in)) % (VMBUS_MAX_RELIDS + 2);
			sec.version = take(&in) % 3;
			sec.payload.size = take_bytes(&in, dev, take(&in) % sizeof(dev));
		}
		sec.payload.data = dev;
		rc = vmbus_server_restore_device(srv, &sec);
	}
	/* accepted means canonical: the same bytes come back */
	if (rc == 0 && vmbus_server_restore_finish(srv) == 0 && (again_len = resave(srv, fd_out, again)) != 0 &&
	    (again_len != len || memcmp(again, payload, len) != 0))
		abort();
	/* the guest goes on: messages, signals, RAM writes */
	live = true;
	refuse_posts = false;
	while (in.n) {
		switch (take(&in) % 4) {
		case 0: {
			uint8_t msg[240] = {0};
			uint32_t mlen = take(&in) % 241u;
			take_bytes(&in, msg, mlen);
			post(srv, 1, msg, mlen);
			break;
		}
		case 1:
			vmbus_server_signal_event(srv, 0, VMBUS_CHANNEL_CONNECTION_ID_BASE + take(&in) % 140, 0);
			break;
		case 2: {
			size_t off = (((size_t)take(&in) << 8) | take(&in)) % (RAM_BYTES / 8) * 8;
			take_bytes(&in, ram + off, 8);
			break;
		}
		case 3:
			resave(srv, fd_out, again);
			break;
		}
	}
	vmbus_server_free(srv);
	return 0;
}
