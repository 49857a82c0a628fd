/* The export configuration (vmms/vmconfig.c): a configuration written and read back is the same,
 * and every kind of damage a file can carry is refused with a line that says where. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmms/vmconfig.h"

#define GUID_A "0e9f7c1a-1111-4a2b-8c3d-000000000001"
#define GUID_B "0e9f7c1a-2222-4a2b-8c3d-000000000002"
#define GUID_C "0e9f7c1a-3333-4a2b-8c3d-000000000003"

/* A VM with a base disk, two checkpoints (one the other's child), an adapter, a saved state. */
static struct vmcfg *sample(void)
{
	struct vmcfg *c = calloc(1, sizeof(*c));
	c->exported_ms = 1700000000000;
	strcpy(c->id, GUID_A);
	strcpy(c->name, "web");
	c->generation = 2;
	c->cpus = 2;
	c->memory = 512 << 20;
	strcpy(c->kernel, "/boot/vmlinuz");
	c->has_cmdline = true;
	strcpy(c->cmdline, "console=ttyS0");
	strcpy(c->notes, "notes");
	strcpy(c->auto_start, "StartIfRunning");
	strcpy(c->auto_stop, "Save");
	strcpy(c->checkpoint_type, "Standard");
	strcpy(c->parent_checkpoint, GUID_C);
	c->ic_disabled = 1u << 3;
	c->saved = true;
	strcpy(c->saved_state, "Virtual Machines/" GUID_A ".vmrs");
	c->nimages = 3;
	strcpy(c->images[0].path, "Virtual Hard Disks/web.vhdx");
	c->images[0].parent = -1;
	strcpy(c->images[1].path, "Virtual Hard Disks/web_1.avhdx");
	c->images[1].parent = 0;
	c->images[1].owned = true;
	strcpy(c->images[2].path, "Virtual Hard Disks/web_2.avhdx");
	c->images[2].parent = 1;
	c->images[2].owned = true;
	c->ndisks = 1;
	/* fields, not a compound literal: the round trip compares bytes, padding included */
	c->disks[0].image = 2;
	c->disks[0].max_iops = 500;
	c->disks[0].max_bandwidth = 100 << 20;
	c->cpu_maximum = 40;
	c->cpu_reserve = 10;
	c->cpu_weight = 250;
	c->nnics = 1;
	c->nics[0] = (struct vmcfg_nic){ .slot = 0, .vlan = 5, .mac_spoofing = true };
	strcpy(c->nics[0].name, "Network Adapter");
	strcpy(c->nics[0].mac, "00155D0A0B0C");
	strcpy(c->nics[0].switch_name, "lan");
	c->ncheckpoints = 2;
	struct vmcfg_checkpoint *b = &c->checkpoints[0], *k = &c->checkpoints[1];
	strcpy(b->id, GUID_B);
	strcpy(b->name, "web - (12/7/2026 - 2:10:53 AM)"); /* Hyper-V's default name has '/' */
	strcpy(b->type, "Standard");
	strcpy(b->state_file, "Snapshots/" GUID_B ".vmrs");
	b->created_ms = 1;
	b->cpus = 1;
	b->memory = 256 << 20;
	b->ndisks = 1;
	b->disks[0].image = 0;
	strcpy(k->id, GUID_C);
	strcpy(k->parent_id, GUID_B);
	strcpy(k->name, "two");
	strcpy(k->type, "Production");
	k->created_ms = 2;
	k->cpus = 2;
	k->memory = 512 << 20;
	k->ndisks = 1;
	k->disks[0].image = 1;
	return c;
}

static char *text_of(json_t *o)
{
	char *t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return t;
}

static void round_trip(void **state)
{
	(void)state;
	struct vmcfg *c = sample(), *r = malloc(sizeof(*r));
	char *t = text_of(vmcfg_to_json(c)), err[512] = "";
	assert_int_equal(vmcfg_parse(t, strlen(t), r, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_memory_equal(c, r, sizeof(*c)); /* both zeroed first: every byte is a field's */
	free(t);
	free(c);
	free(r);
}

/* mutate(doc): damages the sample's document; the parse must fail saying `expect`. */
static void expect_refused(void (*mutate)(json_t *), const char *expect)
{
	struct vmcfg *c = sample(), *r = malloc(sizeof(*r));
	json_t *doc = vmcfg_to_json(c);
	mutate(doc);
	char *t = text_of(doc), err[512] = "";
	assert_int_equal(vmcfg_parse(t, strlen(t), r, err, sizeof(err)), -1);
	if (!strstr(err, expect))
		fail_msg("error '%s' does not say '%s'", err, expect);
	assert_null(strchr(err, '\n'));
	free(t);
	free(c);
	free(r);
}

#define AT(doc, ...) json_path(doc, (const char *[]){ __VA_ARGS__, NULL })
/* The member at a path of keys ("#N": array index N). */
static json_t *json_path(json_t *o, const char **keys)
{
	for (; *keys && o; keys++)
		o = **keys == '#' ? json_array_get(o, (size_t)atoi(*keys + 1)) : json_object_get(o, *keys);
	return o;
}

static void m_format(json_t *d) { json_object_set_new(d, "format", json_string("hyper-v")); }
static void m_newer(json_t *d) { json_object_set_new(d, "version", json_integer(2)); }
static void m_no_vm(json_t *d) { json_object_del(d, "vm"); }
static void m_bad_id(json_t *d) { json_object_set_new(AT(d, "vm"), "id", json_string("not-a-guid")); }
static void m_bad_name(json_t *d) { json_object_set_new(AT(d, "vm"), "name", json_string("a/b")); }
static void m_cpus(json_t *d) { json_object_set_new(AT(d, "vm"), "cpus", json_integer(1000)); }
static void m_memory(json_t *d) { json_object_set_new(AT(d, "vm"), "memory", json_integer(1000001)); }
static void m_mem_type(json_t *d) { json_object_set_new(AT(d, "vm"), "memory", json_string("lots")); }
static void m_kernel(json_t *d) { json_object_set_new(AT(d, "vm"), "kernel", json_string("vmlinuz")); }
static void m_ic(json_t *d) { json_array_append_new(AT(d, "vm", "disabled_integration_services"), json_string("telepathy")); }
static void m_state(json_t *d) { json_object_set_new(AT(d, "vm"), "state", json_string("Running")); }
static void m_saved_missing(json_t *d) { json_object_set_new(AT(d, "vm"), "saved_state", json_null()); }
static void m_traversal(json_t *d) { json_object_set_new(AT(d, "images", "#0"), "path", json_string("Virtual Hard Disks/../../etc/passwd")); }
static void m_absolute(json_t *d) { json_object_set_new(AT(d, "images", "#1"), "path", json_string("/etc/passwd")); }
static void m_other_folder(json_t *d) { json_object_set_new(AT(d, "vm"), "saved_state", json_string("Snapshots/x.vmrs")); }
static void m_dup_image(json_t *d) { json_object_set_new(AT(d, "images", "#1"), "path", json_string("Virtual Hard Disks/web.vhdx")); }
static void m_no_parent(json_t *d) { json_object_set_new(AT(d, "images", "#1"), "parent", json_string("Virtual Hard Disks/gone.vhdx")); }
static void m_cycle(json_t *d) { json_object_set_new(AT(d, "images", "#0"), "parent", json_string("Virtual Hard Disks/web_2.avhdx")); }
static void m_disk_image(json_t *d) { json_object_set_new(AT(d, "disks", "#0"), "path", json_string("Virtual Hard Disks/other.vhdx")); }
static void m_dup_lun(json_t *d) { json_array_append(AT(d, "disks"), AT(d, "disks", "#0")); }
static void m_lun(json_t *d) { json_object_set_new(AT(d, "disks", "#0"), "lun", json_integer(64)); }
static void m_mac(json_t *d) { json_object_set_new(AT(d, "network_adapters", "#0"), "mac", json_string("01005E000001")); }
static void m_vlan(json_t *d) { json_object_set_new(AT(d, "network_adapters", "#0"), "vlan", json_integer(4095)); }
static void m_cp_parent(json_t *d) { json_object_set_new(AT(d, "checkpoints", "#1"), "parent_id", json_string(GUID_A)); }
static void m_cp_cycle(json_t *d) { json_object_set_new(AT(d, "checkpoints", "#0"), "parent_id", json_string(GUID_C)); }
static void m_cp_dup(json_t *d) { json_object_set_new(AT(d, "checkpoints", "#1"), "id", json_string(GUID_B)); }
static void m_cp_name(json_t *d) { json_object_set_new(AT(d, "checkpoints", "#0"), "name", json_string("a\tb")); }
static void m_cp_type(json_t *d) { json_object_set_new(AT(d, "checkpoints", "#1"), "type", json_string("Magic")); }
static void m_current(json_t *d) { json_object_set_new(AT(d, "vm"), "parent_checkpoint", json_string(GUID_A)); }
static void m_nul(json_t *d) { json_object_set_new(AT(d, "vm"), "notes", json_stringn("a\0b", 3)); }
static void m_cpu_max(json_t *d) { json_object_set_new(AT(d, "vm", "processor"), "maximum", json_integer(0)); }
static void m_cpu_weight(json_t *d) { json_object_set_new(AT(d, "vm", "processor"), "relative_weight", json_integer(10001)); }
static void m_cpu_type(json_t *d) { json_object_set_new(AT(d, "vm"), "processor", json_integer(100)); }
static void m_cpu_missing(json_t *d) { json_object_del(AT(d, "vm", "processor"), "reserve"); }
static void m_iops(json_t *d) { json_object_set_new(AT(d, "disks", "#0"), "max_iops", json_integer(-1)); }
static void m_bw(json_t *d) { json_object_set_new(AT(d, "disks", "#0"), "max_bandwidth", json_integer((json_int_t)(1ull << 41))); }
static void m_cp_qos(json_t *d) { json_object_set_new(AT(d, "checkpoints", "#0", "disks", "#0"), "max_iops", json_integer(1)); }
static void m_long(json_t *d)
{
	char *n = calloc(1, VMCFG_NOTES_MAX + 1);
	memset(n, 'x', VMCFG_NOTES_MAX);
	json_object_set_new(AT(d, "vm"), "notes", json_string(n));
	free(n);
}
static void m_too_many(json_t *d)
{
	json_t *a = AT(d, "network_adapters");
	for (int i = 0; i < VMCFG_MAX_NICS; i++)
		json_array_append(a, json_array_get(a, 0));
}

static void refusals(void **state)
{
	(void)state;
	expect_refused(m_format, "not a Viridian VM configuration");
	expect_refused(m_newer, "written by a newer Viridian (version 2");
	expect_refused(m_no_vm, "vm: missing");
	expect_refused(m_bad_id, "vm: \"id\" is not a GUID");
	expect_refused(m_bad_name, "not a valid VM name");
	expect_refused(m_cpus, "vm: \"cpus\" is 1000");
	expect_refused(m_memory, "\"memory\" 1000001");
	expect_refused(m_mem_type, "\"memory\" is not an integer");
	expect_refused(m_kernel, "absolute paths");
	expect_refused(m_ic, "unknown integration service");
	expect_refused(m_state, "not Off or Saved");
	expect_refused(m_saved_missing, "\"saved_state\" is missing");
	expect_refused(m_traversal, "images[0]: \"path\" 'Virtual Hard Disks/../../etc/passwd' is not a plain path");
	expect_refused(m_absolute, "images[1]: \"path\" '/etc/passwd'");
	expect_refused(m_other_folder, "under 'Virtual Machines/'");
	expect_refused(m_dup_image, "images[1]: 'Virtual Hard Disks/web.vhdx' is listed twice");
	expect_refused(m_no_parent, "its parent 'Virtual Hard Disks/gone.vhdx' is not in \"images\"");
	expect_refused(m_cycle, "its parents form a cycle");
	expect_refused(m_disk_image, "disks[0]: 'Virtual Hard Disks/other.vhdx' is not in \"images\"");
	expect_refused(m_dup_lun, "LUN 0 is used twice");
	expect_refused(m_lun, "\"lun\" is 64");
	expect_refused(m_mac, "not a unicast MAC address");
	expect_refused(m_vlan, "\"vlan\" is 4095");
	expect_refused(m_cp_parent, "checkpoints[1]: its parent " GUID_A " is not in \"checkpoints\"");
	expect_refused(m_cp_cycle, "its parents form a cycle");
	expect_refused(m_cp_dup, "is used twice");
	expect_refused(m_cp_name, "checkpoints[0]: \"name\" is empty or holds control characters");
	expect_refused(m_cp_type, "not Standard or Production");
	expect_refused(m_current, "\"parent_checkpoint\" " GUID_A " is not in \"checkpoints\"");
	expect_refused(m_nul, "not JSON");
	expect_refused(m_long, "\"notes\" is too long");
	expect_refused(m_too_many, "more than 8 adapters");
	expect_refused(m_cpu_max, "vm.processor: \"maximum\" is 0, not 1 to 100");
	expect_refused(m_cpu_weight, "\"relative_weight\" is 10001");
	expect_refused(m_cpu_type, "vm.processor: not an object");
	expect_refused(m_cpu_missing, "vm.processor: \"reserve\" is missing");
	expect_refused(m_iops, "disks[0]: \"max_iops\" is -1");
	expect_refused(m_bw, "\"max_bandwidth\" is 2199023255552");
	expect_refused(m_cp_qos, "checkpoints[0].disks[0]: a checkpoint's disk has no storage QoS");
}

/* A file written before processor limits and storage QoS were exported: Hyper-V's defaults. */
static void older_file(void **state)
{
	(void)state;
	struct vmcfg *c = sample(), *r = malloc(sizeof(*r));
	json_t *doc = vmcfg_to_json(c);
	json_object_del(AT(doc, "vm"), "processor");
	json_object_del(AT(doc, "disks", "#0"), "max_iops");
	json_object_del(AT(doc, "disks", "#0"), "max_bandwidth");
	char *t = text_of(doc), err[512] = "";
	assert_int_equal(vmcfg_parse(t, strlen(t), r, err, sizeof(err)), 0);
	assert_int_equal(r->cpu_maximum, 100);
	assert_int_equal(r->cpu_reserve, 0);
	assert_int_equal(r->cpu_weight, 100);
	assert_int_equal(r->disks[0].max_iops, 0);
	assert_int_equal(r->disks[0].max_bandwidth, 0);
	free(t);
	free(c);
	free(r);
}

static void not_json(void **state)
{
	(void)state;
	struct vmcfg *r = malloc(sizeof(*r));
	char err[512];
	const char *bad[] = { "", "{", "[]", "null", "{\"format\":\"viridian-vm\"}", "{\"format\":\"viridian-vm\",\"format\":\"x\"}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(vmcfg_parse(bad[i], strlen(bad[i]), r, err, sizeof(err)), -1);
	assert_int_equal(vmcfg_parse("x", VMCFG_FILE_MAX + 1, r, err, sizeof(err)), -1); /* not even read */
	assert_non_null(strstr(err, "larger than"));
	free(r);
}

static void rel_paths(void **state)
{
	(void)state;
	assert_true(vmcfg_rel_path_ok("Snapshots/a.vmrs", "Snapshots"));
	assert_true(vmcfg_rel_path_ok("Snapshots/d/a..b", "Snapshots"));
	assert_false(vmcfg_rel_path_ok("Snapshots/", "Snapshots"));
	assert_false(vmcfg_rel_path_ok("Snapshots//a", "Snapshots"));
	assert_false(vmcfg_rel_path_ok("Snapshots/./a", "Snapshots"));
	assert_false(vmcfg_rel_path_ok("Snapshots/a/..", "Snapshots"));
	assert_false(vmcfg_rel_path_ok("SnapshotsX/a", "Snapshots"));
	assert_false(vmcfg_rel_path_ok("Snapshots\\..\\a", "Snapshots"));
	assert_false(vmcfg_rel_path_ok("Snapshots/a\nb", "Snapshots"));
	assert_false(vmcfg_rel_path_ok(NULL, "Snapshots"));
}

/* --seed FILE: writes the sample's configuration (tests/fuzz/vmms/corpus). */
int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--seed")) {
		struct vmcfg *c = sample();
		json_t *doc = vmcfg_to_json(c);
		int r = json_dump_file(doc, argv[2], JSON_INDENT(1));
		json_decref(doc);
		free(c);
		return r ? 1 : 0;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(refusals),
		cmocka_unit_test(older_file),
		cmocka_unit_test(not_json),
		cmocka_unit_test(rel_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
