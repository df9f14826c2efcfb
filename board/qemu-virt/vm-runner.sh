#!/usr/bin/env bash
# A cargo test runner for aarch64 test binaries that need a real kernel (V4L2):
# boots the binary inside the emulated board (QEMU `virt`, Debian's arm64 kernel)
# with the `vivid` virtual camera loaded, streams the guest console to stdout and
# exits with the test binary's exit status.
#
# usage: vm-runner.sh TEST_BINARY [ARG...]
#   e.g. CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=$PWD/board/qemu-virt/vm-runner.sh \
#          cargo test --target aarch64-unknown-linux-gnu --test v4l_vivid -- --test-threads=1
# env:  VIGIL_VM_TIMEOUT  seconds for the VM run, boot included (default 900; the
#                         one-off base build, a few seconds, is not counted)
#       VIGIL_VM_VIVID    vivid's module parameters (default "n_devs=1 node_types=0x1":
#                         one capture node, /dev/video0, and /dev/media0)
#       VIGIL_VM_MEM, VIGIL_VM_SMP  guest memory in MiB (1024) and CPUs (2)
#       VIGIL_VM_ENV      names of further variables to pass into the guest; RUST_LOG,
#                         RUST_TEST_* and RUST_MIN_STACK always pass, RUST_BACKTRACE
#                         defaults to 1, and VIGIL_IN_VM=1 is set
#       VIGIL_CACHE_DIR   where the Debian .debs are kept (board/qemu-virt/debs.sh)
#
# The initramfs is two concatenated newc cpio archives. The base (busybox-static
# with its applet links, vivid and its dependencies under /lib/modules/<ver> with
# a modules.dep from the host's `depmod -b`, so busybox `modprobe vivid` and
# `modprobe -r vivid` work, glibc and libstdc++ from the arm64 multiarch
# packages, /init) is cached by content in
# ${CARGO_TARGET_DIR:-target}/qemu-virt/vm-runner/base-<hash>/ with the kernel
# Image. Each run appends a small archive with the test binary as /vm/<name>, the
# shared libraries it needs beyond the base's, its arguments as a shell-quoted
# `set --` line (/vm/cmd) and its environment (/vm/env). /init mounts proc,
# sysfs, devtmpfs, devpts, tmpfs on /tmp, /run and /dev/shm, runs
# `modprobe vivid $VIGIL_VM_VIVID`, runs the binary in /tmp and prints
# "VIGIL-VM-EXIT <nonce> <status>" (the nonce is random per run, so the test's
# own output cannot fake it), then `poweroff -f`. QEMU always exits 0, so the
# status comes from that line; without it (guest crash, timeout) the runner
# exits 125 and says why. The last console log is kept in the cache dir.
#
# Guest facts (Debian 6.1.0 arm64 kernel, vivid n_devs=1 node_types=0x1, TCG
# cortex-a72 on a 2-core host; board/qemu-virt/test-vm-runner.sh checks the
# unplug ones with vivid-probe.c):
# - Modules: rc-core cec mc videodev videobuf2-common videobuf2-v4l2
#   videobuf2-memops videobuf2-vmalloc videobuf2-dma-contig v4l2-dv-timings
#   v4l2-tpg vivid. Nodes: /dev/video0 (capture; driver and card "vivid", bus
#   "platform:vivid-000") and /dev/media0. vivid's default node_types (0xe1d3d)
#   adds video1-video3 (output, metadata), vbi0-1, radio0-1, swradio0, v4l-touch0.
# - Timing: /init runs about 0.9 s after QEMU starts, vivid is loaded 0.15 s later,
#   a first frame comes 40 ms after open; boot to power-off for an empty test
#   takes about 2.5 s.
# - Input 0 (webcam): 83 formats (YUYV, NV12, YU12, RGB families, Bayer, ...);
#   default 640x360 YUYV at 1/5 s. VIDIOC_ENUM_FRAMESIZES is discrete: 320x180,
#   640x360, 640x480, 1280x720, 1920x1080, 3840x2160; frame intervals are discrete
#   and shrink with size: 1/1 1/2 1/4 1/5 1/10 2/25 1/15 1/25 1/30 1/40 1/50 1/60
#   at 320x180, down to 1/25 at 640x480, 2/25 (12.5 fps) at 1280x720, 1/5 at
#   1920x1080 and 1/2 at 3840x2160. S_PARM rounds to the nearest allowed
#   interval: at 640x480 25, 30 and 60 fps all give 1/25 (frames do come at
#   25 fps), 5 gives 1/5. YUYV 640x480: stride 1280, 614400 bytes a frame.
# - Unplug while a process holds /dev/video0 open and streams:
#   * `rmmod vivid` fails ("can't unload module 'vivid': Resource temporarily
#     unavailable", status 1): the open fd holds a reference on the module.
#   * `echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind` succeeds at once and
#     /dev/video0 disappears (open() then gives ENOENT). On the still-open fd:
#     poll() returns at once with POLLERR|POLLHUP|POLLPRI (0x1a, no POLLIN);
#     VIDIOC_DQBUF, QBUF, QUERYCAP, STREAMOFF and read() fail with ENODEV.
#     `rmmod vivid` still fails while that dead fd stays open.
#   * Replug with the dead fd still open: `echo vivid.0 >
#     /sys/bus/platform/drivers/vivid/bind` brings the camera back as /dev/video1
#     (a node's number is freed only when its last fd closes, like a USB camera
#     replugged under an application); it streams, the old fd stays dead.
#   * Once every fd is closed (and unmapped), `rmmod vivid` succeeds, the nodes
#     go, and `modprobe vivid n_devs=1 node_types=0x1` brings /dev/video0 back.
#     `modprobe -r vivid` also works and unloads the dependencies too.
#   * vivid's error-injection button control "Disconnect" (find it by name with
#     VIDIOC_QUERYCTRL | V4L2_CTRL_FLAG_NEXT_CTRL) marks the nodes unregistered
#     but leaves /dev/video0 in place: ioctls and open() give ENODEV. Only
#     rmmod + modprobe undo it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MARK=VIGIL-VM-EXIT

log() { printf 'vm-runner: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 125; }

BIN=${1:?usage: vm-runner.sh TEST_BINARY [ARG...]}
shift
[ -f "$BIN" ] || die "$BIN: no such file"
TIMEOUT=${VIGIL_VM_TIMEOUT:-900}
VIVID=${VIGIL_VM_VIVID:-n_devs=1 node_types=0x1}
MEM=${VIGIL_VM_MEM:-1024}
SMP=${VIGIL_VM_SMP:-2}
TD=${CARGO_TARGET_DIR:-$ROOT/target}
case $TD in /*) ;; *) TD=$ROOT/$TD ;; esac
CACHE=$TD/qemu-virt/vm-runner
MULTIARCH=/usr/lib/aarch64-linux-gnu
# The base archive's shared libraries (what Rust test binaries and C++ code link).
BASE_LIBS="ld-linux-aarch64.so.1 libc.so.6 libm.so.6 libgcc_s.so.1 libstdc++.so.6"
MODULES="vivid"

for t in qemu-system-aarch64 qemu-aarch64-static cpio depmod modprobe aarch64-linux-gnu-readelf flock sha256sum; do
  command -v "$t" >/dev/null || die "$t is missing (make deps-board)"
done
mkdir -p "$CACHE"

# sq WORD: WORD single-quoted for sh (any byte but NUL survives).
sq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

. "$HERE/debs.sh"

# --- the cached base: kernel Image and base.cpio ------------------------------
INIT=$(cat <<'EOF'
#!/bin/sh
# vm-runner's /init: mounts, loads vivid, runs /vm/cmd's binary, reports, powers off.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
. /vm/env
up() { cut -d' ' -f1 /proc/uptime; }
echo "vm-runner: /init at $(up) s"
if modprobe vivid $VIGIL_VM_VIVID; then
  i=0
  while [ ! -e /dev/video0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  echo "vm-runner: vivid loaded at $(up) s: $(ls /dev | grep -E '^(video|media|vbi|radio|swradio|v4l-)' | tr '\n' ' ')"
else
  echo "vm-runner: modprobe vivid $VIGIL_VM_VIVID failed"
fi
cd /tmp
. /vm/cmd
"$@"
st=$?
echo "$VIGIL_VM_MARK $VIGIL_VM_NONCE $st at $(up) s"
poweroff -f
EOF
)

kernel_deb=$(debs_kernel)
busybox_deb=$(debs_busybox)
key=$( {
  cat "$0" "$HERE/debs.sh"
  basename "$kernel_deb"; basename "$busybox_deb"
  for l in $BASE_LIBS; do sha256sum < "$MULTIARCH/$l"; done
} | sha256sum | cut -c1-16)
BASE=$CACHE/base-$key

build_base() {
  local w=$CACHE/tmp-base.$$ kver rel
  rm -rf "$w"
  mkdir -p "$w/kernel" "$w/busybox" "$w/root"/{proc,sys,dev,tmp,run,root,etc,vm,lib}
  log "building the base initramfs (kernel $(basename "$kernel_deb"), $(basename "$busybox_deb"))"
  dpkg-deb -x "$kernel_deb" "$w/kernel"
  dpkg-deb -x "$busybox_deb" "$w/busybox"
  kver=$(ls "$w/kernel/lib/modules")
  depmod -b "$w/kernel" "$kver"
  local R=$w/root
  mkdir -p "$R/lib/modules/$kver"
  for m in $MODULES; do
    modprobe -d "$w/kernel" -S "$kver" --show-depends "$m" | while read -r _ path _; do
      rel=${path#"$w/kernel/"}
      mkdir -p "$R/$(dirname "$rel")"
      cp "$path" "$R/$rel"
    done
  done
  cp "$w/kernel/lib/modules/$kver/modules.order" "$w/kernel/lib/modules/$kver/modules.builtin"* "$R/lib/modules/$kver/"
  depmod -b "$R" "$kver"
  busybox_links "$w/busybox/bin/busybox" "$R"
  for l in $BASE_LIBS; do cp -L "$MULTIARCH/$l" "$R/lib/$l"; done
  printf '%s\n' "$INIT" > "$R/init"
  chmod 0755 "$R/init"
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
  printf 'root:x:0:\nvideo:x:44:\n' > "$R/etc/group"
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$w/base.cpio"
  cp "$w/kernel/boot/vmlinuz-$kver" "$w/Image"
  echo "$kver" > "$w/kver"
  rm -rf "$w/kernel" "$w/busybox" "$w/root"
  # Only the current base is kept.
  rm -rf "$CACHE"/base-*
  mv "$w" "$BASE"
}

exec 9>"$CACHE/lock"
flock 9
if [ ! -f "$BASE/base.cpio" ]; then
  t0=$(date +%s.%N)
  build_base
  log "base built in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s: $BASE"
fi
flock -s 9

# --- this run's archive: the binary, its libraries, arguments, environment ------
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
QEMU_PID=
cleanup() { rm -rf "$RUN"; }
trap cleanup EXIT
mkdir -p "$RUN/root/vm" "$RUN/root/lib"
name=$(basename "$BIN")
ln "$BIN" "$RUN/root/vm/$name" 2>/dev/null || cp "$BIN" "$RUN/root/vm/$name"

copy_needed() { # ELF
  aarch64-linux-gnu-readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r lib; do
    case " $BASE_LIBS " in *" $lib "*) continue ;; esac
    [ -e "$RUN/root/lib/$lib" ] && continue
    [ -e "$MULTIARCH/$lib" ] || die "$lib (needed by $(basename "$1")) not in $MULTIARCH (install its :arm64 package)"
    cp -L "$MULTIARCH/$lib" "$RUN/root/lib/$lib"
    copy_needed "$RUN/root/lib/$lib"
  done
}
copy_needed "$BIN"

NONCE=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
{
  printf 'set -- %s' "$(sq "/vm/$name")"
  for a in "$@"; do printf ' %s' "$(sq "$a")"; done
  printf '\n'
} > "$RUN/root/vm/cmd"
{
  printf 'export VIGIL_VM_MARK=%s VIGIL_VM_NONCE=%s VIGIL_VM_VIVID=%s\n' "$MARK" "$NONCE" "$(sq "$VIVID")"
  printf 'export VIGIL_IN_VM=1 RUST_BACKTRACE=%s HOME=/root TMPDIR=/tmp\n' "$(sq "${RUST_BACKTRACE:-1}")"
  for v in $(compgen -e); do
    case $v in RUST_LOG | RUST_TEST_* | RUST_MIN_STACK) ;; *)
      case " ${VIGIL_VM_ENV:-} " in *" $v "*) ;; *) continue ;; esac ;;
    esac
    printf 'export %s=%s\n' "$v" "$(sq "${!v}")"
  done
} > "$RUN/root/vm/env"
(cd "$RUN/root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$RUN/run.cpio"
cat "$BASE/base.cpio" "$RUN/run.cpio" > "$RUN/initrd.cpio"
rm -rf "$RUN/root"

# --- boot ------------------------------------------------------------------------
LOG=$CACHE/last-console.log
log "booting $(cat "$BASE/kver") with $name ($(du -h "$RUN/initrd.cpio" | cut -f1) initramfs; timeout ${TIMEOUT}s)"
start=$(date +%s.%N)
set +e
timeout --foreground -k 10 "$TIMEOUT" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp "$SMP" -m "$MEM" \
  -nographic -no-reboot -nic none \
  -kernel "$BASE/Image" -initrd "$RUN/initrd.cpio" \
  -append "panic=-1 console=ttyAMA0 quiet" </dev/null 2>&1 \
  | sed -u 's/\r$//' | tee "$LOG"
qrc=${PIPESTATUS[0]}
set -e
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

st=$(grep -a -o "$MARK $NONCE [0-9]*" "$LOG" | tail -n 1 | awk '{ print $3 }' || true)
if [ -n "$st" ]; then
  log "$name exited with status $st (${secs}s in the VM)"
  exit "$st"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  log "error: timed out after ${TIMEOUT}s (VIGIL_VM_TIMEOUT) without the exit marker; console log: $LOG"
else
  log "error: the guest stopped after ${secs}s without printing its exit status (qemu status $qrc: kernel panic or /init died?); console log: $LOG"
fi
exit 125
