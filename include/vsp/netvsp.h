/* netvsp: the synthetic network adapter that Linux hv_netvsc (drivers/net/hyperv) drives.
 *
 * NVSP over one VMBus channel (no sub-channels, no vRSS, no offloads):
 *   INIT (versions 1, 2, 4, 5, 6, 6.1: whichever the guest proposes) -> INIT_COMPLETE;
 *   NDIS_CONFIG and NDIS_VERSION are noted; SEND_RECV_BUF names the guest's receive buffer
 *   (a GPADL) and is answered with one section of NETVSP_RECV_SECTION_SIZE pieces;
 *   SEND_SEND_BUF names its send buffer (sections of NETVSP_SEND_SECTION_SIZE);
 *   SEND_RNDIS_PKT carries RNDIS messages in a send-buffer section or GPA-direct pages and is
 *   completed with SEND_RNDIS_PKT_COMPLETE; SUBCHANNEL requests are refused.
 * RNDIS (vsp/rndis.h) answers go to the guest like received frames: copied into a free piece of
 * the receive buffer and announced with a transfer-page packet, which the guest completes when
 * it is done with the piece (the piece is then reused).
 *
 * Data path: guest frames go to the backend's tx callback; the backend hands frames for the guest
 * to netvsp_rx(). Everything (including netvsp_rx, netvsp_set_link, netvsp_get_stats) runs under
 * the VMBus device-thread rule: the caller holds whatever serialises vmbus_server_* calls.
 *
 * Hostile guests: malformed NVSP messages, RNDIS messages and frames are dropped and counted
 * (stats.bad_packets); nothing the guest sends can make the host read or write outside its
 * buffers. A guest that stops completing receive pieces only stalls its own receive path. */
#ifndef VIRIDIAN_VSP_NETVSP_H
#define VIRIDIAN_VSP_NETVSP_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/server.h"
#include "vsp/net_offload.h"

/* hv_netvsc's class GUID (Linux HV_NIC_GUID) */
#define NETVSP_CLASS_GUID \
	VMBUS_GUID_INIT(0xf8615163, 0xdf3e, 0x46c5, 0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e)

/* ---- NVSP wire format (Linux hyperv_net.h names) ---- */
#define NVSP_MSG_TYPE_INIT                     1
#define NVSP_MSG_TYPE_INIT_COMPLETE            2
#define NVSP_MSG1_TYPE_SEND_NDIS_VER           100
#define NVSP_MSG1_TYPE_SEND_RECV_BUF           101
#define NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE  102
#define NVSP_MSG1_TYPE_REVOKE_RECV_BUF         103
#define NVSP_MSG1_TYPE_SEND_SEND_BUF           104
#define NVSP_MSG1_TYPE_SEND_SEND_BUF_COMPLETE  105
#define NVSP_MSG1_TYPE_REVOKE_SEND_BUF         106
#define NVSP_MSG1_TYPE_SEND_RNDIS_PKT          107
#define NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE 108
#define NVSP_MSG2_TYPE_SEND_NDIS_CONFIG        125
#define NVSP_MSG4_TYPE_SWITCH_DATA_PATH        129
#define NVSP_MSG5_TYPE_SUBCHANNEL              133

#define NVSP_STAT_SUCCESS 1
#define NVSP_STAT_FAIL    2

#define NVSP_PROTOCOL_VERSION_1  0x00002u
#define NVSP_PROTOCOL_VERSION_2  0x30002u
#define NVSP_PROTOCOL_VERSION_4  0x40000u
#define NVSP_PROTOCOL_VERSION_5  0x50000u
#define NVSP_PROTOCOL_VERSION_6  0x60000u
#define NVSP_PROTOCOL_VERSION_61 0x60001u

#define NETVSC_RECEIVE_BUFFER_ID 0xcafe  /* xfer_pageset_id of receive transfer-page packets */
#define NETVSP_RECV_SECTION_SIZE 1728u   /* one piece of the receive buffer: a whole frame + header */
#define NETVSP_SEND_SECTION_SIZE 6144u
#define NETVSP_MSG_SIZE          40u     /* NVSP messages we send are padded to this */
#define NETVSP_NO_SECTION        0xFFFFFFFFu

/* The host-side end of the adapter */
struct netvsp_backend {
	/* A frame from the guest (Ethernet header first, no FCS). Called on the device thread. */
	void (*tx)(void *ctx, const uint8_t *frame, uint32_t len);
	/* After netvsp_rx said NETVSP_RX_BUSY: the guest made room (device thread, lock held). May
	 * be NULL; the backend should retry now and then anyway. */
	void (*rx_ready)(void *ctx);
	/* May the guest's next send go out? NULL: always. When it says no, the guest's packets
	 * stay in its ring (the guest stops when that fills) until the backend calls
	 * netvsp_tx_resume: backpressure instead of frames lost on a full queue. */
	bool (*tx_room)(void *ctx);
	/* A guest's large send whole, with its segmentation metadata (include/vsp/net_offload.h).
	 * NULL: netvsp segments it and calls tx for each frame. */
	void (*tx_gso)(void *ctx, const uint8_t *frame, uint32_t len, const struct net_gso *gso);
	void *ctx;
};

struct netvsp_config {
	uint8_t mac[6];
	uint32_t mtu;            /* 0: 1500 */
	uint64_t link_speed_bps; /* 0: 10 Gbit/s */
	uint8_t instance;        /* distinguishes the instance GUIDs of several adapters */
};

struct netvsp_stats {
	uint64_t tx_packets, tx_bytes;   /* guest -> backend */
	uint64_t rx_packets, rx_bytes;   /* backend -> guest */
	uint64_t tx_drops;               /* guest frames not sent (malformed, too big, not set up) */
	uint64_t rx_drops;               /* frames for the guest dropped (receive path not set up, down) */
	uint64_t rx_busy;                /* frames the guest had no room for yet (NETVSP_RX_BUSY) */
	uint64_t rx_coalesced;           /* large segments delivered whole (RSC) */
	uint64_t bad_packets;            /* malformed NVSP / RNDIS messages */
	uint32_t nvsp_version;           /* 0 until INIT */
	bool rndis_initialized;
	bool link_up;
};

struct netvsp;

/* Payload version of the adapter's STATE_SECTION_NETVSP section (docs/netvsp.md). */
#define NETVSP_STATE_VERSION 1

/* Register the adapter on srv (before the guest connects). Returns NULL on failure. */
struct netvsp *netvsp_new(struct vmbus_server *srv, const struct netvsp_config *cfg,
			  const struct netvsp_backend *backend);
void netvsp_free(struct netvsp *n);
/* A frame for the guest: NETVSP_RX_OK (announced); NETVSP_RX_DROPPED (counted in rx_drops: the
 * guest has not set up its receive path, the link is down, the length is wrong); NETVSP_RX_BUSY
 * (every receive piece is in use or the ring is full: keep the frame and offer it again after
 * rx_ready, instead of losing it -- TCP would have to retransmit). */
enum { NETVSP_RX_OK = 0, NETVSP_RX_DROPPED = -1, NETVSP_RX_BUSY = -2 };
int netvsp_rx(struct netvsp *n, const uint8_t *frame, uint32_t len);

/* What a backend knows about a frame for the guest beyond its bytes (a tap's virtio_net_hdr). */
#define NETVSP_RX_GSO_MAX 65550u   /* a 64 KiB IP packet and its Ethernet header */
struct netvsp_rx_meta {
	bool needs_csum;         /* the TCP/UDP checksum is partial: completed here */
	uint16_t csum_start, csum_offset;
	uint8_t gso_type;        /* 0, NET_GSO_TCPV4, NET_GSO_TCPV6: a TCP segment above the MTU */
	uint16_t gso_size;       /* its MSS */
};
/* netvsp_rx for such a frame (frame is changed: its checksum completed). A large TCP segment
 * goes to the guest whole as a coalesced receive (RSC) when the guest turned that on, else cut
 * into MSS-sized frames; either only when there is room for all of it (else NETVSP_RX_BUSY). */
int netvsp_rx_meta(struct netvsp *n, uint8_t *frame, uint32_t len, const struct netvsp_rx_meta *meta);
/* Link up/down as the guest sees it (media connect status; an indication when it changes). */
void netvsp_set_link(struct netvsp *n, bool up);
/* The backend has room again after tx_room said no: the guest's waiting sends are processed. */
void netvsp_tx_resume(struct netvsp *n);
void netvsp_get_stats(const struct netvsp *n, struct netvsp_stats *out);

#endif
