import { Command } from 'commander'
import { addInstallOptions, runInstall } from './commands/install.js'
import { addConsoleOptions, CONSOLE, cliLoggerFor } from './console-options.js'
import { reportError } from './report-error.js'
import { versionLine } from './version.js'

/**
 * `imageswarm-install`: only the install client, for installer ramdisks. It carries no
 * server code, so its single-file bundle stays small.
 */
export async function installMain(argv: string[]): Promise<number> {
  const program = addInstallOptions(
    addConsoleOptions(
      new Command('imageswarm-install')
        .description('download an image from the swarm and install it into the target root')
        .version(versionLine(), '-V, --version', 'print the version'),
    ),
  ).action(async (options: Parameters<typeof runInstall>[0], command: Command) =>
    runInstall(options, cliLoggerFor(command, 'install', CONSOLE)),
  )
  try {
    await program.parseAsync(argv, { from: 'user' })
    return 0
  } catch (err) {
    CONSOLE.endProgress({ complete: false })
    return reportError(err, argv, [])
  }
}
