#!/usr/bin/env bash
# The boot script's side of the power-cut-safe A/B state, on the emulated
# board's U-Boot (called by test-boot.sh; runs alone too): boots copies of
# the image with damaged state copies and stops QEMU as soon as the boot
# script has said which slot it boots (it has written the state by then),
# then reads the FAT partition with mtools.
#
# 1. Copy 0 damaged (a byte flipped, as a cut during its write leaves it),
#    copy 1 holding a state unlike the defaults: copy 1's state is used, the
#    console says so, and afterwards both copies are valid again.
# 2. Both copies damaged (copy 0 cut short, copy 1 flipped) and the legacy
#    text file of an older image holding a state: that state is used, and
#    both copies are written from it.
#
# usage: test-ab-state.sh IMAGE_DIR   (u-boot.pflash, env.pflash, disk.img)
set -euo pipefail
DIR=${1:?usage: test-ab-state.sh IMAGE_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/board/qemu-virt/ab-lib.sh"
TIMEOUT=${AB_BOOT_TIMEOUT:-60}
WORK=$(mktemp -d)
QEMU_PID=
cleanup() {
  if [ -n "$QEMU_PID" ]; then kill "$QEMU_PID" 2>/dev/null || true; wait "$QEMU_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf 'test-ab-state: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  log "console:"
  grep -a 'vigil:\|Error\|error' "$WORK/console.log" >&2 || true
  exit 1
}

fresh_copy() {
  cp --sparse=always "$DIR/disk.img" "$WORK/disk.img"
  cp "$DIR/u-boot.pflash" "$DIR/env.pflash" "$WORK/"
}

# boot_to_script_line: boots the copy until the boot script's "booting slot"
# line (or its reset line), then stops QEMU.
boot_to_script_line() {
  : > "$WORK/console.log"
  local start=$(date +%s.%N)
  QEMU_HTTP_PORT=0 QEMU_MEM=512 "$ROOT/board/qemu-virt/boot-qemu.sh" "$WORK" \
    </dev/null >"$WORK/console.log" 2>&1 &
  QEMU_PID=$!
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until grep -aq 'vigil: booting slot\|vigil: no slot has boot attempts' "$WORK/console.log"; do
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited before the boot script chose a slot"
    [ "$(date +%s)" -lt "$deadline" ] || fail "no boot script line within ${TIMEOUT}s"
    sleep 0.2
  done
  kill "$QEMU_PID" 2>/dev/null || true
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
  log "boot script line after $(python3 -c "import time; print(f'{time.time() - $start:.1f}')") s"
}

expect_console() { grep -aqF "$1" "$WORK/console.log" || fail "the console did not say: $1"; }
expect_copies() { # STATE: both copies valid and holding STATE
  local c0 c1
  c0=$(ab_copy "$WORK/disk.img" vigil-ab.0)
  c1=$(ab_copy "$WORK/disk.img" vigil-ab.1)
  [ "$c0" = "$1" ] || fail "copy 0 after the boot: '$c0', expected '$1'"
  [ "$c1" = "$1" ] || fail "copy 1 after the boot: '$c1', expected '$1'"
}

# --- 1. copy 0 damaged: copy 1 is used and copy 0 repaired --------------------
fresh_copy
ab_make "$WORK/c1" BOOT_A_LEFT=3 BOOT_B_LEFT=2 'BOOT_ORDER=B A'
ab_make "$WORK/c0" BOOT_A_LEFT=1 BOOT_B_LEFT=1 'BOOT_ORDER=A B'
printf '\x42' | dd of="$WORK/c0" bs=1 seek=20 conv=notrunc status=none
ab_put "$WORK/disk.img" vigil-ab.0 "$WORK/c0"
ab_put "$WORK/disk.img" vigil-ab.1 "$WORK/c1"
[ "$(ab_copy "$WORK/disk.img" vigil-ab.0)" = invalid ] || fail "the damaged copy 0 still decodes"
boot_to_script_line
expect_console "vigil: A/B state copy 0 damaged; using copy 1"
expect_console "vigil: booting slot B (attempts left: A 3, B 1)"
expect_copies "BOOT_A_LEFT=3 BOOT_B_LEFT=1 BOOT_ORDER=B A"
log "copy 0 damaged: copy 1's state used (B first), both copies valid again"

# --- 2. both copies damaged: the legacy file's state ---------------------------
fresh_copy
ab_make "$WORK/c0" BOOT_A_LEFT=3 BOOT_B_LEFT=3 'BOOT_ORDER=A B'
head -c 100 "$WORK/c0" > "$WORK/c0.short"
ab_make "$WORK/c1" BOOT_A_LEFT=3 BOOT_B_LEFT=3 'BOOT_ORDER=A B'
printf '\x42' | dd of="$WORK/c1" bs=1 seek=30 conv=notrunc status=none
ab_put "$WORK/disk.img" vigil-ab.0 "$WORK/c0.short"
ab_put "$WORK/disk.img" vigil-ab.1 "$WORK/c1"
printf 'BOOT_ORDER=B A\nBOOT_A_LEFT=2\nBOOT_B_LEFT=3\n' > "$WORK/legacy"
ab_put "$WORK/disk.img" vigil-ab.env "$WORK/legacy"
boot_to_script_line
expect_console "vigil: no valid A/B state copy; using vigil-ab.env"
expect_console "vigil: booting slot B (attempts left: A 2, B 2)"
expect_copies "BOOT_A_LEFT=2 BOOT_B_LEFT=2 BOOT_ORDER=B A"
log "both copies damaged: the legacy file's state used, both copies written"
log "ok"
