/**
 * Reading the image server's HTTP answers with bounds: every answer a client reads (manifest,
 * .torrent, `/server.json`, a status post's reply) comes from a host that may not be the
 * server it claims to be, so none is read past what it can legitimately hold.
 */

/** A body longer than the reader takes for it. */
export class BodyTooLarge extends Error {
  constructor(
    readonly limit: number,
    readonly declared?: number,
  ) {
    super(`larger than ${limit} bytes`)
  }
}

/**
 * The whole body, refusing one over `limit` bytes (declared or received) without reading
 * further. `onChunk` sees each chunk as it arrives (an idle timer, a byte count).
 */
export async function readBody(
  response: Response,
  limit: number,
  onChunk?: (bytes: number) => void,
): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN)
  if (Number.isSafeInteger(declared) && declared > limit) {
    await response.body?.cancel().catch(() => {})
    throw new BodyTooLarge(limit, declared)
  }
  const chunks: Uint8Array[] = []
  let received = 0
  const reader = response.body?.getReader()
  while (reader) {
    const { done, value } = await reader.read()
    if (done) break
    received += value.byteLength
    if (received > limit) {
      await reader.cancel().catch(() => {})
      throw new BodyTooLarge(limit)
    }
    chunks.push(value)
    onChunk?.(value.byteLength)
  }
  return Buffer.concat(chunks, received)
}

/** Retry-After in milliseconds: delay-seconds or an HTTP date (RFC 9110); else undefined. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}
