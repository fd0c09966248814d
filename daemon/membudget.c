/*
 * membudget.c: the daemon-wide bound on bytes buffered for connections
 * (the daemon block's max_buffered).
 *
 * Per connection everything is bounded (chan.c: CHAN_BUF, the window), but
 * thousands of connections times a megabyte or two each is gigabytes that
 * one local user can pin by not reading. So every byte the daemon buffers
 * for a connection is counted here, in one total:
 *   - a chan's out (target -> client backlog) and pend (client -> target
 *     bytes the channel did not take): evbuffers, counted by an evbuffer
 *     callback on every change (membudget_track);
 *   - what libssh holds for a channel, which the data callback left there
 *     (window.c reports c->win_kept's changes: membudget_adjust);
 *   - a session's output the kernel did not take (sendq.c's queues).
 * Once the total passes the cap, the daemon stops taking more: chans stop
 * reading their clients and stop granting window beyond libssh's own
 * (membudget_full), and the pumps stop reading the links' sockets, so that
 * servers are held back by TCP instead of filling libssh's buffers (links
 * carried through another link are still read: their bytes are already
 * here, and reading them drains the carrier). Nothing is dropped.
 *
 * The pend bytes are counted apart too (mb_pend): they drain only when the
 * server grants window, which a link says in packets that must be read. So
 * the links stay paused only while the rest, the bytes that drain by
 * writing, is at the low-water mark or more (membudget_links_paused);
 * else a budget full of pend would never drain. When the
 * total falls below the low-water mark (three quarters of the cap), the
 * chans that stopped are given a pump turn in the order they stopped and
 * the links are read again; a chan that finds the budget full again waits
 * at the end of the line, so every chan gets its turn.
 *
 * What is not counted: libssh's packet buffers (one packet per session),
 * the kernel's socket buffers, and a chan's own struct. The total can pass
 * the cap by what one pump turn moves (pump.c: PUMP_TURN_BUDGET handed to
 * libssh and PUMP_READ_BUDGET read, per link) and by what a chan's nested
 * poll decodes.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/syslog.h>

#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "tunneld.h"

#define MIB	((uint64_t)1024 * 1024)

static uint64_t		 mb_cap = (uint64_t)MAXBUF_DEFAULT * MIB;
static uint64_t		 mb_used;	/* bytes buffered now */
static uint64_t		 mb_peak;	/* the most since the cap was reached */
static uint64_t		 mb_stops;	/* times the cap was reached */
static uint64_t		 mb_pend;	/* of mb_used: chans' pend */
static int		 mb_full;	/* over the cap, not yet drained */
static int		 mb_links_paused;	/* membudget_links_paused() */
static struct chanlist	 mb_waiters = TAILQ_HEAD_INITIALIZER(mb_waiters);
static struct event	*mb_ev_wake;
static struct logrl	 mb_rl_full, mb_rl_drain;

static void	membudget_evbuffer_cb(struct evbuffer *,
		    const struct evbuffer_cb_info *, void *);
static void	membudget_check(void);
static void	membudget_wake_cb(int, short, void *);

/* The low-water mark: reading resumes below it. */
#define MB_LOW	(mb_cap - mb_cap / 4)

/* Set the cap (at start and on reload); windows share the same bound. */
void
membudget_set_cap(uint64_t bytes)
{
	mb_cap = bytes;
	window_set_budget(bytes);
	membudget_check();
}

/* A full or drained budget is noticed here, whoever changed it. */
static void
membudget_check(void)
{
	int	lp;

	lp = mb_full && mb_used > mb_pend && mb_used - mb_pend >= MB_LOW;
	if (mb_links_paused && !lp && mb_ev_wake != NULL)
		event_active(mb_ev_wake, EV_TIMEOUT, 0);	/* read links */
	mb_links_paused = lp;
	if (!mb_full && mb_used > mb_cap) {
		mb_full = 1;
		mb_stops++;
		mb_peak = mb_used;
		logrl_log(&mb_rl_full, LOG_NOTICE, "memory budget full",
		    "memory budget: %llu MiB buffered for connections, "
		    "max_buffered (%llu MiB) reached: reading stops until "
		    "it drains below %llu MiB",
		    (unsigned long long)(mb_used / MIB),
		    (unsigned long long)(mb_cap / MIB),
		    (unsigned long long)(MB_LOW / MIB));
		mb_links_paused = mb_used > mb_pend &&
		    mb_used - mb_pend >= MB_LOW;
		return;
	}
	if (mb_full && mb_used > mb_peak)
		mb_peak = mb_used;
	if (mb_full && mb_used < MB_LOW) {
		mb_full = 0;
		mb_links_paused = 0;
		logrl_log(&mb_rl_drain, LOG_NOTICE, "memory budget drained",
		    "memory budget: drained to %llu MiB (peak %llu MiB, cap "
		    "%llu MiB): reading resumes",
		    (unsigned long long)(mb_used / MIB),
		    (unsigned long long)(mb_peak / MIB),
		    (unsigned long long)(mb_cap / MIB));
		/* Not from here: this may run inside libssh or a send(). */
		if (mb_ev_wake != NULL)
			event_active(mb_ev_wake, EV_TIMEOUT, 0);
	}
}

/* Bytes came or went from a counted buffer. */
void
membudget_adjust(int64_t delta)
{
	if (delta < 0 && (uint64_t)-delta > mb_used)
		mb_used = 0;
	else
		mb_used += (uint64_t)delta;
	membudget_check();
}

/* Every change to a counted evbuffer. */
static void
membudget_evbuffer_cb(struct evbuffer *buf,
    const struct evbuffer_cb_info *info, void *arg)
{
	int64_t	delta = (int64_t)info->n_added - (int64_t)info->n_deleted;

	(void)buf;
	if (arg != NULL)
		mb_pend = delta < 0 && (uint64_t)-delta > mb_pend ? 0 :
		    mb_pend + (uint64_t)delta;
	membudget_adjust(delta);
}

/*
 * Count an evbuffer's bytes from now on; is_pend: a chan's pend, which
 * drains only when links are read.
 */
void
membudget_track(struct evbuffer *buf, int is_pend)
{
	size_t	n = evbuffer_get_length(buf);

	if (evbuffer_add_cb(buf, membudget_evbuffer_cb,
	    is_pend ? &mb_pend : NULL) == NULL)
		fatalx("membudget_track: out of memory");
	if (is_pend)
		mb_pend += n;
	membudget_adjust((int64_t)n);
}

/* The evbuffer is about to be freed: its bytes no longer count. */
void
membudget_untrack(struct evbuffer *buf, int is_pend)
{
	size_t	n;

	if (buf == NULL)
		return;
	n = evbuffer_get_length(buf);
	evbuffer_remove_cb(buf, membudget_evbuffer_cb,
	    is_pend ? &mb_pend : NULL);
	if (is_pend)
		mb_pend = n > mb_pend ? 0 : mb_pend - n;
	membudget_adjust(-(int64_t)n);
}

/* Over the cap and not yet drained below the low-water mark. */
int
membudget_full(void)
{
	return (mb_full);
}

/* Links are left unread: full, and not only of bytes waiting on them. */
int
membudget_links_paused(void)
{
	return (mb_links_paused);
}

/* The chan stopped for the budget: give it a turn once it drains. */
void
membudget_wait(struct chan *c)
{
	if (c->budget_wait || c->state == CHAN_DEAD)
		return;
	TAILQ_INSERT_TAIL(&mb_waiters, c, budget_entry);
	c->budget_wait = 1;
}

/* The chan is freed: take it out of the line. */
void
membudget_forget(struct chan *c)
{
	if (!c->budget_wait)
		return;
	TAILQ_REMOVE(&mb_waiters, c, budget_entry);
	c->budget_wait = 0;
}

/*
 * Drained: every chan that stopped gets a pump turn, in the order they
 * stopped, and every link is read again. Links are also read again when
 * what fills the budget is mostly pend (membudget_check).
 */
static void
membudget_wake_cb(int fd, short what, void *arg)
{
	struct chan	*c;
	struct link	*l;

	(void)fd;
	(void)what;
	(void)arg;
	if (mb_links_paused)
		return;
	while (!mb_full && (c = TAILQ_FIRST(&mb_waiters)) != NULL) {
		TAILQ_REMOVE(&mb_waiters, c, budget_entry);
		c->budget_wait = 0;
		chan_want(c);
	}
	TAILQ_FOREACH(l, &td->links, entry) {
		if (l->session == NULL)
			continue;
		l->readable = 1;
		link_kick(l);
	}
}

/* Bytes counted now, the cap, the peak of the last full spell, stops. */
void
membudget_stats(uint64_t *used, uint64_t *cap, uint64_t *peak,
    uint64_t *stops)
{
	*used = mb_used;
	*cap = mb_cap;
	*peak = mb_peak;
	*stops = mb_stops;
}

/* The event loop exists: create the wake event. */
void
membudget_init(void)
{
	if ((mb_ev_wake = event_new(td->base, -1, 0, membudget_wake_cb,
	    NULL)) == NULL)
		fatalx("membudget_init: out of memory");
}

/* The daemon stops. */
void
membudget_free(void)
{
	logrl_clear(&mb_rl_full);
	logrl_clear(&mb_rl_drain);
	if (mb_ev_wake != NULL)
		event_free(mb_ev_wake);
	mb_ev_wake = NULL;
}
