import { describe, expect, it } from 'vitest'
import { parseByteRange } from '../src/byte-ranges.js'

describe('parseByteRange', () => {
  const size = 1000

  it.each([
    ['bytes=0-499', { start: 0, end: 499 }],
    ['bytes=500-', { start: 500, end: 999 }],
    ['bytes=-100', { start: 900, end: 999 }],
    ['bytes=-5000', { start: 0, end: 999 }],
    ['bytes=900-5000', { start: 900, end: 999 }],
    ['bytes=999-999', { start: 999, end: 999 }],
    ['Bytes = 10-19', { start: 10, end: 19 }],
  ])('reads %s as one range, its end held to the file', (header, range) => {
    expect(parseByteRange(header, size)).toEqual(range)
  })

  it.each(['bytes=1000-', 'bytes=1000-1999', 'bytes=-0'])(
    'answers %s, wholly past the end, as unsatisfiable (416)',
    (header) => {
      expect(parseByteRange(header, size)).toBe('unsatisfiable')
    },
  )

  it.each([
    undefined,
    'items=0-10',
    'bytes=',
    'bytes=-',
    'bytes=10-5',
    'bytes=a-b',
    'bytes=0-10,20-30',
    'bytes=99999999999999999999-',
  ])('sends the whole file for %s (no range, another unit, malformed or several)', (header) => {
    expect(parseByteRange(header, size)).toBeUndefined()
  })
})
