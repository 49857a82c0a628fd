/* API tokens for remote management (New-/Get-/Remove-VMManagementToken): a SQLite file of its
 * own, <root>/tokens.db (0600), holding each token's name, role, expiry and the SHA-256 of the
 * secret, never the secret itself. The web front end (vmmsweb) asks vmms to check a presented
 * token ({"op":"check-token"}); the secret is shown once, when the token is made. */
#ifndef VIRIDIAN_VMMS_TOKENS_H
#define VIRIDIAN_VMMS_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_NAME_MAX 64
#define TOKEN_SECRET_LEN 68 /* "vrd_" and 64 hex digits */

/* The roles of the web API, least to most powerful (docs/web.md has what each may do). */
enum token_role { ROLE_NONE, ROLE_READER, ROLE_OPERATOR, ROLE_ADMINISTRATOR };
const char *token_role_name(enum token_role r);     /* "Reader" ...; "" for ROLE_NONE */
enum token_role token_role_parse(const char *name); /* any case; ROLE_NONE for junk */

struct token_info {
	char name[TOKEN_NAME_MAX + 1];
	enum token_role role;
	int64_t created;        /* unix time */
	int64_t expires;        /* unix time, 0: never */
	int64_t last_used;      /* unix time, 0: never */
};

struct token_store;
struct token_store *token_store_open(const char *db_path, char *err, size_t errlen);
void token_store_close(struct token_store *ts);
/* A new token: the secret (NUL-terminated, TOKEN_SECRET_LEN chars) goes to secret. days 0:
 * never expires. -1 with err (duplicate or invalid name, bad role). */
int token_new(struct token_store *ts, const char *name, enum token_role role, int days, int64_t now,
	      char secret[TOKEN_SECRET_LEN + 1], struct token_info *out, char *err, size_t errlen);
/* All tokens by name; *out malloc'd. */
int token_list(struct token_store *ts, struct token_info **out, int *count);
/* 1 removed, 0 no such token, -1 error. */
int token_remove(struct token_store *ts, const char *name);
/* The token a secret belongs to: 1 valid (out filled, last_used updated), 0 unknown or
 * malformed, 2 expired (out filled). */
int token_check(struct token_store *ts, const char *secret, int64_t now, struct token_info *out);

#endif
