/* Copy-VMFile -FileSource Host: a host file into a running guest through its Guest Service
 * Interface (the worker's copy-file, vsp/fcopy.h). A job follows the worker's progress; nothing
 * on the host changes, so there is no journal: a vmms restart loses the job, not the copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define POLL_MS 200

struct copy_ctx {
	char vm_id[37];
	char sock[PATH_MAX];
	int64_t next_poll_ms;
};

static enum vmms_step copy_step(void *owner, struct vmms_job *j)
{
	struct vmms *s = owner;
	struct copy_ctx *c = j->ctx;
	int64_t now = mono_ms();
	if (now < c->next_poll_ms)
		return VMMS_STEP_MORE;
	c->next_poll_ms = now + POLL_MS;
	struct vmms_worker *w = worker_of(s, c->vm_id);
	json_t *st = w ? worker_call(c->sock, "{\"op\":\"status\"}", 2000) : NULL;
	if (!st) {
		snprintf(j->error, sizeof(j->error), "the VM stopped during the copy");
		return VMMS_STEP_FAILED;
	}
	json_t *fc = json_object_get(st, "file_copy");
	const char *state = json_string_value(json_object_get(fc, "state"));
	json_int_t bytes = json_integer_value(json_object_get(fc, "bytes"));
	json_int_t total = json_integer_value(json_object_get(fc, "total"));
	enum vmms_step r = VMMS_STEP_MORE;
	if (!state) {
		snprintf(j->error, sizeof(j->error), "the worker lost the copy");
		r = VMMS_STEP_FAILED;
	} else if (!strcmp(state, "done")) {
		r = VMMS_STEP_DONE;
	} else if (!strcmp(state, "failed")) {
		snprintf(j->error, sizeof(j->error), "%s", json_string_value(json_object_get(fc, "error")) ?: "the copy failed");
		r = VMMS_STEP_FAILED;
	} else if (total > 0) {
		j->percent = (int)(bytes * 100 / total);
		if (j->percent > 99)
			j->percent = 99; /* 100 once the guest closed the file */
	}
	if (r != VMMS_STEP_MORE)
		vm_event(s, c->vm_id, r == VMMS_STEP_DONE ? "Information" : "Error", "Copy-VMFile to %s: %s",
			 json_string_value(json_object_get(fc, "destination")) ?: "?",
			 r == VMMS_STEP_DONE ? "done" : j->error);
	json_decref(st);
	return r;
}

static json_t *op_copy(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *src = jstr(req, "source_path"), *dst = jstr(req, "destination_path");
	const char *from = jstr(req, "file_source");
	json_t *reply = NULL;
	char resolved[PATH_MAX];
	if (!src || !dst)
		reply = err_reply(0, "Copy-VMFile needs \"source_path\" and \"destination_path\"");
	else if (from && strcasecmp(from, "Host"))
		reply = err_reply(0, "-FileSource %s: only Host is supported (as in Hyper-V: files go from the host to the guest)",
				  from);
	else if (dst[0] != '/')
		reply = err_reply(0, "the destination '%s' must be an absolute path in the guest", dst);
	else if (vm.ic_disabled & (1u << INV_IC_GSI))
		reply = err_reply(0, "the Guest Service Interface of '%s' is disabled (Enable-VMIntegrationService -VMName '%s' "
				  "-Name 'Guest Service Interface')", vm.name, vm.name);
	else if (vm.status.state != VM_RUNNING)
		reply = conflict(&vm, "take a file copy (it must be Running)");
	else if (!worker_of(s, vm.id))
		reply = conflict(&vm, "take a file copy");
	else if (vmms_job_running_for(&s->jobs, vm.id))
		reply = conflict(&vm, "take a file copy while another of its jobs runs");
	else
		vmms_caller_path(s, src, VMMS_CALLER_READ, "the source", resolved, sizeof(resolved), &reply);
	if (reply)
		goto out;
	json_t *wreq = json_pack("{s:s, s:s, s:s, s:b, s:b}", "op", "copy-file", "source", resolved, "destination", dst,
				 "overwrite", json_is_true(json_object_get(req, "force")),
				 "create_full_path", json_is_true(json_object_get(req, "create_full_path")));
	json_t *wr = worker_vm_request(&vm, wreq, 5000);
	if (!wr || !json_is_true(json_object_get(wr, "ok"))) {
		reply = err_reply(0, "cannot copy '%s' into '%s': %s", src, vm.name, worker_error(wr));
		json_decref(wr);
		goto out;
	}
	json_decref(wr);
	struct copy_ctx *c = calloc(1, sizeof(*c));
	char id[37];
	new_guid(id);
	struct vmms_job *j = NULL;
	if (c) {
		snprintf(c->vm_id, sizeof(c->vm_id), "%s", vm.id);
		worker_sock_path(&vm, c->sock, sizeof(c->sock));
		j = vmms_job_start(&s->jobs, id, vm.id, "copy-file", copy_step, free, c, vmms_unix_ms());
	}
	if (!j) {
		free(c);
		json_decref(worker_vm_call(&vm, "{\"op\":\"copy-file-cancel\"}", 2000));
		reply = err_reply(0, "too many jobs running");
		goto out;
	}
	vm_event(s, vm.id, "Information", "Copy-VMFile %s -> %s started", resolved, dst);
	reply = vmms_job_reply(j);
out:
	inv_vm_free(&vm);
	return reply;
}

json_t *vmms_guest_files_request(struct vmms *s, const char *op, json_t *req)
{
	return strcmp(op, "copy-vm-file") ? NULL : op_copy(s, req);
}
