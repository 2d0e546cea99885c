export {
  type ClientConfig,
  type ClientConfigInput,
  ClientConfigSchema,
  DEFAULT_SERVER_PORT,
  normalizeServerUrl,
} from './config.js'
export { formatMiB } from './disk-space.js'
export { CACHE_MOUNT_POINT, ImageCache } from './image-cache.js'
export { type InstallOptions, type InstallResult, installImage } from './install.js'
export {
  INSTALL_PARAMETERS,
  type ParameterInputs,
  type ParameterSource,
  type ParameterSpec,
  type ResolvedParameters,
  resolveInstallParameters,
} from './parameters.js'
export { fetchManifest, fetchTorrent } from './server-api.js'
export { StatusReporter } from './status-reporter.js'
