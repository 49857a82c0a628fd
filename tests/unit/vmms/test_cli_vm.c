/* The VM cmdlets' parsing (cli/vm.c): parameters, case-insensitivity, sizes, and the vmms
 * request each cmdlet builds; bad input is refused before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "cli_build.h"

extern const struct cmdlet cmdlet_new_vm, cmdlet_get_vm, cmdlet_set_vm, cmdlet_set_vmfirmware, cmdlet_start_vm,
	cmdlet_stop_vm, cmdlet_restart_vm, cmdlet_remove_vm, cmdlet_get_vmevent, cmdlet_get_vmintegrationservice,
	cmdlet_suspend_vm, cmdlet_resume_vm, cmdlet_add_vmharddiskdrive, cmdlet_get_vmharddiskdrive,
	cmdlet_remove_vmharddiskdrive, cmdlet_enable_vmintegrationservice, cmdlet_disable_vmintegrationservice,
	cmdlet_get_vmhost, cmdlet_set_vmhost, cmdlet_connect_vm, cmdlet_save_vm, cmdlet_remove_vmsavedstate,
	cmdlet_set_vmharddiskdrive, cmdlet_get_vmprocessor, cmdlet_set_vmprocessor, cmdlet_enable_vmresourcemetering,
	cmdlet_disable_vmresourcemetering, cmdlet_reset_vmresourcemetering, cmdlet_measure_vm;
json_t *vm_cmdlet_request(const struct args *a, char *err, size_t errlen);

#define B(c, ...) cli_build(vm_cmdlet_request, &c, CLI_ARGC(__VA_ARGS__), (char *[]){ __VA_ARGS__ })

static void new_vm(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_new_vm, "-name", "web", "-MEMORYSTARTUPBYTES", "1GB", "-ProcessorCount", "2", "-Generation", "2"),
			    "{\"cpus\":2,\"generation\":2,\"memory\":1073741824,\"name\":\"web\",\"op\":\"new\"}");
	assert_string_equal(B(cmdlet_new_vm, "web", "-NewVHDPath", "w.vhdx", "-NewVHDSizeBytes", "10GB"),
			    "{\"name\":\"web\",\"new_vhd_path\":\"w.vhdx\",\"new_vhd_size\":10737418240,\"op\":\"new\"}");
	assert_string_equal(B(cmdlet_new_vm, "web", "-VHDPath", "/"), "{\"name\":\"web\",\"op\":\"new\",\"vhd_path\":\"/\"}");
	assert_string_equal(B(cmdlet_new_vm, "-Name:web", "-Path", "/tmp"), "{\"name\":\"web\",\"op\":\"new\",\"path\":\"/tmp\"}");
	/* refused */
	assert_string_equal(B(cmdlet_new_vm, "-MemoryStartupBytes", "1GB"), "PARSE");           /* no name */
	assert_string_equal(B(cmdlet_new_vm, "web", "-MemoryStartupBytes", "lots"), "PARSE");
	assert_string_equal(B(cmdlet_new_vm, "web", "-MemoryStartupBytes", "99999999999TB"), "PARSE");
	assert_string_equal(B(cmdlet_new_vm, "web", "-Bogus", "1"), "PARSE");
	assert_string_equal(B(cmdlet_new_vm, "web", "-Name", "again"), "PARSE");
	assert_string_equal(B(cmdlet_new_vm, "web", "-ProcessorCount"), "PARSE");
	assert_string_equal(B(cmdlet_new_vm, "web", "-Generation", "3"), "ERR:-Generation must be 1 or 2");
	assert_string_equal(B(cmdlet_new_vm, "web", "-ProcessorCount", "0"), "ERR:-ProcessorCount must be a number from 1 to 64");
	assert_string_equal(B(cmdlet_new_vm, "web", "-ProcessorCount", "2x"), "ERR:-ProcessorCount must be a number from 1 to 64");
	assert_string_equal(B(cmdlet_new_vm, "web", "-NewVHDPath", "w.vhdx"), "ERR:-NewVHDPath and -NewVHDSizeBytes go together");
	assert_string_equal(B(cmdlet_new_vm, "web", "-VHDPath", "/a", "-NewVHDPath", "b", "-NewVHDSizeBytes", "1GB"),
			    "ERR:give -VHDPath or -NewVHDPath, not both");
	assert_non_null(strstr(B(cmdlet_new_vm, "web", "-VHDPath", "/nonexistent.vhdx"), "does not exist"));
}

static void other_cmdlets(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_get_vm), "{\"op\":\"list\"}");
	assert_string_equal(B(cmdlet_get_vm, "we*"), "{\"name\":\"we*\",\"op\":\"list\"}");
	assert_string_equal(B(cmdlet_get_vm, "-Json"), "{\"op\":\"list\"}");
	assert_string_equal(B(cmdlet_set_vm, "web", "-processorcount", "4", "-AutomaticStartAction", "Nothing", "-Notes", "n"),
			    "{\"automatic_start_action\":\"Nothing\",\"cpus\":4,\"notes\":\"n\",\"op\":\"set\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vm, "web", "-MemoryStartupBytes", "2GB"), "{\"memory\":2147483648,\"op\":\"set\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vm, "web"), "ERR:nothing to change (see: hv Get-Help Set-VM)");
	assert_string_equal(B(cmdlet_set_vm, "web", "-AutomaticStartAction", "Sometimes"),
			    "ERR:-AutomaticStartAction must be Nothing, StartIfRunning or Start");
	assert_string_equal(B(cmdlet_set_vmfirmware, "-VMName", "web", "-KernelPath", "/", "-KernelCommandLine", "console=ttyS0"),
			    "{\"cmdline\":\"console=ttyS0\",\"kernel\":\"/\",\"op\":\"set-firmware\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmfirmware, "web", "-InitrdPath", ""), "{\"initrd\":\"\",\"op\":\"set-firmware\",\"vm\":\"web\"}");
	assert_non_null(strstr(B(cmdlet_set_vmfirmware, "web"), "ERR:nothing to change"));
	assert_non_null(strstr(B(cmdlet_set_vmfirmware, "web", "-KernelPath", "/nonexistent"), "does not exist"));
	assert_string_equal(B(cmdlet_start_vm, "web"), "{\"op\":\"start\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_stop_vm, "web"), "{\"op\":\"stop\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_stop_vm, "web", "-turnoff"), "{\"op\":\"stop\",\"turn_off\":true,\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_stop_vm, "web", "-Force"), "{\"force\":true,\"op\":\"stop\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_stop_vm, "web", "-TurnOff", "yes"), "PARSE"); /* a switch takes no value */
	assert_string_equal(B(cmdlet_restart_vm, "web"), "{\"op\":\"stop\",\"turn_off\":true,\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_remove_vm, "web", "-Force"), "{\"op\":\"remove\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_get_vmevent, "web"), "{\"op\":\"events\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_get_vmintegrationservice, "-VMName", "web"), "{\"op\":\"get\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_start_vm), "PARSE");
	assert_string_equal(B(cmdlet_suspend_vm, "-name", "web"), "{\"op\":\"pause\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_resume_vm, "web"), "{\"op\":\"resume\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_resume_vm, "web", "-Force"), "PARSE");
	assert_string_equal(B(cmdlet_save_vm, "-NAME", "web", "-TimeoutSeconds", "30"), "{\"op\":\"save\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_save_vm), "PARSE");
	assert_string_equal(B(cmdlet_remove_vmsavedstate, "-vmname", "web"), "{\"op\":\"remove-saved-state\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_remove_vmsavedstate, "web"), "{\"op\":\"remove-saved-state\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_remove_vmsavedstate, "web", "-Force"), "PARSE");
}

/* Issue 5's cmdlets: drives, integration services, the host, Connect-VM. */
static void drives_ics_host(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_add_vmharddiskdrive, "-vmname", "web", "-path", "/"),
			    "{\"op\":\"add-disk\",\"path\":\"/\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_add_vmharddiskdrive, "web", "-Path", "/", "-ControllerType", "scsi", "-ControllerNumber", "0",
			      "-ControllerLocation", "3"),
			    "{\"controller\":0,\"controller_type\":\"SCSI\",\"lun\":3,\"op\":\"add-disk\",\"path\":\"/\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_add_vmharddiskdrive, "web"), "PARSE"); /* -Path is required */
	assert_non_null(strstr(B(cmdlet_add_vmharddiskdrive, "web", "-Path", "/nonexistent.vhdx"), "does not exist"));
	assert_string_equal(B(cmdlet_add_vmharddiskdrive, "web", "-Path", "/", "-ControllerType", "IDE"),
			    "ERR:-ControllerType IDE: only SCSI controllers are supported");
	assert_string_equal(B(cmdlet_add_vmharddiskdrive, "web", "-Path", "/", "-ControllerLocation", "64"),
			    "ERR:-ControllerLocation must be a number from 0 to 63");
	assert_string_equal(B(cmdlet_add_vmharddiskdrive, "web", "-Path", "/", "-ControllerLocation", "x"),
			    "ERR:-ControllerLocation must be a number from 0 to 63");
	assert_string_equal(B(cmdlet_get_vmharddiskdrive, "-VMName", "web", "-Json"), "{\"op\":\"get\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_remove_vmharddiskdrive, "web", "-ControllerLocation", "1"),
			    "{\"lun\":1,\"op\":\"remove-disk\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_remove_vmharddiskdrive, "web", "-Path", "/gone/x.vhdx"), /* a missing file can be detached */
			    "{\"op\":\"remove-disk\",\"path\":\"/gone/x.vhdx\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_remove_vmharddiskdrive, "web"), "ERR:give -ControllerLocation or -Path (one of them)");
	assert_string_equal(B(cmdlet_remove_vmharddiskdrive, "web", "-Path", "/", "-ControllerLocation", "0"),
			    "ERR:give -ControllerLocation or -Path (one of them)");
	assert_string_equal(B(cmdlet_enable_vmintegrationservice, "-VMName", "web", "-Name", "Time Synchronization"),
			    "{\"enabled\":true,\"name\":\"Time Synchronization\",\"op\":\"set-ic\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_disable_vmintegrationservice, "web", "-name", "VSS"),
			    "{\"enabled\":false,\"name\":\"VSS\",\"op\":\"set-ic\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_disable_vmintegrationservice, "web"), "PARSE"); /* -Name is required */
	assert_string_equal(B(cmdlet_get_vmhost), "{\"op\":\"host\"}");
	assert_string_equal(B(cmdlet_get_vmhost, "-json"), "{\"op\":\"host\"}");
	assert_string_equal(B(cmdlet_set_vmhost, "-virtualmachinepath", "/", "-VirtualHardDiskPath", "/"),
			    "{\"op\":\"set-host\",\"virtual_hard_disk_path\":\"/\",\"virtual_machine_path\":\"/\"}");
	assert_non_null(strstr(B(cmdlet_set_vmhost), "ERR:nothing to change"));
	assert_non_null(strstr(B(cmdlet_set_vmhost, "-VirtualMachinePath", "/nonexistent"), "does not exist"));
	assert_string_equal(B(cmdlet_connect_vm, "-VMName", "web"), "{\"op\":\"get\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_connect_vm), "PARSE");
}

/* Storage QoS, processor limits, metering: sizes with units, the settings given and no others. */
static void qos_processor(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_set_vmharddiskdrive, "web", "-ControllerLocation", "1", "-MaximumIOPS", "500",
			      "-MaximumBandwidth", "100MB"),
			    "{\"lun\":1,\"max_bandwidth\":104857600,\"max_iops\":500,\"op\":\"set-disk\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmharddiskdrive, "web", "-Path", "/gone.vhdx", "-MaximumIOPS", "0"),
			    "{\"max_iops\":0,\"op\":\"set-disk\",\"path\":\"/gone.vhdx\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmharddiskdrive, "web", "-ControllerLocation", "1"),
			    "ERR:nothing to change: give -MaximumIOPS and/or -MaximumBandwidth");
	assert_string_equal(B(cmdlet_set_vmharddiskdrive, "web", "-MaximumIOPS", "5"), "ERR:give -ControllerLocation or -Path (one of them)");
	assert_string_equal(B(cmdlet_set_vmharddiskdrive, "web", "-ControllerLocation", "1", "-MaximumIOPS", "lots"),
			    "ERR:-MaximumIOPS must be a number from 0 (no limit) to 1000000000");
	assert_string_equal(B(cmdlet_set_vmharddiskdrive, "web", "-ControllerLocation", "1", "-MaximumBandwidth", "lots"), "PARSE");
	assert_string_equal(B(cmdlet_get_vmprocessor, "web"), "{\"op\":\"get\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmprocessor, "web", "-Maximum", "25", "-RelativeWeight", "200"),
			    "{\"maximum\":25,\"op\":\"set-processor\",\"relative_weight\":200,\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmprocessor, "web", "-Count", "2", "-Reserve", "10"),
			    "{\"count\":2,\"op\":\"set-processor\",\"reserve\":10,\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmprocessor, "web"), "ERR:nothing to change: give -Count, -Maximum, -Reserve or -RelativeWeight");
	assert_string_equal(B(cmdlet_set_vmprocessor, "web", "-Maximum", "x"), "ERR:-Maximum must be a whole number");
	assert_string_equal(B(cmdlet_enable_vmresourcemetering, "-VMName", "web"), "{\"op\":\"enable-metering\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_disable_vmresourcemetering, "web"), "{\"op\":\"disable-metering\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_reset_vmresourcemetering, "web"), "{\"op\":\"reset-metering\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_measure_vm, "web", "-Json"), "{\"op\":\"measure\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_measure_vm), "PARSE"); /* -VMName is required */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(new_vm),
		cmocka_unit_test(other_cmdlets),
		cmocka_unit_test(drives_ics_host),
		cmocka_unit_test(qos_processor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
