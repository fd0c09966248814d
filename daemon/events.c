/*
 * events.c: the history of state changes of links and tunnels, and the
 * control clients that follow it ("tunctl events [--follow]").
 *
 * Every state change goes through link_set_state() and fwd_set_state(),
 * which call events_link() and events_tunnel(). An event is the time (wall
 * clock, never going back: a clock stepped back repeats the last time; seq
 * gives the order), the object (link or tunnel, and its name), the old and
 * new state and the reason: the error that caused the change, or else what
 * the daemon was doing (events_cause(): "tunctl down by uid 0", "reload:
 * removed"). Each field has a fixed size and the reason is cut; the last
 * EVENTS_RING events are kept in a ring of fixed size.
 *
 * What is an event:
 *  - a change of state, always (but see repeats below);
 *  - a new reason without a change of state (a tunnel that stays failed,
 *    now for another reason): an event "failed -> failed" when the reason
 *    differs from the one of the object's last event; the same reason again
 *    is not an event.
 *  - repeats: a link that cannot connect goes connecting -> backoff ->
 *    connecting... for as long as it fails. A change into or out of a retry
 *    state (backoff, failed, waiting) that repeats one of the object's
 *    recent events (same old state, new state and reason, with only retry
 *    changes of that object since) is not added again: that event counts
 *    it (repeats) and takes its time as "last". So a link that retries every
 *    second for a day holds two entries of the ring, not 172,800. Followers
 *    see every repeat as it happens: the entry again (its seq, its first
 *    time) with its count and the time of this repeat as "last".
 *
 * A follower is a control client (control.c owns it) whose unread output
 * this file appends lines to. Its queue is bounded: the history it was sent
 * plus EVENTS_QUEUE_MAX bytes. An event that does not fit is lost for it;
 * on the next loop turn, after what it has queued, it gets an "events
 * lost: N" line (JSON: {"lost":N}; N: the events of that turn that did not
 * fit), a final line, and control.c closes it once that is read. The loop never waits for a
 * follower and a follower never costs more than its bound.
 */
#include <sys/types.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "ctl-proto.h"
#include "tunneld.h"

#define EVENTS_QUEUE_MAX	(64 * 1024)	/* unread by a follower */
#define EVENTS_REPEAT_BACK	8		/* events of an object searched */

/* One follower: where its lines go and what it has lost. */
struct events_sub {
	TAILQ_ENTRY(events_sub)	 entry;
	struct bufferevent	*bev;		/* the client's, not ours */
	int			 json;
	size_t			 limit;		/* of its unread output */
	uint64_t		 lost;
	void			(*lost_cb)(void *);
	void			*arg;
};

static struct {
	struct events_entry	 ring[EVENTS_RING];
	unsigned		 head;		/* the next slot */
	unsigned		 n;		/* entries in the ring */
	uint64_t		 seq;
	struct timespec		 last;		/* never goes back */
	char			 cause[EVENTS_REASON_MAX];
	TAILQ_HEAD(, events_sub) subs;
	struct event		*ev_drop;
} ev = {
	.subs = TAILQ_HEAD_INITIALIZER(ev.subs),
};

static void	events_drop_cb(int, short, void *);
static void	events_publish(struct events_entry *);
static void	events_time(char *, size_t, const struct timespec *);
static void	events_copy(char *, size_t, const char *);
static int	events_retry_state(const char *);

/*
 * What the daemon is doing, as the reason of the changes that have none of
 * their own (fmt NULL: nothing).
 */
void
events_cause(const char *fmt, ...)
{
	va_list ap;

	ev.cause[0] = '\0';
	if (fmt == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(ev.cause, sizeof(ev.cause), fmt, ap);
	va_end(ap);
}

/* Copy a string into a fixed field: cut, printable ASCII only. */
static void
events_copy(char *dst, size_t len, const char *src)
{
	size_t i;

	for (i = 0; src != NULL && src[i] != '\0' && i + 1 < len; i++) {
		unsigned char c = src[i];
		dst[i] = c < 0x20 || c >= 0x7f ? ' ' : (char)c;
	}
	dst[i] = '\0';
	if (src != NULL && src[i] != '\0' && len > 4)
		memcpy(dst + len - 4, "...", 4);
}

/* Whether a state is one of the retry states (whose repeats collapse). */
static int
events_retry_state(const char *s)
{
	return (strcmp(s, "backoff") == 0 || strcmp(s, "failed") == 0 ||
	    strcmp(s, "waiting") == 0);
}

/* The i-th newest entry (0: the newest), or NULL. */
static struct events_entry *
events_nth(unsigned i)
{
	if (i >= ev.n)
		return (NULL);
	return (&ev.ring[(ev.head + EVENTS_RING - 1 - i) % EVENTS_RING]);
}

/*
 * Record a change of the object kind/name from old to new (old equal to
 * new: the reason changed). Returns the entry, or NULL when it was no
 * event; sets *repeat when it counted a repeat of an earlier entry.
 */
struct events_entry *
events_record(int kind, const char *name, const char *old, const char *new,
    const char *reason, int *repeat)
{
	struct events_entry	*e, *prev = NULL;
	struct timespec		 now;
	char			 why[EVENTS_REASON_MAX];
	unsigned		 i, seen = 0;

	*repeat = 0;
	if (strcmp(old, new) == 0 && (reason == NULL || *reason == '\0'))
		return (NULL);
	events_copy(why, sizeof(why), reason != NULL && *reason != '\0' ?
	    reason : ev.cause);
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec < ev.last.tv_sec || (now.tv_sec == ev.last.tv_sec &&
	    now.tv_nsec < ev.last.tv_nsec))
		now = ev.last;
	ev.last = now;

	/* The object's recent events: a reason seen, a repeat. */
	for (i = 0; (e = events_nth(i)) != NULL &&
	    seen < EVENTS_REPEAT_BACK; i++) {
		if (e->kind != kind || strcmp(e->name, name) != 0)
			continue;
		if (seen++ == 0)
			prev = e;
		if (strcmp(old, new) == 0)
			break;
		if (!events_retry_state(old) && !events_retry_state(new))
			break;
		if (!events_retry_state(e->old) && !events_retry_state(e->new))
			break;
		if (strcmp(e->old, old) == 0 && strcmp(e->new, new) == 0 &&
		    strcmp(e->reason, why) == 0) {
			e->repeats++;
			e->last = now;
			*repeat = 1;
			return (e);
		}
	}
	if (strcmp(old, new) == 0 && prev != NULL &&
	    strcmp(prev->reason, why) == 0)
		return (NULL);

	e = &ev.ring[ev.head];
	ev.head = (ev.head + 1) % EVENTS_RING;
	if (ev.n < EVENTS_RING)
		ev.n++;
	memset(e, 0, sizeof(*e));
	e->seq = ++ev.seq;
	e->time = e->last = now;
	e->repeats = 1;
	e->kind = kind;
	events_copy(e->name, sizeof(e->name), name);
	events_copy(e->old, sizeof(e->old), old);
	events_copy(e->new, sizeof(e->new), new);
	strlcpy_(e->reason, why, sizeof(e->reason));
	return (e);
}

/* Record an event and send it to the followers. */
static void
events_add(int kind, const char *name, const char *old, const char *new,
    const char *reason)
{
	struct events_entry	*e;
	int			 repeat;

	if ((e = events_record(kind, name, old, new, reason, &repeat)) != NULL)
		events_publish(e);
}

/*
 * A link changes state (called before it does): the reason is its last
 * error when that came after the previous change.
 */
void
events_link(const struct link *l, const char *old, const char *new)
{
	const char *reason = NULL;

	if (l->last_error[0] != '\0' && l->last_error_mono >= l->since_mono)
		reason = l->last_error;
	events_add(EVENTS_LINK, l->hc->name, old, new, reason);
}

/*
 * A tunnel changes state, or only its reason (old equal to new); reason
 * NULL when the change has none of its own. Hops (jump.c) are not
 * tunnels: their links say what happens.
 */
void
events_tunnel(const struct fwd *f, const char *old, const char *new,
    const char *reason)
{
	char why[EVENTS_REASON_MAX];

	if (f->is_hop)
		return;
	if (reason == NULL && strcmp(new, "waiting") == 0 &&
	    ev.cause[0] == '\0') {
		snprintf(why, sizeof(why), "link %s is not up",
		    f->link->hc->name);
		reason = why;
	}
	events_add(EVENTS_TUNNEL, f->tc->name, old, new, reason);
}

/* Format a wall clock time as RFC 3339, UTC, in milliseconds. */
static void
events_time(char *buf, size_t len, const struct timespec *ts)
{
	struct tm	tm;
	char		sec[24];
	time_t		t = ts->tv_sec;
	int		ms = (int)((ts->tv_nsec / 1000000) % 1000);

	gmtime_r(&t, &tm);
	if (strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		strlcpy_(sec, "?", sizeof(sec));
	snprintf(buf, len, "%s.%03dZ", sec, ms);
}

/*
 * One event as a line, newline included: text or JSON. Returns its length
 * (EVENTS_LINE_MAX holds any).
 */
int
events_format(const struct events_entry *e, int json, char *buf, size_t len)
{
	const char	*kind = e->kind == EVENTS_LINK ? "link" : "tunnel";
	char		 t[40], last[40], reason[EVENTS_REASON_MAX * 2];
	size_t		 i, off = 0;
	int		 n;

	events_time(t, sizeof(t), &e->time);
	events_time(last, sizeof(last), &e->last);
	if (!json) {
		n = snprintf(buf, len, "%s %s %s: %s -> %s%s%s", t, kind,
		    e->name, e->old, e->new, e->reason[0] != '\0' ? ": " : "",
		    e->reason);
		if (n >= 0 && (size_t)n < len && e->repeats > 1)
			n += snprintf(buf + n, len - n, " (%" PRIu32 " times, "
			    "the last at %s)", e->repeats, last);
		if (n >= 0 && (size_t)n < len)
			n += snprintf(buf + n, len - n, "\n");
		return (n < 0 || (size_t)n >= len ? -1 : n);
	}
	/* The fields hold printable ASCII only: escape '"' and '\'. */
	for (i = 0; e->reason[i] != '\0'; i++) {
		if (e->reason[i] == '"' || e->reason[i] == '\\')
			reason[off++] = '\\';
		reason[off++] = e->reason[i];
	}
	reason[off] = '\0';
	n = snprintf(buf, len, "{\"seq\":%" PRIu64 ",\"time\":\"%s\","
	    "\"object\":\"%s\",\"name\":\"%s\",\"old\":\"%s\",\"new\":\"%s\","
	    "\"reason\":%s%s%s,\"repeats\":%" PRIu32 ",\"last\":\"%s\"}\n",
	    e->seq, t, kind, e->name, e->old, e->new,
	    off > 0 ? "\"" : "", off > 0 ? reason : "null", off > 0 ? "\"" : "",
	    e->repeats, last);
	return (n < 0 || (size_t)n >= len ? -1 : n);
}

/* Append the history, oldest first, to out. Returns the bytes added. */
size_t
events_history(struct evbuffer *out, int json)
{
	char	 line[EVENTS_LINE_MAX];
	size_t	 total = 0;
	unsigned i;
	int	 n;

	for (i = ev.n; i-- > 0;) {
		if ((n = events_format(events_nth(i), json, line,
		    sizeof(line))) <= 0)
			continue;
		evbuffer_add(out, line, n);
		total += n;
	}
	return (total);
}

/*
 * Follow: queue every event from now on to bev's output, as long as the
 * unread output stays under history (what was just queued) plus
 * EVENTS_QUEUE_MAX. Past that, on a later loop turn, the reply is ended
 * (an "events lost" line and a final line) and lost_cb(arg) is called;
 * the subscription is freed then.
 */
struct events_sub *
events_subscribe(struct bufferevent *bev, int json, size_t history,
    void (*lost_cb)(void *), void *arg)
{
	struct events_sub *s;

	if (ev.ev_drop == NULL &&
	    (ev.ev_drop = event_new(td->base, -1, 0, events_drop_cb,
	    NULL)) == NULL)
		fatalx("events: event_new");
	s = xcalloc(1, sizeof(*s));
	s->bev = bev;
	s->json = json;
	s->limit = history + EVENTS_QUEUE_MAX;
	s->lost_cb = lost_cb;
	s->arg = arg;
	TAILQ_INSERT_TAIL(&ev.subs, s, entry);
	return (s);
}

/* Stop following (the client goes away). NULL-safe. */
void
events_unsubscribe(struct events_sub *s)
{
	if (s == NULL)
		return;
	TAILQ_REMOVE(&ev.subs, s, entry);
	free(s);
}

/* Queue an event to every follower that has room; count it lost for the
 * others. */
static void
events_publish(struct events_entry *e)
{
	struct events_sub	*s;
	struct evbuffer		*out;
	char			 line[2][EVENTS_LINE_MAX];
	int			 n[2] = { -1, -1 }, lost = 0;

	TAILQ_FOREACH(s, &ev.subs, entry) {
		if (n[s->json] == -1)
			n[s->json] = events_format(e, s->json, line[s->json],
			    sizeof(line[s->json]));
		out = bufferevent_get_output(s->bev);
		if (s->lost > 0 || n[s->json] < 0 ||
		    evbuffer_get_length(out) + n[s->json] > s->limit) {
			s->lost++;
			lost = 1;
			continue;
		}
		evbuffer_add(out, line[s->json], n[s->json]);
	}
	if (lost)
		event_active(ev.ev_drop, EV_TIMEOUT, 0);
}

/*
 * Tell the followers that fell behind how many events they lost (after
 * what they still have queued) and let control.c close them once that is
 * read (control.c gives them CONTROL_IDLE seconds).
 */
static void
events_drop_cb(int fd, short what, void *arg)
{
	struct events_sub	*s, *next;
	struct evbuffer		*out;

	(void)fd;
	(void)what;
	(void)arg;
	for (s = TAILQ_FIRST(&ev.subs); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->lost == 0)
			continue;
		TAILQ_REMOVE(&ev.subs, s, entry);
		out = bufferevent_get_output(s->bev);
		log_warnx("events: a follower read too slowly: %" PRIu64
		    " events lost, closing it", s->lost);
		if (s->json)
			evbuffer_add_printf(out, "{\"lost\":%" PRIu64 "}\n",
			    s->lost);
		else
			evbuffer_add_printf(out, "events lost: %" PRIu64 "\n",
			    s->lost);
		evbuffer_add_printf(out, "%s %d events lost: %" PRIu64 " (this "
		    "client read too slowly); the stream is closed\n", CTL_END,
		    CTL_EXIT_REFUSED, s->lost);
		s->lost_cb(s->arg);
		free(s);
	}
}

/* At exit: no follower is left (control_shutdown); free the event. */
void
events_shutdown(void)
{
	struct events_sub *s;

	while ((s = TAILQ_FIRST(&ev.subs)) != NULL)
		events_unsubscribe(s);
	if (ev.ev_drop != NULL)
		event_free(ev.ev_drop);
	ev.ev_drop = NULL;
}
