/* The VM state machine, exhaustively: every (state, operation state, operation) triple is
 * checked against an independent list of the allowed transitions and their results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "vmms/state.h"

enum { OFF = VM_OFF, STA = VM_STARTING, RUN = VM_RUNNING, PAU = VM_PAUSED, SAV = VM_SAVED, STO = VM_STOPPING,
       SVG = VM_SAVING, RES = VM_RESTORING };
enum { NONE = VM_OPS_NONE, TAK = VM_OPS_TAKING_CHECKPOINT, APP = VM_OPS_APPLYING_CHECKPOINT,
       DEL = VM_OPS_DELETING_CHECKPOINT, MER = VM_OPS_MERGING_DISK, EXP = VM_OPS_EXPORTING, IMP = VM_OPS_IMPORTING,
       MOV = VM_OPS_MOVING_STORAGE };
#define ANY_OP (-1)
#define BUSY (-2)
#define SAME (-1)

/* op, from state, from opstate (ANY_OP, BUSY or one), to state, to opstate (SAME: unchanged) */
static const struct { int op, st, ops, to_st, to_ops; } allowed[] = {
	{ VM_OP_START, OFF, NONE, STA, NONE },
	{ VM_OP_START, SAV, NONE, RES, NONE },
	{ VM_OP_STOP, RUN, NONE, STO, NONE },
	{ VM_OP_TURN_OFF, STA, NONE, STO, NONE },
	{ VM_OP_TURN_OFF, RUN, NONE, STO, NONE },
	{ VM_OP_TURN_OFF, PAU, NONE, STO, NONE },
	{ VM_OP_TURN_OFF, STO, NONE, STO, NONE },
	{ VM_OP_TURN_OFF, RES, NONE, STO, NONE },
	{ VM_OP_TURN_OFF, SAV, NONE, OFF, NONE },
	{ VM_OP_PAUSE, RUN, NONE, PAU, NONE },
	{ VM_OP_RESUME, PAU, NONE, RUN, NONE },
	{ VM_OP_SAVE, RUN, NONE, SVG, NONE },
	{ VM_OP_SAVE, PAU, NONE, SVG, NONE },
	{ VM_OP_DISCARD_SAVED, SAV, NONE, OFF, NONE },
	{ VM_OP_MODIFY, OFF, NONE, OFF, NONE },
	{ VM_OP_REMOVE, OFF, NONE, OFF, NONE },
	{ VM_OP_REMOVE, SAV, NONE, OFF, NONE },
	{ VM_OP_CHECKPOINT, OFF, NONE, OFF, TAK },
	{ VM_OP_CHECKPOINT, RUN, NONE, RUN, TAK },
	{ VM_OP_CHECKPOINT, PAU, NONE, PAU, TAK },
	{ VM_OP_CHECKPOINT, SAV, NONE, SAV, TAK },
	{ VM_OP_APPLY_CHECKPOINT, OFF, NONE, OFF, APP },
	{ VM_OP_APPLY_CHECKPOINT, SAV, NONE, SAV, APP },
	{ VM_OP_DELETE_CHECKPOINT, OFF, NONE, OFF, DEL },
	{ VM_OP_DELETE_CHECKPOINT, RUN, NONE, RUN, DEL },
	{ VM_OP_DELETE_CHECKPOINT, PAU, NONE, PAU, DEL },
	{ VM_OP_DELETE_CHECKPOINT, SAV, NONE, SAV, DEL },
	{ VM_OP_MERGE_DISK, OFF, NONE, OFF, MER },
	{ VM_OP_MERGE_DISK, RUN, NONE, RUN, MER },
	{ VM_OP_MERGE_DISK, PAU, NONE, PAU, MER },
	{ VM_OP_MERGE_DISK, SAV, NONE, SAV, MER },
	{ VM_OP_EXPORT, OFF, NONE, OFF, EXP },
	{ VM_OP_EXPORT, RUN, NONE, RUN, EXP },
	{ VM_OP_EXPORT, PAU, NONE, PAU, EXP },
	{ VM_OP_EXPORT, SAV, NONE, SAV, EXP },
	{ VM_OP_IMPORT, OFF, NONE, OFF, IMP },
	{ VM_OP_MOVE_STORAGE, OFF, NONE, OFF, MOV },
	{ VM_OP_MOVE_STORAGE, RUN, NONE, RUN, MOV },
	{ VM_OP_MOVE_STORAGE, PAU, NONE, PAU, MOV },
	{ VM_OP_MOVE_STORAGE, SAV, NONE, SAV, MOV },
	{ VM_OP_WORKER_READY, STA, NONE, RUN, NONE },
	{ VM_OP_WORKER_READY, RES, NONE, RUN, NONE },
	{ VM_OP_WORKER_EXITED, STA, ANY_OP, OFF, NONE },
	{ VM_OP_WORKER_EXITED, RUN, ANY_OP, OFF, NONE },
	{ VM_OP_WORKER_EXITED, PAU, ANY_OP, OFF, NONE },
	{ VM_OP_WORKER_EXITED, STO, ANY_OP, OFF, NONE },
	{ VM_OP_WORKER_EXITED, SVG, ANY_OP, OFF, NONE },
	{ VM_OP_WORKER_EXITED, RES, ANY_OP, OFF, NONE },
	{ VM_OP_STOP_FAILED, STO, NONE, RUN, NONE },
	{ VM_OP_SAVE_DONE, SVG, NONE, SAV, NONE },
	{ VM_OP_SAVE_FAILED, SVG, NONE, RUN, NONE },
	{ VM_OP_RESTORE_FAILED, RES, NONE, SAV, NONE },
	{ VM_OP_FINISH, OFF, BUSY, OFF, NONE },
	{ VM_OP_FINISH, STA, BUSY, STA, NONE },
	{ VM_OP_FINISH, RUN, BUSY, RUN, NONE },
	{ VM_OP_FINISH, PAU, BUSY, PAU, NONE },
	{ VM_OP_FINISH, SAV, BUSY, SAV, NONE },
	{ VM_OP_FINISH, STO, BUSY, STO, NONE },
	{ VM_OP_FINISH, SVG, BUSY, SVG, NONE },
	{ VM_OP_FINISH, RES, BUSY, RES, NONE },
};

static int expected(int op, int st, int ops, struct vm_status *to)
{
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		if (allowed[i].op != op || allowed[i].st != st)
			continue;
		bool match = allowed[i].ops == ANY_OP || (allowed[i].ops == BUSY && ops != NONE) || allowed[i].ops == ops;
		if (!match)
			continue;
		to->state = (enum vm_state)allowed[i].to_st;
		to->op = (enum vm_opstate)(allowed[i].to_ops == SAME ? ops : allowed[i].to_ops);
		return 0;
	}
	return VMMS_ERR_CONFLICT;
}

static void every_transition(void **state)
{
	(void)state;
	int allowed_n = 0, refused_n = 0;
	for (int op = 0; op < VM_OP_COUNT; op++)
		for (int st = 0; st < VM_STATE_COUNT; st++)
			for (int ops = 0; ops < VM_OPS_COUNT; ops++) {
				struct vm_status cur = { (enum vm_state)st, (enum vm_opstate)ops };
				struct vm_status want = { 0 }, got = { 99, 99 };
				int e = expected(op, st, ops, &want);
				int r = vm_transition(cur, (enum vm_op)op, &got);
				if (r != e || (e == 0 && (got.state != want.state || got.op != want.op)))
					fail_msg("%s from %s/%s: got %d -> %s/%s, want %d -> %s/%s", vm_op_name((enum vm_op)op),
						 vm_state_name(cur.state), vm_opstate_name(cur.op), r, vm_state_name(got.state),
						 vm_opstate_name(got.op), e, vm_state_name(want.state), vm_opstate_name(want.op));
				if (e) {
					assert_int_equal(got.state, 99); /* untouched when refused */
					assert_false(vm_op_allowed(cur, (enum vm_op)op));
					refused_n++;
				} else {
					assert_true(vm_op_allowed(cur, (enum vm_op)op));
					allowed_n++;
				}
			}
	/* Sanity: the table is neither everything nor nothing. */
	assert_int_equal(allowed_n + refused_n, VM_OP_COUNT * VM_STATE_COUNT * VM_OPS_COUNT);
	assert_true(allowed_n > 40 && refused_n > 600);
}

static void conflict_is_32788(void **state)
{
	(void)state;
	struct vm_status n;
	assert_int_equal(vm_transition((struct vm_status){ VM_RUNNING, VM_OPS_TAKING_CHECKPOINT }, VM_OP_STOP, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_RUNNING, VM_OPS_NONE }, VM_OP_REMOVE, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_OFF, VM_OPS_MERGING_DISK }, VM_OP_START, &n), 32788);
	/* a saved VM's configuration is what its saved state holds; a VM in transition takes nothing */
	assert_int_equal(vm_transition((struct vm_status){ VM_SAVED, VM_OPS_NONE }, VM_OP_MODIFY, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_OFF, VM_OPS_NONE }, VM_OP_SAVE, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_OFF, VM_OPS_NONE }, VM_OP_DISCARD_SAVED, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_SAVING, VM_OPS_NONE }, VM_OP_TURN_OFF, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_SAVING, VM_OPS_NONE }, VM_OP_SAVE, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_RESTORING, VM_OPS_NONE }, VM_OP_REMOVE, &n), 32788);
	/* out-of-range values are refused, not read past the table */
	assert_int_equal(vm_transition((struct vm_status){ VM_STATE_COUNT, VM_OPS_NONE }, VM_OP_START, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_OFF, VM_OPS_COUNT }, VM_OP_START, &n), 32788);
	assert_int_equal(vm_transition((struct vm_status){ VM_OFF, VM_OPS_NONE }, VM_OP_COUNT, &n), 32788);
}

static void names(void **state)
{
	(void)state;
	for (int s = 0; s < VM_STATE_COUNT; s++)
		assert_int_equal(vm_state_parse(vm_state_name((enum vm_state)s)), s);
	for (int o = 0; o < VM_OPS_COUNT; o++)
		assert_int_equal(vm_opstate_parse(vm_opstate_name((enum vm_opstate)o)), o);
	assert_int_equal(vm_state_parse("running"), VM_RUNNING);
	assert_int_equal(vm_state_parse("bogus"), -1);
	assert_int_equal(vm_state_parse(NULL), -1);
	assert_string_equal(vm_state_name(VM_STATE_COUNT), "Unknown");
	assert_true(vm_state_has_worker(VM_RUNNING) && vm_state_has_worker(VM_STOPPING));
	assert_true(vm_state_has_worker(VM_SAVING) && vm_state_has_worker(VM_RESTORING));
	assert_string_equal(vm_state_name(VM_SAVING), "Saving");  /* as Hyper-V shows them */
	assert_string_equal(vm_state_name(VM_RESTORING), "Restoring");
	/* the inventory stores the number: the older states keep theirs */
	assert_int_equal(VM_STOPPING, 5);
	assert_int_equal(VM_SAVING, 6);
	assert_false(vm_state_has_worker(VM_OFF) || vm_state_has_worker(VM_SAVED));
	for (int op = 0; op < VM_OP_COUNT; op++)
		assert_string_not_equal(vm_op_name((enum vm_op)op), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_transition),
		cmocka_unit_test(conflict_is_32788),
		cmocka_unit_test(names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
