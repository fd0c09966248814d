/*
 * test_log.c: daemon/log.c: what a line is about (the journal's TUNNEL=
 * and HOST=), whether JOURNAL_STREAM names stderr, and the <N> lines on
 * stderr when it does not.
 */
#include <sys/stat.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tunneld.h"

/* A line and the tunnel and host it is about ("" for none). */
struct subject {
	const char	*msg;
	const char	*tunnel;
	const char	*host;
};

static void
test_log_subject(void **state)
{
	static const struct subject cases[] = {
		{ "tunnel pg: waiting -> up", "pg", "" },
		{ "tunnel db.main-2_x: connection from 1.2.3.4:5 open",
		    "db.main-2_x", "" },
		{ "link db: up (127.0.0.1:22)", "", "db" },
		{ "link db: dial 10.0.0.1: connecting to 10.0.0.1:22", "",
		    "db" },
		{ "link relay: carried by link jump", "", "relay" },
		{ "reload: tunnel pg changed", "pg", "" },
		{ "reload: tunnel pg removed", "pg", "" },
		{ "reload: tunnel web2 takes over the listener of tunnel old",
		    "web2", "" },
		{ "reload: host db changed", "", "db" },
		{ "tunnel jump to far: connection from socketpair open", "",
		    "far" },
		{ "tunnel pg", "pg", "" },
		/* No subject. */
		{ "reload: kept 5, restarted 1 (pg)", "", "" },
		{ "reload: /etc/tunnels.conf:3: bad", "", "" },
		{ "control: uid 0 pid 7: up pg", "", "" },
		{ "control socket /run/x.sock: bind", "", "" },
		{ "started, 2 tunnels, control socket /run/x", "", "" },
		{ "tunnel pg up", "", "" },		/* no ':' */
		{ "tunnel : x", "", "" },
		{ "tunnel p/g: x", "", "" },
		{ "tunnels pg: x", "", "" },
		{ "link db up", "", "" },
		{ "reload: link db: x", "", "" },
		{ "host db: x", "", "" },
		{ "Tunnel pg: x", "", "" },
		{ "", "", "" },
	};
	char	tunnel[NAME_MAXLEN + 1], host[NAME_MAXLEN + 1];
	size_t	i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(tunnel, 'x', sizeof(tunnel));
		memset(host, 'x', sizeof(host));
		log_subject(cases[i].msg, tunnel, host);
		if (strcmp(tunnel, cases[i].tunnel) != 0 ||
		    strcmp(host, cases[i].host) != 0)
			fail_msg("\"%s\": tunnel \"%s\" host \"%s\", expected "
			    "\"%s\" \"%s\"", cases[i].msg, tunnel, host,
			    cases[i].tunnel, cases[i].host);
	}
}

/* Names of 64 bytes are taken whole; a longer one is no name at all. */
static void
test_log_subject_length(void **state)
{
	char	msg[256], name[NAME_MAXLEN + 2];
	char	tunnel[NAME_MAXLEN + 1], host[NAME_MAXLEN + 1];

	(void)state;
	memset(name, 'a', NAME_MAXLEN);
	name[NAME_MAXLEN] = '\0';
	snprintf(msg, sizeof(msg), "tunnel %s: x", name);
	log_subject(msg, tunnel, host);
	assert_string_equal(tunnel, name);
	assert_string_equal(host, "");
	snprintf(msg, sizeof(msg), "link %s: x", name);
	log_subject(msg, tunnel, host);
	assert_string_equal(host, name);

	name[NAME_MAXLEN] = 'a';
	name[NAME_MAXLEN + 1] = '\0';
	snprintf(msg, sizeof(msg), "tunnel %s: x", name);
	log_subject(msg, tunnel, host);
	assert_string_equal(tunnel, "");
	snprintf(msg, sizeof(msg), "reload: host %s changed", name);
	log_subject(msg, tunnel, host);
	assert_string_equal(host, "");
}

/* JOURNAL_STREAM="DEV:INODE" names fd only when both are fstat's. */
static void
test_log_journal_stream(void **state)
{
	static const char *bad[] = { "", ":", "1", "1:", ":1", "1:2x",
	    "x1:2", "-1:2", "1:-2", " 1:2", "1: 2", "1:2:3",
	    "99999999999999999999999:1" };
	struct stat	 sb;
	char		 buf[64];
	FILE		*f;
	size_t		 i;
	int		 fd;

	(void)state;
	assert_non_null(f = tmpfile());
	fd = fileno(f);
	assert_int_equal(fstat(fd, &sb), 0);
	snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)sb.st_dev,
	    (unsigned long long)sb.st_ino);
	assert_int_equal(log_journal_stream(buf, fd), 1);
	snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)sb.st_dev,
	    (unsigned long long)sb.st_ino + 1);
	assert_int_equal(log_journal_stream(buf, fd), 0);
	snprintf(buf, sizeof(buf), "%llu:%llu",
	    (unsigned long long)sb.st_dev + 1, (unsigned long long)sb.st_ino);
	assert_int_equal(log_journal_stream(buf, fd), 0);
	assert_int_equal(log_journal_stream(NULL, fd), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (log_journal_stream(bad[i], fd) != 0)
			fail_msg("\"%s\" taken", bad[i]);
	}
	fclose(f);
	/* A closed descriptor is no stream. */
	snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)sb.st_dev,
	    (unsigned long long)sb.st_ino);
	assert_int_equal(log_journal_stream(buf, fd), 0);
}

/* Run the logging calls with stderr in a file; return what they wrote. */
static void
capture(const char *stream, char *out, size_t len)
{
	FILE	*f;
	size_t	 n;
	int	 saved;

	assert_non_null(f = tmpfile());
	fflush(stderr);
	assert_true((saved = dup(STDERR_FILENO)) != -1);
	assert_true(dup2(fileno(f), STDERR_FILENO) != -1);
	if (stream != NULL)
		setenv("JOURNAL_STREAM", stream, 1);
	else
		unsetenv("JOURNAL_STREAM");
	log_init(1, 0);
	log_info("tunnel pg: waiting -> up");
	log_warnx("link db: %s", "connection refused");
	log_notice("reload: kept %d", 2);
	log_debug("not at level info");
	errno = ENOENT;
	log_warn("control socket %s", "/x");
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) != -1);
	close(saved);
	unsetenv("JOURNAL_STREAM");
	rewind(f);
	n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	fclose(f);
}

/* JOURNAL_STREAM set, stderr not the journal: <N> lines, nothing else. */
static void
test_log_priorities(void **state)
{
	char out[1024];

	(void)state;
	capture("0:0", out, sizeof(out));
	assert_string_equal(out,
	    "<6>tunnel pg: waiting -> up\n"
	    "<4>link db: connection refused\n"
	    "<5>reload: kept 2\n"
	    "<4>control socket /x: No such file or directory\n");
	/* Without it: time stamps and level names. */
	capture(NULL, out, sizeof(out));
	assert_non_null(strstr(out, " tunneld[info]: tunnel pg: waiting -> "
	    "up\n"));
	assert_non_null(strstr(out, " tunneld[warning]: link db: connection "
	    "refused\n"));
	assert_null(strchr(out, '<'));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_subject),
		cmocka_unit_test(test_log_subject_length),
		cmocka_unit_test(test_log_journal_stream),
		cmocka_unit_test(test_log_priorities),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
