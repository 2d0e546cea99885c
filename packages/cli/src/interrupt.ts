import { ImageSwarmError } from '@imageswarm/core'

/**
 * Runs `work` with a signal that SIGINT or SIGTERM aborts with E_INTERRUPTED (`what
 * interrupted by SIGTERM`, and the hint): the pipeline stops its tools and reports it.
 */
export async function runInterruptible<T>(
  what: string,
  hint: string,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const interrupt = new AbortController()
  const onSignal = (signal: NodeJS.Signals) =>
    interrupt.abort(
      new ImageSwarmError('E_INTERRUPTED', `${what} interrupted by ${signal}`, { hint }),
    )
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    return await work(interrupt.signal)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
