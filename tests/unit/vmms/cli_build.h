/* For the cmdlet parsing tests: runs a cmdlet's argument parser and request builder and gives
 * the request as compact JSON with sorted keys, "PARSE" (the parser refused) or "ERR:<message>".
 * Include once per test program: it also stands in for main.c's cmdlet table. */
#ifndef VIRIDIAN_TESTS_CLI_BUILD_H
#define VIRIDIAN_TESTS_CLI_BUILD_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmdlet.h"

const struct cmdlet *const cli_cmdlets[] = { NULL };
const struct cmdlet *cli_find(const char *name) { (void)name; return NULL; }

typedef json_t *cli_request_fn(const struct args *a, char *err, size_t errlen);

static const char *cli_build(cli_request_fn *request, const struct cmdlet *c, int argc, char **argv)
{
	static char out[2048];
	struct args a;
	if (args_parse(c, argc, argv, &a))
		return "PARSE";
	char err[256];
	json_t *r = request(&a, err, sizeof(err));
	if (!r) {
		snprintf(out, sizeof(out), "ERR:%s", err);
		return out;
	}
	char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
	snprintf(out, sizeof(out), "%s", s);
	free(s);
	json_decref(r);
	return out;
}

#define CLI_ARGC(...) (int)(sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *))

#endif
