/* The CD/DVD drive of the SCSI target (vsp/scsi_mmc.c): every MMC command it answers, media
 * changes, malformed CDBs and allocation lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vsp/scsi.h"

#define DVD_BYTES (3ull * 1024 * 1024 * 1024 + 1000) /* a DVD-sized ISO with a partial last block */
#define DVD_BLOCKS (DVD_BYTES / 2048)

static struct scsi_mmc mmc;
static struct scsi_disk dvd = { .max_transfer = 1 << 20, .mmc = &mmc };
static struct scsi_target tgt = { .nluns = 1, .luns = { &dvd } };

static uint8_t buf[4096];
static struct scsi_result r;

static void exec(const uint8_t *cdb, uint32_t len, uint32_t xfer)
{
	memset(buf, 0xEE, sizeof(buf));
	scsi_execute(&tgt, 0, cdb, len, xfer, buf, sizeof(buf), &r);
}

static void assert_sense(uint8_t key, uint16_t asc)
{
	assert_int_equal(r.action, SCSI_DONE);
	assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(r.sense_len, 18);
	assert_int_equal(r.sense[2], key);
	assert_int_equal(r.sense[12] << 8 | r.sense[13], asc);
}

static void assert_good(uint32_t len)
{
	assert_int_equal(r.action, SCSI_DONE);
	assert_int_equal(r.status, SCSI_STATUS_GOOD);
	assert_int_equal(r.data_in_len, len);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static const uint8_t tur[6] = { 0x00 };

static int loaded(void **s)
{
	(void)s;
	mmc = (struct scsi_mmc){ .media = true, .blocks = DVD_BLOCKS };
	return 0;
}

static int empty(void **s)
{
	(void)s;
	mmc = (struct scsi_mmc){ 0 };
	return 0;
}

static void test_inquiry(void **s)
{
	(void)s;
	uint8_t cdb[6] = { 0x12, 0, 0, 0, 96, 0 };
	exec(cdb, 6, 96);
	assert_good(36);
	assert_int_equal(buf[0], 0x05); /* CD/DVD */
	assert_int_equal(buf[1], 0x80); /* removable */
	assert_memory_equal(buf + 8, "Msft    Virtual DVD-ROM ", 24);
	/* VPD: supported pages 0, 0x80, 0x83 only (no block device pages) */
	uint8_t vpd[6] = { 0x12, 1, 0x00, 0, 255, 0 };
	exec(vpd, 6, 255);
	assert_good(7);
	assert_int_equal(buf[0], 0x05);
	assert_int_equal(buf[3], 3);
	assert_int_equal(buf[6], 0x83);
	vpd[2] = 0x80;
	exec(vpd, 6, 255);
	assert_good(36);
	vpd[2] = 0x83;
	exec(vpd, 6, 255);
	assert_good(4 + 20 + 44);
	vpd[2] = 0xB0;
	exec(vpd, 6, 255);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	/* INQUIRY is answered through a pending unit attention and keeps it */
	scsi_mmc_change(&mmc, true, 4096);
	exec(cdb, 6, 96);
	assert_good(36);
	assert_true(mmc.unit_attention);
}

static void test_tur_and_media_change(void **s)
{
	(void)s;
	exec(tur, 6, 0);
	assert_good(0);
	/* the host takes the disc out: UNIT ATTENTION once, then NOT READY */
	scsi_mmc_change(&mmc, false, 0);
	exec(tur, 6, 0);
	assert_sense(SCSI_SENSE_UNIT_ATTENTION, SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED);
	exec(tur, 6, 0);
	assert_sense(SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
	exec(tur, 6, 0);
	assert_sense(SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
	/* a new disc: UNIT ATTENTION once on whatever command comes, then ready */
	scsi_mmc_change(&mmc, true, 10 * 2048 + 100);
	assert_int_equal(mmc.blocks, 10);
	uint8_t rc10[10] = { 0x25 };
	exec(rc10, 10, 8);
	assert_sense(SCSI_SENSE_UNIT_ATTENTION, SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED);
	exec(rc10, 10, 8);
	assert_good(8);
	assert_int_equal(be32(buf), 9);
	assert_int_equal(be32(buf + 4), 2048);
	exec(tur, 6, 0);
	assert_good(0);
}

static void test_request_sense(void **s)
{
	(void)s;
	uint8_t cdb[6] = { 0x03, 0, 0, 0, 18, 0 };
	exec(cdb, 6, 18);
	assert_good(18);
	assert_int_equal(buf[0], 0x70);
	assert_int_equal(buf[2], 0);
	/* a pending unit attention is reported (GOOD status, the sense in the data) and cleared */
	scsi_mmc_change(&mmc, false, 0);
	exec(cdb, 6, 18);
	assert_good(18);
	assert_int_equal(buf[2], SCSI_SENSE_UNIT_ATTENTION);
	assert_int_equal(buf[12], 0x28);
	assert_false(mmc.unit_attention);
	exec(cdb, 6, 18);
	assert_good(18);
	assert_int_equal(buf[2], SCSI_SENSE_NOT_READY);
	assert_int_equal(buf[12], 0x3A);
	cdb[4] = 3; /* allocation length cuts */
	exec(cdb, 6, 18);
	assert_good(3);
	cdb[1] = 1; /* descriptor format */
	exec(cdb, 6, 18);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void test_get_configuration(void **s)
{
	(void)s;
	uint8_t cdb[10] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 255, 0 };
	exec(cdb, 10, 255);
	assert_int_equal(r.status, SCSI_STATUS_GOOD);
	uint32_t n = r.data_in_len;
	assert_true(n > 8);
	assert_int_equal(be32(buf), n - 4);
	assert_int_equal(be16(buf + 6), 0x0010); /* current profile: DVD-ROM */
	/* the features in order: profile list, core, morphing, removable, random readable, CD read
	 * (not current on a DVD), DVD read */
	uint16_t want[] = { 0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x001E, 0x001F };
	uint32_t off = 8;
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_true(off + 4 <= n);
		assert_int_equal(be16(buf + off), want[i]);
		assert_int_equal(buf[off + 2] & 1, want[i] != 0x001E); /* current */
		if (want[i] == 0) {
			assert_int_equal(buf[off + 3], 8);
			assert_int_equal(be16(buf + off + 4), 0x0010);
			assert_int_equal(buf[off + 6] & 1, 1);
			assert_int_equal(be16(buf + off + 8), 0x0008);
			assert_int_equal(buf[off + 10] & 1, 0);
		}
		if (want[i] == 3)
			assert_int_equal(buf[off + 4] & 0x08, 0x08); /* eject */
		if (want[i] == 0x10)
			assert_int_equal(be32(buf + off + 4), 2048);
		off += 4u + buf[off + 3];
	}
	assert_int_equal(off, n);
	cdb[1] = 1; /* RT 1: current only (no CD read feature) */
	exec(cdb, 10, 255);
	assert_good(n - 8);
	/* RT 2: one feature; starting feature 3 */
	cdb[1] = 2;
	cdb[3] = 3;
	exec(cdb, 10, 255);
	assert_good(8 + 8);
	assert_int_equal(be16(buf + 8), 3);
	cdb[3] = 0x99; /* a feature we lack: the header only */
	exec(cdb, 10, 255);
	assert_good(8);
	assert_int_equal(be32(buf), 4);
	/* header-only read (what Linux's cdrom_mmc3_profile does) */
	cdb[1] = 0;
	cdb[3] = 0;
	cdb[8] = 8;
	exec(cdb, 10, 8);
	assert_good(8);
	assert_int_equal(be32(buf), n - 4); /* the full length, not the truncated one */
	cdb[8] = 0; /* allocation length 0: nothing moved */
	exec(cdb, 10, 255);
	assert_good(0);
	cdb[1] = 3; /* reserved RT */
	cdb[8] = 255;
	exec(cdb, 10, 255);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	/* a small disc is a CD; no disc: profile 0 and no medium features current */
	mmc.blocks = 1000;
	cdb[1] = 0;
	exec(cdb, 10, 255);
	assert_int_equal(be16(buf + 6), 0x0008);
	mmc.media = false;
	exec(cdb, 10, 255);
	assert_int_equal(be16(buf + 6), 0);
	cdb[1] = 1;
	exec(cdb, 10, 255);
	assert_good(8 + 12 + 12 + 8 + 8); /* profile list, core, morphing, removable */
}

static void test_gesn(void **s)
{
	(void)s;
	uint8_t cdb[10] = { 0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0 };
	exec(cdb, 10, 8);
	assert_good(8);
	assert_int_equal(be16(buf), 6);
	assert_int_equal(buf[2], 0x04); /* media class, NEA clear */
	assert_int_equal(buf[3], 0x10);
	assert_int_equal(buf[4], SCSI_MMC_EVENT_NONE);
	assert_int_equal(buf[5], 0x02); /* present */
	/* removal, then new media: each reported once; GESN does not consume the unit attention */
	scsi_mmc_change(&mmc, false, 0);
	exec(cdb, 10, 8);
	assert_good(8);
	assert_int_equal(buf[4], SCSI_MMC_EVENT_MEDIA_REMOVAL);
	assert_int_equal(buf[5], 0);
	exec(cdb, 10, 8);
	assert_int_equal(buf[4], SCSI_MMC_EVENT_NONE);
	assert_true(mmc.unit_attention);
	scsi_mmc_change(&mmc, true, 2048 * 5);
	exec(cdb, 10, 8);
	assert_int_equal(buf[4], SCSI_MMC_EVENT_NEW_MEDIA);
	assert_int_equal(buf[5], 0x02);
	/* an allocation length that cuts the event keeps it */
	scsi_mmc_change(&mmc, true, 2048 * 5);
	cdb[8] = 4;
	exec(cdb, 10, 8);
	assert_good(4);
	assert_int_equal(mmc.event, SCSI_MMC_EVENT_NEW_MEDIA);
	/* a class we do not have: NEA */
	cdb[8] = 8;
	cdb[4] = 0x02;
	exec(cdb, 10, 8);
	assert_good(4);
	assert_int_equal(buf[2], 0x80);
	/* asynchronous mode is refused */
	cdb[1] = 0;
	exec(cdb, 10, 8);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void test_read_toc(void **s)
{
	(void)s;
	uint8_t cdb[10] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 255, 0 };
	exec(cdb, 10, 255);
	assert_good(20);
	assert_int_equal(be16(buf), 18);
	assert_int_equal(buf[2], 1);
	assert_int_equal(buf[3], 1);
	assert_int_equal(buf[5], 0x14);
	assert_int_equal(buf[6], 1);
	assert_int_equal(be32(buf + 8), 0);
	assert_int_equal(buf[14], 0xAA);
	assert_int_equal(be32(buf + 16), DVD_BLOCKS);
	/* MSF: track 1 at 00:02:00; a CD-sized lead-out in minutes:seconds:frames */
	mmc.blocks = 4500 * 10; /* 10 minutes */
	cdb[1] = 0x02;
	exec(cdb, 10, 255);
	assert_good(20);
	assert_memory_equal(buf + 8, ((uint8_t[]){ 0, 0, 2, 0 }), 4);
	assert_memory_equal(buf + 16, ((uint8_t[]){ 0, 10, 2, 0 }), 4);
	mmc.blocks = DVD_BLOCKS; /* beyond what MSF holds: clamped */
	exec(cdb, 10, 255);
	assert_memory_equal(buf + 16, ((uint8_t[]){ 0, 0xFF, 59, 74 }), 4);
	/* starting track: lead-out only, or an error past the last track */
	cdb[1] = 0;
	cdb[6] = 0xAA;
	exec(cdb, 10, 255);
	assert_good(12);
	assert_int_equal(buf[6], 0xAA);
	cdb[6] = 2;
	exec(cdb, 10, 255);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	cdb[6] = 0;
	/* format 1: session information */
	cdb[2] = 1;
	exec(cdb, 10, 255);
	assert_good(12);
	assert_int_equal(be16(buf), 10);
	assert_int_equal(buf[6], 1);
	assert_int_equal(be32(buf + 8), 0);
	cdb[1] = 0x02;
	exec(cdb, 10, 255);
	assert_memory_equal(buf + 8, ((uint8_t[]){ 0, 0, 2, 0 }), 4);
	/* the old place of the format (control byte) */
	cdb[1] = 0;
	cdb[2] = 0;
	cdb[9] = 0x40;
	exec(cdb, 10, 255);
	assert_good(12);
	cdb[9] = 0;
	/* formats we lack; short allocation */
	cdb[2] = 2;
	exec(cdb, 10, 255);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	cdb[2] = 0;
	cdb[8] = 4;
	exec(cdb, 10, 255);
	assert_good(4);
	assert_int_equal(be16(buf), 18);
	/* no disc */
	mmc.media = false;
	exec(cdb, 10, 255);
	assert_sense(SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
}

static void test_read(void **s)
{
	(void)s;
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0 };
	exec(r10, 10, 4096);
	assert_int_equal(r.action, SCSI_READ);
	assert_int_equal(r.offset, 5 * 2048);
	assert_int_equal(r.length, 4096);
	exec(r10, 10, 4095); /* transfer length too short */
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	uint8_t r12[12] = { 0xA8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0 };
	uint32_t last = (uint32_t)DVD_BLOCKS - 1;
	r12[2] = (uint8_t)(last >> 24);
	r12[3] = (uint8_t)(last >> 16);
	r12[4] = (uint8_t)(last >> 8);
	r12[5] = (uint8_t)last;
	exec(r12, 12, 2048);
	assert_int_equal(r.action, SCSI_READ);
	assert_int_equal(r.offset, (uint64_t)last * 2048);
	r12[9] = 2; /* one past the end: the partial last 1000 bytes are not a block */
	exec(r12, 12, 4096);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	memset(r12 + 2, 0xFF, 4); /* LBA + count overflow */
	exec(r12, 12, 4096);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	uint8_t big[12] = { 0xA8, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01, 0, 0 }; /* 513 blocks > 1 MiB */
	exec(big, 12, 1 << 21);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	r10[8] = 0; /* zero blocks: nothing to do */
	exec(r10, 10, 0);
	assert_good(0);
	/* a CDB shorter than its opcode's group */
	exec(r10, 6, 4096);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	/* no disc */
	mmc.media = false;
	r10[8] = 1;
	exec(r10, 10, 2048);
	assert_sense(SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
}

static void test_empty_and_odd_iso(void **s)
{
	(void)s;
	/* a zero-length ISO: a disc with no block; READ CAPACITY says block 0, reads are out of range */
	scsi_mmc_change(&mmc, true, 0);
	exec(tur, 6, 0);
	assert_sense(SCSI_SENSE_UNIT_ATTENTION, SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED);
	uint8_t rc10[10] = { 0x25 };
	exec(rc10, 10, 8);
	assert_good(8);
	assert_int_equal(be32(buf), 0);
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	exec(r10, 10, 2048);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	/* 3 blocks and a half: 3 blocks */
	scsi_mmc_change(&mmc, true, 3 * 2048 + 1024);
	exec(tur, 6, 0);
	exec(rc10, 10, 8);
	assert_int_equal(be32(buf), 2);
	r10[5] = 2;
	exec(r10, 10, 2048);
	assert_int_equal(r.action, SCSI_READ);
	r10[5] = 3;
	exec(r10, 10, 2048);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}

static void test_writes_refused(void **s)
{
	(void)s;
	static const uint8_t ops[] = { 0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0x41, 0x42, 0x35, 0x04, 0xA1, 0x5B };
	for (unsigned i = 0; i < sizeof(ops); i++) {
		uint8_t cdb[16] = { ops[i], 0, 0, 0, 0, 0, 0, 0, 1 };
		exec(cdb, 16, 2048);
		assert_sense(SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	}
}

static void test_mode_sense(void **s)
{
	(void)s;
	uint8_t cdb[10] = { 0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 128, 0 };
	exec(cdb, 10, 128);
	assert_good(8 + 30);
	assert_int_equal(be16(buf), 8 + 30 - 2);
	assert_int_equal(be16(buf + 6), 0); /* no block descriptors */
	assert_int_equal(buf[8], 0x2A);
	assert_int_equal(buf[9], 0x1C);
	assert_int_equal(buf[10] & 0x08, 0x08); /* reads DVD */
	assert_int_equal(buf[11], 0);           /* writes nothing */
	assert_int_equal(buf[14] & 0x08, 0x08); /* can eject */
	assert_int_equal(buf[14] & 0x02, 0);    /* not locked */
	uint8_t prevent[6] = { 0x1E, 0, 0, 0, 1, 0 };
	exec(prevent, 6, 0);
	assert_good(0);
	exec(cdb, 10, 128);
	assert_int_equal(buf[14] & 0x02, 0x02);
	cdb[2] = 0x3F; /* all pages */
	exec(cdb, 10, 128);
	assert_good(38);
	cdb[2] = 0x6A; /* changeable values: nothing */
	exec(cdb, 10, 128);
	assert_good(38);
	assert_int_equal(buf[10], 0);
	uint8_t six[6] = { 0x1A, 0, 0x2A, 0, 255, 0 };
	exec(six, 6, 255);
	assert_good(4 + 30);
	assert_int_equal(buf[0], 4 + 30 - 1);
	cdb[8] = 10; /* allocation cuts */
	cdb[2] = 0x2A;
	exec(cdb, 10, 128);
	assert_good(10);
	cdb[2] = 0x08; /* the disk caching page is not a CD's */
	exec(cdb, 10, 128);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	cdb[2] = 0xEA; /* saved values */
	exec(cdb, 10, 128);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_SAVING_NOT_SUPPORTED);
	cdb[2] = 0x2A;
	cdb[3] = 1; /* a subpage */
	exec(cdb, 10, 128);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void test_eject(void **s)
{
	(void)s;
	uint8_t prevent[6] = { 0x1E, 0, 0, 0, 1, 0 };
	uint8_t eject[6] = { 0x1B, 0, 0, 0, 0x02, 0 };
	exec(prevent, 6, 0);
	exec(eject, 6, 0); /* the guest locked the tray: refused */
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_REMOVAL_PREVENTED);
	assert_true(mmc.media);
	prevent[4] = 0;
	exec(prevent, 6, 0);
	exec(eject, 6, 0);
	assert_good(0);
	assert_false(mmc.media);
	assert_true(mmc.guest_ejected);
	assert_false(mmc.unit_attention); /* the guest did it itself */
	exec(tur, 6, 0);
	assert_sense(SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
	uint8_t load[6] = { 0x1B, 0, 0, 0, 0x03, 0 }; /* closing the tray brings nothing back */
	exec(load, 6, 0);
	assert_good(0);
	exec(tur, 6, 0);
	assert_sense(SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
	uint8_t start[6] = { 0x1B, 0, 0, 0, 0x01, 0 };
	exec(start, 6, 0);
	assert_good(0);
}

static void test_misc(void **s)
{
	(void)s;
	uint8_t di[10] = { 0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0 };
	exec(di, 10, 34);
	assert_good(34);
	assert_int_equal(be16(buf), 32);
	assert_int_equal(buf[2] & 0x03, 0x02); /* complete disc */
	assert_int_equal(buf[2] & 0x10, 0);    /* not erasable */
	di[1] = 1; /* track resources: not supported */
	exec(di, 10, 34);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	/* READ TRACK INFORMATION: track 1 by number, session or LBA; others refused */
	uint8_t ti[10] = { 0x52, 1, 0, 0, 0, 1, 0, 0, 48, 0 };
	exec(ti, 10, 48);
	assert_good(48);
	assert_int_equal(be16(buf), 46);
	assert_int_equal(buf[2], 1);
	assert_int_equal(buf[5] & 0x0F, 4);
	assert_int_equal(buf[7] & 0x02, 0x02);
	assert_int_equal(be32(buf + 24), DVD_BLOCKS);
	assert_int_equal(be32(buf + 28), DVD_BLOCKS - 1);
	ti[1] = 2; /* session 1 */
	exec(ti, 10, 48);
	assert_good(48);
	ti[1] = 0; /* the track of LBA 1 */
	exec(ti, 10, 8);
	assert_good(8);
	memset(ti + 2, 0xFF, 4); /* an LBA past the disc */
	exec(ti, 10, 48);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	ti[1] = 1; /* track 0xFFFFFFFF (invisible track): none on a pressed disc */
	exec(ti, 10, 48);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	memset(ti + 2, 0, 4);
	ti[5] = 2; /* track 2 */
	exec(ti, 10, 48);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	ti[1] = 3; /* reserved address type */
	exec(ti, 10, 48);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	uint8_t speed[12] = { 0xBB, 0, 0xFF, 0xFF, 0xFF, 0xFF };
	exec(speed, 12, 0);
	assert_good(0);
	/* unknown opcodes, disk-only commands and reserved groups */
	static const uint8_t ops[] = { 0x9E, 0x2F, 0xBD, 0xBE, 0xAD, 0x5C, 0xC0, 0x01 };
	for (unsigned i = 0; i < sizeof(ops); i++) {
		uint8_t cdb[16] = { ops[i] };
		exec(cdb, 16, 512);
		assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
	}
	/* REPORT LUNS is answered for the drive */
	uint8_t rl[12] = { 0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16 };
	exec(rl, 12, 16);
	assert_good(16);
	/* CDB lengths out of range */
	exec(tur, 0, 0);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	exec(tur, 17, 0);
	assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
	/* answers never overrun the buffer the caller gives */
	uint8_t gc[10] = { 0x46, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0 };
	uint8_t small[5];
	memset(small, 0, sizeof(small));
	scsi_execute(&tgt, 0, gc, 10, 0xFFFF, small, sizeof(small), &r);
	assert_good(sizeof(small));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_inquiry, loaded),
		cmocka_unit_test_setup(test_tur_and_media_change, loaded),
		cmocka_unit_test_setup(test_request_sense, loaded),
		cmocka_unit_test_setup(test_get_configuration, loaded),
		cmocka_unit_test_setup(test_gesn, loaded),
		cmocka_unit_test_setup(test_read_toc, loaded),
		cmocka_unit_test_setup(test_read, loaded),
		cmocka_unit_test_setup(test_empty_and_odd_iso, empty),
		cmocka_unit_test_setup(test_writes_refused, loaded),
		cmocka_unit_test_setup(test_mode_sense, loaded),
		cmocka_unit_test_setup(test_eject, loaded),
		cmocka_unit_test_setup(test_misc, loaded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
