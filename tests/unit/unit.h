/*
 * A minimal unit test harness: each test prints "PASS name" or
 * "FAIL name: where: what"; the binary exits non-zero if any failed.
 * tests/unit/test_units.py makes a pytest test of each line. Each line is
 * flushed at once: a sanitizer's report ends the process without flushing
 * stdio.
 */
#ifndef SLUICE_UNIT_H
#define SLUICE_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failures;
static int unit_current_failed;

#define CHECK(cond)                                                                            \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			printf("FAIL %s: %s:%d: %s\n", unit_name, __FILE__, __LINE__, #cond);  \
			unit_current_failed = 1;                                               \
			return;                                                                \
		}                                                                              \
	} while (0)

#define CHECK_STR_EQ(got, want)                                                                \
	do {                                                                                   \
		if (strcmp((got), (want))) {                                                   \
			printf("FAIL %s: %s:%d: got \"%s\", want \"%s\"\n", unit_name, __FILE__,   \
			       __LINE__, (got), (want));                                          \
			unit_current_failed = 1;                                               \
			return;                                                                \
		}                                                                              \
	} while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                        \
	do {                                                                                   \
		if (!strstr((hay), (needle))) {                                                \
			printf("FAIL %s: %s:%d: \"%s\" does not contain \"%s\"\n", unit_name,    \
			       __FILE__, __LINE__, (hay), (needle));                              \
			unit_current_failed = 1;                                               \
			return;                                                                \
		}                                                                              \
	} while (0)

#define TEST(name) static void name(const char *unit_name)

#define RUN(name)                                                                              \
	do {                                                                                   \
		unit_current_failed = 0;                                                       \
		name(#name);                                                                   \
		if (unit_current_failed)                                                       \
			unit_failures++;                                                       \
		else                                                                           \
			printf("PASS %s\n", #name);                                            \
		fflush(stdout);                                                                \
	} while (0)

#define UNIT_EXIT() return unit_failures ? 1 : 0

#endif
