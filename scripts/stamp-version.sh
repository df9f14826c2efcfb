#!/usr/bin/env bash
# Writes VERSION into a copy of a vigil binary: the 64-byte .vigil_version
# section that `vigil version`, /api/status and the start line report
# (app/src/version.rs says why the version is stamped rather than compiled).
# Works on host (x86-64) and aarch64 binaries, stripped or not; the input is
# never changed.
#
# usage: scripts/stamp-version.sh VERSION IN OUT
#   VERSION  a semantic version, MAJOR.MINOR.PATCH[-PRE][+BUILD], at most 63
#            bytes (the section keeps one NUL); anything else is refused
set -euo pipefail
log() { printf 'stamp-version: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 3 ] || die "usage: stamp-version.sh VERSION IN OUT"
VERSION=$1 IN=$2 OUT=$3
SECTION=.vigil_version
LEN=64

# The grammar of app/src/version.rs::is_semver (Semantic Versioning 2.0.0).
num='(0|[1-9][0-9]*)'
pre_id="($num|[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*)"
build_id='[0-9A-Za-z-]+'
semver="^$num\\.$num\\.$num(-$pre_id(\\.$pre_id)*)?(\\+$build_id(\\.$build_id)*)?\$"
[[ $VERSION =~ $semver ]] || die "'$VERSION' is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])"
[ ${#VERSION} -lt $LEN ] || die "'$VERSION' is ${#VERSION} bytes; the version section holds at most $((LEN - 1))"
[ -f "$IN" ] || die "$IN: no such file"

# The host's binutils read every ELF header but write only their own
# architecture: aarch64 binaries go through the cross objcopy.
machine=$(readelf -h "$IN" 2>/dev/null | sed -n 's/^ *Machine: *//p') || true
case $machine in
  AArch64) OBJCOPY=aarch64-linux-gnu-objcopy ;;
  '') die "$IN is not an ELF file" ;;
  *) OBJCOPY=objcopy ;;
esac
command -v "$OBJCOPY" >/dev/null || die "$OBJCOPY is missing (make deps-cross)"

# readelf -S -W: "[Nr] Name Type Address Off Size ..." (Size in hex).
size=$(readelf -S -W "$IN" | awk -v s="$SECTION" '{ for (i = 1; i < NF; i++) if ($i == s) { print $(i + 4); exit } }' || true)
[ -n "$size" ] || die "$IN has no $SECTION section (a vigil built before version stamping?)"
[ $((16#$size)) -eq $LEN ] || die "$IN's $SECTION section is $((16#$size)) bytes, not $LEN"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{ printf '%s' "$VERSION"; head -c $((LEN - ${#VERSION})) /dev/zero; } > "$tmp/section"
"$OBJCOPY" --update-section "$SECTION=$tmp/section" "$IN" "$tmp/out"
"$OBJCOPY" --dump-section "$SECTION=$tmp/check" "$tmp/out" "$tmp/discard"
cmp -s "$tmp/section" "$tmp/check" || die "the stamped $SECTION does not read back"
chmod --reference="$IN" "$tmp/out"
mv -f "$tmp/out" "$OUT"
log "$OUT: vigil $VERSION"
