/** A program the ramdisk carries, copied from the build host with its shared libraries. */
export interface RamdiskProgram {
  /** Command name, looked up in PATH and the sbin directories. */
  name: string
  /** The Debian package that provides it (for E_TOOL_MISSING and the manifest's version). */
  debianPackage: string
  /** What on the node runs it. */
  usedFor: string
}

const program = (name: string, debianPackage: string, usedFor: string): RamdiskProgram => ({
  name,
  debianPackage,
  usedFor,
})

/**
 * The real tools the installer runs; busybox-static provides everything else (sh, ip,
 * udhcpc, modprobe, chroot, …). The client's archive engine needs GNU tar, not busybox's
 * (sparse files, xattrs, ACLs: see core/src/archive), and runs `touch -m -d @S.N`, which
 * busybox's touch does not parse.
 */
export const RAMDISK_PROGRAMS: readonly RamdiskProgram[] = [
  program('tar', 'tar', 'extracting the image'),
  program('zstd', 'zstd', 'decompressing the image'),
  program('gzip', 'gzip', 'decompressing gzip images'),
  program('sqfs2tar', 'squashfs-tools-ng', 'extracting SquashFS images'),
  program('fallocate', 'util-linux', 'making the sparse files of SquashFS images sparse again'),
  program('touch', 'coreutils', 'restoring directory times after extraction'),
  program('sfdisk', 'fdisk', 'partitioning'),
  program('wipefs', 'util-linux', 'clearing old signatures before partitioning'),
  program('blkid', 'util-linux', 'filesystem UUIDs for fstab'),
  program('lsblk', 'util-linux', 'listing disks and their sizes'),
  program('mkswap', 'util-linux', 'swap partitions'),
  program('mount', 'mount', 'mounting the target filesystems and the cache'),
  program('umount', 'mount', 'unmounting the target before the reboot'),
  program('losetup', 'mount', 'loop devices'),
  program('mkfs.ext4', 'e2fsprogs', 'ext2/3/4 filesystems'),
  program('mke2fs', 'e2fsprogs', 'ext2/3/4 filesystems'),
  program('tune2fs', 'e2fsprogs', 'ext4 labels and UUIDs'),
  program('mkfs.xfs', 'xfsprogs', 'XFS filesystems'),
  program('mkfs.vfat', 'dosfstools', 'the EFI system partition'),
  program('busybox', 'busybox-static', 'the shell, /init and every other command'),
]

/** Host configuration files the programs read, copied when present. */
export const RAMDISK_HOST_FILES: readonly { path: string; debianPackage: string; why: string }[] = [
  {
    path: '/etc/mke2fs.conf',
    debianPackage: 'e2fsprogs',
    why: "mke2fs's defaults for ext4 features (without it, it falls back to older ones)",
  },
]

/** Busybox applets never linked: `linuxrc` would be a second init. */
export const SKIPPED_APPLETS: readonly string[] = ['linuxrc']
