/*
 * fwd_remote.c: remote tunnels (ssh -R). The server listens for us: each
 * bind is a tcpip-forward global request in the link's queue, asked again
 * after every reconnect, retried with backoff when refused, and cancelled
 * (cancel-tcpip-forward) when the tunnel stops. Connections arrive as
 * forwarded-tcpip channels, which libssh 0.10 hands out only when polled.
 *
 * A server may refuse the cancel and keep listening for our session:
 * Dropbear before 2026.90 refuses every one (svr_cancelremotetcp() compares
 * an uninitialised channel type, and get_listener() looks at its first
 * listener only; fixed by Dropbear's commit f5d44406). Whatever address
 * string we send, it cannot succeed. So such a listener is remembered as a
 * leftover of the session: its connections are closed, the tunnel's status
 * says the server still listens, and the next tunnel to ask for that
 * listener takes it back instead of being refused against ourselves. Known
 * Dropbear versions are not even sent the cancel.
 *
 * A refusal comes without a reason (RFC 4254 4: REQUEST_FAILURE). Some are
 * permanent (errclass.c): a port below 1024 for a user other than root,
 * and any refusal by a server that lets this session forward nothing
 * (OpenSSH's AllowTcpForwarding no or local, Dropbear's -k). To tell the
 * last from a port in use, a session in which no forward was granted yet
 * asks once for port 0 on loopback (GREQ_PROBE): refused too, nothing is
 * allowed; granted (and cancelled), the port was taken. The session keeps
 * the answer (link->rfwd): the server reads its configuration at login.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tunneld.h"

#define FWD_LEFTOVERS_MAX	256	/* remembered per session */
#define FWD_NOT_ALLOWED	"the server does not allow this remote forward " \
	"(OpenSSH: AllowTcpForwarding, DisableForwarding, PermitListen, " \
	"permitlisten= on the key; Dropbear: -k)"

static const char *fwd_remote_addr(const struct fwd *);
static struct fwd *fwd_remote_find(struct link *, int);
static int	fwd_remote_server_keeps(struct link *);
static void	fwd_remote_leftover(struct link *, const char *, const char *,
		    int, int);
static void	fwd_remote_refused(struct fwd *, const char *, int);

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

/*
 * Whether the server is known to refuse cancel-tcpip-forward: it did once
 * in this session, or it is a Dropbear older than 2026.90.
 */
static int
fwd_remote_server_keeps(struct link *l)
{
	const char	*banner;
	int		 year, rel;

	if (l->cancel_refused)
		return (1);
	if (l->session == NULL ||
	    (banner = ssh_get_serverbanner(l->session)) == NULL ||
	    (banner = strstr(banner, "dropbear_")) == NULL ||
	    sscanf(banner + 9, "%d.%d", &year, &rel) != 2)
		return (0);
	return (year < 2026 || (year == 2026 && rel < 90));
}

/* Stop listening on the server (if it still is) and forget queued asks. */
void
fwd_remote_stop(struct fwd *f)
{
	struct link	*l = f->link;
	struct greq	*g;
	int		 bound;

	evtimer_del(f->ev_retry);
	greq_forget(l, f);
	bound = f->remote_bound ? f->bound_port : 0;
	f->remote_bound = 0;
	f->bound_port = 0;
	if (bound == 0 || l->session == NULL || l->state != LINK_UP)
		return;
	if (fwd_remote_server_keeps(l))
		fwd_remote_leftover(l, f->tc->name, fwd_remote_addr(f),
		    f->tc->listen.port, bound);
	else {
		g = greq_push(l, GREQ_CANCEL, NULL, fwd_remote_addr(f), bound);
		strlcpy_(g->tunnel, f->tc->name, sizeof(g->tunnel));
		g->req_port = f->tc->listen.port;
	}
}

/* The server refused our cancel: it keeps the listener for our session. */
void
fwd_remote_kept(struct link *l, const struct greq *g)
{
	l->cancel_refused = 1;
	fwd_remote_leftover(l, g->tunnel, g->addr, g->req_port, g->port);
}

/*
 * Remember a listener the server keeps, and say so on its tunnel: in the
 * log, and in its last error while it is down.
 */
static void
fwd_remote_leftover(struct link *l, const char *tunnel, const char *addr,
    int req_port, int port)
{
	struct leftover	*lo;
	struct fwd	*f;

	if (l->nleftovers >= FWD_LEFTOVERS_MAX) {
		lo = TAILQ_FIRST(&l->leftovers);
		TAILQ_REMOVE(&l->leftovers, lo, entry);
		l->nleftovers--;
		free(lo);
	}
	lo = xcalloc(1, sizeof(*lo));
	strlcpy_(lo->tunnel, tunnel, sizeof(lo->tunnel));
	strlcpy_(lo->addr, addr, sizeof(lo->addr));
	lo->req_port = req_port;
	lo->port = port;
	TAILQ_INSERT_TAIL(&l->leftovers, lo, entry);
	l->nleftovers++;
	if (tunnel[0] == '\0')
		log_debug("link %s: the server keeps the port %d of our probe",
		    l->hc->name, port);
	else if ((f = fwd_find(tunnel)) != NULL && f->link == l &&
	    !f->remote_bound) {
		f->remote_kept = 1;
		fwd_note_error(f, "%s did not stop listening on %s:%d (it "
		    "refuses cancel-tcpip-forward%s): it keeps the port for "
		    "this session until the link reconnects, closing its "
		    "connections, and tunctl up takes it back", l->hc->name,
		    addr, port, l->cancel_refused ? "" : ", as Dropbear "
		    "before 2026.90 does");
	} else
		log_warnx("link %s: the server did not stop listening on "
		    "%s:%d for tunnel %s (it refuses cancel-tcpip-forward): "
		    "it keeps the port until the link reconnects",
		    l->hc->name, addr, port, tunnel);
}

/*
 * Before asking the server to listen for f: if it still listens there for
 * our session (a leftover), take that listener back. Returns 1 if so.
 */
int
fwd_remote_adopt(struct link *l, struct fwd *f)
{
	struct leftover	*lo;
	const char	*addr = fwd_remote_addr(f);
	int		 want = f->tc->listen.port;

	TAILQ_FOREACH(lo, &l->leftovers, entry) {
		if (strcmp(lo->addr, addr) != 0)
			continue;
		if (want != 0 ? lo->port == want : lo->req_port == 0 &&
		    strcmp(lo->tunnel, f->tc->name) == 0)
			break;
	}
	if (lo == NULL)
		return (0);
	log_info("tunnel %s: %s still listens on %s:%d for this session: "
	    "taken back", f->tc->name, l->hc->name, addr, lo->port);
	TAILQ_REMOVE(&l->leftovers, lo, entry);
	l->nleftovers--;
	fwd_remote_bound(f, 1, lo->port);
	free(lo);
	return (1);
}

/* The session is gone, and the server's leftovers with it. */
void
fwd_remote_forget_leftovers(struct link *l)
{
	struct leftover *lo;

	while ((lo = TAILQ_FIRST(&l->leftovers)) != NULL) {
		TAILQ_REMOVE(&l->leftovers, lo, entry);
		free(lo);
	}
	l->nleftovers = 0;
}

/* The answer to our tcpip-forward request. */
void
fwd_remote_bound(struct fwd *f, int ok, int port)
{
	const struct endpoint	*ep = &f->tc->listen;
	struct link		*l = f->link;
	char			 who[NAME_MAXLEN + 8], hint[ERR_MAXLEN];

	if (ok && port > 0 && port <= 65535) {
		f->remote_bound = 1;
		f->remote_kept = 0;
		f->bound_port = port;
		f->bind_failures = 0;
		l->rfwd = RFWD_SOME;
		log_info("tunnel %s: %s listens on %s:%d", f->tc->name,
		    l->hc->name, fwd_remote_addr(f), port);
		snprintf(who, sizeof(who), "tunnel %s", f->tc->name);
		errclass_clear(&f->attn, who);
		fwd_settle(f);
		return;
	}
	if (ok) {
		fwd_remote_refused(f, "the server answered without a port", 0);
		return;
	}
	if (errclass_privileged(ep->port, l->hc->user)) {
		snprintf(hint, sizeof(hint), "privileged port, and user %s is "
		    "not root (ports below 1024 need root on the server; "
		    "inferred: a refusal carries no reason)", l->hc->user);
		fwd_remote_refused(f, hint, 1);
		return;
	}
	if (ep->port == 0 || l->rfwd == RFWD_NONE) {
		/* Nothing is in use on port 0: it is not allowed. */
		fwd_remote_refused(f, FWD_NOT_ALLOWED, 1);
		return;
	}
	if (l->rfwd != RFWD_SOME) {
		/* Nothing of ours listens there: "in use" is a guess. */
		fwd_remote_refused(f, "the port is in use on the server, or "
		    FWD_NOT_ALLOWED, 0);
		if (l->rfwd == RFWD_UNKNOWN) {
			l->rfwd = RFWD_PROBING;
			greq_push(l, GREQ_PROBE, NULL, "localhost", 0);
		}
		return;
	}
	if (ep->host[0] != '\0' && strcmp(ep->host, "localhost") != 0 &&
	    strcmp(ep->host, "127.0.0.1") != 0 && strcmp(ep->host, "::1") != 0)
		fwd_remote_refused(f, "a public bind needs GatewayPorts "
		    "clientspecified (or yes) in the server's sshd_config "
		    "(Dropbear: -a), or the port is in use there", 0);
	else if (monotime() - l->since_mono < 2.0 *
	    l->hc->keepalive_interval * l->hc->keepalive_count_max)
		fwd_remote_refused(f, "the port is in use on the server, maybe "
		    "by our previous session, which the server has not "
		    "noticed is gone yet", 0);
	else
		fwd_remote_refused(f, "the port is in use on the server", 0);
}

/*
 * The server refused to listen for f: say why (our words: a refusal has
 * no reason, and libssh's one error text per session may be another
 * call's), and retry, with backoff, or at backoff_max when permanent.
 */
static void
fwd_remote_refused(struct fwd *f, const char *hint, int permanent)
{
	char who[NAME_MAXLEN + 8], shown[HOST_MAXLEN + 16];

	endpoint_format(&f->tc->listen, 0, shown, sizeof(shown));
	snprintf(who, sizeof(who), "tunnel %s", f->tc->name);
	fwd_set_state(f, FWD_FAILED, "%s refused to listen on %s: %s",
	    f->link->hc->name, shown, hint);
	if (permanent)
		errclass_note(&f->attn, who, f->last_error);
	else {
		errclass_drop(&f->attn);
		log_warnx("%s: %s", who, f->last_error);
	}
	/* The state may not have changed, its attention flag has: STATUS=. */
	tunneld_status_changed();
	evtimer_del(f->ev_retry);
	fwd_schedule_retry(f);
}

/*
 * The answer to our probe for port 0 (see the top of this file): granted,
 * the refusals were about their ports (cancel the probe's listener);
 * refused, every refused tunnel of the link is refused for good.
 */
void
fwd_remote_probed(struct link *l, int ok, int port)
{
	struct greq	*g;
	struct fwd	*f;

	log_debug("link %s: remote forwarding probe %s", l->hc->name,
	    ok ? "granted" : "refused");
	if (ok) {
		l->rfwd = RFWD_SOME;
		if (port <= 0 || port > 65535)
			return;
		if (fwd_remote_server_keeps(l))
			fwd_remote_leftover(l, "", "localhost", 0, port);
		else {
			g = greq_push(l, GREQ_CANCEL, NULL, "localhost", port);
			g->req_port = 0;
		}
		return;
	}
	if (l->rfwd == RFWD_SOME)
		return;		/* a forward was granted meanwhile */
	l->rfwd = RFWD_NONE;
	TAILQ_FOREACH(f, &l->fwds, entry) {
		if (fwd_is_remote(f) && f->enabled && !f->remote_bound &&
		    f->state == FWD_FAILED && !f->attn.on &&
		    !greq_pending(l, GREQ_LISTEN, f))
			fwd_remote_refused(f, FWD_NOT_ALLOWED, 1);
	}
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

/*
 * Close a forwarded channel we will not serve. libssh 0.10 accepted it
 * with a 32,000-byte window, below its WINDOWLIMIT, so it answers each data
 * packet that still arrives with a WINDOW_ADJUST, even after our CLOSE;
 * Dropbear ends the whole session on a message for a channel it has
 * already closed ("Unknown channel 0"). One read first raises the window
 * to libssh's WINDOWBASE (the read's own top-up), so nothing follows the
 * CLOSE: what still arrives fits in the window.
 */
static void
fwd_remote_refuse(ssh_channel ch)
{
	char byte;

	(void)ssh_channel_read_timeout(ch, &byte, 1, 0, 0);
	ssh_channel_free(ch);
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
			/* A leftover's, or one that raced our cancel. */
			log_debug("link %s: connection to port %d, which no "
			    "tunnel listens on: closed", l->hc->name, dport);
			fwd_remote_refuse(ch);
			continue;
		}
		if (fwd_admit(f, peer) == -1) {
			fwd_remote_refuse(ch);
			continue;
		}
		log_debug("tunnel %s: connection from %s", f->tc->name, peer);
		chan_new_forwarded(f, ch, peer);
	}
}
