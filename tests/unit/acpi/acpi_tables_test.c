/* Unit tests for devices/acpi.c: table layout, pointers, checksums, MADT contents, bounds,
 * AML encodings, and (when iasl is installed) a disassemble/recompile round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devices/acpi.h"

#define BASE_GPA  ACPI_TABLES_GPA
#define BUF_SIZE  ACPI_TABLES_MAX
#define IASL      "/usr/bin/iasl"

/* A built set of tables and where each one landed */
struct built {
	uint8_t *buf;
	size_t   size;
	size_t   used;
	uint64_t base;
	uint64_t rsdp_gpa;
	const struct acpi_rsdp *rsdp;
	const struct acpi_table_header *xsdt, *rsdt, *dsdt, *madt;
	const struct acpi_fadt *fadt;
	const struct acpi_facs *facs;
};

/* Pointer into the buffer for [gpa, gpa + len), failing the test when it is not inside. */
static const void *at(const struct built *t, uint64_t gpa, size_t len)
{
	assert_true(gpa >= t->base);
	assert_true(gpa - t->base <= t->used);
	assert_true(len <= t->used - (gpa - t->base));
	return t->buf + (gpa - t->base);
}

/* A table at gpa with the given signature: inside the buffer, checksum 0. */
static const struct acpi_table_header *table_at(const struct built *t, uint64_t gpa,
                                                const char *sig)
{
	const struct acpi_table_header *h = at(t, gpa, sizeof(*h));
	assert_memory_equal(h->signature, sig, 4);
	assert_true(h->length >= sizeof(*h));
	at(t, gpa, h->length);
	assert_int_equal(acpi_checksum(h, h->length), 0);
	assert_memory_equal(h->oem_id, ACPI_OEM_ID, 6);
	return h;
}

/* Builds and follows every pointer from the RSDP down, checking each table on the way. */
static void build(struct built *t, uint32_t ncpus, uint64_t base)
{
	struct acpi_config cfg;
	acpi_config_default(&cfg, ncpus);
	memset(t, 0, sizeof(*t));
	t->size = BUF_SIZE;
	t->buf = malloc(t->size);
	assert_non_null(t->buf);
	t->base = base;
	t->rsdp_gpa = acpi_build_tables(t->buf, t->size, base, &cfg, &t->used);
	assert_int_not_equal(t->rsdp_gpa, 0);
	assert_true(t->used > 0 && t->used <= t->size);

	assert_int_equal(t->rsdp_gpa % 16, 0);
	t->rsdp = at(t, t->rsdp_gpa, sizeof(struct acpi_rsdp));
	assert_memory_equal(t->rsdp->signature, "RSD PTR ", 8);
	assert_int_equal(t->rsdp->revision, 2);
	assert_int_equal(t->rsdp->length, 36);
	assert_int_equal(acpi_checksum(t->rsdp, 20), 0);
	assert_int_equal(acpi_checksum(t->rsdp, 36), 0);

	t->xsdt = table_at(t, t->rsdp->xsdt_address, "XSDT");
	assert_int_equal(t->xsdt->length, 36 + 2 * 8);
	uint64_t xent[2];
	memcpy(xent, (const uint8_t *)t->xsdt + 36, sizeof(xent));

	if (base < (1ull << 32)) {
		assert_int_not_equal(t->rsdp->rsdt_address, 0);
		t->rsdt = table_at(t, t->rsdp->rsdt_address, "RSDT");
		assert_int_equal(t->rsdt->length, 36 + 2 * 4);
		uint32_t rent[2];
		memcpy(rent, (const uint8_t *)t->rsdt + 36, sizeof(rent));
		assert_int_equal(rent[0], xent[0]);
		assert_int_equal(rent[1], xent[1]);
	} else {
		assert_int_equal(t->rsdp->rsdt_address, 0);
	}

	t->fadt = (const struct acpi_fadt *)table_at(t, xent[0], "FACP");
	assert_int_equal(t->fadt->header.length, sizeof(struct acpi_fadt));
	assert_int_equal(t->fadt->header.revision, 6);
	t->madt = table_at(t, xent[1], "APIC");

	t->dsdt = table_at(t, t->fadt->x_dsdt, "DSDT");
	assert_int_equal(t->dsdt->revision, 2);
	assert_int_equal(t->fadt->x_firmware_ctrl % 64, 0);
	t->facs = at(t, t->fadt->x_firmware_ctrl, sizeof(struct acpi_facs));
	assert_memory_equal(t->facs->signature, "FACS", 4);
	assert_int_equal(t->facs->length, 64);
	if (base < (1ull << 32)) {
		assert_int_equal(t->fadt->dsdt, t->fadt->x_dsdt);
		assert_int_equal(t->fadt->firmware_ctrl, t->fadt->x_firmware_ctrl);
	}
}

static void unbuild(struct built *t)
{
	free(t->buf);
}

/* ---- Layout, pointers and checksums ---- */

static void test_pointers_and_checksums(void **state)
{
	(void)state;
	const uint32_t counts[] = {1, 2, 64, 254, 255, 300};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct built t;
		build(&t, counts[i], BASE_GPA);
		unbuild(&t);
	}
}

static void test_unaligned_and_high_base(void **state)
{
	(void)state;
	struct built t;
	build(&t, 4, BASE_GPA + 4);  /* FACS and RSDP still land aligned (checked in build) */
	unbuild(&t);
	build(&t, 4, 0x100000003ull);  /* above 4 GiB: no RSDT, no 32-bit FADT pointers */
	assert_int_equal(t.fadt->dsdt, 0);
	assert_int_equal(t.fadt->firmware_ctrl, 0);
	unbuild(&t);
}

static void test_deterministic(void **state)
{
	(void)state;
	struct built a, b;
	build(&a, 8, BASE_GPA);
	build(&b, 8, BASE_GPA);
	assert_int_equal(a.used, b.used);
	assert_memory_equal(a.buf, b.buf, a.used);
	unbuild(&a);
	unbuild(&b);
}

/* ---- FADT ---- */

static void test_fadt_fields(void **state)
{
	(void)state;
	struct built t;
	build(&t, 2, BASE_GPA);
	const struct acpi_fadt *f = t.fadt;

	assert_int_equal(f->sci_int, ACPI_SCI_IRQ);
	assert_int_equal(f->smi_cmd, 0);
	assert_int_equal(f->acpi_enable, 0);
	assert_int_equal(f->acpi_disable, 0);
	assert_int_equal(f->pm1a_evt_blk, ACPI_PM1A_EVT_PORT);
	assert_int_equal(f->pm1_evt_len, 4);
	assert_int_equal(f->pm1a_cnt_blk, ACPI_PM1A_CNT_PORT);
	assert_int_equal(f->pm1_cnt_len, 2);
	assert_int_equal(f->pm_tmr_blk, ACPI_PM_TMR_PORT);
	assert_int_equal(f->pm_tmr_len, 4);
	assert_int_equal(f->pm1b_evt_blk, 0);
	assert_int_equal(f->pm1b_cnt_blk, 0);
	assert_int_equal(f->gpe0_blk, 0);

	/* X_ blocks agree with the 32-bit ones */
	assert_int_equal(f->x_pm1a_evt_blk.space_id, ACPI_GAS_SYSTEM_IO);
	assert_int_equal(f->x_pm1a_evt_blk.bit_width, 32);
	assert_int_equal(f->x_pm1a_evt_blk.address, ACPI_PM1A_EVT_PORT);
	assert_int_equal(f->x_pm1a_cnt_blk.space_id, ACPI_GAS_SYSTEM_IO);
	assert_int_equal(f->x_pm1a_cnt_blk.bit_width, 16);
	assert_int_equal(f->x_pm1a_cnt_blk.address, ACPI_PM1A_CNT_PORT);
	assert_int_equal(f->x_pm_tmr_blk.bit_width, 32);
	assert_int_equal(f->x_pm_tmr_blk.address, ACPI_PM_TMR_PORT);

	assert_true(f->flags & ACPI_FADT_F_RESET_REG_SUP);
	assert_int_equal(f->reset_reg.space_id, ACPI_GAS_SYSTEM_IO);
	assert_int_equal(f->reset_reg.bit_width, 8);
	assert_int_equal(f->reset_reg.bit_offset, 0);
	assert_int_equal(f->reset_reg.address, ACPI_RESET_PORT);
	assert_int_equal(f->reset_value, ACPI_RESET_VALUE);

	assert_false(f->flags & ACPI_FADT_F_HW_REDUCED_ACPI);
	assert_false(f->flags & ACPI_FADT_F_USE_PLATFORM_CLOCK);
	assert_false(f->flags & ACPI_FADT_F_PWR_BUTTON);  /* fixed power button present */
	assert_true(f->flags & ACPI_FADT_F_SLP_BUTTON);   /* no sleep button */
	assert_true(f->flags & ACPI_FADT_F_WBINVD);
	assert_true(f->flags & ACPI_FADT_F_PROC_C1);
	assert_true(f->flags & ACPI_FADT_F_TMR_VAL_EXT);

	assert_true(f->iapc_boot_arch & ACPI_FADT_BOOT_8042);
	assert_true(f->iapc_boot_arch & ACPI_FADT_BOOT_LEGACY_DEVICES);
	assert_true(f->iapc_boot_arch & ACPI_FADT_BOOT_VGA_NOT_PRESENT);
	assert_false(f->iapc_boot_arch & ACPI_FADT_BOOT_MSI_NOT_SUPPORTED);
	assert_false(f->iapc_boot_arch & ACPI_FADT_BOOT_NO_CMOS_RTC);
	assert_int_equal(f->century, ACPI_RTC_CENTURY_REG);
	unbuild(&t);
}

static void test_fadt_optional_blocks_absent(void **state)
{
	(void)state;
	struct acpi_config cfg;
	acpi_config_default(&cfg, 1);
	cfg.pm_tmr_port = 0;
	cfg.reset_port = 0;
	uint8_t *buf = malloc(BUF_SIZE);
	assert_non_null(buf);
	size_t used;
	uint64_t rsdp = acpi_build_tables(buf, BUF_SIZE, BASE_GPA, &cfg, &used);
	assert_int_not_equal(rsdp, 0);
	const struct acpi_rsdp *r = (const void *)(buf + (rsdp - BASE_GPA));
	uint64_t fadt_gpa;
	memcpy(&fadt_gpa, buf + (r->xsdt_address - BASE_GPA) + 36, 8);
	const struct acpi_fadt *f = (const void *)(buf + (fadt_gpa - BASE_GPA));
	assert_int_equal(acpi_checksum(f, sizeof(*f)), 0);
	assert_int_equal(f->pm_tmr_blk, 0);
	assert_int_equal(f->pm_tmr_len, 0);
	assert_int_equal(f->x_pm_tmr_blk.address, 0);
	assert_false(f->flags & ACPI_FADT_F_TMR_VAL_EXT);
	assert_false(f->flags & ACPI_FADT_F_RESET_REG_SUP);
	assert_int_equal(f->reset_reg.address, 0);
	free(buf);
}

/* ---- MADT ---- */

struct madt_counts {
	unsigned lapic, x2apic, ioapic, iso, nmi, x2nmi, other;
};

static struct madt_counts walk_madt(const struct acpi_table_header *madt, uint32_t ncpus)
{
	struct madt_counts c = {0};
	const struct acpi_madt *m = (const void *)madt;
	assert_int_equal(m->lapic_addr, ACPI_LAPIC_ADDR);
	assert_int_equal(m->flags, ACPI_MADT_PCAT_COMPAT);

	const uint8_t *p = (const uint8_t *)madt + sizeof(struct acpi_madt);
	const uint8_t *end = (const uint8_t *)madt + madt->length;
	bool saw_irq0 = false, saw_sci = false;
	while (p < end) {
		assert_true(end - p >= 2);
		uint8_t type = p[0], len = p[1];
		assert_true(len >= 2 && len <= end - p);
		switch (type) {
		case ACPI_MADT_LAPIC: {
			struct acpi_madt_lapic e;
			assert_int_equal(len, sizeof(e));
			memcpy(&e, p, sizeof(e));
			assert_int_equal(e.apic_id, c.lapic);  /* ids 0, 1, 2 ... in order */
			assert_int_equal(e.processor_uid, c.lapic);
			assert_int_equal(e.flags, ACPI_LAPIC_ENABLED);
			c.lapic++;
			break;
		}
		case ACPI_MADT_X2APIC: {
			struct acpi_madt_x2apic e;
			assert_int_equal(len, sizeof(e));
			memcpy(&e, p, sizeof(e));
			assert_int_equal(e.x2apic_id, ACPI_X2APIC_MIN_ID + c.x2apic);
			assert_int_equal(e.processor_uid, ACPI_X2APIC_MIN_ID + c.x2apic);
			assert_int_equal(e.flags, ACPI_LAPIC_ENABLED);
			c.x2apic++;
			break;
		}
		case ACPI_MADT_IOAPIC: {
			struct acpi_madt_ioapic e;
			assert_int_equal(len, sizeof(e));
			memcpy(&e, p, sizeof(e));
			assert_int_equal(e.address, ACPI_IOAPIC_ADDR);
			assert_int_equal(e.gsi_base, 0);
			assert_int_equal(e.ioapic_id, ACPI_IOAPIC_ID);
			c.ioapic++;
			break;
		}
		case ACPI_MADT_ISO: {
			struct acpi_madt_iso e;
			assert_int_equal(len, sizeof(e));
			memcpy(&e, p, sizeof(e));
			assert_int_equal(e.bus, 0);
			if (e.source == 0) {
				assert_int_equal(e.gsi, 2);
				assert_int_equal(e.flags & 0xc, 0);  /* conforms to ISA: edge */
				saw_irq0 = true;
			} else if (e.source == ACPI_SCI_IRQ) {
				assert_int_equal(e.gsi, ACPI_SCI_IRQ);
				assert_int_equal(e.flags, ACPI_MPS_ACTIVE_HIGH | ACPI_MPS_LEVEL);
				saw_sci = true;
			} else {
				fail_msg("unexpected override for IRQ %u", e.source);
			}
			c.iso++;
			break;
		}
		case ACPI_MADT_LAPIC_NMI: {
			struct acpi_madt_lapic_nmi e;
			assert_int_equal(len, sizeof(e));
			memcpy(&e, p, sizeof(e));
			assert_int_equal(e.processor_uid, 0xff);
			assert_int_equal(e.lint, 1);
			c.nmi++;
			break;
		}
		case ACPI_MADT_X2APIC_NMI: {
			struct acpi_madt_x2apic_nmi e;
			assert_int_equal(len, sizeof(e));
			memcpy(&e, p, sizeof(e));
			assert_int_equal(e.processor_uid, UINT32_MAX);
			assert_int_equal(e.lint, 1);
			c.x2nmi++;
			break;
		}
		default:
			c.other++;
			break;
		}
		p += len;
	}
	assert_ptr_equal(p, end);
	assert_true(saw_irq0);
	assert_true(saw_sci);
	assert_int_equal(c.lapic + c.x2apic, ncpus);
	return c;
}

static void check_madt(uint32_t ncpus)
{
	struct built t;
	build(&t, ncpus, BASE_GPA);
	struct madt_counts c = walk_madt(t.madt, ncpus);
	uint32_t want_lapic = ncpus < ACPI_X2APIC_MIN_ID ? ncpus : ACPI_X2APIC_MIN_ID;
	assert_int_equal(c.lapic, want_lapic);
	assert_int_equal(c.x2apic, ncpus - want_lapic);
	assert_int_equal(c.ioapic, 1);
	assert_int_equal(c.iso, 2);
	assert_int_equal(c.nmi, 1);
	assert_int_equal(c.x2nmi, ncpus > ACPI_X2APIC_MIN_ID ? 1 : 0);
	assert_int_equal(c.other, 0);
	unbuild(&t);
}

static void test_madt_1(void **state) { (void)state; check_madt(1); }
static void test_madt_2(void **state) { (void)state; check_madt(2); }
static void test_madt_64(void **state) { (void)state; check_madt(64); }
static void test_madt_255(void **state) { (void)state; check_madt(255); }
static void test_madt_288(void **state) { (void)state; check_madt(288); }

/* ---- Bounds and bad input ---- */

static void test_too_small_never_overruns(void **state)
{
	(void)state;
	struct acpi_config cfg;
	acpi_config_default(&cfg, 16);
	uint8_t *big = malloc(BUF_SIZE);
	assert_non_null(big);
	size_t need;
	assert_int_not_equal(acpi_build_tables(big, BUF_SIZE, BASE_GPA, &cfg, &need), 0);
	free(big);

	/* Exactly sized heap buffers: ASan catches any byte written past the end */
	for (size_t size = 0; size < need; size++) {
		uint8_t *buf = malloc(size ? size : 1);
		assert_non_null(buf);
		size_t used = 12345;
		assert_int_equal(acpi_build_tables(buf, size, BASE_GPA, &cfg, &used), 0);
		assert_int_equal(used, 0);
		free(buf);
	}

	/* and a guard pattern past the limit stays untouched without ASan too */
	uint8_t guard[4096];
	for (size_t size = 0; size < need && size < sizeof(guard); size += 7) {
		memset(guard, 0xa5, sizeof(guard));
		assert_int_equal(acpi_build_tables(guard, size, BASE_GPA, &cfg, NULL), 0);
		for (size_t i = size; i < sizeof(guard); i++)
			assert_int_equal(guard[i], 0xa5);
	}

	uint8_t *exact = malloc(need);
	assert_non_null(exact);
	size_t used;
	assert_int_not_equal(acpi_build_tables(exact, need, BASE_GPA, &cfg, &used), 0);
	assert_int_equal(used, need);
	free(exact);
}

static void test_bad_config(void **state)
{
	(void)state;
	uint8_t buf[4096];
	struct acpi_config cfg;
	acpi_config_default(&cfg, 0);
	assert_int_equal(acpi_build_tables(buf, sizeof(buf), BASE_GPA, &cfg, NULL), 0);
	acpi_config_default(&cfg, 1);
	cfg.lapic_addr = 1ull << 32;
	assert_int_equal(acpi_build_tables(buf, sizeof(buf), BASE_GPA, &cfg, NULL), 0);
	acpi_config_default(&cfg, 1);
	assert_int_equal(acpi_build_tables(buf, sizeof(buf), UINT64_MAX - 16, &cfg, NULL), 0);
	assert_int_equal(acpi_build_tables(NULL, sizeof(buf), BASE_GPA, &cfg, NULL), 0);
	assert_int_equal(acpi_build_tables(buf, sizeof(buf), BASE_GPA, NULL, NULL), 0);
}

/* ---- AML encodings ---- */

static size_t decode_pkglength(const uint8_t *p, size_t *nbytes)
{
	size_t n = (p[0] >> 6) + 1;
	*nbytes = n;
	if (n == 1)
		return p[0] & 0x3f;
	size_t v = p[0] & 0x0f;
	for (size_t i = 1; i < n; i++)
		v |= (size_t)p[i] << (4 + 8 * (i - 1));
	return v;
}

static void check_pkglength(size_t body, size_t want_n)
{
	uint8_t enc[4] = {0};
	size_t n = acpi_aml_pkglength(enc, body);
	assert_int_equal(n, want_n);
	size_t nb;
	assert_int_equal(decode_pkglength(enc, &nb), body + n);
	assert_int_equal(nb, n);
	if (n > 1)
		assert_int_equal(enc[0] & 0x30, 0);  /* reserved bits */
}

static void test_pkglength(void **state)
{
	(void)state;
	check_pkglength(0, 1);
	check_pkglength(61, 1);
	check_pkglength(62, 1);          /* 63: the largest one-byte length */
	check_pkglength(63, 2);          /* 64 won't fit: 63 + 2 = 65 */
	check_pkglength(4093, 2);        /* 4095: the largest two-byte length */
	check_pkglength(4094, 3);
	check_pkglength(0xfffff - 3, 3); /* 2^20 - 1 */
	check_pkglength(0xfffff - 2, 4);
	check_pkglength(0xfffffff - 4, 4);
	uint8_t enc[4];
	assert_int_equal(acpi_aml_pkglength(enc, 0xfffffff - 3), 0);
	assert_int_equal(acpi_aml_pkglength(enc, SIZE_MAX), 0);

	/* exact bytes for two known values */
	assert_int_equal(acpi_aml_pkglength(enc, 9), 1);
	assert_int_equal(enc[0], 10);
	assert_int_equal(acpi_aml_pkglength(enc, 100), 2);  /* 102 = 0x66 */
	assert_int_equal(enc[0], 0x46);
	assert_int_equal(enc[1], 0x06);
}

static void test_eisa_id(void **state)
{
	(void)state;
	assert_int_equal(acpi_eisa_id("PNP0501"), 0x0105d041);
	assert_int_equal(acpi_eisa_id("PNP0303"), 0x0303d041);
	assert_int_equal(acpi_eisa_id("PNP0B00"), 0x000bd041);
	assert_int_equal(acpi_eisa_id("PNP050"), 0);
	assert_int_equal(acpi_eisa_id("pnp0501"), 0);
	assert_int_equal(acpi_eisa_id("PNP05G1"), 0);
}

static bool contains(const void *hay, size_t n, const void *needle, size_t m)
{
	return memmem(hay, n, needle, m) != NULL;
}

static void test_dsdt_contents(void **state)
{
	(void)state;
	struct built t;
	build(&t, 2, BASE_GPA);
	const uint8_t *d = (const uint8_t *)t.dsdt;
	size_t n = t.dsdt->length;
	/* Name (\_S5, Package (4) { 5, 5, 0, 0 }) */
	const uint8_t s5[] = {0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04,
	                      0x0a, ACPI_SLP_TYP_S5, 0x0a, ACPI_SLP_TYP_S5, 0x00, 0x00};
	assert_true(contains(d, n, s5, sizeof(s5)));
	/* Name (_HID, "VMBUS") */
	const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0d, 'V', 'M', 'B', 'U', 'S', 0};
	assert_true(contains(d, n, hid, sizeof(hid)));
	/* IRQNoFlags () { 5 } */
	const uint8_t irq5[] = {0x22, 1u << ACPI_VMBUS_IRQ, 0x00};
	assert_true(contains(d, n, irq5, sizeof(irq5)));
	assert_true(contains(d, n, "COM1", 4));
	assert_true(contains(d, n, "RTC_", 4));
	assert_true(contains(d, n, "PS2K", 4));
	unbuild(&t);
}

/* ---- iasl: the tables disassemble cleanly and the DSDT recompiles to the same AML ---- */

static int run(const char *dir, const char *cmd)
{
	char line[1024];
	snprintf(line, sizeof(line), "cd '%s' && %s >iasl.log 2>&1", dir, cmd);
	int rc = system(line);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return s;
}

static void spill(const char *dir, const char *name, const void *data, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void show_log(const char *dir)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/iasl.log", dir);
	char *log = slurp(path, NULL);
	if (log) {
		print_message("%s\n", log);
		free(log);
	}
}

/* test_iasl's scratch state, released by its teardown even when an assertion fails */
static char iasl_dir[64];
static struct built iasl_tables;

static int iasl_teardown(void **state)
{
	(void)state;
	if (iasl_dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", iasl_dir);
		if (system(cmd) != 0)
			return -1;
		iasl_dir[0] = '\0';
	}
	free(iasl_tables.buf);
	iasl_tables.buf = NULL;
	return 0;
}

/* Runs iasl in iasl_dir; on failure prints its log and fails the test. */
static void iasl(const char *args)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), IASL " %s", args);
	int rc = run(iasl_dir, cmd);
	if (rc != 0) {
		show_log(iasl_dir);
		fail_msg("iasl %s: exit %d", args, rc);
	}
}

static void test_iasl(void **state)
{
	(void)state;
	if (access(IASL, X_OK) != 0) {
		print_message("SKIP: %s not found (install acpica-tools)\n", IASL);
		skip();
	}
	struct built *t = &iasl_tables;
	build(t, 4, BASE_GPA);
	snprintf(iasl_dir, sizeof(iasl_dir), "/tmp/viridian-acpi-XXXXXX");
	assert_non_null(mkdtemp(iasl_dir));

	const struct {
		const char *name;
		const void *table;
	} tables[] = {
		{"dsdt", t->dsdt},
		{"facp", t->fadt},
		{"apic", t->madt},
	};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		const char *name = tables[i].name;
		const struct acpi_table_header *h = tables[i].table;
		char file[32], args[128], path[512];

		/* disassembles, and the listing carries no complaint */
		snprintf(file, sizeof(file), "%s.dat", name);
		spill(iasl_dir, file, h, h->length);
		snprintf(args, sizeof(args), "-d %s.dat", name);
		iasl(args);
		snprintf(path, sizeof(path), "%s/%s.dsl", iasl_dir, name);
		char *dsl = slurp(path, NULL);
		assert_non_null(dsl);
		if (strstr(dsl, "Error") || strstr(dsl, "Warning") || strstr(dsl, "Invalid"))
			fail_msg("%s.dsl:\n%s", name, dsl);
		if (i == 0) {
			assert_non_null(strstr(dsl, "Name (_HID, \"VMBUS\")"));
			assert_non_null(strstr(dsl, "Name (\\_S5, Package (0x04)"));
			assert_non_null(strstr(dsl, "EisaId (\"PNP0501\")"));
			assert_non_null(strstr(dsl, "EisaId (\"PNP0B00\")"));
			assert_non_null(strstr(dsl, "EisaId (\"PNP0303\")"));
			assert_non_null(strstr(dsl, "IRQNoFlags"));
			assert_non_null(strstr(dsl, "0x03F8"));
		}
		free(dsl);

		/* and recompiles, without errors or optimizations, to the very same bytes after the
		 * header (whose compiler id and checksum differ). iasl's compiler insists a string
		 * _HID be 7 or 8 characters (error 6033); "VMBUS" is what Linux matches, and the
		 * ACPICA interpreter the kernel runs accepts it, so that one error is waived. */
		snprintf(args, sizeof(args), "-oa -vw 6033 -p re%s %s.dsl", name, name);
		iasl(args);
		snprintf(path, sizeof(path), "%s/re%s.aml", iasl_dir, name);
		size_t len;
		char *aml = slurp(path, &len);
		assert_non_null(aml);
		assert_int_equal(len, h->length);
		assert_memory_equal(aml + sizeof(*h), (const uint8_t *)h + sizeof(*h),
		                    len - sizeof(*h));
		free(aml);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pointers_and_checksums),
		cmocka_unit_test(test_unaligned_and_high_base),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_fadt_fields),
		cmocka_unit_test(test_fadt_optional_blocks_absent),
		cmocka_unit_test(test_madt_1),
		cmocka_unit_test(test_madt_2),
		cmocka_unit_test(test_madt_64),
		cmocka_unit_test(test_madt_255),
		cmocka_unit_test(test_madt_288),
		cmocka_unit_test(test_too_small_never_overruns),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_pkglength),
		cmocka_unit_test(test_eisa_id),
		cmocka_unit_test(test_dsdt_contents),
		cmocka_unit_test_teardown(test_iasl, iasl_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
