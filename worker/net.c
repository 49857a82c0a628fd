/* Network adapters: a netvsp per --nic, its frames to and from a tap or a virtual switch port.
 * Both backends are one fd that reads and writes whole frames, so they share the I/O path. A
 * switch adapter may have no cable; its thread plugs it in (again, once a second, while the
 * switch is away) and the guest sees the link follow. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vswitch/port.h"
#include "vswitch/switch.h"
#include "worker/log.h"
#include "worker/net.h"
#include "worker/sandbox.h"

#define FRAME_MAX NETVSP_RX_GSO_MAX
#define RECONNECT_MS 1000
#define RX_RETRY_MS 100  /* a frame the guest had no room for is offered again at least this often */

struct nic {
	struct vmbus_host *h;
	struct netvsp *dev;
	unsigned index;
	pthread_t thread;
	bool running;
	int wake[2];             /* to the thread (wake_thread) */
	int ready;               /* eventfd: the guest made room after NETVSP_RX_BUSY */
	char tap[IFNAMSIZ];      /* "" for a switch adapter */
	uint8_t mac[6];
	/* Under h->lock (the device thread sends the guest's frames on fd); only the adapter's
	 * thread changes fd. */
	int fd;                  /* -1: no cable */
	bool vnet;               /* frames on fd go behind a virtio_net_hdr (a tap; a switch port that agreed) */
	bool admin_up;           /* nic-link */
	unsigned long long write_errors;
	size_t sent_since_check; /* switch port: bytes sent since its queue was last seen half empty */
	bool congested;          /* switch port: the guest's sends wait for room (tx_room said no) */
	/* Under cfg_lock: where the adapter should be plugged in, and how that went. */
	pthread_mutex_t cfg_lock;
	char want_switch[108];   /* "" none */
	struct vswitch_hello hello;
	char plugged_into[108];
	char last_error[160];
};

static struct nic nics[WORKER_MAX_NICS];
static unsigned nnics;

/* Caller holds h->lock. The guest sees a link when there is a cable and nic-link says up. */
static void update_link(struct nic *nic)
{
	netvsp_set_link(nic->dev, nic->fd >= 0 && nic->admin_up);
}

/* To the adapter's thread: 'x' stop, 'r' re-plug, 't' the guest's sends wait for room. */
static void wake_thread(struct nic *nic, char cmd)
{
	if (write(nic->wake[1], &cmd, 1) != 1)
		vlog("netvsp %u: cannot wake its thread: %s", nic->index, strerror(errno));
}

/* A tap (IFF_VNET_HDR) and a switch port that agreed to it take every frame behind a
 * virtio_net_hdr, so a guest's large send goes on whole: the host kernel segments only if it
 * must, the switch only for ports that cannot take it. */
static bool vnet_send(struct nic *nic, const struct virtio_net_hdr *vh, const uint8_t *frame, uint32_t len)
{
	struct iovec iov[2] = { { (void *)vh, sizeof(*vh) }, { (void *)frame, len } };
	if (nic->tap[0])
		return writev(nic->fd, iov, 2) == (ssize_t)(sizeof(*vh) + len);
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	return sendmsg(nic->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)(sizeof(*vh) + len);
}

static void backend_tx(void *ctx, const uint8_t *frame, uint32_t len)
{
	struct nic *nic = ctx;
	static const struct virtio_net_hdr plain = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
	bool ok = nic->fd >= 0 && (nic->vnet ? vnet_send(nic, &plain, frame, len)
					     : send(nic->fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len);
	if (!ok)
		nic->write_errors++;
	nic->sent_since_check += len;
}

static void backend_tx_segment(void *ctx, const uint8_t *frame, uint32_t len)
{
	backend_tx(ctx, frame, len);
}

static void backend_tx_gso(void *ctx, const uint8_t *frame, uint32_t len, const struct net_gso *gso)
{
	struct nic *nic = ctx;
	if (nic->fd >= 0 && !nic->vnet) { /* a switch that does not take large frames: cut it here */
		static uint8_t segment[VSWITCH_FRAME_MAX];
		/* net_lso_to_gso already checked the headers and the MSS */
		net_segment_tcp(frame, len, gso->csum_start, gso->gso_size, sizeof(segment), segment, backend_tx_segment, nic);
		return;
	}
	struct virtio_net_hdr vh = {
		.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
		.gso_type = gso->gso_type == NET_GSO_TCPV4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6,
		.hdr_len = gso->hdr_len, .gso_size = gso->gso_size,
		.csum_start = gso->csum_start, .csum_offset = gso->csum_offset,
	};
	if (nic->fd < 0 || !vnet_send(nic, &vh, frame, len))
		nic->write_errors++;
	nic->sent_since_check += len;
}

/* A switch port's socket says writable while at least half its buffer is free, more than a
 * whole large send needs; it is asked only after a quarter of that has gone out. A tap takes
 * every write (the kernel queues or drops), so it has no tx_room. */
#define TX_CHECK_BYTES (VSWITCH_PORT_SOCKBUF / 4)

static bool backend_tx_room(void *ctx)
{
	struct nic *nic = ctx;
	if (nic->fd < 0 || (nic->sent_since_check < TX_CHECK_BYTES && !nic->congested))
		return true;
	struct pollfd p = { .fd = nic->fd, .events = POLLOUT };
	bool room = poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
	if (room)
		nic->sent_since_check = 0;
	bool was = nic->congested;
	__atomic_store_n(&nic->congested, !room, __ATOMIC_RELAXED);
	if (!room && !was)
		wake_thread(nic, 't'); /* it starts watching for room */
	return room;
}

static void backend_rx_ready(void *ctx)
{
	struct nic *nic = ctx;
	eventfd_write(nic->ready, 1);
}

/* Offers a frame to the guest; false when it has no room yet (the frame is kept). */
static bool offer(struct nic *nic, uint8_t *frame, size_t len, const struct netvsp_rx_meta *meta)
{
	pthread_mutex_lock(&nic->h->lock);
	int r = netvsp_rx_meta(nic->dev, frame, (uint32_t)len, meta);
	pthread_mutex_unlock(&nic->h->lock);
	return r != NETVSP_RX_BUSY;
}

static void unplug(struct nic *nic, const char *why)
{
	pthread_mutex_lock(&nic->h->lock);
	close(nic->fd);
	nic->fd = -1;
	nic->vnet = false;
	update_link(nic);
	pthread_mutex_unlock(&nic->h->lock);
	pthread_mutex_lock(&nic->cfg_lock);
	if (why)
		vlog("netvsp %u: %s%s", nic->index, nic->plugged_into[0] ? nic->plugged_into : nic->tap, why);
	nic->plugged_into[0] = '\0';
	pthread_mutex_unlock(&nic->cfg_lock);
}

/* Plugs a switch adapter into the switch it should be on; false if there is none or it failed
 * (the reason is kept for status, logged once per change). */
static bool plug(struct nic *nic)
{
	char path[sizeof(nic->want_switch)], err[sizeof(nic->last_error)];
	struct vswitch_hello hello;
	pthread_mutex_lock(&nic->cfg_lock);
	memcpy(path, nic->want_switch, sizeof(path));
	hello = nic->hello;
	pthread_mutex_unlock(&nic->cfg_lock);
	if (!path[0])
		return false;
	int fd = vswitch_port_connect(path, &hello, err, sizeof(err));
	pthread_mutex_lock(&nic->cfg_lock);
	bool changed = strcmp(path, nic->want_switch) != 0;
	if (fd < 0 && strcmp(err, nic->last_error) != 0)
		vlog("netvsp %u: %s", nic->index, err);
	snprintf(nic->last_error, sizeof(nic->last_error), "%s", fd < 0 ? err : "");
	if (fd >= 0 && !changed) {
		memcpy(nic->plugged_into, path, sizeof(path));
		vlog("netvsp %u: plugged into %s (VLAN %u)", nic->index, path, hello.vlan);
	}
	pthread_mutex_unlock(&nic->cfg_lock);
	if (fd < 0 || changed) { /* changed meanwhile: the 'r' waiting for the thread plugs again */
		if (fd >= 0)
			close(fd);
		return false;
	}
	pthread_mutex_lock(&nic->h->lock);
	nic->fd = fd;
	nic->vnet = hello.gso;
	update_link(nic);
	pthread_mutex_unlock(&nic->h->lock);
	return true;
}

/* One frame from the backend into buf: its length, 0 at EOF, -1 with errno. A tap's or a
 * switch port's frames may come after a virtio_net_hdr: a TCP segment of up to 64 KiB with its
 * checksum left to do (TUNSETOFFLOAD, another guest's large send), which netvsp_rx_meta passes
 * on whole or cuts up. */
static ssize_t backend_read(struct nic *nic, uint8_t *buf, struct netvsp_rx_meta *meta)
{
	memset(meta, 0, sizeof(*meta));
	if (!nic->vnet)
		return read(nic->fd, buf, FRAME_MAX);
	struct virtio_net_hdr vh;
	struct iovec iov[2] = { { &vh, sizeof(vh) }, { buf, FRAME_MAX } };
	ssize_t n = readv(nic->fd, iov, 2);
	if (n <= 0)
		return n; /* a switch port's EOF is 0: the switch went away */
	if (n <= (ssize_t)sizeof(vh)) {
		errno = EAGAIN; /* a header without a frame: skipped */
		return -1;
	}
	meta->needs_csum = vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
	meta->csum_start = vh.csum_start;
	meta->csum_offset = vh.csum_offset;
	uint8_t gso = vh.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	meta->gso_type = gso == VIRTIO_NET_HDR_GSO_TCPV4 ? NET_GSO_TCPV4 : gso == VIRTIO_NET_HDR_GSO_TCPV6 ? NET_GSO_TCPV6 : 0;
	meta->gso_size = vh.gso_size;
	return n - (ssize_t)sizeof(vh);
}

static void *nic_thread(void *arg)
{
	struct nic *nic = arg;
	sandbox_thread(SANDBOX_IO);
	uint8_t *buf = malloc(FRAME_MAX);
	size_t held = 0; /* a frame in buf the guest had no room for: no more reading until it goes */
	struct netvsp_rx_meta meta;
	if (!buf)
		return NULL;
	for (;;) {
		bool want = false;
		if (!nic->tap[0] && nic->fd < 0) {
			plug(nic);
			pthread_mutex_lock(&nic->cfg_lock);
			want = nic->want_switch[0] != '\0';
			pthread_mutex_unlock(&nic->cfg_lock);
		}
		bool congested = __atomic_load_n(&nic->congested, __ATOMIC_RELAXED);
		struct pollfd fds[3] = { { .fd = nic->wake[0], .events = POLLIN }, { .fd = nic->ready, .events = POLLIN },
					 { .fd = nic->fd, .events = (short)((held ? 0 : POLLIN) | (congested ? POLLOUT : 0)) } };
		if (!fds[2].events)
			fds[2].fd = -1;
		int timeout = held ? RX_RETRY_MS : nic->fd < 0 && want ? RECONNECT_MS : -1;
		if (poll(fds, 3, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[0].revents) {
			char cmd[16];
			ssize_t n = read(nic->wake[0], cmd, sizeof(cmd));
			if (n <= 0 || memchr(cmd, 'x', (size_t)n))
				break;
			if (memchr(cmd, 'r', (size_t)n) && nic->fd >= 0 && !nic->tap[0])
				unplug(nic, ": unplugged");
			continue;
		}
		if (fds[2].revents & (POLLOUT | POLLERR | POLLHUP) && congested) {
			/* Room again (or the port is gone, which the read below finds): the guest's
			 * waiting sends go on. */
			pthread_mutex_lock(&nic->h->lock);
			nic->congested = false;
			nic->sent_since_check = 0;
			netvsp_tx_resume(nic->dev);
			pthread_mutex_unlock(&nic->h->lock);
		}
		if (fds[1].revents) {
			eventfd_t v;
			eventfd_read(nic->ready, &v);
		}
		if (held) {
			if (!offer(nic, buf, held, &meta))
				continue;
			held = 0;
		}
		if (nic->fd < 0 || !(fds[2].revents & (POLLIN | POLLERR | POLLHUP) || fds[1].revents))
			continue;
		for (int burst = 0; burst < 64; burst++) {
			ssize_t n = backend_read(nic, buf, &meta);
			if (n > 0) {
				if (!offer(nic, buf, (size_t)n, &meta)) {
					held = (size_t)n;
					break;
				}
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			/* EOF or an error: the switch went away (or the tap broke). */
			unplug(nic, nic->tap[0] ? ": tap failed" : " closed the port");
			break;
		}
	}
	free(buf);
	return NULL;
}

static int tap_open(const char *name, char *err, size_t errlen)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "--nic tap=%s: /dev/net/tun: %s", name, strerror(errno));
		return -1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		snprintf(err, errlen, "--nic tap=%s: TUNSETIFF: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	/* Let the host kernel hand over TCP segments above the MTU with checksums left to do, as
	 * QEMU's virtio-net does: fewer, larger frames; netvsp gives them to the guest coalesced. */
	if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0)
		vlog("--nic tap=%s: TUNSETOFFLOAD: %s (receive offloads off)", name, strerror(errno));
	return fd;
}

void worker_detach_nics(void)
{
	for (unsigned i = 0; i < nnics; i++) {
		struct nic *nic = &nics[i];
		if (nic->running) {
			wake_thread(nic, 'x');
			pthread_join(nic->thread, NULL);
			nic->running = false;
		}
		if (nic->dev) {
			struct netvsp_stats st;
			netvsp_get_stats(nic->dev, &st);
			vlog("netvsp %u: tx %llu packets %llu bytes, rx %llu packets %llu bytes, drops tx %llu rx %llu, "
			     "%llu waits for guest room, %llu coalesced receives, %llu bad packets",
			     i, (unsigned long long)st.tx_packets, (unsigned long long)st.tx_bytes,
			     (unsigned long long)st.rx_packets, (unsigned long long)st.rx_bytes,
			     (unsigned long long)st.tx_drops, (unsigned long long)st.rx_drops,
			     (unsigned long long)st.rx_busy, (unsigned long long)st.rx_coalesced,
			     (unsigned long long)st.bad_packets);
		}
		/* The adapter stays registered with the VMBus server, which outlives us: leave it. */
		if (nic->fd >= 0)
			close(nic->fd);
		nic->fd = -1;
	}
}

bool worker_open_nics(const struct worker_options *o, char *err, size_t errlen)
{
	for (unsigned i = 0; i < o->nnics; i++) {
		const struct worker_nic *opt = &o->nics[i];
		struct nic *nic = &nics[nnics];
		memset(nic, 0, sizeof(*nic));
		nic->index = i;
		nic->admin_up = true;
		nic->fd = nic->ready = nic->wake[0] = nic->wake[1] = -1;
		pthread_mutex_init(&nic->cfg_lock, NULL);
		memcpy(nic->mac, opt->mac, 6);
		snprintf(nic->tap, sizeof(nic->tap), "%s", opt->tap);
		snprintf(nic->want_switch, sizeof(nic->want_switch), "%s", opt->switch_path);
		memcpy(nic->hello.mac, opt->mac, 6);
		nic->hello.vlan = opt->vlan;
		nic->hello.mac_spoofing = opt->mac_spoofing;
		if (opt->name[0])
			snprintf(nic->hello.name, sizeof(nic->hello.name), "%s", opt->name);
		else
			snprintf(nic->hello.name, sizeof(nic->hello.name), "vmwp-%d/%u", (int)getpid(), i);
		if (nic->tap[0] && (nic->fd = tap_open(nic->tap, err, errlen)) < 0)
			return false;
		nic->vnet = nic->tap[0] != '\0';
		nic->hello.gso = true;
		if (nnics++ == 0)
			atexit(worker_detach_nics);
		nic->ready = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (nic->ready < 0 || pipe2(nic->wake, O_CLOEXEC) < 0) {
			snprintf(err, errlen, "--nic %u: pipe: %s", i, strerror(errno));
			return false;
		}
	}
	return true;
}

bool worker_attach_nics(struct vmbus_host *h, char *err, size_t errlen)
{
	for (unsigned i = 0; i < nnics; i++) {
		struct nic *nic = &nics[i];
		nic->h = h;
		struct netvsp_config cfg = { .instance = (uint8_t)i };
		memcpy(cfg.mac, nic->mac, 6);
		struct netvsp_backend be = { .tx = backend_tx, .rx_ready = backend_rx_ready,
					     .tx_room = nic->tap[0] ? NULL : backend_tx_room,
					     .tx_gso = backend_tx_gso, .ctx = nic };
		pthread_mutex_lock(&h->lock);
		nic->dev = netvsp_new(h->server, &cfg, &be);
		if (nic->dev)
			update_link(nic); /* a switch adapter starts unplugged; its thread plugs it in */
		pthread_mutex_unlock(&h->lock);
		if (!nic->dev) {
			snprintf(err, errlen, "--nic %u: cannot add the adapter to the VMBus", i);
			return false;
		}
		if (pthread_create(&nic->thread, NULL, nic_thread, nic) != 0) {
			snprintf(err, errlen, "--nic %u: cannot start its thread", i);
			return false;
		}
		nic->running = true;
		char mac[18];
		vswitch_format_mac(nic->mac, mac);
		vlog("netvsp: adapter %u, MAC %s, on %s%s", i, mac, nic->tap[0] ? "tap " : nic->want_switch[0] ? "switch " : "",
		     nic->tap[0] ? nic->tap : nic->want_switch[0] ? nic->want_switch : "nothing (no cable)");
	}
	return true;
}

unsigned worker_nic_count(void)
{
	return nnics;
}

bool worker_nic_status(unsigned i, struct worker_nic_status *out)
{
	if (i >= nnics || !nics[i].dev)
		return false;
	struct nic *nic = &nics[i];
	memset(out, 0, sizeof(*out));
	snprintf(out->tap, sizeof(out->tap), "%s", nic->tap);
	vswitch_format_mac(nic->mac, out->mac);
	pthread_mutex_lock(&nic->cfg_lock);
	snprintf(out->switch_path, sizeof(out->switch_path), "%s", nic->want_switch);
	out->vlan = nic->hello.vlan;
	out->connected = nic->tap[0] || nic->plugged_into[0];
	snprintf(out->error, sizeof(out->error), "%s", nic->last_error);
	pthread_mutex_unlock(&nic->cfg_lock);
	pthread_mutex_lock(&nic->h->lock);
	netvsp_get_stats(nic->dev, &out->stats);
	out->write_errors = nic->write_errors;
	pthread_mutex_unlock(&nic->h->lock);
	return true;
}

bool worker_nic_set_link(unsigned i, bool up)
{
	if (i >= nnics || !nics[i].dev)
		return false;
	pthread_mutex_lock(&nics[i].h->lock);
	nics[i].admin_up = up;
	update_link(&nics[i]);
	pthread_mutex_unlock(&nics[i].h->lock);
	return true;
}

bool worker_nic_connect(unsigned i, const char *switch_path, int vlan, char *err, size_t errlen)
{
	if (i >= nnics || !nics[i].dev) {
		snprintf(err, errlen, "no such network adapter");
		return false;
	}
	struct nic *nic = &nics[i];
	if (nic->tap[0]) {
		snprintf(err, errlen, "adapter %u is on tap %s, not on a switch", i, nic->tap);
		return false;
	}
	if (switch_path && strlen(switch_path) >= sizeof(nic->want_switch)) {
		snprintf(err, errlen, "switch socket path too long");
		return false;
	}
	pthread_mutex_lock(&nic->cfg_lock);
	snprintf(nic->want_switch, sizeof(nic->want_switch), "%s", switch_path ? switch_path : "");
	if (vlan >= 0)
		nic->hello.vlan = (uint16_t)vlan;
	nic->last_error[0] = '\0';
	pthread_mutex_unlock(&nic->cfg_lock);
	wake_thread(nic, 'r');
	return true;
}
