/* Resource metering: Enable-/Disable-/Reset-VMResourceMetering and Measure-VM. While metering
 * is on, what a VM's worker uses is added to its inventory row (inventory.h: inv_metering) from
 * samples of the worker's counters (processor time from /proc, the storage and network counters
 * of its status) every 10 s, at Measure-VM and at Reset: each sample counts from the last one of
 * the same worker (its /proc start time), a new worker from zero. What a worker used in its last
 * seconds before it exited, after the last sample, is not counted (10 s at most). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "vmms/inventory.h"

#define METERING_SAMPLE_MS 10000

struct sample {
	struct inv_meter_counters c;
	int64_t uptime_ms, ram_mb;
};

static int64_t jget(json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

/* The worker's counters now; false if it does not answer. */
static bool take_sample(const struct inv_vm *vm, pid_t pid, struct sample *out)
{
	json_t *st = worker_vm_call(vm, "{\"op\":\"status\"}", 2000);
	if (!json_is_true(json_object_get(st, "ok"))) {
		json_decref(st);
		return false;
	}
	json_t *io = json_object_get(st, "storage"), *nics = json_object_get(st, "nics"), *n;
	size_t i;
	*out = (struct sample){ .c = { .at_ms = vmms_unix_ms(),
				       .cpu_ticks = (int64_t)(proc_field(pid, 14) + proc_field(pid, 15)),
				       .read = jget(io, "read_bytes"), .written = jget(io, "write_bytes"),
				       .ops = jget(io, "normalized_ops") },
				.uptime_ms = jget(st, "uptime_ms"),
				.ram_mb = (jget(st, "memory_bytes") ?: (int64_t)vm->memory) >> 20 };
	json_array_foreach(nics, i, n) {
		out->c.in += jget(n, "rx_bytes");   /* backend -> guest */
		out->c.out += jget(n, "tx_bytes");  /* guest -> backend */
	}
	json_decref(st);
	return true;
}

static void set_base(struct inv_metering *m, uint64_t worker, const struct inv_meter_counters *c)
{
	m->base_worker = (int64_t)worker;
	m->base = *c;
}

/* A counter's growth since the base (a counter below it started again: all of it is new). */
static int64_t grown(int64_t now, int64_t base)
{
	return now >= base ? now - base : now;
}

/* Adds what worker (its /proc start time) used since the row's base, up to sample x. */
static void fold(struct inv_metering *m, uint64_t worker, const struct sample *x)
{
	if (m->base_worker != (int64_t)worker) { /* a worker the row has not seen: from its start */
		struct inv_meter_counters zero = { .at_ms = x->c.at_ms - x->uptime_ms };
		if (zero.at_ms < m->since_ms)
			zero.at_ms = m->since_ms;
		set_base(m, worker, &zero);
	}
	long hz = sysconf(_SC_CLK_TCK);
	int64_t dt = x->c.at_ms > m->base.at_ms ? x->c.at_ms - m->base.at_ms : 0;
	m->running_ms += dt;
	m->cpu_ms += hz > 0 ? grown(x->c.cpu_ticks, m->base.cpu_ticks) * 1000 / hz : 0;
	m->ram_mb_ms += x->ram_mb * dt;
	if (!m->ram_min_mb || x->ram_mb < m->ram_min_mb)
		m->ram_min_mb = x->ram_mb;
	if (x->ram_mb > m->ram_max_mb)
		m->ram_max_mb = x->ram_mb;
	m->disk_read += grown(x->c.read, m->base.read);
	m->disk_written += grown(x->c.written, m->base.written);
	m->disk_ops += grown(x->c.ops, m->base.ops);
	m->net_in += grown(x->c.in, m->base.in);
	m->net_out += grown(x->c.out, m->base.out);
	set_base(m, worker, &x->c);
}

/* The VM's worker, if it runs one that answers. */
static struct vmms_worker *running_worker(struct vmms *s, const struct inv_vm *vm)
{
	struct vmms_worker *w = worker_of(s, vm->id);
	return w && !w->starting && vm_state_has_worker(vm->status.state) && vm->status.state != VM_SAVING ? w : NULL;
}

/* Folds a fresh sample of the VM's running worker into m (nothing if none answers). */
static void sample_into(struct vmms *s, const struct inv_vm *vm, struct inv_metering *m)
{
	struct vmms_worker *w = running_worker(s, vm);
	struct sample x;
	if (w && take_sample(vm, w->pid, &x))
		fold(m, w->start, &x);
}

void vmms_metering_tick(struct vmms *s)
{
	int64_t now = mono_ms();
	if (now - s->metering_at_ms < METERING_SAMPLE_MS)
		return;
	s->metering_at_ms = now;
	for (int i = 0; i < s->nworkers; i++) {
		struct inv_vm vm;
		struct inv_metering m;
		if (inv_find(s->inv, s->workers[i].id, &vm) != 1)
			continue;
		if (inv_metering_get(s->inv, vm.id, &m) == 1 && running_worker(s, &vm)) {
			sample_into(s, &vm, &m);
			inv_metering_put(s->inv, vm.id, &m);
		}
		inv_vm_free(&vm);
	}
}

/* The host's processor clock in MHz (the first "cpu MHz" of /proc/cpuinfo; 0 if unknown). */
static double host_mhz(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];
	double mhz = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "cpu MHz", 7) && sscanf(strchr(line, ':') ? strchr(line, ':') + 1 : "", "%lf", &mhz) == 1)
			break;
	if (f)
		fclose(f);
	return mhz;
}

static json_t *report(const struct inv_vm *vm, const struct inv_metering *m)
{
	int64_t span = vmms_unix_ms() - m->since_ms;
	if (span < 1)
		span = 1;
	double cpu = (double)m->cpu_ms / (double)span; /* processors busy on average */
	int64_t disk = 0;
	for (int i = 0; i < vm->ndisks; i++) {
		struct stat st;
		if (stat(vm->disks[i].path, &st) == 0)
			disk += st.st_size;
	}
	json_t *r = json_pack("{s:s, s:I, s:I, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "vm", vm->name,
			 "duration_ms", (json_int_t)span, "running_ms", (json_int_t)m->running_ms, "cpu_ms", (json_int_t)m->cpu_ms,
			 "avg_cpu_percent", (int)(cpu * 100 + 0.5), "avg_cpu_mhz", (json_int_t)(cpu * host_mhz() + 0.5),
			 "avg_ram_mb", (json_int_t)(m->ram_mb_ms / span), "min_ram_mb", (json_int_t)m->ram_min_mb, "max_ram_mb",
			 (json_int_t)m->ram_max_mb, "total_disk_mb", (json_int_t)(disk >> 20), "disk_read_bytes",
			 (json_int_t)m->disk_read, "disk_written_bytes", (json_int_t)m->disk_written, "avg_normalized_iops",
			 (json_int_t)(m->disk_ops * 1000 / span), "network_in_bytes", (json_int_t)m->net_in);
	json_object_set_new(r, "network_out_bytes", json_integer((json_int_t)m->net_out));
	return r;
}

static json_t *op_metering(struct vmms *s, json_t *req, const char *op)
{
	struct inv_vm vm;
	json_t *reply = find_vm(s, req, &vm);
	if (reply)
		return reply;
	struct inv_metering m = { 0 };
	int have = inv_metering_get(s->inv, vm.id, &m);
	bool enable = !strcmp(op, "enable-metering"), reset = !strcmp(op, "reset-metering");
	if (have < 0) {
		reply = err_reply(0, "inventory: %s", inv_error(s->inv));
	} else if (!strcmp(op, "disable-metering")) {
		reply = have && inv_metering_delete(s->inv, vm.id) < 0 ? err_reply(0, "inventory: %s", inv_error(s->inv))
								     : json_pack("{s:b}", "ok", 1);
		if (have)
			vm_event(s, vm.id, "Information", "resource metering disabled");
	} else if (!have && !enable) {
		reply = err_reply(0, "resource metering is not enabled for '%s' (Enable-VMResourceMetering)", vm.name);
	} else if (enable && have) {
		reply = json_pack("{s:b}", "ok", 1); /* on already: it goes on counting, as in Hyper-V */
	} else {
		if (enable || reset) { /* from now: what the running worker used so far is not counted */
			m = (struct inv_metering){ .since_ms = vmms_unix_ms() };
			struct vmms_worker *w = running_worker(s, &vm);
			struct sample x;
			if (w && take_sample(&vm, w->pid, &x))
				set_base(&m, w->start, &x.c);
		} else {
			sample_into(s, &vm, &m);
		}
		if (inv_metering_put(s->inv, vm.id, &m) < 0)
			reply = err_reply(0, "inventory: %s", inv_error(s->inv));
		else if (enable || reset)
			reply = json_pack("{s:b}", "ok", 1);
		else
			reply = json_pack("{s:b, s:o}", "ok", 1, "usage", report(&vm, &m));
		if (enable || reset)
			vm_event(s, vm.id, "Information", "resource metering %s", enable ? "enabled" : "reset");
	}
	inv_vm_free(&vm);
	return reply;
}

json_t *vmms_metering_request(struct vmms *s, const char *op, json_t *req)
{
	static const char *const ops[] = { "enable-metering", "disable-metering", "reset-metering", "measure" };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (!strcmp(op, ops[i]))
			return op_metering(s, req, ops[i]);
	return NULL;
}
