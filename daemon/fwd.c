/*
 * fwd.c: the tunnel object every kind shares (struct fwd): creation and
 * freeing, its state as tunctl shows it, enabling and disabling, what it
 * does when its link comes and goes, and retries with backoff. The
 * listener of the local kinds is in fwd_local.c, the server-side binding
 * of the remote kinds in fwd_remote.c.
 *
 * A tunnel removed while its link is up (reload) is marked dead and moved
 * to the link's dying list; it is freed once the channels it still had
 * being opened are answered (freeing them earlier would leave them open
 * on the server).
 *
 * A tunnel's last error stays, with its time, after the tunnel is up
 * again: tunctl shows its age. A failed connection is the client's
 * business more than the operator's: it is counted (conns_failed), kept as
 * the last error and logged at info, the first of a burst only, then a
 * summary per window (logrl.c); every one of them at debug.
 *
 * A connection refused for good (errclass.c: "administratively
 * prohibited") is the operator's business: the tunnel shows failed and
 * needs attention while its link is up, its listener still takes clients
 * (each is tried), and the next connection that opens clears it.
 */
#include <sys/types.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "tunneld.h"

#define FWD_LINK_MAX	16000	/* connections per link: below sshd's 16,384 */

static void	fwd_retry_cb(int, short, void *);
static void	fwd_error_stamp(struct fwd *, double);

/* Names of tunnel states, as tunctl shows them. */
const char *
fwd_state_name(enum fwd_state s)
{
	switch (s) {
	case FWD_DOWN:
		return ("down");
	case FWD_STARTING:
		return ("starting");
	case FWD_WAITING:
		return ("waiting");
	case FWD_UP:
		return ("up");
	case FWD_FAILED:
		return ("failed");
	}
	return ("unknown");
}

/* The list of its link a live fwd is on: tunnels, or hops (jump.c). */
struct fwdlist *
fwd_list(struct fwd *f)
{
	return (f->is_hop ? &f->link->hops : &f->link->fwds);
}

/* Create a tunnel on its link, stopped. */
struct fwd *
fwd_new(struct link *l, const struct tunnel_conf *tc)
{
	struct fwd *f;

	f = xcalloc(1, sizeof(*f));
	f->link = l;
	f->tc = xmalloc(sizeof(*f->tc));
	*f->tc = *tc;
	f->state = FWD_DOWN;
	f->since = time(NULL);
	f->since_mono = monotime();
	TAILQ_INIT(&f->chans);
	if (fwd_is_remote(f))
		l->nremote++;
	if ((f->ev_retry = evtimer_new(td->base, fwd_retry_cb, f)) == NULL ||
	    (f->ev_accept = evtimer_new(td->base, fwd_local_resume_cb,
	    f)) == NULL)
		fatalx("fwd_new: out of memory");
	TAILQ_INSERT_TAIL(&l->fwds, f, entry);
	return (f);
}

/*
 * Stop a tunnel and free it with its connections, at once: for a link
 * being freed, whose session is already closed. A live tunnel is removed
 * with fwd_remove instead.
 */
void
fwd_free(struct fwd *f)
{
	struct chan *c;

	if (f == NULL)
		return;
	if (fwd_is_remote(f))
		fwd_remote_stop(f);
	fwd_local_unbind(f);
	while ((c = TAILQ_FIRST(&f->chans)) != NULL) {
		chan_link_lost(c);
		if (c->state != CHAN_DEAD)
			chan_kill(c, "tunnel stopped");
	}
	if (f->dead)
		TAILQ_REMOVE(&f->link->dying, f, entry);
	else {
		TAILQ_REMOVE(fwd_list(f), f, entry);
		if (fwd_is_remote(f))
			f->link->nremote--;
	}
	if (f->hop_for != NULL)
		f->hop_for->hop = NULL;
	logrl_clear(&f->rl_conn);
	logrl_clear(&f->rl_admit);
	event_free(f->ev_retry);
	event_free(f->ev_accept);
	free(f->tc);
	free(f);
}

/*
 * Reload removed this tunnel: close its listener (or cancel its remote
 * forward) and its connections now, and free it on a later loop turn once
 * no channel of it is still being opened (see chan_kill). From here on
 * nothing finds it by name, and it counts for nothing.
 */
void
fwd_remove(struct fwd *f)
{
	if (f->enabled)
		fwd_disable(f);
	events_tunnel(f, fwd_state_name(f->state), "removed", NULL);
	f->dead = 1;
	TAILQ_REMOVE(fwd_list(f), f, entry);
	TAILQ_INSERT_TAIL(&f->link->dying, f, entry);
	if (f->hop_for != NULL) {
		f->hop_for->hop = NULL;
		f->hop_for = NULL;
	}
	if (fwd_is_remote(f))
		f->link->nremote--;
	tunneld_reap_soon();
}

/* Free a link's removed tunnels that have no connection left. */
void
fwd_reap(struct link *l)
{
	struct fwd *f, *next;

	for (f = TAILQ_FIRST(&l->dying); f != NULL; f = next) {
		next = TAILQ_NEXT(f, entry);
		if (TAILQ_EMPTY(&f->chans))
			fwd_free(f);
	}
}

/* Find a tunnel by name. */
struct fwd *
fwd_find(const char *name)
{
	struct link	*l;
	struct fwd	*f;

	TAILQ_FOREACH(l, &td->links, entry) {
		TAILQ_FOREACH(f, &l->fwds, entry) {
			if (strcmp(f->tc->name, name) == 0)
				return (f);
		}
	}
	return (NULL);
}

/*
 * The host a tunnel goes through, by the tunnel's name, for the journal's
 * HOST= field (log_set_via): a live tunnel's, one being removed, else
 * the configuration's; NULL if there is no such tunnel.
 */
const char *
fwd_via(const char *name)
{
	struct linklist	*lists[2];
	struct link	*l;
	struct fwd	*f;
	int		 i;

	if (td == NULL)
		return (NULL);
	if ((f = fwd_find(name)) != NULL)
		return (f->tc->via);
	lists[0] = &td->links;
	lists[1] = &td->dead_links;
	for (i = 0; i < 2; i++) {
		TAILQ_FOREACH(l, lists[i], entry) {
			TAILQ_FOREACH(f, &l->dying, entry) {
				if (strcmp(f->tc->name, name) == 0)
					return (f->tc->via);
			}
		}
	}
	for (i = 0; td->conf != NULL && i < td->conf->ntunnels; i++) {
		if (strcmp(td->conf->tunnels[i].name, name) == 0)
			return (td->conf->tunnels[i].via);
	}
	return (NULL);
}

/* The last error was set now (monotonic): note when, for its age. */
static void
fwd_error_stamp(struct fwd *f, double now)
{
	f->last_error_time = time(NULL);
	f->last_error_mono = now;
}

/*
 * Change state: stamp it, log it, tell the control side. An error given
 * is the new last error, stamped with the state's own time.
 */
void
fwd_set_state(struct fwd *f, enum fwd_state state, const char *fmt, ...)
{
	va_list	ap;
	double	now = monotime();

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(f->last_error, sizeof(f->last_error), fmt, ap);
		va_end(ap);
		fwd_error_stamp(f, now);
	}
	events_tunnel(f, fwd_state_name(f->state), fwd_state_name(state),
	    fmt != NULL ? f->last_error : NULL);
	if (f->state == state)
		return;
	log_info("tunnel %s: %s -> %s%s%s", f->tc->name,
	    fwd_state_name(f->state), fwd_state_name(state),
	    fmt != NULL ? ": " : "", fmt != NULL ? f->last_error : "");
	f->state = state;
	f->since = time(NULL);
	f->since_mono = now;
	control_state_changed();
	tunneld_status_changed();
}

/*
 * Remember an error of one connection (the caller counted it); the
 * tunnel's state stays. Logged at info, rate limited per tunnel.
 */
void
fwd_note_error(struct fwd *f, const char *fmt, ...)
{
	char	msg[ERR_MAXLEN];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!f->attn.on) {
		/* A permanent failure stays the reason: only logged. */
		strlcpy_(f->last_error, msg, sizeof(f->last_error));
		fwd_error_stamp(f, monotime());
	}
	if (f->is_hop && f->hop_for != NULL) {
		/*
		 * The jump host refused to carry the link: that is the link's
		 * error when it fails, on a later turn (its session sees the
		 * socketpair close). Failing it here would free chans under
		 * the pump that is running this chan.
		 */
		strlcpy_(f->hop_for->hop_error, f->last_error,
		    sizeof(f->hop_for->hop_error));
		logrl_log(&f->rl_conn, LOGL_WARNING, "failed hops",
		    "link %s: %s", f->hop_for->hc->name, f->last_error);
		return;
	}
	logrl_log(&f->rl_conn, LOGL_INFO, "failed connections",
	    "tunnel %s: %s", f->tc->name, msg);
}

/*
 * A connection was refused for good (errclass.c): the tunnel needs
 * attention, with this error as its reason. A hop's refusal is the error
 * of the link it would carry, which fails for good on a later turn (see
 * fwd_note_error).
 */
void
fwd_refused(struct fwd *f, const char *fmt, ...)
{
	char	who[NAME_MAXLEN + 8];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(f->last_error, sizeof(f->last_error), fmt, ap);
	va_end(ap);
	fwd_error_stamp(f, monotime());
	if (f->is_hop) {
		if (f->hop_for != NULL) {
			strlcpy_(f->hop_for->hop_error, f->last_error,
			    sizeof(f->hop_for->hop_error));
			f->hop_for->hop_refused = 1;
		}
		return;
	}
	snprintf(who, sizeof(who), "tunnel %s", f->tc->name);
	errclass_note(&f->attn, who, f->last_error);
	fwd_settle(f);
}

/* A connection opened: a permanent failure is over. */
void
fwd_recovered(struct fwd *f)
{
	char who[NAME_MAXLEN + 8];

	snprintf(who, sizeof(who), "tunnel %s", f->tc->name);
	errclass_clear(&f->attn, who);
	fwd_settle(f);
}

/* Set the state an enabled tunnel has, given its listener and its link. */
void
fwd_settle(struct fwd *f)
{
	int ready = fwd_is_remote(f) ? f->remote_bound : f->listener != NULL;

	if (!f->enabled)
		fwd_set_state(f, FWD_DOWN, NULL);
	else if (f->state == FWD_FAILED && !ready && f->link->state == LINK_UP)
		return;		/* a retry is pending */
	else if (!fwd_is_remote(f) && !ready)
		return;		/* failed, a bind retry is pending */
	else if (f->link->state == LINK_UP)
		fwd_set_state(f, !ready ? FWD_STARTING : f->attn.on ?
		    FWD_FAILED : FWD_UP, NULL);
	else if (f->link->state == LINK_CONNECTING &&
	    f->state != FWD_UP && f->state != FWD_WAITING)
		fwd_set_state(f, FWD_STARTING, NULL);	/* first connect */
	else
		fwd_set_state(f, FWD_WAITING, NULL);
}

/*
 * tunctl up: bind the listener, start the link (now, if it waits in
 * backoff). Returns -1 when the listener could not be bound; the tunnel is
 * then failed, with the reason in last_error, and the bind is retried.
 */
int
fwd_enable(struct fwd *f)
{
	char	err[ERR_MAXLEN];
	int	rc = 0;

	f->enabled = 1;
	if (fwd_is_remote(f)) {
		link_update(f->link);
		link_retry_now(f->link);
		fwd_remote_start(f);
		fwd_settle(f);
		return (0);
	}
	if (f->listener == NULL) {
		evtimer_del(f->ev_retry);
		if (fwd_local_bind(f, err, sizeof(err)) == -1) {
			fwd_set_state(f, FWD_FAILED, "%s", err);
			log_warnx("tunnel %s: %s", f->tc->name, err);
			fwd_schedule_retry(f);
			rc = -1;
		} else
			f->bind_failures = 0;
	}
	link_update(f->link);
	link_retry_now(f->link);
	fwd_settle(f);
	return (rc);
}

/* tunctl down: close the listener and every connection. */
void
fwd_disable(struct fwd *f)
{
	struct chan *c, *next;

	f->enabled = 0;
	evtimer_del(f->ev_retry);
	errclass_drop(&f->attn);
	if (fwd_is_remote(f))
		fwd_remote_stop(f);
	fwd_local_unbind(f);
	for (c = TAILQ_FIRST(&f->chans); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		chan_kill(c, "tunnel stopped");
	}
	fwd_set_state(f, FWD_DOWN, NULL);
	link_update(f->link);
}

/* tunctl restart: down, then up. */
void
fwd_restart(struct fwd *f)
{
	fwd_disable(f);
	fwd_enable(f);
}

/* The link came up: serve waiting connections. */
void
fwd_link_up(struct fwd *f)
{
	struct chan *c;

	TAILQ_FOREACH(c, &f->chans, entry)
		chan_want(c);
	if (fwd_is_remote(f)) {
		f->bind_failures = 0;
		fwd_remote_start(f);	/* every reconnect asks again */
	}
	if (f->enabled)
		fwd_settle(f);
}

/* The link went down (or started connecting): keep listening, wait. */
void
fwd_link_down(struct fwd *f)
{
	if (fwd_is_remote(f)) {
		/* The server dropped our listener with the session. */
		evtimer_del(f->ev_retry);
		f->remote_bound = 0;
		f->bound_port = 0;
	}
	if (f->enabled)
		fwd_settle(f);
}

/*
 * Retry a failed bind with the link's backoff parameters; a remote one
 * refused for good at backoff_max (errclass.c).
 */
void
fwd_schedule_retry(struct fwd *f)
{
	const struct host_conf	*hc = f->link->hc;
	struct timeval		 tv;
	double			 d;

	f->bind_failures++;
	if (fwd_is_remote(f) && f->attn.on)
		d = hc->backoff_max;
	else
		d = backoff_delay(f->bind_failures, hc->backoff_initial,
		    hc->backoff_max, (double)arc4random() / 4294967296.0);
	tv.tv_sec = (time_t)d;
	tv.tv_usec = (suseconds_t)((d - (double)tv.tv_sec) * 1e6);
	evtimer_add(f->ev_retry, &tv);
}

/* Time to try the bind again. */
static void
fwd_retry_cb(int fd, short what, void *arg)
{
	struct fwd	*f = arg;
	char		 err[ERR_MAXLEN];

	(void)fd;
	(void)what;
	if (fwd_is_remote(f)) {
		fwd_remote_start(f);
		return;
	}
	if (!f->enabled || f->listener != NULL)
		return;
	if (fwd_local_bind(f, err, sizeof(err)) == -1) {
		fwd_set_state(f, FWD_FAILED, "%s", err);
		fwd_schedule_retry(f);
		return;
	}
	log_info("tunnel %s: listening again", f->tc->name);
	f->bind_failures = 0;
	fwd_settle(f);
}

/*
 * The most connections all tunnels of one link may carry. sshd ends a
 * session that reaches 16,384 channels (OpenSSH's CHANNELS_MAX_CHANNELS,
 * its remote-forward listeners included), and every connection on it with
 * it: refuse the next connection instead. TUNNELD_MAX_LINK_CONNECTIONS
 * lowers it (for tests).
 */
static uint64_t
fwd_link_cap(void)
{
	static uint64_t	 cap;
	const char	*s;
	char		*end;
	long		 v;

	if (cap != 0)
		return (cap);
	cap = FWD_LINK_MAX;
	if ((s = getenv("TUNNELD_MAX_LINK_CONNECTIONS")) != NULL) {
		errno = 0;
		v = strtol(s, &end, 10);
		if (errno == 0 && *s != '\0' && *end == '\0' && v >= 1 &&
		    v <= FWD_LINK_MAX)
			cap = (uint64_t)v;
	}
	return (cap);
}

/* May one more connection in? Counts and logs a refusal. */
int
fwd_admit(struct fwd *f, const char *peer)
{
	uint64_t cap = fwd_link_cap();

	if (f->link->conns >= cap) {
		f->conns_failed++;
		log_warnx("tunnel %s: connection from %s refused: %" PRIu64
		    " connections open on link %s (sshd ends a session at "
		    "16,384 channels)", f->tc->name, peer, f->link->conns,
		    f->link->hc->name);
		return (-1);
	}
	if (f->tc->max_connections == 0 ||
	    f->conns_active < (uint64_t)f->tc->max_connections)
		return (0);
	f->conns_failed++;
	logrl_log(&f->rl_admit, LOGL_INFO, "refused connections",
	    "tunnel %s: connection from %s refused: %d connections open "
	    "(max_connections)", f->tc->name, peer, f->tc->max_connections);
	return (-1);
}
