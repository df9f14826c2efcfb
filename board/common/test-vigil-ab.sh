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

# The shim RAUC calls runs exactly this.
grep -qx 'exec /usr/bin/vigil ab "$@"' "$ROOT/board/common/vigil-ab" || fail "board/common/vigil-ab does not run vigil ab"
echo "test-vigil-ab: ok"
