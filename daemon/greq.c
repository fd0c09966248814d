/*
 * greq.c: a link's queue of global requests.
 *
 * libssh 0.10 keeps a single global-request slot per session, shared by
 * keepalive@openssh.com, tcpip-forward and cancel-tcpip-forward. A request
 * sent while another is pending does not go out: the call collects the
 * pending one's answer instead. So a link sends one global request at a
 * time, in order, and collects each answer by repeating the call that sent
 * it: in the pending state the call sends nothing and reports SSH_AGAIN
 * until the answer has been read.
 *
 * ssh_send_keepalive() always answers SSH_OK, so a keepalive's answer is
 * collected with ssh_channel_cancel_forward("", 0). If the answer had
 * already been consumed inside ssh_send_keepalive() (the slot is free
 * again), that call sends a cancel-tcpip-forward for port 0, which no
 * forward ever has: the server refuses it and the refusal is collected in
 * the keepalive's place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/server.h>

#include "tunneld.h"

static void	greq_done(struct link *, struct greq *, int, int);

/* Queue a global request; the pump sends it when the slot is free. */
struct greq *
greq_push(struct link *l, enum greq_type type, struct fwd *f,
    const char *addr, int port)
{
	struct greq *g;

	g = xcalloc(1, sizeof(*g));
	g->type = type;
	g->fwd = f;
	if (f != NULL)
		strlcpy_(g->tunnel, f->tc->name, sizeof(g->tunnel));
	if (addr != NULL)
		strlcpy_(g->addr, addr, sizeof(g->addr));
	g->port = port;
	g->req_port = port;
	TAILQ_INSERT_TAIL(&l->greqs, g, entry);
	link_kick(l);
	return (g);
}

/* Is a request of this type for this tunnel queued or in flight? */
int
greq_pending(struct link *l, enum greq_type type, struct fwd *f)
{
	struct greq *g;

	TAILQ_FOREACH(g, &l->greqs, entry) {
		if (g->type == type && g->fwd == f)
			return (1);
	}
	return (0);
}

/* A tunnel goes away: its queued requests no longer report to it. */
void
greq_forget(struct link *l, struct fwd *f)
{
	struct greq *g, *next;

	for (g = TAILQ_FIRST(&l->greqs); g != NULL; g = next) {
		next = TAILQ_NEXT(g, entry);
		if (g->fwd != f)
			continue;
		if (g == TAILQ_FIRST(&l->greqs) && l->greq_busy) {
			/* In flight: finish it, then undo a listen. */
			g->fwd = NULL;
			continue;
		}
		TAILQ_REMOVE(&l->greqs, g, entry);
		free(g);
	}
}

/*
 * The session is gone: drop every request, and forget the listeners the
 * server kept for it (they went with it).
 */
void
greq_clear(struct link *l)
{
	struct greq *g;

	while ((g = TAILQ_FIRST(&l->greqs)) != NULL) {
		TAILQ_REMOVE(&l->greqs, g, entry);
		free(g);
	}
	l->greq_busy = 0;
	l->rfwd = RFWD_UNKNOWN;		/* a new session may be allowed */
	fwd_remote_forget_leftovers(l);
}

/* Collect the answer in flight and start the next requests. */
void
greq_run(struct link *l)
{
	struct greq	*g;
	int		 rc, bound;

	while (l->session != NULL && (g = TAILQ_FIRST(&l->greqs)) != NULL) {
		bound = 0;
		if (!l->greq_busy)
			l->greq_sent = monotime();
		switch (g->type) {
		case GREQ_KEEPALIVE:
			if (!l->greq_busy) {
				ssh_send_keepalive(l->session);
				rc = SSH_AGAIN;
			} else
				rc = ssh_channel_cancel_forward(l->session, "",
				    0);
			break;
		case GREQ_LISTEN:
			if (!l->greq_busy && g->fwd != NULL &&
			    fwd_remote_adopt(l, g->fwd)) {
				/* The server still listens for us. */
				TAILQ_REMOVE(&l->greqs, g, entry);
				free(g);
				continue;
			}
			rc = ssh_channel_listen_forward(l->session, g->addr,
			    g->port, &bound);
			break;
		case GREQ_PROBE:
			rc = ssh_channel_listen_forward(l->session, g->addr,
			    0, &bound);
			break;
		case GREQ_CANCEL:
		default:
			rc = ssh_channel_cancel_forward(l->session, g->addr,
			    g->port);
			break;
		}
		if (rc == SSH_AGAIN) {
			l->greq_busy = 1;
			return;
		}
		l->greq_busy = 0;
		TAILQ_REMOVE(&l->greqs, g, entry);
		greq_done(l, g, rc, bound);
		free(g);
	}
}

/* Report one answer to whoever asked. */
static void
greq_done(struct link *l, struct greq *g, int rc, int bound)
{
	struct greq	*c;

	switch (g->type) {
	case GREQ_KEEPALIVE:
		l->rtt_us = (long)((monotime() - l->greq_sent) * 1e6);
		metrics_rtt_observe(&l->stats, l->rtt_us / 1e6);
		log_debug("link %s: keepalive answered in %ld us",
		    l->hc->name, l->rtt_us);
		if (l->probe_start > 0 && l->greq_sent >= l->probe_start)
			link_probe_answered(l);
		break;
	case GREQ_LISTEN:
		if (g->port != 0)
			bound = g->port;
		if (g->fwd != NULL) {
			fwd_remote_bound(g->fwd, rc == SSH_OK, bound);
		} else if (rc == SSH_OK) {
			/* Its tunnel was stopped meanwhile: undo it. */
			c = greq_push(l, GREQ_CANCEL, NULL, g->addr, bound);
			strlcpy_(c->tunnel, g->tunnel, sizeof(c->tunnel));
			c->req_port = g->port;
		}
		break;
	case GREQ_PROBE:
		fwd_remote_probed(l, rc == SSH_OK, bound);
		break;
	case GREQ_CANCEL:
		log_debug("link %s: cancel-tcpip-forward %s:%d %s",
		    l->hc->name, g->addr, g->port, rc == SSH_OK ? "done" :
		    "refused");
		if (rc != SSH_OK)
			fwd_remote_kept(l, g);
		break;
	}
}
