/*
 * control.c: the control socket. Accepts tunctl (or socat) clients, reads
 * one request line at a time, checks it against the verb table and answers
 * with body lines and a final "%end CODE[ MESSAGE]" line. The wire format is
 * in docs/control-protocol.md, the request parser in ctl-proto.c; the
 * verbs' handlers are in control_verbs.c (sharing control.h with this
 * file); what status and links print (tables, JSON, the tunnels a request
 * names, the "not up" messages) is rendered by control_show.c.
 *
 * Every client costs bounded memory: a request line is at most CTL_LINE_MAX
 * bytes (the read watermark stops reading beyond it), requests are handled
 * one at a time, no new request is read while more than CONTROL_OUT_PAUSE
 * bytes of replies are unread, and a client whose unread output passes
 * CONTROL_OUT_MAX is dropped. A follower of events has the bound events.c
 * gives it, and is not idle.
 *
 * At most CONTROL_CLIENTS_MAX clients are served at once; root (and the
 * daemon's own user) may use CONTROL_CLIENTS_RESERVE more, so that however
 * many connections other users hold open, root can still stop tunnels.
 *
 * Who may do what (SPEC section 4): control_access.c, from the peer's
 * credentials taken at accept; checked again for every request.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "ctl-proto.h"
#include "tunneld.h"

#include "control.h"



static void	control_accept_cb(int, short, void *);
static void	control_pause_cb(int, short, void *);
static void	control_reap_cb(int, short, void *);
static void	control_passed_mode(void);
static void	control_client_new(int, struct control_peer *);
static void	control_client_kill(struct control_client *, const char *);
static void	control_client_free(struct control_client *);
static void	control_read_cb(struct bufferevent *, void *);
static void	control_write_cb(struct bufferevent *, void *);
static void	control_event_cb(struct bufferevent *, short, void *);
static void	control_idle_cb(int, short, void *);
static void	control_kick_cb(int, short, void *);
static void	control_process(struct control_client *);
static void	control_request(struct control_client *, const char *, size_t);

static struct {
	int			 fd;
	char			*path;		/* NULL when socket-activated */
	char			*sd_path;	/* where systemd's socket is */
	dev_t			 dev;		/* of the file we bound */
	ino_t			 ino;
	struct event		*ev_accept;
	struct event		*ev_pause;	/* accept again after EMFILE */
	struct event		*ev_reap;
	struct control_clients	 clients;
	struct control_clients	 reap;
	int			 nclients;
	double			 last_full_log;
} control = {
	.fd = -1,
	.clients = TAILQ_HEAD_INITIALIZER(control.clients),
	.reap = TAILQ_HEAD_INITIALIZER(control.reap),
};

/*
 * Open the control socket: the one systemd passed if there is one, else
 * bind path (mode 0660, 0666 with a status_group; owned by group when
 * given). Returns 0 or -1.
 */
int
control_init(const char *path, const char *group)
{
	if ((control.fd = sdfds_control(path)) == -2) {
		control.fd = -1;
		return (-1);
	}
	if (control.fd != -1)
		log_info("control: using the socket passed by systemd");
	else if ((control.fd = control_sock_bind(path, group, control_access_mode(),
	    &control.dev, &control.ino)) == -1)
		return (-1);
	else
		control.path = xstrdup(path);
	if (control.path == NULL) {
		control.sd_path = xstrdup(path);
		control_access_group(path, NULL);
		control_passed_mode();
	} else
		control_access_group(path, group);

	control.ev_accept = event_new(td->base, control.fd,
	    EV_READ | EV_PERSIST, control_accept_cb, NULL);
	control.ev_pause = evtimer_new(td->base, control_pause_cb, NULL);
	control.ev_reap = event_new(td->base, -1, 0, control_reap_cb, NULL);
	if (control.ev_accept == NULL || control.ev_pause == NULL ||
	    control.ev_reap == NULL)
		fatalx("control: event_new");
	event_add(control.ev_accept, NULL);
	return (0);
}

/* Close every client and the socket; remove the file if we made it. */
void
control_shutdown(void)
{
	struct control_client	*c;
	struct evbuffer		*out;
	size_t			 len;

	while ((c = TAILQ_FIRST(&control.clients)) != NULL) {
		/*
		 * Best effort, the loop is not going to run again (and the
		 * bufferevent's output cannot be drained by us): what is
		 * queued, and an answer to a pending wait.
		 */
		out = bufferevent_get_output(c->bev);
		if (c->pending != NULL)
			evbuffer_add_printf(out, "%s %d tunneld is stopping\n",
			    CTL_END, CTL_EXIT_UNREACHABLE);
		if ((len = evbuffer_get_length(out)) > 0) {
			if (send(bufferevent_getfd(c->bev),
			    evbuffer_pullup(out, -1), len,
			    MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
				log_debug("control: send: %s", strerror(errno));
		}
		control_client_kill(c, NULL);
	}
	control_reap_cb(-1, 0, NULL);
	events_shutdown();

	if (control.ev_accept != NULL)
		event_free(control.ev_accept);
	if (control.ev_pause != NULL)
		event_free(control.ev_pause);
	if (control.ev_reap != NULL)
		event_free(control.ev_reap);
	control.ev_accept = control.ev_pause = control.ev_reap = NULL;
	control_access_free();
	free(control.sd_path);
	control.sd_path = NULL;
	if (control.fd != -1)
		close(control.fd);
	control.fd = -1;
	if (control.path != NULL) {
		control_sock_unlink(control.path, control.dev, control.ino);
		free(control.path);
		control.path = NULL;
	}
}

/*
 * Reload: listen on path (and group) instead. Connected clients stay;
 * the old file is removed. A socket systemd passed is never moved.
 * Returns 0, or -1 with the reason in err (the old socket stays).
 */
int
control_move(const char *path, const char *group, char *err, size_t errlen)
{
	dev_t	dev = 0;
	ino_t	ino = 0;
	int	fd;

	if (control.path == NULL) {
		snprintf(err, errlen, "the control socket came from systemd "
		    "and stays where it is");
		return (-1);
	}
	if (strcmp(path, control.path) == 0)
		return (0);
	if ((fd = control_sock_bind(path, group, control_access_mode(), &dev,
	    &ino)) == -1) {
		snprintf(err, errlen, "cannot listen on %s (see the log); "
		    "still on %s", path, control.path);
		return (-1);
	}
	event_free(control.ev_accept);
	close(control.fd);
	control_sock_unlink(control.path, control.dev, control.ino);
	free(control.path);
	control.fd = fd;
	control.path = xstrdup(path);
	control.dev = dev;
	control.ino = ino;
	control.ev_accept = event_new(td->base, control.fd,
	    EV_READ | EV_PERSIST, control_accept_cb, NULL);
	if (control.ev_accept == NULL)
		fatalx("control: event_new");
	event_add(control.ev_accept, NULL);
	control_access_group(path, group);
	log_notice("control: moved to %s", path);
	return (0);
}

/*
 * Reload: give the socket the mode the new configuration needs (a
 * status_group added or removed). A socket systemd passed keeps the mode
 * its unit gave it; say so when that shuts status_group out.
 */
void
control_reconf(void)
{
	struct stat	st;
	mode_t		want = control_access_mode();

	if (control.fd == -1)
		return;
	if (control.path == NULL) {
		control_passed_mode();
		return;
	}
	if (stat(control.path, &st) == -1 || st.st_dev != control.dev ||
	    st.st_ino != control.ino || (st.st_mode & 0777) == want)
		return;
	if (chmod(control.path, want) == -1)
		log_warn("control: chmod %s", control.path);
	else
		log_info("control: socket %s is now mode %04o (%s)",
		    control.path, (unsigned)want, want == 0666 ?
		    "status_group set" : "no status_group");
}

/* Warn when status_group is set but systemd's socket keeps others out. */
static void
control_passed_mode(void)
{
	struct stat st;

	if (td->conf->status_group == NULL || control.sd_path == NULL ||
	    stat(control.sd_path, &st) == -1 || (st.st_mode & 0006) == 0006)
		return;
	log_warnx("control: status_group \"%s\" is set, but the socket "
	    "systemd passed is mode %04o: its members cannot connect (set "
	    "SocketMode=0666 for tunneld.socket)", td->conf->status_group,
	    (unsigned)(st.st_mode & 07777));
}

/*
 * Accept new clients, pausing for a second when out of descriptors. A
 * peer that may do nothing is refused at once. Past the limit a client is
 * told why and closed; root gets in up to the reserve above it.
 */
static void
control_accept_cb(int fd, short what, void *arg)
{
	static const char	full[] = CTL_END " 1 too many control clients\n";
	struct timeval		tv = { 1, 0 };
	struct control_peer	p;
	int			s, i, limit;

	(void)what;
	(void)arg;
	for (i = 0; i < 32; i++) {
		s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("control: accept (paused for 1 s)");
				event_del(control.ev_accept);
				evtimer_add(control.ev_pause, &tv);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != ECONNABORTED)
				log_warn("control: accept");
			return;
		}
		control_peer_get(s, &p);
		if (control_access(&p) == CONTROL_DENY) {
			control_access_refuse(s, &p);
			continue;
		}
		limit = CONTROL_CLIENTS_MAX;
		if (control_access_privileged(p.uid))
			limit += CONTROL_CLIENTS_RESERVE;
		if (control.nclients >= limit) {
			if (send(s, full, sizeof(full) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
				log_debug("control: send: %s", strerror(errno));
			close(s);
			if (monotime() - control.last_full_log >= 10) {
				log_warnx("control: too many clients (limit "
				    "%d, and %d more for root): refusing new "
				    "ones, first uid %ld pid %ld",
				    CONTROL_CLIENTS_MAX, CONTROL_CLIENTS_RESERVE,
				    (long)p.uid, (long)p.pid);
				control.last_full_log = monotime();
			}
			free(p.groups);
			continue;
		}
		control_client_new(s, &p);
	}
}

/* Accept again after a pause. */
static void
control_pause_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (control.ev_accept != NULL)
		event_add(control.ev_accept, NULL);
}

/*
 * Set up a new client on an accepted socket, with its peer's credentials
 * (the client takes p's groups).
 */
static void
control_client_new(int s, struct control_peer *p)
{
	struct control_client	*c;
	struct timeval		 tv = { CONTROL_IDLE, 0 };

	c = xcalloc(1, sizeof(*c));
	c->peer = *p;
	p->groups = NULL;
	c->uid = c->peer.uid;
	c->pid = c->peer.pid;
	if ((c->bev = bufferevent_socket_new(td->base, s,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		log_warnx("control: bufferevent_socket_new failed");
		close(s);
		free(c->peer.groups);
		free(c);
		return;
	}
	c->ev_idle = evtimer_new(td->base, control_idle_cb, c);
	c->ev_wait = evtimer_new(td->base, control_wait_cb, c);
	c->ev_kick = event_new(td->base, -1, 0, control_kick_cb, c);
	if (c->ev_idle == NULL || c->ev_wait == NULL || c->ev_kick == NULL)
		fatalx("control: event_new");
	bufferevent_setcb(c->bev, control_read_cb, control_write_cb,
	    control_event_cb, c);
	/* Never hold more than one request line of input. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTL_LINE_MAX);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	evtimer_add(c->ev_idle, &tv);

	TAILQ_INSERT_TAIL(&control.clients, c, entry);
	control.nclients++;
	log_debug("control: uid %ld pid %ld: connected", (long)c->uid,
	    (long)c->pid);
}

/* Drop a client now: unlink it and free it on the next loop turn. */
static void
control_client_kill(struct control_client *c, const char *why)
{
	if (c->dead)
		return;
	if (why != NULL)
		log_debug("control: uid %ld pid %ld: %s", (long)c->uid,
		    (long)c->pid, why);
	c->dead = 1;
	events_unsubscribe(c->sub);
	c->sub = NULL;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	event_del(c->ev_idle);
	event_del(c->ev_wait);
	event_del(c->ev_kick);
	TAILQ_REMOVE(&control.clients, c, entry);
	control.nclients--;
	TAILQ_INSERT_TAIL(&control.reap, c, entry);
	if (control.ev_reap != NULL)
		event_active(control.ev_reap, EV_TIMEOUT, 0);
}

/* Close a client once the replies queued for it are written. */
void
control_client_close(struct control_client *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		control_client_kill(c, "closed");
}

/* Free a dead client and everything it owns. */
static void
control_client_free(struct control_client *c)
{
	if (c == NULL)
		return;
	bufferevent_free(c->bev);
	event_free(c->ev_idle);
	event_free(c->ev_wait);
	event_free(c->ev_kick);
	free(c->pending);
	free(c->peer.groups);
	free(c);
}

/* Free the clients killed since the last turn. */
static void
control_reap_cb(int fd, short what, void *arg)
{
	struct control_client *c;

	(void)fd;
	(void)what;
	(void)arg;
	while ((c = TAILQ_FIRST(&control.reap)) != NULL) {
		TAILQ_REMOVE(&control.reap, c, entry);
		control_client_free(c);
	}
}

/* Input arrived. */
static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	control_process(arg);
}

/* Output drained: finish closing, or read requests again. */
static void
control_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_client *c = arg;

	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			control_client_kill(c, "closed");
		return;
	}
	control_process(c);
}

/* EOF or an error on a client's socket. */
static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_client *c = arg;

	(void)bev;
	if (what & BEV_EVENT_ERROR) {
		control_client_kill(c, strerror(EVUTIL_SOCKET_ERROR()));
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->eof = 1;
		control_process(c);
	}
}

/* No complete request for CONTROL_IDLE seconds. */
static void
control_idle_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	control_client_kill(arg, "idle, closed");
}

/* Read the requests that waited behind an answered wait. */
static void
control_kick_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	control_process(arg);
}

/*
 * Handle the complete request lines in a client's input, one at a time,
 * until one stays pending, the output backs up, or the input runs dry.
 */
static void
control_process(struct control_client *c)
{
	struct evbuffer		*in, *out;
	struct evbuffer_ptr	 eol;
	size_t			 len;
	char			*line;

	in = bufferevent_get_input(c->bev);
	out = bufferevent_get_output(c->bev);
	if (c->sub != NULL) {
		/* A follower only listens, until it goes away. */
		evbuffer_drain(in, evbuffer_get_length(in));
		if (c->eof)
			control_client_kill(c, "stopped following events");
		return;
	}
	while (!c->dead && !c->closing && c->pending == NULL) {
		if (evbuffer_get_length(out) > CONTROL_OUT_PAUSE)
			return;		/* control_write_cb comes back */
		eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
		len = evbuffer_get_length(in);
		if ((eol.pos == -1 && len >= CTL_LINE_MAX) ||
		    eol.pos >= CTL_LINE_MAX) {
			control_end(c, CTL_EXIT_USAGE, "request line too long "
			    "(limit %d bytes)", CTL_LINE_MAX);
			control_client_close(c);
			return;
		}
		if (eol.pos == -1 && !c->eof)
			return;
		if (eol.pos == -1 && len == 0) {
			control_client_close(c);
			return;
		}
		if (eol.pos == -1) {
			/* The last line, sent without a newline. */
			line = xmalloc(len + 1);
			evbuffer_remove(in, line, len);
			line[len] = '\0';
		} else if ((line = evbuffer_readln(in, &len,
		    EVBUFFER_EOL_LF)) == NULL)
			fatalx("control: evbuffer_readln");
		control_request(c, line, len);
		free(line);
	}
}

/* Parse one request line, check it and run its handler. */
static void
control_request(struct control_client *c, const char *line, size_t len)
{
	const struct control_handler	*h = NULL;
	struct ctl_request		*req;
	struct timeval			 tv = { CONTROL_IDLE, 0 };
	char				 err[512], what[CTL_LINE_MAX + 1];
	char				 msg[CONTROL_MSG_MAX];
	size_t				 i;

	evtimer_add(c->ev_idle, &tv);
	if (memchr(line, '\0', len) != NULL) {
		control_end(c, CTL_EXIT_USAGE, "request contains a NUL byte");
		return;
	}
	req = xmalloc(sizeof(*req));
	if (ctlp_parse(line, req, err, sizeof(err)) == -1) {
		log_debug("control: uid %ld pid %ld: bad request: %s",
		    (long)c->uid, (long)c->pid, err);
		control_end(c, CTL_EXIT_USAGE, "%s", err);
		free(req);
		return;
	}
	for (i = 0; i < control_nhandlers; i++) {
		if (control_handlers[i].verb == req->verb)
			h = &control_handlers[i];
	}
	if (h == NULL) {
		control_end(c, CTL_EXIT_USAGE, "verb \"%s\" is not "
		    "implemented", ctl_verbs[req->verb].name);
		free(req);
		return;
	}

	/* The request as the log shows it: without the protocol word. */
	if (ctlp_format(req, what, sizeof(what)) == -1)
		snprintf(what, sizeof(what), "%s %s (%d names)",
		    CTL_PROTO_WORD, ctl_verbs[req->verb].name, req->argc);
	what[strcspn(what, "\n")] = '\0';

	/* Who may do what: decided again for every request. */
	if (control_access_check(&c->peer, req->verb,
	    what + strlen(CTL_PROTO_WORD) + 1, msg, sizeof(msg))) {
		control_end(c, CTL_EXIT_UNREACHABLE, "%s", msg);
		free(req);
		return;
	}
	if (ctl_verbs[req->verb].flags & CTL_F_MUTATING)
		log_info("control: uid %ld pid %ld: %s", (long)c->uid,
		    (long)c->pid, what + strlen(CTL_PROTO_WORD) + 1);
	else
		log_debug("control: uid %ld pid %ld: %s", (long)c->uid,
		    (long)c->pid, what + strlen(CTL_PROTO_WORD) + 1);

	if (h->fn(c, req) == 0)
		free(req);
}

/* Queue one body line; control characters become spaces. */
void
control_line(struct control_client *c, const char *fmt, ...)
{
	va_list	 ap;
	char	*s, *p;

	if (c->dead)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	for (p = s; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	evbuffer_add_printf(bufferevent_get_output(c->bev), "%s%s\n",
	    ctlp_escape_prefix(s), s);
	free(s);
}

/*
 * Queue the final line of a reply (fmt NULL: no message). A client that
 * leaves more than CONTROL_OUT_MAX bytes unread is dropped here.
 */
void
control_end(struct control_client *c, int code, const char *fmt, ...)
{
	struct evbuffer	*out;
	va_list		 ap;
	char		 msg[CONTROL_MSG_MAX], *p;

	if (c->dead)
		return;
	out = bufferevent_get_output(c->bev);
	if (fmt == NULL)
		evbuffer_add_printf(out, "%s %d\n", CTL_END, code);
	else {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		for (p = msg; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
		}
		evbuffer_add_printf(out, "%s %d %s\n", CTL_END, code, msg);
	}
	if (evbuffer_get_length(out) > CONTROL_OUT_MAX) {
		log_warnx("control: uid %ld pid %ld: more than %d bytes "
		    "unread, dropped", (long)c->uid, (long)c->pid,
		    CONTROL_OUT_MAX);
		control_client_kill(c, NULL);
	}
}

/* Send the LF-terminated lines in b as body lines; empties b. */
void
control_body(struct control_client *c, struct evbuffer *b)
{
	char	*line;
	size_t	 len;

	while ((line = evbuffer_readln(b, &len, EVBUFFER_EOL_LF)) != NULL) {
		control_line(c, "%s", line);
		free(line);
	}
}

/* A link or tunnel changed state: answer the waits that are now done. */
void
control_state_changed(void)
{
	struct control_client *c, *next;

	for (c = TAILQ_FIRST(&control.clients); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (c->pending != NULL && c->pending->verb == CTL_WAIT &&
		    control_wait_done(c->pending))
			control_wait_finish(c, CTL_EXIT_OK);
	}
}
