import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import { IMAGE_NAME_PATTERN } from './image-ref.js'
import { NODE_STATES } from './install-events.js'

/** Where install clients post their status (the dashboard's per-node view). */
export const NODE_STATUS_PATH = '/api/nodes/status'

/** A MAC address as nodes report it: lower case, with colons. */
export const MAC_PATTERN = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/

/**
 * A MAC address written as iPXE (`BOOTIF=${netX/mac}`: `52:54:00:ab:cd:01`), PXELINUX
 * (`01-52-54-00-ab-cd-01`, 01 being Ethernet's hardware type) or by hand (`52-54-00-AB-CD-01`)
 * gives it, as nodes report it (MAC_PATTERN); undefined when it is none of those, such as
 * an iPXE variable left unexpanded.
 *
 * @example
 *   parseMac('01-52-54-00-AB-CD-01') // '52:54:00:ab:cd:01'
 */
export function parseMac(text: string): string | undefined {
  let mac = text.trim().toLowerCase().replace(/-/g, ':')
  if (/^[0-9a-f]{2}(?::[0-9a-f]{2}){6}$/.test(mac)) mac = mac.slice(3)
  return MAC_PATTERN.test(mac) ? mac : undefined
}

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
    /**
     * The MAC address of the NIC the node booted from (the installer's `BOOTIF=`), lower
     * case with colons; sent only when known, so servers before it still take the report.
     */
    mac: z.string().regex(MAC_PATTERN).optional(),
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
 * What a node token looks like: the secret that binds a peer id's status reports to the
 * node that posted first for it (RFC 6750's bearer token characters, 32 to 128 of them).
 * Every post carries it as `Authorization: Bearer <token>`.
 */
export const NODE_TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]{32,128}=*$/

/**
 * A fresh node token: 32 random bytes, base64url (43 characters). A node makes its own
 * and sends it from its first post on, so a reply lost on the way cannot lock it out.
 *
 * @example
 *   const token = makeNodeToken() // 'q3Zk…', matches NODE_TOKEN_PATTERN
 */
export function makeNodeToken(): string {
  return randomBytes(32).toString('base64url')
}

/**
 * The server's answer to an accepted status post. `reportIntervalMs` is how often the
 * node should post progress from now on (state changes still go at once): the server
 * spreads thousands of nodes' reports out so that it takes about the same number of
 * posts a second whatever the cluster's size. Servers before it answer `{ ok: true }`.
 * `nodeToken` comes with the post that claimed the peer id: the token the node sent, or
 * one the server made when the post carried none. Later posts for that peer id must carry
 * it; without it they get 403.
 */
export const NodeStatusReplySchema = z.object({
  ok: z.literal(true),
  reportIntervalMs: z
    .number()
    .int()
    .min(REPORT_INTERVAL_LIMITS_MS.min)
    .max(REPORT_INTERVAL_LIMITS_MS.max)
    .optional(),
  nodeToken: z.string().regex(NODE_TOKEN_PATTERN).optional(),
})

export type NodeStatusReply = z.output<typeof NodeStatusReplySchema>
