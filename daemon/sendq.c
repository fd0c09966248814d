/*
 * sendq.c: session sockets that never block the loop.
 *
 * libssh 0.10 puts a session's socket into blocking mode once it is
 * connected (socket.c, on the first POLLOUT) and then send()s its whole
 * output buffer in one call whenever poll said the socket was writable:
 * with more output than the kernel has room for, that send() blocks the
 * one thread everything runs in. A blocked loop stops every link, and a
 * link carried through another (jump.c) deadlocks outright: the bytes that
 * would unblock the write have to pass through this very process.
 * A non-blocking socket is no way out: libssh takes EAGAIN for a fatal
 * error and closes the session.
 *
 * So the daemon defines send() itself. The dynamic linker resolves
 * libssh's calls to it (an executable's symbols come first), and for a
 * socket registered here it sends what the kernel takes without waiting
 * and keeps the rest in a queue of ours, reporting everything sent, as a
 * blocking send() would have. The pump flushes the queue when the socket
 * is writable and, while anything is queued, stops chans from handing
 * libssh more (l->out_blocked), so the queue stays bounded by one turn's
 * budget plus what libssh had buffered. Every other socket, and every
 * send() of our own, goes straight to the kernel.
 *
 * libssh sends every packet the moment it is made: a pump turn that opens
 * a channel, grants a window and writes a client's first bytes made three
 * send()s, three TCP segments and three wake-ups of sshd. OpenSSH writes
 * once per loop turn. So the pump corks the socket for its turn: small
 * packets are queued and leave together when it uncorks; past SENDQ_CORK
 * bytes (bulk data) they go at once, so the cork never copies much.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "tunneld.h"

/* The queue of one registered socket. */
struct sendq {
	struct evbuffer	*buf;
	int		 error;		/* errno of a failed flush, 0 */
	int		 corked;	/* in a pump turn: hold small packets */
};

#define SENDQ_CORK	(16 * 1024)	/* the most a cork holds back */

static struct sendq	**sendq_fds;	/* indexed by fd */
static int		  sendq_nfds;

static struct sendq	*sendq_get(int);
static ssize_t		 sendq_kernel(int, const void *, size_t, int);

/* The queue of fd, or NULL when it is not a registered socket. */
static struct sendq *
sendq_get(int fd)
{
	if (fd < 0 || fd >= sendq_nfds)
		return (NULL);
	return (sendq_fds[fd]);
}

/* send(2) itself, without waiting. */
static ssize_t
sendq_kernel(int fd, const void *buf, size_t len, int flags)
{
	return (sendto(fd, buf, len, flags | MSG_DONTWAIT, NULL, 0));
}

/* libssh will send on fd from now on: queue what the kernel cannot take. */
void
sendq_attach(int fd)
{
	struct sendq	**grown;
	int		  n;

	if (fd < 0)
		return;
	if (fd >= sendq_nfds) {
		n = fd + 64;
		grown = reallocarray(sendq_fds, (size_t)n, sizeof(*grown));
		if (grown == NULL)
			fatalx("sendq_attach: out of memory");
		memset(grown + sendq_nfds, 0,
		    (size_t)(n - sendq_nfds) * sizeof(*grown));
		sendq_fds = grown;
		sendq_nfds = n;
	}
	sendq_detach(fd);
	sendq_fds[fd] = xcalloc(1, sizeof(**sendq_fds));
	if ((sendq_fds[fd]->buf = evbuffer_new()) == NULL)
		fatalx("sendq_attach: out of memory");
	membudget_track(sendq_fds[fd]->buf, 0);
}

/* The socket is closing (or closed by libssh): drop what is queued. */
void
sendq_detach(int fd)
{
	struct sendq *q;

	if ((q = sendq_get(fd)) == NULL)
		return;
	membudget_untrack(q->buf, 0);
	evbuffer_free(q->buf);
	free(q);
	sendq_fds[fd] = NULL;
}

/* Bytes queued for fd. */
size_t
sendq_pending(int fd)
{
	struct sendq *q;

	if ((q = sendq_get(fd)) == NULL)
		return (0);
	return (evbuffer_get_length(q->buf));
}

/* A pump turn starts: hold small packets until sendq_uncork(). */
void
sendq_cork(int fd)
{
	struct sendq *q;

	if ((q = sendq_get(fd)) != NULL)
		q->corked = 1;
}

/* The pump turn ends: what the cork held goes at the next flush. */
void
sendq_uncork(int fd)
{
	struct sendq *q;

	if ((q = sendq_get(fd)) != NULL)
		q->corked = 0;
}

/*
 * Send what is queued, as far as the kernel takes it. Returns 0, or -1
 * with errno when the socket failed (the link is then lost).
 */
int
sendq_flush(int fd)
{
	struct sendq	*q;
	ssize_t		 n;
	size_t		 len;

	if ((q = sendq_get(fd)) == NULL)
		return (0);
	if (q->error != 0) {
		errno = q->error;
		return (-1);
	}
	while ((len = evbuffer_get_length(q->buf)) > 0) {
		n = sendq_kernel(fd, evbuffer_pullup(q->buf, (ssize_t)(len >
		    65536 ? 65536 : len)), len > 65536 ? 65536 : len,
		    MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return (0);
			q->error = errno;
			return (-1);
		}
		evbuffer_drain(q->buf, (size_t)n);
	}
	return (0);
}

/*
 * send(2) for the whole process. A registered socket: what the kernel
 * takes now goes, the rest is queued behind what already waits, and all of
 * len is reported sent. An error the socket had is reported once more, as
 * libssh expects of a failed send. Anything else is passed on unchanged.
 */
ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
	struct sendq	*q;
	ssize_t		 n = 0;

	if ((q = sendq_get(fd)) == NULL)
		return (sendto(fd, buf, len, flags, NULL, 0));
	if (q->corked && evbuffer_get_length(q->buf) + len <= SENDQ_CORK) {
		if (evbuffer_add(q->buf, buf, len) == -1)
			fatalx("send: out of memory");
		return ((ssize_t)len);
	}
	if (q->error != 0 || sendq_flush(fd) == -1) {
		errno = q->error;
		return (-1);
	}
	if (evbuffer_get_length(q->buf) == 0) {
		do
			n = sendq_kernel(fd, buf, len, flags);
		while (n == -1 && errno == EINTR);
		if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
			q->error = errno;
			return (-1);
		}
		if (n == -1)
			n = 0;
	}
	if ((size_t)n < len &&
	    evbuffer_add(q->buf, (const char *)buf + n, len - (size_t)n) == -1)
		fatalx("send: out of memory");
	return ((ssize_t)len);
}
