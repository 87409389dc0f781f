#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each; any input that
# crashes a target is copied to fuzz/regressions/<target>/ (which
# tests/properties.rs replays in every `cargo test`) and printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
ALL_TARGETS=(line_split line_scan influxql spool_record query_json)
SMOKE_SECONDS=30
DEFAULT_SECONDS=300
SANITIZER="${FUZZ_SANITIZER:-none}"

usage() {
    cat <<EOF
Usage: ${0##*/} [--smoke | SECONDS] [TARGET...]

Builds the fuzz targets once, then runs each for SECONDS (default
${DEFAULT_SECONDS}; --smoke: ${SMOKE_SECONDS}) with libFuzzer, from the corpus in
fuzz/corpus/<target> (kept between runs, not committed), the seeds in
fuzz/seeds/<target> and the saved crashes in fuzz/regressions/<target>.
Targets: ${ALL_TARGETS[*]} (default: all).

A crash, timeout or out-of-memory input is copied to fuzz/regressions/<target>/
and printed; the script then goes on with the next target and exits 1 at the
end. Turn each one into a test in tests/properties.rs (the 'regressions' test
there already replays every file in fuzz/regressions/ through the target's
checks) and fix the cause in src/.

Installs cargo-fuzz (cargo install cargo-fuzz --locked) when it is missing.

Environment:
  FUZZ_SANITIZER  none (default) or address. 'none' works on the stable
                  toolchain as it is and runs ~4x faster; 'address' adds
                  AddressSanitizer, which needs nightly flags, so the script
                  sets RUSTC_BOOTSTRAP=1 for it (stable toolchain still).
EOF
}

seconds=$DEFAULT_SECONDS
targets=()
for a in "$@"; do
    case "$a" in
    -h | -help | --help)
        usage
        exit 0
        ;;
    --smoke) seconds=$SMOKE_SECONDS ;;
    '' | *[!0-9]*)
        if [[ " ${ALL_TARGETS[*]} " == *" $a "* ]]; then
            targets+=("$a")
        else
            echo "fuzz.sh: unknown argument '$a' (see --help)" >&2
            exit 2
        fi
        ;;
    *) seconds=$a ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
[[ $seconds -gt 0 ]] || {
    echo "fuzz.sh: SECONDS must be positive" >&2
    exit 2
}

note() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "fuzz.sh: cargo not found (scripts/test.sh installs Rust)" >&2
    exit 1
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    note "installing cargo-fuzz"
    start=$SECONDS
    cargo install cargo-fuzz --locked
    echo "cargo-fuzz installed in $((SECONDS - start))s"
fi
echo "$(cargo fuzz --version), $(rustc --version)"

fuzz_args=(--sanitizer "$SANITIZER" --target-dir "$FUZZ/target/$SANITIZER")
case "$SANITIZER" in
none) ;;
address) export RUSTC_BOOTSTRAP=1 ;;
*)
    echo "fuzz.sh: FUZZ_SANITIZER must be none or address" >&2
    exit 2
    ;;
esac

cd "$FUZZ"
note "building the fuzz targets (sanitizer: $SANITIZER)"
start=$SECONDS
cargo fuzz build "${fuzz_args[@]}"
echo "built in $((SECONDS - start))s"

# Prints an input file readably: as text when it is printable, else escaped.
show() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); print(f"  {len(d)} bytes: {d!r}")' "$1"
    else
        od -c "$1" | sed 's/^/  /'
    fi
}

dict_of() {
    case "$1" in
    line_split | line_scan) echo "$FUZZ/dicts/line_protocol.dict" ;;
    *) echo "$FUZZ/dicts/$1.dict" ;;
    esac
}

results=()
failed=0
for t in "${targets[@]}"; do
    note "fuzzing $t for ${seconds}s"
    corpus="$FUZZ/corpus/$t"
    artifacts="$FUZZ/artifacts/$t"
    regressions="$FUZZ/regressions/$t"
    log="$FUZZ/artifacts/$t.log"
    mkdir -p "$corpus" "$artifacts"
    dirs=("$corpus")
    [[ -d "$FUZZ/seeds/$t" ]] && dirs+=("$FUZZ/seeds/$t")
    [[ -d "$regressions" ]] && dirs+=("$regressions")
    libfuzzer_args=(
        -max_total_time="$seconds"
        -timeout=10
        -rss_limit_mb=2048
        -print_final_stats=1
    )
    dict="$(dict_of "$t")"
    [[ -f "$dict" ]] && libfuzzer_args+=(-dict="$dict")

    stamp="$(mktemp)"
    start=$SECONDS
    rc=0
    # A hard bound on top of libFuzzer's own, for a target that hangs.
    timeout -k 10 "$((seconds + 120))" \
        cargo fuzz run "${fuzz_args[@]}" "$t" "${dirs[@]}" -- "${libfuzzer_args[@]}" \
        >"$log" 2>&1 || rc=$?
    took=$((SECONDS - start))
    # What libFuzzer wrote during this run (a saved crash that still fails
    # is written again, under the same name).
    new="$(find "$artifacts" -maxdepth 1 -type f -newer "$stamp" \
        \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)"
    rm -f "$stamp"
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)"
    if [[ -n "$new" ]]; then
        failed=1
        mkdir -p "$regressions"
        results+=("FAIL  $t: found $(echo "$new" | wc -l) input(s) (${took}s, ${runs:-?} runs)")
        echo "$t: FOUND A FAILING INPUT (log: $log)"
        grep -m1 -A3 -E 'panicked at|ERROR: libFuzzer|SUMMARY:' "$log" | sed 's/^/  /' || true
        while IFS= read -r f; do
            if [[ -f "$regressions/$(basename "$f")" ]]; then
                echo "still failing: $regressions/$(basename "$f")"
            else
                cp "$f" "$regressions/"
                echo "saved $regressions/$(basename "$f")"
            fi
            show "$f"
        done <<<"$new"
    elif [[ $rc -ne 0 ]]; then
        failed=1
        results+=("FAIL  $t: exit $rc, no input saved (${took}s); see $log")
        tail -20 "$log"
    else
        results+=("PASS  $t: ${runs:-?} runs, coverage ${cov:-?} (${took}s)")
        grep -E '^Done [0-9]+ runs' "$log" || true
    fi
done

echo
echo "==================== fuzz summary (${seconds}s per target) ===================="
for r in "${results[@]}"; do echo "$r"; done
if [[ $failed -ne 0 ]]; then
    echo "fuzz: failing inputs are in fuzz/regressions/ (replayed by cargo test --test properties)"
fi
exit "$failed"
