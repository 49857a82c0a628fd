/* -ComputerName: the cmdlets' vmms requests sent to a remote vmmsweb over HTTPS (libcurl) as
 * POST /api/v1/op/<op>, authenticated by an API token or a host account's login session; the
 * server's certificate is pinned on first use in ~/.config/viridian/known_hosts (docs/web.md). */
#include "cmdlet.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_PORT 8443
#define MAX_REPLY (64u << 20)

static struct {
	char target[300];      /* "host:port", the known_hosts key */
	char url_host[256];    /* host for the URL ("[::1]" kept bracketed) */
	char token[256];
	char user[33];         /* -Credential USER: a host account, logged in on first use */
	char password[513];
	char csrf[65];         /* the login session's CSRF token ("" before the login) */
	CURL *curl;
	char pinned[65];       /* the fingerprint known_hosts has ("" none) */
	int pinned_line;
	char seen[65];         /* what the server showed */
	char known_hosts[PATH_MAX];
} rc;

bool remote_active(void)
{
	return rc.target[0] != '\0';
}

static void known_hosts_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	if (xdg && *xdg)
		snprintf(rc.known_hosts, sizeof(rc.known_hosts), "%s/viridian/known_hosts", xdg);
	else
		snprintf(rc.known_hosts, sizeof(rc.known_hosts), "%s/.config/viridian/known_hosts", home ? home : ".");
}

static void load_pin(void)
{
	FILE *f = fopen(rc.known_hosts, "re");
	char line[512];
	for (int n = 1; f && fgets(line, sizeof(line), f); n++) {
		char host[300], fp[80];
		if (sscanf(line, "%299s %79s", host, fp) == 2 && !strcasecmp(host, rc.target) && strlen(fp) == 64) {
			snprintf(rc.pinned, sizeof(rc.pinned), "%.64s", fp);
			rc.pinned_line = n;
			break;
		}
	}
	if (f)
		fclose(f);
}

static int mkdirs_for(const char *file)
{
	char d[PATH_MAX];
	snprintf(d, sizeof(d), "%s", file);
	for (char *p = d + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(d, 0700) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return 0;
}

static void save_pin(void)
{
	FILE *f = mkdirs_for(rc.known_hosts) == 0 ? fopen(rc.known_hosts, "ae") : NULL;
	if (!f) {
		fprintf(stderr, "hv: warning: cannot write %s: %s (the certificate is not pinned)\n", rc.known_hosts, strerror(errno));
		return;
	}
	fprintf(f, "%s %s\n", rc.target, rc.seen);
	fclose(f);
	fprintf(stderr, "hv: pinned the certificate of %s (SHA-256 %s) in %s\n", rc.target, rc.seen, rc.known_hosts);
	snprintf(rc.pinned, sizeof(rc.pinned), "%s", rc.seen);
}

/* OpenSSL's verdict on the server's certificate: it is the pinned one, or there is none yet
 * (trust on first use). The CA chain does not matter; the pin does. */
static int verify_cert(X509_STORE_CTX *x, void *arg)
{
	(void)arg;
	X509 *cert = X509_STORE_CTX_get0_cert(x);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (!cert || !X509_digest(cert, EVP_sha256(), md, &len) || len != 32)
		return 0;
	for (unsigned i = 0; i < 32; i++)
		snprintf(rc.seen + 2 * i, 3, "%02x", md[i]);
	return !rc.pinned[0] || !strcasecmp(rc.pinned, rc.seen);
}

static CURLcode ssl_ctx_setup(CURL *curl, void *ctx, void *arg)
{
	(void)curl;
	SSL_CTX_set_cert_verify_callback(ctx, verify_cert, arg);
	return CURLE_OK;
}

/* The account's password: asked on the terminal without echo, else the first line of stdin. */
static int read_password(char *err, size_t errlen)
{
	bool tty = isatty(0);
	struct termios saved, quiet;
	if (tty) {
		fprintf(stderr, "Password for %s@%s: ", rc.user, rc.target);
		if (tcgetattr(0, &saved) == 0) {
			quiet = saved;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(0, TCSANOW, &quiet);
		}
	}
	bool got = fgets(rc.password, sizeof(rc.password), stdin) != NULL;
	if (tty) {
		tcsetattr(0, TCSANOW, &saved);
		fputc('\n', stderr);
	}
	rc.password[strcspn(rc.password, "\r\n")] = '\0';
	if (!got || !rc.password[0]) {
		snprintf(err, errlen, "-Credential %s: no password given", rc.user);
		return -1;
	}
	return 0;
}

int remote_set(const char *computer, const char *credential, char *err, size_t errlen)
{
	const char *colon = computer[0] == '[' ? strstr(computer, "]:") : strrchr(computer, ':');
	if (computer[0] == '[' && colon)
		colon++;
	size_t hlen = colon ? (size_t)(colon - computer) : strlen(computer);
	long port = DEFAULT_PORT;
	if (colon) {
		char *end;
		port = strtol(colon + 1, &end, 10);
		if (!colon[1] || *end || port < 1 || port > 65535) {
			snprintf(err, errlen, "-ComputerName %s: the port must be a number from 1 to 65535", computer);
			return -1;
		}
	}
	if (!hlen || hlen >= 256) {
		snprintf(err, errlen, "-ComputerName '%s' is not HOST[:PORT]", computer);
		return -1;
	}
	for (size_t i = 0; i < hlen; i++)
		if (!isalnum((unsigned char)computer[i]) && !strchr(".-:[]_", computer[i])) {
			snprintf(err, errlen, "-ComputerName '%s' is not HOST[:PORT]", computer);
			return -1;
		}
	snprintf(rc.url_host, sizeof(rc.url_host), "%.*s", (int)hlen, computer);
	snprintf(rc.target, sizeof(rc.target), "%s:%ld", rc.url_host, port);
	for (char *p = rc.target; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	/* -Credential: a file holding a token, or a host account's name (its password asked for);
	 * without it, $VIRIDIAN_TOKEN. */
	const char *tok = getenv("VIRIDIAN_TOKEN");
	FILE *f = credential ? fopen(credential, "re") : NULL;
	if (credential && !f && !strchr(credential, '/') && strlen(credential) < sizeof(rc.user) && *credential != '-') {
		snprintf(rc.user, sizeof(rc.user), "%s", credential);
		if (read_password(err, errlen) < 0)
			return -1;
	} else if (credential) {
		if (!f) {
			snprintf(err, errlen, "-Credential %s: %s (give a file holding an API token, or a user name)", credential,
				 strerror(errno));
			return -1;
		}
		if (!fgets(rc.token, sizeof(rc.token), f))
			rc.token[0] = '\0';
		rc.token[strcspn(rc.token, "\r\n \t")] = '\0';
	} else if (tok) {
		snprintf(rc.token, sizeof(rc.token), "%s", tok);
	}
	if (f)
		fclose(f);
	if (!rc.token[0] && !rc.user[0]) {
		snprintf(err, errlen, "-ComputerName needs a token: -Credential TOKENFILE or $VIRIDIAN_TOKEN (or -Credential USER)");
		return -1;
	}
	for (char *p = rc.token; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
			snprintf(err, errlen, "the token holds characters a token does not have");
			return -1;
		}
	known_hosts_path();
	load_pin();
	return 0;
}

struct buf {
	char *p;
	size_t n;
	bool over;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t len = size * nmemb;
	if (b->n + len > MAX_REPLY) {
		b->over = true;
		return 0;
	}
	char *p = realloc(b->p, b->n + len + 1);
	if (!p)
		return 0;
	memcpy(p + b->n, data, len);
	b->p = p;
	b->n += len;
	b->p[b->n] = '\0';
	return len;
}

/* One POST to vmmsweb; its reply object, or NULL with err (the pinning error among them). */
static json_t *post(const char *path, json_t *req, char *err, size_t errlen)
{
	if (!rc.curl) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc.curl = curl_easy_init();
		if (!rc.curl) {
			snprintf(err, errlen, "libcurl does not start");
			return NULL;
		}
		curl_easy_setopt(rc.curl, CURLOPT_COOKIEFILE, ""); /* the login session's cookie, in memory */
	}
	CURL *c = rc.curl;
	char url[512], auth[300];
	snprintf(url, sizeof(url), "https://%s:%s/api/v1/%s", rc.url_host, strrchr(rc.target, ':') + 1, path);
	if (rc.token[0])
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", rc.token);
	else
		snprintf(auth, sizeof(auth), "X-CSRF-Token: %s", rc.csrf);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	char *body = json_dumps(req, JSON_COMPACT);
	struct buf b = { 0 };
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "{}");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L); /* so OpenSSL asks verify_cert */
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L); /* the pin names the server, not its name */
	curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_setup);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 90L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	bool first = !rc.pinned[0];
	rc.seen[0] = '\0';
	CURLcode res = curl_easy_perform(c);
	curl_slist_free_all(h);
	free(body);
	json_t *reply = NULL;
	if (res != CURLE_OK) {
		if (rc.seen[0] && rc.pinned[0] && strcasecmp(rc.seen, rc.pinned))
			snprintf(err, errlen,
				 "the certificate of %s has CHANGED: it is SHA-256 %s, but %s line %d pins %s. Someone may be "
				 "intercepting the connection (or the host has a new certificate: if you trust it, delete that line)",
				 rc.target, rc.seen, rc.known_hosts, rc.pinned_line, rc.pinned);
		else
			snprintf(err, errlen, "cannot reach vmmsweb at https://%s: %s", rc.target,
				 b.over ? "the reply is too large" : curl_easy_strerror(res));
	} else {
		long status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (first && rc.seen[0])
			save_pin();
		reply = b.p ? json_loads(b.p, 0, NULL) : NULL;
		if (!json_is_object(reply)) {
			json_decref(reply);
			reply = NULL;
			snprintf(err, errlen, "vmmsweb at %s answered HTTP %ld without a JSON object", rc.target, status);
		}
	}
	free(b.p);
	return reply;
}

json_t *remote_call(json_t *req, char *err, size_t errlen)
{
	const char *op = json_string_value(json_object_get(req, "op"));
	if (!op) {
		snprintf(err, errlen, "the request has no op");
		return NULL;
	}
	if (rc.user[0] && !rc.csrf[0]) { /* -Credential USER: log in first */
		json_t *l = json_pack("{s:s, s:s}", "user", rc.user, "password", rc.password);
		json_t *r = post("login", l, err, errlen);
		json_decref(l);
		explicit_bzero(rc.password, sizeof(rc.password));
		const char *csrf = json_string_value(json_object_get(r, "csrf"));
		if (!r || !csrf || strlen(csrf) >= sizeof(rc.csrf))
			return r; /* the refusal, for the caller to print */
		snprintf(rc.csrf, sizeof(rc.csrf), "%s", csrf);
		json_decref(r);
	}
	char path[64];
	snprintf(path, sizeof(path), "op/%.40s", op);
	return post(path, req, err, errlen);
}

char *cli_host_path(const char *p)
{
	if (!remote_active())
		return realpath(p, NULL);
	return p && p[0] == '/' ? strdup(p) : NULL; /* a file on the remote host: its path as given */
}
