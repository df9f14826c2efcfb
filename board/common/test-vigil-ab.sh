#!/usr/bin/env bash
# Host-side test of `vigil ab`, the Linux side of the A/B state that RAUC's
# custom backend (/usr/sbin/vigil-ab, a shim that runs it) and vigil-supervise
# use: every command against the two checksummed copies in a directory
# (VIGIL_AB_DIR), copies as mkenvimage makes them (the image's initial state),
# the copies it writes decoded independently (python3's zlib), a damaged
# copy 0, the legacy text file of older images, and bad input.
# Run by `make test-board`.
# usage: board/common/test-vigil-ab.sh   env: VIGIL_BIN (default target/release/vigil)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VIGIL=${VIGIL_BIN:-$ROOT/target/release/vigil}
[ -x "$VIGIL" ] || { echo "test-vigil-ab: $VIGIL is missing (make build)" >&2; exit 1; }
command -v mkenvimage >/dev/null || { echo "test-vigil-ab: mkenvimage is missing (u-boot-tools)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export VIGIL_AB_DIR=$WORK/boot VIGIL_AB_CMDLINE=$WORK/cmdline
mkdir -p "$VIGIL_AB_DIR"
C0=$VIGIL_AB_DIR/vigil-ab.0 C1=$VIGIL_AB_DIR/vigil-ab.1 LEGACY=$VIGIL_AB_DIR/vigil-ab.env

fail() { printf 'test-vigil-ab: FAIL: %s\n' "$*" >&2; exit 1; }
ab() { "$VIGIL" ab "$@"; }
expect() { # WANT CMD...: CMD prints WANT
  local got
  got=$(ab "${@:2}") || fail "vigil ab ${*:2} failed"
  [ "$got" = "$1" ] || fail "vigil ab ${*:2}: '$got', expected '$1'"
}
expect_fail() { # CMD...: CMD exits 1 with a message
  local err code=0
  err=$(ab "$@" 2>&1) || code=$?
  [ "$code" = 1 ] || fail "vigil ab $*: exit $code, expected 1"
  [ -n "$err" ] || fail "vigil ab $* failed without a message"
}
# decode FILE: the copy's variables as "NAME=value NAME=value ...", decoded
# here by an implementation of the format that is not vigil's (U-Boot's
# env_t: CRC-32 little-endian, then NUL-separated entries, 512 bytes);
# "invalid" when the size or CRC is wrong.
decode() {
  python3 - "$1" <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
if len(b) != 512 or struct.unpack('<I', b[:4])[0] != zlib.crc32(b[4:]):
    print('invalid'); sys.exit()
print(' '.join(e.decode() for e in b[4:].split(b'\0\0')[0].split(b'\0')))
PY
}
# mkcopy FILE NAME=value...: a copy as the image build makes it.
mkcopy() { local f=$1; shift; printf '%s\n' "$@" | mkenvimage -p 0 -s 512 -o "$f" -; }
state() { # both copies decoded; they must agree
  local s0 s1
  s0=$(decode "$C0"); s1=$(decode "$C1")
  [ "$s0" = "$s1" ] || fail "copies differ: copy 0 '$s0', copy 1 '$s1'"
  echo "$s0"
}

# Nothing on the partition yet: the boot script's defaults.
expect A get-primary
expect good get-state B

# The image's initial copies (mkenvimage), after U-Boot took one attempt on A.
mkcopy "$C0" BOOT_A_LEFT=2 BOOT_B_LEFT=3 'BOOT_ORDER=A B'
cp "$C0" "$C1"
expect A get-primary
expect good get-state A

# An update installed into B: RAUC makes it primary with fresh attempts.
ab set-primary B
[ "$(state)" = "BOOT_A_LEFT=2 BOOT_B_LEFT=3 BOOT_ORDER=B A" ] || fail "after set-primary B: $(state)"
# Byte for byte what mkenvimage (and U-Boot's env export -c) makes.
mkcopy "$WORK/want" BOOT_A_LEFT=2 BOOT_B_LEFT=3 'BOOT_ORDER=B A'
cmp -s "$C0" "$WORK/want" || fail "copy 0 is not mkenvimage's bytes"
expect B get-primary

# B used up its attempts (U-Boot counted them down): A is primary again.
mkcopy "$C0" BOOT_A_LEFT=2 BOOT_B_LEFT=0 'BOOT_ORDER=B A'
cp "$C0" "$C1"
expect bad get-state B
expect A get-primary

# mark-bad / mark-good.
ab set-state A bad
expect bad get-state A
expect_fail get-primary
ab set-state A good
[ "$(state)" = "BOOT_A_LEFT=3 BOOT_B_LEFT=0 BOOT_ORDER=B A" ] || fail "after set-state A good: $(state)"

# The booted slot, from rauc.slot= on the kernel command line.
echo 'console=ttyAMA0 root=PARTLABEL=rootfs_b ro rauc.slot=B quiet' > "$VIGIL_AB_CMDLINE"
expect B get-current
ab mark-good-current
[ "$(state)" = "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=B A" ] || fail "after mark-good-current: $(state)"
echo 'console=ttyAMA0 quiet' > "$VIGIL_AB_CMDLINE"
expect_fail get-current
expect_fail mark-good-current

# A flipped byte in copy 0 (a cut during its write): copy 1 is used, the
# console says so, and the next write repairs copy 0.
mkcopy "$C0" BOOT_A_LEFT=1 BOOT_B_LEFT=3 'BOOT_ORDER=A B'
mkcopy "$C1" BOOT_A_LEFT=0 BOOT_B_LEFT=2 'BOOT_ORDER=B A'
printf '\x42' | dd of="$C0" bs=1 seek=20 conv=notrunc status=none
[ "$(decode "$C0")" = invalid ] || fail "the flipped copy 0 still decodes"
expect B get-primary
expect bad get-state A
ab get-state A 2>&1 >/dev/null | grep -q 'copy 0 damaged; using copy 1' || fail "no word of the damaged copy 0"
ab set-state A good
[ "$(state)" = "BOOT_A_LEFT=3 BOOT_B_LEFT=2 BOOT_ORDER=B A" ] || fail "copy 0 not repaired: $(state)"

# Both copies damaged, and the legacy text file of an older image (as U-Boot's
# env export -t wrote it): its state is used; without it, the defaults.
head -c 100 "$C0" > "$WORK/short" && cp "$WORK/short" "$C0"
printf '\x42' | dd of="$C1" bs=1 seek=30 conv=notrunc status=none
printf 'BOOT_ORDER=B A\nBOOT_A_LEFT=2\nBOOT_B_LEFT=1\n\0' > "$LEGACY"
expect B get-primary
rm "$LEGACY"
expect A get-primary
ab set-primary B
[ "$(state)" = "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=B A" ] || fail "after set-primary on damaged copies: $(state)"

# An old boot script (a box flashed before the copies; bundles never replace
# boot.scr) reads only the legacy file: it stays the state, read and written.
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=2\n' > "$LEGACY"
printf 'if fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.env; then\n' > "$VIGIL_AB_DIR/boot.scr"
before=$(md5sum "$C0" "$C1")
expect A get-primary
ab set-primary B
[ "$(tr -d '\000' < "$LEGACY" | tr '\n' ' ')" = "BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=3 " ] \
  || fail "under the old boot script, the legacy file: $(cat "$LEGACY")"
[ "$(md5sum "$C0" "$C1")" = "$before" ] || fail "under the old boot script, the copies changed"
# This repository's boot script, as the image builds it, reads the copies.
mkimage -A arm64 -O linux -T script -C none -d "$ROOT/board/common/boot.cmd" "$VIGIL_AB_DIR/boot.scr" >/dev/null
expect B get-primary
ab set-state B bad
[ "$(state)" = "BOOT_A_LEFT=3 BOOT_B_LEFT=0 BOOT_ORDER=B A" ] || fail "under boot.cmd's script: $(state)"
ab set-state B good
rm "$VIGIL_AB_DIR/boot.scr" "$LEGACY"

# Bad input is refused and changes nothing.
before=$(md5sum "$C0" "$C1")
expect_fail set-state C good
expect_fail set-state A maybe
expect_fail set-primary
expect_fail get-state
expect_fail frobnicate
expect_fail
[ "$(md5sum "$C0" "$C1")" = "$before" ] || fail "a refused command changed the copies"

# The shim RAUC calls (board/common/vigil-ab) runs vigil ab, under busybox
# as on the board (its sh, gzip, od, dd: an applet directory first in PATH).
SHIM=$ROOT/board/common/vigil-ab
BB=$(command -v busybox) || fail "busybox is missing (busybox-static, install-deps.sh board)"
mkdir -p "$WORK/bb"
"$BB" --install -s "$WORK/bb"
shim() { PATH="$WORK/bb:$PATH" VIGIL_AB_VIGIL=$1 "$BB" sh "$SHIM" "${@:2}"; }
mkcopy "$C0" BOOT_A_LEFT=2 BOOT_B_LEFT=3 'BOOT_ORDER=B A'
cp "$C0" "$C1"
[ "$(shim "$VIGIL" get-primary)" = B ] || fail "the shim does not run vigil ab"
code=0; shim "$VIGIL" set-state C bad 2>/dev/null || code=$?
[ "$code" = 1 ] || fail "the shim: vigil ab's exit code $code, expected 1"

# A new system whose vigil cannot run (dies of SIGBUS, or is not there) is
# still marked bad: the shim does set-state SLOT bad itself, and vigil's
# reader, the independent decoder and mkenvimage agree on what it wrote.
printf '#!/bin/sh\nkill -BUS $$\n' > "$WORK/broken-vigil"
chmod +x "$WORK/broken-vigil"
for broken in "$WORK/broken-vigil" "$WORK/no-such-vigil"; do
  mkcopy "$C0" BOOT_A_LEFT=2 BOOT_B_LEFT=3 'BOOT_ORDER=B A'
  cp "$C0" "$C1"
  shim "$broken" set-state B bad 2>"$WORK/err" || fail "the shim could not mark B bad without vigil ($broken): $(cat "$WORK/err")"
  grep -q 'marking slot B bad without it' "$WORK/err" || fail "the shim did not say it worked without vigil"
  [ "$(state)" = "BOOT_A_LEFT=2 BOOT_B_LEFT=0 BOOT_ORDER=B A" ] || fail "set-state B bad without vigil: $(state)"
  mkcopy "$WORK/want" BOOT_A_LEFT=2 BOOT_B_LEFT=0 'BOOT_ORDER=B A'
  cmp -s "$C0" "$WORK/want" || fail "the shim's copy 0 is not mkenvimage's bytes"
  expect A get-primary
  expect bad get-state B
done
# From copy 1 when copy 0 is torn; from the legacy file when both are.
mkcopy "$C0" BOOT_A_LEFT=3 BOOT_B_LEFT=3 'BOOT_ORDER=A B'
mkcopy "$C1" BOOT_A_LEFT=1 BOOT_B_LEFT=3 'BOOT_ORDER=A B'
printf '\x42' | dd of="$C0" bs=1 seek=20 conv=notrunc status=none
shim "$WORK/broken-vigil" set-state B bad 2>/dev/null || fail "the shim failed on a torn copy 0"
[ "$(state)" = "BOOT_A_LEFT=1 BOOT_B_LEFT=0 BOOT_ORDER=A B" ] || fail "the shim did not read copy 1: $(state)"
head -c 100 "$WORK/want" > "$C0"
printf '\x42' | dd of="$C1" bs=1 seek=30 conv=notrunc status=none
printf 'BOOT_ORDER=B A\nBOOT_A_LEFT=2\nBOOT_B_LEFT=1\n\0' > "$LEGACY"
shim "$WORK/broken-vigil" set-state A bad 2>/dev/null || fail "the shim failed on damaged copies"
[ "$(state)" = "BOOT_A_LEFT=0 BOOT_B_LEFT=1 BOOT_ORDER=B A" ] || fail "the shim did not read the legacy file: $(state)"
rm "$LEGACY"
# Under an old boot script, the legacy file is the state.
printf 'BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n' > "$LEGACY"
printf 'if fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.env; then\n' > "$VIGIL_AB_DIR/boot.scr"
before=$(md5sum "$C0" "$C1")
shim "$WORK/broken-vigil" set-state B bad 2>/dev/null || fail "the shim failed under the old boot script"
expect bad get-state B
expect A get-primary
[ "$(md5sum "$C0" "$C1")" = "$before" ] || fail "under the old boot script, the shim changed the copies"
rm "$VIGIL_AB_DIR/boot.scr" "$LEGACY"
# Nothing else is done without vigil: its exit code, nothing written.
before=$(md5sum "$C0" "$C1")
for cmd in "set-primary B" "set-state B good" "set-state C bad" "get-primary"; do
  code=0; shim "$WORK/broken-vigil" $cmd 2>/dev/null || code=$?
  [ "$code" = 135 ] || fail "the shim without vigil, $cmd: exit $code, expected vigil's 135"
done
[ "$(md5sum "$C0" "$C1")" = "$before" ] || fail "the shim without vigil changed the copies"
echo "test-vigil-ab: ok"
