# Applets for the rootfs-overlay scripts (files/vigil.cfg says which and why).
FILESEXTRAPATHS:prepend:vigil := "${THISDIR}/files:"
SRC_URI:append:vigil = " file://vigil.cfg"
