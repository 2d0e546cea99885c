// Narrow declarations for the parts of webtorrent 3 that imageswarm uses.
declare module 'webtorrent' {
  import { EventEmitter } from 'node:events'

  export interface WebTorrentOptions {
    peerId?: string | Uint8Array
    nodeId?: string
    torrentPort?: number
    maxConns?: number
    dht?: boolean | object
    lsd?: boolean
    utp?: boolean
    natUpnp?: boolean | 'permanent'
    natPmp?: boolean
    webSeeds?: boolean
    tracker?: boolean | { getAnnounceOpts?: () => Record<string, unknown>; [key: string]: unknown }
    downloadLimit?: number
    uploadLimit?: number
    blocklist?: unknown
    seedOutgoingConnections?: boolean
    /** Protocol encryption: 0 off, 1 PE with plaintext fallback (the default), 2 PE only. */
    secure?: 0 | 1 | 2
  }

  export interface TorrentOptions {
    path?: string
    announce?: string[]
    skipVerify?: boolean
    strategy?: 'rarest' | 'sequential'
    private?: boolean
    maxWebConns?: number
    deselect?: boolean
    destroyStoreOnDestroy?: boolean
    storeCacheSlots?: number
    addUID?: boolean
    rootDir?: string
    alwaysChokeSeeders?: boolean
    noPeersIntervalTime?: number
    /** Unchoke slots (default 10). */
    uploads?: number
    /** Skip slow peers for pieces a faster peer has (default true); patches/webtorrent. */
    speedRanking?: boolean
  }

  export interface Wire extends EventEmitter {
    type: 'tcpIncoming' | 'tcpOutgoing' | 'utpIncoming' | 'utpOutgoing' | 'webrtc' | 'webSeed'
    peerId: string | undefined
    remoteAddress: string | undefined
    remotePort: number | undefined
    uploaded: number
    downloaded: number
    peerChoking: boolean
    amChoking: boolean
    isSeeder: boolean
    peerPieces: { get(index: number): boolean }
    destroy(): void
  }

  export interface Torrent extends EventEmitter {
    readonly infoHash: string
    readonly name: string
    readonly length: number
    readonly pieceLength: number
    readonly path: string
    readonly downloaded: number
    readonly uploaded: number
    readonly received: number
    readonly downloadSpeed: number
    readonly uploadSpeed: number
    readonly progress: number
    readonly numPeers: number
    readonly done: boolean
    readonly ready: boolean
    readonly destroyed: boolean
    readonly wires: Wire[]
    readonly pieces: unknown[]
    readonly bitfield: { get(index: number): boolean }
    readonly discovery: EventEmitter | null
    strategy: 'rarest' | 'sequential'
    addWebSeed(url: string): void
    addPeer(peer: string): boolean
    destroy(opts?: { destroyStore?: boolean }, cb?: (err?: Error | null) => void): void
    pause(): void
    resume(): void
  }

  export default class WebTorrent extends EventEmitter {
    constructor(options?: WebTorrentOptions)
    static readonly VERSION: string
    readonly peerId: string
    readonly torrentPort: number
    readonly torrents: Torrent[]
    add(torrentId: unknown, opts?: TorrentOptions, onTorrent?: (torrent: Torrent) => void): Torrent
    seed(input: unknown, opts?: TorrentOptions, onSeed?: (torrent: Torrent) => void): Torrent
    get(torrentId: unknown): Promise<Torrent | null>
    remove(
      torrentId: unknown,
      opts?: { destroyStore?: boolean },
      cb?: (err?: Error) => void,
    ): Promise<void>
    address(): { address: string; family: string; port: number } | null
    throttleDownload(rate: number): boolean | undefined
    throttleUpload(rate: number): boolean | undefined
    destroy(cb?: (err?: Error | null) => void): void
  }
}
