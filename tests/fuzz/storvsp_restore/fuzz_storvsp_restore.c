/* libFuzzer target: arbitrary bytes as one channel's storvsp section of a saved state. A valid
 * state is built once (a controller initialised with two open sub-channels); each input restores
 * it into a fresh controller with the payload of the primary or a sub-channel replaced, then
 * sends vstor packets on the restored channels.
 *
 * Input: [channel u8 (% 3: primary, sub-channel 1, 2)][mode u8] then, mode bit 0 clear: [len u8]
 * [len payload bytes]; set: [n u8] n × [offset u8][xor u8] applied to the valid payload. Then
 * packets: [channel u8][operation u8][u16 argument][cdb 6 bytes]. Oracle: after a drain, the
 * restored controller saves, and that restores into another. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fuzz_input.h"
#include "fake_guest.h"
#include "state/savedstate.h"
#include "state_rt.h"
#include "vhd/vdisk.h"
#include "vsp/storvsp.h"

static struct vdisk *disk[2];
static int base_fd = -1;
static uint32_t relid[3];
static uint8_t *base[3];
static size_t base_len[3];
static const uint32_t ring_pfn[3] = { 10, 20, 30 };

static void *gpa(void *opaque, uint64_t a, uint64_t len)
{
	struct fake_guest *g = opaque;
	return a < FG_RAM_BYTES && len <= FG_RAM_BYTES - a ? g->host + a : NULL;
}

static struct storvsp *controller(struct fake_guest *g)
{
	fg_init(g);
	struct storvsp_disk disks[2] = { { .disk = disk[0] }, { .disk = disk[1], .read_only = true } };
	struct storvsp_host host = { .gpa_to_hva = gpa, .opaque = g };
	char err[200];
	struct storvsp *s = storvsp_new(g->srv, &host, disks, 2, 0, err, sizeof(err));
	if (!s)
		abort();
	return s;
}

static void drain(struct fg_chan *c)
{
	uint8_t buf[512];
	while (fg_ring_recv(&c->recv, buf, sizeof(buf)))
		;
}

static void control(struct fake_guest *g, struct fg_chan *c, uint32_t op, uint16_t arg, const uint8_t *cdb)
{
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = op;
	p.flags = REQUEST_COMPLETION_FLAG;
	p.version.major_minor = arg; /* sub_channel_count shares it */
	if (op == VSTOR_OPERATION_EXECUTE_SRB) {
		p.vm_srb.length = sizeof(p.vm_srb);
		p.vm_srb.cdb_length = 6;
		p.vm_srb.lun = (uint8_t)(arg & 3);
		memcpy(p.vm_srb.cdb, cdb, 6);
	}
	bool sig;
	fg_ring_send(&c->send, VM_PKT_DATA_INBAND, 1, op, &p, sizeof(p), &sig);
	fg_signal(g, c);
	drain(c);
}

static void build_base(void)
{
	for (int i = 0; i < 2; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/tmp/fuzz_storvsp_restore_%d_%d.raw", (int)getpid(), i);
		struct vdisk_create_params p = { .size = 1 << 20, .block_size = 1 << 20 };
		if (vdisk_create(path, &p) < 0 || vdisk_open(path, VDISK_OPEN_RDWR, &disk[i]) < 0)
			abort();
		unlink(path);
	}
	static struct fake_guest g;
	struct fg_chan c[3];
	struct storvsp *s = controller(&g);
	fg_connect(&g, VERSION_WIN10_V5_3);
	fg_request_offers(&g);
	fg_open(&g, &c[0], 1, 1, ring_pfn[0], 4, 4);
	control(&g, &c[0], VSTOR_OPERATION_BEGIN_INITIALIZATION, 0, NULL);
	control(&g, &c[0], VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, VMSTOR_PROTO_VERSION_WIN10, NULL);
	control(&g, &c[0], VSTOR_OPERATION_QUERY_PROPERTIES, 0, NULL);
	control(&g, &c[0], VSTOR_OPERATION_END_INITIALIZATION, 0, NULL);
	fg_clear(&g);
	control(&g, &c[0], VSTOR_OPERATION_CREATE_SUB_CHANNELS, 2, NULL);
	relid[0] = 1;
	for (unsigned i = 1; i < 3; i++) {
		relid[i] = ((const struct vmbus_channel_offer_channel *)g.msgs[i - 1].data)->child_relid;
		fg_open(&g, &c[i], relid[i], 1 + i, ring_pfn[i], 4, 4);
	}
	int rc;
	base_fd = rt_save(&g, &rc);
	for (unsigned i = 0; i < 3; i++)
		if (!(base[i] = rt_payload(base_fd, STATE_SECTION_STORVSP, relid[i], &base_len[i])))
			abort();
	fg_free(&g);
	storvsp_free(s);
}

static void resave(struct fake_guest *g, struct storvsp *s)
{
	if (storvsp_drain(s, 1000) != 0)
		abort();
	int rc, fd = rt_save(g, &rc);
	if (fd < 0)
		abort();
	static struct fake_guest g2;
	struct storvsp *s2 = controller(&g2);
	if (rt_restore(&g2, fd, NULL) != 0)
		abort();
	fg_free(&g2);
	storvsp_free(s2);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (base_fd < 0)
		build_base();
	struct in in = { data, size };
	unsigned which = take(&in) % 3;
	uint8_t payload[256];
	size_t len;
	if (take(&in) & 1) {
		memcpy(payload, base[which], base_len[which]);
		len = base_len[which];
		for (unsigned n = take(&in); n; n--) {
			size_t off = take(&in) % len;
			payload[off] ^= take(&in);
		}
	} else {
		len = take_bytes(&in, payload, take(&in));
	}
	static struct fake_guest g;
	struct storvsp *s = controller(&g);
	struct rt_patch p = { STATE_SECTION_STORVSP, relid[which], -1, payload, len };
	if (rt_restore(&g, base_fd, &p) == 0) {
		struct fg_chan c[3];
		for (unsigned i = 0; i < 3; i++)
			fg_chan_init(&g, &c[i], relid[i], 1 + i, ring_pfn[i], 4, 4);
		for (int steps = 0; in.n && steps < 32; steps++) {
			unsigned ch = take(&in) % 3;
			uint32_t op = take(&in) % 15;
			uint16_t arg = (uint16_t)(take(&in) << 8 | take(&in));
			uint8_t cdb[6];
			memset(cdb, 0, sizeof(cdb));
			take_bytes(&in, cdb, sizeof(cdb));
			control(&g, &c[ch], op, arg, cdb);
		}
		resave(&g, s);
	}
	fg_free(&g);
	storvsp_free(s);
	return 0;
}
