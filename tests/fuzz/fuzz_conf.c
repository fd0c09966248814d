/*
 * fuzz_conf.c: libFuzzer harness for the configuration loader, conf.c and
 * conf_value.c, on bytes in memory (conf_load_string()).
 *
 * The input is a tunnels.conf. It is loaded from memory and, written to a
 * file of this process (removed after each input), through conf_load() as
 * tunneld -t, tunctl check and reload read it: both must give the same
 * count and the same error text.
 * The errors must be one line each, "PATH:LINE: ...", in printable ASCII
 * (tunneld -t prints them, reload sends them to tunctl); an accepted file
 * must give a configuration that keeps the promises the daemon relies on:
 * valid unique names, every via and jump naming a host, jump chains that
 * end, ports and limits in range, strings NUL-terminated.
 *
 * Inputs with a NUL byte are skipped (conf_read() refuses such a file
 * before libconfig sees it), and so are those with libconfig's @include,
 * which would read files of this machine.
 */
#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tunneld.h"

#define FUZZ_IN_MAX	(64 * 1024)

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "fuzz_conf: %s:%d: invariant failed: %s\n", \
		    __FILE__, __LINE__, #x);				\
		abort();						\
	}								\
} while (0)

#define TERMINATED(a)	(memchr((a), '\0', sizeof(a)) != NULL)

int		 LLVMFuzzerInitialize(int *, char ***);
int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fuzz_errors(const char *, int);
static void	 fuzz_hosts(const struct conf *);
static void	 fuzz_tunnels(const struct conf *);
static void	 fuzz_endpoint(const struct endpoint *, int);

static char	 fuzz_path[64];

/* The file conf_load() reads: this process's own, there only per input. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/fuzz_conf.%ld.conf",
	    (long)getpid());
	return (0);
}

/* n error lines, each "PATH:...", printable. */
static void
fuzz_errors(const char *errors, int n)
{
	const char	*p, *eol;
	size_t		 plen = strlen(fuzz_path);
	int		 lines = 0;

	for (p = errors; *p != '\0'; p = eol + 1) {
		eol = strchr(p, '\n');
		CHECK(eol != NULL);
		CHECK(strncmp(p, fuzz_path, plen) == 0 && p[plen] == ':');
		for (; p < eol; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				fprintf(stderr, "fuzz_conf: byte 0x%02x in "
				    "an error: %s", (unsigned char)*p, errors);
				abort();
			}
		}
		lines++;
	}
	CHECK(lines == n);
}

/* Hosts: names, ports, jump chains that end. */
static void
fuzz_hosts(const struct conf *conf)
{
	const struct host_conf	*hc;
	int			 i, j, k, steps;

	for (i = 0; i < conf->nhosts; i++) {
		hc = &conf->hosts[i];
		CHECK(TERMINATED(hc->name) && valid_name(hc->name));
		CHECK(TERMINATED(hc->address) && hc->address[0] != '\0');
		CHECK(TERMINATED(hc->user) && TERMINATED(hc->ciphers));
		CHECK(TERMINATED(hc->jump));
		CHECK(hc->port >= 1 && hc->port <= 65535);
		CHECK(hc->nidentity >= 0 &&
		    hc->nidentity <= CONF_MAX_IDENTITIES);
		for (k = 0; k < hc->nidentity; k++)
			CHECK(hc->identity[k] != NULL);
		CHECK(hc->host_key_policy == HOSTKEY_STRICT ||
		    hc->host_key_policy == HOSTKEY_ACCEPT_NEW);
		CHECK(hc->connect_timeout >= 1 && hc->connect_timeout <= 3600);
		CHECK(hc->keepalive_interval >= 0 &&
		    hc->keepalive_interval <= 3600);
		CHECK(hc->keepalive_count_max >= 1 &&
		    hc->keepalive_count_max <= 100);
		CHECK(hc->backoff_initial >= 0.1 &&
		    hc->backoff_initial <= 3600);
		CHECK(hc->backoff_max >= hc->backoff_initial &&
		    hc->backoff_max <= 86400);
		CHECK(hc->backoff_reset_after >= 0 &&
		    hc->backoff_reset_after <= 86400);
		CHECK(hc->max_window >= 0);
		for (j = 0; j < i; j++)
			CHECK(strcmp(conf->hosts[j].name, hc->name) != 0);
		CHECK(conf_host(conf, hc->name) == hc);

		/* Every chain reaches a host without jump. */
		for (j = i, steps = 0; conf->hosts[j].jump[0] != '\0';
		    steps++) {
			CHECK(steps < conf->nhosts);
			hc = conf_host(conf, conf->hosts[j].jump);
			CHECK(hc != NULL && hc != &conf->hosts[j]);
			j = (int)(hc - conf->hosts);
		}
	}
}

/* One end of a tunnel, parsed. */
static void
fuzz_endpoint(const struct endpoint *ep, int port0)
{
	CHECK(TERMINATED(ep->host) && TERMINATED(ep->path));
	if (ep->is_unix) {
		CHECK(ep->path[0] == '/');
		return;
	}
	CHECK(ep->port >= (port0 ? 0 : 1) && ep->port <= 65535);
}

/* Tunnels: names, a known host each, ends their kind allows. */
static void
fuzz_tunnels(const struct conf *conf)
{
	const struct tunnel_conf	*tc;
	int				 i, j, remote, dynamic;

	for (i = 0; i < conf->ntunnels; i++) {
		tc = &conf->tunnels[i];
		CHECK(TERMINATED(tc->name) && valid_name(tc->name));
		CHECK(TERMINATED(tc->via) && conf_host(conf, tc->via) != NULL);
		for (j = 0; j < i; j++)
			CHECK(strcmp(conf->tunnels[j].name, tc->name) != 0);
		CHECK(tc->type == TUNNEL_LOCAL || tc->type == TUNNEL_REMOTE ||
		    tc->type == TUNNEL_DYNAMIC ||
		    tc->type == TUNNEL_REMOTE_DYNAMIC);
		CHECK(strcmp(tunnel_type_name(tc->type), "unknown") != 0);
		CHECK(tc->enabled == 0 || tc->enabled == 1);
		CHECK(tc->connect_wait >= 0 && tc->connect_wait <= 3600);
		CHECK(tc->max_connections >= 0 &&
		    tc->max_connections <= 1000000);
		remote = tc->type == TUNNEL_REMOTE ||
		    tc->type == TUNNEL_REMOTE_DYNAMIC;
		dynamic = tc->type == TUNNEL_DYNAMIC ||
		    tc->type == TUNNEL_REMOTE_DYNAMIC;
		fuzz_endpoint(&tc->listen, remote);
		if (remote)
			CHECK(!tc->listen.is_unix);
		if (!dynamic) {
			fuzz_endpoint(&tc->target, 0);
			CHECK(tc->target.is_unix ||
			    tc->target.host[0] != '\0');
		}
	}
}

/* One input: a tunnels.conf. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf	*conf, *fconf;
	char		*text, *errors, *ferrors;
	FILE		*fp;
	int		 n, fn;

	if (size > FUZZ_IN_MAX || memchr(data, '\0', size) != NULL)
		return (0);
	if ((text = malloc(size + 1)) == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	if (strcasestr(text, "@include") != NULL) {
		free(text);
		return (0);
	}

	n = conf_load_string(fuzz_path, text, &conf, &errors);
	CHECK(n >= 0);
	CHECK((n == 0) == (conf != NULL));
	CHECK((n == 0) == (errors == NULL));
	if (n > 0)
		fuzz_errors(errors, n);
	else {
		CHECK(strcmp(conf->path, fuzz_path) == 0);
		CHECK(conf->control_socket != NULL &&
		    conf->control_socket[0] != '\0');
		CHECK(conf->log_level >= LOGL_ERROR &&
		    conf->log_level <= LOGL_DEBUG);
		CHECK(conf->nhosts >= 0 && conf->ntunnels >= 0);
		fuzz_hosts(conf);
		fuzz_tunnels(conf);
	}

	/* The same bytes from a file: the same verdict, word for word. */
	unlink(fuzz_path);
	if ((fp = fopen(fuzz_path, "wx")) == NULL ||
	    fwrite(data, 1, size, fp) != size || fclose(fp) != 0) {
		perror("fuzz_conf: write");
		abort();
	}
	fn = conf_load(fuzz_path, &fconf, &ferrors);
	unlink(fuzz_path);
	CHECK(fn == n);
	CHECK((errors == NULL) == (ferrors == NULL));
	if (errors != NULL && strcmp(errors, ferrors) != 0) {
		fprintf(stderr, "fuzz_conf: from memory:\n%sfrom the file:\n%s",
		    errors, ferrors);
		abort();
	}
	if (conf != NULL) {
		CHECK(fconf->nhosts == conf->nhosts);
		CHECK(fconf->ntunnels == conf->ntunnels);
	}
	conf_free(fconf);
	free(ferrors);
	conf_free(conf);
	free(errors);
	free(text);
	return (0);
}
