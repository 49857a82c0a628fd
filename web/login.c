/* Host-account login (web/login.h) through libpam. */
#include <grp.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "login.h"

/* PAM's questions: the password for anything asked without echo, nothing else. */
static int conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *password)
{
	if (n <= 0 || n > 32)
		return PAM_CONV_ERR;
	struct pam_response *r = calloc((size_t)n, sizeof(*r));
	if (!r)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++)
		if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF && !(r[i].resp = strdup(password))) {
			for (int k = 0; k < i; k++)
				free(r[k].resp);
			free(r);
			return PAM_BUF_ERR;
		}
	*resp = r;
	return PAM_SUCCESS;
}

static bool in_group(const char *user, const char *group)
{
	struct group *g = getgrnam(group);
	struct passwd *pw = getpwnam(user);
	if (!g)
		return false;
	if (pw && pw->pw_gid == g->gr_gid)
		return true;
	for (char **m = g->gr_mem; m && *m; m++)
		if (!strcmp(*m, user))
			return true;
	return false;
}

static enum token_role role_of(const char *roles_file, const char *user)
{
	enum token_role best = ROLE_NONE;
	if (!roles_file) {
		static const struct { const char *group; enum token_role role; } groups[] = {
			{ "viridian-readers", ROLE_READER }, { "viridian-operators", ROLE_OPERATOR },
			{ "viridian-admins", ROLE_ADMINISTRATOR },
		};
		struct passwd *pw = getpwnam(user);
		if (pw && pw->pw_uid == 0)
			return ROLE_ADMINISTRATOR;
		for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
			if (in_group(user, groups[i].group) && groups[i].role > best)
				best = groups[i].role;
		return best;
	}
	FILE *f = fopen(roles_file, "re");
	char line[512], kind[16], name[256], role[32];
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%15s %255s %31s", kind, name, role) != 3 || kind[0] == '#')
			continue;
		enum token_role r = token_role_parse(role);
		bool applies = (!strcmp(kind, "user") && !strcmp(name, user)) || (!strcmp(kind, "group") && in_group(user, name));
		if (applies && r > best)
			best = r;
	}
	if (f)
		fclose(f);
	return best;
}

int web_login(const char *service, const char *roles_file, const char *user, const char *password,
	      enum token_role *role, char *err, size_t errlen)
{
	struct pam_conv conv = { conversation, (void *)password };
	pam_handle_t *h = NULL;
	int rc = pam_start(service, user, &conv, &h);
	if (rc == PAM_SUCCESS)
		rc = pam_authenticate(h, PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_SUCCESS)
		rc = pam_acct_mgmt(h, PAM_DISALLOW_NULL_AUTHTOK);
	if (h)
		pam_end(h, rc);
	if (rc != PAM_SUCCESS) {
		snprintf(err, errlen, "login failed");
		return -1;
	}
	*role = role_of(roles_file, user);
	return 0;
}
