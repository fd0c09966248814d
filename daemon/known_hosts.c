/*
 * known_hosts.c: adding a learned host key (host_key_policy "accept-new")
 * to a known_hosts file so that no crash, full disk or second writer ever
 * leaves it truncated or half written.
 *
 * The file is never written in place: its lines and the new one go to a
 * temporary file in the same directory, with the same mode (and owner,
 * when we run as root), which is fsync'ed and then renamed over the old
 * one; the directory is fsync'ed after the rename. A reader sees the old
 * file or the new one, never a part. A write that fails (ENOSPC, EIO)
 * removes the temporary file and leaves the old one as it was.
 *
 * Two links that learn at once in one daemon cannot lose a line: the loop
 * is single-threaded and known_hosts_add() does the whole read, append,
 * write and rename before it returns (the file is small), so the second
 * link reads what the first one wrote. Two processes writing one file at
 * once are not serialised (OpenSSH does not lock it either): give each
 * daemon its own known_hosts.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tunneld.h"

#define KNOWN_HOSTS_MAX	(16 * 1024 * 1024)	/* bytes we agree to copy */

static int	known_hosts_read(int, char **, size_t *, char *, size_t);
static int	known_hosts_has(const char *, size_t, const char *, size_t);
static int	known_hosts_write(int, const char *, size_t);
static void	known_hosts_mkdirs(const char *);

/* Create the missing directories of dir, 0700, as libssh did. */
static void
known_hosts_mkdirs(const char *dir)
{
	char	*d, *p;

	d = xstrdup(dir);
	for (p = d + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(d, 0700) == -1 && errno != EEXIST)
			log_debug("known_hosts: mkdir %s: %s", d,
			    strerror(errno));
		*p = '/';
	}
	if (mkdir(d, 0700) == -1 && errno != EEXIST)
		log_debug("known_hosts: mkdir %s: %s", d, strerror(errno));
	free(d);
}

/* Read all of fd (at most KNOWN_HOSTS_MAX bytes) into *buf; 0 or -1. */
static int
known_hosts_read(int fd, char **buf, size_t *len, char *err, size_t errlen)
{
	size_t	 cap = 8192;
	ssize_t	 n;
	char	*p;

	*buf = xmalloc(cap);
	*len = 0;
	for (;;) {
		if (*len == cap) {
			if (cap >= KNOWN_HOSTS_MAX) {
				snprintf(err, errlen, "larger than %d MiB",
				    KNOWN_HOSTS_MAX >> 20);
				goto fail;
			}
			cap *= 2;
			if ((p = realloc(*buf, cap)) == NULL)
				fatal("known_hosts: realloc");
			*buf = p;
		}
		n = read(fd, *buf + *len, cap - *len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "read: %s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			return (0);
		*len += (size_t)n;
	}
fail:
	free(*buf);
	*buf = NULL;
	return (-1);
}

/* Whether the text holds line (without its newline) as a line of its own. */
static int
known_hosts_has(const char *text, size_t len, const char *line,
    size_t linelen)
{
	const char	*p = text, *end = text + len, *nl;
	size_t		 n;

	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		n = (size_t)(nl - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == linelen && memcmp(p, line, n) == 0)
			return (1);
		p = nl + 1;
	}
	return (0);
}

/* Write all of buf to fd; 0, or -1 with errno. */
static int
known_hosts_write(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		buf += n;
		len -= (size_t)n;
	}
	return (0);
}

/*
 * Open a known_hosts file to read it. Only a regular file is read: a FIFO
 * or a device named there would block the daemon or never end (libssh's
 * reader has the same check in the patched build, not in Debian's, so
 * link.c asks known_hosts_not_regular() before each handshake). Returns
 * the fd, or -1 with errno set (EINVAL: not a regular file).
 */
int
known_hosts_open(const char *path)
{
	struct stat	st;
	int		fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1)
		return (-1);
	if (fstat(fd, &st) == -1)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		e = EINVAL;
	else
		return (fd);
	close(fd);
	errno = e;
	return (-1);
}

/* 1 when path names something that exists and is not a regular file. */
int
known_hosts_not_regular(const char *path)
{
	struct stat	st;

	return (stat(path, &st) == 0 && !S_ISREG(st.st_mode));
}

/*
 * Add entry (one known_hosts line, as ssh_session_export_known_hosts_entry
 * formats it) to the file at path, atomically (see above). A line already
 * there is not added twice. Returns 0, or -1 with the reason in err (the
 * file is then as it was).
 */
int
known_hosts_add(const char *path, const char *entry, char *err,
    size_t errlen)
{
	struct stat	 st;
	char		*target = NULL, *dir = NULL, *tmp = NULL, *old = NULL;
	char		*slash;
	size_t		 oldlen = 0, linelen;
	mode_t		 mask, mode;
	int		 fd = -1, tfd = -1, exists, rc = -1;

	linelen = strcspn(entry, "\r\n");
	if (linelen == 0) {
		snprintf(err, errlen, "no key to add");
		return (-1);
	}

	/* A symbolic link is followed: its target is what gets replaced. */
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		if ((target = realpath(path, NULL)) == NULL) {
			snprintf(err, errlen, "%s", strerror(errno));
			return (-1);
		}
	} else
		target = xstrdup(path);
	dir = xstrdup(target);
	if ((slash = strrchr(dir, '/')) == NULL) {
		free(dir);
		dir = xstrdup(".");
	} else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';

	mask = umask(0);
	umask(mask);
	mode = 0666 & ~mask;		/* a new file: as fopen(3) makes it */
	exists = 0;
	if ((fd = known_hosts_open(target)) != -1) {
		if (fstat(fd, &st) == -1) {
			snprintf(err, errlen, "%s", strerror(errno));
			goto out;
		}
		exists = 1;
		mode = st.st_mode & 07777;
		if (known_hosts_read(fd, &old, &oldlen, err, errlen) == -1)
			goto out;
		if (known_hosts_has(old, oldlen, entry, linelen)) {
			rc = 0;		/* learned meanwhile: nothing to do */
			goto out;
		}
	} else if (errno == EINVAL) {
		snprintf(err, errlen, "not a regular file");
		goto out;
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "%s", strerror(errno));
		goto out;
	} else
		known_hosts_mkdirs(dir);

	xasprintf(&tmp, "%s/.known_hosts.XXXXXX", dir);
	if ((tfd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "cannot create a temporary file in %s: "
		    "%s", dir, strerror(errno));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	if (fchmod(tfd, mode) == -1) {
		snprintf(err, errlen, "chmod: %s", strerror(errno));
		goto out;
	}
	if (exists && geteuid() == 0 && (st.st_uid != 0 || st.st_gid != 0) &&
	    fchown(tfd, st.st_uid, st.st_gid) == -1) {
		snprintf(err, errlen, "chown: %s", strerror(errno));
		goto out;
	}
	if ((oldlen > 0 && (known_hosts_write(tfd, old, oldlen) == -1 ||
	    (old[oldlen - 1] != '\n' && known_hosts_write(tfd, "\n", 1) ==
	    -1))) || known_hosts_write(tfd, entry, linelen) == -1 ||
	    known_hosts_write(tfd, "\n", 1) == -1) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		goto out;
	}
	if (fsync(tfd) == -1) {
		snprintf(err, errlen, "fsync: %s", strerror(errno));
		goto out;
	}
	if (close(tfd) == -1) {
		tfd = -1;
		snprintf(err, errlen, "close: %s", strerror(errno));
		goto out;
	}
	tfd = -1;
	if (rename(tmp, target) == -1) {
		snprintf(err, errlen, "rename: %s", strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	rc = 0;

	/* The rename itself must reach the disk too. */
	if ((tfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(tfd) == -1)
		log_warn("known_hosts: fsync %s", dir);

out:
	if (tfd != -1)
		close(tfd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	if (fd != -1)
		close(fd);
	free(old);
	free(dir);
	free(target);
	return (rc);
}
