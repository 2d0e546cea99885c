import { createLogger } from '@imageswarm/core'
import { Command } from 'commander'
import { addInstallOptions, runInstall } from './commands/install.js'
import { reportError } from './report-error.js'

/**
 * `imageswarm-install`: only the install client, for installer ramdisks. It carries no
 * server code, so its single-file bundle stays small.
 */
export async function installMain(argv: string[]): Promise<number> {
  const program = addInstallOptions(
    new Command('imageswarm-install')
      .description('download an image from the swarm and install it into the target root')
      .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
      .showHelpAfterError()
      .exitOverride(),
  ).action(async (options: Parameters<typeof runInstall>[0] & { logLevel: string }) =>
    runInstall(options, createLogger({ name: 'install', level: options.logLevel })),
  )
  try {
    await program.parseAsync(argv, { from: 'user' })
    return 0
  } catch (err) {
    return reportError(err)
  }
}
