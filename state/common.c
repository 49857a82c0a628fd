/* What writer and reader share: errors, the configuration digest, section names, header
 * encoding and the payload cursor. */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "internal.h"

static _Thread_local char last_error[256];

const char *state_last_error(void)
{
	return last_error;
}

int state_fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

int state_config_digest(const void *canonical, size_t len, uint8_t out[STATE_DIGEST_SIZE])
{
	unsigned int n = 0;
	if (!EVP_Digest(canonical, len, out, &n, EVP_sha256(), NULL) || n != STATE_DIGEST_SIZE)
		return state_fail(-EIO, "SHA-256 of the VM configuration failed (libcrypto)");
	return 0;
}

const char *state_section_name(uint32_t type)
{
	switch (type) {
	case STATE_SECTION_END: return "end";
	case STATE_SECTION_PARTITION: return "partition";
	case STATE_SECTION_SYNIC: return "synic";
	case STATE_SECTION_VCPU: return "vcpu";
	case STATE_SECTION_IRQCHIP: return "irqchip";
	case STATE_SECTION_UART: return "uart";
	case STATE_SECTION_RTC: return "rtc";
	case STATE_SECTION_I8042: return "i8042";
	case STATE_SECTION_ACPI_PM: return "acpi-pm";
	case STATE_SECTION_VMBUS: return "vmbus";
	case STATE_SECTION_STORVSP: return "storvsp";
	case STATE_SECTION_NETVSP: return "netvsp";
	case STATE_SECTION_IC: return "ic";
	case STATE_SECTION_RAM: return "ram";
	case STATE_SECTION_RAM_CHUNK: return "ram-chunk";
	case STATE_SECTION_RAM_PAGES: return "ram-pages";
	}
	return NULL;
}

void state_encode_file_header(struct state_file_header *h, uint16_t major, uint16_t minor,
			      const uint8_t digest[STATE_DIGEST_SIZE])
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, STATE_MAGIC, sizeof(h->magic));
	h->major = htole16(major);
	h->minor = htole16(minor);
	memcpy(h->config_digest, digest, STATE_DIGEST_SIZE);
	h->header_crc = htole32(state_crc32c(0, h, offsetof(struct state_file_header, header_crc)));
}

void state_encode_section_header(struct state_section_header *h, uint32_t type,
				 uint32_t instance, uint16_t version, uint16_t flags,
				 const void *payload, uint64_t length)
{
	h->type = htole32(type);
	h->instance = htole32(instance);
	h->version = htole16(version);
	h->flags = htole16(flags);
	h->length = htole64(length);
	h->payload_crc = htole32(state_crc32c(0, payload, length));
	h->header_crc =
		htole32(state_crc32c(0, h, offsetof(struct state_section_header, header_crc)));
}

size_t state_chunk_payload_max(void)
{
	/* The larger header of the two page-carrying sections. */
	return sizeof(struct state_ram_pages) + ZSTD_compressBound(STATE_CHUNK_SIZE);
}

/* The cursor: every get goes through take(), the one bounds check. */
static const uint8_t *take(struct state_cursor *c, size_t len)
{
	if (c->overrun || len > c->size - c->pos) {
		c->overrun = true;
		return NULL;
	}
	const uint8_t *p = c->data + c->pos;
	c->pos += len;
	return p;
}

void state_get_bytes(struct state_cursor *c, void *out, size_t len)
{
	const uint8_t *p = take(c, len);
	if (p)
		memcpy(out, p, len);
	else
		memset(out, 0, len);
}

uint8_t state_get_u8(struct state_cursor *c)
{
	uint8_t v;
	state_get_bytes(c, &v, sizeof(v));
	return v;
}

uint16_t state_get_u16(struct state_cursor *c)
{
	uint16_t v;
	state_get_bytes(c, &v, sizeof(v));
	return le16toh(v);
}

uint32_t state_get_u32(struct state_cursor *c)
{
	uint32_t v;
	state_get_bytes(c, &v, sizeof(v));
	return le32toh(v);
}

uint64_t state_get_u64(struct state_cursor *c)
{
	uint64_t v;
	state_get_bytes(c, &v, sizeof(v));
	return le64toh(v);
}

bool state_cursor_ok(const struct state_cursor *c)
{
	return !c->overrun;
}

size_t state_cursor_left(const struct state_cursor *c)
{
	return c->overrun ? 0 : c->size - c->pos;
}
