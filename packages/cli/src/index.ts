export { runSystemImagerCommand } from './entry.js'
export { installMain } from './install-main.js'
export { buildProgram, main } from './main.js'
export { reportError } from './report-error.js'
export { ImageServer, type ImageServerOptions } from './server.js'
export {
  type BittorrentConf,
  parseBittorrentConf,
  readBittorrentConf,
} from './si-bittorrent-conf.js'
export {
  type SystemImagerCommand,
  type SystemImagerTranslation,
  translateSystemImagerArgs,
  translateSystemImagerCommand,
} from './si-compat.js'
