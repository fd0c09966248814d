/*
 * control_verbs.c: the handlers of the control protocol's verbs, one per
 * verb of ctl_verbs[] (ctl-proto.c): status, links, up, down, restart,
 * wait, reload, version, events, metrics. control.c reads and checks the
 * request, looks the handler up in control_handlers[] and calls it; a
 * handler answers with control_line()/control_body() and control_end(),
 * or keeps the request pending (wait, events --follow) and returns 1.
 */
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "ctl-proto.h"
#include "tunneld.h"

#include "control.h"

static int	control_select(struct control_client *, struct ctl_request *,
		    struct fwd ***);
static int	control_status(struct control_client *, struct ctl_request *);
static int	control_links(struct control_client *, struct ctl_request *);
static int	control_updown(struct control_client *, struct ctl_request *);
static int	control_wait(struct control_client *, struct ctl_request *);
static int	control_reload(struct control_client *, struct ctl_request *);
static int	control_version(struct control_client *,
		    struct ctl_request *);
static int	control_events(struct control_client *, struct ctl_request *);
static void	control_events_lost(void *);
static int	control_metrics(struct control_client *,
		    struct ctl_request *);

/* The verb -> handler table; ctlp_parse() checked the request before. */
const struct control_handler control_handlers[] = {
	{ CTL_STATUS,	control_status },
	{ CTL_LINKS,	control_links },
	{ CTL_UP,	control_updown },
	{ CTL_DOWN,	control_updown },
	{ CTL_RESTART,	control_updown },
	{ CTL_WAIT,	control_wait },
	{ CTL_RELOAD,	control_reload },
	{ CTL_VERSION,	control_version },
	{ CTL_EVENTS,	control_events },
	{ CTL_METRICS,	control_metrics },
};
const size_t control_nhandlers =
    sizeof(control_handlers) / sizeof(control_handlers[0]);

/* control_show_select(), answering "unknown tunnel" for an unknown name. */
static int
control_select(struct control_client *c, struct ctl_request *req,
    struct fwd ***list)
{
	int	n, bad;

	if ((n = control_show_select(req, list, &bad)) == -1)
		control_end(c, CTL_EXIT_REFUSED, "unknown tunnel \"%s\"",
		    req->argv[bad]);
	return (n);
}

/* status [NAME...]: one row per tunnel; 4 when a named one is not up. */
static int
control_status(struct control_client *c, struct ctl_request *req)
{
	struct control_msg	 m;
	struct evbuffer		*b;
	struct fwd		**list;
	int			 n;

	if ((n = control_select(c, req, &list)) == -1)
		return (0);
	if ((b = evbuffer_new()) == NULL)
		fatalx("control: evbuffer_new");
	control_show_status(b, list, n, req->json, monotime());
	control_body(c, b);
	evbuffer_free(b);

	memset(&m, 0, sizeof(m));
	control_show_notup_msg(&m, list, req->argc);
	free(list);
	if (m.off > 0)
		control_end(c, CTL_EXIT_NOTUP, "%s", m.buf);
	else
		control_end(c, CTL_EXIT_OK, NULL);
	return (0);
}

/* links: one row per SSH link. */
static int
control_links(struct control_client *c, struct ctl_request *req)
{
	struct evbuffer	*b;

	if ((b = evbuffer_new()) == NULL)
		fatalx("control: evbuffer_new");
	control_show_links(b, req->json, monotime());
	control_body(c, b);
	evbuffer_free(b);
	control_end(c, CTL_EXIT_OK, NULL);
	return (0);
}

/* up, down, restart: check every name first, then act on each. */
static int
control_updown(struct control_client *c, struct ctl_request *req)
{
	struct control_msg	  m;
	struct fwd		**list;
	int			  n, i, failed = 0;

	if ((n = control_select(c, req, &list)) == -1)
		return (0);
	memset(&m, 0, sizeof(m));
	events_cause("tunctl %s by uid %ld", ctl_verbs[req->verb].name,
	    (long)c->uid);
	for (i = 0; i < n; i++) {
		switch (req->verb) {
		case CTL_UP:
			if (fwd_enable(list[i]) == -1) {
				if (failed++ == 0)
					control_show_msg_add(&m, "tunnel "
					    "\"%s\": %s", list[i]->tc->name,
					    list[i]->last_error);
			}
			break;
		case CTL_DOWN:
			fwd_disable(list[i]);
			break;
		case CTL_RESTART:
			fwd_restart(list[i]);
			break;
		}
		/* A server that kept a remote listener: say so here too. */
		control_line(c, "%s: %s%s%s", list[i]->tc->name,
		    fwd_state_name(list[i]->state), list[i]->remote_kept ?
		    "; warning: " : "", list[i]->remote_kept ?
		    list[i]->last_error : "");
	}
	events_cause(NULL);
	free(list);
	if (failed > 1)
		control_show_msg_add(&m, " (and %d more failed)", failed - 1);
	if (failed > 0)
		control_end(c, CTL_EXIT_REFUSED, "%s", m.buf);
	else
		control_end(c, CTL_EXIT_OK, NULL);
	return (0);
}

/* Whether every tunnel a wait names is up. */
int
control_wait_done(struct ctl_request *req)
{
	struct fwd	*f;
	int		 i;

	for (i = 0; i < req->argc; i++) {
		if ((f = fwd_find(req->argv[i])) == NULL || f->state != FWD_UP)
			return (0);
	}
	return (1);
}

/* wait NAME... [--timeout=S]: answer when all are up, or at the deadline. */
static int
control_wait(struct control_client *c, struct ctl_request *req)
{
	struct timeval	tv;
	int		i;

	for (i = 0; i < req->argc; i++) {
		if (fwd_find(req->argv[i]) == NULL) {
			control_end(c, CTL_EXIT_REFUSED, "unknown tunnel "
			    "\"%s\"", req->argv[i]);
			return (0);
		}
	}
	c->wait_secs = req->timeout >= 0 ? req->timeout : CTL_WAIT_DEFAULT;
	if (control_wait_done(req)) {
		control_end(c, CTL_EXIT_OK, NULL);
		return (0);
	}
	c->pending = req;
	if (c->wait_secs == 0) {
		control_wait_finish(c, CTL_EXIT_NOTUP);
		return (1);
	}
	event_del(c->ev_idle);
	tv.tv_sec = c->wait_secs;
	tv.tv_usec = 0;
	evtimer_add(c->ev_wait, &tv);
	return (1);
}

/* The wait's deadline passed. */
void
control_wait_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	control_wait_finish(arg, CTL_EXIT_NOTUP);
}

/*
 * Answer a client's pending wait (CTL_EXIT_OK, or CTL_EXIT_NOTUP with the
 * tunnels still not up and why) and read its next request on the next turn.
 */
void
control_wait_finish(struct control_client *c, int code)
{
	struct ctl_request	*req = c->pending;
	struct control_msg	 m;
	struct timeval		 tv = { CONTROL_IDLE, 0 };

	c->pending = NULL;
	event_del(c->ev_wait);
	if (code == CTL_EXIT_OK)
		control_end(c, CTL_EXIT_OK, NULL);
	else {
		memset(&m, 0, sizeof(m));
		control_show_wait_msg(&m, req, c->wait_secs);
		control_end(c, CTL_EXIT_NOTUP, "%s", m.buf);
	}
	free(req);
	if (c->dead)
		return;
	evtimer_add(c->ev_idle, &tv);
	event_active(c->ev_kick, EV_TIMEOUT, 0);
}

/*
 * reload: re-read the file. A rejected file prints every error as a body
 * line; an applied one prints what changed.
 */
static int
control_reload(struct control_client *c, struct ctl_request *req)
{
	char	*errors = NULL, *line, *save = NULL, summary[CONTROL_MSG_MAX];
	int	 n;

	(void)req;
	if ((n = reload_run(&errors, summary, sizeof(summary))) > 0) {
		for (line = strtok_r(errors, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			control_line(c, "%s", line);
		free(errors);
		control_end(c, CTL_EXIT_REFUSED, "reload rejected: %d error%s; "
		    "the running configuration is unchanged", n,
		    n == 1 ? "" : "s");
		return (0);
	}
	free(errors);
	control_line(c, "%s", summary);
	control_end(c, CTL_EXIT_OK, NULL);
	return (0);
}

/* version: the daemon's version. */
static int
control_version(struct control_client *c, struct ctl_request *req)
{
	(void)req;
	control_line(c, "tunneld %s", TUNNELD_VERSION);
	control_end(c, CTL_EXIT_OK, NULL);
	return (0);
}

/* events [--follow]: the history; then, following, events.c's lines. */
static int
control_events(struct control_client *c, struct ctl_request *req)
{
	size_t n = events_history(bufferevent_get_output(c->bev), req->json);

	if (!req->follow) {
		control_end(c, CTL_EXIT_OK, NULL);
		return (0);
	}
	event_del(c->ev_idle);		/* a follower is not idle */
	c->pending = req;		/* control_shutdown ends it */
	c->sub = events_subscribe(c->bev, req->json, n, control_events_lost,
	    c);
	return (1);
}

/* A follower fell behind (events.c ended its reply): close it. */
static void
control_events_lost(void *arg)
{
	struct control_client	*c = arg;
	struct timeval		 tv = { CONTROL_IDLE, 0 };

	c->sub = NULL;
	free(c->pending);
	c->pending = NULL;
	control_client_close(c);
	evtimer_add(c->ev_idle, &tv);	/* one that never reads: closed */
}

/*
 * metrics: the Prometheus text exposition (metrics.c); refused, rather than
 * dropped unanswered, when it would pass the unread-output limit.
 */
static int
control_metrics(struct control_client *c, struct ctl_request *req)
{
	struct evbuffer	*b;
	size_t		 n;

	(void)req;
	if ((b = evbuffer_new()) == NULL)
		fatalx("control: evbuffer_new");
	metrics_render(b);
	if ((n = evbuffer_get_length(b)) > CONTROL_OUT_MAX - CONTROL_MSG_MAX)
		control_end(c, CTL_EXIT_REFUSED, "the metrics are %zu bytes, "
		    "more than a control reply may hold (%d); use GET /metrics "
		    "(daemon.metrics_listen)", n, CONTROL_OUT_MAX);
	else {
		control_body(c, b);
		control_end(c, CTL_EXIT_OK, NULL);
	}
	evbuffer_free(b);
	return (0);
}
