// The link model: which capacities a transfer between two hosts crosses, and how flows
// share them (max-min fair, as long-lived TCP flows roughly do).
//
// Resources, numbered: each host's upload and download (host 0 is the image server, on
// the core switch), then each rack's uplink out of the rack and downlink into it. A
// transfer crosses its sender's upload and its receiver's download; between racks, or
// from the server, also the sender rack's uplink (when the sender is in a rack) and the
// receiver rack's downlink.

/**
 * Where each host sits and what its links carry, in bytes per millisecond.
 *
 *   const links = new LinkModel({ hosts: 3, rate: 1250, serverRate: 1250, rackOf: [-1, 0, 1],
 *     racks: 2, uplink: 1250 })
 *   links.path(1, 2) // [1, 5, 6, 9]: 1's upload, 2's download, rack 0 out, rack 1 in
 */
export class LinkModel {
  /**
   * @param {{ hosts: number, rate: number, serverRate: number, rackOf: ArrayLike<number>,
   *   racks: number, uplink: number }} options host 0 is the server; `rackOf[host]` is -1
   *   outside any rack; `uplink` is each rack's capacity in each direction.
   */
  constructor({ hosts, rate, serverRate, rackOf, racks, uplink }) {
    this.hosts = hosts
    this.racks = racks
    this.rackOf = Int32Array.from(rackOf)
    this.capacity = new Float64Array(2 * hosts + 2 * racks)
    this.capacity.fill(rate, 0, 2 * hosts)
    this.capacity[0] = serverRate
    this.capacity.fill(uplink, 2 * hosts)
  }

  /** The resources a transfer from `from` to `to` crosses. */
  path(from, to) {
    const resources = [from, this.hosts + to]
    const a = this.rackOf[from]
    const b = this.rackOf[to]
    if (a !== b) {
      if (a >= 0) resources.push(2 * this.hosts + a)
      if (b >= 0) resources.push(2 * this.hosts + this.racks + b)
    }
    return resources
  }

  /** Whether the transfer leaves its sender's rack or comes from outside every rack (the
   * bytes counted as crossing racks). */
  crossesRacks(from, to) {
    return this.racks > 0 && (this.rackOf[from] !== this.rackOf[to] || this.rackOf[from] < 0)
  }
}

/**
 * Max-min fair rates by progressive filling: the resource whose remaining capacity per
 * unfrozen flow is smallest is saturated, its flows frozen at that share, and the others
 * updated; a heap keeps the resources in bottleneck order, so a solve costs
 * O(flows × resources per flow × log resources). Buffers are kept between solves.
 */
export class MaxMinSolver {
  /** @param {Float64Array} capacity per resource */
  constructor(capacity) {
    this.capacity = capacity
    const count = capacity.length
    this.remaining = new Float64Array(count)
    this.unfrozen = new Int32Array(count)
    this.version = new Uint32Array(count)
    this.start = new Int32Array(count + 1)
    this.fillAt = new Int32Array(count)
    this.members = new Int32Array(1024)
    this.frozen = new Uint8Array(1024)
    this.heap = new BottleneckHeap()
  }

  /**
   * @param {ArrayLike<number>[]} paths each flow's resources
   * @param {Float64Array} rates filled with each flow's rate (length ≥ paths.length)
   */
  solve(paths, rates) {
    const { capacity, remaining, unfrozen, version, start, fillAt, heap } = this
    const flows = paths.length
    if (this.frozen.length < flows) this.frozen = new Uint8Array(2 * flows)
    const frozen = this.frozen
    frozen.fill(0, 0, flows)
    unfrozen.fill(0)
    let links = 0
    for (let f = 0; f < flows; f++) {
      const path = paths[f]
      for (let i = 0; i < path.length; i++) unfrozen[path[i]]++
      links += path.length
    }
    if (this.members.length < links) this.members = new Int32Array(2 * links)
    const members = this.members
    // The flows through each resource, as one array in resource order.
    start[0] = 0
    for (let r = 0; r < unfrozen.length; r++) {
      start[r + 1] = start[r] + unfrozen[r]
      fillAt[r] = start[r]
    }
    for (let f = 0; f < flows; f++) {
      const path = paths[f]
      for (let i = 0; i < path.length; i++) members[fillAt[path[i]]++] = f
    }
    heap.clear()
    for (let r = 0; r < unfrozen.length; r++) {
      if (unfrozen[r] === 0) continue
      remaining[r] = capacity[r]
      version[r]++
      heap.push(capacity[r] / unfrozen[r], r, version[r])
    }
    while (heap.size > 0) {
      const share = heap.topShare()
      const r = heap.topResource()
      const stale = heap.topVersion() !== version[r]
      heap.pop()
      if (stale || unfrozen[r] === 0) continue
      const rate = Math.max(0, share)
      for (let at = start[r]; at < start[r + 1]; at++) {
        const f = members[at]
        if (frozen[f]) continue
        frozen[f] = 1
        rates[f] = rate
        const path = paths[f]
        for (let i = 0; i < path.length; i++) {
          const other = path[i]
          remaining[other] -= rate
          unfrozen[other]--
          if (other !== r && unfrozen[other] > 0) {
            version[other]++
            heap.push(remaining[other] / unfrozen[other], other, version[other])
          }
        }
      }
    }
    return rates
  }
}

/**
 * Max-min fair rates for a few flows, for tests and small uses.
 *
 *   maxMinRates([10, 100, 100], [[0, 1], [0, 2], [1]]) // [5, 5, 95]
 */
export function maxMinRates(capacity, paths) {
  const solver = new MaxMinSolver(Float64Array.from(capacity))
  return Array.from(solver.solve(paths, new Float64Array(paths.length)))
}

/** A binary min-heap of (share, resource, version) in parallel arrays. */
class BottleneckHeap {
  shares = []
  resources = []
  versions = []
  size = 0

  clear() {
    this.size = 0
  }

  topShare() {
    return this.shares[0]
  }

  topResource() {
    return this.resources[0]
  }

  topVersion() {
    return this.versions[0]
  }

  push(share, resource, version) {
    let at = this.size++
    const { shares, resources, versions } = this
    while (at > 0) {
      const parent = (at - 1) >> 1
      if (shares[parent] <= share) break
      shares[at] = shares[parent]
      resources[at] = resources[parent]
      versions[at] = versions[parent]
      at = parent
    }
    shares[at] = share
    resources[at] = resource
    versions[at] = version
  }

  pop() {
    const { shares, resources, versions } = this
    const last = --this.size
    if (last === 0) return
    const share = shares[last]
    const resource = resources[last]
    const version = versions[last]
    let at = 0
    for (;;) {
      let child = 2 * at + 1
      if (child >= last) break
      if (child + 1 < last && shares[child + 1] < shares[child]) child++
      if (shares[child] >= share) break
      shares[at] = shares[child]
      resources[at] = resources[child]
      versions[at] = versions[child]
      at = child
    }
    shares[at] = share
    resources[at] = resource
    versions[at] = version
  }
}
