import { NODE_STATES } from '@imageswarm/core'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { StatusOutcome } from './status-intake.js'
import type { SwarmMonitor } from './swarm-monitor.js'

/**
 * The tracker's Prometheus metrics, in a registry of its own (never prom-client's
 * global one, so two trackers in one process, as in tests, do not collide). Swarm
 * gauges are read from the monitor when scraped, so they cost nothing between scrapes.
 */
export class TrackerMetrics {
  readonly registry = new Registry()
  readonly #announces: Counter<'event'>
  readonly #announceSeconds: Histogram
  readonly #statusReports: Counter<'outcome'>

  constructor(monitor: SwarmMonitor) {
    const registers = [this.registry]
    this.#announces = new Counter({
      name: 'imageswarm_tracker_announces_total',
      help: 'Announces answered, by event (started, completed, stopped, update).',
      labelNames: ['event'],
      registers,
    })
    this.#announceSeconds = new Histogram({
      name: 'imageswarm_tracker_announce_duration_seconds',
      help: 'Time from receiving an announce to finishing its reply.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    })
    this.#statusReports = new Counter({
      name: 'imageswarm_status_reports_total',
      help: 'Node status posts, by outcome (accepted, invalid, too_large, unknown_image, forbidden, rate_limited, new_nodes_limited, aborted).',
      labelNames: ['outcome'],
      registers,
    })

    const swarmGauge = (
      name: string,
      help: string,
      read: (summary: ReturnType<SwarmMonitor['summaries']>[number]) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['image'],
        registers,
        collect() {
          this.reset()
          for (const summary of monitor.summaries())
            this.set({ image: summary.image }, read(summary))
        },
      })
    swarmGauge('imageswarm_swarm_seeders', 'Peers with the whole archive.', (s) => s.seeders)
    swarmGauge('imageswarm_swarm_leechers', 'Peers still downloading.', (s) => s.leechers)
    swarmGauge(
      'imageswarm_swarm_completed',
      'Downloads finished since the image was published.',
      (s) => s.completed,
    )
    swarmGauge('imageswarm_swarm_stale_nodes', 'Nodes not heard from lately.', (s) => s.stale)
    swarmGauge(
      'imageswarm_swarm_download_rate_bytes',
      'Bytes per second the nodes receive, from all sources.',
      (s) => s.downloadRate,
    )
    swarmGauge(
      'imageswarm_swarm_offload_ratio',
      'Share of delivered bytes that came from other nodes rather than the server.',
      (s) => s.offload ?? 0,
    )
    new Gauge({
      name: 'imageswarm_swarm_nodes',
      help: 'Nodes by install state.',
      labelNames: ['image', 'state'],
      registers,
      collect() {
        this.reset()
        for (const summary of monitor.summaries()) {
          for (const state of NODE_STATES) {
            this.set({ image: summary.image, state }, summary.states[state])
          }
        }
      },
    })
    // Totals that only grow, but are computed from node records rather than counted as
    // they happen, so they are exposed as gauges (a counter cannot be set).
    new Gauge({
      name: 'imageswarm_swarm_delivered_bytes',
      help: 'Bytes the nodes received, by source (server: its seeder and web seed; peers: other nodes).',
      labelNames: ['image', 'source'],
      registers,
      collect() {
        this.reset()
        for (const summary of monitor.summaries()) {
          this.set({ image: summary.image, source: 'server' }, summary.fromServer)
          this.set({ image: summary.image, source: 'peers' }, summary.fromPeers)
        }
      },
    })
  }

  /** Starts timing an announce; call the result when its reply is finished. */
  announceStarted(event: string | undefined): () => void {
    this.#announces.inc({ event: event || 'update' })
    return this.#announceSeconds.startTimer()
  }

  statusOutcome(outcome: StatusOutcome): void {
    this.#statusReports.inc({ outcome })
  }

  /** The text exposition format, and its content type. */
  async render(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType }
  }
}
