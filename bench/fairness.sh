#!/usr/bin/env bash
# Fairness benchmark (issue 11), on `qufop dev` (no Docker needed: built-in
# commands only), all on loopback: a free user floods the gateway with wrk
# (CONNS connections) on its own bucket while a paid user sends a steady
# RATE requests a second on its bucket; both ask imageView2/2/w/200 of the
# same real JPEG. The free class is limited to FREE_RPS requests a second
# (burst the same); the paid class has no limit. Needs wrk and curl.
#
#   bash bench/fairness.sh
#   FLOOD=60 IDLE=30 CONNS=32 FREE_RPS=50 bash bench/fairness.sh
#
# It reports the paid user's p50/p99 on the idle gateway and under the
# flood (and their ratio; goal: p99 within 2x, no failure), the free user's
# answers by status, the p99 of the free user's refusals (573/503) measured
# by a probe during the flood (goal: under 10 ms), and the gateway's peak
# RSS (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."

FLOOD=${FLOOD:-30}
IDLE=${IDLE:-20}
CONNS=${CONNS:-32}
RATE=${RATE:-5}
FREE_RPS=${FREE_RPS:-50}
PORT=${PORT:-18093}
for tool in wrk curl; do
  command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

bin=${QUFOP_BIN:-./bin/qufop}
[ -n "${QUFOP_BIN:-}" ] || make -s build
work=$(mktemp -d)
mkdir -p "$work/free" "$work/paid"
cp platform/sample/sample.jpg "$work/free/a.jpg"
cp platform/sample/sample.jpg "$work/paid/a.jpg"
export QUFOP_ADDR=http://127.0.0.1:$PORT QUFOP_ACCESS_KEY=AK_BENCH QUFOP_SECRET_KEY=SK_BENCH_SECRET
export QUFOP_CONFIG=$work/cli.json
"$bin" dev --quiet --no-docker --data "$work/data" --listen "127.0.0.1:$PORT" >"$work/dev.log" 2>&1 &
pid=$!
cleanup() {
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fsS "$QUFOP_ADDR/health" >/dev/null 2>&1 && break; sleep 0.1; done

"$bin" user add bench-free --class free >/dev/null
"$bin" user add bench-paid --class paid >/dev/null
"$bin" bucket add fb --dir "$work/free" --owner bench-free >/dev/null
"$bin" bucket add pb --dir "$work/paid" --owner bench-paid >/dev/null
"$bin" class limits free --rps "$FREE_RPS" --burst "$FREE_RPS" >/dev/null
free_url="$QUFOP_ADDR/fb/a.jpg?imageView2/2/w/200"
paid_url="$QUFOP_ADDR/pb/a.jpg?imageView2/2/w/200"
# The buckets are served within a second of their records.
for _ in $(seq 50); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$paid_url")" = 200 ] && break; sleep 0.1; done

# steady FILE SECONDS: RATE requests a second on the paid bucket; one line
# "status seconds" per request.
steady() {
  local out=$1 secs=$2 gap end
  gap=$(awk -v r="$RATE" 'BEGIN {printf "%.3f", 1/r}')
  end=$(( $(date +%s) + secs ))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$paid_url" >>"$out" &
    sleep "$gap"
  done
  wait
}
pct() { # FILE P: the P-th percentile of column 2 of FILE, in ms
  sort -n -k2 "$1" | awk -v p="$2" '{a[NR]=$2} END {i=int(NR*p/100+0.999); if (i<1) i=1; printf "%.1f", a[i]*1000}'
}

echo "== paid user alone: $RATE req/s for ${IDLE}s"
(steady "$work/idle.txt" "$IDLE") # a subshell: its wait is for its own curls

cat >"$work/status.lua" <<'LUA'
-- Each wrk thread counts in its own Lua state; done() adds them up.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() counts = {} end
function response(status) counts[status] = (counts[status] or 0) + 1 end
function done()
  local total = {}
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get("counts")) do total[s] = (total[s] or 0) + n end
  end
  for s, n in pairs(total) do io.write(string.format("status %d: %d\n", s, n)) end
end
LUA
echo "== free flood (wrk -t2 -c$CONNS -d${FLOOD}s, free class at $FREE_RPS req/s) with the paid user's $RATE req/s"
wrk -t2 -c"$CONNS" -d"${FLOOD}s" --latency -s "$work/status.lua" "$free_url" >"$work/wrk.txt" 2>&1 &
wrkpid=$!
sleep 1
(steady "$work/flood.txt" $((FLOOD - 3))) &
steadypid=$!
# Probe: the free user's own requests during the flood, one at a time,
# until the flood ends.
end=$(( $(date +%s) + FLOOD - 3 ))
while [ "$(date +%s)" -lt "$end" ]; do
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$free_url" >>"$work/probe.txt"
done
wait $steadypid
wait $wrkpid
grep -E '^(573|503) ' "$work/probe.txt" >"$work/refused.txt" || true

hwm=$(awk '/VmHWM/ {print $2/1024}' /proc/$pid/status)
paid_fail=$(awk '$1 != 200' "$work/flood.txt" | wc -l)
echo
printf 'date:                      %s\n' "$(date -u +%Y-%m-%d)"
printf 'paid idle p50/p99:         %s / %s ms (%d requests)\n' "$(pct "$work/idle.txt" 50)" "$(pct "$work/idle.txt" 99)" "$(wc -l <"$work/idle.txt")"
printf 'paid flood p50/p99:        %s / %s ms (%d requests, %d not 200)\n' "$(pct "$work/flood.txt" 50)" "$(pct "$work/flood.txt" 99)" "$(wc -l <"$work/flood.txt")" "$paid_fail"
printf 'paid p99 flood / idle:     %s (goal <= 2)\n' "$(awk -v a="$(pct "$work/flood.txt" 99)" -v b="$(pct "$work/idle.txt" 99)" 'BEGIN {printf "%.2f", a/b}')"
printf 'free (wrk) answers:        %s\n' "$(grep '^status' "$work/wrk.txt" | tr '\n' ' ')"
printf 'free (wrk) requests/sec:   %s\n' "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
if [ -s "$work/refused.txt" ]; then
  printf 'free refusals p50/p99:     %s / %s ms (%d of %d probes refused; goal p99 < 10 ms)\n' "$(pct "$work/refused.txt" 50)" "$(pct "$work/refused.txt" 99)" "$(wc -l <"$work/refused.txt")" "$(wc -l <"$work/probe.txt")"
else
  printf 'free refusals:             none of %d probes refused\n' "$(wc -l <"$work/probe.txt")"
fi
printf 'gateway peak RSS:          %.0f MB\n' "$hwm"
