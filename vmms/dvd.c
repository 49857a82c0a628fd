/* DVD drives: Add-/Get-/Set-/Remove-VMDvdDrive. A drive sits on SCSI controller 0 next to the
 * hard disks (one location space); its disc is an ISO file or nothing. The worker gets the
 * drives after the disks (--dvd, in location order), so drive k is the worker's LUN
 * ndisks + k; Set-VMDvdDrive on a running VM changes the disc live through its dvd-change. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "vmms/inventory.h"

static bool location_used(const struct inv_vm *vm, json_int_t ctrl, json_int_t lun)
{
	for (int i = 0; i < vm->ndisks; i++)
		if (vm->disks[i].controller == ctrl && vm->disks[i].lun == lun)
			return true;
	for (int i = 0; i < vm->ndvds; i++)
		if (vm->dvds[i].controller == ctrl && vm->dvds[i].lun == lun)
			return true;
	return false;
}

static json_t *drive_json(const struct inv_vm *vm, const struct inv_disk *d)
{
	return json_pack("{s:s, s:s, s:i, s:i, s:s, s:s}", "vm", vm->name, "controller_type", "SCSI", "controller",
			 d->controller, "lun", d->lun, "media", d->path[0] ? "ISO" : "None", "path", d->path);
}

/* The request's ISO: absent or "" (no disc), else an absolute path to a file the caller may
 * read (resolved with its rights: canon gets the path to use). */
static json_t *check_iso(struct vmms *s, const char **path, char *canon, size_t len)
{
	if (!*path || !**path)
		return NULL;
	if ((*path)[0] != '/' || !file_readable(*path))
		return err_reply(0, "the ISO file '%s' does not exist or cannot be read (absolute path needed)", *path);
	json_t *reply = NULL;
	if (!(*path = vmms_caller_path(s, *path, VMMS_CALLER_READ, "the ISO file", canon, len, &reply)))
		return reply;
	return NULL;
}

static json_t *check_location(json_t *req, json_int_t *ctrl, json_int_t *lun, bool *have_lun)
{
	const char *type = jstr(req, "controller_type");
	*ctrl = 0;
	*lun = -1;
	*have_lun = jint(req, "lun", lun);
	jint(req, "controller", ctrl);
	if (type && strcasecmp(type, "SCSI"))
		return err_reply(0, "-ControllerType %s: only SCSI controllers are supported", type);
	if (*ctrl != 0)
		return err_reply(0, "-ControllerNumber %lld: the virtual machine has one SCSI controller (0)", (long long)*ctrl);
	if (*have_lun && (*lun < 0 || *lun >= INV_MAX_DISKS))
		return err_reply(0, "-ControllerLocation must be 0 to %d", INV_MAX_DISKS - 1);
	return NULL;
}

/* The drive at the request's location; -1 with *reply set if none. */
static int find_drive(const struct inv_vm *vm, json_t *req, json_t **reply)
{
	json_int_t ctrl, lun;
	bool have_lun;
	if ((*reply = check_location(req, &ctrl, &lun, &have_lun)))
		return -1;
	if (!have_lun) {
		*reply = err_reply(0, "name the drive: -ControllerLocation");
		return -1;
	}
	for (int i = 0; i < vm->ndvds; i++)
		if (vm->dvds[i].controller == ctrl && vm->dvds[i].lun == lun)
			return i;
	*reply = err_reply(0, "'%s' has no DVD drive at SCSI %lld:%lld", vm->name, (long long)ctrl, (long long)lun);
	return -1;
}

static json_t *op_add_dvd(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *reply = find_vm(s, req, &vm);
	if (reply)
		return reply;
	const char *path = jstr(req, "path");
	char canon[PATH_MAX];
	json_int_t ctrl, lun;
	bool have_lun;
	if ((reply = check_location(req, &ctrl, &lun, &have_lun)) || (reply = check_iso(s, &path, canon, sizeof(canon)))) {
	} else if (!vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "get a DVD drive while it is not Off (hot-add is not supported)");
	} else if (vm.ndisks + vm.ndvds >= INV_MAX_DISKS) {
		reply = err_reply(VMMS_ERR_CONFLICT, "'%s' has no free location on SCSI controller 0 (error 32788: configuration conflict)", vm.name);
	} else if (have_lun && location_used(&vm, ctrl, lun)) {
		reply = err_reply(VMMS_ERR_CONFLICT, "SCSI 0:%lld of '%s' is in use (error 32788: configuration conflict)",
				  (long long)lun, vm.name);
	}
	if (!reply && !have_lun) /* the lowest free location */
		for (lun = 0; lun < INV_MAX_DISKS && location_used(&vm, ctrl, lun); lun++)
			;
	if (!reply) {
		int n = vm.ndvds, k = 0;
		while (k < n && vm.dvds[k].lun < lun) /* kept in location order, as the inventory reads them */
			k++;
		memmove(&vm.dvds[k + 1], &vm.dvds[k], (size_t)(n - k) * sizeof(vm.dvds[0]));
		vm.dvds[k] = (struct inv_disk){ .controller = (int)ctrl, .lun = (int)lun, .path = (char *)(path ? path : "") };
		vm.ndvds = n + 1;
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "DVD drive added at SCSI 0:%lld: %s", (long long)lun, path && *path ? path : "(empty)");
		int rc = inv_update_event(s->inv, &vm, msg);
		reply = rc < 0 ? err_reply(0, "inventory: %s", inv_error(s->inv))
			       : json_pack("{s:b, s:o}", "ok", 1, "dvd", drive_json(&vm, &vm.dvds[k]));
		memmove(&vm.dvds[k], &vm.dvds[k + 1], (size_t)(n - k) * sizeof(vm.dvds[0])); /* the path is the request's */
		vm.ndvds = n;
	}
	inv_vm_free(&vm);
	return reply;
}

/* A running VM's guest may have ejected a disc (START STOP UNIT): the worker's status says so
 * (path null) and the drive is empty from then on, also after a guest reset; the inventory
 * follows, as Hyper-V's configuration does. */
static void note_guest_ejects(struct vmms *s, struct inv_vm *vm)
{
	if (!vm->ndvds || (vm->status.state != VM_RUNNING && vm->status.state != VM_PAUSED))
		return;
	json_t *st = worker_vm_call(vm, "{\"op\":\"status\"}", 2000);
	json_t *disks = json_object_get(st, "disks");
	bool changed = false;
	for (int k = 0; k < vm->ndvds; k++) {
		json_t *d = json_array_get(disks, (size_t)(vm->ndisks + k));
		const char *type = json_string_value(json_object_get(d, "type"));
		if (!vm->dvds[k].path[0] || !type || strcmp(type, "dvd") || !json_is_null(json_object_get(d, "path")))
			continue;
		vm_event(s, vm->id, "Information", "the guest ejected the disc %s from the DVD drive at SCSI %d:%d",
			 vm->dvds[k].path, vm->dvds[k].controller, vm->dvds[k].lun);
		vm->dvds[k].path[0] = '\0';
		changed = true;
	}
	json_decref(st);
	if (changed && inv_update_event(s->inv, vm, "DVD drive disc ejected by the guest") < 0)
		vm_event(s, vm->id, "Warning", "inventory: %s", inv_error(s->inv));
}

static json_t *op_get_dvd(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *reply = find_vm(s, req, &vm);
	if (reply)
		return reply;
	note_guest_ejects(s, &vm);
	json_t *arr = json_array();
	for (int i = 0; i < vm.ndvds; i++)
		json_array_append_new(arr, drive_json(&vm, &vm.dvds[i]));
	inv_vm_free(&vm);
	return json_pack("{s:b, s:o}", "ok", 1, "dvds", arr);
}

/* A running (or paused) VM's worker changes the disc first; the inventory follows. */
static json_t *change_live(const struct inv_vm *vm, int k, const char *path)
{
	json_t *r = worker_vm_request(vm, json_pack("{s:s, s:i, s:o}", "op", "dvd-change", "lun", vm->ndisks + k, "path",
						    *path ? json_string(path) : json_null()),
				      15000);
	json_t *reply = NULL;
	if (!r)
		reply = err_reply(0, "'%s': its worker does not answer; the disc was not changed", vm->name);
	else if (!json_is_true(json_object_get(r, "ok")))
		reply = err_reply(0, "'%s': the disc could not be changed: %s", vm->name, worker_error(r));
	json_decref(r);
	return reply;
}

static json_t *op_set_dvd(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *reply = find_vm(s, req, &vm);
	if (reply)
		return reply;
	const char *path = jstr(req, "path");
	char canon[PATH_MAX];
	int k = find_drive(&vm, req, &reply);
	if (k >= 0 && !json_object_get(req, "path"))
		reply = err_reply(0, "nothing to change: give -Path (an ISO file, or '' for no disc)");
	else if (k >= 0)
		reply = check_iso(s, &path, canon, sizeof(canon));
	if (!path)
		path = "";
	enum vm_state st = vm.status.state;
	bool live = st == VM_RUNNING || st == VM_PAUSED;
	if (!reply && vm.status.op != VM_OPS_NONE)
		reply = conflict(&vm, "change a DVD drive's disc now");
	else if (!reply && !live && st != VM_OFF && st != VM_SAVED)
		reply = conflict(&vm, "change a DVD drive's disc now");
	if (!reply && live)
		reply = change_live(&vm, k, path);
	if (!reply) {
		char *was = vm.dvds[k].path;
		vm.dvds[k].path = (char *)path;
		char msg[2 * PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "DVD drive at SCSI %d:%d: %s -> %s%s", vm.dvds[k].controller, vm.dvds[k].lun,
			 *was ? was : "(empty)", *path ? path : "(empty)", live ? " (live)" : "");
		int rc = inv_update_event(s->inv, &vm, msg);
		reply = rc < 0 ? err_reply(0, "inventory: %s", inv_error(s->inv))
			       : json_pack("{s:b, s:o}", "ok", 1, "dvd", drive_json(&vm, &vm.dvds[k]));
		vm.dvds[k].path = was;
	}
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_remove_dvd(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *reply = find_vm(s, req, &vm);
	if (reply)
		return reply;
	int k = find_drive(&vm, req, &reply);
	if (!reply && !vm_op_allowed(vm.status, VM_OP_MODIFY))
		reply = conflict(&vm, "lose a DVD drive while it is not Off (hot-remove is not supported)");
	if (!reply) {
		struct inv_disk gone = vm.dvds[k];
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "DVD drive removed from SCSI %d:%d", gone.controller, gone.lun);
		json_t *o = drive_json(&vm, &gone);
		memmove(&vm.dvds[k], &vm.dvds[k + 1], (size_t)(vm.ndvds - k - 1) * sizeof(vm.dvds[0]));
		vm.dvds[--vm.ndvds] = gone; /* kept in the array so inv_vm_free frees it */
		int rc = inv_update_event(s->inv, &vm, msg);
		vm.ndvds++;
		if (rc < 0) {
			json_decref(o);
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		} else {
			reply = json_pack("{s:b, s:o}", "ok", 1, "dvd", o);
		}
	}
	inv_vm_free(&vm);
	return reply;
}

json_t *vmms_dvd_request(struct vmms *s, const char *op, json_t *req)
{
	if (!strcmp(op, "add-dvd"))
		return op_add_dvd(s, req);
	if (!strcmp(op, "get-dvd"))
		return op_get_dvd(s, req);
	if (!strcmp(op, "set-dvd"))
		return op_set_dvd(s, req);
	if (!strcmp(op, "remove-dvd"))
		return op_remove_dvd(s, req);
	return NULL;
}

bool vmms_location_used(const struct inv_vm *vm, int controller, int lun)
{
	return location_used(vm, controller, lun);
}
