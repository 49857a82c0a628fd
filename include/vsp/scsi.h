/* The SCSI target behind storvsp: CDB parsing, the answers a SCSI disk gives (INQUIRY + VPD,
 * READ CAPACITY, MODE SENSE, REPORT LUNS ...), and sense data. Pure logic: it never touches a
 * disk. A command either completes here (SCSI_DONE, with data-in bytes in the caller's buffer
 * and a SAM status + sense) or is turned into a disk operation (byte offset + length) that the
 * caller performs and finishes with scsi_io_error() when it fails.
 *
 * Every field of a CDB or parameter list is hostile: lengths are checked against the CDB
 * size, LBAs against the capacity, and everything unknown gets CHECK CONDITION with
 * ILLEGAL REQUEST sense. */
#ifndef VIRIDIAN_VSP_SCSI_H
#define VIRIDIAN_VSP_SCSI_H

#include <stdbool.h>
#include <stdint.h>

#define SCSI_MAX_LUNS 64
#define SCSI_SENSE_LEN 18 /* fixed-format sense */

/* SAM status */
#define SCSI_STATUS_GOOD            0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02

/* Sense keys */
#define SCSI_SENSE_NO_SENSE        0x0
#define SCSI_SENSE_NOT_READY       0x2
#define SCSI_SENSE_UNIT_ATTENTION  0x6
#define SCSI_SENSE_MEDIUM_ERROR    0x3
#define SCSI_SENSE_HARDWARE_ERROR  0x4
#define SCSI_SENSE_ILLEGAL_REQUEST 0x5
#define SCSI_SENSE_DATA_PROTECT    0x7

/* Additional sense codes (ASC << 8 | ASCQ) */
#define SCSI_ASC_NONE                 0x0000
#define SCSI_ASC_WRITE_ERROR          0x0C00
#define SCSI_ASC_UNRECOVERED_READ     0x1100
#define SCSI_ASC_PARAM_LIST_LENGTH    0x1A00
#define SCSI_ASC_INVALID_OPCODE       0x2000
#define SCSI_ASC_LBA_OUT_OF_RANGE     0x2100
#define SCSI_ASC_INVALID_FIELD_IN_CDB 0x2400
#define SCSI_ASC_LUN_NOT_SUPPORTED    0x2500
#define SCSI_ASC_INVALID_FIELD_IN_PARAM 0x2600
#define SCSI_ASC_WRITE_PROTECTED      0x2700
#define SCSI_ASC_INTERNAL_FAILURE     0x4400
#define SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED 0x2800
#define SCSI_ASC_SAVING_NOT_SUPPORTED 0x3900
#define SCSI_ASC_MEDIUM_NOT_PRESENT   0x3A00
#define SCSI_ASC_REMOVAL_PREVENTED    0x5302

#define SCSI_MMC_BLOCK 2048u /* CD/DVD logical block */

/* GET EVENT STATUS NOTIFICATION media event codes (MMC-6 table 3.5) */
#define SCSI_MMC_EVENT_NONE          0
#define SCSI_MMC_EVENT_NEW_MEDIA     2
#define SCSI_MMC_EVENT_MEDIA_REMOVAL 3

/* A CD/DVD drive's changing state (MMC). The SCSI target mutates it while executing commands,
 * the host with scsi_mmc_change; both under the controller's lock. */
struct scsi_mmc {
	bool media;            /* a disc is in */
	uint64_t blocks;       /* its size in SCSI_MMC_BLOCK blocks (the file size rounded down) */
	bool unit_attention;   /* "medium may have changed", reported once by the next command */
	uint8_t event;         /* media event for the next GET EVENT STATUS NOTIFICATION */
	bool prevent;          /* PREVENT ALLOW MEDIUM REMOVAL: the guest locked the tray */
	bool guest_ejected;    /* START STOP UNIT ejected the disc (the host should let it go) */
};

/* The host put a disc of `bytes` in (media) or took it out: the guest sees UNIT ATTENTION
 * once and a media event (new media / media removal). */
void scsi_mmc_change(struct scsi_mmc *m, bool media, uint64_t bytes);

/* One logical unit (a disk). */
struct scsi_disk {
	uint64_t blocks;            /* capacity in logical blocks */
	uint32_t logical_sector;    /* 512 or 4096 */
	uint32_t physical_sector;   /* >= logical_sector, power of two multiple */
	bool read_only;
	bool thin;                  /* UNMAP / WRITE SAME (UNMAP) supported (dynamic/differencing) */
	uint32_t unmap_granularity; /* in logical blocks (the image's block size); 0: 1 */
	uint32_t max_transfer;      /* bytes one READ/WRITE may move (the controller's limit) */
	uint8_t id[16];             /* unique: NAA designator in VPD 0x83, serial in VPD 0x80 */
	/* Non-NULL: a read-only CD/DVD drive (peripheral type 5, removable, MMC commands); the
	 * media and its size are there, blocks/logical_sector/read_only are ignored. */
	struct scsi_mmc *mmc;
};

struct scsi_target {
	uint32_t nluns;
	const struct scsi_disk *luns[SCSI_MAX_LUNS]; /* LUN i; NULL = absent */
};

enum scsi_action {
	SCSI_DONE = 0,       /* finished: status, sense, data_in_len */
	SCSI_NO_LUN,         /* the LUN does not exist (storvsp answers SRB_STATUS_INVALID_LUN) */
	SCSI_READ,           /* read [offset, offset+length) into the data-in buffer */
	SCSI_WRITE,          /* write the data-out buffer to [offset, offset+length) */
	SCSI_FLUSH,          /* flush the disk */
	SCSI_UNMAP,          /* fetch `length` bytes of data-out parameter list, then scsi_unmap_parse() */
	SCSI_WRITE_SAME,     /* fetch one logical block of data-out; repeat it over [offset, +length)
				(or discard the range when `unmap`) */
};

struct scsi_result {
	enum scsi_action action;
	uint8_t status;               /* SAM status (SCSI_DONE) */
	uint8_t sense_len;            /* 0 or SCSI_SENSE_LEN */
	uint8_t sense[SCSI_SENSE_LEN];
	uint32_t data_in_len;         /* SCSI_DONE: bytes of data-in placed in the buffer */
	uint64_t offset, length;      /* disk operation, bytes */
	bool unmap;                   /* WRITE SAME with the UNMAP bit */
	bool fua;
};

/* Execute cdb (cdb_len bytes, as received; at most 16) for lun. xfer_len is the initiator's
 * data transfer length: data-in answers are cut to it and to buf_cap; disk operations longer
 * than it are refused. buf receives data-in for commands answered here. */
void scsi_execute(const struct scsi_target *t, uint32_t lun, const uint8_t *cdb, uint32_t cdb_len,
		  uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap, struct scsi_result *r);

/* CHECK CONDITION with fixed-format sense. */
void scsi_set_sense(struct scsi_result *r, uint8_t key, uint16_t asc_ascq);
/* A disk operation failed (negative errno): the matching CHECK CONDITION. */
void scsi_io_error(struct scsi_result *r, enum scsi_action op, int err);

struct scsi_extent {
	uint64_t offset, length; /* bytes */
};
/* Parse an UNMAP parameter list (len bytes) for disk d into at most max extents. Returns the
 * number of extents (>= 0), or -1 with r set to CHECK CONDITION. */
int scsi_unmap_parse(const struct scsi_disk *d, const uint8_t *param, uint32_t len,
		     struct scsi_extent *out, uint32_t max, struct scsi_result *r);

#define SCSI_MAX_UNMAP_DESCRIPTORS 256

#endif
