#!/usr/bin/env bash
# Soak: the four workloads of bench/compare.sh against one long-lived server,
# in bursts of wrk with idle gaps between them (as compare.sh's alternating
# rounds leave each server idle half the time), until the server dies or
# the rounds are done. It reports how long the server lived, how many
# requests it answered, and, when it died, how (exit status, the start of
# its crash output; the whole output is kept in /tmp).
#
#   bash bench/soak.sh                  qufop dev, 30 rounds (about 20 min)
#   SERVER=imgproxy bash bench/soak.sh  imgproxy from PATH, the same requests
#   ROUNDS=10 BURST=6s GAP=8 QUFOP_FLAGS='--workers 4' bash bench/soak.sh
#
# Only loopback is used. Exit status: 0 if the server lived through every
# round, 1 if it died.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=${SERVER:-qufop}
ROUNDS=${ROUNDS:-30}
BURST=${BURST:-6s}
GAP=${GAP:-8} # idle seconds after a burst: a random 0..GAP-1
PORT=${PORT:-18183}
command -v wrk >/dev/null || { echo "soak: wrk is not installed" >&2; exit 1; }

work=$(mktemp -d)
mkdir -p "$work/img"
for f in storm-1920x1080.jpg kleiber-6028x3391.jpg mate-stripes-dark-1920x1440.png; do
  cp "testdata/images/$f" "$work/img/"
done
case $SERVER in
qufop)
  bin=${QUFOP_BIN:-./bin/qufop}
  [ -n "${QUFOP_BIN:-}" ] || make -s build-qufop
  "$bin" dev --quiet --no-docker --data "$work/data" --listen "127.0.0.1:$PORT" --bucket "img=$work/img" ${QUFOP_FLAGS:-} >"$work/server.log" 2>&1 &
  paths=(
    "/img/storm-1920x1080.jpg?imageView2/2/w/200/q/75"
    "/img/storm-1920x1080.jpg?imageView2/2/w/800/q/75"
    "/img/kleiber-6028x3391.jpg?imageView2/2/w/200/q/75"
    "/img/mate-stripes-dark-1920x1440.png?imageView2/2/w/200"
  )
  ;;
imgproxy)
  command -v imgproxy >/dev/null || { echo "soak: skipped: imgproxy is not on PATH"; exit 0; }
  IMGPROXY_BIND=127.0.0.1:$PORT IMGPROXY_LOCAL_FILESYSTEM_ROOT=$work/img IMGPROXY_LOG_LEVEL=error \
    imgproxy >"$work/server.log" 2>&1 &
  paths=(
    "/insecure/rs:fit:200:0/q:75/plain/local:///storm-1920x1080.jpg@jpg"
    "/insecure/rs:fit:800:0/q:75/plain/local:///storm-1920x1080.jpg@jpg"
    "/insecure/rs:fit:200:0/q:75/plain/local:///kleiber-6028x3391.jpg@jpg"
    "/insecure/rs:fit:200:0/plain/local:///mate-stripes-dark-1920x1440.png@png"
  )
  ;;
*)
  echo "soak: SERVER is qufop or imgproxy, not $SERVER" >&2
  exit 1
  ;;
esac
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 200); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

start=$(date +%s)
requests=0
for r in $(seq "$ROUNDS"); do
  for p in "${paths[@]}"; do
    n=$(wrk -t2 -c8 -d"$BURST" "http://127.0.0.1:$PORT$p" 2>/dev/null | awk '/requests in/ {print $1}')
    requests=$((requests + ${n:-0}))
    if ! kill -0 "$pid" 2>/dev/null; then
      st=0
      wait "$pid" 2>/dev/null || st=$?
      kept=/tmp/soak-$SERVER-$pid.log
      cp "$work/server.log" "$kept"
      echo "soak: $SERVER died in round $r after $(($(date +%s) - start)) s and about $requests requests (exit status $st; 128+n is signal n)"
      echo "soak: its whole output is in $kept; the start of the crash:"
      grep -m1 -B2 -A24 -E '^(panic|fatal error|SIG[A-Z]+)' "$kept" || tail -n 30 "$kept"
      exit 1
    fi
    sleep $((RANDOM % GAP))
  done
done
echo "soak: $SERVER lived through $ROUNDS rounds: $(($(date +%s) - start)) s, about $requests requests"
