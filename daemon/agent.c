/*
 * agent.c: our own ssh-agent client, so that authentication with the
 * agent's keys never blocks the loop.
 *
 * libssh 0.10's agent client (agent.c: agent_talk, atomicio) writes a
 * request to the agent's socket and waits for the answer with poll(-1).
 * A key added with ssh-add -c waits there for a person to confirm it, a
 * stopped agent forever, and the whole daemon with it: every link, the
 * control socket, the watchdog. So libssh never talks to the agent. Its
 * agent socket (ssh_set_agent_socket) is one end of a socketpair of ours,
 * and every answer libssh will read is written into it before libssh
 * asks, then our end is shut for writing: a read past what we wrote sees
 * end-of-file, so libssh can never find that socket empty and wait.
 *
 * We speak the agent protocol with the real agent at SSH_AUTH_SOCK on the
 * loop, non-blocking:
 *
 * 1. REQUEST_IDENTITIES; the answer must come within a short deadline
 *    (else the link goes on with its identity files).
 * 2. A pass (handshake.c calls ssh_userauth_agent until it is done) with
 *    [the keys left, FAILURE] in the socketpair. libssh reads the list and
 *    offers the keys; when the server accepts one, libssh asks to sign,
 *    reads FAILURE and gives up with SSH_AUTH_ERROR. The session is
 *    unharmed: nothing was sent, the error is only noted.
 * 3. The sign request libssh wrote is sent to the real agent as it is.
 *    Its answer may take as long as a person needs to confirm; the link's
 *    connect_timeout bounds the wait, and the loop runs meanwhile.
 * 4. A pass with [that key alone, the agent's SIGN_RESPONSE, FAILURE]:
 *    libssh offers the key again, asks to sign the same bytes (session id,
 *    user, service, "publickey", algorithm, key: nothing changed), reads
 *    our answer and sends it: the server lets us in.
 *
 * A key the agent will not sign with, or whose signature the server
 * rejects, is skipped and the next pass offers the keys after it. libssh
 * reads at most two answers per pass (the list, one signature): the
 * FAILURE after them, and end-of-file after that, are guards.
 *
 * libssh owns the fd we hand it (ssh_free closes it) and never closes the
 * previous one when given another, so every pass after the first puts its
 * new socketpair end under the same number with dup3().
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tunneld.h"

/* Message numbers of the agent protocol (draft-miller-ssh-agent). */
#define AGENT_FAILURE			5
#define AGENTC_REQUEST_IDENTITIES	11
#define AGENT_IDENTITIES_ANSWER		12
#define AGENTC_SIGN_REQUEST		13
#define AGENT_SIGN_RESPONSE		14
#define AGENT_EXTENSION_FAILURE		28
#define AGENT2_FAILURE			30	/* libssh takes these too */
#define AGENT_COM_FAILURE		102

#define AGENT_MAX_MSG	(256 * 1024)	/* libssh's bound on an answer */
#define AGENT_MAX_KEYS	1024		/* libssh's bound on a key list */
#define AGENT_PRIME_MAX	(64 * 1024)	/* the key list of one pass */

/* One key of the agent's list: offsets into the answer. */
struct agent_key {
	size_t		 blob;
	size_t		 bloblen;
	size_t		 comment;
	size_t		 commentlen;
};

struct agent {
	struct link		*link;		/* back pointer, never owns */
	enum agent_state	 state;
	int			 lost;		/* no more requests: error */
	char			 path[PATH_MAXLEN + 1];
	char			 error[256];
	double			 timeout;	/* for the key list */

	struct bufferevent	*bev;		/* to the real agent */
	struct event		*ev_timer;	/* the key list's deadline */

	unsigned char		*idents;	/* the agent's list, whole */
	struct agent_key	*keys;
	int			 nkeys;
	int			 from;		/* first key of the next pass */

	int			 lib_fd;	/* libssh's end; libssh owns */
	int			 our_fd;	/* our end during a pass, -1 */

	unsigned char		*sigreq;	/* what libssh asked to sign */
	size_t			 sigreqlen;
	int			 signing;	/* its key, -1 */
	unsigned char		*sigresp;	/* the agent's signature */
	size_t			 sigresplen;
};

static void	agent_fail(struct agent *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	agent_read_cb(struct bufferevent *, void *);
static void	agent_event_cb(struct bufferevent *, short, void *);
static void	agent_timeout_cb(int, short, void *);
static void	agent_listed(struct agent *, unsigned char *, size_t);
static void	agent_sign_answer(struct agent *, unsigned char *, size_t);
static int	agent_string(const unsigned char *, size_t, size_t *,
		    size_t *, size_t *);
static void	agent_put_u32(struct evbuffer *, uint32_t);
static void	agent_put_list(struct agent *, struct evbuffer *);
static uint32_t	agent_get_u32(const unsigned char *);
static int	agent_is_failure(int);

/* A 32-bit big-endian number. */
static uint32_t
agent_get_u32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

static void
agent_put_u32(struct evbuffer *b, uint32_t v)
{
	unsigned char p[4];

	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
	if (evbuffer_add(b, p, sizeof(p)) == -1)
		fatalx("agent: out of memory");
}

/* The answers libssh counts as a refusal. */
static int
agent_is_failure(int type)
{
	return (type == AGENT_FAILURE || type == AGENT_EXTENSION_FAILURE ||
	    type == AGENT2_FAILURE || type == AGENT_COM_FAILURE);
}

/*
 * An SSH string at *off in buf[0..len): its data's offset and length.
 * Advances *off. Returns -1 when it runs past the end.
 */
static int
agent_string(const unsigned char *buf, size_t len, size_t *off,
    size_t *data, size_t *dlen)
{
	uint32_t n;

	if (len - *off < 4)
		return (-1);
	n = agent_get_u32(buf + *off);
	if (n > len - *off - 4)
		return (-1);
	*data = *off + 4;
	*dlen = n;
	*off += 4 + (size_t)n;
	return (0);
}

/*
 * Connect to the agent at path and ask for its keys, answered within
 * timeout seconds. Never calls back: agent_status() says how it went, and
 * the link is kicked when that changes.
 */
struct agent *
agent_new(struct link *l, const char *path, double timeout)
{
	struct agent		*a;
	struct sockaddr_un	 sun;
	struct timeval		 tv;
	unsigned char		 req[5] = { 0, 0, 0, 1,
				    AGENTC_REQUEST_IDENTITIES };
	int			 fd;

	a = xcalloc(1, sizeof(*a));
	a->link = l;
	a->lib_fd = -1;
	a->our_fd = -1;
	a->signing = -1;
	a->timeout = timeout;
	a->state = AGENT_BUSY;
	strlcpy_(a->path, path, sizeof(a->path));
	if ((a->ev_timer = evtimer_new(td->base, agent_timeout_cb, a)) ==
	    NULL)
		fatalx("agent_new: out of memory");

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		agent_fail(a, "SSH_AUTH_SOCK is too long for a socket path");
		return (a);
	}
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		agent_fail(a, "socket: %s", strerror(errno));
		return (a);
	}
	/* A UNIX socket connects at once, or fails (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 &&
	    errno != EINPROGRESS) {
		agent_fail(a, "cannot connect to %s: %s", path,
		    strerror(errno));
		close(fd);
		return (a);
	}
	if ((a->bev = bufferevent_socket_new(td->base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		fatalx("agent_new: out of memory");
	bufferevent_setcb(a->bev, agent_read_cb, NULL, agent_event_cb, a);
	bufferevent_enable(a->bev, EV_READ);
	if (bufferevent_write(a->bev, req, sizeof(req)) == -1)
		fatalx("agent_new: out of memory");
	tv.tv_sec = (time_t)timeout;
	tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
	evtimer_add(a->ev_timer, &tv);
	return (a);
}

/* Close our sockets and forget everything; libssh keeps its fd. */
void
agent_free(struct agent *a)
{
	if (a == NULL)
		return;
	if (a->bev != NULL)
		bufferevent_free(a->bev);
	if (a->ev_timer != NULL)
		event_free(a->ev_timer);
	if (a->our_fd != -1)
		close(a->our_fd);
	free(a->idents);
	free(a->keys);
	free(a->sigreq);
	free(a->sigresp);
	free(a);
}

/* Where the exchange with the agent stands. */
enum agent_state
agent_status(const struct agent *a)
{
	return (a->state);
}

/* Why the agent cannot be used (AGENT_FAILED). */
const char *
agent_error(const struct agent *a)
{
	return (a->error);
}

/* Keys not offered yet. */
int
agent_keys_left(const struct agent *a)
{
	if (a->sigresp != NULL)
		return (1);
	return (a->nkeys - a->from);
}

/* The key the agent was asked to sign with, or -1. */
int
agent_signing(const struct agent *a)
{
	return (a->signing);
}

/* Does the next (or the last) pass carry the agent's signature? */
int
agent_signed(const struct agent *a)
{
	return (a->sigresp != NULL);
}

/* A key's blob, as the agent listed it. */
const unsigned char *
agent_key_blob(const struct agent *a, int k, size_t *len)
{
	if (k < 0 || k >= a->nkeys) {
		*len = 0;
		return (NULL);
	}
	*len = a->keys[k].bloblen;
	return (a->idents + a->keys[k].blob);
}

/*
 * The agent failed us: no more requests. Never frees inside a callback of
 * the bufferevent: agent_free() does, from the handshake. A pass that is
 * running (or may run) on answers we already have is not disturbed: the
 * failure shows when the agent is asked again (agent_sign).
 */
static void
agent_fail(struct agent *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->error, sizeof(a->error), fmt, ap);
	va_end(ap);
	a->lost = 1;
	if (a->bev != NULL)
		bufferevent_disable(a->bev, EV_READ | EV_WRITE);
	evtimer_del(a->ev_timer);
	log_debug("link %s: agent: %s", a->link->hc->name, a->error);
	if (a->state == AGENT_BUSY) {
		a->state = AGENT_FAILED;
		link_kick(a->link);
	}
}

/* The key list's deadline passed. */
static void
agent_timeout_cb(int fd, short what, void *arg)
{
	struct agent *a = arg;

	(void)fd;
	(void)what;
	if (a->state == AGENT_BUSY)
		agent_fail(a, "%s did not answer within %.1f s", a->path,
		    a->timeout);
}

/* The agent hung up, or its socket failed. */
static void
agent_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agent	*a = arg;
	int		 e = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (a->lost)
		return;
	if (what & BEV_EVENT_EOF)
		agent_fail(a, "%s closed the connection", a->path);
	else if (what & BEV_EVENT_ERROR)
		agent_fail(a, "%s: %s", a->path, strerror(e));
}

/* Bytes from the agent: one whole answer to the request out. */
static void
agent_read_cb(struct bufferevent *bev, void *arg)
{
	struct agent	*a = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	unsigned char	 hdr[4], *msg;
	uint32_t	 len;

	if (a->state != AGENT_BUSY) {
		if (!a->lost)
			agent_fail(a, "%s answered what was not asked",
			    a->path);
		return;
	}
	if (evbuffer_get_length(in) < sizeof(hdr))
		return;
	evbuffer_copyout(in, hdr, sizeof(hdr));
	len = agent_get_u32(hdr);
	if (len == 0 || len > AGENT_MAX_MSG) {
		agent_fail(a, "%s sent a bad answer (%u bytes)", a->path, len);
		return;
	}
	if (evbuffer_get_length(in) < sizeof(hdr) + len)
		return;
	evbuffer_drain(in, sizeof(hdr));
	msg = xmalloc(len);
	evbuffer_remove(in, msg, len);
	if (a->signing == -1)
		agent_listed(a, msg, len);
	else
		agent_sign_answer(a, msg, len);
}

/* The answer to REQUEST_IDENTITIES: check and index every key. */
static void
agent_listed(struct agent *a, unsigned char *msg, size_t len)
{
	size_t		off = 5;
	uint32_t	count, i;

	evtimer_del(a->ev_timer);
	if (agent_is_failure(msg[0])) {
		free(msg);
		agent_fail(a, "%s refused to list its keys", a->path);
		return;
	}
	if (msg[0] != AGENT_IDENTITIES_ANSWER || len < 5) {
		agent_fail(a, "%s sent a bad answer (type %u)", a->path,
		    msg[0]);
		free(msg);
		return;
	}
	count = agent_get_u32(msg + 1);
	if (count > AGENT_MAX_KEYS) {
		free(msg);
		agent_fail(a, "%s lists %u keys, more than %d", a->path,
		    count, AGENT_MAX_KEYS);
		return;
	}
	a->keys = xcalloc(count > 0 ? count : 1, sizeof(*a->keys));
	for (i = 0; i < count; i++) {
		if (agent_string(msg, len, &off, &a->keys[i].blob,
		    &a->keys[i].bloblen) == -1 ||
		    agent_string(msg, len, &off, &a->keys[i].comment,
		    &a->keys[i].commentlen) == -1) {
			free(msg);
			agent_fail(a, "%s sent a truncated key list", a->path);
			return;
		}
	}
	a->idents = msg;
	a->nkeys = (int)count;
	a->state = AGENT_IDLE;
	log_debug("link %s: agent: %d keys", a->link->hc->name, a->nkeys);
	link_kick(a->link);
}

/* The answer to our sign request. */
static void
agent_sign_answer(struct agent *a, unsigned char *msg, size_t len)
{
	size_t off = 1, sig, siglen;

	if (agent_is_failure(msg[0])) {
		free(msg);
		a->state = AGENT_REFUSED;
		link_kick(a->link);
		return;
	}
	if (msg[0] != AGENT_SIGN_RESPONSE ||
	    agent_string(msg, len, &off, &sig, &siglen) == -1) {
		agent_fail(a, "%s sent a bad signature (type %u)", a->path,
		    msg[0]);
		free(msg);
		return;
	}
	a->sigresp = msg;
	a->sigresplen = len;
	a->state = AGENT_IDLE;
	link_kick(a->link);
}

/*
 * The key list libssh reads in the next pass: the keys from a->from on
 * (as many as fit AGENT_PRIME_MAX), or only the key signed for.
 */
static void
agent_put_list(struct agent *a, struct evbuffer *out)
{
	struct evbuffer		*body;
	const struct agent_key	*k;
	size_t			 size = 0, need;
	int			 i, first, last, n = 0;

	if (a->sigresp != NULL) {
		first = a->signing;
		last = a->signing + 1;
	} else {
		first = a->from;
		last = a->nkeys;
	}
	if ((body = evbuffer_new()) == NULL)
		fatalx("agent: out of memory");
	for (i = first; i < last; i++) {
		k = &a->keys[i];
		need = 8 + k->bloblen + k->commentlen;
		if (size + need > AGENT_PRIME_MAX) {
			log_info("link %s: agent: %d keys past the first %d "
			    "not offered (their list is over %d bytes)",
			    a->link->hc->name, last - i, n, AGENT_PRIME_MAX);
			break;
		}
		agent_put_u32(body, (uint32_t)k->bloblen);
		evbuffer_add(body, a->idents + k->blob, k->bloblen);
		agent_put_u32(body, (uint32_t)k->commentlen);
		evbuffer_add(body, a->idents + k->comment, k->commentlen);
		size += need;
		n++;
	}
	if (evbuffer_get_length(body) != size)
		fatalx("agent: out of memory");
	agent_put_u32(out, (uint32_t)(1 + 4 + size));
	evbuffer_add(out, (unsigned char[]){ AGENT_IDENTITIES_ANSWER }, 1);
	agent_put_u32(out, (uint32_t)n);
	evbuffer_add_buffer(out, body);
	evbuffer_free(body);
}

/*
 * Before a pass: hand libssh a fresh socketpair end holding every answer
 * it will read (the key list, the signature if we have one, FAILURE),
 * our end shut for writing. Returns -1 with agent_error() set.
 */
int
agent_prime(struct agent *a, ssh_session s)
{
	struct evbuffer	*out;
	int		 p[2], sz = 256 * 1024;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == -1) {
		snprintf(a->error, sizeof(a->error), "socketpair: %s",
		    strerror(errno));
		return (-1);
	}
	/* A number libssh once closed may still be in sendq's table. */
	sendq_detach(p[0]);
	sendq_detach(p[1]);
	if (a->lib_fd == -1) {
		if (ssh_set_agent_socket(s, p[1]) != SSH_OK) {
			snprintf(a->error, sizeof(a->error), "%s",
			    ssh_get_error(s));
			close(p[0]);
			close(p[1]);
			return (-1);
		}
		a->lib_fd = p[1];	/* libssh's now: ssh_free closes it */
	} else {
		if (dup3(p[1], a->lib_fd, O_CLOEXEC) == -1)
			fatal("agent: dup3");
		close(p[1]);
	}
	a->our_fd = p[0];
	setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (fcntl(p[0], F_SETFL, O_NONBLOCK) == -1)
		fatal("agent: fcntl");

	if ((out = evbuffer_new()) == NULL)
		fatalx("agent: out of memory");
	agent_put_list(a, out);
	if (a->sigresp != NULL) {
		agent_put_u32(out, (uint32_t)a->sigresplen);
		evbuffer_add(out, a->sigresp, a->sigresplen);
	}
	agent_put_u32(out, 1);
	evbuffer_add(out, (unsigned char[]){ AGENT_FAILURE }, 1);
	while (evbuffer_get_length(out) > 0 && evbuffer_write(out, p[0]) > 0)
		;
	if (evbuffer_get_length(out) > 0) {
		snprintf(a->error, sizeof(a->error), "cannot hand libssh the "
		    "agent's answers: %s", strerror(errno));
		evbuffer_free(out);
		close(a->our_fd);
		a->our_fd = -1;
		return (-1);
	}
	evbuffer_free(out);
	/* libssh reading past our answers sees end-of-file: it cannot wait. */
	shutdown(p[0], SHUT_WR);
	a->state = AGENT_PASS;
	return (0);
}

/*
 * After a pass: read what libssh asked and close our end. Returns the key
 * libssh asked the agent to sign with (its sign request is kept), or -1.
 */
int
agent_collect(struct agent *a)
{
	struct evbuffer	*in;
	unsigned char	*buf;
	size_t		 len, off = 0, end, blob, bloblen;
	uint32_t	 n;
	int		 k = -1, i;
	ssize_t		 r;

	if ((in = evbuffer_new()) == NULL)
		fatalx("agent: out of memory");
	while (evbuffer_get_length(in) < 2 * AGENT_MAX_MSG) {
		r = evbuffer_read(in, a->our_fd, 65536);
		if (r <= 0)
			break;
	}
	close(a->our_fd);
	a->our_fd = -1;
	a->state = AGENT_IDLE;

	len = evbuffer_get_length(in);
	buf = evbuffer_pullup(in, -1);
	while (len - off >= 5) {
		n = agent_get_u32(buf + off);
		if (n == 0 || n > len - off - 4)
			break;
		end = off + 4 + n;
		if (buf[off + 4] == AGENTC_SIGN_REQUEST) {
			free(a->sigreq);
			a->sigreqlen = n;
			a->sigreq = xmalloc(n);
			memcpy(a->sigreq, buf + off + 4, n);
			off += 5;
			if (agent_string(buf, end, &off, &blob, &bloblen) == -1)
				break;
			for (i = 0; i < a->nkeys; i++) {
				if (a->keys[i].bloblen == bloblen &&
				    memcmp(a->idents + a->keys[i].blob,
				    buf + blob, bloblen) == 0) {
					k = i;
					break;
				}
			}
		}
		off = end;
	}
	evbuffer_free(in);
	return (k);
}

/*
 * Send the sign request libssh made in the last pass (for key k) to the
 * real agent. Its answer (AGENT_IDLE with a signature, or AGENT_REFUSED)
 * comes when it comes: the link's connect_timeout bounds the wait. An
 * agent that already hung up makes it AGENT_FAILED at once.
 */
void
agent_sign(struct agent *a, int k)
{
	unsigned char hdr[4];

	hdr[0] = (unsigned char)(a->sigreqlen >> 24);
	hdr[1] = (unsigned char)(a->sigreqlen >> 16);
	hdr[2] = (unsigned char)(a->sigreqlen >> 8);
	hdr[3] = (unsigned char)a->sigreqlen;
	a->signing = k;
	if (a->lost) {
		a->state = AGENT_FAILED;	/* agent_error() says why */
		return;
	}
	a->state = AGENT_BUSY;
	if (bufferevent_write(a->bev, hdr, sizeof(hdr)) == -1 ||
	    bufferevent_write(a->bev, a->sigreq, a->sigreqlen) == -1)
		fatalx("agent_sign: out of memory");
}

/* The key being signed for got us nowhere: the next pass starts after it. */
void
agent_skip(struct agent *a)
{
	if (a->signing != -1)
		a->from = a->signing + 1;
	a->signing = -1;
	free(a->sigresp);
	a->sigresp = NULL;
	a->sigresplen = 0;
	free(a->sigreq);
	a->sigreq = NULL;
	a->sigreqlen = 0;
	if (a->state == AGENT_REFUSED)
		a->state = AGENT_IDLE;
}

/*
 * libssh 0.10 loses the previous key list each time ssh_userauth_agent()
 * lists the agent's keys again in one session (agent.c,
 * ssh_agent_get_ident_count() overwrites session->agent->ident; fixed in
 * 0.11 by "agent: Avoid memory leaks"). Our second pass for a signature
 * does that: one list (about 150 bytes for one key) per login with the
 * agent. Tell LeakSanitizer about this one known leak of libssh's: only
 * what is allocated inside ssh_userauth_agent(), which allocates nothing
 * that outlives it otherwise (its state is freed when it returns). The
 * frame is seen with full allocation stacks (fast_unwind_on_malloc=0, as
 * tests/e2e/test_agent.py runs the daemon): the fast unwinder stops at
 * libssh's first frame.
 */
#if defined(__SANITIZE_ADDRESS__)
#define AGENT_LSAN	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AGENT_LSAN	1
#endif
#endif
#ifdef AGENT_LSAN
const char	*__lsan_default_suppressions(void);
const char	*__lsan_default_options(void);

const char *
__lsan_default_suppressions(void)
{
	return ("leak:ssh_userauth_agent\n");
}

/* A run with nothing else to report writes no report. */
const char *
__lsan_default_options(void)
{
	return ("print_suppressions=0");
}
#endif
