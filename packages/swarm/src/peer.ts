import type { Socket } from 'node:net'
import { type PeerRole, peerRoleOf } from '@imageswarm/core'
import { queueBytesFor } from './connection-policy.js'
import { PieceSet } from './piece-set.js'
import { RateMeter } from './rate.js'
import type { SocketWire } from './socket-wire.js'
import { BLOCK_LENGTH, LARGE_BLOCK_LENGTH } from './torrent.js'
import type { UploadQueue } from './upload-queue.js'

/**
 * Who the peer guard holds to account for data: the image server and its web seed by
 * these names (they are never banned, and a piece that keeps failing from them means the
 * server's archive changed), any other peer by its peer id.
 */
export const IMAGE_SERVER_SOURCE = 'image-server'
export const WEB_SEED_SOURCE = 'web-seed'

/** One connection to another node of the swarm, after the handshake. */
export class Peer {
  readonly wire: SocketWire
  readonly outgoing: boolean
  /** The remote `ip:port` of the connection. */
  readonly address: string
  /** The remote peer id, 40 hex digits. */
  readonly id: string
  /** What its peer id claims; anyone can claim anything (see `isServer`). */
  readonly role: PeerRole | undefined
  /** This is the image server: the connection we opened to its published seeder address.
   * A peer id's prefix proves nothing; a peer dialled at the server's address is it. */
  readonly isServer: boolean
  /** Its name for the peer guard: `IMAGE_SERVER_SOURCE` for the server, else its id. */
  readonly source: string
  /** The pieces the peer holds (its bitfield and haves, as we count them). */
  pieces: PieceSet
  /** How many of those this node still lacks; the peer is interesting while above 0. */
  wanted = 0
  /** Bytes of our requests to it not answered yet. */
  inflight = 0
  /** The largest request it is sent: imageswarm nodes take large blocks. */
  readonly blockLength: number
  /** Pieces this peer is fetching for us, so its blocks come from one source. */
  readonly assigned = new Set<number>()
  /** Pieces we completed that the peer already holds: their haves only update its count
   * of our pieces, so they wait and leave in one write (see `ArchiveSwarm#pieceHeld`). */
  readonly lateHaves: number[] = []
  /** First-copy seeding: pieces announced to this peer alone, not confirmed yet. */
  readonly revealed = new Set<number>()
  readonly downloadRate = new RateMeter()
  readonly uploadRate = new RateMeter()
  /** Its requests waiting for their answers (set once attached). */
  uploads: UploadQueue | undefined
  /** When it connected, last asked us for a block or last gained a piece: evidence that
   * a peer still downloading is alive (see `LeecherEvidence`). */
  lastActiveAt = Date.now()
  /** When we last unchoked it, or started making it wait for a slot. */
  unchokedAt = 0
  waitingSince = 0
  closed = false

  constructor(options: {
    wire: SocketWire
    outgoing: boolean
    id: string
    pieceCount: number
    isServer?: boolean
  }) {
    this.wire = options.wire
    this.outgoing = options.outgoing
    this.id = options.id
    this.role = peerRoleOf(options.id)
    this.isServer = options.isServer ?? false
    this.source = this.isServer ? IMAGE_SERVER_SOURCE : options.id
    this.blockLength = this.role ? LARGE_BLOCK_LENGTH : BLOCK_LENGTH
    this.address = `${options.wire.socket.remoteAddress}:${options.wire.socket.remotePort}`
    this.pieces = new PieceSet(options.pieceCount)
  }

  get socket(): Socket {
    return this.wire.socket
  }

  /** Bytes of requests to keep in flight to this peer. */
  queueBytes(now = Date.now()): number {
    return queueBytesFor(this.downloadRate.rate(now))
  }

  /** Whether we may send it requests. */
  get canRequest(): boolean {
    return !this.closed && !this.wire.peerChoking && this.wire.amInterested
  }
}
