// Narrow declarations for create-torrent 6 and parse-torrent 11.
declare module 'create-torrent' {
  export interface CreateTorrentOptions {
    name?: string
    creationDate?: Date | number
    comment?: string
    createdBy?: string
    private?: boolean
    pieceLength?: number
    announceList?: string[][]
    urlList?: string[]
    info?: Record<string, unknown>
    onProgress?: (hashedLength: number, estimatedTorrentLength: number) => void
  }
  export default function createTorrent(
    input: string | string[] | Uint8Array,
    opts: CreateTorrentOptions,
    cb: (err: Error | null, torrent: Uint8Array) => void,
  ): void
}

declare module 'parse-torrent' {
  export interface ParsedTorrent {
    infoHash: string
    infoHashBuffer?: Uint8Array
    name: string
    announce: string[]
    urlList: string[]
    private?: boolean
    length: number
    pieceLength: number
    lastPieceLength: number
    pieces: string[]
    files: { path: string; name: string; length: number; offset: number }[]
    info?: Record<string, unknown>
    infoBuffer?: Uint8Array
    created?: Date
    createdBy?: string
    comment?: string
  }
  export default function parseTorrent(torrentId: unknown): Promise<ParsedTorrent>
  export function toTorrentFile(parsed: ParsedTorrent): Uint8Array
}

declare module 'bittorrent-tracker' {
  import { EventEmitter } from 'node:events'
  export interface ScrapeData {
    announce: string
    infoHash: string
    complete: number
    incomplete: number
    downloaded: number
  }
  export default class Client extends EventEmitter {
    static scrape(
      opts: { announce: string; infoHash: string | string[] },
      cb: (err: Error | null, data?: ScrapeData) => void,
    ): Client
  }
}

declare module 'bittorrent-protocol' {
  import { Duplex } from 'node:stream'
  export default class Protocol extends Duplex {
    handshake(infoHash: string, peerId: string, extensions?: unknown): void
    bitfield(bitfield: unknown): void
    unchoke(): void
  }
}

declare module 'bitfield' {
  export default class BitField {
    constructor(size: number)
    set(index: number, value: boolean): void
    get(index: number): boolean
  }
}
