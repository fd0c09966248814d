/*
 * notify.c: what systemd hears from the daemon besides READY=1, RELOADING=1
 * and STOPPING=1: STATUS= (a one-line summary, at most one update every
 * NOTIFY_STATUS_GAP seconds, and always the current one in the end) and
 * WATCHDOG=1 (from a timer of the event loop at half the interval systemd
 * asked for, so a stuck loop misses it and is restarted).
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "tunneld.h"

#define NOTIFY_STATUS_GAP	0.25	/* seconds between two STATUS= */

static struct event	*notify_ev_status;
static struct event	*notify_ev_watchdog;
static double		 notify_last_status;
static char		 notify_last_text[128];	/* what systemd shows */

static void	notify_status_cb(int, short, void *);
static void	notify_watchdog_cb(int, short, void *);
static void	notify_status_send(void);

/* Set up the timers; arm the watchdog when systemd wants one. */
void
notify_init(void)
{
	struct timeval	tv;
	uint64_t	usec = 0;

	if ((notify_ev_status = evtimer_new(td->base, notify_status_cb,
	    NULL)) == NULL)
		fatalx("notify_init: out of memory");
	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	if ((notify_ev_watchdog = event_new(td->base, -1, EV_PERSIST,
	    notify_watchdog_cb, NULL)) == NULL)
		fatalx("notify_init: out of memory");
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	evtimer_add(notify_ev_watchdog, &tv);
	sd_notify(0, "WATCHDOG=1");
	log_info("watchdog: WATCHDOG=1 every %.3f s", (double)usec / 1e6);
}

/* Free the timers (at the stop). */
void
notify_free(void)
{
	if (notify_ev_status != NULL)
		event_free(notify_ev_status);
	if (notify_ev_watchdog != NULL)
		event_free(notify_ev_watchdog);
	notify_ev_status = notify_ev_watchdog = NULL;
}

/* The loop is alive. */
static void
notify_watchdog_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

/*
 * A tunnel or link changed: publish the summary now, or when the gap
 * since the last one has passed (one pending update covers every change
 * until then).
 */
void
tunneld_status_changed(void)
{
	struct timeval	tv;
	double		wait;

	if (td->stopping || notify_ev_status == NULL ||
	    getenv("NOTIFY_SOCKET") == NULL ||
	    evtimer_pending(notify_ev_status, NULL))
		return;
	wait = notify_last_status + NOTIFY_STATUS_GAP - monotime();
	if (wait <= 0) {
		notify_status_send();
		return;
	}
	tv.tv_sec = 0;
	tv.tv_usec = (suseconds_t)(wait * 1e6);
	evtimer_add(notify_ev_status, &tv);
}

/* The gap has passed. */
static void
notify_status_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!td->stopping)
		notify_status_send();
}

/*
 * "STATUS=4/5 tunnels up, 1 waiting" (", N failed" when there are), and
 * ", N need(s) attention": the enabled tunnels that do (errclass.c).
 */
static void
notify_status_send(void)
{
	struct link	*l;
	struct fwd	*f;
	char		 status[128];
	int		 n = 0, up = 0, waiting = 0, failed = 0, attn = 0;
	int		 len;

	TAILQ_FOREACH(l, &td->links, entry) {
		TAILQ_FOREACH(f, &l->fwds, entry) {
			if (!f->enabled)
				continue;
			n++;
			attn += errclass_fwd(f);
			if (f->state == FWD_UP)
				up++;
			else if (f->state == FWD_FAILED)
				failed++;
			else
				waiting++;
		}
	}
	len = snprintf(status, sizeof(status), "STATUS=%d/%d tunnels up", up,
	    n);
	if (waiting > 0)
		len += snprintf(status + len, sizeof(status) - len,
		    ", %d waiting", waiting);
	if (failed > 0)
		len += snprintf(status + len, sizeof(status) - len,
		    ", %d failed", failed);
	if (attn > 0)
		snprintf(status + len, sizeof(status) - len, ", %d %s attention",
		    attn, attn == 1 ? "needs" : "need");
	if (strcmp(status, notify_last_text) == 0)
		return;		/* systemd shows it already */
	sd_notify(0, status);
	strlcpy_(notify_last_text, status, sizeof(notify_last_text));
	notify_last_status = monotime();
}

/*
 * Something else was said as STATUS= (a reload's "reloading ..."): the
 * next summary goes out even if it reads as the last one did.
 */
void
notify_status_said(void)
{
	notify_last_text[0] = '\0';
}
