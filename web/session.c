/* Login sessions (include/web/session.h). */
#include <stdio.h>
#include <string.h>

#include "web/session.h"

static void hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Equal strings of WEB_SESSION_HEX characters, in time independent of where they differ. */
static bool same(const char *a, const char *b)
{
	if (!a || !b || strlen(a) != WEB_SESSION_HEX || strlen(b) != WEB_SESSION_HEX)
		return false;
	unsigned char d = 0;
	for (int i = 0; i < WEB_SESSION_HEX; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

const struct web_session *web_session_new(struct web_sessions *t, const char *user, enum token_role role,
					  const unsigned char rnd[64], int64_t now_ms)
{
	struct web_session *slot = &t->s[0];
	for (int i = 0; i < WEB_SESSION_SLOTS; i++) {
		struct web_session *s = &t->s[i];
		if (s->id[0] && s->expires_ms <= now_ms)
			s->id[0] = '\0';
		if (!s->id[0] ? slot->id[0] != '\0' : slot->id[0] && s->expires_ms < slot->expires_ms)
			slot = s;
	}
	memset(slot, 0, sizeof(*slot));
	hex(rnd, 32, slot->id);
	hex(rnd + 32, 32, slot->csrf);
	snprintf(slot->user, sizeof(slot->user), "%s", user);
	slot->role = role;
	slot->expires_ms = now_ms + WEB_SESSION_TTL_MS;
	return slot;
}

const struct web_session *web_session_find(struct web_sessions *t, const char *id, int64_t now_ms)
{
	for (int i = 0; i < WEB_SESSION_SLOTS; i++)
		if (t->s[i].id[0] && same(t->s[i].id, id))
			return t->s[i].expires_ms > now_ms ? &t->s[i] : NULL;
	return NULL;
}

bool web_session_csrf_ok(const struct web_session *s, const char *header)
{
	return s && same(s->csrf, header);
}

void web_session_end(struct web_sessions *t, const char *id)
{
	for (int i = 0; i < WEB_SESSION_SLOTS; i++)
		if (t->s[i].id[0] && same(t->s[i].id, id))
			memset(&t->s[i], 0, sizeof(t->s[i]));
}
