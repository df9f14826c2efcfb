# The A/B state copies on a disk image's FAT boot partition, read and written
# from the host with mtools (no mount): sourced by test-boot.sh and
# test-ab-state.sh. A copy is U-Boot's checksummed environment block of 512
# bytes (docs/decisions/0009-ab-state.md); ab_copy decodes it with python3's
# zlib, independently of U-Boot and of vigil.

# ab_offset DISK: the boot partition's byte offset.
ab_offset() {
  sfdisk -J "$1" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; print([x for x in p if x.get("name")=="boot"][0]["start"]*512)'
}

# ab_copy DISK NAME: the copy's variables as "NAME=value ..." in the block's
# order, "invalid" when its size or CRC is wrong, "missing" when absent.
ab_copy() {
  local tmp rc=0
  tmp=$(mktemp)
  mtype -i "$1@@$(ab_offset "$1")" "::$2" > "$tmp" 2>/dev/null || rc=$?
  if [ $rc -ne 0 ]; then rm -f "$tmp"; echo missing; return; fi
  python3 - "$tmp" <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
if len(b) != 512 or struct.unpack('<I', b[:4])[0] != zlib.crc32(b[4:]):
    print('invalid'); sys.exit()
print(' '.join(e.decode() for e in b[4:].split(b'\0\0')[0].split(b'\0')))
PY
  rm -f "$tmp"
}

# ab_put DISK NAME FILE: FILE becomes NAME on the boot partition.
ab_put() {
  mcopy -o -i "$1@@$(ab_offset "$1")" "$3" "::$2"
}

# ab_make FILE NAME=value...: a copy as the image build (mkenvimage) makes it.
ab_make() {
  local f=$1
  shift
  printf '%s\n' "$@" | mkenvimage -p 0 -s 512 -o "$f" -
}

# ab_set DISK NAME=value...: both copies hold this state.
ab_set() {
  local disk=$1 tmp
  shift
  tmp=$(mktemp)
  ab_make "$tmp" "$@"
  ab_put "$disk" vigil-ab.0 "$tmp"
  ab_put "$disk" vigil-ab.1 "$tmp"
  rm -f "$tmp"
}
