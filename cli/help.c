/* Get-Help: the cmdlet list, or one cmdlet's parameters. */
#include "cmdlet.h"

#include <stdio.h>
#include <string.h>

static const struct param_spec params[] = {
	{ "Name", PARAM_STRING, false, true, "a cmdlet to describe" },
	{ 0 },
};

static int run(const struct args *a)
{
	const char *name = arg_str(a, "Name");
	if (!name) {
		int w = 0;
		for (int i = 0; cli_cmdlets[i]; i++)
			if ((int)strlen(cli_cmdlets[i]->name) > w)
				w = (int)strlen(cli_cmdlets[i]->name);
		printf("Cmdlets (hv Get-Help NAME for parameters):\n");
		for (int i = 0; cli_cmdlets[i]; i++)
			printf("  %-*s %s\n", w, cli_cmdlets[i]->name, cli_cmdlets[i]->synopsis);
		printf("\nEvery cmdlet but Get-Help and the *-VHD ones also takes -ComputerName HOST[:PORT] and\n"
		       "-Credential TOKENFILE|USER: it runs on that host through its vmmsweb (docs/web.md).\n");
		return 0;
	}
	const struct cmdlet *c = cli_find(name);
	if (!c)
		return cli_fail(a, "no cmdlet named '%s'", name);
	printf("%s: %s\n\nParameters:\n", c->name, c->synopsis);
	for (int i = 0; c->params[i].name; i++) {
		const struct param_spec *p = &c->params[i];
		printf("  -%-24s %s%s%s\n", p->name, p->help, p->required ? " (required)" : "",
		       p->kind == PARAM_SIZE ? " [size: 512MB, 10GB, 1TB]" : "");
	}
	return 0;
}

const struct cmdlet cmdlet_get_help = { "Get-Help", "list cmdlets or describe one", params, run };
