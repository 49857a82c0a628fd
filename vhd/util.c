/* Small helpers the formats share: errors, GUIDs, UTF-16, locator paths. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

static _Thread_local char last_error[1024];

const char *vdisk_last_error(void)
{
	return last_error[0] ? last_error : "no error";
}

int vd_err(int err, const char *path, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path)
		snprintf(last_error, sizeof(last_error), "%s: %s", path, msg);
	else
		snprintf(last_error, sizeof(last_error), "%s", msg);
	return -err;
}

void guid_generate(struct guid *g)
{
	if (getrandom(g->b, sizeof(g->b), 0) != (ssize_t)sizeof(g->b)) {
		/* getrandom cannot fail for 16 bytes on a booted system; never leave it zero. */
		for (int i = 0; i < 16; i++)
			g->b[i] = (uint8_t)(rand() | 1);
	}
	g->b[7] = (uint8_t)((g->b[7] & 0x0f) | 0x40); /* version 4, stored little-endian */
	g->b[8] = (uint8_t)((g->b[8] & 0x3f) | 0x80);
}

bool guid_is_zero(const struct guid *g)
{
	return buf_is_zero(g->b, sizeof(g->b));
}

void guid_format(const struct guid *g, char out[39])
{
	const uint8_t *b = g->b;
	snprintf(out, 39, "{%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}", ld_le32(b),
		 ld_le16(b + 4), ld_le16(b + 6), b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

bool guid_parse(const char *s, struct guid *g)
{
	unsigned d1, d2, d3, d4[8];
	int n = 0;
	if (sscanf(s, "{%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x}%n", &d1, &d2, &d3, &d4[0], &d4[1],
		   &d4[2], &d4[3], &d4[4], &d4[5], &d4[6], &d4[7], &n) != 11 || n != 38 || s[n])
		return false;
	st_le32(g->b, d1);
	st_le16(g->b + 4, (uint16_t)d2);
	st_le16(g->b + 6, (uint16_t)d3);
	for (int i = 0; i < 8; i++)
		g->b[8 + i] = (uint8_t)d4[i];
	return true;
}

int utf16_to_utf8(const uint8_t *in, size_t in_bytes, bool big_endian, char *out, size_t out_size)
{
	size_t o = 0;
	for (size_t i = 0; i + 1 < in_bytes; i += 2) {
		uint32_t c = big_endian ? ld_be16(in + i) : ld_le16(in + i);
		if (c == 0)
			break;
		if (c >= 0xD800 && c < 0xDC00) { /* surrogate pair */
			if (i + 3 >= in_bytes)
				return -1;
			uint32_t lo = big_endian ? ld_be16(in + i + 2) : ld_le16(in + i + 2);
			if (lo < 0xDC00 || lo >= 0xE000)
				return -1;
			c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
			i += 2;
		} else if (c >= 0xDC00 && c < 0xE000) {
			return -1;
		}
		unsigned char tmp[4];
		int n;
		if (c < 0x80)
			tmp[0] = (unsigned char)c, n = 1;
		else if (c < 0x800)
			tmp[0] = (unsigned char)(0xC0 | c >> 6), tmp[1] = (unsigned char)(0x80 | (c & 0x3F)), n = 2;
		else if (c < 0x10000)
			tmp[0] = (unsigned char)(0xE0 | c >> 12), tmp[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)),
			tmp[2] = (unsigned char)(0x80 | (c & 0x3F)), n = 3;
		else
			tmp[0] = (unsigned char)(0xF0 | c >> 18), tmp[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F)),
			tmp[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)), tmp[3] = (unsigned char)(0x80 | (c & 0x3F)), n = 4;
		if (o + (size_t)n + 1 > out_size)
			return -1;
		memcpy(out + o, tmp, (size_t)n);
		o += (size_t)n;
	}
	if (o + 1 > out_size)
		return -1;
	out[o] = 0;
	return (int)o;
}

int utf8_to_utf16(const char *in, bool big_endian, uint8_t *out, size_t out_size)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;
	while (*s) {
		uint32_t c;
		int extra;
		if (*s < 0x80)
			c = *s, extra = 0;
		else if ((*s & 0xE0) == 0xC0)
			c = *s & 0x1F, extra = 1;
		else if ((*s & 0xF0) == 0xE0)
			c = *s & 0x0F, extra = 2;
		else if ((*s & 0xF8) == 0xF0)
			c = *s & 0x07, extra = 3;
		else
			return -1;
		s++;
		for (int k = 0; k < extra; k++, s++) {
			if ((*s & 0xC0) != 0x80)
				return -1;
			c = c << 6 | (*s & 0x3F);
		}
		uint16_t units[2];
		int n = 1;
		if (c >= 0x10000) {
			c -= 0x10000;
			units[0] = (uint16_t)(0xD800 + (c >> 10)), units[1] = (uint16_t)(0xDC00 + (c & 0x3FF)), n = 2;
		} else {
			units[0] = (uint16_t)c;
		}
		for (int k = 0; k < n; k++) {
			if (o + 2 > out_size)
				return -1;
			if (big_endian)
				st_be16(out + o, units[k]);
			else
				st_le16(out + o, units[k]);
			o += 2;
		}
	}
	return (int)o;
}

void path_to_windows(char *s)
{
	for (; *s; s++)
		if (*s == '/')
			*s = '\\';
}

void path_from_windows(char *s)
{
	for (; *s; s++)
		if (*s == '\\')
			*s = '/';
}

int path_relative(const char *from, const char *target, char *out, size_t out_size)
{
	char a[PATH_MAX], b[PATH_MAX], dir[PATH_MAX];
	if (!realpath(target, b))
		return -errno;
	/* `from` may not exist yet (being created): resolve its directory only. */
	snprintf(dir, sizeof(dir), "%s", from);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	if (!realpath(dir, a))
		return -errno;
	size_t i = 0, last = 0;
	while (a[i] && a[i] == b[i])
		if (a[i++] == '/')
			last = i;
	if (!a[i] && b[i] == '/')
		last = i + 1;
	size_t o = 0, alen = strlen(a);
	bool in_name = false;
	for (size_t k = last; k < alen; k++) {
		bool sep = a[k] == '/';
		if (!sep && !in_name) {
			if (o + 4 > out_size)
				return -ENAMETOOLONG;
			memcpy(out + o, "../", 3), o += 3;
		}
		in_name = !sep;
	}
	const char *rest = b + last;
	if (o + strlen(rest) + 1 > out_size)
		return -ENAMETOOLONG;
	strcpy(out + o, rest);
	return 0;
}

bool buf_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	/* zero first byte, and every byte equal to the next: memcmp runs at memory speed */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

static int area_cmp(const void *x, const void *y)
{
	const struct area *a = x, *b = y;
	return a->off < b->off ? -1 : a->off > b->off;
}

bool areas_overlap(struct area *areas, size_t n, uint64_t *a, uint64_t *b)
{
	qsort(areas, n, sizeof(*areas), area_cmp);
	for (size_t i = 1; i < n; i++)
		if (areas[i - 1].off + areas[i - 1].len > areas[i].off) {
			*a = areas[i - 1].index, *b = areas[i].index;
			return true;
		}
	return false;
}
