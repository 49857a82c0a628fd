/* Shared by the saved-state writer and reader: checksums, header encoding, errors. */
#ifndef VIRIDIAN_STATE_INTERNAL_H
#define VIRIDIAN_STATE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "state/savedstate.h"

/* CRC-32C (Castagnoli); crc: 0 to start, the previous result to continue. */
uint32_t state_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable path, for tests to check the hardware one against. */
uint32_t state_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Encodes the header (little-endian) with its header_crc. */
void state_encode_file_header(struct state_file_header *h, uint16_t major, uint16_t minor,
			      const uint8_t digest[STATE_DIGEST_SIZE]);
void state_encode_section_header(struct state_section_header *h, uint32_t type,
				 uint32_t instance, uint16_t version, uint16_t flags,
				 const void *payload, uint64_t length);

/* Bytes of the largest RAM_CHUNK or RAM_PAGES payload: header plus the zstd bound of a full
 * chunk. */
size_t state_chunk_payload_max(void);

#endif
