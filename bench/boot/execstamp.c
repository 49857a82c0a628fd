/* execstamp PROGRAM ARGS...: runs PROGRAM with VIRIDIAN_TRACE_START_NS set to the
 * CLOCK_MONOTONIC time just before exec, so vmwp can report exec -> first guest exit. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: execstamp PROGRAM [ARGS...]\n");
		return 2;
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char stamp[32];
	snprintf(stamp, sizeof(stamp), "%llu", (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
	setenv("VIRIDIAN_TRACE_START_NS", stamp, 1);
	execv(argv[1], argv + 1);
	perror(argv[1]);
	return 127;
}
