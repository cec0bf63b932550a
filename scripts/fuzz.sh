#!/bin/sh
# `make fuzz`: runs each fuzz target for SECONDS over its seed corpus
# (tests/fuzz/corpus/TARGET) and what earlier runs found (build-fuzz/corpus/TARGET).
# A crash or a broken property leaves its input in build-fuzz/crashes/ and
# fails the run: copy the input into tests/fuzz/corpus/TARGET/ so that
# `make test` replays it, and add a test for the bug.
#     sh scripts/fuzz.sh SECONDS TARGET...
set -u
seconds=$1
shift
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
[ -x /usr/bin/llvm-symbolizer-14 ] && export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14
mkdir -p build-fuzz/crashes
failed=""
for t in "$@"; do
	mkdir -p "build-fuzz/corpus/$t"
	dict=""
	[ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
	echo "fuzz: $t for ${seconds}s"
	# shellcheck disable=SC2086
	if ! "build-fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 \
		-print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$t-" $dict \
		"build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"build-fuzz/$t.log" 2>&1; then
		failed="$failed $t"
		tail -n 60 "build-fuzz/$t.log"
	fi
	grep -E "^stat::number_of_executed_units|^Done|^INFO: seed corpus" "build-fuzz/$t.log" | sed "s/^/  $t: /"
done
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed (inputs in build-fuzz/crashes/, logs in build-fuzz/)" >&2
	exit 1
fi
echo "fuzz: every target ran ${seconds}s without a crash or a broken property"
