// The imageswarm installer: the network-boot ramdisk (src/ramdisk). What runs on the bare
// node after /init (src/node) is `@imageswarm/installer/node`, bundled on its own.
export {
  type BuildInitrdOptions,
  type BuildInitrdResult,
  buildInitrd,
  RAMDISK_ASSETS_DIR,
  RAMDISK_INSTALLER_ENV,
  RAMDISK_PROGRAM_PATHS,
  RAMDISK_TRUST_ROOT,
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
