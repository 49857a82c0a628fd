/* The worker's control socket (--control PATH): one JSON object per line in, one per line
 * out. The management service uses it; so can a person with socat. Operations:
 *   {"op":"status"}                      state, vCPUs, memory, VMBus version, heartbeat,
 *                                        integration-service states
 *   {"op":"shutdown","force":B,"reboot":B} graceful shutdown through the guest's shutdown IC
 *   {"op":"turn-off"}                    power off at once (the guest is not asked)
 *   {"op":"time-sync"}                   step the guest's clock to the host's now
 *   {"op":"pause"} / {"op":"resume"}     stop / restart every vCPU (resume also syncs time)
 *   {"op":"guest-info"}                  the guest's intrinsic KVP data (OS, host name, IPs ...)
 *   {"op":"kvp-set","key":K,"value":V}   host -> guest pool entry (hv_kvp_daemon's pool 0)
 *   {"op":"kvp-delete","key":K}
 *   {"op":"kvp-list","pool":N}           the last enumeration of pool N (the worker refreshes
 *                                        pool 2, "auto", every 10 s; others on request)
 *   {"op":"vss-freeze"} / {"op":"vss-thaw"} / {"op":"vss-status"}
 *   {"op":"nic-link","nic":N,"up":B}     network adapter N (default 0): link up/down as the
 *                                        guest sees it; "status" lists adapters in "nics"
 *   {"op":"nic-connect","nic":N,"switch":PATH,"vlan":V}  plug adapter N into a virtual switch
 *                                        (vlan optional); "connected"/"error" in "nics" tell
 *   {"op":"nic-disconnect","nic":N}      pull its cable
 *   {"op":"console-input","data":B64}    keyboard bytes (base64, at most 4096) into COM1;
 *                                        "accepted" says how many fit in its FIFO
 *   {"op":"migrate-send","address":A,"max_downtime_ms":N,"max_passes":N,"verify":B}
 *                                        live migration to vmwp --incoming A (worker/migrate.h);
 *                                        on success the worker exits
 * Replies carry "ok": true, or "ok": false with "error". */
#ifndef VIRIDIAN_WORKER_CONTROL_H
#define VIRIDIAN_WORKER_CONTROL_H

#include <poll.h>
#include <stdbool.h>

#include "worker/vm.h"

#define CONTROL_MAX_CLIENTS 8

struct control_client {
	int fd;
	char buf[8192];
	size_t len;
};

struct control {
	int listen_fd;           /* -1: no control socket */
	char path[108];
	struct vm *vm;
	struct control_client clients[CONTROL_MAX_CLIENTS];
};

/* Listen on path (replacing a stale socket). False with a message on failure. */
bool control_open(struct control *c, struct vm *vm, const char *path, char *err, size_t errlen);
void control_close(struct control *c);
/* The fds to poll (listen socket + clients); returns how many were written. */
int control_pollfds(const struct control *c, struct pollfd *fds, int max);
/* Handle whatever poll reported on those fds. */
void control_handle(struct control *c, const struct pollfd *fds, int n);
/* Standard base64 (padding optional, no whitespace) into out; the byte count, or -1 on a bad
 * character or when it does not fit. Pure: tested in tests/unit/worker. */
long control_base64_decode(const char *in, unsigned char *out, size_t cap);
/* Answer one request line (exposed for tests): returns a malloc'd JSON line. */
char *control_request(struct vm *vm, const char *line);

#endif
