/* The exported VM configuration: JSON <-> struct vmcfg, with every field of the file checked
 * (include/vmms/vmconfig.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "vmms/vmconfig.h"
#include "vsp/io_limit.h"

/* ---- checks ---- */

bool vmcfg_rel_path_ok(const char *p, const char *folder)
{
	size_t fl = strlen(folder), len = p ? strlen(p) : 0;
	if (!p || len >= VMCFG_PATH_MAX || len <= fl + 1 || strncmp(p, folder, fl) || p[fl] != '/')
		return false;
	for (const unsigned char *c = (const unsigned char *)p; *c; c++)
		if (*c < 0x20 || *c == 0x7f || *c == '\\')
			return false;
	for (const char *c = p; c;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (!n || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c = slash ? slash + 1 : NULL;
	}
	return true;
}

int vmcfg_image_index(const struct vmcfg *c, const char *path)
{
	for (int i = 0; path && i < c->nimages; i++)
		if (!strcmp(c->images[i].path, path))
			return i;
	return -1;
}

struct parse {
	char *err;
	size_t errlen;
	const char *where;       /* the object being read: "vm", "disks[2]" ... */
};

__attribute__((format(printf, 2, 3))) static int bad(struct parse *p, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s%s%s", p->where, *p->where ? ": " : "", msg);
	return -1;
}

/* A string member into out (required unless may_miss); a JSON null counts as missing. */
static int get_str(struct parse *p, json_t *o, const char *key, char *out, size_t len, bool may_miss)
{
	json_t *v = json_object_get(o, key);
	out[0] = '\0';
	if (!v || json_is_null(v))
		return may_miss ? 0 : bad(p, "\"%s\" is missing", key);
	if (!json_is_string(v))
		return bad(p, "\"%s\" is not a string", key);
	size_t n = json_string_length(v);
	if (n >= len) /* jansson refuses a NUL inside a string: n is the C length */
		return bad(p, "\"%s\" is too long", key);
	memcpy(out, json_string_value(v), n + 1);
	return 0;
}

static int get_int(struct parse *p, json_t *o, const char *key, json_int_t lo, json_int_t hi, json_int_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return bad(p, "\"%s\" is %s", key, v ? "not an integer" : "missing");
	*out = json_integer_value(v);
	if (*out < lo || *out > hi)
		return bad(p, "\"%s\" is %lld, not %lld to %lld", key, (long long)*out, (long long)lo, (long long)hi);
	return 0;
}

/* A key added within version 1: absent is dflt. */
static int get_opt_int(struct parse *p, json_t *o, const char *key, json_int_t lo, json_int_t hi, json_int_t dflt,
		       json_int_t *out)
{
	if (!json_object_get(o, key)) {
		*out = dflt;
		return 0;
	}
	return get_int(p, o, key, lo, hi, out);
}

static int get_bool(struct parse *p, json_t *o, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_boolean(v))
		return bad(p, "\"%s\" is %s", key, v ? "not true or false" : "missing");
	*out = json_is_true(v);
	return 0;
}

static int get_guid(struct parse *p, json_t *o, const char *key, char out[37], bool may_be_empty)
{
	if (get_str(p, o, key, out, 37, may_be_empty) < 0)
		return -1;
	if (!(may_be_empty && !out[0]) && !vmms_is_guid(out))
		return bad(p, "\"%s\" is not a GUID", key);
	for (char *c = out; *c; c++)
		*c = (char)(*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
	return 0;
}

static int get_rel(struct parse *p, json_t *o, const char *key, const char *folder, char *out, bool may_miss)
{
	if (get_str(p, o, key, out, VMCFG_PATH_MAX, may_miss) < 0)
		return -1;
	if (out[0] && !vmcfg_rel_path_ok(out, folder))
		return bad(p, "\"%s\" '%s' is not a plain path under '%s/'", key, out, folder);
	return 0;
}

static bool printable(const char *s)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	return *s != '\0';
}

static bool memory_ok(uint64_t m)
{
	return vmms_valid_memory(m);
}

/* The VM's disks (with_qos) or a checkpoint's (no QoS keys allowed: it is the drive's). */
static int get_disks(struct parse *p, const struct vmcfg *c, json_t *arr, struct vmcfg_disk *out, int *n, const char *what,
		     bool with_qos)
{
	char where[64];
	const char *outer = p->where;
	if (!json_is_array(arr))
		return bad(p, "\"%s\" is not an array", what);
	if (json_array_size(arr) > VMCFG_MAX_DISKS)
		return bad(p, "more than %d disks", VMCFG_MAX_DISKS);
	*n = 0;
	size_t i;
	json_t *d;
	json_array_foreach(arr, i, d) {
		snprintf(where, sizeof(where), "%s%s%s[%zu]", outer, *outer ? "." : "", what, i);
		p->where = where;
		json_int_t ctl, lun, iops = 0, bw = 0;
		char path[VMCFG_PATH_MAX];
		if (!json_is_object(d))
			return bad(p, "not an object");
		if (get_int(p, d, "controller", 0, 0, &ctl) < 0 || get_int(p, d, "lun", 0, 63, &lun) < 0 ||
		    get_rel(p, d, "path", "Virtual Hard Disks", path, false) < 0)
			return -1;
		if (!with_qos && (json_object_get(d, "max_iops") || json_object_get(d, "max_bandwidth")))
			return bad(p, "a checkpoint's disk has no storage QoS");
		if (with_qos && (get_opt_int(p, d, "max_iops", 0, (json_int_t)IO_LIMIT_MAX_IOPS, 0, &iops) < 0 ||
				 get_opt_int(p, d, "max_bandwidth", 0, (json_int_t)IO_LIMIT_MAX_BYTES_PER_S, 0, &bw) < 0))
			return -1;
		int img = vmcfg_image_index(c, path);
		if (img < 0)
			return bad(p, "'%s' is not in \"images\"", path);
		for (int k = 0; k < *n; k++)
			if (out[k].lun == (int)lun)
				return bad(p, "LUN %lld is used twice", (long long)lun);
		/* field by field into the zeroed struct: a compound literal leaves its padding undefined,
		 * and a configuration is compared byte for byte (the fuzzer's round trip) */
		struct vmcfg_disk *o = &out[(*n)++];
		o->controller = (int)ctl;
		o->lun = (int)lun;
		o->image = img;
		o->max_iops = (uint64_t)iops;
		o->max_bandwidth = (uint64_t)bw;
	}
	p->where = outer;
	return 0;
}

/* "processor" (Set-VMProcessor), absent in older files: Hyper-V's defaults. */
static int parse_processor(struct parse *p, json_t *o, struct vmcfg *c)
{
	json_int_t maximum = 100, reserve = 0, weight = 100;
	if (o) {
		p->where = "vm.processor";
		if (!json_is_object(o))
			return bad(p, "not an object");
		if (get_int(p, o, "maximum", 1, 100, &maximum) < 0 || get_int(p, o, "reserve", 0, 100, &reserve) < 0 ||
		    get_int(p, o, "relative_weight", 1, 10000, &weight) < 0)
			return -1;
		p->where = "vm";
	}
	c->cpu_maximum = (int)maximum;
	c->cpu_reserve = (int)reserve;
	c->cpu_weight = (int)weight;
	return 0;
}

static int parse_vm(struct parse *p, json_t *vm, struct vmcfg *c)
{
	p->where = "vm";
	json_int_t v;
	if (!json_is_object(vm))
		return bad(p, "missing or not an object");
	if (get_guid(p, vm, "id", c->id, false) < 0 || get_str(p, vm, "name", c->name, sizeof(c->name), false) < 0)
		return -1;
	if (!vmms_valid_name(c->name))
		return bad(p, "\"name\" '%s' is not a valid VM name", c->name);
	if (get_int(p, vm, "generation", 1, 2, &v) < 0)
		return -1;
	c->generation = (int)v;
	if (get_int(p, vm, "cpus", 1, VMMS_MAX_CPUS, &v) < 0)
		return -1;
	c->cpus = (int)v;
	if (get_int(p, vm, "memory", 0, INT64_MAX, &v) < 0)
		return -1;
	c->memory = (uint64_t)v;
	if (!memory_ok(c->memory))
		return bad(p, "\"memory\" %llu is not 32 MB to 1 TB in 2 MB units", (unsigned long long)c->memory);
	if (get_str(p, vm, "kernel", c->kernel, sizeof(c->kernel), true) < 0 ||
	    get_str(p, vm, "initrd", c->initrd, sizeof(c->initrd), true) < 0 ||
	    get_str(p, vm, "cmdline", c->cmdline, sizeof(c->cmdline), true) < 0 ||
	    get_str(p, vm, "notes", c->notes, sizeof(c->notes), true) < 0)
		return -1;
	c->has_cmdline = json_is_string(json_object_get(vm, "cmdline"));
	if ((c->kernel[0] && c->kernel[0] != '/') || (c->initrd[0] && c->initrd[0] != '/'))
		return bad(p, "\"kernel\" and \"initrd\" must be absolute paths");
	if (get_str(p, vm, "automatic_start_action", c->auto_start, sizeof(c->auto_start), false) < 0 ||
	    get_str(p, vm, "automatic_stop_action", c->auto_stop, sizeof(c->auto_stop), false) < 0 ||
	    get_str(p, vm, "checkpoint_type", c->checkpoint_type, sizeof(c->checkpoint_type), false) < 0)
		return -1;
	if (!vmms_valid_auto_start(c->auto_start) || !vmms_valid_auto_stop(c->auto_stop))
		return bad(p, "unknown automatic start or stop action");
	const char *ct = c->checkpoint_type;
	if (strcasecmp(ct, "Standard") && strcasecmp(ct, "Production") && strcasecmp(ct, "ProductionOnly") && strcasecmp(ct, "Disabled"))
		return bad(p, "unknown \"checkpoint_type\" '%s'", ct);
	if (get_guid(p, vm, "parent_checkpoint", c->parent_checkpoint, true) < 0)
		return -1;
	json_t *ics = json_object_get(vm, "disabled_integration_services");
	if (!json_is_array(ics))
		return bad(p, "\"disabled_integration_services\" is not an array");
	size_t i;
	json_t *ic;
	json_array_foreach(ics, i, ic) {
		int k = vmms_ic_index(json_string_value(ic));
		if (k < 0)
			return bad(p, "unknown integration service in \"disabled_integration_services\"");
		c->ic_disabled |= 1u << k;
	}
	char state[16];
	if (get_str(p, vm, "state", state, sizeof(state), false) < 0)
		return -1;
	if (strcmp(state, "Off") && strcmp(state, "Saved"))
		return bad(p, "\"state\" is '%s', not Off or Saved", state);
	c->saved = !strcmp(state, "Saved");
	if (get_rel(p, vm, "saved_state", "Virtual Machines", c->saved_state, !c->saved) < 0)
		return -1;
	if (!c->saved && c->saved_state[0])
		return bad(p, "an Off VM with a \"saved_state\"");
	return parse_processor(p, json_object_get(vm, "processor"), c);
}

static int parse_images(struct parse *p, json_t *arr, struct vmcfg *c)
{
	p->where = "images";
	if (!json_is_array(arr))
		return bad(p, "missing or not an array");
	if (json_array_size(arr) > VMCFG_MAX_IMAGES)
		return bad(p, "more than %d images", VMCFG_MAX_IMAGES);
	char parents[VMCFG_MAX_IMAGES][VMCFG_PATH_MAX];
	char where[48];
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		snprintf(where, sizeof(where), "images[%zu]", i);
		p->where = where;
		struct vmcfg_image *im = &c->images[i];
		if (!json_is_object(o))
			return bad(p, "not an object");
		if (get_rel(p, o, "path", "Virtual Hard Disks", im->path, false) < 0 ||
		    get_rel(p, o, "parent", "Virtual Hard Disks", parents[i], true) < 0 || get_bool(p, o, "owned", &im->owned) < 0)
			return -1;
		if (vmcfg_image_index(c, im->path) >= 0)
			return bad(p, "'%s' is listed twice", im->path);
		c->nimages = (int)i + 1;
	}
	for (int k = 0; k < c->nimages; k++) {
		snprintf(where, sizeof(where), "images[%d]", k);
		p->where = where;
		c->images[k].parent = parents[k][0] ? vmcfg_image_index(c, parents[k]) : -1;
		if (parents[k][0] && c->images[k].parent < 0)
			return bad(p, "its parent '%s' is not in \"images\"", parents[k]);
	}
	for (int k = 0; k < c->nimages; k++) { /* a chain longer than the list is a cycle */
		int steps = 0;
		for (int x = k; x >= 0 && steps <= c->nimages; x = c->images[x].parent)
			steps++;
		if (steps > c->nimages) {
			snprintf(where, sizeof(where), "images[%d]", k);
			p->where = where;
			return bad(p, "its parents form a cycle");
		}
	}
	return 0;
}

static int parse_nics(struct parse *p, json_t *arr, struct vmcfg *c)
{
	p->where = "network_adapters";
	if (!json_is_array(arr))
		return bad(p, "missing or not an array");
	if (json_array_size(arr) > VMCFG_MAX_NICS)
		return bad(p, "more than %d adapters", VMCFG_MAX_NICS);
	char where[48];
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		snprintf(where, sizeof(where), "network_adapters[%zu]", i);
		p->where = where;
		struct vmcfg_nic *n = &c->nics[i];
		json_int_t v;
		char mac[32];
		if (!json_is_object(o))
			return bad(p, "not an object");
		if (get_int(p, o, "slot", 0, VMCFG_MAX_NICS - 1, &v) < 0)
			return -1;
		n->slot = (int)v;
		for (size_t k = 0; k < i; k++)
			if (c->nics[k].slot == n->slot)
				return bad(p, "slot %d is used twice", n->slot);
		if (get_str(p, o, "name", n->name, sizeof(n->name), false) < 0 || get_str(p, o, "mac", mac, sizeof(mac), false) < 0 ||
		    get_bool(p, o, "static_mac", &n->static_mac) < 0 ||
		    get_str(p, o, "switch", n->switch_name, sizeof(n->switch_name), true) < 0 ||
		    get_int(p, o, "vlan", 0, 4094, &v) < 0 || get_bool(p, o, "mac_spoofing", &n->mac_spoofing) < 0)
			return -1;
		n->vlan = (int)v;
		if (!n->name[0])
			return bad(p, "\"name\" is empty");
		if (!vmms_parse_mac(mac, n->mac))
			return bad(p, "\"mac\" '%s' is not a unicast MAC address", mac);
		c->nnics = (int)i + 1;
	}
	return 0;
}

static int parse_checkpoints(struct parse *p, json_t *arr, struct vmcfg *c)
{
	p->where = "checkpoints";
	if (!json_is_array(arr))
		return bad(p, "missing or not an array");
	if (json_array_size(arr) > VMCFG_MAX_CHECKPOINTS)
		return bad(p, "more than %d checkpoints", VMCFG_MAX_CHECKPOINTS);
	char where[48];
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		snprintf(where, sizeof(where), "checkpoints[%zu]", i);
		p->where = where;
		struct vmcfg_checkpoint *cp = &c->checkpoints[i];
		json_int_t v;
		if (!json_is_object(o))
			return bad(p, "not an object");
		if (get_guid(p, o, "id", cp->id, false) < 0 || get_guid(p, o, "parent_id", cp->parent_id, true) < 0 ||
		    get_str(p, o, "name", cp->name, sizeof(cp->name), false) < 0 ||
		    get_int(p, o, "created_ms", 0, INT64_MAX, &v) < 0)
			return -1;
		cp->created_ms = v;
		if (!printable(cp->name)) /* Hyper-V's default names hold '/' (the date): any printable text */
			return bad(p, "\"name\" is empty or holds control characters");
		for (size_t k = 0; k < i; k++)
			if (!strcmp(c->checkpoints[k].id, cp->id))
				return bad(p, "the id %s is used twice", cp->id);
		if (get_str(p, o, "type", cp->type, sizeof(cp->type), false) < 0 ||
		    get_rel(p, o, "state_file", "Snapshots", cp->state_file, true) < 0)
			return -1;
		if (strcmp(cp->type, "Standard") && strcmp(cp->type, "Production"))
			return bad(p, "\"type\" is '%s', not Standard or Production", cp->type);
		if (get_int(p, o, "cpus", 1, VMMS_MAX_CPUS, &v) < 0)
			return -1;
		cp->cpus = (int)v;
		if (get_int(p, o, "memory", 0, INT64_MAX, &v) < 0)
			return -1;
		cp->memory = (uint64_t)v;
		if (!memory_ok(cp->memory))
			return bad(p, "\"memory\" is not 32 MB to 1 TB in 2 MB units");
		if (get_disks(p, c, json_object_get(o, "disks"), cp->disks, &cp->ndisks, "disks", false) < 0)
			return -1;
		c->ncheckpoints = (int)i + 1;
	}
	/* parents exist and form a tree */
	for (int k = 0; k < c->ncheckpoints; k++) {
		snprintf(where, sizeof(where), "checkpoints[%d]", k);
		p->where = where;
		int steps = 0;
		const char *at = c->checkpoints[k].parent_id;
		while (*at && steps++ <= c->ncheckpoints) {
			int found = -1;
			for (int x = 0; x < c->ncheckpoints && found < 0; x++)
				if (!strcmp(c->checkpoints[x].id, at))
					found = x;
			if (found < 0)
				return bad(p, "its parent %s is not in \"checkpoints\"", at);
			at = c->checkpoints[found].parent_id;
		}
		if (*at)
			return bad(p, "its parents form a cycle");
	}
	p->where = "vm";
	bool found = !c->parent_checkpoint[0];
	for (int k = 0; k < c->ncheckpoints && !found; k++)
		found = !strcmp(c->checkpoints[k].id, c->parent_checkpoint);
	return found ? 0 : bad(p, "\"parent_checkpoint\" %s is not in \"checkpoints\"", c->parent_checkpoint);
}

int vmcfg_parse(const char *text, size_t len, struct vmcfg *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	struct parse p = { err, errlen, "" };
	if (len > VMCFG_FILE_MAX)
		return bad(&p, "larger than %u bytes", VMCFG_FILE_MAX);
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return bad(&p, "not JSON (line %d: %s)", je.line, je.text);
	int r = -1;
	json_int_t v;
	const char *fmt = json_string_value(json_object_get(root, "format"));
	if (!json_is_object(root) || !fmt || strcmp(fmt, VMCFG_FORMAT)) {
		bad(&p, "not a Viridian VM configuration (\"format\" is not \"%s\")", VMCFG_FORMAT);
		goto out;
	}
	json_t *ver = json_object_get(root, "version");
	if (json_is_integer(ver) && json_integer_value(ver) > VMCFG_VERSION) {
		bad(&p, "written by a newer Viridian (version %lld; this one reads %d)", (long long)json_integer_value(ver), VMCFG_VERSION);
		goto out;
	}
	if (get_int(&p, root, "version", VMCFG_VERSION, VMCFG_VERSION, &v) < 0 || get_int(&p, root, "exported_ms", 0, INT64_MAX, &v) < 0)
		goto out;
	c->exported_ms = v;
	if (parse_vm(&p, json_object_get(root, "vm"), c) < 0 || parse_images(&p, json_object_get(root, "images"), c) < 0)
		goto out;
	p.where = "";
	if (get_disks(&p, c, json_object_get(root, "disks"), c->disks, &c->ndisks, "disks", true) < 0 ||
	    parse_nics(&p, json_object_get(root, "network_adapters"), c) < 0 ||
	    parse_checkpoints(&p, json_object_get(root, "checkpoints"), c) < 0)
		goto out;
	r = 0;
out:
	json_decref(root);
	return r;
}

/* ---- writing ---- */

static json_t *str_or_null(const char *s)
{
	return s[0] ? json_string(s) : json_null();
}

static json_t *disks_json(const struct vmcfg *c, const struct vmcfg_disk *d, int n, bool with_qos)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++) {
		json_t *o = json_pack("{s:i, s:i, s:s}", "controller", d[i].controller, "lun", d[i].lun, "path",
				      c->images[d[i].image].path);
		if (o && with_qos) {
			json_object_set_new(o, "max_iops", json_integer((json_int_t)d[i].max_iops));
			json_object_set_new(o, "max_bandwidth", json_integer((json_int_t)d[i].max_bandwidth));
		}
		json_array_append_new(a, o);
	}
	return a;
}

json_t *vmcfg_to_json(const struct vmcfg *c)
{
	json_t *ics = json_array();
	for (int i = 0; i < INV_IC_COUNT; i++)
		if (c->ic_disabled & (1u << i))
			json_array_append_new(ics, json_string(vmms_ic_worker_name(i)));
	json_t *vm = json_pack("{s:s, s:s, s:i, s:i, s:I, s:o, s:o, s:o, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:o}", "id", c->id,
			       "name", c->name, "generation", c->generation, "cpus", c->cpus, "memory", (json_int_t)c->memory,
			       "kernel", str_or_null(c->kernel), "initrd", str_or_null(c->initrd), "cmdline",
			       c->has_cmdline ? json_string(c->cmdline) : json_null(), "notes", c->notes,
			       "automatic_start_action", c->auto_start, "automatic_stop_action", c->auto_stop,
			       "checkpoint_type", c->checkpoint_type, "parent_checkpoint", c->parent_checkpoint,
			       "disabled_integration_services", ics, "state", c->saved ? "Saved" : "Off", "saved_state",
			       str_or_null(c->saved_state));
	json_object_set_new(vm, "processor", json_pack("{s:i, s:i, s:i}", "maximum", c->cpu_maximum, "reserve", c->cpu_reserve,
						       "relative_weight", c->cpu_weight));
	json_t *images = json_array(), *nics = json_array(), *cps = json_array();
	for (int i = 0; i < c->nimages; i++)
		json_array_append_new(images, json_pack("{s:s, s:o, s:b}", "path", c->images[i].path, "parent",
							c->images[i].parent >= 0 ? json_string(c->images[c->images[i].parent].path) : json_null(),
							"owned", c->images[i].owned));
	for (int i = 0; i < c->nnics; i++) {
		const struct vmcfg_nic *n = &c->nics[i];
		json_array_append_new(nics, json_pack("{s:i, s:s, s:s, s:b, s:o, s:i, s:b}", "slot", n->slot, "name", n->name, "mac",
						      n->mac, "static_mac", n->static_mac, "switch", str_or_null(n->switch_name),
						      "vlan", n->vlan, "mac_spoofing", n->mac_spoofing));
	}
	for (int i = 0; i < c->ncheckpoints; i++) {
		const struct vmcfg_checkpoint *cp = &c->checkpoints[i];
		json_array_append_new(cps, json_pack("{s:s, s:s, s:s, s:I, s:s, s:o, s:i, s:I, s:o}", "id", cp->id, "parent_id",
						     cp->parent_id, "name", cp->name, "created_ms", (json_int_t)cp->created_ms,
						     "type", cp->type, "state_file", str_or_null(cp->state_file), "cpus", cp->cpus,
						     "memory", (json_int_t)cp->memory, "disks", disks_json(c, cp->disks, cp->ndisks, false)));
	}
	return json_pack("{s:s, s:i, s:I, s:o, s:o, s:o, s:o, s:o}", "format", VMCFG_FORMAT, "version", VMCFG_VERSION,
			 "exported_ms", (json_int_t)c->exported_ms, "vm", vm, "disks", disks_json(c, c->disks, c->ndisks, true),
			 "network_adapters", nics, "images", images, "checkpoints", cps);
}
