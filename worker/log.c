/* The worker's log (include/worker/log.h). Each line goes out in one write so that lines
 * from several threads never interleave. */
#include <stdarg.h>
#include <stdio.h>

#include "worker/log.h"

static void emit(const char *prefix, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "vmwp: %s%s\n", prefix, line);
}

void vlog(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit("", fmt, ap);
	va_end(ap);
}

int vfail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit("error: ", fmt, ap);
	va_end(ap);
	return 1;
}
