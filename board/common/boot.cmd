# vigil A/B boot script for U-Boot (hush), the same on every board and on the
# emulated one. Build: mkimage -A arm64 -O linux -T script -C none -d boot.cmd boot.scr
#
# Partitions (GPT, board/README.md): 1 boot (FAT: boot.scr, vigil-ab.0/.1),
# 2 rootfs_a, 3 rootfs_b (ext4, each with its own /boot/Image, optional
# /boot/initrd.img and /boot/dtb/...), 4 data.
#
# A/B state is RAUC's U-Boot scheme: BOOT_ORDER lists the slots in order of
# preference, BOOT_A_LEFT / BOOT_B_LEFT count the boot attempts each has left.
# Every boot takes one attempt from the first slot that has any; once vigil
# runs healthy, Linux marks the slot good (board/common/vigil-ab set-state,
# RAUC's custom backend) which gives it its 3 attempts back. A slot that fails
# to come up 3 times in a row is skipped: the other one boots (rollback).
# The state lives in files on the FAT partition rather than in U-Boot's
# environment store: `saveenv` is not available everywhere (it fails on QEMU's
# emulated flash), while fatload/fatwrite and env import/export work on every
# board. Counters are single digits (setexpr prints hex).
#
# It is rewritten on every boot, so a power cut can tear a write. Two copies,
# vigil-ab.0 and vigil-ab.1, each U-Boot's checksummed environment block of
# 512 bytes (env export -c: CRC-32, then NAME=value entries), are written in
# order, copy 0 first; the state read is copy 0 if its CRC holds, else copy 1,
# else the text file vigil-ab.env of older images, else the defaults. A cut
# while copy 0 is written leaves copy 1 with the old state, a cut while copy 1
# is written leaves copy 0 with the new one (docs/decisions/0009-ab-state.md).
# Linux's side is `vigil ab` (board/common/vigil-ab), which keeps the same
# rules. `env import -c` refuses a block whose CRC does not match, and a file
# of another size is not a copy.
#
# The board's U-Boot provides devtype, devnum (the boot device, as distro
# boot sets them), kernel_addr_r, ramdisk_addr_r and fdt_addr_r. The board's
# own settings come from vigil-board.env on the same FAT partition
# (board/<board>/vigil-board.env): vigil_console (the kernel's console=
# argument), vigil_fdtfile (the DTB inside the slot's /boot; unset: the DTB
# U-Boot runs with, ${fdtcontroladdr}) and vigil_bootargs (more arguments).

if fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-board.env; then
    env import -t ${ramdisk_addr_r} ${filesize}
fi

setenv BOOT_ORDER "A B"
setenv BOOT_A_LEFT 3
setenv BOOT_B_LEFT 3
setenv vigil_ab_from
if fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.0 && test "${filesize}" = "200" && env import -c ${ramdisk_addr_r} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
    setenv vigil_ab_from 0
fi
if test -z "${vigil_ab_from}" && fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.1 && test "${filesize}" = "200" && env import -c ${ramdisk_addr_r} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
    setenv vigil_ab_from 1
    echo "vigil: A/B state copy 0 damaged; using copy 1"
fi
if test -z "${vigil_ab_from}" && fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.env; then
    env import -t ${ramdisk_addr_r} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
    setenv vigil_ab_from legacy
    echo "vigil: no valid A/B state copy; using vigil-ab.env"
fi
if test -z "${vigil_ab_from}"; then
    echo "vigil: no A/B state on the boot partition; using the defaults"
fi
# Both copies, copy 0 first; copy 1 only once copy 0 is written.
setenv vigil_ab_save 'env export -c -s 0x200 ${ramdisk_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT && fatwrite ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.0 0x200 && fatwrite ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.1 0x200'

setenv vigil_slot
for slot in ${BOOT_ORDER}; do
    if test -z "${vigil_slot}"; then
        if test "${slot}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
            setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
            setenv vigil_slot A
            setenv vigil_rootpart 2
            setenv vigil_rootlabel rootfs_a
        fi
        if test "${slot}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
            setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
            setenv vigil_slot B
            setenv vigil_rootpart 3
            setenv vigil_rootlabel rootfs_b
        fi
    fi
done

if test -z "${vigil_slot}"; then
    echo "vigil: no slot has boot attempts left; resetting both to 3 and resetting the board"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
    run vigil_ab_save
    reset
fi

# Record the attempt before trying it: a slot that hangs still loses it.
run vigil_ab_save
echo "vigil: booting slot ${vigil_slot} (attempts left: A ${BOOT_A_LEFT}, B ${BOOT_B_LEFT})"

setenv bootargs "${vigil_console} root=PARTLABEL=${vigil_rootlabel} ro rootwait panic=5 rauc.slot=${vigil_slot} ${vigil_bootargs}"
if load ${devtype} ${devnum}:${vigil_rootpart} ${kernel_addr_r} /boot/Image; then
    if test -n "${vigil_fdtfile}"; then
        load ${devtype} ${devnum}:${vigil_rootpart} ${fdt_addr_r} /boot/${vigil_fdtfile}
        setenv vigil_fdt ${fdt_addr_r}
    else
        setenv vigil_fdt ${fdtcontroladdr}
    fi
    if load ${devtype} ${devnum}:${vigil_rootpart} ${ramdisk_addr_r} /boot/initrd.img; then
        booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${vigil_fdt}
    else
        booti ${kernel_addr_r} - ${vigil_fdt}
    fi
fi
echo "vigil: slot ${vigil_slot} has no bootable kernel; resetting (the attempt is counted)"
reset
