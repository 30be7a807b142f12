#!/usr/bin/env bash
# Peak memory of the gateway per class of image operation (issue 12): each
# class runs in a `qufop dev` of its own (so each VmHWM is that class's),
# on the 6028x3391 (20 MP) JPEG, under wrk -t2 -c8 for DURATION, with the
# default two workers. Loopback only.
#
#   bash bench/memory.sh
#   DURATION=20s QUFOP_FLAGS="--whole-image-budget 134217728" bash bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
PORT=${PORT:-18191}
command -v wrk >/dev/null || { echo "bench: wrk is not installed" >&2; exit 1; }
bin=${QUFOP_BIN:-./bin/qufop}
[ -n "${QUFOP_BIN:-}" ] || make -s build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/img"
cp testdata/images/kleiber-6028x3391.jpg "$work/img/k.jpg"

classes=(
  "idle|"
  "streaming resize (imageView2 w200, shrink-on-load)|imageView2/2/w/200"
  "streaming resize, large output (imageMogr2 thumbnail 3000x)|imageMogr2/thumbnail/3000x"
  "streaming filter (imageMogr2 blur 20x8, then thumbnail)|imageMogr2/blur/20x8/thumbnail/1000x"
  "whole image (imageMogr2 rotate 90)|imageMogr2/rotate/90"
  "whole image (imageMogr2 rotate 45)|imageMogr2/rotate/45/thumbnail/3000x"
)
echo "date: $(date -u +%Y-%m-%d), source 6028x3391 JPEG ($(stat -c %s "$work/img/k.jpg") bytes), wrk -t2 -c8 -d$DURATION, flags: ${QUFOP_FLAGS:-defaults}"
for c in "${classes[@]}"; do
  IFS='|' read -r name chain <<<"$c"
  rm -rf "$work/data"
  "$bin" dev --quiet --no-docker --data "$work/data" --listen "127.0.0.1:$PORT" --bucket "img=$work/img" ${QUFOP_FLAGS:-} >"$work/dev.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
  out="-"
  if [ -n "$chain" ]; then
    url="http://127.0.0.1:$PORT/img/k.jpg?$chain"
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
    out=$(wrk -t2 -c8 -d"$DURATION" "$url" | awk '/Requests\/sec/ {r=$2} /Non-2xx/ {b=$NF} END {printf "%s req/s, non-2xx %d", r, b+0}')
    out="first answer $code, $out"
  fi
  hwm=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  printf '%-62s peak RSS %5s MB  (%s)\n' "$name" "$hwm" "$out"
done
