/* Live migration (include/worker/migrate.h). The stream is a saved state (state/), so the
 * destination's restore is the file restore's; what is new here is sending guest RAM while the
 * guest runs, from KVM's dirty log and the host's own writes (worker/host_writes.h). */
#include <endian.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "worker/clock.h"
#include "worker/log.h"
#include "worker/migrate.h"
#include "worker/saved_state.h"
#include "worker/storage.h"

#define IO_TIMEOUT_S      60     /* a peer silent this long is gone */
#define ACCEPT_TIMEOUT_MS 120000 /* --incoming waits this long for the source */
#define REPLY_TIMEOUT_MS  60000  /* the destination's restore after the last byte */
#define RELOCK_MS         10000  /* a failed destination lets go of the disks when it exits */
#define THROTTLE_STEP     20     /* percent more each pass that does not shrink the dirty set */
#define THROTTLE_MAX      80
#define THROTTLE_SLICE_MS 50     /* the guest runs (100 - t)% of each slice, paused t% */
#define PAGE              4096u

int migrate_reply_check(const struct migrate_reply *r)
{
	if (memcmp(r->magic, MIGRATE_REPLY_MAGIC, 4) || le16toh(r->version) != MIGRATE_REPLY_VERSION)
		return -1;
	unsigned kind = le16toh(r->kind);
	uint32_t len = le32toh(r->length);
	if (kind < MIGRATE_READY || kind > MIGRATE_GO || len > MIGRATE_MESSAGE_MAX || (kind != MIGRATE_ERROR && len))
		return -1;
	return (int)kind;
}

/* ---- sockets ---- */

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* "unix:PATH" or "tcp:HOST:PORT" into a resolved address; false with a message. */
static bool resolve(const char *address, bool passive, struct sockaddr_storage *sa, socklen_t *len, int *family,
		    char *err, size_t errlen)
{
	if (!strncmp(address, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)sa;
		if (strlen(address + 5) == 0 || strlen(address + 5) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "%s: the socket path is empty or too long", address);
			return false;
		}
		memset(un, 0, sizeof(*un));
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, address + 5);
		*len = sizeof(*un), *family = AF_UNIX;
		return true;
	}
	const char *colon = strncmp(address, "tcp:", 4) && strncmp(address, "tls:", 4) ? NULL : strrchr(address + 4, ':');
	if (!colon || colon == address + 4 || !colon[1] || colon - (address + 4) >= 256) {
		snprintf(err, errlen, "%s: not unix:PATH, tcp:HOST:PORT or tls:HOST:PORT", address);
		return false;
	}
	char host[256];
	snprintf(host, sizeof(host), "%.*s", (int)(colon - (address + 4)), address + 4);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [v6]:port */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 }, *res;
	int rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "%s: %s", address, gai_strerror(rc));
		return false;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen, *family = res->ai_family;
	freeaddrinfo(res);
	return true;
}

static int connect_socket(const char *address, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int family;
	if (!resolve(address, false, &sa, &len, &family, err, errlen))
		return -1;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", address, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	set_timeouts(fd);
	return fd;
}

static int accept_socket(const char *address, char *err, size_t errlen)
{
	if (!strncmp(address, "fd:", 3)) {
		char *end;
		long fd = strtol(address + 3, &end, 10);
		int type = 0;
		socklen_t tl = sizeof(type);
		if (*end || end == address + 3 || fd < 0 || fd > 65535 ||
		    getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
			snprintf(err, errlen, "%s: not a connected stream socket", address);
			return -1;
		}
		set_timeouts((int)fd);
		return (int)fd;
	}
	struct sockaddr_storage sa;
	socklen_t len;
	int family, one = 1;
	if (!resolve(address, true, &sa, &len, &family, err, errlen))
		return -1;
	int lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (family == AF_UNIX)
		unlink(((struct sockaddr_un *)&sa)->sun_path); /* a stale socket of an earlier try */
	else if (lfd >= 0)
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, len) < 0 || listen(lfd, 1) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", address, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	vlog("migration: waiting for the source on %s", address);
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int n = poll(&p, 1, ACCEPT_TIMEOUT_MS);
	int fd = n > 0 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
	if (fd < 0)
		snprintf(err, errlen, "no migration came to %s: %s", address, n == 0 ? "timed out" : strerror(errno));
	close(lfd);
	if (family == AF_UNIX)
		unlink(((struct sockaddr_un *)&sa)->sun_path);
	if (fd >= 0)
		set_timeouts(fd);
	return fd;
}

/* tls: runs the handshake over fd (which it then owns); else the socket is the stream. */
static int secure(int fd, const char *address, bool server, const struct migrate_tls_config *tls,
		  struct migrate_conn *out, char *err, size_t errlen)
{
	*out = (struct migrate_conn){ .fd = fd };
	if (fd < 0)
		return -1;
	if (strncmp(address, "tls:", 4))
		return 0;
	if (!tls || migrate_tls_start(fd, server, tls, &out->fd, &out->tls, err, errlen) < 0) {
		if (!tls) {
			snprintf(err, errlen, "%s: TLS needs this host's certificate, key and trusted certificates", address);
			close(fd);
		}
		out->fd = -1;
		return -1;
	}
	set_timeouts(out->fd);
	return 0;
}

int migrate_connect(const char *address, const struct migrate_tls_config *tls, struct migrate_conn *out,
		    char *err, size_t errlen)
{
	return secure(connect_socket(address, err, errlen), address, false, tls, out, err, errlen);
}

int migrate_accept(const char *address, const struct migrate_tls_config *tls, struct migrate_conn *out,
		   char *err, size_t errlen)
{
	return secure(accept_socket(address, err, errlen), address, true, tls, out, err, errlen);
}

void migrate_close(struct migrate_conn *c)
{
	if (c->tls)
		migrate_tls_end(c->tls, c->fd);
	else if (c->fd >= 0)
		close(c->fd);
	*c = (struct migrate_conn){ .fd = -1 };
}

static bool write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n, len -= (size_t)n;
	}
	return true;
}

static bool read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ECONNRESET;
			return false;
		}
		p += n, len -= (size_t)n;
	}
	return true;
}

static bool send_reply(int fd, enum migrate_reply_kind kind, const char *message)
{
	size_t len = message ? strnlen(message, MIGRATE_MESSAGE_MAX) : 0;
	struct migrate_reply r = { .version = htole16(MIGRATE_REPLY_VERSION), .kind = htole16((uint16_t)kind),
				   .length = htole32((uint32_t)len) };
	memcpy(r.magic, MIGRATE_REPLY_MAGIC, 4);
	return write_all(fd, &r, sizeof(r)) && write_all(fd, message, len);
}

/* The peer's reply within timeout_ms: its kind (message in msg for ERROR), or -1 with errno. */
static int read_reply(int fd, int timeout_ms, char *msg, size_t msglen)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, timeout_ms);
	if (n <= 0) {
		errno = n == 0 ? ETIMEDOUT : errno;
		return -1;
	}
	struct migrate_reply r;
	if (!read_all(fd, &r, sizeof(r)))
		return -1;
	int kind = migrate_reply_check(&r);
	if (kind < 0) {
		errno = EPROTO;
		return -1;
	}
	char text[MIGRATE_MESSAGE_MAX + 1];
	uint32_t len = le32toh(r.length);
	if (!read_all(fd, text, len))
		return -1;
	text[len] = 0;
	for (uint32_t i = 0; i < len; i++) /* one line of text, whatever the peer sent */
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7F)
			text[i] = '?';
	snprintf(msg, msglen, "%s", text);
	return kind;
}

/* ---- source ---- */

static uint64_t popcount_words(const uint64_t *w, uint64_t n)
{
	uint64_t c = 0;
	for (uint64_t i = 0; i < n; i++)
		c += (uint64_t)__builtin_popcountll(w[i]);
	return c;
}

struct sender {
	struct vm *vm;
	int fd;
	struct state_writer *w;
	uint64_t *dirty, words;
	uint64_t *hashes;        /* per page: state_page_hash() of what the destination has */
	uint32_t throttle_pct;
	bool verify;             /* migrate_options.verify */
	char peer_error[MIGRATE_MESSAGE_MAX + 1]; /* the destination's ERROR, when it sent one */
	struct migrate_stats *st;
};

/* The destination's ERROR may come at any time: a failure before the end says why. */
static bool peer_failed(struct sender *s)
{
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	if (poll(&p, 1, 0) <= 0)
		return false;
	char msg[MIGRATE_MESSAGE_MAX + 1];
	int kind = read_reply(s->fd, 0, msg, sizeof(msg));
	snprintf(s->peer_error, sizeof(s->peer_error), "%s",
		 kind == MIGRATE_ERROR ? msg : kind >= 0 ? "it answered out of turn" :
		 errno == EPROTO ? "it sent something that is not a reply record" : "it closed the connection");
	return true;
}

/* One pass: the pages set in s->dirty. The guest runs throttled when throttle_pct is set. */
static int send_pass(struct sender *s, uint64_t *pages_sent, bool throttle)
{
	struct vm *vm = s->vm;
	uint64_t slice_start = monotonic_ns();
	for (uint64_t off = 0; off < vm->mem.ram_size; off += STATE_CHUNK_SIZE) {
		const uint8_t *mask = (const uint8_t *)&s->dirty[off / PAGE / 64];
		int n = state_writer_pages(s->w, vm->mem.ram, vm->mem.ram_size, off, mask, &s->hashes[off / PAGE],
					   &s->st->bytes);
		if (n < 0) {
			char why[256];
			snprintf(why, sizeof(why), "%s", state_last_error());
			return peer_failed(s) ? state_fail(n, "the destination failed: %s", s->peer_error)
					      : state_fail(n, "the connection to the destination broke: %s", why);
		}
		*pages_sent += (uint64_t)n;
		if (peer_failed(s))
			return state_fail(-ECONNABORTED, "the destination failed: %s", s->peer_error);
		if (throttle && s->throttle_pct && monotonic_ns() - slice_start >= THROTTLE_SLICE_MS * 1000000ull) {
			if (!vm_pause(vm))
				return state_fail(-ESHUTDOWN, "the VM stopped during the migration");
			usleep(THROTTLE_SLICE_MS * 1000u * s->throttle_pct / (100 - s->throttle_pct));
			vm_resume(vm);
			slice_start = monotonic_ns();
		}
	}
	return 0;
}

/* The pages dirtied since the last collect: the set afresh (fresh: the last pass sent the old
 * one), or added to the set not yet sent. */
static bool collect(struct sender *s, uint64_t *count, bool fresh)
{
	if (fresh)
		memset(s->dirty, 0, s->words * sizeof(*s->dirty));
	if (!vm_dirty_collect(s->vm, s->dirty))
		return false;
	*count = popcount_words(s->dirty, s->words);
	return true;
}

/* Pre-copy: passes while the guest runs, until what is left fits the downtime budget. */
static int precopy(struct sender *s, const struct migrate_options *o)
{
	uint64_t pages = s->vm->mem.ram_size / PAGE, left = pages, prev = UINT64_MAX;
	for (uint64_t i = 0; i < s->words; i++) /* the first pass sends everything */
		s->dirty[i] = i + 1 < s->words || pages % 64 == 0 ? ~0ull : (1ull << (pages % 64)) - 1;
	for (uint32_t pass = 0;; pass++) {
		uint64_t t0 = monotonic_ns(), bytes0 = s->st->bytes, sent = 0;
		int rc = send_pass(s, &sent, pass > 0);
		if (rc < 0)
			return rc;
		s->st->pages += sent;
		s->st->passes++;
		uint64_t ns = monotonic_ns() - t0 + 1;
		if (!collect(s, &left, true))
			return state_fail(-errno, "cannot read the dirty log: %s", strerror(errno));
		s->st->rate_kbps = (s->st->bytes - bytes0) * 1000000ull / ns;
		/* What the paused pass would take, at this pass's time per page. */
		uint64_t est_ms = sent ? left * ns / sent / 1000000 : 0;
		vlog("migration: pass %u: %llu pages in %llu ms (%llu kB/s), %llu dirty now (~%llu ms), throttle %u%%",
		     pass + 1, (unsigned long long)sent, (unsigned long long)(ns / 1000000),
		     (unsigned long long)s->st->rate_kbps, (unsigned long long)left, (unsigned long long)est_ms,
		     s->throttle_pct);
		if (est_ms <= o->max_downtime_ms || pass + 1 >= o->max_passes)
			return 0;
		if (pass > 0 && left >= prev * 9 / 10 && s->throttle_pct < THROTTLE_MAX)
			s->throttle_pct += THROTTLE_STEP; /* auto-converge: the guest dirties as fast as we send */
		prev = left;
	}
}

/* Paused, before the last pass (migrate_options.verify): every page the dirty set does not name
 * must still be what the destination has. One that is not is a write that escaped the tracking
 * (a host writer without a grant, a KVM that loses dirty bits): it goes in the last pass too,
 * and is counted. */
static uint64_t verify_clean_pages(struct sender *s)
{
	const uint8_t *ram = s->vm->mem.ram;
	uint64_t unlogged = 0, pages = s->vm->mem.ram_size / PAGE;
	for (uint64_t p = 0; p < pages; p++) {
		if (s->dirty[p / 64] & (1ull << (p % 64)))
			continue;
		if (state_page_hash(ram + p * PAGE) != s->hashes[p]) {
			s->dirty[p / 64] |= 1ull << (p % 64);
			unlogged++;
		}
	}
	return unlogged;
}

/* Paused: the last dirty pages and every device, then the destination's answer. */
static int final_pass(struct sender *s, bool *unlocked)
{
	struct vm *vm = s->vm;
	uint64_t t[5];
	t[0] = monotonic_ns();
	int rc = vm_quiesce_disks(vm);
	if (rc < 0)
		return rc;
	/* The destination opens the disks when the device sections arrive, after these pages. */
	if ((rc = worker_disks_lock(false)) < 0)
		return rc;
	*unlocked = true;
	uint64_t left, sent = 0;
	pthread_mutex_lock(&vm->vmbus.lock);
	if (!collect(s, &left, false))
		rc = state_fail(-errno, "cannot read the dirty log: %s", strerror(errno));
	t[1] = monotonic_ns();
	if (rc == 0 && s->verify && (s->st->unlogged = verify_clean_pages(s)))
		vlog("migration: %llu pages changed that the dirty log did not name: sent again",
		     (unsigned long long)s->st->unlogged);
	t[2] = monotonic_ns();
	if (rc == 0)
		rc = send_pass(s, &sent, false);
	if (rc == 0)
		rc = vm_save_devices(vm, s->w);
	pthread_mutex_unlock(&vm->vmbus.lock);
	t[3] = monotonic_ns();
	s->st->pages += sent;
	s->st->last_dirty = sent;
	s->st->passes++;
	struct state_writer *w = s->w;
	s->w = NULL;
	if (rc == 0)
		rc = state_writer_finish(w);
	else
		state_writer_discard(w);
	if (rc < 0)
		return rc;
	char msg[MIGRATE_MESSAGE_MAX + 1];
	int kind = read_reply(s->fd, REPLY_TIMEOUT_MS, msg, sizeof(msg));
	t[4] = monotonic_ns();
	vlog("migration: paused pass: disks drained in %llu ms, verify %llu ms, %llu pages and the devices sent in "
	     "%llu ms, the destination's restore %llu ms", (unsigned long long)((t[1] - t[0]) / 1000000),
	     (unsigned long long)((t[2] - t[1]) / 1000000), (unsigned long long)sent,
	     (unsigned long long)((t[3] - t[2]) / 1000000), (unsigned long long)((t[4] - t[3]) / 1000000));
	if (kind == MIGRATE_ERROR)
		return state_fail(-ECONNABORTED, "the destination failed: %s", msg);
	if (kind != MIGRATE_READY)
		return state_fail(-ECONNABORTED, "the destination did not confirm the restore: %s",
				  kind < 0 ? strerror(errno) : "unexpected reply");
	/* The point of no return: once GO is out, the VM is the destination's. */
	if (!send_reply(s->fd, MIGRATE_GO, NULL))
		return state_fail(-ECONNABORTED, "cannot send GO to the destination: %s", strerror(errno));
	return 0;
}

int migrate_send(struct vm *vm, int fd, const struct migrate_options *o, struct migrate_stats *st)
{
	uint64_t t0 = monotonic_ns();
	*st = (struct migrate_stats){ 0 };
	if (vm_is_paused(vm))
		return state_fail(-EINVAL, "the VM is paused: live migration moves a running VM");
	struct sender s = { .vm = vm, .fd = fd, .st = st, .verify = o->verify };
	s.words = (vm->mem.ram_size / PAGE + 63) / 64;
	s.dirty = calloc(s.words, sizeof(*s.dirty));
	s.hashes = malloc(s.words * 64 * sizeof(*s.hashes));
	if (!s.dirty || !s.hashes) {
		free(s.dirty);
		free(s.hashes);
		return state_fail(-ENOMEM, "out of memory");
	}
	int rc = 0;
	bool logging = false, unlocked = false, paused = false;
	if (!(logging = vm_dirty_log(vm, true)))
		rc = state_fail(-errno, "KVM cannot log dirty pages: %s", strerror(errno));
	uint64_t ignored;
	if (rc == 0 && !collect(&s, &ignored, true)) /* starts the host-write interval afresh */
		rc = state_fail(-errno, "cannot read the dirty log: %s", strerror(errno));
	if (rc == 0 && (rc = state_writer_open(&s.w, fd, vm->config_digest)) == 0)
		rc = state_writer_ram_begin(s.w, vm->mem.ram_size);
	if (rc == 0)
		rc = precopy(&s, o);
	uint64_t down = monotonic_ns();
	if (rc == 0 && !(paused = vm_pause(vm)))
		rc = state_fail(-ESHUTDOWN, "the VM stopped during the migration");
	if (rc == 0)
		rc = final_pass(&s, &unlocked);
	st->downtime_ms = (monotonic_ns() - down) / 1000000;
	st->throttle_pct = s.throttle_pct;
	if (s.w)
		state_writer_discard(s.w);
	free(s.dirty);
	free(s.hashes);
	if (rc == 0) {
		st->total_ms = (monotonic_ns() - t0) / 1000000;
		return 0;
	}
	/* Back as it was: the disks' locks (the destination lets go when it exits), no dirty
	 * log, the guest running. */
	char why[512];
	snprintf(why, sizeof(why), "%s", state_last_error());
	for (uint64_t until = monotonic_ns() + RELOCK_MS * 1000000ull; unlocked && worker_disks_lock(true) < 0;) {
		if (monotonic_ns() > until) {
			vlog("migration: %s; the disks stay unlocked", state_last_error());
			break;
		}
		usleep(50000);
	}
	if (logging)
		vm_dirty_log(vm, false);
	if (paused)
		vm_resume(vm);
	st->total_ms = (monotonic_ns() - t0) / 1000000;
	return state_fail(rc, "%s", why);
}

/* ---- destination ---- */

static void saved_state_warning(void *ctx, const char *message)
{
	(void)ctx;
	vlog("migration: %s", message);
}

/* Tells the source why, then reads what it still sends until it gives up, so that closing
 * does not reset the connection under the reply. */
static int refuse(int fd, int rc)
{
	char why[512];
	snprintf(why, sizeof(why), "%s", state_last_error());
	if (send_reply(fd, MIGRATE_ERROR, why)) {
		shutdown(fd, SHUT_WR);
		char sink[65536];
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t until = monotonic_ns() + 5000000000ull;
		while (monotonic_ns() < until && poll(&p, 1, 500) > 0 && read(fd, sink, sizeof(sink)) > 0)
			;
	}
	return state_fail(rc, "%s", why);
}

int migrate_receive(struct vm *vm, int fd, int (*attach)(void *ctx), void *ctx)
{
	struct state_reader_options ro = { .expected_digest = vm->config_digest, .warn = saved_state_warning };
	struct state_reader *r;
	int rc = state_reader_open(&r, fd, &ro);
	if (rc < 0)
		return refuse(fd, rc);
	rc = vm_restore(vm, r, attach, ctx);
	state_reader_close(r);
	if (rc < 0)
		return refuse(fd, rc);
	if (!send_reply(fd, MIGRATE_READY, NULL))
		return state_fail(-ECONNABORTED, "cannot answer the source: %s", strerror(errno));
	char msg[MIGRATE_MESSAGE_MAX + 1];
	int kind = read_reply(fd, REPLY_TIMEOUT_MS, msg, sizeof(msg));
	if (kind != MIGRATE_GO)
		return state_fail(-ECONNABORTED, "the source did not hand the VM over: %s",
				  kind < 0 ? strerror(errno) : kind == MIGRATE_ERROR ? msg : "unexpected reply");
	return 0;
}
