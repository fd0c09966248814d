/*
 * tunctl.c: the control client. Parses the command line, checks it with the
 * same parser the daemon uses, sends one request line to tunneld's control
 * socket, prints the body lines of the answer and exits with the code of
 * its final line. "check" reads a configuration file itself; it needs no
 * daemon. The protocol is in docs/control-protocol.md.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-proto.h"
#include "tunneld.h"

#define TUNCTL_REPLY_MAX	(16 * 1024 * 1024)	/* one reply line */

static void	tunctl_usage(FILE *);
static void	tunctl_usage_error(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));
static void	tunctl_unreachable(const char *, const char *, ...)
		    __attribute__((format(printf, 2, 3), noreturn));
static int	tunctl_timeout(const char *);
static int	tunctl_check(int, char **);
static int	tunctl_connect(const char *);
static const char *tunctl_filetype(const char *);
static void	tunctl_send(int, const char *, const char *, double);
static int	tunctl_line(const char *, char *);
static int	tunctl_run(const char *, const char *, int);
static int	tunctl_common_opt(int, char **, int *, int *, const char **);

static struct ctl_request	request;	/* what the user asked for */
static struct ctl_request	checked;	/* the same, read back */

/* Print the usage text. */
static void
tunctl_usage(FILE *f)
{
	fprintf(f,
"usage: tunctl [-s SOCKET] [--json] COMMAND [ARG...]\n"
"  status [NAME...]           one row per tunnel (all when none named)\n"
"  links                      one row per SSH link\n"
"  up NAME...    | --all      start tunnels (and retry their links now)\n"
"  down NAME...  | --all      stop tunnels: close listeners, cancel remote\n"
"                             forwards, close their connections\n"
"  restart NAME...\n"
"  reload                     re-read the configuration\n"
"  wait NAME... [--timeout S] block until the tunnels are up (default %d s)\n"
"  check [FILE]               check a configuration file; needs no daemon\n"
"  events [--follow]          state changes of links and tunnels, one line\n"
"                             each; --follow keeps streaming\n"
"  metrics                    the Prometheus text exposition of every counter\n"
"  version\n"
"The socket is -s SOCKET, else $TUNCTL_SOCKET, else %s.\n"
"Exit: 0 done, 1 refused, 2 usage error, 3 tunneld unreachable,\n"
"      4 wait timed out or a named tunnel is not up.\n",
	    CTL_WAIT_DEFAULT, DEFAULT_SOCKET_PATH);
}

/*
 * A usage error: one line, the message and where to look (not the whole
 * usage text, which would bury the message), exit 2.
 */
static void
tunctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "tunctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; see tunctl --help\n");
	exit(CTL_EXIT_USAGE);
}

/* The daemon cannot be reached: say why, exit 3. */
static void
tunctl_unreachable(const char *path, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "tunctl: cannot reach tunneld at %s: ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(CTL_EXIT_UNREACHABLE);
}

/* Parse a --timeout value: whole seconds, 0 to CTL_WAIT_MAX; or -1. */
static int
tunctl_timeout(const char *s)
{
	long v = 0;

	if (*s == '\0' || strlen(s) > 6)
		return (-1);
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return (-1);
		v = v * 10 + (*s - '0');
	}
	return (v > CTL_WAIT_MAX ? -1 : (int)v);
}

/* check [FILE]: load a configuration and print every error. */
static int
tunctl_check(int argc, char **argv)
{
	const char	*file = DEFAULT_CONF_PATH;
	struct conf	*conf = NULL;
	char		*errors = NULL;
	int		 i, n, nfiles = 0, options = 1;

	for (i = 0; i < argc; i++) {
		if (options && strcmp(argv[i], "--") == 0)
			options = 0;
		else if (options && (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0)) {
			tunctl_usage(stdout);
			exit(CTL_EXIT_OK);
		} else if (options && strcmp(argv[i], "--json") == 0)
			continue;
		else if (options && argv[i][0] == '-' && argv[i][1] != '\0')
			tunctl_usage_error("unknown option \"%s\" for \"check\"",
			    argv[i]);
		else if (nfiles++ > 0)
			tunctl_usage_error("\"check\" takes at most one file");
		else
			file = argv[i];
	}

	n = conf_load(file, &conf, &errors);
	if (n > 0) {
		fputs(errors, stderr);
		if (errors[0] != '\0' && errors[strlen(errors) - 1] != '\n')
			fputc('\n', stderr);
		fprintf(stderr, "%s: %d error%s\n", file, n, n == 1 ? "" : "s");
		free(errors);
		return (CTL_EXIT_REFUSED);
	}
	free(errors);
	printf("%s: OK (%d tunnel%s, %d host%s)\n", file, conf->ntunnels,
	    conf->ntunnels == 1 ? "" : "s", conf->nhosts,
	    conf->nhosts == 1 ? "" : "s");
	conf_free(conf);
	return (CTL_EXIT_OK);
}

/*
 * What path is when it is there but is not a socket ("a directory"), or
 * NULL: a socket, or nothing there.
 */
static const char *
tunctl_filetype(const char *path)
{
	struct stat	sb;

	if (stat(path, &sb) == -1 || S_ISSOCK(sb.st_mode))
		return (NULL);
	if (S_ISDIR(sb.st_mode))
		return ("a directory");
	if (S_ISREG(sb.st_mode))
		return ("a regular file");
	if (S_ISFIFO(sb.st_mode))
		return ("a FIFO");
	if (S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode))
		return ("a device");
	return ("another kind of file");
}

/* Connect to the control socket, or exit 3 saying why not. */
static int
tunctl_connect(const char *path)
{
	struct sockaddr_un	sun;
	struct timeval		tv = { CTL_ANSWER_TIMEOUT, 0 };
	const char		*type;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		tunctl_unreachable(path, "socket path too long (limit %zu "
		    "bytes)", sizeof(sun.sun_path) - 1);
	strlcpy_(sun.sun_path, path, sizeof(sun.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		tunctl_unreachable(path, "socket: %s", strerror(errno));
	/* A daemon that stopped accepting must not block us for ever. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		switch (errno) {
		case ENOENT:
		case ENOTDIR:
			tunctl_unreachable(path, "no such socket (is tunneld "
			    "running?)");
		case EACCES:
		case EPERM:
			tunctl_unreachable(path, "permission denied (is your "
			    "user in the control group?)");
		case ECONNREFUSED:
		case ENOTSOCK:
			/* connect(2) says "refused" for a file or directory. */
			if ((type = tunctl_filetype(path)) != NULL)
				tunctl_unreachable(path, "not a socket (%s)",
				    type);
			tunctl_unreachable(path, "connection refused (a stale "
			    "socket: is tunneld running?)");
		case EAGAIN:
		case ETIMEDOUT:
		case EINPROGRESS:
			tunctl_unreachable(path, "no answer from tunneld "
			    "within %d s", CTL_ANSWER_TIMEOUT);
		default:
			tunctl_unreachable(path, "%s", strerror(errno));
		}
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
		tunctl_unreachable(path, "fcntl: %s", strerror(errno));
	return (fd);
}

/*
 * Send the whole request line before the deadline, or exit 3. When tunneld
 * closed the connection first it may have said why (too many clients): stop
 * sending and leave that to the reader.
 */
static void
tunctl_send(int fd, const char *path, const char *line, double deadline)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLOUT };
	size_t		off = 0, len = strlen(line);
	ssize_t		n;
	double		left;

	while (off < len) {
		if ((left = deadline - monotime()) <= 0)
			tunctl_unreachable(path, "no answer from tunneld");
		if (poll(&pfd, 1, (int)(left * 1000) + 1) == -1) {
			if (errno == EINTR)
				continue;
			tunctl_unreachable(path, "poll: %s", strerror(errno));
		}
		n = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return;
			tunctl_unreachable(path, "%s", strerror(errno));
		}
		off += n;
	}
}

/*
 * Handle one reply line: print a body line, or return the exit code of
 * the final line (printing its message). Returns -1 for "more to come".
 */
static int
tunctl_line(const char *path, char *line)
{
	const char	*msg;
	size_t		 len = strlen(line);
	int		 code;

	if (len > 0 && line[len - 1] == '\r')
		line[len - 1] = '\0';
	switch (ctlp_parse_end(line, &code, &msg)) {
	case 0:
		fputs(ctlp_unescape(line), stdout);
		fputc('\n', stdout);
		return (-1);
	case 1:
		if (fflush(stdout) == EOF)
			fprintf(stderr, "tunctl: stdout: %s\n", strerror(errno));
		if (*msg != '\0')
			fprintf(stderr, "tunctl: %s\n", msg);
		return (code);
	case 2:
		return (-1);	/* a reserved line: ignore it */
	}
	tunctl_unreachable(path, "bad final line from tunneld: \"%.80s\"",
	    line);
}

/*
 * Send one request line and relay the answer; answer_secs bounds the wait
 * for the whole answer (0: no bound, a stream: each line is flushed as it
 * comes). Returns the exit code of the final line.
 */
static int
tunctl_run(const char *path, const char *line, int answer_secs)
{
	struct pollfd	 pfd;
	double		 deadline;
	size_t		 len = 0, size = 65536, start;
	char		*buf, *nl;
	ssize_t		 n;
	double		 left;
	int		 fd, code;

	fd = tunctl_connect(path);
	deadline = monotime() + (answer_secs > 0 ? answer_secs :
	    CTL_ANSWER_TIMEOUT);
	tunctl_send(fd, path, line, deadline);
	if (answer_secs == 0)
		deadline = 0;

	buf = xmalloc(size);
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		if (deadline != 0 && (left = deadline - monotime()) <= 0)
			tunctl_unreachable(path, "no answer from tunneld "
			    "within %d s", answer_secs);
		if (poll(&pfd, 1, deadline == 0 ? -1 :
		    (int)(left * 1000) + 1) == -1) {
			if (errno == EINTR)
				continue;
			tunctl_unreachable(path, "poll: %s", strerror(errno));
		}
		if (len == size) {
			if (size >= TUNCTL_REPLY_MAX)
				tunctl_unreachable(path, "a reply line longer "
				    "than %d bytes", TUNCTL_REPLY_MAX);
			size *= 2;
			if ((buf = realloc(buf, size)) == NULL)
				fatal("realloc");
		}
		n = read(fd, buf + len, size - len);
		if (n == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno != ECONNRESET)
				tunctl_unreachable(path, "%s", strerror(errno));
			n = 0;	/* closed before reading our request */
		}
		if (n == 0 && deadline == 0)
			tunctl_unreachable(path, "tunneld closed the stream "
			    "without a final line");
		if (n == 0)
			tunctl_unreachable(path, "tunneld closed the "
			    "connection without an answer");
		len += n;

		/* Every complete line; keep the rest for the next read. */
		start = 0;
		while ((nl = memchr(buf + start, '\n', len - start)) != NULL) {
			*nl = '\0';
			if (memchr(buf + start, '\0', nl - (buf + start)) !=
			    NULL)
				tunctl_unreachable(path, "a reply line with a "
				    "NUL byte");
			if ((code = tunctl_line(path, buf + start)) != -1) {
				close(fd);
				free(buf);
				return (code);
			}
			start = nl + 1 - buf;
		}
		if (deadline == 0 && fflush(stdout) == EOF) {
			fprintf(stderr, "tunctl: stdout: %s\n", strerror(errno));
			return (CTL_EXIT_REFUSED);
		}
		memmove(buf, buf + start, len - start);
		len -= start;
	}
}

/*
 * An option allowed before and after the command: -h, --json, -s PATH.
 * Returns 1 when argv[*i] was one (and *i moved past its argument), 0 when
 * it was not, -1 for help (printed).
 */
static int
tunctl_common_opt(int argc, char **argv, int *i, int *json, const char **path)
{
	const char *a = argv[*i];

	if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
		tunctl_usage(stdout);
		return (-1);
	}
	if (strcmp(a, "--json") == 0 || strcmp(a, "-j") == 0)
		*json = 1;
	else if (strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0) {
		if (++*i == argc)
			tunctl_usage_error("\"%s\" needs a socket path", a);
		*path = argv[*i];
	} else if (strncmp(a, "--socket=", 9) == 0)
		*path = a + 9;
	else
		return (0);
	return (1);
}

/* Parse the command line, send the request, exit with the answer's code. */
int
main(int argc, char **argv)
{
	const char	*path = NULL, *a, *cmd;
	char		 line[CTL_LINE_MAX + 1], err[512];
	int		 i, json = 0, options = 1, answer, rc;

	for (i = 1; i < argc; i++) {
		a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		if ((rc = tunctl_common_opt(argc, argv, &i, &json, &path)) == -1)
			return (CTL_EXIT_OK);
		if (rc == 1)
			continue;
		if (strncmp(a, "-s", 2) == 0)
			path = a + 2;
		else
			tunctl_usage_error("unknown option \"%s\"", a);
	}
	if (i >= argc)
		tunctl_usage_error("missing command");
	cmd = argv[i++];
	if (strcmp(cmd, "help") == 0) {
		tunctl_usage(stdout);
		return (CTL_EXIT_OK);
	}
	if (strcmp(cmd, "check") == 0)
		return (tunctl_check(argc - i, argv + i));
	if ((request.verb = ctlp_verb_find(cmd)) == -1)
		tunctl_usage_error("unknown command \"%s\"", cmd);
	request.timeout = -1;

	for (; i < argc; i++) {
		a = argv[i];
		if (options && strcmp(a, "--") == 0) {
			options = 0;
			continue;
		}
		if (!options || a[0] != '-' || a[1] == '\0') {
			if (request.argc == CTL_ARGS_MAX)
				tunctl_usage_error("too many arguments (limit "
				    "%d)", CTL_ARGS_MAX);
			request.argv[request.argc++] = argv[i];
			continue;
		}
		if ((rc = tunctl_common_opt(argc, argv, &i, &json, &path)) == -1)
			return (CTL_EXIT_OK);
		if (rc == 1)
			continue;
		if (strcmp(a, "--all") == 0 || strcmp(a, "-a") == 0)
			request.all = 1;
		else if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0)
			request.follow = 1;
		else if (strcmp(a, "--timeout") == 0 || strcmp(a, "-t") == 0 ||
		    strncmp(a, "--timeout=", 10) == 0) {
			if (strncmp(a, "--timeout=", 10) == 0)
				a += 10;
			else if (++i == argc)
				tunctl_usage_error("\"%s\" needs a number of "
				    "seconds", a);
			else
				a = argv[i];
			if ((request.timeout = tunctl_timeout(a)) == -1)
				tunctl_usage_error("bad timeout \"%s\": "
				    "expected whole seconds from 0 to %d", a,
				    CTL_WAIT_MAX);
		} else
			tunctl_usage_error("unknown option \"%s\" for \"%s\"",
			    a, cmd);
	}
	/* --json is for the verbs that have a JSON form; others ignore it. */
	if (json && (ctl_verbs[request.verb].flags & CTL_F_JSON))
		request.json = 1;

	/*
	 * Check the request as the daemon will, before connecting: each name
	 * on its own (so "a b" or "x --all" is one bad name, not two words),
	 * then the line as the daemon will read it.
	 */
	for (i = 0; i < request.argc; i++) {
		if (ctlp_check_name(request.argv[i], err, sizeof(err)) == -1)
			tunctl_usage_error("%s", err);
	}
	if (ctlp_format(&request, line, sizeof(line)) == -1)
		tunctl_usage_error("request too long (limit %d bytes): name "
		    "fewer tunnels", CTL_LINE_MAX);
	if (ctlp_parse(line, &checked, err, sizeof(err)) == -1)
		tunctl_usage_error("%s", err);

	if (path == NULL && (path = getenv("TUNCTL_SOCKET")) != NULL &&
	    *path == '\0')
		path = NULL;
	if (path == NULL)
		path = DEFAULT_SOCKET_PATH;
	if (*path == '\0')
		tunctl_usage_error("empty socket path");

	answer = CTL_ANSWER_TIMEOUT;
	if (request.verb == CTL_WAIT)
		answer += request.timeout >= 0 ? request.timeout :
		    CTL_WAIT_DEFAULT;
	if (request.follow)
		answer = 0;
	if (request.verb == CTL_VERSION) {
		printf("tunctl %s\n", TUNNELD_VERSION);
		fflush(stdout);
	}
	return (tunctl_run(path, line, answer));
}
