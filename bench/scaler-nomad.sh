#!/usr/bin/env bash
# Scaler benchmark on real Nomad and Consul (issue 9): `qufop scaler` against
# nomad-autoscaler, the anchor, side by side in alternating rounds on the
# same slow UFOP and the same burst.
#
# It starts, on loopback ports of its own (not 4646/8500, which `make
# test-nomad` uses): a `consul agent -dev` and a `nomad agent -dev` (the
# docker plugin and the host volumes the platform's jobs need), `qufop
# builder`, `qufop gateway` on the Docker bridge address (where the
# containers reach it) registered in Consul as service qufop-gateway, and
# Debian's prometheus scraping the gateways found in Consul every SCRAPE
# (default 1s; Debian's prometheus has no consul_sd_configs, so the script
# writes the instances Consul lists as static targets). The UFOP is
# examples/ufop-demo with concurrency 2 and the command <name>/sleep/200
# (200 ms a step), built with `qufop build`, at 1 instance. Each round runs
# the burst (wrk -t2 -cCONNS for BURST seconds, then idle) once per mode, in
# this order:
#
#   qufop    `qufop scaler --prometheus URL`, with `qufop scale-policy NAME
#            --min 1 --max 4 --target 2` (its defaults otherwise: interval
#            2s, up-cooldown 2s, down-cooldown 15s, down-window 30s);
#   nas-5m   nomad-autoscaler (from PATH) with its Prometheus APM plugin and
#            the target-value strategy, target 2, on the work per instance
#            (see below), min 1, max 4, a policy file, and the agent's
#            defaults: evaluation interval 10s, cooldown 5m (idle IDLE_LONG
#            so that its scale-down, 5 min after its scale-up, is seen);
#   nas-30s  the same with cooldown = "30s".
#
# During the nomad-autoscaler modes the UFOP has no qufop scale policy
# (`qufop scale-policy NAME --off`) and `qufop scaler` is not running; during
# the qufop mode nomad-autoscaler is not running. Without nomad-autoscaler on
# PATH its modes are skipped with a message.
#
# target-value computes new = ceil(count x metric / target), count being the
# running allocations. For this to mean what qufop's target means (ceil(work
# / target), work = steps waiting + in flight), the metric must be the work
# per instance, so the query divides the summed work by the healthy
# instances the gateways see:
#
#   (sum(qufop_gateway_ufop_queue_length{ufop="NAME"})
#      + sum(qufop_gateway_ufop_in_flight{ufop="NAME"}))
#    / clamp_min(max(qufop_gateway_ufop_healthy_instances{ufop="NAME"}), 1)
#
# Needs: nomad (1.6.5) and consul (1.16.3) on PATH, dockerd and the registry
# on 127.0.0.1:5000 (bash .ci/services.sh), prometheus, wrk, curl, jq, ss.
#
#   bash bench/scaler-nomad.sh    # 3 rounds, about 50 min
#   ROUNDS=1 MODES="qufop nas-30s" SCRAPE=15s bash bench/scaler-nomad.sh
#
# Per round and mode it reports: seconds from the burst's start to the first
# change of the job's count (Nomad's scaling events), to 4 healthy instances
# and to the work per healthy instance back under the target (the gateway's
# gauges, sampled every 0.25 s); the scale actions up and down; p50, p90,
# p99, requests served and failed requests of the burst; seconds from the burst's end until 1 healthy
# instance is left. Then the medians per mode and the medians of the
# per-round ratios qufop / nomad-autoscaler.
#
# Before each nomad-autoscaler mode it waits until the job's last scaling
# event is older than the mode's cooldown, so that it behaves as an agent
# that has been running alone. Started sooner after a change by anyone
# else, nomad-autoscaler (policy/handler.go, NewHandler and
# checkForOutOfBandEvents) sets a timer for the rest of that cooldown; the
# timer does not hold back its first action, but when it fires it ends the
# cooldown of whatever the agent did meanwhile (seen: a scale-down 214 s
# after the burst's start under a 5 min cooldown). The burst starts 5 s
# after its first evaluation, half an evaluation interval: the average case.
#
# LOGS=DIR keeps the logs, samples and scaling events there.
#
# Everything it starts is stopped at the end or on Ctrl-C: the Nomad jobs
# are purged (their containers go), the processes stopped, the UFOP
# unregistered, its images and registry repository removed, the temporary
# folder deleted.
set -euo pipefail
cd "$(dirname "$0")/.."

BURST=${BURST:-60}
IDLE=${IDLE:-90}
IDLE_LONG=${IDLE_LONG:-330}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-8}
SCRAPE=${SCRAPE:-1s}
MODES=${MODES:-qufop nas-5m nas-30s}
PORT_BASE=${PORT_BASE:-17600}
REGISTRY=${REGISTRY:-127.0.0.1:5000}
REGISTRY_ROOT=${QUFOP_TEST_REGISTRY_ROOT:-/var/lib/qufop-registry}

die() { echo "bench: $*" >&2; exit 1; }
for tool in nomad consul prometheus wrk docker curl jq ss; do
  command -v $tool >/dev/null || die "$tool is not on PATH"
done
have_nas=1
if ! command -v nomad-autoscaler >/dev/null; then
  have_nas=0
  echo "bench: nomad-autoscaler is not on PATH: skipping its modes (go build it from github.com/hashicorp/nomad-autoscaler)" >&2
  MODES=$(for m in $MODES; do case $m in nas-*) ;; *) echo "$m" ;; esac; done | xargs)
fi
[ -n "$MODES" ] || die "no mode left to run"
curl -fsS "http://$REGISTRY/v2/" >/dev/null || die "no registry at $REGISTRY (bash .ci/services.sh)"
docker info >/dev/null 2>&1 || die "no Docker daemon (bash .ci/services.sh)"
bridge=$(ip -4 -o addr show docker0 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4; exit}')
[ -n "$bridge" ] || die "no docker0 address: the containers could not reach the gateway"
if pgrep -f 'bench/scaler\.sh' >/dev/null; then
  echo "bench: bench/scaler.sh is running: waiting for it to end (both are CPU-bound)" >&2
  while pgrep -f 'bench/scaler\.sh' >/dev/null; do sleep 10; done
fi

pgrep -f 'nomad agent -dev' >/dev/null &&
  echo "bench: another nomad agent runs here (make test-nomad?): it takes CPU from this benchmark" >&2

# Ports: PORT_BASE+0..12 on loopback, all free or nothing starts.
port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
p=$PORT_BASE
for n in CONSUL_HTTP CONSUL_SERVER CONSUL_LAN CONSUL_WAN CONSUL_GRPC NOMAD_HTTP NOMAD_RPC NOMAD_SERF BUILDER GATEWAY PROM SCALER NAS; do
  port_free $p || die "port $p is in use (PORT_BASE=$PORT_BASE): choose another PORT_BASE"
  printf -v "P_$n" %s $p
  p=$((p + 1))
done
NOMAD=http://127.0.0.1:$P_NOMAD_HTTP
CONSUL=127.0.0.1:$P_CONSUL_HTTP
PROM=http://127.0.0.1:$P_PROM
GW=$bridge:$P_GATEWAY

make -s build
make -s -C examples/ufop-demo tar >/dev/null
work=$(mktemp -d /tmp/qufop-bench-nomad.XXXXXX)
name=bench-nomad-$$
job=ufop-$name
pids=()   # long-running processes, stopped in reverse order
sampler="" nas_pid="" scaler_pid="" node_id="" made_busybox=0

stop_pid() { # pid signal seconds
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -"$2" "$pid" 2>/dev/null || true
  for _ in $(seq $(($3 * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench: pid $pid did not stop within $3 s: killed" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
live_allocs() {
  curl -fsS "$NOMAD/v1/allocations" 2>/dev/null |
    jq '[.[] | select(.ClientStatus == "pending" or .ClientStatus == "running")] | length' 2>/dev/null || echo 0
}
cleanup() {
  local rc=$?
  trap '' INT TERM
  set +e
  echo "bench: cleaning up" >&2
  if [ -n "${LOGS:-}" ]; then mkdir -p "$LOGS" && cp "$work"/*.log "$work"/results "$work"/events.* "$work"/samples.* "$LOGS"/ 2>/dev/null; fi
  stop_pid "$sampler" TERM 5
  stop_pid "$nas_pid" INT 30
  stop_pid "$scaler_pid" INT 30
  if curl -fsS "$NOMAD/v1/status/leader" >/dev/null 2>&1; then
    timeout 120 ./bin/qufop unreg "$name" >/dev/null 2>&1
    for j in $(curl -fsS "$NOMAD/v1/jobs" | jq -r '.[].ID'); do
      curl -fsS -X DELETE "$NOMAD/v1/job/$j?purge=true" >/dev/null
    done
    for _ in $(seq 360); do [ "$(live_allocs)" = 0 ] && break; sleep 0.5; done
  fi
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}" INT 60; done
  if [ -n "$node_id" ]; then
    docker ps -aq --filter "label=com.hashicorp.nomad.node_id=$node_id" | xargs -r docker rm -f >/dev/null
  fi
  docker images -q --filter "label=qufop.ufop=$name" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1
  local repo=admin/$name tag digest
  for tag in $(curl -fsS "http://$REGISTRY/v2/$repo/tags/list" 2>/dev/null | jq -r '.tags[]?' 2>/dev/null); do
    digest=$(curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$REGISTRY/v2/$repo/manifests/$tag" | awk 'tolower($1) == "docker-content-digest:" {print $2}' | tr -d '\r')
    [ -n "$digest" ] && curl -fsS -X DELETE "http://$REGISTRY/v2/$repo/manifests/$digest" >/dev/null
  done
  [ -d "$REGISTRY_ROOT/docker/registry/v2/repositories/$repo" ] && rm -rf "${REGISTRY_ROOT:?}/docker/registry/v2/repositories/$repo"
  [ "$made_busybox" = 1 ] && docker rmi local/busybox:1 >/dev/null 2>&1
  # A Nomad agent that had to be killed leaves its allocations' mounts.
  awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # log command...: runs in the background, remembered in pids
  local log=$1; shift
  "$@" >"$work/$log.log" 2>&1 &
  pids+=($!)
}
wait_url() { # what url seconds
  for _ in $(seq $(($3 * 4))); do curl -fsS "$2" >/dev/null 2>&1 && return 0; sleep 0.25; done
  tail -20 "$work/$1.log" >&2 || true
  die "$1 did not answer $2 within $3 s"
}
now() { date +%s.%N; }
nap() { sleep "$1" & wait $!; } # a signal ends it at once

# The base image of ufop-demo, as `qufop dev` makes it when missing.
if ! docker image inspect local/busybox:1 >/dev/null 2>&1; then
  [ -x /bin/busybox ] || die "local/busybox:1 is missing and there is no /bin/busybox (apt-get install busybox-static)"
  rootfs=$work/busybox-rootfs
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/usr/bin"
  chmod 1777 "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/"
  for a in $(/bin/busybox --list); do [ -e "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$rootfs/etc/passwd"
  tar -C "$rootfs" -c . | docker import - local/busybox:1 >/dev/null
  made_busybox=1
fi

# Consul and Nomad dev agents on their own ports.
mkdir -p "$work/buckets" "$work/registry" "$work/bucket" "$work/nas-policies" "$work/nas-plugins" "$work/src"
cat >"$work/consul.hcl" <<EOF
ports {
  http     = $P_CONSUL_HTTP
  server   = $P_CONSUL_SERVER
  serf_lan = $P_CONSUL_LAN
  serf_wan = $P_CONSUL_WAN
  grpc     = $P_CONSUL_GRPC
  grpc_tls = -1
  dns      = -1
}
EOF
cat >"$work/nomad.hcl" <<EOF
ports {
  http = $P_NOMAD_HTTP
  rpc  = $P_NOMAD_RPC
  serf = $P_NOMAD_SERF
}
client {
  host_volume "qufop-buckets" {
    path = "$work/buckets"
  }
  host_volume "qufop-registry" {
    path = "$work/registry"
  }
}
plugin "docker" {
  config {
    volumes {
      enabled = true
    }
    extra_labels = ["job_name", "node_id"]
    gc {
      image = false
    }
  }
}
EOF
start consul consul agent -dev -client 127.0.0.1 -bind 127.0.0.1 -config-file "$work/consul.hcl"
wait_url consul "http://$CONSUL/v1/status/leader" 60
start nomad nomad agent -dev -bind 127.0.0.1 -consul-address "$CONSUL" -data-dir "$work/nomad-data" -config "$work/nomad.hcl"
wait_url nomad "$NOMAD/v1/status/leader" 90
for _ in $(seq 360); do
  node_id=$(curl -fsS "$NOMAD/v1/nodes" | jq -r '[.[] | select(.Status == "ready" and .Drivers.docker.Healthy)][0].ID // empty')
  [ -n "$node_id" ] && break
  sleep 0.25
done
[ -n "$node_id" ] || die "the Nomad node is not ready with Docker"

# The platform's roles.
export QUFOP_ADDR=http://127.0.0.1:$P_BUILDER QUFOP_ACCESS_KEY=AK_BENCH QUFOP_SECRET_KEY=SK_BENCH_SECRET
export QUFOP_CONFIG=$work/cli.json
start builder ./bin/qufop builder --listen "127.0.0.1:$P_BUILDER" --data "$work/builder" --registry "$REGISTRY" \
  --nomad-addr "$NOMAD" --consul-addr "$CONSUL" --quiet
echo hello >"$work/bucket/small.txt"
start gateway ./bin/qufop gateway --listen "$GW" --advertise-addr "$GW" --bucket "files=$work/bucket" \
  --consul-addr "$CONSUL" --quiet
wait_url gateway "http://$GW/health" 30
curl -fsS -X PUT "http://$CONSUL/v1/agent/service/register" -d "{\"ID\":\"qufop-gateway-bench\",\"Name\":\"qufop-gateway\",
  \"Address\":\"$bridge\",\"Port\":$P_GATEWAY,\"Check\":{\"HTTP\":\"http://$GW/health\",\"Interval\":\"1s\",\"Timeout\":\"1s\"}}" >/dev/null
for _ in $(seq 120); do ./bin/qufop list >/dev/null 2>&1 && break; sleep 0.25; done
./bin/qufop list >/dev/null || die "the builder does not answer (see $work/builder.log)"

# Prometheus: the gateways found in Consul, every SCRAPE. Debian's
# prometheus is built without consul_sd_configs, so the script writes the
# healthy instances of qufop-gateway as the targets.
scrape_timeout=10s
case $SCRAPE in [1-9]s) scrape_timeout=$SCRAPE ;; esac
for _ in $(seq 120); do
  targets=$(curl -fsS "http://$CONSUL/v1/health/service/qufop-gateway?passing=1" | jq -c '[.[] | "\(.Service.Address):\(.Service.Port)"]')
  [ "$targets" != "[]" ] && break
  sleep 0.25
done
[ "$targets" != "[]" ] || die "no healthy qufop-gateway in Consul"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: $SCRAPE
  evaluation_interval: 15s
scrape_configs:
  - job_name: qufop-gateway
    scrape_interval: $SCRAPE
    scrape_timeout: $scrape_timeout
    static_configs:
      - targets: $targets
EOF
start prometheus prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$P_PROM" --log.level=warn
wait_url prometheus "$PROM/-/ready" 60
for _ in $(seq 240); do
  [ "$(curl -fsS "$PROM/api/v1/query" --data-urlencode 'query=up{job="qufop-gateway"}' | jq -r '.data.result[0].value[1] // 0')" = 1 ] && break
  sleep 0.25
done

# The slow UFOP.
tar -xf examples/ufop-demo/build/ufop-demo.tar -C "$work/src"
sed -i 's/^concurrency: .*/concurrency: 2/' "$work/src/ufop.yaml"
tar -cf "$work/slow.tar" -C "$work/src" .
./bin/qufop reg "$name" -m 1 >/dev/null
./bin/qufop build "$name" -f "$work/slow.tar" >/dev/null
./bin/qufop chver "$name" -c 1 >/dev/null
./bin/qufop resize "$name" -n 1 --timeout 5m >/dev/null
url="http://$GW/files/small.txt?$name/sleep/200"
curl -fsS "$url" >/dev/null || die "the UFOP does not answer through the gateway"

query="(sum(qufop_gateway_ufop_queue_length{ufop=\"$name\"}) + sum(qufop_gateway_ufop_in_flight{ufop=\"$name\"})) / clamp_min(max(qufop_gateway_ufop_healthy_instances{ufop=\"$name\"}), 1)"
cat >"$work/nas.hcl" <<EOF
log_level  = "info"
plugin_dir = "$work/nas-plugins"
http {
  bind_address = "127.0.0.1"
  bind_port    = $P_NAS
}
nomad {
  address = "$NOMAD"
}
policy {
  dir = "$work/nas-policies"
}
apm "prometheus" {
  driver = "prometheus"
  config = {
    address = "$PROM"
  }
}
EOF
hclquery=${query//\"/\\\"}
nas_policy() { # cooldown ("" for the agent's default)
  cat <<EOF
scaling "$name" {
  enabled = true
  type    = "horizontal"
  min     = 1
  max     = 4
  policy {
$([ -n "$1" ] && echo "    cooldown = \"$1\"" || true)
    check "work_per_instance" {
      source = "prometheus"
      query  = "$hclquery"
      strategy "target-value" {
        target = 2
      }
    }
    target "nomad-target" {
      Job   = "$job"
      Group = "ufop"
    }
  }
}
EOF
}

healthy() { ./bin/qufop state "$name" --json | jq '[.instances[] | select(.healthy)] | length'; }
at_one() { # the job at 1 healthy instance, as the gateway sees it
  local n
  n=$(curl -fsS "$NOMAD/v1/job/$job" | jq '.TaskGroups[0].Count')
  [ "$n" = 1 ] || ./bin/qufop resize "$name" -n 1 --timeout 5m >/dev/null
  for _ in $(seq 1200); do
    [ "$(healthy)" = 1 ] && [ "$(gauge healthy_instances)" = 1 ] && return 0
    sleep 0.25
  done
  die "$name did not come back to 1 healthy instance"
}
gauge() { # name: the gateway's figure for the UFOP
  curl -fsS "http://$GW/metrics" | awk -v u="ufop=\"$name\"" -v m="qufop_gateway_ufop_$1" 'index($0, u) && $1 ~ "^" m "\\{" {v=$2} END {print v+0}'
}
last_event_age() { # seconds since the job's last scaling event (large when none)
  curl -fsS "$NOMAD/v1/job/$job/scale" | jq --arg now "$(now)" '($now | tonumber) - ((.TaskGroups.ufop.Events[0].Time // 0) / 1e9)'
}
sample() { # every 0.25 s: time, waiting, in flight, healthy (the gateway's gauges)
  while :; do
    local t; t=$(now)
    curl -fsS "http://$GW/metrics" 2>/dev/null | awk -v t="$t" -v u="ufop=\"$name\"" '
      index($0, u) && /^qufop_gateway_ufop_queue_length/ {q=$2}
      index($0, u) && /^qufop_gateway_ufop_in_flight/ {f=$2}
      index($0, u) && /^qufop_gateway_ufop_healthy_instances/ {h=$2}
      END {print t, q+0, f+0, h+0}'
    sleep 0.25
  done
}
wrkrun() { # seconds -> "p50ms p90ms p99ms requests failed"
  local out; out=$(wrk -t2 -c"$CONNS" -d"$1"s --latency "$url")
  echo "$out" >>"$work/wrk.log"
  local p50 p90 p99 n bad
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p90=$(echo "$out" | awk '$1=="90%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  bad=$(echo "$out" | awk '/Non-2xx/ {s+=$NF} /Socket errors/ {gsub(/,/, ""); s+=$4+$6+$8+$10} END {print s+0}')
  echo "$(ms "$p50") $(ms "$p90") $(ms "$p99") $n $bad"
}
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v*1000 } }'; }

# One burst under the mode's scaler, then idle; appends a line to results.
burst() { # mode round idle
  local mode=$1 round=$2 idle=$3 t0 t1 p50 p90 p99 n bad
  curl -fsS "$url" >/dev/null
  sample >"$work/samples.$mode.$round" &
  sampler=$!
  t0=$(now)
  read -r p50 p90 p99 n bad < <(wrkrun "$BURST")
  t1=$(now)
  nap "$idle"
  stop_pid "$sampler" TERM 5; sampler=""
  curl -fsS "$NOMAD/v1/job/$job/scale" | jq -c --arg t0 "$t0" \
    '[.TaskGroups.ufop.Events[]? | select(.Count != null and .Error != true and .Time / 1e9 >= ($t0 | tonumber))] | sort_by(.Time)' \
    >"$work/events.$mode.$round"
  local first ups downs steps
  read -r first ups downs steps < <(jq -r --arg t0 "$t0" '($t0 | tonumber) as $t0 | [.[] | select(.Count != .PreviousCount)] as $e
    | [ (if ($e | length) > 0 then ((($e[0].Time / 1e9 - $t0) * 100 | round) / 100) else -1 end),
        ([$e[] | select(.Count > .PreviousCount)] | length),
        ([$e[] | select(.Count < .PreviousCount)] | length),
        (if ($e | length) > 0 then [$e[] | "\(.PreviousCount)->\(.Count)@\((.Time / 1e9 - $t0) | floor)s"] | join(",") else "-" end) ]
    | map(tostring) | join(" ")' "$work/events.$mode.$round")
  local to4 under back
  read -r to4 under back < <(awk -v t0="$t0" -v t1="$t1" '
    $1 >= t0 && f4 == "" && $4 >= 4 {f4 = $1}
    $1 >= t0 && fw == "" && $2 > 0 {fw = $1}
    $1 >= t0 && fw != "" && un == "" && $4 > 0 && ($2 + $3) / $4 <= 2 && $2 == 0 {un = $1}
    $1 >= t1 && $4 != 1 {bk = ""}
    $1 >= t1 && $4 == 1 && bk == "" {bk = $1}
    END {printf "%.2f %.2f %.2f\n", (f4 == "" ? -1 : f4 - t0), (un == "" ? -1 : un - t0), (bk == "" ? -1 : bk - t1)}' \
    "$work/samples.$mode.$round")
  echo "$mode $round $first $to4 $under $ups $downs $p50 $p90 $p99 $n $bad $back $steps" >>"$work/results"
  printf '%-8s round %d: first change %ss, 4 healthy %ss, under target %ss; up %s down %s (%s); burst %s requests, failed %s, p50 %s ms, p90 %s ms, p99 %s ms; back at min %ss after the burst\n' \
    "$mode" "$round" "$first" "$to4" "$under" "$ups" "$downs" "$steps" "$n" "$bad" "$p50" "$p90" "$p99" "$back"
}

run_qufop() { # round
  at_one
  ./bin/qufop scale-policy "$name" --min 1 --max 4 --target 2 --timeout 5m >/dev/null
  at_one
  start scaler ./bin/qufop scaler --listen "127.0.0.1:$P_SCALER" --nomad-addr "$NOMAD" --consul-addr "$CONSUL" \
    --prometheus "$PROM" --quiet
  scaler_pid=${pids[-1]}; unset 'pids[-1]'
  for _ in $(seq 240); do
    [ "$(curl -fsS "http://127.0.0.1:$P_SCALER/health" 2>/dev/null | jq -r '.leader // false')" = true ] && break
    sleep 0.25
  done
  [ "$(curl -fsS "http://127.0.0.1:$P_SCALER/health" 2>/dev/null | jq -r '.leader // false')" = true ] || {
    tail -20 "$work/scaler.log" >&2; die "qufop scaler did not take the lead within 60 s"; }
  burst qufop "$1" "$IDLE"
  stop_pid "$scaler_pid" INT 30; scaler_pid=""
  ./bin/qufop scale-policy "$name" --off --timeout 5m >/dev/null
}

run_nas() { # mode round cooldown idle
  local mode=$1 round=$2 cooldown=$3 idle=$4 cd_s age
  at_one
  nas_policy "$cooldown" >"$work/nas-policies/$name.hcl"
  cd_s=$(awk -v c="${cooldown:-5m}" 'BEGIN {v = c + 0; if (c ~ /m$/) v *= 60; print v}')
  age=$(last_event_age)
  if awk -v a="$age" -v c="$cd_s" 'BEGIN {exit !(a < c + 1)}'; then
    local w; w=$(awk -v a="$age" -v c="$cd_s" 'BEGIN {printf "%d", c + 1 - a + 1}')
    echo "         ($mode: waiting ${w}s until the job's last scaling event is ${cooldown:-5m} old)"
    nap "$w"
  fi
  : >"$work/nas.$mode.$round.log"
  nomad-autoscaler agent -config "$work/nas.hcl" >"$work/nas.$mode.$round.log" 2>&1 &
  nas_pid=$!
  for _ in $(seq 240); do grep -q 'calculating scaling target' "$work/nas.$mode.$round.log" && break; sleep 0.25; done
  grep -q 'calculating scaling target' "$work/nas.$mode.$round.log" || {
    tail -20 "$work/nas.$mode.$round.log" >&2; die "nomad-autoscaler did not evaluate the policy within 60 s"; }
  nap 5 # half an evaluation interval after its first evaluation
  burst "$mode" "$round" "$idle"
  stop_pid "$nas_pid" INT 30; nas_pid=""
}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); nomad $(nomad version | awk 'NR==1 {print $2}'), consul $(consul version | awk 'NR==1 {print $2}'), $(prometheus --version 2>&1 | awk 'NR==1 {print $1, $3}')$([ $have_nas = 1 ] && echo ", nomad-autoscaler $(nomad-autoscaler version 2>/dev/null | head -1)" || true)"
echo "== $name: sleep/200, concurrency 2, min 1 max 4 target 2; $CONNS clients for ${BURST}s, then idle ${IDLE}s (nas-5m: ${IDLE_LONG}s); Prometheus scrapes every $SCRAPE"
echo "== modes: $MODES; $ROUNDS rounds"
: >"$work/results"
for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    case $mode in
      qufop) run_qufop "$round" ;;
      nas-5m) run_nas nas-5m "$round" "" "$IDLE_LONG" ;;
      nas-30s) run_nas nas-30s "$round" 30s "$IDLE" ;;
      *) die "unknown mode $mode" ;;
    esac
  done
done

# Medians per mode (a figure never reached, -1, counts as missing), and the
# medians of the per-round ratios qufop / nomad-autoscaler.
echo
awk -v modes="$MODES" '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " "); if (n == 0) return "-"
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function add(k, v) { if (v != -1) val[k] = val[k] " " v; else miss[k]++ }
  { m = $1; r = $2
    for (i = 1; i <= 11; i++) { v = $(i + 2); fig[m, r, i] = v; add(m SUBSEP i, v) }
    rounds[r] = 1 }
  END {
    label[1] = "first count change (s)"; label[2] = "4 healthy (s)"; label[3] = "under target (s)"
    label[4] = "scale-ups"; label[5] = "scale-downs"; label[6] = "p50 (ms)"; label[7] = "p90 (ms)"
    label[8] = "p99 (ms)"; label[9] = "requests in the burst"; label[10] = "failed requests"
    label[11] = "back at min after burst (s)"
    nm = split(modes, ms, " ")
    printf "%-30s", "median"; for (k = 1; k <= nm; k++) printf " %10s", ms[k]
    for (k = 1; k <= nm; k++) if (ms[k] != "qufop") printf "  qufop/%s", ms[k]; printf "\n"
    for (i = 1; i <= 11; i++) {
      printf "%-30s", label[i]
      for (k = 1; k <= nm; k++) { s = median(val[ms[k] SUBSEP i]); if (miss[ms[k] SUBSEP i]) s = s "(" miss[ms[k] SUBSEP i] " n/a)"; printf " %10s", s }
      for (k = 1; k <= nm; k++) {
        if (ms[k] == "qufop") continue
        list = ""
        for (r in rounds) { a = fig["qufop", r, i]; b = fig[ms[k], r, i]
          if (a != "" && b != "" && a != -1 && b != -1 && b + 0 != 0) list = list " " sprintf("%.3f", a / b) }
        printf "  %11s", (i == 4 || i == 5 || i == 10) ? "" : median(list)
      }
      printf "\n"
    }
  }' "$work/results"
echo "(ratios: median over rounds of qufop's figure / nomad-autoscaler's in the same round)"
