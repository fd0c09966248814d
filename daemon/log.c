/*
 * log.c: OpenBSD-style logging to stderr (or syslog once detached).
 *
 * Under systemd (JOURNAL_STREAM set) every line on stderr carries a <N>
 * priority prefix so the journal keeps the level. When JOURNAL_STREAM
 * names the very stream stderr is (its "DEV:INODE" is what fstat(2) says
 * of stderr, as systemd documents), the lines go to the journal by its
 * native protocol instead, with fields: TUNNEL= and HOST= name what the
 * line is about, so that "journalctl -u tunneld TUNNEL=pg" shows one
 * tunnel. They are taken from the prefix every daemon line starts with
 * by convention ("tunnel pg: ...", "link db: ...", "reload: tunnel pg
 * ...", "reload: host db ..."); the host a tunnel goes through comes from
 * a lookup the daemon registers, so that this file, which tunctl and the
 * unit tests share, knows no daemon structure. If the journal's socket
 * cannot be reached, the lines fall back to <N> on stderr for good.
 *
 * With tunneld -l FILE every line goes to FILE instead, stamped as on
 * stderr under -d; SIGHUP reopens it (log rotation). A daemon that is to
 * detach without -l needs a syslog to log to: log_syslog_reachable() says
 * whether one answers on /dev/log.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* No CODE_FILE= and CODE_LINE=: they would all name vlog() below. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "tunneld.h"

#define LOG_MSGLEN	2048
#define LOG_MESSAGE	"MESSAGE="

static int	log_level = LOGL_INFO;
static int	log_journal;	/* JOURNAL_STREAM set: <N> prefixes */
static int	log_native;	/* stderr is the journal: send fields */
static int	log_stamp;
static int	log_syslog;
static int	log_fd = -1;	/* -l FILE */
static char	*log_path;
static const char *(*log_via)(const char *);

static void	vlog(int, const char *, va_list, int);
static int	log_send(int, const char *, int);
static void	log_stamp_now(char *, size_t);
static void	log_file_line(const char *, const char *);

/*
 * Start logging: to stderr in the foreground (with <N> priorities when
 * systemd reads it, or to the journal itself), to syslog once detached;
 * to the file of log_open() if there is one.
 */
void
log_init(int foreground, int verbose)
{
	const char *stream = getenv("JOURNAL_STREAM");

	log_journal = stream != NULL;
	log_native = log_journal &&
	    log_journal_stream(stream, STDERR_FILENO);
	log_stamp = foreground && !log_journal;
	log_level = verbose ? LOGL_DEBUG : LOGL_INFO;
	if (!foreground && !log_journal && !log_syslog && log_fd == -1) {
		openlog("tunneld", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_syslog = 1;
	}
}

/*
 * Log to the file path from now on (appending, mode 0640 when created).
 * Returns -1, errno set, if it cannot be opened; nothing changes then.
 */
int
log_open(const char *path)
{
	char	*copy;
	int	 fd;

	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NOCTTY, 0640)) == -1)
		return (-1);
	if ((copy = strdup(path)) == NULL) {
		close(fd);
		errno = ENOMEM;
		return (-1);
	}
	if (log_fd != -1)
		close(log_fd);
	free(log_path);
	log_fd = fd;
	log_path = copy;
	return (0);
}

/*
 * SIGHUP: open the log file again under its name, so that a rotated file
 * is let go. If that fails the old file stays in use, and says why.
 */
void
log_reopen(void)
{
	int fd;

	if (log_fd == -1)
		return;
	if ((fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NOCTTY, 0640)) == -1) {
		log_warn("log: cannot reopen %s, still writing to the file "
		    "that had that name", log_path);
		return;
	}
	close(log_fd);
	log_fd = fd;
}

/* Stop logging to the file of log_open(), if any (at exit). */
void
log_close(void)
{
	if (log_fd != -1)
		close(log_fd);
	log_fd = -1;
	free(log_path);
	log_path = NULL;
}

/*
 * Whether a syslog daemon answers on /dev/log, where syslog(3) sends;
 * without one, whatever a detached daemon logs is lost without a trace.
 */
int
log_syslog_reachable(void)
{
	static const int	types[] = { SOCK_DGRAM, SOCK_STREAM };
	struct sockaddr_un	sun;
	size_t			i;
	int			fd, ok;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_(sun.sun_path, _PATH_LOG, sizeof(sun.sun_path));
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if ((fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0)) == -1)
			continue;
		ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
		close(fd);
		if (ok)
			return (1);
	}
	return (0);
}

/*
 * How the daemon finds the host a tunnel goes through, by the tunnel's
 * name (NULL if none), for the journal's HOST= field.
 */
void
log_set_via(const char *(*fn)(const char *))
{
	log_via = fn;
}

/* Set the most detailed level that is still printed. */
void
log_setlevel(int level)
{
	log_level = level;
}

/* The most detailed level printed. */
int
log_getlevel(void)
{
	return (log_level);
}

/*
 * Whether fd is the stream that JOURNAL_STREAM's value ("DEV:INODE", both
 * decimal) names: only then does what is written to it reach the journal.
 */
int
log_journal_stream(const char *value, int fd)
{
	struct stat		 sb;
	unsigned long long	 dev, ino;
	char			*end;

	if (value == NULL || !isdigit((unsigned char)value[0]))
		return (0);
	errno = 0;
	dev = strtoull(value, &end, 10);
	if (errno != 0 || *end != ':' || !isdigit((unsigned char)end[1]))
		return (0);
	ino = strtoull(end + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return (0);
	if (fstat(fd, &sb) == -1)
		return (0);
	return ((unsigned long long)sb.st_dev == dev &&
	    (unsigned long long)sb.st_ino == ino);
}

/*
 * Copy the name s starts with ([A-Za-z0-9_.-], NAME_MAXLEN at most) into
 * out (NAME_MAXLEN + 1 bytes) if end is one of the bytes that may follow
 * it; return its length, or 0 with out empty.
 */
static size_t
log_name(const char *s, const char *end, char *out)
{
	size_t n = 0;

	out[0] = '\0';
	while (n <= NAME_MAXLEN && (isalnum((unsigned char)s[n]) ||
	    s[n] == '_' || s[n] == '.' || s[n] == '-'))
		n++;
	if (n == 0 || n > NAME_MAXLEN || strchr(end, s[n]) == NULL)
		return (0);
	memcpy(out, s, n);
	out[n] = '\0';
	return (n);
}

/*
 * What a log line is about, from the daemon's prefixes: "tunnel NAME:",
 * "link HOST:", "reload: tunnel NAME ...", "reload: host HOST ..."; a
 * jump hop's connections, "tunnel jump to HOST:", are about the link they
 * carry. tunnel and host (NAME_MAXLEN + 1 bytes each) get the names, ""
 * where the line says none.
 */
void
log_subject(const char *msg, char *tunnel, char *host)
{
	/* A name ends at ':' (or the line's end); in a reload line, at a
	 * space too. */
	const char	*end = ":";

	tunnel[0] = host[0] = '\0';
	if (strncmp(msg, "reload: ", 8) == 0) {
		msg += 8;
		end = ": ";
		if (strncmp(msg, "host ", 5) == 0)
			log_name(msg + 5, end, host);
	} else if (strncmp(msg, "link ", 5) == 0)
		log_name(msg + 5, end, host);
	else if (strncmp(msg, "tunnel jump to ", 15) == 0) {
		log_name(msg + 15, end, host);
		return;
	}
	if (strncmp(msg, "tunnel ", 7) == 0)
		log_name(msg + 7, end, tunnel);
}

/* Add one "FIELD=value" to the journal entry being built. */
static void
log_field(struct iovec *iov, int *n, const char *s)
{
	iov[*n].iov_base = (void *)s;
	iov[*n].iov_len = strlen(s);
	(*n)++;
}

/*
 * Send a line to the journal with its fields; msg is preceded by
 * "MESSAGE=" in its buffer. Returns -1 if the journal cannot be reached;
 * from then on every line goes to stderr.
 */
static int
log_send(int pri, const char *msg, int errnum)
{
	struct iovec	 iov[8];
	char		 tunnel[NAME_MAXLEN + 1], host[NAME_MAXLEN + 1];
	char		 f_tunnel[sizeof("TUNNEL=") + NAME_MAXLEN];
	char		 f_host[sizeof("HOST=") + NAME_MAXLEN];
	char		 f_pri[32], f_errno[32];
	const char	*via;
	int		 n = 0, rc;

	log_field(iov, &n, msg - (sizeof(LOG_MESSAGE) - 1));
	snprintf(f_pri, sizeof(f_pri), "PRIORITY=%d", pri);
	log_field(iov, &n, f_pri);
	log_field(iov, &n, "SYSLOG_IDENTIFIER=tunneld");
	log_field(iov, &n, "SYSLOG_FACILITY=3");	/* LOG_DAEMON */
	if (errnum != 0) {
		snprintf(f_errno, sizeof(f_errno), "ERRNO=%d", errnum);
		log_field(iov, &n, f_errno);
	}
	log_subject(msg, tunnel, host);
	if (tunnel[0] != '\0') {
		snprintf(f_tunnel, sizeof(f_tunnel), "TUNNEL=%s", tunnel);
		log_field(iov, &n, f_tunnel);
		if (host[0] == '\0' && log_via != NULL &&
		    (via = log_via(tunnel)) != NULL)
			strlcpy_(host, via, sizeof(host));
	}
	if (host[0] != '\0') {
		snprintf(f_host, sizeof(f_host), "HOST=%s", host);
		log_field(iov, &n, f_host);
	}
	if ((rc = sd_journal_sendv(iov, n)) >= 0)
		return (0);
	log_native = 0;
	fprintf(stderr, "<%d>log: cannot send to the journal (%s), logging "
	    "to standard error\n", LOGL_WARNING, strerror(-rc));
	return (-1);
}

/*
 * The local time to the millisecond, "2026-12-01 12:03:41.082": tests time
 * events from these stamps.
 */
static void
log_stamp_now(char *buf, size_t len)
{
	struct timespec	now;
	struct tm	tm;
	char		sec[32];

	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03ld", sec, now.tv_nsec / 1000000);
}

/* Write one stamped line to the log file, in one write(2). */
static void
log_file_line(const char *level, const char *msg)
{
	char	line[64 + LOG_MSGLEN], stamp[48];
	int	n;

	log_stamp_now(stamp, sizeof(stamp));
	n = snprintf(line, sizeof(line), "%s tunneld[%s]: %s\n", stamp, level,
	    msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(log_fd, line, (size_t)n) == -1)
		return;		/* nowhere left to say so */
}

/* Print one line at a priority, with errno's text when asked. */
static void
vlog(int pri, const char *fmt, va_list ap, int with_errno)
{
	static const char *names[] = { "emerg", "alert", "crit", "error",
	    "warning", "notice", "info", "debug" };
	char		 buf[sizeof(LOG_MESSAGE) - 1 + LOG_MSGLEN], stamp[32];
	char		*msg = buf + sizeof(LOG_MESSAGE) - 1;
	int		 saved = errno;
	size_t		 len;

	if (pri > log_level)
		return;
	memcpy(buf, LOG_MESSAGE, sizeof(LOG_MESSAGE) - 1);
	vsnprintf(msg, LOG_MSGLEN, fmt, ap);
	if (with_errno) {
		len = strlen(msg);
		snprintf(msg + len, LOG_MSGLEN - len, ": %s",
		    strerror(saved));
	}
	if (log_fd != -1)
		log_file_line(names[pri], msg);
	else if (log_syslog)
		syslog(pri, "%s", msg);
	else if (log_native && log_send(pri, msg, with_errno ? saved : 0) ==
	    0)
		;	/* in the journal */
	else if (log_journal)
		fprintf(stderr, "<%d>%s\n", pri, msg);
	else if (log_stamp) {
		log_stamp_now(stamp, sizeof(stamp));
		fprintf(stderr, "%s tunneld[%s]: %s\n", stamp, names[pri], msg);
	} else
		fprintf(stderr, "tunneld: %s\n", msg);
	fflush(stderr);
	errno = saved;
}

/* A line at the level pri (LOGL_*). */
void
log_pri(int pri, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(pri, fmt, ap, 0);
	va_end(ap);
}

/* An error the daemon cannot work around, with errno's text. */
void
log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOGL_ERROR, fmt, ap, 1);
	va_end(ap);
}

/* An error the daemon cannot work around. */
void
log_errorx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOGL_ERROR, fmt, ap, 0);
	va_end(ap);
}

/* A warning with errno's text. */
void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOGL_WARNING, fmt, ap, 1);
	va_end(ap);
}

/* A warning. */
void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOGL_WARNING, fmt, ap, 0);
	va_end(ap);
}

/* A normal but significant event. */
void
log_notice(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOGL_NOTICE, fmt, ap, 0);
	va_end(ap);
}

/* An informational message. */
void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOGL_INFO, fmt, ap, 0);
	va_end(ap);
}

/* Detail shown with -v or log_level = "debug". */
void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOGL_DEBUG, fmt, ap, 0);
	va_end(ap);
}

/* A broken invariant or out of memory, with errno's text: exit. */
void
fatal(const char *fmt, ...)
{
	va_list ap;

	log_level = LOGL_DEBUG;
	va_start(ap, fmt);
	vlog(2, fmt, ap, 1);
	va_end(ap);
	exit(1);
}

/* A broken invariant: exit. */
void
fatalx(const char *fmt, ...)
{
	va_list ap;

	log_level = LOGL_DEBUG;
	va_start(ap, fmt);
	vlog(2, fmt, ap, 0);
	va_end(ap);
	exit(1);
}
