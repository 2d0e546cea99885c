import { createLogger, ImageSwarmError, type Logger } from '@imageswarm/core'
import { type DestinationStream, pino } from 'pino'
import type { ConsoleOutput } from './console-output.js'

/** How the log reaches stderr: short lines for a person, or pino's JSON lines for machines. */
export const LOG_FORMATS = ['human', 'json'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const

export interface CliLoggerOptions {
  name: string
  /** The log's level: what the JSON log (stderr or `file`) records. */
  level: string
  /**
   * Whether the level was asked for. A person's console shows warnings and errors only
   * (what happened is the command's own lines) unless a level was asked for.
   */
  levelGiven: boolean
  format: LogFormat
  /** Also write the JSON log here (appended), whatever the console shows. */
  file?: string
  console: ConsoleOutput
}

/** Pino's number for a level name; `silent` is above every level. */
function levelValue(level: string): number {
  return level === 'silent'
    ? Number.POSITIVE_INFINITY
    : (pino.levels.values[level] ?? pino.levels.values.info!)
}

/**
 * Whether a person's console shows the records of `level`: in the human format, warnings
 * and errors, and whatever the level asked for lets through.
 */
export function consoleShows(
  options: Pick<CliLoggerOptions, 'format' | 'level' | 'levelGiven'>,
  level: string,
): boolean {
  return options.format === 'human' && consoleLevelOf(options) <= levelValue(level)
}

function consoleLevelOf(options: Pick<CliLoggerOptions, 'level' | 'levelGiven'>): number {
  return levelValue(options.levelGiven ? options.level : 'warn')
}

/** A repeated warning (a retry) is shown once in this long. */
const REPEAT_QUIET_MS = 30_000

/**
 * The CLI's logger. `json`: pino's JSON lines on stderr, as before. `human`: warnings and
 * errors as one short line each (a repeated one once in 30 s), on the same console as the
 * progress bar, so a serial console never shows raw JSON. With `file`, the whole JSON log
 * at `level` goes there too.
 */
export function createCliLogger(options: CliLoggerOptions): Logger {
  const fileStream = options.file
    ? pino.destination({ dest: options.file, sync: true, append: true, mkdir: true })
    : undefined
  if (options.format === 'json') {
    const stderr = pino.destination({ dest: 2, sync: true })
    return createLogger({
      name: options.name,
      level: options.level,
      destination: fileStream ? fanOut([stderr, fileStream]) : stderr,
    })
  }
  const consoleLevel = consoleLevelOf(options)
  const lastShown = new Map<string, number>()
  const destination: DestinationStream = {
    write(line: string) {
      fileStream?.write(line)
      const record = parseRecord(line)
      if (!record || record.level < consoleLevel) return
      const text = humanLine(record)
      const now = Date.now()
      if (
        record.level < levelValue('error') &&
        now - (lastShown.get(text) ?? -Infinity) < REPEAT_QUIET_MS
      ) {
        return
      }
      lastShown.set(text, now)
      options.console.line(text)
    },
  }
  const lowest = Math.min(levelValue(options.level), consoleLevel)
  const level = pino.levels.labels[lowest] ?? 'silent'
  return createLogger({ name: options.name, level, destination })
}

function fanOut(streams: readonly DestinationStream[]): DestinationStream {
  return {
    write: (line: string) => {
      for (const stream of streams) stream.write(line)
    },
  }
}

interface LogRecord {
  level: number
  msg?: string
  err?: unknown
  hint?: unknown
  image?: unknown
  [key: string]: unknown
}

function parseRecord(line: string): LogRecord | undefined {
  try {
    const record = JSON.parse(line) as LogRecord
    return typeof record.level === 'number' ? record : undefined
  } catch {
    return undefined
  }
}

/** `warning: image demo: MESSAGE: CAUSE`, and its hint on a second line. */
export function humanLine(record: LogRecord): string {
  const prefix =
    record.level >= levelValue('error')
      ? 'error: '
      : record.level >= levelValue('warn')
        ? 'warning: '
        : record.level >= levelValue('info')
          ? ''
          : 'debug: '
  const image = typeof record.image === 'string' ? `image ${record.image}: ` : ''
  const cause = errorText(record.err)
  const hint = typeof record.hint === 'string' ? `\n  hint: ${record.hint}` : ''
  return `${prefix}${image}${record.msg ?? ''}${cause ? ` (${cause})` : ''}${hint}`
}

function errorText(err: unknown): string | undefined {
  if (err === undefined || err === null) return undefined
  if (typeof err === 'string') return err.replace(/^Error: /, '')
  if (err instanceof ImageSwarmError) return err.message
  if (typeof err === 'object' && 'message' in err && typeof err.message === 'string') {
    return err.message
  }
  return String(err)
}
