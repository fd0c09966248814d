/*
 * fuzz_ctl.c: libFuzzer harness for the control protocol of
 * daemon/ctl-proto.c: the request parser, the request builder and the
 * reply-line helpers, as tunneld and tunctl use them.
 *
 * The input is what a client sends: it is cut into lines at LF the way
 * control.c does (a line of CTL_LINE_MAX bytes or more ends the
 * connection, one with a NUL is refused before the parser sees it), and
 * each line goes through ctlp_parse(). A refused line must come with a
 * message of printable ASCII; an accepted one must obey its verb's table
 * entry, and ctlp_format() of it must give the predicted line, which
 * parses back to the same request. The same lines then serve as words of
 * a request built with ctlp_format(), which must parse back to the same
 * words (or be refused for the first bad name, with ctlp_check_name()'s
 * message) and, given a buffer too small, fail without writing past it;
 * and as reply lines: escaped body lines read back as themselves, a final
 * line gives back its code and message, and ctlp_quote() stays printable
 * and in bounds whatever the buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-proto.h"
#include "tunneld.h"

#define FUZZ_IN_MAX	(4 * CTL_LINE_MAX)
#define FUZZ_ERR_MAX	512		/* control.c's err[] */

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "fuzz_ctl: %s:%d: invariant failed: %s\n", \
		    __FILE__, __LINE__, #x);				\
		abort();						\
	}								\
} while (0)

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static char	*fuzz_dup(const uint8_t *, size_t);
static void	 fuzz_printable(const char *);
static size_t	 fuzz_digits(int);
static size_t	 fuzz_predict(const struct ctl_request *, int *);
static void	 fuzz_same(const struct ctl_request *,
		    const struct ctl_request *);
static void	 fuzz_accepted(const struct ctl_request *, const char *,
		    size_t);
static void	 fuzz_request(const char *, size_t);
static void	 fuzz_build(char **, int, const uint8_t *, size_t);
static void	 fuzz_reply(const char *, size_t, unsigned int);

/* A heap copy of a line, NUL-terminated, exactly sized for ASan. */
static char *
fuzz_dup(const uint8_t *p, size_t len)
{
	char	*s;

	if ((s = malloc(len + 1)) == NULL)
		abort();
	memcpy(s, p, len);
	s[len] = '\0';
	return (s);
}

/* A message for a peer or the log: printable ASCII only. */
static void
fuzz_printable(const char *s)
{
	for (; *s != '\0'; s++)
		CHECK((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
}

/* The number of decimal digits of v >= 0. */
static size_t
fuzz_digits(int v)
{
	size_t	n = 1;

	for (; v >= 10; v /= 10)
		n++;
	return (n);
}

/*
 * The length of the line ctlp_format() builds for req, newline included,
 * by the rules docs/control-protocol.md gives; *bad is set when a word
 * holds a byte no request may carry.
 */
static size_t
fuzz_predict(const struct ctl_request *req, int *bad)
{
	const unsigned char	*p;
	size_t			 n;
	int			 i, dashdash = 0, quote;

	*bad = 0;
	n = strlen(CTL_PROTO_WORD) + 1 + strlen(ctl_verbs[req->verb].name);
	if (req->json)
		n += strlen(" --json");
	if (req->all)
		n += strlen(" --all");
	if (req->follow)
		n += strlen(" --follow");
	if (req->timeout >= 0)
		n += strlen(" --timeout=") + fuzz_digits(req->timeout);
	for (i = 0; i < req->argc; i++) {
		p = (const unsigned char *)req->argv[i];
		if (p[0] == '-')
			dashdash = 1;
		quote = p[0] == '\0' ||
		    strpbrk(req->argv[i], " \t\"'\\") != NULL;
		n += 1 + (quote ? 2 : 0);
		for (; *p != '\0'; p++) {
			if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
				*bad = 1;
			n += (quote && (*p == '"' || *p == '\\')) ? 2 : 1;
		}
	}
	if (dashdash)
		n += strlen(" --");
	return (n + 1);
}

/* Two requests mean the same. */
static void
fuzz_same(const struct ctl_request *a, const struct ctl_request *b)
{
	int	i;

	CHECK(a->verb == b->verb);
	CHECK(a->json == b->json);
	CHECK(a->all == b->all);
	CHECK(a->follow == b->follow);
	CHECK(a->timeout == b->timeout);
	CHECK(a->argc == b->argc);
	for (i = 0; i < a->argc; i++)
		CHECK(strcmp(a->argv[i], b->argv[i]) == 0);
}

/*
 * A request the parser accepted: what its verb allows, names that are
 * names, inside its own buffer; built again and parsed again, the same.
 */
static void
fuzz_accepted(const struct ctl_request *req, const char *line, size_t len)
{
	const struct ctl_verb	*v;
	struct ctl_request	*again;
	char			*buf, err[FUZZ_ERR_MAX];
	size_t			 want;
	int			 i, n, bad;

	CHECK(req->verb >= 0 && req->verb < CTL_NVERBS);
	v = &ctl_verbs[req->verb];
	CHECK(len <= CTL_LINE_MAX);	/* LF or CR LF cut off: + 1 */
	line += strspn(line, " \t");
	CHECK(strncmp(line, CTL_PROTO_WORD, strlen(CTL_PROTO_WORD)) == 0 ||
	    *line == '"' || *line == '\'');
	CHECK(req->json == 0 || req->json == 1);
	CHECK(req->all == 0 || req->all == 1);
	CHECK(!req->json || (v->flags & CTL_F_JSON));
	CHECK(!req->all || (v->flags & CTL_F_ALL));
	CHECK(req->follow == 0 || req->follow == 1);
	CHECK(!req->follow || (v->flags & CTL_F_FOLLOW));
	CHECK(req->timeout == -1 || (v->flags & CTL_F_TIMEOUT));
	CHECK(req->timeout >= -1 && req->timeout <= CTL_WAIT_MAX);
	CHECK(req->argc >= v->min_args && req->argc <= v->max_args);
	CHECK(req->argc <= CTL_ARGS_MAX);
	CHECK(!req->all || req->argc == 0);
	CHECK(!(v->flags & CTL_F_ALL) || req->all || req->argc > 0);
	for (i = 0; i < req->argc; i++) {
		CHECK(req->argv[i] >= req->buf &&
		    req->argv[i] < req->buf + sizeof(req->buf));
		CHECK(memchr(req->argv[i], '\0', req->buf +
		    sizeof(req->buf) - req->argv[i]) != NULL);
		CHECK(valid_name(req->argv[i]));
		CHECK(ctlp_check_name(req->argv[i], err, sizeof(err)) == 0);
	}

	/* Built again, as control.c does for its log (what[]). */
	want = fuzz_predict(req, &bad);
	CHECK(!bad);
	if ((buf = malloc(CTL_LINE_MAX + 1)) == NULL)
		abort();
	n = ctlp_format(req, buf, CTL_LINE_MAX + 1);
	if (want > CTL_LINE_MAX) {
		/* "--" and canonical options may outgrow the line read. */
		CHECK(n == -1);
		free(buf);
		return;
	}
	CHECK(n >= 0 && (size_t)n == want);
	CHECK(strlen(buf) == want && buf[want - 1] == '\n');
	CHECK(strchr(buf, '"') == NULL && strchr(buf, '\'') == NULL);

	if ((again = malloc(sizeof(*again))) == NULL)
		abort();
	err[0] = '\0';
	if (ctlp_parse(buf, again, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_ctl: built \"%s\" refused: %s\n", buf,
		    err);
		abort();
	}
	fuzz_same(req, again);
	free(again);
	free(buf);
}

/* One request line as control.c hands it to ctlp_parse(). */
static void
fuzz_request(const char *line, size_t len)
{
	struct ctl_request	*req;
	char			 err[FUZZ_ERR_MAX];

	if ((req = malloc(sizeof(*req))) == NULL)
		abort();
	memset(err, 0, sizeof(err));
	if (ctlp_parse(line, req, err, sizeof(err)) == 0) {
		CHECK(err[0] == '\0');
		fuzz_accepted(req, line, len);
	} else {
		CHECK(err[0] != '\0');
		CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		fuzz_printable(err);
	}
	free(req);
}

/*
 * A request built from arbitrary words, as allowed as its verb takes
 * them; sel picks the verb and options.
 */
static void
fuzz_build(char **words, int nwords, const uint8_t *sel, size_t nsel)
{
	struct ctl_request	*req, *back;
	const struct ctl_verb	*v;
	char			*buf, err[FUZZ_ERR_MAX], want[FUZZ_ERR_MAX];
	size_t			 len, small;
	int			 i, n, bad, firstbad = -1, r;

	if ((req = calloc(1, sizeof(*req))) == NULL ||
	    (back = malloc(sizeof(*back))) == NULL)
		abort();
	req->verb = nsel > 0 ? sel[0] % CTL_NVERBS : CTL_STATUS;
	v = &ctl_verbs[req->verb];
	req->argc = nwords < v->max_args ? nwords : v->max_args;
	for (i = 0; i < req->argc; i++)
		req->argv[i] = words[i];
	req->timeout = -1;
	if (nsel > 1) {
		req->json = (v->flags & CTL_F_JSON) && (sel[1] & 1);
		if ((v->flags & CTL_F_TIMEOUT) && (sel[1] & 2))
			req->timeout = (int)(((unsigned int)sel[1] << 10 |
			    (nsel > 2 ? sel[2] : 0)) % (CTL_WAIT_MAX + 1));
	}
	req->all = (v->flags & CTL_F_ALL) && req->argc == 0;
	if (req->argc < v->min_args)
		goto out;

	len = fuzz_predict(req, &bad);
	if ((buf = malloc(CTL_LINE_MAX + 1)) == NULL)
		abort();
	n = ctlp_format(req, buf, CTL_LINE_MAX + 1);
	if (bad || len > CTL_LINE_MAX) {
		CHECK(n == -1);
		free(buf);
		goto out;
	}
	CHECK(n >= 0 && (size_t)n == len && strlen(buf) == len);
	free(buf);

	/* A buffer one byte short, or shorter: refused, nothing past it. */
	small = nsel > 3 ? len * sel[3] / 255 : len;
	if ((buf = malloc(small > 0 ? small : 1)) == NULL)
		abort();
	CHECK(ctlp_format(req, buf, small) == -1);
	free(buf);
	if ((buf = malloc(CTL_LINE_MAX + 1)) == NULL)
		abort();
	CHECK(ctlp_format(req, buf, CTL_LINE_MAX + 1) == n);

	for (i = 0; i < req->argc && firstbad == -1; i++) {
		if (!valid_name(req->argv[i]))
			firstbad = i;
	}
	err[0] = '\0';
	r = ctlp_parse(buf, back, err, sizeof(err));
	if (firstbad == -1) {
		if (r != 0) {
			fprintf(stderr, "fuzz_ctl: built \"%s\" refused: %s\n",
			    buf, err);
			abort();
		}
		fuzz_same(req, back);
	} else {
		/* The first bad name, exactly as it was given. */
		CHECK(r == -1);
		CHECK(ctlp_check_name(req->argv[firstbad], want,
		    sizeof(want)) == -1);
		if (strcmp(err, want) != 0) {
			fprintf(stderr, "fuzz_ctl: built \"%s\": got \"%s\", "
			    "want \"%s\"\n", buf, err, want);
			abort();
		}
	}
	free(buf);
out:
	free(back);
	free(req);
}

/* A line as a body line, as a final line's message, and quoted. */
static void
fuzz_reply(const char *line, size_t len, unsigned int code)
{
	const char	*prefix, *msg;
	char		*wire, *clean, q[128];
	size_t		 i, qlen;
	int		 r, got;

	/* Body lines: control_line() escapes, tunctl reads back. */
	if ((clean = malloc(len + 1)) == NULL)
		abort();
	for (i = 0; i < len; i++)
		clean[i] = ((unsigned char)line[i] < 0x20 ||
		    line[i] == 0x7f) ? ' ' : line[i];
	clean[len] = '\0';
	prefix = ctlp_escape_prefix(clean);
	if ((wire = malloc(strlen(prefix) + len + 1)) == NULL)
		abort();
	memcpy(wire, prefix, strlen(prefix));
	memcpy(wire + strlen(prefix), clean, len + 1);
	CHECK(ctlp_parse_end(wire, &got, &msg) == 0);
	CHECK(strcmp(ctlp_unescape(wire), clean) == 0);
	free(wire);

	/* The final line: control_end()'s form gives back code and text. */
	if ((wire = malloc(len + 16)) == NULL)
		abort();
	snprintf(wire, len + 16, "%s %u", CTL_END, code % 256);
	got = -1;
	CHECK(ctlp_parse_end(wire, &got, &msg) == 1);
	CHECK(got == (int)(code % 256) && *msg == '\0');
	snprintf(wire, len + 16, "%s %u %s", CTL_END, code % 256, clean);
	got = -1;
	CHECK(ctlp_parse_end(wire, &got, &msg) == 1);
	CHECK(got == (int)(code % 256) && strcmp(msg, clean) == 0);
	free(wire);
	free(clean);

	/* Whatever a peer sends back: classified, the message inside it. */
	msg = NULL;
	got = -1;
	r = ctlp_parse_end(line, &got, &msg);
	CHECK(r >= -1 && r <= 2);
	if (r == 1) {
		CHECK(got >= 0 && got <= 255);
		CHECK(*msg == '\0' || (msg > line && msg < line + len));
	}
	if (r != 0)
		CHECK(line[0] == '%' && line[1] != '%');

	/* ctlp_quote() in every buffer size up to one that holds it all. */
	for (qlen = 0; qlen <= sizeof(q); qlen += 1 + qlen / 4) {
		memset(q, 'Z', sizeof(q));
		ctlp_quote(line, q, qlen);
		if (qlen == 0)
			continue;
		CHECK(memchr(q, '\0', qlen) != NULL);
		fuzz_printable(q);
		CHECK(qlen < 3 || (q[0] == '"' && q[strlen(q) - 1] == '"'));
	}
}

/* One input: what a client sends on one connection. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*lines[CTL_ARGS_MAX + 1], *line;
	const uint8_t	*p, *eol;
	size_t		 len;
	int		 nlines = 0, i, closed = 0;

	if (size > FUZZ_IN_MAX)
		return (0);
	for (p = data; p < data + size; p = eol + 1) {
		eol = memchr(p, '\n', data + size - p);
		if (eol == NULL)
			eol = data + size;	/* the last line, at EOF */
		len = (size_t)(eol - p);
		if (memchr(p, '\0', len) != NULL || closed ||
		    nlines == CTL_ARGS_MAX + 1)
			continue;
		if (len >= CTL_LINE_MAX) {
			/* control.c closes here; the parser refuses too. */
			closed = 1;
			line = fuzz_dup(p, len);
			fuzz_request(line, len);
			free(line);
			continue;
		}
		lines[nlines] = fuzz_dup(p, len);
		fuzz_request(lines[nlines], len);
		fuzz_reply(lines[nlines], len, (unsigned int)size);
		nlines++;
	}
	if (nlines > 0)
		fuzz_build(lines + 1, nlines - 1, (const uint8_t *)lines[0],
		    strlen(lines[0]));
	for (i = 0; i < nlines; i++)
		free(lines[i]);
	return (0);
}
