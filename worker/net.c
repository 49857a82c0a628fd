/* Network adapters: netvsp + a tap backend per --nic. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "worker/log.h"
#include "worker/net.h"

#define TAP_FRAME_MAX 65536

struct nic {
	struct vmbus_host *h;
	struct netvsp *dev;
	int fd;
	int stop[2];
	pthread_t thread;
	bool running;
	char tap[IFNAMSIZ];
	uint8_t mac[6];
	unsigned long long write_errors;
};

static struct nic nics[WORKER_MAX_NICS];
static unsigned nnics;

static void tap_tx(void *ctx, const uint8_t *frame, uint32_t len)
{
	struct nic *nic = ctx;
	if (write(nic->fd, frame, len) != (ssize_t)len)
		nic->write_errors++;
}

static void *tap_rx_thread(void *arg)
{
	struct nic *nic = arg;
	uint8_t *buf = malloc(TAP_FRAME_MAX);
	if (!buf)
		return NULL;
	for (;;) {
		struct pollfd fds[2] = { { .fd = nic->fd, .events = POLLIN }, { .fd = nic->stop[0], .events = POLLIN } };
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[1].revents)
			break;
		if (fds[0].revents & (POLLERR | POLLNVAL))
			break;
		for (int burst = 0; burst < 64; burst++) {
			ssize_t n = read(nic->fd, buf, TAP_FRAME_MAX);
			if (n <= 0)
				break;
			pthread_mutex_lock(&nic->h->lock);
			netvsp_rx(nic->dev, buf, (uint32_t)n);
			pthread_mutex_unlock(&nic->h->lock);
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
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		snprintf(err, errlen, "--nic tap=%s: TUNSETIFF: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void detach_all(void)
{
	for (unsigned i = 0; i < nnics; i++) {
		struct nic *nic = &nics[i];
		if (nic->running) {
			if (write(nic->stop[1], "x", 1) == 1)
				pthread_join(nic->thread, NULL);
			nic->running = false;
		}
		if (nic->dev) {
			struct netvsp_stats st;
			netvsp_get_stats(nic->dev, &st);
			vlog("netvsp %s: tx %llu packets %llu bytes, rx %llu packets %llu bytes, drops tx %llu rx %llu, %llu bad packets",
			     nic->tap, (unsigned long long)st.tx_packets, (unsigned long long)st.tx_bytes,
			     (unsigned long long)st.rx_packets, (unsigned long long)st.rx_bytes,
			     (unsigned long long)st.tx_drops, (unsigned long long)st.rx_drops,
			     (unsigned long long)st.bad_packets);
		}
		/* The adapter stays registered with the VMBus server, which outlives us: leave it. */
		if (nic->fd >= 0)
			close(nic->fd);
		nic->fd = -1;
	}
}

bool worker_attach_nics(struct vmbus_host *h, const struct worker_options *o, char *err, size_t errlen)
{
	if (!o->nnics)
		return true;
	for (unsigned i = 0; i < o->nnics; i++) {
		struct nic *nic = &nics[nnics];
		memset(nic, 0, sizeof(*nic));
		nic->h = h;
		nic->fd = tap_open(o->nics[i].tap, err, errlen);
		if (nic->fd < 0)
			return false;
		snprintf(nic->tap, sizeof(nic->tap), "%s", o->nics[i].tap);
		memcpy(nic->mac, o->nics[i].mac, 6);
		nnics++;
		if (pipe2(nic->stop, O_CLOEXEC) < 0) {
			snprintf(err, errlen, "--nic tap=%s: pipe: %s", nic->tap, strerror(errno));
			return false;
		}
		struct netvsp_config cfg = { .instance = (uint8_t)i };
		memcpy(cfg.mac, nic->mac, 6);
		struct netvsp_backend be = { .tx = tap_tx, .ctx = nic };
		pthread_mutex_lock(&h->lock);
		nic->dev = netvsp_new(h->server, &cfg, &be);
		pthread_mutex_unlock(&h->lock);
		if (!nic->dev) {
			snprintf(err, errlen, "--nic tap=%s: cannot add the adapter to the VMBus", nic->tap);
			return false;
		}
		if (pthread_create(&nic->thread, NULL, tap_rx_thread, nic) != 0) {
			snprintf(err, errlen, "--nic tap=%s: cannot start its thread", nic->tap);
			return false;
		}
		nic->running = true;
		vlog("netvsp: adapter %u on tap %s, MAC %02x:%02x:%02x:%02x:%02x:%02x", i, nic->tap, nic->mac[0],
		     nic->mac[1], nic->mac[2], nic->mac[3], nic->mac[4], nic->mac[5]);
	}
	atexit(detach_all);
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
	snprintf(out->mac, sizeof(out->mac), "%02x:%02x:%02x:%02x:%02x:%02x", nic->mac[0], nic->mac[1], nic->mac[2],
		 nic->mac[3], nic->mac[4], nic->mac[5]);
	pthread_mutex_lock(&nic->h->lock);
	netvsp_get_stats(nic->dev, &out->stats);
	out->tap_write_errors = nic->write_errors;
	pthread_mutex_unlock(&nic->h->lock);
	return true;
}

bool worker_nic_set_link(unsigned i, bool up)
{
	if (i >= nnics || !nics[i].dev)
		return false;
	pthread_mutex_lock(&nics[i].h->lock);
	netvsp_set_link(nics[i].dev, up);
	pthread_mutex_unlock(&nics[i].h->lock);
	return true;
}
