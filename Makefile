# sluice — see README.md. `make run` and `make test` set up a fresh Debian 12 machine themselves.

CC      ?= cc
LLHTTP  ?= /usr/share/llhttp
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
# The layers, lowest first: a file includes only from its own layer or those before it
# (scripts/layers.py checks it; README.md, "Layout", says what each holds).
LAYERS  = core tls http route config upstream proxy control
# llhttp is built strict: lenient chunk framing forwarded as it came is how two parsers come to disagree.
CFLAGS_COMMON = -std=c11 -D_GNU_SOURCE -DLLHTTP_STRICT_MODE=1 -Wall -Wextra -Werror -Wshadow \
	-Wstrict-prototypes -I/usr/share/include/llhttp -I/usr/include/luajit-2.1 -Isrc
LDLIBS  = -lluajit-5.1 -lssl -lcrypto -lcjson -lnghttp2 -lm -ldl

LIB_SRCS = $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
SRCS     = $(LIB_SRCS) src/main.c
HDRS     = $(wildcard src/*/*.h)
# Unit tests mirror src/: tests/unit/<layer>/test_<module>.c tests src/<layer>/<module>.c.
UNIT_SRCS = $(wildcard tests/unit/*/test_*.c)
UNITS     = $(basename $(notdir $(UNIT_SRCS)))

# Fuzz targets (tests/fuzz/fuzz_*.c): run by `make fuzz` under libFuzzer, and
# their corpora replayed by `make test` and `make asan` as unit tests. Their
# builds give a config script 1 s and 256 MiB, and resolve no names.
FUZZERS = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60
FUZZ_DEFS = -DCONFIG_EVAL_LIMIT_MS=1000 '-DCONFIG_EVAL_MAX_BYTES=(256u << 20)' \
	-DCONFIG_RESOLVE_FLAGS=AI_NUMERICHOST

# release: build/, sanitizers: build-asan/ (address, undefined), build-tsan/ (thread).
# The release binary is linked with LTO: the small functions between the layers (a stream's
# and a backend session's steps, conn_fill) are inlined across files as they were within one.
# Unit tests and replays link the same objects' plain code (-fno-lto), which is quicker.
build/CFLAGS      = -O2 -g -DNDEBUG -flto=auto -ffat-lto-objects
build-asan/CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow
build-tsan/CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LLHTTP_CFLAGS     = -O2 -DLLHTTP_STRICT_MODE=1 -I/usr/share/include/llhttp -w

.PHONY: all deps build asan tsan unit test check-layers test-tls-scan run bench fuzz soak clean format

all: build

deps:
	@sh scripts/deps.sh build

# Packages are installed first, in their own step: make caches directory
# listings, so files they add are only seen by a make started afterwards.
build: deps
	@$(MAKE) --no-print-directory -j$(JOBS) build/sluice $(addprefix build/tests/,$(UNITS)) \
		$(addprefix build/tests/fuzz_,$(FUZZERS))

# $(1): the variant's directory. Objects mirror src/; config.c is built a second time with
# FUZZ_DEFS for the fuzz targets' replays (the only source those settings change).
define variant
$(1)/LLHTTP_OBJS = $(1)/obj/llhttp_llhttp.o $(1)/obj/llhttp_api.o $(1)/obj/llhttp_http.o
$(1)/LIB_OBJS = $(patsubst src/%.c,$(1)/obj/%.o,$(LIB_SRCS))
$(1)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$($(1)/CFLAGS) -c $$< -o $$@
$(1)/obj/config/config-fuzz.o: src/config/config.c $(HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$($(1)/CFLAGS) $$(FUZZ_DEFS) -c $$< -o $$@
$(1)/obj/llhttp_%.o: $$(LLHTTP)/%.c
	@mkdir -p $$(@D)
	$$(CC) $$(LLHTTP_CFLAGS) $$(filter -fsanitize%,$$($(1)/CFLAGS)) -c $$< -o $$@
$(1)/sluice: $$($(1)/LIB_OBJS) $(1)/obj/main.o $$($(1)/LLHTTP_OBJS)
	$$(CC) $$($(1)/CFLAGS) -o $$@ $$^ $$(LDLIBS)
# A fuzz target as a plain program that replays its corpus (tests/fuzz/driver.c).
$(1)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/driver.c tests/fuzz/fuzz.h $$($(1)/LIB_OBJS) \
		$(1)/obj/config/config-fuzz.o $$($(1)/LLHTTP_OBJS)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$($(1)/CFLAGS) -fno-lto $$(FUZZ_DEFS) -DFUZZ_TARGET='"$$*"' \
		-DFUZZ_CORPUS='"tests/fuzz/corpus/$$*"' -o $$@ $$< tests/fuzz/driver.c \
		$$(filter-out $(1)/obj/config/config.o,$$($(1)/LIB_OBJS)) $(1)/obj/config/config-fuzz.o \
		$$($(1)/LLHTTP_OBJS) $$(LDLIBS)
endef
# A unit test includes the module it tests (to reach its static functions) and links the rest,
# but for the modules it fakes (FAKES_<test>).
# $(1): the variant's directory, $(2): the test's source.
FAKES_test_txn = proxy/h1_back
define unit
$(1)/tests/$(basename $(notdir $(2))): $(2) $(wildcard tests/unit/*.h) $$($(1)/LIB_OBJS) $$($(1)/LLHTTP_OBJS)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_COMMON) $$($(1)/CFLAGS) -fno-lto -Wno-unused-function -o $$@ $$< \
		$$(filter-out $(1)/obj/$(patsubst tests/unit/%,%,$(dir $(2)))$(patsubst test_%.c,%,$(notdir $(2))).o \
			$$(patsubst %,$(1)/obj/%.o,$$(FAKES_$(basename $(notdir $(2))))),$$($(1)/LIB_OBJS)) \
		$$($(1)/LLHTTP_OBJS) $$(LDLIBS)
endef
$(foreach v,build build-asan build-tsan,$(eval $(call variant,$(v))))
$(foreach v,build build-asan build-tsan,$(foreach u,$(UNIT_SRCS),$(eval $(call unit,$(v),$(u)))))

unit: build
	@for t in build/tests/test_*; do $$t || exit 1; done

# Includes run only down the layers, and no modules include each other in a circle.
check-layers:
	@sh scripts/deps.sh layers
	@/usr/bin/python3 scripts/layers.py $(LAYERS)

test: build check-layers
	@sh scripts/deps.sh test
	/usr/bin/python3 -m pytest -c tests/pytest.ini tests --sluice build/sluice --unit-dir build/tests

# testssl.sh against a TLS listener: no finding of severity MEDIUM or above (tests/scan/tls_scan.py).
test-tls-scan: build
	@sh scripts/deps.sh scan
	python3 tests/scan/tls_scan.py --sluice build/sluice

asan: deps
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory -j$(JOBS) build-asan/sluice $(addprefix build-asan/tests/,$(UNITS)) \
		$(addprefix build-asan/tests/fuzz_,$(FUZZERS))
	SLUICE_TEST_WORKERS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		/usr/bin/python3 -m pytest -c tests/pytest.ini tests --sluice build-asan/sluice \
		--unit-dir build-asan/tests

# The integration tests with every config at 4 workers, under ThreadSanitizer:
# a report in any sluice's stderr, or its exit status, fails the test.
tsan: deps
	@sh scripts/deps.sh tsan
	@$(MAKE) --no-print-directory -j$(JOBS) build-tsan/sluice
	SLUICE_TEST_WORKERS=4 TSAN_OPTIONS=second_deadlock_stack=1 \
		/usr/bin/python3 -m pytest -c tests/pytest.ini tests/integration --sluice build-tsan/sluice

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

build/hook_cost: bench/hook_cost.c $(build/LIB_OBJS) $(build/LLHTTP_OBJS)
	$(CC) $(CFLAGS_COMMON) $(build/CFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer builds: every source instrumented, llhttp included, so that coverage guides into it.
FUZZ_SAN = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS = $(patsubst src/%.c,build-fuzz/obj/%.o,$(LIB_SRCS)) \
	build-fuzz/obj/llhttp_llhttp.o build-fuzz/obj/llhttp_api.o build-fuzz/obj/llhttp_http.o
build-fuzz/obj/llhttp_%.o: $(LLHTTP)/%.c
	@mkdir -p $(@D)
	clang $(LLHTTP_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@
build-fuzz/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	clang $(CFLAGS_COMMON) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(FUZZ_DEFS) -c $< -o $@
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJS)
	clang $(CFLAGS_COMMON) $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_DEFS) -o $@ $< $(FUZZ_OBJS) $(LDLIBS)

fuzz: deps
	@sh scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory -j$(JOBS) $(addprefix build-fuzz/fuzz_,$(FUZZERS))
	@sh scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZERS)

# Mixed traffic with faults through the ASan build (tests/soak/soak.py); not part of make test.
# A small quarantine fills within the warm-up, so that RSS at the end says
# whether sluice leaks rather than how full ASan's quarantine has become.
SOAK_SECONDS ?= 600
soak: deps
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory -j$(JOBS) build-asan/sluice
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:quarantine_size_mb=4 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		python3 tests/soak/soak.py --sluice build-asan/sluice --seconds $(SOAK_SECONDS)

format:
	clang-format -i src/*.c src/*/*.[ch] tests/unit/*.h tests/unit/*/*.c

clean:
	rm -rf build build-asan build-tsan build-fuzz
