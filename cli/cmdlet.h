/* The `hv` command: one cmdlet per entry in the table in main.c, each implemented in its own
 * file against this interface. Parameters are declared, not parsed by hand: names match
 * case-insensitively, sizes accept 512MB/10GB/1TB, switches take no value. */
#ifndef VIRIDIAN_CLI_CMDLET_H
#define VIRIDIAN_CLI_CMDLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum param_kind {
	PARAM_STRING,
	PARAM_SIZE,    /* bytes, with KB/MB/GB/TB suffixes (powers of 1024, as PowerShell) */
	PARAM_SWITCH,  /* present or not: -Dynamic */
};

struct param_spec {
	const char *name;
	enum param_kind kind;
	bool required;
	bool positional;  /* a bare first argument fills it: hv Get-VHD disk.vhdx */
	const char *help;
};

#define MAX_PARAMS 16

struct args {
	const struct cmdlet *cmdlet;
	const char *value[MAX_PARAMS];  /* NULL when absent; "" for a present switch */
	uint64_t size[MAX_PARAMS];
};

struct cmdlet {
	const char *name;               /* Verb-Noun, as PowerShell spells it */
	const char *synopsis;
	const struct param_spec *params; /* terminated by a zero entry */
	int (*run)(const struct args *a); /* exit status */
};

/* Looks a parameter up by (canonical) name; NULL/false/0 when not given. */
const char *arg_str(const struct args *a, const char *name);
bool arg_has(const struct args *a, const char *name);
uint64_t arg_size(const struct args *a, const char *name);

/* Parses argv (after the cmdlet name) against the cmdlet's parameters; prints the problem. */
int args_parse(const struct cmdlet *c, int argc, char **argv, struct args *out);
/* "10GB" -> 10737418240. Returns false on junk or overflow. */
bool parse_size(const char *s, uint64_t *out);

/* Prints "hv CMDLET: message" to stderr and returns the exit status 1. */
int cli_fail(const struct args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A progress bar on stderr when it is a terminal; silent otherwise. */
struct progress {
	const char *label;
	int last_pct;
	bool tty;
};
void progress_init(struct progress *p, const char *label);
void progress_update(uint64_t done, uint64_t total, void *ctx); /* ctx: struct progress * */
void progress_done(struct progress *p);

/* vmms (cli/vm.c): one request over $VIRIDIAN_SOCKET; NULL with a message in err when vmms
 * cannot be reached. call_ok also prints vmms's refusal and returns NULL for it. */
typedef struct json_t json_t;
json_t *vmms_call(json_t *req, char *err, size_t errlen);
json_t *call_ok(const struct args *a, json_t *req);
void cli_print_json(json_t *j); /* indented, keys in order */

/* -ComputerName HOST[:PORT] [-Credential TOKENFILE|USER] (cli/remote.c): vmms_call goes to
 * the host's vmmsweb over HTTPS instead of the local socket. remote_set: -1 with err for a bad
 * name, no token or no password. */
int remote_set(const char *computer, const char *credential, char *err, size_t errlen);
bool remote_active(void);
json_t *remote_call(json_t *req, char *err, size_t errlen);
/* A file argument as the host running vmms names it: realpath() locally; with -ComputerName
 * the path as given (it must be absolute). NULL when it cannot be; malloc'd. */
char *cli_host_path(const char *p);
/* Follows a vmms job to its end (cli/job.c): a progress bar on a terminal, a line per change
 * otherwise; 0 when it completed, else the job's error printed. */
int cli_wait_job(const struct args *a, const char *id);

/* The table, for Get-Help. */
extern const struct cmdlet *const cli_cmdlets[];
const struct cmdlet *cli_find(const char *name);

/* Cmdlets. */
extern const struct cmdlet cmdlet_get_help;
extern const struct cmdlet cmdlet_new_vhd, cmdlet_get_vhd, cmdlet_test_vhd, cmdlet_convert_vhd,
	cmdlet_resize_vhd, cmdlet_merge_vhd, cmdlet_optimize_vhd, cmdlet_set_vhd;
extern const struct cmdlet cmdlet_new_vmmanagementtoken, cmdlet_get_vmmanagementtoken, cmdlet_remove_vmmanagementtoken;

#endif
