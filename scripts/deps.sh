#!/bin/sh
# Installs the Debian packages sluice needs that are missing: `deps.sh build|test|bench|fuzz|scan|tsan|layers`.
set -eu
build="gcc libc6-dev make libluajit-5.1-dev libssl-dev libcjson-dev libnghttp2-dev node-llhttp"
test="python3 python3-pytest python3-pytest-forked curl openssl procps chromium python3-prometheus-client
	nghttp2-client python3-h2 python3-hyperframe python3-hpack libnss3-tools"
bench="haproxy nginx wrk util-linux"
fuzz="clang libclang-rt-14-dev llvm-14"
scan="testssl.sh"
tsan="libtsan2"
layers="python3"
case "${1:-build}" in
build) want="$build" ;;
test) want="$build $test" ;;
bench) want="$build $test $bench" ;;
fuzz) want="$build $fuzz" ;;
scan) want="$build $test $scan" ;;
tsan) want="$build $test $tsan" ;;
layers) want="$layers" ;;
*) echo "usage: deps.sh build|test|bench|fuzz|scan|tsan|layers" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing missing Debian packages:$missing"
if [ "$(id -u)" != 0 ]; then
	echo "not root: run as root, or install them yourself: apt-get install$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
