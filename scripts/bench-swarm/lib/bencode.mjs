// Just enough bencode to copy a .torrent without its web seeds (aria2 has no switch to
// ignore a torrent's url-list, and the HTTP baseline must not leak into its figures), and
// to read which trackers and web seeds a torrent lists (the multi-server test).

export function decode(buf) {
  let i = 0
  const next = () => {
    const c = buf[i]
    if (c === 0x69) {
      const end = buf.indexOf(0x65, i)
      const n = Number(buf.toString('latin1', i + 1, end))
      i = end + 1
      return n
    }
    if (c === 0x6c) {
      i++
      const list = []
      while (buf[i] !== 0x65) list.push(next())
      i++
      return list
    }
    if (c === 0x64) {
      i++
      const dict = new Map()
      while (buf[i] !== 0x65) {
        const key = next().toString('latin1')
        dict.set(key, next())
      }
      i++
      return dict
    }
    const colon = buf.indexOf(0x3a, i)
    const len = Number(buf.toString('latin1', i, colon))
    const out = buf.subarray(colon + 1, colon + 1 + len)
    i = colon + 1 + len
    return out
  }
  return next()
}

export function encode(value) {
  if (typeof value === 'number') return Buffer.from(`i${value}e`)
  if (Buffer.isBuffer(value)) return Buffer.concat([Buffer.from(`${value.length}:`), value])
  if (typeof value === 'string') return encode(Buffer.from(value))
  if (Array.isArray(value)) {
    return Buffer.concat([Buffer.from('l'), ...value.map(encode), Buffer.from('e')])
  }
  const keys = [...value.keys()].sort()
  return Buffer.concat([
    Buffer.from('d'),
    ...keys.flatMap((key) => [encode(key), encode(value.get(key))]),
    Buffer.from('e'),
  ])
}

/** The .torrent without `url-list` (BEP 19 web seeds); the info dict is untouched. */
export function withoutWebSeeds(torrent) {
  const dict = decode(torrent)
  dict.delete('url-list')
  dict.delete('httpseeds')
  return encode(dict)
}

/**
 * A .torrent's trackers and web seeds as strings: `announce`, `announceList` (BEP 12 tiers,
 * each a list of URLs) and `urlList` (BEP 19; a single URL becomes a list of one).
 * @param {Buffer} torrent
 * @returns {{ announce: string | undefined, announceList: string[][], urlList: string[] }}
 */
export function readTorrentUrls(torrent) {
  const dict = decode(torrent)
  const text = (value) => (Buffer.isBuffer(value) ? value.toString('utf8') : String(value))
  const urlList = dict.get('url-list')
  return {
    announce: dict.has('announce') ? text(dict.get('announce')) : undefined,
    announceList: (dict.get('announce-list') ?? []).map((tier) => tier.map(text)),
    urlList:
      urlList === undefined ? [] : Array.isArray(urlList) ? urlList.map(text) : [text(urlList)],
  }
}
