import { NODE_STATUS_MAX_BYTES } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { parseStatusReport } from '../src/status-report.js'
import { statusReport } from './fixtures.js'

function parse(value: unknown) {
  return parseStatusReport(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)))
}

describe('parseStatusReport', () => {
  it('accepts a report that matches core’s schema', () => {
    const result = parse(statusReport(1, { state: 'failed', error: { code: 'E_X', message: 'm' } }))
    expect(result.ok).toBe(true)
  })

  it('refuses a body that is not JSON, saying so', () => {
    const result = parse('{"image": ')
    expect(result).toMatchObject({
      ok: false,
      error: { status: 400, code: 'E_STATUS_INVALID', message: /not JSON/ },
    })
  })

  it('names the bad field and what it received', () => {
    const result = parse(statusReport(1, { state: 'flying' as never }))
    expect(result.ok).toBe(false)
    if (result.ok) return
    expect(result.error.message).toMatch(/field state: .*\(received "flying"\)/)
    expect(result.error.hint).toMatch(/NodeStatusReport/)
  })

  it('refuses fields the schema does not know', () => {
    const result = parse({ ...statusReport(1), extra: 1 })
    expect(result).toMatchObject({ ok: false, error: { code: 'E_STATUS_INVALID' } })
  })

  it('refuses a body over NODE_STATUS_MAX_BYTES before parsing it', () => {
    const result = parseStatusReport(Buffer.alloc(NODE_STATUS_MAX_BYTES + 1, 0x20))
    expect(result).toMatchObject({ ok: false, error: { status: 413, code: 'E_STATUS_TOO_LARGE' } })
  })
})
