/* Failed-authentication limiting (include/web/ratelimit.h). */
#include <stdio.h>
#include <string.h>

#include "web/ratelimit.h"

static struct web_rl_entry *lookup(struct web_ratelimit *rl, const char *addr, int64_t now_ms, bool make)
{
	struct web_rl_entry *victim = NULL; /* a free entry, else the oldest */
	for (int i = 0; i < WEB_RL_SLOTS; i++) {
		struct web_rl_entry *e = &rl->e[i];
		if (e->fails && now_ms - e->first_ms >= WEB_RL_WINDOW_MS)
			e->fails = 0; /* its window is over */
		if (e->fails && !strcmp(e->addr, addr))
			return e;
		if (!e->fails ? !victim || victim->fails : !victim || (victim->fails && e->first_ms < victim->first_ms))
			victim = e;
	}
	if (!make)
		return NULL;
	memset(victim, 0, sizeof(*victim));
	snprintf(victim->addr, sizeof(victim->addr), "%s", addr);
	victim->first_ms = now_ms;
	return victim;
}

bool web_rl_blocked(struct web_ratelimit *rl, const char *addr, int64_t now_ms, int *retry_s)
{
	struct web_rl_entry *e = lookup(rl, addr, now_ms, false);
	if (!e || e->fails < WEB_RL_MAX_FAILS)
		return false;
	int64_t left = e->first_ms + WEB_RL_WINDOW_MS - now_ms;
	*retry_s = (int)((left + 999) / 1000);
	if (*retry_s < 1)
		*retry_s = 1;
	return true;
}

void web_rl_fail(struct web_ratelimit *rl, const char *addr, int64_t now_ms)
{
	struct web_rl_entry *e = lookup(rl, addr, now_ms, true);
	e->fails++;
}
