/* The job table: pure bookkeeping, the work itself is each job's step (include/vmms/jobs.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmms/jobs.h"

static void finish(struct vmms_job *j, bool ok, const char *error, int64_t now_ms)
{
	j->state = ok ? VMMS_JOB_COMPLETED : VMMS_JOB_FAILED;
	if (ok)
		j->percent = 100;
	else if (error && error != j->error)
		snprintf(j->error, sizeof(j->error), "%s", error);
	if (!ok && !j->error[0])
		snprintf(j->error, sizeof(j->error), "failed");
	j->ended_ms = now_ms;
	if (j->release)
		j->release(j->ctx);
	j->release = NULL;
	j->ctx = NULL;
	j->step = NULL;
}

struct vmms_job *vmms_job_start(struct vmms_jobs *js, const char *id, const char *vm_id, const char *kind,
				vmms_job_step_fn step, void (*release)(void *), void *ctx, int64_t now_ms)
{
	int slot = js->n < VMMS_MAX_JOBS ? js->n : -1;
	for (int i = 0; slot < 0 && i < js->n; i++) /* the oldest ended job gives way */
		if (js->jobs[i].state != VMMS_JOB_RUNNING && (slot < 0 || js->jobs[i].ended_ms < js->jobs[slot].ended_ms))
			slot = i;
	if (slot < 0)
		return NULL;
	if (slot == js->n)
		js->n++;
	struct vmms_job *j = &js->jobs[slot];
	memset(j, 0, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s", id);
	snprintf(j->vm_id, sizeof(j->vm_id), "%s", vm_id ? vm_id : "");
	snprintf(j->kind, sizeof(j->kind), "%s", kind);
	j->state = VMMS_JOB_RUNNING;
	j->started_ms = now_ms;
	j->step = step;
	j->release = release;
	j->ctx = ctx;
	return j;
}

void vmms_job_end(struct vmms_job *j, bool ok, const char *error, int64_t now_ms)
{
	if (j->state == VMMS_JOB_RUNNING)
		finish(j, ok, error, now_ms);
}

void vmms_jobs_run(struct vmms_jobs *js, void *owner, int64_t now_ms)
{
	/* A step may start another job (a checkpoint's follow-up merge): index, not pointer. */
	for (int i = 0; i < js->n; i++) {
		struct vmms_job *j = &js->jobs[i];
		if (j->state != VMMS_JOB_RUNNING || !j->step)
			continue;
		enum vmms_step r = j->step(owner, j);
		j = &js->jobs[i];
		if (j->percent < 0)
			j->percent = 0;
		if (j->percent > 100)
			j->percent = 100;
		if (r != VMMS_STEP_MORE)
			finish(j, r == VMMS_STEP_DONE, NULL, now_ms);
	}
}

struct vmms_job *vmms_job_find(struct vmms_jobs *js, const char *id)
{
	for (int i = 0; id && i < js->n; i++)
		if (!strcasecmp(js->jobs[i].id, id))
			return &js->jobs[i];
	return NULL;
}

struct vmms_job *vmms_job_running_for(struct vmms_jobs *js, const char *vm_id)
{
	for (int i = 0; i < js->n; i++)
		if (js->jobs[i].state == VMMS_JOB_RUNNING && !strcmp(js->jobs[i].vm_id, vm_id))
			return &js->jobs[i];
	return NULL;
}

bool vmms_jobs_busy(const struct vmms_jobs *js)
{
	for (int i = 0; i < js->n; i++)
		if (js->jobs[i].state == VMMS_JOB_RUNNING)
			return true;
	return false;
}

const char *vmms_job_state_name(enum vmms_job_state s)
{
	return s == VMMS_JOB_RUNNING ? "Running" : s == VMMS_JOB_COMPLETED ? "Completed" : "Failed";
}

void vmms_jobs_fini(struct vmms_jobs *js)
{
	for (int i = 0; i < js->n; i++)
		if (js->jobs[i].state == VMMS_JOB_RUNNING)
			finish(&js->jobs[i], false, "the service stopped", 0);
	js->n = 0;
}
