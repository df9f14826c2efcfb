#!/usr/bin/env bash
# Over-the-air updates on the emulated board, end to end, driven from
# outside the VM through vigil's HTTP API as the page drives it (issue 18):
# one copy of the image, one QEMU, every reboot through U-Boot's boot script.
#
# 0. The copy: a config on the data partition with [update] probation
#    $OTA_PROBATION and reboot_after "0s" (the reboot waits for the button),
#    and the admin password preseeded on the card (vigil-setup.toml).
# 1. Slot A boots the image's version; /api/update: available, slot A.
# 2. Refusals, each leaving slot A booted and the other slot as it was: no
#    session, no CSRF token (403), a Content-Length over max_bundle (413,
#    answered from the header alone), then uploads RAUC refuses (202, then
#    phase failed with RAUC's words): a file that is no bundle, a bundle
#    signed by a foreign CA, one for another compatible, one truncated
#    (the A/B state on the card untouched), one with a payload byte flipped
#    (found while RAUC writes slot B: B is left marked bad, A stays first).
# 3. A -> B with version 0.2.0 (a bundle over 100 MiB) while vigil's RSS and threads are sampled
#    every second through /api/status (they must stay flat); phase
#    installed; the reboot button; slot B boots vigil 0.2.0, which passes
#    its probation (last.ok, slot B marked good); events from before the
#    update are still listed, and an event's snapshot and the configuration
#    are byte for byte as before (checked again after step 4 and step 6).
#    vigil's log gives the peak RSS of RAUC's client, printed here.
# 4. B -> A with 0.3.0, the same way.
# 5. Power cuts (QEMU killed), the box on A (0.3.0): during the upload, and
#    while RAUC writes slot B: the board comes back on A with nothing under
#    way and no space lost; then right after an install of 0.2.0 made B
#    primary: the next power-on boots B, which passes its probation.
# 6. Rollback: 0.4.0, whose vigil is a truncated binary that cannot start,
#    into A: the supervisor's deadline (probation + 60 s) marks A bad and
#    reboots (the backend shim marks A bad without the broken vigil); the
#    next boot is B's: 0.2.0 comes back and says why; the A/B state copies
#    on the card say A is bad.
#
# usage: board/qemu-virt/test-ota.sh IMAGE_DIR
# env: VIGIL_BIN      the aarch64 vigil the bundles carry (default
#                     target/aarch64-unknown-linux-gnu/release/vigil)
#      OTA_PROBATION  update.probation on the board (default 60s)
#      BOOT_TIMEOUT   seconds for a boot to the web server (default 300)
# The bundles are built with build-bundle.sh, which works in IMAGE_DIR/bundle
# (and leaves IMAGE_DIR/vigil-<version>.raucb); everything else stays in a
# temporary directory. Prints each step's time and the total.
set -euo pipefail
DIR=${1:?usage: test-ota.sh IMAGE_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/board/qemu-virt/ab-lib.sh"
. "$ROOT/board/qemu-virt/bundle-lib.sh"
export VIGIL_BIN=${VIGIL_BIN:-$ROOT/target/aarch64-unknown-linux-gnu/release/vigil}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
PROBATION=${OTA_PROBATION:-60s}
case $PROBATION in
  *s) PROBATION_S=${PROBATION%s} ;;
  *m) PROBATION_S=$(( ${PROBATION%m} * 60 )) ;;
  *) echo "test-ota: OTA_PROBATION must be seconds or minutes (60s, 2m)" >&2; exit 2 ;;
esac
# The supervisor's deadline for a vigil that cannot start (SUPERVISOR_GRACE).
DEADLINE_S=$((PROBATION_S + 60))
PASSWORD=ota-test-password-1
COMPATIBLE=vigil-qemu-virt
KEYS=$(bash "$ROOT/scripts/dev-keys.sh")
WORK=$(mktemp -d)
QEMU_PID=
SAMPLER_PID=
cleanup() {
  for p in "$SAMPLER_PID" "$QEMU_PID"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

T0=$(date +%s)
STEP_T=$T0
log() { printf 'test-ota: [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
step_done() { # NAME: the step's own time
  local now
  now=$(date +%s)
  log "step '$1' done in $((now - STEP_T)) s"
  STEP_T=$now
}
fail() {
  log "FAIL: $*"
  log "last console lines:"
  tail -n 60 "$WORK/console.log" 2>/dev/null | tr -d '\r' >&2 || true
  exit 1
}
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

# --- the bundles ------------------------------------------------------------------
IMAGE_VERSION=$(sed -n 's/^vigil //p' "$DIR/work/rootfs/etc/vigil-release")
for v in 0.2.0 0.3.0 0.4.0; do
  [ "$v" != "$IMAGE_VERSION" ] || fail "the image has version $v, which this test installs as an update"
done
good_bundle() { # VERSION
  bash "$ROOT/board/qemu-virt/build-bundle.sh" "$DIR" "$1" >"$WORK/bundle.log" 2>&1 \
    || { cat "$WORK/bundle.log" >&2; fail "build-bundle.sh $1"; }
  mv "$DIR/vigil-$1.raucb" "$WORK/good-$1.raucb"
}
good_bundle 0.2.0
# Step 3's upload is over 100 MiB, so the flat RSS is shown on a body far
# larger than any buffer: 0.2.0's root filesystem (in IMAGE_DIR/bundle/input
# now) with 24 MiB of random bytes, which no compression shrinks, signed again.
in=$WORK/in-big
mkdir -p "$in"
cp --sparse=always "$DIR/bundle/input/rootfs.ext4" "$in/rootfs.ext4"
head -c $((24 << 20)) /dev/urandom > "$WORK/padding"
debugfs -w -R "write $WORK/padding /usr/share/ota-test-padding" "$in/rootfs.ext4" >"$WORK/debugfs.log" 2>&1 \
  || fail "debugfs: $(cat "$WORK/debugfs.log")"
rm -f "$WORK/padding"
sign_bundle "$in" "$WORK/big-0.2.0.raucb" 0.2.0 "$COMPATIBLE" "$KEYS/signing.cert.pem" "$KEYS/signing.key.pem" \
  2>"$WORK/rauc.log" || fail "rauc bundle big 0.2.0: $(cat "$WORK/rauc.log")"
rm -rf "$in"
[ "$(stat -c %s "$WORK/big-0.2.0.raucb")" -gt $((100 << 20)) ] \
  || fail "the big 0.2.0 bundle is only $(stat -c %s "$WORK/big-0.2.0.raucb") bytes"
good_bundle 0.3.0
# 0.4.0: 0.3.0's root filesystem (still in IMAGE_DIR/bundle/input) with its
# vigil cut to its first MiB, an ELF the kernel will not run: nothing of
# vigil starts, so only the supervisor's deadline can give the slot up.
in=$WORK/in-broken
mkdir -p "$in"
cp --sparse=always "$DIR/bundle/input/rootfs.ext4" "$in/rootfs.ext4"
head -c 1048576 "$VIGIL_BIN" > "$WORK/vigil-broken"
printf 'vigil 0.4.0\n' > "$WORK/release-broken"
printf '%s\n' "rm /usr/bin/vigil" "write $WORK/vigil-broken /usr/bin/vigil" "sif /usr/bin/vigil mode 0100755" \
  "rm /etc/vigil-release" "write $WORK/release-broken /etc/vigil-release" > "$WORK/broken.cmd"
debugfs -w -f "$WORK/broken.cmd" "$in/rootfs.ext4" >"$WORK/debugfs.log" 2>&1 || fail "debugfs: $(cat "$WORK/debugfs.log")"
sign_bundle "$in" "$WORK/broken-0.4.0.raucb" 0.4.0 "$COMPATIBLE" "$KEYS/signing.cert.pem" "$KEYS/signing.key.pem" \
  2>"$WORK/rauc.log" || fail "rauc bundle 0.4.0: $(cat "$WORK/rauc.log")"
rm -rf "$in"

bad_bundles "$WORK" "$COMPATIBLE" "$KEYS" 2>"$WORK/bundles.err" || fail "bad bundles: $(cat "$WORK/bundles.err")"
head -c 1048576 /dev/urandom > "$WORK/notabundle.raucb"
log "bundles: 0.2.0 and 0.3.0 ($(du -h --apparent-size "$WORK/good-0.2.0.raucb" | cut -f1) each), 0.2.0 with padding ($(du -h --apparent-size "$WORK/big-0.2.0.raucb" | cut -f1)), 0.4.0 with a truncated vigil, foreign CA, wrong compatible, flipped byte, truncated, 1 MiB of noise (the image has $IMAGE_VERSION)"
step_done bundles

# --- the copy of the image -------------------------------------------------------
cp --sparse=always "$DIR/disk.img" "$WORK/disk.img"
cp "$DIR/u-boot.pflash" "$DIR/env.pflash" "$WORK/"
part() { # NAME -> byte offset and size
  sfdisk -J "$WORK/disk.img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; x=[x for x in p if x.get("name")==sys.argv[1]][0]; print(x["start"]*512, x["size"]*512)' "$1"
}
{
  cat "$DIR/work/rootfs/etc/vigil/config.toml"
  printf '\n[update]\nprobation = "%s"\nreboot_after = "0s"\n' "$PROBATION"
  # Clips of the events, so their survival is checked too.
  printf '\n[record]\nenabled = true\npre_roll = "2s"\npost_roll = "2s"\nmax_length = "10s"\nring_size = "2MiB"\n'
} > "$WORK/config.toml"
read -r off size < <(part data)
dd if="$WORK/disk.img" of="$WORK/data.ext4" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$size" status=none
printf '%s\n' "mkdir vigil" "write $WORK/config.toml vigil/config.toml" > "$WORK/data.cmd"
debugfs -w -f "$WORK/data.cmd" "$WORK/data.ext4" >"$WORK/debugfs.log" 2>&1 || fail "debugfs: $(cat "$WORK/debugfs.log")"
debugfs -R "stat vigil/config.toml" "$WORK/data.ext4" 2>/dev/null | grep -q "Size: $(stat -c %s "$WORK/config.toml")" \
  || fail "config.toml not written into the data partition: $(cat "$WORK/debugfs.log")"
dd if="$WORK/data.ext4" of="$WORK/disk.img" bs=1M oflag=seek_bytes seek="$off" conv=notrunc status=none
rm -f "$WORK/data.ext4"
printf 'admin_password = "%s"\n' "$PASSWORD" > "$WORK/vigil-setup.toml"
mcopy -o -i "$WORK/disk.img@@$(ab_offset "$WORK/disk.img")" "$WORK/vigil-setup.toml" ::vigil-setup.toml
step_done "copy prepared (config with probation $PROBATION, reboot_after 0s; admin password preseeded)"

# --- QEMU and the console ----------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: > "$WORK/console.log"
# start_qemu: powers the board on; the console is appended to console.log.
start_qemu() {
  QEMU_HTTP_PORT=$PORT "$ROOT/board/qemu-virt/boot-qemu.sh" "$WORK" </dev/null >>"$WORK/console.log" 2>&1 &
  QEMU_PID=$!
}
# power_cut: QEMU killed outright, as a pulled plug (boot-qemu.sh execs it).
power_cut() {
  kill -KILL "$QEMU_PID" 2>/dev/null || true
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
}
start_qemu
alive() { kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited"; }
# console_mark: where the console is now; console_wait looks after it.
console_mark() { stat -c %s "$WORK/console.log"; }
console_wait() { # MARK REGEX SECONDS -> the first matching line after MARK
  local deadline=$(( $(date +%s) + $3 )) line
  while [ "$(date +%s)" -lt "$deadline" ]; do
    alive
    line=$(tail -c +"$(( $1 + 1 ))" "$WORK/console.log" | tr -d '\r' | grep -aE "$2" | head -n 1 || true)
    if [ -n "$line" ]; then printf '%s\n' "$line"; return 0; fi
    sleep 1
  done
  fail "no console line matching /$2/ within $3 s"
}

# --- HTTP as the page does it --------------------------------------------------------
URL=http://127.0.0.1:$PORT
api() { curl -sf --max-time 20 -b "$WORK/cookies" "$URL$1"; }
csrf() { api /api/session | json 'd["csrf"]'; }
update() { api /api/update | json "$1"; }
wait_health() { # SECONDS
  local deadline=$(( $(date +%s) + $1 ))
  until curl -sf --max-time 3 "$URL/api/health" >/dev/null; do
    alive
    [ "$(date +%s)" -lt "$deadline" ] || fail "no /api/health within $1 s"
    sleep 1
  done
}
login() {
  local deadline=$(( $(date +%s) + 60 ))
  until curl -sf --max-time 20 -c "$WORK/cookies" -H 'Content-Type: application/json' \
      -d "{\"password\":\"$PASSWORD\"}" "$URL/api/login" >/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "login with the preseeded admin password was refused"
    alive
    sleep 2
  done
}
# post_update PATH: the page's buttons (JSON {} with the CSRF token).
post_update() {
  curl -s --max-time 30 -b "$WORK/cookies" -o "$WORK/body" -w '%{http_code}' \
    -H 'Content-Type: application/json' -H "X-CSRF-Token: $(csrf)" -d '{}' "$URL$1" > "$WORK/code" || true
}
# upload FILE [CURL ARGS...]: POST /api/update/bundle streaming FILE; the
# status in $WORK/code, the body in $WORK/body.
upload() {
  local f=$1
  shift
  curl -s --max-time 900 -o "$WORK/body" -w '%{http_code}' -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' "$@" -T "$f" -X POST "$URL/api/update/bundle" \
    > "$WORK/code" || true
}
upload_as_admin() { upload "$1" -b "$WORK/cookies" -H "X-CSRF-Token: $(csrf)"; }
# wait_phase SECONDS: until the upload and install are over; prints the phase.
wait_phase() {
  local deadline=$(( $(date +%s) + $1 )) p
  while :; do
    alive
    p=$(update 'd["phase"]') || p=unknown
    case $p in receiving | installing | unknown) ;; *) echo "$p"; return ;; esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "update still '$p' after $1 s"
    sleep 1
  done
}
# slots: booted slot, other slot, its version and boot verdict, as /api/update says.
slots() { update '" ".join(str(x) for x in (d["slot"], d["other"]["slot"], d["other"]["version"], d["other"]["good"]))'; }
# up VERSION SLOT MARK: the boot after MARK reached slot SLOT and vigil VERSION answers.
up() {
  console_wait "$3" "vigil: booting slot $2" 180 >/dev/null
  console_wait "$3" "vigil $1 starting" "$BOOT_TIMEOUT" >/dev/null
  wait_health "$BOOT_TIMEOUT"
  login
  # vigil asks RAUC's service, which starts beside it, for up to 90 s.
  local deadline=$(( $(date +%s) + 100 ))
  until [ "$(update 'd["available"]')" = True ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "/api/update: not available: $(api /api/update)"
    sleep 1
  done
}

# --- 1. slot A --------------------------------------------------------------------------
up "$IMAGE_VERSION" A 0
[ "$(update 'd["slot"]')" = A ] || fail "/api/update: booted slot is not A: $(api /api/update)"
[ "$(api /api/status | json 'd["boot_slot"]')" = A ] || fail "/api/status: boot_slot is not A"
SLOTS_BEFORE=$(slots)
# The A/B state copies on the card, read while the board runs (vigil-ab
# syncs what it writes): once vigil marked this ordinary boot good, A has
# its 3 attempts back. The refusals must leave them as they are.
ab_both() { echo "0: $(ab_copy "$WORK/disk.img" vigil-ab.0) | 1: $(ab_copy "$WORK/disk.img" vigil-ab.1)"; }
deadline=$(( $(date +%s) + 60 ))
ab_fresh() {
  local c
  for n in 0 1; do
    c=" $(ab_copy "$WORK/disk.img" vigil-ab.$n) "
    for v in 'BOOT_ORDER=A B' BOOT_A_LEFT=3 BOOT_B_LEFT=3; do [[ $c == *" $v "* ]] || return 1; done
  done
}
until ab_fresh; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "slot A not marked good on the card within 60 s: $(ab_both)"
  sleep 1
done
AB_BEFORE=$(ab_both)
MAX_BUNDLE=$(update 'd["max_bundle"]')
log "slot A: vigil $IMAGE_VERSION answers; /api/update: available, slots '$SLOTS_BEFORE', max_bundle $MAX_BUNDLE"
step_done "boot slot A"

# --- 2. refusals --------------------------------------------------------------------------
upload "$WORK/flipped.raucb"
[ "$(cat "$WORK/code")" = 403 ] || fail "an upload without a session: $(cat "$WORK/code") $(cat "$WORK/body"), expected 403"
upload "$WORK/flipped.raucb" -b "$WORK/cookies"
[ "$(cat "$WORK/code")" = 403 ] || fail "an upload without the CSRF token: $(cat "$WORK/code") $(cat "$WORK/body"), expected 403"
log "refused: no session (403), no CSRF token (403)"
# The declared length alone: no body is sent, so the answer must come from
# the header (curl would time out waiting otherwise).
over=$((MAX_BUNDLE + 1))
code=$(curl -s --max-time 15 -o "$WORK/body" -w '%{http_code}' -b "$WORK/cookies" -H "X-CSRF-Token: $(csrf)" \
  -H 'Content-Type: application/octet-stream' -H "Content-Length: $over" -H 'Expect:' -X POST \
  "$URL/api/update/bundle" || true)
[ "$code" = 413 ] || fail "a declared $over bytes (max_bundle $MAX_BUNDLE): $code $(cat "$WORK/body"), expected 413 at once"
log "refused from the header alone: Content-Length $over over max_bundle (413: $(json 'd.get("error")' < "$WORK/body"))"
[ "$(update 'd["phase"]')" != receiving ] || fail "the refused upload left phase receiving"
expect_refused() { # NAME ERROR_REGEX
  upload_as_admin "$WORK/$1.raucb"
  [ "$(cat "$WORK/code")" = 202 ] || fail "$1: $(cat "$WORK/code") $(cat "$WORK/body"), expected 202"
  local p why
  p=$(wait_phase 300)
  why=$(update 'd["error"]')
  [ "$p" = failed ] || fail "$1: phase $p after the install, expected failed"
  grep -qiE "$2" <<<"$why" || fail "$1: refused with '$why', not /$2/"
  # Booted slot and the other slot's version (its boot state: on the card).
  [ "$(slots | cut -d' ' -f1-3)" = "$(cut -d' ' -f1-3 <<<"$SLOTS_BEFORE")" ] \
    || fail "$1: slots '$(slots)' after the refusal, before '$SLOTS_BEFORE'"
  log "refused: $1 (202, then: $why)"
}
expect_refused notabundle 'bundle|signature|squashfs|magic|size'
expect_refused foreign 'signature verification failed'
expect_refused compat 'compatible mismatch'
expect_refused truncated 'bundle size|invalid bundle'
[ "$(ab_both)" = "$AB_BEFORE" ] || fail "the A/B state changed with the refusals: $(ab_both), before $AB_BEFORE"
log "after these refusals: slot A booted, A/B state as before ($AB_BEFORE)"
# The flipped byte is found only when RAUC reads that block through verity,
# while it copies into slot B, which it marked bad before writing: B is
# half written and stays bad; A stays first with its attempts.
expect_refused flipped 'input/output error|verity'
want=${AB_BEFORE//BOOT_B_LEFT=3/BOOT_B_LEFT=0}
[ "$(ab_both)" = "$want" ] || fail "the A/B state after the flipped bundle: $(ab_both), expected $want"
# The page must not offer B as good either.
[ "$(update 'd["other"]["good"]')" = False ] \
  || fail "after the flipped bundle /api/update says slot B good ($(slots)) while the card says $(ab_both)"
log "after the flipped bundle: slot A booted and first, B (half written) bad: $(ab_both)"
step_done refusals

# --- 3. A -> B, 0.2.0 ---------------------------------------------------------------------
# Events stored before the update must still be listed after it.
deadline=$(( $(date +%s) + 420 ))
until FIRST_EVENT=$(api '/api/events?after=0&limit=1' | python3 -c '
import json,sys
d=json.load(sys.stdin); evs=d.get("events", d) if isinstance(d, dict) else d
print(evs[0]["id"]) if evs else sys.exit(1)' 2>/dev/null); do
  [ "$(date +%s)" -lt "$deadline" ] || fail "no event from the sample camera within 420 s"
  alive
  sleep 3
done
LAST_EVENT=$(api /api/status | json 'd["events"]["latest_id"]')
# What lives on /data and must come through every update and rollback: the
# first event's snapshot and the configuration (the password: every login).
api "/api/events/$FIRST_EVENT/snapshot.jpg" > "$WORK/snapshot-before.jpg" || fail "no snapshot for event $FIRST_EVENT"
api /api/settings/export > "$WORK/config-before.toml" || fail "no configuration export"
# The first event's clip, finished long before the first update's reboot:
# taken after it as the reference, checked after each later step.
CLIP_KEPT=
data_kept() { # WHEN
  if [ -z "$CLIP_KEPT" ]; then
    api "/api/events/$FIRST_EVENT/clip.mp4" > "$WORK/clip-before.mp4" || fail "$1: no clip for event $FIRST_EVENT"
    [ -s "$WORK/clip-before.mp4" ] || fail "$1: event $FIRST_EVENT's clip is empty"
    CLIP_KEPT=$(stat -c %s "$WORK/clip-before.mp4")
  else
    api "/api/events/$FIRST_EVENT/clip.mp4" > "$WORK/clip-now.mp4" || fail "$1: no clip for event $FIRST_EVENT"
    cmp -s "$WORK/clip-before.mp4" "$WORK/clip-now.mp4" || fail "$1: event $FIRST_EVENT's clip changed"
  fi
  api "/api/events/$FIRST_EVENT/snapshot.jpg" > "$WORK/snapshot-now.jpg" || fail "$1: no snapshot for event $FIRST_EVENT"
  cmp -s "$WORK/snapshot-before.jpg" "$WORK/snapshot-now.jpg" || fail "$1: event $FIRST_EVENT's snapshot changed"
  api /api/settings/export > "$WORK/config-now.toml" || fail "$1: no configuration export"
  cmp -s "$WORK/config-before.toml" "$WORK/config-now.toml" \
    || fail "$1: the configuration changed: $(diff "$WORK/config-before.toml" "$WORK/config-now.toml" | head -n 5)"
  log "$1: event $FIRST_EVENT's snapshot ($(stat -c %s "$WORK/snapshot-now.jpg") bytes), clip ($CLIP_KEPT bytes) and the configuration as before"
}
log "events before the update: first id $FIRST_EVENT, latest $LAST_EVENT"

# sampler: vigil's RSS and threads once a second from /api/status.
sample() {
  while :; do
    api /api/status | json '"%d %d" % (d["rss_bytes"], d["threads"])' >> "$WORK/samples" 2>/dev/null || true
    update '"%s %s%% %s" % (d["phase"], d["percent"], d["message"] or "")' >> "$WORK/phases" 2>/dev/null || true
    sleep 1
  done
}
: > "$WORK/samples"
: > "$WORK/phases"
sample &
SAMPLER_PID=$!
sleep 10
base=$(wc -l < "$WORK/samples")
t=$(date +%s)
upload_as_admin "$WORK/big-0.2.0.raucb"
[ "$(cat "$WORK/code")" = 202 ] || fail "0.2.0: $(cat "$WORK/code") $(cat "$WORK/body"), expected 202"
up_s=$(( $(date +%s) - t ))
p=$(wait_phase 600)
inst_s=$(( $(date +%s) - t - up_s ))
sleep 3
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
[ "$p" = installed ] || fail "0.2.0: phase $p ($(update 'd["error"]')), expected installed"
[ "$(update 'd["installed"]')" = 0.2.0 ] || fail "0.2.0: /api/update installed is $(update 'd["installed"]')"
[ "$(update 'd["reboot_in_s"]')" = None ] || fail "reboot_after 0s, yet a countdown: $(api /api/update)"
# Flat: the RSS during the upload and install at most 8 MiB over the
# highest of the 10 s before, and the same number of threads.
python3 - "$WORK/samples" "$base" <<'PY' >&2 || fail "vigil's RSS or threads did not stay flat during the upload and install"
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
base = int(sys.argv[2])
before, during = rows[:base], rows[base:]
if len(before) < 5 or len(during) < 5:
    print(f"test-ota: too few samples ({len(before)} before, {len(during)} during)"); sys.exit(1)
mib = lambda b: b / 1048576
rb, rd = [r for r, _ in before], [r for r, _ in during]
tb, td = {t for _, t in before}, {t for _, t in during}
print(f"test-ota: RSS before {mib(min(rb)):.1f}..{mib(max(rb)):.1f} MiB, during {mib(min(rd)):.1f}..{mib(max(rd)):.1f} MiB "
      f"({len(rd)} samples); threads before {sorted(tb)}, during {sorted(td)}")
ok = max(rd) <= max(rb) + 8 * 1048576 and td == tb and len(tb) == 1
sys.exit(0 if ok else 1)
PY
uniq "$WORK/phases" | sed 's/^/    progress: /' >&2
# vigil logs the peak RSS of RAUC's client (its only child) after the install:
# the figure behind the budget's update line.
peak=$(console_wait 0 "RAUC's client peaked at [0-9]+ KiB RSS" 30)
log "measured: ${peak#*update: }"
log "0.2.0 uploaded in $up_s s ($(du -h --apparent-size "$WORK/big-0.2.0.raucb" | cut -f1)), installed in $inst_s s; slots now '$(slots)'"
mark=$(console_mark)
post_update /api/update/reboot
[ "$(cat "$WORK/code")" = 200 ] || fail "the reboot button: $(cat "$WORK/code") $(cat "$WORK/body")"
t=$(date +%s)
# wait_good VERSION SLOT FROM: the probation of VERSION ends with last.ok.
wait_good() {
  local deadline=$(( $(date +%s) + PROBATION_S + 60 )) seen=no ok
  while :; do
    alive
    ok=$(update '"%s %s %s" % (d["probation"] is not None, (d["last"] or {}).get("ok"), (d["last"] or {}).get("to_version"))')
    case $ok in True*) seen=yes ;; esac
    [ "${ok#* }" = "True $1" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || fail "no last.ok for $1 within the probation: $(api /api/update)"
    sleep 1
  done
  local msg
  msg=$(update 'd["last"]["message"]')
  [ "$msg" = "updated from $3 to $1; slot $2 marked good" ] || fail "last.message '$msg'"
  [ "$(update 'd["slot"]')" = "$2" ] || fail "/api/update: slot is not $2"
  [ "$(update 'd["version"]')" = "$1" ] || fail "/api/update: version is not $1"
  [ "$(update 'd["probation"]')" = None ] || fail "probation still shown after the verdict"
  console_wait "$mark" "update: first boot of $1 on slot $2; probation $PROBATION_S s" 5 >/dev/null
  log "vigil $1 on slot $2: probation shown through the API: $seen; '$msg'"
}
up 0.2.0 B "$mark"
log "slot B booted vigil 0.2.0 $(( $(date +%s) - t )) s after the button"
wait_good 0.2.0 B "$IMAGE_VERSION"
[ "$(api /api/status | json 'd["boot_slot"]')" = B ] || fail "/api/status: boot_slot is not B"
got=$(api "/api/events?after=$((FIRST_EVENT - 1))&limit=1" | python3 -c '
import json,sys
d=json.load(sys.stdin); evs=d.get("events", d) if isinstance(d, dict) else d
print(evs[0]["id"] if evs else "none")')
[ "$got" = "$FIRST_EVENT" ] || fail "event $FIRST_EVENT from before the update is not listed (got $got)"
latest=$(api /api/status | json 'd["events"]["latest_id"]')
[ "$latest" -ge "$LAST_EVENT" ] || fail "latest event id $latest after the update, $LAST_EVENT before"
log "events from before the update still listed (id $FIRST_EVENT; latest id $LAST_EVENT before, $latest now)"
data_kept "after A -> B"
step_done "A -> B (0.2.0)"

# --- 4. B -> A, 0.3.0 ------------------------------------------------------------------------
upload_as_admin "$WORK/good-0.3.0.raucb"
[ "$(cat "$WORK/code")" = 202 ] || fail "0.3.0: $(cat "$WORK/code") $(cat "$WORK/body"), expected 202"
p=$(wait_phase 600)
[ "$p" = installed ] || fail "0.3.0: phase $p ($(update 'd["error"]')), expected installed"
mark=$(console_mark)
post_update /api/update/reboot
[ "$(cat "$WORK/code")" = 200 ] || fail "the reboot button: $(cat "$WORK/code") $(cat "$WORK/body")"
up 0.3.0 A "$mark"
wait_good 0.3.0 A 0.2.0
data_kept "after B -> A"
step_done "B -> A (0.3.0)"

# --- 5. power cuts ---------------------------------------------------------------------------
# free: bytes free on the data partition as vigil sees it.
free() { api /api/status | json 'd["disk"]["free_bytes"]'; }
# after_cut VERSION SLOT WHAT FREE_BEFORE: the board powered on again boots
# VERSION on SLOT with nothing under way and no space lost to what the cut
# left behind (8 MiB of slack for the events written meanwhile).
after_cut() {
  local mark
  mark=$(console_mark)
  start_qemu
  up "$1" "$2" "$mark"
  [ "$(update 'd["slot"]')" = "$2" ] || fail "after a cut $3: slot $(update 'd["slot"]'), expected $2"
  local p f
  p=$(update 'd["phase"]')
  [ "$p" = idle ] || fail "after a cut $3: phase $p, expected idle"
  f=$(free)
  [ "$f" -ge $(( $4 - (8 << 20) )) ] \
    || fail "after a cut $3: $(( ($4 - f) >> 20 )) MiB less free on the data partition ($4 -> $f bytes): the cut upload's file was left behind"
  log "power cut $3: vigil $1 on slot $2 again, phase idle, free space $(( $4 >> 20 )) -> $(( f >> 20 )) MiB"
}
# The cut during the upload: a third of the body received.
f0=$(free)
total=$(stat -c %s "$WORK/good-0.2.0.raucb")
upload_as_admin "$WORK/good-0.2.0.raucb" &
UPLOAD_PID=$!
deadline=$(( $(date +%s) + 300 ))
until [ "$(update '(d["received"] or 0)')" -ge $((total / 3)) ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the upload did not reach a third within 300 s: $(api /api/update)"
  sleep 0.2
done
power_cut
wait "$UPLOAD_PID" 2>/dev/null || true
after_cut 0.3.0 A "during the upload" "$f0"
# The cut while RAUC writes slot B.
f0=$(free)
upload_as_admin "$WORK/good-0.2.0.raucb"
[ "$(cat "$WORK/code")" = 202 ] || fail "0.2.0 before the cut: $(cat "$WORK/code") $(cat "$WORK/body"), expected 202"
deadline=$(( $(date +%s) + 300 ))
# RAUC words its step "Copying image to rootfs.N" (seen in step 3's progress).
until update '"%s %s" % (d["phase"], d["message"])' | grep -q '^installing Copying image'; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "RAUC did not start copying into the slot within 300 s: $(api /api/update)"
  sleep 0.2
done
sleep 2
msg=$(update 'd["message"]')
power_cut
after_cut 0.3.0 A "while RAUC wrote slot B ('$msg')" "$f0"
# The install after the cuts, and a cut right after RAUC made B primary
# (the reboot never asked for): the next power-on boots B, which passes its
# probation.
upload_as_admin "$WORK/good-0.2.0.raucb"
[ "$(cat "$WORK/code")" = 202 ] || fail "0.2.0 after the cuts: $(cat "$WORK/code") $(cat "$WORK/body"), expected 202"
p=$(wait_phase 600)
[ "$p" = installed ] || fail "0.2.0 after the cuts: phase $p ($(update 'd["error"]')), expected installed"
power_cut
mark=$(console_mark)
start_qemu
up 0.2.0 B "$mark"
wait_good 0.2.0 B 0.3.0
log "power cut after the boot order changed: B boots vigil 0.2.0 and is marked good"
step_done "power cuts"

# --- 6. rollback from a vigil that cannot start --------------------------------------------
# The box runs 0.2.0 on B; 0.4.0 goes into A.
upload_as_admin "$WORK/broken-0.4.0.raucb"
[ "$(cat "$WORK/code")" = 202 ] || fail "0.4.0: $(cat "$WORK/code") $(cat "$WORK/body"), expected 202"
p=$(wait_phase 600)
[ "$p" = installed ] || fail "0.4.0: phase $p ($(update 'd["error"]')), expected installed"
mark=$(console_mark)
post_update /api/update/reboot
[ "$(cat "$WORK/code")" = 200 ] || fail "the reboot button: $(cat "$WORK/code") $(cat "$WORK/body")"
t=$(date +%s)
console_wait "$mark" 'vigil: booting slot A' 180 >/dev/null
console_wait "$mark" "slot A is on probation: vigil has $DEADLINE_S s" "$BOOT_TIMEOUT" >/dev/null
log "slot A (0.4.0) booted; the supervisor gives it $DEADLINE_S s"
console_wait "$mark" "slot A not marked good within $DEADLINE_S s: marking it bad" $((DEADLINE_S + 120)) >/dev/null
mark2=$(console_mark)
sleep 5
# The mark must work without the new system's vigil: RAUC's backend and the
# supervisor's fallback are the old system's business.
if line=$(tail -c +"$((mark + 1))" "$WORK/console.log" | tr -d '\r' | grep -aE 'Failed marking slot|vigil-ab.*(not found|error)' | head -n 1) && [ -n "$line" ]; then
  fail "the supervisor could not mark slot A bad ('$line'): the backend shim must do set-state A bad without the vigil that cannot start; the box will boot A again until the boot script's attempts run out"
fi
up 0.2.0 B "$mark2"
first=$(tail -c +"$((mark2 + 1))" "$WORK/console.log" | tr -d '\r' | grep -aoE 'vigil: booting slot [AB]' | head -n 1)
[ "$first" = "vigil: booting slot B" ] || fail "the first boot after the deadline was '$first': slot A was not marked bad"
log "back on slot B (0.2.0) $(( $(date +%s) - t )) s after the button"
want="update to 0.4.0 failed: vigil did not mark the new system good within $DEADLINE_S s; running 0.2.0 on slot B"
deadline=$(( $(date +%s) + 60 ))
until [ "$(update '(d["last"] or {}).get("message")')" = "$want" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "last.message '$(update '(d["last"] or {}).get("message")')', expected '$want'"
  sleep 1
done
[ "$(update 'd["last"]["ok"]')" = False ] || fail "last.ok is not false after the rollback"
[ "$(update 'd["slot"]')" = B ] || fail "/api/update: slot is not B after the rollback"
[ "$(update 'd["other"]["good"]')" = False ] || fail "slot A is not bad after the rollback: $(api /api/update)"
log "the page says: '$want'"
data_kept "after the rollback"
# The old system's boot is an ordinary one: vigil gives slot B its attempts
# back (on the card), A stays bad.
deadline=$(( $(date +%s) + 60 ))
until [ "$(ab_both)" = "0: BOOT_A_LEFT=0 BOOT_B_LEFT=3 BOOT_ORDER=A B | 1: BOOT_A_LEFT=0 BOOT_B_LEFT=3 BOOT_ORDER=A B" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "slot B not marked good on the card after the rollback: $(ab_both)"
  sleep 1
done
log "after the rollback: slot B marked good again on the card, A bad: $(ab_both)"
step_done "rollback (0.4.0 cannot start)"

kill "$QEMU_PID" 2>/dev/null || true
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
c0=$(ab_copy "$WORK/disk.img" vigil-ab.0)
c1=$(ab_copy "$WORK/disk.img" vigil-ab.1)
log "A/B state copies: 0: $c0 | 1: $c1"
for c in "$c0" "$c1"; do
  grep -q 'BOOT_A_LEFT=0' <<<"$c" && ! grep -q 'BOOT_B_LEFT=0' <<<"$c" \
    || fail "A/B state at the end: '$c', expected A bad (BOOT_A_LEFT=0) and B with attempts"
done
log "ok: total $(( $(date +%s) - T0 )) s"
