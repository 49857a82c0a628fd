/* The console's static files (web/internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The only files served without a token: a fixed list, never a path from the URL. */
static const struct { const char *url, *file, *type; } statics[] = {
	{ "/", "index.html", "text/html; charset=utf-8" },
	{ "/ui/app.js", "app.js", "text/javascript; charset=utf-8" },
	{ "/ui/app.css", "app.css", "text/css; charset=utf-8" },
};

/* Scripts and styles from this origin only, no inline script, no frames, fetch() to itself. */
#define CONSOLE_CSP                                                                                                   \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; " \
	"form-action 'none'; frame-ancestors 'none'"

int static_file(struct MHD_Connection *c, const char *url, const char *method, enum MHD_Result *rc)
{
	for (size_t i = 0; i < sizeof(statics) / sizeof(statics[0]); i++) {
		if (strcmp(url, statics[i].url))
			continue;
		if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
			*rc = send_error(c, 405, "method not allowed");
			return 1;
		}
		char path[PATH_MAX + 32];
		snprintf(path, sizeof(path), "%s/%s", cfg.www, statics[i].file);
		FILE *f = fopen(path, "re");
		char *buf = NULL;
		size_t n = 0;
		if (f) {
			buf = malloc(1 << 20);
			n = buf ? fread(buf, 1, 1 << 20, f) : 0;
			fclose(f);
		}
		if (!buf) {
			*rc = send_error(c, 404, "the console's files are not installed (vmmsweb --www)");
			return 1;
		}
		struct MHD_Response *r = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(r, "Content-Type", statics[i].type);
		MHD_add_response_header(r, "Content-Security-Policy", CONSOLE_CSP);
		MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
		MHD_add_response_header(r, "X-Frame-Options", "DENY");
		MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
		MHD_add_response_header(r, "Cache-Control", "no-store");
		MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000");
		*rc = MHD_queue_response(c, 200, r);
		MHD_destroy_response(r);
		return 1;
	}
	return 0;
}
