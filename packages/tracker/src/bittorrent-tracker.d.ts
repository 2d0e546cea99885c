// bittorrent-tracker ships no type declarations. These describe the parts of v11 this
// package (and its tests) use, read from server.js, client.js and lib/server/swarm.js.
// They stay internal: no exported type of @imageswarm/tracker mentions them, so the
// built .d.ts files never need this file.

declare module 'bittorrent-tracker/server' {
  import { EventEmitter } from 'node:events'
  import type { IncomingMessage, ServerResponse } from 'node:http'

  /** What lib/server/parse-http.js makes of an announce's query string. */
  export interface AnnounceParams {
    type: 'http' | 'udp' | 'ws'
    action: number
    event?: string
    /** Hex. */
    info_hash: string
    /** Hex. */
    peer_id: string
    ip: string
    port: number
    /** `ip:port` (`[ip]:port` for IPv6); the swarm's key for HTTP peers. */
    addr: string
    /** `Infinity` when the client did not send a number. */
    left: number
    numwant: number
    compact: number
    /** Raw query values: a string, an array when repeated, or absent. */
    uploaded?: unknown
    downloaded?: unknown
    httpReq?: IncomingMessage
    httpRes?: ServerResponse
  }

  /** A peer as lib/server/swarm.js keeps it in its LRU cache. */
  export interface SwarmPeer {
    type: string
    complete: boolean
    /** Hex. */
    peerId: string
    ip: string
    port: number
  }

  /** The `lru` package's cache: entries older than its maxAge are evicted when touched. */
  export interface PeerCache<P> extends EventEmitter {
    readonly keys: string[]
    readonly length: number
    peek(key: string): P | undefined
    get(key: string): P | undefined
    set(key: string, value: P): P
    remove(key: string): P | undefined
  }

  export interface SwarmAnnounceResponse {
    complete: number
    incomplete: number
    peers: SwarmPeer[]
  }

  export type AnnounceCallback = (err: Error | null, response?: SwarmAnnounceResponse) => void

  class Swarm {
    constructor(infoHash: string, server: Server)
    infoHash: string
    complete: number
    incomplete: number
    peers: PeerCache<SwarmPeer>
    announce(params: AnnounceParams, cb?: AnnounceCallback): void
    /** Picks up to `numwant` random peers for a reply (lib/server/swarm.js). */
    _getPeers(numwant: number, ownPeerId: string, isWebRTC: boolean): SwarmPeer[]
  }

  export interface ServerOptions {
    interval?: number
    trustProxy?: boolean
    http?: boolean
    udp?: boolean
    ws?: boolean
    stats?: boolean
    peersCacheLength?: number
    peersCacheTtl?: number
    filter?: (infoHash: string, params: AnnounceParams, cb: (err?: Error | null) => void) => void
  }

  export default class Server extends EventEmitter {
    static Swarm: typeof Swarm
    constructor(opts?: ServerOptions)
    intervalMs: number
    torrents: Record<string, Swarm>
    onHttpRequest(
      req: IncomingMessage,
      res: ServerResponse,
      opts?: { action?: 'announce' | 'scrape'; trustProxy?: boolean },
    ): void
    createSwarm(infoHash: string, cb: (err: Error | null, swarm?: Swarm) => void): void
    getSwarm(infoHash: string, cb: (err: Error | null, swarm?: Swarm) => void): void
    close(cb?: (err?: Error | null) => void): void
  }
}

declare module 'bittorrent-tracker' {
  import { EventEmitter } from 'node:events'

  export interface ClientOptions {
    infoHash: string | Uint8Array
    peerId: string | Uint8Array
    announce: string | string[]
    port: number
    getAnnounceOpts?: () => Record<string, unknown>
  }

  export interface AnnounceOptions {
    uploaded?: number
    downloaded?: number
    left?: number
    numwant?: number
  }

  export class Client extends EventEmitter {
    constructor(opts: ClientOptions)
    start(opts?: AnnounceOptions): void
    stop(opts?: AnnounceOptions): void
    complete(opts?: AnnounceOptions): void
    update(opts?: AnnounceOptions): void
    scrape(opts?: Record<string, unknown>): void
    destroy(cb?: (err?: Error | null) => void): void
  }

  export default Client
}
