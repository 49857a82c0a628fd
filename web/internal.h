/* What vmmsweb's files share (web/main.c: options, requests, authentication; respond.c:
 * vmms calls, responses, the audit log; console.c: the console and the state streams;
 * static.c: the console's files). Not a public interface. */
#ifndef VIRIDIAN_WEB_INTERNAL_H
#define VIRIDIAN_WEB_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmms/tokens.h"

#define WEB_CONSOLE_CHUNK (48 * 1024)

struct web_config {
	char www[PATH_MAX];
	char socket[PATH_MAX];
	char state[PATH_MAX];
	char audit[PATH_MAX + 16];
	const char *pam_service;
	const char *login_roles;
};
extern struct web_config cfg;
extern volatile sig_atomic_t stopping; /* SIGTERM: streams end */

int64_t now_ms(void);
/* One request to vmms; a reply object always (an error one when vmms does not answer, with
 * *unreachable set when not NULL). */
json_t *vmms(json_t *req, bool *unreachable);
/* A JSON response with the API's security headers (and a Set-Cookie when cookie is not NULL). */
enum MHD_Result send_json_cookie(struct MHD_Connection *c, unsigned status, json_t *body, const char *cookie);
enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *body);
enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg);
/* vmms's reply as an HTTP status (200, 404, 409, 400); the JSON body says the rest. */
unsigned reply_status(json_t *reply);
/* One line in <state>/audit.log (0600); error NULL: "ok" or "refused". */
void audit(const char *client, const char *who, enum token_role role, const char *method, const char *url,
	   const char *op, json_t *params, unsigned status, const char *error);

/* Up to limit bytes (at most WEB_CONSOLE_CHUNK) of the console log of req's "vm" from its
 * "offset", base64: {"ok","data","offset","size","state"}. */
json_t *console_read(json_t *req, size_t limit);
/* A Server-Sent Events response: the VM's console (req: {"vm","offset"}) or every VM's state. */
enum MHD_Result send_stream(struct MHD_Connection *c, bool console, json_t *req);

/* url is one of the console's files: answered (*rc) and 1; else 0. */
int static_file(struct MHD_Connection *c, const char *url, const char *method, enum MHD_Result *rc);

#endif
