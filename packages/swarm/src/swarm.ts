import { EventEmitter } from 'node:events'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  ImageSwarmError,
  type Logger,
  peerRoleOf,
  type SwarmSettings,
  silentLogger,
  type TransferTotals,
} from '@imageswarm/core'
import { Announcer, DEFAULT_ANNOUNCE_INTERVAL_MS } from './announcer.js'
import { Choker, ROTATE_MS } from './choker.js'
import { dialLimit, SERVER_REDIAL_MS } from './connection-policy.js'
import { FirstCopySeeding, type PieceShare } from './first-copy.js'
import type { HostedSwarm, SwarmHost } from './host.js'
import { type LeecherCount, LeecherEvidence } from './leecher-evidence.js'
import { IMAGE_SERVER_SOURCE, Peer, WEB_SEED_SOURCE } from './peer.js'
import { PeerGuard } from './peer-guard.js'
import { type BlockRequest, PieceBuffers, type PieceDownload } from './piece-download.js'
import { PieceAvailability, PiecePicker } from './piece-picker.js'
import { PieceSet } from './piece-set.js'
import { PieceStore } from './piece-store.js'
import { bucketFor, RateMeter, type TokenBucket } from './rate.js'
import { MAX_PEER_REQUESTS, SocketWire } from './socket-wire.js'
import { MAX_REQUEST_LENGTH, pieceLengthOf, type SwarmTorrent } from './torrent.js'
import { type Respond, UploadQueue } from './upload-queue.js'
import { fetchWebSeedPiece, WEB_SEED_CONCURRENCY } from './web-seed.js'

/** A request a peer has not answered in this long is given to another peer. */
const REQUEST_TIMEOUT_MS = 20_000
/** How long the haves a peer does not need (pieces it holds) may wait for one write. */
const LATE_HAVES_MS = 5_000
/** Outgoing connection attempts give up after this long. */
const CONNECT_TIMEOUT_MS = 5_000
/** A piece that fails its check this often with only the image server's data in it (its
 * connection or its web seed) is not what the server's manifest describes: the server's
 * archive changed. One failure could be a read racing a rewrite; a damaged archive once
 * had a client fetch one piece 181 times (224 MB for a 25 MB archive) and never stop. */
const MAX_SERVER_PIECE_FAILURES = 3
/** Downloading nodes the tracker reports and no connection reaches keep a finished node
 * seeding for about three announce intervals, at most this long (see LeecherEvidence). */
const MAX_UNREACHED_GRACE_MS = 60_000

export interface ArchiveSwarmOptions {
  torrent: SwarmTorrent
  /** The archive file: complete for a seeder, the download's destination otherwise. */
  path: string
  /** This node's peer id, 40 hex digits (core's `makePeerId`). */
  peerId: string
  host: SwarmHost
  settings: SwarmSettings
  /** `held`: the file is complete and verified (seeder, cache hit); `scan`: check what an
   * earlier, interrupted download left (resume). */
  existing: 'held' | 'scan'
  /** Announce pieces to each client one at a time, as BEP 16 super-seeding does, so the
   * server's upload goes to pieces no client has yet (the image server's seeder). */
  firstCopy?: boolean
  /** With `firstCopy` and several image servers: this server's share of the first copy. */
  firstCopyShare?: () => PieceShare
  /** The image servers' seeders as each publishes itself (`GET /server.json`, the server's
   * host resolved to an IP): a primary and its mirrors. The swarm dials each, and dials it
   * again when its connection is lost, on its own; the connections it opened there are
   * the peers it treats as the server: their bytes count as "from server", they are never
   * banned, and a piece that keeps failing from them ends the download
   * (`E_SERVER_ARCHIVE_CHANGED`). A peer id with the server's prefix proves nothing. */
  imageServers?: readonly ImageServerEndpoint[]
  /** Dial the peers the tracker hands out. Default: yes, unless this is the image server
   * (a server peer id): clients dial the server, so every client's connection to the
   * server is one the client opened to the server's published address. */
  dialPeers?: boolean
  /** The node's name, told to the tracker with each announce (its rack map may name
   * racks by node name). */
  nodeName?: string | undefined
  /** An upload budget shared with other swarms and the server's web seed (the image
   * server's one `--upload-limit`); default: a bucket of this swarm's own from
   * `settings.uploadLimit`. */
  uploadBucket?: TokenBucket | undefined
  /**
   * The image servers' connections for the trackers' announces and scrapes and the web
   * seeds over HTTPS (fetch's `dispatcher`): the client's, which accept only the certificate
   * the verified key list pins. Plain-HTTP trackers and web seeds, and peer connections,
   * never use it.
   */
  dispatcher?: RequestInit['dispatcher']
  logger?: Logger
}

/** Where an image server's seeder listens: an IP address and port. */
export interface ImageServerEndpoint {
  host: string
  port: number
}

export interface ArchiveSwarmEvents {
  verified: [index: number]
  rejected: [index: number, banned: string[]]
  done: []
  error: [err: Error]
}

/**
 * One node's part in the swarm of one archive: the engine under both the image
 * server's seeder and the install client, written for install networks where every
 * node cooperates. The policy is in `PiecePicker`, `Choker` and `FirstCopySeeding` (no
 * sockets, clock injected); this class does the I/O around them and keeps them informed.
 *
 * - Downloads rarest piece first (random among equals), each piece from one peer while
 *   there are pieces to go round, then from any peer, then, in the endgame, the last
 *   blocks from two peers at once.
 * - Uploads to every interested peer up to `uploadSlots`, rotating slots every 10 s.
 * - With `firstCopy`, tells each client about a few pieces at a time, the ones the swarm
 *   holds fewest copies of, and the next ones once it has them (BEP 16 super-seeding), so
 *   the server sends about one copy and the clients trade the rest.
 * - Checks every piece against its hash, and drops peers that send bad pieces (see
 *   `PeerGuard`); an image server is a connection dialled at its published address
 *   (`imageServers`), never a peer id, and a piece that keeps failing from them ends the
 *   download with `E_SERVER_ARCHIVE_CHANGED`.
 * - Holds only pieces in flight and a small cache in memory, whatever the archive's size,
 *   and at most a message per connection and 256 KiB of answers per peer (see
 *   `SocketWire`, `ReceiveBudget`, `UploadQueue`).
 */
export class ArchiveSwarm extends EventEmitter<ArchiveSwarmEvents> implements HostedSwarm {
  readonly torrent: SwarmTorrent
  readonly infoHash: string
  readonly #options: ArchiveSwarmOptions
  readonly #store: PieceStore
  readonly #logger: Logger
  readonly #peers = new Set<Peer>()
  readonly #connecting = new Set<string>()
  /** Copies of each piece among connected peers. */
  readonly #availability: PieceAvailability
  readonly #picker: PiecePicker<Peer>
  readonly #choker: Choker<Peer>
  /** The image server's seeder only (`firstCopy`). */
  readonly #firstCopy: FirstCopySeeding<Peer> | undefined
  readonly #guard: PeerGuard
  readonly #uploadBucket: TokenBucket | undefined
  readonly #downloadBucket: TokenBucket | undefined
  readonly #downloadRate = new RateMeter()
  readonly #uploadRate = new RateMeter()
  readonly #totals: TransferTotals = { downloaded: 0, downloadedFromServer: 0, uploaded: 0 }
  readonly #webSeeds = new Set<string>()
  readonly #dialPeers: boolean
  /** Failures of each piece with only the image server's data in it. */
  readonly #serverFailures = new Map<number, number>()
  readonly #leecherEvidence = new LeecherEvidence()
  /** Why the download cannot finish, once it cannot. */
  #failure: Error | undefined
  /** Redials of image servers whose connection was lost, by endpoint (`host:port`). */
  readonly #serverDials = new Map<string, NodeJS.Timeout>()
  /** The image server each server connection was dialled at, to dial it again when lost. */
  readonly #serverPeers = new Map<Peer, ImageServerEndpoint>()
  #announcer: Announcer | undefined
  #rotation: NodeJS.Timeout | undefined
  #lateHaves: NodeJS.Timeout | undefined
  #refill: NodeJS.Timeout | undefined
  #closed = false

  private constructor(options: ArchiveSwarmOptions, store: PieceStore) {
    super()
    this.torrent = options.torrent
    this.infoHash = options.torrent.infoHash
    this.#options = options
    this.#store = store
    this.#logger = options.logger ?? silentLogger()
    const { torrent, settings } = options
    this.#availability = new PieceAvailability(torrent.pieces.length)
    this.#picker = new PiecePicker<Peer>({
      have: store.have,
      availability: this.#availability,
      pieceLength: (index) => pieceLengthOf(torrent, index),
      buffers: new PieceBuffers(torrent.pieceLength),
    })
    this.#choker = new Choker<Peer>({
      // The image server serves everyone that asks; first-copy seeding decides what.
      slots: options.firstCopy ? settings.maxConnections : settings.uploadSlots,
      peers: () => this.#peers,
      unchoke: (peer) => peer.wire.unchoke(),
      choke: (peer) => {
        // Choking refuses the requests waiting (BEP 6), so none of them is read or sent.
        peer.uploads?.clear()
        peer.wire.choke()
      },
    })
    this.#firstCopy = options.firstCopy
      ? new FirstCopySeeding<Peer>({
          pieceLength: torrent.pieceLength,
          availability: this.#availability,
          announce: (peer, index) => peer.wire.have(index),
          ...(options.firstCopyShare ? { share: options.firstCopyShare } : {}),
        })
      : undefined
    // The image server and its web seed are never banned (see PeerGuard).
    this.#guard = new PeerGuard(isServerSource)
    this.#dialPeers = options.dialPeers ?? peerRoleOf(options.peerId) !== 'server'
    this.#uploadBucket = options.uploadBucket ?? bucketFor(options.settings.uploadLimit)
    this.#downloadBucket = bucketFor(options.settings.downloadLimit)
  }

  /** Opens the archive, joins the host's port and announces to the tracker. */
  static async start(options: ArchiveSwarmOptions): Promise<ArchiveSwarm> {
    const store = await PieceStore.open(options.path, options.torrent, options.existing)
    const swarm = new ArchiveSwarm(options, store)
    options.host.register(swarm)
    swarm.#rotation = setInterval(() => swarm.#choker.rotate(), ROTATE_MS)
    swarm.#rotation.unref()
    swarm.#lateHaves = setInterval(() => {
      for (const peer of swarm.#peers) swarm.#sendLateHaves(peer)
    }, LATE_HAVES_MS)
    swarm.#lateHaves.unref()
    swarm.#startTracker()
    for (const server of options.imageServers ?? []) swarm.#dialServer(server)
    if (store.have.complete) queueMicrotask(() => swarm.emit('done'))
    return swarm
  }

  get done(): boolean {
    return this.#store.have.complete
  }

  /** Verified bytes held. */
  get verifiedBytes(): number {
    const { have } = this.#store
    const last = this.torrent.pieces.length - 1
    const lastHeld = have.has(last) ? this.torrent.lastPieceLength : this.torrent.pieceLength
    return have.count === 0 ? 0 : (have.count - 1) * this.torrent.pieceLength + lastHeld
  }

  get totals(): TransferTotals {
    return { ...this.#totals }
  }

  get downloadRate(): number {
    return this.#downloadRate.rate()
  }

  get uploadRate(): number {
    return this.#uploadRate.rate()
  }

  get peerCount(): number {
    return this.#peers.size
  }

  /** How many nodes still need this one to seed (see `leecherCount`). */
  async leechers(): Promise<number> {
    return (await this.leecherCount()).count
  }

  /**
   * How many nodes still download this archive, on evidence (see `LeecherEvidence`):
   * connected peers that lack pieces and showed life lately, plus, for about three
   * announce intervals, the downloading nodes the tracker's scrape reports beyond them.
   */
  async leecherCount(): Promise<LeecherCount> {
    const announcer = this.#announcer
    const scraped = announcer ? await announcer.scrape().catch(() => undefined) : undefined
    const intervalMs = announcer?.intervalMs ?? DEFAULT_ANNOUNCE_INTERVAL_MS
    const graceMs = Math.min(3 * intervalMs, MAX_UNREACHED_GRACE_MS)
    // A peer still downloading wants what we hold. The image server looks incomplete to
    // its clients (first-copy seeding shows a few pieces at a time) but never wants any.
    const peers = [...this.#peers].map((peer) => ({
      downloading: !peer.pieces.complete && !peer.isServer && peer.wire.peerInterested,
      lastActiveAt: peer.lastActiveAt,
    }))
    return this.#leecherEvidence.count(Date.now(), peers, scraped, graceMs)
  }

  /** The peers connected now, as `ip:port`, with whether each is the image server. */
  get connections(): { address: string; id: string; isServer: boolean }[] {
    return [...this.#peers].map(({ address, id, isServer }) => ({ address, id, isServer }))
  }

  /** Pieces rejected by their hash check so far. */
  get rejectedPieces(): number {
    return this.#guard.rejected
  }

  // ---- connections ------------------------------------------------------------------

  #startTracker(): void {
    const { torrent, settings } = this.#options
    if (torrent.announce.length === 0) return
    this.#announcer = new Announcer({
      infoHash: this.infoHash,
      peerId: this.#options.peerId,
      announce: torrent.announce,
      port: this.#options.host.port,
      numwant: settings.maxConnections,
      rack: settings.rack,
      nodeName: this.#options.nodeName,
      state: () => ({
        uploaded: this.#totals.uploaded,
        downloaded: this.#totals.downloaded,
        left: this.torrent.length - this.verifiedBytes,
      }),
      onPeer: (address) => {
        if (this.#dialPeers) this.connect(address)
      },
      dispatcher: this.#options.dispatcher,
      logger: this.#logger,
    })
    this.#announcer.start()
  }

  /** Connects to a peer at `ip:port` unless connected already or at the limit (the
   * image server is dialled even then). */
  connect(address: string): void {
    if (this.#closed || this.#connecting.has(address)) return
    const at = address.lastIndexOf(':')
    const host = address.slice(0, at).replace(/^\[|\]$/g, '')
    const port = Number(address.slice(at + 1))
    if (!host || !(port > 0 && port < 65536)) return
    const server = this.#serverEndpoint(host, port)
    if (!server && !this.#mayDial()) return
    for (const peer of this.#peers) if (peer.address === address) return
    this.#connecting.add(address)
    const socket = connect({ host, port, timeout: CONNECT_TIMEOUT_MS })
    this.#options.host.track(socket)
    socket.setNoDelay(true)
    const wire = new SocketWire('tcpOutgoing', socket, this.#options.host.receiveBudget)
    wire.limitBitfield(this.torrent.pieces.length)
    const giveUp = () => {
      this.#connecting.delete(address)
      socket.destroy()
      if (server) this.#scheduleServerDial(server)
    }
    socket.once('timeout', giveUp)
    socket.once('error', giveUp)
    socket.once('close', () => this.#connecting.delete(address))
    wire.on('error', giveUp)
    wire.handshake(this.infoHash, this.#options.peerId, { fast: true })
    wire.once('handshake', (infoHash: string, peerId: string) => {
      this.#connecting.delete(address)
      socket.setTimeout(0)
      if (infoHash !== this.infoHash) return giveUp()
      this.#attach(wire, peerId, true)
    })
  }

  /** Whether another peer may be dialled: under `maxConnections`, and under its dialled
   * share of them (`DIAL_SHARE`). The image server is dialled whatever these say. */
  #mayDial(): boolean {
    const { maxConnections } = this.#options.settings
    if (this.#peers.size + this.#connecting.size >= maxConnections) return false
    let dialled = this.#connecting.size
    for (const peer of this.#peers) if (peer.outgoing && !peer.isServer) dialled++
    return dialled < dialLimit(maxConnections)
  }

  /** The image server whose published seeder address `host:port` is, if any. */
  #serverEndpoint(
    host: string | undefined,
    port: number | undefined,
  ): ImageServerEndpoint | undefined {
    if (host === undefined) return undefined
    return this.#options.imageServers?.find(
      (server) => port === server.port && plainAddress(host) === plainAddress(server.host),
    )
  }

  /** Dials an image server, unless there is nothing to fetch. */
  #dialServer(server: ImageServerEndpoint): void {
    if (this.#closed || this.done || this.#failure) return
    const host = server.host.includes(':') ? `[${server.host}]` : server.host
    this.connect(`${host}:${server.port}`)
  }

  /** Dials an image server again soon: each server on its own, whatever the others do. */
  #scheduleServerDial(server: ImageServerEndpoint): void {
    const key = `${plainAddress(server.host)}:${server.port}`
    if (this.#serverDials.has(key) || this.#closed) return
    const timer = setTimeout(() => {
      this.#serverDials.delete(key)
      this.#dialServer(server)
    }, SERVER_REDIAL_MS)
    timer.unref()
    this.#serverDials.set(key, timer)
  }

  /** A connection the host accepted for this infohash; the handshake is answered here. */
  acceptIncoming(wire: SocketWire, peerId: string): void {
    if (this.#closed || this.#peers.size >= this.#options.settings.maxConnections) {
      wire.socket.destroy()
      return
    }
    wire.limitBitfield(this.torrent.pieces.length)
    wire.handshake(this.infoHash, this.#options.peerId, { fast: true })
    this.#attach(wire, peerId, false)
  }

  #attach(wire: SocketWire, peerId: string, outgoing: boolean): void {
    const { socket } = wire
    // The server is the connection we opened to its published address, whatever id it
    // gives; anything else giving the server's id is an ordinary peer.
    const server = outgoing
      ? this.#serverEndpoint(socket.remoteAddress, socket.remotePort)
      : undefined
    const isServer = server !== undefined
    const source = isServer ? IMAGE_SERVER_SOURCE : peerId
    if (this.#closed || peerId === this.#options.peerId || this.#guard.isBanned(source)) {
      socket.destroy()
      return
    }
    for (const other of this.#peers) {
      if (other.id !== peerId) continue
      // Whoever else uses the server's peer id never displaces the server's connection.
      if (other.isServer !== isServer) {
        if (other.isServer) {
          socket.destroy()
          return
        }
        other.socket.destroy()
        break
      }
      // Two nodes that dial each other at once keep the connection opened by the lower
      // peer id; both ends apply the same rule, so they keep the same one.
      const opener = (o: boolean) => (o ? this.#options.peerId : peerId)
      if (opener(outgoing) < opener(other.outgoing)) {
        other.socket.destroy()
        break
      }
      socket.destroy()
      return
    }
    const peer = new Peer({
      wire,
      outgoing,
      id: peerId,
      pieceCount: this.torrent.pieces.length,
      isServer,
    })
    peer.uploads = new UploadQueue({
      socket,
      read: (index, offset, length) => this.#store.read(index, offset, length),
      bucket: this.#uploadBucket,
    })
    this.#peers.add(peer)
    if (server) this.#serverPeers.set(peer, server)
    wire.setKeepAlive(true)
    wire.setTimeout(REQUEST_TIMEOUT_MS, true)
    socket.once('close', () => this.#detach(peer))
    wire.on('bitfield', () => this.#onBitfield(peer))
    wire.on('have-all', () => this.#onBitfield(peer))
    wire.on('have', (index: number) => this.#onHave(peer, index))
    wire.on('unchoke', () => this.#fill(peer))
    wire.on('interested', () => this.#choker.interested(peer))
    wire.on('uninterested', () => this.#choker.uninterested(peer))
    wire.on('timeout', () => this.#logger.debug({ peer: peer.address }, 'request timed out'))
    wire.on('upload', (bytes: number) => {
      peer.uploadRate.add(bytes)
      this.#totals.uploaded += bytes
      this.#uploadRate.add(bytes)
    })
    wire.on('request', (index: number, offset: number, length: number, respond: Respond) =>
      this.#onRequest(peer, index, offset, length, respond),
    )
    wire.on('cancel', (index: number, offset: number, length: number) =>
      peer.uploads?.cancel(index, offset, length),
    )
    wire.on('dropped', (reason: string, brokeProtocol: boolean) => {
      if (brokeProtocol) this.#guard.ban(peer.source)
      this.#logger.warn(
        { peer: peer.address, peerId: peer.id, reason, banned: brokeProtocol && !peer.isServer },
        brokeProtocol ? 'peer dropped: it broke the protocol' : 'peer dropped',
      )
    })
    this.#sendPieces(peer)
    this.#reveal(peer)
    this.#logger.debug(
      { peer: peer.address, role: peer.role, isServer, outgoing },
      'peer connected',
    )
  }

  #sendPieces(peer: Peer): void {
    const { wire } = peer
    const have = this.#store.have
    if (this.#options.firstCopy || have.count === 0) {
      if (wire.hasFast) wire.haveNone()
    } else if (have.complete && wire.hasFast) {
      wire.haveAll()
    } else {
      wire.bitfield(have.bits)
    }
  }

  #detach(peer: Peer): void {
    if (!this.#peers.delete(peer)) return
    peer.closed = true
    this.#availability.removeAll(peer.pieces)
    this.#firstCopy?.left(peer)
    peer.assigned.clear()
    peer.uploads?.clear()
    const server = this.#serverPeers.get(peer)
    this.#serverPeers.delete(peer)
    if (server) this.#scheduleServerDial(server)
    this.#choker.left(peer)
    // Its unanswered requests fail through their callbacks and free their blocks.
    peer.wire.destroy()
    this.#fillAll()
  }

  // ---- what peers hold ------------------------------------------------------------------

  #onBitfield(peer: Peer): void {
    this.#availability.removeAll(peer.pieces)
    peer.pieces = new PieceSet(this.torrent.pieces.length)
    peer.wanted = 0
    for (let index = 0; index < peer.pieces.size; index++) {
      if (peer.wire.peerPieces.get(index)) this.#countHave(peer, index)
    }
    this.#updateInterest(peer)
  }

  #onHave(peer: Peer, index: number): void {
    if (index >= this.torrent.pieces.length) return
    this.#countHave(peer, index)
    this.#updateInterest(peer)
  }

  #countHave(peer: Peer, index: number): void {
    if (!peer.pieces.add(index)) return
    peer.lastActiveAt = Date.now()
    this.#availability.add(index)
    if (!this.#store.have.has(index)) peer.wanted++
    this.#firstCopy?.confirmed(peer, index, peer.uploadRate.rate())
  }

  #updateInterest(peer: Peer): void {
    if (peer.closed) return
    if (peer.wanted > 0) {
      peer.wire.interested()
      this.#fill(peer)
    } else {
      peer.wire.uninterested()
    }
  }

  // ---- downloading ----------------------------------------------------------------------

  #fillAll(): void {
    for (const peer of this.#peers) this.#fill(peer)
  }

  /** Keeps the peer's request queue full. */
  #fill(peer: Peer): void {
    if (!peer.canRequest || this.#closed || this.#failure) return
    const depth = peer.queueBytes()
    if (peer.inflight >= depth) return
    // One write for all the requests made here, not one system call each.
    peer.socket.cork()
    this.#sendLateHaves(peer)
    try {
      while (peer.inflight < depth) {
        const next = this.#picker.next(peer)
        if (!next) return
        if (!this.#request(peer, next.download, next.request)) return
      }
    } finally {
      process.nextTick(() => peer.socket.uncork())
    }
  }

  #request(peer: Peer, download: PieceDownload, request: BlockRequest): boolean {
    const { length } = request
    // A request not made now is asked again later: only a request made takes its bytes.
    const wait = this.#downloadBucket?.tryTake(length) ?? 0
    if (wait > 0 && !this.#refill) {
      this.#refill = setTimeout(() => {
        this.#refill = undefined
        this.#fillAll()
      }, wait)
    }
    if (wait > 0) return false
    download.asked(request)
    peer.inflight += length
    let answeredAtOnce = false
    let asking = true
    peer.wire.request(download.index, request.offset, length, (err, data) => {
      peer.inflight -= length
      if (err || !data || data.length !== length) download.failed(request)
      else this.#onBlock(peer, download, request, data)
      // A closed or choking wire answers at once with an error: stop asking it then.
      if (asking) answeredAtOnce = true
      else this.#fill(peer)
    })
    asking = false
    return !answeredAtOnce
  }

  #onBlock(peer: Peer, download: PieceDownload, request: BlockRequest, data: Uint8Array): void {
    const useless = download.received(request, data)
    if (!useless) return
    peer.downloadRate.add(data.length)
    this.#countDownload(data.length, peer.isServer)
    for (const other of useless) other.peer.wire.cancel(download.index, other.offset, other.length)
    if (download.complete) void this.#finishPiece(download)
  }

  #countDownload(bytes: number, fromServer: boolean): void {
    this.#totals.downloaded += bytes
    if (fromServer) this.#totals.downloadedFromServer += bytes
    this.#downloadRate.add(bytes)
  }

  async #finishPiece(download: PieceDownload): Promise<void> {
    this.#picker.completed(download, this.#peers)
    const contributors = [...download.contributors].map((peer) => peer.source)
    try {
      await this.#completePiece(download.index, download.data, contributors)
    } catch (err) {
      if (!this.#closed) this.emit('error', err as Error)
    } finally {
      this.#picker.settled(download)
      this.#fillAll()
    }
  }

  /**
   * Checks a downloaded piece against its hash and keeps it, or rejects it and holds
   * `contributors` (peer ids, `IMAGE_SERVER_SOURCE`, `WEB_SEED_SOURCE`) to account.
   * Returns whether it was good.
   */
  async #completePiece(index: number, data: Buffer, contributors: string[]): Promise<boolean> {
    if (!this.#store.verify(index, data)) {
      this.#pieceRejected(index, contributors)
      return false
    }
    if (this.#closed || this.#store.have.has(index)) return true
    await this.#store.write(index, data)
    this.#guard.credit(contributors)
    this.#pieceHeld(index)
    return true
  }

  /**
   * Tells peers about a piece we now hold. A peer that lacks it hears at once, and so does
   * the server, which counts copies for first-copy seeding. To a peer that holds it the
   * have only updates a count, so it waits for the next write to that peer: at N = 32
   * these were almost half of all haves, each a packet of its own through both hosts'
   * network stacks.
   */
  #pieceHeld(index: number): void {
    const complete = this.#store.have.complete
    for (const peer of this.#peers) {
      if (!peer.pieces.has(index) || peer.isServer) peer.wire.have(index)
      else peer.lateHaves.push(index)
      if (complete) this.#sendLateHaves(peer)
      if (peer.pieces.has(index) && --peer.wanted === 0) peer.wire.uninterested()
    }
    this.emit('verified', index)
    if (complete) {
      this.#logger.info({ infoHash: this.infoHash }, 'archive complete')
      this.#announcer?.complete()
      this.emit('done')
    }
  }

  #sendLateHaves(peer: Peer): void {
    const { lateHaves } = peer
    if (lateHaves.length === 0 || peer.closed) return
    peer.socket.cork()
    for (const index of lateHaves) peer.wire.have(index)
    lateHaves.length = 0
    process.nextTick(() => peer.socket.uncork())
  }

  #pieceRejected(index: number, contributors: string[]): void {
    const banned = this.#guard.reject(contributors)
    for (const peer of this.#peers) if (banned.includes(peer.source)) peer.socket.destroy()
    this.#logger.warn({ piece: index, contributors, banned }, 'piece failed verification')
    this.emit('rejected', index, banned)
    // Only the server's data in it, and still wrong: count it against the server's archive.
    if (contributors.length === 0 || !contributors.every(isServerSource)) return
    const failures = (this.#serverFailures.get(index) ?? 0) + 1
    this.#serverFailures.set(index, failures)
    if (failures >= MAX_SERVER_PIECE_FAILURES) this.#fail(this.#archiveChanged(index, failures))
  }

  #archiveChanged(index: number, failures: number): ImageSwarmError {
    const start = index * this.torrent.pieceLength
    const end = start + pieceLengthOf(this.torrent, index)
    return new ImageSwarmError(
      'E_SERVER_ARCHIVE_CHANGED',
      `the image server's archive ${this.torrent.name} no longer matches its manifest: piece ${index} (bytes ${start}–${end - 1}) failed its check ${failures} times with only the server's data in it`,
      {
        operation: 'download archive',
        path: this.torrent.name,
        hint: 'republish the image on the server (imageswarm serve --update-image), or restore the archive it published',
      },
    )
  }

  /** The download cannot finish: stops asking for data and emits `error` once. */
  #fail(err: Error): void {
    if (this.#failure) return
    this.#failure = err
    this.#logger.error({ err: err.message }, 'download cannot finish')
    this.emit('error', err)
  }

  // ---- uploading ------------------------------------------------------------------------

  #onRequest(peer: Peer, index: number, offset: number, length: number, respond: Respond): void {
    peer.lastActiveAt = Date.now()
    // BEP 3 lets a peer queue requests; past what we advertise (`reqq`), they are refused.
    if (peer.wire.peerRequests.length > MAX_PEER_REQUESTS) {
      respond(new Error(`more than ${MAX_PEER_REQUESTS} requests waiting`))
      return
    }
    const pieceLength = index < this.torrent.pieces.length ? pieceLengthOf(this.torrent, index) : 0
    if (
      !this.#store.have.has(index) ||
      length > MAX_REQUEST_LENGTH ||
      length <= 0 ||
      offset + length > pieceLength
    ) {
      respond(new Error('piece not held or request out of range'))
      return
    }
    peer.uploads?.add(index, offset, length, respond)
  }

  /** Uploads waiting, for every peer together: requests not answered yet, bytes written
   * and not yet taken by the kernel (in memory), and peers whose answers wait for them to
   * read what was sent (for tests and diagnostics). */
  get uploadBacklog(): { requests: number; bytesQueued: number; peersAwaitingDrain: number } {
    let requests = 0
    let bytesQueued = 0
    let peersAwaitingDrain = 0
    for (const peer of this.#peers) {
      requests += peer.uploads?.waiting ?? 0
      bytesQueued += peer.socket.writableLength
      if (peer.uploads?.awaitingDrain) peersAwaitingDrain++
    }
    return { requests, bytesQueued, peersAwaitingDrain }
  }

  /** First-copy seeding: tops up the pieces this client has been told of. */
  #reveal(peer: Peer): void {
    if (!peer.closed) this.#firstCopy?.reveal(peer, peer.uploadRate.rate())
  }

  // ---- web seed ---------------------------------------------------------------------------

  /**
   * Also fetches pieces from a BEP 19 web seed (an image server's HTTP URL of the archive).
   * An image server's (`server`, the default) counts as the server: its bytes are "from
   * server", it is never banned, and a piece that keeps failing from it ends the download.
   * Any other (`server: false`: a .torrent's url-list entry no image server given to the
   * node vouches for) is held to account like a peer: one bad piece and it is dropped.
   */
  addWebSeed(url: string, options: { server?: boolean } = {}): void {
    if (this.#webSeeds.has(url)) return
    this.#webSeeds.add(url)
    const source = options.server === false ? `${WEB_SEED_SOURCE} ${url}` : WEB_SEED_SOURCE
    for (let lane = 0; lane < WEB_SEED_CONCURRENCY; lane++) {
      void this.#webSeedLane(url, source).catch((err: Error) =>
        this.#logger.warn({ url, err: err.message }, 'web seed stopped'),
      )
    }
  }

  async #webSeedLane(url: string, source: string): Promise<void> {
    // The pinned connections are TLS to a pinned certificate: for an https web seed only.
    const dispatcher = url.startsWith('https:') ? this.#options.dispatcher : undefined
    const fromServer = isServerSource(source)
    while (!this.#closed && !this.#failure && !this.#store.have.complete) {
      if (this.#guard.isBanned(source)) {
        this.#logger.warn({ url }, 'web seed dropped: it sent a piece that failed verification')
        return
      }
      const index = this.#picker.rarestUnclaimed()
      if (index === -1) {
        await sleep(500)
        continue
      }
      this.#picker.claim(index)
      try {
        const data = await fetchWebSeedPiece(
          url,
          {
            index,
            start: index * this.torrent.pieceLength,
            length: pieceLengthOf(this.torrent, index),
          },
          { timeoutMs: REQUEST_TIMEOUT_MS * 3, dispatcher },
        )
        if (this.#closed) return
        this.#countDownload(data.length, fromServer)
        if (!(await this.#completePiece(index, data, [source]))) {
          this.#logger.warn({ url, piece: index }, 'web seed piece failed verification')
        }
      } catch (err) {
        this.#logger.debug({ url, piece: index, err: String(err) }, 'web seed request failed')
        await sleep(2000)
      } finally {
        this.#picker.release(index)
      }
    }
  }

  // ---- the end ------------------------------------------------------------------------------

  /** Leaves the swarm: tells the tracker, closes every connection and the archive. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#rotation)
    clearInterval(this.#lateHaves)
    clearTimeout(this.#refill)
    for (const timer of this.#serverDials.values()) clearTimeout(timer)
    this.#serverDials.clear()
    this.#options.host.unregister(this)
    await this.#announcer?.stop()
    for (const peer of [...this.#peers]) peer.socket.destroy()
    this.#picker.downloads.clear()
    await this.#store.close()
  }
}

function isServerSource(source: string): boolean {
  return source === IMAGE_SERVER_SOURCE || source === WEB_SEED_SOURCE
}

/** An IP address as `net` reports it and `dns.lookup` gives it, without an IPv4-mapped
 * IPv6 prefix. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address
}
