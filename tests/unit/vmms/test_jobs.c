/* The jobs layer (vmms/jobs.c): steps until done or failed, percent clamped, ends recorded,
 * one running job per VM found, a full table reusing the oldest ended slot, fini releasing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "vmms/jobs.h"

static int released;
static void release(void *ctx)
{
	(void)ctx;
	released++;
}

/* ctx counts down: MORE until 0, then DONE (or FAILED when negative) */
static enum vmms_step step(void *owner, struct vmms_job *j)
{
	(void)owner;
	int *left = j->ctx;
	j->percent += 150; /* clamped to 100 */
	if (*left < 0) {
		snprintf(j->error, sizeof(j->error), "broken");
		return VMMS_STEP_FAILED;
	}
	return (*left)-- > 0 ? VMMS_STEP_MORE : VMMS_STEP_DONE;
}

static void runs_to_completion(void **st)
{
	(void)st;
	static struct vmms_jobs js;
	memset(&js, 0, sizeof(js));
	released = 0;
	int two = 2, bad = -1;
	struct vmms_job *a = vmms_job_start(&js, "11111111-0000-4000-8000-000000000001", "vm-a", "merge", step, release, &two, 10);
	struct vmms_job *b = vmms_job_start(&js, "11111111-0000-4000-8000-000000000002", "vm-b", "merge", step, release, &bad, 10);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(vmms_jobs_busy(&js));
	assert_ptr_equal(vmms_job_running_for(&js, "vm-a"), a);
	vmms_jobs_run(&js, NULL, 20);
	assert_int_equal(b->state, VMMS_JOB_FAILED);
	assert_string_equal(b->error, "broken");
	assert_int_equal(b->ended_ms, 20);
	assert_int_equal(a->state, VMMS_JOB_RUNNING);
	assert_int_equal(a->percent, 100);
	vmms_jobs_run(&js, NULL, 30);
	vmms_jobs_run(&js, NULL, 40);
	assert_int_equal(a->state, VMMS_JOB_COMPLETED);
	assert_int_equal(a->ended_ms, 40);
	assert_false(vmms_jobs_busy(&js));
	assert_null(vmms_job_running_for(&js, "vm-a"));
	assert_int_equal(released, 2);
	assert_ptr_equal(vmms_job_find(&js, "11111111-0000-4000-8000-000000000001"), a);
	assert_null(vmms_job_find(&js, "nope"));
	assert_string_equal(vmms_job_state_name(a->state), "Completed");
	assert_string_equal(vmms_job_state_name(b->state), "Failed");
}

static void full_table_reuses_the_oldest_ended(void **st)
{
	(void)st;
	static struct vmms_jobs js;
	memset(&js, 0, sizeof(js));
	int forever = 1 << 30;
	char id[37];
	for (int i = 0; i < VMMS_MAX_JOBS; i++) {
		snprintf(id, sizeof(id), "job-%d", i);
		assert_non_null(vmms_job_start(&js, id, "vm", "merge", step, NULL, &forever, i));
	}
	assert_null(vmms_job_start(&js, "one-more", "vm", "merge", step, NULL, &forever, 99));
	vmms_job_end(&js.jobs[5], true, NULL, 50);
	vmms_job_end(&js.jobs[3], false, "gave up", 40);
	assert_string_equal(js.jobs[3].error, "gave up");
	struct vmms_job *j = vmms_job_start(&js, "one-more", "vm", "merge", step, NULL, &forever, 99);
	assert_ptr_equal(j, &js.jobs[3]); /* ended first */
	released = 0;
	int x = 5;
	js.jobs[0].release = release;
	js.jobs[0].ctx = &x;
	vmms_jobs_fini(&js);
	assert_int_equal(released, 1);
	assert_int_equal(js.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(runs_to_completion),
		cmocka_unit_test(full_table_reuses_the_oldest_ended),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
