/* The API token store (include/vmms/tokens.h) and its requests. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vmms/tokens.h"

struct token_store {
	sqlite3 *db;
};

struct token_store *token_store_open(const char *db_path, char *err, size_t errlen)
{
	/* Created 0600 before SQLite opens it: the hashes are nobody else's business. */
	int fd = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", db_path, strerror(errno));
		return NULL;
	}
	close(fd);
	struct token_store *ts = calloc(1, sizeof(*ts));
	if (!ts || sqlite3_open(db_path, &ts->db) != SQLITE_OK ||
	    sqlite3_exec(ts->db,
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			 "CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY COLLATE NOCASE, role INTEGER NOT NULL,"
			 " hash TEXT NOT NULL UNIQUE, created INTEGER NOT NULL, expires INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0)",
			 NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", db_path, ts && ts->db ? sqlite3_errmsg(ts->db) : "out of memory");
		token_store_close(ts);
		return NULL;
	}
	return ts;
}

void token_store_close(struct token_store *ts)
{
	if (!ts)
		return;
	sqlite3_close(ts->db);
	free(ts);
}

static bool hash_hex(const char *secret, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (!EVP_Digest(secret, strlen(secret), md, &len, EVP_sha256(), NULL) || len != 32)
		return false;
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return true;
}

static bool valid_token_name(const char *n)
{
	if (!n || !*n || strlen(n) > TOKEN_NAME_MAX)
		return false;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.@", *p))
			return false;
	return true;
}

int token_new(struct token_store *ts, const char *name, enum token_role role, int days, int64_t now,
	      char secret[TOKEN_SECRET_LEN + 1], struct token_info *out, char *err, size_t errlen)
{
	if (!valid_token_name(name)) {
		snprintf(err, errlen, "a token name is 1 to %d letters, digits and - _ . @", TOKEN_NAME_MAX);
		return -1;
	}
	if (role == ROLE_NONE) {
		snprintf(err, errlen, "-Role is Administrator, Operator or Reader");
		return -1;
	}
	if (days < 0 || days > 3650) {
		snprintf(err, errlen, "-ExpiresInDays is 0 (never) to 3650");
		return -1;
	}
	unsigned char rnd[32];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		snprintf(err, errlen, "no random bytes for a token");
		return -1;
	}
	memcpy(secret, "vrd_", 4);
	for (int i = 0; i < 32; i++)
		snprintf(secret + 4 + 2 * i, 3, "%02x", rnd[i]);
	char h[65];
	if (!hash_hex(secret, h)) {
		snprintf(err, errlen, "SHA-256 failed");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	out->role = role;
	out->created = now;
	out->expires = days ? now + (int64_t)days * 86400 : 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ts->db, "INSERT INTO tokens (name, role, hash, created, expires) VALUES (?,?,?,?,?)", -1, &st,
			       NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(ts->db));
		return -1;
	}
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, role);
	sqlite3_bind_text(st, 3, h, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, out->created);
	sqlite3_bind_int64(st, 5, out->expires);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		if (rc == SQLITE_CONSTRAINT)
			snprintf(err, errlen, "a token named '%s' exists already", name);
		else
			snprintf(err, errlen, "%s", sqlite3_errmsg(ts->db));
		return -1;
	}
	return 0;
}

static void row_info(sqlite3_stmt *st, struct token_info *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", (const char *)sqlite3_column_text(st, 0));
	int r = sqlite3_column_int(st, 1);
	t->role = r >= ROLE_READER && r <= ROLE_ADMINISTRATOR ? (enum token_role)r : ROLE_NONE;
	t->created = sqlite3_column_int64(st, 2);
	t->expires = sqlite3_column_int64(st, 3);
	t->last_used = sqlite3_column_int64(st, 4);
}

int token_list(struct token_store *ts, struct token_info **out, int *count)
{
	*out = NULL;
	*count = 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ts->db, "SELECT name, role, created, expires, last_used FROM tokens ORDER BY name", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct token_info *n = realloc(*out, (size_t)(*count + 1) * sizeof(**out));
		if (!n) {
			rc = SQLITE_NOMEM;
			break;
		}
		*out = n;
		row_info(st, &n[(*count)++]);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int token_remove(struct token_store *ts, const char *name)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ts->db, "DELETE FROM tokens WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc != SQLITE_DONE ? -1 : sqlite3_changes(ts->db) > 0;
}

int token_check(struct token_store *ts, const char *secret, int64_t now, struct token_info *out)
{
	if (!secret || strlen(secret) != TOKEN_SECRET_LEN || strncmp(secret, "vrd_", 4))
		return 0;
	char h[65];
	if (!hash_hex(secret, h))
		return 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ts->db, "SELECT name, role, created, expires, last_used FROM tokens WHERE hash = ?", -1, &st,
			       NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, h, -1, SQLITE_STATIC);
	int found = sqlite3_step(st) == SQLITE_ROW;
	if (found)
		row_info(st, out);
	sqlite3_finalize(st);
	if (!found || out->role == ROLE_NONE)
		return 0;
	if (out->expires && now >= out->expires)
		return 2;
	if (sqlite3_prepare_v2(ts->db, "UPDATE tokens SET last_used = ? WHERE hash = ?", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_text(st, 2, h, -1, SQLITE_STATIC);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	out->last_used = now;
	return 1;
}

/* ---- requests ---- */

static json_t *info_json(const struct token_info *t)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I}", "name", t->name, "role", token_role_name(t->role), "created",
			 (json_int_t)t->created, "expires", (json_int_t)t->expires, "last_used", (json_int_t)t->last_used);
}

json_t *vmms_token_request(struct vmms *s, const char *op, json_t *req)
{
	bool is_new = !strcmp(op, "new-token"), is_list = !strcmp(op, "list-tokens");
	bool is_remove = !strcmp(op, "remove-token"), is_check = !strcmp(op, "check-token");
	if (!is_new && !is_list && !is_remove && !is_check)
		return NULL;
	if (!s->tokens)
		return err_reply(0, "the token store is not open");
	int64_t now = time(NULL);
	if (is_new) {
		json_int_t days = 0;
		if (json_object_get(req, "expires_in_days") && !jint(req, "expires_in_days", &days))
			return err_reply(0, "\"expires_in_days\" must be a number");
		char secret[TOKEN_SECRET_LEN + 1], err[256];
		struct token_info t;
		if (token_new(s->tokens, jstr(req, "name"), token_role_parse(jstr(req, "role")),
			      days < 0 || days > 100000 ? -1 : (int)days, now, secret, &t, err, sizeof(err)) < 0)
			return err_reply(0, "%s", err);
		json_t *o = info_json(&t);
		json_object_set_new(o, "token", json_string(secret));
		return json_pack("{s:b, s:o}", "ok", 1, "token", o);
	}
	if (is_list) {
		struct token_info *ts;
		int n;
		if (token_list(s->tokens, &ts, &n) < 0)
			return err_reply(0, "cannot read the token store");
		const char *pattern = jstr(req, "name");
		json_t *arr = json_array();
		for (int i = 0; i < n; i++)
			if (vmms_name_matches(pattern, ts[i].name, NULL))
				json_array_append_new(arr, info_json(&ts[i]));
		free(ts);
		if (pattern && !json_array_size(arr) && !vmms_name_is_pattern(pattern)) {
			json_decref(arr);
			return err_reply(0, "no token named '%s'", pattern);
		}
		return json_pack("{s:b, s:o}", "ok", 1, "tokens", arr);
	}
	if (is_remove) {
		const char *name = jstr(req, "name");
		int r = name ? token_remove(s->tokens, name) : 0;
		if (r < 0)
			return err_reply(0, "cannot change the token store");
		if (r == 0)
			return err_reply(0, "no token named '%s'", name ? name : "");
		return json_pack("{s:b}", "ok", 1);
	}
	struct token_info t;
	int r = token_check(s->tokens, jstr(req, "token"), now, &t);
	if (r == 2)
		return err_reply(0, "the token '%s' expired", t.name);
	if (r != 1)
		return err_reply(0, "unknown token");
	return json_pack("{s:b, s:o}", "ok", 1, "token", info_json(&t));
}
