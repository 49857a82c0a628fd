/* The CD/DVD command set (MMC-6 subset Linux's sr and cdrom drivers use) of a read-only drive
 * whose disc is an ISO file. See include/vsp/scsi.h and docs/storvsp.md. */
#include <string.h>

#include "vsp/scsi.h"
#include "scsi_util.h"

#define PROFILE_CD_ROM  0x0008
#define PROFILE_DVD_ROM 0x0010
/* A disc larger than a CD (700 MB + margin) is presented as a DVD, a smaller one as a CD. */
#define CD_MAX_BLOCKS   (800ull * 1024 * 1024 / SCSI_MMC_BLOCK)
#define LEADOUT_TRACK   0xAA

void scsi_mmc_change(struct scsi_mmc *m, bool media, uint64_t bytes)
{
	m->media = media;
	m->blocks = media ? bytes / SCSI_MMC_BLOCK : 0;
	m->unit_attention = true;
	m->event = media ? SCSI_MMC_EVENT_NEW_MEDIA : SCSI_MMC_EVENT_MEDIA_REMOVAL;
	m->guest_ejected = false;
}

static uint16_t current_profile(const struct scsi_mmc *m)
{
	if (!m->media)
		return 0;
	return m->blocks > CD_MAX_BLOCKS ? PROFILE_DVD_ROM : PROFILE_CD_ROM;
}

/* LBA -> MSF (the 150-frame pre-gap; clamped where a DVD's size outruns the format). */
static void put_msf(uint8_t *p, uint64_t lba)
{
	uint64_t f = lba + 150;
	uint64_t min = f / (75 * 60);
	p[0] = 0;
	if (min > 0xFF) {
		p[1] = 0xFF;
		p[2] = 59;
		p[3] = 74;
		return;
	}
	p[1] = (uint8_t)min;
	p[2] = (uint8_t)(f / 75 % 60);
	p[3] = (uint8_t)(f % 75);
}

static void put_addr(uint8_t *p, uint64_t lba, bool msf)
{
	if (msf)
		put_msf(p, lba);
	else
		scsi_put32(p, lba > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)lba);
}

/* READ TOC/PMA/ATIP: one data track (1) from LBA 0, then the lead-out. */
static void read_toc(const struct scsi_mmc *m, const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap,
		     struct scsi_result *r)
{
	bool msf = cdb[1] & 0x02;
	uint8_t format = cdb[2] & 0x0F, track = cdb[6];
	uint32_t alloc = scsi_be16(cdb + 7);
	uint8_t tmp[32];
	memset(tmp, 0, sizeof(tmp));
	uint32_t n = 4;
	if (!format)
		format = cdb[9] >> 6; /* where SFF-8020 drives take the format */
	switch (format) {
	case 0: /* TOC */
		if (track > 1 && track != LEADOUT_TRACK) {
			scsi_invalid_field(r);
			return;
		}
		tmp[2] = 1;              /* first track */
		tmp[3] = 1;              /* last track */
		if (track <= 1) {
			tmp[n + 1] = 0x14; /* ADR 1 (position), control 4 (data track) */
			tmp[n + 2] = 1;
			put_addr(tmp + n + 4, 0, msf);
			n += 8;
		}
		tmp[n + 1] = 0x14;
		tmp[n + 2] = LEADOUT_TRACK;
		put_addr(tmp + n + 4, m->blocks, msf);
		n += 8;
		break;
	case 1: /* session information: one complete session starting at track 1 */
		tmp[2] = 1;
		tmp[3] = 1;
		tmp[5] = 0x14;
		tmp[6] = 1;
		put_addr(tmp + 8, 0, msf);
		n = 12;
		break;
	default:
		scsi_invalid_field(r);
		return;
	}
	scsi_put16(tmp, (uint16_t)(n - 2));
	scsi_data_in(r, tmp, n, alloc, xfer_len, buf, buf_cap);
}

/* A GET CONFIGURATION answer being built: the RT filter and starting feature of the CDB. */
struct features {
	uint8_t *p;
	uint32_t n, cap;
	uint8_t rt;
	uint16_t start;
};

/* Appends feature `code` with its len data bytes if the request asks for it. */
static void feature(struct features *f, uint16_t code, uint8_t version, bool current, const uint8_t *data, uint8_t len)
{
	if (code < f->start || (f->rt == 1 && !current) || (f->rt == 2 && code != f->start) || f->n + 4u + len > f->cap)
		return;
	uint8_t *p = f->p + f->n;
	scsi_put16(p, code);
	bool persistent = code <= 0x0003; /* the drive's own features; the medium's come and go */
	p[2] = (uint8_t)(version << 2 | (persistent ? 0x02 : 0) | (current ? 0x01 : 0));
	p[3] = len;
	memcpy(p + 4, data, len);
	f->n += 4u + len;
}

static void get_configuration(const struct scsi_mmc *m, const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf,
			      uint32_t buf_cap, struct scsi_result *r)
{
	uint8_t rt = cdb[1] & 0x03;
	if (rt == 3) {
		scsi_invalid_field(r);
		return;
	}
	uint8_t tmp[128];
	memset(tmp, 0, sizeof(tmp));
	struct features f = { .p = tmp, .n = 8, .cap = sizeof(tmp), .rt = rt, .start = scsi_be16(cdb + 2) };
	uint16_t cur = current_profile(m);
	/* Profile list: DVD-ROM and CD-ROM, highest first; CurrentP on the one in use. */
	uint8_t profiles[8] = { 0 };
	scsi_put16(profiles, PROFILE_DVD_ROM);
	profiles[2] = cur == PROFILE_DVD_ROM;
	scsi_put16(profiles + 4, PROFILE_CD_ROM);
	profiles[6] = cur == PROFILE_CD_ROM;
	feature(&f, 0x0000, 0, true, profiles, sizeof(profiles));
	uint8_t core[8] = { 0, 0, 0, 1 }; /* physical interface: SCSI family */
	feature(&f, 0x0001, 2, true, core, sizeof(core));
	uint8_t morphing[4] = { 0x02 };   /* OCEvent; no Async: events are polled */
	feature(&f, 0x0002, 1, true, morphing, sizeof(morphing));
	uint8_t removable[4] = { 0x20 | 0x08 | 0x01 }; /* tray, Eject, Lock */
	feature(&f, 0x0003, 0, true, removable, sizeof(removable));
	uint8_t random_read[8] = { 0 };
	scsi_put32(random_read, SCSI_MMC_BLOCK);
	scsi_put16(random_read + 4, 1);   /* blocking: 1 block */
	feature(&f, 0x0010, 0, m->media, random_read, sizeof(random_read));
	uint8_t cd_read[4] = { 0 };
	feature(&f, 0x001E, 2, cur == PROFILE_CD_ROM, cd_read, sizeof(cd_read));
	uint8_t dvd_read[4] = { 0 };
	feature(&f, 0x001F, 0, cur == PROFILE_DVD_ROM, dvd_read, 0);
	scsi_put32(tmp, f.n - 4);
	scsi_put16(tmp + 6, cur);
	scsi_data_in(r, tmp, f.n, scsi_be16(cdb + 7), xfer_len, buf, buf_cap);
}

/* GET EVENT STATUS NOTIFICATION, polled: the media class only; reporting an event clears it. */
static void get_event_status(struct scsi_mmc *m, const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap,
			     struct scsi_result *r)
{
	if (!(cdb[1] & 0x01)) { /* asynchronous notification is not supported */
		scsi_invalid_field(r);
		return;
	}
	uint32_t alloc = scsi_be16(cdb + 7);
	uint8_t tmp[8];
	memset(tmp, 0, sizeof(tmp));
	tmp[3] = 0x10; /* supported classes: media */
	if (!(cdb[4] & 0x10)) {
		tmp[2] = 0x80; /* NEA: no class asked for that we have */
		scsi_put16(tmp, 2);
		scsi_data_in(r, tmp, 4, alloc, xfer_len, buf, buf_cap);
		return;
	}
	tmp[2] = 0x04; /* media class */
	scsi_put16(tmp, 6);
	tmp[4] = m->event;
	tmp[5] = m->media ? 0x02 : 0x00; /* media present; the tray is closed */
	scsi_data_in(r, tmp, 8, alloc, xfer_len, buf, buf_cap);
	if (r->data_in_len >= 5) /* the guest saw the event code */
		m->event = SCSI_MMC_EVENT_NONE;
}

/* MODE SENSE (6/10): the CD/DVD capabilities page (0x2A), no block descriptors. */
static void mode_sense(const struct scsi_mmc *m, const uint8_t *cdb, bool ten, uint32_t xfer_len, uint8_t *buf,
		       uint32_t buf_cap, struct scsi_result *r)
{
	uint8_t pcontrol = cdb[2] >> 6, page = cdb[2] & 0x3F, subpage = cdb[3];
	uint32_t alloc = ten ? scsi_be16(cdb + 7) : cdb[4];
	if (pcontrol == 3) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_SAVING_NOT_SUPPORTED);
		return;
	}
	if ((page != 0x2A && page != 0x3F) || (subpage && !(page == 0x3F && subpage == 0xFF))) {
		scsi_invalid_field(r);
		return;
	}
	uint8_t tmp[64];
	memset(tmp, 0, sizeof(tmp));
	uint32_t hdr = ten ? 8 : 4;
	uint8_t *p = tmp + hdr;
	p[0] = 0x2A;
	p[1] = 0x1C;                 /* MMC-3 page length */
	if (pcontrol != 1) {         /* nothing is changeable */
		p[2] = 0x08 | 0x02 | 0x01; /* reads DVD-ROM, CD-RW, CD-R media */
		p[4] = 0x40 | 0x20 | 0x10; /* multi-session, mode 2 form 2 and form 1 */
		p[5] = 0x02;               /* CD-DA stream accurate (no audio commands) */
		p[6] = (uint8_t)(0x20 | 0x08 | 0x01 | (m->prevent ? 0x02 : 0)); /* tray, eject, lock, lock state */
		scsi_put16(p + 8, 176 * 24);   /* obsolete max read speed, kB/s */
		scsi_put16(p + 12, 0);         /* buffer */
		scsi_put16(p + 14, 176 * 24);  /* obsolete current read speed */
	}
	uint32_t total = hdr + 2 + p[1];
	if (ten)
		scsi_put16(tmp, (uint16_t)(total - 2));
	else
		tmp[0] = (uint8_t)(total - 1);
	scsi_data_in(r, tmp, total, alloc, xfer_len, buf, buf_cap);
}

static void read_disc_information(const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap,
				  struct scsi_result *r)
{
	if (cdb[1] & 0x07) { /* only standard disc information */
		scsi_invalid_field(r);
		return;
	}
	uint8_t tmp[34];
	memset(tmp, 0, sizeof(tmp));
	scsi_put16(tmp, sizeof(tmp) - 2);
	tmp[2] = 0x0C | 0x02; /* last session complete, disc finalized; not erasable */
	tmp[3] = 1;           /* first track */
	tmp[4] = 1;           /* sessions */
	tmp[5] = 1;           /* first track of the last session */
	tmp[6] = 1;           /* last track of the last session */
	tmp[8] = 0x00;        /* disc type: CD-DA or CD-ROM */
	scsi_put32(tmp + 16, 0xFFFFFFFFu); /* no lead-in / lead-out to write: a pressed disc */
	scsi_put32(tmp + 20, 0xFFFFFFFFu);
	scsi_data_in(r, tmp, sizeof(tmp), scsi_be16(cdb + 7), xfer_len, buf, buf_cap);
}

/* READ TRACK INFORMATION: the one track (1, session 1), complete, by LBA, track or session. */
static void read_track_information(const struct scsi_mmc *m, const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf,
				   uint32_t buf_cap, struct scsi_result *r)
{
	uint32_t number = scsi_be32(cdb + 2);
	switch (cdb[1] & 0x03) {
	case 0: /* the track holding LBA number */
		if (number >= m->blocks) {
			scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
			return;
		}
		break;
	case 1: /* track number */
	case 2: /* the first track of session number */
		if (number != 1) {
			scsi_invalid_field(r);
			return;
		}
		break;
	default:
		scsi_invalid_field(r);
		return;
	}
	uint8_t tmp[48];
	memset(tmp, 0, sizeof(tmp));
	scsi_put16(tmp, sizeof(tmp) - 2);
	tmp[2] = 1;    /* track */
	tmp[3] = 1;    /* session */
	tmp[5] = 0x04; /* track mode: data, recorded uninterrupted */
	tmp[6] = 0x01; /* data mode 1 */
	tmp[7] = 0x02; /* LRA_V: the last recorded address is valid */
	scsi_put32(tmp + 24, m->blocks > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)m->blocks); /* track size */
	scsi_put32(tmp + 28, m->blocks ? (uint32_t)(m->blocks - 1) : 0);                     /* last recorded */
	scsi_data_in(r, tmp, sizeof(tmp), scsi_be16(cdb + 7), xfer_len, buf, buf_cap);
}

static void request_sense(struct scsi_mmc *m, const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap,
			  struct scsi_result *r)
{
	if (cdb[1] & 1) { /* descriptor format not supported */
		scsi_invalid_field(r);
		return;
	}
	struct scsi_result s;
	memset(&s, 0, sizeof(s));
	if (m->unit_attention) {
		scsi_set_sense(&s, SCSI_SENSE_UNIT_ATTENTION, SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED);
		m->unit_attention = false;
	} else if (!m->media) {
		scsi_set_sense(&s, SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
	} else {
		scsi_set_sense(&s, SCSI_SENSE_NO_SENSE, SCSI_ASC_NONE);
	}
	scsi_data_in(r, s.sense, SCSI_SENSE_LEN, cdb[4], xfer_len, buf, buf_cap);
}

static void start_stop(struct scsi_mmc *m, const uint8_t *cdb, struct scsi_result *r)
{
	bool start = cdb[4] & 0x01, loej = cdb[4] & 0x02;
	if ((cdb[4] >> 4) == 0 && loej && !start) { /* eject */
		if (m->prevent) {
			scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_REMOVAL_PREVENTED);
			return;
		}
		if (m->media) {
			m->media = false;
			m->blocks = 0;
			m->event = SCSI_MMC_EVENT_MEDIA_REMOVAL;
			m->guest_ejected = true;
		}
	}
	/* start, stop, load (closing the tray brings nothing in) and power conditions: nothing to do */
	scsi_good(r);
}

static bool is_write(uint8_t op)
{
	switch (op) {
	case 0x0A: case 0x2A: case 0xAA: case 0x8A: /* WRITE 6/10/12/16 */
	case 0x2E: case 0x8E:                       /* WRITE AND VERIFY 10/16 */
	case 0x41: case 0x93: case 0x42:            /* WRITE SAME 10/16, UNMAP */
	case 0x04: case 0x35: case 0x5B: case 0xA1: /* FORMAT UNIT, SYNC CACHE, CLOSE TRACK, BLANK */
	case 0x53: case 0x5D: case 0x54:            /* RESERVE TRACK, SEND CUE SHEET, SEND OPC */
		return true;
	default:
		return false;
	}
}

/* Commands the drive answers whatever the medium (no UNIT ATTENTION, no NOT READY). */
static bool medium_independent(uint8_t op)
{
	switch (op) {
	case 0x03: /* REQUEST SENSE */
	case 0x46: /* GET CONFIGURATION */
	case 0x4A: /* GET EVENT STATUS NOTIFICATION */
		return true;
	default:
		return false;
	}
}

void scsi_mmc_execute(const struct scsi_disk *d, const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap,
		      struct scsi_result *r)
{
	struct scsi_mmc *m = d->mmc;
	uint8_t op = cdb[0];
	if (!medium_independent(op) && m->unit_attention) {
		m->unit_attention = false;
		scsi_set_sense(r, SCSI_SENSE_UNIT_ATTENTION, SCSI_ASC_MEDIUM_MAY_HAVE_CHANGED);
		return;
	}
	switch (op) {
	case 0x03:
		request_sense(m, cdb, xfer_len, buf, buf_cap, r);
		return;
	case 0x46:
		get_configuration(m, cdb, xfer_len, buf, buf_cap, r);
		return;
	case 0x4A:
		get_event_status(m, cdb, xfer_len, buf, buf_cap, r);
		return;
	case 0x1E: /* PREVENT ALLOW MEDIUM REMOVAL */
		m->prevent = cdb[4] & 0x01;
		scsi_good(r);
		return;
	case 0x1B: /* START STOP UNIT */
		start_stop(m, cdb, r);
		return;
	case 0xBB: /* SET CD SPEED: the file reads as fast as it reads */
		scsi_good(r);
		return;
	case 0x1A: case 0x5A: /* MODE SENSE 6/10 */
		mode_sense(m, cdb, op == 0x5A, xfer_len, buf, buf_cap, r);
		return;
	default:
		break;
	}
	if (is_write(op)) {
		scsi_set_sense(r, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
		return;
	}
	bool known = op == 0x00 || op == 0x25 || op == 0x08 || op == 0x28 || op == 0xA8 || op == 0x88 || op == 0x43 ||
		     op == 0x51 || op == 0x52;
	if (!known) {
		scsi_set_sense(r, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
		return;
	}
	if (!m->media) {
		scsi_set_sense(r, SCSI_SENSE_NOT_READY, SCSI_ASC_MEDIUM_NOT_PRESENT);
		return;
	}
	switch (op) {
	case 0x00: /* TEST UNIT READY */
		scsi_good(r);
		return;
	case 0x25: { /* READ CAPACITY (10); an empty ISO reports block 0 and reads none */
		uint8_t tmp[8];
		uint64_t last = m->blocks ? m->blocks - 1 : 0;
		scsi_put32(tmp, last > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)last);
		scsi_put32(tmp + 4, SCSI_MMC_BLOCK);
		scsi_data_in(r, tmp, 8, 8, xfer_len, buf, buf_cap);
		return;
	}
	case 0x08: { /* READ (6) */
		uint64_t lba = (uint64_t)(cdb[1] & 0x1F) << 16 | scsi_be16(cdb + 2);
		scsi_transfer(m->blocks, SCSI_MMC_BLOCK, d->max_transfer, false, lba, cdb[4] ? cdb[4] : 256, false, xfer_len, r);
		return;
	}
	case 0x28: /* READ (10) */
		scsi_transfer(m->blocks, SCSI_MMC_BLOCK, d->max_transfer, false, scsi_be32(cdb + 2), scsi_be16(cdb + 7), false,
			      xfer_len, r);
		return;
	case 0xA8: /* READ (12) */
		scsi_transfer(m->blocks, SCSI_MMC_BLOCK, d->max_transfer, false, scsi_be32(cdb + 2), scsi_be32(cdb + 6), false,
			      xfer_len, r);
		return;
	case 0x88: /* READ (16) */
		scsi_transfer(m->blocks, SCSI_MMC_BLOCK, d->max_transfer, false, scsi_be64(cdb + 2), scsi_be32(cdb + 10), false,
			      xfer_len, r);
		return;
	case 0x43:
		read_toc(m, cdb, xfer_len, buf, buf_cap, r);
		return;
	case 0x51:
		read_disc_information(cdb, xfer_len, buf, buf_cap, r);
		return;
	case 0x52:
		read_track_information(m, cdb, xfer_len, buf, buf_cap, r);
		return;
	}
}
