/* The SQLite inventory (one transaction per change; a crash mid-change leaves the old
 * configuration) and the service's request handling without workers. */
#include <arpa/inet.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "vmms/inventory.h"
#include "vmms/service.h"

static char dir[64];
static char db[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/vmms-inv-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/vmms.db", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct inventory *open_db(void)
{
	char err[256];
	struct inventory *inv = inv_open(db, err, sizeof(err));
	if (!inv)
		fail_msg("%s", err);
	return inv;
}

static void sample(struct inv_vm *vm, const char *id, const char *name)
{
	memset(vm, 0, sizeof(*vm));
	snprintf(vm->id, sizeof(vm->id), "%s", id);
	vm->name = (char *)name;
	vm->generation = 2;
	vm->cpus = 2;
	vm->memory = 1ull << 30;
	vm->path = "/tmp/x";
	vm->ndisks = 2;
	vm->disks[0] = (struct inv_disk){ .controller = 0, .lun = 0, .path = "/d/a.vhdx" };
	vm->disks[1] = (struct inv_disk){ .controller = 0, .lun = 1, .path = "/d/b.vhdx" };
}

#define ID1 "11111111-2222-4333-8444-555555555555"
#define ID2 "aaaaaaaa-2222-4333-8444-555555555555"

static void create_find_update_remove(void **state)
{
	(void)state;
	struct inventory *inv = open_db();
	struct inv_vm vm, got;
	sample(&vm, ID1, "Web");
	assert_int_equal(inv_create(inv, &vm), 0);
	/* names are unique, case-insensitively; nothing half-created by the refused insert */
	sample(&vm, ID2, "WEB");
	assert_int_equal(inv_create(inv, &vm), -1);
	assert_true(inv_last_dup(inv));
	assert_non_null(strstr(inv_error(inv), "already exists"));
	assert_int_equal(inv_find(inv, ID2, &got), 0);
	assert_int_equal(inv_find(inv, "web", &got), 1);
	assert_string_equal(got.id, ID1);
	assert_string_equal(got.name, "Web");
	assert_int_equal(got.ndisks, 2);
	assert_string_equal(got.disks[1].path, "/d/b.vhdx");
	assert_string_equal(got.auto_start, "StartIfRunning");
	inv_vm_free(&got);
	assert_int_equal(inv_find(inv, "11111111-2222-4333-8444-555555555555", &got), 1);
	inv_vm_free(&got);
	assert_int_equal(inv_find(inv, "1111111-2222-4333-8444-555555555555", &got), 0);
	/* update: config and disks together */
	sample(&vm, ID1, "Web");
	vm.cpus = 8;
	vm.notes = "n";
	vm.kernel = "/k";
	vm.ndisks = 1;
	vm.disks[0] = (struct inv_disk){ .controller = 0, .lun = 3, .path = "/d/c.vhdx" };
	assert_int_equal(inv_update(inv, &vm), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_int_equal(got.cpus, 8);
	assert_string_equal(got.notes, "n");
	assert_string_equal(got.kernel, "/k");
	assert_null(got.initrd);
	assert_int_equal(got.ndisks, 1);
	assert_int_equal(got.disks[0].lun, 3);
	assert_int_equal(got.ndvds, 0);
	inv_vm_free(&got);
	/* DVD drives: in their own table, in location order, "" for an empty drive */
	vm.ndvds = 2;
	vm.dvds[0] = (struct inv_disk){ .controller = 0, .lun = 9, .path = "" };
	vm.dvds[1] = (struct inv_disk){ .controller = 0, .lun = 4, .path = "/iso/a.iso" };
	assert_int_equal(inv_update(inv, &vm), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_int_equal(got.ndisks, 1);
	assert_int_equal(got.ndvds, 2);
	assert_int_equal(got.dvds[0].lun, 4);
	assert_string_equal(got.dvds[0].path, "/iso/a.iso");
	assert_int_equal(got.dvds[1].lun, 9);
	assert_string_equal(got.dvds[1].path, "");
	inv_vm_free(&got);
	vm.ndvds = 0;
	/* runtime status with its event in one transaction */
	struct vm_status st = { VM_RUNNING, VM_OPS_NONE };
	assert_int_equal(inv_set_status(inv, ID1, st, 1234, 99, "Information", "running"), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_int_equal(got.status.state, VM_RUNNING);
	assert_int_equal(got.worker_pid, 1234);
	assert_int_equal((int)got.worker_start, 99);
	inv_vm_free(&got);
	struct inv_event ev[8];
	int n = inv_events(inv, ID1, ev, 8);
	assert_int_equal(n, 4); /* created, two updates, running */
	assert_string_equal(ev[0].message, "virtual machine created");
	assert_string_equal(ev[3].message, "running");
	assert_int_equal(inv_events(inv, ID1, ev, 1), 1);
	assert_string_equal(ev[0].message, "running"); /* the newest */
	/* list */
	sample(&vm, ID2, "alpha");
	vm.ndisks = 0;
	assert_int_equal(inv_create(inv, &vm), 0);
	struct inv_vm *all;
	assert_int_equal(inv_list(inv, &all, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(all[0].name, "alpha");
	for (int i = 0; i < n; i++)
		inv_vm_free(&all[i]);
	free(all);
	/* remove cascades to disks and events */
	assert_int_equal(inv_remove(inv, ID1), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 0);
	assert_int_equal(inv_events(inv, ID1, ev, 8), 0);
	inv_close(inv);
	/* persisted */
	inv = open_db();
	assert_int_equal(inv_find(inv, "ALPHA", &got), 1);
	inv_vm_free(&got);
	inv_close(inv);
}

static void crash_now(const char *where)
{
	if (!strcmp(where, getenv("CRASH_AT")))
		_exit(42); /* no rollback, no close: as if the process died here */
}

/* Storage QoS belongs to a drive's location: kept by inv_update (new paths, a checkpoint
 * applied), gone with the drive, refused for a location with no hard disk. */
static void disk_qos(void **state)
{
	(void)state;
	struct inventory *inv = open_db();
	struct inv_vm vm, got;
	sample(&vm, ID1, "Web");
	assert_int_equal(inv_create(inv, &vm), 0);
	assert_int_equal(inv_set_disk_qos(inv, ID1, 0, 1, 500, 1 << 20, "qos"), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_int_equal(got.disks[0].max_iops, 0);
	assert_int_equal(got.disks[1].max_iops, 500);
	assert_int_equal(got.disks[1].max_bandwidth, 1 << 20);
	inv_vm_free(&got);
	vm.disks[1].path = "/d/b-child.avhdx"; /* a checkpoint's child: same location */
	assert_int_equal(inv_update(inv, &vm), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_string_equal(got.disks[1].path, "/d/b-child.avhdx");
	assert_int_equal(got.disks[1].max_iops, 500);
	inv_vm_free(&got);
	assert_int_equal(inv_set_disk_qos(inv, ID1, 0, 7, 5, 0, "qos"), -1); /* no drive there */
	assert_non_null(strstr(inv_error(inv), "no hard disk drive at 0:7"));
	vm.ndisks = 1; /* the drive at 0:1 removed, then another added there */
	assert_int_equal(inv_update(inv, &vm), 0);
	vm.ndisks = 2;
	assert_int_equal(inv_update(inv, &vm), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_int_equal(got.disks[1].max_iops, 0);
	inv_vm_free(&got);
	assert_int_equal(inv_set_disk_qos(inv, ID1, 0, 0, 9, 9, "qos"), 0);
	assert_int_equal(inv_set_disk_qos(inv, ID1, 0, 0, 0, 0, "none"), 0); /* lifted: the row goes */
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_int_equal(got.disks[0].max_iops + got.disks[0].max_bandwidth, 0);
	inv_vm_free(&got);
	inv_close(inv);
}

static void crash_mid_update(void **state)
{
	(void)state;
	static const char *const points[] = { "vm-updated", "disks-deleted" };
	for (size_t p = 0; p < 2; p++) {
		unlink(db);
		char wal[160];
		snprintf(wal, sizeof(wal), "%s-wal", db);
		unlink(wal);
		struct inventory *inv = open_db();
		struct inv_vm vm, got;
		sample(&vm, ID1, "web");
		assert_int_equal(inv_create(inv, &vm), 0);
		inv_close(inv);
		setenv("CRASH_AT", points[p], 1);
		pid_t pid = fork();
		if (pid == 0) {
			struct inventory *c = open_db();
			inv_test_hook = crash_now;
			struct inv_vm nv;
			sample(&nv, ID1, "renamed");
			nv.cpus = 16;
			nv.ndisks = 1;
			nv.disks[0] = (struct inv_disk){ .controller = 1, .lun = 7, .path = "/d/new.vhdx" };
			inv_update(c, &nv);
			_exit(0); /* the hook should have fired */
		}
		int ws;
		assert_int_equal(waitpid(pid, &ws, 0), pid);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 42);
		inv = open_db();
		assert_int_equal(inv_find(inv, ID1, &got), 1);
		/* all of the old configuration, none of the new */
		assert_string_equal(got.name, "web");
		assert_int_equal(got.cpus, 2);
		assert_int_equal(got.ndisks, 2);
		assert_string_equal(got.disks[0].path, "/d/a.vhdx");
		inv_vm_free(&got);
		assert_int_equal(inv_find(inv, "renamed", &got), 0);
		/* and the database takes changes again */
		sample(&vm, ID1, "web");
		vm.cpus = 3;
		assert_int_equal(inv_update(inv, &vm), 0);
		inv_close(inv);
	}
}

static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static json_t *req(struct vmms *s, const char *text)
{
	json_t *r = json_loads(text, 0, NULL);
	assert_non_null(r);
	json_t *reply = vmms_request(s, r);
	json_decref(r);
	return reply;
}

static bool ok(json_t *r)
{
	bool v = json_is_true(json_object_get(r, "ok"));
	json_decref(r);
	return v;
}

static void service_requests(void **state)
{
	(void)state;
	struct vmms *s = calloc(1, sizeof(*s));
	char err[256], root[128], vms[160];
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(vms, sizeof(vms), "%s/Virtual Machines", root);
	assert_int_equal(vmms_init(s, root, "/nonexistent/vmwp", err, sizeof(err)), 0);
	assert_true(ok(req(s, "{\"op\":\"new\",\"name\":\"a\",\"memory\":1073741824,\"cpus\":2}")));
	/* bad input: nothing created */
	const char *bad[] = {
		"{\"op\":\"new\",\"name\":\"A\"}",                       /* duplicate, other case */
		"{\"op\":\"new\",\"name\":\"b\",\"memory\":1000}",       /* too small */
		"{\"op\":\"new\",\"name\":\"b\",\"memory\":1073741825}", /* not 2 MB units */
		"{\"op\":\"new\",\"name\":\"b\",\"cpus\":0}",
		"{\"op\":\"new\",\"name\":\"b\",\"cpus\":65}",
		"{\"op\":\"new\",\"name\":\"b\",\"generation\":3}",
		"{\"op\":\"new\",\"name\":\"b/c\"}",
		"{\"op\":\"new\",\"name\":\"\"}",
		"{\"op\":\"new\",\"name\":\"b\",\"vhd_path\":\"/nonexistent.vhdx\"}",
		"{\"op\":\"new\",\"name\":\"b\",\"new_vhd_path\":\"x.vhdx\"}",
		"{\"op\":\"new\",\"name\":\"b\",\"new_vhd_path\":\"/proc/none/x.vhdx\",\"new_vhd_size\":1048576}",
		"{\"op\":\"set\",\"vm\":\"a\",\"cpus\":0}",
		"{\"op\":\"set\",\"vm\":\"a\",\"automatic_start_action\":\"Sometimes\"}",
		"{\"op\":\"set\",\"vm\":\"nobody\",\"cpus\":1}",
		"{\"op\":\"set-firmware\",\"vm\":\"a\",\"kernel\":\"/nonexistent\"}",
		"{\"op\":\"start\",\"vm\":\"a\"}", /* no kernel */
		"{\"op\":\"frob\"}",
		"{}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ok(req(s, bad[i])))
			fail_msg("accepted: %s", bad[i]);
	assert_int_equal(count_entries(vms), 1);
	json_t *r = req(s, "{\"op\":\"list\"}");
	assert_int_equal(json_array_size(json_object_get(r, "vms")), 1);
	json_decref(r);
	/* set while Off works; the VM is found by GUID too */
	r = req(s, "{\"op\":\"list\",\"name\":\"A\"}");
	const char *id = json_string_value(json_object_get(json_array_get(json_object_get(r, "vms"), 0), "id"));
	assert_non_null(id);
	char q[256];
	snprintf(q, sizeof(q), "{\"op\":\"set\",\"vm\":\"%s\",\"cpus\":4,\"automatic_start_action\":\"start\",\"notes\":\"x\"}", id);
	json_decref(r);
	r = req(s, q);
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "vm"), "cpus")), 4);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "vm"), "automatic_start_action")), "Start");
	json_decref(r);
	/* a running VM (status faked in the inventory) refuses Set-VM and Remove-VM with 32788 */
	struct inv_vm vm;
	assert_int_equal(inv_find(s->inv, "a", &vm), 1);
	assert_int_equal(inv_set_status(s->inv, vm.id, (struct vm_status){ VM_RUNNING, VM_OPS_NONE }, 0, 0, NULL, NULL), 0);
	inv_vm_free(&vm);
	r = req(s, "{\"op\":\"set\",\"vm\":\"a\",\"cpus\":2}");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 32788);
	json_decref(r);
	r = req(s, "{\"op\":\"remove\",\"vm\":\"a\"}");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 32788);
	json_decref(r);
	/* a restart finds no worker for the "running" VM and marks it Off with a reason */
	vmms_fini(s);
	assert_int_equal(vmms_init(s, root, "/nonexistent/vmwp", err, sizeof(err)), 0);
	r = req(s, "{\"op\":\"get\",\"vm\":\"a\"}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "vm"), "state")), "Off");
	json_decref(r);
	r = req(s, "{\"op\":\"events\",\"vm\":\"a\"}");
	json_t *evs = json_object_get(r, "events");
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(evs, json_array_size(evs) - 1), "message")), "gone"));
	json_decref(r);
	assert_true(ok(req(s, "{\"op\":\"remove\",\"vm\":\"a\"}")));
	assert_int_equal(count_entries(vms), 0);
	vmms_fini(s);
	free(s);
}

static int64_t reply_id(json_t *r)
{
	int64_t id = json_integer_value(json_object_get(r, "id"));
	json_decref(r);
	return id;
}

/* Add/Remove-VMHardDiskDrive, Enable/Disable-VMIntegrationService, Get/Set-VMHost. */
static void service_drives_ics_host(void **state)
{
	(void)state;
	struct vmms *s = calloc(1, sizeof(*s));
	char err[256], root[128], disk[3][160], q[512];
	snprintf(root, sizeof(root), "%s/root", dir);
	assert_int_equal(vmms_init(s, root, "/nonexistent/vmwp", err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(disk[i], sizeof(disk[i]), "%s/d%d.raw", dir, i);
		FILE *f = fopen(disk[i], "w");
		assert_non_null(f);
		fclose(f);
	}
	snprintf(q, sizeof(q), "{\"op\":\"new\",\"name\":\"a\",\"vhd_path\":\"%s\"}", disk[0]);
	assert_true(ok(req(s, q)));
	/* next free LUN, then an explicit one */
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"A\",\"path\":\"%s\"}", disk[1]);
	json_t *r = req(s, q);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "disk"), "lun")), 1);
	json_decref(r);
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\",\"lun\":5,\"controller_type\":\"scsi\"}", disk[2]);
	assert_true(ok(req(s, q)));
	/* refused: duplicate path, occupied location, missing file, relative path, IDE, bad LUN */
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\"}", disk[1]);
	assert_int_equal(reply_id(req(s, q)), 32788);
	snprintf(q, sizeof(q), "{\"op\":\"remove-disk\",\"vm\":\"a\",\"path\":\"%s\"}", disk[2]);
	assert_true(ok(req(s, q)));
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\",\"lun\":1}", disk[2]);
	assert_int_equal(reply_id(req(s, q)), 32788);
	const char *bad[] = {
		"{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"/nonexistent.vhdx\"}",
		"{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"d2.raw\"}",
		"{\"op\":\"add-disk\",\"vm\":\"a\"}",
		"{\"op\":\"add-disk\",\"vm\":\"nobody\",\"path\":\"/\"}",
		"{\"op\":\"remove-disk\",\"vm\":\"a\",\"lun\":9}",
		"{\"op\":\"remove-disk\",\"vm\":\"a\"}",
		"{\"op\":\"set-ic\",\"vm\":\"a\",\"name\":\"Frob\",\"enabled\":false}",
		"{\"op\":\"set-ic\",\"vm\":\"a\",\"name\":\"VSS\"}",
		"{\"op\":\"set-host\"}",
		"{\"op\":\"set-host\",\"virtual_machine_path\":\"relative\"}",
		"{\"op\":\"set-host\",\"virtual_hard_disk_path\":\"/nonexistent\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ok(req(s, bad[i])))
			fail_msg("accepted: %s", bad[i]);
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\",\"controller_type\":\"IDE\"}", disk[2]);
	assert_false(ok(req(s, q)));
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\",\"lun\":64}", disk[2]);
	assert_false(ok(req(s, q)));
	struct inv_vm vm;
	assert_int_equal(inv_find(s->inv, "a", &vm), 1);
	assert_int_equal(vm.ndisks, 2);
	assert_int_equal(vm.disks[1].lun, 1);
	assert_string_equal(vm.disks[1].path, disk[1]);
	inv_vm_free(&vm);
	assert_true(ok(req(s, "{\"op\":\"remove-disk\",\"vm\":\"a\",\"lun\":0}")));
	/* console input needs a worker */
	assert_int_equal(reply_id(req(s, "{\"op\":\"console-input\",\"vm\":\"a\",\"data\":\"YQ==\"}")), 32788);
	assert_false(ok(req(s, "{\"op\":\"console-input\",\"vm\":\"a\"}")));
	/* integration services: display names, case-insensitive; stored */
	assert_true(ok(req(s, "{\"op\":\"set-ic\",\"vm\":\"a\",\"name\":\"key-value pair exchange\",\"enabled\":false}")));
	assert_true(ok(req(s, "{\"op\":\"set-ic\",\"vm\":\"a\",\"name\":\"Time Synchronization\",\"enabled\":false}")));
	assert_true(ok(req(s, "{\"op\":\"set-ic\",\"vm\":\"a\",\"name\":\"timesync\",\"enabled\":true}")));
	assert_int_equal(vmms_ic_index("Guest Service Interface (VSS)"), INV_IC_VSS);
	assert_int_equal(vmms_ic_index("guest service interface"), INV_IC_GSI);
	assert_int_equal(vmms_ic_index("Heartbeat"), INV_IC_HEARTBEAT);
	assert_int_equal(vmms_ic_index("Heart"), -1);
	/* a running VM (faked) refuses drive changes with 32788; IC changes wait for the next start */
	assert_int_equal(inv_find(s->inv, "a", &vm), 1);
	assert_int_equal(vm.ic_disabled, (1u << INV_IC_KVP) | (1u << INV_IC_GSI)); /* GSI: off from New-VM on */
	assert_int_equal(inv_set_status(s->inv, vm.id, (struct vm_status){ VM_RUNNING, VM_OPS_NONE }, 0, 0, NULL, NULL), 0);
	inv_vm_free(&vm);
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\"}", disk[2]);
	assert_int_equal(reply_id(req(s, q)), 32788);
	assert_int_equal(reply_id(req(s, "{\"op\":\"remove-disk\",\"vm\":\"a\",\"lun\":1}")), 32788);
	r = req(s, "{\"op\":\"set-ic\",\"vm\":\"a\",\"name\":\"Shutdown\",\"enabled\":false}");
	assert_true(json_is_true(json_object_get(r, "pending_restart")));
	json_decref(r);
	/* the host's folders: defaults, set, survive a restart, used by New-VM */
	r = req(s, "{\"op\":\"host\"}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "host"), "virtual_machine_path")), s->root);
	assert_true(json_integer_value(json_object_get(json_object_get(r, "host"), "logical_processor_count")) >= 1);
	json_decref(r);
	snprintf(q, sizeof(q), "{\"op\":\"set-host\",\"virtual_machine_path\":\"%s\",\"virtual_hard_disk_path\":\"%s\"}", dir, dir);
	assert_true(ok(req(s, q)));
	vmms_fini(s);
	assert_int_equal(vmms_init(s, root, "/nonexistent/vmwp", err, sizeof(err)), 0);
	assert_int_equal(inv_find(s->inv, "a", &vm), 1);
	assert_int_equal(vm.ic_disabled, (1u << INV_IC_KVP) | (1u << INV_IC_SHUTDOWN) | (1u << INV_IC_GSI));
	inv_vm_free(&vm);
	assert_true(ok(req(s, "{\"op\":\"new\",\"name\":\"b\",\"new_vhd_path\":\"b.vhdx\",\"new_vhd_size\":1048576}")));
	assert_int_equal(inv_find(s->inv, "b", &vm), 1);
	char want[256];
	snprintf(want, sizeof(want), "%s/Virtual Machines/", dir);
	assert_memory_equal(vm.path, want, strlen(want));
	snprintf(want, sizeof(want), "%s/b.vhdx", dir);
	assert_string_equal(vm.disks[0].path, want);
	inv_vm_free(&vm);
	vmms_fini(s);
	free(s);
}

/* Add/Get/Set/Remove-VMDvdDrive: locations shared with the disks, kept in order, refusals. */
static void service_dvds(void **state)
{
	(void)state;
	struct vmms *s = calloc(1, sizeof(*s));
	char err[256], root[128], iso[160], disk[160], q[512];
	snprintf(root, sizeof(root), "%s/root", dir);
	assert_int_equal(vmms_init(s, root, "/nonexistent/vmwp", err, sizeof(err)), 0);
	snprintf(iso, sizeof(iso), "%s/a.iso", dir);
	snprintf(disk, sizeof(disk), "%s/b.raw", dir);
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(i ? disk : iso, "w");
		assert_non_null(f);
		fclose(f);
	}
	snprintf(q, sizeof(q), "{\"op\":\"new\",\"name\":\"a\",\"vhd_path\":\"%s\"}", disk);
	assert_true(ok(req(s, q)));
	/* an empty drive at 3, one with a disc at the next free location (1: the disk has 0) */
	assert_true(ok(req(s, "{\"op\":\"add-dvd\",\"vm\":\"a\",\"lun\":3}")));
	snprintf(q, sizeof(q), "{\"op\":\"add-dvd\",\"vm\":\"a\",\"path\":\"%s\"}", iso);
	json_t *r = req(s, q);
	json_t *d = json_object_get(r, "dvd");
	assert_int_equal(json_integer_value(json_object_get(d, "lun")), 1);
	assert_string_equal(json_string_value(json_object_get(d, "media")), "ISO");
	json_decref(r);
	assert_true(ok(req(s, "{\"op\":\"add-dvd\",\"vm\":\"a\",\"lun\":2,\"path\":\"\"}")));
	r = req(s, "{\"op\":\"get-dvd\",\"vm\":\"a\"}");
	json_t *all = json_object_get(r, "dvds");
	assert_int_equal(json_array_size(all), 3);
	for (int i = 0; i < 3; i++) /* in location order */
		assert_int_equal(json_integer_value(json_object_get(json_array_get(all, (size_t)i), "lun")), i + 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(all, 2), "media")), "None");
	json_decref(r);
	/* a disk takes the next location free of both, and not a DVD drive's */
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\"}", iso);
	r = req(s, q);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "disk"), "lun")), 4);
	json_decref(r);
	assert_true(ok(req(s, "{\"op\":\"remove-disk\",\"vm\":\"a\",\"lun\":4}")));
	snprintf(q, sizeof(q), "{\"op\":\"add-disk\",\"vm\":\"a\",\"path\":\"%s\",\"lun\":3}", iso);
	assert_int_equal(reply_id(req(s, q)), 32788);
	const char *bad[] = {
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"lun\":3}", /* taken by a DVD drive */
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"lun\":0}", /* taken by the disk */
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"path\":\"/nonexistent.iso\"}",
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"path\":\"a.iso\"}",
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"controller_type\":\"IDE\"}",
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"controller\":1}",
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"lun\":64}",
		"{\"op\":\"add-dvd\",\"vm\":\"a\",\"lun\":-1}",
		"{\"op\":\"add-dvd\",\"vm\":\"nobody\"}",
		"{\"op\":\"set-dvd\",\"vm\":\"a\",\"lun\":0,\"path\":\"\"}", /* a disk */
		"{\"op\":\"set-dvd\",\"vm\":\"a\",\"lun\":1}",               /* nothing to change */
		"{\"op\":\"set-dvd\",\"vm\":\"a\",\"path\":\"\"}",           /* which drive? */
		"{\"op\":\"set-dvd\",\"vm\":\"a\",\"lun\":1,\"path\":\"/nonexistent.iso\"}",
		"{\"op\":\"remove-dvd\",\"vm\":\"a\",\"lun\":0}",
		"{\"op\":\"remove-dvd\",\"vm\":\"a\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ok(req(s, bad[i])))
			fail_msg("accepted: %s", bad[i]);
	/* set and remove; the rest stays in order */
	assert_true(ok(req(s, "{\"op\":\"set-dvd\",\"vm\":\"a\",\"lun\":1,\"path\":\"\"}")));
	snprintf(q, sizeof(q), "{\"op\":\"set-dvd\",\"vm\":\"a\",\"lun\":3,\"path\":\"%s\"}", iso);
	assert_true(ok(req(s, q)));
	assert_true(ok(req(s, "{\"op\":\"remove-dvd\",\"vm\":\"a\",\"lun\":2}")));
	struct inv_vm vm;
	assert_int_equal(inv_find(s->inv, "a", &vm), 1);
	assert_int_equal(vm.ndvds, 2);
	assert_int_equal(vm.dvds[0].lun, 1);
	assert_string_equal(vm.dvds[0].path, "");
	assert_int_equal(vm.dvds[1].lun, 3);
	assert_string_equal(vm.dvds[1].path, iso);
	/* a Running VM (faked): add and remove refused with 32788; a live change needs the worker */
	assert_int_equal(inv_set_status(s->inv, vm.id, (struct vm_status){ VM_RUNNING, VM_OPS_NONE }, 0, 0, NULL, NULL), 0);
	inv_vm_free(&vm);
	assert_int_equal(reply_id(req(s, "{\"op\":\"add-dvd\",\"vm\":\"a\"}")), 32788);
	assert_int_equal(reply_id(req(s, "{\"op\":\"remove-dvd\",\"vm\":\"a\",\"lun\":1}")), 32788);
	snprintf(q, sizeof(q), "{\"op\":\"set-dvd\",\"vm\":\"a\",\"lun\":1,\"path\":\"%s\"}", iso);
	r = req(s, q);
	assert_false(json_is_true(json_object_get(r, "ok")));
	assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "worker does not answer"));
	json_decref(r);
	assert_int_equal(inv_find(s->inv, "a", &vm), 1); /* unchanged: still no disc */
	assert_string_equal(vm.dvds[0].path, "");
	inv_vm_free(&vm);
	vmms_fini(s);
	free(s);
}

/* Switches and network adapters in the inventory: one transaction per change. */
static void switches_and_nics(void **state)
{
	(void)state;
	struct inventory *inv = open_db();
	struct inv_vm vm;
	sample(&vm, ID1, "web");
	assert_int_equal(inv_create(inv, &vm), 0);
	struct inv_switch sw = { .id = "cccccccc-2222-4333-8444-555555555555", .name = "LAN", .type = "Internal",
				 .host_adapter = "vs-LAN", .notes = "n" }, got;
	assert_int_equal(inv_switch_create(inv, &sw), 0);
	struct inv_switch dup = sw;
	snprintf(dup.id, sizeof(dup.id), "dddddddd-2222-4333-8444-555555555555");
	snprintf(dup.name, sizeof(dup.name), "lan");
	assert_int_equal(inv_switch_create(inv, &dup), -1); /* names are unique, case-insensitively */
	assert_true(inv_last_dup(inv));
	assert_non_null(strstr(inv_error(inv), "already exists"));
	snprintf(dup.name, sizeof(dup.name), "priv");
	snprintf(dup.type, sizeof(dup.type), "Private");
	dup.host_adapter[0] = '\0';
	assert_int_equal(inv_switch_create(inv, &dup), 0);
	assert_int_equal(inv_switch_find(inv, "lan", &got), 1);
	assert_string_equal(got.id, sw.id);
	assert_string_equal(got.host_adapter, "vs-LAN");
	assert_string_equal(got.notes, "n");
	assert_int_equal(inv_switch_find(inv, sw.id, &got), 1);
	assert_int_equal(inv_switch_find(inv, "nope", &got), 0);
	assert_int_equal(inv_switch_set_runtime(inv, sw.id, 4321, 77), 0);
	assert_int_equal(inv_switch_find(inv, "LAN", &got), 1);
	assert_int_equal(got.pid, 4321);
	assert_int_equal((int)got.pid_start, 77);
	struct inv_switch *all;
	int n;
	assert_int_equal(inv_switch_list(inv, &all, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(all[0].name, "LAN");
	assert_string_equal(all[1].name, "priv");
	free(all);

	/* adapters: put replaces the VM's set; an unknown switch id fails with nothing changed */
	struct inv_nic nics[3] = {
		{ .slot = 0, .name = "Network Adapter", .mac = "00155D000001", .vlan = 5 },
		{ .slot = 2, .name = "b", .mac = "00155D000002", .static_mac = true, .mac_spoofing = true },
	};
	snprintf(nics[0].switch_id, sizeof(nics[0].switch_id), "%s", sw.id);
	assert_int_equal(inv_nics_put(inv, ID1, nics, 2, "two adapters"), 0);
	nics[2] = (struct inv_nic){ .slot = 3, .name = "c", .mac = "00155D000003", .switch_id = "eeeeeeee-2222-4333-8444-555555555555" };
	assert_int_equal(inv_nics_put(inv, ID1, nics, 3, "three"), -1);
	struct inv_nic *list;
	assert_int_equal(inv_nic_list(inv, ID1, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].switch_id, sw.id);
	assert_int_equal(list[0].vlan, 5);
	assert_string_equal(list[1].name, "b");
	assert_int_equal(list[1].slot, 2);
	assert_true(list[1].static_mac);
	assert_true(list[1].mac_spoofing);
	assert_string_equal(list[1].switch_id, "");
	assert_string_equal(list[1].vm_id, ID1);
	free(list);
	sample(&vm, ID2, "db");
	assert_int_equal(inv_create(inv, &vm), 0);
	assert_int_equal(inv_nics_put(inv, ID2, &nics[1], 1, NULL), 0);
	assert_int_equal(inv_nic_list(inv, NULL, &list, &n), 0); /* every VM's */
	assert_int_equal(n, 3);
	free(list);
	/* removing the switch leaves its adapters unconnected, with an event, in one go */
	assert_int_equal(inv_switch_remove(inv, sw.id, "switch gone"), 0);
	assert_int_equal(inv_switch_find(inv, sw.id, &got), 0);
	assert_int_equal(inv_nic_list(inv, ID1, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].switch_id, "");
	assert_int_equal(list[0].vlan, 5);
	free(list);
	struct inv_event ev[8];
	n = inv_events(inv, ID1, ev, 8);
	assert_string_equal(ev[n - 1].message, "switch gone");
	n = inv_events(inv, ID2, ev, 8);
	assert_string_equal(ev[n - 1].message, "virtual machine created"); /* db had nothing on it */
	/* removing a VM removes its adapters */
	assert_int_equal(inv_remove(inv, ID1), 0);
	assert_int_equal(inv_nic_list(inv, ID1, &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);
	inv_close(inv);
}

static void crash_mid_nics_put(void **state)
{
	(void)state;
	struct inventory *inv = open_db();
	struct inv_vm vm;
	sample(&vm, ID1, "web");
	assert_int_equal(inv_create(inv, &vm), 0);
	struct inv_nic nic = { .slot = 0, .name = "old", .mac = "00155D000001" };
	assert_int_equal(inv_nics_put(inv, ID1, &nic, 1, NULL), 0);
	inv_close(inv);
	setenv("CRASH_AT", "nics-deleted", 1);
	pid_t pid = fork();
	if (pid == 0) {
		struct inventory *c = open_db();
		inv_test_hook = crash_now;
		struct inv_nic two[2] = { { .slot = 0, .name = "new", .mac = "00155D000002" },
					  { .slot = 1, .name = "new2", .mac = "00155D000003" } };
		inv_nics_put(c, ID1, two, 2, "changed");
		_exit(0);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	assert_int_equal(WEXITSTATUS(ws), 42);
	inv = open_db();
	struct inv_nic *list;
	int n;
	assert_int_equal(inv_nic_list(inv, ID1, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].name, "old");
	free(list);
	inv_close(inv);
}

/* A vmms.db from before switches and adapters gains their tables and keeps its VMs. */
static void upgrade_old_database(void **state)
{
	(void)state;
	sqlite3 *db3;
	assert_int_equal(sqlite3_open(db, &db3), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db3,
		"CREATE TABLE vms (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, generation INTEGER NOT NULL,"
		" cpus INTEGER NOT NULL, memory INTEGER NOT NULL, kernel TEXT, initrd TEXT, cmdline TEXT,"
		" notes TEXT NOT NULL DEFAULT '', auto_start TEXT NOT NULL, auto_stop TEXT NOT NULL,"
		" path TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0, opstate INTEGER NOT NULL DEFAULT 0,"
		" worker_pid INTEGER NOT NULL DEFAULT 0, worker_start INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
		"INSERT INTO vms(id, name, generation, cpus, memory, auto_start, auto_stop, path, created)"
		" VALUES ('" ID1 "', 'old', 1, 1, 536870912, 'Start', 'Save', '/x', 1);",
		NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db3);
	struct inventory *inv = open_db();
	struct inv_vm got;
	assert_int_equal(inv_find(inv, "old", &got), 1);
	assert_int_equal(got.ndvds, 0); /* the DVD drive table is created */
	got.ndvds = 1;
	got.dvds[0] = (struct inv_disk){ .controller = 0, .lun = 1, .path = strdup("/iso/x.iso") };
	assert_int_equal(inv_update(inv, &got), 0);
	inv_vm_free(&got);
	assert_int_equal(inv_find(inv, "old", &got), 1);
	assert_int_equal(got.ndvds, 1);
	inv_vm_free(&got);
	struct inv_nic nic = { .slot = 0, .name = "Network Adapter", .mac = "00155D000001" };
	assert_int_equal(inv_nics_put(inv, ID1, &nic, 1, "added"), 0);
	struct inv_switch sw = { .id = "cccccccc-2222-4333-8444-555555555555", .name = "s", .type = "Private" };
	assert_int_equal(inv_switch_create(inv, &sw), 0);
	inv_close(inv);
}

/* The adapter requests without a running switch or worker; New-VMSwitch with no vmswitch to run. */
static void service_nics(void **state)
{
	(void)state;
	struct vmms *s = calloc(1, sizeof(*s));
	char err[256], root[128];
	snprintf(root, sizeof(root), "%s/root", dir);
	assert_int_equal(vmms_init(s, root, "/nonexistent/vmwp", err, sizeof(err)), 0);
	assert_string_equal(s->vmswitch, "/nonexistent/vmswitch"); /* beside vmwp */
	assert_true(ok(req(s, "{\"op\":\"new\",\"name\":\"a\"}")));
	/* New-VMSwitch: refused before anything is made; a switch that cannot start leaves nothing */
	const char *bad[] = {
		"{\"op\":\"new-switch\",\"name\":\"s\"}",
		"{\"op\":\"new-switch\",\"name\":\"s\",\"type\":\"Bridge\"}",
		"{\"op\":\"new-switch\",\"name\":\"s\",\"type\":\"External\"}",
		"{\"op\":\"new-switch\",\"name\":\"s\",\"type\":\"Private\",\"net_adapter\":\"lo\"}",
		"{\"op\":\"new-switch\",\"name\":\"s\",\"net_adapter\":\"nosuch0\"}",
		"{\"op\":\"new-switch\",\"name\":\"s\",\"net_adapter\":\"lo\"}",
		"{\"op\":\"new-switch\",\"name\":\"a/b\",\"type\":\"Private\"}",
		"{\"op\":\"new-switch\",\"name\":\"s\",\"type\":\"Private\"}", /* /nonexistent/vmswitch */
		"{\"op\":\"remove-switch\",\"switch\":\"s\"}",
		"{\"op\":\"list-switches\",\"name\":\"s\"}",
		"{\"op\":\"add-nic\",\"vm\":\"a\",\"static_mac\":\"00155D\"}",
		"{\"op\":\"add-nic\",\"vm\":\"a\",\"static_mac\":\"FF155D000001\"}",
		"{\"op\":\"add-nic\",\"vm\":\"a\",\"switch\":\"nowhere\"}",
		"{\"op\":\"add-nic\",\"vm\":\"a\",\"name\":\"x*\"}",
		"{\"op\":\"add-nic\",\"vm\":\"nobody\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ok(req(s, bad[i])))
			fail_msg("accepted: %s", bad[i]);
	json_t *r = req(s, "{\"op\":\"list-switches\"}");
	assert_int_equal(json_array_size(json_object_get(r, "switches")), 0);
	json_decref(r);
	char sd[200];
	snprintf(sd, sizeof(sd), "%s/Virtual Switches", root);
	assert_true(count_entries(sd) <= 0);
	/* a switch in the inventory (not running: it cannot be spawned here) */
	struct inv_switch sw = { .id = "cccccccc-2222-4333-8444-555555555555", .name = "LAN", .type = "Private" };
	assert_int_equal(inv_switch_create(s->inv, &sw), 0);
	r = req(s, "{\"op\":\"add-nic\",\"vm\":\"a\",\"switch\":\"lan\"}");
	json_t *ad = json_object_get(r, "adapter");
	assert_string_equal(json_string_value(json_object_get(ad, "name")), "Network Adapter");
	assert_string_equal(json_string_value(json_object_get(ad, "switch")), "LAN");
	assert_true(json_is_true(json_object_get(ad, "dynamic_mac")));
	assert_memory_equal(json_string_value(json_object_get(ad, "mac")), "00155D", 6);
	json_decref(r);
	r = req(s, "{\"op\":\"add-nic\",\"vm\":\"a\",\"name\":\"two\",\"static_mac\":\"00:15:5d:0a:0b:0c\"}");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "adapter"), "mac")), "00155D0A0B0C");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "adapter"), "index")), 1);
	json_decref(r);
	assert_false(ok(req(s, "{\"op\":\"add-nic\",\"vm\":\"a\",\"static_mac\":\"00155d0a0b0c\"}"))); /* in use */
	for (int i = 2; i < INV_MAX_NICS; i++)
		assert_true(ok(req(s, "{\"op\":\"add-nic\",\"vm\":\"a\",\"name\":\"more\"}")));
	assert_false(ok(req(s, "{\"op\":\"add-nic\",\"vm\":\"a\"}"))); /* a ninth */
	assert_false(ok(req(s, "{\"op\":\"remove-nic\",\"vm\":\"a\"}"))); /* several: name one */
	assert_false(ok(req(s, "{\"op\":\"remove-nic\",\"vm\":\"a\",\"name\":\"none\"}")));
	r = req(s, "{\"op\":\"remove-nic\",\"vm\":\"a\",\"name\":\"MORE\"}"); /* all of that name */
	assert_int_equal(json_array_size(json_object_get(r, "adapters")), INV_MAX_NICS - 2);
	json_decref(r);
	/* connect, VLAN, spoofing, disconnect: the inventory (the VM is Off) */
	assert_true(ok(req(s, "{\"op\":\"connect-nic\",\"vm\":\"a\",\"name\":\"two\",\"switch\":\"LAN\"}")));
	assert_false(ok(req(s, "{\"op\":\"connect-nic\",\"vm\":\"a\",\"switch\":\"nowhere\"}")));
	assert_false(ok(req(s, "{\"op\":\"set-nic-vlan\",\"vm\":\"a\",\"vlan\":4095}")));
	assert_false(ok(req(s, "{\"op\":\"set-nic-vlan\",\"vm\":\"a\"}")));
	assert_true(ok(req(s, "{\"op\":\"set-nic-vlan\",\"vm\":\"a\",\"name\":\"two\",\"vlan\":42}")));
	assert_true(ok(req(s, "{\"op\":\"set-nic\",\"vm\":\"a\",\"name\":\"t*\",\"mac_spoofing\":true}")));
	assert_false(ok(req(s, "{\"op\":\"set-nic\",\"vm\":\"a\",\"mac_spoofing\":\"yes\"}")));
	struct inv_vm vm;
	assert_int_equal(inv_find(s->inv, "a", &vm), 1);
	struct inv_nic *nics;
	int n;
	assert_int_equal(inv_nic_list(s->inv, vm.id, &nics, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(nics[1].name, "two");
	assert_string_equal(nics[1].switch_id, sw.id);
	assert_int_equal(nics[1].vlan, 42);
	assert_true(nics[1].mac_spoofing);
	assert_false(nics[0].mac_spoofing);
	free(nics);
	assert_true(ok(req(s, "{\"op\":\"disconnect-nic\",\"vm\":\"a\"}"))); /* all of them */
	r = req(s, "{\"op\":\"list-nics\",\"vm\":\"a\"}");
	json_t *arr = json_object_get(r, "adapters");
	assert_int_equal(json_array_size(arr), 2);
	assert_true(json_is_null(json_object_get(json_array_get(arr, 0), "switch")));
	assert_true(json_is_null(json_object_get(json_array_get(arr, 1), "switch")));
	json_decref(r);
	r = req(s, "{\"op\":\"list-switches\"}");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(r, "switches"), 0), "adapters")), 0);
	json_decref(r);
	/* a running VM (faked): adding or removing adapters is refused with 32788 */
	assert_int_equal(inv_set_status(s->inv, vm.id, (struct vm_status){ VM_RUNNING, VM_OPS_NONE }, 0, 0, NULL, NULL), 0);
	inv_vm_free(&vm);
	assert_int_equal(reply_id(req(s, "{\"op\":\"add-nic\",\"vm\":\"a\"}")), 32788);
	assert_int_equal(reply_id(req(s, "{\"op\":\"remove-nic\",\"vm\":\"a\",\"name\":\"two\"}")), 32788);
	vmms_fini(s);
	free(s);
}

static void validation(void **state)
{
	(void)state;
	assert_true(vmms_valid_name("web-01 (test)"));
	assert_false(vmms_valid_name(" lead"));
	assert_false(vmms_valid_name("a*b"));
	assert_false(vmms_valid_name("tab\there"));
	assert_true(vmms_valid_memory(32ull << 20));
	assert_false(vmms_valid_memory(30ull << 20));
	assert_false(vmms_valid_memory((2ull << 40)));
	assert_true(vmms_is_guid(ID1));
	assert_false(vmms_is_guid("web"));
	assert_true(vmms_valid_auto_stop("shutdown"));
	assert_false(vmms_valid_auto_stop("Pause"));
	char mac[13];
	assert_true(vmms_parse_mac("00155d0A0b0C", mac));
	assert_string_equal(mac, "00155D0A0B0C");
	assert_true(vmms_parse_mac("00:15:5D:01:02:03", mac));
	assert_string_equal(mac, "00155D010203");
	assert_true(vmms_parse_mac("02-00-00-00-00-01", mac));
	assert_false(vmms_parse_mac("00:15-5D:01:02:03", mac)); /* one separator */
	assert_false(vmms_parse_mac("00155D01020", mac));
	assert_false(vmms_parse_mac("00155D0102030", mac));
	assert_false(vmms_parse_mac("00155D01020G", mac));
	assert_false(vmms_parse_mac("01155D010203", mac)); /* multicast */
	assert_false(vmms_parse_mac("FFFFFFFFFFFF", mac));
	assert_false(vmms_parse_mac("000000000000", mac));
	assert_false(vmms_parse_mac(NULL, mac));
	char ifn[16];
	vmms_host_adapter_name("LAN", 1, ifn);
	assert_string_equal(ifn, "vs-LAN");
	vmms_host_adapter_name("Internal Switch", 1, ifn); /* 15 characters, no spaces */
	assert_string_equal(ifn, "vs-Internal-Swi");
	vmms_host_adapter_name("Internal Switch", 2, ifn);
	assert_string_equal(ifn, "vs-Internal-S-2");
	vmms_host_adapter_name("a/b:c", 12, ifn);
	assert_string_equal(ifn, "vs-a-b-c-12");
}

/* Checkpoints, chain images and the journal; a failing change inside an outer transaction
 * undoes the whole of it. */
static void checkpoints_images_journal(void **state)
{
	(void)state;
	struct inventory *inv = open_db();
	struct inv_vm vm, got;
	sample(&vm, ID1, "Web");
	assert_int_equal(inv_create(inv, &vm), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_string_equal(got.checkpoint_type, "Production"); /* Hyper-V's default */
	inv_vm_free(&got);
	struct inv_checkpoint c = { .id = ID2, .vm_id = ID1, .name = "c1", .created_ms = 5, .type = "Standard",
				    .state_file = "/s/c1.vmrs", .cpus = 2, .memory = 1 << 30, .ndisks = 1 };
	c.disks[0] = (struct inv_disk){ .controller = 0, .lun = 0, .path = "/d/a.vhdx" };
	assert_int_equal(inv_cp_insert(inv, &c), 0);
	assert_int_equal(inv_image_put(inv, ID1, "/d/a.vhdx", NULL, false), 0);
	assert_int_equal(inv_image_put(inv, ID1, "/d/a_1.avhdx", "/d/a.vhdx", true), 0);
	/* the fold of a_1 into a: everything that used a_1 uses a */
	vm.disks[0].path = "/d/a_1.avhdx";
	assert_int_equal(inv_update(inv, &vm), 0);
	assert_int_equal(inv_image_repath(inv, ID1, "/d/a_1.avhdx", "/d/a.vhdx"), 0);
	assert_int_equal(inv_find(inv, ID1, &got), 1);
	assert_string_equal(got.disks[0].path, "/d/a.vhdx");
	inv_vm_free(&got);
	/* one outer transaction: an inner failure (a duplicate checkpoint id) dooms it all */
	int64_t j = inv_journal_add(inv, ID1, "checkpoint", "intent", "{}");
	assert_true(j > 0);
	assert_int_equal(inv_tx_begin(inv), 0);
	assert_int_equal(inv_cp_rename(inv, ID2, "renamed"), 0);
	assert_int_equal(inv_journal_step(inv, j, "committed", NULL), 0);
	assert_int_equal(inv_cp_insert(inv, &c), -1);
	assert_int_equal(inv_tx_commit(inv), -1);
	struct inv_checkpoint *cps;
	int n;
	assert_int_equal(inv_cp_list(inv, ID1, &cps, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(cps[0].name, "c1");
	assert_string_equal(cps[0].state_file, "/s/c1.vmrs");
	assert_int_equal(cps[0].ndisks, 1);
	inv_cp_free(cps, n);
	struct inv_journal *js;
	assert_int_equal(inv_journal_list(inv, &js, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(js[0].step, "intent");
	inv_journal_free(js, n);
	/* committed for real, then gone */
	assert_int_equal(inv_tx_begin(inv), 0);
	assert_int_equal(inv_journal_step(inv, j, "committed", "{\"x\":1}"), 0);
	assert_int_equal(inv_tx_commit(inv), 0);
	assert_int_equal(inv_journal_list(inv, &js, &n), 0);
	assert_string_equal(js[0].step, "committed");
	assert_string_equal(js[0].data, "{\"x\":1}");
	inv_journal_free(js, n);
	assert_int_equal(inv_journal_drop(inv, j), 0);
	/* Remove-VM takes its checkpoints and images along */
	assert_int_equal(inv_remove(inv, ID1), 0);
	assert_int_equal(inv_cp_list(inv, ID1, &cps, &n), 0);
	assert_int_equal(n, 0);
	inv_cp_free(cps, n);
	struct inv_image *imgs;
	assert_int_equal(inv_images(inv, ID1, &imgs, &n), 0);
	assert_int_equal(n, 0);
	inv_images_free(imgs, n);
	inv_close(inv);
}

/* KVP address values come from the guest: only real addresses of the family, bounded. */
static void kvp_addresses(void **state)
{
	(void)state;
	json_t *a = json_array();
	vmms_kvp_addresses("192.168.50.100;10.0.0.2", AF_INET, a, 8);
	assert_int_equal(json_array_size(a), 2);
	assert_string_equal(json_string_value(json_array_get(a, 0)), "192.168.50.100");
	assert_string_equal(json_string_value(json_array_get(a, 1)), "10.0.0.2");
	vmms_kvp_addresses(";;fe80::1;192.168.1.1;not an address;", AF_INET6, a, 8);
	assert_int_equal(json_array_size(a), 3);
	assert_string_equal(json_string_value(json_array_get(a, 2)), "fe80::1");
	json_array_clear(a);
	vmms_kvp_addresses("1.2.3.4;1.2.3.5;1.2.3.6", AF_INET, a, 2);
	assert_int_equal(json_array_size(a), 2);
	json_array_clear(a);
	char big[3000];
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	vmms_kvp_addresses(big, AF_INET, a, 8);
	vmms_kvp_addresses("", AF_INET, a, 8);
	vmms_kvp_addresses(NULL, AF_INET, a, 8);
	vmms_kvp_addresses("1.2.3.4/24;999.1.1.1;1.2.3", AF_INET, a, 8);
	assert_int_equal(json_array_size(a), 0);
	json_decref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(create_find_update_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_qos, setup, teardown),
		cmocka_unit_test_setup_teardown(crash_mid_update, setup, teardown),
		cmocka_unit_test_setup_teardown(service_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(service_drives_ics_host, setup, teardown),
		cmocka_unit_test_setup_teardown(service_dvds, setup, teardown),
		cmocka_unit_test_setup_teardown(switches_and_nics, setup, teardown),
		cmocka_unit_test_setup_teardown(crash_mid_nics_put, setup, teardown),
		cmocka_unit_test_setup_teardown(upgrade_old_database, setup, teardown),
		cmocka_unit_test_setup_teardown(service_nics, setup, teardown),
		cmocka_unit_test(validation),
		cmocka_unit_test(kvp_addresses),
		cmocka_unit_test_setup_teardown(checkpoints_images_journal, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
