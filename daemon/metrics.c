/*
 * metrics.c: the Prometheus text exposition (format 0.0.4) of the daemon's
 * counters, for `tunctl metrics` and for GET /metrics (metrics_http.c).
 * Every series is rendered from the live objects at the moment of the
 * request; nothing is kept here but what the objects themselves count
 * (struct fwd's counters, struct link_stats). docs/metrics.md lists the
 * series and what they mean.
 *
 * Families, in the order written: the tunnels (one series per tunnel, or
 * per tunnel and state: each state is its own series with value 0 or 1,
 * so a graph or an alert selects one with {state="up"}), the links
 * likewise, then the daemon (build info, the HTTP responder, the process).
 * Label values are escaped as the text format says: backslash, double
 * quote and newline.
 */
#include <sys/types.h>
#include <sys/resource.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "tunneld.h"

/* The upper bounds of the keepalive RTT buckets, in seconds (+Inf after). */
static const double metrics_rtt_le[METRICS_RTT_BUCKETS - 1] = {
	0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10,
};

static const enum fwd_state metrics_fwd_states[] = {
	FWD_DOWN, FWD_STARTING, FWD_WAITING, FWD_UP, FWD_FAILED,
};
static const enum link_state metrics_link_states[] = {
	LINK_IDLE, LINK_CONNECTING, LINK_UP, LINK_BACKOFF, LINK_FAILED,
	LINK_WAITING,
};

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* Every tunnel: the fwds of every live link (hops and removed ones not). */
#define FOREACH_TUNNEL(l, f)						\
	TAILQ_FOREACH((l), &td->links, entry)				\
		TAILQ_FOREACH((f), &(l)->fwds, entry)

static void	metrics_family(struct evbuffer *, const char *, const char *,
		    const char *);
static void	metrics_tunnels(struct evbuffer *);
static void	metrics_links(struct evbuffer *);
static void	metrics_rtt(struct evbuffer *);
static void	metrics_process(struct evbuffer *);
static void	metrics_buffered(struct evbuffer *);
static void	metrics_tunnel_u64(struct evbuffer *, const char *,
		    const char *, const char *, size_t);
static void	metrics_link_u64(struct evbuffer *, const char *,
		    const char *, const char *, size_t);

/* Count one keepalive round trip of rtt seconds. */
void
metrics_rtt_observe(struct link_stats *st, double rtt)
{
	size_t i;

	if (!(rtt >= 0))
		rtt = 0;
	for (i = 0; i < NELEM(metrics_rtt_le); i++) {
		if (rtt <= metrics_rtt_le[i])
			break;
	}
	st->rtt_bucket[i]++;
	st->rtt_count++;
	st->rtt_sum += rtt;
}

/* Append a label value, escaped: \\ for \, \" for ", \n for a newline. */
void
metrics_label_value(struct evbuffer *b, const char *s)
{
	const char	*p;

	for (p = s; *p != '\0'; p++) {
		if (*p == '\\')
			evbuffer_add(b, "\\\\", 2);
		else if (*p == '"')
			evbuffer_add(b, "\\\"", 2);
		else if (*p == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, p, 1);
	}
}

/* The whole exposition, appended to b. */
void
metrics_render(struct evbuffer *b)
{
	metrics_tunnels(b);
	metrics_links(b);
	metrics_family(b, "tunneld_build_info", "gauge",
	    "Always 1; the labels say which tunneld and libraries run.");
	evbuffer_add_printf(b, "tunneld_build_info{version=\"");
	metrics_label_value(b, TUNNELD_VERSION);
	evbuffer_add_printf(b, "\",libssh=\"");
	metrics_label_value(b, ssh_version(0));
	evbuffer_add_printf(b, "\",libevent=\"");
	metrics_label_value(b, event_get_version());
	evbuffer_add_printf(b, "\"} 1\n");
	metrics_buffered(b);
	metrics_http_render(b);
	metrics_process(b);
}

/* The daemon-wide bound on buffered bytes (membudget.c). */
static void
metrics_buffered(struct evbuffer *b)
{
	uint64_t	used, cap, peak, stops;

	membudget_stats(&used, &cap, &peak, &stops);
	metrics_family(b, "tunneld_buffered_bytes", "gauge", "Bytes buffered "
	    "for connections now, all tunnels together.");
	evbuffer_add_printf(b, "tunneld_buffered_bytes %llu\n",
	    (unsigned long long)used);
	metrics_family(b, "tunneld_buffered_limit_bytes", "gauge", "The "
	    "daemon's max_buffered: past it, reading stops until it drains.");
	evbuffer_add_printf(b, "tunneld_buffered_limit_bytes %llu\n",
	    (unsigned long long)cap);
	metrics_family(b, "tunneld_buffered_full_total", "counter", "Times "
	    "the buffered bytes reached max_buffered.");
	evbuffer_add_printf(b, "tunneld_buffered_full_total %llu\n",
	    (unsigned long long)stops);
}

/* The HELP and TYPE lines of a family. */
static void
metrics_family(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* One series per tunnel of a uint64_t field of struct fwd at offset off. */
static void
metrics_tunnel_u64(struct evbuffer *b, const char *name, const char *type,
    const char *help, size_t off)
{
	struct link	*l;
	struct fwd	*f;

	metrics_family(b, name, type, help);
	FOREACH_TUNNEL(l, f) {
		evbuffer_add_printf(b, "%s{tunnel=\"", name);
		metrics_label_value(b, f->tc->name);
		evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)
		    *(const uint64_t *)(const void *)((const char *)f + off));
	}
}

/* The tunnel families. */
static void
metrics_tunnels(struct evbuffer *b)
{
	struct link	*l;
	struct fwd	*f;
	size_t		 i;

	metrics_family(b, "tunneld_tunnel_info", "gauge", "Always 1; the "
	    "labels say the tunnel's type and the host it goes via.");
	FOREACH_TUNNEL(l, f) {
		evbuffer_add_printf(b, "tunneld_tunnel_info{tunnel=\"");
		metrics_label_value(b, f->tc->name);
		evbuffer_add_printf(b, "\",type=\"%s\",via=\"",
		    tunnel_type_name(f->tc->type));
		metrics_label_value(b, f->tc->via);
		evbuffer_add_printf(b, "\"} 1\n");
	}

	metrics_family(b, "tunneld_tunnel_state", "gauge", "1 for the state "
	    "the tunnel is in, 0 for the others.");
	FOREACH_TUNNEL(l, f) {
		for (i = 0; i < NELEM(metrics_fwd_states); i++) {
			evbuffer_add_printf(b, "tunneld_tunnel_state{tunnel=\"");
			metrics_label_value(b, f->tc->name);
			evbuffer_add_printf(b, "\",state=\"%s\"} %d\n",
			    fwd_state_name(metrics_fwd_states[i]),
			    f->state == metrics_fwd_states[i]);
		}
	}

	metrics_family(b, "tunneld_tunnel_state_since_seconds", "gauge",
	    "When the tunnel entered its state, in seconds since the epoch.");
	FOREACH_TUNNEL(l, f) {
		evbuffer_add_printf(b, "tunneld_tunnel_state_since_seconds"
		    "{tunnel=\"");
		metrics_label_value(b, f->tc->name);
		evbuffer_add_printf(b, "\"} %lld\n", (long long)f->since);
	}

	metrics_family(b, "tunneld_tunnel_bytes_total", "counter", "Bytes "
	    "relayed: in from the connecting clients towards the target, out "
	    "back to them.");
	FOREACH_TUNNEL(l, f) {
		evbuffer_add_printf(b, "tunneld_tunnel_bytes_total{tunnel=\"");
		metrics_label_value(b, f->tc->name);
		evbuffer_add_printf(b, "\",direction=\"in\"} %llu\n",
		    (unsigned long long)f->bytes_in);
		evbuffer_add_printf(b, "tunneld_tunnel_bytes_total{tunnel=\"");
		metrics_label_value(b, f->tc->name);
		evbuffer_add_printf(b, "\",direction=\"out\"} %llu\n",
		    (unsigned long long)f->bytes_out);
	}

	metrics_family(b, "tunneld_tunnel_needs_attention", "gauge", "1 while "
	    "the tunnel, or the link it waits for, failed for good: as the "
	    "! of tunctl status.");
	FOREACH_TUNNEL(l, f) {
		evbuffer_add_printf(b, "tunneld_tunnel_needs_attention"
		    "{tunnel=\"");
		metrics_label_value(b, f->tc->name);
		evbuffer_add_printf(b, "\"} %d\n", errclass_fwd(f));
	}

	metrics_tunnel_u64(b, "tunneld_tunnel_connections_active", "gauge",
	    "Connections open now.", offsetof(struct fwd, conns_active));
	metrics_tunnel_u64(b, "tunneld_tunnel_connections_total", "counter",
	    "Connections accepted (local kinds) or forwarded to us (remote "
	    "kinds).", offsetof(struct fwd, conns_total));
	metrics_tunnel_u64(b, "tunneld_tunnel_connections_failed_total",
	    "counter", "Connections that failed before or while being opened "
	    "(refused at the target, no link in time, SOCKS errors, over "
	    "max_connections).", offsetof(struct fwd, conns_failed));
}

/* One series per link of a uint64_t at offset off of struct link. */
static void
metrics_link_u64(struct evbuffer *b, const char *name, const char *type,
    const char *help, size_t off)
{
	struct link	*l;

	metrics_family(b, name, type, help);
	TAILQ_FOREACH(l, &td->links, entry) {
		evbuffer_add_printf(b, "%s{host=\"", name);
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)
		    *(const uint64_t *)(const void *)((const char *)l + off));
	}
}

/* The link families. */
static void
metrics_links(struct evbuffer *b)
{
	struct link	*l;
	size_t		 i;
	char		 addr[HOST_MAXLEN + 16];

	metrics_family(b, "tunneld_link_info", "gauge", "Always 1; the labels "
	    "say where the host is and its jump host (\"\" when direct).");
	TAILQ_FOREACH(l, &td->links, entry) {
		if (strchr(l->hc->address, ':') != NULL)
			snprintf(addr, sizeof(addr), "[%s]:%d",
			    l->hc->address, l->hc->port);
		else
			snprintf(addr, sizeof(addr), "%s:%d", l->hc->address,
			    l->hc->port);
		evbuffer_add_printf(b, "tunneld_link_info{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\",address=\"");
		metrics_label_value(b, addr);
		evbuffer_add_printf(b, "\",jump=\"");
		metrics_label_value(b, l->hc->jump);
		evbuffer_add_printf(b, "\"} 1\n");
	}

	metrics_family(b, "tunneld_link_state", "gauge", "1 for the state "
	    "the link is in, 0 for the others.");
	TAILQ_FOREACH(l, &td->links, entry) {
		for (i = 0; i < NELEM(metrics_link_states); i++) {
			evbuffer_add_printf(b, "tunneld_link_state{host=\"");
			metrics_label_value(b, l->hc->name);
			evbuffer_add_printf(b, "\",state=\"%s\"} %d\n",
			    link_state_name(metrics_link_states[i]),
			    l->state == metrics_link_states[i]);
		}
	}

	metrics_family(b, "tunneld_link_state_since_seconds", "gauge",
	    "When the link entered its state, in seconds since the epoch.");
	TAILQ_FOREACH(l, &td->links, entry) {
		evbuffer_add_printf(b, "tunneld_link_state_since_seconds"
		    "{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %lld\n", (long long)l->since);
	}

	metrics_family(b, "tunneld_link_up_since_seconds", "gauge", "When "
	    "the link's session came up, in seconds since the epoch; 0 while "
	    "it is not up.");
	TAILQ_FOREACH(l, &td->links, entry) {
		evbuffer_add_printf(b, "tunneld_link_up_since_seconds{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %lld\n", l->state == LINK_UP ?
		    (long long)l->since : 0LL);
	}

	metrics_family(b, "tunneld_link_retries", "gauge", "Failed attempts "
	    "in a row (tunctl links' RETRIES); 0 once up long enough.");
	TAILQ_FOREACH(l, &td->links, entry) {
		evbuffer_add_printf(b, "tunneld_link_retries{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %d\n", l->retries);
	}

	metrics_family(b, "tunneld_link_reconnects_total", "counter", "Times "
	    "the link's session came up again after its first time up.");
	TAILQ_FOREACH(l, &td->links, entry) {
		evbuffer_add_printf(b, "tunneld_link_reconnects_total{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)
		    (l->stats.ups > 0 ? l->stats.ups - 1 : 0));
	}

	metrics_family(b, "tunneld_link_needs_attention", "gauge", "1 while "
	    "the link failed for good (host key or authentication refused, or "
	    "its jump host refused the hop): as the ! of tunctl links.");
	TAILQ_FOREACH(l, &td->links, entry) {
		evbuffer_add_printf(b, "tunneld_link_needs_attention{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %d\n", l->attn.on);
	}

	metrics_link_u64(b, "tunneld_link_failures_total", "counter",
	    "Connection attempts that failed and sessions that were lost.",
	    offsetof(struct link, stats.failures));
	metrics_rtt(b);
}

/* The keepalive round trips, one histogram per link. */
static void
metrics_rtt(struct evbuffer *b)
{
	struct link	*l;
	uint64_t	 cum;
	size_t		 i;

	metrics_family(b, "tunneld_link_keepalive_rtt_seconds", "histogram",
	    "Round trips of the link's keepalive probes.");
	TAILQ_FOREACH(l, &td->links, entry) {
		cum = 0;
		for (i = 0; i < METRICS_RTT_BUCKETS; i++) {
			cum += l->stats.rtt_bucket[i];
			evbuffer_add_printf(b, "tunneld_link_keepalive_rtt_"
			    "seconds_bucket{host=\"");
			metrics_label_value(b, l->hc->name);
			if (i < NELEM(metrics_rtt_le))
				evbuffer_add_printf(b, "\",le=\"%g\"} %llu\n",
				    metrics_rtt_le[i], (unsigned long long)cum);
			else
				evbuffer_add_printf(b, "\",le=\"+Inf\"} "
				    "%llu\n", (unsigned long long)cum);
		}
		evbuffer_add_printf(b, "tunneld_link_keepalive_rtt_seconds_sum"
		    "{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %.9g\n", l->stats.rtt_sum);
		evbuffer_add_printf(b, "tunneld_link_keepalive_rtt_seconds_"
		    "count{host=\"");
		metrics_label_value(b, l->hc->name);
		evbuffer_add_printf(b, "\"} %llu\n",
		    (unsigned long long)l->stats.rtt_count);
	}
}

/*
 * The usual process_* series of Prometheus' client libraries, from
 * /proc/self (a few small reads, none of which can block).
 */
static void
metrics_process(struct evbuffer *b)
{
	static long long	 btime = -1;
	struct rlimit		 rl;
	struct dirent		*de;
	FILE			*fp;
	DIR			*dir;
	char			 line[1024], *p;
	unsigned long long	 utime, stime, start, rss;
	long			 tck = sysconf(_SC_CLK_TCK), page = getpagesize();
	long			 nfd = 0;

	if (btime == -1 && (fp = fopen("/proc/stat", "re")) != NULL) {
		while (fgets(line, sizeof(line), fp) != NULL) {
			if (sscanf(line, "btime %lld", &btime) == 1)
				break;
		}
		fclose(fp);
	}
	line[0] = '\0';
	if ((fp = fopen("/proc/self/stat", "re")) != NULL) {
		if (fgets(line, sizeof(line), fp) == NULL)
			line[0] = '\0';
		fclose(fp);
	}
	/* Fields after the command name, which ends with the last ')'. */
	if ((p = strrchr(line, ')')) != NULL && tck > 0 && sscanf(p + 2,
	    "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s %*s "
	    "%*s %*s %*s %*s %llu %*s %llu", &utime, &stime, &start,
	    &rss) == 4) {
		metrics_family(b, "process_cpu_seconds_total", "counter",
		    "Total user and system CPU time spent in seconds.");
		evbuffer_add_printf(b, "process_cpu_seconds_total %.2f\n",
		    (double)(utime + stime) / (double)tck);
		metrics_family(b, "process_resident_memory_bytes", "gauge",
		    "Resident memory size in bytes.");
		evbuffer_add_printf(b, "process_resident_memory_bytes %llu\n",
		    rss * (unsigned long long)page);
		if (btime >= 0) {
			metrics_family(b, "process_start_time_seconds",
			    "gauge", "Start time of the process since unix "
			    "epoch in seconds.");
			evbuffer_add_printf(b, "process_start_time_seconds "
			    "%.2f\n", (double)btime + (double)start /
			    (double)tck);
		}
	}
	if ((dir = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] != '.')
				nfd++;
		}
		closedir(dir);
		metrics_family(b, "process_open_fds", "gauge",
		    "Number of open file descriptors.");
		evbuffer_add_printf(b, "process_open_fds %ld\n", nfd - 1);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		metrics_family(b, "process_max_fds", "gauge",
		    "Maximum number of open file descriptors.");
		evbuffer_add_printf(b, "process_max_fds %llu\n",
		    (unsigned long long)rl.rlim_cur);
	}
}
