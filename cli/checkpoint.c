/* The checkpoint cmdlets (Checkpoint-VM, Get-/Rename-/Restore-/Remove-VMCheckpoint and their
 * -VMSnapshot names) and Get-VMJob. A request that starts a long operation gets a job id from
 * vmms; the cmdlet follows the job until it ends (a progress line on a terminal, a line per
 * change otherwise) unless -AsJob, which prints the id. The requests are built by
 * checkpoint_cmdlet_request (pure, tested). */
#include "cmdlet.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

json_t *checkpoint_cmdlet_request(const struct args *a, char *err, size_t errlen);

static bool is(const struct args *a, const char *verb, const char *noun)
{
	const char *c = a->cmdlet->name;
	size_t v = strlen(verb);
	return !strncasecmp(c, verb, v) && c[v] == '-' &&
	       (!strcasecmp(c + v + 1, noun) || (!strcasecmp(noun, "VMCheckpoint") && !strcasecmp(c + v + 1, "VMSnapshot")));
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); json_decref(req); return NULL; } while (0)

json_t *checkpoint_cmdlet_request(const struct args *a, char *err, size_t errlen)
{
	json_t *req = json_object();
	const char *vm = arg_str(a, "VMName"), *name = arg_str(a, "Name");
	if (!strcasecmp(a->cmdlet->name, "Checkpoint-VM")) {
		json_object_set_new(req, "op", json_string("checkpoint"));
		vm = name; /* Checkpoint-VM -Name is the VM's */
		if (arg_has(a, "SnapshotName"))
			json_object_set_new(req, "name", json_string(arg_str(a, "SnapshotName")));
	} else if (!strcasecmp(a->cmdlet->name, "Get-VMJob")) {
		json_object_set_new(req, "op", json_string("job-status"));
		if (arg_has(a, "Id"))
			json_object_set_new(req, "id", json_string(arg_str(a, "Id")));
	} else if (is(a, "Get", "VMCheckpoint")) {
		json_object_set_new(req, "op", json_string("list-checkpoints"));
	} else if (is(a, "Rename", "VMCheckpoint")) {
		json_object_set_new(req, "op", json_string("rename-checkpoint"));
		json_object_set_new(req, "name", json_string(name));
		json_object_set_new(req, "new_name", json_string(arg_str(a, "NewName")));
	} else if (is(a, "Restore", "VMCheckpoint")) {
		json_object_set_new(req, "op", json_string("restore-checkpoint"));
		json_object_set_new(req, "name", json_string(name));
		const char *confirm = arg_str(a, "Confirm");
		if (confirm && *confirm && strcasecmp(confirm, "$false") && strcasecmp(confirm, "false"))
			FAIL("-Confirm asks a question hv does not ask: the VM is turned off without one (-Confirm:$false)");
	} else if (is(a, "Remove", "VMCheckpoint")) {
		json_object_set_new(req, "op", json_string("remove-checkpoint"));
		json_object_set_new(req, "name", json_string(name));
		if (arg_has(a, "IncludeAllChildCheckpoints") || arg_has(a, "IncludeAllChildSnapshots"))
			json_object_set_new(req, "include_children", json_true());
	} else {
		FAIL("not a checkpoint cmdlet");
	}
	if (vm)
		json_object_set_new(req, "vm", json_string(vm));
	else if (strcasecmp(a->cmdlet->name, "Get-VMJob"))
		FAIL("name a virtual machine");
	return req;
}

static void print_checkpoints(json_t *cps, const char *only)
{
	printf("%-20s %-40s %-12s %-22s %s\n", "VMName", "Name", "SnapshotType", "CreationTime", "ParentCheckpointName");
	printf("%-20s %-40s %-12s %-22s %s\n", "------", "----", "------------", "------------", "--------------------");
	size_t i;
	json_t *c;
	json_array_foreach(cps, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		if (only && strcasecmp(only, name))
			continue;
		time_t t = (time_t)(json_integer_value(json_object_get(c, "created_ms")) / 1000);
		char when[32];
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
		printf("%-20s %-40s %-12s %-22s %s%s\n", json_string_value(json_object_get(c, "vm")), name,
		       json_string_value(json_object_get(c, "type")), when, json_string_value(json_object_get(c, "parent_name")),
		       json_is_true(json_object_get(c, "current")) ? "  (current)" : "");
	}
}

static void print_jobs(json_t *jobs)
{
	printf("%-36s %-20s %-17s %-9s %-15s %s\n", "Id", "VMName", "JobType", "State", "PercentComplete", "Error");
	size_t i;
	json_t *j;
	json_array_foreach(jobs, i, j)
		printf("%-36s %-20s %-17s %-9s %-15lld %s\n", json_string_value(json_object_get(j, "id")),
		       json_string_value(json_object_get(j, "vm")), json_string_value(json_object_get(j, "kind")),
		       json_string_value(json_object_get(j, "state")), (long long)json_integer_value(json_object_get(j, "percent")),
		       json_string_value(json_object_get(j, "error")));
}

static int run(const struct args *a)
{
	char err[512];
	json_t *req = checkpoint_cmdlet_request(a, err, sizeof(err));
	if (!req)
		return cli_fail(a, "%s", err);
	json_t *r = call_ok(a, req);
	json_decref(req);
	if (!r)
		return 1;
	int rc = 0;
	bool json = arg_has(a, "Json");
	const char *job = json_string_value(json_object_get(r, "job"));
	if (!strcasecmp(a->cmdlet->name, "Get-VMJob")) {
		json_t *one = json_object_get(r, "job"), *jobs = json_object_get(r, "jobs");
		json_t *arr = one ? json_pack("[O]", one) : json_incref(jobs);
		if (json)
			cli_print_json(arr);
		else
			print_jobs(arr);
		json_decref(arr);
	} else if (is(a, "Get", "VMCheckpoint")) {
		json_t *cps = json_object_get(r, "checkpoints");
		if (json)
			cli_print_json(cps);
		else
			print_checkpoints(cps, arg_str(a, "Name"));
	} else if (job && arg_has(a, "AsJob")) {
		printf("%s\n", job);
	} else if (job) {
		rc = cli_wait_job(a, job);
	}
	json_decref(r);
	return rc;
}

static const struct param_spec checkpoint_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "SnapshotName", PARAM_STRING, false, false, "the checkpoint's name (default: \"VM - (date - time)\")" },
	{ "AsJob", PARAM_SWITCH, false, false, "print the job's id instead of waiting" },
	{ 0 },
};
static const struct param_spec get_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "Name", PARAM_STRING, false, false, "one checkpoint" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};
static const struct param_spec rename_params[] = {
	{ "VMName", PARAM_STRING, true, false, "the VM (name or GUID)" },
	{ "Name", PARAM_STRING, true, true, "the checkpoint (name or GUID)" },
	{ "NewName", PARAM_STRING, true, false, "its new name" },
	{ 0 },
};
static const struct param_spec restore_params[] = {
	{ "VMName", PARAM_STRING, true, false, "the VM (name or GUID); a running one is turned off first" },
	{ "Name", PARAM_STRING, true, true, "the checkpoint (name or GUID)" },
	{ "Confirm", PARAM_SWITCH, false, false, "-Confirm:$false (the default: no question is asked)" },
	{ "AsJob", PARAM_SWITCH, false, false, "print the job's id instead of waiting" },
	{ 0 },
};
static const struct param_spec remove_params[] = {
	{ "VMName", PARAM_STRING, true, false, "the VM (name or GUID)" },
	{ "Name", PARAM_STRING, true, true, "the checkpoint(s): a name, wildcards or a GUID" },
	{ "IncludeAllChildCheckpoints", PARAM_SWITCH, false, false, "its descendants too" },
	{ "IncludeAllChildSnapshots", PARAM_SWITCH, false, false, "the same" },
	{ "AsJob", PARAM_SWITCH, false, false, "print the merge job's id instead of waiting" },
	{ 0 },
};
static const struct param_spec job_params[] = {
	{ "Id", PARAM_STRING, false, true, "one job" },
	{ "VMName", PARAM_STRING, false, false, "one VM's jobs" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};

const struct cmdlet cmdlet_checkpoint_vm = { "Checkpoint-VM", "take a checkpoint of a VM (its CheckpointType: Standard or Production)", checkpoint_params, run };
const struct cmdlet cmdlet_get_vmcheckpoint = { "Get-VMCheckpoint", "a VM's checkpoints: name, type, time, parent", get_params, run };
const struct cmdlet cmdlet_get_vmsnapshot = { "Get-VMSnapshot", "the same as Get-VMCheckpoint", get_params, run };
const struct cmdlet cmdlet_rename_vmcheckpoint = { "Rename-VMCheckpoint", "rename a checkpoint", rename_params, run };
const struct cmdlet cmdlet_rename_vmsnapshot = { "Rename-VMSnapshot", "the same as Rename-VMCheckpoint", rename_params, run };
const struct cmdlet cmdlet_restore_vmcheckpoint = { "Restore-VMCheckpoint", "apply a checkpoint: the VM is Saved (Standard) or Off as it was then", restore_params, run };
const struct cmdlet cmdlet_restore_vmsnapshot = { "Restore-VMSnapshot", "the same as Restore-VMCheckpoint", restore_params, run };
const struct cmdlet cmdlet_remove_vmcheckpoint = { "Remove-VMCheckpoint", "delete a checkpoint; its disks merge into the chain", remove_params, run };
const struct cmdlet cmdlet_remove_vmsnapshot = { "Remove-VMSnapshot", "the same as Remove-VMCheckpoint", remove_params, run };
const struct cmdlet cmdlet_get_vmjob = { "Get-VMJob", "long operations (merges ...): state and progress", job_params, run };
