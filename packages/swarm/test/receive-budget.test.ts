import { describe, expect, it } from 'vitest'
import { type BufferingWire, ReceiveBudget } from '../src/receive-budget.js'

/** A connection holding `bufferedBytes` of a message, that records why it was dropped. */
function fakeWire(bufferedBytes = 0) {
  const wire = {
    bufferedBytes,
    droppedFor: undefined as string | undefined,
    dropConnection(reason: string) {
      wire.droppedFor = reason
      wire.bufferedBytes = 0
    },
  }
  return wire satisfies BufferingWire
}

describe('ReceiveBudget', () => {
  it('adds up what every connection holds and frees it when one closes', () => {
    const budget = new ReceiveBudget(1000)
    const a = fakeWire(300)
    const b = fakeWire(400)
    budget.update(a)
    budget.update(b)
    expect(budget.total).toBe(700)
    a.bufferedBytes = 100
    budget.update(a)
    expect(budget.total).toBe(500)
    budget.release(b)
    expect(budget.total).toBe(100)
    expect(budget.peak).toBe(700)
  })

  it('drops the connection holding the most when all together hold more than the budget', () => {
    const budget = new ReceiveBudget(1000)
    const small = fakeWire(200)
    const large = fakeWire(600)
    const latest = fakeWire(0)
    budget.update(small)
    budget.update(large)
    latest.bufferedBytes = 300
    budget.update(latest)
    expect(large.droppedFor).toMatch(/held 600 of the 1100 bytes .* over the budget of 1000/)
    expect(small.droppedFor).toBeUndefined()
    expect(latest.droppedFor).toBeUndefined()
    expect(budget.total).toBe(500)
  })
})
