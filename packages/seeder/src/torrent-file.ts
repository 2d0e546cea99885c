import { archivePath, PIECE_HASH_BYTES, serverUrl, WIRE } from '@imageswarm/core'
import bencode from 'bencode'
import parseTorrent, { type ParsedTorrent, toTorrentFile } from 'parse-torrent'

export interface ImageTorrentOptions {
  /** The archive's file name: the torrent's (single) file. */
  name: string
  /** The archive's size in bytes. */
  length: number
  pieceLength: number
  /** The archive's piece hashes, 20 bytes a piece, as packArchive computes them. */
  pieces: Uint8Array
  announce: string
  webSeed: string
  created: Date
}

/**
 * Builds the image's `.torrent`: private (no DHT or PEX: only the server's tracker
 * hands out peers), this server's tracker as the only announce URL, and the archive's
 * HTTP URL as a BEP 19 web seed for when no peer can help.
 *
 * The piece hashes come from the pack, which hashes the archive as it is written, so
 * building the torrent reads nothing. The bytes are what create-torrent 6 writes for the
 * same file and options (a test holds us to it); it took 0.4 s to hash an 80 MiB archive
 * again.
 */
export function createImageTorrent(options: ImageTorrentOptions): Uint8Array {
  const pieceCount = Math.ceil(options.length / options.pieceLength)
  if (options.pieces.length !== pieceCount * PIECE_HASH_BYTES) {
    throw new Error(
      `${options.name}: ${options.pieces.length / PIECE_HASH_BYTES} piece hashes for ` +
        `${pieceCount} pieces of ${options.pieceLength} bytes`,
    )
  }
  return bencode.encode({
    info: {
      name: options.name,
      private: 1,
      'piece length': options.pieceLength,
      pieces: options.pieces,
      length: options.length,
    },
    announce: options.announce,
    'announce-list': [[options.announce]],
    'url-list': [options.webSeed],
    'created by': 'imageswarm',
    'creation date': Math.ceil(options.created.getTime() / 1000),
    encoding: 'UTF-8',
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

/**
 * The `.torrent` as a server hands it out when several servers serve the image: every
 * server's tracker in one tier (BEP 12 `announce-list`; `announce` is the first, this
 * server's, for clients that read only that) and every server's archive URL as a web seed
 * (BEP 19 `url-list`). The info dictionary is copied as it is, so the infohash stays.
 *
 * bittorrent-tracker's client announces to every URL of the tier at once, so a swarm
 * spread over several trackers is one swarm; aria2 and libtorrent try the tier's trackers
 * in turn and move to the next when one stops answering.
 */
export function torrentForServers(
  torrent: Uint8Array,
  servers: readonly string[],
  image: string,
  archiveFile: string,
): Uint8Array {
  if (servers.length === 0) return torrent
  const decoded = bencode.decode(torrent) as Record<string, unknown>
  const announce = servers.map((base) => serverUrl(base, WIRE.announce))
  return bencode.encode({
    ...decoded,
    announce: announce[0],
    'announce-list': [announce],
    'url-list': servers.map((base) => serverUrl(base, archivePath(image, archiveFile))),
  })
}
