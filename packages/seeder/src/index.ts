export { type ByteRange, parseByteRange } from './byte-ranges.js'
export { ImageCatalog, type PublishingStage, type WebSeedUpload } from './catalog.js'
export {
  resolveSeederConfig,
  type SeederConfig,
  type SeederConfigInput,
  SeederConfigSchema,
} from './config.js'
export { fingerprintTree } from './fingerprint.js'
export {
  handleImageRequest,
  PUBLISHING_RETRY_AFTER_SECONDS,
  sendError,
  sendJson,
} from './image-routes.js'
export { type PublishedImage, type PublishOptions, publishImage } from './publish.js'
export { PublishedArchive } from './published-archive.js'
export { ImageSeeder, type SeedStats } from './seeding.js'
export {
  processStartTicks,
  STATE_LOCK_FILE,
  type StateDirectory,
  StateLock,
  stateDirectoriesOf,
} from './state-lock.js'
export { createImageTorrent, retargetTorrent } from './torrent-file.js'
export { type PacedChunk, paceBytes, UploadBudget, uploadBudgetFor } from './upload-budget.js'
export { serveArchive, type WebSeedOptions } from './web-seed.js'
