/* Export-VM, Import-VM, Compare-VM and Move-VMStorage: a VM's files going elsewhere. Export, a
 * copying import and a storage move are vmms jobs: the cmdlet follows the job (cli_wait_job)
 * unless -AsJob. The requests are built by export_cmdlet_request (pure). */
#include "cmdlet.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

json_t *export_cmdlet_request(const struct args *a, char *err, size_t errlen);

json_t *export_cmdlet_request(const struct args *a, char *err, size_t errlen)
{
	const char *c = a->cmdlet->name;
	json_t *req = json_object();
	if (!strcasecmp(c, "Export-VM")) {
		json_object_set_new(req, "op", json_string("export-vm"));
		json_object_set_new(req, "vm", json_string(arg_str(a, "Name")));
		json_object_set_new(req, "path", json_string(arg_str(a, "Path")));
		return req;
	}
	if (!strcasecmp(c, "Move-VMStorage")) {
		static const char *const keys[][2] = { { "DestinationStoragePath", "destination_storage_path" },
						       { "VirtualMachinePath", "virtual_machine_path" },
						       { "SnapshotFilePath", "snapshot_file_path" } };
		json_object_set_new(req, "op", json_string("move-vm-storage"));
		json_object_set_new(req, "vm", json_string(arg_str(a, "VMName")));
		bool any = false;
		for (int i = 0; i < 3; i++)
			if (arg_has(a, keys[i][0])) {
				json_object_set_new(req, keys[i][1], json_string(arg_str(a, keys[i][0])));
				any = true;
			}
		if (!any) {
			snprintf(err, errlen, "give -DestinationStoragePath, -VirtualMachinePath or -SnapshotFilePath");
			json_decref(req);
			return NULL;
		}
		return req;
	}
	json_object_set_new(req, "op", json_string(!strcasecmp(c, "Import-VM") ? "import-vm" : "compare-vm"));
	json_object_set_new(req, "path", json_string(arg_str(a, "Path")));
	if (arg_has(a, "Copy"))
		json_object_set_new(req, "copy", json_true());
	if (arg_has(a, "GenerateNewId"))
		json_object_set_new(req, "generate_new_id", json_true());
	static const char *const dirs[][2] = { { "VhdDestinationPath", "vhd_destination_path" },
					       { "VirtualMachinePath", "virtual_machine_path" },
					       { "SnapshotFilePath", "snapshot_file_path" } };
	for (int i = 0; i < 3; i++)
		if (arg_has(a, dirs[i][0])) {
			if (!arg_has(a, "Copy")) {
				snprintf(err, errlen, "-%s needs -Copy", dirs[i][0]);
				json_decref(req);
				return NULL;
			}
			json_object_set_new(req, dirs[i][1], json_string(arg_str(a, dirs[i][0])));
		}
	return req;
}

/* Compare-VM's report: Hyper-V's Incompatibilities (Message, MessageId, Source). */
static void print_report(FILE *f, json_t *rep)
{
	if (!json_array_size(rep))
		return;
	fprintf(f, "%-9s %-8s %-28s %s\n", "MessageId", "Blocking", "Source", "Message");
	fprintf(f, "%-9s %-8s %-28s %s\n", "---------", "--------", "------", "-------");
	size_t i;
	json_t *it;
	json_array_foreach(rep, i, it)
		fprintf(f, "%-9lld %-8s %-28s %s\n", (long long)json_integer_value(json_object_get(it, "message_id")),
			json_is_true(json_object_get(it, "blocking")) ? "Yes" : "No", json_string_value(json_object_get(it, "source")),
			json_string_value(json_object_get(it, "message")));
}

static int run(const struct args *a)
{
	char err[512];
	json_t *req = export_cmdlet_request(a, err, sizeof(err));
	if (!req)
		return cli_fail(a, "%s", err);
	json_t *r = vmms_call(req, err, sizeof(err));
	json_decref(req);
	if (!r)
		return cli_fail(a, "%s", err);
	bool json = arg_has(a, "Json");
	json_t *rep = json_object_get(r, "incompatibilities");
	int rc = 0;
	if (!json_is_true(json_object_get(r, "ok"))) {
		print_report(stderr, rep); /* what Compare-VM would have said */
		rc = cli_fail(a, "%s", json_string_value(json_object_get(r, "error")) ?: "vmms refused the request");
	} else if (!strcasecmp(a->cmdlet->name, "Compare-VM")) {
		if (json) {
			cli_print_json(r);
		} else {
			printf("VM: %s (%s), %s\n", json_string_value(json_object_get(r, "name")),
			       json_string_value(json_object_get(r, "vm_id")),
			       json_is_true(json_object_get(r, "importable")) ? "can be imported" : "cannot be imported as it is");
			print_report(stdout, rep);
		}
	} else {
		const char *job = json_string_value(json_object_get(r, "job"));
		if (!json)
			print_report(stdout, rep);
		if (job && arg_has(a, "AsJob"))
			printf("%s\n", job);
		else if (job)
			rc = cli_wait_job(a, job);
		if (!rc && json)
			cli_print_json(r);
		else if (!rc && json_string_value(json_object_get(r, "vm_id")))
			printf("imported '%s' as %s\n", json_string_value(json_object_get(r, "name")) ?: "",
			       json_string_value(json_object_get(r, "vm_id")));
	}
	json_decref(r);
	return rc;
}

static const struct param_spec export_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID), Off or Saved" },
	{ "Path", PARAM_STRING, true, false, "the folder the export goes into: <Path>/<Name>/ (absolute)" },
	{ "AsJob", PARAM_SWITCH, false, false, "print the job's id instead of waiting" },
	{ 0 },
};
static const struct param_spec import_params[] = {
	{ "Path", PARAM_STRING, true, true, "the export folder <P>/<Name>, or its Virtual Machines/<id>.json (absolute)" },
	{ "Copy", PARAM_SWITCH, false, false, "copy the files (default: register the VM where they are)" },
	{ "GenerateNewId", PARAM_SWITCH, false, false, "give the VM (and its checkpoints) new ids" },
	{ "VhdDestinationPath", PARAM_STRING, false, false, "-Copy: where the disks go (default: Get-VMHost's VirtualHardDiskPath)" },
	{ "VirtualMachinePath", PARAM_STRING, false, false, "-Copy: where the VM's folder goes (default: VirtualMachinePath)" },
	{ "SnapshotFilePath", PARAM_STRING, false, false, "-Copy: where the checkpoints' saved states go (default: the VM's folder)" },
	{ "AsJob", PARAM_SWITCH, false, false, "-Copy: print the job's id instead of waiting" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};

static const struct param_spec move_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID), Off or Saved" },
	{ "DestinationStoragePath", PARAM_STRING, false, false, "everything: <P>/Virtual Hard Disks, <P>/Snapshots, <P>/Virtual Machines/<id>" },
	{ "VirtualMachinePath", PARAM_STRING, false, false, "the VM's folder (and saved states): <P>/Virtual Machines/<id>" },
	{ "SnapshotFilePath", PARAM_STRING, false, false, "the checkpoints' saved states: <P>/<id>.vmrs" },
	{ "AsJob", PARAM_SWITCH, false, false, "print the job's id instead of waiting" },
	{ 0 },
};

const struct cmdlet cmdlet_export_vm = { "Export-VM", "export a VM with its disks, checkpoints and saved state to a folder", export_params, run };
const struct cmdlet cmdlet_import_vm = { "Import-VM", "import an exported VM (in place, or -Copy); fails with Compare-VM's report", import_params, run };
const struct cmdlet cmdlet_compare_vm = { "Compare-VM", "what of an export would not match this host (missing disks, switches, names)", import_params, run };
const struct cmdlet cmdlet_move_vmstorage = { "Move-VMStorage", "move a VM's disk chains, checkpoints and folder to other folders", move_params, run };
