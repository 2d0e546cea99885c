import { RACK_PATTERN } from '@imageswarm/core'
import type { AnnounceCallback, AnnounceParams, SwarmPeer } from 'bittorrent-tracker/server'
import Server from 'bittorrent-tracker/server'
import type { AnnounceSighting } from './node-record.js'
import { handOutPeers, RackPeerIndex } from './peer-handout.js'
import type { RackMap } from './rack-map.js'
import type { PeerStats } from './swarm-stats.js'
import { encodeFailure } from './tracker-response.js'

export interface NumwantLimits {
  defaultNumwant: number
  maxNumwant: number
}

/** Told of every answered announce (the dashboard's swarm state listens). */
export type AnnounceObserver = (infoHash: string, sighting: AnnounceSighting) => void

/** What bittorrent-tracker keeps per peer, plus the counters of its last announce. */
type TrackedPeer = SwarmPeer &
  Partial<Pick<PeerStats, 'left' | 'uploaded' | 'downloaded' | 'lastAnnounce'>>

/**
 * One image's swarm: bittorrent-tracker's Swarm (peer cache, seeder and leecher counts)
 * plus what imageswarm needs on top. Swarm is the documented extension point of
 * bittorrent-tracker's server (it is made by `createSwarm`), so this stays within it:
 *
 * - numwant: bittorrent-tracker parses it against module constants (default 50, at most
 *   82) that no option changes; the raw value is still in the request, so it is read
 *   again here against the tracker's own limits.
 * - a client is not handed its own address back (bittorrent-tracker only skips it for
 *   WebRTC peers).
 * - each peer keeps the uploaded/downloaded/left of its last announce, on the cache
 *   entry itself, so it leaves with the peer when the peer stops or expires.
 * - finished downloads are counted; bittorrent-tracker only reports the seeder count.
 * - peers are handed out by rack when the asking node's rack is known (`handOutPeers`):
 *   from the `rack` it announces, else from the server's rack map by its address or the
 *   `node` name it announces.
 */
export class ImageSwarm extends Server.Swarm {
  /** Peers that went from leecher to seeder in this swarm. */
  completed = 0
  readonly #limits: NumwantLimits
  readonly #server: Server
  readonly #observer: AnnounceObserver | undefined
  readonly #rackMap: RackMap | undefined
  readonly #index = new RackPeerIndex()
  /** The announce being answered: its peer's key and rack (announces run one at a time,
   * and bittorrent-tracker stores the peer and picks the reply's peers within it). */
  #asking: { key: string; rack: string | undefined } | undefined

  constructor(
    infoHash: string,
    server: Server,
    limits: NumwantLimits,
    observer?: AnnounceObserver,
    rackMap?: RackMap,
  ) {
    super(infoHash, server)
    this.#server = server
    this.#limits = limits
    this.#observer = observer
    this.#rackMap = rackMap
    // Every entry enters the cache through `set` and leaves through `remove` (the LRU's
    // eviction and expiry call it too), so wrapping both keeps the index exact.
    const peers = this.peers
    const set = peers.set.bind(peers)
    const remove = peers.remove.bind(peers)
    peers.set = (key, value) => {
      this.#index.add(key, this.#asking?.key === key ? this.#asking.rack : this.#index.rackOf(key))
      return set(key, value)
    }
    peers.remove = (key) => {
      this.#index.delete(key)
      return remove(key)
    }
  }

  /**
   * Peers for a reply, picked at random as bittorrent-tracker does (by rack when the
   * asker's is known), from the index instead of `peers.keys`. The same rules: no peer
   * is sent itself, and each kind of peer gets peers of its kind.
   */
  override _getPeers(numwant: number, ownPeerId: string, isWebRTC: boolean): SwarmPeer[] {
    const keys = handOutPeers(this.#index, {
      numwant,
      rack: this.#asking?.rack,
      exclude: this.#asking?.key,
      accept: (key) => {
        const peer = this.peers.peek(key)
        if (peer === undefined) return false
        if (isWebRTC && peer.peerId === ownPeerId) return false
        return isWebRTC === (peer.type === 'ws')
      },
    })
    return keys.map((key) => this.peers.peek(key)!)
  }

  override announce(params: AnnounceParams, cb?: AnnounceCallback): void {
    if (cb === undefined) {
      super.announce(params)
      return
    }
    let answered = false
    try {
      // HTTP peers are keyed by address; WebSocket ones (not served here) by peer id.
      const id = params.type === 'ws' ? params.peer_id : params.addr
      const before = this.peers.peek(id) as TrackedPeer | undefined
      const wasKnown = before !== undefined
      const wasComplete = before?.complete === true
      const wanted = wantedPeers(params, this.#limits)
      // The handout skips the asker's own entry (`exclude`): the wanted number is exact.
      params.numwant = wanted
      this.#asking = { key: id, rack: this.#rackOf(params) }
      super.announce(params, (err, response) => {
        if (err || response === undefined) {
          cb(err ?? new Error('no announce response'))
          return
        }
        const peer = this.peers.peek(id) as TrackedPeer | undefined
        if (peer !== undefined) {
          recordAnnounce(peer, params)
          if (!wasComplete && peer.complete && (wasKnown || params.event === 'completed')) {
            this.completed += 1
          }
        }
        this.#observer?.(this.infoHash, sightingOf(params, peer ?? before))
        response.peers = response.peers
          .filter((other) => !(other.ip === params.ip && other.port === params.port))
          .slice(0, wanted)
        answered = true
        cb(null, response)
      })
      this.#asking = undefined
    } catch (thrown) {
      this.#asking = undefined
      // The caller runs this in a process.nextTick callback, where a throw would end the
      // process. Whatever went wrong fails this one announce instead. A throw from the
      // server's own reply code (after `cb`) cannot go back to it: end the reply here.
      const err = thrown instanceof Error ? thrown : new Error(String(thrown))
      if (!answered) {
        cb(err)
        return
      }
      this.#server.emit('warning', err)
      const res = params.httpRes
      if (res !== undefined && !res.writableEnded) {
        if (!res.headersSent) res.statusCode = 500
        res.end(encodeFailure('internal tracker error'))
      }
    }
  }

  /** The announcing node's rack: the one it gives, else the rack map's for its address
   * or the node name it gives. */
  #rackOf(params: AnnounceParams): string | undefined {
    const query = queryOf(params)
    const given = query.get('rack')
    if (given !== null && RACK_PATTERN.test(given)) return given
    return this.#rackMap?.rackOf(params.ip, query.get('node') ?? undefined)
  }

  /** Every live peer; touching each entry also drops the ones past their TTL. */
  livePeers(): PeerStats[] {
    const peers: PeerStats[] = []
    for (const key of this.peers.keys) {
      const peer = this.peers.peek(key) as TrackedPeer | undefined
      if (peer === undefined) continue
      peers.push({
        peerId: peer.peerId,
        address: peer.ip,
        port: peer.port,
        left: peer.left ?? null,
        uploaded: peer.uploaded ?? 0,
        downloaded: peer.downloaded ?? 0,
        complete: peer.complete,
        lastAnnounce: peer.lastAnnounce ?? 0,
      })
    }
    return peers
  }
}

/** The number of peers to hand out: what the client asked for, within the limits. */
export function wantedPeers(params: AnnounceParams, limits: NumwantLimits): number {
  const raw = queryOf(params).get('numwant')
  if (raw === null || !/^\d+$/.test(raw)) return limits.defaultNumwant
  return Math.min(Number(raw), limits.maxNumwant)
}

/** The announce's raw query: what bittorrent-tracker's parser drops is still there. */
function queryOf(params: AnnounceParams): URLSearchParams {
  const url = params.httpReq?.url ?? ''
  return new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '')
}

function recordAnnounce(peer: TrackedPeer, params: AnnounceParams): void {
  peer.left = Number.isFinite(params.left) && params.left >= 0 ? params.left : null
  // A missing or malformed counter keeps the last good value rather than resetting it.
  peer.uploaded = parseCounter(params.uploaded) ?? peer.uploaded ?? 0
  peer.downloaded = parseCounter(params.downloaded) ?? peer.downloaded ?? 0
  peer.lastAnnounce = Date.now()
}

function parseCounter(value: unknown): number | undefined {
  if (typeof value !== 'string' || !/^\d+$/.test(value)) return undefined
  const n = Number(value)
  return Number.isSafeInteger(n) ? n : undefined
}

function sightingOf(params: AnnounceParams, peer: TrackedPeer | undefined): AnnounceSighting {
  const left = Number.isFinite(params.left) && params.left >= 0 ? params.left : null
  return {
    peerId: params.peer_id,
    address: params.ip,
    port: params.port,
    left: peer?.left ?? left,
    uploaded: parseCounter(params.uploaded) ?? peer?.uploaded ?? 0,
    downloaded: parseCounter(params.downloaded) ?? peer?.downloaded ?? 0,
    event: params.event,
  }
}
