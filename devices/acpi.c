/* ACPI tables built in code: FACS, DSDT (AML from a tiny emitter), FADT, MADT, XSDT, RSDT,
 * RSDP. See include/devices/acpi.h for the platform they describe and the layout. */
#include "devices/acpi.h"

#include <stdbool.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "tables are written in host order");

/* AML opcodes */
#define AML_ZERO          0x00
#define AML_ONE           0x01
#define AML_NAME          0x08
#define AML_BYTE_PREFIX   0x0a
#define AML_WORD_PREFIX   0x0b
#define AML_DWORD_PREFIX  0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX  0x0e
#define AML_SCOPE         0x10
#define AML_BUFFER        0x11
#define AML_PACKAGE       0x12
#define AML_EXT_PREFIX    0x5b
#define AML_EXT_DEVICE    0x82  /* after AML_EXT_PREFIX */
#define AML_ONES          0xff

/* AML name strings */
#define AML_ROOT_CHAR     '\\'
#define AML_PARENT_CHAR   '^'
#define AML_DUAL_NAME     0x2e
#define AML_MULTI_NAME    0x2f
#define AML_NAMESEG_LEN   4

/* Small resource descriptors (ResourceTemplate contents) */
#define RES_IRQ_NOFLAGS   0x22  /* IRQNoFlags: 16-bit mask, ISA edge active-high */
#define RES_IO            0x47  /* IO: info, min, max, alignment, length */
#define RES_IO_DECODE16   0x01
#define RES_END_TAG       0x79  /* then a checksum byte, 0 = none */

/* PkgLength forms: lead byte bits 7:6 = extra bytes; one byte holds 6 bits, the others 4 + 8n */
#define PKGLEN_MAX_1      0x3fu
#define PKGLEN_MAX_2      0xfffu
#define PKGLEN_MAX_3      0xfffffu
#define PKGLEN_MAX_4      0xfffffffu

#define DSDT_REVISION     2     /* 64-bit integers */
#define XSDT_REVISION     1
#define RSDT_REVISION     1
#define RSDP_REVISION     2
#define FACS_VERSION      2
#define FOUR_GIB          (1ull << 32)

/* A bounded byte sink: every write is checked, and a write that would pass cap sets overflow
 * and writes nothing. */
struct blob {
	uint8_t *buf;
	size_t   cap;
	size_t   len;
	bool     overflow;
};

static void *blob_reserve(struct blob *b, size_t n)
{
	if (b->overflow || n > b->cap - b->len) {
		b->overflow = true;
		return NULL;
	}
	void *p = b->buf + b->len;
	memset(p, 0, n);
	b->len += n;
	return p;
}

static void blob_put(struct blob *b, const void *data, size_t n)
{
	void *p = blob_reserve(b, n);
	if (p)
		memcpy(p, data, n);
}

static void blob_byte(struct blob *b, uint8_t v)
{
	blob_put(b, &v, 1);
}

/* Pads with zeroes until base_gpa + len is a multiple of align (a power of two). */
static void blob_align(struct blob *b, uint64_t base_gpa, size_t align)
{
	uint64_t gpa = base_gpa + b->len;
	size_t pad = (size_t)((align - (gpa & (align - 1))) & (align - 1));
	blob_reserve(b, pad);
}

uint8_t acpi_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum;
}

/* Sets the byte at checksum_off so the len bytes at t sum to 0. */
static void fix_checksum(uint8_t *t, size_t len, size_t checksum_off)
{
	t[checksum_off] = 0;
	t[checksum_off] = (uint8_t)-acpi_checksum(t, len);
}

static void table_header(struct acpi_table_header *h, const char sig[4], uint32_t length,
                         uint8_t revision)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->signature, sig, 4);
	h->length = length;
	h->revision = revision;
	memcpy(h->oem_id, ACPI_OEM_ID, sizeof(h->oem_id));
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, sizeof(h->oem_table_id));
	h->oem_revision = ACPI_OEM_REVISION;
	memcpy(h->creator_id, ACPI_CREATOR_ID, sizeof(h->creator_id));
	h->creator_revision = ACPI_CREATOR_REVISION;
}

/* Finishes a table written at offset start: patches its length and checksum. */
static void table_finish(struct blob *b, size_t start)
{
	if (b->overflow)
		return;
	uint32_t len = (uint32_t)(b->len - start);
	memcpy(b->buf + start + offsetof(struct acpi_table_header, length), &len, sizeof(len));
	fix_checksum(b->buf + start, len, offsetof(struct acpi_table_header, checksum));
}

/* ---- AML emitter ---- */

size_t acpi_aml_pkglength(uint8_t out[4], size_t body_len)
{
	size_t n;
	if (body_len <= PKGLEN_MAX_1 - 1)
		n = 1;
	else if (body_len <= PKGLEN_MAX_2 - 2)
		n = 2;
	else if (body_len <= PKGLEN_MAX_3 - 3)
		n = 3;
	else if (body_len <= PKGLEN_MAX_4 - 4)
		n = 4;
	else
		return 0;

	size_t total = body_len + n;
	if (n == 1) {
		out[0] = (uint8_t)total;
		return 1;
	}
	out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
	for (size_t i = 1; i < n; i++)
		out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

/* Opens a PkgLength-prefixed region; returns where its body starts. */
static size_t aml_pkg_begin(struct blob *b)
{
	return b->len;
}

/* Closes the region opened at start: slides its body up and puts the PkgLength in front. */
static void aml_pkg_end(struct blob *b, size_t start)
{
	if (b->overflow)
		return;
	uint8_t enc[4];
	size_t body = b->len - start;
	size_t n = acpi_aml_pkglength(enc, body);
	if (n == 0 || n > b->cap - b->len) {
		b->overflow = true;
		return;
	}
	memmove(b->buf + start + n, b->buf + start, body);
	memcpy(b->buf + start, enc, n);
	b->len += n;
}

/* One NameSeg: up to four of [A-Z0-9_], padded with '_'. */
static void aml_nameseg(struct blob *b, const char *seg, size_t len)
{
	char s[AML_NAMESEG_LEN] = {'_', '_', '_', '_'};
	if (len > AML_NAMESEG_LEN) {
		b->overflow = true;  /* a programming error: refuse to emit a bad name */
		return;
	}
	memcpy(s, seg, len);
	blob_put(b, s, sizeof(s));
}

/* A NameString: "\\_SB", "VMBS", "\\_SB.COM1", "^FOO". */
static void aml_name(struct blob *b, const char *path)
{
	while (*path == AML_ROOT_CHAR || *path == AML_PARENT_CHAR)
		blob_byte(b, (uint8_t)*path++);

	size_t nsegs = 1;
	for (const char *p = path; *p; p++)
		nsegs += *p == '.';
	if (*path == '\0') {
		blob_byte(b, AML_ZERO);  /* NullName */
		return;
	}
	if (nsegs == 2) {
		blob_byte(b, AML_DUAL_NAME);
	} else if (nsegs > 2) {
		blob_byte(b, AML_MULTI_NAME);
		blob_byte(b, (uint8_t)nsegs);
	}
	while (*path) {
		const char *dot = strchr(path, '.');
		size_t len = dot ? (size_t)(dot - path) : strlen(path);
		aml_nameseg(b, path, len);
		path += len + (dot != NULL);
	}
}

/* An integer in its shortest encoding. */
static void aml_integer(struct blob *b, uint64_t v)
{
	if (v == 0) {
		blob_byte(b, AML_ZERO);
	} else if (v == 1) {
		blob_byte(b, AML_ONE);
	} else if (v == UINT64_MAX) {
		blob_byte(b, AML_ONES);
	} else if (v <= UINT8_MAX) {
		blob_byte(b, AML_BYTE_PREFIX);
		blob_byte(b, (uint8_t)v);
	} else if (v <= UINT16_MAX) {
		uint16_t w = (uint16_t)v;
		blob_byte(b, AML_WORD_PREFIX);
		blob_put(b, &w, sizeof(w));
	} else if (v <= UINT32_MAX) {
		uint32_t d = (uint32_t)v;
		blob_byte(b, AML_DWORD_PREFIX);
		blob_put(b, &d, sizeof(d));
	} else {
		blob_byte(b, AML_QWORD_PREFIX);
		blob_put(b, &v, sizeof(v));
	}
}

static void aml_string(struct blob *b, const char *s)
{
	blob_byte(b, AML_STRING_PREFIX);
	blob_put(b, s, strlen(s) + 1);
}

/* Name (path, <the object the caller emits next>) */
static void aml_name_decl(struct blob *b, const char *path)
{
	blob_byte(b, AML_NAME);
	aml_name(b, path);
}

/* Buffer (len) { data } */
static void aml_buffer(struct blob *b, const void *data, size_t len)
{
	blob_byte(b, AML_BUFFER);
	size_t pkg = aml_pkg_begin(b);
	aml_integer(b, len);
	blob_put(b, data, len);
	aml_pkg_end(b, pkg);
}

/* Package (n) { integers } */
static void aml_package_ints(struct blob *b, const uint64_t *v, uint8_t n)
{
	blob_byte(b, AML_PACKAGE);
	size_t pkg = aml_pkg_begin(b);
	blob_byte(b, n);
	for (uint8_t i = 0; i < n; i++)
		aml_integer(b, v[i]);
	aml_pkg_end(b, pkg);
}

/* Scope (path) { ... } / Device (name) { ... }: begin returns the token for end */
static size_t aml_scope_begin(struct blob *b, const char *path)
{
	blob_byte(b, AML_SCOPE);
	size_t pkg = aml_pkg_begin(b);
	aml_name(b, path);
	return pkg;
}

static size_t aml_device_begin(struct blob *b, const char *name)
{
	blob_byte(b, AML_EXT_PREFIX);
	blob_byte(b, AML_EXT_DEVICE);
	size_t pkg = aml_pkg_begin(b);
	aml_name(b, name);
	return pkg;
}

static void aml_block_end(struct blob *b, size_t pkg)
{
	aml_pkg_end(b, pkg);
}

uint32_t acpi_eisa_id(const char *id)
{
	if (strlen(id) != 7)
		return 0;
	uint32_t v = 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
		v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
	}
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		uint32_t d;
		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (uint32_t)(c - 'A' + 10);
		else
			return 0;
		v = (v << 4) | d;
	}
	/* the 16-bit vendor and product halves are each stored big-endian */
	return __builtin_bswap32(v);
}

/* ResourceTemplate () { ... }: collected in a small array, emitted as a Buffer */
struct restemplate {
	uint8_t data[64];
	size_t  len;
	bool    overflow;
};

static void res_put(struct restemplate *r, const uint8_t *d, size_t n)
{
	if (r->overflow || n > sizeof(r->data) - r->len) {
		r->overflow = true;
		return;
	}
	memcpy(r->data + r->len, d, n);
	r->len += n;
}

/* IRQNoFlags () { irq } */
static void res_irq(struct restemplate *r, uint8_t irq)
{
	uint16_t mask = irq < 16 ? (uint16_t)(1u << irq) : 0;
	uint8_t d[3] = {RES_IRQ_NOFLAGS, (uint8_t)mask, (uint8_t)(mask >> 8)};
	res_put(r, d, sizeof(d));
}

/* IO (Decode16, base, base, 1, len) */
static void res_io(struct restemplate *r, uint16_t base, uint8_t len)
{
	uint8_t d[8] = {RES_IO, RES_IO_DECODE16, (uint8_t)base, (uint8_t)(base >> 8),
	                (uint8_t)base, (uint8_t)(base >> 8), 1, len};
	res_put(r, d, sizeof(d));
}

static void aml_restemplate(struct blob *b, struct restemplate *r)
{
	uint8_t end[2] = {RES_END_TAG, 0};
	res_put(r, end, sizeof(end));
	if (r->overflow) {
		b->overflow = true;
		return;
	}
	aml_buffer(b, r->data, r->len);
}

/* Device (name) { Name (_HID, EisaId (hid)) Name (_UID, uid) Name (_CRS, crs) } */
static void aml_isa_device(struct blob *b, const char *name, const char *hid, uint64_t uid,
                           struct restemplate *crs)
{
	size_t dev = aml_device_begin(b, name);
	aml_name_decl(b, "_HID");
	aml_integer(b, acpi_eisa_id(hid));
	aml_name_decl(b, "_UID");
	aml_integer(b, uid);
	aml_name_decl(b, "_CRS");
	aml_restemplate(b, crs);
	aml_block_end(b, dev);
}

/* ---- Tables ---- */

static void build_dsdt(struct blob *b, const struct acpi_config *cfg)
{
	size_t start = b->len;
	struct acpi_table_header h;
	table_header(&h, "DSDT", 0, DSDT_REVISION);
	blob_put(b, &h, sizeof(h));

	/* Sleep states: S0 (working) and S5 (soft off). SLP_TYPa, SLP_TYPb, reserved, reserved. */
	const uint64_t s0[4] = {ACPI_SLP_TYP_S0, ACPI_SLP_TYP_S0, 0, 0};
	const uint64_t s5[4] = {ACPI_SLP_TYP_S5, ACPI_SLP_TYP_S5, 0, 0};
	aml_name_decl(b, "\\_S0");
	aml_package_ints(b, s0, 4);
	aml_name_decl(b, "\\_S5");
	aml_package_ints(b, s5, 4);

	size_t sb = aml_scope_begin(b, "\\_SB");

	/* VMBus: Linux's hv_vmbus binds _HID "VMBUS" (ACPICA upper-cases a "VMBus" _HID anyway) */
	size_t dev = aml_device_begin(b, "VMBS");
	aml_name_decl(b, "_HID");
	aml_string(b, "VMBUS");
	aml_name_decl(b, "_UID");
	aml_integer(b, 0);
	struct restemplate crs = {0};
	res_irq(&crs, cfg->vmbus_irq);
	aml_name_decl(b, "_CRS");
	aml_restemplate(b, &crs);
	aml_block_end(b, dev);

	crs = (struct restemplate){0};
	res_io(&crs, 0x3f8, 8);
	res_irq(&crs, 4);
	aml_isa_device(b, "COM1", "PNP0501", 1, &crs);

	crs = (struct restemplate){0};
	res_io(&crs, 0x70, 2);
	res_irq(&crs, 8);
	aml_isa_device(b, "RTC", "PNP0B00", 0, &crs);

	crs = (struct restemplate){0};
	res_io(&crs, 0x60, 1);
	res_io(&crs, 0x64, 1);
	res_irq(&crs, 1);
	aml_isa_device(b, "PS2K", "PNP0303", 0, &crs);

	aml_block_end(b, sb);
	table_finish(b, start);
}

static struct acpi_gas gas_io(uint16_t port, uint8_t len, uint8_t access_size)
{
	return (struct acpi_gas){
		.space_id = ACPI_GAS_SYSTEM_IO,
		.bit_width = (uint8_t)(len * 8),
		.bit_offset = 0,
		.access_size = access_size,
		.address = port,
	};
}

static void build_fadt(struct blob *b, const struct acpi_config *cfg, uint64_t facs_gpa,
                       uint64_t dsdt_gpa)
{
	struct acpi_fadt f;
	memset(&f, 0, sizeof(f));
	table_header(&f.header, "FACP", sizeof(f), ACPI_FADT_REVISION);
	f.minor_revision = ACPI_FADT_MINOR_REVISION;

	f.x_firmware_ctrl = facs_gpa;
	f.x_dsdt = dsdt_gpa;
	if (facs_gpa + sizeof(struct acpi_facs) <= FOUR_GIB)
		f.firmware_ctrl = (uint32_t)facs_gpa;
	if (dsdt_gpa < FOUR_GIB)
		f.dsdt = (uint32_t)dsdt_gpa;

	f.sci_int = cfg->sci_irq;
	f.smi_cmd = 0;  /* ACPI mode is always on: no ACPI_ENABLE/ACPI_DISABLE handshake */

	f.pm1a_evt_blk = cfg->pm1a_evt_port;
	f.pm1_evt_len = ACPI_PM1_EVT_LEN;
	f.x_pm1a_evt_blk = gas_io(cfg->pm1a_evt_port, ACPI_PM1_EVT_LEN, 0);
	f.pm1a_cnt_blk = cfg->pm1a_cnt_port;
	f.pm1_cnt_len = ACPI_PM1_CNT_LEN;
	f.x_pm1a_cnt_blk = gas_io(cfg->pm1a_cnt_port, ACPI_PM1_CNT_LEN, 0);
	if (cfg->pm_tmr_port) {
		f.pm_tmr_blk = cfg->pm_tmr_port;
		f.pm_tmr_len = ACPI_PM_TMR_LEN;
		f.x_pm_tmr_blk = gas_io(cfg->pm_tmr_port, ACPI_PM_TMR_LEN, 0);
	}

	f.p_lvl2_lat = 101;   /* no C2 */
	f.p_lvl3_lat = 1001;  /* no C3 */
	f.century = cfg->rtc_century;
	f.iapc_boot_arch = ACPI_FADT_BOOT_LEGACY_DEVICES | ACPI_FADT_BOOT_8042 |
	                   ACPI_FADT_BOOT_VGA_NOT_PRESENT;

	f.flags = ACPI_FADT_F_WBINVD | ACPI_FADT_F_PROC_C1 | ACPI_FADT_F_SLP_BUTTON |
	          ACPI_FADT_F_FIX_RTC;
	if (cfg->pm_tmr_port)
		f.flags |= ACPI_FADT_F_TMR_VAL_EXT;
	if (cfg->reset_port) {
		f.flags |= ACPI_FADT_F_RESET_REG_SUP;
		f.reset_reg = gas_io(cfg->reset_port, 1, 1);
		f.reset_value = cfg->reset_value;
	}

	fix_checksum((uint8_t *)&f, sizeof(f), offsetof(struct acpi_table_header, checksum));
	blob_put(b, &f, sizeof(f));
}

static void build_facs(struct blob *b)
{
	struct acpi_facs facs;
	memset(&facs, 0, sizeof(facs));
	memcpy(facs.signature, "FACS", 4);
	facs.length = sizeof(facs);
	facs.version = FACS_VERSION;
	blob_put(b, &facs, sizeof(facs));
}

static void build_madt(struct blob *b, const struct acpi_config *cfg)
{
	size_t start = b->len;
	struct acpi_madt m;
	memset(&m, 0, sizeof(m));
	table_header(&m.header, "APIC", 0, ACPI_MADT_REVISION);
	m.lapic_addr = (uint32_t)cfg->lapic_addr;
	m.flags = ACPI_MADT_PCAT_COMPAT;
	blob_put(b, &m, sizeof(m));

	for (uint32_t i = 0; i < cfg->ncpus && !b->overflow; i++) {
		if (i < ACPI_X2APIC_MIN_ID) {
			struct acpi_madt_lapic e = {
				.type = ACPI_MADT_LAPIC, .length = sizeof(e),
				.processor_uid = (uint8_t)i, .apic_id = (uint8_t)i,
				.flags = ACPI_LAPIC_ENABLED,
			};
			blob_put(b, &e, sizeof(e));
		} else {
			struct acpi_madt_x2apic e = {
				.type = ACPI_MADT_X2APIC, .length = sizeof(e),
				.x2apic_id = i, .flags = ACPI_LAPIC_ENABLED, .processor_uid = i,
			};
			blob_put(b, &e, sizeof(e));
		}
	}

	struct acpi_madt_ioapic io = {
		.type = ACPI_MADT_IOAPIC, .length = sizeof(io),
		.ioapic_id = cfg->ioapic_id, .address = (uint32_t)cfg->ioapic_addr, .gsi_base = 0,
	};
	blob_put(b, &io, sizeof(io));

	/* The PIT's IRQ0 arrives on IOAPIC pin 2; ISA conventions (edge, active high) */
	struct acpi_madt_iso pit = {
		.type = ACPI_MADT_ISO, .length = sizeof(pit), .bus = 0, .source = 0, .gsi = 2,
		.flags = ACPI_MPS_CONFORMS,
	};
	blob_put(b, &pit, sizeof(pit));

	/* The SCI: level-triggered, active high, identity-mapped */
	struct acpi_madt_iso sci = {
		.type = ACPI_MADT_ISO, .length = sizeof(sci), .bus = 0, .source = cfg->sci_irq,
		.gsi = cfg->sci_irq, .flags = ACPI_MPS_ACTIVE_HIGH | ACPI_MPS_LEVEL,
	};
	blob_put(b, &sci, sizeof(sci));

	/* NMI on LINT1 of every processor */
	struct acpi_madt_lapic_nmi nmi = {
		.type = ACPI_MADT_LAPIC_NMI, .length = sizeof(nmi), .processor_uid = 0xff,
		.flags = ACPI_MPS_CONFORMS, .lint = 1,
	};
	blob_put(b, &nmi, sizeof(nmi));
	if (cfg->ncpus > ACPI_X2APIC_MIN_ID) {
		struct acpi_madt_x2apic_nmi x2nmi = {
			.type = ACPI_MADT_X2APIC_NMI, .length = sizeof(x2nmi),
			.flags = ACPI_MPS_CONFORMS, .processor_uid = UINT32_MAX, .lint = 1,
		};
		blob_put(b, &x2nmi, sizeof(x2nmi));
	}

	table_finish(b, start);
}

/* XSDT (64-bit entries) or RSDT (32-bit entries) listing FADT and MADT */
static void build_sdt(struct blob *b, bool wide, uint64_t fadt_gpa, uint64_t madt_gpa)
{
	size_t start = b->len;
	struct acpi_table_header h;
	table_header(&h, wide ? "XSDT" : "RSDT", 0, wide ? XSDT_REVISION : RSDT_REVISION);
	blob_put(b, &h, sizeof(h));
	const uint64_t entries[] = {fadt_gpa, madt_gpa};
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
		if (wide) {
			blob_put(b, &entries[i], sizeof(uint64_t));
		} else {
			uint32_t e = (uint32_t)entries[i];
			blob_put(b, &e, sizeof(e));
		}
	}
	table_finish(b, start);
}

static void build_rsdp(struct blob *b, uint64_t xsdt_gpa, uint64_t rsdt_gpa)
{
	struct acpi_rsdp r;
	memset(&r, 0, sizeof(r));
	memcpy(r.signature, "RSD PTR ", 8);
	memcpy(r.oem_id, ACPI_OEM_ID, sizeof(r.oem_id));
	r.revision = RSDP_REVISION;
	r.rsdt_address = (uint32_t)rsdt_gpa;
	r.length = sizeof(r);
	r.xsdt_address = xsdt_gpa;
	fix_checksum((uint8_t *)&r, 20, offsetof(struct acpi_rsdp, checksum));
	fix_checksum((uint8_t *)&r, sizeof(r), offsetof(struct acpi_rsdp, extended_checksum));
	blob_put(b, &r, sizeof(r));
}

void acpi_config_default(struct acpi_config *cfg, uint32_t ncpus)
{
	*cfg = (struct acpi_config){
		.ncpus = ncpus,
		.lapic_addr = ACPI_LAPIC_ADDR,
		.ioapic_addr = ACPI_IOAPIC_ADDR,
		.ioapic_id = ACPI_IOAPIC_ID,
		.pm1a_evt_port = ACPI_PM1A_EVT_PORT,
		.pm1a_cnt_port = ACPI_PM1A_CNT_PORT,
		.pm_tmr_port = ACPI_PM_TMR_PORT,
		.reset_port = ACPI_RESET_PORT,
		.reset_value = ACPI_RESET_VALUE,
		.sci_irq = ACPI_SCI_IRQ,
		.vmbus_irq = ACPI_VMBUS_IRQ,
		.rtc_century = ACPI_RTC_CENTURY_REG,
	};
}

uint64_t acpi_build_tables(void *buf, size_t buf_size, uint64_t base_gpa,
                           const struct acpi_config *cfg, size_t *used)
{
	if (used)
		*used = 0;
	if (!buf || !cfg || cfg->ncpus == 0 || cfg->lapic_addr >= FOUR_GIB ||
	    cfg->ioapic_addr >= FOUR_GIB || base_gpa > UINT64_MAX - buf_size)
		return 0;

	struct blob b = {.buf = buf, .cap = buf_size};

	blob_align(&b, base_gpa, 64);
	uint64_t facs_gpa = base_gpa + b.len;
	build_facs(&b);

	blob_align(&b, base_gpa, 8);
	uint64_t dsdt_gpa = base_gpa + b.len;
	build_dsdt(&b, cfg);

	blob_align(&b, base_gpa, 8);
	uint64_t fadt_gpa = base_gpa + b.len;
	build_fadt(&b, cfg, facs_gpa, dsdt_gpa);

	blob_align(&b, base_gpa, 8);
	uint64_t madt_gpa = base_gpa + b.len;
	build_madt(&b, cfg);

	blob_align(&b, base_gpa, 8);
	uint64_t xsdt_gpa = base_gpa + b.len;
	build_sdt(&b, true, fadt_gpa, madt_gpa);

	/* The RSDT only makes sense when everything it points at is below 4 GiB */
	uint64_t rsdt_gpa = 0;
	if (madt_gpa < FOUR_GIB && fadt_gpa < FOUR_GIB) {
		blob_align(&b, base_gpa, 8);
		rsdt_gpa = base_gpa + b.len;
		build_sdt(&b, false, fadt_gpa, madt_gpa);
		if (rsdt_gpa >= FOUR_GIB)
			rsdt_gpa = 0;
	}

	blob_align(&b, base_gpa, 16);
	uint64_t rsdp_gpa = base_gpa + b.len;
	build_rsdp(&b, xsdt_gpa, rsdt_gpa);

	if (b.overflow)
		return 0;
	if (used)
		*used = b.len;
	return rsdp_gpa;
}
