/*
 * test_socks.c: the SOCKS 4, 4a and 5 parser and replies of daemon/socks.c.
 *
 * A caller is simulated the way the daemon drives the parser: bytes arrive
 * in chunks, are appended to what is left over, and socks_parse() is called
 * until it wants more. Every request, valid or not, is fed whole, split at
 * every byte boundary, split in three for the short ones, and one byte at a
 * time; every way must end the same: same result, same reply bytes, same
 * request, same number of bytes consumed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "socks.h"

#define IN_MAX		1024
#define OUT_MAX		64

/* One request and what it must end in. */
struct tcase {
	const char	*name;
	uint8_t		 in[IN_MAX];
	size_t		 len;
	int		 res;		/* SOCKS_DONE or SOCKS_ERROR */
	uint8_t		 out[OUT_MAX];	/* every reply byte, in order */
	size_t		 outlen;
	size_t		 reqlen;	/* bytes consumed when DONE */
	int		 version;
	int		 atyp;
	const char	*host;
	uint16_t	 port;
};

/* How one run through the simulated caller ended. */
struct run {
	int		 res;
	uint8_t		 out[OUT_MAX];
	size_t		 outlen;
	size_t		 consumed;
	size_t		 delivered;	/* bytes handed over when it ended */
	size_t		 calls;
	struct socks	 s;
};

static size_t	 hex(const char *, uint8_t *);
static void	 tc_hex(struct tcase *, const char *);
static void	 tc_bytes(struct tcase *, const void *, size_t);
static void	 tc_fill(struct tcase *, int, size_t);
static void	 tc_out(struct tcase *, const char *);
static void	 feed(const uint8_t *, size_t, const size_t *, size_t,
		    struct run *);
static void	 feed_whole(const uint8_t *, size_t, struct run *);
static void	 run_equal(const struct run *, const struct run *,
		    const char *);
static void	 check_case(const struct tcase *);
static void	 check_splits(const struct tcase *);
static size_t	 build_valid(struct tcase *);
static size_t	 build_bad(struct tcase *);
static int	 setup_cases(void **);

static struct tcase valid[32];
static struct tcase bad[48];
static size_t nvalid, nbad;

/* Turn "05 01 00" into bytes; returns how many. */
static size_t
hex(const char *s, uint8_t *out)
{
	size_t	n = 0;
	int	hi = -1, v = 0;

	for (; *s != '\0'; s++) {
		if (*s == ' ' || *s == '|')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			fail_msg("bad hex character '%c'", *s);
		if (hi == -1)
			hi = v;
		else {
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	assert_int_equal(hi, -1);
	return (n);
}

/* Append hex bytes to a case's input. */
static void
tc_hex(struct tcase *t, const char *s)
{
	uint8_t	b[IN_MAX];
	size_t	n;

	n = hex(s, b);
	tc_bytes(t, b, n);
}

/* Append raw bytes to a case's input. */
static void
tc_bytes(struct tcase *t, const void *p, size_t n)
{
	assert_true(t->len + n <= IN_MAX);
	memcpy(t->in + t->len, p, n);
	t->len += n;
}

/* Append n copies of byte c to a case's input. */
static void
tc_fill(struct tcase *t, int c, size_t n)
{
	assert_true(t->len + n <= IN_MAX);
	memset(t->in + t->len, c, n);
	t->len += n;
}

/* Set the reply bytes a case must produce. */
static void
tc_out(struct tcase *t, const char *s)
{
	t->outlen = hex(s, t->out);
}

/*
 * Deliver in[0..len) in chunks of the given sizes (the last one takes the
 * rest) the way the daemon does, checking the contract on every call.
 */
static void
feed(const uint8_t *in, size_t len, const size_t *chunks, size_t nchunks,
    struct run *r)
{
	uint8_t			acc[IN_MAX], reply[SOCKS_REPLY_MAX + 8];
	size_t			accn = 0, off = 0, c, i, used, replylen;
	enum socks_result	res;

	memset(r, 0, sizeof(*r));
	socks_init(&r->s);
	r->res = SOCKS_NEED_MORE;
	for (i = 0; off < len; i++) {
		c = i < nchunks ? chunks[i] : len - off;
		if (c > len - off)
			c = len - off;
		memcpy(acc + accn, in + off, c);
		accn += c;
		off += c;
		r->delivered = off;
		for (;;) {
			memset(reply, 0xee, sizeof(reply));
			res = socks_parse(&r->s, acc, accn, &used, reply,
			    &replylen);
			r->calls++;
			assert_true(used <= accn);
			assert_true(replylen <= SOCKS_REPLY_MAX);
			/* Nothing written past the reply. */
			assert_int_equal(reply[SOCKS_REPLY_MAX], 0xee);
			assert_true(r->outlen + replylen <= OUT_MAX);
			memcpy(r->out + r->outlen, reply, replylen);
			r->outlen += replylen;
			r->consumed += used;
			memmove(acc, acc + used, accn - used);
			accn -= used;
			if (res == SOCKS_NEED_MORE) {
				assert_int_equal(used, 0);
				assert_int_equal(replylen, 0);
				assert_true(accn < SOCKS_MSG_MAX);
				break;
			}
			if (res == SOCKS_REPLY) {
				assert_true(used > 0);
				assert_true(replylen > 0);
				continue;
			}
			assert_true(res == SOCKS_DONE || res == SOCKS_ERROR);
			r->res = res;
			return;
		}
	}
}

/* Deliver everything at once. */
static void
feed_whole(const uint8_t *in, size_t len, struct run *r)
{
	size_t whole = len;

	feed(in, len, &whole, 1, r);
}

/* Two runs of one input must end alike, wherever it was cut. */
static void
run_equal(const struct run *a, const struct run *b, const char *what)
{
	if (a->res != b->res || a->outlen != b->outlen ||
	    memcmp(a->out, b->out, a->outlen) != 0 ||
	    a->consumed != b->consumed)
		fail_msg("%s: result %d/%d, %zu/%zu reply bytes, %zu/%zu "
		    "consumed", what, a->res, b->res, a->outlen, b->outlen,
		    a->consumed, b->consumed);
	assert_int_equal(a->s.version, b->s.version);
	assert_int_equal(a->s.port, b->s.port);
	assert_string_equal(a->s.host, b->s.host);
	assert_string_equal(a->s.error, b->s.error);
	if (a->res == SOCKS_DONE) {
		assert_int_equal(a->s.cmd, b->s.cmd);
		assert_int_equal(a->s.atyp, b->s.atyp);
		assert_memory_equal(a->s.addr, b->s.addr, sizeof(a->s.addr));
	}
}

/* A case fed whole ends as it says. */
static void
check_case(const struct tcase *t)
{
	struct run r;

	feed_whole(t->in, t->len, &r);
	if (r.res != t->res)
		fail_msg("%s: result %d, want %d (%s)", t->name, r.res, t->res,
		    r.s.error);
	if (r.outlen != t->outlen || memcmp(r.out, t->out, r.outlen) != 0) {
		size_t i;

		for (i = 0; i < r.outlen; i++)
			print_error("%02x ", r.out[i]);
		fail_msg("%s: wrong reply bytes (%zu, want %zu)", t->name,
		    r.outlen, t->outlen);
	}
	if (t->res == SOCKS_DONE) {
		assert_int_equal(r.consumed, t->reqlen);
		assert_int_equal(r.s.version, t->version);
		assert_int_equal(r.s.cmd, SOCKS_CMD_CONNECT);
		assert_int_equal(r.s.atyp, t->atyp);
		assert_string_equal(r.s.host, t->host);
		assert_int_equal(r.s.port, t->port);
		assert_string_equal(r.s.error, "");
	} else {
		assert_true(r.s.error[0] != '\0');
		assert_string_equal(r.s.host, "");
		assert_int_equal(r.s.port, 0);
	}
}

/*
 * A case cut at every byte boundary, in three for short ones, and one byte
 * at a time, ends as when fed whole; a valid request ends only with its
 * last byte.
 */
static void
check_splits(const struct tcase *t)
{
	struct run	whole, r;
	size_t		chunks[IN_MAX], i, j;
	char		what[128];

	feed_whole(t->in, t->len, &whole);
	for (i = 1; i < t->len; i++) {
		chunks[0] = i;
		feed(t->in, t->len, chunks, 1, &r);
		snprintf(what, sizeof(what), "%s cut at %zu", t->name, i);
		run_equal(&whole, &r, what);
		if (t->res == SOCKS_DONE && t->reqlen == t->len)
			assert_int_equal(r.delivered, t->len);
	}
	if (t->len <= 80)
		for (i = 1; i < t->len; i++)
			for (j = 1; i + j < t->len; j++) {
				chunks[0] = i;
				chunks[1] = j;
				feed(t->in, t->len, chunks, 2, &r);
				snprintf(what, sizeof(what), "%s cut at %zu "
				    "and %zu", t->name, i, i + j);
				run_equal(&whole, &r, what);
			}
	for (i = 0; i < t->len; i++)
		chunks[i] = 1;
	feed(t->in, t->len, chunks, t->len, &r);
	snprintf(what, sizeof(what), "%s byte by byte", t->name);
	run_equal(&whole, &r, what);
	if (t->res == SOCKS_DONE)
		assert_int_equal(r.delivered, t->reqlen);
}

/* Set up a valid case. */
#define VALID(nm, ver, at, hst, prt) do {				\
	t = &v[n++];							\
	memset(t, 0, sizeof(*t));					\
	t->name = (nm);							\
	t->res = SOCKS_DONE;						\
	t->version = (ver);						\
	t->atyp = (at);							\
	t->host = (hst);						\
	t->port = (prt);						\
} while (0)

/* The valid requests, each fed as a client would send it. */
static size_t
build_valid(struct tcase *v)
{
	static char	 long_name[SOCKS_HOST_MAX + 1];
	struct tcase	*t;
	size_t		 n = 0;

	memset(long_name, 'a', SOCKS_HOST_MAX);
	memcpy(long_name + SOCKS_HOST_MAX - 4, ".com", 4);
	long_name[SOCKS_HOST_MAX] = '\0';

	VALID("socks5 ipv4", 5, SOCKS_ATYP_IPV4, "127.0.0.1", 80);
	tc_hex(t, "05 01 00 | 05 01 00 01 7f000001 0050");
	tc_out(t, "05 00");

	VALID("socks5 ipv4 port 65535", 5, SOCKS_ATYP_IPV4, "10.1.2.3",
	    65535);
	tc_hex(t, "05 02 00 02 | 05 01 00 01 0a010203 ffff");
	tc_out(t, "05 00");

	VALID("socks5 ipv6 loopback", 5, SOCKS_ATYP_IPV6, "::1", 443);
	tc_hex(t, "05 03 02 01 00 | 05 01 00 04 "
	    "00000000000000000000000000000001 01bb");
	tc_out(t, "05 00");

	VALID("socks5 ipv6", 5, SOCKS_ATYP_IPV6, "2001:db8::5", 5432);
	tc_hex(t, "05 01 00 | 05 01 00 04 "
	    "20010db8000000000000000000000005 1538");
	tc_out(t, "05 00");

	VALID("socks5 ipv6 v4-mapped", 5, SOCKS_ATYP_IPV6,
	    "::ffff:192.0.2.1", 22);
	tc_hex(t, "05 01 00 | 05 01 00 04 "
	    "00000000000000000000ffffc0000201 0016");
	tc_out(t, "05 00");

	VALID("socks5 domain", 5, SOCKS_ATYP_DOMAIN, "example.com", 443);
	tc_hex(t, "05 01 00 | 05 01 00 03 0b");
	tc_bytes(t, "example.com", 11);
	tc_hex(t, "01bb");
	tc_out(t, "05 00");

	VALID("socks5 one-letter domain", 5, SOCKS_ATYP_DOMAIN, "x", 1);
	tc_hex(t, "05 01 00 | 05 01 00 03 01 78 0001");
	tc_out(t, "05 00");

	VALID("socks5 255-byte domain", 5, SOCKS_ATYP_DOMAIN, long_name,
	    8080);
	tc_hex(t, "05 01 00 | 05 01 00 03 ff");
	tc_bytes(t, long_name, SOCKS_HOST_MAX);
	tc_hex(t, "1f90");
	tc_out(t, "05 00");

	VALID("socks5 255 methods, none last", 5, SOCKS_ATYP_IPV4,
	    "192.0.2.7", 25);
	tc_hex(t, "05 ff");
	tc_fill(t, 0x80, 254);
	tc_hex(t, "00 | 05 01 00 01 c0000207 0019");
	tc_out(t, "05 00");

	VALID("socks4 ipv4", 4, SOCKS_ATYP_IPV4, "10.0.0.5", 22);
	tc_hex(t, "04 01 0016 0a000005 00");
	tc_out(t, "");

	VALID("socks4 with user id", 4, SOCKS_ATYP_IPV4, "127.0.0.1", 5432);
	tc_hex(t, "04 01 1538 7f000001");
	tc_bytes(t, "alice", 6);
	tc_out(t, "");

	VALID("socks4 255-byte user id", 4, SOCKS_ATYP_IPV4, "198.51.100.9",
	    443);
	tc_hex(t, "04 01 01bb c6336409");
	tc_fill(t, 'u', SOCKS_HOST_MAX);
	tc_hex(t, "00");
	tc_out(t, "");

	VALID("socks4 0.0.0.0 is not 4a", 4, SOCKS_ATYP_IPV4, "0.0.0.0", 80);
	tc_hex(t, "04 01 0050 00000000 00");
	tc_out(t, "");

	VALID("socks4 0.0.1.1 is not 4a", 4, SOCKS_ATYP_IPV4, "0.0.1.1", 80);
	tc_hex(t, "04 01 0050 00000101 00");
	tc_out(t, "");

	VALID("socks4a", 4, SOCKS_ATYP_DOMAIN, "example.org", 8080);
	tc_hex(t, "04 01 1f90 00000001");
	tc_bytes(t, "bob", 4);
	tc_bytes(t, "example.org", 12);
	tc_out(t, "");

	VALID("socks4a no user id", 4, SOCKS_ATYP_DOMAIN, "localhost", 22);
	tc_hex(t, "04 01 0016 000000ff 00");
	tc_bytes(t, "localhost", 10);
	tc_out(t, "");

	VALID("socks4a longest", 4, SOCKS_ATYP_DOMAIN, long_name, 443);
	tc_hex(t, "04 01 01bb 00000007");
	tc_fill(t, 'u', SOCKS_HOST_MAX);
	tc_hex(t, "00");
	tc_bytes(t, long_name, SOCKS_HOST_MAX + 1);
	tc_out(t, "");
	assert_int_equal(t->len, SOCKS_MSG_MAX);

	/* Everything is consumed: the SOCKS5 greeting and the request. */
	for (size_t i = 0; i < n; i++)
		v[i].reqlen = v[i].len;
	return (n);
}

/* Set up a malformed case. */
#define BAD(nm, outhex) do {						\
	t = &b[n++];							\
	memset(t, 0, sizeof(*t));					\
	t->name = (nm);							\
	t->res = SOCKS_ERROR;						\
	tc_out(t, (outhex));						\
} while (0)

#define OK5		"05 00 "
#define FAIL5(c)	"05 " c " 00 01 00000000 0000"
#define FAIL4		"00 5b 0000 00000000"

/* Malformed requests and the exact bytes they are answered with. */
static size_t
build_bad(struct tcase *b)
{
	struct tcase	*t;
	size_t		 n = 0;

	BAD("HTTP on the SOCKS port", "");
	tc_bytes(t, "GET / HTTP/1.1\r\n\r\n", 18);

	BAD("version 0", "");
	tc_hex(t, "00 01 00");

	BAD("TLS on the SOCKS port", "");
	tc_hex(t, "16 03 01 00 a5");

	BAD("socks5 no methods", "05 ff");
	tc_hex(t, "05 00 | 05 01 00 01 7f000001 0050");

	BAD("socks5 user/password only", "05 ff");
	tc_hex(t, "05 01 02");

	BAD("socks5 gssapi and user/password", "05 ff");
	tc_hex(t, "05 02 01 02 | 05 01 00 01 7f000001 0050");

	BAD("socks5 request version 4", OK5 FAIL5("01"));
	tc_hex(t, "05 01 00 | 04 01 00 01 7f000001 0050");

	BAD("socks5 greeting twice", OK5 FAIL5("07"));
	tc_hex(t, "05 01 00 | 05 02 00 02");

	BAD("socks5 BIND", OK5 FAIL5("07"));
	tc_hex(t, "05 01 00 | 05 02 00 01 7f000001 0050");

	BAD("socks5 UDP ASSOCIATE", OK5 FAIL5("07"));
	tc_hex(t, "05 01 00 | 05 03 00 01 00000000 0000");

	BAD("socks5 command 0", OK5 FAIL5("07"));
	tc_hex(t, "05 01 00 | 05 00 00 01 7f000001 0050");

	BAD("socks5 command 0xf0", OK5 FAIL5("07"));
	tc_hex(t, "05 01 00 | 05 f0 00 01 7f000001 0050");

	BAD("socks5 reserved byte", OK5 FAIL5("01"));
	tc_hex(t, "05 01 00 | 05 01 01 01 7f000001 0050");

	BAD("socks5 address type 0", OK5 FAIL5("08"));
	tc_hex(t, "05 01 00 | 05 01 00 00 7f000001 0050");

	BAD("socks5 address type 2", OK5 FAIL5("08"));
	tc_hex(t, "05 01 00 | 05 01 00 02 7f000001 0050");

	BAD("socks5 address type 5", OK5 FAIL5("08"));
	tc_hex(t, "05 01 00 | 05 01 00 05 7f000001 0050");

	BAD("socks5 address type 0xff", OK5 FAIL5("08"));
	tc_hex(t, "05 01 00 | 05 01 00 ff");

	BAD("socks5 empty domain", OK5 FAIL5("01"));
	tc_hex(t, "05 01 00 | 05 01 00 03 00 0050");

	BAD("socks5 domain with NUL", OK5 FAIL5("01"));
	tc_hex(t, "05 01 00 | 05 01 00 03 0c");
	tc_bytes(t, "evil\0.com.io", 12);
	tc_hex(t, "0050");

	BAD("socks5 domain with newline", OK5 FAIL5("01"));
	tc_hex(t, "05 01 00 | 05 01 00 03 08");
	tc_bytes(t, "a\nb.test", 8);
	tc_hex(t, "0050");

	BAD("socks5 domain with DEL", OK5 FAIL5("01"));
	tc_hex(t, "05 01 00 | 05 01 00 03 03 61 7f 62 0050");

	BAD("socks5 ipv4 port 0", OK5 FAIL5("02"));
	tc_hex(t, "05 01 00 | 05 01 00 01 7f000001 0000");

	BAD("socks5 ipv6 port 0", OK5 FAIL5("02"));
	tc_hex(t, "05 01 00 | 05 01 00 04 "
	    "00000000000000000000000000000001 0000");

	BAD("socks5 domain port 0", OK5 FAIL5("02"));
	tc_hex(t, "05 01 00 | 05 01 00 03 01 78 0000");

	BAD("socks4 BIND", FAIL4);
	tc_hex(t, "04 02 0050 7f000001 00");

	BAD("socks4 command 0", FAIL4);
	tc_hex(t, "04 00 0050 7f000001 00");

	BAD("socks4 command 3", FAIL4);
	tc_hex(t, "04 03 0050 7f000001 00");

	BAD("socks4 port 0", FAIL4);
	tc_hex(t, "04 01 0000 7f000001 00");

	BAD("socks4a port 0", FAIL4);
	tc_hex(t, "04 01 0000 00000001 00 78 00");

	BAD("socks4 user id of 256 bytes", FAIL4);
	tc_hex(t, "04 01 0050 7f000001");
	tc_fill(t, 'u', SOCKS_HOST_MAX + 1);
	tc_hex(t, "00");

	BAD("socks4 user id that never ends", FAIL4);
	tc_hex(t, "04 01 0050 7f000001");
	tc_fill(t, 'u', 600);

	BAD("socks4a host name of 256 bytes", FAIL4);
	tc_hex(t, "04 01 0050 00000001 00");
	tc_fill(t, 'h', SOCKS_HOST_MAX + 1);
	tc_hex(t, "00");

	BAD("socks4a host name after a long user id, never ending", FAIL4);
	tc_hex(t, "04 01 0050 00000001");
	tc_fill(t, 'u', SOCKS_HOST_MAX);
	tc_hex(t, "00");
	tc_fill(t, 'h', 400);

	BAD("socks4a empty host name", FAIL4);
	tc_hex(t, "04 01 0050 00000001 00 00");

	BAD("socks4a host name with a tab", FAIL4);
	tc_hex(t, "04 01 0050 00000001 00 61 09 62 00");

	return (n);
}

/* Build the tables of cases once. */
static int
setup_cases(void **state)
{
	(void)state;
	nvalid = build_valid(valid);
	assert_true(nvalid <= sizeof(valid) / sizeof(valid[0]));
	nbad = build_bad(bad);
	assert_true(nbad <= sizeof(bad) / sizeof(bad[0]));
	return (0);
}

/* Every valid request, fed whole, gives its request and replies. */
static void
test_valid_whole(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nvalid; i++)
		check_case(&valid[i]);
}

/* Every valid request ends the same wherever it is cut. */
static void
test_valid_splits(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nvalid; i++)
		check_splits(&valid[i]);
}

/* Every malformed request, fed whole, gets its exact reply (or none). */
static void
test_bad_whole(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nbad; i++)
		check_case(&bad[i]);
}

/* Every malformed request ends the same wherever it is cut. */
static void
test_bad_splits(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nbad; i++)
		check_splits(&bad[i]);
}

/*
 * Bytes the client sends right after its request (pipelined data) are its
 * first payload: they are never consumed, wherever the input is cut.
 */
static void
test_trailing_data(void **state)
{
	static const char	*payload = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct tcase		 t;
	size_t			 i, plen = strlen(payload);

	(void)state;
	for (i = 0; i < nvalid; i++) {
		if (valid[i].len + plen > IN_MAX)
			continue;
		t = valid[i];
		tc_bytes(&t, payload, plen);
		check_case(&t);
		check_splits(&t);
	}
	/* A SOCKS5 client that sends greeting and request in one go. */
	{
		struct run	r;

		feed_whole(valid[0].in, valid[0].len, &r);
		assert_int_equal(r.res, SOCKS_DONE);
		assert_int_equal(r.calls, 2);
	}
}

/* A truncated request waits, consuming nothing, until its last byte. */
static void
test_need_more(void **state)
{
	uint8_t			 buf[IN_MAX], reply[SOCKS_REPLY_MAX];
	struct socks		 s;
	size_t			 used, replylen, i;
	enum socks_result	 res;

	(void)state;
	socks_init(&s);
	res = socks_parse(&s, NULL, 0, &used, reply, &replylen);
	assert_int_equal(res, SOCKS_NEED_MORE);
	assert_int_equal(used, 0);
	assert_int_equal(replylen, 0);

	/* A user id of exactly 255 bytes and no NUL yet: wait. */
	i = hex("04 01 0050 7f000001", buf);
	memset(buf + i, 'u', SOCKS_HOST_MAX);
	i += SOCKS_HOST_MAX;
	socks_init(&s);
	res = socks_parse(&s, buf, i, &used, reply, &replylen);
	assert_int_equal(res, SOCKS_NEED_MORE);
	/* One more byte that is not the NUL: too long. */
	buf[i++] = 'u';
	res = socks_parse(&s, buf, i, &used, reply, &replylen);
	assert_int_equal(res, SOCKS_ERROR);
	assert_int_equal(replylen, 8);
	assert_int_equal(reply[1], SOCKS4_FAILED);

	/* More than SOCKS_MSG_MAX bytes of a valid message: still fine. */
	socks_init(&s);
	memset(buf, 0, sizeof(buf));
	i = hex("04 01 0050 7f000001 00", buf);
	res = socks_parse(&s, buf, sizeof(buf), &used, reply, &replylen);
	assert_int_equal(res, SOCKS_DONE);
	assert_int_equal(used, i);
}

/* After the end, the parser stays where it ended. */
static void
test_after_end(void **state)
{
	uint8_t			 buf[64], reply[SOCKS_REPLY_MAX];
	struct socks		 s;
	size_t			 used, replylen, n;
	enum socks_result	 res;

	(void)state;
	n = hex("04 01 0050 7f000001 00 ffff", buf);
	socks_init(&s);
	res = socks_parse(&s, buf, n, &used, reply, &replylen);
	assert_int_equal(res, SOCKS_DONE);
	assert_int_equal(used, 9);
	res = socks_parse(&s, buf + used, n - used, &used, reply, &replylen);
	assert_int_equal(res, SOCKS_DONE);
	assert_int_equal(used, 0);
	assert_int_equal(replylen, 0);
	assert_string_equal(s.host, "127.0.0.1");

	n = hex("05 01 02", buf);
	socks_init(&s);
	res = socks_parse(&s, buf, n, &used, reply, &replylen);
	assert_int_equal(res, SOCKS_ERROR);
	assert_int_equal(replylen, 2);
	n = hex("05 01 00", buf);
	res = socks_parse(&s, buf, n, &used, reply, &replylen);
	assert_int_equal(res, SOCKS_ERROR);
	assert_int_equal(replylen, 0);
	assert_int_equal(used, 0);
	assert_true(strstr(s.error, "no authentication") != NULL);
}

/* The error texts name what was wrong. */
static void
test_error_text(void **state)
{
	static const struct {
		const char	*in;
		const char	*error;
	} cases[] = {
		{ "47", "not a SOCKS request (version byte 0x47)" },
		{ "05 00", "SOCKS5 greeting offers no authentication method" },
		{ "05 02 01 02", "SOCKS5 client does not offer \"no "
		    "authentication\" (2 other methods)" },
		{ "05 01 00 05 02", "SOCKS5 BIND (0x02) not supported" },
		{ "05 01 00 05 03", "SOCKS5 UDP ASSOCIATE (0x03) not "
		    "supported" },
		{ "05 01 00 05 09", "SOCKS5 command (0x09) not supported" },
		{ "05 01 00 05 01 00 02", "SOCKS5 address type 0x02 not "
		    "supported" },
		{ "05 01 00 05 01 00 01 7f000001 0000",
		    "SOCKS5 CONNECT to port 0" },
		{ "04 02", "SOCKS4 BIND (0x02) not supported" },
	};
	uint8_t	buf[64];
	size_t	i, n;
	struct run r;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = hex(cases[i].in, buf);
		feed_whole(buf, n, &r);
		assert_int_equal(r.res, SOCKS_ERROR);
		assert_string_equal(r.s.error, cases[i].error);
	}
}

/* Success and failure replies, byte for byte. */
static void
test_replies(void **state)
{
	static const uint8_t	 v4[4] = { 10, 1, 2, 3 };
	static const uint8_t	 v6[16] = { 0x20, 0x01, 0x0d, 0xb8,
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9 };
	uint8_t			 reply[SOCKS_REPLY_MAX], want[32];
	struct socks		 s5, s4, s0;
	size_t			 n;
	int			 code;

	(void)state;
	socks_init(&s5);
	s5.version = 5;
	socks_init(&s4);
	s4.version = 4;
	socks_init(&s0);

	n = socks_reply_ok(&s5, reply);
	assert_int_equal(n, hex("05 00 00 01 00000000 0000", want));
	assert_memory_equal(reply, want, n);
	n = socks_reply_ok(&s4, reply);
	assert_int_equal(n, hex("00 5a 0000 00000000", want));
	assert_memory_equal(reply, want, n);
	assert_int_equal(socks_reply_ok(&s0, reply), 0);

	n = socks_reply_bound(&s5, SOCKS_ATYP_IPV4, v4, 4242, reply);
	assert_int_equal(n, hex("05 00 00 01 0a010203 1092", want));
	assert_memory_equal(reply, want, n);
	n = socks_reply_bound(&s5, SOCKS_ATYP_IPV6, v6, 1, reply);
	assert_int_equal(n, SOCKS_REPLY_MAX);
	assert_int_equal(n, hex("05 00 00 04 "
	    "20010db8000000000000000000000009 0001", want));
	assert_memory_equal(reply, want, n);
	n = socks_reply_bound(&s5, SOCKS_ATYP_DOMAIN, v4, 7, reply);
	assert_int_equal(n, hex("05 00 00 01 00000000 0007", want));
	assert_memory_equal(reply, want, n);
	n = socks_reply_bound(&s5, SOCKS_ATYP_IPV6, NULL, 7, reply);
	assert_int_equal(n, hex("05 00 00 01 00000000 0007", want));
	assert_memory_equal(reply, want, n);
	n = socks_reply_bound(&s4, SOCKS_ATYP_IPV4, v4, 4242, reply);
	assert_int_equal(n, hex("00 5a 1092 0a010203", want));
	assert_memory_equal(reply, want, n);
	n = socks_reply_bound(&s4, SOCKS_ATYP_IPV6, v6, 4242, reply);
	assert_int_equal(n, hex("00 5a 1092 00000000", want));
	assert_memory_equal(reply, want, n);

	for (code = 1; code <= 8; code++) {
		n = socks_reply_fail(&s5, code, reply);
		assert_int_equal(n, 10);
		assert_int_equal(reply[0], 5);
		assert_int_equal(reply[1], code);
		assert_int_equal(reply[3], SOCKS_ATYP_IPV4);
		n = socks_reply_fail(&s4, code, reply);
		assert_int_equal(n, hex(FAIL4, want));
		assert_memory_equal(reply, want, n);
		assert_int_equal(socks_reply_fail(&s0, code, reply), 0);
	}
	/* A failure is never told success. */
	n = socks_reply_fail(&s5, 0, reply);
	assert_int_equal(n, 10);
	assert_int_equal(reply[1], SOCKS5_FAILURE);
	n = socks_reply_fail(&s5, -3, reply);
	assert_int_equal(reply[1], SOCKS5_FAILURE);
	n = socks_reply_fail(&s5, 0x100, reply);
	assert_int_equal(reply[1], SOCKS5_FAILURE);
	n = socks_reply_fail(&s4, 0, reply);
	assert_int_equal(reply[1], SOCKS4_FAILED);
}

/* What the far side said, mapped to SOCKS5 codes. */
static void
test_map_open_failure(void **state)
{
	static const struct {
		int		 reason;
		const char	*text;
		int		 rep;
	} cases[] = {
		{ 1, "open failed", SOCKS5_NOT_ALLOWED },
		{ 1, "administratively prohibited", SOCKS5_NOT_ALLOWED },
		{ 1, "Connection refused", SOCKS5_NOT_ALLOWED },
		{ 1, NULL, SOCKS5_NOT_ALLOWED },
		{ 2, "Connection refused", SOCKS5_REFUSED },
		{ 2, "connection REFUSED by peer", SOCKS5_REFUSED },
		{ 2, "No route to host", SOCKS5_HOST_UNREACH },
		{ 2, "Host is unreachable", SOCKS5_HOST_UNREACH },
		{ 2, "Host is down", SOCKS5_HOST_UNREACH },
		{ 2, "Network is unreachable", SOCKS5_NET_UNREACH },
		{ 2, "Network unreachable", SOCKS5_NET_UNREACH },
		{ 2, "Network is down", SOCKS5_NET_UNREACH },
		{ 2, "Name or service not known", SOCKS5_HOST_UNREACH },
		{ 2, "Temporary failure in name resolution",
		    SOCKS5_HOST_UNREACH },
		{ 2, "No address associated with hostname",
		    SOCKS5_HOST_UNREACH },
		{ 2, "nodename nor servname provided, or not known",
		    SOCKS5_HOST_UNREACH },
		{ 2, "could not resolve host", SOCKS5_HOST_UNREACH },
		{ 2, "unknown host", SOCKS5_HOST_UNREACH },
		{ 2, "Connection timed out", SOCKS5_TTL_EXPIRED },
		{ 2, "connect timeout", SOCKS5_TTL_EXPIRED },
		{ 2, "Permission denied", SOCKS5_NOT_ALLOWED },
		{ 2, "Operation not permitted", SOCKS5_NOT_ALLOWED },
		{ 2, "open failed", SOCKS5_FAILURE },
		{ 2, "", SOCKS5_FAILURE },
		{ 2, NULL, SOCKS5_FAILURE },
		{ 3, "unknown channel type", SOCKS5_FAILURE },
		{ 3, "Connection refused", SOCKS5_FAILURE },
		{ 4, "resource shortage", SOCKS5_FAILURE },
		{ 4, "No route to host", SOCKS5_FAILURE },
		{ 0, "Connection refused", SOCKS5_REFUSED },
		{ 0, "administratively prohibited", SOCKS5_NOT_ALLOWED },
		{ 0, "Socket error: disconnected", SOCKS5_FAILURE },
		{ 99, "No route to host", SOCKS5_HOST_UNREACH },
		{ -1, "whatever", SOCKS5_FAILURE },
	};
	size_t	i;
	int	reason;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (socks_map_open_failure(cases[i].reason, cases[i].text) !=
		    cases[i].rep)
			fail_msg("reason %d \"%s\": %d, want %d",
			    cases[i].reason, cases[i].text ? cases[i].text :
			    "(null)", socks_map_open_failure(cases[i].reason,
			    cases[i].text), cases[i].rep);
	/* A refused open is never success. */
	for (reason = -2; reason < 8; reason++)
		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			assert_int_not_equal(socks_map_open_failure(reason,
			    cases[i].text), SOCKS5_OK);
}

/* libssh's error string carries the reason and sshd's description. */
static void
test_map_ssh_error(void **state)
{
	static const struct {
		const char	*err;
		int		 rep;
	} cases[] = {
		{ "Channel opening failure: channel 3 error (2) "
		    "Connection refused", SOCKS5_REFUSED },
		{ "Channel opening failure: channel 3 error (1) open failed",
		    SOCKS5_NOT_ALLOWED },
		{ "Channel opening failure: channel 0 error (2) open failed",
		    SOCKS5_FAILURE },
		{ "Channel opening failure: channel 12 error (2) No route to "
		    "host", SOCKS5_HOST_UNREACH },
		{ "Channel opening failure: channel 12 error (2) Name or "
		    "service not known", SOCKS5_HOST_UNREACH },
		{ "Channel opening failure: channel 1 error (4) Connection "
		    "refused", SOCKS5_FAILURE },
		{ "Channel opening failure: channel 1 error (3) unknown "
		    "channel type", SOCKS5_FAILURE },
		{ "Channel opening failure: channel 1 error (2)",
		    SOCKS5_FAILURE },
		{ "error (x) Connection refused", SOCKS5_REFUSED },
		{ "error (99999999999999999999) refused", SOCKS5_REFUSED },
		{ "Socket error: disconnected", SOCKS5_FAILURE },
		{ "", SOCKS5_FAILURE },
		{ NULL, SOCKS5_FAILURE },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (socks_map_ssh_error(cases[i].err) != cases[i].rep)
			fail_msg("\"%s\": %d, want %d", cases[i].err ?
			    cases[i].err : "(null)",
			    socks_map_ssh_error(cases[i].err), cases[i].rep);
}

/* Local connect errors (remote-dynamic), mapped to SOCKS5 codes. */
static void
test_map_errno(void **state)
{
	(void)state;
	assert_int_equal(socks_map_errno(ECONNREFUSED), SOCKS5_REFUSED);
	assert_int_equal(socks_map_errno(ENETUNREACH), SOCKS5_NET_UNREACH);
	assert_int_equal(socks_map_errno(ENETDOWN), SOCKS5_NET_UNREACH);
	assert_int_equal(socks_map_errno(EHOSTUNREACH), SOCKS5_HOST_UNREACH);
	assert_int_equal(socks_map_errno(EHOSTDOWN), SOCKS5_HOST_UNREACH);
	assert_int_equal(socks_map_errno(ETIMEDOUT), SOCKS5_TTL_EXPIRED);
	assert_int_equal(socks_map_errno(EACCES), SOCKS5_NOT_ALLOWED);
	assert_int_equal(socks_map_errno(EPERM), SOCKS5_NOT_ALLOWED);
	assert_int_equal(socks_map_errno(EAFNOSUPPORT), SOCKS5_ATYP_UNSUPP);
	assert_int_equal(socks_map_errno(EIO), SOCKS5_FAILURE);
	assert_int_equal(socks_map_errno(0), SOCKS5_FAILURE);
}

/* Every reply code has its RFC 1928 text. */
static void
test_rep_text(void **state)
{
	(void)state;
	assert_string_equal(socks_rep_text(0), "succeeded");
	assert_string_equal(socks_rep_text(1),
	    "general SOCKS server failure");
	assert_string_equal(socks_rep_text(2),
	    "connection not allowed by ruleset");
	assert_string_equal(socks_rep_text(3), "network unreachable");
	assert_string_equal(socks_rep_text(4), "host unreachable");
	assert_string_equal(socks_rep_text(5), "connection refused");
	assert_string_equal(socks_rep_text(6), "TTL expired");
	assert_string_equal(socks_rep_text(7), "command not supported");
	assert_string_equal(socks_rep_text(8), "address type not supported");
	assert_string_equal(socks_rep_text(9), "unknown SOCKS5 reply code");
	assert_string_equal(socks_rep_text(-1), "unknown SOCKS5 reply code");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_whole),
		cmocka_unit_test(test_valid_splits),
		cmocka_unit_test(test_bad_whole),
		cmocka_unit_test(test_bad_splits),
		cmocka_unit_test(test_trailing_data),
		cmocka_unit_test(test_need_more),
		cmocka_unit_test(test_after_end),
		cmocka_unit_test(test_error_text),
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_map_open_failure),
		cmocka_unit_test(test_map_ssh_error),
		cmocka_unit_test(test_map_errno),
		cmocka_unit_test(test_rep_text),
	};

	return (cmocka_run_group_tests(tests, setup_cases, NULL));
}
