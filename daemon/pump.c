/*
 * pump.c: the one place that drives a link's libssh session inside the
 * libevent loop.
 *
 * Each link has one event on its socket: EV_READ always, EV_WRITE only
 * while libssh holds output the kernel would not take. pump_run() is called
 * from that event, from the link's kick event (a chan has work) and from
 * the keepalive timer. It reads and dispatches packets (channel callbacks
 * run here and only set flags or fill bufferevents), gives every waiting
 * chan its turn, collects the answer to the global request in flight,
 * flushes, and re-arms the event.
 *
 * While the daemon's memory budget is full (membudget.c) the socket is not
 * read: the server is held back by TCP rather than filling libssh's
 * buffers. A link carried through another link is read all the same: its
 * bytes are here already, and reading them drains the carrier's chan.
 *
 * Global requests (keepalives, tcpip-forward, cancels) go through the
 * link's queue in greq.c, one at a time. Liveness is judged by packets
 * received (the session's packet counter), not by the keepalive's reply.
 */
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "tunneld.h"

/*
 * Reads per pump, and the bytes they may bring: one read is 4 KiB in
 * Debian's libssh, up to 256 KiB in the patched one (LIBSSH=patched), so
 * the count alone would let a turn take 16 MiB past the memory budget.
 */
#define PUMP_MAX_READS	64
#define PUMP_READ_BUDGET (256 * 1024)
/* Client bytes all chans of a link may hand libssh in one turn. */
#define PUMP_TURN_BUDGET (1024 * 1024)

static void	pump_io_cb(int, short, void *);
static int	pump_read(struct link *);
static void	pump_chans(struct link *);
static int	pump_check_session(struct link *);
static int	pump_out_blocked(struct link *, int);
static int	pump_read_paused(const struct link *);

/* The session is handed to libssh: watch its socket. */
void
pump_start(struct link *l)
{
	if (l->ev_io != NULL)
		event_free(l->ev_io);
	l->ev_io = event_new(td->base, l->fd, EV_READ | EV_PERSIST,
	    pump_io_cb, l);
	if (l->ev_io == NULL)
		fatalx("pump_start: out of memory");
	event_add(l->ev_io, NULL);
	l->want_write = 0;
	l->read_paused = 0;
	l->out_blocked = 0;
}

/* Stop watching the socket and drop the libssh event context. */
void
pump_stop(struct link *l)
{
	if (l->sev != NULL) {
		ssh_event_remove_session(l->sev, l->session);
		ssh_event_free(l->sev);
		l->sev = NULL;
	}
	if (l->ev_io != NULL) {
		event_free(l->ev_io);
		l->ev_io = NULL;
	}
}

/* The socket is readable or writable. */
static void
pump_io_cb(int fd, short what, void *arg)
{
	struct link *l = arg;

	(void)fd;
	if (what & EV_READ)
		l->readable = 1;
	if ((what & EV_WRITE) && sendq_flush(l->fd) == -1) {
		link_fail(l, "connection to %s lost: %s", l->peer,
		    strerror(errno));
		return;
	}
	pump_run(l);
}

/*
 * Output is held back: by libssh (SSH_AGAIN) or in our queue of what the
 * kernel did not take (sendq.c). -1 when the socket failed.
 */
static int
pump_out_blocked(struct link *l, int rc)
{
	if (sendq_flush(l->fd) == -1) {
		link_fail(l, "connection to %s lost: %s", l->peer,
		    strerror(errno));
		return (-1);
	}
	return (rc == SSH_AGAIN || sendq_pending(l->fd) > 0);
}

/* The session is up and the memory budget full: leave its socket unread. */
static int
pump_read_paused(const struct link *l)
{
	return (l->sev != NULL && l->hop == NULL && membudget_links_paused());
}

/*
 * Arm EV_WRITE only while libssh has output the kernel did not take, and
 * EV_READ unless reading is paused.
 */
void
pump_update_event(struct link *l)
{
	short	ev = EV_PERSIST;
	int	paused = pump_read_paused(l);

	if (l->ev_io == NULL || (l->want_write == l->out_blocked &&
	    l->read_paused == paused))
		return;
	if (!paused)
		ev |= EV_READ;
	if (l->out_blocked)
		ev |= EV_WRITE;
	event_del(l->ev_io);
	event_assign(l->ev_io, td->base, l->fd, ev, pump_io_cb, l);
	if (ev != EV_PERSIST)
		event_add(l->ev_io, NULL);
	l->want_write = l->out_blocked;
	l->read_paused = paused;
}

/*
 * A closed or broken session fails the link. Returns -1 when it did.
 */
static int
pump_check_session(struct link *l)
{
	const char	*msg;
	int		 status;

	if (link_fd_lost(l))
		return (-1);
	status = ssh_get_status(l->session);
	if (ssh_is_connected(l->session) &&
	    (status & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0)
		return (0);
	msg = ssh_get_disconnect_message(l->session);
	if (msg != NULL)
		link_fail(l, "disconnected by %s: %s", l->peer, msg);
	else
		link_fail(l, "connection to %s lost: %s", l->peer,
		    ssh_get_error(l->session));
	return (-1);
}

/*
 * Read and dispatch what the socket holds, a bounded amount per turn, and
 * nothing more once the memory budget stops the links: what is left waits
 * in the kernel (the socket event is level-triggered and comes again).
 */
static int
pump_read(struct link *l)
{
	uint64_t	before, start = l->sockc.in_bytes;
	int		i, rc;

	for (i = 0; i < PUMP_MAX_READS; i++) {
		before = l->sockc.in_bytes;
		rc = ssh_event_dopoll(l->sev, 0);
		if (rc == SSH_ERROR)
			return (pump_check_session(l) == -1 ? -1 : 0);
		/*
		 * Collect a global answer at once: libssh reads the port a
		 * tcpip-forward for port 0 got from its last packet.
		 */
		if (l->greq_busy)
			greq_run(l);
		if (l->sockc.in_bytes == before ||
		    l->sockc.in_bytes - start >= PUMP_READ_BUDGET ||
		    pump_read_paused(l))
			break;
	}
	return (pump_check_session(l));
}

/*
 * Give every chan with work its turn; park those waiting for a packet.
 * A chan's turn may run libssh callbacks that end or requeue any chan, so
 * chans are taken off the ready list one at a time, as many as were on it.
 */
static void
pump_chans(struct link *l)
{
	struct chan	*c;
	size_t		 n = 0;

	if (l->pktc.in_packets != l->pump_rx_mark || !l->out_blocked) {
		/* Window adjusts and open confirmations arrive as packets. */
		l->pump_rx_mark = l->pktc.in_packets;
		while ((c = TAILQ_FIRST(&l->parked)) != NULL) {
			TAILQ_REMOVE(&l->parked, c, ready_entry);
			TAILQ_INSERT_TAIL(&l->ready, c, ready_entry);
			c->where = CHAN_READY;
		}
	}
	TAILQ_FOREACH(c, &l->ready, ready_entry)
		n++;
	l->turn_budget = PUMP_TURN_BUDGET;
	while (n-- > 0 && l->session != NULL &&
	    (c = TAILQ_FIRST(&l->ready)) != NULL) {
		TAILQ_REMOVE(&l->ready, c, ready_entry);
		c->where = CHAN_NOWHERE;
		chan_pump(c);
	}
}

/* Run the link's session: handshake, or move data when up. */
void
pump_run(struct link *l)
{
	int rc;

	if (l->session == NULL || l->in_pump)
		return;
	l->in_pump = 1;
	if (l->phase == PHASE_HANDSHAKE || l->phase == PHASE_AUTH) {
		rc = handshake_step(l);
		if (rc == -1) {
			l->in_pump = 0;
			return;
		}
		if (rc == 0) {
			rc = ssh_blocking_flush(l->session, 0);
			l->in_pump = 0;
			if ((rc = pump_out_blocked(l, rc)) == -1)
				return;
			l->out_blocked = rc;
			pump_update_event(l);
			return;
		}
		if ((l->sev = ssh_event_new()) == NULL ||
		    ssh_event_add_session(l->sev, l->session) != SSH_OK) {
			l->in_pump = 0;
			link_fail(l, "cannot watch the session: %s",
			    ssh_get_error(l->session));
			return;
		}
		l->in_pump = 0;
		l->readable = 1;	/* packets may have come with the last step */
		link_established(l);
		if (l->session == NULL)
			return;
		l->in_pump = 1;
	}

	/* The turn's small packets leave in one segment (sendq.c). */
	sendq_cork(l->fd);
	/* A kick (a chan has work) needs no read: the socket event will say. */
	if (l->readable && !pump_read_paused(l)) {
		l->readable = 0;
		if (pump_read(l) == -1) {
			sendq_uncork(l->fd);
			l->in_pump = 0;
			return;
		}
	}
	/*
	 * Chans first: ssh_get_error() still holds the reason of a refused
	 * channel open, which polling for forwarded channels overwrites.
	 */
	pump_chans(l);
	/* Polling for forwarded channels reads the socket: not while paused. */
	if (l->session != NULL && l->nremote > 0 && !pump_read_paused(l))
		fwd_remote_accept(l);
	if (l->session == NULL) {
		l->in_pump = 0;
		return;
	}
	greq_run(l);
	rc = ssh_blocking_flush(l->session, 0);
	sendq_uncork(l->fd);
	if (rc == SSH_ERROR) {
		l->in_pump = 0;
		pump_check_session(l);
		return;
	}
	/*
	 * Parked chans wait for a packet or for the output to drain. Packets
	 * read by a chan's own calls or by the flush come with no socket
	 * event, so look again on the next turn.
	 */
	l->in_pump = 0;
	if ((rc = pump_out_blocked(l, rc)) == -1)
		return;
	l->in_pump = 1;
	if (!TAILQ_EMPTY(&l->parked) && ((l->out_blocked && !rc) ||
	    l->pktc.in_packets != l->pump_rx_mark))
		link_kick(l);
	l->out_blocked = rc;
	if (pump_check_session(l) == -1) {
		l->in_pump = 0;
		return;
	}
	pump_update_event(l);
	l->in_pump = 0;
}

/*
 * Every keepalive_interval: an interval without a single packet in counts
 * as missed; keepalive_count_max missed in a row and the link is dead. So a
 * vanished peer is found within keepalive_interval * (count_max + 1).
 */
void
pump_keepalive_tick(struct link *l)
{
	if (l->pktc.in_packets != l->ka_rx_mark || l->read_paused ||
	    membudget_links_paused()) {
		/*
		 * Unread packets are no sign of a dead peer (nor, behind a
		 * jump host, a carrier left unread).
		 */
		l->ka_rx_mark = l->pktc.in_packets;
		l->ka_missed = 0;
	} else if (++l->ka_missed >= l->hc->keepalive_count_max) {
		link_fail(l, "no answer from %s for %d s (%d keepalives "
		    "unanswered): link declared dead", l->peer,
		    l->ka_missed * l->hc->keepalive_interval, l->ka_missed);
		return;
	}
	if (!greq_pending(l, GREQ_KEEPALIVE, NULL))
		greq_push(l, GREQ_KEEPALIVE, NULL, NULL, 0);
	pump_run(l);
}
