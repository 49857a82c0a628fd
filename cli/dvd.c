/* The DVD drive cmdlets: Add-/Get-/Set-/Remove-VMDvdDrive. The requests are built by
 * dvd_cmdlet_request (pure, tested); Get-VMDvdDrive prints Hyper-V's columns. */
#include "cmdlet.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

json_t *dvd_cmdlet_request(const struct args *a, char *err, size_t errlen);

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); json_decref(req); return NULL; } while (0)

/* -Path '' and -Path $null (PowerShell's way; quote it in a Unix shell) mean no disc. */
static const char *media_path(const char *p)
{
	return !p || !strcasecmp(p, "$null") ? "" : p;
}

static bool parse_loc(const char *s, long max, long *out)
{
	char *end;
	long v = s && *s ? strtol(s, &end, 10) : -1;
	if (!s || !*s || *end || v < 0 || v > max)
		return false;
	*out = v;
	return true;
}

json_t *dvd_cmdlet_request(const struct args *a, char *err, size_t errlen)
{
	const char *c = a->cmdlet->name;
	json_t *req = json_pack("{s:s}", "vm", arg_str(a, "VMName") ? arg_str(a, "VMName") : "");
	long v;
	bool add = !strcasecmp(c, "Add-VMDvdDrive"), set = !strcasecmp(c, "Set-VMDvdDrive");
	bool rm = !strcasecmp(c, "Remove-VMDvdDrive"), get = !strcasecmp(c, "Get-VMDvdDrive");
	if (!add && !set && !rm && !get)
		FAIL("not a DVD drive cmdlet");
	json_object_set_new(req, "op", json_string(add ? "add-dvd" : set ? "set-dvd" : rm ? "remove-dvd" : "get-dvd"));
	if (get)
		return req;
	const char *type = arg_str(a, "ControllerType");
	if (type && strcasecmp(type, "SCSI"))
		FAIL("-ControllerType %s: only SCSI controllers are supported (DVD drives on IDE are not)", type);
	if (arg_has(a, "ControllerNumber")) {
		if (!parse_loc(arg_str(a, "ControllerNumber"), 3, &v))
			FAIL("-ControllerNumber must be a number from 0 to 3");
		json_object_set_new(req, "controller", json_integer(v));
	}
	if (arg_has(a, "ControllerLocation")) {
		if (!parse_loc(arg_str(a, "ControllerLocation"), 63, &v))
			FAIL("-ControllerLocation must be a number from 0 to 63");
		json_object_set_new(req, "lun", json_integer(v));
	} else if (!add) {
		FAIL("-ControllerLocation names the drive");
	}
	if (set && !arg_has(a, "Path"))
		FAIL("nothing to change: give -Path (an ISO file, or '' / '$null' for no disc)");
	if ((add || set) && arg_has(a, "Path"))
		json_object_set_new(req, "path", json_string(media_path(arg_str(a, "Path"))));
	return req;
}

static int run(const struct args *a)
{
	char err[512];
	json_t *req = dvd_cmdlet_request(a, err, sizeof(err));
	if (!req)
		return cli_fail(a, "%s", err);
	json_t *r = call_ok(a, req);
	json_decref(req);
	if (!r)
		return 1;
	json_t *out = json_array(), *one = json_object_get(r, "dvd"), *all = json_object_get(r, "dvds"), *d;
	size_t i;
	if (one)
		json_array_append(all = json_array(), one);
	else
		json_incref(all);
	json_array_foreach(all, i, d)
		json_array_append_new(out, json_pack("{s:O, s:s, s:O, s:O, s:O, s:O}", "VMName", json_object_get(d, "vm"),
						     "ControllerType", "SCSI", "ControllerNumber", json_object_get(d, "controller"),
						     "ControllerLocation", json_object_get(d, "lun"), "DvdMediaType",
						     json_object_get(d, "media"), "Path", json_object_get(d, "path")));
	if (arg_has(a, "Json")) {
		cli_print_json(out);
	} else if (strcasecmp(a->cmdlet->name, "Remove-VMDvdDrive")) {
		printf("%-20s %-14s %-16s %-18s %-12s %s\n", "VMName", "ControllerType", "ControllerNumber", "ControllerLocation",
		       "DvdMediaType", "Path");
		printf("%-20s %-14s %-16s %-18s %-12s %s\n", "------", "--------------", "----------------", "------------------",
		       "------------", "----");
		json_array_foreach(out, i, d)
			printf("%-20s %-14s %-16lld %-18lld %-12s %s\n", json_string_value(json_object_get(d, "VMName")), "SCSI",
			       (long long)json_integer_value(json_object_get(d, "ControllerNumber")),
			       (long long)json_integer_value(json_object_get(d, "ControllerLocation")),
			       json_string_value(json_object_get(d, "DvdMediaType")), json_string_value(json_object_get(d, "Path")));
	}
	json_decref(all);
	json_decref(out);
	json_decref(r);
	return 0;
}

static const struct param_spec add_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); it must be Off" },
	{ "Path", PARAM_STRING, false, false, "an ISO file for the disc (absolute path; none: an empty drive)" },
	{ "ControllerType", PARAM_STRING, false, false, "SCSI (the only kind)" },
	{ "ControllerNumber", PARAM_STRING, false, false, "0 (one SCSI controller)" },
	{ "ControllerLocation", PARAM_STRING, false, false, "the LUN, 0-63 (default: the next free one, disks included)" },
	{ "Json", PARAM_SWITCH, false, false, "print the drive as JSON" },
	{ 0 },
};
static const struct param_spec get_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};
static const struct param_spec set_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); Off, Saved, or Running/Paused (the disc changes live)" },
	{ "ControllerLocation", PARAM_STRING, true, false, "the drive's LUN" },
	{ "Path", PARAM_STRING, false, false, "the new disc's ISO file; '' or '$null' ejects" },
	{ "ControllerType", PARAM_STRING, false, false, "SCSI" },
	{ "ControllerNumber", PARAM_STRING, false, false, "0" },
	{ "Json", PARAM_SWITCH, false, false, "print the drive as JSON" },
	{ 0 },
};
static const struct param_spec remove_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); it must be Off" },
	{ "ControllerLocation", PARAM_STRING, true, false, "the drive's LUN" },
	{ "ControllerType", PARAM_STRING, false, false, "SCSI" },
	{ "ControllerNumber", PARAM_STRING, false, false, "0" },
	{ "Json", PARAM_SWITCH, false, false, "print the removed drive as JSON" },
	{ 0 },
};

const struct cmdlet cmdlet_add_vmdvddrive = { "Add-VMDvdDrive", "add a DVD drive (an ISO disc or empty) to a VM's SCSI controller (VM Off)", add_params, run };
const struct cmdlet cmdlet_get_vmdvddrive = { "Get-VMDvdDrive", "a VM's DVD drives and their discs", get_params, run };
const struct cmdlet cmdlet_set_vmdvddrive = { "Set-VMDvdDrive", "change a DVD drive's disc (live on a running VM)", set_params, run };
const struct cmdlet cmdlet_remove_vmdvddrive = { "Remove-VMDvdDrive", "remove a DVD drive from a VM (VM Off; the ISO is kept)", remove_params, run };
