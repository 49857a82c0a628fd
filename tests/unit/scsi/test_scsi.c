/* The SCSI target (vsp/scsi.c) without VMBus: CDB parsing, answers, sense data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vsp/scsi.h"

static struct scsi_disk d512 = { .blocks = 2048, .logical_sector = 512, .physical_sector = 4096,
				 .thin = true, .unmap_granularity = 8, .max_transfer = 1 << 20,
				 .id = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 } };
static struct scsi_disk d4k = { .blocks = 0x100000001ull, .logical_sector = 4096, .physical_sector = 4096,
				.thin = true, .unmap_granularity = 1, .max_transfer = 1 << 20 };
static struct scsi_disk dro = { .blocks = 100, .logical_sector = 512, .physical_sector = 512,
				.read_only = true, .max_transfer = 1 << 20 };
static struct scsi_target tgt = { .nluns = 3, .luns = { &d512, &d4k, &dro } };

static uint8_t buf[4096];
static struct scsi_result r;

static void exec(uint32_t lun, const uint8_t *cdb, uint32_t len, uint32_t xfer)
{
	memset(buf, 0xEE, sizeof(buf));
	scsi_execute(&tgt, lun, cdb, len, xfer, buf, sizeof(buf), &r);
}

static void assert_sense(uint8_t key, uint16_t asc)
{
	assert_int_equal(r.action, SCSI_DONE);
	assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(r.sense_len, 18);
	assert_int_equal(r.sense[0], 0x70);
	assert_int_equal(r.sense[2], key);
	assert_int_equal(r.sense[7], 10);
	assert_int_equal(r.sense[12] << 8 | r.sense[13], asc);
}

static void assert_good(uint32_t len)
{
	assert_int_equal(r.action, SCSI_DONE);
	assert_int_equal(r.status, SCSI_STATUS_GOOD);
	assert_int_equal(r.data_in_len, len);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void test_inquiry(void **s)
{
	(void)s;
	uint8_t cdb[6] = { 0x12, 0, 0, 0, 255, 0 };
	exec(0, cdb, 6, 255);
	assert_good(36);
	assert_int_equal(buf[0], 0);
	assert_int_equal(buf[2], 6);
	assert_memory_equal(buf + 8, "Msft    Virtual Disk    ", 24);
	cdb[4] = 5; /* allocation length cuts */
	exec(0, cdb, 6, 255);
	assert_good(5);
	exec(0, cdb, 6, 3); /* so does the transfer length */
	assert_good(3);
	/* absent LUN: peripheral qualifier 3 (Linux storvsc turns INQUIRY errors into success) */
	cdb[4] = 36;
	exec(7, cdb, 6, 36);
	assert_good(36);
	assert_int_equal(buf[0], 0x7F);
	/* page code without EVPD */
	cdb[2] = 0x80;
	exec(0, cdb, 6, 36);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void test_vpd(void **s)
{
	(void)s;
	uint8_t cdb[6] = { 0x12, 1, 0x00, 1, 0, 0 };
	exec(0, cdb, 6, 256);
	assert_good(10);
	assert_memory_equal(buf + 4, "\x00\x80\x83\xB0\xB1\xB2", 6);
	cdb[2] = 0x80;
	exec(0, cdb, 6, 256);
	assert_good(36);
	assert_memory_equal(buf + 4, "0102030405060708090A0B0C0D0E0F10", 32);
	cdb[2] = 0x83;
	exec(0, cdb, 6, 256);
	assert_int_equal(r.status, 0);
	assert_int_equal(buf[5], 0x03);  /* NAA */
	assert_int_equal(buf[8] >> 4, 6);
	cdb[2] = 0xB0;
	exec(0, cdb, 6, 256);
	assert_good(64);
	assert_int_equal(be32(buf + 8), 2048);      /* max transfer: 1 MiB of 512 B blocks */
	assert_int_equal(be32(buf + 24), SCSI_MAX_UNMAP_DESCRIPTORS);
	assert_int_equal(be32(buf + 28), 8);        /* unmap granularity */
	cdb[2] = 0xB1;
	exec(0, cdb, 6, 256);
	assert_int_equal(buf[5], 1);                /* non-rotating */
	cdb[2] = 0xB2;
	exec(0, cdb, 6, 256);
	assert_int_equal(buf[5] & 0x80, 0x80);      /* LBPU */
	exec(2, cdb, 6, 256);                       /* read-only: no unmap */
	assert_int_equal(buf[5], 0);
	cdb[2] = 0x89;
	exec(0, cdb, 6, 256);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void test_capacity(void **s)
{
	(void)s;
	uint8_t rc10[10] = { 0x25 };
	exec(0, rc10, 10, 8);
	assert_good(8);
	assert_int_equal(be32(buf), 2047);
	assert_int_equal(be32(buf + 4), 512);
	exec(1, rc10, 10, 8); /* more than 2^32 blocks: saturates */
	assert_int_equal(be32(buf), 0xFFFFFFFFu);
	uint8_t rc16[16] = { 0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32 };
	exec(1, rc16, 16, 32);
	assert_good(32);
	assert_int_equal(be32(buf), 1);
	assert_int_equal(be32(buf + 4), 0);
	assert_int_equal(be32(buf + 8), 4096);
	exec(0, rc16, 16, 32);
	assert_int_equal(buf[13], 3);               /* 8 logical per physical */
	assert_int_equal(buf[14] & 0x80, 0x80);     /* LBPME */
	rc16[1] = 0x11;
	exec(0, rc16, 16, 32);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void test_read_write(void **s)
{
	(void)s;
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 10, 0, 0, 4, 0 };
	exec(0, r10, 10, 2048);
	assert_int_equal(r.action, SCSI_READ);
	assert_int_equal(r.offset, 5120);
	assert_int_equal(r.length, 2048);
	exec(0, r10, 10, 1024); /* longer than the transfer length */
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	uint8_t w16[16] = { 0x8A, 0x08, 0, 0, 0, 0, 0, 0, 0x07, 0xFF, 0, 0, 0, 1 };
	exec(0, w16, 16, 512);
	assert_int_equal(r.action, SCSI_WRITE);
	assert_true(r.fua);
	assert_int_equal(r.offset, 2047 * 512);
	w16[13] = 2; /* one block past the end */
	exec(0, w16, 16, 1024);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	uint8_t huge[16] = { 0x88, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1 };
	exec(0, huge, 16, 512); /* LBA overflow */
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	uint8_t r6[6] = { 0x08, 0, 0, 0, 0, 0 }; /* 0 blocks means 256 */
	exec(0, r6, 6, 1 << 20);
	assert_int_equal(r.action, SCSI_READ);
	assert_int_equal(r.length, 256 * 512);
	uint8_t r12[12] = { 0xA8, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 }; /* 4096 blocks > 1 MiB max */
	exec(0, r12, 12, 4 << 20);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	exec(2, w10, 10, 512);
	assert_sense(SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	w10[8] = 0; /* zero blocks: nothing to do */
	exec(0, w10, 10, 0);
	assert_good(0);
	exec(0, w10, 9, 0); /* CDB shorter than its group */
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	exec(7, r10, 10, 2048);
	assert_int_equal(r.action, SCSI_NO_LUN);
}

static void test_mode_sense(void **s)
{
	(void)s;
	uint8_t ms6[6] = { 0x1A, 0, 0x3F, 0, 255, 0 };
	exec(0, ms6, 6, 255);
	assert_int_equal(r.status, 0);
	assert_int_equal(buf[0] + 1, r.data_in_len);
	assert_int_equal(buf[2] & 0x80, 0);     /* not write protected */
	assert_int_equal(buf[3], 8);            /* block descriptor */
	assert_int_equal(buf[12], 0x08);        /* caching page first */
	assert_int_equal(buf[14] & 0x04, 0x04); /* WCE */
	exec(2, ms6, 6, 255);
	assert_int_equal(buf[2] & 0x80, 0x80);  /* WP on the read-only disk */
	uint8_t ms10[10] = { 0x5A, 0x18, 0x08, 0, 0, 0, 0, 0, 255, 0 };
	exec(1, ms10, 10, 255);
	assert_good(8 + 20);
	assert_int_equal(buf[8], 0x08);
	ms6[2] = 0x1C;
	exec(0, ms6, 6, 255);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	ms6[2] = 0xC8; /* saved values */
	exec(0, ms6, 6, 255);
	assert_int_equal(r.sense[12], 0x39);
}

static void test_misc(void **s)
{
	(void)s;
	uint8_t rl[12] = { 0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 };
	exec(5, rl, 12, 256); /* any LUN answers */
	assert_good(32);
	assert_int_equal(be32(buf), 24);
	assert_int_equal(buf[8 + 8 + 1], 1);
	assert_int_equal(buf[8 + 16 + 1], 2);
	rl[9] = 8; rl[8] = 0;
	exec(0, rl, 12, 256);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	uint8_t tur[6] = { 0 };
	exec(0, tur, 6, 0);
	assert_good(0);
	uint8_t ssu[6] = { 0x1B, 0, 0, 0, 1, 0 };
	exec(0, ssu, 6, 0);
	assert_good(0);
	uint8_t sync[10] = { 0x35 };
	exec(0, sync, 10, 0);
	assert_int_equal(r.action, SCSI_FLUSH);
	exec(2, sync, 10, 0);
	assert_good(0);
	uint8_t bad[6] = { 0x04 }; /* FORMAT UNIT */
	exec(0, bad, 6, 0);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
	uint8_t vendor[6] = { 0xC0 };
	exec(0, vendor, 6, 0);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
	exec(0, tur, 0, 0);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	exec(0, tur, 17, 0);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void test_unmap_write_same(void **s)
{
	(void)s;
	uint8_t um[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0 };
	exec(0, um, 10, 40);
	assert_int_equal(r.action, SCSI_UNMAP);
	assert_int_equal(r.length, 40);
	exec(0, um, 10, 20);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
	exec(2, um, 10, 40);
	assert_sense(SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	uint8_t p[40] = { 0, 38, 0, 32 };
	p[8 + 7] = 8; p[8 + 11] = 16;          /* LBA 8, 16 blocks */
	p[24 + 6] = 0x07; p[24 + 7] = 0xF0; p[24 + 11] = 16; /* LBA 2032, 16 blocks: the last ones */
	struct scsi_extent ext[4];
	assert_int_equal(scsi_unmap_parse(&d512, p, 40, ext, 4, &r), 2);
	assert_int_equal(ext[0].offset, 4096);
	assert_int_equal(ext[0].length, 8192);
	assert_int_equal(ext[1].offset, 2032 * 512);
	p[24 + 11] = 17;                       /* one past the end */
	assert_int_equal(scsi_unmap_parse(&d512, p, 40, ext, 4, &r), -1);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	p[3] = 33;                             /* descriptor length not a multiple of 16 */
	assert_int_equal(scsi_unmap_parse(&d512, p, 40, ext, 4, &r), -1);
	p[3] = 48;                             /* longer than the list */
	assert_int_equal(scsi_unmap_parse(&d512, p, 40, ext, 4, &r), -1);
	assert_int_equal(scsi_unmap_parse(&d512, p, 7, ext, 4, &r), -1);
	uint8_t ws[16] = { 0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8 };
	exec(0, ws, 16, 512);
	assert_int_equal(r.action, SCSI_WRITE_SAME);
	assert_true(r.unmap);
	assert_int_equal(r.length, 4096);
	ws[13] = 0;                            /* WSNZ */
	exec(0, ws, 16, 512);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	ws[13] = 8;
	exec(0, ws, 16, 100);                  /* no room for the data-out block */
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
}

static void test_io_error(void **s)
{
	(void)s;
	scsi_io_error(&r, SCSI_READ, -5);
	assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_UNRECOVERED_READ);
	scsi_io_error(&r, SCSI_WRITE, -28);
	assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR);
	scsi_io_error(&r, SCSI_WRITE, -30);
	assert_sense(SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	scsi_io_error(&r, SCSI_FLUSH, -5);
	assert_sense(SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_FAILURE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inquiry), cmocka_unit_test(test_vpd), cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_read_write), cmocka_unit_test(test_mode_sense), cmocka_unit_test(test_misc),
		cmocka_unit_test(test_unmap_write_same), cmocka_unit_test(test_io_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
