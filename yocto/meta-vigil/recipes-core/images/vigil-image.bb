SUMMARY = "vigil appliance image (production)"
DESCRIPTION = "Read-only root filesystem with busybox init, vigil, its \
               supervisor and the Rockchip MPP/RGA/RKNN runtimes; RAUC A/B \
               updates; /data on its own partition. No package manager, no \
               SSH and no login on the console."
SECTION = "images"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

require vigil-image.inc
