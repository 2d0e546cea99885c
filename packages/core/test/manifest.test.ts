import { describe, expect, it } from 'vitest'
import type { ImageSwarmError } from '../src/errors.js'
import { parseManifest } from '../src/manifest.js'

const valid = {
  schemaVersion: 1,
  name: 'compute',
  archiveFile: 'image-compute.tar.zst',
  size: 123456,
  sha256: 'a'.repeat(64),
  infoHash: 'B'.repeat(40),
  pieceLength: 1048576,
  compression: 'zstd',
  created: '2026-11-22T08:00:00.000Z',
}

function failure(value: unknown): ImageSwarmError {
  try {
    parseManifest(value, 'http://server/images/compute/manifest.json')
  } catch (err) {
    return err as ImageSwarmError
  }
  throw new Error('expected the manifest to be refused')
}

describe('parseManifest', () => {
  it('accepts a valid manifest and normalises the infohash to lowercase', () => {
    const manifest = parseManifest(valid, 'test')
    expect(manifest.infoHash).toBe('b'.repeat(40))
    expect(manifest.size).toBe(123456)
  })

  it.each([
    ['sha256', { sha256: 'xyz' }],
    ['size', { size: -1 }],
    ['infoHash', { infoHash: 'not-a-hash' }],
    ['compression', { compression: 'lz4' }],
    ['archiveFile', { archiveFile: '../etc/passwd' }],
    ['name', { name: '../../root' }],
    ['schemaVersion', { schemaVersion: 2 }],
    ['created', { created: 'yesterday' }],
  ])('refuses a bad %s, naming the field', (field, change) => {
    const err = failure({ ...valid, ...change })
    expect(err.code).toBe('E_MANIFEST_INVALID')
    expect(err.message).toContain(field)
    expect(err.path).toBe('http://server/images/compute/manifest.json')
    expect(err.hint).toMatch(/republish/)
  })

  it('refuses a manifest with a missing field', () => {
    const { sha256: _, ...rest } = valid
    expect(failure(rest).message).toMatch(/sha256/)
  })
})
