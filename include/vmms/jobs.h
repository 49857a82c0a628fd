/* Long operations of the management service (checkpoint merges now; export, migration and
 * storage moves later), one place for all of them: each job has an id, the VM it works on, a
 * kind, a state (Running, Completed, Failed), a percentage, an error and its start and end.
 *
 * A job advances in steps: the main loop calls jobs_run() often, and each running job's step
 * does a bounded piece of work (a few MB of disk data, one look at a worker's answer) so the
 * service keeps answering requests meanwhile. A request that starts a long operation returns
 * the job's id; clients (hv, the web console) poll jobs_find()/vmms_job_json(). No I/O here:
 * the steps belong to whoever started the job. */
#ifndef VIRIDIAN_VMMS_JOBS_H
#define VIRIDIAN_VMMS_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#define VMMS_MAX_JOBS 64

enum vmms_job_state { VMMS_JOB_RUNNING, VMMS_JOB_COMPLETED, VMMS_JOB_FAILED };

enum vmms_step { VMMS_STEP_MORE, VMMS_STEP_DONE, VMMS_STEP_FAILED };

struct vmms_job;
/* One bounded piece of the job's work; FAILED with j->error set. */
typedef enum vmms_step (*vmms_job_step_fn)(void *owner, struct vmms_job *j);

struct vmms_job {
	char id[37];
	char vm_id[37];
	char kind[32];            /* "checkpoint", "apply-checkpoint", "merge" ... */
	enum vmms_job_state state;
	int percent;              /* 0..100 */
	char error[512];          /* Failed: why */
	int64_t started_ms, ended_ms; /* Unix ms; ended 0 while running */
	vmms_job_step_fn step;
	void (*release)(void *ctx); /* frees ctx once the job ends (may be NULL) */
	void *ctx;
};

struct vmms_jobs {
	struct vmms_job jobs[VMMS_MAX_JOBS];
	int n;
};

/* A new running job (the oldest ended one makes room when the table is full); NULL when every
 * slot holds a running job. id must be a fresh GUID; now_ms the Unix time. */
struct vmms_job *vmms_job_start(struct vmms_jobs *js, const char *id, const char *vm_id, const char *kind,
				vmms_job_step_fn step, void (*release)(void *), void *ctx, int64_t now_ms);
/* Steps every running job once; a job that ends gets its state, percent and end time. */
void vmms_jobs_run(struct vmms_jobs *js, void *owner, int64_t now_ms);
/* Ends a job from outside its step (e.g. a recovery that gave it up). */
void vmms_job_end(struct vmms_job *j, bool ok, const char *error, int64_t now_ms);
struct vmms_job *vmms_job_find(struct vmms_jobs *js, const char *id);
/* The running job of a VM (at most one: the VM's operation state guards it), or NULL. */
struct vmms_job *vmms_job_running_for(struct vmms_jobs *js, const char *vm_id);
bool vmms_jobs_busy(const struct vmms_jobs *js);
const char *vmms_job_state_name(enum vmms_job_state s); /* "Running", "Completed", "Failed" */
/* Ends every job without stepping it (the service shuts down); their contexts are released. */
void vmms_jobs_fini(struct vmms_jobs *js);

#endif
