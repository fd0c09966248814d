/*
 * util.c: endpoint parsing and formatting, the backoff schedule, monotonic
 * time, allocation that never returns NULL, and formatting for tunctl.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tunneld.h"

/* Seconds on the monotonic clock. */
double
monotime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

/*
 * The wait before the n-th retry in a row (n >= 1): d = min(max,
 * initial * 2^(n-1)), scaled into [d/2, d] by u, a uniform number in [0, 1].
 */
double
backoff_delay(int n, double initial, double max, double u)
{
	double d;

	if (n < 1)
		n = 1;
	if (n > 62)
		n = 62;
	d = initial * ldexp(1.0, n - 1);
	if (d > max)
		d = max;
	if (u < 0)
		u = 0;
	if (u > 1)
		u = 1;
	return (d / 2 + u * (d / 2));
}

/* malloc that never returns NULL. */
void *
xmalloc(size_t size)
{
	void *p;

	if ((p = malloc(size == 0 ? 1 : size)) == NULL)
		fatal("xmalloc %zu bytes", size);
	return (p);
}

/* calloc that never returns NULL. */
void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size)) == NULL)
		fatal("xcalloc %zu x %zu bytes", n, size);
	return (p);
}

/* strdup that never returns NULL. */
char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		fatal("xstrdup");
	return (p);
}

/* asprintf that never fails. */
int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list ap;
	int	n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("xasprintf");
	return (n);
}

/* Copy with truncation; returns strlen(src) like BSD strlcpy. */
size_t
strlcpy_(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return (len);
}

/* Tunnel and host names: [A-Za-z0-9_.-]{1,64}. */
int
valid_name(const char *s)
{
	size_t i, len = strlen(s);

	if (len < 1 || len > NAME_MAXLEN)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' &&
		    s[i] != '.' && s[i] != '-')
			return (0);
	}
	return (1);
}

/*
 * A string for an error message: in double quotes, with quotes, backslashes
 * and control bytes escaped, cut short with "..." when it does not fit.
 */
void
format_quoted(const char *s, char *buf, size_t len)
{
	const char	*p;
	size_t		 o = 0, need = 2;
	char		 esc[8];
	int		 n, fits;

	if (len < 8) {
		if (len > 0)
			buf[0] = '\0';
		return;
	}
	for (p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		need += (c == '"' || c == '\\') ? 2 :
		    (c < 0x20 || c >= 0x7f) ? 4 : 1;
	}
	fits = need < len;
	buf[o++] = '"';
	for (p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\')
			n = snprintf(esc, sizeof(esc), "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			n = snprintf(esc, sizeof(esc), "\\x%02x", c);
		else
			n = snprintf(esc, sizeof(esc), "%c", c);
		/* Keep room for ..." and the NUL. */
		if (!fits && o + (size_t)n + 5 > len) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, esc, (size_t)n);
		o += (size_t)n;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* An IPv4 address in dotted decimal: every byte given, nothing else. */
static int
endpoint_ipv4(const char *s, char *canon, size_t len)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		return (0);
	if (canon != NULL)
		inet_ntop(AF_INET, &a, canon, len);
	return (1);
}

/* An IPv6 address without brackets or zone. */
static int
endpoint_ipv6(const char *s, char *canon, size_t len)
{
	struct in6_addr a;

	if (inet_pton(AF_INET6, s, &a) != 1)
		return (0);
	if (canon != NULL)
		inet_ntop(AF_INET6, &a, canon, len);
	return (1);
}

/* Only digits and dots: meant as an IPv4 address, not as a name. */
static int
endpoint_numeric(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s) && *s != '.')
			return (0);
	return (1);
}

/*
 * A host name by RFC 1123 (labels of letters, digits and hyphens, 1-63
 * bytes, no hyphen at either end, dots between, one final dot allowed,
 * 255 bytes at most) or an IPv4 or IPv6 address (no brackets).
 */
int
valid_host(const char *s)
{
	size_t	 len = strlen(s), label = 0, i;

	if (len == 0 || len > HOST_MAXLEN)
		return (0);
	if (endpoint_ipv4(s, NULL, 0) || endpoint_ipv6(s, NULL, 0))
		return (1);
	if (endpoint_numeric(s))
		return (0);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return (0);
			label = 0;
		} else if (isalnum(c) || c == '-') {
			if (c == '-' && label == 0)
				return (0);
			if (++label > 63)
				return (0);
		} else
			return (0);
	}
	if (label > 0 && s[len - 1] == '-')
		return (0);
	return (1);
}

/* What endpoint_parse accepts under these flags, for its messages. */
static const char *
endpoint_forms(int flags)
{
	if (flags & EP_LISTEN)
		return ((flags & EP_NO_UNIX) ?
		    "PORT, ADDR:PORT, [IPV6]:PORT or *:PORT" :
		    "PORT, ADDR:PORT, [IPV6]:PORT, *:PORT or an absolute path");
	return ((flags & EP_NO_UNIX) ? "HOST:PORT or [IPV6]:PORT" :
	    "HOST:PORT, [IPV6]:PORT or an absolute path");
}

/* The port part of an endpoint: digits in range. */
static int
endpoint_port(const char *s, int flags, int *port, char *err, size_t errlen)
{
	const char	*range = (flags & EP_PORT0) ? "0-65535" : "1-65535";
	char		 q[48];
	long		 v = 0;
	size_t		 i, len = strlen(s);

	if (len == 0) {
		snprintf(err, errlen, "the port is missing (use %s)", range);
		return (-1);
	}
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i])) {
			format_quoted(s, q, sizeof(q));
			snprintf(err, errlen, "port %s is not a number (use %s)",
			    q, range);
			return (-1);
		}
		if (v <= 65535)
			v = v * 10 + (s[i] - '0');
	}
	if (v > 65535 || (v == 0 && !(flags & EP_PORT0))) {
		snprintf(err, errlen, "port %.24s%s is out of range %s", s,
		    len > 24 ? "..." : "", range);
		return (-1);
	}
	*port = (int)v;
	return (0);
}

/* The host part of a TCP endpoint: checked, canonical, stored. */
static int
endpoint_host(const char *h, int flags, struct endpoint *ep, char *err,
    size_t errlen)
{
	char	q[96];

	format_quoted(h, q, sizeof(q));
	if (strlen(h) > HOST_MAXLEN) {
		snprintf(err, errlen, "host name is longer than %d bytes",
		    HOST_MAXLEN);
		return (-1);
	}
	if (strcmp(h, "*") == 0) {
		if (!(flags & EP_LISTEN)) {
			snprintf(err, errlen, "\"*\" is only allowed in a "
			    "listen address (use %s)", endpoint_forms(flags));
			return (-1);
		}
		strlcpy_(ep->host, h, sizeof(ep->host));
		return (0);
	}
	if (endpoint_ipv4(h, ep->host, sizeof(ep->host)))
		return (0);
	if (endpoint_numeric(h)) {
		snprintf(err, errlen, "%s is not a valid IPv4 address", q);
		return (-1);
	}
	if (flags & EP_LISTEN) {
		if (strcasecmp(h, "localhost") == 0) {
			strlcpy_(ep->host, "localhost", sizeof(ep->host));
			return (0);
		}
		snprintf(err, errlen, "%s is not a valid listen address (use *, "
		    "localhost, an IPv4 address or [IPV6]; a listen address "
		    "is never looked up in DNS)", q);
		return (-1);
	}
	if (!valid_host(h)) {
		snprintf(err, errlen, "%s is not a valid host name or address "
		    "(use letters, digits, hyphens and dots, or an IP address)",
		    q);
		return (-1);
	}
	strlcpy_(ep->host, h, sizeof(ep->host));
	return (0);
}

/*
 * Parse one end of a tunnel: an absolute path (a UNIX socket), PORT (listen
 * only: loopback), ADDR:PORT, [IPV6]:PORT, *:PORT (listen only) or, for a
 * target, HOST:PORT. A listen address is bound, never resolved, so it must
 * be *, localhost or a literal. Returns 0, or -1 with a message in err.
 */
int
endpoint_parse(const char *s, int flags, struct endpoint *ep, char *err,
    size_t errlen)
{
	char		 q[96], host[HOST_MAXLEN + 2];
	char		 scratch[8];
	const char	*colon, *close;
	size_t		 hlen;

	if (err == NULL || errlen == 0) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	err[0] = '\0';
	memset(ep, 0, sizeof(*ep));
	format_quoted(s, q, sizeof(q));

	if (*s == '\0') {
		snprintf(err, errlen, "an empty string is not an endpoint "
		    "(use %s)", endpoint_forms(flags));
		return (-1);
	}

	/* UNIX sockets. */
	if (strchr(s, '/') != NULL) {
		if (flags & EP_NO_UNIX) {
			snprintf(err, errlen, "UNIX socket paths are not allowed "
			    "here (use %s)", endpoint_forms(flags));
			return (-1);
		}
		if (s[0] != '/') {
			snprintf(err, errlen, "%s is a relative path (a UNIX "
			    "socket path must be absolute)", q);
			return (-1);
		}
		if (strlen(s) > PATH_MAXLEN) {
			snprintf(err, errlen, "UNIX socket path is longer than "
			    "%d bytes", PATH_MAXLEN);
			return (-1);
		}
		if (s[strlen(s) - 1] == '/') {
			snprintf(err, errlen, "%s ends in \"/\" (a UNIX socket "
			    "path names a file)", q);
			return (-1);
		}
		ep->is_unix = 1;
		strlcpy_(ep->path, s, sizeof(ep->path));
		return (0);
	}

	/* [IPV6]:PORT */
	if (s[0] == '[') {
		if ((close = strchr(s, ']')) == NULL) {
			snprintf(err, errlen, "%s has no closing bracket", q);
			return (-1);
		}
		if (close[1] == '\0') {
			snprintf(err, errlen, "%s has no port (use [IPV6]:PORT)",
			    q);
			return (-1);
		}
		if (close[1] != ':') {
			snprintf(err, errlen, "%s has text after the closing "
			    "bracket (use [IPV6]:PORT)", q);
			return (-1);
		}
		hlen = (size_t)(close - s - 1);
		if (hlen >= sizeof(host))
			hlen = sizeof(host) - 1;
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (!endpoint_ipv6(host, ep->host, sizeof(ep->host))) {
			format_quoted(host, q, sizeof(q));
			snprintf(err, errlen, "%s is not a valid IPv6 address",
			    q);
			return (-1);
		}
		return (endpoint_port(close + 2, flags, &ep->port, err,
		    errlen));
	}

	if ((colon = strchr(s, ':')) == NULL) {
		/* PORT alone: a listener on loopback. */
		if (strspn(s, "+-0123456789") == strlen(s)) {
			if (flags & EP_LISTEN)
				return (endpoint_port(s, flags, &ep->port, err,
				    errlen));
			snprintf(err, errlen, "%s has no host (use %s)", q,
			    endpoint_forms(flags));
			return (-1);
		}
		snprintf(err, errlen, "%s has no port (use %s)", q,
		    endpoint_forms(flags));
		return (-1);
	}
	if (strchr(colon + 1, ':') != NULL) {
		snprintf(err, errlen, "%s looks like an IPv6 address without "
		    "brackets (write [IPV6]:PORT, e.g. [::1]:9000)", q);
		return (-1);
	}
	if (colon == s) {
		snprintf(err, errlen, "%s has no %s (use %s)", q,
		    (flags & EP_LISTEN) ? "address" : "host",
		    endpoint_forms(flags));
		return (-1);
	}
	hlen = (size_t)(colon - s);
	if (hlen >= sizeof(host))
		hlen = sizeof(host) - 1;	/* endpoint_host says too long */
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (endpoint_host(host, flags, ep, err, errlen) == -1)
		return (-1);
	return (endpoint_port(colon + 1, flags, &ep->port, err, errlen));
}

/*
 * Why the server refused to open a channel, from libssh's text ("Channel
 * opening failure: channel 43 error (1) open failed"): the RFC 4254 reason
 * code in words an operator can act on, with the server's own
 * description when it gave one. Returns the code, or -1 when libssh's
 * text holds none (errclass.c classifies it).
 */
int
ssh_open_failure(const char *err, char *buf, size_t len)
{
	const char	*p, *desc;
	char		*end;
	long		 code;

	if (err == NULL)
		err = "";
	if ((p = strstr(err, "Channel opening failure")) == NULL ||
	    (p = strstr(p, " error (")) == NULL) {
		/*
		 * libssh keeps one error per session: the refusal may have
		 * been read inside another call (a global request's), whose
		 * own error then replaced it. Its text is not our reason.
		 */
		snprintf(buf, len, "the server refused to open the channel "
		    "(its reason was not kept)");
		return (-1);
	}
	code = strtol(p + 8, &end, 10);
	if (*end != ')' || code < 0 || code > 255) {
		snprintf(buf, len, "%s", err);
		return (-1);
	}
	desc = end + 1;
	while (*desc == ' ')
		desc++;
	switch (code) {
	case 1:		/* SSH_OPEN_ADMINISTRATIVELY_PROHIBITED */
		snprintf(buf, len, "administratively prohibited by the server "
		    "(forwarding disabled or not permitted for this key)");
		break;
	case 2:		/* SSH_OPEN_CONNECT_FAILED */
		snprintf(buf, len, "the server could not connect%s%s",
		    *desc != '\0' ? ": " : "", desc);
		break;
	case 3:		/* SSH_OPEN_UNKNOWN_CHANNEL_TYPE */
		snprintf(buf, len, "the server does not know this channel "
		    "type");
		break;
	case 4:		/* SSH_OPEN_RESOURCE_SHORTAGE */
		snprintf(buf, len, "the server has too many channels open "
		    "(resource shortage%s%s; Dropbear allows 1,000 per "
		    "session)", *desc != '\0' ? ": " : "", desc);
		break;
	default:
		snprintf(buf, len, "%s", err);
	}
	return ((int)code);
}

/*
 * A socket address as the logs show it: "1.2.3.4:22", "[2001:db8::1]:22",
 * or a UNIX socket's path.
 */
void
sockaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	char				 host[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET6:
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, host,
		    sizeof(host)) == NULL)
			strlcpy_(host, "?", sizeof(host));
		snprintf(buf, len, "[%s]:%u", host,
		    (unsigned int)ntohs(sin6->sin6_port));
		break;
	case AF_INET:
		if (inet_ntop(AF_INET, &sin->sin_addr, host,
		    sizeof(host)) == NULL)
			strlcpy_(host, "?", sizeof(host));
		snprintf(buf, len, "%s:%u", host,
		    (unsigned int)ntohs(sin->sin_port));
		break;
	case AF_UNIX:
		snprintf(buf, len, "%s",
		    ((const struct sockaddr_un *)sa)->sun_path);
		break;
	default:
		snprintf(buf, len, "(address family %d)", sa->sa_family);
	}
}

/* The port of an IPv4 or IPv6 address, 0 for anything else. */
int
sockaddr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return (ntohs(((const struct sockaddr_in6 *)ss)->sin6_port));
	if (ss->ss_family == AF_INET)
		return (ntohs(((const struct sockaddr_in *)ss)->sin_port));
	return (0);
}

/* Whether two IPv4 or IPv6 addresses are the same, ports aside. */
int
sockaddr_same_host(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return (0);
	if (a->ss_family == AF_INET6)
		return (memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		    &((const struct sockaddr_in6 *)b)->sin6_addr,
		    sizeof(struct in6_addr)) == 0);
	if (a->ss_family == AF_INET)
		return (((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr);
	return (0);
}

/* Whether an address is the wildcard (0.0.0.0 or ::). */
int
sockaddr_is_any(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return (IN6_IS_ADDR_UNSPECIFIED(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr));
	if (ss->ss_family == AF_INET)
		return (((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY));
	return (0);
}

/*
 * An endpoint as tunctl shows it: 127.0.0.1:9000, [::1]:9000, *:8000 or a
 * path. A listener with no address shows as 127.0.0.1; port_override > 0
 * replaces the port (the one actually bound where 0 was asked).
 */
void
endpoint_format(const struct endpoint *ep, int port_override, char *buf,
    size_t len)
{
	const char	*host = ep->host[0] == '\0' ? "127.0.0.1" : ep->host;
	int		 port = port_override > 0 ? port_override : ep->port;

	if (ep->is_unix)
		snprintf(buf, len, "%s", ep->path);
	else if (strchr(host, ':') != NULL)
		snprintf(buf, len, "[%s]:%d", host, port);
	else
		snprintf(buf, len, "%s:%d", host, port);
}

/* Whether two endpoints name the same place ("" and 127.0.0.1 are one). */
int
endpoint_equal(const struct endpoint *a, const struct endpoint *b)
{
	const char *ha, *hb;

	if (a->is_unix != b->is_unix)
		return (0);
	if (a->is_unix)
		return (strcmp(a->path, b->path) == 0);
	if (a->port != b->port)
		return (0);
	ha = a->host[0] == '\0' ? "127.0.0.1" : a->host;
	hb = b->host[0] == '\0' ? "127.0.0.1" : b->host;
	return (strcasecmp(ha, hb) == 0);
}

/* A duration in the short form tunctl shows: 42s, 3m12s, 2h03m, 4d05h. */
void
format_duration(double secs, char *buf, size_t len)
{
	long s = secs < 0 ? 0 : (long)secs;

	if (s < 60)
		snprintf(buf, len, "%lds", s);
	else if (s < 3600)
		snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
	else
		snprintf(buf, len, "%ldd%02ldh", s / 86400, (s % 86400) / 3600);
}

/* Bytes in human units: 512B, 1.5K, 20.0M, 3.2G. */
void
format_bytes(uint64_t n, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	double	v = (double)n;
	int	i = -1;

	if (n < 1024) {
		snprintf(buf, len, "%lluB", (unsigned long long)n);
		return;
	}
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, "%.1f%c", v, units[i]);
}

/* A wall-clock time as RFC 3339 in UTC. */
void
format_rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
