/* The VM state machine: one table row per operation. */
#include <stddef.h>
#include <strings.h>

#include "vmms/state.h"

#define S(x) (1u << (x))
#define STABLE (S(VM_OFF) | S(VM_RUNNING) | S(VM_PAUSED) | S(VM_SAVED))
#define SAME (-1)

enum op_need { NEED_IDLE, NEED_ANY, NEED_BUSY }; /* operation state required */

static const struct {
	unsigned from;     /* allowed power states */
	enum op_need need;
	int to_state;      /* SAME: unchanged */
	int to_op;         /* SAME: unchanged */
} table[VM_OP_COUNT] = {
	[VM_OP_START] = { S(VM_OFF) | S(VM_SAVED), NEED_IDLE, VM_STARTING, SAME },
	[VM_OP_STOP] = { S(VM_RUNNING), NEED_IDLE, VM_STOPPING, SAME },
	[VM_OP_TURN_OFF] = { S(VM_STARTING) | S(VM_RUNNING) | S(VM_PAUSED) | S(VM_STOPPING) | S(VM_RESTORING) | S(VM_SAVED),
			     NEED_IDLE, VM_STOPPING, SAME },
	[VM_OP_PAUSE] = { S(VM_RUNNING), NEED_IDLE, VM_PAUSED, SAME },
	[VM_OP_RESUME] = { S(VM_PAUSED), NEED_IDLE, VM_RUNNING, SAME },
	[VM_OP_SAVE] = { S(VM_RUNNING) | S(VM_PAUSED), NEED_IDLE, VM_SAVING, SAME },
	[VM_OP_DISCARD_SAVED] = { S(VM_SAVED), NEED_IDLE, VM_OFF, SAME },
	[VM_OP_MODIFY] = { S(VM_OFF), NEED_IDLE, SAME, SAME },
	[VM_OP_REMOVE] = { S(VM_OFF) | S(VM_SAVED), NEED_IDLE, VM_OFF, SAME },
	[VM_OP_CHECKPOINT] = { STABLE, NEED_IDLE, SAME, VM_OPS_TAKING_CHECKPOINT },
	[VM_OP_APPLY_CHECKPOINT] = { S(VM_OFF) | S(VM_SAVED), NEED_IDLE, SAME, VM_OPS_APPLYING_CHECKPOINT },
	[VM_OP_DELETE_CHECKPOINT] = { STABLE, NEED_IDLE, SAME, VM_OPS_DELETING_CHECKPOINT },
	[VM_OP_MERGE_DISK] = { STABLE, NEED_IDLE, SAME, VM_OPS_MERGING_DISK },
	[VM_OP_EXPORT] = { STABLE, NEED_IDLE, SAME, VM_OPS_EXPORTING },
	[VM_OP_IMPORT] = { S(VM_OFF), NEED_IDLE, SAME, VM_OPS_IMPORTING },
	[VM_OP_MOVE_STORAGE] = { STABLE, NEED_IDLE, SAME, VM_OPS_MOVING_STORAGE },
	[VM_OP_WORKER_READY] = { S(VM_STARTING) | S(VM_RESTORING), NEED_IDLE, VM_RUNNING, SAME },
	[VM_OP_WORKER_EXITED] = { S(VM_STARTING) | S(VM_RUNNING) | S(VM_PAUSED) | S(VM_STOPPING) | S(VM_SAVING) | S(VM_RESTORING),
				  NEED_ANY, VM_OFF, VM_OPS_NONE },
	[VM_OP_STOP_FAILED] = { S(VM_STOPPING), NEED_IDLE, VM_RUNNING, SAME },
	[VM_OP_SAVE_DONE] = { S(VM_SAVING), NEED_IDLE, VM_SAVED, SAME },
	[VM_OP_SAVE_FAILED] = { S(VM_SAVING), NEED_IDLE, VM_RUNNING, SAME },
	[VM_OP_RESTORE_FAILED] = { S(VM_RESTORING), NEED_IDLE, VM_SAVED, SAME },
	[VM_OP_FINISH] = { S(VM_OFF) | S(VM_STARTING) | S(VM_RUNNING) | S(VM_PAUSED) | S(VM_SAVED) | S(VM_STOPPING) |
			   S(VM_SAVING) | S(VM_RESTORING), NEED_BUSY, SAME, VM_OPS_NONE },
};

/* A Saved VM has no worker, so two operations lead elsewhere from there: Start-VM restores it,
 * a turn-off discards the saved state at once. */
static const struct { enum vm_op op; enum vm_state to; } from_saved[] = {
	{ VM_OP_START, VM_RESTORING },
	{ VM_OP_TURN_OFF, VM_OFF },
};

int vm_transition(struct vm_status cur, enum vm_op op, struct vm_status *next)
{
	if ((unsigned)op >= VM_OP_COUNT || (unsigned)cur.state >= VM_STATE_COUNT || (unsigned)cur.op >= VM_OPS_COUNT)
		return VMMS_ERR_CONFLICT;
	if (!(table[op].from & S(cur.state)))
		return VMMS_ERR_CONFLICT;
	if ((table[op].need == NEED_IDLE && cur.op != VM_OPS_NONE) || (table[op].need == NEED_BUSY && cur.op == VM_OPS_NONE))
		return VMMS_ERR_CONFLICT;
	next->state = table[op].to_state == SAME ? cur.state : (enum vm_state)table[op].to_state;
	for (size_t i = 0; cur.state == VM_SAVED && i < sizeof(from_saved) / sizeof(from_saved[0]); i++)
		if (from_saved[i].op == op)
			next->state = from_saved[i].to;
	next->op = table[op].to_op == SAME ? cur.op : (enum vm_opstate)table[op].to_op;
	return 0;
}

bool vm_op_allowed(struct vm_status cur, enum vm_op op)
{
	struct vm_status n;
	return vm_transition(cur, op, &n) == 0;
}

static const char *const state_names[VM_STATE_COUNT] = { "Off", "Starting", "Running", "Paused", "Saved", "Stopping",
							 "Saving", "Restoring" };
static const char *const opstate_names[VM_OPS_COUNT] = {
	"", "Taking Checkpoint", "Applying Checkpoint", "Deleting Checkpoint", "Merging Disk", "Exporting", "Importing",
	"Moving Storage",
};
static const char *const op_names[VM_OP_COUNT] = {
	"start", "stop", "turn-off", "pause", "resume", "save", "discard-saved", "modify", "remove", "checkpoint",
	"apply-checkpoint", "delete-checkpoint", "merge-disk", "export", "import", "move-storage", "worker-ready",
	"worker-exited", "stop-failed", "save-done", "save-failed", "restore-failed", "finish",
};

const char *vm_state_name(enum vm_state s)
{
	return (unsigned)s < VM_STATE_COUNT ? state_names[s] : "Unknown";
}

const char *vm_opstate_name(enum vm_opstate o)
{
	return (unsigned)o < VM_OPS_COUNT ? opstate_names[o] : "Unknown";
}

const char *vm_op_name(enum vm_op op)
{
	return (unsigned)op < VM_OP_COUNT ? op_names[op] : "unknown";
}

int vm_state_parse(const char *name)
{
	for (int i = 0; name && i < VM_STATE_COUNT; i++)
		if (!strcasecmp(name, state_names[i]))
			return i;
	return -1;
}

int vm_opstate_parse(const char *name)
{
	for (int i = 0; name && i < VM_OPS_COUNT; i++)
		if (!strcasecmp(name, opstate_names[i]))
			return i;
	return -1;
}

bool vm_state_has_worker(enum vm_state s)
{
	return s == VM_STARTING || s == VM_RUNNING || s == VM_PAUSED || s == VM_STOPPING || s == VM_SAVING || s == VM_RESTORING;
}
