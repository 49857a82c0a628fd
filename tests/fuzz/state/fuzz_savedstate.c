/* libFuzzer: arbitrary bytes as a saved-state file or live-migration stream, read as a restore
 * would: every section's payload through the cursor, the RAM and the RAM_PAGES sections into a
 * bounded region. The reader must refuse or
 * accept without crashing, over-reading or allocating without bound.
 *
 * Input: a mode byte, then the file. Mode bit 0 recomputes every header and payload CRC-32C
 * first, so mutations get past the checksums into the RAM chunks, zstd frames and lengths. */
#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../fuzz_input.h"
#include "internal.h"
#include "state/savedstate.h"

#define MAX_RAM (8u << 20) /* the largest region a RAM section may ask to be read into */

/* The checksums a valid writer would have put there, as far as the bytes go. */
static void fix_checksums(uint8_t *file, size_t len)
{
	struct state_file_header fh;
	if (len < sizeof(fh))
		return;
	memcpy(&fh, file, sizeof(fh));
	fh.header_crc = state_crc32c(0, &fh, offsetof(struct state_file_header, header_crc));
	memcpy(file, &fh, sizeof(fh));
	for (size_t off = sizeof(fh); len - off >= sizeof(struct state_section_header);) {
		struct state_section_header h;
		memcpy(&h, file + off, sizeof(h));
		uint8_t *payload = file + off + sizeof(h);
		size_t left = len - off - sizeof(h);
		uint64_t declared = le64toh(h.length);
		uint64_t length = declared < left ? declared : left;
		state_encode_section_header(&h, le32toh(h.type), le32toh(h.instance),
					    le16toh(h.version), le16toh(h.flags), payload, length);
		h.length = htole64(declared); /* a length past the end stays so */
		h.header_crc = htole32(state_crc32c(0, &h, offsetof(struct state_section_header,
								     header_crc)));
		memcpy(file + off, &h, sizeof(h));
		off += sizeof(h) + length;
	}
}

static void read_payload(struct state_cursor *c)
{
	uint8_t blob[64];
	state_get_u8(c);
	state_get_u16(c);
	state_get_u32(c);
	while (state_cursor_ok(c) && state_cursor_left(c)) {
		state_get_u64(c);
		size_t n = state_cursor_left(c) < sizeof(blob) ? state_cursor_left(c) : sizeof(blob);
		state_get_bytes(c, blob, n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	if (!ram && !(ram = malloc(MAX_RAM)))
		abort();
	struct in in = { data, size };
	uint8_t mode = take(&in);
	uint8_t *file = malloc(in.n ? in.n : 1);
	size_t len = take_bytes(&in, file, in.n);
	if (mode & 1)
		fix_checksums(file, len);

	int fd = memfd_create("fuzz-state", 0);
	if (fd < 0 || write(fd, file, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET))
		abort();
	free(file);

	struct state_reader *r;
	if (!state_reader_open(&r, fd, NULL)) {
		struct state_section s;
		uint64_t ram_size = 0;
		while (state_reader_next(r, &s) > 0) {
			if (s.type == STATE_SECTION_RAM_PAGES) {
				if (state_reader_pages(r, &s, ram, ram_size))
					break;
				continue;
			}
			if (s.type != STATE_SECTION_RAM) {
				read_payload(&s.payload);
				continue;
			}
			/* The saved size when it fits, so chunks get read; else the mismatch. */
			struct state_cursor c = s.payload;
			uint64_t saved = state_get_u64(&c);
			ram_size = saved <= MAX_RAM ? saved : MAX_RAM;
			if (state_reader_ram(r, ram, ram_size, 0))
				break;
		}
		state_reader_close(r);
	}
	close(fd);
	return 0;
}
