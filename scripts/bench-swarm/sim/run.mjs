// The run loop: virtual time in steps of `step` ms while data moves. Each step
//
//   1. runs the timers due (node starts and announces, choker rotations, server redials:
//      at the first step start at or after their time);
//   2. gives every flow (a connection with requests queued at an unchoking uploader) its
//      max-min fair rate over the link model (sim/links.mjs), fixed for the step;
//   3. plays the step's events in time order: a block whose last byte goes out (each
//      flow sends its queued blocks one after another: pipelined requests), and each
//      message (haves, requests, (un)chokes, interest, dials) at its exact time, posted
//      time + latency (never before one posted earlier, so each link keeps its order).
//      A flow that starts within the step takes what its links have left over (the
//      capacity no flow got, and that of flows whose queue ran dry); it gets its fair
//      share from the next step on.
//
// While no flow is active, time goes from one message or timer to the next exactly.
import { ROTATE_MS } from '../../../packages/swarm/dist/choker.js'
import { LinkModel, MaxMinSolver } from './links.mjs'
import { SimNode } from './node.mjs'
import { mulberry32 } from './random.mjs'
import { SimTracker } from './tracker.mjs'

/** Bytes per ms below which a flow starting within a step waits for the next one. */
const MIN_RATE = 1e-3
/** Where the virtual clock starts, in ms. Not near 0: the engine's RateMeter takes a
 * time in second 0 for "not started yet" (it restarts its window on every reading
 * during the first second), which Date.now never gives it. */
export const CLOCK_START = 1_000_000
/** Give up when virtual time passes this many times T_min: the swarm is stuck. */
const STALL_FACTOR = 50

export class Simulation {
  /** @param {import('./settings.mjs').SimSettings} settings */
  constructor(settings) {
    this.settings = settings
    const { nodes, size, pieceLength } = settings
    this.random = mulberry32(settings.seed)
    this.size = size
    this.pieceLength = pieceLength
    this.pieceCount = Math.ceil(size / pieceLength)
    const last = size - (this.pieceCount - 1) * pieceLength
    this.pieceLengthOf = (index) => (index === this.pieceCount - 1 ? last : pieceLength)
    // One scratch buffer for every piece of every node: blocks carry no bytes.
    const scratch = Buffer.alloc(pieceLength)
    this.buffers = { take: () => scratch, give: () => {} }
    this.now = CLOCK_START
    this.clock = () => this.now
    this.step = settings.step
    this.latency = settings.latency
    const rackOf = [-1]
    for (let i = 0; i < nodes; i++) rackOf.push(settings.racks > 0 ? rackOfNode(i, settings) : -1)
    const bytesPerMs = settings.rate / 8 / 1000
    this.links = new LinkModel({
      hosts: nodes + 1,
      rate: bytesPerMs,
      serverRate: settings.serverRate / 8 / 1000,
      rackOf,
      racks: settings.racks,
      uplink: (settings.rackSize * bytesPerMs) / settings.oversubscription,
    })
    this.solver = new MaxMinSolver(this.links.capacity)
    this.tracker = new SimTracker({
      numwant: settings.numwant,
      random: this.random,
      rackAware: settings.rackAware,
    })
    this.server = new SimNode(this, { id: 0, rack: undefined, isServer: true, settings })
    this.nodes = [this.server]
    for (let i = 1; i <= nodes; i++) {
      const rack = rackOf[i] >= 0 ? rackOf[i] : undefined
      this.nodes.push(new SimNode(this, { id: i, rack, isServer: false, settings }))
    }
    // Messages: due step and action, in posting order.
    this.dueTimes = []
    this.actions = []
    this.head = 0
    this.lastDue = 0
    /** Where the current step starts. */
    this.time = CLOCK_START
    this.timers = new TimerHeap()
    /** Flows with requests queued (SimPeer, uploader's end); `heap` orders those with a
     * rate by when their current block's last byte goes. */
    this.flows = new Set()
    this.heap = new FlowHeap()
    this.residual = new Float64Array(this.links.capacity.length)
    this.stepping = false
    /** Set to see progress on long runs (sim/cli.mjs --progress). */
    this.onProgress = undefined
    this.remaining = nodes
    // Counters.
    this.messages = 0
    this.blocks = 0
    this.requests = 0
    this.connections = 0
    this.steps = 0
    this.serverBytes = 0
    this.crossRackBytes = 0
    this.duplicateBytes = 0
    this.peakFlows = 0
  }

  /** Delivers `action` after the latency (see the header). */
  post(action) {
    const due = Math.max(this.lastDue, this.now + this.latency)
    this.lastDue = due
    this.dueTimes.push(due)
    this.actions.push(action)
  }

  /** Runs `action` `ms` from now (at the first step start at or after that). */
  after(ms, action) {
    this.timers.push(this.now + ms, action)
  }

  /** A request reached the flow from `peer.owner` to `peer.remote`: in the set of
   * flows; within a step, it starts at once on what its links have left. */
  activate(peer) {
    if (this.flows.has(peer)) return
    this.flows.add(peer)
    if (!this.stepping) return
    const { path } = peer
    const residual = this.residual
    let rate = Number.POSITIVE_INFINITY
    for (let i = 0; i < path.length; i++) rate = Math.min(rate, residual[path[i]])
    if (!(rate > MIN_RATE)) return
    for (let i = 0; i < path.length; i++) residual[path[i]] -= rate
    peer.rate = rate
    peer.mark = this.now
    this.#schedule(peer)
  }

  /** The uploader dropped the flow's requests (a choke). */
  dropped(peer) {
    peer.queue.length = 0
    peer.queueHead = 0
    this.#idle(peer)
  }

  finished(node) {
    node.finishedAt = this.now
    this.remaining--
  }

  run() {
    const { settings } = this
    const startOrder = this.nodes.slice(1)
    shuffle(startOrder, this.random)
    startOrder.forEach((node, i) => {
      const at = CLOCK_START + (settings.startSpread * i) / Math.max(1, startOrder.length)
      this.timers.push(at, () => this.#start(node))
    })
    const limit = CLOCK_START + STALL_FACTOR * tMinSeconds(settings) * 1000 + settings.startSpread
    let rates = new Float64Array(1024)
    const { capacity } = this.links
    while (this.remaining > 0) {
      this.now = this.time
      if (this.now > limit) break
      this.#runTimers()
      this.#deliver(this.now)
      if (this.flows.size === 0) {
        if (!this.#skipIdle()) break
        continue
      }
      this.steps++
      if (this.onProgress && this.steps % 200 === 0) this.#progress()
      const flows = [...this.flows]
      if (flows.length > this.peakFlows) this.peakFlows = flows.length
      if (rates.length < flows.length) rates = new Float64Array(2 * flows.length)
      this.solver.solve(
        flows.map((peer) => peer.path),
        rates,
      )
      const residual = this.residual
      residual.set(capacity)
      const start = this.now
      for (let f = 0; f < flows.length; f++) {
        const peer = flows[f]
        const rate = rates[f]
        peer.rate = rate
        peer.mark = start
        for (const r of peer.path) residual[r] -= rate
      }
      for (const peer of flows) this.#schedule(peer)
      this.stepping = true
      this.#play(start + this.step)
      this.stepping = false
      this.time = start + this.step
    }
    return this
  }

  /** The step's events in time order, up to `end`; then every flow's bytes sent since
   * its last block are counted on the block it is sending. */
  #play(end) {
    const { heap, dueTimes } = this
    for (;;) {
      const flowAt = heap.size > 0 ? heap.top().nextAt : Number.POSITIVE_INFINITY
      const messageAt = this.head < dueTimes.length ? dueTimes[this.head] : Number.POSITIVE_INFINITY
      if (flowAt >= end && messageAt >= end) break
      if (messageAt <= flowAt) {
        this.now = messageAt
        this.#deliverOne()
        continue
      }
      const peer = heap.pop()
      this.now = peer.nextAt
      const asked = peer.queue[peer.queueHead++]
      asked.remaining = 0
      peer.mark = this.now
      // A block cancelled while it was on the way: what was sent of it is lost.
      if (!asked.dead) this.#delivered(peer, asked)
      this.#schedule(peer)
    }
    this.now = end
    for (const peer of this.flows) {
      if (peer.rate > 0 && peer.queueHead < peer.queue.length) {
        peer.queue[peer.queueHead].remaining -= peer.rate * (end - peer.mark)
        peer.mark = end
      }
    }
    heap.clear()
  }

  /** The flow's next block, or the flow goes idle when none is left. */
  #schedule(peer) {
    const queue = peer.queue
    while (peer.queueHead < queue.length && queue[peer.queueHead].dead) peer.queueHead++
    if (peer.queueHead >= queue.length) {
      this.#idle(peer)
      return
    }
    if (peer.queueHead > 256) {
      queue.splice(0, peer.queueHead)
      peer.queueHead = 0
    }
    if (!(peer.rate > 0)) return
    const remaining = Math.max(0, queue[peer.queueHead].remaining)
    peer.nextAt = peer.mark + remaining / peer.rate
    this.heap.set(peer)
  }

  /** The flow has nothing to send: its capacity is left over for the rest of the step. */
  #idle(peer) {
    if (!this.flows.delete(peer)) return
    queueReset(peer)
    this.heap.delete(peer)
    if (this.stepping && peer.rate > 0) {
      for (const r of peer.path) this.residual[r] += peer.rate
    }
    peer.rate = 0
  }

  /** Calls `onProgress` with where the run is, about every 10 s of wall time. */
  #progress() {
    const wall = performance.now()
    if (wall - (this.lastProgress ?? 0) < 10_000) return
    this.lastProgress = wall
    this.onProgress({
      virtualSeconds: (this.now - CLOCK_START) / 1000,
      finished: this.settings.nodes - this.remaining,
      nodes: this.settings.nodes,
      flows: this.flows.size,
      blocks: this.blocks,
    })
  }

  #start(node) {
    node.startedAt = this.now
    this.#announce(node)
    node.dialServer()
    const rotate = () => {
      node.choker.rotate()
      this.after(ROTATE_MS, rotate)
    }
    this.after(ROTATE_MS, rotate)
  }

  /** An announce: dial the peers the tracker hands out; again every interval. */
  #announce(node) {
    for (const id of this.tracker.announce(node)) node.connect(this.nodes[id])
    this.after(this.settings.announceInterval, () => this.#announce(node))
  }

  #deliver(until) {
    while (this.head < this.actions.length && this.dueTimes[this.head] <= until) {
      this.#deliverOne()
    }
  }

  #deliverOne() {
    const { dueTimes, actions } = this
    const action = actions[this.head]
    actions[this.head] = undefined
    this.head++
    this.messages++
    action()
    if (this.head > 65536 && this.head * 2 > actions.length) {
      dueTimes.splice(0, this.head)
      actions.splice(0, this.head)
      this.head = 0
    }
  }

  #runTimers() {
    while (this.timers.size > 0 && this.timers.topAt() <= this.now) this.timers.pop()()
  }

  /** Nothing moves: time goes to the next message or timer; false when there is none
   * (the swarm is stuck). */
  #skipIdle() {
    let next = Number.POSITIVE_INFINITY
    if (this.head < this.actions.length) next = this.dueTimes[this.head]
    if (this.timers.size > 0) next = Math.min(next, this.timers.topAt())
    if (next === Number.POSITIVE_INFINITY) return false
    this.time = next
    return true
  }

  #delivered(peer, asked) {
    const length = asked.request.length
    this.blocks++
    peer.uploadRate.add(length, this.now)
    if (peer.owner.isServer) this.serverBytes += length
    if (peer.crossesRacks) this.crossRackBytes += length
    peer.remote.received(peer.mirror, asked)
  }
}

/** Kumar–Ross lower bound for the configured links, in seconds (flat: uplinks ignored). */
export function tMinSeconds({ nodes, size, rate, serverRate }) {
  const bits = size * 8
  return Math.max(bits / serverRate, bits / rate, (nodes * bits) / (serverRate + nodes * rate))
}

/** Node i (0-based) of `nodes`, in racks of `rackSize`, filled in order. */
function rackOfNode(i, { rackSize }) {
  return Math.floor(i / rackSize)
}

function queueReset(peer) {
  peer.queue.length = 0
  peer.queueHead = 0
}

function shuffle(items, random) {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[items[i], items[j]] = [items[j], items[i]]
  }
}

/** Timers by time, then by order of setting. */
class TimerHeap {
  #items = []
  #seq = 0

  get size() {
    return this.#items.length
  }

  topAt() {
    return this.#items[0].at
  }

  push(at, action) {
    const items = this.#items
    const item = { at, seq: this.#seq++, action }
    let i = items.length
    items.push(item)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(item, items[parent])) break
      items[i] = items[parent]
      i = parent
    }
    items[i] = item
  }

  pop() {
    const items = this.#items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0) {
      let i = 0
      for (;;) {
        let child = 2 * i + 1
        if (child >= items.length) break
        if (child + 1 < items.length && before(items[child + 1], items[child])) child++
        if (!before(items[child], last)) break
        items[i] = items[child]
        i = child
      }
      items[i] = last
    }
    return top.action
  }
}

function before(a, b) {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

/** Flows by `nextAt`, each at most once (its place kept in `heapIndex`). */
class FlowHeap {
  #items = []

  get size() {
    return this.#items.length
  }

  top() {
    return this.#items[0]
  }

  clear() {
    for (const peer of this.#items) peer.heapIndex = -1
    this.#items.length = 0
  }

  /** Inserts the flow, or moves it to its new `nextAt`. */
  set(peer) {
    if (peer.heapIndex < 0) {
      peer.heapIndex = this.#items.length
      this.#items.push(peer)
    }
    this.#up(peer.heapIndex)
    this.#down(peer.heapIndex)
  }

  pop() {
    const top = this.#items[0]
    this.delete(top)
    return top
  }

  delete(peer) {
    const at = peer.heapIndex
    if (at < 0) return
    const items = this.#items
    const last = items.pop()
    peer.heapIndex = -1
    if (last === peer) return
    items[at] = last
    last.heapIndex = at
    this.#up(at)
    this.#down(last.heapIndex)
  }

  #up(at) {
    const items = this.#items
    const item = items[at]
    while (at > 0) {
      const parent = (at - 1) >> 1
      if (items[parent].nextAt <= item.nextAt) break
      items[at] = items[parent]
      items[at].heapIndex = at
      at = parent
    }
    items[at] = item
    item.heapIndex = at
  }

  #down(at) {
    const items = this.#items
    const item = items[at]
    for (;;) {
      let child = 2 * at + 1
      if (child >= items.length) break
      if (child + 1 < items.length && items[child + 1].nextAt < items[child].nextAt) child++
      if (items[child].nextAt >= item.nextAt) break
      items[at] = items[child]
      items[at].heapIndex = at
      at = child
    }
    items[at] = item
    item.heapIndex = at
  }
}
