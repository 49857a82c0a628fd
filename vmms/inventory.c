/* The VM inventory in SQLite. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmms/inventory.h"

void (*inv_test_hook)(const char *where);

struct inventory {
	sqlite3 *db;
	char err[512];
	bool dup;
	int depth;    /* nested begin()s: only the outermost one is a SQLite transaction */
	bool doomed;  /* an inner change failed: the outer commit rolls back */
};

static const char schema[] =
	"PRAGMA foreign_keys=ON;"
	"CREATE TABLE IF NOT EXISTS vms ("
	" id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, generation INTEGER NOT NULL,"
	" cpus INTEGER NOT NULL, memory INTEGER NOT NULL, kernel TEXT, initrd TEXT, cmdline TEXT,"
	" notes TEXT NOT NULL DEFAULT '', auto_start TEXT NOT NULL, auto_stop TEXT NOT NULL,"
	" path TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0, opstate INTEGER NOT NULL DEFAULT 0,"
	" worker_pid INTEGER NOT NULL DEFAULT 0, worker_start INTEGER NOT NULL DEFAULT 0,"
	" created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS disks ("
	" vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE, controller INTEGER NOT NULL,"
	" lun INTEGER NOT NULL, path TEXT NOT NULL, PRIMARY KEY (vm_id, controller, lun));"
	/* DVD drives (Add-VMDvdDrive; a table of its own: an older vmms.db gains it here). path ''
	 * is a drive with no disc. */
	"CREATE TABLE IF NOT EXISTS dvd_drives ("
	" vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE, controller INTEGER NOT NULL,"
	" lun INTEGER NOT NULL, path TEXT NOT NULL DEFAULT '', PRIMARY KEY (vm_id, controller, lun));"
	/* Storage QoS by drive location (a table of its own: an older vmms.db gains it here). */
	"CREATE TABLE IF NOT EXISTS disk_qos ("
	" vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE, controller INTEGER NOT NULL,"
	" lun INTEGER NOT NULL, max_iops INTEGER NOT NULL DEFAULT 0, max_bandwidth INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (vm_id, controller, lun));"
	/* Resource metering: a row per VM while it is on (include/vmms/inventory.h). */
	"CREATE TABLE IF NOT EXISTS metering ("
	" vm_id TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE, since_ms INTEGER NOT NULL,"
	" running_ms INTEGER NOT NULL, cpu_ms INTEGER NOT NULL, ram_mb_ms INTEGER NOT NULL, ram_min_mb INTEGER NOT NULL,"
	" ram_max_mb INTEGER NOT NULL, disk_read INTEGER NOT NULL, disk_written INTEGER NOT NULL, disk_ops INTEGER NOT NULL,"
	" net_in INTEGER NOT NULL, net_out INTEGER NOT NULL, base_worker INTEGER NOT NULL, base_at_ms INTEGER NOT NULL,"
	" base_cpu_ticks INTEGER NOT NULL, base_read INTEGER NOT NULL, base_written INTEGER NOT NULL,"
	" base_ops INTEGER NOT NULL, base_in INTEGER NOT NULL, base_out INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS events ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,"
	" time_ms INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS events_vm ON events(vm_id, id);"
	"CREATE TABLE IF NOT EXISTS vm_ic ("
	" vm_id TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE, disabled INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	/* Virtual switches and network adapters (new tables: an older vmms.db gains them here). */
	"CREATE TABLE IF NOT EXISTS switches ("
	" id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, type TEXT NOT NULL,"
	" net_adapter TEXT NOT NULL DEFAULT '', host_adapter TEXT NOT NULL DEFAULT '',"
	" notes TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0, pid_start INTEGER NOT NULL DEFAULT 0,"
	" created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS nics ("
	" vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE, slot INTEGER NOT NULL, name TEXT NOT NULL,"
	" mac TEXT NOT NULL, static_mac INTEGER NOT NULL DEFAULT 0,"
	" switch_id TEXT REFERENCES switches(id) ON DELETE SET NULL, vlan INTEGER NOT NULL DEFAULT 0,"
	" mac_spoofing INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (vm_id, slot));"
	"CREATE INDEX IF NOT EXISTS nics_switch ON nics(switch_id);"
	/* Checkpoints, the images of their chains and the journal of multi-step operations. */
	"CREATE TABLE IF NOT EXISTS checkpoints ("
	" id TEXT PRIMARY KEY, vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE, name TEXT NOT NULL,"
	" parent_id TEXT, created_ms INTEGER NOT NULL, type TEXT NOT NULL, state_file TEXT,"
	" cpus INTEGER NOT NULL, memory INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS checkpoint_disks ("
	" cp_id TEXT NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE, controller INTEGER NOT NULL,"
	" lun INTEGER NOT NULL, path TEXT NOT NULL, PRIMARY KEY (cp_id, controller, lun));"
	"CREATE TABLE IF NOT EXISTS images ("
	" path TEXT PRIMARY KEY, vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE, parent TEXT,"
	" owned INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS journal ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, vm_id TEXT NOT NULL, kind TEXT NOT NULL, step TEXT NOT NULL,"
	" data TEXT NOT NULL);";

/* Columns added to vms after its first release: an older vmms.db gains them. */
static const char *const vm_columns_added[][2] = {
	{ "checkpoint_type", "ALTER TABLE vms ADD COLUMN checkpoint_type TEXT NOT NULL DEFAULT 'Production'" },
	{ "parent_checkpoint", "ALTER TABLE vms ADD COLUMN parent_checkpoint TEXT NOT NULL DEFAULT ''" },
	{ "cpu_maximum", "ALTER TABLE vms ADD COLUMN cpu_maximum INTEGER NOT NULL DEFAULT 0" },
	{ "cpu_reserve", "ALTER TABLE vms ADD COLUMN cpu_reserve INTEGER NOT NULL DEFAULT 0" },
	{ "cpu_weight", "ALTER TABLE vms ADD COLUMN cpu_weight INTEGER NOT NULL DEFAULT 0" },
};

static int fail(struct inventory *inv, const char *what)
{
	inv->dup = sqlite3_extended_errcode(inv->db) == SQLITE_CONSTRAINT_UNIQUE;
	snprintf(inv->err, sizeof(inv->err), "%s: %s", what, sqlite3_errmsg(inv->db));
	return -1;
}

const char *inv_error(struct inventory *inv)
{
	return inv->err;
}

bool inv_last_dup(struct inventory *inv)
{
	return inv->dup;
}

struct inventory *inv_open(const char *db_path, char *err, size_t errlen)
{
	struct inventory *inv = calloc(1, sizeof(*inv));
	if (!inv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (sqlite3_open(db_path, &inv->db) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", db_path, inv->db ? sqlite3_errmsg(inv->db) : "cannot open");
		inv_close(inv);
		return NULL;
	}
	sqlite3_busy_timeout(inv->db, 5000);
	char *msg = NULL;
	if (sqlite3_exec(inv->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(inv->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", db_path, msg ? msg : "schema");
		sqlite3_free(msg);
		inv_close(inv);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(vm_columns_added) / sizeof(vm_columns_added[0]); i++) {
		char probe[96];
		sqlite3_stmt *st;
		snprintf(probe, sizeof(probe), "SELECT %s FROM vms LIMIT 0", vm_columns_added[i][0]);
		if (sqlite3_prepare_v2(inv->db, probe, -1, &st, NULL) == SQLITE_OK) {
			sqlite3_finalize(st);
			continue;
		}
		if (sqlite3_exec(inv->db, vm_columns_added[i][1], NULL, NULL, &msg) != SQLITE_OK) {
			snprintf(err, errlen, "%s: %s", db_path, msg ? msg : "schema");
			sqlite3_free(msg);
			inv_close(inv);
			return NULL;
		}
	}
	return inv;
}

void inv_close(struct inventory *inv)
{
	if (!inv)
		return;
	sqlite3_close(inv->db);
	free(inv);
}

static int exec(struct inventory *inv, const char *sql)
{
	if (sqlite3_exec(inv->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return fail(inv, sql);
	return 0;
}

static int begin(struct inventory *inv)
{
	if (inv->depth++)
		return 0;
	inv->dup = false;
	inv->doomed = false;
	if (exec(inv, "BEGIN IMMEDIATE") < 0) {
		inv->depth = 0;
		return -1;
	}
	return 0;
}

static int rollback(struct inventory *inv)
{
	char saved[sizeof(inv->err)];
	bool dup = inv->dup;
	memcpy(saved, inv->err, sizeof(saved));
	if (inv->depth > 1) {
		inv->depth--;
		inv->doomed = true;
		return -1;
	}
	inv->depth = 0;
	sqlite3_exec(inv->db, "ROLLBACK", NULL, NULL, NULL);
	memcpy(inv->err, saved, sizeof(saved));
	inv->dup = dup;
	return -1;
}

static int commit(struct inventory *inv)
{
	if (inv->depth > 1) {
		inv->depth--;
		return 0;
	}
	if (inv->doomed)
		return rollback(inv);
	if (exec(inv, "COMMIT") < 0) {
		inv->depth = 0;
		sqlite3_exec(inv->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	inv->depth = 0;
	return 0;
}

int inv_tx_begin(struct inventory *inv)
{
	return begin(inv);
}

int inv_tx_commit(struct inventory *inv)
{
	return commit(inv);
}

void inv_tx_rollback(struct inventory *inv)
{
	if (inv->depth)
		rollback(inv);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int add_event(struct inventory *inv, const char *id, const char *level, const char *msg)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "INSERT INTO events(vm_id, time_ms, level, message) VALUES (?,?,?,?)", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "event");
	bind_text(s, 1, id);
	sqlite3_bind_int64(s, 2, now_ms());
	bind_text(s, 3, level ? level : "Information");
	bind_text(s, 4, msg);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "event");
	sqlite3_finalize(s);
	return rc;
}

/* Replaces one drive table's rows of the VM (disks or dvd_drives). */
static int put_drives(struct inventory *inv, const char *table, const char *vm_id, const struct inv_disk *d, int n)
{
	sqlite3_stmt *s;
	char sql[128];
	snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE vm_id=?", table);
	if (sqlite3_prepare_v2(inv->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(inv, table);
	bind_text(s, 1, vm_id);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, table);
	sqlite3_finalize(s);
	if (rc < 0)
		return -1;
	if (inv_test_hook && !strcmp(table, "disks"))
		inv_test_hook("disks-deleted");
	snprintf(sql, sizeof(sql), "INSERT INTO %s(vm_id, controller, lun, path) VALUES (?,?,?,?)", table);
	if (sqlite3_prepare_v2(inv->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(inv, table);
	for (int i = 0; i < n && rc == 0; i++) {
		sqlite3_reset(s);
		bind_text(s, 1, vm_id);
		sqlite3_bind_int(s, 2, d[i].controller);
		sqlite3_bind_int(s, 3, d[i].lun);
		bind_text(s, 4, d[i].path ? d[i].path : "");
		if (sqlite3_step(s) != SQLITE_DONE)
			rc = fail(inv, table);
	}
	sqlite3_finalize(s);
	if (rc == 0 && !strcmp(table, "disks")) {
		/* a removed drive's QoS goes with it */
		if (sqlite3_prepare_v2(inv->db, "DELETE FROM disk_qos WHERE vm_id=?1 AND NOT EXISTS (SELECT 1 FROM disks d "
					   "WHERE d.vm_id=?1 AND d.controller=disk_qos.controller AND d.lun=disk_qos.lun)",
				       -1, &s, NULL) != SQLITE_OK)
			return fail(inv, "disk QoS");
		bind_text(s, 1, vm_id);
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "disk QoS");
		sqlite3_finalize(s);
	}
	return rc;
}

static int put_disks(struct inventory *inv, const struct inv_vm *vm)
{
	if (put_drives(inv, "disks", vm->id, vm->disks, vm->ndisks) < 0 ||
	    put_drives(inv, "dvd_drives", vm->id, vm->dvds, vm->ndvds) < 0)
		return -1;
	sqlite3_stmt *s;
	int rc;
	if (sqlite3_prepare_v2(inv->db, "INSERT OR REPLACE INTO vm_ic(vm_id, disabled) VALUES (?,?)", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "integration services");
	bind_text(s, 1, vm->id);
	sqlite3_bind_int64(s, 2, vm->ic_disabled);
	rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "integration services");
	sqlite3_finalize(s);
	return rc;
}

/* Parameters ?1..?11 and ?14..?18 of both the INSERT and the UPDATE: a VM's id and configuration. */
static void bind_config(sqlite3_stmt *s, const struct inv_vm *vm)
{
	bind_text(s, 1, vm->id);
	bind_text(s, 2, vm->name);
	sqlite3_bind_int(s, 3, vm->generation);
	sqlite3_bind_int(s, 4, vm->cpus);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)vm->memory);
	bind_text(s, 6, vm->kernel);
	bind_text(s, 7, vm->initrd);
	bind_text(s, 8, vm->cmdline);
	bind_text(s, 9, vm->notes ? vm->notes : "");
	bind_text(s, 10, vm->auto_start ? vm->auto_start : "StartIfRunning");
	bind_text(s, 11, vm->auto_stop ? vm->auto_stop : "Save");
	bind_text(s, 14, vm->checkpoint_type[0] ? vm->checkpoint_type : "Production");
	bind_text(s, 15, vm->parent_checkpoint);
	sqlite3_bind_int(s, 16, vm->cpu_maximum);
	sqlite3_bind_int(s, 17, vm->cpu_reserve);
	sqlite3_bind_int(s, 18, vm->cpu_weight);
}

/* A new VM's drives' storage QoS (an imported VM brings its own). */
static int put_disk_qos(struct inventory *inv, const struct inv_vm *vm)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "INSERT INTO disk_qos(vm_id, controller, lun, max_iops, max_bandwidth) VALUES (?,?,?,?,?)",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "disk QoS");
	int rc = 0;
	for (int i = 0; i < vm->ndisks && rc == 0; i++) {
		const struct inv_disk *d = &vm->disks[i];
		if (!d->max_iops && !d->max_bandwidth)
			continue;
		sqlite3_reset(s);
		bind_text(s, 1, vm->id);
		sqlite3_bind_int(s, 2, d->controller);
		sqlite3_bind_int(s, 3, d->lun);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)d->max_iops);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)d->max_bandwidth);
		if (sqlite3_step(s) != SQLITE_DONE)
			rc = fail(inv, "disk QoS");
	}
	sqlite3_finalize(s);
	return rc;
}

int inv_create(struct inventory *inv, const struct inv_vm *vm)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db,
			       "INSERT INTO vms(id, name, generation, cpus, memory, kernel, initrd, cmdline, notes,"
			       " auto_start, auto_stop, path, created, checkpoint_type, parent_checkpoint, cpu_maximum,"
			       " cpu_reserve, cpu_weight) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "create"), rollback(inv);
	bind_config(s, vm);
	bind_text(s, 12, vm->path);
	sqlite3_bind_int64(s, 13, vm->created ? vm->created : (int64_t)time(NULL));
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "create");
	sqlite3_finalize(s);
	if (rc < 0 && inv->dup)
		snprintf(inv->err, sizeof(inv->err), "a virtual machine named '%s' already exists", vm->name);
	if (rc < 0 || put_disks(inv, vm) < 0 || put_disk_qos(inv, vm) < 0 ||
	    add_event(inv, vm->id, "Information", "virtual machine created") < 0)
		return rollback(inv);
	return commit(inv);
}

static char *col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? strdup((const char *)t) : NULL;
}

#define VM_COLUMNS "id, name, generation, cpus, memory, kernel, initrd, cmdline, notes, auto_start," \
		   " auto_stop, path, state, opstate, worker_pid, worker_start, created, checkpoint_type, parent_checkpoint," \
		   " cpu_maximum, cpu_reserve, cpu_weight"

/* One drive table's rows of the VM in location order; the count or -1. */
static int read_drives(struct inventory *inv, const char *table, const char *vm_id, struct inv_disk *out)
{
	sqlite3_stmt *s;
	char sql[192];
	bool disks = !strcmp(table, "disks");
	if (disks)
		snprintf(sql, sizeof(sql), "SELECT d.controller, d.lun, d.path, q.max_iops, q.max_bandwidth FROM disks d LEFT JOIN "
			 "disk_qos q USING (vm_id, controller, lun) WHERE d.vm_id=? ORDER BY d.controller, d.lun");
	else
		snprintf(sql, sizeof(sql), "SELECT controller, lun, path FROM %s WHERE vm_id=? ORDER BY controller, lun", table);
	if (sqlite3_prepare_v2(inv->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(inv, table);
	bind_text(s, 1, vm_id);
	int n = 0;
	while (sqlite3_step(s) == SQLITE_ROW && n < INV_MAX_DISKS) {
		struct inv_disk *d = &out[n++];
		d->controller = sqlite3_column_int(s, 0);
		d->lun = sqlite3_column_int(s, 1);
		d->path = col_dup(s, 2);
		d->max_iops = disks ? (uint64_t)sqlite3_column_int64(s, 3) : 0; /* NULL (no row) reads 0 */
		d->max_bandwidth = disks ? (uint64_t)sqlite3_column_int64(s, 4) : 0;
	}
	sqlite3_finalize(s);
	return n;
}

static int read_disks(struct inventory *inv, struct inv_vm *vm)
{
	sqlite3_stmt *s;
	vm->ndisks = read_drives(inv, "disks", vm->id, vm->disks);
	vm->ndvds = read_drives(inv, "dvd_drives", vm->id, vm->dvds);
	if (vm->ndisks < 0 || vm->ndvds < 0) {
		vm->ndisks = vm->ndisks < 0 ? 0 : vm->ndisks;
		vm->ndvds = vm->ndvds < 0 ? 0 : vm->ndvds;
		return -1;
	}
	vm->ic_disabled = 0;
	if (sqlite3_prepare_v2(inv->db, "SELECT disabled FROM vm_ic WHERE vm_id=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "integration services");
	bind_text(s, 1, vm->id);
	if (sqlite3_step(s) == SQLITE_ROW)
		vm->ic_disabled = (unsigned)sqlite3_column_int64(s, 0) & ((1u << INV_IC_COUNT) - 1);
	sqlite3_finalize(s);
	return 0;
}

static void read_row(sqlite3_stmt *s, struct inv_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	const unsigned char *id = sqlite3_column_text(s, 0);
	snprintf(vm->id, sizeof(vm->id), "%s", id ? (const char *)id : "");
	vm->name = col_dup(s, 1);
	vm->generation = sqlite3_column_int(s, 2);
	vm->cpus = sqlite3_column_int(s, 3);
	vm->memory = (uint64_t)sqlite3_column_int64(s, 4);
	vm->kernel = col_dup(s, 5);
	vm->initrd = col_dup(s, 6);
	vm->cmdline = col_dup(s, 7);
	vm->notes = col_dup(s, 8);
	vm->auto_start = col_dup(s, 9);
	vm->auto_stop = col_dup(s, 10);
	vm->path = col_dup(s, 11);
	int st = sqlite3_column_int(s, 12), op = sqlite3_column_int(s, 13);
	vm->status.state = st >= 0 && st < VM_STATE_COUNT ? (enum vm_state)st : VM_OFF;
	vm->status.op = op >= 0 && op < VM_OPS_COUNT ? (enum vm_opstate)op : VM_OPS_NONE;
	vm->worker_pid = (pid_t)sqlite3_column_int64(s, 14);
	vm->worker_start = (uint64_t)sqlite3_column_int64(s, 15);
	vm->created = sqlite3_column_int64(s, 16);
	const unsigned char *ct = sqlite3_column_text(s, 17), *pc = sqlite3_column_text(s, 18);
	snprintf(vm->checkpoint_type, sizeof(vm->checkpoint_type), "%s", ct ? (const char *)ct : "Production");
	snprintf(vm->parent_checkpoint, sizeof(vm->parent_checkpoint), "%s", pc ? (const char *)pc : "");
	vm->cpu_maximum = sqlite3_column_int(s, 19);
	vm->cpu_reserve = sqlite3_column_int(s, 20);
	vm->cpu_weight = sqlite3_column_int(s, 21);
}

int inv_find(struct inventory *inv, const char *name_or_id, struct inv_vm *out)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "SELECT " VM_COLUMNS " FROM vms WHERE id=lower(?1) OR name=?1 COLLATE NOCASE", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "find");
	bind_text(s, 1, name_or_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		read_row(s, out);
		sqlite3_finalize(s);
		return read_disks(inv, out) < 0 ? -1 : 1;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return fail(inv, "find");
	return 0;
}

int inv_list(struct inventory *inv, struct inv_vm **out, int *count)
{
	sqlite3_stmt *s;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(inv->db, "SELECT " VM_COLUMNS " FROM vms ORDER BY name COLLATE NOCASE", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "list");
	int n = 0, cap = 0;
	struct inv_vm *v = NULL;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct inv_vm *nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		read_row(s, &v[n++]);
	}
	sqlite3_finalize(s);
	for (int i = 0; i < n; i++)
		read_disks(inv, &v[i]);
	*out = v;
	*count = n;
	return 0;
}

int inv_update(struct inventory *inv, const struct inv_vm *vm)
{
	return inv_update_event(inv, vm, "configuration changed");
}

int inv_update_event(struct inventory *inv, const struct inv_vm *vm, const char *event)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db,
			       "UPDATE vms SET name=?2, generation=?3, cpus=?4, memory=?5, kernel=?6, initrd=?7,"
			       " cmdline=?8, notes=?9, auto_start=?10, auto_stop=?11, checkpoint_type=?14, parent_checkpoint=?15,"
			       " cpu_maximum=?16, cpu_reserve=?17, cpu_weight=?18"
			       " WHERE id=?1",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "update"), rollback(inv);
	bind_config(s, vm);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "update");
	sqlite3_finalize(s);
	if (rc == 0 && inv_test_hook)
		inv_test_hook("vm-updated");
	if (rc < 0 || put_disks(inv, vm) < 0 || add_event(inv, vm->id, "Information", event) < 0)
		return rollback(inv);
	return commit(inv);
}

int inv_set_status(struct inventory *inv, const char *id, struct vm_status st, pid_t pid,
		   uint64_t start, const char *level, const char *event)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "UPDATE vms SET state=?2, opstate=?3, worker_pid=?4, worker_start=?5 WHERE id=?1", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "status"), rollback(inv);
	bind_text(s, 1, id);
	sqlite3_bind_int(s, 2, st.state);
	sqlite3_bind_int(s, 3, st.op);
	sqlite3_bind_int64(s, 4, pid);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)start);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "status");
	sqlite3_finalize(s);
	if (rc < 0 || (event && add_event(inv, id, level, event) < 0))
		return rollback(inv);
	return commit(inv);
}

int inv_remove(struct inventory *inv, const char *id)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "DELETE FROM vms WHERE id=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "remove"), rollback(inv);
	bind_text(s, 1, id);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "remove");
	sqlite3_finalize(s);
	return rc < 0 ? rollback(inv) : commit(inv);
}

int inv_set_disk_qos(struct inventory *inv, const char *id, int controller, int lun, uint64_t max_iops,
		     uint64_t max_bandwidth, const char *event)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	bool none = !max_iops && !max_bandwidth;
	if (sqlite3_prepare_v2(inv->db, none ? "DELETE FROM disk_qos WHERE vm_id=?1 AND controller=?2 AND lun=?3"
					     : "INSERT OR REPLACE INTO disk_qos(vm_id, controller, lun, max_iops, max_bandwidth)"
					       " SELECT ?1, ?2, ?3, ?4, ?5 FROM disks WHERE vm_id=?1 AND controller=?2 AND lun=?3",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "disk QoS"), rollback(inv);
	bind_text(s, 1, id);
	sqlite3_bind_int(s, 2, controller);
	sqlite3_bind_int(s, 3, lun);
	if (!none) {
		sqlite3_bind_int64(s, 4, (sqlite3_int64)max_iops);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)max_bandwidth);
	}
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "disk QoS");
	sqlite3_finalize(s);
	if (rc == 0 && !none && sqlite3_changes(inv->db) != 1) {
		snprintf(inv->err, sizeof(inv->err), "no hard disk drive at %d:%d", controller, lun);
		rc = -1;
	}
	if (rc < 0 || add_event(inv, id, "Information", event) < 0)
		return rollback(inv);
	return commit(inv);
}

#define METERING_COLUMNS "since_ms, running_ms, cpu_ms, ram_mb_ms, ram_min_mb, ram_max_mb, disk_read, disk_written," \
			 " disk_ops, net_in, net_out, base_worker, base_at_ms, base_cpu_ticks, base_read, base_written," \
			 " base_ops, base_in, base_out"
#define METERING_FIELDS 19

/* The row's fields in METERING_COLUMNS order. */
static int64_t *metering_field(struct inv_metering *m, int i)
{
	int64_t *f[METERING_FIELDS] = { &m->since_ms, &m->running_ms, &m->cpu_ms, &m->ram_mb_ms, &m->ram_min_mb,
					&m->ram_max_mb, &m->disk_read, &m->disk_written, &m->disk_ops, &m->net_in,
					&m->net_out, &m->base_worker, &m->base.at_ms, &m->base.cpu_ticks, &m->base.read,
					&m->base.written, &m->base.ops, &m->base.in, &m->base.out };
	return f[i];
}

int inv_metering_get(struct inventory *inv, const char *id, struct inv_metering *out)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "SELECT " METERING_COLUMNS " FROM metering WHERE vm_id=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "metering");
	bind_text(s, 1, id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		for (int i = 0; i < METERING_FIELDS; i++)
			*metering_field(out, i) = sqlite3_column_int64(s, i);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : fail(inv, "metering");
}

int inv_metering_put(struct inventory *inv, const char *id, const struct inv_metering *m)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "INSERT OR REPLACE INTO metering(vm_id, " METERING_COLUMNS ") VALUES (?1,"
				   "?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "metering");
	bind_text(s, 1, id);
	struct inv_metering copy = *m;
	for (int i = 0; i < METERING_FIELDS; i++)
		sqlite3_bind_int64(s, i + 2, *metering_field(&copy, i));
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "metering");
	sqlite3_finalize(s);
	return rc;
}

int inv_metering_delete(struct inventory *inv, const char *id)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "DELETE FROM metering WHERE vm_id=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "metering");
	bind_text(s, 1, id);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "metering");
	sqlite3_finalize(s);
	return rc;
}

int inv_add_event(struct inventory *inv, const char *id, const char *level, const char *msg)
{
	if (begin(inv) < 0)
		return -1;
	return add_event(inv, id, level, msg) < 0 ? rollback(inv) : commit(inv);
}

int inv_events(struct inventory *inv, const char *id, struct inv_event *out, int max)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db,
			       "SELECT id, time_ms, level, message FROM (SELECT * FROM events WHERE vm_id=? ORDER BY id DESC LIMIT ?) ORDER BY id",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "events");
	bind_text(s, 1, id);
	sqlite3_bind_int(s, 2, max);
	int n = 0;
	while (n < max && sqlite3_step(s) == SQLITE_ROW) {
		out[n].id = sqlite3_column_int64(s, 0);
		out[n].time_ms = sqlite3_column_int64(s, 1);
		const unsigned char *l = sqlite3_column_text(s, 2), *m = sqlite3_column_text(s, 3);
		snprintf(out[n].level, sizeof(out[n].level), "%s", l ? (const char *)l : "");
		snprintf(out[n].message, sizeof(out[n].message), "%s", m ? (const char *)m : "");
		n++;
	}
	sqlite3_finalize(s);
	return n;
}

void inv_vm_free(struct inv_vm *vm)
{
	free(vm->name);
	free(vm->kernel);
	free(vm->initrd);
	free(vm->cmdline);
	free(vm->notes);
	free(vm->auto_start);
	free(vm->auto_stop);
	free(vm->path);
	for (int i = 0; i < vm->ndisks; i++)
		free(vm->disks[i].path);
	for (int i = 0; i < vm->ndvds; i++)
		free(vm->dvds[i].path);
	memset(vm, 0, sizeof(*vm));
}

int inv_meta_get(struct inventory *inv, const char *key, char *out, size_t len)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "SELECT value FROM meta WHERE key=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "meta");
	bind_text(s, 1, key);
	int rc = 0;
	if (sqlite3_step(s) == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		snprintf(out, len, "%s", v ? (const char *)v : "");
		rc = 1;
	}
	sqlite3_finalize(s);
	return rc;
}

int inv_meta_set(struct inventory *inv, const char *key, const char *value)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "meta");
	bind_text(s, 1, key);
	bind_text(s, 2, value);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "meta");
	sqlite3_finalize(s);
	return rc;
}

/* ---- virtual switches and network adapters ---- */

static void col_copy(sqlite3_stmt *s, int i, char *out, size_t len)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	snprintf(out, len, "%s", t ? (const char *)t : "");
}

int inv_switch_create(struct inventory *inv, const struct inv_switch *sw)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db,
			       "INSERT INTO switches(id, name, type, net_adapter, host_adapter, notes, created)"
			       " VALUES (?,?,?,?,?,?,?)", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "switch"), rollback(inv);
	bind_text(s, 1, sw->id);
	bind_text(s, 2, sw->name);
	bind_text(s, 3, sw->type);
	bind_text(s, 4, sw->net_adapter);
	bind_text(s, 5, sw->host_adapter);
	bind_text(s, 6, sw->notes);
	sqlite3_bind_int64(s, 7, sw->created ? sw->created : (int64_t)time(NULL));
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "switch");
	sqlite3_finalize(s);
	if (rc < 0 && inv->dup)
		snprintf(inv->err, sizeof(inv->err), "a virtual switch named '%s' already exists", sw->name);
	return rc < 0 ? rollback(inv) : commit(inv);
}

#define SWITCH_COLUMNS "id, name, type, net_adapter, host_adapter, notes, pid, pid_start, created"

static void read_switch(sqlite3_stmt *s, struct inv_switch *sw)
{
	memset(sw, 0, sizeof(*sw));
	col_copy(s, 0, sw->id, sizeof(sw->id));
	col_copy(s, 1, sw->name, sizeof(sw->name));
	col_copy(s, 2, sw->type, sizeof(sw->type));
	col_copy(s, 3, sw->net_adapter, sizeof(sw->net_adapter));
	col_copy(s, 4, sw->host_adapter, sizeof(sw->host_adapter));
	col_copy(s, 5, sw->notes, sizeof(sw->notes));
	sw->pid = (pid_t)sqlite3_column_int64(s, 6);
	sw->pid_start = (uint64_t)sqlite3_column_int64(s, 7);
	sw->created = sqlite3_column_int64(s, 8);
}

int inv_switch_find(struct inventory *inv, const char *name_or_id, struct inv_switch *out)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "SELECT " SWITCH_COLUMNS " FROM switches WHERE id=lower(?1) OR name=?1 COLLATE NOCASE",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "switch");
	bind_text(s, 1, name_or_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		read_switch(s, out);
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail(inv, "switch");
	return rc == SQLITE_ROW;
}

int inv_switch_list(struct inventory *inv, struct inv_switch **out, int *count)
{
	sqlite3_stmt *s;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(inv->db, "SELECT " SWITCH_COLUMNS " FROM switches ORDER BY name COLLATE NOCASE", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "switches");
	int n = 0, cap = 0, rc = 0;
	struct inv_switch *v = NULL;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			struct inv_switch *nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv) {
				rc = -1;
				snprintf(inv->err, sizeof(inv->err), "switches: out of memory");
				break;
			}
			v = nv;
		}
		read_switch(s, &v[n++]);
	}
	sqlite3_finalize(s);
	*out = v;
	*count = n;
	return rc;
}

int inv_switch_set_runtime(struct inventory *inv, const char *id, pid_t pid, uint64_t start)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "UPDATE switches SET pid=?2, pid_start=?3 WHERE id=?1", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "switch");
	bind_text(s, 1, id);
	sqlite3_bind_int64(s, 2, pid);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)start);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, "switch");
	sqlite3_finalize(s);
	return rc;
}

static int step_once(struct inventory *inv, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(inv, what);
	sqlite3_finalize(s);
	return rc;
}

int inv_switch_remove(struct inventory *inv, const char *id, const char *event)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (event) {
		if (sqlite3_prepare_v2(inv->db,
				       "INSERT INTO events(vm_id, time_ms, level, message)"
				       " SELECT DISTINCT vm_id, ?2, 'Information', ?3 FROM nics WHERE switch_id=?1",
				       -1, &s, NULL) != SQLITE_OK)
			return fail(inv, "switch"), rollback(inv);
		bind_text(s, 1, id);
		sqlite3_bind_int64(s, 2, now_ms());
		bind_text(s, 3, event);
		if (step_once(inv, s, "switch") < 0)
			return rollback(inv);
	}
	/* The adapters' switch_id becomes NULL (ON DELETE SET NULL). */
	if (sqlite3_prepare_v2(inv->db, "DELETE FROM switches WHERE id=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "switch"), rollback(inv);
	bind_text(s, 1, id);
	return step_once(inv, s, "switch") < 0 ? rollback(inv) : commit(inv);
}

int inv_nic_list(struct inventory *inv, const char *vm_id, struct inv_nic **out, int *count)
{
	sqlite3_stmt *s;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(inv->db,
			       "SELECT vm_id, slot, name, mac, static_mac, switch_id, vlan, mac_spoofing FROM nics"
			       " WHERE ?1 IS NULL OR vm_id=?1 ORDER BY vm_id, slot", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "network adapters");
	bind_text(s, 1, vm_id);
	int n = 0, cap = 0, rc = 0;
	struct inv_nic *v = NULL;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			struct inv_nic *nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv) {
				rc = -1;
				snprintf(inv->err, sizeof(inv->err), "network adapters: out of memory");
				break;
			}
			v = nv;
		}
		struct inv_nic *nic = &v[n++];
		memset(nic, 0, sizeof(*nic));
		col_copy(s, 0, nic->vm_id, sizeof(nic->vm_id));
		nic->slot = sqlite3_column_int(s, 1);
		col_copy(s, 2, nic->name, sizeof(nic->name));
		col_copy(s, 3, nic->mac, sizeof(nic->mac));
		nic->static_mac = sqlite3_column_int(s, 4) != 0;
		col_copy(s, 5, nic->switch_id, sizeof(nic->switch_id));
		nic->vlan = sqlite3_column_int(s, 6);
		nic->mac_spoofing = sqlite3_column_int(s, 7) != 0;
	}
	sqlite3_finalize(s);
	*out = v;
	*count = n;
	return rc;
}

int inv_nics_put(struct inventory *inv, const char *vm_id, const struct inv_nic *nics, int n, const char *event)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "DELETE FROM nics WHERE vm_id=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "network adapters"), rollback(inv);
	bind_text(s, 1, vm_id);
	if (step_once(inv, s, "network adapters") < 0)
		return rollback(inv);
	if (inv_test_hook)
		inv_test_hook("nics-deleted");
	if (sqlite3_prepare_v2(inv->db,
			       "INSERT INTO nics(vm_id, slot, name, mac, static_mac, switch_id, vlan, mac_spoofing)"
			       " VALUES (?,?,?,?,?,?,?,?)", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "network adapters"), rollback(inv);
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		sqlite3_reset(s);
		bind_text(s, 1, vm_id);
		sqlite3_bind_int(s, 2, nics[i].slot);
		bind_text(s, 3, nics[i].name);
		bind_text(s, 4, nics[i].mac);
		sqlite3_bind_int(s, 5, nics[i].static_mac);
		bind_text(s, 6, nics[i].switch_id[0] ? nics[i].switch_id : NULL);
		sqlite3_bind_int(s, 7, nics[i].vlan);
		sqlite3_bind_int(s, 8, nics[i].mac_spoofing);
		if (sqlite3_step(s) != SQLITE_DONE)
			rc = fail(inv, "network adapter");
	}
	sqlite3_finalize(s);
	if (rc < 0 || (event && add_event(inv, vm_id, "Information", event) < 0))
		return rollback(inv);
	return commit(inv);
}

/* ---- checkpoints, the images of their chains, the journal ---- */

/* One statement with text parameters (NULL binds NULL), run once. */
static int run_text(struct inventory *inv, const char *sql, const char *what, int n, const char *const *v)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(inv, what);
	for (int i = 0; i < n; i++)
		bind_text(s, i + 1, v[i]);
	return step_once(inv, s, what);
}

int inv_cp_insert(struct inventory *inv, const struct inv_checkpoint *c)
{
	if (begin(inv) < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db,
			       "INSERT INTO checkpoints(id, vm_id, name, parent_id, created_ms, type, state_file, cpus, memory)"
			       " VALUES (?,?,?,?,?,?,?,?,?)", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "checkpoint"), rollback(inv);
	bind_text(s, 1, c->id);
	bind_text(s, 2, c->vm_id);
	bind_text(s, 3, c->name);
	bind_text(s, 4, c->parent_id[0] ? c->parent_id : NULL);
	sqlite3_bind_int64(s, 5, c->created_ms);
	bind_text(s, 6, c->type);
	bind_text(s, 7, c->state_file);
	sqlite3_bind_int(s, 8, c->cpus);
	sqlite3_bind_int64(s, 9, (sqlite3_int64)c->memory);
	if (step_once(inv, s, "checkpoint") < 0)
		return rollback(inv);
	if (sqlite3_prepare_v2(inv->db, "INSERT INTO checkpoint_disks(cp_id, controller, lun, path) VALUES (?,?,?,?)", -1, &s,
			       NULL) != SQLITE_OK)
		return fail(inv, "checkpoint disks"), rollback(inv);
	int rc = 0;
	for (int i = 0; i < c->ndisks && rc == 0; i++) {
		sqlite3_reset(s);
		bind_text(s, 1, c->id);
		sqlite3_bind_int(s, 2, c->disks[i].controller);
		sqlite3_bind_int(s, 3, c->disks[i].lun);
		bind_text(s, 4, c->disks[i].path);
		if (sqlite3_step(s) != SQLITE_DONE)
			rc = fail(inv, "checkpoint disk");
	}
	sqlite3_finalize(s);
	return rc < 0 ? rollback(inv) : commit(inv);
}

int inv_cp_list(struct inventory *inv, const char *vm_id, struct inv_checkpoint **out, int *count)
{
	sqlite3_stmt *s;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(inv->db,
			       "SELECT id, vm_id, name, parent_id, created_ms, type, state_file, cpus, memory FROM checkpoints"
			       " WHERE vm_id=? ORDER BY created_ms, rowid", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "checkpoints");
	bind_text(s, 1, vm_id);
	int n = 0, cap = 0, rc = 0;
	struct inv_checkpoint *v = NULL;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			struct inv_checkpoint *nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv) {
				rc = -1;
				snprintf(inv->err, sizeof(inv->err), "checkpoints: out of memory");
				break;
			}
			v = nv;
		}
		struct inv_checkpoint *c = &v[n++];
		memset(c, 0, sizeof(*c));
		col_copy(s, 0, c->id, sizeof(c->id));
		col_copy(s, 1, c->vm_id, sizeof(c->vm_id));
		col_copy(s, 2, c->name, sizeof(c->name));
		col_copy(s, 3, c->parent_id, sizeof(c->parent_id));
		c->created_ms = sqlite3_column_int64(s, 4);
		col_copy(s, 5, c->type, sizeof(c->type));
		c->state_file = col_dup(s, 6);
		c->cpus = sqlite3_column_int(s, 7);
		c->memory = (uint64_t)sqlite3_column_int64(s, 8);
	}
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(inv->db, "SELECT controller, lun, path FROM checkpoint_disks WHERE cp_id=? ORDER BY controller, lun",
			       -1, &s, NULL) != SQLITE_OK) {
		inv_cp_free(v, n);
		return fail(inv, "checkpoint disks");
	}
	for (int i = 0; i < n; i++) {
		sqlite3_reset(s);
		bind_text(s, 1, v[i].id);
		while (sqlite3_step(s) == SQLITE_ROW && v[i].ndisks < INV_MAX_DISKS) {
			struct inv_disk *d = &v[i].disks[v[i].ndisks++];
			d->controller = sqlite3_column_int(s, 0);
			d->lun = sqlite3_column_int(s, 1);
			d->path = col_dup(s, 2);
		}
	}
	sqlite3_finalize(s);
	*out = v;
	*count = n;
	return rc;
}

void inv_cp_free(struct inv_checkpoint *cps, int count)
{
	for (int i = 0; i < count; i++) {
		free(cps[i].state_file);
		for (int k = 0; k < cps[i].ndisks; k++)
			free(cps[i].disks[k].path);
	}
	free(cps);
}

int inv_cp_delete(struct inventory *inv, const char *id)
{
	return run_text(inv, "DELETE FROM checkpoints WHERE id=?", "checkpoint", 1, (const char *[]){ id });
}

int inv_cp_set_parent(struct inventory *inv, const char *id, const char *parent_id)
{
	return run_text(inv, "UPDATE checkpoints SET parent_id=?2 WHERE id=?1", "checkpoint", 2,
			(const char *[]){ id, parent_id && *parent_id ? parent_id : NULL });
}

int inv_cp_rename(struct inventory *inv, const char *id, const char *name)
{
	return run_text(inv, "UPDATE checkpoints SET name=?2 WHERE id=?1", "checkpoint", 2, (const char *[]){ id, name });
}

int inv_images(struct inventory *inv, const char *vm_id, struct inv_image **out, int *count)
{
	sqlite3_stmt *s;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(inv->db, "SELECT path, parent, owned FROM images WHERE vm_id=? ORDER BY rowid", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "images");
	bind_text(s, 1, vm_id);
	int n = 0, cap = 0, rc = 0;
	struct inv_image *v = NULL;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			struct inv_image *nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv) {
				rc = -1;
				snprintf(inv->err, sizeof(inv->err), "images: out of memory");
				break;
			}
			v = nv;
		}
		v[n].path = col_dup(s, 0);
		v[n].parent = col_dup(s, 1);
		v[n].owned = sqlite3_column_int(s, 2) != 0;
		n++;
	}
	sqlite3_finalize(s);
	*out = v;
	*count = n;
	return rc;
}

void inv_images_free(struct inv_image *imgs, int count)
{
	for (int i = 0; i < count; i++) {
		free(imgs[i].path);
		free(imgs[i].parent);
	}
	free(imgs);
}

int inv_image_put(struct inventory *inv, const char *vm_id, const char *path, const char *parent, bool owned)
{
	return run_text(inv, owned ? "INSERT OR REPLACE INTO images(path, vm_id, parent, owned) VALUES (?1,?2,?3,1)"
				   : "INSERT OR IGNORE INTO images(path, vm_id, parent, owned) VALUES (?1,?2,?3,0)",
			"image", 3, (const char *[]){ path, vm_id, parent });
}

int inv_image_drop(struct inventory *inv, const char *path)
{
	return run_text(inv, "DELETE FROM images WHERE path=?", "image", 1, (const char *[]){ path });
}

int inv_image_repath(struct inventory *inv, const char *vm_id, const char *from, const char *to)
{
	const char *v[] = { vm_id, from, to };
	if (begin(inv) < 0)
		return -1;
	if (run_text(inv, "UPDATE disks SET path=?3 WHERE vm_id=?1 AND path=?2", "disks", 3, v) < 0 ||
	    run_text(inv, "UPDATE checkpoint_disks SET path=?3 WHERE path=?2 AND cp_id IN (SELECT id FROM checkpoints WHERE vm_id=?1)",
		     "checkpoint disks", 3, v) < 0 ||
	    run_text(inv, "UPDATE images SET parent=?3 WHERE vm_id=?1 AND parent=?2", "images", 3, v) < 0)
		return rollback(inv);
	return commit(inv);
}

int inv_image_move(struct inventory *inv, const char *vm_id, const char *from, const char *to)
{
	const char *v[] = { vm_id, from, to };
	if (begin(inv) < 0)
		return -1;
	if (inv_image_repath(inv, vm_id, from, to) < 0 ||
	    run_text(inv, "UPDATE images SET path=?3 WHERE vm_id=?1 AND path=?2", "images", 3, v) < 0)
		return rollback(inv);
	return commit(inv);
}

int inv_set_path(struct inventory *inv, const char *id, const char *path)
{
	return run_text(inv, "UPDATE vms SET path=?2 WHERE id=?1", "path", 2, (const char *[]){ id, path });
}

int inv_cp_set_state_file(struct inventory *inv, const char *id, const char *state_file)
{
	return run_text(inv, "UPDATE checkpoints SET state_file=?2 WHERE id=?1", "checkpoint", 2, (const char *[]){ id, state_file });
}

int64_t inv_journal_add(struct inventory *inv, const char *vm_id, const char *kind, const char *step, const char *data)
{
	if (run_text(inv, "INSERT INTO journal(vm_id, kind, step, data) VALUES (?,?,?,?)", "journal", 4,
		     (const char *[]){ vm_id, kind, step, data }) < 0)
		return -1;
	return sqlite3_last_insert_rowid(inv->db);
}

int inv_journal_step(struct inventory *inv, int64_t id, const char *step, const char *data)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "UPDATE journal SET step=?2, data=coalesce(?3, data) WHERE id=?1", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "journal");
	sqlite3_bind_int64(s, 1, id);
	bind_text(s, 2, step);
	bind_text(s, 3, data);
	return step_once(inv, s, "journal");
}

int inv_journal_drop(struct inventory *inv, int64_t id)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(inv->db, "DELETE FROM journal WHERE id=?", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "journal");
	sqlite3_bind_int64(s, 1, id);
	return step_once(inv, s, "journal");
}

int inv_journal_list(struct inventory *inv, struct inv_journal **out, int *count)
{
	sqlite3_stmt *s;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(inv->db, "SELECT id, vm_id, kind, step, data FROM journal ORDER BY id", -1, &s, NULL) != SQLITE_OK)
		return fail(inv, "journal");
	int n = 0, cap = 0, rc = 0;
	struct inv_journal *v = NULL;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			struct inv_journal *nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv) {
				rc = -1;
				snprintf(inv->err, sizeof(inv->err), "journal: out of memory");
				break;
			}
			v = nv;
		}
		struct inv_journal *j = &v[n++];
		j->id = sqlite3_column_int64(s, 0);
		col_copy(s, 1, j->vm_id, sizeof(j->vm_id));
		col_copy(s, 2, j->kind, sizeof(j->kind));
		col_copy(s, 3, j->step, sizeof(j->step));
		j->data = col_dup(s, 4);
	}
	sqlite3_finalize(s);
	*out = v;
	*count = n;
	return rc;
}

void inv_journal_free(struct inv_journal *js, int count)
{
	for (int i = 0; i < count; i++)
		free(js[i].data);
	free(js);
}
