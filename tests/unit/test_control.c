/*
 * test_control.c: the control protocol's pure functions (ctl-proto.c):
 * requests accepted and rejected, the builder, escaping, final lines; and
 * what the status and links verbs print (control_show.c), on links and
 * tunnels built by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "ctl-proto.h"
#include "tunneld.h"

/*
 * test_control links control_show.c with ctl-proto.c, log.c and util.c.
 * The renderer needs the daemon's state (td) and a few lookups from files
 * the test does not link; the stubs below stand in for them.
 */

struct tunneld	*td;

/* The state names, as fwd_local.c, link.c and conf.c give them. */
const char *
fwd_state_name(enum fwd_state s)
{
	static const char *const names[] = { "down", "starting", "waiting",
	    "up", "failed" };

	return (names[s]);
}

const char *
link_state_name(enum link_state s)
{
	static const char *const names[] = { "idle", "connecting", "up",
	    "backoff", "failed" };

	return (names[s]);
}

const char *
tunnel_type_name(enum tunnel_type t)
{
	static const char *const names[] = { "local", "remote", "dynamic",
	    "remote-dynamic" };

	return (names[t]);
}

/* No configuration in these tests: hosts are found by their links. */
const struct host_conf *
conf_host(const struct conf *conf, const char *name)
{
	(void)conf;
	(void)name;
	return (NULL);
}

/* The tunnel of that name on td's links, or NULL. */
struct fwd *
fwd_find(const char *name)
{
	struct link	*l;
	struct fwd	*f;

	TAILQ_FOREACH(l, &td->links, entry) {
		TAILQ_FOREACH(f, &l->fwds, entry) {
			if (strcmp(f->tc->name, name) == 0)
				return (f);
		}
	}
	return (NULL);
}

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
	{ "tunneld/2 status", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "tunneld/2 status pg", CTL_STATUS, 0, 0, -1, 1, "pg" },
	{ "tunneld/2 status pg web socks", CTL_STATUS, 0, 0, -1, 3,
	  "pg web socks" },
	{ "tunneld/2 status --json", CTL_STATUS, 1, 0, -1, 0, "" },
	{ "tunneld/2 status pg --json", CTL_STATUS, 1, 0, -1, 1, "pg" },
	{ "tunneld/2 status --json --json", CTL_STATUS, 1, 0, -1, 0, "" },
	{ "tunneld/2 links", CTL_LINKS, 0, 0, -1, 0, "" },
	{ "tunneld/2 links --json", CTL_LINKS, 1, 0, -1, 0, "" },
	{ "tunneld/2 up pg", CTL_UP, 0, 0, -1, 1, "pg" },
	{ "tunneld/2 up --all", CTL_UP, 0, 1, -1, 0, "" },
	{ "tunneld/2 up a b c", CTL_UP, 0, 0, -1, 3, "a b c" },
	{ "tunneld/2 down pg", CTL_DOWN, 0, 0, -1, 1, "pg" },
	{ "tunneld/2 down --all", CTL_DOWN, 0, 1, -1, 0, "" },
	{ "tunneld/2 restart pg web", CTL_RESTART, 0, 0, -1, 2, "pg web" },
	{ "tunneld/2 wait pg", CTL_WAIT, 0, 0, -1, 1, "pg" },
	{ "tunneld/2 wait --timeout=5 pg web", CTL_WAIT, 0, 0, 5, 2,
	  "pg web" },
	{ "tunneld/2 wait pg --timeout=0", CTL_WAIT, 0, 0, 0, 1, "pg" },
	{ "tunneld/2 wait pg --timeout=86400", CTL_WAIT, 0, 0, 86400, 1,
	  "pg" },
	{ "tunneld/2 wait --timeout=007 pg", CTL_WAIT, 0, 0, 7, 1, "pg" },
	{ "tunneld/2 reload", CTL_RELOAD, 0, 0, -1, 0, "" },
	{ "tunneld/2 version", CTL_VERSION, 0, 0, -1, 0, "" },
	/* Spacing, line ends, names that look like options. */
	{ "tunneld/2 status\r", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "tunneld/2 status\r\n", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "tunneld/2 status\n", CTL_STATUS, 0, 0, -1, 0, "" },
	{ "  tunneld/2   status  pg\tweb  ", CTL_STATUS, 0, 0, -1, 2,
	  "pg web" },
	{ "tunneld/2 status -- -odd --json", CTL_STATUS, 0, 0, -1, 2,
	  "-odd --json" },
	{ "tunneld/2 status -x", CTL_STATUS, 0, 0, -1, 1, "-x" },
	{ "tunneld/2 up --all --", CTL_UP, 0, 1, -1, 0, "" },
	{ "tunneld/2 status A-Z_a.z-09", CTL_STATUS, 0, 0, -1, 1,
	  "A-Z_a.z-09" },
	{ "tunneld/2 status "
	  "n234567890123456789012345678901234567890123456789012345678901234",
	  CTL_STATUS, 0, 0, -1, 1,
	  "n234567890123456789012345678901234567890123456789012345678901234" },
	/* Quoted words: one word each, never an option. */
	{ "tunneld/2 status \"pg\"", CTL_STATUS, 0, 0, -1, 1, "pg" },
	{ "tunneld/2 status 'pg' \"web\"\t'x'", CTL_STATUS, 0, 0, -1, 3,
	  "pg web x" },
	{ "tunneld/2 down \"--all\"", CTL_DOWN, 0, 0, -1, 1, "--all" },
	{ "tunneld/2 status \"--\" --json", CTL_STATUS, 1, 0, -1, 1, "--" },
	{ "tunneld/2 up '-x'", CTL_UP, 0, 0, -1, 1, "-x" },
	{ "\"tunneld/2\" 'status' pg", CTL_STATUS, 0, 0, -1, 1, "pg" },
};

static const struct reject_case rejects[] = {
	{ "", "empty request" },
	{ "   ", "empty request" },
	{ "\r", "empty request" },
	{ "status", "a request starts with the protocol word \"tunneld/2\", "
	  "not \"status\"" },
	{ "tunneld/1 status", "protocol \"tunneld/1\" not supported (this "
	  "daemon speaks tunneld/2)" },
	{ "tunneld/20 status", "protocol \"tunneld/20\" not supported" },
	{ "TUNNELD/1 status", "a request starts with the protocol word" },
	{ "tunneld/2", "missing verb after \"tunneld/2\" (known: status, "
	  "links, up, down, restart, wait, reload, version, events, metrics)" },
	{ "tunneld/2 stauts", "unknown verb \"stauts\" (known: status, "
	  "links, up, down, restart, wait, reload, version, events, metrics)" },
	{ "tunneld/2 STATUS", "unknown verb \"STATUS\"" },
	{ "tunneld/2 check", "unknown verb \"check\"" },
	/* Argument counts. */
	{ "tunneld/2 links db", "\"links\" takes no arguments" },
	{ "tunneld/2 reload now", "\"reload\" takes no arguments" },
	{ "tunneld/2 version x", "\"version\" takes no arguments" },
	{ "tunneld/2 up", "\"up\" needs tunnel names or --all" },
	{ "tunneld/2 down", "\"down\" needs tunnel names or --all" },
	{ "tunneld/2 restart", "\"restart\" needs at least 1 tunnel name" },
	{ "tunneld/2 wait", "\"wait\" needs at least 1 tunnel name" },
	{ "tunneld/2 wait --timeout=3", "\"wait\" needs at least 1" },
	{ "tunneld/2 up --all pg", "give tunnel names or --all, not both" },
	{ "tunneld/2 down pg --all", "give tunnel names or --all, not both" },
	/* Options. */
	{ "tunneld/2 restart --all", "\"restart\" does not accept \"--all\"" },
	{ "tunneld/2 status --all", "\"status\" does not accept \"--all\"" },
	{ "tunneld/2 status --follow", "\"status\" does not accept "
	  "\"--follow\"" },
	{ "tunneld/2 events --follow x", "\"events\" takes no arguments" },
	{ "tunneld/2 up pg --json", "\"up\" does not accept \"--json\"" },
	{ "tunneld/2 version --json", "\"version\" does not accept" },
	{ "tunneld/2 status --timeout=3", "\"status\" does not accept "
	  "\"--timeout\"" },
	{ "tunneld/2 wait pg --timeout", "\"--timeout\" needs a value" },
	{ "tunneld/2 wait pg --timeout=", "bad timeout \"\"" },
	{ "tunneld/2 wait pg --timeout=-1", "bad timeout \"-1\"" },
	{ "tunneld/2 wait pg --timeout=1.5", "bad timeout \"1.5\"" },
	{ "tunneld/2 wait pg --timeout=86401", "bad timeout \"86401\"" },
	{ "tunneld/2 wait pg --timeout=99999999999999999999",
	  "bad timeout" },
	{ "tunneld/2 wait pg --timeout=5s", "bad timeout \"5s\"" },
	{ "tunneld/2 status --verbose", "unknown option \"--verbose\" for "
	  "\"status\"" },
	{ "tunneld/2 status --json=1", "unknown option \"--json=1\"" },
	/* Names. */
	{ "tunneld/2 status a/b", "bad tunnel name \"a/b\"" },
	{ "tunneld/2 up pg wéb", "bad tunnel name \"w\\xc3\\xa9b\"" },
	{ "tunneld/2 status a\"b", "bad tunnel name \"a\\\"b\"" },
	/* Words with a space or an option inside are one (bad) name. */
	{ "tunneld/2 status \"tk ok\"", "bad tunnel name \"tk ok\"" },
	{ "tunneld/2 down \"ok --all\"", "bad tunnel name \"ok --all\"" },
	{ "tunneld/2 down ' --all'", "bad tunnel name \" --all\"" },
	{ "tunneld/2 status \"a\\\"b\\\\c\"", "bad tunnel name "
	  "\"a\\\"b\\\\c\"" },
	{ "tunneld/2 status 'a\\b'", "bad tunnel name \"a\\\\b\"" },
	{ "tunneld/2 status \"\"", "bad tunnel name \"\"" },
	{ "tunneld/2 status ''", "bad tunnel name \"\"" },
	/* Quotes that do not close, or close inside a word. */
	{ "tunneld/2 status \"pg", "unterminated quote: the \" at offset 17" },
	{ "tunneld/2 status 'pg", "unterminated quote: the ' at offset 17" },
	{ "tunneld/2 status \"pg\\\"", "unterminated quote" },
	{ "tunneld/2 status \"pg\\", "unterminated quote" },
	{ "tunneld/2 status \"p\\g\"", "bad escape at offset 19" },
	{ "tunneld/2 status \"pg\"x", "a closing quote must end its word "
	  "(offset 20)" },
	{ "tunneld/2 status 'pg'\"x\"", "a closing quote must end" },
	{ "\"tunneld/2 status\"", "protocol \"tunneld/2 status\" not "
	  "supported" },
	{ "tunneld/2 status "
	  "n2345678901234567890123456789012345678901234567890123456789012345",
	  "bad tunnel name \"n234567890123456789012345678901234567890...\"" },
	/* Bytes that never belong in a request. */
	{ "tunneld/2 status \x01", "control character (byte 0x01" },
	{ "tunneld/2 sta\033[2Jtus", "control character (byte 0x1b" },
	{ "tunneld/2 status\x7f", "control character (byte 0x7f" },
	{ "tunneld/2 status pg\r\r", "control character (byte 0x0d" },
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

	/* "tunneld/2 status" and " x" repeated up to 4095 bytes. */
	strcpy(line, "tunneld/2 status");
	while (strlen(line) + 2 <= CTL_LINE_MAX - 1)
		strcat(line, " x");
	while (strlen(line) < CTL_LINE_MAX - 1)
		strcat(line, "y");
	assert_int_equal(strlen(line), CTL_LINE_MAX - 1);
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too many arguments (limit 1024)"));

	/* 1024 names fit. */
	strcpy(line, "tunneld/2 status");
	for (i = 0; i < CTL_ARGS_MAX; i++)
		strcat(line, " x");
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), 0);
	assert_int_equal(req->argc, CTL_ARGS_MAX);
	strcat(line, " x");
	assert_int_equal(ctlp_parse(line, req, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too many arguments"));

	/* 4095 bytes with a newline is the longest line. */
	strcpy(line, "tunneld/2 status");
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
	assert_int_equal(ctlp_parse("tunneld/2 nope", req, err, 8), -1);
	assert_string_equal(err, "unknown");
	assert_int_equal(err[8], 'Q');
	assert_int_equal(ctlp_parse("tunneld/2 nope", req, NULL, 0), -1);

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
	strcpy(line, "tunneld/2 wait pg web --timeout=9");
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
	assert_string_equal(buf, "tunneld/2 status\n");
	assert_int_equal(n, strlen(buf));

	req.verb = CTL_WAIT;
	req.timeout = 12;
	req.argc = 2;
	req.argv[0] = names[0];
	req.argv[1] = names[2];
	ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/2 wait --timeout=12 pg web\n");
	assert_int_equal(ctlp_parse(buf, back, err, sizeof(err)), 0);
	assert_int_equal(back->verb, CTL_WAIT);
	assert_int_equal(back->timeout, 12);
	assert_int_equal(back->argc, 2);

	memset(&req, 0, sizeof(req));
	req.verb = CTL_EVENTS;
	req.timeout = -1;
	req.json = 1;
	req.follow = 1;
	ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/2 events --json --follow\n");
	assert_int_equal(ctlp_parse(buf, back, err, sizeof(err)), 0);
	assert_int_equal(back->verb, CTL_EVENTS);
	assert_int_equal(back->follow, 1);
	assert_int_equal(back->json, 1);
	assert_int_equal(ctlp_parse("tunneld/2 events", back, err,
	    sizeof(err)), 0);
	assert_int_equal(back->follow, 0);
	req.follow = 0;

	req.verb = CTL_STATUS;
	req.timeout = -1;
	req.json = 1;
	req.argc = 3;
	for (i = 0; i < 3; i++)
		req.argv[i] = names[i];
	ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/2 status --json -- pg -odd web\n");
	assert_int_equal(ctlp_parse(buf, back, err, sizeof(err)), 0);
	assert_int_equal(back->argc, 3);
	assert_string_equal(back->argv[1], "-odd");

	memset(&req, 0, sizeof(req));
	req.verb = CTL_UP;
	req.all = 1;
	req.timeout = -1;
	ctlp_format(&req, buf, sizeof(buf));
	assert_string_equal(buf, "tunneld/2 up --all\n");

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

/*
 * Every argument travels as one word: the builder quotes what the parser
 * would split or take for an option, and the parser reads back exactly
 * what was given.
 */
static void
test_format_quoting(void **state)
{
	struct ctl_request	 req, *back;
	char			 buf[CTL_LINE_MAX + 1], err[256];
	static char		 tk[] = "tk ok", all[] = "ok --all",
				 lead[] = " --all", empty[] = "",
				 q[] = "a\"b\\c'd", tab[] = "a\tb", pg[] = "pg",
				 ctl[] = "a\033b";
	char			*words[] = { tk, all, lead, empty, q, tab, pg };
	int			 i, n = sizeof(words) / sizeof(words[0]);

	(void)state;
	back = malloc(sizeof(*back));
	assert_non_null(back);
	memset(&req, 0, sizeof(req));
	req.verb = CTL_DOWN;
	req.timeout = -1;
	req.argc = n;
	for (i = 0; i < n; i++)
		req.argv[i] = words[i];
	assert_true(ctlp_format(&req, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "tunneld/2 down \"tk ok\" \"ok --all\" "
	    "\" --all\" \"\" \"a\\\"b\\\\c'd\" \"a\tb\" pg\n");

	/* Read back word for word: the parser's own split, before names. */
	assert_int_equal(ctlp_parse(buf, back, err, sizeof(err)), -1);
	assert_string_equal(err, "bad tunnel name \"tk ok\": a name is 1 to "
	    "64 of A-Z a-z 0-9 _ . -");
	for (i = 0; i < n; i++) {
		req.argc = 1;
		req.argv[0] = words[i];
		assert_true(ctlp_format(&req, buf, sizeof(buf)) > 0);
		if (i == n - 1) {
			assert_int_equal(ctlp_parse(buf, back, err,
			    sizeof(err)), 0);
			assert_int_equal(back->argc, 1);
			assert_false(back->all);
			assert_string_equal(back->argv[0], pg);
			continue;
		}
		assert_int_equal(ctlp_parse(buf, back, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "bad tunnel name"));
		assert_int_equal(ctlp_check_name(words[i], buf, sizeof(buf)),
		    -1);
		assert_string_equal(buf, err);
	}
	assert_int_equal(ctlp_check_name(pg, err, sizeof(err)), 0);

	/* No quoting can carry a control character: refused. */
	req.argv[0] = ctl;
	assert_int_equal(ctlp_format(&req, buf, sizeof(buf)), -1);

	/* A quoted word that does not fit is refused, never cut. */
	req.argv[0] = tk;
	assert_int_equal(ctlp_format(&req, buf, 22), -1);
	assert_int_equal(ctlp_format(&req, buf, 23), -1);
	assert_int_equal(ctlp_format(&req, buf, 24), 23);
	assert_string_equal(buf, "tunneld/2 down \"tk ok\"\n");
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
	assert_false(ctl_verbs[CTL_METRICS].flags & CTL_F_MUTATING);
	ctlp_verb_list(list, sizeof(list));
	assert_string_equal(list,
	    "status, links, up, down, restart, wait, reload, version, events, "
	    "metrics");
	assert_false(ctl_verbs[CTL_EVENTS].flags & CTL_F_MUTATING);
	assert_true(ctl_verbs[CTL_EVENTS].flags & CTL_F_FOLLOW);
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

/* Two links and three tunnels, as the show tests see them. */
struct show_world {
	struct tunneld		td;
	struct host_conf	hc[2];
	struct tunnel_conf	tc[3];
	struct link		link[2];
	struct fwd		fwd[3];
};

/* Build the world: db is up with pg and pgx on it, relay is in backoff. */
static void
show_world_init(struct show_world *w)
{
	char	err[128];
	int	i;

	memset(w, 0, sizeof(*w));
	TAILQ_INIT(&w->td.links);
	td = &w->td;
	strlcpy_(w->hc[0].name, "db", sizeof(w->hc[0].name));
	strlcpy_(w->hc[0].address, "10.0.0.5", sizeof(w->hc[0].address));
	strlcpy_(w->hc[0].user, "ops", sizeof(w->hc[0].user));
	w->hc[0].port = 22;
	strlcpy_(w->hc[1].name, "relay", sizeof(w->hc[1].name));
	strlcpy_(w->hc[1].address, "2001:db8::1", sizeof(w->hc[1].address));
	strlcpy_(w->hc[1].user, "tunnel", sizeof(w->hc[1].user));
	w->hc[1].port = 2222;
	for (i = 0; i < 2; i++) {
		w->link[i].hc = &w->hc[i];
		w->link[i].rtt_us = -1;
		TAILQ_INIT(&w->link[i].fwds);
		TAILQ_INSERT_TAIL(&w->td.links, &w->link[i], entry);
	}
	w->link[0].state = LINK_UP;
	w->link[0].rtt_us = 1234;
	w->link[1].state = LINK_BACKOFF;
	w->link[1].retries = 3;
	strlcpy_(w->link[1].last_error, "connect to [2001:db8::1]:2222: "
	    "Connection refused", sizeof(w->link[1].last_error));

	strlcpy_(w->tc[0].name, "pg", sizeof(w->tc[0].name));
	strlcpy_(w->tc[0].via, "db", sizeof(w->tc[0].via));
	assert_int_equal(endpoint_parse("127.0.0.1:9000", EP_LISTEN,
	    &w->tc[0].listen, err, sizeof(err)), 0);
	assert_int_equal(endpoint_parse("127.0.0.1:5432", 0,
	    &w->tc[0].target, err, sizeof(err)), 0);
	strlcpy_(w->tc[1].name, "pgx", sizeof(w->tc[1].name));
	strlcpy_(w->tc[1].via, "db", sizeof(w->tc[1].via));
	w->tc[1].type = TUNNEL_DYNAMIC;
	assert_int_equal(endpoint_parse("1080", EP_LISTEN, &w->tc[1].listen,
	    err, sizeof(err)), 0);
	strlcpy_(w->tc[2].name, "web", sizeof(w->tc[2].name));
	strlcpy_(w->tc[2].via, "relay", sizeof(w->tc[2].via));
	assert_int_equal(endpoint_parse("127.0.0.1:8080", EP_LISTEN,
	    &w->tc[2].listen, err, sizeof(err)), 0);
	assert_int_equal(endpoint_parse("127.0.0.1:80", 0, &w->tc[2].target,
	    err, sizeof(err)), 0);
	for (i = 0; i < 3; i++) {
		w->fwd[i].tc = &w->tc[i];
		w->fwd[i].link = &w->link[i < 2 ? 0 : 1];
		w->fwd[i].enabled = 1;
		w->fwd[i].state = i < 2 ? FWD_UP : FWD_WAITING;
		TAILQ_INSERT_TAIL(&w->fwd[i].link->fwds, &w->fwd[i], entry);
	}
	w->fwd[0].conns_active = 2;
	w->fwd[0].conns_total = 17;
	w->fwd[0].bytes_in = 123456789;
	w->fwd[0].bytes_out = 4321;
}

/* Everything in b as one string (to free), b emptied. */
static char *
show_drain(struct evbuffer *b)
{
	size_t	 len = evbuffer_get_length(b);
	char	*s = malloc(len + 1);

	assert_non_null(s);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	return (s);
}

/* Render all tunnels of w, as a table or as JSON. */
static char *
show_status(struct show_world *w, int json)
{
	struct evbuffer	*b = evbuffer_new();
	struct fwd	*list[3] = { &w->fwd[0], &w->fwd[1], &w->fwd[2] };
	char		*s;

	assert_non_null(b);
	control_show_status(b, list, 3, json, 100.0);
	s = show_drain(b);
	evbuffer_free(b);
	return (s);
}

/* Render all links, as a table or as JSON. */
static char *
show_links(int json)
{
	struct evbuffer	*b = evbuffer_new();
	char		*s;

	assert_non_null(b);
	control_show_links(b, json, 100.0);
	s = show_drain(b);
	evbuffer_free(b);
	return (s);
}

/*
 * The status table: aligned columns, no trailing spaces, and the link's
 * error for a tunnel with none of its own while the link is not up.
 */
static void
test_show_status_table(void **state)
{
	struct show_world	 w;
	char			*s;

	(void)state;
	show_world_init(&w);
	s = show_status(&w, 0);
	assert_string_equal(s,
	    "NAME  TYPE     VIA    LISTEN          TARGET          STATE    "
	    "SINCE  CONNS  IN      OUT   ERROR\n"
	    "pg    local    db     127.0.0.1:9000  127.0.0.1:5432  up       "
	    "-      2/17   117.7M  4.2K\n"
	    "pgx   dynamic  db     127.0.0.1:1080  -               up       "
	    "-      0/0    0B      0B\n"
	    "web   local    relay  127.0.0.1:8080  127.0.0.1:80    waiting  "
	    "-      0/0    0B      0B    link relay: connect to "
	    "[2001:db8::1]:2222: Connection refused\n");
	free(s);

	/*
	 * A failed tunnel's own error wins, as it is; an up link's error is
	 * not shown.
	 */
	strlcpy_(w.fwd[2].last_error, "listen 127.0.0.1:8080: Address "
	    "already in use", sizeof(w.fwd[2].last_error));
	w.fwd[2].last_error_mono = 58.5;
	w.fwd[2].state = FWD_FAILED;
	strlcpy_(w.link[0].last_error, "stale", sizeof(w.link[0].last_error));
	w.fwd[2].since_mono = 58.5;
	s = show_status(&w, 0);
	assert_non_null(strstr(s, "41s    0/0    0B      0B    listen "
	    "127.0.0.1:8080: Address already in use\n"));
	assert_null(strstr(s, "link "));
	assert_null(strstr(s, "stale"));
	assert_null(strstr(s, " \n"));
	free(s);

	/* Waiting again: the link's error is the reason, not the old one. */
	w.fwd[2].state = FWD_WAITING;
	w.fwd[2].since_mono = 90;
	s = show_status(&w, 0);
	assert_non_null(strstr(s, "10s    0/0    0B      0B    link relay: "
	    "connect to [2001:db8::1]:2222: Connection refused\n"));
	free(s);

	/* An up tunnel's last error is history: shown with its age. */
	strlcpy_(w.fwd[0].last_error, "connect to 127.0.0.1:5432 from db "
	    "failed: refused", sizeof(w.fwd[0].last_error));
	w.fwd[0].last_error_mono = 100 - 65;
	s = show_status(&w, 0);
	assert_non_null(strstr(s, "2/17   117.7M  4.2K  1m05s ago: connect "
	    "to 127.0.0.1:5432 from db failed: refused\n"));
	free(s);
	w.fwd[0].last_error[0] = '\0';

	/* Control characters in a cell become spaces. */
	w.fwd[2].last_error[0] = '\0';
	strlcpy_(w.link[1].last_error, "two\nlines\t", sizeof(w.link[1].
	    last_error));
	s = show_status(&w, 0);
	assert_non_null(strstr(s, "link relay: two lines\n"));
	free(s);
}

/* status --json: last_error is the tunnel's own, link_error its link's. */
static void
test_show_status_json(void **state)
{
	struct show_world	 w;
	struct evbuffer		*b;
	char			*s;

	(void)state;
	show_world_init(&w);
	w.fwd[0].since = 1795788387;	/* 2026-11-27T14:06:27Z */
	w.fwd[0].since_mono = 1.5;
	s = show_status(&w, 1);
	assert_string_equal(s, "{\"tunnels\":[\n"
	    "{\"name\":\"pg\",\"type\":\"local\",\"via\":\"db\","
	    "\"listen\":\"127.0.0.1:9000\",\"target\":\"127.0.0.1:5432\","
	    "\"state\":\"up\",\"since\":\"2026-11-27T14:06:27Z\","
	    "\"since_seconds\":98,\"connections\":{\"active\":2,"
	    "\"total\":17,\"failed\":0},\"in\":123456789,"
	    "\"out\":4321,\"last_error\":null,\"last_error_time\":null,"
	    "\"last_error_seconds\":null,\"link_error\":null,"
	    "\"needs_attention\":false,\"enabled\":true},\n"
	    "{\"name\":\"pgx\",\"type\":\"dynamic\",\"via\":\"db\","
	    "\"listen\":\"127.0.0.1:1080\",\"target\":null,"
	    "\"state\":\"up\",\"since\":null,\"since_seconds\":null,"
	    "\"connections\":{\"active\":0,\"total\":0,\"failed\":0},"
	    "\"in\":0,\"out\":0,\"last_error\":null,"
	    "\"last_error_time\":null,\"last_error_seconds\":null,"
	    "\"link_error\":null,\"needs_attention\":false,"
	    "\"enabled\":true},\n"
	    "{\"name\":\"web\",\"type\":\"local\",\"via\":\"relay\","
	    "\"listen\":\"127.0.0.1:8080\",\"target\":\"127.0.0.1:80\","
	    "\"state\":\"waiting\",\"since\":null,\"since_seconds\":null,"
	    "\"connections\":{\"active\":0,\"total\":0,\"failed\":0},"
	    "\"in\":0,\"out\":0,\"last_error\":null,"
	    "\"last_error_time\":null,\"last_error_seconds\":null,"
	    "\"link_error\":\"connect to [2001:db8::1]:2222: Connection "
	    "refused\",\"needs_attention\":false,\"enabled\":true}\n"
	    "]}\n");
	free(s);

	/* Both errors at once; quotes and bad UTF-8 in a string. */
	strlcpy_(w.fwd[2].last_error, "bad \"x\\\x01\xff\xc3\xa9",
	    sizeof(w.fwd[2].last_error));
	s = show_status(&w, 1);
	assert_non_null(strstr(s, "\"last_error\":\"bad \\\"x\\\\"
	    "\\u0001\\ufffd\xc3\xa9\",\"last_error_time\":null,"
	    "\"last_error_seconds\":null,\"link_error\":\"connect to "));
	free(s);

	/* An error's time, as RFC 3339 and as seconds since. */
	w.fwd[2].last_error_time = 1795788387;	/* 2026-11-27T14:06:27Z */
	w.fwd[2].last_error_mono = 100 - 42.7;
	s = show_status(&w, 1);
	assert_non_null(strstr(s, "\"last_error_time\":"
	    "\"2026-11-27T14:06:27Z\",\"last_error_seconds\":42,"
	    "\"link_error\":"));
	free(s);

	/* Its link failed for good: the waiting tunnel needs attention. */
	w.link[1].state = LINK_FAILED;
	w.link[1].attn.on = 1;
	s = show_status(&w, 1);
	assert_non_null(strstr(s, "\"needs_attention\":true,\"enabled\":"
	    "true}\n]}"));
	free(s);
	s = show_status(&w, 0);
	assert_non_null(strstr(s, " waiting! "));
	free(s);
	w.link[1].attn.on = 0;
	w.fwd[0].state = FWD_FAILED;
	w.fwd[0].attn.on = 1;
	s = show_status(&w, 0);
	assert_non_null(strstr(s, "127.0.0.1:5432  failed!  "));
	assert_null(strstr(s, " waiting! "));
	free(s);

	/* No tunnels. */
	if ((b = evbuffer_new()) == NULL)
		fail();
	control_show_status(b, NULL, 0, 1, 0);
	s = show_drain(b);
	evbuffer_free(b);
	assert_string_equal(s, "{\"tunnels\":[\n]}\n");
	free(s);
}

/* The links table: NEXT RETRY as one heading, ERROR at the end. */
static void
test_show_links(void **state)
{
	struct show_world	 w;
	char			*s;

	(void)state;
	show_world_init(&w);
	w.link[1].next_retry = 111.2;
	w.link[0].since_mono = 40;
	s = show_links(0);
	assert_string_equal(s,
	    "HOST   ADDRESS                    STATE    SINCE  RETRIES  "
	    "NEXT RETRY  RTT    TUNNELS  ERROR\n"
	    "db     ops@10.0.0.5:22            up       1m00s  0        "
	    "-           1.2ms  2/2\n"
	    "relay  tunnel@[2001:db8::1]:2222  backoff  -      3        "
	    "12s         -      1/1      connect to [2001:db8::1]:2222: "
	    "Connection refused\n");
	free(s);

	s = show_links(1);
	assert_non_null(strstr(s, "{\"links\":[\n{\"host\":\"db\","
	    "\"address\":\"10.0.0.5\",\"port\":22,\"user\":\"ops\","
	    "\"jump\":null,\"chain\":[\"db\"],\"state\":\"up\","
	    "\"since\":null,"
	    "\"since_seconds\":60,\"retries\":0,"
	    "\"next_retry_seconds\":null,\"rtt_ms\":1.234,"
	    "\"last_error\":null,\"last_error_time\":null,"
	    "\"last_error_seconds\":null,\"needs_attention\":false,"
	    "\"tunnels\":[\"pg\",\"pgx\"]},\n"));
	assert_non_null(strstr(s, "\"next_retry_seconds\":12,"
	    "\"rtt_ms\":null,\"last_error\":\"connect to "
	    "[2001:db8::1]:2222: Connection refused\",\"last_error_time\":"
	    "null,\"last_error_seconds\":null,\"needs_attention\":false,"
	    "\"tunnels\":[\"web\"]}\n]}\n"));
	free(s);

	/* Connecting again: the last attempt's error, with its age. */
	w.link[1].state = LINK_CONNECTING;
	w.link[1].last_error_mono = 100 - 7.2;
	w.link[1].last_error_time = 1795788387;
	s = show_links(0);
	assert_non_null(strstr(s, "7s ago: connect to [2001:db8::1]:2222: "
	    "Connection refused\n"));
	free(s);
	s = show_links(1);
	assert_non_null(strstr(s, "\"last_error_time\":\"2026-11-27T14:06:27Z\","
	    "\"last_error_seconds\":7,\"needs_attention\":false,"
	    "\"tunnels\":[\"web\"]}"));
	free(s);

	/* Failed for good: "failed!" in the table, needs_attention. */
	w.link[1].state = LINK_FAILED;
	w.link[1].attn.on = 1;
	s = show_links(0);
	assert_non_null(strstr(s, "relay  tunnel@[2001:db8::1]:2222  failed!"));
	free(s);
	s = show_links(1);
	assert_non_null(strstr(s, "\"needs_attention\":true,"
	    "\"tunnels\":[\"web\"]}"));
	assert_non_null(strstr(s, "\"needs_attention\":false,"
	    "\"tunnels\":[\"pg\",\"pgx\"]}"));
	free(s);
}

/* Selecting tunnels, and the messages of final lines. */
static void
test_show_select_msg(void **state)
{
	struct show_world	  w;
	struct ctl_request	 *req;
	struct control_msg	  m;
	struct fwd		**list;
	char			  err[512], big[300];
	int			  n, bad = -1, i;

	(void)state;
	show_world_init(&w);
	req = malloc(sizeof(*req));
	assert_non_null(req);

	assert_int_equal(ctlp_parse("tunneld/2 status", req, err,
	    sizeof(err)), 0);
	n = control_show_select(req, &list, &bad);
	assert_int_equal(n, 3);
	assert_ptr_equal(list[0], &w.fwd[0]);
	assert_ptr_equal(list[2], &w.fwd[2]);
	free(list);

	assert_int_equal(ctlp_parse("tunneld/2 status web pg", req, err,
	    sizeof(err)), 0);
	n = control_show_select(req, &list, &bad);
	assert_int_equal(n, 2);
	assert_ptr_equal(list[0], &w.fwd[2]);
	memset(&m, 0, sizeof(m));
	control_show_notup_msg(&m, list, n);
	assert_string_equal(m.buf, "tunnel \"web\" is waiting");
	free(list);

	assert_int_equal(ctlp_parse("tunneld/2 status pg nope x", req, err,
	    sizeof(err)), 0);
	assert_int_equal(control_show_select(req, &list, &bad), -1);
	assert_int_equal(bad, 1);

	/* A wait's reason: the link's error while the tunnel waits. */
	assert_int_equal(ctlp_parse("tunneld/2 wait pg web gone", req, err,
	    sizeof(err)), 0);
	memset(&m, 0, sizeof(m));
	control_show_wait_msg(&m, req, 5);
	assert_string_equal(m.buf, "timed out after 5 s waiting for: "
	    "web (waiting: link relay: connect to [2001:db8::1]:2222: "
	    "Connection refused), gone (removed)");
	free(req);

	/* A message that grows too long is cut with "...". */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memset(&m, 0, sizeof(m));
	for (i = 0; i < 20; i++)
		control_show_msg_add(&m, "%s", big);
	assert_true(m.full);
	assert_true(strlen(m.buf) < sizeof(m.buf));
	assert_string_equal(m.buf + strlen(m.buf) - 3, "...");
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
		cmocka_unit_test(test_format_quoting),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_parse_end),
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_show_status_table),
		cmocka_unit_test(test_show_status_json),
		cmocka_unit_test(test_show_links),
		cmocka_unit_test(test_show_select_msg),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
