/* libFuzzer target: arbitrary bytes as one integration service's saved payload. The input is a
 * service byte (heartbeat, shutdown, time sync, KVP, VSS), then the payload of its
 * STATE_SECTION_IC, restored with the other four's real payloads into a fresh server over the
 * RAM of a guest that has a transaction in flight on every service (ic_state_harness.h).
 * Oracles: a restore that succeeds re-saves exactly the payload it was given (the rings hold no
 * answers, so restore_finish changes nothing), and the restored service then works with that
 * guest — answers, new requests, time-outs on a clock far ahead — and saves again; nothing
 * crashes or leaks whatever the restore said. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic_state_harness.h"

#define PAYLOAD_MAX 65536

static struct guest base_guest;
static uint8_t *base_ram;
static int base_fd = -1;

static void init(void)
{
	struct host *h = host_busy(&base_guest, 1000);
	base_fd = host_save(h);
	base_ram = host_ram(h);
	host_free(h);
	if (base_fd < 0)
		abort();
}

/* The restored host at work: the guest answers what it holds and all that follows, the host
 * asks for more on a clock that passes every time-out. */
static void exercise(struct host *h, struct guest *u)
{
	uint64_t t = 1000000000;
	for (int round = 0; round < 3; round++, t += 20 * 60 * 1000) {
		for (int i = 0; i < NIC; i++) {
			u->s[i].deaf = false;
			if (u->s[i].held_len)
				guest_release(h, u, i);
			else
				guest_poll(h, u, i);
		}
		ic_heartbeat_tick(h->ic[HB]);
		ic_shutdown_request(h->ic[SD], round == 1, false, "fuzz");
		ic_timesync_send(h->ic[TS], ICTIMESYNCFLAG_SYNC);
		ic_kvp_set(h->ic[KVP], "fuzz", "value", t);
		ic_kvp_delete(h->ic[KVP], "A", t);
		ic_kvp_enumerate(h->ic[KVP], HV_KVP_POOL_AUTO, t);
		ic_kvp_get(h->ic[KVP], HV_KVP_POOL_EXTERNAL, "B", t);
		ic_kvp_tick(h->ic[KVP], t);
		if (ic_vss_freeze(h->ic[VSS], t) != 0)
			ic_vss_thaw(h->ic[VSS], t);
		ic_vss_tick(h->ic[VSS], t);
		for (int i = 0; i < NIC; i++)
			guest_poll(h, u, i);
		for (unsigned k = 0; k < ic_kvp_pool_count(h->ic[KVP], HV_KVP_POOL_AUTO); k++)
			if (strlen(ic_kvp_pool_item(h->ic[KVP], HV_KVP_POOL_AUTO, k)->key) >= IC_KVP_KEY_MAX)
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (base_fd < 0)
		init();
	if (size < 1 || size - 1 > PAYLOAD_MAX)
		return 0;
	int svc = data[0] % NIC;
	int fd = file_replace_ic(base_fd, (uint32_t)svc + 1, 0, data + 1, size - 1);
	struct guest *u = malloc(sizeof(*u));
	if (!u)
		abort();
	*u = base_guest;
	struct host *h = host_with_ram(base_ram);
	guest_attach(u, h);
	if (host_restore(h, fd) == 0) {
		static uint8_t again[PAYLOAD_MAX];
		int fd2 = host_save(h);
		if (fd2 < 0 || file_ic_payload(fd2, (uint32_t)svc + 1, again, sizeof(again)) != size - 1 ||
		    memcmp(again, data + 1, size - 1) != 0)
			abort();
		close(fd2);
		exercise(h, u);
		fd2 = host_save(h);
		if (fd2 < 0)
			abort();
		close(fd2);
	}
	host_free(h);
	free(u);
	close(fd);
	return 0;
}
