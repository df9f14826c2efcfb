# nooelint: oelint.var.mandatoryvar.HOMEPAGE
# (No public homepage: this recipe packages files of the vigil repository itself.)
SUMMARY = "U-Boot script and board settings that boot vigil's A/B root filesystems"
DESCRIPTION = "Compiles the repository's board/common/boot.cmd with mkimage \
               into boot.scr and stages board/<board>/vigil-board.env (console, \
               device tree, extra kernel arguments) for the FAT boot partition. \
               boot.cmd keeps the A/B state (BOOT_ORDER, BOOT_A_LEFT, \
               BOOT_B_LEFT) next to them in two checksummed copies, \
               vigil-ab.0 and vigil-ab.1, made here with mkenvimage."
SECTION = "bootloaders"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

DEPENDS = "u-boot-tools-native"

# Both files are the repository's own (VIGIL_SRC_DIR, set in meta-vigil's
# layer.conf); a recipe, not a bbappend, has to say where they are.
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${VIGIL_SRC_DIR}/board/common:${VIGIL_SRC_DIR}/board/${VIGIL_BOARD}:"
SRC_URI = "file://boot.cmd \
           file://vigil-board.env"

S = "${UNPACKDIR}"

inherit deploy nopackages

# vigil-board.env differs per board.
PACKAGE_ARCH = "${MACHINE_ARCH}"

INHIBIT_DEFAULT_DEPS = "1"

# The board directory under board/ (named like the MACHINE for all three).
VIGIL_BOARD ?= "${MACHINE}"

# The A/B state's initial copies (docs/decisions/0009-ab-state.md): U-Boot's
# checksummed environment block of 512 bytes, as `env export -c -s 0x200`
# writes it and mkenvimage -p 0 makes it byte for byte (names sorted).
do_compile() {
    mkimage -A arm64 -O linux -T script -C none -n "vigil A/B boot" -d ${S}/boot.cmd ${B}/boot.scr
    printf 'BOOT_A_LEFT=3\nBOOT_B_LEFT=3\nBOOT_ORDER=A B\n' > ${B}/vigil-ab.txt
    mkenvimage -p 0 -s 512 -o ${B}/vigil-ab.0 ${B}/vigil-ab.txt
}

do_deploy() {
    install -D -m 0644 ${B}/boot.scr ${DEPLOYDIR}/boot.scr
    install -D -m 0644 ${S}/vigil-board.env ${DEPLOYDIR}/vigil-board.env
    install -D -m 0644 ${B}/vigil-ab.0 ${DEPLOYDIR}/vigil-ab.0
    install -D -m 0644 ${B}/vigil-ab.0 ${DEPLOYDIR}/vigil-ab.1
}
addtask deploy after do_compile before do_build
