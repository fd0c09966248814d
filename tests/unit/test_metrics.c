/*
 * test_metrics.c: the metrics responder's request parser
 * (metrics_http_parse: every status it answers, every split point of a
 * good request) and the exposition (metrics.c) of links and tunnels built
 * by hand: label values escaped, state series one-hot, the RTT histogram
 * cumulative.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "tunneld.h"

/*
 * test_metrics links metrics.c and metrics_http.c with errclass.c, log.c
 * and util.c; the stubs below stand in for the daemon's state and names.
 */
struct tunneld	*td;

/* membudget.c's figures, as the test sets them. */
static uint64_t	test_buffered = 12345, test_cap = 256 << 20;

void
membudget_stats(uint64_t *used, uint64_t *cap, uint64_t *peak,
    uint64_t *stops)
{
	*used = test_buffered;
	*cap = test_cap;
	*peak = 0;
	*stops = 2;
}

const char *
fwd_state_name(enum fwd_state s)
{
	static const char *const names[] = { "down", "starting", "waiting",
	    "up", "failed" };

	return (names[s]);
}

const char *
link_state_name(enum link_state s)
{
	static const char *const names[] = { "idle", "connecting", "up",
	    "backoff", "failed", "waiting" };

	return (names[s]);
}

const char *
tunnel_type_name(enum tunnel_type t)
{
	static const char *const names[] = { "local", "remote", "dynamic",
	    "remote-dynamic" };

	return (names[t]);
}

/* A request and the status it gets (0: not whole yet). */
struct parse_case {
	const char	*req;
	int		 code;
	int		 head;
};

static const struct parse_case cases[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 200, 0 },
	{ "GET /metrics HTTP/1.0\r\n\r\n", 200, 0 },
	{ "GET /metrics HTTP/1.1\n\n", 200, 0 },
	{ "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", 200, 0 },
	{ "GET http://h:9469/metrics HTTP/1.1\r\n\r\n", 200, 0 },
	{ "HEAD /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n", 200, 1 },
	{ "GET /metrics HTTP/1.1\r\nX-A:\r\nX-B: \t v\r\n\r\n", 200, 0 },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405, 0 },
	{ "DELETE /metrics HTTP/1.1\r\n\r\n", 405, 0 },
	{ "GETS /metrics HTTP/1.1\r\n\r\n", 405, 0 },
	{ "GET / HTTP/1.1\r\n\r\n", 404, 0 },
	{ "GET /metrics/ HTTP/1.1\r\n\r\n", 404, 0 },
	{ "GET /Metrics HTTP/1.1\r\n\r\n", 404, 0 },
	{ "POST /other HTTP/1.1\r\n\r\n", 404, 0 },
	{ "GET http://h HTTP/1.1\r\n\r\n", 404, 0 },
	{ "GET /metrics HTTP/2.0\r\n\r\n", 505, 0 },
	{ "GET /metrics HTTP/0.9\r\n\r\n", 505, 0 },
	{ "GET /metrics HTTP/1.1 x\r\n\r\n", 400, 0 },
	{ "GET /metrics\r\n\r\n", 400, 0 },
	{ "GET  /metrics HTTP/1.1\r\n\r\n", 400, 0 },
	{ "GET /met\x01rics HTTP/1.1\r\n\r\n", 400, 0 },
	{ "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400, 0 },
	{ "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n", 400, 0 },
	{ "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", 400, 0 },
	{ "GET /metrics HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400, 0 },
	{ "get /metrics HTTP/1.1\r\n\r\n", 400, 0 },
	{ " GET /metrics HTTP/1.1\r\n\r\n", 400, 0 },
	{ "\x16\x03\x01\x02\x00\x01", 400, 0 },		/* TLS */
	{ "ABCDEFGHIJKLMNOPQ", 400, 0 },		/* no method */
	{ "GET /metrics HTTP/1.1\r\nHost: a\r\n", 0, 0 },
	{ "GET", 0, 0 },
	{ "", 0, 0 },
};

/* Every case, and every prefix of each request that must be answered. */
static void
test_parse(void **state)
{
	size_t	i, n;
	int	head, code;
	char	*p;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = strlen(cases[i].req);
		p = malloc(n + 1);		/* exact size: ASan sees overreads */
		memcpy(p, cases[i].req, n + 1);
		code = metrics_http_parse(p, n, &head);
		if (code != cases[i].code)
			fail_msg("%zu %.40s: got %d, want %d", i, cases[i].req,
			    code, cases[i].code);
		if (code == 200)
			assert_int_equal(head, cases[i].head);
		free(p);
	}
	/* A good request split anywhere: nothing until its last byte. */
	for (i = 0; i < 6; i++) {
		n = strlen(cases[i].req);
		for (size_t k = 0; k < n; k++) {
			p = malloc(k + 1);
			memcpy(p, cases[i].req, k);
			code = metrics_http_parse(p, k, &head);
			if (code != 0)
				fail_msg("%zu: prefix %zu answered %d", i, k, code);
			free(p);
		}
	}
}

/* A head past 8 KiB with no end: 431; garbage: 400 from its first byte. */
static void
test_parse_limits(void **state)
{
	char	*big;
	int	 head;

	(void)state;
	big = malloc(8192);
	memset(big, 'a', 8192);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	assert_int_equal(metrics_http_parse(big, 8191, &head), 0);
	assert_int_equal(metrics_http_parse(big, 8192, &head), 431);
	free(big);
	assert_int_equal(metrics_http_parse("\0", 1, &head), 400);
	assert_int_equal(metrics_http_parse("G\n", 2, &head), 400);
	assert_int_equal(metrics_http_parse("GET\r", 4, &head), 400);
}

/* The text of a buffer, NUL-terminated; the caller frees it. */
static char *
text_of(struct evbuffer *b)
{
	size_t	 n = evbuffer_get_length(b);
	char	*s = malloc(n + 1);

	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return (s);
}

/* One link with one tunnel: what the exposition says of them. */
static void
test_render(void **state)
{
	struct host_conf	 hc;
	struct tunnel_conf	 tc;
	struct link		 l;
	struct fwd		 f;
	struct evbuffer		*b;
	char			*s;

	(void)state;
	td = calloc(1, sizeof(*td));
	TAILQ_INIT(&td->links);
	memset(&hc, 0, sizeof(hc));
	strcpy(hc.name, "db");
	strcpy(hc.address, "2001:db8::1");
	hc.port = 22;
	strcpy(hc.jump, "relay");
	memset(&tc, 0, sizeof(tc));
	strcpy(tc.name, "p\"g\\x\ny");		/* not a valid name: escaping */
	strcpy(tc.via, "db");
	tc.type = TUNNEL_REMOTE_DYNAMIC;
	memset(&l, 0, sizeof(l));
	l.hc = &hc;
	l.state = LINK_UP;
	l.since = 1700000000;
	l.retries = 2;
	l.stats.ups = 3;
	l.stats.failures = 4;
	TAILQ_INIT(&l.fwds);
	memset(&f, 0, sizeof(f));
	f.tc = &tc;
	f.link = &l;
	f.state = FWD_WAITING;
	f.bytes_in = 18446744073709551615ULL;
	f.bytes_out = 7;
	f.conns_active = 1;
	f.conns_total = 5;
	f.conns_failed = 2;
	TAILQ_INSERT_TAIL(&l.fwds, &f, entry);
	TAILQ_INSERT_TAIL(&td->links, &l, entry);
	metrics_rtt_observe(&l.stats, 0.0002);
	metrics_rtt_observe(&l.stats, 0.003);
	metrics_rtt_observe(&l.stats, 0.003);
	metrics_rtt_observe(&l.stats, 42.0);

	b = evbuffer_new();
	metrics_render(b);
	s = text_of(b);
#define HAS(x)	do {							\
	if (strstr(s, (x)) == NULL)					\
		fail_msg("missing: %s", (x));				\
} while (0)
	HAS("# TYPE tunneld_tunnel_bytes_total counter\n");
	HAS("tunneld_tunnel_bytes_total{tunnel=\"p\\\"g\\\\x\\ny\","
	    "direction=\"in\"} 18446744073709551615\n");
	HAS("tunneld_tunnel_bytes_total{tunnel=\"p\\\"g\\\\x\\ny\","
	    "direction=\"out\"} 7\n");
	HAS("tunneld_tunnel_info{tunnel=\"p\\\"g\\\\x\\ny\","
	    "type=\"remote-dynamic\",via=\"db\"} 1\n");
	HAS("tunneld_tunnel_state{tunnel=\"p\\\"g\\\\x\\ny\",state=\"waiting\"}"
	    " 1\n");
	HAS("tunneld_tunnel_state{tunnel=\"p\\\"g\\\\x\\ny\",state=\"up\"} 0\n");
	HAS("tunneld_tunnel_connections_active{tunnel=\"p\\\"g\\\\x\\ny\"} 1\n");
	HAS("tunneld_tunnel_connections_total{tunnel=\"p\\\"g\\\\x\\ny\"} 5\n");
	HAS("tunneld_tunnel_connections_failed_total{tunnel=\"p\\\"g\\\\x\\ny\"}"
	    " 2\n");
	HAS("tunneld_link_info{host=\"db\",address=\"[2001:db8::1]:22\","
	    "jump=\"relay\"} 1\n");
	HAS("tunneld_link_state{host=\"db\",state=\"up\"} 1\n");
	HAS("tunneld_link_state{host=\"db\",state=\"waiting\"} 0\n");
	HAS("tunneld_link_up_since_seconds{host=\"db\"} 1700000000\n");
	HAS("tunneld_link_retries{host=\"db\"} 2\n");
	HAS("tunneld_link_reconnects_total{host=\"db\"} 2\n");
	HAS("tunneld_link_failures_total{host=\"db\"} 4\n");
	HAS("# TYPE tunneld_link_keepalive_rtt_seconds histogram\n");
	HAS("tunneld_link_keepalive_rtt_seconds_bucket{host=\"db\","
	    "le=\"0.00025\"} 1\n");
	HAS("tunneld_link_keepalive_rtt_seconds_bucket{host=\"db\","
	    "le=\"0.0025\"} 1\n");
	HAS("tunneld_link_keepalive_rtt_seconds_bucket{host=\"db\","
	    "le=\"0.005\"} 3\n");
	HAS("tunneld_link_keepalive_rtt_seconds_bucket{host=\"db\","
	    "le=\"10\"} 3\n");
	HAS("tunneld_link_keepalive_rtt_seconds_bucket{host=\"db\","
	    "le=\"+Inf\"} 4\n");
	HAS("tunneld_link_keepalive_rtt_seconds_count{host=\"db\"} 4\n");
	HAS("tunneld_link_keepalive_rtt_seconds_sum{host=\"db\"} 42.0062\n");
	HAS("tunneld_build_info{version=\"" TUNNELD_VERSION "\",");
	HAS("# TYPE tunneld_metrics_http_responses_total counter\n");
	HAS("# TYPE process_open_fds gauge\n");
	HAS("tunneld_tunnel_needs_attention{tunnel=\"p\\\"g\\\\x\\ny\"} 0\n");
	HAS("tunneld_link_needs_attention{host=\"db\"} 0\n");
	HAS("tunneld_buffered_bytes 12345\n");
	HAS("tunneld_buffered_limit_bytes 268435456\n");
	HAS("tunneld_buffered_full_total 2\n");
	free(s);

	/* Down: up_since 0, the state series flip; attention shows. */
	l.state = LINK_BACKOFF;
	l.attn.on = 1;
	f.attn.on = 1;
	f.enabled = 1;
	metrics_render(b);
	s = text_of(b);
	HAS("tunneld_link_up_since_seconds{host=\"db\"} 0\n");
	HAS("tunneld_link_state{host=\"db\",state=\"up\"} 0\n");
	HAS("tunneld_link_state{host=\"db\",state=\"backoff\"} 1\n");
	HAS("tunneld_tunnel_needs_attention{tunnel=\"p\\\"g\\\\x\\ny\"} 1\n");
	HAS("tunneld_link_needs_attention{host=\"db\"} 1\n");
	free(s);
#undef HAS
	evbuffer_free(b);
	free(td);
	td = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_render),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
