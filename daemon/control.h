/*
 * control.h: what control.c (the socket and its clients) and
 * control_verbs.c (the handlers of the verbs) share. Private to the two.
 */
#ifndef CONTROL_H
#define CONTROL_H

#define CONTROL_CLIENTS_MAX	1024
#define CONTROL_CLIENTS_RESERVE	32		/* more, for root only */
#define CONTROL_IDLE		60		/* seconds without a request */
#define CONTROL_OUT_PAUSE	(64 * 1024)	/* stop reading requests */
#define CONTROL_OUT_MAX		(1024 * 1024)	/* unread output: drop */

/* One connected client. */
struct control_client {
	TAILQ_ENTRY(control_client) entry;	/* on clients or reap */
	struct bufferevent	*bev;		/* owns the fd */
	struct event		*ev_idle;	/* no request for a while */
	struct event		*ev_wait;	/* the pending wait's deadline */
	struct event		*ev_kick;	/* read requests next turn */
	struct ctl_request	*pending;	/* a wait not answered yet */
	struct events_sub	*sub;		/* following events (events.c) */
	int			 wait_secs;
	struct control_peer	 peer;
	uid_t			 uid;		/* peer.uid, for the logs */
	pid_t			 pid;
	int			 eof;		/* the client sent EOF */
	int			 closing;	/* close once output is out */
	int			 dead;		/* on reap, freed next turn */
};
TAILQ_HEAD(control_clients, control_client);

/* A handler answers a request; it returns 1 when it keeps it pending. */
struct control_handler {
	int	  verb;
	int	(*fn)(struct control_client *, struct ctl_request *);
};

extern const struct control_handler control_handlers[];
extern const size_t control_nhandlers;

void	control_client_close(struct control_client *);
void	control_line(struct control_client *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	control_end(struct control_client *, int, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	control_body(struct control_client *, struct evbuffer *);
void	control_wait_cb(int, short, void *);
int	control_wait_done(struct ctl_request *);
void	control_wait_finish(struct control_client *, int);

#endif /* CONTROL_H */
