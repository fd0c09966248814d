/*
 * sdfds.c: the listening sockets systemd hands us and keeps for us.
 *
 * At start, sd_listen_fds_with_names() gives the sockets of the socket
 * units that trigger tunneld.service and those of the service's file
 * descriptor store. Their names say whose they are:
 *
 *   "control"        the control socket (or any name: a UNIX listening
 *                    socket bound at the control socket's path);
 *   NAME             a tunnel's listener from a socket unit
 *                    (FileDescriptorName=NAME): systemd owns it, so a
 *                    privileged port needs no capability;
 *   "tunnel/NAME"    a listener tunneld bound itself and stored with
 *                    FDSTORE=1, handed back after a restart so that no
 *                    client is refused in between ('/' is never part of a
 *                    tunnel name).
 *
 * The table here holds the sockets nobody has taken yet. fwd_local.c takes
 * a tunnel's socket when it binds, checks it listens where the tunnel
 * does, and gives a socket unit's socket back when the tunnel goes down
 * (systemd still holds it: binding the port again would fail). The store
 * mirrors the listeners tunneld bound itself: one is stored when bound and
 * removed when closed, except at a stop, when the store keeps it for the
 * next daemon.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "tunneld.h"

#define SDFDS_STORE_PREFIX	"tunnel/"

struct sdfd {
	char	*name;		/* FileDescriptorName= or FDNAME= */
	int	 fd;		/* -1 once taken */
	int	 warned;	/* "no tunnel of that name" said */
};

static struct sdfd	*sdfds;
static int		 nsdfds;

static int	sdfds_unix_path(int, char *, size_t);
static int	sdfds_same_file(const char *, const char *);
static void	sdfds_add(const char *, int);
static void	sdfds_unstore_name(const char *);
static int	sdfds_is_tunnel(const char *);

/* Read what systemd passed: LISTEN_FDS and LISTEN_FDNAMES. */
int
sdfds_init(void)
{
	char	**names = NULL;
	int	  n, i, fd;

	if ((n = sd_listen_fds_with_names(1, &names)) < 0) {
		log_warnx("systemd: sd_listen_fds: %s", strerror(-n));
		return (-1);
	}
	for (i = 0; i < n; i++) {
		fd = SD_LISTEN_FDS_START + i;
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1 ||
		    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
			log_warn("systemd: socket %d", fd);
		sdfds_add(names != NULL && names[i] != NULL ? names[i] :
		    "unknown", fd);
		log_debug("systemd: passed socket %d named \"%s\"", fd,
		    sdfds[nsdfds - 1].name);
	}
	if (names != NULL) {
		for (i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	return (0);
}

/* Append a socket to the table. */
static void
sdfds_add(const char *name, int fd)
{
	struct sdfd *n;

	if ((n = reallocarray(sdfds, nsdfds + 1, sizeof(*sdfds))) == NULL)
		fatal("systemd sockets");
	sdfds = n;
	sdfds[nsdfds].name = xstrdup(name);
	sdfds[nsdfds].fd = fd;
	sdfds[nsdfds].warned = 0;
	nsdfds++;
}

/* The path a listening UNIX stream socket is bound to: 0, or -1. */
static int
sdfds_unix_path(int fd, char *path, size_t len)
{
	struct sockaddr_un	sun;
	socklen_t		slen = sizeof(sun);

	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0)
		return (-1);
	memset(&sun, 0, sizeof(sun));
	if (getsockname(fd, (struct sockaddr *)&sun, &slen) == -1 ||
	    slen <= offsetof(struct sockaddr_un, sun_path) ||
	    sun.sun_path[0] == '\0')
		return (-1);
	strlcpy_(path, sun.sun_path, len);
	return (0);
}

/* Whether two paths name one file (same bytes, or through a link). */
static int
sdfds_same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	if (strcmp(a, b) == 0)
		return (1);
	return (stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
	    sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

/*
 * The control socket systemd passed: one named "control", or a UNIX
 * listening socket bound at path. Returns its fd, -1 if there is none, -2
 * (logged) if it is not usable: not a listening UNIX socket, or bound
 * elsewhere than path, where tunctl would not find it.
 */
int
sdfds_control(const char *path)
{
	char	bound[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int	i, fd, named;

	for (i = 0; i < nsdfds; i++) {
		if ((fd = sdfds[i].fd) == -1)
			continue;
		named = strcmp(sdfds[i].name, "control") == 0;
		if (sdfds_unix_path(fd, bound, sizeof(bound)) == -1) {
			if (!named)
				continue;
			log_warnx("control: the socket systemd passed as "
			    "\"control\" is not a listening UNIX stream "
			    "socket");
			return (-2);
		}
		if (sdfds_same_file(bound, path)) {
			sdfds[i].fd = -1;
			return (fd);
		}
		if (named) {
			log_warnx("control: systemd passed a control socket "
			    "at %s, but tunneld's is %s (daemon."
			    "control_socket or -s; tunctl looks there): make "
			    "them the same", bound, path);
			return (-2);
		}
	}
	return (-1);
}

/*
 * The socket systemd holds for tunnel name: a socket unit's
 * (FileDescriptorName=name, *from_unit set) or the one we stored before a
 * restart. Returns the fd, now the caller's, or -1.
 */
int
sdfds_take(const char *name, int *from_unit)
{
	char	stored[sizeof(SDFDS_STORE_PREFIX) + NAME_MAXLEN];
	int	i, fd;

	snprintf(stored, sizeof(stored), SDFDS_STORE_PREFIX "%s", name);
	for (i = 0; i < nsdfds; i++) {
		if (sdfds[i].fd == -1)
			continue;
		if (strcmp(sdfds[i].name, name) == 0)
			*from_unit = 1;
		else if (strcmp(sdfds[i].name, stored) == 0)
			*from_unit = 0;
		else
			continue;
		fd = sdfds[i].fd;
		sdfds[i].fd = -1;
		return (fd);
	}
	return (-1);
}

/*
 * A socket unit's socket the tunnel no longer uses (down, removed, or not
 * where the tunnel listens): systemd keeps it open whatever we do, so keep
 * it for the tunnel's next bind instead of closing it.
 */
void
sdfds_give_back(const char *name, int fd)
{
	int i;

	for (i = 0; i < nsdfds; i++) {
		if (sdfds[i].fd == -1 && strcmp(sdfds[i].name, name) == 0) {
			sdfds[i].fd = fd;
			return;
		}
	}
	sdfds_add(name, fd);
}

/*
 * Hand a listener we bound to systemd's file descriptor store, so that a
 * restarted daemon gets it back (and the kernel queues the connections
 * meanwhile). Returns 1 if systemd took the message.
 */
int
sdfds_store(const char *name, int fd)
{
	char	msg[64 + NAME_MAXLEN];
	int	r;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return (0);
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=" SDFDS_STORE_PREFIX
	    "%s", name);
	if ((r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1)) < 0) {
		log_debug("tunnel %s: FDSTORE: %s", name, strerror(-r));
		return (0);
	}
	return (r > 0);
}

/* Take a stored listener out of the store (it is being closed). */
void
sdfds_unstore(const char *name)
{
	char stored[sizeof(SDFDS_STORE_PREFIX) + NAME_MAXLEN];

	snprintf(stored, sizeof(stored), SDFDS_STORE_PREFIX "%s", name);
	sdfds_unstore_name(stored);
}

/* FDSTOREREMOVE=1 for one name. */
static void
sdfds_unstore_name(const char *fdname)
{
	char msg[64 + 256];

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", fdname);
	sd_notify(0, msg);
}

/*
 * After the start (and after each reload): a stored socket no tunnel took
 * belongs to a tunnel that is gone, and is dropped from the store; a
 * socket unit's socket that no tunnel claims is kept for a reload that
 * adds the tunnel, and said once.
 */
void
sdfds_leftovers(void)
{
	int i;

	for (i = 0; i < nsdfds; i++) {
		if (sdfds[i].fd == -1)
			continue;
		if (strncmp(sdfds[i].name, SDFDS_STORE_PREFIX,
		    strlen(SDFDS_STORE_PREFIX)) == 0) {
			log_info("systemd: no tunnel %s now: dropping its "
			    "stored socket", sdfds[i].name +
			    strlen(SDFDS_STORE_PREFIX));
			sdfds_unstore_name(sdfds[i].name);
			close(sdfds[i].fd);
			sdfds[i].fd = -1;
			continue;
		}
		if (!sdfds[i].warned && !sdfds_is_tunnel(sdfds[i].name)) {
			sdfds[i].warned = 1;
			log_warnx("systemd: passed a socket named \"%s\", but "
			    "there is no tunnel of that name (the socket "
			    "unit's FileDescriptorName= must be the tunnel's "
			    "name)", sdfds[i].name);
		}
	}
}

/* Whether the configuration has a tunnel of that name. */
static int
sdfds_is_tunnel(const char *name)
{
	int i;

	for (i = 0; i < td->conf->ntunnels; i++)
		if (strcmp(td->conf->tunnels[i].name, name) == 0)
			return (1);
	return (0);
}

/* Close what is left, at the stop. */
void
sdfds_free(void)
{
	int i;

	for (i = 0; i < nsdfds; i++) {
		if (sdfds[i].fd != -1)
			close(sdfds[i].fd);
		free(sdfds[i].name);
	}
	free(sdfds);
	sdfds = NULL;
	nsdfds = 0;
}
