import { main } from './main.js'
import { reportError } from './report-error.js'
import { type SystemImagerCommand, translateSystemImagerArgs } from './si-compat.js'

/** Runs one of SystemImager's command names through the imageswarm CLI. */
export async function runSystemImagerCommand(
  command: SystemImagerCommand,
  argv: readonly string[],
): Promise<number> {
  let args: string[]
  try {
    args = translateSystemImagerArgs(command, argv)
  } catch (err) {
    return reportError(err)
  }
  return main(args)
}
