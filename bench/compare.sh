#!/usr/bin/env bash
# qufop's built-in image path against imgproxy (issue 12), side by side in
# one run on loopback: the same images, the same requests (size, fit, output
# format and quality), wrk -t2 -c8 against each in turn, rounds alternating
# which goes first. imgproxy comes from PATH (build v4.0.12 from its public
# source for this; it is not part of the project); without it the script
# says so and exits 0.
#
#   bash bench/compare.sh
#   ROUNDS=5 DURATION=10s bash bench/compare.sh
#   QUFOP_FLAGS="--workers 4" bash bench/compare.sh   # more flags for qufop dev
#   ONLY='png|w800' bash bench/compare.sh            # some workloads only
#
# Per workload it reports the median over the rounds of qufop's throughput
# divided by imgproxy's (goal: >= 1.1), both p99s, the result's bytes, and
# at the end both servers' peak RSS (VmHWM). Each server runs with its own
# defaults: qufop one worker per core, imgproxy two.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
QPORT=${QPORT:-18181}
IPORT=${IPORT:-18182}
for tool in wrk curl; do
  command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done
if ! command -v imgproxy >/dev/null; then
  echo "bench/compare.sh: skipped: imgproxy is not on PATH (build imgproxy v4.0.12 from its public source, main package ./cli, and put it on PATH)"
  exit 0
fi

bin=${QUFOP_BIN:-./bin/qufop}
[ -n "${QUFOP_BIN:-}" ] || make -s build
work=$(mktemp -d)
mkdir -p "$work/img"
for f in storm-1920x1080.jpg kleiber-6028x3391.jpg mate-stripes-dark-1920x1440.png; do
  cp "testdata/images/$f" "$work/img/"
done

"$bin" dev --quiet --no-docker --data "$work/data" --listen "127.0.0.1:$QPORT" --bucket "img=$work/img" ${QUFOP_FLAGS:-} >"$work/qufop.log" 2>&1 &
qpid=$!
IMGPROXY_BIND=127.0.0.1:$IPORT IMGPROXY_LOCAL_FILESYSTEM_ROOT=$work/img IMGPROXY_LOG_LEVEL=error \
  imgproxy >"$work/imgproxy.log" 2>&1 &
ipid=$!
# alive PID: false, after saying which server died, how, and the end of its
# output, when PID is no longer running.
alive() {
  kill -0 "$1" 2>/dev/null && return 0
  local name=qufop st=0
  [ "$1" = "$ipid" ] && name=imgproxy
  wait "$1" 2>/dev/null || st=$?
  local kept=/tmp/compare-$name-$1.log
  cp "$work/$name.log" "$kept"
  echo "bench: $name (pid $1) died (exit status $st; 128+n is signal n); its whole output is in $kept; the start of a crash:" >&2
  grep -m1 -A30 -E '^(panic|fatal error|SIG[A-Z]+)' "$kept" >&2 || tail -n 40 "$kept" >&2
  return 1
}
cleanup() {
  for p in $qpid $ipid; do
    alive "$p" || true
  done
  kill $qpid $ipid 2>/dev/null || true
  wait $qpid $ipid 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 200); do
  curl -fsS "http://127.0.0.1:$QPORT/health" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$IPORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

# name | qufop path | imgproxy path: the same output on both.
workloads=(
  "jpeg-w200|/img/storm-1920x1080.jpg?imageView2/2/w/200/q/75|/insecure/rs:fit:200:0/q:75/plain/local:///storm-1920x1080.jpg@jpg"
  "jpeg-w800|/img/storm-1920x1080.jpg?imageView2/2/w/800/q/75|/insecure/rs:fit:800:0/q:75/plain/local:///storm-1920x1080.jpg@jpg"
  "jpeg-20mp-w200|/img/kleiber-6028x3391.jpg?imageView2/2/w/200/q/75|/insecure/rs:fit:200:0/q:75/plain/local:///kleiber-6028x3391.jpg@jpg"
  "png-w200|/img/mate-stripes-dark-1920x1440.png?imageView2/2/w/200|/insecure/rs:fit:200:0/plain/local:///mate-stripes-dark-1920x1440.png@png"
)

# ONLY (a regular expression) keeps the workloads whose name matches it.
if [ -n "${ONLY:-}" ]; then
  kept=()
  for w in "${workloads[@]}"; do [[ ${w%%|*} =~ $ONLY ]] && kept+=("$w"); done
  workloads=("${kept[@]}")
fi

# check NAME URL: one request; prints "status size WxH".
check() {
  curl -s -o "$work/out" -w '%{http_code} %{size_download}' "$2"
  printf ' %s\n' "$(vipsheader "$work/out" 2>/dev/null | awk '{print $2}' || echo '?')"
}
echo "date: $(date -u +%Y-%m-%d), imgproxy $(imgproxy version 2>/dev/null || echo '?'), libvips $(vips --version 2>/dev/null | head -1), $ROUNDS rounds of wrk -t$THREADS -c$CONNS -d$DURATION per server and workload"
for w in "${workloads[@]}"; do
  IFS='|' read -r name qp ip <<<"$w"
  q=$(check "$name" "http://127.0.0.1:$QPORT$qp")
  i=$(check "$name" "http://127.0.0.1:$IPORT$ip")
  echo "$name: qufop $q; imgproxy $i" | tee -a "$work/checks.txt"
  echo "$name $(echo "$q" | awk '{print $2}') $(echo "$i" | awk '{print $2}')" >>"$work/bytes.txt"
  # Warm-up of both.
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$QPORT$qp" >/dev/null
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$IPORT$ip" >/dev/null
done

run() { # URL -> "rps p99(ms) non2xx"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" | awk '
    /^Requests\/sec:/ {rps=$2}
    $1=="99%" {v=$2; if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; p99=v}
    /Non-2xx/ {bad=$NF}
    END {printf "%s %s %s\n", rps, p99, bad+0}'
}
for r in $(seq "$ROUNDS"); do
  for w in "${workloads[@]}"; do
    IFS='|' read -r name qp ip <<<"$w"
    if [ $((r % 2)) -eq 1 ]; then
      qo=$(run "http://127.0.0.1:$QPORT$qp"); io=$(run "http://127.0.0.1:$IPORT$ip")
    else
      io=$(run "http://127.0.0.1:$IPORT$ip"); qo=$(run "http://127.0.0.1:$QPORT$qp")
    fi
    # A dead server makes the ratios meaningless: stop with its output.
    alive "$qpid" && alive "$ipid" || exit 1
    read -r qrps qp99 qbad <<<"$qo"
    read -r irps ip99 ibad <<<"$io"
    ratio=$(awk -v a="$qrps" -v b="$irps" 'BEGIN {printf "%.3f", a/b}')
    echo "$name $ratio $qrps $irps $qp99 $ip99 $qbad $ibad" >>"$work/rounds.txt"
    printf 'round %d %-15s qufop %8.1f req/s p99 %6.1f ms | imgproxy %8.1f req/s p99 %6.1f ms | ratio %s%s\n' \
      "$r" "$name" "$qrps" "$qp99" "$irps" "$ip99" "$ratio" "$( [ "$qbad$ibad" = 00 ] || echo " (non-2xx: qufop $qbad, imgproxy $ibad)")"
  done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) printf "%.3f", a[(NR+1)/2]; else printf "%.3f", (a[NR/2]+a[NR/2+1])/2}'; }
echo
printf '%-15s %-22s %-10s %-22s %-22s %s\n' workload "ratio (median, rounds)" goal "p99 ms qufop/imgproxy" "bytes qufop/imgproxy" "bytes ratio"
for w in "${workloads[@]}"; do
  IFS='|' read -r name _ _ <<<"$w"
  med=$(awk -v n="$name" '$1==n {print $2}' "$work/rounds.txt" | median)
  all=$(awk -v n="$name" '$1==n {print $2}' "$work/rounds.txt" | paste -sd, -)
  qp=$(awk -v n="$name" '$1==n {print $5}' "$work/rounds.txt" | median)
  ipp=$(awk -v n="$name" '$1==n {print $6}' "$work/rounds.txt" | median)
  read -r _ qb ib <<<"$(awk -v n="$name" '$1==n' "$work/bytes.txt")"
  printf '%-15s %-22s %-10s %-22s %-22s %s\n' "$name" "$med ($all)" ">= 1.1" "$qp / $ipp" "$qb / $ib" "$(awk -v a="$qb" -v b="$ib" 'BEGIN {printf "%.3f", a/b}')"
done
alive "$qpid" && alive "$ipid" || exit 1
qh=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$qpid/status)
ih=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$ipid/status)
echo "peak RSS (VmHWM): qufop $qh MB, imgproxy $ih MB"
