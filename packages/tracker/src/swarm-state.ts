import { NODE_STATES, type NodeState, type NodeStatusReport, peerRoleOf } from '@imageswarm/core'
import { emptyPoint, History, type HistoryPoint, type HistorySeries } from './history.js'
import { type AnnounceSighting, NodeRecord, type NodeView, TERMINAL_STATES } from './node-record.js'

/** The tracker's own counts for a swarm, from bittorrent-tracker's peer cache. */
export interface TrackerCounts {
  seeders: number
  leechers: number
  completed: number
}

/** One image's swarm at a glance: `GET /api/images` lists one per published image. */
export interface SwarmSummary extends TrackerCounts {
  image: string
  infoHash: string
  /** Epoch milliseconds. */
  publishedAt: number
  /** Archive size in bytes, once a node has reported it. */
  size: number | null
  /** Nodes the dashboard knows, by state; `stale` counts across states. */
  nodes: number
  states: Record<NodeState, number>
  stale: number
  /** Bytes the nodes received in all, and from where. */
  delivered: number
  fromServer: number
  fromPeers: number
  /** Share of delivered bytes that came from other nodes rather than the server; null before any. */
  offload: number | null
  /** Bytes the nodes sent to others, summed. */
  uploaded: number
  /** Bytes per second over the last few seconds. */
  downloadRate: number
  serverRate: number
  peerRate: number
}

export interface SwarmStateOptions {
  image: string
  infoHash: string
  now: number
  maxNodes: number
  historyPoints: number
}

/** Rates are averaged over this many seconds of cumulative totals: smooth, still live. */
const RATE_WINDOW_MS = 3000

/**
 * Everything the dashboard knows about one image's swarm: each node's install (from
 * announces and status posts), how many bytes came from the server and how many from
 * other nodes, and a bounded history for the charts.
 */
export class SwarmState {
  readonly image: string
  readonly infoHash: string
  readonly publishedAt: number
  readonly history: History
  /** Bumped on every node change; a live view asks for the nodes changed since its last. */
  #version = 0
  /** The version at which a node was last forgotten: views older than that start over. */
  #forgottenAt = 0
  readonly #maxNodes: number
  /** By peer id, least recently heard from first (every touch re-inserts). */
  readonly #nodes = new Map<string, NodeRecord>()
  /** The image server's own peers (its seeder), by peer id: what they uploaded. */
  readonly #serverPeers = new Map<string, number>()
  #serverUploaded = 0
  /** Bytes of forgotten nodes, so totals never go backwards. */
  readonly #forgotten = { downloaded: 0, fromServer: 0, uploaded: 0 }
  readonly #recent: { t: number; fromServer: number; fromPeers: number }[] = []
  #rates = { downloadRate: 0, serverRate: 0, peerRate: 0 }

  constructor(options: SwarmStateOptions) {
    this.image = options.image
    this.infoHash = options.infoHash
    this.publishedAt = options.now
    this.#maxNodes = options.maxNodes
    this.history = new History(options.historyPoints)
  }

  get version(): number {
    return this.#version
  }

  get forgottenAt(): number {
    return this.#forgottenAt
  }

  get nodeCount(): number {
    return this.#nodes.size
  }

  /** Nodes still installing or seeding and not stale, at the last sample: who posts. */
  get reportingNodes(): number {
    const point = this.history.latest()
    if (point === undefined) return 0
    // Terminal nodes are never stale, so the stale ones are all among the others.
    let nodes = -point.stale
    for (const state of NODE_STATES) if (!TERMINAL_STATES.has(state)) nodes += point[state]
    return nodes
  }

  recordAnnounce(sighting: AnnounceSighting, now: number): void {
    if (peerRoleOf(sighting.peerId) === 'server') {
      if (sighting.event === 'stopped') this.#serverPeers.delete(sighting.peerId)
      else this.#serverPeers.set(sighting.peerId, sighting.uploaded)
      return
    }
    const node = this.#touch(sighting.peerId, now)
    node.applyAnnounce(sighting, now)
    node.version = ++this.#version
  }

  recordStatus(report: NodeStatusReport, now: number): void {
    const node = this.#touch(report.peerId, now)
    node.applyStatus(report, now)
    node.version = ++this.#version
  }

  /**
   * What the server's seeder says it uploaded in this swarm, when the server hands that
   * in (fresher than its announces, which come once an interval).
   */
  recordServerUpload(uploaded: number): void {
    this.#serverUploaded = Math.max(this.#serverUploaded, uploaded)
  }

  /** Bytes received by the nodes, in all and from the server. */
  totals(): { delivered: number; fromServer: number; fromPeers: number; uploaded: number } {
    let delivered = this.#forgotten.downloaded
    let reportedFromServer = this.#forgotten.fromServer
    let uploaded = this.#forgotten.uploaded
    for (const node of this.#nodes.values()) {
      delivered += node.downloaded
      reportedFromServer += node.downloadedFromServer
      uploaded += node.uploaded
    }
    let serverUploaded = this.#serverUploaded
    for (const bytes of this.#serverPeers.values()) serverUploaded = Math.max(serverUploaded, bytes)
    // The same bytes counted from both ends, each of which can miss some: nodes that do
    // not post status count nothing from the server, and the seeder's counter misses
    // what the web seed served over HTTP. The larger is the better estimate.
    const fromServer = Math.min(delivered, Math.max(reportedFromServer, serverUploaded))
    return { delivered, fromServer, fromPeers: delivered - fromServer, uploaded }
  }

  /**
   * Takes a history point: marks silent nodes stale, counts nodes by state and works
   * out the rates from the change of the totals over the last few seconds.
   */
  sample(now: number, counts: TrackerCounts, staleMs: number): HistoryPoint {
    const point = emptyPoint(Math.round(now / 100) / 10)
    for (const node of this.#nodes.values()) {
      if (node.checkStale(now, staleMs)) node.version = ++this.#version
      point[node.state] += 1
      if (node.stale) point.stale += 1
    }
    point.installed = point.seeding + point.done
    point.seeders = counts.seeders
    point.leechers = counts.leechers

    const { fromServer, fromPeers } = this.totals()
    this.#recent.push({ t: now, fromServer, fromPeers })
    while (this.#recent.length > 2 && now - this.#recent[1]!.t >= RATE_WINDOW_MS) {
      this.#recent.shift()
    }
    const oldest = this.#recent[0]!
    const seconds = (now - oldest.t) / 1000
    if (seconds > 0) {
      point.serverRate = Math.max(0, (fromServer - oldest.fromServer) / seconds)
      point.peerRate = Math.max(0, (fromPeers - oldest.fromPeers) / seconds)
      point.downloadRate = point.serverRate + point.peerRate
    }
    this.#rates = {
      downloadRate: point.downloadRate,
      serverRate: point.serverRate,
      peerRate: point.peerRate,
    }
    this.history.push(point)
    return point
  }

  summary(counts: TrackerCounts): SwarmSummary {
    const states = Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>
    let stale = 0
    let size: number | null = null
    for (const node of this.#nodes.values()) {
      states[node.state] += 1
      if (node.stale) stale += 1
      if (node.size !== null) size = node.size
    }
    const totals = this.totals()
    return {
      image: this.image,
      infoHash: this.infoHash,
      publishedAt: this.publishedAt,
      ...counts,
      size,
      nodes: this.#nodes.size,
      states,
      stale,
      ...totals,
      offload: totals.delivered > 0 ? totals.fromPeers / totals.delivered : null,
      ...this.#rates,
    }
  }

  /** Every node, or only those changed after `sinceVersion`. */
  nodes(now: number, sinceVersion = 0): NodeView[] {
    const views: NodeView[] = []
    for (const node of this.#nodes.values()) {
      if (node.version > sinceVersion) views.push(node.view(now))
    }
    return views
  }

  node(peerId: string, now: number): NodeView | undefined {
    return this.#nodes.get(peerId)?.view(now)
  }

  series(since?: number): HistorySeries {
    return this.history.series(since)
  }

  #touch(peerId: string, now: number): NodeRecord {
    let node = this.#nodes.get(peerId)
    if (node === undefined) {
      node = new NodeRecord(peerId, now)
    } else {
      this.#nodes.delete(peerId)
    }
    this.#nodes.set(peerId, node)
    while (this.#nodes.size > this.#maxNodes) this.#forgetOldest()
    return node
  }

  #forgetOldest(): void {
    const [peerId, node] = this.#nodes.entries().next().value as [string, NodeRecord]
    this.#nodes.delete(peerId)
    this.#forgotten.downloaded += node.downloaded
    this.#forgotten.fromServer += node.downloadedFromServer
    this.#forgotten.uploaded += node.uploaded
    this.#forgottenAt = ++this.#version
  }
}
