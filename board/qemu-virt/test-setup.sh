#!/usr/bin/env bash
# The emulated board set up as a new owner would (issue 17), from a freshly
# built image, checked from outside:
#
# 1. First boot: the setup code is read off the console and off the card's
#    FAT partition (setup-code.txt); the console shows the box's address;
#    the admin password is set with the code.
# 2. Before any NTP server answers, /api/status says the clock is not
#    synchronised and the sample camera's events carry `clock_unsynced`.
# 3. From the settings API (as the page sends it): an RTSP camera served by
#    this machine (10.0.2.2 from the guest) is added and the NTP server this
#    script runs is set; vigil restarts, the camera streams, the clock
#    synchronises and later events carry no flag.
# 4. Reboot: still configured, still streaming; that boot removed the void
#    setup-code.txt from the card.
# 5. A hand-broken config.toml (written into the data partition from here):
#    vigil starts on the last good one and /api/settings says so.
# 6. A static address that is not confirmed reverts to DHCP: the page is
#    unreachable on the forwarded port while the box sits on 10.0.2.50, then
#    answers again and reports the revert.
#
# usage: test-setup.sh IMAGE_DIR. Prints the time each step took.
set -euo pipefail
DIR=${1:?usage: test-setup.sh IMAGE_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BOOT_TIMEOUT=${BOOT_TIMEOUT:-420}
PASSWORD=board-setup-password-1
WORK=$(mktemp -d)
QEMU_PID=
RTSP_PID=
NTP_PID=
cleanup() {
  for p in "$QEMU_PID" "$RTSP_PID" "$NTP_PID"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

T0=$(date +%s)
log() { printf 'test-setup: [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
fail() {
  log "FAIL: $*"
  log "last console lines:"
  tail -n 80 "$WORK/console.log" >&2 || true
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

# --- the disk image from here: the FAT card partition and the data partition
part_offset() { # NAME -> byte offset
  sfdisk -J "$WORK/disk.img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; x=[x for x in p if x.get("name")==sys.argv[1]][0]; print(x["start"]*512, x["size"]*512)' "$1"
}
card_has() { # FILE
  local off; off=$(part_offset boot | cut -d' ' -f1)
  mdir -b -i "$WORK/disk.img@@$off" ::/ 2>/dev/null | grep -qi "/$1\$"
}
card_cat() { # FILE
  local off; off=$(part_offset boot | cut -d' ' -f1)
  mtype -i "$WORK/disk.img@@$off" "::$1" | tr -d '\000'
}
data_write() { # LOCAL_FILE PATH_IN_DATA: replaces a file on the data partition
  local off size
  read -r off size < <(part_offset data)
  dd if="$WORK/disk.img" of="$WORK/data.ext4" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$size" status=none
  # The VM was stopped like a power cut: the journal may still hold recent
  # writes to this very file, which the next mount would replay over what
  # debugfs writes (the broken config came back as the good one). Replay
  # it first; e2fsck exits 1 when it did.
  local rc=0
  e2fsck -fy "$WORK/data.ext4" >"$WORK/e2fsck.log" 2>&1 || rc=$?
  [ "$rc" -le 1 ] || fail "e2fsck of the data partition: exit $rc: $(tail -n 5 "$WORK/e2fsck.log")"
  debugfs -w -R "rm $2" "$WORK/data.ext4" >/dev/null 2>&1 || true
  debugfs -w -R "write $1 $2" "$WORK/data.ext4" >/dev/null 2>&1
  debugfs -R "stat $2" "$WORK/data.ext4" 2>/dev/null | grep -q "Size: $(stat -c %s "$1")" \
    || fail "could not write $2 into the data partition"
  dd if="$WORK/data.ext4" of="$WORK/disk.img" bs=1M oflag=seek_bytes seek="$off" conv=notrunc status=none
  rm -f "$WORK/data.ext4"
}

# --- QEMU
boot() {
  PORT=$(free_port)
  : > "$WORK/console.log"
  QEMU_RESTRICT=off QEMU_HTTP_PORT=$PORT "$ROOT/board/qemu-virt/boot-qemu.sh" "$WORK" \
    </dev/null >"$WORK/console.log" 2>&1 &
  QEMU_PID=$!
}
stop() {
  kill "$QEMU_PID" 2>/dev/null || true
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
}
console_wait() { # REGEX SECONDS -> the matching line
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited while waiting for /$1/"
    if line=$(grep -aE "$1" "$WORK/console.log" | tail -n 1) && [ -n "$line" ]; then
      printf '%s\n' "$line"
      return 0
    fi
    sleep 1
  done
  fail "no console line matching /$1/ within $2 s"
}

# --- HTTP as the page does it: a session cookie, and the CSRF token on POSTs
api() { # PATH -> body (fails on an error status)
  curl -sf --max-time 20 -b "$WORK/cookies" "http://127.0.0.1:$PORT$1"
}
csrf() { api /api/session | json 'd["csrf"]'; }
post() { # PATH JSON -> body; the status code in $WORK/code
  curl -s --max-time 60 -b "$WORK/cookies" -c "$WORK/cookies" -o "$WORK/body" -w '%{http_code}' \
    -H 'Content-Type: application/json' -H "X-CSRF-Token: $(csrf)" -d "$2" \
    "http://127.0.0.1:$PORT$1" > "$WORK/code" || true
  cat "$WORK/body"
}
healthy() { curl -sf --max-time 3 "http://127.0.0.1:$PORT/api/health" >/dev/null; }
wait_health() { # SECONDS
  local deadline=$(( $(date +%s) + $1 ))
  until healthy; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "no /api/health within $1 s"
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited"
    sleep 1
  done
}
login() {
  curl -sf --max-time 60 -c "$WORK/cookies" -H 'Content-Type: application/json' \
    -d "{\"password\":\"$PASSWORD\"}" "http://127.0.0.1:$PORT/api/login" >/dev/null \
    || fail "login with the admin password was refused"
}
# After a save: the old process stops (its sessions handed over, so it
# answers 403 while it stops) and the supervisor starts the new one; wait for
# the new one's web interface line on the console, then for it to answer.
starts() { grep -ac 'vigil::cli: web interface on' "$WORK/console.log" || true; }
restarted_after() { # STARTS_BEFORE
  local deadline=$(( $(date +%s) + 240 ))
  until [ "$(starts)" -gt "$1" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "vigil did not start again after the save"
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited"
    sleep 1
  done
  wait_health 120
}
wait_until() { # SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within $secs s"
    kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited while waiting: $what"
    sleep 3
  done
}
camera_state() { # NAME -> state
  api /api/cameras | python3 -c 'import json,sys; cams=json.load(sys.stdin); print(next((c.get("state") for c in cams if c.get("name")==sys.argv[1]), "absent"))' "$1"
}
streaming() { [ "$(camera_state "$1")" = streaming ]; }
synchronized() { [ "$(api /api/status | json 'd.get("clock_synchronized")')" = True ]; }
# An event stamped at or after $1 (unix ms) whose clock_unsynced is $2 (True/False).
event_flagged() { # SINCE_MS FLAG
  api '/api/events?limit=50' | python3 -c '
import json,sys
d=json.load(sys.stdin); evs=d.get("events", d) if isinstance(d, dict) else d
since=int(sys.argv[1]); want=sys.argv[2]=="True"
sys.exit(0 if any(e["time_ms"]>=since and bool(e.get("clock_unsynced", False))==want for e in evs) else 1)' "$1" "$2"
}

# --- servers on this machine the guest reaches at 10.0.2.2
/usr/bin/python3 "$ROOT/tests/support/rtsp_server.py" --port 0 --mode h264-test \
  > "$WORK/rtsp.out" 2>"$WORK/rtsp.err" &
RTSP_PID=$!
python3 "$ROOT/tests/support/ntp_server.py" --port 0 > "$WORK/ntp.out" 2>"$WORK/ntp.err" &
NTP_PID=$!
for _ in $(seq 60); do
  [ -s "$WORK/rtsp.out" ] && [ -s "$WORK/ntp.out" ] && break
  sleep 0.5
done
RTSP_URL=$(sed -n 's/^READY //p' "$WORK/rtsp.out" | sed 's#127.0.0.1#10.0.2.2#')
NTP_PORT=$(sed -n 's/^READY //p' "$WORK/ntp.out")
[ -n "$RTSP_URL" ] && [ -n "$NTP_PORT" ] || fail "the RTSP or NTP server did not start: $(cat "$WORK/rtsp.err" "$WORK/ntp.err")"
log "RTSP camera $RTSP_URL, NTP server 10.0.2.2:$NTP_PORT (as the guest sees them)"

# --- 1. first boot ------------------------------------------------------------
cp --sparse=always "$DIR/disk.img" "$WORK/disk.img"
cp "$DIR/u-boot.pflash" "$DIR/env.pflash" "$WORK/"
boot
line=$(console_wait 'setup code: [A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}' "$BOOT_TIMEOUT")
CODE=$(printf '%s' "$line" | grep -oE '[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}' | tail -n 1)
log "setup code on the console: $CODE"
addr=$(console_wait 'vigil: open http://[0-9.]+:8080/' 120)
log "address on the console: $(printf '%s' "$addr" | grep -oE 'http://[0-9.]+:8080/')"
card_has setup-code.txt || fail "no setup-code.txt on the FAT partition"
card_cat setup-code.txt | grep -q "$CODE" || fail "setup-code.txt does not hold $CODE: $(card_cat setup-code.txt)"
wait_health "$BOOT_TIMEOUT"
curl -sf --max-time 60 -c "$WORK/cookies" -H 'Content-Type: application/json' \
  -d "{\"password\":\"$PASSWORD\",\"code\":\"$CODE\"}" \
  "http://127.0.0.1:$PORT/api/setup" >/dev/null || fail "setup with the code $CODE was refused"
log "claimed with the setup code"

# --- 2. before the clock is set -------------------------------------------------
synchronized && fail "the clock is synchronised before any NTP server was configured"
wait_until 420 "an event from the sample camera flagged clock_unsynced" event_flagged 0 True
log "events before the first sync carry clock_unsynced"

# --- 3. a camera and an NTP server from the settings API --------------------------
cams=$(api /api/settings | python3 -c '
import json,sys
v=json.load(sys.stdin)
cams=[{"was": c["name"], "name": c["name"], "url": c["url"], "detect_fps": c.get("detect_fps", 1)} for c in v["cameras"]]
cams.append({"name": "door", "url": sys.argv[1], "detect_fps": 1, "max_resolution": "640x480"})
print(json.dumps({"cameras": cams}))' "$RTSP_URL")
n=$(starts)
post /api/settings/cameras "$cams" >/dev/null
[ "$(cat "$WORK/code")" = 200 ] || fail "saving the cameras: $(cat "$WORK/code") $(cat "$WORK/body")"
restarted_after "$n"
n=$(starts)
post /api/settings/section "{\"section\":\"system\",\"values\":{\"ntp\":[\"10.0.2.2:$NTP_PORT\"]}}" >/dev/null
[ "$(cat "$WORK/code")" = 200 ] || fail "saving the NTP server: $(cat "$WORK/code") $(cat "$WORK/body")"
restarted_after "$n"
wait_until 300 "camera door streaming" streaming door
log "the RTSP camera added from the settings API streams"
wait_until 120 "clock synchronised against 10.0.2.2:$NTP_PORT" synchronized
SYNCED_MS=$(python3 -c 'import time; print(int(time.time()*1000))')
log "clock synchronised ($(grep -c answer "$WORK/ntp.err") NTP answers)"
wait_until 420 "an event after the sync without clock_unsynced" event_flagged "$SYNCED_MS" False
log "events after the sync carry no flag"

# --- 4. reboot: still configured -------------------------------------------------
stop
boot
wait_health "$BOOT_TIMEOUT"
login
wait_until 300 "camera door streaming after the reboot" streaming door
stop
# The boot step removes the void code from the card on the boot after setup.
card_has setup-code.txt && fail "setup-code.txt is still on the card after a boot with the box set up"
log "after a reboot: still configured, door streaming, no setup-code.txt on the card"

# --- 5. a hand-broken config falls back to the last good one ----------------------
printf '[[camera]\nname = "broken\n' > "$WORK/broken.toml"
data_write "$WORK/broken.toml" /vigil/config.toml
boot
wait_health "$BOOT_TIMEOUT"
login
why=$(api /api/settings | json 'd.get("fallback")')
[ "$why" != None ] || fail "/api/settings shows no fallback after the config was broken"
[ "$(camera_state door)" != absent ] || fail "the last good configuration (with door) is not the one running"
log "a broken config.toml: started on the last good one ($why)"

# --- 6. an unconfirmed static address reverts to DHCP -----------------------------
post /api/settings/section '{"section":"system.network","values":{"mode":"static","address":"10.0.2.50/24","gateway":"10.0.2.2","dns":["10.0.2.3"],"confirm_within":"30s"}}' >/dev/null
[ "$(cat "$WORK/code")" = 200 ] || fail "saving a static address: $(cat "$WORK/code") $(cat "$WORK/body")"
console_wait 'vigil: open http://10.0.2.50:8080/ \(static, not confirmed' 180 >/dev/null
sleep 2
healthy && fail "the page still answers through the port forwarded to 10.0.2.15"
log "static address 10.0.2.50 applied; the forwarded port (to 10.0.2.15) is locked out"
console_wait 'not confirmed in time; back to DHCP' 120 >/dev/null
wait_health 180
login
state=$(api /api/settings | json 'd["network"]["state"]')
[ "$state" = reverted ] || fail "network state '$state' after the revert, expected reverted"
log "not confirmed within 30 s: back on DHCP, the page answers again (state $state)"
stop
log "ok"
