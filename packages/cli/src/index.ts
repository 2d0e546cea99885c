export { runSystemImagerCommand } from './entry.js'
export { buildProgram, main, reportError } from './main.js'
export { ImageServer, type ImageServerOptions } from './server.js'
export { type SystemImagerCommand, translateSystemImagerArgs } from './si-compat.js'
