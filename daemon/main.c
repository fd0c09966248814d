/*
 * main.c: options, the event loop, signals, systemd notification and the
 * orderly stop. Nothing else lives here.
 */
#include <sys/types.h>
#include <sys/resource.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/dns.h>
#include <systemd/sd-daemon.h>

#include "tunneld.h"

struct tunneld	*td;

static void	usage(void) __attribute__((noreturn));
static int	check_only(const char *);
static void	tunneld_start(void);
static void	tunneld_stop(void);
static void	signal_cb(int, short, void *);
static void	raise_nofile(void);
static void	tunneld_reap_cb(int, short, void *);

/* Print the synopsis and exit 2. */
static void
usage(void)
{
	fprintf(stderr, "usage: tunneld [-dtvV] [-f file] [-l file] "
	    "[-s socket]\n");
	exit(2);
}

/* tunneld -t: check the file, print every error, exit 0 or 1. */
static int
check_only(const char *path)
{
	struct conf	*conf = NULL;
	char		*errors = NULL;
	int		 n;

	n = conf_load(path, &conf, &errors);
	if (n > 0) {
		fputs(errors, stderr);
		fprintf(stderr, "%s: %d error%s\n", path, n, n == 1 ? "" : "s");
		free(errors);
		return (1);
	}
	free(errors);
	conf_free(conf);
	return (0);
}

/* Allow as many descriptors as the hard limit: every connection is two. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Create a link for every host a tunnel uses, then start the tunnels. */
static void
tunneld_start(void)
{
	struct conf		*conf = td->conf;
	const struct host_conf	*hc;
	struct link		*l;
	struct fwd		*f;
	int			 i;

	for (i = 0; i < conf->ntunnels; i++) {
		if ((l = link_find(conf->tunnels[i].via)) == NULL) {
			if ((hc = conf_host(conf, conf->tunnels[i].via)) ==
			    NULL)
				fatalx("tunnel %s: no host %s",
				    conf->tunnels[i].name,
				    conf->tunnels[i].via);
			l = link_new(hc);
		}
		fwd_new(l, &conf->tunnels[i]);
	}
	TAILQ_FOREACH(l, &td->links, entry) {
		TAILQ_FOREACH(f, &l->fwds, entry) {
			if (f->tc->enabled)
				fwd_enable(f);
		}
	}
}

/* Orderly stop: listeners closed, sessions disconnected, socket removed. */
static void
tunneld_stop(void)
{
	struct link *l;

	td->stopping = 1;
	sd_notify(0, "STOPPING=1");
	log_info("stopping");
	control_shutdown();
	while ((l = TAILQ_FIRST(&td->links)) != NULL)
		link_free(l);
	while ((l = TAILQ_FIRST(&td->dead_links)) != NULL)
		link_free(l);
	chan_reap_all();
}

/* SIGTERM and SIGINT stop; SIGHUP reloads (errors go to the log). */
static void
signal_cb(int sig, short what, void *arg)
{
	char	*errors = NULL, *line, *save = NULL, summary[1024];

	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		log_reopen();		/* -l: let a rotated file go */
		log_info("SIGHUP: reloading %s", td->conf_path);
		if (reload_run(&errors, summary, sizeof(summary)) > 0) {
			for (line = strtok_r(errors, "\n", &save);
			    line != NULL; line = strtok_r(NULL, "\n", &save))
				log_warnx("reload: %s", line);
		}
		free(errors);
		return;
	}
	log_info("got signal %d", sig);
	event_base_loopbreak(td->base);
}

/*
 * What died during the last turn is freed here, outside every callback:
 * chans, then removed tunnels whose chans are gone, then removed links.
 */
static void
tunneld_reap_cb(int fd, short what, void *arg)
{
	struct link *l;

	chan_reap_cb(fd, what, arg);
	TAILQ_FOREACH(l, &td->links, entry)
		fwd_reap(l);
	while ((l = TAILQ_FIRST(&td->dead_links)) != NULL)
		link_free(l);
}

/* Free what died on the next loop turn. */
void
tunneld_reap_soon(void)
{
	event_active(td->ev_reap, EV_TIMEOUT, 0);
}

int
main(int argc, char *argv[])
{
	struct event	*ev_term, *ev_int, *ev_hup;
	char		*errors = NULL, *abs_sock = NULL, *abs_conf = NULL;
	char		*abs_log = NULL;
	char		 cwd[4096];
	const char	*sock;
	int		 ch, test = 0, n;

	td = xcalloc(1, sizeof(*td));
	td->conf_path = DEFAULT_CONF_PATH;
	TAILQ_INIT(&td->links);
	TAILQ_INIT(&td->dead_links);
	TAILQ_INIT(&td->reap);

	while ((ch = getopt(argc, argv, "df:hl:s:tvV")) != -1) {
		switch (ch) {
		case 'd':
			td->foreground = 1;
			break;
		case 'f':
			td->conf_path = optarg;
			break;
		case 'l':
			td->log_file = optarg;
			break;
		case 's':
			td->socket_path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'v':
			td->verbose = 1;
			break;
		case 'V':
			printf("tunneld %s\n", TUNNELD_VERSION);
			return (0);
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (test)
		return (check_only(td->conf_path));

	if (td->log_file != NULL) {
		if (td->log_file[0] != '/') {
			/* daemon() moves to /: SIGHUP reopens by name. */
			if (getcwd(cwd, sizeof(cwd)) == NULL)
				fatal("getcwd");
			xasprintf(&abs_log, "%s/%s", cwd, td->log_file);
			td->log_file = abs_log;
		}
		if (log_open(td->log_file) == -1) {
			fprintf(stderr, "tunneld: cannot open the log file %s: "
			    "%s\n", td->log_file, strerror(errno));
			return (1);
		}
	}
	log_init(1, td->verbose);
	log_set_via(fwd_via);
	if (td->conf_path[0] != '/') {
		/* daemon() moves to /: reload must find the file again. */
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			fatal("getcwd");
		xasprintf(&abs_conf, "%s/%s", cwd, td->conf_path);
		td->conf_path = abs_conf;
	}
	if ((n = conf_load(td->conf_path, &td->conf, &errors)) > 0) {
		fputs(errors, stderr);
		fprintf(stderr, "%s: %d error%s, not starting\n",
		    td->conf_path, n, n == 1 ? "" : "s");
		free(errors);
		return (1);
	}
	free(errors);
	if (!td->verbose)
		log_setlevel(td->conf->log_level);
	if (!td->foreground && getenv("NOTIFY_SOCKET") == NULL &&
	    getenv("JOURNAL_STREAM") == NULL && td->log_file == NULL &&
	    !log_syslog_reachable()) {
		/* Detached, every line would be lost without a word. */
		log_errorx("nothing to log to once detached: no syslog "
		    "answers on %s; use -l FILE to log to a file, or -d to "
		    "stay in the foreground; not starting", _PATH_LOG);
		conf_free(td->conf);
		free(td);
		free(abs_conf);
		return (1);
	}

	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if ((td->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	/* resolvwatch.c reads resolv.conf and the hosts file, now and anew. */
	if ((td->dns = evdns_base_new(td->base,
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL)
		fatalx("evdns_base_new failed");
	netwatch_init();
	resolvwatch_init();
	if ((td->ev_reap = event_new(td->base, -1, 0, tunneld_reap_cb,
	    NULL)) == NULL)
		fatalx("event_new failed");
	membudget_init();
	membudget_set_cap((uint64_t)td->conf->max_buffered << 20);

	sock = td->socket_path != NULL ? td->socket_path :
	    td->conf->control_socket;
	if (sock[0] != '/') {
		/* daemon() moves to /: keep finding the socket to remove it. */
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			fatal("getcwd");
		xasprintf(&abs_sock, "%s/%s", cwd, sock);
		sock = abs_sock;
	}
	if (sdfds_init() == -1 ||
	    control_init(sock, td->conf->control_group) == -1)
		return (1);

	if (!td->foreground && getenv("NOTIFY_SOCKET") == NULL &&
	    getenv("JOURNAL_STREAM") == NULL) {
		if (daemon(0, 0) == -1)
			fatal("daemon");
		if (event_reinit(td->base) == -1)
			fatalx("event_reinit failed");
		control_sock_claim();
		log_init(0, td->verbose);
		if (!td->verbose)
			log_setlevel(td->conf->log_level);
	}

	ev_term = evsignal_new(td->base, SIGTERM, signal_cb, NULL);
	ev_int = evsignal_new(td->base, SIGINT, signal_cb, NULL);
	ev_hup = evsignal_new(td->base, SIGHUP, signal_cb, NULL);
	if (ev_term == NULL || ev_int == NULL || ev_hup == NULL)
		fatalx("evsignal_new failed");
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);

	notify_init();
	metrics_http_start(&td->conf->metrics_listen);
	tunneld_start();
	sdfds_leftovers();
	log_info("started, %d tunnels, control socket %s",
	    td->conf->ntunnels, sock);
	sd_notify(0, "READY=1");
	tunneld_status_changed();

	event_base_dispatch(td->base);

	tunneld_stop();
	metrics_http_stop();
	sdfds_free();
	notify_free();
	membudget_free();
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_free(td->ev_reap);
	resolvwatch_free();
	netwatch_free();
	evdns_base_free(td->dns, 0);
	event_base_free(td->base);
	conf_free(td->conf);
	free(td);
	free(abs_sock);
	free(abs_conf);
	log_info("stopped");
	log_close();
	free(abs_log);
	return (0);
}
