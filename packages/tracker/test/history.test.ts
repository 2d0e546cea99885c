import { describe, expect, it } from 'vitest'
import { emptyPoint, History } from '../src/history.js'

function point(t: number) {
  return { ...emptyPoint(t), installed: t * 2 }
}

describe('History', () => {
  it('keeps at most its capacity, dropping the oldest points first', () => {
    const history = new History(10)
    for (let t = 1; t <= 25; t++) history.push(point(t))
    expect(history.length).toBe(10)
    const series = history.series()
    expect(series.t).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25])
    expect(series.installed).toEqual(series.t.map((t) => t * 2))
    expect(history.latest()?.t).toBe(25)
  })

  it('returns only the points after `since`, oldest first, before and after wrapping', () => {
    const history = new History(5)
    for (let t = 1; t <= 3; t++) history.push(point(t))
    expect(history.series(1).t).toEqual([2, 3])
    for (let t = 4; t <= 7; t++) history.push(point(t))
    expect(history.series(5).t).toEqual([6, 7])
    expect(history.series(100).t).toEqual([])
  })

  it('has no points and no latest before the first sample', () => {
    const history = new History(5)
    expect(history.latest()).toBeUndefined()
    expect(history.series().t).toEqual([])
  })
})
