SUMMARY = "vigil appliance image (development)"
DESCRIPTION = "vigil-image plus SSH (dropbear), a root login without a \
               password on the serial console and over SSH, and a few \
               debugging tools. Never ship this image."
SECTION = "images"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

require vigil-image.inc

# debug-tweaks no longer exists in current oe-core; these are its parts.
# They are what this image is for (oelint flags each as a security risk).
# nooelint: oelint.var.badimagefeature.allow-empty-password,oelint.var.badimagefeature.empty-root-password,oelint.var.badimagefeature.allow-root-login,oelint.var.badimagefeature.post-install-logging
IMAGE_FEATURES += "ssh-server-dropbear allow-empty-password empty-root-password allow-root-login post-install-logging"

IMAGE_INSTALL += "strace gdbserver procps"

# The BSP kernel's debug UART (ttyFIQ0 on Rockchip's device trees).
VIGIL_DEV_TTY ?= "ttyFIQ0"

# After the overlay is in place (ROOTFS_POSTPROCESS_COMMAND runs in order):
# - a login on the serial console: the production inittab has none;
# - dropbear started by rcS, which runs /etc/rc.d/S* (not the sysvinit
#   rc?.d links), with its host key on /data: the root filesystem is
#   read-only.
ROOTFS_POSTPROCESS_COMMAND += "vigil_dev_tweaks"

vigil_dev_tweaks[doc] = "Serial getty, dropbear from rcS with its host key on /data."
vigil_dev_tweaks() {
    echo "::respawn:/sbin/getty -L ${VIGIL_DEV_TTY} 1500000 vt100" >> ${IMAGE_ROOTFS}${sysconfdir}/inittab
    install -d ${IMAGE_ROOTFS}${sysconfdir}/rc.d ${IMAGE_ROOTFS}${sysconfdir}/default
    ln -sf ../init.d/dropbear ${IMAGE_ROOTFS}${sysconfdir}/rc.d/S50dropbear
    echo 'DROPBEAR_RSAKEY_DIR="/data/dropbear"' > ${IMAGE_ROOTFS}${sysconfdir}/default/dropbear
}
