#!/usr/bin/env bash
# Headline image benchmark (issue 2): imageView2/2/w/200 on the 1920x1080
# JPEG at quality 75, served by `qufop dev` on loopback under wrk, against raw
# libvips (thumbnail_buffer + jpegsave in-process, Go benchmark) measured in
# the same run. Prints both figures, their ratio and the gateway's peak RSS.
#
#   bash bench/run.sh            # defaults: wrk -t2 -c8 -d30s
#   DURATION=60s CONNS=8 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
PORT=${PORT:-18080}
BENCHTIME=${BENCHTIME:-10s}
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

make -s build
data=$(mktemp -d)
log=$(mktemp)
./bin/qufop dev --quiet --data "$data" --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data" "$log"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
url="http://127.0.0.1:$PORT/demo/sample.jpg?imageView2/2/w/200"
curl -fsS -o /dev/null -w 'check: %{http_code} %{content_type} %{size_download} bytes\n' "$url"

echo "== raw libvips in-process (go test -bench, GOMAXPROCS=2, $BENCHTIME)"
raw=$(go test ./fop/image/vips -run='^$' -bench='^BenchmarkRawThumbnailJPEG$' -benchtime="$BENCHTIME" -cpu=2 | tee /dev/stderr |
  awk '/^BenchmarkRawThumbnailJPEG/ { for (i=1;i<=NF;i++) if ($i=="ns/op") print 1e9/$(i-1) }')

echo "== gateway: wrk -t$THREADS -c$CONNS -d$DURATION $url"
wrk -t"$THREADS" -c"$CONNS" -d5s "$url" >/dev/null   # warm-up
out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url")
echo "$out"
rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
rss=$(awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$pid/status")

echo
printf 'date:            %s\n' "$(date -u +%Y-%m-%d)"
printf 'raw libvips:     %.1f ops/s\n' "$raw"
printf 'gateway:         %.1f req/s (non-2xx: %s)\n' "$rps" "${errors:-0}"
printf 'ratio:           %s (goal >= 0.9)\n' "$(awk -v a="$rps" -v b="$raw" 'BEGIN {printf "%.3f", a/b}')"
printf 'gateway peak RSS: %s MB (goal < 160)\n' "$rss"
