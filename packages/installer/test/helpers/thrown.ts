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
