# nooelint: oelint.var.mandatoryvar.HOMEPAGE,oelint.var.mandatoryvar.SRC_URI
# (No public homepage: built from this repository; the bundle class fetches nothing.)
SUMMARY = "vigil RAUC update bundle (root filesystem slot)"
DESCRIPTION = "A signed verity bundle with vigil-image's ext4 root filesystem \
               for the rootfs slot class (rootfs.0 / rootfs.1). The kernel and \
               device trees travel inside the root filesystem; the boot loader \
               and boot.scr are not updated by bundles."
SECTION = "base"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit bundle

RAUC_BUNDLE_COMPATIBLE = "${RAUC_COMPATIBLE}"
RAUC_BUNDLE_FORMAT = "verity"
RAUC_BUNDLE_DESCRIPTION = "vigil root filesystem"
RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "vigil-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# Signing material lives outside git (docs/yocto.md, "Keys"). Without it the
# recipe is skipped, and `bitbake vigil-bundle` says why.
VIGIL_KEYS_DIR ??= ""
RAUC_KEY_FILE = "${VIGIL_KEYS_DIR}/signing.key.pem"
RAUC_CERT_FILE = "${VIGIL_KEYS_DIR}/signing.cert.pem"
RAUC_KEYRING_FILE = "${VIGIL_KEYS_DIR}/ca.cert.pem"

# nooelint: oelint.task.noanonpython
python () {
    if not d.getVar('VIGIL_KEYS_DIR'):
        raise bb.parse.SkipRecipe('set VIGIL_KEYS_DIR to the directory with signing.key.pem, signing.cert.pem and ca.cert.pem (docs/yocto.md, "Keys")')
}
