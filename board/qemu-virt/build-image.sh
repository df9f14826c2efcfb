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
  qemu-aarch64-static aarch64-linux-gnu-readelf; do
  command -v "$t" >/dev/null || die "$t is missing (make deps-board deps-cross)"
done

# --- Debian arm64 kernel and busybox, downloaded once -------------------------
. "$ROOT/board/qemu-virt/debs.sh"
kernel_deb=$(debs_kernel)
busybox_deb=$(debs_busybox)

WORK=$OUT/work
rm -rf "$WORK"
mkdir -p "$WORK/kernel" "$WORK/busybox"
dpkg-deb -x "$kernel_deb" "$WORK/kernel"
dpkg-deb -x "$busybox_deb" "$WORK/busybox"
KVER=$(ls "$WORK/kernel/lib/modules")
IMAGE=$WORK/kernel/boot/vmlinuz-$KVER
log "kernel $KVER, $(basename "$busybox_deb")"

# --- the modules this board needs, with their dependencies --------------------
depmod -b "$WORK/kernel" "$KVER"
MODS=$WORK/modules
mkdir -p "$MODS/lib/modules/$KVER"
: > "$WORK/root-modules"
for m in virtio_pci virtio_blk crc32c_generic ext4 virtio_net vfat nls_cp437 nls_ascii i6300esb; do
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
# vigil's shared libraries and the loader, from Debian's arm64 packages.
copy_needed() { # ELF
  aarch64-linux-gnu-readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r lib; do
    [ -e "$RFS/lib/$lib" ] && continue
    [ -e "$MULTIARCH/$lib" ] || die "$lib (needed by $(basename "$1")) not in $MULTIARCH"
    cp -L "$MULTIARCH/$lib" "$RFS/lib/$lib"
    copy_needed "$RFS/lib/$lib"
  done
}
copy_needed "$RFS/usr/bin/vigil"
cp -L "$MULTIARCH/ld-linux-aarch64.so.1" "$RFS/lib/"
install -D -m 0644 "$MODEL" "$RFS/usr/share/vigil/models/ssd_mobilenet_v2_coco.pb"
install -D -m 0644 "$SAMPLE" "$RFS/usr/share/vigil/sample.mp4"
cp -a "$ROOT/rootfs-overlay/." "$RFS/"
cp -a "$ROOT/board/qemu-virt/overlay/." "$RFS/"
install -m 0755 "$ROOT/board/common/vigil-ab" "$RFS/usr/sbin/vigil-ab"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$RFS/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\n' > "$RFS/etc/group"
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
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n' > "$WORK/vigil-ab.env"
rm -f "$WORK/boot.vfat"
mkfs.vfat -n BOOT -C "$WORK/boot.vfat" $((32 * 1024)) >/dev/null
mcopy -i "$WORK/boot.vfat" "$WORK/boot.scr" "$WORK/vigil-ab.env" \
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
