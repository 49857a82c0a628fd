/* Following a vmms job (Get-VMJob's data) to its end: the long cmdlets (checkpoints, export,
 * import, storage moves) print its progress while they wait. */
#include "cmdlet.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Follows a job to its end; 0 when it completed. */
int cli_wait_job(const struct args *a, const char *id)
{
	struct progress p;
	char label[64];
	int last = -1;
	for (;;) {
		json_t *req = json_pack("{s:s, s:s}", "op", "job-status", "id", id);
		json_t *r = call_ok(a, req);
		json_decref(req);
		if (!r)
			return 1;
		json_t *j = json_object_get(r, "job");
		const char *state = json_string_value(json_object_get(j, "state"));
		int pct = (int)json_integer_value(json_object_get(j, "percent"));
		if (last < 0) {
			snprintf(label, sizeof(label), "%s", json_string_value(json_object_get(j, "kind")) ?: "job");
			progress_init(&p, label);
		}
		if (p.tty)
			progress_update((uint64_t)pct, 100, &p);
		else if (pct != last && state && !strcmp(state, "Running"))
			printf("%s %s: %d%%\n", label, id, pct);
		last = pct;
		if (state && strcmp(state, "Running")) {
			if (p.tty)
				progress_done(&p);
			int rc = strcmp(state, "Completed") ? cli_fail(a, "%s", json_string_value(json_object_get(j, "error")) ?: "the job failed") : 0;
			json_decref(r);
			return rc;
		}
		json_decref(r);
		usleep(100 * 1000);
	}
}
