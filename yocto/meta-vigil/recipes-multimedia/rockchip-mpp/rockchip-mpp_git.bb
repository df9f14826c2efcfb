SUMMARY = "Rockchip Media Process Platform (librockchip_mpp)"
DESCRIPTION = "Rockchip's user-space video codec library. vigil loads \
               librockchip_mpp.so at run time (dlopen) to decode H.264/H.265 \
               on the RK3588 through the BSP kernel's /dev/mpp_service."
HOMEPAGE = "https://github.com/rockchip-linux/mpp"
BUGTRACKER = "https://github.com/rockchip-linux/mpp/issues"
SECTION = "libs"
LICENSE = "Apache-2.0 & MIT"
LIC_FILES_CHKSUM = "file://LICENSES/Apache-2.0;md5=7f43e699e0a26fae98c2938092f008d2 \
                    file://LICENSES/MIT;md5=e8f57dd048e186199433be2c41bd3d6d"

DEPENDS = "libdrm"

PV = "1.0.0+git"

SRC_URI = "git://github.com/rockchip-linux/mpp.git;protocol=https;branch=develop"
# develop, 2024-03-13: the revision whose headers vigil's FFI layouts were
# read from (../shared/reference/rockchip-api.md, docs/hardware.md).
SRCREV = "ee946af015c350c926a0fca2f02da8e429f8b079"

inherit cmake pkgconfig

EXTRA_OECMAKE = "-DRKPLATFORM=ON \
                 -DHAVE_DRM=ON \
                 -DBUILD_TEST=OFF"

CFLAGS:append = " -D_LARGEFILE64_SOURCE -D_FILE_OFFSET_BITS=64"

# vigil opens the library by its unversioned name, librockchip_mpp.so
# (app/src/hw/mpp_sys.rs), so that link belongs to the runtime package, not
# to -dev; QA's dev-so check would refuse it there.
FILES_SOLIBSDEV = ""
FILES:${PN} += "${libdir}/librockchip_mpp.so ${libdir}/librockchip_vpu.so"
# nooelint: oelint.vars.insaneskip
INSANE_SKIP:${PN} += "dev-so"
