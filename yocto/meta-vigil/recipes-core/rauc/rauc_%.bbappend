# RAUC on vigil: no D-Bus service (busybox init starts no dbus-daemon; the
# rauc command installs in-process), no HTTP streaming and no network
# support (bundles are uploaded to /data first), no GPT boot switching; json
# for `rauc status --output-format=json`. No fw_setenv either: the boot-loader
# backend is vigil-ab (system.conf), which meta-rauc cannot know and would
# otherwise pull in u-boot-fw-utils because the boot loader is U-Boot.
PACKAGECONFIG:vigil = "nocreate json"
RDEPENDS:${PN}:remove:vigil = "u-boot-fw-utils"
