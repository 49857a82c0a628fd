/* Integration services (ICs): small VMBus devices the guest's hv_utils driver serves —
 * heartbeat, shutdown, time sync (KVP and VSS later). Each is a VSP on the device API
 * (vmbus/channel.h) sharing one framework: every message is a pipe header + icmsg header + body;
 * the host speaks first, negotiating a framework version and a service version, then sends
 * requests that the guest answers in place (same buffer, ICMSGHDRFLAG_RESPONSE, same trans_id).
 *
 * Wire formats follow Linux include/linux/hyperv.h (struct icmsg_hdr, icmsg_negotiate, ...).
 * Threading: like the VMBus server, everything runs on the worker's device thread. */
#ifndef VIRIDIAN_VSP_IC_H
#define VIRIDIAN_VSP_IC_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/channel.h"
#include "vmbus/server.h"

/* ---- wire formats ---- */
struct vmbuspipe_hdr {
	uint32_t flags;
	uint32_t msgsize;
} __attribute__((packed));

struct ic_version {
	uint16_t major;
	uint16_t minor;
} __attribute__((packed));

struct icmsg_hdr {
	struct ic_version icverframe; /* framework version */
	uint16_t icmsgtype;           /* ICMSGTYPE_* */
	struct ic_version icvermsg;   /* service (message) version */
	uint16_t icmsgsize;           /* body bytes */
	uint32_t status;              /* HV_S_OK / HV_E_FAIL (guest -> host) */
	uint8_t ictransaction_id;
	uint8_t icflags;              /* ICMSGHDRFLAG_* */
	uint8_t reserved[2];
} __attribute__((packed));

#define ICMSGTYPE_NEGOTIATE   0
#define ICMSGTYPE_HEARTBEAT   1
#define ICMSGTYPE_KVPEXCHANGE 2
#define ICMSGTYPE_SHUTDOWN    3
#define ICMSGTYPE_TIMESYNC    4
#define ICMSGTYPE_VSS         5

#define ICMSGHDRFLAG_TRANSACTION 1
#define ICMSGHDRFLAG_REQUEST     2
#define ICMSGHDRFLAG_RESPONSE    4

#define IC_HV_S_OK   0x00000000u
#define IC_HV_E_FAIL 0x80004005u

/* Both version lists in one array: icframe_vercnt framework versions, then icmsg_vercnt
 * service versions. The guest answers with one of each (counts 1/1) or none (0/0). */
struct icmsg_negotiate {
	uint16_t icframe_vercnt;
	uint16_t icmsg_vercnt;
	uint32_t reserved;
	struct ic_version icversion_data[];
} __attribute__((packed));

#define IC_HDR_SIZE (sizeof(struct vmbuspipe_hdr) + sizeof(struct icmsg_hdr)) /* 28 */

struct heartbeat_msg_data {
	uint64_t seq_num;             /* the guest answers seq_num + 1 */
	uint32_t reserved[8];
} __attribute__((packed));

struct shutdown_msg_data {
	uint32_t reason_code;
	uint32_t timeout_seconds;
	uint32_t flags;               /* IC_SHUTDOWN_FLAG_* */
	uint8_t display_message[2048];
} __attribute__((packed));
#define IC_SHUTDOWN_FLAG_SHUTDOWN  0 /* Linux: 0/1 power off, 2/3 reboot, 4/5 hibernate */
#define IC_SHUTDOWN_FLAG_FORCE     1
#define IC_SHUTDOWN_FLAG_REBOOT    2

/* Time sync before 4.0 */
struct ictimesync_data {
	uint64_t parenttime;          /* host UTC, 100 ns units since 1601-01-01 */
	uint64_t childtime;
	uint64_t roundtriptime;
	uint8_t flags;                /* ICTIMESYNCFLAG_* */
} __attribute__((packed));
/* Time sync 4.0 */
struct ictimesync_ref_data {
	uint64_t parenttime;          /* host UTC, 100 ns units since 1601-01-01 */
	uint64_t vmreferencetime;     /* partition reference time (100 ns) when parenttime was taken */
	uint8_t flags;
	char leapflags;
	char stratum;
	uint8_t reserved[3];
} __attribute__((packed));
#define ICTIMESYNCFLAG_PROBE  0
#define ICTIMESYNCFLAG_SYNC   1   /* step the clock (boot, resume) */
#define ICTIMESYNCFLAG_SAMPLE 2   /* periodic sample */
#define IC_WLTIMEDELTA 116444736000000000ull /* 1601 -> 1970 in 100 ns */

_Static_assert(sizeof(struct vmbuspipe_hdr) == 8, "vmbuspipe_hdr");
_Static_assert(sizeof(struct icmsg_hdr) == 20, "icmsg_hdr");
_Static_assert(sizeof(struct icmsg_negotiate) == 8, "icmsg_negotiate");
_Static_assert(sizeof(struct heartbeat_msg_data) == 40, "heartbeat_msg_data");
_Static_assert(sizeof(struct shutdown_msg_data) == 2060, "shutdown_msg_data");
_Static_assert(sizeof(struct ictimesync_data) == 25, "ictimesync_data");
_Static_assert(sizeof(struct ictimesync_ref_data) == 22, "ictimesync_ref_data");

#define IC_VERSION(maj, min) (((uint32_t)(maj) << 16) | (uint32_t)(min))
/* Framework versions we offer (Linux hv_utils knows 3.0 and 1.0). */
#define IC_FW_VERSION_3 IC_VERSION(3, 0)
#define IC_FW_VERSION_1 IC_VERSION(1, 0)

/* Class GUIDs (the guest driver match) */
#define IC_HEARTBEAT_CLASS VMBUS_GUID_INIT(0x57164f39, 0x9115, 0x4e78, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d)
#define IC_SHUTDOWN_CLASS  VMBUS_GUID_INIT(0x0e0b6031, 0x5213, 0x4934, 0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb)
#define IC_TIMESYNC_CLASS  VMBUS_GUID_INIT(0x9527e630, 0xd0ae, 0x497b, 0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17, 0x5c, 0xaf)

/* ---- the devices ---- */
enum ic_state {
	IC_CLOSED,       /* channel not open */
	IC_NEGOTIATING,  /* negotiate request sent */
	IC_READY,        /* versions agreed: requests may be sent */
	IC_FAILED,       /* the guest agreed on nothing, or broke the protocol */
};

struct ic_dev;

/* Add the device to a VMBus server (before the guest connects). The returned device is owned
 * by the caller; free it with ic_free() after vmbus_server_free(). */
struct ic_dev *ic_heartbeat_add(struct vmbus_server *srv);
struct ic_dev *ic_shutdown_add(struct vmbus_server *srv);
/* now_100ns: host UTC in 100 ns units since 1601; ref_100ns: partition reference time. Called
 * whenever a time sample is sent. NULL uses the host clocks (CLOCK_REALTIME, and 0 as reference). */
struct ic_dev *ic_timesync_add(struct vmbus_server *srv, uint64_t (*now_100ns)(void *), uint64_t (*ref_100ns)(void *),
			       void *clock_ctx);
void ic_free(struct ic_dev *dev);
/* Saved state: every IC saves and restores itself through its vmbus_device_ops (one
 * STATE_SECTION_IC per open channel, docs/vmbus.md "Integration services: saved state"):
 * vmbus_server_save/restore reach it, nothing to call here. A transaction in flight resumes. */

enum ic_state ic_state(const struct ic_dev *dev);
/* Negotiated versions (IC_VERSION form), valid in IC_READY. */
uint32_t ic_framework_version(const struct ic_dev *dev);
uint32_t ic_service_version(const struct ic_dev *dev);

/* Heartbeat: send the next sequence number (worker: every few seconds). Returns 0, or -1 when
 * not ready or a request is still outstanding. */
int ic_heartbeat_tick(struct ic_dev *dev);
/* Answers received with the right sequence number, and whether the last request was answered. */
uint64_t ic_heartbeat_answers(const struct ic_dev *dev);

/* Shutdown: ask the guest to power off (reboot: restart). Returns 0 or -1 (not ready / busy).
 * ic_shutdown_result: 0 none yet, 1 the guest accepted (it will power off), -1 it refused. */
int ic_shutdown_request(struct ic_dev *dev, bool reboot, bool force, const char *message);
int ic_shutdown_result(const struct ic_dev *dev);

/* Time sync: send one sample (flags ICTIMESYNCFLAG_SYNC to step the guest clock). 0 or -1. */
int ic_timesync_send(struct ic_dev *dev, uint8_t flags);
uint64_t ic_timesync_answers(const struct ic_dev *dev);

#endif
