#!/usr/bin/env bash
# Manage local InfluxDB 1.x (influxd) instances used as influx-proxy backends.
#
#   scripts/influxd.sh start|stop|status|install [PORT...]
#
# Each instance lives in run/influxd/<port>/ (config, pid file, log, meta/data/wal).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_DIR="$ROOT/run/influxd"
DEFAULT_PORTS=(8086 8087 8088 8089)
START_TIMEOUT="${START_TIMEOUT:-30}" # seconds to wait for /ping
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"   # seconds to wait after SIGTERM

usage() {
    cat <<EOF
Usage: ${0##*/} start|stop|status|install [PORT...]

Manage local influxd instances (HTTP on 127.0.0.1:PORT), one per port.
With no PORT: ${DEFAULT_PORTS[*]}.

  start    install influxdb if influxd is missing, write the config and start
           each instance in the background; wait (up to \$START_TIMEOUT=${START_TIMEOUT}s)
           until /ping answers 204. A running instance is left alone.
  stop     SIGTERM, wait up to \$STOP_TIMEOUT=${STOP_TIMEOUT}s, then SIGKILL.
  status   print up/down per port (exit 3 if any is down).
  install  apt-get install influxdb and influxdb-client if influxd/influx is missing.
  config PORT DIR RPC_PORT
           only write DIR/influxd.conf for an instance on PORT (bench.sh uses it).

Files: run/influxd/<port>/{influxd.conf,influxd.pid,influxd.log,meta,data,wal}.
The backup/RPC service binds 127.0.0.1:<PORT+10000> (PORT-10000 above 55535),
or the next free port above it when that one is taken.
EOF
}

log() { printf '%s\n' "$*"; }
die() {
    printf 'influxd.sh: error: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# apt-get install the given packages without letting their maintainer scripts
# start the system influxdb service (it would take ports 8086 and 8088).
apt_install() {
    local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        made_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update || rc=$?
    if [[ $rc -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" || rc=$?
    fi
    if [[ $made_policy -eq 1 ]]; then
        as_root rm -f "$policy"
    fi
    if [[ $rc -ne 0 ]]; then
        die "apt-get install $* failed (exit $rc)"
    fi
    # On a systemd machine the unit is enabled by the package: never rely on
    # (or collide with) it.
    if [[ " $* " == *" influxdb "* && -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now influxdb.service >/dev/null 2>&1 || true
    fi
}

# ensure_influxdb [client]: install influxdb when influxd is missing (and
# influxdb-client when influx is missing, if "client" is given).
ensure_influxdb() {
    local pkgs=()
    command -v influxd >/dev/null 2>&1 || pkgs+=(influxdb)
    if [[ "${1:-}" == client ]]; then
        command -v influx >/dev/null 2>&1 || pkgs+=(influxdb-client)
    fi
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        log "installing ${pkgs[*]} with apt-get"
        apt_install "${pkgs[@]}"
    fi
    command -v influxd >/dev/null 2>&1 || die "influxd is still not on PATH after installing influxdb"
}

# ping PORT -> prints the HTTP status code of GET /ping ("000" if no answer).
ping_code() {
    curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:$1/ping" 2>/dev/null || true
}

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

# running_pid PORT -> prints the pid of our influxd on PORT, fails if none.
running_pid() {
    local pidfile="$BASE_DIR/$1/influxd.pid" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" ]] || return 1
    alive "$pid" || return 1
    # Guard against a recycled pid: it must be an influxd.
    if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q influxd; then
        return 1
    fi
    printf '%s\n' "$pid"
}

# port_in_use PORT: a TCP socket holds local port PORT (any state but TIME_WAIT).
# Reads /proc/net/tcp{,6} so as not to connect (influxd logs stray connections).
port_in_use() {
    local hex
    hex="$(printf ':%04X' "$1")"
    if [[ -r /proc/net/tcp ]]; then
        awk -v h="$hex" 'FNR > 1 && $4 != "06" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# rpc_port PORT -> a free port for the backup/RPC service: PORT+10000
# (PORT-10000 above 55535), or the next free one above it.
rpc_port() {
    local port="$1" cand i
    if ((port + 10000 <= 65535)); then cand=$((port + 10000)); else cand=$((port - 10000)); fi
    for ((i = 0; i < 100; i++)); do
        if ((cand != port)) && ! port_in_use "$cand"; then
            echo "$cand"
            return 0
        fi
        cand=$((cand + 1))
        ((cand <= 65535)) || cand=1025
    done
    die "no free port for the RPC service of influxd $port"
}

write_config() {
    local port="$1" dir="$2" rpc="$3"
    cat >"$dir/influxd.conf" <<EOF
# Generated by scripts/influxd.sh for the instance on port $port.
# Upstream 1.x spells the opt-out "reporting-disabled"; Debian's build uses "reporting-enabled".
reporting-disabled = true
reporting-enabled = false
# Backup/RPC service: must not be the default 127.0.0.1:8088 (a backend port).
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$dir/meta"
  logging-enabled = false

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
  # influx-stress writes 100,000 series by default: the default limit (100,000) rejects points.
  max-values-per-tag = 0

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  enabled = false
EOF
}

tail_log() {
    local logfile="$1"
    if [[ -s "$logfile" ]]; then
        echo "---- last lines of $logfile ----" >&2
        tail -n 30 "$logfile" >&2
        echo "----" >&2
    else
        echo "($logfile is empty)" >&2
    fi
}

start_one() {
    local port="$1" dir="$BASE_DIR/$1" pid code i
    if pid="$(running_pid "$port")"; then
        log "influxd $port: already running (pid $pid)"
        return 0
    fi
    code="$(ping_code "$port")"
    if [[ "$code" != 000 ]]; then
        die "influxd $port: port $port already answers HTTP ($code) but not from an instance of ours; stop it first (the system service? 'systemctl stop influxdb')"
    fi
    mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
    rm -f "$dir/influxd.pid"
    local rpc logfile="$dir/influxd.log"
    rpc="$(rpc_port "$port")"
    write_config "$port" "$dir" "$rpc"
    # influxd's last line may lack a newline (a fatal error): keep our marker on its own line.
    if [[ -s "$logfile" && -n "$(tail -c 1 "$logfile")" ]]; then echo >>"$logfile"; fi
    printf '==== %s starting influxd on port %s (rpc %s)\n' "$(date '+%F %T')" "$port" "$rpc" >>"$logfile"
    # The child writes its own pid (exact even if setsid has to fork), then execs influxd.
    local launcher=(nohup)
    command -v setsid >/dev/null 2>&1 && launcher=(setsid nohup)
    # shellcheck disable=SC2016 # $$ / $0 / $@ are for the inner bash
    "${launcher[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$dir/influxd.pid" \
        influxd -config "$dir/influxd.conf" >>"$logfile" 2>&1 </dev/null &
    disown "$!" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -s "$dir/influxd.pid" ]] && break
        sleep 0.1
    done
    pid="$(tr -dc '0-9' <"$dir/influxd.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] || {
        tail_log "$logfile"
        die "influxd $port: did not start (no pid file)"
    }
    local deadline=$((SECONDS + START_TIMEOUT + 1))
    while :; do
        code="$(ping_code "$port")"
        if [[ "$code" == 204 ]]; then
            log "influxd $port: up (pid $pid, rpc port $rpc, log $logfile)"
            return 0
        fi
        if ! alive "$pid"; then
            rm -f "$dir/influxd.pid"
            tail_log "$logfile"
            die "influxd $port: exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$logfile"
            stop_one "$port" >&2 || true
            die "influxd $port: /ping did not answer 204 within ${START_TIMEOUT}s (last status $code); stopped it"
        fi
        sleep 0.2
    done
}

stop_one() {
    local port="$1" dir="$BASE_DIR/$1" pid
    if ! pid="$(running_pid "$port")"; then
        rm -f "$dir/influxd.pid"
        log "influxd $port: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT + 1))
    while alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if alive "$pid"; then
        log "influxd $port: still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL to $pid"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            alive "$pid" || break
            sleep 0.2
        done
    fi
    rm -f "$dir/influxd.pid"
    log "influxd $port: stopped (was pid $pid)"
}

status_one() {
    local port="$1" pid code
    code="$(ping_code "$port")"
    if pid="$(running_pid "$port")"; then
        if [[ "$code" == 204 ]]; then
            log "influxd $port: up (pid $pid)"
        else
            log "influxd $port: down (pid $pid alive but /ping answers $code)"
            return 1
        fi
    elif [[ "$code" == 204 ]]; then
        log "influxd $port: up (not started by this script)"
    else
        log "influxd $port: down"
        return 1
    fi
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    -h | --help | help)
        usage
        return 0
        ;;
    start | stop | status | install) shift ;;
    config)
        # config PORT DIR RPC: only write DIR/influxd.conf (scripts/bench.sh
        # uses it for its own instances, so both write the same config).
        [[ $# -eq 4 ]] || die "usage: influxd.sh config PORT DIR RPC_PORT"
        write_config "$2" "$3" "$4"
        return 0
        ;;
    "")
        usage >&2
        return 2
        ;;
    *)
        echo "influxd.sh: unknown command: $cmd" >&2
        usage >&2
        return 2
        ;;
    esac
    local ports=() p
    [[ $# -gt 0 ]] || set -- "${DEFAULT_PORTS[@]}"
    for p in "$@"; do
        if ! [[ "$p" =~ ^[0-9]{1,5}$ ]] || ((10#$p < 1 || 10#$p > 65535)); then
            die "not a port: $p"
        fi
        ports+=("$((10#$p))")
    done
    case "$cmd" in
    install) ensure_influxdb client ;;
    start)
        command -v curl >/dev/null 2>&1 || apt_install curl
        ensure_influxdb
        for p in "${ports[@]}"; do start_one "$p"; done
        ;;
    stop)
        for p in "${ports[@]}"; do stop_one "$p"; done
        ;;
    status)
        command -v curl >/dev/null 2>&1 || die "curl is missing"
        local down=0
        for p in "${ports[@]}"; do status_one "$p" || down=1; done
        [[ $down -eq 0 ]] || return 3
        ;;
    esac
}

main "$@"
