/*
 * log.c: OpenBSD-style logging to stderr. Under systemd (JOURNAL_STREAM set)
 * every line carries a <N> priority prefix so the journal keeps the level.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "tunneld.h"

static int	log_level = LOGL_INFO;
static int	log_journal;
static int	log_stamp;
static int	log_syslog;

static void	vlog(int, const char *, va_list, int);

/*
 * Start logging: to stderr in the foreground (with <N> priorities when
 * systemd reads it), to syslog once detached.
 */
void
log_init(int foreground, int verbose)
{
	log_journal = getenv("JOURNAL_STREAM") != NULL;
	log_stamp = foreground && !log_journal;
	log_level = verbose ? LOGL_DEBUG : LOGL_INFO;
	if (!foreground && !log_journal && !log_syslog) {
		openlog("tunneld", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_syslog = 1;
	}
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

/* Print one line at a priority, with errno's text when asked. */
static void
vlog(int pri, const char *fmt, va_list ap, int with_errno)
{
	static const char *names[] = { "emerg", "alert", "crit", "error",
	    "warning", "notice", "info", "debug" };
	char		 msg[2048], stamp[32];
	int		 saved = errno;
	struct tm	 tm;
	struct timespec	 now;

	if (pri > log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		size_t len = strlen(msg);
		snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(saved));
	}
	if (log_syslog)
		syslog(pri, "%s", msg);
	else if (log_journal)
		fprintf(stderr, "<%d>%s\n", pri, msg);
	else if (log_stamp) {
		/* Milliseconds: tests time events from these stamps. */
		clock_gettime(CLOCK_REALTIME, &now);
		localtime_r(&now.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld tunneld[%s]: %s\n", stamp,
		    now.tv_nsec / 1000000, names[pri], msg);
	} else
		fprintf(stderr, "tunneld: %s\n", msg);
	fflush(stderr);
	errno = saved;
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
