/* Live migration's TLS transport (worker/migrate_tls.h) over a socket pair: hosts that trust
 * each other's certificates carry a few MiB both ways through the relay, in order, and see
 * the end; a peer whose certificate is not in the trust file, a missing key, and a plain
 * (non-TLS) peer are refused with a message. Certificates: tls/{a,b,c}.pem, self-signed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/migrate_tls.h"

#define BYTES (3u << 20)

static char dir[4096];

static const char *file(const char *name)
{
	static char paths[8][4200];
	static unsigned next;
	char *p = paths[next++ % 8];
	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

struct side {
	int fd;
	bool server;
	struct migrate_tls_config c;
	int rc;
	char err[512];
	uint64_t received;       /* bytes read, checked against the pattern */
	bool pattern_ok, eof;
};

static uint8_t pattern(uint64_t i, bool server)
{
	return (uint8_t)(i * 131 + (i >> 12) + server);
}

/* Writes BYTES of its pattern while reading the peer's, then closes. */
static void *run(void *arg)
{
	struct side *s = arg;
	int plain;
	struct migrate_tls *t;
	s->rc = migrate_tls_start(s->fd, s->server, &s->c, &plain, &t, s->err, sizeof(s->err));
	if (s->rc < 0)
		return NULL;
	s->pattern_ok = true;
	static __thread uint8_t buf[65536];
	uint64_t sent = 0;
	while (sent < BYTES || !s->eof) {
		if (sent < BYTES) {
			size_t n = BYTES - sent < sizeof(buf) ? BYTES - sent : sizeof(buf);
			for (size_t i = 0; i < n; i++)
				buf[i] = pattern(sent + i, s->server);
			ssize_t w = write(plain, buf, n);
			if (w <= 0)
				break;
			sent += (uint64_t)w;
			if (sent == BYTES)
				shutdown(plain, SHUT_WR); /* like the stream's END: the peer reads to EOF */
		}
		uint8_t in[65536];
		ssize_t r = recv(plain, in, sizeof(in), sent < BYTES ? MSG_DONTWAIT : 0);
		if (r == 0)
			s->eof = true;
		for (ssize_t i = 0; i < r; i++)
			s->pattern_ok &= in[i] == pattern(s->received + (uint64_t)i, !s->server);
		if (r > 0)
			s->received += (uint64_t)r;
	}
	migrate_tls_end(t, plain);
	return NULL;
}

static void pair_run(struct side *a, struct side *b)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct timeval tv = { .tv_sec = 10 };
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(sv[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	a->fd = sv[0], a->server = true, b->fd = sv[1], b->server = false;
	pthread_t ta, tb;
	assert_int_equal(pthread_create(&ta, NULL, run, a), 0);
	assert_int_equal(pthread_create(&tb, NULL, run, b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
}

static void test_trusted(void **state)
{
	(void)state;
	struct side a = { .c = { file("a.pem"), file("a.key"), file("b.pem") } };
	struct side b = { .c = { file("b.pem"), file("b.key"), file("a.pem") } };
	pair_run(&a, &b);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	assert_true(a.eof && b.eof);
	assert_int_equal(a.received, BYTES);
	assert_int_equal(b.received, BYTES);
	assert_true(a.pattern_ok && b.pattern_ok);
}

static void test_untrusted(void **state)
{
	(void)state;
	/* The destination (a) trusts only c: b's certificate is refused, both sides say so. */
	struct side a = { .c = { file("a.pem"), file("a.key"), file("c.pem") } };
	struct side b = { .c = { file("b.pem"), file("b.key"), file("a.pem") } };
	pair_run(&a, &b);
	assert_int_equal(a.rc, -1);
	assert_int_equal(b.rc, -1);
	assert_non_null(strstr(a.err, "certificate"));
	fprintf(stderr, "destination: %s\nsource: %s\n", a.err, b.err);
	/* And the other way round: the source does not trust the destination. */
	struct side c = { .c = { file("a.pem"), file("a.key"), file("b.pem") } };
	struct side d = { .c = { file("b.pem"), file("b.key"), file("c.pem") } };
	pair_run(&c, &d);
	assert_int_equal(c.rc, -1);
	assert_int_equal(d.rc, -1);
	assert_non_null(strstr(d.err, "not trusted"));
}

static void test_bad_files(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct migrate_tls_config c = { file("a.pem"), file("b.key"), file("b.pem") }; /* key of another cert */
	char err[512];
	int plain;
	struct migrate_tls *t;
	assert_int_equal(migrate_tls_start(sv[0], true, &c, &plain, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "private key"));
	struct migrate_tls_config none = { NULL, NULL, NULL };
	assert_int_equal(migrate_tls_start(sv[1], false, &none, &plain, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "none given"));
}

/* A peer that speaks no TLS: garbage, then it closes. */
static void *garbage(void *arg)
{
	int fd = *(int *)arg;
	char junk[64];
	memset(junk, 'G', sizeof(junk));
	if (write(fd, junk, sizeof(junk)) < 0)
		return NULL;
	char sink[4096];
	while (read(fd, sink, sizeof(sink)) > 0)
		;
	close(fd);
	return NULL;
}

static void test_not_tls(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, garbage, &sv[1]), 0);
	struct migrate_tls_config c = { file("a.pem"), file("a.key"), file("b.pem") };
	char err[512];
	int plain;
	struct migrate_tls *s;
	assert_int_equal(migrate_tls_start(sv[0], true, &c, &plain, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "handshake failed"));
	pthread_join(t, NULL);
}

int main(int argc, char **argv)
{
	(void)argc;
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s", TLS_DIR);
	(void)argv;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trusted),
		cmocka_unit_test(test_untrusted),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_not_tls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
