import type { Logger } from '@imageswarm/core'
import type { ConsoleOutput } from '../console-output.js'
import { stopServer } from '../pid-file.js'

/**
 * `imageswarm stop` (si_stopbttrack): stops the server recorded in the PID file, once it
 * has checked that the PID is still that server (see `stopServer`).
 */
export async function runStop(
  flags: { pidFile: string },
  logger: Logger,
  /** A person's console, unless it shows the info log already (or the log is JSON). */
  ownLines?: ConsoleOutput,
): Promise<void> {
  const pid = await stopServer(flags.pidFile)
  const said = `stopped the image server (pid ${pid})`
  logger.info({ pid }, said)
  ownLines?.line(said)
}
