import type { Logger } from '@imageswarm/core'
import { stopServer } from '../pid-file.js'

/**
 * `imageswarm stop` (si_stopbttrack): stops the server recorded in the PID file, once it
 * has checked that the PID is still that server (see `stopServer`).
 */
export async function runStop(flags: { pidFile: string }, logger: Logger): Promise<void> {
  const pid = await stopServer(flags.pidFile)
  logger.info({ pid }, 'image server stopped')
  process.stdout.write(`stopped the image server (pid ${pid})\n`)
}
