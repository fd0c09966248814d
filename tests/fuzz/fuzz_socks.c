/*
 * fuzz_socks.c: libFuzzer harness for the SOCKS parser of daemon/socks.c.
 *
 * The first input byte chooses how the rest is cut into reads; the rest is
 * what a client sends. It is fed once whole and once in those reads, the
 * way the daemon feeds it (unconsumed bytes kept, parsed again with what
 * follows), and both runs must end alike. On every call the contract of
 * socks.h is checked: used <= len, replies bounded and never a success,
 * NEED_MORE only below SOCKS_MSG_MAX bytes, a finished request with a
 * NUL-terminated host free of control characters and a port other than 0.
 * The failure mapping and the reply builders get the input too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "socks.h"

#define FUZZ_IN_MAX	4096
#define FUZZ_OUT_MAX	64
#define CANARY		0xa5

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "fuzz_socks: %s:%d: invariant failed: %s\n", \
		    __FILE__, __LINE__, #x);				\
		abort();						\
	}								\
} while (0)

/* How one run ended. */
struct fuzz_run {
	int		 res;
	uint8_t		 out[FUZZ_OUT_MAX];
	size_t		 outlen;
	size_t		 consumed;
	struct socks	 s;
};

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static uint32_t	 fuzz_rand(uint32_t *);
static void	 fuzz_check_done(struct socks *);
static void	 fuzz_check_error(struct socks *, const uint8_t *, size_t);
static void	 fuzz_feed(const uint8_t *, size_t, uint8_t, struct fuzz_run *);
static void	 fuzz_map(const uint8_t *, size_t);

/* A small xorshift generator for the read sizes. */
static uint32_t
fuzz_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return (*x);
}

/* A finished request is whole and stays finished. */
static void
fuzz_check_done(struct socks *s)
{
	uint8_t			 reply[SOCKS_REPLY_MAX];
	size_t			 used, replylen, i, n;
	enum socks_result	 res;

	CHECK(s->version == 4 || s->version == 5);
	CHECK(s->cmd == SOCKS_CMD_CONNECT);
	CHECK(s->atyp == SOCKS_ATYP_IPV4 || s->atyp == SOCKS_ATYP_IPV6 ||
	    s->atyp == SOCKS_ATYP_DOMAIN);
	CHECK(s->port != 0);
	CHECK(memchr(s->host, '\0', sizeof(s->host)) != NULL);
	n = strlen(s->host);
	CHECK(n >= 1 && n <= SOCKS_HOST_MAX);
	for (i = 0; i < n; i++)
		CHECK((uint8_t)s->host[i] >= 0x20 && s->host[i] != 0x7f);
	CHECK(s->error[0] == '\0');

	res = socks_parse(s, (const uint8_t *)"x", 1, &used, reply,
	    &replylen);
	CHECK(res == SOCKS_DONE && used == 0 && replylen == 0);

	n = socks_reply_ok(s, reply);
	CHECK(n == (s->version == 5 ? 10u : 8u));
	CHECK(reply[1] == (s->version == 5 ? SOCKS5_OK : SOCKS4_OK));
	for (i = 0; i <= 9; i++) {
		n = socks_reply_fail(s, (int)i, reply);
		CHECK(n >= 8 && n <= SOCKS_REPLY_MAX);
		CHECK(reply[1] != SOCKS5_OK && reply[1] != SOCKS4_OK);
	}
}

/* A failed handshake says why, answers a failure and stays failed. */
static void
fuzz_check_error(struct socks *s, const uint8_t *reply, size_t replylen)
{
	uint8_t			 again[SOCKS_REPLY_MAX];
	size_t			 used, againlen;
	enum socks_result	 res;

	CHECK(memchr(s->error, '\0', sizeof(s->error)) != NULL);
	CHECK(s->error[0] != '\0');
	if (s->version == 0)
		CHECK(replylen == 0);
	if (replylen > 0 && s->version == 5) {
		CHECK(reply[0] == 5);
		CHECK(reply[1] != SOCKS5_OK);
		CHECK(replylen == 2 || replylen == 10);
	}
	if (replylen > 0 && s->version == 4) {
		CHECK(reply[0] == 0 && reply[1] == SOCKS4_FAILED);
		CHECK(replylen == 8);
	}
	res = socks_parse(s, (const uint8_t *)"\5\1\0", 3, &used, again,
	    &againlen);
	CHECK(res == SOCKS_ERROR && used == 0 && againlen == 0);
}

/*
 * Feed in[0..len) in reads chosen by seed (0: all at once), the daemon's
 * way, checking the contract on every call.
 */
static void
fuzz_feed(const uint8_t *in, size_t len, uint8_t seed, struct fuzz_run *r)
{
	static uint8_t		 acc[FUZZ_IN_MAX];
	uint8_t			 reply[SOCKS_REPLY_MAX + 8];
	size_t			 accn = 0, off = 0, c, used, replylen, maxc;
	uint32_t		 x;
	enum socks_result	 res;

	x = 0x9e3779b9u ^ ((uint32_t)seed * 2654435761u);
	memset(r, 0, sizeof(*r));
	r->res = SOCKS_NEED_MORE;
	socks_init(&r->s);
	maxc = seed < 128 ? (size_t)(seed % 8) + 1 : (size_t)(seed % 96) + 1;
	while (off < len) {
		c = seed == 0 ? len - off : 1 + fuzz_rand(&x) % maxc;
		if (c > len - off)
			c = len - off;
		memcpy(acc + accn, in + off, c);
		accn += c;
		off += c;
		for (;;) {
			memset(reply, CANARY, sizeof(reply));
			res = socks_parse(&r->s, acc, accn, &used, reply,
			    &replylen);
			CHECK(res == SOCKS_ERROR || res == SOCKS_NEED_MORE ||
			    res == SOCKS_REPLY || res == SOCKS_DONE);
			CHECK(used <= accn);
			CHECK(replylen <= SOCKS_REPLY_MAX);
			CHECK(reply[SOCKS_REPLY_MAX] == CANARY);
			CHECK(r->outlen + replylen <= sizeof(r->out));
			memcpy(r->out + r->outlen, reply, replylen);
			r->outlen += replylen;
			r->consumed += used;
			memmove(acc, acc + used, accn - used);
			accn -= used;
			switch (res) {
			case SOCKS_NEED_MORE:
				CHECK(used == 0 && replylen == 0);
				CHECK(accn < SOCKS_MSG_MAX);
				break;
			case SOCKS_REPLY:
				CHECK(used > 0 && replylen == 2);
				CHECK(r->s.version == 5);
				CHECK(reply[0] == 5 && reply[1] == 0);
				continue;
			case SOCKS_DONE:
				CHECK(used > 0 && replylen == 0);
				fuzz_check_done(&r->s);
				r->res = res;
				return;
			case SOCKS_ERROR:
				fuzz_check_error(&r->s, reply, replylen);
				r->res = res;
				return;
			}
			break;
		}
	}
}

/* The failure mapping never says success, whatever the far side wrote. */
static void
fuzz_map(const uint8_t *data, size_t size)
{
	char	text[512];
	size_t	n;
	int	rep;

	n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	memcpy(text, data, n);
	text[n] = '\0';
	rep = socks_map_ssh_error(text);
	CHECK(rep >= SOCKS5_FAILURE && rep <= SOCKS5_ATYP_UNSUPP);
	rep = socks_map_open_failure(size > 0 ? data[0] % 6 - 1 : 2, text);
	CHECK(rep >= SOCKS5_FAILURE && rep <= SOCKS5_ATYP_UNSUPP);
	CHECK(socks_rep_text(rep) != NULL);
	rep = socks_map_errno(size > 1 ? data[1] : 0);
	CHECK(rep >= SOCKS5_FAILURE && rep <= SOCKS5_ATYP_UNSUPP);
}

/* One input: the read pattern, then the bytes a client sends. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_run	whole, cut;

	if (size < 1 || size > FUZZ_IN_MAX)
		return (0);
	fuzz_feed(data + 1, size - 1, 0, &whole);
	fuzz_feed(data + 1, size - 1, data[0], &cut);

	CHECK(whole.res == cut.res);
	CHECK(whole.outlen == cut.outlen);
	CHECK(memcmp(whole.out, cut.out, whole.outlen) == 0);
	CHECK(strcmp(whole.s.error, cut.s.error) == 0);
	if (whole.res == SOCKS_DONE) {
		CHECK(whole.consumed == cut.consumed);
		CHECK(whole.s.port == cut.s.port);
		CHECK(whole.s.atyp == cut.s.atyp);
		CHECK(strcmp(whole.s.host, cut.s.host) == 0);
	}
	fuzz_map(data, size);
	return (0);
}
