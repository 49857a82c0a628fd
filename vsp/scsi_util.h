/* Internal to the SCSI target (vsp/scsi.c, vsp/scsi_mmc.c): big-endian field access and the
 * answer builders both the disk and the CD/DVD command sets use. */
#ifndef VIRIDIAN_VSP_SCSI_UTIL_H
#define VIRIDIAN_VSP_SCSI_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "vsp/scsi.h"

static inline uint16_t scsi_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t scsi_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t scsi_be64(const uint8_t *p) { return (uint64_t)scsi_be32(p) << 32 | scsi_be32(p + 4); }
static inline void scsi_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void scsi_put32(uint8_t *p, uint32_t v) { scsi_put16(p, (uint16_t)(v >> 16)); scsi_put16(p + 2, (uint16_t)v); }
static inline void scsi_put64(uint8_t *p, uint64_t v) { scsi_put32(p, (uint32_t)(v >> 32)); scsi_put32(p + 4, (uint32_t)v); }

void scsi_good(struct scsi_result *r);
void scsi_invalid_field(struct scsi_result *r);
/* GOOD with the n-byte answer in tmp, cut to the allocation length, the transfer length and
 * the buffer. */
void scsi_data_in(struct scsi_result *r, const uint8_t *tmp, uint32_t n, uint32_t alloc, uint32_t xfer_len,
		  uint8_t *buf, uint32_t buf_cap);
/* READ/WRITE of count blocks at lba on a medium of `blocks` blocks of bsize bytes: checks the
 * count against max_transfer and xfer_len and the range (LBA OUT OF RANGE), then sets the
 * disk operation (or GOOD for count 0). */
void scsi_transfer(uint64_t blocks, uint32_t bsize, uint32_t max_transfer, bool write, uint64_t lba, uint64_t count,
		   bool fua, uint32_t xfer_len, struct scsi_result *r);

/* The CD/DVD command set for d (d->mmc set), every command but INQUIRY. */
void scsi_mmc_execute(const struct scsi_disk *d, const uint8_t *cdb, uint32_t xfer_len, uint8_t *buf, uint32_t buf_cap,
		      struct scsi_result *r);

#endif
