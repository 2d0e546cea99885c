export {
  type ClientConfig,
  type ClientConfigInput,
  ClientConfigSchema,
  DEFAULT_SERVER_PORT,
  DOWNLOAD_PROTOCOLS,
  type DownloadProtocol,
  isStagingChoice,
  normalizeServerUrl,
  parseServerList,
  type ServerList,
  STAGING_CHOICES,
} from './config.js'
export { formatMiB } from './disk-space.js'
export {
  fetchGroupKey,
  type KeyRequestOptions,
  openArchiveKey,
  readNodeSecretFile,
} from './group-key.js'
export { downloadArchiveOverHttp, type HttpDownloadOptions } from './http-download.js'
export { CACHE_MOUNT_POINT, ImageCache } from './image-cache.js'
export {
  type Answered,
  ImageServers,
  type Question,
  type RequestSettings,
  type ServedImage,
  type SwarmSources,
  swarmSourcesOf,
} from './image-servers.js'
export {
  fetchVerifiedManifest,
  type ImageTrust,
  loadImageTrust,
  loadTrustRoot,
  readTrustFloor,
  recordInstalledImage,
  recordTrustState,
  type TrustRoot,
  trustedInstallOf,
  type VerifiedImage,
  type VerifyImageOptions,
} from './image-trust.js'
export {
  type InstallOptions,
  type InstallResult,
  installImage,
  type TargetPreparation,
} from './install.js'
export {
  type DescribedParameter,
  describeInstallParameters,
  INSTALL_PARAMETERS,
  type KernelTranslation,
  type ParameterInputs,
  type ParameterSource,
  type ParameterSpec,
  type ResolvedParameters,
  resolveInstallParameters,
  unknownKernelParameters,
} from './parameters.js'
export {
  fetchInstallFile,
  fetchManifest,
  fetchManifestFile,
  fetchTorrent,
  type ServerRequestOptions,
} from './server-api.js'
export { type FetchDispatcher, ServerConnection, tlsRefusalOf } from './server-connection.js'
export { StatusReporter } from './status-reporter.js'
export {
  readInstalledRecord,
  UPDATE_STAGING_DIR,
  type UpdateOptions,
  type UpdateResult,
  type UpdateSettings,
  updateImage,
} from './update.js'
