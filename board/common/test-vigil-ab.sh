#!/usr/bin/env bash
# Host-side test of vigil-ab, the Linux side of the A/B state that RAUC's
# custom backend and vigil-supervise use: every command against a state file
# as U-Boot's `env export -t` leaves it (NUL-terminated), and bad input.
# Run by `make test-board`. usage: board/common/test-vigil-ab.sh
set -euo pipefail
AB=$(cd "$(dirname "$0")" && pwd)/vigil-ab
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export VIGIL_AB_FILE=$WORK/vigil-ab.env

fail() { printf 'test-vigil-ab: FAIL: %s\n' "$*" >&2; exit 1; }
expect() { # WANT CMD...: CMD prints WANT
  local got
  got=$("$AB" "${@:2}") || fail "vigil-ab ${*:2} failed"
  [ "$got" = "$1" ] || fail "vigil-ab ${*:2}: '$got', expected '$1'"
}
expect_fail() { # CMD...: CMD exits non-zero with a message
  local err
  if err=$("$AB" "$@" 2>&1); then fail "vigil-ab $* succeeded"; fi
  [ -n "$err" ] || fail "vigil-ab $* failed without a message"
}
state() { tr -d '\000' < "$VIGIL_AB_FILE" | tr '\n' ' '; }

# No file yet: boot.cmd's defaults.
expect A get-primary
expect good get-state B

# As U-Boot wrote it after one attempt on A.
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=2\nBOOT_B_LEFT=3\n\0' > "$VIGIL_AB_FILE"
expect A get-primary
expect good get-state A

# An update installed into B: RAUC makes it primary with fresh attempts.
"$AB" set-primary B
[ "$(state)" = "BOOT_ORDER=B A BOOT_A_LEFT=2 BOOT_B_LEFT=3 " ] || fail "after set-primary B: $(state)"
expect B get-primary

# B used up its attempts (U-Boot counted them down): A is primary again.
printf 'BOOT_ORDER=B A\nBOOT_A_LEFT=2\nBOOT_B_LEFT=0\n\0' > "$VIGIL_AB_FILE"
expect bad get-state B
expect A get-primary

# mark-bad / mark-good.
"$AB" set-state A bad
expect bad get-state A
expect_fail get-primary
"$AB" set-state A good
[ "$(state)" = "BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=0 " ] || fail "after set-state A good: $(state)"

# Bad input is refused and changes nothing.
before=$(state)
expect_fail set-state C good
expect_fail set-state A maybe
expect_fail set-primary
expect_fail frobnicate
[ "$(state)" = "$before" ] || fail "a refused command changed the state: $(state)"
echo "test-vigil-ab: ok"
