/*
 * ctl-proto.c: the control protocol's pure functions, compiled into both
 * tunneld and tunctl: the verb table, the request parser and builder, and
 * the body-line escaping. Nothing here allocates; a request is parsed into
 * a fixed-size struct ctl_request from a line of at most CTL_LINE_MAX bytes.
 *
 * A word of a request is bare (up to the next space or tab) or quoted, so
 * that every argument travels as one word whatever it holds: "a b" with
 * \" and \\ inside, or 'a b' taken as it is. A quoted word is always a
 * name, never an option, so "--all" in quotes cannot become the flag.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-proto.h"
#include "tunneld.h"

#define QUOTE_MAX	40	/* bytes of a peer's word shown in messages */

static int	ctlp_fail(char *, size_t, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static int	ctlp_option(const char *, struct ctl_request *, char *, size_t);
static int	ctlp_timeout(const char *, int *);
static int	ctlp_check_args(struct ctl_request *, char *, size_t);
static int	ctlp_word(char *, char **, char **, int *, char *, size_t);
static int	ctlp_add_word(char *, size_t, size_t *, const char *);

/* Every verb, indexed by enum ctl_verb_id. */
const struct ctl_verb ctl_verbs[CTL_NVERBS] = {
	[CTL_STATUS] =	{ "status", 0, CTL_ARGS_MAX, CTL_F_JSON,
			  "[NAME...]" },
	[CTL_LINKS] =	{ "links", 0, 0, CTL_F_JSON, "" },
	[CTL_UP] =	{ "up", 0, CTL_ARGS_MAX, CTL_F_MUTATING | CTL_F_ALL,
			  "NAME... | --all" },
	[CTL_DOWN] =	{ "down", 0, CTL_ARGS_MAX, CTL_F_MUTATING | CTL_F_ALL,
			  "NAME... | --all" },
	[CTL_RESTART] =	{ "restart", 1, CTL_ARGS_MAX, CTL_F_MUTATING,
			  "NAME..." },
	[CTL_WAIT] =	{ "wait", 1, CTL_ARGS_MAX, CTL_F_TIMEOUT,
			  "NAME... [--timeout=S]" },
	[CTL_RELOAD] =	{ "reload", 0, 0, CTL_F_MUTATING, "" },
	[CTL_VERSION] =	{ "version", 0, 0, 0, "" },
	[CTL_EVENTS] =	{ "events", 0, 0, CTL_F_JSON | CTL_F_FOLLOW,
			  "[--follow]" },
	[CTL_METRICS] =	{ "metrics", 0, 0, 0, "" },
};

/* Write a message into err and return -1. */
static int
ctlp_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return (-1);
}

/* The index of a verb by name, or -1. */
int
ctlp_verb_find(const char *name)
{
	int i;

	for (i = 0; i < CTL_NVERBS; i++) {
		if (strcmp(ctl_verbs[i].name, name) == 0)
			return (i);
	}
	return (-1);
}

/* The names of every verb, comma separated, for messages. */
void
ctlp_verb_list(char *buf, size_t len)
{
	size_t	off = 0;
	int	i, n;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < CTL_NVERBS; i++) {
		n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
		    ctl_verbs[i].name);
		if (n < 0 || (size_t)n >= len - off)
			return;
		off += n;
	}
}

/*
 * A word from a peer in double quotes, safe to print on one line: bytes
 * outside printable ASCII become \xNN, quotes and backslashes are escaped,
 * and a long word is cut with "...".
 */
void
ctlp_quote(const char *word, char *buf, size_t len)
{
	const unsigned char	*p = (const unsigned char *)word;
	size_t			 off = 0, shown = 0;
	char			 tmp[8];
	int			 n;

	if (len < 3) {
		if (len > 0)
			buf[0] = '\0';
		return;
	}
	buf[off++] = '"';
	for (; *p != '\0'; p++) {
		if (shown >= QUOTE_MAX) {
			strlcpy_(tmp, "...", sizeof(tmp));
			p += strlen((const char *)p) - 1;
		} else if (*p < 0x20 || *p >= 0x7f)
			snprintf(tmp, sizeof(tmp), "\\x%02x", *p);
		else if (*p == '"' || *p == '\\')
			snprintf(tmp, sizeof(tmp), "\\%c", *p);
		else
			snprintf(tmp, sizeof(tmp), "%c", *p);
		n = strlen(tmp);
		if (off + n + 2 > len)
			break;
		memcpy(buf + off, tmp, n);
		off += n;
		shown++;
	}
	buf[off++] = '"';
	buf[off] = '\0';
}

/* Parse the value of --timeout: whole seconds, 0 to CTL_WAIT_MAX. */
static int
ctlp_timeout(const char *s, int *out)
{
	long	v = 0;

	if (*s == '\0' || strlen(s) > 6)
		return (-1);
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return (-1);
		v = v * 10 + (*s - '0');
	}
	if (v > CTL_WAIT_MAX)
		return (-1);
	*out = (int)v;
	return (0);
}

/* Apply one option word ("--json", ...) to a request. */
static int
ctlp_option(const char *word, struct ctl_request *req, char *err,
    size_t errlen)
{
	const struct ctl_verb	*v = &ctl_verbs[req->verb];
	char			 q[QUOTE_MAX * 4 + 8];
	int			 flag;

	if (strcmp(word, "--json") == 0)
		flag = CTL_F_JSON;
	else if (strcmp(word, "--all") == 0)
		flag = CTL_F_ALL;
	else if (strcmp(word, "--follow") == 0)
		flag = CTL_F_FOLLOW;
	else if (strcmp(word, "--timeout") == 0)
		return (ctlp_fail(err, errlen, "\"--timeout\" needs a value: "
		    "--timeout=SECONDS"));
	else if (strncmp(word, "--timeout=", 10) == 0)
		flag = CTL_F_TIMEOUT;
	else {
		ctlp_quote(word, q, sizeof(q));
		return (ctlp_fail(err, errlen, "unknown option %s for \"%s\" "
		    "(usage: %s %s)", q, v->name, v->name, v->usage));
	}
	if ((v->flags & flag) == 0) {
		ctlp_quote(flag == CTL_F_TIMEOUT ? "--timeout" : word, q,
		    sizeof(q));
		return (ctlp_fail(err, errlen, "\"%s\" does not accept %s",
		    v->name, q));
	}
	switch (flag) {
	case CTL_F_JSON:
		req->json = 1;
		break;
	case CTL_F_ALL:
		req->all = 1;
		break;
	case CTL_F_FOLLOW:
		req->follow = 1;
		break;
	case CTL_F_TIMEOUT:
		if (ctlp_timeout(word + 10, &req->timeout) == -1) {
			ctlp_quote(word + 10, q, sizeof(q));
			return (ctlp_fail(err, errlen, "bad timeout %s: "
			    "expected whole seconds from 0 to %d", q,
			    CTL_WAIT_MAX));
		}
		break;
	}
	return (0);
}

/*
 * Check a tunnel name against the name syntax. Returns 0, or -1 with a
 * message in err: tunctl refuses such a name before sending it, the daemon
 * answers it with CTL_EXIT_USAGE.
 */
int
ctlp_check_name(const char *name, char *err, size_t errlen)
{
	char	q[QUOTE_MAX * 4 + 8];

	if (valid_name(name))
		return (0);
	ctlp_quote(name, q, sizeof(q));
	return (ctlp_fail(err, errlen, "bad tunnel name %s: a name is 1 to %d "
	    "of A-Z a-z 0-9 _ . -", q, NAME_MAXLEN));
}

/* Check the names of a request and their number against its verb. */
static int
ctlp_check_args(struct ctl_request *req, char *err, size_t errlen)
{
	const struct ctl_verb	*v = &ctl_verbs[req->verb];
	int			 i;

	for (i = 0; i < req->argc; i++) {
		if (ctlp_check_name(req->argv[i], err, errlen) == -1)
			return (-1);
	}
	if (req->all && req->argc > 0)
		return (ctlp_fail(err, errlen, "\"%s\": give tunnel names or "
		    "--all, not both", v->name));
	if ((v->flags & CTL_F_ALL) && !req->all && req->argc == 0)
		return (ctlp_fail(err, errlen, "\"%s\" needs tunnel names or "
		    "--all (usage: %s %s)", v->name, v->name, v->usage));
	if (req->argc < v->min_args)
		return (ctlp_fail(err, errlen, "\"%s\" needs at least %d "
		    "tunnel name%s (usage: %s %s)", v->name, v->min_args,
		    v->min_args == 1 ? "" : "s", v->name, v->usage));
	if (req->argc > v->max_args) {
		if (v->max_args == 0)
			return (ctlp_fail(err, errlen, "\"%s\" takes no "
			    "arguments", v->name));
		return (ctlp_fail(err, errlen, "\"%s\" takes at most %d "
		    "arguments", v->name, v->max_args));
	}
	return (0);
}

/*
 * Cut the next word out of the line at *pp, in place (base is the start of
 * the line, for offsets in messages). A bare word runs to the next space or
 * tab. A word that starts with a double quote runs to the next unescaped
 * one, with \" for a quote and \\ for a backslash; one that starts with a
 * single quote runs to the next single quote, taken as it is. A closing
 * quote must end the word. Returns 1 with the word in *word (and *quoted
 * set when it was quoted), 0 at the end of the line, or -1 with a message.
 */
static int
ctlp_word(char *base, char **pp, char **word, int *quoted, char *err,
    size_t errlen)
{
	char	*r = *pp, *w, *start, q;

	while (*r == ' ' || *r == '\t')
		r++;
	if (*r == '\0') {
		*pp = r;
		return (0);
	}
	*word = w = r;
	*quoted = 0;
	if (*r != '"' && *r != '\'') {
		while (*r != '\0' && *r != ' ' && *r != '\t')
			r++;
		if (*r != '\0')
			*r++ = '\0';
		*pp = r;
		return (1);
	}

	/* Decoded in place: the word never grows, w stays behind r. */
	start = r;
	q = *r++;
	for (;;) {
		if (*r == '\0')
			return (ctlp_fail(err, errlen, "unterminated quote: the "
			    "%s at offset %zu has no closing one",
			    q == '"' ? "\"" : "'", (size_t)(start - base)));
		if (*r == q)
			break;
		if (q == '"' && *r == '\\') {
			r++;
			if (*r == '\0')
				continue;
			if (*r != '"' && *r != '\\')
				return (ctlp_fail(err, errlen, "bad escape at "
				    "offset %zu: in double quotes a backslash "
				    "goes only before \" or \\",
				    (size_t)(r - 1 - base)));
		}
		*w++ = *r++;
	}
	r++;
	if (*r != '\0' && *r != ' ' && *r != '\t')
		return (ctlp_fail(err, errlen, "a closing quote must end its "
		    "word (offset %zu)", (size_t)(r - 1 - base)));
	*w = '\0';
	*quoted = 1;
	*pp = r;
	return (1);
}

/*
 * Parse one request line (without its newline; a trailing "\r" or "\n" is
 * ignored) into req. Returns 0, or -1 with a message for the peer in err;
 * the caller answers that with CTL_EXIT_USAGE.
 */
int
ctlp_parse(const char *line, struct ctl_request *req, char *err,
    size_t errlen)
{
	char	 q[QUOTE_MAX * 4 + 8], verbs[128];
	char	*p, *word, *words[2];
	size_t	 len, i;
	int	 n, nwords = 0, options = 1, quoted;

	memset(req, 0, offsetof(struct ctl_request, argv));
	req->verb = -1;
	req->timeout = -1;
	req->buf[0] = '\0';

	len = strlen(line);
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len + 1 > CTL_LINE_MAX)
		return (ctlp_fail(err, errlen, "request line too long "
		    "(limit %d bytes)", CTL_LINE_MAX));
	for (i = 0; i < len; i++) {
		unsigned char c = line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return (ctlp_fail(err, errlen, "request contains a "
			    "control character (byte 0x%02x at offset %zu)",
			    c, i));
	}
	memcpy(req->buf, line, len);
	req->buf[len] = '\0';

	/* The version word and the verb. */
	p = req->buf;
	while (nwords < 2 && (n = ctlp_word(req->buf, &p, &word, &quoted,
	    err, errlen)) != 0) {
		if (n == -1)
			return (-1);
		words[nwords++] = word;
	}
	if (nwords == 0)
		return (ctlp_fail(err, errlen, "empty request (expected \"%s "
		    "VERB [ARG...]\")", CTL_PROTO_WORD));
	if (strcmp(words[0], CTL_PROTO_WORD) != 0) {
		ctlp_quote(words[0], q, sizeof(q));
		if (strncmp(words[0], CTL_PROTO_PREFIX,
		    strlen(CTL_PROTO_PREFIX)) == 0)
			return (ctlp_fail(err, errlen, "protocol %s not "
			    "supported (this daemon speaks %s)", q,
			    CTL_PROTO_WORD));
		return (ctlp_fail(err, errlen, "a request starts with the "
		    "protocol word \"%s\", not %s (try \"%s status\")",
		    CTL_PROTO_WORD, q, CTL_PROTO_WORD));
	}
	ctlp_verb_list(verbs, sizeof(verbs));
	if (nwords < 2)
		return (ctlp_fail(err, errlen, "missing verb after \"%s\" "
		    "(known: %s)", CTL_PROTO_WORD, verbs));
	if ((req->verb = ctlp_verb_find(words[1])) == -1) {
		ctlp_quote(words[1], q, sizeof(q));
		return (ctlp_fail(err, errlen, "unknown verb %s (known: %s)",
		    q, verbs));
	}

	/* Options (anywhere until "--", never quoted) and names. */
	while ((n = ctlp_word(req->buf, &p, &word, &quoted, err,
	    errlen)) != 0) {
		if (n == -1)
			return (-1);
		if (options && !quoted && strcmp(word, "--") == 0) {
			options = 0;
			continue;
		}
		if (options && !quoted && strncmp(word, "--", 2) == 0) {
			if (ctlp_option(word, req, err, errlen) == -1)
				return (-1);
			continue;
		}
		if (req->argc == CTL_ARGS_MAX)
			return (ctlp_fail(err, errlen, "too many arguments "
			    "(limit %d)", CTL_ARGS_MAX));
		req->argv[req->argc++] = word;
	}
	return (ctlp_check_args(req, err, errlen));
}

/*
 * Append " WORD" to buf at *off: bare when the parser reads it back as it
 * is, else in double quotes. Returns 0, or -1 when it does not fit or the
 * word holds a byte no request may carry.
 */
static int
ctlp_add_word(char *buf, size_t len, size_t *off, const char *word)
{
	const unsigned char	*p;
	int			 quote;

	quote = *word == '\0' || strpbrk(word, " \t\"'\\") != NULL;
	if (*off + 2 > len)
		return (-1);
	buf[(*off)++] = ' ';
	if (quote)
		buf[(*off)++] = '"';
	for (p = (const unsigned char *)word; *p != '\0'; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return (-1);
		if (*off + 3 > len)
			return (-1);
		if (quote && (*p == '"' || *p == '\\'))
			buf[(*off)++] = '\\';
		buf[(*off)++] = *p;
	}
	if (quote) {
		if (*off + 2 > len)
			return (-1);
		buf[(*off)++] = '"';
	}
	buf[*off] = '\0';
	return (0);
}

/*
 * Build the request line for req, newline included, into buf. Options come
 * first; "--" is put before the names when one of them starts with '-', and
 * a name that holds a space, a tab, a quote or a backslash, or is empty, is
 * put in double quotes, so each travels as one word. Returns the length, or
 * -1 when it does not fit in len or CTL_LINE_MAX, or a name holds a control
 * character other than a tab.
 */
int
ctlp_format(const struct ctl_request *req, char *buf, size_t len)
{
	size_t	off = 0;
	int	i, n, dashdash = 0;

#define CTLP_ADD(...) do {						\
	n = snprintf(buf + off, len - off, __VA_ARGS__);		\
	if (n < 0 || (size_t)n >= len - off)				\
		return (-1);						\
	off += n;							\
} while (0)

	if (len == 0 || req->verb < 0 || req->verb >= CTL_NVERBS)
		return (-1);
	CTLP_ADD("%s %s", CTL_PROTO_WORD, ctl_verbs[req->verb].name);
	if (req->json)
		CTLP_ADD(" --json");
	if (req->all)
		CTLP_ADD(" --all");
	if (req->follow)
		CTLP_ADD(" --follow");
	if (req->timeout >= 0)
		CTLP_ADD(" --timeout=%d", req->timeout);
	for (i = 0; i < req->argc; i++) {
		if (req->argv[i][0] == '-')
			dashdash = 1;
	}
	if (dashdash)
		CTLP_ADD(" --");
	for (i = 0; i < req->argc; i++) {
		if (ctlp_add_word(buf, len, &off, req->argv[i]) == -1)
			return (-1);
	}
	CTLP_ADD("\n");
#undef CTLP_ADD

	if (off > CTL_LINE_MAX)
		return (-1);
	return ((int)off);
}

/* The prefix a body line needs on the wire: "%" if it starts with '%'. */
const char *
ctlp_escape_prefix(const char *line)
{
	return (line[0] == '%' ? "%" : "");
}

/* A body line as received, without the '%' added by ctlp_escape_prefix. */
const char *
ctlp_unescape(const char *line)
{
	if (line[0] == '%' && line[1] == '%')
		return (line + 1);
	return (line);
}

/*
 * Classify a reply line (without its newline): 0 for a body line, 1 for the
 * final line "%end CODE[ MESSAGE]" (code and message are set; message is ""
 * when there is none), 2 for another '%' line (reserved: ignore it), -1 for
 * a final line that is malformed.
 */
int
ctlp_parse_end(const char *line, int *code, const char **msg)
{
	const char	*p;
	int		 v = 0;

	if (line[0] != '%' || line[1] == '%')
		return (0);
	if (strncmp(line, CTL_END, strlen(CTL_END)) != 0)
		return (2);
	p = line + strlen(CTL_END);
	if (*p != ' ' && *p != '\0')
		return (2);	/* "%endfoo": some future line */
	if (*p++ != ' ' || *p < '0' || *p > '9')
		return (-1);
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > 255)
			return (-1);
	}
	if (*p != '\0' && *p != ' ')
		return (-1);
	*code = v;
	*msg = *p == ' ' ? p + 1 : "";
	return (1);
}
