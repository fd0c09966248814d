/*
 * control_sock.c: the control socket's file: binding it (creating the
 * directories above it, replacing a stale socket nobody answers on, mode
 * 0660, or 0666 with a status_group, and the control group) and removing
 * only a file we made. Who may do what is control.c's business.
 *
 * Failing to bind is logged as an error: at start-up it stops the daemon.
 * When something answers on the path, the probe's peer credentials name
 * the process that listens: "another tunneld is running on PATH (pid N)".
 * Those are taken when listen(2) is called, by the process that calls it:
 * a daemon that detaches after binding calls control_sock_claim() so that
 * they name the daemon, not the parent that exited.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tunneld.h"

#define CONTROL_BACKLOG	64

static int	control_sock_fd = -1;	/* the socket bound last */

static void	control_sock_parent(const char *);
static int	control_sock_probe(const char *, pid_t *);
static void	control_sock_in_use(const char *, pid_t);

/* Create the directories above path that are missing (mode 0755). */
static void
control_sock_parent(const char *path)
{
	char	*dir, *p;

	dir = xstrdup(path);
	if ((p = strrchr(dir, '/')) != NULL && p != dir) {
		*p = '\0';
		for (p = dir + 1; *p != '\0'; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(dir, 0755) == -1 && errno != EEXIST)
				log_warn("control: mkdir %s", dir);
			*p = '/';
		}
		if (mkdir(dir, 0755) == -1 && errno != EEXIST)
			log_warn("control: mkdir %s", dir);
	}
	free(dir);
}

/*
 * Whether a daemon answers on path (1), or nothing does (0). *pid is the
 * process that listens there (SO_PEERCRED: the one that called listen),
 * or 0 if unknown.
 */
static int
control_sock_probe(const char *path, pid_t *pid)
{
	struct sockaddr_un	sun;
	struct ucred		cred;
	socklen_t		len = sizeof(cred);
	int			fd, live;

	*pid = 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_(sun.sun_path, path, sizeof(sun.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		return (0);
	live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS;
	if (live && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred,
	    &len) == 0 && len == sizeof(cred))
		*pid = cred.pid;
	close(fd);
	return (live);
}

/*
 * Say who holds the socket at path: another tunneld, as its
 * /proc/PID/comm says, or some other program.
 */
static void
control_sock_in_use(const char *path, pid_t pid)
{
	char	proc[64], comm[64];
	ssize_t	n = -1;
	int	fd;

	if (pid <= 0) {
		log_errorx("control socket %s is already in use (by a process "
		    "that cannot be named): is another tunneld running?",
		    path);
		return;
	}
	snprintf(proc, sizeof(proc), "/proc/%ld/comm", (long)pid);
	if ((fd = open(proc, O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, comm, sizeof(comm) - 1);
		close(fd);
	}
	if (n <= 0) {
		/* Its /proc entry is hidden from us (hidepid, ProtectProc). */
		log_errorx("control socket %s is in use by pid %ld: is another "
		    "tunneld running?", path, (long)pid);
		return;
	}
	comm[n] = '\0';
	comm[strcspn(comm, "\n")] = '\0';
	if (strcmp(comm, "tunneld") == 0)
		log_errorx("another tunneld is running on %s (pid %ld)", path,
		    (long)pid);
	else
		log_errorx("control socket %s is in use by %s (pid %ld)", path,
		    comm, (long)pid);
}

/*
 * Bind and listen on path (mode 0660, or 0666 when a status_group needs
 * other users to connect; owned by group when given); returns the fd,
 * with the file's device and inode (to remove only our own file later),
 * or -1.
 */
int
control_sock_bind(const char *path, const char *group, mode_t mode,
    dev_t *dev, ino_t *ino)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	struct group		*gr;
	gid_t			 gid = (gid_t)-1;
	mode_t			 old;
	pid_t			 pid;
	int			 fd;

	if (path == NULL || *path == '\0') {
		log_errorx("control: no socket path");
		return (-1);
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_errorx("control socket %s: path too long (limit %zu bytes)",
		    path, sizeof(sun.sun_path) - 1);
		return (-1);
	}
	if (group != NULL && *group != '\0') {
		if ((gr = getgrnam(group)) == NULL) {
			log_errorx("control socket %s: control_group \"%s\" is "
			    "not a group on this system", path, group);
			return (-1);
		}
		gid = gr->gr_gid;
	}

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_errorx("control socket %s: exists and is not a "
			    "socket", path);
			return (-1);
		}
		if (control_sock_probe(path, &pid)) {
			control_sock_in_use(path, pid);
			return (-1);
		}
		if (unlink(path) == -1 && errno != ENOENT) {
			log_error("control socket %s: unlink", path);
			return (-1);
		}
	} else if (errno != ENOENT) {
		log_error("control socket %s", path);
		return (-1);
	} else
		control_sock_parent(path);

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		log_error("control: socket");
		return (-1);
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_(sun.sun_path, path, sizeof(sun.sun_path));
	old = umask(0777 & ~mode);	/* never more open than asked */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_error("control socket %s: bind", path);
		umask(old);
		close(fd);
		return (-1);
	}
	umask(old);
	if (chmod(path, mode) == -1) {
		log_error("control socket %s: chmod", path);
		goto fail;
	}
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) == -1) {
		log_error("control socket %s: chown to group %s", path,
		    group);
		goto fail;
	}
	if (listen(fd, CONTROL_BACKLOG) == -1) {
		log_error("control socket %s: listen", path);
		goto fail;
	}
	if (stat(path, &st) == 0) {
		*dev = st.st_dev;
		*ino = st.st_ino;
	}
	log_debug("control: listening on %s", path);
	control_sock_fd = fd;
	return (fd);

fail:
	unlink(path);
	close(fd);
	return (-1);
}

/*
 * After daemon(3): listen again on the socket bound before, so that its
 * peer credentials (SO_PEERCRED) name this process.
 */
void
control_sock_claim(void)
{
	if (control_sock_fd != -1 &&
	    listen(control_sock_fd, CONTROL_BACKLOG) == -1)
		log_warn("control: listen again after detaching");
}

/* Remove path if it is still the file we bound (dev, ino). */
void
control_sock_unlink(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;

	/* Only our own file: another daemon may have taken the path. */
	if (stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
		unlink(path);
}
