import querystring from 'node:querystring'
import { refusalReason } from './allow-list.js'
import { encodeFailure, encodeScrape, type ScrapeCounts } from './tracker-response.js'

export interface ScrapeSource {
  /** Hex infohashes of every published image. */
  published(): string[]
  /** Counts for a published infohash; undefined for one that is not published. */
  counts(infoHash: string): ScrapeCounts | undefined
}

/**
 * Answers `GET /scrape?info_hash=…` (any number of info_hash, or none for every
 * published image). Served here rather than by bittorrent-tracker, whose scrape reports
 * the seeder count as the number of downloads, answers for any infohash, and writes
 * binary keys as UTF-8 (see tracker-response.ts).
 *
 * Returns the bencoded reply, and the error to log when the request was bad.
 */
export function answerScrape(
  url: string,
  source: ScrapeSource,
  intervalSeconds: number,
): { body: Buffer; warning?: Error } {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : ''
  // `unescape` keeps each %XX as one character, so the binary infohash survives as
  // latin1; decodeURIComponent would fail on bytes that are not UTF-8. This is how
  // bittorrent-tracker reads its query strings too.
  const params = querystring.parse(query, undefined, undefined, { decodeURIComponent: unescape })
  const raw = params.info_hash
  const requested = raw === undefined ? undefined : Array.isArray(raw) ? raw : [raw]

  const hashes: string[] = []
  for (const value of requested ?? []) {
    if (value.length !== 20) {
      const warning = new Error('invalid info_hash')
      return { body: encodeFailure(warning.message), warning }
    }
    hashes.push(Buffer.from(value, 'latin1').toString('hex'))
  }

  const files = new Map<string, ScrapeCounts>()
  for (const infoHash of requested === undefined ? source.published() : hashes) {
    const counts = source.counts(infoHash)
    if (counts !== undefined) files.set(infoHash, counts)
  }
  // Unpublished infohashes are left out of a reply that has others; a request for
  // nothing but unpublished ones is refused as an announce would be.
  if (requested !== undefined && files.size === 0 && hashes[0] !== undefined) {
    const warning = new Error(refusalReason(hashes[0]))
    return { body: encodeFailure(warning.message), warning }
  }
  return { body: encodeScrape(files, intervalSeconds) }
}
