/* Copy-VMFile: a host file into a running guest (Guest Service Interface). A vmms job: the
 * cmdlet follows it to its end (cli_wait_job) unless -AsJob. */
#include "cmdlet.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int run(const struct args *a)
{
	const char *from = arg_str(a, "FileSource");
	if (from && strcasecmp(from, "Host"))
		return cli_fail(a, "-FileSource %s: only Host is supported (files go from the host into the guest)", from);
	char *src = cli_host_path(arg_str(a, "SourcePath"));
	if (!src)
		return cli_fail(a, "cannot use '%s' as the source (no such file, or not an absolute path with -ComputerName)",
				arg_str(a, "SourcePath"));
	json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "op", "copy-vm-file", "vm", arg_str(a, "Name"),
				"source_path", src, "destination_path", arg_str(a, "DestinationPath"),
				"create_full_path", arg_has(a, "CreateFullPath"), "force", arg_has(a, "Force"));
	free(src);
	json_t *r = call_ok(a, req);
	json_decref(req);
	if (!r)
		return 1;
	const char *job = json_string_value(json_object_get(r, "job"));
	int rc = 0;
	if (job && arg_has(a, "AsJob"))
		printf("%s\n", job);
	else if (job)
		rc = cli_wait_job(a, job);
	json_decref(r);
	return rc;
}

static const struct param_spec params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID), Running, its Guest Service Interface enabled" },
	{ "SourcePath", PARAM_STRING, true, false, "the host file" },
	{ "DestinationPath", PARAM_STRING, true, false, "the guest path of the copy, file name included (absolute)" },
	{ "FileSource", PARAM_STRING, false, false, "Host (the only direction Hyper-V has)" },
	{ "CreateFullPath", PARAM_SWITCH, false, false, "create the guest folders that do not exist" },
	{ "Force", PARAM_SWITCH, false, false, "replace a guest file of that name" },
	{ "AsJob", PARAM_SWITCH, false, false, "print the job's id instead of waiting" },
	{ 0 },
};

const struct cmdlet cmdlet_copy_vmfile = { "Copy-VMFile", "copy a host file into a running guest (Guest Service Interface)", params, run };
