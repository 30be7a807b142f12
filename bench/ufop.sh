#!/usr/bin/env bash
# UFOP path benchmark (issue 3): wrk through the gateway to one ufop-demo
# instance (md5 of a small stored object), against Debian's nginx
# proxy_pass in front of the same instance and against the instance
# directly, all in the same run, all on loopback. Needs dockerd, the
# registry (bash .ci/services.sh), wrk and nginx.
#
#   bash bench/ufop.sh              # wrk -t2 -c8 -d20s
#   DURATION=30s CONNS=16 bash bench/ufop.sh
#   PROFILE=/tmp/gw.pprof bash bench/ufop.sh   # CPU profile of the gateway run
#   QUFOP_BIN=/tmp/qufop-x bash bench/ufop.sh  # a binary built beforehand (A/B runs)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
PORT=${PORT:-18090}
NGINX_PORT=${NGINX_PORT:-18091}
for tool in wrk nginx docker curl; do
  command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

# QUFOP_BIN: a binary built beforehand, to compare two builds in
# alternating runs without make rebuilding bin/qufop in between.
bin=${QUFOP_BIN:-./bin/qufop}
[ -n "${QUFOP_BIN:-}" ] || make -s build
make -s -C examples/ufop-demo tar >/dev/null
work=$(mktemp -d)
mkdir -p "$work/bucket" "$work/nginx"
printf 'The quick brown fox jumps over the lazy dog.\n%.0s' $(seq 20) > "$work/bucket/small.txt"
export QUFOP_ADDR=http://127.0.0.1:$PORT QUFOP_ACCESS_KEY=AK_BENCH QUFOP_SECRET_KEY=SK_BENCH_SECRET
export QUFOP_CONFIG=$work/cli.json
"$bin" dev --quiet ${PROFILE:+--pprof} --data "$work/data" --listen "127.0.0.1:$PORT" --bucket "files=$work/bucket" \
  >"$work/dev.log" 2>&1 &  # the admin keys come from the exported QUFOP_ACCESS_KEY/QUFOP_SECRET_KEY
pid=$!
name=bench-demo-$$
cleanup() {
  if [ -s "$work/nginx/error.log" ]; then echo "nginx error.log (last lines):"; tail -5 "$work/nginx/error.log"; fi
  "$bin" unreg "$name" >/dev/null 2>&1 || true
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fsS "$QUFOP_ADDR/health" >/dev/null 2>&1 && break; sleep 0.1; done

"$bin" reg "$name" >/dev/null
"$bin" build "$name" -f examples/ufop-demo/build/ufop-demo.tar >/dev/null
"$bin" chver "$name" -c 1 >/dev/null
"$bin" resize "$name" -n 1 >/dev/null
# The address the gateway reaches the instance at: on the project's bridge
# ("bridge_addr"; "Addr" in the state of older builds).
inst=$("$bin" state "$name" --json | sed -n 's/.*"\(bridge_addr\|Addr\)": *"\([^"]*\)".*/\2/p' | head -1)
[ -n "$inst" ] || { echo "bench: no instance address" >&2; exit 1; }

cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  upstream ufop { server $inst; keepalive 32; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://ufop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$NGINX_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done

# The instance sees the same request both ways: POST /handler with the
# object as the body.
cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = io.open("$work/bucket/small.txt"):read("*a")
wrk.headers["Content-Type"] = "text/plain"
EOF
gw="$QUFOP_ADDR/files/small.txt?$name/md5"
direct="http://$inst/handler?cmd=$name/md5"
viaNginx="http://127.0.0.1:$NGINX_PORT/handler?cmd=$name/md5"
curl -fsS "$gw" >/dev/null && curl -fsS -X POST --data-binary @"$work/bucket/small.txt" "$viaNginx" >/dev/null

run() { # label url [lua]
  local label=$1 url=$2 script=${3:-}
  local args=(-t"$THREADS" -c"$CONNS" -d"$DURATION" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  wrk -t"$THREADS" -c"$CONNS" -d3s ${script:+-s "$script"} "$url" >/dev/null   # warm-up
  local prof=""
  if [ -n "${PROFILE:-}" ] && [ "$label" = gateway ]; then
    curl -fsS -o "$PROFILE" "$QUFOP_ADDR/debug/pprof/profile?seconds=10" &
    prof=$!
  fi
  local out; out=$(wrk "${args[@]}" "$url")
  [ -n "$prof" ] && wait $prof
  local rps; rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  local bad; bad=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
  # p50 at one connection: the latency a path adds, without queueing.
  local p50; p50=$(wrk -t1 -c1 -d5s --latency ${script:+-s "$script"} "$url" | awk '$1=="50%" {print $2}')
  printf '%-8s %10s req/s   p50@c1 %8s   %s\n' "$label" "$rps" "$p50" "$bad"
  eval "rps_$label=$rps; p50_$label=$p50"
}
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v*1000 } }'; }
echo "== wrk -t$THREADS -c$CONNS -d$DURATION; one ufop-demo instance ($inst), md5 of a $(stat -c %s "$work/bucket/small.txt")-byte object"
# Rounds run the three paths one after the other, so that a drift of the
# machine's speed (these machines are noisy) hits all; ratios are taken per
# round and the median reported.
ROUNDS=${ROUNDS:-5}
rn=(); rg=(); pg=()
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run direct "$direct" "$work/post.lua"
  run nginx "$viaNginx" "$work/post.lua"
  run gateway "$gw"
  rn+=("$(awk -v a="$rps_nginx" -v b="$rps_direct" 'BEGIN {printf "%.3f", a/b}')")
  rg+=("$(awk -v a="$rps_gateway" -v b="$rps_nginx" 'BEGIN {printf "%.3f", a/b}')")
  pg+=("$(awk -v g="$(ms "$p50_gateway")" -v d="$(ms "$p50_direct")" 'BEGIN {printf "%.3f", g-d}')")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf 'date:                 %s\n' "$(date -u +%Y-%m-%d)"
printf 'nginx / direct:       %s (per round: %s)\n' "$(median "${rn[@]}")" "${rn[*]}"
printf 'gateway / nginx:      %s (per round: %s; goal >= 0.8)\n' "$(median "${rg[@]}")" "${rg[*]}"
printf 'gateway added p50:    %s ms (per round: %s; goal < 1 ms)\n' "$(median "${pg[@]}")" "${pg[*]}"
