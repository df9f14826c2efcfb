#!/usr/bin/env bash
# Writes a vigil firmware image to an RK3588 board (board/README.md).
#
# usage:
#   scripts/flash.sh sd IMAGE DEVICE      write to an SD card / eMMC module in a
#                                         USB reader (DEVICE: /dev/sdX, whole disk)
#   scripts/flash.sh maskrom IMAGE LOADER write to the board's eMMC over USB with
#                                         rkdeveloptool (board in maskrom mode;
#                                         LOADER: rk3588_spl_loader_*.bin)
# env: YES=1 skips the confirmation prompt (sd).
#
# IMAGE is the .wic (or .wic.gz / .wic.bz2 / .wic.xz) from the Yocto build
# (docs/yocto.md). A .bmap file beside it makes `sd` use bmaptool (writes
# only the used blocks, and verifies them).
set -euo pipefail

die() { printf 'flash: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'flash: %s\n' "$*" >&2; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing (apt-get install $2)"; }

decompress() { # IMAGE -> command printing the raw image on stdout
  case $1 in
    *.gz) echo "gzip -dc" ;;
    *.bz2) echo "bzip2 -dc" ;;
    *.xz) echo "xz -dc" ;;
    *) echo "cat" ;;
  esac
}

mode=${1:-}
case $mode in
  sd)
    [ $# -eq 3 ] || die "usage: flash.sh sd IMAGE DEVICE"
    image=$2 device=$3
    [ -f "$image" ] || die "no image at $image"
    [ -b "$device" ] || die "$device is not a block device"
    case $(basename "$device") in
      sd[a-z] | mmcblk[0-9] | nvme[0-9]n[0-9]) ;;
      *) die "$device is a partition or an unknown kind of disk: give the whole disk (/dev/sdX)" ;;
    esac
    if [ "$(cat "/sys/block/$(basename "$device")/removable" 2>/dev/null || echo 0)" != 1 ] && [ "${YES:-0}" != 1 ]; then
      log "warning: $device is not marked removable"
    fi
    if grep -q "^$device" /proc/mounts; then
      die "$device has mounted partitions; unmount them first"
    fi
    size=$(lsblk -dnbo SIZE "$device" 2>/dev/null || echo '?')
    log "about to overwrite all of $device ($size bytes, $(lsblk -dno MODEL "$device" 2>/dev/null || true)) with $image"
    if [ "${YES:-0}" != 1 ]; then
      read -r -p "type the device name to continue: " answer
      [ "$answer" = "$device" ] || die "not confirmed"
    fi
    bmap=${image%.*}.bmap
    [ -f "$image.bmap" ] && bmap=$image.bmap
    if [ -f "$bmap" ] && command -v bmaptool >/dev/null 2>&1; then
      bmaptool copy --bmap "$bmap" "$image" "$device"
    else
      $(decompress "$image") "$image" | dd of="$device" bs=4M conv=fsync status=progress
    fi
    sync
    log "done: put the card in the board and power it on"
    ;;
  maskrom)
    [ $# -eq 3 ] || die "usage: flash.sh maskrom IMAGE LOADER"
    image=$2 loader=$3
    [ -f "$image" ] || die "no image at $image"
    [ -f "$loader" ] || die "no loader at $loader"
    need rkdeveloptool rkdeveloptool
    rkdeveloptool ld | grep -q Maskrom \
      || die "no board in maskrom mode (hold the maskrom key while powering on, USB-C/OTG cable to this host)"
    raw=$image
    if [ "$(decompress "$image")" != cat ]; then
      raw=$(mktemp --suffix=.img)
      trap 'rm -f "$raw"' EXIT
      $(decompress "$image") "$image" > "$raw"
    fi
    rkdeveloptool db "$loader"
    rkdeveloptool wl 0 "$raw"
    rkdeveloptool rd
    log "done: the board reboots from eMMC"
    ;;
  *)
    die "usage: flash.sh sd IMAGE DEVICE | flash.sh maskrom IMAGE LOADER"
    ;;
esac
