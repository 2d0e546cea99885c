import { PeerIndex } from './peer-index.js'

/**
 * Rack-aware handout: of the peers a node asks for, about this share come from other
 * racks, at least `MIN_CROSS_RACK_PEERS`. Each piece has to enter a rack only once; every
 * other copy inside the rack can travel through its top-of-rack switch alone. With
 * uniformly random peers nearly every connection of a node in a 40-node rack of a
 * 1,000-node cluster leads out of its rack, and an oversubscribed uplink, not the
 * nodes' links, sets the deployment's time (see docs/benchmarks/swarm/simulation.md).
 * Each node dials its cross-rack peers and is dialled by as many, so a rack keeps about
 * twice this many links per node to the rest of the swarm.
 */
export const CROSS_RACK_SHARE = 0.1
export const MIN_CROSS_RACK_PEERS = 2

/** A swarm's peers by key (as the tracker's peer cache keys them), with the rack of each
 * where it is known. */
export class RackPeerIndex {
  readonly #all = new PeerIndex()
  readonly #byRack = new Map<string, PeerIndex>()
  readonly #rackOf = new Map<string, string>()

  get size(): number {
    return this.#all.size
  }

  /** Whether any peer's rack is known: without racks, handouts are uniformly random. */
  get racked(): boolean {
    return this.#byRack.size > 0
  }

  rackOf(key: string): string | undefined {
    return this.#rackOf.get(key)
  }

  /** Adds a peer, or moves it to the rack it now gives. */
  add(key: string, rack: string | undefined): void {
    const before = this.#rackOf.get(key)
    if (this.#all.has(key) && before === rack) return
    if (before !== undefined) this.#leaveRack(key, before)
    this.#all.add(key)
    if (rack === undefined) return
    this.#rackOf.set(key, rack)
    let members = this.#byRack.get(rack)
    if (!members) {
      members = new PeerIndex()
      this.#byRack.set(rack, members)
    }
    members.add(key)
  }

  delete(key: string): void {
    this.#all.delete(key)
    const rack = this.#rackOf.get(key)
    if (rack !== undefined) this.#leaveRack(key, rack)
  }

  /** Every peer, in random order, as many as the caller takes. */
  all(random?: () => number): Generator<string> {
    return this.#all.random(random)
  }

  /** The rack's peers, in random order. */
  inRack(rack: string, random?: () => number): Iterable<string> {
    return this.#byRack.get(rack)?.random(random) ?? []
  }

  #leaveRack(key: string, rack: string): void {
    this.#rackOf.delete(key)
    const members = this.#byRack.get(rack)
    members?.delete(key)
    if (members?.size === 0) this.#byRack.delete(rack)
  }
}

export interface HandoutRequest {
  numwant: number
  /** The asking node's rack, when known. */
  rack?: string | undefined
  /** The asker's own key: never handed back. */
  exclude?: string | undefined
  /** Also skip these (the tracker skips peers of another kind). */
  accept?: ((key: string) => boolean) | undefined
  random?: () => number
}

/**
 * The peers to hand a node: uniformly random when its rack is unknown (or nobody's is);
 * else peers of its own rack for all but `crossRackPeers(numwant)` of the places, and at
 * most that many from other racks, the two mixed (peers whose rack is unknown count as other racks). A
 * small rack does not make up its shortfall from other racks: its nodes just keep fewer
 * connections, which is what keeps the uplinks for pieces entering the rack.
 */
export function handOutPeers(index: RackPeerIndex, request: HandoutRequest): string[] {
  const { numwant, rack, exclude, accept, random } = request
  const wanted = (key: string) => key !== exclude && (accept?.(key) ?? true)
  const picked: string[] = []
  const take = (keys: Iterable<string>, limit: number, also?: (key: string) => boolean) => {
    if (limit <= 0) return
    const until = picked.length + limit
    for (const key of keys) {
      if (!wanted(key) || (also && !also(key))) continue
      picked.push(key)
      if (picked.length >= until) return
    }
  }
  if (numwant <= 0) return picked
  if (rack === undefined || !index.racked) {
    take(index.all(random), numwant)
    return picked
  }
  const cross = crossRackPeers(numwant)
  take(index.inRack(rack, random), numwant - cross)
  take(
    index.all(random),
    Math.min(cross, numwant - picked.length),
    (key) => index.rackOf(key) !== rack,
  )
  // In random order: a node dials only some of what it is handed (a quarter of its
  // connections), and those must include other racks as often as the handout does.
  return shuffle(picked, random ?? Math.random)
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}

/** Places of a handout of `numwant` that go to other racks. */
export function crossRackPeers(numwant: number): number {
  return Math.min(numwant, Math.max(MIN_CROSS_RACK_PEERS, Math.ceil(numwant * CROSS_RACK_SHARE)))
}
