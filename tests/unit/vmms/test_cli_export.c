/* Export-VM, Import-VM, Compare-VM and Move-VMStorage's parsing (cli/export.c): the vmms request
 * each builds; options that need another are refused before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "cli_build.h"

extern const struct cmdlet cmdlet_export_vm, cmdlet_import_vm, cmdlet_compare_vm, cmdlet_move_vmstorage;
json_t *export_cmdlet_request(const struct args *a, char *err, size_t errlen);

#define B(c, ...) cli_build(export_cmdlet_request, &c, CLI_ARGC(__VA_ARGS__), (char *[]){ __VA_ARGS__ })

static void requests(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_export_vm, "web", "-Path", "/e"), "{\"op\":\"export-vm\",\"path\":\"/e\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_export_vm, "web"), "PARSE"); /* -Path is required */
	assert_string_equal(B(cmdlet_import_vm, "/e/web"), "{\"op\":\"import-vm\",\"path\":\"/e/web\"}");
	assert_string_equal(B(cmdlet_import_vm, "-Path", "/e/web", "-Copy", "-GenerateNewId", "-VhdDestinationPath", "/d",
			      "-VirtualMachinePath", "/v", "-SnapshotFilePath", "/s"),
			    "{\"copy\":true,\"generate_new_id\":true,\"op\":\"import-vm\",\"path\":\"/e/web\",\"snapshot_file_path\":\"/s\","
			    "\"vhd_destination_path\":\"/d\",\"virtual_machine_path\":\"/v\"}");
	assert_string_equal(B(cmdlet_import_vm, "/e/web", "-VhdDestinationPath", "/d"), "ERR:-VhdDestinationPath needs -Copy");
	assert_string_equal(B(cmdlet_compare_vm, "/e/web", "-GenerateNewId"),
			    "{\"generate_new_id\":true,\"op\":\"compare-vm\",\"path\":\"/e/web\"}");
	assert_string_equal(B(cmdlet_move_vmstorage, "web", "-DestinationStoragePath", "/p"),
			    "{\"destination_storage_path\":\"/p\",\"op\":\"move-vm-storage\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_move_vmstorage, "-VMName", "web", "-VirtualMachinePath", "/v", "-SnapshotFilePath", "/s"),
			    "{\"op\":\"move-vm-storage\",\"snapshot_file_path\":\"/s\",\"virtual_machine_path\":\"/v\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_move_vmstorage, "web"),
			    "ERR:give -DestinationStoragePath, -VirtualMachinePath or -SnapshotFilePath");
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(requests) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
