# nooelint: oelint.var.mandatoryvar.HOMEPAGE
# (No public homepage: this recipe packages files of the vigil repository itself.)
SUMMARY = "vigil's root filesystem overlay (init, fstab, mdev, supervisor, config)"
DESCRIPTION = "Stages the repository's rootfs-overlay/ tree. The image \
               (vigil-image.inc) unpacks it over the installed packages as the \
               last step of do_rootfs, so these files replace busybox's and \
               base-files' defaults as they are, owned by root, with their \
               modes from git."
SECTION = "base"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The tree is the repository's own (VIGIL_SRC_DIR, set in meta-vigil's
# layer.conf); a recipe, not a bbappend, has to say where it is. A file://
# directory is checksummed file by file, so any edit under rootfs-overlay/
# reruns this recipe and the image's do_rootfs.
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${VIGIL_SRC_DIR}:"
SRC_URI = "file://rootfs-overlay/"

S = "${UNPACKDIR}/rootfs-overlay"

inherit deploy nopackages

INHIBIT_DEFAULT_DEPS = "1"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# Deployed as a tar with root ownership, so the build user's uid never
# reaches the image.
do_deploy() {
    tar -C ${S} --owner=0 --group=0 --numeric-owner --sort=name \
        -cf ${DEPLOYDIR}/vigil-rootfs-overlay.tar .
}
addtask deploy after do_unpack before do_build
