#!/usr/bin/env bash
# An update bundle for the emulated board (`make bundle`): a RAUC bundle in
# verity format of slot A's root filesystem, with VERSION stamped into its
# vigil and written in its manifest, signed with the development key.
#
# usage: board/qemu-virt/build-bundle.sh IMAGE_DIR [VERSION]
#   IMAGE_DIR  what build-image.sh made: its work/rootfs tree is reused, so a
#              bundle costs no new disk image (run `make image-qemu` after
#              changing anything but vigil's version)
#   VERSION    semver; default: the version VIGIL_BIN reports
# env: VIGIL_BIN  the aarch64 vigil (default target/aarch64-unknown-linux-gnu/release/vigil);
#                 the bundle carries a copy stamped with VERSION (scripts/stamp-version.sh)
#      VIGIL_CACHE_DIR  where the development keys are (scripts/dev-keys.sh)
#
# Output: IMAGE_DIR/vigil-VERSION.raucb. Its input stays in IMAGE_DIR/bundle/
# for tests that make bad bundles: input/manifest.raucm (RAUC adds the image's
# hash to it), input/rootfs.ext4; the keys are in $VIGIL_CACHE_DIR/keys
# (ca.cert.pem, signing.cert.pem, signing.key.pem).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${1:?usage: build-bundle.sh IMAGE_DIR [VERSION]}
VIGIL_BIN=${VIGIL_BIN:-$ROOT/target/aarch64-unknown-linux-gnu/release/vigil}
# The emulated board's system.conf says the same (board/qemu-virt/rauc-system.conf).
COMPATIBLE=vigil-qemu-virt
# The slot's size (genimage.cfg's rootfs_a/rootfs_b images, build-image.sh).
SLOT_SIZE=384M

log() { printf 'bundle: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

TREE=$DIR/work/rootfs
[ -d "$TREE" ] || die "$TREE is missing: build the image first (make image-qemu)"
[ -f "$VIGIL_BIN" ] || die "$VIGIL_BIN is missing (make cross)"
for t in rauc mksquashfs mkfs.ext4 qemu-aarch64-static; do
  command -v "$t" >/dev/null || die "$t is missing (make deps-board)"
done
if [ $# -ge 2 ] && [ -n "$2" ]; then
  VERSION=$2
else
  VERSION=$(qemu-aarch64-static "$VIGIL_BIN" version | sed -n 's/^vigil //p')
  [ -n "$VERSION" ] || die "$VIGIL_BIN printed no version"
fi
KEYS=$(bash "$ROOT/scripts/dev-keys.sh")
OUT=$DIR/vigil-$VERSION.raucb
START=$(date +%s.%N)

WORK=$DIR/bundle
rm -rf "$WORK"
mkdir -p "$WORK/input"
# The refused VERSION stops here, before anything is built.
bash "$ROOT/scripts/stamp-version.sh" "$VERSION" "$VIGIL_BIN" "$WORK/vigil"
cp -a "$TREE" "$WORK/rootfs"
install -m 0755 "$WORK/vigil" "$WORK/rootfs/usr/bin/vigil"
sed -i "s/^vigil .*/vigil $VERSION/" "$WORK/rootfs/etc/vigil-release"
mkfs.ext4 -q -F -L rootfs -d "$WORK/rootfs" -E root_owner=0:0 "$WORK/input/rootfs.ext4" "$SLOT_SIZE"
rm -rf "$WORK/rootfs"

# rauc bundle rewrites the manifest in its input directory (adds the image's
# size and hash), so it is written fresh for every bundle.
cat > "$WORK/input/manifest.raucm" <<EOF
[update]
compatible=$COMPATIBLE
version=$VERSION
description=vigil $VERSION root filesystem (emulated board)

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
EOF
rm -f "$OUT"
rauc bundle --cert "$KEYS/signing.cert.pem" --key "$KEYS/signing.key.pem" \
  --keyring "$KEYS/ca.cert.pem" "$WORK/input" "$OUT" >"$WORK/rauc-bundle.log" 2>&1 \
  || { cat "$WORK/rauc-bundle.log" >&2; die "rauc bundle failed"; }

# Read back as the board will: signature against the CA, compatible, version.
info=$(rauc info --keyring "$KEYS/ca.cert.pem" "$OUT" 2>/dev/null) || die "rauc info refuses $OUT"
grep -q "^Compatible:[[:space:]]*'$COMPATIBLE'" <<<"$info" || die "$OUT: compatible is not $COMPATIBLE"
grep -q "^Version:[[:space:]]*'$VERSION'" <<<"$info" || die "$OUT: version is not $VERSION"
log "$OUT: vigil $VERSION for $COMPATIBLE, $(du -h --apparent-size "$OUT" | cut -f1), \
$(python3 -c "import time; print(f'{time.time() - $START:.1f}')") s"
