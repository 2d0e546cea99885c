// The two bencoded replies this package writes itself. They are encoded by hand because
// a scrape reply's keys are raw 20-byte infohashes: the bencode package writes string
// keys as UTF-8 (turning every byte above 0x7f into two) and sorts binary keys by their
// decimal text, both of which break what BEP 48 clients expect.

export interface ScrapeCounts {
  complete: number
  incomplete: number
  downloaded: number
}

/** `d14:failure reason…e`, the reply a BitTorrent client shows as the tracker's error. */
export function encodeFailure(reason: string): Buffer {
  return Buffer.concat([
    Buffer.from('d14:failure reason'),
    encodeBytes(Buffer.from(reason, 'utf8')),
    Buffer.from('e'),
  ])
}

/** A BEP 48 scrape reply; `files` maps hex infohashes to their counts. */
export function encodeScrape(files: Map<string, ScrapeCounts>, intervalSeconds: number): Buffer {
  // Bencoded dictionaries are sorted by the raw bytes of their keys.
  const keys = [...files.keys()]
    .map((hex) => Buffer.from(hex, 'hex'))
    .sort((a, b) => Buffer.compare(a, b))
  const parts: Buffer[] = [Buffer.from('d5:filesd')]
  for (const key of keys) {
    const counts = files.get(key.toString('hex'))!
    parts.push(
      encodeBytes(key),
      Buffer.from(
        `d8:completei${counts.complete}e10:downloadedi${counts.downloaded}e10:incompletei${counts.incomplete}ee`,
      ),
    )
  }
  parts.push(Buffer.from(`e5:flagsd20:min_request_intervali${intervalSeconds}eee`))
  return Buffer.concat(parts)
}

function encodeBytes(bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${bytes.length}:`), bytes])
}
