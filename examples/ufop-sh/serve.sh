#!/bin/sh
# serve.sh: the ufop-sh server. busybox nc -ll -e runs one handle.sh per
# connection, the socket on its stdin/stdout.
#
# Env: PORT_HTTP (9100), BIND_ADDR (all interfaces; tests use 127.0.0.1).
# On SIGTERM it stops accepting, waits up to 9s for the requests in flight,
# and exits 0.
cd "$(dirname "$0")" || exit 1
port=${PORT_HTTP:-9100}

# handle.sh marks each request in flight with a file here.
UFOP_SH_RUN=$(mktemp -d "${TMPDIR:-/tmp}/ufop-sh.XXXXXX") || exit 1
export UFOP_SH_RUN

echo "ufop-sh: listening on ${BIND_ADDR:-0.0.0.0}:$port"
nc -ll -p "$port" ${BIND_ADDR:+"$BIND_ADDR"} -e sh ./handle.sh &
nc_pid=$!
trap 'echo "ufop-sh: shutting down"; kill "$nc_pid" 2>/dev/null' TERM INT
wait "$nc_pid"
rc=$?
trap - TERM INT

i=0
while [ -n "$(ls -A "$UFOP_SH_RUN" 2>/dev/null)" ] && [ "$i" -lt 90 ]; do
	sleep 0.1
	i=$((i + 1))
done
rm -rf "$UFOP_SH_RUN"
# 143/130: stopped by our trap; anything else is nc failing.
case $rc in 0 | 130 | 143) exit 0 ;; *) echo "ufop-sh: nc exited with $rc" >&2; exit "$rc" ;; esac
