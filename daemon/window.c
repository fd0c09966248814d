/*
 * window.c: the receive window a chan grants the server, grown with the
 * bandwidth-delay product the way TCP's receive autotuning (and HPN-SSH)
 * grow theirs.
 *
 * libssh 0.10 keeps a channel's local window between WINDOWLIMIT (640,000)
 * and WINDOWBASE (1,280,000 bytes): it tops it up to WINDOWBASE when it
 * falls below half. A server can then have at most about 1.2 MB in flight
 * per round trip, 12 MB/s at 100 ms. No public call sets the window, but
 * one raises it: ssh_channel_read_timeout(ch, dest, count, 0, 0) with count
 * greater than the bytes libssh holds plus its local window sends a
 * WINDOW_ADJUST up to count less what it holds (grow_window(), channels.c,
 * libssh 0.10.6), then copies what it holds (at most count) into dest,
 * polling the session once (timeout 0) if it holds nothing.
 *
 * So each chan keeps a target window, win (libssh's window plus what libssh
 * holds for us, the bytes the server may have sent and we not yet taken),
 * starting at WINDOWBASE. Only while libssh holds nothing for the chan (the
 * client keeps up) and the window has fallen a quarter below win, the chan
 * calls that read with count = win, in "take-all" mode: the data callback
 * then takes every byte the nested poll decodes, so nothing is left inside
 * libssh and nothing is copied into dest.
 *
 * Growth: once per round trip the bytes taken from the channel in that
 * round are compared with win. The round trip is the link's keepalive
 * RTT; until a keepalive was answered, the chan's own channel open (which
 * also holds the server's connect to the target), or 100 ms for channels
 * the server opened. A server that is
 * held back by the window sends a whole window per round trip; one that is
 * held back by the path sends the bandwidth-delay product. While a round
 * took at least half the window, win doubles, up to the host's max_window
 * and never past the daemon's budget for windows beyond libssh's own. So
 * win settles between 2 and 4 times the chan's share of the path's
 * bandwidth-delay product, as TCP's does at 2 times.
 *
 * A slow client stops all of it: bytes left inside libssh mean no top-up,
 * and a round that took little means no growth. What the server may send
 * is then bounded by win: libssh's own top-up to WINDOWBASE only happens
 * when the window and what it holds together fall below WINDOWLIMIT.
 */
#include <sys/types.h>

#include <stdint.h>

#include "tunneld.h"

#define WINDOW_BASE	1280000		/* libssh 0.10's WINDOWBASE */
#define WINDOW_RTT_DEFAULT 0.1		/* seconds, until one is measured */
/*
 * Window beyond WINDOW_BASE all chans together may grant: max_buffered
 * (membudget_set_cap), this until the configuration is read.
 */
#define WINDOW_BUDGET	((uint64_t)256 * 1024 * 1024)

static uint64_t	window_extra;		/* granted beyond WINDOW_BASE */
static uint64_t	window_budget = WINDOW_BUDGET;

static void	window_round(struct chan *, double);
static void	window_kept(struct chan *, uint32_t);
static uint32_t	window_max(const struct chan *);

/* The daemon's bound on window beyond libssh's own, all chans together. */
void
window_set_budget(uint64_t bytes)
{
	window_budget = bytes;
}

/* libssh now holds n bytes for the chan: the memory budget counts them. */
static void
window_kept(struct chan *c, uint32_t n)
{
	membudget_adjust((int64_t)n - (int64_t)c->win_kept);
	c->win_kept = n;
}

/* The largest window a chan of this link may grant (host max_window). */
static uint32_t
window_max(const struct chan *c)
{
	const struct host_conf	*hc = c->link->hc;
	const struct host_conf	*now;

	/* A reload applies a new max_window to running links too. */
	if (td->conf != NULL && (now = conf_host(td->conf, hc->name)) != NULL)
		hc = now;
	if (hc->max_window < WINDOW_BASE)
		return (WINDOW_BASE);
	return ((uint32_t)hc->max_window);
}

/*
 * The data callback saw len bytes held for the chan and took n of them:
 * len less what libssh held before arrived just now, out of the window.
 * Returns 1 when a top-up is due (the chan wants a pump turn).
 */
int
window_data(struct chan *c, size_t len, size_t n)
{
	size_t fresh;

	if (c->win == 0) {
		/*
		 * Data before the first top-up (a chan still connecting its
		 * target): right after this callback libssh raises its window
		 * from the 64,000 (32,000) bytes of the open to WINDOW_BASE.
		 */
		c->win = c->win_left = WINDOW_BASE;
		c->win_epoch = monotime();
		window_kept(c, (uint32_t)(len - n));
		c->win_rx += n;
		c->win_mark = c->win_rx;
		return (0);
	}
	fresh = len > c->win_kept ? len - c->win_kept : 0;
	c->win_left -= fresh < c->win_left ? (uint32_t)fresh : c->win_left;
	window_kept(c, (uint32_t)(len - n));
	c->win_rx += n;
	if (c->win_kept > 0 || c->win_topup)
		return (0);
	return (c->win - c->win_left >= c->win / 4);
}

/* ssh_channel_read_nonblocking() asked for want bytes and returned rd. */
void
window_read(struct chan *c, int rd, size_t want)
{
	if (rd <= 0 || (size_t)rd < want) {
		window_kept(c, 0);	/* it copied all it held */
		if (rd <= 0)
			return;
	} else
		window_kept(c, c->win_kept - ((size_t)rd < c->win_kept ?
		    (uint32_t)rd : c->win_kept));
	c->win_rx += (uint64_t)rd;
}

/*
 * End a round once a round trip has passed: double the window while the
 * round took at least half of it.
 */
static void
window_round(struct chan *c, double now)
{
	double		rtt, el, per_rtt;
	uint64_t	grow;
	uint32_t	max;

	if (c->link->rtt_us > 0)
		rtt = c->link->rtt_us / 1e6;
	else if (c->win_rtt > 0)
		rtt = c->win_rtt;
	else
		rtt = WINDOW_RTT_DEFAULT;
	el = now - c->win_epoch;
	if (el < rtt)
		return;
	per_rtt = (double)(c->win_rx - c->win_mark) * rtt / el;
	c->win_epoch = now;
	c->win_mark = c->win_rx;
	max = window_max(c);
	if (per_rtt * 2 < c->win || c->win >= max)
		return;
	grow = c->win < max - c->win ? c->win : max - c->win;
	if (window_extra + grow > window_budget)
		grow = window_budget > window_extra ?
		    window_budget - window_extra : 0;
	if (grow == 0)
		return;
	window_extra += grow;
	if (c->fwd != NULL)
		log_debug("tunnel %s: connection from %s: window %u -> %u "
		    "bytes (%.0f bytes per %.1f ms round trip)",
		    c->fwd->tc->name, c->peer, c->win,
		    c->win + (uint32_t)grow, per_rtt, rtt * 1e3);
	c->win += (uint32_t)grow;
}

/*
 * Grant the server a full window again once a quarter of it is used, and
 * grow it once per round trip. Only while libssh holds nothing for this
 * chan (c->leftover clear): the call then copies nothing into buf, because
 * the data callback takes every byte the nested poll brings (win_topup).
 * Returns what was copied into buf all the same (the caller delivers it),
 * or -1 when the chan died meanwhile.
 */
int
window_topup(struct chan *c, void *buf, size_t buflen)
{
	double	now;
	int	rd;

	if (c->ch == NULL || c->leftover || c->remote_eof ||
	    c->remote_closed || c->state != CHAN_OPEN)
		return (0);
	if (c->win == 0) {
		/*
		 * Just opened: libssh granted 64,000 bytes (32,000 for a
		 * channel the server opened) and would raise it only when the
		 * first data arrives, a round trip lost. Grant WINDOW_BASE now.
		 */
		c->win = WINDOW_BASE;
		c->win_left = 0;
		c->win_epoch = monotime();
		c->win_mark = c->win_rx;
	}
	if (c->win - c->win_left < c->win / 4)
		return (0);
	if (membudget_full()) {
		membudget_wait(c);	/* granted again once it drains */
		return (0);
	}
	now = monotime();
	window_round(c, now);
	/* libssh grants count less what it holds, which is nothing. */
	c->win_left = c->win;
	window_kept(c, 0);
	c->win_topup = 1;
	rd = ssh_channel_read_timeout(c->ch, buf, c->win, 0, 0);
	c->win_topup = 0;
	if (c->state == CHAN_DEAD)
		return (-1);
	if (rd < 0)
		return (0);	/* the pump finds a broken session */
	if ((size_t)rd > buflen)
		fatalx("window_topup: libssh copied %d bytes into %zu", rd,
		    buflen);
	c->win_rx += (uint64_t)rd;
	return (rd);
}

/*
 * The chan's channel is freed: its window no longer counts against the
 * budget, nor what libssh held for it.
 */
void
window_release(struct chan *c)
{
	uint64_t extra;

	window_kept(c, 0);
	if (c->win <= WINDOW_BASE)
		return;
	extra = c->win - WINDOW_BASE;
	window_extra -= extra < window_extra ? extra : window_extra;
	c->win = WINDOW_BASE;
}
