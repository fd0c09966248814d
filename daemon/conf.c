/*
 * conf.c: tunnels.conf (libconfig syntax) into struct conf, checked, with
 * every error reported by file, line and setting, saying what is allowed.
 *
 * conf_load() has no side effects on the running daemon: it parses into
 * fresh structs and the caller decides what to do with them (tunneld -t,
 * tunctl check, start-up, reload). Nothing points into libconfig's tree
 * once it returns: every string is copied before config_destroy().
 *
 * This file knows the blocks: which settings each may hold, where a
 * misplaced one belongs, and the checks across settings (names, jump
 * chains, listen clashes). conf_value.c collects the errors and reads
 * each value by its kind.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libconfig.h>

#include "tunneld.h"

#define NAME_RULE		"use 1-64 characters from A-Z a-z 0-9 _ . -"
#define TYPE_LIST		"local, remote, dynamic or remote-dynamic"

/*
 * What this version can run. A later version that implements one of these
 * flips its line; the checks for everything else stay as they are.
 */
static const struct conf_feature {
	const char	*name;
	int		 supported;
} conf_features[] = {
	{ "local",		1 },
	{ "remote",		1 },
	{ "dynamic",		1 },
	{ "remote-dynamic",	1 },
	{ "jump",		1 },
};

/* Tunnel kinds, as named in tunnels.conf. */
static const struct conf_type {
	const char		*name;
	enum tunnel_type	 type;
	int			 remote;	/* listens on the server */
	int			 dynamic;	/* SOCKS: takes no target */
} conf_types[] = {
	{ "local",		TUNNEL_LOCAL,		0, 0 },
	{ "remote",		TUNNEL_REMOTE,		1, 0 },
	{ "dynamic",		TUNNEL_DYNAMIC,		0, 1 },
	{ "remote-dynamic",	TUNNEL_REMOTE_DYNAMIC,	1, 1 },
};

/*
 * The settings of a host block and of defaults. The last three are the
 * tunnels' own and allowed in defaults only.
 */
enum conf_hkey {
	HK_ADDRESS,
	HK_PORT,
	HK_USER,
	HK_IDENTITY,
	HK_AGENT,
	HK_KNOWN_HOSTS,
	HK_HOST_KEY_POLICY,
	HK_CONNECT_TIMEOUT,
	HK_KEEPALIVE_INTERVAL,
	HK_KEEPALIVE_COUNT_MAX,
	HK_BACKOFF_INITIAL,
	HK_BACKOFF_MAX,
	HK_BACKOFF_RESET_AFTER,
	HK_COMPRESSION,
	HK_CIPHERS,
	HK_JUMP,
	HK_MAX_WINDOW,
	HK_CONNECT_WAIT,
	HK_MAX_CONNECTIONS,
	HK_ENABLED,
	HK_COUNT
};

static const char *conf_hkeys[HK_COUNT] = {
	"address", "port", "user", "identity", "agent", "known_hosts",
	"host_key_policy", "connect_timeout", "keepalive_interval",
	"keepalive_count_max", "backoff_initial", "backoff_max",
	"backoff_reset_after", "compression", "ciphers", "jump",
	"max_window", "connect_wait", "max_connections", "enabled",
};

/* The settings of a tunnel, in the order they are checked. */
enum conf_tkey {
	TK_NAME,
	TK_TYPE,
	TK_VIA,
	TK_LISTEN,
	TK_TARGET,
	TK_ENABLED,
	TK_CONNECT_WAIT,
	TK_MAX_CONNECTIONS,
	TK_COUNT
};

static const char *conf_tkeys[TK_COUNT] = {
	"name", "type", "via", "listen", "target", "enabled", "connect_wait",
	"max_connections",
};

#define ALLOWED_TOP	"version, daemon, defaults, hosts, tunnels"
#define ALLOWED_HOST	"address, port, user, identity, agent, " \
			"known_hosts, host_key_policy, connect_timeout, " \
			"keepalive_interval, keepalive_count_max, " \
			"backoff_initial, backoff_max, backoff_reset_after, " \
			"compression, ciphers, jump, max_window"
#define ALLOWED_DEFAULTS "port, user, identity, agent, known_hosts, " \
			"host_key_policy, connect_timeout, keepalive_interval, " \
			"keepalive_count_max, backoff_initial, backoff_max, " \
			"backoff_reset_after, compression, ciphers, " \
			"max_window, connect_wait, max_connections, enabled"
#define ALLOWED_TUNNEL	"name, type, via, listen, target, enabled, " \
			"connect_wait, max_connections"

/* Connections one tunnel carries at once: the range and the default. */
#define MAXCONN_MIN		1
#define MAXCONN_MAX		1000000
#define MAXCONN_DEFAULT		4096
/* A channel's receive window (window.c): bytes, at most 1 GiB. */
#define MAXWIN_MAX		(1024 * 1024 * 1024)

/* The defaults block: a host template plus what tunnels inherit. */
struct conf_defaults {
	struct host_conf hc;
	int		 connect_wait;
	int		 max_connections;
	int		 enabled;
};

/* What the tunnel checks remember about each tunnel while parsing. */
struct conf_tun {
	char		 label[NAME_MAXLEN + 16];	/* "pg" or #3 */
	int		 name_ok;
	int		 listen_ok;
	const struct conf_type *type;
};

static int	 conf_supported(const char *);
static unsigned	 conf_hblock(struct conf_ctx *, const config_setting_t *,
		    struct host_conf *, struct conf_defaults *);
static int	 conf_hsetting(struct conf_ctx *, const config_setting_t *,
		    int, struct host_conf *, struct conf_defaults *);
static void	 conf_defaults(struct conf_ctx *, const config_setting_t *,
		    struct conf_defaults *);
static void	 conf_hosts(struct conf_ctx *, const config_setting_t *,
		    const struct conf_defaults *, struct conf *);
static int	 conf_host_index(const struct conf *, const char *);
static void	 conf_jumps(struct conf_ctx *, const config_setting_t *,
		    struct conf *);
static void	 conf_tunnels(struct conf_ctx *, const config_setting_t *,
		    const struct conf_defaults *, struct conf *);
static void	 conf_tunnel(struct conf_ctx *, const config_setting_t *,
		    int, const struct conf_defaults *, struct conf *,
		    struct conf_tun *);
static void	 conf_tunnel_ends(struct conf_ctx *, const config_setting_t *,
		    const config_setting_t *, const config_setting_t *,
		    struct tunnel_conf *, struct conf_tun *);
static int	 conf_listen_clash(const struct tunnel_conf *,
		    const struct tunnel_conf *);
static void	 conf_clashes(struct conf_ctx *, const config_setting_t *,
		    struct conf *, struct conf_tun *);
static void	 conf_parse(struct conf_ctx *, const config_setting_t *,
		    struct conf *);
static int	 conf_load_text(const char *, const char *, struct conf **,
		    char **);

/* Whether this version runs a tunnel kind or a feature ("jump"). */
static int
conf_supported(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(conf_features) / sizeof(conf_features[0]); i++)
		if (strcmp(conf_features[i].name, name) == 0)
			return (conf_features[i].supported);
	return (0);
}

/*
 * One setting (HK_*) of a host block or of defaults, applied on top of hc;
 * connect_wait, max_connections and enabled go to defs (defaults only).
 * Returns -1 when a backoff value is refused (other refusals need no
 * follow-up).
 */
static int
conf_hsetting(struct conf_ctx *cx, const config_setting_t *s, int k,
    struct host_conf *hc, struct conf_defaults *defs)
{
	const char	*key = conf_hkeys[k], *v;
	char		*path;
	double		 d;

	switch (k) {
	case HK_ADDRESS:
		conf_address(cx, s, key, hc->address, sizeof(hc->address));
		break;
	case HK_PORT:
		conf_int(cx, s, key, 1, 65535, &hc->port);
		break;
	case HK_USER:
		conf_user_name(cx, s, key, hc->user, sizeof(hc->user));
		break;
	case HK_IDENTITY:
		conf_identity(cx, s, hc);
		break;
	case HK_AGENT:
		conf_bool(cx, s, key, &hc->agent);
		break;
	case HK_KNOWN_HOSTS:
		if (conf_path(cx, s, key, &path) == 0) {
			free(hc->known_hosts);
			hc->known_hosts = path;
		}
		break;
	case HK_HOST_KEY_POLICY:
		conf_host_key_policy(cx, s, key, &hc->host_key_policy);
		break;
	case HK_CONNECT_TIMEOUT:
		conf_int(cx, s, key, 1, 3600, &hc->connect_timeout);
		break;
	case HK_KEEPALIVE_INTERVAL:
		conf_int(cx, s, key, 0, 3600, &hc->keepalive_interval);
		break;
	case HK_KEEPALIVE_COUNT_MAX:
		conf_int(cx, s, key, 1, 100, &hc->keepalive_count_max);
		break;
	case HK_BACKOFF_INITIAL:
		if (conf_float(cx, s, key, 0.1, 3600, &d) == -1)
			return (-1);
		hc->backoff_initial = d;
		break;
	case HK_BACKOFF_MAX:
		if (conf_float(cx, s, key, 0.1, 86400, &d) == -1)
			return (-1);
		hc->backoff_max = d;
		break;
	case HK_BACKOFF_RESET_AFTER:
		conf_int(cx, s, key, 0, 86400, &hc->backoff_reset_after);
		break;
	case HK_COMPRESSION:
		conf_bool(cx, s, key, &hc->compression);
		break;
	case HK_CIPHERS:
		conf_ciphers(cx, s, key, hc->ciphers, sizeof(hc->ciphers));
		break;
	case HK_JUMP:
		if ((v = conf_string(cx, s, key, "the name of another host")) ==
		    NULL)
			break;
		/* Checked with the other hosts in conf_jumps. */
		if (strlen(v) <= NAME_MAXLEN && valid_name(v))
			strlcpy_(hc->jump, v, sizeof(hc->jump));
		break;
	case HK_MAX_WINDOW:
		conf_int(cx, s, key, 0, MAXWIN_MAX, &hc->max_window);
		break;
	case HK_CONNECT_WAIT:
		conf_int(cx, s, key, 0, 3600, &defs->connect_wait);
		break;
	case HK_MAX_CONNECTIONS:
		conf_int(cx, s, key, MAXCONN_MIN, MAXCONN_MAX,
		    &defs->max_connections);
		break;
	case HK_ENABLED:
		conf_bool(cx, s, key, &defs->enabled);
		break;
	}
	return (0);
}

/*
 * The settings of a host block (defs NULL) or of defaults, on top of hc.
 * Returns the set of keys given (1 << HK_*).
 */
static unsigned
conf_hblock(struct conf_ctx *cx, const config_setting_t *g,
    struct host_conf *hc, struct conf_defaults *defs)
{
	const config_setting_t	*s, *bi = NULL, *bm = NULL;
	const char		*name;
	unsigned		 set = 0;
	int			 i, k, n, bad = 0, in_defaults = defs != NULL;

	n = config_setting_length(g);
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(g, i);
		name = config_setting_name(s);
		k = conf_index(conf_hkeys, HK_COUNT, name);
		if (in_defaults && (k == HK_ADDRESS || k == HK_JUMP)) {
			conf_err(cx, s, name, "belongs in a host, not in "
			    "defaults");
			continue;
		}
		if (!in_defaults && (k == HK_CONNECT_WAIT ||
		    k == HK_MAX_CONNECTIONS || k == HK_ENABLED)) {
			conf_err(cx, s, name, "belongs in a tunnel or in "
			    "defaults, not in a host");
			continue;
		}
		if (k == -1 && conf_index(conf_tkeys, TK_COUNT, name) != -1) {
			conf_err(cx, s, name, "belongs in a tunnel, not in %s",
			    in_defaults ? "defaults" : "a host");
			continue;
		}
		if (k == -1) {
			conf_err(cx, s, NULL, "unknown setting \"%s\" "
			    "(allowed: %s)", name, in_defaults ?
			    ALLOWED_DEFAULTS : ALLOWED_HOST);
			continue;
		}
		set |= 1U << k;
		if (k == HK_BACKOFF_INITIAL)
			bi = s;
		if (k == HK_BACKOFF_MAX)
			bm = s;
		if (conf_hsetting(cx, s, k, hc, defs) == -1)
			bad = 1;
	}
	/* Only when both values stand: a refused one was reported. */
	if (!bad && hc->backoff_max < hc->backoff_initial) {
		if (bm != NULL)
			conf_err(cx, bm, "backoff_max", "%g is less than "
			    "backoff_initial (%g); it must be at least that",
			    hc->backoff_max, hc->backoff_initial);
		else if (bi != NULL)
			conf_err(cx, bi, "backoff_initial", "%g is more than "
			    "backoff_max (%g); it must be at most that",
			    hc->backoff_initial, hc->backoff_max);
	}
	return (set);
}

/* The defaults block, on top of the built-in defaults in d. */
static void
conf_defaults(struct conf_ctx *cx, const config_setting_t *g,
    struct conf_defaults *d)
{
	strlcpy_(cx->where, "defaults", sizeof(cx->where));
	conf_hblock(cx, g, &d->hc, d);
	cx->where[0] = '\0';
}

/* The hosts block: one host_conf per member, defaults applied. */
static void
conf_hosts(struct conf_ctx *cx, const config_setting_t *g,
    const struct conf_defaults *d, struct conf *conf)
{
	const config_setting_t	*h;
	struct host_conf	*hc;
	const char		*name;
	char			 q[96];
	unsigned		 set;
	int			 i, j, n;

	n = config_setting_length(g);
	conf->hosts = xcalloc(n, sizeof(*conf->hosts));
	for (i = 0; i < n; i++) {
		h = config_setting_get_elem(g, i);
		name = config_setting_name(h);
		hc = &conf->hosts[conf->nhosts++];
		conf_hc_copy(hc, &d->hc);
		hc->line = config_setting_source_line(h);
		strlcpy_(hc->name, name, sizeof(hc->name));
		format_quoted(name, q, sizeof(q));
		snprintf(cx->where, sizeof(cx->where), "host %s", q);
		if (!valid_name(name))
			conf_err(cx, h, NULL, "%s is not a valid host name (%s)",
			    q, NAME_RULE);
		for (j = 0; j < i; j++)
			if (strcmp(conf->hosts[j].name, hc->name) == 0)
				conf_err(cx, h, NULL, "%s is also the name of "
				    "the host on line %d (names must be "
				    "unique)", q, conf->hosts[j].line);
		if (config_setting_type(h) != CONFIG_TYPE_GROUP) {
			conf_err(cx, h, NULL, "must be a group "
			    "({ address = \"...\"; ... })");
			continue;
		}
		set = conf_hblock(cx, h, hc, NULL);
		if (!(set & (1U << HK_ADDRESS))) {
			if (valid_host(name))
				strlcpy_(hc->address, name,
				    sizeof(hc->address));
			else
				conf_err(cx, h, "address", "missing, and the "
				    "host's name %s is not a host name (set "
				    "address)", q);
		}
		if (hc->nidentity == 0 && !hc->agent)
			conf_err(cx, h, "identity", "no identity files and "
			    "agent is false: nothing to log in with (give "
			    "identity files or set agent = true)");
	}
	cx->where[0] = '\0';
}

/* The index of a host by name, or -1. */
static int
conf_host_index(const struct conf *conf, const char *name)
{
	int i;

	for (i = 0; i < conf->nhosts; i++)
		if (strcmp(conf->hosts[i].name, name) == 0)
			return (i);
	return (-1);
}

/*
 * Jump hosts: each names another host; chains may be long but never loop.
 * A loop is reported once, on the host of the loop that comes first.
 */
static void
conf_jumps(struct conf_ctx *cx, const config_setting_t *g, struct conf *conf)
{
	const config_setting_t	*h, *s;
	struct host_conf	*hc;
	char			 q[96], *chain, *next;
	int			*to, i, j, steps, low;

	to = xcalloc(conf->nhosts, sizeof(*to));
	for (i = 0; i < conf->nhosts; i++)
		to[i] = conf->hosts[i].jump[0] != '\0' ?
		    conf_host_index(conf, conf->hosts[i].jump) : -1;
	for (i = 0; i < conf->nhosts; i++) {
		hc = &conf->hosts[i];
		h = config_setting_get_elem(g, i);
		if (config_setting_type(h) != CONFIG_TYPE_GROUP ||
		    (s = config_setting_get_member(h, "jump")) == NULL ||
		    config_setting_type(s) != CONFIG_TYPE_STRING)
			continue;
		format_quoted(hc->name, q, sizeof(q));
		snprintf(cx->where, sizeof(cx->where), "host %s", q);
		if (!conf_supported("jump"))
			conf_err(cx, s, "jump", "jump hosts are not supported "
			    "by this version yet");
		format_quoted(config_setting_get_string(s), q, sizeof(q));
		if (hc->jump[0] == '\0' || to[i] == -1) {
			conf_err(cx, s, "jump", "unknown host %s (must name "
			    "another host in hosts)", q);
			continue;
		}
		if (to[i] == i) {
			conf_err(cx, s, "jump", "%s is this host itself (must "
			    "name another host in hosts)", q);
			continue;
		}
		/* Is host i on a loop, and the first host of it? */
		low = i;
		for (j = to[i], steps = 0; j != -1 && j != i &&
		    steps < conf->nhosts; j = to[j], steps++)
			if (j < low)
				low = j;
		if (j != i || low != i)
			continue;
		chain = xstrdup(hc->name);
		for (j = to[i]; ; j = to[j]) {
			xasprintf(&next, "%s -> %s", chain,
			    conf->hosts[j].name);
			free(chain);
			chain = next;
			if (j == i)
				break;
		}
		conf_err(cx, s, "jump", "loop %s (a jump chain must end at a "
		    "host without jump)", chain);
		free(chain);
	}
	free(to);
	cx->where[0] = '\0';
}

/* A tunnel's listen and target, checked by what its kind allows. */
static void
conf_tunnel_ends(struct conf_ctx *cx, const config_setting_t *ts,
    const config_setting_t *ls, const config_setting_t *xs,
    struct tunnel_conf *tc, struct conf_tun *tp)
{
	const struct conf_type	*ty = tp->type;
	const char		*v, *forms;
	char			 err[ERR_MAXLEN];
	int			 flags;

	/* listen */
	if (ty != NULL && ty->remote) {
		flags = EP_LISTEN | EP_PORT0 | EP_NO_UNIX;
		forms = "PORT, ADDR:PORT, [IPV6]:PORT or *:PORT";
	} else {
		flags = EP_LISTEN | (ty == NULL ? EP_PORT0 : 0);
		forms = "PORT, ADDR:PORT, [IPV6]:PORT, *:PORT or an absolute "
		    "path";
	}
	if (ls == NULL)
		conf_err(cx, ts, "listen", "missing (use %s)", forms);
	else if ((v = conf_string(cx, ls, "listen", forms)) == NULL)
		;
	else if (ty != NULL && ty->remote && strchr(v, '/') != NULL)
		conf_err(cx, ls, "listen", "a %s tunnel listens on the server, "
		    "which can only be asked for TCP (use %s)", ty->name,
		    forms);
	else if (endpoint_parse(v, flags, &tc->listen, err, sizeof(err)) ==
	    -1)
		conf_err(cx, ls, "listen", "%s", err);
	else
		tp->listen_ok = 1;

	/* target */
	forms = "HOST:PORT, [IPV6]:PORT or an absolute path";
	if (ty != NULL && ty->dynamic) {
		if (xs != NULL)
			conf_err(cx, xs, "target", "a dynamic tunnel takes no "
			    "target");
		return;
	}
	if (xs == NULL) {
		if (ty != NULL)
			conf_err(cx, ts, "target", "missing (a %s tunnel needs "
			    "%s)", ty->name, forms);
		return;
	}
	if ((v = conf_string(cx, xs, "target", forms)) == NULL)
		return;
	if (endpoint_parse(v, 0, &tc->target, err, sizeof(err)) == -1)
		conf_err(cx, xs, "target", "%s", err);
}

/* One tunnel of the tunnels list. */
static void
conf_tunnel(struct conf_ctx *cx, const config_setting_t *ts, int idx,
    const struct conf_defaults *d, struct conf *conf, struct conf_tun *tps)
{
	const config_setting_t	*s, *set[TK_COUNT];
	struct tunnel_conf	*tc = &conf->tunnels[idx];
	struct conf_tun		*tp = &tps[idx];
	const char		*name, *v;
	char			 q[96];
	size_t			 i;
	int			 j, k, n;

	tc->line = config_setting_source_line(ts);
	tc->enabled = d->enabled;
	tc->connect_wait = d->connect_wait;
	tc->max_connections = d->max_connections;
	snprintf(tp->label, sizeof(tp->label), "#%d", idx + 1);
	if (config_setting_type(ts) == CONFIG_TYPE_GROUP &&
	    (s = config_setting_get_member(ts, "name")) != NULL &&
	    config_setting_type(s) == CONFIG_TYPE_STRING &&
	    valid_name(config_setting_get_string(s))) {
		tp->name_ok = 1;
		strlcpy_(tc->name, config_setting_get_string(s),
		    sizeof(tc->name));
		snprintf(tp->label, sizeof(tp->label), "\"%s\"", tc->name);
	}
	snprintf(cx->where, sizeof(cx->where), "tunnel %s", tp->label);
	if (config_setting_type(ts) != CONFIG_TYPE_GROUP) {
		conf_err(cx, ts, NULL, "must be a group ({ name = \"...\"; "
		    "... })");
		return;
	}

	memset(set, 0, sizeof(set));
	n = config_setting_length(ts);
	for (j = 0; j < n; j++) {
		s = config_setting_get_elem(ts, j);
		name = config_setting_name(s);
		if ((k = conf_index(conf_tkeys, TK_COUNT, name)) != -1)
			set[k] = s;
		else if ((k = conf_index(conf_hkeys, HK_COUNT, name)) != -1)
			conf_err(cx, s, name, "belongs in a host%s, not in a "
			    "tunnel", k == HK_ADDRESS || k == HK_JUMP ? "" :
			    " or in defaults");
		else
			conf_err(cx, s, NULL, "unknown setting \"%s\" "
			    "(allowed: " ALLOWED_TUNNEL ")", name);
	}

	/* name */
	if (set[TK_NAME] == NULL)
		conf_err(cx, ts, "name", "missing (%s)", NAME_RULE);
	else if ((v = conf_string(cx, set[TK_NAME], "name", NAME_RULE)) ==
	    NULL)
		;
	else if (!tp->name_ok) {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, set[TK_NAME], "name", "%s is not a valid name "
		    "(%s)", q, NAME_RULE);
	} else {
		for (j = 0; j < idx; j++) {
			if (tps[j].name_ok &&
			    strcmp(conf->tunnels[j].name, tc->name) == 0) {
				conf_err(cx, set[TK_NAME], "name", "%s is also "
				    "the name of the tunnel on line %d (names "
				    "must be unique)", tp->label,
				    conf->tunnels[j].line);
				break;
			}
		}
	}

	/* type */
	if (set[TK_TYPE] == NULL)
		conf_err(cx, ts, "type", "missing (use " TYPE_LIST ")");
	else if ((v = conf_string(cx, set[TK_TYPE], "type", TYPE_LIST)) !=
	    NULL) {
		for (i = 0; i < sizeof(conf_types) / sizeof(conf_types[0]);
		    i++)
			if (strcmp(conf_types[i].name, v) == 0)
				tp->type = &conf_types[i];
		format_quoted(v, q, sizeof(q));
		if (tp->type == NULL)
			conf_err(cx, set[TK_TYPE], "type", "%s is not one of "
			    "local, remote, dynamic, remote-dynamic", q);
		else {
			tc->type = tp->type->type;
			if (!conf_supported(tp->type->name))
				conf_err(cx, set[TK_TYPE], "type", "%s tunnels "
				    "are not supported by this version yet", q);
		}
	}

	/* via */
	if (set[TK_VIA] == NULL)
		conf_err(cx, ts, "via", "missing (must name a host in hosts)");
	else if ((v = conf_string(cx, set[TK_VIA], "via",
	    "the name of a host in hosts")) != NULL) {
		if (conf_host_index(conf, v) == -1) {
			format_quoted(v, q, sizeof(q));
			conf_err(cx, set[TK_VIA], "via", "unknown host %s "
			    "(must name a host in hosts)", q);
		} else
			strlcpy_(tc->via, v, sizeof(tc->via));
	}

	conf_tunnel_ends(cx, ts, set[TK_LISTEN], set[TK_TARGET], tc, tp);

	if (set[TK_ENABLED] != NULL)
		conf_bool(cx, set[TK_ENABLED], "enabled", &tc->enabled);
	if (set[TK_CONNECT_WAIT] != NULL)
		conf_int(cx, set[TK_CONNECT_WAIT], "connect_wait", 0, 3600,
		    &tc->connect_wait);
	if (set[TK_MAX_CONNECTIONS] != NULL)
		conf_int(cx, set[TK_MAX_CONNECTIONS], "max_connections",
		    MAXCONN_MIN, MAXCONN_MAX, &tc->max_connections);
}

/*
 * Whether two listeners would want the same socket: the same path, or the
 * same port on addresses that overlap ("" is 127.0.0.1, * is every one,
 * localhost is both loopbacks). Remote ones only clash on the same server,
 * and port 0 (the server chooses) never does. Returns 1 for a clash, 2 for
 * two remote ones with one port on different addresses, 0 for none.
 */
static int
conf_listen_clash(const struct tunnel_conf *a, const struct tunnel_conf *b)
{
	const struct endpoint	*ea = &a->listen, *eb = &b->listen;
	const char		*ha, *hb;
	int			 ra, rb;

	ra = a->type == TUNNEL_REMOTE || a->type == TUNNEL_REMOTE_DYNAMIC;
	rb = b->type == TUNNEL_REMOTE || b->type == TUNNEL_REMOTE_DYNAMIC;
	if (ra != rb || (ra && strcmp(a->via, b->via) != 0))
		return (0);
	if (ea->is_unix || eb->is_unix)
		return (ea->is_unix && eb->is_unix &&
		    strcmp(ea->path, eb->path) == 0);
	if (ea->port != eb->port || ea->port == 0)
		return (0);
	ha = ea->host[0] == '\0' ? "127.0.0.1" : ea->host;
	hb = eb->host[0] == '\0' ? "127.0.0.1" : eb->host;
	if (strcmp(ha, "*") == 0 || strcmp(hb, "*") == 0 ||
	    strcasecmp(ha, hb) == 0)
		return (1);
	if (strcmp(ha, "localhost") == 0 &&
	    (strcmp(hb, "127.0.0.1") == 0 || strcmp(hb, "::1") == 0))
		return (1);
	if (strcmp(hb, "localhost") == 0 &&
	    (strcmp(ha, "127.0.0.1") == 0 || strcmp(ha, "::1") == 0))
		return (1);
	/*
	 * The same port on two addresses of one server: libssh hands us a
	 * forwarded connection with its port only, so we could not tell
	 * which tunnel it is for.
	 */
	return (ra ? 2 : 0);
}

/* Two tunnels may not listen on the same place on the same side. */
static void
conf_clashes(struct conf_ctx *cx, const config_setting_t *list,
    struct conf *conf, struct conf_tun *tps)
{
	const config_setting_t	*ts, *ls;
	char			 a[PATH_MAXLEN + 32], b[PATH_MAXLEN + 32];
	int			 i, j, k;

	for (i = 0; i < conf->ntunnels; i++) {
		if (!tps[i].listen_ok || tps[i].type == NULL)
			continue;
		for (j = 0; j < i; j++) {
			if (!tps[j].listen_ok || tps[j].type == NULL ||
			    (k = conf_listen_clash(&conf->tunnels[i],
			    &conf->tunnels[j])) == 0)
				continue;
			ts = config_setting_get_elem(list, i);
			ls = config_setting_get_member(ts, "listen");
			snprintf(cx->where, sizeof(cx->where), "tunnel %s",
			    tps[i].label);
			endpoint_format(&conf->tunnels[i].listen, 0, a,
			    sizeof(a));
			endpoint_format(&conf->tunnels[j].listen, 0, b,
			    sizeof(b));
			if (k == 2)
				conf_err(cx, ls, "listen", "port %d is also "
				    "asked of host %s by tunnel %s (line %d, "
				    "%s); the server names only the port of "
				    "a forwarded connection, so two remote "
				    "tunnels via one host need different "
				    "ports", conf->tunnels[i].listen.port,
				    conf->tunnels[i].via, tps[j].label,
				    conf->tunnels[j].line, b);
			else if (strcmp(a, b) == 0)
				conf_err(cx, ls, "listen", "%s is also used by "
				    "tunnel %s (line %d)", a, tps[j].label,
				    conf->tunnels[j].line);
			else
				conf_err(cx, ls, "listen", "%s overlaps %s of "
				    "tunnel %s (line %d)", a, b, tps[j].label,
				    conf->tunnels[j].line);
			break;
		}
	}
	cx->where[0] = '\0';
}

/* The tunnels list. */
static void
conf_tunnels(struct conf_ctx *cx, const config_setting_t *list,
    const struct conf_defaults *d, struct conf *conf)
{
	struct conf_tun	*tps;
	int		 i, n;

	n = config_setting_length(list);
	conf->tunnels = xcalloc(n, sizeof(*conf->tunnels));
	tps = xcalloc(n, sizeof(*tps));
	conf->ntunnels = n;
	for (i = 0; i < n; i++)
		conf_tunnel(cx, config_setting_get_elem(list, i), i, d, conf,
		    tps);
	cx->where[0] = '\0';
	conf_clashes(cx, list, conf, tps);
	free(tps);
}

/* The whole file: top-level settings, then each block in order. */
static void
conf_parse(struct conf_ctx *cx, const config_setting_t *root,
    struct conf *conf)
{
	const config_setting_t	*s, *daemon = NULL, *defaults = NULL;
	const config_setting_t	*hosts = NULL, *tunnels = NULL;
	struct conf_defaults	 d;
	const char		*name;
	int			 i, n, type;

	n = config_setting_length(root);
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(root, i);
		name = config_setting_name(s);
		type = config_setting_type(s);
		if (strcmp(name, "version") == 0)
			conf_version(cx, s);
		else if (strcmp(name, "daemon") == 0 ||
		    strcmp(name, "defaults") == 0 ||
		    strcmp(name, "hosts") == 0) {
			if (type != CONFIG_TYPE_GROUP)
				conf_err(cx, s, name, "must be a group "
				    "({ ... })");
			else if (name[0] == 'd' && name[1] == 'a')
				daemon = s;
			else if (name[0] == 'd')
				defaults = s;
			else
				hosts = s;
		} else if (strcmp(name, "tunnels") == 0) {
			if (type == CONFIG_TYPE_LIST ||
			    (type == CONFIG_TYPE_ARRAY &&
			    config_setting_length(s) == 0))
				tunnels = s;
			else
				conf_err(cx, s, name, "must be a list "
				    "(( { ... }, { ... } ))");
		} else
			conf_err(cx, s, NULL, "unknown setting \"%s\" "
			    "(allowed: " ALLOWED_TOP ")", name);
	}

	conf->control_socket = xstrdup(DEFAULT_SOCKET_PATH);
	conf->status_gid = (gid_t)-1;
	conf->log_level = LOGL_INFO;
	conf->max_buffered = MAXBUF_DEFAULT;
	if (daemon != NULL)
		conf_daemon(cx, daemon, conf);

	memset(&d, 0, sizeof(d));
	conf_hc_init(&d.hc);
	d.connect_wait = 10;
	d.max_connections = MAXCONN_DEFAULT;
	d.enabled = 1;
	if (defaults != NULL)
		conf_defaults(cx, defaults, &d);

	if (hosts != NULL) {
		conf_hosts(cx, hosts, &d, conf);
		conf_jumps(cx, hosts, conf);
	}
	if (tunnels != NULL)
		conf_tunnels(cx, tunnels, &d, conf);
	conf_hc_clear(&d.hc);
}

/*
 * Read and check a configuration file. Returns the number of errors; with
 * none, *out is the new configuration. *errors is every error, one per
 * line ("PATH:LINE: where: setting: what is wrong"), or NULL when none;
 * the caller frees both.
 */
int
conf_load(const char *path, struct conf **out, char **errors)
{
	return (conf_load_text(path, NULL, out, errors));
}

/*
 * conf_load() on a file's contents in memory (tests/fuzz): the same checks
 * and errors, path only naming the file in them.
 */
int
conf_load_string(const char *path, const char *text, struct conf **out,
    char **errors)
{
	return (conf_load_text(path, text, out, errors));
}

/* Both of the above: text NULL reads the file. */
static int
conf_load_text(const char *path, const char *text, struct conf **out,
    char **errors)
{
	struct conf_ctx	 cx;
	config_t	 cfg;
	struct conf	*conf;
	int		 n;

	*out = NULL;
	memset(&cx, 0, sizeof(cx));
	cx.path = path;
	if (conf_parse_file(&cx, &cfg, text) == -1)
		return (conf_finish(&cx, errors));

	conf = xcalloc(1, sizeof(*conf));
	conf->path = xstrdup(path);
	conf_parse(&cx, config_root_setting(&cfg), conf);
	config_destroy(&cfg);
	conf_report_bigs(&cx);

	if ((n = conf_finish(&cx, errors)) == 0)
		*out = conf;
	else
		conf_free(conf);
	return (n);
}

/* Free a configuration from conf_load(). */
void
conf_free(struct conf *conf)
{
	int i;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->nhosts; i++)
		conf_hc_clear(&conf->hosts[i]);
	free(conf->hosts);
	free(conf->tunnels);
	free(conf->path);
	free(conf->control_socket);
	free(conf->control_group);
	free(conf->status_group);
	free(conf);
}

/* A host of a configuration by name, or NULL. */
const struct host_conf *
conf_host(const struct conf *conf, const char *name)
{
	int i;

	if ((i = conf_host_index(conf, name)) == -1)
		return (NULL);
	return (&conf->hosts[i]);
}

/* The name of a tunnel kind, as tunnels.conf spells it. */
const char *
tunnel_type_name(enum tunnel_type type)
{
	size_t i;

	for (i = 0; i < sizeof(conf_types) / sizeof(conf_types[0]); i++)
		if (conf_types[i].type == type)
			return (conf_types[i].name);
	return ("unknown");
}
