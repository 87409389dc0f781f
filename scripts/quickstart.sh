#!/usr/bin/env bash
# From a fresh Debian machine to a running influx-proxy in front of four local influxd.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="$ROOT/proxy.json"
DB=mydb

usage() {
    cat <<EOF
Usage: ${0##*/}

Quick start on Debian (safe to run again):
  1. apt-get install what is missing: curl, build-essential, pkg-config,
     influxdb (+ influxdb-client); Rust via rustup only if cargo is missing;
  2. start the local influxd backends named in proxy.json (scripts/influxd.sh start)
     and create database "$DB" on each;
  3. cargo build --release;
  4. (re)start the proxy with proxy.json (scripts/start.sh).
Stop everything with: scripts/stop.sh && scripts/influxd.sh stop
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
    echo "quickstart.sh: unknown argument: $1" >&2
    exit 2
    ;;
esac

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'quickstart.sh: error: %s\n' "$*" >&2
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

[[ -f "$CONFIG" ]] || die "$CONFIG not found"

step "system packages"
pkgs=()
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
[[ -e /etc/ssl/certs/ca-certificates.crt ]] || pkgs+=(ca-certificates)
command -v cc >/dev/null 2>&1 || pkgs+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
if [[ ${#pkgs[@]} -gt 0 ]]; then
    echo "installing ${pkgs[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}"
else
    echo "curl, cc and pkg-config are present"
fi
# influxdb and influxdb-client, without letting the package start its own service.
"$ROOT/scripts/influxd.sh" install
echo "influxd: $(command -v influxd)"

step "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: installing Rust with rustup"
    curl https://sh.rustup.rs -sSf | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
cargo --version

step "influxd backends"
# The local backends named in proxy.json ("url": "http://127.0.0.1:PORT"); default 8086-8089.
mapfile -t ports < <(tr -d '\n' <"$CONFIG" |
    grep -o '"url"[[:space:]]*:[[:space:]]*"http://\(127\.0\.0\.1\|localhost\):[0-9]*' |
    grep -o '[0-9]*$' | awk '!seen[$0]++')
[[ ${#ports[@]} -gt 0 ]] || ports=(8086 8087 8088 8089)
"$ROOT/scripts/influxd.sh" start "${ports[@]}"
for port in "${ports[@]}"; do
    out="$(curl -sS --noproxy '*' --max-time 10 -XPOST "http://127.0.0.1:$port/query" \
        --data-urlencode "q=CREATE DATABASE $DB")" || die "CREATE DATABASE $DB on port $port failed"
    [[ "$out" != *'"error"'* ]] || die "CREATE DATABASE $DB on port $port: $out"
    echo "influxd $port: database $DB ready"
done

step "cargo build --release"
(cd "$ROOT" && cargo build --release)

step "influx-proxy"
PID_FILE="${PID_FILE:-$ROOT/run/influx-proxy.pid}"
export PID_FILE
if [[ -s "$PID_FILE" ]] && kill -0 "$(tr -dc '0-9' <"$PID_FILE")" 2>/dev/null; then
    echo "already running: restarting it to pick up the fresh build"
    "$ROOT/scripts/stop.sh"
fi
"$ROOT/scripts/start.sh" -config "$CONFIG"

listen="$(tr -d '\n' <"$CONFIG" | grep -o '"listen_addr"[[:space:]]*:[[:space:]]*"[^"]*"' | head -n 1 |
    sed -e 's/.*:[[:space:]]*"\([^"]*\)"$/\1/')" || true
proxy_port="${listen##*:}"
[[ "$proxy_port" =~ ^[0-9]+$ ]] || proxy_port=7076
base="http://127.0.0.1:$proxy_port"

cat <<EOF

influx-proxy is up on $base, in front of influxd on ports ${ports[*]}
(database "$DB" exists on each). Logs: $ROOT/run/influx-proxy.log, $ROOT/run/influxd/<port>/influxd.log.

Write a point:
  curl -i -XPOST '$base/write?db=$DB' --data-binary 'cpu,host=a value=1'
Query it back:
  curl -G '$base/query' --data-urlencode 'db=$DB' --data-urlencode 'q=SELECT * FROM cpu'
See where it went (one backend per circle):
  curl '$base/replica?db=$DB&mm=cpu'
Stop everything (from $ROOT):
  scripts/stop.sh && scripts/influxd.sh stop
EOF
