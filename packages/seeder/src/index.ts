export { BOOT_FILE_NAMES, BootFiles, type BootSet } from './boot-files.js'
export { type ByteRange, parseByteRange } from './byte-ranges.js'
export { ImageCatalog, type PublishingStage, type WebSeedUpload } from './catalog.js'
export {
  type ClusterLine,
  type ClusterNode,
  type ClusterTable,
  lookUpClusterNode,
  parseClusterTxt,
} from './cluster-txt.js'
export {
  configuredFormat,
  resolveSeederConfig,
  type SeederConfig,
  type SeederConfigInput,
  SeederConfigSchema,
} from './config.js'
export { type ParsedDisksLayout, parseDisksLayoutXml } from './disks-layout-xml.js'
export { DisksLayouts, type NamedLayout } from './disks-layouts.js'
export {
  compareWrappings,
  encryptedArchiveFileName,
  type SealedArchive,
  sealArchive,
} from './encrypted-archive.js'
export { fingerprintTree } from './fingerprint.js'
export { GroupKeyRoutes, type GroupKeyRoutesOptions } from './group-key-routes.js'
export { HeldFile, type HeldFileKind, type ServedFile } from './held-file.js'
export { hostnameFromHosts, shortHostname } from './hosts-file.js'
export {
  handleImageRequest,
  PUBLISHING_RETRY_AFTER_SECONDS,
  sendBytes,
  sendError,
  sendJson,
} from './image-routes.js'
export {
  deltaLevel,
  type PublishedDelta,
  type PublishedVersions,
  publishVersions,
  versionsDir,
} from './image-versions.js'
export {
  INSTALL_DIRS,
  type InstallRoutesConfig,
  type InstallRoutesConfigInput,
  InstallRoutesConfigSchema,
  resolveInstallRoutesConfig,
} from './install-config.js'
export { InstallRoutes, type InstallRoutesOptions, type InstallUploads } from './install-routes.js'
export {
  INSTALLER_CONSOLES,
  renderFailureScript,
  renderIdentifyScript,
  renderInstallScript,
} from './ipxe-script.js'
export {
  DEFAULT_MANIFEST_LIFETIME_SECONDS,
  ManifestSigner,
  type ManifestSignerOptions,
  nextSerial,
  type SignedManifestFiles,
} from './manifest-signer.js'
export { ImageMirror, type ImageMirrorOptions } from './mirror.js'
export { handleMirrorRequest } from './mirror-routes.js'
export {
  baseHostname,
  chooserCandidates,
  type NodeClasses,
  selectPostInstallScripts,
} from './node-classes.js'
export { type NodeConfigSigner, signNodeConfigAnswer } from './node-config-signing.js'
export { OVERRIDE_NAME, OverrideArchives } from './override-archives.js'
export {
  type PublishedImage,
  type PublishOptions,
  publishImage,
  resignPublishedImage,
} from './publish.js'
export { PublishedArchive } from './published-archive.js'
export { type FetchedArchive, type FetchOptions, ImageSeeder, type SeedStats } from './seeding.js'
export {
  DOWN_AFTER_MISSES,
  MISSED_INTERVALS,
  ServerRegistry,
  type ServerRegistryOptions,
} from './server-registry.js'
export { SERVER_WATCH_INTERVAL_MS, ServerWatch } from './server-watch.js'
export { renewalIntervalMs, SignatureRenewal } from './signature-renewal.js'
export {
  processStartTicks,
  STATE_LOCK_FILE,
  type StateDirectory,
  StateLock,
  stateDirectoriesOf,
} from './state-lock.js'
export { type NodeRequest, SystemImagerScripts } from './systemimager-scripts.js'
export { createImageTorrent, retargetTorrent, torrentForServers } from './torrent-file.js'
export { handleKeyListRequest, type KeyListSource } from './trust-routes.js'
export { type PacedChunk, paceBytes, UploadBudget, uploadBudgetFor } from './upload-budget.js'
export { serveArchive, type WebSeedOptions } from './web-seed.js'
