/* vmmsweb's login sessions (host accounts through PAM): a fixed table of random session ids,
 * each with its user, role, CSRF token and expiry. The id travels in a cookie (HttpOnly,
 * Secure, SameSite=Strict); every request made with it must also carry the CSRF token in the
 * X-CSRF-Token header, which another site cannot read or set. Not thread-safe: the caller
 * holds a lock. Pure apart from the random bytes given in. */
#ifndef VIRIDIAN_WEB_SESSION_H
#define VIRIDIAN_WEB_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "vmms/tokens.h"

#define WEB_SESSION_SLOTS 256
#define WEB_SESSION_TTL_MS (8 * 3600 * 1000LL)
#define WEB_SESSION_HEX 64 /* 32 random bytes */

struct web_session {
	char id[WEB_SESSION_HEX + 1];   /* "" when the slot is free */
	char csrf[WEB_SESSION_HEX + 1];
	char user[64];
	enum token_role role;
	int64_t expires_ms;
};

struct web_sessions {
	struct web_session s[WEB_SESSION_SLOTS];
};

/* A new session from 64 random bytes (32 for the id, 32 for the CSRF token); when the table is
 * full, the one closest to expiry gives way. */
const struct web_session *web_session_new(struct web_sessions *t, const char *user, enum token_role role,
					  const unsigned char rnd[64], int64_t now_ms);
/* The live session with this id (compared in constant time), NULL when none or expired. */
const struct web_session *web_session_find(struct web_sessions *t, const char *id, int64_t now_ms);
/* The CSRF header matches the session's (constant time). */
bool web_session_csrf_ok(const struct web_session *s, const char *header);
void web_session_end(struct web_sessions *t, const char *id);

#endif
