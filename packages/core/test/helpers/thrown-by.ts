/** What `run` throws, or `undefined` if it returns. */
export function thrownBy(run: () => unknown): unknown {
  try {
    run()
  } catch (err) {
    return err
  }
  return undefined
}
