#!/usr/bin/env bash
# Builds the emulated board: a GPT disk image for QEMU's aarch64 `virt`
# machine with the same partitions, boot script and rootfs-overlay as the
# RK3588 boards, from Debian's arm64 kernel and busybox and the cross-built
# vigil. No root, no loop mounts: filesystems are made from directories
# (mkfs.ext4 -d, mkfs.vfat + mcopy) and joined by genimage.
#
# usage: board/qemu-virt/build-image.sh OUT_DIR
# env:   VIGIL_BIN  the aarch64 vigil (default target/aarch64-unknown-linux-gnu/release/vigil)
#        MODEL      the SSD model file;  SAMPLE  the sample clip
#        VIGIL_CACHE_DIR  where the Debian packages are kept (default ~/.cache/vigil)
#
# Output in OUT_DIR: disk.img (GPT: boot, rootfs_a, rootfs_b, data),
# u-boot.pflash and env.pflash (QEMU's two flash banks), and the parts.
# Slot A holds the system; slot B is empty until an update writes it, so
# the boot script's fallback to B fails over to A again (3 attempts each).
# work/rootfs, the tree of slot A, stays for `make bundle`
# (build-bundle.sh), which makes update bundles of it without a new disk.
#
# RAUC runs on the board as on a Debian system: Debian's arm64 rauc and
# dbus-daemon with the shared libraries they need (debs_closure), the
# modules verity bundles need (loop, dm-verity, squashfs), the board's
# system.conf and, as its keyring, the development CA (scripts/dev-keys.sh,
# made on first use in $VIGIL_CACHE_DIR/keys). /etc/rc.d/S30rauc starts the
# system bus and `rauc service` (docs/ota.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: build-image.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
CACHE=${VIGIL_CACHE_DIR:-${HOME:-/root}/.cache/vigil}
VIGIL_BIN=${VIGIL_BIN:-$ROOT/target/aarch64-unknown-linux-gnu/release/vigil}
MODEL=${MODEL:-$CACHE/models/ssd_mobilenet_v2_coco.pb}
SAMPLE=${SAMPLE:-$CACHE/media/bikes.mp4}
MULTIARCH=/usr/lib/aarch64-linux-gnu

log() { printf 'image-qemu: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for f in "$VIGIL_BIN" "$MODEL" "$SAMPLE"; do
  [ -f "$f" ] || die "$f is missing (make cross model sample)"
done
for t in genimage mkfs.ext4 mkfs.vfat mcopy mkimage mkenvimage cpio depmod modprobe \
  qemu-aarch64-static aarch64-linux-gnu-readelf openssl; do
  command -v "$t" >/dev/null || die "$t is missing (make deps-board deps-cross)"
done

# --- Debian arm64 kernel and busybox, downloaded once -------------------------
. "$ROOT/board/qemu-virt/debs.sh"
kernel_deb=$(debs_kernel)
busybox_deb=$(debs_busybox)
rauc_debs=$(debs_closure rauc dbus-daemon; debs_fetch_all rauc-service; debs_fetch_all dbus-system-bus-common)
KEYS=$(bash "$ROOT/scripts/dev-keys.sh")

WORK=$OUT/work
rm -rf "$WORK"
mkdir -p "$WORK/kernel" "$WORK/busybox" "$WORK/rauc"
dpkg-deb -x "$kernel_deb" "$WORK/kernel"
dpkg-deb -x "$busybox_deb" "$WORK/busybox"
for deb in $rauc_debs; do dpkg-deb -x "$deb" "$WORK/rauc"; done
KVER=$(ls "$WORK/kernel/lib/modules")
IMAGE=$WORK/kernel/boot/vmlinuz-$KVER
log "kernel $KVER, $(basename "$busybox_deb")"

# --- the modules this board needs, with their dependencies --------------------
depmod -b "$WORK/kernel" "$KVER"
MODS=$WORK/modules
mkdir -p "$MODS/lib/modules/$KVER"
: > "$WORK/root-modules"
for m in virtio_pci virtio_blk crc32c_generic ext4 virtio_net vfat nls_cp437 nls_ascii i6300esb \
  loop dm-verity squashfs; do
  modprobe -d "$WORK/kernel" -S "$KVER" --show-depends "$m" | while read -r _ path _; do
    rel=${path#"$WORK/kernel/"}
    mkdir -p "$MODS/$(dirname "$rel")"
    cp "$path" "$MODS/$rel"
    case $m in virtio_pci | virtio_blk | crc32c_generic | ext4) echo "/$rel" >> "$WORK/root-modules" ;; esac
  done
done
cp "$WORK/kernel/lib/modules/$KVER/modules.order" "$WORK/kernel/lib/modules/$KVER/modules.builtin"* \
  "$MODS/lib/modules/$KVER/"
depmod -b "$MODS" "$KVER"

# --- initramfs: load the disk and ext4 modules, mount the slot, switch -------
INITRD=$WORK/initramfs
mkdir -p "$INITRD"/{proc,sys,dev,newroot}
busybox_links "$WORK/busybox/bin/busybox" "$INITRD"
(cd "$MODS" && cp -a lib "$INITRD/")
awk '!seen[$0]++' "$WORK/root-modules" > "$INITRD/modules"
install -m 0755 "$ROOT/board/qemu-virt/initramfs-init" "$INITRD/init"
(cd "$INITRD" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9) > "$WORK/initrd.img"

# --- root filesystem of slot A ------------------------------------------------
RFS=$WORK/rootfs
mkdir -p "$RFS"/{proc,sys,dev,run,tmp,data,boot,etc,var,root,usr/bin,usr/sbin}
busybox_links "$WORK/busybox/bin/busybox" "$RFS"
cp -a "$MODS/lib" "$RFS/"
ln -sfn /run/log "$RFS/var/log"
ln -sfn /run/resolv.conf "$RFS/etc/resolv.conf"
install -m 0755 "$VIGIL_BIN" "$RFS/usr/bin/vigil"
# RAUC and the D-Bus system bus (rauc install talks to rauc service over it).
install -m 0755 "$WORK/rauc/usr/bin/rauc" "$RFS/usr/bin/rauc"
install -m 0755 "$WORK/rauc/usr/bin/dbus-daemon" "$RFS/usr/bin/dbus-daemon"
install -D -m 0644 "$WORK/rauc/usr/share/dbus-1/system.conf" "$RFS/usr/share/dbus-1/system.conf"
install -D -m 0644 "$WORK/rauc/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf" \
  "$RFS/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf"
install -D -m 0644 "$ROOT/board/qemu-virt/rauc-system.conf" "$RFS/etc/rauc/system.conf"
install -m 0644 "$KEYS/ca.cert.pem" "$RFS/etc/rauc/ca.cert.pem"
# GLib and libdbus find the system bus at /var/run/dbus/system_bus_socket.
ln -sfn /run "$RFS/var/run"
# Shared libraries and the loader, from Debian's arm64 packages: the host's
# libc6:arm64 and libstdc++6:arm64 (vigil), and the packages debs_closure
# unpacked into work/rauc (rauc, dbus-daemon).
LIBDIRS="$MULTIARCH $WORK/rauc/usr/lib/aarch64-linux-gnu $WORK/rauc/lib/aarch64-linux-gnu"
copy_needed() { # ELF
  aarch64-linux-gnu-readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r lib; do
    [ -e "$RFS/lib/$lib" ] && continue
    found=
    for d in $LIBDIRS; do [ -e "$d/$lib" ] && { found=$d/$lib; break; }; done
    [ -n "$found" ] || die "$lib (needed by $(basename "$1")) not in $LIBDIRS"
    cp -L "$found" "$RFS/lib/$lib"
    copy_needed "$RFS/lib/$lib"
  done
}
copy_needed "$RFS/usr/bin/vigil"
copy_needed "$RFS/usr/bin/rauc"
copy_needed "$RFS/usr/bin/dbus-daemon"
cp -L "$MULTIARCH/ld-linux-aarch64.so.1" "$RFS/lib/"
install -D -m 0644 "$MODEL" "$RFS/usr/share/vigil/models/ssd_mobilenet_v2_coco.pb"
install -D -m 0644 "$SAMPLE" "$RFS/usr/share/vigil/sample.mp4"
cp -a "$ROOT/rootfs-overlay/." "$RFS/"
cp -a "$ROOT/board/qemu-virt/overlay/." "$RFS/"
install -m 0755 "$ROOT/board/common/vigil-ab" "$RFS/usr/sbin/vigil-ab"
# messagebus: the user dbus-daemon drops to (system.conf's <user>).
printf 'root:x:0:0:root:/root:/bin/sh\nmessagebus:x:100:101::/nonexistent:/bin/false\n' > "$RFS/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\nmessagebus:x:101:\n' > "$RFS/etc/group"
version=$(qemu-aarch64-static "$VIGIL_BIN" version 2>/dev/null || true)
printf 'board=qemu-virt\n%s\nbuilt=%s\n' "${version:-vigil unknown}" "$(date -u +%FT%TZ)" > "$RFS/etc/vigil-release"
cp "$IMAGE" "$RFS/boot/Image"
cp "$WORK/initrd.img" "$RFS/boot/initrd.img"

# --- partitions and the disk ------------------------------------------------------
mkfs.ext4 -q -F -L rootfs_a -d "$RFS" -E root_owner=0:0 "$WORK/rootfs_a.ext4" 384M
mkdir -p "$WORK/empty"
mkfs.ext4 -q -F -L rootfs_b -d "$WORK/empty" "$WORK/rootfs_b.ext4" 384M
mkfs.ext4 -q -F -L data -d "$WORK/empty" "$WORK/data.ext4" 256M
mkimage -A arm64 -O linux -T script -C none -n "vigil A/B" \
  -d "$ROOT/board/common/boot.cmd" "$WORK/boot.scr" >/dev/null
# The A/B state's two copies (docs/decisions/0009-ab-state.md), in the
# format of U-Boot's `env export -c -s 0x200`, which mkenvimage -p 0 writes
# byte for byte (names sorted, as U-Boot exports them).
printf 'BOOT_A_LEFT=3\nBOOT_B_LEFT=3\nBOOT_ORDER=A B\n' | mkenvimage -p 0 -s 512 -o "$WORK/vigil-ab.0" -
cp "$WORK/vigil-ab.0" "$WORK/vigil-ab.1"
rm -f "$WORK/boot.vfat"
mkfs.vfat -n BOOT -C "$WORK/boot.vfat" $((32 * 1024)) >/dev/null
mcopy -i "$WORK/boot.vfat" "$WORK/boot.scr" "$WORK/vigil-ab.0" "$WORK/vigil-ab.1" \
  "$ROOT/board/qemu-virt/vigil-board.env" ::

sed "s|@WORK@|$WORK|g" "$ROOT/board/qemu-virt/genimage.cfg" > "$WORK/genimage.cfg"
rm -rf "$WORK/genimage-tmp"
genimage --config "$WORK/genimage.cfg" --rootpath "$WORK/empty" --tmppath "$WORK/genimage-tmp" \
  --inputpath "$WORK" --outputpath "$OUT" >/dev/null

# --- U-Boot in the first flash bank, its environment in the second --------------
UBOOT=/usr/lib/u-boot/qemu_arm64/u-boot.bin
[ -f "$UBOOT" ] || die "$UBOOT missing (u-boot-qemu)"
cp "$UBOOT" "$OUT/u-boot.pflash"
truncate -s 64M "$OUT/u-boot.pflash"
mkenvimage -s 0x40000 -o "$OUT/env.pflash" "$ROOT/board/qemu-virt/uboot-env.txt"
truncate -s 64M "$OUT/env.pflash"
log "$OUT/disk.img: $(du -h --apparent-size "$OUT/disk.img" | cut -f1) (rootfs_a uses $(du -sh "$RFS" | cut -f1))"
