import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type PacedChunk, paceBytes, UploadBudget, uploadBudgetFor } from '../src/upload-budget.js'

/**
 * The pacing runs on a fake clock (timers and performance.now, which the token bucket
 * reads): what is asserted is how many bytes the budget releases in each second of that
 * clock, never how long anything took.
 */
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
})

afterEach(() => {
  vi.useRealTimers()
})

/** Runs paceBytes to the end on the fake clock; each chunk with the fake time it was released. */
async function releaseAll(
  start: number,
  end: number,
  budget: UploadBudget | undefined,
): Promise<(PacedChunk & { at: number })[]> {
  const released: (PacedChunk & { at: number })[] = []
  let done = false
  const run = (async () => {
    for await (const chunk of paceBytes(start, end, budget)) {
      released.push({ ...chunk, at: performance.now() })
    }
    done = true
  })()
  // Bounded: 4 MiB at 256 KiB/s is 15 s of fake time; 100 ms steps.
  for (let step = 0; step < 10_000 && !done; step++) await vi.advanceTimersByTimeAsync(100)
  await run
  return released
}

function bytesPerSecond(released: { length: number; at: number }[], origin: number): number[] {
  const seconds: number[] = []
  for (const { length, at } of released) {
    const second = Math.floor((at - origin) / 1000)
    seconds[second] = (seconds[second] ?? 0) + length
  }
  return Array.from(seconds, (bytes) => bytes ?? 0)
}

describe('the web seed’s upload budget', () => {
  it('releases a several-MiB range at the limit: a second’s burst, then the rate in every second', async () => {
    const rate = 256 * 1024
    const budget = new UploadBudget(rate)
    const origin = performance.now()
    const released = await releaseAll(0, 4 * 1024 * 1024, budget)

    // Every byte, in order, without gaps or overlaps.
    let position = 0
    for (const chunk of released) {
      expect(chunk.position).toBe(position)
      expect(chunk.length).toBeLessThanOrEqual(budget.chunkBytes)
      position += chunk.length
    }
    expect(position).toBe(4 * 1024 * 1024)

    const perSecond = bytesPerSecond(released, origin)
    // The bucket starts full (one second's burst) and refills at the rate.
    expect(perSecond[0]).toBeLessThanOrEqual(2 * rate)
    for (const bytes of perSecond.slice(1))
      expect(bytes).toBeLessThanOrEqual(rate + budget.chunkBytes)
    // And it does not hold back more than it must: every whole second but the last
    // carries about the rate.
    for (const bytes of perSecond.slice(1, -1))
      expect(bytes).toBeGreaterThanOrEqual(rate - budget.chunkBytes)
    // 4 MiB less the first second's burst, at 256 KiB a second: 15 s.
    expect(perSecond.length).toBe(16)
  })

  it('shares one budget between concurrent responses', async () => {
    const rate = 100_000
    const budget = new UploadBudget(rate)
    const origin = performance.now()
    const [a, b] = await Promise.all([
      releaseAll(0, 300_000, budget),
      releaseAll(0, 300_000, budget),
    ])
    const perSecond = bytesPerSecond([...a!, ...b!], origin)
    expect(perSecond[0]).toBeLessThanOrEqual(2 * rate)
    for (const bytes of perSecond.slice(1))
      expect(bytes).toBeLessThanOrEqual(rate + 2 * budget.chunkBytes)
  })

  it('sends a slow limit evenly, a tenth of a second’s worth at a time', () => {
    expect(new UploadBudget(1024).chunkBytes).toBe(102)
    expect(new UploadBudget(100 * 1024 * 1024).chunkBytes).toBe(64 * 1024)
  })

  it('holds nothing back without a limit', async () => {
    expect(uploadBudgetFor(-1)).toBeUndefined()
    const released = await releaseAll(0, 1024 * 1024, undefined)
    expect(released.every((chunk) => chunk.at === released[0]!.at)).toBe(true)
    expect(released.reduce((sum, chunk) => sum + chunk.length, 0)).toBe(1024 * 1024)
  })

  it('stops releasing when the response is gone', async () => {
    const gone = new AbortController()
    const released: PacedChunk[] = []
    const run = (async () => {
      for await (const chunk of paceBytes(0, 1024 * 1024, new UploadBudget(10_000), gone.signal)) {
        released.push(chunk)
      }
    })()
    await vi.advanceTimersByTimeAsync(500)
    gone.abort()
    await run
    const sent = released.reduce((sum, chunk) => sum + chunk.length, 0)
    expect(sent).toBeLessThan(20_000)
  })
})
