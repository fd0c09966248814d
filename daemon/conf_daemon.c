/*
 * conf_daemon.c: the daemon block of tunnels.conf: the control socket and
 * who may use it (control_group, status_group), the metrics listener, the
 * log level, the bound on bytes buffered for all connections (max_buffered).
 */
#include <sys/types.h>

#include <grp.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "tunneld.h"

#define ALLOWED_DAEMON	"control_socket, control_group, status_group, " \
			"metrics_listen, log_level, max_buffered"
#define METRICS_FORMS	"\"\" for none, PORT, ADDR:PORT, [IPV6]:PORT or *:PORT"

static void	 conf_status_group(struct conf_ctx *,
		    const config_setting_t *, const char *, struct conf *);
static void	 conf_metrics_listen(struct conf_ctx *,
		    const config_setting_t *, const char *, struct endpoint *);

/*
 * metrics_listen: "" for none, else a TCP endpoint to bind the Prometheus
 * responder on, in the forms of a tunnel's listen (the address is never
 * looked up: endpoint_parse() takes only *, localhost and IP addresses).
 */
static void
conf_metrics_listen(struct conf_ctx *cx, const config_setting_t *s,
    const char *name, struct endpoint *ep)
{
	const char	*v;
	char		 err[ERR_MAXLEN];

	memset(ep, 0, sizeof(*ep));
	if ((v = conf_string(cx, s, name, METRICS_FORMS)) == NULL || *v == '\0')
		return;
	if (endpoint_parse(v, EP_LISTEN | EP_NO_UNIX, ep, err,
	    sizeof(err)) == -1) {
		conf_err(cx, s, name, "%s", err);
		memset(ep, 0, sizeof(*ep));
	}
}

/*
 * status_group: "" for none, else a group that must exist now; its gid is
 * looked up here, at load, so that the control socket never asks NSS.
 */
static void
conf_status_group(struct conf_ctx *cx, const config_setting_t *s,
    const char *name, struct conf *conf)
{
	struct group	*gr;
	char		*v, q[96];

	if (config_setting_type(s) == CONFIG_TYPE_STRING &&
	    *config_setting_get_string(s) == '\0') {
		free(conf->status_group);
		conf->status_group = NULL;
		conf->status_gid = (gid_t)-1;
		return;
	}
	if (conf_group_name(cx, s, name, &v) == -1)
		return;
	if ((gr = getgrnam(v)) == NULL) {
		format_quoted(v, q, sizeof(q));
		conf_err(cx, s, name, "%s is not a group on this system", q);
		free(v);
		return;
	}
	free(conf->status_group);
	conf->status_group = v;
	conf->status_gid = gr->gr_gid;
}

/* The daemon block. */
void
conf_daemon(struct conf_ctx *cx, const config_setting_t *g, struct conf *conf)
{
	const config_setting_t	*s;
	const char		*name;
	char			*v;
	int			 n, k;

	strlcpy_(cx->where, "daemon", sizeof(cx->where));
	n = config_setting_length(g);
	for (k = 0; k < n; k++) {
		s = config_setting_get_elem(g, k);
		name = config_setting_name(s);
		if (strcmp(name, "control_socket") == 0) {
			if (conf_socket_path(cx, s, name, &v) == 0) {
				free(conf->control_socket);
				conf->control_socket = v;
			}
		} else if (strcmp(name, "control_group") == 0) {
			if (conf_group_name(cx, s, name, &v) == 0) {
				free(conf->control_group);
				conf->control_group = v;
			}
		} else if (strcmp(name, "status_group") == 0)
			conf_status_group(cx, s, name, conf);
		else if (strcmp(name, "metrics_listen") == 0)
			conf_metrics_listen(cx, s, name, &conf->metrics_listen);
		else if (strcmp(name, "log_level") == 0)
			conf_log_level(cx, s, name, &conf->log_level);
		else if (strcmp(name, "max_buffered") == 0)
			conf_int(cx, s, name, MAXBUF_MIN, MAXBUF_MAX,
			    &conf->max_buffered);
		else
			conf_err(cx, s, NULL, "unknown setting \"%s\" "
			    "(allowed: " ALLOWED_DAEMON ")", name);
	}
	cx->where[0] = '\0';
}
