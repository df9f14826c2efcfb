#!/usr/bin/env bash
# Install what building, `make run` and `make test` need on a fresh Debian 12
# machine. Idempotent: a second run with everything present takes well under a
# second (a stamp plus one dpkg query).
#
# usage: scripts/install-deps.sh [GROUP...]
#   build     nasm (openh264's assembly; the build works without it, ~40% slower decode),
#             libclang-dev (bindgen in the v4l crate's v4l2-sys-mit: the build fails without it)
#   media     ffmpeg/ffprobe, unzip, curl, darknet's test images (dog.jpg, ...); fetch-sample.sh
#   rtsp      GStreamer RTSP server stack for tests/support/rtsp_server.py
#   upstream  mosquitto broker and clients for the event-delivery tests
#   promtool  Prometheus' promtool, extracted from the .deb (no daemon, no service)
#   browser   Debian's chromium, headless, for the status page test (tests/support/browser.py)
#   run       build + media + rtsp
#   test      build + media + rtsp + upstream + promtool + browser
#   all       everything (default)
#   board     the emulated board (`make image-qemu`, `make bundle`): QEMU, U-Boot,
#             genimage and filesystem tools, rauc and squashfs-tools (bundles), openssl,
#             busybox (the board's shell for test-vigil-ab.sh)
#   cross     aarch64 cross build (`make cross`, `make test-cross`), not part of
#             `all`: adds the arm64 dpkg architecture; Debian's rustc-web/cargo-web
#             (/usr/bin/rustc, /usr/bin/cargo) with the arm64 std, the aarch64 gcc/g++
#             and glibc, qemu-user-static, libclang-dev (bindgen, run on the host)
#
# Environment:
#   VIGIL_CACHE_DIR  cache root (default ~/.cache/vigil); promtool goes to $VIGIL_CACHE_DIR/bin
#   VIGIL_FORCE=1    ignore the stamp and re-check everything
#   VIGIL_DARKNET=apt (default) installs the `darknet` package for
#                    /usr/share/darknet/data/dog.jpg: 90 extra packages (OpenCV, GDAL,
#                    Qt5; 45 MiB download, 160 MiB installed) for a few JPEGs.
#                    VIGIL_DARKNET=extract instead takes only usr/share/darknet/data out
#                    of the 3 MiB .deb into $VIGIL_CACHE_DIR/darknet/data (a fresh
#                    install of everything measured 143 s with apt, 78 s with extract).
#
# Prints on stdout, as its last lines, `darknet-data: DIR` (media group) and
# `promtool: PATH` (promtool group), for the Makefile and the tests to pick up.
set -euo pipefail

CACHE_DIR=${VIGIL_CACHE_DIR:-${HOME:-/root}/.cache/vigil}
STAMP_DIR=$CACHE_DIR/stamps
PROMTOOL_DIR=$CACHE_DIR/bin
PROMTOOL=$PROMTOOL_DIR/promtool
DARKNET_MODE=${VIGIL_DARKNET:-apt}
case $DARKNET_MODE in
  apt) DARKNET_DATA=/usr/share/darknet/data ;;
  extract) DARKNET_DATA=$CACHE_DIR/darknet/data ;;
  *) printf 'install-deps: error: VIGIL_DARKNET must be apt or extract\n' >&2; exit 1 ;;
esac

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- groups -----------------------------------------------------------------
# bindgen (v4l2-sys-mit, the v4l crate's bindings) loads libclang at build
# time; libclang-dev brings libclang1-14 and clang's own headers (stddef.h).
PKGS_build=(nasm libclang-dev)
PKGS_media=(ffmpeg unzip curl)
[ "$DARKNET_MODE" = apt ] && PKGS_media+=(darknet)
PKGS_browser=(chromium)
# The rustup toolchain on PATH has no aarch64 std; Debian's rustc-web ships one
# (libstd-rust-web-dev:arm64, same version as rustc-web). g++ is for openh264's
# bundled C++ source; libc6:arm64 and libstdc++6:arm64 (dependencies anyway) are
# what the binaries run on under qemu-aarch64-static; file describes the binary.
# bindgen runs on the host for the aarch64 build too (libclang-dev); with
# --target=aarch64-unknown-linux-gnu libclang finds gcc-aarch64-linux-gnu's
# installation and searches /usr/aarch64-linux-gnu/include (the arm64 kernel
# headers of linux-libc-dev-arm64-cross, a dependency of libc6-dev-arm64-cross)
# before /usr/include, so no BINDGEN_EXTRA_CLANG_ARGS are needed.
PKGS_cross=(rustc-web cargo-web libstd-rust-web-dev:arm64
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
  linux-libc-dev-arm64-cross libclang-dev
  libc6:arm64 libstdc++6:arm64 qemu-user-static file)
# rauc and squashfs-tools build and sign `make bundle`'s update bundles (rauc
# bundle runs mksquashfs); openssl makes the development keys (dev-keys.sh);
# busybox-static runs the A/B backend shim as the board does (test-vigil-ab.sh).
PKGS_board=(qemu-system-arm u-boot-qemu u-boot-tools cpio kmod genimage mtools
  dosfstools e2fsprogs fdisk curl rauc squashfs-tools openssl busybox-static)
# The events issue's delivery tests: a real MQTT broker and subscriber.
PKGS_upstream=(mosquitto mosquitto-clients)
PKGS_rtsp=(python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools)

want_build=0 want_media=0 want_rtsp=0 want_upstream=0 want_promtool=0 want_browser=0 want_cross=0 want_board=0
[ $# -eq 0 ] && set -- all
for g in "$@"; do
  case $g in
    build)    want_build=1 ;;
    media)    want_media=1 ;;
    rtsp)     want_rtsp=1 ;;
    upstream) want_upstream=1 ;;
    promtool) want_promtool=1 ;;
    browser)  want_browser=1 ;;
    cross)    want_cross=1 ;;
    board)    want_board=1 ;;
    run)      want_build=1 want_media=1 want_rtsp=1 ;;
    test|all) want_build=1 want_media=1 want_rtsp=1 want_upstream=1 want_promtool=1 want_browser=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown group '$g' (build, media, rtsp, upstream, promtool, browser, run, test, all, cross, board)" ;;
  esac
done

pkgs=()
[ $want_build = 1 ] && pkgs+=("${PKGS_build[@]}")
[ $want_media = 1 ] && pkgs+=("${PKGS_media[@]}")
[ $want_rtsp = 1 ] && pkgs+=("${PKGS_rtsp[@]}")
[ $want_upstream = 1 ] && pkgs+=("${PKGS_upstream[@]}")
[ $want_browser = 1 ] && pkgs+=("${PKGS_browser[@]}")
[ $want_cross = 1 ] && pkgs+=("${PKGS_cross[@]}")
[ $want_board = 1 ] && pkgs+=("${PKGS_board[@]}")

# The stamp records exactly what this run was asked for (packages, promtool,
# darknet mode), so a different group or mode never reuses it.
key="v2 ${pkgs[*]} promtool=$want_promtool darknet=$want_media:$DARKNET_MODE"
stamp_name=$(printf '%s' "$key" | cksum | cut -d' ' -f1)
STAMP=$STAMP_DIR/install-deps.$stamp_name

promtool_ok() { [ -x "$PROMTOOL" ] && "$PROMTOOL" --version >/dev/null 2>&1; }
darknet_ok() { [ -s "$DARKNET_DATA/dog.jpg" ]; }

report() {
  if [ $want_media = 1 ]; then echo "darknet-data: $DARKNET_DATA"; fi
  if [ $want_promtool = 1 ]; then echo "promtool: $PROMTOOL"; fi
}

# --- fast path ----------------------------------------------------------------
# Stamp present and matching, and one dpkg query confirms nothing was removed.
if [ "${VIGIL_FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] \
   && { [ ${#pkgs[@]} -eq 0 ] || dpkg -s "${pkgs[@]}" >/dev/null 2>&1; } \
   && { [ $want_promtool = 0 ] || promtool_ok; } \
   && { [ $want_media = 0 ] || darknet_ok; }; then
  log "all present (stamp $STAMP)"
  report
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- privileges -----------------------------------------------------------------
# sudo only when something has to be installed: a non-root caller with
# everything present needs neither root nor sudo.
SUDO=() sudo_checked=0
need_root() {
  [ $sudo_checked = 1 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is not installed"
    SUDO=(sudo)
  fi
  sudo_checked=1
}
APT=()
apt_cmd() {
  if [ ${#APT[@]} -eq 0 ]; then
    need_root
    # Wait for another apt/dpkg (e.g. a parallel job) instead of failing at once.
    APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
  fi
  # apt's chatter goes to a log, shown only when the command fails.
  if ! "${APT[@]}" "$@" >"$work/apt.log" 2>&1; then
    tail -n 40 "$work/apt.log" >&2
    die "apt-get $1 failed"
  fi
}

updated=0
apt_update() {
  [ $updated = 1 ] && return 0
  log "apt-get update"
  apt_cmd update
  updated=1
}

# --- apt packages -----------------------------------------------------------------
missing=()
for p in "${pkgs[@]}"; do
  # "install ok installed" only: a removed-but-not-purged package is missing.
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  # The cross group's :arm64 packages need the arm64 architecture (and its
  # package lists, fetched by the update below).
  if [ $want_cross = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    need_root
    log "dpkg --add-architecture arm64"
    "${SUDO[@]}" dpkg --add-architecture arm64
  fi
  apt_update
  log "apt-get install ${missing[*]}"
  apt_cmd install -y --no-install-recommends "${missing[@]}"
  dpkg -s "${missing[@]}" >/dev/null 2>&1 || die "packages still missing after install: ${missing[*]}"
else
  log "apt packages present: ${pkgs[*]:-none}"
fi

# --- files taken out of a .deb without installing it ---------------------------
# deb_extract PKG PATH_IN_DEB DIR: downloads PKG's .deb (no dependencies, no
# maintainer scripts) and unpacks PATH_IN_DEB under DIR.
deb_extract() {
  local pkg=$1 member=$2 dest=$3 deb
  # `apt-get download` needs the package lists; update once if the candidate
  # is unknown (fresh image) or the download fails (stale lists). It runs as
  # the caller (no sudo); as root it warns that the download is unsandboxed.
  if ! apt-cache show "$pkg" >/dev/null 2>&1; then apt_update; fi
  if ! (cd "$work" && apt-get -q download "$pkg" >/dev/null 2>&1); then
    apt_update
    (cd "$work" && apt-get -q download "$pkg" >/dev/null) || die "apt-get download $pkg failed"
  fi
  local debs=("$work/${pkg}"_*.deb)
  deb=${debs[0]}
  [ -f "$deb" ] || die "apt-get download $pkg produced no .deb"
  log "extracting $member from $(basename "$deb")"
  mkdir -p "$dest"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" "./$member"
  rm -f "$deb"
}

# The `prometheus` package is the server (96 MB installed, a system user, a
# service that a systemd host would start, 11 libjs/font dependencies). promtool
# is a static Go binary inside it: take only that.
if [ $want_promtool = 1 ] && ! promtool_ok; then
  if [ -x /usr/bin/promtool ] && /usr/bin/promtool --version >/dev/null 2>&1; then
    mkdir -p "$PROMTOOL_DIR"
    ln -sfn /usr/bin/promtool "$PROMTOOL"
    log "using the installed /usr/bin/promtool"
  else
    deb_extract prometheus usr/bin/promtool "$work/prometheus"
    mkdir -p "$PROMTOOL_DIR"
    install -m 0755 "$work/prometheus/usr/bin/promtool" "$PROMTOOL.tmp.$$"
    mv -f "$PROMTOOL.tmp.$$" "$PROMTOOL"
  fi
  promtool_ok || die "promtool at $PROMTOOL does not run"
fi

if [ $want_media = 1 ] && ! darknet_ok; then
  [ "$DARKNET_MODE" = extract ] || die "darknet is installed but $DARKNET_DATA/dog.jpg is missing"
  deb_extract darknet usr/share/darknet/data "$work/darknet"
  mkdir -p "$(dirname "$DARKNET_DATA")"
  rm -rf "$DARKNET_DATA.tmp.$$"
  mv "$work/darknet/usr/share/darknet/data" "$DARKNET_DATA.tmp.$$"
  rm -rf "$DARKNET_DATA"
  mv "$DARKNET_DATA.tmp.$$" "$DARKNET_DATA"
  darknet_ok || die "no dog.jpg in the darknet package"
fi

rm -rf "$work"
trap - EXIT

mkdir -p "$STAMP_DIR"
printf '%s' "$key" > "$STAMP.tmp.$$"
mv -f "$STAMP.tmp.$$" "$STAMP"
log "done"
report
