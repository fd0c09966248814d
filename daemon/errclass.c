/*
 * errclass.c: which failures are permanent, and what follows from one.
 *
 * A transient failure (DNS, a connect timed out, refused or reset, a lost
 * keepalive, a remote port still held) passes by itself: the link or
 * tunnel retries with backoff and its error is logged every time, as
 * before. A permanent one needs a person: it will fail the same way until
 * someone changes a file on one side or the other. They are
 *
 *   link:   the host key changed, or is unknown under host_key_policy
 *           strict; authentication refused (every key tried); the jump
 *           host prohibits the channel that would carry the link
 *   tunnel: a channel open answered "administratively prohibited"
 *           (sshd's AllowTcpForwarding no or remote, PermitOpen, a key's
 *           restrict; Dropbear's -j); a remote forward refused for a
 *           port below 1024 when the SSH user is not root, or refused by
 *           a server that refuses every remote forward of the session
 *           (fwd_remote.c asks it for port 0 to tell)
 *
 * A permanent failure sets needs_attention on its object (struct
 * attention): the link or tunnel shows failed, tunctl marks it, STATUS=
 * counts it, and its retries come at backoff_max instead of the
 * exponential step. Its error is logged once, at warning, when it first
 * happens or its text changes; the identical ones of later retries at
 * debug only. A success clears it with a notice ("recovered"); a
 * transient failure that follows, or stopping the object, clears it
 * silently (the next permanent one is news again).
 *
 * The server says little: OpenSSH and Dropbear answer a refused
 * tcpip-forward with a bare REQUEST_FAILURE (RFC 4254 4), so a privileged
 * port is inferred from the port and the user name, and the error text
 * says it was inferred.
 */
#include <sys/types.h>

#include <stdio.h>
#include <string.h>

#include "tunneld.h"

#define ERRCLASS_CHAIN_MAX	32	/* jump hosts followed, at most */

/* Is a channel open refused with this reason code (RFC 4254 5.1) permanent? */
int
errclass_open_permanent(int code)
{
	/* 1: SSH_OPEN_ADMINISTRATIVELY_PROHIBITED. The others (connect
	 * failed, unknown channel type, resource shortage) depend on the
	 * target or the moment, or (3) never happen with sshd or Dropbear. */
	return (code == 1);
}

/*
 * Would a server refuse to listen on this port for this user in any case?
 * Ports 1-1023 need root there (OpenSSH and Dropbear alike); port 0 lets
 * the server choose.
 */
int
errclass_privileged(int port, const char *user)
{
	return (port > 0 && port < 1024 && strcmp(user, "root") != 0);
}

/*
 * A permanent failure of who ("link relay", "tunnel pg") with error msg:
 * set the flag; log msg at warning if it is news (the flag was clear or
 * the text differs), at debug if not. Returns 1 when it was news.
 */
int
errclass_note(struct attention *a, const char *who, const char *msg)
{
	if (a->on && strcmp(a->said, msg) == 0) {
		log_debug("%s: %s (again)", who, msg);
		return (0);
	}
	a->on = 1;
	strlcpy_(a->said, msg, sizeof(a->said));
	log_warnx("%s: %s (needs attention)", who, msg);
	return (1);
}

/* who works again: clear the flag with a notice, if it was set. */
void
errclass_clear(struct attention *a, const char *who)
{
	if (!a->on)
		return;
	log_notice("%s: recovered (was: %s)", who, a->said);
	errclass_drop(a);
}

/* Forget a permanent failure without a word (stopped, or now transient). */
void
errclass_drop(struct attention *a)
{
	a->on = 0;
	a->said[0] = '\0';
}

/*
 * Does this link need attention: its own permanent failure, or, while it
 * waits for its jump host, that of a link in front of it.
 */
int
errclass_link(const struct link *l)
{
	int i;

	for (i = 0; l != NULL && i < ERRCLASS_CHAIN_MAX; i++) {
		if (l->attn.on)
			return (1);
		if (l->state != LINK_WAITING || l->hop == NULL)
			return (0);
		l = l->hop->link;
	}
	return (0);
}

/*
 * Does this tunnel need attention: an enabled tunnel whose own failure
 * is permanent, or one waiting for a link that needs attention.
 */
int
errclass_fwd(const struct fwd *f)
{
	if (!f->enabled)
		return (0);
	if (f->attn.on)
		return (1);
	return (f->link != NULL && f->link->state != LINK_UP &&
	    errclass_link(f->link));
}
