/* Virtual switches and the VMs' network adapters (docs/vmms.md): New-/Get-/Remove-VMSwitch run
 * one vmswitch process per switch (its own session, like a worker, so it outlives vmms; vmms
 * re-attaches to it and restarts it when it dies); the *-VMNetworkAdapter* requests keep the
 * adapters in the inventory and re-plug the running worker's adapters (nic-connect,
 * nic-disconnect). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define SWITCH_READY_MS 5000    /* New-VMSwitch waits this long for the control socket */
#define RESTART_MIN_MS 500      /* a switch that died is restarted after this, doubling ... */
#define RESTART_MAX_MS 30000    /* ... up to this */
#define STABLE_MS 60000         /* a switch that ran this long starts its back-off over */
#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

static const char *const switch_types[] = { "Private", "Internal", "External", NULL };

/* <root>/Virtual Switches/<id>[/file] */
static bool switch_file(const struct vmms *s, const char *id, const char *file, char *out, size_t len)
{
	size_t need = strlen(s->root) + strlen("/Virtual Switches/") + strlen(id) + (file ? 1 + strlen(file) : 0);
	if (need >= len) {
		*out = '\0';
		return false;
	}
	strcpy(out, s->root);
	strcat(out, "/Virtual Switches/");
	strcat(out, id);
	if (file) {
		strcat(out, "/");
		strcat(out, file);
	}
	return true;
}

/* strlcpy: src cut to fit */
static void copy_str(char *dst, size_t len, const char *src)
{
	size_t n = strnlen(src, len - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- validation (pure) ---- */

bool vmms_parse_mac(const char *in, char out[13])
{
	size_t len = in ? strlen(in) : 0, k = 0;
	char sep = len == 17 ? in[2] : 0;
	if ((len != 12 && len != 17) || (len == 17 && sep != ':' && sep != '-'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (sep && i % 3 == 2) {
			if (in[i] != sep)
				return false;
		} else if (isxdigit((unsigned char)in[i])) {
			out[k++] = (char)toupper((unsigned char)in[i]);
		} else {
			return false;
		}
	}
	out[12] = '\0';
	unsigned low = isdigit((unsigned char)out[1]) ? (unsigned)(out[1] - '0') : (unsigned)(out[1] - 'A' + 10);
	return !(low & 1) && strcmp(out, "000000000000") != 0; /* unicast, not zero */
}

/* "00155D0A0B0C" -> "00:15:5d:0a:0b:0c" (the worker's form) */
static void mac_colons(const char *mac, char out[18])
{
	for (int i = 0; i < 6; i++) {
		out[3 * i] = (char)tolower((unsigned char)mac[2 * i]);
		out[3 * i + 1] = (char)tolower((unsigned char)mac[2 * i + 1]);
		out[3 * i + 2] = i < 5 ? ':' : '\0';
	}
}

void vmms_host_adapter_name(const char *switch_name, int n, char out[16])
{
	char base[16];
	snprintf(base, sizeof(base), "vs-%s", switch_name);
	for (char *p = base; *p; p++) /* an interface name holds no '/', ':' or white space */
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '/' || *p == ':')
			*p = '-';
	if (n <= 1) {
		memcpy(out, base, sizeof(base));
		return;
	}
	char suffix[8];
	snprintf(suffix, sizeof(suffix), "-%d", n % 1000);
	size_t keep = 15 - strlen(suffix), blen = strlen(base);
	if (blen > keep)
		blen = keep;
	memcpy(out, base, blen);
	memcpy(out + blen, suffix, strlen(suffix) + 1);
}

static const char *switch_type(const char *t)
{
	for (int i = 0; t && switch_types[i]; i++)
		if (!strcasecmp(t, switch_types[i]))
			return switch_types[i];
	return NULL;
}

/* ---- switch processes ---- */

static struct vmms_switch *sw_of(struct vmms *s, const char *id)
{
	for (int i = 0; i < s->nswitches; i++)
		if (!strcmp(s->switches[i].id, id))
			return &s->switches[i];
	return NULL;
}

static struct vmms_switch *sw_add(struct vmms *s, const char *id)
{
	if (s->nswitches == VMMS_MAX_SWITCHES)
		return NULL;
	struct vmms_switch *e = &s->switches[s->nswitches++];
	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->pidfd = -1;
	return e;
}

static void sw_forget(struct vmms_switch *e)
{
	if (e->pidfd >= 0)
		close(e->pidfd);
	e->pidfd = -1;
	e->pid = 0;
	e->ready = false;
}

static void sw_drop(struct vmms *s, struct vmms_switch *e)
{
	sw_forget(e);
	*e = s->switches[--s->nswitches];
}

static int64_t backoff_ms(unsigned failures)
{
	int64_t d = RESTART_MIN_MS;
	for (unsigned i = 1; i < failures && d < RESTART_MAX_MS; i++)
		d *= 2;
	return d > RESTART_MAX_MS ? RESTART_MAX_MS : d;
}

static json_t *sw_call(struct vmms *s, const char *id, const char *line, int timeout_ms)
{
	char ctl[PATH_MAX];
	if (!switch_file(s, id, "control.sock", ctl, sizeof(ctl)))
		return NULL;
	return worker_call(ctl, line, timeout_ms);
}

/* Starts vmswitch for sw: --name, --type, its sockets and log in the switch's folder. */
static bool sw_spawn(struct vmms *s, const struct inv_switch *sw, struct vmms_switch *e, char *err, size_t errlen)
{
	char dir[PATH_MAX], port[PATH_MAX], ctl[PATH_MAX], log[PATH_MAX];
	if (!switch_file(s, sw->id, NULL, dir, sizeof(dir)) || !switch_file(s, sw->id, "port.sock", port, sizeof(port)) ||
	    !switch_file(s, sw->id, "control.sock", ctl, sizeof(ctl)) ||
	    !switch_file(s, sw->id, "vmswitch.log", log, sizeof(log)) || strlen(ctl) >= SUN_PATH_MAX) {
		snprintf(err, errlen, "the switch's socket path %s is too long for a Unix socket (%zu bytes at most: use a shorter --root)",
			 ctl, SUN_PATH_MAX - 1);
		return false;
	}
	if (access(s->vmswitch, X_OK) < 0) {
		snprintf(err, errlen, "cannot run %s: %s", s->vmswitch, strerror(errno));
		return false;
	}
	if (mkdir_p(dir) < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return false;
	}
	const char *argv[16];
	int n = 0;
	argv[n++] = s->vmswitch;
	argv[n++] = "--name";
	argv[n++] = sw->name;
	argv[n++] = "--type";
	argv[n++] = sw->type;
	argv[n++] = "--socket";
	argv[n++] = port;
	argv[n++] = "--control";
	argv[n++] = ctl;
	if (!strcmp(sw->type, "Internal")) {
		argv[n++] = "--host-nic";
		argv[n++] = sw->host_adapter;
	} else if (!strcmp(sw->type, "External")) {
		argv[n++] = "--uplink";
		argv[n++] = sw->net_adapter;
	}
	argv[n] = NULL;
	int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		snprintf(err, errlen, "%s: %s", log, strerror(errno));
		return false;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(logfd);
		return false;
	}
	if (pid == 0) {
		setsid(); /* its own session: survives vmms, as workers do */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		int nul = open("/dev/null", O_RDONLY);
		dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		execv(argv[0], (char *const *)argv);
		dprintf(2, "vmms: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	sw_forget(e);
	e->pid = pid;
	e->child = true;
	e->start = proc_start(pid);
	e->started_ms = mono_ms();
	e->restart_at_ms = 0;
	e->pidfd = pidfd_open_(pid);
	if (e->pidfd >= 0)
		fcntl(e->pidfd, F_SETFD, FD_CLOEXEC);
	if (inv_switch_set_runtime(s->inv, sw->id, pid, e->start) < 0)
		fprintf(stderr, "vmms: switch %s: %s\n", sw->name, inv_error(s->inv));
	fprintf(stderr, "vmms: switch %s: vmswitch started (pid %d)\n", sw->name, (int)pid);
	return true;
}

/* The process of e is gone: note why (a failure's reason is the last line of its log) and
 * schedule a restart (with back-off). */
static void sw_exited(struct vmms *s, struct vmms_switch *e, const char *how, bool failed)
{
	char log[PATH_MAX], line[160] = "";
	if (failed && switch_file(s, e->id, "vmswitch.log", log, sizeof(log)))
		vmms_log_tail_line(log, line, sizeof(line));
	snprintf(e->last_error, sizeof(e->last_error), "vmswitch (pid %d) %s%s%s", (int)e->pid, how, *line ? ": " : "", line);
	int64_t now = mono_ms();
	if (now - e->started_ms >= STABLE_MS)
		e->failures = 0;
	e->failures++;
	e->restart_at_ms = now + backoff_ms(e->failures);
	sw_forget(e);
	inv_switch_set_runtime(s->inv, e->id, 0, 0);
	struct inv_switch sw;
	fprintf(stderr, "vmms: switch %s: %s; restarting in %lld ms\n", inv_switch_find(s->inv, e->id, &sw) == 1 ? sw.name : e->id,
		e->last_error, (long long)(e->restart_at_ms - now));
}

void vmms_switches_reap(struct vmms *s)
{
	for (int i = 0; i < s->nswitches; i++) {
		struct vmms_switch *e = &s->switches[i];
		if (!e->pid)
			continue;
		char how[96];
		if (e->child) {
			int st = 0;
			pid_t r = waitpid(e->pid, &st, WNOHANG);
			if (r == e->pid) {
				if (WIFEXITED(st))
					snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(st));
				else
					snprintf(how, sizeof(how), "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
				sw_exited(s, e, how, WIFEXITED(st) && WEXITSTATUS(st) != 0);
			} else if (r < 0 && errno == ECHILD) {
				sw_exited(s, e, "exited", false);
			}
		} else if (kill(e->pid, 0) < 0 || proc_is_zombie(e->pid) || proc_start(e->pid) != e->start) {
			sw_exited(s, e, "exited (vmms was not its parent: no exit status)", false);
		}
	}
}

static bool sw_answers(struct vmms *s, const char *id, int timeout_ms)
{
	json_t *r = sw_call(s, id, "{\"op\":\"status\"}", timeout_ms);
	bool ok = json_is_true(json_object_get(r, "ok"));
	json_decref(r);
	return ok;
}

void vmms_switches_tick(struct vmms *s)
{
	vmms_switches_reap(s);
	int64_t now = mono_ms();
	for (int i = 0; i < s->nswitches; i++) {
		struct vmms_switch *e = &s->switches[i];
		if (e->pid && !e->ready && sw_answers(s, e->id, 300))
			e->ready = true;
		if (e->pid || !e->restart_at_ms || now < e->restart_at_ms)
			continue;
		struct inv_switch sw;
		char err[PATH_MAX + 64];
		if (inv_switch_find(s->inv, e->id, &sw) != 1) {
			e->restart_at_ms = 0;
		} else if (!sw_spawn(s, &sw, e, err, sizeof(err))) {
			copy_str(e->last_error, sizeof(e->last_error), err);
			e->failures++;
			e->restart_at_ms = now + backoff_ms(e->failures);
			fprintf(stderr, "vmms: switch %s: %s\n", sw.name, err);
		}
	}
}

/* Waits (up to SWITCH_READY_MS) for a new switch's control socket; false with the reason if the
 * process exits first or never answers. */
static bool sw_wait_ready(struct vmms *s, struct vmms_switch *e, char *err, size_t errlen)
{
	for (int64_t deadline = mono_ms() + SWITCH_READY_MS; mono_ms() < deadline;) {
		vmms_switches_reap(s);
		if (!e->pid) {
			snprintf(err, errlen, "%s", e->last_error);
			return false;
		}
		if (sw_answers(s, e->id, 500)) {
			e->ready = true;
			return true;
		}
		usleep(20 * 1000);
	}
	snprintf(err, errlen, "vmswitch (pid %d) did not answer within %d s", (int)e->pid, SWITCH_READY_MS / 1000);
	return false;
}

static bool pid_gone(pid_t pid, bool child)
{
	if (child) {
		pid_t r = waitpid(pid, NULL, WNOHANG);
		return r == pid || (r < 0 && errno == ECHILD);
	}
	return kill(pid, 0) < 0 || proc_is_zombie(pid);
}

static void wait_gone(pid_t pid, bool child, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms && !pid_gone(pid, child); waited += 20)
		usleep(20 * 1000);
}

/* Stops a switch's process: {"op":"stop"}, else SIGTERM, else (after 3 s) SIGKILL. */
static void sw_stop(struct vmms *s, const struct vmms_switch *e)
{
	if (!e->pid)
		return;
	json_t *r = sw_call(s, e->id, "{\"op\":\"stop\"}", 1000);
	if (!json_is_true(json_object_get(r, "ok")))
		kill(e->pid, SIGTERM);
	json_decref(r);
	wait_gone(e->pid, e->child, 3000);
	if (!pid_gone(e->pid, e->child)) {
		kill(e->pid, SIGKILL);
		if (e->child)
			waitpid(e->pid, NULL, 0);
		else
			wait_gone(e->pid, false, 2000);
	}
}

void vmms_switches_attach(struct vmms *s, bool host_restarted)
{
	struct inv_switch *sws;
	int n;
	if (inv_switch_list(s->inv, &sws, &n) < 0) {
		fprintf(stderr, "vmms: switches: %s\n", inv_error(s->inv));
		return;
	}
	for (int i = 0; i < n; i++) {
		struct inv_switch *sw = &sws[i];
		struct vmms_switch *e = sw_add(s, sw->id);
		if (!e)
			break;
		pid_t pid = sw->pid;
		bool alive = !host_restarted && pid > 0 && kill(pid, 0) == 0 && !proc_is_zombie(pid) && proc_start(pid) == sw->pid_start;
		bool answers = false;
		for (int tries = 0; alive && !answers && tries < 3; tries++)
			answers = sw_answers(s, sw->id, 1000);
		if (alive && answers) {
			e->pid = pid;
			e->child = false;
			e->start = sw->pid_start;
			e->ready = true;
			e->started_ms = mono_ms();
			e->pidfd = pidfd_open_(pid);
			if (e->pidfd >= 0)
				fcntl(e->pidfd, F_SETFD, FD_CLOEXEC);
			fprintf(stderr, "vmms: switch %s: re-attached to vmswitch (pid %d)\n", sw->name, (int)pid);
			continue;
		}
		if (alive) { /* it cannot be managed; a new one needs its host adapter */
			fprintf(stderr, "vmms: switch %s: vmswitch (pid %d) does not answer; killed\n", sw->name, (int)pid);
			kill(pid, SIGKILL);
			wait_gone(pid, false, 2000);
		}
		char err[PATH_MAX + 64];
		if (!sw_spawn(s, sw, e, err, sizeof(err))) {
			copy_str(e->last_error, sizeof(e->last_error), err);
			e->failures = 1;
			e->restart_at_ms = mono_ms() + backoff_ms(1);
			fprintf(stderr, "vmms: switch %s: %s\n", sw->name, err);
		}
	}
	free(sws);
}

void vmms_switches_fini(struct vmms *s)
{
	for (int i = 0; i < s->nswitches; i++)
		if (s->switches[i].pidfd >= 0)
			close(s->switches[i].pidfd);
	s->nswitches = 0;
}

/* ---- switch requests ---- */

static void remove_switch_files(struct vmms *s, const char *id)
{
	static const char *const files[] = { "port.sock", "control.sock", "vmswitch.log" };
	char p[PATH_MAX];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (switch_file(s, id, files[i], p, sizeof(p)))
			unlink(p);
	if (switch_file(s, id, NULL, p, sizeof(p)))
		rmdir(p);
}

/* "<ifname> (<driver>)" for an External switch's interface, as far as sysfs tells. */
static void interface_description(const char *ifname, char *out, size_t len)
{
	char link[PATH_MAX], target[PATH_MAX];
	snprintf(link, sizeof(link), "/sys/class/net/%s/device/driver", ifname);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		const char *drv = strrchr(target, '/');
		drv = drv ? drv + 1 : target;
		if (strlen(ifname) + strlen(drv) + 4 <= len) {
			strcpy(out, ifname);
			strcat(out, " (");
			strcat(out, drv);
			strcat(out, ")");
			return;
		}
	}
	copy_str(out, len, ifname);
}

static json_t *switch_json(struct vmms *s, const struct inv_switch *sw, const struct inv_nic *nics, int nnics, bool ask)
{
	int adapters = 0;
	for (int i = 0; i < nnics; i++)
		adapters += !strcmp(nics[i].switch_id, sw->id);
	struct vmms_switch *e = sw_of(s, sw->id);
	const char *state = !e ? "Stopped" : e->pid ? (e->ready ? "Running" : "Starting") : e->restart_at_ms ? "Restarting" : "Stopped";
	char desc[PATH_MAX] = "", port[PATH_MAX] = "";
	if (!strcmp(sw->type, "External"))
		interface_description(sw->net_adapter, desc, sizeof(desc));
	switch_file(s, sw->id, "port.sock", port, sizeof(port));
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:I}", "id", sw->id, "name", sw->name,
			      "type", sw->type, "net_adapter", sw->net_adapter, "net_adapter_interface_description", desc,
			      "host_adapter", sw->host_adapter, "notes", sw->notes, "adapters", adapters, "state", state,
			      "socket", port, "created", (json_int_t)sw->created);
	if (e && e->pid)
		json_object_set_new(o, "pid", json_integer(e->pid));
	if (e && e->last_error[0])
		json_object_set_new(o, "last_error", json_string(e->last_error));
	json_t *st = ask && e && e->pid ? sw_call(s, sw->id, "{\"op\":\"status\"}", 1000) : NULL;
	json_t *ports = json_object_get(st, "ports");
	json_int_t sums[5] = { 0 };
	static const char *const keys[] = { "in_packets", "in_bytes", "out_packets", "out_bytes" };
	static const char *const drops[] = { "in_malformed", "in_spoofed", "in_vlan_drops", "out_drops" };
	int connected = 0;
	size_t i;
	json_t *p;
	json_array_foreach(ports, i, p) {
		const char *kind = json_string_value(json_object_get(p, "kind"));
		connected += kind && !strcmp(kind, "adapter");
		for (int k = 0; k < 4; k++) {
			sums[k] += json_integer_value(json_object_get(p, keys[k]));
			sums[4] += json_integer_value(json_object_get(p, drops[k]));
		}
	}
	json_object_set_new(o, "connected_adapters", json_integer(connected));
	json_object_set_new(o, "ports", ports ? json_incref(ports) : json_array());
	for (int k = 0; k < 4; k++)
		json_object_set_new(o, keys[k], json_integer(sums[k]));
	json_object_set_new(o, "dropped", json_integer(sums[4]));
	json_object_set_new(o, "mac_entries", json_integer(json_integer_value(json_object_get(st, "mac_entries"))));
	bool uplink = false;
	json_array_foreach(ports, i, p) {
		const char *kind = json_string_value(json_object_get(p, "kind"));
		uplink |= kind && !strcmp(kind, "uplink");
	}
	if (ask && e && e->pid && !st)
		json_object_set_new(o, "state", json_string("Not responding"));
	else if (st && strcmp(sw->type, "Private") && !uplink) /* the host's adapter or the NIC is gone */
		json_object_set_new(o, "state", json_string("Degraded (no uplink port)"));
	json_decref(st);
	return o;
}

static json_t *find_switch(struct vmms *s, const char *name, struct inv_switch *sw)
{
	if (!name || !*name)
		return err_reply(0, "name a virtual switch (\"switch\")");
	int r = inv_switch_find(s->inv, name, sw);
	if (r < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	if (r == 0)
		return err_reply(0, "Hyper-V was unable to find a virtual switch with name '%s'", name);
	return NULL;
}

static json_t *op_list_switches(struct vmms *s, json_t *req)
{
	const char *pattern = jstr(req, "name");
	struct inv_switch *sws;
	struct inv_nic *nics;
	int n, nn;
	if (inv_switch_list(s->inv, &sws, &n) < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	if (inv_nic_list(s->inv, NULL, &nics, &nn) < 0) {
		free(sws);
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	json_t *arr = json_array();
	for (int i = 0; i < n; i++)
		if (vmms_name_matches(pattern, sws[i].name, sws[i].id))
			json_array_append_new(arr, switch_json(s, &sws[i], nics, nn, true));
	free(sws);
	free(nics);
	if (pattern && !json_array_size(arr) && !vmms_name_is_pattern(pattern)) {
		json_decref(arr);
		return err_reply(0, "Hyper-V was unable to find a virtual switch with name '%s'", pattern);
	}
	return json_pack("{s:b, s:o}", "ok", 1, "switches", arr);
}

static json_t *op_new_switch(struct vmms *s, json_t *req)
{
	const char *name = jstr(req, "name"), *type = jstr(req, "type"), *uplink = jstr(req, "net_adapter");
	const char *notes = jstr(req, "notes");
	if (!vmms_valid_name(name))
		return err_reply(0, "invalid virtual switch name '%s' (1-100 characters, none of / \\ * ? [ ] \")", name ? name : "");
	const char *t = type ? switch_type(type) : uplink ? "External" : NULL;
	if (type && !t)
		return err_reply(0, "-SwitchType must be Private, Internal or External, not '%s'", type);
	if (!t)
		return err_reply(0, "give -SwitchType Private or Internal, or -NetAdapterName for an External switch");
	if (!strcmp(t, "External") && (!uplink || !*uplink))
		return err_reply(0, "an External switch needs -NetAdapterName: the host's network adapter to bind to");
	if (strcmp(t, "External") && uplink)
		return err_reply(0, "-NetAdapterName makes an External switch; it does not go with -SwitchType %s", t);
	if (notes && strlen(notes) >= sizeof(((struct inv_switch *)0)->notes))
		return err_reply(0, "-Notes is too long (at most 1023 bytes)");
	struct inv_switch sw = { 0 }, other;
	int r = inv_switch_find(s->inv, name, &other);
	if (r < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	if (r == 1)
		return err_reply(0, "a virtual switch named '%s' already exists", other.name);
	if (s->nswitches >= VMMS_MAX_SWITCHES)
		return err_reply(0, "this host has %d virtual switches, the most vmms runs", VMMS_MAX_SWITCHES);
	struct inv_switch *all;
	int n;
	if (inv_switch_list(s->inv, &all, &n) < 0)
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	json_t *reply = NULL;
	if (!strcmp(t, "External")) {
		if (strlen(uplink) >= IFNAMSIZ || !if_nametoindex(uplink))
			reply = err_reply(0, "no network adapter named '%s' on this host (-NetAdapterName names an existing interface: ip link show)", uplink);
		else if (!strcmp(uplink, "lo"))
			reply = err_reply(0, "the loopback interface cannot be bound to a virtual switch");
		for (int i = 0; !reply && i < n; i++) {
			if (!strcmp(all[i].net_adapter, uplink))
				reply = err_reply(VMMS_ERR_CONFLICT, "the network adapter '%s' is already bound to the virtual switch '%s' (error 32788: configuration conflict)",
						  uplink, all[i].name);
			else if (!strcmp(all[i].host_adapter, uplink))
				reply = err_reply(VMMS_ERR_CONFLICT, "'%s' is the host adapter of the virtual switch '%s' (error 32788: configuration conflict)",
						  uplink, all[i].name);
		}
		snprintf(sw.net_adapter, sizeof(sw.net_adapter), "%s", uplink);
	} else if (!strcmp(t, "Internal")) {
		/* The host's adapter: "vs-NAME" unless an interface or another switch has it. */
		for (int k = 1; k < 100 && !sw.host_adapter[0]; k++) {
			char cand[16];
			vmms_host_adapter_name(name, k, cand);
			bool taken = if_nametoindex(cand) != 0;
			for (int i = 0; i < n && !taken; i++)
				taken = !strcmp(all[i].host_adapter, cand);
			if (!taken)
				memcpy(sw.host_adapter, cand, sizeof(cand));
		}
		if (!sw.host_adapter[0])
			reply = err_reply(0, "no free name for the host adapter of '%s'", name);
	}
	free(all);
	if (reply)
		return reply;
	new_guid(sw.id);
	snprintf(sw.name, sizeof(sw.name), "%s", name);
	snprintf(sw.type, sizeof(sw.type), "%s", t);
	snprintf(sw.notes, sizeof(sw.notes), "%s", notes ? notes : "");
	char ctl[PATH_MAX];
	if (!switch_file(s, sw.id, "control.sock", ctl, sizeof(ctl)) || strlen(ctl) >= SUN_PATH_MAX)
		return err_reply(0, "the switch's socket path %s is too long for a Unix socket (%zu bytes at most: use a shorter --root)",
				 ctl, SUN_PATH_MAX - 1);
	if (inv_switch_create(s->inv, &sw) < 0)
		return err_reply(0, "%s", inv_error(s->inv));
	struct vmms_switch *e = sw_add(s, sw.id);
	char err[PATH_MAX + 64];
	if (!sw_spawn(s, &sw, e, err, sizeof(err)) || !sw_wait_ready(s, e, err, sizeof(err))) {
		sw_stop(s, e);
		sw_drop(s, e);
		inv_switch_remove(s->inv, sw.id, NULL);
		remove_switch_files(s, sw.id);
		return err_reply(0, "the virtual switch '%s' could not start: %s", name, err);
	}
	inv_switch_find(s->inv, sw.id, &sw);
	return json_pack("{s:b, s:o}", "ok", 1, "switch", switch_json(s, &sw, NULL, 0, true));
}

/* ---- network adapters ---- */

static bool vm_live(struct vmms *s, const struct inv_vm *vm)
{
	return worker_of(s, vm->id) && vm_state_has_worker(vm->status.state);
}

/* One nic-connect / nic-disconnect to the VM's worker; NULL, or why it failed. */
static json_t *worker_nic(struct vmms *s, const struct inv_vm *vm, int index, const char *switch_id, int vlan)
{
	json_t *wreq = json_pack("{s:s, s:i}", "op", switch_id ? "nic-connect" : "nic-disconnect", "nic", index);
	if (switch_id) {
		char port[PATH_MAX];
		switch_file(s, switch_id, "port.sock", port, sizeof(port));
		json_object_set_new(wreq, "switch", json_string(port));
		json_object_set_new(wreq, "vlan", json_integer(vlan));
	}
	char *line = json_dumps(wreq, JSON_COMPACT);
	json_decref(wreq);
	json_t *r = line ? worker_vm_call(vm, line, 3000) : NULL;
	free(line);
	json_t *reply = NULL;
	if (!json_is_true(json_object_get(r, "ok"))) {
		const char *why = r ? json_string_value(json_object_get(r, "error")) : "the worker does not answer";
		reply = err_reply(0, "the worker of '%s' refused to %s its network adapter %d: %s", vm->name,
				  switch_id ? "connect" : "disconnect", index, why ? why : "refused");
	}
	json_decref(r);
	return reply;
}

static void switch_name_of(struct vmms *s, const char *id, char *out, size_t len)
{
	struct inv_switch sw;
	*out = '\0';
	if (*id && inv_switch_find(s->inv, id, &sw) == 1)
		snprintf(out, len, "%s", sw.name);
}

/* One adapter as the API shows it; wnic is the worker's status of it (NULL when not running). */
static json_t *nic_json(struct vmms *s, const struct inv_vm *vm, const struct inv_nic *nic, int index, bool live, json_t *wnic)
{
	char swname[INV_NAME_MAX], colons[18];
	switch_name_of(s, nic->switch_id, swname, sizeof(swname));
	mac_colons(nic->mac, colons);
	json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:b, s:i, s:b}", "vm", vm->name, "vm_id", vm->id, "name", nic->name,
			      "index", index, "mac", nic->mac, "mac_address", colons, "dynamic_mac", !nic->static_mac,
			      "vlan", nic->vlan, "mac_spoofing", nic->mac_spoofing);
	json_object_set_new(o, "switch", *swname ? json_string(swname) : json_null());
	json_object_set_new(o, "switch_id", *nic->switch_id ? json_string(nic->switch_id) : json_null());
	const char *status = "";
	char buf[256];
	if (live && !wnic) {
		status = "Unknown (the worker does not answer)";
	} else if (wnic) {
		bool connected = json_is_true(json_object_get(wnic, "connected"));
		const char *err = json_string_value(json_object_get(wnic, "error"));
		if (connected)
			status = "Ok";
		else if (!*nic->switch_id)
			status = "Disconnected";
		else if (err && *err)
			snprintf(buf, sizeof(buf), "Error: %s", err), status = buf;
		else
			status = "Connecting";
		json_object_set_new(o, "connected", json_boolean(connected));
		json_object_set_new(o, "error", json_string(err ? err : ""));
		static const char *const keys[] = { "link_up", "tx_packets", "tx_bytes", "rx_packets", "rx_bytes",
						    "tx_drops", "rx_drops", "bad_packets" };
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			json_t *v = json_object_get(wnic, keys[k]);
			json_object_set_new(o, keys[k], v ? json_incref(v) : json_integer(0));
		}
	}
	json_object_set_new(o, "status", json_string(status));
	return o;
}

/* The VM's adapters with the worker's view of them. */
static void add_vm_nics(struct vmms *s, const struct inv_vm *vm, const struct inv_nic *nics, int n, const bool *sel, json_t *arr)
{
	bool live = vm_live(s, vm);
	json_t *st = live && n ? worker_vm_call(vm, "{\"op\":\"status\"}", 2000) : NULL;
	json_t *wnics = json_object_get(st, "nics");
	for (int i = 0; i < n; i++)
		if (!sel || sel[i])
			json_array_append_new(arr, nic_json(s, vm, &nics[i], i, live, st ? json_array_get(wnics, (size_t)i) : NULL));
	json_decref(st);
}

static json_t *load_nics(struct vmms *s, json_t *req, struct inv_vm *vm, struct inv_nic **nics, int *n)
{
	json_t *e = find_vm(s, req, vm);
	if (e)
		return e;
	if (inv_nic_list(s->inv, vm->id, nics, n) < 0) {
		inv_vm_free(vm);
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	return NULL;
}

static bool nic_matches(const struct inv_nic *nic, const char *name)
{
	return vmms_name_matches(name, nic->name, NULL);
}

/* The adapters "name" picks (case-insensitive; * ? [] patterns); all when absent. *sel is
 * malloc'd (n flags) on success. */
static json_t *select_nics(const struct inv_vm *vm, const struct inv_nic *nics, int n, const char *name, bool **sel)
{
	int k = 0;
	*sel = calloc((size_t)n + 1, sizeof(bool));
	if (!*sel)
		return err_reply(0, "out of memory");
	for (int i = 0; i < n; i++)
		k += (*sel)[i] = nic_matches(&nics[i], name);
	if (k)
		return NULL;
	free(*sel);
	*sel = NULL;
	if (name)
		return err_reply(0, "'%s' has no network adapter named '%s'", vm->name, name);
	return err_reply(0, "'%s' has no network adapters", vm->name);
}

static json_t *op_list_nics(struct vmms *s, json_t *req)
{
	const char *name = jstr(req, "name"), *vmname = jstr(req, "vm");
	struct inv_vm *vms = NULL, one;
	int nvms = 0;
	if (vmname) {
		json_t *e = find_vm(s, req, &one);
		if (e)
			return e;
		vms = &one;
		nvms = 1;
	} else if (inv_list(s->inv, &vms, &nvms) < 0) {
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	json_t *arr = json_array();
	for (int v = 0; v < nvms; v++) {
		struct inv_nic *nics;
		int n;
		bool *sel = NULL;
		if (inv_nic_list(s->inv, vms[v].id, &nics, &n) == 0 && n > 0 && (sel = calloc((size_t)n, sizeof(bool)))) {
			int k = 0;
			for (int i = 0; i < n; i++)
				k += sel[i] = nic_matches(&nics[i], name);
			if (k)
				add_vm_nics(s, &vms[v], nics, n, sel, arr);
		}
		free(sel);
		free(nics);
		inv_vm_free(&vms[v]);
	}
	if (vms != &one)
		free(vms);
	if (name && !json_array_size(arr) && !vmms_name_is_pattern(name)) {
		json_decref(arr);
		return vmname ? err_reply(0, "'%s' has no network adapter named '%s'", vmname, name)
			      : err_reply(0, "no virtual machine has a network adapter named '%s'", name);
	}
	return json_pack("{s:b, s:o}", "ok", 1, "adapters", arr);
}

/* A dynamic MAC: Hyper-V's OUI 00:15:5D and three random bytes, unused in the inventory. */
bool vmms_new_mac(struct vmms *s, char out[13])
{
	struct inv_nic *all;
	int n;
	if (inv_nic_list(s->inv, NULL, &all, &n) < 0)
		return false;
	bool found = false;
	for (int tries = 0; tries < 64 && !found; tries++) {
		unsigned char b[3];
		char id[37];
		new_guid(id); /* 122 random bits from /dev/urandom */
		b[0] = (unsigned char)strtoul((char[]){ id[0], id[1], 0 }, NULL, 16);
		b[1] = (unsigned char)strtoul((char[]){ id[2], id[3], 0 }, NULL, 16);
		b[2] = (unsigned char)strtoul((char[]){ id[4], id[5], 0 }, NULL, 16);
		snprintf(out, 13, "00155D%02X%02X%02X", b[0], b[1], b[2]);
		found = true;
		for (int i = 0; i < n && found; i++)
			found = strcmp(all[i].mac, out) != 0;
	}
	free(all);
	return found;
}

static json_t *op_add_nic(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	struct inv_nic *nics;
	int n;
	json_t *e = load_nics(s, req, &vm, &nics, &n);
	if (e)
		return e;
	const char *name = jstr(req, "name"), *swname = jstr(req, "switch"), *mac = jstr(req, "static_mac");
	json_t *reply = NULL;
	struct inv_switch sw = { 0 };
	struct inv_nic nic = { 0 };
	if (!name)
		name = "Network Adapter";
	if (!vmms_valid_name(name)) {
		reply = err_reply(0, "invalid network adapter name '%s' (1-100 characters, none of / \\ * ? [ ] \")", name);
	} else if (mac && !vmms_parse_mac(mac, nic.mac)) {
		reply = err_reply(0, "'%s' is not a valid MAC address: 12 hexadecimal digits (00155D0A0B0C, or with : or - "
				  "between the bytes), not multicast, not all zero", mac);
	} else if (!vm_op_allowed(vm.status, VM_OP_MODIFY)) {
		reply = conflict(&vm, "get a network adapter while it is not Off (hot-add is not supported yet)");
	} else if (n >= INV_MAX_NICS) {
		reply = err_reply(0, "'%s' already has %d network adapters, the most a virtual machine can have", vm.name, INV_MAX_NICS);
	} else if (swname) {
		reply = find_switch(s, swname, &sw);
	}
	if (!reply && mac) {
		struct inv_nic *all;
		int na;
		if (inv_nic_list(s->inv, NULL, &all, &na) < 0) {
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		} else {
			for (int i = 0; i < na && !reply; i++)
				if (!strcmp(all[i].mac, nic.mac)) {
					struct inv_vm owner;
					bool known = inv_find(s->inv, all[i].vm_id, &owner) == 1;
					reply = err_reply(0, "the MAC address %s is already used by the network adapter '%s' of '%s'", nic.mac,
							  all[i].name, known ? owner.name : all[i].vm_id);
					if (known)
						inv_vm_free(&owner);
				}
			free(all);
		}
	}
	if (!reply && !mac && !vmms_new_mac(s, nic.mac))
		reply = err_reply(0, "cannot find a free dynamic MAC address: %s", inv_error(s->inv));
	if (!reply) {
		snprintf(nic.vm_id, sizeof(nic.vm_id), "%s", vm.id);
		snprintf(nic.name, sizeof(nic.name), "%s", name);
		snprintf(nic.switch_id, sizeof(nic.switch_id), "%s", sw.id);
		nic.static_mac = mac != NULL;
		for (nic.slot = 0; nic.slot < INV_MAX_NICS; nic.slot++) { /* the lowest free slot */
			bool used = false;
			for (int i = 0; i < n; i++)
				used |= nics[i].slot == nic.slot;
			if (!used)
				break;
		}
		struct inv_nic all[INV_MAX_NICS];
		int k = 0, index = 0;
		for (int i = 0; i < n; i++) /* slot order: the new one where its slot puts it */
			all[k++] = nics[i], index += nics[i].slot < nic.slot;
		memmove(&all[index + 1], &all[index], (size_t)(k - index) * sizeof(all[0]));
		all[index] = nic;
		k++;
		char msg[600];
		snprintf(msg, sizeof(msg), "network adapter '%s' added (MAC %s%s%s%s)", nic.name, nic.mac, *sw.id ? ", connected to '" : ", not connected",
			 sw.name, *sw.id ? "'" : "");
		if (inv_nics_put(s->inv, vm.id, all, k, msg) < 0)
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		else
			reply = json_pack("{s:b, s:o}", "ok", 1, "adapter", nic_json(s, &vm, &nic, index, false, NULL));
	}
	free(nics);
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_remove_nic(struct vmms *s, json_t *req)
{
	struct inv_vm vm;
	struct inv_nic *nics;
	int n;
	json_t *e = load_nics(s, req, &vm, &nics, &n);
	if (e)
		return e;
	const char *name = jstr(req, "name");
	bool *sel = NULL;
	json_t *reply = select_nics(&vm, nics, n, name, &sel);
	if (!reply && !name && n > 1)
		reply = err_reply(0, "'%s' has %d network adapters: name the one to remove with -Name", vm.name, n);
	if (!reply && !vm_op_allowed(vm.status, VM_OP_MODIFY))
		reply = conflict(&vm, "lose a network adapter while it is not Off (hot-remove is not supported yet)");
	if (!reply) {
		json_t *gone = json_array();
		int k = 0;
		char msg[600] = "";
		for (int i = 0; i < n; i++) {
			if (sel[i]) {
				json_array_append_new(gone, nic_json(s, &vm, &nics[i], i, false, NULL));
				snprintf(msg, sizeof(msg), "network adapter '%s' (MAC %s) removed", nics[i].name, nics[i].mac);
			} else {
				nics[k++] = nics[i]; /* the ones kept, in order */
			}
		}
		if (n - k > 1)
			snprintf(msg, sizeof(msg), "%d network adapters named '%s' removed", n - k, name);
		if (inv_nics_put(s->inv, vm.id, nics, k, msg) < 0) {
			json_decref(gone);
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		} else {
			reply = json_pack("{s:b, s:o}", "ok", 1, "adapters", gone);
		}
	}
	free(sel);
	free(nics);
	inv_vm_free(&vm);
	return reply;
}

/* After nic-connect: up to 2 s for the worker to report the adapter connected; its error in
 * warn otherwise. */
static void wait_connected(const struct inv_vm *vm, int index, char *warn, size_t len)
{
	const char *why = "";
	json_t *st = NULL;
	for (int64_t deadline = mono_ms() + 2000; mono_ms() < deadline; usleep(50 * 1000)) {
		json_decref(st);
		st = worker_vm_call(vm, "{\"op\":\"status\"}", 1000);
		json_t *w = json_array_get(json_object_get(st, "nics"), (size_t)index);
		if (json_is_true(json_object_get(w, "connected"))) {
			json_decref(st);
			return;
		}
		why = json_string_value(json_object_get(w, "error"));
		if (why && *why)
			break;
	}
	size_t used = strlen(warn);
	snprintf(warn + used, len - used, "%snetwork adapter %d of '%s' is not connected yet%s%s (the worker keeps trying)",
		 used ? "; " : "", index, vm->name, why && *why ? ": " : "", why && *why ? why : "");
	json_decref(st);
}

enum nic_change { NIC_CONNECT, NIC_DISCONNECT, NIC_VLAN, NIC_SPOOFING };

/* Connect-/Disconnect-VMNetworkAdapter, Set-VMNetworkAdapterVlan, Set-VMNetworkAdapter: the
 * inventory, and a running VM's worker re-plugged where that changes what it does now. */
static json_t *op_change_nic(struct vmms *s, json_t *req, enum nic_change what)
{
	struct inv_vm vm;
	struct inv_nic *nics;
	int n;
	json_t *e = load_nics(s, req, &vm, &nics, &n);
	if (e)
		return e;
	const char *name = jstr(req, "name");
	bool *sel = NULL;
	struct inv_switch sw = { 0 };
	json_int_t vlan = 0;
	json_t *spoof = json_object_get(req, "mac_spoofing");
	json_t *reply = select_nics(&vm, nics, n, name, &sel);
	if (!reply && what == NIC_CONNECT)
		reply = find_switch(s, jstr(req, "switch"), &sw);
	if (!reply && what == NIC_VLAN && (!jint(req, "vlan", &vlan) || vlan < 0 || vlan > 4094))
		reply = err_reply(0, "the VLAN id must be 1 to 4094 (-Access -VlanId N), or 0 for untagged (-Untagged)");
	if (!reply && what == NIC_SPOOFING && !json_is_boolean(spoof))
		reply = err_reply(0, "the request needs \"mac_spoofing\": true or false");
	bool live = vm_live(s, &vm);
	char warn[1024] = "", msg[600] = "";
	int changed = 0;
	for (int i = 0; !reply && i < n; i++) {
		if (!sel[i])
			continue;
		struct inv_nic *c = &nics[i], before = nics[i];
		if (what == NIC_CONNECT) {
			if (live)
				reply = worker_nic(s, &vm, i, sw.id, c->vlan);
			snprintf(c->switch_id, sizeof(c->switch_id), "%s", sw.id);
			snprintf(msg, sizeof(msg), "network adapter '%s' connected to '%s'", c->name, sw.name);
		} else if (what == NIC_DISCONNECT) {
			if (live && *c->switch_id)
				reply = worker_nic(s, &vm, i, NULL, 0);
			c->switch_id[0] = '\0';
			snprintf(msg, sizeof(msg), "network adapter '%s' disconnected", c->name);
		} else if (what == NIC_VLAN) {
			if (live && *c->switch_id && c->vlan != vlan) /* re-plugged into the same switch */
				reply = worker_nic(s, &vm, i, c->switch_id, (int)vlan);
			c->vlan = (int)vlan;
			if (vlan)
				snprintf(msg, sizeof(msg), "network adapter '%s': access VLAN %d", c->name, (int)vlan);
			else
				snprintf(msg, sizeof(msg), "network adapter '%s': untagged (no VLAN)", c->name);
		} else {
			c->mac_spoofing = json_is_true(spoof);
			snprintf(msg, sizeof(msg), "network adapter '%s': MAC address spoofing %s%s", c->name, c->mac_spoofing ? "On" : "Off",
				 live ? " (takes effect at the next start)" : "");
		}
		if (reply) /* the worker refused: this one (and the rest) stay as they were */
			*c = before;
		else
			changed++;
	}
	/* What the worker took is stored, even when a later adapter failed. */
	if (changed && inv_nics_put(s->inv, vm.id, nics, n, changed > 1 ? "network adapters changed" : msg) < 0 && !reply)
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	if (!reply) {
		if (live && (what == NIC_CONNECT || what == NIC_VLAN))
			for (int i = 0; i < n; i++)
				if (sel[i] && *nics[i].switch_id)
					wait_connected(&vm, i, warn, sizeof(warn));
		json_t *arr = json_array();
		add_vm_nics(s, &vm, nics, n, sel, arr);
		reply = json_pack("{s:b, s:o, s:b}", "ok", 1, "adapters", arr, "pending_restart", what == NIC_SPOOFING && live);
		if (*warn)
			json_object_set_new(reply, "warning", json_string(warn));
	}
	free(sel);
	free(nics);
	inv_vm_free(&vm);
	return reply;
}

static json_t *op_remove_switch(struct vmms *s, json_t *req)
{
	struct inv_switch sw;
	json_t *e = find_switch(s, jstr(req, "switch"), &sw);
	if (e)
		return e;
	/* Running VMs' adapters on it are unplugged first. */
	struct inv_vm *vms;
	int nvms;
	json_t *gone = json_array();
	if (inv_list(s->inv, &vms, &nvms) < 0) {
		json_decref(gone);
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	for (int v = 0; v < nvms; v++) {
		struct inv_nic *nics;
		int n;
		if (inv_nic_list(s->inv, vms[v].id, &nics, &n) == 0) {
			for (int i = 0; i < n; i++) {
				if (strcmp(nics[i].switch_id, sw.id))
					continue;
				char label[2 * INV_NAME_MAX + 2];
				snprintf(label, sizeof(label), "%s/%s", vms[v].name, nics[i].name);
				json_array_append_new(gone, json_string(label));
				if (vm_live(s, &vms[v])) {
					json_t *r = worker_nic(s, &vms[v], i, NULL, 0);
					if (r)
						fprintf(stderr, "vmms: Remove-VMSwitch %s: %s\n", sw.name, json_string_value(json_object_get(r, "error")));
					json_decref(r);
				}
			}
			free(nics);
		}
		inv_vm_free(&vms[v]);
	}
	free(vms);
	char msg[INV_NAME_MAX + 96];
	snprintf(msg, sizeof(msg), "virtual switch '%s' removed: its network adapters are not connected now", sw.name);
	if (inv_switch_remove(s->inv, sw.id, msg) < 0) {
		json_decref(gone);
		return err_reply(0, "inventory: %s", inv_error(s->inv));
	}
	struct vmms_switch *ent = sw_of(s, sw.id);
	if (ent) { /* nothing reaps (or restarts) it in between: vmms is single-threaded */
		sw_stop(s, ent);
		sw_drop(s, ent);
	}
	remove_switch_files(s, sw.id);
	fprintf(stderr, "vmms: switch %s removed\n", sw.name);
	return json_pack("{s:b, s:s, s:s, s:o}", "ok", 1, "id", sw.id, "name", sw.name, "disconnected", gone);
}

json_t *vmms_net_request(struct vmms *s, const char *op, json_t *req)
{
	if (!strcmp(op, "new-switch"))
		return op_new_switch(s, req);
	if (!strcmp(op, "list-switches"))
		return op_list_switches(s, req);
	if (!strcmp(op, "remove-switch"))
		return op_remove_switch(s, req);
	if (!strcmp(op, "add-nic"))
		return op_add_nic(s, req);
	if (!strcmp(op, "remove-nic"))
		return op_remove_nic(s, req);
	if (!strcmp(op, "list-nics"))
		return op_list_nics(s, req);
	if (!strcmp(op, "connect-nic"))
		return op_change_nic(s, req, NIC_CONNECT);
	if (!strcmp(op, "disconnect-nic"))
		return op_change_nic(s, req, NIC_DISCONNECT);
	if (!strcmp(op, "set-nic-vlan"))
		return op_change_nic(s, req, NIC_VLAN);
	if (!strcmp(op, "set-nic"))
		return op_change_nic(s, req, NIC_SPOOFING);
	return NULL;
}

/* ---- Start-VM ---- */

int vmms_nic_args(struct vmms *s, const struct inv_vm *vm, char out[][VMMS_NIC_ARG_MAX], char *err, size_t errlen)
{
	struct inv_nic *nics;
	int n;
	if (inv_nic_list(s->inv, vm->id, &nics, &n) < 0) {
		snprintf(err, errlen, "inventory: %s", inv_error(s->inv));
		return -1;
	}
	if (n > INV_MAX_NICS)
		n = INV_MAX_NICS;
	/* The switch port's label: the VM's name as a label can hold it, and the adapter's index. */
	char label[64];
	size_t k = 0;
	for (const char *p = vm->name; *p && k < 56; p++)
		label[k++] = isalnum((unsigned char)*p) || strchr("._:@-", *p) ? *p : '-';
	label[k] = '\0';
	for (int i = 0; i < n; i++) {
		char port[PATH_MAX] = "", mac[18];
		mac_colons(nics[i].mac, mac);
		if (*nics[i].switch_id && (!switch_file(s, nics[i].switch_id, "port.sock", port, sizeof(port)) || strlen(port) >= SUN_PATH_MAX)) {
			snprintf(err, errlen, "the switch socket %s is too long for a Unix socket", port);
			free(nics);
			return -1;
		}
		int len = snprintf(out[i], VMMS_NIC_ARG_MAX, "%s%s%smac=%s,vlan=%d,name=%s/%d%s", *port ? "switch=" : "", port,
				   *port ? "," : "", mac, nics[i].vlan, label, i, nics[i].mac_spoofing ? ",spoofing" : "");
		if (len < 0 || len >= VMMS_NIC_ARG_MAX) {
			snprintf(err, errlen, "network adapter %d: its --nic argument is too long", i);
			free(nics);
			return -1;
		}
	}
	free(nics);
	return n;
}
