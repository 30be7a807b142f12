#!/usr/bin/env bash
# Headline image benchmark (issue 2): imageView2/2/w/200 on the 1920x1080
# JPEG at quality 75, served by `qufop dev` on loopback under wrk, against raw
# libvips (imgproxy's pipeline in process: shrink-on-load, lanczos3 reduce, jpegsave;
# Go benchmark BenchmarkRawPipelineJPEG) measured in
# the same run. Prints both figures, their ratio and the gateway's peak RSS.
#
#   bash bench/run.sh            # 3 rounds of: raw 5s, then wrk -t2 -c8 -d15s
#   ROUNDS=5 DURATION=30s bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
PORT=${PORT:-18080}
BENCHTIME=${BENCHTIME:-5s}
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

make -s build
data=$(mktemp -d)
log=$(mktemp)
./bin/qufop dev --quiet ${DEV_ARGS:-} --data "$data" --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data" "$log"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
url="http://127.0.0.1:$PORT/demo/sample.jpg?imageView2/2/w/200/q/75"
curl -fsS -o /dev/null -w 'check: %{http_code} %{content_type} %{size_download} bytes\n' "$url"

# Rounds alternate the two measurements, so that a drift of the machine's
# speed (these machines are noisy) hits both; the ratio is taken per round
# and the median reported.
ROUNDS=${ROUNDS:-3}
wrk -t"$THREADS" -c"$CONNS" -d5s "$url" >/dev/null   # warm-up
ratios=(); raws=(); rpss=()
for round in $(seq "$ROUNDS"); do
  raw=$(go test ./fop/image/vips -run='^$' -bench='^BenchmarkRawPipelineJPEG$' -benchtime="$BENCHTIME" -cpu=2 |
    awk '/^BenchmarkRawPipelineJPEG/ { for (i=1;i<=NF;i++) if ($i=="ns/op") print 1e9/$(i-1) }')
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url")
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}'); p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  ratio=$(awk -v a="$rps" -v b="$raw" 'BEGIN {printf "%.3f", a/b}')
  printf 'round %d: raw libvips %.1f ops/s, gateway %.1f req/s (p50 %s, p99 %s, non-2xx %s), ratio %s\n' \
    "$round" "$raw" "$rps" "$p50" "$p99" "${errors:-0}" "$ratio"
  ratios+=("$ratio"); raws+=("$raw"); rpss+=("$rps")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rss=$(awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
echo
printf 'date:             %s\n' "$(date -u +%Y-%m-%d)"
printf 'raw libvips:      %s ops/s (median of %d rounds of %s)\n' "$(median "${raws[@]}")" "$ROUNDS" "$BENCHTIME"
printf 'gateway:          %s req/s (median of %d rounds of wrk -t%s -c%s -d%s)\n' "$(median "${rpss[@]}")" "$ROUNDS" "$THREADS" "$CONNS" "$DURATION"
printf 'ratio:            %s (median of the per-round ratios; goal >= 0.9)\n' "$(median "${ratios[@]}")"
printf 'gateway peak RSS: %s MB (goal < 160)\n' "$rss"
