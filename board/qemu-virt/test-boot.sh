#!/usr/bin/env bash
# The emulated board's boot test (CI): boots copies of the image built by
# `make image-qemu` and checks, from outside, what an operator would see.
#
# 1. Normal boot: U-Boot runs boot.scr, slot A boots, vigil comes up on the
#    sample clip; once claimed with the setup code it printed, /api/status
#    answers with boot slot A, this vigil's version and the software backend; once its web
#    server answers, vigil marks the slot good through RAUC (BOOT_A_LEFT back to 3 in both
#    A/B state copies, vigil-ab.0 and vigil-ab.1, decoded here with python3's zlib).
# 2. Rollback: the state copies are set to prefer slot B, which is empty. The
#    script spends B's 3 attempts (each a U-Boot reset), then boots A again.
# 3. test-ab-state.sh: damaged state copies (a torn write), U-Boot only.
#
# Prints the boot-to-status times. usage: test-boot.sh IMAGE_DIR
set -euo pipefail
DIR=${1:?usage: test-boot.sh IMAGE_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/board/qemu-virt/ab-lib.sh"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
BOOT_TIMEOUT=${BOOT_TIMEOUT:-420}
WORK=$(mktemp -d)
QEMU_PID=
cleanup() {
  if [ -n "$QEMU_PID" ]; then kill "$QEMU_PID" 2>/dev/null || true; wait "$QEMU_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf 'test-boot: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  log "last console lines:"
  tail -n 60 "$WORK/console.log" >&2 || true
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fresh_copy: a pristine copy of the built image in $WORK.
fresh_copy() {
  cp --sparse=always "$DIR/disk.img" "$WORK/disk.img"
  cp "$DIR/u-boot.pflash" "$DIR/env.pflash" "$WORK/"
}

# boot: starts QEMU on the copy in $WORK; sets PORT, QEMU_PID, START.
boot() {
  PORT=$(free_port)
  : > "$WORK/console.log"
  START=$(date +%s.%N)
  QEMU_HTTP_PORT=$PORT "$ROOT/board/qemu-virt/boot-qemu.sh" "$WORK" \
    </dev/null >"$WORK/console.log" 2>&1 &
  QEMU_PID=$!
}

# ab_state: the A/B state as U-Boot and Linux left it on the FAT partition:
# both copies valid and equal, one NAME=value per line.
ab_state() {
  local c0 c1
  c0=$(ab_copy "$WORK/disk.img" vigil-ab.0)
  c1=$(ab_copy "$WORK/disk.img" vigil-ab.1)
  [ "$c0" = "$c1" ] || fail "the A/B state copies differ: copy 0 '$c0', copy 1 '$c1'"
  [ "$c0" != invalid ] && [ "$c0" != missing ] || fail "A/B state copies: $c0"
  printf '%s\n' "$c0" | sed 's/ \(BOOT_\)/\n\1/g'
}

wait_status() { # -> prints the status JSON; fails after BOOT_TIMEOUT
  # /api/health is public; /api/status needs the admin session, so the
  # script claims the fresh box as an installer would: the one-time setup
  # code vigil printed on the console, then the setup POST.
  local deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited before /api/health answered"
    if curl -sf --max-time 2 "http://127.0.0.1:$PORT/api/health" >/dev/null; then
      local code
      code=$(grep -ao 'the setup code [A-Z0-9-]*' "$WORK/console.log" | tail -n 1 | awk '{print $4}')
      [ -n "$code" ] || fail "vigil answers but printed no setup code on the console"
      curl -sf --max-time 30 -c "$WORK/cookies" -H 'Content-Type: application/json' \
        -d "{\"password\":\"board-test-password\",\"code\":\"$code\"}" \
        "http://127.0.0.1:$PORT/api/setup" >/dev/null || fail "setup with the code $code was refused"
      curl -sf --max-time 5 -b "$WORK/cookies" "http://127.0.0.1:$PORT/api/status" \
        || fail "/api/status refused the admin session"
      return 0
    fi
    sleep 1
  done
  fail "no /api/health within ${BOOT_TIMEOUT}s"
}

stop() {
  kill "$QEMU_PID" 2>/dev/null || true
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
}

field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$1"; }

# --- 1. normal boot -------------------------------------------------------------
fresh_copy
boot
status=$(wait_status)
elapsed=$(python3 -c "import time; print(f'{time.time() - $START:.1f}')")
slot=$(printf '%s' "$status" | field boot_slot)
version=$(printf '%s' "$status" | field version)
backend=$(printf '%s' "$status" | field backend)
log "boot to /api/status: ${elapsed} s (slot $slot, vigil $version, backend $backend)"
[ "$slot" = A ] || fail "boot slot '$slot', expected A"
[ "$version" = "$VERSION" ] || fail "version '$version', expected $VERSION"
[ "$backend" = software ] || fail "backend '$backend', expected software (no RK3588 here)"
grep -q "vigil: booting slot A (attempts left: A 2, B 3)" "$WORK/console.log" \
  || fail "U-Boot's boot script did not take an attempt from slot A"
# The image's initial copies (mkenvimage) are read as they are.
! grep -aq "A/B state copy\|no A/B state" "$WORK/console.log" \
  || fail "the boot script did not read the image's copy 0: $(grep -a 'A/B state' "$WORK/console.log")"
# vigil marks the slot good through RAUC (rauc status mark-good, which
# calls vigil-ab) once its web server answers its own request (update).
deadline=$(( $(date +%s) + 120 ))
until grep -q "update: this slot is marked good" "$WORK/console.log"; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "slot A was not marked good"
  sleep 2
done
stop
state=$(ab_state)
log "A/B state after a good boot: $(echo $state)"
echo "$state" | grep -qx 'BOOT_A_LEFT=3' || fail "BOOT_A_LEFT not restored to 3: $state"

# --- 2. rollback from an empty slot B ------------------------------------------
fresh_copy
ab_set "$WORK/disk.img" BOOT_A_LEFT=3 BOOT_B_LEFT=3 'BOOT_ORDER=B A'
boot
status=$(wait_status)
elapsed=$(python3 -c "import time; print(f'{time.time() - $START:.1f}')")
slot=$(printf '%s' "$status" | field boot_slot)
tries=$(grep -c "vigil: booting slot B" "$WORK/console.log" || true)
log "rollback: $tries attempts on slot B, then slot $slot served /api/status after ${elapsed} s"
[ "$slot" = A ] || fail "after B failed, boot slot '$slot', expected A"
[ "$tries" = 3 ] || fail "$tries attempts on slot B, expected 3"
stop
state=$(ab_state)
echo "$state" | grep -qx 'BOOT_B_LEFT=0' || fail "BOOT_B_LEFT not 0 after B failed: $state"

# --- 3. a torn A/B state write, seen by U-Boot ----------------------------------
bash "$ROOT/board/qemu-virt/test-ab-state.sh" "$DIR"
log "ok"
