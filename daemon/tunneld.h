/*
 * tunneld.h: the daemon's private structs and prototypes, grouped by the
 * file that defines them.
 *
 * Objects and owners (see docs/architecture.md):
 *
 *   struct tunneld   one; owns the conf, the links, the control clients
 *   struct link      one per host in use, on td->links; owns its fwds
 *   struct fwd       one per tunnel, on link->fwds; owns its chans
 *   struct chan      one per relayed connection, on fwd->chans
 *
 * Only the owner's *_free() frees an object; back pointers never own.
 * Objects are never freed inside a callback they are running in: they are
 * marked dead, unlinked and freed on the next loop turn (tunneld_reap_cb:
 * chans, then removed fwds on link->dying, then links on td->dead_links).
 */
#ifndef TUNNELD_H
#define TUNNELD_H

#include <sys/queue.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <libssh/libssh.h>
#include <libssh/callbacks.h>

#define TUNNELD_VERSION		"0.1.0"

#define DEFAULT_CONF_PATH	"/etc/tunnels.conf"
#define DEFAULT_SOCKET_PATH	"/run/tunneld/control.sock"
#define DEFAULT_KNOWN_HOSTS	"/var/lib/tunneld/known_hosts"

#define NAME_MAXLEN		64	/* tunnel and host names */
#define HOST_MAXLEN		255	/* a host name or address */
#define PATH_MAXLEN		107	/* sun_path less its NUL */
#define ERR_MAXLEN		512	/* last_error strings */
#define CONF_MAX_IDENTITIES	16

struct event_base;
struct evdns_base;
struct event;
struct evbuffer;
struct evconnlistener;
struct evdns_getaddrinfo_request;
struct evutil_addrinfo;
struct socks;

/* Tunnel kinds, as named in tunnels.conf. */
enum tunnel_type {
	TUNNEL_LOCAL,
	TUNNEL_REMOTE,
	TUNNEL_DYNAMIC,
	TUNNEL_REMOTE_DYNAMIC,
};

enum host_key_policy {
	HOSTKEY_STRICT,
	HOSTKEY_ACCEPT_NEW,
};

/* Log levels, most severe first (match syslog priorities). */
enum log_level {
	LOGL_ERROR = 3,
	LOGL_WARNING = 4,
	LOGL_NOTICE = 5,
	LOGL_INFO = 6,
	LOGL_DEBUG = 7,
};

/*
 * One end of a tunnel: a TCP address and port or a UNIX socket path.
 * For a listen endpoint host "" means loopback (127.0.0.1) and "*" means
 * every address; a target's host is resolved where the tunnel kind says.
 */
struct endpoint {
	int	is_unix;
	char	host[HOST_MAXLEN + 1];	/* no brackets around IPv6 */
	int	port;
	char	path[PATH_MAXLEN + 1];
};

/* A host from tunnels.conf, with the defaults already applied. */
struct host_conf {
	char			 name[NAME_MAXLEN + 1];
	char			 address[HOST_MAXLEN + 1];
	int			 port;
	char			 user[HOST_MAXLEN + 1];
	char			*identity[CONF_MAX_IDENTITIES];
	int			 nidentity;
	int			 agent;
	char			*known_hosts;
	enum host_key_policy	 host_key_policy;
	int			 connect_timeout;
	int			 keepalive_interval;
	int			 keepalive_count_max;
	double			 backoff_initial;
	double			 backoff_max;
	int			 backoff_reset_after;
	int			 compression;	/* zlib, like ssh -C */
	char			 ciphers[256];	/* "a,b"; "" = libssh's */
	char			 jump[NAME_MAXLEN + 1];	/* "" when direct */
	int			 max_window;	/* bytes a channel's window grows to */
	int			 line;
};

/* A tunnel from tunnels.conf, with the defaults already applied. */
struct tunnel_conf {
	char			 name[NAME_MAXLEN + 1];
	enum tunnel_type	 type;
	char			 via[NAME_MAXLEN + 1];
	struct endpoint		 listen;
	struct endpoint		 target;	/* unused by the dynamic kinds */
	int			 enabled;
	int			 connect_wait;
	int			 max_connections;	/* 1-1000000 (0: no cap) */
	int			 line;
};

/*
 * A rate limit on one kind of log line about one object (logrl.c): the
 * first line of a burst, then a summary of how many more per window. All
 * zero is a limiter not in use.
 */
struct logrl {
	struct event		*ev;		/* the window's end; owned */
	const char		*what;		/* "failed connections" */
	char			 prefix[NAME_MAXLEN + 16];	/* "tunnel pg" */
	int			 pri;
	double			 start;		/* monotonic; 0: no burst */
	double			 window;	/* seconds */
	unsigned long		 more;		/* held back in this window */
};

/*
 * A permanent failure of a link or tunnel (errclass.c): set while it
 * needs a person, with the error text last logged at warning.
 */
struct attention {
	int			 on;		/* needs_attention */
	char			 said[ERR_MAXLEN];
};

/* A whole configuration file, parsed and validated. */
struct conf {
	char			*path;
	char			*control_socket;
	char			*control_group;	/* NULL: no group change */
	char			*status_group;	/* read-only; NULL: none */
	gid_t			 status_gid;	/* status_group's, at load */
	struct endpoint		 metrics_listen;	/* port 0: none */
	enum log_level		 log_level;
	int			 max_buffered;	/* MiB, all connections */
	struct host_conf	*hosts;
	int			 nhosts;
	struct tunnel_conf	*tunnels;
	int			 ntunnels;
};

/* Global requests a link sends one at a time (greq.c). */
enum greq_type {
	GREQ_KEEPALIVE,
	GREQ_LISTEN,
	GREQ_CANCEL,
	GREQ_PROBE,		/* may we forward at all? (fwd_remote.c) */
};

/* What a session knows of the server's remote forwards (link->rfwd). */
#define RFWD_UNKNOWN	0
#define RFWD_PROBING	1	/* a GREQ_PROBE is queued */
#define RFWD_NONE	2	/* it refuses every one */
#define RFWD_SOME	3	/* it granted one */

struct greq {
	TAILQ_ENTRY(greq)	 entry;		/* on link->greqs */
	enum greq_type		 type;
	struct fwd		*fwd;		/* who asked; NULL once gone */
	char			 tunnel[NAME_MAXLEN + 1];	/* its name */
	char			 addr[HOST_MAXLEN + 1];
	int			 port;
	int			 req_port;	/* cancel: the port asked for */
};

/*
 * A listener the server kept for our session after refusing our
 * cancel-tcpip-forward (Dropbear before 2026.90 refuses them all): its
 * connections are closed, and a tunnel that asks for the same listener
 * takes it back instead of being refused against ourselves. Gone with the
 * session (fwd_remote.c).
 */
struct leftover {
	TAILQ_ENTRY(leftover)	 entry;		/* on link->leftovers */
	char			 tunnel[NAME_MAXLEN + 1];	/* whose it was */
	char			 addr[HOST_MAXLEN + 1];	/* as asked for */
	int			 req_port;	/* as asked for: 0 = any */
	int			 port;		/* where the server listens */
};

/* Link states, as tunctl shows them. */
enum link_state {
	LINK_IDLE,
	LINK_CONNECTING,
	LINK_UP,
	LINK_BACKOFF,
	LINK_FAILED,
	LINK_WAITING,		/* its jump host's link is not up */
};

/* Steps inside LINK_CONNECTING. */
enum link_phase {
	PHASE_NONE,
	PHASE_TCP,		/* resolving and connecting (dial.c) */
	PHASE_HANDSHAKE,
	PHASE_AUTH,
};

TAILQ_HEAD(fwdlist, fwd);

/*
 * A link's counters for the metrics (metrics.c): the keepalive round
 * trips as a histogram (a count per bucket, not cumulative; the last one
 * is +Inf), how often it came up and how often it failed.
 */
#define METRICS_RTT_BUCKETS	16
struct link_stats {
	uint64_t		 ups;		/* sessions that came up */
	uint64_t		 failures;	/* attempts failed, sessions lost */
	uint64_t		 rtt_count;
	double			 rtt_sum;	/* seconds */
	uint64_t		 rtt_bucket[METRICS_RTT_BUCKETS];
};

/* One SSH session to one host, shared by every tunnel via that host. */
struct link {
	TAILQ_ENTRY(link)	 entry;		/* on td->links */
	struct host_conf	*hc;		/* owned copy */

	enum link_state		 state;
	enum link_phase		 phase;
	time_t			 since;		/* wall clock of the last change */
	double			 since_mono;
	int			 retries;	/* failures in a row */
	double			 next_retry;	/* monotonic, 0 when none */
	double			 up_at;		/* monotonic, when it came up */
	long			 rtt_us;	/* last keepalive round trip, -1 */
	uint64_t		 conns;		/* chans of all its tunnels */
	char			 last_error[ERR_MAXLEN];
	time_t			 last_error_time;	/* wall clock, 0: unknown */
	double			 last_error_mono;
	int			 dead;		/* on td->dead_links */
	struct link_stats	 stats;		/* for the metrics */

	/* Connecting. */
	struct dial		*dial;		/* resolving and connecting */
	char			 peer[HOST_MAXLEN + 16];	/* addr:port in use */
	int			 auth_step;	/* agent, then identity files */
	ssh_key			 key;		/* identity being offered */
	struct agent		*agent;		/* our agent client, owned */
	char			 auth_notes[ERR_MAXLEN];	/* keys tried */

	/* The session. */
	int			 fd;		/* owned; -1 when none */
	ssh_session		 session;
	ssh_event		 sev;
	struct ssh_counter_struct sockc;	/* socket bytes in and out */
	struct ssh_counter_struct pktc;		/* SSH packets in and out */
	int			 want_write;	/* EV_WRITE armed */
	int			 readable;	/* the socket event saw EV_READ */
	int			 read_paused;	/* EV_READ off: memory budget */
	int			 in_pump;

	/* Timers and events, all owned. */
	struct event		*ev_io;		/* the session fd */
	struct event		*ev_timer;	/* connect deadline or backoff */
	struct event		*ev_keepalive;
	struct event		*ev_kick;	/* run the pump on the next turn */
	struct event		*ev_probe;	/* a network change's probe deadline */

	/* Keepalive and the global-request slot. */
	uint64_t		 ka_rx_mark;	/* pktc.in_packets at the last tick */
	int			 ka_missed;
	int			 greq_busy;	/* the first greq is in flight */
	double			 greq_sent;	/* monotonic send time */
	TAILQ_HEAD(, greq)	 greqs;
	TAILQ_HEAD(, leftover)	 leftovers;	/* the server kept these */
	int			 nleftovers;
	int			 cancel_refused;	/* the server did once */
	double			 probe_start;	/* monotonic; 0: no probe out */
	double			 probe_wait;	/* its deadline, seconds */
	int			 probe_half;	/* in its second half */
	uint64_t		 probe_mark;	/* pktc.in_packets at the half */
	uint64_t		 probe_acked;	/* our bytes acked, at the half */

	int			 out_blocked;	/* session output not flushed */
	size_t			 turn_budget;	/* client bytes left this turn */
	uint64_t		 pump_rx_mark;	/* pktc.in_packets at the last pump */

	struct fwdlist		 fwds;
	struct fwdlist		 dying;		/* removed, chans still opening */
	struct fwdlist		 hops;		/* carry links behind this one */
	struct fwd		*hop;		/* on the jump link: carries us */
	char			 hop_error[ERR_MAXLEN];	/* why the hop failed */
	int			 hop_refused;	/* ...for good (errclass.c) */
	struct attention	 attn;		/* a permanent failure */
	int			 rfwd;		/* remote forwards: RFWD_* */
	int			 nremote;	/* remote-kind fwds */
	TAILQ_HEAD(, chan)	 ready;		/* chans with work for the pump */
	TAILQ_HEAD(, chan)	 parked;	/* chans waiting for a packet */
};

/* Tunnel states, as tunctl shows them. */
enum fwd_state {
	FWD_DOWN,
	FWD_STARTING,
	FWD_WAITING,
	FWD_UP,
	FWD_FAILED,
};

/* One tunnel: its listener (or remote binding) and its connections. */
struct fwd {
	TAILQ_ENTRY(fwd)	 entry;		/* on link->fwds or ->dying */
	struct link		*link;		/* back pointer */
	struct tunnel_conf	*tc;		/* owned copy */
	int			 dead;		/* removed: on link->dying */
	int			 is_hop;	/* on link->hops, not a tunnel */
	struct link		*hop_for;	/* the link it carries, or NULL */

	enum fwd_state		 state;
	time_t			 since;
	double			 since_mono;
	char			 last_error[ERR_MAXLEN];	/* kept once up */
	time_t			 last_error_time;	/* wall clock, 0: unknown */
	double			 last_error_mono;
	struct logrl		 rl_conn;	/* failed connections */
	struct logrl		 rl_admit;	/* max_connections refusals */
	struct attention	 attn;		/* a permanent failure */
	uint64_t		 open_ok_ups;	/* link's stats.ups at an open */

	int			 enabled;	/* admin state: up or down */
	struct evconnlistener	*listener;
	int			 bound_port;	/* the actual port, 0 if none */
	int			 listen_unit;	/* listener from a socket unit */
	int			 listen_stored;	/* a copy in systemd's store */
	int			 remote_bound;	/* the server listens for us */
	int			 remote_kept;	/* ...though we are down */
	int			 bind_failures;
	struct event		*ev_retry;	/* bind retry */
	struct event		*ev_accept;	/* re-enable accept after EMFILE */

	uint64_t		 conns_active;
	uint64_t		 conns_total;
	uint64_t		 conns_failed;
	uint64_t		 bytes_in;	/* client -> target (IN) */
	uint64_t		 bytes_out;	/* target -> client (OUT) */

	TAILQ_HEAD(, chan)	 chans;
};

/* Phases of one relayed connection. */
enum chan_state {
	CHAN_WAITING,		/* accepted, waiting for the link */
	CHAN_OPENING,		/* direct-tcpip sent, no answer yet */
	CHAN_CONNECTING,	/* forwarded channel, connecting the target */
	CHAN_SOCKS,		/* reading the SOCKS request */
	CHAN_OPEN,
	CHAN_DEAD,
};

#define CHAN_NOWHERE	0
#define CHAN_READY	1
#define CHAN_PARKED	2

/* One relayed stream: a local socket and an SSH channel. */
struct chan {
	TAILQ_ENTRY(chan)	 entry;		/* on fwd->chans or td->reap */
	TAILQ_ENTRY(chan)	 ready_entry;	/* on link->ready or parked */
	int			 where;		/* CHAN_NOWHERE, _READY, _PARKED */
	struct fwd		*fwd;		/* back pointer */
	enum chan_state		 state;

	int			 fd;		/* the client socket, owned; -1 */
	struct event		*ev_read;	/* one-shot: the client sent */
	struct event		*ev_write;	/* one-shot: room to send */
	struct evbuffer		*out;		/* target -> client backlog */
	struct evbuffer		*pend;		/* client -> target, not taken */
	ssh_channel		 ch;
	struct ssh_channel_callbacks_struct cb;
	struct event		*ev_wait;	/* connect_wait deadline */
	struct link		*link;		/* back pointer */
	struct dial		*dial;		/* connecting the target */

	int			 local_eof;	/* read EOF from the client */
	int			 eof_sent;	/* sent SSH EOF */
	int			 remote_eof;	/* got SSH EOF */
	int			 remote_closed;	/* got SSH CLOSE */
	int			 shut_wr;	/* shutdown(SHUT_WR) done */
	int			 leftover;	/* bytes left inside libssh */
	int			 closing;	/* close once the output is out */
	struct socks		*socks;		/* dynamic kinds: the request */
	uint8_t			 sreply[24];	/* SOCKS reply for the channel */
	size_t			 sreply_len;
	char			 peer[HOST_MAXLEN + 16];

	/* The receive window (window.c); win 0 until data arrives. */
	uint32_t		 win;		/* libssh's window + what it holds */
	uint32_t		 win_left;	/* libssh's window, at least */
	uint32_t		 win_kept;	/* bytes libssh holds for us */
	int			 win_topup;	/* in a top-up: take every byte */
	uint64_t		 win_rx;	/* bytes taken from the channel */
	uint64_t		 win_mark;	/* win_rx when the round began */
	double			 win_epoch;	/* monotonic: the round began */
	double			 win_rtt;	/* the channel open's round trip */

	TAILQ_ENTRY(chan)	 budget_entry;	/* waiting for membudget.c */
	int			 budget_wait;	/* on that list */
};

TAILQ_HEAD(linklist, link);
TAILQ_HEAD(chanlist, chan);

/* The daemon. */
struct tunneld {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct conf		*conf;
	const char		*conf_path;
	const char		*socket_path;	/* -s, or NULL */
	const char		*log_file;	/* -l, or NULL */
	int			 foreground;
	int			 verbose;
	int			 stopping;

	struct linklist		 links;
	struct linklist		 dead_links;	/* removed, freed next turn */
	struct chanlist		 reap;		/* dead chans to free */
	struct event		*ev_reap;	/* frees chans, fwds, links */
};

extern struct tunneld *td;

/* log.c */
void	log_init(int, int);
void	log_set_via(const char *(*)(const char *));
void	log_setlevel(int);
int	log_getlevel(void);
int	log_journal_stream(const char *, int);
void	log_subject(const char *, char *, char *);
int	log_open(const char *);
void	log_reopen(void);
void	log_close(void);
int	log_syslog_reachable(void);
void	log_pri(int, const char *, ...) __attribute__((format(printf, 2, 3)));
void	log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_errorx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_notice(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/* logrl.c */
void	logrl_log(struct logrl *, int, const char *, const char *, ...)
	    __attribute__((format(printf, 4, 5)));
void	logrl_clear(struct logrl *);

/* errclass.c */
int	 errclass_open_permanent(int);
int	 errclass_privileged(int, const char *);
int	 errclass_note(struct attention *, const char *, const char *);
void	 errclass_clear(struct attention *, const char *);
void	 errclass_drop(struct attention *);
int	 errclass_link(const struct link *);
int	 errclass_fwd(const struct fwd *);

/* util.c */
#define EP_LISTEN	0x01	/* a listen endpoint: host may be empty or * */
#define EP_PORT0	0x02	/* port 0 allowed (remote listen) */
#define EP_NO_UNIX	0x04	/* UNIX paths not allowed */
int	 endpoint_parse(const char *, int, struct endpoint *, char *, size_t);
void	 endpoint_format(const struct endpoint *, int, char *, size_t);
struct sockaddr;
struct sockaddr_storage;
void	 sockaddr_format(const struct sockaddr *, char *, size_t);
int	 ssh_open_failure(const char *, char *, size_t);
int	 sockaddr_port(const struct sockaddr_storage *);
int	 sockaddr_same_host(const struct sockaddr_storage *,
	    const struct sockaddr_storage *);
int	 sockaddr_is_any(const struct sockaddr_storage *);
int	 endpoint_equal(const struct endpoint *, const struct endpoint *);
double	 backoff_delay(int, double, double, double);
double	 monotime(void);
void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
char	*xstrdup(const char *);
int	 xasprintf(char **, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
size_t	 strlcpy_(char *, const char *, size_t);
int	 valid_name(const char *);
int	 valid_host(const char *);
void	 format_quoted(const char *, char *, size_t);
void	 format_duration(double, char *, size_t);
void	 format_bytes(uint64_t, char *, size_t);
void	 format_rfc3339(time_t, char *, size_t);

/* conf.c */
int	 conf_load(const char *, struct conf **, char **);
int	 conf_load_string(const char *, const char *, struct conf **,
	    char **);
void	 conf_free(struct conf *);
const struct host_conf *conf_host(const struct conf *, const char *);
const char *tunnel_type_name(enum tunnel_type);

/* conf_value.c */
struct config_t;
struct config_setting_t;
struct conf_msg;
struct conf_big;

/* One conf_load() call: its errors, and the integers libconfig cut short. */
struct conf_ctx {
	const char	*path;
	char		 where[NAME_MAXLEN + 96];	/* host "db", ... */
	struct conf_msg	*msgs;
	int		 nmsgs;
	int		 msgcap;
	struct conf_big	*bigs;
	int		 nbigs;
	int		 bigcap;
};

void	 conf_err(struct conf_ctx *, const struct config_setting_t *,
	    const char *, const char *, ...)
	    __attribute__((format(printf, 4, 5)));
int	 conf_finish(struct conf_ctx *, char **);
int	 conf_parse_file(struct conf_ctx *, struct config_t *,
	    const char *);
void	 conf_report_bigs(struct conf_ctx *);
void	 conf_version(struct conf_ctx *, const struct config_setting_t *);
int	 conf_int(struct conf_ctx *, const struct config_setting_t *,
	    const char *, long, long, int *);
int	 conf_float(struct conf_ctx *, const struct config_setting_t *,
	    const char *, double, double, double *);
int	 conf_bool(struct conf_ctx *, const struct config_setting_t *,
	    const char *, int *);
const char *conf_string(struct conf_ctx *, const struct config_setting_t *,
	    const char *, const char *);
int	 conf_path(struct conf_ctx *, const struct config_setting_t *,
	    const char *, char **);
int	 conf_socket_path(struct conf_ctx *, const struct config_setting_t *,
	    const char *, char **);
int	 conf_group_name(struct conf_ctx *, const struct config_setting_t *,
	    const char *, char **);
int	 conf_log_level(struct conf_ctx *, const struct config_setting_t *,
	    const char *, enum log_level *);

/* conf_daemon.c */
void	 conf_daemon(struct conf_ctx *, const struct config_setting_t *,
	    struct conf *);
int	 conf_address(struct conf_ctx *, const struct config_setting_t *,
	    const char *, char *, size_t);
int	 conf_user_name(struct conf_ctx *, const struct config_setting_t *,
	    const char *, char *, size_t);
int	 conf_host_key_policy(struct conf_ctx *,
	    const struct config_setting_t *, const char *,
	    enum host_key_policy *);
int	 conf_identity(struct conf_ctx *, const struct config_setting_t *,
	    struct host_conf *);
int	 conf_ciphers(struct conf_ctx *, const struct config_setting_t *,
	    const char *, char *, size_t);
int	 conf_index(const char *const *, int, const char *);
void	 conf_hc_init(struct host_conf *);
void	 conf_hc_copy(struct host_conf *, const struct host_conf *);
void	 conf_hc_clear(struct host_conf *);

/* dial.c */
struct dial;
/*
 * The result of dial_start(who, host, port, attempt_timeout, cb, arg), on a
 * later loop turn; the dial is freed when cb returns (forget the pointer).
 * Connected: (fd, peer, NULL, arg), the non-blocking socket now the
 * callee's, peer "1.2.3.4:22" or "[2001:db8::1]:22". Failed: (-1, the last
 * address tried or "", why, arg). dial_cancel: no cb after it; a no-op
 * inside cb.
 */
typedef void (*dial_cb)(int, const char *, const char *, void *);
struct dial *dial_start(const char *, const char *, int, double, dial_cb,
	    void *);
void	 dial_cancel(struct dial *);
int	 dial_resolving(const struct dial *);

/* link.c */
struct link *link_new(const struct host_conf *);
void	 link_free(struct link *);
void	 link_remove(struct link *);
void	 link_reconfigure(struct link *, const struct host_conf *);
struct link *link_find(const char *);
void	 link_update(struct link *);
void	 link_retry_now(struct link *);
void	 link_fail(struct link *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 link_refused(struct link *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 link_established(struct link *);
void	 link_start_ssh(struct link *);
void	 link_set_connecting(struct link *);
void	 link_wait(struct link *);
void	 link_connect_now(struct link *);
const char *link_state_name(enum link_state);
void	 link_probe(struct link *, double);
void	 link_probe_answered(struct link *);
void	 link_kick(struct link *);
int	 link_fd_lost(struct link *);

/* jump.c */
void	 jump_connect(struct link *);
void	 jump_cut(struct link *);
void	 jump_drop(struct link *);
void	 jump_state_changed(struct link *);
void	 jump_free_hops(struct link *);
int	 jump_in_use(const struct link *);

/* handshake.c */
int	 handshake_step(struct link *);
const char *handshake_waiting(struct link *, char *, size_t);
const char *handshake_stalled(struct link *, char *, size_t);

/* known_hosts.c */
int	 known_hosts_add(const char *, const char *, char *, size_t);
int	 known_hosts_open(const char *);
int	 known_hosts_not_regular(const char *);

/* agent.c: our ssh-agent client; libssh only reads what it prepared. */
struct agent;
enum agent_state {
	AGENT_BUSY,		/* a request is out: the link is kicked */
	AGENT_IDLE,		/* ready for a pass */
	AGENT_PASS,		/* ssh_userauth_agent is running */
	AGENT_REFUSED,		/* the agent would not sign */
	AGENT_FAILED,		/* unusable: agent_error() */
};
struct agent *agent_new(struct link *, const char *, double);
void	 agent_free(struct agent *);
enum agent_state agent_status(const struct agent *);
const char *agent_error(const struct agent *);
int	 agent_keys_left(const struct agent *);
int	 agent_signing(const struct agent *);
int	 agent_signed(const struct agent *);
const unsigned char *agent_key_blob(const struct agent *, int, size_t *);
int	 agent_prime(struct agent *, ssh_session);
int	 agent_collect(struct agent *);
void	 agent_sign(struct agent *, int);
void	 agent_skip(struct agent *);

/* greq.c */
struct greq *greq_push(struct link *, enum greq_type, struct fwd *,
	    const char *, int);
int	 greq_pending(struct link *, enum greq_type, struct fwd *);
void	 greq_forget(struct link *, struct fwd *);
void	 greq_clear(struct link *);
void	 greq_run(struct link *);

/* membudget.c */
#define MAXBUF_DEFAULT	256		/* max_buffered, MiB */
#define MAXBUF_MIN	16
#define MAXBUF_MAX	65536
void	 membudget_init(void);
void	 membudget_free(void);
void	 membudget_set_cap(uint64_t);
void	 membudget_track(struct evbuffer *, int);
void	 membudget_untrack(struct evbuffer *, int);
void	 membudget_adjust(int64_t);
int	 membudget_full(void);
int	 membudget_links_paused(void);
void	 membudget_wait(struct chan *);
void	 membudget_forget(struct chan *);
void	 membudget_stats(uint64_t *, uint64_t *, uint64_t *, uint64_t *);

/* sendq.c */
void	 sendq_attach(int);
void	 sendq_detach(int);
size_t	 sendq_pending(int);
int	 sendq_flush(int);
void	 sendq_cork(int);
void	 sendq_uncork(int);

/* pump.c */
void	 pump_start(struct link *);
void	 pump_stop(struct link *);
void	 pump_run(struct link *);
void	 pump_update_event(struct link *);
void	 pump_keepalive_tick(struct link *);

/* fwd_remote.c */
void	 fwd_remote_start(struct fwd *);
void	 fwd_remote_stop(struct fwd *);
void	 fwd_remote_bound(struct fwd *, int, int);
void	 fwd_remote_probed(struct link *, int, int);
void	 fwd_remote_accept(struct link *);
int	 fwd_remote_adopt(struct link *, struct fwd *);
void	 fwd_remote_kept(struct link *, const struct greq *);
void	 fwd_remote_forget_leftovers(struct link *);
int	 fwd_is_remote(const struct fwd *);

/* chan_socks.c */
void	 chan_socks_start(struct chan *);
void	 chan_socks_refuse(struct chan *, int, const char *);
void	 chan_socks_read(struct chan *);
size_t	 chan_socks_input(struct chan *, const void *, size_t);
void	 chan_socks_step(struct chan *);
void	 chan_socks_opened(struct chan *, int, const char *);
void	 chan_socks_connected(struct chan *, int, const char *);
int	 chan_socks_target(const struct chan *, struct endpoint *);

/* chan_connect.c */
void	 chan_connect(struct chan *, const struct endpoint *);
void	 chan_connect_cancel(struct chan *);
void	 chan_connect_done(struct chan *);

/* sdfds.c */
int	 sdfds_init(void);
int	 sdfds_control(const char *);
int	 sdfds_take(const char *, int *);
void	 sdfds_give_back(const char *, int);
int	 sdfds_store(const char *, int);
void	 sdfds_unstore(const char *);
void	 sdfds_leftovers(void);
void	 sdfds_free(void);

/* fwd_local.c */
int	 fwd_local_bind(struct fwd *, char *, size_t);
void	 fwd_local_unbind(struct fwd *);
void	 fwd_local_take(struct fwd *, struct fwd *);
void	 fwd_local_resume_cb(int, short, void *);

/* fwd.c */
struct fwd *fwd_new(struct link *, const struct tunnel_conf *);
void	 fwd_free(struct fwd *);
void	 fwd_remove(struct fwd *);
struct fwdlist *fwd_list(struct fwd *);
void	 fwd_reap(struct link *);
struct fwd *fwd_find(const char *);
const char *fwd_via(const char *);
int	 fwd_enable(struct fwd *);
void	 fwd_disable(struct fwd *);
void	 fwd_restart(struct fwd *);
void	 fwd_link_up(struct fwd *);
void	 fwd_link_down(struct fwd *);
void	 fwd_settle(struct fwd *);
int	 fwd_admit(struct fwd *, const char *);
void	 fwd_schedule_retry(struct fwd *);
void	 fwd_set_state(struct fwd *, enum fwd_state, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	 fwd_note_error(struct fwd *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 fwd_refused(struct fwd *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 fwd_recovered(struct fwd *);
const char *fwd_state_name(enum fwd_state);

/* chan.c */
struct chan *chan_new(struct fwd *, int, const char *);
struct chan *chan_new_forwarded(struct fwd *, ssh_channel, const char *);
void	 chan_free(struct chan *);
void	 chan_kill(struct chan *, const char *);
void	 chan_want(struct chan *);
void	 chan_pump(struct chan *);
void	 chan_link_lost(struct chan *);
void	 chan_reap_all(void);
void	 chan_attach(struct chan *, int);
void	 chan_link_wait(struct chan *);
size_t	 chan_send(struct chan *, const void *, size_t);
void	 chan_park(struct chan *);
void	 chan_connected(struct chan *);
void	 chan_connect_failed(struct chan *, const char *);
void	 chan_reap_cb(int, short, void *);

/* window.c */
int	 window_data(struct chan *, size_t, size_t);
void	 window_read(struct chan *, int, size_t);
int	 window_topup(struct chan *, void *, size_t);
void	 window_release(struct chan *);
void	 window_set_budget(uint64_t);

/* What a peer may do. */
enum control_access {
	CONTROL_DENY,
	CONTROL_READ,		/* status_group: the verbs that only read */
	CONTROL_ALL,
};

/* Who is at the other end, as the kernel saw it at connect(2). */
struct control_peer {
	uid_t			 uid;		/* (uid_t)-1: unknown */
	gid_t			 gid;
	pid_t			 pid;
	gid_t			*groups;	/* supplementary; owned */
	int			 ngroups;
};

/* control_access.c */
mode_t	 control_access_mode(void);
void	 control_access_group(const char *, const char *);
int	 control_access_privileged(uid_t);
void	 control_peer_get(int, struct control_peer *);
enum control_access control_access(const struct control_peer *);
void	 control_access_refuse(int, struct control_peer *);
int	 control_access_check(const struct control_peer *, int, const char *,
	    char *, size_t);
void	 control_access_free(void);

/* control.c */
int	 control_init(const char *, const char *);
void	 control_shutdown(void);
int	 control_move(const char *, const char *, char *, size_t);
void	 control_state_changed(void);
void	 control_reconf(void);

/* events.c */
#define EVENTS_RING		256	/* events kept */
#define EVENTS_REASON_MAX	200	/* bytes of a reason kept, NUL included */
#define EVENTS_LINE_MAX		1024	/* one event as text or JSON */
#define EVENTS_LINK		0
#define EVENTS_TUNNEL		1

/* One event of the history: fixed size. */
struct events_entry {
	uint64_t	 seq;		/* from 1, in order */
	struct timespec	 time;		/* wall clock, never going back */
	struct timespec	 last;		/* of the last repeat */
	uint32_t	 repeats;	/* 1: happened once */
	int		 kind;		/* EVENTS_LINK, EVENTS_TUNNEL */
	char		 name[NAME_MAXLEN + 1];
	char		 old[12];
	char		 new[12];
	char		 reason[EVENTS_REASON_MAX];
};
struct events_sub;
struct evbuffer;
struct bufferevent;

void	 events_cause(const char *, ...)
	    __attribute__((format(printf, 1, 2)));
void	 events_link(const struct link *, const char *, const char *);
void	 events_tunnel(const struct fwd *, const char *, const char *,
	    const char *);
struct events_entry *events_record(int, const char *, const char *,
	    const char *, const char *, int *);
int	 events_format(const struct events_entry *, int, char *, size_t);
size_t	 events_history(struct evbuffer *, int);
struct events_sub *events_subscribe(struct bufferevent *, int, size_t,
	    void (*)(void *), void *);
void	 events_unsubscribe(struct events_sub *);
void	 events_shutdown(void);

/* control_sock.c */
int	 control_sock_bind(const char *, const char *, mode_t, dev_t *,
	    ino_t *);
void	 control_sock_unlink(const char *, dev_t, ino_t);
void	 control_sock_claim(void);

/* reload.c */
int	 reload_run(char **, char *, size_t);

/* control_show.c */
struct ctl_request;

#define CONTROL_MSG_MAX		2048	/* a final line's message */

/* A message for a final line, cut with "..." when it grows too long. */
struct control_msg {
	char	buf[CONTROL_MSG_MAX];
	size_t	off;
	int	full;
};

void	 control_show_status(struct evbuffer *, struct fwd **, int, int,
	    double);
void	 control_show_links(struct evbuffer *, int, double);
void	 control_show_msg_add(struct control_msg *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
int	 control_show_select(const struct ctl_request *, struct fwd ***,
	    int *);
void	 control_show_notup_msg(struct control_msg *, struct fwd **, int);
void	 control_show_wait_msg(struct control_msg *,
	    const struct ctl_request *, int);

/* main.c */
void	 tunneld_reap_soon(void);

/* listen_tcp.c */
struct sockaddr_storage;
int	 listen_tcp_addr(const struct endpoint *, struct sockaddr_storage *,
	    socklen_t *, int *);
int	 listen_tcp(const struct endpoint *, int, int *, char *, size_t);

/* metrics.c */
void	 metrics_render(struct evbuffer *);
void	 metrics_rtt_observe(struct link_stats *, double);
void	 metrics_label_value(struct evbuffer *, const char *);

/* metrics_http.c */
int	 metrics_http_parse(const char *, size_t, int *);
void	 metrics_http_start(const struct endpoint *);
void	 metrics_http_reconf(const struct endpoint *, char *, size_t);
void	 metrics_http_stop(void);
void	 metrics_http_render(struct evbuffer *);

/* netwatch.c: what changed, as netwatch_changed() is told */
#define NETWATCH_ADDR		0x01	/* an address came or went */
#define NETWATCH_ROUTE		0x02	/* a route came or went */
#define NETWATCH_OVERRUN	0x04	/* netlink messages were lost */
#define NETWATCH_RESOLVER	0x08	/* resolv.conf or the hosts file */
#define NETWATCH_RESUME		0x10	/* the machine slept */
void	 netwatch_init(void);
void	 netwatch_free(void);
void	 netwatch_changed(unsigned int);
uint64_t netwatch_tcp_acked(int);

/* resolvwatch.c */
void	 resolvwatch_init(void);
void	 resolvwatch_free(void);

/* resume.c */
struct resume_clock {
	double	gap;		/* CLOCK_BOOTTIME - CLOCK_MONOTONIC */
	int	primed;
};
double	 resume_check(struct resume_clock *, double, double);
int	 resume_clocks(double *, double *);

/* notify.c */
void	 notify_init(void);
void	 notify_free(void);
void	 tunneld_status_changed(void);
void	 notify_status_said(void);

#endif /* TUNNELD_H */
