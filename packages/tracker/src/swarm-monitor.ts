import { type NodeStatusReport, REPORT_INTERVAL_LIMITS_MS } from '@imageswarm/core'
import type { TrackerConfig } from './config.js'
import { type DeploymentEvent, DeploymentLog } from './deployment.js'
import type { ApiError } from './http-reply.js'
import type { AnnounceSighting } from './node-record.js'
import { SwarmState, type SwarmSummary, type TrackerCounts } from './swarm-state.js'

/** What the server's seeder says it uploaded per infohash (the seeder's `stats()`). */
export type ServerUploadSource = () => Iterable<{ infoHash: string; uploaded: number }>

export interface SwarmMonitorOptions {
  config: TrackerConfig
  /** The tracker's seeder and leecher counts for a published infohash. */
  countsOf: (infoHash: string) => TrackerCounts
  serverUpload?: ServerUploadSource | undefined
  /** Told when a deployment begins or ends and when one of its nodes finishes. */
  onDeployment?: ((event: DeploymentEvent) => void) | undefined
  now?: () => number
}

/**
 * The dashboard's model: one `SwarmState` per published image, fed by announces and
 * status posts, sampled into each swarm's history once every `historySampleSeconds`.
 * It holds no timer; the tracker calls `sample()`.
 */
export class SwarmMonitor {
  readonly now: () => number
  readonly #config: TrackerConfig
  readonly #countsOf: (infoHash: string) => TrackerCounts
  readonly #serverUpload: ServerUploadSource | undefined
  readonly #onDeployment: ((event: DeploymentEvent) => void) | undefined
  readonly #byHash = new Map<string, SwarmState>()
  readonly #byImage = new Map<string, SwarmState>()
  /** Each image's deployments, by name: publishing it again keeps its record. */
  readonly #deployments = new Map<string, DeploymentLog>()

  constructor(options: SwarmMonitorOptions) {
    this.#config = options.config
    this.#countsOf = options.countsOf
    this.#serverUpload = options.serverUpload
    this.#onDeployment = options.onDeployment
    this.now = options.now ?? Date.now
  }

  /** Starts (or keeps) the swarm of a published image; `archiveSize` bounds node reports. */
  publish(infoHash: string, image: string, archiveSize?: number): void {
    const existing = this.#byHash.get(infoHash)
    if (existing?.image === image) return
    if (existing !== undefined) this.#byImage.delete(existing.image)
    // Publishing an image again under a new infohash starts a new swarm; the old one's
    // nodes hold an archive that no longer is the image.
    const previous = this.#byImage.get(image)
    if (previous !== undefined) this.#byHash.delete(previous.infoHash)
    const swarm = new SwarmState({
      image,
      infoHash,
      archiveSize,
      now: this.now(),
      maxNodes: this.#config.maxNodesPerSwarm,
      historyPoints: this.#config.historyPoints,
      deployments: this.#deploymentLog(image),
      deploymentGapMs: this.#config.deploymentGapSeconds * 1000,
      onDeployment: this.#onDeployment,
    })
    this.#byHash.set(infoHash, swarm)
    this.#byImage.set(image, swarm)
  }

  unpublish(infoHash: string): void {
    const swarm = this.#byHash.get(infoHash)
    if (swarm === undefined) return
    this.#byHash.delete(infoHash)
    this.#byImage.delete(swarm.image)
  }

  recordAnnounce(infoHash: string, sighting: AnnounceSighting): void {
    this.#byHash.get(infoHash)?.recordAnnounce(sighting, this.now())
  }

  /**
   * The swarm a validated status report is for; an error when this server does not
   * publish its image, or publishes it under another infohash now.
   */
  swarmFor(report: NodeStatusReport): SwarmState | ApiError {
    const swarm = this.#byImage.get(report.image)
    if (swarm === undefined) {
      return {
        status: 404,
        code: 'E_UNKNOWN_IMAGE',
        message: `image ${report.image} is not published on this server`,
        hint: `published: ${[...this.#byImage.keys()].join(', ') || 'none'}`,
      }
    }
    if (swarm.infoHash !== report.infoHash) {
      return {
        status: 409,
        code: 'E_STALE_IMAGE',
        message: `infohash ${report.infoHash} is not image ${report.image}'s; the server publishes it as ${swarm.infoHash}`,
        hint: 'the image was published again since the node fetched its torrent: install again',
      }
    }
    return swarm
  }

  /**
   * How often nodes should post their progress: every second while there are few, and
   * spread out so that all of them together post about `statusPostsPerSecond` times a
   * second (1,000 installing nodes at 100 a second: every 10 s), but never so rarely that
   * a node could look stale (a quarter of `nodeStaleSeconds`). Counted at the last sample.
   */
  statusIntervalMs(): number {
    let reporting = 0
    for (const swarm of this.#byHash.values()) reporting += swarm.reportingNodes
    const { min, max } = REPORT_INTERVAL_LIMITS_MS
    const longest = Math.max(min, Math.min(max, (this.#config.nodeStaleSeconds * 1000) / 4))
    const spread = Math.ceil((1000 * reporting) / this.#config.statusPostsPerSecond)
    return Math.min(longest, Math.max(min, spread))
  }

  /** Takes a history point for every swarm. */
  sample(): void {
    const now = this.now()
    const uploads = new Map<string, number>()
    for (const { infoHash, uploaded } of this.#serverUpload?.() ?? []) {
      uploads.set(infoHash, uploaded)
    }
    for (const swarm of this.#byHash.values()) {
      const uploaded = uploads.get(swarm.infoHash)
      if (uploaded !== undefined) swarm.recordServerUpload(uploaded)
      swarm.sample(now, this.#countsOf(swarm.infoHash), this.#config.nodeStaleSeconds * 1000)
    }
  }

  swarm(image: string): SwarmState | undefined {
    return this.#byImage.get(image)
  }

  swarms(): SwarmState[] {
    return [...this.#byHash.values()]
  }

  summaries(): SwarmSummary[] {
    return this.swarms().map((swarm) => this.summaryOf(swarm))
  }

  summaryOf(swarm: SwarmState): SwarmSummary {
    return swarm.summary(this.#countsOf(swarm.infoHash), this.now())
  }

  #deploymentLog(image: string): DeploymentLog {
    let log = this.#deployments.get(image)
    if (log === undefined) {
      log = new DeploymentLog(image, this.#config.deploymentsKept)
      this.#deployments.set(image, log)
    }
    return log
  }
}
