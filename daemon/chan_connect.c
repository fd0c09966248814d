/*
 * chan_connect.c: connecting a forwarded channel to its target on this
 * machine (remote tunnels, and remote-dynamic ones once SOCKS has named the
 * target), without blocking the loop: a TCP target through dial.c (the same
 * resolve-and-connect links use), a UNIX socket directly, the chan's write
 * event watching a connect still under way.
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

#include <event2/event.h>

#include "tunneld.h"

/* How long one address of a target may take to answer (dial.c). */
#define CHAN_CONNECT_ATTEMPT	10.0

static void	chan_connect_dial_cb(int, const char *, const char *, void *);

/*
 * Start connecting a chan to its target: a UNIX socket at once, a TCP
 * host through dial.c (names resolved by evdns, each address its own
 * deadline, the first to answer wins).
 */
void
chan_connect(struct chan *c, const struct endpoint *t)
{
	struct sockaddr_un	sun;
	char			who[sizeof("tunnel ") + NAME_MAXLEN];
	int			fd;

	if (!t->is_unix) {
		snprintf(who, sizeof(who), "tunnel %s", c->fwd->tc->name);
		c->dial = dial_start(who, t->host, t->port,
		    CHAN_CONNECT_ATTEMPT, chan_connect_dial_cb, c);
		return;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_(sun.sun_path, t->path, sizeof(sun.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		chan_connect_failed(c, strerror(errno));
		return;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		chan_attach(c, fd);
		chan_connected(c);
		return;
	}
	if (errno != EINPROGRESS && errno != EAGAIN) {
		close(fd);
		chan_connect_failed(c, strerror(errno));
		return;
	}
	chan_attach(c, fd);
	event_add(c->ev_write, NULL);	/* chan_connect_done() on the answer */
}

/* The TCP target answered, or none of its addresses did. */
static void
chan_connect_dial_cb(int fd, const char *peer, const char *err, void *arg)
{
	struct chan	*c = arg;
	int		 on = 1;

	c->dial = NULL;
	if (fd == -1) {
		/* "connect to PEER: why" for one address: the why is enough. */
		if (peer[0] != '\0' && strncmp(err, "connect to ", 11) == 0 &&
		    strncmp(err + 11, peer, strlen(peer)) == 0 &&
		    strncmp(err + 11 + strlen(peer), ": ", 2) == 0 &&
		    strchr(err + 13 + strlen(peer), ';') == NULL)
			err += 13 + strlen(peer);
		chan_connect_failed(c, err);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	chan_attach(c, fd);
	chan_connected(c);
}

/* Stop a connection attempt in progress. */
void
chan_connect_cancel(struct chan *c)
{
	if (c->dial != NULL) {
		dial_cancel(c->dial);
		c->dial = NULL;
	}
}

/* The chan's write event fired while connecting a UNIX target. */
void
chan_connect_done(struct chan *c)
{
	socklen_t	 len = sizeof(int);
	int		 err = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err == 0) {
		chan_connected(c);
		return;
	}
	event_del(c->ev_read);
	event_del(c->ev_write);
	close(c->fd);
	c->fd = -1;
	chan_connect_failed(c, strerror(err));
}
