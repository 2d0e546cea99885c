// The tracker: the real peer handout of packages/tracker (RackPeerIndex, handOutPeers),
// keyed by node id. With rack awareness each node gives its rack with its announce;
// without, none does (the baseline: uniformly random peers).
import { handOutPeers, RackPeerIndex } from '../../../packages/tracker/dist/peer-handout.js'

export class SimTracker {
  #index = new RackPeerIndex()
  #numwant
  #random
  #rackAware

  constructor({ numwant, random, rackAware }) {
    this.#numwant = numwant
    this.#random = random
    this.#rackAware = rackAware
  }

  /** The node announces (it joins the swarm's peers); returns the node ids handed out. */
  announce(node) {
    const key = String(node.id)
    const rack = this.#rackAware && node.rack !== undefined ? `rack-${node.rack}` : undefined
    this.#index.add(key, rack)
    const peers = handOutPeers(this.#index, {
      numwant: this.#numwant,
      rack,
      exclude: key,
      random: this.#random,
    })
    return peers.map(Number)
  }
}
