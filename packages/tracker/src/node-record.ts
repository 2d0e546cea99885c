import { NODE_STATES, type NodeState, type NodeStatusReport, peerRoleOf } from '@imageswarm/core'
import { sameSecret } from './credentials.js'
import { clientNameOf } from './peer-client.js'

/** What one announce says about a peer (see image-swarm.ts). */
export interface AnnounceSighting {
  peerId: string
  address: string
  port: number
  /** Bytes still to download; null when the client did not say. */
  left: number | null
  uploaded: number
  downloaded: number
  event: string | undefined
}

/** One install client as the dashboard shows it: `GET /api/images/NAME/nodes`. */
export interface NodeView {
  peerId: string
  /** The name the node reported (its hostname), or null before its first status post. */
  node: string | null
  /** The MAC of the NIC the node booted from, when it reported one (`BOOTIF=`). */
  mac: string | null
  /** The address it announces and posts from, without the port (which is ephemeral). */
  address: string | null
  port: number | null
  /**
   * `node`: an imageswarm install client. `foreign`: another BitTorrent client in the
   * swarm (aria2, libtorrent, a mirror); it never posts status, so only what its announces
   * say is known, and it is counted apart from the nodes.
   */
  kind: 'node' | 'foreign'
  /** The BitTorrent client its peer id names (`imageswarm`, `libtorrent 2.0.9`), if known. */
  client: string | null
  /** The deployment it took part in (see deployment.ts); null for foreign peers. */
  deployment: number | null
  state: NodeState
  /** Not heard from for `nodeStaleSeconds` while not done or failed. */
  stale: boolean
  error: { code: string; message: string } | null
  /** Share of the archive downloaded, 0 to 1. */
  progress: number
  size: number | null
  downloaded: number
  downloadedFromServer: number
  uploaded: number
  /** Bytes per second. */
  downloadRate: number
  uploadRate: number
  peers: number | null
  /** Seconds until the download completes at the current rate; null when unknown or done. */
  etaSeconds: number | null
  /** Seconds spent in each state so far, the current one included. */
  phaseSeconds: Partial<Record<NodeState, number>>
  /** Epoch milliseconds. */
  stateSince: number
  firstSeen: number
  lastSeen: number
  /** Where the state comes from: the node's own status posts, or only its announces. */
  source: 'status' | 'announce'
}

/** States a node never leaves: it posts no more, and is never stale. */
export const TERMINAL_STATES: ReadonlySet<NodeState> = new Set(['done', 'failed'])

/**
 * The most a node is believed to have downloaded, as a multiple of the archive's size.
 * A node fetches each piece once, plus end-game duplicates and pieces that failed their
 * check (the client gives up on a piece after a few failures), so a real install stays
 * well under it; a report beyond it is clamped, so one node cannot skew the swarm's
 * totals by more than this many archives.
 */
export const MAX_DOWNLOAD_FACTOR = 4

/** The node that claimed a peer id with its first status post, and its secret. */
interface NodeClaim {
  token: string
  address: string
}

/**
 * One node's install, merged from its announces (address, byte counters every
 * interval) and its status posts (state, rates, error, about every second). Status
 * posts win where both speak; a node that never posts still shows from its announces.
 */
export class NodeRecord {
  readonly peerId: string
  /** Bumped on every change, so live updates send only the nodes that changed. */
  version = 0
  node: string | null = null
  mac: string | null = null
  address: string | null = null
  port: number | null = null
  state: NodeState = 'waiting'
  stale = false
  error: { code: string; message: string } | null = null
  size: number | null = null
  downloaded = 0
  downloadedFromServer = 0
  uploaded = 0
  downloadRate = 0
  uploadRate = 0
  peers: number | null = null
  firstSeen: number
  lastSeen: number
  stateSince: number
  #claim: NodeClaim | undefined
  #left: number | null = null
  #announcedAt: number | undefined
  readonly #phaseMs: Partial<Record<NodeState, number>> = {}
  /** The peer id is an imageswarm install client's (core's PEER_ID_PREFIX.client). */
  readonly #clientPrefix: boolean
  /** The BitTorrent client the peer id names: worked out once, every view shows it. */
  readonly #client: string | null

  constructor(peerId: string, now: number) {
    this.peerId = peerId
    this.#clientPrefix = peerRoleOf(peerId) === 'client'
    this.#client = clientNameOf(peerId)
    this.firstSeen = now
    this.lastSeen = now
    this.stateSince = now
  }

  get terminal(): boolean {
    return TERMINAL_STATES.has(this.state)
  }

  /** A node has claimed this peer id with a status post; only it may post for it now. */
  get claimed(): boolean {
    return this.#claim !== undefined
  }

  /**
   * Binds this peer id to the node that posts with `token` (trust on first use), or,
   * posted again with that token, takes the address it now posts from.
   */
  claim(token: string, address: string): void {
    this.#claim = { token, address }
    this.address ??= address
  }

  /** Whether a post with `token` comes from the node that claimed this peer id. */
  accepts(token: string | undefined): boolean {
    return this.#claim !== undefined && token !== undefined && sameSecret(token, this.#claim.token)
  }

  /**
   * Takes what an announce says. Once a node has claimed its peer id, announces from any
   * other address are not its own (anyone can announce any peer id) and change nothing;
   * once it is done or failed, its counters stay as it last reported them. Returns
   * whether the announce was taken.
   */
  applyAnnounce(sighting: AnnounceSighting, now: number, archiveSize: number | null): boolean {
    if (this.#claim !== undefined && sighting.address !== this.#claim.address) return false
    this.address = sighting.address
    this.port = sighting.port
    this.lastSeen = now
    this.stale = false
    if (this.#claim === undefined && !this.terminal) {
      // Without status posts the counters and the rate come from announces: the rate
      // is the change since the last announce.
      const elapsed = this.#announcedAt === undefined ? 0 : (now - this.#announcedAt) / 1000
      if (archiveSize !== null) this.size = archiveSize
      else if (sighting.left !== null && this.size === null)
        this.size = sighting.left + sighting.downloaded
      const downloaded = clampDownloaded(sighting.downloaded, this.size)
      const delta = downloaded - this.downloaded
      this.downloadRate = elapsed > 0 && delta > 0 ? delta / elapsed : 0
      const upDelta = sighting.uploaded - this.uploaded
      this.uploadRate = elapsed > 0 && upDelta > 0 ? upDelta / elapsed : 0
      this.downloaded = downloaded
      this.uploaded = sighting.uploaded
      this.#left = sighting.left
      this.#enter(stateFromAnnounce(sighting), now)
    }
    this.#announcedAt = now
    return true
  }

  /**
   * Takes a status post of the node that claimed this peer id (the caller checked its
   * token). Byte counts are held to what an install of this archive can reach: the
   * archive's size is the published one when known, never what the post says. Once done
   * or failed, nothing a post says changes the record: that state and its counters and
   * error are final.
   */
  applyStatus(report: NodeStatusReport, now: number, archiveSize: number | null): void {
    this.lastSeen = now
    this.stale = false
    if (this.terminal) return
    this.node = report.node
    this.mac = report.mac ?? this.mac
    this.size = archiveSize ?? report.size
    this.downloaded = clampDownloaded(report.downloaded, this.size)
    this.downloadedFromServer = Math.min(report.downloadedFromServer, this.downloaded)
    this.uploaded = report.uploaded
    this.downloadRate = report.downloadRate
    this.uploadRate = report.uploadRate
    this.peers = report.peers
    this.#left = Math.max(0, this.size - this.downloaded)
    if (report.state === 'failed') {
      this.error = report.error ?? { code: 'E_UNKNOWN', message: 'the node reported no error' }
    }
    this.#enter(report.state, now)
  }

  /** Marks the node stale when it has been silent too long; true when that changed it. */
  checkStale(now: number, staleMs: number): boolean {
    const stale = !this.terminal && now - this.lastSeen > staleMs
    if (stale === this.stale) return false
    this.stale = stale
    return true
  }

  /** An imageswarm client (it posts, or announces under the client's prefix), or another. */
  get kind(): 'node' | 'foreign' {
    return this.claimed || this.#clientPrefix ? 'node' : 'foreign'
  }

  view(now: number, deployment: number | null = null): NodeView {
    const phaseSeconds: Partial<Record<NodeState, number>> = {}
    for (const state of NODE_STATES) {
      const ms = (this.#phaseMs[state] ?? 0) + (state === this.state ? now - this.stateSince : 0)
      if (ms > 0) phaseSeconds[state] = Math.round(ms / 100) / 10
    }
    return {
      peerId: this.peerId,
      node: this.node,
      mac: this.mac,
      address: this.address,
      port: this.port,
      kind: this.kind,
      client: this.#client,
      deployment,
      state: this.state,
      stale: this.stale,
      error: this.error,
      progress: this.progress(),
      size: this.size,
      downloaded: this.downloaded,
      downloadedFromServer: this.downloadedFromServer,
      uploaded: this.uploaded,
      downloadRate: this.terminal ? 0 : this.downloadRate,
      uploadRate: this.terminal ? 0 : this.uploadRate,
      peers: this.peers,
      etaSeconds: this.etaSeconds(),
      phaseSeconds,
      stateSince: this.stateSince,
      firstSeen: this.firstSeen,
      lastSeen: this.lastSeen,
      source: this.#claim !== undefined ? 'status' : 'announce',
    }
  }

  progress(): number {
    if (this.state === 'seeding' || this.state === 'done') return 1
    if (this.size === null || this.size === 0) return 0
    return Math.min(1, this.downloaded / this.size)
  }

  etaSeconds(): number | null {
    if (this.state !== 'downloading' && this.state !== 'waiting') return null
    if (this.#left === null || this.downloadRate <= 0) return null
    return Math.round(this.#left / this.downloadRate)
  }

  /**
   * Moves to a reported state. Reports can arrive out of order (two posts in flight)
   * or skip a state that lasted less than a post interval, so any move forward is
   * taken, and of the moves back only the one the client's transition table allows
   * (verifying → downloading, a piece failed its check). Done and failed are final.
   */
  #enter(next: NodeState, now: number): void {
    if (next === this.state || this.terminal) return
    const forward = NODE_STATES.indexOf(next) > NODE_STATES.indexOf(this.state)
    const retry = this.state === 'verifying' && next === 'downloading'
    if (!forward && !retry) return
    this.#phaseMs[this.state] = (this.#phaseMs[this.state] ?? 0) + (now - this.stateSince)
    this.state = next
    this.stateSince = now
  }
}

function clampDownloaded(downloaded: number, size: number | null): number {
  return size === null ? downloaded : Math.min(downloaded, MAX_DOWNLOAD_FACTOR * size)
}

function stateFromAnnounce(sighting: AnnounceSighting): NodeState {
  // A complete peer that leaves has finished; one that leaves early goes stale instead.
  if (sighting.left === 0) return sighting.event === 'stopped' ? 'done' : 'seeding'
  return sighting.downloaded > 0 ? 'downloading' : 'waiting'
}
