import { Command } from 'commander'
import { addInstallOptions, runInstall } from './commands/install.js'
import { addConsoleOptions, cliLoggerFor } from './console-options.js'
import { ConsoleOutput } from './console-output.js'
import { reportError } from './report-error.js'
import { versionLine } from './version.js'

/**
 * `imageswarm-install`: only the install client, for installer ramdisks. It carries no
 * server code, so its single-file bundle stays small.
 */
export async function installMain(argv: string[]): Promise<number> {
  // The process's one console: the log's lines and the progress bar share it.
  const output = new ConsoleOutput()
  const program = addInstallOptions(
    addConsoleOptions(
      new Command('imageswarm-install')
        .description('download an image from the swarm and install it into the target root')
        .version(versionLine(), '-V, --version', 'print the version'),
    ),
  ).action(async (options: Parameters<typeof runInstall>[0], command: Command) =>
    runInstall(options, cliLoggerFor(command, 'install', output), output),
  )
  try {
    await program.parseAsync(argv, { from: 'user' })
    return 0
  } catch (err) {
    output.endProgress({ complete: false })
    return reportError(err, argv, [])
  }
}
