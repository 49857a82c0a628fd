/* Saved state of the five integration services through the VMBus server's save/restore: a guest
 * with every IC negotiated and a transaction in flight on each is saved, restored into a new
 * server with fresh ICs over the same guest RAM, and carries on (ic_state_harness.h). Then
 * malformed IC payloads, field by field, and every truncation of real ones.
 *
 * `test_ic_state --seed DIR` writes the fuzz seeds of tests/fuzz/ic_restore/corpus instead. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ic_state_harness.h"
#include "state/savedstate.h"

static unsigned negotiations(const struct guest *u)
{
	unsigned n = 0;
	for (int i = 0; i < NIC; i++)
		n += u->s[i].negotiations;
	return n;
}

static struct guest *guest_new(void)
{
	struct guest *u = calloc(1, sizeof(*u));
	assert_non_null(u);
	return u;
}

static void test_round_trip(void **state)
{
	(void)state;
	struct guest *u = guest_new();
	struct host *h = host_busy(u, 1000);
	unsigned negotiated = negotiations(u);
	int fd = host_save(h);
	assert_true(fd >= 0);
	static uint8_t before[1 << 20], after[1 << 20];
	size_t nbefore = file_ic_sections(fd, before, sizeof(before));
	h = host_move(h, u);
	assert_int_equal(host_restore(h, fd), 0);

	/* where they stood */
	static const uint32_t versions[NIC] = {IC_VERSION(3, 0), IC_VERSION(3, 2), IC_VERSION(4, 0), IC_VERSION(4, 0),
					       IC_VERSION(5, 0)};
	for (int i = 0; i < NIC; i++) {
		assert_int_equal(ic_state(h->ic[i]), IC_READY);
		assert_int_equal(ic_framework_version(h->ic[i]), IC_VERSION(3, 0));
		assert_int_equal(ic_service_version(h->ic[i]), versions[i]);
	}
	assert_int_equal(ic_heartbeat_answers(h->ic[HB]), 3);
	assert_int_equal(ic_shutdown_result(h->ic[SD]), 0);
	assert_int_equal(ic_timesync_answers(h->ic[TS]), 2);
	assert_int_equal(ic_kvp_host_count(h->ic[KVP]), 2);
	assert_true(ic_kvp_busy(h->ic[KVP]));
	assert_int_equal(ic_kvp_pool_count(h->ic[KVP], HV_KVP_POOL_AUTO), 4);
	assert_string_equal(ic_kvp_pool_lookup(h->ic[KVP], HV_KVP_POOL_AUTO, "K1"), "V1");
	assert_int_equal(ic_vss_state(h->ic[VSS]), IC_VSS_FREEZING);
	assert_int_equal(h->nkvp + h->nvss, 0);

	/* saved again, the same */
	int fd2 = host_save(h);
	assert_true(fd2 >= 0);
	size_t nafter = file_ic_sections(fd2, after, sizeof(after));
	assert_int_equal(nafter, nbefore);
	assert_memory_equal(after, before, nbefore);
	/* and so is the server's part */
	ssize_t n1 = pread(fd, before, sizeof(before), 0), n2 = pread(fd2, after, sizeof(after), 0);
	assert_true(n1 > 0 && n1 < (ssize_t)sizeof(before));
	assert_int_equal(n1, n2);
	assert_memory_equal(before, after, (size_t)n1);
	close(fd2);
	close(fd);

	/* the transactions in flight complete */
	u->s[HB].deaf = u->s[SD].deaf = false;
	guest_poll(h, u, HB);
	assert_int_equal(ic_heartbeat_answers(h->ic[HB]), 4);
	guest_poll(h, u, SD);
	assert_int_equal(ic_shutdown_result(h->ic[SD]), 1);
	assert_int_equal(u->sd_flags, IC_SHUTDOWN_FLAG_SHUTDOWN);
	guest_release(h, u, KVP);
	/* items 2 and 3, the end, B pushed, A got */
	assert_int_equal(h->nkvp, 5);
	assert_int_equal(h->kvp[0].op, HV_KVP_OP_ENUMERATE);
	assert_int_equal(h->kvp[0].index, 2);
	assert_int_equal(h->kvp[1].index, 3);
	assert_int_equal(h->kvp[2].status, IC_KVP_END);
	assert_int_equal(h->kvp[3].op, HV_KVP_OP_SET);
	assert_int_equal(h->kvp[3].status, IC_KVP_OK);
	assert_int_equal(h->kvp[4].op, HV_KVP_OP_GET);
	assert_int_equal(h->kvp[4].status, IC_KVP_OK);
	assert_int_equal(ic_kvp_pool_count(h->ic[KVP], HV_KVP_POOL_AUTO), 4);
	assert_true(ic_kvp_host_synced(h->ic[KVP]));
	assert_int_equal(u->n0, 2);
	assert_string_equal(u->pool0[1][1], "7");
	guest_release(h, u, VSS);
	assert_int_equal(ic_vss_state(h->ic[VSS]), IC_VSS_FROZEN);
	assert_true(u->frozen);
	assert_int_equal(h->nvss, 1);

	/* no renegotiation, and new requests work */
	assert_int_equal(negotiations(u), negotiated);
	assert_int_equal(ic_heartbeat_tick(h->ic[HB]), 0);
	guest_poll(h, u, HB);
	assert_int_equal(ic_heartbeat_answers(h->ic[HB]), 5);
	assert_int_equal(ic_shutdown_request(h->ic[SD], true, false, NULL), 0);
	guest_poll(h, u, SD);
	assert_int_equal(u->sd_flags, IC_SHUTDOWN_FLAG_REBOOT);
	assert_int_equal(ic_timesync_send(h->ic[TS], ICTIMESYNCFLAG_SYNC), 0);
	guest_poll(h, u, TS);
	assert_int_equal(u->ts_flags, ICTIMESYNCFLAG_SYNC);
	assert_int_equal(ic_timesync_answers(h->ic[TS]), 3);
	assert_int_equal(ic_kvp_set(h->ic[KVP], "C", "gamma", 5), 0);
	guest_poll(h, u, KVP);
	assert_true(ic_kvp_host_synced(h->ic[KVP]));
	assert_int_equal(u->n0, 3);
	assert_int_equal(ic_vss_thaw(h->ic[VSS], 5), 0);
	guest_poll(h, u, VSS);
	assert_int_equal(ic_vss_state(h->ic[VSS]), IC_VSS_IDLE);
	assert_int_equal(ic_vss_freeze(h->ic[VSS], 6), 0);
	guest_poll(h, u, VSS);
	assert_int_equal(ic_vss_state(h->ic[VSS]), IC_VSS_FROZEN);
	assert_int_equal(negotiations(u), negotiated);
	host_free(h);
	free(u);
}

/* Answers the guest wrote before the save that the host had not read yet are read after it. */
static void test_answers_in_the_ring(void **state)
{
	(void)state;
	struct guest *u = guest_new();
	struct host *h = host_new();
	host_connect(h, u);
	u->s[HB].quiet = u->s[KVP].quiet = true;
	assert_int_equal(ic_heartbeat_tick(h->ic[HB]), 0);
	guest_poll(h, u, HB);
	assert_int_equal(ic_kvp_set(h->ic[KVP], "A", "alpha", 1), 0);
	guest_poll(h, u, KVP);
	assert_int_equal(ic_heartbeat_answers(h->ic[HB]), 0);
	assert_false(ic_kvp_host_synced(h->ic[KVP]));
	int fd = host_save(h);
	h = host_move(h, u);
	assert_int_equal(host_restore(h, fd), 0);
	close(fd);
	assert_int_equal(ic_heartbeat_answers(h->ic[HB]), 1);
	assert_true(ic_kvp_host_synced(h->ic[KVP]));
	assert_int_equal(h->nkvp, 1);
	assert_int_equal(h->kvp[0].status, IC_KVP_OK);
	host_free(h);
	free(u);
}

/* What the guest never answers still times out after the restore, on the new process's clock,
 * with the time that was left at the save. */
static void test_timeouts_after_restore(void **state)
{
	(void)state;
	struct guest *u = guest_new();
	struct host *h = host_new();
	host_connect(h, u);
	ic_kvp_set_timeout(h->ic[KVP], 1000);
	ic_vss_set_timeouts(h->ic[VSS], 5000, 1000);
	u->s[KVP].hold = 1;
	assert_int_not_equal(ic_kvp_enumerate(h->ic[KVP], HV_KVP_POOL_AUTO, 1000), 0);
	guest_poll(h, u, KVP);
	assert_int_not_equal(ic_kvp_get(h->ic[KVP], HV_KVP_POOL_EXTERNAL, "A", 1000), 0);
	u->s[VSS].hold = 2;
	assert_int_equal(ic_vss_freeze(h->ic[VSS], 1000), 0); /* FREEZE out at 1000: due at 6000 */
	guest_poll(h, u, VSS);
	ic_kvp_tick(h->ic[KVP], 1500);
	ic_vss_tick(h->ic[VSS], 1500);
	int fd = host_save(h);
	h = host_move(h, u);
	assert_int_equal(host_restore(h, fd), 0);
	close(fd);
	const uint64_t t = 1000000000; /* the new process's clock */
	ic_kvp_tick(h->ic[KVP], t);
	ic_vss_tick(h->ic[VSS], t);
	ic_kvp_tick(h->ic[KVP], t + 499);
	ic_vss_tick(h->ic[VSS], t + 4499);
	assert_true(ic_kvp_busy(h->ic[KVP]));
	assert_int_equal(h->nkvp, 0);
	assert_int_equal(ic_vss_state(h->ic[VSS]), IC_VSS_FREEZING);
	ic_kvp_tick(h->ic[KVP], t + 500);
	assert_int_equal(h->nkvp, 1);
	assert_int_equal(h->kvp[0].status, IC_KVP_TIMEOUT);
	assert_true(ic_kvp_busy(h->ic[KVP])); /* the queued GET went out */
	guest_release(h, u, KVP);             /* the late answer is ignored, the GET answered */
	assert_int_equal(h->nkvp, 2);
	assert_int_equal(h->kvp[1].op, HV_KVP_OP_GET);
	assert_false(ic_kvp_busy(h->ic[KVP]));
	ic_vss_tick(h->ic[VSS], t + 4500); /* the FREEZE times out: a THAW to make sure */
	assert_int_equal(ic_vss_state(h->ic[VSS]), IC_VSS_THAWING);
	guest_release(h, u, VSS);
	assert_int_equal(ic_vss_state(h->ic[VSS]), IC_VSS_FAILED);
	assert_int_equal(ic_vss_error(h->ic[VSS]), IC_VSS_E_TIMEOUT);
	assert_false(u->frozen);
	host_free(h);
	free(u);
}

/* KVP waiting for hv_kvp_daemon (negotiation unanswered): the negotiation is answered after the
 * restore and the host's entries follow, nothing is sent twice. */
static void test_negotiation_in_flight(void **state)
{
	(void)state;
	struct guest *u = guest_new();
	u->s[KVP].deaf = true;
	struct host *h = host_new();
	host_connect(h, u);
	assert_int_equal(ic_state(h->ic[KVP]), IC_NEGOTIATING);
	assert_int_equal(ic_kvp_set(h->ic[KVP], "A", "alpha", 1), 0);
	int fd = host_save(h);
	h = host_move(h, u);
	assert_int_equal(host_restore(h, fd), 0);
	close(fd);
	assert_int_equal(ic_state(h->ic[KVP]), IC_NEGOTIATING);
	u->s[KVP].deaf = false;
	guest_poll(h, u, KVP);
	assert_int_equal(ic_state(h->ic[KVP]), IC_READY);
	assert_true(ic_kvp_host_synced(h->ic[KVP]));
	assert_int_equal(u->s[KVP].negotiations, 1);
	assert_int_equal(u->s[KVP].requests, 1);
	host_free(h);
	free(u);
}

/* ---- malformed payloads ---- */
struct saved {
	int fd;          /* a file of host_busy() */
	uint8_t *ram;
	uint8_t payload[NIC][65536];
	size_t len[NIC];
};

static int saved_setup(void **state)
{
	struct saved *s = calloc(1, sizeof(*s));
	struct guest *u = guest_new();
	struct host *h = host_busy(u, 1000);
	s->fd = host_save(h);
	assert_true(s->fd >= 0);
	s->ram = host_ram(h);
	host_free(h);
	free(u);
	for (int i = 0; i < NIC; i++) {
		s->len[i] = file_ic_payload(s->fd, (uint32_t)i + 1, s->payload[i], sizeof(s->payload[i]));
		assert_true(s->len[i] > 0);
	}
	*state = s;
	return 0;
}

static int saved_teardown(void **state)
{
	struct saved *s = *state;
	close(s->fd);
	free(s->ram);
	free(s);
	return 0;
}

/* Restore with service i's payload replaced (version: its section's; 0 keeps it): 0, or the
 * error (its message into why). */
static int try_version(struct saved *s, int i, uint16_t version, const void *p, size_t len, char *why, size_t cap)
{
	int fd = file_replace_ic(s->fd, (uint32_t)i + 1, version, p, len);
	struct host *h = host_with_ram(s->ram);
	int rc = host_restore(h, fd);
	if (why)
		snprintf(why, cap, "%s", rc ? state_last_error() : "");
	host_free(h);
	close(fd);
	return rc;
}

static int try_payload(struct saved *s, int i, const void *p, size_t len, char *why, size_t cap)
{
	return try_version(s, i, 0, p, len, why, cap);
}

static void refused(struct saved *s, int i, const void *p, size_t len, const char *want)
{
	char why[512];
	int rc = try_payload(s, i, p, len, why, sizeof(why));
	if (rc >= 0 || !strstr(why, want))
		fail_msg("service %d: rc %d, \"%s\"; wanted \"%s\"", i, rc, why, want);
}

/* A real payload with bytes [off, off + n) replaced by v (little-endian). */
static void refused_with(struct saved *s, int i, size_t off, size_t n, uint64_t v, const char *want)
{
	uint8_t p[65536];
	memcpy(p, s->payload[i], s->len[i]);
	memcpy(p + off, &v, n);
	refused(s, i, p, s->len[i], want);
}

/* framework offsets */
#define O_TYPE 0
#define O_STATE 2
#define O_FW 3
#define O_SV 7
#define O_NEXT 11
#define O_PENDING 19
#define O_SERVICE 31

static void test_framework_fields(void **state)
{
	struct saved *s = *state;
	for (int i = 0; i < NIC; i++)
		assert_int_equal(try_payload(s, i, s->payload[i], s->len[i], NULL, 0), 0);
	refused_with(s, HB, O_TYPE, 2, ICMSGTYPE_SHUTDOWN, "ic heartbeat: state of another service");
	refused_with(s, HB, O_STATE, 1, IC_CLOSED, "ic heartbeat: state 0 is not one of an open channel");
	refused_with(s, HB, O_STATE, 1, 9, "state 9 is not");
	refused_with(s, HB, O_FW, 4, IC_VERSION(2, 0), "ic heartbeat: framework version 2.0 was never offered");
	refused_with(s, SD, O_SV, 4, IC_VERSION(3, 3), "ic shutdown: service version 3.3 was never offered");
	refused_with(s, VSS, O_SV, 4, IC_VERSION(4, 0), "ic vss: service version 4.0");
	refused_with(s, TS, O_SV, 4, 0, "ic timesync: ready without negotiated versions");
	refused_with(s, HB, O_NEXT, 8, 0, "ic heartbeat: transaction");
	refused_with(s, HB, O_PENDING, 8, 1000, "ic heartbeat: transaction 1000 pending");
	uint8_t p[65536];
	memcpy(p, s->payload[HB], s->len[HB]);
	p[O_STATE] = IC_NEGOTIATING;
	memset(p + O_PENDING, 0, 8);
	refused(s, HB, p, s->len[HB], "ic heartbeat: negotiating with no request outstanding");
	char why[512];
	assert_int_equal(try_version(s, HB, 2, s->payload[HB], s->len[HB], why, sizeof(why)), -EPROTONOSUPPORT);
	assert_non_null(strstr(why, "ic heartbeat: state version 2, this build reads 1"));
	memcpy(p, s->payload[TS], s->len[TS]);
	p[s->len[TS]] = 0;
	refused(s, TS, p, s->len[TS] + 1, "ic timesync: 1 bytes after the state");
}

static void test_service_fields(void **state)
{
	struct saved *s = *state;
	/* heartbeat: u64 seq, u64 answers */
	refused_with(s, HB, O_SERVICE + 8, 8, 100, "ic heartbeat: 100 answers to 4 requests");
	/* shutdown: u8 result */
	refused_with(s, SD, O_SERVICE, 1, 3, "ic shutdown: result 3");
	/* vss: state, error, op, recovering, hresult, flags, tid */
	refused_with(s, VSS, O_SERVICE, 1, 5, "ic vss: state 5");
	refused_with(s, VSS, O_SERVICE + 1, 1, 6, "out of range");
	refused_with(s, VSS, O_SERVICE + 2, 1, HV_VSS_OP_GET_DM_INFO, "ic vss: operation 3 is never sent");
	refused_with(s, VSS, O_SERVICE + 2, 1, 0xff, "ic vss: state freezing with operation 255 outstanding");
	refused_with(s, VSS, O_SERVICE + 2, 1, HV_VSS_OP_THAW, "ic vss: state freezing with operation 6");
	refused_with(s, VSS, O_SERVICE, 1, IC_VSS_IDLE, "ic vss: state idle with operation 5 outstanding");
	refused_with(s, VSS, O_SERVICE + 1, 1, IC_VSS_E_GUEST, "ic vss: state freezing with error guest refused");
	refused_with(s, VSS, O_SERVICE + 3, 1, IC_VSS_E_TIMEOUT, "ic vss: recovering from timeout without a THAW");
	refused_with(s, VSS, O_SERVICE + 12, 8, 0, "ic vss: operation 5 outstanding as transaction 0");
	uint8_t p[65536];
	memcpy(p, s->payload[VSS], s->len[VSS]);
	p[O_SERVICE] = IC_VSS_FAILED;
	p[O_SERVICE + 2] = 0xff;
	refused(s, VSS, p, s->len[VSS], "ic vss: state failed with error ok");
}

/* Every cut of every real payload is refused, and nothing leaks (ASan). */
static void test_truncations(void **state)
{
	struct saved *s = *state;
	for (int i = 0; i < NIC; i++)
		for (size_t n = 0; n < s->len[i]; n++)
			if (try_payload(s, i, s->payload[i], n, NULL, 0) >= 0)
				fail_msg("service %d: payload cut at %zu of %zu restored", i, n, s->len[i]);
}

/* ---- KVP payloads built field by field ---- */
struct b {
	uint8_t d[1 << 20];
	size_t n;
};

static void bput(struct b *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->d));
	memcpy(b->d + b->n, p, n);
	b->n += n;
}
#define B(b, type, v)                          \
	do {                                   \
		type x_ = (type)(v);           \
		bput((b), &x_, sizeof(x_));    \
	} while (0)

/* the framework's part: ready, 3.0 / 4.0, next transaction 10, none pending; next query id 1 */
static void kvp_head(struct b *b, uint8_t st)
{
	b->n = 0;
	B(b, uint16_t, ICMSGTYPE_KVPEXCHANGE);
	B(b, uint8_t, st);
	B(b, uint32_t, IC_VERSION(3, 0));
	B(b, uint32_t, IC_VERSION(4, 0));
	B(b, uint64_t, 10);
	B(b, uint64_t, st == IC_NEGOTIATING ? 9 : 0);
	B(b, uint32_t, 0);
	B(b, uint32_t, 1);
}

static void wire(struct b *b, const char *ascii)
{
	uint16_t n = (uint16_t)(2 * strlen(ascii) + 2);
	B(b, uint16_t, n);
	for (const char *c = ascii;; c++) {
		B(b, uint16_t, (uint8_t)*c);
		if (!*c)
			break;
	}
}

static void entry(struct b *b, uint8_t slot, uint32_t type, const char *key)
{
	B(b, uint8_t, slot);
	B(b, uint8_t, 1);
	B(b, uint32_t, 1);
	B(b, uint32_t, type);
	wire(b, key);
	if (type == HV_KVP_REG_SZ) {
		wire(b, "v");
	} else {
		B(b, uint16_t, 4);
		B(b, uint32_t, 42);
	}
}

static void query(struct b *b, uint32_t id, uint8_t op, uint8_t pool, const char *key)
{
	B(b, uint32_t, id);
	B(b, uint8_t, op);
	B(b, uint8_t, pool);
	B(b, uint8_t, 0);
	if (key)
		wire(b, key);
	else
		B(b, uint16_t, 0);
}

static void item(struct b *b, uint32_t type, const char *key, const char *value)
{
	B(b, uint32_t, type);
	B(b, uint16_t, strlen(key));
	bput(b, key, strlen(key));
	B(b, uint16_t, strlen(value));
	bput(b, value, strlen(value));
}

/* no transaction, tid 0, no staging; pools empty */
static void kvp_tail(struct b *b)
{
	B(b, uint8_t, 0);
	B(b, uint64_t, 0);
	for (int i = 0; i < 1 + HV_KVP_POOL_COUNT; i++)
		B(b, uint16_t, 0);
}

static void test_kvp_fields(void **state)
{
	struct saved *s = *state;
	static struct b b;
	/* the shapes below are accepted when well-formed */
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 2);
	entry(&b, 5, HV_KVP_REG_SZ, "A");
	entry(&b, 9, HV_KVP_REG_U32, "B");
	B(&b, uint8_t, 2);
	query(&b, 3, HV_KVP_OP_GET, 0, "A");
	query(&b, 4, HV_KVP_OP_ENUMERATE, 2, NULL);
	B(&b, uint8_t, 1);     /* push of slot 5 */
	B(&b, uint8_t, 5);
	B(&b, uint8_t, HV_KVP_OP_SET);
	B(&b, uint32_t, 1);
	B(&b, uint64_t, 9);
	B(&b, uint16_t, 0);
	B(&b, uint16_t, 1);
	item(&b, HV_KVP_REG_SZ, "K", "V");
	for (int i = 1; i < HV_KVP_POOL_COUNT; i++)
		B(&b, uint16_t, 0);
	assert_int_equal(try_payload(s, KVP, b.d, b.n, NULL, 0), 0);

	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 65);
	refused(s, KVP, b.d, b.n, "ic kvp: 65 host entries saved, at most 64");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 1);
	entry(&b, 64, HV_KVP_REG_SZ, "A");
	refused(s, KVP, b.d, b.n, "ic kvp: host entry slot 64 out of range");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 2);
	entry(&b, 3, HV_KVP_REG_SZ, "A");
	entry(&b, 3, HV_KVP_REG_SZ, "B");
	refused(s, KVP, b.d, b.n, "slot 3 out of range or out of order");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 2);
	entry(&b, 9, HV_KVP_REG_SZ, "A");
	entry(&b, 5, HV_KVP_REG_SZ, "B");
	refused(s, KVP, b.d, b.n, "slot 5 out of range or out of order");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 2);
	entry(&b, 3, HV_KVP_REG_SZ, "A");
	entry(&b, 4, HV_KVP_REG_SZ, "A");
	refused(s, KVP, b.d, b.n, "ic kvp: host entry 4: the key is saved twice");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 1);
	entry(&b, 3, 3, "A");
	refused(s, KVP, b.d, b.n, "ic kvp: host entry 3: a value of type 3");
	/* keys: empty, odd size, a lone surrogate, too long; values: U32 of 5 bytes */
	static const uint8_t empty[] = {0, 0}, odd[] = {'A', 0, 0, 0, 0}, lone[] = {0x00, 0xd8, 0, 0};
	const struct {
		const uint8_t *key;
		uint16_t size;
	} keys[] = {{empty, 2}, {odd, 5}, {lone, 4}};
	for (unsigned k = 0; k < 3; k++) {
		kvp_head(&b, IC_READY);
		B(&b, uint8_t, 1);
		B(&b, uint8_t, 0);
		B(&b, uint8_t, 1);
		B(&b, uint32_t, 1);
		B(&b, uint32_t, HV_KVP_REG_SZ);
		B(&b, uint16_t, keys[k].size);
		bput(&b, keys[k].key, keys[k].size);
		wire(&b, "v");
		refused(s, KVP, b.d, b.n, "ic kvp: host entry 0: the key is none ic_kvp_set() takes");
	}
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 1);
	bput(&b, (uint8_t[]){0, 1, 1, 0, 0, 0, HV_KVP_REG_SZ, 0, 0, 0}, 10);
	B(&b, uint16_t, 600);
	refused(s, KVP, b.d, b.n, "ic kvp: host key of 600 bytes saved, at most 512");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 1);
	bput(&b, (uint8_t[]){0, 1, 1, 0, 0, 0, HV_KVP_REG_U32, 0, 0, 0}, 10);
	wire(&b, "A");
	B(&b, uint16_t, 5);
	bput(&b, "12345", 5);
	refused(s, KVP, b.d, b.n, "a value of type 4 and 5 bytes");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 1);
	bput(&b, (uint8_t[]){0, 4, 1, 0, 0, 0, HV_KVP_REG_SZ, 0, 0, 0}, 10);
	refused(s, KVP, b.d, b.n, "ic kvp: host entry 0: flags 0x4");

	/* queue */
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 0);
	B(&b, uint8_t, 17);
	refused(s, KVP, b.d, b.n, "ic kvp: 17 queued queries saved, at most 16");
	const struct {
		uint32_t id;
		uint8_t op, pool;
		const char *key;
	} bad[] = {
		{0, HV_KVP_OP_ENUMERATE, 2, NULL}, {1, HV_KVP_OP_SET, 0, "A"},       {1, HV_KVP_OP_ENUMERATE, 5, NULL},
		{1, HV_KVP_OP_ENUMERATE, 2, "A"},  {1, HV_KVP_OP_GET, 0, NULL},      {1, HV_KVP_OP_GET_IP_INFO, 0, "A"},
	};
	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		kvp_head(&b, IC_READY);
		B(&b, uint8_t, 0);
		B(&b, uint8_t, 1);
		query(&b, bad[k].id, bad[k].op, bad[k].pool, bad[k].key);
		kvp_tail(&b);
		refused(s, KVP, b.d, b.n, "is none the host makes");
	}
	/* an adapter id longer than GET_IP_INFO's field */
	char mac[200];
	memset(mac, 'a', 199);
	mac[199] = 0;
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 0);
	B(&b, uint8_t, 1);
	query(&b, 1, HV_KVP_OP_GET_IP_INFO, HV_KVP_POOL_GUEST, mac);
	kvp_tail(&b);
	refused(s, KVP, b.d, b.n, "key of 400 bytes) is none the host makes");

	/* the transaction on the wire */
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	B(&b, uint8_t, 3);
	refused(s, KVP, b.d, b.n, "ic kvp: transaction kind 3");
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	bput(&b, (uint8_t[]){1, 5, HV_KVP_OP_SET, 1, 0, 0, 0}, 7);
	refused(s, KVP, b.d, b.n, "ic kvp: push of host entry 5 (operation 1) on the wire");
	kvp_head(&b, IC_READY);
	B(&b, uint8_t, 1);
	entry(&b, 5, HV_KVP_REG_SZ, "A");
	B(&b, uint8_t, 0);
	bput(&b, (uint8_t[]){1, 5, HV_KVP_OP_GET, 1, 0, 0, 0}, 7);
	refused(s, KVP, b.d, b.n, "ic kvp: push of host entry 5 (operation 0)");
	for (int k = 0; k < 3; k++) {
		kvp_head(&b, k == 2 ? IC_NEGOTIATING : IC_READY);
		B(&b, uint16_t, 0);
		B(&b, uint8_t, 2);
		query(&b, 1, HV_KVP_OP_ENUMERATE, 2, NULL);
		B(&b, uint64_t, k == 0 ? 10 : k == 1 ? 0 : 5);
		for (int i = 0; i < 1 + HV_KVP_POOL_COUNT; i++)
			B(&b, uint16_t, 0);
		refused(s, KVP, b.d, b.n, "on the wire (next 10");
	}
	/* staging: items only for an ENUMERATE on the wire, fewer than the cache holds */
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	B(&b, uint8_t, 0);
	B(&b, uint64_t, 0);
	B(&b, uint16_t, 1);
	refused(s, KVP, b.d, b.n, "ic kvp: 1 items of an enumeration saved, at most 0");
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	B(&b, uint8_t, 2);
	query(&b, 1, HV_KVP_OP_ENUMERATE, 2, NULL);
	B(&b, uint64_t, 9);
	B(&b, uint16_t, IC_KVP_POOL_CACHE);
	refused(s, KVP, b.d, b.n, "ic kvp: 256 items of an enumeration saved, at most 255");

	/* pools */
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	B(&b, uint8_t, 0);
	B(&b, uint64_t, 0);
	B(&b, uint16_t, 0);
	B(&b, uint16_t, 0);
	B(&b, uint16_t, 60000);
	refused(s, KVP, b.d, b.n, "ic kvp: pool 1: 60000 items saved, at most 256");
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	B(&b, uint8_t, 0);
	B(&b, uint64_t, 0);
	B(&b, uint16_t, 0);
	B(&b, uint16_t, 200); /* the count, but no items */
	refused(s, KVP, b.d, b.n, "ic kvp: state truncated");
	const struct {
		uint32_t type;
		const char *key, *value, *want;
	} items[] = {
		{3, "K", "V", "item 0 (type 3)"},
		{HV_KVP_REG_SZ, "K", "\xff", "item 0 (type 1) is none"},
		{HV_KVP_REG_SZ, "\xed\xa0\x80", "V", "is none a guest's answer makes"}, /* a UTF-8 surrogate */
	};
	for (unsigned k = 0; k < sizeof(items) / sizeof(items[0]); k++) {
		kvp_head(&b, IC_READY);
		B(&b, uint16_t, 0);
		B(&b, uint8_t, 0);
		B(&b, uint64_t, 0);
		B(&b, uint16_t, 0);
		B(&b, uint16_t, 1);
		item(&b, items[k].type, items[k].key, items[k].value);
		for (int i = 1; i < HV_KVP_POOL_COUNT; i++)
			B(&b, uint16_t, 0);
		refused(s, KVP, b.d, b.n, items[k].want);
	}
	/* a NUL inside a value, a key longer than any guest's */
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	B(&b, uint8_t, 0);
	B(&b, uint64_t, 0);
	B(&b, uint16_t, 0);
	B(&b, uint16_t, 1);
	B(&b, uint32_t, HV_KVP_REG_SZ);
	wire(&b, "K"); /* UTF-16 bytes as a UTF-8 key: NULs inside */
	B(&b, uint16_t, 1);
	bput(&b, "V", 1);
	for (int i = 1; i < HV_KVP_POOL_COUNT; i++)
		B(&b, uint16_t, 0);
	refused(s, KVP, b.d, b.n, "is none a guest's answer makes");
	kvp_head(&b, IC_READY);
	B(&b, uint16_t, 0);
	B(&b, uint8_t, 0);
	B(&b, uint64_t, 0);
	B(&b, uint16_t, 0);
	B(&b, uint16_t, 1);
	B(&b, uint32_t, HV_KVP_REG_SZ);
	B(&b, uint16_t, IC_KVP_KEY_MAX);
	B(&b, uint64_t, 0); /* past the bytes an item takes at least */
	refused(s, KVP, b.d, b.n, "ic kvp: item key of 769 bytes saved, at most 768");
}

/* The seeds of tests/fuzz/ic_restore: one file per service, a service byte then its payload. */
static int write_seeds(const char *dir)
{
	struct guest *u = guest_new();
	struct host *h = host_busy(u, 1000);
	int fd = host_save(h);
	static uint8_t p[65536];
	for (int i = 0; i < NIC; i++) {
		size_t n = file_ic_payload(fd, (uint32_t)i + 1, p + 1, sizeof(p) - 1);
		p[0] = (uint8_t)i;
		char path[4096];
		snprintf(path, sizeof(path), "%s/seed-%d", dir, i);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(p, 1, n + 1, f) != n + 1 || fclose(f) != 0) {
			perror(path);
			return 1;
		}
	}
	close(fd);
	host_free(h);
	free(u);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--seed"))
		return write_seeds(argv[2]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_answers_in_the_ring),
		cmocka_unit_test(test_timeouts_after_restore),
		cmocka_unit_test(test_negotiation_in_flight),
		cmocka_unit_test_setup_teardown(test_framework_fields, saved_setup, saved_teardown),
		cmocka_unit_test_setup_teardown(test_service_fields, saved_setup, saved_teardown),
		cmocka_unit_test_setup_teardown(test_kvp_fields, saved_setup, saved_teardown),
		cmocka_unit_test_setup_teardown(test_truncations, saved_setup, saved_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
