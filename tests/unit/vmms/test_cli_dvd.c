/* The DVD drive cmdlets' parsing (cli/dvd.c): the vmms request each builds; bad input is
 * refused before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "cli_build.h"

extern const struct cmdlet cmdlet_add_vmdvddrive, cmdlet_get_vmdvddrive, cmdlet_set_vmdvddrive, cmdlet_remove_vmdvddrive;
json_t *dvd_cmdlet_request(const struct args *a, char *err, size_t errlen);

#define B(c, ...) cli_build(dvd_cmdlet_request, &c, CLI_ARGC(__VA_ARGS__), (char *[]){ __VA_ARGS__ })

static void requests(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_add_vmdvddrive, "-VMName", "web", "-Path", "/iso/a.iso"),
			    "{\"op\":\"add-dvd\",\"path\":\"/iso/a.iso\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-ControllerNumber", "0", "-ControllerLocation", "7", "-ControllerType", "scsi"),
			    "{\"controller\":0,\"lun\":7,\"op\":\"add-dvd\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_get_vmdvddrive, "web"), "{\"op\":\"get-dvd\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_get_vmdvddrive, "-vmname", "web", "-Json"), "{\"op\":\"get-dvd\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmdvddrive, "web", "-ControllerLocation", "1", "-Path", "/iso/b.iso"),
			    "{\"lun\":1,\"op\":\"set-dvd\",\"path\":\"/iso/b.iso\",\"vm\":\"web\"}");
	/* '' and $null eject */
	assert_string_equal(B(cmdlet_set_vmdvddrive, "web", "-ControllerLocation", "1", "-Path", ""),
			    "{\"lun\":1,\"op\":\"set-dvd\",\"path\":\"\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmdvddrive, "web", "-ControllerLocation", "1", "-Path", "$NULL"),
			    "{\"lun\":1,\"op\":\"set-dvd\",\"path\":\"\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_remove_vmdvddrive, "web", "-ControllerLocation", "63"),
			    "{\"lun\":63,\"op\":\"remove-dvd\",\"vm\":\"web\"}");
}

static void refused(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_add_vmdvddrive, "-Path", "/iso/a.iso"), "PARSE"); /* no VM */
	assert_string_equal(B(cmdlet_set_vmdvddrive, "web", "-Path", "/a.iso"), "PARSE"); /* no location */
	assert_string_equal(B(cmdlet_remove_vmdvddrive, "web"), "PARSE");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-Bogus", "1"), "PARSE");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-ControllerType", "IDE"),
			    "ERR:-ControllerType IDE: only SCSI controllers are supported (DVD drives on IDE are not)");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-ControllerLocation", "64"), "ERR:-ControllerLocation must be a number from 0 to 63");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-ControllerLocation", "-1"), "ERR:-ControllerLocation must be a number from 0 to 63");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-ControllerLocation", "1x"), "ERR:-ControllerLocation must be a number from 0 to 63");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-ControllerLocation", ""), "ERR:-ControllerLocation must be a number from 0 to 63");
	assert_string_equal(B(cmdlet_add_vmdvddrive, "web", "-ControllerNumber", "4"), "ERR:-ControllerNumber must be a number from 0 to 3");
	assert_string_equal(B(cmdlet_set_vmdvddrive, "web", "-ControllerLocation", "1"),
			    "ERR:nothing to change: give -Path (an ISO file, or '' / '$null' for no disc)");
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(requests), cmocka_unit_test(refused) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
