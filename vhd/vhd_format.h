/* VHD (Virtual Hard Disk Image Format Specification, 2006) on-disk structures.
 * All fields big-endian. Fixed: data then a 512-byte footer. Dynamic/differencing: a footer
 * copy at 0, the dynamic header at 512, the BAT (u32 sector numbers, 0xFFFFFFFF = absent),
 * blocks of [sector bitmap | data], and the footer as the last 512 bytes. */
#ifndef VIRIDIAN_VHD_VHD_FORMAT_H
#define VIRIDIAN_VHD_VHD_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define VHD_COOKIE        "conectix"
#define VHD_SPARSE_COOKIE "cxsparse"
#define VHD_TYPE_FIXED    2
#define VHD_TYPE_DYNAMIC  3
#define VHD_TYPE_DIFF     4
#define VHD_BAT_UNUSED    0xFFFFFFFFu
#define VHD_VERSION       0x00010000u
#define VHD_EPOCH         946684800u   /* 2000-01-01T00:00:00Z: timestamps count from here */
#define VHD_PLAT_W2RU     0x57327275u  /* "W2ru": relative path, UTF-16LE */
#define VHD_PLAT_W2KU     0x57326B75u  /* "W2ku": absolute path, UTF-16LE */

struct vhd_footer {
	char cookie[8];
	uint32_t features;            /* 2: reserved bit always set */
	uint32_t version;
	uint64_t data_offset;         /* dynamic header offset; ~0 for fixed */
	uint32_t timestamp;
	char creator_app[4];
	uint32_t creator_version;
	uint32_t creator_os;
	uint64_t original_size;
	uint64_t current_size;        /* the virtual size Hyper-V uses */
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors_per_track;
	uint32_t disk_type;
	uint32_t checksum;            /* one's complement of the byte sum, this field zero */
	uint8_t unique_id[16];        /* a child's parent_unique_id names it */
	uint8_t saved_state;
	uint8_t reserved[427];
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_footer) == 512, "VHD footer is one sector");
_Static_assert(offsetof(struct vhd_footer, current_size) == 48, "current_size offset");
_Static_assert(offsetof(struct vhd_footer, checksum) == 64, "footer checksum offset");

struct vhd_locator {
	uint32_t platform_code;
	uint32_t data_space;          /* 512-byte sectors reserved */
	uint32_t data_length;         /* bytes used */
	uint32_t reserved;
	uint64_t data_offset;
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_locator) == 24, "VHD parent locator");

struct vhd_dyn_header {
	char cookie[8];
	uint64_t data_offset;         /* ~0 */
	uint64_t table_offset;        /* the BAT */
	uint32_t header_version;
	uint32_t max_table_entries;
	uint32_t block_size;
	uint32_t checksum;
	uint8_t parent_unique_id[16];
	uint32_t parent_timestamp;
	uint32_t reserved;
	uint8_t parent_name[512];     /* UTF-16BE file name */
	struct vhd_locator locators[8];
	uint8_t reserved2[256];
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_dyn_header) == 1024, "VHD dynamic header");
_Static_assert(offsetof(struct vhd_dyn_header, parent_name) == 64, "parent_name offset");
_Static_assert(offsetof(struct vhd_dyn_header, locators) == 576, "locators offset");

#endif
