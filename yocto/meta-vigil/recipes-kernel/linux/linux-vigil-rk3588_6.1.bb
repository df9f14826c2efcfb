SUMMARY = "Rockchip BSP kernel 6.1 for vigil's RK3588 boards"
DESCRIPTION = "Rockchip's vendor kernel as Armbian maintains it for the \
               ROCK 5B and the Orange Pi 5 / 5 Plus. It has the drivers behind \
               /dev/mpp_service (video decoder), /dev/rga (2D scaler) and \
               /dev/rknpu (NPU) that librockchip_mpp, librga and librknnrt talk \
               to; mainline Linux, which meta-rockchip builds, has none of them."
HOMEPAGE = "https://github.com/armbian/linux-rockchip"
BUGTRACKER = "https://github.com/armbian/linux-rockchip/issues"
SECTION = "kernel"
LICENSE = "GPL-2.0-only"
LIC_FILES_CHKSUM = "file://COPYING;md5=6bc538ed5bd9a7fc9398086aedcd7e46"

# oe-core's linux-yocto machinery (kernel-yocto: in-tree defconfig plus
# configuration fragments); the file is in oe-core, which CI does not check out.
# nooelint: oelint.file.requirenotfound
require recipes-kernel/linux/linux-yocto.inc

DEPENDS += "lz4-native openssl-native"

PV = "${LINUX_VERSION}+git"

SRC_URI = "git://github.com/armbian/linux-rockchip.git;protocol=https;branch=rk-6.1-rkr5.1 \
           file://vigil.cfg"
# Branch rk-6.1-rkr5.1 is what Armbian builds as its "vendor" kernel for these
# boards. AUTOREV only until a revision has been built and booted on all
# three boards; then pin it here (docs/yocto.md, "Pinning"). The build
# records the revision it used in buildhistory (yocto/kas/vigil.yml enables
# it): buildhistory/packages/*/linux-vigil-rk3588/latest_srcrev.
# nooelint: oelint.vars.autorev
SRCREV = "${AUTOREV}"

LINUX_VERSION = "6.1"
LINUX_KERNEL_TYPE = "standard"
LINUX_VERSION_EXTENSION = "-vigil"
KERNEL_VERSION_SANITY_SKIP = "1"

COMPATIBLE_MACHINE = "rk3588s"

# Rockchip's defconfig plus its RK3588 fragment, merged in-tree; vigil.cfg
# on top. No yocto-kernel-cache features: the vendor tree is configured only
# by these.
KBUILD_DEFCONFIG = "vigil_rk3588_defconfig"
KCONFIG_MODE = "alldefconfig"
KERNEL_FEATURES = ""

# Every rootfs carries the device trees of all three boards, so one RAUC
# bundle fits them all; each board's boot.scr names its own.
KERNEL_DEVICETREE = "rockchip/rk3588-rock-5b.dtb \
                     rockchip/rk3588-orangepi-5-plus.dtb \
                     rockchip/rk3588s-orangepi-5.dtb"

do_kernel_metadata:prepend() {
    configs=${S}/arch/${ARCH}/configs
    cat $configs/rockchip_linux_defconfig > $configs/${KBUILD_DEFCONFIG}
    if [ -f $configs/rk3588_linux.config ]; then
        cat $configs/rk3588_linux.config >> $configs/${KBUILD_DEFCONFIG}
    fi
}
