/* The worker's JSON control socket. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "worker/clock.h"
#include "vsp/ic.h"
#include "vsp/kvp.h"
#include "vsp/vss.h"
#include "worker/control.h"
#include "worker/copy_file.h"
#include "worker/log.h"
#include "worker/migrate.h"
#include "worker/net.h"
#include "worker/saved_state.h"
#include "vsp/storvsp.h"
#include "worker/storage.h"

static const char *ic_state_name(const struct ic_dev *ic)
{
	if (!ic)
		return "disabled"; /* --disable-ic: not offered to the guest */
	enum ic_state s = ic_state(ic);
	return s == IC_READY ? "ready" : s == IC_NEGOTIATING ? "negotiating" : "closed";
}

static json_t *error_reply(const char *fmt, const char *arg)
{
	char msg[1024];
	snprintf(msg, sizeof(msg), fmt, arg ? arg : "");
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

/* Per-adapter counters for the status reply. */
static json_t *nics_array(void)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < worker_nic_count(); i++) {
		struct worker_nic_status s;
		if (!worker_nic_status(i, &s))
			continue;
		char ver[16];
		snprintf(ver, sizeof(ver), "%u.%u", s.stats.nvsp_version >> 16, s.stats.nvsp_version & 0xFFFF);
		json_t *o = json_pack("{s:s, s:s, s:i, s:b, s:s, s:s, s:b, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"tap", s.tap, "switch", s.switch_path, "vlan", s.vlan, "connected", s.connected, "error", s.error,
			"mac", s.mac, "link_up", s.stats.link_up,
			"nvsp_version", s.stats.nvsp_version ? ver : "", "rndis_initialized", s.stats.rndis_initialized,
			"tx_packets", (json_int_t)s.stats.tx_packets, "tx_bytes", (json_int_t)s.stats.tx_bytes,
			"rx_packets", (json_int_t)s.stats.rx_packets, "rx_bytes", (json_int_t)s.stats.rx_bytes,
			"tx_drops", (json_int_t)(s.stats.tx_drops + s.write_errors),
			"rx_drops", (json_int_t)s.stats.rx_drops, "bad_packets", (json_int_t)s.stats.bad_packets);
		json_object_set_new(o, "rx_busy", json_integer((json_int_t)s.stats.rx_busy));
		json_object_set_new(o, "rx_coalesced", json_integer((json_int_t)s.stats.rx_coalesced));
		json_array_append_new(a, o);
	}
	return a;
}

/* Per LUN: its image now, and a live merge's progress. */
static json_t *disks_array(void)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < worker_disk_count(); i++) {
		struct worker_disk_status s;
		if (!worker_disk_status(i, &s))
			continue;
		json_t *merge = json_null();
		if (s.merge) {
			merge = json_pack("{s:s, s:i, s:s}", "state", s.merge, "percent", (int)s.merge_percent, "error",
					  s.merge_error);
			if (!strcmp(s.merge, "done"))
				json_object_set_new(merge, "pivot_pause_ms", json_integer((json_int_t)s.pivot_pause_ms));
		}
		json_t *o = json_pack("{s:i, s:s, s:s?, s:b, s:o}", "lun", (int)i, "type", s.dvd ? "dvd" : "disk",
				      "path", s.path, "read_only", s.read_only, "merge", merge);
		if (!s.dvd) {
			json_object_set_new(o, "max_iops", json_integer((json_int_t)s.max_iops));
			json_object_set_new(o, "max_bandwidth", json_integer((json_int_t)s.max_bytes_per_s));
		}
		json_array_append_new(a, o);
	}
	return a;
}

/* A wire GUID as Linux prints class_id in sysfs: mixed endian, lower case. */
static json_t *guid_string(struct vmbus_guid g)
{
	const uint8_t *b = g.b;
	char s[37];
	snprintf(s, sizeof(s), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return json_string(s);
}

/* Caller holds the VMBus lock. */
static json_t *channel_list(struct vmbus_host *h)
{
	json_t *list = json_array();
	for (uint32_t relid = 1; relid <= VMBUS_MAX_DEVICES; relid++) {
		struct vmbus_chan *c = vmbus_server_channel(h->server, relid);
		if (!c)
			continue;
		json_t *o = json_pack("{s:i, s:s, s:o, s:b}", "relid", (int)relid,
				      "device", vmbus_chan_device_name(c), "class_id", guid_string(vmbus_chan_class_id(c)),
				      "open", vmbus_chan_is_open(c));
		if (vmbus_chan_is_open(c))
			json_object_set_new(o, "target_vp", json_integer(vmbus_chan_target_vp(c)));
		json_array_append_new(list, o);
	}
	return list;
}

static json_t *status(struct vm *vm)
{
	struct vmbus_host *h = &vm->vmbus;
	uint64_t now = monotonic_ns(), last_seen;
	enum heartbeat_status hb = vmbus_host_heartbeat(h, now, &last_seen);
	static const char *const hb_names[] = { "NoContact", "OK", "LostCommunication" };
	pthread_mutex_lock(&h->lock);
	uint32_t version = vmbus_server_version(h->server);
	json_t *ics = json_pack("{s:s, s:s, s:s, s:s, s:s}",
				"Heartbeat", ic_state_name(h->heartbeat),
				"Shutdown", ic_state_name(h->shutdown),
				"TimeSynchronization", ic_state_name(h->timesync),
				"KeyValuePairExchange", ic_state_name(h->kvp),
				"VSS", ic_state_name(h->vss));
	json_object_set_new(ics, "GuestServiceInterface", json_string(ic_state_name(h->fcopy)));
	json_t *channels = channel_list(h);
	pthread_mutex_unlock(&h->lock);
	char vmbus_version[16];
	snprintf(vmbus_version, sizeof(vmbus_version), "%u.%u", version >> 16, version & 0xFFFF);
	json_t *r = json_pack("{s:b, s:s, s:i, s:I, s:I, s:s, s:s, s:o, s:o}",
			      "ok", 1, "state", vm_is_paused(vm) ? "Paused" : "Running", "cpus", (int)vm->ncpus,
			      "memory_bytes", (json_int_t)vm->mem.ram_size,
			      "uptime_ms", (json_int_t)((now - vm->vmbus.start_ns) / 1000000),
			      "vmbus_version", version ? vmbus_version : "",
			      "heartbeat", hb_names[hb], "integration_services", ics, "channels", channels);
	json_object_set_new(r, "nics", nics_array());
	json_object_set_new(r, "disks", disks_array());
	struct storvsp_stats io;
	if (worker_storage_stats(&io))
		json_object_set_new(r, "storage", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "reads", (json_int_t)io.reads,
							    "writes", (json_int_t)io.writes, "read_bytes", (json_int_t)io.read_bytes,
							    "write_bytes", (json_int_t)io.write_bytes, "normalized_ops",
							    (json_int_t)io.normalized_ops, "throttled", (json_int_t)io.throttled,
							    "errors", (json_int_t)io.errors));
	json_t *fc = worker_copy_file_status(h);
	if (fc)
		json_object_set_new(r, "file_copy", fc);
	if (hb != HEARTBEAT_NO_CONTACT) {
		json_object_set_new(r, "heartbeat_age_ms", json_integer((json_int_t)((now - last_seen) / 1000000)));
		pthread_mutex_lock(&h->lock);
		json_object_set_new(r, "heartbeat_rtt_us", json_integer((json_int_t)(h->heartbeat_rtt_ns / 1000)));
		json_object_set_new(r, "heartbeat_rtt_min_us", json_integer((json_int_t)(h->heartbeat_rtt_min_ns / 1000)));
		pthread_mutex_unlock(&h->lock);
	}
	return r;
}

static json_t *pool_object(struct vmbus_host *h, uint8_t pool)
{
	json_t *o = json_object();
	pthread_mutex_lock(&h->lock);
	unsigned n = h->kvp ? ic_kvp_pool_count(h->kvp, pool) : 0;
	for (unsigned i = 0; i < n; i++) {
		const struct ic_kvp_pair *kv = ic_kvp_pool_item(h->kvp, pool, i);
		if (kv)
			json_object_set_new(o, kv->key, json_string(kv->value));
	}
	pthread_mutex_unlock(&h->lock);
	return o;
}

static json_t *vss_status(struct vmbus_host *h)
{
	if (!h->vss)
		return error_reply("the VSS integration service is disabled%s", NULL);
	pthread_mutex_lock(&h->lock);
	enum ic_vss_state st = ic_vss_state(h->vss);
	enum ic_vss_error e = ic_vss_error(h->vss);
	uint32_t hresult = ic_vss_hresult(h->vss);
	pthread_mutex_unlock(&h->lock);
	return json_pack("{s:b, s:s, s:s, s:I}", "ok", 1, "state", ic_vss_state_name(st),
			 "error", ic_vss_error_name(e), "hresult", (json_int_t)hresult);
}

long control_base64_decode(const char *in, unsigned char *out, size_t cap)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0, len = strlen(in);
	while (len && in[len - 1] == '=')
		len--;
	if (len % 4 == 1 || strlen(in) - len > 2)
		return -1;
	for (size_t i = 0; i < len; i++) {
		const char *p = in[i] ? strchr(alphabet, in[i]) : NULL;
		if (!p)
			return -1;
		acc = (acc << 6) | (uint32_t)(p - alphabet);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return (long)n;
}

static json_t *dispatch(struct vm *vm, json_t *req)
{
	struct vmbus_host *h = &vm->vmbus;
	const char *op = json_string_value(json_object_get(req, "op"));
	uint64_t now_ms = monotonic_ns() / 1000000;
	if (!op)
		return error_reply("request has no \"op\"", NULL);
	if (!strcmp(op, "status"))
		return status(vm);
	if (!strcmp(op, "shutdown")) {
		bool force = json_is_true(json_object_get(req, "force"));
		bool reboot = json_is_true(json_object_get(req, "reboot"));
		if (!h->shutdown)
			return error_reply("the guest's shutdown integration service is disabled", NULL);
		if (vmbus_host_request_shutdown(h, reboot, force) < 0)
			return error_reply("the guest's shutdown integration service is not running", NULL);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "pause")) {
		if (!vm_pause(vm))
			return error_reply("the VM is stopping", NULL);
		return json_pack("{s:b, s:s}", "ok", 1, "state", "Paused");
	}
	if (!strcmp(op, "resume")) {
		vm_resume(vm);
		/* The guest's clock stood still while it was paused: step it to now. */
		pthread_mutex_lock(&h->lock);
		if (h->timesync)
			ic_timesync_send(h->timesync, ICTIMESYNCFLAG_SYNC);
		pthread_mutex_unlock(&h->lock);
		return json_pack("{s:b, s:s}", "ok", 1, "state", "Running");
	}
	if (!strcmp(op, "time-sync")) {
		pthread_mutex_lock(&h->lock);
		int rc = h->timesync ? ic_timesync_send(h->timesync, ICTIMESYNCFLAG_SYNC) : -1; /* the guest steps its clock */
		pthread_mutex_unlock(&h->lock);
		if (rc < 0)
			return error_reply("the guest's time synchronization service is not running", NULL);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "save")) {
		const char *path = json_string_value(json_object_get(req, "path"));
		if (!path || path[0] != '/')
			return error_reply("save needs an absolute \"path\"", NULL);
		if (worker_copy_file_busy(h))
			return error_reply("a file copy into the guest is in progress: save when it is done%s", NULL);
		bool was_paused = vm_is_paused(vm);
		if (!vm_pause(vm))
			return error_reply("the VM is stopping", NULL);
		struct vm_save_stats st;
		if (vm_save_file(vm, path, vm->config_digest, &st) < 0) {
			if (!was_paused)
				vm_resume(vm);
			return error_reply("%s", state_last_error());
		}
		vlog("saved to %s: %llu bytes in %llu ms (guest RAM %llu ms); paused", path, (unsigned long long)st.bytes,
		     (unsigned long long)st.total_ms, (unsigned long long)st.ram_ms);
		return json_pack("{s:b, s:s, s:I, s:I, s:I}", "ok", 1, "state", "Paused", "bytes", (json_int_t)st.bytes,
				 "save_ms", (json_int_t)st.total_ms, "ram_ms", (json_int_t)st.ram_ms);
	}
	if (!strcmp(op, "migrate-send")) {
		const char *address = json_string_value(json_object_get(req, "address"));
		json_t *down = json_object_get(req, "max_downtime_ms"), *passes = json_object_get(req, "max_passes");
		struct migrate_options mo = { .max_downtime_ms = 300, .max_passes = 30 };
		if (!address || (down && (!json_is_integer(down) || json_integer_value(down) < 1 ||
					  json_integer_value(down) > 60000)) ||
		    (passes && (!json_is_integer(passes) || json_integer_value(passes) < 1 || json_integer_value(passes) > 1000)))
			return error_reply("migrate-send needs \"address\" (unix:PATH or tcp:HOST:PORT); "
					   "\"max_downtime_ms\" 1..60000 and \"max_passes\" 1..1000 are optional%s", "");
		if (down)
			mo.max_downtime_ms = (uint32_t)json_integer_value(down);
		if (passes)
			mo.max_passes = (uint32_t)json_integer_value(passes);
		mo.verify = json_is_true(json_object_get(req, "verify"));
		struct migrate_tls_config tls = {
			.cert = json_string_value(json_object_get(req, "cert")),
			.key = json_string_value(json_object_get(req, "key")),
			.trust = json_string_value(json_object_get(req, "trust")),
		};
		if (worker_copy_file_busy(h))
			return error_reply("a file copy into the guest is in progress: migrate when it is done%s", NULL);
		for (unsigned lun = 0; lun < worker_disk_count(); lun++) {
			struct worker_disk_status ds;
			if (worker_disk_status(lun, &ds) && ds.merge && !strcmp(ds.merge, "running")) {
				char n[12];
				snprintf(n, sizeof(n), "%u", lun);
				return error_reply("a disk merge is running (LUN %s): migrate when it is done", n);
			}
		}
		char err[512];
		struct migrate_conn conn;
		if (migrate_connect(address, &tls, &conn, err, sizeof(err)) < 0)
			return error_reply("%s", err);
		struct migrate_stats st;
		int rc = migrate_send(vm, conn.fd, &mo, &st);
		migrate_close(&conn); /* GO must be out before this worker exits */
		if (rc < 0) {
			vlog("migration to %s failed: %s", address, state_last_error());
			return error_reply("%s", state_last_error());
		}
		vlog("migrated to %s: %llu bytes, %llu pages in %u passes, %llu ms, downtime %llu ms (last pass %llu pages, "
		     "%llu unlogged), throttle %u%%", address, (unsigned long long)st.bytes, (unsigned long long)st.pages,
		     st.passes, (unsigned long long)st.total_ms, (unsigned long long)st.downtime_ms,
		     (unsigned long long)st.last_dirty, (unsigned long long)st.unlogged, st.throttle_pct);
		vm_request_exit(vm, VM_MIGRATED, NULL);
		return json_pack("{s:b, s:s, s:I, s:I, s:i, s:I, s:I, s:I, s:I, s:i, s:I}", "ok", 1, "state", "Migrated",
				 "bytes", (json_int_t)st.bytes, "pages", (json_int_t)st.pages, "passes", (int)st.passes,
				 "total_ms", (json_int_t)st.total_ms, "downtime_ms", (json_int_t)st.downtime_ms,
				 "last_pass_pages", (json_int_t)st.last_dirty, "unlogged_pages", (json_int_t)st.unlogged,
				 "throttle_pct", (int)st.throttle_pct, "rate_kbps", (json_int_t)st.rate_kbps);
	}
	if (!strcmp(op, "disk-switch")) {
		json_t *lun = json_object_get(req, "lun");
		const char *path = json_string_value(json_object_get(req, "path"));
		if (!json_is_integer(lun) || json_integer_value(lun) < 0 || json_integer_value(lun) >= WORKER_MAX_DISKS || !path)
			return error_reply("disk-switch needs \"lun\" (an integer) and \"path\" (a string)%s", NULL);
		char err[200];
		uint64_t pause_ms;
		if (worker_disk_switch(vm, (unsigned)json_integer_value(lun), path, &pause_ms, err, sizeof(err)) < 0)
			return error_reply("%s", err);
		return json_pack("{s:b, s:I}", "ok", 1, "pause_ms", (json_int_t)pause_ms);
	}
	if (!strcmp(op, "disk-limits")) {
		json_t *lun = json_object_get(req, "lun"), *iops = json_object_get(req, "max_iops"),
		       *bw = json_object_get(req, "max_bandwidth");
		if (!json_is_integer(lun) || json_integer_value(lun) < 0 || json_integer_value(lun) >= WORKER_MAX_DISKS ||
		    (iops && (!json_is_integer(iops) || json_integer_value(iops) < 0)) ||
		    (bw && (!json_is_integer(bw) || json_integer_value(bw) < 0)) || (!iops && !bw))
			return error_reply("disk-limits needs \"lun\" and \"max_iops\" and/or \"max_bandwidth\" "
					   "(integers >= 0; 0 lifts the limit)%s", "");
		struct worker_disk_status now;
		if (!worker_disk_status((unsigned)json_integer_value(lun), &now))
			now = (struct worker_disk_status){ 0 }; /* worker_disk_limits says why */
		char err[200];
		if (worker_disk_limits((unsigned)json_integer_value(lun), iops ? (uint64_t)json_integer_value(iops) : now.max_iops,
				       bw ? (uint64_t)json_integer_value(bw) : now.max_bytes_per_s, err, sizeof(err)) < 0)
			return error_reply("%s", err);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "dvd-change")) {
		json_t *lun = json_object_get(req, "lun"), *p = json_object_get(req, "path");
		if (!json_is_integer(lun) || json_integer_value(lun) < 0 || json_integer_value(lun) >= WORKER_MAX_DISKS ||
		    !(json_is_string(p) || json_is_null(p)))
			return error_reply("dvd-change needs \"lun\" (an integer) and \"path\" (an ISO path, or null to eject)%s", NULL);
		char err[400];
		if (worker_dvd_change((unsigned)json_integer_value(lun), json_string_value(p), err, sizeof(err)) < 0)
			return error_reply("%s", err);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "disk-merge")) {
		json_t *lun = json_object_get(req, "lun");
		if (!json_is_integer(lun) || json_integer_value(lun) < 0 || json_integer_value(lun) >= WORKER_MAX_DISKS)
			return error_reply("disk-merge needs \"lun\" (an integer)%s", NULL);
		char err[200];
		if (worker_disk_merge(vm, (unsigned)json_integer_value(lun), err, sizeof(err)) < 0)
			return error_reply("%s", err);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "turn-off")) {
		vm_request_exit(vm, VM_POWER_OFF, NULL);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!h->kvp && (!strcmp(op, "guest-info") || !strncmp(op, "kvp-", 4)))
		return error_reply("the guest's key-value pair exchange integration service is disabled%s", NULL);
	if (!h->vss && !strncmp(op, "vss-", 4))
		return error_reply("the guest's VSS integration service is disabled%s", NULL);
	if (!strcmp(op, "guest-info"))
		return json_pack("{s:b, s:o}", "ok", 1, "guest", pool_object(h, HV_KVP_POOL_AUTO));
	if (!strcmp(op, "kvp-list")) {
		json_int_t pool = json_integer_value(json_object_get(req, "pool"));
		if (pool < 0 || pool >= HV_KVP_POOL_COUNT)
			return error_reply("pool must be 0..4", NULL);
		pthread_mutex_lock(&h->lock);
		if (pool != HV_KVP_POOL_AUTO)
			ic_kvp_enumerate(h->kvp, (uint8_t)pool, now_ms); /* refresh for the next ask */
		pthread_mutex_unlock(&h->lock);
		return json_pack("{s:b, s:o}", "ok", 1, "items", pool_object(h, (uint8_t)pool));
	}
	if (!strcmp(op, "kvp-set") || !strcmp(op, "kvp-delete")) {
		const char *key = json_string_value(json_object_get(req, "key"));
		const char *value = json_string_value(json_object_get(req, "value"));
		bool set = !strcmp(op, "kvp-set");
		if (!key || (set && !value))
			return error_reply(set ? "kvp-set needs \"key\" and \"value\" strings" : "kvp-delete needs a \"key\" string", NULL);
		pthread_mutex_lock(&h->lock);
		int rc = set ? ic_kvp_set(h->kvp, key, value, now_ms) : ic_kvp_delete(h->kvp, key, now_ms);
		pthread_mutex_unlock(&h->lock);
		if (rc < 0)
			return error_reply(set ? "cannot set %s: too long, not UTF-8, or the table is full"
					       : "no host KVP entry %s", key);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "vss-freeze") || !strcmp(op, "vss-thaw")) {
		bool freeze = !strcmp(op, "vss-freeze");
		pthread_mutex_lock(&h->lock);
		int rc = freeze ? ic_vss_freeze(h->vss, now_ms) : ic_vss_thaw(h->vss, now_ms);
		pthread_mutex_unlock(&h->lock);
		if (rc < 0)
			return error_reply(freeze ? "cannot freeze now (VSS service not ready, or busy)"
						  : "nothing to thaw", NULL);
		return vss_status(h);
	}
	if (!strcmp(op, "vss-status"))
		return vss_status(h);
	if (!strcmp(op, "copy-file")) {
		const char *src = json_string_value(json_object_get(req, "source"));
		const char *dst = json_string_value(json_object_get(req, "destination"));
		if (!src || !dst)
			return error_reply("copy-file needs \"source\" (a host file) and \"destination\" (the guest path); "
					   "\"overwrite\" and \"create_full_path\" are optional%s", NULL);
		char err[600];
		if (worker_copy_file_start(h, src, dst, json_is_true(json_object_get(req, "overwrite")),
					   json_is_true(json_object_get(req, "create_full_path")), now_ms, err, sizeof(err)) < 0)
			return error_reply("%s", err);
		return json_pack("{s:b, s:o}", "ok", 1, "file_copy", worker_copy_file_status(h));
	}
	if (!strcmp(op, "copy-file-cancel")) {
		if (worker_copy_file_cancel(h, now_ms) < 0)
			return error_reply("no file copy to cancel (none running, or the guest is closing the finished file)%s", NULL);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "console-input")) {
		const char *data = json_string_value(json_object_get(req, "data"));
		unsigned char buf[4096];
		long n = data ? control_base64_decode(data, buf, sizeof(buf)) : -1;
		if (n < 0)
			return error_reply("console-input needs \"data\": base64 of at most 4096 bytes%s", NULL);
		size_t accepted = uart_receive(&vm->com1, buf, (size_t)n);
		return json_pack("{s:b, s:I}", "ok", 1, "accepted", (json_int_t)accepted);
	}
	if (!strcmp(op, "nic-link")) {
		json_t *up = json_object_get(req, "up");
		json_int_t nic = json_integer_value(json_object_get(req, "nic"));
		if (!json_is_boolean(up))
			return error_reply("nic-link needs \"up\": true or false", NULL);
		if (nic < 0 || !worker_nic_set_link((unsigned)nic, json_is_true(up)))
			return error_reply("no such network adapter%s", NULL);
		return json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "nic-connect") || !strcmp(op, "nic-disconnect")) {
		json_int_t nic = json_integer_value(json_object_get(req, "nic"));
		const char *path = json_string_value(json_object_get(req, "switch"));
		json_t *vlan = json_object_get(req, "vlan");
		bool connect = op[4] == 'c';
		if (connect && !path)
			return error_reply("nic-connect needs \"switch\": the switch's port socket%s", NULL);
		if (vlan && (!json_is_integer(vlan) || json_integer_value(vlan) < 0 || json_integer_value(vlan) > 4094))
			return error_reply("\"vlan\" must be 0..4094%s", NULL);
		char err[200];
		if (nic < 0 || !worker_nic_connect((unsigned)nic, connect ? path : NULL, vlan ? (int)json_integer_value(vlan) : -1,
						   err, sizeof(err)))
			return error_reply("%s", nic < 0 ? "no such network adapter" : err);
		return json_pack("{s:b}", "ok", 1);
	}
	return error_reply("unknown op %s", op);
}

char *control_request(struct vm *vm, const char *line)
{
	json_error_t jerr;
	json_t *req = json_loads(line, 0, &jerr);
	json_t *reply = !json_is_object(req) ? error_reply("not a JSON object: %s", req ? "" : jerr.text)
					     : dispatch(vm, req);
	json_decref(req);
	char *out = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	return out;
}

bool control_open(struct control *c, struct vm *vm, const char *path, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->listen_fd = -1;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		c->clients[i].fd = -1;
	if (!path)
		return true;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "--control %s: path too long", path);
		return false;
	}
	strcpy(addr.sun_path, path);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	unlink(path); /* a socket left by a worker that died */
	if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(c->listen_fd, CONTROL_MAX_CLIENTS) < 0) {
		snprintf(err, errlen, "--control %s: %s", path, strerror(errno));
		return false;
	}
	chmod(path, 0600); /* the owner (root, or the management service's user) only */
	snprintf(c->path, sizeof(c->path), "%s", path);
	return true;
}

void control_close(struct control *c)
{
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			close(c->clients[i].fd);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		unlink(c->path);
	}
	c->listen_fd = -1;
}

int control_pollfds(const struct control *c, struct pollfd *fds, int max)
{
	int n = 0;
	if (c->listen_fd < 0 || max < 1)
		return 0;
	fds[n++] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
	for (int i = 0; i < CONTROL_MAX_CLIENTS && n < max; i++)
		if (c->clients[i].fd >= 0)
			fds[n++] = (struct pollfd){ .fd = c->clients[i].fd, .events = POLLIN };
	return n;
}

static void drop(struct control_client *cl)
{
	close(cl->fd);
	cl->fd = -1;
	cl->len = 0;
}

static void serve(struct control *c, struct control_client *cl)
{
	ssize_t n = read(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - 1 - cl->len);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			drop(cl);
		return;
	}
	cl->len += (size_t)n;
	cl->buf[cl->len] = '\0';
	char *line = cl->buf, *nl;
	while ((nl = strchr(line, '\n'))) {
		*nl = '\0';
		char *reply = control_request(c->vm, line);
		size_t len = reply ? strlen(reply) : 0;
		/* Replies are small; a client that does not read them is dropped. */
		if (!reply || write(cl->fd, reply, len) != (ssize_t)len || write(cl->fd, "\n", 1) != 1) {
			free(reply);
			drop(cl);
			return;
		}
		free(reply);
		line = nl + 1;
	}
	cl->len -= (size_t)(line - cl->buf);
	memmove(cl->buf, line, cl->len);
	if (cl->len == sizeof(cl->buf) - 1)
		drop(cl); /* a line longer than any request */
}

void control_handle(struct control *c, const struct pollfd *fds, int n)
{
	for (int i = 0; i < n; i++) {
		if (!fds[i].revents)
			continue;
		if (fds[i].fd == c->listen_fd) {
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			int slot = -1;
			for (int j = 0; j < CONTROL_MAX_CLIENTS && slot < 0; j++)
				if (c->clients[j].fd < 0)
					slot = j;
			if (slot < 0) {
				close(fd);
				continue;
			}
			c->clients[slot] = (struct control_client){ .fd = fd };
			continue;
		}
		for (int j = 0; j < CONTROL_MAX_CLIENTS; j++)
			if (c->clients[j].fd == fds[i].fd)
				serve(c, &c->clients[j]);
	}
}
