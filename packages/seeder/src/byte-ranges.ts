/** One byte range of a file, both ends inclusive, as `Content-Range` writes it. */
export interface ByteRange {
  start: number
  end: number
}

const RANGE_SPEC = /^(\d*)-(\d*)$/

/**
 * The one range a `Range` header asks of a file of `size` bytes (RFC 9110 §14.1.2):
 * `bytes=0-499`, `bytes=500-`, `bytes=-500` (the last 500). Undefined when the whole
 * file is to be sent: no header, another unit, a malformed value, or several ranges (a
 * server may ignore those; a BEP 19 web seed asks for one piece at a time, and `send`,
 * which served the archive before, did the same). `'unsatisfiable'` when the range
 * starts at or past the end of the file: answered with 416.
 *
 * @example parseByteRange('bytes=100-1099', 300_000) // { start: 100, end: 1099 }
 */
export function parseByteRange(
  header: string | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const equals = header.indexOf('=')
  if (equals === -1 || header.slice(0, equals).trim().toLowerCase() !== 'bytes') return undefined
  const specs = header
    .slice(equals + 1)
    .split(',')
    .map((spec) => spec.trim())
  if (specs.length !== 1) return undefined
  const match = RANGE_SPEC.exec(specs[0] ?? '')
  if (!match) return undefined
  const [, first = '', last = ''] = match
  if (first === '' && last === '') return undefined
  if (first === '') {
    // A suffix: the last N bytes.
    const suffix = toNumber(last)
    if (suffix === undefined) return undefined
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = toNumber(first)
  const end = last === '' ? Number.MAX_SAFE_INTEGER : toNumber(last)
  if (start === undefined || end === undefined || end < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return { start, end: Math.min(end, size - 1) }
}

function toNumber(digits: string): number | undefined {
  const value = Number(digits)
  return Number.isSafeInteger(value) ? value : undefined
}
