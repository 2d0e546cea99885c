import { EXIT_CODES, exitCodeFor, isImageSwarmError } from '@imageswarm/core'
import { CommanderError } from 'commander'
import { reportUsageError } from './console-options.js'

/**
 * Prints an error the way an administrator needs it and returns the exit code: a known
 * error's code, message and hint; a usage error from the argument parser as one line
 * and a hint (`argv` names the command for it); anything else as an internal error to
 * report.
 */
export function reportError(
  err: unknown,
  argv: readonly string[] = [],
  commands: readonly string[] = [],
): number {
  if (err instanceof CommanderError) {
    reportUsageError(err, argv, commands)
    return err.exitCode === 0 ? 0 : EXIT_CODES['bad parameters']
  }
  if (isImageSwarmError(err)) {
    const lines = [`imageswarm: error ${err.code}: ${err.message}`]
    if (err.hint) lines.push(`  hint: ${err.hint}`)
    process.stderr.write(`${lines.join('\n')}\n`)
    return err.exitCode
  }
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err)
  process.stderr.write(
    `imageswarm: internal error, please report it with this output:\n${detail}\n`,
  )
  return exitCodeFor(err)
}
