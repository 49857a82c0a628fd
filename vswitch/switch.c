/* Learning L2 switch core (see include/vswitch/switch.h). The MAC table is open addressing with
 * linear probing keyed by (VLAN, MAC); removal shifts the probe chain back, so there are no
 * tombstones and a lookup stops at the first empty slot. */
#include <stdlib.h>
#include <string.h>

#include "vswitch/switch.h"

#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

struct mac_slot {
	bool used;
	bool pinned;
	uint16_t vlan;
	uint16_t port;
	uint8_t mac[6];
	uint64_t seen_ms;
};

struct port {
	bool used;
	struct vswitch_port_config cfg;
	struct vswitch_port_stats stats;
};

struct vswitch {
	uint64_t aging_ms;
	unsigned entries;
	struct port ports[VSWITCH_MAX_PORTS];
	struct mac_slot table[VSWITCH_TABLE_SIZE];
	uint8_t tagged_buf[VSWITCH_LARGE_MAX + 4];
	uint8_t untagged_buf[VSWITCH_LARGE_MAX];
};

static bool is_multicast(const uint8_t *mac)
{
	return mac[0] & 1;
}

static bool is_zero(const uint8_t *mac)
{
	static const uint8_t zero[6];
	return memcmp(mac, zero, 6) == 0;
}

static unsigned slot_of(uint16_t vlan, const uint8_t *mac)
{
	/* FNV-1a over the key; MACs of one vendor differ only in the last bytes. */
	uint32_t h = 2166136261u;
	h = (h ^ (vlan & 0xff)) * 16777619u;
	h = (h ^ (vlan >> 8)) * 16777619u;
	for (int i = 0; i < 6; i++)
		h = (h ^ mac[i]) * 16777619u;
	return h & (VSWITCH_TABLE_SIZE - 1);
}

static struct mac_slot *lookup(struct vswitch *sw, uint16_t vlan, const uint8_t *mac)
{
	for (unsigned i = slot_of(vlan, mac), n = 0; n < VSWITCH_TABLE_SIZE; i = (i + 1) & (VSWITCH_TABLE_SIZE - 1), n++) {
		struct mac_slot *s = &sw->table[i];
		if (!s->used)
			return NULL;
		if (s->vlan == vlan && memcmp(s->mac, mac, 6) == 0)
			return s;
	}
	return NULL;
}

static void slot_remove(struct vswitch *sw, struct mac_slot *s)
{
	if (!s->pinned)
		sw->ports[s->port].stats.learned--;
	unsigned hole = (unsigned)(s - sw->table);
	sw->table[hole].used = false;
	sw->entries--;
	/* Backward shift: move every later entry of the chain that may live in the hole. */
	for (unsigned i = (hole + 1) & (VSWITCH_TABLE_SIZE - 1); sw->table[i].used; i = (i + 1) & (VSWITCH_TABLE_SIZE - 1)) {
		unsigned home = slot_of(sw->table[i].vlan, sw->table[i].mac);
		/* The entry may move to the hole if its home is not inside (hole, i]. */
		bool home_between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
		if (home_between)
			continue;
		sw->table[hole] = sw->table[i];
		sw->table[i].used = false;
		hole = i;
	}
}

static struct mac_slot *slot_insert(struct vswitch *sw, uint16_t vlan, const uint8_t *mac)
{
	if (sw->entries >= VSWITCH_TABLE_MAX)
		return NULL;
	unsigned i = slot_of(vlan, mac);
	while (sw->table[i].used)
		i = (i + 1) & (VSWITCH_TABLE_SIZE - 1);
	struct mac_slot *s = &sw->table[i];
	memset(s, 0, sizeof(*s));
	s->used = true;
	s->vlan = vlan;
	memcpy(s->mac, mac, 6);
	sw->entries++;
	return s;
}

static bool aged(const struct vswitch *sw, const struct mac_slot *s, uint64_t now_ms)
{
	return !s->pinned && now_ms - s->seen_ms >= sw->aging_ms;
}

struct vswitch *vswitch_new(uint64_t aging_ms)
{
	struct vswitch *sw = calloc(1, sizeof(*sw));
	if (sw)
		sw->aging_ms = aging_ms ? aging_ms : VSWITCH_DEFAULT_AGING_MS;
	return sw;
}

void vswitch_free(struct vswitch *sw)
{
	free(sw);
}

static bool pin(struct vswitch *sw, unsigned port, uint16_t vlan, const uint8_t *mac)
{
	struct mac_slot *s = lookup(sw, vlan, mac);
	if (s && s->pinned)
		return false;
	if (s)
		slot_remove(sw, s);
	s = slot_insert(sw, vlan, mac);
	if (!s)
		return false;
	s->pinned = true;
	s->port = (uint16_t)port;
	return true;
}

int vswitch_port_add(struct vswitch *sw, const struct vswitch_port_config *cfg)
{
	if (cfg->kind != VSWITCH_PORT_ADAPTER && cfg->kind != VSWITCH_PORT_UPLINK)
		return -1;
	if (cfg->kind == VSWITCH_PORT_ADAPTER &&
	    (cfg->vlan > VSWITCH_VLAN_MAX || is_multicast(cfg->mac) || is_zero(cfg->mac)))
		return -1;
	for (unsigned p = 0; p < VSWITCH_MAX_PORTS; p++) {
		if (sw->ports[p].used)
			continue;
		if (cfg->kind == VSWITCH_PORT_ADAPTER && !pin(sw, p, cfg->vlan, cfg->mac))
			return -1;
		memset(&sw->ports[p], 0, sizeof(sw->ports[p]));
		sw->ports[p].used = true;
		sw->ports[p].cfg = *cfg;
		sw->ports[p].cfg.name[sizeof(cfg->name) - 1] = '\0';
		if (cfg->kind == VSWITCH_PORT_UPLINK)
			sw->ports[p].cfg.vlan = 0;
		return (int)p;
	}
	return -1;
}

static void forget_port(struct vswitch *sw, unsigned port)
{
	/* Removal shifts entries backwards, possibly into the slot just visited: look again. */
	for (unsigned i = 0; i < VSWITCH_TABLE_SIZE;) {
		if (sw->table[i].used && sw->table[i].port == port)
			slot_remove(sw, &sw->table[i]);
		else
			i++;
	}
}

void vswitch_port_remove(struct vswitch *sw, unsigned port)
{
	if (port >= VSWITCH_MAX_PORTS || !sw->ports[port].used)
		return;
	forget_port(sw, port);
	sw->ports[port].used = false;
}

bool vswitch_port_set_vlan(struct vswitch *sw, unsigned port, uint16_t vlan)
{
	if (port >= VSWITCH_MAX_PORTS || !sw->ports[port].used || vlan > VSWITCH_VLAN_MAX)
		return false;
	struct port *p = &sw->ports[port];
	if (p->cfg.kind != VSWITCH_PORT_ADAPTER)
		return false;
	if (vlan == p->cfg.vlan)
		return true;
	struct mac_slot *clash = lookup(sw, vlan, p->cfg.mac);
	if (clash && clash->pinned)
		return false;
	forget_port(sw, port);
	if (!pin(sw, port, vlan, p->cfg.mac)) {
		pin(sw, port, p->cfg.vlan, p->cfg.mac); /* its old slot was just freed */
		return false;
	}
	p->cfg.vlan = vlan;
	return true;
}

bool vswitch_port_config(const struct vswitch *sw, unsigned port, struct vswitch_port_config *out)
{
	if (port >= VSWITCH_MAX_PORTS || !sw->ports[port].used)
		return false;
	*out = sw->ports[port].cfg;
	return true;
}

bool vswitch_port_stats(const struct vswitch *sw, unsigned port, struct vswitch_port_stats *out)
{
	if (port >= VSWITCH_MAX_PORTS || !sw->ports[port].used)
		return false;
	*out = sw->ports[port].stats;
	return true;
}

static void learn(struct vswitch *sw, unsigned port, uint16_t vlan, const uint8_t *mac, uint64_t now_ms)
{
	struct mac_slot *s = lookup(sw, vlan, mac);
	if (s && s->pinned)
		return; /* an adapter's own MAC never moves */
	if (s && s->port == port) {
		s->seen_ms = now_ms;
		return;
	}
	if (s)
		slot_remove(sw, s); /* the station moved */
	struct port *p = &sw->ports[port];
	if (p->stats.learned >= VSWITCH_PORT_LEARN_MAX)
		return;
	s = slot_insert(sw, vlan, mac);
	if (!s) {
		vswitch_age(sw, now_ms);
		s = slot_insert(sw, vlan, mac);
		if (!s)
			return; /* full of live entries: the frame is still forwarded, by flooding */
	}
	s->port = (uint16_t)port;
	s->seen_ms = now_ms;
	p->stats.learned++;
}

/* Does frame vlan reach port p? */
static bool in_vlan(const struct port *p, uint16_t vlan)
{
	return p->cfg.kind == VSWITCH_PORT_UPLINK || p->cfg.vlan == vlan;
}

static void add_destination(struct vswitch *sw, struct vswitch_delivery *d, unsigned port, uint16_t vlan)
{
	bool tagged = sw->ports[port].cfg.kind == VSWITCH_PORT_UPLINK && vlan != 0;
	d->to[d->nports].port = (uint16_t)port;
	d->to[d->nports].tagged = tagged;
	d->nports++;
	if (tagged && !d->tagged) {
		d->tagged_len = vswitch_tag(sw->tagged_buf, d->untagged, d->untagged_len, vlan);
		d->tagged = sw->tagged_buf;
	}
}

unsigned vswitch_forward(struct vswitch *sw, unsigned in_port, const uint8_t *frame, size_t len, bool large,
			 uint64_t now_ms, struct vswitch_delivery *d)
{
	d->nports = 0;
	d->tagged = NULL;
	d->tagged_len = 0;
	if (in_port >= VSWITCH_MAX_PORTS || !sw->ports[in_port].used)
		return 0;
	struct port *in = &sw->ports[in_port];
	in->stats.in_packets++;
	in->stats.in_bytes += len;
	if (len < VSWITCH_FRAME_MIN || len > (large ? VSWITCH_LARGE_MAX : VSWITCH_FRAME_MAX)) {
		in->stats.in_malformed++;
		return 0;
	}
	const uint8_t *dst = frame, *src = frame + 6;
	uint16_t type = (uint16_t)(frame[12] << 8 | frame[13]);
	if (is_multicast(src) || is_zero(src)) {
		in->stats.in_malformed++;
		return 0;
	}
	uint16_t vlan;
	if (in->cfg.kind == VSWITCH_PORT_ADAPTER) {
		if (type == ETH_P_8021Q || type == ETH_P_8021AD) {
			in->stats.in_vlan_drops++; /* access ports carry no tags */
			return 0;
		}
		if (!in->cfg.mac_spoofing && memcmp(src, in->cfg.mac, 6) != 0) {
			in->stats.in_spoofed++;
			return 0;
		}
		vlan = in->cfg.vlan;
		d->untagged = frame;
		d->untagged_len = len;
	} else if (type == ETH_P_8021Q) {
		if (len < VSWITCH_FRAME_MIN + 4) {
			in->stats.in_malformed++;
			return 0;
		}
		vlan = (uint16_t)((frame[14] << 8 | frame[15]) & 0x0fff); /* VID 0: priority tag only */
		if (vlan > VSWITCH_VLAN_MAX) {
			in->stats.in_vlan_drops++;
			return 0;
		}
		memcpy(sw->untagged_buf, frame, 12);
		memcpy(sw->untagged_buf + 12, frame + 16, len - 16);
		d->untagged = sw->untagged_buf;
		d->untagged_len = len - 4;
	} else {
		vlan = 0;
		d->untagged = frame;
		d->untagged_len = len;
	}
	d->vlan = vlan;
	if (in->cfg.kind == VSWITCH_PORT_UPLINK || in->cfg.mac_spoofing)
		learn(sw, in_port, vlan, src, now_ms);

	struct mac_slot *known = is_multicast(dst) ? NULL : lookup(sw, vlan, dst);
	if (known && !aged(sw, known, now_ms)) {
		/* A station on the ingress port itself: nothing to send. */
		if (known->port != in_port && in_vlan(&sw->ports[known->port], vlan))
			add_destination(sw, d, known->port, vlan);
	} else {
		for (unsigned p = 0; p < VSWITCH_MAX_PORTS; p++)
			if (p != in_port && sw->ports[p].used && in_vlan(&sw->ports[p], vlan))
				add_destination(sw, d, p, vlan);
	}
	for (unsigned i = 0; i < d->nports; i++) {
		struct port *o = &sw->ports[d->to[i].port];
		o->stats.out_packets++;
		o->stats.out_bytes += d->to[i].tagged ? d->tagged_len : d->untagged_len;
	}
	return d->nports;
}

size_t vswitch_tag(uint8_t *out, const uint8_t *frame, size_t len, uint16_t vlan)
{
	/* dst, src, 802.1Q tag, then the rest of the untagged frame */
	memcpy(out, frame, 12);
	out[12] = ETH_P_8021Q >> 8;
	out[13] = ETH_P_8021Q & 0xff;
	out[14] = (uint8_t)(vlan >> 8);
	out[15] = (uint8_t)vlan;
	memcpy(out + 16, frame + 12, len - 12);
	return len + 4;
}

void vswitch_in_malformed(struct vswitch *sw, unsigned port, size_t len)
{
	if (port >= VSWITCH_MAX_PORTS || !sw->ports[port].used)
		return;
	sw->ports[port].stats.in_packets++;
	sw->ports[port].stats.in_bytes += len;
	sw->ports[port].stats.in_malformed++;
}

void vswitch_out_drop(struct vswitch *sw, unsigned port)
{
	if (port < VSWITCH_MAX_PORTS && sw->ports[port].used)
		sw->ports[port].stats.out_drops++;
}

void vswitch_age(struct vswitch *sw, uint64_t now_ms)
{
	for (unsigned i = 0; i < VSWITCH_TABLE_SIZE;) {
		if (sw->table[i].used && aged(sw, &sw->table[i], now_ms))
			slot_remove(sw, &sw->table[i]);
		else
			i++;
	}
}

unsigned vswitch_mac_table(const struct vswitch *sw, uint64_t now_ms, struct vswitch_mac_entry *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned i = 0; i < VSWITCH_TABLE_SIZE; i++) {
		const struct mac_slot *s = &sw->table[i];
		if (!s->used)
			continue;
		if (n < max) {
			memcpy(out[n].mac, s->mac, 6);
			out[n].vlan = s->vlan;
			out[n].port = s->port;
			out[n].pinned = s->pinned;
			out[n].age_ms = s->pinned ? 0 : now_ms - s->seen_ms;
		}
		n++;
	}
	return n;
}
