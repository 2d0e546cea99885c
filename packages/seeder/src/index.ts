export {
  resolveSeederConfig,
  type SeederConfig,
  type SeederConfigInput,
  SeederConfigSchema,
} from './config.js'
export { fingerprintTree } from './fingerprint.js'
export { handleImageRequest, type ImageCatalog, sendError, sendJson } from './image-routes.js'
export { type PublishedImage, type PublishOptions, publishImage } from './publish.js'
export { ImageSeeder, type SeedStats } from './seeding.js'
export { createImageTorrent, retargetTorrent } from './torrent-file.js'
