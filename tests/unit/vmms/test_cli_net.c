/* The switch and network adapter cmdlets' parsing (cli/net.c): the vmms request each builds;
 * bad input is refused before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "cli_build.h"

extern const struct cmdlet cmdlet_new_vmswitch, cmdlet_get_vmswitch, cmdlet_remove_vmswitch, cmdlet_add_vmnetworkadapter,
	cmdlet_remove_vmnetworkadapter, cmdlet_get_vmnetworkadapter, cmdlet_connect_vmnetworkadapter,
	cmdlet_disconnect_vmnetworkadapter, cmdlet_set_vmnetworkadapter, cmdlet_get_vmnetworkadaptervlan,
	cmdlet_set_vmnetworkadaptervlan;
json_t *net_cmdlet_request(const struct args *a, char *err, size_t errlen);

#define B(c, ...) cli_build(net_cmdlet_request, &c, CLI_ARGC(__VA_ARGS__), (char *[]){ __VA_ARGS__ })

static void switches(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_new_vmswitch, "-Name", "LAN", "-SwitchType", "internal"),
			    "{\"name\":\"LAN\",\"op\":\"new-switch\",\"type\":\"Internal\"}");
	assert_string_equal(B(cmdlet_new_vmswitch, "lan", "-switchtype", "Private", "-Notes", "n"),
			    "{\"name\":\"lan\",\"notes\":\"n\",\"op\":\"new-switch\",\"type\":\"Private\"}");
	assert_string_equal(B(cmdlet_new_vmswitch, "ext", "-NetAdapterName", "eth1"),
			    "{\"name\":\"ext\",\"net_adapter\":\"eth1\",\"op\":\"new-switch\",\"type\":\"External\"}");
	assert_string_equal(B(cmdlet_new_vmswitch, "ext", "-NetAdapterName", "eth1", "-SwitchType", "External"),
			    "{\"name\":\"ext\",\"net_adapter\":\"eth1\",\"op\":\"new-switch\",\"type\":\"External\"}");
	assert_string_equal(B(cmdlet_new_vmswitch, "x"), "ERR:give -SwitchType Private or Internal, or -NetAdapterName for an External switch");
	assert_string_equal(B(cmdlet_new_vmswitch, "x", "-SwitchType", "Bridge"), "ERR:-SwitchType must be Private, Internal or External");
	assert_non_null(strstr(B(cmdlet_new_vmswitch, "x", "-SwitchType", "External"), "needs -NetAdapterName"));
	assert_non_null(strstr(B(cmdlet_new_vmswitch, "x", "-SwitchType", "Private", "-NetAdapterName", "eth0"), "does not go with"));
	assert_string_equal(B(cmdlet_new_vmswitch, "-SwitchType", "Private"), "PARSE"); /* no name */
	assert_string_equal(B(cmdlet_get_vmswitch), "{\"op\":\"list-switches\"}");
	assert_string_equal(B(cmdlet_get_vmswitch, "l*", "-SwitchType", "internal", "-Json"), "{\"name\":\"l*\",\"op\":\"list-switches\"}");
	assert_string_equal(B(cmdlet_get_vmswitch, "-SwitchType", "wifi"), "ERR:-SwitchType must be Private, Internal or External");
	assert_string_equal(B(cmdlet_remove_vmswitch, "LAN", "-Force"), "{\"op\":\"remove-switch\",\"switch\":\"LAN\"}");
	assert_string_equal(B(cmdlet_remove_vmswitch), "PARSE");
}

static void adapters(void **state)
{
	(void)state;
	assert_string_equal(B(cmdlet_add_vmnetworkadapter, "-VMName", "web"), "{\"op\":\"add-nic\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_add_vmnetworkadapter, "web", "-Name", "lan", "-SwitchName", "LAN", "-StaticMacAddress", "00155D010203"),
			    "{\"name\":\"lan\",\"op\":\"add-nic\",\"static_mac\":\"00155D010203\",\"switch\":\"LAN\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_add_vmnetworkadapter, "-Name", "lan"), "PARSE"); /* no VM */
	assert_string_equal(B(cmdlet_remove_vmnetworkadapter, "web", "-Name", "lan"), "{\"name\":\"lan\",\"op\":\"remove-nic\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_get_vmnetworkadapter, "web"), "{\"op\":\"list-nics\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_get_vmnetworkadapter, "-All", "-Name", "l*"), "{\"name\":\"l*\",\"op\":\"list-nics\"}");
	assert_non_null(strstr(B(cmdlet_get_vmnetworkadapter), "ERR:give -VMName, or -All"));
	assert_non_null(strstr(B(cmdlet_get_vmnetworkadapter, "web", "-All"), "ERR:give -VMName, or -All"));
	assert_string_equal(B(cmdlet_connect_vmnetworkadapter, "web", "-SwitchName", "LAN"),
			    "{\"op\":\"connect-nic\",\"switch\":\"LAN\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_connect_vmnetworkadapter, "web", "-Name", "lan"), "PARSE"); /* -SwitchName is required */
	assert_string_equal(B(cmdlet_disconnect_vmnetworkadapter, "web", "-name", "lan", "-Passthru"),
			    "{\"name\":\"lan\",\"op\":\"disconnect-nic\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-VMNetworkAdapterName", "lan", "-Access", "-VlanId", "5"),
			    "{\"name\":\"lan\",\"op\":\"set-nic-vlan\",\"vlan\":5,\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Untagged"), "{\"op\":\"set-nic-vlan\",\"vlan\":0,\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Access", "-VlanId", "4094"), "{\"op\":\"set-nic-vlan\",\"vlan\":4094,\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Access", "-VlanId", "4095"), "ERR:-Access needs -VlanId from 1 to 4094");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Access", "-VlanId", "0"), "ERR:-Access needs -VlanId from 1 to 4094");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Access", "-VlanId", "5x"), "ERR:-Access needs -VlanId from 1 to 4094");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Access"), "ERR:-Access needs -VlanId from 1 to 4094");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web"), "ERR:give -Access -VlanId N, or -Untagged");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Access", "-Untagged"), "ERR:give -Access -VlanId N, or -Untagged");
	assert_string_equal(B(cmdlet_set_vmnetworkadaptervlan, "web", "-Untagged", "-VlanId", "3"), "ERR:-Untagged takes no -VlanId");
	assert_string_equal(B(cmdlet_get_vmnetworkadaptervlan, "web", "-VMNetworkAdapterName", "lan"),
			    "{\"name\":\"lan\",\"op\":\"list-nics\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmnetworkadapter, "web", "-MacAddressSpoofing", "on"),
			    "{\"mac_spoofing\":true,\"op\":\"set-nic\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmnetworkadapter, "web", "-Name", "lan", "-MacAddressSpoofing", "Off"),
			    "{\"mac_spoofing\":false,\"name\":\"lan\",\"op\":\"set-nic\",\"vm\":\"web\"}");
	assert_string_equal(B(cmdlet_set_vmnetworkadapter, "web", "-MacAddressSpoofing", "yes"), "ERR:-MacAddressSpoofing must be On or Off");
	assert_non_null(strstr(B(cmdlet_set_vmnetworkadapter, "web"), "ERR:nothing to change"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(switches),
		cmocka_unit_test(adapters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
