/*
 * netwatch.c: the daemon notices when the network changes, instead of
 * waiting out keepalives and backoffs.
 *
 * What counts as a change: an address or a route added or removed (an
 * rtnetlink socket subscribed to RTMGRP_IPV4_IFADDR, _IPV6_IFADDR,
 * _IPV4_ROUTE and _IPV6_ROUTE, read without blocking in the loop), lost
 * netlink messages (ENOBUFS: the kernel's queue overran, so something
 * changed), a new resolv.conf or hosts file (resolvwatch.c), and a resume
 * from suspend (resume.c, sampled every NETWATCH_CLOCK_EVERY seconds).
 *
 * What a change of the network does, in one round over the links:
 *   up       probed, when reached directly: a keepalive that must be
 *            answered within min(NETWATCH_PROBE, keepalive_interval)
 *            seconds, else the link fails as on lost keepalives ("no
 *            answer to a probe ..."). A link behind a jump host is not:
 *            its path out of here is its jump host's link, which is; if
 *            that one dies, the links behind it go waiting at once, in
 *            order (probing them too would fail them first, out of order,
 *            when the jump host is what broke).
 *   backoff  retried now, its backoff started over (link_retry_now()).
 *   failed   left alone: the server refused the host key or the login, which
 *            no change here mends; it is retried at backoff_max as always.
 *   waiting  left alone: its jump host's link is retried or probed in the
 *            same round, and its coming up connects this one.
 *   connecting, idle  left alone.
 * A change of the resolver's files (resolvwatch.c) has its own rounds:
 * links in backoff retry now, and a link whose name lookup is under way
 * starts it again (its answer may come from the old hosts file or wait
 * on a dead nameserver); an up link needs no probe for it.
 * An address counts as a change only when it is new or gone: the kernel
 * announces an address again when its flags change (an IPv6 address that
 * passes duplicate address detection a second or two after it was added,
 * a router advertisement or DHCP renewing a lifetime), and probing every
 * link for those would fail a link that merely stalls for a moment. So
 * netwatch keeps the set of addresses (a dump at start, then every
 * announcement: struct netwatch_addr, at most NETWATCH_ADDRS); one it
 * cannot hold counts as a change.
 * Rounds of each kind are at least NETWATCH_GAP apart: the first change
 * after a quiet second runs one at once (on the next loop turn); changes
 * within the second after it are gathered into one more round at its end.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/tcp.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tunneld.h"

#define NETWATCH_GAP		1.0	/* seconds between rounds, at least */
#define NETWATCH_PROBE		2.0	/* a probe's deadline, at most */
#define NETWATCH_CLOCK_EVERY	2	/* seconds between suspend checks */
#define NETWATCH_BUFSIZE	16384	/* one datagram; longer ones: overrun */
#define NETWATCH_READS		64	/* datagrams read per turn */
#define NETWATCH_RCVBUF		(256 * 1024)
#define NETWATCH_ADDRS		512	/* addresses remembered */
#define NETWATCH_DUMP_SEQ	0x7d0001	/* our RTM_GETADDR dump */

/* One address of this host, as rtnetlink names it. */
struct netwatch_addr {
	int			 ifindex;
	int			 family;
	unsigned char		 addr[16];
};

/* Rounds of one kind: the network's, or the resolver's. */
struct netwatch_rounds {
	struct event		*ev;		/* the next round */
	double			 last;		/* monotonic; 0: none yet */
	int			 pending;	/* ev armed or active */
	unsigned int		 why;		/* NETWATCH_* since the last */
	unsigned long		 count;
};

static struct {
	int			 fd;		/* rtnetlink; -1 when none */
	struct event		*ev_nl;
	struct event		*ev_clock;	/* suspend check */
	struct resume_clock	 clock;
	struct netwatch_rounds	 net;
	struct netwatch_rounds	 resolver;
	uint32_t		 portid;	/* our socket's netlink port */
	struct netwatch_addr	 addrs[NETWATCH_ADDRS];
	int			 naddrs;
} nw = { .fd = -1 };

static void	netwatch_nl_cb(int, short, void *);
static unsigned int netwatch_parse(const void *, size_t);
static unsigned int netwatch_addr(const struct nlmsghdr *);
static void	netwatch_dump(void);
static int	netwatch_linklocal(int, const unsigned char *);
static int	netwatch_route_linklocal(const struct nlmsghdr *);
static void	netwatch_round_cb(int, short, void *);
static void	netwatch_clock_cb(int, short, void *);
static void	netwatch_why(unsigned int, char *, size_t);

/* Open the rtnetlink socket and start the suspend check. */
void
netwatch_init(void)
{
	struct sockaddr_nl	sa;
	struct timeval		tv;
	double			b, m;
	int			size = NETWATCH_RCVBUF;

	if ((nw.net.ev = evtimer_new(td->base, netwatch_round_cb,
	    &nw.net)) == NULL ||
	    (nw.resolver.ev = evtimer_new(td->base, netwatch_round_cb,
	    &nw.resolver)) == NULL ||
	    (nw.ev_clock = event_new(td->base, -1, EV_PERSIST,
	    netwatch_clock_cb, NULL)) == NULL)
		fatalx("netwatch_init: out of memory");
	if (resume_clocks(&b, &m) == 0)
		resume_check(&nw.clock, b, m);
	tv.tv_sec = NETWATCH_CLOCK_EVERY;
	tv.tv_usec = 0;
	evtimer_add(nw.ev_clock, &tv);

	nw.fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    NETLINK_ROUTE);
	if (nw.fd == -1) {
		log_warn("netwatch: rtnetlink socket; network changes will "
		    "be noticed only by keepalives");
		return;
	}
	setsockopt(nw.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	memset(&sa, 0, sizeof(sa));
	sa.nl_family = AF_NETLINK;
	sa.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR |
	    RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
	if (bind(nw.fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		log_warn("netwatch: rtnetlink bind; network changes will be "
		    "noticed only by keepalives");
		close(nw.fd);
		nw.fd = -1;
		return;
	}
	if ((nw.ev_nl = event_new(td->base, nw.fd, EV_READ | EV_PERSIST,
	    netwatch_nl_cb, NULL)) == NULL)
		fatalx("netwatch_init: out of memory");
	event_add(nw.ev_nl, NULL);
	netwatch_dump();
	log_debug("netwatch: watching addresses and routes");
}

/* Close it all (at the stop). */
void
netwatch_free(void)
{
	if (nw.ev_nl != NULL)
		event_free(nw.ev_nl);
	if (nw.net.ev != NULL)
		event_free(nw.net.ev);
	if (nw.resolver.ev != NULL)
		event_free(nw.resolver.ev);
	if (nw.ev_clock != NULL)
		event_free(nw.ev_clock);
	nw.ev_nl = nw.net.ev = nw.resolver.ev = nw.ev_clock = NULL;
	if (nw.fd != -1)
		close(nw.fd);
	nw.fd = -1;
}

/*
 * Something changed (NETWATCH_* bits): a round now, or at the end of the
 * NETWATCH_GAP after the last one. Never runs the round itself: callers
 * may be inside their own callbacks.
 */
void
netwatch_changed(unsigned int why)
{
	struct netwatch_rounds	*r;
	struct timeval		 tv;
	double			 wait;

	r = why == NETWATCH_RESOLVER ? &nw.resolver : &nw.net;
	r->why |= why;
	if (r->pending || r->ev == NULL)
		return;
	r->pending = 1;
	wait = r->last + NETWATCH_GAP - monotime();
	if (r->last == 0 || wait <= 0) {
		event_active(r->ev, EV_TIMEOUT, 0);
		return;
	}
	tv.tv_sec = (time_t)wait;
	tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
	evtimer_add(r->ev, &tv);
}

/* The rtnetlink socket is readable: read a bounded number of datagrams. */
static void
netwatch_nl_cb(int fd, short what, void *arg)
{
	static union {
		struct nlmsghdr	 h;
		char		 buf[NETWATCH_BUFSIZE];
	}			 u;
	struct sockaddr_nl	 sa;
	struct iovec		 iov;
	struct msghdr		 msg;
	unsigned int		 why = 0;
	ssize_t			 n;
	int			 i;

	(void)what;
	(void)arg;
	for (i = 0; i < NETWATCH_READS; i++) {
		memset(&msg, 0, sizeof(msg));
		iov.iov_base = u.buf;
		iov.iov_len = sizeof(u.buf);
		msg.msg_name = &sa;
		msg.msg_namelen = sizeof(sa);
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		n = recvmsg(fd, &msg, MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* The kernel dropped messages: assume the worst. */
				log_debug("netwatch: netlink messages lost");
				why |= NETWATCH_OVERRUN;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("netwatch: rtnetlink recv");
			break;
		}
		if (msg.msg_namelen != sizeof(sa) || sa.nl_pid != 0)
			continue;	/* only the kernel speaks here */
		if (msg.msg_flags & MSG_TRUNC)
			why |= NETWATCH_OVERRUN;
		why |= netwatch_parse(u.buf, (size_t)n);
	}
	if (why != 0)
		netwatch_changed(why);
}

/*
 * What one datagram says changed. Routes of the local table (they come
 * and go with addresses, which say so themselves) and cached clones are
 * not changes.
 */
static unsigned int
netwatch_parse(const void *buf, size_t len)
{
	const struct nlmsghdr	*h;
	const struct rtmsg	*rt;
	unsigned int		 why = 0;
	unsigned int		 left = (unsigned int)len;

	for (h = buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
		switch (h->nlmsg_type) {
		case RTM_NEWADDR:
		case RTM_DELADDR:
			why |= netwatch_addr(h);
			break;
		case RTM_NEWROUTE:
		case RTM_DELROUTE:
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)))
				break;
			rt = NLMSG_DATA(h);
			if (rt->rtm_table == RT_TABLE_LOCAL ||
			    (rt->rtm_flags & RTM_F_CLONED) ||
			    netwatch_route_linklocal(h))
				break;
			why |= NETWATCH_ROUTE;
			break;
		case NLMSG_OVERRUN:
			why |= NETWATCH_OVERRUN;
			break;
		default:
			break;
		}
	}
	return (why);
}

/*
 * IPv6 link-local addresses (fe80::/10) come with every interface that goes
 * up, a second or so later, and no link of ours leaves by one: not a
 * change. Neither are the routes to them.
 */
static int
netwatch_linklocal(int family, const unsigned char *addr)
{
	return (family == AF_INET6 && addr[0] == 0xfe &&
	    (addr[1] & 0xc0) == 0x80);
}

static int
netwatch_route_linklocal(const struct nlmsghdr *h)
{
	const struct rtmsg	*rt = NLMSG_DATA(h);
	const struct rtattr	*rta;
	unsigned int		 left;

	if (rt->rtm_family != AF_INET6 || rt->rtm_dst_len < 10)
		return (0);
	left = h->nlmsg_len - NLMSG_LENGTH(sizeof(*rt));
	for (rta = RTM_RTA(rt); RTA_OK(rta, left); rta = RTA_NEXT(rta, left)) {
		if (rta->rta_type == RTA_DST && RTA_PAYLOAD(rta) >= 2)
			return (netwatch_linklocal(AF_INET6, RTA_DATA(rta)));
	}
	return (0);
}

/* Ask for every address there is now (the answers: netwatch_addr). */
static void
netwatch_dump(void)
{
	struct {
		struct nlmsghdr		h;
		struct ifaddrmsg	ifa;
	}			req;
	struct sockaddr_nl	sa;
	socklen_t		slen = sizeof(sa);

	if (getsockname(nw.fd, (struct sockaddr *)&sa, &slen) == 0)
		nw.portid = sa.nl_pid;
	memset(&req, 0, sizeof(req));
	req.h.nlmsg_len = sizeof(req);
	req.h.nlmsg_type = RTM_GETADDR;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.h.nlmsg_seq = NETWATCH_DUMP_SEQ;
	req.ifa.ifa_family = AF_UNSPEC;
	memset(&sa, 0, sizeof(sa));
	sa.nl_family = AF_NETLINK;
	if (sendto(nw.fd, &req, sizeof(req), 0, (struct sockaddr *)&sa,
	    sizeof(sa)) == -1)
		log_debug("netwatch: address dump: %s", strerror(errno));
}

/*
 * An address announced or removed: a change only when it is new to the
 * set or leaves it. The dump's answers fill the set and change nothing.
 */
static unsigned int
netwatch_addr(const struct nlmsghdr *h)
{
	const struct ifaddrmsg	*ifa;
	const struct rtattr	*rta;
	struct netwatch_addr	 a;
	char			 shown[INET6_ADDRSTRLEN];
	unsigned int		 left;
	int			 i, have = 0, dump;

	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifa)))
		return (NETWATCH_ADDR);
	ifa = NLMSG_DATA(h);
	memset(&a, 0, sizeof(a));
	a.ifindex = (int)ifa->ifa_index;
	a.family = ifa->ifa_family;
	left = h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifa));
	for (rta = IFA_RTA(ifa); RTA_OK(rta, left); rta = RTA_NEXT(rta, left)) {
		/* IFA_LOCAL is the address on point-to-point links. */
		if ((rta->rta_type == IFA_ADDRESS && !have) ||
		    rta->rta_type == IFA_LOCAL) {
			if (RTA_PAYLOAD(rta) > sizeof(a.addr))
				return (NETWATCH_ADDR);
			memcpy(a.addr, RTA_DATA(rta), RTA_PAYLOAD(rta));
			have = 1;
		}
	}
	if (!have)
		return (NETWATCH_ADDR);
	if (netwatch_linklocal(a.family, a.addr))
		return (0);
	dump = h->nlmsg_seq == NETWATCH_DUMP_SEQ && h->nlmsg_pid == nw.portid;
	for (i = 0; i < nw.naddrs; i++) {
		if (memcmp(&nw.addrs[i], &a, sizeof(a)) == 0)
			break;
	}
	if (!inet_ntop(a.family, a.addr, shown, sizeof(shown)))
		strlcpy_(shown, "?", sizeof(shown));
	if (h->nlmsg_type == RTM_DELADDR) {
		if (i < nw.naddrs)
			nw.addrs[i] = nw.addrs[--nw.naddrs];
		log_debug("netwatch: address %s gone from interface %d", shown,
		    a.ifindex);
		return (NETWATCH_ADDR);
	}
	if (i < nw.naddrs)
		return (0);		/* known: its flags or lifetimes changed */
	if (nw.naddrs < NETWATCH_ADDRS)
		nw.addrs[nw.naddrs++] = a;
	if (dump)
		return (0);
	log_debug("netwatch: address %s new on interface %d", shown,
	    a.ifindex);
	return (NETWATCH_ADDR);
}

/*
 * One round: probe every up link (not for the resolver), retry every link
 * in backoff now, start again the lookups under way (for the resolver).
 */
static void
netwatch_round_cb(int fd, short what, void *arg)
{
	struct netwatch_rounds	*r = arg;
	struct link		*l;
	double			 secs;
	char			 why[96];
	int			 probed = 0, retried = 0, resolver;

	(void)fd;
	(void)what;
	resolver = r == &nw.resolver;
	netwatch_why(r->why, why, sizeof(why));
	r->why = 0;
	r->pending = 0;
	r->last = monotime();
	r->count++;
	TAILQ_FOREACH(l, &td->links, entry) {
		if (l->state == LINK_UP && !resolver &&
		    l->hc->jump[0] == '\0') {
			secs = NETWATCH_PROBE;
			if (l->hc->keepalive_interval > 0 &&
			    l->hc->keepalive_interval < secs)
				secs = l->hc->keepalive_interval;
			link_probe(l, secs);
			probed++;
		} else if (l->state == LINK_BACKOFF) {
			link_retry_now(l);
			retried++;
		} else if (l->state == LINK_CONNECTING && resolver &&
		    dial_resolving(l->dial)) {
			log_debug("link %s: resolving again", l->hc->name);
			link_connect_now(l);
			retried++;
		}
	}
	if (resolver)
		log_info("resolver change %lu: %d link%s retried now",
		    r->count, retried, retried == 1 ? "" : "s");
	else
		log_info("network change %lu (%s): %d link%s probed, %d "
		    "retried now", r->count, why, probed, probed == 1 ? "" :
		    "s", retried);
}

/*
 * How many bytes of ours the peer's TCP has acknowledged on a socket
 * (tcpi_bytes_acked, Linux 4.1; glibc's struct tcp_info stops short of
 * it, hence linux/tcp.h here). 0 when not known: not TCP, an old kernel.
 */
uint64_t
netwatch_tcp_acked(int fd)
{
	struct tcp_info	ti;
	socklen_t	len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (fd == -1 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ==
	    -1 || len < offsetof(struct tcp_info, tcpi_bytes_acked) +
	    sizeof(ti.tcpi_bytes_acked))
		return (0);
	return (ti.tcpi_bytes_acked);
}

/* Every NETWATCH_CLOCK_EVERY seconds: did the machine sleep meanwhile? */
static void
netwatch_clock_cb(int fd, short what, void *arg)
{
	double b, m, slept;

	(void)fd;
	(void)what;
	(void)arg;
	if (resume_clocks(&b, &m) == -1)
		return;
	if ((slept = resume_check(&nw.clock, b, m)) > 0) {
		log_notice("netwatch: resumed after %.0f s asleep", slept);
		netwatch_changed(NETWATCH_RESUME);
	}
}

/* "route, address": the NETWATCH_* bits in words. */
static void
netwatch_why(unsigned int why, char *buf, size_t len)
{
	static const struct {
		unsigned int	 bit;
		const char	*word;
	} words[] = {
		{ NETWATCH_ADDR, "address" },
		{ NETWATCH_ROUTE, "route" },
		{ NETWATCH_OVERRUN, "netlink overrun" },
		{ NETWATCH_RESOLVER, "resolver" },
		{ NETWATCH_RESUME, "resume" },
	};
	size_t	i, off = 0;
	int	n;

	buf[0] = '\0';
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (!(why & words[i].bit))
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off > 0 ? ", " : "",
		    words[i].word);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
}
