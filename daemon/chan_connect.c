/*
 * chan_connect.c: connecting a forwarded channel to its target on this
 * machine (remote tunnels, and remote-dynamic ones once SOCKS has named the
 * target), without blocking the loop: names through evdns, every address
 * in turn, a non-blocking connect() watched by the chan's write event.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "tunneld.h"

static void	chan_connect_dns_cb(int, struct evutil_addrinfo *, void *);
static void	chan_connect_next(struct chan *, const char *);
static int	chan_connect_fd(struct chan *, const struct sockaddr *,
		    socklen_t, char *, size_t);

static char	chan_connect_err[ERR_MAXLEN];

/* Start connecting a chan to a TCP or UNIX target. */
void
chan_connect(struct chan *c, const struct endpoint *t)
{
	struct evutil_addrinfo			 hints;
	struct evdns_getaddrinfo_request	*req;
	struct sockaddr_un			 sun;
	char					 port[16];

	if (t->is_unix) {
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		strlcpy_(sun.sun_path, t->path, sizeof(sun.sun_path));
		if (chan_connect_fd(c, (struct sockaddr *)&sun, sizeof(sun),
		    chan_connect_err, sizeof(chan_connect_err)) == -1)
			chan_connect_failed(c, chan_connect_err);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%d", t->port);
	chan_connect_err[0] = '\0';
	req = evdns_getaddrinfo(td->dns, t->host, port, &hints,
	    chan_connect_dns_cb, c);
	if (req != NULL && c->state == CHAN_CONNECTING && c->fd == -1 &&
	    c->ai == NULL)
		c->dnsreq = req;
}

/* Stop a connection attempt in progress. */
void
chan_connect_cancel(struct chan *c)
{
	struct evdns_getaddrinfo_request *req;

	if ((req = c->dnsreq) != NULL) {
		c->dnsreq = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (c->ai != NULL) {
		evutil_freeaddrinfo(c->ai);
		c->ai = c->ai_next = NULL;
	}
}

/* The target's name was looked up. */
static void
chan_connect_dns_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct chan *c = arg;

	/* A cancelled lookup reports later; the chan may be freed by then. */
	if (err == EVUTIL_EAI_CANCEL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	c->dnsreq = NULL;
	if (err != 0 || res == NULL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		snprintf(chan_connect_err, sizeof(chan_connect_err),
		    "cannot resolve: %s", evutil_gai_strerror(err));
		chan_connect_failed(c, chan_connect_err);
		return;
	}
	c->ai = c->ai_next = res;
	chan_connect_next(c, NULL);
}

/* Try the next address; out of addresses, give up with the last error. */
static void
chan_connect_next(struct chan *c, const char *lasterr)
{
	struct evutil_addrinfo	*ai;
	char			 err[ERR_MAXLEN];

	if (lasterr != NULL)
		strlcpy_(chan_connect_err, lasterr, sizeof(chan_connect_err));
	while ((ai = c->ai_next) != NULL) {
		c->ai_next = ai->ai_next;
		if (chan_connect_fd(c, ai->ai_addr, ai->ai_addrlen, err,
		    sizeof(err)) == 0)
			return;
		strlcpy_(chan_connect_err, err, sizeof(chan_connect_err));
	}
	evutil_freeaddrinfo(c->ai);
	c->ai = c->ai_next = NULL;
	chan_connect_failed(c, chan_connect_err[0] != '\0' ? chan_connect_err :
	    "no address to connect to");
}

/*
 * Open a non-blocking socket and connect it. Returns 0 when connected or
 * under way (the chan's write event reports), -1 with a message.
 */
static int
chan_connect_fd(struct chan *c, const struct sockaddr *sa, socklen_t len,
    char *err, size_t errlen)
{
	int fd, on = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return (-1);
	}
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if (connect(fd, sa, len) == 0) {
		chan_attach(c, fd);
		chan_connected(c);
		return (0);
	}
	if (errno != EINPROGRESS && errno != EAGAIN) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return (-1);
	}
	chan_attach(c, fd);
	event_add(c->ev_write, NULL);	/* chan_connect_done() on the answer */
	return (0);
}

/* The chan's write event fired while connecting: did it work? */
void
chan_connect_done(struct chan *c)
{
	socklen_t	 len = sizeof(int);
	int		 err = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err == 0) {
		if (c->ai != NULL) {
			evutil_freeaddrinfo(c->ai);
			c->ai = c->ai_next = NULL;
		}
		chan_connected(c);
		return;
	}
	event_del(c->ev_read);
	event_del(c->ev_write);
	close(c->fd);
	c->fd = -1;
	if (c->ai != NULL) {
		chan_connect_next(c, strerror(err));
		return;
	}
	chan_connect_failed(c, strerror(err));
}
