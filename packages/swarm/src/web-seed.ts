/** Web seed: pieces fetched over HTTP at once, per web seed. */
export const WEB_SEED_CONCURRENCY = 2

/**
 * One piece from a BEP 19 web seed (the image server's HTTP URL of the archive) by a range
 * request: `length` bytes from `start`, and nothing more (a web seed answering with more
 * is not read further). Throws on anything but a 206 of exactly that length.
 */
export async function fetchWebSeedPiece(
  url: string,
  piece: { index: number; start: number; length: number },
  options: { timeoutMs: number; dispatcher?: RequestInit['dispatcher'] },
): Promise<Buffer> {
  const { index, start, length } = piece
  const { dispatcher } = options
  const response = await fetch(url, {
    headers: { range: `bytes=${start}-${start + length - 1}` },
    signal: AbortSignal.timeout(options.timeoutMs),
    ...(dispatcher ? { dispatcher } : {}),
  })
  if (response.status !== 206) {
    await response.body?.cancel()
    throw new Error(`web seed answered ${response.status} to a range request`)
  }
  const data = Buffer.allocUnsafe(length)
  let received = 0
  const reader = response.body?.getReader()
  while (reader) {
    const { done, value } = await reader.read()
    if (done) break
    if (received + value.byteLength > length) {
      await reader.cancel().catch(() => {})
      throw new Error(`web seed sent more than the ${length} bytes of piece ${index}`)
    }
    data.set(value, received)
    received += value.byteLength
  }
  if (received !== length) {
    throw new Error(`web seed sent ${received} of the ${length} bytes of piece ${index}`)
  }
  return data
}
