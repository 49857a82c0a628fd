/* The VM cmdlets: New/Get/Set/Start/Stop/Restart/Suspend/Resume/Save/Remove-VM,
 * Remove-VMSavedState, Set-VMFirmware, Get-VMEvent, Get-VMIntegrationService, drives, the host. They talk to vmms over its socket ($VIRIDIAN_SOCKET or
 * /run/viridian/vmms.sock); each cmdlet's request is built by vm_cmdlet_request (pure, tested). */
#include "cmdlet.h"
#include "vmms/control_client.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

json_t *vm_cmdlet_request(const struct args *a, char *err, size_t errlen);

#define DEFAULT_SOCKET "/run/viridian/vmms.sock"

static const char *socket_path(void)
{
	const char *p = getenv("VIRIDIAN_SOCKET");
	return p && *p ? p : DEFAULT_SOCKET;
}

#define VMMS_REPLY_TIMEOUT_S 60

/* One request to vmms; NULL with a message in err when vmms cannot be reached. vmms answers
 * every request promptly (it never waits on a worker for more than a few seconds); a silent one
 * is stuck, and a cmdlet must not hang with it. */
json_t *vmms_call(json_t *req, char *err, size_t errlen)
{
	if (remote_active())
		return remote_call(req, err, errlen);
	const char *path = socket_path();
	char *line = json_dumps(req, JSON_COMPACT);
	enum control_call_error why;
	json_t *r = line ? control_call(path, line, VMMS_REPLY_TIMEOUT_S * 1000, &why) : NULL;
	int e = errno;
	free(line);
	if (r)
		return r;
	switch (why) {
	case CONTROL_CALL_UNREACHABLE:
		snprintf(err, errlen, "cannot reach vmms at %s: %s (is it running? VIRIDIAN_SOCKET names another socket)",
			 path, strerror(e));
		break;
	case CONTROL_CALL_TIMEOUT:
		snprintf(err, errlen, "vmms at %s did not answer within %d s", path, VMMS_REPLY_TIMEOUT_S);
		break;
	case CONTROL_CALL_MALFORMED:
		snprintf(err, errlen, "vmms sent a malformed reply");
		break;
	default:
		snprintf(err, errlen, "lost the connection to vmms at %s", path);
		break;
	}
	return NULL;
}

/* Sends the request; on failure prints the error and returns NULL. */
json_t *call_ok(const struct args *a, json_t *req)
{
	char err[512];
	json_t *r = vmms_call(req, err, sizeof(err));
	if (!r) {
		cli_fail(a, "%s", err);
		return NULL;
	}
	if (!json_is_true(json_object_get(r, "ok"))) {
		const char *e = json_string_value(json_object_get(r, "error"));
		cli_fail(a, "%s", e ? e : "vmms refused the request");
		json_decref(r);
		return NULL;
	}
	return r;
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static const char *vm_name_arg(const struct args *a)
{
	const char *n = arg_str(a, "VMName");
	return n ? n : arg_str(a, "Name");
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); json_decref(req); return NULL; } while (0)

json_t *vm_cmdlet_request(const struct args *a, char *err, size_t errlen)
{
	const char *c = a->cmdlet->name;
	json_t *req = json_object();
	const char *name = vm_name_arg(a);
	long v;
	if (name)
		json_object_set_new(req, "vm", json_string(name));
	if (!strcasecmp(c, "New-VM")) {
		json_object_set_new(req, "op", json_string("new"));
		json_object_del(req, "vm");
		json_object_set_new(req, "name", json_string(name));
		if (arg_has(a, "Generation")) {
			if (!parse_int(arg_str(a, "Generation"), 1, 2, &v))
				FAIL("-Generation must be 1 or 2");
			json_object_set_new(req, "generation", json_integer(v));
		}
		if (arg_has(a, "ProcessorCount")) {
			if (!parse_int(arg_str(a, "ProcessorCount"), 1, 64, &v))
				FAIL("-ProcessorCount must be a number from 1 to 64");
			json_object_set_new(req, "cpus", json_integer(v));
		}
		if (arg_has(a, "MemoryStartupBytes"))
			json_object_set_new(req, "memory", json_integer((json_int_t)arg_size(a, "MemoryStartupBytes")));
		if (arg_has(a, "VHDPath") && arg_has(a, "NewVHDPath"))
			FAIL("give -VHDPath or -NewVHDPath, not both");
		if (arg_has(a, "NewVHDPath") != arg_has(a, "NewVHDSizeBytes"))
			FAIL("-NewVHDPath and -NewVHDSizeBytes go together");
		if (arg_has(a, "VHDPath")) {
			char *abs = cli_host_path(arg_str(a, "VHDPath"));
			if (!abs)
				FAIL("the virtual hard disk '%s' does not exist", arg_str(a, "VHDPath"));
			json_object_set_new(req, "vhd_path", json_string(abs));
			free(abs);
		}
		if (arg_has(a, "NewVHDPath")) {
			const char *p = arg_str(a, "NewVHDPath");
			if (!*p)
				FAIL("-NewVHDPath is empty");
			json_object_set_new(req, "new_vhd_path", json_string(p));
			json_object_set_new(req, "new_vhd_size", json_integer((json_int_t)arg_size(a, "NewVHDSizeBytes")));
		}
		if (arg_has(a, "Path")) {
			char *abs = cli_host_path(arg_str(a, "Path"));
			if (!abs)
				FAIL("-Path '%s' does not exist", arg_str(a, "Path"));
			json_object_set_new(req, "path", json_string(abs));
			free(abs);
		}
	} else if (!strcasecmp(c, "Get-VM")) {
		json_object_set_new(req, "op", json_string("list"));
		json_object_del(req, "vm");
		if (name)
			json_object_set_new(req, "name", json_string(name));
	} else if (!strcasecmp(c, "Set-VM")) {
		json_object_set_new(req, "op", json_string("set"));
		int changes = 0;
		if (arg_has(a, "ProcessorCount")) {
			if (!parse_int(arg_str(a, "ProcessorCount"), 1, 64, &v))
				FAIL("-ProcessorCount must be a number from 1 to 64");
			json_object_set_new(req, "cpus", json_integer(v));
			changes++;
		}
		if (arg_has(a, "MemoryStartupBytes")) {
			json_object_set_new(req, "memory", json_integer((json_int_t)arg_size(a, "MemoryStartupBytes")));
			changes++;
		}
		static const char *const strs[][2] = {
			{ "AutomaticStartAction", "automatic_start_action" },
			{ "AutomaticStopAction", "automatic_stop_action" },
			{ "Notes", "notes" },
			{ "NewVMName", "new_name" },
			{ "CheckpointType", "checkpoint_type" },
		};
		for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
			if (arg_has(a, strs[i][0])) {
				json_object_set_new(req, strs[i][1], json_string(arg_str(a, strs[i][0])));
				changes++;
			}
		const char *sa = arg_str(a, "AutomaticStartAction");
		if (sa && strcasecmp(sa, "Nothing") && strcasecmp(sa, "StartIfRunning") && strcasecmp(sa, "Start"))
			FAIL("-AutomaticStartAction must be Nothing, StartIfRunning or Start");
		const char *so = arg_str(a, "AutomaticStopAction");
		if (so && strcasecmp(so, "TurnOff") && strcasecmp(so, "Save") && strcasecmp(so, "ShutDown"))
			FAIL("-AutomaticStopAction must be TurnOff, Save or ShutDown");
		const char *ct = arg_str(a, "CheckpointType");
		if (ct && strcasecmp(ct, "Standard") && strcasecmp(ct, "Production") && strcasecmp(ct, "ProductionOnly") &&
		    strcasecmp(ct, "Disabled"))
			FAIL("-CheckpointType must be Standard, Production, ProductionOnly or Disabled");
		if (!changes)
			FAIL("nothing to change (see: hv Get-Help Set-VM)");
	} else if (!strcasecmp(c, "Set-VMFirmware")) {
		json_object_set_new(req, "op", json_string("set-firmware"));
		if (!arg_has(a, "KernelPath") && !arg_has(a, "InitrdPath") && !arg_has(a, "KernelCommandLine"))
			FAIL("nothing to change: give -KernelPath, -InitrdPath or -KernelCommandLine");
		const char *files[][2] = { { "KernelPath", "kernel" }, { "InitrdPath", "initrd" } };
		for (int i = 0; i < 2; i++) {
			const char *p = arg_str(a, files[i][0]);
			if (!p)
				continue;
			if (!*p) { /* -KernelPath "": boot from the first disk; -InitrdPath "": no initrd */
				json_object_set_new(req, files[i][1], json_string(""));
				continue;
			}
			char *abs = cli_host_path(p);
			if (!abs)
				FAIL("-%s '%s' does not exist", files[i][0], p);
			json_object_set_new(req, files[i][1], json_string(abs));
			free(abs);
		}
		if (arg_has(a, "KernelCommandLine"))
			json_object_set_new(req, "cmdline", json_string(arg_str(a, "KernelCommandLine")));
	} else if (!strcasecmp(c, "Start-VM")) {
		json_object_set_new(req, "op", json_string("start"));
	} else if (!strcasecmp(c, "Stop-VM")) {
		json_object_set_new(req, "op", json_string("stop"));
		if (arg_has(a, "TurnOff"))
			json_object_set_new(req, "turn_off", json_true());
		if (arg_has(a, "Force"))
			json_object_set_new(req, "force", json_true());
	} else if (!strcasecmp(c, "Restart-VM")) {
		json_object_set_new(req, "op", json_string("stop"));
		json_object_set_new(req, "turn_off", json_true());
	} else if (!strcasecmp(c, "Suspend-VM")) {
		json_object_set_new(req, "op", json_string("pause"));
	} else if (!strcasecmp(c, "Resume-VM")) {
		json_object_set_new(req, "op", json_string("resume"));
	} else if (!strcasecmp(c, "Save-VM")) {
		json_object_set_new(req, "op", json_string("save"));
	} else if (!strcasecmp(c, "Remove-VMSavedState")) {
		json_object_set_new(req, "op", json_string("remove-saved-state"));
	} else if (!strcasecmp(c, "Remove-VM")) {
		json_object_set_new(req, "op", json_string("remove"));
	} else if (!strcasecmp(c, "Get-VMEvent")) {
		json_object_set_new(req, "op", json_string("events"));
	} else if (!strcasecmp(c, "Enable-VMResourceMetering") || !strcasecmp(c, "Disable-VMResourceMetering") ||
		   !strcasecmp(c, "Reset-VMResourceMetering") || !strcasecmp(c, "Measure-VM")) {
		json_object_set_new(req, "op", json_string(!strcasecmp(c, "Measure-VM") ? "measure"
							   : !strcasecmp(c, "Enable-VMResourceMetering") ? "enable-metering"
							   : !strcasecmp(c, "Disable-VMResourceMetering") ? "disable-metering"
							   : "reset-metering"));
	} else if (!strcasecmp(c, "Set-VMProcessor")) {
		json_object_set_new(req, "op", json_string("set-processor"));
		static const char *const keys[][2] = {
			{ "Count", "count" }, { "Maximum", "maximum" }, { "Reserve", "reserve" }, { "RelativeWeight", "relative_weight" },
		};
		bool any = false;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			if (!arg_has(a, keys[k][0]))
				continue;
			if (!parse_int(arg_str(a, keys[k][0]), 0, 10000, &v))
				FAIL("-%s must be a whole number", keys[k][0]);
			json_object_set_new(req, keys[k][1], json_integer(v));
			any = true;
		}
		if (!any)
			FAIL("nothing to change: give -Count, -Maximum, -Reserve or -RelativeWeight");
	} else if (!strcasecmp(c, "Get-VMIntegrationService") || !strcasecmp(c, "Get-VMHardDiskDrive") || !strcasecmp(c, "Connect-VM") ||
		   !strcasecmp(c, "Get-VMProcessor")) {
		json_object_set_new(req, "op", json_string("get"));
	} else if (!strcasecmp(c, "Add-VMHardDiskDrive") || !strcasecmp(c, "Remove-VMHardDiskDrive") ||
		   !strcasecmp(c, "Set-VMHardDiskDrive")) {
		bool add = !strcasecmp(c, "Add-VMHardDiskDrive"), set = !strcasecmp(c, "Set-VMHardDiskDrive");
		json_object_set_new(req, "op", json_string(add ? "add-disk" : set ? "set-disk" : "remove-disk"));
		if (set && !arg_has(a, "MaximumIOPS") && !arg_has(a, "MaximumBandwidth"))
			FAIL("nothing to change: give -MaximumIOPS and/or -MaximumBandwidth");
		if (arg_has(a, "MaximumIOPS")) {
			if (!parse_int(arg_str(a, "MaximumIOPS"), 0, 1000000000, &v))
				FAIL("-MaximumIOPS must be a number from 0 (no limit) to 1000000000");
			json_object_set_new(req, "max_iops", json_integer(v));
		}
		if (arg_has(a, "MaximumBandwidth"))
			json_object_set_new(req, "max_bandwidth", json_integer((json_int_t)arg_size(a, "MaximumBandwidth")));
		const char *type = arg_str(a, "ControllerType");
		if (type && strcasecmp(type, "SCSI"))
			FAIL("-ControllerType %s: only SCSI controllers are supported", type);
		if (type)
			json_object_set_new(req, "controller_type", json_string("SCSI"));
		if (arg_has(a, "ControllerNumber")) {
			if (!parse_int(arg_str(a, "ControllerNumber"), 0, 3, &v))
				FAIL("-ControllerNumber must be a number from 0 to 3");
			json_object_set_new(req, "controller", json_integer(v));
		}
		if (arg_has(a, "ControllerLocation")) {
			if (!parse_int(arg_str(a, "ControllerLocation"), 0, 63, &v))
				FAIL("-ControllerLocation must be a number from 0 to 63");
			json_object_set_new(req, "lun", json_integer(v));
		}
		const char *p = arg_str(a, "Path");
		if (add && !p)
			FAIL("-Path names the disk to add");
		if (!add && !p == !arg_has(a, "ControllerLocation"))
			FAIL("give -ControllerLocation or -Path (one of them)");
		if (p) {
			char *abs = cli_host_path(p);
			if (!abs && add)
				FAIL("the virtual hard disk '%s' does not exist", p);
			json_object_set_new(req, "path", json_string(abs ? abs : p));
			free(abs);
		}
	} else if (!strcasecmp(c, "Enable-VMIntegrationService") || !strcasecmp(c, "Disable-VMIntegrationService")) {
		json_object_set_new(req, "op", json_string("set-ic"));
		json_object_set_new(req, "name", json_string(arg_str(a, "Name")));
		json_object_set_new(req, "enabled", json_boolean(!strcasecmp(c, "Enable-VMIntegrationService")));
	} else if (!strcasecmp(c, "Get-VMHost")) {
		json_object_set_new(req, "op", json_string("host"));
	} else if (!strcasecmp(c, "Set-VMHost")) {
		json_object_set_new(req, "op", json_string("set-host"));
		static const char *const dirs[][2] = { { "VirtualMachinePath", "virtual_machine_path" },
						       { "VirtualHardDiskPath", "virtual_hard_disk_path" } };
		for (int i = 0; i < 2; i++) {
			const char *p = arg_str(a, dirs[i][0]);
			if (!p)
				continue;
			char *abs = cli_host_path(p);
			if (!abs)
				FAIL("-%s '%s' does not exist", dirs[i][0], p);
			json_object_set_new(req, dirs[i][1], json_string(abs));
			free(abs);
		}
		if (!arg_has(a, "VirtualMachinePath") && !arg_has(a, "VirtualHardDiskPath"))
			FAIL("nothing to change: give -VirtualMachinePath or -VirtualHardDiskPath");
	} else {
		FAIL("not a VM cmdlet");
	}
	if (strcasecmp(c, "Get-VM") && strcasecmp(c, "New-VM") && strcasecmp(c, "Get-VMHost") && strcasecmp(c, "Set-VMHost") && !name)
		FAIL("name a virtual machine");
	return req;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls the VM until it reaches `want`; Off or a state in `fail` (NULL-terminated) ends the wait,
 * with the VM's last event as the reason. 0 when it did. */
static int wait_state(const struct args *a, const char *vm, const char *want, const char *const *fail, int timeout_s)
{
	int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
	char last[64] = "";
	do {
		json_t *req = json_pack("{s:s, s:s}", "op", "get", "vm", vm);
		json_t *r = call_ok(a, req);
		json_decref(req);
		if (!r)
			return 1;
		const char *st = json_string_value(json_object_get(json_object_get(r, "vm"), "state"));
		snprintf(last, sizeof(last), "%s", st ? st : "?");
		json_decref(r);
		if (!strcmp(last, want))
			return 0;
		bool failed = !strcmp(last, "Off");
		for (int i = 0; fail && fail[i]; i++)
			failed |= !strcmp(last, fail[i]);
		if (failed) {
			json_t *ev = json_pack("{s:s, s:s}", "op", "events", "vm", vm);
			json_t *er = call_ok(a, ev);
			json_decref(ev);
			json_t *arr = json_object_get(er, "events");
			const char *why = json_string_value(json_object_get(json_array_get(arr, json_array_size(arr) - 1), "message"));
			cli_fail(a, "'%s' is %s: %s", vm, last, why ? why : "the worker exited");
			json_decref(er);
			return 1;
		}
		usleep(50 * 1000);
	} while (now_ms() < deadline);
	return cli_fail(a, "'%s' did not become %s within %d s (it is %s)", vm, want, timeout_s, last);
}

static int timeout_arg(const struct args *a, int dflt)
{
	long v;
	if (arg_has(a, "TimeoutSeconds") && parse_int(arg_str(a, "TimeoutSeconds"), 1, 86400, &v))
		return (int)v;
	return dflt;
}

static void fmt_uptime(json_int_t ms, char *out, size_t len)
{
	long long s = ms / 1000;
	if (s >= 86400)
		snprintf(out, len, "%lld.%02lld:%02lld:%02lld", s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
	else
		snprintf(out, len, "%02lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
}

static void print_vm_table(json_t *vms)
{
	printf("%-20s %-9s %-11s %-17s %-16s %-20s %s\n", "Name", "State", "CPUUsage(%)", "MemoryAssigned(M)", "Uptime", "Status", "Version");
	printf("%-20s %-9s %-11s %-17s %-16s %-20s %s\n", "----", "-----", "-----------", "-----------------", "------", "------", "-------");
	size_t i;
	json_t *v;
	json_array_foreach(vms, i, v) {
		char up[32];
		fmt_uptime(json_integer_value(json_object_get(v, "uptime_ms")), up, sizeof(up));
		printf("%-20s %-9s %-11lld %-17lld %-16s %-20s %s\n", json_string_value(json_object_get(v, "name")),
		       json_string_value(json_object_get(v, "state")), (long long)json_integer_value(json_object_get(v, "cpu_usage")),
		       (long long)(json_integer_value(json_object_get(v, "memory_assigned")) >> 20), up,
		       json_string_value(json_object_get(v, "status")), json_string_value(json_object_get(v, "version")));
	}
}

static volatile sig_atomic_t connect_stop;
static void on_sigint(int sig)
{
	(void)sig;
	connect_stop = 1;
}

static void base64_encode(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = '\0';
}

/* Keyboard bytes to the VM's COM1 through vmms; false (with one line on stderr) when the VM
 * takes no input, so the caller stops sending. A full FIFO is retried for up to a second. */
static bool send_input(const char *name, const unsigned char *buf, size_t n)
{
	for (int tries = 0; n && tries < 50; tries++) {
		char b64[4 * 256 / 3 + 8];
		size_t chunk = n > 255 ? 255 : n;
		base64_encode(buf, chunk, b64);
		json_t *req = json_pack("{s:s, s:s, s:s}", "op", "console-input", "vm", name, "data", b64);
		char err[512];
		json_t *r = vmms_call(req, err, sizeof(err));
		json_decref(req);
		if (!json_is_true(json_object_get(r, "ok"))) {
			const char *e = r ? json_string_value(json_object_get(r, "error")) : err;
			fprintf(stderr, "\r\nhv Connect-VM: input is not forwarded: %s\r\n", e ? e : "refused");
			json_decref(r);
			return false;
		}
		size_t took = (size_t)json_integer_value(json_object_get(r, "accepted"));
		json_decref(r);
		if (took > chunk)
			took = chunk;
		buf += took;
		n -= took;
		if (took < chunk)
			usleep(20 * 1000); /* the guest has not drained the UART yet */
	}
	return true;
}

/* With -ComputerName the console log is the remote host's: the next piece of it from vmmsweb
 * (console-read), written to stdout; its length (0: nothing new or an error). */
static size_t remote_console(const char *name, long long *offset)
{
	json_t *req = json_pack("{s:s, s:s, s:I}", "op", "console-read", "vm", name, "offset", (json_int_t)*offset);
	char err[512];
	json_t *r = vmms_call(req, err, sizeof(err));
	json_decref(req);
	const char *b64 = json_string_value(json_object_get(r, "data"));
	size_t len = b64 ? strlen(b64) : 0, n = 0;
	unsigned char *out = len && len % 4 == 0 ? malloc(len / 4 * 3 + 1) : NULL;
	int k = out ? EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len) : -1;
	if (k > 0) {
		n = (size_t)k - (b64[len - 1] == '=') - (b64[len - 2] == '='); /* the padding decodes as zeros */
		fwrite(out, 1, n, stdout);
		*offset = json_integer_value(json_object_get(r, "offset"));
	}
	free(out);
	json_decref(r);
	return n;
}

/* Connect-VM: the VM's serial console (COM1, <VM folder>/console.log) so far, then followed
 * until the VM is Off. Keyboard input goes to COM1 through vmms: on a terminal in raw mode
 * (Ctrl-] detaches; Ctrl-C goes to the guest), otherwise stdin until its end (Ctrl-C
 * detaches). */
static int connect_vm(const char *name, json_t *v)
{
	const char *dir = json_string_value(json_object_get(v, "path"));
	const char *state = json_string_value(json_object_get(v, "state"));
	char path[4096];
	snprintf(path, sizeof(path), "%s/console.log", dir ? dir : ".");
	bool off = !state || !strcmp(state, "Off");
	if (isatty(2))
		fprintf(stderr, "Connected to %s's serial console (%s)\n", name, off ? "Off" : state);
	struct sigaction sa = { .sa_handler = on_sigint };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	FILE *f = NULL;
	char buf[8192];
	int64_t next_check = 0;
	bool input = !off, tty = input && isatty(0);
	struct termios saved;
	if (tty && tcgetattr(0, &saved) == 0) {
		struct termios raw = saved;
		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR; /* our own messages keep their line breaks */
		tcsetattr(0, TCSANOW, &raw);
		fprintf(stderr, "(Ctrl-] detaches)\r\n");
	} else {
		tty = false;
	}
	long long offset = 0;
	for (;;) {
		size_t n;
		bool got = false;
		if (remote_active()) {
			while ((n = remote_console(name, &offset)) > 0)
				got = true;
		} else {
			if (!f)
				f = fopen(path, "re");
			while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
				fwrite(buf, 1, n, stdout);
				got = true;
			}
			if (f)
				clearerr(f);
		}
		fflush(stdout);
		if (off || connect_stop)
			break;
		if (now_ms() >= next_check) { /* one vmms request a second: is the VM still on? */
			next_check = now_ms() + 1000;
			json_t *req = json_pack("{s:s, s:s}", "op", "get", "vm", name);
			char err[512];
			json_t *g = vmms_call(req, err, sizeof(err));
			json_decref(req);
			const char *st = json_string_value(json_object_get(json_object_get(g, "vm"), "state"));
			off = !g || !st || !strcmp(st, "Off"); /* one more read, then stop */
			json_decref(g);
			if (off)
				continue;
		}
		struct pollfd pfd = { .fd = input ? 0 : -1, .events = POLLIN };
		if (poll(&pfd, 1, got ? 0 : 100) > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
			unsigned char in[256];
			ssize_t k = read(0, in, sizeof(in));
			if (k <= 0) {
				input = false; /* end of input: keep following the output */
				continue;
			}
			unsigned char *esc = tty ? memchr(in, 0x1d, (size_t)k) : NULL; /* Ctrl-] */
			if (esc)
				k = esc - in;
			if (k > 0 && !send_input(name, in, (size_t)k))
				input = false;
			if (esc) {
				connect_stop = 1;
				break;
			}
		}
	}
	if (tty)
		tcsetattr(0, TCSANOW, &saved);
	if (f)
		fclose(f);
	if (isatty(2))
		fprintf(stderr, "\n%s\n", connect_stop ? "Disconnected." : "The virtual machine is Off.");
	return 0;
}

static int run(const struct args *a)
{
	char err[512];
	json_t *req = vm_cmdlet_request(a, err, sizeof(err));
	if (!req)
		return cli_fail(a, "%s", err);
	const char *c = a->cmdlet->name;
	const char *vm = vm_name_arg(a);
	bool json = arg_has(a, "Json");
	json_t *r = call_ok(a, req);
	json_decref(req);
	if (!r)
		return 1;
	int rc = 0;
	if (!strcasecmp(c, "Get-VM")) {
		json_t *vms = json_object_get(r, "vms");
		if (json)
			cli_print_json(vms);
		else
			print_vm_table(vms);
	} else if (!strcasecmp(c, "New-VM") || !strcasecmp(c, "Set-VM") || !strcasecmp(c, "Set-VMFirmware")) {
		json_t *v = json_object_get(r, "vm");
		if (json) {
			cli_print_json(v);
		} else if (strcasecmp(c, "Set-VMFirmware")) {
			json_t *one = json_array();
			json_array_append(one, v);
			print_vm_table(one);
			json_decref(one);
		}
	} else if (!strcasecmp(c, "Start-VM")) {
		static const char *const fail[] = { "Saved", NULL }; /* a restore that failed */
		rc = wait_state(a, vm, "Running", fail, timeout_arg(a, 120));
	} else if (!strcasecmp(c, "Save-VM")) {
		static const char *const fail[] = { "Running", "Paused", NULL }; /* the save failed */
		rc = wait_state(a, vm, "Saved", fail, timeout_arg(a, 600));
	} else if (!strcasecmp(c, "Stop-VM")) {
		rc = wait_state(a, vm, "Off", NULL, timeout_arg(a, arg_has(a, "TurnOff") ? 30 : 180));
		if (rc == 0 && !json_is_true(json_object_get(r, "ok")))
			rc = 1;
	} else if (!strcasecmp(c, "Restart-VM")) {
		rc = wait_state(a, vm, "Off", NULL, 30);
		if (rc == 0) {
			json_t *st = json_pack("{s:s, s:s}", "op", "start", "vm", vm);
			json_t *sr = call_ok(a, st);
			json_decref(st);
			rc = sr ? wait_state(a, vm, "Running", NULL, timeout_arg(a, 120)) : 1;
			json_decref(sr);
		}
	} else if (!strcasecmp(c, "Get-VMEvent")) {
		json_t *ev = json_object_get(r, "events");
		if (json) {
			cli_print_json(ev);
		} else {
			size_t i;
			json_t *e;
			printf("%-23s %-11s %s\n", "TimeCreated", "Level", "Message");
			json_array_foreach(ev, i, e) {
				time_t t = (time_t)(json_integer_value(json_object_get(e, "time_ms")) / 1000);
				char when[32];
				strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
				printf("%-23s %-11s %s\n", when, json_string_value(json_object_get(e, "level")),
				       json_string_value(json_object_get(e, "message")));
			}
		}
	} else if (!strcasecmp(c, "Measure-VM")) {
		json_t *u = json_object_get(r, "usage");
#define MB(k) ((json_int_t)(json_integer_value(json_object_get(u, k)) >> 20))
		json_t *o = json_pack("{s:O, s:I, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:I, s:I, s:I, s:I}", "VMName",
				      json_object_get(u, "vm"), "MeteringDuration",
				      (json_int_t)(json_integer_value(json_object_get(u, "duration_ms")) / 1000), "AvgCPU",
				      json_object_get(u, "avg_cpu_mhz"), "AvgCPUPercent", json_object_get(u, "avg_cpu_percent"),
				      "AvgRAM", json_object_get(u, "avg_ram_mb"), "MaxRAM", json_object_get(u, "max_ram_mb"),
				      "MinRAM", json_object_get(u, "min_ram_mb"), "TotalDisk", json_object_get(u, "total_disk_mb"),
				      "AggregatedAverageNormalizedIOPS", json_object_get(u, "avg_normalized_iops"),
				      "AggregatedDiskDataRead", MB("disk_read_bytes"), "AggregatedDiskDataWritten", MB("disk_written_bytes"),
				      "NetworkInbound", MB("network_in_bytes"), "NetworkOutbound", MB("network_out_bytes"));
#undef MB
		if (json) {
			cli_print_json(o);
		} else {
			static const char *const cols[] = { "VMName", "AvgCPU(MHz)", "AvgRAM(M)", "MaxRAM(M)", "MinRAM(M)", "TotalDisk(M)",
							    "NetworkInbound(M)", "NetworkOutbound(M)" };
			static const char *const keys[] = { "VMName", "AvgCPU", "AvgRAM", "MaxRAM", "MinRAM", "TotalDisk",
							    "NetworkInbound", "NetworkOutbound" };
			for (size_t k = 0; k < 8; k++)
				printf(k ? " %-*s" : "%-*s", k ? (int)strlen(cols[k]) : 20, cols[k]);
			printf("\n");
			for (size_t k = 0; k < 8; k++) {
				json_t *v = json_object_get(o, keys[k]);
				if (k)
					printf(" %-*lld", (int)strlen(cols[k]), (long long)json_integer_value(v));
				else
					printf("%-20s", json_string_value(v));
			}
			printf("\n");
		}
		json_decref(o);
	} else if (!strcasecmp(c, "Get-VMProcessor") || !strcasecmp(c, "Set-VMProcessor")) {
		json_t *v = json_object_get(r, "vm");
		json_t *p = json_is_object(v) ? json_object_get(v, "processor") : json_object_get(r, "processor");
		const char *name = json_is_object(v) ? json_string_value(json_object_get(v, "name")) : json_string_value(v);
		json_t *o = json_pack("{s:s, s:O, s:O, s:O, s:O}", "VMName", name ? name : "", "Count", json_object_get(p, "count"),
				      "Maximum", json_object_get(p, "maximum"), "Reserve", json_object_get(p, "reserve"),
				      "RelativeWeight", json_object_get(p, "relative_weight"));
		if (json) {
			cli_print_json(o);
		} else if (!strcasecmp(c, "Get-VMProcessor")) { /* Set-VMProcessor: quiet, as Hyper-V without -Passthru */
			printf("%-20s %-5s %-7s %-7s %s\n", "VMName", "Count", "Maximum", "Reserve", "RelativeWeight");
			printf("%-20s %-5s %-7s %-7s %s\n", "------", "-----", "-------", "-------", "--------------");
			printf("%-20s %-5lld %-7lld %-7lld %lld\n", name ? name : "", (long long)json_integer_value(json_object_get(p, "count")),
			       (long long)json_integer_value(json_object_get(p, "maximum")),
			       (long long)json_integer_value(json_object_get(p, "reserve")),
			       (long long)json_integer_value(json_object_get(p, "relative_weight")));
		}
		json_decref(o);
	} else if (!strcasecmp(c, "Get-VMIntegrationService")) {
		json_t *v = json_object_get(r, "vm");
		json_t *ics = json_object_get(v, "integration_services");
		json_t *enabled = json_object_get(v, "integration_services_enabled");
		static const char *const names[][2] = {
			{ "Heartbeat", "Heartbeat" }, { "Shutdown", "Shutdown" },
			{ "TimeSynchronization", "Time Synchronization" },
			{ "KeyValuePairExchange", "Key-Value Pair Exchange" },
			{ "VSS", "VSS" }, { "GuestServiceInterface", "Guest Service Interface" },
		};
		json_t *out = json_array();
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			const char *st = json_string_value(json_object_get(ics, names[i][0]));
			bool on = !json_is_false(json_object_get(enabled, names[i][0]));
			const char *desc = !st || !on || !strcmp(st, "disabled") ? "" : !strcmp(st, "ready") ? "OK" : "No Contact";
			json_array_append_new(out, json_pack("{s:s, s:s, s:b, s:s, s:s}", "VMName", json_string_value(json_object_get(v, "name")),
							     "Name", names[i][1], "Enabled", on, "PrimaryStatusDescription", desc,
							     "State", st ? st : ""));
		}
		if (json) {
			cli_print_json(out);
		} else {
			printf("%-20s %-32s %-8s %s\n", "VMName", "Name", "Enabled", "PrimaryStatusDescription");
			size_t i;
			json_t *e;
			json_array_foreach(out, i, e)
				printf("%-20s %-32s %-8s %s\n", json_string_value(json_object_get(e, "VMName")),
				       json_string_value(json_object_get(e, "Name")),
				       json_is_true(json_object_get(e, "Enabled")) ? "True" : "False",
				       json_string_value(json_object_get(e, "PrimaryStatusDescription")));
		}
		json_decref(out);
	} else if (!strcasecmp(c, "Get-VMHardDiskDrive") || !strcasecmp(c, "Add-VMHardDiskDrive") ||
		   !strcasecmp(c, "Remove-VMHardDiskDrive") || !strcasecmp(c, "Set-VMHardDiskDrive")) {
		json_t *out = json_array();
		json_t *v = json_object_get(r, "vm"), *one = json_object_get(r, "disk");
		json_t *disks = one ? json_pack("[O]", one) : json_incref(json_object_get(v, "disks"));
		const char *vm_name = one ? json_string_value(json_object_get(one, "vm")) : json_string_value(json_object_get(v, "name"));
		size_t i;
		json_t *d;
		json_array_foreach(disks, i, d)
			json_array_append_new(out, json_pack("{s:s, s:s, s:O, s:O, s:O, s:I, s:I}", "VMName", vm_name,
							     "ControllerType", "SCSI", "ControllerNumber", json_object_get(d, "controller"),
							     "ControllerLocation", json_object_get(d, "lun"), "Path", json_object_get(d, "path"),
							     "MaximumIOPS", json_integer_value(json_object_get(d, "max_iops")),
							     "MaximumBandwidth", json_integer_value(json_object_get(d, "max_bandwidth"))));
		json_decref(disks);
		if (json) {
			cli_print_json(out);
		} else if (strcasecmp(c, "Remove-VMHardDiskDrive") && strcasecmp(c, "Set-VMHardDiskDrive")) {
			printf("%-20s %-14s %-16s %-18s %s\n", "VMName", "ControllerType", "ControllerNumber", "ControllerLocation", "Path");
			printf("%-20s %-14s %-16s %-18s %s\n", "------", "--------------", "----------------", "------------------", "----");
			json_array_foreach(out, i, d)
				printf("%-20s %-14s %-16lld %-18lld %s\n", json_string_value(json_object_get(d, "VMName")), "SCSI",
				       (long long)json_integer_value(json_object_get(d, "ControllerNumber")),
				       (long long)json_integer_value(json_object_get(d, "ControllerLocation")),
				       json_string_value(json_object_get(d, "Path")));
		}
		json_decref(out);
	} else if (!strcasecmp(c, "Get-VMHost") || !strcasecmp(c, "Set-VMHost")) {
		json_t *h = json_object_get(r, "host");
		json_t *out = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "Name", json_object_get(h, "name"),
					"VirtualMachinePath", json_object_get(h, "virtual_machine_path"),
					"VirtualHardDiskPath", json_object_get(h, "virtual_hard_disk_path"),
					"LogicalProcessorCount", json_object_get(h, "logical_processor_count"),
					"MemoryCapacity", json_object_get(h, "memory_capacity"),
					"FullyQualifiedDomainName", json_object_get(h, "name"));
		if (json) {
			cli_print_json(out);
		} else if (!strcasecmp(c, "Get-VMHost")) {
			const char *keys[] = { "Name", "VirtualMachinePath", "VirtualHardDiskPath", "LogicalProcessorCount",
					       "MemoryCapacity", "FullyQualifiedDomainName" };
			for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
				json_t *x = json_object_get(out, keys[i]);
				if (json_is_integer(x))
					printf("%-25s : %lld\n", keys[i], (long long)json_integer_value(x));
				else
					printf("%-25s : %s\n", keys[i], json_string_value(x) ? json_string_value(x) : "");
			}
		}
		json_decref(out);
	} else if (!strcasecmp(c, "Connect-VM")) {
		rc = connect_vm(vm, json_object_get(r, "vm"));
	}
	json_decref(r);
	return rc;
}

static const struct param_spec new_params[] = {
	{ "Name", PARAM_STRING, true, true, "the new VM's name (unique, case-insensitive)" },
	{ "Generation", PARAM_STRING, false, false, "1 or 2 (default 1)" },
	{ "MemoryStartupBytes", PARAM_SIZE, false, false, "startup memory, 32MB-1TB in 2 MB units (512MB)" },
	{ "ProcessorCount", PARAM_STRING, false, false, "virtual processors, 1-64 (1)" },
	{ "VHDPath", PARAM_STRING, false, false, "an existing disk to attach (SCSI 0:0)" },
	{ "NewVHDPath", PARAM_STRING, false, false, "create a dynamic disk (relative: under 'Virtual Hard Disks')" },
	{ "NewVHDSizeBytes", PARAM_SIZE, false, false, "size of -NewVHDPath" },
	{ "Path", PARAM_STRING, false, false, "folder for the VM's files (default: vmms's root)" },
	{ "Json", PARAM_SWITCH, false, false, "print the new VM as JSON" },
	{ 0 },
};
static const struct param_spec get_params[] = {
	{ "Name", PARAM_STRING, false, true, "a name (wildcards * ? []) or GUID; all VMs when absent" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};
static const struct param_spec set_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "ProcessorCount", PARAM_STRING, false, false, "virtual processors, 1-64" },
	{ "MemoryStartupBytes", PARAM_SIZE, false, false, "startup memory" },
	{ "AutomaticStartAction", PARAM_STRING, false, false, "Nothing, StartIfRunning or Start" },
	{ "AutomaticStopAction", PARAM_STRING, false, false, "TurnOff, Save or ShutDown" },
	{ "Notes", PARAM_STRING, false, false, "free text" },
	{ "NewVMName", PARAM_STRING, false, false, "rename the VM" },
	{ "CheckpointType", PARAM_STRING, false, false, "Standard, Production (default), ProductionOnly or Disabled (any state)" },
	{ "Json", PARAM_SWITCH, false, false, "print the VM as JSON" },
	{ 0 },
};
static const struct param_spec fw_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "KernelPath", PARAM_STRING, false, false, "Linux bzImage for direct boot (our extension; \"\": boot from the first disk, docs/boot.md)" },
	{ "InitrdPath", PARAM_STRING, false, false, "initramfs (\"\" for none)" },
	{ "KernelCommandLine", PARAM_STRING, false, false, "kernel command line" },
	{ "Json", PARAM_SWITCH, false, false, "print the VM as JSON" },
	{ 0 },
};
static const struct param_spec start_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "TimeoutSeconds", PARAM_STRING, false, false, "how long to wait for Running (120)" },
	{ 0 },
};
static const struct param_spec save_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID): Running or Paused" },
	{ "TimeoutSeconds", PARAM_STRING, false, false, "how long to wait for Saved (600)" },
	{ 0 },
};
static const struct param_spec remove_saved_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID): Saved" },
	{ 0 },
};
static const struct param_spec stop_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "TurnOff", PARAM_SWITCH, false, false, "power off at once (the guest is not asked; a saved state is discarded)" },
	{ "Force", PARAM_SWITCH, false, false, "shut down even if applications in the guest object" },
	{ "TimeoutSeconds", PARAM_STRING, false, false, "how long to wait for Off (180; 30 with -TurnOff)" },
	{ 0 },
};
static const struct param_spec restart_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "Force", PARAM_SWITCH, false, false, "no confirmation (restart is always a reset)" },
	{ "TimeoutSeconds", PARAM_STRING, false, false, "how long to wait for Running (120)" },
	{ 0 },
};
static const struct param_spec remove_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID); its disks are kept" },
	{ "Force", PARAM_SWITCH, false, false, "no confirmation" },
	{ 0 },
};
static const struct param_spec name_params[] = {
	{ "Name", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ 0 },
};
static const struct param_spec vmname_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};

static const struct param_spec add_disk_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); it must be Off" },
	{ "Path", PARAM_STRING, true, false, "the VHD, VHDX or raw disk to attach" },
	{ "ControllerType", PARAM_STRING, false, false, "SCSI (the only kind)" },
	{ "ControllerNumber", PARAM_STRING, false, false, "0 (one SCSI controller)" },
	{ "ControllerLocation", PARAM_STRING, false, false, "the LUN, 0-63 (default: the next free one)" },
	{ "Json", PARAM_SWITCH, false, false, "print the drive as JSON" },
	{ 0 },
};
static const struct param_spec remove_disk_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); it must be Off" },
	{ "ControllerLocation", PARAM_STRING, false, false, "the drive's LUN" },
	{ "Path", PARAM_STRING, false, false, "or the drive's disk file (which is kept)" },
	{ "ControllerType", PARAM_STRING, false, false, "SCSI" },
	{ "ControllerNumber", PARAM_STRING, false, false, "0" },
	{ "Json", PARAM_SWITCH, false, false, "print the removed drive as JSON" },
	{ 0 },
};
static const struct param_spec set_disk_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID); Off, Saved, Running or Paused" },
	{ "ControllerLocation", PARAM_STRING, false, false, "the drive's LUN" },
	{ "Path", PARAM_STRING, false, false, "or the drive's disk file" },
	{ "ControllerType", PARAM_STRING, false, false, "SCSI" },
	{ "ControllerNumber", PARAM_STRING, false, false, "0" },
	{ "MaximumIOPS", PARAM_STRING, false, false, "at most this many I/O operations per second, normalized to 8 KiB (0: no limit)" },
	{ "MaximumBandwidth", PARAM_SIZE, false, false, "at most this many bytes per second: 100MB ... (0: no limit)" },
	{ "Json", PARAM_SWITCH, false, false, "print the drive as JSON" },
	{ 0 },
};
static const struct param_spec set_processor_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "Count", PARAM_STRING, false, false, "virtual processors, 1-64 (VM Off)" },
	{ "Maximum", PARAM_STRING, false, false, "at most this percent of its processors' time, 1-100 (default 100)" },
	{ "Reserve", PARAM_STRING, false, false, "percent held for it, 0-100: it starts only if the host has that much left" },
	{ "RelativeWeight", PARAM_STRING, false, false, "its share against other VMs when the host is busy, 1-10000 (default 100)" },
	{ "Json", PARAM_SWITCH, false, false, "print the settings as JSON" },
	{ 0 },
};
static const struct param_spec ic_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ "Name", PARAM_STRING, true, false, "Heartbeat, Shutdown, \"Time Synchronization\", \"Key-Value Pair Exchange\", VSS or \"Guest Service Interface\"" },
	{ 0 },
};
static const struct param_spec host_params[] = {
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};
static const struct param_spec set_host_params[] = {
	{ "VirtualMachinePath", PARAM_STRING, false, false, "default folder for new VMs (New-VM without -Path)" },
	{ "VirtualHardDiskPath", PARAM_STRING, false, false, "default folder for New-VM -NewVHDPath relative paths" },
	{ "Json", PARAM_SWITCH, false, false, "print the host as JSON" },
	{ 0 },
};
static const struct param_spec connect_params[] = {
	{ "VMName", PARAM_STRING, true, true, "the VM (name or GUID)" },
	{ 0 },
};

const struct cmdlet cmdlet_add_vmharddiskdrive = { "Add-VMHardDiskDrive", "attach a disk to a VM's SCSI controller (VM Off)", add_disk_params, run };
const struct cmdlet cmdlet_get_vmharddiskdrive = { "Get-VMHardDiskDrive", "a VM's hard disk drives", vmname_params, run };
const struct cmdlet cmdlet_set_vmharddiskdrive = { "Set-VMHardDiskDrive", "a drive's storage QoS: -MaximumIOPS, -MaximumBandwidth (live on a running VM)", set_disk_params, run };
const struct cmdlet cmdlet_remove_vmharddiskdrive = { "Remove-VMHardDiskDrive", "detach a disk from a VM (the file is kept)", remove_disk_params, run };
const struct cmdlet cmdlet_enable_vmintegrationservice = { "Enable-VMIntegrationService", "offer an integration service to the guest (next start)", ic_params, run };
const struct cmdlet cmdlet_disable_vmintegrationservice = { "Disable-VMIntegrationService", "stop offering an integration service (next start)", ic_params, run };
const struct cmdlet cmdlet_get_vmhost = { "Get-VMHost", "the host: default folders, processors, memory", host_params, run };
const struct cmdlet cmdlet_set_vmhost = { "Set-VMHost", "set the default folders for VMs and virtual hard disks", set_host_params, run };
const struct cmdlet cmdlet_connect_vm = { "Connect-VM", "the serial console of a VM: output followed, keys forwarded (Ctrl-] detaches)", connect_params, run };
const struct cmdlet cmdlet_new_vm = { "New-VM", "create a virtual machine", new_params, run };
const struct cmdlet cmdlet_get_vm = { "Get-VM", "list virtual machines: state, CPU, memory, uptime", get_params, run };
const struct cmdlet cmdlet_set_vm = { "Set-VM", "change a VM's processors, memory, actions, notes (when Off)", set_params, run };
const struct cmdlet cmdlet_set_vmfirmware = { "Set-VMFirmware", "set a VM's kernel, initrd and command line for direct boot", fw_params, run };
const struct cmdlet cmdlet_start_vm = { "Start-VM", "start a virtual machine (a Saved one is restored)", start_params, run };
const struct cmdlet cmdlet_stop_vm = { "Stop-VM", "shut a VM down (graceful; -TurnOff powers off)", stop_params, run };
const struct cmdlet cmdlet_restart_vm = { "Restart-VM", "reset a running VM (turn off, start)", restart_params, run };
const struct cmdlet cmdlet_suspend_vm = { "Suspend-VM", "pause a running VM (its vCPUs stop)", name_params, run };
const struct cmdlet cmdlet_resume_vm = { "Resume-VM", "resume a paused VM", name_params, run };
const struct cmdlet cmdlet_save_vm = { "Save-VM", "save a VM's state to disk and turn it off (Start-VM restores it)", save_params, run };
const struct cmdlet cmdlet_remove_vmsavedstate = { "Remove-VMSavedState", "discard a Saved VM's state: it is Off", remove_saved_params, run };
const struct cmdlet cmdlet_remove_vm = { "Remove-VM", "delete a VM's configuration (not its disks)", remove_params, run };
const struct cmdlet cmdlet_get_vmevent = { "Get-VMEvent", "a VM's event log", vmname_params, run };
const struct cmdlet cmdlet_enable_vmresourcemetering = { "Enable-VMResourceMetering", "count what a VM uses from now on (Measure-VM)", vmname_params, run };
const struct cmdlet cmdlet_disable_vmresourcemetering = { "Disable-VMResourceMetering", "stop counting a VM's use (the counts go)", vmname_params, run };
const struct cmdlet cmdlet_reset_vmresourcemetering = { "Reset-VMResourceMetering", "count a VM's use afresh from now", vmname_params, run };
const struct cmdlet cmdlet_measure_vm = { "Measure-VM", "a VM's use since metering was enabled: processor, memory, disk, network", vmname_params, run };
const struct cmdlet cmdlet_get_vmprocessor = { "Get-VMProcessor", "a VM's processors: count, maximum, reserve, relative weight", vmname_params, run };
const struct cmdlet cmdlet_set_vmprocessor = { "Set-VMProcessor", "a VM's processor count (Off) and limits: -Maximum, -Reserve, -RelativeWeight (live)", set_processor_params, run };
const struct cmdlet cmdlet_get_vmintegrationservice = { "Get-VMIntegrationService", "a VM's integration services: enabled, status", vmname_params, run };
