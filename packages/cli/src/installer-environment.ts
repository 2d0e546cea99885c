import { access, statfs } from 'node:fs/promises'

/**
 * The `imageswarm.*` kernel parameters read by the installer rather than the install
 * client: the node installer's settings (INSTALLER_PARAMETERS in @imageswarm/installer)
 * and the ramdisk's /init (imageswarm-lib.sh). Listed here so the install-only bundle
 * does not carry the installer; a test keeps the list equal to theirs.
 */
export const INSTALLER_KERNEL_PARAMETERS: readonly string[] = [
  'imageswarm.disks-layout',
  'imageswarm.post-action',
  'imageswarm.hostname',
  'imageswarm.debug',
  'imageswarm.modules',
  'imageswarm.on-failure',
  'imageswarm.failure-delay',
]

/** statfs types of a root that lives in memory: an initramfs is one of these. */
const MEMORY_FILESYSTEMS = new Set([
  0x858458f6, // ramfs (the kernel's rootfs)
  0x01021994, // tmpfs
])

/**
 * Whether this process runs in an installer ramdisk, where the target root defaults to
 * /a: systemd's and dracut's initrds mark themselves with /etc/initrd-release, and an
 * initramfs's root filesystem is in memory (rootfs, tmpfs).
 */
export async function isInstallerEnvironment(): Promise<boolean> {
  try {
    await access('/etc/initrd-release')
    return true
  } catch {}
  try {
    return MEMORY_FILESYSTEMS.has((await statfs('/')).type)
  } catch {
    return false
  }
}
