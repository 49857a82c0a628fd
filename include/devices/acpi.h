/* ACPI tables: the guest's RSDP, XSDT, RSDT, FADT, FACS, MADT and DSDT, built in code.
 *
 * Pure logic: acpi_build_tables() lays every table out in a caller-supplied buffer whose first
 * byte sits at a given guest-physical address, fixes up the pointers between tables and their
 * checksums, and returns the RSDP's guest-physical address for boot_params.acpi_rsdp_addr.
 * Nothing here touches KVM or guest memory directly.
 *
 * The platform described is a legacy-style PC without PCI: not hardware-reduced ACPI, fixed
 * PM1a event/control blocks (emulated by devices/acpi_pm.c), an optional ACPI PM timer, a
 * RESET_REG in I/O space, an i8042, a CMOS RTC, COM1, one IOAPIC and a VMBus device whose
 * _HID is "VMBUS" (what Linux's hv_vmbus matches). ACPI is always enabled: SMI_CMD is 0, so
 * the guest never tries an SMI handshake and PM1_CNT.SCI_EN always reads as set.
 *
 * Layout, in buf order, so that every pointer refers back to a table already written:
 *   FACS (64-byte aligned) | DSDT | FADT | MADT | XSDT | RSDT | RSDP (16-byte aligned)
 * The RSDP's RSDT pointer (and the FADT's 32-bit FACS/DSDT pointers) are only set when the
 * target lies below 4 GiB; the XSDT and the 64-bit X_ fields are always set, and are what
 * current kernels use.
 */
#ifndef VIRIDIAN_DEVICES_ACPI_H
#define VIRIDIAN_DEVICES_ACPI_H

#include <stddef.h>
#include <stdint.h>

/* Defaults: where the worker should put things unless it has a reason not to */
#define ACPI_TABLES_GPA        0xE0000u   /* BIOS area: also found by the kernel's RSDP scan */
#define ACPI_TABLES_MAX        0x20000u   /* 0xE0000..0xFFFFF; enough for ~8000 vCPUs */
#define ACPI_LAPIC_ADDR        0xFEE00000u
#define ACPI_IOAPIC_ADDR       0xFEC00000u
#define ACPI_IOAPIC_ID         0          /* matches KVM's in-kernel IOAPIC after reset */
#define ACPI_PM_IO_BASE        0x600      /* the whole PM I/O block: 0x600..0x60f */
#define ACPI_PM_IO_LEN         0x10
#define ACPI_PM1A_EVT_PORT     0x600      /* PM1_STS (2 bytes) then PM1_EN (2 bytes) */
#define ACPI_PM1A_CNT_PORT     0x604      /* PM1_CNT (2 bytes) */
#define ACPI_PM_TMR_PORT       0x608      /* PM_TMR (4 bytes, 32-bit: TMR_VAL_EXT is set) */
#define ACPI_RESET_PORT        0x60c      /* RESET_REG (1 byte) */
#define ACPI_RESET_VALUE       0x01
#define ACPI_SCI_IRQ           9          /* level-triggered, active high (MADT override) */
#define ACPI_VMBUS_IRQ         5
#define ACPI_RTC_CENTURY_REG   0x32       /* CMOS century byte index; 0 = none */

/* PM1 register blocks and the sleep type the DSDT's \_S5 names */
#define ACPI_PM1_EVT_LEN       4
#define ACPI_PM1_CNT_LEN       2
#define ACPI_PM_TMR_LEN        4
#define ACPI_SLP_TYP_S5        5          /* \_S5 = Package { 5, 5, 0, 0 } */
#define ACPI_SLP_TYP_S0        0          /* \_S0 = Package { 0, 0, 0, 0 } */

/* Table identity */
#define ACPI_OEM_ID            "VIRIDN"   /* 6 bytes */
#define ACPI_OEM_TABLE_ID      "VIRIDIAN" /* 8 bytes */
#define ACPI_OEM_REVISION      1
#define ACPI_CREATOR_ID        "VRDN"     /* 4 bytes */
#define ACPI_CREATOR_REVISION  1

/* What the guest platform looks like */
struct acpi_config {
	uint32_t ncpus;          /* vCPUs, APIC ids 0..ncpus-1, ACPI processor UIDs 0..ncpus-1;
	                         ids below 255 get Local APIC entries, 255 and up x2APIC ones */
	uint64_t lapic_addr;     /* MADT local APIC address (must be below 4 GiB) */
	uint64_t ioapic_addr;    /* IOAPIC MMIO base (must be below 4 GiB), GSI base 0 */
	uint8_t  ioapic_id;      /* IOAPIC id in the MADT */
	uint16_t pm1a_evt_port;  /* PM1a event block: status (2 bytes) then enable (2 bytes) */
	uint16_t pm1a_cnt_port;  /* PM1a control block (2 bytes) */
	uint16_t pm_tmr_port;    /* ACPI PM timer (4 bytes), 0 = none */
	uint16_t reset_port;     /* FADT RESET_REG in I/O space, 0 = none */
	uint8_t  reset_value;    /* value the guest writes there to reset */
	uint8_t  sci_irq;        /* SCI: ISA IRQ = GSI, level, active high */
	uint8_t  vmbus_irq;      /* IRQ in the VMBus device's _CRS */
	uint8_t  rtc_century;    /* FADT CENTURY: CMOS index of the century byte, 0 = none */
};

/* Fills *cfg with the defaults above for ncpus vCPUs. */
void acpi_config_default(struct acpi_config *cfg, uint32_t ncpus);

/* Lays out all tables into buf, whose first byte is guest-physical base_gpa. Returns the
 * RSDP's GPA, or 0 when buf_size is too small or cfg is unusable (ncpus 0, LAPIC/IOAPIC above
 * 4 GiB); no byte past buf + buf_size is ever written. *used (may be NULL) = bytes of buf used
 * (0 on failure). All checksums are correct: every table's sums to 0, as do the RSDP's first
 * 20 bytes and all 36. */
uint64_t acpi_build_tables(void *buf, size_t buf_size, uint64_t base_gpa,
                           const struct acpi_config *cfg, size_t *used);

/* 8-bit sum of len bytes (a valid table sums to 0). */
uint8_t acpi_checksum(const void *data, size_t len);

/* AML PkgLength for a package whose body (everything after the PkgLength) is body_len bytes:
 * writes the 1..4 byte encoding to out and returns its size n; the encoded length is
 * body_len + n. Returns 0 when the length does not fit in 28 bits. */
size_t acpi_aml_pkglength(uint8_t out[4], size_t body_len);

/* EISA id ("PNP0501") compressed to the 32-bit integer AML's EisaId() yields; 0 if malformed. */
uint32_t acpi_eisa_id(const char *id);

/* ---- Wire formats (ACPI 6.x), little-endian, packed ---- */

/* Every system description table starts with this header */
struct __attribute__((packed)) acpi_table_header {
	char     signature[4];       /* "APIC", "FACP", "DSDT", "XSDT", "RSDT" */
	uint32_t length;             /* whole table, header included */
	uint8_t  revision;
	uint8_t  checksum;           /* whole table sums to 0 */
	char     oem_id[6];
	char     oem_table_id[8];
	uint32_t oem_revision;
	char     creator_id[4];
	uint32_t creator_revision;
};
_Static_assert(sizeof(struct acpi_table_header) == 36, "ACPI header is 36 bytes");
_Static_assert(offsetof(struct acpi_table_header, checksum) == 9, "header checksum");
_Static_assert(offsetof(struct acpi_table_header, oem_revision) == 24, "header oem rev");

/* Root System Description Pointer, revision 2 */
struct __attribute__((packed)) acpi_rsdp {
	char     signature[8];       /* "RSD PTR " */
	uint8_t  checksum;           /* first 20 bytes sum to 0 */
	char     oem_id[6];
	uint8_t  revision;           /* 2 = ACPI 2.0+, has the fields below */
	uint32_t rsdt_address;
	uint32_t length;             /* 36 */
	uint64_t xsdt_address;
	uint8_t  extended_checksum;  /* all 36 bytes sum to 0 */
	uint8_t  reserved[3];
};
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP is 36 bytes");
_Static_assert(offsetof(struct acpi_rsdp, rsdt_address) == 16, "RSDP rsdt");
_Static_assert(offsetof(struct acpi_rsdp, xsdt_address) == 24, "RSDP xsdt");
_Static_assert(offsetof(struct acpi_rsdp, extended_checksum) == 32, "RSDP ext checksum");

/* Generic Address Structure */
struct __attribute__((packed)) acpi_gas {
	uint8_t  space_id;           /* ACPI_GAS_* */
	uint8_t  bit_width;
	uint8_t  bit_offset;
	uint8_t  access_size;        /* 0 undefined, 1 byte, 2 word, 3 dword, 4 qword */
	uint64_t address;
};
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS is 12 bytes");
#define ACPI_GAS_SYSTEM_MEMORY 0
#define ACPI_GAS_SYSTEM_IO     1

/* Fixed ACPI Description Table, revision 6 ("FACP") */
struct __attribute__((packed)) acpi_fadt {
	struct acpi_table_header header;
	uint32_t firmware_ctrl;      /* FACS, 32-bit */
	uint32_t dsdt;               /* DSDT, 32-bit (equal to x_dsdt when below 4 GiB) */
	uint8_t  reserved0;
	uint8_t  preferred_pm_profile;
	uint16_t sci_int;            /* SCI's ISA IRQ / GSI */
	uint32_t smi_cmd;            /* 0: no SMI, ACPI mode is fixed on */
	uint8_t  acpi_enable;
	uint8_t  acpi_disable;
	uint8_t  s4bios_req;
	uint8_t  pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t  pm1_evt_len;
	uint8_t  pm1_cnt_len;
	uint8_t  pm2_cnt_len;
	uint8_t  pm_tmr_len;
	uint8_t  gpe0_blk_len;
	uint8_t  gpe1_blk_len;
	uint8_t  gpe1_base;
	uint8_t  cst_cnt;
	uint16_t p_lvl2_lat;         /* > 100: C2 not supported */
	uint16_t p_lvl3_lat;         /* > 1000: C3 not supported */
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t  duty_offset;
	uint8_t  duty_width;
	uint8_t  day_alrm;
	uint8_t  mon_alrm;
	uint8_t  century;
	uint16_t iapc_boot_arch;     /* ACPI_FADT_BOOT_* */
	uint8_t  reserved1;
	uint32_t flags;              /* ACPI_FADT_F_* */
	struct acpi_gas reset_reg;
	uint8_t  reset_value;
	uint16_t arm_boot_arch;
	uint8_t  minor_revision;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
};
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT revision 6 is 276 bytes");
_Static_assert(offsetof(struct acpi_fadt, sci_int) == 46, "FADT SCI_INT");
_Static_assert(offsetof(struct acpi_fadt, pm1a_evt_blk) == 56, "FADT PM1a_EVT_BLK");
_Static_assert(offsetof(struct acpi_fadt, pm_tmr_blk) == 76, "FADT PM_TMR_BLK");
_Static_assert(offsetof(struct acpi_fadt, pm1_evt_len) == 88, "FADT PM1_EVT_LEN");
_Static_assert(offsetof(struct acpi_fadt, century) == 108, "FADT CENTURY");
_Static_assert(offsetof(struct acpi_fadt, iapc_boot_arch) == 109, "FADT IAPC_BOOT_ARCH");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT Flags");
_Static_assert(offsetof(struct acpi_fadt, reset_reg) == 116, "FADT RESET_REG");
_Static_assert(offsetof(struct acpi_fadt, reset_value) == 128, "FADT RESET_VALUE");
_Static_assert(offsetof(struct acpi_fadt, x_firmware_ctrl) == 132, "FADT X_FIRMWARE_CTRL");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT");
_Static_assert(offsetof(struct acpi_fadt, x_pm1a_evt_blk) == 148, "FADT X_PM1a_EVT_BLK");
_Static_assert(offsetof(struct acpi_fadt, x_pm_tmr_blk) == 208, "FADT X_PM_TMR_BLK");
_Static_assert(offsetof(struct acpi_fadt, sleep_control_reg) == 244, "FADT SLEEP_CONTROL");
_Static_assert(offsetof(struct acpi_fadt, hypervisor_vendor_id) == 268, "FADT hv vendor");
#define ACPI_FADT_REVISION       6
#define ACPI_FADT_MINOR_REVISION 0

/* FADT IAPC_BOOT_ARCH */
#define ACPI_FADT_BOOT_LEGACY_DEVICES   (1u << 0)  /* ISA devices the OS cannot enumerate */
#define ACPI_FADT_BOOT_8042             (1u << 1)  /* i8042 present */
#define ACPI_FADT_BOOT_VGA_NOT_PRESENT  (1u << 2)
#define ACPI_FADT_BOOT_MSI_NOT_SUPPORTED (1u << 3)
#define ACPI_FADT_BOOT_PCIE_ASPM        (1u << 4)
#define ACPI_FADT_BOOT_NO_CMOS_RTC      (1u << 5)

/* FADT Flags */
#define ACPI_FADT_F_WBINVD              (1u << 0)
#define ACPI_FADT_F_WBINVD_FLUSH        (1u << 1)
#define ACPI_FADT_F_PROC_C1             (1u << 2)
#define ACPI_FADT_F_P_LVL2_UP           (1u << 3)
#define ACPI_FADT_F_PWR_BUTTON          (1u << 4)  /* set: no fixed-feature power button */
#define ACPI_FADT_F_SLP_BUTTON          (1u << 5)  /* set: no fixed-feature sleep button */
#define ACPI_FADT_F_FIX_RTC             (1u << 6)  /* set: no RTC_STS/RTC_EN in PM1 */
#define ACPI_FADT_F_RTC_S4              (1u << 7)
#define ACPI_FADT_F_TMR_VAL_EXT         (1u << 8)  /* PM timer is 32 bits, not 24 */
#define ACPI_FADT_F_DCK_CAP             (1u << 9)
#define ACPI_FADT_F_RESET_REG_SUP       (1u << 10)
#define ACPI_FADT_F_SEALED_CASE         (1u << 11)
#define ACPI_FADT_F_HEADLESS            (1u << 12)
#define ACPI_FADT_F_CPU_SW_SLP          (1u << 13)
#define ACPI_FADT_F_PCI_EXP_WAK         (1u << 14)
#define ACPI_FADT_F_USE_PLATFORM_CLOCK  (1u << 15)
#define ACPI_FADT_F_HW_REDUCED_ACPI     (1u << 20)

/* Firmware ACPI Control Structure (no checksum; 64-byte aligned) */
struct __attribute__((packed)) acpi_facs {
	char     signature[4];       /* "FACS" */
	uint32_t length;             /* 64 */
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t  version;            /* 2 */
	uint8_t  reserved0[3];
	uint32_t ospm_flags;
	uint8_t  reserved1[24];
};
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS is 64 bytes");
_Static_assert(offsetof(struct acpi_facs, version) == 32, "FACS version");

/* Multiple APIC Description Table ("APIC"): header then entries */
struct __attribute__((packed)) acpi_madt {
	struct acpi_table_header header;
	uint32_t lapic_addr;
	uint32_t flags;              /* ACPI_MADT_PCAT_COMPAT: dual 8259s present */
};
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT fixed part is 44 bytes");
#define ACPI_MADT_REVISION       5
#define ACPI_MADT_PCAT_COMPAT    (1u << 0)

/* MADT entry types */
#define ACPI_MADT_LAPIC          0
#define ACPI_MADT_IOAPIC         1
#define ACPI_MADT_ISO            2   /* interrupt source override */
#define ACPI_MADT_LAPIC_NMI      4
#define ACPI_MADT_X2APIC         9
#define ACPI_MADT_X2APIC_NMI     10

/* MPS INTI flags (ISO, NMI entries) */
#define ACPI_MPS_CONFORMS        0x0
#define ACPI_MPS_ACTIVE_HIGH     0x1
#define ACPI_MPS_ACTIVE_LOW      0x3
#define ACPI_MPS_EDGE            (0x1 << 2)
#define ACPI_MPS_LEVEL           (0x3 << 2)

#define ACPI_LAPIC_ENABLED       (1u << 0)
#define ACPI_X2APIC_MIN_ID       255  /* APIC ids from here on need x2APIC entries */

struct __attribute__((packed)) acpi_madt_lapic {
	uint8_t  type;               /* ACPI_MADT_LAPIC */
	uint8_t  length;             /* 8 */
	uint8_t  processor_uid;
	uint8_t  apic_id;
	uint32_t flags;              /* ACPI_LAPIC_ENABLED */
};
_Static_assert(sizeof(struct acpi_madt_lapic) == 8, "MADT LAPIC entry is 8 bytes");

struct __attribute__((packed)) acpi_madt_ioapic {
	uint8_t  type;               /* ACPI_MADT_IOAPIC */
	uint8_t  length;             /* 12 */
	uint8_t  ioapic_id;
	uint8_t  reserved;
	uint32_t address;
	uint32_t gsi_base;
};
_Static_assert(sizeof(struct acpi_madt_ioapic) == 12, "MADT IOAPIC entry is 12 bytes");

struct __attribute__((packed)) acpi_madt_iso {
	uint8_t  type;               /* ACPI_MADT_ISO */
	uint8_t  length;             /* 10 */
	uint8_t  bus;                /* 0 = ISA */
	uint8_t  source;             /* ISA IRQ */
	uint32_t gsi;
	uint16_t flags;              /* ACPI_MPS_* */
};
_Static_assert(sizeof(struct acpi_madt_iso) == 10, "MADT ISO entry is 10 bytes");

struct __attribute__((packed)) acpi_madt_lapic_nmi {
	uint8_t  type;               /* ACPI_MADT_LAPIC_NMI */
	uint8_t  length;             /* 6 */
	uint8_t  processor_uid;      /* 0xff = all processors */
	uint16_t flags;              /* ACPI_MPS_* */
	uint8_t  lint;               /* LINT# the NMI is wired to */
};
_Static_assert(sizeof(struct acpi_madt_lapic_nmi) == 6, "MADT LAPIC NMI entry is 6 bytes");

struct __attribute__((packed)) acpi_madt_x2apic {
	uint8_t  type;               /* ACPI_MADT_X2APIC */
	uint8_t  length;             /* 16 */
	uint16_t reserved;
	uint32_t x2apic_id;
	uint32_t flags;              /* ACPI_LAPIC_ENABLED */
	uint32_t processor_uid;
};
_Static_assert(sizeof(struct acpi_madt_x2apic) == 16, "MADT x2APIC entry is 16 bytes");

struct __attribute__((packed)) acpi_madt_x2apic_nmi {
	uint8_t  type;               /* ACPI_MADT_X2APIC_NMI */
	uint8_t  length;             /* 12 */
	uint16_t flags;              /* ACPI_MPS_* */
	uint32_t processor_uid;      /* 0xffffffff = all processors */
	uint8_t  lint;
	uint8_t  reserved[3];
};
_Static_assert(sizeof(struct acpi_madt_x2apic_nmi) == 12, "MADT x2APIC NMI entry is 12 bytes");

#endif /* VIRIDIAN_DEVICES_ACPI_H */
