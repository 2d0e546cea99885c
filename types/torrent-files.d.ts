// Narrow declarations for create-torrent 6, parse-torrent 11 and bencode 4.
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
  export interface AnnounceOptions {
    numwant?: number
    uploaded?: number
    downloaded?: number
    left?: number
  }
  export interface ClientOptions {
    infoHash: string
    peerId: string
    announce: string[]
    port: number
    getAnnounceOpts?: () => AnnounceOptions
    /**
     * Connections for HTTP(S) trackers: each agent is handed to fetch as its `dispatcher`
     * (an undici dispatcher, not a `node:http` agent).
     */
    proxyOpts?: ProxyOptions
  }
  export interface ProxyOptions {
    httpAgent?: unknown
    httpsAgent?: unknown
  }
  /** Emits `peer` ("ip:port"), `update`, `warning` and `error`. */
  export default class Client extends EventEmitter {
    constructor(options: ClientOptions)
    start(options?: AnnounceOptions): void
    stop(options?: AnnounceOptions): void
    complete(options?: AnnounceOptions): void
    update(options?: AnnounceOptions): void
    destroy(cb?: (err?: Error) => void): void
    static scrape(
      opts: { announce: string; infoHash: string | string[]; proxyOpts?: ProxyOptions },
      cb: (err: Error | null, data?: ScrapeData) => void,
    ): Client
  }
}

declare module 'bittorrent-protocol' {
  import { Duplex } from 'node:stream'
  export interface PeerPieces {
    get(index: number): boolean
  }
  /** One BitTorrent connection (BEP 3, with BEP 6 fast and BEP 10 extended messages). */
  export default class Protocol extends Duplex {
    constructor(type?: string)
    peerId: string | null
    peerPieces: PeerPieces
    peerChoking: boolean
    peerInterested: boolean
    amChoking: boolean
    amInterested: boolean
    hasFast: boolean
    requests: unknown[]
    peerRequests: unknown[]
    handshake(
      infoHash: string,
      peerId: string,
      extensions?: { fast?: boolean; dht?: boolean },
    ): void
    bitfield(bitfield: Uint8Array | unknown): void
    have(index: number): void
    haveNone(): void
    haveAll(): void
    choke(): void
    unchoke(): void
    interested(): void
    uninterested(): void
    request(
      index: number,
      offset: number,
      length: number,
      cb: (err: Error | null, block?: Uint8Array) => void,
    ): void
    cancel(index: number, offset: number, length: number): void
    reject(index: number, offset: number, length: number): void
    setKeepAlive(enable: boolean): void
    setTimeout(ms: number, unref?: boolean): void
    override destroy(): this
    /** True once the wire has ended; it sends and parses nothing after that. */
    protected _finished: boolean
    /** streamx's write hook, the message parser: `(data, callback)`, no encoding. */
    _write(data: Uint8Array, callback: unknown): void
    /** Where every outgoing message goes (streamx's `push` unless overridden). */
    protected _push(data: Uint8Array): boolean
    /** Bytes received and not parsed yet: the part of a message still arriving. */
    protected _buffer: Uint8Array[]
    protected _bufferSize: number
    /** Waits for `size` bytes, then calls `parser` with them. */
    protected _parse(size: number, parser: (buffer: Uint8Array) => void): void
    /** The parser of a message's 4-byte length prefix, then of the message itself. */
    protected _onMessageLength(buffer: Uint8Array): void
    protected _onMessage(buffer: Uint8Array): void
    /** What the BEP 10 extended handshake says besides its `m` map (e.g. `reqq`). */
    extendedHandshake: Record<string, unknown>
    peerExtendedHandshake: Record<string, unknown>
  }
}

declare module 'bitfield' {
  export default class BitField {
    constructor(size: number)
    set(index: number, value: boolean): void
    get(index: number): boolean
  }
}

declare module 'bencode' {
  const bencode: {
    encode(value: unknown): Uint8Array
    decode(data: Uint8Array, start?: number, end?: number, encoding?: string): unknown
  }
  export default bencode
}
