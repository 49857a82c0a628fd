/* Saved-state harness for the integration services, shared by tests/unit/ic/test_ic_state.c and
 * tests/fuzz/ic_restore: a host (fake-guest VMBus server + the five ICs, as the worker adds them)
 * and a guest that answers like hv_utils + hv_kvp_daemon + hv_vss_daemon and can hold a request
 * unanswered (a daemon at work), across a save and a restore into a new host over the same guest
 * RAM. Plain C (no cmocka): harness failures abort(). */
#ifndef IC_STATE_HARNESS_H
#define IC_STATE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "fake_guest.h"
#include "vsp/kvp.h"
#include "vsp/vss.h"

enum { HB, SD, TS, KVP, VSS, NIC }; /* also registration order: relid = index + 1 */

struct gsvc {
	struct fg_chan ch;
	unsigned negotiations, requests;
	bool deaf;                  /* leaves its ring alone */
	unsigned hold;              /* keeps the hold-th next service request unanswered (1: the next
				     * one) and reads nothing more until guest_release() */
	bool quiet;                 /* answers without signalling the host */
	uint32_t held_len;
	uint64_t held_tid;
	uint8_t held[8192];
};

#define G_POOL0 16
struct guest {
	struct gsvc s[NIC];
	char pool0[G_POOL0][2][64]; /* hv_kvp_daemon's .kvp_pool_0: ASCII key, value */
	unsigned n0;
	uint32_t sd_flags;
	uint8_t ts_flags;
	bool frozen;
};

#define H_RESULTS 64
struct host {
	struct fake_guest g;
	struct ic_dev *ic[NIC];
	struct ic_kvp_result kvp[H_RESULTS]; /* the KVP results reported (pointers cleared) */
	unsigned nkvp;
	enum ic_vss_state vss[H_RESULTS];
	enum ic_vss_error vss_err[H_RESULTS];
	unsigned nvss;
};

/* fg_init + the five ICs; host_free frees both. */
struct host *host_new(void);
void host_free(struct host *h);
/* Connect, offers, open every channel; the guest answers each negotiation. */
void host_connect(struct host *h, struct guest *u);

/* The guest reads and answers what service i's ring holds (see struct gsvc). */
void guest_poll(struct host *h, struct guest *u, int i);
/* Answer the held request, then poll. */
void guest_release(struct host *h, struct guest *u, int i);

/* A connected host with every IC negotiated and a transaction in flight on each: a heartbeat
 * and a shutdown request unread in the guest's ring, an AUTO-pool enumeration at the KVP daemon
 * (third item; a host entry push and a GET queued behind it, another entry acknowledged, the
 * pool cached), a FREEZE at the VSS daemon. now: the KVP / VSS clock. */
struct host *host_busy(struct guest *u, uint64_t now);
/* The guest's ring views onto h's RAM (the channels as host_connect() laid them out). */
void guest_attach(struct guest *u, struct host *h);

/* vmbus_server_save() into a rewound memfd (-1 on failure). */
int host_save(struct host *h);
/* A copy of the host's guest RAM (free it), and a new host with fresh ICs over such a copy. */
uint8_t *host_ram(const struct host *h);
struct host *host_with_ram(const uint8_t *ram);
/* The next host of the same guest: the old host's guest RAM, old host freed, a new one with
 * fresh ICs over that RAM, the guest's ring views moved onto it. */
struct host *host_move(struct host *old, struct guest *u);
/* Every section of the file at fd into srv: the VMBUS one, each device's, then restore_finish.
 * Returns 0 or the first negative errno (state_last_error() says why). */
int host_restore(struct host *h, int fd);

/* The IC sections of a file, for comparisons: (relid u32, length u32, payload) each, into out;
 * returns the bytes used. */
size_t file_ic_sections(int fd, uint8_t *out, size_t cap);
/* A copy of the file (a rewound memfd) with the IC section of relid carrying payload instead,
 * and version as its section version (0: the one it had). */
int file_replace_ic(int fd, uint32_t relid, uint16_t version, const void *payload, size_t len);
/* The payload of one IC section (relid) into out; its length, or 0. */
size_t file_ic_payload(int fd, uint32_t relid, uint8_t *out, size_t cap);

#endif
