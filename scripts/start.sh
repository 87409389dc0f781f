#!/usr/bin/env bash
# Start influx-proxy in the background: scripts/start.sh [-config FILE]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
START_TIMEOUT="${START_TIMEOUT:-30}"

usage() {
    cat <<EOF
Usage: ${0##*/} [-config FILE]

Start target/release/influx-proxy -config FILE (default: proxy.json at the repo
root) in the background, from the repo root (so a relative data_dir such as
"spool" lands there). Builds the release binary first if it is missing, then
waits up to \$START_TIMEOUT=${START_TIMEOUT}s for GET /ping on listen_addr to answer 204.

Environment:
  PID_FILE   pid file (default run/influx-proxy.pid)
  LOG_FILE   stdout+stderr of the proxy, appended (default run/influx-proxy.log)
  PROXY_BIN  binary to run (default \${CARGO_TARGET_DIR:-target}/release/influx-proxy)
Stop it with scripts/stop.sh (same PID_FILE).
EOF
}

die() {
    printf 'start.sh: error: %s\n' "$*" >&2
    exit 1
}

# abs PATH -> PATH made absolute against the current directory.
abs() {
    case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

config=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    -h | -help | --help)
        usage
        exit 0
        ;;
    -config | --config)
        [[ $# -ge 2 ]] || die "$1 needs a file"
        config="$2"
        shift 2
        ;;
    -config=* | --config=*)
        config="${1#*=}"
        shift
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
done

# Relative paths given by the user are taken from the current directory;
# a relative -config that is not there is also looked up at the repo root.
if [[ -z "$config" ]]; then
    config="$ROOT/proxy.json"
elif [[ "$config" != /* && ! -e "$config" && -e "$ROOT/$config" ]]; then
    config="$ROOT/$config"
else
    config="$(abs "$config")"
fi
[[ -f "$config" ]] || die "config file not found: $config"

PID_FILE="$(abs "${PID_FILE:-$ROOT/run/influx-proxy.pid}")"
LOG_FILE="$(abs "${LOG_FILE:-$ROOT/run/influx-proxy.log}")"
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" == /* ]] || target_dir="$ROOT/$target_dir"
BIN="$(abs "${PROXY_BIN:-$target_dir/release/influx-proxy}")"

alive() {
    local pid="$1" state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
        [[ "$state" != Z ]] || return 1
    fi
    return 0
}

# ours PID: alive, and (where /proc tells) its command line names the proxy,
# so that a pid recycled after a reboot is not taken for ours.
ours() {
    local pid="$1" cmd
    alive "$pid" || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 0
    [[ "$cmd" == *influx-proxy* || "$cmd" == *"${BIN##*/}"* ]]
}

# Refuse to start twice.
if [[ -s "$PID_FILE" ]]; then
    old="$(tr -dc '0-9' <"$PID_FILE")"
    if [[ -n "$old" ]] && ours "$old"; then
        die "already running (pid $old from $PID_FILE); stop it first with scripts/stop.sh"
    fi
    echo "removing stale pid file $PID_FILE (pid ${old:-?} is not a running influx-proxy)"
    rm -f "$PID_FILE"
fi

if [[ ! -x "$BIN" ]]; then
    if [[ -n "${PROXY_BIN:-}" ]]; then
        die "PROXY_BIN=$PROXY_BIN is not an executable file"
    fi
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "$BIN is missing and cargo is not installed (run scripts/quickstart.sh)"
    echo "building the release binary (cargo build --release)"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
    [[ -x "$BIN" ]] || die "$BIN still missing after cargo build --release"
fi

# listen_addr from the config: ":7076", "127.0.0.1:7076", "0.0.0.0:7076", "[::1]:7076".
listen="$(tr -d '\n' <"$config" | grep -o '"listen_addr"[[:space:]]*:[[:space:]]*"[^"]*"' | head -n 1 |
    sed -e 's/.*:[[:space:]]*"\([^"]*\)"$/\1/')" || true
[[ -n "$listen" ]] || listen=":7076"
port="${listen##*:}"
host="${listen%:*}"
[[ "$port" =~ ^[0-9]+$ ]] || die "cannot parse a port from listen_addr \"$listen\" in $config"
case "$host" in
"" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;;
esac
scheme=http
if tr -d '\n' <"$config" | grep -q '"https_enabled"[[:space:]]*:[[:space:]]*true'; then
    scheme=https
fi
ping_auth=0
if tr -d '\n' <"$config" | grep -q '"ping_auth_enabled"[[:space:]]*:[[:space:]]*true'; then
    ping_auth=1
fi
url="$scheme://$host:$port/ping"

ping_code() {
    curl -s -k --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true
}

command -v curl >/dev/null 2>&1 || die "curl is missing (apt-get install -y curl)"
code="$(ping_code)"
if [[ "$code" != 000 ]]; then
    die "$url already answers HTTP $code: something else listens on port $port"
fi

mkdir -p "$(dirname "$PID_FILE")" "$(dirname "$LOG_FILE")"
if [[ -s "$LOG_FILE" && -n "$(tail -c 1 "$LOG_FILE")" ]]; then echo >>"$LOG_FILE"; fi
printf '==== %s start.sh: %s -config %s\n' "$(date '+%F %T')" "$BIN" "$config" >>"$LOG_FILE"

launcher=(nohup)
command -v setsid >/dev/null 2>&1 && launcher=(setsid nohup)
# The child records its own pid (exact even if setsid has to fork), then execs the proxy.
cd "$ROOT"
# shellcheck disable=SC2016 # $$ / $0 / $@ are for the inner bash
"${launcher[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$BIN" -config "$config" >>"$LOG_FILE" 2>&1 </dev/null &
disown "$!" 2>/dev/null || true

for ((i = 0; i < 50; i++)); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.1
done
pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)"
[[ -n "$pid" ]] || die "the proxy did not start (no pid in $PID_FILE); see $LOG_FILE"

tail_log() {
    echo "---- last lines of $LOG_FILE ----" >&2
    tail -n 30 "$LOG_FILE" >&2 || true
    echo "----" >&2
}

deadline=$((SECONDS + START_TIMEOUT + 1))
while :; do
    code="$(ping_code)"
    if [[ "$code" == 204 || ($ping_auth -eq 1 && "$code" == 401) ]]; then
        echo "influx-proxy started: pid $pid, $url answers $code, log $LOG_FILE"
        exit 0
    fi
    if ! alive "$pid"; then
        rm -f "$PID_FILE"
        tail_log
        die "influx-proxy exited during startup"
    fi
    if ((SECONDS >= deadline)); then
        tail_log
        echo "start.sh: $url did not answer 204 within ${START_TIMEOUT}s (last status $code); stopping pid $pid" >&2
        PID_FILE="$PID_FILE" "$ROOT/scripts/stop.sh" >&2 || true
        exit 1
    fi
    sleep 0.2
done
