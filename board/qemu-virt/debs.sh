# Debian's arm64 kernel and busybox for the emulated board, downloaded once
# into $VIGIL_CACHE_DIR/board-debs. Sourced (not run) by build-image.sh and
# vm-runner.sh, which define log() and die() first.
#
#   debs_fetch PKG         the path of PKG's arm64 .deb, downloaded if absent
#   debs_kernel            the linux-image-<ver>-arm64 .deb linux-image-arm64:arm64 depends on
#   debs_busybox           the busybox-static .deb
#   debs_closure PKG...    the arm64 .debs of PKG... and of every library
#                          package they depend on, recursively (Depends and
#                          Pre-Depends named lib*), minus libc6, which the image
#                          takes from the host's libc6:arm64; downloaded if absent
#   debs_fetch_all PKG     an architecture-independent (all) package's .deb
#   busybox_links BUSYBOX DIR
#                          installs the arm64 BUSYBOX as DIR/bin/busybox with a link
#                          for each of its applets (listed by running it under qemu-user)
DEBS=${VIGIL_CACHE_DIR:-${HOME:-/root}/.cache/vigil}/board-debs

debs_fetch() { # PACKAGE (arm64): its .deb in $DEBS, downloaded if absent
  local deb
  mkdir -p "$DEBS"
  deb=$(ls "$DEBS/$1"_*_arm64.deb 2>/dev/null | tail -n 1 || true)
  if [ -z "$deb" ]; then
    log "apt-get download $1:arm64"
    (cd "$DEBS" && apt-get -q download "$1:arm64" >/dev/null 2>&1) \
      || { log "apt-get update"; apt-get -q update >/dev/null; (cd "$DEBS" && apt-get -q download "$1:arm64" >/dev/null); }
    deb=$(ls "$DEBS/$1"_*_arm64.deb | tail -n 1)
  fi
  echo "$deb"
}

debs_kernel() {
  local pkg
  pkg=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\).*/\1/p' | head -n 1)
  [ -n "$pkg" ] || die "cannot resolve linux-image-arm64:arm64 (is the arm64 architecture added? make deps-cross)"
  debs_fetch "$pkg"
}

debs_busybox() { debs_fetch busybox-static; }

debs_closure() { # PKG...
  local seen=" libc6 " todo=("$@") next missing p deps
  while [ ${#todo[@]} -gt 0 ]; do
    next=()
    for p in "${todo[@]}"; do
      case $seen in *" $p "*) continue ;; esac
      seen="$seen$p "
      next+=("$p")
    done
    [ ${#next[@]} -gt 0 ] || break
    # One apt-cache call per level; alternatives (|) and virtual packages
    # (<...>) are not followed: the libraries rauc and dbus need are real ones.
    deps=$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "${next[@]/%/:arm64}" 2>/dev/null \
      | sed -n 's/^ *\(Pre\)\{0,1\}Depends: \(lib[^ <>:]*\)\(:arm64\)\{0,1\}$/\2/p' | sort -u)
    # Missing ones in one download (one at a time took minutes).
    missing=()
    for p in "${next[@]}"; do
      ls "$DEBS/$p"_*_arm64.deb >/dev/null 2>&1 || missing+=("$p:arm64")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      log "apt-get download ${missing[*]}"
      mkdir -p "$DEBS"
      (cd "$DEBS" && apt-get -q download "${missing[@]}" >/dev/null) || die "apt-get download failed"
    fi
    for p in "${next[@]}"; do debs_fetch "$p"; done
    todo=($deps)
  done
}

# debs_fetch_all PKG: an architecture-independent package's .deb.
debs_fetch_all() {
  local deb
  mkdir -p "$DEBS"
  deb=$(ls "$DEBS/$1"_*_all.deb 2>/dev/null | tail -n 1 || true)
  if [ -z "$deb" ]; then
    log "apt-get download $1"
    (cd "$DEBS" && apt-get -q download "$1" >/dev/null 2>&1) || die "apt-get download $1 failed"
    deb=$(ls "$DEBS/$1"_*_all.deb | tail -n 1)
  fi
  echo "$deb"
}

busybox_links() { # BUSYBOX DIR
  install -D -m 0755 "$1" "$2/bin/busybox"
  qemu-aarch64-static "$1" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$2/$(dirname "$applet")"
    ln -sf /bin/busybox "$2/$applet"
  done
}
