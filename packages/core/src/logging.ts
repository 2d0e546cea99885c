import { type DestinationStream, type Logger, pino } from 'pino'

export type { Logger } from 'pino'

export interface LoggerOptions {
  /** Component name, shown in every line (`server`, `install`). */
  name: string
  level?: string
  /** Where lines go; default stderr, so stdout stays free for `--json` events. */
  destination?: DestinationStream
}

/**
 * Structured logs: pino's JSON lines (serial consoles, journald, files). What a person sees
 * on a terminal is the CLI's own short lines (packages/cli/src/cli-logger.ts).
 *
 * @example const logger = createLogger({ name: 'server' }); logger.info({ image }, 'published')
 */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? process.env.IMAGESWARM_LOG_LEVEL ?? 'info'
  const destination = options.destination ?? pino.destination({ dest: 2, sync: true })
  return pino({ name: options.name, level, base: { name: options.name } }, destination)
}

/** A logger that drops everything, for library callers and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
