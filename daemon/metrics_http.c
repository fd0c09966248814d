/*
 * metrics_http.c: the Prometheus responder. With daemon.metrics_listen set
 * the daemon answers GET /metrics over HTTP/1.0 and 1.1 on that address
 * with metrics_render()'s text; anything else gets 404 (another path),
 * 405 (another method, with Allow), 400 (not HTTP), 431 (a request past
 * METRICS_REQ_MAX bytes) or 505 (another HTTP version). Every answer
 * closes the connection (Connection: close): no keep-alive to get wrong.
 *
 * It runs in the loop and nothing a client does can stall it or make it
 * use memory without bound:
 * - a client's request is read into a buffer of at most METRICS_REQ_MAX
 *   bytes (an idle connection costs no more than its struct);
 * - a client has METRICS_READ_SECS to send its whole request, then
 *   METRICS_WRITE_SECS to take the answer, then is closed;
 * - at most METRICS_CLIENTS_MAX clients are held; one more evicts the
 *   oldest (clients are listed in accept order), so idle connections, any
 *   number of them, never stop a new scrape from being answered;
 * - the answers not yet taken by all clients together stay under
 *   METRICS_OUT_BUDGET bytes; past it a scrape gets 503.
 * After its answer a client's side is shut for writing and what it still
 * sends is read and dropped for METRICS_LINGER_SECS (at most
 * METRICS_LINGER_MAX bytes) before the close, so that unread bytes of its
 * request do not make the kernel reset the connection under the answer.
 *
 * A listener that cannot be bound is logged and tried again every
 * METRICS_RETRY_SECS; a reload that moves it binds the new address before
 * the old one is closed where it can (metrics_http_reconf).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "tunneld.h"

#define METRICS_REQ_MAX		8192	/* request line and headers */
#define METRICS_CLIENTS_MAX	256
#define METRICS_READ_SECS	10
#define METRICS_WRITE_SECS	10
#define METRICS_LINGER_SECS	2
#define METRICS_LINGER_MAX	65536
#define METRICS_OUT_BUDGET	(32 * 1024 * 1024)
#define METRICS_BACKLOG		128
#define METRICS_RETRY_SECS	10
#define METRICS_METHOD_MAX	16

#define CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

enum mc_phase {
	MC_READING,
	MC_WRITING,
	MC_LINGER,
};

/* One HTTP client. */
struct mclient {
	TAILQ_ENTRY(mclient)	 entry;		/* on mh.clients or mh.reap */
	int			 fd;		/* owned */
	enum mc_phase		 phase;
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_timer;	/* the phase's deadline */
	struct evbuffer		*in;		/* the request, < METRICS_REQ_MAX */
	struct evbuffer		*out;		/* the answer, not yet sent */
	size_t			 lingered;	/* bytes dropped after the answer */
	int			 dead;
};
TAILQ_HEAD(mclients, mclient);

/* The status codes we answer with, their reasons, and how many so far. */
static struct {
	int		 code;
	const char	*reason;
	uint64_t	 n;
} mh_codes[] = {
	{ 200, "OK", 0 },
	{ 400, "Bad Request", 0 },
	{ 404, "Not Found", 0 },
	{ 405, "Method Not Allowed", 0 },
	{ 431, "Request Header Fields Too Large", 0 },
	{ 503, "Service Unavailable", 0 },
	{ 505, "HTTP Version Not Supported", 0 },
};

static struct {
	struct evconnlistener	*lev;
	struct endpoint		 ep;		/* where lev listens */
	struct endpoint		 want;		/* where it should (retries) */
	struct event		*ev_retry;
	struct event		*ev_reap;
	struct mclients		 clients;	/* oldest first */
	struct mclients		 reap;
	int			 nclients;
	size_t			 queued;	/* answer bytes not yet sent */
	uint64_t		 evicted;
	uint64_t		 timeouts;
} mh = {
	.clients = TAILQ_HEAD_INITIALIZER(mh.clients),
	.reap = TAILQ_HEAD_INITIALIZER(mh.reap),
};

static int	metrics_http_bind(const struct endpoint *, char *, size_t);
static void	metrics_http_close(void);
static void	metrics_http_retry_cb(int, short, void *);
static void	metrics_http_accept_cb(struct evconnlistener *,
		    evutil_socket_t, struct sockaddr *, int, void *);
static void	metrics_http_error_cb(struct evconnlistener *, void *);
static void	metrics_http_reap_cb(int, short, void *);
static void	mclient_kill(struct mclient *);
static void	mclient_free(struct mclient *);
static void	mclient_read_cb(int, short, void *);
static void	mclient_write_cb(int, short, void *);
static void	mclient_timer_cb(int, short, void *);
static void	mclient_answer(struct mclient *, int, int);
static void	mclient_flush(struct mclient *);
static void	mclient_deadline(struct mclient *, int);
static int	metrics_http_header_ok(const char *, size_t);

/* Whether c is an HTTP token character (RFC 9110 tchar). */
static int
metrics_http_tchar(int c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' &&
	    strchr("!#$%&'*+-.^_`|~", c) != NULL));
}

/* Whether one header line (no CR or LF) is "name: value". */
static int
metrics_http_header_ok(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && metrics_http_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ':')
		return (0);
	for (i++; i < n; i++) {
		if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
			return (0);
		if (p[i] == 0x7f)
			return (0);
	}
	return (1);
}

/*
 * Parse the request in buf[0..len): 0 while it may still become a request
 * (no blank line yet), else the status to answer with. *head is set for a
 * HEAD request (an answer without its body). The request line must be
 * "METHOD SP TARGET SP HTTP/1.x"; a method that cannot be one is refused
 * from its first bytes, without waiting for the rest.
 */
int
metrics_http_parse(const char *buf, size_t len, int *head)
{
	const char	*end, *eol, *p, *sp1, *sp2, *path;
	size_t		 i, n, plen;
	int		 blank;

	*head = 0;
	for (i = 0; i < len && i <= METRICS_METHOD_MAX; i++) {
		if (buf[i] < 'A' || buf[i] > 'Z')
			break;
	}
	if (i == len && i <= METRICS_METHOD_MAX)
		return (0);
	if (i == 0 || i > METRICS_METHOD_MAX || buf[i] != ' ')
		return (400);

	/* The end of the head: an empty line. */
	end = NULL;
	for (p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL;
	    p++) {
		n = len - (size_t)(p - buf);
		if (n >= 2 && p[1] == '\n') {
			end = p + 1;
			break;
		}
		if (n >= 3 && p[1] == '\r' && p[2] == '\n') {
			end = p + 2;
			break;
		}
	}
	if (end == NULL)
		return (len >= METRICS_REQ_MAX ? 431 : 0);

	/* The request line. */
	eol = memchr(buf, '\n', len);
	n = (size_t)(eol - buf);
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	sp1 = buf + i;
	if ((sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - buf))) == NULL)
		return (400);
	path = sp1 + 1;
	plen = (size_t)(sp2 - path);
	for (p = path; p < sp2; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return (400);
	}
	if (plen == 0)
		return (400);
	p = sp2 + 1;
	i = n - (size_t)(p - buf);
	if (i != 8 || strncmp(p, "HTTP/", 5) != 0 || p[5] < '0' ||
	    p[5] > '9' || p[6] != '.' || p[7] < '0' || p[7] > '9')
		return (400);
	if (p[5] != '1')
		return (505);

	/* The header lines, each "name: value". */
	blank = 0;
	for (p = eol + 1; p <= end && !blank; p = eol + 1) {
		eol = memchr(p, '\n', (size_t)(end - p) + 1);
		n = (size_t)(eol - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			blank = 1;
		else if (!metrics_http_header_ok(p, n))
			return (400);
	}

	/* Absolute form (a proxy's): the path after the authority. */
	if (plen > 7 && strncasecmp(path, "http://", 7) == 0) {
		p = memchr(path + 7, '/', plen - 7);
		if (p == NULL)
			return (404);
		plen -= (size_t)(p - path);
		path = p;
	}
	if ((p = memchr(path, '?', plen)) != NULL)
		plen = (size_t)(p - path);
	if (plen != 8 || strncmp(path, "/metrics", 8) != 0)
		return (404);
	if (sp1 - buf == 3 && strncmp(buf, "GET", 3) == 0)
		return (200);
	if (sp1 - buf == 4 && strncmp(buf, "HEAD", 4) == 0) {
		*head = 1;
		return (200);
	}
	return (405);
}

/* Listen on ep (port 0: no listener); at start-up. */
void
metrics_http_start(const struct endpoint *ep)
{
	char err[ERR_MAXLEN];

	if (mh.ev_reap == NULL) {
		mh.ev_reap = event_new(td->base, -1, 0, metrics_http_reap_cb,
		    NULL);
		mh.ev_retry = evtimer_new(td->base, metrics_http_retry_cb,
		    NULL);
		if (mh.ev_reap == NULL || mh.ev_retry == NULL)
			fatalx("metrics: out of memory");
	}
	mh.want = *ep;
	if (ep->port == 0)
		return;
	if (metrics_http_bind(ep, err, sizeof(err)) == -1) {
		log_warnx("metrics: %s; trying again every %d s", err,
		    METRICS_RETRY_SECS);
		metrics_http_retry_cb(-1, 0, NULL);
	}
}

/*
 * A reload: listen on ep now (port 0: no more). The new address is bound
 * before the old listener closes; if the old one holds the port the new
 * one needs, it is closed first and, should the new bind still fail,
 * bound again. note says what happened, for reload's summary ("" when
 * nothing changed).
 */
void
metrics_http_reconf(const struct endpoint *ep, char *note, size_t len)
{
	struct evconnlistener	*old;
	struct endpoint		 oep;
	char			 err[ERR_MAXLEN], shown[HOST_MAXLEN + 16];

	note[0] = '\0';
	if (endpoint_equal(ep, &mh.want) && (ep->port == 0 ||
	    mh.lev != NULL))
		return;
	mh.want = *ep;
	evtimer_del(mh.ev_retry);
	endpoint_format(ep, 0, shown, sizeof(shown));
	if (ep->port == 0) {
		metrics_http_close();
		snprintf(note, len, "; metrics listener closed");
		log_info("reload: metrics listener closed");
		return;
	}
	old = mh.lev;
	oep = mh.ep;
	mh.lev = NULL;
	if (metrics_http_bind(ep, err, sizeof(err)) == 0) {
		if (old != NULL)
			evconnlistener_free(old);
	} else if (old != NULL) {
		/* The old socket may hold the port: close it, try again. */
		evconnlistener_free(old);
		if (metrics_http_bind(ep, err, sizeof(err)) == -1) {
			log_warnx("reload: metrics: %s; still on the old "
			    "address", err);
			snprintf(note, len, "; metrics_listen: %s (still "
			    "listening on the old address)", err);
			mh.want = oep;
			if (metrics_http_bind(&oep, err, sizeof(err)) == -1) {
				log_warnx("reload: metrics: %s", err);
				mh.want = *ep;
				metrics_http_retry_cb(-1, 0, NULL);
			}
			return;
		}
	} else {
		log_warnx("reload: metrics: %s; trying again every %d s", err,
		    METRICS_RETRY_SECS);
		snprintf(note, len, "; metrics_listen: %s (trying again every "
		    "%d s)", err, METRICS_RETRY_SECS);
		metrics_http_retry_cb(-1, 0, NULL);
		return;
	}
	snprintf(note, len, "; metrics on %s", shown);
	log_info("reload: metrics on %s", shown);
}

/* Close the listener and every client; at the stop. */
void
metrics_http_stop(void)
{
	struct mclient *c;

	metrics_http_close();
	while ((c = TAILQ_FIRST(&mh.clients)) != NULL)
		mclient_kill(c);
	while ((c = TAILQ_FIRST(&mh.reap)) != NULL) {
		TAILQ_REMOVE(&mh.reap, c, entry);
		mclient_free(c);
	}
	if (mh.ev_retry != NULL)
		event_free(mh.ev_retry);
	if (mh.ev_reap != NULL)
		event_free(mh.ev_reap);
	mh.ev_retry = mh.ev_reap = NULL;
}

/* The responder's own series. */
void
metrics_http_render(struct evbuffer *b)
{
	size_t i;

	evbuffer_add_printf(b, "# HELP tunneld_metrics_http_responses_total "
	    "Answers of the metrics responder, by status code.\n"
	    "# TYPE tunneld_metrics_http_responses_total counter\n");
	for (i = 0; i < sizeof(mh_codes) / sizeof(mh_codes[0]); i++)
		evbuffer_add_printf(b, "tunneld_metrics_http_responses_total"
		    "{code=\"%d\"} %llu\n", mh_codes[i].code,
		    (unsigned long long)mh_codes[i].n);
	evbuffer_add_printf(b, "# HELP tunneld_metrics_http_clients "
	    "Connections to the metrics responder open now.\n"
	    "# TYPE tunneld_metrics_http_clients gauge\n"
	    "tunneld_metrics_http_clients %d\n", mh.nclients);
	evbuffer_add_printf(b, "# HELP tunneld_metrics_http_closed_total "
	    "Connections the metrics responder closed unanswered: past the "
	    "deadline, or the oldest when too many were open.\n"
	    "# TYPE tunneld_metrics_http_closed_total counter\n"
	    "tunneld_metrics_http_closed_total{reason=\"timeout\"} %llu\n"
	    "tunneld_metrics_http_closed_total{reason=\"evicted\"} %llu\n",
	    (unsigned long long)mh.timeouts, (unsigned long long)mh.evicted);
}

/* Bind and listen on ep (numeric, checked by the configuration). */
static int
metrics_http_bind(const struct endpoint *ep, char *err, size_t errlen)
{
	char	shown[HOST_MAXLEN + 16];
	int	fd;

	endpoint_format(ep, 0, shown, sizeof(shown));
	if ((fd = listen_tcp(ep, METRICS_BACKLOG, NULL, err, errlen)) == -1)
		return (-1);
	mh.lev = evconnlistener_new(td->base, metrics_http_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (mh.lev == NULL)
		fatalx("metrics: evconnlistener_new: out of memory");
	evconnlistener_set_error_cb(mh.lev, metrics_http_error_cb);
	mh.ep = *ep;
	log_info("metrics: listening on %s", shown);
	return (0);
}

/* Close the listener (the clients stay until they are answered). */
static void
metrics_http_close(void)
{
	if (mh.ev_retry != NULL)
		evtimer_del(mh.ev_retry);
	if (mh.lev != NULL)
		evconnlistener_free(mh.lev);
	mh.lev = NULL;
	memset(&mh.ep, 0, sizeof(mh.ep));
}

/* Try to bind again (fd -1: arm the timer only); also after EMFILE. */
static void
metrics_http_retry_cb(int fd, short what, void *arg)
{
	struct timeval	 tv = { METRICS_RETRY_SECS, 0 };
	char		 err[ERR_MAXLEN];

	(void)what;
	(void)arg;
	if (fd != -1 || what != 0) {
		if (mh.lev != NULL) {
			evconnlistener_enable(mh.lev);
			return;
		}
		if (mh.want.port == 0 ||
		    metrics_http_bind(&mh.want, err, sizeof(err)) == 0)
			return;
		log_debug("metrics: %s", err);
	}
	evtimer_add(mh.ev_retry, &tv);
}

/* A new client; the oldest goes when METRICS_CLIENTS_MAX are held. */
static void
metrics_http_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct mclient *c;

	(void)lev;
	(void)sa;
	(void)salen;
	(void)arg;
	if (mh.nclients >= METRICS_CLIENTS_MAX &&
	    (c = TAILQ_FIRST(&mh.clients)) != NULL) {
		mh.evicted++;
		mclient_kill(c);
	}
	c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->phase = MC_READING;
	c->ev_read = event_new(td->base, fd, EV_READ | EV_PERSIST,
	    mclient_read_cb, c);
	c->ev_write = event_new(td->base, fd, EV_WRITE | EV_PERSIST,
	    mclient_write_cb, c);
	c->ev_timer = evtimer_new(td->base, mclient_timer_cb, c);
	c->in = evbuffer_new();
	if (c->ev_read == NULL || c->ev_write == NULL || c->ev_timer == NULL ||
	    c->in == NULL)
		fatalx("metrics: out of memory");
	TAILQ_INSERT_TAIL(&mh.clients, c, entry);
	mh.nclients++;
	event_add(c->ev_read, NULL);
	mclient_deadline(c, METRICS_READ_SECS);
}

/* accept() failed: out of descriptors; pause a second. */
static void
metrics_http_error_cb(struct evconnlistener *lev, void *arg)
{
	struct timeval tv = { 1, 0 };

	(void)arg;
	log_warn("metrics: accept");
	evconnlistener_disable(lev);
	evtimer_add(mh.ev_retry, &tv);
}

/* Free the clients killed since the last turn. */
static void
metrics_http_reap_cb(int fd, short what, void *arg)
{
	struct mclient *c;

	(void)fd;
	(void)what;
	(void)arg;
	while ((c = TAILQ_FIRST(&mh.reap)) != NULL) {
		TAILQ_REMOVE(&mh.reap, c, entry);
		mclient_free(c);
	}
}

/* Close a client now; it is freed on the next loop turn. */
static void
mclient_kill(struct mclient *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	event_del(c->ev_read);
	event_del(c->ev_write);
	evtimer_del(c->ev_timer);
	close(c->fd);
	c->fd = -1;
	if (c->out != NULL) {
		mh.queued -= evbuffer_get_length(c->out);
		evbuffer_free(c->out);
		c->out = NULL;
	}
	TAILQ_REMOVE(&mh.clients, c, entry);
	mh.nclients--;
	TAILQ_INSERT_TAIL(&mh.reap, c, entry);
	if (mh.ev_reap != NULL)
		event_active(mh.ev_reap, EV_TIMEOUT, 0);
}

/* Free a killed client. */
static void
mclient_free(struct mclient *c)
{
	event_free(c->ev_read);
	event_free(c->ev_write);
	event_free(c->ev_timer);
	evbuffer_free(c->in);
	free(c);
}

/* (Re)arm the client's deadline. */
static void
mclient_deadline(struct mclient *c, int secs)
{
	struct timeval tv = { secs, 0 };

	evtimer_add(c->ev_timer, &tv);
}

/* The client sent bytes (or closed). */
static void
mclient_read_cb(int fd, short what, void *arg)
{
	struct mclient	*c = arg;
	const char	*req;
	char		 drop[4096];
	ssize_t		 n;
	size_t		 old, len, from;
	int		 code, head;

	(void)what;
	if (c->phase == MC_LINGER) {
		n = read(fd, drop, sizeof(drop));
		if (n > 0 && (c->lingered += (size_t)n) <= METRICS_LINGER_MAX)
			return;
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		mclient_kill(c);
		return;
	}
	old = evbuffer_get_length(c->in);
	n = evbuffer_read(c->in, fd, (int)(METRICS_REQ_MAX - old));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		mclient_kill(c);	/* gone before its request was whole */
		return;
	}
	len = evbuffer_get_length(c->in);
	req = (const char *)evbuffer_pullup(c->in, -1);
	/*
	 * Parse only when the head may be complete or the buffer is full, or
	 * to refuse a bad method early: a slow client costs no reparsing.
	 */
	from = old > 3 ? old - 3 : 0;
	if (old > METRICS_METHOD_MAX && len < METRICS_REQ_MAX &&
	    memmem(req + from, len - from, "\n\n", 2) == NULL &&
	    memmem(req + from, len - from, "\n\r\n", 3) == NULL)
		return;
	if ((code = metrics_http_parse(req, len, &head)) == 0)
		return;
	mclient_answer(c, code, head);
}

/* Queue the answer with status code and start sending it. */
static void
mclient_answer(struct mclient *c, int code, int head)
{
	struct evbuffer	*body;
	const char	*reason = "";
	size_t		 i, blen;

	if ((body = evbuffer_new()) == NULL ||
	    (c->out = evbuffer_new()) == NULL)
		fatalx("metrics: out of memory");
	if (code == 200) {
		metrics_render(body);
		if (mh.queued + evbuffer_get_length(body) > METRICS_OUT_BUDGET) {
			evbuffer_drain(body, evbuffer_get_length(body));
			code = 503;
		}
	}
	for (i = 0; i < sizeof(mh_codes) / sizeof(mh_codes[0]); i++) {
		if (mh_codes[i].code == code) {
			mh_codes[i].n++;
			reason = mh_codes[i].reason;
		}
	}
	if (code != 200)
		evbuffer_add_printf(body, "%d %s\n", code, reason);
	blen = evbuffer_get_length(body);
	evbuffer_add_printf(c->out, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "%s%s"
	    "Connection: close\r\n\r\n", code, reason,
	    code == 200 ? CONTENT_TYPE : "text/plain; charset=utf-8", blen,
	    code == 405 ? "Allow: GET, HEAD\r\n" : "",
	    code == 503 ? "Retry-After: 1\r\n" : "");
	if (!head)
		evbuffer_add_buffer(c->out, body);
	evbuffer_free(body);
	mh.queued += evbuffer_get_length(c->out);
	c->phase = MC_WRITING;
	event_del(c->ev_read);
	mclient_deadline(c, METRICS_WRITE_SECS);
	mclient_flush(c);
}

/* Send what the socket takes; once all is out, shut and linger. */
static void
mclient_flush(struct mclient *c)
{
	size_t	before = evbuffer_get_length(c->out);
	int	n;

	n = evbuffer_write(c->out, c->fd);
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		mclient_kill(c);
		return;
	}
	mh.queued -= before - evbuffer_get_length(c->out);
	if (evbuffer_get_length(c->out) > 0) {
		event_add(c->ev_write, NULL);
		return;
	}
	event_del(c->ev_write);
	evbuffer_free(c->out);
	c->out = NULL;
	shutdown(c->fd, SHUT_WR);
	c->phase = MC_LINGER;
	event_add(c->ev_read, NULL);
	mclient_deadline(c, METRICS_LINGER_SECS);
}

/* The socket has room again. */
static void
mclient_write_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	mclient_flush(arg);
}

/* The phase's deadline passed. */
static void
mclient_timer_cb(int fd, short what, void *arg)
{
	struct mclient *c = arg;

	(void)fd;
	(void)what;
	if (c->phase != MC_LINGER)
		mh.timeouts++;
	mclient_kill(c);
}
