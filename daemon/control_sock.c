/*
 * control_sock.c: the control socket's file: binding it (creating the
 * directories above it, replacing a stale socket nobody answers on, mode
 * 0660 and the control group) and removing only a file we made.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tunneld.h"

#define CONTROL_BACKLOG	64

static void	control_sock_parent(const char *);
static int	control_sock_probe(const char *);

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

/* Whether a daemon answers on path (1), or nothing does (0). */
static int
control_sock_probe(const char *path)
{
	struct sockaddr_un	sun;
	int			fd, live;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_(sun.sun_path, path, sizeof(sun.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		return (0);
	live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS;
	close(fd);
	return (live);
}

/*
 * Bind and listen on path (mode 0660, owned by group when given); returns
 * the fd, with the file's device and inode (to remove only our own file
 * later), or -1.
 */
int
control_sock_bind(const char *path, const char *group, dev_t *dev,
    ino_t *ino)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	struct group		*gr;
	gid_t			 gid = (gid_t)-1;
	mode_t			 old;
	int			 fd;

	if (path == NULL || *path == '\0') {
		log_warnx("control: no socket path");
		return (-1);
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_warnx("control socket %s: path too long (limit %zu bytes)",
		    path, sizeof(sun.sun_path) - 1);
		return (-1);
	}
	if (group != NULL && *group != '\0') {
		if ((gr = getgrnam(group)) == NULL) {
			log_warnx("control socket %s: unknown group \"%s\"",
			    path, group);
			return (-1);
		}
		gid = gr->gr_gid;
	}

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("control socket %s: exists and is not a "
			    "socket", path);
			return (-1);
		}
		if (control_sock_probe(path)) {
			log_warnx("control socket %s is already in use", path);
			return (-1);
		}
		if (unlink(path) == -1 && errno != ENOENT) {
			log_warn("control socket %s: unlink", path);
			return (-1);
		}
	} else if (errno != ENOENT) {
		log_warn("control socket %s", path);
		return (-1);
	} else
		control_sock_parent(path);

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		log_warn("control: socket");
		return (-1);
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_(sun.sun_path, path, sizeof(sun.sun_path));
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_warn("control socket %s: bind", path);
		umask(old);
		close(fd);
		return (-1);
	}
	umask(old);
	if (chmod(path, 0660) == -1) {
		log_warn("control socket %s: chmod", path);
		goto fail;
	}
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) == -1) {
		log_warn("control socket %s: chown to group %s", path, group);
		goto fail;
	}
	if (listen(fd, CONTROL_BACKLOG) == -1) {
		log_warn("control socket %s: listen", path);
		goto fail;
	}
	if (stat(path, &st) == 0) {
		*dev = st.st_dev;
		*ino = st.st_ino;
	}
	log_debug("control: listening on %s", path);
	return (fd);

fail:
	unlink(path);
	close(fd);
	return (-1);
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
