# sluice — see README.md. `make run` and `make test` set up a fresh Debian 12 machine themselves.

CC      ?= cc
LLHTTP  ?= /usr/share/llhttp
CFLAGS_COMMON = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-I/usr/share/include/llhttp -I/usr/include/luajit-2.1
LDLIBS  = -lluajit-5.1 -lm -ldl

SRCS    = $(wildcard src/*.c)
UNITS   = $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

# release: build/, sanitizers: build-asan/
build/CFLAGS      = -O2 -g -DNDEBUG
build-asan/CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LLHTTP_CFLAGS     = -O2 -I/usr/share/include/llhttp -w

.PHONY: all deps build asan unit test run bench clean format

all: build

deps:
	@sh scripts/deps.sh build

# Packages are installed first, in their own step: make caches directory
# listings, so files they add are only seen by a make started afterwards.
build: deps
	@$(MAKE) --no-print-directory build/sluice $(addprefix build/tests/,$(UNITS))

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
endef
$(eval $(call variant,build))
$(eval $(call variant,build-asan))

unit: build
	@for t in build/tests/test_*; do $$t || exit 1; done

test: build
	@sh scripts/deps.sh test
	python3 tests/run.py --sluice build/sluice --unit-dir build/tests

asan: deps
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory build-asan/sluice $(addprefix build-asan/tests/,$(UNITS))
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		python3 tests/run.py --sluice build-asan/sluice --unit-dir build-asan/tests

run: build
	@sh scripts/deps.sh test
	@sh scripts/run-demo.sh build/sluice

bench: build build/hook_cost
	@sh scripts/deps.sh bench
	python3 bench/bench.py --sluice build/sluice
	build/hook_cost

build/hook_cost: bench/hook_cost.c src/*.c src/*.h build/obj/llhttp_llhttp.o build/obj/llhttp_api.o build/obj/llhttp_http.o
	$(CC) $(CFLAGS_COMMON) $(build/CFLAGS) -o $@ $< $(filter-out src/main.c,$(SRCS)) \
		build/obj/llhttp_llhttp.o build/obj/llhttp_api.o build/obj/llhttp_http.o $(LDLIBS)

format:
	clang-format -i src/*.c src/*.h tests/unit/*.c tests/unit/*.h

clean:
	rm -rf build build-asan
