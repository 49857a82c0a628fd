/* The management service: the inventory's requests (VM objects, configuration, drives, integration
 * services, the host), the request dispatch, start-up and shutdown. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vhd/vdisk.h"
#include "vmms/service.h"

/* ---- validation ---- */

bool vmms_valid_name(const char *name)
{
	if (!name || !*name || strlen(name) > 100)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f || strchr("/\\*?[]\"", *p))
			return false;
	return !isspace((unsigned char)name[0]) && !isspace((unsigned char)name[strlen(name) - 1]);
}

bool vmms_valid_memory(uint64_t b)
{
	return b >= VMMS_MIN_MEMORY && b <= VMMS_MAX_MEMORY && !(b & ((2u << 20) - 1));
}

bool vmms_valid_auto_start(const char *v)
{
	return v && (!strcasecmp(v, "Nothing") || !strcasecmp(v, "StartIfRunning") || !strcasecmp(v, "Start"));
}

bool vmms_valid_auto_stop(const char *v)
{
	return v && (!strcasecmp(v, "TurnOff") || !strcasecmp(v, "Save") || !strcasecmp(v, "ShutDown"));
}

bool vmms_is_guid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

void vmms_kvp_addresses(const char *value, int family, json_t *arr, size_t max)
{
	const char *p = value ? value : "";
	while (*p && json_array_size(arr) < max) {
		size_t n = strcspn(p, ";");
		char tok[INET6_ADDRSTRLEN];
		unsigned char bin[sizeof(struct in6_addr)];
		if (n > 0 && n < sizeof(tok)) {
			memcpy(tok, p, n);
			tok[n] = '\0';
			if (inet_pton(family, tok, bin) == 1)
				json_array_append_new(arr, json_string(tok));
		}
		p += n;
		if (*p)
			p++;
	}
}

static const char *canonical(const char *v, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (!strcasecmp(v, names[i]))
			return names[i];
	return v;
}

static const char *const auto_start_names[] = { "Nothing", "StartIfRunning", "Start", NULL };
static const char *const auto_stop_names[] = { "TurnOff", "Save", "ShutDown", NULL };
static const char *const checkpoint_type_names[] = { "Standard", "Production", "ProductionOnly", "Disabled", NULL };

/* Integration services: the worker's status key, Hyper-V's display name, the worker's
 * --disable-ic name; indexed by INV_IC_*. */
static const struct { const char *key, *display, *worker, *alias; } ic_names[INV_IC_COUNT] = {
	[INV_IC_HEARTBEAT] = { "Heartbeat", "Heartbeat", "heartbeat", NULL },
	[INV_IC_SHUTDOWN] = { "Shutdown", "Shutdown", "shutdown", NULL },
	[INV_IC_TIMESYNC] = { "TimeSynchronization", "Time Synchronization", "timesync", NULL },
	[INV_IC_KVP] = { "KeyValuePairExchange", "Key-Value Pair Exchange", "kvp", NULL },
	[INV_IC_VSS] = { "VSS", "VSS", "vss", "Guest Service Interface (VSS)" },
	[INV_IC_GSI] = { "GuestServiceInterface", "Guest Service Interface", "fcopy", NULL },
};

const char *vmms_ic_worker_name(int i)
{
	return ic_names[i].worker;
}

int vmms_ic_index(const char *name)
{
	for (int i = 0; name && i < INV_IC_COUNT; i++)
		if (!strcasecmp(name, ic_names[i].key) || !strcasecmp(name, ic_names[i].display) ||
		    !strcasecmp(name, ic_names[i].worker) || (ic_names[i].alias && !strcasecmp(name, ic_names[i].alias)))
			return i;
	return -1;
}

/* ---- VM objects ---- */

static json_t *vm_json(struct vmms *s, const struct inv_vm *vm, bool ask_worker, json_t **ics)
{
	json_t *disks = json_array();
	for (int i = 0; i < vm->ndisks; i++)
		json_array_append_new(disks, json_pack("{s:i, s:i, s:s, s:I, s:I}", "controller", vm->disks[i].controller,
						       "lun", vm->disks[i].lun, "path", vm->disks[i].path, "max_iops",
						       (json_int_t)vm->disks[i].max_iops, "max_bandwidth",
						       (json_int_t)vm->disks[i].max_bandwidth));
	const char *ops = vm_opstate_name(vm->status.op);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:s, s:s, s:s, s:s, s:o, s:s}",
			      "id", vm->id, "name", vm->name, "state", vm_state_name(vm->status.state),
			      "operation", ops, "generation", vm->generation, "cpus", vm->cpus,
			      "memory_startup", (json_int_t)vm->memory, "notes", vm->notes ? vm->notes : "",
			      "automatic_start_action", vm->auto_start ? vm->auto_start : "",
			      "automatic_stop_action", vm->auto_stop ? vm->auto_stop : "", "path", vm->path,
			      "disks", disks, "version", "9.0");
	json_object_set_new(o, "processor", vmms_processor_json(vm));
	json_object_set_new(o, "checkpoint_type", json_string(vm->checkpoint_type[0] ? vm->checkpoint_type : "Production"));
	json_object_set_new(o, "parent_checkpoint", json_string(vm->parent_checkpoint));
	json_object_set_new(o, "kernel", vm->kernel ? json_string(vm->kernel) : json_null());
	json_object_set_new(o, "initrd", vm->initrd ? json_string(vm->initrd) : json_null());
	json_object_set_new(o, "cmdline", vm->cmdline ? json_string(vm->cmdline) : json_null());
	json_t *ice = json_object();
	for (int i = 0; i < INV_IC_COUNT; i++)
		json_object_set_new(ice, ic_names[i].key, json_boolean(!(vm->ic_disabled & (1u << i))));
	json_object_set_new(o, "integration_services_enabled", ice);
	json_int_t uptime = 0, assigned = 0;
	const char *hb = "", *status = *ops ? ops : "Operating normally";
	double cpu = 0;
	json_t *st = NULL;
	struct vmms_worker *w = worker_of(s, vm->id);
	if (w && vm_state_has_worker(vm->status.state)) {
		json_object_set_new(o, "worker_pid", json_integer(w->pid));
		assigned = (json_int_t)vm->memory;
		/* a saving worker is busy writing guest RAM: not asked */
		if (ask_worker && vm->status.state != VM_SAVING && (st = worker_vm_call(vm, "{\"op\":\"status\"}", 2000))) {
			uptime = json_integer_value(json_object_get(st, "uptime_ms"));
			hb = json_string_value(json_object_get(st, "heartbeat")) ?: "";
			json_int_t m = json_integer_value(json_object_get(st, "memory_bytes"));
			if (m)
				assigned = m;
		} else if (ask_worker && vm->status.state == VM_RUNNING) {
			status = "The worker does not answer";
		}
		uint64_t ticks = proc_field(w->pid, 14) + proc_field(w->pid, 15);
		int64_t now = mono_ms();
		long hz = sysconf(_SC_CLK_TCK);
		if (w->cpu_at_ms && now - w->cpu_at_ms >= 200 && hz > 0 && ticks >= w->cpu_ticks) {
			double used_ms = (double)(ticks - w->cpu_ticks) * 1000.0 / (double)hz;
			w->cpu_pct = used_ms * 100.0 / ((double)(now - w->cpu_at_ms) * (vm->cpus > 0 ? vm->cpus : 1));
		}
		if (!w->cpu_at_ms || now - w->cpu_at_ms >= 200) {
			w->cpu_ticks = ticks;
			w->cpu_at_ms = now;
		}
		cpu = w->cpu_pct > 100 ? 100 : w->cpu_pct;
	}
	json_object_set_new(o, "uptime_ms", json_integer(uptime));
	json_object_set_new(o, "memory_assigned", json_integer(assigned));
	json_object_set_new(o, "cpu_usage", json_integer((json_int_t)(cpu + 0.5)));
	json_object_set_new(o, "heartbeat", json_string(hb));
	json_object_set_new(o, "status", json_string(status));
	/* The guest's addresses from its KVP intrinsic pool (hv_kvp_daemon), as Hyper-V shows its
	 * network adapters' IPAddresses; empty until the daemon has reported them. */
	json_t *ips = json_array();
	json_t *gi = st && !(vm->ic_disabled & (1u << INV_IC_KVP)) ? worker_vm_call(vm, "{\"op\":\"guest-info\"}", 2000) : NULL;
	json_t *pool = json_object_get(gi, "guest");
	vmms_kvp_addresses(json_string_value(json_object_get(pool, "NetworkAddressIPv4")), AF_INET, ips, 32);
	vmms_kvp_addresses(json_string_value(json_object_get(pool, "NetworkAddressIPv6")), AF_INET6, ips, 64);
	json_decref(gi);
	json_object_set_new(o, "ip_addresses", ips);
	if (st && ics) {
		json_t *i = json_object_get(st, "integration_services");
		*ics = i ? json_incref(i) : NULL;
	}
	json_decref(st);
	return o;
}

/* ---- requests ---- */

/* Set-VMHost's folders (the inventory's meta table); vmms's root and its "Virtual Hard Disks"
 * by default. */
static void host_path(struct vmms *s, const char *key, char *out, size_t len)
{
	if (inv_meta_get(s->inv, key, out, len) == 1 && *out)
		return;
	int n = snprintf(out, len, "%s", s->root);
	if (!strcmp(key, "VirtualHardDiskPath") && n >= 0 && (size_t)n < len)
		snprintf(out + n, len - (size_t)n, "/Virtual Hard Disks");
}

static json_t *op_host(struct vmms *s)
{
	char vmp[PATH_MAX], vhdp[PATH_MAX], host[256] = "";
	host_path(s, "VirtualMachinePath", vmp, sizeof(vmp));
	host_path(s, "VirtualHardDiskPath", vhdp, sizeof(vhdp));
	gethostname(host, sizeof(host) - 1);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	return json_pack("{s:b, s:{s:s, s:s, s:s, s:i, s:I}}", "ok", 1, "host", "name", host,
			 "virtual_machine_path", vmp, "virtual_hard_disk_path", vhdp, "logical_processor_count", (int)cpus,
			 "memory_capacity", (json_int_t)pages * (json_int_t)psz);
}

static bool is_dir(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static json_t *op_set_host(struct vmms *s, json_t *req)
{
	static const char *const keys[][2] = { { "virtual_machine_path", "VirtualMachinePath" },
					       { "virtual_hard_disk_path", "VirtualHardDiskPath" } };
	int given = 0;
	for (int i = 0; i < 2; i++) {
		const char *p = json_string_value(json_object_get(req, keys[i][0]));
		if (!p)
			continue;
		given++;
		if (p[0] != '/' || !is_dir(p) || strlen(p) >= PATH_MAX - 100)
			return err_reply(0, "-%s '%s' is not an existing folder (absolute path needed)", keys[i][1], p);
		char dir[PATH_MAX];
		json_t *denied = NULL;
		if (!vmms_caller_path(s, p, VMMS_CALLER_DIR, keys[i][1], dir, sizeof(dir), &denied))
			return denied;
	}
	if (!given)
		return err_reply(0, "nothing to change: give -VirtualMachinePath or -VirtualHardDiskPath");
	for (int i = 0; i < 2; i++) {
		const char *p = json_string_value(json_object_get(req, keys[i][0]));
		if (p && inv_meta_set(s->inv, keys[i][1], p) < 0)
			return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	return op_host(s);
}

static json_t *op_list(struct vmms *s, json_t *req)
{
	const char *pattern = jstr(req, "name");
	struct inv_vm *vms;
	int n;
	if (inv_list(s->inv, &vms, &n) < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	json_t *arr = json_array();
	int matched = 0;
	for (int i = 0; i < n; i++) {
		if (vmms_name_matches(pattern, vms[i].name, vms[i].id)) {
			json_array_append_new(arr, vm_json(s, &vms[i], true, NULL));
			matched++;
		}
		inv_vm_free(&vms[i]);
	}
	free(vms);
	if (pattern && !matched && !vmms_name_is_pattern(pattern)) {
		json_decref(arr);
		return err_reply(0, "Hyper-V was unable to find a virtual machine with name '%s'", pattern);
	}
	return json_pack("{s:b, s:o}", "ok", 1, "vms", arr);
}

static json_t *op_new(struct vmms *s, json_t *req)
{
	const char *name = jstr(req, "name"), *vhd = jstr(req, "vhd_path"), *new_vhd = jstr(req, "new_vhd_path");
	const char *base = jstr(req, "path");
	json_int_t gen = 1, cpus = 1, mem = 512 << 20, new_size = 0;
	jint(req, "generation", &gen);
	jint(req, "cpus", &cpus);
	jint(req, "memory", &mem);
	jint(req, "new_vhd_size", &new_size);
	if (!vmms_valid_name(name))
		return err_reply(0, "invalid virtual machine name '%s' (1-100 characters, none of / \\ * ? [ ] \")", name ? name : "");
	if (gen != 1 && gen != 2)
		return err_reply(0, "-Generation must be 1 or 2");
	if (cpus < 1 || cpus > VMMS_MAX_CPUS)
		return err_reply(0, "-ProcessorCount must be 1 to %d", VMMS_MAX_CPUS);
	if (mem < 0 || !vmms_valid_memory((uint64_t)mem))
		return err_reply(0, "-MemoryStartupBytes must be 32MB to 1TB in whole 2 MB units");
	if (vhd && new_vhd)
		return err_reply(0, "give -VHDPath or -NewVHDPath, not both");
	if (new_vhd && new_size <= 0)
		return err_reply(0, "-NewVHDPath needs -NewVHDSizeBytes");
	if (!new_vhd && new_size)
		return err_reply(0, "-NewVHDSizeBytes needs -NewVHDPath");
	if (vhd && !file_readable(vhd))
		return err_reply(0, "the virtual hard disk '%s' does not exist or cannot be read", vhd);
	if (vhd && vhd[0] != '/')
		return err_reply(0, "-VHDPath must be an absolute path");
	char vhd_canon[PATH_MAX], checked[PATH_MAX];
	json_t *denied = NULL;
	if (vhd && !(vhd = vmms_caller_path(s, vhd, VMMS_CALLER_WRITE, "the virtual hard disk", vhd_canon, sizeof(vhd_canon), &denied)))
		return denied;
	if (base && base[0] == '/' && !vmms_caller_path(s, base, VMMS_CALLER_DIR, "-Path", checked, sizeof(checked), &denied))
		return denied;
	if (new_vhd && new_vhd[0] == '/' &&
	    !vmms_caller_path(s, new_vhd, VMMS_CALLER_DIR, "-NewVHDPath", checked, sizeof(checked), &denied))
		return denied;
	struct inv_vm existing;
	int r = inv_find(s->inv, name, &existing);
	if (r == 1) {
		inv_vm_free(&existing);
		return err_reply(0, "a virtual machine named '%s' already exists", name);
	}
	struct inv_vm vm = { 0 };
	new_guid(vm.id);
	char vmdir[PATH_MAX], vhdpath[PATH_MAX] = "", home[PATH_MAX];
	if (base) {
		if (base[0] != '/')
			return err_reply(0, "-Path must be an absolute path");
		if (snprintf(home, sizeof(home), "%s/%s", base, name) >= (int)sizeof(home))
			return err_reply(0, "path too long");
	} else {
		host_path(s, "VirtualMachinePath", home, sizeof(home));
	}
	if (snprintf(vmdir, sizeof(vmdir), "%s/Virtual Machines/%s", home, vm.id) >= (int)sizeof(vmdir))
		return err_reply(0, "path too long");
	if (new_vhd) {
		char vhddir[PATH_MAX + 32];
		if (base)
			snprintf(vhddir, sizeof(vhddir), "%s/Virtual Hard Disks", home);
		else
			host_path(s, "VirtualHardDiskPath", vhddir, sizeof(vhddir));
		int len = new_vhd[0] == '/' ? snprintf(vhdpath, sizeof(vhdpath), "%s", new_vhd)
					    : snprintf(vhdpath, sizeof(vhdpath), "%s/%s", vhddir, new_vhd);
		if (len >= (int)sizeof(vhdpath))
			return err_reply(0, "path too long");
		if (access(vhdpath, F_OK) == 0)
			return err_reply(0, "'%s' already exists", vhdpath);
	}
	if (mkdir_p(vmdir) < 0)
		return err_reply(0, "cannot create %s: %s", vmdir, strerror(errno));
	if (new_vhd) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", vhdpath);
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir)
			*slash = '\0';
		struct vdisk_create_params p = { .size = (uint64_t)new_size };
		if (mkdir_p(dir) < 0 || vdisk_create(vhdpath, &p) < 0) {
			rmdir(vmdir);
			return err_reply(0, "cannot create '%s': %s", vhdpath, vdisk_last_error());
		}
	}
	vm.name = (char *)name;
	vm.generation = (int)gen;
	vm.cpus = (int)cpus;
	vm.memory = (uint64_t)mem;
	vm.path = vmdir;
	vm.auto_start = "StartIfRunning";
	vm.auto_stop = "Save";
	vm.notes = "";
	vm.ic_disabled = 1u << INV_IC_GSI; /* off until enabled, as in Hyper-V */
	if (vhd || new_vhd) {
		vm.ndisks = 1;
		vm.disks[0] = (struct inv_disk){ .controller = 0, .lun = 0, .path = (char *)(vhd ? vhd : vhdpath) };
	}
	if (inv_create(s->inv, &vm) < 0) {
		json_t *e = err_reply(0, "%s", inv_error(s->inv));
		if (new_vhd)
			unlink(vhdpath);
		rmdir(vmdir);
		return e;
	}
	struct inv_vm created;
	if (inv_find(s->inv, vm.id, &created) != 1)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	json_t *o = vm_json(s, &created, false, NULL);
	inv_vm_free(&created);
	return json_pack("{s:b, s:o}", "ok", 1, "vm", o);
}

static json_t *op_set(struct vmms *s, json_t *req, bool firmware)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	json_t *reply = NULL;
	json_int_t v;
	const char *str;
	char kernel_canon[PATH_MAX], initrd_canon[PATH_MAX];
	char *keep[5] = { vm.kernel, vm.initrd, vm.cmdline, vm.notes, vm.auto_start };
	char *keep2[2] = { vm.auto_stop, vm.name };
	/* the checkpoint type alone is not the worker's: it may change in any state but a busy one */
	const char *ct = firmware ? NULL : jstr(req, "checkpoint_type");
	bool only_ct = ct && json_object_size(req) == 3 && jstr(req, "vm") && jstr(req, "op");
	if (ct) {
		const char *c = canonical(ct, checkpoint_type_names);
		if (c == ct && strcmp(ct, "Standard") && strcmp(ct, "Production") && strcmp(ct, "ProductionOnly") && strcmp(ct, "Disabled")) {
			reply = err_reply(0, "-CheckpointType must be Standard, Production, ProductionOnly or Disabled");
			goto out;
		}
		snprintf(vm.checkpoint_type, sizeof(vm.checkpoint_type), "%s", c);
	}
	if (only_ct ? vm.status.op != VM_OPS_NONE : !vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "be changed while it is not Off");
		goto out;
	}
	if (firmware) {
		if ((str = jstr(req, "kernel"))) { /* "": none, the VM boots from its first disk */
			if (*str && (str[0] != '/' || !file_readable(str))) {
				reply = err_reply(0, "the kernel '%s' does not exist or cannot be read (absolute path needed)", str);
				goto out;
			}
			if (*str) {
				if (!(str = vmms_caller_path(s, str, VMMS_CALLER_READ, "the kernel", kernel_canon, sizeof(kernel_canon), &reply)))
					goto out;
				vm.kernel = (char *)str;
			} else {
				vm.kernel = NULL; /* boot from the first disk */
			}
		}
		if ((str = jstr(req, "initrd"))) {
			if (*str && (str[0] != '/' || !file_readable(str))) {
				reply = err_reply(0, "the initrd '%s' does not exist or cannot be read (absolute path needed)", str);
				goto out;
			}
			if (*str && !(str = vmms_caller_path(s, str, VMMS_CALLER_READ, "the initrd", initrd_canon, sizeof(initrd_canon), &reply)))
				goto out;
			vm.initrd = *str ? (char *)str : NULL;
		}
		if ((str = jstr(req, "cmdline")))
			vm.cmdline = (char *)str;
	} else {
		if (jint(req, "cpus", &v)) {
			if (v < 1 || v > VMMS_MAX_CPUS) {
				reply = err_reply(0, "-ProcessorCount must be 1 to %d", VMMS_MAX_CPUS);
				goto out;
			}
			vm.cpus = (int)v;
		}
		if (jint(req, "memory", &v)) {
			if (v < 0 || !vmms_valid_memory((uint64_t)v)) {
				reply = err_reply(0, "-MemoryStartupBytes must be 32MB to 1TB in whole 2 MB units");
				goto out;
			}
			vm.memory = (uint64_t)v;
		}
		if ((str = jstr(req, "automatic_start_action"))) {
			if (!vmms_valid_auto_start(str)) {
				reply = err_reply(0, "-AutomaticStartAction must be Nothing, StartIfRunning or Start");
				goto out;
			}
			vm.auto_start = (char *)canonical(str, auto_start_names);
		}
		if ((str = jstr(req, "automatic_stop_action"))) {
			if (!vmms_valid_auto_stop(str)) {
				reply = err_reply(0, "-AutomaticStopAction must be TurnOff, Save or ShutDown");
				goto out;
			}
			vm.auto_stop = (char *)canonical(str, auto_stop_names);
		}
		if ((str = jstr(req, "notes")))
			vm.notes = (char *)str;
		if ((str = jstr(req, "new_name"))) {
			if (!vmms_valid_name(str)) {
				reply = err_reply(0, "invalid virtual machine name '%s'", str);
				goto out;
			}
			vm.name = (char *)str;
		}
	}
	if (inv_update(s->inv, &vm) < 0) {
		reply = err_reply(0, "%s", inv_last_dup(s->inv) ? "a virtual machine with that name already exists" : inv_error(s->inv));
		goto out;
	}
	struct inv_vm now;
	if (inv_find(s->inv, vm.id, &now) == 1) {
		reply = json_pack("{s:b, s:o}", "ok", 1, "vm", vm_json(s, &now, false, NULL));
		inv_vm_free(&now);
	} else {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	}
out:
	vm.kernel = keep[0];
	vm.initrd = keep[1];
	vm.cmdline = keep[2];
	vm.notes = keep[3];
	vm.auto_start = keep[4];
	vm.auto_stop = keep2[0];
	vm.name = keep2[1];
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_remove(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	json_t *reply;
	struct inv_checkpoint *cps = NULL;
	int ncp = 0;
	if (!vm_op_allowed(vm.status, VM_OP_REMOVE)) {
		reply = conflict(&vm, "be removed (stop it first)");
	} else if (inv_cp_list(s->inv, vm.id, &cps, &ncp) < 0 || inv_remove(s->inv, vm.id) < 0) {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	} else {
		/* The VM's own files go (its saved state too); its disks stay, as in Hyper-V. */
		const char *files[] = { "worker.sock", "console.log", "worker.log" };
		char p[PATH_MAX];
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", vm.path, files[i]);
			unlink(p);
		}
		vmms_saved_state_path(&vm, p, sizeof(p));
		unlink(p);
		for (int i = 0; i < ncp; i++) /* checkpoints' saved states too; their disks stay */
			if (cps[i].state_file)
				unlink(cps[i].state_file);
		snprintf(p, sizeof(p), "%s/Snapshots", vm.path);
		rmdir(p);
		rmdir(vm.path);
		reply = json_pack("{s:b, s:s}", "ok", 1, "id", vm.id);
	}
	inv_cp_free(cps, ncp);
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_events(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	enum { MAX = 200 };
	struct inv_event *ev = calloc(MAX, sizeof(*ev));
	int n = ev ? inv_events(s->inv, vm.id, ev, MAX) : -1;
	json_t *arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:s}", "id", (json_int_t)ev[i].id, "time_ms",
						     (json_int_t)ev[i].time_ms, "level", ev[i].level, "message", ev[i].message));
	free(ev);
	json_t *r = json_pack("{s:b, s:s, s:s, s:o}", "ok", 1, "vm", vm.name, "id", vm.id, "events", arr);
	inv_vm_free(&vm);
	return r;
}

/* Add-VMHardDiskDrive: SCSI controller 0 (the worker's one synthetic controller), the next free
 * LUN unless given. Off (or Saved) only: the worker cannot hot-add a disk. */
static json_t *op_add_disk(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *path = jstr(req, "path"), *type = jstr(req, "controller_type");
	char path_canon[PATH_MAX];
	json_int_t ctrl = 0, lun = -1;
	bool have_lun = jint(req, "lun", &lun);
	jint(req, "controller", &ctrl);
	json_t *reply = NULL;
	int n = vm.ndisks;
	if (type && strcasecmp(type, "SCSI")) {
		reply = err_reply(0, "-ControllerType %s: only SCSI controllers are supported", type);
	} else if (ctrl != 0) {
		reply = err_reply(0, "-ControllerNumber %lld: the virtual machine has one SCSI controller (0)", (long long)ctrl);
	} else if (have_lun && (lun < 0 || lun >= INV_MAX_DISKS)) {
		reply = err_reply(0, "-ControllerLocation must be 0 to %d", INV_MAX_DISKS - 1);
	} else if (!path || path[0] != '/' || !file_readable(path)) {
		reply = err_reply(0, "the virtual hard disk '%s' does not exist or cannot be read (absolute path needed)", path ? path : "");
	} else if (!(path = vmms_caller_path(s, path, VMMS_CALLER_WRITE, "the virtual hard disk", path_canon, sizeof(path_canon), &reply))) {
		/* reply says why */
	} else if (!vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "get a disk while it is not Off (hot-add is not supported yet)");
	} else if (n + vm.ndvds >= INV_MAX_DISKS) {
		reply = err_reply(VMMS_ERR_CONFLICT, "'%s' has no free location on SCSI controller 0 (error 32788: configuration conflict)", vm.name);
	} else if (have_lun && vmms_location_used(&vm, (int)ctrl, (int)lun)) {
		reply = err_reply(VMMS_ERR_CONFLICT, "SCSI 0:%lld of '%s' is in use (error 32788: configuration conflict)",
				  (long long)lun, vm.name);
	}
	for (int i = 0; !reply && i < n; i++) {
		if (!strcmp(vm.disks[i].path, path))
			reply = err_reply(VMMS_ERR_CONFLICT, "'%s' is already attached to '%s' at SCSI 0:%d (error 32788: configuration conflict)",
					  path, vm.name, vm.disks[i].lun);
	}
	if (!reply && !have_lun) /* the lowest free LUN */
		for (lun = 0; lun < INV_MAX_DISKS && vmms_location_used(&vm, (int)ctrl, (int)lun); lun++)
			;
	if (!reply) {
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "hard disk drive added at SCSI 0:%lld: %s", (long long)lun, path);
		vm.disks[n] = (struct inv_disk){ .controller = (int)ctrl, .lun = (int)lun, .path = (char *)path };
		vm.ndisks = n + 1;
		int rc = inv_update_event(s->inv, &vm, msg);
		vm.ndisks = n; /* path is the request's, not ours to free */
		reply = rc < 0 ? err_reply(0, "inventory: %s", inv_error(s->inv))
			       : json_pack("{s:b, s:o}", "ok", 1, "disk", vmms_disk_json(&vm, &vm.disks[n]));
	}
	inv_vm_free(&vm);
	return reply;
}

/* Remove-VMHardDiskDrive: by location ("lun", controller 0) or by "path"; the file stays. */
static json_t *op_remove_disk(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	json_t *reply = NULL;
	int k = vmms_find_disk(&vm, req, &reply);
	if (k < 0) {
		/* reply says why */
	} else if (!vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "lose a disk while it is not Off (hot-remove is not supported yet)");
	} else {
		char msg[PATH_MAX + 64];
		struct inv_disk gone = vm.disks[k];
		snprintf(msg, sizeof(msg), "hard disk drive removed from SCSI %d:%d: %s", gone.controller, gone.lun, gone.path);
		memmove(&vm.disks[k], &vm.disks[k + 1], (size_t)(vm.ndisks - k - 1) * sizeof(vm.disks[0]));
		vm.disks[--vm.ndisks] = gone; /* kept in the array so inv_vm_free frees it */
		int rc = inv_update_event(s->inv, &vm, msg);
		vm.ndisks++;
		reply = rc < 0 ? err_reply(0, "inventory: %s", inv_error(s->inv))
			       : json_pack("{s:b, s:o}", "ok", 1, "disk", vmms_disk_json(&vm, &gone));
	}
	inv_vm_free(&vm);
	return reply;
}

/* Enable-/Disable-VMIntegrationService: stored; the worker gets --disable-ic at its next start. */
static json_t *op_set_ic(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *name = jstr(req, "name");
	json_t *en = json_object_get(req, "enabled");
	int i = vmms_ic_index(name);
	json_t *reply;
	if (i < 0) {
		reply = err_reply(0, "'%s' has no integration service named '%s' (Heartbeat, Shutdown, Time Synchronization, "
				  "Key-Value Pair Exchange, VSS, Guest Service Interface)", vm.name, name ? name : "");
	} else if (!json_is_boolean(en)) {
		reply = err_reply(0, "the request needs \"enabled\": true or false");
	} else if (vm.status.state == VM_SAVED || vm.status.state == VM_SAVING || vm.status.state == VM_RESTORING) {
		/* the saved state holds the worker's VMBus channels: a restore must offer the same */
		reply = conflict(&vm, "change its integration services while it has a saved state");
	} else {
		unsigned was = vm.ic_disabled;
		if (json_is_true(en))
			vm.ic_disabled &= ~(1u << i);
		else
			vm.ic_disabled |= 1u << i;
		bool live = vm_state_has_worker(vm.status.state);
		char msg[160];
		snprintf(msg, sizeof(msg), "integration service %s %s%s", ic_names[i].display, json_is_true(en) ? "enabled" : "disabled",
			 live && was != vm.ic_disabled ? " (takes effect at the next start)" : "");
		if (was != vm.ic_disabled && inv_update_event(s->inv, &vm, msg) < 0)
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		else
			reply = json_pack("{s:b, s:s, s:b, s:b}", "ok", 1, "name", ic_names[i].display, "enabled", json_is_true(en),
					  "pending_restart", live && was != vm.ic_disabled);
	}
	inv_vm_free(&vm);
	return reply;
}

/* Connect-VM's keyboard: base64 bytes to the worker's COM1 ({"op":"console-input"}). */
static json_t *op_console_input(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	const char *data = jstr(req, "data");
	json_t *reply;
	if (!data) {
		reply = err_reply(0, "console-input needs \"data\" (base64)");
	} else if (!worker_of(s, vm.id) || !vm_state_has_worker(vm.status.state)) {
		reply = conflict(&vm, "take console input");
	} else {
		json_t *wreq = json_pack("{s:s, s:s}", "op", "console-input", "data", data);
		char *line = json_dumps(wreq, JSON_COMPACT);
		json_decref(wreq);
		json_t *r = line ? worker_vm_call(&vm, line, 2000) : NULL;
		free(line);
		if (json_is_true(json_object_get(r, "ok"))) {
			reply = json_pack("{s:b, s:O}", "ok", 1, "accepted", json_object_get(r, "accepted"));
		} else {
			const char *why = r ? json_string_value(json_object_get(r, "error")) : "the worker does not answer";
			reply = err_reply(0, "'%s' takes no console input: %s", vm.name, why ? why : "refused");
		}
		json_decref(r);
	}
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_get(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	json_t *e = find_vm(s, req, &vm);
	if (e)
		return e;
	json_t *ics = NULL;
	json_t *o = vm_json(s, &vm, true, &ics);
	json_object_set_new(o, "integration_services", ics ? ics : json_object());
	inv_vm_free(&vm);
	return json_pack("{s:b, s:o}", "ok", 1, "vm", o);
}

/* Get-VMJob: one job by id, else every job (of one VM with "vm"). */
static json_t *job_json(struct vmms *s, const struct vmms_job *j)
{
	struct inv_vm vm;
	bool named = inv_find(s->inv, j->vm_id, &vm) == 1;
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:I}", "id", j->id, "vm_id", j->vm_id, "vm",
			      named ? vm.name : "", "kind", j->kind, "state", vmms_job_state_name(j->state), "percent", j->percent,
			      "error", j->error, "started_ms", (json_int_t)j->started_ms, "ended_ms", (json_int_t)j->ended_ms);
	if (named)
		inv_vm_free(&vm);
	return o;
}

static json_t *op_job_status(struct vmms *s, json_t *req)
{
	const char *id = jstr(req, "id");
	if (id) {
		struct vmms_job *j = vmms_job_find(&s->jobs, id);
		return j ? json_pack("{s:b, s:o}", "ok", 1, "job", job_json(s, j)) : err_reply(0, "no job with the id '%s'", id);
	}
	struct inv_vm vm;
	bool one = jstr(req, "vm") != NULL;
	if (one) {
		json_t *e = find_vm(s, req, &vm);
		if (e)
			return e;
	}
	json_t *arr = json_array();
	for (int i = 0; i < s->jobs.n; i++)
		if (!one || !strcmp(s->jobs.jobs[i].vm_id, vm.id))
			json_array_append_new(arr, job_json(s, &s->jobs.jobs[i]));
	if (one)
		inv_vm_free(&vm);
	return json_pack("{s:b, s:o}", "ok", 1, "jobs", arr);
}

json_t *vmms_request(struct vmms *s, json_t *req)
{
	const char *op = jstr(req, "op");
	if (!op)
		return err_reply(0, "request has no \"op\"");
	vmms_reap(s);
	if (!strcmp(op, "list"))
		return op_list(s, req);
	if (!strcmp(op, "get"))
		return op_get(s, req);
	if (!strcmp(op, "new"))
		return op_new(s, req);
	if (!strcmp(op, "set"))
		return op_set(s, req, false);
	if (!strcmp(op, "set-firmware"))
		return op_set(s, req, true);
	if (!strcmp(op, "remove"))
		return op_remove(s, req);
	if (!strcmp(op, "events"))
		return op_events(s, req);
	if (!strcmp(op, "add-disk"))
		return op_add_disk(s, req);
	if (!strcmp(op, "remove-disk"))
		return op_remove_disk(s, req);
	if (!strcmp(op, "set-ic"))
		return op_set_ic(s, req);
	if (!strcmp(op, "console-input"))
		return op_console_input(s, req);
	if (!strcmp(op, "host"))
		return op_host(s);
	if (!strcmp(op, "set-host"))
		return op_set_host(s, req);
	if (!strcmp(op, "ping"))
		return json_pack("{s:b, s:i}", "ok", 1, "pid", (int)getpid());
	if (!strcmp(op, "job-status"))
		return op_job_status(s, req);
	json_t *r = vmms_lifecycle_request(s, op, req);
	if (!r)
		r = vmms_dvd_request(s, op, req);
	if (!r)
		r = vmms_disk_qos_request(s, op, req);
	if (!r)
		r = vmms_processor_request(s, op, req);
	if (!r)
		r = vmms_metering_request(s, op, req);
	if (!r)
		r = vmms_net_request(s, op, req);
	if (!r)
		r = vmms_checkpoint_request(s, op, req);
	if (!r)
		r = vmms_token_request(s, op, req);
	if (!r)
		r = vmms_export_request(s, op, req);
	if (!r)
		r = vmms_storage_move_request(s, op, req);
	if (!r)
		r = vmms_guest_files_request(s, op, req);
	if (r)
		return r;
	return err_reply(0, "unknown op '%s'", op);
}

/* ---- periodic work and re-attaching ---- */

int vmms_init(struct vmms *s, const char *root, const char *vmwp, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	if (!realpath(root, s->root) && (mkdir_p(root) < 0 || !realpath(root, s->root))) {
		snprintf(err, errlen, "--root %s: %s", root, strerror(errno));
		return -1;
	}
	snprintf(s->vmwp, sizeof(s->vmwp), "%s", vmwp);
	/* vmswitch lives beside vmwp. */
	const char *slash = strrchr(s->vmwp, '/');
	snprintf(s->vmswitch, sizeof(s->vmswitch), "%.*s%svmswitch", slash ? (int)(slash - s->vmwp) : 0, s->vmwp, slash ? "/" : "");
	if (getenv("VIRIDIAN_VMSWITCH"))
		snprintf(s->vmswitch, sizeof(s->vmswitch), "%s", getenv("VIRIDIAN_VMSWITCH"));
	cpu_cgroups_init(&s->cg, getenv("VIRIDIAN_CGROUP"));
	const char *dirs[] = { "Virtual Machines", "Virtual Hard Disks", "Snapshots" };
	char p[PATH_MAX + 32];
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", s->root, dirs[i]);
		if (mkdir_p(p) < 0) {
			snprintf(err, errlen, "%s: %s", p, strerror(errno));
			return -1;
		}
	}
	/* One vmms per root: a second one would manage the same workers. */
	snprintf(p, sizeof(p), "%s/vmms.lock", s->root);
	s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "%s: %s", p, errno == EWOULDBLOCK ? "another vmms manages this root" : strerror(errno));
		if (s->lock_fd >= 0)
			close(s->lock_fd);
		s->lock_fd = -1;
		return -1;
	}
	snprintf(p, sizeof(p), "%s/vmms.db", s->root);
	if (!(s->inv = inv_open(p, err, errlen))) {
		close(s->lock_fd);
		s->lock_fd = -1;
		return -1;
	}
	snprintf(p, sizeof(p), "%s/tokens.db", s->root);
	if (!(s->tokens = token_store_open(p, err, errlen))) {
		inv_close(s->inv);
		s->inv = NULL;
		close(s->lock_fd);
		s->lock_fd = -1;
		return -1;
	}
	vmms_reattach(s);
	vmms_checkpoints_recover(s);
	return 0;
}

void vmms_fini(struct vmms *s)
{
	for (int i = 0; i < s->nworkers; i++) {
		if (s->workers[i].pidfd >= 0)
			close(s->workers[i].pidfd);
		if (s->workers[i].save_fd >= 0) /* a save's answer is lost: the next vmms looks for the file */
			close(s->workers[i].save_fd);
	}
	s->nworkers = 0;
	vmms_jobs_fini(&s->jobs); /* an unfinished one stays in the journal for the next start */
	vmms_switches_fini(s);
	inv_close(s->inv);
	s->inv = NULL;
	token_store_close(s->tokens);
	s->tokens = NULL;
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->lock_fd = -1;
}
