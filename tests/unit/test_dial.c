/*
 * test_dial.c: resolving and connecting with daemon/dial.c, on loopback
 * only: numeric addresses, names from a hosts file (data/dial_hosts) and
 * from a small DNS server on 127.0.0.1 run by the test itself, the order of
 * the attempts, the connection attempt delay, each attempt's deadline, the
 * error kept, and cancelling at every stage.
 *
 * Addresses that never answer cannot be made on loopback without a network
 * namespace, so the test links with -Wl,--wrap=connect: __wrap_connect
 * below records every connect() dial.c makes and, for the family and port
 * a test names, stands in for the network: "blackhole" turns the socket
 * into the read end of a pipe (never writable, like a SYN that is dropped),
 * "refuse" and "unreach" fail at once with that errno, "instant" connects
 * at once to a socketpair. Everything else is the real connect().
 *
 * Every test checks that its callback never runs inside dial_start(), and
 * the fixture that no file descriptor is left open; LeakSanitizer checks
 * that every dial, cancelled ones included, is freed.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <event2/util.h>

#include "tunneld.h"

#define MAXCALLS	64
#define MAXSOCKS	16
#define WAIT		10.0	/* bound on any wait for a result, s */
#define EARLY		0.01	/* timers may fire this much early, s */

struct tunneld	*td;

int	__real_connect(int, const struct sockaddr *, socklen_t);
int	__wrap_connect(int, const struct sockaddr *, socklen_t);

/* What the stand-in connect() does for the port under test. */
enum fake {
	FAKE_REAL,
	FAKE_BLACKHOLE,
	FAKE_REFUSE,
	FAKE_UNREACH,
	FAKE_INSTANT,
};

/* What the small DNS server answers. */
enum dnsmode {
	DNS_ANSWER,	/* dual.test: A 127.0.0.1, AAAA ::1; others NXDOMAIN */
	DNS_NXDOMAIN,
	DNS_DROP,	/* no answer at all */
};

/* One connect() dial.c made. */
struct call {
	char	peer[64];
	double	at;
};

/* What a dial's callback got. */
struct result {
	int		 called;
	int		 fd;
	char		 peer[64];
	char		 err[ERR_MAXLEN];
	double		 at;
	struct dial	*d;
	int		 cancel_in_cb;
};

static struct call	 calls[MAXCALLS];
static int		 ncalls;
static int		 fake_port;		/* 0: every port is real */
static enum fake	 fake4, fake6;		/* per family, on fake_port */
static int		 holes[MAXCALLS];	/* the other ends, kept open */
static int		 nholes;

static int		 socks[MAXSOCKS];	/* the test's sockets */
static int		 nsocks;
static int		 nfd_before;

static int			 dns_fd = -1;
static struct evdns_server_port	*dns_port;
static enum dnsmode		 dns_mode;
static int			 dns_queries;

static void	format_peer(const struct sockaddr *, char *, size_t);
static int	count_fds(void);
static void	dns_server_cb(struct evdns_server_request *, void *);
static void	result_cb(int, const char *, const char *, void *);
static void	guard_cb(int, short, void *);
static void	run_until(const int *, double);
static void	run_for(double);
static int	tcp_socket(int, int, int);
static int	reserve_port(int, int);
static void	start(struct result *, const char *, int, double);
static void	assert_ok(const struct result *, const char *);
static void	assert_failed(const struct result *, const char *);

/*
 * The stand-in for connect(): record the call, then play the network for
 * fake_port, or do the real thing.
 */
int
__wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct call	*c;
	enum fake	 how = FAKE_REAL;
	int		 p[2], port = 0;

	if (ncalls < MAXCALLS) {
		c = &calls[ncalls++];
		format_peer(sa, c->peer, sizeof(c->peer));
		c->at = monotime();
	}
	if (sa->sa_family == AF_INET) {
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
		how = fake4;
	} else if (sa->sa_family == AF_INET6) {
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
		how = fake6;
	}
	if (fake_port == 0 || port != fake_port)
		how = FAKE_REAL;
	switch (how) {
	case FAKE_REAL:
		return (__real_connect(fd, sa, len));
	case FAKE_REFUSE:
		errno = ECONNREFUSED;
		return (-1);
	case FAKE_UNREACH:
		errno = ENETUNREACH;
		return (-1);
	case FAKE_BLACKHOLE:
		/* The read end of a pipe never becomes writable. */
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1)
			fail_msg("pipe2: %s", strerror(errno));
		break;
	case FAKE_INSTANT:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0, p) == -1)
			fail_msg("socketpair: %s", strerror(errno));
		break;
	}
	if (dup3(p[0], fd, O_CLOEXEC) == -1)
		fail_msg("dup3: %s", strerror(errno));
	close(p[0]);
	assert_true(nholes < MAXCALLS);
	holes[nholes++] = p[1];
	if (how == FAKE_INSTANT)
		return (0);
	errno = EINPROGRESS;
	return (-1);
}

/* "1.2.3.4:22" or "[::1]:22", as dial.c gives peers. */
static void
format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	char				 host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%d", host, ntohs(sin6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%d", host, ntohs(sin->sin_port));
	} else
		snprintf(buf, len, "family %d", sa->sa_family);
}

/* The number of open file descriptors. */
static int
count_fds(void)
{
	DIR	*dir;
	int	 n = 0;

	if ((dir = opendir("/proc/self/fd")) == NULL)
		fail_msg("/proc/self/fd: %s", strerror(errno));
	while (readdir(dir) != NULL)
		n++;
	closedir(dir);
	return (n);
}

/* The small DNS server: one name, or no such name, or silence. */
static void
dns_server_cb(struct evdns_server_request *req, void *arg)
{
	struct in_addr	 a4;
	struct in6_addr	 a6;
	int		 i, found = 0;

	(void)arg;
	dns_queries++;
	if (dns_mode == DNS_DROP) {
		evdns_server_request_drop(req);
		return;
	}
	inet_pton(AF_INET, "127.0.0.1", &a4);
	inet_pton(AF_INET6, "::1", &a6);
	for (i = 0; i < req->nquestions && dns_mode == DNS_ANSWER; i++) {
		const struct evdns_server_question *q = req->questions[i];

		if (strcasecmp(q->name, "dual.test") != 0)
			continue;
		found = 1;
		if (q->type == EVDNS_TYPE_A)
			evdns_server_request_add_a_reply(req, q->name, 1, &a4,
			    60);
		else if (q->type == EVDNS_TYPE_AAAA)
			evdns_server_request_add_aaaa_reply(req, q->name, 1,
			    &a6, 60);
	}
	evdns_server_request_respond(req, found ? 0 : DNS_ERR_NOTEXIST);
}

/* Keep what the dial reported; check its shape. */
static void
result_cb(int fd, const char *peer, const char *err, void *arg)
{
	struct result *r = arg;

	r->called++;
	r->fd = fd;
	r->at = monotime();
	assert_non_null(peer);
	strlcpy_(r->peer, peer, sizeof(r->peer));
	if (fd >= 0)
		assert_null(err);
	else {
		assert_non_null(err);
		strlcpy_(r->err, err, sizeof(r->err));
	}
	if (r->cancel_in_cb)
		dial_cancel(r->d);	/* a no-op in here */
	r->d = NULL;
}

static void
guard_cb(int fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Run the loop until *flag is set, secs at most. */
static void
run_until(const int *flag, double secs)
{
	struct event	*guard;
	struct timeval	 tv;
	int		 expired = 0;

	guard = evtimer_new(td->base, guard_cb, &expired);
	assert_non_null(guard);
	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	evtimer_add(guard, &tv);
	while (!*flag && !expired) {
		if (event_base_loop(td->base, EVLOOP_ONCE) == -1)
			break;
	}
	event_free(guard);
}

/* Run the loop for secs. */
static void
run_for(double secs)
{
	static const int never = 0;

	run_until(&never, secs);
}

/*
 * A TCP socket bound to the loopback address of a family and a port (0:
 * any), listening when asked; closed by the fixture.
 */
static int
tcp_socket(int family, int port, int listening)
{
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;
	int			fd, r;

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (family == AF_INET) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		r = bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	} else {
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)port);
		sin6.sin6_addr = in6addr_loopback;
		r = bind(fd, (struct sockaddr *)&sin6, sizeof(sin6));
	}
	if (r == -1) {
		close(fd);
		return (-1);
	}
	if (listening && listen(fd, 16) == -1)
		fail_msg("listen: %s", strerror(errno));
	assert_true(nsocks < MAXSOCKS);
	socks[nsocks++] = fd;
	return (fd);
}

/*
 * A port held on both 127.0.0.1 and ::1, listening on those asked for:
 * connecting to it where nothing listens is refused, and nothing else
 * can answer there.
 */
static int
reserve_port(int listen4, int listen6)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			fd4, i;

	for (i = 0; i < 50; i++) {
		fd4 = tcp_socket(AF_INET, 0, listen4);
		assert_true(fd4 >= 0);
		assert_int_equal(getsockname(fd4, (struct sockaddr *)&sin,
		    &len), 0);
		if (tcp_socket(AF_INET6, ntohs(sin.sin_port), listen6) >= 0)
			return (ntohs(sin.sin_port));
		close(fd4);
		socks[--nsocks] = -1;
	}
	fail_msg("no port free on both 127.0.0.1 and ::1");
	return (-1);
}

/* Start a dial that reports to r; it must not report at once. */
static void
start(struct result *r, const char *host, int port, double timeout)
{
	memset(r, 0, sizeof(*r));
	r->fd = -2;
	r->d = dial_start(NULL, host, port, timeout, result_cb, r);
	assert_non_null(r->d);
	assert_int_equal(r->called, 0);
}

/* The dial connected to peer: a non-blocking, close-on-exec socket. */
static void
assert_ok(const struct result *r, const char *peer)
{
	struct sockaddr_storage	ss;
	socklen_t		len = sizeof(ss);
	char			got[64];

	assert_int_equal(r->called, 1);
	assert_true(r->fd >= 0);
	assert_string_equal(r->peer, peer);
	assert_true(fcntl(r->fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(r->fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(getpeername(r->fd, (struct sockaddr *)&ss, &len), 0);
	format_peer((struct sockaddr *)&ss, got, sizeof(got));
	assert_string_equal(got, peer);
	close(r->fd);
}

/* The dial failed with this message. */
static void
assert_failed(const struct result *r, const char *err)
{
	assert_int_equal(r->called, 1);
	assert_int_equal(r->fd, -1);
	assert_string_equal(r->err, err);
}

/* A loop, a resolver with the test's hosts and DNS server, no fakes. */
static int
setup(void **state)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	const char		*dir;
	char			 path[512], ns[64];

	(void)state;
	nfd_before = count_fds();
	ncalls = nholes = nsocks = 0;
	fake_port = 0;
	fake4 = fake6 = FAKE_REAL;
	dns_mode = DNS_ANSWER;
	dns_queries = 0;

	td = calloc(1, sizeof(*td));
	assert_non_null(td);
	assert_non_null(td->base = event_base_new());
	assert_non_null(td->dns = evdns_base_new(td->base, 0));
	/* localhost: 127.0.0.1, then ::1 */
	evdns_base_load_hosts(td->dns, NULL);
	if ((dir = getenv("TESTDATA")) == NULL)
		dir = "tests/unit/data";
	snprintf(path, sizeof(path), "%s/dial_hosts", dir);
	assert_int_equal(evdns_base_load_hosts(td->dns, path), 0);

	dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	assert_true(dns_fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(dns_fd, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	assert_int_equal(getsockname(dns_fd, (struct sockaddr *)&sin, &len),
	    0);
	dns_port = evdns_add_server_port_with_base(td->base, dns_fd, 0,
	    dns_server_cb, NULL);
	assert_non_null(dns_port);
	snprintf(ns, sizeof(ns), "127.0.0.1:%d", ntohs(sin.sin_port));
	assert_int_equal(evdns_base_nameserver_ip_add(td->dns, ns), 0);
	evdns_base_set_option(td->dns, "randomize-case:", "0");
	return (0);
}

/* Let pending reports run, free it all: no descriptor may be left. */
static int
teardown(void **state)
{
	int i;

	(void)state;
	run_for(0.05);
	for (i = 0; i < nholes; i++)
		close(holes[i]);
	for (i = 0; i < nsocks; i++) {
		if (socks[i] != -1)
			close(socks[i]);
	}
	nholes = nsocks = 0;
	evdns_close_server_port(dns_port);
	close(dns_fd);
	dns_fd = -1;
	evdns_base_free(td->dns, 0);
	event_base_free(td->base);
	free(td);
	td = NULL;
	assert_int_equal(count_fds(), nfd_before);
	return (0);
}

/* A numeric IPv4 address that listens. */
static void
test_ipv4(void **state)
{
	struct result	r;
	char		peer[64];
	int		port;

	(void)state;
	port = reserve_port(1, 0);
	start(&r, "127.0.0.1", port, 5);
	run_until(&r.called, WAIT);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	assert_ok(&r, peer);
	assert_int_equal(ncalls, 1);
}

/* A numeric IPv6 address that listens: the peer has brackets. */
static void
test_ipv6(void **state)
{
	struct result	r;
	char		peer[64];
	int		port;

	(void)state;
	port = reserve_port(0, 1);
	start(&r, "::1", port, 5);
	run_until(&r.called, WAIT);
	snprintf(peer, sizeof(peer), "[::1]:%d", port);
	assert_ok(&r, peer);
}

/* Nothing listens: the refusal, with the address. */
static void
test_refused(void **state)
{
	struct result	r;
	char		msg[128];
	int		port;

	(void)state;
	port = reserve_port(0, 0);
	start(&r, "127.0.0.1", port, 5);
	run_until(&r.called, WAIT);
	snprintf(msg, sizeof(msg), "connect to 127.0.0.1:%d: "
	    "Connection refused", port);
	assert_failed(&r, msg);
	snprintf(msg, sizeof(msg), "127.0.0.1:%d", port);
	assert_string_equal(r.peer, msg);
}

/*
 * localhost is 127.0.0.1 then ::1: the first answer is used when it
 * listens; when it refuses, the second is tried at once and wins.
 */
static void
test_localhost(void **state)
{
	struct result	r;
	char		peer[64];
	int		port;

	(void)state;
	port = reserve_port(1, 0);
	start(&r, "localhost", port, 5);
	run_until(&r.called, WAIT);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	assert_ok(&r, peer);
	assert_int_equal(ncalls, 1);

	ncalls = 0;
	port = reserve_port(0, 1);
	start(&r, "LocalHost", port, 5);
	run_until(&r.called, WAIT);
	snprintf(peer, sizeof(peer), "[::1]:%d", port);
	assert_ok(&r, peer);
	assert_int_equal(ncalls, 2);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	assert_string_equal(calls[0].peer, peer);
}

/*
 * IPv6 first (by the hosts file); it refuses, IPv4 answers. The refusal
 * starts IPv4 at once, not after the 250 ms attempt delay (a loopback
 * refusal takes microseconds: the bound below leaves 200 ms to spare).
 */
static void
test_fallback(void **state)
{
	struct result	r;
	char		peer[64];
	int		port;

	(void)state;
	port = reserve_port(1, 0);
	start(&r, "v6first.test", port, 5);
	run_until(&r.called, WAIT);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	assert_ok(&r, peer);
	assert_int_equal(ncalls, 2);
	snprintf(peer, sizeof(peer), "[::1]:%d", port);
	assert_string_equal(calls[0].peer, peer);
	assert_true(calls[1].at - calls[0].at < 0.05);
}

/*
 * The order of the attempts: families alternate, the first answer's
 * family first, repeated addresses once; with every one refused, the
 * last refusal is reported.
 */
static void
test_order(void **state)
{
	static const char *const v4first[] = { "127.0.0.1", "[::1]",
	    "127.0.0.2", "[::ffff:127.0.0.4]", "127.0.0.3" };
	static const char *const v6first[] = { "[::1]", "127.0.0.1",
	    "[::ffff:127.0.0.5]" };
	struct result	r;
	char		want[64];
	int		port, i;

	(void)state;
	port = reserve_port(0, 0);
	fake_port = port;
	fake4 = fake6 = FAKE_REFUSE;
	start(&r, "order.test", port, 5);
	run_until(&r.called, WAIT);
	snprintf(want, sizeof(want), "connect to 127.0.0.3:%d: "
	    "Connection refused", port);
	assert_failed(&r, want);
	assert_int_equal(ncalls, 5);
	for (i = 0; i < 5; i++) {
		snprintf(want, sizeof(want), "%s:%d", v4first[i], port);
		assert_string_equal(calls[i].peer, want);
	}

	ncalls = 0;
	start(&r, "order6.test", port, 5);
	run_until(&r.called, WAIT);
	assert_int_equal(r.fd, -1);
	assert_int_equal(ncalls, 3);
	for (i = 0; i < 3; i++) {
		snprintf(want, sizeof(want), "%s:%d", v6first[i], port);
		assert_string_equal(calls[i].peer, want);
	}

	/* Twenty addresses: the first sixteen are tried. */
	ncalls = 0;
	start(&r, "many.test", port, 5);
	run_until(&r.called, WAIT);
	assert_int_equal(r.fd, -1);
	assert_int_equal(ncalls, 16);
	snprintf(want, sizeof(want), "127.0.0.16:%d", port);
	assert_string_equal(calls[15].peer, want);
}

/*
 * IPv6 first, and its packets are dropped: IPv4 starts after the
 * connection attempt delay, in parallel, and wins long before IPv6's
 * deadline.
 */
static void
test_delay(void **state)
{
	struct result	r;
	char		peer[64];
	double		t0;
	int		port;

	(void)state;
	port = reserve_port(1, 0);
	fake_port = port;
	fake6 = FAKE_BLACKHOLE;
	t0 = monotime();
	start(&r, "v6first.test", port, 30);
	run_until(&r.called, WAIT);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	assert_ok(&r, peer);
	assert_int_equal(ncalls, 2);
	assert_true(calls[1].at - calls[0].at >= 0.25 - EARLY);
	assert_true(r.at - t0 < WAIT);
}

/* A single address that never answers: its deadline ends the dial. */
static void
test_deadline(void **state)
{
	struct result	r;
	char		msg[128];
	double		t0;
	int		port;

	(void)state;
	port = reserve_port(0, 0);
	fake_port = port;
	fake4 = FAKE_BLACKHOLE;
	t0 = monotime();
	start(&r, "127.0.0.1", port, 0.3);
	run_until(&r.called, WAIT);
	snprintf(msg, sizeof(msg), "no address answered within 0.3 s "
	    "(127.0.0.1:%d)", port);
	assert_failed(&r, msg);
	assert_true(r.at - t0 >= 0.3 - EARLY);
}

/*
 * Two addresses, neither answers. With a deadline past the attempt delay
 * the second starts after the delay; with a shorter one, when the first
 * gives up. Either way each runs to its own deadline.
 */
static void
test_deadline_both(void **state)
{
	struct result	r;
	char		msg[128];
	double		t0;
	int		port;

	(void)state;
	port = reserve_port(0, 0);
	fake_port = port;
	fake4 = fake6 = FAKE_BLACKHOLE;
	t0 = monotime();
	start(&r, "v6first.test", port, 0.4);
	run_until(&r.called, WAIT);
	snprintf(msg, sizeof(msg), "no address answered within 0.4 s "
	    "([::1]:%d, 127.0.0.1:%d)", port, port);
	assert_failed(&r, msg);
	assert_int_equal(ncalls, 2);
	assert_true(calls[1].at - calls[0].at >= 0.25 - EARLY);
	assert_true(r.at - calls[1].at >= 0.4 - EARLY);

	ncalls = 0;
	t0 = monotime();
	start(&r, "v6first.test", port, 0.1);
	run_until(&r.called, WAIT);
	snprintf(msg, sizeof(msg), "no address answered within 0.1 s "
	    "([::1]:%d, 127.0.0.1:%d)", port, port);
	assert_failed(&r, msg);
	assert_int_equal(ncalls, 2);
	assert_true(calls[1].at - calls[0].at >= 0.1 - EARLY);
	assert_true(r.at - t0 >= 0.2 - EARLY);
}

/*
 * The most telling error: a refusal beats a silent address (and the dial
 * still waits for that one's deadline); a deadline beats an unreachable
 * network, which is added after it.
 */
static void
test_telling_error(void **state)
{
	struct result	r;
	char		msg[160];
	double		t0;
	int		port;

	(void)state;
	port = reserve_port(0, 0);
	fake_port = port;
	fake6 = FAKE_BLACKHOLE;
	t0 = monotime();
	start(&r, "v6first.test", port, 0.5);
	run_until(&r.called, WAIT);
	snprintf(msg, sizeof(msg), "connect to 127.0.0.1:%d: "
	    "Connection refused", port);
	assert_failed(&r, msg);
	assert_true(r.at - t0 >= 0.5 - EARLY);

	ncalls = 0;
	fake6 = FAKE_UNREACH;
	fake4 = FAKE_BLACKHOLE;
	start(&r, "v6first.test", port, 0.2);
	run_until(&r.called, WAIT);
	snprintf(msg, sizeof(msg), "no address answered within 0.2 s "
	    "(127.0.0.1:%d); connect to [::1]:%d: Network is unreachable",
	    port, port);
	assert_failed(&r, msg);
	assert_int_equal(ncalls, 2);
}

/* A name from the DNS server (A first, as evdns orders them). */
static void
test_dns(void **state)
{
	struct result	r;
	char		peer[64];
	int		port;

	(void)state;
	port = reserve_port(0, 1);
	start(&r, "dual.test", port, 5);
	run_until(&r.called, WAIT);
	snprintf(peer, sizeof(peer), "[::1]:%d", port);
	assert_ok(&r, peer);
	assert_true(dns_queries >= 2);
	assert_int_equal(ncalls, 2);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	assert_string_equal(calls[0].peer, peer);
}

/* No such name: the lookup's error, no peer, no connect. */
static void
test_dns_fail(void **state)
{
	struct result	r;
	const char	*prefix = "cannot resolve nx.test: ";

	(void)state;
	dns_mode = DNS_NXDOMAIN;
	start(&r, "nx.test", 22, 5);
	run_until(&r.called, WAIT);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.fd, -1);
	assert_string_equal(r.peer, "");
	assert_memory_equal(r.err, prefix, strlen(prefix));
	assert_true(strlen(r.err) > strlen(prefix));
	assert_int_equal(ncalls, 0);
}

/* Bad arguments fail too, on a later turn. */
static void
test_bad_args(void **state)
{
	struct result r;

	(void)state;
	start(&r, "", 22, 5);
	run_until(&r.called, WAIT);
	assert_failed(&r, "no host to connect to");
	start(&r, "127.0.0.1", 0, 5);
	run_until(&r.called, WAIT);
	assert_failed(&r, "invalid port 0");
	start(&r, "127.0.0.1", 65536, 5);
	run_until(&r.called, WAIT);
	assert_failed(&r, "invalid port 65536");
	assert_int_equal(ncalls, 0);
	dial_cancel(NULL);
}

/*
 * connect() that succeeds at once: still reported on a later turn, and
 * cancelling before that closes the socket.
 */
static void
test_instant(void **state)
{
	struct result	r;
	int		port;

	(void)state;
	port = reserve_port(0, 0);
	fake_port = port;
	fake4 = FAKE_INSTANT;
	start(&r, "127.0.0.1", port, 5);
	run_until(&r.called, WAIT);
	assert_int_equal(r.called, 1);
	assert_true(r.fd >= 0);
	assert_null(r.d);
	close(r.fd);

	start(&r, "127.0.0.1", port, 5);
	dial_cancel(r.d);
	run_for(0.1);
	assert_int_equal(r.called, 0);
}

/* Cancelled during the lookup: evdns's late report must find the shell. */
static void
test_cancel_dns(void **state)
{
	struct result r;

	(void)state;
	dns_mode = DNS_DROP;
	start(&r, "slow.test", 22, 5);
	run_until(&dns_queries, WAIT);
	assert_true(dns_queries >= 1);
	dial_cancel(r.d);
	run_for(0.2);
	assert_int_equal(r.called, 0);
	assert_int_equal(ncalls, 0);

	/* At once, before the loop ran at all. */
	start(&r, "slow.test", 22, 5);
	dial_cancel(r.d);
	run_for(0.1);
	assert_int_equal(r.called, 0);
}

/* Cancelled while attempts are in flight, or with the result waiting. */
static void
test_cancel_connecting(void **state)
{
	struct result	r;
	int		port;

	(void)state;
	port = reserve_port(0, 0);
	fake_port = port;
	fake4 = fake6 = FAKE_BLACKHOLE;
	start(&r, "127.0.0.1", port, 5);
	dial_cancel(r.d);

	/* Both attempts under way, then cancelled. */
	start(&r, "v6first.test", port, 5);
	run_until(&r.called, 0.4);
	assert_int_equal(ncalls, 3);
	dial_cancel(r.d);
	run_for(0.3);
	assert_int_equal(r.called, 0);

	/* The failure is known but not yet reported. */
	fake_port = 0;
	start(&r, "127.0.0.1", 0, 5);
	dial_cancel(r.d);
	run_for(0.1);
	assert_int_equal(r.called, 0);
}

/* dial_cancel from inside the callback does nothing. */
static void
test_cancel_in_callback(void **state)
{
	struct result	r;
	int		port;

	(void)state;
	port = reserve_port(1, 0);
	start(&r, "127.0.0.1", port, 5);
	r.cancel_in_cb = 1;
	run_until(&r.called, WAIT);
	assert_int_equal(r.called, 1);
	assert_true(r.fd >= 0);
	close(r.fd);
}

/* Run every test. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ipv4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_localhost, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_fallback, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_deadline_both, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_telling_error, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_dns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dns_fail, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_instant, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_cancel_dns, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_cancel_connecting, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_cancel_in_callback,
		    setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
