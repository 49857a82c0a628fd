/* Failed-authentication limiting per client address: after WEB_RL_MAX_FAILS failures within
 * WEB_RL_WINDOW_MS, the address is refused (429) until the window since its first failure
 * has passed. A fixed table; when full, the oldest entry gives way. Not thread-safe: the
 * caller holds a lock. Pure (the time is passed in). */
#ifndef VIRIDIAN_WEB_RATELIMIT_H
#define VIRIDIAN_WEB_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define WEB_RL_MAX_FAILS 5
#define WEB_RL_WINDOW_MS 60000
#define WEB_RL_SLOTS 256

struct web_rl_entry {
	char addr[48];
	int fails;
	int64_t first_ms;
};

struct web_ratelimit {
	struct web_rl_entry e[WEB_RL_SLOTS];
};

/* The address is locked out now: *retry_s says for how long (seconds, at least 1). */
bool web_rl_blocked(struct web_ratelimit *rl, const char *addr, int64_t now_ms, int *retry_s);
void web_rl_fail(struct web_ratelimit *rl, const char *addr, int64_t now_ms);

#endif
