SUMMARY = "Rockchip RKNN runtime for the RK3588 NPU (librknnrt, prebuilt)"
DESCRIPTION = "librknnrt.so from rknn-toolkit2's rknpu2 runtime. vigil loads \
               it at run time (dlopen) to run .rknn detection models on the \
               NPU through the BSP kernel's rknpu driver. Closed source, under \
               Rockchip's RKNN SDK License: building it requires accepting \
               that license explicitly (LICENSE_FLAGS_ACCEPTED)."
HOMEPAGE = "https://github.com/airockchip/rknn-toolkit2"
BUGTRACKER = "https://github.com/airockchip/rknn-toolkit2/issues"
SECTION = "libs"
LICENSE = "Proprietary"
LIC_FILES_CHKSUM = "file://LICENSE;md5=a2399e2538b7ebeac89b5b1cc648459a"
NO_GENERIC_LICENSE[Proprietary] = "LICENSE"
LICENSE_FLAGS = "rockchip-rknn"

# The whole toolkit repository is cloned (about a gigabyte of wheels and
# examples) for one 7 MB library: a git revision is checkable here, a
# checksum of the raw file was not.
SRC_URI = "git://github.com/airockchip/rknn-toolkit2.git;protocol=https;branch=master"
# Tag v2.3.2 (2025-04-09), the runtime vigil's FFI layouts were read from.
SRCREV = "42aa1d426c0a9e0869b6374edba009f7208a1926"

COMPATIBLE_HOST = "aarch64.*-linux"

RUNTIME_DIR = "${S}/rknpu2/runtime/Linux/librknn_api"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -D -m 0755 ${RUNTIME_DIR}/aarch64/librknnrt.so ${D}${libdir}/librknnrt.so
    install -d ${D}${includedir}
    install -m 0644 ${RUNTIME_DIR}/include/*.h ${D}${includedir}/
}

# vigil opens librknnrt.so by that name (app/src/hw/rknn_sys.rs); it is the
# only name the library has.
FILES_SOLIBSDEV = ""
# nooelint: oelint.var.filesoverride
FILES:${PN} = "${libdir}/librknnrt.so"
# nooelint: oelint.var.filesoverride
FILES:${PN}-dev = "${includedir}"
# Prebuilt by Rockchip: already stripped, linked without our LDFLAGS, and its
# only name is unversioned.
# nooelint: oelint.vars.insaneskip
INSANE_SKIP:${PN} += "already-stripped ldflags dev-so"
