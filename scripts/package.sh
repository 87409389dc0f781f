#!/usr/bin/env bash
# Builds the Debian package of influx-proxy in one command and prints the path
# of the .deb (target/debian/influx-proxy_<version>_<arch>.deb) on stdout.
#
# Tool: Debian's own `dpkg-deb --build` on a staging tree made here, not
# cargo-deb. dpkg-deb, dpkg-shlibdeps and objcopy are on every Debian machine
# that can build Rust (dpkg, dpkg-dev, binutils), while cargo-deb is a cargo
# subcommand to download and compile first: minutes on a 2-core CI and a
# network dependency, for a package of a handful of files. What goes into the package
# is in scripts/package/ (unit, default config, maintainer scripts, control
# template), so the whole package is readable in this repository.
#
# The binary is the release build (`cargo build --release --locked`; a no-op
# when target/release/influx-proxy is fresh), with its debug info split off:
# /usr/bin/influx-proxy is stripped and carries a debuglink to
# target/debian/influx-proxy_<version>_<arch>.debug, which stays beside the
# .deb (not packaged) for gdb or a crash report.
#
# Depends is computed from the binary: dpkg-shlibdeps when dpkg-dev is there,
# else the newest GLIBC_ symbol version it uses (objdump), plus adduser (the
# postinst creates the system user with it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/scripts/package"
NAME=influx-proxy

usage() {
    cat <<USAGE
Usage: ${0##*/} [--no-build]

Builds the release binary (cargo build --release --locked --bin influx-proxy),
stages the package from scripts/package/ and builds it with dpkg-deb; prints
the path of the .deb. Progress goes to stderr.
  --no-build   package target/release/influx-proxy as it is (already built)
Environment: CARGO (cargo to run), CARGO_TARGET_DIR (default target/),
DEB_MAINTAINER (the Maintainer field).
USAGE
}

build=1
for arg in "$@"; do
    case "$arg" in
    --no-build) build=0 ;;
    -h | -help | --help)
        usage
        exit 0
        ;;
    *)
        echo "package.sh: unknown argument $arg" >&2
        usage >&2
        exit 2
        ;;
    esac
done

die() {
    echo "package.sh: error: $*" >&2
    exit 1
}
note() { echo "package.sh: $*" >&2; }

for tool in dpkg dpkg-deb objcopy md5sum; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found (a Debian system with dpkg and binutils is needed)"
done

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BIN="$TARGET/release/$NAME"
OUT="$TARGET/debian"

if [[ $build -eq 1 ]]; then
    note "cargo build --release --locked --bin $NAME"
    (cd "$ROOT" && "${CARGO:-cargo}" build --release --locked --bin "$NAME" >&2)
fi
[[ -x "$BIN" ]] || die "$BIN is missing: build it (cargo build --release) or run without --no-build"

# The version of [package] in Cargo.toml: the first `version = "..."` line.
VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)"
[[ -n "$VERSION" ]] || die "no version in $ROOT/Cargo.toml"
ARCH="$(dpkg --print-architecture)"
MAINTAINER="${DEB_MAINTAINER:-influx-proxy maintainers <influx-proxy@localhost>}"
DEB="$OUT/${NAME}_${VERSION}_${ARCH}.deb"
DEBUG="$OUT/${NAME}_${VERSION}_${ARCH}.debug"

# Reproducible file times in the archive: the commit's time (dpkg-deb clamps to it).
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)"
    export SOURCE_DATE_EPOCH
fi

STAGE="$OUT/stage"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/etc/$NAME" \
    "$STAGE/lib/systemd/system" "$STAGE/usr/share/doc/$NAME"

# The binary: debug info to the side file, the packaged copy stripped.
objcopy --only-keep-debug "$BIN" "$DEBUG"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$DEBUG" "$BIN" "$STAGE/usr/bin/$NAME"
chmod 0755 "$STAGE/usr/bin/$NAME"
install -m 0644 "$PKG/proxy.json" "$STAGE/etc/$NAME/proxy.json"
install -m 0644 "$PKG/$NAME.service" "$STAGE/lib/systemd/system/$NAME.service"
install -m 0644 "$ROOT/LICENSE" "$STAGE/usr/share/doc/$NAME/copyright"
install -m 0644 "$ROOT/README.md" "$STAGE/usr/share/doc/$NAME/README.md"
for script in postinst prerm postrm; do
    install -m 0755 "$PKG/$script" "$STAGE/DEBIAN/$script"
done
install -m 0644 "$PKG/conffiles" "$STAGE/DEBIAN/conffiles"

# A changelog entry for this build (Debian's format; a native package's
# changelog lives at usr/share/doc/<package>/changelog.gz).
COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
{
    printf '%s (%s) unstable; urgency=medium\n\n' "$NAME" "$VERSION"
    printf '  * Built by scripts/package.sh from git commit %s.\n\n' "$COMMIT"
    printf ' -- %s  %s\n' "$MAINTAINER" "$(date -R -d "@${SOURCE_DATE_EPOCH}")"
} | gzip -9n >"$STAGE/usr/share/doc/$NAME/changelog.gz"
chmod 0644 "$STAGE/usr/share/doc/$NAME/changelog.gz"

# Depends: the shared libraries the binary links (libc6, libgcc-s1).
shlib_depends() {
    if command -v dpkg-shlibdeps >/dev/null 2>&1; then
        # dpkg-shlibdeps reads debian/control of a source package: give it a
        # minimal one in a scratch folder.
        local scratch line
        scratch="$(mktemp -d)"
        mkdir "$scratch/debian"
        printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" >"$scratch/debian/control"
        if line="$(cd "$scratch" && dpkg-shlibdeps -O "$STAGE/usr/bin/$NAME" 2>/dev/null)"; then
            rm -rf "$scratch"
            line="${line#shlibs:Depends=}"
            [[ -n "$line" ]] && { echo "$line"; return; }
        fi
        rm -rf "$scratch"
        note "dpkg-shlibdeps failed; falling back to the GLIBC_ symbol versions"
    fi
    command -v objdump >/dev/null 2>&1 || die "neither dpkg-shlibdeps nor objdump works"
    local glibc deps
    glibc="$(objdump -T "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)"
    [[ -n "$glibc" ]] || die "no GLIBC_ symbol version found in $BIN"
    deps="libc6 (>= $glibc)"
    if objdump -p "$BIN" | grep -q 'NEEDED.*libgcc_s'; then
        deps+=", libgcc-s1"
    fi
    echo "$deps"
}
DEPENDS="adduser, $(shlib_depends)"

# md5sums of every file but the conffiles (dpkg tracks those itself).
(
    cd "$STAGE"
    find . -type f ! -path './DEBIAN/*' ! -path "./etc/*" -printf '%P\n' | LC_ALL=C sort |
        while IFS= read -r f; do md5sum "$f"; done
) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums"

INSTALLED_SIZE="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$INSTALLED_SIZE|" -e "s|@DEPENDS@|$DEPENDS|" \
    "$PKG/control.in" >"$STAGE/DEBIAN/control"

rm -f "$DEB"
# --root-owner-group: every file root:root without fakeroot; the postinst
# gives the data folder and the config's group to the influx-proxy user.
dpkg-deb --root-owner-group --build "$STAGE" "$DEB" >&2
rm -rf "$STAGE"
echo "$DEB"
