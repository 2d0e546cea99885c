import { describe, expect, it } from 'vitest'
import { simulate } from '../scripts/bench-swarm/sim/cli.mjs'
import { LinkModel, maxMinRates } from '../scripts/bench-swarm/sim/links.mjs'

// The swarm simulator's link model and run loop, on cases small enough to know the
// answer. Needs packages/swarm and packages/tracker built (the simulator runs their
// policy modules). No timing: virtual time only.

const MiB = 1024 * 1024

describe('the simulator link model', () => {
  it('shares links max-min fairly: two flows through a 10 Mbit uplink and one local flow', () => {
    // Hosts 0..3 with 100 Mbit links; hosts 1 and 2 in rack 0, host 3 in rack 1; the
    // uplinks carry 10 Mbit. Host 1 sends to host 3 (across racks) and to host 2 (in its
    // rack); host 2 sends to host 3 (across racks).
    const links = new LinkModel({
      hosts: 4,
      rate: 100,
      serverRate: 100,
      rackOf: [-1, 0, 0, 1],
      racks: 2,
      uplink: 10,
    })
    const paths = [links.path(1, 3), links.path(2, 3), links.path(1, 2)]
    const rates = maxMinRates(links.capacity, paths)
    // The uplink is the bottleneck of both cross-rack flows: 5 each. Host 1's upload has
    // 95 left for the local flow.
    expect(rates[0]).toBeCloseTo(5, 9)
    expect(rates[1]).toBeCloseTo(5, 9)
    expect(rates[2]).toBeCloseTo(95, 9)
  })

  it('gives the textbook answer when bottlenecks are nested', () => {
    // Link A (capacity 1) carries flows 0 and 1; link B (capacity 3) carries flows 1 and 2.
    expect(maxMinRates([1, 3], [[0], [0, 1], [1]])).toEqual([0.5, 0.5, 2.5])
  })

  it('counts a transfer as crossing racks when it leaves its rack or comes from the server', () => {
    const links = new LinkModel({
      hosts: 4,
      rate: 1,
      serverRate: 1,
      rackOf: [-1, 0, 0, 1],
      racks: 2,
      uplink: 1,
    })
    expect(links.crossesRacks(1, 2)).toBe(false)
    expect(links.crossesRacks(1, 3)).toBe(true)
    expect(links.crossesRacks(0, 1)).toBe(true)
    // The server is on the core switch: only the receiving rack's downlink is crossed.
    expect(links.path(0, 1)).toEqual([0, 5, 2 * 4 + 2 + 0])
  })
})

describe('the swarm simulator', () => {
  it('takes F / rate plus the handshake latencies for one node', () => {
    const size = 8 * MiB
    const rate = 25e6
    const result = simulate({ nodes: 1, size: '8MiB', rate: '25mbit', latency: '1ms' })
    const transfer = (size * 8) / rate
    expect(result.tAll).not.toBeNull()
    expect(result.tAll).toBeGreaterThanOrEqual(transfer)
    // Dial, attach, haves, interest, unchoke and the first request: a latency each, and
    // the transfer itself ends within a step of its ideal time.
    expect(result.tAll! - transfer).toBeLessThan(0.05 + 0.01)
    expect(result.serverCopies).toBeCloseTo(1, 6)
  })

  it('is reproducible: the same seed gives the same run', () => {
    const options = { nodes: 6, size: '4MiB', rate: '100mbit', seed: 7 }
    const a = simulate(options)
    const b = simulate(options)
    expect(b.finishTimes).toEqual(a.finishTimes)
    expect(b.serverCopies).toBe(a.serverCopies)
  })

  it('with racks behind 4:1 uplinks, a rack-aware handout is faster and crosses racks less than a uniform one', () => {
    // Four racks of 20: a uniform handout sends three in four connections across racks.
    // (Two racks of 40 with 8 MiB, 8 pieces, is too small a swarm to tell them apart.)
    const options = {
      nodes: 80,
      size: '16MiB',
      rate: '100mbit',
      rackSize: 20,
      oversubscription: 4,
      seed: 3,
    }
    const aware = simulate({ ...options, rackAware: true })
    const uniform = simulate({ ...options, rackAware: false })
    expect(aware.tAll).not.toBeNull()
    expect(uniform.tAll).not.toBeNull()
    expect(aware.tAll!).toBeLessThan(uniform.tAll!)
    expect(aware.crossRackBytes).toBeLessThan(uniform.crossRackBytes)
  })
})
