/* libFuzzer target: vmmsweb's request mapping under hostile input. The input is a method
 * byte, a URL and a body (split at the first two NULs); the body goes through the depth check
 * and, when shallow enough, jansson, then the route. Whatever comes out must be sane: a
 * mapped route has a role, an op that the role table knows, a request object naming that op
 * (for vmms routes); a refusal is an HTTP 4xx. Path checks and URL decoding are fed too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "POST", "DELETE", "PUT", "PATCH" };
	if (size < 1)
		return 0;
	const char *method = methods[data[0] % 5];
	char *copy = malloc(size);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	const char *url = copy;
	size_t ulen = strlen(url);
	const char *body = ulen + 1 < size - 1 ? copy + ulen + 1 : "";
	size_t blen = strlen(body);

	int depth = web_json_depth(body, blen);
	json_t *b = NULL;
	if (depth >= 0 && depth <= WEB_MAX_JSON_DEPTH)
		b = json_loadb(body, blen, JSON_REJECT_DUPLICATES, NULL);
	char err[512];
	struct web_route r;
	int st = web_route(method, url, b, &r, err, sizeof(err));
	if (st) {
		if (st < 400 || st > 499 || !err[0])
			abort();
	} else {
		if (r.role == ROLE_NONE || web_op_role(r.op) != r.role || !json_is_object(r.req))
			abort();
		if (r.kind == WEB_VMMS && strcmp(json_string_value(json_object_get(r.req, "op")) ?: "", r.op))
			abort();
		for (int i = 0; web_path_keys[i].key; i++) {
			const char *p = json_string_value(json_object_get(r.req, web_path_keys[i].key));
			if (p && web_path_safe(p, web_path_keys[i].relative_ok) && *p == '/')
				(void)web_path_under(p, "/var/lib/viridian");
		}
		web_route_free(&r);
	}
	json_decref(b);
	char out[64];
	if (web_url_decode(url, ulen, out, sizeof(out)) && (strchr(out, '/') || strlen(out) >= sizeof(out)))
		abort();
	if (web_path_safe(url, true) && strstr(url, "/../"))
		abort();
	free(copy);
	return 0;
}
