/* Shared parameter parsing for every cmdlet. */
#include "cmdlet.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int param_index(const struct cmdlet *c, const char *name)
{
	for (int i = 0; c->params[i].name; i++)
		if (!strcasecmp(c->params[i].name, name))
			return i;
	return -1;
}

const char *arg_str(const struct args *a, const char *name)
{
	int i = param_index(a->cmdlet, name);
	return i < 0 ? NULL : a->value[i];
}

bool arg_has(const struct args *a, const char *name)
{
	return arg_str(a, name) != NULL;
}

uint64_t arg_size(const struct args *a, const char *name)
{
	int i = param_index(a->cmdlet, name);
	return i < 0 ? 0 : a->size[i];
}

bool parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *suffix; unsigned shift; } units[] = {
		{ "", 0 }, { "B", 0 }, { "KB", 10 }, { "K", 10 }, { "MB", 20 }, { "M", 20 },
		{ "GB", 30 }, { "G", 30 }, { "TB", 40 }, { "T", 40 }, { "PB", 50 },
	};
	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcasecmp(end, units[i].suffix)) {
			if (units[i].shift && v > (~0ULL >> units[i].shift))
				return false;
			*out = (uint64_t)v << units[i].shift;
			return true;
		}
	return false;
}

int cli_fail(const struct args *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "hv %s: ", a && a->cmdlet ? a->cmdlet->name : "");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

int args_parse(const struct cmdlet *c, int argc, char **argv, struct args *out)
{
	memset(out, 0, sizeof(*out));
	out->cmdlet = c;
	for (int i = 0; i < argc; i++) {
		const char *tok = argv[i];
		int p = -1;
		const char *val = NULL;
		if (tok[0] == '-' && tok[1] && !isdigit((unsigned char)tok[1])) {
			char name[64];
			const char *colon = strchr(tok, ':'); /* -Name:value, as PowerShell allows */
			snprintf(name, sizeof(name), "%.*s", colon ? (int)(colon - tok - 1) : (int)strlen(tok + 1), tok + 1);
			if ((p = param_index(c, name)) < 0)
				return cli_fail(out, "unknown parameter -%s (see: hv Get-Help %s)", name, c->name);
			if (colon)
				val = colon + 1;
			else if (c->params[p].kind == PARAM_SWITCH)
				val = "";
			else if (i + 1 < argc)
				val = argv[++i];
			else
				return cli_fail(out, "parameter -%s needs a value", c->params[p].name);
		} else {
			for (int k = 0; c->params[k].name; k++)
				if (c->params[k].positional && !out->value[k]) {
					p = k;
					break;
				}
			if (p < 0)
				return cli_fail(out, "unexpected argument '%s'", tok);
			val = tok;
		}
		if (out->value[p])
			return cli_fail(out, "parameter -%s given twice", c->params[p].name);
		if (c->params[p].kind == PARAM_SIZE && !parse_size(val, &out->size[p]))
			return cli_fail(out, "-%s: '%s' is not a size (e.g. 512MB, 10GB, 1TB)", c->params[p].name, val);
		out->value[p] = val;
	}
	for (int k = 0; c->params[k].name; k++)
		if (c->params[k].required && !out->value[k])
			return cli_fail(out, "missing required parameter -%s", c->params[k].name);
	return 0;
}
