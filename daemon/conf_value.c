/*
 * conf_value.c: the generic half of the tunnels.conf loader. It collects
 * the errors (sorted by line, each naming its file, line, block and
 * setting), reads the file into libconfig's tree, finds the integers
 * libconfig 1.5 would cut short, reads typed values with their range
 * checks, and makes, copies and frees host_conf values. conf.c knows the
 * blocks and which setting may appear where.
 */
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "tunneld.h"

#define CONF_MAX_SIZE		(16 * 1024 * 1024)
#define CONF_PATH_MAX		4096
#define DEFAULT_IDENTITY	"/etc/tunneld/id_ed25519"

/* One error line, kept to be sorted by line number. */
struct conf_msg {
	unsigned int	 line;
	int		 seq;
	char		*text;
};

/* An integer literal too large for libconfig 1.5, which cuts it silently. */
struct conf_big {
	unsigned int	 line;
	char		 key[NAME_MAXLEN + 1];
	char		 literal[32];
	int		 used;
};

/* Log levels, as tunnels.conf names them. */
static const struct conf_level {
	const char	*name;
	enum log_level	 level;
} conf_levels[] = {
	{ "error",	LOGL_ERROR },
	{ "warning",	LOGL_WARNING },
	{ "notice",	LOGL_NOTICE },
	{ "info",	LOGL_INFO },
	{ "debug",	LOGL_DEBUG },
};

/*
 * Cipher names as SSH spells them, in libssh's order of preference. Only
 * to list, in an error, those this libssh accepts: whether a name is known
 * is always asked of libssh itself.
 */
static const char *const conf_cipher_names[] = {
	"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
	"aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr",
	"aes256-cbc", "aes192-cbc", "aes128-cbc", "3des-cbc", "blowfish-cbc",
};

static void	 conf_vadd(struct conf_ctx *, const char *, unsigned int,
		    const char *, const char *, va_list)
		    __attribute__((format(printf, 5, 0)));
static void	 conf_errat(struct conf_ctx *, const char *, unsigned int,
		    const char *, ...) __attribute__((format(printf, 4, 5)));
static int	 conf_msg_cmp(const void *, const void *);
static char	*conf_read(const char *, char *, size_t);
static void	 conf_scan(struct conf_ctx *, const char *);
static void	 conf_scan_number(struct conf_ctx *, unsigned int,
		    const char *, const char *, size_t);
static const char *conf_big_take(struct conf_ctx *,
		    const config_setting_t *, const char *);
static int	 conf_cipher_known(ssh_session, const char *);
static int	 conf_list_has(const char *, const char *);
static void	 conf_list_add(char *, size_t, const char *, const char *);

/* Format one error line and keep it. */
static void
conf_vadd(struct conf_ctx *cx, const char *file, unsigned int line,
    const char *key, const char *fmt, va_list ap)
{
	char	 msg[1024], *text;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (line == 0)
		xasprintf(&text, "%s: %s\n", file, msg);
	else
		xasprintf(&text, "%s:%u: %s%s%s%s%s\n", file, line, cx->where,
		    cx->where[0] != '\0' ? ": " : "", key != NULL ? key : "",
		    key != NULL ? ": " : "", msg);
	if (cx->nmsgs == cx->msgcap) {
		cx->msgcap = cx->msgcap == 0 ? 16 : cx->msgcap * 2;
		cx->msgs = realloc(cx->msgs, cx->msgcap * sizeof(*cx->msgs));
		if (cx->msgs == NULL)
			fatal("conf_vadd");
	}
	cx->msgs[cx->nmsgs].line = line;
	cx->msgs[cx->nmsgs].seq = cx->nmsgs;
	cx->msgs[cx->nmsgs].text = text;
	cx->nmsgs++;
}

/* An error at a file and line (0: the file as a whole), with no block. */
static void
conf_errat(struct conf_ctx *cx, const char *file, unsigned int line,
    const char *fmt, ...)
{
	va_list ap;

	cx->where[0] = '\0';
	va_start(ap, fmt);
	conf_vadd(cx, file, line, NULL, fmt, ap);
	va_end(ap);
}

/* An error about setting s (its file and line), in the current block. */
void
conf_err(struct conf_ctx *cx, const config_setting_t *s, const char *key,
    const char *fmt, ...)
{
	const char	*file = cx->path;
	unsigned int	 line = 1;
	va_list		 ap;

	if (s != NULL) {
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
		if (config_setting_source_line(s) > 0)
			line = config_setting_source_line(s);
	}
	va_start(ap, fmt);
	conf_vadd(cx, file, line, key, fmt, ap);
	va_end(ap);
}

/* Errors sort by line, and in the order found within a line. */
static int
conf_msg_cmp(const void *a, const void *b)
{
	const struct conf_msg *ma = a, *mb = b;

	if (ma->line != mb->line)
		return (ma->line < mb->line ? -1 : 1);
	return (ma->seq < mb->seq ? -1 : ma->seq > mb->seq);
}

/* Join the errors into one string for the caller; return their number. */
int
conf_finish(struct conf_ctx *cx, char **errors)
{
	size_t	 len = 0, o = 0, n;
	int	 i, count = cx->nmsgs;

	*errors = NULL;
	if (count > 0) {
		qsort(cx->msgs, count, sizeof(*cx->msgs), conf_msg_cmp);
		for (i = 0; i < count; i++)
			len += strlen(cx->msgs[i].text);
		*errors = xmalloc(len + 1);
		for (i = 0; i < count; i++) {
			n = strlen(cx->msgs[i].text);
			memcpy(*errors + o, cx->msgs[i].text, n);
			o += n;
		}
		(*errors)[o] = '\0';
	}
	for (i = 0; i < cx->nmsgs; i++)
		free(cx->msgs[i].text);
	free(cx->msgs);
	free(cx->bigs);
	cx->msgs = NULL;
	cx->bigs = NULL;
	cx->nmsgs = cx->nbigs = 0;
	return (count);
}

/* The whole file as one string, or NULL with the reason in err. */
static char *
conf_read(const char *path, char *err, size_t errlen)
{
	FILE	*fp;
	char	*buf = NULL, *nbuf;
	size_t	 len = 0, cap = 0, n;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s", strerror(errno));
		return (NULL);
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap == 0 ? 16384 : cap * 2;
			if ((nbuf = realloc(buf, cap)) == NULL)
				fatal("conf_read");
			buf = nbuf;
		}
		n = fread(buf + len, 1, cap - len - 1, fp);
		len += n;
		if (len > CONF_MAX_SIZE) {
			snprintf(err, errlen, "the file is larger than %d MiB",
			    CONF_MAX_SIZE / (1024 * 1024));
			break;
		}
		if (n == 0) {
			if (!ferror(fp)) {
				fclose(fp);
				buf[len] = '\0';
				if (strlen(buf) != len) {
					snprintf(err, errlen, "the file holds "
					    "a NUL byte (it must be text)");
					free(buf);
					return (NULL);
				}
				return (buf);
			}
			snprintf(err, errlen, "%s", strerror(errno));
			break;
		}
	}
	fclose(fp);
	free(buf);
	return (NULL);
}

/*
 * Read cx->path (or text, its contents, when not NULL) into cfg, after
 * finding the integers libconfig would cut short. Returns -1 with the
 * error kept when the file cannot be read or is not libconfig syntax; cfg
 * is then left destroyed.
 */
int
conf_parse_file(struct conf_ctx *cx, config_t *cfg, const char *text)
{
	char		*buf = NULL, err[256];
	const char	*file;

	if (text == NULL &&
	    (text = buf = conf_read(cx->path, err, sizeof(err))) == NULL) {
		conf_errat(cx, cx->path, 0, "cannot read: %s", err);
		return (-1);
	}
	conf_scan(cx, text);
	config_init(cfg);
	if (config_read_string(cfg, text) != CONFIG_TRUE) {
		file = config_error_file(cfg) != NULL ?
		    config_error_file(cfg) : cx->path;
		conf_errat(cx, file, config_error_line(cfg) > 0 ?
		    (unsigned int)config_error_line(cfg) : 1, "%s",
		    config_error_text(cfg) != NULL ?
		    config_error_text(cfg) : "syntax error");
		config_destroy(cfg);
		free(buf);
		return (-1);
	}
	free(buf);
	return (0);
}
/*
 * libconfig 1.5 reads an integer too large for 32 bits as a wrong small
 * number (4294967297 becomes 1) without a word. Find such literals in the
 * text first, by line and by the setting name in front of them, so that
 * the checks below can refuse them.
 */
static void
conf_scan(struct conf_ctx *cx, const char *p)
{
	char		 key[NAME_MAXLEN + 1] = "";
	const char	*start;
	unsigned int	 line = 1;
	size_t		 n;

	while (*p != '\0') {
		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p != '\0' && !(p[0] == '*' &&
			    p[1] == '/'); p++)
				if (*p == '\n')
					line++;
			if (*p != '\0')
				p += 2;
		} else if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				if (*p == '\n')
					line++;
			}
			if (*p != '\0')
				p++;
		} else if (isalpha((unsigned char)*p) || *p == '*') {
			for (n = 0; isalnum((unsigned char)*p) || *p == '-' ||
			    *p == '_' || *p == '*'; p++)
				if (n < NAME_MAXLEN)
					key[n++] = *p;
			key[n] = '\0';
		} else if (isdigit((unsigned char)*p) || ((*p == '-' ||
		    *p == '+' || *p == '.') && (isdigit((unsigned char)p[1]) ||
		    p[1] == '.'))) {
			start = p++;
			while (isalnum((unsigned char)*p) || *p == '.' ||
			    ((*p == '-' || *p == '+') &&
			    (p[-1] == 'e' || p[-1] == 'E')))
				p++;
			conf_scan_number(cx, line, key, start,
			    (size_t)(p - start));
		} else
			p++;
	}
}

/* Remember one number token if it is a plain integer beyond 32 bits. */
static void
conf_scan_number(struct conf_ctx *cx, unsigned int line, const char *key,
    const char *tok, size_t len)
{
	const char	*d = tok;
	size_t		 n = len;
	int		 neg = 0, big;

	if (*d == '-' || *d == '+') {
		neg = *d == '-';
		d++;
		n--;
	}
	if (n == 0 || d[n - 1] == 'L')
		return;				/* 64-bit on purpose */
	if (n > 2 && d[0] == '0' && (d[1] == 'x' || d[1] == 'X')) {
		for (d += 2, n -= 2; n > 1 && *d == '0'; d++, n--)
			;
		big = n > 8 || (n == 8 && *d > '7');
	} else {
		if (memchr(d, '.', n) != NULL || memchr(d, 'e', n) != NULL ||
		    memchr(d, 'E', n) != NULL)
			return;			/* a float */
		for (; n > 1 && *d == '0'; d++, n--)
			;
		big = n > 10 || (n == 10 &&
		    strncmp(d, neg ? "2147483648" : "2147483647", 10) > 0);
	}
	if (!big)
		return;
	if (cx->nbigs == cx->bigcap) {
		cx->bigcap = cx->bigcap == 0 ? 4 : cx->bigcap * 2;
		cx->bigs = realloc(cx->bigs, cx->bigcap * sizeof(*cx->bigs));
		if (cx->bigs == NULL)
			fatal("conf_scan_number");
	}
	cx->bigs[cx->nbigs].line = line;
	strlcpy_(cx->bigs[cx->nbigs].key, key, sizeof(cx->bigs[0].key));
	if (len >= sizeof(cx->bigs[0].literal))
		len = sizeof(cx->bigs[0].literal) - 4;
	snprintf(cx->bigs[cx->nbigs].literal, sizeof(cx->bigs[0].literal),
	    "%.*s%s", (int)len, tok, len < (size_t)(d - tok) + n ? "..." : "");
	cx->bigs[cx->nbigs].used = 0;
	cx->nbigs++;
}

/* The literal libconfig cut short for this setting, if it did. */
static const char *
conf_big_take(struct conf_ctx *cx, const config_setting_t *s,
    const char *key)
{
	int i;

	if (config_setting_type(s) != CONFIG_TYPE_INT)
		return (NULL);
	for (i = 0; i < cx->nbigs; i++) {
		if (!cx->bigs[i].used &&
		    cx->bigs[i].line == config_setting_source_line(s) &&
		    strcmp(cx->bigs[i].key, key) == 0) {
			cx->bigs[i].used = 1;
			return (cx->bigs[i].literal);
		}
	}
	return (NULL);
}

/* Report the integers too large that no reader claimed. */
void
conf_report_bigs(struct conf_ctx *cx)
{
	int i;

	for (i = 0; i < cx->nbigs; i++)
		if (!cx->bigs[i].used)
			conf_errat(cx, cx->path, cx->bigs[i].line, "%s%s%s is "
			    "too large for an integer (at most 2147483647)",
			    cx->bigs[i].key, cx->bigs[i].key[0] != '\0' ?
			    ": " : "", cx->bigs[i].literal);
}

/* An integer setting in [lo, hi]. */
int
conf_int(struct conf_ctx *cx, const config_setting_t *s, const char *key,
    long lo, long hi, int *out)
{
	const char	*big;
	long long	 v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		if ((big = conf_big_take(cx, s, key)) != NULL) {
			conf_err(cx, s, key, "%s is out of range %ld-%ld",
			    big, lo, hi);
			return (-1);
		}
		v = config_setting_get_int(s);
		break;
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(s);
		break;
	default:
		conf_err(cx, s, key, "must be an integer (%ld-%ld)", lo, hi);
		return (-1);
	}
	if (v < lo || v > hi) {
		conf_err(cx, s, key, "%lld is out of range %ld-%ld", v, lo, hi);
		return (-1);
	}
	*out = (int)v;
	return (0);
}

/* A number of seconds in [lo, hi]; integers are numbers too. */
int
conf_float(struct conf_ctx *cx, const config_setting_t *s, const char *key,
    double lo, double hi, double *out)
{
	const char	*big;
	double		 v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		if ((big = conf_big_take(cx, s, key)) != NULL) {
			conf_err(cx, s, key, "%s is out of range %g-%g", big,
			    lo, hi);
			return (-1);
		}
		v = config_setting_get_int(s);
		break;
	case CONFIG_TYPE_INT64:
		v = (double)config_setting_get_int64(s);
		break;
	case CONFIG_TYPE_FLOAT:
		v = config_setting_get_float(s);
		break;
	default:
		conf_err(cx, s, key, "must be a number (%g-%g)", lo, hi);
		return (-1);
	}
	if (!isfinite(v) || v < lo || v > hi) {
		conf_err(cx, s, key, "%g is out of range %g-%g", v, lo, hi);
		return (-1);
	}
	*out = v;
	return (0);
}

/* A true or false setting. */
int
conf_bool(struct conf_ctx *cx, const config_setting_t *s, const char *key,
    int *out)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		conf_err(cx, s, key, "must be true or false");
		return (-1);
	}
	*out = config_setting_get_bool(s) != 0;
	return (0);
}

/* A string setting (libconfig's copy: do not keep it), or NULL. */
const char *
conf_string(struct conf_ctx *cx, const config_setting_t *s, const char *key,
    const char *what)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		conf_err(cx, s, key, "must be a string (%s)", what);
		return (NULL);
	}
	return (config_setting_get_string(s));
}

/* An absolute path, copied into *out. */
int
conf_path(struct conf_ctx *cx, const config_setting_t *s, const char *key,
    char **out)
{
	const char	*v;
	char		 q[96];

	if ((v = conf_string(cx, s, key, "an absolute path")) == NULL)
		return (-1);
	if (v[0] != '/') {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, s, key, "%s is not an absolute path", q);
		return (-1);
	}
	if (strlen(v) >= CONF_PATH_MAX) {
		conf_err(cx, s, key, "path is longer than %d bytes",
		    CONF_PATH_MAX - 1);
		return (-1);
	}
	*out = xstrdup(v);
	return (0);
}

/* A UNIX socket path: absolute, short enough for sun_path, naming a file. */
int
conf_socket_path(struct conf_ctx *cx, const config_setting_t *s,
    const char *key, char **out)
{
	char *path;

	if (conf_path(cx, s, key, &path) == -1)
		return (-1);
	if (strlen(path) > PATH_MAXLEN)
		conf_err(cx, s, key, "path is longer than %d bytes (the limit "
		    "of a UNIX socket)", PATH_MAXLEN);
	else if (path[strlen(path) - 1] == '/')
		conf_err(cx, s, key, "path ends in \"/\" (it must name a "
		    "file)");
	else {
		*out = path;
		return (0);
	}
	free(path);
	return (-1);
}

/* A group name (1-32 of A-Z a-z 0-9 _ . -, no leading -), copied. */
int
conf_group_name(struct conf_ctx *cx, const config_setting_t *s,
    const char *key, char **out)
{
	const char	*v;
	char		 q[96];
	size_t		 i, len;
	int		 ok;

	if ((v = conf_string(cx, s, key, "a group name")) == NULL)
		return (-1);
	len = strlen(v);
	ok = len >= 1 && len <= 32 && v[0] != '-';
	for (i = 0; ok && i < len; i++)
		ok = isalnum((unsigned char)v[i]) ||
		    strchr("_.-", v[i]) != NULL ||
		    (v[i] == '$' && i == len - 1 && i > 0);
	if (!ok) {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, s, key, "%s is not a valid group name (use 1-32 "
		    "characters from A-Z a-z 0-9 _ . -, not starting with -)",
		    q);
		return (-1);
	}
	*out = xstrdup(v);
	return (0);
}

/* A log level by name: error, warning, notice, info or debug. */
int
conf_log_level(struct conf_ctx *cx, const config_setting_t *s,
    const char *key, enum log_level *out)
{
	const char	*v;
	char		 q[96];
	size_t		 i;

	if ((v = conf_string(cx, s, key, "error, warning, notice, info or "
	    "debug")) == NULL)
		return (-1);
	for (i = 0; i < sizeof(conf_levels) / sizeof(conf_levels[0]); i++) {
		if (strcmp(conf_levels[i].name, v) == 0) {
			*out = conf_levels[i].level;
			return (0);
		}
	}
	format_quoted(v, q, sizeof(q));
	conf_err(cx, s, key, "%s is not one of error, warning, notice, info, "
	    "debug", q);
	return (-1);
}

/* A host name or an IP address, copied into out. */
int
conf_address(struct conf_ctx *cx, const config_setting_t *s,
    const char *key, char *out, size_t outlen)
{
	const char	*v;
	char		 q[96];

	if ((v = conf_string(cx, s, key, "a host name or address")) == NULL)
		return (-1);
	if (!valid_host(v)) {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, s, key, "%s is not a valid host name or address "
		    "(use letters, digits, hyphens and dots, or an IP "
		    "address)", q);
		return (-1);
	}
	strlcpy_(out, v, outlen);
	return (0);
}

/* What libssh refuses in a user name, besides a leading '-'. */
#define USER_SHELL_CHARS	"'`\";&<>|(){}$\\,"

/*
 * A login name: 1-HOST_MAXLEN printable characters, no spaces, no leading
 * '-' nor shell characters, copied.
 */
int
conf_user_name(struct conf_ctx *cx, const config_setting_t *s,
    const char *key, char *out, size_t outlen)
{
	const char	*v;
	char		 q[96];

	if ((v = conf_string(cx, s, key, "a user name")) == NULL)
		return (-1);
	if (v[0] == '\0' || strlen(v) > HOST_MAXLEN ||
	    strpbrk(v, " \t") != NULL ||
	    strcspn(v, "\x7f") != strlen(v) ||
	    strlen(v) != strspn(v, "!\"#$%&'()*+,-./0123456789:;<=>?@"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz"
	    "{|}~")) {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, s, key, "%s is not a valid user name (use 1-%d "
		    "printable characters, no spaces)", q, HOST_MAXLEN);
		return (-1);
	}
	/*
	 * libssh (0.10.6-0+deb12u3 on, CVE-2026-59846) refuses these in
	 * ssh_options_set() and keeps the name it had, the local user's:
	 * the link would log in as someone else.
	 */
	if (v[0] == '-' || strpbrk(v, USER_SHELL_CHARS) != NULL) {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, s, key, "%s is not a valid user name (libssh "
		    "refuses a leading '-' and the shell characters %s)", q,
		    USER_SHELL_CHARS);
		return (-1);
	}
	strlcpy_(out, v, outlen);
	return (0);
}

/* A host key policy: strict or accept-new (never "off"). */
int
conf_host_key_policy(struct conf_ctx *cx, const config_setting_t *s,
    const char *key, enum host_key_policy *out)
{
	const char	*v;
	char		 q[96];

	if ((v = conf_string(cx, s, key, "strict or accept-new")) == NULL)
		return (-1);
	if (strcmp(v, "strict") == 0)
		*out = HOSTKEY_STRICT;
	else if (strcmp(v, "accept-new") == 0)
		*out = HOSTKEY_ACCEPT_NEW;
	else {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, s, key, "%s is not allowed (use strict or "
		    "accept-new)", q);
		return (-1);
	}
	return (0);
}

/* identity: one absolute path or a list of them. */
int
conf_identity(struct conf_ctx *cx, const config_setting_t *s,
    struct host_conf *hc)
{
	const config_setting_t	*e;
	char			*ids[CONF_MAX_IDENTITIES];
	int			 i, n, bad = 0;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		if (conf_path(cx, s, "identity", &ids[0]) == -1)
			return (-1);
		n = 1;
		break;
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
		n = config_setting_length(s);
		if (n > CONF_MAX_IDENTITIES) {
			conf_err(cx, s, "identity", "%d files given (at most "
			    "%d)", n, CONF_MAX_IDENTITIES);
			return (-1);
		}
		for (i = 0; i < n; i++) {
			e = config_setting_get_elem(s, i);
			if (conf_path(cx, e, "identity", &ids[i]) == -1) {
				ids[i] = NULL;
				bad = 1;
			}
		}
		if (bad) {
			for (i = 0; i < n; i++)
				free(ids[i]);
			return (-1);
		}
		break;
	default:
		conf_err(cx, s, "identity", "must be a string or a list of "
		    "strings (absolute paths)");
		return (-1);
	}
	for (i = 0; i < hc->nidentity; i++)
		free(hc->identity[i]);
	for (i = 0; i < n; i++)
		hc->identity[i] = ids[i];
	hc->nidentity = n;
	return (0);
}

/*
 * Whether this libssh (its build, its FIPS mode) accepts a cipher name:
 * a single unknown name is refused, where a list would lose it silently.
 */
static int
conf_cipher_known(ssh_session ss, const char *name)
{
	return (ssh_options_set(ss, SSH_OPTIONS_CIPHERS_C_S, name) == 0 &&
	    ssh_options_set(ss, SSH_OPTIONS_CIPHERS_S_C, name) == 0);
}

/* Whether a comma-separated list holds name. */
static int
conf_list_has(const char *list, const char *name)
{
	size_t	n = strlen(name);

	while (*list != '\0') {
		if (strncmp(list, name, n) == 0 &&
		    (list[n] == ',' || list[n] == '\0'))
			return (1);
		list += strcspn(list, ",");
		list += *list == ',';
	}
	return (0);
}

/* Append name to the list in buf, after sep unless it is the first. */
static void
conf_list_add(char *buf, size_t len, const char *sep, const char *name)
{
	size_t	o = strlen(buf);

	snprintf(buf + o, len - o, "%s%s", o > 0 ? sep : "", name);
}

/*
 * ciphers: a preference list "a,b" of cipher names, each checked with
 * libssh itself, or "" for libssh's defaults. Copied into out without
 * the blanks around the names.
 */
int
conf_ciphers(struct conf_ctx *cx, const config_setting_t *s,
    const char *key, char *out, size_t outlen)
{
	ssh_session	 ss;
	const char	*v, *p, *end;
	char		 list[1024], bad[512], known[512], name[128], q[96];
	size_t		 len, i;
	int		 nbad = 0, nempty = 0, ret = 0;

	if ((v = conf_string(cx, s, key, "cipher names separated by commas, "
	    "or \"\" for libssh's defaults")) == NULL)
		return (-1);
	if (v[strspn(v, " \t")] == '\0') {
		out[0] = '\0';
		return (0);
	}
	if ((ss = ssh_new()) == NULL)
		fatalx("conf_ciphers: out of memory");
	list[0] = bad[0] = known[0] = '\0';
	for (p = v; ; p = end + 1) {
		end = p + strcspn(p, ",");
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		for (len = (size_t)(end - p); len > 0 &&
		    (p[len - 1] == ' ' || p[len - 1] == '\t'); len--)
			;
		snprintf(name, sizeof(name), "%.*s", (int)len, p);
		format_quoted(name, q, sizeof(q));
		if (len == 0) {
			if (nempty++ == 0) {
				format_quoted(v, q, sizeof(q));
				conf_err(cx, s, key, "%s has an empty name "
				    "(separate cipher names by single commas)",
				    q);
			}
			ret = -1;
		} else if (strcmp(name, "none") == 0) {
			conf_err(cx, s, key, "\"none\" is not allowed (it "
			    "would turn encryption off)");
			ret = -1;
		} else if (len >= sizeof(name) ||
		    !conf_cipher_known(ss, name)) {
			conf_list_add(bad, sizeof(bad), ", ", q);
			nbad++;
		} else if (conf_list_has(list, name)) {
			conf_err(cx, s, key, "%s is given twice", q);
			ret = -1;
		} else
			conf_list_add(list, sizeof(list), ",", name);
		if (*end == '\0')
			break;
	}
	if (nbad > 0) {
		for (i = 0; i < sizeof(conf_cipher_names) /
		    sizeof(conf_cipher_names[0]); i++)
			if (conf_cipher_known(ss, conf_cipher_names[i]))
				conf_list_add(known, sizeof(known), ", ",
				    conf_cipher_names[i]);
		conf_err(cx, s, key, "unknown cipher%s %s (supported: %s)",
		    nbad > 1 ? "s" : "", bad, known);
		ret = -1;
	}
	ssh_free(ss);
	if (ret == 0 && strlen(list) >= outlen) {
		conf_err(cx, s, key, "the list is longer than %zu characters",
		    outlen - 1);
		ret = -1;
	}
	if (ret == 0)
		strlcpy_(out, list, outlen);
	return (ret);
}

/* version: only 1 for now. */
void
conf_version(struct conf_ctx *cx, const config_setting_t *s)
{
	const char	*big;
	int		 type = config_setting_type(s);

	if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
		conf_err(cx, s, "version", "must be the integer 1");
	else if ((big = conf_big_take(cx, s, "version")) != NULL)
		conf_err(cx, s, "version", "%s is not supported (this tunneld "
		    "reads version 1)", big);
	else if (config_setting_get_int64(s) != 1)
		conf_err(cx, s, "version", "%lld is not supported (this tunneld "
		    "reads version 1)", config_setting_get_int64(s));
}

/* The index of name in a table of n names, or -1. */
int
conf_index(const char *const *names, int n, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (i);
	return (-1);
}

/* A host_conf holding the built-in default of every setting. */
void
conf_hc_init(struct host_conf *hc)
{
	struct passwd *pw;

	memset(hc, 0, sizeof(*hc));
	hc->port = 22;
	if ((pw = getpwuid(geteuid())) != NULL && pw->pw_name[0] != '\0')
		strlcpy_(hc->user, pw->pw_name, sizeof(hc->user));
	else
		strlcpy_(hc->user, "root", sizeof(hc->user));
	hc->identity[0] = xstrdup(DEFAULT_IDENTITY);
	hc->nidentity = 1;
	hc->known_hosts = xstrdup(DEFAULT_KNOWN_HOSTS);
	hc->host_key_policy = HOSTKEY_STRICT;
	hc->connect_timeout = 10;
	hc->keepalive_interval = 15;
	hc->keepalive_count_max = 3;
	hc->backoff_initial = 1.0;
	hc->backoff_max = 60.0;
	hc->backoff_reset_after = 30;
	hc->max_window = 16 * 1024 * 1024;
}

/* Copy a host_conf, with its own copies of the strings. */
void
conf_hc_copy(struct host_conf *dst, const struct host_conf *src)
{
	int i;

	*dst = *src;
	for (i = 0; i < src->nidentity; i++)
		dst->identity[i] = xstrdup(src->identity[i]);
	dst->known_hosts = src->known_hosts != NULL ?
	    xstrdup(src->known_hosts) : NULL;
}

/* Free the strings a host_conf owns. */
void
conf_hc_clear(struct host_conf *hc)
{
	int i;

	for (i = 0; i < hc->nidentity; i++) {
		free(hc->identity[i]);
		hc->identity[i] = NULL;
	}
	hc->nidentity = 0;
	free(hc->known_hosts);
	hc->known_hosts = NULL;
}
