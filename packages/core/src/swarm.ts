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

/** A fresh 20-byte peer id for a role, as 40 hex digits (what webtorrent takes). */
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

/**
 * Swarm settings for an install network. The libraries' defaults are made for the
 * public internet; see the README ("Swarm settings") for why each value differs.
 */
export const SwarmSettingsSchema = z.object({
  /** Open peer connections per process. webtorrent's 55 suits the internet; a LAN node
   * can serve more, and more connections spread rare pieces faster. */
  maxConnections: z.number().int().min(1).max(10_000).default(80),
  /** Upload limit in bytes per second; -1 is unlimited. */
  uploadLimit: z.number().int().min(-1).default(-1),
  /** Download limit in bytes per second; -1 is unlimited. */
  downloadLimit: z.number().int().min(-1).default(-1),
  /** Piece selection. Sequential (webtorrent's default) makes clients that start
   * together hold the same pieces and never trade; rarest-first spreads them. */
  strategy: z.enum(['rarest', 'sequential']).default('rarest'),
  /** Unchoke slots per torrent: how many peers a node uploads to at once. webtorrent's
   * 10 suits strangers on the internet; on an install network every node cooperates. */
  uploadSlots: z.number().int().min(1).max(10_000).default(10),
  /** The image server sends each piece to one client while no other client holds it,
   * and refuses requests for pieces the swarm already has (as BEP 16 super-seeding).
   * It cut T_all/T_min from 4.96 to 2.51 at N = 8 in the testbed. A small swarm used to
   * stall for webtorrent's 30 s request timeout at its last piece: the refusals made
   * webtorrent hotswap a block away from the server and then cancel it twice, so it was
   * requested twice from one peer, which answered neither; the webtorrent patch fixes
   * that (see `_hotswap` there), and test/swarm-first-copy.test.ts guards it. */
  firstCopy: z.boolean().default(true),
})

export type SwarmSettings = z.output<typeof SwarmSettingsSchema>

/**
 * The webtorrent client options for a LAN install swarm: no DHT, LSD, UPnP or NAT-PMP
 * (private torrents, one tracker, no NAT on an install network), no uTP (TCP only;
 * its native addon is not built), and the settings above.
 */
export function lanClientOptions(settings: SwarmSettings, role: PeerRole, torrentPort = 0) {
  return {
    peerId: makePeerId(role),
    torrentPort,
    maxConns: settings.maxConnections,
    dht: false,
    lsd: false,
    utp: false,
    natUpnp: false,
    natPmp: false,
    // No protocol encryption (MSE/PE): webtorrent tries it first by default, which costs
    // a Diffie-Hellman exchange per connection and RC4 over every byte, for nothing on
    // an install network. Plain BitTorrent is also what every other client speaks.
    secure: 0,
    downloadLimit: settings.downloadLimit,
    uploadLimit: settings.uploadLimit,
    // Ask the tracker for as many peers as we may connect to (the library asks for 50).
    tracker: { getAnnounceOpts: () => ({ numwant: settings.maxConnections }) },
  } as const
}

/**
 * The webtorrent options for adding an image's torrent on a LAN, for the server's seeder
 * and for install clients alike.
 *
 * `speedRanking: false` (a pnpm patch of webtorrent, see patches/) stops a node from
 * skipping a slow peer for pieces a faster peer also has: in an install swarm the
 * faster peer is the image server, so with it every client fetched nearly everything
 * from the server.
 */
export function lanTorrentOptions(settings: SwarmSettings) {
  return {
    strategy: settings.strategy,
    private: true,
    uploads: settings.uploadSlots,
    speedRanking: false,
  } as const
}
