/* The VMBus server: the host end of the channel-management protocol that Linux drivers/hv
 * (hv_vmbus) speaks: version negotiation, offers, GPADLs, open/close, rescind, unload.
 *
 * It is pure logic over an interface to the worker (struct vmbus_host_ops): guest memory is
 * reached only through gpa_to_hva, the guest is reached only through SynIC messages and event
 * flags. Tests drive it with an in-process fake guest.
 *
 * Concurrency contract: NOT thread-safe, by design. The worker calls every vmbus_server_* entry
 * point, and every device callback runs, on one device thread (vCPU threads hand HvPostMessage /
 * HvSignalEvent over to it). No locks are taken here.
 *
 * Wiring facts for the worker:
 * - HvPostMessage(connection id 1 or 4) -> vmbus_server_post_message(); other ids get
 *   HV_STATUS_INVALID_CONNECTION_ID. Linux posts INITIATE_CONTACT on id 4 for versions >= 5.0
 *   and id 1 below; later messages on the msg_conn_id we return (1).
 * - HvSignalEvent(connection id) -> vmbus_server_signal_event(). A channel's id is
 *   VMBUS_CHANNEL_CONNECTION_ID_BASE + relid (carried in its offer).
 * - Host -> guest messages: post_message(vp = INITIATE_CONTACT target_vcpu, sint 2,
 *   type VMBUS_MESSAGE_TYPE (1), payload = a vmbus_channel_* struct).
 * - Host -> guest channel events: signal_event(vp = OPENCHANNEL target_vp, sint 2, flag = relid).
 * - VP numbers come from the guest: the server checks them against vmbus_server_set_vp_count(). */
#ifndef VIRIDIAN_VMBUS_SERVER_H
#define VIRIDIAN_VMBUS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/hvdef.h"
#include "vmbus/channel.h"

struct vmbus_host_ops {
	/* Host address of guest-physical [gpa, gpa+len), or NULL if any byte is outside guest RAM. */
	void *(*gpa_to_hva)(void *opaque, uint64_t gpa, uint64_t len);
	/* Queue a SynIC message (type, payload) for virtual processor vp on SINT sint; the SynIC
	 * delivers it when the slot is free. Returns 0, or -1 if the queue is full (the server keeps
	 * the message and retries on its next entry or on vmbus_server_flush()). */
	int (*post_message)(void *opaque, uint32_t vp, uint32_t sint, uint32_t message_type,
			    const void *payload, uint32_t len);
	/* Set event flag `flag` in vp's SIEF page for SINT sint and raise that SINT if it was clear. */
	void (*signal_event)(void *opaque, uint32_t vp, uint32_t sint, uint32_t flag);
	/* Optional debug check (NULL normally): the host starts (on) or stops writing the guest RAM
	 * at [hva, hva + len) (from gpa_to_hva) that the guest granted it: an open channel's
	 * host->guest ring and guest->host control page, GPADL bytes a VSP declared writable. */
	void (*grant)(void *opaque, void *hva, uint64_t len, bool on);
	/* Optional log line (no trailing newline). */
	void (*log)(void *opaque, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
};

struct vmbus_server;

#define VMBUS_MAX_DEVICES 128 /* relids 1..128 */
/* Sub-channels (vmbus_chan_offer_subchannels) take relids VMBUS_MAX_DEVICES + 1 ..
 * VMBUS_MAX_RELIDS, at most VMBUS_MAX_SUBCHANNELS per device. */
#define VMBUS_MAX_SUBCHANNELS 64
#define VMBUS_MAX_RELIDS (VMBUS_MAX_DEVICES + 512)

struct vmbus_server *vmbus_server_new(const struct vmbus_host_ops *ops, void *opaque);
void vmbus_server_free(struct vmbus_server *srv);
/* Number of VPs: target_vcpu / target_vp at or above it are refused. Default: no check. */
void vmbus_server_set_vp_count(struct vmbus_server *srv, uint32_t vp_count);

/* Register a device before the guest connects; it is offered on REQUESTOFFERS. ops must stay
 * valid for the server's life. Returns its channel (relid = registration order + 1) or NULL. */
struct vmbus_chan *vmbus_server_add_device(struct vmbus_server *srv, const struct vmbus_device_ops *ops,
					   void *device_ctx);

/* HvPostMessage: returns HV_STATUS_SUCCESS, HV_STATUS_INVALID_CONNECTION_ID (not a VMBus message
 * connection) or HV_STATUS_INVALID_PARAMETER (payload_size > 240, message_type 0 or with bit 31).
 * Malformed VMBus messages inside a valid post are answered by the protocol (error statuses) or
 * dropped with a log line; they never fail the hypercall. */
uint16_t vmbus_server_post_message(struct vmbus_server *srv, uint32_t vp, const struct hv_input_post_message *in);
/* HvSignalEvent: HV_STATUS_SUCCESS or HV_STATUS_INVALID_CONNECTION_ID. Runs the channel's
 * on_packets callback when it is open. */
uint16_t vmbus_server_signal_event(struct vmbus_server *srv, uint32_t vp, uint32_t connection_id,
				   uint16_t flag_number);
/* Retry host -> guest messages that post_message could not queue. */
void vmbus_server_flush(struct vmbus_server *srv);
/* Guest reboot: close every channel, drop every GPADL, forget the connection. Devices stay
 * registered and are offered again after the next INITIATE_CONTACT + REQUESTOFFERS. */
void vmbus_server_reset(struct vmbus_server *srv);

/* ---- Saved state (include/state/savedstate.h) ----
 * Save, with every vmbus_server_* entry excluded (the caller's lock), the vCPUs paused and each
 * device drained: the VMBUS section (connection, version, message target and SINT, monitor
 * pages, every channel's state, target VP and ring GPADL, every GPADL, host -> guest messages
 * still queued), then for each open channel whose device has a state_section, a section of that
 * type with instance = relid written by the device's save(). -EBUSY if such a device has no
 * save. Restore onto a new server with the same devices added in the same order, before any
 * vCPU runs: vmbus_server_restore() with the VMBUS section, vmbus_server_restore_device() with
 * each device section, then vmbus_server_restore_finish(), which fails if an open channel's
 * device section is missing and otherwise signals both sides of every open channel once (a
 * wake-up in flight at the save is not lost). On failure the server is reset (the caller gives
 * the restore up; a device's close() runs only for channels whose restore() succeeded); errors
 * are negative errnos with state_last_error() set. Guest RAM must be restored before
 * vmbus_server_restore(): it maps the open channels' rings, whose indices are in guest RAM. */
struct state_writer;
struct state_section;
int vmbus_server_save(struct vmbus_server *srv, struct state_writer *w);
int vmbus_server_restore(struct vmbus_server *srv, const struct state_section *sec);
int vmbus_server_restore_device(struct vmbus_server *srv, const struct state_section *sec);
int vmbus_server_restore_finish(struct vmbus_server *srv);

/* Negotiated version (0 while not connected). */
uint32_t vmbus_server_version(const struct vmbus_server *srv);
/* The channels, for listing: devices at relids 1..VMBUS_MAX_DEVICES, sub-channels above (up to
 * VMBUS_MAX_RELIDS); NULL where none. */
struct vmbus_chan *vmbus_server_channel(struct vmbus_server *srv, uint32_t relid);

#endif
