/** One peer as its last announce described it. */
export interface PeerStats {
  /** The 20-byte peer id as 40 hex digits. */
  peerId: string
  address: string
  port: number
  /** Bytes still to download; null when the client did not say. */
  left: number | null
  uploaded: number
  downloaded: number
  /** Has the whole archive (announced `left=0`). */
  complete: boolean
  /** When the peer last announced, in milliseconds since the epoch. */
  lastAnnounce: number
}

/** One published image's swarm. */
export interface SwarmStats {
  image: string
  infoHash: string
  /** Peers with the whole archive. */
  seeders: number
  /** Peers still downloading. */
  leechers: number
  /** Downloads finished since the image was published (peers that went from leecher to seeder). */
  completed: number
  /** Sums over the peers in the swarm now. */
  uploaded: number
  downloaded: number
  peers: PeerStats[]
}

/** A snapshot of every published image's swarm, including swarms no peer has joined yet. */
export interface TrackerStats {
  swarms: SwarmStats[]
}
