import { describe, expect, it } from 'vitest'
import { DOWN_AFTER_MISSES, MISSED_INTERVALS, ServerRegistry } from '../src/server-registry.js'

const A = 'http://10.0.0.1:6969'
const B = 'http://10.0.0.2:6969'
const C = 'http://10.0.0.3:6969'
const IMAGE = 'a'.repeat(40)
const OTHER = 'b'.repeat(40)

function registryAt(self: string, own: string[]) {
  const clock = { now: 0 }
  const registry = new ServerRegistry({
    self: () => self,
    ownImages: () => own,
    now: () => clock.now,
  })
  return { registry, clock }
}

describe('ServerRegistry', () => {
  it('lists only this server until a mirror registers', () => {
    const { registry } = registryAt(A, [IMAGE])
    expect(registry.serversFor(IMAGE)).toEqual([A])
    expect(registry.list()).toEqual({ servers: [{ url: A, images: [IMAGE] }] })
  })

  it('lists a registered mirror for the images it serves, after this server', () => {
    const { registry } = registryAt(A, [IMAGE, OTHER])
    registry.heard({ url: B, images: [IMAGE.toUpperCase()], intervalSeconds: 10 })
    expect(registry.serversFor(IMAGE)).toEqual([A, B])
    // B does not hold OTHER yet: its web seed would answer 404.
    expect(registry.serversFor(OTHER)).toEqual([A])
  })

  it(`forgets a mirror not heard from for ${MISSED_INTERVALS} of its intervals`, () => {
    const { registry, clock } = registryAt(A, [IMAGE])
    registry.heard({ url: B, images: [IMAGE], intervalSeconds: 10 })
    clock.now = MISSED_INTERVALS * 10_000
    expect(registry.serversFor(IMAGE)).toEqual([A, B])
    clock.now += 1
    expect(registry.serversFor(IMAGE)).toEqual([A])
    expect(registry.list().servers.map((entry) => entry.url)).toEqual([A])
  })

  it("on a mirror, takes the primary's list and drops it when the primary stops answering", () => {
    const { registry, clock } = registryAt(B, [IMAGE])
    registry.adopt(
      {
        servers: [
          { url: A, images: [IMAGE] },
          { url: B, images: [IMAGE] },
          { url: C, images: [OTHER] },
        ],
      },
      5,
    )
    // Itself once and first, the primary, and not C (which serves another image).
    expect(registry.serversFor(IMAGE)).toEqual([B, A])
    clock.now = MISSED_INTERVALS * 5_000 + 1
    expect(registry.serversFor(IMAGE)).toEqual([B])
  })

  it('answers a registration with every live server, this one first', () => {
    const { registry } = registryAt(A, [IMAGE])
    registry.heard({ url: B, images: [IMAGE], intervalSeconds: 10 })
    registry.heard({ url: C, images: [], intervalSeconds: 10 })
    expect(registry.list()).toEqual({
      servers: [
        { url: A, images: [IMAGE] },
        { url: B, images: [IMAGE] },
        { url: C, images: [] },
      ],
    })
  })

  it(`leaves out a server whose health check failed ${DOWN_AFTER_MISSES} times in a row, until it answers`, () => {
    const { registry } = registryAt(A, [IMAGE])
    registry.heard({ url: B, images: [IMAGE], intervalSeconds: 10 })
    expect(registry.others()).toEqual([B])
    for (let miss = 1; miss < DOWN_AFTER_MISSES; miss++) registry.observe(B, false)
    expect(registry.serversFor(IMAGE)).toEqual([A, B])
    registry.observe(B, false)
    expect(registry.isDown(B)).toBe(true)
    expect(registry.serversFor(IMAGE)).toEqual([A])
    // Still checked, so it comes back at its next answer.
    expect(registry.others()).toEqual([B])
    registry.observe(B, true)
    expect(registry.serversFor(IMAGE)).toEqual([A, B])
  })
})
