/*
 * test_errclass.c: which failures are permanent (daemon/errclass.c), the
 * reason codes read from libssh's text (ssh_open_failure in util.c), the
 * privileged-port inference, the log-once rule, and which links and
 * tunnels need attention through a jump chain.
 */
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

/* The channel open refusals libssh reports, read and classified. */
static void
test_open_refusals(void **state)
{
	static const struct {
		const char	*libssh;
		int		 code;
		int		 permanent;
	} t[] = {
		{ "Channel opening failure: channel 3 error (1) open failed",
		    1, 1 },
		{ "Channel opening failure: channel 7 error (2) Connection "
		    "refused", 2, 0 },
		{ "Channel opening failure: channel 7 error (3) unknown", 3,
		    0 },
		{ "Channel opening failure: channel 9 error (4) ", 4, 0 },
		{ "Socket error: disconnected", -1, 0 },
		{ "Channel opening failure: channel 1 error (x) what", -1, 0 },
		{ "", -1, 0 },
	};
	char	buf[ERR_MAXLEN];
	size_t	i;
	int	code;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		code = ssh_open_failure(t[i].libssh, buf, sizeof(buf));
		assert_int_equal(code, t[i].code);
		assert_int_equal(errclass_open_permanent(code),
		    t[i].permanent);
	}
	ssh_open_failure(t[0].libssh, buf, sizeof(buf));
	assert_non_null(strstr(buf, "administratively prohibited"));
}

/* Ports below 1024 need root on the server; port 0 is the server's pick. */
static void
test_privileged(void **state)
{
	(void)state;
	assert_true(errclass_privileged(80, "tunnel"));
	assert_true(errclass_privileged(1, "ops"));
	assert_true(errclass_privileged(1023, "ops"));
	assert_true(errclass_privileged(22, "rooted"));
	assert_false(errclass_privileged(80, "root"));
	assert_false(errclass_privileged(1024, "ops"));
	assert_false(errclass_privileged(0, "ops"));
	assert_false(errclass_privileged(65535, "ops"));
}

/* Count the lines of path that hold needle. */
static int
count_lines(const char *path, const char *needle)
{
	char	 line[2048];
	FILE	*fp;
	int	 n = 0;

	fp = fopen(path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strstr(line, needle) != NULL)
			n++;
	}
	fclose(fp);
	return (n);
}

/*
 * A permanent failure is logged at warning once per text; the same text
 * again at debug; a recovery once, with a notice; a drop says nothing.
 */
static void
test_log_once(void **state)
{
	struct attention	a;
	char			path[] = "/tmp/test_errclass.XXXXXX";
	int			fd;

	(void)state;
	memset(&a, 0, sizeof(a));
	assert_true((fd = mkstemp(path)) != -1);
	close(fd);
	log_init(1, 1);
	assert_int_equal(log_open(path), 0);

	assert_int_equal(errclass_note(&a, "link db", "key refused"), 1);
	assert_true(a.on);
	assert_int_equal(errclass_note(&a, "link db", "key refused"), 0);
	assert_int_equal(errclass_note(&a, "link db", "key refused"), 0);
	assert_int_equal(errclass_note(&a, "link db", "host key changed"),
	    1);
	assert_int_equal(count_lines(path, "[warning]: link db: key "
	    "refused (needs attention)"), 1);
	assert_int_equal(count_lines(path, "[debug]: link db: key refused "
	    "(again)"), 2);
	assert_int_equal(count_lines(path, "[warning]: link db: host key "
	    "changed (needs attention)"), 1);

	errclass_clear(&a, "link db");
	assert_false(a.on);
	assert_string_equal(a.said, "");
	errclass_clear(&a, "link db");
	assert_int_equal(count_lines(path, "[notice]: link db: recovered "
	    "(was: host key changed)"), 1);

	/* Dropped, the same text is news again. */
	assert_int_equal(errclass_note(&a, "link db", "key refused"), 1);
	errclass_drop(&a);
	assert_false(a.on);
	assert_int_equal(errclass_note(&a, "link db", "key refused"), 1);
	assert_int_equal(count_lines(path, "recovered"), 1);
	log_close();
	unlink(path);
}

/*
 * A link needs attention for its own permanent failure, or while it waits
 * for a jump host whose link does; a tunnel for its own (while enabled),
 * or while its link is not up and needs it.
 */
static void
test_chain(void **state)
{
	struct link	jump, inner;
	struct fwd	hop, f;

	(void)state;
	memset(&jump, 0, sizeof(jump));
	memset(&inner, 0, sizeof(inner));
	memset(&hop, 0, sizeof(hop));
	memset(&f, 0, sizeof(f));
	hop.link = &jump;
	inner.hop = &hop;
	f.link = &inner;
	f.enabled = 1;

	jump.state = LINK_FAILED;
	jump.attn.on = 1;
	inner.state = LINK_WAITING;
	assert_true(errclass_link(&jump));
	assert_true(errclass_link(&inner));
	assert_true(errclass_fwd(&f));
	f.enabled = 0;
	assert_false(errclass_fwd(&f));
	f.enabled = 1;

	/* Not waiting for it (backoff of its own): only its own counts. */
	inner.state = LINK_BACKOFF;
	assert_false(errclass_link(&inner));
	assert_false(errclass_fwd(&f));

	/* The jump host recovered. */
	inner.state = LINK_WAITING;
	jump.attn.on = 0;
	assert_false(errclass_link(&inner));

	/* The tunnel's own, on an up link. */
	inner.state = LINK_UP;
	inner.attn.on = 1;		/* stale: the link is up */
	assert_false(errclass_fwd(&f));
	f.attn.on = 1;
	assert_true(errclass_fwd(&f));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_refusals),
		cmocka_unit_test(test_privileged),
		cmocka_unit_test(test_log_once),
		cmocka_unit_test(test_chain),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
