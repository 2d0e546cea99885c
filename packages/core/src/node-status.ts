import { z } from 'zod'
import { IMAGE_NAME_PATTERN } from './image-ref.js'
import { NODE_STATES } from './install-events.js'

/** Where install clients post their status (the dashboard's per-node view). */
export const NODE_STATUS_PATH = '/api/nodes/status'

const bytes = z
  .number()
  .int()
  .nonnegative()
  .max(2 ** 53)

/**
 * What a node tells the server about its install. Announces carry only bytes left and
 * transferred; this adds the phase, rates and the error of a failed node.
 */
export const NodeStatusReportSchema = z
  .object({
    image: z.string().regex(IMAGE_NAME_PATTERN),
    infoHash: z.string().regex(/^[0-9a-f]{40}$/),
    /** The node's BitTorrent peer id, hex: ties the report to the tracker's peer. */
    peerId: z.string().regex(/^[0-9a-f]{40}$/),
    /** A name for the node: its hostname, or what the installer calls it. */
    node: z.string().min(1).max(255),
    state: z.enum(NODE_STATES),
    size: bytes,
    downloaded: bytes,
    downloadedFromServer: bytes,
    uploaded: bytes,
    downloadRate: z.number().nonnegative().max(1e12),
    uploadRate: z.number().nonnegative().max(1e12),
    peers: z.number().int().nonnegative().max(1_000_000),
    error: z
      .object({ code: z.string().max(64), message: z.string().max(2000) })
      .strict()
      .optional(),
  })
  .strict()

export type NodeStatusReport = z.output<typeof NodeStatusReportSchema>

/** Largest status post the server accepts; a report is a few hundred bytes. */
export const NODE_STATUS_MAX_BYTES = 8 * 1024

/** The shortest and longest report interval a server may ask for. */
export const REPORT_INTERVAL_LIMITS_MS = { min: 1000, max: 60_000 } as const

/**
 * The server's answer to an accepted status post. `reportIntervalMs` is how often the
 * node should post progress from now on (state changes still go at once): the server
 * spreads thousands of nodes' reports out so that it takes about the same number of
 * posts a second whatever the cluster's size. Servers before it answer `{ ok: true }`.
 */
export const NodeStatusReplySchema = z.object({
  ok: z.literal(true),
  reportIntervalMs: z
    .number()
    .int()
    .min(REPORT_INTERVAL_LIMITS_MS.min)
    .max(REPORT_INTERVAL_LIMITS_MS.max)
    .optional(),
})

export type NodeStatusReply = z.output<typeof NodeStatusReplySchema>
