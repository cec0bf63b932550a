/*
 * Config files: mutated configs (from examples/ and the tests' configs)
 * either load or fail with a message that names the file, "fuzz.lua:" and,
 * where the mistake is in the text, its line; never a crash, a leak (the
 * fuzzer runs LeakSanitizer) or a hang (the build gives scripts 1 s and
 * 256 MiB; names in addresses are not resolved).
 *
 * The script runs with the libraries that could reach outside the process
 * (os, io, loading code and modules, the JIT switch) removed, on its first
 * line so that line numbers stay those of the input.
 */
#include "config/config.h"
#include "fuzz.h"

static const char prelude[] = "os, io, package, require, dofile, loadfile, load, loadstring, jit, "
			      "debug, module = nil; ";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256 * 1024)
		return 0;
	char *src = malloc(sizeof(prelude) + size);
	memcpy(src, prelude, sizeof(prelude) - 1);
	memcpy(src + sizeof(prelude) - 1, data, size);
	src[sizeof(prelude) - 1 + size] = 0;
	char err[1024] = "";
	struct config *cfg = config_load_string("fuzz.lua", src, err, sizeof(err));
	if (cfg) {
		config_unref(cfg);
	} else {
		FUZZ_CHECK(!strncmp(err, "fuzz.lua:", 9), "error does not name the file: %s", err);
		FUZZ_CHECK(strlen(err) > 10, "empty error: %s", err);
	}
	free(src);
	return 0;
}
