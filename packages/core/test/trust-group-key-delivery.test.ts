import { describe, expect, it } from 'vitest'
import {
  checkGroupKeyProof,
  encodeGroupKeyAuthorization,
  encodeNodeSecretFile,
  generateNodeSecret,
  groupKeyPath,
  groupKeyProof,
  isImageSwarmError,
  parseGroupKeyAuthorization,
  parseNodeSecretFile,
} from '../src/index.js'

describe('group key delivery', () => {
  it('round-trips a node secret file', () => {
    const secret = generateNodeSecret('n001', 'compute')
    expect(parseNodeSecretFile(encodeNodeSecretFile(secret), 'n001.secret')).toEqual(secret)
  })

  it('refuses a node secret file without a 32-byte secret, naming the file', () => {
    const text = encodeNodeSecretFile(generateNodeSecret('n001', 'compute')).replace(
      /^secret: .*$/m,
      'secret: c2hvcnQ=',
    )
    let error: unknown
    try {
      parseNodeSecretFile(text, '/etc/n001.secret')
    } catch (err) {
      error = err
    }
    expect(isImageSwarmError(error) && error.code).toBe('E_KEY_FILE_INVALID')
    expect(String((error as Error).message)).toContain('/etc/n001.secret')
  })

  it('accepts the proof over the nonce, node and group it was made for, and no other', () => {
    const { secret } = generateNodeSecret('n001', 'compute')
    const request = { nonce: 'a'.repeat(32), node: 'n001', group: 'compute' }
    const proof = groupKeyProof(secret, request)
    expect(checkGroupKeyProof(secret, request, proof)).toBe(true)
    expect(checkGroupKeyProof(secret, { ...request, nonce: 'b'.repeat(32) }, proof)).toBe(false)
    expect(checkGroupKeyProof(secret, { ...request, group: 'login' }, proof)).toBe(false)
    expect(checkGroupKeyProof(generateNodeSecret('n001', 'compute').secret, request, proof)).toBe(
      false,
    )
    expect(checkGroupKeyProof(secret, request, 'zz')).toBe(false)
  })

  it('round-trips the authorization header and refuses a malformed one', () => {
    const request = { node: 'n001', nonce: 'c'.repeat(32), proof: 'd'.repeat(64) }
    expect(parseGroupKeyAuthorization(encodeGroupKeyAuthorization(request))).toEqual(request)
    expect(parseGroupKeyAuthorization('Basic abc')).toBeUndefined()
    expect(parseGroupKeyAuthorization(undefined)).toBeUndefined()
    expect(groupKeyPath('compute')).toBe('/keys/groups/compute')
  })
})
