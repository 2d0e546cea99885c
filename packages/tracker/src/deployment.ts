import type { NodeState } from '@imageswarm/core'
import type { NodeRecord } from './node-record.js'

/** States in which a node's install is over: installed (seeding, done) or failed. */
const FINISHED: ReadonlySet<NodeState> = new Set(['seeding', 'done', 'failed'])

/** One node's part in a deployment: a row of its export. */
export interface DeploymentNode {
  peerId: string
  /** The host name the node reported. */
  node: string | null
  mac: string | null
  /** Its IP address, without the (ephemeral) port. */
  address: string | null
  state: NodeState
  /** Went silent (for `nodeStaleSeconds`) before its install finished: crashed, rebooted or cut off. */
  lost: boolean
  error: { code: string; message: string } | null
  /** Epoch milliseconds: first heard from, and when the install finished (installed or failed). */
  started: number
  finished: number | null
  /** Seconds from start to finish; null while it has not finished. */
  seconds: number | null
  bytesFromServer: number
  bytesFromPeers: number
}

/** A deployment at a glance: `GET /api/images/NAME/deployments` lists them, newest first. */
export interface DeploymentSummary {
  /** Counts up per image from 1, for as long as the server runs. */
  id: number
  image: string
  infoHash: string
  state: 'running' | 'finished'
  /** Epoch milliseconds. */
  startedAt: number
  endedAt: number | null
  /** From the first node's start to the last node's finish (or now, while running). */
  seconds: number
  nodes: number
  /** Nodes by outcome: installed (seeding or done), failed, lost, and still installing. */
  installed: number
  failed: number
  lost: number
  installing: number
  /** Bytes the image server sent during the deployment, and that as copies of the archive. */
  serverBytes: number
  archiveSize: number | null
  copies: number | null
  /** One line for a person: "16 nodes in 74 s, server sent 1.2 copies". */
  text: string
}

/** A deployment with its nodes: the record `…/deployments/ID.json` exports. */
export interface DeploymentRecord extends DeploymentSummary {
  rows: DeploymentNode[]
}

/**
 * What happens to a deployment, as it happens: the image server's console and log show
 * these (`TrackerOptions.onDeployment`). `node-finished` is a node installed or failed.
 */
export type DeploymentEvent =
  | { kind: 'began'; deployment: DeploymentSummary; node: DeploymentNode }
  | { kind: 'node-finished'; deployment: DeploymentSummary; node: DeploymentNode }
  | { kind: 'ended'; deployment: DeploymentSummary }

interface Member {
  record: DeploymentNode
  lastSeen: number
}

/**
 * One wave of installs of an image: it begins when a node starts installing while no
 * deployment runs, takes every node that starts while it runs, and ends once each of its
 * nodes has finished (installed or failed) or gone silent, and no node has started or
 * finished for `gapMs`. Nodes of one wave (a rack powered on, PXE boots spread over a
 * minute) so land in one deployment, and the next wave in the next.
 */
export class Deployment {
  readonly id: number
  readonly image: string
  readonly infoHash: string
  readonly startedAt: number
  endedAt: number | null = null
  readonly #members = new Map<string, Member>()
  /** The server's upload count for the swarm when the deployment began. */
  readonly #serverAtStart: number
  #serverBytes = 0
  /** The last time a node joined or finished: the gap is counted from here. */
  #lastChange: number

  constructor(id: number, image: string, infoHash: string, now: number, serverBytes: number) {
    this.id = id
    this.image = image
    this.infoHash = infoHash
    this.startedAt = now
    this.#lastChange = now
    this.#serverAtStart = serverBytes
  }

  get running(): boolean {
    return this.endedAt === null
  }

  has(peerId: string): boolean {
    return this.#members.has(peerId)
  }

  /** Takes a node's current state (a member's, or a node joining); its row when it just finished. */
  observe(node: NodeRecord, now: number): DeploymentNode | undefined {
    let member = this.#members.get(node.peerId)
    if (member === undefined) {
      member = {
        lastSeen: now,
        record: {
          peerId: node.peerId,
          node: null,
          mac: null,
          address: null,
          state: node.state,
          lost: false,
          error: null,
          started: node.firstSeen,
          finished: null,
          seconds: null,
          bytesFromServer: 0,
          bytesFromPeers: 0,
        },
      }
      this.#members.set(node.peerId, member)
      if (this.running) this.#lastChange = now
    }
    const { record } = member
    member.lastSeen = node.lastSeen
    record.node = node.node
    record.mac = node.mac
    record.address = node.address
    record.state = node.state
    record.lost = false
    record.error = node.error
    record.bytesFromServer = node.downloadedFromServer
    record.bytesFromPeers = Math.max(0, node.downloaded - node.downloadedFromServer)
    if (record.finished === null && FINISHED.has(node.state)) {
      record.finished = now
      record.seconds = Math.round((now - record.started) / 100) / 10
      if (this.running) this.#lastChange = now
      return { ...record }
    }
    return undefined
  }

  /**
   * Marks silent members lost, counts the server's bytes, and ends the deployment when
   * every member is finished or lost and nothing happened for `gapMs`. True when it ended.
   */
  settle(now: number, serverBytes: number, staleMs: number, gapMs: number): boolean {
    if (!this.running) return false
    this.#serverBytes = Math.max(this.#serverBytes, serverBytes - this.#serverAtStart)
    // Every member is marked (a summary counts the lost ones while others still install).
    let settledAt = this.#lastChange
    let installing = false
    for (const { record, lastSeen } of this.#members.values()) {
      if (record.finished !== null) continue
      record.lost = now - lastSeen > staleMs
      if (record.lost) settledAt = Math.max(settledAt, lastSeen + staleMs)
      else installing = true
    }
    if (installing || now - settledAt < gapMs) return false
    this.endedAt = now
    return true
  }

  summary(now: number, archiveSize: number | null): DeploymentSummary {
    let installed = 0
    let failed = 0
    let lost = 0
    let lastFinish = this.startedAt
    for (const { record } of this.#members.values()) {
      if (record.finished !== null) lastFinish = Math.max(lastFinish, record.finished)
      if (record.state === 'failed') failed += 1
      else if (record.finished !== null) installed += 1
      else if (record.lost) lost += 1
    }
    const nodes = this.#members.size
    const installing = nodes - installed - failed - lost
    const end = this.running && installing > 0 ? now : lastFinish
    const seconds = Math.round((end - this.startedAt) / 100) / 10
    const copies =
      archiveSize === null || archiveSize === 0
        ? null
        : Math.round((this.#serverBytes / archiveSize) * 100) / 100
    return {
      id: this.id,
      image: this.image,
      infoHash: this.infoHash,
      state: this.running ? 'running' : 'finished',
      startedAt: this.startedAt,
      endedAt: this.endedAt,
      seconds,
      nodes,
      installed,
      failed,
      lost,
      installing,
      serverBytes: this.#serverBytes,
      archiveSize,
      copies,
      text: describeDeployment({ nodes, installed, failed, lost, installing, seconds, copies }),
    }
  }

  /** One member's row. */
  row(peerId: string): DeploymentNode | undefined {
    const member = this.#members.get(peerId)
    return member === undefined ? undefined : { ...member.record }
  }

  /** The members, in the order they joined. */
  rows(): DeploymentNode[] {
    return [...this.#members.values()].map(({ record }) => ({ ...record }))
  }
}

function describeDeployment(s: {
  nodes: number
  installed: number
  failed: number
  lost: number
  installing: number
  seconds: number
  copies: number | null
}): string {
  const nodes = `${s.nodes} ${s.nodes === 1 ? 'node' : 'nodes'}`
  const parts = [
    s.installing > 0
      ? `${nodes}, ${s.installing} installing after ${Math.round(s.seconds)} s`
      : `${nodes} in ${Math.round(s.seconds)} s`,
  ]
  if (s.copies !== null) parts.push(`server sent ${s.copies.toFixed(1)} copies`)
  const trouble = [
    s.failed > 0 ? `${s.failed} failed` : '',
    s.lost > 0 ? `${s.lost} lost` : '',
  ].filter(Boolean)
  return parts.join(', ') + (trouble.length > 0 ? ` (${trouble.join(', ')})` : '')
}

/**
 * An image's deployments, newest last, at most `kept` of them: the oldest finished one is
 * dropped first. It outlives a swarm (publishing the image again starts a new swarm, not a
 * new history).
 */
export class DeploymentLog {
  readonly image: string
  readonly #kept: number
  readonly #deployments: Deployment[] = []
  /** Which deployment each member's peer id is in. */
  readonly #byPeer = new Map<string, Deployment>()
  #nextId = 1

  constructor(image: string, kept: number) {
    this.image = image
    this.#kept = kept
  }

  /** The newest deployment, running or finished. */
  get latest(): Deployment | undefined {
    return this.#deployments.at(-1)
  }

  /**
   * Takes a change of a node. A node that reports its status (an imageswarm client) and is
   * still installing joins the running deployment, or begins one; one that finished before
   * it was seen, or a peer that never reports, takes part in none. Returns the deployment
   * the node is in, whether it just began, and the node's row when its install just finished.
   */
  observe(
    node: NodeRecord,
    now: number,
    infoHash: string,
    serverBytes: () => number,
  ): { deployment: Deployment | undefined; began: boolean; finished?: DeploymentNode } {
    const known = this.#byPeer.get(node.peerId)
    if (known !== undefined) {
      const finished = known.observe(node, now)
      return { deployment: known, began: false, ...(finished ? { finished } : {}) }
    }
    if (!node.claimed || FINISHED.has(node.state)) return { deployment: undefined, began: false }
    let deployment = this.latest
    let began = false
    if (deployment === undefined || !deployment.running) {
      deployment = new Deployment(this.#nextId++, this.image, infoHash, now, serverBytes())
      this.#deployments.push(deployment)
      began = true
      this.#trim()
    }
    deployment.observe(node, now)
    this.#byPeer.set(node.peerId, deployment)
    return { deployment, began }
  }

  /** Called at every sample: see `Deployment.settle`. True when the running one ended. */
  settle(now: number, serverBytes: number, staleMs: number, gapMs: number): boolean {
    return this.latest?.settle(now, serverBytes, staleMs, gapMs) ?? false
  }

  deploymentOf(peerId: string): Deployment | undefined {
    return this.#byPeer.get(peerId)
  }

  get(id: number): Deployment | undefined {
    return this.#deployments.find((d) => d.id === id)
  }

  /** Newest first. */
  list(): Deployment[] {
    return [...this.#deployments].reverse()
  }

  #trim(): void {
    while (this.#deployments.length > this.#kept) {
      const dropped = this.#deployments.shift()!
      for (const [peerId, deployment] of this.#byPeer) {
        if (deployment === dropped) this.#byPeer.delete(peerId)
      }
    }
  }
}
