/*
 * loadgen.c: the load side of `make bench`.
 *
 *   loadgen serve [--max-time S] [--echos K]
 *	Loopback servers on 127.0.0.1, ephemeral ports, one epoll loop:
 *	  echo    everything read is written back; EOF is answered with EOF
 *	  sink    reads until EOF, then answers "<bytes>\n" and closes
 *	  source  reads a line "<bytes>\n", sends that many bytes, closes
 *	Prints "ports echo=E sink=K source=S" once listening (with --echos,
 *	" echos=E1,E2,..": K more echo servers, for more connections than
 *	one client address has ports towards one server), runs until
 *	SIGTERM/SIGINT or --max-time seconds.
 *
 *   loadgen up   --port P --bytes N [--timeout S]	  N bytes to a sink
 *   loadgen down --port P --bytes N [--timeout S]	  N bytes from a source
 *	One stream; prints {"bytes":N,"secs":T} when every byte arrived.
 *
 *   loadgen lat --port P --n K [--timeout S]
 *	K sequential connections to an echo server: connect, 1 byte each way,
 *	close. Prints {"n":K,"fail":F,"us":[...]} (one sample per success).
 *
 *   loadgen conc --port P --n K --size B [--window W] [--timeout S]
 *	    [--hold S] [--ports P1,P2,..] [--sources A]
 *	K connections to an echo server (connection i to the i-th of --ports,
 *	round robin, from 127.0.0.(2 + i % A) with --sources), at most W of
 *	them between connect
 *	and "data checked" at a time (the ramp). Each sends B bytes of its own
 *	pattern and checks the echo. The checked connections stay open; when
 *	all are checked (or --timeout), prints "hold ok=.. fail=.." and keeps
 *	them open until a line arrives on stdin (or --hold seconds), then
 *	closes them and prints a JSON summary.
 *
 *   loadgen delay --to P --delay MS [--rate MBIT] [--queue BYTES]
 *	    [--listen ADDR] [--port L] [--netns PATH] [--max-time S]
 *	A WAN in user space (the kernel here has no netem): listens on ADDR:L
 *	(default 127.0.0.1, an ephemeral port; inside the network namespace
 *	PATH when given), and relays every connection to 127.0.0.1:P in the
 *	namespace it was started in. Each direction holds every chunk it reads
 *	MS milliseconds (so a round trip costs 2 MS), paced at MBIT Mbit/s
 *	when given (a chunk leaves the "wire" len/rate after the one before),
 *	with at most BYTES queued per direction (default: three times what
 *	the rate keeps in flight one way, at least 4 MiB; 64 MiB unpaced):
 *	past that it stops reading, so the sender's TCP slows down. EOF is
 *	carried in order. Prints "port L" once listening; runs until
 *	SIGTERM/SIGINT or --max-time seconds.
 *
 * Every mode but delay connects to 127.0.0.1 only (delay listens where it
 * is told and connects to 127.0.0.1), and every mode is bounded in time:
 * it exits by itself when its timeout passes.
 */
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IOBUF		(256 * 1024)
#define MAXEV		512
#define MAXPORTS	1024

static unsigned char	iobuf[IOBUF];
static volatile sig_atomic_t stop_flag;

static void	usage(void) __attribute__((noreturn));
static void	die(const char *) __attribute__((noreturn));

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen serve [--max-time S] [--echos K]\n"
	    "       loadgen up|down --port P --bytes N [--timeout S]\n"
	    "       loadgen lat --port P --n K [--timeout S]\n"
	    "       loadgen conc --port P --n K --size B [--window W] "
	    "[--timeout S] [--hold S]\n"
	    "           [--ports P1,P2,..] [--sources A]\n"
	    "       loadgen delay --to P --delay MS [--rate MBIT] "
	    "[--queue BYTES] [--listen ADDR]\n"
	    "           [--port L] [--netns PATH] [--max-time S]\n");
	exit(2);
}

static void
die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		die("fcntl");
}

static void
set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct sockaddr_in
loopback(int port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return (sin);
}

/* ------------------------------------------------------------------ */
/* serve */

enum kind { K_LISTEN_ECHO, K_LISTEN_SINK, K_LISTEN_SOURCE, K_ECHO, K_SINK,
	K_SOURCE };

struct sconn {
	int		 fd;
	enum kind	 kind;
	unsigned char	*pend;		/* echo: bytes the peer did not take */
	size_t		 pend_len, pend_off;
	int		 eof;		/* echo: peer sent EOF */
	uint64_t	 count;		/* sink: bytes read; source: to send */
	char		 line[32];	/* source: the request line */
	size_t		 line_len;
	int		 sending;	/* source: request read */
};

static int	epfd;

static void
ep_set(struct sconn *c, uint32_t events, int op)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, op, c->fd, &ev) == -1)
		die("epoll_ctl");
}

static void
sconn_close(struct sconn *c)
{
	close(c->fd);		/* also leaves the epoll set */
	free(c->pend);
	free(c);
}

static int
listen_on(enum kind k, int *port)
{
	struct sockaddr_in	sin = loopback(0);
	socklen_t		len = sizeof(sin);
	struct sconn		*c;
	int			fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		die("socket");
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		die("bind");
	if (listen(fd, 65535) == -1)
		die("listen");
	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		die("getsockname");
	*port = ntohs(sin.sin_port);
	set_nonblock(fd);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		die("calloc");
	c->fd = fd;
	c->kind = k;
	ep_set(c, EPOLLIN, EPOLL_CTL_ADD);
	return (fd);
}

static void
serve_accept(struct sconn *l)
{
	struct sconn	*c;
	int		 fd;

	for (;;) {
		fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK);
		if (fd == -1) {
			if (errno == EINTR)
				continue;
			return;		/* EAGAIN, EMFILE, ...: next turn */
		}
		set_nodelay(fd);
		if ((c = calloc(1, sizeof(*c))) == NULL)
			die("calloc");
		c->fd = fd;
		c->kind = l->kind == K_LISTEN_ECHO ? K_ECHO :
		    l->kind == K_LISTEN_SINK ? K_SINK : K_SOURCE;
		ep_set(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
	}
}

/* Echo: returns -1 when the connection is finished. */
static int
serve_echo(struct sconn *c, uint32_t events)
{
	ssize_t	n, w;

	if (c->pend != NULL && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		w = write(c->fd, c->pend + c->pend_off,
		    c->pend_len - c->pend_off);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return (-1);
		if (w > 0)
			c->pend_off += (size_t)w;
		if (c->pend_off < c->pend_len)
			return (0);
		free(c->pend);
		c->pend = NULL;
		if (c->eof) {
			shutdown(c->fd, SHUT_WR);
			return (-1);
		}
		ep_set(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
	}
	if (c->pend != NULL)
		return (0);
	for (;;) {
		n = read(c->fd, iobuf, 64 * 1024);
		if (n == 0) {
			shutdown(c->fd, SHUT_WR);
			return (-1);
		}
		if (n < 0)
			return (errno == EAGAIN || errno == EINTR ? 0 : -1);
		w = write(c->fd, iobuf, (size_t)n);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return (-1);
		if (w < 0)
			w = 0;
		if (w < n) {
			c->pend_len = (size_t)(n - w);
			c->pend_off = 0;
			if ((c->pend = malloc(c->pend_len)) == NULL)
				die("malloc");
			memcpy(c->pend, iobuf + w, c->pend_len);
			ep_set(c, EPOLLOUT, EPOLL_CTL_MOD);
			return (0);
		}
	}
}

static int
serve_sink(struct sconn *c)
{
	char	reply[32];
	ssize_t	n;
	int	len;

	for (;;) {
		n = read(c->fd, iobuf, IOBUF);
		if (n > 0) {
			c->count += (uint64_t)n;
			continue;
		}
		if (n < 0)
			return (errno == EAGAIN || errno == EINTR ? 0 : -1);
		len = snprintf(reply, sizeof(reply), "%" PRIu64 "\n",
		    c->count);
		(void)!write(c->fd, reply, (size_t)len);
		shutdown(c->fd, SHUT_WR);
		return (-1);
	}
}

static int
serve_source(struct sconn *c)
{
	ssize_t	n;
	size_t	want;

	if (!c->sending) {
		n = read(c->fd, c->line + c->line_len,
		    sizeof(c->line) - 1 - c->line_len);
		if (n < 0)
			return (errno == EAGAIN || errno == EINTR ? 0 : -1);
		if (n == 0)
			return (-1);
		c->line_len += (size_t)n;
		c->line[c->line_len] = '\0';
		if (strchr(c->line, '\n') == NULL)
			return (c->line_len + 1 >= sizeof(c->line) ? -1 : 0);
		c->count = strtoull(c->line, NULL, 10);
		c->sending = 1;
		ep_set(c, EPOLLOUT, EPOLL_CTL_MOD);
	}
	while (c->count > 0) {
		want = c->count < IOBUF ? (size_t)c->count : IOBUF;
		n = write(c->fd, iobuf, want);
		if (n < 0)
			return (errno == EAGAIN || errno == EINTR ? 0 : -1);
		c->count -= (uint64_t)n;
	}
	shutdown(c->fd, SHUT_WR);
	return (-1);
}

static int
cmd_serve(double max_time, int echos)
{
	struct epoll_event	 evs[MAXEV];
	struct sconn		*c;
	int			 pe, pk, ps, px, i, n, r;
	double			 end = now() + max_time;

	for (i = 0; i < IOBUF; i++)
		iobuf[i] = (unsigned char)(i * 7 + (i >> 9));
	if ((epfd = epoll_create1(0)) == -1)
		die("epoll_create1");
	listen_on(K_LISTEN_ECHO, &pe);
	listen_on(K_LISTEN_SINK, &pk);
	listen_on(K_LISTEN_SOURCE, &ps);
	printf("ports echo=%d sink=%d source=%d", pe, pk, ps);
	for (i = 0; i < echos; i++) {
		listen_on(K_LISTEN_ECHO, &px);
		printf("%s%d", i == 0 ? " echos=" : ",", px);
	}
	printf("\n");
	fflush(stdout);
	while (!stop_flag && now() < end) {
		n = epoll_wait(epfd, evs, MAXEV, 500);
		if (n == -1 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++) {
			c = evs[i].data.ptr;
			switch (c->kind) {
			case K_LISTEN_ECHO:
			case K_LISTEN_SINK:
			case K_LISTEN_SOURCE:
				serve_accept(c);
				continue;
			case K_ECHO:
				r = serve_echo(c, evs[i].events);
				break;
			case K_SINK:
				r = serve_sink(c);
				break;
			default:
				r = serve_source(c);
				break;
			}
			if (r == -1)
				sconn_close(c);
		}
	}
	return (0);
}

/* ------------------------------------------------------------------ */
/* up, down: one stream */

static int
connect_blocking(int port, double timeout)
{
	struct sockaddr_in	sin = loopback(port);
	struct timeval		tv;
	int			fd;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		die("socket");
	tv.tv_sec = (time_t)timeout;
	tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return (-1);
	}
	set_nodelay(fd);
	return (fd);
}

static int
cmd_up(int port, uint64_t bytes, double timeout)
{
	char		 reply[64];
	uint64_t	 left = bytes, got;
	size_t		 rl = 0;
	ssize_t		 n;
	double		 t0;
	int		 fd;

	memset(iobuf, 0x5a, IOBUF);
	t0 = now();
	if ((fd = connect_blocking(port, timeout)) == -1)
		die("connect");
	while (left > 0) {
		n = write(fd, iobuf, left < IOBUF ? (size_t)left : IOBUF);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		left -= (uint64_t)n;
	}
	shutdown(fd, SHUT_WR);
	while (rl < sizeof(reply) - 1) {
		n = read(fd, reply + rl, sizeof(reply) - 1 - rl);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read");
		if (n == 0)
			break;
		rl += (size_t)n;
	}
	reply[rl] = '\0';
	got = strtoull(reply, NULL, 10);
	if (got != bytes) {
		fprintf(stderr, "loadgen: sink counted %" PRIu64 " of %"
		    PRIu64 " bytes\n", got, bytes);
		return (1);
	}
	printf("{\"bytes\":%" PRIu64 ",\"secs\":%.6f}\n", bytes, now() - t0);
	close(fd);
	return (0);
}

static int
cmd_down(int port, uint64_t bytes, double timeout)
{
	char		 req[32];
	uint64_t	 got = 0;
	ssize_t		 n;
	double		 t0;
	int		 fd, len;

	t0 = now();
	if ((fd = connect_blocking(port, timeout)) == -1)
		die("connect");
	len = snprintf(req, sizeof(req), "%" PRIu64 "\n", bytes);
	if (write(fd, req, (size_t)len) != len)
		die("write");
	for (;;) {
		n = read(fd, iobuf, IOBUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read");
		if (n == 0)
			break;
		got += (uint64_t)n;
	}
	if (got != bytes) {
		fprintf(stderr, "loadgen: received %" PRIu64 " of %" PRIu64
		    " bytes\n", got, bytes);
		return (1);
	}
	printf("{\"bytes\":%" PRIu64 ",\"secs\":%.6f}\n", bytes, now() - t0);
	close(fd);
	return (0);
}

/* ------------------------------------------------------------------ */
/* lat: sequential connect, 1 byte echoed, close */

static int
cmd_lat(int port, int count, double timeout)
{
	double	*us, t0, end = now() + timeout;
	char	 b = 'x';
	int	 i, fd, ok = 0, fail = 0;

	if ((us = calloc((size_t)count, sizeof(*us))) == NULL)
		die("calloc");
	for (i = 0; i < count && now() < end; i++) {
		t0 = now();
		if ((fd = connect_blocking(port, 5.0)) == -1) {
			fail++;
			continue;
		}
		if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1) {
			fail++;
			close(fd);
			continue;
		}
		close(fd);
		us[ok++] = (now() - t0) * 1e6;
	}
	fail += count - ok - fail;	/* not tried before the timeout */
	printf("{\"n\":%d,\"fail\":%d,\"us\":[", ok, fail);
	for (i = 0; i < ok; i++)
		printf("%s%.1f", i ? "," : "", us[i]);
	printf("]}\n");
	free(us);
	return (0);
}

/* ------------------------------------------------------------------ */
/* conc: many connections, each moving and checking its bytes */

enum cstate { C_NEW, C_CONNECTING, C_DATA, C_HELD, C_FAILED };
enum cfail { F_CONNECT, F_RESET, F_EOF, F_MISMATCH, F_TIMEOUT, F_NFAIL };

static const char *fail_names[F_NFAIL] = {
	"connect", "reset", "early_eof", "mismatch", "timeout"
};

struct cconn {
	int		fd;
	int		id;
	enum cstate	state;
	size_t		sent, recvd;
};

static unsigned char
pattern(int id, size_t j)
{
	return ((unsigned char)((unsigned)id * 131u + (unsigned)j * 7u +
	    (unsigned)(j >> 8)));
}

static int
cmd_conc(const int *ports, int nports, int count, size_t size, int window,
    double timeout, double hold, int sources)
{
	struct sockaddr_in	 sin, src;
	struct epoll_event	 evs[MAXEV], ev;
	struct cconn		*cs, *c;
	unsigned char		 out[16384];
	int			 fails[F_NFAIL] = { 0 };
	int			 next = 0, active = 0, held = 0, failed = 0;
	int			 i, j, n, fd, f, err, one = 1;
	socklen_t		 elen;
	ssize_t			 r;
	size_t			 k, want;
	double			 t0 = now(), end = t0 + timeout, t_done;
	char			 line[16];
	struct pollfd		 pfd;

	if ((cs = calloc((size_t)count, sizeof(*cs))) == NULL)
		die("calloc");
	if ((epfd = epoll_create1(0)) == -1)
		die("epoll_create1");

#define FAIL(cc, why) do {						\
		fails[(why)]++;						\
		failed++;						\
		active--;						\
		(cc)->state = C_FAILED;					\
		close((cc)->fd);					\
		(cc)->fd = -1;						\
	} while (0)

	while (held + failed < count && now() < end) {
		while (active < window && next < count) {
			c = &cs[next];
			c->id = next++;
			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (c->fd == -1) {
				fails[F_CONNECT]++;
				failed++;
				c->state = C_FAILED;
				continue;
			}
			set_nodelay(c->fd);
			active++;
			if (sources > 0) {
				/* The port is picked at connect, per 4-tuple. */
				src = loopback(0);
				src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 +
				    (uint32_t)(c->id % sources));
				(void)setsockopt(c->fd, IPPROTO_IP,
				    IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
				if (bind(c->fd, (struct sockaddr *)&src,
				    sizeof(src)) == -1) {
					FAIL(c, F_CONNECT);
					continue;
				}
			}
			sin = loopback(ports[c->id % nports]);
			if (connect(c->fd, (struct sockaddr *)&sin,
			    sizeof(sin)) == -1 && errno != EINPROGRESS) {
				FAIL(c, F_CONNECT);
				continue;
			}
			c->state = C_CONNECTING;
			memset(&ev, 0, sizeof(ev));
			ev.events = EPOLLIN | EPOLLOUT;
			ev.data.ptr = c;
			if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1)
				die("epoll_ctl");
		}
		n = epoll_wait(epfd, evs, MAXEV, 100);
		if (n == -1 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++) {
			c = evs[i].data.ptr;
			if (c->state == C_CONNECTING) {
				err = 0;
				elen = sizeof(err);
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err,
				    &elen);
				if (err != 0) {
					FAIL(c, F_CONNECT);
					continue;
				}
				c->state = C_DATA;
			}
			if (c->state != C_DATA)
				continue;
			f = -1;
			if ((evs[i].events & EPOLLOUT) && c->sent < size) {
				want = size - c->sent;
				if (want > sizeof(out))
					want = sizeof(out);
				for (k = 0; k < want; k++)
					out[k] = pattern(c->id, c->sent + k);
				r = write(c->fd, out, want);
				if (r > 0)
					c->sent += (size_t)r;
				else if (r < 0 && errno != EAGAIN)
					f = F_RESET;
				if (c->sent == size && f == -1) {
					memset(&ev, 0, sizeof(ev));
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd,
					    &ev);
				}
			}
			if (f == -1 && (evs[i].events &
			    (EPOLLIN | EPOLLERR | EPOLLHUP))) {
				r = read(c->fd, iobuf, IOBUF);
				if (r == 0)
					f = F_EOF;
				else if (r < 0 && errno != EAGAIN)
					f = F_RESET;
				else if (r > 0) {
					if (c->recvd + (size_t)r > size)
						f = F_MISMATCH;
					for (j = 0; f == -1 && j < r; j++)
						if (iobuf[j] != pattern(c->id,
						    c->recvd + (size_t)j))
							f = F_MISMATCH;
					c->recvd += (size_t)r;
				}
			}
			if (f != -1) {
				FAIL(c, f);
				continue;
			}
			if (c->recvd == size && c->sent == size) {
				c->state = C_HELD;
				epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
				active--;
				held++;
			}
		}
	}
	t_done = now() - t0;
	for (i = 0; i < count; i++) {
		c = &cs[i];
		if (c->state == C_CONNECTING || c->state == C_DATA) {
			FAIL(c, F_TIMEOUT);
		} else if (c->state == C_NEW) {
			fails[F_TIMEOUT]++;
			failed++;
		}
	}
	printf("hold ok=%d fail=%d secs=%.3f\n", held, failed, t_done);
	fflush(stdout);

	/* Hold: every checked connection stays open until told. */
	pfd.fd = 0;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, (int)(hold * 1000)) > 0)
		(void)!read(0, line, sizeof(line));

	/* Were the held ones still open at the end of the hold? */
	for (i = 0; i < count; i++) {
		c = &cs[i];
		if (c->state != C_HELD)
			continue;
		r = recv(c->fd, iobuf, 1, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN)) {
			fails[r == 0 ? F_EOF : F_RESET]++;
			failed++;
			held--;
		}
		fd = c->fd;
		close(fd);
	}
	printf("{\"n\":%d,\"ok\":%d,\"fail\":%d,\"secs\":%.3f", count, held,
	    failed, t_done);
	for (i = 0; i < F_NFAIL; i++)
		printf(",\"%s\":%d", fail_names[i], fails[i]);
	printf("}\n");
	free(cs);
	return (0);
#undef FAIL
}

/* ------------------------------------------------------------------ */
/* delay: a WAN between a client and a server, in user space */

/* A chunk read from one side, held until due, then written to the other. */
struct chunk {
	struct chunk	*next;
	double		 due;		/* monotonic: may be written */
	size_t		 len, off;
	int		 eof;		/* carries the EOF, no bytes */
	unsigned char	 data[];
};

/* One direction of a relayed connection. */
struct ddir {
	int		 src, dst;
	struct chunk	*head, *tail;
	size_t		 queued;	/* bytes held */
	double		 wire;		/* when the last chunk left the wire */
	int		 eof_read, eof_sent, blocked;
};

/* One relayed connection: 0 the accepted client, 1 the onward socket. */
struct dconn {
	struct dconn	*next;
	int		 fd[2];
	uint32_t	 mask[2];	/* epoll events armed per fd */
	struct ddir	 d[2];		/* d[i] reads fd[i], writes fd[1 - i] */
	int		 dead;
};

static double	 dl_delay;	/* seconds each way */
static double	 dl_rate;	/* bytes per second, 0: unpaced */
static size_t	 dl_qmax;	/* bytes held per direction */

/* Read what the queue has room for; 0, or -1 when the connection failed. */
static int
ddir_read(struct ddir *d)
{
	struct chunk	*ch;
	ssize_t		 n;
	size_t		 want;
	double		 t, start;

	while (!d->eof_read && d->queued < dl_qmax) {
		want = dl_qmax - d->queued;
		if (want > 65536)
			want = 65536;
		n = read(d->src, iobuf, want);
		if (n < 0)
			return (errno == EAGAIN || errno == EINTR ? 0 : -1);
		if ((ch = malloc(sizeof(*ch) + (size_t)n)) == NULL)
			die("malloc");
		memset(ch, 0, sizeof(*ch));
		memcpy(ch->data, iobuf, (size_t)n);
		ch->len = (size_t)n;
		ch->eof = n == 0;
		t = now();
		start = d->wire > t ? d->wire : t;
		if (dl_rate > 0)
			d->wire = start + (double)n / dl_rate;
		else
			d->wire = start;
		ch->due = d->wire + dl_delay;
		if (d->tail != NULL)
			d->tail->next = ch;
		else
			d->head = ch;
		d->tail = ch;
		d->queued += (size_t)n;
		if (n == 0)
			d->eof_read = 1;
	}
	return (0);
}

/* Write the chunks that are due; 0, or -1 when the connection failed. */
static int
ddir_write(struct ddir *d, double t)
{
	struct chunk	*ch;
	ssize_t		 w;

	d->blocked = 0;
	while ((ch = d->head) != NULL && ch->due <= t) {
		if (ch->eof) {
			shutdown(d->dst, SHUT_WR);
			d->eof_sent = 1;
		} else {
			w = send(d->dst, ch->data + ch->off, ch->len - ch->off,
			    MSG_NOSIGNAL);
			if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
				d->blocked = 1;
				return (0);
			}
			if (w < 0)
				return (-1);
			ch->off += (size_t)w;
			if (ch->off < ch->len)
				continue;
		}
		d->head = ch->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->queued -= ch->len;
		free(ch);
	}
	return (0);
}

/* Arm each socket for what its two directions wait for. */
static void
dconn_arm(struct dconn *dc)
{
	struct epoll_event	ev;
	uint32_t		m;
	int			i;

	for (i = 0; i < 2; i++) {
		m = 0;
		if (!dc->d[i].eof_read && dc->d[i].queued < dl_qmax)
			m |= EPOLLIN;
		if (dc->d[1 - i].blocked)
			m |= EPOLLOUT;
		if (m == dc->mask[i])
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.events = m;
		ev.data.ptr = dc;
		if (epoll_ctl(epfd, EPOLL_CTL_MOD, dc->fd[i], &ev) == -1)
			die("epoll_ctl");
		dc->mask[i] = m;
	}
}

static void
dconn_free(struct dconn *dc)
{
	struct chunk	*ch;
	int		 i;

	for (i = 0; i < 2; i++) {
		close(dc->fd[i]);
		while ((ch = dc->d[i].head) != NULL) {
			dc->d[i].head = ch->next;
			free(ch);
		}
	}
	free(dc);
}

/* A client arrived: connect onward (in the namespace we started in). */
static struct dconn *
delay_accept(int lfd, int to)
{
	struct sockaddr_in	 sin = loopback(to);
	struct epoll_event	 ev;
	struct dconn		*dc;
	int			 fd, up, i;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) == -1)
		return (NULL);
	if ((up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1)
		die("socket");
	set_nodelay(fd);
	set_nodelay(up);
	if (connect(up, (struct sockaddr *)&sin, sizeof(sin)) == -1 &&
	    errno != EINPROGRESS) {
		close(fd);
		close(up);
		return (NULL);
	}
	if ((dc = calloc(1, sizeof(*dc))) == NULL)
		die("calloc");
	dc->fd[0] = fd;
	dc->fd[1] = up;
	for (i = 0; i < 2; i++) {
		dc->d[i].src = dc->fd[i];
		dc->d[i].dst = dc->fd[1 - i];
		memset(&ev, 0, sizeof(ev));
		ev.events = dc->mask[i] = EPOLLIN | EPOLLOUT;
		ev.data.ptr = dc;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, dc->fd[i], &ev) == -1)
			die("epoll_ctl");
	}
	return (dc);
}

static int
cmd_delay(const char *addr, int port, int to, const char *netns,
    double max_time)
{
	struct epoll_event	 evs[MAXEV];
	struct sockaddr_in	 sin = loopback(port);
	socklen_t		 slen = sizeof(sin);
	struct timespec		 ts;
	struct dconn		*conns = NULL, *dc, **pp;
	double			 end = now() + max_time, t, next;
	int			 lfd, home = -1, nsfd, one = 1, i, n;

	if (addr != NULL && inet_pton(AF_INET, addr, &sin.sin_addr) != 1)
		usage();
	if (netns != NULL) {
		if ((home = open("/proc/self/ns/net", O_RDONLY)) == -1 ||
		    (nsfd = open(netns, O_RDONLY)) == -1)
			die(netns);
		if (setns(nsfd, CLONE_NEWNET) == -1)
			die("setns");
		close(nsfd);
	}
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1)
		die("socket");
	(void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		die("bind");
	if (listen(lfd, 4096) == -1)
		die("listen");
	if (getsockname(lfd, (struct sockaddr *)&sin, &slen) == -1)
		die("getsockname");
	if (home != -1) {
		if (setns(home, CLONE_NEWNET) == -1)
			die("setns back");
		close(home);
	}
	if ((epfd = epoll_create1(0)) == -1)
		die("epoll_create1");
	memset(&evs[0], 0, sizeof(evs[0]));
	evs[0].events = EPOLLIN;
	evs[0].data.ptr = NULL;		/* the listener */
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &evs[0]) == -1)
		die("epoll_ctl");
	printf("port %d\n", ntohs(sin.sin_port));
	fflush(stdout);

	while (!stop_flag && (t = now()) < end) {
		/* Sleep until the first held chunk is due. */
		next = t + 0.5;
		for (dc = conns; dc != NULL; dc = dc->next)
			for (i = 0; i < 2; i++)
				if (dc->d[i].head != NULL && !dc->d[i].blocked &&
				    dc->d[i].head->due < next)
					next = dc->d[i].head->due;
		next = next > t ? next - t : 0;
		ts.tv_sec = (time_t)next;
		ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
		n = epoll_pwait2(epfd, evs, MAXEV, &ts, NULL);
		if (n == -1 && errno != EINTR)
			die("epoll_pwait2");
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr != NULL)
				continue;
			while ((dc = delay_accept(lfd, to)) != NULL) {
				dc->next = conns;
				conns = dc;
			}
		}
		t = now();
		for (dc = conns; dc != NULL; dc = dc->next) {
			for (i = 0; i < 2 && !dc->dead; i++)
				if (ddir_read(&dc->d[i]) == -1 ||
				    ddir_write(&dc->d[i], t) == -1)
					dc->dead = 1;
			if (dc->d[0].eof_sent && dc->d[1].eof_sent)
				dc->dead = 1;
			if (!dc->dead)
				dconn_arm(dc);
		}
		for (pp = &conns; (dc = *pp) != NULL; ) {
			if (dc->dead) {
				*pp = dc->next;
				dconn_free(dc);
			} else
				pp = &dc->next;
		}
	}
	while ((dc = conns) != NULL) {
		conns = dc->next;
		dconn_free(dc);
	}
	close(lfd);
	return (0);
}

/* ------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
	const char	*mode;
	uint64_t	 bytes = 0;
	double		 timeout = 60, hold = 30, max_time = 3600;
	int		 port = 0, count = 0, window = 256, to = 0, i;
	int		 ports[MAXPORTS], nports = 0, echos = 0, sources = 0;
	char		*list, *tok;
	size_t		 size = 16384, queue = 0;
	double		 delay_ms = -1, rate_mbit = 0;
	const char	*laddr = NULL, *netns = NULL;
	struct sigaction sa;

	if (argc < 2)
		usage();
	mode = argv[1];
	for (i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--port") == 0)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--bytes") == 0)
			bytes = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--n") == 0)
			count = atoi(argv[++i]);
		else if (strcmp(argv[i], "--size") == 0)
			size = (size_t)strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--window") == 0)
			window = atoi(argv[++i]);
		else if (strcmp(argv[i], "--timeout") == 0)
			timeout = atof(argv[++i]);
		else if (strcmp(argv[i], "--hold") == 0)
			hold = atof(argv[++i]);
		else if (strcmp(argv[i], "--max-time") == 0)
			max_time = atof(argv[++i]);
		else if (strcmp(argv[i], "--to") == 0)
			to = atoi(argv[++i]);
		else if (strcmp(argv[i], "--delay") == 0)
			delay_ms = atof(argv[++i]);
		else if (strcmp(argv[i], "--rate") == 0)
			rate_mbit = atof(argv[++i]);
		else if (strcmp(argv[i], "--queue") == 0)
			queue = (size_t)strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--listen") == 0)
			laddr = argv[++i];
		else if (strcmp(argv[i], "--netns") == 0)
			netns = argv[++i];
		else if (strcmp(argv[i], "--echos") == 0)
			echos = atoi(argv[++i]);
		else if (strcmp(argv[i], "--sources") == 0)
			sources = atoi(argv[++i]);
		else if (strcmp(argv[i], "--ports") == 0) {
			list = argv[++i];
			while ((tok = strsep(&list, ",")) != NULL &&
			    nports < MAXPORTS)
				if ((ports[nports] = atoi(tok)) > 0 &&
				    ports[nports] <= 65535)
					nports++;
		}
		else
			usage();
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if (strcmp(mode, "serve") == 0)
		return (echos >= 0 && echos <= MAXPORTS ?
		    cmd_serve(max_time, echos) : 2);
	if (strcmp(mode, "delay") == 0) {
		if (to <= 0 || to > 65535 || port < 0 || port > 65535 ||
		    delay_ms < 0 || rate_mbit < 0)
			usage();
		dl_delay = delay_ms / 1e3;
		dl_rate = rate_mbit * 1e6 / 8;
		dl_qmax = queue;
		if (dl_qmax == 0 && dl_rate > 0) {
			dl_qmax = (size_t)(3 * dl_rate * dl_delay);
			if (dl_qmax < 4 << 20)
				dl_qmax = 4 << 20;
		} else if (dl_qmax == 0)
			dl_qmax = 64 << 20;
		return (cmd_delay(laddr, port, to, netns, max_time));
	}
	if (nports == 0 && port > 0)
		ports[nports++] = port;
	if (nports > 0)
		port = ports[0];
	if (port <= 0 || port > 65535)
		usage();
	/* The one-stream and latency modes end by themselves. */
	if (strcmp(mode, "up") == 0 || strcmp(mode, "down") == 0 ||
	    strcmp(mode, "lat") == 0)
		alarm((unsigned)timeout + 1);
	if (strcmp(mode, "up") == 0)
		return (cmd_up(port, bytes, timeout));
	if (strcmp(mode, "down") == 0)
		return (cmd_down(port, bytes, timeout));
	if (strcmp(mode, "lat") == 0)
		return (count > 0 ? cmd_lat(port, count, timeout) : 2);
	if (strcmp(mode, "conc") == 0) {
		if (count <= 0 || size == 0 || window <= 0)
			usage();
		alarm((unsigned)(timeout + hold) + 10);
		if (sources < 0 || sources > 250)
			usage();
		return (cmd_conc(ports, nports, count, size, window, timeout,
		    hold, sources));
	}
	usage();
}
