#!/bin/bash
# dracut module: imageswarm's installer in a site's own initramfs (as SystemImager 5 ships
# 51systemimager). Add it to an image with `dracut --add imageswarm`; it needs node, the
# imageswarm program and imageswarm-lib.sh installed on the build host:
#   install -D -m 0644 -t /usr/lib/imageswarm packages/cli/dist/imageswarm-installer.mjs \
#     packages/installer/ramdisk/imageswarm-lib.sh
#   cp -r packages/installer/dracut/90imageswarm /usr/lib/dracut/modules.d/
# IMAGESWARM_PROGRAM names another program file; IMAGESWARM_LIB_SH another library.

# Never in an initramfs unless asked for: it adds node (about 100 MB unpacked).
check() {
    require_binaries node tar zstd gzip touch || return 1
    return 255
}

# dracut's network module brings the NIC up by DHCP (its BOOTIF= and ip= handling).
depends() {
    echo network
    return 0
}

install() {
    local program=${IMAGESWARM_PROGRAM:-}
    if [[ -z $program ]]; then
        for program in /usr/lib/imageswarm/imageswarm-installer.mjs /usr/lib/imageswarm/imageswarm-install.mjs; do
            [[ -f $program ]] && break
        done
    fi
    if [[ ! -f $program ]]; then
        derror "imageswarm: no installer program (/usr/lib/imageswarm/imageswarm-installer.mjs or imageswarm-install.mjs)"
        return 1
    fi
    local lib=${IMAGESWARM_LIB_SH:-/usr/lib/imageswarm/imageswarm-lib.sh}
    if [[ ! -f $lib ]]; then
        derror "imageswarm: no $lib (packages/installer/ramdisk/imageswarm-lib.sh)"
        return 1
    fi
    # The same tools as imageswarm's own ramdisk (packages/installer/src/ramdisk/ramdisk-programs.ts).
    inst_multiple node tar zstd gzip touch sfdisk wipefs blkid lsblk mkswap mount umount \
        losetup mke2fs mkfs.ext4 tune2fs sync
    inst_multiple -o mkfs.xfs mkfs.vfat mkfs.fat /etc/mke2fs.conf
    local name=imageswarm-install.mjs
    [[ $(basename "$program") == *installer* ]] && name=imageswarm-installer.mjs
    inst_simple "$program" "/usr/lib/imageswarm/$name"
    [[ -f $program.LEGAL.txt ]] && inst_simple "$program.LEGAL.txt" "/usr/lib/imageswarm/$name.LEGAL.txt"
    inst_simple "$lib" /usr/lib/imageswarm/imageswarm-lib.sh
    inst_hook cmdline 90 "$moddir/parse-imageswarm.sh"
    inst_hook pre-mount 90 "$moddir/imageswarm-install.sh"
}
