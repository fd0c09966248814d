/*
 * test_util.c: endpoint parsing and formatting, the backoff schedule, the
 * formatting helpers and the name checks of daemon/util.c.
 */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tunneld.h"

#define LISTEN_FORMS	"PORT, ADDR:PORT, [IPV6]:PORT, *:PORT or an absolute path"
#define REMOTE_FORMS	"PORT, ADDR:PORT, [IPV6]:PORT or *:PORT"
#define TARGET_FORMS	"HOST:PORT, [IPV6]:PORT or an absolute path"
#define L		EP_LISTEN
#define R		(EP_LISTEN | EP_PORT0 | EP_NO_UNIX)

/* One endpoint that parses, and what it parses to. */
struct ep_ok {
	const char	*in;
	int		 flags;
	int		 is_unix;
	const char	*host;		/* or the path */
	int		 port;
	const char	*shown;		/* endpoint_format, no override */
};

/* One endpoint that does not parse, and the exact message. */
struct ep_bad {
	const char	*in;
	int		 flags;
	const char	*err;
};

static const struct ep_ok ep_oks[] = {
	/* listen */
	{ "9000", L, 0, "", 9000, "127.0.0.1:9000" },
	{ "1", L, 0, "", 1, "127.0.0.1:1" },
	{ "65535", L, 0, "", 65535, "127.0.0.1:65535" },
	{ "0", R, 0, "", 0, "127.0.0.1:0" },
	{ "127.0.0.1:9000", L, 0, "127.0.0.1", 9000, "127.0.0.1:9000" },
	{ "0.0.0.0:8000", L, 0, "0.0.0.0", 8000, "0.0.0.0:8000" },
	{ "*:8000", L, 0, "*", 8000, "*:8000" },
	{ "*:0", R, 0, "*", 0, "*:0" },
	{ "localhost:9000", L, 0, "localhost", 9000, "localhost:9000" },
	{ "LocalHost:9000", L, 0, "localhost", 9000, "localhost:9000" },
	{ "[::1]:9000", L, 0, "::1", 9000, "[::1]:9000" },
	{ "[::]:9000", L, 0, "::", 9000, "[::]:9000" },
	{ "[0:0:0:0:0:0:0:1]:80", L, 0, "::1", 80, "[::1]:80" },
	{ "[2001:DB8::1]:443", R, 0, "2001:db8::1", 443, "[2001:db8::1]:443" },
	{ "/run/tunneld/pg.sock", L, 1, "/run/tunneld/pg.sock", 0,
	    "/run/tunneld/pg.sock" },
	{ "127.0.0.1:0080", L, 0, "127.0.0.1", 80, "127.0.0.1:80" },
	/* target */
	{ "127.0.0.1:5432", 0, 0, "127.0.0.1", 5432, "127.0.0.1:5432" },
	{ "db.example.com:5432", 0, 0, "db.example.com", 5432,
	    "db.example.com:5432" },
	{ "example.com.:80", 0, 0, "example.com.", 80, "example.com.:80" },
	{ "localhost:22", 0, 0, "localhost", 22, "localhost:22" },
	{ "a-b.c9:1", 0, 0, "a-b.c9", 1, "a-b.c9:1" },
	{ "DB1:22", 0, 0, "DB1", 22, "DB1:22" },
	{ "[2001:db8::5]:5432", 0, 0, "2001:db8::5", 5432,
	    "[2001:db8::5]:5432" },
	{ "/run/postgresql/.s.PGSQL.5432", 0, 1,
	    "/run/postgresql/.s.PGSQL.5432", 0,
	    "/run/postgresql/.s.PGSQL.5432" },
};

static const struct ep_bad ep_bads[] = {
	{ "", L, "an empty string is not an endpoint (use " LISTEN_FORMS ")" },
	{ "", 0, "an empty string is not an endpoint (use " TARGET_FORMS ")" },
	{ "", EP_NO_UNIX, "an empty string is not an endpoint (use "
	    "HOST:PORT or [IPV6]:PORT)" },
	/* UNIX paths */
	{ "/run/x.sock", R, "UNIX socket paths are not allowed here (use "
	    REMOTE_FORMS ")" },
	{ "run/pg.sock", L, "\"run/pg.sock\" is a relative path (a UNIX "
	    "socket path must be absolute)" },
	{ "./pg.sock", 0, "\"./pg.sock\" is a relative path (a UNIX socket "
	    "path must be absolute)" },
	{ "~/pg.sock", 0, "\"~/pg.sock\" is a relative path (a UNIX socket "
	    "path must be absolute)" },
	{ "/run/tunneld/", L, "\"/run/tunneld/\" ends in \"/\" (a UNIX socket "
	    "path names a file)" },
	/* brackets */
	{ "[::1", L, "\"[::1\" has no closing bracket" },
	{ "[::1:9000", 0, "\"[::1:9000\" has no closing bracket" },
	{ "[::1]", L, "\"[::1]\" has no port (use [IPV6]:PORT)" },
	{ "[::1]9000", L, "\"[::1]9000\" has text after the closing bracket "
	    "(use [IPV6]:PORT)" },
	{ "[::1]:", 0, "the port is missing (use 1-65535)" },
	{ "[::g]:80", L, "\"::g\" is not a valid IPv6 address" },
	{ "[]:80", 0, "\"\" is not a valid IPv6 address" },
	{ "[127.0.0.1]:80", 0, "\"127.0.0.1\" is not a valid IPv6 address" },
	{ "[fe80::1%eth0]:80", 0, "\"fe80::1%eth0\" is not a valid IPv6 "
	    "address" },
	/* IPv6 without brackets */
	{ "::1:9000", L, "\"::1:9000\" looks like an IPv6 address without "
	    "brackets (write [IPV6]:PORT, e.g. [::1]:9000)" },
	{ "2001:db8::5:22", 0, "\"2001:db8::5:22\" looks like an IPv6 address "
	    "without brackets (write [IPV6]:PORT, e.g. [::1]:9000)" },
	{ "::1", 0, "\"::1\" looks like an IPv6 address without brackets "
	    "(write [IPV6]:PORT, e.g. [::1]:9000)" },
	/* ports */
	{ "99999", L, "port 99999 is out of range 1-65535" },
	{ "65536", L, "port 65536 is out of range 1-65535" },
	{ "0", L, "port 0 is out of range 1-65535" },
	{ "127.0.0.1:0", 0, "port 0 is out of range 1-65535" },
	{ "*:70000", R, "port 70000 is out of range 0-65535" },
	{ "127.0.0.1:99999999999999999999999999999", L,
	    "port 999999999999999999999999... is out of range 1-65535" },
	{ "127.0.0.1:", L, "the port is missing (use 1-65535)" },
	{ "*:", R, "the port is missing (use 0-65535)" },
	{ "127.0.0.1:http", L, "port \"http\" is not a number (use 1-65535)" },
	{ "127.0.0.1: 80", 0, "port \" 80\" is not a number (use 1-65535)" },
	{ "127.0.0.1:-1", 0, "port \"-1\" is not a number (use 1-65535)" },
	{ "-1", L, "port \"-1\" is not a number (use 1-65535)" },
	{ "+80", R, "port \"+80\" is not a number (use 0-65535)" },
	/* missing parts */
	{ "foo", L, "\"foo\" has no port (use " LISTEN_FORMS ")" },
	{ "foo", 0, "\"foo\" has no port (use " TARGET_FORMS ")" },
	{ "127.0.0.1", L, "\"127.0.0.1\" has no port (use " LISTEN_FORMS ")" },
	{ "9000", 0, "\"9000\" has no host (use " TARGET_FORMS ")" },
	{ ":9000", L, "\":9000\" has no address (use " LISTEN_FORMS ")" },
	{ ":9000", 0, "\":9000\" has no host (use " TARGET_FORMS ")" },
	/* hosts */
	{ "*:80", 0, "\"*\" is only allowed in a listen address (use "
	    TARGET_FORMS ")" },
	{ "example.com:80", L, "\"example.com\" is not a valid listen address "
	    "(use *, localhost, an IPv4 address or [IPV6]; a listen address "
	    "is never looked up in DNS)" },
	{ "foo bar:80", L, "\"foo bar\" is not a valid listen address (use *, "
	    "localhost, an IPv4 address or [IPV6]; a listen address is never "
	    "looked up in DNS)" },
	{ "foo bar:80", 0, "\"foo bar\" is not a valid host name or address "
	    "(use letters, digits, hyphens and dots, or an IP address)" },
	{ "999.1.1.1:80", 0, "\"999.1.1.1\" is not a valid IPv4 address" },
	{ "127.1:80", L, "\"127.1\" is not a valid IPv4 address" },
	{ "1234:80", 0, "\"1234\" is not a valid IPv4 address" },
	{ "-db:80", 0, "\"-db\" is not a valid host name or address (use "
	    "letters, digits, hyphens and dots, or an IP address)" },
	{ "db-:80", 0, "\"db-\" is not a valid host name or address (use "
	    "letters, digits, hyphens and dots, or an IP address)" },
	{ "a..b:80", 0, "\"a..b\" is not a valid host name or address (use "
	    "letters, digits, hyphens and dots, or an IP address)" },
	{ "a_b:80", 0, "\"a_b\" is not a valid host name or address (use "
	    "letters, digits, hyphens and dots, or an IP address)" },
	{ "a\"b\n:80", 0, "\"a\\\"b\\x0a\" is not a valid host name or "
	    "address (use letters, digits, hyphens and dots, or an IP "
	    "address)" },
};

/* Every accepted form parses to the right endpoint and prints back. */
static void
test_endpoint_parse_ok(void **state)
{
	struct endpoint	 ep;
	char		 err[256], buf[256];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(ep_oks) / sizeof(ep_oks[0]); i++) {
		const struct ep_ok *t = &ep_oks[i];

		strcpy(err, "junk");
		if (endpoint_parse(t->in, t->flags, &ep, err, sizeof(err)) != 0)
			fail_msg("%s refused: %s", t->in, err);
		assert_string_equal(err, "");
		assert_int_equal(ep.is_unix, t->is_unix);
		if (t->is_unix) {
			assert_string_equal(ep.path, t->host);
			assert_string_equal(ep.host, "");
		} else {
			assert_string_equal(ep.host, t->host);
			assert_int_equal(ep.port, t->port);
			assert_string_equal(ep.path, "");
		}
		endpoint_format(&ep, 0, buf, sizeof(buf));
		assert_string_equal(buf, t->shown);
	}
}

/* Every refused form gives its exact message. */
static void
test_endpoint_parse_bad(void **state)
{
	struct endpoint	 ep;
	char		 err[512];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(ep_bads) / sizeof(ep_bads[0]); i++) {
		const struct ep_bad *t = &ep_bads[i];

		if (endpoint_parse(t->in, t->flags, &ep, err, sizeof(err)) !=
		    -1)
			fail_msg("%s accepted", t->in);
		if (strcmp(err, t->err) != 0)
			fail_msg("%s:\n got:  %s\n want: %s", t->in, err,
			    t->err);
	}
}

/* UNIX socket paths: 107 bytes fit sun_path, 108 do not. */
static void
test_endpoint_parse_path_length(void **state)
{
	struct endpoint	 ep;
	char		 path[200], err[256];

	(void)state;
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	assert_int_equal(endpoint_parse(path, L, &ep, err, sizeof(err)), 0);
	assert_int_equal(ep.is_unix, 1);
	assert_string_equal(ep.path, path);
	path[107] = 'a';
	path[108] = '\0';
	assert_int_equal(endpoint_parse(path, L, &ep, err, sizeof(err)), -1);
	assert_string_equal(err, "UNIX socket path is longer than 107 bytes");
}

/* Host names: labels up to 63 bytes, the whole up to 255. */
static void
test_endpoint_parse_host_length(void **state)
{
	struct endpoint	 ep;
	char		 s[400], err[512];
	int		 i;

	(void)state;
	memset(s, 'a', 63);
	strcpy(s + 63, ".b:80");
	assert_int_equal(endpoint_parse(s, 0, &ep, err, sizeof(err)), 0);
	memset(s, 'a', 64);
	strcpy(s + 64, ".b:80");
	assert_int_equal(endpoint_parse(s, 0, &ep, err, sizeof(err)), -1);

	/* 4 * 63 + 3 dots = 255 bytes */
	s[0] = '\0';
	for (i = 0; i < 4; i++) {
		if (i > 0)
			strcat(s, ".");
		memset(s + strlen(s), 'a' + i, 63);
		s[i * 64 + 63] = '\0';
	}
	assert_int_equal(strlen(s), 255);
	assert_true(valid_host(s));
	strcat(s, ":22");
	assert_int_equal(endpoint_parse(s, 0, &ep, err, sizeof(err)), 0);
	assert_int_equal(strlen(ep.host), 255);
	memmove(s + 1, s, strlen(s) + 1);
	s[0] = 'x';
	assert_int_equal(endpoint_parse(s, 0, &ep, err, sizeof(err)), -1);
	assert_string_equal(err, "host name is longer than 255 bytes");
}

/* A long bad input is quoted short, and no err buffer is fine. */
static void
test_endpoint_parse_long_and_null(void **state)
{
	struct endpoint	 ep;
	char		 s[2000], err[512];

	(void)state;
	memset(s, 'x', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	assert_int_equal(endpoint_parse(s, 0, &ep, err, sizeof(err)), -1);
	assert_true(strlen(err) < 200);
	assert_non_null(strstr(err, "...\" has no port"));
	assert_int_equal(endpoint_parse("foo", 0, &ep, NULL, 0), -1);
	assert_int_equal(endpoint_parse("foo", 0, &ep, err, 1), -1);
	assert_string_equal(err, "");
	assert_int_equal(endpoint_parse("[::1]:1", 0, &ep, NULL, 0), 0);
}

/* endpoint_format: loopback for "", brackets, the bound port. */
static void
test_endpoint_format(void **state)
{
	struct endpoint	 ep;
	char		 buf[256];

	(void)state;
	assert_int_equal(endpoint_parse("0", R, &ep, NULL, 0), 0);
	endpoint_format(&ep, 0, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.1:0");
	endpoint_format(&ep, 41234, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.1:41234");
	assert_int_equal(endpoint_parse("[::1]:0", R, &ep, NULL, 0), 0);
	endpoint_format(&ep, 5000, buf, sizeof(buf));
	assert_string_equal(buf, "[::1]:5000");
	endpoint_format(&ep, -1, buf, sizeof(buf));
	assert_string_equal(buf, "[::1]:0");
	assert_int_equal(endpoint_parse("*:8000", L, &ep, NULL, 0), 0);
	endpoint_format(&ep, 0, buf, sizeof(buf));
	assert_string_equal(buf, "*:8000");
	assert_int_equal(endpoint_parse("/tmp/x.sock", L, &ep, NULL, 0), 0);
	endpoint_format(&ep, 99, buf, sizeof(buf));
	assert_string_equal(buf, "/tmp/x.sock");
	/* Truncates, never overflows. */
	assert_int_equal(endpoint_parse("127.0.0.1:9000", L, &ep, NULL, 0),
	    0);
	endpoint_format(&ep, 0, buf, 6);
	assert_string_equal(buf, "127.0");
}

/* endpoint_equal: "" is 127.0.0.1; ports, kinds and paths count. */
static void
test_endpoint_equal(void **state)
{
	struct endpoint a, b;

	(void)state;
	assert_int_equal(endpoint_parse("9000", L, &a, NULL, 0), 0);
	assert_int_equal(endpoint_parse("127.0.0.1:9000", L, &b, NULL, 0), 0);
	assert_true(endpoint_equal(&a, &b));
	assert_true(endpoint_equal(&b, &a));
	assert_int_equal(endpoint_parse("127.0.0.1:9001", L, &b, NULL, 0), 0);
	assert_false(endpoint_equal(&a, &b));
	assert_int_equal(endpoint_parse("[::1]:9000", L, &b, NULL, 0), 0);
	assert_false(endpoint_equal(&a, &b));
	assert_int_equal(endpoint_parse("[0::1]:9000", L, &a, NULL, 0), 0);
	assert_true(endpoint_equal(&a, &b));
	assert_int_equal(endpoint_parse("/a/b", L, &a, NULL, 0), 0);
	assert_false(endpoint_equal(&a, &b));
	assert_int_equal(endpoint_parse("/a/b", 0, &b, NULL, 0), 0);
	assert_true(endpoint_equal(&a, &b));
	assert_int_equal(endpoint_parse("/a/c", 0, &b, NULL, 0), 0);
	assert_false(endpoint_equal(&a, &b));
	assert_int_equal(endpoint_parse("DB:1", 0, &a, NULL, 0), 0);
	assert_int_equal(endpoint_parse("db:1", 0, &b, NULL, 0), 0);
	assert_true(endpoint_equal(&a, &b));
}

/* valid_host: names by RFC 1123 and address literals. */
static void
test_valid_host(void **state)
{
	(void)state;
	assert_true(valid_host("db"));
	assert_true(valid_host("db.example.com"));
	assert_true(valid_host("db.example.com."));
	assert_true(valid_host("1db"));
	assert_true(valid_host("10.0.0.5"));
	assert_true(valid_host("::1"));
	assert_true(valid_host("2001:db8::5"));
	assert_false(valid_host(""));
	assert_false(valid_host("."));
	assert_false(valid_host("a..b"));
	assert_false(valid_host(".a"));
	assert_false(valid_host("-a"));
	assert_false(valid_host("a-"));
	assert_false(valid_host("a-.b"));
	assert_false(valid_host("a_b"));
	assert_false(valid_host("a b"));
	assert_false(valid_host("[::1]"));
	assert_false(valid_host("10.0.0.256"));
	assert_false(valid_host("10.0.0"));
	assert_false(valid_host("*"));
}

/* backoff_delay: d = min(max, initial * 2^(n-1)); result in [d/2, d]. */
static void
test_backoff_delay(void **state)
{
	double	d, r;
	int	n, k;

	(void)state;
	assert_true(backoff_delay(1, 1.0, 60.0, 0.0) == 0.5);
	assert_true(backoff_delay(1, 1.0, 60.0, 1.0) == 1.0);
	assert_true(backoff_delay(1, 1.0, 60.0, 0.5) == 0.75);
	assert_true(backoff_delay(2, 1.0, 60.0, 1.0) == 2.0);
	assert_true(backoff_delay(3, 1.0, 60.0, 0.0) == 2.0);
	assert_true(backoff_delay(3, 1.0, 60.0, 1.0) == 4.0);
	assert_true(backoff_delay(6, 1.0, 60.0, 1.0) == 32.0);
	/* 2^6 = 64 is capped at 60. */
	assert_true(backoff_delay(7, 1.0, 60.0, 0.0) == 30.0);
	assert_true(backoff_delay(7, 1.0, 60.0, 1.0) == 60.0);
	/* Large n: capped, no overflow, no inf or NaN. */
	assert_true(backoff_delay(1000, 1.0, 60.0, 1.0) == 60.0);
	assert_true(backoff_delay(INT_MAX, 3600.0, 86400.0, 1.0) == 86400.0);
	assert_true(backoff_delay(INT_MAX, 0.1, 86400.0, 0.0) == 43200.0);
	/* n below 1 counts as the first retry; u is clamped to [0, 1]. */
	assert_true(backoff_delay(0, 1.0, 60.0, 1.0) == 1.0);
	assert_true(backoff_delay(-5, 1.0, 60.0, 1.0) == 1.0);
	assert_true(backoff_delay(INT_MIN, 1.0, 60.0, 1.0) == 1.0);
	assert_true(backoff_delay(1, 1.0, 60.0, -3.0) == 0.5);
	assert_true(backoff_delay(1, 1.0, 60.0, 7.0) == 1.0);
	/* Fractional initial values. */
	assert_true(fabs(backoff_delay(1, 0.1, 60.0, 1.0) - 0.1) < 1e-12);
	assert_true(fabs(backoff_delay(4, 0.1, 60.0, 1.0) - 0.8) < 1e-12);
	/* Everywhere in between: within [d/2, d]. */
	for (n = 1; n <= 80; n++) {
		d = ldexp(0.5, n - 1);
		if (d > 60.0)
			d = 60.0;
		for (k = 0; k <= 10; k++) {
			r = backoff_delay(n, 0.5, 60.0, k / 10.0);
			assert_true(isfinite(r));
			assert_true(r >= d / 2 && r <= d);
		}
	}
}

/* format_duration: 42s, 3m12s, 2h03m, 4d05h. */
static void
test_format_duration(void **state)
{
	char buf[32];

	(void)state;
	format_duration(0, buf, sizeof(buf));
	assert_string_equal(buf, "0s");
	format_duration(-5, buf, sizeof(buf));
	assert_string_equal(buf, "0s");
	format_duration(42, buf, sizeof(buf));
	assert_string_equal(buf, "42s");
	format_duration(59.9, buf, sizeof(buf));
	assert_string_equal(buf, "59s");
	format_duration(60, buf, sizeof(buf));
	assert_string_equal(buf, "1m00s");
	format_duration(192, buf, sizeof(buf));
	assert_string_equal(buf, "3m12s");
	format_duration(3599, buf, sizeof(buf));
	assert_string_equal(buf, "59m59s");
	format_duration(3600, buf, sizeof(buf));
	assert_string_equal(buf, "1h00m");
	format_duration(2 * 3600 + 3 * 60 + 59, buf, sizeof(buf));
	assert_string_equal(buf, "2h03m");
	format_duration(86400, buf, sizeof(buf));
	assert_string_equal(buf, "1d00h");
	format_duration(4 * 86400 + 5 * 3600 + 1234, buf, sizeof(buf));
	assert_string_equal(buf, "4d05h");
	format_duration(400 * 86400.0, buf, sizeof(buf));
	assert_string_equal(buf, "400d00h");
}

/* format_bytes: 512B, 1.5K, 20.0M, 3.2G. */
static void
test_format_bytes(void **state)
{
	char buf[32];

	(void)state;
	format_bytes(0, buf, sizeof(buf));
	assert_string_equal(buf, "0B");
	format_bytes(512, buf, sizeof(buf));
	assert_string_equal(buf, "512B");
	format_bytes(1023, buf, sizeof(buf));
	assert_string_equal(buf, "1023B");
	format_bytes(1024, buf, sizeof(buf));
	assert_string_equal(buf, "1.0K");
	format_bytes(1536, buf, sizeof(buf));
	assert_string_equal(buf, "1.5K");
	format_bytes(20ULL * 1024 * 1024, buf, sizeof(buf));
	assert_string_equal(buf, "20.0M");
	format_bytes(3435973837ULL, buf, sizeof(buf));
	assert_string_equal(buf, "3.2G");
	format_bytes(5ULL << 40, buf, sizeof(buf));
	assert_string_equal(buf, "5.0T");
	format_bytes(UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "16.0E");
}

/* format_rfc3339: UTC with a Z. */
static void
test_format_rfc3339(void **state)
{
	char buf[32];

	(void)state;
	format_rfc3339(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	format_rfc3339(1700000000, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14T22:13:20Z");
}

/* format_quoted: escapes, and cuts long strings with "...". */
static void
test_format_quoted(void **state)
{
	char buf[16], big[96];

	(void)state;
	format_quoted("pg", buf, sizeof(buf));
	assert_string_equal(buf, "\"pg\"");
	format_quoted("", buf, sizeof(buf));
	assert_string_equal(buf, "\"\"");
	format_quoted("a\"b\\c\n", big, sizeof(big));
	assert_string_equal(big, "\"a\\\"b\\\\c\\x0a\"");
	format_quoted("\xc3\xa9", big, sizeof(big));
	assert_string_equal(big, "\"\\xc3\\xa9\"");
	format_quoted("0123456789abcdef", buf, sizeof(buf));
	assert_string_equal(buf, "\"0123456789...\"");
	assert_true(strlen(buf) < sizeof(buf));
	format_quoted("0123456789abc", buf, sizeof(buf));
	assert_string_equal(buf, "\"0123456789abc\"");
	format_quoted("0123456789ab\n", buf, sizeof(buf));
	assert_string_equal(buf, "\"0123456789...\"");
	format_quoted("012345678\n", buf, sizeof(buf));
	assert_string_equal(buf, "\"012345678\\x0a\"");
	format_quoted("0123456789\n", buf, sizeof(buf));
	assert_string_equal(buf, "\"0123456789...\"");
	format_quoted("x", buf, 4);
	assert_string_equal(buf, "");
}

/* valid_name: [A-Za-z0-9_.-]{1,64}. */
static void
test_valid_name(void **state)
{
	char s[80];

	(void)state;
	assert_true(valid_name("pg"));
	assert_true(valid_name("a.b-c_D9"));
	assert_true(valid_name("-"));
	assert_false(valid_name(""));
	assert_false(valid_name("a b"));
	assert_false(valid_name("a/b"));
	assert_false(valid_name("a:b"));
	assert_false(valid_name("a*b"));
	assert_false(valid_name("\xc3\xa9"));
	memset(s, 'x', sizeof(s));
	s[64] = '\0';
	assert_true(valid_name(s));
	s[64] = 'x';
	s[65] = '\0';
	assert_false(valid_name(s));
}

/* strlcpy_: truncates, terminates, returns the source length. */
static void
test_strlcpy(void **state)
{
	char buf[4];

	(void)state;
	assert_int_equal(strlcpy_(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	assert_int_equal(strlcpy_(buf, "ab", sizeof(buf)), 2);
	assert_string_equal(buf, "ab");
	assert_int_equal(strlcpy_(buf, "zz", 0), 2);
	assert_string_equal(buf, "ab");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoint_parse_ok),
		cmocka_unit_test(test_endpoint_parse_bad),
		cmocka_unit_test(test_endpoint_parse_path_length),
		cmocka_unit_test(test_endpoint_parse_host_length),
		cmocka_unit_test(test_endpoint_parse_long_and_null),
		cmocka_unit_test(test_endpoint_format),
		cmocka_unit_test(test_endpoint_equal),
		cmocka_unit_test(test_valid_host),
		cmocka_unit_test(test_backoff_delay),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_format_bytes),
		cmocka_unit_test(test_format_rfc3339),
		cmocka_unit_test(test_format_quoted),
		cmocka_unit_test(test_valid_name),
		cmocka_unit_test(test_strlcpy),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
