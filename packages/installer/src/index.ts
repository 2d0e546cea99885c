// The imageswarm installer: the network-boot ramdisk (src/ramdisk) and, later, what runs on
// the bare node after /init (src/node).
export {
  type BuildInitrdOptions,
  type BuildInitrdResult,
  buildInitrd,
  RAMDISK_ASSETS_DIR,
  RAMDISK_PROGRAM_PATHS,
} from './ramdisk/build-initrd.js'
export { DEFAULT_INITRD_LEVELS, type InitrdCompression } from './ramdisk/cpio-archive.js'
export { DEFAULT_KERNEL_CACHE, DEFAULT_KERNEL_PACKAGE } from './ramdisk/debian-kernel.js'
export type {
  InitrdManifest,
  InstallerProgramKind,
  RamdiskContents,
} from './ramdisk/initrd-manifest.js'
export type { KernelFiles, KernelSource } from './ramdisk/kernel.js'
export { INSTALLER_MODULE_GROUPS, type ModuleGroup } from './ramdisk/kernel-modules.js'
export { RAMDISK_PROGRAMS } from './ramdisk/ramdisk-programs.js'
