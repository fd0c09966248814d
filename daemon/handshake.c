/*
 * handshake.c: the SSH steps of bringing a link up: key exchange, the host
 * key check against known_hosts (strict or accept-new) and public-key
 * authentication from the agent and the identity files. Every step is
 * non-blocking: a step that answers SSH_AGAIN is called again by the pump
 * when the socket is ready. The agent's keys go through our own agent
 * client (agent.c): libssh only reads answers prepared for it, and while
 * the real agent works (a key added with ssh-add -c waits for a person)
 * the step waits for agent.c's kick.
 *
 * Keys and state as OpenSSH handles them: an identity file owned by the
 * daemon's user that group or others may access is refused, as ssh(1)
 * refuses it (sshkey_perm_ok() in OpenSSH's authfile.c: only the owner
 * matters, so a key owned by root and readable by our group is accepted
 * when we are not root, and refused when we are); a learned host key is
 * written to known_hosts atomically (known_hosts.c). libssh never reads
 * ~/.ssh/config or /etc/ssh/ssh_config for us (link.c sets
 * SSH_OPTIONS_PROCESS_CONFIG to false).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tunneld.h"

/* The agent's key list must come within this (at most half the attempt). */
#define HANDSHAKE_AGENT_LIST_TIMEOUT	5.0

/*
 * What a server may send before its banner: RFC 4253 allows other lines
 * first (libssh skips them, however many), OpenSSH's client takes lines
 * of up to 8 KiB. More than that and no "SSH-" line: not an SSH server.
 */
#define HANDSHAKE_PREBANNER_MAX		(8 * 1024)

/* The largest identity file we read (OpenSSH's MAX_KEY_FILE_SIZE). */
#define HANDSHAKE_KEY_MAX		(1024 * 1024)

/* What the agent step tells handshake_auth(). */
#define AUTH_WAIT	0	/* call again */
#define AUTH_OK		1	/* authenticated */
#define AUTH_LOST	-1	/* the link failed (torn down) */
#define AUTH_NEXT	2	/* on to the identity files */
#define AUTH_MORE	3	/* another pass with the keys left */

static int	handshake_hostkey(struct link *);
static int	handshake_auth(struct link *);
static int	handshake_agent(struct link *);
static int	handshake_agent_pass(struct link *, struct agent *);
static int	handshake_agent_wait(struct link *);
static void	handshake_agent_key(struct agent *, int, char *, size_t);
static void	handshake_note(struct link *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	handshake_fingerprint(ssh_key, char *, size_t);
static int	handshake_known_key(struct link *, char *, size_t);
static void	handshake_hostspec(struct link *, char *, size_t);
static int	handshake_learn(struct link *, const char *);
static ssh_key	handshake_load_key(struct link *, const char *);

/*
 * Advance the handshake. Returns 1 when the link is authenticated, 0 when
 * libssh needs more I/O, -1 when the link failed (already torn down).
 */
int
handshake_step(struct link *l)
{
	int rc;

	if (l->phase == PHASE_HANDSHAKE) {
		rc = ssh_connect(l->session);
		if (rc == SSH_AGAIN && ssh_get_serverbanner(l->session) == NULL &&
		    l->sockc.in_bytes > HANDSHAKE_PREBANNER_MAX) {
			link_fail(l, "SSH handshake with %s failed: %llu bytes "
			    "and no SSH banner: not an SSH server", l->peer,
			    (unsigned long long)l->sockc.in_bytes);
			return (-1);
		}
		if (rc == SSH_AGAIN)
			return (0);
		if (rc != SSH_OK) {
			link_fail(l, "SSH handshake with %s failed: %s",
			    l->peer, ssh_get_error(l->session));
			return (-1);
		}
		if (handshake_hostkey(l) == -1)
			return (-1);
		l->phase = PHASE_AUTH;
		l->auth_step = 0;
		l->auth_notes[0] = '\0';
	}
	return (handshake_auth(l));
}

/*
 * What a handshake that ran out of time was waiting for: the server's
 * banner (nothing came, or only lines that are not SSH), or the end of the
 * key exchange with the server that sent the banner.
 */
const char *
handshake_stalled(struct link *l, char *buf, size_t len)
{
	const char	*banner = NULL;
	char		 q[128];

	if (l->session != NULL)
		banner = ssh_get_serverbanner(l->session);
	if (banner != NULL) {
		format_quoted(banner, q, sizeof(q));
		snprintf(buf, len, "SSH handshake: key exchange with %s "
		    "unfinished", q);
	} else if (l->sockc.in_bytes == 0)
		snprintf(buf, len, "SSH handshake: the server sent nothing, "
		    "not even its banner");
	else
		snprintf(buf, len, "SSH handshake: no SSH banner in the %llu "
		    "bytes the server sent",
		    (unsigned long long)l->sockc.in_bytes);
	return (buf);
}

/* The name known_hosts files use: host, or [host]:port off port 22. */
static void
handshake_hostspec(struct link *l, char *buf, size_t len)
{
	if (l->hc->port == 22)
		snprintf(buf, len, "%s", l->hc->address);
	else
		snprintf(buf, len, "[%s]:%d", l->hc->address, l->hc->port);
}

/* A key's SHA256 fingerprint with its type: "ssh-ed25519 SHA256:...". */
static void
handshake_fingerprint(ssh_key key, char *buf, size_t len)
{
	unsigned char	*hash = NULL;
	size_t		 hlen = 0;
	char		*fp;

	if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash,
	    &hlen) != 0) {
		snprintf(buf, len, "(unknown key)");
		return;
	}
	fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
	snprintf(buf, len, "%s %s", ssh_key_type_to_char(ssh_key_type(key)),
	    fp != NULL ? fp : "?");
	ssh_string_free_char(fp);
	ssh_clean_pubkey_hash(&hash);
}

/* Find the key known_hosts holds for this host (libssh will not say). */
static int
handshake_known_key(struct link *l, char *buf, size_t len)
{
	struct ssh_knownhosts_entry	*e;
	char				 spec[HOST_MAXLEN + 16];
	char				*line = NULL;
	size_t				 cap = 0;
	FILE				*fp;
	int				 fd, found = 0;

	handshake_hostspec(l, spec, sizeof(spec));
	if ((fd = known_hosts_open(l->hc->known_hosts)) == -1)
		return (0);
	if ((fp = fdopen(fd, "r")) == NULL) {
		close(fd);
		return (0);
	}
	while (!found && getline(&line, &cap, fp) != -1) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		e = NULL;
		if (ssh_known_hosts_parse_line(spec, line, &e) == SSH_OK &&
		    e != NULL && e->publickey != NULL) {
			handshake_fingerprint(e->publickey, buf, len);
			found = 1;
		}
		ssh_knownhosts_entry_free(e);
	}
	free(line);
	fclose(fp);
	return (found);
}

/* Check the server's key against known_hosts under the host's policy. */
static int
handshake_hostkey(struct link *l)
{
	ssh_key			 srv = NULL;
	char			 seen[256], known[256], spec[HOST_MAXLEN + 16];
	enum ssh_known_hosts_e	 state;

	if (ssh_get_server_publickey(l->session, &srv) != SSH_OK) {
		link_fail(l, "no host key from %s: %s", l->peer,
		    ssh_get_error(l->session));
		return (-1);
	}
	handshake_fingerprint(srv, seen, sizeof(seen));
	ssh_key_free(srv);
	handshake_hostspec(l, spec, sizeof(spec));

	state = ssh_session_is_known_server(l->session);
	switch (state) {
	case SSH_KNOWN_HOSTS_OK:
		log_debug("link %s: host key %s is known", l->hc->name, seen);
		return (0);
	case SSH_KNOWN_HOSTS_CHANGED:
	case SSH_KNOWN_HOSTS_OTHER:
		if (!handshake_known_key(l, known, sizeof(known)))
			snprintf(known, sizeof(known), "another key");
		link_refused(l, "host key of %s has changed: %s has %s, the "
		    "server offers %s; refusing to connect (if the change is "
		    "expected, remove the old line from %s)", spec,
		    l->hc->known_hosts, known, seen, l->hc->known_hosts);
		return (-1);
	case SSH_KNOWN_HOSTS_UNKNOWN:
	case SSH_KNOWN_HOSTS_NOT_FOUND:
		if (l->hc->host_key_policy == HOSTKEY_STRICT) {
			link_refused(l, "host key of %s is not in %s "
			    "(host_key_policy strict); the server offers %s",
			    spec, l->hc->known_hosts, seen);
			return (-1);
		}
		if (handshake_learn(l, spec) == -1)
			return (-1);
		log_notice("link %s: learned host key %s of %s into %s",
		    l->hc->name, seen, spec, l->hc->known_hosts);
		return (0);
	case SSH_KNOWN_HOSTS_ERROR:
	default:
		link_fail(l, "cannot check the host key of %s: %s", spec,
		    ssh_get_error(l->session));
		return (-1);
	}
}

/*
 * accept-new: add the server's key to known_hosts, the line formatted by
 * libssh, the file replaced atomically (known_hosts.c) instead of
 * appended to in place as ssh_session_update_known_hosts() would.
 */
static int
handshake_learn(struct link *l, const char *spec)
{
	char	*entry = NULL, err[ERR_MAXLEN];
	int	 rc;

	if (ssh_session_export_known_hosts_entry(l->session, &entry) !=
	    SSH_OK || entry == NULL) {
		link_refused(l, "cannot add the host key of %s to %s: %s",
		    spec, l->hc->known_hosts, ssh_get_error(l->session));
		return (-1);
	}
	rc = known_hosts_add(l->hc->known_hosts, entry, err, sizeof(err));
	ssh_string_free_char(entry);
	if (rc == -1) {
		link_refused(l, "cannot add the host key of %s to %s: %s "
		    "(the file is unchanged)", spec, l->hc->known_hosts, err);
		return (-1);
	}
	return (0);
}

/* Append one note to the list of what authentication tried. */
static void
handshake_note(struct link *l, const char *fmt, ...)
{
	char	note[256];
	size_t	len = strlen(l->auth_notes);
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	snprintf(l->auth_notes + len, sizeof(l->auth_notes) - len, "%s%s",
	    len > 0 ? "; " : "", note);
}

/* Base64 of len bytes (for ssh_pki_import_pubkey_base64); free it. */
static char *
handshake_base64(const unsigned char *in, size_t len)
{
	static const char	 tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	char			*out, *o;
	uint32_t		 v;
	size_t			 i;

	out = o = xmalloc((len + 2) / 3 * 4 + 1);
	for (i = 0; i < len; i += 3) {
		v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? tab[v & 63] : '=';
	}
	*o = '\0';
	return (out);
}

/* The fingerprint of the agent's key k, for notes and the log. */
static void
handshake_agent_key(struct agent *a, int k, char *buf, size_t len)
{
	const unsigned char	*blob;
	size_t			 bloblen, n;
	char			 type[64], *b64;
	ssh_key			 key = NULL;

	snprintf(buf, len, "(unknown key)");
	if ((blob = agent_key_blob(a, k, &bloblen)) == NULL || bloblen < 4)
		return;
	/* The blob starts with its type's name as an SSH string. */
	n = (size_t)blob[0] << 24 | (size_t)blob[1] << 16 |
	    (size_t)blob[2] << 8 | blob[3];
	if (n == 0 || n >= sizeof(type) || n > bloblen - 4)
		return;
	memcpy(type, blob + 4, n);
	type[n] = '\0';
	b64 = handshake_base64(blob, bloblen);
	if (ssh_pki_import_pubkey_base64(b64, ssh_key_type_from_name(type),
	    &key) == SSH_OK) {
		handshake_fingerprint(key, buf, len);
		ssh_key_free(key);
	}
	free(b64);
}

/*
 * While the real agent works, the session waits: notice a server that
 * hung up at once, and do not spin on bytes it sent (nothing is read
 * until the agent answered; its kick brings the socket back).
 */
static int
handshake_agent_wait(struct link *l)
{
	ssize_t	n;
	char	c;

	if (link_fd_lost(l))
		return (AUTH_LOST);
	n = recv(l->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR)) {
		link_fail(l, "connection to %s lost during authentication: %s",
		    l->peer, n == 0 ? "closed by the server" : strerror(errno));
		return (AUTH_LOST);
	}
	if (n > 0 && l->ev_io != NULL)
		event_del(l->ev_io);
	return (AUTH_WAIT);
}

/*
 * The agent step: list the agent's keys through agent.c, run passes of
 * ssh_userauth_agent on the answers it prepared, have the real agent sign
 * for the key the server accepts, and run the pass that hands libssh
 * that signature. AUTH_NEXT (with a note) moves on to the identity files.
 */
static int
handshake_agent(struct link *l)
{
	struct agent	*a;
	const char	*path;
	char		 fp[256];
	double		 timeout;
	int		 rc;

	if (l->agent == NULL) {
		path = getenv("SSH_AUTH_SOCK");
		if (path == NULL || *path == '\0') {
			handshake_note(l, "agent: SSH_AUTH_SOCK is not set");
			return (AUTH_NEXT);
		}
		timeout = l->hc->connect_timeout / 2.0;
		if (timeout > HANDSHAKE_AGENT_LIST_TIMEOUT)
			timeout = HANDSHAKE_AGENT_LIST_TIMEOUT;
		l->agent = agent_new(l, path, timeout);
	}
	a = l->agent;
	if (agent_status(a) != AGENT_BUSY && l->ev_io != NULL &&
	    !event_pending(l->ev_io, EV_READ, NULL))
		event_add(l->ev_io, NULL);	/* handshake_agent_wait() */

	for (;;) {
		switch (agent_status(a)) {
		case AGENT_BUSY:
			return (handshake_agent_wait(l));
		case AGENT_FAILED:
			handshake_note(l, "agent: %s", agent_error(a));
			return (AUTH_NEXT);
		case AGENT_REFUSED:
			handshake_agent_key(a, agent_signing(a), fp,
			    sizeof(fp));
			log_info("link %s: the agent refused to sign with %s",
			    l->hc->name, fp);
			handshake_note(l, "agent: %s: the agent refused to "
			    "sign (not confirmed?)", fp);
			agent_skip(a);
			continue;
		case AGENT_IDLE:
			if (agent_keys_left(a) == 0) {
				/* Unless a note already says why. */
				if (strstr(l->auth_notes, "agent: ") == NULL)
					handshake_note(l,
					    "agent: no key accepted");
				return (AUTH_NEXT);
			}
			if (agent_prime(a, l->session) == -1) {
				handshake_note(l, "agent: %s", agent_error(a));
				return (AUTH_NEXT);
			}
			/* FALLTHROUGH */
		case AGENT_PASS:
			rc = handshake_agent_pass(l, a);
			if (rc != AUTH_MORE)
				return (rc);
			continue;
		}
	}
}

/*
 * One pass of ssh_userauth_agent on the answers agent.c prepared; AUTH_MORE
 * when the agent was asked to sign, or the keys after the one signed for
 * get their turn.
 */
static int
handshake_agent_pass(struct link *l, struct agent *a)
{
	char	fp[256];
	int	rc, k;

	rc = ssh_userauth_agent(l->session, NULL);
	if (rc == SSH_AUTH_AGAIN)
		return (AUTH_WAIT);
	k = agent_collect(a);
	if (rc == SSH_AUTH_SUCCESS) {
		handshake_agent_key(a, k, fp, sizeof(fp));
		log_debug("link %s: authenticated with the agent's key %s",
		    l->hc->name, fp);
		agent_free(l->agent);
		l->agent = NULL;
		return (AUTH_OK);
	}
	if (!ssh_is_connected(l->session)) {
		link_fail(l, "connection lost during authentication: %s",
		    ssh_get_error(l->session));
		return (AUTH_LOST);
	}
	if (agent_signed(a)) {
		/* Our signature went out, and still no. */
		handshake_agent_key(a, agent_signing(a), fp, sizeof(fp));
		if (rc == SSH_AUTH_PARTIAL)
			handshake_note(l, "agent: %s: accepted, but the "
			    "server wants another method as well", fp);
		else
			handshake_note(l, "agent: %s: signature not accepted",
			    fp);
		agent_skip(a);
		return (AUTH_MORE);
	}
	if (rc == SSH_AUTH_ERROR && k != -1) {
		/* The server accepts key k: libssh asked to sign, read FAILURE. */
		handshake_agent_key(a, k, fp, sizeof(fp));
		log_info("link %s: %s accepts the agent's key %s; waiting for "
		    "the agent to sign", l->hc->name, l->peer, fp);
		agent_sign(a, k);
		return (AUTH_MORE);
	}
	if (rc == SSH_AUTH_ERROR)
		handshake_note(l, "agent: %s", ssh_get_error(l->session));
	else
		handshake_note(l, "agent: no key accepted");
	return (AUTH_NEXT);
}

/*
 * What a connect timeout in PHASE_AUTH was waiting for, for the link's
 * error: a signature from the agent (a key added with ssh-add -c waits for
 * its confirmation), or the server. Written into the caller's buf (no
 * buffer shared between links); returns buf.
 */
const char *
handshake_waiting(struct link *l, char *buf, size_t len)
{
	char	fp[256];

	if (l->agent == NULL || agent_status(l->agent) != AGENT_BUSY)
		snprintf(buf, len, "authentication");
	else if (agent_signing(l->agent) == -1)
		snprintf(buf, len, "authentication: waiting for the agent's "
		    "keys");
	else {
		handshake_agent_key(l->agent, agent_signing(l->agent), fp,
		    sizeof(fp));
		snprintf(buf, len, "authentication: the agent did not sign "
		    "with %s in time; a key added with ssh-add -c must be "
		    "confirmed within connect_timeout", fp);
	}
	return (buf);
}

/*
 * Read the identity file at path as ssh(1) does (OpenSSH's
 * sshkey_perm_ok()): a file owned by our user that group or others may
 * access is refused; a file owned by another user is its owner's
 * business. One open(2), so the file checked is the file read. Returns
 * the key, or NULL with a note saying why.
 */
static ssh_key
handshake_load_key(struct link *l, const char *path)
{
	struct stat	 st;
	ssh_key		 key = NULL;
	char		*buf;
	size_t		 len = 0;
	ssize_t		 n = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1 ||
	    fstat(fd, &st) == -1) {
		handshake_note(l, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return (NULL);
	}
	if (st.st_uid == getuid() && (st.st_mode & 077) != 0) {
		log_warnx("link %s: identity %s: permissions %04o are too "
		    "open: a private key must not be accessible by group or "
		    "others; ignored", l->hc->name, path,
		    (unsigned)(st.st_mode & 0777));
		handshake_note(l, "%s: permissions %04o are too open, key "
		    "ignored (chmod 600 it, as ssh requires)", path,
		    (unsigned)(st.st_mode & 0777));
		close(fd);
		return (NULL);
	}
	buf = xmalloc(HANDSHAKE_KEY_MAX + 1);
	while (len < HANDSHAKE_KEY_MAX) {
		n = read(fd, buf + len, HANDSHAKE_KEY_MAX - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (n == -1)
		handshake_note(l, "%s: %s", path, strerror(errno));
	else if (len >= HANDSHAKE_KEY_MAX)
		handshake_note(l, "%s: larger than %d KiB: not a private key",
		    path, HANDSHAKE_KEY_MAX >> 10);
	else {
		buf[len] = '\0';
		if (ssh_pki_import_privkey_base64(buf, NULL, NULL, NULL,
		    &key) != SSH_OK) {
			key = NULL;
			handshake_note(l, "%s: not a private key, or "
			    "protected by a passphrase (use the agent)", path);
		}
	}
	explicit_bzero(buf, HANDSHAKE_KEY_MAX + 1);
	free(buf);
	close(fd);
	return (key);
}

/*
 * Offer the agent's keys (when agent = true), then each identity file in
 * turn. Step 0 is the agent, step i the identity file i - 1.
 */
static int
handshake_auth(struct link *l)
{
	const struct host_conf	*hc = l->hc;
	const char		*path;
	int			 rc, i;

	for (;;) {
		if (l->auth_step == 0) {
			if (hc->agent) {
				rc = handshake_agent(l);
				if (rc != AUTH_NEXT)
					return (rc);
			}
			agent_free(l->agent);
			l->agent = NULL;
			l->auth_step = 1;
			continue;
		}
		i = l->auth_step - 1;
		if (i >= hc->nidentity) {
			link_refused(l, "authentication as %s refused by %s "
			    "(%s)", hc->user, l->peer, l->auth_notes[0] != '\0' ?
			    l->auth_notes : "no identity configured");
			return (-1);
		}
		path = hc->identity[i];
		if (l->key == NULL &&
		    (l->key = handshake_load_key(l, path)) == NULL) {
			l->auth_step++;
			continue;
		}
		rc = ssh_userauth_publickey(l->session, NULL, l->key);
		if (rc == SSH_AUTH_AGAIN)
			return (0);
		ssh_key_free(l->key);
		l->key = NULL;
		if (rc == SSH_AUTH_SUCCESS) {
			log_debug("link %s: authenticated with %s",
			    hc->name, path);
			return (1);
		}
		if (rc == SSH_AUTH_ERROR) {
			link_fail(l, "authentication with %s failed: %s", path,
			    ssh_get_error(l->session));
			return (-1);
		}
		handshake_note(l, "%s: refused", path);
		l->auth_step++;
	}
}
