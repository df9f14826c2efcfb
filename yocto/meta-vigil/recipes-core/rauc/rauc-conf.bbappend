# vigil's RAUC configuration: system.conf (slots, custom boot-loader backend),
# the keyring and the backend itself (board/common/vigil-ab in the
# repository, a shim RAUC calls by path that runs `vigil ab`, hence the
# dependency). The /dev/disk/by-partlabel links the slots are named by come
# from rootfs-overlay/etc/rc.d/S02partlabels (vigil-rootfs-overlay), shared
# with the emulated board. Everything here applies only with DISTRO = "vigil".

FILESEXTRAPATHS:prepend:vigil := "${THISDIR}/files:${VIGIL_SRC_DIR}/board/common:"

# The product's CA comes from VIGIL_KEYS_DIR (outside git, passed through the
# kas environment); without it the placeholder in files/ is installed and
# RAUC accepts no bundle.
RAUC_KEYRING_FILE:vigil = "ca.cert.pem"
RAUC_KEYRING_URI:vigil = "${@'file://%s/ca.cert.pem' % d.getVar('VIGIL_KEYS_DIR') if d.getVar('VIGIL_KEYS_DIR') else 'file://ca.cert.pem'}"

SRC_URI:append:vigil = " file://vigil-ab"

do_install:append:vigil() {
    install -D -m 0755 ${UNPACKDIR}/vigil-ab ${D}${sbindir}/vigil-ab
    if grep -q 'PLACEHOLDER - NOT A CERTIFICATE' ${D}${sysconfdir}/rauc/ca.cert.pem; then
        bbwarn "vigil: the RAUC keyring is the placeholder; this image accepts no update bundle. Set VIGIL_KEYS_DIR (docs/yocto.md)."
    fi
}

FILES:${PN}:append:vigil = " ${sbindir}/vigil-ab"
RDEPENDS:${PN}:append:vigil = " vigil"
