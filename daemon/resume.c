/*
 * resume.c: noticing that the machine was suspended and has resumed.
 *
 * CLOCK_MONOTONIC stops while the machine sleeps, CLOCK_BOOTTIME does not:
 * their difference grows by exactly the time spent asleep and is constant
 * otherwise. Sampled now and then, a difference that grew by more than
 * RESUME_MIN seconds since the last sample means a resume. After one,
 * every TCP connection may be dead (NAT state expired, another network):
 * netwatch.c treats it as a network change. The check is a pure function
 * of the two readings, so the unit test feeds it any clock it likes.
 */
#include <time.h>

#include "tunneld.h"

#define RESUME_MIN	1.0	/* seconds asleep that count as a suspend */

/*
 * One sample of the two clocks: returns the seconds slept since the
 * previous sample (0 when none worth telling). The first sample, and a
 * difference that shrank (no clock does that; a bad reading), only set
 * the reference.
 */
double
resume_check(struct resume_clock *rc, double boottime, double monotonic)
{
	double gap = boottime - monotonic, slept;

	if (!rc->primed || gap < rc->gap) {
		rc->primed = 1;
		rc->gap = gap;
		return (0);
	}
	slept = gap - rc->gap;
	if (slept < RESUME_MIN)
		return (0);
	rc->gap = gap;
	return (slept);
}

/* Read CLOCK_BOOTTIME and CLOCK_MONOTONIC, in seconds; -1 on failure. */
int
resume_clocks(double *boottime, double *monotonic)
{
	struct timespec b, m;

	if (clock_gettime(CLOCK_MONOTONIC, &m) == -1 ||
	    clock_gettime(CLOCK_BOOTTIME, &b) == -1)
		return (-1);
	*boottime = (double)b.tv_sec + (double)b.tv_nsec / 1e9;
	*monotonic = (double)m.tv_sec + (double)m.tv_nsec / 1e9;
	return (0);
}
