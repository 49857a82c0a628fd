/* savedstate: the versioned file a VM's state is saved to (Save-VM, checkpoints, live
 * migration, export all read and write the same format; docs/savedstate.md).
 *
 * The contract:
 *  - A file is a fixed header (magic, format version, the VM's configuration digest), then
 *    typed, length-prefixed sections, each written by the component that owns the state, then
 *    an END section. Guest RAM is a RAM section followed by compressed RAM_CHUNK sections.
 *  - Writer and reader are streaming: they never seek, so a pipe or socket works.
 *  - The file is hostile input: every length is checked against what remains and against
 *    fixed caps, every header and payload carries a CRC-32C, allocations stay bounded.
 *  - Compatibility: a different MAJOR version is refused. A newer MINOR version may add
 *    sections; those flagged STATE_SECTION_OPTIONAL are skipped with a warning, unknown
 *    required ones are refused. A section's own version belongs to its component.
 *  - Every call returns 0 (or a count) on success and a negative errno on failure; after a
 *    failure state_last_error() describes it for a user.
 */
#ifndef VIRIDIAN_STATE_SAVEDSTATE_H
#define VIRIDIAN_STATE_SAVEDSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Format version: MAJOR changes break readers, MINOR changes only add sections. */
#define STATE_FORMAT_MAJOR 1
#define STATE_FORMAT_MINOR 0

#define STATE_MAGIC "VIRSTATE"
#define STATE_DIGEST_SIZE 32         /* SHA-256 */
#define STATE_SECTION_MAX (64u << 20) /* larger sections are refused as corrupt */

/* Guest RAM layout, fixed for format major 1. */
#define STATE_PAGE_SIZE 4096u
#define STATE_CHUNK_SIZE (2u << 20)
#define STATE_CHUNK_PAGES (STATE_CHUNK_SIZE / STATE_PAGE_SIZE)
#define STATE_RAM_ZSTD 1 /* state_ram_header.compression */

/* Section types, grouped by owner; the numbers are on disk and never reused. */
enum state_section_type {
	STATE_SECTION_END = 0x0000,       /* library: terminates the file, empty */
	/* hv/: the partition */
	STATE_SECTION_PARTITION = 0x0100, /* hypercall page, reference TSC page + sequence, VP indices */
	STATE_SECTION_SYNIC = 0x0101,     /* one per VP: SIMP, SIEFP, SINTx, synthetic timers */
	/* worker/: KVM's view of the machine */
	STATE_SECTION_VCPU = 0x0200,      /* one per vCPU: registers, MSRs, XSAVE, LAPIC, events, TSC */
	STATE_SECTION_IRQCHIP = 0x0201,   /* in-kernel PIC/IOAPIC and PIT */
	/* devices/ */
	STATE_SECTION_UART = 0x0300,      /* one per port: registers and FIFOs */
	STATE_SECTION_RTC = 0x0301,       /* CMOS RAM, RTC registers */
	STATE_SECTION_I8042 = 0x0302,     /* controller, keyboard and mouse state */
	STATE_SECTION_ACPI_PM = 0x0303,   /* PM1 event/control, PM timer */
	/* vmbus/ */
	STATE_SECTION_VMBUS = 0x0400,     /* negotiated version, channels, GPADLs, rings, monitor pages */
	/* vsp/ */
	STATE_SECTION_STORVSP = 0x0500,   /* one per controller, requests drained before saving */
	STATE_SECTION_NETVSP = 0x0501,    /* one per adapter: receive buffer, sections */
	STATE_SECTION_IC = 0x0502,        /* one per integration service: negotiation, transactions */
	/* library: guest RAM */
	STATE_SECTION_RAM = 0x0F00,       /* struct state_ram_header, then the RAM_CHUNKs */
	STATE_SECTION_RAM_CHUNK = 0x0F01, /* struct state_ram_chunk, then one zstd frame */
	STATE_SECTION_RAM_PAGES = 0x0F02, /* live migration: struct state_ram_pages, then one zstd frame */
};

/* Section flags. */
#define STATE_SECTION_OPTIONAL 0x0001 /* a reader that does not know the type may skip it */

/* On-disk structures, little-endian. */
struct state_file_header {
	char magic[8];                 /* STATE_MAGIC, no terminator */
	uint16_t major;                /* STATE_FORMAT_MAJOR */
	uint16_t minor;                /* STATE_FORMAT_MINOR of the writer */
	uint32_t flags;                /* none defined: written 0, ignored by readers */
	uint8_t config_digest[STATE_DIGEST_SIZE]; /* state_config_digest() of the VM */
	uint32_t header_crc;           /* CRC-32C of the bytes before it */
} __attribute__((packed));
_Static_assert(sizeof(struct state_file_header) == 52, "file header");
_Static_assert(offsetof(struct state_file_header, major) == 8, "major");
_Static_assert(offsetof(struct state_file_header, minor) == 10, "minor");
_Static_assert(offsetof(struct state_file_header, flags) == 12, "flags");
_Static_assert(offsetof(struct state_file_header, config_digest) == 16, "digest");
_Static_assert(offsetof(struct state_file_header, header_crc) == 48, "header crc");

struct state_section_header {
	uint32_t type;                 /* enum state_section_type */
	uint32_t instance;             /* which one: vCPU index, UART port, channel ...; else 0 */
	uint16_t version;              /* the owning component's version of its payload */
	uint16_t flags;                /* STATE_SECTION_* */
	uint64_t length;               /* payload bytes that follow, <= STATE_SECTION_MAX */
	uint32_t payload_crc;          /* CRC-32C of the payload */
	uint32_t header_crc;           /* CRC-32C of the bytes before it */
} __attribute__((packed));
_Static_assert(sizeof(struct state_section_header) == 28, "section header");
_Static_assert(offsetof(struct state_section_header, instance) == 4, "instance");
_Static_assert(offsetof(struct state_section_header, version) == 8, "version");
_Static_assert(offsetof(struct state_section_header, flags) == 10, "flags");
_Static_assert(offsetof(struct state_section_header, length) == 12, "length");
_Static_assert(offsetof(struct state_section_header, payload_crc) == 20, "payload crc");
_Static_assert(offsetof(struct state_section_header, header_crc) == 24, "header crc");

/* STATE_SECTION_RAM payload, version 1. */
struct state_ram_header {
	uint64_t size;                 /* bytes of guest RAM, a multiple of page_size */
	uint32_t page_size;            /* STATE_PAGE_SIZE */
	uint32_t chunk_size;           /* STATE_CHUNK_SIZE */
	uint32_t compression;          /* STATE_RAM_ZSTD */
} __attribute__((packed));
_Static_assert(sizeof(struct state_ram_header) == 20, "ram header");
_Static_assert(offsetof(struct state_ram_header, page_size) == 8, "page size");
_Static_assert(offsetof(struct state_ram_header, chunk_size) == 12, "chunk size");
_Static_assert(offsetof(struct state_ram_header, compression) == 16, "compression");

/* STATE_SECTION_RAM_CHUNK payload, version 1: the header, then one zstd frame holding the
 * chunk's present pages in order. Chunks come in ascending offset order; a chunk that is
 * absent, and a page whose bit is clear, is all zeros. */
struct state_ram_chunk {
	uint64_t offset;               /* into guest RAM, a multiple of chunk_size */
	uint8_t present[STATE_CHUNK_PAGES / 8]; /* bit i (LSB first): page i is in the frame */
} __attribute__((packed));
_Static_assert(sizeof(struct state_ram_chunk) == 72, "ram chunk");
_Static_assert(offsetof(struct state_ram_chunk, present) == 8, "present bitmap");

/* STATE_SECTION_RAM_PAGES payload, version 1 (live migration, docs/savedstate.md): pages of
 * one chunk that replace what the reader has. A page whose sent bit is clear is left as it is;
 * one with sent set and data clear becomes zeros; one with both set is the next page of the
 * frame. data is a subset of sent. They come after the RAM section (of a RAM with no chunks)
 * in any order and number: a later one for a page wins. */
struct state_ram_pages {
	uint64_t offset;               /* into guest RAM, a multiple of chunk_size */
	uint8_t sent[STATE_CHUNK_PAGES / 8];
	uint8_t data[STATE_CHUNK_PAGES / 8];
} __attribute__((packed));
_Static_assert(sizeof(struct state_ram_pages) == 136, "ram pages");
_Static_assert(offsetof(struct state_ram_pages, sent) == 8, "sent bitmap");
_Static_assert(offsetof(struct state_ram_pages, data) == 72, "data bitmap");

#define STATE_RAM_VERSION 1
#define STATE_RAM_CHUNK_VERSION 1
#define STATE_RAM_PAGES_VERSION 1

/* A description of the last failure on this thread. */
const char *state_last_error(void);
/* Sets state_last_error() and returns err (a negative errno): how a component's save or
 * restore reports what went wrong ("vmbus: channel 3: ring GPADL 7 missing"). */
int state_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The configuration digest: SHA-256 of a canonical configuration string the caller builds
 * (whatever must match for the state to be restorable: memory size, vCPUs, devices). */
int state_config_digest(const void *canonical, size_t len, uint8_t out[STATE_DIGEST_SIZE]);

/* The section type's name ("vcpu", "ram" ...), NULL when this build does not know it. */
const char *state_section_name(uint32_t type);

/* ---- Writing ---- */

struct state_writer;

/* Starts a file on fd (the header is written at once); the fd stays the caller's. */
int state_writer_open(struct state_writer **out, int fd, const uint8_t digest[STATE_DIGEST_SIZE]);

/* One section at a time: begin, put its payload, end (which writes it). A failed put is
 * remembered and reported by state_section_end(), so a component checks once. */
int state_section_begin(struct state_writer *w, uint32_t type, uint32_t instance,
			uint16_t version, uint16_t flags);
void state_put_u8(struct state_writer *w, uint8_t v);
void state_put_u16(struct state_writer *w, uint16_t v);
void state_put_u32(struct state_writer *w, uint32_t v);
void state_put_u64(struct state_writer *w, uint64_t v);
void state_put_bytes(struct state_writer *w, const void *data, size_t len);
int state_section_end(struct state_writer *w);

/* Guest RAM from one region: a RAM section, then a RAM_CHUNK for each 2 MiB chunk that has
 * a non-zero page. size must be a multiple of STATE_PAGE_SIZE. */
int state_writer_ram(struct state_writer *w, const void *ram, uint64_t size);

/* Live migration: the RAM section alone (RAM of size bytes, no chunks: all zeros so far);
 * RAM_PAGES sections fill it. */
int state_writer_ram_begin(struct state_writer *w, uint64_t size);

/* Live migration: one RAM_PAGES section with the pages of the chunk at offset (a multiple of
 * STATE_CHUNK_SIZE, below size) whose bits are set in mask (bit i, LSB first: page i of the
 * chunk); zero pages are sent as bits only. Each page is copied once and sent as copied; with
 * hashes (may be NULL), hashes[i] gets state_page_hash() of what page i was sent as. The number
 * of pages sent (0: none was selected, no section) with the section's bytes added to *sent (may
 * be NULL), or a negative errno. */
int state_writer_pages(struct state_writer *w, const void *ram, uint64_t size, uint64_t offset,
		       const uint8_t mask[STATE_CHUNK_PAGES / 8], uint64_t *hashes, uint64_t *sent);
/* A 64-bit hash of one STATE_PAGE_SIZE page: live migration's check that a page is as sent. */
uint64_t state_page_hash(const void *page);

/* Writes the END section and frees the writer (also on failure). */
int state_writer_finish(struct state_writer *w);
/* Frees the writer without an END: readers see the file as truncated. */
void state_writer_discard(struct state_writer *w);

/* ---- Reading ---- */

struct state_reader;

struct state_reader_options {
	/* The VM's digest; a file with another is refused. NULL skips the check (inspection
	 * tools, fuzzing): a restore must always pass it. */
	const uint8_t *expected_digest;
	/* Told about each skipped optional section of a newer minor version; may be NULL. */
	void (*warn)(void *ctx, const char *message);
	void *warn_ctx;
};

/* A bounds-checked view of a section's payload. A get past the end returns 0 (or zeros),
 * marks the cursor overrun and stays so: check state_cursor_ok() once after the gets. */
struct state_cursor {
	const uint8_t *data;
	size_t size;
	size_t pos;
	bool overrun;
};

uint8_t state_get_u8(struct state_cursor *c);
uint16_t state_get_u16(struct state_cursor *c);
uint32_t state_get_u32(struct state_cursor *c);
uint64_t state_get_u64(struct state_cursor *c);
void state_get_bytes(struct state_cursor *c, void *out, size_t len);
bool state_cursor_ok(const struct state_cursor *c);
size_t state_cursor_left(const struct state_cursor *c);

struct state_section {
	uint32_t type;
	uint32_t instance;
	uint16_t version;
	uint16_t flags;
	struct state_cursor payload;  /* checksum verified; valid until the next reader call */
};

/* Reads and checks the header: magic, major version, header checksum, digest. */
int state_reader_open(struct state_reader **out, int fd, const struct state_reader_options *o);
/* The writer's minor version. */
uint16_t state_reader_minor(const struct state_reader *r);

/* The next section: 1 and *sec, 0 at the END section, negative on failure. RAM_CHUNK
 * sections are never returned: state_reader_ram() consumes them after a RAM section, and
 * without that call they are checked and skipped. */
int state_reader_next(struct state_reader *r, struct state_section *sec);

/* Right after state_reader_next() returned a RAM section: fills ram, whose size must equal
 * the saved size, from the chunks that follow. Zero pages are written as zeros unless
 * flags has STATE_RAM_ZEROED (the region is known to be zero, e.g. a fresh mmap). */
#define STATE_RAM_ZEROED 0x1
int state_reader_ram(struct state_reader *r, void *ram, uint64_t size, unsigned flags);

/* A RAM_PAGES section that state_reader_next() returned: its pages into ram (size bytes, the
 * RAM section's size). Every bitmap, offset and frame size is checked first; 0, or a negative
 * errno (then ram may hold some of its pages). */
int state_reader_pages(struct state_reader *r, const struct state_section *sec, void *ram, uint64_t size);

void state_reader_close(struct state_reader *r);

#endif
