/*
 * fwd_remote.c: remote tunnels (ssh -R). The server listens for us: each
 * bind is a tcpip-forward global request in the link's queue, asked again
 * after every reconnect, retried with backoff when refused, and cancelled
 * (cancel-tcpip-forward) when the tunnel stops. Connections arrive as
 * forwarded-tcpip channels, which libssh 0.10 hands out only when polled.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tunneld.h"

static const char *fwd_remote_addr(const struct fwd *);
static struct fwd *fwd_remote_find(struct link *, int);

/* Is this a tunnel whose listener lives on the server? */
int
fwd_is_remote(const struct fwd *f)
{
	return (f->tc->type == TUNNEL_REMOTE ||
	    f->tc->type == TUNNEL_REMOTE_DYNAMIC);
}

/*
 * The bind address to ask for: loopback when none was given (safer than
 * OpenSSH's default), "" for * (every address; the server's GatewayPorts
 * decides), the literal otherwise.
 */
static const char *
fwd_remote_addr(const struct fwd *f)
{
	const char *h = f->tc->listen.host;

	if (h[0] == '\0')
		return ("localhost");
	if (strcmp(h, "*") == 0)
		return ("");
	return (h);
}

/* Ask the server to listen, once the link is up. */
void
fwd_remote_start(struct fwd *f)
{
	struct link *l = f->link;

	if (!f->enabled || l->state != LINK_UP || f->remote_bound ||
	    greq_pending(l, GREQ_LISTEN, f))
		return;
	evtimer_del(f->ev_retry);
	log_debug("tunnel %s: asking %s to listen on %s:%d", f->tc->name,
	    l->hc->name, fwd_remote_addr(f), f->tc->listen.port);
	greq_push(l, GREQ_LISTEN, f, fwd_remote_addr(f), f->tc->listen.port);
	fwd_settle(f);
}

/* Stop listening on the server (if it still is) and forget queued asks. */
void
fwd_remote_stop(struct fwd *f)
{
	struct link *l = f->link;

	evtimer_del(f->ev_retry);
	greq_forget(l, f);
	if (f->remote_bound && l->session != NULL && l->state == LINK_UP)
		greq_push(l, GREQ_CANCEL, NULL, fwd_remote_addr(f),
		    f->bound_port);
	f->remote_bound = 0;
	f->bound_port = 0;
}

/* The answer to our tcpip-forward request. */
void
fwd_remote_bound(struct fwd *f, int ok, int port, const char *err)
{
	const struct endpoint	*ep = &f->tc->listen;
	const char		*hint;
	char			 shown[HOST_MAXLEN + 16];

	if (ok && port > 0 && port <= 65535) {
		f->remote_bound = 1;
		f->bound_port = port;
		f->bind_failures = 0;
		log_info("tunnel %s: %s listens on %s:%d", f->tc->name,
		    f->link->hc->name, fwd_remote_addr(f), port);
		fwd_settle(f);
		return;
	}
	endpoint_format(ep, 0, shown, sizeof(shown));
	if (ok)
		hint = "the server answered without a port";
	else if (ep->port > 0 && ep->port < 1024 &&
	    strcmp(f->link->hc->user, "root") != 0)
		hint = "ports below 1024 need root on the server";
	else if (ep->host[0] != '\0' && strcmp(ep->host, "localhost") != 0 &&
	    strcmp(ep->host, "127.0.0.1") != 0 && strcmp(ep->host, "::1") != 0)
		hint = "a public bind needs GatewayPorts clientspecified (or "
		    "yes) in the server's sshd_config, or the port is in use "
		    "there";
	else
		hint = "the port is in use on the server, maybe by a stale "
		    "session of ours that the server has not noticed yet";
	fwd_set_state(f, FWD_FAILED, "%s refused to listen on %s (%s): %s",
	    f->link->hc->name, shown, err != NULL ? err : "refused", hint);
	log_warnx("tunnel %s: %s", f->tc->name, f->last_error);
	fwd_schedule_retry(f);
}

/* Which remote tunnel of this link listens on that port? */
static struct fwd *
fwd_remote_find(struct link *l, int port)
{
	struct fwd *f;

	TAILQ_FOREACH(f, &l->fwds, entry) {
		if (fwd_is_remote(f) && f->remote_bound &&
		    f->bound_port == port)
			return (f);
	}
	return (NULL);
}

/* Take every forwarded-tcpip channel the server has opened for us. */
void
fwd_remote_accept(struct link *l)
{
	struct fwd	*f;
	ssh_channel	 ch;
	char		*orig = NULL, peer[HOST_MAXLEN + 32];
	int		 dport = 0, oport = 0;

	while (l->session != NULL && (ch = ssh_channel_open_forward_port(
	    l->session, 0, &dport, &orig, &oport)) != NULL) {
		snprintf(peer, sizeof(peer), "%s:%d", orig != NULL ? orig :
		    "?", oport);
		free(orig);
		orig = NULL;
		if ((f = fwd_remote_find(l, dport)) == NULL) {
			/* Also one that raced our cancel-tcpip-forward. */
			log_info("link %s: connection to port %d, which no "
			    "tunnel listens on: closed", l->hc->name, dport);
			ssh_channel_free(ch);
			continue;
		}
		if (fwd_admit(f, peer) == -1) {
			ssh_channel_free(ch);
			continue;
		}
		log_debug("tunnel %s: connection from %s", f->tc->name, peer);
		chan_new_forwarded(f, ch, peer);
	}
}
