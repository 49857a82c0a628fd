/* libFuzzer target: the switch core and the adapter hello under hostile input. The input is a
 * sequence of steps: add an adapter or uplink port, remove one, move an adapter to another VLAN,
 * a frame from a port (any bytes, any length), time passing (aging), a hello message. After
 * every frame the delivery must be sane: no echo to the ingress port, only live ports, tagged
 * copies only to uplinks, lengths consistent; the MAC table never passes its limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vswitch/port.h"
#include "vswitch/switch.h"
#include "../fuzz_input.h"

static struct vswitch_delivery d;
static struct vswitch_mac_entry table[VSWITCH_TABLE_SIZE];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct vswitch *sw = vswitch_new(1000);
	if (!sw)
		return 0;
	uint64_t now = 0;
	static uint8_t frame[VSWITCH_LARGE_MAX + 8];
	while (in.n) {
		uint8_t op = take(&in) % 6;
		switch (op) {
		case 0: { /* adapter: MAC from 2 bytes (collisions wanted), VLAN from 1 */
			struct vswitch_port_config c = { .kind = VSWITCH_PORT_ADAPTER };
			c.mac[0] = take(&in) & 0x03, c.mac[1] = 0x15, c.mac[2] = 0x5d, c.mac[5] = take(&in) & 7;
			c.vlan = (uint16_t)(take(&in) % 8 == 7 ? 4095 : take(&in) % 4);
			c.mac_spoofing = take(&in) & 1;
			vswitch_port_add(sw, &c);
			break;
		}
		case 1: {
			struct vswitch_port_config c = { .kind = VSWITCH_PORT_UPLINK };
			vswitch_port_add(sw, &c);
			break;
		}
		case 2:
			vswitch_port_remove(sw, take(&in) % 8);
			break;
		case 3:
			vswitch_port_set_vlan(sw, take(&in) % 8, (uint16_t)(take(&in) % 5));
			break;
		case 4: { /* a frame: port, length (2 bytes), then that many bytes (or what is left) */
			unsigned port = take(&in) % 9;
			bool large = take(&in) & 1;
			size_t len = (size_t)take(&in) << 8 | take(&in);
			if (len > in.n)
				len = in.n;
			if (len > sizeof(frame))
				len = sizeof(frame);
			memcpy(frame, in.p, len);
			in.p += len, in.n -= len;
			unsigned n = vswitch_forward(sw, port, frame, len, large, now, &d);
			if (n != d.nports)
				abort();
			for (unsigned i = 0; i < n; i++) {
				struct vswitch_port_config c;
				if (d.to[i].port == port || !vswitch_port_config(sw, d.to[i].port, &c))
					abort();
				if (d.to[i].tagged && (c.kind != VSWITCH_PORT_UPLINK || !d.tagged || d.tagged_len != d.untagged_len + 4))
					abort();
				if (c.kind == VSWITCH_PORT_ADAPTER && c.vlan != d.vlan)
					abort();
				if (d.untagged_len < VSWITCH_FRAME_MIN || d.untagged_len > (large ? VSWITCH_LARGE_MAX : VSWITCH_FRAME_MAX))
					abort();
			}
			break;
		}
		case 5:
			now += take(&in) * 10u;
			vswitch_age(sw, now);
			break;
		}
		if (vswitch_mac_table(sw, now, table, VSWITCH_TABLE_SIZE) > VSWITCH_TABLE_MAX)
			abort();
	}
	vswitch_free(sw);
	/* The whole input as a hello, too. */
	struct vswitch_hello h;
	char err[160];
	if (vswitch_hello_parse(data, size, &h, err, sizeof(err)) && (h.vlan > VSWITCH_VLAN_MAX || (h.mac[0] & 1)))
		abort();
	return 0;
}
