/* The worker's log: one line per event on stderr, prefixed "vmwp: ". */
#ifndef VIRIDIAN_WORKER_LOG_H
#define VIRIDIAN_WORKER_LOG_H

void vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "vmwp: error: ..." on stderr; returns 1, vmwp's exit status for an error. */
int vfail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
