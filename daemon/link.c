/*
 * link.c: one SSH session per host, shared by every tunnel via that host.
 *
 * A link walks resolve (evdns) -> TCP connect (non-blocking, every address
 * in turn) -> SSH handshake -> host key check -> public-key auth -> up,
 * all driven by libevent, never blocking the loop. Any failure tears the
 * session down and schedules a retry with jittered exponential backoff;
 * a refused host key or authentication (a permanent failure, errclass.c)
 * waits backoff_max instead, needs attention, and is logged once.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <libgen.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/dns.h>
#include <event2/util.h>

#include "tunneld.h"

static void	link_set_state(struct link *, enum link_state);
static void	link_connect(struct link *);
static void	link_dial_cb(int, const char *, const char *, void *);
static void	link_timer_cb(int, short, void *);
static void	link_keepalive_cb(int, short, void *);
static void	link_kick_cb(int, short, void *);
static void	link_probe_cb(int, short, void *);
static void	link_close_session(struct link *);
static void	link_schedule_retry(struct link *, int, int);
static int	link_enabled_fwds(struct link *);
static void	link_vfail(struct link *, int, const char *, va_list);
static struct host_conf *link_hc_dup(const struct host_conf *);
static void	link_hc_free(struct host_conf *);
static void	link_drop_channels(struct link *);
static void	link_teardown(struct link *);


/* Names of link states, as tunctl shows them. */
const char *
link_state_name(enum link_state s)
{
	switch (s) {
	case LINK_IDLE:
		return ("idle");
	case LINK_CONNECTING:
		return ("connecting");
	case LINK_UP:
		return ("up");
	case LINK_BACKOFF:
		return ("backoff");
	case LINK_FAILED:
		return ("failed");
	case LINK_WAITING:
		return ("waiting");
	}
	return ("unknown");
}

/* Create a link for a host; it stays idle until a tunnel needs it. */
struct link *
link_new(const struct host_conf *hc)
{
	struct link	*l;

	l = xcalloc(1, sizeof(*l));
	l->hc = link_hc_dup(hc);
	l->fd = -1;
	l->rtt_us = -1;
	l->state = LINK_IDLE;
	l->since = time(NULL);
	l->since_mono = monotime();
	TAILQ_INIT(&l->fwds);
	TAILQ_INIT(&l->dying);
	TAILQ_INIT(&l->hops);
	TAILQ_INIT(&l->ready);
	TAILQ_INIT(&l->parked);
	TAILQ_INIT(&l->greqs);
	TAILQ_INIT(&l->leftovers);
	if ((l->ev_timer = evtimer_new(td->base, link_timer_cb, l)) == NULL ||
	    (l->ev_keepalive = event_new(td->base, -1, EV_PERSIST,
	    link_keepalive_cb, l)) == NULL ||
	    (l->ev_kick = event_new(td->base, -1, 0, link_kick_cb, l)) == NULL ||
	    (l->ev_probe = evtimer_new(td->base, link_probe_cb, l)) == NULL)
		fatalx("link_new: out of memory");
	TAILQ_INSERT_TAIL(&td->links, l, entry);
	return (l);
}

/* The owned copy of a host's settings, and its freeing. */
static struct host_conf *
link_hc_dup(const struct host_conf *hc)
{
	struct host_conf	*copy;
	int			 i;

	copy = xmalloc(sizeof(*copy));
	*copy = *hc;
	for (i = 0; i < hc->nidentity; i++)
		copy->identity[i] = xstrdup(hc->identity[i]);
	copy->known_hosts = xstrdup(hc->known_hosts);
	return (copy);
}

static void
link_hc_free(struct host_conf *hc)
{
	int i;

	for (i = 0; i < hc->nidentity; i++)
		free(hc->identity[i]);
	free(hc->known_hosts);
	free(hc);
}

/*
 * Stop everything a link runs: its session, its timer, the hop that
 * carried it, the hops it carried, and its tunnels (live and removed).
 * What is left is its memory (link_free) or its place on td->dead_links.
 */
static void
link_teardown(struct link *l)
{
	struct fwd *f;

	link_close_session(l);
	evtimer_del(l->ev_timer);
	jump_drop(l);
	jump_free_hops(l);
	while ((f = TAILQ_FIRST(&l->fwds)) != NULL)
		fwd_free(f);
	while ((f = TAILQ_FIRST(&l->dying)) != NULL)
		fwd_free(f);
}

/*
 * Stop and free a link with its tunnels, at once: at the daemon's stop, or
 * on the reap turn after link_remove. The caller has unlinked nothing.
 */
void
link_free(struct link *l)
{
	if (l == NULL)
		return;
	link_teardown(l);
	chan_reap_all();
	greq_clear(l);
	if (l->dead)
		TAILQ_REMOVE(&td->dead_links, l, entry);
	else
		TAILQ_REMOVE(&td->links, l, entry);
	event_free(l->ev_timer);
	event_free(l->ev_keepalive);
	event_free(l->ev_kick);
	event_free(l->ev_probe);
	link_hc_free(l->hc);
	free(l);
}

/*
 * Reload removed this host: disconnect now (its tunnels were removed
 * first), leave td->links so nothing finds it, free it on the reap turn.
 */
void
link_remove(struct link *l)
{
	link_teardown(l);
	TAILQ_REMOVE(&td->links, l, entry);
	TAILQ_INSERT_TAIL(&td->dead_links, l, entry);
	l->dead = 1;
	events_link(l, link_state_name(l->state), "removed");
	log_info("link %s: removed", l->hc->name);
	tunneld_reap_soon();
}

/*
 * Reload changed this host's settings: take the new ones and, unless the
 * link is idle, restart it in place. Its tunnels keep their listeners;
 * new clients wait connect_wait as in any outage.
 */
void
link_reconfigure(struct link *l, const struct host_conf *hc)
{
	link_hc_free(l->hc);
	l->hc = link_hc_dup(hc);
	if (l->state == LINK_IDLE)
		return;
	log_notice("link %s: settings changed, reconnecting", l->hc->name);
	link_close_session(l);
	jump_drop(l);
	evtimer_del(l->ev_timer);
	l->retries = 0;
	l->next_retry = 0;
	l->up_at = 0;
	l->last_error[0] = '\0';
	errclass_drop(&l->attn);
	link_set_state(l, LINK_IDLE);
	link_update(l);
}

/* Find a link by host name. */
struct link *
link_find(const char *name)
{
	struct link *l;

	TAILQ_FOREACH(l, &td->links, entry) {
		if (strcmp(l->hc->name, name) == 0)
			return (l);
	}
	return (NULL);
}

/* Count the enabled tunnels on a link. */
static int
link_enabled_fwds(struct link *l)
{
	struct fwd	*f;
	int		 n = 0;

	TAILQ_FOREACH(f, &l->fwds, entry) {
		if (f->enabled)
			n++;
	}
	return (n + jump_in_use(l));
}

/* Change state: log it, stamp it, tell the tunnels and the control side. */
static void
link_set_state(struct link *l, enum link_state state)
{
	struct fwd		*f;
	enum link_state		 old = l->state;

	if (old == state)
		return;
	events_link(l, link_state_name(old), link_state_name(state));
	l->state = state;
	l->since = time(NULL);
	l->since_mono = monotime();
	if (state == LINK_UP)
		log_notice("link %s: up (%s)", l->hc->name, l->peer);
	else
		log_info("link %s: %s -> %s", l->hc->name,
		    link_state_name(old), link_state_name(state));
	TAILQ_FOREACH(f, &l->fwds, entry) {
		if (state == LINK_UP)
			fwd_link_up(f);
		else
			fwd_link_down(f);
	}
	TAILQ_FOREACH(f, &l->hops, entry) {
		if (state == LINK_UP)
			fwd_link_up(f);
	}
	jump_state_changed(l);
	control_state_changed();
	tunneld_status_changed();
}

/* Connecting starts (jump.c too). */
void
link_set_connecting(struct link *l)
{
	link_set_state(l, LINK_CONNECTING);
}

/*
 * The link's jump host is not up: no session, no timer of our own; the
 * jump host's coming up connects us (jump_state_changed).
 */
void
link_wait(struct link *l)
{
	link_close_session(l);
	evtimer_del(l->ev_timer);
	l->next_retry = 0;
	l->up_at = 0;
	link_set_state(l, LINK_WAITING);
}

/* The jump host is up again: connect now, without the backoff wait. */
void
link_connect_now(struct link *l)
{
	evtimer_del(l->ev_timer);
	l->next_retry = 0;
	link_connect(l);
}

/*
 * Bring the link in line with its tunnels: start connecting when one is
 * enabled, go idle when none is.
 */
void
link_update(struct link *l)
{
	if (link_enabled_fwds(l) > 0) {
		if (l->state == LINK_IDLE)
			link_connect(l);
		return;
	}
	if (l->state != LINK_IDLE) {
		link_close_session(l);
		evtimer_del(l->ev_timer);
		l->retries = 0;
		l->next_retry = 0;
		errclass_drop(&l->attn);
		link_set_state(l, LINK_IDLE);
	}
	jump_drop(l);
}

/*
 * tunctl up: a link waiting to retry connects now, failed ones too (the
 * operator may have fixed the cause). A network change should retry the
 * links in LINK_BACKOFF only: no new route fixes a host key or a key.
 */
void
link_retry_now(struct link *l)
{
	struct link *j;

	if (l->state == LINK_WAITING && l->hop != NULL) {
		j = l->hop->link;	/* retry the hop that holds us up */
		link_retry_now(j);
		return;
	}
	if (l->state != LINK_BACKOFF && l->state != LINK_FAILED)
		return;
	evtimer_del(l->ev_timer);
	l->next_retry = 0;
	l->retries = 0;
	link_connect(l);
}

/*
 * Start a connection attempt: resolve the host's name and connect to its
 * addresses (dial.c: each address its own deadline, the next one started
 * on a failure or after 250 ms, the first to answer wins), or go through
 * the jump host. connect_timeout covers it all, handshake included.
 */
static void
link_connect(struct link *l)
{
	struct timeval	tv;
	char		who[sizeof("link ") + NAME_MAXLEN];

	link_close_session(l);
	l->next_retry = 0;
	l->hop_error[0] = '\0';
	l->hop_refused = 0;
	if (l->hc->jump[0] != '\0') {
		jump_connect(l);
		return;
	}
	link_set_state(l, LINK_CONNECTING);

	tv.tv_sec = l->hc->connect_timeout;
	tv.tv_usec = 0;
	evtimer_add(l->ev_timer, &tv);

	l->phase = PHASE_TCP;
	log_debug("link %s: connecting to %s port %d", l->hc->name,
	    l->hc->address, l->hc->port);
	snprintf(who, sizeof(who), "link %s", l->hc->name);
	l->dial = dial_start(who, l->hc->address, l->hc->port,
	    (double)l->hc->connect_timeout, link_dial_cb, l);
}

/* The dial finished: a connected socket, or why none. */
static void
link_dial_cb(int fd, const char *peer, const char *err, void *arg)
{
	struct link *l = arg;

	l->dial = NULL;
	if (fd == -1) {
		link_fail(l, "%s", err);
		return;
	}
	strlcpy_(l->peer, peer, sizeof(l->peer));
	l->fd = fd;
	link_start_ssh(l);
}

/*
 * TCP is up (or, through a jump host, our end of the socketpair): tune the
 * socket, create the libssh session, start the handshake.
 */
void
link_start_ssh(struct link *l)
{
	const struct host_conf	*hc = l->hc;
	int			 on = 1, v;
	unsigned int		 ut;
	long			 timeout = hc->connect_timeout;
	bool			 no = false;

	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	v = hc->keepalive_interval > 0 ? hc->keepalive_interval : 15;
	setsockopt(l->fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
	setsockopt(l->fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
	v = hc->keepalive_count_max;
	setsockopt(l->fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
	if (hc->keepalive_interval > 0) {
		/* Unacknowledged data past the dead-link bound fails the socket. */
		ut = (unsigned int)hc->keepalive_interval *
		    (unsigned int)(hc->keepalive_count_max + 1) * 1000;
		setsockopt(l->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut,
		    sizeof(ut));
	}

	/*
	 * libssh reads known_hosts in the key exchange (to prefer the key
	 * types it knows) and to check the key: a FIFO or a device there
	 * would block the daemon. (The patched libssh refuses them too.)
	 */
	if (known_hosts_not_regular(hc->known_hosts)) {
		link_refused(l, "known_hosts %s is not a regular file: refusing "
		    "to read host keys from it", hc->known_hosts);
		return;
	}
	sendq_attach(l->fd);
	if ((l->session = ssh_new()) == NULL)
		fatalx("ssh_new: out of memory");
	ssh_options_set(l->session, SSH_OPTIONS_FD, &l->fd);
	ssh_options_set(l->session, SSH_OPTIONS_HOST, hc->address);
	ssh_options_set(l->session, SSH_OPTIONS_PORT, &hc->port);
	/* conf.c refuses what libssh does; a stricter libssh fails here. */
	if (ssh_options_set(l->session, SSH_OPTIONS_USER, hc->user) < 0) {
		link_fail(l, "user name \"%s\" refused by libssh: %s",
		    hc->user, ssh_get_error(l->session));
		return;
	}
	ssh_options_set(l->session, SSH_OPTIONS_PROCESS_CONFIG, &no);
	ssh_options_set(l->session, SSH_OPTIONS_KNOWNHOSTS, hc->known_hosts);
	ssh_options_set(l->session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS,
	    "/dev/null");
	ssh_options_set(l->session, SSH_OPTIONS_TIMEOUT, &timeout);
	ssh_options_set(l->session, SSH_OPTIONS_NODELAY, &on);
	ssh_options_set(l->session, SSH_OPTIONS_COMPRESSION,
	    hc->compression ? "yes" : "no");
	/* conf_load checked every name with this libssh: not expected. */
	if (hc->ciphers[0] != '\0' && (ssh_options_set(l->session,
	    SSH_OPTIONS_CIPHERS_C_S, hc->ciphers) < 0 ||
	    ssh_options_set(l->session, SSH_OPTIONS_CIPHERS_S_C,
	    hc->ciphers) < 0)) {
		link_fail(l, "ciphers: %s", ssh_get_error(l->session));
		return;
	}
	if (log_getlevel() >= LOGL_DEBUG && getenv("TUNNELD_SSH_DEBUG"))
		ssh_options_set(l->session, SSH_OPTIONS_LOG_VERBOSITY_STR,
		    getenv("TUNNELD_SSH_DEBUG"));
	ssh_set_blocking(l->session, 0);
	memset(&l->sockc, 0, sizeof(l->sockc));
	memset(&l->pktc, 0, sizeof(l->pktc));
	ssh_set_counters(l->session, &l->sockc, &l->pktc);
	l->phase = PHASE_HANDSHAKE;
	l->auth_step = 0;
	log_debug("link %s: TCP connected to %s, starting SSH", hc->name,
	    l->peer);
	pump_start(l);
	pump_run(l);
}

/*
 * Tear the session down in the order libssh needs: channels first (freeing
 * them after ssh_disconnect would touch freed memory), then the event, then
 * the session, then the fd we own.
 */
static void
link_close_session(struct link *l)
{
	if (l->dial != NULL) {
		dial_cancel(l->dial);
		l->dial = NULL;
	}
	evtimer_del(l->ev_keepalive);
	evtimer_del(l->ev_probe);
	l->probe_start = 0;
	event_del(l->ev_kick);
	jump_cut(l);
	link_drop_channels(l);
	pump_stop(l);
	if (l->ev_io != NULL) {
		event_free(l->ev_io);
		l->ev_io = NULL;
	}
	if (l->key != NULL) {
		ssh_key_free(l->key);
		l->key = NULL;
	}
	agent_free(l->agent);		/* libssh keeps (and closes) its fd */
	l->agent = NULL;
	/* libssh closes our fd itself after a write error: never twice. */
	sendq_detach(l->fd);
	if (l->session != NULL && ssh_get_fd(l->session) != l->fd)
		l->fd = -1;
	if (l->session != NULL) {
		ssh_disconnect(l->session);
		ssh_free(l->session);
		l->session = NULL;
	}
	if (l->fd != -1) {
		close(l->fd);
		l->fd = -1;
	}
	l->phase = PHASE_NONE;
	greq_clear(l);
	l->ka_missed = 0;
	l->out_blocked = 0;
	l->want_write = 0;
	l->auth_notes[0] = '\0';
}

/*
 * Free every channel of the link while its session still exists. Freeing a
 * channel can make libssh send and dispatch packets, whose callbacks could
 * end another chan of this link mid-loop and leave its channel for
 * ssh_disconnect to free under it: so first no chan of the link (live, or
 * dead and waiting on td->reap) keeps a callback, then the dead ones are
 * freed, then the live ones lose their channel.
 */
static void
link_drop_channels(struct link *l)
{
	struct fwdlist	*lists[3] = { &l->fwds, &l->dying, &l->hops };
	struct fwd	*f;
	struct chan	*c, *next;
	int		 i;

	TAILQ_FOREACH(c, &td->reap, entry) {
		if (c->ch != NULL)
			ssh_remove_channel_callbacks(c->ch, &c->cb);
	}
	for (i = 0; i < 3; i++) {
		TAILQ_FOREACH(f, lists[i], entry) {
			TAILQ_FOREACH(c, &f->chans, entry) {
				if (c->ch != NULL)
					ssh_remove_channel_callbacks(c->ch,
					    &c->cb);
			}
		}
	}
	chan_reap_all();
	for (i = 0; i < 3; i++) {
		TAILQ_FOREACH(f, lists[i], entry) {
			for (c = TAILQ_FIRST(&f->chans); c != NULL; c = next) {
				next = TAILQ_NEXT(c, entry);
				chan_link_lost(c);
			}
		}
	}
}

/* Record why a link failed, close it and schedule the retry. */
static void
link_vfail(struct link *l, int permanent, const char *fmt, va_list ap)
{
	char	msg[ERR_MAXLEN], who[NAME_MAXLEN + 8];
	int	news = 1;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	l->stats.failures++;
	if (l->hop_error[0] != '\0') {
		/* The jump host's refusal says more than what followed. */
		strlcpy_(msg, l->hop_error, sizeof(msg));
		l->hop_error[0] = '\0';
		permanent |= l->hop_refused;
	}
	l->hop_refused = 0;
	strlcpy_(l->last_error, msg, sizeof(l->last_error));
	l->last_error_time = time(NULL);
	l->last_error_mono = monotime();
	snprintf(who, sizeof(who), "link %s", l->hc->name);
	if (permanent)
		news = errclass_note(&l->attn, who, msg);
	else {
		errclass_drop(&l->attn);
		log_warnx("%s: %s", who, msg);
	}
	link_close_session(l);
	evtimer_del(l->ev_timer);
	if (link_enabled_fwds(l) == 0) {
		errclass_drop(&l->attn);	/* nothing waits for it */
		link_set_state(l, LINK_IDLE);
		return;
	}
	link_schedule_retry(l, permanent, news);
}

/* A link failed for a passing reason: retry with backoff. */
void
link_fail(struct link *l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	link_vfail(l, 0, fmt, ap);
	va_end(ap);
}

/* The server refused us (host key, authentication): retry at backoff_max. */
void
link_refused(struct link *l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	link_vfail(l, 1, fmt, ap);
	va_end(ap);
}

/*
 * Arm the retry timer: SPEC's jittered doubling, reset after a stable
 * link; backoff_max after a permanent failure (said at debug when the
 * failure was no news).
 */
static void
link_schedule_retry(struct link *l, int permanent, int news)
{
	const struct host_conf	*hc = l->hc;
	struct timeval		 tv;
	double			 d, now = monotime();

	if (l->up_at > 0 && now - l->up_at >= hc->backoff_reset_after)
		l->retries = 0;
	l->up_at = 0;
	l->retries++;
	if (permanent)
		d = hc->backoff_max;
	else
		d = backoff_delay(l->retries, hc->backoff_initial,
		    hc->backoff_max, (double)arc4random() / 4294967296.0);
	l->next_retry = now + d;
	tv.tv_sec = (time_t)d;
	tv.tv_usec = (suseconds_t)((d - (double)tv.tv_sec) * 1e6);
	evtimer_add(l->ev_timer, &tv);
	log_pri(news ? LOGL_INFO : LOGL_DEBUG, "link %s: retry %d in %.1f s",
	    hc->name, l->retries, d);
	link_set_state(l, permanent ? LINK_FAILED : LINK_BACKOFF);
	control_state_changed();
}

/* The connect deadline passed, or the backoff wait is over. */
static void
link_timer_cb(int fd, short what, void *arg)
{
	struct link	*l = arg;
	char		 why[ERR_MAXLEN];

	(void)fd;
	(void)what;
	if (l->state == LINK_CONNECTING) {
		link_fail(l, "connection to %s timed out after %d s (%s)",
		    l->peer[0] != '\0' ? l->peer : l->hc->address,
		    l->hc->connect_timeout,
		    l->phase == PHASE_TCP ? "TCP connect" :
		    l->phase == PHASE_HANDSHAKE ?
		    handshake_stalled(l, why, sizeof(why)) :
		    handshake_waiting(l, why, sizeof(why)));
		return;
	}
	if (l->state == LINK_BACKOFF || l->state == LINK_FAILED) {
		l->next_retry = 0;
		link_connect(l);
	}
}

/* Handshake and authentication are done: the link is up. */
void
link_established(struct link *l)
{
	struct timeval	tv;
	char		who[NAME_MAXLEN + 8];

	evtimer_del(l->ev_timer);
	l->phase = PHASE_NONE;
	l->up_at = monotime();
	l->last_error[0] = '\0';
	snprintf(who, sizeof(who), "link %s", l->hc->name);
	errclass_clear(&l->attn, who);
	l->ka_rx_mark = l->pktc.in_packets;
	l->ka_missed = 0;
	l->rtt_us = -1;
	l->stats.ups++;
	if (l->hc->keepalive_interval > 0) {
		tv.tv_sec = l->hc->keepalive_interval;
		tv.tv_usec = 0;
		evtimer_add(l->ev_keepalive, &tv);
	}
	link_set_state(l, LINK_UP);
}

/* Every keepalive_interval: count silent intervals, send a probe. */
static void
link_keepalive_cb(int fd, short what, void *arg)
{
	struct link *l = arg;

	(void)fd;
	(void)what;
	if (l->state != LINK_UP)
		return;
	pump_keepalive_tick(l);
}

/*
 * The network changed (netwatch.c): is the session still carried? A
 * keepalive goes out (one already sent may have been answered before
 * the change: it does not count, nor does a packet the server sent just
 * before it), and its answer must come within secs. Without it the link
 * is dead, unless the server's packets still arrived in the second half
 * of that time: then the path works and the answer only waits behind
 * data queued ahead of it (a bulk transfer on a slow path). A probe
 * still out keeps its deadline through later changes.
 */
void
link_probe(struct link *l, double secs)
{
	struct timeval	 tv;
	struct greq	*g;
	int		 queued = 0;

	if (l->state != LINK_UP || l->session == NULL || l->probe_start > 0)
		return;
	l->probe_start = monotime();
	l->probe_wait = secs;
	l->probe_half = 0;
	tv.tv_sec = (time_t)(secs / 2);
	tv.tv_usec = (suseconds_t)((secs / 2 - (double)tv.tv_sec) * 1e6);
	evtimer_add(l->ev_probe, &tv);
	TAILQ_FOREACH(g, &l->greqs, entry) {
		if (g->type == GREQ_KEEPALIVE &&
		    (g != TAILQ_FIRST(&l->greqs) || !l->greq_busy))
			queued = 1;	/* not sent yet: it will do */
	}
	if (!queued)
		greq_push(l, GREQ_KEEPALIVE, NULL, NULL, 0);
	log_debug("link %s: probe sent, %.1f s to answer", l->hc->name, secs);
}

/* greq.c: a keepalive sent since the probe began has been answered. */
void
link_probe_answered(struct link *l)
{
	if (l->probe_start == 0)
		return;
	log_debug("link %s: probe answered in %.0f ms", l->hc->name,
	    (monotime() - l->probe_start) * 1e3);
	l->probe_start = 0;
	evtimer_del(l->ev_probe);
}

/*
 * Half a probe's time passed: count from now on the packets that arrive
 * and the bytes of ours the server's TCP acknowledges. All of it passed
 * with no answer: the link is dead, unless either grew. (During a slow
 * upload the server may send no SSH packet for many seconds, OpenSSH
 * adjusting the window once per megabyte, but its TCP acknowledges our
 * data. Its ACKs alone would not do: when only our way is cut, the
 * server's retransmissions keep arriving.)
 */
static void
link_probe_cb(int fd, short what, void *arg)
{
	struct link	*l = arg;
	struct timeval	 tv;

	(void)fd;
	(void)what;
	if (l->state != LINK_UP || l->probe_start == 0)
		return;
	if (!l->probe_half) {
		l->probe_half = 1;
		l->probe_mark = l->pktc.in_packets;
		l->probe_acked = netwatch_tcp_acked(l->fd);
		tv.tv_sec = (time_t)(l->probe_wait / 2);
		tv.tv_usec = (suseconds_t)((l->probe_wait / 2 -
		    (double)tv.tv_sec) * 1e6);
		evtimer_add(l->ev_probe, &tv);
		return;
	}
	l->probe_start = 0;
	if (l->read_paused || membudget_links_paused()) {
		/* membudget.c stopped reading links: the answer may be unread. */
		log_debug("link %s: probe not judged: its reading is paused "
		    "(max_buffered)", l->hc->name);
		return;
	}
	if (l->pktc.in_packets != l->probe_mark) {
		log_debug("link %s: probe not answered yet, but packets "
		    "arrive: the path works", l->hc->name);
		return;
	}
	if (l->hc->jump[0] == '\0' &&
	    netwatch_tcp_acked(l->fd) > l->probe_acked) {
		log_debug("link %s: probe not answered yet, but the server "
		    "acknowledges our data: the path works", l->hc->name);
		return;
	}
	link_fail(l, "no answer to a probe %.1f s after a network change: "
	    "link declared dead", l->probe_wait);
}

/*
 * libssh closes the session's fd itself when a write fails (socket.c).
 * Find that at once, before the number is handed to another socket, and
 * fail the link without closing the fd again. Returns 1 when it did.
 */
int
link_fd_lost(struct link *l)
{
	if (l->session == NULL || l->fd == -1 ||
	    ssh_get_fd(l->session) == l->fd)
		return (0);
	sendq_detach(l->fd);
	l->fd = -1;
	if (l->ev_io != NULL) {
		event_free(l->ev_io);	/* its fd is already closed */
		l->ev_io = NULL;
	}
	link_fail(l, "connection to %s lost: %s", l->peer,
	    ssh_get_error(l->session));
	return (1);
}

/* Schedule the pump to run on the next loop turn. */
void
link_kick(struct link *l)
{
	if (l->session != NULL)
		event_active(l->ev_kick, EV_TIMEOUT, 0);
}

/* Run a kicked pump. */
static void
link_kick_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump_run(arg);
}
