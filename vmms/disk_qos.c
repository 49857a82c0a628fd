/* Set-VMHardDiskDrive's storage QoS: -MaximumIOPS (normalized to 8 KiB, as Hyper-V counts) and
 * -MaximumBandwidth (bytes/s) of one hard disk drive, stored by its location (inventory.h) and,
 * on a running or paused VM, changed live first through the worker's disk-limits. The worker
 * gets the disks in location order (--disk PATH,iops=N,bw=N), so drive k is its LUN k. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "vmms/inventory.h"
#include "vsp/io_limit.h"

/* A limit of the request: absent (keeps *v), or an integer 0..max. */
static json_t *limit_arg(json_t *req, const char *key, const char *param, uint64_t max, uint64_t *v)
{
	json_t *j = json_object_get(req, key);
	if (!j)
		return NULL;
	if (!json_is_integer(j) || json_integer_value(j) < 0 || (uint64_t)json_integer_value(j) > max)
		return err_reply(0, "-%s must be 0 (no limit) to %llu", param, (unsigned long long)max);
	*v = (uint64_t)json_integer_value(j);
	return NULL;
}

static json_t *op_set_disk(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *reply = find_vm(s, req, &vm);
	if (reply)
		return reply;
	int k = vmms_find_disk(&vm, req, &reply);
	uint64_t iops = k >= 0 ? vm.disks[k].max_iops : 0, bw = k >= 0 ? vm.disks[k].max_bandwidth : 0;
	enum vm_state st = vm.status.state;
	bool live = st == VM_RUNNING || st == VM_PAUSED;
	if (k < 0) {
		/* reply says why */
	} else if (!json_object_get(req, "max_iops") && !json_object_get(req, "max_bandwidth")) {
		reply = err_reply(0, "nothing to change: give -MaximumIOPS and/or -MaximumBandwidth");
	} else if (!(reply = limit_arg(req, "max_iops", "MaximumIOPS", IO_LIMIT_MAX_IOPS, &iops)) &&
		   !(reply = limit_arg(req, "max_bandwidth", "MaximumBandwidth", IO_LIMIT_MAX_BYTES_PER_S, &bw))) {
		if (vm.status.op != VM_OPS_NONE || (!live && st != VM_OFF && st != VM_SAVED))
			reply = conflict(&vm, "change a hard disk drive's QoS now");
	}
	if (!reply && live) {
		json_t *r = worker_vm_request(&vm, json_pack("{s:s, s:i, s:I, s:I}", "op", "disk-limits", "lun", k, "max_iops",
							     (json_int_t)iops, "max_bandwidth", (json_int_t)bw),
					      5000);
		if (!r)
			reply = err_reply(0, "'%s': its worker does not answer; the limits were not changed", vm.name);
		else if (!json_is_true(json_object_get(r, "ok")))
			reply = err_reply(0, "'%s': the limits could not be changed: %s", vm.name, worker_error(r));
		json_decref(r);
	}
	if (!reply) {
		char msg[PATH_MAX + 128];
		snprintf(msg, sizeof(msg), "hard disk drive at SCSI %d:%d: MaximumIOPS %llu, MaximumBandwidth %llu bytes/s%s",
			 vm.disks[k].controller, vm.disks[k].lun, (unsigned long long)iops, (unsigned long long)bw,
			 live ? " (live)" : "");
		if (inv_set_disk_qos(s->inv, vm.id, vm.disks[k].controller, vm.disks[k].lun, iops, bw, msg) < 0) {
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		} else {
			vm.disks[k].max_iops = iops;
			vm.disks[k].max_bandwidth = bw;
			reply = json_pack("{s:b, s:o}", "ok", 1, "disk", vmms_disk_json(&vm, &vm.disks[k]));
		}
	}
	inv_vm_free(&vm);
	return reply;
}

json_t *vmms_disk_qos_request(struct vmms *s, const char *op, json_t *req)
{
	return !strcmp(op, "set-disk") ? op_set_disk(s, req) : NULL;
}
