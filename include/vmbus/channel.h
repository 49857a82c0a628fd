/* The device API: what a VSP (virtualization service provider: integration services, storvsp,
 * netvsp) sees of VMBus. A VSP is one file that fills a struct vmbus_device_ops (class and
 * instance GUIDs, callbacks) and registers it with vmbus_server_add_device(); it then talks to
 * the guest's VSC through its channel with vmbus_chan_recv() / vmbus_chan_send().
 *
 * Threading: all callbacks run on the worker's device thread, inside vmbus_server_* calls, and a
 * VSP may call vmbus_chan_* only from that thread (see vmbus/server.h).
 *
 * Sub-channels (several channels per device, as storvsc/netvsc use for one queue per vCPU): the
 * VSP offers them at run time with vmbus_chan_offer_subchannels() when its guest driver asks (in
 * its own protocol). Each is a channel of its own (relid, connection id, rings, target VP) with
 * the same class/instance GUIDs and sub_channel_index 1..n; the device's ops serve all of them
 * (callbacks receive the channel: vmbus_chan_subchannel_index() tells which, per-channel state
 * goes in vmbus_chan_set_priv()). */
#ifndef VIRIDIAN_VMBUS_CHANNEL_H
#define VIRIDIAN_VMBUS_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmbus/protocol.h"

struct vmbus_chan;
struct state_writer;
struct state_cursor;

struct vmbus_device_ops {
	const char *name;               /* for log lines */
	struct vmbus_guid class_id;     /* offer if_type: selects the guest driver */
	struct vmbus_guid instance_id;  /* offer if_instance: unique per device */
	uint16_t chn_flags;             /* offer VMBUS_CHANNEL_* flags (usually 0) */
	uint16_t mmio_megabytes;
	uint8_t user_def[VMBUS_MAX_USER_DEFINED_BYTES]; /* offer user-defined bytes */
	/* The guest opened the channel (rings mapped). Return 0 to accept; anything else fails the
	 * open (OPENCHANNEL_RESULT with an error status). Do not send from here (the guest has not
	 * seen the result yet): use opened(). Optional. */
	int (*open)(struct vmbus_chan *chan, void *device_ctx);
	/* Called after OPENCHANNEL_RESULT (success) was posted: the place to send first packets
	 * (e.g. an integration service's version negotiation). Optional. */
	void (*opened)(struct vmbus_chan *chan, void *device_ctx);
	/* The channel closed (guest CLOSECHANNEL, rescind, UNLOAD or reset); the rings are gone
	 * after this returns. Optional. */
	void (*close)(struct vmbus_chan *chan, void *device_ctx);
	/* The guest signalled the channel: new packets, or space freed that a full send waited
	 * for. Drain with vmbus_chan_recv() until it returns 0. */
	void (*on_packets)(struct vmbus_chan *chan, void *device_ctx);

	/* Saved state (include/state/savedstate.h, vmbus_server_save/restore). state_section is the
	 * section type of the device's per-channel state (STATE_SECTION_STORVSP ...; 0: the device
	 * keeps none beyond what the server saves), state_version the payload version it writes.
	 * State of the device as a whole goes with its primary channel. */
	uint32_t state_section;
	uint16_t state_version;
	/* Writes this open channel's state as the payload of the section the server began (the
	 * server ends it). Called with the VM quiesced: vCPUs paused, the device drained. Returns 0,
	 * or a negative errno after state_fail() (e.g. -EBUSY: work in flight that cannot be saved). */
	int (*save)(struct vmbus_chan *chan, void *device_ctx, struct state_writer *w);
	/* Instead of open() when a saved VM is restored: the channel is open again with its rings
	 * mapped and the guest's RAM restored; rebuild the device's state for it from the payload
	 * saved (version: the section's). Sends nothing (the rings hold what they held). Hostile
	 * input: check everything; 0, or a negative errno after state_fail(). */
	int (*restore)(struct vmbus_chan *chan, void *device_ctx, uint16_t version, struct state_cursor *c);
};

/* A received packet, copied out of the ring (valid until the next vmbus_chan_recv on the channel). */
struct vmbus_packet {
	uint16_t type;          /* VM_PKT_* */
	uint16_t flags;         /* VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED ... */
	uint64_t trans_id;
	const uint8_t *data;    /* in-band payload: bytes offset8*8 .. len8*8 of the packet */
	uint32_t data_len;
	const uint8_t *raw;     /* the whole packet, descriptor first */
	uint32_t raw_len;
	uint32_t range_count;   /* VM_PKT_DATA_USING_GPA_DIRECT: number of GPA ranges (checked) */
};

/* One GPA range of a GPA-direct packet. */
struct vmbus_gpa_range {
	uint32_t byte_count;
	uint32_t byte_offset;   /* into the first page; < 4096 */
	uint32_t pfn_count;     /* ceil((byte_offset + byte_count) / 4096) */
	const uint8_t *pfns;    /* pfn_count little-endian uint64 PFNs (unaligned) */
};

/* Return codes of vmbus_chan_recv/send besides 0/1 */
#define VMBUS_CHAN_FULL   (-2) /* ring full: retry from on_packets, the guest signals when room frees up */
#define VMBUS_CHAN_BADPKT (-6) /* a malformed packet was consumed and dropped (the channel stays open) */
#define VMBUS_CHAN_CLOSED (-7) /* the channel is not open, or was shut because the guest corrupted it */
#define VMBUS_CHAN_TOOBIG (-5) /* can never fit the ring */

/* Receive the next packet. Returns 1 (pkt filled), 0 (ring empty; the guest has been told about
 * freed space if it waits), VMBUS_CHAN_BADPKT (a GPA-direct header did not fit; skipped), or
 * VMBUS_CHAN_CLOSED. A corrupt ring (bad write_index, impossible packet lengths) closes the
 * channel: the server rescinds it and the guest sees the device go away. */
int vmbus_chan_recv(struct vmbus_chan *chan, struct vmbus_packet *pkt);

/* Send an in-band packet: descriptor (type, flags, trans_id) + data. Returns 0, VMBUS_CHAN_FULL,
 * VMBUS_CHAN_TOOBIG or VMBUS_CHAN_CLOSED. Signals the guest when the ring rules call for it. */
int vmbus_chan_send(struct vmbus_chan *chan, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const void *data, uint32_t len);
/* Send a packet with extra header bytes between the descriptor and the payload (e.g. a transfer-
 * page packet's pageset id and ranges); offset8 then points past them. ext_len must be a multiple of 8. */
int vmbus_chan_send_ext(struct vmbus_chan *chan, uint16_t type, uint16_t flags, uint64_t trans_id,
			const void *ext, uint32_t ext_len, const void *data, uint32_t len);
/* Completion of a request (VM_PKT_COMP, same trans_id). */
int vmbus_chan_complete(struct vmbus_chan *chan, uint64_t trans_id, const void *data, uint32_t len);
/* Free bytes in the host->guest ring (the next send of n bytes fits if n + 24 rounded up < this). */
uint32_t vmbus_chan_send_space(const struct vmbus_chan *chan);

/* GPA-direct packets: range i of pkt (i < pkt->range_count). Returns 0 or -1. */
int vmbus_packet_gpa_range(const struct vmbus_packet *pkt, uint32_t i, struct vmbus_gpa_range *out);
/* Copy between a host buffer and bytes [off, off+len) of a GPA range (pages looked up and
 * checked against guest RAM one by one). Return 0, or -1 if out of the range or outside RAM. */
int vmbus_chan_copy_from_range(struct vmbus_chan *chan, const struct vmbus_gpa_range *range,
			       uint64_t off, void *dst, size_t len);
int vmbus_chan_copy_to_range(struct vmbus_chan *chan, const struct vmbus_gpa_range *range,
			     uint64_t off, const void *src, size_t len);

/* Whole-GPADL access (netvsp's receive and send buffers arrive as GPADLs the guest created on
 * this channel and names by id in a protocol message). vmbus_chan_gpadl_map() gives the GPADL's
 * page numbers in order (every one checked to be guest RAM when the GPADL was created) and their
 * count; byte b of the buffer is at offset b % 4096 of page (*pfns)[b / 4096]. Returns 0, or -1
 * if id names no complete GPADL of this channel made of whole pages (a buffer with a partial
 * page would have the host write bytes the guest did not grant). The array stays valid only until control
 * returns to the server (the guest may tear the GPADL down with its next message): look it up
 * again each time rather than keeping it. The copy helpers copy bytes [off, off + len) of the
 * GPADL's buffer; they return 0, or -1 (unknown GPADL, out of its bounds, or outside RAM). */
int vmbus_chan_gpadl_map(struct vmbus_chan *chan, uint32_t gpadl_id, const uint64_t **pfns, uint32_t *count);
int vmbus_chan_gpadl_copy_to(struct vmbus_chan *chan, uint32_t gpadl_id, uint64_t off, const void *src,
			     size_t len);
int vmbus_chan_gpadl_copy_from(struct vmbus_chan *chan, uint32_t gpadl_id, uint64_t off, void *dst,
			       size_t len);
/* The VSP writes bytes [0, bytes) of the GPADL's buffer from now on (bytes = 0: no longer), for
 * the host's grant check (struct vmbus_host_ops.grant); the grant ends with the GPADL at the
 * latest. Returns 0, or -1 if id names no complete GPADL of this channel. */
int vmbus_chan_gpadl_writable(struct vmbus_chan *chan, uint32_t gpadl_id, uint64_t bytes);

/* Shut the channel from the host side (e.g. the VSP saw a protocol violation): it is closed for
 * the VSP now and the offer is rescinded to the guest. */
void vmbus_chan_fail(struct vmbus_chan *chan, const char *why);

/* Offer sub-channels of the device whose primary channel is `primary` (which must be open) so
 * that it has n of them (indices 1..n; ones that exist already are kept). n is capped at
 * VMBUS_MAX_SUBCHANNELS and by free relids. Returns the number the device has now, or -1
 * (not a primary, not open, not connected). They live until the primary closes (then they are
 * rescinded; the guest releases them), the guest unloads or reconnects, or the server resets. */
int vmbus_chan_offer_subchannels(struct vmbus_chan *primary, uint16_t n);
/* Number of sub-channels the device of `chan` has (offered, open or being rescinded). */
uint16_t vmbus_chan_subchannel_count(const struct vmbus_chan *chan);

/* Accessors */
uint32_t vmbus_chan_relid(const struct vmbus_chan *chan);
uint16_t vmbus_chan_subchannel_index(const struct vmbus_chan *chan);
bool vmbus_chan_is_open(const struct vmbus_chan *chan);
void *vmbus_chan_device_ctx(const struct vmbus_chan *chan);
void vmbus_chan_set_priv(struct vmbus_chan *chan, void *priv);
void *vmbus_chan_priv(const struct vmbus_chan *chan);
/* The userdata bytes of the guest's OPENCHANNEL (120 bytes; hv_sock and pipes use them). */
const uint8_t *vmbus_chan_open_userdata(const struct vmbus_chan *chan);
/* Negotiated VMBus protocol version (VERSION_*). */
uint32_t vmbus_chan_protocol_version(const struct vmbus_chan *chan);
/* The device behind the channel: its name for logs and its class GUID. */
const char *vmbus_chan_device_name(const struct vmbus_chan *chan);
struct vmbus_guid vmbus_chan_class_id(const struct vmbus_chan *chan);
uint32_t vmbus_chan_target_vp(const struct vmbus_chan *chan);

#endif
