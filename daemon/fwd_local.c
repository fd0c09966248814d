/*
 * fwd_local.c: the listeners of the local and dynamic kinds. A tunnel binds
 * its listener when it is enabled and keeps it bound while its link
 * reconnects; connections accepted meanwhile wait connect_wait seconds for
 * the link. A listener that cannot be bound leaves the tunnel failed and is
 * retried with backoff (fwd.c). A reload hands a listener from one tunnel
 * to another without closing it (fwd_local_take). A listener may also come
 * from systemd (sdfds.c): a socket unit's, or our own kept in systemd's
 * file descriptor store across a restart.
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
#include <systemd/sd-daemon.h>

#include "tunneld.h"

#define FWD_BACKLOG	4096

static int	fwd_bind_unix(struct fwd *, char *, size_t);
static int	fwd_bind_tcp(struct fwd *, char *, size_t);
static int	fwd_passed_ok(struct fwd *, int, int, char *, size_t);
static void	fwd_accept_cb(struct evconnlistener *, evutil_socket_t,
		    struct sockaddr *, int, void *);
static void	fwd_accept_error_cb(struct evconnlistener *, void *);

/*
 * Bind the tunnel's listener, or take the one systemd holds for it (a
 * socket unit's, or ours from before a restart), and store a socket we
 * bound in systemd's file descriptor store.
 */
int
fwd_local_bind(struct fwd *f, char *err, size_t errlen)
{
	int fd, unit = 0;

	if ((fd = sdfds_take(f->tc->name, &unit)) != -1 &&
	    fwd_passed_ok(f, fd, unit, err, errlen) == -1) {
		if (unit)
			return (-1);
		/* Ours, from before a change of its listen: a new one. */
		sdfds_unstore(f->tc->name);
		close(fd);
		fd = -1;
	}
	if (fd != -1) {
		f->listen_unit = unit;
		f->listen_stored = !unit;
		log_info("tunnel %s: listening on the socket %s", f->tc->name,
		    unit ? "of a systemd socket unit" : "systemd kept across "
		    "the restart");
	} else {
		if (f->tc->listen.is_unix)
			fd = fwd_bind_unix(f, err, errlen);
		else
			fd = fwd_bind_tcp(f, err, errlen);
		if (fd == -1)
			return (-1);
		f->listen_unit = 0;
		f->listen_stored = sdfds_store(f->tc->name, fd);
	}
	/* A socket unit's socket is given back, not closed, at unbind. */
	f->listener = evconnlistener_new(td->base, fwd_accept_cb, f,
	    LEV_OPT_CLOSE_ON_EXEC | (unit ? 0 : LEV_OPT_CLOSE_ON_FREE), 0, fd);
	if (f->listener == NULL)
		fatalx("evconnlistener_new: out of memory");
	evconnlistener_set_error_cb(f->listener, fwd_accept_error_cb);
	return (0);
}

/*
 * Whether the socket systemd passed for the tunnel listens where the
 * tunnel does (port 0 in the configuration: any port); sets bound_port.
 */
static int
fwd_passed_ok(struct fwd *f, int fd, int unit, char *err, size_t errlen)
{
	const struct endpoint	*ep = &f->tc->listen;
	struct sockaddr_storage	 want, got;
	struct sockaddr_un	*sun = (struct sockaddr_un *)&got;
	socklen_t		 wlen, glen = sizeof(got);
	char			 shown[HOST_MAXLEN + 16], has[HOST_MAXLEN + 16];
	int			 v6only, port, ok;

	endpoint_format(ep, 0, shown, sizeof(shown));
	memset(&got, 0, sizeof(got));
	if (getsockname(fd, (struct sockaddr *)&got, &glen) == -1 ||
	    sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
		snprintf(err, errlen, "the socket systemd passed is not a "
		    "listening stream socket");
		goto bad;
	}
	if (ep->is_unix) {
		ok = got.ss_family == AF_UNIX &&
		    strcmp(sun->sun_path, ep->path) == 0;
		snprintf(has, sizeof(has), "%s", got.ss_family == AF_UNIX ?
		    sun->sun_path : "a TCP socket");
		port = 0;
	} else {
		if (listen_tcp_addr(ep, &want, &wlen, &v6only) == -1)
			ok = 0;
		else
			ok = sockaddr_same_host(&want, &got) ||
			    (strcmp(ep->host, "*") == 0 &&
			    sockaddr_is_any(&got));
		port = sockaddr_port(&got);
		if (ep->port != 0 && port != ep->port)
			ok = 0;
		sockaddr_format((struct sockaddr *)&got, has, sizeof(has));
	}
	if (ok) {
		f->bound_port = port;
		return (0);
	}
	snprintf(err, errlen, "listen %s: the socket %s listens on %s",
	    shown, unit ? "systemd passed (FileDescriptorName=)" :
	    "stored before the restart", has);
bad:
	if (unit)
		sdfds_give_back(f->tc->name, fd);	/* fwd.c says why */
	else
		log_info("tunnel %s: %s; binding a new one", f->tc->name, err);
	return (-1);
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



/* Bind a tunnel's TCP listener. */
static int
fwd_bind_tcp(struct fwd *f, char *err, size_t errlen)
{
	return (listen_tcp(&f->tc->listen, FWD_BACKLOG, &f->bound_port,
	    err, errlen));
}

/*
 * Close the listener, remove its socket file and take it out of systemd's
 * store; at a stop, a stored one stays stored, file and all, for the next
 * daemon. A socket unit's socket is kept for the next bind.
 */
void
fwd_local_unbind(struct fwd *f)
{
	int fd, keep;

	evtimer_del(f->ev_accept);
	if (f->listener == NULL)
		return;
	fd = evconnlistener_get_fd(f->listener);
	evconnlistener_free(f->listener);
	f->listener = NULL;
	if (f->listen_unit)
		sdfds_give_back(f->tc->name, fd);
	else {
		keep = td->stopping && f->listen_stored;
		if (f->listen_stored && !keep)
			sdfds_unstore(f->tc->name);
		if (f->tc->listen.is_unix && !keep)
			unlink(f->tc->listen.path);
	}
	f->listen_unit = 0;
	f->listen_stored = 0;
	f->bound_port = 0;
}

/* A client connected. */
static void
fwd_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct fwd	*f = arg;
	char		 peer[HOST_MAXLEN + 16];
	int		 on = 1;

	(void)lev;
	(void)salen;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		sockaddr_format(sa, peer, sizeof(peer));
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
	to->listen_unit = from->listen_unit;
	to->listen_stored = from->listen_stored;
	from->listen_unit = 0;
	from->listen_stored = 0;
	if (to->listen_stored && strcmp(to->tc->name, from->tc->name) != 0) {
		/* The store knows it by the tunnel's name. */
		sdfds_unstore(from->tc->name);
		to->listen_stored = sdfds_store(to->tc->name,
		    evconnlistener_get_fd(to->listener));
	}
	evconnlistener_set_cb(to->listener, fwd_accept_cb, to);
	evconnlistener_set_error_cb(to->listener, fwd_accept_error_cb);
	evconnlistener_enable(to->listener);
	evtimer_del(to->ev_retry);
	to->bind_failures = 0;
}
