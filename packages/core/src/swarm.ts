import { randomBytes } from 'node:crypto'
import { z } from 'zod'

/**
 * Peer ids say who a peer is: the image server's seeder or an install client. Clients
 * use this to count how many bytes came from the server and how many from other nodes
 * (the server's offload is the whole point of a swarm). Azureus-style: `-` + 6 + `-`.
 */
export const PEER_ID_PREFIX = {
  server: '-IS01S0-',
  client: '-IS01C0-',
} as const

export type PeerRole = keyof typeof PEER_ID_PREFIX

/** A fresh 20-byte peer id for a role, as 40 hex digits. */
export function makePeerId(role: PeerRole): string {
  const prefix = Buffer.from(PEER_ID_PREFIX[role], 'latin1')
  return Buffer.concat([prefix, randomBytes(20 - prefix.length)]).toString('hex')
}

/** The role a peer id announces, from its hex form; `undefined` for foreign clients. */
export function peerRoleOf(peerIdHex: string | undefined): PeerRole | undefined {
  if (!peerIdHex) return undefined
  const prefix = Buffer.from(peerIdHex.slice(0, 16), 'hex').toString('latin1')
  if (prefix === PEER_ID_PREFIX.server) return 'server'
  if (prefix === PEER_ID_PREFIX.client) return 'client'
  return undefined
}

/** A rack's name, as a node gives it (`imageswarm.rack=`) and the server's rack map
 * names it: letters, digits and `._:-`, up to 64. */
export const RACK_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/

/**
 * Swarm settings for an install network. The libraries' defaults are made for the
 * public internet; see the README ("Swarm settings") for why each value differs.
 */
export const SwarmSettingsSchema = z.object({
  /** Open peer connections per swarm. Clients made for the internet keep about 50; a
   * LAN node can serve more, and more connections spread rare pieces faster. */
  maxConnections: z.number().int().min(1).max(10_000).default(80),
  /** Upload limit in bytes per second; -1 is unlimited. */
  uploadLimit: z.number().int().min(-1).default(-1),
  /** Download limit in bytes per second; -1 is unlimited. */
  downloadLimit: z.number().int().min(-1).default(-1),
  /** Unchoke slots: how many peers a client uploads to at once; when more want data,
   * the slot held longest rotates every 10 s. The image server serves every client and
   * lets first-copy seeding decide what. */
  // 20, not the internet's 4–10: the swarm simulator and the testbed at N = 16 and 32
  // (docs/benchmarks/swarm/simulation.md) show 10 leaving a node's upload split unevenly,
  // the last nodes waiting for slots: 1.47 → 1.18 × T_min at N = 16 (simulated).
  uploadSlots: z.number().int().min(1).max(10_000).default(20),
  /** The image server announces pieces to each client a few at a time, those the swarm
   * holds fewest copies of, and the next once the client has them (BEP 16 super-seeding),
   * so it sends each piece about once while clients trade the rest. */
  firstCopy: z.boolean().default(true),
  /** The node's rack, told to the tracker with each announce: the tracker then hands out
   * mostly peers of the same rack, and a few of others (see the tracker's peer handout).
   * Unset, the server's rack map decides, or the node is in no rack. */
  rack: z.string().regex(RACK_PATTERN, 'letters, digits and ._:- (up to 64)').optional(),
})

export type SwarmSettings = z.output<typeof SwarmSettingsSchema>
