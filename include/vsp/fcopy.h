/* Guest Service Interface (file copy IC): the host copies a file into the guest, as Hyper-V's
 * Copy-VMFile -FileSource Host does. The Linux guest side is drivers/hv/hv_fcopy.c in hv_utils,
 * which hands every request to the user-space hv_fcopy_daemon (hyperv-daemons): START_FILE_COPY
 * creates the file (and its directories with CREATE_PATH; refuses an existing file without
 * OVERWRITE), WRITE_TO_FILE pwrite()s one fragment at an offset, COMPLETE_FCOPY closes it and
 * CANCEL_FCOPY closes and unlinks it. Without the daemon the guest answers HV_E_FAIL.
 *
 * A device of the integration-service framework (vsp/ic.h): framework 3.0 (or 1.0), service 1.1
 * (the only version Linux offers), same threading (worker device thread only). One request is
 * outstanding at a time: Linux reads no further request until the daemon has answered.
 *
 * Time: nothing here sleeps or reads a clock. Calls that may send a request take the caller's
 * monotonic time in milliseconds; ic_fcopy_tick() must be called periodically (>= 1 Hz) to time
 * out requests the guest does not answer. */
#ifndef VIRIDIAN_VSP_FCOPY_H
#define VIRIDIAN_VSP_FCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "vsp/ic.h"

/* ---- wire format (Linux include/uapi/linux/hyperv.h) ---- */
#define ICMSGTYPE_FCOPY 7

enum hv_fcopy_op {
	HV_FCOPY_START_FILE_COPY = 0,
	HV_FCOPY_WRITE_TO_FILE = 1,
	HV_FCOPY_COMPLETE = 2,
	HV_FCOPY_CANCEL = 3,
};

struct hv_fcopy_hdr {
	uint32_t operation;         /* HV_FCOPY_* */
	uint8_t service_id0[16];    /* unused by Linux */
	uint8_t service_id1[16];
} __attribute__((packed));

#define HV_FCOPY_MAX_PATH 260       /* UTF-16 units per name, NUL included (W_MAX_PATH) */
#define HV_FCOPY_OVERWRITE   0x1u   /* copy_flags: replace an existing file */
#define HV_FCOPY_CREATE_PATH 0x2u   /* create missing directories of path_name */

struct hv_start_fcopy {
	struct hv_fcopy_hdr hdr;
	uint16_t file_name[HV_FCOPY_MAX_PATH]; /* UTF-16LE, NUL-terminated */
	uint16_t path_name[HV_FCOPY_MAX_PATH]; /* the guest directory, UTF-16LE, NUL-terminated */
	uint32_t copy_flags;
	uint64_t file_size;
} __attribute__((packed));

#define HV_FCOPY_FRAGMENT (6 * 1024) /* DATA_FRAGMENT: data bytes per WRITE_TO_FILE */

struct hv_do_fcopy {
	struct hv_fcopy_hdr hdr;
	uint32_t pad;
	uint64_t offset;
	uint32_t size;
	uint8_t data[HV_FCOPY_FRAGMENT];
} __attribute__((packed));

_Static_assert(sizeof(struct hv_fcopy_hdr) == 36, "hv_fcopy_hdr");
_Static_assert(sizeof(struct hv_start_fcopy) == 1088, "hv_start_fcopy");
_Static_assert(__builtin_offsetof(struct hv_start_fcopy, copy_flags) == 1076, "hv_start_fcopy.copy_flags");
_Static_assert(sizeof(struct hv_do_fcopy) == 6196, "hv_do_fcopy");
_Static_assert(__builtin_offsetof(struct hv_do_fcopy, offset) == 40, "hv_do_fcopy.offset");
_Static_assert(__builtin_offsetof(struct hv_do_fcopy, data) == 52, "hv_do_fcopy.data");

/* Failure statuses (HRESULTs) besides IC_HV_E_FAIL: hv_fcopy_daemon sends ALREADY_EXISTS and
 * DISK_FULL (HV_E_FAIL for a missing folder); PATH_NOT_FOUND is not Linux's. */
#define IC_HV_ERROR_PATH_NOT_FOUND 0x80070003u
#define IC_HV_ERROR_ALREADY_EXISTS 0x80070050u
#define IC_HV_ERROR_DISK_FULL      0x80070070u

#define IC_FCOPY_CLASS VMBUS_GUID_INIT(0x34d14be3, 0xdee4, 0x41c8, 0x9a, 0xe7, 0x6b, 0x17, 0x49, 0x77, 0xc1, 0x92)

/* Linux gives its daemon 30 s per request before answering HV_E_FAIL itself; ours is longer so
 * that its answer comes first. A request that times out (START included: the daemon may still
 * create the file) is followed by a CANCEL. */
#define IC_FCOPY_TIMEOUT_MS (60u * 1000u)

/* ---- host API ---- */
enum ic_fcopy_state {
	IC_FCOPY_IDLE,        /* no copy yet */
	IC_FCOPY_STARTING,    /* START_FILE_COPY outstanding */
	IC_FCOPY_WRITING,     /* WRITE_TO_FILE fragments going out one by one */
	IC_FCOPY_COMPLETING,  /* COMPLETE_FCOPY outstanding */
	IC_FCOPY_CANCELLING,  /* CANCEL_FCOPY outstanding after a failure or ic_fcopy_cancel() */
	IC_FCOPY_DONE,        /* the guest closed the complete file */
	IC_FCOPY_FAILED,      /* see ic_fcopy_error(); a partial file was cancelled (removed),
			       * except after E_PROTOCOL, on which nothing more is sent */
};

enum ic_fcopy_error {
	IC_FCOPY_OK,
	IC_FCOPY_E_GUEST,     /* the guest answered a failure status: ic_fcopy_hresult() has it */
	IC_FCOPY_E_SOURCE,    /* the read callback failed or the source ended early: ic_fcopy_source_errno() */
	IC_FCOPY_E_TIMEOUT,   /* no answer in time */
	IC_FCOPY_E_CLOSED,    /* the channel closed during the copy */
	IC_FCOPY_E_CANCELLED, /* ic_fcopy_cancel() */
	IC_FCOPY_E_PROTOCOL,  /* the guest's answer was malformed */
};

/* Reads len bytes of the source at offset into buf: returns len, or a negative errno (anything
 * else, a short read included, counts as EIO). Called from inside vmbus_server_* (device thread)
 * for each fragment, right before it is sent. */
typedef int (*ic_fcopy_read_fn)(void *ctx, uint64_t offset, void *buf, uint32_t len);

/* Add the device; free with ic_fcopy_free() (not ic_free: the service state would leak). */
struct ic_dev *ic_fcopy_add(struct vmbus_server *srv);
void ic_fcopy_free(struct ic_dev *dev);

/* Start copying size bytes, read through read(ctx, ...), to guest_dir/file_name. guest_dir is an
 * absolute guest directory, file_name one path component; both UTF-8, each at most
 * HV_FCOPY_MAX_PATH - 1 bytes (what Linux converts back). flags: HV_FCOPY_OVERWRITE,
 * HV_FCOPY_CREATE_PATH. 0 (now STARTING), or a negative errno: -EBUSY a copy is in progress,
 * -ENOTCONN the service is not ready, -EINVAL a name is empty, too long, not UTF-8, holds a '/'
 * or is "." or ".." (file_name) or is not absolute (guest_dir), flags holds another bit, or read
 * is NULL. Possible from IDLE, DONE and FAILED. */
int ic_fcopy_start(struct ic_dev *dev, const char *guest_dir, const char *file_name, uint64_t size, uint32_t flags,
		   ic_fcopy_read_fn read, void *ctx, uint64_t now_ms);
/* Give up a copy in progress: the guest removes the partial file; ends FAILED(CANCELLED). 0, or -1
 * when no copy is in progress or there is nothing left to cancel (COMPLETING: every byte is
 * written and the guest is closing the file; CANCELLING). */
int ic_fcopy_cancel(struct ic_dev *dev, uint64_t now_ms);
/* Times out an unanswered request (a timed-out copy is cancelled in the guest too). */
void ic_fcopy_tick(struct ic_dev *dev, uint64_t now_ms);

enum ic_fcopy_state ic_fcopy_state(const struct ic_dev *dev);
bool ic_fcopy_busy(const struct ic_dev *dev);          /* STARTING .. CANCELLING */
enum ic_fcopy_error ic_fcopy_error(const struct ic_dev *dev);
uint32_t ic_fcopy_hresult(const struct ic_dev *dev);   /* the guest's status for IC_FCOPY_E_GUEST */
int ic_fcopy_source_errno(const struct ic_dev *dev);   /* positive errno for IC_FCOPY_E_SOURCE */
uint64_t ic_fcopy_bytes_done(const struct ic_dev *dev); /* bytes the guest acknowledged writing */
uint64_t ic_fcopy_size(const struct ic_dev *dev);      /* of the current or last copy */
const char *ic_fcopy_state_name(enum ic_fcopy_state s); /* "idle", "starting", ... */
const char *ic_fcopy_error_name(enum ic_fcopy_error e);
/* A sentence for an HRESULT the daemon sends ("the file already exists", ...), or NULL. */
const char *ic_fcopy_hresult_text(uint32_t hresult);

#endif
