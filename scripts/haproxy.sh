#!/usr/bin/env bash
# Prints scripts/haproxy.cfg for your own proxies: the frontend's `bind`
# line and one `server` line per proxy replace the example ones; everything
# else is the file as it is (tests/proxy_tier.rs runs HAProxy on this output).
#
#   scripts/haproxy.sh [-listen ADDR] PROXY_ADDR... > influx-proxy.cfg
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$ROOT/scripts/haproxy.cfg"

usage() {
    cat <<EOF
Usage: ${0##*/} [-listen ADDR] PROXY_ADDR...

Prints $TEMPLATE with the frontend bound to ADDR (default *:8086) and one
server line per influx-proxy (host:port, in the order given: proxy-1,
proxy-2, ...). Check the result with: haproxy -c -f FILE
EOF
}

die() {
    printf 'haproxy.sh: error: %s\n' "$*" >&2
    exit 1
}

listen="*:8086"
proxies=()
while [ $# -gt 0 ]; do
    case "$1" in
        -listen | --listen)
            [ $# -ge 2 ] || die "-listen needs an address"
            listen="$2"
            shift 2
            ;;
        -h | -help | --help)
            usage
            exit 0
            ;;
        -*) die "unknown flag $1 (see -help)" ;;
        *)
            [[ "$1" == *:* ]] || die "proxy address $1 is not host:port"
            proxies+=("$1")
            shift
            ;;
    esac
done
[ ${#proxies[@]} -gt 0 ] || {
    usage >&2
    exit 2
}

# The first `bind` of `frontend influx` and the run of `server` lines of
# `backend influx_proxies` are replaced; a template without them is an error.
awk -v listen="$listen" -v servers="${proxies[*]}" '
    /^[a-z]/ { section = $1 " " $2 }
    section == "frontend influx" && /^[ \t]+bind[ \t]/ && !bound {
        print "    bind " listen; bound = 1; next
    }
    section == "backend influx_proxies" && /^[ \t]+server[ \t]/ {
        if (!served) {
            n = split(servers, addr, " ")
            for (i = 1; i <= n; i++) print "    server proxy-" i " " addr[i]
            served = 1
        }
        next
    }
    { print }
    END {
        if (!bound || !served) {
            print "haproxy.sh: the template lost its bind or server lines" > "/dev/stderr"
            exit 1
        }
    }
' "$TEMPLATE"
