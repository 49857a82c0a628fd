/* Ring throughput through one VMBus channel, host side, with an in-process fake guest.
 *
 * guest->host: the guest fills its ring with in-band packets and signals; the VSP drains them
 *              with vmbus_chan_recv (copy out + descriptor checks) — what storvsp/netvsp pay per request.
 * host->guest: the VSP sends in-band packets with vmbus_chan_send until the ring is full; the guest
 *              drains them.
 * round trip:  guest request with completion requested -> VSP vmbus_chan_complete -> guest reads it.
 *
 * Usage: bench_vmbus_ring [seconds per case, default 1] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmbus/server.h"

#define RAM_PAGES 1024             /* 4 MiB of guest RAM */
#define RING_PAGES 65              /* 256 KiB of data + control page, each direction */
#define RING_PFN 16

static uint8_t *ram;
static int mode; /* 0 sink, 1 complete */
static uint64_t host_pkts;

static void *gpa_to_hva(void *o, uint64_t gpa, uint64_t len)
{
	(void)o;
	uint64_t size = (uint64_t)RAM_PAGES * 4096;
	return gpa < size && len <= size - gpa ? ram + gpa : NULL;
}
static int post_message(void *o, uint32_t vp, uint32_t sint, uint32_t t, const void *p, uint32_t l)
{
	(void)o, (void)vp, (void)sint, (void)t, (void)p, (void)l;
	return 0;
}
static uint64_t guest_events;
static void signal_event(void *o, uint32_t vp, uint32_t sint, uint32_t flag)
{
	(void)o, (void)vp, (void)sint, (void)flag;
	guest_events++;
}

static void on_packets(struct vmbus_chan *chan, void *ctx)
{
	(void)ctx;
	struct vmbus_packet pkt;
	while (vmbus_chan_recv(chan, &pkt) == 1) {
		host_pkts++;
		if (mode == 1)
			vmbus_chan_complete(chan, pkt.trans_id, pkt.data, pkt.data_len);
	}
}

static const struct vmbus_device_ops ops = {.name = "bench", .on_packets = on_packets};
static const struct vmbus_host_ops hops = {.gpa_to_hva = gpa_to_hva, .post_message = post_message,
					   .signal_event = signal_event};

struct gring {
	struct vmbus_ring_header *hdr;
	uint8_t *data;
	uint32_t size;
};

static void gcopy(struct gring *r, uint32_t *off, const void *src, uint32_t len)
{
	uint32_t first = r->size - *off < len ? r->size - *off : len;
	memcpy(r->data + *off, src, first);
	memcpy(r->data, (const uint8_t *)src + first, len - first);
	*off = (*off + len) % r->size;
}

/* Linux-style guest write; returns 0 or -1 (full); *sig when the host must be signalled. */
static int gsend(struct gring *r, uint16_t flags, uint64_t tid, const void *data, uint32_t len, int *sig)
{
	uint32_t pkt = (16 + len + 7) & ~7u;
	uint32_t w = r->hdr->write_index, rd = __atomic_load_n(&r->hdr->read_index, __ATOMIC_ACQUIRE);
	uint32_t used = w >= rd ? w - rd : r->size - rd + w;
	if (r->size - used <= pkt + 8)
		return -1;
	struct vmpacket_descriptor d = {.type = VM_PKT_DATA_INBAND, .offset8 = 2, .len8 = (uint16_t)(pkt / 8),
					.flags = flags, .trans_id = tid};
	uint32_t off = w;
	static const uint8_t pad[8];
	uint64_t trailer = (uint64_t)w << 32;
	gcopy(r, &off, &d, 16);
	gcopy(r, &off, data, len);
	gcopy(r, &off, pad, pkt - 16 - len);
	gcopy(r, &off, &trailer, 8);
	__atomic_store_n(&r->hdr->write_index, off, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	*sig |= !r->hdr->interrupt_mask && w == r->hdr->read_index;
	return 0;
}

/* Guest read of all pending packets; returns the count. */
static uint64_t gdrain(struct gring *r)
{
	uint32_t w = __atomic_load_n(&r->hdr->write_index, __ATOMIC_ACQUIRE), rd = r->hdr->read_index;
	uint64_t n = 0;
	while (rd != w) {
		struct vmpacket_descriptor d;
		uint32_t off = rd;
		uint32_t first = r->size - off < 16 ? r->size - off : 16;
		memcpy(&d, r->data + off, first);
		memcpy((uint8_t *)&d + first, r->data, 16 - first);
		rd = (rd + d.len8 * 8u + 8) % r->size;
		n++;
	}
	__atomic_store_n(&r->hdr->read_index, rd, __ATOMIC_RELEASE);
	return n;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void post(struct vmbus_server *srv, uint32_t conn, const void *m, uint32_t len)
{
	struct hv_input_post_message in = {.connection_id = conn, .message_type = 1, .payload_size = len};
	memcpy(in.payload, m, len);
	vmbus_server_post_message(srv, 0, &in);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	ram = aligned_alloc(4096, (size_t)RAM_PAGES * 4096);
	memset(ram, 0, (size_t)RAM_PAGES * 4096);
	struct vmbus_server *srv = vmbus_server_new(&hops, NULL);
	struct vmbus_chan *chan = vmbus_server_add_device(srv, &ops, NULL);

	struct vmbus_channel_initiate_contact ic = {.header.msgtype = CHANNELMSG_INITIATE_CONTACT,
						    .vmbus_version_requested = VERSION_WIN10_V5_3};
	ic.msg_sint = VMBUS_MESSAGE_SINT;
	post(srv, 4, &ic, sizeof(ic));
	struct vmbus_channel_message_header ro = {.msgtype = CHANNELMSG_REQUESTOFFERS};
	post(srv, 1, &ro, sizeof(ro));
	/* one GPADL over 2 * RING_PAGES pages: header + bodies as Linux sends them */
	uint8_t m[240] = {0};
	struct vmbus_channel_gpadl_header *h = (void *)m;
	uint32_t npages = 2 * RING_PAGES, done = 0;
	h->header.msgtype = CHANNELMSG_GPADL_HEADER;
	h->child_relid = 1;
	h->gpadl = 1;
	h->rangecount = 1;
	h->range_buflen = (uint16_t)(8 + npages * 8);
	uint32_t range[2] = {npages * 4096, 0};
	memcpy(m + 20, range, 8);
	for (; done < 26; done++) {
		uint64_t pfn = RING_PFN + done;
		memcpy(m + 28 + done * 8, &pfn, 8);
	}
	post(srv, 1, m, 28 + 26 * 8);
	while (done < npages) {
		struct vmbus_channel_gpadl_body *b = (void *)m;
		memset(m, 0, sizeof(m));
		b->header.msgtype = CHANNELMSG_GPADL_BODY;
		b->gpadl = 1;
		uint32_t k = npages - done < 28 ? npages - done : 28;
		for (uint32_t i = 0; i < k; i++) {
			uint64_t pfn = RING_PFN + done + i;
			memcpy(m + 16 + i * 8, &pfn, 8);
		}
		post(srv, 1, m, 16 + k * 8);
		done += k;
	}
	struct vmbus_channel_open_channel o = {.header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = 1,
					       .openid = 1, .ringbuffer_gpadlhandle = 1,
					       .downstream_ringbuffer_pageoffset = RING_PAGES};
	post(srv, 1, &o, sizeof(o));
	if (!vmbus_chan_is_open(chan)) {
		fprintf(stderr, "bench: channel did not open\n");
		return 1;
	}
	struct gring send = {(void *)(ram + RING_PFN * 4096), ram + (RING_PFN + 1) * 4096, (RING_PAGES - 1) * 4096};
	struct gring recv = {(void *)(ram + (RING_PFN + RING_PAGES) * 4096), ram + (RING_PFN + RING_PAGES + 1) * 4096,
			     (RING_PAGES - 1) * 4096};
	uint32_t conn = VMBUS_CHANNEL_CONNECTION_ID_BASE + 1;
	static uint8_t payload[8192];
	const uint32_t sizes[] = {64, 256, 1024, 4096};

	printf("%-12s %8s %14s %10s\n", "direction", "payload", "packets/s", "MB/s");
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint32_t len = sizes[si];
		/* guest -> host */
		mode = 0;
		host_pkts = 0;
		double t0 = now(), t;
		do {
			for (int batch = 0; batch < 16; batch++) {
				int sig = 0;
				while (gsend(&send, 0, 1, payload, len, &sig) == 0)
					;
				vmbus_server_signal_event(srv, 0, conn, 0);
			}
		} while ((t = now() - t0) < secs);
		printf("%-12s %8u %14.0f %10.1f\n", "guest->host", len, host_pkts / t, host_pkts * (double)len / t / 1e6);

		/* host -> guest */
		uint64_t sent = 0;
		t0 = now();
		do {
			for (int batch = 0; batch < 16; batch++) {
				while (vmbus_chan_send(chan, VM_PKT_DATA_INBAND, 0, 1, payload, len) == 0)
					sent++;
				gdrain(&recv);
			}
		} while ((t = now() - t0) < secs);
		printf("%-12s %8u %14.0f %10.1f\n", "host->guest", len, sent / t, sent * (double)len / t / 1e6);

		/* request + completion, batched by what fits */
		mode = 1;
		host_pkts = 0;
		t0 = now();
		do {
			for (int batch = 0; batch < 16; batch++) {
				int sig = 0;
				for (int k = 0; k < 32 && gsend(&send, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 1,
								  payload, len, &sig) == 0; k++)
					;
				vmbus_server_signal_event(srv, 0, conn, 0);
				gdrain(&recv);
			}
		} while ((t = now() - t0) < secs);
		printf("%-12s %8u %14.0f %10.1f\n", "round trip", len, host_pkts / t, host_pkts * (double)len / t / 1e6);
	}
	vmbus_server_free(srv);
	free(ram);
	return 0;
}
