/**
 * How a node keeps its connections and request queues: numbers and pure functions the
 * engine (`ArchiveSwarm`, `Peer`) and the swarm simulator share.
 */

/** A node dials at most this share of its `maxConnections` and keeps the rest for nodes
 * that dial it. Dialling every peer handed out made the first 80 nodes of a deployment
 * (and the server) a full mesh that refused everyone after them: in the swarm simulator
 * 100 nodes split into 80 and an island of 20 that never finished, as first-copy seeding
 * only ever sends each piece into one of the two (docs/benchmarks/swarm/simulation.md). */
export const DIAL_SHARE = 0.25

/** How soon to dial an image server again after its connection closed, failed or was
 * refused (each server on its own). */
export const SERVER_REDIAL_MS = 2_000

/** Bytes requested and not received yet, per peer: enough to cover this much of the
 * peer's measured rate, so a fast link never waits for a round trip and a slow one does
 * not hoard blocks, within these bounds. */
export const QUEUE_SECONDS = 0.5
export const MIN_QUEUE_BYTES = 256 * 1024
export const MAX_QUEUE_BYTES = 16 * 1024 * 1024

/** Peers a node may have dialled (the image server aside). */
export function dialLimit(maxConnections: number): number {
  return Math.max(1, Math.ceil(maxConnections * DIAL_SHARE))
}

/** Bytes of requests to keep in flight to a peer sending at `rate` bytes/s. */
export function queueBytesFor(rate: number): number {
  return Math.min(MAX_QUEUE_BYTES, Math.max(MIN_QUEUE_BYTES, rate * QUEUE_SECONDS))
}
