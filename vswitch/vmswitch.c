/* vmswitch: one virtual switch as its own process (see docs/vswitch.md). VM adapters connect
 * to --socket (include/vswitch/port.h); an internal switch adds the host's adapter (a tap), an
 * external one an existing interface through a promiscuous AF_PACKET socket. The forwarding
 * is vswitch/switch.c; this file is the I/O around it: one epoll loop, no threads, frames
 * handed on with non-blocking sends (a full receiver drops, it never stalls the switch). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>
#include <arpa/inet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vsp/net_offload.h"
#include "vswitch/port.h"
#include "vswitch/switch.h"

enum switch_type { SWITCH_PRIVATE, SWITCH_INTERNAL, SWITCH_EXTERNAL };
static const char *const type_names[] = { "Private", "Internal", "External" };

/* What an epoll event's fd is. */
enum conn_kind { CONN_LISTEN, CONN_CONTROL_LISTEN, CONN_PENDING, CONN_PORT, CONN_TAP, CONN_PACKET, CONN_SIGNAL };

struct conn {
	enum conn_kind kind;
	int fd;
	int port;                /* switch port, CONN_PORT / CONN_TAP / CONN_PACKET */
	bool gso;                  /* CONN_PORT: frames behind a virtio_net_hdr (include/vswitch/port.h) */
	bool closed;
	struct conn *next_closed;
	struct conn *next_pending; /* CONN_PENDING: in S.pending_list */
	uint64_t since_ms;         /* CONN_PENDING: accepted at */
};

#define MAX_PENDING 32
#define HELLO_TIMEOUT_MS 5000
#define BURST 64

static struct {
	const char *name, *socket_path, *control_path, *host_nic, *uplink;
	enum switch_type type;
	uint64_t aging_ms;
	struct vswitch *sw;
	int epfd;
	struct conn *ports[VSWITCH_MAX_PORTS]; /* by switch port id */
	unsigned pending;
	struct conn *pending_list;
	struct conn *closed;     /* freed after the epoll batch that may still name them */
	struct conn *listeners[3];
	int host_fd;             /* internal: the host adapter's tap, -1 */
	bool stop;
} S;

static void vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vlog(const char *fmt, ...)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "vmswitch %s [%lld.%03ld] ", S.name ? S.name : "", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct conn *watch(enum conn_kind kind, int fd, int port)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct conn){ .kind = kind, .fd = fd, .port = port };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c);
		return NULL;
	}
	if (port >= 0)
		S.ports[port] = c;
	return c;
}

static void pending_drop(struct conn *c)
{
	for (struct conn **p = &S.pending_list; *p; p = &(*p)->next_pending)
		if (*p == c) {
			*p = c->next_pending;
			S.pending--;
			return;
		}
}

static void unwatch(struct conn *c)
{
	if (c->closed)
		return;
	epoll_ctl(S.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->kind == CONN_PENDING)
		pending_drop(c);
	if (c->port >= 0) {
		struct vswitch_port_config cfg;
		if (vswitch_port_config(S.sw, (unsigned)c->port, &cfg))
			vlog("port %d (%s) disconnected", c->port, cfg.name);
		vswitch_port_remove(S.sw, (unsigned)c->port);
		S.ports[c->port] = NULL;
	}
	c->closed = true;
	c->next_closed = S.closed;
	S.closed = c;
}

static void free_closed(void)
{
	while (S.closed) {
		struct conn *c = S.closed;
		S.closed = c->next_closed;
		free(c);
	}
}

static int listen_on(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		vlog("socket path too long: %s", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		vlog("%s: socket: %s", path, strerror(errno));
		return -1;
	}
	unlink(path);
	mode_t old = umask(0077); /* only the owner (root, vmms) may plug in or manage */
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		vlog("%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static bool if_up(const char *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	bool ok = ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
	if (ok && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		ok = ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
	}
	if (ok) {
		/* GRO would merge received TCP segments into frames far above any MTU before the
		 * packet socket sees them; a switch forwards frames as they were on the wire. */
		struct ethtool_value ev = { .cmd = ETHTOOL_SGRO, .data = 0 };
		ifr.ifr_data = (void *)&ev;
		ioctl(s, SIOCETHTOOL, &ifr);
	}
	close(s);
	return ok;
}

static int add_uplink_port(const char *name)
{
	struct vswitch_port_config cfg = { .kind = VSWITCH_PORT_UPLINK };
	snprintf(cfg.name, sizeof(cfg.name), "%s", name);
	return vswitch_port_add(S.sw, &cfg);
}

/* Internal switch: the host's adapter is a tap (created if missing; the admin gives it an
 * address, as with Hyper-V's "vEthernet (NAME)"). */
static bool open_host_nic(void)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		vlog("/dev/net/tun: %s", strerror(errno));
		return false;
	}
	struct ifreq ifr = { 0 };
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", S.host_nic);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		vlog("host adapter %s: TUNSETIFF: %s", S.host_nic, strerror(errno));
		close(fd);
		return false;
	}
	/* Persistent while the switch exists: a restarted switch finds the host's adapter with its
	 * addresses; a clean stop (Remove-VMSwitch) takes it away. */
	if (ioctl(fd, TUNSETPERSIST, 1) < 0)
		vlog("host adapter %s: TUNSETPERSIST: %s", S.host_nic, strerror(errno));
	S.host_fd = fd;
	if (!if_up(S.host_nic))
		vlog("host adapter %s: cannot bring it up: %s", S.host_nic, strerror(errno));
	int port = add_uplink_port(S.host_nic);
	if (port < 0 || !watch(CONN_TAP, fd, port)) {
		close(fd);
		return false;
	}
	vlog("internal: host adapter %s is port %d", S.host_nic, port);
	return true;
}

/* External switch: every frame on the interface, tags included (PACKET_AUXDATA gives back the
 * tag a NIC stripped). */
static bool open_uplink(void)
{
	unsigned ifindex = if_nametoindex(S.uplink);
	if (!ifindex) {
		vlog("uplink %s: no such interface", S.uplink);
		return false;
	}
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
	if (fd < 0) {
		vlog("uplink %s: packet socket: %s", S.uplink, strerror(errno));
		return false;
	}
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex };
	struct packet_mreq mr = { .mr_ifindex = (int)ifindex, .mr_type = PACKET_MR_PROMISC };
	int one = 1;
	/* PACKET_VNET_HDR: frames the host itself made (a veth peer, a bridge) may come with their
	 * TCP/UDP checksum left for the NIC to fill; the header says where, and we fill it. */
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0 ||
	    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0 ||
	    setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0) {
		vlog("uplink %s: %s", S.uplink, strerror(errno));
		close(fd);
		return false;
	}
	if (!if_up(S.uplink))
		vlog("uplink %s: cannot bring it up: %s", S.uplink, strerror(errno));
	int port = add_uplink_port(S.uplink);
	if (port < 0 || !watch(CONN_PACKET, fd, port)) {
		close(fd);
		return false;
	}
	vlog("external: uplink %s is port %d", S.uplink, port);
	return true;
}

/* One frame to a port as its transport wants it; false if it did not take it. */
static bool send_to(struct conn *c, const struct virtio_net_hdr *vh, const uint8_t *f, size_t len)
{
	static const struct virtio_net_hdr plain = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
	if (c->kind == CONN_TAP)
		return write(c->fd, f, len) == (ssize_t)len;
	if (c->kind == CONN_PORT && !c->gso)
		return send(c->fd, f, len, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len;
	struct iovec iov[2] = { { (void *)(vh ? vh : &plain), sizeof(*vh) }, { (void *)f, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	return sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)(sizeof(*vh) + len);
}

/* A large TCP segment for a port that cannot take it whole: cut to MSS-sized frames, tagged
 * for an uplink when the delivery says so. */
struct segment_target {
	struct conn *c;
	uint16_t vlan;           /* 0: untagged */
	bool ok;
};

static void send_segment(void *ctx, const uint8_t *frame, uint32_t len)
{
	struct segment_target *t = ctx;
	static uint8_t tagged[VSWITCH_FRAME_MAX + 4];
	if (t->vlan) {
		len = (uint32_t)vswitch_tag(tagged, frame, len, t->vlan);
		frame = tagged;
	}
	if (!send_to(t->c, NULL, frame, len))
		t->ok = false;
}

static void deliver(const struct vswitch_delivery *d, const struct virtio_net_hdr *vh)
{
	static uint8_t segment[VSWITCH_FRAME_MAX];
	for (unsigned i = 0; i < d->nports; i++) {
		struct conn *c = S.ports[d->to[i].port];
		if (!c)
			continue;
		bool ok;
		if (vh && !(c->kind == CONN_PORT && c->gso)) {
			struct segment_target t = { .c = c, .vlan = d->to[i].tagged ? d->vlan : 0, .ok = true };
			ok = net_segment_tcp(d->untagged, d->untagged_len, vh->csum_start, vh->gso_size, VSWITCH_FRAME_MAX,
					     segment, send_segment, &t) > 0 && t.ok;
		} else {
			const uint8_t *f = d->to[i].tagged ? d->tagged : d->untagged;
			size_t len = d->to[i].tagged ? d->tagged_len : d->untagged_len;
			ok = send_to(c, vh, f, len);
		}
		if (!ok)
			vswitch_out_drop(S.sw, d->to[i].port);
	}
}

static struct vswitch_delivery delivery;

/* vh: the frame's segmentation metadata when it is a large TCP segment, else NULL (any partial
 * checksum was completed on the way in). */
static void forward(int port, const uint8_t *frame, size_t len, const struct virtio_net_hdr *vh)
{
	if (vswitch_forward(S.sw, (unsigned)port, frame, len, vh != NULL, now_ms(), &delivery))
		deliver(&delivery, vh);
}

/* An uplink's errors pass (ENETDOWN while its interface is down, reported once): the switch
 * keeps the port and frames flow again when the interface comes back. */
static bool uplink_error(const struct conn *c)
{
	static int last_errno;
	if (errno != last_errno)
		vlog("uplink port %d: %s", c->port, strerror(errno));
	last_errno = errno;
	return true;
}

/* What a frame behind a virtio_net_hdr is: a plain frame (a partial checksum now completed), a
 * large TCP segment (only from a source allowed to send those), or unusable. */
enum vnet_frame { VNET_PLAIN, VNET_LARGE, VNET_BAD };

static enum vnet_frame vnet_frame(const struct virtio_net_hdr *vh, uint8_t *f, size_t len, bool large_ok)
{
	if (vh->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		uint8_t type = vh->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
		return large_ok && (type == VIRTIO_NET_HDR_GSO_TCPV4 || type == VIRTIO_NET_HDR_GSO_TCPV6) ? VNET_LARGE
													 : VNET_BAD;
	}
	if ((vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !net_complete_csum(f, len, vh->csum_start, vh->csum_offset))
		return VNET_BAD;
	return VNET_PLAIN;
}

/* Reads a burst of frames from a port; false when the connection is gone. */
static bool port_readable(struct conn *c)
{
	static uint8_t buf[VSWITCH_LARGE_MAX + 4 + 1]; /* +1: an oversized frame shows as one */
	for (int i = 0; i < BURST; i++) {
		ssize_t n;
		if (c->kind == CONN_PACKET) {
			union {
				struct cmsghdr h;
				char space[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
			} ctl;
			struct sockaddr_ll from;
			struct virtio_net_hdr vh;
			/* Leave 4 bytes in front to put back a stripped tag. */
			struct iovec iov[2] = { { &vh, sizeof(vh) }, { buf + 4, sizeof(buf) - 4 } };
			struct msghdr mh = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = iov, .msg_iovlen = 2,
					     .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
			n = recvmsg(c->fd, &mh, MSG_TRUNC);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR || uplink_error(c);
			if (from.sll_pkttype == PACKET_OUTGOING || n < (ssize_t)sizeof(vh))
				continue; /* the host's own transmissions on the uplink */
			n -= (ssize_t)sizeof(vh);
			uint8_t *f = buf + 4;
			if ((size_t)n > sizeof(buf) - 4)
				n = (ssize_t)sizeof(buf) - 4; /* truncated: still too long, counted as malformed */
			else if (vnet_frame(&vh, f, (size_t)n, false) == VNET_BAD) {
				/* GRO or a peer's TSO made a super-frame no port could take */
				static bool said;
				if (vh.gso_type != VIRTIO_NET_HDR_GSO_NONE && !said) {
					vlog("uplink: dropping offload super-frames (turn TSO/GSO off where they come from, GRO on the uplink)");
					said = true;
				}
				continue;
			}
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
				if (cm->cmsg_level != SOL_PACKET || cm->cmsg_type != PACKET_AUXDATA)
					continue;
				struct tpacket_auxdata aux;
				memcpy(&aux, CMSG_DATA(cm), sizeof(aux));
				if ((aux.tp_status & TP_STATUS_VLAN_VALID) && n >= 12) {
					uint16_t tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) ? aux.tp_vlan_tpid : 0x8100;
					memmove(buf, f, 12);
					buf[12] = (uint8_t)(tpid >> 8), buf[13] = (uint8_t)tpid;
					buf[14] = (uint8_t)(aux.tp_vlan_tci >> 8), buf[15] = (uint8_t)aux.tp_vlan_tci;
					f = buf;
					n += 4;
				}
			}
			forward(c->port, f, (size_t)n, NULL);
			continue;
		}
		if (c->kind == CONN_PORT && c->gso) {
			struct virtio_net_hdr vh;
			struct iovec iov[2] = { { &vh, sizeof(vh) }, { buf, sizeof(buf) } };
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
			n = recvmsg(c->fd, &mh, MSG_TRUNC);
			if (n <= 0)
				return n < 0 && (errno == EAGAIN || errno == EINTR);
			enum vnet_frame kind = VNET_BAD;
			size_t len = (size_t)n - sizeof(vh);
			if (n >= (ssize_t)sizeof(vh) && len <= sizeof(buf))
				kind = vnet_frame(&vh, buf, len, true);
			if (kind == VNET_BAD)
				vswitch_in_malformed(S.sw, (unsigned)c->port, (size_t)n);
			else
				forward(c->port, buf, len, kind == VNET_LARGE ? &vh : NULL);
			continue;
		}
		n = c->kind == CONN_TAP ? read(c->fd, buf, sizeof(buf)) : recv(c->fd, buf, sizeof(buf), MSG_TRUNC);
		if (n == 0)
			return c->kind == CONN_TAP;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR || uplink_error(c);
		forward(c->port, buf, (size_t)n > sizeof(buf) ? sizeof(buf) : (size_t)n, NULL);
	}
	return true;
}

static void send_json(int fd, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if (s) {
		if (send(fd, s, strlen(s), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			vlog("answer lost: %s", strerror(errno));
		free(s);
	}
	json_decref(j);
}

/* The first message of a new adapter connection. False: the connection was refused. */
static bool pending_readable(struct conn *c)
{
	char msg[VSWITCH_HELLO_MAX], err[160];
	ssize_t n = recv(c->fd, msg, sizeof(msg), MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	struct vswitch_hello h;
	if (n <= 0 || (size_t)n > sizeof(msg)) {
		if (n > 0)
			send_json(c->fd, json_pack("{s:b, s:s}", "ok", 0, "error", "hello too long"));
		return false;
	}
	if (!vswitch_hello_parse(msg, (size_t)n, &h, err, sizeof(err))) {
		send_json(c->fd, json_pack("{s:b, s:s}", "ok", 0, "error", err));
		return false;
	}
	struct vswitch_port_config cfg = { .kind = VSWITCH_PORT_ADAPTER, .vlan = h.vlan, .mac_spoofing = h.mac_spoofing };
	memcpy(cfg.mac, h.mac, 6);
	snprintf(cfg.name, sizeof(cfg.name), "%s", h.name);
	int port = vswitch_port_add(S.sw, &cfg);
	char mac[18];
	vswitch_format_mac(h.mac, mac);
	if (port < 0) {
		send_json(c->fd, json_pack("{s:b, s:s}", "ok", 0, "error",
					   "no free port, or that MAC is already connected in that VLAN"));
		vlog("refused %s (%s, VLAN %u)", h.name, mac, h.vlan);
		return false;
	}
	send_json(c->fd, json_pack("{s:b, s:i, s:b}", "ok", 1, "port", port, "gso", h.gso));
	pending_drop(c);
	c->kind = CONN_PORT;
	c->gso = h.gso;
	c->port = port;
	S.ports[port] = c;
	vlog("port %d: %s %s VLAN %u", port, h.name, mac, h.vlan);
	return true;
}

static json_t *port_json(unsigned p)
{
	struct vswitch_port_config cfg;
	struct vswitch_port_stats st;
	if (!vswitch_port_config(S.sw, p, &cfg) || !vswitch_port_stats(S.sw, p, &st))
		return NULL;
	char mac[18] = "";
	if (cfg.kind == VSWITCH_PORT_ADAPTER)
		vswitch_format_mac(cfg.mac, mac);
	return json_pack("{s:i, s:s, s:s, s:s, s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
		"port", (int)p, "name", cfg.name, "kind", cfg.kind == VSWITCH_PORT_ADAPTER ? "adapter" : "uplink",
		"mac", mac, "vlan", cfg.vlan, "mac_spoofing", cfg.mac_spoofing,
		"in_packets", (json_int_t)st.in_packets, "in_bytes", (json_int_t)st.in_bytes,
		"out_packets", (json_int_t)st.out_packets, "out_bytes", (json_int_t)st.out_bytes,
		"in_malformed", (json_int_t)st.in_malformed, "in_spoofed", (json_int_t)st.in_spoofed,
		"in_vlan_drops", (json_int_t)st.in_vlan_drops, "out_drops", (json_int_t)st.out_drops,
		"learned", (int)st.learned);
}

static int port_by_request(json_t *req)
{
	json_t *port = json_object_get(req, "port"), *name = json_object_get(req, "name");
	struct vswitch_port_config cfg;
	if (json_is_integer(port)) {
		json_int_t p = json_integer_value(port);
		return p >= 0 && p < VSWITCH_MAX_PORTS && vswitch_port_config(S.sw, (unsigned)p, &cfg) ? (int)p : -1;
	}
	if (json_is_string(name))
		for (unsigned p = 0; p < VSWITCH_MAX_PORTS; p++)
			if (vswitch_port_config(S.sw, p, &cfg) && strcmp(cfg.name, json_string_value(name)) == 0)
				return (int)p;
	return -1;
}

static json_t *control_request(json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));
	if (!op)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "want {\"op\":...}");
	if (strcmp(op, "status") == 0) {
		json_t *ports = json_array();
		for (unsigned p = 0; p < VSWITCH_MAX_PORTS; p++) {
			json_t *j = port_json(p);
			if (j)
				json_array_append_new(ports, j);
		}
		struct vswitch_mac_entry none;
		unsigned macs = vswitch_mac_table(S.sw, now_ms(), &none, 0);
		return json_pack("{s:b, s:s, s:s, s:i, s:o, s:i, s:I}", "ok", 1, "name", S.name, "type",
				 type_names[S.type], "pid", (int)getpid(), "ports", ports, "mac_entries", (int)macs,
				 "aging_ms", (json_int_t)S.aging_ms);
	}
	if (strcmp(op, "mac-table") == 0) {
		static struct vswitch_mac_entry e[VSWITCH_TABLE_MAX];
		uint64_t now = now_ms();
		unsigned n = vswitch_mac_table(S.sw, now, e, VSWITCH_TABLE_MAX);
		json_t *a = json_array();
		for (unsigned i = 0; i < n && i < VSWITCH_TABLE_MAX; i++) {
			char mac[18];
			vswitch_format_mac(e[i].mac, mac);
			json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:b, s:I}", "mac", mac, "vlan", e[i].vlan,
							   "port", e[i].port, "pinned", e[i].pinned, "age_ms",
							   (json_int_t)e[i].age_ms));
		}
		return json_pack("{s:b, s:o}", "ok", 1, "entries", a);
	}
	if (strcmp(op, "port-vlan") == 0 || strcmp(op, "port-disconnect") == 0) {
		int p = port_by_request(req);
		if (p < 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "no such port");
		if (op[5] == 'd') {
			if (S.ports[p] && S.ports[p]->kind == CONN_PORT) {
				unwatch(S.ports[p]);
				return json_pack("{s:b}", "ok", 1);
			}
			return json_pack("{s:b, s:s}", "ok", 0, "error", "only adapter ports can be disconnected");
		}
		json_t *vlan = json_object_get(req, "vlan");
		if (!json_is_integer(vlan) || json_integer_value(vlan) < 0 || json_integer_value(vlan) > VSWITCH_VLAN_MAX ||
		    !vswitch_port_set_vlan(S.sw, (unsigned)p, (uint16_t)json_integer_value(vlan)))
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "want an adapter port and \"vlan\" 0..4094 not clashing with its MAC there");
		return json_pack("{s:b}", "ok", 1);
	}
	if (strcmp(op, "stop") == 0) {
		S.stop = true;
		return json_pack("{s:b}", "ok", 1);
	}
	return json_pack("{s:b, s:s}", "ok", 0, "error", "unknown op");
}

/* One request line per connection, answered at once: management calls are rare and local. */
static void control_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct timeval tv = { .tv_sec = 1 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char line[4096];
	size_t have = 0;
	while (have < sizeof(line) - 1) {
		ssize_t n = recv(fd, line + have, sizeof(line) - 1 - have, 0);
		if (n <= 0)
			break;
		have += (size_t)n;
		if (memchr(line, '\n', have))
			break;
	}
	json_t *req = json_loadb(line, strcspn(line, "\n") < have ? strcspn(line, "\n") : have, 0, NULL);
	json_t *reply = json_is_object(req) ? control_request(req)
					     : json_pack("{s:b, s:s}", "ok", 0, "error", "malformed request");
	json_decref(req);
	char *s = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (s) {
		size_t len = strlen(s);
		s[len] = '\n'; /* replaces the NUL: the buffer is not used as a string again */
		if (send(fd, s, len + 1, MSG_NOSIGNAL) < 0)
			vlog("control answer lost: %s", strerror(errno));
		free(s);
	}
	close(fd);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmswitch --name NAME --type Private|Internal|External --socket PATH [--control PATH]\n"
		   "                [--host-nic IFNAME] [--uplink IFNAME] [--aging SECONDS]\n"
		   "  --socket PATH      where VM adapters connect (vmwp --nic switch=PATH)\n"
		   "  --control PATH     JSON control socket: status, mac-table, port-vlan, port-disconnect, stop\n"
		   "  --host-nic IFNAME  Internal: the host's adapter, a tap (default vs-NAME, at most 15 characters)\n"
		   "  --uplink IFNAME    External: the host interface to bridge to (required)\n"
		   "  --aging SECONDS    MAC aging time (default 300)\n");
}

static bool parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' }, { "type", required_argument, NULL, 't' },
		{ "socket", required_argument, NULL, 's' }, { "control", required_argument, NULL, 'c' },
		{ "host-nic", required_argument, NULL, 'h' }, { "uplink", required_argument, NULL, 'u' },
		{ "aging", required_argument, NULL, 'a' }, { "help", no_argument, NULL, 'H' }, { 0 }
	};
	const char *type = NULL;
	S.aging_ms = VSWITCH_DEFAULT_AGING_MS;
	opterr = 0; /* our own one-line message instead of getopt's and the usage text */
	for (int o; (o = getopt_long(argc, argv, ":", opts, NULL)) != -1;) {
		switch (o) {
		case 'n': S.name = optarg; break;
		case 't': type = optarg; break;
		case 's': S.socket_path = optarg; break;
		case 'c': S.control_path = optarg; break;
		case 'h': S.host_nic = optarg; break;
		case 'u': S.uplink = optarg; break;
		case 'a': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v == 0 || v > 1000000) {
				fprintf(stderr, "vmswitch: --aging wants 1..1000000 seconds\n");
				return false;
			}
			S.aging_ms = v * 1000;
			break;
		}
		case 'H': usage(stdout); exit(0);
		case ':':
			fprintf(stderr, "vmswitch: %s wants a value (see vmswitch --help)\n", argv[optind - 1]);
			return false;
		default:
			fprintf(stderr, "vmswitch: unknown option %s (see vmswitch --help)\n", argv[optind - 1]);
			return false;
		}
	}
	const char *missing = !S.name || !*S.name ? "--name" : !type ? "--type" : !S.socket_path ? "--socket" : NULL;
	if (missing || optind != argc) {
		if (missing)
			fprintf(stderr, "vmswitch: %s is required (see vmswitch --help)\n", missing);
		else
			fprintf(stderr, "vmswitch: unexpected argument %s (see vmswitch --help)\n", argv[optind]);
		return false;
	}
	S.type = strcasecmp(type, "private") == 0 ? SWITCH_PRIVATE
	       : strcasecmp(type, "internal") == 0 ? SWITCH_INTERNAL
	       : strcasecmp(type, "external") == 0 ? SWITCH_EXTERNAL : (enum switch_type)-1;
	if ((int)S.type < 0) {
		fprintf(stderr, "vmswitch: --type is Private, Internal or External, not %s\n", type);
		return false;
	}
	if (S.type == SWITCH_EXTERNAL && !S.uplink) {
		fprintf(stderr, "vmswitch: an External switch needs --uplink IFNAME\n");
		return false;
	}
	if ((S.uplink && S.type != SWITCH_EXTERNAL) || (S.host_nic && S.type != SWITCH_INTERNAL)) {
		fprintf(stderr, "vmswitch: --uplink is for External switches, --host-nic for Internal ones\n");
		return false;
	}
	if (S.type == SWITCH_INTERNAL && !S.host_nic) {
		static char def[IFNAMSIZ];
		snprintf(def, sizeof(def), "vs-%s", S.name);
		for (char *p = def; *p; p++)
			if (*p == ' ' || *p == '/' || *p == ':')
				*p = '-';
		S.host_nic = def;
	}
	if (S.host_nic && strlen(S.host_nic) >= IFNAMSIZ) {
		fprintf(stderr, "vmswitch: --host-nic %s: at most %d characters\n", S.host_nic, IFNAMSIZ - 1);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	if (!parse_args(argc, argv))
		return 1;
	S.sw = vswitch_new(S.aging_ms);
	S.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!S.sw || S.epfd < 0) {
		vlog("cannot start: %s", S.sw ? strerror(errno) : "out of memory");
		return 1;
	}
	S.host_fd = -1;
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	int lfd = listen_on(S.socket_path, SOCK_SEQPACKET);
	int cfd = S.control_path ? listen_on(S.control_path, SOCK_STREAM) : -2;
	if (sfd < 0 || lfd < 0 || cfd == -1 || !(S.listeners[0] = watch(CONN_SIGNAL, sfd, -1)) ||
	    !(S.listeners[1] = watch(CONN_LISTEN, lfd, -1)) ||
	    (cfd >= 0 && !(S.listeners[2] = watch(CONN_CONTROL_LISTEN, cfd, -1))))
		return 1;
	if ((S.type == SWITCH_INTERNAL && !open_host_nic()) || (S.type == SWITCH_EXTERNAL && !open_uplink()))
		return 1;
	vlog("%s switch ready on %s", type_names[S.type], S.socket_path);

	uint64_t last_age = now_ms();
	while (!S.stop) {
		struct epoll_event ev[32];
		int n = epoll_wait(S.epfd, ev, 32, 1000);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n && !S.stop; i++) {
			struct conn *c = ev[i].data.ptr;
			if (c->closed)
				continue;
			switch (c->kind) {
			case CONN_SIGNAL:
				S.stop = true;
				break;
			case CONN_LISTEN: {
				int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				if (fd < 0)
					break;
				if (S.pending >= MAX_PENDING) {
					close(fd); /* too many silent connections: the newest waits for none */
					break;
				}
				int sz = VSWITCH_PORT_SOCKBUF;
				setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
				setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
				struct conn *p = watch(CONN_PENDING, fd, -1);
				if (p) {
					p->since_ms = now_ms();
					p->next_pending = S.pending_list;
					S.pending_list = p;
					S.pending++;
				} else {
					close(fd);
				}
				break;
			}
			case CONN_CONTROL_LISTEN:
				control_accept(c->fd);
				break;
			case CONN_PENDING:
				if (!pending_readable(c))
					unwatch(c);
				break;
			case CONN_PORT:
			case CONN_TAP:
			case CONN_PACKET:
				if (!port_readable(c) || (ev[i].events & (EPOLLHUP | EPOLLERR) && c->kind == CONN_PORT))
					unwatch(c);
				break;
			}
		}
		free_closed();
		uint64_t now = now_ms();
		if (now - last_age >= 1000) {
			/* A connection that never says hello does not keep a slot. */
			for (struct conn *p = S.pending_list, *next; p; p = next) {
				next = p->next_pending;
				if (now - p->since_ms >= HELLO_TIMEOUT_MS)
					unwatch(p);
			}
			vswitch_age(S.sw, now);
			last_age = now;
		}
	}
	vlog("stopping");
	unlink(S.socket_path);
	if (S.control_path)
		unlink(S.control_path);
	if (S.host_fd >= 0 && ioctl(S.host_fd, TUNSETPERSIST, 0) < 0)
		vlog("host adapter %s: %s", S.host_nic, strerror(errno));
	for (unsigned p = 0; p < VSWITCH_MAX_PORTS; p++)
		if (S.ports[p])
			unwatch(S.ports[p]);
	for (int i = 0; i < 3; i++)
		if (S.listeners[i])
			unwatch(S.listeners[i]);
	free_closed();
	vswitch_free(S.sw);
	return 0;
}
