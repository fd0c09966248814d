/*
 * test_control.c: the control protocol's pure functions (ctl-proto.c):
 * requests accepted and rejected, the builder, escaping, final lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl-proto.h"
#include "tunneld.h"

/* A request that must parse, and what it must parse into. */
struct accept_case {
	const char	*line;
	int		 verb;
	int		 json;
	int		 all;
	int		 timeout;
	int		 argc;
	const char	*args;		/* argv joined by single spaces */
};

/* A request that must be refused, and a part of the message it gets. */
struct reject_case {
	const char	*line;
	const char	*message;
};

static const struct accept_case accepts[] = {
	{ "tunneld/1 status", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "tunneld/1 status pg", CTL_STATUS, 0, 0, -1, 1, "pg" },
	{ "tunneld/1 status pg web socks", CTL_STATUS, 0, 0, -1, 3,
	  "pg web socks" },
	{ "tunneld/1 status --json", CTL_STATUS, 1, 0, -1, 0, "" },
	{ "tunneld/1 status pg --json", CTL_STATUS, 1, 0, -1, 1, "pg" },
	{ "tunneld/1 status --json --json", CTL_STATUS, 1, 0, -1, 0, "" },
	{ "tunneld/1 links", CTL_LINKS, 0, 0, -1, 0, "" },
	{ "tunneld/1 links --json", CTL_LINKS, 1, 0, -1, 0, "" },
	{ "tunneld/1 up pg", CTL_UP, 0, 0, -1, 1, "pg" },
	{ "tunneld/1 up --all", CTL_UP, 0, 1, -1, 0, "" },
	{ "tunneld/1 up a b c", CTL_UP, 0, 0, -1, 3, "a b c" },
	{ "tunneld/1 down pg", CTL_DOWN, 0, 0, -1, 1, "pg" },
	{ "tunneld/1 down --all", CTL_DOWN, 0, 1, -1, 0, "" },
	{ "tunneld/1 restart pg web", CTL_RESTART, 0, 0, -1, 2, "pg web" },
	{ "tunneld/1 wait pg", CTL_WAIT, 0, 0, -1, 1, "pg" },
	{ "tunneld/1 wait --timeout=5 pg web", CTL_WAIT, 0, 0, 5, 2,
	  "pg web" },
	{ "tunneld/1 wait pg --timeout=0", CTL_WAIT, 0, 0, 0, 1, "pg" },
	{ "tunneld/1 wait pg --timeout=86400", CTL_WAIT, 0, 0, 86400, 1,
	  "pg" },
	{ "tunneld/1 wait --timeout=007 pg", CTL_WAIT, 0, 0, 7, 1, "pg" },
	{ "tunneld/1 reload", CTL_RELOAD, 0, 0, -1, 0, "" },
	{ "tunneld/1 version", CTL_VERSION, 0, 0, -1, 0, "" },
	/* Spacing, line ends, names that look like options. */
	{ "tunneld/1 status\r", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "tunneld/1 status\r\n", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "tunneld/1 status\n", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "  tunneld/1   status  pg\tweb  ", CTL_STATUS, 0, 0, -1, 2,
	  "pg web" },
	{ "tunneld/1 status -- -odd --json", CTL_STATUS, 0, 0, -1, 2,
	  "-odd --json" },
	{ "tunneld/1 status -x", CTL_STATUS, 0, 0, -1, 1, "-x" },
	{ "tunneld/1 up --all --", CTL_UP, 0, 1, -1, 0, "" },
	{ "tunneld/1 status A-Z_a.z-09", CTL_STATUS, 0, 0, -1, 1,
	  "A-Z_a.z-09" },
	{ "tunneld/1 status "
	  "n234567890123456789012345678901234567890123456789012345678901234",
	  CTL_STATUS, 0, 0, -1, 1,
	  "n234567890123456789012345678901234567890123456789012345678901234" },
};

static const struct reject_case rejects[] = {
	{ "", "empty request" },
	{ "   ", "empty request" },
	{ "\r", "empty request" },
	{ "status", "a request starts with the protocol word \"tunneld/1\", "
	  "not \"status\"" },
	{ "tunneld/2 status", "protocol \"tunneld/2\" not supported (this "
	  "daemon speaks tunneld/1)" },
	{ "tunneld/10 status", "protocol \"tunneld/10\" not supported" },
	{ "TUNNELD/1 status", "a request starts with the protocol word" },
	{ "tunneld/1", "missing verb after \"tunneld/1\" (known: status, "
	  "links, up, down, restart, wait, reload, version)" },
	{ "tunneld/1 stauts", "unknown verb \"stauts\" (known: status, "
	  "links, up, down, restart, wait, reload, version)" },
	{ "tunneld/1 STATUS", "unknown verb \"STATUS\"" },
	{ "tunneld/1 check", "unknown verb \"check\"" },
	/* Argument counts. */
	{ "tunneld/1 links db", "\"links\" takes no arguments" },
	{ "tunneld/1 reload now", "\"reload\" takes no arguments" },
	{ "tunneld/1 version x", "\"version\" takes no arguments" },
	{ "tunneld/1 up", "\"up\" needs tunnel names or --all" },
	{ "tunneld/1 down", "\"down\" needs tunnel names or --all" },
	{ "tunneld/1 restart", "\"restart\" needs at least 1 tunnel name" },
	{ "tunneld/1 wait", "\"wait\" needs at least 1 tunnel name" },
	{ "tunneld/1 wait --timeout=3", "\"wait\" needs at least 1" },
	{ "tunneld/1 up --all pg", "give tunnel names or --all, not both" },
	{ "tunneld/1 down pg --all", "give tunnel names or --all, not both" },
	/* Options. */
	{ "tunneld/1 restart --all", "\"restart\" does not accept \"--all\"" },
	{ "tunneld/1 status --all", "\"status\" does not accept \"--all\"" },
	{ "tunneld/1 up pg --json", "\"up\" does not accept \"--json\"" },
	{ "tunneld/1 version --json", "\"version\" does not accept" },
	{ "tunneld/1 status --timeout=3", "\"status\" does not accept "
	  "\"--timeout\"" },
	{ "tunneld/1 wait pg --timeout", "\"--timeout\" needs a value" },
	{ "tunneld/1 wait pg --timeout=", "bad timeout \"\"" },
	{ "tunneld/1 wait pg --timeout=-1", "bad timeout \"-1\"" },
	{ "tunneld/1 wait pg --timeout=1.5", "bad timeout \"1.5\"" },
	{ "tunneld/1 wait pg --timeout=86401", "bad timeout \"86401\"" },
	{ "tunneld/1 wait pg --timeout=99999999999999999999",
	  "bad timeout" },
	{ "tunneld/1 wait pg --timeout=5s", "bad timeout \"5s\"" },
	{ "tunneld/1 status --verbose", "unknown option \"--verbose\" for "
	  "\"status\"" },
	{ "tunneld/1 status --json=1", "unknown option \"--json=1\"" },
	/* Names. */
	{ "tunneld/1 status a/b", "bad tunnel name \"a/b\"" },
	{ "tunneld/1 up pg wéb", "bad tunnel name \"w\\xc3\\xa9b\"" },
	{ "tunneld/1 status \"pg\"", "bad tunnel name \"\\\"pg\\\"\"" },
	{ "tunneld/1 status "
	  "n2345678901234567890123456789012345678901234567890123456789012345",
	  "bad tunnel name \"n234567890123456789012345678901234567890...\"" },
	/* Bytes that never belong in a request. */
	{ "tunneld/1 status \x01", "control character (byte 0x01" },
	{ "tunneld/1 sta\033[2Jtus", "control character (byte 0x1b" },
	{ "tunneld/1 status\x7f", "control character (byte 0x7f" },
	{ "tunneld/1 status pg\r\r", "control character (byte 0x0d" },
};

/* Join argv with single spaces. */
static void
join_args(const struct ctl_request *req, char *buf, size_t len)
{
	int i;

	buf[0] = '\0';
	for (i = 0; i < req->argc; i++) {
		if (i > 0)
			strncat(buf, " ", len - strlen(buf) - 1);
		strncat(buf, req->argv[i], len - strlen(buf) - 1);
	}
}

/* Every accepted request parses into what the table says. */
static void
test_parse_accept(void **state)
{
	struct ctl_request	*req;
	char			 err[512], args[CTL_LINE_MAX];
	size_t			 i;

	(void)state;
	req = malloc(sizeof(*req));
	assert_non_null(req);
	for (i = 0; i < sizeof(accepts) / sizeof(accepts[0]); i++) {
		err[0] = '\0';
		if (ctlp_parse(accepts[i].line, req, err, sizeof(err)) != 0)
			fail_msg("refused \"%s\": %s", accepts[i].line, err);
		assert_int_equal(req->verb, accepts[i].verb);
		assert_int_equal(req->json, accepts[i].json);
		assert_int_equal(req->all, accepts[i].all);
		assert_int_equal(req->timeout, accepts[i].timeout);
		assert_int_equal(req->argc, accepts[i].argc);
		join_args(req, args, sizeof(args));
		assert_string_equal(args, accepts[i].args);
	}
	free(req);
}

/* Every refused request is refused with the expected message. */
static void
test_parse_reject(void **state)
{
	struct ctl_request	*req;
	char			 err[512];
	size_t			 i;

	(void)state;
	req = malloc(sizeof(*req));
	assert_non_null(req);
	for (i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
		err[0] = '\0';
		if (ctlp_parse(rejects[i].line, req, err, sizeof(err)) != -1)
			fail_msg("accepted \"%s\"", rejects[i].line);
		if (strstr(err, rejects[i].message) == NULL)
			fail_msg("\"%s\": got \"%s\", want \"%s\"",
			    rejects[i].line, err, rejects[i].message);
		assert_null(strchr(err, '\n'));
	}
	free(req);
}

/* The line limit: 4095 bytes and a newline pass, one more byte does not. */
static void
test_parse_limits(void **state)
{
	struct ctl_request	*req;
	char			*line, err[256];
	int			 i;

	(void)state;
	req = malloc(sizeof(*req));
	line = malloc(CTL_LINE_MAX + 16);
	assert_non_null(req);
	assert_non_null(line);

	/* "tunneld/1 status" and " x" repeated up to 4095 bytes. */
	strcpy(line, "tunneld/1 status");
	while (strlen(line) + 2 <= CTL_LINE_MAX - 1)
		strcat(line, " x");
	while (strlen(line) < CTL_LINE_MAX - 1)
		strcat(line, "y");
	assert_int_equal(strlen(line), CTL_LINE_MAX - 1);
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too many arguments (limit 1024)"));

	/* 1024 names fit. */
	strcpy(line, "tunneld/1 status");
	for (i = 0; i < CTL_ARGS_MAX; i++)
		strcat(line, " x");
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), 0);
	assert_int_equal(req->argc, CTL_ARGS_MAX);
	strcat(line, " x");
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too many arguments"));

	/* 4095 bytes with a newline is the longest line. */
	strcpy(line, "tunneld/1 status");
	while (CTL_LINE_MAX - 1 - strlen(line) > 65)
		strcat(line, " abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
	strcat(line, " ");
	while (strlen(line) < CTL_LINE_MAX - 1)
		strcat(line, "z");
	strcat(line, "\n");
	assert_int_equal(strlen(line), CTL_LINE_MAX);
	if (ctlp_parse(line, req, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	line[CTL_LINE_MAX - 1] = 'z';
	line[CTL_LINE_MAX] = '\0';
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), -1);
	assert_string_equal(err, "request line too long (limit 4096 bytes)");

	/* A short err buffer is cut, never overrun. */
	memset(err, 'Q', sizeof(err));
	assert_int_equal(ctlp_parse("tunneld/1 nope", req, err, 8), -1);
	assert_string_equal(err, "unknown");
	assert_int_equal(err[8], 'Q');
	assert_int_equal(ctlp_parse("tunneld/1 nope", req, NULL, 0), -1);

	free(line);
	free(req);
}

/* A parsed request lives on its own: argv points into its copy. */
static void
test_parse_copy(void **state)
{
	struct ctl_request	*req;
	char			 line[64], err[128];

	(void)state;
	req = malloc(sizeof(*req));
	assert_non_null(req);
	strcpy(line, "tunneld/1 wait pg web --timeout=9");
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), 0);
	memset(line, 'X', sizeof(line) - 1);
	assert_string_equal(req->argv[0], "pg");
	assert_string_equal(req->argv[1], "web");
	assert_true(req->argv[0] >= req->buf &&
	    req->argv[0] < req->buf + sizeof(req->buf));
	free(req);
}

/* The builder writes what the parser reads back. */
static void
test_format(void **state)
{
	struct ctl_request	 req, *back;
	char			 buf[CTL_LINE_MAX + 1], err[256], big[80];
	static char		 pg[] = "pg", odd[] = "-odd", web[] = "web";
	char			*names[3] = { pg, odd, web };
	char			*many[CTL_ARGS_MAX];
	int			 i, n;

	(void)state;
	back = malloc(sizeof(*back));
	assert_non_null(back);

	memset(&req, 0, sizeof(req));
	req.verb = CTL_STATUS;
	req.timeout = -1;
	n = ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/1 status\n");
	assert_int_equal(n, strlen(buf));

	req.verb = CTL_WAIT;
	req.timeout = 12;
	req.argc = 2;
	req.argv[0] = names[0];
	req.argv[1] = names[2];
	ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/1 wait --timeout=12 pg web\n");
	assert_int_equal(ctlp_parse(buf, back, err, sizeof(err)), 0);
	assert_int_equal(back->verb, CTL_WAIT);
	assert_int_equal(back->timeout, 12);
	assert_int_equal(back->argc, 2);

	req.verb = CTL_STATUS;
	req.timeout = -1;
	req.json = 1;
	req.argc = 3;
	for (i = 0; i < 3; i++)
		req.argv[i] = names[i];
	ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/1 status --json -- pg -odd web\n");
	assert_int_equal(ctlp_parse(buf, back, err, sizeof(err)), 0);
	assert_int_equal(back->argc, 3);
	assert_string_equal(back->argv[1], "-odd");

	memset(&req, 0, sizeof(req));
	req.verb = CTL_UP;
	req.all = 1;
	req.timeout = -1;
	ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/1 up --all\n");

	/* Too small a buffer, a bad verb, a line over the limit. */
	assert_int_equal(ctlp_format(&req, buf, 10), -1);
	req.verb = CTL_NVERBS;
	assert_int_equal(ctlp_format(&req, buf, sizeof(buf)), -1);
	req.verb = CTL_STATUS;
	req.all = 0;
	memset(big, 'n', 64);
	big[64] = '\0';
	for (i = 0; i < CTL_ARGS_MAX; i++)
		many[i] = big;
	req.argc = 70;
	memcpy(req.argv, many, sizeof(char *) * 70);
	assert_int_equal(ctlp_format(&req, buf, sizeof(buf)), -1);
	req.argc = 50;
	assert_true(ctlp_format(&req, buf, sizeof(buf)) > 0);
	free(back);
}

/* Body lines that start with '%' get one more, and lose it again. */
static void
test_escape(void **state)
{
	static const char *lines[] = { "", "pg: up", "%end 0", "%%", "%",
	    "a%b", " %end 1" };
	char	wire[64];
	size_t	i;
	int	code;
	const char *msg;

	(void)state;
	assert_string_equal(ctlp_escape_prefix("%end 0"), "%");
	assert_string_equal(ctlp_escape_prefix("%"), "%");
	assert_string_equal(ctlp_escape_prefix("pg: up"), "");
	assert_string_equal(ctlp_escape_prefix(""), "");
	assert_string_equal(ctlp_unescape("%%end 0"), "%end 0");
	assert_string_equal(ctlp_unescape("%%%"), "%%");
	assert_string_equal(ctlp_unescape("pg"), "pg");
	assert_string_equal(ctlp_unescape("%"), "%");
	assert_string_equal(ctlp_unescape(""), "");
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		snprintf(wire, sizeof(wire), "%s%s",
		    ctlp_escape_prefix(lines[i]), lines[i]);
		/* On the wire no body line looks like a final line. */
		assert_int_equal(ctlp_parse_end(wire, &code, &msg), 0);
		assert_string_equal(ctlp_unescape(wire), lines[i]);
	}
}

/* Final lines, and '%' lines that are not. */
static void
test_parse_end(void **state)
{
	const char	*msg = NULL;
	int		 code = -1;

	(void)state;
	assert_int_equal(ctlp_parse_end("%end 0", &code, &msg), 1);
	assert_int_equal(code, 0);
	assert_string_equal(msg, "");
	assert_int_equal(ctlp_parse_end("%end 1 unknown tunnel \"x\"", &code,
	    &msg), 1);
	assert_int_equal(code, 1);
	assert_string_equal(msg, "unknown tunnel \"x\"");
	assert_int_equal(ctlp_parse_end("%end 4 timed out", &code, &msg), 1);
	assert_int_equal(code, 4);
	assert_int_equal(ctlp_parse_end("%end 255", &code, &msg), 1);
	assert_int_equal(code, 255);

	assert_int_equal(ctlp_parse_end("pg: up", &code, &msg), 0);
	assert_int_equal(ctlp_parse_end("", &code, &msg), 0);
	assert_int_equal(ctlp_parse_end("%%end 0", &code, &msg), 0);
	assert_int_equal(ctlp_parse_end("%begin", &code, &msg), 2);
	assert_int_equal(ctlp_parse_end("%endless", &code, &msg), 2);
	assert_int_equal(ctlp_parse_end("%", &code, &msg), 2);
	assert_int_equal(ctlp_parse_end("%end", &code, &msg), -1);
	assert_int_equal(ctlp_parse_end("%end ", &code, &msg), -1);
	assert_int_equal(ctlp_parse_end("%end x", &code, &msg), -1);
	assert_int_equal(ctlp_parse_end("%end 1x", &code, &msg), -1);
	assert_int_equal(ctlp_parse_end("%end 256", &code, &msg), -1);
	assert_int_equal(ctlp_parse_end("%end 99999999999", &code, &msg), -1);
}

/* The verb table: names, lookups, flags the daemon relies on. */
static void
test_verbs(void **state)
{
	char	list[256];
	int	i;

	(void)state;
	for (i = 0; i < CTL_NVERBS; i++) {
		assert_non_null(ctl_verbs[i].name);
		assert_int_equal(ctlp_verb_find(ctl_verbs[i].name), i);
		assert_true(ctl_verbs[i].min_args <= ctl_verbs[i].max_args);
		assert_true(ctl_verbs[i].max_args <= CTL_ARGS_MAX);
	}
	assert_int_equal(ctlp_verb_find("check"), -1);
	assert_int_equal(ctlp_verb_find(""), -1);
	assert_true(ctl_verbs[CTL_UP].flags & CTL_F_MUTATING);
	assert_true(ctl_verbs[CTL_DOWN].flags & CTL_F_MUTATING);
	assert_true(ctl_verbs[CTL_RESTART].flags & CTL_F_MUTATING);
	assert_true(ctl_verbs[CTL_RELOAD].flags & CTL_F_MUTATING);
	assert_false(ctl_verbs[CTL_STATUS].flags & CTL_F_MUTATING);
	assert_false(ctl_verbs[CTL_WAIT].flags & CTL_F_MUTATING);
	ctlp_verb_list(list, sizeof(list));
	assert_string_equal(list,
	    "status, links, up, down, restart, wait, reload, version");
	ctlp_verb_list(list, 10);
	assert_true(strlen(list) < 10);
}

/* Quoting a peer's word for a message. */
static void
test_quote(void **state)
{
	char	buf[256], small[6];

	(void)state;
	ctlp_quote("pg", buf, sizeof(buf));
	assert_string_equal(buf, "\"pg\"");
	ctlp_quote("", buf, sizeof(buf));
	assert_string_equal(buf, "\"\"");
	ctlp_quote("a\nb\"c\\", buf, sizeof(buf));
	assert_string_equal(buf, "\"a\\x0ab\\\"c\\\\\"");
	ctlp_quote("abcdefgh", small, sizeof(small));
	assert_string_equal(small, "\"abc\"");
	ctlp_quote("abc", buf, 2);
	assert_string_equal(buf, "");
}

/* Run every test. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_accept),
		cmocka_unit_test(test_parse_reject),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_parse_copy),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_parse_end),
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_quote),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
