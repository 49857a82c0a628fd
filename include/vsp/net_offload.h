/* The host's half of the transmit offloads netvsp offers the guest: the TCP/UDP checksum the
 * guest left to fill in, and TCP segmentation of a large send (LSOv2) into frames of at most
 * MSS payload bytes. Pure (byte buffers only) so unit tests and the fuzzer reach it; every
 * header field is guest-controlled and checked before use. The output is what a NIC would put
 * on the wire, so every backend (tap, switch port) takes ordinary frames. */
#ifndef VIRIDIAN_VSP_NET_OFFLOAD_H
#define VIRIDIAN_VSP_NET_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_LSO_MAX_SIZE 62780u  /* largest send advertised (Hyper-V's value), headers included */
#define NET_LSO_MIN_MSS  64u     /* smaller MSS values are refused: no one-byte segment storms */
#define NET_LSO_MIN_SEGS 2u

/* Fills the TCP (tcp) or UDP checksum of an Ethernet frame (IPv4 or IPv6) whose transport
 * header starts at l4_off. False, frame untouched, when it is not such a frame or the lengths
 * do not fit. */
bool net_fill_l4_checksum(uint8_t *frame, size_t len, size_t l4_off, bool tcp);

/* Splits a TCP large send (Ethernet + IPv4/IPv6 + TCP, transport header at l4_off) into frames
 * of at most mss payload bytes, none longer than max_frame: fixes the IP length, IPv4 id and
 * header checksum, the TCP sequence number, the flags (FIN/PSH only on the last, CWR only on the
 * first) and the TCP checksum of each, and hands each to emit. seg is scratch of max_frame
 * bytes. Returns the number of frames emitted; 0 (nothing emitted) when malformed. */
unsigned net_segment_tcp(const uint8_t *frame, size_t len, size_t l4_off, uint32_t mss, size_t max_frame,
			 uint8_t *seg, void (*emit)(void *ctx, const uint8_t *frame, uint32_t len), void *ctx);

/* A large send handed on whole, for a backend that takes segmentation metadata (a tap with
 * IFF_VNET_HDR: the host kernel segments, or does not need to for its own sockets). The
 * values of a struct virtio_net_hdr. */
enum { NET_GSO_TCPV4 = 1, NET_GSO_TCPV6 = 4 };
struct net_gso {
	uint8_t gso_type;        /* NET_GSO_TCPV4 / NET_GSO_TCPV6 */
	uint16_t hdr_len;        /* Ethernet + IP + TCP headers */
	uint16_t gso_size;       /* MSS */
	uint16_t csum_start;     /* the TCP header */
	uint16_t csum_offset;    /* of the checksum field in it: 16 */
};
/* Turns a guest's LSOv2 large send (IP length 0, TCP checksum over a length-less pseudo header,
 * as Windows-style LSO has them) into a GSO packet as Linux expects one: IP length set (and the
 * IPv4 header checksum), TCP checksum field = the pseudo-header sum with the length. The same
 * checks as net_segment_tcp; false, frame untouched, when malformed. */
bool net_lso_to_gso(uint8_t *frame, size_t len, size_t l4_off, uint32_t mss, size_t max_frame, struct net_gso *out);

/* Completes a checksum a sender left partial (virtio's NEEDS_CSUM, Linux's CHECKSUM_PARTIAL):
 * the field at start + offset holds the pseudo-header sum; the sum runs from start to the end.
 * False, frame untouched, when the field is outside the frame. */
bool net_complete_csum(uint8_t *frame, size_t len, size_t start, size_t offset);

/* The Internet checksum (RFC 1071) of a buffer, starting from a partial sum; for the tests. */
uint16_t net_checksum(const uint8_t *p, size_t len, uint32_t sum);

#endif
