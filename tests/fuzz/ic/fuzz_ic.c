/* libFuzzer target: arbitrary guest answers into the KVP, VSS and file copy integration
 * services. Each run starts with the three channels open and negotiated (the fake guest answers
 * the negotiation like hv_utils); then the input is a sequence of steps: host API calls, clock ticks, the guest
 * answering the outstanding request with fuzzed status / flags / transaction id / body bytes and
 * length, raw packets, and channel close/reopen. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_guest.h"
#include "vsp/fcopy.h"
#include "vsp/kvp.h"
#include "vsp/vss.h"
#include "../fuzz_input.h"

static uint8_t pkt[16384];

/* Read the host's next request on c; answer a negotiation properly. Returns its payload length
 * (data at pkt + *off), or 0. */
static uint32_t next_request(struct fake_guest *g, struct fg_chan *c, uint32_t *off, uint64_t *tid)
{
	for (;;) {
		uint32_t len = fg_ring_recv(&c->recv, pkt, sizeof(pkt));
		if (!len)
			return 0;
		const struct vmpacket_descriptor *d = (const void *)pkt;
		*off = d->offset8 * 8u;
		*tid = d->trans_id;
		uint32_t dlen = len - *off;
		uint8_t *data = pkt + *off;
		struct icmsg_hdr h;
		memcpy(&h, data + sizeof(struct vmbuspipe_hdr), sizeof(h));
		if (h.icmsgtype != ICMSGTYPE_NEGOTIATE)
			return dlen;
		/* pick the first framework and service version offered */
		struct icmsg_negotiate n;
		memcpy(&n, data + IC_HDR_SIZE, sizeof(n));
		struct ic_version fw, sv;
		memcpy(&fw, data + IC_HDR_SIZE + sizeof(n), 4);
		memcpy(&sv, data + IC_HDR_SIZE + sizeof(n) + 4u * n.icframe_vercnt, 4);
		n.icframe_vercnt = n.icmsg_vercnt = 1;
		memcpy(data + IC_HDR_SIZE, &n, sizeof(n));
		memcpy(data + IC_HDR_SIZE + sizeof(n), &fw, 4);
		memcpy(data + IC_HDR_SIZE + sizeof(n) + 4, &sv, 4);
		h.icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE;
		memcpy(data + sizeof(struct vmbuspipe_hdr), &h, sizeof(h));
		bool sig;
		fg_ring_send(&c->send, VM_PKT_DATA_INBAND, 0, *tid, data, dlen, &sig);
		fg_signal(g, c);
	}
}

static void noop_kvp(void *ctx, struct ic_dev *dev, const struct ic_kvp_result *r)
{
	(void)ctx;
	(void)dev;
	/* touch what we were given, for the sanitizers */
	if (r->pair && strlen(r->pair->key) >= IC_KVP_KEY_MAX)
		abort();
	if (r->pair && strlen(r->pair->value) >= IC_KVP_VALUE_MAX)
		abort();
	if (r->ip && strlen(r->ip->ip_addr) >= IC_KVP_IP_MAX)
		abort();
}

static void noop_vss(void *ctx, struct ic_dev *dev, enum ic_vss_state st, enum ic_vss_error err)
{
	(void)ctx, (void)dev, (void)st, (void)err;
}

/* The file copy's source: 16 KiB in memory (copies are up to 40000 bytes, so reads past its end
 * come up short), and a read error when the offset says so */
static uint8_t src[16384];

static int fuzz_read(void *ctx, uint64_t offset, void *buf, uint32_t len)
{
	(void)ctx;
	if (offset % 7 == 3)
		return -5;
	if (len > HV_FCOPY_FRAGMENT)
		abort();
	uint32_t n = offset >= sizeof(src) ? 0 : (uint32_t)(sizeof(src) - offset < len ? sizeof(src) - offset : len);
	memcpy(buf, src + offset, n);
	return (int)n;
}

/* What the file copy's state must always satisfy */
static void check_fcopy(const struct ic_dev *fc)
{
	enum ic_fcopy_state st = ic_fcopy_state(fc);
	bool failing = st == IC_FCOPY_FAILED || st == IC_FCOPY_CANCELLING;
	if (failing != (ic_fcopy_error(fc) != IC_FCOPY_OK) || ic_fcopy_bytes_done(fc) > ic_fcopy_size(fc) ||
	    ic_fcopy_busy(fc) != (st != IC_FCOPY_IDLE && st != IC_FCOPY_DONE && st != IC_FCOPY_FAILED) ||
	    !strcmp(ic_fcopy_state_name(st), "?") || !strcmp(ic_fcopy_error_name(ic_fcopy_error(fc)), "?"))
		abort();
	if (st == IC_FCOPY_DONE && ic_fcopy_bytes_done(fc) != ic_fcopy_size(fc))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fake_guest g;
	struct in in = {data, size};
	fg_init(&g);
	struct ic_dev *kvp = ic_kvp_add(g.srv, noop_kvp, NULL);
	struct ic_dev *vss = ic_vss_add(g.srv, noop_vss, NULL);
	struct ic_dev *fc = ic_fcopy_add(g.srv);
	struct fg_chan ch[3];
	uint32_t gpadl = 10;
	fg_connect(&g, VERSION_WIN10_V5_3);
	fg_request_offers(&g);
	fg_open(&g, &ch[0], 1, gpadl++, 8, 4, 4);
	fg_open(&g, &ch[1], 2, gpadl++, 16, 4, 4);
	fg_open(&g, &ch[2], 3, gpadl++, 24, 4, 4);
	bool open[3] = {true, true, true};
	uint64_t now = 0;
	uint32_t off;
	uint64_t tid;
	for (unsigned i = 0; i < 3; i++)
		next_request(&g, &ch[i], &off, &tid);
	ic_kvp_set(kvp, "VirtualMachineName", "fuzz", now);

	for (int steps = 0; in.n && steps < 256; steps++, check_fcopy(fc)) {
		uint8_t op = take(&in);
		unsigned which = op % 3;
		switch ((op / 3) % 8) {
		case 0: /* host API */
			switch (take(&in) % 11) {
			case 0: ic_kvp_set(kvp, (take(&in) & 1) ? "a" : "b", "value", now); break;
			case 1: ic_kvp_set_u64(kvp, "n", take32(&in), now); break;
			case 2: ic_kvp_delete(kvp, (take(&in) & 1) ? "a" : "VirtualMachineName", now); break;
			case 3: ic_kvp_enumerate(kvp, take(&in) % 6, now); break;
			case 4: ic_kvp_get(kvp, take(&in) % 6, "a", now); break;
			case 5: ic_kvp_get_ip_info(kvp, "00:15:5D:00:00:01", take(&in), now); break;
			case 6: ic_vss_freeze(vss, now); break;
			case 7: ic_vss_thaw(vss, now); break;
			case 8: ic_vss_set_timeouts(vss, take(&in) * 1000u, take(&in) * 100u); break;
			case 9: ic_fcopy_start(fc, (take(&in) & 1) ? "/tmp/" : "tmp", (take(&in) & 1) ? "f\xc3\xa9" : "g\xff",
					       (uint64_t)take32(&in) % 40000, take(&in) % 4, fuzz_read, NULL, now); break;
			default: ic_fcopy_cancel(fc, now); break;
			}
			break;
		case 1: /* time passes */
			now += (uint64_t)take(&in) * 1000;
			ic_kvp_tick(kvp, now);
			ic_vss_tick(vss, now);
			ic_fcopy_tick(fc, now);
			break;
		case 2: /* the guest answers the outstanding request in place, fuzzing its fields */
		case 3: {
			if (!open[which])
				break;
			uint32_t dlen = next_request(&g, &ch[which], &off, &tid);
			if (!dlen)
				break;
			uint8_t *d = pkt + off;
			uint8_t how = take(&in);
			struct icmsg_hdr h;
			memcpy(&h, d + sizeof(struct vmbuspipe_hdr), sizeof(h));
			h.status = (how & 1) ? take32(&in) : ((how & 2) ? IC_HV_S_CONT : IC_HV_S_OK);
			h.icflags = (how & 4) ? take(&in) : (ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE);
			if (how & 8)
				h.icmsgtype = take(&in);
			memcpy(d + sizeof(struct vmbuspipe_hdr), &h, sizeof(h));
			/* overwrite body bytes: (offset, count, bytes...) runs */
			uint8_t runs = take(&in) % 8;
			for (uint8_t r = 0; r < runs; r++) {
				uint32_t o = ((uint32_t)take(&in) << 8 | take(&in)) % dlen;
				uint8_t cnt = take(&in);
				for (uint8_t k = 0; k < cnt && o + k < dlen; k++)
					d[o + k] = take(&in);
			}
			if (how & 16)
				dlen = 1 + ((uint32_t)take(&in) << 8 | take(&in)) % dlen;
			if (how & 32)
				tid = take32(&in);
			bool sig;
			fg_ring_send(&ch[which].send, VM_PKT_DATA_INBAND, 0, tid, d, dlen, &sig);
			fg_signal(&g, &ch[which]);
			break;
		}
		case 4: { /* a raw packet from the guest */
			if (!open[which])
				break;
			uint8_t raw[512];
			uint32_t n = take(&in) % sizeof(raw);
			for (uint32_t k = 0; k < n; k++)
				raw[k] = take(&in);
			bool sig;
			fg_ring_send(&ch[which].send, take(&in) % 12, 0, take32(&in), raw, n, &sig);
			fg_signal(&g, &ch[which]);
			break;
		}
		case 5: /* close / reopen (guest reboot, driver reload) */
			if (open[which]) {
				fg_close(&g, &ch[which]);
				open[which] = false;
			} else if (fg_open(&g, &ch[which], which + 1, gpadl++, 8 + 8 * which, 4, 4) == 0) {
				open[which] = true;
				next_request(&g, &ch[which], &off, &tid);
			}
			break;
		default: /* the guest drains without answering */
			if (open[which])
				next_request(&g, &ch[which], &off, &tid);
			break;
		}
	}
	ic_kvp_pool_lookup(kvp, HV_KVP_POOL_AUTO, "OSName");
	fg_free(&g);
	ic_kvp_free(kvp);
	ic_vss_free(vss);
	ic_fcopy_free(fc);
	return 0;
}
