/* Host-account login for vmmsweb: PAM checks the password, a role map gives the role. */
#ifndef VIRIDIAN_WEB_LOGIN_H
#define VIRIDIAN_WEB_LOGIN_H

#include <stddef.h>

#include "vmms/tokens.h"

/* user/password through the PAM service (authentication and account checks), then the
 * account's role: from roles_file when given (lines "user NAME ROLE" or "group NAME ROLE", the
 * highest that applies), else root is Administrator and members of the groups
 * viridian-admins, viridian-operators, viridian-readers get those roles. -1 with err when PAM
 * refuses; 0 with ROLE_NONE in *role when the account has no role. */
int web_login(const char *service, const char *roles_file, const char *user, const char *password,
	      enum token_role *role, char *err, size_t errlen);

#endif
