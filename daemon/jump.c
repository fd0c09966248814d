/*
 * jump.c: links through links (ssh -J). A host with `jump = "X"` is
 * reached through a direct-tcpip channel of X's link to the host's address
 * and port, resolved and connected by X's server, as ssh -J does. Chains
 * of any depth follow, since X may have a jump of its own.
 *
 * The carrying is done by the relay code that carries tunnel connections:
 * the inner link gets one end of a socketpair as its session's fd
 * (SSH_OPTIONS_FD); the other end is the client socket of a chan on X's
 * link, owned by a hop: a struct fwd with no listener, on X's hops list
 * (not a tunnel: status, reload and the tunnel counts never see it), whose
 * target is the inner host's address:port and whose wait policy is the
 * inner host's connect_timeout. Backpressure works both ways as for any
 * chan: the channel window on one side, the socket buffer on the other.
 *
 * Dependencies: an inner link that wants to connect enables its hop, which
 * brings X's link up (and keeps it up while the hop is enabled, even with
 * no tunnel of X's own); an idle inner link drops its hop, so X goes idle
 * when nothing behind it is enabled. When X's link leaves `up`, every link
 * behind it leaves `up` at once (its channel died with X's session) and
 * shows `waiting`, naming X; when X is up again they connect at once,
 * without their own backoff wait. Each hop keeps its own backoff, host key
 * policy (its key is checked under its own address and port), identity and
 * keepalive.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tunneld.h"

static struct link *jump_link(struct link *);
static struct fwd *jump_hop(struct link *, struct link *);
static void	jump_why(struct link *, const struct link *, const char *);

/* l's last error: why it waits for j ("jump host b (backoff: ...)"). */
static void
jump_why(struct link *l, const struct link *j, const char *what)
{
	int n;

	n = snprintf(l->last_error, sizeof(l->last_error), "%s %s (%s%s%s)",
	    what, j->hc->name, link_state_name(j->state),
	    j->last_error[0] != '\0' ? ": " : "", j->last_error);
	if (n < 0 || (size_t)n >= sizeof(l->last_error))
		strlcpy_(l->last_error + sizeof(l->last_error) - 4, "...", 4);
	l->last_error_time = time(NULL);
	l->last_error_mono = monotime();
}

/* The link of l's jump host, created (idle) when no tunnel made it yet. */
static struct link *
jump_link(struct link *l)
{
	const struct host_conf	*hc;
	struct link		*j;

	if ((j = link_find(l->hc->jump)) != NULL)
		return (j);
	if (td->conf == NULL || (hc = conf_host(td->conf, l->hc->jump)) ==
	    NULL)
		return (NULL);
	return (link_new(hc));
}

/* l's hop on its jump link j, created and enabled when missing. */
static struct fwd *
jump_hop(struct link *l, struct link *j)
{
	struct tunnel_conf	 tc;
	struct fwd		*f;

	if (l->hop != NULL && l->hop->link == j)
		return (l->hop);
	jump_drop(l);
	memset(&tc, 0, sizeof(tc));
	if (snprintf(tc.name, sizeof(tc.name), "jump to %s", l->hc->name) >=
	    (int)sizeof(tc.name))
		strlcpy_(tc.name, l->hc->name, sizeof(tc.name));	/* cut */
	tc.type = TUNNEL_LOCAL;
	strlcpy_(tc.via, j->hc->name, sizeof(tc.via));
	strlcpy_(tc.target.host, l->hc->address, sizeof(tc.target.host));
	tc.target.port = l->hc->port;
	tc.enabled = 1;
	tc.connect_wait = l->hc->connect_timeout;
	tc.max_connections = 0;
	f = fwd_new(j, &tc);
	TAILQ_REMOVE(&j->fwds, f, entry);
	f->is_hop = 1;
	f->hop_for = l;
	TAILQ_INSERT_TAIL(&j->hops, f, entry);
	f->enabled = 1;
	l->hop = f;
	log_debug("link %s: carried by link %s", l->hc->name, j->hc->name);
	return (f);
}

/*
 * Connect l through its jump host: when that link is up, a socketpair
 * whose far end a chan of the jump link relays to l's address and port;
 * else l waits (state `waiting`) and is connected by jump_state_changed.
 */
void
jump_connect(struct link *l)
{
	struct link	*j;
	struct fwd	*hop;
	struct timeval	 tv;
	int		 sp[2], n;

	if ((j = jump_link(l)) == NULL) {
		link_fail(l, "jump host %s is not in the configuration",
		    l->hc->jump);
		return;
	}
	hop = jump_hop(l, j);
	link_update(j);
	if (j->state != LINK_UP) {
		jump_why(l, j, "waiting for jump host");
		link_wait(l);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sp) == -1) {
		link_fail(l, "socketpair: %s", strerror(errno));
		return;
	}
	link_set_connecting(l);
	tv.tv_sec = l->hc->connect_timeout;
	tv.tv_usec = 0;
	evtimer_add(l->ev_timer, &tv);
	n = snprintf(l->peer, sizeof(l->peer), strchr(l->hc->address, ':') !=
	    NULL ? "[%s]:%d via %s" : "%s:%d via %s", l->hc->address,
	    l->hc->port, j->hc->name);
	if (n < 0 || (size_t)n >= sizeof(l->peer))
		log_debug("link %s: peer name cut", l->hc->name);
	log_debug("link %s: connecting to %s", l->hc->name, l->peer);
	if (chan_new(hop, sp[1], "jump") == NULL) {
		close(sp[0]);
		link_fail(l, "cannot relay through %s", j->hc->name);
		return;
	}
	l->fd = sp[0];
	link_start_ssh(l);
}

/* l's session is closing: end the chan that carried it. */
void
jump_cut(struct link *l)
{
	struct chan *c, *next;

	if (l->hop == NULL)
		return;
	for (c = TAILQ_FIRST(&l->hop->chans); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		chan_kill(c, "the link it carried closed");
	}
}

/* l needs no carrying any more (idle, removed, its jump changed). */
void
jump_drop(struct link *l)
{
	struct fwd	*f = l->hop;
	struct link	*j;

	if (f == NULL)
		return;
	j = f->link;
	l->hop = NULL;
	f->hop_for = NULL;
	if (td->stopping)
		fwd_free(f);
	else {
		fwd_remove(f);
		link_update(j);		/* idle when nothing else needs it */
	}
}

/*
 * j changed state: links behind it leave `up` at once when it is not up,
 * and connect at once when it is.
 */
void
jump_state_changed(struct link *j)
{
	struct fwd	*f, *next;
	struct link	*l;

	for (f = TAILQ_FIRST(&j->hops); f != NULL; f = next) {
		next = TAILQ_NEXT(f, entry);
		if ((l = f->hop_for) == NULL)
			continue;
		if (j->state == LINK_UP) {
			if (l->state == LINK_WAITING)
				link_connect_now(l);
			continue;
		}
		if (l->state != LINK_UP && l->state != LINK_CONNECTING &&
		    l->state != LINK_BACKOFF)
			continue;
		jump_why(l, j, "waiting for jump host");
		log_warnx("link %s: %s", l->hc->name, l->last_error);
		link_wait(l);
	}
}

/* j is being freed: the links it carried lose their hop. */
void
jump_free_hops(struct link *j)
{
	struct fwd *f;

	while ((f = TAILQ_FIRST(&j->hops)) != NULL)
		fwd_free(f);
}

/* Whether links behind j still need it. */
int
jump_in_use(const struct link *j)
{
	const struct fwd *f;

	TAILQ_FOREACH(f, &j->hops, entry) {
		if (f->enabled)
			return (1);
	}
	return (0);
}
