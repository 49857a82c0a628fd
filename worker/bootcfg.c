/* Boot configuration parsing: partition tables, grub.cfg and BLS entries (include/worker/bootcfg.h).
 * No I/O: everything comes in as bytes the guest controls. */
#include <ctype.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "worker/bootcfg.h"

static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return false;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* Copies at most outlen-1 bytes; false when src did not fit. */
static bool copy(char *out, size_t outlen, const char *src, size_t n)
{
	bool fits = n < outlen;
	if (!fits)
		n = outlen - 1;
	memcpy(out, src, n);
	out[n] = '\0';
	return fits;
}

bool bootcfg_path_normalize(const char *in, char *out, size_t outlen)
{
	if (outlen < 2)
		return false;
	size_t n = 0;
	out[n++] = '/';
	out[n] = '\0';
	while (*in) {
		while (*in == '/')
			in++;
		size_t len = strcspn(in, "/");
		if (len == 0)
			break;
		if (len == 2 && in[0] == '.' && in[1] == '.') {
			while (n > 1 && out[n - 1] != '/')
				n--;
			if (n > 1)
				n--; /* the slash before the removed part */
			out[n] = '\0';
		} else if (!(len == 1 && in[0] == '.')) {
			if (n > 1) {
				if (n + 1 >= outlen)
					return false;
				out[n++] = '/';
			}
			if (n + len >= outlen)
				return false;
			memcpy(out + n, in, len);
			n += len;
			out[n] = '\0';
		}
		in += len;
	}
	return true;
}

/* ---- Partition tables ---- */

#define MBR_TYPE_EXTENDED_CHS 0x05
#define MBR_TYPE_EXTENDED_LBA 0x0F
#define MBR_TYPE_EXTENDED_LINUX 0x85
#define MBR_TYPE_GPT_PROTECTIVE 0xEE

int bootcfg_mbr_parse(const uint8_t s0[512], uint32_t sector_size, uint64_t disk_size,
		      enum bootcfg_table *kind, struct bootcfg_partition *out, unsigned max, char *err,
		      size_t errlen)
{
	*kind = BOOTCFG_TABLE_NONE;
	if (s0[510] != 0x55 || s0[511] != 0xAA)
		return 0;
	if (sector_size < 512) {
		fail(err, errlen, "bad sector size %u", sector_size);
		return -1;
	}
	unsigned n = 0;
	for (unsigned i = 0; i < 4; i++)
		if (s0[446 + i * 16 + 4] == MBR_TYPE_GPT_PROTECTIVE) {
			*kind = BOOTCFG_TABLE_GPT;
			return 0;
		}
	*kind = BOOTCFG_TABLE_MBR;
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = s0 + 446 + i * 16;
		uint8_t type = e[4];
		uint64_t start = (uint64_t)le32(e + 8) * sector_size, size = (uint64_t)le32(e + 12) * sector_size;
		if (type == 0 || size == 0)
			continue;
		if (start == 0 || start > disk_size || size > disk_size - start) {
			fail(err, errlen, "MBR partition %u lies outside the disk", i + 1);
			return -1;
		}
		if (n < max)
			out[n++] = (struct bootcfg_partition){ .start = start, .size = size, .mbr_type = type };
	}
	return (int)n;
}

#define GPT_HEADER_MIN 92

bool bootcfg_gpt_header_parse(const uint8_t h[512], uint32_t sector_size, uint64_t disk_size,
			      struct bootcfg_gpt *g, char *err, size_t errlen)
{
	if (memcmp(h, "EFI PART", 8) != 0)
		return fail(err, errlen, "protective MBR but no GPT header at LBA 1");
	uint32_t hsize = le32(h + 12);
	if (hsize < GPT_HEADER_MIN || hsize > 512)
		return fail(err, errlen, "GPT header size %u is invalid", hsize);
	uint8_t copyh[512];
	memcpy(copyh, h, hsize);
	memset(copyh + 16, 0, 4);
	if ((uint32_t)crc32(0, copyh, hsize) != le32(h + 16))
		return fail(err, errlen, "GPT header checksum mismatch");
	g->entries_lba = le64(h + 72);
	g->nentries = le32(h + 80);
	g->entry_size = le32(h + 84);
	g->entries_crc = le32(h + 88);
	g->sector_size = sector_size;
	if (g->entry_size < 128 || g->entry_size > 4096 || (g->entry_size & 7))
		return fail(err, errlen, "GPT entry size %u is invalid", g->entry_size);
	if (g->nentries == 0 || g->nentries > 1024)
		return fail(err, errlen, "GPT has %u partition entries (at most 1024 are read)", g->nentries);
	uint64_t bytes = (uint64_t)g->nentries * g->entry_size;
	if (sector_size < 512 || g->entries_lba < 2 || g->entries_lba > disk_size / sector_size ||
	    bytes > disk_size - g->entries_lba * sector_size)
		return fail(err, errlen, "GPT partition entries lie outside the disk");
	return true;
}

size_t bootcfg_gpt_entries_size(const struct bootcfg_gpt *g)
{
	return (size_t)g->nentries * g->entry_size;
}

int bootcfg_gpt_entries_parse(const uint8_t *buf, size_t len, const struct bootcfg_gpt *g, uint64_t disk_size,
			      struct bootcfg_partition *out, unsigned max, char *err, size_t errlen)
{
	if (len != bootcfg_gpt_entries_size(g)) {
		fail(err, errlen, "GPT partition entries truncated");
		return -1;
	}
	if ((uint32_t)crc32(0, buf, (uInt)len) != g->entries_crc) {
		fail(err, errlen, "GPT partition entries checksum mismatch");
		return -1;
	}
	static const uint8_t unused[16];
	unsigned n = 0;
	for (uint32_t i = 0; i < g->nentries; i++) {
		const uint8_t *e = buf + (size_t)i * g->entry_size;
		if (!memcmp(e, unused, 16))
			continue;
		uint64_t first = le64(e + 32), last = le64(e + 40), sectors = disk_size / g->sector_size;
		if (first == 0 || last < first || last >= sectors) {
			fail(err, errlen, "GPT partition %u lies outside the disk", i + 1);
			return -1;
		}
		if (n < max) {
			out[n] = (struct bootcfg_partition){ .start = first * g->sector_size,
							     .size = (last - first + 1) * g->sector_size };
			memcpy(out[n].gpt_type, e, 16);
			n++;
		}
	}
	return (int)n;
}

bool bootcfg_partition_may_hold_linux(const struct bootcfg_partition *p)
{
	if (p->mbr_type)
		return p->mbr_type == 0x83; /* Linux; not swap 0x82, LVM 0x8E, RAID 0xFD, extended, ESP 0xEF */
	/* GPT type GUIDs in on-disk byte order (first three fields little-endian). */
	static const uint8_t not_linux[][16] = {
		{ 0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B }, /* ESP */
		{ 0x48, 0x61, 0x68, 0x21, 0x49, 0x64, 0x6F, 0x6E, 0x74, 0x4E, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49 }, /* BIOS boot */
		{ 0x6D, 0xFD, 0x57, 0x06, 0xAB, 0xA4, 0xC4, 0x43, 0x84, 0xE5, 0x09, 0x33, 0xC8, 0x4B, 0x4F, 0x4F }, /* swap */
		{ 0x79, 0xD3, 0xD6, 0xE6, 0x07, 0xF5, 0xC2, 0x44, 0xA2, 0x3C, 0x23, 0x8F, 0x2A, 0x3D, 0xF9, 0x28 }, /* LVM */
		{ 0x0F, 0x88, 0x9D, 0xA1, 0xFC, 0x05, 0x3B, 0x4D, 0xA0, 0x06, 0x74, 0x3F, 0x0F, 0x84, 0x91, 0x1E }, /* RAID */
	};
	for (size_t i = 0; i < sizeof(not_linux) / sizeof(not_linux[0]); i++)
		if (!memcmp(p->gpt_type, not_linux[i], 16))
			return false;
	return true;
}

/* ---- grub.cfg ---- */

#define GRUB_MAX_VARS   64
#define GRUB_VAR_NAME   64
#define GRUB_MAX_WORDS  128
#define GRUB_MAX_DEPTH  16
#define GRUB_MAX_MENU_DEPTH 8

struct grub_var {
	char name[GRUB_VAR_NAME];
	char value[BOOTCFG_PATH_MAX];
};

struct grub_item {
	char title[BOOTCFG_TITLE_MAX];
	char id[BOOTCFG_TITLE_MAX];
	int parent;          /* index of the submenu it is in, -1 at the top */
	bool submenu;
	bool has_linux;
	struct boot_entry entry;
};

enum frame_kind { FRAME_IF, FRAME_MENU, FRAME_FUNCTION };

struct frame {
	enum frame_kind kind;
	bool parent_active, active, taken;
	int item;            /* FRAME_MENU: its item */
};

struct grub {
	const char *p, *end;
	unsigned line;
	size_t col;          /* bytes on the current physical line so far */
	struct grub_var vars[GRUB_MAX_VARS];
	unsigned nvars;
	const char *env;
	size_t envlen;
	struct grub_item *items; /* grown as entries appear: most files have a few */
	unsigned nitems, capacity;
	struct frame frames[GRUB_MAX_DEPTH];
	unsigned depth;
	char *err;
	size_t errlen;
	bool failed;
};

static bool gfail(struct grub *g, const char *fmt, ...)
{
	if (g->failed)
		return false;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(g->err, g->errlen, "grub.cfg line %u: %s", g->line, msg);
	g->failed = true;
	return false;
}

static const char *var_get(const struct grub *g, const char *name, size_t len)
{
	for (unsigned i = 0; i < g->nvars; i++)
		if (strlen(g->vars[i].name) == len && !memcmp(g->vars[i].name, name, len))
			return g->vars[i].value;
	return "";
}

/* Sets a variable; a name or value too long, or too many variables, are silently dropped:
 * they cannot matter to the subset parsed here. */
static void var_set(struct grub *g, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (nlen == 0 || nlen >= GRUB_VAR_NAME || vlen >= BOOTCFG_PATH_MAX)
		return;
	unsigned i = 0;
	while (i < g->nvars && !(strlen(g->vars[i].name) == nlen && !memcmp(g->vars[i].name, name, nlen)))
		i++;
	if (i == g->nvars) {
		if (g->nvars == GRUB_MAX_VARS)
			return;
		g->nvars++;
		copy(g->vars[i].name, GRUB_VAR_NAME, name, nlen);
	}
	copy(g->vars[i].value, BOOTCFG_PATH_MAX, value, vlen);
}

static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

static int peek(const struct grub *g) { return g->p < g->end ? (unsigned char)*g->p : -1; }

/* Consumes one byte, tracking the line and its length. */
static int next(struct grub *g)
{
	if (g->p >= g->end)
		return -1;
	int c = (unsigned char)*g->p++;
	if (c == '\n') {
		g->line++;
		g->col = 0;
	} else if (++g->col > BOOTCFG_LINE_MAX) {
		gfail(g, "longer than %u bytes", BOOTCFG_LINE_MAX);
		g->p = g->end;
		return -1;
	}
	return c;
}

struct wordbuf {
	char buf[BOOTCFG_LINE_MAX + 1];
	size_t n;
	char *words[GRUB_MAX_WORDS];
	unsigned nw;
};

static bool put(struct grub *g, struct wordbuf *w, const char *s, size_t len)
{
	if (len > BOOTCFG_LINE_MAX - w->n)
		return gfail(g, "longer than %u bytes after variable expansion", BOOTCFG_LINE_MAX);
	memcpy(w->buf + w->n, s, len);
	w->n += len;
	return true;
}

/* $name or ${name} after the '$' was consumed. */
static bool expand(struct grub *g, struct wordbuf *w)
{
	char name[GRUB_VAR_NAME];
	size_t n = 0;
	if (peek(g) == '{') {
		next(g);
		int c;
		while ((c = next(g)) >= 0 && c != '}')
			if (n < sizeof(name) - 1)
				name[n++] = (char)c;
		if (c < 0)
			return gfail(g, "unterminated ${");
	} else {
		while (peek(g) >= 0 && is_name_char((char)peek(g)) && n < sizeof(name) - 1)
			name[n++] = (char)next(g);
		if (n == 0)
			return put(g, w, "$", 1);
	}
	const char *v = var_get(g, name, n);
	return put(g, w, v, strlen(v));
}

enum tok { TOK_WORD, TOK_END, TOK_EOF, TOK_EMPTY };

/* The next word, or the end of a command (newline, ';'), or of the file; TOK_EMPTY for an
 * unquoted expansion to nothing, which is no word. */
static enum tok lex_one(struct grub *g, struct wordbuf *w)
{
	for (;;) {
		int c = peek(g);
		if (c == ' ' || c == '\t' || c == '\r') {
			next(g);
		} else if (c == '\\' && g->p + 1 < g->end && g->p[1] == '\n') {
			next(g);
			next(g);
		} else if (c == '#') {
			while (peek(g) >= 0 && peek(g) != '\n')
				next(g);
		} else {
			break;
		}
	}
	int c = peek(g);
	if (c < 0)
		return TOK_EOF;
	if (c == '\n' || c == ';') {
		next(g);
		return TOK_END;
	}
	size_t start = w->n;
	bool quoted = false;
	while ((c = peek(g)) >= 0 && !strchr(" \t\r\n;", c)) {
		next(g);
		if (c == '\'') {
			quoted = true;
			while ((c = next(g)) >= 0 && c != '\'') {
				char ch = (char)c;
				if (!put(g, w, &ch, 1))
					return TOK_EOF;
			}
			if (c < 0)
				return gfail(g, "unterminated quote"), TOK_EOF;
		} else if (c == '"') {
			quoted = true;
			while ((c = next(g)) >= 0 && c != '"') {
				char ch = (char)c;
				if (c == '$') {
					if (!expand(g, w))
						return TOK_EOF;
					continue;
				}
				if (c == '\\' && (peek(g) == '"' || peek(g) == '\\' || peek(g) == '$'))
					ch = (char)next(g);
				if (!put(g, w, &ch, 1))
					return TOK_EOF;
			}
			if (c < 0)
				return gfail(g, "unterminated quote"), TOK_EOF;
		} else if (c == '\\') {
			if ((c = next(g)) < 0)
				break;
			if (c == '\n') /* a line continued inside a word joins it */
				continue;
			char ch = (char)c;
			if (!put(g, w, &ch, 1))
				return TOK_EOF;
		} else if (c == '$') {
			if (!expand(g, w))
				return TOK_EOF;
		} else {
			char ch = (char)c;
			if (!put(g, w, &ch, 1))
				return TOK_EOF;
		}
	}
	if (g->failed)
		return TOK_EOF;
	if (w->n == start && !quoted)
		return TOK_EMPTY;
	if (w->nw == GRUB_MAX_WORDS)
		return gfail(g, "more than %u words in a command", GRUB_MAX_WORDS), TOK_EOF;
	if (!put(g, w, "", 1))
		return TOK_EOF;
	w->words[w->nw++] = w->buf + start;
	return TOK_WORD;
}

static enum tok lex_word(struct grub *g, struct wordbuf *w)
{
	enum tok t;
	while ((t = lex_one(g, w)) == TOK_EMPTY)
		;
	return t;
}

/* One command's words; false at the end of the file (or after an error). */
static bool lex_command(struct grub *g, struct wordbuf *w)
{
	w->n = 0;
	w->nw = 0;
	for (;;) {
		const char *before = g->p;
		unsigned line = g->line;
		size_t col = g->col;
		enum tok t = lex_word(g, w);
		if (t == TOK_EOF)
			return w->nw > 0 && !g->failed;
		if (t == TOK_END) {
			if (w->nw)
				return true;
			continue;
		}
		const char *word = w->words[w->nw - 1];
		if (!strcmp(word, "{"))
			return true;
		if (!strcmp(word, "}") && w->nw > 1) { /* "cmd }": run cmd, then the brace */
			w->nw--;
			g->p = before;
			g->line = line;
			g->col = col;
			return true;
		}
		if (!strcmp(word, "}"))
			return true;
	}
}

static bool active(const struct grub *g)
{
	return g->depth == 0 || g->frames[g->depth - 1].active;
}

static int current_menu(const struct grub *g)
{
	for (unsigned i = g->depth; i-- > 0;)
		if (g->frames[i].kind == FRAME_MENU)
			return g->frames[i].item;
	return -1;
}

/* A `[ ... ]` or `test ...` condition; other commands count as false. */
static bool condition(char **w, unsigned n)
{
	if (n == 0)
		return false;
	if (!strcmp(w[0], "[")) {
		if (strcmp(w[n - 1], "]") != 0)
			return false;
		n--;
	} else if (strcmp(w[0], "test") != 0) {
		return false;
	}
	w++;
	n--;
	bool negate = n > 0 && !strcmp(w[0], "!");
	if (negate) {
		w++;
		n--;
	}
	bool r = false;
	if (n == 1) {
		r = w[0][0] != '\0';
	} else if (n == 2) {
		if (!strcmp(w[0], "-n"))
			r = w[1][0] != '\0';
		else if (!strcmp(w[0], "-z"))
			r = w[1][0] == '\0';
		else /* -s -f -e -d on a file: the files grub.cfg tests (grubenv, fonts) are assumed there */
			r = w[0][0] == '-';
	} else if (n == 3) {
		if (!strcmp(w[1], "=") || !strcmp(w[1], "=="))
			r = !strcmp(w[0], w[2]);
		else if (!strcmp(w[1], "!="))
			r = strcmp(w[0], w[2]) != 0;
		else {
			long a = strtol(w[0], NULL, 10), b = strtol(w[2], NULL, 10);
			r = !strcmp(w[1], "-eq") ? a == b : !strcmp(w[1], "-ne") ? a != b : !strcmp(w[1], "-lt") ? a < b :
			    !strcmp(w[1], "-le") ? a <= b : !strcmp(w[1], "-gt") ? a > b : !strcmp(w[1], "-ge") ? a >= b : false;
		}
	}
	return negate ? !r : r;
}

static bool push(struct grub *g, struct frame f)
{
	if (g->depth == GRUB_MAX_DEPTH)
		return gfail(g, "blocks nested more than %u deep", GRUB_MAX_DEPTH);
	g->frames[g->depth++] = f;
	return true;
}

/* A path as grub.cfg writes it, less a "(hd0,gpt1)" / "($root)" device prefix. */
static const char *strip_device(const char *path)
{
	if (path[0] == '(') {
		const char *close = strchr(path, ')');
		if (close)
			return close + 1;
	}
	return path;
}

static bool load_env(struct grub *g)
{
	const char *p = g->env, *end = g->env + g->envlen;
	while (p && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *eq = memchr(p, '=', (size_t)(le - p));
		if (*p != '#' && eq)
			var_set(g, p, (size_t)(eq - p), eq + 1, (size_t)(le - eq - 1));
		p = le + 1;
	}
	return true;
}

static bool menu_start(struct grub *g, char **w, unsigned n, bool submenu)
{
	if (strcmp(w[n - 1], "{") != 0)
		return gfail(g, "%s without \"{\" at the end of its line", w[0]);
	n--;
	if (!active(g))
		return push(g, (struct frame){ .kind = FRAME_FUNCTION });
	int parent = current_menu(g);
	if (parent >= 0 && !g->items[parent].submenu)
		return gfail(g, "%s inside a menu entry", w[0]);
	unsigned menu_depth = 0;
	for (int p = parent; p >= 0; p = g->items[p].parent)
		menu_depth++;
	if (menu_depth >= GRUB_MAX_MENU_DEPTH)
		return gfail(g, "submenus nested more than %u deep", GRUB_MAX_MENU_DEPTH);
	if (g->nitems == BOOTCFG_MAX_ITEMS)
		return gfail(g, "more than %u menu entries", BOOTCFG_MAX_ITEMS);
	if (g->nitems == g->capacity) {
		unsigned cap = g->capacity ? g->capacity * 2 : 8;
		struct grub_item *more = realloc(g->items, cap * sizeof(*more));
		if (!more)
			return gfail(g, "out of memory");
		g->items = more;
		g->capacity = cap;
	}
	struct grub_item *it = &g->items[g->nitems];
	memset(it, 0, sizeof(*it));
	it->parent = parent;
	it->submenu = submenu;
	bool have_title = false;
	for (unsigned i = 1; i < n; i++) {
		if (!strcmp(w[i], "--id") && i + 1 < n) {
			copy(it->id, sizeof(it->id), w[i + 1], strlen(w[i + 1]));
			i++;
		} else if ((!strcmp(w[i], "--class") || !strcmp(w[i], "--users") || !strcmp(w[i], "--hotkey")) && i + 1 < n) {
			i++;
		} else if (!strncmp(w[i], "--", 2)) {
			continue;
		} else if (!have_title) {
			copy(it->title, sizeof(it->title), w[i], strlen(w[i]));
			have_title = true;
		}
	}
	copy(it->entry.title, sizeof(it->entry.title), it->title, strlen(it->title));
	if (!push(g, (struct frame){ .kind = FRAME_MENU, .parent_active = true, .active = true, .item = (int)g->nitems }))
		return false;
	g->nitems++;
	return true;
}

static bool entry_command(struct grub *g, struct grub_item *it, char **w, unsigned n)
{
	struct boot_entry *e = &it->entry;
	if (!strcmp(w[0], "linux") || !strcmp(w[0], "linux16") || !strcmp(w[0], "linuxefi")) {
		if (n < 2)
			return gfail(g, "%s needs a kernel path", w[0]);
		const char *path = strip_device(w[1]);
		if (!copy(e->kernel, sizeof(e->kernel), path, strlen(path)))
			return gfail(g, "kernel path longer than %u bytes", BOOTCFG_PATH_MAX - 1);
		/* GRUB puts the image's name first on the command line. */
		int len = snprintf(e->cmdline, sizeof(e->cmdline), "BOOT_IMAGE=%s", path);
		for (unsigned i = 2; i < n && len >= 0 && (size_t)len < sizeof(e->cmdline); i++)
			len += snprintf(e->cmdline + len, sizeof(e->cmdline) - (size_t)len, " %s", w[i]);
		if (len < 0 || (size_t)len >= sizeof(e->cmdline))
			return gfail(g, "kernel command line longer than %u bytes", BOOTCFG_CMDLINE_MAX - 1);
		it->has_linux = true;
	} else if (!strcmp(w[0], "initrd") || !strcmp(w[0], "initrd16") || !strcmp(w[0], "initrdefi")) {
		if (n - 1 > BOOTCFG_MAX_INITRDS)
			return gfail(g, "more than %u initrds", BOOTCFG_MAX_INITRDS);
		e->ninitrd = 0;
		for (unsigned i = 1; i < n; i++) {
			const char *path = strip_device(w[i]);
			if (!copy(e->initrd[e->ninitrd++], BOOTCFG_PATH_MAX, path, strlen(path)))
				return gfail(g, "initrd path longer than %u bytes", BOOTCFG_PATH_MAX - 1);
		}
	}
	return true;
}

static bool command(struct grub *g, char **w, unsigned n)
{
	if (n == 0)
		return true;
	const char *c = w[0];
	struct frame *top = g->depth ? &g->frames[g->depth - 1] : NULL;
	if (!strcmp(c, "then") || !strcmp(c, "do")) {
		return command(g, w + 1, n - 1);
	} else if (!strcmp(c, "if")) {
		bool pa = active(g);
		bool cond = pa && condition(w + 1, n - 1);
		return push(g, (struct frame){ .kind = FRAME_IF, .parent_active = pa, .active = cond, .taken = cond });
	} else if (!strcmp(c, "elif") || !strcmp(c, "else") || !strcmp(c, "fi")) {
		if (!top || top->kind != FRAME_IF)
			return gfail(g, "%s without if", c);
		if (!strcmp(c, "fi")) {
			g->depth--;
			return true;
		}
		bool cond = !strcmp(c, "else") || condition(w + 1, n - 1);
		top->active = top->parent_active && !top->taken && cond;
		top->taken |= top->active;
		return !strcmp(c, "else") ? command(g, w + 1, n - 1) : true;
	} else if (!strcmp(c, "menuentry") || !strcmp(c, "submenu")) {
		return menu_start(g, w, n, c[0] == 's');
	} else if (!strcmp(c, "function")) {
		if (strcmp(w[n - 1], "{") != 0)
			return gfail(g, "function without \"{\"");
		return push(g, (struct frame){ .kind = FRAME_FUNCTION });
	} else if (!strcmp(c, "}")) {
		if (!top || top->kind == FRAME_IF)
			return gfail(g, top ? "\"}\" before fi" : "\"}\" without a block");
		g->depth--;
		return true;
	} else if (!strcmp(c, "while") || !strcmp(c, "for") || !strcmp(c, "until") || !strcmp(c, "done")) {
		return gfail(g, "loops (%s) are not supported", c);
	}
	if (!active(g))
		return true;
	int menu = current_menu(g);
	if (menu >= 0 && !g->items[menu].submenu)
		return entry_command(g, &g->items[menu], w, n);
	if (!strcmp(c, "load_env"))
		return load_env(g);
	unsigned first = !strcmp(c, "set") ? 1 : 0;
	for (unsigned i = first; i < n; i++) {
		const char *eq = strchr(w[i], '=');
		if (eq && eq > w[i])
			var_set(g, w[i], (size_t)(eq - w[i]), eq + 1, strlen(eq + 1));
		else if (!first || !eq)
			break; /* not an assignment: some other command */
	}
	return true;
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* The item "a>b>c" names: indexes, titles or ids, one per submenu level; -1 if none. */
static int find_default(const struct grub *g, const char *def)
{
	int parent = -1, found = -1;
	while (*def) {
		size_t len = strcspn(def, ">");
		found = -1;
		if (all_digits(def, len)) {
			unsigned long want = len <= 4 ? strtoul(def, NULL, 10) : ULONG_MAX, k = 0;
			for (unsigned i = 0; i < g->nitems && found < 0; i++)
				if (g->items[i].parent == parent && k++ == want)
					found = (int)i;
		} else {
			for (unsigned i = 0; i < g->nitems && found < 0; i++) {
				const struct grub_item *it = &g->items[i];
				if (it->parent == parent &&
				    ((strlen(it->title) == len && !memcmp(it->title, def, len)) ||
				     (strlen(it->id) == len && !memcmp(it->id, def, len))))
					found = (int)i;
			}
		}
		if (found < 0)
			return -1;
		parent = found;
		def += len;
		if (*def == '>')
			def++;
	}
	return found;
}

bool bootcfg_grub_parse(const char *text, size_t len, const char *grubenv, size_t envlen,
			struct boot_entry *out, char *err, size_t errlen)
{
	if (len > BOOTCFG_FILE_MAX)
		return fail(err, errlen, "grub.cfg is larger than %u bytes", BOOTCFG_FILE_MAX);
	if (envlen > BOOTCFG_FILE_MAX)
		grubenv = NULL;
	struct grub *g = malloc(sizeof(*g));
	struct wordbuf *w = malloc(sizeof(*w));
	if (!g || !w) {
		free(g);
		free(w);
		return fail(err, errlen, "out of memory");
	}
	*g = (struct grub){ .p = text, .end = text + len, .line = 1, .env = grubenv, .envlen = grubenv ? envlen : 0,
			    .err = err, .errlen = errlen };
	/* What GRUB 2 itself defines, so that the feature tests grub-mkconfig writes pass. */
	static const char *const builtins[][2] = {
		{ "feature_menuentry_id", "y" }, { "feature_default_font_path", "y" }, { "feature_all_video_module", "y" },
		{ "feature_timeout_style", "y" }, { "feature_platform_search_hint", "y" }, { "grub_platform", "pc" },
		{ "grub_cpu", "i386" },
	};
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		var_set(g, builtins[i][0], strlen(builtins[i][0]), builtins[i][1], strlen(builtins[i][1]));
	bool ok = true;
	while (ok && lex_command(g, w))
		ok = command(g, w->words, w->nw);
	ok = ok && !g->failed;
	if (ok && g->depth)
		ok = gfail(g, "the file ends inside a block (a missing \"}\" or fi)");
	int pick = -1;
	if (ok) {
		const char *def = var_get(g, "default", 7);
		pick = find_default(g, def);
		if (pick < 0) /* GRUB falls back to the first entry */
			pick = find_default(g, "0");
		while (pick >= 0 && g->items[pick].submenu) { /* a submenu: its first entry */
			int child = -1;
			for (unsigned i = (unsigned)pick + 1; i < g->nitems && child < 0; i++)
				if (g->items[i].parent == pick)
					child = (int)i;
			if (child < 0) {
				ok = fail(err, errlen, "grub.cfg: the default submenu '%.100s' is empty", g->items[pick].title);
				break;
			}
			pick = child;
		}
		if (ok && pick < 0)
			ok = fail(err, errlen, "grub.cfg has no menu entries");
		if (ok && !g->items[pick].has_linux)
			ok = fail(err, errlen, "grub.cfg: the default entry '%.100s' has no linux command", g->items[pick].title);
	}
	if (ok)
		*out = g->items[pick].entry;
	free(g->items);
	free(g);
	free(w);
	return ok;
}

/* ---- BLS ---- */

bool bootcfg_bls_parse(const char *text, size_t len, struct boot_entry *e, char *err, size_t errlen)
{
	if (len > BOOTCFG_FILE_MAX)
		return fail(err, errlen, "BLS entry is larger than %u bytes", BOOTCFG_FILE_MAX);
	memset(e, 0, sizeof(*e));
	size_t cmdlen = 0;
	const char *p = text, *end = text + len;
	for (unsigned line = 1; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if ((size_t)(le - p) > BOOTCFG_LINE_MAX)
			return fail(err, errlen, "BLS entry line %u: longer than %u bytes", line, BOOTCFG_LINE_MAX);
		while (p < le && isspace((unsigned char)*p))
			p++;
		const char *key = p;
		while (p < le && !isspace((unsigned char)*p))
			p++;
		size_t klen = (size_t)(p - key);
		while (p < le && isspace((unsigned char)*p))
			p++;
		const char *val = p;
		size_t vlen = (size_t)(le - val);
		while (vlen && isspace((unsigned char)val[vlen - 1]))
			vlen--;
#define KEY(s) (klen == sizeof(s) - 1 && !memcmp(key, s, klen))
		if (klen == 0 || key[0] == '#') {
			/* blank or comment */
		} else if (KEY("title")) {
			copy(e->title, sizeof(e->title), val, vlen);
		} else if (KEY("linux")) {
			if (!copy(e->kernel, sizeof(e->kernel), val, vlen))
				return fail(err, errlen, "BLS entry line %u: kernel path too long", line);
		} else if (KEY("initrd")) {
			if (e->ninitrd == BOOTCFG_MAX_INITRDS)
				return fail(err, errlen, "BLS entry line %u: more than %u initrds", line, BOOTCFG_MAX_INITRDS);
			if (!copy(e->initrd[e->ninitrd++], BOOTCFG_PATH_MAX, val, vlen))
				return fail(err, errlen, "BLS entry line %u: initrd path too long", line);
		} else if (KEY("options")) {
			if (cmdlen + (cmdlen ? 1 : 0) + vlen >= sizeof(e->cmdline))
				return fail(err, errlen, "BLS entry line %u: options longer than %u bytes", line, BOOTCFG_CMDLINE_MAX - 1);
			if (cmdlen)
				e->cmdline[cmdlen++] = ' ';
			memcpy(e->cmdline + cmdlen, val, vlen);
			cmdlen += vlen;
			e->cmdline[cmdlen] = '\0';
		} else if (KEY("efi")) {
			return fail(err, errlen, "BLS entry line %u: efi programs are not supported (a linux kernel is)", line);
		}
#undef KEY
		p = le + 1;
	}
	if (!e->kernel[0])
		return fail(err, errlen, "BLS entry has no linux line");
	for (const char *s = e->cmdline; *s; s++)
		if ((unsigned char)*s < 0x20)
			return fail(err, errlen, "BLS entry options contain control characters");
	return true;
}

int bootcfg_bls_pick(const char *const *names, unsigned n, const char *loader_conf, size_t len)
{
	char pattern[BOOTCFG_PATH_MAX] = "";
	const char *p = loader_conf, *end = loader_conf ? loader_conf + (len > BOOTCFG_FILE_MAX ? 0 : len) : NULL;
	while (p && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if ((size_t)(le - p) > 8 && !memcmp(p, "default", 7) && isspace((unsigned char)p[7])) {
			const char *v = p + 8;
			while (v < le && isspace((unsigned char)*v))
				v++;
			size_t vlen = (size_t)(le - v);
			while (vlen && isspace((unsigned char)v[vlen - 1]))
				vlen--;
			copy(pattern, sizeof(pattern), v, vlen);
		}
		p = le + 1;
	}
	int best = -1;
	for (unsigned i = 0; i < n; i++) {
		if (pattern[0]) {
			char base[BOOTCFG_PATH_MAX];
			size_t l = strlen(names[i]);
			copy(base, sizeof(base), names[i], l > 5 && !strcmp(names[i] + l - 5, ".conf") ? l - 5 : l);
			if (!fnmatch(pattern, names[i], 0) || !fnmatch(pattern, base, 0))
				return (int)i;
		}
		if (best < 0 || strverscmp(names[i], names[best]) > 0)
			best = (int)i;
	}
	return best;
}
