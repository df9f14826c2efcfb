#!/usr/bin/env bash
# RAUC on the emulated board, end to end, on a COPY of the built image:
#
# 1. Bad bundles are refused with RAUC's error and slot A stays primary: one
#    signed by a foreign CA, one for another compatible, one with a payload
#    byte flipped after signing, one truncated. (They carry a small root
#    filesystem: each is refused before it could boot, and small ones fit on
#    the data partition next to the good bundle.)
# 2. BUNDLE (made by `make bundle`, its vigil stamped with a version other
#    than the image's) installs into slot B; the custom backend (vigil-ab)
#    makes B primary; U-Boot boots B, and vigil in B logs the bundle's
#    version on its start line.
#
# The test-only parts go into the copy, never into the image: a boot step
# /etc/rc.d/S99rauctest written into rootfs_a with debugfs runs the installs
# with the `rauc` command as any root process on the board would, prints the
# results on the console and reboots; the bundles are written into the data
# partition. Prints the time of each step.
#
# usage: board/qemu-virt/test-rauc.sh IMAGE_DIR BUNDLE
set -euo pipefail
DIR=${1:?usage: test-rauc.sh IMAGE_DIR BUNDLE}
BUNDLE=${2:?usage: test-rauc.sh IMAGE_DIR BUNDLE}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
COMPATIBLE=vigil-qemu-virt
KEYS=$(bash "$ROOT/scripts/dev-keys.sh")
WORK=$(mktemp -d)
QEMU_PID=
cleanup() {
  if [ -n "$QEMU_PID" ]; then kill "$QEMU_PID" 2>/dev/null || true; wait "$QEMU_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

T0=$(date +%s.%N)
since() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }
log() { printf 'test-rauc: [%5ss] %s\n' "$(since "$T0")" "$*" >&2; }
fail() {
  log "FAIL: $*"
  log "last console lines:"
  tail -n 60 "$WORK/console.log" >&2 || true
  exit 1
}

# --- the bundles ------------------------------------------------------------------
info=$(rauc info --keyring "$KEYS/ca.cert.pem" "$BUNDLE" 2>/dev/null) || fail "rauc info refuses $BUNDLE"
VERSION=$(sed -n "s/^Version:[[:space:]]*'\(.*\)'/\1/p" <<<"$info")
IMAGE_VERSION=$(sed -n 's/^vigil //p' "$DIR/work/rootfs/etc/vigil-release")
[ -n "$VERSION" ] || fail "$BUNDLE has no version"
[ "$VERSION" != "$IMAGE_VERSION" ] \
  || fail "$BUNDLE has the image's version $VERSION: slot B could not be told from A (make bundle VERSION=...)"
log "bundle $(basename "$BUNDLE"): vigil $VERSION (the image has $IMAGE_VERSION)"

. "$ROOT/board/qemu-virt/bundle-lib.sh"
bad_bundles "$WORK" "$COMPATIBLE" "$KEYS" 2>"$WORK/bundles.err" || fail "bad bundles: $(cat "$WORK/bundles.err")"
log "bad bundles: foreign CA, compatible vigil-other-board, $FLIPPED_AT flipped, truncated to half"

# --- the copy of the image ----------------------------------------------------------
cp --sparse=always "$DIR/disk.img" "$WORK/disk.img"
cp "$DIR/u-boot.pflash" "$DIR/env.pflash" "$WORK/"

part() { # NAME -> byte offset and size
  sfdisk -J "$WORK/disk.img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; x=[x for x in p if x.get("name")==sys.argv[1]][0]; print(x["start"]*512, x["size"]*512)' "$1"
}
# debugfs_in PART COMMAND...: runs debugfs -w commands in partition PART of the copy.
debugfs_in() {
  local name=$1 off size
  shift
  read -r off size < <(part "$name")
  dd if="$WORK/disk.img" of="$WORK/part.ext4" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$size" status=none
  printf '%s\n' "$@" > "$WORK/debugfs.cmd"
  debugfs -w -f "$WORK/debugfs.cmd" "$WORK/part.ext4" >"$WORK/debugfs.log" 2>&1 || fail "debugfs in $name: $(cat "$WORK/debugfs.log")"
  dd if="$WORK/part.ext4" of="$WORK/disk.img" bs=1M oflag=seek_bytes seek="$off" conv=notrunc status=none
  rm -f "$WORK/part.ext4"
}
# The A/B state as the boot script reads it: copy 0 of the two checksummed
# copies (ab-lib.sh decodes them independently of U-Boot and vigil).
. "$ROOT/board/qemu-virt/ab-lib.sh"
ab_state() {
  local c0
  c0=$(ab_copy "$WORK/disk.img" vigil-ab.0)
  [ "$c0" != invalid ] && [ "$c0" != missing ] || fail "A/B state copy 0: $c0"
  printf '%s\n' "$c0" | sed 's/ \(BOOT_\)/\n\1/g'
}

# The board side, run by rcS before vigil starts. A marker on /data keeps a
# fallback boot of slot A from installing again.
cat > "$WORK/S99rauctest" <<'EOF'
#!/bin/sh
[ "$1" = start ] || exit 0
[ -e /data/rauc-test.done ] && exit 0
: > /data/rauc-test.done
say() { echo "rauc-test: $*" > /dev/console; }
up() { cut -d' ' -f1 /proc/uptime; }
t=$(up)
i=0
until rauc status >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 120 ] || { say "rauc service not answering after 60 s"; break; }
    sleep 0.5
done
say "rauc service answers at uptime $(up) s (rcS reached S99 at $t s)"
memory() { # the daemons' resident and peak memory
    for p in $(pidof dbus-daemon) $(pidof rauc); do
        say "memory $1: $(cat /proc/$p/comm) $(grep -E '^Vm(RSS|HWM)' /proc/$p/status | tr -s ' \t' ' ' | tr '\n' ' ')"
    done
}
memory idle
rauc status 2>&1 | sed 's/^/rauc-test: status: /' > /dev/console
for b in foreign compat flipped truncated good; do
    t=$(up)
    out=$(rauc install /data/$b.raucb 2>&1)
    rc=$?
    echo "$out" | tail -n 4 | sed "s/^/rauc-test: $b: /" > /dev/console
    say "result $b rc=$rc primary=$(vigil-ab get-primary) from $t to $(up) s"
done
memory "after the installs"
say "done"
sync
reboot
EOF
debugfs_in rootfs_a "write $WORK/S99rauctest /etc/rc.d/S99rauctest" "sif /etc/rc.d/S99rauctest mode 0100755"
cp --sparse=always "$BUNDLE" "$WORK/good.raucb"
debugfs_in data "write $WORK/good.raucb good.raucb" "write $WORK/foreign.raucb foreign.raucb" \
  "write $WORK/compat.raucb compat.raucb" "write $WORK/flipped.raucb flipped.raucb" \
  "write $WORK/truncated.raucb truncated.raucb"
log "copy prepared: S99rauctest in rootfs_a, 5 bundles in data ($(du -h --apparent-size "$BUNDLE" | cut -f1) good)"

# --- boot: the installs in slot A, then slot B ------------------------------------------------
: > "$WORK/console.log"
QEMU_HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') \
  "$ROOT/board/qemu-virt/boot-qemu.sh" "$WORK" </dev/null >"$WORK/console.log" 2>&1 &
QEMU_PID=$!
BOOT=$(date +%s.%N)
wait_line() { # REGEX SECONDS
  local deadline=$(( $(date +%s) + $2 ))
  until grep -aqE "$1" "$WORK/console.log"; do
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited while waiting for /$1/"
    [ "$(date +%s)" -lt "$deadline" ] || fail "no console line /$1/ within $2 s"
    sleep 0.5
  done
}
wait_line 'rauc-test: rauc service answers' "$BOOT_TIMEOUT"
log "slot A up, rauc service answers ($(since "$BOOT") s after QEMU started)"
wait_line 'rauc-test: done' 600
grep -a '^rauc-test' "$WORK/console.log" | tr -d '\r' > "$WORK/results"
sed 's/^/    /' "$WORK/results" >&2

result() { sed -n "s/^rauc-test: result $1 rc=\([0-9]*\) primary=\([AB]*\) .*/\1 \2/p" "$WORK/results"; }
expect_refused() { # NAME ERROR_REGEX
  local r
  r=$(result "$1")
  [ -n "$r" ] || fail "no result for the $1 bundle"
  [ "${r% *}" != 0 ] || fail "the $1 bundle was installed"
  [ "${r#* }" = A ] || fail "after the $1 bundle slot ${r#* } is primary, expected A"
  local why
  why=$(grep -a "^rauc-test: $1: LastError: " "$WORK/results" | sed "s/^rauc-test: $1: LastError: //")
  grep -aqiE "$2" <<<"$why" || fail "the $1 bundle was refused with '$why', not /$2/"
  log "refused: $1 ($why)"
}
expect_refused foreign 'signature verification failed'
expect_refused compat 'compatible mismatch'
expect_refused flipped 'input/output error|verity'
expect_refused truncated 'bundle size|invalid bundle'
r=$(result good)
[ "$r" = "0 B" ] || fail "the good bundle: rc and primary '$r', expected '0 B'"
log "installed: $(basename "$BUNDLE") into slot B, B primary"

# --- slot B ----------------------------------------------------------------------------------
REBOOT=$(date +%s.%N)
wait_line 'vigil: booting slot B' 120
wait_line "vigil $VERSION starting" "$BOOT_TIMEOUT"
log "slot B booted; its vigil logged 'vigil $VERSION starting' $(since "$REBOOT") s after the reboot"
wait_line 'vigil::cli: web interface on' 120
log "slot B: web interface up $(since "$REBOOT") s after the reboot"
grep -a 'rauc-test' <(sed -n '/vigil: booting slot B/,$p' "$WORK/console.log") && fail "the test step ran again in slot B"
kill "$QEMU_PID" 2>/dev/null || true
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
state=$(ab_state)
echo "$state" | grep -qx 'BOOT_ORDER=B A' || fail "A/B state after the update: $(echo $state)"
log "A/B state: $(echo $state)"
log "ok"
