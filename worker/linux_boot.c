/* Linux x86 boot protocol, 64-bit entry (Documentation/arch/x86/boot.rst). */
#include <stdio.h>
#include <string.h>

#include "worker/linux_boot.h"

#define LOADED_HIGH     0x01
#define CAN_USE_HEAP    0x80
#define XLF_KERNEL_64   0x01
#define LOADER_UNDEFINED 0xFF

#define PTE_PRESENT 0x001ull
#define PTE_RW      0x002ull
#define PTE_PS      0x080ull /* 2 MiB page in a page directory */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

void guest_layout_init(struct guest_layout *g, uint8_t *ram, uint64_t ram_size)
{
	g->ram = ram;
	g->ram_size = ram_size;
	g->low_size = ram_size < MMIO_HOLE_START ? ram_size : MMIO_HOLE_START;
}

void *guest_layout_hva(const struct guest_layout *g, uint64_t gpa, uint64_t len)
{
	if (len > g->ram_size)
		return NULL;
	if (gpa < g->low_size)
		return len <= g->low_size - gpa ? g->ram + gpa : NULL;
	uint64_t high = g->ram_size - g->low_size;
	if (gpa >= HIGH_RAM_START && gpa - HIGH_RAM_START < high && len <= high - (gpa - HIGH_RAM_START))
		return g->ram + g->low_size + (gpa - HIGH_RAM_START);
	return NULL;
}

uint64_t guest_layout_gpa(const struct guest_layout *g, const void *hva)
{
	uint64_t off = (uint64_t)((const uint8_t *)hva - g->ram);
	return off < g->low_size ? off : off - g->low_size + HIGH_RAM_START;
}

const char *bzimage_parse(struct bzimage *k, const uint8_t *data, size_t size)
{
	memset(k, 0, sizeof(*k));
	if (size < BOOT_PARAMS_SIZE || le16(data + HDR_BOOT_FLAG) != 0xAA55 ||
	    memcmp(data + HDR_MAGIC, "HdrS", 4) != 0)
		return "not a bzImage (no Linux boot sector or setup header)";
	k->version = le16(data + HDR_VERSION);
	if (k->version < BOOT_MIN_VERSION)
		return "boot protocol older than 2.12 (no 64-bit entry point)";
	if (!(data[HDR_XLOADFLAGS] & XLF_KERNEL_64))
		return "kernel has no 64-bit entry point";
	if (!(data[HDR_LOADFLAGS] & LOADED_HIGH))
		return "zImage (loaded low) kernels are not supported";
	unsigned sects = data[HDR_SETUP_SECTS] ? data[HDR_SETUP_SECTS] : 4;
	k->setup_size = (size_t)(sects + 1) * 512;
	if (k->setup_size >= size)
		return "setup sectors exceed the file size";
	if (HDR_JUMP + 2 + (size_t)data[HDR_JUMP + 1] > k->setup_size)
		return "setup header is longer than the setup code";
	k->init_size = le32(data + HDR_INIT_SIZE);
	k->initrd_addr_max = le32(data + HDR_INITRD_ADDR_MAX);
	k->cmdline_size = le32(data + HDR_CMDLINE_SIZE);
	if (k->init_size < size - k->setup_size)
		k->init_size = (uint32_t)(size - k->setup_size);
	k->data = data;
	k->size = size;
	return NULL;
}

unsigned build_e820(const struct guest_layout *g, struct e820_entry *out, unsigned max)
{
	uint64_t base_ram = g->low_size < EBDA_START ? g->low_size : EBDA_START;
	uint64_t ext_ram = g->low_size > BIOS_AREA_END ? g->low_size - BIOS_AREA_END : 0;
	struct e820_entry map[] = {
		{ 0, base_ram, E820_RAM },
		{ EBDA_START, 0xA0000 - EBDA_START, E820_RESERVED },
		{ BIOS_AREA_START, BIOS_AREA_END - BIOS_AREA_START, E820_RESERVED },
		{ BIOS_AREA_END, ext_ram, E820_RAM },
		{ HIGH_RAM_START, g->ram_size - g->low_size, E820_RAM },
	};
	unsigned n = 0;
	for (unsigned i = 0; i < sizeof(map) / sizeof(map[0]) && n < max; i++)
		if (map[i].size)
			out[n++] = map[i];
	return n;
}

static void write_page_tables(const struct guest_layout *g)
{
	uint8_t *pml4 = g->ram + BOOT_PML4_ADDR, *pdpt = g->ram + BOOT_PDPT_ADDR;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	put64(pml4, BOOT_PDPT_ADDR | PTE_PRESENT | PTE_RW);
	for (uint64_t gib = 0; gib < 4; gib++) {
		uint64_t pd_addr = BOOT_PD_ADDR + gib * 4096;
		put64(pdpt + gib * 8, pd_addr | PTE_PRESENT | PTE_RW);
		for (uint64_t i = 0; i < 512; i++)
			put64(g->ram + pd_addr + i * 8,
			      (gib << 30 | i << 21) | PTE_PRESENT | PTE_RW | PTE_PS);
	}
}

static void write_gdt(const struct guest_layout *g)
{
	const uint64_t gdt[] = {
		0,                       /* null */
		0,
		0x00AF9B000000FFFFull,   /* BOOT_CS: 64-bit code, present, DPL 0 */
		0x00CF93000000FFFFull,   /* BOOT_DS: flat data */
		0x00008B0000000067ull,   /* BOOT_TSS: busy 64-bit TSS at 0 (VMX wants a usable TR) */
	};
	for (unsigned i = 0; i < sizeof(gdt) / sizeof(gdt[0]); i++)
		put64(g->ram + BOOT_GDT_ADDR + i * 8, gdt[i]);
}

/* Where the initrd goes in g (0 without one), or a message if something does not fit. */
static const char *place(const struct guest_layout *g, const struct bzimage *k, size_t initrd_size,
			 const char *cmdline, uint64_t *initrd_addr)
{
	uint64_t kernel_end = KERNEL_LOAD_ADDR + k->init_size;
	if (kernel_end > g->low_size)
		return "guest memory too small for the kernel";
	uint64_t cmdline_max = k->cmdline_size < BOOT_CMDLINE_MAX - 1 ? k->cmdline_size : BOOT_CMDLINE_MAX - 1;
	if (strlen(cmdline) > cmdline_max)
		return "kernel command line too long for this kernel";
	*initrd_addr = 0;
	if (initrd_size) {
		/* Highest page-aligned spot below the kernel's limit and the MMIO hole. */
		uint64_t limit = (uint64_t)k->initrd_addr_max + 1;
		if (limit > g->low_size)
			limit = g->low_size;
		if (initrd_size > limit || ((limit - initrd_size) & ~0xFFFull) < kernel_end)
			return "initrd does not fit in guest memory below the kernel's initrd limit";
		*initrd_addr = (limit - initrd_size) & ~0xFFFull;
	}
	return NULL;
}

const char *linux_boot_check(uint64_t ram_size, const struct bzimage *k, size_t initrd_size, const char *cmdline)
{
	struct guest_layout g;
	guest_layout_init(&g, NULL, ram_size);
	uint64_t initrd_addr;
	return place(&g, k, initrd_size, cmdline, &initrd_addr);
}

const char *linux_boot_load(const struct guest_layout *g, const struct bzimage *k,
			    const uint8_t *initrd, size_t initrd_size, const char *cmdline,
			    uint64_t rsdp, struct boot_info *out)
{
	if (!initrd)
		initrd_size = 0;
	uint64_t initrd_addr;
	const char *why = place(g, k, initrd_size, cmdline, &initrd_addr);
	if (why)
		return why;
	size_t cmdline_len = strlen(cmdline);

	memcpy(g->ram + KERNEL_LOAD_ADDR, k->data + k->setup_size, k->size - k->setup_size);

	uint8_t *bp = g->ram + BOOT_PARAMS_ADDR;
	memset(bp, 0, BOOT_PARAMS_SIZE);
	size_t hdr_end = HDR_JUMP + 2 + k->data[HDR_JUMP + 1];
	memcpy(bp + BP_SETUP_HEADER, k->data + BP_SETUP_HEADER, hdr_end - BP_SETUP_HEADER);
	bp[HDR_TYPE_OF_LOADER] = LOADER_UNDEFINED;
	bp[HDR_LOADFLAGS] |= CAN_USE_HEAP;
	put16(bp + HDR_HEAP_END_PTR, 0xFE00 - 0x200);
	put32(bp + HDR_CODE32_START, KERNEL_LOAD_ADDR);

	memcpy(g->ram + BOOT_CMDLINE_ADDR, cmdline, cmdline_len + 1);
	put32(bp + HDR_CMD_LINE_PTR, BOOT_CMDLINE_ADDR);

	out->initrd_addr = out->initrd_size = 0;
	if (initrd_size) {
		uint64_t addr = initrd_addr;
		memcpy(g->ram + addr, initrd, initrd_size);
		put32(bp + HDR_RAMDISK_IMAGE, (uint32_t)addr);
		put32(bp + HDR_RAMDISK_SIZE, (uint32_t)initrd_size);
		put32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(addr >> 32));
		put32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)initrd_size >> 32));
		out->initrd_addr = addr;
		out->initrd_size = initrd_size;
	}

	struct e820_entry map[E820_MAX];
	unsigned n = build_e820(g, map, E820_MAX);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(bp + BP_E820_TABLE, map, n * sizeof(map[0]));
	put64(bp + BP_ACPI_RSDP_ADDR, rsdp);

	write_page_tables(g);
	write_gdt(g);
	out->entry = KERNEL_LOAD_ADDR + 0x200; /* startup_64 */
	out->boot_params = BOOT_PARAMS_ADDR;
	return NULL;
}
