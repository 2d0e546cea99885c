export { buildProgram, main, reportError } from './main.js'
export { runSystemImagerCommand } from './entry.js'
export { ImageServer, type ImageServerOptions } from './server.js'
export { translateSystemImagerArgs, type SystemImagerCommand } from './si-compat.js'
