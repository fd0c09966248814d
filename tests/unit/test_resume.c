/*
 * test_resume.c: the suspend detection of daemon/resume.c, fed clock
 * readings made up here: CLOCK_MONOTONIC stands still while the machine
 * sleeps, CLOCK_BOOTTIME does not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tunneld.h"

/* A machine that never sleeps: both clocks advance together; nothing. */
static void
test_awake(void **state)
{
	struct resume_clock	rc = { 0, 0 };
	double			boot = 1000.0, mono = 900.0;
	int			i;

	(void)state;
	assert_true(resume_check(&rc, boot, mono) == 0);	/* primes */
	for (i = 0; i < 10000; i++) {
		boot += 2.0;
		mono += 2.0;
		/* Two reads are never at the same instant: a little noise. */
		assert_true(resume_check(&rc, boot + (i % 3) * 1e-4,
		    mono) == 0);
	}
}

/* A sleep of 300 s between two samples is told once, with its length. */
static void
test_one_suspend(void **state)
{
	struct resume_clock	rc = { 0, 0 };
	double			boot = 50.0, mono = 50.0, slept;

	(void)state;
	resume_check(&rc, boot, mono);
	boot += 2.0;
	mono += 2.0;
	assert_true(resume_check(&rc, boot, mono) == 0);
	boot += 301.0;		/* 300 s asleep, 1 s awake */
	mono += 1.0;
	slept = resume_check(&rc, boot, mono);
	assert_true(slept > 299.99 && slept < 300.01);
	/* Awake again: not told twice. */
	boot += 2.0;
	mono += 2.0;
	assert_true(resume_check(&rc, boot, mono) == 0);
	/* A second sleep is told again. */
	boot += 62.0;
	mono += 2.0;
	slept = resume_check(&rc, boot, mono);
	assert_true(slept > 59.99 && slept < 60.01);
}

/* Short sleeps below a second are not worth telling until they add up. */
static void
test_short_sleeps_add_up(void **state)
{
	struct resume_clock	rc = { 0, 0 };
	double			boot = 10.0, mono = 10.0, slept;

	(void)state;
	resume_check(&rc, boot, mono);
	boot += 2.6;		/* 0.6 s asleep */
	mono += 2.0;
	assert_true(resume_check(&rc, boot, mono) == 0);
	boot += 2.6;		/* another 0.6 s: 1.2 s in all */
	mono += 2.0;
	slept = resume_check(&rc, boot, mono);
	assert_true(slept > 1.19 && slept < 1.21);
}

/* The first sample only sets the reference, however large the gap. */
static void
test_first_sample(void **state)
{
	struct resume_clock	rc = { 0, 0 };

	(void)state;
	/* Booted long ago and slept for hours before the daemon started. */
	assert_true(resume_check(&rc, 90000.0, 100.0) == 0);
	assert_true(resume_check(&rc, 90002.0, 102.0) == 0);
}

/* A gap that shrinks (a bad reading) resets the reference, no report. */
static void
test_gap_shrinks(void **state)
{
	struct resume_clock	rc = { 0, 0 };
	double			slept;

	(void)state;
	resume_check(&rc, 500.0, 100.0);		/* gap 400 */
	assert_true(resume_check(&rc, 498.0, 102.0) == 0);	/* gap 396 */
	/* From the new reference: 10 s asleep. */
	slept = resume_check(&rc, 510.0, 104.0);	/* gap 406 */
	assert_true(slept > 9.99 && slept < 10.01);
}

/* The real clocks, read twice in a row: a reading, and no suspend. */
static void
test_real_clocks(void **state)
{
	struct resume_clock	rc = { 0, 0 };
	double			b, m;

	(void)state;
	assert_int_equal(resume_clocks(&b, &m), 0);
	assert_true(b >= m && m > 0);
	assert_true(resume_check(&rc, b, m) == 0);
	assert_int_equal(resume_clocks(&b, &m), 0);
	assert_true(resume_check(&rc, b, m) == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_awake),
		cmocka_unit_test(test_one_suspend),
		cmocka_unit_test(test_short_sleeps_add_up),
		cmocka_unit_test(test_first_sample),
		cmocka_unit_test(test_gap_shrinks),
		cmocka_unit_test(test_real_clocks),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
