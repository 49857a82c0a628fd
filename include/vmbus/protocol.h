/* VMBus wire formats: the channel-management messages carried in SynIC messages, the ring
 * buffer control page, and the packets inside rings. Layouts and names follow Linux
 * include/linux/hyperv.h (the client we serve); every struct is packed and size-checked. */
#ifndef VIRIDIAN_VMBUS_PROTOCOL_H
#define VIRIDIAN_VMBUS_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "hv/hvdef.h"

/* Protocol versions: major << 16 | minor, each named after the Windows release that introduced it */
#define VMBUS_MAKE_VERSION(maj, min) (((uint32_t)(maj) << 16) | (uint32_t)(min))
#define VERSION_WS2008     VMBUS_MAKE_VERSION(0, 13)
#define VERSION_WIN7       VMBUS_MAKE_VERSION(1, 1)
#define VERSION_WIN8       VMBUS_MAKE_VERSION(2, 4)
#define VERSION_WIN8_1     VMBUS_MAKE_VERSION(3, 0)
#define VERSION_WIN10      VMBUS_MAKE_VERSION(4, 0)
#define VERSION_WIN10_V4_1 VMBUS_MAKE_VERSION(4, 1) /* Windows 10 RS3: MODIFYCHANNEL */
#define VERSION_WIN10_V5   VMBUS_MAKE_VERSION(5, 0) /* INITIATE_CONTACT on connection id 4, msg_conn_id */
#define VERSION_WIN10_V5_1 VMBUS_MAKE_VERSION(5, 1) /* Windows 10 RS4 */
#define VERSION_WIN10_V5_2 VMBUS_MAKE_VERSION(5, 2) /* Windows Server 2019 */
#define VERSION_WIN10_V5_3 VMBUS_MAKE_VERSION(5, 3) /* Windows Server 2022: MODIFYCHANNEL_RESPONSE */

/* SynIC plumbing */
#define VMBUS_MESSAGE_CONNECTION_ID   1u   /* guest -> host control messages (< 5.0; and our msg_conn_id) */
#define VMBUS_EVENT_CONNECTION_ID     2u   /* pre-Win8 shared interrupt page signal (accepted, ignored) */
#define VMBUS_MONITOR_CONNECTION_ID   3u
#define VMBUS_MESSAGE_CONNECTION_ID_4 4u   /* INITIATE_CONTACT for version >= 5.0 */
#define VMBUS_MESSAGE_SINT            2u   /* host -> guest messages and channel events */
#define VMBUS_MESSAGE_TYPE            1u   /* SynIC message type of every VMBus message (both ways) */
/* Connection id a guest signals (HvSignalEvent) for channel relid r; given in each offer.
 * Our choice (any id the hypervisor does not use for something else works). */
#define VMBUS_CHANNEL_CONNECTION_ID_BASE 0x10000u
#define VMBUS_MAX_MESSAGE_SIZE        HV_MESSAGE_PAYLOAD_MAX /* 240 */
#define VMBUS_EVENT_FLAGS_COUNT       2048u /* relids are flags in a SINT's 2048-bit event page */

#define VMBUS_PAGE_SIZE  4096u
#define VMBUS_PAGE_SHIFT 12

/* NTSTATUS values the host returns in *_RESULT / GPADL_CREATED (Linux tests for != 0) */
#define VMBUS_STATUS_SUCCESS      0x00000000u
#define VMBUS_STATUS_UNSUCCESSFUL 0xC0000001u

/* A GUID as it is laid out on the wire (Windows mixed endian: 32/16/16-bit fields little endian). */
struct vmbus_guid {
	uint8_t b[16];
} __attribute__((packed));
#define VMBUS_GUID_INIT(a, b_, c, d0, d1, d2, d3, d4, d5, d6, d7)                          \
	((struct vmbus_guid){{(uint8_t)(a), (uint8_t)((a) >> 8), (uint8_t)((a) >> 16),       \
			      (uint8_t)((a) >> 24), (uint8_t)(b_), (uint8_t)((b_) >> 8),      \
			      (uint8_t)(c), (uint8_t)((c) >> 8), (d0), (d1), (d2), (d3), (d4), \
			      (d5), (d6), (d7)}})

/* Channel message types (struct vmbus_channel_message_header.msgtype) */
#define CHANNELMSG_INVALID                0
#define CHANNELMSG_OFFERCHANNEL           1
#define CHANNELMSG_RESCIND_CHANNELOFFER   2
#define CHANNELMSG_REQUESTOFFERS          3
#define CHANNELMSG_ALLOFFERS_DELIVERED    4
#define CHANNELMSG_OPENCHANNEL            5
#define CHANNELMSG_OPENCHANNEL_RESULT     6
#define CHANNELMSG_CLOSECHANNEL           7
#define CHANNELMSG_GPADL_HEADER           8
#define CHANNELMSG_GPADL_BODY             9
#define CHANNELMSG_GPADL_CREATED          10
#define CHANNELMSG_GPADL_TEARDOWN         11
#define CHANNELMSG_GPADL_TORNDOWN         12
#define CHANNELMSG_RELID_RELEASED         13
#define CHANNELMSG_INITIATE_CONTACT       14
#define CHANNELMSG_VERSION_RESPONSE       15
#define CHANNELMSG_UNLOAD                 16
#define CHANNELMSG_UNLOAD_RESPONSE        17
#define CHANNELMSG_TL_CONNECT_REQUEST     21
#define CHANNELMSG_MODIFYCHANNEL          22 /* 4.1+ */
#define CHANNELMSG_TL_CONNECT_RESULT      23
#define CHANNELMSG_MODIFYCHANNEL_RESPONSE 24 /* 5.3+: the guest waits for it */
#define CHANNELMSG_COUNT                  25

struct vmbus_channel_message_header {
	uint32_t msgtype; /* CHANNELMSG_* */
	uint32_t padding;
} __attribute__((packed));

/* INITIATE_CONTACT (guest -> host): the first message; the guest proposes one version per message,
 * newest first, until the host says version_supported = 1. */
struct vmbus_channel_initiate_contact {
	struct vmbus_channel_message_header header;
	uint32_t vmbus_version_requested;
	uint32_t target_vcpu;      /* VP the host sends every control message to */
	union {
		uint64_t interrupt_page; /* < 5.0: GPA of the shared interrupt page */
		struct {                 /* >= 5.0 */
			uint8_t msg_sint;    /* SINT for host messages (Linux: VMBUS_MESSAGE_SINT) */
			uint8_t msg_vtl;
			uint8_t reserved[2];
			uint32_t feature_flags; /* 5.3+ */
		} __attribute__((packed));
	};
	uint64_t monitor_page1;    /* parent->child and child->parent monitor pages (we set monitor_allocated = 0) */
	uint64_t monitor_page2;
} __attribute__((packed));

/* VERSION_RESPONSE (host -> guest) */
struct vmbus_channel_version_response {
	struct vmbus_channel_message_header header;
	uint8_t version_supported; /* 1: accepted; 0: the guest tries its next older version */
	uint8_t connection_state;  /* 0 */
	uint16_t padding;
	uint32_t msg_conn_id;      /* 5.0+: connection id for every later guest -> host message */
} __attribute__((packed));

/* The offer proper */
#define VMBUS_MAX_USER_DEFINED_BYTES      120
#define VMBUS_MAX_PIPE_USER_DEFINED_BYTES 116
struct vmbus_channel_offer {
	struct vmbus_guid if_type;     /* class: what kind of device (driver match) */
	struct vmbus_guid if_instance; /* this device */
	uint64_t reserved1;
	uint64_t reserved2;
	uint16_t chn_flags;            /* VMBUS_CHANNEL_* */
	uint16_t mmio_megabytes;
	union {
		uint8_t user_def[VMBUS_MAX_USER_DEFINED_BYTES];
		struct {
			uint32_t pipe_mode;  /* VMBUS_PIPE_TYPE_* when chn_flags has NAMED_PIPE_MODE */
			uint8_t user_def[VMBUS_MAX_PIPE_USER_DEFINED_BYTES];
		} __attribute__((packed)) pipe;
	} u;
	uint16_t sub_channel_index;    /* 0: primary channel; n: n-th sub-channel of the same device */
	uint16_t reserved3;
} __attribute__((packed));

/* Offer flags (chn_flags) */
#define VMBUS_CHANNEL_ENUMERATE_DEVICE_INTERFACE     0x0001
#define VMBUS_CHANNEL_SERVER_SUPPORTS_TRANSFER_PAGES 0x0002
#define VMBUS_CHANNEL_SERVER_SUPPORTS_GPADLS         0x0004
#define VMBUS_CHANNEL_NAMED_PIPE_MODE                0x0010
#define VMBUS_CHANNEL_LOOPBACK_OFFER                 0x0100
#define VMBUS_CHANNEL_PARENT_OFFER                   0x0200
#define VMBUS_CHANNEL_REQUEST_MONITORED_NOTIFICATION 0x0400
#define VMBUS_CHANNEL_TLNPI_PROVIDER_OFFER           0x2000
#define VMBUS_PIPE_TYPE_BYTE    0x00000000u
#define VMBUS_PIPE_TYPE_MESSAGE 0x00000004u

/* OFFERCHANNEL (host -> guest) */
struct vmbus_channel_offer_channel {
	struct vmbus_channel_message_header header;
	struct vmbus_channel_offer offer;
	uint32_t child_relid;        /* channel id: 1..2047, the event flag the host sets for it */
	uint8_t monitorid;
	uint8_t monitor_allocated;   /* bit 0; we send 0: the guest signals with HvSignalEvent(connection_id) */
	uint16_t is_dedicated_interrupt; /* bit 0 */
	uint32_t connection_id;      /* what the guest passes to HvSignalEvent for this channel */
} __attribute__((packed));

/* RESCIND_CHANNELOFFER (host -> guest); the guest answers RELID_RELEASED once it let go */
struct vmbus_channel_rescind_offer {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
} __attribute__((packed));

struct vmbus_channel_relid_released {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
} __attribute__((packed));

/* OPENCHANNEL (guest -> host). The ring GPADL holds the guest->host ring first (pages
 * [0, downstream_ringbuffer_pageoffset)), then the host->guest ring; each ring is one control
 * page (struct vmbus_ring_header) followed by its data pages. */
struct vmbus_channel_open_channel {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t openid;             /* echoed in the result */
	uint32_t ringbuffer_gpadlhandle;
	uint32_t target_vp;          /* VP to signal for host -> guest events */
	uint32_t downstream_ringbuffer_pageoffset;
	uint8_t userdata[VMBUS_MAX_USER_DEFINED_BYTES];
} __attribute__((packed));

struct vmbus_channel_open_result {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t openid;
	uint32_t status;             /* VMBUS_STATUS_* */
} __attribute__((packed));

/* CLOSECHANNEL (guest -> host); no reply */
struct vmbus_channel_close_channel {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
} __attribute__((packed));

/* A GPA range: byte_count bytes starting byte_offset into the first of the pages in pfn_array;
 * the number of PFNs is implied: ceil((byte_offset + byte_count) / 4096). */
struct gpa_range {
	uint32_t byte_count;
	uint32_t byte_offset;
	uint64_t pfn_array[];
} __attribute__((packed));

/* GPADL_HEADER (guest -> host): starts describing a GPADL (guest physical address descriptor list).
 * The ranges form a byte stream of range_buflen bytes (rangecount struct gpa_range with their PFNs);
 * what does not fit here follows in GPADL_BODY messages. The host answers GPADL_CREATED once all
 * range_buflen bytes arrived. */
struct vmbus_channel_gpadl_header {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t gpadl;              /* handle, chosen by the guest */
	uint16_t range_buflen;
	uint16_t rangecount;
	struct gpa_range range[];
} __attribute__((packed));

struct vmbus_channel_gpadl_body {
	struct vmbus_channel_message_header header;
	uint32_t msgnumber;          /* not set by Linux; ignored */
	uint32_t gpadl;
	uint64_t pfn[];              /* continuation of the range byte stream */
} __attribute__((packed));

struct vmbus_channel_gpadl_created {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t gpadl;
	uint32_t creation_status;    /* VMBUS_STATUS_* */
} __attribute__((packed));

struct vmbus_channel_gpadl_teardown {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t gpadl;
} __attribute__((packed));

struct vmbus_channel_gpadl_torndown {
	struct vmbus_channel_message_header header;
	uint32_t gpadl;
} __attribute__((packed));

/* UNLOAD / UNLOAD_RESPONSE / REQUESTOFFERS / ALLOFFERS_DELIVERED: a bare header */
struct vmbus_channel_unload {
	struct vmbus_channel_message_header header;
} __attribute__((packed));

/* TL_CONNECT_REQUEST (guest -> host, hv_sock connect) */
struct vmbus_channel_tl_connect_request {
	struct vmbus_channel_message_header header;
	struct vmbus_guid guest_endpoint_id;
	struct vmbus_guid host_service_id;
} __attribute__((packed));

/* MODIFYCHANNEL (guest -> host, 4.1+): move a channel's host -> guest events to another VP */
struct vmbus_channel_modifychannel {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t target_vp;
} __attribute__((packed));

struct vmbus_channel_modifychannel_response {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t status;
} __attribute__((packed));

_Static_assert(sizeof(struct vmbus_guid) == 16, "guid");
_Static_assert(sizeof(struct vmbus_channel_message_header) == 8, "message header");
_Static_assert(sizeof(struct vmbus_channel_initiate_contact) == 40, "initiate_contact");
_Static_assert(offsetof(struct vmbus_channel_initiate_contact, monitor_page1) == 24, "initiate_contact");
_Static_assert(sizeof(struct vmbus_channel_version_response) == 16, "version_response");
_Static_assert(offsetof(struct vmbus_channel_version_response, msg_conn_id) == 12, "version_response");
_Static_assert(sizeof(struct vmbus_channel_offer) == 176, "offer");
_Static_assert(offsetof(struct vmbus_channel_offer, sub_channel_index) == 172, "offer");
_Static_assert(sizeof(struct vmbus_channel_offer_channel) == 196, "offer_channel");
_Static_assert(offsetof(struct vmbus_channel_offer_channel, child_relid) == 184, "offer_channel");
_Static_assert(offsetof(struct vmbus_channel_offer_channel, connection_id) == 192, "offer_channel");
_Static_assert(sizeof(struct vmbus_channel_rescind_offer) == 12, "rescind_offer");
_Static_assert(sizeof(struct vmbus_channel_relid_released) == 12, "relid_released");
_Static_assert(sizeof(struct vmbus_channel_open_channel) == 148, "open_channel");
_Static_assert(sizeof(struct vmbus_channel_open_result) == 20, "open_result");
_Static_assert(sizeof(struct vmbus_channel_close_channel) == 12, "close_channel");
_Static_assert(sizeof(struct gpa_range) == 8, "gpa_range");
_Static_assert(sizeof(struct vmbus_channel_gpadl_header) == 20, "gpadl_header");
_Static_assert(sizeof(struct vmbus_channel_gpadl_body) == 16, "gpadl_body");
_Static_assert(sizeof(struct vmbus_channel_gpadl_created) == 20, "gpadl_created");
_Static_assert(sizeof(struct vmbus_channel_gpadl_teardown) == 16, "gpadl_teardown");
_Static_assert(sizeof(struct vmbus_channel_gpadl_torndown) == 12, "gpadl_torndown");
_Static_assert(sizeof(struct vmbus_channel_tl_connect_request) == 40, "tl_connect_request");
_Static_assert(sizeof(struct vmbus_channel_modifychannel) == 16, "modifychannel");
_Static_assert(sizeof(struct vmbus_channel_modifychannel_response) == 16, "modifychannel_response");
_Static_assert(sizeof(struct vmbus_channel_offer_channel) <= VMBUS_MAX_MESSAGE_SIZE, "offer fits a message");

/* ---- Ring buffers ----
 * A ring is one control page followed by data pages; indices are byte offsets into the data
 * area (multiples of 8). The writer owns write_index, the reader owns read_index; the ring is
 * empty when they are equal, so a writer always leaves at least 8 bytes free.
 *
 * interrupt_mask: set by the reader while it polls; the writer then does not signal.
 * Otherwise the writer signals after a write that made the ring non-empty
 * (old write_index == read_index).
 *
 * pending_send_sz / feat_pending_send_sz: a writer that finds the ring too full stores the size
 * it needs in pending_send_sz of the ring it writes; the reader, after freeing space, signals
 * the writer when free space crossed from <= pending_send_sz to > pending_send_sz. The feature
 * bit in a ring's control page says its writer will do this (Linux sets it on both rings; we set
 * it on the host -> guest ring). */
struct vmbus_ring_header {
	uint32_t write_index;
	uint32_t read_index;
	uint32_t interrupt_mask;
	uint32_t pending_send_sz;
	uint32_t reserved1[12];
	uint32_t feature_bits;       /* bit 0: feat_pending_send_sz */
	uint8_t reserved2[VMBUS_PAGE_SIZE - 68];
};
#define VMBUS_RING_FEAT_PENDING_SEND_SZ 0x1u
_Static_assert(sizeof(struct vmbus_ring_header) == VMBUS_PAGE_SIZE, "ring header");
_Static_assert(offsetof(struct vmbus_ring_header, pending_send_sz) == 12, "ring header");
_Static_assert(offsetof(struct vmbus_ring_header, feature_bits) == 64, "ring header");

/* Every packet in a ring: descriptor, payload (from offset8 * 8), padding to len8 * 8 bytes, then
 * an 8-byte trailer holding the writer's write_index before the packet in its upper 32 bits. */
struct vmpacket_descriptor {
	uint16_t type;     /* VM_PKT_* */
	uint16_t offset8;  /* payload offset from the descriptor, in 8-byte units */
	uint16_t len8;     /* whole packet (descriptor + payload + padding), in 8-byte units */
	uint16_t flags;    /* VMBUS_DATA_PACKET_FLAG_* */
	uint64_t trans_id; /* echoed in the completion */
} __attribute__((packed));
#define VMBUS_PKT_TRAILER 8u

#define VM_PKT_INVALID                   0x0
#define VM_PKT_SYNCH                     0x1
#define VM_PKT_ADD_XFER_PAGESET          0x2
#define VM_PKT_RM_XFER_PAGESET           0x3
#define VM_PKT_ESTABLISH_GPADL           0x4
#define VM_PKT_TEARDOWN_GPADL            0x5
#define VM_PKT_DATA_INBAND               0x6
#define VM_PKT_DATA_USING_XFER_PAGES     0x7
#define VM_PKT_DATA_USING_GPADL          0x8
#define VM_PKT_DATA_USING_GPA_DIRECT     0x9
#define VM_PKT_CANCEL_REQUEST            0xa
#define VM_PKT_COMP                      0xb
#define VM_PKT_DATA_USING_ADDITIONAL_PKT 0xc
#define VM_PKT_ADDITIONAL_DATA           0xd

#define VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED 1u

/* Transfer-page packet (host -> guest, netvsc receive buffer): ranges into a pageset */
struct vmtransfer_page_range {
	uint32_t byte_count;
	uint32_t byte_offset;
} __attribute__((packed));

struct vmtransfer_page_packet_header {
	struct vmpacket_descriptor d;
	uint16_t xfer_pageset_id;
	uint8_t sender_owns_set;
	uint8_t reserved;
	uint32_t range_cnt;
	struct vmtransfer_page_range ranges[];
} __attribute__((packed));

/* GPA-direct packet (guest -> host, storvsc/netvsc data): range_cnt struct gpa_range (each with
 * its PFNs) follow this header; the in-band payload starts at d.offset8 * 8. */
struct vmdata_gpa_direct {
	struct vmpacket_descriptor d;
	uint32_t reserved;
	uint32_t range_cnt;
	struct gpa_range range[];
} __attribute__((packed));

_Static_assert(sizeof(struct vmpacket_descriptor) == 16, "vmpacket_descriptor");
_Static_assert(sizeof(struct vmtransfer_page_range) == 8, "vmtransfer_page_range");
_Static_assert(sizeof(struct vmtransfer_page_packet_header) == 24, "vmtransfer_page_packet_header");
_Static_assert(sizeof(struct vmdata_gpa_direct) == 24, "vmdata_gpa_direct");

#endif
