/* vmmsweb's request mapping: an HTTP method, URL and JSON body -> the vmms request it stands
 * for, the role it needs and what the front end does with it. Pure (no I/O): every byte here
 * comes from the network, so it is fuzzed (tests/fuzz/web) and unit-tested (tests/unit/web).
 *
 * The unit of authorization is the vmms op: each cmdlet sends fixed ops, so a role that may
 * run an op may run the cmdlets made of it (docs/web.md lists them). An op missing from the
 * table is refused, whatever the role. */
#ifndef VIRIDIAN_WEB_ROUTE_H
#define VIRIDIAN_WEB_ROUTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "vmms/tokens.h"

#define WEB_MAX_JSON_DEPTH 8
#define WEB_MAX_URL 1024

enum web_kind {
	WEB_VMMS,           /* forward req to vmms, its reply is the answer */
	WEB_CONSOLE_READ,   /* req: {"vm", "offset"}: a piece of the VM's console.log */
	WEB_CONSOLE_STREAM, /* req: {"vm"}: console.log as Server-Sent Events */
	WEB_STATE_STREAM,   /* VM state changes as Server-Sent Events */
	WEB_WHOAMI,         /* who the caller is and what role it has */
};

struct web_route {
	enum web_kind kind;
	enum token_role role; /* the least role that may do it */
	char op[32];          /* the vmms op (or the front end's own: console-read ...) */
	json_t *req;          /* owned by the route: web_route_free */
};

/* 0 with *out filled, or the HTTP status to answer (400, 404, 405) with err. body: the
 * request's JSON object (GET/DELETE: its query arguments), NULL for none; it is not consumed. */
int web_route(const char *method, const char *url, json_t *body, struct web_route *out, char *err, size_t errlen);
void web_route_free(struct web_route *r);
/* The role an op needs; ROLE_NONE when the web API does not offer it. */
enum token_role web_op_role(const char *op);
/* A URL segment or query value of len bytes, percent-decoded once into out; false for a bad
 * escape, a NUL, a control character, a '/' (also as %2F), an empty result or one too long.
 * vmmsweb gets the URL undecoded (its HTTP library's decoding is turned off) and decodes here. */
bool web_url_decode(const char *s, size_t len, char *out, size_t outlen);
/* The deepest nesting of arrays/objects in a JSON text (strings skipped); -1 when brackets do
 * not balance. Checked before jansson parses a body. */
int web_json_depth(const char *s, size_t n);
/* A path parameter is lexically safe: not empty, no control characters, no "." or ".."
 * component, no "//"; absolute unless relative_ok. */
bool web_path_safe(const char *p, bool relative_ok);
/* p (lexically safe, absolute) is prefix itself or inside it. */
bool web_path_under(const char *p, const char *prefix);
/* The request keys that name host files, NULL-terminated; relative_ok for each. */
extern const struct web_path_key { const char *key; bool relative_ok; } web_path_keys[];

#endif
