/*
 * socks.c: SOCKS 4, 4a and 5 requests parsed from bytes, and the replies
 * built for them; the contract is in socks.h.
 *
 * Every call reads the current message again from its first byte and
 * consumes it only once it is complete, as OpenSSH's channel_decode_socks*
 * do on a copy of the buffer. A message is never longer than SOCKS_MSG_MAX
 * bytes, so the whole state is one phase, and nothing a client sends makes
 * us keep more. The checks run in the order of the bytes they read, so
 * where the network cuts a message never changes the outcome, only when
 * it is known.
 *
 * Names are never resolved here: the far side resolves them (direct-tcpip
 * carries the host as a string), so a SOCKS5 domain or SOCKS4a name is
 * kept as text. Only NUL and other control characters are refused.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "socks.h"

#define SOCKS5_METHOD_NONE	0x00
#define SOCKS5_METHOD_REFUSED	0xff

/* SSH channel-open failure reasons (RFC 4254 section 5.1). */
#define SSH_OPEN_PROHIBITED	1
#define SSH_OPEN_CONNECT_FAILED	2
#define SSH_OPEN_UNKNOWN_TYPE	3
#define SSH_OPEN_SHORTAGE	4

static enum socks_result socks_fail(struct socks *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static enum socks_result socks_greeting5(struct socks *, const uint8_t *,
		    size_t, size_t *, uint8_t *, size_t *);
static enum socks_result socks_request5(struct socks *, const uint8_t *,
		    size_t, size_t *, uint8_t *, size_t *);
static enum socks_result socks_request4(struct socks *, const uint8_t *,
		    size_t, size_t *, uint8_t *, size_t *);
static const char *socks_cmd_name(uint8_t);
static int	 socks_name(const uint8_t *, size_t, char *);
static size_t	 socks_reply5(uint8_t, int, const uint8_t *, uint16_t,
		    uint8_t *);
static size_t	 socks_reply4(uint8_t, const uint8_t *, uint16_t, uint8_t *);
static int	 socks_contains(const char *, const char *);
static int	 socks_map_text(const char *);

/* Words in an SSH open-failure description, first match wins. */
static const struct socks_word {
	const char	*word;
	int		 rep;
} socks_words[] = {
	{ "refused",			SOCKS5_REFUSED },
	{ "network is unreachable",	SOCKS5_NET_UNREACH },
	{ "network unreachable",	SOCKS5_NET_UNREACH },
	{ "network is down",		SOCKS5_NET_UNREACH },
	{ "no route",			SOCKS5_HOST_UNREACH },
	{ "unreachable",		SOCKS5_HOST_UNREACH },
	{ "host is down",		SOCKS5_HOST_UNREACH },
	{ "not known",			SOCKS5_HOST_UNREACH },
	{ "name resolution",		SOCKS5_HOST_UNREACH },
	{ "no address associated",	SOCKS5_HOST_UNREACH },
	{ "nodename nor servname",	SOCKS5_HOST_UNREACH },
	{ "unknown host",		SOCKS5_HOST_UNREACH },
	{ "resolve",			SOCKS5_HOST_UNREACH },
	{ "timed out",			SOCKS5_TTL_EXPIRED },
	{ "timeout",			SOCKS5_TTL_EXPIRED },
	{ "prohibited",			SOCKS5_NOT_ALLOWED },
	{ "not permitted",		SOCKS5_NOT_ALLOWED },
	{ "permission denied",		SOCKS5_NOT_ALLOWED },
};

/* Make a fresh handshake, before the first byte. */
void
socks_init(struct socks *s)
{
	memset(s, 0, sizeof(*s));
	s->phase = SOCKS_PH_START;
}

/*
 * Parse what the client has sent from the first unconsumed byte: see
 * socks.h for the results, *used and the reply.
 */
enum socks_result
socks_parse(struct socks *s, const uint8_t *buf, size_t len, size_t *used,
    uint8_t *reply, size_t *replylen)
{
	*used = 0;
	*replylen = 0;
	if (len > SOCKS_MSG_MAX)
		len = SOCKS_MSG_MAX;	/* no message is longer */

	if (s->phase == SOCKS_PH_START) {
		if (len == 0)
			return (SOCKS_NEED_MORE);
		if (buf[0] == 5) {
			s->version = 5;
			s->phase = SOCKS_PH_GREETING5;
		} else if (buf[0] == 4) {
			s->version = 4;
			s->phase = SOCKS_PH_REQUEST4;
		} else
			return (socks_fail(s, "not a SOCKS request "
			    "(version byte 0x%02x)", buf[0]));
	}

	switch (s->phase) {
	case SOCKS_PH_GREETING5:
		return (socks_greeting5(s, buf, len, used, reply, replylen));
	case SOCKS_PH_REQUEST5:
		return (socks_request5(s, buf, len, used, reply, replylen));
	case SOCKS_PH_REQUEST4:
		return (socks_request4(s, buf, len, used, reply, replylen));
	case SOCKS_PH_DONE:
		return (SOCKS_DONE);
	default:
		if (s->error[0] == '\0')
			snprintf(s->error, sizeof(s->error),
			    "SOCKS handshake already failed");
		s->phase = SOCKS_PH_FAILED;
		return (SOCKS_ERROR);
	}
}

/* Mark the handshake failed with a reason for the log. */
static enum socks_result
socks_fail(struct socks *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	s->phase = SOCKS_PH_FAILED;
	s->host[0] = '\0';
	s->port = 0;
	return (SOCKS_ERROR);
}

/*
 * The SOCKS5 greeting: VER NMETHODS METHODS; only "no authentication" is
 * accepted, anything else gets method 0xFF and a close (RFC 1928 section 3).
 */
static enum socks_result
socks_greeting5(struct socks *s, const uint8_t *buf, size_t len,
    size_t *used, uint8_t *reply, size_t *replylen)
{
	size_t	n, i;

	if (len < 2)
		return (SOCKS_NEED_MORE);
	n = buf[1];
	if (n == 0) {
		reply[0] = 5;
		reply[1] = SOCKS5_METHOD_REFUSED;
		*replylen = 2;
		return (socks_fail(s, "SOCKS5 greeting offers no "
		    "authentication method"));
	}
	if (len < 2 + n)
		return (SOCKS_NEED_MORE);
	for (i = 0; i < n; i++)
		if (buf[2 + i] == SOCKS5_METHOD_NONE)
			break;
	reply[0] = 5;
	reply[1] = SOCKS5_METHOD_REFUSED;
	*replylen = 2;
	if (i == n)
		return (socks_fail(s, "SOCKS5 client does not offer \"no "
		    "authentication\" (%zu other method%s)", n,
		    n == 1 ? "" : "s"));
	reply[1] = SOCKS5_METHOD_NONE;
	*used = 2 + n;
	s->phase = SOCKS_PH_REQUEST5;
	return (SOCKS_REPLY);
}

/*
 * The SOCKS5 request: VER CMD RSV ATYP DST.ADDR DST.PORT, CONNECT only.
 */
static enum socks_result
socks_request5(struct socks *s, const uint8_t *buf, size_t len,
    size_t *used, uint8_t *reply, size_t *replylen)
{
	size_t	 off, alen, need;
	uint16_t port;
	int	 af;

	if (len < 1)
		return (SOCKS_NEED_MORE);
	if (buf[0] != 5) {
		*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
		return (socks_fail(s, "SOCKS5 request with version 0x%02x",
		    buf[0]));
	}
	if (len < 2)
		return (SOCKS_NEED_MORE);
	s->cmd = buf[1];
	if (s->cmd != SOCKS_CMD_CONNECT) {
		*replylen = socks_reply_fail(s, SOCKS5_CMD_UNSUPP, reply);
		return (socks_fail(s, "SOCKS5 %s (0x%02x) not supported",
		    socks_cmd_name(s->cmd), s->cmd));
	}
	if (len < 3)
		return (SOCKS_NEED_MORE);
	if (buf[2] != 0) {
		*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
		return (socks_fail(s, "SOCKS5 request with reserved byte "
		    "0x%02x", buf[2]));
	}
	if (len < 4)
		return (SOCKS_NEED_MORE);
	s->atyp = buf[3];
	switch (s->atyp) {
	case SOCKS_ATYP_IPV4:
		off = 4;
		alen = 4;
		break;
	case SOCKS_ATYP_IPV6:
		off = 4;
		alen = 16;
		break;
	case SOCKS_ATYP_DOMAIN:
		if (len < 5)
			return (SOCKS_NEED_MORE);
		off = 5;
		alen = buf[4];
		if (alen == 0) {
			*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
			return (socks_fail(s, "SOCKS5 request with an empty "
			    "domain name"));
		}
		break;
	default:
		*replylen = socks_reply_fail(s, SOCKS5_ATYP_UNSUPP, reply);
		return (socks_fail(s, "SOCKS5 address type 0x%02x not "
		    "supported", s->atyp));
	}
	need = off + alen + 2;
	if (len < need)
		return (SOCKS_NEED_MORE);

	if (s->atyp == SOCKS_ATYP_DOMAIN) {
		memset(s->addr, 0, sizeof(s->addr));
		if (socks_name(buf + off, alen, s->host) == -1) {
			*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
			return (socks_fail(s, "SOCKS5 domain name with a "
			    "control character"));
		}
	} else {
		memset(s->addr, 0, sizeof(s->addr));
		memcpy(s->addr, buf + off, alen);
		af = s->atyp == SOCKS_ATYP_IPV4 ? AF_INET : AF_INET6;
		if (inet_ntop(af, s->addr, s->host, sizeof(s->host)) == NULL) {
			*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
			return (socks_fail(s, "SOCKS5 address not printable"));
		}
	}
	port = (uint16_t)(buf[need - 2] << 8 | buf[need - 1]);
	if (port == 0) {
		*replylen = socks_reply_fail(s, SOCKS5_NOT_ALLOWED, reply);
		return (socks_fail(s, "SOCKS5 CONNECT to port 0"));
	}
	s->port = port;
	s->phase = SOCKS_PH_DONE;
	*used = need;
	return (SOCKS_DONE);
}

/*
 * The SOCKS4 request: VN CD DSTPORT DSTIP USERID NUL, and for SOCKS4a
 * (DSTIP 0.0.0.x, x != 0) a host name and NUL after it; CONNECT only.
 */
static enum socks_result
socks_request4(struct socks *s, const uint8_t *buf, size_t len,
    size_t *used, uint8_t *reply, size_t *replylen)
{
	const uint8_t	*nul;
	size_t		 off, n;
	uint16_t	 port;

	if (len < 2)
		return (SOCKS_NEED_MORE);
	s->cmd = buf[1];
	if (s->cmd != SOCKS_CMD_CONNECT) {
		*replylen = socks_reply_fail(s, SOCKS5_CMD_UNSUPP, reply);
		return (socks_fail(s, "SOCKS4 %s (0x%02x) not supported",
		    socks_cmd_name(s->cmd), s->cmd));
	}
	if (len < 4)
		return (SOCKS_NEED_MORE);
	port = (uint16_t)(buf[2] << 8 | buf[3]);
	if (port == 0) {
		*replylen = socks_reply_fail(s, SOCKS5_NOT_ALLOWED, reply);
		return (socks_fail(s, "SOCKS4 CONNECT to port 0"));
	}
	if (len < 8)
		return (SOCKS_NEED_MORE);

	/* The user id: ignored, but it must end within bounds. */
	off = 8;
	n = len - off;
	if (n > SOCKS_HOST_MAX + 1)
		n = SOCKS_HOST_MAX + 1;
	if ((nul = memchr(buf + off, '\0', n)) == NULL) {
		if (len - off <= SOCKS_HOST_MAX)
			return (SOCKS_NEED_MORE);
		*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
		return (socks_fail(s, "SOCKS4 user id longer than %d bytes",
		    SOCKS_HOST_MAX));
	}
	off = (size_t)(nul - buf) + 1;

	memset(s->addr, 0, sizeof(s->addr));
	memcpy(s->addr, buf + 4, 4);
	if (buf[4] != 0 || buf[5] != 0 || buf[6] != 0 || buf[7] == 0) {
		s->atyp = SOCKS_ATYP_IPV4;
		if (inet_ntop(AF_INET, s->addr, s->host,
		    sizeof(s->host)) == NULL) {
			*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
			return (socks_fail(s, "SOCKS4 address not printable"));
		}
		s->port = port;
		s->phase = SOCKS_PH_DONE;
		*used = off;
		return (SOCKS_DONE);
	}

	/* SOCKS4a: the host name follows the user id. */
	n = len - off;
	if (n > SOCKS_HOST_MAX + 1)
		n = SOCKS_HOST_MAX + 1;
	if ((nul = memchr(buf + off, '\0', n)) == NULL) {
		if (len - off <= SOCKS_HOST_MAX)
			return (SOCKS_NEED_MORE);
		*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
		return (socks_fail(s, "SOCKS4a host name longer than %d bytes",
		    SOCKS_HOST_MAX));
	}
	n = (size_t)(nul - (buf + off));
	if (n == 0) {
		*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
		return (socks_fail(s, "SOCKS4a request with an empty host "
		    "name"));
	}
	memset(s->addr, 0, sizeof(s->addr));
	s->atyp = SOCKS_ATYP_DOMAIN;
	if (socks_name(buf + off, n, s->host) == -1) {
		*replylen = socks_reply_fail(s, SOCKS5_FAILURE, reply);
		return (socks_fail(s, "SOCKS4a host name with a control "
		    "character"));
	}
	s->port = port;
	s->phase = SOCKS_PH_DONE;
	*used = off + n + 1;
	return (SOCKS_DONE);
}

/* The name of a SOCKS command code, for the log. */
static const char *
socks_cmd_name(uint8_t cmd)
{
	switch (cmd) {
	case SOCKS_CMD_CONNECT:
		return ("CONNECT");
	case SOCKS_CMD_BIND:
		return ("BIND");
	case SOCKS_CMD_UDP:
		return ("UDP ASSOCIATE");
	default:
		return ("command");
	}
}

/*
 * Copy a host name of n (1-255) bytes into out as a string; -1 if it holds
 * a NUL or another control character, which no host name has and which
 * must not reach the far side or our logs.
 */
static int
socks_name(const uint8_t *name, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (name[i] < 0x20 || name[i] == 0x7f) {
			out[0] = '\0';
			return (-1);
		}
	memcpy(out, name, n);
	out[n] = '\0';
	return (0);
}

/* Build a SOCKS5 reply with an IPv4 or IPv6 address (zeros when NULL). */
static size_t
socks_reply5(uint8_t rep, int atyp, const uint8_t *addr, uint16_t port,
    uint8_t *reply)
{
	size_t alen;

	if (atyp != SOCKS_ATYP_IPV6)
		atyp = SOCKS_ATYP_IPV4;
	alen = atyp == SOCKS_ATYP_IPV6 ? 16 : 4;
	reply[0] = 5;
	reply[1] = rep;
	reply[2] = 0;
	reply[3] = (uint8_t)atyp;
	if (addr != NULL)
		memcpy(reply + 4, addr, alen);
	else
		memset(reply + 4, 0, alen);
	reply[4 + alen] = (uint8_t)(port >> 8);
	reply[5 + alen] = (uint8_t)(port & 0xff);
	return (6 + alen);
}

/* Build a SOCKS4 reply: VN 0, the code, a port and an IPv4 address. */
static size_t
socks_reply4(uint8_t code, const uint8_t *addr, uint16_t port,
    uint8_t *reply)
{
	reply[0] = 0;
	reply[1] = code;
	reply[2] = (uint8_t)(port >> 8);
	reply[3] = (uint8_t)(port & 0xff);
	if (addr != NULL)
		memcpy(reply + 4, addr, 4);
	else
		memset(reply + 4, 0, 4);
	return (8);
}

/* The success reply once the far side opened the channel: 0.0.0.0:0. */
size_t
socks_reply_ok(const struct socks *s, uint8_t *reply)
{
	return (socks_reply_bound(s, 0, NULL, 0, reply));
}

/*
 * The success reply with the address the connection was made from: atyp
 * SOCKS_ATYP_IPV4 (4 bytes at addr) or SOCKS_ATYP_IPV6 (16), anything else
 * or a NULL addr meaning 0.0.0.0; SOCKS4 can only carry IPv4. 0 bytes
 * when the handshake never reached a request.
 */
size_t
socks_reply_bound(const struct socks *s, int atyp, const uint8_t *addr,
    uint16_t port, uint8_t *reply)
{
	if (addr == NULL || (atyp != SOCKS_ATYP_IPV4 &&
	    atyp != SOCKS_ATYP_IPV6)) {
		atyp = SOCKS_ATYP_IPV4;
		addr = NULL;
	}
	if (s->version == 5)
		return (socks_reply5(SOCKS5_OK, atyp, addr, port, reply));
	if (s->version == 4)
		return (socks_reply4(SOCKS4_OK,
		    atyp == SOCKS_ATYP_IPV4 ? addr : NULL, port, reply));
	return (0);
}

/*
 * The failure reply for SOCKS5 code rep5 (SOCKS4 has only 0x5B); a code
 * of 0 is no failure and becomes 0x01, so a failure is never told success.
 * 0 bytes when the version is not known yet (then just close).
 */
size_t
socks_reply_fail(const struct socks *s, int rep5, uint8_t *reply)
{
	if (rep5 <= SOCKS5_OK || rep5 > 0xff)
		rep5 = SOCKS5_FAILURE;
	if (s->version == 5)
		return (socks_reply5((uint8_t)rep5, SOCKS_ATYP_IPV4, NULL, 0,
		    reply));
	if (s->version == 4)
		return (socks_reply4(SOCKS4_FAILED, NULL, 0, reply));
	return (0);
}

/* Whether haystack holds needle (lower case), ignoring ASCII case. */
static int
socks_contains(const char *haystack, const char *needle)
{
	size_t	i, j;
	int	c;

	for (i = 0; haystack[i] != '\0'; i++) {
		for (j = 0; needle[j] != '\0'; j++) {
			c = (unsigned char)haystack[i + j];
			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			if (c != needle[j])
				break;
		}
		if (needle[j] == '\0')
			return (1);
	}
	return (0);
}

/* The SOCKS5 code for the words of a failure description, else 0x01. */
static int
socks_map_text(const char *text)
{
	size_t i;

	if (text == NULL)
		return (SOCKS5_FAILURE);
	for (i = 0; i < sizeof(socks_words) / sizeof(socks_words[0]); i++)
		if (socks_contains(text, socks_words[i].word))
			return (socks_words[i].rep);
	return (SOCKS5_FAILURE);
}

/*
 * The SOCKS5 code for an SSH channel-open failure: reason 1
 * (administratively prohibited) is "not allowed"; reason 2 (connect
 * failed) is told apart by sshd's description (strerror or gai_strerror:
 * "Connection refused", "No route to host", "Name or service not known",
 * "Connection timed out"); 3 and 4 are general failures. A reason of 0 or
 * an unknown one is judged by the description alone. Never 0x00.
 */
int
socks_map_open_failure(int reason, const char *text)
{
	switch (reason) {
	case SSH_OPEN_PROHIBITED:
		return (SOCKS5_NOT_ALLOWED);
	case SSH_OPEN_UNKNOWN_TYPE:
	case SSH_OPEN_SHORTAGE:
		return (SOCKS5_FAILURE);
	case SSH_OPEN_CONNECT_FAILED:
	default:
		return (socks_map_text(text));
	}
}

/*
 * The SOCKS5 code for libssh's error string after a refused channel open,
 * "Channel opening failure: channel N error (REASON) DESCRIPTION": libssh
 * keeps the reason only in that text. Other strings are judged by words.
 */
int
socks_map_ssh_error(const char *err)
{
	const char	*p;
	int		 reason = 0, digits = 0;

	if (err == NULL)
		return (SOCKS5_FAILURE);
	if ((p = strstr(err, "error (")) == NULL)
		return (socks_map_open_failure(0, err));
	for (p += strlen("error ("); *p >= '0' && *p <= '9'; p++)
		if (++digits <= 9)
			reason = reason * 10 + (*p - '0');
	if (digits == 0 || digits > 9 || *p != ')')
		return (socks_map_open_failure(0, err));
	p++;
	while (*p == ' ')
		p++;
	return (socks_map_open_failure(reason, p));
}

/*
 * The SOCKS5 code for a local connect(2) errno, for remote-dynamic tunnels
 * whose connections leave from this machine.
 */
int
socks_map_errno(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return (SOCKS5_REFUSED);
	case ENETUNREACH:
	case ENETDOWN:
		return (SOCKS5_NET_UNREACH);
	case EHOSTUNREACH:
	case EHOSTDOWN:
		return (SOCKS5_HOST_UNREACH);
	case ETIMEDOUT:
		return (SOCKS5_TTL_EXPIRED);
	case EACCES:
	case EPERM:
		return (SOCKS5_NOT_ALLOWED);
	case EAFNOSUPPORT:
		return (SOCKS5_ATYP_UNSUPP);
	default:
		return (SOCKS5_FAILURE);
	}
}

/* The RFC 1928 text of a SOCKS5 reply code, for logs and tests. */
const char *
socks_rep_text(int rep5)
{
	switch (rep5) {
	case SOCKS5_OK:
		return ("succeeded");
	case SOCKS5_FAILURE:
		return ("general SOCKS server failure");
	case SOCKS5_NOT_ALLOWED:
		return ("connection not allowed by ruleset");
	case SOCKS5_NET_UNREACH:
		return ("network unreachable");
	case SOCKS5_HOST_UNREACH:
		return ("host unreachable");
	case SOCKS5_REFUSED:
		return ("connection refused");
	case SOCKS5_TTL_EXPIRED:
		return ("TTL expired");
	case SOCKS5_CMD_UNSUPP:
		return ("command not supported");
	case SOCKS5_ATYP_UNSUPP:
		return ("address type not supported");
	default:
		return ("unknown SOCKS5 reply code");
	}
}
