# nooelint: oelint.var.mandatoryvar.HOMEPAGE,oelint.file.underscores
# (No public homepage: the source is this repository. No version in the file
# name: PV comes from Cargo.toml and would go stale there.)
SUMMARY = "vigil: edge video analytics with memory bounded by construction"
DESCRIPTION = "The vigil appliance binary, built with cargo from the \
               repository's Rust workspace (package vigil only). It loads the \
               Rockchip MPP, RGA and RKNN libraries at run time, so it builds \
               without them and the image pulls them in separately."
SECTION = "multimedia"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The v4l crate's v4l2-sys-mit runs bindgen at build time: libclang from
# oe-core's clang-native (clang moved into oe-core in Yocto 5.2).
DEPENDS += "clang-native"

# The workspace version (Cargo.toml, [workspace.package]).
PV = "${@vigil_workspace_version(d)}"

# crate:// entries for every crates.io package in Cargo.lock, generated
# by scripts/gen-crates-inc.py (docs/yocto.md, "Crates").
SRC_URI = ""
require ${BPN}-crates.inc

# The source is the checkout this layer lives in (VIGIL_SRC_DIR, set in
# meta-vigil's layer.conf): the firmware is built from the very tree kas
# runs in, uncommitted changes included. externalsrc keeps the crate://
# entries, so cargo still builds offline from bitbake's vendored crates.
inherit externalsrc
EXTERNALSRC = "${VIGIL_SRC_DIR}"
# The checkout's target/ is never used: cargo builds under ${B}.
EXTERNALSRC_BUILD = "${WORKDIR}/build"

# cargo, not cargo_bin (meta-rust-bin's prebuilt upstream toolchains): oe-core's
# own Rust is new enough on wrynose (1.94.1 >= the workspace's rust-version
# 1.91) and needs no extra layer. rust-version in Cargo.toml makes cargo
# itself refuse an older compiler, so a toolchain mismatch fails at once.
inherit cargo cargo-update-recipe-crates

# bindgen finds libclang here and the target's linux/videodev2.h in the
# recipe sysroot.
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET}"

# Loaded with dlopen at run time, so no shared-library dependency is
# detected; the image installs them (vigil-image.inc). Without them vigil
# falls back to its software backends (backend = "auto").
RRECOMMENDS:${PN} += "rockchip-mpp rockchip-librga rockchip-rknpu2-runtime"

# The workspace's release profile strips the binary; let bitbake strip it
# instead, so the -dbg package is right and QA does not flag it.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# Only the appliance binary; the workspace's other member is the system-test
# harness.
do_compile() {
    oe_cargo_build -p vigil --bin vigil
}

def vigil_workspace_version(d):
    import os
    import re
    path = os.path.join(d.getVar('VIGIL_SRC_DIR'), 'Cargo.toml')
    try:
        with open(path) as f:
            m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    except OSError:
        m = None
    return m.group(1) if m else '0.0.0'
