/* Output shared by the cmdlets. */
#include "cmdlet.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

void cli_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(s ? s : "null");
	free(s);
}
