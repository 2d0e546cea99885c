import { NODE_STATES, type NodeState, type NodeStatusReport, peerRoleOf } from '@imageswarm/core'
import type {
  Deployment,
  DeploymentEvent,
  DeploymentLog,
  DeploymentRecord,
  DeploymentSummary,
} from './deployment.js'
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
  /** Other BitTorrent clients in the swarm (they post no status), not counted in `nodes`. */
  foreign: number
  /** The newest deployment, running or finished; null before the first. */
  deployment: DeploymentSummary | null
  /** Bytes the nodes received in all (at least what the server sent), and from where. */
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
  /** The archive's size in bytes, as published: what nodes' byte counts are held to. */
  archiveSize?: number | undefined
  now: number
  maxNodes: number
  historyPoints: number
  /** The image's deployments; they outlive the swarm (the image published again). */
  deployments: DeploymentLog
  /** Quiet time after a deployment's last node finished before it ends (`deploymentGapSeconds`). */
  deploymentGapMs: number
  /** Told when a deployment begins or ends and when one of its nodes finishes. */
  onDeployment?: ((event: DeploymentEvent) => void) | undefined
}

/**
 * Whether a status post may speak for its peer id (`SwarmState.checkAccess`): it is the
 * node that claimed it, it claims a peer id nobody holds yet, or it is refused.
 */
export type StatusAccess =
  | { kind: 'node' }
  | { kind: 'claim' }
  | { kind: 'refused'; message: string; hint: string }

/** Who sent a status post: its address and the bearer token it carried, if any. */
export interface StatusSender {
  address: string
  token: string | undefined
}

/**
 * The order in which a full node table forgets: nodes known only from announces (anyone
 * can announce any peer id) first, then installing nodes, the least recently heard from
 * (the stale ones) first, then nodes that reported done, and failed nodes last: they are
 * what an administrator comes to the dashboard for.
 */
const KEEP = { announceOnly: 0, installing: 1, done: 2, failed: 3 } as const

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
  readonly #archiveSize: number | null
  /** By peer id, least recently heard from first (every touch re-inserts). */
  readonly #nodes = new Map<string, NodeRecord>()
  /** The same nodes by how much they are worth keeping (`KEEP`), each least recent first. */
  readonly #byKeep: Map<string, NodeRecord>[] = [new Map(), new Map(), new Map(), new Map()]
  /** Announces under the image server's peer-id prefix, by peer id: what they uploaded.
   * Anyone can announce under that prefix, so they count only for a tracker whose server
   * hands in nothing of its own (a tracker run alone). */
  readonly #serverPeers = new Map<string, number>()
  #serverUploaded = 0
  /** The server hands in its own upload count (`recordServerUpload`). */
  #serverReports = false
  /** Bytes of forgotten nodes, so totals never go backwards. */
  readonly #forgotten = { downloaded: 0, fromServer: 0, uploaded: 0 }
  readonly #recent: { t: number; fromServer: number; fromPeers: number }[] = []
  #rates = { downloadRate: 0, serverRate: 0, peerRate: 0 }
  readonly #deployments: DeploymentLog
  readonly #deploymentGapMs: number
  readonly #onDeployment: ((event: DeploymentEvent) => void) | undefined

  constructor(options: SwarmStateOptions) {
    this.image = options.image
    this.infoHash = options.infoHash
    this.publishedAt = options.now
    this.#maxNodes = options.maxNodes
    this.#archiveSize = options.archiveSize ?? null
    this.history = new History(options.historyPoints)
    this.#deployments = options.deployments
    this.#deploymentGapMs = options.deploymentGapMs
    this.#onDeployment = options.onDeployment
  }

  get deployments(): DeploymentLog {
    return this.#deployments
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
    const node = this.#nodes.get(sighting.peerId) ?? new NodeRecord(sighting.peerId, now)
    if (node.applyAnnounce(sighting, now, this.#archiveSize)) this.#keep(node, now)
  }

  /**
   * Who may post a status report for `peerId`: only the node that claimed it with its
   * first post (its token), and a peer id nobody has claimed yet only from the address it
   * announces from, if it has announced (a third host learns peer ids from announces and
   * the API, but cannot post from the node's address). The image server's peer ids are
   * never a node's.
   */
  checkAccess(peerId: string, sender: StatusSender): StatusAccess {
    if (peerRoleOf(peerId) === 'server') {
      return {
        kind: 'refused',
        message: `peer id ${peerId} is the image server's own; no node may report for it`,
        hint: 'a node reports under the peer id it downloads with',
      }
    }
    const node = this.#nodes.get(peerId)
    if (node === undefined) return { kind: 'claim' }
    if (node.claimed) {
      if (node.accepts(sender.token)) return { kind: 'node' }
      return {
        kind: 'refused',
        message: `peer id ${peerId} belongs to the node that first reported for it; this post ${sender.token === undefined ? 'carries no' : 'carries another'} node token`,
        hint: 'only the node itself may report for itself: send its token (from its first post) as Authorization: Bearer <token>',
      }
    }
    if (node.address === sender.address) return { kind: 'claim' }
    return {
      kind: 'refused',
      message: `peer id ${peerId} announces from another address than ${sender.address}; only that host may report for it`,
      hint: 'a node reports from the address it announces from',
    }
  }

  /**
   * Records a status post that `checkAccess` let through: a claim binds the peer id to
   * the sender's token, and every accepted post keeps the address its announces are
   * taken from current.
   */
  recordStatus(report: NodeStatusReport, now: number, sender: StatusSender): void {
    const node = this.#nodes.get(report.peerId) ?? new NodeRecord(report.peerId, now)
    if (sender.token === undefined || (node.claimed && !node.accepts(sender.token))) {
      throw new Error(`status for peer ${report.peerId} recorded without its node token`)
    }
    node.claim(sender.token, sender.address)
    node.applyStatus(report, now, this.#archiveSize)
    this.#keep(node, now)
  }

  /**
   * What the server says it uploaded in this swarm, over BitTorrent and its HTTP web
   * seed, when the server hands that in (fresher than its announces, which come once an
   * interval, and the only count of the web seed's bytes).
   */
  recordServerUpload(uploaded: number): void {
    this.#serverReports = true
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
    // What the server says it sent itself (its seeder and its web seed, counted in its own
    // process) was received, even by a host that reports nothing (a web seed download by
    // curl, a node that does not post status). The server's peer id's announces do not
    // count here: anyone can announce under it.
    delivered = Math.max(delivered, this.#serverUploaded)
    let serverUploaded = this.#serverUploaded
    if (!this.#serverReports) {
      for (const bytes of this.#serverPeers.values()) {
        serverUploaded = Math.max(serverUploaded, bytes)
      }
    }
    // The same bytes counted from both ends, each of which can miss some: nodes that do
    // not post status count nothing from the server, and an announce is up to an interval
    // old. The larger is the better estimate.
    const fromServer = Math.min(delivered, Math.max(reportedFromServer, serverUploaded))
    // What nodes sent went to other nodes, so it cannot exceed what they received: a
    // node's own upload count is not otherwise bounded (a seed serves many).
    return {
      delivered,
      fromServer,
      fromPeers: delivered - fromServer,
      uploaded: Math.min(uploaded, delivered),
    }
  }

  /**
   * Takes a history point: marks silent nodes stale, counts nodes by state and works
   * out the rates from the change of the totals over the last few seconds.
   */
  sample(now: number, counts: TrackerCounts, staleMs: number): HistoryPoint {
    const point = emptyPoint(Math.round(now / 100) / 10)
    for (const node of this.#nodes.values()) {
      if (node.checkStale(now, staleMs)) node.version = ++this.#version
      if (node.kind === 'foreign') continue
      point[node.state] += 1
      if (node.stale) point.stale += 1
    }
    point.installed = point.seeding + point.done
    point.seeders = counts.seeders
    point.leechers = counts.leechers

    const { fromServer, fromPeers } = this.totals()
    if (this.#deployments.settle(now, fromServer, staleMs, this.#deploymentGapMs)) {
      const ended = this.#deployments.latest
      if (ended !== undefined)
        this.#tell({ kind: 'ended', deployment: this.#summaryOf(ended, now) })
    }
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

  summary(counts: TrackerCounts, now = Date.now()): SwarmSummary {
    const states = Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>
    let stale = 0
    let foreign = 0
    let size: number | null = null
    for (const node of this.#nodes.values()) {
      if (node.kind === 'foreign') {
        foreign += 1
        continue
      }
      states[node.state] += 1
      if (node.stale) stale += 1
      if (node.size !== null) size = node.size
    }
    const totals = this.totals()
    const latest = this.#deployments.latest
    return {
      image: this.image,
      infoHash: this.infoHash,
      publishedAt: this.publishedAt,
      ...counts,
      size,
      nodes: this.#nodes.size - foreign,
      states,
      stale,
      foreign,
      deployment: latest === undefined ? null : this.#summaryOf(latest, now),
      ...totals,
      offload: totals.delivered > 0 ? totals.fromPeers / totals.delivered : null,
      ...this.#rates,
    }
  }

  /** Every node, or only those changed after `sinceVersion`. */
  nodes(now: number, sinceVersion = 0): NodeView[] {
    const views: NodeView[] = []
    for (const node of this.#nodes.values()) {
      if (node.version > sinceVersion) views.push(this.#viewOf(node, now))
    }
    return views
  }

  node(peerId: string, now: number): NodeView | undefined {
    const node = this.#nodes.get(peerId)
    return node === undefined ? undefined : this.#viewOf(node, now)
  }

  /** The image's deployments, newest first. */
  deploymentSummaries(now: number): DeploymentSummary[] {
    return this.#deployments.list().map((deployment) => this.#summaryOf(deployment, now))
  }

  #summaryOf(deployment: Deployment, now: number): DeploymentSummary {
    return deployment.summary(now, this.#archiveSize ?? this.#knownSize())
  }

  #tell(event: DeploymentEvent): void {
    this.#onDeployment?.(event)
  }

  /** One deployment with a row per node, or undefined when there is none of that id (any more). */
  deploymentRecord(id: number, now: number): DeploymentRecord | undefined {
    const deployment = this.#deployments.get(id)
    if (deployment === undefined) return undefined
    return { ...this.#summaryOf(deployment, now), rows: deployment.rows() }
  }

  #knownSize(): number | null {
    for (const node of this.#nodes.values()) if (node.size !== null) return node.size
    return null
  }

  #viewOf(node: NodeRecord, now: number): NodeView {
    return node.view(now, this.#deployments.deploymentOf(node.peerId)?.id ?? null)
  }

  series(since?: number): HistorySeries {
    return this.history.series(since)
  }

  /**
   * Files a node that was just heard from as the most recent, under what it is worth
   * keeping now (`KEEP`), and forgets nodes beyond the limit.
   */
  #keep(node: NodeRecord, now: number): void {
    node.version = ++this.#version
    const { peerId } = node
    const { deployment, began, finished } = this.#deployments.observe(
      node,
      now,
      this.infoHash,
      () => this.totals().fromServer,
    )
    if (began && deployment !== undefined) {
      this.#forgetEarlierRuns(deployment)
      const row = deployment.row(peerId)
      if (row !== undefined) {
        this.#tell({ kind: 'began', deployment: this.#summaryOf(deployment, now), node: row })
      }
    }
    if (finished !== undefined && deployment !== undefined) {
      this.#tell({
        kind: 'node-finished',
        deployment: this.#summaryOf(deployment, now),
        node: finished,
      })
    }
    this.#nodes.delete(peerId)
    this.#nodes.set(peerId, node)
    for (const group of this.#byKeep) group.delete(peerId)
    this.#byKeep[keepOf(node)]!.set(peerId, node)
    while (this.#nodes.size > this.#maxNodes) this.#forgetOne()
  }

  /**
   * A new deployment began: the nodes of earlier deployments that are finished, and any
   * node gone silent, leave the live view (they stay in their deployment's record), so the
   * counts are this run's. Nodes still installing or seeding, and other BitTorrent
   * clients, stay.
   */
  #forgetEarlierRuns(deployment: Deployment): void {
    for (const node of [...this.#nodes.values()]) {
      if (node.kind === 'foreign' || deployment.has(node.peerId)) continue
      const earlier = this.#deployments.deploymentOf(node.peerId) !== undefined
      if ((earlier && node.terminal) || node.stale) this.#forget(node)
    }
  }

  /** Forgets the least recently heard node of those least worth keeping. */
  #forgetOne(): void {
    const group = this.#byKeep.find((nodes) => nodes.size > 0)!
    const [, node] = group.entries().next().value as [string, NodeRecord]
    this.#forget(node)
  }

  #forget(node: NodeRecord): void {
    const { peerId } = node
    for (const group of this.#byKeep) group.delete(peerId)
    this.#nodes.delete(peerId)
    this.#forgotten.downloaded += node.downloaded
    this.#forgotten.fromServer += node.downloadedFromServer
    this.#forgotten.uploaded += node.uploaded
    this.#forgottenAt = ++this.#version
  }
}

function keepOf(node: NodeRecord): number {
  if (!node.claimed) return KEEP.announceOnly
  if (node.state === 'failed') return KEEP.failed
  if (node.state === 'done') return KEEP.done
  return KEEP.installing
}
