#!/bin/sh
# handle.sh: answers one HTTP request read from stdin, on stdout. POSIX sh
# and busybox applets only.
#
#   GET  /health                              200 ok
#   POST /handler?cmd=<name>/<sub>[&url=<u>]  the input is the body, or <u>
#        sub: rev (each line reversed), upper, md5 ({"hash":"<hex>"})
#
# Answers are HTTP/1.0 with Content-Length and Connection: close; errors are
# {"error":"..."}. Logs one line per request to stderr.

MAX_BODY=${MAX_BODY:-16777216}
FETCH_TIMEOUT=${FETCH_TIMEOUT:-30}
CR=$(printf '\r')
set -f # no globbing of request data

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ufop-sh-req.XXXXXX") || exit 1
mark=
if [ -n "$UFOP_SH_RUN" ] && [ -d "$UFOP_SH_RUN" ]; then
	mark=$UFOP_SH_RUN/$$
	: >"$mark"
fi
trap 'rm -rf "$tmp" ${mark:+"$mark"}' EXIT
trap 'exit 1' TERM INT PIPE HUP

method=- path=- cmd=-

log() { printf 'ufop-sh: %s\n' "$*" >&2; }

# respond STATUS REASON CONTENT-TYPE FILE
respond() {
	len=$(wc -c <"$4")
	len=$((len + 0))
	printf 'HTTP/1.0 %s %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
		"$1" "$2" "$3" "$len"
	cat "$4"
	log "$method $path cmd=$cmd status=$1 bytes=$len"
	exit 0
}

# fail STATUS REASON MESSAGE: answers {"error":"MESSAGE"}.
fail() {
	msg=$(printf '%s' "$3" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')
	printf '{"error":"%s"}\n' "$msg" >"$tmp/err"
	respond "$1" "$2" application/json "$tmp/err"
}

# urldecode S: '+' is a space, %XX a byte.
urldecode() {
	printf '%b' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/+/ /g; s/%\([0-9A-Fa-f][0-9A-Fa-f]\)/\\x\1/g')"
}

# The request line: METHOD TARGET VERSION.
IFS= read -r -t 10 line || exit 0
line=${line%"$CR"}
method=${line%% *}
rest=${line#* }
target=${rest%% *}
path=${target%%\?*}
query=
case $target in *\?*) query=${target#*\?} ;; esac

# Headers.
clen=0 chunked= n=0
while IFS= read -r -t 10 h; do
	h=${h%"$CR"}
	[ -z "$h" ] && break
	n=$((n + 1))
	[ "$n" -gt 100 ] && fail 431 "Request Header Fields Too Large" "too many headers"
	name=${h%%:*}
	value=${h#*:}
	value=${value#"${value%%[! 	]*}"} # leading blanks
	case $name in
	[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]) clen=$value ;;
	[Tt][Rr][Aa][Nn][Ss][Ff][Ee][Rr]-[Ee][Nn][Cc][Oo][Dd][Ii][Nn][Gg]) chunked=1 ;;
	esac
done

# The body, read in full before answering: closing a socket with unread
# data resets it, and the client would lose the answer.
[ -n "$chunked" ] && fail 411 "Length Required" "send a Content-Length"
case $clen in '' | *[!0-9]*) fail 400 "Bad Request" "bad Content-Length" ;; esac
[ "${#clen}" -gt 15 ] && fail 413 "Payload Too Large" "input is over $MAX_BODY bytes"
if [ "$clen" -gt "$MAX_BODY" ]; then
	head -c "$clen" >/dev/null
	fail 413 "Payload Too Large" "input is over $MAX_BODY bytes"
fi
if [ "$clen" -gt 0 ]; then
	head -c "$clen" >"$tmp/in"
else
	: >"$tmp/in"
fi

case $path in
/health)
	[ "$method" = GET ] || fail 405 "Method Not Allowed" "use GET"
	printf 'ok\n' >"$tmp/out"
	respond 200 OK "text/plain; charset=utf-8" "$tmp/out"
	;;
/handler)
	[ "$method" = POST ] || fail 405 "Method Not Allowed" "use POST"
	;;
*)
	fail 404 "Not Found" "no such path $path"
	;;
esac

# The query: cmd and url.
url=
IFS='&'
for kv in $query; do
	case $kv in
	cmd=*) cmd=$(urldecode "${kv#cmd=}") ;;
	url=*) url=$(urldecode "${kv#url=}") ;;
	esac
done
IFS=' 	
'
[ -n "$cmd" ] && [ "$cmd" != - ] || fail 400 "Bad Request" "cmd is missing"
case $cmd in
*/*) sub=${cmd#*/} ;;
*) fail 400 "Bad Request" "no sub-command in \"$cmd\" (want <name>/rev|upper|md5)" ;;
esac
case $sub in
rev | upper | md5) ;;
*) fail 400 "Bad Request" "bad command \"$cmd\": unknown sub-command \"$sub\"" ;;
esac

# The input: the body, or the url.
if [ -n "$url" ]; then
	case $url in
	http://* | https://*) ;;
	*) fail 400 "Bad Request" "url is not an http(s) URL" ;;
	esac
	{
		# busybox 1.35 wget -T crashes on a refused connection: use timeout.
		timeout "$FETCH_TIMEOUT" wget -q -O - "$url" 2>"$tmp/wget.err"
		echo $? >"$tmp/wget.rc"
	} | head -c $((MAX_BODY + 1)) >"$tmp/in"
	size=$(wc -c <"$tmp/in")
	[ "$size" -gt "$MAX_BODY" ] && fail 413 "Payload Too Large" "input is over $MAX_BODY bytes"
	[ "$(cat "$tmp/wget.rc")" = 0 ] ||
		fail 502 "Bad Gateway" "cannot fetch the input: $(head -c 200 "$tmp/wget.err")"
fi

case $sub in
rev)
	rev <"$tmp/in" >"$tmp/out" || fail 500 "Internal Server Error" "rev failed"
	respond 200 OK "text/plain; charset=utf-8" "$tmp/out"
	;;
upper)
	tr 'a-z' 'A-Z' <"$tmp/in" >"$tmp/out" || fail 500 "Internal Server Error" "tr failed"
	respond 200 OK "text/plain; charset=utf-8" "$tmp/out"
	;;
md5)
	sum=$(md5sum <"$tmp/in") || fail 500 "Internal Server Error" "md5sum failed"
	printf '{"hash":"%s"}\n' "${sum%% *}" >"$tmp/out"
	respond 200 OK application/json "$tmp/out"
	;;
esac
