/*
 * control_show.c: what the status and links verbs print. Renders tunnels
 * and links as a table (a heading line, then one row each, columns aligned
 * two spaces apart) or as JSON (one object per line), into an evbuffer of
 * LF-terminated lines that control.c then sends as body lines.
 *
 * The lines hold no control characters: a table cell has them replaced with
 * spaces (an error text from a server may hold a newline), a JSON string
 * has them escaped. The formats are in docs/control-protocol.md section 4.
 *
 * An error is shown as it is where it says why a tunnel or link is in its
 * state, and with its age ("3m05s ago: ...") where it is history: the last
 * error of a tunnel that is up (or down) again, of a link that is trying
 * again. JSON has it as last_error with last_error_time and
 * last_error_seconds.
 *
 * A link or tunnel that needs attention (a permanent failure, errclass.c)
 * has "!" after its STATE in the table ("failed!"), and needs_attention
 * true in JSON; a tunnel waiting for a link that needs it does too.
 *
 * Also here, for the same verbs: which tunnels a request names, and the
 * messages of final lines that say which tunnels are not up and why.
 * Nothing in this file touches a client.
 */
#include <sys/types.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "ctl-proto.h"
#include "tunneld.h"

#define CONTROL_SHOW_JUMPS_MAX	32
#define CONTROL_SHOW_TUNNEL_COLS 11
#define CONTROL_SHOW_LINK_COLS	9

static void	control_show_table(struct evbuffer *, char **, int, int);
static void	control_show_json_str(struct evbuffer *, const char *);
static const char *control_show_link_error(const struct fwd *);
static char	*control_show_error_cell(const char *, double, int, double);
static void	control_show_error_json(struct evbuffer *, const char *,
		    time_t, double, double);
static void	control_show_status_row(const struct fwd *, char **, double);
static void	control_show_status_json(struct evbuffer *, const struct fwd *,
		    double);
static int	control_show_link_jumps(const struct link *, const char **,
		    int);
static void	control_show_link_address(const struct link *, char *,
		    size_t);
static void	control_show_link_row(const struct link *, char **, double);
static void	control_show_link_json(struct evbuffer *, const struct link *,
		    double);

/*
 * Append a table to out: cells holds (nrows + 1) * ncols strings, the
 * headings first. Columns are left aligned, two spaces apart, each as wide
 * as its widest cell; the last one is not padded and no line ends in spaces.
 * Control characters in a cell become spaces. Frees the cells.
 */
static void
control_show_table(struct evbuffer *out, char **cells, int nrows, int ncols)
{
	size_t	*width, total = 0, off, n;
	char	*line, *p;
	int	 r, k;

	width = xcalloc(ncols, sizeof(*width));
	for (r = 0; r <= nrows; r++) {
		for (k = 0; k < ncols; k++) {
			for (p = cells[r * ncols + k]; *p != '\0'; p++) {
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					*p = ' ';
			}
			n = strlen(cells[r * ncols + k]);
			if (n > width[k])
				width[k] = n;
		}
	}
	for (k = 0; k < ncols; k++)
		total += width[k] + 2;
	line = xmalloc(total + 1);
	for (r = 0; r <= nrows; r++) {
		off = 0;
		for (k = 0; k < ncols; k++) {
			n = strlen(cells[r * ncols + k]);
			memcpy(line + off, cells[r * ncols + k], n);
			off += n;
			if (k == ncols - 1)
				break;
			memset(line + off, ' ', width[k] - n + 2);
			off += width[k] - n + 2;
		}
		while (off > 0 && line[off - 1] == ' ')
			off--;
		line[off++] = '\n';
		evbuffer_add(out, line, off);
	}
	free(line);
	free(width);
	for (r = 0; r < (nrows + 1) * ncols; r++)
		free(cells[r]);
	free(cells);
}

/* Append s as a JSON string (null when NULL); bad UTF-8 becomes U+FFFD. */
static void
control_show_json_str(struct evbuffer *b, const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	int			 n, i;

	if (s == NULL) {
		evbuffer_add(b, "null", 4);
		return;
	}
	evbuffer_add(b, "\"", 1);
	while (*p != '\0') {
		if (*p == '"' || *p == '\\') {
			evbuffer_add_printf(b, "\\%c", *p++);
			continue;
		}
		if (*p < 0x20 || *p == 0x7f) {
			evbuffer_add_printf(b, "\\u%04x", *p++);
			continue;
		}
		if (*p < 0x80) {
			evbuffer_add(b, p++, 1);
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf)
			n = 2;
		else if (*p >= 0xe0 && *p <= 0xef)
			n = 3;
		else if (*p >= 0xf0 && *p <= 0xf4)
			n = 4;
		else
			n = 0;
		for (i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				n = 0;
		}
		if (n == 0) {
			evbuffer_add(b, "\\ufffd", 6);
			p++;
		} else {
			evbuffer_add(b, p, n);
			p += n;
		}
	}
	evbuffer_add(b, "\"", 1);
}

/* The last error of a tunnel's link while the link is not up, else NULL. */
static const char *
control_show_link_error(const struct fwd *f)
{
	if (f->link == NULL || f->link->state == LINK_UP ||
	    f->link->last_error[0] == '\0')
		return (NULL);
	return (f->link->last_error);
}

/*
 * An ERROR cell: err as it is, or when old, with its age: "41s ago: err"
 * (at is the monotonic time err was set; 0 if unknown: no age then).
 */
static char *
control_show_error_cell(const char *err, double at, int old, double now)
{
	char	 age[32], *cell;

	if (!old || at <= 0 || err[0] == '\0')
		return (xstrdup(err));
	format_duration(now - at, age, sizeof(age));
	xasprintf(&cell, "%s ago: %s", age, err);
	return (cell);
}

/*
 * Append ,"last_error":...,"last_error_time":...,"last_error_seconds":...
 * (the time as RFC 3339, the seconds since; null where unknown).
 */
static void
control_show_error_json(struct evbuffer *b, const char *err, time_t t,
    double at, double now)
{
	char	when[40];
	int	known = err[0] != '\0';

	evbuffer_add_printf(b, ",\"last_error\":");
	control_show_json_str(b, known ? err : NULL);
	evbuffer_add_printf(b, ",\"last_error_time\":");
	if (known && t > 0) {
		format_rfc3339(t, when, sizeof(when));
		control_show_json_str(b, when);
	} else
		control_show_json_str(b, NULL);
	if (known && at > 0)
		evbuffer_add_printf(b, ",\"last_error_seconds\":%.0f",
		    floor(fmax(0, now - at)));
	else
		evbuffer_add_printf(b, ",\"last_error_seconds\":null");
}

/*
 * The cells of one status row. ERROR: for a tunnel waiting (or starting)
 * while its link is not up, the link's last error ("link HOST: ..."); for
 * a failed one its own error, the reason; otherwise its own last error,
 * if any, with its age.
 */
static void
control_show_status_row(const struct fwd *f, char **cells, double now)
{
	char		 buf[PATH_MAXLEN + HOST_MAXLEN + 16], in[16], out[16];
	char		 since[32];
	const char	*lerr;

	cells[0] = xstrdup(f->tc->name);
	cells[1] = xstrdup(tunnel_type_name(f->tc->type));
	cells[2] = xstrdup(f->tc->via);
	endpoint_format(&f->tc->listen, f->bound_port, buf, sizeof(buf));
	cells[3] = xstrdup(buf);
	if (f->tc->type == TUNNEL_DYNAMIC ||
	    f->tc->type == TUNNEL_REMOTE_DYNAMIC)
		cells[4] = xstrdup("-");
	else {
		endpoint_format(&f->tc->target, 0, buf, sizeof(buf));
		cells[4] = xstrdup(buf);
	}
	xasprintf(&cells[5], "%s%s", fwd_state_name(f->state),
	    errclass_fwd(f) ? "!" : "");
	if (f->since_mono > 0)
		format_duration(now - f->since_mono, since, sizeof(since));
	else
		strlcpy_(since, "-", sizeof(since));
	cells[6] = xstrdup(since);
	xasprintf(&cells[7], "%" PRIu64 "/%" PRIu64, f->conns_active,
	    f->conns_total);
	format_bytes(f->bytes_in, in, sizeof(in));
	format_bytes(f->bytes_out, out, sizeof(out));
	cells[8] = xstrdup(in);
	cells[9] = xstrdup(out);
	lerr = control_show_link_error(f);
	if (lerr != NULL && (f->state == FWD_WAITING ||
	    f->state == FWD_STARTING || f->last_error[0] == '\0'))
		xasprintf(&cells[10], "link %s: %s", f->link->hc->name, lerr);
	else
		cells[10] = control_show_error_cell(f->last_error,
		    f->last_error_mono, f->state != FWD_FAILED, now);
}

/* One tunnel as a JSON object. */
static void
control_show_status_json(struct evbuffer *b, const struct fwd *f, double now)
{
	char	buf[PATH_MAXLEN + HOST_MAXLEN + 16], since[40];

	evbuffer_add_printf(b, "{\"name\":");
	control_show_json_str(b, f->tc->name);
	evbuffer_add_printf(b, ",\"type\":");
	control_show_json_str(b, tunnel_type_name(f->tc->type));
	evbuffer_add_printf(b, ",\"via\":");
	control_show_json_str(b, f->tc->via);
	endpoint_format(&f->tc->listen, f->bound_port, buf, sizeof(buf));
	evbuffer_add_printf(b, ",\"listen\":");
	control_show_json_str(b, buf);
	evbuffer_add_printf(b, ",\"target\":");
	if (f->tc->type == TUNNEL_DYNAMIC ||
	    f->tc->type == TUNNEL_REMOTE_DYNAMIC)
		control_show_json_str(b, NULL);
	else {
		endpoint_format(&f->tc->target, 0, buf, sizeof(buf));
		control_show_json_str(b, buf);
	}
	evbuffer_add_printf(b, ",\"state\":");
	control_show_json_str(b, fwd_state_name(f->state));
	evbuffer_add_printf(b, ",\"since\":");
	if (f->since > 0) {
		format_rfc3339(f->since, since, sizeof(since));
		control_show_json_str(b, since);
	} else
		control_show_json_str(b, NULL);
	if (f->since_mono > 0)
		evbuffer_add_printf(b, ",\"since_seconds\":%.0f",
		    floor(now - f->since_mono));
	else
		evbuffer_add_printf(b, ",\"since_seconds\":null");
	evbuffer_add_printf(b, ",\"connections\":{\"active\":%" PRIu64
	    ",\"total\":%" PRIu64 ",\"failed\":%" PRIu64 "}", f->conns_active,
	    f->conns_total, f->conns_failed);
	evbuffer_add_printf(b, ",\"in\":%" PRIu64 ",\"out\":%"
	    PRIu64, f->bytes_in, f->bytes_out);
	control_show_error_json(b, f->last_error, f->last_error_time,
	    f->last_error_mono, now);
	evbuffer_add_printf(b, ",\"link_error\":");
	control_show_json_str(b, control_show_link_error(f));
	evbuffer_add_printf(b, ",\"needs_attention\":%s,\"enabled\":%s}",
	    errclass_fwd(f) ? "true" : "false", f->enabled ? "true" : "false");
}

/*
 * Append the status of n tunnels to out: a table, or with json one
 * {"tunnels":[...]} document with one tunnel per line.
 */
void
control_show_status(struct evbuffer *out, struct fwd **list, int n, int json,
    double now)
{
	static const char *const head[CONTROL_SHOW_TUNNEL_COLS] = { "NAME",
	    "TYPE", "VIA", "LISTEN", "TARGET", "STATE", "SINCE", "CONNS", "IN",
	    "OUT", "ERROR" };
	char	**cells;
	int	  i, k, ncols = CONTROL_SHOW_TUNNEL_COLS;

	if (json) {
		evbuffer_add_printf(out, "{\"tunnels\":[\n");
		for (i = 0; i < n; i++) {
			control_show_status_json(out, list[i], now);
			evbuffer_add_printf(out, "%s\n", i == n - 1 ? "" : ",");
		}
		evbuffer_add_printf(out, "]}\n");
		return;
	}
	cells = xcalloc((size_t)(n + 1) * ncols, sizeof(*cells));
	for (k = 0; k < ncols; k++)
		cells[k] = xstrdup(head[k]);
	for (i = 0; i < n; i++)
		control_show_status_row(list[i], cells + (i + 1) * ncols, now);
	control_show_table(out, cells, n, ncols);
}

/*
 * The jump hosts in front of a link, first hop first (as for ssh -J).
 * Returns how many were stored in names.
 */
static int
control_show_link_jumps(const struct link *l, const char **names, int max)
{
	const struct host_conf	*hc;
	const char		*jump = l->hc->jump;
	int			 n = 0, i;

	while (*jump != '\0' && n < max) {
		names[n++] = jump;
		if (td->conf == NULL || (hc = conf_host(td->conf, jump)) == NULL)
			break;
		jump = hc->jump;
	}
	for (i = 0; i < n / 2; i++) {
		jump = names[i];
		names[i] = names[n - 1 - i];
		names[n - 1 - i] = jump;
	}
	return (n);
}

/* user@address:port, with " via a,b" when the link has jump hosts. */
static void
control_show_link_address(const struct link *l, char *buf, size_t len)
{
	const char	*jumps[CONTROL_SHOW_JUMPS_MAX];
	size_t		 off;
	int		 n, i;

	if (strchr(l->hc->address, ':') != NULL)
		snprintf(buf, len, "%s@[%s]:%d", l->hc->user, l->hc->address,
		    l->hc->port);
	else
		snprintf(buf, len, "%s@%s:%d", l->hc->user, l->hc->address,
		    l->hc->port);
	n = control_show_link_jumps(l, jumps, CONTROL_SHOW_JUMPS_MAX);
	for (i = 0; i < n; i++) {
		off = strlen(buf);
		snprintf(buf + off, len - off, "%s%s", i ? "," : " via ",
		    jumps[i]);
	}
}

/*
 * The cells of one links row. ERROR is the link's last error (cleared when
 * it comes up): why it is in backoff, failed or waiting; with its age once
 * the link is connecting again or idle.
 */
static void
control_show_link_row(const struct link *l, char **row, double now)
{
	const struct fwd	*f;
	char			 buf[1024];
	int			 nf = 0, nen = 0;

	row[0] = xstrdup(l->hc->name);
	control_show_link_address(l, buf, sizeof(buf));
	row[1] = xstrdup(buf);
	xasprintf(&row[2], "%s%s", link_state_name(l->state),
	    l->attn.on ? "!" : "");
	if (l->since_mono > 0)
		format_duration(now - l->since_mono, buf, sizeof(buf));
	else
		strlcpy_(buf, "-", sizeof(buf));
	row[3] = xstrdup(buf);
	/* Failures in a row: the backoff remembers them while up, not us. */
	xasprintf(&row[4], "%d", l->state == LINK_UP ? 0 : l->retries);
	if (l->next_retry > 0)
		format_duration(ceil(fmax(0, l->next_retry - now)), buf,
		    sizeof(buf));
	else
		strlcpy_(buf, "-", sizeof(buf));
	row[5] = xstrdup(buf);
	if (l->rtt_us >= 0 && l->state == LINK_UP)
		xasprintf(&row[6], "%.1fms", l->rtt_us / 1000.0);
	else
		row[6] = xstrdup("-");
	TAILQ_FOREACH(f, &l->fwds, entry) {
		nf++;
		if (f->enabled)
			nen++;
	}
	xasprintf(&row[7], "%d/%d", nen, nf);
	row[8] = control_show_error_cell(l->last_error, l->last_error_mono,
	    l->state == LINK_CONNECTING || l->state == LINK_IDLE ||
	    l->state == LINK_UP, now);
}

/* One link as a JSON object. */
static void
control_show_link_json(struct evbuffer *b, const struct link *l, double now)
{
	const char		*jumps[CONTROL_SHOW_JUMPS_MAX];
	const struct fwd	*f;
	char			 since[40];
	int			 n, i;

	evbuffer_add_printf(b, "{\"host\":");
	control_show_json_str(b, l->hc->name);
	evbuffer_add_printf(b, ",\"address\":");
	control_show_json_str(b, l->hc->address);
	evbuffer_add_printf(b, ",\"port\":%d,\"user\":", l->hc->port);
	control_show_json_str(b, l->hc->user);
	evbuffer_add_printf(b, ",\"jump\":");
	control_show_json_str(b, l->hc->jump[0] != '\0' ? l->hc->jump : NULL);
	evbuffer_add_printf(b, ",\"chain\":[");
	n = control_show_link_jumps(l, jumps, CONTROL_SHOW_JUMPS_MAX);
	for (i = 0; i < n; i++) {
		control_show_json_str(b, jumps[i]);
		evbuffer_add(b, ",", 1);
	}
	control_show_json_str(b, l->hc->name);
	evbuffer_add_printf(b, "],\"state\":");
	control_show_json_str(b, link_state_name(l->state));
	evbuffer_add_printf(b, ",\"since\":");
	if (l->since > 0) {
		format_rfc3339(l->since, since, sizeof(since));
		control_show_json_str(b, since);
	} else
		control_show_json_str(b, NULL);
	if (l->since_mono > 0)
		evbuffer_add_printf(b, ",\"since_seconds\":%.0f",
		    floor(now - l->since_mono));
	else
		evbuffer_add_printf(b, ",\"since_seconds\":null");
	evbuffer_add_printf(b, ",\"retries\":%d",
	    l->state == LINK_UP ? 0 : l->retries);
	if (l->next_retry > 0)
		evbuffer_add_printf(b, ",\"next_retry_seconds\":%.0f",
		    ceil(fmax(0, l->next_retry - now)));
	else
		evbuffer_add_printf(b, ",\"next_retry_seconds\":null");
	if (l->rtt_us >= 0 && l->state == LINK_UP)
		evbuffer_add_printf(b, ",\"rtt_ms\":%.3f", l->rtt_us / 1000.0);
	else
		evbuffer_add_printf(b, ",\"rtt_ms\":null");
	control_show_error_json(b, l->last_error, l->last_error_time,
	    l->last_error_mono, now);
	evbuffer_add_printf(b, ",\"needs_attention\":%s",
	    l->attn.on ? "true" : "false");
	evbuffer_add_printf(b, ",\"tunnels\":[");
	i = 0;
	TAILQ_FOREACH(f, &l->fwds, entry) {
		if (i++ > 0)
			evbuffer_add(b, ",", 1);
		control_show_json_str(b, f->tc->name);
	}
	evbuffer_add_printf(b, "]}");
}

/*
 * Append every link to out: a table, or with json one {"links":[...]}
 * document with one link per line.
 */
void
control_show_links(struct evbuffer *out, int json, double now)
{
	static const char *const head[CONTROL_SHOW_LINK_COLS] = { "HOST",
	    "ADDRESS", "STATE", "SINCE", "RETRIES", "NEXT RETRY", "RTT",
	    "TUNNELS", "ERROR" };
	const struct link	 *l;
	char			**cells, **row;
	int			  n = 0, k, ncols = CONTROL_SHOW_LINK_COLS;

	TAILQ_FOREACH(l, &td->links, entry)
		n++;
	if (json) {
		evbuffer_add_printf(out, "{\"links\":[\n");
		k = 0;
		TAILQ_FOREACH(l, &td->links, entry) {
			control_show_link_json(out, l, now);
			evbuffer_add_printf(out, "%s\n", ++k == n ? "" : ",");
		}
		evbuffer_add_printf(out, "]}\n");
		return;
	}
	cells = xcalloc((size_t)(n + 1) * ncols, sizeof(*cells));
	for (k = 0; k < ncols; k++)
		cells[k] = xstrdup(head[k]);
	row = cells + ncols;
	TAILQ_FOREACH(l, &td->links, entry) {
		control_show_link_row(l, row, now);
		row += ncols;
	}
	control_show_table(out, cells, n, ncols);
}

/* Append to a final line's message; mark it cut when it is full. */
void
control_show_msg_add(struct control_msg *m, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (m->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(m->buf + m->off, sizeof(m->buf) - m->off, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(m->buf) - m->off - 4) {
		m->buf[m->off] = '\0';
		strlcpy_(m->buf + m->off, "...", sizeof(m->buf) - m->off);
		m->full = 1;
		return;
	}
	m->off += n;
}

/*
 * The tunnels a request names (all of them, in configuration order, when it
 * names none), in a new array stored in *list. Returns how many, or -1 with
 * *bad set to the index of the first name that is no tunnel.
 */
int
control_show_select(const struct ctl_request *req, struct fwd ***list,
    int *bad)
{
	struct fwd	*f, **l;
	struct link	*lk;
	int		 i, n = 0, max;

	if (req->argc > 0) {
		l = xcalloc(req->argc, sizeof(*l));
		for (i = 0; i < req->argc; i++) {
			if ((l[i] = fwd_find(req->argv[i])) == NULL) {
				*bad = i;
				free(l);
				return (-1);
			}
		}
		*list = l;
		return (req->argc);
	}
	if (td->conf != NULL) {
		l = xcalloc(td->conf->ntunnels, sizeof(*l));
		for (i = 0; i < td->conf->ntunnels; i++) {
			if ((f = fwd_find(td->conf->tunnels[i].name)) != NULL)
				l[n++] = f;
		}
		*list = l;
		return (n);
	}
	max = 0;
	TAILQ_FOREACH(lk, &td->links, entry) {
		TAILQ_FOREACH(f, &lk->fwds, entry)
			max++;
	}
	l = xcalloc(max, sizeof(*l));
	TAILQ_FOREACH(lk, &td->links, entry) {
		TAILQ_FOREACH(f, &lk->fwds, entry)
			l[n++] = f;
	}
	*list = l;
	return (n);
}

/* Add 'tunnel "x" is STATE' to m for each of the n tunnels not up. */
void
control_show_notup_msg(struct control_msg *m, struct fwd **list, int n)
{
	int	i;

	for (i = 0; i < n; i++) {
		if (list[i]->state == FWD_UP)
			continue;
		control_show_msg_add(m, "%stunnel \"%s\" is %s",
		    m->off ? "; " : "", list[i]->tc->name,
		    fwd_state_name(list[i]->state));
	}
}

/*
 * Add why a wait of secs seconds timed out to m: each tunnel it names that
 * is not up, with its state and reason (its link's error while it waits).
 */
void
control_show_wait_msg(struct control_msg *m, const struct ctl_request *req,
    int secs)
{
	struct fwd	*f;
	int		 i, n = 0;

	control_show_msg_add(m, "timed out after %d s waiting for: ", secs);
	for (i = 0; i < req->argc; i++) {
		if ((f = fwd_find(req->argv[i])) == NULL) {
			control_show_msg_add(m, "%s%s (removed)",
			    n++ ? ", " : "", req->argv[i]);
			continue;
		}
		if (f->state == FWD_UP)
			continue;
		/* The reason: a failed tunnel's own, a waiting one's link. */
		if (f->state == FWD_WAITING && f->link != NULL &&
		    f->link->last_error[0] != '\0')
			control_show_msg_add(m, "%s%s (waiting: link %s: %s)",
			    n++ ? ", " : "", f->tc->name, f->link->hc->name,
			    f->link->last_error);
		else if (f->state == FWD_FAILED && f->last_error[0] != '\0')
			control_show_msg_add(m, "%s%s (failed: %s)",
			    n++ ? ", " : "", f->tc->name, f->last_error);
		else
			control_show_msg_add(m, "%s%s (%s)",
			    n++ ? ", " : "", f->tc->name,
			    fwd_state_name(f->state));
	}
}
