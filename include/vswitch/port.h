/* How a VM's network adapter (vmwp) plugs into a switch process (vmswitch): one SOCK_SEQPACKET
 * connection per adapter to the switch's port socket. The adapter's first message is a hello,
 *   {"op":"connect","name":"<vm>/<adapter>","mac":"00:15:5d:..","vlan":N,"mac_spoofing":false}
 * and the switch answers {"ok":true,"port":N} or {"ok":false,"error":"..."} (then closes).
 * After that every message either way is exactly one untagged Ethernet frame -- behind a
 * struct virtio_net_hdr (10 bytes) when the hello asked for "gso":true and the answer has it
 * too: then a TCP segment of up to 64 KiB may travel whole with its segmentation metadata (and
 * a checksum left partial), and the switch segments it only for ports that cannot take it. The
 * switch closing the connection is the cable being pulled (the worker shows the guest link
 * down). SEQPACKET keeps frame boundaries and lets a full receiver drop instead of blocking. */
#ifndef VIRIDIAN_VSWITCH_PORT_H
#define VIRIDIAN_VSWITCH_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSWITCH_HELLO_MAX 512
/* Socket buffers of a port connection: a few hundred full-size frames queued each way. */
#define VSWITCH_PORT_SOCKBUF (2 << 20)

struct vswitch_hello {
	char name[64];           /* [A-Za-z0-9._:/@-], may be empty */
	uint8_t mac[6];
	uint16_t vlan;
	bool mac_spoofing;
	bool gso;                /* frames with a virtio_net_hdr (asked; after connect: agreed) */
};

/* Encodes h as the hello message; its length, or 0 if buf is too small. */
size_t vswitch_hello_encode(const struct vswitch_hello *h, char *buf, size_t len);
/* Parses a hello (untrusted bytes, not NUL-terminated). False with a reason in err. */
bool vswitch_hello_parse(const void *msg, size_t len, struct vswitch_hello *h, char *err, size_t errlen);

/* Connects an adapter to the switch listening on path: sends the hello, waits (up to 5 s) for
 * the answer (h->gso then says whether the switch agreed). The connected non-blocking fd, or -1
 * with the switch's or the system's reason. */
int vswitch_port_connect(const char *path, struct vswitch_hello *h, char *err, size_t errlen);

/* "00:15:5d:01:02:03" (or with '-', any case) -> 6 bytes. */
bool vswitch_parse_mac(const char *s, uint8_t mac[6]);
void vswitch_format_mac(const uint8_t mac[6], char out[18]);

#endif
