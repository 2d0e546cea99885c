import createTorrent from 'create-torrent'
import parseTorrent, { type ParsedTorrent, toTorrentFile } from 'parse-torrent'

export interface ImageTorrentOptions {
  archivePath: string
  name: string
  pieceLength: number
  announce: string
  webSeed: string
  created: Date
}

/**
 * Builds the image's `.torrent`: private (no DHT or PEX: only the server's tracker
 * hands out peers), this server's tracker as the only announce URL, and the archive's
 * HTTP URL as a BEP 19 web seed for when no peer can help.
 */
export async function createImageTorrent(options: ImageTorrentOptions): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    createTorrent(
      options.archivePath,
      {
        name: options.name,
        pieceLength: options.pieceLength,
        private: true,
        announceList: [[options.announce]],
        urlList: [options.webSeed],
        createdBy: 'imageswarm',
        creationDate: options.created,
      },
      (err, torrent) => (err ? reject(err) : resolve(torrent)),
    )
  })
}

/**
 * The same torrent pointed at another server address. Only data outside the info
 * dictionary changes, so the infohash, and every client's and cache's copy, stays valid.
 */
export async function retargetTorrent(
  torrent: Uint8Array,
  announce: string,
  webSeed: string,
): Promise<{ torrent: Uint8Array; parsed: ParsedTorrent; changed: boolean }> {
  const parsed = await parseTorrent(torrent)
  if (parsed.announce.length === 1 && parsed.announce[0] === announce) {
    if (parsed.urlList.length === 1 && parsed.urlList[0] === webSeed) {
      return { torrent, parsed, changed: false }
    }
  }
  parsed.announce = [announce]
  parsed.urlList = [webSeed]
  return { torrent: toTorrentFile(parsed), parsed, changed: true }
}
