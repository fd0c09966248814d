/*
 * chan.c: one relayed stream between a local socket and an SSH channel.
 *
 * The chan does its own socket I/O (libevent 2.1's bufferevents read 4 KiB
 * per call, a syscall and a pump turn for every 4 KiB):
 * client -> target: the pump reads the client only as far as the channel
 * window allows, straight into a scratch buffer, and hands it to
 * ssh_channel_write. A zero window or a full session output stops the
 * reading, so the slow side slows its writer. Bytes the channel did not
 * take (during a key re-exchange) wait in a small pend buffer.
 * target -> client: the channel-data callback sends straight to the socket
 * and keeps what the socket did not take in the out buffer, up to CHAN_BUF;
 * beyond that the bytes stay inside libssh, where they hold back the window.
 * libssh offers kept bytes again only when new data arrives, so when the
 * out buffer drains the pump pulls them with ssh_channel_read_nonblocking().
 * While libssh keeps nothing the receive window is topped up and grown
 * with the path's bandwidth-delay product (window.c).
 * EOF is carried each way (SSH EOF, shutdown(SHUT_WR)); the chan ends when
 * both directions are finished or either side fails.
 *
 * libssh callbacks run inside the pump and only move bytes and set flags;
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
#include <event2/event.h>

#include "tunneld.h"
#include "socks.h"

#define CHAN_BUF	(256 * 1024)	/* target -> client backlog */
#define CHAN_BUDGET	(256 * 1024)	/* client bytes per chan per turn */

static struct chan *chan_alloc(struct fwd *, const char *);
static void	chan_set_callbacks(struct chan *);
static void	chan_read_ev_cb(int, short, void *);
static void	chan_write_ev_cb(int, short, void *);
static void	chan_wait_cb(int, short, void *);
static int	chan_data_cb(ssh_session, ssh_channel, void *, uint32_t, int,
		    void *);
static void	chan_eof_cb(ssh_session, ssh_channel, void *);
static void	chan_close_cb(ssh_session, ssh_channel, void *);
static int	chan_open_call(struct chan *);
static void	chan_pump_open(struct chan *);
static void	chan_unlist(struct chan *);
static void	chan_close_fd(struct chan *);
static int	chan_to_channel(struct chan *, const void *, size_t);
static int	chan_deliver(struct chan *, size_t);

static unsigned char	chan_scratch[256 * 1024];

/*
 * Count bytes the way tunctl shows them (SPEC section 4): IN from the side
 * that connects (the client) towards the target, OUT back to the client.
 * A local tunnel's client is our socket; a remote tunnel's client arrives
 * through the channel.
 */
#define CHAN_FROM_CHANNEL(c, n) do {					\
	if ((c)->fwd == NULL)						\
		break;							\
	if (fwd_is_remote((c)->fwd))					\
		(c)->fwd->bytes_in += (uint64_t)(n);			\
	else								\
		(c)->fwd->bytes_out += (uint64_t)(n);			\
} while (0)
#define CHAN_TO_CHANNEL(c, n) do {					\
	if ((c)->fwd == NULL)						\
		break;							\
	if (fwd_is_remote((c)->fwd))					\
		(c)->fwd->bytes_out += (uint64_t)(n);			\
	else								\
		(c)->fwd->bytes_in += (uint64_t)(n);			\
} while (0)

/* Allocate a chan on its tunnel, counted as an active connection. */
static struct chan *
chan_alloc(struct fwd *f, const char *peer)
{
	struct chan *c;

	c = xcalloc(1, sizeof(*c));
	c->fwd = f;
	c->link = f->link;
	c->fd = -1;
	strlcpy_(c->peer, peer, sizeof(c->peer));
	if ((c->out = evbuffer_new()) == NULL ||
	    (c->pend = evbuffer_new()) == NULL ||
	    (c->ev_wait = evtimer_new(td->base, chan_wait_cb, c)) == NULL)
		fatalx("chan_alloc: out of memory");
	membudget_track(c->out, 0);
	membudget_track(c->pend, 1);
	TAILQ_INSERT_TAIL(&f->chans, c, entry);
	f->conns_active++;
	f->conns_total++;
	c->link->conns++;
	return (c);
}

/* Give a chan its client (or target) socket. */
void
chan_attach(struct chan *c, int fd)
{
	c->fd = fd;
	if (c->ev_read == NULL) {
		c->ev_read = event_new(td->base, fd, EV_READ, chan_read_ev_cb,
		    c);
		c->ev_write = event_new(td->base, fd, EV_WRITE,
		    chan_write_ev_cb, c);
		if (c->ev_read == NULL || c->ev_write == NULL)
			fatalx("chan_attach: out of memory");
		return;
	}
	event_assign(c->ev_read, td->base, fd, EV_READ, chan_read_ev_cb, c);
	event_assign(c->ev_write, td->base, fd, EV_WRITE, chan_write_ev_cb, c);
}

/* Route a channel's data, EOF and close to the chan. */
static void
chan_set_callbacks(struct chan *c)
{
	ssh_callbacks_init(&c->cb);
	c->cb.userdata = c;
	c->cb.channel_data_function = chan_data_cb;
	c->cb.channel_eof_function = chan_eof_cb;
	c->cb.channel_close_function = chan_close_cb;
	ssh_set_channel_callbacks(c->ch, &c->cb);
}

/*
 * A connection ready to be carried waits for its link: served at once when
 * the link is up, else for up to connect_wait seconds.
 */
void
chan_link_wait(struct chan *c)
{
	struct fwd	*f = c->fwd;
	struct timeval	 tv;

	if (c->link->state == LINK_UP) {
		/* Should the link drop before the pump gets to us. */
		if (f->tc->connect_wait > 0) {
			tv.tv_sec = f->tc->connect_wait;
			tv.tv_usec = 0;
			evtimer_add(c->ev_wait, &tv);
		}
		chan_want(c);
		return;
	}
	if (f->tc->connect_wait == 0) {
		f->conns_failed++;
		if (c->socks != NULL)
			chan_socks_refuse(c, SOCKS5_NET_UNREACH,
			    "link is down and connect_wait is 0");
		else
			chan_kill(c, "link is down and connect_wait is 0");
		return;
	}
	log_debug("tunnel %s: connection from %s waits up to %d s for link "
	    "%s", f->tc->name, c->peer, f->tc->connect_wait,
	    c->link->hc->name);
	tv.tv_sec = f->tc->connect_wait;
	tv.tv_usec = 0;
	evtimer_add(c->ev_wait, &tv);
}

/* Wrap an accepted connection: SOCKS first for dynamic tunnels. */
struct chan *
chan_new(struct fwd *f, int fd, const char *peer)
{
	struct chan *c;

	c = chan_alloc(f, peer);
	c->state = CHAN_WAITING;
	chan_attach(c, fd);
	if (f->tc->type == TUNNEL_DYNAMIC)
		chan_socks_start(c);
	else
		chan_link_wait(c);
	return (c);
}

/*
 * A channel the server opened for a remote tunnel: connect its target here.
 * Bytes that arrive meanwhile stay inside libssh.
 */
struct chan *
chan_new_forwarded(struct fwd *f, ssh_channel ch, const char *peer)
{
	struct chan *c;

	c = chan_alloc(f, peer);
	c->ch = ch;
	c->state = CHAN_CONNECTING;
	chan_set_callbacks(c);
	if (f->tc->type == TUNNEL_REMOTE_DYNAMIC)
		chan_socks_start(c);	/* the channel names the target */
	else
		chan_connect(c, &f->tc->target);
	return (c);
}

/* The target accepted the connection: start relaying. */
void
chan_connected(struct chan *c)
{
	c->state = CHAN_OPEN;
	c->leftover = 1;	/* whatever libssh kept while we connected */
	log_debug("tunnel %s: connection from %s open", c->fwd->tc->name,
	    c->peer);
	if (c->socks != NULL)
		chan_socks_connected(c, 1, NULL);
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->ev_write, NULL);	/* data sent with the request */
	chan_want(c);
}

/* The target could not be reached: close the channel, count, report. */
void
chan_connect_failed(struct chan *c, const char *why)
{
	struct endpoint	ep;
	char		tgt[PATH_MAXLEN + 16];

	if (chan_socks_target(c, &ep) == 0)
		endpoint_format(&ep, 0, tgt, sizeof(tgt));
	else
		endpoint_format(&c->fwd->tc->target, 0, tgt, sizeof(tgt));
	c->fwd->conns_failed++;
	fwd_note_error(c->fwd, "connect to %s failed: %s", tgt, why);
	if (c->socks != NULL) {
		chan_socks_connected(c, 0, why);
		return;
	}
	c->state = CHAN_OPEN;
	chan_kill(c, why);
}

/* Free a dead chan: its channel (callbacks first), events and buffers. */
void
chan_free(struct chan *c)
{
	if (c == NULL)
		return;
	membudget_forget(c);
	window_release(c);
	if (c->ch != NULL) {
		ssh_remove_channel_callbacks(c->ch, &c->cb);
		ssh_channel_free(c->ch);
	}
	chan_close_fd(c);
	if (c->ev_read != NULL)
		event_free(c->ev_read);
	if (c->ev_write != NULL)
		event_free(c->ev_write);
	if (c->ev_wait != NULL)
		event_free(c->ev_wait);
	free(c->socks);
	membudget_untrack(c->out, 0);
	membudget_untrack(c->pend, 1);
	if (c->out != NULL)
		evbuffer_free(c->out);
	if (c->pend != NULL)
		evbuffer_free(c->pend);
	free(c);
}

/*
 * Close the client socket; the events stay allocated until chan_free. A
 * refused client may have sent more than we read: closing on unread bytes
 * makes the kernel send a reset, which can destroy the refusal we queued,
 * so what is there is read and dropped first.
 */
static void
chan_close_fd(struct chan *c)
{
	size_t	drained = 0;
	ssize_t	n;

	if (c->fd == -1)
		return;
	event_del(c->ev_read);
	event_del(c->ev_write);
	if (c->closing) {
		shutdown(c->fd, SHUT_WR);
		while (drained < CHAN_BUF && (n = recv(c->fd, chan_scratch,
		    sizeof(chan_scratch), MSG_DONTWAIT)) > 0)
			drained += (size_t)n;
	}
	close(c->fd);
	c->fd = -1;
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
	if (why != NULL && c->fd != -1)
		log_debug("tunnel %s: connection from %s closed: %s",
		    f->tc->name, c->peer, why);
	chan_connect_cancel(c);
	chan_close_fd(c);
	if (c->state == CHAN_OPENING && c->ch != NULL &&
	    c->link->session != NULL) {
		chan_park(c);
		return;
	}
	chan_unlist(c);
	c->state = CHAN_DEAD;
	TAILQ_REMOVE(&f->chans, c, entry);
	f->conns_active--;
	c->link->conns--;
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
	int had_channel = c->ch != NULL;

	if (c->ch != NULL) {
		ssh_remove_channel_callbacks(c->ch, &c->cb);
		ssh_channel_free(c->ch);
		c->ch = NULL;
		window_release(c);	/* what libssh held is gone */
	}
	chan_unlist(c);
	/* A dynamic client still in its SOCKS handshake needs no link yet. */
	if (c->state == CHAN_WAITING || c->state == CHAN_DEAD ||
	    (c->state == CHAN_SOCKS && !had_channel))
		return;
	c->state = CHAN_OPEN;
	chan_kill(c, "link lost");
}

/* Free every dead chan; run outside any libssh callback. */
void
chan_reap_all(void)
{
	struct chan *c;

	while ((c = TAILQ_FIRST(&td->reap)) != NULL) {
		TAILQ_REMOVE(&td->reap, c, entry);
		chan_free(c);
	}
}

/*
 * The reap event: free what died during the last turn. Freed channels
 * queued CLOSE messages: let the pumps send them. A failed write made
 * libssh close a session's fd: catch it now.
 */
void
chan_reap_cb(int fd, short what, void *arg)
{
	struct link *l;

	(void)fd;
	(void)what;
	(void)arg;
	if (TAILQ_EMPTY(&td->reap))
		return;
	/* The CLOSE messages of a turn's dead chans leave together. */
	TAILQ_FOREACH(l, &td->links, entry) {
		if (l->state == LINK_UP)
			sendq_cork(l->fd);
	}
	chan_reap_all();
	TAILQ_FOREACH(l, &td->links, entry) {
		sendq_uncork(l->fd);
		if (l->state == LINK_UP && !link_fd_lost(l))
			link_kick(l);
	}
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
void
chan_park(struct chan *c)
{
	if (c->state == CHAN_DEAD || c->where == CHAN_PARKED)
		return;
	if (c->where == CHAN_READY)
		TAILQ_REMOVE(&c->link->ready, c, ready_entry);
	TAILQ_INSERT_TAIL(&c->link->parked, c, ready_entry);
	c->where = CHAN_PARKED;
}

/* The client sent bytes (or EOF): the pump reads them. */
static void
chan_read_ev_cb(int fd, short what, void *arg)
{
	struct chan *c = arg;

	(void)fd;
	(void)what;
	if (c->state == CHAN_SOCKS) {
		chan_socks_read(c);	/* no SSH involved yet */
		return;
	}
	/* Run the pump now rather than on the next turn: latency. */
	chan_want(c);
	pump_run(c->link);
}

/* The client socket has room: send the backlog. */
static void
chan_write_ev_cb(int fd, short what, void *arg)
{
	struct chan	*c = arg;
	int		 n;
	char		 why[128];

	(void)what;
	if (c->state == CHAN_CONNECTING) {
		chan_connect_done(c);
		return;
	}
	n = evbuffer_write(c->out, fd);
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		snprintf(why, sizeof(why), "send to client: %s",
		    strerror(errno));
		chan_kill(c, why);
		return;
	}
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->ev_write, NULL);
	else if (c->closing) {
		chan_kill(c, "refused");
		return;
	}
	if (evbuffer_get_length(c->out) <= CHAN_BUF / 2 &&
	    (c->leftover || c->remote_eof))
		chan_want(c);
}

/* connect_wait passed and the link is still not up. */
static void
chan_wait_cb(int fd, short what, void *arg)
{
	struct chan	*c = arg;
	char		 why[128];

	(void)fd;
	(void)what;
	if (c->state == CHAN_SOCKS) {
		c->fwd->conns_failed++;
		chan_kill(c, "SOCKS request not finished in time");
		return;
	}
	if (c->state != CHAN_WAITING)
		return;
	c->fwd->conns_failed++;
	snprintf(why, sizeof(why), "link %s not up within connect_wait "
	    "(%d s)", c->link->hc->name, c->fwd->tc->connect_wait);
	if (c->socks != NULL)
		chan_socks_refuse(c, SOCKS5_NET_UNREACH, why);
	else
		chan_kill(c, why);
}

/*
 * Send target bytes to the client: straight to the socket while nothing is
 * queued, the rest into the out buffer up to CHAN_BUF. Returns how many
 * bytes were taken; 0 also when the client is gone (the chan is killed).
 */
size_t
chan_send(struct chan *c, const void *data, size_t len)
{
	size_t	have, taken = 0, n;
	ssize_t	w;
	char	why[128];

	if (c->fd == -1)
		return (len);	/* nobody to deliver to: discard */
	have = evbuffer_get_length(c->out);
	if (have == 0) {
		w = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w == -1 && errno != EAGAIN && errno != EINTR) {
			snprintf(why, sizeof(why), "send to client: %s",
			    strerror(errno));
			chan_kill(c, why);
			return (len);
		}
		if (w > 0)
			taken = (size_t)w;
	}
	if (taken < len && have < CHAN_BUF) {
		n = len - taken;
		if (n > CHAN_BUF - have)
			n = CHAN_BUF - have;
		evbuffer_add(c->out, (const char *)data + taken, n);
		taken += n;
	}
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->ev_write, NULL);
	return (taken);
}

/*
 * Deliver n bytes read from the channel into chan_scratch: they are ours
 * now, so all of them go, even past CHAN_BUF (by at most this read). A
 * callback inside the read (libssh polls the session when the channel's
 * buffer is empty) may have filled out meanwhile. -1 when the chan died.
 */
static int
chan_deliver(struct chan *c, size_t n)
{
	size_t taken;

	CHAN_FROM_CHANNEL(c, n);
	taken = chan_send(c, chan_scratch, n);
	if (c->state == CHAN_DEAD)
		return (-1);
	if (taken < n && c->fd != -1) {
		evbuffer_add(c->out, chan_scratch + taken, n - taken);
		event_add(c->ev_write, NULL);
	}
	return (0);
}

/*
 * Hand client bytes to the channel; what it does not take (a key
 * re-exchange, a window smaller than promised) waits in pend. Returns -1
 * when the channel failed.
 */
static int
chan_to_channel(struct chan *c, const void *data, size_t len)
{
	int w;

	w = ssh_channel_write(c->ch, data, (uint32_t)len);
	if (w < 0)
		return (-1);
	CHAN_TO_CHANNEL(c, w);
	c->link->turn_budget -= (size_t)w < c->link->turn_budget ?
	    (size_t)w : c->link->turn_budget;
	/* The write read packets: callbacks may have ended this chan. */
	if (c->state == CHAN_DEAD)
		return (-2);
	if ((size_t)w < len)
		evbuffer_add(c->pend, (const char *)data + w, len - (size_t)w);
	return (0);
}

/* Channel data from the target: deliver what fits, leave the rest in libssh. */
static int
chan_data_cb(ssh_session s, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	struct chan	*c = arg;
	size_t		 n;

	(void)s;
	(void)ch;
	if (is_stderr)
		return ((int)len);
	if (c->state == CHAN_CONNECTING) {
		c->leftover = 1;	/* keep it until the target answers */
		window_data(c, len, 0);
		return (0);
	}
	if (c->state == CHAN_SOCKS) {
		n = chan_socks_input(c, data, len);
		c->leftover = n < len;
		window_data(c, len, n);
		return ((int)n);
	}
	if (c->state == CHAN_DEAD || c->fd == -1) {
		window_data(c, len, len);
		return ((int)len);
	}
	n = chan_send(c, data, len);
	if (n < len && c->win_topup && c->fd != -1) {
		/* A window top-up leaves nothing inside libssh (window.c). */
		evbuffer_add(c->out, (const char *)data + n, len - n);
		event_add(c->ev_write, NULL);
		n = len;
	}
	if (c->fwd != NULL)
		CHAN_FROM_CHANNEL(c, n);
	c->leftover = n < len;
	if (window_data(c, len, n))
		chan_want(c);	/* the pump grants more window */
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
	struct endpoint		 socks_ep;
	const char		*orig = "127.0.0.1";
	char			 host[HOST_MAXLEN + 1];
	char			*colon;
	int			 oport = 0;

	if (c->fwd == NULL)
		return (ssh_channel_open_forward(c->ch, "-", 0, orig, 0));
	t = &c->fwd->tc->target;
	if (chan_socks_target(c, &socks_ep) == 0)
		t = &socks_ep;
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
	struct endpoint	 ep;
	char		 tgt[PATH_MAXLEN + 16], why[ERR_MAXLEN];
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
		chan_set_callbacks(c);
		c->state = CHAN_OPENING;
		c->win_epoch = monotime();	/* the open's round trip */
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
			if (c->fd == -1) {
				chan_kill(c, NULL);
				return;
			}
			if (chan_socks_target(c, &ep) != 0)
				ep = f->tc->target;
			endpoint_format(&ep, 0, tgt, sizeof(tgt));
			f->conns_failed++;
			rc = ssh_open_failure(ssh_get_error(l->session), why,
			    sizeof(why));
			/*
			 * A SOCKS client picks the target: one that PermitOpen
			 * refuses is that client's error. Only a server that
			 * has refused every target in this session has
			 * forwarding off.
			 */
			if (!errclass_open_permanent(rc) || (c->socks != NULL &&
			    f->open_ok_ups == l->stats.ups))
				fwd_note_error(f, "connect to %s from %s "
				    "failed: %s", tgt, l->hc->name, why);
			else if (c->socks != NULL)
				fwd_refused(f, "%s refused every SOCKS "
				    "connection in this session: %s",
				    l->hc->name, why);
			else
				fwd_refused(f, "connect to %s from %s failed: "
				    "%s", tgt, l->hc->name, why);
			if (c->socks != NULL)
				chan_socks_opened(c, 0, why);
			else
				chan_kill(c, "channel open refused");
			return;
		}
		c->state = CHAN_OPEN;
		c->win_rtt = monotime() - c->win_epoch;
		if (c->fd == -1) {
			chan_kill(c, NULL);	/* the client left meanwhile */
			return;
		}
		log_debug("tunnel %s: connection from %s open", f->tc->name,
		    c->peer);
		f->open_ok_ups = l->stats.ups;
		if (f->attn.on)
			fwd_recovered(f);
		if (c->socks != NULL)
			chan_socks_opened(c, 1, NULL);
		/* FALLTHROUGH */
	case CHAN_OPEN:
		chan_pump_open(c);
		return;
	case CHAN_SOCKS:
		if (c->ch == NULL)
			return;
		chan_socks_step(c);	/* remote-dynamic */
		if (c->state == CHAN_DEAD || c->sreply_len == 0)
			return;
		if (chan_to_channel(c, c->sreply, c->sreply_len) == -1)
			chan_kill(c, "channel write failed");
		c->sreply_len = 0;
		return;
	case CHAN_CONNECTING:
		/* The far client left before our target answered. */
		if (c->remote_closed)
			chan_kill(c, "client left before the target answered");
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
	size_t		 len, n, space, budget = CHAN_BUDGET;
	ssize_t		 r;
	uint32_t	 win;
	int		 w, rd, rc;
	char		 why[128];

	if (c->sreply_len > 0) {
		/* remote-dynamic: the SOCKS answer goes first. */
		if ((rc = chan_to_channel(c, c->sreply, c->sreply_len)) < 0) {
			if (rc == -1)
				chan_kill(c, "channel write failed");
			return;
		}
		c->sreply_len = 0;
	}
	if (c->fd == -1 || (c->closing && c->ch != NULL &&
	    fwd_is_remote(c->fwd))) {
		chan_kill(c, NULL);
		return;
	}

	/* target -> client: bytes libssh kept while our buffer was full. */
	while (c->leftover && (len = evbuffer_get_length(c->out)) < CHAN_BUF) {
		space = CHAN_BUF - len;
		if (space > sizeof(chan_scratch))
			space = sizeof(chan_scratch);
		rd = ssh_channel_read_nonblocking(c->ch, chan_scratch,
		    (uint32_t)space, 0);
		if (c->state == CHAN_DEAD)
			return;	/* a callback ended it */
		window_read(c, rd, space);
		if (rd <= 0) {
			c->leftover = 0;
			break;
		}
		if (chan_deliver(c, (size_t)rd) == -1)
			return;
	}

	/* Grant the server a full window again, grown with the path. */
	if ((rd = window_topup(c, chan_scratch, sizeof(chan_scratch))) < 0)
		return;
	if (rd > 0 && chan_deliver(c, (size_t)rd) == -1)
		return;

	/* The target finished: pass the EOF on once everything is out. */
	if (c->remote_eof && !c->leftover && !c->shut_wr &&
	    evbuffer_get_length(c->out) == 0) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr = 1;
	}

	/* client -> target: first what the channel did not take last time. */
	while (!c->eof_sent && !c->remote_closed &&
	    (len = evbuffer_get_length(c->pend)) > 0) {
		win = ssh_channel_window_size(c->ch);
		if (l->out_blocked || win == 0) {
			chan_park(c);
			return;
		}
		n = len < win ? len : win;
		w = ssh_channel_write(c->ch, evbuffer_pullup(c->pend,
		    (ssize_t)n), (uint32_t)n);
		if (c->state == CHAN_DEAD)
			return;	/* a callback ended it */
		if (w < 0) {
			chan_kill(c, "channel write failed");
			return;
		}
		if (w == 0) {
			chan_park(c);
			return;
		}
		evbuffer_drain(c->pend, (size_t)w);
		CHAN_TO_CHANNEL(c, w);
	}

	/* Then read the client, never more than the window takes. */
	while (!c->local_eof && !c->eof_sent && !c->remote_closed) {
		if (budget == 0 || l->turn_budget == 0) {
			chan_want(c);	/* more next turn, others first */
			break;
		}
		if (membudget_full()) {
			membudget_wait(c);	/* the daemon holds enough */
			break;
		}
		win = ssh_channel_window_size(c->ch);
		if (l->out_blocked || win == 0) {
			chan_park(c);
			break;
		}
		n = sizeof(chan_scratch);
		if (n > win)
			n = win;
		if (n > budget)
			n = budget;
		if (n > l->turn_budget)
			n = l->turn_budget;
		r = recv(c->fd, chan_scratch, n, MSG_DONTWAIT);
		if (r == 0) {
			c->local_eof = 1;
			break;
		}
		if (r == -1) {
			if (errno == EAGAIN || errno == EINTR) {
				event_add(c->ev_read, NULL);
				break;
			}
			snprintf(why, sizeof(why), "read from client: %s",
			    strerror(errno));
			chan_kill(c, why);
			return;
		}
		if ((rc = chan_to_channel(c, chan_scratch, (size_t)r)) < 0) {
			if (rc == -1)
				chan_kill(c, "channel write failed");
			return;
		}
		budget -= (size_t)r;
		if (evbuffer_get_length(c->pend) > 0) {
			chan_park(c);
			break;
		}
		if ((size_t)r < n) {
			event_add(c->ev_read, NULL);	/* drained the socket */
			break;
		}
	}
	if (c->local_eof && !c->eof_sent && !c->remote_closed &&
	    evbuffer_get_length(c->pend) == 0) {
		ssh_channel_send_eof(c->ch);
		c->eof_sent = 1;
		if (c->state == CHAN_DEAD)
			return;
	}

	/* Both directions finished, or the server closed the channel. */
	if (c->shut_wr && (c->eof_sent || c->remote_closed))
		chan_kill(c, NULL);
}
