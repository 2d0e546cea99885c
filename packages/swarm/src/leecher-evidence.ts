/** How recently a connected peer still downloading must have shown life to count. */
export const ACTIVITY_WINDOW_MS = 60_000

/** What the linger decision knows of a connected peer. */
export interface PeerActivity {
  /** It lacks pieces and wants ours (is interested). */
  readonly downloading: boolean
  /** When it connected, last asked us for a block, or last gained a piece. */
  readonly lastActiveAt: number
}

/** How many nodes still need this node to stay, and on what evidence. */
export interface LeecherCount {
  /** Connected peers that still lack pieces and showed life within the window. */
  active: number
  /** Nodes the tracker reports downloading beyond the connected ones. */
  unreached: number
  /** Whether the grace for the unreached ones is over: they no longer count. */
  graceOver: boolean
  /** What keeps the node seeding: `active`, plus `unreached` while the grace lasts. */
  count: number
}

/**
 * Decides how many nodes still download, on evidence a third host cannot make up. The
 * tracker's count of downloading nodes is only announces, which anyone can send (with
 * `left` > 0 and a port nobody answers on) to keep finished nodes seeding for their whole
 * seed time. So a node counts: connected peers that lack pieces and show life (asked us
 * for a block, or gained a piece, within `ACTIVITY_WINDOW_MS`), and, for a grace period
 * (about three announce intervals), the downloading nodes the tracker reports beyond
 * those, which we may simply not have reached yet. Once the grace is over, unreached and
 * idle "downloaders" keep no one. The grace starts when the tracker first reports more
 * than we see connected, and starts again only after it stopped doing so.
 */
export class LeecherEvidence {
  readonly #windowMs: number
  #unreachedSince: number | undefined

  constructor(windowMs = ACTIVITY_WINDOW_MS) {
    this.#windowMs = windowMs
  }

  /**
   * @param trackerIncomplete the tracker's count of downloading nodes (scrape), or
   * undefined when the tracker cannot be asked.
   */
  count(
    now: number,
    peers: Iterable<PeerActivity>,
    trackerIncomplete: number | undefined,
    graceMs: number,
  ): LeecherCount {
    let connected = 0
    let active = 0
    for (const peer of peers) {
      if (!peer.downloading) continue
      connected++
      if (now - peer.lastActiveAt <= this.#windowMs) active++
    }
    const unreached = Math.max(0, (trackerIncomplete ?? 0) - connected)
    if (unreached === 0) this.#unreachedSince = undefined
    else this.#unreachedSince ??= now
    const graceOver = unreached > 0 && now - (this.#unreachedSince ?? now) >= graceMs
    return { active, unreached, graceOver, count: active + (graceOver ? 0 : unreached) }
  }
}
