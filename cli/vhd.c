/* The VHD cmdlets: New/Get/Test/Convert/Resize/Merge/Optimize/Set-VHD. They work on files
 * directly (no management service), through the vdisk library. */
#include "cmdlet.h"
#include "vhd/vdisk.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int fail_vd(const struct args *a)
{
	return cli_fail(a, "%s", vdisk_last_error());
}

static bool sector_arg(const struct args *a, const char *name, uint32_t *out)
{
	uint64_t v = arg_size(a, name);
	if (arg_has(a, name) && v != 512 && v != 4096)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* ---- New-VHD ---- */

static const struct param_spec new_params[] = {
	{ "Path", PARAM_STRING, true, true, "file to create (.vhdx, .vhd; anything else is raw)" },
	{ "SizeBytes", PARAM_SIZE, false, false, "virtual size (not with -ParentPath)" },
	{ "Dynamic", PARAM_SWITCH, false, false, "grow on demand (the default)" },
	{ "Fixed", PARAM_SWITCH, false, false, "allocate the whole size now" },
	{ "Differencing", PARAM_SWITCH, false, false, "a child of -ParentPath" },
	{ "ParentPath", PARAM_STRING, false, false, "parent of a differencing disk" },
	{ "BlockSizeBytes", PARAM_SIZE, false, false, "VHDX 1MB-256MB (32MB); VHD 512KB-256MB (2MB)" },
	{ "LogicalSectorSizeBytes", PARAM_SIZE, false, false, "512 or 4096 (VHDX)" },
	{ "PhysicalSectorSizeBytes", PARAM_SIZE, false, false, "512 or 4096" },
	{ 0 },
};

static void print_info(const char *path, const struct vdisk_info *in, bool json);

static int new_run(const struct args *a)
{
	struct vdisk_create_params p = { 0 };
	const char *path = arg_str(a, "Path");
	p.parent_path = arg_str(a, "ParentPath");
	p.size = arg_size(a, "SizeBytes");
	p.block_size = (uint32_t)arg_size(a, "BlockSizeBytes");
	if (arg_size(a, "BlockSizeBytes") > UINT32_MAX)
		return cli_fail(a, "-BlockSizeBytes is too large");
	if (arg_has(a, "Fixed") + arg_has(a, "Dynamic") + (arg_has(a, "Differencing") || p.parent_path) > 1)
		return cli_fail(a, "choose one of -Fixed, -Dynamic, -Differencing/-ParentPath");
	if (arg_has(a, "Differencing") && !p.parent_path)
		return cli_fail(a, "-Differencing needs -ParentPath");
	if (!p.parent_path && !p.size)
		return cli_fail(a, "missing -SizeBytes");
	if (!sector_arg(a, "LogicalSectorSizeBytes", &p.logical_sector) ||
	    !sector_arg(a, "PhysicalSectorSizeBytes", &p.physical_sector))
		return cli_fail(a, "sector sizes are 512 or 4096");
	p.type = p.parent_path ? VDISK_TYPE_DIFFERENCING : arg_has(a, "Fixed") ? VDISK_TYPE_FIXED : VDISK_TYPE_DYNAMIC;
	if (vdisk_create(path, &p) < 0)
		return fail_vd(a);
	struct vdisk *d;
	if (vdisk_open(path, 0, &d) < 0)
		return fail_vd(a);
	struct vdisk_info info;
	vdisk_info(d, &info);
	vdisk_close(d);
	print_info(path, &info, false);
	return 0;
}

const struct cmdlet cmdlet_new_vhd = { "New-VHD", "create a raw, VHD or VHDX disk (fixed, dynamic, differencing)", new_params, new_run };

/* ---- Get-VHD ---- */

static const struct param_spec get_params[] = {
	{ "Path", PARAM_STRING, true, true, "disk file" },
	{ "Json", PARAM_SWITCH, false, false, "print JSON" },
	{ 0 },
};

/* GUIDs as PowerShell prints them: 8-4-4-4-12, upper case, Windows byte order. */
static void format_guid(const uint8_t b[16], char out[37])
{
	if (!memcmp(b, (uint8_t[16]){ 0 }, 16)) {
		out[0] = 0;
		return;
	}
	snprintf(out, 37, "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X", b[3], b[2],
		 b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void print_info(const char *path, const struct vdisk_info *in, bool json)
{
	char abs_path[PATH_MAX], disk_id[37];
	format_guid(in->disk_identifier, disk_id);
	if (!realpath(path, abs_path))
		snprintf(abs_path, sizeof(abs_path), "%s", path);
	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:I, s:o, s:s, s:i}",
				      "Path", abs_path, "VhdFormat", vdisk_format_name(in->format),
				      "VhdType", vdisk_type_name(in->type), "FileSize", (json_int_t)in->file_size,
				      "Size", (json_int_t)in->size, "MinimumSize", (json_int_t)in->min_size,
				      "LogicalSectorSize", (int)in->logical_sector,
				      "PhysicalSectorSize", (int)in->physical_sector, "BlockSize",
				      (json_int_t)in->block_size, "ParentPath",
				      in->parent_path[0] ? json_string(in->parent_path) : json_null(),
				      "DiskIdentifier", disk_id, "FragmentationPercentage", (int)in->fragmentation_pct);
		char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(s);
		free(s);
		json_decref(o);
		return;
	}
	printf("\nPath                    : %s\n", abs_path);
	printf("VhdFormat               : %s\n", vdisk_format_name(in->format));
	printf("VhdType                 : %s\n", vdisk_type_name(in->type));
	printf("FileSize                : %llu\n", (unsigned long long)in->file_size);
	printf("Size                    : %llu\n", (unsigned long long)in->size);
	printf("MinimumSize             : %llu\n", (unsigned long long)in->min_size);
	printf("LogicalSectorSize       : %u\n", in->logical_sector);
	printf("PhysicalSectorSize      : %u\n", in->physical_sector);
	printf("BlockSize               : %u\n", in->block_size);
	printf("ParentPath              : %s\n", in->parent_path);
	printf("DiskIdentifier          : %s\n", disk_id);
	printf("FragmentationPercentage : %u\n\n", in->fragmentation_pct);
}

static int get_run(const struct args *a)
{
	struct vdisk *d;
	if (vdisk_open(arg_str(a, "Path"), 0, &d) < 0)
		return fail_vd(a);
	struct vdisk_info info;
	vdisk_info(d, &info);
	vdisk_close(d);
	print_info(arg_str(a, "Path"), &info, arg_has(a, "Json"));
	return 0;
}

const struct cmdlet cmdlet_get_vhd = { "Get-VHD", "show a disk's format, type, sizes and parent", get_params, get_run };

/* ---- Test-VHD ---- */

static const struct param_spec path_only[] = {
	{ "Path", PARAM_STRING, true, true, "disk file" },
	{ 0 },
};

static int test_run(const struct args *a)
{
	if (vdisk_check(arg_str(a, "Path")) < 0) {
		puts("False");
		return fail_vd(a);
	}
	puts("True");
	return 0;
}

const struct cmdlet cmdlet_test_vhd = { "Test-VHD", "check a disk's structure and its parent chain", path_only, test_run };

/* ---- Convert-VHD ---- */

static const struct param_spec convert_params[] = {
	{ "Path", PARAM_STRING, true, true, "source disk (its whole chain is flattened)" },
	{ "DestinationPath", PARAM_STRING, true, false, "new file (.vhdx, .vhd, else raw)" },
	{ "VHDType", PARAM_STRING, false, false, "Fixed or Dynamic (default: as the source)" },
	{ "BlockSizeBytes", PARAM_SIZE, false, false, "block size of the new disk" },
	{ "LogicalSectorSizeBytes", PARAM_SIZE, false, false, "512 or 4096 (VHDX; our extension)" },
	{ "PhysicalSectorSizeBytes", PARAM_SIZE, false, false, "512 or 4096 (our extension)" },
	{ 0 },
};

static int convert_run(const struct args *a)
{
	struct vdisk_create_params p = { 0 };
	const char *t = arg_str(a, "VHDType");
	if (t && !strcasecmp(t, "Fixed"))
		p.type = VDISK_TYPE_FIXED;
	else if (t && !strcasecmp(t, "Dynamic"))
		p.type = VDISK_TYPE_DYNAMIC;
	else if (t)
		return cli_fail(a, "-VHDType must be Fixed or Dynamic");
	p.block_size = (uint32_t)arg_size(a, "BlockSizeBytes");
	if (!sector_arg(a, "LogicalSectorSizeBytes", &p.logical_sector) ||
	    !sector_arg(a, "PhysicalSectorSizeBytes", &p.physical_sector))
		return cli_fail(a, "sector sizes are 512 or 4096");
	struct progress pr;
	progress_init(&pr, "Converting");
	int r = vdisk_convert(arg_str(a, "Path"), arg_str(a, "DestinationPath"), &p, progress_update, &pr);
	progress_done(&pr);
	return r < 0 ? fail_vd(a) : 0;
}

const struct cmdlet cmdlet_convert_vhd = { "Convert-VHD", "copy a disk into another format or type", convert_params, convert_run };

/* ---- Resize-VHD ---- */

static const struct param_spec resize_params[] = {
	{ "Path", PARAM_STRING, true, true, "disk file" },
	{ "SizeBytes", PARAM_SIZE, true, false, "new virtual size" },
	{ 0 },
};

static int resize_run(const struct args *a)
{
	return vdisk_resize(arg_str(a, "Path"), arg_size(a, "SizeBytes")) < 0 ? fail_vd(a) : 0;
}

const struct cmdlet cmdlet_resize_vhd = { "Resize-VHD", "grow or shrink a disk's virtual size", resize_params, resize_run };

/* ---- Merge-VHD ---- */

static const struct param_spec merge_params[] = {
	{ "Path", PARAM_STRING, true, true, "differencing disk to merge (deleted afterwards)" },
	{ "DestinationPath", PARAM_STRING, false, false, "ancestor to merge into (default: the parent)" },
	{ 0 },
};

static int merge_run(const struct args *a)
{
	struct progress pr;
	progress_init(&pr, "Merging");
	int r = vdisk_merge(arg_str(a, "Path"), arg_str(a, "DestinationPath"), progress_update, &pr);
	progress_done(&pr);
	return r < 0 ? fail_vd(a) : 0;
}

const struct cmdlet cmdlet_merge_vhd = { "Merge-VHD", "merge a differencing disk into its parent or an ancestor", merge_params, merge_run };

/* ---- Optimize-VHD ---- */

static int optimize_run(const struct args *a)
{
	struct progress pr;
	progress_init(&pr, "Optimizing");
	int r = vdisk_optimize(arg_str(a, "Path"), progress_update, &pr);
	progress_done(&pr);
	return r < 0 ? fail_vd(a) : 0;
}

const struct cmdlet cmdlet_optimize_vhd = { "Optimize-VHD", "reclaim zero and unused blocks of a dynamic disk", path_only, optimize_run };

/* ---- Set-VHD ---- */

static const struct param_spec set_params[] = {
	{ "Path", PARAM_STRING, true, true, "differencing disk" },
	{ "ParentPath", PARAM_STRING, true, false, "the parent's new location" },
	{ 0 },
};

static int set_run(const struct args *a)
{
	return vdisk_set_parent(arg_str(a, "Path"), arg_str(a, "ParentPath")) < 0 ? fail_vd(a) : 0;
}

const struct cmdlet cmdlet_set_vhd = { "Set-VHD", "reconnect a differencing disk to a moved parent", set_params, set_run };
