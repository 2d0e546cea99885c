import { type DestinationStream, type Logger, pino } from 'pino'
import pretty from 'pino-pretty'

export type { Logger } from 'pino'

export interface LoggerOptions {
  /** Component name, shown in every line (`server`, `install`). */
  name: string
  level?: string
  /** Human-readable lines; default: when stderr is a terminal. JSON otherwise. */
  pretty?: boolean
  /** Where lines go; default stderr, so stdout stays free for `--json` events. */
  destination?: DestinationStream
}

/**
 * Structured logs: JSON lines when stderr is not a terminal (serial consoles, journald,
 * files), colourised lines on a terminal.
 *
 * @example const logger = createLogger({ name: 'server' }); logger.info({ image }, 'published')
 */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? process.env.IMAGESWARM_LOG_LEVEL ?? 'info'
  const wantPretty = options.pretty ?? process.stderr.isTTY === true
  const destination =
    options.destination ??
    (wantPretty
      ? pretty({
          destination: 2,
          sync: true,
          translateTime: 'SYS:HH:MM:ss',
          ignore: 'pid,hostname',
        })
      : pino.destination({ dest: 2, sync: true }))
  return pino({ name: options.name, level, base: { name: options.name } }, destination)
}

/** A logger that drops everything, for library callers and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
