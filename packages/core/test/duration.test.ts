import { describe, expect, it } from 'vitest'
import { formatDuration, parseDuration } from '../src/duration.js'

describe('parseDuration', () => {
  it('reads seconds, and units a person writes', () => {
    expect(parseDuration('600')).toBe(600)
    expect(parseDuration('0.5')).toBe(0.5)
    expect(parseDuration('90s')).toBe(90)
    expect(parseDuration('10m')).toBe(600)
    expect(parseDuration('1h30m')).toBe(5400)
    expect(parseDuration('2d')).toBe(172800)
    expect(parseDuration(' 10M ')).toBe(600)
  })

  it('refuses what is not a duration', () => {
    for (const text of ['', '-5', '10x', 'm', '10 minutes', '1h 30m', 'Infinity']) {
      expect(parseDuration(text), text).toBeUndefined()
    }
  })
})

describe('formatDuration', () => {
  it('writes what parseDuration reads back', () => {
    for (const seconds of [0, 1, 59, 60, 90, 600, 3600, 5400, 86400, 90061]) {
      expect(parseDuration(formatDuration(seconds))).toBe(seconds)
    }
    expect(formatDuration(5400)).toBe('1h30m')
  })
})
