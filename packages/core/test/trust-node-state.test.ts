import { describe, expect, it } from 'vitest'
import {
  encodeTrustRecord,
  installedImageRecord,
  isImageSwarmError,
  type NodeTrustState,
  parseInstalledImageRecord,
  parseNodeTrustState,
  raiseTrustState,
  type TrustedInstall,
  trustFloor,
} from '../src/index.js'
import { thrownBy } from './helpers/thrown-by.js'

const LIST_A = 'a'.repeat(64)
const LIST_B = 'b'.repeat(64)

function install(overrides: Partial<TrustedInstall> = {}): TrustedInstall {
  return {
    image: 'compute',
    serial: 7,
    infoHash: 'd2474e86c95b19b8bcfdb92bc12c9d44667cfa36',
    sha256: 'ab'.repeat(32),
    signingKeyId: '0F1E2D3C4B5A6978',
    keyList: { version: 3, sha256: LIST_A },
    installed: new Date('2025-06-01T12:00:00.000Z'),
    server: 'http://10.0.0.1:6969',
    ...overrides,
  }
}

describe('the trust floor a node checks against', () => {
  it('is empty for a bare node told nothing: it accepts any signed serial and key list', () => {
    expect(trustFloor({ image: 'compute' })).toEqual({ reasons: [] })
  })

  it('takes the highest of min-serial and the serial the cache recorded for this image', () => {
    const cacheState = { state: raiseTrustState(undefined, install()), path: 'cache' }
    expect(trustFloor({ image: 'compute', minSerial: 3, cacheState }).minSerial).toBe(7)
    expect(trustFloor({ image: 'compute', minSerial: 9, cacheState }).minSerial).toBe(9)
    // Another image's serial says nothing about this one; the key list applies to all.
    const other = trustFloor({ image: 'login', cacheState })
    expect(other.minSerial).toBeUndefined()
    expect(other.minKeyListVersion).toBe(3)
  })

  it('pins the recorded key list: its version and, at that version, its SHA-256', () => {
    const cacheState = { state: raiseTrustState(undefined, install()), path: 'cache' }
    expect(trustFloor({ image: 'compute', minKeyListVersion: 2, cacheState })).toMatchObject({
      minKeyListVersion: 3,
      keyListSha256: LIST_A,
    })
    // The ramdisk's floor at the same version keeps the recorded list's SHA-256.
    expect(trustFloor({ image: 'compute', minKeyListVersion: 3, cacheState })).toMatchObject({
      minKeyListVersion: 3,
      keyListSha256: LIST_A,
    })
    // A floor above what was recorded pins no content.
    const above = trustFloor({ image: 'compute', minKeyListVersion: 4, cacheState })
    expect(above.minKeyListVersion).toBe(4)
    expect(above.keyListSha256).toBeUndefined()
  })

  it('counts a kept root’s install record for its own image only', () => {
    const record = installedImageRecord(
      install({ serial: 12, keyList: { version: 5, sha256: LIST_B } }),
    )
    const installed = { record, path: '/a/etc/imageswarm/installed.json' }
    expect(trustFloor({ image: 'compute', installed })).toMatchObject({
      minSerial: 12,
      minKeyListVersion: 5,
      keyListSha256: LIST_B,
    })
    expect(trustFloor({ image: 'login', installed }).minSerial).toBeUndefined()
  })
})

describe('the node trust state', () => {
  it('only goes up: an older install does not lower the serial or the key list', () => {
    const newer = raiseTrustState(
      undefined,
      install({ serial: 9, keyList: { version: 4, sha256: LIST_B } }),
    )
    const after = raiseTrustState(newer, install({ serial: 8 }))
    expect(after.images.compute?.serial).toBe(9)
    expect(after.keyList).toEqual({ version: 4, sha256: LIST_B })
    // The previous state is not changed in place.
    expect(
      raiseTrustState(after, install({ image: 'login', serial: 1 })).images.login?.serial,
    ).toBe(1)
    expect(after.images.login).toBeUndefined()
  })

  it('round-trips through its file, and a damaged file is refused, not read as no floor', () => {
    const state: NodeTrustState = raiseTrustState(undefined, install())
    expect(parseNodeTrustState(encodeTrustRecord(state), 'state')).toEqual(state)
    const record = installedImageRecord(install())
    expect(parseInstalledImageRecord(encodeTrustRecord(record), 'record')).toEqual(record)
    for (const text of [
      '{"type":"imageswarm-trust-state"',
      '{"type":"other","schemaVersion":1,"images":{}}',
    ]) {
      const error = thrownBy(() => parseNodeTrustState(text, '/cache/imageswarm-trust.json'))
      expect(isImageSwarmError(error) && error.code).toBe('E_CONFIG_INVALID')
      expect(String((error as Error).message)).toContain('/cache/imageswarm-trust.json')
    }
  })
})
