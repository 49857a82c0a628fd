/* SCSI target (SBC-3 / SPC-4 subset a Linux sd driver uses). See include/vsp/scsi.h. */
#include <errno.h>
#include <string.h>

#include "vsp/scsi.h"
#include "scsi_util.h"

#define VENDOR  "Msft    "          /* Linux storvsc keys SPC level / WRITE SAME on "Msft" */
#define PRODUCT "Virtual Disk    "
#define PRODUCT_DVD "Virtual DVD-ROM "  /* what Hyper-V's SCSI DVD drive reports */
#define REVISION "1.0 "


void scsi_set_sense(struct scsi_result *r, uint8_t key, uint16_t asc_ascq)
{
	r->action = SCSI_DONE;
	r->status = SCSI_STATUS_CHECK_CONDITION;
	r->data_in_len = 0;
	memset(r->sense, 0, sizeof(r->sense));
	r->sense[0] = 0x70;                     /* current error, fixed format */
	r->sense[2] = key & 0xF;
	r->sense[7] = SCSI_SENSE_LEN - 8;       /* additional sense length */
	r->sense[12] = (uint8_t)(asc_ascq >> 8);
	r->sense[13] = (uint8_t)asc_ascq;
	r->sense_len = SCSI_SENSE_LEN;
}

void scsi_io_error(struct scsi_result *r, enum scsi_action op, int err)
{
	if (err == -EROFS || err == -EPERM || err == -EACCES)
		scsi_set_sense(r, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
	else if (err == -EINVAL || err == -ERANGE)
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
	else if (op == SCSI_READ)
		scsi_set_sense(r, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_UNRECOVERED_READ);
	else if (op == SCSI_WRITE || op == SCSI_WRITE_SAME)
		scsi_set_sense(r, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR);
	else
		scsi_set_sense(r, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_FAILURE);
}

void scsi_invalid_field(struct scsi_result *r)
{
	scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

void scsi_good(struct scsi_result *r)
{
	r->action = SCSI_DONE;
	r->status = SCSI_STATUS_GOOD;
	r->sense_len = 0;
}


void scsi_data_in(struct scsi_result *r, const uint8_t *tmp, uint32_t n, uint32_t alloc,
		  uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap)
{
	if (n > alloc)
		n = alloc;
	if (n > xfer_len)
		n = xfer_len;
	if (n > buf_cap)
		n = buf_cap;
	if (n)
		memcpy(buf, tmp, n);
	scsi_good(r);
	r->data_in_len = n;
}

static unsigned log2u(uint32_t v)
{
	unsigned n = 0;
	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

static uint32_t max_transfer_blocks(const struct scsi_disk *d)
{
	return d->max_transfer / d->logical_sector;
}

static uint32_t unmap_granularity(const struct scsi_disk *d)
{
	return d->unmap_granularity ? d->unmap_granularity : 1;
}

/* INQUIRY: standard data or a VPD page into tmp (>= 256 bytes); returns the length or 0 for an
 * unsupported page. */
static uint32_t inquiry(const struct scsi_disk *d, bool evpd, uint8_t page, uint8_t *tmp)
{
	memset(tmp, 0, 256);
	if (!evpd) {
		if (d->mmc) {
			tmp[0] = 0x05;   /* connected CD/DVD device */
			tmp[1] = 0x80;   /* RMB: removable medium */
			tmp[2] = 0x05;   /* SPC-3 */
		} else {
			tmp[0] = 0x00;   /* connected direct-access block device */
			tmp[2] = 0x06;   /* SPC-4 */
			tmp[7] = 0x02;   /* CmdQue */
		}
		tmp[3] = 0x12;           /* HiSup, response data format 2 */
		tmp[4] = 36 - 5;
		memcpy(tmp + 8, VENDOR, 8);
		memcpy(tmp + 16, d->mmc ? PRODUCT_DVD : PRODUCT, 16);
		memcpy(tmp + 32, REVISION, 4);
		return 36;
	}
	if (d->mmc && page >= 0xB0) /* block device pages: disks only */
		return 0;
	tmp[0] = d->mmc ? 0x05 : 0x00;
	tmp[1] = page;
	uint32_t n;
	switch (page) {
	case 0x00: {
		static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2 };
		uint32_t np = d->mmc ? 3 : sizeof(pages);
		memcpy(tmp + 4, pages, np);
		n = 4 + np;
		break;
	}
	case 0x80: /* unit serial number: the id in hex */
		for (int i = 0; i < 16; i++) {
			static const char hex[] = "0123456789ABCDEF";
			tmp[4 + 2 * i] = (uint8_t)hex[d->id[i] >> 4];
			tmp[5 + 2 * i] = (uint8_t)hex[d->id[i] & 0xF];
		}
		n = 4 + 32;
		break;
	case 0x83: { /* device identification: NAA IEEE Registered Extended + T10 vendor id */
		uint8_t *p = tmp + 4;
		p[0] = 0x01;             /* binary */
		p[1] = 0x03;             /* LUN association, NAA */
		p[3] = 16;
		p[4] = (uint8_t)(0x60 | (d->id[0] & 0x0F));
		memcpy(p + 5, d->id + 1, 15);
		p += 20;
		p[0] = 0x02;             /* ASCII */
		p[1] = 0x01;             /* T10 vendor id */
		p[3] = 8 + 32;
		memcpy(p + 4, VENDOR, 8);
		for (int i = 0; i < 16; i++) {
			static const char hex[] = "0123456789ABCDEF";
			p[12 + 2 * i] = (uint8_t)hex[d->id[i] >> 4];
			p[13 + 2 * i] = (uint8_t)hex[d->id[i] & 0xF];
		}
		p += 4 + 40;
		n = (uint32_t)(p - tmp);
		break;
	}
	case 0xB0: /* block limits */
		n = 0x40;
		tmp[4] = 0x01;           /* WSNZ: WRITE SAME with 0 blocks is refused */
		scsi_put16(tmp + 6, (uint16_t)(d->physical_sector / d->logical_sector));
		scsi_put32(tmp + 8, max_transfer_blocks(d));
		scsi_put32(tmp + 12, max_transfer_blocks(d));
		if (d->thin && !d->read_only) {
			scsi_put32(tmp + 20, 0x400000);                 /* max unmap LBA count */
			scsi_put32(tmp + 24, SCSI_MAX_UNMAP_DESCRIPTORS);
			scsi_put32(tmp + 28, unmap_granularity(d));
			scsi_put32(tmp + 32, 0x80000000u);              /* UGAVALID, alignment 0 */
		}
		scsi_put64(tmp + 36, 0x400000);                         /* max WRITE SAME length */
		break;
	case 0xB1: /* block device characteristics */
		n = 0x40;
		scsi_put16(tmp + 4, 1);       /* non-rotating medium */
		break;
	case 0xB2: /* logical block provisioning */
		n = 8;
		if (d->thin && !d->read_only) {
			tmp[5] = 0x80 | 0x40 | 0x20; /* LBPU, LBPWS, LBPWS10 */
			tmp[6] = 0x02;               /* thin provisioned */
		}
		break;
	default:
		return 0;
	}
	scsi_put16(tmp + 2, (uint16_t)(n - 4));
	return n;
}

/* MODE SENSE pages for page code pc (0x3F: all) at tmp; returns bytes or -1 if unsupported. */
static int mode_pages(const struct scsi_disk *d, uint8_t page, uint8_t pcontrol, uint8_t *tmp)
{
	int n = 0;
	bool changeable = pcontrol == 1;
	if (page == 0x08 || page == 0x3F) { /* caching */
		uint8_t *p = tmp + n;
		memset(p, 0, 20);
		p[0] = 0x08;
		p[1] = 0x12;
		if (!changeable)
			p[2] = 0x04;     /* WCE: the guest must SYNCHRONIZE CACHE for durability */
		n += 20;
	}
	if (page == 0x0A || page == 0x3F) { /* control */
		uint8_t *p = tmp + n;
		memset(p, 0, 12);
		p[0] = 0x0A;
		p[1] = 0x0A;
		if (!changeable)
			p[3] = 0x10; /* queue algorithm modifier 1: unrestricted reordering allowed */
		scsi_put16(p + 8, 0xFFFF); /* busy timeout period: unlimited */
		n += 12;
	}
	(void)d;
	return n ? n : -1;
}

static void mode_sense(const struct scsi_disk *d, const uint8_t *cdb, bool ten, uint32_t xfer_len,
		       uint8_t *buf, uint32_t buf_cap, struct scsi_result *r)
{
	uint8_t tmp[256];
	bool dbd = cdb[1] & 0x08;
	bool llbaa = ten && (cdb[1] & 0x10);
	uint8_t pcontrol = cdb[2] >> 6, page = cdb[2] & 0x3F, subpage = cdb[3];
	uint32_t alloc = ten ? scsi_be16(cdb + 7) : cdb[4];
	if (pcontrol == 3) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_SAVING_NOT_SUPPORTED);
		return;
	}
	if (subpage != 0 && !(page == 0x3F && subpage == 0xFF)) {
		scsi_invalid_field(r);
		return;
	}
	uint32_t hdr = ten ? 8 : 4;
	uint32_t bdlen = dbd ? 0 : llbaa ? 16 : 8;
	memset(tmp, 0, sizeof(tmp));
	int pages = mode_pages(d, page, pcontrol, tmp + hdr + bdlen);
	if (pages < 0) {
		scsi_invalid_field(r);
		return;
	}
	uint8_t devspec = (uint8_t)((d->read_only ? 0x80 : 0) | 0x10); /* WP, DPOFUA */
	uint8_t *bd = tmp + hdr;
	if (bdlen == 8) {
		uint64_t b = d->blocks > 0xFFFFFFFFull ? 0xFFFFFFFFull : d->blocks;
		scsi_put32(bd, (uint32_t)b);
		scsi_put32(bd + 4, d->logical_sector & 0xFFFFFF);
	} else if (bdlen == 16) {
		scsi_put64(bd, d->blocks);
		scsi_put32(bd + 12, d->logical_sector);
	}
	uint32_t total = hdr + bdlen + (uint32_t)pages;
	if (ten) {
		scsi_put16(tmp, (uint16_t)(total - 2));
		tmp[3] = devspec;
		tmp[4] = llbaa ? 1 : 0;
		scsi_put16(tmp + 6, (uint16_t)bdlen);
	} else {
		tmp[0] = (uint8_t)(total - 1);
		tmp[2] = devspec;
		tmp[3] = (uint8_t)bdlen;
	}
	scsi_data_in(r, tmp, total, alloc, xfer_len, buf, buf_cap);
}

/* READ/WRITE (6/10/12/16), WRITE SAME (10/16), VERIFY: LBA range check and byte range. */
static bool lba_range(const struct scsi_disk *d, uint64_t lba, uint64_t count, struct scsi_result *r)
{
	if (lba > d->blocks || count > d->blocks - lba) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
		return false;
	}
	r->offset = lba * d->logical_sector;
	r->length = count * d->logical_sector;
	return true;
}

void scsi_transfer(uint64_t blocks, uint32_t bsize, uint32_t max_transfer, bool write, uint64_t lba, uint64_t count,
		   bool fua, uint32_t xfer_len, struct scsi_result *r)
{
	if (count > max_transfer / bsize || count * bsize > xfer_len) {
		scsi_invalid_field(r);
		return;
	}
	if (lba > blocks || count > blocks - lba) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
		return;
	}
	if (!count) {
		scsi_good(r);
		return;
	}
	r->offset = lba * bsize;
	r->length = count * bsize;
	r->action = write ? SCSI_WRITE : SCSI_READ;
	r->fua = fua;
}

static void rw(const struct scsi_disk *d, bool write, uint64_t lba, uint64_t count, bool fua,
	       uint32_t xfer_len, struct scsi_result *r)
{
	if (write && d->read_only) {
		scsi_set_sense(r, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
		return;
	}
	scsi_transfer(d->blocks, d->logical_sector, d->max_transfer, write, lba, count, fua, xfer_len, r);
}

static uint32_t cdb_size(uint8_t opcode)
{
	switch (opcode >> 5) {
	case 0: return 6;
	case 1: case 2: return 10;
	case 4: return 16;
	case 5: return 12;
	default: return 0; /* reserved / vendor groups */
	}
}

void scsi_execute(const struct scsi_target *t, uint32_t lun, const uint8_t *cdb, uint32_t cdb_len,
		  uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap, struct scsi_result *r)
{
	uint8_t tmp[256];
	memset(r, 0, sizeof(*r));
	if (cdb_len == 0 || cdb_len > 16) {
		scsi_invalid_field(r);
		return;
	}
	uint8_t op = cdb[0];
	uint32_t need = cdb_size(op);
	if (!need) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
		return;
	}
	if (cdb_len < need) {
		scsi_invalid_field(r);
		return;
	}
	if (op == 0xA0) { /* REPORT LUNS: answered for any LUN of the target */
		uint32_t alloc = scsi_be32(cdb + 6);
		if (alloc < 16) {
			scsi_invalid_field(r);
			return;
		}
		uint8_t big[8 + 8 * SCSI_MAX_LUNS];
		memset(big, 0, sizeof(big));
		uint32_t n = 0;
		for (uint32_t i = 0; i < t->nluns && i < SCSI_MAX_LUNS; i++) {
			if (!t->luns[i])
				continue;
			big[8 + 8 * n + 1] = (uint8_t)i; /* peripheral addressing, LUN < 256 */
			n++;
		}
		scsi_put32(big, n * 8);
		scsi_data_in(r, big, 8 + 8 * n, alloc, xfer_len, buf, buf_cap);
		return;
	}
	const struct scsi_disk *d = lun < t->nluns && lun < SCSI_MAX_LUNS ? t->luns[lun] : NULL;
	if (!d) {
		/* Linux storvsc turns every INQUIRY failure into success, so an absent LUN must
		 * answer INQUIRY itself: peripheral qualifier 3, no device type. */
		if (op == 0x12 && !(cdb[1] & 1) && !cdb[2]) {
			memset(tmp, 0, 36);
			tmp[0] = 0x7F;
			tmp[2] = 0x06;
			tmp[3] = 0x12;
			tmp[4] = 36 - 5;
			memcpy(tmp + 8, VENDOR, 8);
			memcpy(tmp + 16, PRODUCT, 16);
			memcpy(tmp + 32, REVISION, 4);
			scsi_data_in(r, tmp, 36, scsi_be16(cdb + 3), xfer_len, buf, buf_cap);
			return;
		}
		r->action = SCSI_NO_LUN;
		return;
	}
	if (d->mmc && op != 0x12) {
		scsi_mmc_execute(d, cdb, xfer_len, buf, buf_cap, r);
		return;
	}
	switch (op) {
	case 0x00: /* TEST UNIT READY */
	case 0x1B: /* START STOP UNIT */
	case 0x1E: /* PREVENT ALLOW MEDIUM REMOVAL */
		scsi_good(r);
		return;
	case 0x03: { /* REQUEST SENSE: nothing pending */
		memset(tmp, 0, SCSI_SENSE_LEN);
		tmp[0] = 0x70;
		tmp[7] = SCSI_SENSE_LEN - 8;
		if (cdb[1] & 1) { /* descriptor format not supported */
			scsi_invalid_field(r);
			return;
		}
		scsi_data_in(r, tmp, SCSI_SENSE_LEN, cdb[4], xfer_len, buf, buf_cap);
		return;
	}
	case 0x12: { /* INQUIRY */
		bool evpd = cdb[1] & 1;
		if ((cdb[1] & 0xFE) || (!evpd && cdb[2])) {
			scsi_invalid_field(r);
			return;
		}
		uint32_t n = inquiry(d, evpd, cdb[2], tmp);
		if (!n) {
			scsi_invalid_field(r);
			return;
		}
		scsi_data_in(r, tmp, n, scsi_be16(cdb + 3), xfer_len, buf, buf_cap);
		return;
	}
	case 0x25: { /* READ CAPACITY (10) */
		memset(tmp, 0, 8);
		uint64_t last = d->blocks ? d->blocks - 1 : 0;
		scsi_put32(tmp, last > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)last);
		scsi_put32(tmp + 4, d->logical_sector);
		scsi_data_in(r, tmp, 8, 8, xfer_len, buf, buf_cap);
		return;
	}
	case 0x9E: { /* SERVICE ACTION IN (16) */
		if ((cdb[1] & 0x1F) != 0x10) { /* only READ CAPACITY (16) */
			scsi_invalid_field(r);
			return;
		}
		memset(tmp, 0, 32);
		scsi_put64(tmp, d->blocks ? d->blocks - 1 : 0);
		scsi_put32(tmp + 8, d->logical_sector);
		tmp[13] = (uint8_t)(log2u(d->physical_sector / d->logical_sector) & 0xF);
		if (d->thin && !d->read_only)
			tmp[14] = 0x80; /* LBPME */
		scsi_data_in(r, tmp, 32, scsi_be32(cdb + 10), xfer_len, buf, buf_cap);
		return;
	}
	case 0x08: case 0x0A: { /* READ (6) / WRITE (6) */
		uint64_t lba = (uint64_t)(cdb[1] & 0x1F) << 16 | scsi_be16(cdb + 2);
		uint32_t count = cdb[4] ? cdb[4] : 256;
		rw(d, op == 0x0A, lba, count, false, xfer_len, r);
		return;
	}
	case 0x28: case 0x2A: /* READ (10) / WRITE (10) */
		rw(d, op == 0x2A, scsi_be32(cdb + 2), scsi_be16(cdb + 7), cdb[1] & 0x08, xfer_len, r);
		return;
	case 0xA8: case 0xAA: /* READ (12) / WRITE (12) */
		rw(d, op == 0xAA, scsi_be32(cdb + 2), scsi_be32(cdb + 6), cdb[1] & 0x08, xfer_len, r);
		return;
	case 0x88: case 0x8A: /* READ (16) / WRITE (16) */
		rw(d, op == 0x8A, scsi_be64(cdb + 2), scsi_be32(cdb + 10), cdb[1] & 0x08, xfer_len, r);
		return;
	case 0x2F: case 0x8F: { /* VERIFY (10/16): media is always good */
		uint64_t lba = op == 0x2F ? scsi_be32(cdb + 2) : scsi_be64(cdb + 2);
		uint64_t count = op == 0x2F ? scsi_be16(cdb + 7) : scsi_be32(cdb + 10);
		if (cdb[1] & 0x06) { /* BYTCHK: compare data-out; not supported */
			scsi_invalid_field(r);
			return;
		}
		if (lba_range(d, lba, count, r))
			scsi_good(r);
		return;
	}
	case 0x35: case 0x91: { /* SYNCHRONIZE CACHE (10/16) */
		uint64_t lba = op == 0x35 ? scsi_be32(cdb + 2) : scsi_be64(cdb + 2);
		uint64_t count = op == 0x35 ? scsi_be16(cdb + 7) : scsi_be32(cdb + 10);
		if (!lba_range(d, lba, count, r))
			return;
		if (d->read_only)
			scsi_good(r);
		else
			r->action = SCSI_FLUSH;
		return;
	}
	case 0x42: { /* UNMAP */
		uint32_t plen = scsi_be16(cdb + 7);
		if (d->read_only) {
			scsi_set_sense(r, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
			return;
		}
		if (!d->thin || (cdb[1] & 1)) { /* ANCHOR not supported */
			scsi_invalid_field(r);
			return;
		}
		if (plen == 0) {
			scsi_good(r);
			return;
		}
		if (plen < 8 || plen > xfer_len) {
			scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
			return;
		}
		r->action = SCSI_UNMAP;
		r->length = plen;
		return;
	}
	case 0x41: case 0x93: { /* WRITE SAME (10/16) */
		uint64_t lba = op == 0x41 ? scsi_be32(cdb + 2) : scsi_be64(cdb + 2);
		uint64_t count = op == 0x41 ? scsi_be16(cdb + 7) : scsi_be32(cdb + 10);
		bool unmap = cdb[1] & 0x08;
		if (d->read_only) {
			scsi_set_sense(r, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
			return;
		}
		/* no ANCHOR, no PBDATA/LBDATA, NDOB only for 16; count 0 is refused (WSNZ) */
		bool ndob = op == 0x93 && (cdb[1] & 0x01);
		if ((cdb[1] & 0x16) || (op == 0x41 && (cdb[1] & 0x01)) || count == 0 || count > 0x400000 ||
		    (unmap && !d->thin)) {
			scsi_invalid_field(r);
			return;
		}
		if (!ndob && xfer_len < d->logical_sector) {
			scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
			return;
		}
		if (!lba_range(d, lba, count, r))
			return;
		r->action = SCSI_WRITE_SAME;
		r->unmap = unmap;
		r->fua = ndob; /* reused: no data-out buffer, the block is zeros */
		return;
	}
	case 0x1A: /* MODE SENSE (6) */
		mode_sense(d, cdb, false, xfer_len, buf, buf_cap, r);
		return;
	case 0x5A: /* MODE SENSE (10) */
		mode_sense(d, cdb, true, xfer_len, buf, buf_cap, r);
		return;
	default:
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
		return;
	}
}

int scsi_unmap_parse(const struct scsi_disk *d, const uint8_t *param, uint32_t len,
		     struct scsi_extent *out, uint32_t max, struct scsi_result *r)
{
	memset(r, 0, sizeof(*r));
	if (len < 8) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
		return -1;
	}
	uint32_t bdlen = scsi_be16(param + 2);
	if (bdlen % 16 || bdlen > len - 8) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH);
		return -1;
	}
	uint32_t n = bdlen / 16;
	if (n > max || n > SCSI_MAX_UNMAP_DESCRIPTORS) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_PARAM);
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = param + 8 + 16 * i;
		uint64_t lba = scsi_be64(p);
		uint32_t count = scsi_be32(p + 8);
		if (count > 0x400000) {
			scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_PARAM);
			return -1;
		}
		if (!lba_range(d, lba, count, r))
			return -1;
		out[i].offset = lba * d->logical_sector;
		out[i].length = (uint64_t)count * d->logical_sector;
	}
	scsi_good(r);
	r->offset = r->length = 0;
	return (int)n;
}
