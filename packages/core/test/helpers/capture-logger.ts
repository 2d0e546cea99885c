import { type Logger, pino } from 'pino'

export interface CapturedLog {
  level: number
  msg: string
  [key: string]: unknown
}

/** A pino logger that keeps every line in memory, for asserting on warnings. */
export function captureLogger(): { logger: Logger; lines: CapturedLog[] } {
  const lines: CapturedLog[] = []
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line) as CapturedLog) },
  )
  return { logger, lines }
}

/** pino's level number for warn. */
export const WARN = 40
