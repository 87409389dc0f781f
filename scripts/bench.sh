#!/usr/bin/env bash
# Benchmark influx-proxy's write path (and, with --queries, its query path)
# with the bundled load generator.
#
#   scripts/bench.sh [--backend sink|influxd] [--rounds N] [--proxy-cmd 'CMD'] ...
#   scripts/bench.sh --backend influxd --queries[-only] [--rounds N] ...
#
# Starts two backends (null sinks or real influxd), then runs rounds that
# alternate scenarios: influx-stress -> influx-proxy -> backends, [the same
# through another proxy given by --proxy-cmd], and influx-stress straight into
# one backend. Prints one table of medians/min/max; see -h. The query rounds
# alternate the same way with `influx-stress query` against a small dataset.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/run/bench"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN_DIR="$TARGET_DIR/release"
DB=stress

BACKEND=sink
TOPOLOGY=1x2
NBACKENDS=""
NCIRCLES=""
POINTS=""
BATCH=5000
CONCURRENCY=8
MEASUREMENTS=16
SERIES=100000
GZIP=0
ROUNDS=5
PROXY_CMD=""
SET_KEYS=()
KEEP=0
BUILD=1
WAIT_TIMEOUT=120
SETTLE=""
BACKEND_SET=0
QUERIES=none # none, also (after the write rounds) or only
QUERY='SELECT last(v) FROM q'
QUERY_REQUESTS=2000
QUERY_CONCURRENCY=4
QUERY_POINTS=10000 # dataset: measurement q, field v, QUERY_SERIES series
QUERY_SERIES=10
QUERY_WARMUP=25 # queries per client before the clock starts (not counted)
TRANSFER=0
TRANSFER_POINTS=2000000
TRANSFER_MEASUREMENTS=16
TRANSFER_SERIES=1600
TRANSFER_PARAMS=() # extra rebalance parameters: worker=N, batch=N
SERIES_SET=0
ROUNDS_SET=0
TIMEOUT_SET=0

usage() {
    cat <<EOF
Usage: ${0##*/} [options]

Builds the release binaries, starts two backends and measures influx-proxy
with the bundled load generator (target/release/influx-stress). Each round
restarts the proxy (so its peak RSS is per round) and empties the backends;
rounds alternate scenarios:
  influx-proxy  influx-stress -> influx-proxy -> the two backends
  proxy-cmd     the same through the command given by --proxy-cmd (if any)
  direct        influx-stress straight into the first backend (no proxy)
At the end one table gives, per scenario, the median, min and max of:
  acked pts/s      points/s acknowledged (the load generator's throughput)
  delivered pts/s  points / seconds from load start until the backends had
                   counted every point (polled every 100 ms, down to 10 ms
                   when the last point is due sooner)
  CPU s/M points   proxy user+system CPU seconds per million client points
                   (/proc/PID/stat, whole process session, over load start ->
                   all delivered)
  peak RSS MB      proxy VmHWM (summed over its process session)
  peak threads     proxy threads, the most seen while the round ran (polled
                   with the delivery counts)
The table and the raw per-round numbers are also written to run/bench/last.txt.

With --queries (after the write rounds) or --queries-only (no write rounds),
real influxd backends are used and the query benchmark runs: $QUERY_POINTS points
of measurement q ($QUERY_SERIES series, field v) are written through influx-proxy
and counted on the backend that owns q (GET /replica?db=$DB&mm=q, circle 1),
then rounds alternate 'influx-stress query' ($QUERY_CONCURRENCY keep-alive clients, each
warmed up by $QUERY_WARMUP uncounted queries) with
  influx-proxy  influx-stress query -> influx-proxy -> the owning backend
  proxy-cmd     the same through the command given by --proxy-cmd (if any)
  direct        influx-stress query straight into the owning backend
and a second table gives, per scenario, the median, min and max of latency
p50 and p99 (microseconds), queries/s and proxy CPU microseconds per query,
then the latency each proxy adds over direct at p50 and p99 (medians).

With --transfer (alone: no write or query rounds), two real influxd are used
and each round, per proxy (influx-proxy, then the --proxy-cmd one if given):
  1. both influxd are emptied and the points ($TRANSFER_POINTS by default, over
     $TRANSFER_MEASUREMENTS measurements m-<k>, $TRANSFER_SERIES series, fields n (integer) and v
     (float), one point per series every 10 s from 2024-01-01: the same points
     every run) are written straight into backend 1 by $CONCURRENCY keep-alive clients
     in batches of --batch, timed from the first request to the last 204:
     the direct write speed;
  2. a proxy whose only circle holds backend 1 must count m-0 as backend 1
     does; it is stopped;
  3. the proxy restarts with backends 1 and 2 in the circle; the owners under
     the new ring are asked from /replica (not timed); then
     POST /rebalance?circle_id=0&operation=add&dbs=$DB and /transfer/state and
     /transfer/stats are polled every 100 ms until the transfer is over (no
     circle transferring, resyncing false, and our extra operation.state done;
     a proxy without the operation key, such as the Go one: transferring
     seen and then over);
  4. backend 2 is counted (not timed): it must hold exactly the points of the
     measurements /replica gives it.
The table gives the direct write speed, points moved per second (points moved:
the sum of points_copied in /transfer/stats, else the count on backend 2,
divided by the time from the POST until the transfer is over), their ratio,
proxy CPU seconds (utime+stime) per million points moved (POST to over),
proxy peak RSS (VmHWM) and the points moved; one line per proxy sums it up
against the targets (moved >= 0.5 x direct, <= 1 CPU s per M moved). A proxy
that answers 404 to POST /rebalance stops the run with a message.

Options:
  --backend sink|influxd  null backends (bundled influx-sink, default) or real
                          influxd (/usr/bin/influxd, one temp instance each)
  --backends N            backends in all (default 2; sinks are cheap: 32 is fine)
  --circles C             circles they are spread over, in order (default 1;
                          must divide --backends); every point goes to each
  --topology 1x2|2x1      1 circle x 2 backends (default), or 2 circles of one
                          backend each (every point goes to both backends)
  --points N              points per round (default 4000000 with sinks,
                          2000000 with influxd)
  --batch N               points per request (default $BATCH)
  --concurrency N         concurrent writers (default $CONCURRENCY; the load
                          generator gets --pps N*batch)
  --measurements N        spread points over N measurements (default $MEASUREMENTS)
  --series N              series (default $SERIES)
  --gzip LEVEL            client gzip level, 0 = off (default $GZIP)
  --rounds N              rounds per scenario (default $ROUNDS)
  --proxy-cmd 'CMD'       also measure another proxy: CMD is run with bash -c,
                          {config} replaced by the generated config path and
                          {port} by the port it must listen on, e.g.
                          --proxy-cmd '/opt/go-proxy/influx-proxy -config {config}'
                          (the config uses only keys the Go influx-proxy knows)
  --timeout S             max seconds to wait for delivery per round (default $WAIT_TIMEOUT)
  --settle S              pause after emptying the backends, before each round
                          (default 1 with sinks, 3 with influxd)
  --no-build              use the binaries already in $BIN_DIR
  --set KEY=JSON          add a key to the generated config (repeatable), e.g.
                          --set spool_sync='"always"' --set rewrite_threads=1
  --keep                  keep the temp dir run/bench/<stamp>/ (configs, logs,
                          influxd data); it is also kept when the script fails
  --queries               after the write rounds, run the query benchmark
                          (implies --backend influxd; refused with sinks)
  --queries-only          run only the query benchmark
  --query 'Q'             the query, about measurement q (field v, tag s) since
                          direct goes to q's owner (default '$QUERY')
  --query-requests N      queries per round (default $QUERY_REQUESTS)
  --query-concurrency N   concurrent query clients (default $QUERY_CONCURRENCY)
  --transfer              run the transfer benchmark (implies --backend influxd;
                          --rounds defaults to 1 and --timeout, the limit on
                          one transfer, to 1800; --series sets its series)
  --transfer-points N     points written and rebalanced (default $TRANSFER_POINTS)
  --transfer-measurements M
                          measurements they are spread over (default $TRANSFER_MEASUREMENTS)
  --transfer-worker N     sent as worker=N with the POST (default: the proxy's)
  --transfer-batch N      sent as batch=N with the POST (default: the proxy's)
  -h, --help              this text

Example: ${0##*/} --rounds 3
         ${0##*/} --backend influxd --rounds 3 --points 1000000
         ${0##*/} --backend influxd --queries-only --rounds 3
         ${0##*/} --transfer --proxy-cmd '/opt/go-proxy/influx-proxy -config {config}'
         ${0##*/} --transfer --transfer-points 100000 --no-build
EOF
}

log() { printf '%s\n' "$*" >&2; }
die() {
    printf 'bench.sh: error: %s\n' "$*" >&2
    FAILED=1
    exit 1
}

need_int() { # NAME VALUE MIN
    if ! [[ "$2" =~ ^-?(0|[1-9][0-9]{0,15})$ ]] || (($2 < $3)); then
        die "$1 needs an integer >= $3, got '$2'"
    fi
}

while [[ $# -gt 0 ]]; do
    opt="$1"
    val=""
    case "$opt" in
    -h | --help)
        usage
        exit 0
        ;;
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    --queries) [[ "$QUERIES" == only ]] || QUERIES=also ;;
    --queries-only) QUERIES=only ;;
    --transfer) TRANSFER=1 ;;
    --set)
        [[ $# -ge 2 && "$2" == *=* ]] || die "--set needs KEY=JSON, e.g. --set spool_sync='\"always\"'"
        SET_KEYS+=("$2")
        shift
        ;;
    --*=*)
        set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
        continue
        ;;
    --backend | --topology | --backends | --circles | --points | --batch | --concurrency | --measurements | --series | --gzip | --rounds | --proxy-cmd | --timeout | --settle | --query | --query-requests | --query-concurrency | --transfer-points | --transfer-measurements | --transfer-worker | --transfer-batch)
        [[ $# -ge 2 ]] || die "$opt needs a value"
        val="$2"
        shift
        case "$opt" in
        --backend)
            BACKEND="$val"
            BACKEND_SET=1
            ;;
        --topology) TOPOLOGY="$val" ;;
        --backends) NBACKENDS="$val" ;;
        --circles) NCIRCLES="$val" ;;
        --points) POINTS="$val" ;;
        --batch) BATCH="$val" ;;
        --concurrency) CONCURRENCY="$val" ;;
        --measurements) MEASUREMENTS="$val" ;;
        --series)
            SERIES="$val"
            SERIES_SET=1
            ;;
        --gzip) GZIP="$val" ;;
        --rounds)
            ROUNDS="$val"
            ROUNDS_SET=1
            ;;
        --proxy-cmd) PROXY_CMD="$val" ;;
        --timeout)
            WAIT_TIMEOUT="$val"
            TIMEOUT_SET=1
            ;;
        --settle) SETTLE="$val" ;;
        --query) QUERY="$val" ;;
        --query-requests) QUERY_REQUESTS="$val" ;;
        --query-concurrency) QUERY_CONCURRENCY="$val" ;;
        --transfer-points) TRANSFER_POINTS="$val" ;;
        --transfer-measurements) TRANSFER_MEASUREMENTS="$val" ;;
        --transfer-worker)
            need_int "$opt" "$val" 1
            TRANSFER_PARAMS+=("worker=$val")
            ;;
        --transfer-batch)
            need_int "$opt" "$val" 1
            TRANSFER_PARAMS+=("batch=$val")
            ;;
        esac
        ;;
    *)
        usage >&2
        die "unknown argument: $opt"
        ;;
    esac
    shift
done

case "$BACKEND" in sink | influxd) ;; *) die "--backend must be sink or influxd, got '$BACKEND'" ;; esac
if [[ $TRANSFER -eq 1 ]]; then
    # Data must be stored to be moved; the write and query rounds are not run.
    [[ "$BACKEND" == sink && $BACKEND_SET -eq 1 ]] && die "--transfer needs real backends (sinks store nothing to move)"
    [[ "$QUERIES" == none ]] || die "--transfer runs alone: leave out --queries/--queries-only"
    BACKEND=influxd
    [[ $ROUNDS_SET -eq 1 ]] || ROUNDS=1
    [[ $TIMEOUT_SET -eq 1 ]] || WAIT_TIMEOUT=1800
fi
if [[ "$QUERIES" != none ]]; then
    # The sinks store nothing: there would be nothing to query.
    if [[ "$BACKEND" == sink && $BACKEND_SET -eq 1 ]]; then
        die "the query benchmark needs real backends: use --backend influxd with --queries/--queries-only (sinks store nothing to query)"
    fi
    BACKEND=influxd
fi
case "$TOPOLOGY" in 1x2 | 2x1) ;; *) die "--topology must be 1x2 or 2x1, got '$TOPOLOGY'" ;; esac
# --backends/--circles override --topology (1x2 = 2 backends in 1 circle,
# 2x1 = 2 circles of one backend).
if [[ -z "$NBACKENDS" ]]; then NBACKENDS=2; fi
if [[ -z "$NCIRCLES" ]]; then
    if [[ "$TOPOLOGY" == 2x1 && "$NBACKENDS" == 2 ]]; then NCIRCLES=2; else NCIRCLES=1; fi
fi
need_int --backends "$NBACKENDS" 1
need_int --circles "$NCIRCLES" 1
((NBACKENDS % NCIRCLES == 0)) || die "--backends ($NBACKENDS) must be a multiple of --circles ($NCIRCLES)"
if [[ $TRANSFER -eq 1 || "$QUERIES" != none ]] && [[ "$NBACKENDS" != 2 ]]; then
    die "the query and transfer benchmarks use two backends: leave out --backends"
fi
TOPOLOGY="${NCIRCLES}x$((NBACKENDS / NCIRCLES))"
if [[ -z "$POINTS" ]]; then
    if [[ "$BACKEND" == sink ]]; then POINTS=4000000; else POINTS=2000000; fi
fi
if [[ -z "$SETTLE" ]]; then
    if [[ "$BACKEND" == sink ]]; then SETTLE=1; else SETTLE=3; fi
fi
need_int --points "$POINTS" 1
need_int --batch "$BATCH" 1
need_int --concurrency "$CONCURRENCY" 1
need_int --measurements "$MEASUREMENTS" 1
need_int --series "$SERIES" 1
need_int --gzip "$GZIP" -1
((GZIP <= 9)) || die "--gzip must be -1..9"
need_int --rounds "$ROUNDS" 1
need_int --timeout "$WAIT_TIMEOUT" 1
need_int --query-requests "$QUERY_REQUESTS" 1
need_int --query-concurrency "$QUERY_CONCURRENCY" 1
[[ -n "${QUERY//[[:space:]]/}" ]] || die "--query needs a query"
[[ "$SETTLE" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--settle needs a number of seconds, got '$SETTLE'"
if [[ $TRANSFER -eq 1 ]]; then
    need_int --transfer-points "$TRANSFER_POINTS" 1
    need_int --transfer-measurements "$TRANSFER_MEASUREMENTS" 1
    [[ $SERIES_SET -eq 1 ]] && TRANSFER_SERIES="$SERIES"
    ((TRANSFER_SERIES >= TRANSFER_MEASUREMENTS)) ||
        die "--series ($TRANSFER_SERIES) must be at least --transfer-measurements ($TRANSFER_MEASUREMENTS): every measurement needs a series"
fi

for tool in curl python3 setsid; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
# The interpreter itself, not a wrapper such as a pyenv shim (slow to start).
PYTHON="$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)" || PYTHON=""
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
if [[ "$BACKEND" == influxd ]]; then
    command -v influxd >/dev/null 2>&1 || die "influxd is not installed (scripts/influxd.sh install)"
fi

# ---------------------------------------------------------------- processes

RUN_DIR=""
FAILED=0
LIVE=()          # pids (= process-group and session ids, via setsid) we started
RUNNER_PID=""    # the python round runner (it owns the load generator)
BACKEND_PIDS=()
BACKEND_PORTS=()
BACKEND_LOGS=()
PROXY_PID=""
PROXY_PORT=""
PROXY_LOG=""

# alive PID: the process exists and is not a zombie.
alive() {
    local pid="$1" state
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
    [[ "$state" != Z ]]
}

# group_alive PID: PID or another member of its process group still runs.
group_alive() {
    local pid="$1"
    alive "$pid" && return 0
    wait "$pid" 2>/dev/null || true # reap it if it is our child
    kill -0 -- "-$pid" 2>/dev/null
}

tail_log() {
    local file="$1"
    if [[ -s "$file" ]]; then
        log "---- last lines of $file ----"
        tail -n 30 "$file" >&2
        log "----"
    else
        log "($file is empty)"
    fi
}

# start_bg NAME LOG CWD CMD...: start CMD in its own session (so that
# everything it forks can be found and stopped), output to LOG; sets BG_PID.
start_bg() {
    local name="$1" logfile="$2" cwd="$3" pidfile i launcher
    shift 3
    pidfile="$RUN_DIR/.$name.pid"
    rm -f "$pidfile"
    # shellcheck disable=SC2016 # $$, $0, $1 and $@ belong to the inner bash
    setsid bash -c 'echo $$ >"$0"; cd "$1" || exit 1; shift; exec "$@"' \
        "$pidfile" "$cwd" "$@" >>"$logfile" 2>&1 </dev/null &
    launcher=$!
    for ((i = 0; i < 50; i++)); do
        [[ -s "$pidfile" ]] && break
        sleep 0.1
    done
    BG_PID="$(tr -dc '0-9' <"$pidfile" 2>/dev/null || true)"
    [[ -n "$BG_PID" ]] || BG_PID="$launcher"
    LIVE+=("$BG_PID")
}

# stop_bg PID TIMEOUT: SIGTERM its process group, SIGKILL after TIMEOUT s.
stop_bg() {
    local pid="$1" timeout="$2" deadline i keep=()
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while group_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if group_alive "$pid"; then
        log "bench.sh: process group $pid still running ${timeout}s after SIGTERM; sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            group_alive "$pid" || break
            sleep 0.1
        done
    fi
    wait "$pid" 2>/dev/null || true
    for i in "${LIVE[@]}"; do
        [[ "$i" == "$pid" ]] || keep+=("$i")
    done
    LIVE=("${keep[@]}")
}

cleanup() {
    local rc=$? pid i
    trap '' INT TERM
    if [[ -n "$RUNNER_PID" ]] && kill -0 "$RUNNER_PID" 2>/dev/null; then
        kill -TERM "$RUNNER_PID" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$RUNNER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$RUNNER_PID" 2>/dev/null || true
        wait "$RUNNER_PID" 2>/dev/null || true
    fi
    # Newest first: the proxy before the backends.
    for ((i = ${#LIVE[@]} - 1; i >= 0; i--)); do
        pid="${LIVE[i]}"
        stop_bg "$pid" 30
    done
    if [[ -n "$RUN_DIR" && -d "$RUN_DIR" ]]; then
        if [[ $KEEP -eq 1 || $FAILED -eq 1 ]]; then
            log "bench.sh: kept $RUN_DIR"
        else
            rm -rf "$RUN_DIR"
        fi
    fi
    exit "$rc"
}

# ping_code PORT -> HTTP status of GET /ping ("000" if none).
ping_code() {
    curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:$1/ping" 2>/dev/null || true
}

# wait_up WHAT PORT PID LOG TIMEOUT: wait until /ping answers 204.
wait_up() {
    local what="$1" port="$2" pid="$3" logfile="$4" timeout="$5" code deadline
    deadline=$((SECONDS + timeout))
    while :; do
        code="$(ping_code "$port")"
        [[ "$code" == 204 ]] && return 0
        if ! group_alive "$pid"; then
            tail_log "$logfile"
            die "$what exited during startup (port $port)"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$logfile"
            die "$what did not answer /ping with 204 on port $port within ${timeout}s (last status $code)"
        fi
        sleep 0.1
    done
}

# free_ports N -> N distinct free TCP ports on 127.0.0.1, below the ephemeral range.
free_ports() {
    "$PYTHON" "$RUN_DIR/bench.py" ports "$1"
}

# http METHOD PORT PATH [curl args...] -> body; fails on transport errors.
http() {
    local method="$1" port="$2" path="$3"
    shift 3
    curl -sS --noproxy '*' --max-time 120 -X "$method" "$@" "http://127.0.0.1:$port$path"
}

# ---------------------------------------------------------------- backends

write_influxd_config() { # DIR PORT RPC
    "$ROOT/scripts/influxd.sh" config "$2" "$1" "$3"
}

start_backends() {
    local ports i dir port logfile
    if [[ "$BACKEND" == sink ]]; then
        read -r -a ports <<<"$(free_ports "$NBACKENDS")"
    else
        read -r -a ports <<<"$(free_ports $((2 * NBACKENDS)))"
    fi
    [[ ${#ports[@]} -ge $NBACKENDS ]] || die "could not find free ports"
    for ((i = 0; i < NBACKENDS; i++)); do
        port="${ports[i]}"
        dir="$RUN_DIR/backend-$((i + 1))"
        mkdir -p "$dir"
        logfile="$dir/$BACKEND.log"
        if [[ "$BACKEND" == sink ]]; then
            start_bg "sink-$((i + 1))" "$logfile" "$dir" "$BIN_DIR/influx-sink" --listen "127.0.0.1:$port"
        else
            mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
            write_influxd_config "$dir" "$port" "${ports[i + NBACKENDS]}"
            start_bg "influxd-$((i + 1))" "$logfile" "$dir" influxd -config "$dir/influxd.conf"
        fi
        BACKEND_PIDS+=("$BG_PID")
        BACKEND_PORTS+=("$port")
        BACKEND_LOGS+=("$logfile")
    done
    for ((i = 0; i < NBACKENDS; i++)); do
        wait_up "$BACKEND backend $((i + 1))" "${BACKEND_PORTS[i]}" "${BACKEND_PIDS[i]}" "${BACKEND_LOGS[i]}" 60
        log "backend $((i + 1)): $BACKEND on 127.0.0.1:${BACKEND_PORTS[i]} (pid ${BACKEND_PIDS[i]})"
    done
}

# reset_backends: zero the sinks' counters / drop and recreate the database.
reset_backends() {
    local i port out
    for ((i = 0; i < NBACKENDS; i++)); do
        port="${BACKEND_PORTS[i]}"
        group_alive "${BACKEND_PIDS[i]}" || {
            tail_log "${BACKEND_LOGS[i]}"
            die "backend $((i + 1)) (port $port) is gone"
        }
        if [[ "$BACKEND" == sink ]]; then
            out="$(http POST "$port" /reset -o /dev/null -w '%{http_code}')" || die "POST /reset to sink $port failed"
            [[ "$out" == 204 || "$out" == 200 ]] || die "POST /reset to sink $port answered $out"
        else
            out="$(http POST "$port" /query --data-urlencode "q=DROP DATABASE $DB")" || die "DROP DATABASE on influxd $port failed"
            [[ "$out" != *'"error"'* ]] || die "DROP DATABASE on influxd $port: $out"
            out="$(http POST "$port" /query --data-urlencode "q=CREATE DATABASE $DB")" || die "CREATE DATABASE on influxd $port failed"
            [[ "$out" != *'"error"'* ]] || die "CREATE DATABASE on influxd $port: $out"
        fi
    done
}

# influxd_count PORT [QUERY] -> points stored in $DB (by default SELECT count(n)
# summed over measurements).
influxd_count() {
    http GET "$1" /query -G --data-urlencode "db=$DB" --data-urlencode "q=${2:-SELECT count(n) FROM /.*/}" |
        "$PYTHON" "$RUN_DIR/bench.py" sumcount
}

# ---------------------------------------------------------------- proxy

# write_proxy_config FILE PORT DIR [TOPOLOGY]: keys the Go influx-proxy also
# understands; the backends spread over NCIRCLES circles in order (--backends,
# --circles); TOPOLOGY 1x1 (the transfer's first step): backend 1 alone.
write_proxy_config() {
    local file="$1" port="$2" dir="$3" topology="${4:-$TOPOLOGY}" circles="" c b i per members
    per=$((NBACKENDS / NCIRCLES))
    for ((c = 0; c < NCIRCLES; c++)); do
        members=""
        for ((b = 0; b < per; b++)); do
            i=$((c * per + b))
            [[ "$topology" == 1x1 && $i -gt 0 ]] && break
            [[ -z "$members" ]] || members+=", "
            members+="{\"name\": \"backend-$((i + 1))\", \"url\": \"http://127.0.0.1:${BACKEND_PORTS[i]}\", \"username\": \"\", \"password\": \"\", \"auth_encrypt\": false}"
        done
        [[ -z "$circles" ]] || circles+=", "
        circles+="{\"name\": \"circle-$((c + 1))\", \"backends\": [$members]}"
        [[ "$topology" == 1x1 ]] && break
    done
    cat >"$file" <<EOF
{
    "circles": [$circles],
    "listen_addr": "127.0.0.1:$port",
    "db_list": [],
    "data_dir": "$dir/data",
    "tlog_dir": "$dir/log",
    "hash_key": "idx",
    "shard_key": "%db,%mm",
    "flush_size": 10000,
    "flush_time": 1,
    "check_interval": 1,
    "rewrite_interval": 10,
    "rewrite_threads": 5,
    "conn_pool_size": 20,
    "write_timeout": 10,
    "idle_timeout": 10,
    "username": "",
    "password": "",
    "auth_encrypt": false,
    "ping_auth_enabled": false,
    "write_tracing": false,
    "query_tracing": false,
    "pprof_enabled": false,
    "https_enabled": false$(for kv in "${SET_KEYS[@]}"; do printf ',\n    "%s": %s' "${kv%%=*}" "${kv#*=}"; done)
}
EOF
}

# start_proxy KIND DIR [TOPOLOGY]: KIND is "ours" or "theirs"; sets
# PROXY_PID/PORT/LOG.
start_proxy() {
    local kind="$1" dir="$2" topology="${3:-}" cfg cmd
    mkdir -p "$dir/data" "$dir/log"
    PROXY_PORT="$(free_ports 1)"
    [[ -n "$PROXY_PORT" ]] || die "could not find a free port"
    cfg="$dir/proxy.json"
    write_proxy_config "$cfg" "$PROXY_PORT" "$dir" "$topology"
    PROXY_LOG="$dir/proxy.log"
    if [[ "$kind" == ours ]]; then
        start_bg "proxy" "$PROXY_LOG" "$dir" "$BIN_DIR/influx-proxy" -config "$cfg"
    else
        cmd="${PROXY_CMD//\{config\}/$cfg}"
        cmd="${cmd//\{port\}/$PROXY_PORT}"
        start_bg "proxy" "$PROXY_LOG" "$dir" bash -c "$cmd"
    fi
    PROXY_PID="$BG_PID"
    wait_up "proxy ($kind)" "$PROXY_PORT" "$PROXY_PID" "$PROXY_LOG" 30
    sleep 0.5 # let a health checker see the backends once
}

stop_proxy() {
    [[ -n "$PROXY_PID" ]] || return 0
    stop_bg "$PROXY_PID" 15
    PROXY_PID=""
}

# ---------------------------------------------------------------- python helpers

write_helpers() {
    cat >"$RUN_DIR/bench.py" <<'PY'
"""Helpers for scripts/bench.sh: ports, round runner, count parsing, summary."""
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def cmd_ports(n):
    lo = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            hi = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        hi = 32768
    if hi <= lo + 100:
        lo, hi = 10000, 20000
    found, socks = [], []
    for port in random.sample(range(lo, hi), min(2000, hi - lo)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
        found.append(port)
        if len(found) == n:
            break
    for s in socks:
        s.close()
    print(" ".join(map(str, found)))


def request(method, port, path, timeout=5.0, body=None):
    """(status, body) of one request to 127.0.0.1:port; raises only on transport errors."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def get(port, path, timeout=5.0):
    status, body = request("GET", port, path, timeout)
    if status != 200:
        raise RuntimeError(f"GET {path} on {port}: HTTP {status}")
    return body


def read_counter(mode, port):
    """(points received OK, points refused) so far on one backend."""
    if mode == "sink":
        return int(get(port, "/count").strip()), 0
    stats = json.loads(get(port, "/debug/vars"))
    for key, val in stats.items():
        if key.startswith("httpd") and isinstance(val, dict):
            v = val.get("values") or {}
            return int(v.get("pointsWrittenOK", 0)), int(v.get("pointsWrittenFail", 0)) + int(
                v.get("pointsWrittenDropped", 0)
            )
    raise RuntimeError(f"no httpd stats in /debug/vars of {port}")


def session_procs(sid):
    procs = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        if int(rest[3]) == sid and rest[0] != "Z":
            procs.append((int(name), rest))
    return procs


def cpu_seconds(sid):
    """utime+stime (+ reaped children's) of every process in session sid."""
    tck = os.sysconf("SC_CLK_TCK")
    return sum(sum(int(x) for x in rest[11:15]) for _, rest in session_procs(sid)) / tck


def status_sum(sid, field):
    """The sum of a /proc/PID/status field (VmHWM: kB, Threads: count) over
    every process in session sid."""
    total = 0
    for pid, _ in session_procs(sid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def hwm_kb(sid):
    return status_sum(sid, "VmHWM")


def threads_of(sid):
    """Threads of every process in session sid."""
    return status_sum(sid, "Threads")


def cmd_round(spec_json):
    spec = json.loads(spec_json)
    mode, ports, target = spec["mode"], spec["ports"], spec["target"]
    sid = spec.get("proxy_pid") or 0
    stress = None

    def on_term(_sig, _frame):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    result = {"target": target, "error": ""}
    try:
        base = {p: read_counter(mode, p) for p in ports}
        cpu0 = cpu_seconds(sid) if sid else None
        out = open(spec["stress_out"], "w")
        t0 = time.monotonic()
        stress = subprocess.Popen(spec["stress"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        exit_times = []
        exited = threading.Event()

        def watch():
            stress.wait()
            exit_times.append(time.monotonic())
            exited.set()

        threading.Thread(target=watch, daemon=True).start()
        deadline = t0 + spec["timeout"]
        t_done = None
        t_exit = None
        total = refused = 0
        peak_threads = threads_of(sid) if sid else 0
        while True:
            if sid:
                peak_threads = max(peak_threads, threads_of(sid))
            if t_exit is None and exited.is_set():
                t_exit = exit_times[0]
            try:
                total = refused = 0
                for p in ports:
                    ok, bad = read_counter(mode, p)
                    total += ok - base[p][0]
                    refused += bad - base[p][1]
            except (OSError, RuntimeError, ValueError) as e:
                result["error"] = f"counting: {e}"
            now = time.monotonic()
            if total >= target:
                t_done = now
                break
            if now >= deadline:
                break
            if t_exit is not None and stress.returncode != 0 and now - t_exit > 5:
                break  # the load generator failed: what is missing will not come
            # Every 100 ms, but sooner when the current rate says the last point
            # is due before that (so short runs are not rounded up by a whole poll).
            pause = 0.1
            if total > 0:
                pause = min(pause, max(0.01, (target - total) * (now - t0) / total))
            if t_exit is not None:
                time.sleep(0.01)
            else:
                exited.wait(pause)  # wake up as soon as the load generator is done
        end = t_done if t_done is not None else time.monotonic()
        if sid:
            result["cpu_s"] = cpu_seconds(sid) - cpu0
            result["hwm_kb"] = hwm_kb(sid)
            result["threads"] = max(peak_threads, threads_of(sid))
            result["proxy_alive"] = bool(session_procs(sid))
        result["delivered"] = total
        result["refused"] = refused
        result["elapsed_s"] = end - t0
        result["complete"] = t_done is not None
        try:
            stress.wait(timeout=max(1.0, deadline + 10 - time.monotonic()))
        except subprocess.TimeoutExpired:
            stress.kill()
            stress.wait()
            result["error"] = (result["error"] + "; " if result["error"] else "") + "load generator killed"
        result["stress_rc"] = stress.returncode
        out.close()
        result["stress"] = last_json(spec["stress_out"])
    finally:
        if stress is not None and stress.poll() is None:
            stress.kill()
            stress.wait()
    print(json.dumps(result))


def cmd_sumcount():
    data = json.load(sys.stdin)
    if "error" in data:
        raise SystemExit(f"count query: {data['error']}")
    total = 0
    for res in data.get("results", []):
        if "error" in res:
            raise SystemExit(f"count query: {res['error']}")
        for series in res.get("series", []):
            for row in series.get("values", []):
                total += int(row[1] or 0)
    print(total)


def cmd_record(result_file, scenario, rnd, points, extra):
    """Turn a runner result into one raw row (JSON line) and print it."""
    with open(result_file) as f:
        r = json.load(f)
    s = r.get("stress") or {}
    points = int(points)
    mpts = points / 1e6
    row = {
        "round": int(rnd),
        "scenario": scenario,
        "acked_pps": s.get("throughput"),
        "delivered_pps": points / r["elapsed_s"] if r.get("complete") else None,
        "cpu_s_per_mpts": r["cpu_s"] / mpts if "cpu_s" in r else None,
        "rss_mb": r["hwm_kb"] / 1024 if "hwm_kb" in r else None,
        "threads": r.get("threads"),
        "elapsed_s": round(r.get("elapsed_s", 0), 3),
        "load_s": s.get("seconds"),
        "p50_ms": s.get("p50_ms"),
        "p99_ms": s.get("p99_ms"),
        "load_errors": s.get("errors"),
        "failed_points": s.get("failed_points"),
        "target": r["target"],
        "delivered": r.get("delivered"),
        "refused": r.get("refused"),
        "stored": None,
        "ok": bool(r.get("complete")) and not s.get("errors") and r.get("stress_rc") == 0,
        "note": r.get("error", ""),
    }
    row.update(json.loads(extra))
    if row["stored"] is not None and row["stored"] != row["target"]:
        row["ok"] = False
        row["note"] = (row["note"] + "; " if row["note"] else "") + f"stored {row['stored']} != {row['target']}"
    if not r.get("complete"):
        row["note"] = (row["note"] + "; " if row["note"] else "") + (
            f"only {row['delivered']} of {row['target']} points counted"
        )
    if s == {}:
        row["note"] = (row["note"] + "; " if row["note"] else "") + f"no JSON from the load generator (rc {r.get('stress_rc')})"
    print(json.dumps(row))


def fmt(v, kind):
    if v is None:
        return "-"
    if kind == "pps":
        return f"{v:,.0f}"
    if kind == "cpu":
        return f"{v:.3f}"
    if kind == "int":
        return f"{v:.0f}"
    return f"{v:.1f}"


def cmd_line(row_json):
    r = json.loads(row_json)
    parts = [
        f"round {r['round']} {r['scenario']:<13}",
        f"acked {fmt(r['acked_pps'], 'pps')}/s",
        f"delivered {fmt(r['delivered_pps'], 'pps')}/s",
    ]
    if r["cpu_s_per_mpts"] is not None:
        parts.append(f"cpu {fmt(r['cpu_s_per_mpts'], 'cpu')} s/M")
        parts.append(f"rss {fmt(r['rss_mb'], 'mb')} MB")
        if r.get("threads") is not None:
            parts.append(f"threads {fmt(r['threads'], 'int')}")
    parts.append(f"p99 {r['p99_ms']} ms")
    if not r["ok"]:
        parts.append(f"FAILED: {r['note']}")
    elif r["note"]:
        parts.append(f"({r['note']})")
    print("  ".join(parts))


def last_json(path):
    """The last line of a file that parses as a JSON object (the load
    generator's --json summary), or None."""
    summary = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    summary = json.loads(line)
                except ValueError:
                    pass
    return summary


def rounds_table(raw_file, metrics, optional):
    """Rows of raw_file as (lines of the median/min/max table, medians by
    (scenario, key), scenario order, rows). `optional` metrics are left out
    for a scenario with no value (e.g. CPU for the direct run)."""
    rows = [json.loads(line) for line in open(raw_file) if line.strip()]
    order = []
    for r in rows:
        if r["scenario"] not in order:
            order.append(r["scenario"])
    table = [("scenario", "metric", "median", "min", "max", "rounds")]
    medians = {}
    for sc in order:
        srows = [r for r in rows if r["scenario"] == sc]
        ok = [r for r in srows if r["ok"]]
        for key, label, kind in metrics:
            vals = [r.get(key) for r in ok if r.get(key) is not None]
            if not vals and key in optional:
                continue
            med = statistics.median(vals) if vals else None
            medians[(sc, key)] = med
            table.append(
                (
                    sc,
                    label,
                    fmt(med, kind),
                    fmt(min(vals), kind) if vals else "-",
                    fmt(max(vals), kind) if vals else "-",
                    f"{len(vals)}/{len(srows)}",
                )
            )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for i, row in enumerate(table):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [row[j].rjust(widths[j]) for j in range(2, len(row))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines, medians, order, rows


def failed_rounds(rows):
    return [
        f"round {r['round']} {r['scenario']} FAILED (not in the table): {r['note']}"
        for r in rows
        if not r["ok"]
    ]


def cmd_summary(params_json, raw_file):
    params = json.loads(params_json)
    metrics = [
        ("acked_pps", "acked pts/s", "pps"),
        ("delivered_pps", "delivered pts/s", "pps"),
        ("cpu_s_per_mpts", "CPU s/M points", "cpu"),
        ("rss_mb", "peak RSS MB", "mb"),
        ("threads", "peak threads", "int"),
    ]
    lines, medians, order, rows = rounds_table(
        raw_file, metrics, ("cpu_s_per_mpts", "rss_mb", "threads")
    )
    out = [
        "influx-proxy bench: backend={backend} topology={topology} points={points} batch={batch} "
        "concurrency={concurrency} measurements={measurements} series={series} gzip={gzip} "
        "rounds={rounds} cores={cores}".format(**params)
    ]
    out += lines
    direct = medians.get(("direct", "delivered_pps"))
    for sc in order:
        d = medians.get((sc, "delivered_pps"))
        if sc != "direct" and d and direct:
            out.append(f"{sc}: delivered {100.0 * d / direct:.1f}% of direct (medians)")
    out += failed_rounds(rows)
    print("\n".join(out))


def cmd_owners():
    """Ports of the backends a /replica answer names, in circle order."""
    from urllib.parse import urlsplit

    data = json.load(sys.stdin)
    ports = []
    for entry in sorted(data, key=lambda e: (e.get("circle") or {}).get("id", 0)):
        port = urlsplit(entry["backend"]["url"]).port
        if port is None:
            raise SystemExit(f"owners: no port in {entry['backend']['url']!r}")
        ports.append(str(port))
    if not ports:
        raise SystemExit("owners: /replica named no backend")
    print(" ".join(ports))


def cmd_qround(out_file, sid, timeout, *stress):
    """Run one `influx-stress query` round; print its JSON summary and the proxy's CPU."""
    sid = int(sid)
    proc = None

    def on_term(_sig, _frame):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    result = {"error": ""}
    try:
        cpu0 = cpu_seconds(sid) if sid else None
        with open(out_file, "w") as out:
            proc = subprocess.Popen(list(stress), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                proc.wait(timeout=float(timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                result["error"] = f"load generator killed after {timeout} s"
        if sid:
            result["cpu_s"] = cpu_seconds(sid) - cpu0
            result["proxy_alive"] = bool(session_procs(sid))
        result["stress_rc"] = proc.returncode
        result["stress"] = last_json(out_file)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    print(json.dumps(result))


def cmd_qrecord(result_file, scenario, rnd, requests):
    """Turn a query round's result into one raw row (JSON line) and print it."""
    with open(result_file) as f:
        r = json.load(f)
    s = r.get("stress") or {}
    requests = int(requests)
    done = s.get("requests") or 0
    row = {
        "round": int(rnd),
        "scenario": scenario,
        "qps": s.get("qps"),
        "p50_us": s.get("p50_us"),
        "p90_us": s.get("p90_us"),
        "p99_us": s.get("p99_us"),
        "max_us": s.get("max_us"),
        # The proxy also answered the warm-up queries in that time.
        "cpu_us_per_query": r["cpu_s"] * 1e6 / (done + (s.get("warmup") or 0)) if "cpu_s" in r and done else None,
        "requests": done,
        "errors": s.get("errors"),
        "seconds": s.get("seconds"),
        "ok": r.get("stress_rc") == 0 and s.get("errors") == 0 and done == requests,
        "note": r.get("error", ""),
    }

    def note(msg):
        row["note"] = (row["note"] + "; " if row["note"] else "") + msg

    if s == {}:
        note(f"no JSON from the load generator (rc {r.get('stress_rc')})")
    else:
        if s.get("errors"):
            note(f"{s['errors']} of {done} queries failed")
        if done != requests:
            note(f"{done} of {requests} queries sent")
    print(json.dumps(row))


def cmd_qline(row_json):
    r = json.loads(row_json)
    parts = [
        f"round {r['round']} {r['scenario']:<13}",
        f"p50 {fmt(r['p50_us'], 'mb')} us",
        f"p99 {fmt(r['p99_us'], 'mb')} us",
        f"{fmt(r['qps'], 'pps')} queries/s",
    ]
    if r["cpu_us_per_query"] is not None:
        parts.append(f"cpu {fmt(r['cpu_us_per_query'], 'mb')} us/query")
    if not r["ok"]:
        parts.append(f"FAILED: {r['note']}")
    elif r["note"]:
        parts.append(f"({r['note']})")
    print("  ".join(parts))


def cmd_qsummary(params_json, raw_file, query):
    params = json.loads(params_json)
    metrics = [
        ("p50_us", "latency p50 us", "mb"),
        ("p99_us", "latency p99 us", "mb"),
        ("qps", "queries/s", "pps"),
        ("cpu_us_per_query", "CPU us/query", "mb"),
    ]
    lines, medians, order, rows = rounds_table(raw_file, metrics, ("cpu_us_per_query",))
    out = [
        "influx-proxy query bench: backend={backend} topology={topology} dataset={points} points/"
        "{series} series concurrency={concurrency} requests={requests} warmup={warmup}/client "
        "rounds={rounds} cores={cores}".format(**params),
        f"query: {query}",
    ]
    out += lines
    d50, d99, dq = (medians.get(("direct", k)) for k in ("p50_us", "p99_us", "qps"))
    for sc in order:
        p50, p99, q = (medians.get((sc, k)) for k in ("p50_us", "p99_us", "qps"))
        if sc == "direct" or None in (p50, p99, d50, d99):
            continue
        line = f"{sc}: adds {p50 - d50:+.1f} us at p50, {p99 - d99:+.1f} us at p99 over direct"
        if q and dq:
            line += f"; {100.0 * q / dq:.1f}% of direct queries/s"
        out.append(line + " (medians)")
    out += failed_rounds(rows)
    print("\n".join(out))


def print_raw(raw_file, cols, cell):
    """The rows of raw_file (JSON lines) as a plain table of columns cols."""
    rows = [json.loads(line) for line in open(raw_file) if line.strip()]
    table = [cols] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(row[i].ljust(widths[i]) for i in range(len(cols))).rstrip())


def cmd_qraw(raw_file):
    cols = [
        "round", "scenario", "qps", "p50_us", "p90_us", "p99_us", "max_us", "cpu_us_per_query",
        "requests", "errors", "seconds", "ok", "note",
    ]

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}"
        return str(v)

    print_raw(raw_file, cols, cell)


def cell_pps_or_ratio(v):
    """Rates as integers, small values (ratios, seconds, CPU) with 3 decimals."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if v >= 1000 else f"{v:.3f}"
    return str(v)


def cmd_raw(raw_file):
    cols = [
        "round", "scenario", "acked_pps", "delivered_pps", "cpu_s_per_mpts", "rss_mb", "elapsed_s",
        "load_s", "p50_ms", "p99_ms", "load_errors", "target", "delivered", "refused", "stored", "ok", "note",
    ]
    print_raw(raw_file, cols, cell_pps_or_ratio)


# ---------------------------------------------------------------- transfer scenario

# The transfer scenario's points are the same in every run: series s (tag
# host=h-<s>) belongs to measurement m-<s mod M>; its t-th point has n=<t>i,
# a float v, and the time T0 + TSTEP * t seconds.
T0 = 1704067200  # 2024-01-01T00:00:00Z
TSTEP = 10


def transfer_bodies(points, measurements, series, batch):
    bodies, lines = [], []
    for i in range(points):
        t, s = divmod(i, series)
        lines.append(f"m-{s % measurements},host=h-{s} n={t}i,v={t % 1000}.{s % 10} {T0 + TSTEP * t}")
        if len(lines) == batch:
            bodies.append("\n".join(lines).encode())
            lines = []
    if lines:
        bodies.append("\n".join(lines).encode())
    return bodies


def cmd_tload(port, db, points, measurements, series, batch, concurrency):
    """Write the scenario's points straight into one influxd with `concurrency`
    keep-alive clients; print the time from the first request to the last 204."""
    port, points, concurrency = int(port), int(points), int(concurrency)
    bodies = transfer_bodies(points, int(measurements), int(series), int(batch))
    lock = threading.Lock()
    todo = iter(bodies)
    errors = []

    def writer():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while not errors:
                with lock:
                    body = next(todo, None)
                if body is None:
                    return
                conn.request("POST", f"/write?db={db}&precision=s", body=body)
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status != 204:
                    errors.append(f"HTTP {resp.status}: {answer[:200].decode(errors='replace')}")
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    print(json.dumps({"points": points, "seconds": seconds, "pps": points / seconds, "errors": errors[:3]}))


def measurement_counts(port, db):
    """{measurement: points} of db on one influxd (count of field n)."""
    q = urllib.parse.urlencode({"db": db, "q": "SELECT count(n) FROM /.*/"})
    data = json.loads(get(port, f"/query?{q}", timeout=300))
    counts = {}
    for res in data.get("results", []):
        if "error" in res:
            raise RuntimeError(f"count query on {port}: {res['error']}")
        for series in res.get("series", []):
            counts[series["name"]] = sum(int(row[1] or 0) for row in series.get("values", []))
    return counts


def circle0_owner_port(proxy_port, db, mm):
    """Port of the backend of circle 0 that /replica names for (db, mm)."""
    q = urllib.parse.urlencode({"db": db, "mm": mm})
    for entry in json.loads(get(proxy_port, f"/replica?{q}")):
        if (entry.get("circle") or {}).get("id", 0) == 0:
            return urllib.parse.urlsplit(entry["backend"]["url"]).port
    raise RuntimeError(f"/replica names no backend of circle 0 for {mm}")


def json_object(body):
    """A JSON object (dict) from body, else ValueError."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {body[:200]!r}")
    return data


def transfer_finished(state, stats, seen_running):
    """(finished, failure message) from one /transfer/state and /transfer/stats
    answer. With our `operation` key: done once no circle transfers, resyncing
    is false and the operation is done (or gone after it was seen running).
    Without it (the Go proxy): once no circle transfers after one was seen
    transferring, or every backend's measurements are done (a transfer
    shorter than one poll)."""
    busy = any(c.get("transferring") for c in state.get("circles", [])) or bool(state.get("resyncing"))
    if "operation" in state:
        op = state.get("operation") or {}
        if op.get("state") in ("failed", "stopped"):
            return True, f"the operation is {op['state']}: {op.get('error') or 'no error given'}"
        return (not busy and (op.get("state") == "done" or (not op and seen_running))), ""
    if busy:
        return False, ""
    if seen_running:
        return True, ""
    totals = [(s.get("measurement_total", 0), s.get("measurement_done", 0)) for s in stats.values() if isinstance(s, dict)]
    return bool(totals) and sum(t for t, _ in totals) > 0 and all(d >= t for t, d in totals), ""


def cmd_transfer(spec_json):
    """POST /rebalance (add) to the proxy, poll /transfer/state and /transfer/stats
    until the transfer is over; print what moved, how fast and at what cost."""
    spec = json.loads(spec_json)
    proxy, sid, db = spec["proxy_port"], spec["proxy_pid"], spec["db"]
    src, dst = spec["source_port"], spec["dest_port"]

    def on_term(_sig, _frame):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    result = {"error": "", "note": ""}
    # Not timed: what is there and what should move (the owners under the new ring).
    counts = measurement_counts(src, db)
    result["source_points"] = sum(counts.values())
    try:
        owners = {mm: circle0_owner_port(proxy, db, mm) for mm in counts}
        result["expected"] = sum(n for mm, n in counts.items() if owners[mm] == dst)
        result["measurements_moving"] = sum(1 for mm in counts if owners[mm] == dst)
    except (OSError, RuntimeError, ValueError, KeyError, http.client.HTTPException) as e:
        result["note"] = f"no owners from /replica ({e})"
    path = f"/rebalance?circle_id=0&operation=add&dbs={db}" + "".join(f"&{p}" for p in spec["params"])
    cpu0 = cpu_seconds(sid)
    t0 = time.monotonic()
    status, body = request("POST", proxy, path, timeout=30)
    result["post_status"] = status
    result["post_body"] = body[:300].decode(errors="replace").strip()
    if status != 202:
        print(json.dumps(result))
        return
    deadline = t0 + spec["timeout"]
    seen_running = False
    state, stats, end, polls = {}, {}, None, 0
    stats_path = "/transfer/stats?circle_id=0&type=rebalance"
    while True:
        try:
            # The state every 100 ms, the stats every second (they cost the proxy more).
            state = json_object(get(proxy, "/transfer/state"))
            if polls % 10 == 0:
                stats = json_object(get(proxy, stats_path))
            polls += 1
        except (OSError, RuntimeError, ValueError, http.client.HTTPException) as e:
            result["error"] = f"polling: {e}"
            if not session_procs(sid):
                result["error"] = "the proxy exited during the transfer"
                break
        else:
            result["error"] = ""
            finished, failure = transfer_finished(state, stats, seen_running)
            if finished:
                end = time.monotonic()
                result["error"] = failure
                break
            op = state.get("operation") or {}
            seen_running = (
                seen_running
                or any(c.get("transferring") for c in state.get("circles", []))
                or op.get("state") == "running"
            )
        if time.monotonic() >= deadline:
            result["error"] = f"not finished after {spec['timeout']} s"
            break
        time.sleep(0.1)
    result["finished"] = end is not None and not result["error"]
    result["seconds"] = (end or time.monotonic()) - t0
    result["cpu_s"] = cpu_seconds(sid) - cpu0
    result["hwm_kb"] = hwm_kb(sid)
    try:
        stats = json_object(get(proxy, stats_path))
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as e:
        result["note"] = "; ".join(n for n in (result["note"], f"final stats: {e}") if n)
    result["state"], result["stats"] = state, stats
    copied = [s.get("points_copied") for s in stats.values() if isinstance(s, dict)]
    result["points_copied"] = sum(copied) if copied and None not in copied else None
    result["verified"] = sum(s.get("measurements_verified", 0) for s in stats.values() if isinstance(s, dict))
    # Not timed: what the new backend holds now.
    try:
        result["dest_points"] = sum(measurement_counts(dst, db).values())
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as e:
        result["dest_points"] = None
        result["note"] = "; ".join(n for n in (result["note"], f"counting the new backend: {e}") if n)
    print(json.dumps(result))


def cmd_trecord(load_file, transfer_file, scenario, rnd):
    """One raw row (JSON line) of a transfer round: the direct load and the transfer."""
    with open(load_file) as f:
        ld = json.load(f)
    with open(transfer_file) as f:
        tr = json.load(f)
    # Moved: what the proxy says it copied, else what the new backend holds.
    moved = tr.get("points_copied")
    if moved is None:
        moved = tr.get("dest_points")
    ok = bool(tr.get("finished"))
    notes = [n for n in (tr.get("note"), tr.get("error")) if n]
    if tr.get("expected") is not None and tr.get("dest_points") != tr["expected"]:
        ok = False
        notes.append(f"new backend holds {tr.get('dest_points')} points, {tr['expected']} expected")
    if tr.get("points_copied") is not None and tr["points_copied"] != tr.get("dest_points"):
        notes.append(f"points_copied {tr['points_copied']} != {tr.get('dest_points')} on the new backend")
    if not moved:
        ok = False
        notes.append("nothing moved")
    seconds = tr.get("seconds")
    moved_pps = moved / seconds if ok and seconds else None
    row = {
        "round": int(rnd),
        "scenario": scenario,
        "direct_pps": ld["pps"],
        "moved_pps": moved_pps,
        "ratio": moved_pps / ld["pps"] if moved_pps else None,
        "cpu_s_per_mmoved": tr["cpu_s"] / (moved / 1e6) if ok and "cpu_s" in tr else None,
        "rss_mb": tr["hwm_kb"] / 1024 if "hwm_kb" in tr else None,
        "moved": moved,
        "expected": tr.get("expected"),
        "dest_points": tr.get("dest_points"),
        "seconds": seconds,
        "cpu_s": tr.get("cpu_s"),
        "measurements": tr.get("measurements_moving"),
        "verified": tr.get("verified") if "operation" in (tr.get("state") or {}) else None,
        "ok": ok,
        "note": "; ".join(notes),
    }
    print(json.dumps(row))


def cmd_tline(row_json):
    r = json.loads(row_json)
    parts = [
        f"round {r['round']} {r['scenario']:<13}",
        f"direct write {fmt(r['direct_pps'], 'pps')} pts/s",
        f"moved {fmt(r['moved'], 'pps')} pts in {fmt(r['seconds'], 'cpu')} s = {fmt(r['moved_pps'], 'pps')} pts/s",
        f"cpu {fmt(r['cpu_s_per_mmoved'], 'cpu')} s/M moved",
        f"rss {fmt(r['rss_mb'], 'mb')} MB",
    ]
    if not r["ok"]:
        parts.append(f"FAILED: {r['note']}")
    elif r["note"]:
        parts.append(f"({r['note']})")
    print("  ".join(parts))


def cmd_tsummary(params_json, raw_file):
    params = json.loads(params_json)
    metrics = [
        ("direct_pps", "direct write pts/s", "pps"),
        ("moved_pps", "moved pts/s", "pps"),
        ("ratio", "moved / direct", "cpu"),
        ("cpu_s_per_mmoved", "CPU s/M moved", "cpu"),
        ("rss_mb", "peak RSS MB", "mb"),
        ("moved", "points moved", "pps"),
    ]
    lines, medians, order, rows = rounds_table(raw_file, metrics, ())
    out = [
        "influx-proxy transfer bench: rebalance add, circle of 1 -> 2 influxd; points={points} "
        "measurements={measurements} series={series} load batch={batch} concurrency={concurrency} "
        "params={params} rounds={rounds} cores={cores}".format(**params)
    ]
    out += lines
    for sc in order:
        m = {k: medians.get((sc, k)) for k, _, _ in metrics}
        if m["moved_pps"] is None:
            continue
        out.append(
            f"{sc}: moved {fmt(m['moved'], 'pps')} points at {fmt(m['moved_pps'], 'pps')} pts/s = "
            f"{m['ratio']:.2f} x direct write ({fmt(m['direct_pps'], 'pps')} pts/s), "
            f"{fmt(m['cpu_s_per_mmoved'], 'cpu')} CPU s/M moved, peak RSS {fmt(m['rss_mb'], 'mb')} MB "
            f"(medians; target >= 0.50 x direct: {'met' if m['ratio'] >= 0.5 else 'NOT met'}, "
            f"<= 1 CPU s/M: {'met' if m['cpu_s_per_mmoved'] <= 1 else 'NOT met'})"
        )
    out += failed_rounds(rows)
    print("\n".join(out))


def cmd_traw(raw_file):
    cols = [
        "round", "scenario", "direct_pps", "moved_pps", "ratio", "cpu_s_per_mmoved", "rss_mb", "moved",
        "expected", "dest_points", "seconds", "cpu_s", "measurements", "verified", "ok", "note",
    ]
    print_raw(raw_file, cols, cell_pps_or_ratio)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        cmd_ports(int(args[0]))
    elif cmd == "round":
        cmd_round(args[0])
    elif cmd == "sumcount":
        cmd_sumcount()
    elif cmd == "record":
        cmd_record(*args)
    elif cmd == "line":
        cmd_line(args[0])
    elif cmd == "summary":
        cmd_summary(*args)
    elif cmd == "raw":
        cmd_raw(args[0])
    elif cmd == "owners":
        cmd_owners()
    elif cmd == "qround":
        cmd_qround(*args)
    elif cmd == "qrecord":
        cmd_qrecord(*args)
    elif cmd == "qline":
        cmd_qline(args[0])
    elif cmd == "qsummary":
        cmd_qsummary(*args)
    elif cmd == "qraw":
        cmd_qraw(args[0])
    elif cmd == "tload":
        cmd_tload(*args)
    elif cmd == "transfer":
        cmd_transfer(args[0])
    elif cmd == "trecord":
        cmd_trecord(*args)
    elif cmd == "tline":
        cmd_tline(args[0])
    elif cmd == "tsummary":
        cmd_tsummary(*args)
    elif cmd == "traw":
        cmd_traw(args[0])
    else:
        raise SystemExit(f"bench.py: unknown command {cmd}")


main()
PY
}

# ---------------------------------------------------------------- rounds

# run_round ROUND SCENARIO: SCENARIO is influx-proxy, proxy-cmd or direct.
run_round() {
    local rnd="$1" scenario="$2" dir host target ports sid spec rc i stored extra row
    dir="$RUN_DIR/round-$rnd-$scenario"
    mkdir -p "$dir"
    reset_backends
    sleep "$SETTLE"
    PROXY_PID=""
    case "$scenario" in
    influx-proxy) start_proxy ours "$dir" ;;
    proxy-cmd) start_proxy theirs "$dir" ;;
    esac
    if [[ "$scenario" == direct ]]; then
        host="http://127.0.0.1:${BACKEND_PORTS[0]}"
        target="$POINTS"
        ports="[${BACKEND_PORTS[0]}]"
        sid=0
    else
        host="http://127.0.0.1:$PROXY_PORT"
        # Every circle gets every point.
        target=$((NCIRCLES * POINTS))
        ports="[$(IFS=,; echo "${BACKEND_PORTS[*]}")]"
        sid="$PROXY_PID"
    fi
    spec="$(
        cat <<EOF
{"mode": "$BACKEND", "ports": $ports, "target": $target, "timeout": $WAIT_TIMEOUT,
 "proxy_pid": $sid, "stress_out": "$dir/stress.out",
 "stress": ["$BIN_DIR/influx-stress", "--host", "$host", "--db", "$DB", "-k",
            "-n", "$POINTS", "-b", "$BATCH", "--pps", "$((CONCURRENCY * BATCH))", "-f",
            "--measurements", "$MEASUREMENTS", "-s", "$SERIES", "--gzip", "$GZIP", "--json"]}
EOF
    )"
    "$PYTHON" "$RUN_DIR/bench.py" round "$spec" >"$dir/result.json" 2>"$dir/runner.err" &
    RUNNER_PID=$!
    rc=0
    wait "$RUNNER_PID" || rc=$?
    RUNNER_PID=""
    if [[ $rc -ne 0 || ! -s "$dir/result.json" ]]; then
        tail_log "$dir/runner.err"
        die "round $rnd ($scenario): the round runner failed (exit $rc)"
    fi
    if [[ -n "$PROXY_PID" ]] && ! group_alive "$PROXY_PID"; then
        tail_log "$PROXY_LOG"
        die "round $rnd ($scenario): the proxy exited during the round"
    fi
    stop_proxy
    stored=null
    if [[ "$BACKEND" == influxd ]]; then
        # Not timed: check what influxd actually stored.
        local n
        stored=0
        for ((i = 0; i < NBACKENDS; i++)); do
            [[ "$scenario" == direct && $i -eq 1 ]] && break
            n="$(influxd_count "${BACKEND_PORTS[i]}")" || die "count query on influxd ${BACKEND_PORTS[i]} failed"
            [[ "$n" =~ ^[0-9]+$ ]] || die "count query on influxd ${BACKEND_PORTS[i]}: unexpected answer '$n'"
            stored=$((stored + n))
        done
    fi
    extra="{\"stored\": $stored}"
    row="$("$PYTHON" "$RUN_DIR/bench.py" record "$dir/result.json" "$scenario" "$rnd" "$POINTS" "$extra")" ||
        die "round $rnd ($scenario): cannot read $dir/result.json"
    printf '%s\n' "$row" >>"$RUN_DIR/rounds.jsonl"
    "$PYTHON" "$RUN_DIR/bench.py" line "$row" >&2
    if [[ "$row" == *'"ok": false'* ]]; then
        [[ -s "$dir/stress.out" ]] && tail -n 5 "$dir/stress.out" >&2
        [[ -n "$PROXY_LOG" && "$scenario" != direct && -s "$PROXY_LOG" ]] && tail_log "$PROXY_LOG"
    fi
    PROXY_LOG=""
}

# ---------------------------------------------------------------- queries

QUERY_OWNERS=() # per circle, the port of the backend that owns measurement q

# wait_query WHAT PORT PID LOG: wait until $QUERY answers 200 without "error".
wait_query() {
    local what="$1" port="$2" pid="$3" logfile="$4" out="" deadline
    deadline=$((SECONDS + 30))
    while :; do
        out="$(http GET "$port" /query -G --max-time 5 --data-urlencode "db=$DB" \
            --data-urlencode "q=$QUERY" -w '\n%{http_code}' 2>&1)" || true
        [[ "$out" == *$'\n'200 && "$out" != *'"error"'* ]] && return 0
        if ! group_alive "$pid"; then
            [[ -n "$logfile" ]] && tail_log "$logfile"
            die "$what exited (port $port)"
        fi
        if ((SECONDS >= deadline)); then
            [[ -n "$logfile" ]] && tail_log "$logfile"
            die "$what did not answer the query within 30s on port $port; last answer: ${out//$'\n'/ | }"
        fi
        sleep 0.2
    done
}

# load_query_data: write the dataset through influx-proxy, find the owners of
# measurement q (GET /replica) and wait until each of them counts every point.
load_query_data() {
    local dir="$RUN_DIR/query-load" out owners port n deadline pending
    mkdir -p "$dir"
    reset_backends
    sleep "$SETTLE"
    start_proxy ours "$dir"
    # 'q,s=s' with N series: tags s=s-0 .. s=s-<N-1>; v counts up per series.
    "$BIN_DIR/influx-stress" insert 'q,s=s' 'v=0' --host "http://127.0.0.1:$PROXY_PORT" --db "$DB" -k \
        -n "$QUERY_POINTS" -s "$QUERY_SERIES" -b "$QUERY_POINTS" --pps "$QUERY_POINTS" -f \
        --strict --json >"$dir/stress.out" 2>&1 || {
        tail_log "$dir/stress.out"
        tail_log "$PROXY_LOG"
        die "writing the query dataset through influx-proxy failed"
    }
    out="$(http GET "$PROXY_PORT" "/replica?db=$DB&mm=q")" || die "GET /replica on influx-proxy failed"
    owners="$(printf '%s' "$out" | "$PYTHON" "$RUN_DIR/bench.py" owners)" ||
        die "GET /replica?db=$DB&mm=q: unexpected answer: $out"
    read -r -a QUERY_OWNERS <<<"$owners"
    for port in "${QUERY_OWNERS[@]}"; do
        [[ " ${BACKEND_PORTS[*]} " == *" $port "* ]] || die "/replica names port $port, not one of our backends (${BACKEND_PORTS[*]})"
    done
    deadline=$((SECONDS + WAIT_TIMEOUT))
    while :; do
        pending=""
        for port in "${QUERY_OWNERS[@]}"; do
            n="$(influxd_count "$port" 'SELECT count(v) FROM q' 2>/dev/null)" || n=0
            [[ "$n" == "$QUERY_POINTS" ]] || pending+=" $port:$n"
        done
        [[ -z "$pending" ]] && break
        ((SECONDS < deadline)) || die "the query dataset did not reach its owners within ${WAIT_TIMEOUT}s (port:count$pending, want $QUERY_POINTS)"
        sleep 0.2
    done
    stop_proxy
    PROXY_LOG=""
    log "query dataset: $QUERY_POINTS points of q ($QUERY_SERIES series) on the owner(s): port(s) ${QUERY_OWNERS[*]} (circle 1 first)"
}

# run_query_round ROUND SCENARIO: SCENARIO is influx-proxy, proxy-cmd or direct.
run_query_round() {
    local rnd="$1" scenario="$2" dir host port sid rc row i
    dir="$RUN_DIR/query-round-$rnd-$scenario"
    mkdir -p "$dir"
    PROXY_PID=""
    case "$scenario" in
    influx-proxy) start_proxy ours "$dir" ;;
    proxy-cmd) start_proxy theirs "$dir" ;;
    esac
    if [[ "$scenario" == direct ]]; then
        port="${QUERY_OWNERS[0]}"
        sid=0
        for i in 0 1; do
            [[ "${BACKEND_PORTS[i]}" == "$port" ]] && break
        done
        wait_query "backend $((i + 1))" "$port" "${BACKEND_PIDS[i]}" "${BACKEND_LOGS[i]}"
    else
        port="$PROXY_PORT"
        sid="$PROXY_PID"
        wait_query "proxy ($scenario)" "$port" "$PROXY_PID" "$PROXY_LOG"
    fi
    host="http://127.0.0.1:$port"
    "$PYTHON" "$RUN_DIR/bench.py" qround "$dir/stress.out" "$sid" "$WAIT_TIMEOUT" \
        "$BIN_DIR/influx-stress" query --host "$host" --db "$DB" -q "$QUERY" \
        -c "$QUERY_CONCURRENCY" -n "$QUERY_REQUESTS" --warmup "$QUERY_WARMUP" --timeout 10s --json \
        >"$dir/result.json" 2>"$dir/runner.err" &
    RUNNER_PID=$!
    rc=0
    wait "$RUNNER_PID" || rc=$?
    RUNNER_PID=""
    if [[ $rc -ne 0 || ! -s "$dir/result.json" ]]; then
        tail_log "$dir/runner.err"
        die "query round $rnd ($scenario): the round runner failed (exit $rc)"
    fi
    if [[ -n "$PROXY_PID" ]] && ! group_alive "$PROXY_PID"; then
        tail_log "$PROXY_LOG"
        die "query round $rnd ($scenario): the proxy exited during the round"
    fi
    stop_proxy
    row="$("$PYTHON" "$RUN_DIR/bench.py" qrecord "$dir/result.json" "$scenario" "$rnd" "$QUERY_REQUESTS")" ||
        die "query round $rnd ($scenario): cannot read $dir/result.json"
    printf '%s\n' "$row" >>"$RUN_DIR/query-rounds.jsonl"
    "$PYTHON" "$RUN_DIR/bench.py" qline "$row" >&2
    if [[ "$row" == *'"ok": false'* ]]; then
        [[ -s "$dir/stress.out" ]] && tail -n 5 "$dir/stress.out" >&2
        [[ -n "$PROXY_LOG" && "$scenario" != direct && -s "$PROXY_LOG" ]] && tail_log "$PROXY_LOG"
    fi
    PROXY_LOG=""
}

# ---------------------------------------------------------------- transfer

# run_transfer_round ROUND SCENARIO: SCENARIO is influx-proxy or proxy-cmd.
# Empties both influxd, writes the scenario's points straight into backend 1
# (timed: the direct write speed), checks them through a proxy whose circle
# has backend 1 alone, restarts the proxy with backends 1 and 2 in the circle,
# then times POST /rebalance (add) until /transfer/state says it is over.
run_transfer_round() {
    local rnd="$1" scenario="$2" kind=ours dir rc row n want out spec p params=""
    [[ "$scenario" == proxy-cmd ]] && kind=theirs
    dir="$RUN_DIR/transfer-$rnd-$scenario"
    mkdir -p "$dir"
    reset_backends
    sleep "$SETTLE"
    "$PYTHON" "$RUN_DIR/bench.py" tload "${BACKEND_PORTS[0]}" "$DB" "$TRANSFER_POINTS" "$TRANSFER_MEASUREMENTS" \
        "$TRANSFER_SERIES" "$BATCH" "$CONCURRENCY" >"$dir/load.json" 2>"$dir/load.err" ||
        {
            tail_log "$dir/load.err"
            die "round $rnd ($scenario): writing the points into backend 1 failed"
        }
    [[ "$(cat "$dir/load.json")" == *'"errors": []'* ]] ||
        die "round $rnd ($scenario): backend 1 refused writes: $(cat "$dir/load.json")"
    n="$(influxd_count "${BACKEND_PORTS[0]}")" || die "count query on backend 1 failed"
    [[ "$n" == "$TRANSFER_POINTS" ]] || die "round $rnd ($scenario): backend 1 holds $n points, $TRANSFER_POINTS written"

    # The cluster before: one circle of backend 1; the proxy sees the points.
    PROXY_PID=""
    start_proxy "$kind" "$dir" 1x1
    want="$(influxd_count "${BACKEND_PORTS[0]}" 'SELECT count(n) FROM "m-0"')" || die "count query on backend 1 failed"
    n="$(influxd_count "$PROXY_PORT" 'SELECT count(n) FROM "m-0"')" || die "count query through the proxy ($scenario) failed"
    [[ "$n" == "$want" ]] || die "round $rnd ($scenario): the proxy counts $n points of m-0, backend 1 holds $want"
    stop_proxy

    # The operator's steps: backend 2 joins the circle, restart, POST, watch.
    start_proxy "$kind" "$dir" 1x2
    for p in "${TRANSFER_PARAMS[@]}"; do params+="${params:+, }\"$p\""; done
    spec="$(
        cat <<EOF
{"proxy_port": $PROXY_PORT, "proxy_pid": $PROXY_PID, "db": "$DB", "timeout": $WAIT_TIMEOUT,
 "source_port": ${BACKEND_PORTS[0]}, "dest_port": ${BACKEND_PORTS[1]}, "params": [$params]}
EOF
    )"
    "$PYTHON" "$RUN_DIR/bench.py" transfer "$spec" >"$dir/transfer.json" 2>"$dir/runner.err" &
    RUNNER_PID=$!
    rc=0
    wait "$RUNNER_PID" || rc=$?
    RUNNER_PID=""
    if [[ $rc -ne 0 || ! -s "$dir/transfer.json" ]]; then
        tail_log "$dir/runner.err"
        tail_log "$PROXY_LOG"
        die "round $rnd ($scenario): the transfer runner failed (exit $rc)"
    fi
    out="$(cat "$dir/transfer.json")"
    case "$out" in
    *'"post_status": 202'*) ;;
    *'"post_status": 404'*)
        die "round $rnd ($scenario): the proxy answered 404 to POST /rebalance: this binary has no transfer endpoints (issue 13); nothing to measure" ;;
    *) die "round $rnd ($scenario): POST /rebalance was refused: $(printf '%s' "$out" | "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print("HTTP", d.get("post_status"), d.get("post_body"))')" ;;
    esac
    if ! group_alive "$PROXY_PID"; then
        tail_log "$PROXY_LOG"
        die "round $rnd ($scenario): the proxy exited during the transfer"
    fi
    stop_proxy
    row="$("$PYTHON" "$RUN_DIR/bench.py" trecord "$dir/load.json" "$dir/transfer.json" "$scenario" "$rnd")" ||
        die "round $rnd ($scenario): cannot read $dir/transfer.json"
    printf '%s\n' "$row" >>"$RUN_DIR/transfer-rounds.jsonl"
    "$PYTHON" "$RUN_DIR/bench.py" tline "$row" >&2
    [[ "$row" == *'"ok": false'* ]] && tail_log "$PROXY_LOG"
    PROXY_LOG=""
}

# ---------------------------------------------------------------- main

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
if [[ $BUILD -eq 1 ]]; then
    log "building release binaries (cargo build --release --bins)"
    (cd "$ROOT" && cargo build --release --bins) || die "cargo build --release --bins failed"
fi
for bin in influx-proxy influx-stress influx-sink; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin is missing (build with cargo build --release --bins)"
done

mkdir -p "$BENCH_DIR"
RUN_DIR="$BENCH_DIR/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$RUN_DIR"
write_helpers
: >"$RUN_DIR/rounds.jsonl"

start_backends

scenarios=(influx-proxy)
[[ -n "$PROXY_CMD" ]] && scenarios+=(proxy-cmd)
ttable=""
traw=""
if [[ $TRANSFER -eq 1 ]]; then
    : >"$RUN_DIR/transfer-rounds.jsonl"
    log "transfer rounds: $ROUNDS x (${scenarios[*]}): $TRANSFER_POINTS points over $TRANSFER_MEASUREMENTS measurements ($TRANSFER_SERIES series) written straight into backend 1 (batch $BATCH, $CONCURRENCY clients), then rebalance add of backend 2${TRANSFER_PARAMS[*]:+ (${TRANSFER_PARAMS[*]})}"
    for ((r = 1; r <= ROUNDS; r++)); do
        for sc in "${scenarios[@]}"; do
            run_transfer_round "$r" "$sc"
        done
    done
    params="$(
        cat <<EOF
{"points": $TRANSFER_POINTS, "measurements": $TRANSFER_MEASUREMENTS, "series": $TRANSFER_SERIES,
 "batch": $BATCH, "concurrency": $CONCURRENCY, "params": "${TRANSFER_PARAMS[*]:-defaults}",
 "rounds": $ROUNDS, "cores": $(nproc 2>/dev/null || echo 0)}
EOF
    )"
    ttable="$("$PYTHON" "$RUN_DIR/bench.py" tsummary "$params" "$RUN_DIR/transfer-rounds.jsonl")" || die "transfer summary failed"
    traw="$("$PYTHON" "$RUN_DIR/bench.py" traw "$RUN_DIR/transfer-rounds.jsonl")" || die "raw transfer table failed"
fi
scenarios+=(direct)
table=""
raw=""
if [[ $TRANSFER -eq 0 && "$QUERIES" != only ]]; then
    log "rounds: $ROUNDS x (${scenarios[*]}), $POINTS points each, batch $BATCH, concurrency $CONCURRENCY, $MEASUREMENTS measurements, $SERIES series, client gzip $GZIP, topology $TOPOLOGY"
    for ((r = 1; r <= ROUNDS; r++)); do
        for sc in "${scenarios[@]}"; do
            run_round "$r" "$sc"
        done
    done

    params="$(
        cat <<EOF
{"backend": "$BACKEND", "topology": "$TOPOLOGY", "points": $POINTS, "batch": $BATCH,
 "concurrency": $CONCURRENCY, "measurements": $MEASUREMENTS, "series": $SERIES,
 "gzip": $GZIP, "rounds": $ROUNDS, "cores": $(nproc 2>/dev/null || echo 0)}
EOF
    )"
    table="$("$PYTHON" "$RUN_DIR/bench.py" summary "$params" "$RUN_DIR/rounds.jsonl")" || die "summary failed"
    raw="$("$PYTHON" "$RUN_DIR/bench.py" raw "$RUN_DIR/rounds.jsonl")" || die "raw table failed"
fi

qtable=""
qraw=""
if [[ "$QUERIES" != none ]]; then
    : >"$RUN_DIR/query-rounds.jsonl"
    load_query_data
    log "query rounds: $ROUNDS x (${scenarios[*]}), $QUERY_REQUESTS queries each from $QUERY_CONCURRENCY clients: $QUERY"
    for ((r = 1; r <= ROUNDS; r++)); do
        for sc in "${scenarios[@]}"; do
            run_query_round "$r" "$sc"
        done
    done
    params="$(
        cat <<EOF
{"backend": "$BACKEND", "topology": "$TOPOLOGY", "points": $QUERY_POINTS, "series": $QUERY_SERIES,
 "concurrency": $QUERY_CONCURRENCY, "requests": $QUERY_REQUESTS, "warmup": $QUERY_WARMUP,
 "rounds": $ROUNDS, "cores": $(nproc 2>/dev/null || echo 0)}
EOF
    )"
    qtable="$("$PYTHON" "$RUN_DIR/bench.py" qsummary "$params" "$RUN_DIR/query-rounds.jsonl" "$QUERY")" ||
        die "query summary failed"
    qraw="$("$PYTHON" "$RUN_DIR/bench.py" qraw "$RUN_DIR/query-rounds.jsonl")" || die "raw query table failed"
fi

{
    printf '# scripts/bench.sh %s, %s, commit %s\n' "$(date '+%F %T')" "$(uname -srm)" \
        "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    [[ -n "$PROXY_CMD" ]] && printf '# proxy-cmd: %s\n' "$PROXY_CMD"
    [[ -n "$table" ]] && printf '%s\n\n# raw rounds\n%s\n' "$table" "$raw"
    [[ -n "$table" && -n "$qtable" ]] && printf '\n'
    [[ -n "$qtable" ]] && printf '%s\n\n# raw query rounds\n%s\n' "$qtable" "$qraw"
    [[ -n "$ttable" ]] && printf '%s\n\n# raw transfer rounds\n%s\n' "$ttable" "$traw"
    true
} >"$BENCH_DIR/last.txt"
[[ -n "$table" ]] && printf '\n%s\n' "$table"
[[ -n "$qtable" ]] && printf '\n%s\n' "$qtable"
[[ -n "$ttable" ]] && printf '\n%s\n' "$ttable"
log "(raw rounds and the table(s): run/bench/last.txt; took $((SECONDS - started)) s)"
