/*
 * socks.h: the SOCKS 4, 4a and 5 request parser and reply builder of
 * socks.c, shared by dynamic (ssh -D) and remote-dynamic tunnels.
 *
 * Everything here is a pure function on bytes: no I/O, no allocation, no
 * globals. The caller keeps the bytes it has received and feeds them all,
 * from the first one not yet consumed, to socks_parse():
 *
 *   SOCKS_NEED_MORE  nothing consumed; call again when more bytes arrive.
 *   SOCKS_REPLY      send reply[0..replylen), drop `used` bytes, call again
 *                    (the SOCKS5 method selection after the greeting).
 *   SOCKS_DONE       the request is complete: cmd, atyp, addr, host and port
 *                    are set; drop `used` bytes (what follows is the
 *                    client's first data, not ours). Open the channel and
 *                    answer with socks_reply_ok() or socks_reply_fail()
 *                    only once the far side has answered.
 *   SOCKS_ERROR      send reply[0..replylen) if replylen > 0, then close;
 *                    `error` says why, for the log.
 *
 * After SOCKS_DONE a call returns SOCKS_DONE again and consumes nothing;
 * after SOCKS_ERROR it returns SOCKS_ERROR with no reply.
 *
 * A message never needs more than SOCKS_MSG_MAX bytes: the caller may hand
 * over at most that many (evbuffer_pullup) and never gets SOCKS_NEED_MORE
 * for a full SOCKS_MSG_MAX bytes. Replies are at most SOCKS_REPLY_MAX bytes.
 */
#ifndef SOCKS_H
#define SOCKS_H

#include <stddef.h>
#include <stdint.h>

#define SOCKS_HOST_MAX		255	/* a domain name, 4a name or userid */
#define SOCKS_MSG_MAX		520	/* 4a: 8 + 256 user id + 256 host */
#define SOCKS_REPLY_MAX		22	/* SOCKS5 with an IPv6 bound address */
#define SOCKS_ERROR_MAX		80

/* SOCKS5 command codes (SOCKS4 uses 1 and 2 alike). */
#define SOCKS_CMD_CONNECT	0x01
#define SOCKS_CMD_BIND		0x02
#define SOCKS_CMD_UDP		0x03

/* SOCKS5 address types; SOCKS4 requests are IPV4, SOCKS4a ones DOMAIN. */
#define SOCKS_ATYP_IPV4		0x01
#define SOCKS_ATYP_DOMAIN	0x03
#define SOCKS_ATYP_IPV6		0x04

/* SOCKS5 reply codes (RFC 1928 section 6). */
#define SOCKS5_OK		0x00
#define SOCKS5_FAILURE		0x01	/* general SOCKS server failure */
#define SOCKS5_NOT_ALLOWED	0x02	/* connection not allowed by ruleset */
#define SOCKS5_NET_UNREACH	0x03
#define SOCKS5_HOST_UNREACH	0x04
#define SOCKS5_REFUSED		0x05
#define SOCKS5_TTL_EXPIRED	0x06
#define SOCKS5_CMD_UNSUPP	0x07
#define SOCKS5_ATYP_UNSUPP	0x08

/* SOCKS4 reply codes. */
#define SOCKS4_OK		0x5a
#define SOCKS4_FAILED		0x5b

enum socks_result {
	SOCKS_ERROR = -1,	/* send the reply if any, then close */
	SOCKS_NEED_MORE = 0,	/* nothing consumed, wait for more bytes */
	SOCKS_REPLY = 1,	/* send the reply, drop `used`, parse on */
	SOCKS_DONE = 2,		/* request complete, drop `used` */
};

/* Where a struct socks is; private to socks.c. */
enum socks_phase {
	SOCKS_PH_START,		/* nothing seen yet */
	SOCKS_PH_GREETING5,	/* SOCKS5 method negotiation */
	SOCKS_PH_REQUEST5,	/* SOCKS5 request, method chosen */
	SOCKS_PH_REQUEST4,	/* SOCKS4 or 4a request */
	SOCKS_PH_DONE,
	SOCKS_PH_FAILED,
};

/* One client's handshake: parse state, then the request once done. */
struct socks {
	enum socks_phase phase;
	int		 version;		/* 4 or 5; 0 until known */
	uint8_t		 cmd;			/* SOCKS_CMD_CONNECT if done */
	uint8_t		 atyp;			/* SOCKS_ATYP_* */
	uint8_t		 addr[16];		/* IPv4 (4 bytes) or IPv6 */
	char		 host[SOCKS_HOST_MAX + 1]; /* address text or name */
	uint16_t	 port;			/* host order, never 0 */
	char		 error[SOCKS_ERROR_MAX];	/* why SOCKS_ERROR */
};

/*
 * socks.c: socks_parse(s, buf, len, &used, reply, &replylen) as above;
 * socks_reply_ok/_bound/_fail(s, ..., reply) return the reply length (0
 * if the version is unknown); socks_map_open_failure(reason, text) turns
 * an SSH channel-open failure into a SOCKS5 code (never 0),
 * socks_map_ssh_error() does it from libssh's ssh_get_error() text and
 * socks_map_errno() from a local connect errno (remote-dynamic).
 */
void		 socks_init(struct socks *);
enum socks_result socks_parse(struct socks *, const uint8_t *, size_t,
		    size_t *, uint8_t *, size_t *);
size_t		 socks_reply_ok(const struct socks *, uint8_t *);
size_t		 socks_reply_bound(const struct socks *, int, const uint8_t *,
		    uint16_t, uint8_t *);
size_t		 socks_reply_fail(const struct socks *, int, uint8_t *);
int		 socks_map_open_failure(int, const char *);
int		 socks_map_ssh_error(const char *);
int		 socks_map_errno(int);
const char	*socks_rep_text(int);

#endif /* SOCKS_H */
