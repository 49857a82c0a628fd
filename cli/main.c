/* hv: Hyper-V-style cmdlets. Adding a cmdlet = one line here + its own file. */
#include "cmdlet.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* VM cmdlets (cli/vm.c): they talk to vmms. */
extern const struct cmdlet cmdlet_new_vm, cmdlet_get_vm, cmdlet_set_vm, cmdlet_set_vmfirmware, cmdlet_start_vm,
	cmdlet_stop_vm, cmdlet_restart_vm, cmdlet_remove_vm, cmdlet_get_vmevent, cmdlet_get_vmintegrationservice,
	cmdlet_suspend_vm, cmdlet_resume_vm, cmdlet_add_vmharddiskdrive, cmdlet_get_vmharddiskdrive, cmdlet_set_vmharddiskdrive,
	cmdlet_get_vmprocessor, cmdlet_set_vmprocessor, cmdlet_enable_vmresourcemetering, cmdlet_disable_vmresourcemetering,
	cmdlet_reset_vmresourcemetering, cmdlet_measure_vm,
	cmdlet_remove_vmharddiskdrive, cmdlet_enable_vmintegrationservice, cmdlet_disable_vmintegrationservice,
	cmdlet_get_vmhost, cmdlet_set_vmhost, cmdlet_connect_vm, cmdlet_save_vm, cmdlet_remove_vmsavedstate;
/* DVD drives (cli/dvd.c). */
extern const struct cmdlet cmdlet_add_vmdvddrive, cmdlet_get_vmdvddrive, cmdlet_set_vmdvddrive, cmdlet_remove_vmdvddrive;
/* Virtual switches and network adapters (cli/net.c). */
extern const struct cmdlet cmdlet_new_vmswitch, cmdlet_get_vmswitch, cmdlet_remove_vmswitch, cmdlet_add_vmnetworkadapter,
	cmdlet_remove_vmnetworkadapter, cmdlet_get_vmnetworkadapter, cmdlet_connect_vmnetworkadapter,
	cmdlet_disconnect_vmnetworkadapter, cmdlet_set_vmnetworkadapter, cmdlet_get_vmnetworkadaptervlan,
	cmdlet_set_vmnetworkadaptervlan;
/* Checkpoints and jobs (cli/checkpoint.c). */
extern const struct cmdlet cmdlet_checkpoint_vm, cmdlet_get_vmcheckpoint, cmdlet_get_vmsnapshot, cmdlet_rename_vmcheckpoint,
	cmdlet_rename_vmsnapshot, cmdlet_restore_vmcheckpoint, cmdlet_restore_vmsnapshot, cmdlet_remove_vmcheckpoint,
	cmdlet_remove_vmsnapshot, cmdlet_get_vmjob;
extern const struct cmdlet cmdlet_export_vm, cmdlet_import_vm, cmdlet_compare_vm, cmdlet_move_vmstorage;
/* Guest services (cli/copyfile.c). */
extern const struct cmdlet cmdlet_copy_vmfile;

const struct cmdlet *const cli_cmdlets[] = {
	&cmdlet_get_help,
	&cmdlet_new_vhd,
	&cmdlet_get_vhd,
	&cmdlet_test_vhd,
	&cmdlet_convert_vhd,
	&cmdlet_resize_vhd,
	&cmdlet_merge_vhd,
	&cmdlet_optimize_vhd,
	&cmdlet_set_vhd,
	&cmdlet_new_vm,
	&cmdlet_get_vm,
	&cmdlet_set_vm,
	&cmdlet_set_vmfirmware,
	&cmdlet_start_vm,
	&cmdlet_stop_vm,
	&cmdlet_restart_vm,
	&cmdlet_suspend_vm,
	&cmdlet_resume_vm,
	&cmdlet_save_vm,
	&cmdlet_remove_vmsavedstate,
	&cmdlet_remove_vm,
	&cmdlet_get_vmevent,
	&cmdlet_get_vmintegrationservice,
	&cmdlet_enable_vmintegrationservice,
	&cmdlet_disable_vmintegrationservice,
	&cmdlet_add_vmharddiskdrive,
	&cmdlet_set_vmharddiskdrive,
	&cmdlet_get_vmprocessor,
	&cmdlet_set_vmprocessor,
	&cmdlet_enable_vmresourcemetering,
	&cmdlet_disable_vmresourcemetering,
	&cmdlet_reset_vmresourcemetering,
	&cmdlet_measure_vm,
	&cmdlet_get_vmharddiskdrive,
	&cmdlet_remove_vmharddiskdrive,
	&cmdlet_add_vmdvddrive,
	&cmdlet_get_vmdvddrive,
	&cmdlet_set_vmdvddrive,
	&cmdlet_remove_vmdvddrive,
	&cmdlet_connect_vm,
	&cmdlet_get_vmhost,
	&cmdlet_set_vmhost,
	&cmdlet_new_vmswitch,
	&cmdlet_get_vmswitch,
	&cmdlet_remove_vmswitch,
	&cmdlet_add_vmnetworkadapter,
	&cmdlet_get_vmnetworkadapter,
	&cmdlet_remove_vmnetworkadapter,
	&cmdlet_connect_vmnetworkadapter,
	&cmdlet_disconnect_vmnetworkadapter,
	&cmdlet_set_vmnetworkadapter,
	&cmdlet_get_vmnetworkadaptervlan,
	&cmdlet_set_vmnetworkadaptervlan,
	&cmdlet_checkpoint_vm,
	&cmdlet_get_vmcheckpoint,
	&cmdlet_get_vmsnapshot,
	&cmdlet_rename_vmcheckpoint,
	&cmdlet_rename_vmsnapshot,
	&cmdlet_restore_vmcheckpoint,
	&cmdlet_restore_vmsnapshot,
	&cmdlet_remove_vmcheckpoint,
	&cmdlet_remove_vmsnapshot,
	&cmdlet_get_vmjob,
	&cmdlet_new_vmmanagementtoken,
	&cmdlet_get_vmmanagementtoken,
	&cmdlet_remove_vmmanagementtoken,
	&cmdlet_export_vm,
	&cmdlet_import_vm,
	&cmdlet_compare_vm,
	&cmdlet_move_vmstorage,
	&cmdlet_copy_vmfile,
	NULL,
};

const struct cmdlet *cli_find(const char *name)
{
	for (int i = 0; cli_cmdlets[i]; i++)
		if (!strcasecmp(cli_cmdlets[i]->name, name))
			return cli_cmdlets[i];
	return NULL;
}

/* -ComputerName and -Credential belong to every cmdlet that talks to vmms: taken out of argv
 * before the cmdlet's own parameters are parsed. */
static int global_params(int *argc, char **argv, const char **computer, const char **credential)
{
	int out = 0;
	for (int i = 0; i < *argc; i++) {
		const char **slot = !strcasecmp(argv[i], "-ComputerName") ? computer
				    : !strcasecmp(argv[i], "-Credential") ? credential
									  : NULL;
		if (!slot) {
			argv[out++] = argv[i];
			continue;
		}
		if (i + 1 >= *argc || *slot) {
			fprintf(stderr, "hv: %s %s\n", argv[i], *slot ? "given twice" : "needs a value");
			return -1;
		}
		*slot = argv[++i];
	}
	*argc = out;
	return 0;
}

int main(int argc, char **argv)
{
	const struct cmdlet *c = cli_find(argc > 1 ? argv[1] : "Get-Help");
	if (!c) {
		fprintf(stderr, "hv: unknown cmdlet '%s' (hv Get-Help lists them)\n", argv[1]);
		return 2;
	}
	int n = argc > 1 ? argc - 2 : 0;
	const char *computer = NULL, *credential = NULL;
	if (global_params(&n, argv + 2, &computer, &credential) < 0)
		return 2;
	if (credential && !computer) {
		fprintf(stderr, "hv %s: -Credential goes with -ComputerName\n", c->name);
		return 2;
	}
	size_t len = strlen(c->name);
	if (computer && (c == &cmdlet_get_help || (len > 4 && !strcasecmp(c->name + len - 4, "-VHD")))) {
		fprintf(stderr, "hv %s: works on this machine's files; it takes no -ComputerName\n", c->name);
		return 2;
	}
	char err[512];
	if (computer && remote_set(computer, credential, err, sizeof(err)) < 0) {
		fprintf(stderr, "hv %s: %s\n", c->name, err);
		return 2;
	}
	struct args a;
	if (args_parse(c, n, argv + 2, &a))
		return 2;
	return c->run(&a);
}
