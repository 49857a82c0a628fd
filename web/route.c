/* The HTTP -> vmms request mapping (include/web/route.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "web/route.h"

/* Reader: Get-*. Operator: a VM's power, console and checkpoints (taking, applying, renaming).
 * Administrator: everything else (creating, changing, deleting, the host, switches, tokens). */
static const struct { const char *op; enum token_role role; } op_roles[] = {
	{ "list", ROLE_READER }, { "get", ROLE_READER }, { "events", ROLE_READER }, { "host", ROLE_READER },
	{ "ping", ROLE_READER }, { "job-status", ROLE_READER }, { "list-checkpoints", ROLE_READER },
	{ "list-switches", ROLE_READER }, { "list-nics", ROLE_READER },
	{ "start", ROLE_OPERATOR }, { "stop", ROLE_OPERATOR }, { "pause", ROLE_OPERATOR }, { "resume", ROLE_OPERATOR },
	{ "save", ROLE_OPERATOR }, { "console-input", ROLE_OPERATOR }, { "console-read", ROLE_OPERATOR },
	{ "console-stream", ROLE_OPERATOR }, { "checkpoint", ROLE_OPERATOR }, { "restore-checkpoint", ROLE_OPERATOR },
	{ "rename-checkpoint", ROLE_OPERATOR }, { "whoami", ROLE_READER }, { "state-stream", ROLE_READER },
	{ "new", ROLE_ADMINISTRATOR }, { "set", ROLE_ADMINISTRATOR }, { "set-firmware", ROLE_ADMINISTRATOR },
	{ "remove", ROLE_ADMINISTRATOR }, { "add-disk", ROLE_ADMINISTRATOR }, { "remove-disk", ROLE_ADMINISTRATOR },
	{ "set-disk", ROLE_ADMINISTRATOR }, { "set-processor", ROLE_ADMINISTRATOR },
	{ "measure", ROLE_READER }, { "enable-metering", ROLE_ADMINISTRATOR }, { "disable-metering", ROLE_ADMINISTRATOR },
	{ "reset-metering", ROLE_ADMINISTRATOR },
	{ "set-ic", ROLE_ADMINISTRATOR }, { "set-host", ROLE_ADMINISTRATOR }, { "remove-saved-state", ROLE_ADMINISTRATOR },
	{ "remove-checkpoint", ROLE_ADMINISTRATOR }, { "new-switch", ROLE_ADMINISTRATOR },
	{ "remove-switch", ROLE_ADMINISTRATOR }, { "add-nic", ROLE_ADMINISTRATOR }, { "remove-nic", ROLE_ADMINISTRATOR },
	{ "connect-nic", ROLE_ADMINISTRATOR }, { "disconnect-nic", ROLE_ADMINISTRATOR },
	{ "set-nic-vlan", ROLE_ADMINISTRATOR }, { "set-nic", ROLE_ADMINISTRATOR }, { "new-token", ROLE_ADMINISTRATOR },
	{ "list-tokens", ROLE_ADMINISTRATOR }, { "remove-token", ROLE_ADMINISTRATOR },
};

const struct web_path_key web_path_keys[] = {
	{ "path", false }, { "vhd_path", false }, { "new_vhd_path", true }, { "kernel", false },
	{ "initrd", false }, { "virtual_machine_path", false }, { "virtual_hard_disk_path", false }, { NULL, false },
};

enum token_role web_op_role(const char *op)
{
	for (size_t i = 0; op && i < sizeof(op_roles) / sizeof(op_roles[0]); i++)
		if (!strcmp(op, op_roles[i].op))
			return op_roles[i].role;
	return ROLE_NONE;
}

int web_json_depth(const char *s, size_t n)
{
	int depth = 0, max = 0;
	bool in_str = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				max = depth;
		} else if (c == '}' || c == ']') {
			if (--depth < 0)
				return -1;
		}
	}
	return depth || in_str ? -1 : max;
}

bool web_path_safe(const char *p, bool relative_ok)
{
	if (!p || !*p || (!relative_ok && *p != '/'))
		return false;
	for (const unsigned char *c = (const unsigned char *)p; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	const char *seg = p;
	for (;;) {
		const char *end = strchr(seg, '/');
		size_t len = end ? (size_t)(end - seg) : strlen(seg);
		if (seg != p && len == 0 && end) /* "//" */
			return false;
		if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		if (!end)
			return true;
		seg = end + 1;
	}
}

bool web_path_under(const char *p, const char *prefix)
{
	size_t n = strlen(prefix);
	while (n > 1 && prefix[n - 1] == '/')
		n--;
	if (strncmp(p, prefix, n))
		return false;
	return p[n] == '\0' || p[n] == '/' || (n == 1 && prefix[0] == '/');
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool web_url_decode(const char *s, size_t len, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				return false;
			c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f || c == '/' || o + 1 >= outlen)
			return false;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return o > 0;
}

#define MAX_SEGS 8

struct rest {
	const char *method;
	const char *pattern; /* segments after /api/v1; "{vm}" etc. capture */
	const char *op;
	enum web_kind kind;
	const char *extra;   /* a JSON object merged into the request ("stop ... turn_off") */
};

/* A capture {key} goes into the request as "key" ({op}: the op itself). */
static const struct rest routes[] = {
	{ "GET", "vms", "list", WEB_VMMS, NULL },
	{ "POST", "vms", "new", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}", "get", WEB_VMMS, NULL },
	{ "DELETE", "vms/{vm}", "remove", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/settings", "set", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/firmware", "set-firmware", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/start", "start", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/stop", "stop", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/turnoff", "stop", WEB_VMMS, "{\"turn_off\":true}" },
	{ "POST", "vms/{vm}/pause", "pause", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/resume", "resume", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/save", "save", WEB_VMMS, NULL },
	{ "DELETE", "vms/{vm}/savedstate", "remove-saved-state", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}/events", "events", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}/disks", "get", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/disks", "add-disk", WEB_VMMS, NULL },
	{ "DELETE", "vms/{vm}/disks", "remove-disk", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/disks/qos", "set-disk", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/processor", "set-processor", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}/metering", "measure", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/metering", "enable-metering", WEB_VMMS, NULL },
	{ "DELETE", "vms/{vm}/metering", "disable-metering", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/metering/reset", "reset-metering", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/integration-services", "set-ic", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}/checkpoints", "list-checkpoints", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/checkpoints", "checkpoint", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/checkpoints/{name}/restore", "restore-checkpoint", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/checkpoints/{name}/rename", "rename-checkpoint", WEB_VMMS, NULL },
	{ "DELETE", "vms/{vm}/checkpoints/{name}", "remove-checkpoint", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}/adapters", "list-nics", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/adapters", "add-nic", WEB_VMMS, NULL },
	{ "DELETE", "vms/{vm}/adapters/{name}", "remove-nic", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/adapters/{name}/connect", "connect-nic", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/adapters/{name}/disconnect", "disconnect-nic", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/adapters/{name}/vlan", "set-nic-vlan", WEB_VMMS, NULL },
	{ "POST", "vms/{vm}/adapters/{name}", "set-nic", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}/console", "console-read", WEB_CONSOLE_READ, NULL },
	{ "POST", "vms/{vm}/console", "console-input", WEB_VMMS, NULL },
	{ "GET", "vms/{vm}/console/stream", "console-stream", WEB_CONSOLE_STREAM, NULL },
	{ "GET", "adapters", "list-nics", WEB_VMMS, NULL },
	{ "GET", "switches", "list-switches", WEB_VMMS, NULL },
	{ "POST", "switches", "new-switch", WEB_VMMS, NULL },
	{ "GET", "switches/{name}", "list-switches", WEB_VMMS, NULL },
	{ "DELETE", "switches/{switch}", "remove-switch", WEB_VMMS, NULL },
	{ "GET", "host", "host", WEB_VMMS, NULL },
	{ "POST", "host", "set-host", WEB_VMMS, NULL },
	{ "GET", "jobs", "job-status", WEB_VMMS, NULL },
	{ "GET", "jobs/{id}", "job-status", WEB_VMMS, NULL },
	{ "GET", "tokens", "list-tokens", WEB_VMMS, NULL },
	{ "POST", "tokens", "new-token", WEB_VMMS, NULL },
	{ "DELETE", "tokens/{name}", "remove-token", WEB_VMMS, NULL },
	{ "GET", "events", "state-stream", WEB_STATE_STREAM, NULL },
	{ "GET", "whoami", "whoami", WEB_WHOAMI, NULL },
	{ "POST", "op/{op}", NULL, WEB_VMMS, NULL },
};

static int split(const char *pattern, char segs[MAX_SEGS][32])
{
	int n = 0;
	const char *p = pattern;
	while (*p && n < MAX_SEGS) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		snprintf(segs[n++], 32, "%.*s", (int)len, p);
		p += len + (e ? 1 : 0);
	}
	return n;
}

void web_route_free(struct web_route *r)
{
	json_decref(r->req);
	r->req = NULL;
}

#define SEG_MAX 512

int web_route(const char *method, const char *url, json_t *body, struct web_route *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	static const char base[] = "/api/v1/";
	if (!method || !url || strlen(url) > WEB_MAX_URL || strncmp(url, base, sizeof(base) - 1)) {
		snprintf(err, errlen, "no such endpoint (the API lives under /api/v1/)");
		return 404;
	}
	if (body && !json_is_object(body)) {
		snprintf(err, errlen, "the body must be a JSON object");
		return 400;
	}
	/* The URL's segments, decoded. */
	char segs[MAX_SEGS][SEG_MAX];
	int n = 0;
	const char *p = url + sizeof(base) - 1;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (n == MAX_SEGS || !web_url_decode(p, len, segs[n], sizeof(segs[n]))) {
			snprintf(err, errlen, "malformed URL");
			return n == MAX_SEGS ? 404 : 400;
		}
		n++;
		p += len;
		if (*p == '/' && !*++p) /* a trailing slash */
			break;
	}
	bool path_known = false;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		char pat[MAX_SEGS][32];
		int pn = split(routes[i].pattern, pat);
		if (pn != n)
			continue;
		bool match = true;
		for (int k = 0; k < n && match; k++)
			match = pat[k][0] == '{' || !strcmp(pat[k], segs[k]);
		if (!match)
			continue;
		path_known = true;
		if (strcmp(method, routes[i].method))
			continue;
		json_t *req = body ? json_deep_copy(body) : json_object();
		const char *op = routes[i].op;
		for (int k = 0; k < n; k++) {
			if (pat[k][0] != '{')
				continue;
			if (!strcmp(pat[k], "{op}"))
				op = segs[k];
			else
				json_object_set_new(req, strndupa(pat[k] + 1, strlen(pat[k]) - 2), json_string(segs[k]));
		}
		if (routes[i].extra) {
			json_t *x = json_loads(routes[i].extra, 0, NULL);
			json_object_update(req, x);
			json_decref(x);
		}
		/* The generic form takes the op from the URL; a body naming another op is refused
		 * rather than guessed at (authorization goes by the URL's). */
		const char *body_op = json_string_value(json_object_get(req, "op"));
		if (json_object_get(req, "op") && (!body_op || strcmp(body_op, op))) {
			json_decref(req);
			snprintf(err, errlen, "the body's \"op\" differs from the endpoint's");
			return 400;
		}
		enum web_kind kind = routes[i].kind;
		if (!routes[i].op) { /* the generic form: the front end's own ops too, but no streams */
			kind = !strcmp(op, "console-read") ? WEB_CONSOLE_READ : !strcmp(op, "whoami") ? WEB_WHOAMI : WEB_VMMS;
			if (!strcmp(op, "console-stream") || !strcmp(op, "state-stream"))
				op = "";
		}
		enum token_role role = web_op_role(op);
		if (role == ROLE_NONE) {
			json_decref(req);
			snprintf(err, errlen, "the op '%.64s' is not offered over the web API", op);
			return 404;
		}
		if (kind == WEB_VMMS)
			json_object_set_new(req, "op", json_string(op));
		out->kind = kind;
		out->role = role;
		snprintf(out->op, sizeof(out->op), "%.31s", op);
		out->req = req;
		return 0;
	}
	snprintf(err, errlen, path_known ? "method %.16s is not allowed here" : "no such endpoint", method);
	return path_known ? 405 : 404;
}
