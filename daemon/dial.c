/*
 * dial.c: resolve a host and connect to it without blocking the loop, in
 * the spirit of RFC 8305 (Happy Eyeballs v2).
 *
 * Numeric addresses skip DNS; names go through evdns (A and AAAA, hosts
 * file first). The addresses are put in order by alternating the families,
 * starting with the family of the first answer (section 4), and tried in
 * that order: the next attempt starts as soon as the previous one fails,
 * or after the connection attempt delay (250 ms, section 5) while earlier
 * ones are still pending, so several may run at once. Each attempt gives
 * up after its own deadline. The first socket to connect wins and every
 * other attempt is closed. The result reaches the caller's callback on a
 * later loop turn, never from inside dial_start(), and the dial frees
 * itself right after the callback returns.
 *
 * A dial cancelled during its lookup cannot be freed at once: evdns still
 * reports the cancelled lookup later (EVUTIL_EAI_CANCEL) with the dial as
 * its argument. Everything but the struct is released at once; the struct
 * stays as a shell that this last report frees.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "tunneld.h"

#define DIAL_DELAY_US	250000	/* the connection attempt delay */
#define DIAL_MAXADDR	16	/* addresses tried per dial, at most */
#define DIAL_MAXWAIT	1e8	/* longest attempt deadline, in seconds */
#define DIAL_PEERLEN	(INET6_ADDRSTRLEN + 8)	/* "[addr]:port" */

/*
 * How telling an error is: the highest rank wins, the latest on a tie.
 * Deadlines rank between the two (dial_fail).
 */
#define RANK_OTHER	1	/* unreachable, no socket, ... */
#define RANK_REFUSED	3	/* the host answered: nothing listens */

/* An IPv4 or IPv6 socket address. */
union dial_addr {
	struct sockaddr		sa;
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;
};

/* One address and its connection attempt. */
struct dial_try {
	struct dial		*d;		/* back pointer */
	union dial_addr		 addr;		/* with the port */
	socklen_t		 addrlen;
	int			 fd;		/* owned while in flight; -1 */
	struct event		*ev;		/* its answer or its deadline */
};

/* One resolve-and-connect, or the shell of a cancelled one. */
struct dial {
	char			*host;		/* NULL once a shell */
	char			*tag;		/* "link db: dial HOST" */
	int			 port;
	double			 timeout;	/* per attempt, s; 0: none */
	dial_cb			 cb;
	void			*arg;

	struct evdns_getaddrinfo_request *dnsreq;
	int			 resolving;	/* evdns has not answered */
	int			 cancelled;	/* a shell, freed by evdns */

	struct dial_try		*tries;		/* in the order to try */
	int			 ntries;
	int			 next;		/* the next one to start */
	int			 inflight;	/* attempts under way */
	struct event		*ev_delay;	/* attempt delay */
	struct event		*ev_done;	/* delivers the result */
	int			 done;		/* result on ev_done */
	int			 delivering;	/* in the caller's cb */

	/* The result. */
	int			 fd;		/* the winner, or -1 */
	char			 peer[DIAL_PEERLEN];	/* or last tried */
	char			 err[ERR_MAXLEN];	/* best non-deadline */
	int			 err_rank;
	char			 tmo[ERR_MAXLEN / 2];	/* "a, b" timed out */
	int			 ntmo;
	int			 tmo_full;	/* tmo ends in ", ..." */
};

static int	dial_numeric(struct dial *);
static void	dial_dns_cb(int, struct evutil_addrinfo *, void *);
static int	dial_order(struct dial *, const struct evutil_addrinfo *);
static int	dial_seen(const struct evutil_addrinfo *const *, int,
		    const struct evutil_addrinfo *);
static void	dial_add(struct dial *, const struct sockaddr *);
static void	dial_next(struct dial *);
static int	dial_try_start(struct dial *, struct dial_try *);
static void	dial_try_cb(int, short, void *);
static void	dial_try_stop(struct dial *, struct dial_try *);
static void	dial_delay_cb(int, short, void *);
static void	dial_win(struct dial *, struct dial_try *);
static void	dial_fail(struct dial *);
static void	dial_deliver(struct dial *);
static void	dial_done_cb(int, short, void *);
static void	dial_stop(struct dial *);
static void	dial_release(struct dial *);
static void	dial_note_error(struct dial *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static void	dial_note_timeout(struct dial *, const char *);

/*
 * Start resolving and connecting host:port for who ("link db", "tunnel
 * pg": what its log lines are about, or NULL); attempt_timeout is each
 * attempt's deadline in seconds (<= 0: none). cb runs once, on a later
 * loop turn, unless dial_cancel() comes first.
 */
struct dial *
dial_start(const char *who, const char *host, int port,
    double attempt_timeout, dial_cb cb, void *arg)
{
	struct dial				*d;
	struct evutil_addrinfo			 hints;
	struct evdns_getaddrinfo_request	*req;

	d = xcalloc(1, sizeof(*d));
	d->host = xstrdup(host != NULL ? host : "");
	xasprintf(&d->tag, "%s%sdial %s", who != NULL ? who : "",
	    who != NULL ? ": " : "", d->host);
	d->port = port;
	d->timeout = attempt_timeout > 0 ? attempt_timeout : 0;
	d->cb = cb;
	d->arg = arg;
	d->fd = -1;
	if ((d->ev_delay = evtimer_new(td->base, dial_delay_cb, d)) == NULL ||
	    (d->ev_done = event_new(td->base, -1, 0, dial_done_cb, d)) == NULL)
		fatalx("dial_start: out of memory");

	if (d->host[0] == '\0' || strlen(d->host) > HOST_MAXLEN) {
		strlcpy_(d->err, "no host to connect to", sizeof(d->err));
		dial_deliver(d);
		return (d);
	}
	if (port < 1 || port > 65535) {
		snprintf(d->err, sizeof(d->err), "invalid port %d", port);
		dial_deliver(d);
		return (d);
	}
	if (dial_numeric(d)) {
		dial_next(d);
		return (d);
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	log_debug("%s: resolving", d->tag);
	/* evdns answers at once from the hosts file, inside this call. */
	d->resolving = 1;
	req = evdns_getaddrinfo(td->dns, d->host, NULL, &hints, dial_dns_cb,
	    d);
	if (d->resolving) {
		if (req != NULL)
			d->dnsreq = req;
		else {
			d->resolving = 0;
			snprintf(d->err, sizeof(d->err),
			    "cannot resolve %s: lookup not started", d->host);
			dial_deliver(d);
		}
	}
	return (d);
}

/*
 * Stop everything and free the dial; its callback never runs after this.
 * A no-op from inside that callback (the dial is freed when it returns).
 */
void
dial_cancel(struct dial *d)
{
	struct evdns_getaddrinfo_request *req;

	if (d == NULL || d->delivering)
		return;
	if ((req = d->dnsreq) == NULL) {
		dial_release(d);
		free(d);
		return;
	}
	/* evdns reports the cancelled lookup later: keep a shell for it. */
	d->dnsreq = NULL;
	dial_release(d);
	d->cancelled = 1;
	evdns_getaddrinfo_cancel(req);	/* may free d: touch it no more */
}

/* Is the dial still waiting for its lookup (not a cancelled shell)? */
int
dial_resolving(const struct dial *d)
{
	return (d != NULL && d->resolving && !d->cancelled);
}

/* A numeric IPv4 or IPv6 address: the only one to try, no lookup. */
static int
dial_numeric(struct dial *d)
{
	union dial_addr a;

	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, d->host, &a.sin.sin_addr) == 1)
		a.sa.sa_family = AF_INET;
	else if (inet_pton(AF_INET6, d->host, &a.sin6.sin6_addr) == 1)
		a.sa.sa_family = AF_INET6;
	else
		return (0);
	d->tries = xcalloc(1, sizeof(*d->tries));
	dial_add(d, &a.sa);
	return (1);
}

/* The lookup finished, or its cancellation is reported. */
static void
dial_dns_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct dial *d = arg;

	d->dnsreq = NULL;
	d->resolving = 0;
	if (d->cancelled) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		free(d);
		return;
	}
	if (err != 0 || res == NULL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		snprintf(d->err, sizeof(d->err), "cannot resolve %s: %s",
		    d->host, err != 0 ? evutil_gai_strerror(err) :
		    "no address");
		dial_deliver(d);
		return;
	}
	if (dial_order(d, res) == 0) {
		snprintf(d->err, sizeof(d->err),
		    "cannot resolve %s: no IPv4 or IPv6 address", d->host);
		evutil_freeaddrinfo(res);
		dial_deliver(d);
		return;
	}
	evutil_freeaddrinfo(res);
	log_debug("%s: %d address%s", d->tag, d->ntries,
	    d->ntries == 1 ? "" : "es");
	dial_next(d);
}

/*
 * Fill d->tries from a lookup: IPv4 and IPv6 addresses without repeats,
 * the families alternating, the family of the first answer first
 * (RFC 8305 section 4), DIAL_MAXADDR at most. Returns their number.
 */
static int
dial_order(struct dial *d, const struct evutil_addrinfo *res)
{
	const struct evutil_addrinfo	*ai, *fam[2][DIAL_MAXADDR];
	int				 n[2] = { 0, 0 }, first = -1, k, i;
	int				 total;

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_addr == NULL)
			continue;
		if (ai->ai_family == AF_INET &&
		    ai->ai_addrlen >= sizeof(struct sockaddr_in))
			k = 0;
		else if (ai->ai_family == AF_INET6 &&
		    ai->ai_addrlen >= sizeof(struct sockaddr_in6))
			k = 1;
		else
			continue;
		if (ai->ai_addr->sa_family != ai->ai_family)
			continue;
		if (first == -1)
			first = k;
		if (n[k] < DIAL_MAXADDR && !dial_seen(fam[k], n[k], ai))
			fam[k][n[k]++] = ai;
	}
	if (first == -1)
		return (0);
	total = n[0] + n[1];
	d->tries = xcalloc(total < DIAL_MAXADDR ? total : DIAL_MAXADDR,
	    sizeof(*d->tries));
	for (i = 0; i < DIAL_MAXADDR && d->ntries < DIAL_MAXADDR; i++) {
		if (i < n[first])
			dial_add(d, fam[first][i]->ai_addr);
		if (i < n[!first] && d->ntries < DIAL_MAXADDR)
			dial_add(d, fam[!first][i]->ai_addr);
	}
	return (d->ntries);
}

/* Is this address (not its port) already among those of its family? */
static int
dial_seen(const struct evutil_addrinfo *const *list, int n,
    const struct evutil_addrinfo *ai)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;
	int				 i;

	for (i = 0; i < n; i++) {
		if (ai->ai_family == AF_INET) {
			a4 = (const struct sockaddr_in *)list[i]->ai_addr;
			b4 = (const struct sockaddr_in *)ai->ai_addr;
			if (a4->sin_addr.s_addr == b4->sin_addr.s_addr)
				return (1);
		} else {
			a6 = (const struct sockaddr_in6 *)list[i]->ai_addr;
			b6 = (const struct sockaddr_in6 *)ai->ai_addr;
			if (memcmp(&a6->sin6_addr, &b6->sin6_addr,
			    sizeof(a6->sin6_addr)) == 0 &&
			    a6->sin6_scope_id == b6->sin6_scope_id)
				return (1);
		}
	}
	return (0);
}

/* Append an address to try (the room is there), with the dial's port. */
static void
dial_add(struct dial *d, const struct sockaddr *sa)
{
	struct dial_try *t = &d->tries[d->ntries++];

	memset(t, 0, sizeof(*t));
	t->d = d;
	t->fd = -1;
	if (sa->sa_family == AF_INET) {
		memcpy(&t->addr.sin, sa, sizeof(t->addr.sin));
		t->addr.sin.sin_port = htons((uint16_t)d->port);
		t->addrlen = sizeof(t->addr.sin);
	} else {
		memcpy(&t->addr.sin6, sa, sizeof(t->addr.sin6));
		t->addr.sin6.sin6_port = htons((uint16_t)d->port);
		t->addrlen = sizeof(t->addr.sin6);
	}
}

/*
 * Start the next attempts: one, or more while they fail at once. With
 * attempts in flight and addresses left, arm the connection attempt
 * delay; with neither, the dial has failed.
 */
static void
dial_next(struct dial *d)
{
	struct timeval tv;

	while (!d->done && d->next < d->ntries) {
		if (dial_try_start(d, &d->tries[d->next++]) == 0)
			break;
	}
	if (d->done)
		return;
	evtimer_del(d->ev_delay);
	if (d->inflight == 0)
		dial_fail(d);
	else if (d->next < d->ntries) {
		tv.tv_sec = 0;
		tv.tv_usec = DIAL_DELAY_US;
		evtimer_add(d->ev_delay, &tv);
	}
}

/*
 * Open a non-blocking socket and connect it to one address. Returns 0
 * when the attempt is under way or has already won, -1 when it failed at
 * once (the error noted).
 */
static int
dial_try_start(struct dial *d, struct dial_try *t)
{
	struct timeval	 tv;
	double		 w;
	int		 fd, e;

	sockaddr_format(&t->addr.sa, d->peer, sizeof(d->peer));
	log_debug("%s: connecting to %s", d->tag, d->peer);
	fd = socket(t->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd == -1) {
		dial_note_error(d, errno, "socket for %s: %s", d->peer,
		    strerror(errno));
		return (-1);
	}
	if (connect(fd, &t->addr.sa, t->addrlen) == 0) {
		t->fd = fd;
		dial_win(d, t);
		return (0);
	}
	if (errno != EINPROGRESS && errno != EINTR) {
		e = errno;
		close(fd);
		dial_note_error(d, e, "connect to %s: %s", d->peer,
		    strerror(e));
		return (-1);
	}
	if ((t->ev = event_new(td->base, fd, EV_WRITE, dial_try_cb, t)) ==
	    NULL)
		fatalx("dial_try_start: out of memory");
	t->fd = fd;
	d->inflight++;
	if (d->timeout > 0) {
		w = d->timeout < DIAL_MAXWAIT ? d->timeout : DIAL_MAXWAIT;
		tv.tv_sec = (time_t)w;
		tv.tv_usec = (suseconds_t)((w - (double)tv.tv_sec) * 1e6);
		event_add(t->ev, &tv);
	} else
		event_add(t->ev, NULL);
	return (0);
}

/* An attempt's connect finished, one way or the other, or its time ran out. */
static void
dial_try_cb(int fd, short what, void *arg)
{
	struct dial_try	*t = arg;
	struct dial	*d = t->d;
	socklen_t	 len = sizeof(int);
	char		 peer[DIAL_PEERLEN];
	int		 err = 0;

	if (what & EV_WRITE) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err == 0) {
			dial_win(d, t);
			return;
		}
	}
	sockaddr_format(&t->addr.sa, peer, sizeof(peer));
	dial_try_stop(d, t);
	if (what & EV_WRITE) {
		dial_note_error(d, err, "connect to %s: %s", peer,
		    strerror(err));
		log_debug("%s: %s", d->tag, d->err);
	} else {
		dial_note_timeout(d, peer);
		log_debug("%s: no answer from %s within %g s", d->tag,
		    peer, d->timeout);
	}
	dial_next(d);
}

/* Close an attempt in flight. */
static void
dial_try_stop(struct dial *d, struct dial_try *t)
{
	if (t->ev != NULL) {
		event_free(t->ev);
		t->ev = NULL;
		d->inflight--;
	}
	if (t->fd != -1) {
		close(t->fd);
		t->fd = -1;
	}
}

/* The connection attempt delay passed with attempts still pending. */
static void
dial_delay_cb(int fd, short what, void *arg)
{
	struct dial *d = arg;

	(void)fd;
	(void)what;
	dial_next(d);
}

/* This attempt connected: keep its socket, close every other attempt. */
static void
dial_win(struct dial *d, struct dial_try *t)
{
	d->fd = t->fd;
	t->fd = -1;
	dial_try_stop(d, t);
	sockaddr_format(&t->addr.sa, d->peer, sizeof(d->peer));
	log_debug("%s: connected to %s", d->tag, d->peer);
	dial_stop(d);
	dial_deliver(d);
}

/*
 * Every attempt failed: report the most telling error. A refusal says the
 * host is there; failing that, a deadline says where nothing answered,
 * with any other error after it.
 */
static void
dial_fail(struct dial *d)
{
	char	msg[ERR_MAXLEN];
	size_t	len;

	if (d->ntmo > 0 && d->err_rank < RANK_REFUSED) {
		snprintf(msg, sizeof(msg),
		    "no address answered within %g s (%s)", d->timeout,
		    d->tmo);
		len = strlen(msg);
		if (d->err[0] != '\0' && len + 3 < sizeof(msg)) {
			memcpy(msg + len, "; ", 3);
			strlcpy_(msg + len + 2, d->err, sizeof(msg) - len - 2);
		}
		strlcpy_(d->err, msg, sizeof(d->err));
	} else if (d->err[0] == '\0')
		strlcpy_(d->err, "no address to connect to", sizeof(d->err));
	dial_deliver(d);
}

/* The result is known: hand it over on the next loop turn. */
static void
dial_deliver(struct dial *d)
{
	d->done = 1;
	event_active(d->ev_done, EV_TIMEOUT, 0);
}

/* Call the caller back with the result, then free the dial. */
static void
dial_done_cb(int fd, short what, void *arg)
{
	struct dial	*d = arg;
	int		 conn = d->fd;

	(void)fd;
	(void)what;
	d->fd = -1;
	d->delivering = 1;
	if (d->cb != NULL)
		d->cb(conn, d->peer, conn == -1 ? d->err : NULL, d->arg);
	else if (conn != -1)
		close(conn);
	dial_release(d);
	free(d);
}

/* Close every attempt in flight and start no other. */
static void
dial_stop(struct dial *d)
{
	int i;

	for (i = 0; i < d->ntries; i++)
		dial_try_stop(d, &d->tries[i]);
	d->next = d->ntries;
	if (d->ev_delay != NULL)
		evtimer_del(d->ev_delay);
}

/* Free all the dial holds but the struct itself and a pending lookup. */
static void
dial_release(struct dial *d)
{
	dial_stop(d);
	if (d->fd != -1) {
		close(d->fd);
		d->fd = -1;
	}
	if (d->ev_delay != NULL) {
		event_free(d->ev_delay);
		d->ev_delay = NULL;
	}
	if (d->ev_done != NULL) {
		event_free(d->ev_done);
		d->ev_done = NULL;
	}
	free(d->tries);
	d->tries = NULL;
	d->ntries = d->next = 0;
	free(d->host);
	d->host = NULL;
	free(d->tag);
	d->tag = NULL;
}

/*
 * An attempt failed (not by its deadline): keep its message when it is
 * at least as telling as the one kept so far.
 */
static void
dial_note_error(struct dial *d, int err, const char *fmt, ...)
{
	va_list	ap;
	int	rank;

	rank = err == ECONNREFUSED ? RANK_REFUSED : RANK_OTHER;
	if (rank < d->err_rank)
		return;
	d->err_rank = rank;
	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
}

/* An attempt reached its deadline: add its peer to the list of those. */
static void
dial_note_timeout(struct dial *d, const char *peer)
{
	static const char	 more[] = ", ...";
	const char		*sep = d->ntmo > 0 ? ", " : "";
	size_t			 len = strlen(d->tmo);

	d->ntmo++;
	if (d->tmo_full)
		return;
	/* Always leave room for ", ..." after what is added. */
	if (len + strlen(sep) + strlen(peer) + sizeof(more) <=
	    sizeof(d->tmo)) {
		snprintf(d->tmo + len, sizeof(d->tmo) - len, "%s%s", sep,
		    peer);
		return;
	}
	strlcpy_(d->tmo + len, more, sizeof(d->tmo) - len);
	d->tmo_full = 1;
}

