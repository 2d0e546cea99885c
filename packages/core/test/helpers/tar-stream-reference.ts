import { Readable } from 'node:stream'
import * as tarStream from 'tar-stream'
import { EntryGuard, NAME_KEYWORDS, UnsafeEntry } from '../../src/archive/policy.js'

/**
 * The validator imageswarm used before `TarScanner`: tar-stream reads the headers, the
 * same `EntryGuard` judges them. Kept as a reference the scanner must agree with (or be
 * stricter than). Resolves to the refusal message, or `undefined` when it accepts, and
 * the names of the members it judged.
 */
export async function tarStreamVerdict(
  tar: Buffer,
): Promise<{ verdict: string | undefined; names: string[] }> {
  const names: string[] = []
  const guard = new EntryGuard()
  const extract = tarStream.extract()
  try {
    await new Promise<void>((resolve, reject) => {
      extract.on('entry', (header, body, next) => {
        names.push(header.name)
        try {
          const global = (extract as unknown as { _paxGlobal?: Record<string, string> | null })
            ._paxGlobal
          const keyword = NAME_KEYWORDS.find((key) => global != null && key in global)
          if (keyword !== undefined) {
            throw new UnsafeEntry(header.name, `follows a pax global header that sets '${keyword}'`)
          }
          guard.check(header)
        } catch (err) {
          reject(err)
          return
        }
        body.on('end', next)
        body.resume()
      })
      extract.once('finish', () => resolve())
      extract.once('error', reject)
      Readable.from([tar]).pipe(extract)
    })
  } catch (err) {
    extract.destroy()
    return { verdict: err instanceof Error ? err.message : String(err), names }
  }
  return { verdict: undefined, names }
}
