// What runs on a bare node after /init (imageswarm-installer.mjs): parameters, the node's
// config, disks, the client's install, the new system made bootable, the post action.
export { type BootloaderPlan, ESP_MOUNT_POINT, planBootloader } from './boot-requirements.js'
export { findImageGrub, type ImageGrub } from './bootloader.js'
export {
  type BlockDisk,
  chooseInstallDisk,
  DEFAULT_ESP_MIB,
  defaultLayout,
  type Firmware,
} from './default-layout.js'
export { type DhcpLease, parseDhcpLease } from './dhcp-lease.js'
export { fstabText, installMountOptions, mkfsCommand, mountOrder } from './filesystems.js'
export { hostsWithName } from './hosts-file.js'
export type { InstallFileSource } from './install-files.js'
export {
  INSTALLER_PARAMETERS,
  type InstallerConfig,
  InstallerConfigSchema,
  type NodeInstallerSettings,
  POST_ACTIONS,
  type PostAction,
  RAMDISK_KERNEL_PARAMETERS,
  resolveNodeInstallerSettings,
} from './installer-config.js'
export { createInstallerConsole, type InstallerConsole } from './installer-console.js'
export {
  INSTALLER_LOG,
  INSTALLER_WORK_DIR,
  type InstallerMainOptions,
  installerMain,
} from './main.js'
export {
  type FetchedNodeConfig,
  fetchNodeConfig,
  type NodeConfigTrustOptions,
  nodeConfigPath,
} from './node-config.js'
export { installNode, type NodeInstallOptions, type NodeInstallResult } from './node-installer.js'
export { applyOverrides } from './overrides.js'
export {
  ALIGNMENT_BYTES,
  GPT_TYPES,
  MSDOS_TYPES,
  type PartitionPlan,
  type PlannedPartition,
  planPartitions,
  sfdiskScript,
} from './partition-plan.js'
export { IMAGE_SCRIPTS_DIR, POST_INSTALL_DIR, runPostInstallScripts } from './post-install.js'
export { baseHostname, imageScriptsToRun, variablesText } from './post-install-plan.js'
export { WRITTEN_FILES } from './target-files.js'
