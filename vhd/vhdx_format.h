/* VHDX 1.0 on-disk structures (MS-VHDX). All fields little-endian; GUIDs in Windows layout.
 *
 * File layout, by 64 KiB/1 MiB units:
 *   0      file type identifier ("vhdxfile" + creator)
 *   64K    header 1          128K  header 2     (the valid one with the higher sequence wins)
 *   192K   region table 1    256K  region table 2 (copies; locate the BAT and metadata)
 *   1 MiB+ log, metadata region, BAT, payload and sector-bitmap blocks (1 MiB aligned)
 */
#ifndef VIRIDIAN_VHD_VHDX_FORMAT_H
#define VIRIDIAN_VHD_VHDX_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define VHDX_SIG_FILE   0x656C696678646876ULL /* "vhdxfile" */
#define VHDX_SIG_HEAD   0x64616568u           /* "head" */
#define VHDX_SIG_REGI   0x69676572u           /* "regi" */
#define VHDX_SIG_META   0x617461646174656DULL /* "metadata" */
#define VHDX_SIG_LOGE   0x65676F6Cu           /* "loge" */
#define VHDX_SIG_ZERO   0x6F72657Au           /* "zero" */
#define VHDX_SIG_DESC   0x63736564u           /* "desc" */
#define VHDX_SIG_DATA   0x61746164u           /* "data" */

#define VHDX_HEADER1_OFF   (64 * 1024)
#define VHDX_HEADER2_OFF   (128 * 1024)
#define VHDX_REGION1_OFF   (192 * 1024)
#define VHDX_REGION2_OFF   (256 * 1024)
#define VHDX_HEADER_SIZE   4096        /* checksummed length of a header */
#define VHDX_REGION_SIZE   (64 * 1024) /* checksummed length of a region table */
#define VHDX_META_TABLE_SIZE (64 * 1024)
#define VHDX_LOG_SECTOR    4096
#define VHDX_MAX_REGIONS   2047
#define VHDX_MAX_META      2047

struct vhdx_header {
	uint32_t signature;
	uint32_t checksum;            /* CRC-32C over 4 KiB with this field zero */
	uint64_t sequence;            /* the valid header with the larger one is current */
	uint8_t file_write_guid[16];  /* changes on the first write to the file in a session */
	uint8_t data_write_guid[16];  /* changes on the first write of user data: children link to it */
	uint8_t log_guid[16];         /* zero: log empty; else entries carrying it need replay */
	uint16_t log_version;         /* 0 */
	uint16_t version;             /* 1 */
	uint32_t log_length;          /* multiple of 1 MiB */
	uint64_t log_offset;          /* multiple of 1 MiB */
	uint8_t reserved[4016];
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_header) == 4096, "VHDX header is one 4 KiB sector");
_Static_assert(offsetof(struct vhdx_header, log_guid) == 48, "log_guid offset");
_Static_assert(offsetof(struct vhdx_header, log_offset) == 72, "log_offset offset");

struct vhdx_region_header {
	uint32_t signature;
	uint32_t checksum;            /* CRC-32C over 64 KiB */
	uint32_t entry_count;         /* at most 2047 */
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_region_header) == 16, "region table header");

struct vhdx_region_entry {
	uint8_t guid[16];
	uint64_t file_offset;         /* multiple of 1 MiB */
	uint32_t length;              /* multiple of 1 MiB */
	uint32_t required;            /* bit 0: a reader that does not know the region must fail */
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_region_entry) == 32, "region table entry");

struct vhdx_meta_header {
	uint64_t signature;
	uint16_t reserved;
	uint16_t entry_count;         /* at most 2047 */
	uint8_t reserved2[20];
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_meta_header) == 32, "metadata table header");

#define VHDX_META_IS_USER     0x1u
#define VHDX_META_IS_VDISK    0x2u
#define VHDX_META_IS_REQUIRED 0x4u
struct vhdx_meta_entry {
	uint8_t item_id[16];
	uint32_t offset;              /* from the metadata region start; >= 64 KiB */
	uint32_t length;
	uint32_t flags;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_meta_entry) == 32, "metadata table entry");

/* File parameters item. */
#define VHDX_PARAM_LEAVE_ALLOCATED 0x1u
#define VHDX_PARAM_HAS_PARENT      0x2u
struct vhdx_file_params {
	uint32_t block_size;          /* 1 MiB .. 256 MiB, power of two */
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_file_params) == 8, "file parameters item");

/* Parent locator item: a header, then key/value entries pointing at UTF-16LE strings. */
struct vhdx_locator_header {
	uint8_t locator_type[16];
	uint16_t reserved;
	uint16_t count;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_locator_header) == 20, "parent locator header");

struct vhdx_locator_entry {
	uint32_t key_offset;          /* from the start of the locator item */
	uint32_t value_offset;
	uint16_t key_length;          /* bytes */
	uint16_t value_length;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_locator_entry) == 12, "parent locator entry");

/* Log entry: a header and descriptors fill the first sector(s); data sectors follow. */
struct vhdx_log_header {
	uint32_t signature;
	uint32_t checksum;            /* CRC-32C over entry_length bytes */
	uint32_t entry_length;        /* multiple of 4 KiB */
	uint32_t tail;                /* log offset of the oldest entry replay must start from */
	uint64_t sequence;
	uint32_t descriptor_count;
	uint32_t reserved;
	uint8_t log_guid[16];         /* must equal the header's LogGuid */
	uint64_t flushed_file_offset; /* the file was at least this long when the entry was written */
	uint64_t last_file_offset;    /* replay extends the file to this length */
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_header) == 64, "log entry header");

struct vhdx_log_desc {
	uint32_t signature;           /* "desc" or "zero" */
	uint32_t trailing_bytes;      /* desc: the page's last 4 bytes */
	uint64_t leading_bytes;       /* desc: the page's first 8 bytes; zero: length */
	uint64_t file_offset;         /* 4 KiB aligned */
	uint64_t sequence;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_desc) == 32, "log descriptor");

struct vhdx_log_data {
	uint32_t signature;           /* "data" */
	uint32_t sequence_high;
	uint8_t data[4084];
	uint32_t sequence_low;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_data) == 4096, "log data sector");

/* BAT entries: state in bits 0-2, file offset in MiB in bits 20-63. */
#define VHDX_BAT_STATE_MASK 0x7ULL
#define VHDX_BAT_OFF_SHIFT  20
enum {
	PAYLOAD_NOT_PRESENT = 0,
	PAYLOAD_UNDEFINED = 1,
	PAYLOAD_ZERO = 2,
	PAYLOAD_UNMAPPED = 3,
	PAYLOAD_FULLY_PRESENT = 6,
	PAYLOAD_PARTIALLY_PRESENT = 7,
	SB_NOT_PRESENT = 0,
	SB_PRESENT = 6,
};

/* Sector bitmap blocks are 1 MiB and cover one chunk: 2^23 logical sectors. */
#define VHDX_SB_SIZE (1u << 20)
#define VHDX_CHUNK_SECTORS (1ULL << 23)

#endif
