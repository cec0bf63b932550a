#!/bin/sh
# `make run`: two demo backends on 127.0.0.1:9001 and :9002, and sluice on
# 127.0.0.1:8080 in front of them with its embedded default config.
# Ctrl-C stops all three.
set -u
sluice=${1:-build/sluice}
pids=""
cleanup() {
	trap - INT TERM EXIT
	[ -n "$pids" ] && kill $pids 2>/dev/null
	wait 2>/dev/null
	exit 0
}
trap cleanup INT TERM EXIT
for port in 9001 9002; do
	fifo=$(mktemp -u)
	mkfifo "$fifo"
	python3 tests/integration/backend.py --port $port --name "demo-$port" >"$fifo" &
	pids="$pids $!"
	# The backend says "ready" once it listens.
	head -n 1 "$fifo" >/dev/null
	rm -f "$fifo"
done
cat <<MSG

sluice is starting on http://127.0.0.1:8080 in front of demo backends on :9001 and :9002.
Try:
  curl -i http://127.0.0.1:8080/
  curl -s http://127.0.0.1:8080/headers
  curl -s -o /dev/null -w '%{http_code} %{size_download}\n' http://127.0.0.1:8080/size/1000000
Ctrl-C stops everything.

MSG
"$sluice" &
pids="$pids $!"
wait $!
