/*
 * fwd_local.c: the listeners of the local and dynamic kinds. A tunnel binds
 * its listener when it is enabled and keeps it bound while its link
 * reconnects; connections accepted meanwhile wait connect_wait seconds for
 * the link. A listener that cannot be bound leaves the tunnel failed and is
 * retried with backoff (fwd.c). A reload hands a listener from one tunnel
 * to another without closing it (fwd_local_take).
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

static int	fwd_bind_unix(struct fwd *, char *, size_t);
static int	fwd_bind_tcp(struct fwd *, char *, size_t);
static void	fwd_accept_cb(struct evconnlistener *, evutil_socket_t,
		    struct sockaddr *, int, void *);
static void	fwd_accept_error_cb(struct evconnlistener *, void *);

/* Bind the tunnel's listener. */
int
fwd_local_bind(struct fwd *f, char *err, size_t errlen)
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
		/* Non-blocking: a full backlog (EAGAIN) is a live owner too. */
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (probe != -1 && (connect(probe, (struct sockaddr *)&sun,
		    sizeof(sun)) == 0 || errno == EAGAIN)) {
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
void
fwd_local_unbind(struct fwd *f)
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
void
fwd_local_resume_cb(int fd, short what, void *arg)
{
	struct fwd *f = arg;

	(void)fd;
	(void)what;
	if (f->listener != NULL)
		evconnlistener_enable(f->listener);
}

/*
 * Reload: hand the listening socket of from (removed or moved away) to to,
 * which listens on the same endpoint. The socket is never closed, so no
 * client is refused and the connections queued in it are served by to.
 */
void
fwd_local_take(struct fwd *to, struct fwd *from)
{
	evtimer_del(from->ev_accept);
	to->listener = from->listener;
	to->bound_port = from->bound_port;
	from->listener = NULL;
	from->bound_port = 0;
	evconnlistener_set_cb(to->listener, fwd_accept_cb, to);
	evconnlistener_set_error_cb(to->listener, fwd_accept_error_cb);
	evconnlistener_enable(to->listener);
	evtimer_del(to->ev_retry);
	to->bind_failures = 0;
}
