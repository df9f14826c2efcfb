#!/usr/bin/env bash
# The emulated board's boot test (CI): boots copies of the image built by
# `make image-qemu` and checks, from outside, what an operator would see.
#
# 1. Normal boot: U-Boot runs boot.scr, slot A boots, vigil comes up on the
#    sample clip; /api/status answers with boot slot A, this vigil's version
#    and the software backend; once vigil has run GOOD_AFTER seconds the slot
#    is marked good (BOOT_A_LEFT back to 3 in vigil-ab.env).
# 2. Rollback: the state file is set to prefer slot B, which is empty. The
#    script spends B's 3 attempts (each a U-Boot reset), then boots A again.
#
# Prints the boot-to-status times. usage: test-boot.sh IMAGE_DIR
set -euo pipefail
DIR=${1:?usage: test-boot.sh IMAGE_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
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

# ab_state: the A/B state file as U-Boot and Linux left it on the FAT partition.
ab_state() {
  local offset
  offset=$(sfdisk -J "$WORK/disk.img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; print([x for x in p if x.get("name")=="boot"][0]["start"]*512)')
  mtype -i "$WORK/disk.img@@$offset" ::vigil-ab.env | tr -d '\000'
}

set_ab_state() { # TEXT
  local offset
  offset=$(sfdisk -J "$WORK/disk.img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; print([x for x in p if x.get("name")=="boot"][0]["start"]*512)')
  printf '%s' "$1" > "$WORK/ab.env"
  mcopy -o -i "$WORK/disk.img@@$offset" "$WORK/ab.env" ::vigil-ab.env
}

wait_status() { # -> prints the status JSON; fails after BOOT_TIMEOUT
  local deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited before /api/status answered"
    if body=$(curl -sf --max-time 2 "http://127.0.0.1:$PORT/api/status"); then
      printf '%s' "$body"
      return 0
    fi
    sleep 1
  done
  fail "no /api/status within ${BOOT_TIMEOUT}s"
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
# The slot is marked good once vigil has run for 30 s (vigil-supervise).
deadline=$(( $(date +%s) + 120 ))
until grep -q "slot A marked good" "$WORK/console.log"; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "slot A was not marked good"
  sleep 2
done
stop
state=$(ab_state)
log "A/B state after a good boot: $(echo $state)"
echo "$state" | grep -qx 'BOOT_A_LEFT=3' || fail "BOOT_A_LEFT not restored to 3: $state"

# --- 2. rollback from an empty slot B ------------------------------------------
fresh_copy
set_ab_state $'BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n'
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
log "ok"
