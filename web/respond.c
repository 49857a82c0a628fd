/* What vmmsweb's files share (web/internal.h): vmms calls, JSON responses, the audit log. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vmms/control_client.h"

struct web_config cfg;
volatile sig_atomic_t stopping;
static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *vmms(json_t *req, bool *unreachable)
{
	char *line = json_dumps(req, JSON_COMPACT);
	enum control_call_error why = CONTROL_CALL_MALFORMED;
	json_t *r = line ? control_call(cfg.socket, line, 60000, &why) : NULL;
	free(line);
	if (unreachable)
		*unreachable = !r;
	return r ? r : json_pack("{s:b, s:s}", "ok", 0, "error", "vmms does not answer");
}

enum MHD_Result send_json_cookie(struct MHD_Connection *c, unsigned status, json_t *body, const char *cookie)
{
	char *s = json_dumps(body, JSON_COMPACT);
	size_t n = s ? strlen(s) : 0;
	char *out = malloc(n + 2);
	if (out) {
		memcpy(out, s ? s : "", n);
		out[n++] = '\n';
	}
	free(s);
	struct MHD_Response *r = MHD_create_response_from_buffer(out ? n : 0, out, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
	MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000");
	if (status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"viridian\"");
	json_t *retry = json_object_get(body, "retry_after_s");
	if (status == 429 && retry) {
		char v[16];
		snprintf(v, sizeof(v), "%d", (int)json_integer_value(retry));
		MHD_add_response_header(r, "Retry-After", v);
	}
	if (cookie)
		MHD_add_response_header(r, "Set-Cookie", cookie);
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
	return send_json_cookie(c, status, body, NULL);
}

enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
	json_t *b = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
	enum MHD_Result rc = send_json(c, status, b);
	json_decref(b);
	return rc;
}

unsigned reply_status(json_t *reply)
{
	if (json_is_true(json_object_get(reply, "ok")))
		return 200;
	if (json_integer_value(json_object_get(reply, "id")) == 32788)
		return 409;
	const char *e = json_string_value(json_object_get(reply, "error"));
	if (e && (strstr(e, "unable to find") || !strncmp(e, "no ", 3)))
		return 404;
	return 400;
}

/* The audit log: one JSON line per decided request. */
void audit(const char *client, const char *who, enum token_role role, const char *method, const char *url,
		  const char *op, json_t *params, unsigned status, const char *error)
{
	char when[32];
	time_t t = time(NULL);
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "time", when, "client", client, "user", who ? who : "", "role",
			      token_role_name(role), "method", method, "url", url);
	if (op)
		json_object_set_new(e, "op", json_string(op));
	if (params) {
		json_t *p = json_deep_copy(params);
		json_object_del(p, "token");
		json_object_set_new(e, "params", p);
	}
	json_object_set_new(e, "status", json_integer(status));
	json_object_set_new(e, "result", json_string(status < 300 ? "ok" : error ? error : "refused"));
	char *line = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(e);
	pthread_mutex_lock(&audit_lock);
	int fd = open(cfg.audit, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0 && line && (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0))
		fprintf(stderr, "vmmsweb: %s: %s\n", cfg.audit, strerror(errno));
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&audit_lock);
	free(line);
}
