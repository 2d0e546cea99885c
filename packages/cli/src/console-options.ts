import type { Logger } from '@imageswarm/core'
import { type Command, type CommanderError, Option } from 'commander'
import {
  consoleShows,
  createCliLogger,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
} from './cli-logger.js'
import type { ConsoleOutput } from './console-output.js'

/**
 * The options every command takes for what it shows and logs, and the argument parser's
 * behaviour on a mistake: commander's message is kept for `reportUsageError` (one line
 * and a hint) instead of being printed with the whole help.
 */
export function addConsoleOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--log-level <level>', 'what the log records')
        .choices(LOG_LEVELS)
        .default('info')
        .env('IMAGESWARM_LOG_LEVEL'),
    )
    .addOption(
      new Option(
        '--log-format <format>',
        'human: short lines, warnings and errors only unless --log-level is given; json: the structured log on stderr',
      )
        .choices(LOG_FORMATS)
        .default('human')
        .env('IMAGESWARM_LOG_FORMAT'),
    )
    .addOption(
      new Option('--log-file <file>', 'also append the structured (JSON) log to this file').env(
        'IMAGESWARM_LOG_FILE',
      ),
    )
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: () => {} })
}

interface ConsoleFlags {
  logLevel: string
  logFormat: LogFormat
  logFile?: string
}

/**
 * Whether a person's console shows the log's info records (`--log-level info` or lower
 * asked for, human format): a command then leaves out its own lines that say the same.
 */
export function consoleShowsInfoLog(command: Command): boolean {
  const flags = command.optsWithGlobals() as ConsoleFlags
  return consoleShows(
    { format: flags.logFormat, level: flags.logLevel, levelGiven: levelGiven(command) },
    'info',
  )
}

function levelGiven(command: Command): boolean {
  const source = command.getOptionValueSourceWithGlobals('logLevel')
  // 'config': `log-level = info` in serve's --config file (config-file.ts) is given too.
  return source === 'cli' || source === 'env' || source === 'config'
}

/** The logger of one command, by the console options given to it or to the program. */
export function cliLoggerFor(command: Command, name: string, output: ConsoleOutput): Logger {
  const flags = command.optsWithGlobals() as ConsoleFlags
  return createCliLogger({
    name,
    level: flags.logLevel,
    levelGiven: levelGiven(command),
    format: flags.logFormat,
    ...(flags.logFile === undefined ? {} : { file: flags.logFile }),
    console: output,
  })
}

/**
 * A mistake on the command line as one line and a hint: `imageswarm: error: unknown
 * option '--servr' (did you mean --server?)`. Help and --version are not errors.
 * `commands` are the program's command names, to point the hint at the one run.
 */
export function reportUsageError(
  err: CommanderError,
  argv: readonly string[] = [],
  commands: readonly string[] = [],
): void {
  if (
    err.exitCode === 0 ||
    err.code === 'commander.help' ||
    err.code === 'commander.helpDisplayed'
  ) {
    return
  }
  const message = err.message
    .replace(/^error: /, '')
    .replace(/\n\(Did you mean (.*)\?\)/, ' (did you mean $1?)')
    .trim()
  const command =
    err.code === 'commander.unknownCommand' ? undefined : argv.find((arg) => commands.includes(arg))
  process.stderr.write(
    `imageswarm: error: ${message}\n  hint: imageswarm ${command ? `${command} ` : ''}--help lists the ${command ? 'options' : 'commands and options'}\n`,
  )
}
