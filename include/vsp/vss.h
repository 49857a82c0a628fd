/* VSS integration service ("Backup (volume shadow copy)"): the host asks the guest to freeze its
 * file systems before a snapshot/backup and to thaw them afterwards. The Linux guest side is
 * drivers/hv/hv_snapshot.c in hv_utils, which hands FREEZE / THAW / HOT_BACKUP to the user-space
 * hv_vss_daemon (FIFREEZE/FITHAW on every mounted file system) and answers with its result.
 * Without the daemon the guest answers those with HV_E_FAIL at once.
 *
 * A device of the integration-service framework (vsp/ic.h): same negotiation (framework 3.0,
 * VSS 5.0 — the only versions Linux offers), same threading (worker device thread only).
 *
 * Time: nothing here sleeps or reads a clock. Every call that may start a guest transaction
 * takes the caller's monotonic time in milliseconds; ic_vss_tick() must be called periodically
 * (>= 1 Hz) to expire transactions the guest does not answer. */
#ifndef VIRIDIAN_VSP_VSS_H
#define VIRIDIAN_VSP_VSS_H

#include <stdint.h>

#include "vsp/ic.h"

/* ---- wire format (Linux include/uapi/linux/hyperv.h struct hv_vss_msg) ---- */
enum hv_vss_op {
	HV_VSS_OP_CREATE = 0,
	HV_VSS_OP_DELETE = 1,
	HV_VSS_OP_HOT_BACKUP = 2,   /* "check feature": the guest answers flags */
	HV_VSS_OP_GET_DM_INFO = 3,
	HV_VSS_OP_BU_COMPLETE = 4,
	HV_VSS_OP_FREEZE = 5,       /* IC version >= 5.0 */
	HV_VSS_OP_THAW = 6,
	HV_VSS_OP_AUTO_RECOVER = 7,
	HV_VSS_OP_COUNT = 8,
};

struct hv_vss_hdr {
	uint8_t operation;          /* HV_VSS_OP_* */
	uint8_t reserved[7];
} __attribute__((packed));

/* The body after the icmsg header (Linux: union of the header with an int error, then a union of
 * check-feature / dm-info flags). */
struct hv_vss_msg {
	struct hv_vss_hdr hdr;
	uint32_t flags;             /* HOT_BACKUP answer: VSS_HBU_NO_AUTO_RECOVERY (5) from Linux */
} __attribute__((packed));

#define HV_VSS_HBU_NO_AUTO_RECOVERY 0x00000005u

_Static_assert(sizeof(struct hv_vss_hdr) == 8, "hv_vss_hdr");
_Static_assert(sizeof(struct hv_vss_msg) == 12, "hv_vss_msg");
_Static_assert(__builtin_offsetof(struct hv_vss_msg, flags) == 8, "hv_vss_msg.flags");

#define IC_VSS_CLASS VMBUS_GUID_INIT(0x35fa2e29, 0xea23, 0x4236, 0x96, 0xae, 0x3a, 0x6e, 0xba, 0xcb, 0xa4, 0x40)

/* ---- host API ---- */
enum ic_vss_state {
	IC_VSS_IDLE,       /* nothing frozen, nothing outstanding */
	IC_VSS_FREEZING,   /* HOT_BACKUP check, then FREEZE, outstanding */
	IC_VSS_FROZEN,     /* the guest reported its file systems frozen: take the snapshot now */
	IC_VSS_THAWING,    /* THAW outstanding */
	IC_VSS_FAILED,     /* last operation failed: see ic_vss_error(); freeze or thaw may be retried */
};

enum ic_vss_error {
	IC_VSS_OK,
	IC_VSS_E_NOT_READY,     /* channel closed or versions not agreed */
	IC_VSS_E_GUEST,         /* the guest answered a failure status (no daemon, FIFREEZE failed, ..):
				 * ic_vss_hresult() has it */
	IC_VSS_E_TIMEOUT,       /* no answer in time (a THAW was sent after a FREEZE timed out) */
	IC_VSS_E_CLOSED,        /* the channel closed during the operation */
	IC_VSS_E_PROTOCOL,      /* the guest's answer was malformed */
};

/* Called on every state change to IC_VSS_FROZEN, IC_VSS_IDLE (after a thaw) or IC_VSS_FAILED,
 * from inside vmbus_server_* (device thread) or ic_vss_tick(). May be NULL (poll instead). */
typedef void (*ic_vss_done_fn)(void *ctx, struct ic_dev *dev, enum ic_vss_state state, enum ic_vss_error err);

/* Timeouts the host applies (milliseconds). Linux gives its daemon 15 min for FREEZE and 30 s
 * for THAW / HOT_BACKUP before answering HV_E_FAIL itself, so the defaults are a bit longer. */
#define IC_VSS_FREEZE_TIMEOUT_MS (16u * 60u * 1000u)
#define IC_VSS_OTHER_TIMEOUT_MS  (60u * 1000u)

/* Add the device; free with ic_vss_free() (not ic_free: the service state would leak). */
struct ic_dev *ic_vss_add(struct vmbus_server *srv, ic_vss_done_fn done, void *ctx);
void ic_vss_free(struct ic_dev *dev);
void ic_vss_set_timeouts(struct ic_dev *dev, uint32_t freeze_ms, uint32_t other_ms);

/* Request a freeze (from IDLE or FAILED): sends HOT_BACKUP, then FREEZE when the guest agrees.
 * Returns 0 (now FREEZING), or -1: not ready (see ic_state) or an operation is in progress. */
int ic_vss_freeze(struct ic_dev *dev, uint64_t now_ms);
/* Thaw (from FROZEN, or FAILED to make sure after an error). 0 (now THAWING) or -1. */
int ic_vss_thaw(struct ic_dev *dev, uint64_t now_ms);
/* Expire an unanswered transaction. A FREEZE that times out is followed by a THAW (the daemon
 * may still freeze later); the state becomes FAILED(TIMEOUT) once that THAW completes or
 * expires. */
void ic_vss_tick(struct ic_dev *dev, uint64_t now_ms);

enum ic_vss_state ic_vss_state(const struct ic_dev *dev);
enum ic_vss_error ic_vss_error(const struct ic_dev *dev);
uint32_t ic_vss_hresult(const struct ic_dev *dev);      /* the guest's status for IC_VSS_E_GUEST */
uint32_t ic_vss_backup_flags(const struct ic_dev *dev); /* flags of the last HOT_BACKUP answer */
const char *ic_vss_state_name(enum ic_vss_state s);
const char *ic_vss_error_name(enum ic_vss_error e);

#endif
