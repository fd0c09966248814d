/*
 * chan_socks.c: the SOCKS step of a connection of a dynamic kind.
 *
 * dynamic (ssh -D): the client socket speaks SOCKS here; once the request
 * is complete the chan waits for its link like any local connection and
 * opens a direct-tcpip channel to the host and port the client named (a
 * name is resolved on the far side). The client hears success only once
 * the channel is open, and the far side's refusal otherwise.
 * remote-dynamic: the forwarded channel speaks SOCKS; the request's target
 * is connected from this machine and the answer goes back in the channel.
 *
 * socks.c parses; this file moves the bytes and keeps the deadline: a
 * client that has not finished its request within CHAN_SOCKS_TIMEOUT
 * seconds is closed.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "tunneld.h"
#include "socks.h"

#define CHAN_SOCKS_TIMEOUT	10	/* seconds to finish a request */

static void	chan_socks_parse(struct chan *, struct evbuffer *);
static void	chan_socks_reply(struct chan *, const uint8_t *, size_t);

/* A new connection of a dynamic kind: expect a SOCKS request. */
void
chan_socks_start(struct chan *c)
{
	struct timeval tv = { CHAN_SOCKS_TIMEOUT, 0 };

	c->socks = xcalloc(1, sizeof(*c->socks));
	socks_init(c->socks);
	c->state = CHAN_SOCKS;
	evtimer_add(c->ev_wait, &tv);
	if (c->ch == NULL)
		event_add(c->ev_read, NULL);	/* dynamic: the client talks */
}

/* The endpoint the client asked for (open or connect to it). */
int
chan_socks_target(const struct chan *c, struct endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (c->socks == NULL || c->socks->phase != SOCKS_PH_DONE)
		return (-1);
	strlcpy_(ep->host, c->socks->host, sizeof(ep->host));
	ep->port = c->socks->port;
	return (0);
}

/* Send a SOCKS reply to whoever speaks SOCKS: the socket or the channel. */
static void
chan_socks_reply(struct chan *c, const uint8_t *reply, size_t len)
{
	if (len == 0)
		return;
	if (c->ch == NULL || fwd_is_remote(c->fwd) == 0) {
		chan_send(c, reply, len);
		return;
	}
	/* remote-dynamic: the pump writes it into the channel. */
	if (len > sizeof(c->sreply) - c->sreply_len)
		fatalx("chan_socks_reply: %zu bytes of replies", len);
	memcpy(c->sreply + c->sreply_len, reply, len);
	c->sreply_len += len;
}

/* Refuse: reply with a SOCKS failure, then close once it has gone out. */
void
chan_socks_refuse(struct chan *c, int rep5, const char *why)
{
	uint8_t reply[SOCKS_REPLY_MAX];

	log_debug("tunnel %s: SOCKS from %s refused: %s", c->fwd->tc->name,
	    c->peer, why);
	chan_socks_reply(c, reply, socks_reply_fail(c->socks, rep5, reply));
	c->closing = 1;
	if (c->ch != NULL && fwd_is_remote(c->fwd)) {
		c->state = CHAN_OPEN;
		chan_want(c);	/* the pump writes the reply, then closes */
		return;
	}
	if (c->fd == -1 || evbuffer_get_length(c->out) == 0)
		chan_kill(c, why);
}

/* Run the parser over what has arrived and act on its verdict. */
static void
chan_socks_parse(struct chan *c, struct evbuffer *in)
{
	uint8_t			 reply[SOCKS_REPLY_MAX];
	struct endpoint		 ep;
	size_t			 len, used, rlen;
	enum socks_result	 r;

	while (c->state == CHAN_SOCKS) {
		len = evbuffer_get_length(in);
		if (len > SOCKS_MSG_MAX)
			len = SOCKS_MSG_MAX;
		used = rlen = 0;
		r = socks_parse(c->socks, evbuffer_pullup(in, (ssize_t)len),
		    len, &used, reply, &rlen);
		evbuffer_drain(in, used);
		switch (r) {
		case SOCKS_NEED_MORE:
			return;
		case SOCKS_REPLY:
			chan_socks_reply(c, reply, rlen);
			continue;
		case SOCKS_ERROR:
			chan_socks_reply(c, reply, rlen);
			c->closing = 1;
			c->fwd->conns_failed++;
			if (c->ch != NULL) {
				c->state = CHAN_OPEN;
				chan_want(c);
			} else if (evbuffer_get_length(c->out) == 0)
				chan_kill(c, c->socks->error);
			return;
		case SOCKS_DONE:
			evtimer_del(c->ev_wait);
			log_debug("tunnel %s: SOCKS%d from %s to %s port %u",
			    c->fwd->tc->name, c->socks->version, c->peer,
			    c->socks->host, c->socks->port);
			if (c->ch != NULL) {
				/* remote-dynamic: connect it from here. */
				chan_socks_target(c, &ep);
				c->state = CHAN_CONNECTING;
				chan_connect(c, &ep);
				return;
			}
			c->state = CHAN_WAITING;
			chan_link_wait(c);
			return;
		}
	}
}

/* dynamic: the client socket is readable during the handshake. */
void
chan_socks_read(struct chan *c)
{
	uint8_t	buf[SOCKS_MSG_MAX];
	size_t	have = evbuffer_get_length(c->pend);
	ssize_t	n;
	char	why[128];

	if (have >= SOCKS_MSG_MAX) {
		chan_socks_parse(c, c->pend);
		return;
	}
	n = recv(c->fd, buf, SOCKS_MSG_MAX - have, MSG_DONTWAIT);
	if (n == 0) {
		chan_kill(c, "client left during the SOCKS handshake");
		return;
	}
	if (n == -1) {
		if (errno == EAGAIN || errno == EINTR) {
			event_add(c->ev_read, NULL);
			return;
		}
		snprintf(why, sizeof(why), "read from client: %s",
		    strerror(errno));
		chan_kill(c, why);
		return;
	}
	evbuffer_add(c->pend, buf, (size_t)n);
	chan_socks_parse(c, c->pend);
	if (c->state == CHAN_SOCKS)
		event_add(c->ev_read, NULL);
}

/*
 * remote-dynamic: channel data during the handshake (inside the pump).
 * Takes what fits in one request; the rest stays in libssh.
 */
size_t
chan_socks_input(struct chan *c, const void *data, size_t len)
{
	size_t have = evbuffer_get_length(c->out), n = 0;

	if (have < SOCKS_MSG_MAX) {
		n = SOCKS_MSG_MAX - have;
		if (n > len)
			n = len;
		evbuffer_add(c->out, data, n);
	}
	chan_want(c);
	return (n);
}

/* remote-dynamic: parse what the channel brought (run by the pump). */
void
chan_socks_step(struct chan *c)
{
	/* The request and the client's first bytes wait in out. */
	chan_socks_parse(c, c->out);
}

/* dynamic: the far side answered our channel open. */
void
chan_socks_opened(struct chan *c, int ok, const char *err)
{
	uint8_t reply[SOCKS_REPLY_MAX];

	if (ok) {
		chan_socks_reply(c, reply, socks_reply_ok(c->socks, reply));
		return;
	}
	chan_socks_refuse(c, socks_map_ssh_error(err), err);
}

/* remote-dynamic: our connect to the requested target finished. */
void
chan_socks_connected(struct chan *c, int ok, const char *err)
{
	uint8_t reply[SOCKS_REPLY_MAX];

	if (ok) {
		chan_socks_reply(c, reply, socks_reply_ok(c->socks, reply));
		return;
	}
	chan_socks_refuse(c, socks_map_open_failure(2, err), err);
}
