/*
 * test_events.c: the event history (events.c): the ring's bound, the
 * collapsing of repeated retries, reason-only changes, the text and JSON
 * lines, and a follower's bounded queue ("events lost").
 */
#include <sys/socket.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tunneld.h"

/* events.c needs the daemon's event base (td->base) and nothing else. */
struct tunneld	*td;

/* The history as one string (caller frees) and its number of lines. */
static char *
history(int json, int *lines)
{
	struct evbuffer	*b = evbuffer_new();
	size_t		 len, i;
	char		*s;

	assert_non_null(b);
	events_history(b, json);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	assert_non_null(s);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	*lines = 0;
	for (i = 0; i < len; i++)
		*lines += s[i] == '\n';
	return (s);
}

/* Text and JSON lines: every field, the reason cut and escaped. */
static void
test_format(void **state)
{
	struct events_entry	*e;
	char			 line[EVENTS_LINE_MAX], reason[600];
	int			 repeat, n;

	(void)state;
	e = events_record(EVENTS_LINK, "relay", "up", "backoff",
	    "lost: \"x\" \\ y\tz", &repeat);
	assert_non_null(e);
	assert_int_equal(repeat, 0);
	n = events_format(e, 0, line, sizeof(line));
	assert_int_equal(n, strlen(line));
	assert_int_equal(line[4], '-');
	assert_int_equal(line[10], 'T');
	assert_int_equal(line[19], '.');
	assert_int_equal(line[23], 'Z');
	assert_string_equal(line + 24, " link relay: up -> backoff: lost: "
	    "\"x\" \\ y z\n");

	n = events_format(e, 1, line, sizeof(line));
	assert_int_equal(n, strlen(line));
	assert_non_null(strstr(line, "\"object\":\"link\",\"name\":\"relay\","
	    "\"old\":\"up\",\"new\":\"backoff\",\"reason\":\"lost: \\\"x\\\" "
	    "\\\\ y z\",\"repeats\":1,"));
	assert_int_equal(strncmp(line, "{\"seq\":", 7), 0);
	assert_string_equal(line + n - 2, "}\n");

	/* No reason: null in JSON, nothing after the states in text. */
	e = events_record(EVENTS_TUNNEL, "pg", "down", "starting", NULL,
	    &repeat);
	events_format(e, 1, line, sizeof(line));
	assert_non_null(strstr(line, "\"object\":\"tunnel\""));
	assert_non_null(strstr(line, "\"reason\":null"));
	events_format(e, 0, line, sizeof(line));
	assert_string_equal(line + 24, " tunnel pg: down -> starting\n");

	/* A long reason is cut with "..."; the line still fits. */
	memset(reason, '"', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	e = events_record(EVENTS_TUNNEL, "pg", "starting", "failed", reason,
	    &repeat);
	assert_int_equal(strlen(e->reason), EVENTS_REASON_MAX - 1);
	assert_string_equal(e->reason + EVENTS_REASON_MAX - 4, "...");
	assert_true(events_format(e, 1, line, sizeof(line)) > 0);
	assert_true(events_format(e, 0, line, sizeof(line)) > 0);
}

/* A retry loop collapses; a real change stops the collapsing. */
static void
test_repeats(void **state)
{
	struct events_entry	*a, *b, *e;
	char			 line[EVENTS_LINE_MAX];
	int			 i, repeat, n0, n1;
	char			*h;

	(void)state;
	free(history(0, &n0));
	a = events_record(EVENTS_LINK, "flaky", "connecting", "backoff",
	    "refused", &repeat);
	b = events_record(EVENTS_LINK, "flaky", "backoff", "connecting",
	    NULL, &repeat);
	assert_int_equal(repeat, 0);
	for (i = 0; i < 1000; i++) {
		e = events_record(EVENTS_LINK, "flaky", "connecting",
		    "backoff", "refused", &repeat);
		assert_ptr_equal(e, a);
		assert_int_equal(repeat, 1);
		e = events_record(EVENTS_LINK, "flaky", "backoff",
		    "connecting", NULL, &repeat);
		assert_ptr_equal(e, b);
	}
	assert_int_equal(a->repeats, 1001);
	assert_int_equal(b->repeats, 1001);
	h = history(0, &n1);
	assert_int_equal(n1, n0 + 2);
	free(h);
	events_format(a, 0, line, sizeof(line));
	assert_non_null(strstr(line, "refused (1001 times, the last at "));
	events_format(a, 1, line, sizeof(line));
	assert_non_null(strstr(line, "\"repeats\":1001,\"last\":\""));

	/* Another reason is another event. */
	e = events_record(EVENTS_LINK, "flaky", "connecting", "backoff",
	    "timed out", &repeat);
	assert_ptr_not_equal(e, a);
	assert_int_equal(repeat, 0);

	/* Up, then down again: a new story, not a repeat of the old one. */
	events_record(EVENTS_LINK, "flaky", "connecting", "up", NULL,
	    &repeat);
	e = events_record(EVENTS_LINK, "flaky", "up", "backoff", "lost",
	    &repeat);
	assert_int_equal(repeat, 0);
	e = events_record(EVENTS_LINK, "flaky", "backoff", "connecting",
	    NULL, &repeat);
	assert_ptr_not_equal(e, b);
	assert_int_equal(repeat, 0);

	/* Operator changes never collapse. */
	for (i = 0; i < 3; i++) {
		events_record(EVENTS_TUNNEL, "op", "up", "down", NULL, &repeat);
		assert_int_equal(repeat, 0);
		events_record(EVENTS_TUNNEL, "op", "down", "up", NULL, &repeat);
		assert_int_equal(repeat, 0);
	}
}

/* A new reason without a change of state is an event; the same is not. */
static void
test_reason_only(void **state)
{
	struct events_entry	*e;
	int			 repeat;

	(void)state;
	assert_non_null(events_record(EVENTS_TUNNEL, "web", "up", "failed",
	    "bind: in use", &repeat));
	assert_null(events_record(EVENTS_TUNNEL, "web", "failed", "failed",
	    "bind: in use", &repeat));
	assert_null(events_record(EVENTS_TUNNEL, "web", "failed", "failed",
	    NULL, &repeat));
	e = events_record(EVENTS_TUNNEL, "web", "failed", "failed",
	    "bind: permission denied", &repeat);
	assert_non_null(e);
	assert_string_equal(e->reason, "bind: permission denied");
}

/* The ring keeps the last EVENTS_RING events, oldest first, in order. */
static void
test_ring(void **state)
{
	struct events_entry	*e;
	char			 name[16], *h, *p;
	int			 i, repeat, n;
	uint64_t		 first = 0;

	(void)state;
	for (i = 0; i < EVENTS_RING + 44; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		e = events_record(EVENTS_TUNNEL, name, "down", "up", NULL,
		    &repeat);
		if (i == 44)
			first = e->seq;
	}
	h = history(1, &n);
	assert_int_equal(n, EVENTS_RING);
	assert_true(strncmp(h, "{\"seq\":", 7) == 0);
	assert_int_equal(strtoull(h + 7, NULL, 10), first);
	assert_non_null(strstr(h, "\"name\":\"t44\""));
	assert_null(strstr(h, "\"name\":\"t43\""));
	/* Times never go back along the history. */
	p = h;
	{
		char prev[32] = "", cur[32];
		while ((p = strstr(p, "\"time\":\"")) != NULL) {
			p += 8;
			snprintf(cur, sizeof(cur), "%.24s", p);
			assert_true(strcmp(prev, cur) <= 0);
			strcpy(prev, cur);
		}
	}
	free(h);
}

static int	lost_called;

static void
lost_cb(void *arg)
{
	(void)arg;
	lost_called++;
}

/*
 * A follower that never reads: its queue stops at the bound, and on the
 * next loop turn it gets "events lost: N" after what it has queued (N: the
 * events that did not fit) and a final line.
 */
static void
test_follower_bound(void **state)
{
	struct tunneld		 t;
	struct host_conf	 hc;
	struct link		 l;
	struct tunnel_conf	 tc;
	struct fwd		 f;
	struct bufferevent	*bev;
	struct events_sub	*sub;
	struct evbuffer		*out;
	size_t			 len, queued;
	char			*s, *p, want[160];
	int			 sv[2], i, lines, published = 2000;

	(void)state;
	memset(&t, 0, sizeof(t));
	t.base = event_base_new();
	assert_non_null(t.base);
	td = &t;
	memset(&hc, 0, sizeof(hc));
	memset(&l, 0, sizeof(l));
	memset(&tc, 0, sizeof(tc));
	memset(&f, 0, sizeof(f));
	strcpy(hc.name, "srv");
	strcpy(tc.name, "flap");
	l.hc = &hc;
	f.link = &l;
	f.tc = &tc;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	bev = bufferevent_socket_new(t.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	bufferevent_disable(bev, EV_WRITE);	/* nothing leaves: never read */
	out = bufferevent_get_output(bev);
	sub = events_subscribe(bev, 0, 0, lost_cb, NULL);
	assert_non_null(sub);
	for (i = 0; i < published; i++)
		events_tunnel(&f, i % 2 ? "down" : "up", i % 2 ? "up" : "down",
		    "a reason long enough to fill the queue sooner");
	assert_true(evbuffer_get_length(out) <= 64 * 1024);
	assert_true(evbuffer_get_length(out) > 60 * 1024);
	assert_int_equal(lost_called, 0);

	queued = evbuffer_get_length(out);
	event_base_loop(t.base, EVLOOP_NONBLOCK);
	assert_int_equal(lost_called, 1);
	len = evbuffer_get_length(out);
	s = malloc(len + 1);
	assert_non_null(s);
	/* The start of a bufferevent's output is frozen: read it in place. */
	memcpy(s, evbuffer_pullup(out, -1), len);
	s[len] = '\0';
	/* Whole lines, the last queued, then how many did not fit. */
	for (p = s, lines = 0; (size_t)(p - s) < queued; p++)
		lines += *p == '\n';
	assert_int_equal(s[queued - 1], '\n');
	assert_true(lines > 500 && lines < published);
	snprintf(want, sizeof(want), "events lost: %d\n%%end 1 events lost: "
	    "%d (this client read too slowly); the stream is closed\n",
	    published - lines, published - lines);
	assert_string_equal(s + queued, want);
	assert_non_null(strstr(s, " tunnel flap: up -> down: a reason"));
	free(s);

	/* Unsubscribed already: more events go nowhere. */
	events_tunnel(&f, "up", "down", NULL);
	assert_int_equal(evbuffer_get_length(out), len);
	bufferevent_free(bev);
	close(sv[1]);
	events_shutdown();
	event_base_free(t.base);
	td = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_repeats),
		cmocka_unit_test(test_reason_only),
		cmocka_unit_test(test_ring),
		cmocka_unit_test(test_follower_bound),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
