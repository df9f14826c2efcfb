#!/usr/bin/env bash
# Lint the Yocto side of the repository (yocto/, docs/yocto.md describes it):
#
#   1. oelint-adv over every BitBake file under yocto/ (.bb, .bbappend,
#      .bbclass, .conf, except files/ payloads such as RAUC's system.conf,
#      which are not BitBake syntax), against the wrynose release's variable
#      set, in the strict "all" mode; any finding fails.
#   2. Every kas configuration a build uses (each board file, and each board
#      file with dev.yml) loaded by kas itself: schema validation, include
#      resolution, merging. `kas dump` normally checks the layers out first;
#      skipping the repo_setup_loop and finish_setup_repos steps makes it
#      stop after loading and validating, offline. The merged result is then
#      checked for the machine, distro and target each file is meant to set.
#   3. The partition names the disk layout (wic kickstart), RAUC's
#      system.conf and the boot script share.
#   4. vigil-crates.inc (the vigil recipe's crate:// list) matches Cargo.lock
#      (scripts/gen-crates-inc.py).
#
# Bitbake itself does not run here (no layer checkouts, no network): this is
# what can be checked without them.
#
# oelint-adv and kas are installed, pinned, into a venv under
# $VIGIL_CACHE_DIR (default ~/.cache/vigil), created once; a stamp records
# the pins, so later runs only check it, and a changed pin or a broken venv
# reinstalls.
set -euo pipefail

cd "$(dirname "$0")/.."

CACHE_DIR=${VIGIL_CACHE_DIR:-${HOME:-/root}/.cache/vigil}
VENV=$CACHE_DIR/yocto-lint-venv
PYTHON=${PYTHON:-python3}
PINS="oelint-adv==9.11.2 kas==5.5"
RELEASE=wrynose

log() { printf 'lint-yocto: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools --------------------------------------------------------------------
if [ "$(cat "$VENV/.vigil-pins" 2>/dev/null)" = "$PINS" ] \
   && "$VENV/bin/oelint-adv" --version >/dev/null 2>&1 \
   && "$VENV/bin/kas" --version >/dev/null 2>&1; then
  :
else
  log "installing $PINS into $VENV"
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  "$PYTHON" -m venv "$VENV"
  # shellcheck disable=SC2086 # PINS is a list of requirement specifiers
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check $PINS
  echo "$PINS" > "$VENV/.vigil-pins"
fi

# --- 1. oelint-adv ------------------------------------------------------------
mapfile -t files < <(find yocto -type f \
  \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' -o -name '*.conf' \) \
  -not -path '*/files/*' | sort)
[ "${#files[@]}" -gt 0 ] || die "no BitBake files under yocto/"

# Rules suppressed for every file, each for a reason that holds for all of
# them (single lines are suppressed in place with "# nooelint:" and a comment):
#   oelint.vars.homepageping          pings HOMEPAGE over the network; CI has none.
#   oelint.var.suggestedvar.BUGTRACKER  vigil has no public tracker to name; the
#                                     vendor recipes name theirs anyway.
#   oelint.var.suggestedvar.CVE_PRODUCT none of these recipes has an NVD product
#                                     entry; cve-check would match nothing.
#   oelint.var.bbclassextend          everything here is target-only: images, the
#                                     boot script, the appliance, aarch64 blobs.
#   oelint.var.licenseremotefile      recipes of this repository's own files (and
#                                     the images) point at oe-core's license texts:
#                                     the repository carries its Apache-2.0
#                                     license in Cargo.toml, not in a file.
suppress=(
  --suppress oelint.vars.homepageping
  --suppress oelint.var.suggestedvar.BUGTRACKER
  --suppress oelint.var.suggestedvar.CVE_PRODUCT
  --suppress oelint.var.bbclassextend
  --suppress oelint.var.licenseremotefile
)
log "oelint-adv ($RELEASE, mode all) over ${#files[@]} files"
# yocto/oelint/constants.json: our distro and machines, and the variables of
# our own and of meta-rauc/meta-rockchip that oelint does not know.
if ! "$VENV/bin/oelint-adv" --quiet --mode all --release "$RELEASE" --relpaths \
     --constantmods=+yocto/oelint/constants.json "${suppress[@]}" "${files[@]}"; then
  die "oelint-adv reported findings (above)"
fi

# --- 2. kas -------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# machine the board file must set, then the expected target
checks=(
  "yocto/kas/rock-5b.yml rock-5b vigil-image"
  "yocto/kas/orangepi-5.yml orangepi-5 vigil-image"
  "yocto/kas/orangepi-5-plus.yml orangepi-5-plus vigil-image"
  "yocto/kas/rock-5b.yml:yocto/kas/dev.yml rock-5b vigil-image-dev"
  "yocto/kas/orangepi-5.yml:yocto/kas/dev.yml orangepi-5 vigil-image-dev"
  "yocto/kas/orangepi-5-plus.yml:yocto/kas/dev.yml orangepi-5-plus vigil-image-dev"
)
for c in "${checks[@]}"; do
  read -r config machine target <<<"$c"
  out=$work/dump.json
  if ! KAS_WORK_DIR=$work "$VENV/bin/kas" --log-level error dump --format json \
       --skip repo_setup_loop --skip finish_setup_repos "$config" > "$out"; then
    die "kas could not load $config (above)"
  fi
  "$VENV/bin/python" - "$out" "$config" "$machine" "$target" <<'EOF' || die "$config: unexpected configuration (above)"
import json, sys
path, config, machine, target = sys.argv[1:]
cfg = json.load(open(path))
errors = []
def want(key, value, got):
    if got != value:
        errors.append(f'{key} is {got!r}, expected {value!r}')
want('machine', machine, cfg.get('machine'))
want('distro', 'vigil', cfg.get('distro'))
targets = cfg.get('target')
want('target', [target], targets if isinstance(targets, list) else [targets])
repos = cfg.get('repos', {})
if 'yocto/meta-vigil' not in (repos.get('vigil') or {}).get('layers', {}):
    errors.append('repository vigil does not provide layer yocto/meta-vigil')
for name, repo in repos.items():
    if name == 'vigil':
        continue
    for key in ('url', 'branch'):
        if not (repo or {}).get(key):
            errors.append(f'repository {name} has no {key}')
for e in errors:
    print(f'lint-yocto: {config}: {e}', file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
done
log "kas: ${#checks[@]} configurations load and set machine, distro and target"

# Machines meta-vigil defines itself must exist (the others come from meta-rockchip).
[ -f yocto/meta-vigil/conf/machine/orangepi-5.conf ] || die "machine orangepi-5 is not defined"

# --- 3. partition names -------------------------------------------------------
"$VENV/bin/python" - <<'EOF' || die "partition names disagree (above)"
import re, sys
wks = open('yocto/meta-vigil/wic/vigil-rk3588.wks').read()
parts = re.findall(r'--part-name\s+(\S+)', wks)
errors = []
if parts != ['boot', 'rootfs_a', 'rootfs_b', 'data']:
    errors.append(f'vigil-rk3588.wks partitions are {parts}, expected boot rootfs_a rootfs_b data in that order')
conf = open('yocto/meta-vigil/recipes-core/rauc/files/system.conf').read()
for slot, label, boot in (('rootfs.0', 'rootfs_a', 'A'), ('rootfs.1', 'rootfs_b', 'B')):
    m = re.search(r'^\[slot\.' + re.escape(slot) + r'\]\n(.*?)(?=^\[|\Z)', conf, re.M | re.S)
    body = m.group(1) if m else ''
    if f'device=/dev/disk/by-partlabel/{label}\n' not in body or f'bootname={boot}\n' not in body:
        errors.append(f'system.conf slot {slot} is not {label} with bootname {boot}')
if not re.search(r'^compatible=vigil-rk3588$', conf, re.M):
    errors.append('system.conf compatible is not vigil-rk3588')
cmd = open('board/common/boot.cmd').read()
for label in ('rootfs_a', 'rootfs_b'):
    if label not in cmd:
        errors.append(f'board/common/boot.cmd does not boot {label}')
for e in errors:
    print(f'lint-yocto: {e}', file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

# --- 4. the vigil recipe's crate list -------------------------------------------
"$VENV/bin/python" scripts/gen-crates-inc.py --check >&2 || die "vigil-crates.inc is stale"

log "ok"
