# Bundles for the emulated board's update tests (test-rauc.sh, test-ota.sh),
# sourced, not run. Each function prints RAUC's words on stderr and returns
# non-zero when it fails; the caller says what failed.

# sign_bundle IN OUT VERSION COMPATIBLE CERT KEY: IN (a directory holding
# rootfs.ext4) as the verity bundle OUT with that manifest, signed.
sign_bundle() {
  printf '[update]\ncompatible=%s\nversion=%s\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n' \
    "$4" "$3" > "$1/manifest.raucm"
  local out
  out=$(rauc bundle --cert "$5" --key "$6" "$1" "$2" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

# bad_bundles DIR COMPATIBLE KEYS: the bundles RAUC must refuse, in DIR:
# foreign.raucb (signed by a CA the board does not trust), compat.raucb
# (another compatible), flipped.raucb (one byte of the squashfs flipped) and
# truncated.raucb (cut to half). Each holds an 8 MiB ext4 with 64 KiB of
# random bytes (verity needs a squashfs over 4096 bytes).
bad_bundles() {
  local dir=$1 compatible=$2 keys=$3 name in
  mkdir -p "$dir/tree"
  head -c 65536 /dev/urandom > "$dir/tree/noise"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=foreign test CA" \
    -addext basicConstraints=critical,CA:TRUE -keyout "$dir/foreign.key" -out "$dir/foreign.pem" 2>/dev/null \
    || { echo "openssl could not make the foreign CA" >&2; return 1; }
  for name in foreign compat flipped; do
    in=$dir/in-$name
    mkdir -p "$in"
    mkfs.ext4 -q -F -d "$dir/tree" "$in/rootfs.ext4" 8M >/dev/null || return 1
    case $name in
      foreign) sign_bundle "$in" "$dir/$name.raucb" 9.9.9 "$compatible" "$dir/foreign.pem" "$dir/foreign.key" ;;
      compat) sign_bundle "$in" "$dir/$name.raucb" 9.9.9 vigil-other-board "$keys/signing.cert.pem" "$keys/signing.key.pem" ;;
      flipped) sign_bundle "$in" "$dir/$name.raucb" 9.9.9 "$compatible" "$keys/signing.cert.pem" "$keys/signing.key.pem" ;;
    esac || { echo "rauc bundle $name failed" >&2; return 1; }
    rm -rf "$in"
  done
  # The unchanged bundle passes the host's check: what the board refuses is
  # the flipped byte, not a bundle that was bad from the start.
  rauc info --keyring "$keys/ca.cert.pem" "$dir/flipped.raucb" >/dev/null 2>&1 \
    || { echo "the small bundle is refused before any change" >&2; return 1; }
  cp "$dir/flipped.raucb" "$dir/truncated.raucb"
  truncate -s $(( $(stat -c %s "$dir/truncated.raucb") / 2 )) "$dir/truncated.raucb"
  # A verity bundle is the squashfs (its size at byte 40 of its superblock),
  # then the hash tree, the signature and the signature's size: one byte in
  # the middle of the squashfs, covered by the signed root hash, is flipped.
  local squash at byte
  squash=$(od -An -t u8 -j 40 -N 8 "$dir/flipped.raucb" | tr -d ' ')
  at=$((squash / 2))
  byte=$(od -An -t u1 -j "$at" -N 1 "$dir/flipped.raucb" | tr -d ' ')
  printf "$(printf '\\%03o' $((byte ^ 0xff)))" | dd of="$dir/flipped.raucb" bs=1 seek="$at" conv=notrunc status=none
  FLIPPED_AT="byte $at of $squash"
}
