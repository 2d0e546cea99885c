import { ImageSwarmError } from '@imageswarm/core'

/** The ImageSwarmError `fn` throws; anything else it throws, or its returning, fails the test. */
export function thrown(fn: () => unknown): ImageSwarmError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ImageSwarmError) return err
    throw err
  }
  throw new Error('expected an ImageSwarmError')
}

/** The ImageSwarmError `promise` rejects with; any other rejection, or its resolving, fails the test. */
export async function rejected(promise: Promise<unknown>): Promise<ImageSwarmError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (err instanceof ImageSwarmError) return err
  throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
}
