/* The console log and the state of the VMs, read once (console-read) or followed as
 * Server-Sent Events (web/internal.h). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Up to limit bytes (at most WEB_CONSOLE_CHUNK) of the VM's console.log from the request's
 * offset, base64. */
json_t *console_read(json_t *req, size_t limit)
{
	json_t *q = json_pack("{s:s, s:O}", "op", "get", "vm", json_object_get(req, "vm"));
	json_t *g = vmms(q, NULL);
	json_decref(q);
	if (!json_is_true(json_object_get(g, "ok")))
		return g;
	json_t *vm = json_object_get(g, "vm");
	const char *dir = json_string_value(json_object_get(vm, "path"));
	json_t *o = json_object_get(req, "offset");
	long long off = json_is_integer(o) ? json_integer_value(o) : json_is_string(o) ? strtoll(json_string_value(o), NULL, 10) : 0;
	if (off < 0)
		off = 0;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/console.log", dir ? dir : "/nonexistent");
	unsigned char buf[WEB_CONSOLE_CHUNK];
	size_t n = 0;
	long long size = 0;
	FILE *f = fopen(path, "re");
	if (f) {
		struct stat st;
		if (fstat(fileno(f), &st) == 0)
			size = st.st_size;
		if (off > size) /* the log started over */
			off = 0;
		if (fseeko(f, off, SEEK_SET) == 0)
			n = fread(buf, 1, limit < sizeof(buf) ? limit : sizeof(buf), f);
		fclose(f);
	}
	char *b64 = malloc(4 * ((n + 2) / 3) + 1);
	if (b64)
		EVP_EncodeBlock((unsigned char *)b64, buf, (int)n);
	json_t *r = json_pack("{s:b, s:s, s:I, s:I, s:s}", "ok", 1, "data", b64 ? b64 : "", "offset", (json_int_t)(off + (long long)n),
			      "size", (json_int_t)size, "state", json_string_value(json_object_get(vm, "state")) ?: "");
	free(b64);
	json_decref(g);
	return r;
}

struct stream {
	bool console;
	json_t *req;        /* console: {"vm", "offset"} */
	json_t *last;       /* state: name -> "state/operation" last sent */
	int64_t next_poll_ms, last_send_ms;
	bool ended;
};

static ssize_t sse_event(char *buf, size_t max, const char *event, json_t *data)
{
	char *d = json_dumps(data, JSON_COMPACT);
	int n = snprintf(buf, max, "event: %s\ndata: %s\n\n", event, d ? d : "{}");
	free(d);
	return n < 0 || (size_t)n >= max ? 0 : n;
}

/* The next piece of a stream; blocks (this connection has its own thread) until there is one,
 * a keep-alive comment is due, or the server stops. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct stream *s = cls;
	while (!stopping && !s->ended) {
		int64_t now = now_ms();
		if (now >= s->next_poll_ms) {
			s->next_poll_ms = now + (s->console ? 200 : 500);
			ssize_t n = 0;
			if (s->console) {
				/* what fits one event in buf: base64 grows it by 4/3, the rest is small */
				json_t *r = console_read(s->req, max > 1024 ? (max - 512) / 4 * 3 : 0);
				const char *data = json_string_value(json_object_get(r, "data"));
				if (!json_is_true(json_object_get(r, "ok")) || !strcmp(json_string_value(json_object_get(r, "state")) ?: "", "Off")) {
					if (data && *data) /* the last output first */
						n = sse_event(buf, max, "console", r);
					else {
						s->ended = true;
						n = sse_event(buf, max, "end", r);
					}
				} else if (data && *data) {
					n = sse_event(buf, max, "console", r);
				}
				if (json_is_true(json_object_get(r, "ok")))
					json_object_set(s->req, "offset", json_object_get(r, "offset"));
				json_decref(r);
			} else {
				json_t *q = json_pack("{s:s}", "op", "list");
				json_t *r = vmms(q, NULL);
				json_decref(q);
				size_t i;
				json_t *v;
				json_array_foreach(json_object_get(r, "vms"), i, v) {
					const char *name = json_string_value(json_object_get(v, "name"));
					char st[96];
					snprintf(st, sizeof(st), "%s/%s", json_string_value(json_object_get(v, "state")) ?: "",
						 json_string_value(json_object_get(v, "operation")) ?: "");
					const char *was = json_string_value(json_object_get(s->last, name ? name : ""));
					if (!name || (was && !strcmp(was, st)))
						continue;
					json_t *ev = json_pack("{s:s, s:O, s:O, s:O}", "name", name, "id", json_object_get(v, "id"), "state",
							       json_object_get(v, "state"), "operation", json_object_get(v, "operation"));
					n = sse_event(buf, max, "state", ev);
					json_decref(ev);
					if (n > 0) {
						json_object_set_new(s->last, name, json_string(st));
						s->next_poll_ms = now; /* more may be waiting */
					}
					break;
				}
				json_decref(r);
			}
			if (n > 0) {
				s->last_send_ms = now;
				return n;
			}
		}
		if (now - s->last_send_ms >= 10000) { /* keeps proxies and the idle timeout away */
			s->last_send_ms = now;
			return snprintf(buf, max, ": keep-alive\n\n");
		}
		usleep(50 * 1000);
	}
	return MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	json_decref(s->req);
	json_decref(s->last);
	free(s);
}

enum MHD_Result send_stream(struct MHD_Connection *c, bool console, json_t *req)
{
	struct stream *s = calloc(1, sizeof(*s));
	if (!s)
		return send_error(c, 500, "out of memory");
	s->console = console;
	s->req = json_incref(req);
	s->last = json_object();
	s->last_send_ms = now_ms();
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, stream_read, s, stream_free);
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	enum MHD_Result rc = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return rc;
}
