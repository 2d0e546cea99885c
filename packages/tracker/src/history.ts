import { NODE_STATES, type NodeState } from '@imageswarm/core'

/** The columns of a swarm's history, one value per sample. */
export const HISTORY_COLUMNS = [
  /** When the sample was taken, seconds since the epoch. */
  't',
  /** Bytes per second the nodes received, from all sources. */
  'downloadRate',
  /** Bytes per second the image server delivered (seeder and web seed). */
  'serverRate',
  /** Bytes per second the nodes delivered to each other. */
  'peerRate',
  /** Tracker's view: peers with the whole archive, and those still downloading. */
  'seeders',
  'leechers',
  /** Nodes by state; `installed` is seeding + done (the completion curve). */
  ...NODE_STATES,
  'installed',
  'stale',
] as const

export type HistoryColumn = (typeof HISTORY_COLUMNS)[number]
export type HistoryPoint = Record<HistoryColumn, number>

/** The history as columns of equal length, oldest first: what a chart takes directly. */
export type HistorySeries = Record<HistoryColumn, number[]>

/**
 * A rolling time series of fixed capacity: once full, each new point replaces the
 * oldest, so a server that runs for weeks holds the same memory as one that just
 * started. Columns live in typed arrays (8 bytes a value, no object per point).
 */
export class History {
  readonly capacity: number
  readonly #columns: Record<HistoryColumn, Float64Array>
  /** Index of the next write. */
  #next = 0
  #length = 0

  constructor(capacity: number) {
    this.capacity = capacity
    this.#columns = Object.fromEntries(
      HISTORY_COLUMNS.map((column) => [column, new Float64Array(capacity)]),
    ) as Record<HistoryColumn, Float64Array>
  }

  get length(): number {
    return this.#length
  }

  push(point: HistoryPoint): void {
    for (const column of HISTORY_COLUMNS) this.#columns[column][this.#next] = point[column]
    this.#next = (this.#next + 1) % this.capacity
    this.#length = Math.min(this.#length + 1, this.capacity)
  }

  /** The newest point, or undefined before the first sample. */
  latest(): HistoryPoint | undefined {
    if (this.#length === 0) return undefined
    return this.#pointAt((this.#next - 1 + this.capacity) % this.capacity)
  }

  /** Every point, oldest first, as columns; `since` (epoch seconds) keeps only newer ones. */
  series(since = Number.NEGATIVE_INFINITY): HistorySeries {
    const out = Object.fromEntries(HISTORY_COLUMNS.map((c) => [c, [] as number[]])) as HistorySeries
    const start = (this.#next - this.#length + this.capacity) % this.capacity
    for (let i = 0; i < this.#length; i++) {
      const index = (start + i) % this.capacity
      if (this.#columns.t[index]! <= since) continue
      for (const column of HISTORY_COLUMNS) out[column].push(this.#columns[column][index]!)
    }
    return out
  }

  #pointAt(index: number): HistoryPoint {
    return Object.fromEntries(
      HISTORY_COLUMNS.map((column) => [column, this.#columns[column][index]!]),
    ) as HistoryPoint
  }
}

/** A point with every count at zero, for a swarm's state at time `t`. */
export function emptyPoint(t: number): HistoryPoint {
  const point = Object.fromEntries(HISTORY_COLUMNS.map((c) => [c, 0])) as HistoryPoint
  point.t = t
  return point
}

export function isNodeStateColumn(column: string): column is NodeState {
  return (NODE_STATES as readonly string[]).includes(column)
}
