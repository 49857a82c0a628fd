/* RNDIS as Linux drivers/net/hyperv (rndis_filter.c) speaks it over NVSP: the pure layer of
 * netvsp. It parses what the guest sends (control requests, data packets, several messages
 * batched in one buffer) and builds what the host answers (INIT/QUERY/SET/KEEPALIVE
 * completions, status indications, the header in front of each received frame). No I/O: every
 * function works on byte buffers, so unit tests and the fuzzer reach it alone.
 *
 * Every length and offset comes from the guest and is checked before use; a malformed message
 * makes the function return an error, never read or write outside the buffers given. */
#ifndef VIRIDIAN_VSP_RNDIS_H
#define VIRIDIAN_VSP_RNDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Message types (rndis_message.ndis_msg_type) */
#define RNDIS_MSG_PACKET       0x00000001u
#define RNDIS_MSG_INIT         0x00000002u
#define RNDIS_MSG_HALT         0x00000003u
#define RNDIS_MSG_QUERY        0x00000004u
#define RNDIS_MSG_SET          0x00000005u
#define RNDIS_MSG_RESET        0x00000006u
#define RNDIS_MSG_INDICATE     0x00000007u
#define RNDIS_MSG_KEEPALIVE    0x00000008u
#define RNDIS_MSG_COMPLETION   0x80000000u
#define RNDIS_MSG_INIT_C       (RNDIS_MSG_INIT | RNDIS_MSG_COMPLETION)
#define RNDIS_MSG_QUERY_C      (RNDIS_MSG_QUERY | RNDIS_MSG_COMPLETION)
#define RNDIS_MSG_SET_C        (RNDIS_MSG_SET | RNDIS_MSG_COMPLETION)
#define RNDIS_MSG_RESET_C      (RNDIS_MSG_RESET | RNDIS_MSG_COMPLETION)
#define RNDIS_MSG_KEEPALIVE_C  (RNDIS_MSG_KEEPALIVE | RNDIS_MSG_COMPLETION)

/* Status codes */
#define RNDIS_STATUS_SUCCESS          0x00000000u
#define RNDIS_STATUS_FAILURE          0xC0000001u
#define RNDIS_STATUS_INVALID_DATA     0xC0010015u
#define RNDIS_STATUS_NOT_SUPPORTED    0xC00000BBu
#define RNDIS_STATUS_MEDIA_CONNECT    0x4001000Bu
#define RNDIS_STATUS_MEDIA_DISCONNECT 0x4001000Cu

/* OIDs the host answers (others: NOT_SUPPORTED) */
#define RNDIS_OID_GEN_SUPPORTED_LIST          0x00010101u
#define RNDIS_OID_GEN_HARDWARE_STATUS         0x00010102u
#define RNDIS_OID_GEN_MEDIA_SUPPORTED         0x00010103u
#define RNDIS_OID_GEN_MEDIA_IN_USE            0x00010104u
#define RNDIS_OID_GEN_MAXIMUM_LOOKAHEAD       0x00010105u
#define RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE      0x00010106u
#define RNDIS_OID_GEN_LINK_SPEED              0x00010107u
#define RNDIS_OID_GEN_CURRENT_PACKET_FILTER   0x0001010Eu
#define RNDIS_OID_GEN_CURRENT_LOOKAHEAD       0x0001010Fu
#define RNDIS_OID_GEN_MAXIMUM_TOTAL_SIZE      0x00010111u
#define RNDIS_OID_GEN_MEDIA_CONNECT_STATUS    0x00010114u
#define RNDIS_OID_GEN_FRIENDLY_NAME           0x00010116u
#define RNDIS_OID_GEN_NETWORK_LAYER_ADDRESSES 0x00010118u
#define RNDIS_OID_GEN_PHYSICAL_MEDIUM         0x00010202u
#define RNDIS_OID_GEN_RECEIVE_SCALE_CAPABILITIES 0x00010203u
#define RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS   0x00010204u
#define RNDIS_OID_802_3_PERMANENT_ADDRESS     0x01010101u
#define RNDIS_OID_802_3_CURRENT_ADDRESS       0x01010102u
#define RNDIS_OID_802_3_MULTICAST_LIST        0x01010103u
#define RNDIS_OID_802_3_MAXIMUM_LIST_SIZE     0x01010104u
#define RNDIS_OID_OFFLOAD_ENCAPSULATION       0x0101010Au
#define RNDIS_OID_TCP_OFFLOAD_PARAMETERS      0xFC01020Cu
#define RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES 0xFC01020Du

#define RNDIS_MEDIA_STATE_CONNECTED    0u
#define RNDIS_MEDIA_STATE_DISCONNECTED 1u
#define RNDIS_PHYSICAL_MEDIUM_802_3    14u
#define NDIS_OBJECT_TYPE_OFFLOAD       0xA7u

#define RNDIS_HEADER_SIZE     8u   /* ndis_msg_type + msg_len */
#define RNDIS_PACKET_SIZE     36u  /* struct rndis_packet after the header */
#define RNDIS_PACKET_HDR_LEN  (RNDIS_HEADER_SIZE + RNDIS_PACKET_SIZE) /* 44: in front of each frame */
#define RNDIS_MAX_RESPONSE    512u /* the longest control answer this layer builds */
#define RNDIS_ETH_MAX_FRAME   1514u /* MTU 1500 + Ethernet header (no FCS) */

/* struct rndis_packet (after the 8-byte header); offsets are from its start */
struct rndis_packet {
	uint32_t data_offset;
	uint32_t data_len;
	uint32_t oob_data_offset;
	uint32_t oob_data_len;
	uint32_t num_oob_data_elements;
	uint32_t per_pkt_info_offset;
	uint32_t per_pkt_info_len;
	uint32_t vc_handle;
	uint32_t reserved;
};
_Static_assert(sizeof(struct rndis_packet) == RNDIS_PACKET_SIZE, "rndis_packet");

/* What the adapter looks like to the guest */
struct rndis_config {
	uint8_t mac[6];
	uint32_t mtu;            /* 1500 */
	uint64_t link_speed_bps; /* reported in units of 100 bps */
	bool tx_offloads;        /* advertise TCP/UDP checksum and LSOv2 on transmit */
};

/* NDIS_OFFLOAD (Linux hyperv_net.h struct ndis_offload): byte offsets of what we fill in. */
#define NDIS_OFFLOAD_IP4_TXENC        4u
#define NDIS_OFFLOAD_IP4_TXCSUM       8u
#define NDIS_OFFLOAD_IP6_TXENC        20u
#define NDIS_OFFLOAD_IP6_TXCSUM       24u
#define NDIS_OFFLOAD_LSOV2_IP4_ENCAP  80u
#define NDIS_OFFLOAD_LSOV2_IP4_MAXSZ  84u
#define NDIS_OFFLOAD_LSOV2_IP4_MINSG  88u
#define NDIS_OFFLOAD_LSOV2_IP6_ENCAP  92u
#define NDIS_OFFLOAD_LSOV2_IP6_MAXSZ  96u
#define NDIS_OFFLOAD_LSOV2_IP6_MINSG  100u
#define NDIS_OFFLOAD_LSOV2_IP6_OPTS   104u
#define NDIS_OFFLOAD_SIZE_6_0         112u  /* up to and with "flags" */
#define NDIS_OFFLOAD_RSC_IP4          144u  /* NDIS 6.30: u8 each */
#define NDIS_OFFLOAD_RSC_IP6          145u
/* NDIS_OFFLOAD_PARAMETERS (struct ndis_offload_params): the RSC switches, 2 = enabled */
#define NDIS_OFFLOAD_PARAMS_RSC_IP4   22u
#define NDIS_OFFLOAD_PARAMS_RSC_IP6   23u
#define NDIS_OFFLOAD_PARAMS_RSC_ENABLED 2u
#define NDIS_OFFLOAD_PARAMS_RSC_DISABLED 1u
#define NDIS_OFFLOAD_ENCAP_8023       0x2u
#define NDIS_TXCSUM_IP4OPT            0x001u
#define NDIS_TXCSUM_TCP4OPT           0x004u
#define NDIS_TXCSUM_TCP4              0x010u
#define NDIS_TXCSUM_UDP4              0x040u
#define NDIS_TXCSUM_IP6EXT            0x001u
#define NDIS_TXCSUM_TCP6OPT           0x004u
#define NDIS_TXCSUM_TCP6              0x010u
#define NDIS_TXCSUM_UDP6              0x040u
#define NDIS_LSOV2_IP6EXT             0x001u
#define NDIS_LSOV2_TCP6OPT            0x004u

/* Guest-visible adapter state the control requests change */
struct rndis_state {
	bool initialized;        /* INIT answered (HALT clears it) */
	bool link_up;
	uint32_t packet_filter;  /* last OID_GEN_CURRENT_PACKET_FILTER set */
	uint32_t lookahead;
	bool rsc;                /* the guest turned on receive segment coalescing (IPv4 and IPv6) */
	uint64_t bad_messages;   /* control messages dropped as malformed */
};

/* The first message of buf: its type and msg_len. Returns 0, or -1 when fewer than 8 bytes are
 * left or msg_len is < 8 or > len (a guest may batch several messages in one buffer: walk them
 * with this, advancing by msg_len). */
int rndis_msg_header(const uint8_t *buf, size_t len, uint32_t *type, uint32_t *msg_len);

/* An RNDIS_MSG_PACKET message (whole, msg_len bytes): where its Ethernet frame is. Returns 0 with
 * *off / *flen (bytes into msg), or -1 if the offsets or lengths do not fit the message, the frame
 * is shorter than an Ethernet header or longer than max_frame. */
int rndis_packet_frame(const uint8_t *msg, uint32_t msg_len, uint32_t max_frame, uint32_t *off, uint32_t *flen);

/* Answer one control message (INIT, QUERY, SET, RESET, KEEPALIVE, HALT; msg_len bytes). Writes the
 * completion to resp (capacity >= RNDIS_MAX_RESPONSE) and returns its length; 0 when the message
 * needs no answer (HALT, an unknown type); -1 when it is malformed (counted in st->bad_messages). */
int rndis_control(const struct rndis_config *cfg, struct rndis_state *st, const uint8_t *msg, uint32_t msg_len,
		  uint8_t *resp, size_t cap);

/* The transmit offload a guest asks for in an RNDIS_MSG_PACKET's per-packet info
 * (TCPIP_CHKSUM_PKTINFO, TCP_LARGESEND_PKTINFO LSOv2); other kinds of per-packet info are
 * ignored. */
#define RNDIS_PPI_CSUM 0u
#define RNDIS_PPI_LSO  2u
struct rndis_tx_offload {
	bool csum_tcp, csum_udp; /* fill that checksum in */
	bool lso;                /* segment, mss payload bytes a frame */
	uint32_t mss;
	uint32_t l4_offset;      /* where the transport header starts in the frame */
};
/* 0 with *out filled (all false: nothing asked), or -1 when the per-packet info area or one
 * of its entries does not fit in the message. */
int rndis_packet_offload(const uint8_t *msg, uint32_t msg_len, struct rndis_tx_offload *out);

/* Receive segment coalescing: one large TCP segment handed to the guest as several RNDIS
 * packets ("fragments") in one VMBus packet, each with an RNDIS_PKTINFO_ID per-packet info
 * saying first/last fragment, and a checksum info saying the checksums are good. */
#define RNDIS_PPI_PKTINFO_ID     1u          /* with the "internal" bit */
#define RNDIS_PPI_INTERNAL       0x80000000u
#define RNDIS_PKTINFO_SUBALLOC   0x01u
#define RNDIS_PKTINFO_1ST_FRAG   0x02u
#define RNDIS_PKTINFO_LAST_FRAG  0x04u
#define NDIS_RXCSUM_TCP_OK       (1u << 3)
#define NDIS_RXCSUM_UDP_OK       (1u << 4)
#define NDIS_RXCSUM_IP_OK        (1u << 5)
#define RNDIS_RSC_PPI_LEN        32u         /* the two entries, 16 bytes each */
/* Header + both per-packet infos for one fragment of data_len bytes (written to out,
 * RNDIS_PACKET_HDR_LEN + RNDIS_RSC_PPI_LEN bytes); flags RNDIS_PKTINFO_*, pkt_id any. Returns the
 * message length. */
uint32_t rndis_build_rsc_header(uint8_t *out, uint32_t data_len, uint8_t flags, uint16_t pkt_id, uint32_t csum_ok);

/* RNDIS_MSG_PACKET header for a frame of frame_len bytes (written to out, 44 bytes; the frame goes
 * right after it). Returns the total message length (44 + frame_len). */
uint32_t rndis_build_packet_header(uint8_t *out, uint32_t frame_len);

/* RNDIS_MSG_INDICATE with status (MEDIA_CONNECT / MEDIA_DISCONNECT), no payload. Writes 20 bytes. */
uint32_t rndis_build_indicate(uint8_t *out, uint32_t status);

#endif
