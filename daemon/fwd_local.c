/*
 * fwd_local.c: tunnels and their listeners. A local tunnel binds its
 * listener when it is enabled and keeps it bound while its link
 * reconnects; connections accepted meanwhile wait connect_wait seconds for
 * the link. A listener that cannot be bound leaves the tunnel failed and is
 * retried with backoff.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "tunneld.h"

#define FWD_BACKLOG	4096

static int	fwd_bind(struct fwd *, char *, size_t);
static int	fwd_bind_unix(struct fwd *, char *, size_t);
static int	fwd_bind_tcp(struct fwd *, char *, size_t);
static void	fwd_unbind(struct fwd *);
static void	fwd_accept_cb(struct evconnlistener *, evutil_socket_t,
		    struct sockaddr *, int, void *);
static void	fwd_accept_error_cb(struct evconnlistener *, void *);
static void	fwd_accept_resume_cb(int, short, void *);
static void	fwd_retry_cb(int, short, void *);

/* Names of tunnel states, as tunctl shows them. */
const char *
fwd_state_name(enum fwd_state s)
{
	switch (s) {
	case FWD_DOWN:
		return ("down");
	case FWD_STARTING:
		return ("starting");
	case FWD_WAITING:
		return ("waiting");
	case FWD_UP:
		return ("up");
	case FWD_FAILED:
		return ("failed");
	}
	return ("unknown");
}

/* Create a tunnel on its link, stopped. */
struct fwd *
fwd_new(struct link *l, const struct tunnel_conf *tc)
{
	struct fwd *f;

	f = xcalloc(1, sizeof(*f));
	f->link = l;
	f->tc = xmalloc(sizeof(*f->tc));
	*f->tc = *tc;
	f->state = FWD_DOWN;
	f->since = time(NULL);
	f->since_mono = monotime();
	TAILQ_INIT(&f->chans);
	if (fwd_is_remote(f))
		l->nremote++;
	if ((f->ev_retry = evtimer_new(td->base, fwd_retry_cb, f)) == NULL ||
	    (f->ev_accept = evtimer_new(td->base, fwd_accept_resume_cb,
	    f)) == NULL)
		fatalx("fwd_new: out of memory");
	TAILQ_INSERT_TAIL(&l->fwds, f, entry);
	return (f);
}

/* Stop a tunnel and free it with its connections. */
void
fwd_free(struct fwd *f)
{
	struct chan *c;

	if (f == NULL)
		return;
	if (fwd_is_remote(f))
		fwd_remote_stop(f);
	fwd_unbind(f);
	while ((c = TAILQ_FIRST(&f->chans)) != NULL) {
		chan_link_lost(c);
		if (c->state != CHAN_DEAD)
			chan_kill(c, "tunnel stopped");
	}
	TAILQ_REMOVE(&f->link->fwds, f, entry);
	if (fwd_is_remote(f))
		f->link->nremote--;
	event_free(f->ev_retry);
	event_free(f->ev_accept);
	free(f->tc);
	free(f);
}

/* Find a tunnel by name. */
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

/* Change state: stamp it, log it, tell the control side. */
void
fwd_set_state(struct fwd *f, enum fwd_state state, const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(f->last_error, sizeof(f->last_error), fmt, ap);
		va_end(ap);
	} else if (state == FWD_UP)
		f->last_error[0] = '\0';
	if (f->state == state)
		return;
	log_info("tunnel %s: %s -> %s%s%s", f->tc->name,
	    fwd_state_name(f->state), fwd_state_name(state),
	    fmt != NULL ? ": " : "", fmt != NULL ? f->last_error : "");
	f->state = state;
	f->since = time(NULL);
	f->since_mono = monotime();
	control_state_changed();
	tunneld_status_changed();
}

/* Remember an error of one connection; the tunnel's state stays. */
void
fwd_note_error(struct fwd *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->last_error, sizeof(f->last_error), fmt, ap);
	va_end(ap);
	log_warnx("tunnel %s: %s", f->tc->name, f->last_error);
}

/* Set the state an enabled tunnel has, given its listener and its link. */
void
fwd_settle(struct fwd *f)
{
	int ready = fwd_is_remote(f) ? f->remote_bound : f->listener != NULL;

	if (!f->enabled)
		fwd_set_state(f, FWD_DOWN, NULL);
	else if (f->state == FWD_FAILED && !ready && f->link->state == LINK_UP)
		return;		/* a retry is pending */
	else if (!fwd_is_remote(f) && !ready)
		return;		/* failed, a bind retry is pending */
	else if (f->link->state == LINK_UP)
		fwd_set_state(f, ready ? FWD_UP : FWD_STARTING, NULL);
	else if (f->link->state == LINK_CONNECTING &&
	    f->state != FWD_UP && f->state != FWD_WAITING)
		fwd_set_state(f, FWD_STARTING, NULL);	/* first connect */
	else
		fwd_set_state(f, FWD_WAITING, NULL);
}

/*
 * tunctl up: bind the listener, start the link (now, if it waits in
 * backoff). Returns -1 when the listener could not be bound; the tunnel is
 * then failed, with the reason in last_error, and the bind is retried.
 */
int
fwd_enable(struct fwd *f)
{
	char	err[ERR_MAXLEN];
	int	rc = 0;

	f->enabled = 1;
	if (fwd_is_remote(f)) {
		link_update(f->link);
		link_retry_now(f->link);
		fwd_remote_start(f);
		fwd_settle(f);
		return (0);
	}
	if (f->listener == NULL) {
		evtimer_del(f->ev_retry);
		if (fwd_bind(f, err, sizeof(err)) == -1) {
			fwd_set_state(f, FWD_FAILED, "%s", err);
			log_warnx("tunnel %s: %s", f->tc->name, err);
			fwd_schedule_retry(f);
			rc = -1;
		} else
			f->bind_failures = 0;
	}
	link_update(f->link);
	link_retry_now(f->link);
	fwd_settle(f);
	return (rc);
}

/* tunctl down: close the listener and every connection. */
void
fwd_disable(struct fwd *f)
{
	struct chan *c, *next;

	f->enabled = 0;
	evtimer_del(f->ev_retry);
	if (fwd_is_remote(f))
		fwd_remote_stop(f);
	fwd_unbind(f);
	for (c = TAILQ_FIRST(&f->chans); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		chan_kill(c, "tunnel stopped");
	}
	fwd_set_state(f, FWD_DOWN, NULL);
	link_update(f->link);
}

/* tunctl restart: down, then up. */
void
fwd_restart(struct fwd *f)
{
	fwd_disable(f);
	fwd_enable(f);
}

/* The link came up: serve waiting connections. */
void
fwd_link_up(struct fwd *f)
{
	struct chan *c;

	TAILQ_FOREACH(c, &f->chans, entry)
		chan_want(c);
	if (fwd_is_remote(f)) {
		f->bind_failures = 0;
		fwd_remote_start(f);	/* every reconnect asks again */
	}
	if (f->enabled)
		fwd_settle(f);
}

/* The link went down (or started connecting): keep listening, wait. */
void
fwd_link_down(struct fwd *f)
{
	if (fwd_is_remote(f)) {
		/* The server dropped our listener with the session. */
		evtimer_del(f->ev_retry);
		f->remote_bound = 0;
		f->bound_port = 0;
	}
	if (f->enabled)
		fwd_settle(f);
}

/* Bind the tunnel's listener. */
static int
fwd_bind(struct fwd *f, char *err, size_t errlen)
{
	int fd;

	if (f->tc->listen.is_unix)
		fd = fwd_bind_unix(f, err, errlen);
	else
		fd = fwd_bind_tcp(f, err, errlen);
	if (fd == -1)
		return (-1);
	f->listener = evconnlistener_new(td->base, fwd_accept_cb, f,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (f->listener == NULL)
		fatalx("evconnlistener_new: out of memory");
	evconnlistener_set_error_cb(f->listener, fwd_accept_error_cb);
	return (0);
}

/*
 * Bind a UNIX socket. A socket file nobody answers on is a leftover and is
 * replaced; one that answers belongs to someone else.
 */
static int
fwd_bind_unix(struct fwd *f, char *err, size_t errlen)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	const char		*path = f->tc->listen.path;
	int			 fd, probe;
	mode_t			 old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_(sun.sun_path, path, sizeof(sun.sun_path));
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "listen %s: exists and is not "
			    "a socket", path);
			return (-1);
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe != -1 && connect(probe, (struct sockaddr *)&sun,
		    sizeof(sun)) == 0) {
			close(probe);
			snprintf(err, errlen, "listen %s: in use by another "
			    "program", path);
			return (-1);
		}
		if (probe != -1)
			close(probe);
		unlink(path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		snprintf(err, errlen, "listen %s: socket: %s", path,
		    strerror(errno));
		return (-1);
	}
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		snprintf(err, errlen, "listen %s: bind: %s", path,
		    strerror(errno));
		close(fd);
		return (-1);
	}
	umask(old);
	if (listen(fd, FWD_BACKLOG) == -1) {
		snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return (-1);
	}
	f->bound_port = 0;
	return (fd);
}

/* Bind a TCP listener; no address means loopback, * every address. */
static int
fwd_bind_tcp(struct fwd *f, char *err, size_t errlen)
{
	const struct endpoint	*ep = &f->tc->listen;
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 slen;
	char			 shown[HOST_MAXLEN + 16];
	int			 fd = -1, on = 1, off = 0, v6only = 1;

	endpoint_format(ep, 0, shown, sizeof(shown));
	memset(&ss, 0, sizeof(ss));
	if (ep->host[0] == '\0' || strcmp(ep->host, "localhost") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(ep->port);
	} else if (strcmp(ep->host, "*") == 0) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = htons(ep->port);
		v6only = 0;
		fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd == -1) {
			/* No IPv6 here: every IPv4 address will do. */
			memset(&ss, 0, sizeof(ss));
			sin->sin_family = AF_INET;
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
			sin->sin_port = htons(ep->port);
		}
	} else if (inet_pton(AF_INET, ep->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(ep->port);
	} else if (inet_pton(AF_INET6, ep->host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(ep->port);
	} else {
		snprintf(err, errlen, "listen %s: not an address", shown);
		return (-1);
	}
	if (fd == -1 && (fd = socket(ss.ss_family, SOCK_STREAM |
	    SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "listen %s: socket: %s", shown,
		    strerror(errno));
		return (-1);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
		    v6only ? &on : &off, sizeof(on));
	slen = ss.ss_family == AF_INET6 ? sizeof(*sin6) : sizeof(*sin);
	if (bind(fd, (struct sockaddr *)&ss, slen) == -1) {
		snprintf(err, errlen, "listen %s: bind: %s%s", shown,
		    strerror(errno), errno == EACCES && ep->port < 1024 ?
		    " (ports below 1024 need CAP_NET_BIND_SERVICE)" : "");
		close(fd);
		return (-1);
	}
	if (listen(fd, FWD_BACKLOG) == -1) {
		snprintf(err, errlen, "listen %s: %s", shown, strerror(errno));
		close(fd);
		return (-1);
	}
	slen = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0)
		f->bound_port = ntohs(ss.ss_family == AF_INET6 ?
		    sin6->sin6_port : sin->sin_port);
	return (fd);
}

/* Close the listener (and remove its socket file). */
static void
fwd_unbind(struct fwd *f)
{
	evtimer_del(f->ev_accept);
	if (f->listener == NULL)
		return;
	evconnlistener_free(f->listener);
	f->listener = NULL;
	if (f->tc->listen.is_unix)
		unlink(f->tc->listen.path);
	f->bound_port = 0;
}

/* Retry a failed bind with the link's backoff parameters. */
void
fwd_schedule_retry(struct fwd *f)
{
	const struct host_conf	*hc = f->link->hc;
	struct timeval		 tv;
	double			 d;

	f->bind_failures++;
	d = backoff_delay(f->bind_failures, hc->backoff_initial,
	    hc->backoff_max, (double)arc4random() / 4294967296.0);
	tv.tv_sec = (time_t)d;
	tv.tv_usec = (suseconds_t)((d - (double)tv.tv_sec) * 1e6);
	evtimer_add(f->ev_retry, &tv);
}

/* Time to try the bind again. */
static void
fwd_retry_cb(int fd, short what, void *arg)
{
	struct fwd	*f = arg;
	char		 err[ERR_MAXLEN];

	(void)fd;
	(void)what;
	if (fwd_is_remote(f)) {
		fwd_remote_start(f);
		return;
	}
	if (!f->enabled || f->listener != NULL)
		return;
	if (fwd_bind(f, err, sizeof(err)) == -1) {
		fwd_set_state(f, FWD_FAILED, "%s", err);
		fwd_schedule_retry(f);
		return;
	}
	log_info("tunnel %s: listening again", f->tc->name);
	f->bind_failures = 0;
	fwd_settle(f);
}

/* May one more connection in? Counts and logs a refusal. */
int
fwd_admit(struct fwd *f, const char *peer)
{
	if (f->tc->max_connections == 0 ||
	    f->conns_active < (uint64_t)f->tc->max_connections)
		return (0);
	f->conns_failed++;
	log_warnx("tunnel %s: connection from %s refused: %d connections "
	    "open (max_connections)", f->tc->name, peer,
	    f->tc->max_connections);
	return (-1);
}

/* A client connected. */
static void
fwd_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct fwd	*f = arg;
	char		 host[INET6_ADDRSTRLEN], peer[HOST_MAXLEN + 16];
	int		 on = 1;

	(void)lev;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		if (getnameinfo(sa, (socklen_t)salen, host, sizeof(host), NULL,
		    0, NI_NUMERICHOST) != 0)
			strlcpy_(host, "?", sizeof(host));
		if (sa->sa_family == AF_INET6)
			snprintf(peer, sizeof(peer), "[%s]:%u", host,
			    ntohs(((struct sockaddr_in6 *)sa)->sin6_port));
		else
			snprintf(peer, sizeof(peer), "%s:%u", host,
			    ntohs(((struct sockaddr_in *)sa)->sin_port));
	} else
		snprintf(peer, sizeof(peer), "%s", f->tc->listen.path);
	if (fwd_admit(f, peer) == -1) {
		close(fd);
		return;
	}
	log_debug("tunnel %s: connection from %s", f->tc->name, peer);
	if (chan_new(f, fd, peer) != NULL && f->link->state == LINK_UP)
		pump_run(f->link);	/* open its channel without a turn */
}

/* accept() failed: out of descriptors pauses the listener for a second. */
static void
fwd_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct fwd	*f = arg;
	struct timeval	 tv = { 1, 0 };
	int		 err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		log_warnx("tunnel %s: accept: %s; pausing for 1 s",
		    f->tc->name, strerror(err));
		evconnlistener_disable(lev);
		evtimer_add(f->ev_accept, &tv);
		return;
	}
	log_debug("tunnel %s: accept: %s", f->tc->name, strerror(err));
}

/* Resume accepting after a pause. */
static void
fwd_accept_resume_cb(int fd, short what, void *arg)
{
	struct fwd *f = arg;

	(void)fd;
	(void)what;
	if (f->listener != NULL)
		evconnlistener_enable(f->listener);
}
