/* TLS for live migration (include/worker/migrate_tls.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "worker/migrate_tls.h"

#define RELAY_BUF (64u << 10)
#define END_WAIT_S 10
#define IDLE_TIMEOUT_MS 60000 /* as the stream's own socket timeouts */

struct migrate_tls {
	SSL_CTX *ctx;
	SSL *ssl;
	int net;                 /* the TCP socket */
	int app;                 /* the relay's end of the plain socket pair */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	bool done;
};

static void ssl_error(char *err, size_t errlen, const char *what, SSL *ssl)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (v != X509_V_OK)
		snprintf(err, errlen, "%s: the peer's certificate is not trusted: %s", what, X509_verify_cert_error_string(v));
	else
		snprintf(err, errlen, "%s: %s", what, e ? buf : "the peer closed the connection (it may not trust this host's certificate)");
	ERR_clear_error();
}

static SSL_CTX *make_ctx(bool server, const struct migrate_tls_config *c, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		ssl_error(err, errlen, "TLS", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	const char *what = NULL, *path = NULL;
	if (!c->cert || SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1)
		what = "this host's certificate", path = c->cert;
	else if (!c->key || SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		what = "this host's private key", path = c->key;
	else if (!c->trust || SSL_CTX_load_verify_locations(ctx, c->trust, NULL) != 1)
		what = "the trusted certificates", path = c->trust;
	if (what) {
		char msg[160];
		snprintf(msg, sizeof(msg), "TLS: cannot load %s (%s)", what, path ? path : "none given");
		ssl_error(err, errlen, msg, NULL);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* A listed self-signed certificate is an anchor by itself. */
	X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0); /* one connection: no resumption */
	return ctx;
}

/* The relay: plain bytes from app go out through TLS, TLS records in go to app, both ways at
 * once, non-blocking, until app is closed and everything from it is sent (or either side fails). */
static void *relay(void *arg)
{
	struct migrate_tls *s = arg;
	uint8_t *up = malloc(RELAY_BUF), *down = malloc(RELAY_BUF);
	size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
	bool app_eof = false, net_eof = false, want_net_write = false, shut = false;
	while (up && down) {
		bool progress = false;
		if (!up_len && !app_eof) {
			ssize_t n = read(s->app, up, RELAY_BUF);
			if (n > 0)
				up_len = (size_t)n, up_off = 0, progress = true;
			else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				app_eof = true, progress = true;
		}
		want_net_write = false;
		if (up_len) {
			int n = SSL_write(s->ssl, up + up_off, (int)(up_len - up_off));
			if (n > 0) {
				up_off += (size_t)n, progress = true;
				if (up_off == up_len)
					up_len = 0;
			} else {
				int e = SSL_get_error(s->ssl, n);
				if (e == SSL_ERROR_WANT_WRITE)
					want_net_write = true;
				else if (e != SSL_ERROR_WANT_READ)
					break; /* the connection is gone: app sees its end close */
			}
		}
		if (app_eof && !up_len && !shut) {
			SSL_shutdown(s->ssl); /* close_notify; what the peer still sends is delivered */
			shut = true;
		}
		if (app_eof && !up_len && net_eof && !down_len)
			break;
		if (!down_len && !net_eof) {
			int n = SSL_read(s->ssl, down, RELAY_BUF);
			if (n > 0) {
				down_len = (size_t)n, down_off = 0, progress = true;
			} else {
				int e = SSL_get_error(s->ssl, n);
				if (e == SSL_ERROR_WANT_WRITE)
					want_net_write = true;
				else if (e != SSL_ERROR_WANT_READ) {
					net_eof = true, progress = true;
					shutdown(s->app, SHUT_WR); /* the reader sees the end */
				}
			}
		}
		if (down_len) {
			ssize_t n = write(s->app, down + down_off, down_len - down_off);
			if (n > 0) {
				down_off += (size_t)n, progress = true;
				if (down_off == down_len)
					down_len = 0;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				down_len = 0, net_eof = app_eof = true, up_len = 0; /* app closed: nobody reads */
			}
		}
		if (progress)
			continue;
		struct pollfd p[2] = {
			{ .fd = s->app, .events = (short)((!up_len && !app_eof ? POLLIN : 0) | (down_len ? POLLOUT : 0)) },
			{ .fd = s->net, .events = (short)((!net_eof && !down_len ? POLLIN : 0) | (want_net_write ? POLLOUT : 0)) },
		};
		if (poll(p, 2, IDLE_TIMEOUT_MS) == 0)
			break; /* both sides silent a minute: the stream code times out too */
	}
	free(up);
	free(down);
	close(s->app);
	pthread_mutex_lock(&s->lock);
	s->done = true;
	pthread_cond_broadcast(&s->done_cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void session_free(struct migrate_tls *s)
{
	SSL_free(s->ssl);
	SSL_CTX_free(s->ctx);
	close(s->net);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->done_cond);
	free(s);
}

int migrate_tls_start(int fd, bool server, const struct migrate_tls_config *c, int *plain,
		      struct migrate_tls **session, char *err, size_t errlen)
{
	struct migrate_tls *s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->net = fd, s->app = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->done_cond, NULL);
	int pair[2] = { -1, -1 };
	if (!(s->ctx = make_ctx(server, c, err, errlen)))
		goto fail;
	if (!(s->ssl = SSL_new(s->ctx)) || SSL_set_fd(s->ssl, fd) != 1) {
		ssl_error(err, errlen, "TLS", NULL);
		goto fail;
	}
	/* Blocking handshake, bounded by the socket's timeouts (migrate.c sets them). */
	if ((server ? SSL_accept(s->ssl) : SSL_connect(s->ssl)) != 1) {
		ssl_error(err, errlen, server ? "TLS: the source's handshake failed" : "TLS: the destination's handshake failed",
			  s->ssl);
		goto fail;
	}
	/* In TLS 1.3 the client's handshake ends before the server has checked its certificate:
	 * the server confirms with one byte, so a refused source learns it here, with the alert. */
	uint8_t ok = 'V';
	if (server ? SSL_write(s->ssl, &ok, 1) != 1 : SSL_read(s->ssl, &ok, 1) != 1 || ok != 'V') {
		ssl_error(err, errlen, server ? "TLS: cannot confirm the session" : "TLS: the destination refused this host",
			  server ? s->ssl : NULL);
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		goto fail;
	}
	s->app = pair[1];
	fcntl(s->app, F_SETFL, O_NONBLOCK);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (pthread_create(&s->thread, NULL, relay, s)) {
		snprintf(err, errlen, "cannot start the TLS relay thread");
		goto fail;
	}
	*plain = pair[0];
	*session = s;
	return 0;
fail:
	if (pair[0] >= 0)
		close(pair[0]), close(pair[1]);
	session_free(s);
	return -1;
}

void migrate_tls_end(struct migrate_tls *s, int plain)
{
	close(plain);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += END_WAIT_S;
	pthread_mutex_lock(&s->lock);
	while (!s->done && pthread_cond_timedwait(&s->done_cond, &s->lock, &until) == 0)
		;
	bool done = s->done;
	pthread_mutex_unlock(&s->lock);
	if (!done) {
		/* A peer that stopped reading: cut the socket under the relay, which then ends. */
		shutdown(s->net, SHUT_RDWR);
	}
	pthread_join(s->thread, NULL);
	session_free(s);
}
