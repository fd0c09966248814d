/*
 * control_access.c: who may use the control socket (SPEC section 4).
 *
 * Who may do what is decided from the peer's credentials as the kernel
 * took them at connect(2): SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS
 * (the supplementary groups), never from NSS, so the loop never blocks on
 * a directory service. Root, the daemon's own user and the members of the
 * control group (daemon.control_group, else the group that owns the
 * socket file) may use every verb; members of status_group (its gid looked
 * up when the configuration is loaded) only the verbs that do not change
 * anything. With a status_group the socket is 0666: anyone else may
 * connect, is told "permission denied" and closed at once, before taking
 * a client slot. Every refusal is logged with the peer's uid and pid
 * (rate-limited, logrl.c).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-proto.h"
#include "tunneld.h"

#define CONTROL_GROUPS_MAX	65536		/* NGROUPS_MAX of Linux */

static int	control_in_group(const struct control_peer *, gid_t);

static struct {
	gid_t			 admin_gid;	/* the control group, or -1 */
	char			 admin_name[64];	/* for messages */
	struct logrl		 rl_connect;	/* outsiders refused */
	struct logrl		 rl_request;	/* read-only users refused */
} acl = {
	.admin_gid = (gid_t)-1,
};

/* The socket's mode: 0666 when status_group users must reach it. */
mode_t
control_access_mode(void)
{
	return (td->conf->status_group != NULL ? 0666 : 0660);
}

/*
 * Learn the control group: group when we bound the socket with it, else
 * the group that owns the file at path (ours, or SocketGroup= of a socket
 * systemd passed). NSS is asked here, when the socket is set up, never
 * per request.
 */
void
control_access_group(const char *path, const char *group)
{
	struct stat	 st;
	struct group	*gr;

	acl.admin_gid = (gid_t)-1;
	strlcpy_(acl.admin_name, "none", sizeof(acl.admin_name));
	if (stat(path, &st) == -1) {
		log_warn("control: stat %s", path);
		return;
	}
	acl.admin_gid = st.st_gid;
	if (group != NULL && *group != '\0')
		strlcpy_(acl.admin_name, group, sizeof(acl.admin_name));
	else if ((gr = getgrgid(st.st_gid)) != NULL)
		strlcpy_(acl.admin_name, gr->gr_name,
		    sizeof(acl.admin_name));
	else
		snprintf(acl.admin_name, sizeof(acl.admin_name),
		    "gid %ld", (long)st.st_gid);
}

/* Whether a peer may use the clients kept in reserve: root, or our user. */
int
control_access_privileged(uid_t uid)
{
	return (uid == 0 || uid == geteuid());
}

/*
 * The peer's credentials as the kernel took them at connect(2): uid, gid
 * and pid (SO_PEERCRED) and the supplementary groups (SO_PEERGROUPS).
 * Unknown credentials are (uid_t)-1 and no group: they grant nothing.
 */
void
control_peer_get(int s, struct control_peer *p)
{
	struct ucred	uc;
	gid_t		small[64];
	socklen_t	len = sizeof(uc);

	memset(p, 0, sizeof(*p));
	p->uid = (uid_t)-1;
	p->gid = (gid_t)-1;
	p->pid = -1;
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1 ||
	    len != sizeof(uc))
		return;
	p->uid = uc.uid;
	p->gid = uc.gid;
	p->pid = uc.pid;

	len = sizeof(small);
	if (getsockopt(s, SOL_SOCKET, SO_PEERGROUPS, small, &len) == 0) {
		if (len == 0)
			return;
		p->groups = xmalloc(len);
		memcpy(p->groups, small, len);
	} else {
		/* ERANGE: len is the size needed. */
		if (errno != ERANGE || len == 0 ||
		    len > CONTROL_GROUPS_MAX * sizeof(gid_t)) {
			log_debug("control: uid %ld pid %ld: SO_PEERGROUPS: %s",
			    (long)p->uid, (long)p->pid, strerror(errno));
			return;
		}
		p->groups = xmalloc(len);
		if (getsockopt(s, SOL_SOCKET, SO_PEERGROUPS, p->groups,
		    &len) == -1) {
			free(p->groups);
			p->groups = NULL;
			return;
		}
	}
	p->ngroups = (int)(len / sizeof(gid_t));
}

/* Whether the peer had gid g, as its group or a supplementary one. */
static int
control_in_group(const struct control_peer *p, gid_t g)
{
	int i;

	if (g == (gid_t)-1)
		return (0);
	if (p->gid == g)
		return (1);
	for (i = 0; i < p->ngroups; i++) {
		if (p->groups[i] == g)
			return (1);
	}
	return (0);
}

/*
 * What the peer may do now: everything (root, our own user, the control
 * group), read (status_group of the running configuration), or nothing.
 */
enum control_access
control_access(const struct control_peer *p)
{
	if (p->uid == (uid_t)-1)
		return (CONTROL_DENY);
	if (control_access_privileged(p->uid) ||
	    control_in_group(p, acl.admin_gid))
		return (CONTROL_ALL);
	if (td->conf->status_group != NULL &&
	    control_in_group(p, td->conf->status_gid))
		return (CONTROL_READ);
	return (CONTROL_DENY);
}

/*
 * A peer that may do nothing (the socket is 0666 for status_group): tell
 * it why, close, and log it. It never takes a client slot.
 */
void
control_access_refuse(int s, struct control_peer *p)
{
	const char	*sg = td->conf->status_group;
	char		 why[256], msg[CONTROL_MSG_MAX];

	if (sg != NULL)
		snprintf(why, sizeof(why), "in neither the control group (%s) "
		    "nor status_group (%s)", acl.admin_name, sg);
	else
		snprintf(why, sizeof(why), "not in the control group (%s)",
		    acl.admin_name);
	snprintf(msg, sizeof(msg), "%s %d permission denied: uid %ld is %s\n",
	    CTL_END, CTL_EXIT_UNREACHABLE, (long)p->uid, why);
	if (send(s, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		log_debug("control: send: %s", strerror(errno));
	close(s);
	logrl_log(&acl.rl_connect, LOGL_WARNING, "refused connections",
	    "control: uid %ld pid %ld: permission denied: %s; connection "
	    "closed", (long)p->uid, (long)p->pid, why);
	free(p->groups);
	p->groups = NULL;
}

/*
 * Whether the peer may make a request with this verb (what: the request,
 * for the log): 0 when it may; else 1, with the reason to answer
 * ("permission denied: ...") in msg. A member of status_group may use the
 * verbs that only read.
 */
int
control_access_check(const struct control_peer *p, int verb,
    const char *what, char *msg, size_t msglen)
{
	enum control_access	 a = control_access(p);
	char			 verbs[256];
	size_t			 off = 0;
	int			 i, n;

	if (a == CONTROL_ALL || (a == CONTROL_READ &&
	    !(ctl_verbs[verb].flags & CTL_F_MUTATING)))
		return (0);
	logrl_log(&acl.rl_request, LOGL_WARNING, "refused requests",
	    "control: uid %ld pid %ld: permission denied: %s", (long)p->uid,
	    (long)p->pid, what);
	if (a == CONTROL_DENY) {
		/* status_group was removed by a reload since it connected. */
		snprintf(msg, msglen, "permission denied: uid %ld is not in "
		    "the control group (%s)", (long)p->uid, acl.admin_name);
		return (1);
	}
	verbs[0] = '\0';
	for (i = 0; i < CTL_NVERBS; i++) {
		if (ctl_verbs[i].flags & CTL_F_MUTATING)
			continue;
		n = snprintf(verbs + off, sizeof(verbs) - off, "%s%s",
		    off > 0 ? ", " : "", ctl_verbs[i].name);
		if (n < 0 || (size_t)n >= sizeof(verbs) - off)
			break;
		off += (size_t)n;
	}
	snprintf(msg, msglen, "permission denied: \"%s\" changes tunneld, "
	    "and uid %ld is not in the control group (%s); status_group (%s) "
	    "may only use %s", ctl_verbs[verb].name, (long)p->uid,
	    acl.admin_name, td->conf->status_group, verbs);
	return (1);
}


/* The stop: the refusal limiters' timers go. */
void
control_access_free(void)
{
	logrl_clear(&acl.rl_connect);
	logrl_clear(&acl.rl_request);
}
