/* New-/Get-/Remove-VMManagementToken: the API tokens of vmmsweb (docs/web.md), kept hashed by
 * vmms in <root>/tokens.db. The secret is printed once, by New-VMManagementToken. */
#include "cmdlet.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void when(json_int_t t, char *out, size_t len)
{
	if (!t) {
		snprintf(out, len, "Never");
		return;
	}
	time_t tt = (time_t)t;
	strftime(out, len, "%Y-%m-%d %H:%M:%S", localtime(&tt));
}

static void print_table(json_t *arr)
{
	printf("%-24s %-13s %-19s %-19s %s\n", "Name", "Role", "Created", "Expires", "LastUsed");
	printf("%-24s %-13s %-19s %-19s %s\n", "----", "----", "-------", "-------", "--------");
	size_t i;
	json_t *t;
	json_array_foreach(arr, i, t) {
		char c[32], e[32], u[32];
		when(json_integer_value(json_object_get(t, "created")), c, sizeof(c));
		when(json_integer_value(json_object_get(t, "expires")), e, sizeof(e));
		when(json_integer_value(json_object_get(t, "last_used")), u, sizeof(u));
		printf("%-24s %-13s %-19s %-19s %s\n", json_string_value(json_object_get(t, "name")),
		       json_string_value(json_object_get(t, "role")), c, e, u);
	}
}

static int run(const struct args *a)
{
	const char *c = a->cmdlet->name;
	json_t *req = json_object();
	if (arg_has(a, "Name"))
		json_object_set_new(req, "name", json_string(arg_str(a, "Name")));
	if (!strcasecmp(c, "New-VMManagementToken")) {
		json_object_set_new(req, "op", json_string("new-token"));
		json_object_set_new(req, "role", json_string(arg_str(a, "Role")));
		if (arg_has(a, "ExpiresInDays")) {
			char *end;
			errno = 0;
			long d = strtol(arg_str(a, "ExpiresInDays"), &end, 10);
			if (errno || *end || !*arg_str(a, "ExpiresInDays") || d < 0 || d > 3650) {
				json_decref(req);
				return cli_fail(a, "-ExpiresInDays must be a number from 0 (never) to 3650");
			}
			json_object_set_new(req, "expires_in_days", json_integer(d));
		}
	} else {
		json_object_set_new(req, "op", json_string(!strcasecmp(c, "Get-VMManagementToken") ? "list-tokens" : "remove-token"));
	}
	json_t *r = call_ok(a, req);
	json_decref(req);
	if (!r)
		return 1;
	bool json = arg_has(a, "Json");
	if (!strcasecmp(c, "New-VMManagementToken")) {
		json_t *t = json_object_get(r, "token");
		if (json) {
			cli_print_json(t);
		} else {
			json_t *one = json_pack("[O]", t);
			print_table(one);
			json_decref(one);
			printf("\nToken (shown only now; vmms keeps its SHA-256): %s\n", json_string_value(json_object_get(t, "token")));
		}
	} else if (!strcasecmp(c, "Get-VMManagementToken")) {
		if (json)
			cli_print_json(json_object_get(r, "tokens"));
		else
			print_table(json_object_get(r, "tokens"));
	}
	json_decref(r);
	return 0;
}

static const struct param_spec new_params[] = {
	{ "Name", PARAM_STRING, true, true, "the token's name (letters, digits, - _ . @)" },
	{ "Role", PARAM_STRING, true, false, "Administrator, Operator or Reader" },
	{ "ExpiresInDays", PARAM_STRING, false, false, "days until it expires (default 0: never)" },
	{ "Json", PARAM_SWITCH, false, false, "print the token as JSON" },
	{ 0 },
};
static const struct param_spec get_params[] = {
	{ "Name", PARAM_STRING, false, true, "a name or wildcard pattern" },
	{ "Json", PARAM_SWITCH, false, false, "JSON output" },
	{ 0 },
};
static const struct param_spec remove_params[] = {
	{ "Name", PARAM_STRING, true, true, "the token to revoke" },
	{ 0 },
};

const struct cmdlet cmdlet_new_vmmanagementtoken = { "New-VMManagementToken",
						     "make an API token for vmmsweb (the secret is shown once)", new_params, run };
const struct cmdlet cmdlet_get_vmmanagementtoken = { "Get-VMManagementToken", "list the API tokens (never their secrets)",
						     get_params, run };
const struct cmdlet cmdlet_remove_vmmanagementtoken = { "Remove-VMManagementToken", "revoke an API token", remove_params,
							run };
