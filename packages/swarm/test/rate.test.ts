import { describe, expect, it } from 'vitest'
import { PieceSet, RateMeter, TokenBucket } from '../src/index.js'

describe('PieceSet', () => {
  it('is a BitTorrent bitfield: piece 0 is the high bit of the first byte', () => {
    const set = new PieceSet(10)
    expect(set.add(0)).toBe(true)
    expect(set.add(9)).toBe(true)
    expect(set.add(9)).toBe(false)
    expect(set.add(10)).toBe(false)
    expect([...set.bits]).toEqual([0b1000_0000, 0b0100_0000])
    expect(set.count).toBe(2)
    set.fill()
    expect(set.complete).toBe(true)
  })
})

describe('RateMeter', () => {
  it('averages bytes over its window and forgets what is older', () => {
    const meter = new RateMeter(5)
    const start = 1_000_000
    for (let second = 0; second < 10; second++) meter.add(1000, start + second * 1000)
    expect(meter.rate(start + 9999)).toBe(1000)
    expect(meter.rate(start + 30_000)).toBe(0)
  })

  it('averages a young meter over its age, not over the whole window', () => {
    const meter = new RateMeter(5)
    const start = 2_000_000
    meter.add(3000, start)
    expect(meter.rate(start + 500)).toBe(6000)
  })
})

describe('TokenBucket', () => {
  it('lets a second of bytes through at once, then asks the caller to wait', () => {
    const bucket = new TokenBucket(100_000)
    expect(bucket.take(100_000)).toBe(0)
    const wait = bucket.take(50_000)
    expect(wait).toBeGreaterThan(400)
    expect(wait).toBeLessThanOrEqual(500)
  })

  it('takes nothing for a download it refuses, so asking again does not push it back', () => {
    const bucket = new TokenBucket(100_000)
    expect(bucket.tryTake(80_000)).toBe(0)
    const first = bucket.tryTake(50_000)
    expect(first).toBeGreaterThan(250)
    for (let asked = 0; asked < 10; asked++)
      expect(bucket.tryTake(50_000)).toBeLessThanOrEqual(first)
    // A block larger than a second's worth goes once the bucket is full.
    expect(new TokenBucket(1000).tryTake(5000)).toBe(0)
  })
})
