SUMMARY = "Rockchip RGA 2D acceleration library (librga, prebuilt)"
DESCRIPTION = "Rockchip's im2d library for the RGA2/RGA3 blocks. vigil loads \
               librga.so at run time (dlopen) to scale decoded NV12 frames \
               into the NPU's input through the BSP kernel's /dev/rga. \
               airockchip publishes it prebuilt; the Linux aarch64 build is \
               installed as it is."
HOMEPAGE = "https://github.com/airockchip/librga"
BUGTRACKER = "https://github.com/airockchip/librga/issues"
SECTION = "libs"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://COPYING;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "git://github.com/airockchip/librga.git;protocol=https;branch=main"
# main: "Update librga version to 1.10.3_[1]" (2025-01-21).
SRCREV = "31e5e71729422e93ce37b073ec3457ee58994302"

COMPATIBLE_HOST = "aarch64.*-linux"

# Prebuilt: nothing to configure or compile.
do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -D -m 0755 ${S}/libs/Linux/gcc-aarch64/librga.so ${D}${libdir}/librga.so
    install -d ${D}${includedir}/rga
    install -m 0644 ${S}/include/*.h ${D}${includedir}/rga/
}

# The library's SONAME is librga.so (unversioned) and vigil opens it by that
# name (app/src/hw/rga.rs), so it is the runtime package's file, not -dev's.
FILES_SOLIBSDEV = ""
# nooelint: oelint.var.filesoverride
FILES:${PN} = "${libdir}/librga.so"
# nooelint: oelint.var.filesoverride
FILES:${PN}-dev = "${includedir}"
# Prebuilt by Rockchip: already stripped, linked without our LDFLAGS, and its
# only name is unversioned.
# nooelint: oelint.vars.insaneskip
INSANE_SKIP:${PN} += "already-stripped ldflags dev-so"
