/*
 * reload.c: tunctl reload and SIGHUP. The file the daemon started with is
 * parsed again with no side effect; a file with any error is rejected
 * whole. A good one is merged into what runs, bgpd's way: every tunnel and
 * host is marked kept, changed, replaced, removed or added, the marks are
 * applied in an order that never refuses a client needlessly, and the old
 * configuration is freed.
 *
 *   kept      same settings: listener and connections untouched
 *   changed   same listen, host and kind: the fwd stays (its listener or
 *             remote forward too) and takes the new settings; connections
 *             already open finish on the old target, new ones use the new
 *   replaced  listen, kind or host changed: the old fwd is removed (its
 *             connections closed) and a new one added under the same name
 *
 * The summary calls changed and replaced tunnels, and hosts restarted in
 * place ("host NAME"), "restarted", as SPEC section 3 does.
 *   removed   listener closed, remote forward cancelled, connections closed
 *   added     started as at start-up
 *
 * A listening socket a removed or replaced tunnel leaves behind is handed
 * to the new tunnel that listens on the same endpoint (fwd_local_take), so
 * ports swapped or moved between tunnels are never closed. A remote
 * forward is cancelled before the new one is asked for (the link's global
 * requests run in order). A host whose settings changed is restarted in
 * place; a host no tunnel uses any more is disconnected.
 */
#include <sys/types.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "tunneld.h"

enum reload_mark {
	MARK_KEEP,
	MARK_CHANGE,
	MARK_REPLACE,
	MARK_REMOVE,
};

/* The names of one kind of action, for the summary line. */
struct reload_names {
	int	n;
	int	full;		/* buf ends with "..." */
	char	buf[384];
};

struct reload_report {
	struct reload_names	kept, restarted, added, removed, disconnected;
};

static int	reload_host_equal(const struct host_conf *,
		    const struct host_conf *);
static int	reload_tunnel_equal(const struct tunnel_conf *,
		    const struct tunnel_conf *);
static int	reload_remote_side(enum tunnel_type);
static int	reload_host_used(const struct conf *, const char *);
static const struct tunnel_conf *reload_tunnel(const struct conf *,
		    const char *);
static void	reload_name(struct reload_names *, const char *);
static void	reload_apply(struct conf *, struct reload_report *);
static void	reload_daemon(struct conf *, struct conf *, char *, size_t);
static void	reload_summary(const struct reload_report *, double,
		    const char *, char *, size_t);
static struct fwd *reload_listener_of(struct fwd **, int,
		    const struct tunnel_conf *);

/* Whether two hosts connect the same way (every setting but the line). */
static int
reload_host_equal(const struct host_conf *a, const struct host_conf *b)
{
	int i;

	if (strcmp(a->address, b->address) != 0 || a->port != b->port ||
	    strcmp(a->user, b->user) != 0 || a->nidentity != b->nidentity ||
	    a->agent != b->agent ||
	    strcmp(a->known_hosts, b->known_hosts) != 0 ||
	    a->host_key_policy != b->host_key_policy ||
	    a->connect_timeout != b->connect_timeout ||
	    a->keepalive_interval != b->keepalive_interval ||
	    a->keepalive_count_max != b->keepalive_count_max ||
	    a->backoff_initial != b->backoff_initial ||
	    a->backoff_max != b->backoff_max ||
	    a->backoff_reset_after != b->backoff_reset_after ||
	    a->compression != b->compression ||
	    strcmp(a->ciphers, b->ciphers) != 0 ||
	    strcmp(a->jump, b->jump) != 0)
		return (0);
	for (i = 0; i < a->nidentity; i++) {
		if (strcmp(a->identity[i], b->identity[i]) != 0)
			return (0);
	}
	return (1);
}

/* Whether two endpoints are written the same (not only equal in effect). */
static int
reload_endpoint_same(const struct endpoint *a, const struct endpoint *b)
{
	return (a->is_unix == b->is_unix && a->port == b->port &&
	    strcmp(a->host, b->host) == 0 && strcmp(a->path, b->path) == 0);
}

/* Whether two tunnels have the same settings (every one but the line). */
static int
reload_tunnel_equal(const struct tunnel_conf *a, const struct tunnel_conf *b)
{
	return (a->type == b->type && strcmp(a->via, b->via) == 0 &&
	    reload_endpoint_same(&a->listen, &b->listen) &&
	    reload_endpoint_same(&a->target, &b->target) &&
	    a->enabled == b->enabled && a->connect_wait == b->connect_wait &&
	    a->max_connections == b->max_connections);
}

/* Does this kind listen on the server (rather than here)? */
static int
reload_remote_side(enum tunnel_type t)
{
	return (t == TUNNEL_REMOTE || t == TUNNEL_REMOTE_DYNAMIC);
}

/* Whether a tunnel goes via the host, or another host jumps through it. */
static int
reload_host_used(const struct conf *conf, const char *name)
{
	int i;

	for (i = 0; i < conf->ntunnels; i++) {
		if (strcmp(conf->tunnels[i].via, name) == 0)
			return (1);
	}
	for (i = 0; i < conf->nhosts; i++) {
		if (strcmp(conf->hosts[i].jump, name) == 0)
			return (1);
	}
	return (0);
}

/* A tunnel of a configuration, by name. */
static const struct tunnel_conf *
reload_tunnel(const struct conf *conf, const char *name)
{
	int i;

	for (i = 0; i < conf->ntunnels; i++) {
		if (strcmp(conf->tunnels[i].name, name) == 0)
			return (&conf->tunnels[i]);
	}
	return (NULL);
}

/* Add a name to a summary list; past the buffer it ends with "...". */
static void
reload_name(struct reload_names *r, const char *name)
{
	size_t	len = strlen(r->buf);
	int	w;

	if (r->n++ > 0 && r->full)
		return;
	w = snprintf(r->buf + len, sizeof(r->buf) - len, "%s%s",
	    len > 0 ? ", " : "", name);
	if (w < 0 || (size_t)w + 6 >= sizeof(r->buf) - len) {
		r->buf[len] = '\0';
		strlcpy_(r->buf + len, len > 0 ? ", ..." : "...",
		    sizeof(r->buf) - len);
		r->full = 1;
	}
}

/*
 * Of the going-away tunnels, the one whose listener sits on the endpoint
 * tc wants (same side of the link, written the same), or NULL.
 */
static struct fwd *
reload_listener_of(struct fwd **gone, int ngone, const struct tunnel_conf *tc)
{
	int i;

	if (reload_remote_side(tc->type))
		return (NULL);
	for (i = 0; i < ngone; i++) {
		if (gone[i] != NULL && gone[i]->listener != NULL &&
		    !reload_remote_side(gone[i]->tc->type) &&
		    endpoint_equal(&gone[i]->tc->listen, &tc->listen) &&
		    (tc->listen.is_unix || tc->listen.port != 0))
			return (gone[i]);
	}
	return (NULL);
}

/*
 * Merge a new configuration into what runs. Order: hosts whose settings
 * changed restart first (so new tunnels start on the new settings); new
 * fwds are created; listeners of going-away tunnels are handed over; the
 * going-away tunnels are removed (releasing what was not handed over and
 * cancelling remote forwards); changed tunnels take their settings; new
 * tunnels start; hosts left without tunnels are disconnected.
 */
static void
reload_apply(struct conf *nc, struct reload_report *rep)
{
	const struct tunnel_conf	*ntc;
	const struct host_conf		*nhc;
	struct link			*l, *lnext;
	struct fwd			*f, **gone, **added, *from;
	struct tunnel_conf		*old;
	enum reload_mark		*marks;
	struct fwd			**fwds;
	char				 hname[NAME_MAXLEN + 8];
	int				 n = 0, i, ngone = 0, nadded = 0, was;

	TAILQ_FOREACH(l, &td->links, entry) {
		TAILQ_FOREACH(f, &l->fwds, entry)
			n++;
	}
	fwds = xcalloc((size_t)n + 1, sizeof(*fwds));
	marks = xcalloc((size_t)n + 1, sizeof(*marks));
	gone = xcalloc((size_t)n + 1, sizeof(*gone));
	added = xcalloc((size_t)nc->ntunnels + 1, sizeof(*added));

	/* Mark every running tunnel. */
	n = 0;
	TAILQ_FOREACH(l, &td->links, entry) {
		TAILQ_FOREACH(f, &l->fwds, entry) {
			fwds[n] = f;
			ntc = reload_tunnel(nc, f->tc->name);
			if (ntc == NULL)
				marks[n] = MARK_REMOVE;
			else if (reload_tunnel_equal(f->tc, ntc))
				marks[n] = MARK_KEEP;
			else if (strcmp(f->tc->via, ntc->via) != 0 ||
			    f->tc->type != ntc->type ||
			    !reload_endpoint_same(&f->tc->listen,
			    &ntc->listen))
				marks[n] = MARK_REPLACE;
			else
				marks[n] = MARK_CHANGE;
			if (marks[n] == MARK_REMOVE || marks[n] == MARK_REPLACE)
				gone[ngone++] = f;
			n++;
		}
	}

	/* Hosts whose settings changed, and that tunnels still use, restart
	 * in place; the others are disconnected below. */
	TAILQ_FOREACH(l, &td->links, entry) {
		if ((nhc = conf_host(nc, l->hc->name)) == NULL ||
		    reload_host_equal(l->hc, nhc))
			continue;
		if (!reload_host_used(nc, nhc->name))
			continue;
		log_info("reload: host %s changed", l->hc->name);
		snprintf(hname, sizeof(hname), "host %s", l->hc->name);
		reload_name(&rep->restarted, hname);
		events_cause("reload: host %s changed", l->hc->name);
		link_reconfigure(l, nhc);
	}

	/* New fwds (added, or replacing one), stopped for now. */
	for (i = 0; i < nc->ntunnels; i++) {
		ntc = &nc->tunnels[i];
		f = fwd_find(ntc->name);
		if (f != NULL) {
			for (was = 0; was < n && fwds[was] != f; was++)
				;
			if (marks[was] != MARK_REPLACE)
				continue;
		}
		if ((l = link_find(ntc->via)) == NULL) {
			if ((nhc = conf_host(nc, ntc->via)) == NULL)
				fatalx("reload: tunnel %s: no host %s",
				    ntc->name, ntc->via);
			l = link_new(nhc);
		}
		added[nadded++] = fwd_new(l, ntc);
		if (f == NULL)
			reload_name(&rep->added, ntc->name);
		else
			reload_name(&rep->restarted, ntc->name);
	}

	/* Listeners change hands before anything is closed or bound. */
	for (i = 0; i < nadded; i++) {
		f = added[i];
		if (f->tc->enabled &&
		    (from = reload_listener_of(gone, ngone, f->tc)) != NULL) {
			log_info("reload: tunnel %s takes over the listener "
			    "of tunnel %s", f->tc->name, from->tc->name);
			fwd_local_take(f, from);
		}
	}

	/* Going-away tunnels leave (fwd_find no longer sees them). */
	for (i = 0; i < n; i++) {
		if (marks[i] == MARK_KEEP) {
			reload_name(&rep->kept, fwds[i]->tc->name);
			continue;
		}
		if (marks[i] == MARK_CHANGE)
			continue;
		log_info("reload: tunnel %s %s", fwds[i]->tc->name,
		    marks[i] == MARK_REMOVE ? "removed" : "replaced");
		if (marks[i] == MARK_REMOVE)
			reload_name(&rep->removed, fwds[i]->tc->name);
		events_cause("reload: %s", marks[i] == MARK_REMOVE ?
		    "removed" : "replaced");
		fwd_remove(fwds[i]);
	}

	/* Changed tunnels take their new settings. */
	for (i = 0; i < n; i++) {
		if (marks[i] != MARK_CHANGE)
			continue;
		f = fwds[i];
		ntc = reload_tunnel(nc, f->tc->name);
		log_info("reload: tunnel %s changed", f->tc->name);
		reload_name(&rep->restarted, f->tc->name);
		events_cause("reload: settings changed");
		old = f->tc;
		f->tc = xmalloc(sizeof(*f->tc));
		*f->tc = *ntc;
		if (old->enabled && !ntc->enabled)
			fwd_disable(f);
		else if (!old->enabled && ntc->enabled && !f->enabled)
			fwd_enable(f);
		else if (f->attn.on) {
			/* The new settings may be the fix: try them. */
			errclass_drop(&f->attn);
			fwd_settle(f);
		} else
			events_tunnel(f, fwd_state_name(f->state),
			    fwd_state_name(f->state), "reload: settings changed");
		free(old);
	}

	/* New tunnels start as at start-up. */
	events_cause("reload: started");
	for (i = 0; i < nadded; i++) {
		if (added[i]->tc->enabled)
			fwd_enable(added[i]);
	}

	/*
	 * Hosts no tunnel uses any more, and that carry no link behind them,
	 * are disconnected; removing one can free its jump host in turn.
	 */
	do {
		was = 0;
		for (l = TAILQ_FIRST(&td->links); l != NULL; l = lnext) {
			lnext = TAILQ_NEXT(l, entry);
			if (!TAILQ_EMPTY(&l->fwds) || !TAILQ_EMPTY(&l->hops))
				continue;
			snprintf(hname, sizeof(hname), "host %s", l->hc->name);
			reload_name(&rep->disconnected, hname);
			events_cause("reload: no tunnel uses it");
			link_remove(l);
			was = 1;
		}
	} while (was);

	events_cause(NULL);
	free(fwds);
	free(marks);
	free(gone);
	free(added);
}

/*
 * Settings of the daemon itself: the log level, max_buffered, the control
 * socket.
 */
static void
reload_daemon(struct conf *oc, struct conf *nc, char *note, size_t len)
{
	const char	*og = oc->control_group != NULL ? oc->control_group : "";
	const char	*ng = nc->control_group != NULL ? nc->control_group : "";
	char		 err[ERR_MAXLEN];

	note[0] = '\0';
	if (!td->verbose && nc->log_level != oc->log_level) {
		log_setlevel(nc->log_level);
		log_info("reload: log level now %d", nc->log_level);
	}
	if (nc->max_buffered != oc->max_buffered) {
		membudget_set_cap((uint64_t)nc->max_buffered << 20);
		log_info("reload: max_buffered now %d MiB", nc->max_buffered);
	}
	control_reconf();	/* status_group: the socket's mode */
	if (td->socket_path != NULL)
		return;		/* -s wins over the file */
	if (strcmp(oc->control_socket, nc->control_socket) == 0 &&
	    strcmp(og, ng) == 0)
		return;
	if (strcmp(oc->control_socket, nc->control_socket) == 0)
		snprintf(note, len, "; control_group applies when the control "
		    "socket moves or the daemon restarts");
	else if (control_move(nc->control_socket, nc->control_group, err,
	    sizeof(err)) == -1) {
		log_warnx("reload: control socket: %s", err);
		snprintf(note, len, "; control socket: %s", err);
	} else
		snprintf(note, len, "; control socket moved to %s",
		    nc->control_socket);
}

/* "kept 5, restarted 2 (pg, host db), added 1 (web2), removed 1 (old)". */
static void
reload_summary(const struct reload_report *rep, double ms, const char *note,
    char *out, size_t len)
{
	const struct {
		const char			*what;
		const struct reload_names	*r;
	} parts[] = {
		{ "restarted", &rep->restarted },
		{ "added", &rep->added },
		{ "removed", &rep->removed },
		{ "disconnected", &rep->disconnected },
	};
	size_t	off;
	size_t	i;

	off = (size_t)snprintf(out, len, "kept %d", rep->kept.n);
	for (i = 0; i < sizeof(parts) / sizeof(parts[0]) && off < len; i++) {
		if (parts[i].r->n == 0)
			continue;
		off += (size_t)snprintf(out + off, len - off, ", %s %d (%s)",
		    parts[i].what, parts[i].r->n, parts[i].r->buf);
	}
	if (off < len)
		snprintf(out + off, len - off, " in %.1f ms%s", ms, note);
}

/*
 * Re-read the configuration file and apply it. Returns 0 with what was
 * done in summary, or the number of errors (their text in *errors, the
 * caller frees it) with nothing changed.
 */
int
reload_run(char **errors, char *summary, size_t len)
{
	struct reload_report	 rep;
	struct conf		*nc = NULL, *oc = td->conf;
	struct timespec		 ts;
	char			 note[ERR_MAXLEN + 64];
	double			 t0 = monotime();
	int			 n;

	*errors = NULL;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nSTATUS=reloading %s\nMONOTONIC_USEC=%llu",
	    td->conf_path, (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	notify_status_said();
	log_info("reload: reading %s", td->conf_path);
	if ((n = conf_load(td->conf_path, &nc, errors)) > 0) {
		log_warnx("reload: %s has %d error%s; the running "
		    "configuration is unchanged", td->conf_path, n,
		    n == 1 ? "" : "s");
		sd_notify(0, "READY=1");
		tunneld_status_changed();
		return (n);
	}
	free(*errors);
	*errors = NULL;

	/* The new file is the configuration from here on (jump.c looks up
	 * the jump hosts of links it connects in td->conf). */
	memset(&rep, 0, sizeof(rep));
	td->conf = nc;
	reload_daemon(oc, nc, note, sizeof(note));
	metrics_http_reconf(&nc->metrics_listen, note + strlen(note),
	    sizeof(note) - strlen(note));
	reload_apply(nc, &rep);
	sdfds_leftovers();
	conf_free(oc);
	reload_summary(&rep, (monotime() - t0) * 1000.0, note, summary, len);
	log_notice("reload: %s", summary);
	sd_notify(0, "READY=1");
	control_state_changed();
	tunneld_status_changed();
	return (0);
}
