/* Copy-VMFile in the worker: a host file streamed into the guest through the Guest Service
 * Interface (vsp/fcopy.h). One copy at a time; the control socket starts and cancels it, its
 * status reply shows the progress. The device work runs under the vmbus_host lock. */
#ifndef VIRIDIAN_WORKER_COPY_FILE_H
#define VIRIDIAN_WORKER_COPY_FILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/vmbus_host.h"

/* Start copying the host file source to the guest path dest (absolute, with the file's name).
 * 0, or -1 with the reason in err (no such regular file, the service disabled or not running,
 * a copy in progress, a bad guest path). */
int worker_copy_file_start(struct vmbus_host *h, const char *source, const char *dest, bool overwrite,
			   bool create_path, uint64_t now_ms, char *err, size_t errlen);
/* 0, or -1 when no copy is in progress or the guest is already closing the complete file. */
int worker_copy_file_cancel(struct vmbus_host *h, uint64_t now_ms);
/* A copy is in progress (a save or migration waits for it). */
bool worker_copy_file_busy(struct vmbus_host *h);
/* {"state","source","destination","bytes","total","error"} of the current or last copy, or NULL
 * when there was none. */
json_t *worker_copy_file_status(struct vmbus_host *h);
/* From the worker loop: logs and closes a copy that ended. */
void worker_copy_file_tick(struct vmbus_host *h, uint64_t now_ms);

#endif
