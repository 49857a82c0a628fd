/* vmmsweb's request mapping (web/route.c) and failed-auth limiter (web/ratelimit.c): each
 * family endpoint maps to its op and role, captures land in the right keys, the generic form
 * authorizes by the URL's op and refuses a body naming another, malformed URLs and bodies are
 * refused with the right status, JSON depth, path safety, and the limiter's window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "web/ratelimit.h"
#include "web/route.h"
#include "web/session.h"

static int route(const char *method, const char *url, const char *body, struct web_route *r)
{
	char err[256];
	json_t *b = body ? json_loads(body, 0, NULL) : NULL;
	int st = web_route(method, url, b, r, err, sizeof(err));
	json_decref(b);
	if (st)
		assert_true(err[0] != '\0');
	return st;
}

static const char *key(const struct web_route *r, const char *k)
{
	return json_string_value(json_object_get(r->req, k));
}

static void family_endpoints(void **st)
{
	(void)st;
	static const struct { const char *m, *url, *op; enum token_role role; } cases[] = {
		{ "GET", "/api/v1/vms", "list", ROLE_READER },
		{ "GET", "/api/v1/vms/web", "get", ROLE_READER },
		{ "POST", "/api/v1/vms", "new", ROLE_ADMINISTRATOR },
		{ "DELETE", "/api/v1/vms/web", "remove", ROLE_ADMINISTRATOR },
		{ "POST", "/api/v1/vms/web/start", "start", ROLE_OPERATOR },
		{ "POST", "/api/v1/vms/web/turnoff", "stop", ROLE_OPERATOR },
		{ "POST", "/api/v1/vms/web/save", "save", ROLE_OPERATOR },
		{ "DELETE", "/api/v1/vms/web/savedstate", "remove-saved-state", ROLE_ADMINISTRATOR },
		{ "POST", "/api/v1/vms/web/disks", "add-disk", ROLE_ADMINISTRATOR },
		{ "POST", "/api/v1/vms/web/disks/qos", "set-disk", ROLE_ADMINISTRATOR },
		{ "POST", "/api/v1/vms/web/processor", "set-processor", ROLE_ADMINISTRATOR },
		{ "GET", "/api/v1/vms/web/metering", "measure", ROLE_READER },
		{ "POST", "/api/v1/vms/web/metering/reset", "reset-metering", ROLE_ADMINISTRATOR },
		{ "POST", "/api/v1/vms/web/checkpoints", "checkpoint", ROLE_OPERATOR },
		{ "POST", "/api/v1/vms/web/checkpoints/cp1/restore", "restore-checkpoint", ROLE_OPERATOR },
		{ "DELETE", "/api/v1/vms/web/checkpoints/cp1", "remove-checkpoint", ROLE_ADMINISTRATOR },
		{ "GET", "/api/v1/vms/web/console", "console-read", ROLE_OPERATOR },
		{ "POST", "/api/v1/vms/web/console", "console-input", ROLE_OPERATOR },
		{ "GET", "/api/v1/switches", "list-switches", ROLE_READER },
		{ "DELETE", "/api/v1/switches/ext", "remove-switch", ROLE_ADMINISTRATOR },
		{ "POST", "/api/v1/host", "set-host", ROLE_ADMINISTRATOR },
		{ "GET", "/api/v1/jobs/abc", "job-status", ROLE_READER },
		{ "POST", "/api/v1/tokens", "new-token", ROLE_ADMINISTRATOR },
		{ "GET", "/api/v1/events", "state-stream", ROLE_READER },
		{ "GET", "/api/v1/vms/", "list", ROLE_READER }, /* a trailing slash */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct web_route r;
		assert_int_equal(route(cases[i].m, cases[i].url, NULL, &r), 0);
		assert_string_equal(r.op, cases[i].op);
		assert_int_equal(r.role, cases[i].role);
		if (r.kind == WEB_VMMS)
			assert_string_equal(key(&r, "op"), cases[i].op);
		web_route_free(&r);
	}
}

static void captures_and_body(void **st)
{
	(void)st;
	struct web_route r;
	assert_int_equal(route("POST", "/api/v1/vms/my%20vm/checkpoints/a%2Bb/rename", "{\"new_name\":\"c\"}", &r), 0);
	assert_string_equal(key(&r, "vm"), "my vm");
	assert_string_equal(key(&r, "name"), "a+b");
	assert_string_equal(key(&r, "new_name"), "c");
	web_route_free(&r);
	assert_int_equal(route("DELETE", "/api/v1/switches/ext", NULL, &r), 0);
	assert_string_equal(key(&r, "switch"), "ext");
	web_route_free(&r);
	assert_int_equal(route("POST", "/api/v1/vms/web/turnoff", NULL, &r), 0);
	assert_true(json_is_true(json_object_get(r.req, "turn_off")));
	web_route_free(&r);
	/* The URL's capture wins over the body's. */
	assert_int_equal(route("POST", "/api/v1/vms/web/start", "{\"vm\":\"other\"}", &r), 0);
	assert_string_equal(key(&r, "vm"), "web");
	web_route_free(&r);
}

static void generic_form(void **st)
{
	(void)st;
	struct web_route r;
	assert_int_equal(route("POST", "/api/v1/op/remove", "{\"vm\":\"web\"}", &r), 0);
	assert_int_equal(r.role, ROLE_ADMINISTRATOR);
	assert_string_equal(key(&r, "op"), "remove");
	web_route_free(&r);
	assert_int_equal(route("POST", "/api/v1/op/list", "{\"op\":\"list\"}", &r), 0);
	web_route_free(&r);
	assert_int_equal(route("POST", "/api/v1/op/console-read", "{\"vm\":\"web\"}", &r), 0);
	assert_int_equal(r.kind, WEB_CONSOLE_READ);
	web_route_free(&r);
	/* A body naming another op than the URL's: refused, not guessed at. */
	assert_int_equal(route("POST", "/api/v1/op/list", "{\"op\":\"remove\",\"vm\":\"web\"}", &r), 400);
	assert_int_equal(route("POST", "/api/v1/op/list", "{\"op\":7}", &r), 400);
	/* Ops the web does not offer, whatever the role. */
	assert_int_equal(route("POST", "/api/v1/op/check-token", "{}", &r), 404);
	assert_int_equal(route("POST", "/api/v1/op/frob", "{}", &r), 404);
	assert_int_equal(route("POST", "/api/v1/op/state-stream", "{}", &r), 404);
	assert_int_equal(web_op_role("check-token"), ROLE_NONE);
	assert_int_equal(web_op_role(NULL), ROLE_NONE);
}

static void refusals(void **st)
{
	(void)st;
	struct web_route r;
	assert_int_equal(route("GET", "/", NULL, &r), 404);
	assert_int_equal(route("GET", "/api/v2/vms", NULL, &r), 404);
	assert_int_equal(route("GET", "/api/v1/", NULL, &r), 404);
	assert_int_equal(route("GET", "/api/v1/frobs", NULL, &r), 404);
	assert_int_equal(route("PUT", "/api/v1/vms", NULL, &r), 405);
	assert_int_equal(route("GET", "/api/v1/vms/a%2Fb", NULL, &r), 400);
	assert_int_equal(route("GET", "/api/v1/vms/a%00b", NULL, &r), 400);
	assert_int_equal(route("GET", "/api/v1/vms/a%1", NULL, &r), 400);
	assert_int_equal(route("GET", "/api/v1/vms/a%", NULL, &r), 400);
	assert_int_equal(route("GET", "/api/v1/vms/a%zz", NULL, &r), 400);
	assert_int_equal(route("GET", "/api/v1/vms//start", NULL, &r), 400);
	assert_int_equal(route("GET", "/api/v1/a/b/c/d/e/f/g/h/i", NULL, &r), 404);
	assert_int_equal(route("POST", "/api/v1/vms", "[1]", &r), 400);
	assert_int_equal(route(NULL, "/api/v1/vms", NULL, &r), 404);
	char longurl[WEB_MAX_URL + 16];
	memset(longurl, 'a', sizeof(longurl) - 1);
	memcpy(longurl, "/api/v1/vms/", 12);
	longurl[sizeof(longurl) - 1] = '\0';
	assert_int_equal(route("GET", longurl, NULL, &r), 404);
}

static void json_depth(void **st)
{
	(void)st;
	assert_int_equal(web_json_depth("{}", 2), 1);
	assert_int_equal(web_json_depth("{\"a\":[1,{\"b\":2}]}", 17), 3);
	assert_int_equal(web_json_depth("{\"a\":\"[[[[{{{\"}", 15), 1);  /* brackets in strings */
	assert_int_equal(web_json_depth("{\"a\\\"[[\":1}", 12), 1);     /* an escaped quote */
	assert_int_equal(web_json_depth("{\"a\":1", 6), -1);
	assert_int_equal(web_json_depth("}{", 2), -1);
	assert_int_equal(web_json_depth("{\"a", 3), -1);
	assert_int_equal(web_json_depth("\"\\", 2), -1);
	assert_int_equal(web_json_depth("", 0), 0);
}

static void paths(void **st)
{
	(void)st;
	assert_true(web_path_safe("/var/lib/viridian/Virtual Hard Disks/a.vhdx", false));
	assert_false(web_path_safe("a.vhdx", false));
	assert_true(web_path_safe("a.vhdx", true));
	assert_true(web_path_safe("sub/a..b.vhdx", true));
	assert_false(web_path_safe("/a/../etc/shadow", false));
	assert_false(web_path_safe("/a/./b", false));
	assert_false(web_path_safe("/a/..", false));
	assert_false(web_path_safe("../a", true));
	assert_false(web_path_safe("/a//b", false));
	assert_false(web_path_safe("/a/b\n", false));
	assert_false(web_path_safe("", true));
	assert_false(web_path_safe(NULL, true));
	assert_true(web_path_under("/srv/vm/a.vhdx", "/srv/vm"));
	assert_true(web_path_under("/srv/vm/a.vhdx", "/srv/vm/"));
	assert_true(web_path_under("/srv/vm", "/srv/vm"));
	assert_false(web_path_under("/srv/vmx/a.vhdx", "/srv/vm"));
	assert_false(web_path_under("/srv", "/srv/vm"));
	assert_true(web_path_under("/anything", "/"));
}

static void url_decode(void **st)
{
	(void)st;
	char out[8];
	assert_true(web_url_decode("a%41", 4, out, sizeof(out)));
	assert_string_equal(out, "aA");
	assert_false(web_url_decode("abcdefgh", 8, out, sizeof(out))); /* too long for out */
	assert_false(web_url_decode("", 0, out, sizeof(out)));
	assert_false(web_url_decode("%7f", 3, out, sizeof(out)));
	assert_false(web_url_decode("%2f", 3, out, sizeof(out)));
}

static void rate_limit(void **st)
{
	(void)st;
	static struct web_ratelimit rl;
	memset(&rl, 0, sizeof(rl));
	int retry = 0;
	for (int i = 0; i < WEB_RL_MAX_FAILS - 1; i++)
		web_rl_fail(&rl, "10.0.0.1", 1000 + i);
	assert_false(web_rl_blocked(&rl, "10.0.0.1", 2000, &retry));
	web_rl_fail(&rl, "10.0.0.1", 2000);
	assert_true(web_rl_blocked(&rl, "10.0.0.1", 2000, &retry));
	assert_int_equal(retry, 59);
	assert_false(web_rl_blocked(&rl, "10.0.0.2", 2000, &retry));
	assert_true(web_rl_blocked(&rl, "10.0.0.1", 1000 + WEB_RL_WINDOW_MS - 1, &retry));
	assert_int_equal(retry, 1);
	assert_false(web_rl_blocked(&rl, "10.0.0.1", 1000 + WEB_RL_WINDOW_MS, &retry)); /* the window is over */
	/* A full table: the oldest entry gives way, the newest addresses are tracked. */
	char a[32];
	for (int i = 0; i < WEB_RL_SLOTS + 10; i++) {
		snprintf(a, sizeof(a), "10.1.%d.%d", i / 256, i % 256);
		for (int k = 0; k < WEB_RL_MAX_FAILS; k++)
			web_rl_fail(&rl, a, 100000 + i);
	}
	assert_true(web_rl_blocked(&rl, a, 100000 + WEB_RL_SLOTS + 10, &retry));
	assert_false(web_rl_blocked(&rl, "10.1.0.0", 100000 + WEB_RL_SLOTS + 10, &retry));
}

static void roles(void **st)
{
	(void)st;
	assert_int_equal(token_role_parse("operator"), ROLE_OPERATOR);
	assert_int_equal(token_role_parse("ADMINISTRATOR"), ROLE_ADMINISTRATOR);
	assert_int_equal(token_role_parse("root"), ROLE_NONE);
	assert_int_equal(token_role_parse(NULL), ROLE_NONE);
	assert_string_equal(token_role_name(ROLE_READER), "Reader");
	assert_true(ROLE_READER < ROLE_OPERATOR && ROLE_OPERATOR < ROLE_ADMINISTRATOR);
}

static void sessions(void **st)
{
	(void)st;
	static struct web_sessions t;
	memset(&t, 0, sizeof(t));
	unsigned char rnd[64];
	for (int i = 0; i < 64; i++)
		rnd[i] = (unsigned char)i;
	const struct web_session *s = web_session_new(&t, "alice", ROLE_OPERATOR, rnd, 1000);
	char id[WEB_SESSION_HEX + 1], csrf[WEB_SESSION_HEX + 1];
	strcpy(id, s->id);
	strcpy(csrf, s->csrf);
	assert_int_equal(strlen(id), WEB_SESSION_HEX);
	assert_string_not_equal(id, csrf);
	assert_ptr_equal(web_session_find(&t, id, 2000), s);
	assert_true(web_session_csrf_ok(s, csrf));
	assert_false(web_session_csrf_ok(s, id));
	assert_false(web_session_csrf_ok(s, NULL));
	assert_false(web_session_csrf_ok(NULL, csrf));
	char wrong[WEB_SESSION_HEX + 1];
	strcpy(wrong, csrf);
	wrong[5] ^= 1;
	assert_false(web_session_csrf_ok(s, wrong));
	assert_null(web_session_find(&t, "short", 2000));
	assert_null(web_session_find(&t, NULL, 2000));
	assert_null(web_session_find(&t, id, 1000 + WEB_SESSION_TTL_MS)); /* expired */
	rnd[0] ^= 0xff; /* different bytes */
	s = web_session_new(&t, "bob", ROLE_READER, rnd, 5000);
	strcpy(id, s->id);
	web_session_end(&t, id);
	assert_null(web_session_find(&t, id, 6000));
	/* A full table: the session closest to expiry gives way. */
	for (int i = 0; i < WEB_SESSION_SLOTS + 1; i++) {
		rnd[0] = (unsigned char)i, rnd[1] = (unsigned char)(i >> 8);
		s = web_session_new(&t, "u", ROLE_READER, rnd, 10000 + i);
		if (i == 0)
			strcpy(id, s->id);
	}
	assert_null(web_session_find(&t, id, 20000));
	assert_non_null(web_session_find(&t, s->id, 20000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(family_endpoints), cmocka_unit_test(captures_and_body), cmocka_unit_test(generic_form),
		cmocka_unit_test(refusals),	    cmocka_unit_test(json_depth),	 cmocka_unit_test(paths),
		cmocka_unit_test(url_decode),	    cmocka_unit_test(rate_limit),	 cmocka_unit_test(roles),
		cmocka_unit_test(sessions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
