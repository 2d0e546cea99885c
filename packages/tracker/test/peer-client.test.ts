import { describe, expect, it } from 'vitest'
import { clientNameOf } from '../src/peer-client.js'

const hex = (id: string) => Buffer.from(id, 'latin1').toString('hex')

describe('clientNameOf', () => {
  it('names the BitTorrent clients seen beside imageswarm by their peer ids', () => {
    expect(clientNameOf(hex('-LT2090-abcdefghijkl'))).toBe('libtorrent 2.0.9')
    expect(clientNameOf(hex('-TR4060-abcdefghijkl'))).toBe('Transmission 4.0.6')
    expect(clientNameOf(hex('A2-1-37-0-abcdefghij'))).toBe('aria2 1.37.0')
    expect(clientNameOf(hex('-IS01C0-000000000001'))).toBe('imageswarm')
    expect(clientNameOf(hex('-ZZ1000-abcdefghijkl'))).toBe('ZZ 1')
    expect(clientNameOf(hex('M7-2-3--abcdefghijkl'))).toBeNull()
  })
})
