/* vmmsweb: the HTTPS front end of vmms (docs/web.md): options, the request handler, who is
 * asking (an API token, or a PAM login session with its CSRF header).
 *   vmmsweb [--listen ADDR:PORT] [--socket PATH] [--state DIR] [--cert FILE --key FILE] ...
 * Each request is authenticated, authorized by role for the vmms op it maps to
 * (include/web/route.h), audited, and forwarded to vmms over its Unix socket; the TLS and
 * HTTP parsing never run in the process that owns the inventory. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "login.h"
#include "tls.h"
#include "web/ratelimit.h"
#include "web/route.h"
#include "web/session.h"

#define WEB_MAX_BODY (64 * 1024)
#define DEFAULT_SOCKET "/run/viridian/vmms.sock"
#define DEFAULT_STATE "/var/lib/viridian/web"
#define DEFAULT_LISTEN "127.0.0.1:8443"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the limiter and the sessions */
static struct web_ratelimit rl;
static struct web_sessions sessions;

/* ---- host paths in requests ---- */

/* A remote caller may name only files under the host's VM and disk folders. */
static bool paths_allowed(json_t *req, char *err, size_t errlen)
{
	json_t *host = NULL;
	bool ok = true;
	for (int i = 0; ok && web_path_keys[i].key; i++) {
		json_t *v = json_object_get(req, web_path_keys[i].key);
		if (!v)
			continue;
		const char *p = json_string_value(v);
		if (!web_path_safe(p, web_path_keys[i].relative_ok)) {
			snprintf(err, errlen, "\"%s\": not an acceptable path (absolute, no . or .. components, no control characters)",
				 web_path_keys[i].key);
			ok = false;
			break;
		}
		if (*p != '/') /* relative: vmms resolves it under the host's disk folder */
			continue;
		if (!host) {
			json_t *q = json_pack("{s:s}", "op", "host");
			host = vmms(q, NULL);
			json_decref(q);
		}
		json_t *h = json_object_get(host, "host");
		const char *roots[] = { json_string_value(json_object_get(h, "virtual_machine_path")),
					json_string_value(json_object_get(h, "virtual_hard_disk_path")) };
		char real[PATH_MAX];
		const char *check[] = { p, realpath(p, real) ? real : NULL };
		for (int k = 0; k < 2 && ok; k++) {
			if (!check[k])
				continue;
			bool under = false;
			for (int r = 0; r < 2; r++)
				under |= roots[r] && web_path_under(check[k], roots[r]);
			if (!under) {
				snprintf(err, errlen, "\"%s\": %s is outside the host's virtual machine and disk folders",
					 web_path_keys[i].key, p);
				ok = false;
			}
		}
	}
	json_decref(host);
	return ok;
}

/* ---- requests ---- */

struct upload {
	char *body;
	size_t len;
	bool too_big;
	size_t discarded; /* of a body too big: read and dropped, so the client sees the 413 */
};

#define WEB_MAX_DISCARD (1u << 20)

/* Query arguments (undecoded: see no_unescape) into the request object; a malformed one
 * leaves the key "\001bad", which no request has, for the caller to refuse. */
static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	char k[64], v[512];
	if (!key || !value || json_object_size(cls) >= 16 || !web_url_decode(key, strlen(key), k, sizeof(k)) ||
	    (*value && !web_url_decode(value, strlen(value), v, sizeof(v)))) {
		json_object_set_new(cls, "\001bad", json_true());
		return MHD_NO;
	}
	json_object_set_new(cls, k, json_string(*value ? v : ""));
	return MHD_YES;
}

/* The URL reaches the handler as sent: web_url_decode decodes each segment once, so a %2F
 * cannot become a path separator and a %00 is refused rather than cut at. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void client_addr(struct MHD_Connection *c, char *out, size_t len)
{
	snprintf(out, len, "?");
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

struct who {
	const char *client;
	const char *user;
	enum token_role role;
	const char *method, *url;
};

/* A refusal: audited, then answered with a JSON error. */
static enum MHD_Result deny(struct MHD_Connection *c, const struct who *w, const char *op, json_t *params, unsigned status,
			    const char *msg)
{
	audit(w->client, w->user, w->role, w->method, w->url, op, params, status, msg);
	return send_error(c, status, msg);
}

/* The request body as a JSON object (depth-checked before jansson sees it); NULL with err. */
static json_t *parse_body(const struct upload *u, char *err, size_t errlen)
{
	int depth = web_json_depth(u->body, u->len);
	json_error_t je;
	json_t *body = NULL;
	if (depth < 0 || depth > WEB_MAX_JSON_DEPTH)
		snprintf(err, errlen, depth < 0 ? "the body is not JSON" : "the body nests deeper than %d levels", WEB_MAX_JSON_DEPTH);
	else if (!(body = json_loadb(u->body, u->len, JSON_REJECT_DUPLICATES, &je)))
		snprintf(err, errlen, "the body is not JSON: %s", je.text);
	else if (!json_is_object(body)) {
		snprintf(err, errlen, "the body must be a JSON object");
		json_decref(body);
		body = NULL;
	}
	return body;
}

#define SESSION_COOKIE "vmmsweb_session"

static bool valid_user_name(const char *u)
{
	if (!u || !*u || strlen(u) > 32 || *u == '-')
		return false;
	for (const char *p = u; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("._-", *p)))
			return false;
	return true;
}

/* POST /api/v1/login {"user","password"}: a host account through PAM -> a session cookie and
 * the CSRF token every later request must carry. */
static enum MHD_Result do_login(struct MHD_Connection *c, struct who *w, const struct upload *u)
{
	char err[512];
	if (strcmp(w->method, "POST"))
		return deny(c, w, "login", NULL, 405, "log in with POST");
	json_t *body = u->len ? parse_body(u, err, sizeof(err)) : NULL;
	if (!body)
		return deny(c, w, "login", NULL, 400, u->len ? err : "the body must be {\"user\":...,\"password\":...}");
	const char *user = json_string_value(json_object_get(body, "user"));
	const char *pass = json_string_value(json_object_get(body, "password"));
	char name[40];
	snprintf(name, sizeof(name), "%s", valid_user_name(user) ? user : "");
	if (!name[0] || !pass || strlen(pass) > 512) {
		json_decref(body);
		return deny(c, w, "login", NULL, 400, "the body must be {\"user\":NAME,\"password\":...} (a valid account name)");
	}
	enum token_role role = ROLE_NONE;
	int rc = web_login(cfg.pam_service, cfg.login_roles, name, pass, &role, err, sizeof(err));
	json_decref(body);
	char who[48];
	snprintf(who, sizeof(who), "pam:%s", name);
	w->user = who;
	json_t *params = json_pack("{s:s}", "user", name);
	if (rc < 0) {
		pthread_mutex_lock(&lock);
		web_rl_fail(&rl, w->client, now_ms());
		pthread_mutex_unlock(&lock);
		enum MHD_Result r = deny(c, w, "login", params, 401, err);
		json_decref(params);
		return r;
	}
	if (role == ROLE_NONE) {
		snprintf(err, sizeof(err), "the account %s has no Viridian role", name);
		enum MHD_Result r = deny(c, w, "login", params, 403, err);
		json_decref(params);
		return r;
	}
	unsigned char rnd[64];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		json_decref(params);
		return deny(c, w, "login", NULL, 500, "no random bytes for a session");
	}
	pthread_mutex_lock(&lock);
	struct web_session s = *web_session_new(&sessions, name, role, rnd, now_ms());
	pthread_mutex_unlock(&lock);
	w->role = role;
	audit(w->client, who, role, w->method, w->url, "login", params, 200, NULL);
	json_decref(params);
	json_t *reply = json_pack("{s:b, s:s, s:s, s:s, s:I}", "ok", 1, "user", who, "role", token_role_name(role), "csrf",
				  s.csrf, "expires_in_s", (json_int_t)(WEB_SESSION_TTL_MS / 1000));
	char cookie[256];
	snprintf(cookie, sizeof(cookie), SESSION_COOKIE "=%s; Path=/api/; Max-Age=%lld; HttpOnly; Secure; SameSite=Strict", s.id,
		 (long long)(WEB_SESSION_TTL_MS / 1000));
	enum MHD_Result r = send_json_cookie(c, 200, reply, cookie);
	json_decref(reply);
	return r;
}

static enum MHD_Result handle(struct MHD_Connection *c, const char *url, const char *method, struct upload *u)
{
	char client[64], err[512], user[TOKEN_NAME_MAX + 8] = "";
	bool down = false;
	client_addr(c, client, sizeof(client));
	struct who w = { client, NULL, ROLE_NONE, method, url };
	if (u->too_big)
		return deny(c, &w, NULL, NULL, 413, "the request body is larger than 64 KiB");
	enum MHD_Result src;
	if (static_file(c, url, method, &src))
		return src;
	if (strncmp(url, "/api/v1/", 8))
		return send_error(c, 404, "no such page");
	int retry;
	pthread_mutex_lock(&lock);
	bool blocked = web_rl_blocked(&rl, client, now_ms(), &retry);
	pthread_mutex_unlock(&lock);
	if (blocked) {
		const char *msg = "too many failed authentications: try again later";
		json_t *b = json_pack("{s:b, s:s, s:i}", "ok", 0, "error", msg, "retry_after_s", retry);
		audit(client, NULL, ROLE_NONE, method, url, NULL, NULL, 429, msg);
		enum MHD_Result rc = send_json(c, 429, b);
		json_decref(b);
		return rc;
	}

	if (!strcmp(url, "/api/v1/login"))
		return do_login(c, &w, u);

	/* Who: a bearer token, or a login session's cookie with its CSRF header. */
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, SESSION_COOKIE);
	if (!auth && cookie) {
		const char *csrf = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CSRF-Token");
		pthread_mutex_lock(&lock);
		const struct web_session *sp = web_session_find(&sessions, cookie, now_ms());
		struct web_session s = sp ? *sp : (struct web_session){ 0 };
		bool csrf_ok = web_session_csrf_ok(sp, csrf);
		if (sp && csrf_ok && !strcmp(url, "/api/v1/logout"))
			web_session_end(&sessions, cookie);
		pthread_mutex_unlock(&lock);
		if (!sp)
			return deny(c, &w, NULL, NULL, 401, "the session has expired or ended: log in again");
		snprintf(user, sizeof(user), "pam:%s", s.user);
		w.user = user;
		w.role = s.role;
		if (!csrf_ok)
			return deny(c, &w, NULL, NULL, 403, "the X-CSRF-Token header is missing or wrong");
		if (!strcmp(url, "/api/v1/logout")) {
			audit(client, user, w.role, method, url, "logout", NULL, 200, NULL);
			json_t *b = json_pack("{s:b}", "ok", 1);
			enum MHD_Result rc = send_json_cookie(c, 200, b, SESSION_COOKIE "=; Path=/api/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
			json_decref(b);
			return rc;
		}
	} else {
		if (!auth || strncasecmp(auth, "Bearer ", 7))
			return deny(c, &w, NULL, NULL, 401,
				    "authentication required: send Authorization: Bearer <token> (hv New-VMManagementToken), or log in");
		json_t *q = json_pack("{s:s, s:s}", "op", "check-token", "token", auth + 7);
		bool down;
		json_t *who = vmms(q, &down);
		json_decref(q);
		if (down) {
			json_decref(who);
			return deny(c, &w, NULL, NULL, 502, "vmms does not answer");
		}
		if (!json_is_true(json_object_get(who, "ok"))) {
			pthread_mutex_lock(&lock);
			web_rl_fail(&rl, client, now_ms());
			pthread_mutex_unlock(&lock);
			snprintf(err, sizeof(err), "%s", json_string_value(json_object_get(who, "error")) ?: "unknown token");
			json_decref(who);
			return deny(c, &w, NULL, NULL, 401, err);
		}
		json_t *tok = json_object_get(who, "token");
		snprintf(user, sizeof(user), "token:%s", json_string_value(json_object_get(tok, "name")) ?: "");
		w.user = user;
		w.role = token_role_parse(json_string_value(json_object_get(tok, "role")));
		json_decref(who);
	}

	/* What: the body (or the query arguments), then the route. */
	json_t *body = NULL;
	if (u->len) {
		if (!(body = parse_body(u, err, sizeof(err))))
			return deny(c, &w, NULL, NULL, 400, err);
	} else {
		body = json_object();
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_query, body);
		if (json_object_get(body, "\001bad")) {
			json_decref(body);
			return deny(c, &w, NULL, NULL, 400, "malformed query arguments");
		}
	}
	struct web_route rt;
	int st = web_route(method, url, body, &rt, err, sizeof(err));
	json_decref(body);
	if (st)
		return deny(c, &w, NULL, NULL, (unsigned)st, err);
	enum MHD_Result rc;
	if (w.role < rt.role) {
		snprintf(err, sizeof(err), "access denied: the role %s may not run '%s' (it needs %s)", token_role_name(w.role), rt.op,
			 token_role_name(rt.role));
		rc = deny(c, &w, rt.op, rt.req, 403, err);
	} else if (!paths_allowed(rt.req, err, sizeof(err))) {
		rc = deny(c, &w, rt.op, rt.req, 400, err);
	} else if (rt.kind == WEB_CONSOLE_STREAM || rt.kind == WEB_STATE_STREAM) {
		audit(client, user, w.role, method, url, rt.op, rt.req, 200, NULL);
		rc = send_stream(c, rt.kind == WEB_CONSOLE_STREAM, rt.req);
	} else {
		json_t *reply = rt.kind == WEB_WHOAMI ? json_pack("{s:b, s:s, s:s}", "ok", 1, "user", user, "role", token_role_name(w.role))
				: rt.kind == WEB_CONSOLE_READ ? console_read(rt.req, WEB_CONSOLE_CHUNK)
							      : vmms(rt.req, &down);
		unsigned status = rt.kind == WEB_VMMS && down ? 502 : reply_status(reply);
		audit(client, user, w.role, method, url, rt.op, rt.req, status, json_string_value(json_object_get(reply, "error")));
		rc = send_json(c, status, reply);
		json_decref(reply);
	}
	web_route_free(&rt);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *data, size_t *data_size, void **con_cls)
{
	(void)cls;
	(void)version;
	struct upload *u = *con_cls;
	if (!u) {
		if (!(u = calloc(1, sizeof(*u))))
			return MHD_NO;
		*con_cls = u;
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoull(cl, NULL, 10) > WEB_MAX_BODY)
			u->too_big = true; /* answered at once, the body unread */
		else
			return MHD_YES;
	}
	if (*data_size) {
		if (!u->too_big && u->len + *data_size > WEB_MAX_BODY) {
			u->too_big = true;
			free(u->body);
			u->body = NULL;
			u->len = 0;
		}
		if (u->too_big) {
			u->discarded += *data_size;
			if (u->discarded > WEB_MAX_DISCARD)
				return MHD_NO; /* no one sends that much by mistake */
		} else {
			char *b = realloc(u->body, u->len + *data_size + 1);
			if (!b)
				return MHD_NO;
			memcpy(b + u->len, data, *data_size);
			u->body = b;
			u->len += *data_size;
			u->body[u->len] = '\0';
		}
		*data_size = 0;
		return MHD_YES;
	}
	*data_size = 0;
	return handle(c, url, method, u);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why)
{
	(void)cls;
	(void)c;
	(void)why;
	struct upload *u = *con_cls;
	if (u) {
		free(u->body);
		free(u);
	}
	*con_cls = NULL;
}

/* "127.0.0.1:8443", "[::1]:8443", "0.0.0.0:8443"; port 0: any free one. */
static bool parse_listen(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	char host[64];
	const char *colon;
	if (*s == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
			return false;
		snprintf(host, sizeof(host), "%.*s", (int)(end - s - 1), s + 1);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host))
			return false;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || port < 0 || port > 65535)
		return false;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		return true;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		return true;
	}
	return false;
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmmsweb [--listen ADDR:PORT] [--socket PATH] [--state DIR] [--cert FILE --key FILE] [--www DIR]\n"
		   "               [--pam-service NAME] [--login-roles FILE]\n"
		   "  --listen ADDR:PORT  where to serve HTTPS (default " DEFAULT_LISTEN "; port 0: any free one)\n"
		   "  --socket PATH       vmms's socket (default $VIRIDIAN_SOCKET or " DEFAULT_SOCKET ")\n"
		   "  --state DIR         the certificate, its key and audit.log (default " DEFAULT_STATE ")\n"
		   "  --cert/--key FILE   a certificate to use (PEM) instead of the self-signed one made in DIR\n"
		   "  --www DIR           the console's static files (default " VIRIDIAN_WWW_DIR ")\n"
		   "  --pam-service NAME  PAM service for POST /api/v1/login (default viridian)\n"
		   "  --login-roles FILE  lines \"user NAME ROLE\" / \"group NAME ROLE\" (default: root, and the groups\n"
		   "                      viridian-admins, viridian-operators, viridian-readers)\n");
}

int main(int argc, char **argv)
{
	const char *listen = DEFAULT_LISTEN, *sock = getenv("VIRIDIAN_SOCKET"), *state = DEFAULT_STATE;
	const char *cert_path = NULL, *key_path = NULL, *www = VIRIDIAN_WWW_DIR;
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' }, { "socket", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'd' },  { "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },    { "www", required_argument, NULL, 'w' },
		{ "pam-service", required_argument, NULL, 'p' }, { "login-roles", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int o;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case 'l': listen = optarg; break;
		case 's': sock = optarg; break;
		case 'd': state = optarg; break;
		case 'c': cert_path = optarg; break;
		case 'k': key_path = optarg; break;
		case 'w': www = optarg; break;
		case 'p': cfg.pam_service = optarg; break;
		case 'R': cfg.login_roles = optarg; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "vmmsweb: %s %s (see vmmsweb --help)\n", o == ':' ? "a value is needed after" : "unknown option",
				argv[optind - 1]);
			return 1;
		}
	}
	if (optind < argc || !cert_path != !key_path) {
		fprintf(stderr, "vmmsweb: %s (see vmmsweb --help)\n",
			optind < argc ? "unexpected argument" : "--cert and --key go together");
		return 1;
	}
	struct sockaddr_storage ss;
	if (!parse_listen(listen, &ss)) {
		fprintf(stderr, "vmmsweb: --listen %s: give ADDR:PORT (127.0.0.1:8443, [::1]:8443)\n", listen);
		return 1;
	}
	snprintf(cfg.socket, sizeof(cfg.socket), "%s", sock && *sock ? sock : DEFAULT_SOCKET);
	snprintf(cfg.www, sizeof(cfg.www), "%s", www);
	if (!cfg.pam_service)
		cfg.pam_service = "viridian";
	snprintf(cfg.state, sizeof(cfg.state), "%s", state);
	snprintf(cfg.audit, sizeof(cfg.audit), "%s/audit.log", cfg.state);
	if (mkdir(cfg.state, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "vmmsweb: --state %s: %s\n", cfg.state, strerror(errno));
		return 1;
	}
	char gen_cert[PATH_MAX + 16], gen_key[PATH_MAX + 16], fp[65], err[512];
	snprintf(gen_cert, sizeof(gen_cert), "%s/cert.pem", cfg.state);
	snprintf(gen_key, sizeof(gen_key), "%s/key.pem", cfg.state);
	char *cert, *key;
	if (web_tls_load(cert_path ? cert_path : gen_cert, key_path ? key_path : gen_key, !cert_path, &cert, &key, fp, err,
			 sizeof(err)) < 0) {
		fprintf(stderr, "vmmsweb: %s\n", err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	unsigned flags = MHD_USE_TLS | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_HTTPS_MEM_KEY, key,
		MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_PRIORITIES, "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)32,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "vmmsweb: cannot serve HTTPS on %s: %s\n", listen, strerror(errno));
		return 1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	char shown[96];
	snprintf(shown, sizeof(shown), "%.*s%u", (int)(strrchr(listen, ':') - listen + 1), listen, di ? di->port : 0);
	fprintf(stderr, "vmmsweb: listening on https://%s (vmms at %s), certificate SHA-256 %s\n", shown, cfg.socket, fp);
	while (!stopping)
		pause();
	fprintf(stderr, "vmmsweb: exiting\n");
	MHD_stop_daemon(d);
	free(cert);
	free(key);
	return 0;
}
