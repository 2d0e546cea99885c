// One simulated node (a client, or the image server): the engine's own policy modules
// (PiecePicker, PieceAvailability, Choker, FirstCopySeeding, RateMeter) with a small copy
// of the coordination ArchiveSwarm (packages/swarm/src/swarm.ts) does around them. What
// each part mirrors:
//
//   connect / acceptIncoming / #attach   ArchiveSwarm.connect (with #mayDial: a quarter of
//                                        maxConnections dialled), acceptIncoming, #attach,
//                                        #sendPieces, #dialServer, #scheduleServerDial
//   #countHave / onHave / onBitfield     #countHave, #onHave, #onBitfield
//   #updateInterest / fill / #request    #updateInterest, #fill (depth: Peer.queueBytes),
//                                        #request
//   received (a block arrived)           the request callback in #request, and #onBlock
//   #finishPiece / #pieceHeld            #finishPiece, #completePiece, #pieceHeld
//   the choker's choke callback          Choker `choke`: the uploader drops the requests
//                                        queued at it (UploadQueue.clear)
//   #reveal                              #reveal (FirstCopySeeding on the server)
//
// Three shortcuts change no decision, only the cost (--no-rarest-shortcut turns the first
// two off): ShortcutPicker (below) skips rarestFor's scan when it cannot find a piece;
// `fill` does not ask PiecePicker.next again for a peer it found nothing for while
// nothing it depends on changed (next() has no effects when it finds nothing); a
// finished piece is dropped from the `assigned` of the one peer it was made for.
//
// Left out: hashes and the peer guard (every piece is good), late haves (every have
// goes after one latency), disconnects and request timeouts (no link fails), web seeds.
// Wire messages are closures posted to the run loop, delivered after the latency. The
// modules are imported file by file (packages/swarm/dist/index.js re-exports them, and
// also loads the socket engine and its dependencies).
import { Choker } from '../../../packages/swarm/dist/choker.js'
import {
  dialLimit,
  MIN_QUEUE_BYTES,
  queueBytesFor,
  SERVER_REDIAL_MS,
} from '../../../packages/swarm/dist/connection-policy.js'
import { FirstCopySeeding } from '../../../packages/swarm/dist/first-copy.js'
import { PieceAvailability, PiecePicker } from '../../../packages/swarm/dist/piece-picker.js'
import { PieceSet } from '../../../packages/swarm/dist/piece-set.js'
import { RateMeter } from '../../../packages/swarm/dist/rate.js'
import { LARGE_BLOCK_LENGTH } from '../../../packages/swarm/dist/torrent.js'

/** Blocks carry no bytes: PieceDownload.received copies nothing from an empty array. */
const NO_BYTES = new Uint8Array(0)
const ONE_PEER = [undefined]

/** One end of a connection: `owner`'s view of `remote` (the engine's `Peer`). It is also
 * the flow `owner` → `remote`: the requests `remote` made of `owner`, in order. */
export class SimPeer {
  constructor(owner, remote, pieceCount, outgoing) {
    this.owner = owner
    this.remote = remote
    this.outgoing = outgoing
    this.isServer = remote.isServer
    /** The other end (remote's view of owner), set when both exist. */
    this.mirror = undefined
    this.pieces = new PieceSet(pieceCount)
    this.wanted = 0
    this.inflight = 0
    this.blockLength = LARGE_BLOCK_LENGTH
    this.assigned = new Set()
    this.revealed = new Set()
    this.downloadRate = new RateMeter()
    this.uploadRate = new RateMeter()
    this.unchokedAt = 0
    this.waitingSince = 0
    this.closed = false
    /** Pieces it announced that we lacked, and what `version` and this count were when
     * PiecePicker.next last found nothing for it (fill's shortcut). */
    this.haves = 0
    this.failedAt = -1
    this.failedHaves = -1
    /** Whether `fill` read the download rate yet (the meter's age starts then). */
    this.rateRead = false
    this.amInterested = false
    this.peerChoking = true
    /** Our requests to `remote` not answered yet (the wire's outstanding requests). */
    this.requests = new Set()
    /** `remote`'s requests waiting for our upload (UploadQueue), oldest first. */
    this.queue = []
    this.queueHead = 0
    /** Link model: resources crossed from owner to remote, and whether bytes leave a rack. */
    this.path = owner.world.links.path(owner.id, remote.id)
    this.crossesRacks = owner.world.links.crossesRacks(owner.id, remote.id)
    /** Run loop: this flow's rate (bytes/ms) in the step, the time up to which its bytes
     * are counted, when its current block's last byte goes, its place in the heap. */
    this.rate = 0
    this.mark = 0
    this.nextAt = 0
    this.heapIndex = -1
  }

  get canRequest() {
    return !this.closed && !this.peerChoking && this.amInterested
  }
}

/** A node of the simulated swarm. `world` is the run loop (clock, post, counters). */
export class SimNode {
  constructor(world, { id, rack, isServer, settings }) {
    this.world = world
    this.id = id
    this.rack = rack
    this.isServer = isServer
    this.settings = settings
    const { pieceCount } = world
    this.have = new PieceSet(pieceCount)
    if (isServer) this.have.fill()
    this.peers = new Set()
    this.peerOf = new Map()
    this.connecting = new Set()
    this.finishedAt = 0
    this.startedAt = 0
    this.serverDialPending = false
    /** Counts what can give a peer something new to ask for: units freed, downloads
     * begun (with `SimPeer.haves`, what `fill`'s shortcut checks). */
    this.version = 0
    this.shortcuts = settings.rarestShortcut
    this.availability = new PieceAvailability(pieceCount)
    const Picker = settings.rarestShortcut ? ShortcutPicker : PiecePicker
    this.picker = new Picker({
      have: this.have,
      availability: this.availability,
      pieceLength: world.pieceLengthOf,
      buffers: world.buffers,
      random: world.random,
    })
    const clock = world.clock
    this.choker = new Choker({
      // swarm.ts: the image server serves everyone that asks; first-copy decides what.
      slots: isServer ? settings.serverMaxConnections : settings.uploadSlots,
      peers: () => this.peers,
      unchoke: (peer) => world.post(() => peer.remote.onUnchoke(peer.mirror)),
      choke: (peer) => {
        // Choking drops the requests queued here; the downloader fails them on the choke.
        world.dropped(peer)
        world.post(() => peer.remote.onChoke(peer.mirror))
      },
      clock,
    })
    this.firstCopy = isServer
      ? new FirstCopySeeding({
          pieceLength: world.pieceLength,
          availability: this.availability,
          announce: (peer, index) => world.post(() => peer.remote.onHave(peer.mirror, index)),
          random: world.random,
        })
      : undefined
  }

  get done() {
    return this.have.complete
  }

  // ---- connections ----------------------------------------------------------------------

  /** ArchiveSwarm.connect: unless connected, connecting or at the limit (the server is
   * dialled even then). The dial reaches `target` after one latency. */
  connect(target) {
    if (target === this || this.connecting.has(target.id) || this.peerOf.has(target.id)) return
    if (!target.isServer && !this.#mayDial()) return
    this.connecting.add(target.id)
    this.world.post(() => target.acceptIncoming(this))
  }

  /** #mayDial: under maxConnections, and under its dialled share of them. */
  #mayDial() {
    const { maxConnections } = this.settings
    if (this.peers.size + this.connecting.size >= maxConnections) return false
    let dialled = this.connecting.size
    for (const peer of this.peers) if (peer.outgoing && !peer.isServer) dialled++
    return dialled < dialLimit(maxConnections)
  }

  /** #dialServer: the client dials the server until it holds the archive. */
  dialServer() {
    this.serverDialPending = false
    if (!this.done) this.connect(this.world.server)
  }

  /** acceptIncoming: refused at the connection limit (the dialler hears one latency
   * later); two nodes that dial each other at once keep the first connection made. */
  acceptIncoming(dialer) {
    const world = this.world
    if (this.peers.size >= this.settings.maxConnections || this.peerOf.has(dialer.id)) {
      world.post(() => {
        dialer.connecting.delete(this.id)
        if (this.isServer && !dialer.serverDialPending) {
          dialer.serverDialPending = true
          world.after(SERVER_REDIAL_MS, () => dialer.dialServer())
        }
      })
      return
    }
    const ours = new SimPeer(this, dialer, world.pieceCount, false)
    const theirs = new SimPeer(dialer, this, world.pieceCount, true)
    ours.mirror = theirs
    theirs.mirror = ours
    // The dialler attaches before anything this end sends reaches it (messages keep order).
    world.post(() => {
      dialer.connecting.delete(this.id)
      dialer.#attach(theirs)
    })
    this.#attach(ours)
  }

  #attach(peer) {
    this.peers.add(peer)
    this.peerOf.set(peer.remote.id, peer)
    this.world.connections++
    this.#sendPieces(peer)
    this.#reveal(peer)
  }

  /** #sendPieces: the server (first-copy) and an empty node send none, others a bitfield. */
  #sendPieces(peer) {
    if (this.firstCopy || this.have.count === 0) return
    const held = []
    for (let index = 0; index < this.have.size; index++) if (this.have.has(index)) held.push(index)
    this.world.post(() => peer.remote.onBitfield(peer.mirror, held))
  }

  // ---- what peers hold ------------------------------------------------------------------

  onBitfield(peer, held) {
    this.availability.removeAll(peer.pieces)
    peer.pieces = new PieceSet(this.world.pieceCount)
    peer.wanted = 0
    for (const index of held) this.#countHave(peer, index)
    this.#updateInterest(peer)
  }

  onHave(peer, index) {
    this.#countHave(peer, index)
    this.#updateInterest(peer)
  }

  #countHave(peer, index) {
    if (!peer.pieces.add(index)) return
    this.availability.add(index)
    if (!this.have.has(index)) {
      peer.wanted++
      peer.haves++
    }
    this.firstCopy?.confirmed(peer, index, peer.uploadRate.rate(this.world.now))
  }

  #updateInterest(peer) {
    if (peer.wanted > 0) {
      this.#interested(peer)
      this.fill(peer)
    } else {
      this.#uninterested(peer)
    }
  }

  /** The wire sends `interested` only when the state changes. */
  #interested(peer) {
    if (peer.amInterested) return
    peer.amInterested = true
    this.world.post(() => peer.remote.choker.interested(peer.mirror))
  }

  #uninterested(peer) {
    if (!peer.amInterested) return
    peer.amInterested = false
    this.world.post(() => peer.remote.choker.uninterested(peer.mirror))
  }

  onUnchoke(peer) {
    peer.peerChoking = false
    this.fill(peer)
  }

  /** A choke fails every request not answered (the uploader dropped them). */
  onChoke(peer) {
    peer.peerChoking = true
    for (const request of peer.requests) this.#fail(request)
    peer.requests.clear()
  }

  // ---- downloading ----------------------------------------------------------------------

  fillAll() {
    for (const peer of this.peers) this.fill(peer)
  }

  /** #fill: keeps the peer's request queue at Peer.queueBytes. Below the least depth
   * the rate is read only once there is something to ask (the same depth: reading a
   * rate meter changes nothing but its start, which the first read sets as before). */
  fill(peer) {
    if (!peer.canRequest) return
    let depth = 0
    if (peer.inflight >= MIN_QUEUE_BYTES || !peer.rateRead) {
      depth = this.#depth(peer)
      if (peer.inflight >= depth) return
    }
    // Shortcut: next() found nothing for this peer, and since then no units came free,
    // no download began and the peer announced no piece we lack (see `version`).
    const memo = this.shortcuts && peer.inflight > 0
    if (memo && peer.failedAt === this.version && peer.failedHaves === peer.haves) return
    const picker = this.picker
    picker.asking = peer
    let next = picker.next(peer)
    if (!next) {
      if (memo) {
        peer.failedAt = this.version
        peer.failedHaves = peer.haves
      }
      return
    }
    if (depth === 0) depth = this.#depth(peer)
    for (;;) {
      // The peer a download was made for is the one whose `assigned` holds it.
      if (next.download.madeFor === undefined) {
        next.download.madeFor = peer
        this.version++
      }
      this.#request(peer, next.download, next.request)
      if (peer.inflight >= depth) return
      next = picker.next(peer)
      if (!next) return
    }
  }

  #depth(peer) {
    peer.rateRead = true
    return queueBytesFor(peer.downloadRate.rate(this.world.now))
  }

  #request(peer, download, request) {
    download.asked(request)
    peer.inflight += request.length
    const asked = { peer, download, request, remaining: request.length, dead: false }
    peer.requests.add(asked)
    this.world.requests++
    this.world.post(() => peer.remote.onRequest(peer.mirror, asked))
  }

  /** The request will not be answered (choke, cancel): its units are free again. */
  #fail(asked) {
    if (asked.dead) return
    asked.dead = true
    asked.peer.inflight -= asked.request.length
    asked.download.failed(asked.request)
    this.version++
  }

  /** The last byte of a block arrived from `peer` (the request's callback, #onBlock). */
  received(peer, asked) {
    const world = this.world
    const { download, request } = asked
    asked.dead = true
    peer.inflight -= request.length
    peer.requests.delete(asked)
    const useless = download.received(request, NO_BYTES)
    if (useless) {
      peer.downloadRate.add(request.length, world.now)
      for (const other of useless) {
        // A cancel: its callback fails it at once, and its peer's queue is topped up.
        const otherAsked = findAsked(other)
        if (!otherAsked) continue
        otherAsked.peer.requests.delete(otherAsked)
        this.#fail(otherAsked)
        this.fill(otherAsked.peer)
      }
      if (download.complete) this.#finishPiece(download)
    } else {
      world.duplicateBytes += request.length
    }
    this.fill(peer)
  }

  #finishPiece(download) {
    // completed() drops the piece from every peer's `assigned`; only the peer it was
    // made for has it there (PiecePicker.next), so only that one is passed.
    ONE_PEER[0] = download.madeFor
    this.picker.completed(download, download.madeFor ? ONE_PEER : this.peers)
    this.#pieceHeld(download.index)
    this.picker.settled(download)
    this.fillAll()
  }

  /** #pieceHeld: every peer hears of the piece after one latency. */
  #pieceHeld(index) {
    const world = this.world
    this.have.add(index)
    world.post(() => {
      for (const peer of this.peers) peer.remote.onHave(peer.mirror, index)
    })
    for (const peer of this.peers) {
      if (peer.pieces.has(index) && --peer.wanted === 0) this.#uninterested(peer)
    }
    if (this.have.complete) world.finished(this)
  }

  // ---- uploading ------------------------------------------------------------------------

  /** A request reached us: queued while the peer is unchoked (a choked peer's request
   * is dropped; the choke on its way fails it there). */
  onRequest(peer, asked) {
    if (asked.dead || !peer.unchokedAt) return
    peer.queue.push(asked)
    this.world.activate(peer)
  }

  /** First-copy seeding: tops up the pieces this client has been told of. */
  #reveal(peer) {
    this.firstCopy?.reveal(peer, peer.uploadRate.rate(this.world.now))
  }
}

/**
 * The engine's PiecePicker, with one shortcut that changes no decision: `rarestFor` scans
 * every piece (a closure call each) and, in a swarm where each piece comes from one peer,
 * mostly finds none, because every piece the peer holds that we lack is being fetched
 * already. That is so exactly when the peer's `wanted` count equals the downloads under
 * way of pieces it holds; then -1 is returned without the scan (a scan that finds nothing
 * draws no random numbers, so the run is the same). Off with --no-rarest-shortcut.
 */
class ShortcutPicker extends PiecePicker {
  /** The peer `fill` asks for requests (rarestFor is given only its pieces). */
  asking = undefined

  rarestFor(pieces) {
    const peer = this.asking
    if (peer !== undefined && peer.pieces === pieces) {
      let busy = 0
      for (const index of this.downloads.keys()) if (pieces.has(index)) busy++
      if (busy >= peer.wanted) return -1
    }
    return super.rarestFor(pieces)
  }
}

/** The simulator's record of a BlockRequest: PieceDownload hands back the requests it
 * made useless, and each was recorded on its peer. */
function findAsked(request) {
  for (const asked of request.peer.requests) if (asked.request === request) return asked
  return undefined
}
