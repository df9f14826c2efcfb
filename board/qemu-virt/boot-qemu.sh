#!/usr/bin/env bash
# Boots the emulated board (QEMU `virt`, cortex-a72, TCG) in the foreground
# with the serial console on this terminal and the status page forwarded to
# 127.0.0.1:${QEMU_HTTP_PORT:-18080}. Quit with Ctrl-A X.
#
# usage: board/qemu-virt/boot-qemu.sh IMAGE_DIR [extra qemu args]
# The disk is used in place, so the A/B state and /data persist across
# boots, as on a board. Env: QEMU_HTTP_PORT, QEMU_MEM (MiB, default 1536),
# QEMU_NO_REBOOT=1 (exit instead of rebooting), QEMU_RESTRICT=off (let the
# guest reach the host's loopback at 10.0.2.2: the set-up test's RTSP and NTP
# servers; NTP is UDP, which QEMU's guestfwd cannot forward, so the test
# lifts the restriction rather than forwarding). The board's watchdog is an
# emulated i6300esb PCI watchdog that resets the machine, as a board's would.
set -euo pipefail
DIR=${1:?usage: boot-qemu.sh IMAGE_DIR}
shift
PORT=${QEMU_HTTP_PORT:-18080}
args=(-M virt -cpu cortex-a72 -smp 2 -m "${QEMU_MEM:-1536}" -nographic
  -drive if=pflash,format=raw,unit=0,readonly=on,file="$DIR/u-boot.pflash"
  -drive if=pflash,format=raw,unit=1,file="$DIR/env.pflash"
  -drive if=none,format=raw,id=disk,file="$DIR/disk.img"
  -device virtio-blk-pci,drive=disk
  -netdev user,id=n0,restrict="${QEMU_RESTRICT:-on}",hostfwd=tcp:127.0.0.1:"$PORT"-:8080
  -device virtio-net-pci,netdev=n0,romfile=
  -device i6300esb -action watchdog=reset)
[ "${QEMU_NO_REBOOT:-0}" = 1 ] && args+=(-no-reboot)
printf 'boot-qemu: status page on http://127.0.0.1:%s/ once vigil is up (Ctrl-A X quits)\n' "$PORT" >&2
exec qemu-system-aarch64 "${args[@]}" "$@"
