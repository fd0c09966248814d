/*
 * handshake.c: the SSH steps of bringing a link up: key exchange, the host
 * key check against known_hosts (strict or accept-new) and public-key
 * authentication from the agent and the identity files. Every step is
 * non-blocking: a step that answers SSH_AGAIN is called again by the pump
 * when the socket is ready.
 */
#include <sys/stat.h>

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tunneld.h"

static int	handshake_hostkey(struct link *);
static int	handshake_auth(struct link *);
static void	handshake_note(struct link *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	handshake_fingerprint(ssh_key, char *, size_t);
static int	handshake_known_key(struct link *, char *, size_t);
static void	handshake_hostspec(struct link *, char *, size_t);

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
	int				 found = 0;

	handshake_hostspec(l, spec, sizeof(spec));
	if ((fp = fopen(l->hc->known_hosts, "r")) == NULL)
		return (0);
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
	char			*dir, *copy;
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
		copy = xstrdup(l->hc->known_hosts);
		dir = dirname(copy);
		if (mkdir(dir, 0700) == -1 && errno != EEXIST)
			log_warn("link %s: mkdir %s", l->hc->name, dir);
		free(copy);
		if (ssh_session_update_known_hosts(l->session) != SSH_OK) {
			link_refused(l, "cannot add the host key of %s to %s: "
			    "%s", spec, l->hc->known_hosts,
			    ssh_get_error(l->session));
			return (-1);
		}
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
			if (!hc->agent) {
				l->auth_step = 1;
				continue;
			}
			rc = ssh_userauth_agent(l->session, NULL);
			if (rc == SSH_AUTH_AGAIN)
				return (0);
			if (rc == SSH_AUTH_SUCCESS)
				return (1);
			if (!ssh_is_connected(l->session)) {
				link_fail(l, "connection lost during "
				    "authentication: %s",
				    ssh_get_error(l->session));
				return (-1);
			}
			if (getenv("SSH_AUTH_SOCK") == NULL)
				handshake_note(l, "agent: SSH_AUTH_SOCK is "
				    "not set");
			else
				handshake_note(l, "agent: no key accepted");
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
		if (l->key == NULL) {
			if (access(path, R_OK) == -1) {
				handshake_note(l, "%s: %s", path,
				    strerror(errno));
				l->auth_step++;
				continue;
			}
			if (ssh_pki_import_privkey_file(path, NULL, NULL, NULL,
			    &l->key) != SSH_OK) {
				l->key = NULL;
				handshake_note(l, "%s: not a private key, or "
				    "protected by a passphrase (use the agent)",
				    path);
				l->auth_step++;
				continue;
			}
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
