/* The web API's role names (include/vmms/tokens.h): pure, shared by vmms and vmmsweb. */
#include <stddef.h>
#include <strings.h>

#include "vmms/tokens.h"

static const char *const role_names[] = { "", "Reader", "Operator", "Administrator" };

const char *token_role_name(enum token_role r)
{
	return r >= ROLE_NONE && r <= ROLE_ADMINISTRATOR ? role_names[r] : "";
}

enum token_role token_role_parse(const char *name)
{
	for (int r = ROLE_READER; name && r <= ROLE_ADMINISTRATOR; r++)
		if (!strcasecmp(name, role_names[r]))
			return (enum token_role)r;
	return ROLE_NONE;
}
