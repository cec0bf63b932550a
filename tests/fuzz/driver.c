/*
 * Replays a fuzz target's corpus without libFuzzer, for `make test`: every
 * file in the directory given (or FUZZ_CORPUS), in name order. Prints
 * "PASS fuzz_<target>_corpus (N inputs)", or "FAIL ..." naming the input
 * that broke a property or crashed.
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static const char *current = "(none)";

static void on_crash(int sig)
{
	/* Async-signal-safe enough for a test that is dying anyway. */
	printf("FAIL fuzz_%s_corpus: input %s: signal %d\n", FUZZ_TARGET, current, sig);
	fflush(stdout);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : FUZZ_CORPUS;
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	signal(SIGABRT, on_crash);
	signal(SIGSEGV, on_crash);
	signal(SIGBUS, on_crash);
	DIR *d = opendir(dir);
	if (!d) {
		printf("FAIL fuzz_%s_corpus: %s: cannot open\n", FUZZ_TARGET, dir);
		return 1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	static char path[4096];
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		current = path;
		FILE *f = fopen(path, "rb");
		if (!f) {
			printf("FAIL fuzz_%s_corpus: %s: cannot open\n", FUZZ_TARGET, path);
			return 1;
		}
		uint8_t *data = NULL;
		size_t len = 0, cap = 0;
		for (;;) {
			if (len == cap) {
				cap = cap ? cap * 2 : 4096;
				data = realloc(data, cap);
			}
			size_t k = fread(data + len, 1, cap - len, f);
			if (!k)
				break;
			len += k;
		}
		fclose(f);
		LLVMFuzzerTestOneInput(data, len);
		free(data);
		free(names[i]);
	}
	free(names);
	printf("PASS fuzz_%s_corpus (%zu inputs)\n", FUZZ_TARGET, n);
	return 0;
}
