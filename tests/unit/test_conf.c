/*
 * test_conf.c: golden tests of conf_load(): a full file with every field
 * checked, the defaults, and one test per error message with its exact text,
 * file and line. Configuration text is written to t.conf in a private
 * temporary directory; fixtures live in $TESTDATA (tests/unit/data).
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <pwd.h>
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

#define H	"hosts: { h: { address = \"127.0.0.1\"; }; };\n"
#define NAME_RULE "use 1-64 characters from A-Z a-z 0-9 _ . -"
#define LISTEN_FORMS "PORT, ADDR:PORT, [IPV6]:PORT, *:PORT or an absolute path"
#define TARGET_FORMS "HOST:PORT, [IPV6]:PORT or an absolute path"
#define ALLOWED_HOST "address, port, user, identity, agent, known_hosts, " \
	"host_key_policy, connect_timeout, keepalive_interval, " \
	"keepalive_count_max, backoff_initial, backoff_max, " \
	"backoff_reset_after, compression, ciphers, jump, max_window"
#define ALLOWED_DEFAULTS "port, user, identity, agent, known_hosts, " \
	"host_key_policy, connect_timeout, keepalive_interval, " \
	"keepalive_count_max, backoff_initial, backoff_max, " \
	"backoff_reset_after, compression, ciphers, max_window, " \
	"connect_wait, max_connections, enabled"
#define ALLOWED_TUNNEL "name, type, via, listen, target, enabled, " \
	"connect_wait, max_connections"
#define REMOTE_LISTEN_FORMS "PORT, ADDR:PORT, [IPV6]:PORT or *:PORT"
#define ALLOWED_TOP "version, daemon, defaults, hosts, tunnels"

static char	testdata[PATH_MAX];
static char	topdir[PATH_MAX + 16];
static char	tmpdir[64];

/* Write a file of len bytes. */
static void
write_len(const char *path, const char *text, size_t len)
{
	FILE *fp;

	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Load text as t.conf; returns the number of errors. */
static int
load_text(const char *text, struct conf **out, char **errs)
{
	write_len("t.conf", text, strlen(text));
	return (conf_load("t.conf", out, errs));
}

/* The number of lines in s. */
static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return (n);
}

/* text must be refused with exactly these error lines. */
static void
expect_errors(const char *text, const char *want)
{
	struct conf	*conf = (struct conf *)1;
	char		*errs = NULL;
	int		 n;

	n = load_text(text, &conf, &errs);
	assert_null(conf);
	if (errs == NULL)
		fail_msg("accepted, want:\n%s", want);
	if (strcmp(errs, want) != 0)
		fail_msg("got:\n%swant:\n%s", errs, want);
	assert_int_equal(n, count_lines(want));
	free(errs);
}

/* text must load without an error. */
static struct conf *
expect_ok(const char *text)
{
	struct conf	*conf = NULL;
	char		*errs = (char *)1;
	int		 n;

	n = load_text(text, &conf, &errs);
	if (n != 0)
		fail_msg("refused:\n%s", errs);
	assert_null(errs);
	assert_non_null(conf);
	return (conf);
}

/* The user the loader picks when none is given. */
static const char *
default_user(void)
{
	struct passwd *pw = getpwuid(geteuid());

	return (pw != NULL ? pw->pw_name : "root");
}

/* Work in a fresh directory; remember where the fixtures are. */
static int
group_setup(void **state)
{
	const char *dir = getenv("TESTDATA");

	(void)state;
	if (dir == NULL)
		dir = "tests/unit/data";
	if (realpath(dir, testdata) == NULL) {
		fprintf(stderr, "TESTDATA %s: %s\n", dir, strerror(errno));
		return (-1);
	}
	snprintf(topdir, sizeof(topdir), "%s/../../..", testdata);
	strcpy(tmpdir, "/tmp/test_conf.XXXXXX");
	if (mkdtemp(tmpdir) == NULL || chdir(tmpdir) == -1)
		return (-1);
	return (0);
}

/* Remove the directory. */
static int
group_teardown(void **state)
{
	(void)state;
	unlink("t.conf");
	unlink("tunnels.conf");
	if (chdir("/") == -1 || rmdir(tmpdir) == -1)
		return (-1);
	return (0);
}

/* A file with every setting given: every field is what it says. */
static void
test_full(void **state)
{
	const struct host_conf	*h;
	const struct tunnel_conf *t;
	struct conf		*conf;
	char			 path[PATH_MAX + 16], *errs;

	(void)state;
	snprintf(path, sizeof(path), "%s/full.conf", testdata);
	if (conf_load(path, &conf, &errs) != 0)
		fail_msg("%s", errs);
	assert_null(errs);
	assert_string_equal(conf->path, path);
	assert_string_equal(conf->control_socket, "/run/t/ctl.sock");
	assert_string_equal(conf->control_group, "tunnel");
	assert_int_equal(conf->log_level, LOGL_DEBUG);
	assert_int_equal(conf->nhosts, 3);
	assert_int_equal(conf->ntunnels, 10);

	h = &conf->hosts[0];
	assert_ptr_equal(conf_host(conf, "db"), h);
	assert_string_equal(h->name, "db");
	assert_string_equal(h->address, "db.example.com");
	assert_int_equal(h->port, 22);
	assert_string_equal(h->user, "ops");
	assert_int_equal(h->nidentity, 1);
	assert_string_equal(h->identity[0], "/root/id_db");
	assert_int_equal(h->agent, 0);
	assert_string_equal(h->known_hosts, "/etc/tunneld/db_known_hosts");
	assert_int_equal(h->host_key_policy, HOSTKEY_STRICT);
	assert_int_equal(h->connect_timeout, 3600);
	assert_int_equal(h->keepalive_interval, 3600);
	assert_int_equal(h->keepalive_count_max, 100);
	assert_true(h->backoff_initial == 0.1);
	assert_true(h->backoff_max == 86400.0);
	assert_int_equal(h->backoff_reset_after, 86400);
	assert_int_equal(h->compression, 0);
	assert_string_equal(h->ciphers,
	    "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com");
	assert_string_equal(h->jump, "");
	assert_int_equal(h->line, 31);

	/* Everything from defaults. */
	h = &conf->hosts[1];
	assert_ptr_equal(conf_host(conf, "relay"), h);
	assert_string_equal(h->name, "relay");
	assert_string_equal(h->address, "relay");
	assert_int_equal(h->port, 2200);
	assert_string_equal(h->user, "tunnel");
	assert_int_equal(h->nidentity, 2);
	assert_string_equal(h->identity[0], "/etc/tunneld/id_a");
	assert_string_equal(h->identity[1], "/etc/tunneld/id_b");
	assert_int_equal(h->agent, 1);
	assert_string_equal(h->known_hosts, "/var/lib/t/known_hosts");
	assert_int_equal(h->host_key_policy, HOSTKEY_ACCEPT_NEW);
	assert_int_equal(h->connect_timeout, 20);
	assert_int_equal(h->keepalive_interval, 0);
	assert_int_equal(h->keepalive_count_max, 5);
	assert_true(h->backoff_initial == 2.0);
	assert_true(h->backoff_max == 120.5);
	assert_int_equal(h->backoff_reset_after, 60);
	assert_int_equal(h->compression, 1);
	assert_string_equal(h->ciphers, "aes256-ctr,aes128-ctr");
	assert_string_equal(h->jump, "");
	assert_int_equal(h->line, 48);

	h = &conf->hosts[2];
	assert_string_equal(h->name, "v6");
	assert_string_equal(h->address, "2001:db8::5");
	assert_int_equal(h->port, 2200);
	assert_int_equal(h->nidentity, 2);
	/* Each host owns its own copies. */
	assert_ptr_not_equal(h->identity[0], conf->hosts[1].identity[0]);
	assert_ptr_not_equal(h->known_hosts, conf->hosts[1].known_hosts);
	assert_null(conf_host(conf, "nope"));

	t = &conf->tunnels[0];
	assert_string_equal(t->name, "pg");
	assert_int_equal(t->type, TUNNEL_LOCAL);
	assert_string_equal(t->via, "db");
	assert_int_equal(t->listen.is_unix, 0);
	assert_string_equal(t->listen.host, "127.0.0.1");
	assert_int_equal(t->listen.port, 9000);
	assert_string_equal(t->target.host, "127.0.0.1");
	assert_int_equal(t->target.port, 5432);
	assert_int_equal(t->enabled, 0);		/* from defaults */
	assert_int_equal(t->connect_wait, 7);
	assert_int_equal(t->max_connections, 100);	/* from defaults */
	assert_int_equal(t->line, 53);

	t = &conf->tunnels[1];
	assert_string_equal(t->name, "pg6");
	assert_string_equal(t->via, "v6");
	assert_string_equal(t->listen.host, "::1");
	assert_int_equal(t->listen.port, 9000);
	assert_string_equal(t->target.host, "2001:db8::5");
	assert_int_equal(t->target.port, 5432);

	t = &conf->tunnels[2];
	assert_string_equal(t->name, "sock");
	assert_int_equal(t->listen.is_unix, 1);
	assert_string_equal(t->listen.path, "/run/t/pg.sock");
	assert_int_equal(t->target.is_unix, 1);
	assert_string_equal(t->target.path, "/run/postgresql/.s.PGSQL.5432");
	assert_int_equal(t->connect_wait, 0);
	assert_int_equal(t->enabled, 0);

	t = &conf->tunnels[3];
	assert_string_equal(t->name, "All.any_1-2");
	assert_string_equal(t->listen.host, "*");
	assert_int_equal(t->listen.port, 8080);
	assert_string_equal(t->target.host, "intranet.example.com");
	assert_int_equal(t->target.port, 80);
	assert_int_equal(t->enabled, 0);
	assert_int_equal(t->connect_wait, 3600);

	t = &conf->tunnels[4];
	assert_string_equal(t->name, "port");
	assert_string_equal(t->listen.host, "");
	assert_int_equal(t->listen.port, 9001);
	assert_string_equal(t->target.host, "localhost");
	assert_int_equal(t->target.port, 22);
	assert_int_equal(t->enabled, 1);		/* its own overrides */
	assert_int_equal(t->max_connections, 1000000);

	t = &conf->tunnels[5];
	assert_string_equal(t->name, "lh");
	assert_string_equal(t->listen.host, "localhost");
	assert_int_equal(t->listen.port, 9002);
	assert_string_equal(t->target.host, "10.1.2.3");
	assert_int_equal(t->target.port, 65535);
	assert_int_equal(t->max_connections, 1);
	assert_int_equal(t->line, 66);

	/* The remote and dynamic kinds. */
	t = &conf->tunnels[6];
	assert_string_equal(t->name, "web");
	assert_int_equal(t->type, TUNNEL_REMOTE);
	assert_string_equal(t->via, "relay");
	assert_int_equal(t->listen.is_unix, 0);
	assert_string_equal(t->listen.host, "");
	assert_int_equal(t->listen.port, 0);		/* the server chooses */
	assert_int_equal(t->target.is_unix, 1);
	assert_string_equal(t->target.path, "/run/app.sock");
	assert_int_equal(t->enabled, 0);
	assert_int_equal(t->connect_wait, 7);
	assert_int_equal(t->max_connections, 100);
	assert_int_equal(t->line, 69);

	t = &conf->tunnels[7];
	assert_string_equal(t->name, "web6");
	assert_int_equal(t->type, TUNNEL_REMOTE);
	assert_string_equal(t->listen.host, "::1");
	assert_int_equal(t->listen.port, 8000);
	assert_string_equal(t->target.host, "::1");
	assert_int_equal(t->target.port, 80);
	assert_int_equal(t->connect_wait, 5);

	t = &conf->tunnels[8];
	assert_string_equal(t->name, "socks");
	assert_int_equal(t->type, TUNNEL_DYNAMIC);
	assert_string_equal(t->via, "db");
	assert_string_equal(t->listen.host, "::1");
	assert_int_equal(t->listen.port, 1080);
	assert_string_equal(t->target.host, "");	/* none */
	assert_int_equal(t->target.port, 0);
	assert_int_equal(t->target.is_unix, 0);
	assert_int_equal(t->max_connections, 20);

	t = &conf->tunnels[9];
	assert_string_equal(t->name, "rsocks");
	assert_int_equal(t->type, TUNNEL_REMOTE_DYNAMIC);
	assert_string_equal(t->via, "relay");
	assert_string_equal(t->listen.host, "*");
	assert_int_equal(t->listen.port, 1081);
	assert_string_equal(t->target.host, "");
	assert_int_equal(t->target.port, 0);
	assert_int_equal(t->enabled, 1);
	assert_int_equal(t->max_connections, 100);
	assert_int_equal(t->line, 75);
	conf_free(conf);
}

/* Nothing given: every default. */
static void
test_defaults(void **state)
{
	const struct host_conf	*h;
	const struct tunnel_conf *t;
	struct conf		*conf;

	(void)state;
	conf = expect_ok(
	    "hosts: { db: { }; };\n"
	    "tunnels = ( { name = \"pg\"; type = \"local\"; via = \"db\"; "
	    "listen = \"9000\"; target = \"127.0.0.1:5432\"; } );\n");
	assert_string_equal(conf->path, "t.conf");
	assert_string_equal(conf->control_socket, "/run/tunneld/control.sock");
	assert_null(conf->control_group);
	assert_int_equal(conf->log_level, LOGL_INFO);
	assert_int_equal(conf->max_buffered, 256);
	assert_int_equal(conf->nhosts, 1);
	h = &conf->hosts[0];
	assert_string_equal(h->name, "db");
	assert_string_equal(h->address, "db");
	assert_int_equal(h->port, 22);
	assert_string_equal(h->user, default_user());
	assert_int_equal(h->nidentity, 1);
	assert_string_equal(h->identity[0], "/etc/tunneld/id_ed25519");
	assert_int_equal(h->agent, 0);
	assert_string_equal(h->known_hosts, "/var/lib/tunneld/known_hosts");
	assert_int_equal(h->host_key_policy, HOSTKEY_STRICT);
	assert_int_equal(h->connect_timeout, 10);
	assert_int_equal(h->keepalive_interval, 15);
	assert_int_equal(h->keepalive_count_max, 3);
	assert_true(h->backoff_initial == 1.0);
	assert_true(h->backoff_max == 60.0);
	assert_int_equal(h->backoff_reset_after, 30);
	assert_int_equal(h->compression, 0);
	assert_string_equal(h->ciphers, "");
	assert_string_equal(h->jump, "");
	assert_int_equal(h->line, 1);
	assert_int_equal(conf->ntunnels, 1);
	t = &conf->tunnels[0];
	assert_int_equal(t->enabled, 1);
	assert_int_equal(t->connect_wait, 10);
	assert_int_equal(t->max_connections, 4096);
	assert_int_equal(t->line, 2);
	conf_free(conf);
}

/* Empty files and empty blocks are valid. */
static void
test_empty(void **state)
{
	struct conf *conf;

	(void)state;
	conf = expect_ok("");
	assert_int_equal(conf->nhosts, 0);
	assert_int_equal(conf->ntunnels, 0);
	assert_string_equal(conf->control_socket, "/run/tunneld/control.sock");
	conf_free(conf);
	conf = expect_ok("# nothing\nversion = 1;\ndaemon: { };\n"
	    "defaults: { };\nhosts: { };\ntunnels = ( );\n");
	assert_int_equal(conf->nhosts, 0);
	assert_int_equal(conf->ntunnels, 0);
	conf_free(conf);
	conf = expect_ok("tunnels = [ ];\n");
	conf_free(conf);
	conf_free(NULL);
}

/* Defaults reach every host and tunnel; hosts and tunnels override. */
static void
test_defaults_inherited(void **state)
{
	struct conf *conf;

	(void)state;
	conf = expect_ok(
	    "defaults: { port = 2222; user = \"u\"; agent = true;\n"
	    "  identity = [ \"/k/a\", \"/k/b\" ]; known_hosts = \"/k/kh\";\n"
	    "  host_key_policy = \"accept-new\"; connect_timeout = 5;\n"
	    "  keepalive_interval = 0; keepalive_count_max = 9;\n"
	    "  backoff_initial = 3; backoff_max = 30.5;\n"
	    "  backoff_reset_after = 0; connect_wait = 20;\n"
	    "  max_connections = 50; };\n"
	    "hosts: { a: { };\n"
	    "  b: { port = 22; user = \"v\"; identity = \"/k/c\"; agent = false;\n"
	    "    known_hosts = \"/k/kh2\"; host_key_policy = \"strict\";\n"
	    "    connect_timeout = 6; keepalive_interval = 7;\n"
	    "    keepalive_count_max = 8; backoff_initial = 0.5;\n"
	    "    backoff_max = 9; backoff_reset_after = 10; }; };\n"
	    "tunnels = (\n"
	    "  { name = \"t1\"; type = \"local\"; via = \"a\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"t2\"; type = \"local\"; via = \"b\"; listen = \"2\";"
	    " target = \"x:1\"; connect_wait = 0; max_connections = 1; }\n"
	    ");\n");
	assert_int_equal(conf->hosts[0].port, 2222);
	assert_string_equal(conf->hosts[0].user, "u");
	assert_int_equal(conf->hosts[0].agent, 1);
	assert_int_equal(conf->hosts[0].nidentity, 2);
	assert_string_equal(conf->hosts[0].identity[1], "/k/b");
	assert_string_equal(conf->hosts[0].known_hosts, "/k/kh");
	assert_int_equal(conf->hosts[0].host_key_policy, HOSTKEY_ACCEPT_NEW);
	assert_int_equal(conf->hosts[0].connect_timeout, 5);
	assert_int_equal(conf->hosts[0].keepalive_interval, 0);
	assert_int_equal(conf->hosts[0].keepalive_count_max, 9);
	assert_true(conf->hosts[0].backoff_initial == 3.0);
	assert_true(conf->hosts[0].backoff_max == 30.5);
	assert_int_equal(conf->hosts[0].backoff_reset_after, 0);
	assert_int_equal(conf->hosts[1].port, 22);
	assert_string_equal(conf->hosts[1].user, "v");
	assert_int_equal(conf->hosts[1].agent, 0);
	assert_int_equal(conf->hosts[1].nidentity, 1);
	assert_string_equal(conf->hosts[1].identity[0], "/k/c");
	assert_string_equal(conf->hosts[1].known_hosts, "/k/kh2");
	assert_int_equal(conf->hosts[1].host_key_policy, HOSTKEY_STRICT);
	assert_int_equal(conf->hosts[1].connect_timeout, 6);
	assert_int_equal(conf->hosts[1].keepalive_interval, 7);
	assert_int_equal(conf->hosts[1].keepalive_count_max, 8);
	assert_true(conf->hosts[1].backoff_initial == 0.5);
	assert_true(conf->hosts[1].backoff_max == 9.0);
	assert_int_equal(conf->hosts[1].backoff_reset_after, 10);
	assert_int_equal(conf->tunnels[0].connect_wait, 20);
	assert_int_equal(conf->tunnels[1].connect_wait, 0);
	assert_int_equal(conf->tunnels[0].max_connections, 50);
	assert_int_equal(conf->tunnels[1].max_connections, 1);
	conf_free(conf);
}

/*
 * max_window: a byte count in defaults or a host, 16 MiB when not given,
 * 0 to 1 GiB; not a tunnel setting.
 */
static void
test_max_window(void **state)
{
	struct conf *conf;

	(void)state;
	conf = expect_ok(
	    "defaults: { max_window = 4194304; };\n"
	    "hosts: { a: { address = \"127.0.0.1\"; };\n"
	    "  b: { address = \"127.0.0.1\"; max_window = 1073741824; };\n"
	    "  c: { address = \"127.0.0.1\"; max_window = 0; }; };\n");
	assert_int_equal(conf->hosts[0].max_window, 4 << 20);
	assert_int_equal(conf->hosts[1].max_window, 1 << 30);
	assert_int_equal(conf->hosts[2].max_window, 0);
	conf_free(conf);
	conf = expect_ok(H);
	assert_int_equal(conf->hosts[0].max_window, 16 << 20);
	conf_free(conf);
	expect_errors("hosts: { h: { address = \"127.0.0.1\";\n"
	    "  max_window = 1073741825; }; };\n",
	    "t.conf:2: host \"h\": max_window: 1073741825 is out of range "
	    "0-1073741824\n");
	expect_errors("defaults: { max_window = -1; };\n" H,
	    "t.conf:1: defaults: max_window: -1 is out of range "
	    "0-1073741824\n");
}

/* The example of SPEC.md section 2 loads whole. */
static void
test_spec(void **state)
{
	const struct tunnel_conf *t;
	const struct host_conf	 *h;
	struct conf	*conf;
	char		 path[PATH_MAX + 16], *errs;
	size_t		 len;

	(void)state;
	/* SPEC's example, jump host and all, loads as it is. */
	snprintf(path, sizeof(path), "%s/spec.conf", testdata);
	if (conf_load(path, &conf, &errs) != 0)
		fail_msg("%s", errs);
	free(errs);
	assert_non_null(h = conf_host(conf, "db"));
	assert_string_equal(h->jump, "relay");
	assert_int_equal(conf->ntunnels, 6);
	t = &conf->tunnels[0];
	assert_string_equal(t->name, "pg");
	assert_int_equal(t->type, TUNNEL_LOCAL);
	t = &conf->tunnels[1];
	assert_string_equal(t->name, "web");
	assert_int_equal(t->type, TUNNEL_REMOTE);
	assert_string_equal(t->via, "relay");
	assert_string_equal(t->listen.host, "0.0.0.0");
	assert_int_equal(t->listen.port, 8000);
	assert_string_equal(t->target.host, "127.0.0.1");
	assert_int_equal(t->target.port, 80);
	assert_int_equal(t->line, 33);
	t = &conf->tunnels[2];
	assert_string_equal(t->name, "socks");
	assert_int_equal(t->type, TUNNEL_DYNAMIC);
	assert_string_equal(t->listen.host, "127.0.0.1");
	assert_int_equal(t->listen.port, 1080);
	assert_int_equal(t->line, 34);
	t = &conf->tunnels[3];
	assert_string_equal(t->name, "rsocks");
	assert_int_equal(t->type, TUNNEL_REMOTE_DYNAMIC);
	assert_string_equal(t->listen.host, "127.0.0.1");
	assert_int_equal(t->listen.port, 1081);
	assert_int_equal(t->line, 35);
	for (len = 0; len < 6; len++)
		assert_int_equal(conf->tunnels[len].max_connections, 4096);
	assert_int_equal(conf->tunnels[5].enabled, 0);
	conf_free(conf);
}

/* The index of the tunnel of a kind listening on a TCP port, or -1. */
static int
find_tunnel(const struct conf *conf, enum tunnel_type type, const char *host,
    int port)
{
	int i;

	for (i = 0; i < conf->ntunnels; i++)
		if (conf->tunnels[i].type == type &&
		    !conf->tunnels[i].listen.is_unix &&
		    strcmp(conf->tunnels[i].listen.host, host) == 0 &&
		    conf->tunnels[i].listen.port == port)
			return (i);
	return (-1);
}

/* The shipped examples load without an error. */
static void
test_examples(void **state)
{
	struct conf	*conf;
	char		 path[PATH_MAX + 64], *errs;
	int		 i, kinds = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/conf/tunnels.conf", topdir);
	if (conf_load(path, &conf, &errs) != 0)
		fail_msg("%s", errs);
	assert_true(conf->ntunnels >= 1);
	/* It shows every kind, live, and a remote port 0. */
	for (i = 0; i < conf->ntunnels; i++)
		kinds |= 1 << conf->tunnels[i].type;
	assert_int_equal(kinds, (1 << TUNNEL_LOCAL) | (1 << TUNNEL_REMOTE) |
	    (1 << TUNNEL_DYNAMIC) | (1 << TUNNEL_REMOTE_DYNAMIC));
	assert_true(find_tunnel(conf, TUNNEL_REMOTE, "", 0) != -1);
	conf_free(conf);

	snprintf(path, sizeof(path), "%s/conf/demo.conf", topdir);
	if (conf_load(path, &conf, &errs) != 0)
		fail_msg("%s", errs);
	assert_string_equal(conf->control_socket,
	    "/tmp/tunneld-demo/control.sock");
	/* demo, and inner reached through it (a jump host). */
	assert_int_equal(conf->nhosts, 2);
	assert_string_equal(conf->hosts[1].name, "inner");
	assert_string_equal(conf->hosts[1].jump, "demo");
	assert_int_equal(conf->hosts[1].port, 2223);
	assert_string_equal(conf->hosts[0].name, "demo");
	assert_string_equal(conf->hosts[0].address, "127.0.0.1");
	assert_int_equal(conf->hosts[0].port, 2222);
	assert_string_equal(conf->hosts[0].user, "root");
	assert_string_equal(conf->hosts[0].identity[0],
	    "/tmp/tunneld-demo/id_ed25519");
	assert_string_equal(conf->hosts[0].known_hosts,
	    "/tmp/tunneld-demo/known_hosts");
	assert_int_equal(conf->hosts[0].host_key_policy, HOSTKEY_ACCEPT_NEW);
	/* The local ones first; the demo may add one of every other kind. */
	assert_true(conf->ntunnels >= 3);
	assert_string_equal(conf->tunnels[0].name, "web");
	assert_string_equal(conf->tunnels[1].name, "web6");
	assert_string_equal(conf->tunnels[1].listen.host, "::1");
	assert_int_equal(conf->tunnels[2].listen.is_unix, 1);
	for (i = 0; i < conf->ntunnels; i++)
		assert_string_equal(conf->tunnels[i].via,
		    strcmp(conf->tunnels[i].name, "chain") == 0 ? "inner" :
		    "demo");
	conf_free(conf);
}

/* Load conf/examples/NAME (fails the test on any error). */
static struct conf *
load_example(const char *name)
{
	struct conf	*conf;
	char		 path[PATH_MAX + 64], *errs;

	snprintf(path, sizeof(path), "%s/conf/examples/%s", topdir, name);
	if (conf_load(path, &conf, &errs) != 0)
		fail_msg("%s", errs);
	return (conf);
}

/*
 * conf/examples: the relay pattern of SPEC.md section 2. A pushes its sshd
 * to B's loopback port 2201, C pulls it from there, B re-exposes it.
 */
static void
test_relay_examples(void **state)
{
	static const char *const files[] = {
		"relay-A.conf", "relay-B.conf", "relay-C.conf"
	};
	const struct host_conf	 *h;
	const struct tunnel_conf *t;
	struct conf		 *conf;
	char			  path[PATH_MAX + 64];
	size_t			  k, found = 0;
	int			  i;

	(void)state;
	for (k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
		snprintf(path, sizeof(path), "%s/conf/examples/%s", topdir,
		    files[k]);
		found += access(path, F_OK) == 0;
	}
	/* A moved or missing example must fail, not drop the test. */
	if (found != sizeof(files) / sizeof(files[0]))
		fail_msg("conf/examples under %s: %zu of %zu relay example "
		    "files found", topdir, found,
		    sizeof(files) / sizeof(files[0]));

	/* A: a remote tunnel via B, B's 127.0.0.1:2201 to A's sshd. */
	conf = load_example("relay-A.conf");
	assert_non_null(h = conf_host(conf, "b"));
	assert_string_equal(h->address, "relay.example.com");
	i = find_tunnel(conf, TUNNEL_REMOTE, "127.0.0.1", 2201);
	assert_true(i != -1);
	t = &conf->tunnels[i];
	assert_string_equal(t->via, "b");
	assert_string_equal(t->target.host, "127.0.0.1");
	assert_int_equal(t->target.port, 22);
	conf_free(conf);

	/* C: a local tunnel via B, 127.0.0.1:2222 here to B's port 2201. */
	conf = load_example("relay-C.conf");
	assert_non_null(conf_host(conf, "b"));
	i = find_tunnel(conf, TUNNEL_LOCAL, "127.0.0.1", 2222);
	assert_true(i != -1);
	t = &conf->tunnels[i];
	assert_string_equal(t->via, "b");
	assert_string_equal(t->target.host, "127.0.0.1");
	assert_int_equal(t->target.port, 2201);
	conf_free(conf);

	/* B: a local tunnel via itself, *:8086 to its own port 2201. */
	conf = load_example("relay-B.conf");
	assert_non_null(h = conf_host(conf, "self"));
	assert_string_equal(h->address, "127.0.0.1");
	i = find_tunnel(conf, TUNNEL_LOCAL, "*", 8086);
	assert_true(i != -1);
	t = &conf->tunnels[i];
	assert_string_equal(t->via, "self");
	assert_string_equal(t->target.host, "127.0.0.1");
	assert_int_equal(t->target.port, 2201);
	conf_free(conf);
}

/* A missing file, a directory, a file with a NUL byte. */
static void
test_cannot_read(void **state)
{
	struct conf	*conf = (struct conf *)1;
	char		*errs;

	(void)state;
	assert_int_equal(conf_load("no-such.conf", &conf, &errs), 1);
	assert_null(conf);
	assert_string_equal(errs,
	    "no-such.conf: cannot read: No such file or directory\n");
	free(errs);
	assert_int_equal(conf_load("/nonexistent/dir/t.conf", &conf, &errs),
	    1);
	assert_string_equal(errs, "/nonexistent/dir/t.conf: cannot read: "
	    "No such file or directory\n");
	free(errs);
	assert_int_equal(conf_load(".", &conf, &errs), 1);
	assert_null(conf);
	assert_string_equal(errs, ".: cannot read: Is a directory\n");
	free(errs);
	write_len("t.conf", "version = 1;\n\0x = 1;\n", 21);
	assert_int_equal(conf_load("t.conf", &conf, &errs), 1);
	assert_string_equal(errs, "t.conf: cannot read: the file holds a "
	    "NUL byte (it must be text)\n");
	free(errs);
}

/* libconfig's own errors, with the path exactly as given. */
static void
test_syntax(void **state)
{
	struct conf	*conf;
	char		*errs;

	(void)state;
	expect_errors("version = 1;\nhosts: { h: { port = ; }; };\n",
	    "t.conf:2: syntax error\n");
	expect_errors("hosts: { h: { }; h: { }; };\n",
	    "t.conf:1: duplicate setting name\n");
	expect_errors("x = [ 1, \"a\" ];\n",
	    "t.conf:1: mismatched element type in array\n");
	write_len("t.conf", "\n\nversion = ;\n", 14);
	assert_int_equal(conf_load("./t.conf", &conf, &errs), 1);
	assert_string_equal(errs, "./t.conf:3: syntax error\n");
	free(errs);
}

/* The error line of SPEC.md section 2, to the letter. */
static void
test_spec_message(void **state)
{
	struct conf	*conf;
	char		*errs, text[1024];

	(void)state;
	snprintf(text, sizeof(text), "%s%s", H,
	    "\n\n\n\n\n\n\n\n\n\n\ntunnels = (\n"
	    "  { name = \"pg\"; type = \"local\"; via = \"h\";"
	    " listen = \"127.0.0.1:99999\"; target = \"127.0.0.1:5432\"; }\n"
	    ");\n");
	write_len("tunnels.conf", text, strlen(text));
	assert_int_equal(conf_load("tunnels.conf", &conf, &errs), 1);
	assert_string_equal(errs, "tunnels.conf:14: tunnel \"pg\": listen: "
	    "port 99999 is out of range 1-65535\n");
	free(errs);
}

/* version. */
static void
test_version(void **state)
{
	(void)state;
	conf_free(expect_ok("version = 1;\n"));
	conf_free(expect_ok("version = 1L;\n"));
	expect_errors("version = 2;\n", "t.conf:1: version: 2 is not "
	    "supported (this tunneld reads version 1)\n");
	expect_errors("version = 0;\n", "t.conf:1: version: 0 is not "
	    "supported (this tunneld reads version 1)\n");
	expect_errors("version = \"1\";\n",
	    "t.conf:1: version: must be the integer 1\n");
	expect_errors("\nversion = 1.0;\n",
	    "t.conf:2: version: must be the integer 1\n");
	expect_errors("version = 4294967297;\n", "t.conf:1: version: "
	    "4294967297 is not supported (this tunneld reads version 1)\n");
}

/* Unknown settings at the top; blocks of the wrong kind. */
static void
test_top_level(void **state)
{
	(void)state;
	expect_errors("listen = 1;\nversion = 1;\ntunnel = ( );\n",
	    "t.conf:1: unknown setting \"listen\" (allowed: " ALLOWED_TOP ")\n"
	    "t.conf:3: unknown setting \"tunnel\" (allowed: " ALLOWED_TOP ")\n");
	expect_errors("daemon = 1;\ndefaults = \"x\";\nhosts = ( );\n"
	    "tunnels: { };\n",
	    "t.conf:1: daemon: must be a group ({ ... })\n"
	    "t.conf:2: defaults: must be a group ({ ... })\n"
	    "t.conf:3: hosts: must be a group ({ ... })\n"
	    "t.conf:4: tunnels: must be a list (( { ... }, { ... } ))\n");
	expect_errors("tunnels = [ 1 ];\n",
	    "t.conf:1: tunnels: must be a list (( { ... }, { ... } ))\n");
}

/* The daemon block: each setting and each error. */
static void
test_daemon(void **state)
{
	struct conf	*conf;
	static const struct {
		const char	*name;
		enum log_level	 level;
	} levels[] = {
		{ "error", LOGL_ERROR }, { "warning", LOGL_WARNING },
		{ "notice", LOGL_NOTICE }, { "info", LOGL_INFO },
		{ "debug", LOGL_DEBUG },
	};
	char		 text[512];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		snprintf(text, sizeof(text), "daemon: { log_level = \"%s\"; };",
		    levels[i].name);
		conf = expect_ok(text);
		assert_int_equal(conf->log_level, levels[i].level);
		conf_free(conf);
	}
	conf = expect_ok("daemon: { max_buffered = 16; };");
	assert_int_equal(conf->max_buffered, 16);
	conf_free(conf);
	conf = expect_ok("daemon: { max_buffered = 65536; };");
	assert_int_equal(conf->max_buffered, 65536);
	conf_free(conf);
	expect_errors(
	    "daemon: {\n"
	    "  max_buffered = 15;\n"
	    "};\n",
	    "t.conf:2: daemon: max_buffered: 15 is out of range 16-65536\n");
	expect_errors(
	    "daemon: {\n"
	    "  max_buffered = 65537;\n"
	    "};\n",
	    "t.conf:2: daemon: max_buffered: 65537 is out of range "
	    "16-65536\n");
	expect_errors(
	    "daemon: {\n"
	    "  max_buffered = \"256M\";\n"
	    "};\n",
	    "t.conf:2: daemon: max_buffered: must be an integer "
	    "(16-65536)\n");
	expect_errors(
	    "daemon: {\n"
	    "  max_buffered = 99999999999;\n"
	    "};\n",
	    "t.conf:2: daemon: max_buffered: 99999999999 is out of range "
	    "16-65536\n");
	conf = expect_ok("daemon: { control_group = \"_tunnel-1.x$\"; };");
	assert_string_equal(conf->control_group, "_tunnel-1.x$");
	conf_free(conf);

	expect_errors(
	    "daemon: {\n"
	    "  control_socket = \"run/ctl.sock\";\n"
	    "  control_group = \"a b\";\n"
	    "  log_level = \"loud\";\n"
	    "  pidfile = \"/run/x\";\n"
	    "};\n",
	    "t.conf:2: daemon: control_socket: \"run/ctl.sock\" is not an "
	    "absolute path\n"
	    "t.conf:3: daemon: control_group: \"a b\" is not a valid group "
	    "name (use 1-32 characters from A-Z a-z 0-9 _ . -, not starting "
	    "with -)\n"
	    "t.conf:4: daemon: log_level: \"loud\" is not one of error, "
	    "warning, notice, info, debug\n"
	    "t.conf:5: daemon: unknown setting \"pidfile\" (allowed: "
	    "control_socket, control_group, status_group, metrics_listen, "
	    "log_level, max_buffered)\n");
	expect_errors(
	    "daemon: {\n"
	    "  control_socket = \"/run/tunneld/\";\n"
	    "  control_group = \"-x\";\n"
	    "  log_level = \"INFO\";\n"
	    "};\n",
	    "t.conf:2: daemon: control_socket: path ends in \"/\" (it must "
	    "name a file)\n"
	    "t.conf:3: daemon: control_group: \"-x\" is not a valid group "
	    "name (use 1-32 characters from A-Z a-z 0-9 _ . -, not starting "
	    "with -)\n"
	    "t.conf:4: daemon: log_level: \"INFO\" is not one of error, "
	    "warning, notice, info, debug\n");
	expect_errors(
	    "daemon: {\n"
	    "  control_socket = 5;\n"
	    "  control_group = \"abcdefghijabcdefghijabcdefghijabc\";\n"
	    "  log_level = 7;\n"
	    "};\n",
	    "t.conf:2: daemon: control_socket: must be a string (an absolute "
	    "path)\n"
	    "t.conf:3: daemon: control_group: \"abcdefghijabcdefghijabcdefghij"
	    "abc\" is not a valid group name (use 1-32 characters from A-Z "
	    "a-z 0-9 _ . -, not starting with -)\n"
	    "t.conf:4: daemon: log_level: must be a string (error, warning, "
	    "notice, info or debug)\n");
	snprintf(text, sizeof(text), "daemon: { control_socket = \"/%0107d\"; "
	    "};\n", 0);
	expect_errors(text, "t.conf:1: daemon: control_socket: path is "
	    "longer than 107 bytes (the limit of a UNIX socket)\n");
	snprintf(text, sizeof(text), "daemon: { control_socket = \"/%0106d\"; "
	    "};\n", 0);
	conf_free(expect_ok(text));
}

/* metrics_listen: none by default, "" for none, a TCP listen endpoint. */
static void
test_metrics_listen(void **state)
{
	struct conf	*conf;
	static const struct {
		const char	*text;
		const char	*host;
		int		 port;
	} ok[] = {
		{ "", "", 0 },
		{ "9469", "", 9469 },
		{ "127.0.0.1:9469", "127.0.0.1", 9469 },
		{ "[::1]:9100", "::1", 9100 },
		{ "*:80", "*", 80 },
		{ "localhost:9469", "localhost", 9469 },
	};
	char		 text[256];
	size_t		 i;

	(void)state;
	conf = expect_ok("daemon: { log_level = \"info\"; };");
	assert_int_equal(conf->metrics_listen.port, 0);
	conf_free(conf);
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "daemon: { metrics_listen = "
		    "\"%s\"; };", ok[i].text);
		conf = expect_ok(text);
		assert_string_equal(conf->metrics_listen.host, ok[i].host);
		assert_int_equal(conf->metrics_listen.port, ok[i].port);
		assert_int_equal(conf->metrics_listen.is_unix, 0);
		conf_free(conf);
	}
	expect_errors(
	    "daemon: {\n"
	    "  metrics_listen = \"prometheus.example:9469\";\n"
	    "};\n",
	    "t.conf:2: daemon: metrics_listen: \"prometheus.example\" is not "
	    "a valid listen address (use *, localhost, an IPv4 address or "
	    "[IPV6]; a listen address is never looked up in DNS)\n");
	expect_errors(
	    "daemon: {\n"
	    "  metrics_listen = \"/run/tunneld/metrics.sock\";\n"
	    "};\n",
	    "t.conf:2: daemon: metrics_listen: UNIX socket paths are not "
	    "allowed here (use PORT, ADDR:PORT, [IPV6]:PORT or *:PORT)\n");
	expect_errors(
	    "daemon: {\n"
	    "  metrics_listen = 9469;\n"
	    "};\n",
	    "t.conf:2: daemon: metrics_listen: must be a string (\"\" for none, "
	    "PORT, ADDR:PORT, [IPV6]:PORT or *:PORT)\n");
	expect_errors(
	    "daemon: {\n"
	    "  metrics_listen = \"127.0.0.1:0\";\n"
	    "};\n",
	    "t.conf:2: daemon: metrics_listen: port 0 is out of range "
	    "1-65535\n");
}

/* Every host setting out of its range, each on its own line. */
static void
test_host_values(void **state)
{
	(void)state;
	expect_errors(
	    "hosts: {\n"
	    "  h: {\n"
	    "    address = \"foo bar\";\n"
	    "    port = 0;\n"
	    "    user = \"a b\";\n"
	    "    identity = \"id_ed25519\";\n"
	    "    agent = \"yes\";\n"
	    "    known_hosts = \"known_hosts\";\n"
	    "    host_key_policy = \"off\";\n"
	    "    connect_timeout = 0;\n"
	    "    keepalive_interval = 3601;\n"
	    "    keepalive_count_max = 101;\n"
	    "    backoff_initial = 0.05;\n"
	    "    backoff_max = 86401;\n"
	    "    backoff_reset_after = -1;\n"
	    "    colour = \"red\";\n"
	    "  };\n"
	    "};\n",
	    "t.conf:3: host \"h\": address: \"foo bar\" is not a valid host "
	    "name or address (use letters, digits, hyphens and dots, or an IP "
	    "address)\n"
	    "t.conf:4: host \"h\": port: 0 is out of range 1-65535\n"
	    "t.conf:5: host \"h\": user: \"a b\" is not a valid user name (use "
	    "1-255 printable characters, no spaces)\n"
	    "t.conf:6: host \"h\": identity: \"id_ed25519\" is not an absolute "
	    "path\n"
	    "t.conf:7: host \"h\": agent: must be true or false\n"
	    "t.conf:8: host \"h\": known_hosts: \"known_hosts\" is not an "
	    "absolute path\n"
	    "t.conf:9: host \"h\": host_key_policy: \"off\" is not allowed (use "
	    "strict or accept-new)\n"
	    "t.conf:10: host \"h\": connect_timeout: 0 is out of range 1-3600\n"
	    "t.conf:11: host \"h\": keepalive_interval: 3601 is out of range "
	    "0-3600\n"
	    "t.conf:12: host \"h\": keepalive_count_max: 101 is out of range "
	    "1-100\n"
	    "t.conf:13: host \"h\": backoff_initial: 0.05 is out of range "
	    "0.1-3600\n"
	    "t.conf:14: host \"h\": backoff_max: 86401 is out of range "
	    "0.1-86400\n"
	    "t.conf:15: host \"h\": backoff_reset_after: -1 is out of range "
	    "0-86400\n"
	    "t.conf:16: host \"h\": unknown setting \"colour\" (allowed: "
	    ALLOWED_HOST ")\n");
	expect_errors(
	    "hosts: { h: {\n"
	    "  port = 65536;\n"
	    "  user = \"\";\n"
	    "  address = \"10.0.0.256\";\n"
	    "  keepalive_count_max = 0;\n"
	    "  connect_timeout = 3601;\n"
	    "  backoff_reset_after = 86401;\n"
	    "}; };\n",
	    "t.conf:2: host \"h\": port: 65536 is out of range 1-65535\n"
	    "t.conf:3: host \"h\": user: \"\" is not a valid user name (use "
	    "1-255 printable characters, no spaces)\n"
	    "t.conf:4: host \"h\": address: \"10.0.0.256\" is not a valid host "
	    "name or address (use letters, digits, hyphens and dots, or an IP "
	    "address)\n"
	    "t.conf:5: host \"h\": keepalive_count_max: 0 is out of range "
	    "1-100\n"
	    "t.conf:6: host \"h\": connect_timeout: 3601 is out of range "
	    "1-3600\n"
	    "t.conf:7: host \"h\": backoff_reset_after: 86401 is out of range "
	    "0-86400\n");
	/* libssh refuses these and would log in as the local user. */
	expect_errors(
	    "hosts: {\n"
	    "  a: { user = \"ops;id\"; };\n"
	    "  b: { user = \"-oProxyCommand=x\"; };\n"
	    "  c: { user = \"a$b\"; };\n"
	    "};\n",
	    "t.conf:2: host \"a\": user: \"ops;id\" is not a valid user name "
	    "(libssh refuses a leading '-' and the shell characters "
	    "'`\";&<>|(){}$\\,)\n"
	    "t.conf:3: host \"b\": user: \"-oProxyCommand=x\" is not a valid "
	    "user name (libssh refuses a leading '-' and the shell characters "
	    "'`\";&<>|(){}$\\,)\n"
	    "t.conf:4: host \"c\": user: \"a$b\" is not a valid user name "
	    "(libssh refuses a leading '-' and the shell characters "
	    "'`\";&<>|(){}$\\,)\n");
}

/* Every host setting of the wrong type. */
static void
test_host_types(void **state)
{
	(void)state;
	expect_errors(
	    "hosts: { h: {\n"
	    "  port = \"22\";\n"
	    "  connect_timeout = 1.5;\n"
	    "  keepalive_interval = true;\n"
	    "  backoff_initial = \"1\";\n"
	    "  address = 10;\n"
	    "  user = 1;\n"
	    "  known_hosts = 1;\n"
	    "  host_key_policy = 1;\n"
	    "  jump = 1;\n"
	    "  identity = 1;\n"
	    "  agent = 0;\n"
	    "  backoff_max = [ 1 ];\n"
	    "}; };\n",
	    "t.conf:2: host \"h\": port: must be an integer (1-65535)\n"
	    "t.conf:3: host \"h\": connect_timeout: must be an integer "
	    "(1-3600)\n"
	    "t.conf:4: host \"h\": keepalive_interval: must be an integer "
	    "(0-3600)\n"
	    "t.conf:5: host \"h\": backoff_initial: must be a number "
	    "(0.1-3600)\n"
	    "t.conf:6: host \"h\": address: must be a string (a host name or "
	    "address)\n"
	    "t.conf:7: host \"h\": user: must be a string (a user name)\n"
	    "t.conf:8: host \"h\": known_hosts: must be a string (an absolute "
	    "path)\n"
	    "t.conf:9: host \"h\": host_key_policy: must be a string (strict "
	    "or accept-new)\n"
	    "t.conf:10: host \"h\": jump: must be a string (the name of "
	    "another host)\n"
	    "t.conf:11: host \"h\": identity: must be a string or a list of "
	    "strings (absolute paths)\n"
	    "t.conf:12: host \"h\": agent: must be true or false\n"
	    "t.conf:13: host \"h\": backoff_max: must be a number "
	    "(0.1-86400)\n");
	/* Integers are numbers; 64-bit integers are integers. */
	conf_free(expect_ok("hosts: { h: { backoff_initial = 2; backoff_max = "
	    "10L; port = 22L; }; };\n"));
}

/* host_key_policy: strict or accept-new, never off. */
static void
test_host_key_policy(void **state)
{
	struct conf *conf;

	(void)state;
	conf = expect_ok("hosts: { a: { host_key_policy = \"strict\"; };\n"
	    "b: { host_key_policy = \"accept-new\"; }; };\n");
	assert_int_equal(conf->hosts[0].host_key_policy, HOSTKEY_STRICT);
	assert_int_equal(conf->hosts[1].host_key_policy, HOSTKEY_ACCEPT_NEW);
	conf_free(conf);
	expect_errors("defaults: { host_key_policy = \"off\"; };\n"
	    "hosts: { h: { host_key_policy = \"Strict\"; }; };\n",
	    "t.conf:1: defaults: host_key_policy: \"off\" is not allowed (use "
	    "strict or accept-new)\n"
	    "t.conf:2: host \"h\": host_key_policy: \"Strict\" is not allowed "
	    "(use strict or accept-new)\n");
}

/* identity: a string or a list, at most 16, and something to log in with. */
static void
test_identity(void **state)
{
	struct conf	*conf;
	char		 text[2048];
	int		 i;

	(void)state;
	conf = expect_ok("hosts: { h: { identity = ( \"/a\", \"/b\" ); };\n"
	    "i: { identity = [ ]; agent = true; }; };\n");
	assert_int_equal(conf->hosts[0].nidentity, 2);
	assert_string_equal(conf->hosts[0].identity[1], "/b");
	assert_int_equal(conf->hosts[1].nidentity, 0);
	conf_free(conf);

	strcpy(text, "hosts: { h: { identity = [ ");
	for (i = 0; i < CONF_MAX_IDENTITIES; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
		    "%s\"/k/%d\"", i > 0 ? ", " : "", i);
	strcat(text, " ]; }; };\n");
	conf = expect_ok(text);
	assert_int_equal(conf->hosts[0].nidentity, CONF_MAX_IDENTITIES);
	assert_string_equal(conf->hosts[0].identity[15], "/k/15");
	conf_free(conf);
	strcpy(text + strlen(text) - 10, ", \"/k/x\" ]; }; };\n");
	expect_errors(text, "t.conf:1: host \"h\": identity: 17 files given "
	    "(at most 16)\n");

	expect_errors(
	    "hosts: {\n"
	    "  h: { identity = ( \"/a\", 3, \"b\" ); };\n"
	    "  i: { identity = ( ); };\n"
	    "  j: { identity = { }; };\n"
	    "};\n",
	    "t.conf:2: host \"h\": identity: must be a string (an absolute "
	    "path)\n"
	    "t.conf:2: host \"h\": identity: \"b\" is not an absolute path\n"
	    "t.conf:3: host \"i\": identity: no identity files and agent is "
	    "false: nothing to log in with (give identity files or set agent "
	    "= true)\n"
	    "t.conf:4: host \"j\": identity: must be a string or a list of "
	    "strings (absolute paths)\n");
}

/* backoff_max must not be below backoff_initial, wherever each is set. */
static void
test_backoff_order(void **state)
{
	(void)state;
	conf_free(expect_ok("hosts: { h: { backoff_initial = 5; "
	    "backoff_max = 5; }; };\n"));
	expect_errors(
	    "hosts: {\n"
	    "  a: { backoff_initial = 10; backoff_max = 5; };\n"
	    "  b: { backoff_initial = 100; };\n"
	    "  c: { backoff_max = 0.5; };\n"
	    "};\n",
	    "t.conf:2: host \"a\": backoff_max: 5 is less than backoff_initial "
	    "(10); it must be at least that\n"
	    "t.conf:3: host \"b\": backoff_initial: 100 is more than "
	    "backoff_max (60); it must be at most that\n"
	    "t.conf:4: host \"c\": backoff_max: 0.5 is less than "
	    "backoff_initial (1); it must be at least that\n");
	/* A refused value is not compared. */
	expect_errors(
	    "hosts: { a: { backoff_initial = 100; backoff_max = 99999; }; };\n",
	    "t.conf:1: host \"a\": backoff_max: 99999 is out of range "
	    "0.1-86400\n");
	/* Reported once, in defaults, not again in every host. */
	expect_errors(
	    "defaults: { backoff_max = 0.5; };\n"
	    "hosts: { a: { }; b: { }; };\n",
	    "t.conf:1: defaults: backoff_max: 0.5 is less than "
	    "backoff_initial (1); it must be at least that\n");
}

/* A host's address defaults to its name, when that is a host name. */
static void
test_host_address(void **state)
{
	struct conf *conf;

	(void)state;
	conf = expect_ok("hosts: { db-1: { }; v6: { address = \"::1\"; };\n"
	    "v4: { address = \"10.0.0.5\"; };\n"
	    "fq: { address = \"db.example.com.\"; }; };\n");
	assert_string_equal(conf->hosts[0].address, "db-1");
	assert_string_equal(conf->hosts[1].address, "::1");
	assert_string_equal(conf->hosts[2].address, "10.0.0.5");
	assert_string_equal(conf->hosts[3].address, "db.example.com.");
	conf_free(conf);
	expect_errors("hosts: {\n  my_db: { };\n  x: { address = \"[::1]\"; };\n"
	    "};\n",
	    "t.conf:2: host \"my_db\": address: missing, and the host's name "
	    "\"my_db\" is not a host name (set address)\n"
	    "t.conf:3: host \"x\": address: \"[::1]\" is not a valid host name "
	    "or address (use letters, digits, hyphens and dots, or an IP "
	    "address)\n");
}

/* Host names follow the name rule; a host must be a group. */
static void
test_host_names(void **state)
{
	char text[512];

	(void)state;
	expect_errors("hosts: {\n  a*b: { address = \"x\"; };\n  h = 1;\n};\n",
	    "t.conf:2: host \"a*b\": \"a*b\" is not a valid host name (use "
	    "1-64 characters from A-Z a-z 0-9 _ . -)\n"
	    "t.conf:3: host \"h\": must be a group ({ address = \"...\"; ... "
	    "})\n");
	snprintf(text, sizeof(text), "hosts: { %s: { address = \"x\"; }; };\n",
	    "a123456789b123456789c123456789d123456789e123456789f123456789ghijk");
	expect_errors(text, "t.conf:1: host \"a123456789b123456789c123456789d1"
	    "23456789e123456789f123456789ghijk\": \"a123456789b123456789c12345"
	    "6789d123456789e123456789f123456789ghijk\" is not a valid host "
	    "name (use 1-64 characters from A-Z a-z 0-9 _ . -)\n");
	/* 64 characters are fine. */
	snprintf(text, sizeof(text), "hosts: { %s: { address = \"x\"; }; };\n",
	    "a123456789b123456789c123456789d123456789e123456789f123456789ghij");
	conf_free(expect_ok(text));
}

/* Settings in the wrong block say where they belong. */
static void
test_misplaced(void **state)
{
	(void)state;
	expect_errors(
	    "defaults: { address = \"x\"; jump = \"y\"; listen = \"1\"; "
	    "listn = 1; };\n"
	    "hosts: { h: { address = \"127.0.0.1\"; connect_wait = 5; "
	    "target = \"a:1\"; enabled = true; }; };\n"
	    "tunnels = ( { name = \"t\"; type = \"local\"; via = \"h\"; "
	    "listen = \"1\"; target = \"a:1\"; port = 22; address = \"x\"; "
	    "user = \"u\"; listn = \"2\"; } );\n",
	    "t.conf:1: defaults: address: belongs in a host, not in defaults\n"
	    "t.conf:1: defaults: jump: belongs in a host, not in defaults\n"
	    "t.conf:1: defaults: listen: belongs in a tunnel, not in "
	    "defaults\n"
	    "t.conf:1: defaults: unknown setting \"listn\" (allowed: "
	    ALLOWED_DEFAULTS ")\n"
	    "t.conf:2: host \"h\": connect_wait: belongs in a tunnel or in "
	    "defaults, not in a host\n"
	    "t.conf:2: host \"h\": target: belongs in a tunnel, not in a host\n"
	    "t.conf:2: host \"h\": enabled: belongs in a tunnel or in "
	    "defaults, not in a host\n"
	    "t.conf:3: tunnel \"t\": port: belongs in a host or in defaults, "
	    "not in a tunnel\n"
	    "t.conf:3: tunnel \"t\": address: belongs in a host, not in a "
	    "tunnel\n"
	    "t.conf:3: tunnel \"t\": user: belongs in a host or in defaults, "
	    "not in a tunnel\n"
	    "t.conf:3: tunnel \"t\": unknown setting \"listn\" (allowed: "
	    ALLOWED_TUNNEL ")\n");
}

/* jump: chains of any depth; loops and unknown hosts refused. */
static void
test_jump(void **state)
{
	const struct host_conf	*h;
	struct conf		*conf;

	(void)state;
	conf = expect_ok(
	    "hosts: {\n"
	    "  relay: { address = \"r\"; };\n"
	    "  mid: { address = \"m\"; jump = \"relay\"; };\n"
	    "  db: { address = \"d\"; jump = \"mid\"; };\n"
	    "};\n");
	assert_non_null(h = conf_host(conf, "db"));
	assert_string_equal(h->jump, "mid");
	assert_non_null(h = conf_host(conf, "mid"));
	assert_string_equal(h->jump, "relay");
	assert_non_null(h = conf_host(conf, "relay"));
	assert_string_equal(h->jump, "");
	conf_free(conf);
	expect_errors(
	    "hosts: {\n"
	    "  a: { jump = \"b\"; };\n"
	    "  b: { jump = \"c\"; };\n"
	    "  c: { jump = \"a\"; };\n"
	    "  d: { jump = \"a\"; };\n"
	    "  e: { jump = \"e\"; };\n"
	    "  f: { jump = \"nope\"; };\n"
	    "  g: { jump = \"bad name\"; };\n"
	    "  x: { jump = \"y\"; };\n"
	    "  y: { jump = \"x\"; };\n"
	    "};\n",
	    "t.conf:2: host \"a\": jump: loop a -> b -> c -> a (a jump chain "
	    "must end at a host without jump)\n"
	    "t.conf:6: host \"e\": jump: \"e\" is this host itself (must name "
	    "another host in hosts)\n"
	    "t.conf:7: host \"f\": jump: unknown host \"nope\" (must name "
	    "another host in hosts)\n"
	    "t.conf:8: host \"g\": jump: unknown host \"bad name\" (must name "
	    "another host in hosts)\n"
	    "t.conf:9: host \"x\": jump: loop x -> y -> x (a jump chain must "
	    "end at a host without jump)\n");
}

/* Required tunnel settings. */
static void
test_tunnel_required(void **state)
{
	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { },\n"
	    "  { name = \"t\"; },\n"
	    "  { name = \"d\"; type = \"dynamic\"; via = \"h\"; },\n"
	    "  { name = \"l\"; type = \"local\"; via = \"h\"; listen = \"1\"; },\n"
	    "  { name = \"r\"; type = \"remote\"; via = \"h\"; listen = \"2\"; },\n"
	    "  { name = \"rd\"; type = \"remote-dynamic\"; via = \"h\"; },\n"
	    "  5\n"
	    ");\n",
	    "t.conf:3: tunnel #1: name: missing (" NAME_RULE ")\n"
	    "t.conf:3: tunnel #1: type: missing (use local, remote, dynamic or "
	    "remote-dynamic)\n"
	    "t.conf:3: tunnel #1: via: missing (must name a host in hosts)\n"
	    "t.conf:3: tunnel #1: listen: missing (use " LISTEN_FORMS ")\n"
	    "t.conf:4: tunnel \"t\": type: missing (use local, remote, dynamic "
	    "or remote-dynamic)\n"
	    "t.conf:4: tunnel \"t\": via: missing (must name a host in hosts)\n"
	    "t.conf:4: tunnel \"t\": listen: missing (use " LISTEN_FORMS ")\n"
	    "t.conf:5: tunnel \"d\": listen: missing (use " LISTEN_FORMS ")\n"
	    "t.conf:6: tunnel \"l\": target: missing (a local tunnel needs "
	    TARGET_FORMS ")\n"
	    "t.conf:7: tunnel \"r\": target: missing (a remote tunnel needs "
	    TARGET_FORMS ")\n"
	    "t.conf:8: tunnel \"rd\": listen: missing (use "
	    REMOTE_LISTEN_FORMS ")\n"
	    "t.conf:9: tunnel #7: must be a group ({ name = \"...\"; ... })\n");
}

/* Tunnel names: the rule, and unique. */
static void
test_tunnel_name(void **state)
{
	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { name = \"pg\"; type = \"local\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"pg\"; type = \"local\"; via = \"h\"; listen = \"2\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"bad name\"; type = \"local\"; via = \"h\";"
	    " listen = \"3\"; target = \"x:1\"; },\n"
	    "  { name = 5; type = \"local\"; via = \"h\"; listen = \"4\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"a\\nb\"; type = \"local\"; via = \"h\"; listen = \"5\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"\"; type = \"local\"; via = \"h\"; listen = \"6\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"a123456789b123456789c123456789d123456789e123456789"
	    "f123456789ghijk\"; type = \"local\"; via = \"h\"; listen = \"7\";"
	    " target = \"x:1\"; }\n"
	    ");\n",
	    "t.conf:4: tunnel \"pg\": name: \"pg\" is also the name of the "
	    "tunnel on line 3 (names must be unique)\n"
	    "t.conf:5: tunnel #3: name: \"bad name\" is not a valid name ("
	    NAME_RULE ")\n"
	    "t.conf:6: tunnel #4: name: must be a string (" NAME_RULE ")\n"
	    "t.conf:7: tunnel #5: name: \"a\\x0ab\" is not a valid name ("
	    NAME_RULE ")\n"
	    "t.conf:8: tunnel #6: name: \"\" is not a valid name (" NAME_RULE
	    ")\n"
	    "t.conf:9: tunnel #7: name: \"a123456789b123456789c123456789d12345"
	    "6789e123456789f123456789ghijk\" is not a valid name (" NAME_RULE
	    ")\n");
}

/* Tunnel types: unknown, not a string; every kind loads. */
static void
test_tunnel_type(void **state)
{
	struct conf *conf;

	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"locl\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = 1; via = \"h\"; listen = \"2\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"c\"; type = \"Remote\"; via = \"h\"; listen = \"3\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"d\"; type = \"jump\"; via = \"h\";"
	    " listen = \"4\"; },\n"
	    "  { name = \"e\"; type = \"remote_dynamic\"; via = \"h\";"
	    " listen = \"5\"; }\n"
	    ");\n",
	    "t.conf:3: tunnel \"a\": type: \"locl\" is not one of local, "
	    "remote, dynamic, remote-dynamic\n"
	    "t.conf:4: tunnel \"b\": type: must be a string (local, remote, "
	    "dynamic or remote-dynamic)\n"
	    "t.conf:5: tunnel \"c\": type: \"Remote\" is not one of local, "
	    "remote, dynamic, remote-dynamic\n"
	    "t.conf:6: tunnel \"d\": type: \"jump\" is not one of local, "
	    "remote, dynamic, remote-dynamic\n"
	    "t.conf:7: tunnel \"e\": type: \"remote_dynamic\" is not one of "
	    "local, remote, dynamic, remote-dynamic\n");
	conf = expect_ok(H
	    "tunnels = (\n"
	    "  { name = \"l\"; type = \"local\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"r\"; type = \"remote\"; via = \"h\"; listen = \"2\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"d\"; type = \"dynamic\"; via = \"h\";"
	    " listen = \"3\"; },\n"
	    "  { name = \"rd\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"4\"; }\n"
	    ");\n");
	assert_int_equal(conf->ntunnels, 4);
	assert_int_equal(conf->tunnels[0].type, TUNNEL_LOCAL);
	assert_int_equal(conf->tunnels[1].type, TUNNEL_REMOTE);
	assert_string_equal(conf->tunnels[1].target.host, "x");
	assert_int_equal(conf->tunnels[1].target.port, 1);
	assert_int_equal(conf->tunnels[2].type, TUNNEL_DYNAMIC);
	assert_int_equal(conf->tunnels[2].listen.port, 3);
	assert_int_equal(conf->tunnels[3].type, TUNNEL_REMOTE_DYNAMIC);
	assert_int_equal(conf->tunnels[3].listen.port, 4);
	conf_free(conf);
}

/* via names a host. */
static void
test_via(void **state)
{
	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"local\"; via = \"db\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"local\"; via = 1; listen = \"2\";"
	    " target = \"x:1\"; }\n"
	    ");\n",
	    "t.conf:3: tunnel \"a\": via: unknown host \"db\" (must name a host "
	    "in hosts)\n"
	    "t.conf:4: tunnel \"b\": via: must be a string (the name of a host "
	    "in hosts)\n");
	expect_errors(
	    "tunnels = ( { name = \"a\"; type = \"local\"; via = \"h\";"
	    " listen = \"1\"; target = \"x:1\"; } );\n",
	    "t.conf:1: tunnel \"a\": via: unknown host \"h\" (must name a host "
	    "in hosts)\n");
}

/* listen, through the loader: endpoint_parse's messages, prefixed. */
static void
test_listen(void **state)
{
	struct conf *conf;

	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"local\"; via = \"h\";"
	    " listen = \"[::1\"; target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"local\"; via = \"h\";"
	    " listen = \"foo bar:80\"; target = \"x:1\"; },\n"
	    "  { name = \"c\"; type = \"local\"; via = \"h\";"
	    " listen = \"run/x.sock\"; target = \"x:1\"; },\n"
	    "  { name = \"d\"; type = \"local\"; via = \"h\";"
	    " listen = 9000; target = \"x:1\"; },\n"
	    "  { name = \"e\"; type = \"local\"; via = \"h\";"
	    " listen = \"0\"; target = \"x:1\"; },\n"
	    "  { name = \"f\"; type = \"local\"; via = \"h\";"
	    " listen = \"::1:9000\"; target = \"x:1\"; }\n"
	    ");\n",
	    "t.conf:3: tunnel \"a\": listen: \"[::1\" has no closing bracket\n"
	    "t.conf:4: tunnel \"b\": listen: \"foo bar\" is not a valid listen "
	    "address (use *, localhost, an IPv4 address or [IPV6]; a listen "
	    "address is never looked up in DNS)\n"
	    "t.conf:5: tunnel \"c\": listen: \"run/x.sock\" is a relative path "
	    "(a UNIX socket path must be absolute)\n"
	    "t.conf:6: tunnel \"d\": listen: must be a string (" LISTEN_FORMS
	    ")\n"
	    "t.conf:7: tunnel \"e\": listen: port 0 is out of range 1-65535\n"
	    "t.conf:8: tunnel \"f\": listen: \"::1:9000\" looks like an IPv6 "
	    "address without brackets (write [IPV6]:PORT, e.g. [::1]:9000)\n");
	conf = expect_ok(H
	    "tunnels = ( { name = \"a\"; type = \"local\"; via = \"h\";"
	    " listen = \"[::]:9000\"; target = \"x:1\"; } );\n");
	assert_string_equal(conf->tunnels[0].listen.host, "::");
	conf_free(conf);
}

/* Remote listeners: TCP only, port 0 allowed, addresses never looked up. */
static void
test_remote_listen(void **state)
{
	struct conf	*conf;
	int		 i;

	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"remote\"; via = \"h\";"
	    " listen = \"/run/x.sock\"; target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"/run/y.sock\"; },\n"
	    "  { name = \"c\"; type = \"remote\"; via = \"h\";"
	    " listen = \"0\"; target = \"/run/app.sock\"; },\n"
	    "  { name = \"d\"; type = \"remote\"; via = \"h\";"
	    " listen = \"*:70000\"; target = \"x:1\"; },\n"
	    "  { name = \"e\"; type = \"remote\"; via = \"h\";"
	    " listen = \"relay.example.com:80\"; target = \"x:1\"; },\n"
	    "  { name = \"f\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"localhost\"; },\n"
	    "  { name = \"g\"; type = \"remote\"; via = \"h\";"
	    " listen = 8000; target = \"x:1\"; }\n"
	    ");\n",
	    "t.conf:3: tunnel \"a\": listen: a remote tunnel listens on the "
	    "server, which can only be asked for TCP (use PORT, ADDR:PORT, "
	    "[IPV6]:PORT or *:PORT)\n"
	    "t.conf:4: tunnel \"b\": listen: a remote-dynamic tunnel listens "
	    "on the server, which can only be asked for TCP (use PORT, "
	    "ADDR:PORT, [IPV6]:PORT or *:PORT)\n"
	    "t.conf:6: tunnel \"d\": listen: port 70000 is out of range "
	    "0-65535\n"
	    "t.conf:7: tunnel \"e\": listen: \"relay.example.com\" is not a "
	    "valid listen address (use *, localhost, an IPv4 address or "
	    "[IPV6]; a listen address is never looked up in DNS)\n"
	    "t.conf:8: tunnel \"f\": listen: \"localhost\" has no port (use "
	    REMOTE_LISTEN_FORMS ")\n"
	    "t.conf:9: tunnel \"g\": listen: must be a string ("
	    REMOTE_LISTEN_FORMS ")\n");

	/* Every form a remote listener takes, as it is kept. */
	conf = expect_ok(H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"remote\"; via = \"h\";"
	    " listen = \"0\"; target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"remote\"; via = \"h\";"
	    " listen = \"*:8000\"; target = \"x:1\"; },\n"
	    "  { name = \"c\"; type = \"remote\"; via = \"h\";"
	    " listen = \"[::1]:0\"; target = \"[::1]:22\"; },\n"
	    "  { name = \"d\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"localhost:8001\"; },\n"
	    "  { name = \"e\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"192.0.2.1:8002\"; },\n"
	    "  { name = \"f\"; type = \"remote\"; via = \"h\";"
	    " listen = \"*:0\"; target = \"/run/app.sock\"; }\n"
	    ");\n");
	assert_int_equal(conf->ntunnels, 6);
	assert_string_equal(conf->tunnels[0].listen.host, "");
	assert_int_equal(conf->tunnels[0].listen.port, 0);
	assert_string_equal(conf->tunnels[1].listen.host, "*");
	assert_int_equal(conf->tunnels[1].listen.port, 8000);
	assert_string_equal(conf->tunnels[2].listen.host, "::1");
	assert_int_equal(conf->tunnels[2].listen.port, 0);
	assert_string_equal(conf->tunnels[3].listen.host, "localhost");
	assert_int_equal(conf->tunnels[3].listen.port, 8001);
	assert_string_equal(conf->tunnels[4].listen.host, "192.0.2.1");
	assert_int_equal(conf->tunnels[5].listen.port, 0);
	assert_int_equal(conf->tunnels[5].target.is_unix, 1);
	for (i = 0; i < conf->ntunnels; i++)
		assert_int_equal(conf->tunnels[i].listen.is_unix, 0);
	conf_free(conf);
}

/* target: required for local and remote, refused for the dynamic kinds. */
static void
test_target(void **state)
{
	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"dynamic\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"2\"; target = \"x:1\"; },\n"
	    "  { name = \"c\"; type = \"local\"; via = \"h\"; listen = \"3\";"
	    " target = \"foo\"; },\n"
	    "  { name = \"d\"; type = \"local\"; via = \"h\"; listen = \"4\";"
	    " target = \"*:80\"; },\n"
	    "  { name = \"e\"; type = \"local\"; via = \"h\"; listen = \"5\";"
	    " target = 80; },\n"
	    "  { name = \"f\"; type = \"local\"; via = \"h\"; listen = \"6\";"
	    " target = \"x:0\"; },\n"
	    "  { name = \"g\"; type = \"local\"; via = \"h\"; listen = \"7\";"
	    " target = \"9000\"; },\n"
	    "  { name = \"i\"; type = \"remote\"; via = \"h\"; listen = \"8\";"
	    " target = \"run/app.sock\"; },\n"
	    "  { name = \"j\"; type = \"remote\"; via = \"h\"; listen = \"9\";"
	    " target = \"x:0\"; }\n"
	    ");\n",
	    "t.conf:3: tunnel \"a\": target: a dynamic tunnel takes no target\n"
	    "t.conf:4: tunnel \"b\": target: a dynamic tunnel takes no target\n"
	    "t.conf:5: tunnel \"c\": target: \"foo\" has no port (use "
	    TARGET_FORMS ")\n"
	    "t.conf:6: tunnel \"d\": target: \"*\" is only allowed in a listen "
	    "address (use " TARGET_FORMS ")\n"
	    "t.conf:7: tunnel \"e\": target: must be a string (" TARGET_FORMS
	    ")\n"
	    "t.conf:8: tunnel \"f\": target: port 0 is out of range 1-65535\n"
	    "t.conf:9: tunnel \"g\": target: \"9000\" has no host (use "
	    TARGET_FORMS ")\n"
	    "t.conf:10: tunnel \"i\": target: \"run/app.sock\" is a relative "
	    "path (a UNIX socket path must be absolute)\n"
	    "t.conf:11: tunnel \"j\": target: port 0 is out of range "
	    "1-65535\n");
}

/* enabled and connect_wait. */
static void
test_enabled_connect_wait(void **state)
{
	(void)state;
	expect_errors(
	    "defaults: { connect_wait = 4000; };\n" H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"local\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; enabled = \"no\"; },\n"
	    "  { name = \"b\"; type = \"local\"; via = \"h\"; listen = \"2\";"
	    " target = \"x:1\"; connect_wait = 3601; },\n"
	    "  { name = \"c\"; type = \"local\"; via = \"h\"; listen = \"3\";"
	    " target = \"x:1\"; connect_wait = -1; },\n"
	    "  { name = \"d\"; type = \"local\"; via = \"h\"; listen = \"4\";"
	    " target = \"x:1\"; connect_wait = \"5\"; }\n"
	    ");\n",
	    "t.conf:1: defaults: connect_wait: 4000 is out of range 0-3600\n"
	    "t.conf:4: tunnel \"a\": enabled: must be true or false\n"
	    "t.conf:5: tunnel \"b\": connect_wait: 3601 is out of range "
	    "0-3600\n"
	    "t.conf:6: tunnel \"c\": connect_wait: -1 is out of range 0-3600\n"
	    "t.conf:7: tunnel \"d\": connect_wait: must be an integer "
	    "(0-3600)\n");
}

/* enabled in defaults: every tunnel inherits it, a tunnel's own wins. */
static void
test_defaults_enabled(void **state)
{
	struct conf *conf;

	(void)state;
	conf = expect_ok(
	    "defaults: { enabled = false; };\n" H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"local\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"local\"; via = \"h\"; listen = \"2\";"
	    " target = \"x:1\"; enabled = true; },\n"
	    "  { name = \"c\"; type = \"local\"; via = \"h\"; listen = \"3\";"
	    " target = \"x:1\"; enabled = false; }\n"
	    ");\n");
	assert_int_equal(conf->ntunnels, 3);
	assert_int_equal(conf->tunnels[0].enabled, 0);
	assert_int_equal(conf->tunnels[1].enabled, 1);
	assert_int_equal(conf->tunnels[2].enabled, 0);
	conf_free(conf);

	conf = expect_ok(
	    "defaults: { enabled = true; connect_wait = 3; };\n" H
	    "tunnels = ( { name = \"a\"; type = \"local\"; via = \"h\"; "
	    "listen = \"1\"; target = \"x:1\"; enabled = false; },\n"
	    "  { name = \"b\"; type = \"local\"; via = \"h\"; "
	    "listen = \"2\"; target = \"x:1\"; } );\n");
	assert_int_equal(conf->tunnels[0].enabled, 0);
	assert_int_equal(conf->tunnels[1].enabled, 1);
	assert_int_equal(conf->tunnels[1].connect_wait, 3);
	conf_free(conf);

	/* A bad value is an error; the tunnel-only keys stay refused. */
	expect_errors(
	    "defaults: { enabled = \"no\"; name = \"x\"; type = \"local\";\n"
	    "  via = \"h\"; listen = \"1\"; target = \"x:1\"; };\n" H,
	    "t.conf:1: defaults: enabled: must be true or false\n"
	    "t.conf:1: defaults: name: belongs in a tunnel, not in defaults\n"
	    "t.conf:1: defaults: type: belongs in a tunnel, not in defaults\n"
	    "t.conf:2: defaults: via: belongs in a tunnel, not in defaults\n"
	    "t.conf:2: defaults: listen: belongs in a tunnel, not in defaults\n"
	    "t.conf:2: defaults: target: belongs in a tunnel, not in "
	    "defaults\n");
}

/* max_connections: 1-1000000, 4096 by default, in defaults or a tunnel. */
static void
test_max_connections(void **state)
{
	struct conf *conf;

	(void)state;
	/* The bounds are allowed; defaults reach every kind; a tunnel wins. */
	conf = expect_ok(
	    "defaults: { max_connections = 1000000; };\n" H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"local\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"remote\"; via = \"h\"; listen = \"2\";"
	    " target = \"x:1\"; max_connections = 1; },\n"
	    "  { name = \"c\"; type = \"dynamic\"; via = \"h\"; listen = \"3\";"
	    " max_connections = 100L; },\n"
	    "  { name = \"d\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"4\"; }\n"
	    ");\n");
	assert_int_equal(conf->tunnels[0].max_connections, 1000000);
	assert_int_equal(conf->tunnels[1].max_connections, 1);
	assert_int_equal(conf->tunnels[2].max_connections, 100);
	assert_int_equal(conf->tunnels[3].max_connections, 1000000);
	conf_free(conf);

	/* Without defaults: 4096 for every kind. */
	conf = expect_ok(H
	    "tunnels = (\n"
	    "  { name = \"c\"; type = \"dynamic\"; via = \"h\";"
	    " listen = \"3\"; },\n"
	    "  { name = \"d\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"4\"; max_connections = 4096; }\n"
	    ");\n");
	assert_int_equal(conf->tunnels[0].max_connections, 4096);
	assert_int_equal(conf->tunnels[1].max_connections, 4096);
	conf_free(conf);

	expect_errors(
	    "defaults: { max_connections = 0; };\n"
	    "hosts: { h: { address = \"127.0.0.1\";"
	    " max_connections = 10; }; };\n"
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"local\"; via = \"h\"; listen = \"1\";"
	    " target = \"x:1\"; max_connections = 1000001; },\n"
	    "  { name = \"b\"; type = \"remote\"; via = \"h\"; listen = \"2\";"
	    " target = \"x:1\"; max_connections = -1; },\n"
	    "  { name = \"c\"; type = \"dynamic\"; via = \"h\"; listen = \"3\";"
	    " max_connections = \"10\"; },\n"
	    "  { name = \"d\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"4\"; max_connections = 1.5; },\n"
	    "  { name = \"e\"; type = \"local\"; via = \"h\"; listen = \"5\";"
	    " target = \"x:1\"; max_connections = 4294967297; },\n"
	    "  { name = \"f\"; type = \"local\"; via = \"h\"; listen = \"6\";"
	    " target = \"x:1\"; max_connections = true; }\n"
	    ");\n",
	    "t.conf:1: defaults: max_connections: 0 is out of range "
	    "1-1000000\n"
	    "t.conf:2: host \"h\": max_connections: belongs in a tunnel or in "
	    "defaults, not in a host\n"
	    "t.conf:4: tunnel \"a\": max_connections: 1000001 is out of range "
	    "1-1000000\n"
	    "t.conf:5: tunnel \"b\": max_connections: -1 is out of range "
	    "1-1000000\n"
	    "t.conf:6: tunnel \"c\": max_connections: must be an integer "
	    "(1-1000000)\n"
	    "t.conf:7: tunnel \"d\": max_connections: must be an integer "
	    "(1-1000000)\n"
	    "t.conf:8: tunnel \"e\": max_connections: 4294967297 is out of "
	    "range 1-1000000\n"
	    "t.conf:9: tunnel \"f\": max_connections: must be an integer "
	    "(1-1000000)\n");
	expect_errors("defaults: { max_connections = 1000001; };\n",
	    "t.conf:1: defaults: max_connections: 1000001 is out of range "
	    "1-1000000\n");
}

/* Two tunnels may not listen on one place on the same side. */
static void
test_listen_clash(void **state)
{
	(void)state;
	expect_errors(H
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"local\"; via = \"h\";"
	    " listen = \"127.0.0.1:9000\"; target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"local\"; via = \"h\";"
	    " listen = \"9000\"; target = \"x:1\"; },\n"
	    "  { name = \"c\"; type = \"local\"; via = \"h\";"
	    " listen = \"*:9001\"; target = \"x:1\"; },\n"
	    "  { name = \"d\"; type = \"local\"; via = \"h\";"
	    " listen = \"[::1]:9001\"; target = \"x:1\"; },\n"
	    "  { name = \"e\"; type = \"local\"; via = \"h\";"
	    " listen = \"localhost:9002\"; target = \"x:1\"; },\n"
	    "  { name = \"f\"; type = \"local\"; via = \"h\";"
	    " listen = \"[::1]:9002\"; target = \"x:1\"; },\n"
	    "  { name = \"g\"; type = \"local\"; via = \"h\";"
	    " listen = \"/tmp/s\"; target = \"x:1\"; },\n"
	    "  { name = \"i\"; type = \"local\"; via = \"h\";"
	    " listen = \"/tmp/s\"; target = \"x:1\"; enabled = false; },\n"
	    "  { name = \"j\"; type = \"local\"; via = \"h\";"
	    " listen = \"127.0.0.2:9000\"; target = \"x:1\"; },\n"
	    "  { name = \"k\"; type = \"local\"; via = \"h\";"
	    " listen = \"[::1]:9003\"; target = \"x:1\"; },\n"
	    "  { name = \"l\"; type = \"local\"; via = \"h\";"
	    " listen = \"[::1]:9004\"; target = \"x:1\"; },\n"
	    "  { name = \"m\"; type = \"dynamic\"; via = \"h\";"
	    " listen = \"[::1]:9004\"; }\n"
	    ");\n",
	    "t.conf:4: tunnel \"b\": listen: 127.0.0.1:9000 is also used by "
	    "tunnel \"a\" (line 3)\n"
	    "t.conf:6: tunnel \"d\": listen: [::1]:9001 overlaps *:9001 of "
	    "tunnel \"c\" (line 5)\n"
	    "t.conf:8: tunnel \"f\": listen: [::1]:9002 overlaps "
	    "localhost:9002 of tunnel \"e\" (line 7)\n"
	    "t.conf:10: tunnel \"i\": listen: /tmp/s is also used by tunnel "
	    "\"g\" (line 9)\n"
	    "t.conf:14: tunnel \"m\": listen: [::1]:9004 is also used by "
	    "tunnel \"l\" (line 13)\n");
	/* Remote listeners clash only on the same server, never at port 0. */
	expect_errors(
	    "hosts: { h: { address = \"127.0.0.1\"; }; "
	    "h2: { address = \"127.0.0.2\"; }; };\n"
	    "tunnels = (\n"
	    "  { name = \"r1\"; type = \"remote\"; via = \"h\";"
	    " listen = \"8000\"; target = \"x:1\"; },\n"
	    "  { name = \"r2\"; type = \"remote\"; via = \"h\";"
	    " listen = \"127.0.0.1:8000\"; target = \"x:1\"; },\n"
	    "  { name = \"r3\"; type = \"remote\"; via = \"h2\";"
	    " listen = \"8000\"; target = \"x:1\"; },\n"
	    "  { name = \"l1\"; type = \"local\"; via = \"h\";"
	    " listen = \"8000\"; target = \"x:1\"; },\n"
	    "  { name = \"r4\"; type = \"remote\"; via = \"h\";"
	    " listen = \"0\"; target = \"x:1\"; },\n"
	    "  { name = \"r5\"; type = \"remote\"; via = \"h\";"
	    " listen = \"0\"; target = \"x:1\"; },\n"
	    "  { name = \"r6\"; type = \"remote-dynamic\"; via = \"h\";"
	    " listen = \"*:8000\"; },\n"
	    "  { name = \"r7\"; type = \"remote-dynamic\"; via = \"h2\";"
	    " listen = \"*:8001\"; },\n"
	    "  { name = \"d1\"; type = \"dynamic\"; via = \"h2\";"
	    " listen = \"*:8001\"; }\n"
	    ");\n",
	    "t.conf:4: tunnel \"r2\": listen: 127.0.0.1:8000 is also used by "
	    "tunnel \"r1\" (line 3)\n"
	    "t.conf:9: tunnel \"r6\": listen: *:8000 overlaps 127.0.0.1:8000 "
	    "of tunnel \"r1\" (line 3)\n");
	/*
	 * One port on two addresses of one server: the server names only
	 * the port of a forwarded connection, so it could reach the wrong
	 * tunnel. Refused; other ports and other servers are fine.
	 */
	expect_errors(
	    "hosts: { h: { address = \"127.0.0.1\"; }; "
	    "h2: { address = \"127.0.0.2\"; }; };\n"
	    "tunnels = (\n"
	    "  { name = \"a\"; type = \"remote\"; via = \"h\";"
	    " listen = \"127.0.0.1:8100\"; target = \"x:1\"; },\n"
	    "  { name = \"b\"; type = \"remote\"; via = \"h\";"
	    " listen = \"10.1.2.3:8100\"; target = \"x:2\"; },\n"
	    "  { name = \"c\"; type = \"remote\"; via = \"h2\";"
	    " listen = \"10.1.2.3:8100\"; target = \"x:2\"; },\n"
	    "  { name = \"d\"; type = \"remote\"; via = \"h\";"
	    " listen = \"10.1.2.3:8101\"; target = \"x:2\"; }\n"
	    ");\n",
	    "t.conf:4: tunnel \"b\": listen: port 8100 is also asked of host "
	    "h by tunnel \"a\" (line 3, 127.0.0.1:8100); the server names "
	    "only the port of a forwarded connection, so two remote tunnels "
	    "via one host need different ports\n");
}

/* Integers libconfig 1.5 would cut to 32 bits silently are refused. */
static void
test_big_integers(void **state)
{
	struct conf *conf;

	(void)state;
	expect_errors(
	    "hosts: {\n"
	    "  h: { address = \"a\"; port = 4294967297; };\n"
	    "  i: { address = \"b\"; connect_timeout = 99999999999; "
	    "keepalive_interval = 5; };\n"
	    "  j: { address = \"c\"; backoff_max = 0x100000000; };\n"
	    "  k: { address = \"d\"; port = 2147483648; # port = 99999999999\n"
	    "  user = \"99999999999\"; };\n"
	    "};\n"
	    "weird = 99999999999;\n"
	    "tunnels = ( { name = \"t\"; type = \"local\"; via = \"h\";"
	    " listen = \"1\"; target = \"a:1\"; connect_wait = -99999999999; }"
	    " );\n"
	    "/* 99999999999 */\n",
	    "t.conf:2: host \"h\": port: 4294967297 is out of range 1-65535\n"
	    "t.conf:3: host \"i\": connect_timeout: 99999999999 is out of range "
	    "1-3600\n"
	    "t.conf:4: host \"j\": backoff_max: 0x100000000 is out of range "
	    "0.1-86400\n"
	    "t.conf:5: host \"k\": port: 2147483648 is out of range 1-65535\n"
	    "t.conf:8: unknown setting \"weird\" (allowed: " ALLOWED_TOP ")\n"
	    "t.conf:8: weird: 99999999999 is too large for an integer (at most "
	    "2147483647)\n"
	    "t.conf:9: tunnel \"t\": connect_wait: -99999999999 is out of "
	    "range 0-3600\n");
	conf = expect_ok("hosts: { h: { port = 0x16; connect_timeout = "
	    "3600L; }; };\n# 99999999999\ndaemon: { control_group = \"99999999999\"; };\n"
	    "version = 1; // 99999999999\n");
	assert_int_equal(conf->hosts[0].port, 22);
	assert_int_equal(conf->hosts[0].connect_timeout, 3600);
	conf_free(conf);
}

/* Every error of a file is reported, in line order, counted. */
static void
test_many_errors(void **state)
{
	(void)state;
	expect_errors(
	    "tunnels = (\n"
	    "  { name = \"pg\"; type = \"local\"; via = \"db\";"
	    " listen = \"127.0.0.1:99999\"; target = \"db:5432\"; listn = 1; },\n"
	    "  { name = \"pg\"; type = \"remote\"; via = \"db\";"
	    " listen = \"8000\"; target = \"x\"; max_connections = 0; }\n"
	    ");\n"
	    "version = 2;\n"
	    "daemon: { log_level = \"loud\"; };\n"
	    "hosts: {\n"
	    "  db: { port = 99999; jump = \"relay\"; };\n"
	    "  relay: { jump = \"db\"; host_key_policy = \"off\"; };\n"
	    "};\n",
	    "t.conf:2: tunnel \"pg\": unknown setting \"listn\" (allowed: "
	    ALLOWED_TUNNEL ")\n"
	    "t.conf:2: tunnel \"pg\": listen: port 99999 is out of range "
	    "1-65535\n"
	    "t.conf:3: tunnel \"pg\": name: \"pg\" is also the name of the "
	    "tunnel on line 2 (names must be unique)\n"
	    "t.conf:3: tunnel \"pg\": target: \"x\" has no port (use "
	    TARGET_FORMS ")\n"
	    "t.conf:3: tunnel \"pg\": max_connections: 0 is out of range "
	    "1-1000000\n"
	    "t.conf:5: version: 2 is not supported (this tunneld reads version "
	    "1)\n"
	    "t.conf:6: daemon: log_level: \"loud\" is not one of error, "
	    "warning, notice, info, debug\n"
	    "t.conf:8: host \"db\": port: 99999 is out of range 1-65535\n"
	    "t.conf:8: host \"db\": jump: loop db -> relay -> db (a jump chain "
	    "must end at a host without jump)\n"
	    "t.conf:9: host \"relay\": host_key_policy: \"off\" is not allowed "
	    "(use strict or accept-new)\n");
}

/* text must be refused with one error that starts with want, and whose
 * list of supported ciphers (asked of libssh) names the usual ones. */
static void
expect_cipher_error(const char *text, const char *want)
{
	struct conf	*conf = (struct conf *)1;
	char		*errs = NULL;
	const char	*list;

	assert_int_equal(load_text(text, &conf, &errs), 1);
	assert_null(conf);
	assert_non_null(errs);
	if (strncmp(errs, want, strlen(want)) != 0)
		fail_msg("got:\n%swant a line starting:\n%s", errs, want);
	list = errs + strlen(want);
	assert_non_null(strstr(list, "aes128-ctr"));
	assert_non_null(strstr(list, "aes256-gcm@openssh.com"));
	assert_non_null(strstr(list, "chacha20-poly1305@openssh.com"));
	assert_null(strstr(list, "bogus"));
	assert_int_equal(count_lines(errs), 1);
	assert_string_equal(errs + strlen(errs) - 2, ")\n");
	free(errs);
}

/* compression and ciphers: in defaults or a host, inherited, overridden. */
static void
test_compression_ciphers(void **state)
{
	struct conf *conf;

	(void)state;
	conf = expect_ok(
	    "defaults: { compression = true;\n"
	    "  ciphers = \" aes128-ctr ,\taes256-gcm@openssh.com\"; };\n"
	    "hosts: { a: { };\n"
	    "  b: { compression = false;\n"
	    "    ciphers = \"chacha20-poly1305@openssh.com\"; };\n"
	    "  c: { ciphers = \"\"; };\n"
	    "  d: { ciphers = \"aes256-ctr,aes192-ctr,aes128-ctr,"
	    "aes128-gcm@openssh.com\"; }; };\n");
	assert_int_equal(conf->nhosts, 4);
	assert_int_equal(conf->hosts[0].compression, 1);
	assert_string_equal(conf->hosts[0].ciphers,
	    "aes128-ctr,aes256-gcm@openssh.com");
	assert_int_equal(conf->hosts[1].compression, 0);
	assert_string_equal(conf->hosts[1].ciphers,
	    "chacha20-poly1305@openssh.com");
	assert_int_equal(conf->hosts[2].compression, 1);
	assert_string_equal(conf->hosts[2].ciphers, "");	/* libssh's */
	assert_string_equal(conf->hosts[3].ciphers,
	    "aes256-ctr,aes192-ctr,aes128-ctr,aes128-gcm@openssh.com");
	conf_free(conf);

	/* A host's own, without defaults; blanks alone mean "". */
	conf = expect_ok("hosts: { h: { compression = true; "
	    "ciphers = \" \"; }; };\n");
	assert_int_equal(conf->hosts[0].compression, 1);
	assert_string_equal(conf->hosts[0].ciphers, "");
	conf_free(conf);

	/* Names libssh does not know: file, line, the names, the choice. */
	expect_cipher_error(
	    "hosts: {\n"
	    "  h: { address = \"127.0.0.1\";\n"
	    "    ciphers = \"aes128-ctr,bogus-cbc\"; };\n"
	    "};\n",
	    "t.conf:3: host \"h\": ciphers: unknown cipher \"bogus-cbc\" "
	    "(supported: ");
	expect_cipher_error(
	    "defaults: { ciphers = \"AES128-CTR,arcfour,aes128-ctr\"; };\n",
	    "t.conf:1: defaults: ciphers: unknown ciphers \"AES128-CTR\", "
	    "\"arcfour\" (supported: ");
	expect_cipher_error(
	    "defaults: { ciphers = \"+aes128-ctr\"; };\n",
	    "t.conf:1: defaults: ciphers: unknown cipher \"+aes128-ctr\" "
	    "(supported: ");

	/* Wrong types, empty names, none, twice, misplaced. */
	expect_errors(
	    "defaults: { compression = \"yes\"; ciphers = 1; };\n"
	    "hosts: { h: { compression = 1;\n"
	    "  ciphers = [ \"aes128-ctr\" ]; };\n"
	    "  i: { ciphers = \"aes128-ctr,\"; };\n"
	    "  j: { ciphers = \"aes128-ctr,,aes256-ctr, ,\"; };\n"
	    "  k: { ciphers = \"none\"; };\n"
	    "  l: { ciphers = \"aes128-ctr,aes256-ctr,aes128-ctr\"; };\n"
	    "};\n"
	    "tunnels = ( { name = \"t\"; type = \"local\"; via = \"h\";\n"
	    "  listen = \"1\"; target = \"x:1\"; compression = true;\n"
	    "  ciphers = \"aes128-ctr\"; } );\n",
	    "t.conf:1: defaults: compression: must be true or false\n"
	    "t.conf:1: defaults: ciphers: must be a string (cipher names "
	    "separated by commas, or \"\" for libssh's defaults)\n"
	    "t.conf:2: host \"h\": compression: must be true or false\n"
	    "t.conf:3: host \"h\": ciphers: must be a string (cipher names "
	    "separated by commas, or \"\" for libssh's defaults)\n"
	    "t.conf:4: host \"i\": ciphers: \"aes128-ctr,\" has an empty name "
	    "(separate cipher names by single commas)\n"
	    "t.conf:5: host \"j\": ciphers: \"aes128-ctr,,aes256-ctr, ,\" has "
	    "an empty name (separate cipher names by single commas)\n"
	    "t.conf:6: host \"k\": ciphers: \"none\" is not allowed (it would "
	    "turn encryption off)\n"
	    "t.conf:7: host \"l\": ciphers: \"aes128-ctr\" is given twice\n"
	    "t.conf:10: tunnel \"t\": compression: belongs in a host or in "
	    "defaults, not in a tunnel\n"
	    "t.conf:11: tunnel \"t\": ciphers: belongs in a host or in "
	    "defaults, not in a tunnel\n");
}

/* The names tunctl shows for tunnel kinds. */
static void
test_type_names(void **state)
{
	(void)state;
	assert_string_equal(tunnel_type_name(TUNNEL_LOCAL), "local");
	assert_string_equal(tunnel_type_name(TUNNEL_REMOTE), "remote");
	assert_string_equal(tunnel_type_name(TUNNEL_DYNAMIC), "dynamic");
	assert_string_equal(tunnel_type_name(TUNNEL_REMOTE_DYNAMIC),
	    "remote-dynamic");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_defaults_inherited),
		cmocka_unit_test(test_max_window),
		cmocka_unit_test(test_spec),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_relay_examples),
		cmocka_unit_test(test_cannot_read),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_spec_message),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_top_level),
		cmocka_unit_test(test_daemon),
		cmocka_unit_test(test_metrics_listen),
		cmocka_unit_test(test_host_values),
		cmocka_unit_test(test_host_types),
		cmocka_unit_test(test_host_key_policy),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_backoff_order),
		cmocka_unit_test(test_host_address),
		cmocka_unit_test(test_host_names),
		cmocka_unit_test(test_misplaced),
		cmocka_unit_test(test_jump),
		cmocka_unit_test(test_tunnel_required),
		cmocka_unit_test(test_tunnel_name),
		cmocka_unit_test(test_tunnel_type),
		cmocka_unit_test(test_via),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_remote_listen),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_enabled_connect_wait),
		cmocka_unit_test(test_defaults_enabled),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_listen_clash),
		cmocka_unit_test(test_big_integers),
		cmocka_unit_test(test_many_errors),
		cmocka_unit_test(test_compression_ciphers),
		cmocka_unit_test(test_type_names),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
