/* storvsp: the synthetic SCSI controller that Linux hv_storvsc (and Windows storvsc) drive over
 * VMBus. Protocol: BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION (Win8 5.1, Win8.1 6.0, Win10 6.2),
 * QUERY_PROPERTIES, END_INITIALIZATION, then EXECUTE_SRB packets carrying a vmscsi_request
 * (CDB, target/LUN, direction, length) with the data buffer as one GPA-direct range. The SCSI
 * target behind it is include/vsp/scsi.h; LUN i of target 0 is disk i.
 *
 * Multi-queue: QUERY_PROPERTIES advertises STORVSP_MAX_SUBCHANNELS with the multi-channel flag;
 * CREATE_SUB_CHANNELS (after END_INITIALIZATION, on the primary) offers that many VMBus
 * sub-channels; SRBs are taken on every open channel and completed on the one they came in on.
 *
 * I/O: requests are parsed on the device thread (under the VMBus lock), their guest pages
 * resolved to host pointers there, and disk work runs on a pool of I/O threads that take the
 * VMBus lock only to post the completion. With nthreads = 0 everything runs inline
 * (unit tests, fuzzing). */
#ifndef VIRIDIAN_VSP_STORVSP_H
#define VIRIDIAN_VSP_STORVSP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmbus/server.h"

/* ---- wire format (Linux drivers/scsi/storvsc_drv.c names) ---- */
#define VSTOR_OPERATION_COMPLETE_IO            1
#define VSTOR_OPERATION_REMOVE_DEVICE          2
#define VSTOR_OPERATION_EXECUTE_SRB            3
#define VSTOR_OPERATION_RESET_LUN              4
#define VSTOR_OPERATION_RESET_ADAPTER          5
#define VSTOR_OPERATION_RESET_BUS              6
#define VSTOR_OPERATION_BEGIN_INITIALIZATION   7
#define VSTOR_OPERATION_END_INITIALIZATION     8
#define VSTOR_OPERATION_QUERY_PROTOCOL_VERSION 9
#define VSTOR_OPERATION_QUERY_PROPERTIES       10
#define VSTOR_OPERATION_ENUMERATE_BUS          11
#define VSTOR_OPERATION_FCHBA_DATA             12
#define VSTOR_OPERATION_CREATE_SUB_CHANNELS    13

#define VMSTOR_PROTO_VERSION(maj, min) ((uint16_t)(((maj) & 0xFF) << 8 | ((min) & 0xFF)))
#define VMSTOR_PROTO_VERSION_WIN8   VMSTOR_PROTO_VERSION(5, 1)
#define VMSTOR_PROTO_VERSION_WIN8_1 VMSTOR_PROTO_VERSION(6, 0)
#define VMSTOR_PROTO_VERSION_WIN10  VMSTOR_PROTO_VERSION(6, 2)

#define REQUEST_COMPLETION_FLAG 0x1

/* vstor_packet.status (NT status) */
#define VSTOR_STATUS_SUCCESS                0x00000000u
#define VSTOR_STATUS_REVISION_MISMATCH      0xC0000059u
#define VSTOR_STATUS_INVALID_PARAMETER      0xC000000Du
#define VSTOR_STATUS_INVALID_DEVICE_STATE   0xC0000184u

/* vmscsi_request.srb_status */
#define SRB_STATUS_PENDING          0x00
#define SRB_STATUS_SUCCESS          0x01
#define SRB_STATUS_ABORTED          0x02
#define SRB_STATUS_ERROR            0x04
#define SRB_STATUS_INVALID_REQUEST  0x06
#define SRB_STATUS_DATA_OVERRUN     0x12
#define SRB_STATUS_INVALID_LUN      0x20
#define SRB_STATUS_AUTOSENSE_VALID  0x80

/* vmscsi_request.data_in */
#define WRITE_TYPE   0
#define READ_TYPE    1
#define UNKNOWN_TYPE 2

#define STORVSC_MAX_CMD_LEN      16
#define STORVSC_SENSE_BUFFER_SIZE 0x14
#define STORAGE_CHANNEL_SUPPORTS_MULTI_CHANNEL 0x1

struct vmscsi_win8_extension {
	uint16_t reserved;
	uint8_t queue_tag;
	uint8_t queue_action;
	uint32_t srb_flags;
	uint32_t time_out_value;
	uint32_t queue_sort_key;
} __attribute__((packed));
_Static_assert(sizeof(struct vmscsi_win8_extension) == 16, "vmscsi_win8_extension");

struct vmscsi_request {
	uint16_t length;
	uint8_t srb_status;
	uint8_t scsi_status;
	uint8_t port_number;
	uint8_t path_id;
	uint8_t target_id;
	uint8_t lun;
	uint8_t cdb_length;
	uint8_t sense_info_length;
	uint8_t data_in;
	uint8_t reserved;
	uint32_t data_transfer_length;
	union {
		uint8_t cdb[STORVSC_MAX_CMD_LEN];
		uint8_t sense_data[STORVSC_SENSE_BUFFER_SIZE];
	};
	struct vmscsi_win8_extension win8_extension; /* Win8 and later (the only ones we speak) */
} __attribute__((packed));
_Static_assert(sizeof(struct vmscsi_request) == 52, "vmscsi_request with the win8 extension");
_Static_assert(offsetof(struct vmscsi_request, data_transfer_length) == 12, "vmscsi_request");
_Static_assert(offsetof(struct vmscsi_request, cdb) == 16, "vmscsi_request");
_Static_assert(offsetof(struct vmscsi_request, win8_extension) == 36, "vmscsi_request");
#define VMSCSI_REQUEST_PRE_WIN8_SIZE 36

struct vmstorage_channel_properties {
	uint32_t reserved;
	uint16_t max_channel_cnt;
	uint16_t reserved1;
	uint32_t flags;
	uint32_t max_transfer_bytes;
	uint64_t reserved2;
} __attribute__((packed));
_Static_assert(sizeof(struct vmstorage_channel_properties) == 24, "vmstorage_channel_properties");

struct vmstorage_protocol_version {
	uint16_t major_minor;
	uint16_t revision;
} __attribute__((packed));

struct hv_fc_wwn_packet {
	uint8_t primary_active;
	uint8_t reserved1[3];
	uint8_t primary_port_wwn[8];
	uint8_t primary_node_wwn[8];
	uint8_t secondary_port_wwn[8];
	uint8_t secondary_node_wwn[8];
} __attribute__((packed));

struct vstor_packet {
	uint32_t operation;
	uint32_t flags;
	uint32_t status;
	union {
		struct vmscsi_request vm_srb;
		struct vmstorage_channel_properties storage_channel_properties;
		struct vmstorage_protocol_version version;
		struct hv_fc_wwn_packet wwn_packet;
		uint16_t sub_channel_count;
		uint8_t buffer[0x34];
	};
} __attribute__((packed));
_Static_assert(sizeof(struct vstor_packet) == 64, "vstor_packet");
_Static_assert(offsetof(struct vstor_packet, vm_srb) == 12, "vstor_packet");
#define VSTOR_PACKET_HEADER_SIZE 12

/* Class GUID Linux hv_storvsc binds to (SCSI controller). */
#define STORVSP_SCSI_CLASS_GUID \
	VMBUS_GUID_INIT(0xba6163d9, 0x04a1, 0x4d29, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f)

/* Sub-channels a controller offers at most (QUERY_PROPERTIES max_channel_cnt); Linux asks for
 * one per online vCPU beyond the first, capped by this. */
#define STORVSP_MAX_SUBCHANNELS 64
_Static_assert(STORVSP_MAX_SUBCHANNELS <= VMBUS_MAX_SUBCHANNELS, "storvsp sub-channels");

/* Largest transfer one SRB may carry (advertised in QUERY_PROPERTIES). */
#define STORVSP_MAX_TRANSFER (1u << 20)

/* ---- device API ---- */
struct vdisk;

struct storvsp_host {
	/* Guest-physical -> host pointer (NULL outside guest RAM); called on the device thread.
	 * The mapping must stay valid for the controller's life. */
	void *(*gpa_to_hva)(void *opaque, uint64_t gpa, uint64_t len);
	/* Optional debug check (NULL normally): the controller starts (on) or stops writing the guest
	 * RAM at [hva, hva + len) (from gpa_to_hva): a request's buffers while it is outstanding,
	 * unless the guest marked them data-out (WRITE_TYPE). Called on any thread. */
	void (*grant)(void *opaque, void *hva, uint64_t len, bool on);
	void *opaque;
	/* The lock serialising every vmbus_server_* entry (held when callbacks run); I/O threads
	 * take it to post completions. NULL with nthreads = 0. */
	pthread_mutex_t *lock;
	unsigned nthreads; /* I/O threads; 0 = synchronous */
	void (*thread_start)(void); /* optional: runs first on each I/O thread (the worker's sandbox) */
};

struct storvsp_disk {
	struct vdisk *disk;      /* NULL only for an empty DVD drive */
	bool read_only;
	/* A read-only CD/DVD drive (MMC, 2048-byte blocks) whose disc is disk (opened raw);
	 * media_bytes is the ISO file's size (the disc has media_bytes / 2048 blocks). */
	bool dvd;
	uint64_t media_bytes;
};

struct storvsp;

/* Create the controller with ndisks LUNs (1..SCSI_MAX_LUNS) and register it on srv. The vdisks
 * stay the caller's (close them after storvsp_free). instance_id distinguishes controllers.
 * Returns NULL with a message in err. */
struct storvsp *storvsp_new(struct vmbus_server *srv, const struct storvsp_host *host,
			    const struct storvsp_disk *disks, unsigned ndisks, uint8_t instance,
			    char *err, size_t errlen);
/* Stops the I/O threads (in-flight requests finish first). Call without holding host->lock. */
void storvsp_free(struct storvsp *s);

/* Saved state: waits, without host->lock held and with the vCPUs paused, until every SRB taken
 * from a ring has been completed to the guest (none with the I/O threads, none waiting for ring
 * space), so that the controller's save has nothing in flight. 0, or -ETIMEDOUT after
 * timeout_ms. New SRBs are taken as usual afterwards. */
int storvsp_drain(struct storvsp *s, unsigned timeout_ms);

/* Replaces LUN lun's image (disk-switch, the pivot of a live merge). Call without host->lock,
 * best with the vCPUs paused so the wait is short: once no request is in flight, swap(ctx, old)
 * runs under host->lock (no SRB is taken meanwhile, so nothing touches either image); the
 * vdisk it returns (NULL: keep old) serves the LUN from then on. It must have the old one's
 * size and logical sector size: the guest is not told. 0, -EINVAL (no such LUN) or -ETIMEDOUT
 * (requests still in flight after timeout_ms; swap was not called). */
int storvsp_swap_disk(struct storvsp *s, unsigned lun, struct vdisk *(*swap)(void *ctx, struct vdisk *old),
		      void *ctx, unsigned timeout_ms);

/* A DVD drive's disc changes (the host's Set-VMDvdDrive): like storvsp_swap_disk, waits until
 * no request is in flight, then, under host->lock, puts disk (NULL: none; media_bytes its size)
 * in LUN lun and hands back the one it had in *old (NULL if none; the caller closes it, also
 * when the guest had ejected it). The guest gets UNIT ATTENTION (medium may have changed) and a
 * new-media / media-removal event. 0, -EINVAL (no such LUN, or not a DVD drive) or -ETIMEDOUT. */
int storvsp_dvd_change(struct storvsp *s, unsigned lun, struct vdisk *disk, uint64_t media_bytes, struct vdisk **old,
		       unsigned timeout_ms);
/* Whether DVD drive lun has a disc now (the guest may have ejected it: START STOP UNIT). */
bool storvsp_dvd_loaded(struct storvsp *s, unsigned lun);

/* Payload version of the controller's STATE_SECTION_STORVSP sections (docs/storvsp.md). */
#define STORVSP_STATE_VERSION 1

struct storvsp_stats {
	uint64_t srbs, reads, writes, flushes, unmaps, errors, bad_packets;
	uint64_t read_bytes, write_bytes; /* of the reads and writes that succeeded */
	uint64_t normalized_ops; /* reads and writes counted as storage QoS does (8 KiB each) */
	uint64_t throttled; /* reads and writes a LUN's limits held back */
	uint16_t protocol;
};
void storvsp_get_stats(struct storvsp *s, struct storvsp_stats *out);

/* Storage QoS (include/vsp/io_limit.h): LUN lun's reads and writes are held back to at most
 * max_iops normalized (8 KiB) operations and max_bytes_per_s per second; 0 lifts a limit.
 * Any time, from any thread; requests the old limits held go on at once. Held requests wait
 * on a thread of their own, not on the I/O threads, so one throttled LUN does not slow the
 * others; a closing channel, a save, a disk swap or storvsp_free lets them all go at once.
 * 0, -EINVAL (no such LUN, or a DVD drive), -ENOTSUP (nthreads = 0) or -ERANGE (above
 * IO_LIMIT_MAX_*). */
int storvsp_set_limits(struct storvsp *s, unsigned lun, uint64_t max_iops, uint64_t max_bytes_per_s);

#endif
