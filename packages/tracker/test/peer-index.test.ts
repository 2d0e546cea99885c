import { describe, expect, it } from 'vitest'
import { PeerIndex } from '../src/peer-index.js'

describe('PeerIndex', () => {
  it('keeps exactly the keys added and not deleted', () => {
    const index = new PeerIndex()
    for (const key of ['a', 'b', 'c', 'd', 'a']) index.add(key)
    index.delete('b')
    index.delete('zz')
    index.delete('d')
    expect(index.size).toBe(2)
    expect([...index.random()].sort()).toEqual(['a', 'c'])
  })

  it('yields every key once, in an order that changes', () => {
    const index = new PeerIndex()
    for (let i = 0; i < 50; i++) index.add(`k${i}`)
    const first = [...index.random()]
    expect(new Set(first).size).toBe(50)
    const orders = new Set(Array.from({ length: 5 }, () => [...index.random()].join()))
    expect(orders.size).toBeGreaterThan(1)
  })
})
