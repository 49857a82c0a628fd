/* The boot configuration parsers (worker/bootcfg.c): grub.cfg, BLS, partition tables and path
 * normalization, with well-formed and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "worker/bootcfg.h"

static struct boot_entry entry;
static char err[256];

static bool grub(const char *cfg, const char *env)
{
	memset(&entry, 0, sizeof(entry));
	err[0] = '\0';
	return bootcfg_grub_parse(cfg, strlen(cfg), env, env ? strlen(env) : 0, &entry, err, sizeof(err));
}

static const char two[] =
	"menuentry_id_option=--id\n"
	"set default=%s\n"
	"menuentry 'First' --class debian --id first {\n"
	"\tlinux /boot/vmlinuz-1 root=/dev/sda1 viridian.entry=first\n"
	"\tinitrd /boot/initrd.img-1\n"
	"}\n"
	"submenu 'More' {\n"
	"  menuentry \"Second\" $menuentry_id_option 'second' {\n"
	"    linux16 (hd0,gpt2)/boot/vmlinuz-2 quiet\n"
	"    initrd16 /boot/a.img ($root)/boot/b.img\n"
	"  }\n"
	"}\n";

static bool grub_default(const char *def)
{
	char cfg[1024];
	snprintf(cfg, sizeof(cfg), two, def);
	return grub(cfg, NULL);
}

static void test_path_normalize(void **state)
{
	(void)state;
	char out[32];
	assert_true(bootcfg_path_normalize("/boot/../../etc/shadow", out, sizeof(out)));
	assert_string_equal(out, "/etc/shadow");
	assert_true(bootcfg_path_normalize("boot/./grub//grub.cfg/", out, sizeof(out)));
	assert_string_equal(out, "/boot/grub/grub.cfg");
	assert_true(bootcfg_path_normalize("../..", out, sizeof(out)));
	assert_string_equal(out, "/");
	assert_true(bootcfg_path_normalize("/a/b/../c/..", out, sizeof(out)));
	assert_string_equal(out, "/a");
	assert_true(bootcfg_path_normalize("", out, sizeof(out)));
	assert_string_equal(out, "/");
	assert_false(bootcfg_path_normalize("/0123456789/0123456789/0123456789", out, sizeof(out)));
	assert_false(bootcfg_path_normalize("/a", out, 1));
}

static void test_grub_default_forms(void **state)
{
	(void)state;
	assert_true(grub_default("0"));
	assert_string_equal(entry.title, "First");
	assert_string_equal(entry.kernel, "/boot/vmlinuz-1");
	assert_string_equal(entry.cmdline, "BOOT_IMAGE=/boot/vmlinuz-1 root=/dev/sda1 viridian.entry=first");
	assert_int_equal(entry.ninitrd, 1);
	assert_string_equal(entry.initrd[0], "/boot/initrd.img-1");
	/* By title, by id, by a submenu path; a submenu alone boots its first entry. */
	assert_true(grub_default("\"1>0\""));
	assert_string_equal(entry.title, "Second");
	assert_string_equal(entry.kernel, "/boot/vmlinuz-2"); /* device prefix dropped */
	assert_int_equal(entry.ninitrd, 2);
	assert_string_equal(entry.initrd[1], "/boot/b.img");
	assert_true(grub_default("'More>second'"));
	assert_string_equal(entry.title, "Second");
	assert_true(grub_default("1"));
	assert_string_equal(entry.title, "Second");
	assert_true(grub_default("first"));
	assert_string_equal(entry.title, "First");
	/* Names no entry: the first, as GRUB does. */
	assert_true(grub_default("7"));
	assert_string_equal(entry.title, "First");
	assert_true(grub_default("'No such'"));
	assert_string_equal(entry.title, "First");
	assert_true(grub_default("99999999999999999999"));
	assert_string_equal(entry.title, "First");
}

/* The shape grub-mkconfig writes: conditionals, load_env, saved_entry, next_entry. */
static const char debian[] =
	"if [ -s $prefix/grubenv ]; then\n"
	"  set have_grubenv=true\n"
	"  load_env\n"
	"fi\n"
	"if [ \"${next_entry}\" ] ; then\n"
	"   set default=\"${next_entry}\"\n"
	"   set next_entry=\n"
	"else\n"
	"   set default=\"${saved_entry}\"\n"
	"fi\n"
	"if [ x\"${feature_menuentry_id}\" = xy ]; then\n"
	"  menuentry_id_option=\"--id\"\n"
	"else\n"
	"  menuentry_id_option=\"\"\n"
	"fi\n"
	"function load_video {\n"
	"  if [ x$feature_all_video_module = xy ]; then insmod all_video; else insmod efi_gop; fi\n"
	"}\n"
	"menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-u' {\n"
	"\tload_video\n"
	"\tif [ x$grub_platform = xxen ]; then insmod xzio; fi\n"
	"\tsearch --no-floppy --fs-uuid --set=root u\n"
	"\tlinux\t/boot/vmlinuz-6.1 root=UUID=u ro  quiet\n"
	"\tinitrd\t/boot/initrd.img-6.1\n"
	"}\n"
	"submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-u' {\n"
	"\tmenuentry 'Debian GNU/Linux, with Linux 6.1 (recovery mode)' $menuentry_id_option 'gnulinux-6.1-recovery-u' {\n"
	"\t\tlinux\t/boot/vmlinuz-6.1 root=UUID=u ro single\n"
	"\t}\n"
	"}\n";

static void test_grub_debian(void **state)
{
	(void)state;
	assert_true(grub(debian, NULL));
	assert_string_equal(entry.title, "Debian GNU/Linux");
	assert_string_equal(entry.cmdline, "BOOT_IMAGE=/boot/vmlinuz-6.1 root=UUID=u ro quiet");
	assert_true(grub(debian, "# GRUB Environment Block\nsaved_entry=gnulinux-advanced-u>gnulinux-6.1-recovery-u\n####"));
	assert_string_equal(entry.title, "Debian GNU/Linux, with Linux 6.1 (recovery mode)");
	assert_int_equal(entry.ninitrd, 0);
	/* next_entry (grub-reboot) wins over saved_entry. */
	assert_true(grub(debian, "saved_entry=1>0\nnext_entry=0\n"));
	assert_string_equal(entry.title, "Debian GNU/Linux");
	/* grubenv is only read where load_env runs. */
	assert_true(grub(debian + strlen("if [ -s $prefix/grubenv ]; then\n  set have_grubenv=true\n  load_env\nfi\n"), "saved_entry=1\n"));
	assert_string_equal(entry.title, "Debian GNU/Linux");
}

static void test_grub_quoting(void **state)
{
	(void)state;
	assert_true(grub("set k=/vmlinuz; set extra=\"a b\"\n"
			 "menuentry 'it''s' {\n linux $k \"x=$extra\" 'y=$extra' z=\\$extra ${extra} # comment\n"
			 " }\n", NULL));
	assert_string_equal(entry.title, "its");
	assert_string_equal(entry.kernel, "/vmlinuz");
	assert_string_equal(entry.cmdline, "BOOT_IMAGE=/vmlinuz x=a b y=$extra z=$extra a b");
	/* A line continued with a backslash, and an entry on one line. */
	assert_true(grub("menuentry x { linux /k \\\n  one two; initrd /i; }\n", NULL));
	assert_string_equal(entry.cmdline, "BOOT_IMAGE=/k one two");
	assert_string_equal(entry.initrd[0], "/i");
}

static void expect_grub_error(const char *cfg, const char *want)
{
	if (grub(cfg, NULL))
		fail_msg("parsed, wanted error \"%s\"", want);
	if (!strstr(err, want))
		fail_msg("error \"%s\", wanted \"%s\"", err, want);
	assert_null(strchr(err, '\n'));
}

static void test_grub_malformed(void **state)
{
	(void)state;
	expect_grub_error("", "no menu entries");
	expect_grub_error("set default=0\n", "no menu entries");
	expect_grub_error("menuentry 'a' {\n  insmod ext2\n}\n", "has no linux command");
	expect_grub_error("menuentry 'a' {\n  linux\n}\n", "needs a kernel path");
	expect_grub_error("menuentry 'a' {\n  linux /k\n", "ends inside a block");
	expect_grub_error("if [ a ]; then\n", "ends inside a block");
	expect_grub_error("}\n", "without a block");
	expect_grub_error("fi\n", "without if");
	expect_grub_error("menuentry 'a'\n", "without \"{\"");
	expect_grub_error("menuentry 'a {\n linux /k\n}\n", "unterminated quote");
	expect_grub_error("menuentry a {\n linux /k\n menuentry b {\n }\n}\n", "inside a menu entry");
	expect_grub_error("for x in 1 2; do echo; done\n", "loops");
	expect_grub_error("menuentry a { linux /k\n initrd /1 /2 /3 /4 /5\n}\n", "more than 4 initrds");
	expect_grub_error("menuentry a { linux /k ${unterminated", "unterminated ${");
	expect_grub_error("menuentry a { if [ x ]; then }\n", "before fi");

	/* A 1 MB line: an error naming the line, not a crash or a cut. */
	size_t big = 1u << 20;
	char *cfg = malloc(big + 64);
	strcpy(cfg, "set x=1\nmenuentry a {\n linux /k ");
	size_t n = strlen(cfg);
	memset(cfg + n, 'a', big);
	strcpy(cfg + n + big, "\n}\n");
	expect_grub_error(cfg, "line 3: longer than 16384 bytes");
	free(cfg);

	/* Variables that expand past the line limit. */
	char *exp = malloc(BOOTCFG_LINE_MAX * 2);
	strcpy(exp, "set v=");
	memset(exp + 6, 'v', BOOTCFG_PATH_MAX - 2);
	strcpy(exp + 6 + BOOTCFG_PATH_MAX - 2, "\nmenuentry a { linux /k");
	for (int i = 0; i < 20; i++)
		strcat(exp, " $v");
	strcat(exp, "\n}\n");
	expect_grub_error(exp, "after variable expansion");
	free(exp);

	/* A command line longer than the boot protocol's limit. */
	char *longcmd = malloc(BOOTCFG_CMDLINE_MAX + 64);
	strcpy(longcmd, "menuentry a { linux /k ");
	n = strlen(longcmd);
	memset(longcmd + n, 'c', BOOTCFG_CMDLINE_MAX);
	strcpy(longcmd + n + BOOTCFG_CMDLINE_MAX, "\n}\n");
	expect_grub_error(longcmd, "command line longer than");
	free(longcmd);

	/* Too many entries, too deep. */
	size_t cap = (BOOTCFG_MAX_ITEMS + 1) * 40;
	char *many = malloc(cap);
	many[0] = '\0';
	for (int i = 0; i <= BOOTCFG_MAX_ITEMS; i++)
		strcat(many, "menuentry e { linux /k\n}\n");
	expect_grub_error(many, "more than 256 menu entries");
	free(many);
	char deep[2048] = "";
	for (int i = 0; i < 20; i++)
		strcat(deep, "if [ a ]; then\n");
	expect_grub_error(deep, "nested more than");
	deep[0] = '\0';
	for (int i = 0; i < 9; i++)
		strcat(deep, "submenu s {\n");
	expect_grub_error(deep, "submenus nested more than");

	char *huge = calloc(1, BOOTCFG_FILE_MAX + 2);
	memset(huge, '#', BOOTCFG_FILE_MAX + 1);
	assert_false(bootcfg_grub_parse(huge, BOOTCFG_FILE_MAX + 1, NULL, 0, &entry, err, sizeof(err)));
	assert_non_null(strstr(err, "larger than"));
	free(huge);

	/* Many empty expansions on continued lines: no word each, no deep recursion. */
	size_t nempty = 200000;
	char *empty = malloc(nempty * 5 + 64);
	strcpy(empty, "menuentry a { linux /k");
	n = strlen(empty);
	for (size_t i = 0; i < nempty; i++, n += 5)
		memcpy(empty + n, " $e\\\n", 5);
	strcpy(empty + n, " x\n}\n");
	assert_true(grub(empty, NULL));
	assert_string_equal(entry.cmdline, "BOOT_IMAGE=/k x");
	free(empty);

	/* Bytes that are no text at all are words like others: never a crash. */
	const char junk[] = "menuentry \x01\xff { linux /k\x7f \x1b[2J\n}\n";
	assert_true(grub(junk, NULL));
	/* A tiny err buffer is cut, not overrun. */
	char small[8];
	assert_false(bootcfg_grub_parse("fi", 2, NULL, 0, &entry, small, sizeof(small)));
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

static bool bls(const char *text)
{
	return bootcfg_bls_parse(text, strlen(text), &entry, err, sizeof(err));
}

static void test_bls(void **state)
{
	(void)state;
	assert_true(bls("# comment\ntitle Fedora Linux 40\nversion 6.8\nlinux /vmlinuz-6.8\n"
			"initrd /initramfs-6.8.img\ninitrd /extra.img\noptions root=/dev/sda2 ro\noptions  quiet  \n"));
	assert_string_equal(entry.title, "Fedora Linux 40");
	assert_string_equal(entry.kernel, "/vmlinuz-6.8");
	assert_int_equal(entry.ninitrd, 2);
	assert_string_equal(entry.initrd[1], "/extra.img");
	assert_string_equal(entry.cmdline, "root=/dev/sda2 ro quiet");
	assert_true(bls("linux /k")); /* no newline at the end */
	assert_string_equal(entry.kernel, "/k");

	assert_false(bls("title no kernel\n"));
	assert_non_null(strstr(err, "no linux line"));
	assert_false(bls("efi /EFI/x.efi\n"));
	assert_non_null(strstr(err, "efi programs are not supported"));
	assert_false(bls("linux /k\ninitrd 1\ninitrd 2\ninitrd 3\ninitrd 4\ninitrd 5\n"));
	assert_non_null(strstr(err, "more than 4 initrds"));
	assert_false(bls("linux /k\noptions a\x01" "b\n"));
	assert_non_null(strstr(err, "control characters"));
	char *line = malloc(BOOTCFG_LINE_MAX + 32);
	strcpy(line, "linux /k\noptions ");
	memset(line + strlen(line), 'o', BOOTCFG_LINE_MAX);
	line[17 + BOOTCFG_LINE_MAX] = '\0';
	assert_false(bls(line));
	assert_non_null(strstr(err, "line 2: longer than"));
	free(line);
	char opts[BOOTCFG_CMDLINE_MAX + 32] = "linux /k\noptions ";
	memset(opts + strlen(opts), 'o', BOOTCFG_CMDLINE_MAX);
	opts[17 + BOOTCFG_CMDLINE_MAX] = '\0';
	assert_false(bls(opts));
	assert_non_null(strstr(err, "options longer than"));
}

static void test_bls_pick(void **state)
{
	(void)state;
	const char *names[] = { "f-6.2.conf", "f-6.10.conf", "f-6.9.conf" };
	assert_int_equal(bootcfg_bls_pick(names, 3, NULL, 0), 1); /* newest by version */
	const char conf[] = "timeout 3\ndefault f-6.9*\n";
	assert_int_equal(bootcfg_bls_pick(names, 3, conf, strlen(conf)), 2);
	const char exact[] = "default f-6.2\n"; /* without .conf */
	assert_int_equal(bootcfg_bls_pick(names, 3, exact, strlen(exact)), 0);
	const char none[] = "default nothing\n";
	assert_int_equal(bootcfg_bls_pick(names, 3, none, strlen(none)), 1);
	assert_int_equal(bootcfg_bls_pick(names, 0, NULL, 0), -1);
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static void mbr_entry(uint8_t *s0, int i, uint8_t type, uint32_t start, uint32_t count)
{
	s0[446 + i * 16 + 4] = type;
	put32(s0 + 446 + i * 16 + 8, start);
	put32(s0 + 446 + i * 16 + 12, count);
	s0[510] = 0x55;
	s0[511] = 0xAA;
}

static void test_mbr(void **state)
{
	(void)state;
	uint8_t s0[512] = { 0 };
	struct bootcfg_partition p[4];
	enum bootcfg_table kind;
	uint64_t disk = 64ull << 20;
	assert_int_equal(bootcfg_mbr_parse(s0, 512, disk, &kind, p, 4, err, sizeof(err)), 0);
	assert_int_equal(kind, BOOTCFG_TABLE_NONE);
	mbr_entry(s0, 0, 0x83, 2048, 4096);
	mbr_entry(s0, 2, 0x82, 8192, 2048);
	assert_int_equal(bootcfg_mbr_parse(s0, 512, disk, &kind, p, 4, err, sizeof(err)), 2);
	assert_int_equal(kind, BOOTCFG_TABLE_MBR);
	assert_int_equal(p[0].start, 2048 * 512);
	assert_int_equal(p[0].size, 4096 * 512);
	assert_true(bootcfg_partition_may_hold_linux(&p[0]));
	assert_false(bootcfg_partition_may_hold_linux(&p[1])); /* swap */
	/* A 4K-sector disk counts LBAs in 4 KiB. */
	assert_int_equal(bootcfg_mbr_parse(s0, 4096, disk, &kind, p, 4, err, sizeof(err)), 2);
	assert_int_equal(p[0].start, 2048 * 4096);
	/* Outside the disk (a truncated image), or wrapping around. */
	mbr_entry(s0, 1, 0x83, 100000, 100000);
	assert_int_equal(bootcfg_mbr_parse(s0, 512, disk, &kind, p, 4, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "partition 2 lies outside the disk"));
	mbr_entry(s0, 1, 0x83, 0xFFFFFFFF, 0xFFFFFFFF);
	assert_int_equal(bootcfg_mbr_parse(s0, 512, disk, &kind, p, 4, err, sizeof(err)), -1);
	mbr_entry(s0, 1, 0x83, 0, 10);
	assert_int_equal(bootcfg_mbr_parse(s0, 512, disk, &kind, p, 4, err, sizeof(err)), -1);
	/* Only as many as asked for. */
	mbr_entry(s0, 1, 0x83, 10000, 10);
	assert_int_equal(bootcfg_mbr_parse(s0, 512, disk, &kind, p, 1, err, sizeof(err)), 1);
	mbr_entry(s0, 3, 0xEE, 1, 0xFFFFFFFF);
	assert_int_equal(bootcfg_mbr_parse(s0, 512, disk, &kind, p, 4, err, sizeof(err)), 0);
	assert_int_equal(kind, BOOTCFG_TABLE_GPT);
}

#define LINUX_FS_GUID "\xAF\x3D\xC6\x0F\x83\x84\x72\x47\x8E\x79\x3D\x69\xD8\x47\x7D\xE4"
#define ESP_GUID "\x28\x73\x2A\xC1\x1F\xF8\xD2\x11\xBA\x4B\x00\xA0\xC9\x3E\xC9\x3B"

static uint8_t gpt_hdr[512], gpt_ents[128 * 128];

static void make_gpt(uint32_t nentries, uint32_t esize)
{
	memset(gpt_hdr, 0, sizeof(gpt_hdr));
	memcpy(gpt_hdr, "EFI PART", 8);
	put32(gpt_hdr + 8, 0x10000);
	put32(gpt_hdr + 12, 92);
	put64(gpt_hdr + 24, 1);
	put64(gpt_hdr + 72, 2);
	put32(gpt_hdr + 80, nentries);
	put32(gpt_hdr + 84, esize);
	size_t n = (size_t)nentries * esize;
	put32(gpt_hdr + 88, (uint32_t)crc32(0, gpt_ents, (uInt)(n < sizeof(gpt_ents) ? n : sizeof(gpt_ents))));
	put32(gpt_hdr + 16, (uint32_t)crc32(0, gpt_hdr, 92));
}

static void test_gpt(void **state)
{
	(void)state;
	uint64_t disk = 64ull << 20;
	memset(gpt_ents, 0, sizeof(gpt_ents));
	memcpy(gpt_ents, ESP_GUID, 16);
	put64(gpt_ents + 32, 2048);
	put64(gpt_ents + 40, 4095);
	memcpy(gpt_ents + 2 * 128, LINUX_FS_GUID, 16);
	put64(gpt_ents + 2 * 128 + 32, 4096);
	put64(gpt_ents + 2 * 128 + 40, 131071);
	make_gpt(128, 128);
	struct bootcfg_gpt g;
	struct bootcfg_partition p[8];
	assert_true(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	assert_int_equal(bootcfg_gpt_entries_size(&g), 128 * 128);
	assert_int_equal(bootcfg_gpt_entries_parse(gpt_ents, 128 * 128, &g, disk, p, 8, err, sizeof(err)), 2);
	assert_false(bootcfg_partition_may_hold_linux(&p[0]));
	assert_true(bootcfg_partition_may_hold_linux(&p[1]));
	assert_int_equal(p[1].start, 4096 * 512);
	assert_int_equal(p[1].size, (131071 - 4096 + 1) * 512ull);

	/* Checksums, sizes, places. */
	gpt_hdr[40] ^= 1;
	assert_false(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	assert_non_null(strstr(err, "header checksum"));
	make_gpt(128, 128);
	gpt_ents[2 * 128 + 40] ^= 1;
	assert_true(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	assert_int_equal(bootcfg_gpt_entries_parse(gpt_ents, 128 * 128, &g, disk, p, 8, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "entries checksum"));
	assert_int_equal(bootcfg_gpt_entries_parse(gpt_ents, 100, &g, disk, p, 8, err, sizeof(err)), -1);
	put64(gpt_ents + 2 * 128 + 40, 1ull << 40); /* past the end of the disk */
	make_gpt(128, 128);
	assert_true(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	assert_int_equal(bootcfg_gpt_entries_parse(gpt_ents, 128 * 128, &g, disk, p, 8, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "partition 3 lies outside the disk"));
	put64(gpt_ents + 2 * 128 + 40, 100); /* last before first */
	make_gpt(128, 128);
	assert_int_equal(bootcfg_gpt_entries_parse(gpt_ents, 128 * 128, &g, disk, p, 8, err, sizeof(err)), -1);
	make_gpt(128, 100);
	assert_false(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	assert_non_null(strstr(err, "entry size"));
	make_gpt(0x7FFFFFFF, 128);
	assert_false(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	make_gpt(128, 128);
	assert_false(bootcfg_gpt_header_parse(gpt_hdr, 512, 8192, &g, err, sizeof(err))); /* entries past a tiny disk */
	assert_non_null(strstr(err, "outside the disk"));
	put32(gpt_hdr + 12, 8);
	assert_false(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	memcpy(gpt_hdr, "NOT PART", 8);
	assert_false(bootcfg_gpt_header_parse(gpt_hdr, 512, disk, &g, err, sizeof(err)));
	assert_non_null(strstr(err, "no GPT header"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_normalize),
		cmocka_unit_test(test_grub_default_forms),
		cmocka_unit_test(test_grub_debian),
		cmocka_unit_test(test_grub_quoting),
		cmocka_unit_test(test_grub_malformed),
		cmocka_unit_test(test_bls),
		cmocka_unit_test(test_bls_pick),
		cmocka_unit_test(test_mbr),
		cmocka_unit_test(test_gpt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
