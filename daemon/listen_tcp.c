/*
 * listen_tcp.c: bind and listen on a numeric TCP endpoint, for tunnels'
 * listeners (fwd_local.c) and the metrics listener (metrics_http.c).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tunneld.h"

/*
 * The address a TCP listener binds: no address means loopback, "*" every
 * address (IPv6 and IPv4 on one socket where IPv6 exists). -1: not an
 * address.
 */
int
listen_tcp_addr(const struct endpoint *ep, struct sockaddr_storage *ss,
    socklen_t *slen, int *v6only)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	*v6only = 1;
	if (ep->host[0] == '\0' || strcmp(ep->host, "localhost") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (strcmp(ep->host, "*") == 0) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		*v6only = 0;
	} else if (inet_pton(AF_INET, ep->host, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, ep->host, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		return (-1);
	if (ss->ss_family == AF_INET6) {
		sin6->sin6_port = htons(ep->port);
		*slen = sizeof(*sin6);
	} else {
		sin->sin_port = htons(ep->port);
		*slen = sizeof(*sin);
	}
	return (0);
}

/*
 * Bind and listen on a numeric TCP endpoint ("" loopback, "*" every address,
 * IPv4 too when there is no IPv6); *port gets the port bound (for port 0).
 * Returns the fd or -1 with err set.
 */
int
listen_tcp(const struct endpoint *ep, int backlog, int *port, char *err,
    size_t errlen)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	socklen_t		 slen;
	char			 shown[HOST_MAXLEN + 16];
	int			 fd, on = 1, off = 0, v6only;

	endpoint_format(ep, 0, shown, sizeof(shown));
	if (listen_tcp_addr(ep, &ss, &slen, &v6only) == -1) {
		snprintf(err, errlen, "listen %s: not an address", shown);
		return (-1);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1 && !v6only) {
		/* No IPv6 here: every IPv4 address will do. */
		memset(&ss, 0, sizeof(ss));
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(ep->port);
		slen = sizeof(*sin);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
	}
	if (fd == -1) {
		snprintf(err, errlen, "listen %s: socket: %s", shown,
		    strerror(errno));
		return (-1);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
		    v6only ? &on : &off, sizeof(on));
	if (bind(fd, (struct sockaddr *)&ss, slen) == -1) {
		snprintf(err, errlen, "listen %s: bind: %s%s", shown,
		    strerror(errno), errno == EACCES && ep->port < 1024 ?
		    " (ports below 1024 need CAP_NET_BIND_SERVICE, or a "
		    "systemd socket unit)" : "");
		close(fd);
		return (-1);
	}
	if (listen(fd, backlog) == -1) {
		snprintf(err, errlen, "listen %s: %s", shown, strerror(errno));
		close(fd);
		return (-1);
	}
	slen = sizeof(ss);
	if (port != NULL && getsockname(fd, (struct sockaddr *)&ss, &slen) == 0)
		*port = sockaddr_port(&ss);
	return (fd);
}
