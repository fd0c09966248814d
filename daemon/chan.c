/*
 * chan.c: one relayed stream between a local socket (a bufferevent) and an
 * SSH channel.
 *
 * client -> target: the bufferevent reads at most CHAN_BUF ahead (its read
 * high-water mark); the pump writes what the channel window allows and
 * drains it, so a full window stops the reading.
 * target -> client: the channel-data callback copies into the bufferevent's
 * output while it holds less than CHAN_BUF and leaves the rest inside
 * libssh, where it holds back the window. libssh offers left bytes again
 * only when new data arrives, so when the output drains the pump pulls
 * them with ssh_channel_read_nonblocking().
 * EOF is carried each way (SSH EOF, shutdown(SHUT_WR)); the chan ends when
 * both directions are finished or either side fails.
 *
 * libssh callbacks run inside the pump and only copy bytes and set flags;
 * chan_kill() never frees: dead chans wait on td->reap for the next turn.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tunneld.h"

#define CHAN_BUF	(256 * 1024)	/* per direction, per connection */
#define CHAN_BUDGET	(256 * 1024)	/* bytes per chan per pump turn */

static void	chan_read_cb(struct bufferevent *, void *);
static void	chan_write_cb(struct bufferevent *, void *);
static void	chan_event_cb(struct bufferevent *, short, void *);
static void	chan_wait_cb(int, short, void *);
static int	chan_data_cb(ssh_session, ssh_channel, void *, uint32_t, int,
		    void *);
static void	chan_eof_cb(ssh_session, ssh_channel, void *);
static void	chan_close_cb(ssh_session, ssh_channel, void *);
static int	chan_open_call(struct chan *);
static void	chan_pump_open(struct chan *);
static void	chan_park(struct chan *);
static void	chan_unlist(struct chan *);

static unsigned char	chan_scratch[64 * 1024];

/* Wrap an accepted connection; it waits for the link if the link is down. */
struct chan *
chan_new(struct fwd *f, int fd, const char *peer)
{
	struct chan	*c;
	struct timeval	 tv;

	c = xcalloc(1, sizeof(*c));
	c->fwd = f;
	c->link = f->link;
	c->state = CHAN_WAITING;
	strlcpy_(c->peer, peer, sizeof(c->peer));
	c->bev = bufferevent_socket_new(td->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return (NULL);
	}
	bufferevent_setcb(c->bev, chan_read_cb, chan_write_cb, chan_event_cb,
	    c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CHAN_BUF);
	bufferevent_setwatermark(c->bev, EV_WRITE, CHAN_BUF / 2, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&f->chans, c, entry);
	f->conns_active++;
	f->conns_total++;

	if (c->link->state == LINK_UP) {
		chan_want(c);
		return (c);
	}
	if (f->tc->connect_wait == 0) {
		f->conns_failed++;
		chan_kill(c, "link is down and connect_wait is 0");
		return (NULL);
	}
	log_debug("tunnel %s: connection from %s waits up to %d s for link "
	    "%s", f->tc->name, peer, f->tc->connect_wait, c->link->hc->name);
	if ((c->ev_wait = evtimer_new(td->base, chan_wait_cb, c)) == NULL)
		fatalx("chan_new: out of memory");
	tv.tv_sec = f->tc->connect_wait;
	tv.tv_usec = 0;
	evtimer_add(c->ev_wait, &tv);
	return (c);
}

/* Free a dead chan: its channel (callbacks first), its socket, its timer. */
void
chan_free(struct chan *c)
{
	if (c == NULL)
		return;
	if (c->ch != NULL) {
		ssh_remove_channel_callbacks(c->ch, &c->cb);
		ssh_channel_free(c->ch);
	}
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->ev_wait != NULL)
		event_free(c->ev_wait);
	free(c);
}

/* Take a chan off the link's ready or parked list. */
static void
chan_unlist(struct chan *c)
{
	if (c->where == CHAN_READY)
		TAILQ_REMOVE(&c->link->ready, c, ready_entry);
	else if (c->where == CHAN_PARKED)
		TAILQ_REMOVE(&c->link->parked, c, ready_entry);
	c->where = CHAN_NOWHERE;
}

/*
 * End a connection. A channel still being opened cannot be freed without
 * leaving it open on the server, so such a chan only drops its client and
 * is finished by the pump once the server has answered.
 */
void
chan_kill(struct chan *c, const char *why)
{
	struct fwd *f = c->fwd;

	if (c->state == CHAN_DEAD)
		return;
	if (why != NULL)
		log_debug("tunnel %s: connection from %s closed: %s",
		    f->tc->name, c->peer, why);
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->state == CHAN_OPENING && c->ch != NULL &&
	    c->link->session != NULL) {
		chan_park(c);
		return;
	}
	chan_unlist(c);
	c->state = CHAN_DEAD;
	TAILQ_REMOVE(&f->chans, c, entry);
	f->conns_active--;
	c->fwd = NULL;
	if (c->ev_wait != NULL)
		evtimer_del(c->ev_wait);
	TAILQ_INSERT_TAIL(&td->reap, c, entry);
	event_active(td->ev_reap, EV_TIMEOUT, 0);
}

/*
 * The link is going away: free the channel while libssh still knows it, and
 * end the connection if it was using it. A chan still waiting for the link
 * keeps waiting.
 */
void
chan_link_lost(struct chan *c)
{
	if (c->ch != NULL) {
		ssh_remove_channel_callbacks(c->ch, &c->cb);
		ssh_channel_free(c->ch);
		c->ch = NULL;
	}
	chan_unlist(c);
	if (c->state == CHAN_OPENING || c->state == CHAN_OPEN) {
		c->state = CHAN_OPEN;
		chan_kill(c, "link lost");
	}
}

/* Free every dead chan; run outside any libssh callback. */
void
chan_reap_all(void)
{
	struct chan	*c;
	struct link	*l;

	if (TAILQ_EMPTY(&td->reap))
		return;
	while ((c = TAILQ_FIRST(&td->reap)) != NULL) {
		TAILQ_REMOVE(&td->reap, c, entry);
		chan_free(c);
	}
	/* Freed channels queued CLOSE messages: let the pumps send them. */
	TAILQ_FOREACH(l, &td->links, entry) {
		if (l->state == LINK_UP)
			link_kick(l);
	}
}

/* The reap event: free what died during the last turn. */
void
chan_reap_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	chan_reap_all();
}

/* Give a chan a turn of the pump on the next loop iteration. */
void
chan_want(struct chan *c)
{
	if (c->state == CHAN_DEAD || c->where == CHAN_READY)
		return;
	if (c->link->state != LINK_UP && c->state == CHAN_WAITING)
		return;
	if (c->where == CHAN_PARKED)
		TAILQ_REMOVE(&c->link->parked, c, ready_entry);
	TAILQ_INSERT_TAIL(&c->link->ready, c, ready_entry);
	c->where = CHAN_READY;
	link_kick(c->link);
}

/* Wait for the next packet or for the session's output to drain. */
static void
chan_park(struct chan *c)
{
	if (c->where == CHAN_PARKED)
		return;
	if (c->where == CHAN_READY)
		TAILQ_REMOVE(&c->link->ready, c, ready_entry);
	TAILQ_INSERT_TAIL(&c->link->parked, c, ready_entry);
	c->where = CHAN_PARKED;
}

/* The client sent bytes. */
static void
chan_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	chan_want(arg);
}

/* Our output to the client drained below the low-water mark. */
static void
chan_write_cb(struct bufferevent *bev, void *arg)
{
	struct chan *c = arg;

	(void)bev;
	if (c->leftover || c->remote_eof || c->remote_closed)
		chan_want(c);
}

/* EOF or an error on the client socket. */
static void
chan_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct chan	*c = arg;
	char		 why[128];

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		c->local_eof = 1;
		chan_want(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		snprintf(why, sizeof(why), "client socket: %s",
		    strerror(errno));
		chan_kill(c, why);
	}
}

/* connect_wait passed and the link is still not up. */
static void
chan_wait_cb(int fd, short what, void *arg)
{
	struct chan	*c = arg;
	char		 why[128];

	(void)fd;
	(void)what;
	if (c->state != CHAN_WAITING)
		return;
	c->fwd->conns_failed++;
	snprintf(why, sizeof(why), "link %s not up within connect_wait "
	    "(%d s)", c->link->hc->name, c->fwd->tc->connect_wait);
	chan_kill(c, why);
}

/* Channel data from the target: copy what fits, leave the rest in libssh. */
static int
chan_data_cb(ssh_session s, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	struct chan	*c = arg;
	struct evbuffer	*out;
	size_t		 have, n;

	(void)s;
	(void)ch;
	if (is_stderr || c->bev == NULL || c->state == CHAN_DEAD)
		return ((int)len);
	out = bufferevent_get_output(c->bev);
	have = evbuffer_get_length(out);
	if (have >= CHAN_BUF) {
		c->leftover = 1;
		return (0);
	}
	n = CHAN_BUF - have;
	if (n > len)
		n = len;
	if (bufferevent_write(c->bev, data, n) == -1) {
		c->leftover = 1;
		return (0);
	}
	c->fwd->bytes_in += n;
	c->leftover = n < len;
	return ((int)n);
}

/* The target finished sending. */
static void
chan_eof_cb(ssh_session s, ssh_channel ch, void *arg)
{
	struct chan *c = arg;

	(void)s;
	(void)ch;
	c->remote_eof = 1;
	chan_want(c);
}

/* The server closed the channel. */
static void
chan_close_cb(ssh_session s, ssh_channel ch, void *arg)
{
	struct chan *c = arg;

	(void)s;
	(void)ch;
	c->remote_eof = 1;
	c->remote_closed = 1;
	chan_want(c);
}

/* Send (or re-check) the direct-tcpip or direct-streamlocal open. */
static int
chan_open_call(struct chan *c)
{
	const struct endpoint	*t;
	const char		*orig = "127.0.0.1";
	char			 host[HOST_MAXLEN + 1];
	char			*colon;
	int			 oport = 0;

	if (c->fwd == NULL)
		return (ssh_channel_open_forward(c->ch, "-", 0, orig, 0));
	t = &c->fwd->tc->target;
	/* c->peer is "addr:port" or "[v6]:port" for TCP clients. */
	if (c->peer[0] == '[') {
		strlcpy_(host, c->peer + 1, sizeof(host));
		if ((colon = strstr(host, "]:")) != NULL) {
			*colon = '\0';
			oport = atoi(colon + 2);
			orig = host;
		}
	} else if ((colon = strrchr(c->peer, ':')) != NULL) {
		strlcpy_(host, c->peer, sizeof(host));
		host[colon - c->peer] = '\0';
		oport = atoi(colon + 1);
		orig = host;
	}
	if (t->is_unix)
		return (ssh_channel_open_forward_unix(c->ch, t->path, orig,
		    oport));
	return (ssh_channel_open_forward(c->ch, t->host, t->port, orig,
	    oport));
}

/* The pump's turn for one chan: open its channel, then move its bytes. */
void
chan_pump(struct chan *c)
{
	struct link	*l = c->link;
	struct fwd	*f = c->fwd;
	char		 tgt[PATH_MAXLEN + 16];
	int		 rc;

	switch (c->state) {
	case CHAN_WAITING:
		if (l->state != LINK_UP)
			return;
		if (c->ev_wait != NULL)
			evtimer_del(c->ev_wait);
		if ((c->ch = ssh_channel_new(l->session)) == NULL) {
			chan_kill(c, "cannot create a channel");
			return;
		}
		ssh_callbacks_init(&c->cb);
		c->cb.userdata = c;
		c->cb.channel_data_function = chan_data_cb;
		c->cb.channel_eof_function = chan_eof_cb;
		c->cb.channel_close_function = chan_close_cb;
		ssh_set_channel_callbacks(c->ch, &c->cb);
		c->state = CHAN_OPENING;
		/* FALLTHROUGH */
	case CHAN_OPENING:
		rc = chan_open_call(c);
		if (rc == SSH_AGAIN) {
			chan_park(c);
			return;
		}
		if (rc != SSH_OK) {
			if (!ssh_is_connected(l->session))
				return;	/* the pump fails the link */
			c->state = CHAN_OPEN;	/* nothing left to wait for */
			if (c->bev == NULL) {
				chan_kill(c, NULL);
				return;
			}
			endpoint_format(&f->tc->target, 0, tgt, sizeof(tgt));
			f->conns_failed++;
			fwd_note_error(f, "connect to %s from %s failed: %s",
			    tgt, l->hc->name, ssh_get_error(l->session));
			chan_kill(c, "channel open refused");
			return;
		}
		c->state = CHAN_OPEN;
		if (c->bev == NULL) {
			chan_kill(c, NULL);	/* the client left meanwhile */
			return;
		}
		log_debug("tunnel %s: connection from %s open", f->tc->name,
		    c->peer);
		/* FALLTHROUGH */
	case CHAN_OPEN:
		chan_pump_open(c);
		return;
	case CHAN_DEAD:
		return;
	}
}

/* Move bytes both ways on an open channel and carry EOF and close. */
static void
chan_pump_open(struct chan *c)
{
	struct link	*l = c->link;
	struct fwd	*f = c->fwd;
	struct evbuffer	*in, *out;
	size_t		 len, n, space, budget = CHAN_BUDGET;
	uint32_t	 win;
	int		 r, w, parked = 0;

	if (c->bev == NULL) {
		chan_kill(c, NULL);
		return;
	}
	in = bufferevent_get_input(c->bev);
	out = bufferevent_get_output(c->bev);

	/* target -> client: bytes libssh kept while our buffer was full. */
	while (c->leftover && (len = evbuffer_get_length(out)) < CHAN_BUF) {
		space = CHAN_BUF - len;
		if (space > sizeof(chan_scratch))
			space = sizeof(chan_scratch);
		r = ssh_channel_read_nonblocking(c->ch, chan_scratch,
		    (uint32_t)space, 0);
		if (r <= 0) {
			c->leftover = 0;
			break;
		}
		bufferevent_write(c->bev, chan_scratch, (size_t)r);
		f->bytes_in += (uint64_t)r;
	}
	if (c->state == CHAN_DEAD || c->bev == NULL)
		return;

	/* The target finished: pass the EOF on once everything is out. */
	if (c->remote_eof && !c->leftover && !c->shut_wr &&
	    evbuffer_get_length(out) == 0) {
		shutdown(bufferevent_getfd(c->bev), SHUT_WR);
		c->shut_wr = 1;
	}

	/* client -> target, as far as the window and the session allow. */
	while (!c->eof_sent && !c->remote_closed &&
	    (len = evbuffer_get_length(in)) > 0) {
		if (budget == 0) {
			chan_want(c);
			break;
		}
		win = ssh_channel_window_size(c->ch);
		if (l->out_blocked || win == 0) {
			chan_park(c);
			parked = 1;
			break;
		}
		n = len;
		if (n > win)
			n = win;
		if (n > budget)
			n = budget;
		w = ssh_channel_write(c->ch, evbuffer_pullup(in, (ssize_t)n),
		    (uint32_t)n);
		if (w < 0) {
			chan_kill(c, "channel write failed");
			return;
		}
		if (w == 0) {
			chan_park(c);
			parked = 1;
			break;
		}
		evbuffer_drain(in, (size_t)w);
		f->bytes_out += (uint64_t)w;
		budget -= (size_t)w;
	}
	if (c->local_eof && !c->eof_sent && !c->remote_closed &&
	    evbuffer_get_length(in) == 0) {
		ssh_channel_send_eof(c->ch);
		c->eof_sent = 1;
	}

	/* Both directions finished, or the server closed the channel. */
	if (c->shut_wr && (c->eof_sent || c->remote_closed)) {
		chan_kill(c, NULL);
		return;
	}
	(void)parked;
}
