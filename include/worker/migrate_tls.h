/* Live migration's TCP transport: TLS 1.3 with a certificate on both sides (OpenSSL), the
 * analogue of Hyper-V's certificate-based migration authentication (docs/worker.md). Each
 * host has its own certificate and key; each trusts the peers whose certificates (self-signed,
 * or the CA that signed them) are in its trust file. No host name check: trust is the list.
 *
 * The stream code reads and writes a plain socket: a relay thread carries the bytes through
 * the TLS session (one copy each way, encryption at AES-GCM speed, far above the link). */
#ifndef VIRIDIAN_WORKER_MIGRATE_TLS_H
#define VIRIDIAN_WORKER_MIGRATE_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct migrate_tls_config {
	const char *cert;        /* PEM: this host's certificate (chain) */
	const char *key;         /* PEM: its private key */
	const char *trust;       /* PEM: the peer certificates or CAs this host accepts */
};

struct migrate_tls;

/* Handshake over the connected socket fd (server: the destination), then start the relay. 0
 * with *plain (the socket to use instead of fd, which the session now owns) and *session; -1
 * with a message in err (fd is then closed): a bad file, no TLS 1.3, a certificate the peer or
 * this side does not trust. */
int migrate_tls_start(int fd, bool server, const struct migrate_tls_config *c, int *plain,
		      struct migrate_tls **session, char *err, size_t errlen);
/* Closes plain, lets the relay deliver what was written to it (up to 10 s), ends the session
 * and frees it. */
void migrate_tls_end(struct migrate_tls *s, int plain);

#endif
