/* Live migration of the running VM to another worker (docs/worker.md, docs/savedstate.md
 * "Live migration"). The source streams a saved state whose RAM section has no chunks: guest
 * RAM goes as RAM_PAGES sections while the guest runs (a full pass, then the pages it dirtied,
 * pass after pass), then, paused, the last dirty pages and every device's section, END. The
 * destination restores from the stream as from a file and answers with a reply record:
 * READY (restored, not running) or ERROR (why). On READY the source sends GO, the point of no
 * return: the destination runs the VM, the source leaves. Anything else before GO resumes
 * the VM on the source as it was. */
#ifndef VIRIDIAN_WORKER_MIGRATE_H
#define VIRIDIAN_WORKER_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/migrate_tls.h"
#include "worker/vm.h"

/* The reply record, little-endian: the destination's READY or ERROR, the source's GO. */
#define MIGRATE_REPLY_MAGIC "VMGR"
#define MIGRATE_REPLY_VERSION 1
#define MIGRATE_MESSAGE_MAX 1024
enum migrate_reply_kind { MIGRATE_READY = 1, MIGRATE_ERROR = 2, MIGRATE_GO = 3 };
struct migrate_reply {
	char magic[4];           /* MIGRATE_REPLY_MAGIC, no terminator */
	uint16_t version;        /* MIGRATE_REPLY_VERSION */
	uint16_t kind;           /* enum migrate_reply_kind */
	uint32_t length;         /* message bytes that follow (ERROR only), <= MIGRATE_MESSAGE_MAX */
} __attribute__((packed));
_Static_assert(sizeof(struct migrate_reply) == 12, "migrate reply");
_Static_assert(__builtin_offsetof(struct migrate_reply, kind) == 6, "reply kind");
_Static_assert(__builtin_offsetof(struct migrate_reply, length) == 8, "reply length");

/* Checks a received reply header: the kind, or -1 (bad magic, version, kind or length). Pure:
 * the fuzz target and unit tests reach it. */
int migrate_reply_check(const struct migrate_reply *r);

struct migrate_options {
	uint32_t max_downtime_ms; /* the pause the last pass may take at the measured rate */
	uint32_t max_passes;      /* passes while the guest runs (the full one included), then the
				   * paused pass whatever is left */
	bool verify;              /* paused, hash every page not in the last dirty set against what
				   * was sent, and resend those that differ (costs downtime: a
				   * check of the dirty tracking) */
};

struct migrate_stats {
	uint64_t bytes;          /* sent */
	uint64_t pages;          /* pages sent, all passes */
	uint32_t passes;         /* including the first full one and the last paused one */
	uint64_t last_dirty;     /* pages the paused pass sent */
	uint64_t unlogged;       /* verify: changed pages the tracking missed (found by hash) */
	uint32_t throttle_pct;   /* the vCPU throttle auto-converge reached */
	uint64_t rate_kbps;      /* measured in the pre-copy passes, kB/s of stream */
	uint64_t downtime_ms;    /* paused until the destination's READY */
	uint64_t total_ms;
};

/* Addresses: "unix:PATH", "tcp:HOST:PORT" (plain: a trusted network or a test), "tls:HOST:PORT"
 * (TCP with mutual TLS 1.3, worker/migrate_tls.h: tls names the certificates), and for
 * --incoming also "fd:N" (a connected socket its caller made, e.g. after authenticating it). */
struct migrate_conn {
	int fd;                  /* what the stream reads and writes */
	struct migrate_tls *tls; /* NULL unless tls: */
};
/* Source: connects to address. 0, or -1 with a message in err. */
int migrate_connect(const char *address, const struct migrate_tls_config *tls, struct migrate_conn *out,
		    char *err, size_t errlen);
/* Destination: listens on address and accepts one connection (or takes fd:N). 0, or -1 with a
 * message in err. */
int migrate_accept(const char *address, const struct migrate_tls_config *tls, struct migrate_conn *out,
		   char *err, size_t errlen);
/* Delivers what was written (TLS) and closes. */
void migrate_close(struct migrate_conn *c);

/* Source (main thread, VM running): migrates over fd (not closed). 0: the destination runs
 * the VM; this worker must exit without touching the disks again. Negative errno with
 * state_last_error() set: the VM runs here again (unless it was stopping). */
int migrate_send(struct vm *vm, int fd, const struct migrate_options *o, struct migrate_stats *st);

/* Destination (the VM created, not started): restores from fd, calling attach(ctx) to open and
 * attach disks and adapters once RAM is in; answers READY and waits for GO. 0: start the VM.
 * Negative errno with state_last_error() set: ERROR was sent with it (when the socket still
 * works); destroy the VM. */
int migrate_receive(struct vm *vm, int fd, int (*attach)(void *ctx), void *ctx);

#endif
