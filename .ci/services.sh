#!/usr/bin/env bash
# Starts dockerd and Debian's docker-registry (127.0.0.1:5000, config
# .ci/registry.yml) unless they already answer. Used by .ci/run and by
# `make services`. Logs go to /tmp/qufop-dockerd.log and /tmp/qufop-registry.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/sbin:/sbin

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "services: $what did not start" >&2
  return 1
}

if ! docker info >/dev/null 2>&1; then
  if command -v dockerd >/dev/null; then
    echo "services: starting dockerd"
    # A daemon killed with the previous session leaves its pid file behind.
    if [ -f /var/run/docker.pid ] && ! pgrep -x dockerd >/dev/null; then rm -f /var/run/docker.pid; fi
    nohup dockerd >/tmp/qufop-dockerd.log 2>&1 &
    wait_for dockerd docker info || { tail -20 /tmp/qufop-dockerd.log >&2; exit 1; }
  else
    echo "services: dockerd is not installed; Docker tests will be skipped"
  fi
fi

if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
  if command -v docker-registry >/dev/null; then
    echo "services: starting docker-registry on 127.0.0.1:5000"
    mkdir -p /var/lib/qufop-registry
    nohup docker-registry serve .ci/registry.yml >/tmp/qufop-registry.log 2>&1 &
    wait_for docker-registry curl -fsS http://127.0.0.1:5000/v2/ || { tail -20 /tmp/qufop-registry.log >&2; exit 1; }
  else
    echo "services: docker-registry is not installed; registry tests will be skipped"
  fi
fi
