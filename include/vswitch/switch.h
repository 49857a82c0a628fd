/* The forwarding core of a virtual switch (vmswitch): a learning L2 switch with 802.1Q access
 * VLANs. Pure: no I/O and no clock of its own, so unit tests and the fuzz target drive it.
 *
 * Two kinds of port:
 *  - adapter ports (a VM's network adapter): one MAC, one access VLAN (0 = untagged). Frames
 *    come in and go out untagged; a frame from the adapter with a source MAC other than its
 *    own is dropped unless MAC spoofing is allowed (Hyper-V's default: not allowed), so a guest
 *    cannot steal another's traffic or fill the MAC table. The adapter's MAC is pinned in the
 *    table; with spoofing allowed the port also learns (up to VSWITCH_PORT_LEARN_MAX MACs).
 *  - uplink ports (the host's NIC of an internal switch, the physical NIC of an external one):
 *    a trunk. Untagged frames belong to VLAN 0; 802.1Q-tagged ones to their VLAN id. Frames of
 *    VLAN v > 0 leave an uplink tagged with v. Source MACs are learned.
 * Forwarding: a unicast destination known in the frame's VLAN goes to that port; broadcast,
 * multicast and unknown unicast are flooded to every other port of the VLAN (uplinks carry
 * every VLAN). Learned entries age out after the aging time (pinned ones never). */
#ifndef VIRIDIAN_VSWITCH_SWITCH_H
#define VIRIDIAN_VSWITCH_SWITCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSWITCH_MAX_PORTS       256
#define VSWITCH_FRAME_MIN       14      /* Ethernet header */
#define VSWITCH_FRAME_MAX       9234    /* 9216-byte jumbo payload + header + one tag */
#define VSWITCH_LARGE_MAX       65550   /* a TCP segment of up to 64 KiB with segmentation metadata */
#define VSWITCH_TABLE_SIZE      4096    /* MAC table slots (power of two) */
#define VSWITCH_TABLE_MAX       3072    /* entries kept at most (75 % load) */
#define VSWITCH_PORT_LEARN_MAX  1024    /* learned MACs per port */
#define VSWITCH_DEFAULT_AGING_MS 300000 /* Hyper-V's and 802.1D's default: 300 s */
#define VSWITCH_VLAN_MAX        4094

enum vswitch_port_kind { VSWITCH_PORT_ADAPTER, VSWITCH_PORT_UPLINK };

struct vswitch_port_config {
	enum vswitch_port_kind kind;
	uint8_t mac[6];          /* adapter ports: the adapter's unicast MAC */
	uint16_t vlan;           /* adapter ports: access VLAN id, 0 (untagged) .. 4094 */
	bool mac_spoofing;       /* adapter ports: accept any source MAC (and learn it) */
	char name[64];           /* for status: "<vm>/<adapter>", "host", the uplink's interface */
};

/* From the port's side: in_* = frames the port sent into the switch, out_* = frames the switch
 * handed to the port. */
struct vswitch_port_stats {
	uint64_t in_packets, in_bytes;
	uint64_t out_packets, out_bytes;
	uint64_t in_malformed;   /* shorter than a header, longer than its limit, bad tag */
	uint64_t in_spoofed;     /* source MAC not the adapter's (spoofing not allowed) */
	uint64_t in_vlan_drops;  /* tagged frame from an adapter port, or VLAN id out of range */
	uint64_t out_drops;      /* the port's transport had no room (vswitch_out_drop) */
	uint32_t learned;        /* MACs currently learned on the port */
};

/* Where one ingress frame goes. Every destination gets either the untagged form of the frame or
 * the tagged one (its VLAN > 0 on an uplink); both stay valid until the next vswitch_forward. */
struct vswitch_delivery {
	uint16_t vlan;
	const uint8_t *untagged;
	size_t untagged_len;
	const uint8_t *tagged;   /* NULL unless some destination needs it */
	size_t tagged_len;
	uint16_t nports;
	struct { uint16_t port; bool tagged; } to[VSWITCH_MAX_PORTS];
};

struct vswitch;

struct vswitch *vswitch_new(uint64_t aging_ms);
void vswitch_free(struct vswitch *sw);

/* Adds a port; its id (0 .. VSWITCH_MAX_PORTS-1) or -1 (no room, bad MAC or VLAN, an adapter
 * MAC already pinned by another port in that VLAN). */
int vswitch_port_add(struct vswitch *sw, const struct vswitch_port_config *cfg);
/* Removes a port and forgets every MAC on it. */
void vswitch_port_remove(struct vswitch *sw, unsigned port);
/* Moves an adapter port to another access VLAN (its pinned MAC moves with it). False as for
 * vswitch_port_add. */
bool vswitch_port_set_vlan(struct vswitch *sw, unsigned port, uint16_t vlan);
bool vswitch_port_config(const struct vswitch *sw, unsigned port, struct vswitch_port_config *out);
bool vswitch_port_stats(const struct vswitch *sw, unsigned port, struct vswitch_port_stats *out);

/* One frame from port in_port at time now_ms: learns its source, fills d with the destinations.
 * large: the frame is a TCP segment that comes with segmentation metadata (the port protocol's
 * virtio_net_hdr), allowed up to VSWITCH_LARGE_MAX instead of VSWITCH_FRAME_MAX. Returns the
 * number of destinations (0: dropped or nobody to send to; the reason is counted). */
unsigned vswitch_forward(struct vswitch *sw, unsigned in_port, const uint8_t *frame, size_t len, bool large,
			 uint64_t now_ms, struct vswitch_delivery *d);
/* A frame from port that the caller could not even hand to vswitch_forward (its transport
 * said it was unusable): counted as received and malformed. */
void vswitch_in_malformed(struct vswitch *sw, unsigned port, size_t len);
/* frame with an 802.1Q tag for vlan inserted after the MAC addresses, into out (len + 4 bytes);
 * returns len + 4. */
size_t vswitch_tag(uint8_t *out, const uint8_t *frame, size_t len, uint16_t vlan);

/* The caller could not hand a frame to port (its queue was full). */
void vswitch_out_drop(struct vswitch *sw, unsigned port);

/* Forgets learned MACs older than the aging time. Call about once a second. */
void vswitch_age(struct vswitch *sw, uint64_t now_ms);

struct vswitch_mac_entry {
	uint8_t mac[6];
	uint16_t vlan;
	uint16_t port;
	bool pinned;
	uint64_t age_ms;         /* since last seen (0 for pinned) */
};
/* Copies up to max entries of the MAC table (any order); returns how many there are in all. */
unsigned vswitch_mac_table(const struct vswitch *sw, uint64_t now_ms, struct vswitch_mac_entry *out,
			   unsigned max);

#endif
