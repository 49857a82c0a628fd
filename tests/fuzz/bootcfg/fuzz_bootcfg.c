/* libFuzzer: the boot configuration parsers a guest disk feeds (worker/bootcfg.c). The first
 * byte picks the parser: 0 grub.cfg (text, then after a NUL the grubenv), 1 a BLS entry and the
 * default among NUL-separated file names (then loader.conf after a second NUL run), 2 a partition
 * table (sector 0, LBA 1, then the GPT entry array), 3 path normalization. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/bootcfg.h"

static void grub(const char *p, size_t n)
{
	const char *nul = memchr(p, '\0', n);
	size_t cfglen = nul ? (size_t)(nul - p) : n;
	struct boot_entry *e = malloc(sizeof(*e));
	char err[256];
	if (e && bootcfg_grub_parse(p, cfglen, nul ? nul + 1 : NULL, nul ? n - cfglen - 1 : 0, e, err, sizeof(err))) {
		/* What the loader relies on: terminated strings within bounds. */
		if (strlen(e->kernel) >= sizeof(e->kernel) || strlen(e->cmdline) >= sizeof(e->cmdline) ||
		    e->ninitrd > BOOTCFG_MAX_INITRDS || !e->kernel[0])
			abort();
	} else if (strlen(err) >= sizeof(err)) {
		abort();
	}
	free(e);
}

static void bls(const char *p, size_t n)
{
	const char *nul = memchr(p, '\0', n);
	size_t len = nul ? (size_t)(nul - p) : n;
	struct boot_entry *e = malloc(sizeof(*e));
	char err[256];
	if (e && bootcfg_bls_parse(p, len, e, err, sizeof(err)) && (!e->kernel[0] || e->ninitrd > BOOTCFG_MAX_INITRDS))
		abort();
	free(e);
	if (!nul)
		return;
	p = nul + 1;
	n -= len + 1;
	const char *names[16];
	unsigned k = 0;
	while (n && k < 16) {
		const char *z = memchr(p, '\0', n);
		if (!z)
			break;
		names[k++] = p;
		n -= (size_t)(z - p) + 1;
		p = z + 1;
		if (n && *p == '\0') { /* a second NUL: loader.conf follows */
			p++, n--;
			break;
		}
	}
	int pick = bootcfg_bls_pick(names, k, p, n);
	if (pick < -1 || pick >= (int)k || (k && pick < 0))
		abort();
}

static void table(const uint8_t *p, size_t n)
{
	uint8_t s0[512] = { 0 }, h[512] = { 0 };
	memcpy(s0, p, n < 512 ? n : 512);
	if (n > 512)
		memcpy(h, p + 512, n - 512 < 512 ? n - 512 : 512);
	uint64_t disk = 1ull << 30;
	struct bootcfg_partition parts[BOOTCFG_MAX_PARTITIONS];
	enum bootcfg_table kind;
	char err[256];
	int r = bootcfg_mbr_parse(s0, 512, disk, &kind, parts, BOOTCFG_MAX_PARTITIONS, err, sizeof(err));
	for (int i = 0; i < r; i++)
		if (parts[i].start > disk || parts[i].size > disk - parts[i].start)
			abort();
	struct bootcfg_gpt g;
	if (kind != BOOTCFG_TABLE_GPT || !bootcfg_gpt_header_parse(h, 512, disk, &g, err, sizeof(err)))
		return;
	size_t want = bootcfg_gpt_entries_size(&g), have = n > 1024 ? n - 1024 : 0;
	uint8_t *ents = calloc(1, want);
	if (!ents)
		return;
	memcpy(ents, p + 1024, have < want ? have : want);
	r = bootcfg_gpt_entries_parse(ents, want, &g, disk, parts, BOOTCFG_MAX_PARTITIONS, err, sizeof(err));
	for (int i = 0; i < r; i++)
		if (parts[i].start > disk || parts[i].size > disk - parts[i].start)
			abort();
	free(ents);
}

static void path(const char *p, size_t n)
{
	char in[2048], out[BOOTCFG_PATH_MAX];
	size_t len = n < sizeof(in) - 1 ? n : sizeof(in) - 1;
	memcpy(in, p, len);
	in[len] = '\0';
	if (bootcfg_path_normalize(in, out, sizeof(out)) && (out[0] != '/' || strstr(out, "/../") || strstr(out, "//")))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	switch (data[0] & 3) {
	case 0: grub(p, n); break;
	case 1: bls(p, n); break;
	case 2: table(data + 1, n); break;
	case 3: path(p, n); break;
	}
	return 0;
}
