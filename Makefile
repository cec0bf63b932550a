# sluice — see README.md. `make run` and `make test` set up a fresh Debian 12 machine themselves.

CC      ?= cc
LLHTTP  ?= /usr/share/llhttp
# llhttp is built strict: lenient chunk framing forwarded as it came is how two parsers come to disagree.
CFLAGS_COMMON = -std=c11 -D_GNU_SOURCE -DLLHTTP_STRICT_MODE=1 -Wall -Wextra -Werror -Wshadow \
	-Wstrict-prototypes -I/usr/share/include/llhttp -I/usr/include/luajit-2.1
LDLIBS  = -lluajit-5.1 -lssl -lcrypto -lcjson -lm -ldl

SRCS    = $(wildcard src/*.c)
UNITS   = $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

# Fuzz targets (tests/fuzz/fuzz_*.c): run by `make fuzz` under libFuzzer, and
# their corpora replayed by `make test` and `make asan` as unit tests. Their
# builds give a config script 1 s and 256 MiB, and resolve no names.
FUZZERS = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60
FUZZ_DEFS = -DCONFIG_EVAL_LIMIT_MS=1000 '-DCONFIG_EVAL_MAX_BYTES=(256u << 20)' \
	-DCONFIG_RESOLVE_FLAGS=AI_NUMERICHOST
LIB_SRCS = $(filter-out src/main.c,$(SRCS))

# release: build/, sanitizers: build-asan/ (address, undefined), build-tsan/ (thread)
build/CFLAGS      = -O2 -g -DNDEBUG
build-asan/CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow
build-tsan/CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LLHTTP_CFLAGS     = -O2 -DLLHTTP_STRICT_MODE=1 -I/usr/share/include/llhttp -w

.PHONY: all deps build asan tsan unit test test-tls-scan run bench fuzz soak clean format

all: build

deps:
	@sh scripts/deps.sh build

# Packages are installed first, in their own step: make caches directory
# listings, so files they add are only seen by a make started afterwards.
build: deps
	@$(MAKE) --no-print-directory build/sluice $(addprefix build/tests/,$(UNITS)) \
		$(addprefix build/tests/fuzz_,$(FUZZERS))

define variant
$(1)/obj/%.o: src/%.c src/*.h | $(1)/obj
	$$(CC) $$(CFLAGS_COMMON) $$($(1)/CFLAGS) -c $$< -o $$@
$(1)/obj/llhttp_%.o: $$(LLHTTP)/%.c | $(1)/obj
	$$(CC) $$(LLHTTP_CFLAGS) $$(filter -fsanitize%,$$($(1)/CFLAGS)) -c $$< -o $$@
$(1)/obj:
	mkdir -p $(1)/obj $(1)/tests
$(1)/sluice: $(patsubst src/%.c,$(1)/obj/%.o,$(SRCS)) $(1)/obj/llhttp_llhttp.o $(1)/obj/llhttp_api.o $(1)/obj/llhttp_http.o
	$$(CC) $$($(1)/CFLAGS) -o $$@ $$^ $$(LDLIBS)
# A unit test includes the module it tests (to reach its static functions) and links the rest.
$(1)/tests/%: tests/unit/%.c tests/unit/unit.h src/*.c src/*.h $(1)/obj/llhttp_llhttp.o $(1)/obj/llhttp_api.o $(1)/obj/llhttp_http.o | $(1)/obj
	$$(CC) $$(CFLAGS_COMMON) $$($(1)/CFLAGS) -Wno-unused-function -Isrc -o $$@ $$< \
		$$(filter-out src/main.c $$(patsubst test_%,src/%.c,$$*),$$(SRCS)) \
		$(1)/obj/llhttp_llhttp.o $(1)/obj/llhttp_api.o $(1)/obj/llhttp_http.o $$(LDLIBS)
# A fuzz target as a plain program that replays its corpus (tests/fuzz/driver.c).
$(1)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/driver.c tests/fuzz/fuzz.h src/*.c src/*.h $(1)/obj/llhttp_llhttp.o $(1)/obj/llhttp_api.o $(1)/obj/llhttp_http.o | $(1)/obj
	$$(CC) $$(CFLAGS_COMMON) $$($(1)/CFLAGS) $$(FUZZ_DEFS) -DFUZZ_TARGET='"$$*"' \
		-DFUZZ_CORPUS='"tests/fuzz/corpus/$$*"' -o $$@ $$< tests/fuzz/driver.c $$(LIB_SRCS) \
		$(1)/obj/llhttp_llhttp.o $(1)/obj/llhttp_api.o $(1)/obj/llhttp_http.o $$(LDLIBS)
endef
$(eval $(call variant,build))
$(eval $(call variant,build-asan))
$(eval $(call variant,build-tsan))

unit: build
	@for t in build/tests/test_*; do $$t || exit 1; done

test: build
	@sh scripts/deps.sh test
	python3 tests/run.py --sluice build/sluice --unit-dir build/tests

# testssl.sh against a TLS listener: no finding of severity MEDIUM or above (tests/scan/tls_scan.py).
test-tls-scan: build
	@sh scripts/deps.sh scan
	python3 tests/scan/tls_scan.py --sluice build/sluice

asan: deps
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory build-asan/sluice $(addprefix build-asan/tests/,$(UNITS)) \
		$(addprefix build-asan/tests/fuzz_,$(FUZZERS))
	SLUICE_TEST_WORKERS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		python3 tests/run.py --sluice build-asan/sluice --unit-dir build-asan/tests

# The integration tests with every config at 4 workers, under ThreadSanitizer:
# a report in any sluice's stderr, or its exit status, fails the test.
tsan: deps
	@sh scripts/deps.sh tsan
	@$(MAKE) --no-print-directory build-tsan/sluice
	SLUICE_TEST_WORKERS=4 TSAN_OPTIONS=second_deadlock_stack=1 \
		python3 tests/run.py --sluice build-tsan/sluice --no-unit

run: build
	@sh scripts/deps.sh test
	@sh scripts/run-demo.sh build/sluice

bench: build build/hook_cost build/make_certs
	@sh scripts/deps.sh bench
	python3 bench/bench.py --sluice build/sluice
	build/hook_cost
	python3 bench/cert_load.py --sluice build/sluice --make-certs build/make_certs --count 10000

build/make_certs: bench/make_certs.c
	$(CC) $(CFLAGS_COMMON) $(build/CFLAGS) -o $@ $< -lssl -lcrypto

build/hook_cost: bench/hook_cost.c src/*.c src/*.h build/obj/llhttp_llhttp.o build/obj/llhttp_api.o build/obj/llhttp_http.o
	$(CC) $(CFLAGS_COMMON) $(build/CFLAGS) -o $@ $< $(filter-out src/main.c,$(SRCS)) \
		build/obj/llhttp_llhttp.o build/obj/llhttp_api.o build/obj/llhttp_http.o $(LDLIBS)

# libFuzzer builds: every source instrumented, llhttp included, so that coverage guides into it.
FUZZ_SAN = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LLHTTP = build-fuzz/obj/llhttp_llhttp.o build-fuzz/obj/llhttp_api.o build-fuzz/obj/llhttp_http.o
build-fuzz/obj/llhttp_%.o: $(LLHTTP)/%.c
	@mkdir -p build-fuzz/obj
	clang $(LLHTTP_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h src/*.c src/*.h $(FUZZ_LLHTTP)
	clang $(CFLAGS_COMMON) $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_DEFS) -o $@ $< $(LIB_SRCS) \
		$(FUZZ_LLHTTP) $(LDLIBS)

fuzz: deps
	@sh scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory $(addprefix build-fuzz/fuzz_,$(FUZZERS))
	@sh scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZERS)

# Mixed traffic with faults through the ASan build (tests/soak/soak.py); not part of make test.
# A small quarantine fills within the warm-up, so that RSS at the end says
# whether sluice leaks rather than how full ASan's quarantine has become.
SOAK_SECONDS ?= 600
soak: deps
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory build-asan/sluice
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:quarantine_size_mb=4 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		python3 tests/soak/soak.py --sluice build-asan/sluice --seconds $(SOAK_SECONDS)

format:
	clang-format -i src/*.c src/*.h tests/unit/*.c tests/unit/*.h

clean:
	rm -rf build build-asan build-tsan build-fuzz
