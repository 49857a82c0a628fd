/* Set-VMProcessor / Get-VMProcessor: -Count (Off only, as Set-VM -ProcessorCount), -Maximum and
 * -RelativeWeight (the worker's cgroup: include/vmms/cpu_limits.h, live on a running VM) and
 * -Reserve, which Hyper-V guarantees and vmms can only admit: a VM starts (or a running one
 * takes a larger reserve) only while the reserves of the running VMs fit the host's processors. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "vmms/cpu_limits.h"
#include "vmms/inventory.h"

int vmms_cpu_maximum(const struct inv_vm *vm)
{
	return vm->cpu_maximum > 0 ? vm->cpu_maximum : 100;
}

int vmms_cpu_weight(const struct inv_vm *vm)
{
	return vm->cpu_weight > 0 ? vm->cpu_weight : 100;
}

json_t *vmms_processor_json(const struct inv_vm *vm)
{
	return json_pack("{s:i, s:i, s:i, s:i}", "count", vm->cpus, "maximum", vmms_cpu_maximum(vm), "reserve",
			 vm->cpu_reserve, "relative_weight", vmms_cpu_weight(vm));
}

/* What a VM of cpus processors at reserve percent holds back, in percent of one processor. */
static long reserved(int cpus, int reserve)
{
	return (long)cpus * reserve;
}

/* NULL if vm (cpus processors at reserve percent) fits beside the other VMs with a worker. */
static json_t *reserve_check(struct vmms *s, const struct inv_vm *vm, int cpus, int reserve, const char *what)
{
	if (!reserve)
		return NULL;
	struct inv_vm *vms = NULL;
	int n = 0;
	if (inv_list(s->inv, &vms, &n) < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	long others = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(vms[i].id, vm->id) && vm_state_has_worker(vms[i].status.state))
			others += reserved(vms[i].cpus, vms[i].cpu_reserve);
		inv_vm_free(&vms[i]);
	}
	free(vms);
	long host = sysconf(_SC_NPROCESSORS_ONLN) * 100L, want = reserved(cpus, reserve);
	if (others + want <= host)
		return NULL;
	return err_reply(VMMS_ERR_CONFLICT, "'%s' cannot %s: its processor reserve is %ld%% of a processor and the host has "
			 "%ld%% left (%ld logical processors; running VMs reserve %ld%%) (error 32788: configuration conflict)",
			 vm->name, what, want, host - others > 0 ? host - others : 0, host / 100, others);
}

json_t *vmms_processor_prepare(struct vmms *s, const struct inv_vm *vm, char *cgroup, size_t len, bool *required)
{
	*cgroup = '\0';
	*required = vmms_cpu_maximum(vm) < 100 || vmms_cpu_weight(vm) != 100;
	json_t *reply = reserve_check(s, vm, vm->cpus, vm->cpu_reserve, "start");
	if (reply)
		return reply;
	char err[PATH_MAX + 256];
	if (cpu_cgroups_apply(&s->cg, vm->id, vm->cpus, vmms_cpu_maximum(vm), vmms_cpu_weight(vm), err, sizeof(err)) < 0) {
		if (*required)
			return err_reply(0, "'%s' cannot start: its processor limits cannot be set: %s", vm->name, err);
		return NULL; /* no limits asked for: it runs where vmms runs */
	}
	snprintf(cgroup, len, "%s/%s", s->cg.base, vm->id);
	return NULL;
}

void vmms_processor_release(struct vmms *s, const char *vm_id)
{
	cpu_cgroups_remove(&s->cg, vm_id);
}

/* A setting of the request: absent (keeps *v), or an integer lo..hi. */
static json_t *int_arg(json_t *req, const char *key, const char *param, int lo, int hi, int *v)
{
	json_t *j = json_object_get(req, key);
	if (!j)
		return NULL;
	if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
		return err_reply(0, "-%s must be %d to %d", param, lo, hi);
	*v = (int)json_integer_value(j);
	return NULL;
}

static json_t *op_set_processor(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *reply = find_vm(s, req, &vm);
	if (reply)
		return reply;
	int cpus = vm.cpus, maximum = vmms_cpu_maximum(&vm), reserve = vm.cpu_reserve, weight = vmms_cpu_weight(&vm);
	enum vm_state st = vm.status.state;
	bool live = vm_state_has_worker(st);
	if (!json_object_get(req, "count") && !json_object_get(req, "maximum") && !json_object_get(req, "reserve") &&
	    !json_object_get(req, "relative_weight"))
		reply = err_reply(0, "nothing to change: give -Count, -Maximum, -Reserve or -RelativeWeight");
	else if ((reply = int_arg(req, "count", "Count", 1, VMMS_MAX_CPUS, &cpus)) ||
		 (reply = int_arg(req, "maximum", "Maximum", 1, 100, &maximum)) ||
		 (reply = int_arg(req, "reserve", "Reserve", 0, 100, &reserve)) ||
		 (reply = int_arg(req, "relative_weight", "RelativeWeight", 1, 10000, &weight)))
		; /* reply says which */
	else if (cpus != vm.cpus && !vm_op_allowed(vm.status, VM_OP_MODIFY))
		reply = conflict(&vm, "change its processor count while it is not Off");
	else if (vm.status.op != VM_OPS_NONE)
		reply = conflict(&vm, "change its processor settings now");
	else if (live && reserve > vm.cpu_reserve)
		reply = reserve_check(s, &vm, cpus, reserve, "reserve more");
	char err[PATH_MAX + 256];
	/* the worker may have started without a cgroup (no limits then): it moves into its own */
	if (!reply && live && vm.worker_pid > 0 &&
	    (cpu_cgroups_apply(&s->cg, vm.id, cpus, maximum, weight, err, sizeof(err)) < 0 ||
	     cpu_cgroups_attach(&s->cg, vm.id, vm.worker_pid, err, sizeof(err)) < 0) &&
	    (maximum != 100 || weight != 100))
		reply = err_reply(0, "'%s': its processor limits cannot be changed: %s", vm.name, err);
	if (!reply) {
		vm.cpus = cpus;
		vm.cpu_maximum = maximum;
		vm.cpu_reserve = reserve;
		vm.cpu_weight = weight;
		char msg[160];
		snprintf(msg, sizeof(msg), "processors: Count %d, Maximum %d%%, Reserve %d%%, RelativeWeight %d%s", cpus,
			 maximum, reserve, weight, live ? " (live)" : "");
		reply = inv_update_event(s->inv, &vm, msg) < 0
				? err_reply(0, "inventory: %s", inv_error(s->inv))
				: json_pack("{s:b, s:s, s:o}", "ok", 1, "vm", vm.name, "processor", vmms_processor_json(&vm));
	}
	inv_vm_free(&vm);
	return reply;
}

json_t *vmms_processor_request(struct vmms *s, const char *op, json_t *req)
{
	return !strcmp(op, "set-processor") ? op_set_processor(s, req) : NULL;
}
