/* KVP integration service ("Data Exchange", key-value pair exchange): Linux drivers/hv/hv_kvp.c in
 * hv_utils relays each host request to the user-space hv_kvp_daemon, which keeps the pools in
 * /var/lib/hyperv/.kvp_pool_N and produces the intrinsic (AUTO pool) values itself.
 *
 * Pools: 0 EXTERNAL (host -> guest: what the host sets here lands in .kvp_pool_0), 1 GUEST (the
 * guest's own writes), 2 AUTO (intrinsic: FullyQualifiedDomainName, IntegrationServicesVersion,
 * NetworkAddressIPv4/IPv6, OSBuildNumber, OSName, OSMajorVersion, OSMinorVersion, OSVersion,
 * ProcessorArchitecture — by index 0..9), 3 AUTO_EXTERNAL, 4 AUTO_INTERNAL.
 *
 * Protocol: the host sends one request at a time; the guest answers in the same buffer (same
 * length) with a status (HV_S_OK, or an error: HV_S_CONT ends an enumeration). Linux does not
 * even answer the version negotiation until hv_kvp_daemon has registered, so this device may sit
 * in IC_NEGOTIATING for a guest without the daemon; requests queue until it is ready.
 *
 * Host side: the device keeps the host's pool-0 table (set/delete) and pushes it to the guest
 * (SET / DELETE on pool 0) whenever the guest becomes ready and on every change; queued queries
 * (GET, ENUMERATE, GET_IP_INFO) follow. Results come through one completion callback and are
 * also cached for polling (the last full enumeration of each pool).
 *
 * Strings are UTF-8 at this API and UTF-16LE on the wire (sizes in bytes, terminator included:
 * keys at most 512 bytes, values 2048). Threading: worker device thread only. Time: callers pass
 * a monotonic time in ms; ic_kvp_tick() (>= 1 Hz) expires unanswered requests. */
#ifndef VIRIDIAN_VSP_KVP_H
#define VIRIDIAN_VSP_KVP_H

#include <stdbool.h>
#include <stdint.h>

#include "vsp/ic.h"

/* ---- wire format (Linux include/uapi/linux/hyperv.h) ---- */
enum hv_kvp_op {
	HV_KVP_OP_GET = 0,
	HV_KVP_OP_SET = 1,
	HV_KVP_OP_DELETE = 2,
	HV_KVP_OP_ENUMERATE = 3,
	HV_KVP_OP_GET_IP_INFO = 4,
	HV_KVP_OP_SET_IP_INFO = 5,
	HV_KVP_OP_COUNT = 6,
};

enum hv_kvp_pool {
	HV_KVP_POOL_EXTERNAL = 0,
	HV_KVP_POOL_GUEST = 1,
	HV_KVP_POOL_AUTO = 2,
	HV_KVP_POOL_AUTO_EXTERNAL = 3,
	HV_KVP_POOL_AUTO_INTERNAL = 4,
	HV_KVP_POOL_COUNT = 5,
};

#define HV_KVP_REG_SZ  1
#define HV_KVP_REG_U32 4
#define HV_KVP_REG_U64 8

#define HV_KVP_MAX_KEY_SIZE   512  /* bytes of UTF-16LE, terminator included */
#define HV_KVP_MAX_VALUE_SIZE 2048

#define IC_HV_S_CONT               0x80070103u /* ERROR_NO_MORE_ITEMS: end of an enumeration */
#define IC_HV_ERROR_NOT_SUPPORTED  0x80070032u

struct hv_kvp_hdr {
	uint8_t operation;
	uint8_t pool;
	uint16_t pad;
} __attribute__((packed));

struct hv_kvp_exchg_msg_value {
	uint32_t value_type;        /* HV_KVP_REG_* */
	uint32_t key_size;          /* bytes */
	uint32_t value_size;        /* bytes */
	uint8_t key[HV_KVP_MAX_KEY_SIZE];
	uint8_t value[HV_KVP_MAX_VALUE_SIZE]; /* UTF-16LE, or a little-endian u32 / u64 */
} __attribute__((packed));

/* GET / SET / ENUMERATE all share this shape after the header (GET and SET leave index 0 out:
 * their value starts right after the header). */
struct hv_kvp_msg_enumerate {
	uint32_t index;
	struct hv_kvp_exchg_msg_value data;
} __attribute__((packed));

struct hv_kvp_msg_delete {
	uint32_t key_size;
	uint8_t key[HV_KVP_MAX_KEY_SIZE];
} __attribute__((packed));

/* GET_IP_INFO / SET_IP_INFO (up to IC version 4.0, the UTF-16 string form Linux speaks) */
#define HV_KVP_MAX_ADAPTER_ID_SIZE 128 /* UTF-16 units */
#define HV_KVP_MAX_IP_ADDR_SIZE    1024
#define HV_KVP_MAX_GATEWAY_SIZE    512
#define HV_KVP_ADDR_FAMILY_NONE 0
#define HV_KVP_ADDR_FAMILY_IPV4 1
#define HV_KVP_ADDR_FAMILY_IPV6 2

struct hv_kvp_ipaddr_value {
	uint16_t adapter_id[HV_KVP_MAX_ADAPTER_ID_SIZE];
	uint8_t addr_family;
	uint8_t dhcp_enabled;
	uint16_t ip_addr[HV_KVP_MAX_IP_ADDR_SIZE];   /* "a;b;c" */
	uint16_t sub_net[HV_KVP_MAX_IP_ADDR_SIZE];
	uint16_t gate_way[HV_KVP_MAX_GATEWAY_SIZE];
	uint16_t dns_addr[HV_KVP_MAX_IP_ADDR_SIZE];
} __attribute__((packed));

/* IP messages put the value right after operation + pool (2 bytes, no pad). */
struct hv_kvp_ip_msg {
	uint8_t operation;
	uint8_t pool;
	struct hv_kvp_ipaddr_value kvp_ip_val;
} __attribute__((packed));

/* What the host sends for GET / SET / ENUMERATE / DELETE: header + the largest of those bodies,
 * so the guest can answer in place (Linux replies with the request's length). */
#define HV_KVP_MSG_SIZE (sizeof(struct hv_kvp_hdr) + sizeof(struct hv_kvp_msg_enumerate)) /* 2580 */

_Static_assert(sizeof(struct hv_kvp_hdr) == 4, "hv_kvp_hdr");
_Static_assert(sizeof(struct hv_kvp_exchg_msg_value) == 2572, "hv_kvp_exchg_msg_value");
_Static_assert(__builtin_offsetof(struct hv_kvp_exchg_msg_value, key) == 12, "kvp key");
_Static_assert(__builtin_offsetof(struct hv_kvp_exchg_msg_value, value) == 524, "kvp value");
_Static_assert(sizeof(struct hv_kvp_msg_enumerate) == 2576, "hv_kvp_msg_enumerate");
_Static_assert(sizeof(struct hv_kvp_msg_delete) == 516, "hv_kvp_msg_delete");
_Static_assert(sizeof(struct hv_kvp_ipaddr_value) == 7426, "hv_kvp_ipaddr_value");
_Static_assert(__builtin_offsetof(struct hv_kvp_ipaddr_value, ip_addr) == 258, "kvp ip_addr");
_Static_assert(__builtin_offsetof(struct hv_kvp_ipaddr_value, dns_addr) == 5378, "kvp dns_addr");
_Static_assert(sizeof(struct hv_kvp_ip_msg) == 7428, "hv_kvp_ip_msg");
_Static_assert(HV_KVP_MSG_SIZE == 2580, "kvp message");

#define IC_KVP_CLASS VMBUS_GUID_INIT(0xa9a0f4e7, 0x5a45, 0x4d96, 0xb8, 0x27, 0x8a, 0x84, 0x1e, 0x8c, 0x03, 0xe6)

/* ---- host API ---- */
/* UTF-8 buffer sizes that hold any wire string (<= 3 bytes per UTF-16 unit) + NUL */
#define IC_KVP_KEY_MAX   (HV_KVP_MAX_KEY_SIZE / 2 * 3 + 1)   /* 769 */
#define IC_KVP_VALUE_MAX (HV_KVP_MAX_VALUE_SIZE / 2 * 3 + 1) /* 3073 */
#define IC_KVP_IP_MAX    (HV_KVP_MAX_IP_ADDR_SIZE * 3 + 1)

struct ic_kvp_pair {
	char key[IC_KVP_KEY_MAX];       /* UTF-8, NUL-terminated */
	char value[IC_KVP_VALUE_MAX];   /* UTF-8; REG_U32 / REG_U64 rendered in decimal */
	uint32_t value_type;            /* HV_KVP_REG_* as the guest sent it */
};

struct ic_kvp_ip_info {
	char adapter_id[HV_KVP_MAX_ADAPTER_ID_SIZE * 3 + 1];
	uint8_t addr_family;            /* HV_KVP_ADDR_FAMILY_* */
	bool dhcp_enabled;
	char ip_addr[IC_KVP_IP_MAX];    /* ';'-separated lists as the guest reports them */
	char sub_net[IC_KVP_IP_MAX];
	char gate_way[HV_KVP_MAX_GATEWAY_SIZE * 3 + 1];
	char dns_addr[IC_KVP_IP_MAX];
};

enum ic_kvp_status {
	IC_KVP_OK,          /* done (SET/DELETE/GET), or one ENUMERATE item (pair set) */
	IC_KVP_END,         /* an enumeration finished: the guest said no more items (HV_S_CONT) */
	IC_KVP_GUEST_ERROR, /* the guest answered another failure status (hresult) */
	IC_KVP_TIMEOUT,     /* no answer in time */
	IC_KVP_CLOSED,      /* the channel closed with the request outstanding (queued ones stay) */
	IC_KVP_MALFORMED,   /* the answer did not parse (sizes beyond the buffer, bad type, ..) */
};

struct ic_kvp_result {
	uint32_t id;                    /* the request's id (0: a pool-0 push of the host table) */
	uint8_t op;                     /* HV_KVP_OP_* */
	uint8_t pool;
	enum ic_kvp_status status;
	uint32_t hresult;               /* the guest's icmsg status */
	uint32_t index;                 /* ENUMERATE: item index */
	const struct ic_kvp_pair *pair; /* GET, ENUMERATE items with OK; else NULL */
	const char *key;                /* SET / DELETE pushes: the key */
	const struct ic_kvp_ip_info *ip;/* GET_IP_INFO with OK */
};

/* Called for every completed transaction (device thread, or inside ic_kvp_tick). The pointers
 * are valid during the call only. May be NULL. */
typedef void (*ic_kvp_done_fn)(void *ctx, struct ic_dev *dev, const struct ic_kvp_result *r);

#define IC_KVP_TIMEOUT_MS   (60u * 1000u) /* Linux gives its daemon 30 s (HV_UTIL_TIMEOUT) */
#define IC_KVP_HOST_ENTRIES 64           /* host pool-0 table */
#define IC_KVP_QUEUE        16           /* queued queries */
#define IC_KVP_POOL_CACHE   256          /* items kept per enumerated pool */

/* Add the device; free with ic_kvp_free() (not ic_free: the service state would leak). */
struct ic_dev *ic_kvp_add(struct vmbus_server *srv, ic_kvp_done_fn done, void *ctx);
void ic_kvp_free(struct ic_dev *dev);
void ic_kvp_set_timeout(struct ic_dev *dev, uint32_t timeout_ms);

/* Host pool (0) entries, pushed to the guest now if it is ready, else when it becomes ready
 * (and again after every reconnect). 0, or -1: key/value too long, invalid UTF-8, table full
 * (set) or no such key (delete). */
int ic_kvp_set(struct ic_dev *dev, const char *key, const char *value, uint64_t now_ms);
int ic_kvp_set_u32(struct ic_dev *dev, const char *key, uint32_t value, uint64_t now_ms);
int ic_kvp_set_u64(struct ic_dev *dev, const char *key, uint64_t value, uint64_t now_ms);
int ic_kvp_delete(struct ic_dev *dev, const char *key, uint64_t now_ms);
/* Number of host entries, and whether all of them reached the current guest. */
unsigned ic_kvp_host_count(const struct ic_dev *dev);
bool ic_kvp_host_synced(const struct ic_dev *dev);

/* Queries: return a request id (> 0), or 0 when the queue is full / the argument is invalid.
 * ENUMERATE drives index 0, 1, .. reporting each item, until the guest answers an error; then
 * the collected items replace that pool's cache (IC_KVP_END) — a timeout or other error keeps
 * the old cache. GET_IP_INFO asks for one adapter by its MAC address as the guest daemon matches
 * it ("00:15:5D:12:34:56"); netvsp decides when to ask. */
uint32_t ic_kvp_get(struct ic_dev *dev, uint8_t pool, const char *key, uint64_t now_ms);
uint32_t ic_kvp_enumerate(struct ic_dev *dev, uint8_t pool, uint64_t now_ms);
uint32_t ic_kvp_get_ip_info(struct ic_dev *dev, const char *adapter_mac, uint8_t addr_family, uint64_t now_ms);

/* Expire an unanswered request (reported IC_KVP_TIMEOUT; an enumeration ends there), then send
 * the next one. */
void ic_kvp_tick(struct ic_dev *dev, uint64_t now_ms);

/* Polled results: the last completed enumeration of a pool. */
unsigned ic_kvp_pool_count(const struct ic_dev *dev, uint8_t pool);
const struct ic_kvp_pair *ic_kvp_pool_item(const struct ic_dev *dev, uint8_t pool, unsigned i);
/* Value of key in that cache, or NULL. */
const char *ic_kvp_pool_lookup(const struct ic_dev *dev, uint8_t pool, const char *key);
/* Whether a request is on the wire now (exactly one at a time). */
bool ic_kvp_busy(const struct ic_dev *dev);

/* UTF-8 <-> UTF-16LE helpers (exported for tests and netvsp). utf8_to_utf16le writes at most
 * cap bytes including a 2-byte terminator and returns the size in bytes with it, or -1 (invalid
 * UTF-8 or too long). utf16le_to_utf8 converts up to len bytes, stopping at a NUL unit; lone
 * surrogates become U+FFFD; out must hold len/2*3+1 bytes; returns the string length. */
int ic_kvp_utf8_to_utf16le(const char *s, uint8_t *out, uint32_t cap);
uint32_t ic_kvp_utf16le_to_utf8(const uint8_t *in, uint32_t len, char *out);

#endif
