/*
 * fuzz_metrics.c: libFuzzer harness for the request parser of the metrics
 * responder (metrics_http_parse() in daemon/metrics_http.c).
 *
 * The input is what a client sends, at most METRICS_REQ_MAX (8 KiB) bytes
 * as the responder reads it. The parser must answer with a status it
 * knows (or 0: not whole yet), must not read past the bytes it is given
 * (each call gets an exactly sized heap copy), and must be consistent as
 * the request arrives: a prefix of the input is answered either not at all
 * or exactly as the whole input is, so where the bytes are cut by the
 * network never changes the answer. A full 8 KiB with no answer is 431.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tunneld.h"

#define FUZZ_REQ_MAX	8192		/* metrics_http.c's METRICS_REQ_MAX */

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "fuzz_metrics: %s:%d: invariant failed: "\
		    "%s\n", __FILE__, __LINE__, #x);			\
		abort();						\
	}								\
} while (0)

/* metrics_http.c is linked alone: the daemon it would serve is not. */
struct tunneld	*td;

void
metrics_render(struct evbuffer *b)
{
	(void)b;
}

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static int fuzz_parse(const uint8_t *, size_t, int *);

/* metrics_http_parse() on an exactly sized heap copy of p[0..n). */
static int
fuzz_parse(const uint8_t *p, size_t n, int *head)
{
	char	*s;
	int	 code;

	if ((s = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	memcpy(s, p, n);
	code = metrics_http_parse(s, n, head);
	free(s);
	CHECK(code == 0 || code == 200 || code == 400 || code == 404 ||
	    code == 405 || code == 431 || code == 505);
	CHECK(*head == 0 || code == 200);
	return (code);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t	cut, step;
	int	code, c, head, h;

	if (size > FUZZ_REQ_MAX)
		size = FUZZ_REQ_MAX;
	code = fuzz_parse(data, size, &head);
	if (size == FUZZ_REQ_MAX)
		CHECK(code != 0);
	/* Every cut (every 7th in long inputs): nothing, or the same. */
	step = size > 512 ? 7 : 1;
	for (cut = 0; cut < size; cut += step) {
		c = fuzz_parse(data, cut, &h);
		CHECK(c == 0 || c == code);
		CHECK(c == 0 || h == head);
	}
	return (0);
}
