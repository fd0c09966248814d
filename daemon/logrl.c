/*
 * logrl.c: rate limits for log lines that repeat, one limiter per object
 * and kind of message (struct logrl, embedded in the object).
 *
 * The first line of a burst is logged at its level and opens a window of
 * LOGRL_WINDOW seconds; the lines that follow inside it go out at debug
 * only. When the window ends, a summary at the first line's level says how
 * many were held back: "tunnel pg: 999 more like this in the last 10 s
 * (failed connections)". It begins with the same "tunnel NAME:" or "link
 * HOST:" as the lines it stands for, so the journal gives it the same
 * TUNNEL= and HOST= fields. While the burst goes on each window is twice
 * as long as the one before, up to LOGRL_WINDOW_MAX; a window without a
 * line ends the burst, and the next line is logged again at once.
 */
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "tunneld.h"

#define LOGRL_WINDOW		10.0	/* seconds: the first window */
#define LOGRL_WINDOW_MAX	300.0	/* the longest */
#define LOGRL_LINE		1024

static void	logrl_arm(struct logrl *);
static void	logrl_summary(struct logrl *);
static void	logrl_window_cb(int, short, void *);

/* Start the window's timer, creating it at the first use. */
static void
logrl_arm(struct logrl *rl)
{
	struct timeval tv;

	if (rl->ev == NULL &&
	    (rl->ev = evtimer_new(td->base, logrl_window_cb, rl)) == NULL)
		fatalx("logrl: out of memory");
	tv.tv_sec = (time_t)rl->window;
	tv.tv_usec = (suseconds_t)((rl->window - (double)tv.tv_sec) * 1e6);
	evtimer_add(rl->ev, &tv);
}

/* Say how many lines the window held back, if any. */
static void
logrl_summary(struct logrl *rl)
{
	double secs = monotime() - rl->start;

	if (rl->more == 0)
		return;
	log_pri(rl->pri, "%s: %lu more like this in the last %.0f s (%s)",
	    rl->prefix, rl->more, secs < 1 ? 1 : secs, rl->what);
	rl->more = 0;
}

/* A window is over: summarize, and go on while the burst does. */
static void
logrl_window_cb(int fd, short what, void *arg)
{
	struct logrl *rl = arg;

	(void)fd;
	(void)what;
	if (rl->more == 0) {
		rl->start = 0;		/* quiet: the burst is over */
		rl->window = 0;
		return;
	}
	logrl_summary(rl);
	rl->start = monotime();
	rl->window *= 2;
	if (rl->window > LOGRL_WINDOW_MAX)
		rl->window = LOGRL_WINDOW_MAX;
	logrl_arm(rl);
}

/*
 * Log a line ("tunnel pg: ..." or "link db: ...") at pri, or at debug if
 * it is one more of a burst; what names the kind in the summary, such as
 * "failed connections" (a string that outlives rl).
 */
void
logrl_log(struct logrl *rl, int pri, const char *what, const char *fmt, ...)
{
	char	 line[LOGRL_LINE];
	char	*colon;
	size_t	 n;
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (rl->start > 0) {
		rl->more++;
		log_debug("%s", line);
		return;
	}
	log_pri(pri, "%s", line);
	/* The summary starts as this line does, up to its first ": ". */
	if ((colon = strstr(line, ": ")) != NULL)
		n = (size_t)(colon - line);
	else
		n = strlen(line);
	if (n >= sizeof(rl->prefix))
		n = sizeof(rl->prefix) - 1;
	memcpy(rl->prefix, line, n);
	rl->prefix[n] = '\0';
	rl->what = what;
	rl->pri = pri;
	rl->more = 0;
	rl->start = monotime();
	rl->window = LOGRL_WINDOW;
	logrl_arm(rl);
}

/*
 * The object goes away: say what is still held back, free the timer. The
 * limiter may be used again afterwards.
 */
void
logrl_clear(struct logrl *rl)
{
	logrl_summary(rl);
	if (rl->ev != NULL)
		event_free(rl->ev);
	memset(rl, 0, sizeof(*rl));
}
