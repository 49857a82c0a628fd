/* The virtual switch and network adapter cmdlets: New-/Get-/Remove-VMSwitch,
 * Add-/Get-/Remove-/Connect-/Disconnect-/Set-VMNetworkAdapter, Get-/Set-VMNetworkAdapterVlan.
 * They talk to vmms (docs/vmms.md); each cmdlet's request is built by net_cmdlet_request (pure,
 * tested in tests/unit/vmms/test_cli_net.c). */
#include "cmdlet.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

json_t *net_cmdlet_request(const struct args *a, char *err, size_t errlen);

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); json_decref(req); return NULL; } while (0)

static void set_str(json_t *req, const char *key, const char *v)
{
	if (v)
		json_object_set_new(req, key, json_string(v));
}

static bool is(const struct args *a, const char *name)
{
	return !strcasecmp(a->cmdlet->name, name);
}

json_t *net_cmdlet_request(const struct args *a, char *err, size_t errlen)
{
	json_t *req = json_object();
	if (is(a, "New-VMSwitch")) {
		const char *type = arg_str(a, "SwitchType"), *nic = arg_str(a, "NetAdapterName");
		static const char *const types[] = { "Private", "Internal", "External" };
		const char *t = NULL;
		for (int i = 0; type && i < 3; i++)
			if (!strcasecmp(type, types[i]))
				t = types[i];
		if (type && !t)
			FAIL("-SwitchType must be Private, Internal or External");
		if (!t && !nic)
			FAIL("give -SwitchType Private or Internal, or -NetAdapterName for an External switch");
		if (nic && t && strcmp(t, "External"))
			FAIL("-NetAdapterName makes an External switch; it does not go with -SwitchType %s", t);
		if (!nic && t && !strcmp(t, "External"))
			FAIL("an External switch needs -NetAdapterName: the host's network adapter to bind to");
		if (nic && !*nic)
			FAIL("-NetAdapterName is empty");
		json_object_set_new(req, "op", json_string("new-switch"));
		set_str(req, "name", arg_str(a, "Name"));
		json_object_set_new(req, "type", json_string(t ? t : "External"));
		set_str(req, "net_adapter", nic);
		set_str(req, "notes", arg_str(a, "Notes"));
	} else if (is(a, "Get-VMSwitch")) {
		const char *type = arg_str(a, "SwitchType");
		if (type && strcasecmp(type, "Private") && strcasecmp(type, "Internal") && strcasecmp(type, "External"))
			FAIL("-SwitchType must be Private, Internal or External");
		json_object_set_new(req, "op", json_string("list-switches"));
		set_str(req, "name", arg_str(a, "Name"));
	} else if (is(a, "Remove-VMSwitch")) {
		json_object_set_new(req, "op", json_string("remove-switch"));
		set_str(req, "switch", arg_str(a, "Name"));
	} else if (is(a, "Add-VMNetworkAdapter")) {
		json_object_set_new(req, "op", json_string("add-nic"));
		set_str(req, "vm", arg_str(a, "VMName"));
		set_str(req, "name", arg_str(a, "Name"));
		set_str(req, "switch", arg_str(a, "SwitchName"));
		set_str(req, "static_mac", arg_str(a, "StaticMacAddress"));
	} else if (is(a, "Remove-VMNetworkAdapter")) {
		json_object_set_new(req, "op", json_string("remove-nic"));
		set_str(req, "vm", arg_str(a, "VMName"));
		set_str(req, "name", arg_str(a, "Name"));
	} else if (is(a, "Get-VMNetworkAdapter") || is(a, "Get-VMNetworkAdapterVlan")) {
		const char *vm = arg_str(a, "VMName");
		if (!vm == !arg_has(a, "All"))
			FAIL("give -VMName, or -All for every virtual machine's adapters");
		json_object_set_new(req, "op", json_string("list-nics"));
		set_str(req, "vm", vm);
		set_str(req, "name", arg_str(a, is(a, "Get-VMNetworkAdapter") ? "Name" : "VMNetworkAdapterName"));
	} else if (is(a, "Connect-VMNetworkAdapter")) {
		json_object_set_new(req, "op", json_string("connect-nic"));
		set_str(req, "vm", arg_str(a, "VMName"));
		set_str(req, "name", arg_str(a, "Name"));
		set_str(req, "switch", arg_str(a, "SwitchName"));
	} else if (is(a, "Disconnect-VMNetworkAdapter")) {
		json_object_set_new(req, "op", json_string("disconnect-nic"));
		set_str(req, "vm", arg_str(a, "VMName"));
		set_str(req, "name", arg_str(a, "Name"));
	} else if (is(a, "Set-VMNetworkAdapterVlan")) {
		bool access = arg_has(a, "Access"), untagged = arg_has(a, "Untagged");
		const char *id = arg_str(a, "VlanId");
		if (access == untagged)
			FAIL("give -Access -VlanId N, or -Untagged");
		if (untagged && id)
			FAIL("-Untagged takes no -VlanId");
		long v = 0;
		if (access) {
			char *end;
			errno = 0;
			v = id && *id ? strtol(id, &end, 10) : -1;
			if (!id || !*id || errno || *end || v < 1 || v > 4094)
				FAIL("-Access needs -VlanId from 1 to 4094");
		}
		json_object_set_new(req, "op", json_string("set-nic-vlan"));
		set_str(req, "vm", arg_str(a, "VMName"));
		set_str(req, "name", arg_str(a, "VMNetworkAdapterName"));
		json_object_set_new(req, "vlan", json_integer(v));
	} else if (is(a, "Set-VMNetworkAdapter")) {
		const char *sp = arg_str(a, "MacAddressSpoofing");
		if (!sp)
			FAIL("nothing to change: give -MacAddressSpoofing On or Off");
		if (strcasecmp(sp, "On") && strcasecmp(sp, "Off"))
			FAIL("-MacAddressSpoofing must be On or Off");
		json_object_set_new(req, "op", json_string("set-nic"));
		set_str(req, "vm", arg_str(a, "VMName"));
		set_str(req, "name", arg_str(a, "Name"));
		json_object_set_new(req, "mac_spoofing", json_boolean(!strcasecmp(sp, "On")));
	} else {
		FAIL("not a network cmdlet");
	}
	return req;
}

static const char *str(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "";
}

static json_int_t num(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* vmms's switch object -> Hyper-V's property names. */
static json_t *switch_out(json_t *sw)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:O}",
			      "Name", str(sw, "name"), "Id", str(sw, "id"), "SwitchType", str(sw, "type"),
			      "NetAdapterName", str(sw, "net_adapter"),
			      "NetAdapterInterfaceDescription", str(sw, "net_adapter_interface_description"),
			      "HostAdapterName", str(sw, "host_adapter"), "Notes", str(sw, "notes"), "State", str(sw, "state"),
			      "ProcessId", num(sw, "pid"), "Adapters", num(sw, "adapters"),
			      "ConnectedAdapters", num(sw, "connected_adapters"), "InPackets", num(sw, "in_packets"),
			      "InBytes", num(sw, "in_bytes"), "OutPackets", num(sw, "out_packets"), "OutBytes", num(sw, "out_bytes"),
			      "Dropped", num(sw, "dropped"), "SocketPath", str(sw, "socket"), "Ports", json_object_get(sw, "ports"));
	if (json_object_get(sw, "last_error"))
		json_object_set_new(o, "LastError", json_string(str(sw, "last_error")));
	return o;
}

static void print_switches(json_t *list)
{
	printf("%-20s %-10s %-30s %-15s %-8s %-9s %s\n", "Name", "SwitchType", "NetAdapterInterfaceDescription", "HostAdapter",
	       "Adapters", "Connected", "State");
	printf("%-20s %-10s %-30s %-15s %-8s %-9s %s\n", "----", "----------", "------------------------------", "-----------",
	       "--------", "---------", "-----");
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o)
		printf("%-20s %-10s %-30s %-15s %-8lld %-9lld %s\n", str(o, "Name"), str(o, "SwitchType"),
		       str(o, "NetAdapterInterfaceDescription"), str(o, "HostAdapterName"), (long long)num(o, "Adapters"),
		       (long long)num(o, "ConnectedAdapters"), str(o, "State"));
}

/* vmms's adapter object -> Hyper-V's property names. */
static json_t *nic_out(json_t *n)
{
	json_t *sw = json_object_get(n, "switch");
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:s, s:s, s:I}", "Name", str(n, "name"), "VMName", str(n, "vm"),
			      "VMId", str(n, "vm_id"), "SwitchName", json_is_string(sw) ? json_string_value(sw) : "",
			      "MacAddress", str(n, "mac"), "DynamicMacAddressEnabled", json_is_true(json_object_get(n, "dynamic_mac")),
			      "VlanId", num(n, "vlan"), "MacAddressSpoofing", json_is_true(json_object_get(n, "mac_spoofing")) ? "On" : "Off",
			      "Status", str(n, "status"), "Index", num(n, "index"));
	if (json_object_get(n, "connected")) { /* the VM runs: the worker's view */
		json_object_set_new(o, "Connected", json_boolean(json_is_true(json_object_get(n, "connected"))));
		json_object_set_new(o, "Error", json_string(str(n, "error")));
		json_object_set_new(o, "LinkUp", json_boolean(json_is_true(json_object_get(n, "link_up"))));
		static const char *const keys[][2] = {
			{ "tx_packets", "PacketsSent" }, { "tx_bytes", "BytesSent" }, { "rx_packets", "PacketsReceived" },
			{ "rx_bytes", "BytesReceived" }, { "tx_drops", "SendDrops" }, { "rx_drops", "ReceiveDrops" },
			{ "bad_packets", "BadPackets" },
		};
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			json_object_set_new(o, keys[k][1], json_integer(num(n, keys[k][0])));
	}
	return o;
}

static void print_nics(json_t *list)
{
	printf("%-18s %-16s %-16s %-12s %-6s %-12s %-9s %-11s %-15s %s\n", "Name", "VMName", "SwitchName", "MacAddress", "VlanId",
	       "Status", "Connected", "PacketsSent", "PacketsReceived", "Drops");
	printf("%-18s %-16s %-16s %-12s %-6s %-12s %-9s %-11s %-15s %s\n", "----", "------", "----------", "----------", "------",
	       "------", "---------", "-----------", "---------------", "-----");
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o) {
		char connected[8] = "", sent[24] = "", recv[24] = "", drops[24] = "";
		if (json_object_get(o, "Connected")) {
			snprintf(connected, sizeof(connected), "%s", json_is_true(json_object_get(o, "Connected")) ? "True" : "False");
			snprintf(sent, sizeof(sent), "%lld", (long long)num(o, "PacketsSent"));
			snprintf(recv, sizeof(recv), "%lld", (long long)num(o, "PacketsReceived"));
			snprintf(drops, sizeof(drops), "%lld", (long long)(num(o, "SendDrops") + num(o, "ReceiveDrops")));
		}
		printf("%-18s %-16s %-16s %-12s %-6lld %-12s %-9s %-11s %-15s %s\n", str(o, "Name"), str(o, "VMName"),
		       str(o, "SwitchName"), str(o, "MacAddress"), (long long)num(o, "VlanId"), str(o, "Status"), connected, sent, recv,
		       drops);
	}
}

static void print_vlans(json_t *list)
{
	printf("%-16s %-20s %-13s %s\n", "VMName", "VMNetworkAdapterName", "OperationMode", "AccessVlanId");
	printf("%-16s %-20s %-13s %s\n", "------", "--------------------", "-------------", "------------");
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o)
		printf("%-16s %-20s %-13s %lld\n", str(o, "VMName"), str(o, "Name"), num(o, "VlanId") ? "Access" : "Untagged",
		       (long long)num(o, "VlanId"));
}

static int run(const struct args *a)
{
	char err[512];
	json_t *req = net_cmdlet_request(a, err, sizeof(err));
	if (!req)
		return cli_fail(a, "%s", err);
	json_t *r = call_ok(a, req);
	json_decref(req);
	if (!r)
		return 1;
	bool json = arg_has(a, "Json"), show = json || arg_has(a, "Passthru");
	const char *warn = json_string_value(json_object_get(r, "warning"));
	if (warn)
		fprintf(stderr, "WARNING: %s\n", warn);
	json_t *out = json_array();
	json_t *one = json_object_get(r, "switch"), *many = json_object_get(r, "switches");
	json_t *nic = json_object_get(r, "adapter"), *nics = json_object_get(r, "adapters");
	const char *type = arg_str(a, "SwitchType");
	size_t i;
	json_t *x;
	if (one)
		json_array_append_new(out, switch_out(one));
	json_array_foreach(many, i, x)
		if (!type || !strcasecmp(type, str(x, "type")))
			json_array_append_new(out, switch_out(x));
	if (nic)
		json_array_append_new(out, nic_out(nic));
	json_array_foreach(nics, i, x)
		json_array_append_new(out, nic_out(x));
	if (is(a, "Remove-VMSwitch")) {
		if (json)
			cli_print_json(r);
	} else if (json) {
		cli_print_json(out);
	} else if (is(a, "New-VMSwitch") || is(a, "Get-VMSwitch")) {
		print_switches(out);
	} else if (is(a, "Get-VMNetworkAdapterVlan")) {
		print_vlans(out);
	} else if (is(a, "Get-VMNetworkAdapter") || is(a, "Add-VMNetworkAdapter") || (show && !is(a, "Set-VMNetworkAdapterVlan"))) {
		print_nics(out);
	} else if (show) {
		print_vlans(out);
	}
	json_decref(out);
	json_decref(r);
	return 0;
}

static const struct param_spec new_switch_params[] = {
	{ "Name", PARAM_STRING, true, true, "the new switch's name (unique, case-insensitive)" },
	{ "SwitchType", PARAM_STRING, false, false, "Private (VMs only) or Internal (VMs and this host: a tap vs-NAME)" },
	{ "NetAdapterName", PARAM_STRING, false, false, "External: the host interface to bind to (e.g. eth1)" },
	{ "Notes", PARAM_STRING, false, false, "free text" },
	{ "Json", PARAM_SWITCH, false, false, "print the switch as JSON" },
	{ 0 },
};
static const struct param_spec get_switch_params[] = {
	{ "Name", PARAM_STRING, false, true, "a name (wildcards * ? []) or GUID; all switches when absent" },
	{ "SwitchType", PARAM_STRING, false, false, "only switches of this type" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output, with each port's counters" },
	{ 0 },
};
static const struct param_spec remove_switch_params[] = {
	{ "Name", PARAM_STRING, true, true, "the switch; adapters on it are disconnected" },
	{ "Force", PARAM_SWITCH, false, false, "no confirmation" },
	{ "Json", PARAM_SWITCH, false, false, "print the result (adapters disconnected) as JSON" },
	{ 0 },
};
static const struct param_spec add_nic_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); it must be Off" },
	{ "Name", PARAM_STRING, false, false, "the adapter's name (\"Network Adapter\")" },
	{ "SwitchName", PARAM_STRING, false, false, "the switch to connect it to (none: not connected)" },
	{ "StaticMacAddress", PARAM_STRING, false, false, "e.g. 00155D0A0B0C (default: a dynamic one, 00155D......)" },
	{ "Json", PARAM_SWITCH, false, false, "print the adapter as JSON" },
	{ 0 },
};
static const struct param_spec remove_nic_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); it must be Off" },
	{ "Name", PARAM_STRING, false, false, "the adapter(s) to remove (needed when there are several)" },
	{ "Json", PARAM_SWITCH, false, false, "print the removed adapters as JSON" },
	{ 0 },
};
static const struct param_spec get_nic_params[] = {
	{ "VMName", PARAM_STRING, false, true, "the VM (name or GUID)" },
	{ "Name", PARAM_STRING, false, false, "only adapters with this name (wildcards * ? [])" },
	{ "All", PARAM_SWITCH, false, false, "every VM's adapters" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output, with the running worker's counters" },
	{ 0 },
};
static const struct param_spec connect_nic_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); running VMs are re-plugged at once" },
	{ "Name", PARAM_STRING, false, false, "the adapter(s) (default: all of the VM's)" },
	{ "SwitchName", PARAM_STRING, true, false, "the switch" },
	{ "Passthru", PARAM_SWITCH, false, false, "print the adapters" },
	{ "Json", PARAM_SWITCH, false, false, "print the adapters as JSON" },
	{ 0 },
};
static const struct param_spec disconnect_nic_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); running VMs are unplugged at once" },
	{ "Name", PARAM_STRING, false, false, "the adapter(s) (default: all of the VM's)" },
	{ "Passthru", PARAM_SWITCH, false, false, "print the adapters" },
	{ "Json", PARAM_SWITCH, false, false, "print the adapters as JSON" },
	{ 0 },
};
static const struct param_spec set_vlan_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); running VMs are re-plugged at once" },
	{ "VMNetworkAdapterName", PARAM_STRING, false, false, "the adapter(s) (default: all of the VM's)" },
	{ "Access", PARAM_SWITCH, false, false, "access mode: the adapter's frames are in VLAN -VlanId" },
	{ "VlanId", PARAM_STRING, false, false, "1-4094, with -Access" },
	{ "Untagged", PARAM_SWITCH, false, false, "no VLAN (the default)" },
	{ "Passthru", PARAM_SWITCH, false, false, "print the adapters' VLAN settings" },
	{ "Json", PARAM_SWITCH, false, false, "print the adapters as JSON" },
	{ 0 },
};
static const struct param_spec get_vlan_params[] = {
	{ "VMName", PARAM_STRING, false, true, "the VM (name or GUID)" },
	{ "VMNetworkAdapterName", PARAM_STRING, false, false, "only this adapter" },
	{ "All", PARAM_SWITCH, false, false, "every VM's adapters" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};
static const struct param_spec set_nic_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "Name", PARAM_STRING, false, false, "the adapter(s) (default: all of the VM's)" },
	{ "MacAddressSpoofing", PARAM_STRING, false, false, "On or Off: may the guest send from other MACs (from the next start)" },
	{ "Passthru", PARAM_SWITCH, false, false, "print the adapters" },
	{ "Json", PARAM_SWITCH, false, false, "print the adapters as JSON" },
	{ 0 },
};

const struct cmdlet cmdlet_new_vmswitch = { "New-VMSwitch", "create a virtual switch (Private, Internal, or External with -NetAdapterName)", new_switch_params, run };
const struct cmdlet cmdlet_get_vmswitch = { "Get-VMSwitch", "virtual switches: type, host adapter, connected adapters, counters", get_switch_params, run };
const struct cmdlet cmdlet_remove_vmswitch = { "Remove-VMSwitch", "delete a virtual switch (its adapters are disconnected)", remove_switch_params, run };
const struct cmdlet cmdlet_add_vmnetworkadapter = { "Add-VMNetworkAdapter", "add a network adapter to a VM (VM Off)", add_nic_params, run };
const struct cmdlet cmdlet_remove_vmnetworkadapter = { "Remove-VMNetworkAdapter", "remove a network adapter from a VM (VM Off)", remove_nic_params, run };
const struct cmdlet cmdlet_get_vmnetworkadapter = { "Get-VMNetworkAdapter", "a VM's network adapters: MAC, switch, VLAN, status, counters", get_nic_params, run };
const struct cmdlet cmdlet_connect_vmnetworkadapter = { "Connect-VMNetworkAdapter", "connect a VM's network adapter to a virtual switch", connect_nic_params, run };
const struct cmdlet cmdlet_disconnect_vmnetworkadapter = { "Disconnect-VMNetworkAdapter", "disconnect a VM's network adapter from its switch", disconnect_nic_params, run };
const struct cmdlet cmdlet_set_vmnetworkadapter = { "Set-VMNetworkAdapter", "set a network adapter's MAC address spoofing (next start)", set_nic_params, run };
const struct cmdlet cmdlet_get_vmnetworkadaptervlan = { "Get-VMNetworkAdapterVlan", "network adapters' VLAN settings", get_vlan_params, run };
const struct cmdlet cmdlet_set_vmnetworkadaptervlan = { "Set-VMNetworkAdapterVlan", "put a network adapter in an access VLAN, or untagged", set_vlan_params, run };
