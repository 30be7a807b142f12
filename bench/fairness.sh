#!/usr/bin/env bash
# Fairness benchmark (issue 11), on `qufop dev` (no Docker needed: built-in
# commands only), all on loopback: a free user floods the gateway with wrk
# (CONNS connections) on its own bucket while a paid user sends a steady
# RATE requests a second on its bucket; both ask imageView2/2/w/200 of the
# same real JPEG. The free class is limited to FREE_RPS requests a second
# (burst the same); the paid class has no limit. Needs wrk and curl.
#
#   bash bench/fairness.sh
#   ROUNDS=5 FLOOD=60 IDLE=30 CONNS=32 FREE_RPS=50 bash bench/fairness.sh
#
# ROUNDS rounds alternate the paid user alone (IDLE seconds) and the paid
# user beside the flood (FLOOD seconds), so that both see the same machine.
# Each round reports the paid user's p50/p99 alone and under the flood
# (goal: p99 within 2x, no failure), the free user's answers by status and
# the p99 of the free user's refusals (573/503) measured by a probe of
# PROBE_RATE (20) requests a second during the flood (goal: under 10 ms); the summary gives the median of the
# rounds' ratios and refusal p99s, and the gateway's peak RSS (VmHWM).
#
# wrk runs at nice FLOOD_NICE (19): it stands in for clients on other
# machines, whose CPU is not the gateway's. On one 2-core machine a wrk at
# normal priority takes most of a core from the gateway, which no remote
# client can; FLOOD_NICE=0 measures that case too. The paid user's curls
# and the probe run at normal priority. DEV_FLAGS are more flags for
# `qufop dev` (DEV_FLAGS="--paid-reserve 0": no worker kept for paid work).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
FLOOD=${FLOOD:-30}
IDLE=${IDLE:-20}
FLOOD_NICE=${FLOOD_NICE:-19}
PROBE_RATE=${PROBE_RATE:-20}
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
"$bin" dev --quiet --no-docker --data "$work/data" --listen "127.0.0.1:$PORT" ${DEV_FLAGS:-} >"$work/dev.log" 2>&1 &
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
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) printf "%.2f", a[(NR+1)/2]; else printf "%.2f", (a[NR/2]+a[NR/2+1])/2}'; }

printf 'date: %s, %d rounds of %ds alone + %ds flood (wrk -t2 -c%d at nice %d, free class at %s req/s), paid at %s req/s\n' \
  "$(date -u +%Y-%m-%d)" "$ROUNDS" "$IDLE" "$FLOOD" "$CONNS" "$FLOOD_NICE" "$FREE_RPS" "$RATE"
paid_fail=0
for r in $(seq "$ROUNDS"); do
  d=$work/r$r
  mkdir -p "$d"
  (steady "$d/idle.txt" "$IDLE") # a subshell: its wait is for its own curls
  nice -n "$FLOOD_NICE" wrk -t2 -c"$CONNS" -d"${FLOOD}s" --latency -s "$work/status.lua" "$free_url" >"$d/wrk.txt" 2>&1 &
  wrkpid=$!
  sleep 1
  (steady "$d/flood.txt" $((FLOOD - 3))) &
  steadypid=$!
  # Probe: the free user's own requests during the flood, PROBE_RATE a
  # second on one kept-alive connection (one curl: a curl process per
  # probe would take the paid user's CPU), until the flood ends.
  for _ in $(seq $((PROBE_RATE * (FLOOD - 3)))); do printf 'url = "%s"\noutput = "/dev/null"\n' "$free_url"; done >"$d/probe.cfg"
  curl -s --rate "$PROBE_RATE/s" -w '%{http_code} %{time_total}\n' -K "$d/probe.cfg" >"$d/probe.txt"
  wait $steadypid
  wait $wrkpid
  grep -E '^(573|503) ' "$d/probe.txt" >"$d/refused.txt" || true
  fail=$(awk '$1 != 200' "$d/flood.txt" "$d/idle.txt" | wc -l)
  paid_fail=$((paid_fail + fail))
  ratio=$(awk -v a="$(pct "$d/flood.txt" 99)" -v b="$(pct "$d/idle.txt" 99)" 'BEGIN {printf "%.2f", a/b}')
  echo "$ratio" >>"$work/ratios.txt"
  refp99=nan
  [ -s "$d/refused.txt" ] && refp99=$(pct "$d/refused.txt" 99) && echo "$refp99" >>"$work/refusals.txt"
  printf 'round %d: paid alone p50/p99 %s / %s ms (%d), flood %s / %s ms (%d, %d not 200): ratio %s; free %s req/s, %s; refusals p99 %s ms (%d of %d probes)\n' \
    "$r" "$(pct "$d/idle.txt" 50)" "$(pct "$d/idle.txt" 99)" "$(wc -l <"$d/idle.txt")" \
    "$(pct "$d/flood.txt" 50)" "$(pct "$d/flood.txt" 99)" "$(wc -l <"$d/flood.txt")" "$fail" "$ratio" \
    "$(awk '/Requests\/sec/ {print $2}' "$d/wrk.txt")" "$(grep '^status' "$d/wrk.txt" | sort | tr '\n' ' ' | sed 's/ $//')" \
    "$refp99" "$(wc -l <"$d/refused.txt")" "$(wc -l <"$d/probe.txt")"
done

hwm=$(awk '/VmHWM/ {print $2/1024}' /proc/$pid/status)
echo
printf 'paid p99 flood / alone:    median %s of %d rounds (goal <= 2), %d paid requests not 200 (goal 0)\n' "$(median <"$work/ratios.txt")" "$ROUNDS" "$paid_fail"
if [ -s "$work/refusals.txt" ]; then
  printf 'free refusals p99:         median %s ms (goal < 10 ms)\n' "$(median <"$work/refusals.txt")"
else
  printf 'free refusals:             none of the probes was refused\n'
fi
printf 'gateway peak RSS:          %.0f MB\n' "$hwm"
