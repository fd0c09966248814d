/*
 * ctl-proto.h: the control protocol between tunctl and tunneld, as both
 * sides compile it. The wire format is specified in docs/control-protocol.md.
 *
 * This header must compile on its own (no libevent, libssh or tunneld.h):
 *	echo | cc -fsyntax-only -x c -include daemon/ctl-proto.h -
 *
 * DON'T FORGET TO BUMP THE PROTOCOL WORD ("tunneld/2" -> "tunneld/3") when
 * a change would make an old tunctl misread a new daemon or the other way
 * round: a verb or option changes meaning, a reply line changes its format
 * (columns of the table, JSON fields removed or renamed, the final line),
 * an exit code changes meaning. Adding a verb, an option or a JSON field
 * does not need a bump. docs/control-protocol.md lists the rules.
 */
#ifndef CTL_PROTO_H
#define CTL_PROTO_H

#include <stddef.h>

/*
 * tunneld/2: IN and OUT of status (table and JSON, now "in" and "out"
 * instead of "bytes_in" and "bytes_out") count the other way round, as
 * SPEC section 4 says: IN from the connecting client towards the target.
 * Quoted words ("a b", 'a b') came later without a bump: a request that
 * used none means what it meant, and tunctl never needs them for a name.
 */
#define CTL_PROTO_WORD		"tunneld/2"
#define CTL_PROTO_PREFIX	"tunneld/"	/* of every version word */

#define CTL_LINE_MAX		4096	/* a request line, newline included */
#define CTL_ARGS_MAX		1024	/* arguments (names) in one request */
#define CTL_WAIT_DEFAULT	30	/* wait --timeout when none is given */
#define CTL_WAIT_MAX		86400	/* the longest wait --timeout */
#define CTL_ANSWER_TIMEOUT	10	/* tunctl's patience, seconds */

#define CTL_END			"%end"	/* starts the final line of a reply */

/* Exit codes of tunctl, carried by the final line of every reply. */
#define CTL_EXIT_OK		0	/* done */
#define CTL_EXIT_REFUSED	1	/* unknown tunnel, reload rejected */
#define CTL_EXIT_USAGE		2	/* usage error, bad request */
#define CTL_EXIT_UNREACHABLE	3	/* tunctl only: no daemon, no answer */
#define CTL_EXIT_NOTUP		4	/* wait timed out, a named tunnel not up */

/* Verbs, in the order of ctl_verbs[]. */
enum ctl_verb_id {
	CTL_STATUS,
	CTL_LINKS,
	CTL_UP,
	CTL_DOWN,
	CTL_RESTART,
	CTL_WAIT,
	CTL_RELOAD,
	CTL_VERSION,
	CTL_EVENTS,
	CTL_METRICS,
	CTL_NVERBS
};

/* Flags of a verb. A verb without CTL_F_MUTATING only reads. */
#define CTL_F_MUTATING		0x01	/* changes state: peer is logged */
#define CTL_F_ALL		0x02	/* accepts --all instead of names */
#define CTL_F_TIMEOUT		0x04	/* accepts --timeout=S */
#define CTL_F_JSON		0x08	/* accepts --json */
#define CTL_F_FOLLOW		0x10	/* accepts --follow */

/* One verb: its name, how many names it takes, what it accepts. */
struct ctl_verb {
	const char	*name;
	int		 min_args;
	int		 max_args;	/* CTL_ARGS_MAX: no limit of its own */
	int		 flags;
	const char	*usage;		/* arguments, for messages */
};

extern const struct ctl_verb ctl_verbs[CTL_NVERBS];

/*
 * One parsed request. argv points into buf, a copy of the line, so a
 * request lives on its own; tunctl's request for ctlp_format() may point
 * argv anywhere.
 */
struct ctl_request {
	int		 verb;		/* enum ctl_verb_id */
	int		 json;		/* --json */
	int		 all;		/* --all */
	int		 timeout;	/* --timeout=S, -1 when not given */
	int		 follow;	/* --follow */
	int		 argc;
	char		*argv[CTL_ARGS_MAX];
	char		 buf[CTL_LINE_MAX];
};

int	 ctlp_verb_find(const char *);
void	 ctlp_verb_list(char *, size_t);
int	 ctlp_parse(const char *, struct ctl_request *, char *, size_t);
int	 ctlp_format(const struct ctl_request *, char *, size_t);
int	 ctlp_check_name(const char *, char *, size_t);
void	 ctlp_quote(const char *, char *, size_t);
const char *ctlp_escape_prefix(const char *);
const char *ctlp_unescape(const char *);
int	 ctlp_parse_end(const char *, int *, const char **);

#endif /* CTL_PROTO_H */
