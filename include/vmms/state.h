/* The VM state machine of the management service: pure logic, no I/O.
 *
 * A VM has a power state (Off, Starting, Running, Paused, Saved, Stopping, Saving, Restoring)
 * and at most one
 * long operation in progress (Taking/Applying/Deleting Checkpoint, Merging Disk, Exporting,
 * Importing, Moving Storage). Every request and every event from a worker is an operation; vm_transition
 * says whether it is allowed from the current status and what the status becomes. A refused
 * operation is Hyper-V's error 32788 (configuration conflict). */
#ifndef VIRIDIAN_VMMS_STATE_H
#define VIRIDIAN_VMMS_STATE_H

#include <stdbool.h>

#define VMMS_ERR_CONFLICT 32788 /* Hyper-V: the operation conflicts with the VM's state */

enum vm_state {
	VM_OFF,
	VM_STARTING,
	VM_RUNNING,
	VM_PAUSED,
	VM_SAVED,
	VM_STOPPING,
	/* appended: the inventory stores the number */
	VM_SAVING,              /* Save-VM: the worker writes the saved state, then is turned off */
	VM_RESTORING,           /* Start-VM of a Saved VM: the worker starts from the saved state */
	VM_STATE_COUNT,
};

enum vm_opstate {
	VM_OPS_NONE,
	VM_OPS_TAKING_CHECKPOINT,
	VM_OPS_APPLYING_CHECKPOINT,
	VM_OPS_DELETING_CHECKPOINT,
	VM_OPS_MERGING_DISK,
	VM_OPS_EXPORTING,
	VM_OPS_IMPORTING,
	VM_OPS_MOVING_STORAGE,  /* Move-VMStorage */
	VM_OPS_COUNT,
};

enum vm_op {
	/* requests */
	VM_OP_START,            /* Start-VM: Off -> Starting; Saved -> Restoring */
	VM_OP_STOP,             /* Stop-VM (graceful): Running -> Stopping */
	VM_OP_TURN_OFF,         /* Stop-VM -TurnOff: Starting/Running/Paused/Stopping/Restoring -> Stopping;
				 * Saved -> Off (the saved state is discarded) */
	VM_OP_PAUSE,            /* Suspend-VM: Running -> Paused */
	VM_OP_RESUME,           /* Resume-VM: Paused -> Running */
	VM_OP_SAVE,             /* Save-VM: Running/Paused -> Saving */
	VM_OP_DISCARD_SAVED,    /* Remove-VMSavedState: Saved -> Off */
	VM_OP_MODIFY,           /* Set-VM / Set-VMFirmware: Off only */
	VM_OP_REMOVE,           /* Remove-VM: Off/Saved */
	VM_OP_CHECKPOINT,       /* Checkpoint-VM: any stable state -> Taking Checkpoint */
	VM_OP_APPLY_CHECKPOINT, /* Restore-VMSnapshot: Off/Saved -> Applying Checkpoint */
	VM_OP_DELETE_CHECKPOINT,/* Remove-VMSnapshot: any stable state -> Deleting Checkpoint */
	VM_OP_MERGE_DISK,       /* any stable state -> Merging Disk */
	VM_OP_EXPORT,           /* Export-VM: any stable state -> Exporting */
	VM_OP_IMPORT,           /* Import-VM: a new VM, Off -> Importing */
	VM_OP_MOVE_STORAGE,     /* Move-VMStorage: any stable state -> Moving Storage */
	/* events */
	VM_OP_WORKER_READY,     /* the worker answers: Starting/Restoring -> Running */
	VM_OP_WORKER_EXITED,    /* the worker is gone: Starting/Running/Paused/Stopping/Saving/Restoring -> Off
				 * (Saving: before the state was written; Restoring: the guest ran and powered off) */
	VM_OP_STOP_FAILED,      /* the guest ignored the shutdown: Stopping -> Running */
	VM_OP_SAVE_DONE,        /* the saved state is complete and the worker gone: Saving -> Saved */
	VM_OP_SAVE_FAILED,      /* the worker could not save and runs on: Saving -> Running */
	VM_OP_RESTORE_FAILED,   /* the worker refused the saved state: Restoring -> Saved */
	VM_OP_FINISH,           /* the operation in progress ended: clears the operation state */
	VM_OP_COUNT,
};

struct vm_status {
	enum vm_state state;
	enum vm_opstate op;
};

/* 0 and *next filled when allowed; VMMS_ERR_CONFLICT (next untouched) when refused. */
int vm_transition(struct vm_status cur, enum vm_op op, struct vm_status *next);
bool vm_op_allowed(struct vm_status cur, enum vm_op op);

const char *vm_state_name(enum vm_state s);        /* "Off", "Running" ... */
const char *vm_opstate_name(enum vm_opstate o);    /* "", "Taking Checkpoint" ... */
const char *vm_op_name(enum vm_op op);             /* "start", "stop" ... */
/* Name -> value (case-insensitive); -1 when unknown. */
int vm_state_parse(const char *name);
int vm_opstate_parse(const char *name);
/* Does the VM have a worker process in this state? */
bool vm_state_has_worker(enum vm_state s);

#endif
