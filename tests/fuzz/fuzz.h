/*
 * What the fuzz targets share. Each target is one file with
 * LLVMFuzzerTestOneInput(); it is built twice: with libFuzzer
 * (`make fuzz`: clang -fsanitize=fuzzer,address,undefined) and with
 * driver.c as a plain program that runs its seed corpus, so that
 * `make test` replays every input there, crashes found included.
 *
 * A target checks properties, not only "no crash": a broken one aborts
 * with the property and the values that broke it.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                          \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "property failed: %s (%s:%d): ", #cond, __FILE__, \
				__LINE__);                                             \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
			abort();                                                       \
		}                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An exact-size heap copy of the input, so that a read past its end is caught by ASan. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);
	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	return p;
}

/*
 * Checks a head sluice wrote: CRLF line ends, a blank line at the end and
 * nowhere else, and no CR, LF or NUL inside a line; every header line is a
 * token, ": " and a value. Returns the number of header lines.
 */
static inline unsigned fuzz_check_head(const char *head, size_t len)
{
	FUZZ_CHECK(len >= 4 && !memcmp(head + len - 4, "\r\n\r\n", 4), "head does not end in a blank line");
	unsigned lines = 0;
	const char *p = head, *end = head + len - 2;
	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		FUZZ_CHECK(eol && eol[1] == '\n', "line %u has no CRLF", lines);
		for (const char *q = p; q < eol; q++)
			FUZZ_CHECK(*q != '\n' && *q != '\0', "LF or NUL inside line %u", lines);
		FUZZ_CHECK(eol > p, "empty line %u before the end of the head", lines);
		if (lines > 0) {
			const char *colon = memchr(p, ':', (size_t)(eol - p));
			FUZZ_CHECK(colon && colon > p && colon + 1 < eol + 1, "header line %u has no name", lines);
			for (const char *q = p; q < colon; q++)
				FUZZ_CHECK(*q > 32 && *q < 127 && !strchr("\"(),/:;<=>?@[\\]{}", *q),
					   "header line %u: name is not a token", lines);
			FUZZ_CHECK(colon[1] == ' ', "header line %u: no space after the colon", lines);
		}
		lines++;
		p = eol + 2;
	}
	return lines ? lines - 1 : 0;
}

#endif
