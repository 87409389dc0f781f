#!/usr/bin/env bash
# Stop the influx-proxy started by scripts/start.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STOP_TIMEOUT="${STOP_TIMEOUT:-15}"

usage() {
    cat <<EOF
Usage: ${0##*/}

Stop the influx-proxy whose pid is in \$PID_FILE (default run/influx-proxy.pid):
SIGTERM, wait up to \$STOP_TIMEOUT=${STOP_TIMEOUT}s for it to exit, SIGKILL as a last
resort. Prints "not running" and exits 0 when there is nothing to stop.
EOF
}

case "${1:-}" in
-h | -help | --help)
    usage
    exit 0
    ;;
"") ;;
*)
    usage >&2
    echo "stop.sh: unknown argument: $1" >&2
    exit 2
    ;;
esac

PID_FILE="${PID_FILE:-$ROOT/run/influx-proxy.pid}"
if [[ "$PID_FILE" != /* ]]; then PID_FILE="$PWD/$PID_FILE"; fi
BIN_NAME="${PROXY_BIN:-influx-proxy}"
BIN_NAME="${BIN_NAME##*/}"

# alive PID: the process exists and is not a zombie.
alive() {
    local pid="$1" state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
        [[ "$state" != Z ]] || return 1
    fi
    return 0
}

# ours PID: alive and (where /proc tells) really the proxy, not a recycled pid.
ours() {
    local pid="$1" cmd
    alive "$pid" || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 0
    [[ "$cmd" == *influx-proxy* || "$cmd" == *"$BIN_NAME"* ]]
}

pid=""
if [[ -s "$PID_FILE" ]]; then
    pid="$(tr -dc '0-9' <"$PID_FILE")"
fi
if [[ -z "$pid" ]] || ! ours "$pid"; then
    if [[ -e "$PID_FILE" ]]; then
        rm -f "$PID_FILE"
        echo "influx-proxy: not running (removed stale pid file $PID_FILE)"
    else
        echo "influx-proxy: not running (no $PID_FILE)"
    fi
    exit 0
fi

echo "influx-proxy: sending SIGTERM to pid $pid"
kill -TERM "$pid" 2>/dev/null || true
deadline=$((SECONDS + STOP_TIMEOUT + 1))
while alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.2
done
if alive "$pid"; then
    echo "influx-proxy: pid $pid still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL (last resort: unflushed data may be lost)" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
        alive "$pid" || break
        sleep 0.2
    done
    if alive "$pid"; then
        echo "stop.sh: error: pid $pid survived SIGKILL" >&2
        exit 1
    fi
    rm -f "$PID_FILE"
    echo "influx-proxy: killed (pid $pid)"
    exit 0
fi
rm -f "$PID_FILE"
echo "influx-proxy: stopped (pid $pid)"
