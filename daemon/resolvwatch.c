/*
 * resolvwatch.c: the resolver's configuration follows /etc/resolv.conf and
 * /etc/hosts while the daemon runs (DHCP, a VPN, systemd-resolved and
 * administrators change them), instead of being read once at the start.
 *
 * Watching (inotify, non-blocking, in the loop), for each of the two:
 *   - its directory, for the name: such files are usually replaced (a new
 *     file renamed over the old one), which only the directory sees;
 *   - the file itself (its inode, the symlink followed): inside `ip netns
 *     exec` both are bind mounts of the files of /etc/netns/NS, which cannot be
 *     renamed over and whose writes through the other path raise nothing
 *     on /etc; only the inode sees them. After a replacement the new file
 *     is watched instead;
 *   - when it is a symlink (systemd-resolved's /etc/resolv.conf points to
 *     /run/systemd/resolve/stub-resolv.conf), the target's directory too,
 *     for the target's name.
 * An event starts a short settle timer (writers write in several steps);
 * then the files are read and hashed, and only a file whose content
 * changed is reloaded into evdns: for resolv.conf the nameservers go
 * (evdns_base_clear_nameservers_and_suspend: lookups in flight wait),
 * the search list and the hosts entries are cleared, the file is parsed
 * again (with the hosts file), and evdns resumes: the waiting lookups go
 * to the new nameservers. For the hosts file alone, its entries are
 * replaced. Either way a notice names what changed, and it counts as a
 * network change (netwatch.c): links in backoff retry now.
 */
#include <sys/types.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "tunneld.h"

#define RESOLVWATCH_SETTLE_US	100000	/* quiet time before reading */
#define RESOLVWATCH_MAXNS	8	/* nameservers named in the notice */
#define RESOLVWATCH_DIR_EVENTS	(IN_CREATE | IN_MOVED_TO | IN_DELETE | \
	IN_MOVED_FROM | IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR)
#define RESOLVWATCH_FILE_EVENTS	(IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | \
	IN_DELETE_SELF | IN_MOVE_SELF)

/* One watched file. */
struct resolvwatch_file {
	const char	*path;		/* "/etc/resolv.conf" */
	char		 name[NAME_MAX + 1];	/* its base name */
	char		 target[PATH_MAX];	/* a symlink's, or "" */
	char		 tname[NAME_MAX + 1];	/* the target's base name */
	int		 wd_dir;	/* its directory; -1 */
	int		 wd_tdir;	/* the target's directory; -1 */
	int		 wd_file;	/* the file itself; -1 */
	uint64_t	 sum;		/* content hash; 0: unreadable */
};

enum { RW_RESOLV, RW_HOSTS, RW_NFILES };

static struct {
	int			 fd;		/* inotify; -1 when none */
	struct event		*ev;
	struct event		*ev_settle;
	struct resolvwatch_file	 f[RW_NFILES];
} rw = { .fd = -1 };

static void	resolvwatch_read_cb(int, short, void *);
static void	resolvwatch_settle_cb(int, short, void *);
static void	resolvwatch_watch(struct resolvwatch_file *);
static uint64_t	resolvwatch_sum(const char *);
static void	resolvwatch_load(int);
static void	resolvwatch_nameservers(char *, size_t);

/* Load the resolver's configuration, then start watching its files. */
void
resolvwatch_init(void)
{
	int i;

	/* Other files only for the tests, which cannot replace /etc's. */
	if ((rw.f[RW_RESOLV].path = getenv("TUNNELD_RESOLV_CONF")) == NULL)
		rw.f[RW_RESOLV].path = "/etc/resolv.conf";
	if ((rw.f[RW_HOSTS].path = getenv("TUNNELD_HOSTS")) == NULL)
		rw.f[RW_HOSTS].path = "/etc/hosts";
	for (i = 0; i < RW_NFILES; i++) {
		rw.f[i].wd_dir = rw.f[i].wd_tdir = rw.f[i].wd_file = -1;
		rw.f[i].sum = resolvwatch_sum(rw.f[i].path);
	}
	resolvwatch_load(1);
	if ((rw.ev_settle = evtimer_new(td->base, resolvwatch_settle_cb,
	    NULL)) == NULL)
		fatalx("resolvwatch_init: out of memory");
	if ((rw.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		log_warn("resolvwatch: inotify; changes to /etc/resolv.conf "
		    "and /etc/hosts need a restart");
		return;
	}
	if ((rw.ev = event_new(td->base, rw.fd, EV_READ | EV_PERSIST,
	    resolvwatch_read_cb, NULL)) == NULL)
		fatalx("resolvwatch_init: out of memory");
	event_add(rw.ev, NULL);
	for (i = 0; i < RW_NFILES; i++)
		resolvwatch_watch(&rw.f[i]);
}

/* Stop watching (at the stop); td->dns is main.c's to free. */
void
resolvwatch_free(void)
{
	if (rw.ev != NULL)
		event_free(rw.ev);
	if (rw.ev_settle != NULL)
		event_free(rw.ev_settle);
	rw.ev = rw.ev_settle = NULL;
	if (rw.fd != -1)
		close(rw.fd);	/* and every watch with it */
	rw.fd = -1;
}

/*
 * (Re)add the watches of one file: its directory, the file as it is now
 * (a replaced file's old inode is let go), a symlink's target directory.
 * A file that does not exist has only its directory watched.
 */
static void
resolvwatch_watch(struct resolvwatch_file *f)
{
	char	 buf[PATH_MAX], *real;
	int	 wd;

	strlcpy_(buf, f->path, sizeof(buf));
	strlcpy_(f->name, basename(buf), sizeof(f->name));
	strlcpy_(buf, f->path, sizeof(buf));
	if (f->wd_dir == -1 && (f->wd_dir = inotify_add_watch(rw.fd,
	    dirname(buf), RESOLVWATCH_DIR_EVENTS)) == -1)
		log_warn("resolvwatch: watch the directory of %s", f->path);

	f->target[0] = f->tname[0] = '\0';
	if ((real = realpath(f->path, NULL)) != NULL) {
		if (strcmp(real, f->path) != 0) {
			strlcpy_(f->target, real, sizeof(f->target));
			strlcpy_(buf, real, sizeof(buf));
			strlcpy_(f->tname, basename(buf), sizeof(f->tname));
			strlcpy_(buf, real, sizeof(buf));
			/* The same directory gives the same watch again. */
			if ((wd = inotify_add_watch(rw.fd, dirname(buf),
			    RESOLVWATCH_DIR_EVENTS)) != -1)
				f->wd_tdir = wd;
		}
		free(real);
	}

	wd = inotify_add_watch(rw.fd, f->path, RESOLVWATCH_FILE_EVENTS);
	if (f->wd_file != -1 && f->wd_file != wd &&
	    f->wd_file != rw.f[RW_RESOLV].wd_dir &&
	    f->wd_file != rw.f[RW_HOSTS].wd_dir)
		inotify_rm_watch(rw.fd, f->wd_file);	/* may be gone already */
	f->wd_file = wd;
}

/* inotify has events: any about our files starts the settle timer. */
static void
resolvwatch_read_cb(int fd, short what, void *arg)
{
	static union {
		struct inotify_event	 ev;
		char			 buf[8192];
	}				 u;
	const struct inotify_event	*e;
	const struct resolvwatch_file	*f;
	struct timeval			 tv;
	ssize_t				 n;
	size_t				 off;
	int				 i, ours = 0, reads;

	(void)what;
	(void)arg;
	for (reads = 0; reads < 16; reads++) {
		n = read(fd, u.buf, sizeof(u.buf));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("resolvwatch: inotify read");
			break;
		}
		for (off = 0; off + sizeof(*e) <= (size_t)n;
		    off += sizeof(*e) + e->len) {
			e = (const struct inotify_event *)(u.buf + off);
			if (off + sizeof(*e) + e->len > (size_t)n)
				break;
			if (e->mask & IN_Q_OVERFLOW) {
				ours = 1;	/* lost events: look anyway */
				continue;
			}
			for (i = 0; i < RW_NFILES; i++) {
				f = &rw.f[i];
				if (e->wd == f->wd_file ||
				    (e->len > 0 && e->wd == f->wd_dir &&
				    strcmp(e->name, f->name) == 0) ||
				    (e->len > 0 && e->wd == f->wd_tdir &&
				    strcmp(e->name, f->tname) == 0))
					ours = 1;
			}
		}
	}
	if (!ours)
		return;
	tv.tv_sec = 0;
	tv.tv_usec = RESOLVWATCH_SETTLE_US;
	evtimer_add(rw.ev_settle, &tv);
}

/* The files have been quiet a moment: reload what changed. */
static void
resolvwatch_settle_cb(int fd, short what, void *arg)
{
	uint64_t	sum;
	int		i, changed = 0;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < RW_NFILES; i++) {
		resolvwatch_watch(&rw.f[i]);
		sum = resolvwatch_sum(rw.f[i].path);
		if (sum != rw.f[i].sum)
			changed |= 1 << i;
		rw.f[i].sum = sum;
	}
	if (changed == 0) {
		log_debug("resolvwatch: touched, content unchanged");
		return;
	}
	if (changed & (1 << RW_RESOLV))
		resolvwatch_load(0);
	else {
		evdns_base_clear_host_addresses(td->dns);
		evdns_base_load_hosts(td->dns, rw.f[RW_HOSTS].path);
		log_notice("resolver: %s changed: its names reloaded",
		    rw.f[RW_HOSTS].path);
	}
	netwatch_changed(NETWATCH_RESOLVER);
}

/*
 * Give evdns the configuration of resolv.conf and the hosts file, as at
 * the start (missing file or no nameserver: 127.0.0.1, as glibc does).
 * Lookups in flight are held while the nameservers change, then go to
 * the new ones.
 */
static void
resolvwatch_load(int first)
{
	const char	*path = rw.f[RW_RESOLV].path;
	char		 ns[256];
	int		 r;

	evdns_base_clear_nameservers_and_suspend(td->dns);
	evdns_base_search_clear(td->dns);
	evdns_base_clear_host_addresses(td->dns);
	r = evdns_base_resolv_conf_parse(td->dns, DNS_OPTIONS_ALL &
	    ~DNS_OPTION_HOSTSFILE, path);
	evdns_base_load_hosts(td->dns, rw.f[RW_HOSTS].path);
	evdns_base_resume(td->dns);
	resolvwatch_nameservers(ns, sizeof(ns));
	if (first) {
		if (r != 0)
			log_info("resolver: %s: %s; nameservers %s", path,
			    r == 1 ? "none" : r == 6 ? "no nameserver in it" :
			    "unreadable", ns);
		else
			log_debug("resolver: nameservers %s", ns);
		return;
	}
	log_notice("resolver: %s changed%s: nameservers now %s; %s "
	    "reloaded", path, r == 1 ? " (gone)" : r == 6 ?
	    " (no nameserver in it)" : r != 0 ? " (unreadable)" : "", ns,
	    rw.f[RW_HOSTS].path);
}

/* "10.0.0.1:53, [2001:db8::1]:53": evdns's nameservers now. */
static void
resolvwatch_nameservers(char *buf, size_t len)
{
	struct sockaddr_storage	ss;
	char			one[HOST_MAXLEN + 16];
	size_t			off = 0;
	int			i, n;

	buf[0] = '\0';
	for (i = 0; i < RESOLVWATCH_MAXNS; i++) {
		if (evdns_base_get_nameserver_addr(td->dns, i,
		    (struct sockaddr *)&ss, sizeof(ss)) <= 0)
			break;
		sockaddr_format((struct sockaddr *)&ss, one, sizeof(one));
		n = snprintf(buf + off, len - off, "%s%s", i > 0 ? ", " : "",
		    one);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (buf[0] == '\0')
		strlcpy_(buf, "none", len);
}

/*
 * A hash of a file's content (FNV-1a, 64 bits), read in small blocks: so
 * a touch or a rewrite with the same text reloads nothing. 0 when the
 * file cannot be read.
 */
static uint64_t
resolvwatch_sum(const char *path)
{
	char		buf[4096];
	uint64_t	h = 14695981039346656037ULL;
	ssize_t		n, i;
	int		fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return (0);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (i = 0; i < n; i++) {
			h ^= (unsigned char)buf[i];
			h *= 1099511628211ULL;
		}
	}
	close(fd);
	return (h == 0 ? 1 : h);
}
