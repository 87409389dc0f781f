#!/usr/bin/env bash
# The whole test suite, runnable as root on a fresh Debian machine (and by CI).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEST_TIMEOUT="${TEST_TIMEOUT:-1500}"

usage() {
    cat <<EOF
Usage: ${0##*/} [CARGO_TEST_ARGS...] [-- TEST_BINARY_ARGS...]

Installs what is missing (influxdb, influxdb-client, the Python "influxdb" and
"influxdb-client" libraries, prometheus, haproxy, a C toolchain, Rust via rustup),
then runs, in order:
  cargo fmt --all -- --check
  cargo clippy --all-targets -- -D warnings
  cargo build --release --bins
  timeout \$TEST_TIMEOUT=${TEST_TIMEOUT} cargo test --all-targets --no-fail-fast [ARGS] -- --test-threads=2 [ARGS after --]
  scripts/fuzz.sh --smoke   (every cargo-fuzz target for 30 s; skipped when ARGS are given
                             or FUZZ_SMOKE=0)
  in a git checkout: a check that the run left every tracked file as it found it
                             (fails naming the files a build or test rewrote)
and prints a PASS/FAIL summary; exits non-zero if any step failed.
Example: ${0##*/} ring      (only tests whose name contains "ring")
EOF
}

case "${1:-}" in
-h | -help | --help)
    usage
    exit 0
    ;;
esac

# Extra args: before "--" to cargo test, after it to the test binaries.
cargo_args=()
test_args=()
seen_dashdash=0
for a in "$@"; do
    if [[ $seen_dashdash -eq 0 && "$a" == -- ]]; then
        seen_dashdash=1
    elif [[ $seen_dashdash -eq 0 ]]; then
        cargo_args+=("$a")
    else
        test_args+=("$a")
    fi
done

note() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'test.sh: error: %s\n' "$*" >&2
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

apt_updated=0
apt_install() {
    if [[ $apt_updated -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# ---------------------------------------------------------------- setup
note "checking the tools"
pkgs=()
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
[[ -e /etc/ssl/certs/ca-certificates.crt ]] || pkgs+=(ca-certificates)
command -v cc >/dev/null 2>&1 || pkgs+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
command -v timeout >/dev/null 2>&1 || pkgs+=(coreutils)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
if [[ ${#pkgs[@]} -gt 0 ]]; then
    echo "installing ${pkgs[*]}"
    apt_install "${pkgs[@]}"
fi

# influxdb + influxdb-client when influxd / influx is missing (the package's own
# service is kept from starting: the tests run their own influxd on free ports).
"$ROOT/scripts/influxd.sh" install
command -v influx >/dev/null 2>&1 || die "influx (influxdb-client) is still missing"
echo "influxd: $(command -v influxd) ($(influxd version 2>/dev/null || echo '?'))"

# The Python "influxdb" client (some tests drive the proxy with it).
if ! python3 -c 'import influxdb' >/dev/null 2>&1; then
    echo "installing the Python influxdb client"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    # Debian's own python3 refuses pip installs (PEP 668) unless told otherwise;
    # fall back to Debian's packaged client if pip cannot do it.
    python3 -m pip install influxdb ||
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install influxdb ||
        apt_install python3-influxdb ||
        true
    python3 -c 'import influxdb' || die "cannot import the Python influxdb client after installing it"
fi
echo "python influxdb: $(python3 -c 'import influxdb; print(influxdb.__version__)' 2>/dev/null || echo '?')"

# The v2 Python client (influxdb-client) drives /api/v2/write and /api/v2/query.
if ! python3 -c 'import influxdb_client' >/dev/null 2>&1; then
    echo "installing the Python influxdb-client (v2) library"
    python3 -m pip install influxdb-client ||
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install influxdb-client ||
        true
    python3 -c 'import influxdb_client' || die "cannot import the Python influxdb_client after installing it"
fi

# Prometheus and promtool (scrape /metrics, remote write/read through the proxy)
# and HAProxy (a tier of proxies); their packaged services are not used: the
# tests start their own on free loopback ports.
pkgs=()
command -v prometheus >/dev/null 2>&1 || pkgs+=(prometheus)
command -v haproxy >/dev/null 2>&1 || pkgs+=(haproxy)
if [[ ${#pkgs[@]} -gt 0 ]]; then
    echo "installing ${pkgs[*]}"
    apt_install --no-install-recommends "${pkgs[@]}"
fi
command -v promtool >/dev/null 2>&1 || die "promtool (package prometheus) is still missing"

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
# The minimal rustup profile has neither rustfmt nor clippy.
if ! cargo fmt --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt
fi
if ! cargo clippy --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add clippy
fi
cargo --version

# ---------------------------------------------------------------- steps
cd "$ROOT"
names=()
results=()
failed=0

# run NAME CMD...: run one step, record PASS/FAIL and its duration.
run() {
    local name="$1" start rc=0
    shift
    note "$name"
    start=$SECONDS
    "$@" || rc=$?
    if [[ $rc -eq 0 ]]; then
        results+=("PASS  $name ($((SECONDS - start))s)")
    else
        failed=1
        local why="exit $rc"
        [[ $rc -ne 124 ]] || why="timed out after ${TEST_TIMEOUT}s"
        results+=("FAIL  $name ($why, $((SECONDS - start))s)")
    fi
    names+=("$name")
}

# Tracked files that differ from HEAD, each with its status and content hash:
# a run must not change any of them (a stale lock file rewritten by a build,
# a test writing into the tree). Empty outside a git checkout.
in_git=0
if command -v git >/dev/null 2>&1 && git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    in_git=1
fi
tracked_state() {
    [[ $in_git -eq 1 ]] || return 0
    local line
    git -C "$ROOT" status --porcelain --untracked-files=no | while IFS= read -r line; do
        printf '%s %s\n' "$(git -C "$ROOT" hash-object -- "${line:3}" 2>/dev/null || echo gone)" "$line"
    done | sort
}
tree_before="$(tracked_state)"

# shellcheck disable=SC2317 # invoked through run
# Fails, naming them, when the run changed tracked files.
tree_unchanged() {
    local changed
    changed="$(comm -13 <(printf '%s\n' "$tree_before") <(tracked_state) | cut -d' ' -f2- | cut -c4-)"
    [[ -z "$changed" ]] && return 0
    echo "tracked files modified by the run:"
    printf '%s\n' "$changed" | sed 's/^/  /'
    tree_files="$(printf '%s' "$changed" | tr '\n' ' ')"
    return 1
}
tree_files=""

test_log="$(mktemp "${TMPDIR:-/tmp}/influx-proxy-test.XXXXXX")"
trap 'rm -f "$test_log"' EXIT

# shellcheck disable=SC2317 # invoked through run
# cargo test, with its output kept to total the per-binary "test result:" lines.
cargo_test() {
    local rc
    set +e
    timeout -k 30 "$TEST_TIMEOUT" cargo test --all-targets --no-fail-fast "${cargo_args[@]}" \
        -- --test-threads=2 "${test_args[@]}" 2>&1 | tee "$test_log"
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

run "cargo fmt --all -- --check" cargo fmt --all -- --check
run "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
run "cargo build --release --bins" cargo build --release --bins
test_label="cargo test --all-targets --no-fail-fast"
[[ ${#cargo_args[@]} -eq 0 ]] || test_label+=" ${cargo_args[*]}"
test_label+=" -- --test-threads=2"
[[ ${#test_args[@]} -eq 0 ]] || test_label+=" ${test_args[*]}"
run "$test_label" cargo_test
# The fuzz smoke belongs to the whole suite, not to a filtered run.
if [[ ${#cargo_args[@]} -eq 0 && ${#test_args[@]} -eq 0 && "${FUZZ_SMOKE:-1}" != 0 ]]; then
    run "scripts/fuzz.sh --smoke" "$ROOT/scripts/fuzz.sh" --smoke
fi

if [[ $in_git -eq 1 ]]; then
    run "tracked files left unchanged" tree_unchanged
    [[ -z "$tree_files" ]] || results[${#results[@]} - 1]+=": $tree_files"
fi

# ---------------------------------------------------------------- summary
read -r passed tfailed ignored < <(awk '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) g += $(i - 1)
        }
    }
    END { printf "%d %d %d\n", p, f, g }' "$test_log")

echo
echo "==================== summary ===================="
for r in "${results[@]}"; do echo "$r"; done
echo "================================================="
if [[ $failed -eq 0 ]]; then
    echo "PASS: all ${#names[@]} steps passed"
else
    echo "FAIL: some steps failed (see above)"
fi
echo "tests: $passed passed, $tfailed failed, $ignored skipped"
exit "$failed"
