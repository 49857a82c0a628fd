/* storvsp against a fake guest that speaks like Linux hv_storvsc: init sequence, SRBs with
 * GPA-direct buffers, sense data, hostile packets, the threaded I/O path, and saved state
 * (a controller saved with its sub-channels, restored into a second one over the same disks). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_guest.h"
#include "state/savedstate.h"
#include "state_rt.h"
#include "vhd/vdisk.h"
#include "vsp/io_limit.h"
#include "vsp/scsi.h"
#include "vsp/storvsp.h"

#define DATA_PFN 64

struct ctx {
	struct fake_guest g;
	struct fg_chan ch;
	struct fg_chan *cur;      /* where send_pkt / recv_pkt go: &ch or a sub-channel */
	struct storvsp *s;
	struct vdisk *d[2];
	char path[2][64];
	pthread_mutex_t lock;
	bool threaded;
	bool hold_signal;         /* send_pkt leaves the packet in the ring without signalling */
};

static void *gpa(void *opaque, uint64_t a, uint64_t len)
{
	struct fake_guest *g = opaque;
	uint64_t ram = (uint64_t)FG_RAM_PAGES * 4096;
	return a < ram && len <= ram - a ? g->host + a : NULL;
}

static int setup_common(void **state, unsigned nthreads)
{
	struct ctx *c = calloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	fg_init(&c->g);
	struct storvsp_disk disks[2];
	for (int i = 0; i < 2; i++) {
		snprintf(c->path[i], sizeof(c->path[i]), "/tmp/test_storvsp_%d_%d.%s", (int)getpid(), i, i ? "raw" : "vhdx");
		struct vdisk_create_params p = { .size = 8 << 20, .block_size = 1 << 20 };
		assert_int_equal(vdisk_create(c->path[i], &p), 0);
		assert_int_equal(vdisk_open(c->path[i], i ? 0 : VDISK_OPEN_RDWR, &c->d[i]), 0);
		disks[i] = (struct storvsp_disk){ .disk = c->d[i], .read_only = i == 1 };
	}
	struct storvsp_host host = { .gpa_to_hva = gpa, .grant = c->g.ops.grant, .opaque = &c->g, .lock = &c->lock,
				     .nthreads = nthreads };
	char err[200];
	c->threaded = nthreads > 0;
	c->s = storvsp_new(c->g.srv, &host, disks, 2, 0, err, sizeof(err));
	assert_non_null(c->s);
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&c->g), 1);
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 10, 10, 4, 4), 0);
	c->cur = &c->ch;
	*state = c;
	return 0;
}
static int setup(void **state) { return setup_common(state, 0); }
static int setup_threads(void **state) { return setup_common(state, 2); }

static int teardown(void **state)
{
	struct ctx *c = *state;
	fg_free(&c->g); /* closes the channel: in-flight work is waited for */
	storvsp_free(c->s);
	for (int i = 0; i < 2; i++) {
		vdisk_close(c->d[i]);
		unlink(c->path[i]);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
	return 0;
}

/* Send a vstor packet; with buf_len, as GPA-direct over guest pages DATA_PFN.. at buf_off. */
static void send_pkt(struct ctx *c, uint64_t tid, const void *vp, uint32_t len, uint32_t buf_off, uint32_t buf_len,
		     uint64_t first_pfn)
{
	uint8_t body[512];
	bool sig;
	pthread_mutex_lock(&c->lock);
	uint32_t w = c->cur->send.hdr->write_index;
	if (!buf_len) {
		assert_int_equal(fg_ring_send(&c->cur->send, VM_PKT_DATA_INBAND, 1, tid, vp, len, &sig), 0);
	} else {
		uint32_t pages = (buf_off + buf_len + 4095) / 4096;
		uint32_t hdr[4] = { 0, 1, buf_len, buf_off };
		memcpy(body, hdr, 16);
		for (uint32_t i = 0; i < pages; i++) {
			uint64_t pfn = first_pfn + i;
			memcpy(body + 16 + 8 * i, &pfn, 8);
		}
		uint32_t ext = 16 + 8 * pages;
		memcpy(body + ext, vp, len);
		assert_int_equal(fg_ring_send(&c->cur->send, VM_PKT_DATA_USING_GPA_DIRECT, 1, tid, body, ext + len, &sig), 0);
		uint16_t off8 = (uint16_t)((16 + ext) / 8);
		c->cur->send.data[(w + 2) % c->cur->send.size] = (uint8_t)off8;
		c->cur->send.data[(w + 3) % c->cur->send.size] = (uint8_t)(off8 >> 8);
	}
	if (!c->hold_signal)
		fg_signal(&c->g, c->cur);
	pthread_mutex_unlock(&c->lock);
}

/* Next completion; returns its trans_id (0 when none came). */
static uint64_t recv_pkt(struct ctx *c, struct vstor_packet *out)
{
	uint8_t buf[512];
	for (int tries = 0; tries < 2000; tries++) {
		pthread_mutex_lock(&c->lock);
		uint32_t n = fg_ring_recv(&c->cur->recv, buf, sizeof(buf));
		pthread_mutex_unlock(&c->lock);
		if (n) {
			const struct vmpacket_descriptor *d = (const void *)buf;
			assert_int_equal(d->type, VM_PKT_COMP);
			assert_true(n - d->offset8 * 8u >= sizeof(*out));
			memcpy(out, buf + d->offset8 * 8, sizeof(*out));
			return d->trans_id;
		}
		if (!c->threaded)
			break;
		usleep(1000);
	}
	return 0;
}

static uint32_t control(struct ctx *c, uint32_t op, uint16_t version, struct vstor_packet *out)
{
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = op;
	p.flags = REQUEST_COMPLETION_FLAG;
	p.version.major_minor = version;
	send_pkt(c, 77, &p, sizeof(p), 0, 0, 0);
	struct vstor_packet r;
	assert_int_equal(recv_pkt(c, &r), 77);
	assert_int_equal(r.operation, VSTOR_OPERATION_COMPLETE_IO);
	if (out)
		*out = r;
	return r.status;
}

static void init_ok(struct ctx *c)
{
	struct vstor_packet r;
	assert_int_equal(control(c, VSTOR_OPERATION_BEGIN_INITIALIZATION, 0, NULL), 0);
	assert_int_equal(control(c, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 0x0402, NULL), VSTOR_STATUS_REVISION_MISMATCH);
	assert_int_equal(control(c, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, VMSTOR_PROTO_VERSION_WIN10, NULL), 0);
	assert_int_equal(control(c, VSTOR_OPERATION_QUERY_PROPERTIES, 0, &r), 0);
	uint32_t max = r.storage_channel_properties.max_transfer_bytes;
	uint32_t flags = r.storage_channel_properties.flags;
	assert_int_equal(max, STORVSP_MAX_TRANSFER);
	assert_int_equal(flags, STORAGE_CHANNEL_SUPPORTS_MULTI_CHANNEL);
	assert_int_equal(r.storage_channel_properties.max_channel_cnt, STORVSP_MAX_SUBCHANNELS);
	assert_int_equal(control(c, VSTOR_OPERATION_END_INITIALIZATION, 0, NULL), 0);
}

/* Execute an SRB; buffer at guest pfn DATA_PFN + buf_off. Returns the completion. */
static struct vstor_packet srb(struct ctx *c, uint8_t target, uint8_t lun, const uint8_t *cdb, uint8_t cdb_len,
			       uint32_t xfer, uint32_t buf_off, uint8_t data_in)
{
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OPERATION_EXECUTE_SRB;
	p.flags = REQUEST_COMPLETION_FLAG;
	struct vmscsi_request s;
	memset(&s, 0, sizeof(s));
	s.length = sizeof(s);
	s.target_id = target;
	s.lun = lun;
	s.cdb_length = cdb_len;
	s.sense_info_length = STORVSC_SENSE_BUFFER_SIZE;
	s.data_in = data_in;
	s.data_transfer_length = xfer;
	memcpy(s.cdb, cdb, cdb_len > 16 ? 16 : cdb_len);
	memcpy(&p.vm_srb, &s, sizeof(s));
	send_pkt(c, 1000 + lun, &p, sizeof(p), buf_off, xfer, DATA_PFN);
	struct vstor_packet r;
	assert_int_equal(recv_pkt(c, &r), 1000 + lun);
	return r;
}

static void test_init_sequence(void **state)
{
	struct ctx *c = *state;
	uint8_t tur[6] = { 0 };
	/* SRB before initialization: refused */
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OPERATION_EXECUTE_SRB;
	send_pkt(c, 5, &p, sizeof(p), 0, 0, 0);
	struct vstor_packet r;
	assert_int_equal(recv_pkt(c, &r), 5);
	assert_int_equal(r.status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	/* properties before a version: refused */
	assert_int_equal(control(c, VSTOR_OPERATION_BEGIN_INITIALIZATION, 0, NULL), 0);
	assert_int_equal(control(c, VSTOR_OPERATION_QUERY_PROPERTIES, 0, NULL), VSTOR_STATUS_INVALID_DEVICE_STATE);
	init_ok(c);
	r = srb(c, 0, 0, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	/* zero or too many sub-channels: refused (the count shares the union with the version) */
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 0, NULL), VSTOR_STATUS_INVALID_PARAMETER);
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, STORVSP_MAX_SUBCHANNELS + 1, NULL),
			 VSTOR_STATUS_INVALID_PARAMETER);
	assert_int_equal(control(c, VSTOR_OPERATION_FCHBA_DATA, 0, NULL), VSTOR_STATUS_INVALID_PARAMETER);
	assert_int_equal(control(c, 99, 0, NULL), VSTOR_STATUS_INVALID_PARAMETER);
	assert_int_equal(control(c, VSTOR_OPERATION_RESET_BUS, 0, NULL), 0);
}

static void test_read_write(void **state)
{
	struct ctx *c = *state;
	init_ok(c);
	uint8_t *page = fg_page(&c->g, DATA_PFN);
	for (int i = 0; i < 3 * 4096; i++)
		page[i] = (uint8_t)(i * 7 + 1);
	/* WRITE(10) 2 blocks at LBA 3 from a buffer at offset 100 (crosses a page: bounce path) */
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 3, 0, 0, 2, 0 };
	struct vstor_packet r = srb(c, 0, 0, w10, 10, 1024, 100, WRITE_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(r.vm_srb.scsi_status, 0);
	uint32_t n = r.vm_srb.data_transfer_length;
	assert_int_equal(n, 1024);
	uint8_t disk[1024];
	assert_int_equal(vdisk_read(c->d[0], disk, 3 * 512, 1024), 0);
	assert_memory_equal(disk, page + 100, 1024);
	/* READ(16) of 8 KiB into page-aligned guest pages (direct path) */
	memset(page, 0, 3 * 4096);
	uint8_t r16[16] = { 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16 };
	r = srb(c, 0, 0, r16, 16, 8192, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	uint8_t want[8192];
	assert_int_equal(vdisk_read(c->d[0], want, 0, 8192), 0);
	assert_memory_equal(page, want, 8192);
	assert_memory_equal(page + 3 * 512, disk, 1024);
	/* SYNCHRONIZE CACHE, UNMAP */
	uint8_t sync[10] = { 0x35 };
	r = srb(c, 0, 0, sync, 10, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	uint8_t plist[24] = { 0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8 };
	memcpy(page, plist, sizeof(plist));
	uint8_t um[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0 };
	r = srb(c, 0, 0, um, 10, 24, 0, WRITE_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	/* WRITE SAME (16) of a pattern block over 4 blocks */
	memset(page, 0xA5, 512);
	uint8_t ws[16] = { 0x93, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 4 };
	r = srb(c, 0, 0, ws, 16, 512, 0, WRITE_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(vdisk_read(c->d[0], disk, 103 * 512, 512), 0);
	assert_int_equal(disk[0], 0xA5);
	assert_int_equal(disk[511], 0xA5);
	/* INQUIRY: data and the real length */
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
	r = srb(c, 0, 1, inq, 6, 96, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(r.vm_srb.data_transfer_length, 36);
	assert_memory_equal(page + 8, "Msft", 4);
}

static void test_errors(void **state)
{
	struct ctx *c = *state;
	init_ok(c);
	/* out of range: CHECK CONDITION with autosense */
	uint8_t r10[10] = { 0x28, 0, 0, 1, 0, 0, 0, 0, 1, 0 };
	struct vstor_packet r = srb(c, 0, 0, r10, 10, 512, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(r.vm_srb.scsi_status, 2);
	assert_int_equal(r.vm_srb.sense_info_length, 18);
	assert_int_equal(r.vm_srb.sense_data[2], 5);
	assert_int_equal(r.vm_srb.sense_data[12], 0x21);
	/* read-only LUN 1 */
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	r = srb(c, 0, 1, w10, 10, 512, 0, WRITE_TYPE);
	assert_int_equal(r.vm_srb.sense_data[2], 7);
	/* absent LUN, other target */
	r = srb(c, 0, 9, r10, 10, 512, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_INVALID_LUN);
	r = srb(c, 1, 0, r10, 10, 512, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_INVALID_LUN);
	/* unknown opcode */
	uint8_t bad[6] = { 0x04 };
	r = srb(c, 0, 0, bad, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.sense_data[12], 0x20);
	/* malformed SRBs: CDB length, transfer length, buffer outside guest RAM */
	uint8_t r10x[16] = { 0x28, 0, 0, 1, 0, 0, 0, 0, 1, 0 };
	r = srb(c, 0, 0, r10x, 17, 512, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	r = srb(c, 0, 0, r10, 0, 512, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OPERATION_EXECUTE_SRB;
	struct vmscsi_request s;
	memset(&s, 0, sizeof(s));
	s.cdb_length = 10;
	memcpy(s.cdb, r10, 10);
	s.cdb[3] = 0;
	s.data_transfer_length = 512;
	memcpy(&p.vm_srb, &s, sizeof(s));
	send_pkt(c, 9, &p, sizeof(p), 0, 512, FG_RAM_PAGES + 3);
	assert_int_equal(recv_pkt(c, &r), 9);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* data length but no GPA range (in-band) */
	send_pkt(c, 10, &p, sizeof(p), 0, 0, 0);
	assert_int_equal(recv_pkt(c, &r), 10);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* range shorter than the transfer length */
	s.data_transfer_length = 2 << 20;
	memcpy(&p.vm_srb, &s, sizeof(s));
	send_pkt(c, 11, &p, sizeof(p), 0, 512, DATA_PFN);
	assert_int_equal(recv_pkt(c, &r), 11);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* truncated packets */
	send_pkt(c, 12, &p, 8, 0, 0, 0);
	assert_int_equal(recv_pkt(c, &r), 12);
	assert_int_equal(r.status, VSTOR_STATUS_INVALID_PARAMETER);
	send_pkt(c, 13, &p, 40, 0, 0, 0);
	assert_int_equal(recv_pkt(c, &r), 13);
	assert_int_equal(r.status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	struct storvsp_stats st;
	storvsp_get_stats(c->s, &st);
	assert_true(st.bad_packets >= 5);
	assert_int_equal(st.protocol, VMSTOR_PROTO_VERSION_WIN10);
	/* the channel is still usable */
	uint8_t tur[6] = { 0 };
	r = srb(c, 0, 0, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
}

/* A 4 KiB READ(10) of LUN lun into guest page DATA_PFN + page, sent without waiting. */
static void send_read(struct ctx *c, uint8_t lun, uint64_t tid, uint32_t page)
{
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OPERATION_EXECUTE_SRB;
	struct vmscsi_request s;
	memset(&s, 0, sizeof(s));
	s.lun = lun;
	s.cdb_length = 10;
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
	memcpy(s.cdb, r10, 10);
	s.data_transfer_length = 4096;
	s.data_in = READ_TYPE;
	memcpy(&p.vm_srb, &s, sizeof(s));
	send_pkt(c, tid, &p, sizeof(p), 0, 4096, DATA_PFN + page);
}

static void test_threaded(void **state)
{
	struct ctx *c = *state;
	init_ok(c);
	uint8_t *page = fg_page(&c->g, DATA_PFN);
	memset(page, 0x3C, 4096);
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
	struct vstor_packet r = srb(c, 0, 0, w10, 10, 4096, 0, WRITE_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	/* many reads in flight at once */
	for (uint32_t i = 0; i < 16; i++)
		send_read(c, 0, 100 + i, 1 + i);
	unsigned seen = 0;
	for (int i = 0; i < 16; i++) {
		uint64_t tid = recv_pkt(c, &r);
		assert_true(tid >= 100 && tid < 116);
		assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
		seen |= 1u << (tid - 100);
	}
	assert_int_equal(seen, 0xFFFF);
	for (int i = 0; i < 16; i++)
		assert_int_equal(((uint8_t *)fg_page(&c->g, DATA_PFN + 1 + i))[4095], 0x3C);
}

/* Multi-queue as Linux storvsc does it: CREATE_SUB_CHANNELS after END_INITIALIZATION, the host
 * offers them, the guest opens each and sends SRBs on any; completions come back where the
 * request went. */
static void test_subchannels(void **state)
{
	struct ctx *c = *state;
	struct fg_chan sub[2];
	/* before END_INITIALIZATION: refused */
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 2, NULL), VSTOR_STATUS_INVALID_PARAMETER);
	init_ok(c);
	fg_clear(&c->g);
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 2, NULL), 0);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_OFFERCHANNEL), 2);
	for (unsigned i = 0; i < 2; i++) {
		const struct vmbus_channel_offer_channel *o = (const void *)c->g.msgs[i].data;
		struct vmbus_guid cls = STORVSP_SCSI_CLASS_GUID;
		assert_memory_equal(&o->offer.if_type, &cls, 16);
		assert_int_equal(o->offer.sub_channel_index, i + 1);
		assert_int_equal(fg_open(&c->g, &sub[i], o->child_relid, 20 + i, 20 + 8 * i, 4, 4), 0);
	}
	/* a sub-channel cannot ask for sub-channels */
	c->cur = &sub[0];
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 1, NULL), VSTOR_STATUS_INVALID_PARAMETER);
	/* WRITE on sub-channel 1, READ back on sub-channel 2, TUR on the primary */
	uint8_t *page = fg_page(&c->g, DATA_PFN);
	for (int i = 0; i < 4096; i++)
		page[i] = (uint8_t)(i * 13 + 5);
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 9, 0, 0, 8, 0 };
	struct vstor_packet r = srb(c, 0, 0, w10, 10, 4096, 0, WRITE_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	uint8_t want[4096];
	memcpy(want, page, sizeof(want));
	memset(page, 0, 4096);
	c->cur = &sub[1];
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 9, 0, 0, 8, 0 };
	r = srb(c, 0, 0, r10, 10, 4096, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_memory_equal(page, want, 4096);
	c->cur = &c->ch;
	uint8_t tur[6] = { 0 };
	r = srb(c, 0, 0, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	/* nothing strayed onto another channel */
	uint8_t buf[256];
	for (int i = 0; i < 2; i++)
		assert_int_equal(fg_ring_recv(&sub[i].recv, buf, sizeof(buf)), 0);
	assert_int_equal(fg_ring_recv(&c->ch.recv, buf, sizeof(buf)), 0);
	/* asking again keeps the same two */
	fg_clear(&c->g);
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 2, NULL), 0);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_OFFERCHANNEL), 0);
	/* closing one sub-channel leaves the others working */
	assert_true(fg_close(&c->g, &sub[0]));
	c->cur = &sub[1];
	r = srb(c, 0, 0, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	c->cur = &c->ch;
	struct storvsp_stats st;
	storvsp_get_stats(c->s, &st);
	assert_int_equal(st.srbs, 4);
}

/* ---- saved state ---- */

/* The worker is gone (its guest and controller with it); a new one over the same disks, as a
 * restore finds them: a fresh fake guest, server and controller. */
static void new_vm(struct ctx *c)
{
	fg_free(&c->g);
	storvsp_free(c->s);
	fg_init(&c->g);
	struct storvsp_disk disks[2] = { { .disk = c->d[0] }, { .disk = c->d[1], .read_only = true } };
	struct storvsp_host host = { .gpa_to_hva = gpa, .grant = c->g.ops.grant, .opaque = &c->g, .lock = &c->lock,
				     .nthreads = c->threaded ? 2 : 0 };
	char err[200];
	c->s = storvsp_new(c->g.srv, &host, disks, 2, 0, err, sizeof(err));
	assert_non_null(c->s);
	c->cur = &c->ch;
}

static int save_locked(struct ctx *c, int *rc)
{
	pthread_mutex_lock(&c->lock);
	int fd = rt_save(&c->g, rc);
	pthread_mutex_unlock(&c->lock);
	return fd;
}

static int restore_locked(struct ctx *c, int fd, const struct rt_patch *p)
{
	pthread_mutex_lock(&c->lock);
	int rc = rt_restore(&c->g, fd, p);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void fill(uint8_t *p, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed);
}

/* A controller with two open sub-channels, an acknowledged write and a write the guest queued
 * but had not signalled, saved, restored into a new controller: the queued write runs, the
 * acknowledged one reads back, every channel takes SRBs, and a second save is the same. */
static void test_save_restore(void **state)
{
	struct ctx *c = *state;
	struct fg_chan sub[2];
	uint32_t relid[3] = { 1, 0, 0 };
	init_ok(c);
	fg_clear(&c->g);
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 2, NULL), 0);
	for (unsigned i = 0; i < 2; i++) {
		const struct vmbus_channel_offer_channel *o = (const void *)c->g.msgs[i].data;
		relid[i + 1] = o->child_relid;
		assert_int_equal(fg_open(&c->g, &sub[i], relid[i + 1], 20 + i, 20 + 8 * i, 4, 4), 0);
	}
	uint8_t *page = fg_page(&c->g, DATA_PFN);
	uint8_t acked[4096], queued[4096];
	fill(acked, sizeof(acked), 3);
	fill(queued, sizeof(queued), 99);
	memcpy(page, acked, 4096);
	c->cur = &sub[0];
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 40, 0, 0, 8, 0 };
	struct vstor_packet r = srb(c, 0, 0, w10, 10, 4096, 0, WRITE_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	/* WRITE(10) of the second page to LBA 48 on sub-channel 2, not signalled */
	memcpy(fg_page(&c->g, DATA_PFN + 1), queued, 4096);
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OPERATION_EXECUTE_SRB;
	p.flags = REQUEST_COMPLETION_FLAG;
	p.vm_srb.length = sizeof(p.vm_srb);
	p.vm_srb.cdb_length = 10;
	uint8_t w48[10] = { 0x2A, 0, 0, 0, 0, 48, 0, 0, 8, 0 };
	memcpy(p.vm_srb.cdb, w48, 10);
	p.vm_srb.data_transfer_length = 4096;
	p.vm_srb.data_in = WRITE_TYPE;
	c->cur = &sub[1];
	c->hold_signal = true;
	send_pkt(c, 4242, &p, sizeof(p), 0, 4096, DATA_PFN + 1);
	c->hold_signal = false;
	c->cur = &c->ch;

	assert_int_equal(storvsp_drain(c->s, 1000), 0);
	int rc, fd = save_locked(c, &rc);
	assert_true(fd >= 0);
	size_t len[3];
	uint8_t *saved[3];
	for (unsigned i = 0; i < 3; i++) {
		saved[i] = rt_payload(fd, STATE_SECTION_STORVSP, relid[i], &len[i]);
		assert_non_null(saved[i]);
		assert_int_equal(len[i], 8);
	}

	new_vm(c);
	assert_int_equal(restore_locked(c, fd, NULL), 0);
	fg_chan_init(&c->g, &c->ch, 1, 10, 10, 4, 4);
	for (unsigned i = 0; i < 2; i++)
		fg_chan_init(&c->g, &sub[i], relid[i + 1], 20 + i, 20 + 8 * i, 4, 4);
	/* the queued write ran after restore_finish and completed where it was sent */
	c->cur = &sub[1];
	assert_int_equal(recv_pkt(c, &r), 4242);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	uint8_t disk[4096];
	assert_int_equal(vdisk_read(c->d[0], disk, 48 * 512, 4096), 0);
	assert_memory_equal(disk, queued, 4096);
	/* the acknowledged write reads back on the primary */
	c->cur = &c->ch;
	uint8_t *tpage = fg_page(&c->g, DATA_PFN);
	memset(tpage, 0, 4096);
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 40, 0, 0, 8, 0 };
	r = srb(c, 0, 0, r10, 10, 4096, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_memory_equal(tpage, acked, 4096);
	/* sub-channel 1 too; asking for the sub-channels again offers nothing new */
	c->cur = &sub[0];
	uint8_t tur[6] = { 0 };
	r = srb(c, 0, 0, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	c->cur = &c->ch;
	fg_clear(&c->g);
	assert_int_equal(control(c, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 2, NULL), 0);
	assert_int_equal(fg_count(&c->g, CHANNELMSG_OFFERCHANNEL), 0);
	struct storvsp_stats st;
	storvsp_get_stats(c->s, &st);
	assert_int_equal(st.protocol, VMSTOR_PROTO_VERSION_WIN10);
	assert_int_equal(st.srbs, 3);
	assert_int_equal(st.bad_packets, 0);
	/* saved again: the same per-channel state */
	assert_int_equal(storvsp_drain(c->s, 1000), 0);
	int fd2 = save_locked(c, &rc);
	assert_true(fd2 >= 0);
	for (unsigned i = 0; i < 3; i++) {
		size_t l;
		uint8_t *again = rt_payload(fd2, STATE_SECTION_STORVSP, relid[i], &l);
		assert_non_null(again);
		assert_int_equal(l, len[i]);
		assert_memory_equal(again, saved[i], l);
		free(again);
		free(saved[i]);
	}
	close(fd2);
	close(fd);
}

/* Completions waiting for ring space: the drain times out and the save refuses, until the
 * guest reads its ring. */
static void test_save_busy(void **state)
{
	struct ctx *c = *state;
	init_ok(c);
	struct vstor_packet p;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OPERATION_EXECUTE_SRB;
	p.vm_srb.cdb_length = 6; /* TEST UNIT READY */
	for (unsigned i = 0; i < 200; i++)
		send_pkt(c, 500 + i, &p, sizeof(p), 0, 0, 0);
	assert_int_equal(storvsp_drain(c->s, 20), -ETIMEDOUT);
	assert_non_null(strstr(state_last_error(), "waiting for ring space"));
	int rc;
	assert_int_equal(save_locked(c, &rc), -1);
	assert_int_equal(rc, -EBUSY);
	assert_non_null(strstr(state_last_error(), "in flight"));
	unsigned got = 0;
	uint8_t buf[256];
	for (int round = 0; round < 10 && got < 200; round++) {
		while (fg_ring_recv(&c->ch.recv, buf, sizeof(buf)))
			got++;
		fg_signal(&c->g, &c->ch);
	}
	assert_int_equal(got, 200);
	assert_int_equal(storvsp_drain(c->s, 20), 0);
	int fd = save_locked(c, &rc);
	assert_true(fd >= 0);
	close(fd);
}

/* Each field of a saved channel out of range: a clean error naming it, nothing opened. */
static void test_restore_hostile(void **state)
{
	struct ctx *c = *state;
	init_ok(c);
	int rc, fd = save_locked(c, &rc);
	assert_true(fd >= 0);
	size_t len;
	uint8_t *good = rt_payload(fd, STATE_SECTION_STORVSP, 1, &len);
	assert_non_null(good);
	assert_int_equal(len, 8);
	static const struct {
		unsigned off, n;  /* bytes [off, off + n) replaced by v (little-endian) */
		uint16_t v;
		int len_delta, version, err;
		const char *msg;
	} cases[] = {
		{ 0, 0, 0, -1, -1, -EBADMSG, "state is 7 bytes, version 1 has 8" },
		{ 0, 0, 0, 1, -1, -EBADMSG, "state is 9 bytes" },
		{ 0, 0, 0, 0, 2, -EPROTONOSUPPORT, "state version 2 (this build reads 1)" },
		{ 0, 1, 3, 0, -1, -EINVAL, "init stage 3 is not one we know" },
		{ 1, 2, 0x0401, 0, -1, -EINVAL, "storvsp: channel 1: protocol version 0x0401 is not one we speak" },
		{ 1, 2, 0, 0, -1, -EINVAL, "initialised without a protocol version" },
		{ 3, 2, 5, 0, -1, -EINVAL, "saved as sub-channel 5, restored as sub-channel 0" },
		{ 5, 1, 3, 0, -1, -EINVAL, "saved with 3 LUNs, this controller has 2" },
		{ 6, 2, 7, 0, -1, -EINVAL, "saved with 7 sub-channels, the VMBus state has 0" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t bad[16] = { 0 };
		memcpy(bad, good, len);
		memcpy(bad + cases[i].off, &cases[i].v, cases[i].n);
		struct rt_patch patch = { STATE_SECTION_STORVSP, 1, cases[i].version, bad,
					  (size_t)((int)len + cases[i].len_delta) };
		new_vm(c);
		assert_int_equal(restore_locked(c, fd, &patch), cases[i].err);
		if (!strstr(state_last_error(), cases[i].msg))
			fail_msg("case %u: \"%s\" does not say \"%s\"", i, state_last_error(), cases[i].msg);
		assert_false(vmbus_chan_is_open(vmbus_server_channel(c->g.srv, 1)));
	}
	/* the file itself restores */
	new_vm(c);
	assert_int_equal(restore_locked(c, fd, NULL), 0);
	fg_chan_init(&c->g, &c->ch, 1, 10, 10, 4, 4);
	uint8_t tur[6] = { 0 };
	struct vstor_packet r = srb(c, 0, 0, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	free(good);
	close(fd);
}

/* A DVD drive behind the controller: LUN 1 has d[1] (8 MiB raw, read-only) as its disc. */
static void test_dvd(void **state)
{
	struct ctx *c = *state;
	fg_free(&c->g);
	storvsp_free(c->s);
	fg_init(&c->g);
	uint64_t bytes = (8 << 20) - 100; /* not a multiple of 2048: 4095 blocks */
	struct storvsp_disk disks[3] = { { .disk = c->d[0] }, { .disk = c->d[1], .dvd = true, .media_bytes = bytes },
					 { .dvd = true } };
	struct storvsp_host host = { .gpa_to_hva = gpa, .grant = c->g.ops.grant, .opaque = &c->g, .lock = &c->lock,
				     .nthreads = c->threaded ? 2 : 0 };
	char err[200];
	c->s = storvsp_new(c->g.srv, &host, disks, 3, 0, err, sizeof(err));
	assert_non_null(c->s);
	assert_int_equal(fg_connect(&c->g, VERSION_WIN10_V5_3), 1);
	assert_int_equal(fg_request_offers(&c->g), 1);
	assert_int_equal(fg_open(&c->g, &c->ch, 1, 10, 10, 4, 4), 0);
	c->cur = &c->ch;
	init_ok(c);
	uint8_t *page = fg_page(&c->g, DATA_PFN);
	/* the disc's data, 2048-byte blocks */
	uint8_t data[4096];
	for (int i = 0; i < 4096; i++)
		data[i] = (uint8_t)(i * 13 + 5);
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0x0F, 0xFE, 0, 0, 1, 0 }; /* LBA 4094, the last whole block */
	struct vstor_packet r = srb(c, 0, 1, r10, 10, 2048, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(r.vm_srb.data_transfer_length, 2048);
	uint8_t want[2048];
	assert_int_equal(vdisk_read(c->d[1], want, 4094ull * 2048, 2048), 0);
	assert_memory_equal(page, want, 2048);
	r10[5] = 0xFF; /* LBA 4095: the partial block is beyond the disc */
	r = srb(c, 0, 1, r10, 10, 2048, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(r.vm_srb.sense_data[2], SCSI_SENSE_ILLEGAL_REQUEST);
	assert_int_equal(r.vm_srb.sense_data[12], 0x21);
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	memcpy(page, data, 2048);
	r = srb(c, 0, 1, w10, 10, 2048, 0, WRITE_TYPE);
	assert_int_equal(r.vm_srb.sense_data[2], SCSI_SENSE_DATA_PROTECT);
	/* the empty drive */
	uint8_t tur[6] = { 0 };
	r = srb(c, 0, 2, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.sense_data[2], SCSI_SENSE_NOT_READY);
	assert_int_equal(r.vm_srb.sense_data[12], 0x3A);
	assert_false(storvsp_dvd_loaded(c->s, 2));
	/* the host gives the empty drive a disc: UNIT ATTENTION once, then it reads */
	struct vdisk *old = (struct vdisk *)1;
	assert_int_equal(storvsp_dvd_change(c->s, 2, c->d[1], 4096, &old, 1000), 0);
	assert_null(old);
	assert_true(storvsp_dvd_loaded(c->s, 2));
	r = srb(c, 0, 2, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.sense_data[2], SCSI_SENSE_UNIT_ATTENTION);
	assert_int_equal(r.vm_srb.sense_data[12], 0x28);
	r = srb(c, 0, 2, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	uint8_t rc[10] = { 0x25 };
	r = srb(c, 0, 2, rc, 10, 8, 0, READ_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(page[3], 1); /* last LBA 1: 4096 bytes */
	/* the host ejects it again; the old disc comes back to be closed */
	assert_int_equal(storvsp_dvd_change(c->s, 2, NULL, 0, &old, 1000), 0);
	assert_ptr_equal(old, c->d[1]);
	assert_false(storvsp_dvd_loaded(c->s, 2));
	/* the guest ejects LUN 1's disc */
	uint8_t eject[6] = { 0x1B, 0, 0, 0, 0x02, 0 };
	r = srb(c, 0, 1, eject, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_false(storvsp_dvd_loaded(c->s, 1));
	/* a disk is not a DVD drive, a DVD drive is not a disk */
	assert_int_equal(storvsp_dvd_change(c->s, 0, NULL, 0, &old, 1000), -EINVAL);
	assert_int_equal(storvsp_dvd_change(c->s, 3, NULL, 0, &old, 1000), -EINVAL);
	assert_int_equal(storvsp_swap_disk(c->s, 1, NULL, NULL, 1000), -EINVAL);
	/* the disk at LUN 0 still works */
	r = srb(c, 0, 0, tur, 6, 0, 0, UNKNOWN_TYPE);
	assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
}

static double elapsed_ms(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Storage QoS: LUN 0 at 100 IOPS takes 16 reads sent at once in order over ~100 ms (the
 * first 50 ms of them at once), while a read of LUN 1 sent after them is not held behind them. */
static void test_limits(void **state)
{
	struct ctx *c = *state;
	init_ok(c);
	assert_int_equal(storvsp_set_limits(c->s, 0, 100, 0), 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t i = 0; i < 16; i++)
		send_read(c, 0, 100 + i, i);
	send_read(c, 1, 200, 20);
	struct vstor_packet r;
	uint64_t order[17];
	for (int i = 0; i < 17; i++) {
		order[i] = recv_pkt(c, &r);
		assert_int_equal(r.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	}
	double ms = elapsed_ms(&t0);
	assert_true(ms >= 85); /* request 15 may start at 150 - 50 ms */
	unsigned lun1_at = 17, seen = 0;
	for (int i = 0; i < 17; i++) {
		if (order[i] == 200)
			lun1_at = (unsigned)i;
		else
			seen |= 1u << (order[i] - 100);
	}
	assert_int_equal(seen, 0xFFFF);
	assert_true(lun1_at < 8); /* ahead of the held ones (the first six go at once) */
	struct storvsp_stats st;
	storvsp_get_stats(c->s, &st);
	assert_true(st.throttled >= 9);
	assert_int_equal(st.read_bytes, 17 * 4096); /* the counters Measure-VM reads */
	assert_int_equal(st.normalized_ops, 17);
	/* lifted: at once */
	assert_int_equal(storvsp_set_limits(c->s, 0, 0, 0), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t i = 0; i < 16; i++)
		send_read(c, 0, 300 + i, i);
	for (int i = 0; i < 16; i++)
		assert_true(recv_pkt(c, &r) >= 300);
	storvsp_get_stats(c->s, &st);
	uint64_t throttled = st.throttled;
	/* 1 IOPS, 6 reads: a drain (a save) does not wait for their turn */
	assert_int_equal(storvsp_set_limits(c->s, 0, 1, 0), 0);
	for (uint32_t i = 0; i < 6; i++)
		send_read(c, 0, 400 + i, i);
	usleep(20000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(storvsp_drain(c->s, 2000), 0);
	assert_true(elapsed_ms(&t0) < 1000);
	for (int i = 0; i < 6; i++)
		assert_true(recv_pkt(c, &r) >= 400);
	storvsp_get_stats(c->s, &st);
	assert_true(st.throttled > throttled);
	/* held at teardown: the channel's close lets them go (teardown would hang otherwise) */
	for (uint32_t i = 0; i < 4; i++)
		send_read(c, 0, 500 + i, i);
	/* settings */
	assert_int_equal(storvsp_set_limits(c->s, 2, 100, 0), -EINVAL);
	assert_int_equal(storvsp_set_limits(c->s, 0, IO_LIMIT_MAX_IOPS + 1, 0), -ERANGE);
	assert_int_equal(storvsp_set_limits(c->s, 0, 0, IO_LIMIT_MAX_BYTES_PER_S + 1), -ERANGE);
}

static void test_limits_sync(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(storvsp_set_limits(c->s, 0, 100, 0), -ENOTSUP); /* no I/O threads to hold them */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_sequence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_write, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_threaded, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_subchannels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subchannels, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_save_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dvd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dvd, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_limits_sync, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
