/* Checkpoint tree and disk chain decisions (vmms/cptree.c): which image to delete, fold or
 * keep when checkpoints go, branches, running chains, the tree closing over removed
 * checkpoints, names and paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "vmms/cptree.h"

#define N(...) ((struct cp_image[]){ __VA_ARGS__ })
/* parent, owned, needed, active LUN */
#define IMG(p, o, n, a) { p, o, n, a }

static void nothing_to_do_when_all_needed(void **st)
{
	(void)st;
	/* base <- c1 (VM's disk) */
	struct cp_image g[] = { IMG(-1, false, true, -1), IMG(0, true, true, 0) };
	int pending = -1;
	struct cp_action a = cp_plan(g, 2, false, &pending);
	assert_int_equal(a.kind, CP_NOTHING);
	assert_int_equal(pending, 0);
}

static void last_checkpoint_removed_folds_into_base(void **st)
{
	(void)st;
	/* the base no longer needed, its only child the VM's disk: fold (offline) or live-merge */
	struct cp_image g[] = { IMG(-1, false, false, -1), IMG(0, true, true, 0) };
	struct cp_action a = cp_plan(g, 2, false, NULL);
	assert_int_equal(a.kind, CP_FOLD);
	assert_int_equal(a.node, 0);
	assert_int_equal(a.child, 1);
	a = cp_plan(g, 2, true, NULL);
	assert_int_equal(a.kind, CP_LIVE_MERGE);
	assert_int_equal(a.lun, 0);
	assert_int_equal(a.node, 0);
}

static void branches_keep_the_frozen_disk(void **st)
{
	(void)st;
	/* base (unneeded) with two children: both branches need it */
	struct cp_image g[] = { IMG(-1, false, false, -1), IMG(0, true, true, -1), IMG(0, true, true, 0) };
	int pending = 0;
	assert_int_equal(cp_plan(g, 3, false, &pending).kind, CP_NOTHING);
	assert_int_equal(pending, 1);
}

static void an_unneeded_leaf_is_deleted_not_a_users_disk(void **st)
{
	(void)st;
	/* base (needed) <- discarded child (unneeded, ours) ; base <- VM's disk */
	struct cp_image g[] = { IMG(-1, false, true, -1), IMG(0, true, false, -1), IMG(0, true, true, 0) };
	struct cp_action a = cp_plan(g, 3, false, NULL);
	assert_int_equal(a.kind, CP_DELETE);
	assert_int_equal(a.node, 1);
	/* the user's own base disk is forgotten, never deleted */
	struct cp_image h[] = { IMG(-1, false, false, -1) };
	assert_int_equal(cp_plan(h, 1, false, NULL).kind, CP_FORGET);
}

static void a_child_with_children_waits(void **st)
{
	(void)st;
	/* base (unneeded) <- k1 (frozen of c2) <- VM's disk: base cannot fold while k1 has a child */
	struct cp_image g[] = { IMG(-1, false, false, -1), IMG(0, true, true, -1), IMG(1, true, true, 0) };
	int pending = 0;
	assert_int_equal(cp_plan(g, 3, false, &pending).kind, CP_NOTHING);
	assert_int_equal(pending, 1);
	/* once c2 goes too, k1 folds first (its only child a leaf), then the base */
	g[1].needed = false;
	struct cp_action a = cp_plan(g, 3, false, &pending);
	assert_int_equal(a.kind, CP_FOLD);
	assert_int_equal(a.node, 1);
	assert_int_equal(a.child, 2);
	assert_int_equal(pending, 1);
}

static void running_chain_is_left_alone(void **st)
{
	(void)st;
	/* base (unneeded) <- k1 (unneeded) <- VM's running disk; and a side branch base <- s (leaf,
	 * unneeded): the leaf off the running chain goes, the rest waits for Off */
	struct cp_image g[] = { IMG(-1, false, false, -1), IMG(0, true, false, -1), IMG(1, true, true, 0), IMG(0, true, false, -1) };
	int pending = 0;
	struct cp_action a = cp_plan(g, 4, true, &pending);
	assert_int_equal(a.kind, CP_LIVE_MERGE); /* k1's only child is the running disk */
	assert_int_equal(a.node, 1);
	/* without the live merge: an offline fold of the side leaf into the base is refused (the base
	 * is in the running chain), the side leaf is deleted */
	g[2].parent = 0;
	g[1].parent = -1;
	a = cp_plan(g, 4, true, &pending);
	assert_int_equal(a.kind, CP_DELETE);
	assert_true(a.node == 1 || a.node == 3);
}

static void corrupt_forest_does_nothing(void **st)
{
	(void)st;
	struct cp_image loop[] = { IMG(1, true, false, -1), IMG(0, true, false, -1) };
	assert_int_equal(cp_plan(loop, 2, false, NULL).kind, CP_NOTHING);
	struct cp_image out[] = { IMG(7, true, false, -1) };
	assert_int_equal(cp_plan(out, 1, false, NULL).kind, CP_NOTHING);
}

static void subtree_and_surviving_parent(void **st)
{
	(void)st;
	/* 0 <- 1 <- 2, 1 <- 3, 0 <- 4 */
	int parent[] = { -1, 0, 1, 1, 0 };
	bool out[5];
	assert_true(cp_subtree(parent, 5, 1, true, out));
	assert_true(out[1] && out[2] && out[3] && !out[0] && !out[4]);
	assert_true(cp_subtree(parent, 5, 1, false, out));
	assert_true(out[1] && !out[2] && !out[3]);
	bool removed[5] = { false, true, false, false, false };
	assert_int_equal(cp_surviving_parent(parent, 5, removed, 2), 0);
	removed[0] = true;
	assert_int_equal(cp_surviving_parent(parent, 5, removed, 2), -1);
	int loop[] = { 1, 0 };
	assert_false(cp_subtree(loop, 2, 0, true, (bool[2]){ 0 }));
	assert_false(cp_subtree(parent, 5, 9, true, out));
}

static void names_and_paths(void **st)
{
	(void)st;
	struct tm tm = { .tm_year = 124, .tm_mon = 2, .tm_mday = 5, .tm_hour = 0, .tm_min = 7, .tm_sec = 9 };
	char out[256];
	cp_default_name("web", &tm, out, sizeof(out));
	assert_string_equal(out, "web - (3/5/2024 - 12:07:09 AM)");
	tm.tm_hour = 15;
	cp_default_name("web", &tm, out, sizeof(out));
	assert_string_equal(out, "web - (3/5/2024 - 3:07:09 PM)");
	const char *g = "0b1c2d3e-4f50-4172-8394-a5b6c7d8e9f0";
	assert_true(cp_child_path("/d/web.vhdx", g, out, sizeof(out)));
	assert_string_equal(out, "/d/web_0b1c2d3e-4f50-4172-8394-a5b6c7d8e9f0.avhdx");
	/* a child of a child keeps the base name */
	assert_true(cp_child_path("/d/web_11111111-2222-4333-8444-555555555555.avhdx", g, out, sizeof(out)));
	assert_string_equal(out, "/d/web_0b1c2d3e-4f50-4172-8394-a5b6c7d8e9f0.avhdx");
	assert_true(cp_child_path("/d/old.vhd", g, out, sizeof(out)));
	assert_string_equal(out, "/d/old_0b1c2d3e-4f50-4172-8394-a5b6c7d8e9f0.avhd");
	assert_true(cp_child_path("/d.x/noext", g, out, sizeof(out)));
	assert_string_equal(out, "/d.x/noext_0b1c2d3e-4f50-4172-8394-a5b6c7d8e9f0.avhdx");
	assert_false(cp_child_path("/d/web.vhdx", g, out, 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nothing_to_do_when_all_needed),
		cmocka_unit_test(last_checkpoint_removed_folds_into_base),
		cmocka_unit_test(branches_keep_the_frozen_disk),
		cmocka_unit_test(an_unneeded_leaf_is_deleted_not_a_users_disk),
		cmocka_unit_test(a_child_with_children_waits),
		cmocka_unit_test(running_chain_is_left_alone),
		cmocka_unit_test(corrupt_forest_does_nothing),
		cmocka_unit_test(subtree_and_surviving_parent),
		cmocka_unit_test(names_and_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
