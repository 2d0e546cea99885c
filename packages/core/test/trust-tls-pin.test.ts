import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  certificateFingerprint,
  checkPinnedCertificate,
  generateSecretKey,
  isImageSwarmError,
  KEY_LIST_TYPE,
  nextKeyList,
  normalizeFingerprint,
  pinsOf,
  readCertificatePem,
  signingKeyEntry,
  signKeyList,
} from '../src/index.js'
import { writeSelfSignedCertificate } from '../src/testing/tls-certificate.js'
import { makeTempDir } from './helpers/temp-dir.js'
import { thrownBy } from './helpers/thrown-by.js'

const SERVER = 'https://10.0.0.1:6969'

/** A self-signed certificate from openssl, PEM. */
async function makeCertificate(name: string): Promise<{ pem: Buffer; path: string }> {
  const { cert, certPath } = writeSelfSignedCertificate(
    await makeTempDir('imageswarm-tls-pin-'),
    name,
  )
  return { pem: cert, path: certPath }
}

describe('certificate pins', () => {
  it('are the SHA-256 of the DER certificate, as openssl x509 -fingerprint -sha256 prints it', async () => {
    const { pem, path } = await makeCertificate('a')
    const der = new X509Certificate(pem).raw
    const printed = execFileSync('openssl', [
      'x509',
      '-in',
      path,
      '-noout',
      '-fingerprint',
      '-sha256',
    ])
      .toString()
      .trim()
    expect(normalizeFingerprint(printed)).toBe(certificateFingerprint(der))
    expect(readCertificatePem(pem, path).sha256).toBe(certificateFingerprint(der))
    expect(readCertificatePem(pem, path).subjectAltName).toBe('IP Address:127.0.0.1')
  })

  it('accepts the pinned certificate and returns its fingerprint', async () => {
    const { pem } = await makeCertificate('a')
    const der = new X509Certificate(pem).raw
    const pin = certificateFingerprint(der)
    expect(checkPinnedCertificate(der, ['f'.repeat(64), pin], SERVER)).toBe(pin)
  })

  it('refuses a certificate the key list does not pin, with E_TLS_PIN_MISMATCH (exit 18) and a hint', async () => {
    const [a, b] = [await makeCertificate('a'), await makeCertificate('b')]
    const pinA = certificateFingerprint(new X509Certificate(a.pem).raw)
    const derB = new X509Certificate(b.pem).raw
    const error = thrownBy(() => checkPinnedCertificate(derB, [pinA], SERVER))
    expect(isImageSwarmError(error)).toBe(true)
    if (!isImageSwarmError(error)) return
    expect(error.code).toBe('E_TLS_PIN_MISMATCH')
    expect(error.exitCode).toBe(18)
    expect(error.message).toContain(certificateFingerprint(derB))
    expect(error.message).toContain(pinA)
    expect(error.path).toBe(SERVER)
    expect(error.hint).toContain('imageswarm key tls-pin')
  })

  it('refuses a handshake without a certificate, and everything when nothing is pinned', async () => {
    const { pem } = await makeCertificate('a')
    const der = new X509Certificate(pem).raw
    for (const [presented, pins] of [
      [undefined, [certificateFingerprint(der)]],
      [Buffer.alloc(0), [certificateFingerprint(der)]],
      [der, []],
    ] as const) {
      const error = thrownBy(() => checkPinnedCertificate(presented, pins, SERVER))
      expect(isImageSwarmError(error) && error.code).toBe('E_TLS_PIN_MISMATCH')
    }
  })

  it('normalizes what an operator pastes and refuses what is not a SHA-256', () => {
    const hex = 'ab'.repeat(32)
    expect(normalizeFingerprint(`SHA256 Fingerprint=${'AB:'.repeat(31)}AB`)).toBe(hex)
    expect(normalizeFingerprint(` ${hex.toUpperCase()} `)).toBe(hex)
    expect(normalizeFingerprint('ab'.repeat(20))).toBeUndefined()
    expect(normalizeFingerprint('zz'.repeat(32))).toBeUndefined()
  })

  it('refuses a file that is not a PEM certificate with E_KEY_FILE_INVALID naming it', () => {
    const error = thrownBy(() => readCertificatePem('not a certificate', '/etc/tls.crt'))
    expect(isImageSwarmError(error) && error.code).toBe('E_KEY_FILE_INVALID')
    expect(isImageSwarmError(error) && error.path).toBe('/etc/tls.crt')
  })

  it('travel in the root-signed key list: the next list carries the pins it is given', () => {
    const root = generateSecretKey()
    const now = new Date('2025-06-01T12:00:00.000Z')
    const first = signKeyList(
      {
        type: KEY_LIST_TYPE,
        schemaVersion: 1,
        version: 1,
        created: now.toISOString(),
        expires: new Date(now.getTime() + 86_400_000).toISOString(),
        rootKeyId: root.keyId,
        signingKeys: [signingKeyEntry(generateSecretKey().publicKey, now)],
        revokedKeyIds: [],
      },
      root,
    ).keyList
    expect(pinsOf(first)).toEqual([])
    const pinned = nextKeyList(first, {
      now,
      expires: new Date(now.getTime() + 86_400_000),
      tlsCertificates: [{ sha256: 'a'.repeat(64) }],
    })
    expect(pinsOf(signKeyList(pinned, root).keyList)).toEqual(['a'.repeat(64)])
    // A change that says nothing of pins keeps them.
    const renewed = nextKeyList(pinned, { now, expires: new Date(now.getTime() + 86_400_000) })
    expect(pinsOf(renewed)).toEqual(['a'.repeat(64)])
    expect(renewed.version).toBe(3)
  })
})
