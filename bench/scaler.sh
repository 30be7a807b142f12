#!/usr/bin/env bash
# Scaler benchmark (issue 9), on the embedded default (`qufop dev`, real
# Docker): a slow UFOP (ufop-demo sleep/200: 200 ms a step, concurrency 2)
# at 1 instance with the policy min 1, max 4, target 2; then 8 concurrent
# clients (wrk) for BURST seconds, then none for IDLE seconds. The same
# burst then runs on a fixed count of 4 (no policy) for comparison. All on
# loopback. Needs dockerd and the registry (bash .ci/services.sh), wrk, curl
# and jq.
#
#   bash bench/scaler.sh                     # 60 s burst, 90 s idle, 1 round
#   ROUNDS=3 BURST=30 IDLE=60 bash bench/scaler.sh
#
# It reports, per round: seconds from the burst's start until the work per
# healthy instance is back under the target, the scale actions (up, down,
# skipped), p50/p99 during the burst against the fixed count of 4, failed
# requests, and seconds from the burst's end until the count is back at
# min; and the seconds from the first waiting step to the first scale-up
# the scaler recorded.
set -euo pipefail
cd "$(dirname "$0")/.."

BURST=${BURST:-60}
IDLE=${IDLE:-90}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-18092}
CONNS=${CONNS:-8}
for tool in wrk docker curl jq; do
  command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

make -s build
make -s -C examples/ufop-demo tar >/dev/null
work=$(mktemp -d)
mkdir -p "$work/bucket" "$work/src"
echo hello > "$work/bucket/small.txt"
tar -xf examples/ufop-demo/build/ufop-demo.tar -C "$work/src"
sed -i 's/^concurrency: .*/concurrency: 2/' "$work/src/ufop.yaml"
tar -cf "$work/slow.tar" -C "$work/src" .
export QUFOP_ADDR=http://127.0.0.1:$PORT QUFOP_ACCESS_KEY=AK_BENCH QUFOP_SECRET_KEY=SK_BENCH_SECRET
export QUFOP_CONFIG=$work/cli.json
./bin/qufop dev --quiet --data "$work/data" --listen "127.0.0.1:$PORT" --bucket "files=$work/bucket" \
  >"$work/dev.log" 2>&1 &  # the admin keys come from the exported QUFOP_ACCESS_KEY/QUFOP_SECRET_KEY
pid=$!
name=bench-slow-$$
sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  ./bin/qufop unreg "$name" >/dev/null 2>&1 || true
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fsS "$QUFOP_ADDR/health" >/dev/null 2>&1 && break; sleep 0.1; done

./bin/qufop reg "$name" >/dev/null
./bin/qufop build "$name" -f "$work/slow.tar" >/dev/null
./bin/qufop chver "$name" -c 1 >/dev/null
url="$QUFOP_ADDR/files/small.txt?$name/sleep/200"

now() { date +%s.%N; }
healthy() { ./bin/qufop state "$name" --json | jq '[.instances[] | select(.healthy)] | length'; }
wait_healthy() { # n
  for _ in $(seq 1200); do [ "$(healthy)" = "$1" ] && return 0; sleep 0.1; done
  echo "bench: $name never had $1 healthy instances" >&2; exit 1
}
# sample: every 0.2 s, the time and the UFOP's figures from /metrics.
sample() {
  while :; do
    local t; t=$(now)
    curl -fsS "$QUFOP_ADDR/metrics" 2>/dev/null | awk -v t="$t" -v u="ufop=\"$name\"" '
      index($0, u) && /^qufop_gateway_ufop_queue_length/ {q=$2}
      index($0, u) && /^qufop_gateway_ufop_in_flight/ {f=$2}
      index($0, u) && /^qufop_gateway_ufop_healthy_instances/ {h=$2}
      END {print t, q+0, f+0, h+0}'
    sleep 0.2
  done
}
wrkrun() { # seconds -> "p50 p99 requests failed"
  local out; out=$(wrk -t2 -c"$CONNS" -d"$1"s --latency "$url")
  local p50 p99 n bad
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  bad=$(echo "$out" | awk '/Non-2xx/ {s+=$NF} /Socket errors/ {gsub(/,/, ""); s+=$4+$6+$8+$10} END {print s+0}')
  echo "$p50 $p99 $n $bad"
}
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v*1000 } }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== $name: sleep/200, concurrency 2; policy min 1 max 4 target 2 (defaults: interval 2s, up-cooldown 2s, down-cooldown 15s, down-window 30s)"
echo "== $CONNS clients for ${BURST}s, then idle ${IDLE}s; then the same burst on a fixed count of 4"
r_under=(); r_react=(); r_back=(); r_p99ratio=(); r_fail=()
for round in $(seq "$ROUNDS"); do
  ./bin/qufop scale-policy "$name" --off >/dev/null 2>&1 || true
  ./bin/qufop resize "$name" -n 1 >/dev/null
  wait_healthy 1
  ./bin/qufop scale-policy "$name" --min 1 --max 4 --target 2 >/dev/null
  curl -fsS "$url" >/dev/null
  sample > "$work/samples.$round" &
  sampler=$!
  t0=$(now)
  read -r p50 p99 n bad < <(wrkrun "$BURST")
  t1=$(now)
  sleep "$IDLE"
  kill $sampler; wait $sampler 2>/dev/null || true; sampler=""
  # This round's events only (the history keeps the last 20 across rounds).
  info=$(./bin/qufop info "$name" --json | jq --arg t0 "$t0" '[.scale_history[]? | select((.time | sub("\\.[0-9]+"; "") | fromdateiso8601) >= ($t0 | tonumber | floor))]')
  ups=$(echo "$info" | jq '[.[] | select(.by=="scaler" and (.skipped|not) and .to>.from)] | length')
  downs=$(echo "$info" | jq '[.[] | select(.by=="scaler" and (.skipped|not) and .to<.from)] | length')
  skips=$(echo "$info" | jq '[.[] | select(.skipped)] | length')
  first_up=$(echo "$info" | jq -r '[.[] | select(.by=="scaler" and .to>.from)][0].time // empty')
  seq_=$(echo "$info" | jq -r '[.[] | select(.by=="scaler" and (.skipped|not)) | "\(.from)->\(.to)"] | join(" ")')
  # From the samples: the first waiting step, when work per healthy
  # instance is back at the target, and when the count is back at 1.
  read -r first_wait under back < <(awk -v t0="$t0" -v t1="$t1" '
    $1 >= t0 && fw == "" && $2 > 0 {fw = $1}
    $1 >= t0 && fw != "" && un == "" && $4 > 0 && ($2 + $3) / $4 <= 2 && $2 == 0 {un = $1}
    $1 >= t1 && $4 != 1 {bk = ""}
    $1 >= t1 && $4 == 1 && bk == "" {bk = $1}
    END {print (fw == "" ? t0 : fw), (un == "" ? -1 : un - t0), (bk == "" ? -1 : bk - t1)}' "$work/samples.$round")
  react=-1
  if [ -n "$first_up" ]; then
    react=$(awk -v a="$(date -d "$first_up" +%s.%N)" -v b="$first_wait" 'BEGIN {printf "%.2f", a-b}')
  fi
  # The same burst on a fixed count of 4.
  ./bin/qufop scale-policy "$name" --off >/dev/null
  ./bin/qufop resize "$name" -n 4 >/dev/null
  wait_healthy 4
  read -r fp50 fp99 fn fbad < <(wrkrun "$BURST")
  ratio=$(awk -v a="$(ms "$p99")" -v b="$(ms "$fp99")" 'BEGIN {printf "%.2f", a/b}')
  printf 'round %d: scaled %s (up %s, down %s, skipped %s); first scale-up %ss after the first waiting step; work/instance under target after %.1fs; back at min %.1fs after the burst\n' \
    "$round" "$seq_" "$ups" "$downs" "$skips" "$react" "$under" "$back"
  printf '         burst with the scaler: %s requests, failed %s, p50 %s, p99 %s; fixed 4: %s requests, failed %s, p50 %s, p99 %s; p99 ratio %s\n' \
    "$n" "$bad" "$p50" "$p99" "$fn" "$fbad" "$fp50" "$fp99" "$ratio"
  r_under+=("$under"); r_react+=("$react"); r_back+=("$back"); r_p99ratio+=("$ratio"); r_fail+=("$bad")
done
echo
printf 'date:                                  %s\n' "$(date -u +%Y-%m-%d)"
printf 'first scale-up after the first wait:   %s s (median; goal <= 1 s)\n' "$(median "${r_react[@]}")"
printf 'work per instance back under target:   %s s (median)\n' "$(median "${r_under[@]}")"
printf 'p99 with the scaler / fixed 4:         %s (median; goal <= 2)\n' "$(median "${r_p99ratio[@]}")"
printf 'failed requests:                       %s (per round; goal 0)\n' "${r_fail[*]}"
printf 'back at min after the burst:           %s s (median)\n' "$(median "${r_back[@]}")"
