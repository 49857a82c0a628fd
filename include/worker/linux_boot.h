/* The Linux x86 boot protocol, 64-bit entry: parse a bzImage, lay out boot_params
 * (zero page), the e820 map, the command line, the initrd, identity page tables and a
 * GDT in guest memory. Pure: works on a buffer that stands for guest RAM. */
#ifndef VIRIDIAN_WORKER_LINUX_BOOT_H
#define VIRIDIAN_WORKER_LINUX_BOOT_H

#include <stddef.h>
#include <stdint.h>

/* Guest-physical layout of what the loader puts in low memory */
#define BOOT_GDT_ADDR      0x0500ull
#define BOOT_STACK_TOP     0x8FF0ull
#define BOOT_PARAMS_ADDR   0x7000ull
#define BOOT_PML4_ADDR     0x9000ull
#define BOOT_PDPT_ADDR     0xA000ull
#define BOOT_PD_ADDR       0xB000ull  /* four page directories: 4 GiB of 2 MiB pages */
#define BOOT_CMDLINE_ADDR  0x20000ull
#define BOOT_CMDLINE_MAX   0x10000ull
#define EBDA_START         0x9FC00ull
#define BIOS_AREA_START    0xE0000ull /* ACPI tables live here; reserved in e820 */
#define BIOS_AREA_END      0x100000ull
#define KERNEL_LOAD_ADDR   0x100000ull
#define MMIO_HOLE_START    0xC0000000ull /* IOAPIC, LAPIC ... up to 4 GiB */
#define HIGH_RAM_START     0x100000000ull

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define BOOT_TSS 0x20

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_MAX      128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct e820_entry) == 20, "e820 entry");

/* Offsets into boot_params (Documentation/arch/x86/zero-page.rst) and the setup header */
#define BP_ACPI_RSDP_ADDR    0x070
#define BP_EXT_RAMDISK_IMAGE 0x0C0
#define BP_EXT_RAMDISK_SIZE  0x0C4
#define BP_EXT_CMD_LINE_PTR  0x0C8
#define BP_E820_ENTRIES      0x1E8
#define BP_SETUP_HEADER      0x1F1
#define BP_E820_TABLE        0x2D0
#define HDR_SETUP_SECTS      0x1F1
#define HDR_BOOT_FLAG        0x1FE
#define HDR_JUMP             0x200
#define HDR_MAGIC            0x202
#define HDR_VERSION          0x206
#define HDR_TYPE_OF_LOADER   0x210
#define HDR_LOADFLAGS        0x211
#define HDR_CODE32_START     0x214
#define HDR_RAMDISK_IMAGE    0x218
#define HDR_RAMDISK_SIZE     0x21C
#define HDR_HEAP_END_PTR     0x224
#define HDR_CMD_LINE_PTR     0x228
#define HDR_INITRD_ADDR_MAX  0x22C
#define HDR_XLOADFLAGS       0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_INIT_SIZE        0x260
#define BOOT_PARAMS_SIZE     4096

#define BOOT_MIN_VERSION 0x020C /* 2.12: xloadflags with the 64-bit entry */

struct bzimage {
	const uint8_t *data;
	size_t size;
	size_t setup_size;        /* real-mode part incl. boot sector */
	uint16_t version;
	uint32_t init_size;       /* memory the kernel needs from its load address */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
};

struct guest_layout {
	uint8_t *ram;             /* host view: [0, low_size) then [4 GiB, +high_size) packed */
	uint64_t ram_size;
	uint64_t low_size;        /* RAM below the MMIO hole */
};

struct boot_info {
	uint64_t entry;           /* 64-bit entry point */
	uint64_t boot_params;     /* RSI at entry */
	uint64_t initrd_addr, initrd_size;
};

/* Split ram_size into the guest layout (RAM below 3 GiB, the rest above 4 GiB). */
void guest_layout_init(struct guest_layout *g, uint8_t *ram, uint64_t ram_size);
/* Host address of guest-physical [gpa, gpa+len), or NULL if that is not all RAM. */
void *guest_layout_hva(const struct guest_layout *g, uint64_t gpa, uint64_t len);
/* The inverse: guest-physical address of hva, which must lie in [g->ram, g->ram + ram_size). */
uint64_t guest_layout_gpa(const struct guest_layout *g, const void *hva);

/* Check a bzImage. Returns NULL on success or a message saying what is wrong. */
const char *bzimage_parse(struct bzimage *k, const uint8_t *data, size_t size);

/* Fill the e820 map for the layout; returns the entry count. */
unsigned build_e820(const struct guest_layout *g, struct e820_entry *out, unsigned max);

/* Whether kernel k, an initrd of initrd_size bytes (0: none) and cmdline fit a guest of
 * ram_size bytes, without any guest memory: NULL, or the message linux_boot_load would give. */
const char *linux_boot_check(uint64_t ram_size, const struct bzimage *k, size_t initrd_size, const char *cmdline);

/* Load kernel, initrd (may be NULL) and cmdline into guest RAM, write boot_params,
 * page tables and GDT. rsdp is the ACPI RSDP's address (0 if none).
 * Returns NULL or a message naming the problem (e.g. the initrd does not fit). */
const char *linux_boot_load(const struct guest_layout *g, const struct bzimage *k,
			    const uint8_t *initrd, size_t initrd_size, const char *cmdline,
			    uint64_t rsdp, struct boot_info *out);

#endif
