#!/usr/bin/env bash
# The self-test of vm-runner.sh (the cargo runner that boots aarch64 test
# binaries in the emulated board with vivid loaded). Builds vivid-probe.c static
# for aarch64 and runs it through the runner:
# 1. `vivid-probe exit 3 ARG...`: the status 3 comes back, the arguments arrive
#    unchanged (spaces, quotes, $, *, a newline, an empty one);
# 2. `vivid-probe exit 0`: status 0;
# 3. `vivid-probe`: capture from /dev/video0, unplug (unbind) while streaming,
#    replug, rmmod/modprobe (vm-runner.sh's header lists what it checks); status 0;
# 4. `vivid-probe hang` with VIGIL_VM_TIMEOUT=20: the runner gives up with 125.
# Prints each run's wall time. usage: test-vm-runner.sh (env as vm-runner.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TD=${CARGO_TARGET_DIR:-$ROOT/target}
case $TD in /*) ;; *) TD=$ROOT/$TD ;; esac
OUT=$TD/qemu-virt/vm-runner
RUNNER=$HERE/vm-runner.sh
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

log() { printf 'test-vm-runner: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

command -v aarch64-linux-gnu-gcc >/dev/null || fail "aarch64-linux-gnu-gcc is missing (make deps-board)"
PROBE=$OUT/vivid-probe
aarch64-linux-gnu-gcc -static -O2 -Wall -o "$PROBE" "$HERE/vivid-probe.c"

# run NAME EXPECTED_STATUS ARG...: runs the probe through the runner, output in $WORK/NAME.out
run() {
  local name=$1 want=$2 rc t0
  shift 2
  t0=$(date +%s.%N)
  set +e
  "$RUNNER" "$PROBE" "$@" > "$WORK/$name.out" 2>&1
  rc=$?
  set -e
  log "$name: status $rc in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
  if [ "$rc" != "$want" ]; then
    tail -n 40 "$WORK/$name.out" >&2
    fail "$name: status $rc, expected $want"
  fi
}

run args 3 exit 3 'a b' "it's" '$HOME' '*' $'two\nlines' '' '--x="y z"'
printf '%s\n' '[a b]' "[it's]" '[$HOME]' '[*]' '[two' 'lines]' '[]' '[--x="y z"]' > "$WORK/args.want"
grep -a -e '^\[' -e '^lines\]$' "$WORK/args.out" | grep -a -v -E '^\[ *[0-9]+\.[0-9]+\] ' > "$WORK/args.got" || true
diff -u "$WORK/args.want" "$WORK/args.got" >&2 || fail "args: the arguments changed on the way into the VM"
grep -q 'exited with status 3' "$WORK/args.out" || fail "args: no status line"

run exit0 0 exit 0

run probe 0
grep -a '^probe: ' "$WORK/probe.out" | grep -v '^probe: frame' >&2
grep -q 'probe: done .* 0 failed' "$WORK/probe.out" || fail "probe: did not finish"

VIGIL_VM_TIMEOUT=20 run hang 125 hang
grep -q 'timed out after 20s' "$WORK/hang.out" || fail "hang: no timeout message"
log "all passed"
