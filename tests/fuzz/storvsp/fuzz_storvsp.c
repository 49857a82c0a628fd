/* libFuzzer target: storvsp packet parsing and the SCSI target's CDB parsing.
 *
 * Input: byte 0 = flags (bit 7: skip the storvsc init sequence), then records
 *   [kind u8][len u8][len bytes]
 * kind bit 0: GPA-direct packet whose body starts with [byte_count u32][byte_offset u16][npfn u8]
 * + npfn pfn bytes (mapped to guest pages 60.., some beyond guest RAM), the rest is the vstor
 * packet; else in-band. kind bit 1: also run the bytes as a CDB straight through scsi_execute
 * (LUN = kind >> 4; LUN 1 is a DVD drive). kind bit 2: the host changes the controller's DVD
 * (LUN 2) and the direct DVD's media (in or out by bit 3). Completions are drained after every
 * packet. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_guest.h"
#include "vhd/vdisk.h"
#include "vsp/scsi.h"
#include "vsp/storvsp.h"

static struct vdisk *disk[2];

static void *gpa(void *opaque, uint64_t a, uint64_t len)
{
	struct fake_guest *g = opaque;
	uint64_t ram = (uint64_t)FG_RAM_PAGES * 4096;
	return a < ram && len <= ram - a ? g->host + a : NULL;
}

static void open_disks(void)
{
	if (disk[0])
		return;
	for (int i = 0; i < 2; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/tmp/fuzz_storvsp_%d_%d.%s", (int)getpid(), i, i ? "vhdx" : "raw");
		struct vdisk_create_params p = { .size = 1 << 20, .block_size = 1 << 20 };
		if (vdisk_create(path, &p) < 0 || vdisk_open(path, VDISK_OPEN_RDWR, &disk[i]) < 0)
			abort();
		unlink(path);
	}
}

static void drain(struct fg_chan *ch)
{
	uint8_t buf[4096];
	while (fg_ring_recv(&ch->recv, buf, sizeof(buf)))
		;
}

static void send(struct fake_guest *g, struct fg_chan *ch, bool direct, const uint8_t *p, uint32_t n)
{
	uint8_t body[512];
	bool sig;
	uint32_t w = ch->send.hdr->write_index;
	if (!direct || n < 7) {
		if (fg_ring_send(&ch->send, VM_PKT_DATA_INBAND, 1, 42, p, n, &sig) < 0)
			return;
	} else {
		uint32_t count, npfn = p[6] % 20;
		uint16_t off;
		memcpy(&count, p, 4);
		memcpy(&off, p + 4, 2);
		p += 7;
		n -= 7;
		if (n < npfn)
			npfn = n;
		uint32_t hdr[4] = { 0, 1, count, off };
		memcpy(body, hdr, 16);
		for (uint32_t i = 0; i < npfn; i++) {
			uint64_t pfn = 60 + p[i];
			memcpy(body + 16 + 8 * i, &pfn, 8);
		}
		p += npfn;
		n -= npfn;
		uint32_t ext = 16 + 8 * npfn;
		memcpy(body + ext, p, n);
		if (fg_ring_send(&ch->send, VM_PKT_DATA_USING_GPA_DIRECT, 1, 43, body, ext + n, &sig) < 0)
			return;
		uint16_t off8 = (uint16_t)((16 + ext) / 8);
		ch->send.data[(w + 2) % ch->send.size] = (uint8_t)off8;
		ch->send.data[(w + 3) % ch->send.size] = (uint8_t)(off8 >> 8);
	}
	fg_signal(g, ch);
	drain(ch);
}

static void control(struct fake_guest *g, struct fg_chan *ch, uint32_t op, uint16_t version)
{
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = op;
	p.version.major_minor = version;
	send(g, ch, false, (const uint8_t *)&p, sizeof(p));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	open_disks();
	static struct fake_guest g;
	fg_init(&g);
	struct storvsp_host host = { .gpa_to_hva = gpa, .opaque = &g };
	struct storvsp_disk disks[3] = { { disk[0], false, false, 0 }, { disk[1], true, false, 0 },
					 { disk[0], true, true, (1 << 20) - 1000 } };
	char err[200];
	struct storvsp *s = storvsp_new(g.srv, &host, disks, 3, 0, err, sizeof(err));
	static struct scsi_mmc mmc;
	mmc = (struct scsi_mmc){ .media = true, .blocks = 100 };
	struct fg_chan ch;
	if (!s || fg_connect(&g, VERSION_WIN10_V5_3) != 1 || fg_request_offers(&g) != 1 ||
	    fg_open(&g, &ch, 1, 10, 10, 4, 4) != 0)
		abort();
	if (!(data[0] & 0x80)) {
		control(&g, &ch, VSTOR_OPERATION_BEGIN_INITIALIZATION, 0);
		control(&g, &ch, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, VMSTOR_PROTO_VERSION_WIN10);
		control(&g, &ch, VSTOR_OPERATION_QUERY_PROPERTIES, 0);
		control(&g, &ch, VSTOR_OPERATION_END_INITIALIZATION, 0);
	}
	size_t i = 1;
	while (i + 2 <= size) {
		uint8_t kind = data[i], len = data[i + 1];
		i += 2;
		if (len > size - i)
			len = (uint8_t)(size - i);
		send(&g, &ch, kind & 1, data + i, len);
		if (kind & 4) {
			bool in = kind & 8;
			struct vdisk *old;
			if (storvsp_dvd_change(s, 2, in ? disk[0] : NULL, len * 2048u + kind, &old, 1000) < 0)
				abort();
			scsi_mmc_change(&mmc, in, len * 2048u + kind);
		}
		if (kind & 2) {
			static const struct scsi_disk d = { .blocks = 100, .logical_sector = 512, .physical_sector = 4096,
							    .thin = true, .max_transfer = 1 << 20 };
			static const struct scsi_disk dvd = { .max_transfer = 1 << 20, .mmc = &mmc };
			static const struct scsi_target t = { .nluns = 2, .luns = { &d, &dvd } };
			uint8_t out[512];
			struct scsi_result r;
			uint32_t xfer = len ? data[i] * 512u : 0;
			scsi_execute(&t, kind >> 4, data + i, len > 16 ? 16 : len, xfer, out, sizeof(out), &r);
			if (r.action == SCSI_UNMAP) {
				struct scsi_extent ext[SCSI_MAX_UNMAP_DESCRIPTORS];
				scsi_unmap_parse(&d, data + i, len, ext, SCSI_MAX_UNMAP_DESCRIPTORS, &r);
			}
		}
		i += len;
	}
	fg_free(&g);
	storvsp_free(s);
	return 0;
}
